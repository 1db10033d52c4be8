/* Sans-I/O HTTP/2 sessions paired in memory for unit tests: a CA with a
 * client and a server identity, two ends (client and server session plus
 * what their callbacks saw), streams that send 'x' bytes and count what they
 * receive, and sx_pump() moving the bytes one session produces into the other
 * until both are quiet. No sockets, no event loop; time is SX_T0 + whatever
 * a test passes to zt_h2_session_tick. */
#ifndef ZT_TEST_H2_SESSION_PAIR_H
#define ZT_TEST_H2_SESSION_PAIR_H

#include "base/err.h"
#include "h2/session.h"
#include "tls/ctx.h"
#include "tls/fixture.h"
#include "tls/localca.h"

#include <errno.h>
#include <stdio.h>

#define SX_MIB (1024u * 1024u)
#define SX_T0 1000000u /* the fake clock's start, in ms */

/* ---- one end of a stream ---- */

struct sx_stream {
    struct sx_end *end;
    int32_t id;
    int status, response_calls, end_calls, close_calls, close_err;
    uint64_t received, pending;
    bool consume;
    uint64_t to_send, sent;
    unsigned reads; /* calls of its body source */
    bool eof_after, eof_sent;
};

/* ---- one session and what its callbacks saw ---- */

struct sx_end {
    struct zt_h2_session *s;
    int ready_calls, draining_calls, closed_calls, close_err, ready_ret;
    unsigned nreq;
    char authority[128];
    int respond_status; /* server: answer to a request ... */
    /* ... or, if set, the status this returns for it (200 attaches). */
    int (*decide)(const struct zt_h2_request *req);
    bool consume_streams; /* server: streams consume what they get */
    struct sx_stream streams[8];
    unsigned nstreams;
};

static inline void sx_st_on_response(void *sud, int status)
{
    struct sx_stream *t = sud;
    t->status = status;
    t->response_calls++;
}

static inline void sx_st_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct sx_stream *t = sud;
    t->received += len;
    if (t->consume)
        zt_h2_session_consume(t->end->s, t->id, len);
    else
        t->pending += len;
}

static inline void sx_st_on_end(void *sud)
{
    struct sx_stream *t = sud;
    t->end_calls++;
}

static inline void sx_st_on_close(void *sud, int error)
{
    struct sx_stream *t = sud;
    t->close_calls++;
    t->close_err = error;
}

static inline ssize_t sx_st_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct sx_stream *t = sud;
    t->reads++;
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

static const struct zt_h2_stream_ops sx_stream_ops = {
    .on_response = sx_st_on_response,
    .on_data = sx_st_on_data,
    .on_end = sx_st_on_end,
    .on_close = sx_st_on_close,
    .read = sx_st_read,
};

static inline struct sx_stream *sx_stream_slot(struct sx_end *e)
{
    if (e->nstreams == 8)
        abort();
    struct sx_stream *t = &e->streams[e->nstreams++];
    memset(t, 0, sizeof(*t));
    t->end = e;
    t->consume = true;
    return t;
}

static inline int sx_on_ready(struct zt_h2_session *s, void *ud)
{
    struct sx_end *e = ud;
    e->ready_calls++;
    return e->ready_ret;
}

static inline void sx_on_request(struct zt_h2_session *s, void *ud, int32_t sid,
                                 const struct zt_h2_request *req)
{
    struct sx_end *e = ud;
    e->nreq++;
    snprintf(e->authority, sizeof(e->authority), "%s", req->authority);
    int status = e->decide ? e->decide(req) : e->respond_status;
    if (status != 200) {
        zt_h2_session_respond(s, sid, status, NULL, 0);
        return;
    }
    struct sx_stream *t = sx_stream_slot(e);
    t->id = sid;
    t->consume = e->consume_streams;
    zt_h2_session_attach(s, sid, &sx_stream_ops, t);
    zt_h2_session_respond(s, sid, 200, NULL, 0);
}

static inline void sx_on_draining(struct zt_h2_session *s, void *ud)
{
    struct sx_end *e = ud;
    e->draining_calls++;
}

static inline void sx_on_closed(struct zt_h2_session *s, void *ud, int error)
{
    struct sx_end *e = ud;
    e->closed_calls++;
    e->close_err = error;
}

static const struct zt_h2_session_ops sx_end_ops = {
    .on_ready = sx_on_ready,
    .on_request = sx_on_request,
    .on_draining = sx_on_draining,
    .on_closed = sx_on_closed,
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

static inline struct zt_tls_cert *sx_mint(struct zt_tls_localca *ca, const char *ns, const char *sa)
{
    struct zt_spiffe_id id;
    struct zt_tls_cert *c = NULL;
    if (zt_spiffe_make("cluster.local", ns, sa, &id) != 0 ||
        zt_tls_localca_mint(ca, &id, 3600, &c) != 0)
        abort();
    return c;
}

static inline void sx_world_init(struct sx_world *w)
{
    memset(w, 0, sizeof(*w));
    char err[256];
    if (!fx_ca_make(&w->ca, true) || zt_tls_localca_load(w->ca.dir, &w->lca, err, sizeof(err)))
        abort();
    w->srv_cert = sx_mint(w->lca, "server-ns", "server");
    w->cli_cert = sx_mint(w->lca, "client-ns", "client");
    w->sctx = zt_tls_server_ctx_new(w->srv_cert);
    w->cctx = zt_tls_client_ctx_new(w->cli_cert);
    if (!w->sctx || !w->cctx)
        abort();
    w->settings = (struct zt_h2_settings){4 * SX_MIB, 16 * SX_MIB, SX_MIB, 64 * 1024, 100, 0, 0};
    w->srv.respond_status = 200;
    w->srv.consume_streams = true;
}

static inline void sx_world_free(struct sx_world *w)
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
static inline size_t sx_move(struct zt_h2_session *from, struct zt_h2_session *to)
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
static inline void sx_pump(struct sx_world *w)
{
    for (int i = 0; i < 10000; i++)
        if (sx_move(w->cli.s, w->srv.s) + sx_move(w->srv.s, w->cli.s) == 0)
            return;
    abort(); /* a livelock is a bug */
}

static inline void sx_open_pair(struct sx_world *w, bool tls)
{
    w->cli.s = zt_h2_session_new(tls ? w->cctx : NULL, ZT_H2_CLIENT, &w->settings, &sx_end_ops,
                                 &w->cli, SX_T0);
    w->srv.s = zt_h2_session_new(tls ? w->sctx : NULL, ZT_H2_SERVER, &w->settings, &sx_end_ops,
                                 &w->srv, SX_T0);
    sx_pump(w);
}

#endif
