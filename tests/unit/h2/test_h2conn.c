/* HTTP/2-over-TLS connections over real loopback sockets: handshake and
 * identities, CONNECT streams, data both ways, flow control, head-of-line
 * independence, bad clients, and GOAWAY. */
#include "test.h"

#include "h2/fixture.h"

#define WAIT_MS 10000

static const char *const connect_hdrs[] = {
    "baggage",     "k8s.cluster.name=c1,k8s.namespace.name=client-ns",
    "forwarded",   "for=\"10.0.0.1:4567\";host=echo.default.svc.cluster.local",
    "traceparent", "00-0123456789abcdef0123456789abcdef-0123456789abcdef-00",
};

/* A client connection and its server peer, both OPEN. */
static bool open_pair(struct fx_world *w, struct fx_peer **cli, struct fx_peer **srv)
{
    unsigned before = w->accepts;
    *cli = fx_client(w, NULL);
    FX_WAIT(w, (*cli)->ready_calls && w->accepts > before && w->srv[before].ready_calls, WAIT_MS);
    *srv = &w->srv[before];
    return (*cli)->ready_calls == 1 && (*srv)->ready_calls == 1 && !(*cli)->closed_calls &&
           !(*srv)->closed_calls;
}

static void test_connect_and_data_both_ways(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    CHECK_EQ_INT(zt_h2conn_state(cli->h2), ZT_H2_ST_OPEN);
    CHECK_EQ_INT(zt_h2conn_state(srv->h2), ZT_H2_ST_OPEN);
    /* Each side sees the other's SPIFFE identity. */
    CHECK_EQ_INT(srv->peer_id_rc, 0);
    CHECK_EQ_STR(srv->peer_id, "spiffe://cluster.local/ns/client-ns/sa/client");
    CHECK_EQ_INT(cli->peer_id_rc, 0);
    CHECK_EQ_STR(cli->peer_id, "spiffe://cluster.local/ns/server-ns/sa/server");
    CHECK(zt_tls_alpn_is_h2(zt_h2conn_ssl(cli->h2)));
    CHECK(zt_h2conn_fd(cli->h2) >= 0);
    /* The server advertised 200 concurrent streams; the client advertised none. */
    FX_WAIT(&w, zt_h2conn_peer_max_streams(cli->h2) == 200, WAIT_MS);
    CHECK_EQ_INT(zt_h2conn_peer_max_streams(cli->h2), 200);
    CHECK_EQ_INT(zt_h2conn_peer_max_streams(srv->h2), UINT32_MAX);

    /* Server answers with 40000 bytes then END_STREAM, once its 200 is out. */
    w.srv_tmpl.to_send = 40000;
    w.srv_tmpl.eof_after = true;
    w.srv_tmpl.tx_seed = 7;
    w.srv_tmpl.rx_seed = 3;
    struct fx_stream *cs = fx_connect(cli, "10.0.0.2:8080", connect_hdrs, 3);
    CHECK(cs->id > 0);
    cs->rx_seed = 7;
    cs->tx_seed = 3;
    CHECK_EQ_INT(zt_h2conn_streams(cli->h2), 1);
    FX_WAIT(&w, srv->nreq == 1 && cs->response_calls == 1, WAIT_MS);
    CHECK_EQ_INT(srv->nreq, 1);
    CHECK_EQ_STR(srv->method, "CONNECT");
    CHECK_EQ_STR(srv->authority, "10.0.0.2:8080");
    CHECK_EQ_STR(srv->baggage, connect_hdrs[1]);
    CHECK_EQ_STR(srv->forwarded, connect_hdrs[3]);
    CHECK_EQ_STR(srv->traceparent, connect_hdrs[5]);
    CHECK_EQ_INT(cs->response_calls, 1);
    CHECK_EQ_INT(cs->status, 200);
    struct fx_stream *ss = fx_srv_stream(srv, cs->id);
    CHECK(ss != NULL);
    CHECK_EQ_INT(zt_h2conn_streams(srv->h2), 1);

    /* Server to client: all bytes, then on_end, but the stream stays open
     * while the client has not ended its side. */
    FX_WAIT(&w, cs->end_calls == 1, WAIT_MS);
    CHECK_EQ_INT(cs->received, 40000);
    CHECK(!cs->data_bad);
    CHECK_EQ_INT(cs->end_calls, 1);
    CHECK_EQ_INT(cs->close_calls, 0);
    CHECK(cs->response_seq < cs->end_seq);

    /* Client to server: nothing yet (read said EAGAIN); then data, resumed. */
    CHECK(cs->read_calls > 0);
    CHECK_EQ_INT(ss->received, 0);
    cs->to_send = 100000;
    fx_stream_resume(cs);
    FX_WAIT(&w, ss->received == 100000, WAIT_MS);
    CHECK_EQ_INT(ss->received, 100000);
    CHECK(!ss->data_bad);
    CHECK_EQ_INT(ss->end_calls, 0);
    fx_run_for(&w, 50);
    CHECK_EQ_INT(cs->close_calls, 0);
    CHECK_EQ_INT(ss->close_calls, 0);

    /* Client ends its side: both get their on_end/on_close(0), once. */
    cs->eof_after = true;
    fx_stream_resume(cs);
    FX_WAIT(&w, ss->close_calls && cs->close_calls, WAIT_MS);
    CHECK_EQ_INT(ss->end_calls, 1);
    CHECK_EQ_INT(ss->close_calls, 1);
    CHECK_EQ_INT(ss->close_err, 0);
    CHECK(ss->end_seq < ss->close_seq);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK_EQ_INT(cs->close_err, 0);
    CHECK(cs->end_seq < cs->close_seq);
    CHECK_EQ_INT(zt_h2conn_streams(srv->h2), 0);
    FX_WAIT(&w, zt_h2conn_streams(cli->h2) == 0, WAIT_MS);
    CHECK_EQ_INT(zt_h2conn_streams(cli->h2), 0);
    CHECK_EQ_INT(zt_h2conn_streams_opened(cli->h2), 1);
    CHECK_EQ_INT(zt_h2conn_streams_opened(srv->h2), 1);

    /* The connection stays up for more streams. */
    fx_run_for(&w, 50);
    CHECK(!cli->closed_calls && !srv->closed_calls);
    struct fx_stream *cs2 = fx_connect(cli, "10.0.0.2:8081", NULL, 0);
    CHECK(cs2->id > cs->id);
    FX_WAIT(&w, cs2->response_calls, WAIT_MS);
    CHECK_EQ_INT(cs2->status, 200);
    CHECK_EQ_INT(srv->nreq, 2);
    CHECK_EQ_STR(srv->authority, "10.0.0.2:8081");
    CHECK(!srv->has_baggage && !srv->has_forwarded && !srv->has_traceparent);
    CHECK_EQ_INT(fx_world_free(&w), 0);
    /* Everything got its on_close when the world was torn down. */
    CHECK_EQ_INT(cs2->close_calls, 1);
    CHECK_EQ_INT(cli->closed_calls, 1);
    CHECK_EQ_INT(srv->closed_calls, 1);
}

static void test_error_status_ends_stream(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    w.srv_status = 401;
    struct fx_stream *cs = fx_connect(cli, "10.0.0.2:8080", connect_hdrs, 3);
    CHECK(cs->id > 0);
    /* The client never ends its side: the server's final answer must still
     * close the stream. */
    FX_WAIT(&w, cs->close_calls, WAIT_MS);
    CHECK_EQ_INT(cs->response_calls, 1);
    CHECK_EQ_INT(cs->status, 401);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK(cs->response_seq < cs->close_seq);
    CHECK_EQ_INT(cs->received, 0);
    FX_WAIT(&w, zt_h2conn_streams(srv->h2) == 0 && zt_h2conn_streams(cli->h2) == 0, WAIT_MS);
    CHECK_EQ_INT(zt_h2conn_streams(srv->h2), 0);
    CHECK_EQ_INT(zt_h2conn_streams(cli->h2), 0);
    /* 503 too, and the connection stays usable. */
    w.srv_status = 503;
    struct fx_stream *cs2 = fx_connect(cli, "10.0.0.2:15008", NULL, 0);
    FX_WAIT(&w, cs2->close_calls, WAIT_MS);
    CHECK_EQ_INT(cs2->status, 503);
    CHECK_EQ_INT(cs2->close_calls, 1);
    CHECK(!cli->closed_calls && !srv->closed_calls);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* 20 MiB client -> server, more than both the 4 MiB stream window and the
 * 16 MiB connection window. */
static void test_flow_control(void)
{
    const uint64_t total = 20 * FX_MIB;
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));

    /* Receiver consumes as it goes: everything arrives. */
    struct fx_stream *cs = fx_connect(cli, "10.0.0.2:8080", NULL, 0);
    cs->to_send = total;
    cs->eof_after = true;
    cs->tx_seed = 11;
    w.srv_tmpl.rx_seed = 11;
    FX_WAIT(&w, cs->response_calls, WAIT_MS);
    fx_stream_resume(cs);
    struct fx_stream *ss = fx_srv_stream(srv, cs->id);
    CHECK(ss != NULL);
    FX_WAIT(&w, ss->end_calls, 30000);
    CHECK_EQ_INT(ss->received, total);
    CHECK(!ss->data_bad);
    CHECK_EQ_INT(ss->end_calls, 1);

    /* Receiver does not consume: the sender stops at the stream window. */
    w.srv_tmpl.consume = false;
    struct fx_stream *c2 = fx_connect(cli, "10.0.0.2:8080", NULL, 0);
    c2->to_send = total;
    c2->tx_seed = 11;
    c2->eof_after = true;
    FX_WAIT(&w, c2->response_calls, WAIT_MS);
    fx_stream_resume(c2);
    struct fx_stream *s2 = fx_srv_stream(srv, c2->id);
    CHECK(s2 != NULL);
    FX_WAIT(&w, s2->received >= 4 * FX_MIB, WAIT_MS);
    fx_run_for(&w, 300);
    uint64_t stalled = s2->received;
    CHECK_EQ_INT(stalled, 4 * FX_MIB);
    /* The sender's body source was not drained past what the window allows. */
    CHECK(c2->sent <= 4 * FX_MIB + 64 * 1024);
    fx_run_for(&w, 300);
    CHECK_EQ_INT(s2->received, stalled);
    CHECK_EQ_INT(s2->end_calls, 0);

    /* Consuming half the stream window reopens it by that much (nghttp2
     * batches stream WINDOW_UPDATEs to half a window). */
    s2->pending = 2 * FX_MIB;
    fx_stream_consume(s2);
    s2->pending = stalled - 2 * FX_MIB;
    FX_WAIT(&w, s2->received >= stalled + 2 * FX_MIB, WAIT_MS);
    fx_run_for(&w, 200);
    CHECK_EQ_INT(s2->received, stalled + 2 * FX_MIB);

    /* Consume everything from now on: the rest flows to the end. */
    s2->consume = true;
    fx_stream_consume(s2);
    FX_WAIT(&w, s2->end_calls, 30000);
    CHECK_EQ_INT(s2->received, total);
    CHECK(!s2->data_bad);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* Streams not consumed hold the connection window: with 16 MiB for the
 * connection and 4 MiB per stream, five stalled streams get 16 MiB in total. */
static void test_connection_window(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    w.srv_tmpl.consume = false;
    struct fx_stream *cs[5];
    for (int i = 0; i < 5; i++) {
        cs[i] = fx_connect(cli, "10.0.0.2:8080", NULL, 0);
        cs[i]->to_send = 8 * FX_MIB;
        cs[i]->tx_seed = (uint8_t)i;
    }
    FX_WAIT(&w, srv->nreq == 5 && cs[4]->response_calls, WAIT_MS);
    for (int i = 0; i < 5; i++) {
        fx_srv_stream(srv, cs[i]->id)->rx_seed = (uint8_t)i;
        fx_stream_resume(cs[i]);
    }
    uint64_t sum = 0;
    FX_WAIT(&w,
            (sum = 0, sum += fx_srv_stream(srv, cs[0]->id)->received,
             sum += fx_srv_stream(srv, cs[1]->id)->received,
             sum += fx_srv_stream(srv, cs[2]->id)->received,
             sum += fx_srv_stream(srv, cs[3]->id)->received,
             sum += fx_srv_stream(srv, cs[4]->id)->received, sum >= 16 * FX_MIB),
            WAIT_MS);
    fx_run_for(&w, 300);
    sum = 0;
    for (int i = 0; i < 5; i++) {
        struct fx_stream *s = fx_srv_stream(srv, cs[i]->id);
        CHECK(s->received <= 4 * FX_MIB);
        CHECK(!s->data_bad);
        sum += s->received;
    }
    CHECK_EQ_INT(sum, 16 * FX_MIB);
    /* Two readers resume: three stalled streams hold at most 12 MiB, so the
     * two run to the end on the rest. */
    struct fx_stream *s0 = fx_srv_stream(srv, cs[0]->id), *s1 = fx_srv_stream(srv, cs[1]->id);
    s0->consume = s1->consume = true;
    fx_stream_consume(s0);
    fx_stream_consume(s1);
    FX_WAIT(&w, s0->received == 8 * FX_MIB && s1->received == 8 * FX_MIB, 20000);
    CHECK_EQ_INT(s0->received, 8 * FX_MIB);
    CHECK_EQ_INT(s1->received, 8 * FX_MIB);
    for (int i = 2; i < 5; i++)
        CHECK(fx_srv_stream(srv, cs[i]->id)->received <= 4 * FX_MIB);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* Two streams, server -> client: A's reader stops, B's goes on to the end. */
static void test_no_head_of_line_blocking(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    w.srv_tmpl.to_send = 20 * FX_MIB;
    w.srv_tmpl.eof_after = true;
    w.srv_tmpl.tx_seed = 5;
    struct fx_stream *a = fx_connect(cli, "10.0.0.2:1", NULL, 0);
    a->consume = false;
    a->rx_seed = 5;
    struct fx_stream *b = fx_connect(cli, "10.0.0.2:2", NULL, 0);
    b->rx_seed = 5;
    FX_WAIT(&w, b->end_calls, 30000);
    CHECK_EQ_INT(b->received, 20 * FX_MIB);
    CHECK(!b->data_bad);
    CHECK_EQ_INT(b->end_calls, 1);
    CHECK_EQ_INT(a->received, 4 * FX_MIB);
    CHECK_EQ_INT(a->end_calls, 0);
    CHECK(!a->data_bad);
    fx_run_for(&w, 200);
    CHECK_EQ_INT(a->received, 4 * FX_MIB);
    /* A resumes once consumed. */
    a->consume = true;
    fx_stream_consume(a);
    FX_WAIT(&w, a->end_calls, 30000);
    CHECK_EQ_INT(a->received, 20 * FX_MIB);
    CHECK(!a->data_bad);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* Bad clients get their server connection closed; a live connection with an
 * open stream carries on. */
static void test_bad_clients_isolated(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    struct fx_stream *cs = fx_connect(cli, "10.0.0.2:8080", NULL, 0);
    FX_WAIT(&w, cs->response_calls, WAIT_MS);
    CHECK_EQ_INT(cs->status, 200);
    struct fx_stream *ss = fx_srv_stream(srv, cs->id);
    CHECK(ss != NULL);

    /* 1. Plain TCP, HTTP/1 garbage instead of a ClientHello. */
    unsigned k = w.accepts;
    int raw = fx_dial(&w);
    FX_WAIT(&w, w.accepts > k, WAIT_MS);
    CHECK(w.accepts == k + 1);
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(send(raw, junk, sizeof(junk) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(junk) - 1));
    FX_WAIT(&w, w.srv[k].closed_calls, WAIT_MS);
    CHECK_EQ_INT(w.srv[k].closed_calls, 1);
    CHECK(w.srv[k].close_err < 0);
    CHECK_EQ_INT(w.srv[k].ready_calls, 0);
    /* The socket was closed on that client. */
    char b[256];
    ssize_t got = 1;
    for (uint64_t dl = fx_now_ms() + WAIT_MS; fx_now_ms() < dl;) {
        uv_run(&w.loop, UV_RUN_ONCE);
        got = recv(raw, b, sizeof(b), 0);
        if (got == 0 || (got < 0 && errno != EAGAIN))
            break;
    }
    CHECK(got == 0 || (got < 0 && errno == ECONNRESET));
    close(raw);

    /* 2. A TLS client that offers only http/1.1. */
    SSL_CTX *h1 = zt_tls_client_ctx_new(w.cli_cert);
    CHECK(h1 != NULL);
    static const unsigned char h1_alpn[] = "\x08http/1.1";
    CHECK_EQ_INT(SSL_CTX_set_alpn_protos(h1, h1_alpn, sizeof(h1_alpn) - 1), 0);
    k = w.accepts;
    struct fx_peer *bad1 = fx_client(&w, h1);
    FX_WAIT(&w, bad1->closed_calls && w.accepts > k && w.srv[k].closed_calls, WAIT_MS);
    CHECK_EQ_INT(bad1->closed_calls, 1);
    CHECK_EQ_INT(bad1->ready_calls, 0);
    CHECK(bad1->close_err < 0);
    CHECK_EQ_INT(w.srv[k].closed_calls, 1);
    CHECK_EQ_INT(w.srv[k].ready_calls, 0);

    /* 3. A TLS client that offers no ALPN at all. */
    SSL_CTX *none = zt_tls_client_ctx_new(w.cli_cert);
    CHECK(none != NULL);
    CHECK_EQ_INT(SSL_CTX_set_alpn_protos(none, NULL, 0), 0);
    k = w.accepts;
    struct fx_peer *bad2 = fx_client(&w, none);
    FX_WAIT(&w, bad2->closed_calls && w.accepts > k && w.srv[k].closed_calls, WAIT_MS);
    CHECK_EQ_INT(bad2->closed_calls, 1);
    CHECK_EQ_INT(bad2->ready_calls, 0);
    CHECK_EQ_INT(w.srv[k].closed_calls, 1);
    CHECK_EQ_INT(w.srv[k].ready_calls, 0);
    SSL_CTX_free(h1);
    SSL_CTX_free(none);

    /* 4. A client whose certificate comes from another CA. */
    struct fx_ca other;
    struct zt_tls_localca *olca = NULL;
    char err[256];
    CHECK(fx_ca_make(&other, false));
    CHECK_EQ_INT(zt_tls_localca_load(other.dir, &olca, err, sizeof(err)), 0);
    struct zt_tls_cert *ocert = fx_mint(olca, "client-ns", "client");
    SSL_CTX *octx = zt_tls_client_ctx_new(ocert);
    k = w.accepts;
    struct fx_peer *bad3 = fx_client(&w, octx);
    FX_WAIT(&w, bad3->closed_calls && w.accepts > k && w.srv[k].closed_calls, WAIT_MS);
    CHECK_EQ_INT(bad3->closed_calls, 1);
    CHECK_EQ_INT(bad3->ready_calls, 0);
    CHECK_EQ_INT(w.srv[k].closed_calls, 1);
    CHECK_EQ_INT(w.srv[k].ready_calls, 0);
    SSL_CTX_free(octx);
    zt_tls_cert_unref(ocert);
    zt_tls_localca_free(olca);
    fx_ca_free(&other);

    /* The good connection and its stream are untouched and still carry data. */
    CHECK(!cli->closed_calls && !srv->closed_calls);
    CHECK_EQ_INT(cs->close_calls, 0);
    cs->to_send = 300000;
    fx_stream_resume(cs);
    ss->to_send = 200000;
    fx_stream_resume(ss);
    FX_WAIT(&w, ss->received == 300000 && cs->received == 200000, WAIT_MS);
    CHECK_EQ_INT(ss->received, 300000);
    CHECK_EQ_INT(cs->received, 200000);
    CHECK(!ss->data_bad && !cs->data_bad);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* A client whose on_ready refuses the server (identity check) closes with
 * that error, and no stream can be opened. */
static void test_on_ready_refusal(void)
{
    struct fx_world w;
    fx_world_init(&w);
    unsigned k = w.accepts;
    struct fx_peer *cli = fx_peer_slot(w.cli, &w, ZT_H2_CLIENT);
    cli->ready_ret = ZT_E_IDENTITY;
    cli->h2 = zt_h2conn_new(&w.loop, fx_dial(&w), w.cctx, ZT_H2_CLIENT, &w.cli_settings,
                            &fx_conn_ops, cli);
    CHECK(cli->h2 != NULL);
    CHECK_EQ_INT(zt_h2conn_state(cli->h2), ZT_H2_ST_TCP_CONNECTING);
    FX_WAIT(&w, cli->closed_calls && w.accepts > k && w.srv[k].closed_calls, WAIT_MS);
    CHECK_EQ_INT(cli->ready_calls, 1);
    CHECK_EQ_INT(cli->closed_calls, 1);
    CHECK_EQ_INT(cli->close_err, ZT_E_IDENTITY);
    CHECK_EQ_INT(w.srv[k].closed_calls, 1);
    CHECK_EQ_INT(w.srv[k].nreq, 0);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* Connecting to a closed port ends in on_closed with the socket error. */
static void test_connect_refused(void)
{
    struct fx_world w;
    fx_world_init(&w);
    /* A bound socket that does not listen holds a port nobody accepts on. */
    int hold = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    CHECK(bind(hold, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(getsockname(hold, (struct sockaddr *)&a, &len) == 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0);
    struct fx_peer *cli = fx_peer_slot(w.cli, &w, ZT_H2_CLIENT);
    cli->h2 = zt_h2conn_new(&w.loop, fd, w.cctx, ZT_H2_CLIENT, &w.cli_settings, &fx_conn_ops, cli);
    FX_WAIT(&w, cli->closed_calls, WAIT_MS);
    CHECK_EQ_INT(cli->closed_calls, 1);
    CHECK_EQ_INT(cli->close_err, -ECONNREFUSED);
    CHECK_EQ_INT(cli->ready_calls, 0);
    close(hold);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* GOAWAY from `from`: the other side drains, refuses new streams, the open
 * stream completes, and both connections close after it ends. */
static void goaway_case(bool server_sends)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    struct fx_stream *cs = fx_connect(cli, "10.0.0.2:8080", NULL, 0);
    FX_WAIT(&w, cs->response_calls, WAIT_MS);
    CHECK_EQ_INT(cs->status, 200);
    struct fx_stream *ss = fx_srv_stream(srv, cs->id);
    CHECK(ss != NULL);

    struct fx_peer *from = server_sends ? srv : cli, *to = server_sends ? cli : srv;
    zt_h2conn_shutdown(from->h2);
    CHECK_EQ_INT(zt_h2conn_state(from->h2), ZT_H2_ST_DRAINING);
    FX_WAIT(&w, to->draining_calls, WAIT_MS);
    CHECK_EQ_INT(to->draining_calls, 1);
    CHECK_EQ_INT(zt_h2conn_state(to->h2), ZT_H2_ST_DRAINING);
    /* No new streams from the client. */
    struct fx_stream *late = fx_stream_slot(cli);
    CHECK(zt_h2conn_connect(cli->h2, "10.0.0.2:9", NULL, 0, &fx_stream_ops, late) < 0);
    CHECK_EQ_INT(late->close_calls, 0);
    late->used = false;
    fx_run_for(&w, 100);
    CHECK_EQ_INT(srv->nreq, 1);
    CHECK(!cli->closed_calls && !srv->closed_calls);

    /* The open stream still carries data both ways. */
    cs->to_send = 50000;
    fx_stream_resume(cs);
    ss->to_send = 60000;
    fx_stream_resume(ss);
    FX_WAIT(&w, ss->received == 50000 && cs->received == 60000, WAIT_MS);
    CHECK_EQ_INT(ss->received, 50000);
    CHECK_EQ_INT(cs->received, 60000);
    fx_run_for(&w, 50);
    CHECK(!cli->closed_calls && !srv->closed_calls);

    /* Both ends finish: the stream closes cleanly, then both connections. */
    cs->eof_after = true;
    fx_stream_resume(cs);
    ss->eof_after = true;
    fx_stream_resume(ss);
    FX_WAIT(&w, cli->closed_calls && srv->closed_calls, WAIT_MS);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK_EQ_INT(cs->close_err, 0);
    CHECK_EQ_INT(ss->close_calls, 1);
    CHECK_EQ_INT(ss->close_err, 0);
    CHECK_EQ_INT(cli->closed_calls, 1);
    CHECK_EQ_INT(srv->closed_calls, 1);
    CHECK(cs->close_seq < cli->closed_seq);
    CHECK(ss->close_seq < srv->closed_seq);
    /* The side that sent GOAWAY closed by itself, cleanly. */
    CHECK_EQ_INT(from->close_err, 0);
    CHECK_EQ_INT(to->close_err, 0);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

static void test_goaway_from_server(void)
{
    goaway_case(true);
}

static void test_goaway_from_client(void)
{
    goaway_case(false);
}

/* Shutdown with no stream open closes at once; the peer sees GOAWAY or EOF. */
static void test_goaway_idle(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    zt_h2conn_shutdown(srv->h2);
    FX_WAIT(&w, cli->closed_calls && srv->closed_calls, WAIT_MS);
    CHECK_EQ_INT(srv->closed_calls, 1);
    CHECK_EQ_INT(srv->close_err, 0);
    CHECK_EQ_INT(cli->closed_calls, 1);
    CHECK(cli->draining_calls <= 1);
    /* Clean, or reset because the server closed with our last frames unread;
     * never a bogus "bad file descriptor". */
    CHECK(cli->close_err == 0 || cli->close_err == -ECONNRESET);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* A client reset reaches the server stream as an orderly end. */
static void test_reset_by_client(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    struct fx_stream *cs = fx_connect(cli, "10.0.0.2:8080", NULL, 0);
    FX_WAIT(&w, cs->response_calls, WAIT_MS);
    struct fx_stream *ss = fx_srv_stream(srv, cs->id);
    CHECK(ss != NULL);
    zt_h2conn_reset(cli->h2, cs->id);
    zt_h2conn_flush(cli->h2);
    FX_WAIT(&w, ss->close_calls && cs->close_calls, WAIT_MS);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK_EQ_INT(ss->close_calls, 1);
    /* wire facts 2.2: a peer's RST_STREAM CANCEL is read as EOF. */
    CHECK_EQ_INT(ss->close_err, 0);
    CHECK_EQ_INT(zt_h2conn_streams(srv->h2), 0);
    CHECK(!cli->closed_calls && !srv->closed_calls);

    /* Detach: no more callbacks for that stream, and the server sees it end. */
    struct fx_stream *cs2 = fx_connect(cli, "10.0.0.2:8080", NULL, 0);
    FX_WAIT(&w, cs2->response_calls, WAIT_MS);
    struct fx_stream *ss2 = fx_srv_stream(srv, cs2->id);
    CHECK(ss2 != NULL);
    zt_h2conn_detach(cli->h2, cs2->id);
    zt_h2conn_flush(cli->h2);
    ss2->to_send = 1000;
    fx_stream_resume(ss2);
    FX_WAIT(&w, ss2->close_calls, WAIT_MS);
    fx_run_for(&w, 50);
    CHECK_EQ_INT(ss2->close_calls, 1);
    CHECK_EQ_INT(cs2->close_calls, 0);
    CHECK_EQ_INT(cs2->received, 0);
    CHECK_EQ_INT(zt_h2conn_streams(cli->h2), 0);
    CHECK_EQ_INT(fx_world_free(&w), 0);
    CHECK_EQ_INT(cs2->close_calls, 0);
}

/* Three readers stall with their 4 MiB windows full (12 of the 16 MiB
 * connection window); a fourth stream that consumes must still run to the
 * end on the rest. */
static void test_stalled_streams_leave_room(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    w.srv_tmpl.to_send = 20 * FX_MIB;
    w.srv_tmpl.eof_after = true;
    struct fx_stream *st[3];
    for (int i = 0; i < 3; i++) {
        st[i] = fx_connect(cli, "10.0.0.2:1", NULL, 0);
        st[i]->consume = false;
    }
    FX_WAIT(&w, st[0]->received + st[1]->received + st[2]->received == 12 * FX_MIB, WAIT_MS);
    CHECK_EQ_INT(st[0]->received + st[1]->received + st[2]->received, 12 * FX_MIB);
    struct fx_stream *live = fx_connect(cli, "10.0.0.2:2", NULL, 0);
    FX_WAIT(&w, live->end_calls, 20000);
    CHECK_EQ_INT(live->received, 20 * FX_MIB);
    CHECK(!live->data_bad);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* Streams reset while holding unconsumed bytes must give them back to the
 * connection window: eight such streams hold 24 MiB in total, more than the
 * 16 MiB connection window. */
static void test_reset_returns_window(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    w.srv_tmpl.to_send = 3 * FX_MIB;
    for (int i = 0; i < 8; i++) {
        struct fx_stream *s = fx_connect(cli, "10.0.0.2:1", NULL, 0);
        s->consume = false;
        FX_WAIT(&w, s->received == 3 * FX_MIB, WAIT_MS);
        if (s->received != 3 * FX_MIB)
            fprintf(stderr, "  stream %d got %llu\n", i, (unsigned long long)s->received);
        CHECK_EQ_INT(s->received, 3 * FX_MIB);
        /* The owner gives up on the stream without consuming. */
        zt_h2conn_reset(cli->h2, s->id);
        zt_h2conn_flush(cli->h2);
        FX_WAIT(&w, s->close_calls, WAIT_MS);
        CHECK_EQ_INT(s->close_calls, 1);
    }
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* zt_h2conn_flush_soon sends nothing by itself: what two streams queued
 * leaves at zt_h2conn_flush_queued, in one go; a connection closed while
 * queued is skipped (ASan). */
static void test_flush_soon(void)
{
    struct fx_world w;
    fx_world_init(&w);
    struct fx_peer *cli, *srv;
    CHECK(open_pair(&w, &cli, &srv));
    struct fx_stream *a = fx_connect(cli, "10.0.0.2:8080", NULL, 0);
    struct fx_stream *b = fx_connect(cli, "10.0.0.2:8081", NULL, 0);
    FX_WAIT(&w, a->response_calls && b->response_calls, WAIT_MS);
    fx_run_for(&w, 20);
    a->to_send = b->to_send = 1000;
    zt_h2conn_resume(cli->h2, a->id);
    zt_h2conn_flush_soon(cli->h2);
    zt_h2conn_resume(cli->h2, b->id);
    zt_h2conn_flush_soon(cli->h2);
    CHECK_EQ_INT(a->sent + b->sent, 0); /* nothing produced, so nothing sent, yet */
    zt_h2conn_flush_queued();
    CHECK_EQ_INT(a->sent + b->sent, 2000); /* both streams, in one flush */
    struct fx_stream *sa = fx_srv_stream(srv, a->id), *sb = fx_srv_stream(srv, b->id);
    FX_WAIT(&w, sa && sb && sa->received == 1000 && sb->received == 1000, WAIT_MS);
    CHECK(sa && sb && sa->received == 1000 && sb->received == 1000);
    a->to_send = 2000;
    zt_h2conn_resume(cli->h2, a->id);
    zt_h2conn_flush_soon(cli->h2);
    zt_h2conn_close(cli->h2, 0);
    FX_WAIT(&w, cli->closed_calls, WAIT_MS);
    zt_h2conn_flush_queued();
    CHECK_EQ_INT(cli->closed_calls, 1);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

int main(void)
{
    RUN(test_connect_and_data_both_ways);
    RUN(test_error_status_ends_stream);
    RUN(test_flow_control);
    RUN(test_connection_window);
    RUN(test_no_head_of_line_blocking);
    RUN(test_bad_clients_isolated);
    RUN(test_on_ready_refusal);
    RUN(test_connect_refused);
    RUN(test_goaway_from_server);
    RUN(test_goaway_from_client);
    RUN(test_goaway_idle);
    RUN(test_reset_by_client);
    RUN(test_stalled_streams_leave_room);
    RUN(test_reset_returns_window);
    RUN(test_flush_soon);
    return TEST_REPORT();
}
