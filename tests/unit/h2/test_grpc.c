/* gRPC calls between our client and our server over TLS + HTTP/2 on
 * loopback: framing, streaming both ways, status in trailers, rejects,
 * size limits; plus the sans-I/O framer. */
#include "test.h"

#include "fixture.h"
#include "h2/grpc.h"

#include <malloc.h>

/* ---- framer ---- */

static void test_reader_split_and_joined(void)
{
    struct zt_buf b = {0};
    uint8_t big[70000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)i;
    zt_grpc_frame(&b, (const uint8_t *)"hi", 2);
    zt_grpc_frame(&b, big, sizeof(big));
    zt_grpc_frame(&b, NULL, 0);
    struct zt_grpc_reader r = {.max = 1 << 20};
    size_t got = 0, sizes[3] = {0}, off = 0;
    /* Feed in odd-sized pieces: messages must come out whole. */
    while (off < b.len) {
        size_t piece = b.len - off < 333 ? b.len - off : 333;
        size_t poff = 0;
        while (poff < piece) {
            size_t used;
            const uint8_t *m;
            size_t ml;
            int rc =
                zt_grpc_reader_feed(&r, zt_buf_head(&b) + off + poff, piece - poff, &used, &m, &ml);
            CHECK(rc >= 0);
            poff += used;
            if (rc == 1) {
                CHECK(got < 3);
                sizes[got++] = ml;
                if (ml == sizeof(big))
                    CHECK(memcmp(m, big, ml) == 0);
            }
            if (rc == 0 && used == 0)
                break;
        }
        off += piece;
    }
    CHECK_EQ_INT(got, 3);
    CHECK_EQ_INT(sizes[0], 2);
    CHECK_EQ_INT(sizes[1], sizeof(big));
    CHECK_EQ_INT(sizes[2], 0);
    zt_grpc_reader_cleanup(&r);
    zt_buf_release(&b);
}

static void test_reader_limits(void)
{
    struct zt_grpc_reader r = {.max = 10};
    uint8_t too_big[5] = {0, 0, 0, 0, 11}, compressed[5] = {1, 0, 0, 0, 1};
    size_t used;
    const uint8_t *m;
    size_t ml;
    CHECK_EQ_INT(zt_grpc_reader_feed(&r, too_big, 5, &used, &m, &ml), ZT_E_TOO_BIG);
    struct zt_grpc_reader r2 = {.max = 10};
    CHECK_EQ_INT(zt_grpc_reader_feed(&r2, compressed, 5, &used, &m, &ml), ZT_E_PROTO);
    zt_grpc_reader_cleanup(&r);
    zt_grpc_reader_cleanup(&r2);
}

/* Memory follows the bytes that arrived, not the length a peer declares:
 * a 5-byte header announcing 16 MiB must not cost 16 MiB. */
static void test_reader_allocates_as_bytes_arrive(void)
{
    const size_t declared = 16u << 20;
    struct zt_grpc_reader r = {.max = 32u << 20};
    uint8_t hdr[5] = {0, (uint8_t)(declared >> 24), (uint8_t)(declared >> 16),
                      (uint8_t)(declared >> 8), (uint8_t)declared};
    static uint8_t chunk[64 * 1024];
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (uint8_t)(i * 7);
    size_t used, ml;
    const uint8_t *m;
    CHECK_EQ_INT(zt_grpc_reader_feed(&r, hdr, 5, &used, &m, &ml), 0);
    CHECK_EQ_INT(used, 5);
    CHECK(r.msg == NULL || malloc_usable_size(r.msg) <= 64 * 1024);
    CHECK_EQ_INT(zt_grpc_reader_feed(&r, chunk, 100, &used, &m, &ml), 0);
    CHECK(r.msg != NULL && malloc_usable_size(r.msg) <= 64 * 1024);
    /* Half way: at most about twice what arrived. */
    size_t got = 100;
    while (got < declared / 2) {
        CHECK_EQ_INT(zt_grpc_reader_feed(&r, chunk, sizeof(chunk), &used, &m, &ml), 0);
        got += used;
    }
    CHECK(malloc_usable_size(r.msg) <= 2 * got + 64 * 1024);
    /* Positive control: the whole message still comes out intact. */
    int rc = 0;
    while (rc == 0) {
        size_t n = declared - got < sizeof(chunk) ? declared - got : sizeof(chunk);
        rc = zt_grpc_reader_feed(&r, chunk, n, &used, &m, &ml);
        got += used;
    }
    CHECK_EQ_INT(rc, 1);
    CHECK_EQ_INT(ml, declared);
    CHECK(memcmp(m, chunk, 100) == 0);
    CHECK(memcmp(m + 100, chunk, 1000) == 0);
    zt_grpc_reader_cleanup(&r);
}

static void test_message_encoding(void)
{
    char out[64];
    zt_grpc_encode_message("bad 100% \xc3\xa9\n", out, sizeof(out));
    CHECK_EQ_STR(out, "bad 100%25 %C3%A9%0A");
}

/* The metadata istiod's services take: the bearer token when the file reads
 * non-empty (trailing newline dropped), then clusterid; at the largest
 * token; and with no token file, an unreadable or an empty one. */
static void test_metadata(void)
{
    char dir[] = "/tmp/zt-grpc-md.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/token", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("abc.def\n", f);
    fclose(f);
    struct zt_grpc_metadata md;
    zt_grpc_metadata_init(&md, path, "Kubernetes");
    CHECK_EQ_INT(md.n, 2);
    CHECK_EQ_STR(md.kv[0], "authorization");
    CHECK_EQ_STR(md.kv[1], "Bearer abc.def");
    CHECK_EQ_STR(md.kv[2], "clusterid");
    CHECK_EQ_STR(md.kv[3], "Kubernetes");
    zt_grpc_metadata_cleanup(&md);
    CHECK(md.bearer == NULL);

    /* The longest token kept whole. */
    char *big = malloc(ZT_GRPC_TOKEN_MAX + 1);
    CHECK(big != NULL);
    memset(big, 'x', ZT_GRPC_TOKEN_MAX);
    big[ZT_GRPC_TOKEN_MAX] = 0;
    f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(big, f);
    fclose(f);
    zt_grpc_metadata_init(&md, path, "c");
    CHECK_EQ_INT(md.n, 2);
    CHECK_EQ_INT(strlen(md.kv[1]), 7 + ZT_GRPC_TOKEN_MAX);
    CHECK(strncmp(md.kv[1], "Bearer xxx", 10) == 0);
    zt_grpc_metadata_cleanup(&md);
    free(big);

    f = fopen(path, "w");
    CHECK(f != NULL);
    fclose(f);
    zt_grpc_metadata_init(&md, path, "c");
    CHECK_EQ_INT(md.n, 1);
    CHECK_EQ_STR(md.kv[0], "clusterid");
    zt_grpc_metadata_cleanup(&md);
    unlink(path);
    zt_grpc_metadata_init(&md, path, "c");
    CHECK_EQ_INT(md.n, 1);
    zt_grpc_metadata_cleanup(&md);
    zt_grpc_metadata_init(&md, NULL, NULL);
    CHECK_EQ_INT(md.n, 1);
    CHECK_EQ_STR(md.kv[1], "");
    zt_grpc_metadata_cleanup(&md);
    rmdir(dir);
}

static void test_parse_target(void)
{
    char host[64], port[8], auth[80];
    CHECK_EQ_INT(zt_grpc_parse_target("https://istiod.istio-system.svc:15012", host, sizeof(host),
                                      port, sizeof(port), auth, sizeof(auth)),
                 0);
    CHECK_EQ_STR(host, "istiod.istio-system.svc");
    CHECK_EQ_STR(port, "15012");
    CHECK_EQ_STR(auth, "istiod.istio-system.svc:15012");
    CHECK_EQ_INT(zt_grpc_parse_target("[fd00::1]:15012", host, sizeof(host), port, sizeof(port),
                                      auth, sizeof(auth)),
                 0);
    CHECK_EQ_STR(host, "fd00::1");
    CHECK_EQ_STR(auth, "[fd00::1]:15012");
    const char *bad[] = {"", "istiod", "istiod:", ":15012", "istiod:15x12", "https://", NULL};
    for (int i = 0; bad[i]; i++)
        CHECK_EQ_INT(zt_grpc_parse_target(bad[i], host, sizeof(host), port, sizeof(port), auth,
                                          sizeof(auth)),
                     ZT_E_CONFIG);
}

/* "l.l.l...": a DNS name of exactly len bytes made of 63-byte labels. */
static void dns_name(char *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (i + 1) % 64 == 0 ? '.' : 'a' + (char)(i % 26);
    out[len] = 0;
}

static void test_parse_targets(void)
{
    struct zt_grpc_target t[ZT_GRPC_TARGETS_MAX];
    size_t n = 99;
    char err[512];
    CHECK_EQ_INT(zt_grpc_parse_targets("XDS_ADDRESS",
                                       " https://cp-a.example:15012 ,10.0.0.2:15012,"
                                       "[fd00::1]:1,HTTPS://cp.example.:65535",
                                       t, &n, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_STR(t[0].host, "cp-a.example");
    CHECK_EQ_STR(t[0].port, "15012");
    CHECK_EQ_STR(t[0].authority, "cp-a.example:15012");
    CHECK_EQ_STR(t[1].host, "10.0.0.2");
    CHECK_EQ_STR(t[2].host, "fd00::1");
    CHECK_EQ_STR(t[2].authority, "[fd00::1]:1");
    CHECK_EQ_STR(t[3].host, "cp.example.");
    CHECK_EQ_STR(t[3].port, "65535");
    /* One entry, as before. */
    CHECK_EQ_INT(zt_grpc_parse_targets("CA_ADDRESS", "istiod.istio-system.svc:15012", t, &n, err,
                                       sizeof(err)),
                 0);
    CHECK_EQ_INT(n, 1);
}

static void test_parse_targets_limits(void)
{
    struct zt_grpc_target t[ZT_GRPC_TARGETS_MAX];
    size_t n;
    char err[512], name[300], list[4096];
    /* The longest legal name (253 bytes, 63-byte labels), with and
     * without the trailing dot; one byte more is refused. */
    dns_name(name, 253);
    snprintf(list, sizeof(list), "%s:15012", name);
    CHECK_EQ_INT(zt_grpc_parse_targets("XDS_ADDRESS", list, t, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(strlen(t[0].host), 253);
    CHECK_EQ_INT(strlen(t[0].authority), 253 + 6);
    snprintf(list, sizeof(list), "https://%s.:15012", name);
    CHECK_EQ_INT(zt_grpc_parse_targets("XDS_ADDRESS", list, t, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(strlen(t[0].host), 254);
    dns_name(name, 254);
    name[253] = 'x';
    snprintf(list, sizeof(list), "a:1,%s:15012", name);
    CHECK_EQ_INT(zt_grpc_parse_targets("XDS_ADDRESS", list, t, &n, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strstr(err, "XDS_ADDRESS: entry 2 '") == err);
    CHECK(strstr(err, "longer than 253"));
    /* A 63-byte label is fine, 64 is not. */
    memset(name, 'q', 63);
    strcpy(name + 63, ".x:1");
    CHECK_EQ_INT(zt_grpc_parse_targets("XDS_ADDRESS", name, t, &n, err, sizeof(err)), 0);
    memset(name, 'q', 64);
    strcpy(name + 64, ".x:1");
    CHECK_EQ_INT(zt_grpc_parse_targets("XDS_ADDRESS", name, t, &n, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strstr(err, "longer than 63"));
    /* 16 entries are fine, 17 are not. */
    list[0] = 0;
    for (int i = 0; i < ZT_GRPC_TARGETS_MAX; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%scp%d:15012", i ? "," : "", i);
    CHECK_EQ_INT(zt_grpc_parse_targets("XDS_ADDRESS", list, t, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(n, ZT_GRPC_TARGETS_MAX);
    CHECK_EQ_STR(t[15].host, "cp15");
    strcat(list, ",cp16:15012");
    CHECK_EQ_INT(zt_grpc_parse_targets("XDS_ADDRESS", list, t, &n, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_STR(err, "XDS_ADDRESS: entry 17 'cp16:15012': more than 16 addresses");
}

static void test_parse_targets_errors(void)
{
    struct zt_grpc_target t[ZT_GRPC_TARGETS_MAX];
    size_t n;
    char err[512];
    static const struct {
        const char *list, *want;
    } bad[] = {
        {"", "CA_ADDRESS: entry 1 '': empty entry"},
        {"  ", "CA_ADDRESS: entry 1 '': empty entry"},
        {"a:1,,b:2", "CA_ADDRESS: entry 2 '': empty entry"},
        {"a:1,", "CA_ADDRESS: entry 2 '': empty entry"},
        {",a:1", "CA_ADDRESS: entry 1 '': empty entry"},
        {"a:1, b:0", "CA_ADDRESS: entry 2 'b:0': bad port (expected 1 to 65535)"},
        {"b:65536", "CA_ADDRESS: entry 1 'b:65536': bad port (expected 1 to 65535)"},
        {"b:015012", "CA_ADDRESS: entry 1 'b:015012': bad port (expected 1 to 65535)"},
        {"b:15x12", "CA_ADDRESS: entry 1 'b:15x12': bad port (expected 1 to 65535)"},
        {"b:-1", "CA_ADDRESS: entry 1 'b:-1': bad port (expected 1 to 65535)"},
        {"b:", "CA_ADDRESS: entry 1 'b:': missing port"},
        {"b", "CA_ADDRESS: entry 1 'b': expected host:port"},
        {":15012", "CA_ADDRESS: entry 1 ':15012': empty host"},
        {"https://", "CA_ADDRESS: entry 1 'https://': empty address"},
        {"http://b:1", "CA_ADDRESS: entry 1 'http://b:1': only https:// is supported"},
        {"b:1/x", "CA_ADDRESS: entry 1 'b:1/x': bad port (expected 1 to 65535)"},
        {"fd00::1:15012",
         "CA_ADDRESS: entry 1 'fd00::1:15012': an IPv6 address needs brackets: [address]:port"},
        {"[fd00::g]:1", "CA_ADDRESS: entry 1 '[fd00::g]:1': bad IPv6 address"},
        {"[]:1", "CA_ADDRESS: entry 1 '[]:1': bad IPv6 address (expected [address]:port)"},
        {"a..b:1", "CA_ADDRESS: entry 1 'a..b:1': empty label in host name"},
        {"-a.b:1", "CA_ADDRESS: entry 1 '-a.b:1': a host name label starts or ends with '-'"},
        {"a-.b:1", "CA_ADDRESS: entry 1 'a-.b:1': a host name label starts or ends with '-'"},
        {"a b:1", "CA_ADDRESS: entry 1 'a b:1': bad character in host"},
        {"a:1;b:2", "CA_ADDRESS: entry 1 'a:1;b:2': bad character in host"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        CHECK_EQ_INT(zt_grpc_parse_targets("CA_ADDRESS", bad[i].list, t, &n, err, sizeof(err)),
                     ZT_E_CONFIG);
        CHECK_EQ_STR(err, bad[i].want);
    }
    CHECK_EQ_INT(zt_grpc_parse_targets("CA_ADDRESS", NULL, t, &n, err, sizeof(err)), ZT_E_CONFIG);
    /* An entry longer than anything legal is cut in the message. */
    char huge[2000];
    memset(huge, 'h', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = 0;
    CHECK_EQ_INT(zt_grpc_parse_targets("CA_ADDRESS", huge, t, &n, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strlen(err) < 400);
    CHECK(strstr(err, "...': expected host:port"));
}

/* ---- calls over a real connection ---- */

struct srv {
    struct fx_world *w;
    int lfd;
    uv_poll_t lpoll;
    struct zt_h2conn *conns[8];
    int nconns;
    char path[128], auth[128];
    int messages, closes, half_closes;
};

static void s_msg(void *ud, struct zt_grpc_scall *call, const uint8_t *m, size_t len)
{
    struct srv *s = ud;
    s->messages++;
    zt_grpc_scall_send(call, m, len); /* echo */
}

static void s_half(void *ud, struct zt_grpc_scall *call)
{
    struct srv *s = ud;
    s->half_closes++;
    zt_grpc_scall_finish(call, ZT_GRPC_OK, NULL);
}

static void s_close(void *ud, struct zt_grpc_scall *call)
{
    struct srv *s = ud;
    s->closes++;
}

static const struct zt_grpc_scall_ops echo_ops = {s_msg, s_half, s_close};

static void on_req(struct zt_h2conn *c, void *ud, int32_t sid, const struct zt_h2_request *req)
{
    struct srv *s = ud;
    snprintf(s->path, sizeof(s->path), "%s", req->path ? req->path : "");
    snprintf(s->auth, sizeof(s->auth), "%s", req->authorization ? req->authorization : "");
    if (req->path && strcmp(req->path, "/test.Echo/Stream") == 0)
        zt_grpc_scall_accept(c, sid, 1 << 20, &echo_ops, s);
    else
        zt_grpc_reject(c, sid, ZT_GRPC_UNIMPLEMENTED, "no such method: caf\xc3\xa9");
}

static void on_srv_closed(struct zt_h2conn *c, void *ud, int e)
{
    struct srv *s = ud;
    for (int i = 0; i < s->nconns; i++)
        if (s->conns[i] == c)
            s->conns[i] = NULL;
}

static const struct zt_h2conn_ops srv_ops = {.on_request = on_req, .on_closed = on_srv_closed};

static void on_accept(uv_poll_t *h, int status, int events)
{
    struct srv *s = h->data;
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 || s->nconns >= 8)
        return;
    s->conns[s->nconns++] =
        zt_h2conn_new(&s->w->loop, fd, s->w->sctx, ZT_H2_SERVER, &s->w->srv_settings, &srv_ops, s);
}

static void srv_start(struct srv *s, struct fx_world *w)
{
    memset(s, 0, sizeof(*s));
    s->w = w;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->lfd, 8) < 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &len) < 0)
        abort();
    w->port = ntohs(a.sin_port); /* fx_client dials w->port */
    uv_poll_init(&w->loop, &s->lpoll, s->lfd);
    s->lpoll.data = s;
    uv_poll_start(&s->lpoll, UV_READABLE, on_accept);
}

static void srv_stop(struct srv *s)
{
    for (int i = 0; i < s->nconns; i++)
        if (s->conns[i])
            zt_h2conn_close(s->conns[i], ZT_E_CLOSED);
    uv_close((uv_handle_t *)&s->lpoll, NULL);
    close(s->lfd);
}

struct cli {
    int messages;
    size_t bytes;
    int status;
    char message[256];
    bool closed;
};

static void c_msg(void *ud, const uint8_t *m, size_t len)
{
    struct cli *c = ud;
    c->messages++;
    c->bytes += len;
}

static void c_close(void *ud, int status, const char *message)
{
    struct cli *c = ud;
    c->closed = true;
    c->status = status;
    snprintf(c->message, sizeof(c->message), "%s", message ? message : "");
}

static const struct zt_grpc_call_ops cli_ops = {c_msg, c_close};

static void test_streaming_echo(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct srv s;
    srv_start(&s, &w);
    struct fx_peer *p = fx_client(&w, NULL);
    FX_WAIT(&w, p->ready_calls == 1, 3000);
    CHECK_EQ_INT(p->ready_calls, 1);
    struct cli c = {0};
    const char *md[] = {"authorization", "Bearer t0ken", "clusterid", "Kubernetes"};
    struct zt_grpc_call *call = zt_grpc_call_start(p->h2, "istiod:15012", "/test.Echo/Stream", md,
                                                   2, 1 << 20, &cli_ops, &c);
    CHECK(call != NULL);
    static uint8_t big[300000];
    memset(big, 'x', sizeof(big));
    zt_grpc_call_send(call, (const uint8_t *)"one", 3);
    zt_grpc_call_send(call, big, sizeof(big));
    zt_grpc_call_send(call, (const uint8_t *)"three", 5);
    FX_WAIT(&w, c.messages == 3, 3000);
    CHECK_EQ_INT(c.messages, 3);
    CHECK_EQ_INT(c.bytes, 3 + sizeof(big) + 5);
    CHECK(!c.closed);
    zt_grpc_call_close_send(call);
    FX_WAIT(&w, c.closed, 3000);
    CHECK(c.closed);
    CHECK_EQ_INT(c.status, ZT_GRPC_OK);
    CHECK_EQ_STR(s.path, "/test.Echo/Stream");
    CHECK_EQ_STR(s.auth, "Bearer t0ken");
    CHECK_EQ_INT(s.half_closes, 1);
    FX_WAIT(&w, s.closes == 1, 1000);
    CHECK_EQ_INT(s.closes, 1);
    srv_stop(&s);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

static void test_unimplemented_and_limits(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct srv s;
    srv_start(&s, &w);
    struct fx_peer *p = fx_client(&w, NULL);
    FX_WAIT(&w, p->ready_calls == 1, 3000);
    struct cli c = {0};
    struct zt_grpc_call *call =
        zt_grpc_call_start(p->h2, "x", "/test.Echo/Nope", NULL, 0, 1 << 20, &cli_ops, &c);
    CHECK(call != NULL);
    zt_grpc_call_close_send(call);
    FX_WAIT(&w, c.closed, 3000);
    CHECK_EQ_INT(c.status, ZT_GRPC_UNIMPLEMENTED);
    CHECK_EQ_STR(c.message, "no such method: caf\xc3\xa9");

    /* The client refuses an echoed message over its own limit. */
    struct cli c2 = {0};
    call = zt_grpc_call_start(p->h2, "x", "/test.Echo/Stream", NULL, 0, 100, &cli_ops, &c2);
    static uint8_t mid[1000];
    zt_grpc_call_send(call, mid, sizeof(mid));
    FX_WAIT(&w, c2.closed, 3000);
    CHECK_EQ_INT(c2.status, ZT_GRPC_RESOURCE_EXHAUSTED);
    CHECK_EQ_INT(c2.messages, 0);

    /* The connection still carries new calls. */
    struct cli c3 = {0};
    call = zt_grpc_call_start(p->h2, "x", "/test.Echo/Stream", NULL, 0, 1 << 20, &cli_ops, &c3);
    zt_grpc_call_send(call, (const uint8_t *)"ok", 2);
    zt_grpc_call_close_send(call);
    FX_WAIT(&w, c3.closed, 3000);
    CHECK_EQ_INT(c3.status, ZT_GRPC_OK);
    CHECK_EQ_INT(c3.messages, 1);
    srv_stop(&s);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

static void test_connection_loss_and_cancel(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct srv s;
    srv_start(&s, &w);
    struct fx_peer *p = fx_client(&w, NULL);
    FX_WAIT(&w, p->ready_calls == 1, 3000);
    struct cli c = {0}, c2 = {0};
    struct zt_grpc_call *call =
        zt_grpc_call_start(p->h2, "x", "/test.Echo/Stream", NULL, 0, 1 << 20, &cli_ops, &c);
    struct zt_grpc_call *other =
        zt_grpc_call_start(p->h2, "x", "/test.Echo/Stream", NULL, 0, 1 << 20, &cli_ops, &c2);
    zt_grpc_call_send(call, (const uint8_t *)"a", 1);
    FX_WAIT(&w, c.messages == 1, 3000);
    zt_grpc_call_cancel(other); /* no callback for a cancelled call */
    srv_stop(&s);               /* the server goes away mid-call */
    FX_WAIT(&w, c.closed, 3000);
    CHECK(c.closed);
    CHECK_EQ_INT(c.status, ZT_GRPC_UNAVAILABLE);
    CHECK(!c2.closed);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

int main(void)
{
    RUN(test_reader_split_and_joined);
    RUN(test_reader_limits);
    RUN(test_reader_allocates_as_bytes_arrive);
    RUN(test_message_encoding);
    RUN(test_parse_target);
    RUN(test_parse_targets);
    RUN(test_parse_targets_limits);
    RUN(test_parse_targets_errors);
    RUN(test_metadata);
    RUN(test_streaming_echo);
    RUN(test_unimplemented_and_limits);
    RUN(test_connection_loss_and_cancel);
    return TEST_REPORT();
}
