/* Hostname endpoints' addresses (src/dns/resolver.c) against a scripted
 * upstream on loopback; the resolver's loop runs on the test's thread. */
#include "dns/resolver.h"

#include "base/err.h"
#include "loop/sock.h"
#include "test.h"
#include "fake_upstream.h"

#include <errno.h>

struct result {
    int calls, err;
    size_t n;
    struct zt_ip first;
};

static void on_done(void *ud, int err, const struct zt_ip *addrs, size_t n)
{
    struct result *r = ud;
    r->calls++;
    r->err = err;
    r->n = n;
    if (n)
        r->first = addrs[0];
}

static int plain_socket(void *ud, int family, int type)
{
    struct zt_sock_opts o = {.netns_fd = -1};
    return type == SOCK_STREAM ? zt_sock_tcp(family, &o) : zt_sock_udp(family, &o);
}

static void upstreams(struct zt_dns_upstreams *ups, uint16_t port, unsigned timeout_ms)
{
    struct zt_ip lo;
    memset(ups, 0, sizeof(*ups));
    zt_ip_parse("127.0.0.1", &lo);
    zt_ip_to_sockaddr(&lo, port, &ups->addr[0]);
    ups->n = 1;
    ups->timeout_ms = timeout_ms;
    ups->attempts = 1;
}

/* Runs the loop until *calls reaches want (or 5 s pass). */
static void run_until(uv_loop_t *loop, const int *calls, int want)
{
    for (int i = 0; i < 5000 && *calls < want; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static void drain(uv_loop_t *loop)
{
    for (int i = 0; i < 50; i++)
        uv_run(loop, UV_RUN_NOWAIT);
}

/* A name is asked once for A and once for AAAA; two lookups made while the
 * query is under way share it; the next one comes from the cache. */
static void test_lookup_shared_and_cached(void)
{
    struct upstream u;
    upstream_start(&u, UP_ANSWER);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct zt_dns_upstreams ups;
    upstreams(&ups, u.port, 2000);
    struct zt_dns_resolver *r = zt_dns_resolver_new(&loop, &ups, true, plain_socket, NULL);
    struct zt_ip addrs[4];
    size_t n;
    struct result a = {0}, b = {0};
    struct zt_dns_lookup *la, *lb;
    CHECK_EQ_INT(zt_dns_resolver_lookup(r, "External.Test.", addrs, 4, &n, on_done, &a, &la),
                 -EAGAIN);
    CHECK_EQ_INT(zt_dns_resolver_lookup(r, "external.test", addrs, 4, &n, on_done, &b, &lb),
                 -EAGAIN);
    run_until(&loop, &b.calls, 1);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_EQ_INT(b.calls, 1);
    CHECK_EQ_INT(a.err, 0);
    CHECK_EQ_INT((int)a.n, 1);
    char s[64];
    CHECK_EQ_STR(zt_ip_format(&a.first, s, sizeof(s)), "192.0.2.1");
    CHECK_EQ_INT(atomic_load(&u.udp_queries), 2); /* A and AAAA, once */
    struct zt_dns_lookup *lc = (struct zt_dns_lookup *)1;
    CHECK_EQ_INT(zt_dns_resolver_lookup(r, "external.test", addrs, 4, &n, on_done, &a, &lc), 0);
    CHECK(n == 1 && lc == NULL);
    CHECK_EQ_INT(atomic_load(&u.udp_queries), 2);
    zt_dns_resolver_free(r);
    drain(&loop);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    upstream_stop(&u);
}

/* NXDOMAIN: ZT_E_NOT_FOUND, remembered; no upstream answering:
 * ZT_E_UPSTREAM, not remembered (the next lookup asks again). */
static void test_negative_and_failure(void)
{
    struct upstream u;
    upstream_start(&u, UP_NXDOMAIN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct zt_dns_upstreams ups;
    upstreams(&ups, u.port, 2000);
    struct zt_dns_resolver *r = zt_dns_resolver_new(&loop, &ups, false, plain_socket, NULL);
    struct zt_ip addrs[4];
    size_t n;
    struct result a = {0};
    struct zt_dns_lookup *l;
    CHECK_EQ_INT(zt_dns_resolver_lookup(r, "nowhere.test", addrs, 4, &n, on_done, &a, &l), -EAGAIN);
    run_until(&loop, &a.calls, 1);
    CHECK_EQ_INT(a.err, ZT_E_NOT_FOUND);
    CHECK_EQ_INT(atomic_load(&u.udp_queries), 1); /* IPv6 off: A only */
    CHECK_EQ_INT(zt_dns_resolver_lookup(r, "nowhere.test", addrs, 4, &n, on_done, &a, &l),
                 ZT_E_NOT_FOUND);
    zt_dns_resolver_free(r);
    drain(&loop);
    upstream_stop(&u);

    upstream_start(&u, UP_SILENT);
    upstreams(&ups, u.port, 100);
    r = zt_dns_resolver_new(&loop, &ups, false, plain_socket, NULL);
    memset(&a, 0, sizeof(a));
    CHECK_EQ_INT(zt_dns_resolver_lookup(r, "slow.test", addrs, 4, &n, on_done, &a, &l), -EAGAIN);
    run_until(&loop, &a.calls, 1);
    CHECK_EQ_INT(a.err, ZT_E_UPSTREAM);
    CHECK_EQ_INT(zt_dns_resolver_lookup(r, "slow.test", addrs, 4, &n, on_done, &a, &l), -EAGAIN);
    zt_dns_lookup_cancel(l);
    zt_dns_resolver_free(r);
    drain(&loop);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    upstream_stop(&u);
}

/* A cancelled lookup's callback never runs, while another waiting for the
 * same name gets the answer; a name longer than DNS allows is refused. */
static void test_cancel_and_limits(void)
{
    struct upstream u;
    upstream_start(&u, UP_ANSWER);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct zt_dns_upstreams ups;
    upstreams(&ups, u.port, 2000);
    struct zt_dns_resolver *r = zt_dns_resolver_new(&loop, &ups, false, plain_socket, NULL);
    struct zt_ip addrs[4];
    size_t n;
    struct result gone = {0}, kept = {0};
    struct zt_dns_lookup *lg, *lk;
    CHECK_EQ_INT(zt_dns_resolver_lookup(r, "external.test", addrs, 4, &n, on_done, &gone, &lg),
                 -EAGAIN);
    CHECK_EQ_INT(zt_dns_resolver_lookup(r, "external.test", addrs, 4, &n, on_done, &kept, &lk),
                 -EAGAIN);
    zt_dns_lookup_cancel(lg);
    run_until(&loop, &kept.calls, 1);
    CHECK_EQ_INT(kept.calls, 1);
    CHECK_EQ_INT(gone.calls, 0);
    char name[300];
    memset(name, 'a', sizeof(name));
    for (int i = 60; i < 299; i += 61)
        name[i] = '.';
    name[254] = 0; /* 254 characters: one past the longest name */
    CHECK_EQ_INT(zt_dns_resolver_lookup(r, name, addrs, 4, &n, on_done, &kept, &lk), ZT_E_TOO_BIG);
    zt_dns_resolver_free(r);
    drain(&loop);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    upstream_stop(&u);
}

int main(void)
{
    RUN(test_lookup_shared_and_cached);
    RUN(test_negative_and_failure);
    RUN(test_cancel_and_limits);
    return TEST_REPORT();
}
