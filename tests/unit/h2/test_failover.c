/* The control-plane failover policy (h2/failover.h), sans-I/O: which
 * address next, when a round is over, the wait between rounds, and the
 * address list built from getaddrinfo results. */
#include "h2/failover.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>

/* A getaddrinfo-like list of n IPv4 addresses 10.0.0.first.. on port. */
struct fake_ai {
    struct addrinfo ai[ZT_FAILOVER_MAX + 8];
    struct sockaddr_in sin[ZT_FAILOVER_MAX + 8];
};

static const struct addrinfo *v4_list(struct fake_ai *f, int first, int n, int port)
{
    memset(f, 0, sizeof(*f));
    for (int i = 0; i < n; i++) {
        f->sin[i].sin_family = AF_INET;
        f->sin[i].sin_port = htons((uint16_t)port);
        f->sin[i].sin_addr.s_addr = htonl(0x0a000000u + (uint32_t)(first + i));
        f->ai[i].ai_family = AF_INET;
        f->ai[i].ai_socktype = SOCK_STREAM;
        f->ai[i].ai_addr = (struct sockaddr *)&f->sin[i];
        f->ai[i].ai_addrlen = sizeof(f->sin[i]);
        f->ai[i].ai_next = i + 1 < n ? &f->ai[i + 1] : NULL;
    }
    return n ? &f->ai[0] : NULL;
}

static struct zt_grpc_target target(const char *list)
{
    struct zt_grpc_target t[ZT_GRPC_TARGETS_MAX];
    size_t n = 0;
    char err[256];
    memset(t, 0, sizeof(t));
    zt_grpc_parse_targets("XDS_ADDRESS", list, t, &n, err, sizeof(err));
    return t[0];
}

/* One round of three addresses: a working one lost moves to the next at
 * once, and only after all three failed in a row is the round over. */
static void test_walks_the_round(void)
{
    static struct zt_failover f;
    static struct fake_ai ai;
    struct zt_grpc_target a = target("10.0.0.1:15012"), b = target("cp.example:15012");
    zt_failover_init(&f);
    CHECK(f.need_resolve);
    zt_failover_begin_round(&f);
    CHECK_EQ_INT(zt_failover_add(&f, 0, &a, v4_list(&ai, 1, 1, 15012)), 1);
    CHECK_EQ_INT(zt_failover_add(&f, 1, &b, v4_list(&ai, 2, 2, 15012)), 2);
    CHECK(zt_failover_resolved(&f));
    CHECK(!f.need_resolve);
    CHECK_EQ_STR(f.eps[0].name, "10.0.0.1:15012");
    CHECK_EQ_STR(f.eps[1].name, "cp.example:15012 (10.0.0.2:15012)");
    CHECK_EQ_STR(f.eps[2].name, "cp.example:15012 (10.0.0.3:15012)");
    CHECK_EQ_INT(f.eps[1].target, 1);

    /* First attempt: the first address; it works, then is lost. */
    CHECK(zt_failover_pick(&f) == &f.eps[0]);
    zt_failover_succeeded(&f);
    CHECK(zt_failover_failed(&f));            /* at once, */
    CHECK(zt_failover_pick(&f) == &f.eps[1]); /* to the next */
    CHECK(zt_failover_failed(&f));
    CHECK(zt_failover_pick(&f) == &f.eps[2]);
    /* The third failure in a row ends the round. */
    CHECK(!zt_failover_failed(&f));
    CHECK(f.need_resolve);
    /* The new round goes on after the address last used. */
    zt_failover_begin_round(&f);
    zt_failover_add(&f, 0, &a, v4_list(&ai, 1, 1, 15012));
    zt_failover_add(&f, 1, &b, v4_list(&ai, 2, 2, 15012));
    CHECK(zt_failover_resolved(&f));
    CHECK(zt_failover_pick(&f) == &f.eps[0]);
    CHECK(zt_failover_failed(&f));
    CHECK(zt_failover_pick(&f) == &f.eps[1]);
    zt_failover_succeeded(&f);
    /* Lost after working: the count restarted, so the whole round is
     * available again starting with the next address. */
    CHECK(zt_failover_failed(&f));
    CHECK(zt_failover_pick(&f) == &f.eps[2]);
    CHECK(zt_failover_failed(&f));
    CHECK(zt_failover_pick(&f) == &f.eps[0]);
    CHECK(!zt_failover_failed(&f));
}

/* One address (Istio's case): every end waits, and resolves again. */
static void test_single_address_waits(void)
{
    static struct zt_failover f;
    static struct fake_ai ai;
    struct zt_grpc_target a = target("istiod:15012");
    zt_failover_init(&f);
    zt_failover_begin_round(&f);
    zt_failover_add(&f, 0, &a, v4_list(&ai, 9, 1, 15012));
    CHECK(zt_failover_resolved(&f));
    CHECK(zt_failover_pick(&f) == &f.eps[0]);
    zt_failover_succeeded(&f);
    CHECK(!zt_failover_failed(&f));
    CHECK(f.need_resolve);
}

/* No address at all (every lookup failed): the round is over at once. */
static void test_nothing_resolved(void)
{
    static struct zt_failover f;
    zt_failover_init(&f);
    zt_failover_begin_round(&f);
    CHECK(!zt_failover_resolved(&f));
    CHECK(f.need_resolve);
    CHECK(!zt_failover_failed(&f));
}

/* Caps: 16 addresses per entry, 64 in all; duplicates and non-IP
 * families dropped. */
static void test_caps_and_duplicates(void)
{
    static struct zt_failover f;
    static struct fake_ai ai;
    struct zt_grpc_target a = target("cp.example:15012");
    zt_failover_init(&f);
    zt_failover_begin_round(&f);
    CHECK_EQ_INT(zt_failover_add(&f, 0, &a, v4_list(&ai, 1, ZT_FAILOVER_PER_TARGET + 1, 15012)),
                 ZT_FAILOVER_PER_TARGET);
    /* The same addresses again for the same entry (a name listing one
     * address twice): none added. */
    CHECK_EQ_INT(zt_failover_add(&f, 0, &a, v4_list(&ai, 1, 4, 15012)), 0);
    /* Another port is another address. */
    CHECK_EQ_INT(zt_failover_add(&f, 0, &a, v4_list(&ai, 1, 1, 15013)), 1);
    for (int k = 0; k < 4; k++)
        zt_failover_add(&f, 2, &a, v4_list(&ai, 100 + 16 * k, ZT_FAILOVER_PER_TARGET, 15012));
    CHECK_EQ_INT(f.n, ZT_FAILOVER_MAX);
    CHECK_EQ_INT(zt_failover_add(&f, 3, &a, v4_list(&ai, 200, 1, 15012)), 0);
    /* A Unix-domain entry (never from our lookups) is skipped. */
    zt_failover_begin_round(&f);
    v4_list(&ai, 1, 2, 15012);
    ai.ai[0].ai_family = AF_UNIX;
    CHECK_EQ_INT(zt_failover_add(&f, 0, &a, &ai.ai[0]), 1);
    CHECK_EQ_STR(f.eps[0].name, "cp.example:15012 (10.0.0.2:15012)");
    /* IPv6 is named with brackets. */
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(15012)};
    inet_pton(AF_INET6, "fd00::7", &s6.sin6_addr);
    struct addrinfo a6 = {.ai_family = AF_INET6,
                          .ai_socktype = SOCK_STREAM,
                          .ai_addr = (struct sockaddr *)&s6,
                          .ai_addrlen = sizeof(s6)};
    struct zt_grpc_target t6 = target("[fd00::7]:15012");
    CHECK_EQ_INT(zt_failover_add(&f, 1, &t6, &a6), 1);
    CHECK_EQ_STR(f.eps[1].name, "[fd00::7]:15012");
}

/* Two entries resolving to one address are two attempts: each verifies
 * the certificate against its own name, so a wrong name first must not
 * hide the right one (found by test_control_failover.sh: an entry whose
 * name the instance's certificate lacks, then the instance by address). */
static void test_same_address_two_entries(void)
{
    static struct zt_failover f;
    static struct fake_ai ai;
    struct zt_grpc_target wrong = target("wrong.example:15012"), ip = target("10.0.0.3:15012");
    zt_failover_init(&f);
    zt_failover_begin_round(&f);
    CHECK_EQ_INT(zt_failover_add(&f, 0, &wrong, v4_list(&ai, 3, 1, 15012)), 1);
    CHECK_EQ_INT(zt_failover_add(&f, 1, &ip, v4_list(&ai, 3, 1, 15012)), 1);
    CHECK(zt_failover_resolved(&f));
    CHECK_EQ_INT(f.n, 2);
    CHECK(zt_failover_pick(&f)->target == 0);
    CHECK(zt_failover_failed(&f));
    const struct zt_failover_endpoint *ep = zt_failover_pick(&f);
    CHECK_EQ_INT(ep->target, 1);
    CHECK_EQ_STR(ep->name, "10.0.0.3:15012");
}

/* What an attempt sends and verifies: each address its own entry's
 * authority and host, or ALT_*_HOSTNAME for every address when set; the
 * longest legal host fits the buffers sized as the entry's fields. */
static void test_pick_target_names(void)
{
    static struct zt_failover f;
    static struct fake_ai ai;
    struct zt_grpc_target t[2];
    char longest[254], list[300];
    for (size_t i = 0; i < 253; i++)
        longest[i] = (i + 1) % 64 == 0 ? '.' : 'a';
    longest[253] = '\0';
    snprintf(list, sizeof(list), "%s:15012", longest);
    t[0] = target(list);
    t[1] = target("10.0.0.9:15012");
    CHECK_EQ_STR(t[0].host, longest);
    char authority[sizeof(t[0].authority)], verify[sizeof(t[0].host)];
    zt_failover_init(&f);
    zt_failover_begin_round(&f);
    CHECK_EQ_INT(zt_failover_add(&f, 0, &t[0], v4_list(&ai, 1, 1, 15012)), 1);
    CHECK_EQ_INT(zt_failover_add(&f, 1, &t[1], v4_list(&ai, 9, 1, 15012)), 1);
    CHECK(zt_failover_resolved(&f));
    const struct zt_failover_endpoint *ep =
        zt_failover_pick_target(&f, t, "", authority, sizeof(authority), verify, sizeof(verify));
    CHECK_EQ_INT(ep->target, 0);
    CHECK_EQ_STR(authority, list);
    CHECK_EQ_STR(verify, longest);
    CHECK(zt_failover_failed(&f));
    ep = zt_failover_pick_target(&f, t, "", authority, sizeof(authority), verify, sizeof(verify));
    CHECK_EQ_INT(ep->target, 1);
    CHECK_EQ_STR(authority, "10.0.0.9:15012");
    CHECK_EQ_STR(verify, "10.0.0.9");
    CHECK(zt_failover_failed(&f) == false); /* the round is over */
    CHECK(zt_failover_resolved(&f));
    ep = zt_failover_pick_target(&f, t, "istiod.istio-system.svc", authority, sizeof(authority),
                                 verify, sizeof(verify));
    CHECK_EQ_STR(verify, "istiod.istio-system.svc");
}

/* Between rounds: the engine's backoff capped at 5 s, drawn in [d/2, d]. */
static void test_backoff(void)
{
    CHECK_EQ_INT(zt_failover_backoff(10, 0), 5);
    CHECK_EQ_INT(zt_failover_backoff(10, 5), 10);
    CHECK_EQ_INT(zt_failover_backoff(10, 6), 5);
    CHECK_EQ_INT(zt_failover_backoff(15000, 0), 2500);
    CHECK_EQ_INT(zt_failover_backoff(15000, 2500), 5000);
    CHECK_EQ_INT(zt_failover_backoff(15000, 2501), 2500);
    CHECK_EQ_INT(zt_failover_backoff(0, 12345), 0);
    for (uint32_t r = 0; r < 100000; r += 7) {
        uint64_t d = zt_failover_backoff(640, r);
        CHECK(d >= 320 && d <= 640);
    }
    CHECK(zt_failover_backoff(UINT64_MAX, UINT32_MAX) <= ZT_FAILOVER_RETRY_MAX_MS);
}

int main(void)
{
    RUN(test_walks_the_round);
    RUN(test_single_address_waits);
    RUN(test_nothing_resolved);
    RUN(test_caps_and_duplicates);
    RUN(test_same_address_two_entries);
    RUN(test_pick_target_names);
    RUN(test_backoff);
    return TEST_REPORT();
}
