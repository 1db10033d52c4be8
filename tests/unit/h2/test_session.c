/* The sans-I/O HTTP/2 session with no sockets: a client and a server session
 * paired in memory (the bytes one produces are fed to the other), a fake
 * clock for the handshake and keepalive timeouts, and plaintext sessions for
 * raw frames. */
#include "test.h"

#include "base/err.h"
#include "h2/session.h"
#include "tls/ctx.h"
#include "tls/fixture.h"
#include "tls/localca.h"

#include <errno.h>

#define MIB (1024u * 1024u)
#define T0 1000000u /* the fake clock's start, in ms */

/* ---- one end of a stream ---- */

struct sx_stream {
    struct sx_end *end;
    int32_t id;
    int status, response_calls, end_calls, close_calls, close_err;
    uint64_t received, pending;
    bool consume;
    uint64_t to_send, sent;
    bool eof_after, eof_sent;
};

/* ---- one session and what its callbacks saw ---- */

struct sx_end {
    struct zt_h2_session *s;
    int ready_calls, draining_calls, closed_calls, close_err, ready_ret;
    unsigned nreq;
    char authority[128];
    int respond_status;   /* server: answer to a request */
    bool consume_streams; /* server: streams consume what they get */
    struct sx_stream streams[4];
    unsigned nstreams;
};

static void st_on_response(void *sud, int status)
{
    struct sx_stream *t = sud;
    t->status = status;
    t->response_calls++;
}

static void st_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct sx_stream *t = sud;
    t->received += len;
    if (t->consume)
        zt_h2_session_consume(t->end->s, t->id, len);
    else
        t->pending += len;
}

static void st_on_end(void *sud)
{
    struct sx_stream *t = sud;
    t->end_calls++;
}

static void st_on_close(void *sud, int error)
{
    struct sx_stream *t = sud;
    t->close_calls++;
    t->close_err = error;
}

static ssize_t st_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct sx_stream *t = sud;
    uint64_t left = t->to_send - t->sent;
    size_t n = left < len ? (size_t)left : len;
    memset(buf, 'x', n);
    t->sent += n;
    if (t->sent == t->to_send && t->eof_after && !t->eof_sent) {
        *eof = true;
        t->eof_sent = true;
        return (ssize_t)n;
    }
    return n ? (ssize_t)n : -EAGAIN;
}

static const struct zt_h2_stream_ops st_ops = {
    .on_response = st_on_response,
    .on_data = st_on_data,
    .on_end = st_on_end,
    .on_close = st_on_close,
    .read = st_read,
};

static struct sx_stream *stream_slot(struct sx_end *e)
{
    if (e->nstreams == 4)
        abort();
    struct sx_stream *t = &e->streams[e->nstreams++];
    memset(t, 0, sizeof(*t));
    t->end = e;
    t->consume = true;
    return t;
}

static int on_ready(struct zt_h2_session *s, void *ud)
{
    struct sx_end *e = ud;
    e->ready_calls++;
    return e->ready_ret;
}

static void on_request(struct zt_h2_session *s, void *ud, int32_t sid,
                       const struct zt_h2_request *req)
{
    struct sx_end *e = ud;
    e->nreq++;
    snprintf(e->authority, sizeof(e->authority), "%s", req->authority);
    if (e->respond_status != 200) {
        zt_h2_session_respond(s, sid, e->respond_status, NULL, 0);
        return;
    }
    struct sx_stream *t = stream_slot(e);
    t->id = sid;
    t->consume = e->consume_streams;
    zt_h2_session_attach(s, sid, &st_ops, t);
    zt_h2_session_respond(s, sid, 200, NULL, 0);
}

static void on_draining(struct zt_h2_session *s, void *ud)
{
    struct sx_end *e = ud;
    e->draining_calls++;
}

static void on_closed(struct zt_h2_session *s, void *ud, int error)
{
    struct sx_end *e = ud;
    e->closed_calls++;
    e->close_err = error;
}

static const struct zt_h2_session_ops end_ops = {
    .on_ready = on_ready,
    .on_request = on_request,
    .on_draining = on_draining,
    .on_closed = on_closed,
};

/* ---- the world: a CA, contexts, and two ends ---- */

struct sx_world {
    struct fx_ca ca;
    struct zt_tls_localca *lca;
    struct zt_tls_cert *srv_cert, *cli_cert;
    SSL_CTX *sctx, *cctx;
    struct zt_h2_settings settings;
    struct sx_end cli, srv;
};

static struct zt_tls_cert *mint(struct zt_tls_localca *ca, const char *ns, const char *sa)
{
    struct zt_spiffe_id id;
    struct zt_tls_cert *c = NULL;
    if (zt_spiffe_make("cluster.local", ns, sa, &id) != 0 ||
        zt_tls_localca_mint(ca, &id, 3600, &c) != 0)
        abort();
    return c;
}

static void world_init(struct sx_world *w)
{
    memset(w, 0, sizeof(*w));
    char err[256];
    if (!fx_ca_make(&w->ca, true) || zt_tls_localca_load(w->ca.dir, &w->lca, err, sizeof(err)))
        abort();
    w->srv_cert = mint(w->lca, "server-ns", "server");
    w->cli_cert = mint(w->lca, "client-ns", "client");
    w->sctx = zt_tls_server_ctx_new(w->srv_cert);
    w->cctx = zt_tls_client_ctx_new(w->cli_cert);
    if (!w->sctx || !w->cctx)
        abort();
    w->settings = (struct zt_h2_settings){4 * MIB, 16 * MIB, MIB, 64 * 1024, 100, 0, 0};
    w->srv.respond_status = 200;
    w->srv.consume_streams = true;
}

static void world_free(struct sx_world *w)
{
    zt_h2_session_free(w->cli.s);
    zt_h2_session_free(w->srv.s);
    SSL_CTX_free(w->sctx);
    SSL_CTX_free(w->cctx);
    zt_tls_cert_unref(w->srv_cert);
    zt_tls_cert_unref(w->cli_cert);
    zt_tls_localca_free(w->lca);
    fx_ca_free(&w->ca);
}

/* Moves what `from` produces into `to`; returns the bytes moved. */
static size_t move(struct zt_h2_session *from, struct zt_h2_session *to)
{
    const uint8_t *p;
    size_t n;
    zt_h2_session_out(from, &p, &n);
    if (n == 0)
        return 0;
    /* Fed in two pieces: records split across feeds must work. */
    size_t half = n / 2;
    zt_h2_session_feed(to, p, half);
    zt_h2_session_feed(to, p + half, n - half);
    zt_h2_session_out_done(from, n);
    return n;
}

/* Exchanges bytes until neither side has anything to say. */
static void pump(struct sx_world *w)
{
    for (int i = 0; i < 10000; i++)
        if (move(w->cli.s, w->srv.s) + move(w->srv.s, w->cli.s) == 0)
            return;
    abort(); /* a livelock is a bug */
}

static void open_pair(struct sx_world *w, bool tls)
{
    w->cli.s =
        zt_h2_session_new(tls ? w->cctx : NULL, ZT_H2_CLIENT, &w->settings, &end_ops, &w->cli, T0);
    w->srv.s =
        zt_h2_session_new(tls ? w->sctx : NULL, ZT_H2_SERVER, &w->settings, &end_ops, &w->srv, T0);
    pump(w);
}

/* ---- tests ---- */

static void test_no_callback_inside_new(void)
{
    struct sx_world w;
    world_init(&w);
    w.cli.s = zt_h2_session_new(w.cctx, ZT_H2_CLIENT, &w.settings, &end_ops, &w.cli, T0);
    CHECK_EQ_INT(zt_h2_session_state(w.cli.s), ZT_H2_SESS_HANDSHAKE);
    CHECK_EQ_INT(w.cli.ready_calls, 0);
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), T0 + 10000);
    /* The ClientHello comes out on the first out(). */
    const uint8_t *p;
    size_t n;
    CHECK_EQ_INT(zt_h2_session_out(w.cli.s, &p, &n), 0);
    CHECK(n > 0 && p[0] == 22); /* a TLS handshake record */
    world_free(&w);
}

static void test_connect_200_and_data(void)
{
    struct sx_world w;
    world_init(&w);
    open_pair(&w, true);
    CHECK_EQ_INT(w.cli.ready_calls, 1);
    CHECK_EQ_INT(w.srv.ready_calls, 1);
    CHECK_EQ_INT(zt_h2_session_state(w.cli.s), ZT_H2_SESS_OPEN);
    CHECK_EQ_INT(zt_h2_session_state(w.srv.s), ZT_H2_SESS_OPEN);
    struct zt_spiffe_id id;
    char name[ZT_SPIFFE_ID_MAX + 1];
    CHECK_EQ_INT(zt_tls_peer_identity(zt_h2_session_ssl(w.srv.s), &id), 0);
    zt_spiffe_format(&id, name, sizeof(name));
    CHECK_EQ_STR(name, "spiffe://cluster.local/ns/client-ns/sa/client");
    CHECK_EQ_INT(zt_h2_session_peer_max_streams(w.cli.s), 100);

    struct sx_stream *cs = stream_slot(&w.cli);
    cs->to_send = 300000;
    cs->eof_after = true;
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &st_ops, cs);
    CHECK(cs->id > 0);
    pump(&w);
    CHECK_EQ_INT(w.srv.nreq, 1);
    CHECK_EQ_STR(w.srv.authority, "10.0.0.2:8080");
    CHECK_EQ_INT(cs->response_calls, 1);
    CHECK_EQ_INT(cs->status, 200);
    struct sx_stream *ss = &w.srv.streams[0];
    CHECK_EQ_INT(ss->received, 300000);
    CHECK_EQ_INT(ss->end_calls, 1);
    CHECK_EQ_INT(ss->close_calls, 0);
    /* The server answers and ends its side: the stream closes cleanly. */
    ss->to_send = 200000;
    ss->eof_after = true;
    zt_h2_session_resume(w.srv.s, ss->id);
    pump(&w);
    CHECK_EQ_INT(cs->received, 200000);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK_EQ_INT(cs->close_err, 0);
    CHECK_EQ_INT(ss->close_calls, 1);
    CHECK_EQ_INT(zt_h2_session_streams(w.cli.s), 0);
    CHECK_EQ_INT(zt_h2_session_streams(w.srv.s), 0);
    CHECK_EQ_INT(zt_h2_session_streams_opened(w.srv.s), 1);
    CHECK_EQ_INT(w.cli.closed_calls + w.srv.closed_calls, 0);
    /* Freeing an open session closes it and says so. */
    world_free(&w);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(w.cli.close_err, ZT_E_CLOSED);
}

static void test_error_status(void)
{
    struct sx_world w;
    world_init(&w);
    w.srv.respond_status = 403;
    open_pair(&w, true);
    struct sx_stream *cs = stream_slot(&w.cli);
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &st_ops, cs);
    pump(&w);
    CHECK_EQ_INT(cs->status, 403);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK_EQ_INT(zt_h2_session_streams(w.srv.s), 0);
    world_free(&w);
}

static void test_handshake_failure(void)
{
    struct sx_world w;
    world_init(&w);
    /* A client whose certificate comes from another CA. */
    struct fx_ca other;
    struct zt_tls_localca *olca;
    char err[256];
    CHECK(fx_ca_make(&other, false) &&
          zt_tls_localca_load(other.dir, &olca, err, sizeof(err)) == 0);
    struct zt_tls_cert *ocert = mint(olca, "client-ns", "client");
    SSL_CTX *octx = zt_tls_client_ctx_new(ocert);
    CHECK(octx != NULL);
    w.cli.s = zt_h2_session_new(octx, ZT_H2_CLIENT, &w.settings, &end_ops, &w.cli, T0);
    w.srv.s = zt_h2_session_new(w.sctx, ZT_H2_SERVER, &w.settings, &end_ops, &w.srv, T0);
    pump(&w);
    CHECK_EQ_INT(w.cli.ready_calls + w.srv.ready_calls, 0);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(w.cli.close_err, ZT_E_TLS);
    CHECK_EQ_INT(w.srv.closed_calls, 1);
    CHECK_EQ_INT(w.srv.close_err, ZT_E_TLS);
    CHECK_EQ_INT(zt_h2_session_state(w.srv.s), ZT_H2_SESS_CLOSED);
    /* Operations on a closed session fail without callbacks. */
    CHECK_EQ_INT(zt_h2_session_connect(w.cli.s, "10.0.0.2:80", NULL, 0, &st_ops, NULL),
                 ZT_E_CLOSED);
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), UINT64_MAX);
    SSL_CTX_free(octx);
    zt_tls_cert_unref(ocert);
    zt_tls_localca_free(olca);
    fx_ca_free(&other);
    world_free(&w);
}

static void test_on_ready_refusal(void)
{
    struct sx_world w;
    world_init(&w);
    w.cli.ready_ret = ZT_E_IDENTITY;
    open_pair(&w, true);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(w.cli.close_err, ZT_E_IDENTITY);
    world_free(&w);
}

static void test_handshake_timeout(void)
{
    struct sx_world w;
    world_init(&w);
    w.srv.s = zt_h2_session_new(w.sctx, ZT_H2_SERVER, &w.settings, &end_ops, &w.srv, T0);
    CHECK_EQ_INT(zt_h2_session_tick(w.srv.s, T0 + 9999), 0);
    CHECK_EQ_INT(w.srv.closed_calls, 0);
    CHECK_EQ_INT(zt_h2_session_tick(w.srv.s, zt_h2_session_deadline(w.srv.s)), ZT_E_TIMEOUT);
    CHECK_EQ_INT(w.srv.closed_calls, 1);
    CHECK_EQ_INT(w.srv.close_err, ZT_E_TIMEOUT);
    world_free(&w);
}

/* A receiver that does not consume stops its sender at the stream window;
 * consuming lets the rest through. */
static void test_flow_control_backpressure(void)
{
    struct sx_world w;
    world_init(&w);
    w.settings.stream_window = 256 * 1024;
    w.srv.consume_streams = false;
    open_pair(&w, true);
    struct sx_stream *cs = stream_slot(&w.cli);
    cs->to_send = 1 * MIB;
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &st_ops, cs);
    pump(&w);
    struct sx_stream *ss = &w.srv.streams[0];
    CHECK_EQ_INT(ss->received, 256 * 1024);
    CHECK_EQ_INT(cs->sent, 256 * 1024);
    /* A second stream is not blocked by the first (connection window). */
    struct sx_stream *cs2 = stream_slot(&w.cli);
    cs2->to_send = 100000;
    cs2->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8081", NULL, 0, &st_ops, cs2);
    pump(&w);
    CHECK_EQ_INT(w.srv.streams[1].received, 100000);
    /* Consuming half opens half a window. */
    zt_h2_session_consume(w.srv.s, ss->id, 128 * 1024);
    ss->pending -= 128 * 1024;
    pump(&w);
    CHECK_EQ_INT(ss->received, 384 * 1024);
    while (ss->received < MIB) {
        uint64_t before = ss->received;
        zt_h2_session_consume(w.srv.s, ss->id, (size_t)ss->pending);
        ss->pending = 0;
        pump(&w);
        CHECK(ss->received > before);
    }
    CHECK_EQ_INT(ss->received, MIB);
    /* Consuming more than was received is capped, not a window overflow. */
    zt_h2_session_consume(w.srv.s, ss->id, 10 * MIB);
    pump(&w);
    CHECK_EQ_INT(w.cli.closed_calls + w.srv.closed_calls, 0);
    world_free(&w);
}

/* The server drains: the client learns it, opens nothing new, the stream in
 * flight finishes, and both close cleanly. */
static void test_goaway_drain(void)
{
    struct sx_world w;
    world_init(&w);
    open_pair(&w, true);
    struct sx_stream *cs = stream_slot(&w.cli);
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &st_ops, cs);
    pump(&w);
    CHECK_EQ_INT(cs->status, 200);
    zt_h2_session_shutdown(w.srv.s);
    CHECK_EQ_INT(zt_h2_session_state(w.srv.s), ZT_H2_SESS_DRAINING);
    pump(&w);
    CHECK_EQ_INT(w.cli.draining_calls, 1);
    CHECK_EQ_INT(zt_h2_session_state(w.cli.s), ZT_H2_SESS_DRAINING);
    CHECK_EQ_INT(zt_h2_session_connect(w.cli.s, "10.0.0.2:8081", NULL, 0, &st_ops, NULL),
                 ZT_E_CLOSED);
    CHECK_EQ_INT(w.srv.closed_calls, 0); /* one stream still open */
    /* The stream still works both ways, then ends. */
    struct sx_stream *ss = &w.srv.streams[0];
    cs->to_send = 50000;
    cs->eof_after = true;
    zt_h2_session_resume(w.cli.s, cs->id);
    ss->to_send = 70000;
    ss->eof_after = true;
    zt_h2_session_resume(w.srv.s, ss->id);
    pump(&w);
    CHECK_EQ_INT(ss->received, 50000);
    CHECK_EQ_INT(cs->received, 70000);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK_EQ_INT(cs->close_err, 0);
    CHECK_EQ_INT(w.srv.closed_calls, 1);
    CHECK_EQ_INT(w.srv.close_err, 0);
    world_free(&w);
}

static void test_shutdown_before_open(void)
{
    struct sx_world w;
    world_init(&w);
    w.cli.s = zt_h2_session_new(w.cctx, ZT_H2_CLIENT, &w.settings, &end_ops, &w.cli, T0);
    zt_h2_session_shutdown(w.cli.s);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(w.cli.close_err, ZT_E_CLOSED);
    world_free(&w);
}

/* PINGs by the fake clock: answered ones keep the session, an unanswered
 * one closes it exactly one timeout after it was sent. */
static void test_keepalive(void)
{
    struct sx_world w;
    world_init(&w);
    w.settings.ping_interval_ms = 100;
    w.settings.ping_timeout_ms = 300;
    open_pair(&w, true);
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), T0 + 100);
    for (uint64_t t = T0 + 100; t <= T0 + 2000; t += 100) {
        CHECK_EQ_INT(zt_h2_session_tick(w.cli.s, t), 0);
        CHECK_EQ_INT(zt_h2_session_tick(w.srv.s, t), 0);
        pump(&w);
    }
    CHECK_EQ_INT(w.cli.closed_calls + w.srv.closed_calls, 0);
    /* Now the server stops answering: the client's next PING goes out and
     * nothing comes back. */
    uint64_t due = zt_h2_session_deadline(w.cli.s);
    CHECK_EQ_INT(zt_h2_session_tick(w.cli.s, due), 0);
    const uint8_t *p;
    size_t n;
    zt_h2_session_out(w.cli.s, &p, &n);
    CHECK(n > 0);
    zt_h2_session_out_done(w.cli.s, n); /* lost */
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), due + 300);
    CHECK_EQ_INT(zt_h2_session_tick(w.cli.s, due + 299), 0);
    CHECK_EQ_INT(w.cli.closed_calls, 0);
    CHECK_EQ_INT(zt_h2_session_tick(w.cli.s, due + 300), ZT_E_TIMEOUT);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(w.cli.close_err, ZT_E_TIMEOUT);
    world_free(&w);
}

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Garbage from one peer closes that session only, with a GOAWAY or an alert
 * for the peer; a second session fed the same way next to it is untouched. */
static void test_peer_garbage(void)
{
    struct sx_world w;
    world_init(&w);
    open_pair(&w, true);
    struct sx_end bad = {.respond_status = 200};
    bad.s = zt_h2_session_new(w.sctx, ZT_H2_SERVER, &w.settings, &end_ops, &bad, T0);
    static const uint8_t junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK_EQ_INT(zt_h2_session_feed(bad.s, junk, sizeof(junk) - 1), ZT_E_TLS);
    CHECK_EQ_INT(bad.closed_calls, 1);
    /* Closed: it takes nothing more and produces nothing new. */
    CHECK_EQ_INT(zt_h2_session_feed(bad.s, junk, 4), ZT_E_TLS);
    CHECK_EQ_INT(bad.closed_calls, 1);
    zt_h2_session_free(bad.s);

    /* Plaintext: a valid preface, then a frame on stream 0 that must not be
     * there (DATA), then a HEADERS with an undecodable block. */
    struct sx_end plain = {.respond_status = 200};
    plain.s = zt_h2_session_new(NULL, ZT_H2_SERVER, &w.settings, &end_ops, &plain, T0);
    uint8_t buf[64];
    memcpy(buf, preface, 24);
    static const uint8_t settings0[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    static const uint8_t data0[] = {0, 0, 1, 0, 0, 0, 0, 0, 0, 'x'};
    memcpy(buf + 24, settings0, sizeof(settings0));
    memcpy(buf + 24 + sizeof(settings0), data0, sizeof(data0));
    CHECK_EQ_INT(zt_h2_session_feed(plain.s, buf, 24 + sizeof(settings0) + sizeof(data0)), 0);
    CHECK_EQ_INT(plain.ready_calls, 1);
    const uint8_t *p;
    size_t n;
    CHECK_EQ_INT(zt_h2_session_out(plain.s, &p, &n), 0);
    /* Our SETTINGS, the ACK of theirs, then GOAWAY (type 7) with
     * PROTOCOL_ERROR (1). */
    bool goaway = false;
    for (size_t off = 0; off + 9 <= n;) {
        size_t flen = (size_t)p[off] << 16 | (size_t)p[off + 1] << 8 | p[off + 2];
        if (p[off + 3] == 7 && off + 9 + 8 <= n)
            goaway = p[off + 9 + 7] == 1;
        off += 9 + flen;
    }
    CHECK(goaway);
    zt_h2_session_out_done(plain.s, n);
    /* Once the GOAWAY is out the session is done, and says why. */
    CHECK_EQ_INT(zt_h2_session_out(plain.s, &p, &n), ZT_E_PROTO);
    CHECK_EQ_INT(plain.closed_calls, 1);
    CHECK_EQ_INT(plain.close_err, ZT_E_PROTO);
    zt_h2_session_free(plain.s);

    /* The good pair still carries a stream. */
    struct sx_stream *cs = stream_slot(&w.cli);
    cs->to_send = 1000;
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &st_ops, cs);
    pump(&w);
    CHECK_EQ_INT(cs->status, 200);
    CHECK_EQ_INT(w.srv.streams[0].received, 1000);
    CHECK_EQ_INT(w.cli.closed_calls + w.srv.closed_calls, 0);
    world_free(&w);
}

/* The peer closing its side (end of stream without close_notify) closes the
 * session with an error, and streams learn it. */
static void test_peer_eof(void)
{
    struct sx_world w;
    world_init(&w);
    open_pair(&w, true);
    struct sx_stream *cs = stream_slot(&w.cli);
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &st_ops, cs);
    pump(&w);
    CHECK(zt_h2_session_feed(w.cli.s, NULL, 0) < 0);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK(cs->close_err < 0);
    world_free(&w);
}

/* A budgeted read stops with input still inside OpenSSL and says so; the
 * next read gets it without any new bytes from recv. */
struct chunks {
    const uint8_t *p;
    size_t len;
};

static ssize_t chunks_recv(void *arg, uint8_t *buf, size_t len)
{
    struct chunks *c = arg;
    if (c->len == 0)
        return -EAGAIN;
    size_t n = c->len < len ? c->len : len;
    memcpy(buf, c->p, n);
    c->p += n;
    c->len -= n;
    return (ssize_t)n;
}

static void test_read_budget(void)
{
    struct sx_world w;
    world_init(&w);
    open_pair(&w, true);
    struct sx_stream *cs = stream_slot(&w.cli);
    cs->to_send = 200000;
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &st_ops, cs);
    const uint8_t *p;
    size_t n;
    zt_h2_session_out(w.cli.s, &p, &n);
    CHECK(n > 100000);
    struct chunks in = {p, n};
    CHECK_EQ_INT(zt_h2_session_read(w.srv.s, chunks_recv, &in, 1), 0);
    CHECK(zt_h2_session_has_input(w.srv.s));
    unsigned rounds = 0;
    while (zt_h2_session_has_input(w.srv.s) || in.len > 0) {
        struct chunks none = {NULL, 0};
        CHECK_EQ_INT(zt_h2_session_read(w.srv.s, chunks_recv, in.len ? &in : &none, 1), 0);
        CHECK(++rounds < 1000);
    }
    zt_h2_session_out_done(w.cli.s, n);
    pump(&w);
    CHECK_EQ_INT(w.srv.streams[0].received, 200000);
    world_free(&w);
}

int main(void)
{
    RUN(test_no_callback_inside_new);
    RUN(test_connect_200_and_data);
    RUN(test_error_status);
    RUN(test_handshake_failure);
    RUN(test_on_ready_refusal);
    RUN(test_handshake_timeout);
    RUN(test_flow_control_backpressure);
    RUN(test_goaway_drain);
    RUN(test_shutdown_before_open);
    RUN(test_keepalive);
    RUN(test_peer_garbage);
    RUN(test_peer_eof);
    RUN(test_read_budget);
    return TEST_REPORT();
}
