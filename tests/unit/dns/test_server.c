/* The DNS proxy's sockets (src/dns/server.c) on loopback: the server runs
 * its libuv loop in a thread; the test is the client (blocking sockets)
 * and a scripted upstream (a thread of its own), so each forwarding path
 * is seen from both ends. */
#include "dns/server.h"

#include "base/err.h"
#include "loop/sock.h"
#include "test.h"
#include "fake_upstream.h"

#include <ldns/ldns.h>

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the mesh: one service ---- */

static struct zt_state *mesh(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_service *v = zt_service_new();
    v->name = zt_state_xstrdup("echo");
    v->namespace = zt_state_xstrdup("default");
    v->hostname = zt_state_xstrdup("echo.default.svc.cluster.local");
    struct zt_vip *x = zt_state_array_push(&v->vips, &v->n_vips, sizeof(*x));
    x->network = zt_state_xstrdup("");
    zt_ip_parse("10.96.0.10", &x->ip);
    zt_state_builder_add_service(b, v);
    struct zt_workload *w = zt_workload_new();
    w->uid = zt_state_xstrdup("app");
    w->name = zt_state_xstrdup("app");
    w->namespace = zt_state_xstrdup("default");
    zt_state_builder_add_workload(b, w);
    struct zt_state *s = NULL;
    char err[128];
    if (zt_state_builder_finish(b, &s, err, sizeof(err)))
        abort();
    return s;
}

/* ---- the server under test, on its own loop thread ---- */

struct fixture {
    uv_loop_t loop;
    uv_async_t stop;
    pthread_t thread;
    struct zt_state *state;
    struct zt_dns_opts opts;
    struct zt_dns_upstreams ups;
    struct zt_dns_server *srv;
    struct sockaddr_in udp_addr, tcp_addr;
    atomic_int events, forwarded, failed;
};

static const struct zt_state *f_state(void *ud)
{
    return ((struct fixture *)ud)->state;
}

static const struct zt_workload *f_client(void *ud)
{
    return zt_state_workload_by_uid(((struct fixture *)ud)->state, "app");
}

static int f_socket(void *ud, int family, int type)
{
    struct zt_sock_opts o = {.netns_fd = -1};
    return type == SOCK_STREAM ? zt_sock_tcp(family, &o) : zt_sock_udp(family, &o);
}

static void f_observe(void *ud, const struct zt_dns_event *ev)
{
    struct fixture *f = ud;
    atomic_fetch_add(&f->events, 1);
    if (ev->forwarded)
        atomic_fetch_add(&f->forwarded, 1);
    if (ev->upstream_failed)
        atomic_fetch_add(&f->failed, 1);
}

static const struct zt_dns_server_ops ops = {
    .state = f_state, .client = f_client, .socket = f_socket, .observe = f_observe};

static void on_stop(uv_async_t *a)
{
    struct fixture *f = a->data;
    zt_dns_server_close(f->srv, NULL, NULL);
    uv_close((uv_handle_t *)&f->stop, NULL);
}

static void *loop_main(void *arg)
{
    struct fixture *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Starts a server forwarding to upstream 127.0.0.1:up_port (0: none). */
static void fixture_start(struct fixture *f, uint16_t up_port, unsigned timeout_ms)
{
    memset(f, 0, sizeof(*f));
    f->state = mesh();
    f->opts.cluster_domain = "cluster.local";
    f->opts.ipv6_enabled = true;
    f->ups.timeout_ms = timeout_ms;
    f->ups.attempts = 1;
    if (up_port) {
        struct zt_ip lo;
        zt_ip_parse("127.0.0.1", &lo);
        zt_ip_to_sockaddr(&lo, up_port, &f->ups.addr[0]);
        f->ups.n = 1;
    }
    struct zt_sock_opts o = {.netns_fd = -1};
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int u = zt_sock_udp_bind((struct sockaddr *)&any, sizeof(any), &o);
    int t = zt_sock_listen((struct sockaddr *)&any, sizeof(any), &o);
    if (u < 0 || t < 0)
        abort();
    bound_addr(u, &f->udp_addr);
    bound_addr(t, &f->tcp_addr);
    uv_loop_init(&f->loop);
    uv_async_init(&f->loop, &f->stop, on_stop);
    f->stop.data = f;
    int err = 0;
    f->srv = zt_dns_server_new(&f->loop, &u, 1, &t, 1, &f->opts, &f->ups, &ops, f, &err);
    if (!f->srv)
        abort();
    pthread_create(&f->thread, NULL, loop_main, f);
}

static void fixture_stop(struct fixture *f)
{
    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    uv_loop_close(&f->loop);
    zt_state_unref(f->state);
}

/* ---- client side ---- */

static uint8_t *query(const char *name, ldns_rr_type type, uint16_t id, size_t *len)
{
    ldns_pkt *p = ldns_pkt_query_new(ldns_dname_new_frm_str(name), type, LDNS_RR_CLASS_IN, LDNS_RD);
    ldns_pkt_set_id(p, id);
    uint8_t *w = NULL;
    if (ldns_pkt2wire(&w, p, len) != LDNS_STATUS_OK)
        abort();
    ldns_pkt_free(p);
    return w;
}

/* Sends q over UDP, returns the parsed reply or NULL after 5 s. */
static ldns_pkt *ask_udp(struct fixture *f, const uint8_t *q, size_t len)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    sendto(fd, q, len, 0, (struct sockaddr *)&f->udp_addr, sizeof(f->udp_addr));
    ldns_pkt *p = NULL;
    uint8_t buf[4096];
    if (wait_readable(fd, 5000) > 0) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0 && ldns_wire2pkt(&p, buf, (size_t)n) != LDNS_STATUS_OK)
            p = NULL;
    }
    close(fd);
    return p;
}

static int tcp_connect(struct fixture *f)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&f->tcp_addr, sizeof(f->tcp_addr)) < 0)
        abort();
    return fd;
}

static void tcp_send(int fd, const uint8_t *q, size_t len)
{
    uint8_t hdr[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    if (write(fd, hdr, 2) != 2 || write(fd, q, len) != (ssize_t)len)
        abort();
}

static ldns_pkt *tcp_reply(int fd)
{
    uint8_t hdr[2], buf[65536];
    if (!read_full(fd, hdr, 2))
        return NULL;
    size_t len = (size_t)hdr[0] << 8 | hdr[1];
    ldns_pkt *p = NULL;
    if (!read_full(fd, buf, len) || ldns_wire2pkt(&p, buf, len) != LDNS_STATUS_OK)
        return NULL;
    return p;
}

static char *first_a(const ldns_pkt *p)
{
    const ldns_rr_list *an = ldns_pkt_answer(p);
    for (size_t i = 0; an && i < ldns_rr_list_rr_count(an); i++)
        if (ldns_rr_get_type(ldns_rr_list_rr(an, i)) == LDNS_RR_TYPE_A)
            return ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(an, i), 0));
    return NULL;
}

/* ---- tests ---- */

/* A mesh name over UDP and TCP is answered without the upstream; another
 * is forwarded and the upstream's answer comes back with the client's id. */
static void test_answer_and_forward(void)
{
    struct upstream u;
    struct fixture f;
    upstream_start(&u, UP_ANSWER);
    fixture_start(&f, u.port, 2000);
    size_t len;
    uint8_t *q = query("echo.default.svc.cluster.local.", LDNS_RR_TYPE_A, 0x0101, &len);
    ldns_pkt *r = ask_udp(&f, q, len);
    CHECK(r != NULL);
    char *a = first_a(r);
    CHECK_EQ_STR(a, "10.96.0.10");
    free(a);
    ldns_pkt_free(r);
    free(q);
    CHECK_EQ_INT(atomic_load(&u.udp_queries), 0);

    q = query("external.test.", LDNS_RR_TYPE_A, 0x0202, &len);
    r = ask_udp(&f, q, len);
    CHECK(r != NULL && ldns_pkt_id(r) == 0x0202);
    a = first_a(r);
    CHECK_EQ_STR(a, "192.0.2.1");
    free(a);
    ldns_pkt_free(r);
    CHECK_EQ_INT(atomic_load(&u.udp_queries), 1);

    /* Two queries pipelined on one TCP connection, both answered. */
    int fd = tcp_connect(&f);
    uint8_t *q2 = query("echo.default.svc.cluster.local.", LDNS_RR_TYPE_A, 0x0303, &len);
    size_t len1;
    free(q);
    q = query("external.test.", LDNS_RR_TYPE_A, 0x0404, &len1);
    tcp_send(fd, q, len1);
    tcp_send(fd, q2, len);
    ldns_pkt *r1 = tcp_reply(fd), *r2 = tcp_reply(fd);
    CHECK(r1 && r2);
    uint16_t ids = (uint16_t)(ldns_pkt_id(r1) ^ ldns_pkt_id(r2));
    CHECK(ids == (0x0303 ^ 0x0404));
    ldns_pkt_free(r1);
    ldns_pkt_free(r2);
    close(fd);
    free(q);
    free(q2);
    fixture_stop(&f);
    upstream_stop(&u);
}

/* A reply with another id (from an off-path guesser) is ignored; the real
 * one is delivered. */
static void test_spoofed_reply_ignored(void)
{
    struct upstream u;
    struct fixture f;
    upstream_start(&u, UP_SPOOF_FIRST);
    fixture_start(&f, u.port, 2000);
    size_t len;
    uint8_t *q = query("external.test.", LDNS_RR_TYPE_A, 0x0505, &len);
    ldns_pkt *r = ask_udp(&f, q, len);
    CHECK(r != NULL && ldns_pkt_id(r) == 0x0505);
    CHECK(ldns_pkt_ancount(r) == 1);
    ldns_pkt_free(r);
    free(q);
    fixture_stop(&f);
    upstream_stop(&u);
}

/* The upstream truncates over UDP: a UDP client gets the TC reply as it is
 * (and asks again over TCP itself); a TCP client gets the whole answer,
 * which the server fetched over TCP. */
static void test_truncation_tcp_fallback(void)
{
    struct upstream u;
    struct fixture f;
    upstream_start(&u, UP_TRUNCATE);
    fixture_start(&f, u.port, 2000);
    size_t len;
    uint8_t *q = query("external.test.", LDNS_RR_TYPE_A, 0x0606, &len);
    ldns_pkt *r = ask_udp(&f, q, len);
    CHECK(r != NULL && ldns_pkt_tc(r) && ldns_pkt_ancount(r) == 0);
    ldns_pkt_free(r);
    CHECK_EQ_INT(atomic_load(&u.tcp_queries), 0);
    int fd = tcp_connect(&f);
    tcp_send(fd, q, len);
    r = tcp_reply(fd);
    CHECK(r != NULL && !ldns_pkt_tc(r) && ldns_pkt_ancount(r) == 40);
    CHECK(ldns_pkt_id(r) == 0x0606);
    ldns_pkt_free(r);
    CHECK_EQ_INT(atomic_load(&u.tcp_queries), 1);
    close(fd);
    free(q);
    fixture_stop(&f);
    upstream_stop(&u);
}

/* An upstream that never answers: SERVFAIL after the timeout, counted as a
 * failure; no upstream at all: SERVFAIL at once. */
static void test_upstream_failures(void)
{
    struct upstream u;
    struct fixture f;
    upstream_start(&u, UP_SILENT);
    fixture_start(&f, u.port, 200);
    size_t len;
    uint8_t *q = query("external.test.", LDNS_RR_TYPE_A, 0x0707, &len);
    ldns_pkt *r = ask_udp(&f, q, len);
    CHECK(r != NULL && ldns_pkt_get_rcode(r) == LDNS_RCODE_SERVFAIL && ldns_pkt_id(r) == 0x0707);
    ldns_pkt_free(r);
    CHECK_EQ_INT(atomic_load(&u.udp_queries), 1);
    CHECK_EQ_INT(atomic_load(&f.failed), 1);
    fixture_stop(&f);
    upstream_stop(&u);

    fixture_start(&f, 0, 200);
    r = ask_udp(&f, q, len);
    CHECK(r != NULL && ldns_pkt_get_rcode(r) == LDNS_RCODE_SERVFAIL);
    ldns_pkt_free(r);
    free(q);
    fixture_stop(&f);
}

/* More TCP clients than allowed: the extra ones are closed at once; the
 * ones within the cap, and UDP, are served. A client sending half a query
 * holds nothing up. */
static void test_tcp_client_cap(void)
{
    struct fixture f;
    fixture_start(&f, 0, 200);
    int fds[ZT_DNS_TCP_CLIENTS + 4];
    for (int i = 0; i < ZT_DNS_TCP_CLIENTS + 4; i++) {
        fds[i] = tcp_connect(&f);
        if (i == 0) {
            uint8_t half[3] = {0x00, 0x40, 0x12};
            CHECK(write(fds[0], half, 3) == 3);
        }
    }
    /* The last one is past the cap: the server closes it (EOF). */
    uint8_t b;
    CHECK(wait_readable(fds[ZT_DNS_TCP_CLIENTS + 3], 5000) > 0);
    CHECK(read(fds[ZT_DNS_TCP_CLIENTS + 3], &b, 1) == 0);
    size_t len;
    uint8_t *q = query("echo.default.svc.cluster.local.", LDNS_RR_TYPE_A, 0x0808, &len);
    tcp_send(fds[1], q, len);
    ldns_pkt *r = tcp_reply(fds[1]);
    CHECK(r != NULL && ldns_pkt_id(r) == 0x0808);
    ldns_pkt_free(r);
    r = ask_udp(&f, q, len);
    CHECK(r != NULL);
    ldns_pkt_free(r);
    free(q);
    for (int i = 0; i < ZT_DNS_TCP_CLIENTS + 4; i++)
        close(fds[i]);
    fixture_stop(&f);
}

/* More queries waiting for upstreams than allowed: the extra ones get
 * SERVFAIL at once, mesh names are still answered. The first
 * ZT_DNS_FORWARDS are sent in batches, each waited for at the upstream, so
 * that no datagram is lost to a full socket buffer on a loaded machine
 * (the cap is what is tested, not the kernel's queue). Checks come after
 * the server and upstream are stopped: a failed one must not leave their
 * threads running on this frame. */
static void test_forward_cap(void)
{
    struct upstream u;
    struct fixture f;
    upstream_start(&u, UP_SILENT);
    fixture_start(&f, u.port, 30000);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    size_t len;
    int sent = 0, batch_ok = 1;
    while (sent < ZT_DNS_FORWARDS && batch_ok) {
        for (int k = 0; k < 32 && sent < ZT_DNS_FORWARDS; k++, sent++) {
            uint8_t *q = query("external.test.", LDNS_RR_TYPE_A, (uint16_t)sent, &len);
            sendto(fd, q, len, 0, (struct sockaddr *)&f.udp_addr, sizeof(f.udp_addr));
            free(q);
        }
        int i = 0;
        while (i < 5000 && atomic_load(&u.udp_queries) < sent) {
            usleep(1000);
            i++;
        }
        batch_ok = atomic_load(&u.udp_queries) == sent;
    }
    for (int i = 0; i < 44; i++) {
        uint8_t *q = query("external.test.", LDNS_RR_TYPE_A, (uint16_t)(sent + i), &len);
        sendto(fd, q, len, 0, (struct sockaddr *)&f.udp_addr, sizeof(f.udp_addr));
        free(q);
    }
    int servfail = 0;
    uint8_t buf[512];
    while (servfail < 44 && wait_readable(fd, 5000) > 0) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        ldns_pkt *p = NULL;
        if (n > 0 && ldns_wire2pkt(&p, buf, (size_t)n) == LDNS_STATUS_OK &&
            ldns_pkt_get_rcode(p) == LDNS_RCODE_SERVFAIL)
            servfail++;
        ldns_pkt_free(p);
    }
    close(fd);
    int forwarded = atomic_load(&u.udp_queries);
    uint8_t *q = query("echo.default.svc.cluster.local.", LDNS_RR_TYPE_A, 0x0909, &len);
    ldns_pkt *r = ask_udp(&f, q, len);
    bool mesh_answered = r != NULL && ldns_pkt_ancount(r) == 1;
    ldns_pkt_free(r);
    free(q);
    fixture_stop(&f);
    upstream_stop(&u);
    CHECK(batch_ok);
    CHECK_EQ_INT(servfail, 44);
    CHECK_EQ_INT(forwarded, ZT_DNS_FORWARDS);
    CHECK(mesh_answered);
}

int main(void)
{
    RUN(test_answer_and_forward);
    RUN(test_spoofed_reply_ignored);
    RUN(test_truncation_tcp_fallback);
    RUN(test_upstream_failures);
    RUN(test_tcp_client_cap);
    RUN(test_forward_cap);
    return TEST_REPORT();
}
