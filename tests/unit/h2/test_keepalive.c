/* HTTP/2 keepalive: answered PINGs keep a connection, a peer that stops
 * answering is dropped after the PING timeout. */
#include "test.h"

#include "fixture.h"

#include <pthread.h>

static void test_answered_pings_keep_connection(void)
{
    struct fx_world w;
    fx_world_init(&w);
    w.cli_settings.ping_interval_ms = 30;
    w.cli_settings.ping_timeout_ms = 90;
    w.srv_settings.ping_interval_ms = 30;
    w.srv_settings.ping_timeout_ms = 90;
    struct fx_peer *c = fx_client(&w, NULL);
    FX_WAIT(&w, c->ready_calls == 1, 3000);
    CHECK_EQ_INT(c->ready_calls, 1);
    fx_run_for(&w, 500); /* about 16 PING round trips each way */
    CHECK_EQ_INT(c->closed_calls, 0);
    CHECK_EQ_INT(zt_h2conn_state(c->h2), ZT_H2_ST_OPEN);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

/* A TLS peer that completes the handshake and then never reads again. */
struct silent {
    int lfd;
    SSL_CTX *ctx;
    int done_fd[2];
};

static void *silent_main(void *arg)
{
    struct silent *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    SSL *ssl = SSL_new(s->ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
        char b;
        /* Wait for the test to finish; read nothing meanwhile. */
        ssize_t n = read(s->done_fd[0], &b, 1);
        (void)n;
    }
    SSL_free(ssl);
    close(fd);
    return NULL;
}

static void test_unanswered_ping_closes(void)
{
    struct fx_world w;
    fx_world_init(&w);
    w.cli_settings.ping_interval_ms = 40;
    w.cli_settings.ping_timeout_ms = 120;
    struct silent s = {.ctx = w.sctx};
    CHECK(pipe(s.done_fd) == 0);
    s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    CHECK(bind(s.lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(s.lfd, 1) == 0 &&
          getsockname(s.lfd, (struct sockaddr *)&a, &len) == 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, silent_main, &s) == 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    connect(fd, (struct sockaddr *)&a, sizeof(a));
    struct fx_peer *c = fx_peer_slot(w.cli, &w, ZT_H2_CLIENT);
    c->h2 = zt_h2conn_new(&w.loop, fd, w.cctx, ZT_H2_CLIENT, &w.cli_settings, &fx_conn_ops, c);
    FX_WAIT(&w, c->ready_calls == 1, 3000);
    CHECK_EQ_INT(c->ready_calls, 1);
    uint64_t t0 = fx_now_ms();
    FX_WAIT(&w, c->closed_calls == 1, 20000);
    uint64_t took = fx_now_ms() - t0;
    ssize_t wr = write(s.done_fd[1], "x", 1);
    (void)wr;
    pthread_join(th, NULL);
    close(s.lfd);
    close(s.done_fd[0]);
    close(s.done_fd[1]);
    CHECK_EQ_INT(c->closed_calls, 1);
    CHECK_EQ_INT(c->close_err, ZT_E_TIMEOUT);
    /* First PING after one interval, dropped one timeout later: the
     * timeout is the cause (ZT_E_TIMEOUT), not before interval + timeout. */
    CHECK(took >= 120);
    CHECK_EQ_INT(fx_world_free(&w), 0);
}

int main(void)
{
    RUN(test_answered_pings_keep_connection);
    RUN(test_unanswered_ping_closes);
    return TEST_REPORT();
}
