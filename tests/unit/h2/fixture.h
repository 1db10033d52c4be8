/* Test fixture for h2 and hbone tests: a libuv loop, an in-process CA with
 * server and client identities, a TCP listener on 127.0.0.1 (ephemeral port)
 * whose accepted sockets become server zt_h2conns, and recording stream
 * endpoints that send and check a deterministic byte pattern.
 *
 * Everything lives in one struct fx_world per test; fx_world_free() closes
 * every connection and handle and reports whether uv_loop_close succeeded. */
#ifndef ZT_TEST_H2_FIXTURE_H
#define ZT_TEST_H2_FIXTURE_H

#include "base/err.h"
#include "h2/h2conn.h"
#include "tls/ctx.h"
#include "tls/fixture.h"
#include "tls/localca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <uv.h>

#define FX_MIB (1024u * 1024u)
#define FX_STREAMS 8
#define FX_PEERS 32

struct fx_world;
struct fx_peer;

/* One end of a stream. Receives: checks the pattern, counts, and consumes at
 * once if `consume`, else leaves the bytes charged until fx_stream_consume().
 * Sends: `to_send` pattern bytes, then END_STREAM if `eof_after`; returns
 * -EAGAIN while it has nothing (grow to_send and call fx_stream_resume()). */
struct fx_stream {
    struct fx_peer *peer;
    int32_t id;
    bool used;
    int status, response_calls, end_calls, close_calls, close_err;
    unsigned response_seq, end_seq, close_seq;
    uint64_t received, pending;
    bool consume, data_bad;
    uint8_t rx_seed, tx_seed;
    uint64_t to_send, sent;
    bool eof_after, eof_sent;
    unsigned read_calls;
};

/* One connection (either role) and what its callbacks saw. */
struct fx_peer {
    struct fx_world *w;
    enum zt_h2conn_role role;
    struct zt_h2conn *h2;
    bool used;
    int ready_calls, draining_calls, closed_calls, close_err;
    unsigned ready_seq, draining_seq, closed_seq;
    int ready_ret; /* what on_ready returns */
    int peer_id_rc;
    char peer_id[ZT_SPIFFE_ID_MAX + 1];
    /* Server role: requests seen. */
    unsigned nreq;
    char method[32], authority[128], baggage[256], forwarded[256], traceparent[128];
    bool has_baggage, has_forwarded, has_traceparent;
    struct fx_stream streams[FX_STREAMS];
};

struct fx_world {
    uv_loop_t loop;
    uv_timer_t tick;
    unsigned seq;
    struct fx_ca ca;
    struct zt_tls_localca *lca;
    struct zt_tls_cert *srv_cert, *cli_cert, *cli2_cert;
    SSL_CTX *sctx, *cctx, *cctx2;
    struct zt_h2_settings srv_settings, cli_settings;
    int lfd;
    uint16_t port;
    uv_poll_t lpoll;
    unsigned accepts;
    struct fx_peer srv[FX_PEERS], cli[FX_PEERS];
    /* What servers do with a request: respond with this status (attaching a
     * stream set up from `srv_tmpl` when 200). */
    int srv_status;
    struct fx_stream srv_tmpl;
};

static inline uint8_t fx_pattern(uint64_t off, uint8_t seed)
{
    return (uint8_t)((off ^ (off >> 8) ^ (off >> 17)) * 31u + seed);
}

static inline uint64_t fx_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* Runs the loop until `cond` holds or `ms` pass. */
#define FX_WAIT(w, cond, ms)                                                                       \
    for (uint64_t fx_dl_ = fx_now_ms() + (ms); !(cond) && fx_now_ms() < fx_dl_;)                   \
    uv_run(&(w)->loop, UV_RUN_ONCE)

static inline void fx_run_for(struct fx_world *w, unsigned ms)
{
    uint64_t dl = fx_now_ms() + ms;
    while (fx_now_ms() < dl)
        uv_run(&w->loop, UV_RUN_ONCE);
}

/* ---- stream endpoint ---- */

static inline void fx_st_on_response(void *sud, int status)
{
    struct fx_stream *s = sud;
    s->status = status;
    s->response_calls++;
    s->response_seq = ++s->peer->w->seq;
}

static inline void fx_st_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct fx_stream *s = sud;
    for (size_t i = 0; i < len; i++)
        if (data[i] != fx_pattern(s->received + i, s->rx_seed)) {
            s->data_bad = true;
            break;
        }
    s->received += len;
    if (s->consume)
        zt_h2conn_consume(s->peer->h2, s->id, len);
    else
        s->pending += len;
}

static inline void fx_st_on_end(void *sud)
{
    struct fx_stream *s = sud;
    s->end_calls++;
    s->end_seq = ++s->peer->w->seq;
}

static inline void fx_st_on_close(void *sud, int error)
{
    struct fx_stream *s = sud;
    s->close_calls++;
    s->close_err = error;
    s->close_seq = ++s->peer->w->seq;
}

static inline ssize_t fx_st_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct fx_stream *s = sud;
    s->read_calls++;
    if (s->sent < s->to_send) {
        uint64_t left = s->to_send - s->sent;
        size_t n = left < len ? (size_t)left : len;
        for (size_t i = 0; i < n; i++)
            buf[i] = fx_pattern(s->sent + i, s->tx_seed);
        s->sent += n;
        if (s->sent == s->to_send && s->eof_after) {
            *eof = true;
            s->eof_sent = true;
        }
        return (ssize_t)n;
    }
    if (s->eof_after && !s->eof_sent) {
        *eof = true;
        s->eof_sent = true;
        return 0;
    }
    return -EAGAIN;
}

static const struct zt_h2_stream_ops fx_stream_ops = {
    .on_response = fx_st_on_response,
    .on_data = fx_st_on_data,
    .on_end = fx_st_on_end,
    .on_close = fx_st_on_close,
    .read = fx_st_read,
};

static inline struct fx_stream *fx_stream_slot(struct fx_peer *p)
{
    for (int i = 0; i < FX_STREAMS; i++)
        if (!p->streams[i].used) {
            memset(&p->streams[i], 0, sizeof(p->streams[i]));
            p->streams[i].used = true;
            p->streams[i].peer = p;
            p->streams[i].consume = true;
            return &p->streams[i];
        }
    abort();
}

/* Returns `pending` bytes to the windows and sends the WINDOW_UPDATEs. */
static inline void fx_stream_consume(struct fx_stream *s)
{
    if (s->peer->closed_calls)
        return;
    zt_h2conn_consume(s->peer->h2, s->id, (size_t)s->pending);
    s->pending = 0;
    zt_h2conn_flush(s->peer->h2);
}

static inline void fx_stream_resume(struct fx_stream *s)
{
    if (s->peer->closed_calls)
        return;
    zt_h2conn_resume(s->peer->h2, s->id);
    zt_h2conn_flush(s->peer->h2);
}

/* ---- connections ---- */

static inline int fx_on_ready(struct zt_h2conn *c, void *ud)
{
    struct fx_peer *p = ud;
    struct zt_spiffe_id id;
    p->ready_calls++;
    p->ready_seq = ++p->w->seq;
    p->peer_id_rc = zt_tls_peer_identity(zt_h2conn_ssl(c), &id);
    if (p->peer_id_rc == 0)
        zt_spiffe_format(&id, p->peer_id, sizeof(p->peer_id));
    return p->ready_ret;
}

static inline void fx_copy(char *dst, size_t cap, const char *src, bool *has)
{
    if (has)
        *has = src != NULL;
    snprintf(dst, cap, "%s", src ? src : "");
}

static inline void fx_on_request(struct zt_h2conn *c, void *ud, int32_t sid,
                                 const struct zt_h2_request *req)
{
    struct fx_peer *p = ud;
    p->nreq++;
    fx_copy(p->method, sizeof(p->method), req->method, NULL);
    fx_copy(p->authority, sizeof(p->authority), req->authority, NULL);
    fx_copy(p->baggage, sizeof(p->baggage), req->baggage, &p->has_baggage);
    fx_copy(p->forwarded, sizeof(p->forwarded), req->forwarded, &p->has_forwarded);
    fx_copy(p->traceparent, sizeof(p->traceparent), req->traceparent, &p->has_traceparent);
    if (p->w->srv_status != 200) {
        zt_h2conn_respond(c, sid, p->w->srv_status, NULL, 0);
        return;
    }
    struct fx_stream *s = fx_stream_slot(p);
    struct fx_stream keep = *s;
    *s = p->w->srv_tmpl;
    s->used = keep.used;
    s->peer = p;
    s->id = sid;
    zt_h2conn_attach(c, sid, &fx_stream_ops, s);
    static const char *const hdrs[] = {"baggage", "k8s.namespace.name=server-ns"};
    zt_h2conn_respond(c, sid, 200, hdrs, 1);
}

static inline void fx_on_draining(struct zt_h2conn *c, void *ud)
{
    struct fx_peer *p = ud;
    p->draining_calls++;
    p->draining_seq = ++p->w->seq;
}

static inline void fx_on_closed(struct zt_h2conn *c, void *ud, int error)
{
    struct fx_peer *p = ud;
    p->closed_calls++;
    p->close_err = error;
    p->closed_seq = ++p->w->seq;
}

static const struct zt_h2conn_ops fx_conn_ops = {
    .on_ready = fx_on_ready,
    .on_request = fx_on_request,
    .on_draining = fx_on_draining,
    .on_closed = fx_on_closed,
};

static inline struct fx_peer *fx_peer_slot(struct fx_peer *arr, struct fx_world *w,
                                           enum zt_h2conn_role role)
{
    for (int i = 0; i < FX_PEERS; i++)
        if (!arr[i].used) {
            memset(&arr[i], 0, sizeof(arr[i]));
            arr[i].used = true;
            arr[i].w = w;
            arr[i].role = role;
            return &arr[i];
        }
    abort();
}

static inline void fx_on_accept(uv_poll_t *h, int status, int events)
{
    struct fx_world *w = h->data;
    for (;;) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        w->accepts++;
        struct fx_peer *p = fx_peer_slot(w->srv, w, ZT_H2_SERVER);
        p->h2 =
            zt_h2conn_new(&w->loop, fd, w->sctx, ZT_H2_SERVER, &w->srv_settings, &fx_conn_ops, p);
        if (!p->h2)
            abort();
    }
}

/* A non-blocking TCP connect to the listener; returns the fd. */
static inline int fx_dial(struct fx_world *w)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(w->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS))
        abort();
    return fd;
}

/* A client connection with `ctx` (the world's client identity if NULL). */
static inline struct fx_peer *fx_client(struct fx_world *w, SSL_CTX *ctx)
{
    struct fx_peer *p = fx_peer_slot(w->cli, w, ZT_H2_CLIENT);
    p->h2 = zt_h2conn_new(&w->loop, fx_dial(w), ctx ? ctx : w->cctx, ZT_H2_CLIENT, &w->cli_settings,
                          &fx_conn_ops, p);
    if (!p->h2)
        abort();
    return p;
}

/* Opens a CONNECT stream on an OPEN client connection. */
static inline struct fx_stream *fx_connect(struct fx_peer *p, const char *authority,
                                           const char *const *hdrs, size_t n)
{
    struct fx_stream *s = fx_stream_slot(p);
    s->id = zt_h2conn_connect(p->h2, authority, hdrs, n, &fx_stream_ops, s);
    zt_h2conn_flush(p->h2);
    return s;
}

/* The server-side stream with id `sid` on server peer p, or NULL. */
static inline struct fx_stream *fx_srv_stream(struct fx_peer *p, int32_t sid)
{
    for (int i = 0; i < FX_STREAMS; i++)
        if (p->streams[i].used && p->streams[i].id == sid)
            return &p->streams[i];
    return NULL;
}

/* ---- world ---- */

static inline struct zt_tls_cert *fx_mint(struct zt_tls_localca *ca, const char *ns, const char *sa)
{
    struct zt_spiffe_id id;
    struct zt_tls_cert *c = NULL;
    if (zt_spiffe_make("cluster.local", ns, sa, &id) != 0 ||
        zt_tls_localca_mint(ca, &id, 3600, &c) != 0)
        abort();
    return c;
}

static inline void fx_tick(uv_timer_t *t)
{
}

static inline void fx_world_init(struct fx_world *w)
{
    memset(w, 0, sizeof(*w));
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&w->loop) != 0)
        abort();
    uv_timer_init(&w->loop, &w->tick);
    uv_timer_start(&w->tick, fx_tick, 5, 5);
    char err[256];
    if (!fx_ca_make(&w->ca, true) || zt_tls_localca_load(w->ca.dir, &w->lca, err, sizeof(err)))
        abort();
    w->srv_cert = fx_mint(w->lca, "server-ns", "server");
    w->cli_cert = fx_mint(w->lca, "client-ns", "client");
    w->cli2_cert = fx_mint(w->lca, "client-ns", "other");
    w->sctx = zt_tls_server_ctx_new(w->srv_cert);
    w->cctx = zt_tls_client_ctx_new(w->cli_cert);
    w->cctx2 = zt_tls_client_ctx_new(w->cli2_cert);
    if (!w->sctx || !w->cctx || !w->cctx2)
        abort();
    w->srv_settings =
        (struct zt_h2_settings){4 * FX_MIB, 16 * FX_MIB, FX_MIB, 64 * 1024, 200, 0, 0};
    w->cli_settings = (struct zt_h2_settings){4 * FX_MIB, 16 * FX_MIB, FX_MIB, 16 * 1024, 0, 0, 0};
    w->srv_status = 200;
    w->srv_tmpl.consume = true;

    w->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (w->lfd < 0 || bind(w->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(w->lfd, 64) < 0 || getsockname(w->lfd, (struct sockaddr *)&a, &len) < 0)
        abort();
    w->port = ntohs(a.sin_port);
    uv_poll_init(&w->loop, &w->lpoll, w->lfd);
    w->lpoll.data = w;
    uv_poll_start(&w->lpoll, UV_READABLE, fx_on_accept);
}

static inline void fx_close_all(struct fx_peer *arr)
{
    for (int i = 0; i < FX_PEERS; i++)
        if (arr[i].used && arr[i].h2 && !arr[i].closed_calls)
            zt_h2conn_close(arr[i].h2, ZT_E_CLOSED);
}

/* Closes everything; returns uv_loop_close's result (0 when no handle was
 * left behind). */
static inline int fx_world_free(struct fx_world *w)
{
    fx_close_all(w->cli);
    fx_close_all(w->srv);
    uv_close((uv_handle_t *)&w->lpoll, NULL);
    uv_close((uv_handle_t *)&w->tick, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    close(w->lfd);
    int rc = uv_loop_close(&w->loop);
    SSL_CTX_free(w->sctx);
    SSL_CTX_free(w->cctx);
    SSL_CTX_free(w->cctx2);
    zt_tls_cert_unref(w->srv_cert);
    zt_tls_cert_unref(w->cli_cert);
    zt_tls_cert_unref(w->cli2_cert);
    zt_tls_localca_free(w->lca);
    fx_ca_free(&w->ca);
    return rc;
}

#endif
