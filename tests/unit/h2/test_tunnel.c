/* Tunneled connections (zt_h2conn_new_tunneled, double HBONE's inner
 * tunnel): TLS + HTTP/2 inside a CONNECT stream of another connection.
 *
 * The success path runs through a stand-in network gateway: a server
 * connection on a socketpair whose CONNECT stream is piped, byte for byte,
 * to a second socketpair where one of the fixture's ordinary servers
 * listens; so the inner session's peer is a real TLS server that never
 * knows it is tunneled. Failure paths use the fixture's servers directly:
 * an error status, garbage instead of TLS, the outer connection going
 * away. */
#include "test.h"

#include "h2/fixture.h"

#include <fcntl.h>
#include <unistd.h>

#define WAIT_MS 10000

/* ---- the stand-in gateway ---- */

struct gateway {
    struct fx_world *w;
    struct zt_h2conn *h2; /* server role, on a socketpair */
    int32_t sid;
    int fd; /* our end of the pipe to the inner server */
    uv_poll_t poll;
    bool has_poll, is_closed, got_end;
    int stream_close_err, stream_closes;
    unsigned requests;
    char authority[128];
};

static void gw_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct gateway *g = sud;
    size_t off = 0;
    while (off < len) { /* the socket buffer is large: tests move far less */
        ssize_t n = write(g->fd, data + off, len - off);
        if (n <= 0)
            abort();
        off += (size_t)n;
    }
    zt_h2conn_consume(g->h2, g->sid, len);
}

static void gw_on_end(void *sud)
{
    struct gateway *g = sud;
    g->got_end = true;
    shutdown(g->fd, SHUT_WR);
}

static void gw_on_close(void *sud, int error)
{
    struct gateway *g = sud;
    g->stream_closes++;
    g->stream_close_err = error;
    g->sid = 0;
}

static ssize_t gw_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct gateway *g = sud;
    ssize_t n = recv(g->fd, buf, len, MSG_DONTWAIT);
    if (n > 0)
        return n;
    if (n == 0) {
        *eof = true;
        return 0;
    }
    return -EAGAIN;
}

static const struct zt_h2_stream_ops gw_stream_ops = {
    .on_data = gw_on_data,
    .on_end = gw_on_end,
    .on_close = gw_on_close,
    .read = gw_read,
};

static void gw_on_readable(uv_poll_t *h, int status, int events)
{
    struct gateway *g = h->data;
    if (g->is_closed || g->sid == 0) {
        uv_poll_stop(h);
        return;
    }
    zt_h2conn_resume(g->h2, g->sid);
    zt_h2conn_flush(g->h2);
}

static void gw_on_request(struct zt_h2conn *c, void *ud, int32_t sid,
                          const struct zt_h2_request *req)
{
    struct gateway *g = ud;
    g->requests++;
    snprintf(g->authority, sizeof(g->authority), "%s", req->authority);
    g->sid = sid;
    zt_h2conn_attach(c, sid, &gw_stream_ops, g);
    zt_h2conn_respond(c, sid, 200, NULL, 0);
    uv_poll_start(&g->poll, UV_READABLE, gw_on_readable);
}

static void gw_on_closed(struct zt_h2conn *c, void *ud, int error)
{
    struct gateway *g = ud;
    g->is_closed = true;
}

static const struct zt_h2conn_ops gw_conn_ops = {
    .on_request = gw_on_request,
    .on_closed = gw_on_closed,
};

static void big_buffers(int fd)
{
    int size = 4 * 1024 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

/* A client (the outer connection) to the gateway, and behind the gateway a
 * fixture server (*inner_srv) for whatever the gateway's stream carries. */
static struct fx_peer *gateway_up(struct fx_world *w, struct gateway *g, struct fx_peer **inner_srv)
{
    int outer[2], pipe_[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, outer) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pipe_) < 0)
        abort();
    big_buffers(pipe_[0]);
    big_buffers(pipe_[1]);
    memset(g, 0, sizeof(*g));
    g->w = w;
    g->fd = pipe_[0];
    fcntl(g->fd, F_SETFL, fcntl(g->fd, F_GETFL) & ~O_NONBLOCK); /* writes never wait: see above */
    uv_poll_init(&w->loop, &g->poll, g->fd);
    g->poll.data = g;
    g->has_poll = true;
    g->h2 =
        zt_h2conn_new(&w->loop, outer[1], w->sctx, ZT_H2_SERVER, &w->srv_settings, &gw_conn_ops, g);
    struct fx_peer *srv = fx_peer_slot(w->srv, w, ZT_H2_SERVER);
    srv->h2 = zt_h2conn_new(&w->loop, pipe_[1], w->sctx, ZT_H2_SERVER, &w->srv_settings,
                            &fx_conn_ops, srv);
    struct fx_peer *cli = fx_peer_slot(w->cli, w, ZT_H2_CLIENT);
    cli->h2 = zt_h2conn_new(&w->loop, outer[0], w->cctx, ZT_H2_CLIENT, &w->cli_settings,
                            &fx_conn_ops, cli);
    if (!g->h2 || !srv->h2 || !cli->h2)
        abort();
    *inner_srv = srv;
    return cli;
}

static void gateway_down(struct fx_world *w, struct gateway *g)
{
    if (!g->is_closed)
        zt_h2conn_close(g->h2, ZT_E_CLOSED);
    if (g->has_poll)
        uv_close((uv_handle_t *)&g->poll, NULL);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    close(g->fd);
}

static const char *const outer_hdrs[] = {"baggage", "k8s.namespace.name=client-ns"};
static const char *const inner_hdrs[] = {"x-forwarded-network", "n1"};

/* A tunneled connection via a client that is OPEN; its fx peer. */
static struct fx_peer *tunnel(struct fx_world *w, struct fx_peer *outer)
{
    struct fx_peer *p = fx_peer_slot(w->cli, w, ZT_H2_CLIENT);
    p->h2 = zt_h2conn_new_tunneled(outer->h2, "svc.ns.svc.cluster.local:80", outer_hdrs, 1, w->cctx,
                                   &w->cli_settings, &fx_conn_ops, p);
    zt_h2conn_flush(outer->h2);
    return p;
}

/* Through the gateway: the inner handshake is end to end (each side sees
 * the other's identity, the gateway only its outer peer), streams carry
 * 300 kB each way intact (more than the transport's 256 KiB buffer), and a
 * graceful shutdown of the inner connection ends the outer stream with
 * END_STREAM, which the gateway passes on as EOF. */
static void test_through_gateway(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct gateway g;
    struct fx_peer *srv;
    struct fx_peer *outer = gateway_up(&w, &g, &srv);
    FX_WAIT(&w, outer->ready_calls, WAIT_MS);
    CHECK_EQ_INT(outer->ready_calls, 1);

    struct fx_peer *in = tunnel(&w, outer);
    CHECK(in->h2 != NULL);
    CHECK_EQ_INT(zt_h2conn_fd(in->h2), -1);
    CHECK_EQ_INT(zt_h2conn_state(in->h2), ZT_H2_ST_TCP_CONNECTING);
    FX_WAIT(&w, in->ready_calls && srv->ready_calls, WAIT_MS);
    CHECK_EQ_INT(g.requests, 1);
    CHECK_EQ_STR(g.authority, "svc.ns.svc.cluster.local:80");
    CHECK_EQ_INT(in->ready_calls, 1);
    CHECK_EQ_STR(in->peer_id, "spiffe://cluster.local/ns/server-ns/sa/server");
    CHECK_EQ_INT(srv->ready_calls, 1);
    CHECK_EQ_STR(srv->peer_id, "spiffe://cluster.local/ns/client-ns/sa/client");
    CHECK(zt_tls_alpn_is_h2(zt_h2conn_ssl(in->h2)));
    CHECK_EQ_INT(zt_h2conn_state(in->h2), ZT_H2_ST_OPEN);

    w.srv_tmpl.to_send = 300000;
    w.srv_tmpl.eof_after = true;
    w.srv_tmpl.tx_seed = 5;
    w.srv_tmpl.rx_seed = 9;
    struct fx_stream *cs = fx_connect(in, "10.0.0.2:8080", inner_hdrs, 1);
    CHECK(cs->id > 0);
    cs->rx_seed = 5;
    cs->tx_seed = 9;
    cs->to_send = 300000;
    cs->eof_after = true;
    fx_stream_resume(cs);
    FX_WAIT(&w, cs->close_calls, WAIT_MS);
    struct fx_stream *ss = fx_srv_stream(srv, cs->id);
    CHECK(ss != NULL);
    CHECK_EQ_STR(srv->authority, "10.0.0.2:8080");
    CHECK_EQ_INT(cs->status, 200);
    CHECK_EQ_INT(cs->received, 300000);
    CHECK(!cs->data_bad);
    CHECK_EQ_INT(cs->close_err, 0);
    FX_WAIT(&w, ss && ss->close_calls, WAIT_MS);
    CHECK_EQ_INT(ss->received, 300000);
    CHECK(!ss->data_bad);
    CHECK_EQ_INT(ss->close_err, 0);

    zt_h2conn_shutdown(in->h2);
    FX_WAIT(&w, in->closed_calls && g.got_end && srv->closed_calls, WAIT_MS);
    CHECK_EQ_INT(in->closed_calls, 1);
    CHECK_EQ_INT(in->close_err, 0);
    CHECK(g.got_end); /* END_STREAM, not a reset */
    CHECK_EQ_INT(srv->closed_calls, 1);
    /* The outer connection stays up, its stream done on both sides. */
    FX_WAIT(&w, g.stream_closes && zt_h2conn_streams(outer->h2) == 0, WAIT_MS);
    CHECK_EQ_INT(g.stream_closes, 1);
    CHECK(!outer->closed_calls);
    CHECK_EQ_INT(zt_h2conn_streams(outer->h2), 0);
    gateway_down(&w, &g);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* An outer CONNECT answered 401 closes the tunneled connection with
 * ZT_E_DENIED, any other error status with ZT_E_UPSTREAM; nothing else
 * happens on the outer connection. */
static void test_outer_refused(void)
{
    const int statuses[] = {401, 503};
    const int errs[] = {ZT_E_DENIED, ZT_E_UPSTREAM};
    for (int i = 0; i < 2; i++) {
        struct fx_world w;
        fx_world_init(&w);
        w.srv_status = statuses[i];
        struct fx_peer *outer = fx_client(&w, NULL);
        FX_WAIT(&w, outer->ready_calls, WAIT_MS);
        struct fx_peer *in = tunnel(&w, outer);
        FX_WAIT(&w, in->closed_calls, WAIT_MS);
        CHECK_EQ_INT(in->ready_calls, 0);
        CHECK_EQ_INT(in->closed_calls, 1);
        CHECK_EQ_INT(in->close_err, errs[i]);
        CHECK_EQ_STR(w.srv[0].authority, "svc.ns.svc.cluster.local:80");
        CHECK_EQ_STR(w.srv[0].baggage, "k8s.namespace.name=client-ns");
        CHECK(!outer->closed_calls);
        CHECK_EQ_INT(fx_world_free(&w), 0);
    }
}

/* A stream that answers 200 and then sends bytes that are not TLS: the
 * handshake fails, the connection closes with an error and gives up the
 * outer stream (a CANCEL, which a server takes as the end of the stream);
 * the outer connection stays up. */
static void test_garbage_inside(void)
{
    struct fx_world w;
    fx_world_init(&w);
    w.srv_tmpl.to_send = 4096;
    struct fx_peer *outer = fx_client(&w, NULL);
    FX_WAIT(&w, outer->ready_calls, WAIT_MS);
    struct fx_peer *in = tunnel(&w, outer);
    FX_WAIT(&w, in->closed_calls, WAIT_MS);
    CHECK_EQ_INT(in->ready_calls, 0);
    CHECK_EQ_INT(in->closed_calls, 1);
    CHECK(in->close_err < 0);
    struct fx_stream *ss = &w.srv[0].streams[0];
    FX_WAIT(&w, ss->close_calls, WAIT_MS);
    CHECK_EQ_INT(ss->close_calls, 1);
    fx_run_for(&w, 20);
    CHECK(!outer->closed_calls);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* The outer connection closing takes the tunneled one with it (the server
 * never answers: the inner one is still waiting); a tunneled connection
 * cannot carry another. */
static void test_outer_closes(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct gateway g;
    struct fx_peer *srv;
    struct fx_peer *outer = gateway_up(&w, &g, &srv);
    FX_WAIT(&w, outer->ready_calls, WAIT_MS);
    struct fx_peer *in = tunnel(&w, outer);
    FX_WAIT(&w, in->ready_calls, WAIT_MS);
    CHECK_EQ_INT(in->ready_calls, 1);
    CHECK(zt_h2conn_new_tunneled(in->h2, "x:1", NULL, 0, w.cctx, &w.cli_settings, &fx_conn_ops,
                                 in) == NULL);
    zt_h2conn_close(outer->h2, ZT_E_CLOSED);
    FX_WAIT(&w, in->closed_calls, WAIT_MS);
    CHECK_EQ_INT(in->closed_calls, 1);
    CHECK(in->close_err != 0);
    gateway_down(&w, &g);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

int main(void)
{
    RUN(test_through_gateway);
    RUN(test_outer_refused);
    RUN(test_garbage_inside);
    RUN(test_outer_closes);
    return TEST_REPORT();
}
