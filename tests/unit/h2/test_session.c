/* The sans-I/O HTTP/2 session with no sockets: a client and a server session
 * paired in memory (the bytes one produces are fed to the other), a fake
 * clock for the handshake and keepalive timeouts, and plaintext sessions for
 * raw frames. */
#include "test.h"

#include "h2/session_pair.h"

/* ---- tests ---- */

static void test_no_callback_inside_new(void)
{
    struct sx_world w;
    sx_world_init(&w);
    w.cli.s = zt_h2_session_new(w.cctx, ZT_H2_CLIENT, &w.settings, &sx_end_ops, &w.cli, SX_T0);
    CHECK_EQ_INT(zt_h2_session_state(w.cli.s), ZT_H2_SESS_HANDSHAKE);
    CHECK_EQ_INT(w.cli.ready_calls, 0);
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), SX_T0 + 10000);
    /* The ClientHello comes out on the first out(). */
    const uint8_t *p;
    size_t n;
    CHECK_EQ_INT(zt_h2_session_out(w.cli.s, &p, &n), 0);
    CHECK(n > 0 && p[0] == 22); /* a TLS handshake record */
    sx_world_free(&w);
}

static void test_connect_200_and_data(void)
{
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
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

    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->to_send = 300000;
    cs->eof_after = true;
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs);
    CHECK(cs->id > 0);
    sx_pump(&w);
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
    sx_pump(&w);
    CHECK_EQ_INT(cs->received, 200000);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK_EQ_INT(cs->close_err, 0);
    CHECK_EQ_INT(ss->close_calls, 1);
    CHECK_EQ_INT(zt_h2_session_streams(w.cli.s), 0);
    CHECK_EQ_INT(zt_h2_session_streams(w.srv.s), 0);
    CHECK_EQ_INT(zt_h2_session_streams_opened(w.srv.s), 1);
    CHECK_EQ_INT(w.cli.closed_calls + w.srv.closed_calls, 0);
    /* Freeing an open session closes it and says so. */
    sx_world_free(&w);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(w.cli.close_err, ZT_E_CLOSED);
}

/* A stream detached before its CONNECT left the session (queued, not yet
 * sent: nghttp2 has no stream object for it then) gets no callback when
 * the answer comes: its owner may be gone. */
static void test_detach_before_sent(void)
{
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs);
    CHECK(cs->id > 0);
    zt_h2_session_detach(w.cli.s, cs->id);
    /* Positive control: a second stream, not detached, is answered. */
    struct sx_stream *c2 = sx_stream_slot(&w.cli);
    c2->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8081", NULL, 0, &sx_stream_ops, c2);
    sx_pump(&w);
    int calls = cs->response_calls + cs->close_calls + cs->end_calls;
    int c2_status = c2->status;
    sx_world_free(&w);
    CHECK_EQ_INT(calls, 0);
    CHECK_EQ_INT(c2_status, 200);
}

/* close_when_idle right after a CONNECT was submitted: the CONNECT still
 * goes out and is answered (a GOAWAY at once would have cancelled it);
 * once the stream ends, the session closes. */
static void test_close_when_idle(void)
{
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->to_send = 1000;
    cs->eof_after = true;
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs);
    zt_h2_session_close_when_idle(w.cli.s);
    sx_pump(&w);
    int status = cs->status, nreq = (int)w.srv.nreq, closed_before = w.cli.closed_calls;
    struct sx_stream *ss = &w.srv.streams[0];
    ss->to_send = 10;
    ss->eof_after = true;
    zt_h2_session_resume(w.srv.s, ss->id);
    sx_pump(&w);
    int closed_after = w.cli.closed_calls, err = w.cli.close_err, received = (int)cs->received;
    sx_world_free(&w);
    CHECK_EQ_INT(status, 200);
    CHECK_EQ_INT(nreq, 1);
    CHECK_EQ_INT(closed_before, 0);
    CHECK_EQ_INT(received, 10);
    CHECK_EQ_INT(closed_after, 1);
    CHECK_EQ_INT(err, 0);
}

/* A tunnel-style stream (is_body_on_resume): nghttp2 holds no body source
 * for it until the owner resumes, and drops it once a read comes up short,
 * so an idle stream costs nothing there; bytes and END_STREAM still flow. */
static void test_body_on_resume(void)
{
    struct zt_h2_stream_ops resume_stream_ops = sx_stream_ops;
    resume_stream_ops.is_body_on_resume = true;
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &resume_stream_ops, cs);
    CHECK(cs->id > 0);
    sx_pump(&w);
    CHECK_EQ_INT(cs->status, 200);
    CHECK_EQ_INT(cs->reads, 0); /* nothing asked before a resume */
    struct sx_stream *ss = &w.srv.streams[0];
    cs->to_send = 1000;
    zt_h2_session_resume(w.cli.s, cs->id);
    sx_pump(&w);
    CHECK_EQ_INT(ss->received, 1000);
    CHECK_EQ_INT(cs->reads, 1); /* short: no second read, nothing deferred */
    sx_pump(&w);
    CHECK_EQ_INT(cs->reads, 1);
    /* A resume without data defers, as any body source; the next resume
     * goes on from there. */
    zt_h2_session_resume(w.cli.s, cs->id);
    sx_pump(&w);
    CHECK_EQ_INT(cs->reads, 2);
    cs->to_send = 200000;
    cs->eof_after = true;
    zt_h2_session_resume(w.cli.s, cs->id);
    sx_pump(&w);
    CHECK_EQ_INT(ss->received, 200000);
    CHECK_EQ_INT(ss->end_calls, 1);
    CHECK_EQ_INT(cs->close_calls, 0);
    CHECK_EQ_INT(zt_h2_session_streams(w.cli.s), 1);
    sx_world_free(&w);
}

static void test_error_status(void)
{
    struct sx_world w;
    sx_world_init(&w);
    w.srv.respond_status = 403;
    sx_open_pair(&w, true);
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs);
    sx_pump(&w);
    CHECK_EQ_INT(cs->status, 403);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK_EQ_INT(zt_h2_session_streams(w.srv.s), 0);
    sx_world_free(&w);
}

static void test_handshake_failure(void)
{
    struct sx_world w;
    sx_world_init(&w);
    /* A client whose certificate comes from another CA. */
    struct fx_ca other;
    struct zt_tls_localca *olca;
    char err[256];
    CHECK(fx_ca_make(&other, false) &&
          zt_tls_localca_load(other.dir, &olca, err, sizeof(err)) == 0);
    struct zt_tls_cert *ocert = sx_mint(olca, "client-ns", "client");
    SSL_CTX *octx = zt_tls_client_ctx_new(ocert);
    CHECK(octx != NULL);
    w.cli.s = zt_h2_session_new(octx, ZT_H2_CLIENT, &w.settings, &sx_end_ops, &w.cli, SX_T0);
    w.srv.s = zt_h2_session_new(w.sctx, ZT_H2_SERVER, &w.settings, &sx_end_ops, &w.srv, SX_T0);
    sx_pump(&w);
    CHECK_EQ_INT(w.cli.ready_calls + w.srv.ready_calls, 0);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(w.cli.close_err, ZT_E_TLS);
    CHECK_EQ_INT(w.srv.closed_calls, 1);
    CHECK_EQ_INT(w.srv.close_err, ZT_E_TLS);
    CHECK_EQ_INT(zt_h2_session_state(w.srv.s), ZT_H2_SESS_CLOSED);
    /* Operations on a closed session fail without callbacks. */
    CHECK_EQ_INT(zt_h2_session_connect(w.cli.s, "10.0.0.2:80", NULL, 0, &sx_stream_ops, NULL),
                 ZT_E_CLOSED);
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), UINT64_MAX);
    SSL_CTX_free(octx);
    zt_tls_cert_unref(ocert);
    zt_tls_localca_free(olca);
    fx_ca_free(&other);
    sx_world_free(&w);
}

static void test_on_ready_refusal(void)
{
    struct sx_world w;
    sx_world_init(&w);
    w.cli.ready_ret = ZT_E_IDENTITY;
    sx_open_pair(&w, true);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(w.cli.close_err, ZT_E_IDENTITY);
    sx_world_free(&w);
}

static void test_handshake_timeout(void)
{
    struct sx_world w;
    sx_world_init(&w);
    w.srv.s = zt_h2_session_new(w.sctx, ZT_H2_SERVER, &w.settings, &sx_end_ops, &w.srv, SX_T0);
    CHECK_EQ_INT(zt_h2_session_tick(w.srv.s, SX_T0 + 9999), 0);
    CHECK_EQ_INT(w.srv.closed_calls, 0);
    CHECK_EQ_INT(zt_h2_session_tick(w.srv.s, zt_h2_session_deadline(w.srv.s)), ZT_E_TIMEOUT);
    CHECK_EQ_INT(w.srv.closed_calls, 1);
    CHECK_EQ_INT(w.srv.close_err, ZT_E_TIMEOUT);
    sx_world_free(&w);
}

/* A receiver that does not consume stops its sender at the stream window;
 * consuming lets the rest through. */
static void test_flow_control_backpressure(void)
{
    struct sx_world w;
    sx_world_init(&w);
    w.settings.stream_window = 256 * 1024;
    w.srv.consume_streams = false;
    sx_open_pair(&w, true);
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->to_send = 1 * SX_MIB;
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs);
    sx_pump(&w);
    struct sx_stream *ss = &w.srv.streams[0];
    CHECK_EQ_INT(ss->received, 256 * 1024);
    CHECK_EQ_INT(cs->sent, 256 * 1024);
    /* A second stream is not blocked by the first (connection window). */
    struct sx_stream *cs2 = sx_stream_slot(&w.cli);
    cs2->to_send = 100000;
    cs2->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8081", NULL, 0, &sx_stream_ops, cs2);
    sx_pump(&w);
    CHECK_EQ_INT(w.srv.streams[1].received, 100000);
    /* Consuming half opens half a window. */
    zt_h2_session_consume(w.srv.s, ss->id, 128 * 1024);
    ss->pending -= 128 * 1024;
    sx_pump(&w);
    CHECK_EQ_INT(ss->received, 384 * 1024);
    while (ss->received < SX_MIB) {
        uint64_t before = ss->received;
        zt_h2_session_consume(w.srv.s, ss->id, (size_t)ss->pending);
        ss->pending = 0;
        sx_pump(&w);
        CHECK(ss->received > before);
    }
    CHECK_EQ_INT(ss->received, SX_MIB);
    /* Consuming more than was received is capped, not a window overflow. */
    zt_h2_session_consume(w.srv.s, ss->id, 10 * SX_MIB);
    sx_pump(&w);
    CHECK_EQ_INT(w.cli.closed_calls + w.srv.closed_calls, 0);
    sx_world_free(&w);
}

/* The server drains: the client learns it, opens nothing new, the stream in
 * flight finishes, and both close cleanly. */
static void test_goaway_drain(void)
{
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs);
    sx_pump(&w);
    CHECK_EQ_INT(cs->status, 200);
    zt_h2_session_shutdown(w.srv.s);
    CHECK_EQ_INT(zt_h2_session_state(w.srv.s), ZT_H2_SESS_DRAINING);
    sx_pump(&w);
    CHECK_EQ_INT(w.cli.draining_calls, 1);
    CHECK_EQ_INT(zt_h2_session_state(w.cli.s), ZT_H2_SESS_DRAINING);
    CHECK_EQ_INT(zt_h2_session_connect(w.cli.s, "10.0.0.2:8081", NULL, 0, &sx_stream_ops, NULL),
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
    sx_pump(&w);
    CHECK_EQ_INT(ss->received, 50000);
    CHECK_EQ_INT(cs->received, 70000);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK_EQ_INT(cs->close_err, 0);
    CHECK_EQ_INT(w.srv.closed_calls, 1);
    CHECK_EQ_INT(w.srv.close_err, 0);
    sx_world_free(&w);
}

/* A stream the client opened before it read the server's GOAWAY (it
 * crossed it on the wire) is served, not refused: the server says GOAWAY
 * in two steps. Then the client opens nothing new and the server closes
 * once both streams ended. */
static void test_goaway_crossing_stream(void)
{
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
    w.srv.consume_streams = true;
    struct sx_stream *c1 = sx_stream_slot(&w.cli);
    c1->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, c1);
    sx_pump(&w);
    CHECK_EQ_INT(c1->status, 200);
    zt_h2_session_shutdown(w.srv.s);
    struct sx_stream *c2 = sx_stream_slot(&w.cli);
    c2->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, c2);
    CHECK(c2->id > 0);
    /* The client's HEADERS reach the server before its GOAWAY reaches the
     * client. */
    sx_move(w.cli.s, w.srv.s);
    sx_pump(&w);
    CHECK_EQ_INT(c2->status, 200);
    CHECK_EQ_INT(c2->close_calls, 0);
    CHECK_EQ_INT(w.cli.draining_calls, 1);
    CHECK_EQ_INT(zt_h2_session_connect(w.cli.s, "10.0.0.2:8081", NULL, 0, &sx_stream_ops, NULL),
                 ZT_E_CLOSED);
    CHECK_EQ_INT(w.srv.closed_calls, 0);
    for (int i = 0; i < 2; i++) {
        struct sx_stream *c = i ? c2 : c1;
        c->to_send = 1000;
        c->eof_after = true;
        zt_h2_session_resume(w.cli.s, c->id);
        struct sx_stream *srv = &w.srv.streams[i];
        srv->to_send = 2000;
        srv->eof_after = true;
        zt_h2_session_resume(w.srv.s, srv->id);
    }
    sx_pump(&w);
    CHECK_EQ_INT(c1->received, 2000);
    CHECK_EQ_INT(c2->received, 2000);
    CHECK_EQ_INT(c2->close_err, 0);
    CHECK_EQ_INT(w.srv.closed_calls, 1);
    CHECK_EQ_INT(w.srv.close_err, 0);
    sx_world_free(&w);
}

/* A client that never answers the PING: the final GOAWAY goes out after
 * the keepalive timeout, and the session closes once idle. */
static void test_goaway_ping_unanswered(void)
{
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
    zt_h2_session_shutdown(w.srv.s);
    const uint8_t *data;
    size_t len;
    /* The notice and the PING are produced; the client never reads them. */
    CHECK_EQ_INT(zt_h2_session_out(w.srv.s, &data, &len), 0);
    CHECK(len > 0);
    zt_h2_session_out_done(w.srv.s, len);
    CHECK_EQ_INT(w.srv.closed_calls, 0);
    /* Time passes from deadline to deadline (a keepalive PING may come
     * first); the final GOAWAY goes out after the keepalive timeout, and
     * then nothing is left to wait for. */
    uint64_t at = SX_T0;
    for (int i = 0; i < 8 && w.srv.closed_calls == 0; i++) {
        at = zt_h2_session_deadline(w.srv.s);
        CHECK(at > SX_T0 && at < UINT64_MAX);
        zt_h2_session_tick(w.srv.s, at);
        CHECK_EQ_INT(zt_h2_session_out(w.srv.s, &data, &len), 0);
        zt_h2_session_out_done(w.srv.s, len);
        zt_h2_session_out(w.srv.s, &data, &len);
    }
    CHECK_EQ_INT(w.srv.closed_calls, 1);
    CHECK(at - SX_T0 >= 20000);
    CHECK_EQ_INT(w.srv.close_err, 0);
    sx_world_free(&w);
}

static void test_shutdown_before_open(void)
{
    struct sx_world w;
    sx_world_init(&w);
    w.cli.s = zt_h2_session_new(w.cctx, ZT_H2_CLIENT, &w.settings, &sx_end_ops, &w.cli, SX_T0);
    zt_h2_session_shutdown(w.cli.s);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(w.cli.close_err, ZT_E_CLOSED);
    sx_world_free(&w);
}

/* PINGs by the fake clock: answered ones keep the session, an unanswered
 * one closes it exactly one timeout after it was sent. */
static void test_keepalive(void)
{
    struct sx_world w;
    sx_world_init(&w);
    w.settings.ping_interval_ms = 100;
    w.settings.ping_timeout_ms = 300;
    sx_open_pair(&w, true);
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), SX_T0 + 100);
    for (uint64_t t = SX_T0 + 100; t <= SX_T0 + 2000; t += 100) {
        CHECK_EQ_INT(zt_h2_session_tick(w.cli.s, t), 0);
        CHECK_EQ_INT(zt_h2_session_tick(w.srv.s, t), 0);
        sx_pump(&w);
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
    sx_world_free(&w);
}

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Garbage from one peer closes that session only, with a GOAWAY or an alert
 * for the peer; a second session fed the same way next to it is untouched. */
static void test_peer_garbage(void)
{
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
    struct sx_end bad = {.respond_status = 200};
    bad.s = zt_h2_session_new(w.sctx, ZT_H2_SERVER, &w.settings, &sx_end_ops, &bad, SX_T0);
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
    plain.s = zt_h2_session_new(NULL, ZT_H2_SERVER, &w.settings, &sx_end_ops, &plain, SX_T0);
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
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->to_send = 1000;
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs);
    sx_pump(&w);
    CHECK_EQ_INT(cs->status, 200);
    CHECK_EQ_INT(w.srv.streams[0].received, 1000);
    CHECK_EQ_INT(w.cli.closed_calls + w.srv.closed_calls, 0);
    sx_world_free(&w);
}

/* The peer closing its side (end of stream without close_notify) closes the
 * session with an error, and streams learn it. */
static void test_peer_eof(void)
{
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs);
    sx_pump(&w);
    CHECK(zt_h2_session_feed(w.cli.s, NULL, 0) < 0);
    CHECK_EQ_INT(w.cli.closed_calls, 1);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK(cs->close_err < 0);
    sx_world_free(&w);
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
    sx_world_init(&w);
    sx_open_pair(&w, true);
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->to_send = 200000;
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs);
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
    sx_pump(&w);
    CHECK_EQ_INT(w.srv.streams[0].received, 200000);
    sx_world_free(&w);
}

/* x-forwarded-network (double HBONE's inner CONNECT) reaches the server;
 * a request without it has none. */
static char seen_network[64];
static bool seen_has_network;

static int record_network(const struct zt_h2_request *req)
{
    seen_has_network = req->forwarded_network != NULL;
    snprintf(seen_network, sizeof(seen_network), "%s",
             req->forwarded_network ? req->forwarded_network : "");
    return 200;
}

static void test_forwarded_network(void)
{
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
    w.srv.decide = record_network;
    static const char *const hdrs[] = {"x-forwarded-network", "n1"};
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->id =
        zt_h2_session_connect(w.cli.s, "svc.ns.svc.cluster.local:80", hdrs, 1, &sx_stream_ops, cs);
    sx_pump(&w);
    CHECK_EQ_INT(w.srv.nreq, 1);
    CHECK(seen_has_network);
    CHECK_EQ_STR(seen_network, "n1");
    struct sx_stream *cs2 = sx_stream_slot(&w.cli);
    cs2->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs2);
    sx_pump(&w);
    CHECK_EQ_INT(w.srv.nreq, 2);
    CHECK(!seen_has_network);
    sx_world_free(&w);
}

/* OpenSSL's record buffers are kept while records move and freed once the
 * session has been quiet for half a second: the session's deadline says
 * when to look (then the keepalive's again); traffic after a release
 * flows as before. */
static void test_buffers_freed_when_quiet(void)
{
    struct sx_world w;
    sx_world_init(&w);
    sx_open_pair(&w, true);
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), SX_T0 + 500);
    struct sx_stream *cs = sx_stream_slot(&w.cli);
    cs->to_send = 100000;
    cs->id = zt_h2_session_connect(w.cli.s, "10.0.0.2:8080", NULL, 0, &sx_stream_ops, cs);
    CHECK_EQ_INT(zt_h2_session_tick(w.cli.s, SX_T0 + 300), 0);
    CHECK_EQ_INT(zt_h2_session_tick(w.srv.s, SX_T0 + 300), 0);
    sx_pump(&w); /* records move at +300 */
    CHECK_EQ_INT(w.srv.streams[0].received, 100000);
    /* At +500 the client has been quiet 200 ms only: looked at again later. */
    CHECK_EQ_INT(zt_h2_session_tick(w.cli.s, SX_T0 + 500), 0);
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), SX_T0 + 800);
    CHECK_EQ_INT(zt_h2_session_tick(w.cli.s, SX_T0 + 800), 0);
    CHECK_EQ_INT(zt_h2_session_tick(w.srv.s, SX_T0 + 800), 0);
    /* Freed: the deadline is the keepalive PING's (10 s after OPEN). */
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), SX_T0 + 10000);
    CHECK_EQ_INT(zt_h2_session_deadline(w.srv.s), SX_T0 + 10000);
    /* More bytes both ways after the release. */
    cs->to_send = 200000;
    cs->eof_after = true;
    zt_h2_session_resume(w.cli.s, cs->id);
    sx_pump(&w);
    struct sx_stream *ss = &w.srv.streams[0];
    CHECK_EQ_INT(ss->received, 200000);
    ss->to_send = 50000;
    ss->eof_after = true;
    zt_h2_session_resume(w.srv.s, ss->id);
    sx_pump(&w);
    CHECK_EQ_INT(cs->received, 50000);
    CHECK_EQ_INT(cs->close_calls, 1);
    CHECK_EQ_INT(cs->close_err, 0);
    CHECK_EQ_INT(zt_h2_session_deadline(w.cli.s), SX_T0 + 800 + 500);
    CHECK_EQ_INT(w.cli.closed_calls + w.srv.closed_calls, 0);
    sx_world_free(&w);
}

int main(void)
{
    RUN(test_no_callback_inside_new);
    RUN(test_connect_200_and_data);
    RUN(test_detach_before_sent);
    RUN(test_close_when_idle);
    RUN(test_forwarded_network);
    RUN(test_body_on_resume);
    RUN(test_error_status);
    RUN(test_handshake_failure);
    RUN(test_on_ready_refusal);
    RUN(test_handshake_timeout);
    RUN(test_flow_control_backpressure);
    RUN(test_goaway_drain);
    RUN(test_shutdown_before_open);
    RUN(test_goaway_crossing_stream);
    RUN(test_goaway_ping_unanswered);
    RUN(test_keepalive);
    RUN(test_peer_garbage);
    RUN(test_peer_eof);
    RUN(test_read_budget);
    RUN(test_buffers_freed_when_quiet);
    return TEST_REPORT();
}
