/* The local rate limit engine (ratelimit/ratelimit.h) with an injected
 * clock: exact token counts and refill times, the largest rates and
 * clocks, per-key buckets and their bound under a flood of new keys,
 * attachment, stacked policies, and one bucket shared by many threads. */
#include "test.h"
#include "base/alloc.h"
#include "base/err.h"
#include "http/head.h"
#include "ratelimit/ratelimit.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

static struct zt_ratelimit_policy *pol(const char *ns, const char *name, uint32_t requests,
                                       enum zt_ratelimit_unit unit, uint32_t burst)
{
    struct zt_ratelimit_policy *p = zt_xcalloc(1, sizeof(*p));
    p->ns = zt_xstrdup(ns);
    p->name = zt_xstrdup(name);
    p->requests = requests;
    p->unit = (uint8_t)unit;
    p->burst = burst;
    return p;
}

static struct zt_ratelimit_policy *target(struct zt_ratelimit_policy *p,
                                          enum zt_ratelimit_target_kind kind, const char *name,
                                          const char *section)
{
    p->targets = zt_xrealloc(p->targets, (p->n_targets + 1) * sizeof(*p->targets));
    p->targets[p->n_targets++] = (struct zt_ratelimit_target){(uint8_t)kind, zt_xstrdup(name),
                                                              section ? zt_xstrdup(section) : NULL};
    return p;
}

static struct zt_ratelimit_policy *keyed(struct zt_ratelimit_policy *p, const char *header,
                                         uint32_t max_keys)
{
    p->key = header ? ZT_RATELIMIT_KEY_HEADER : ZT_RATELIMIT_KEY_PRINCIPAL;
    p->header = header ? zt_xstrdup(header) : NULL;
    p->max_keys = max_keys;
    return p;
}

/* A set of the one policy p, on Service ns1/svc. */
static struct zt_ratelimit_set *one(struct zt_ratelimit_policy *p)
{
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    zt_ratelimit_set_add(s, target(p, ZT_RATELIMIT_SERVICE, "svc", NULL));
    zt_ratelimit_set_seal(s);
    return s;
}

static const struct zt_ratelimit_request SVC = {
    .gateway_ns = "ns1", .gateway_name = "wp", .service_ns = "ns1", .service_name = "svc"};

/* ---- bucket math ---- */

#define MAXU64 UINT64_MAX

/* n checks at now, all returning rc; the last leaves remaining whole
 * tokens and a next token in reset_ms. */
struct step {
    uint64_t now;
    unsigned n;
    int rc;
    uint32_t remaining;
    uint64_t reset_ms;
};

static const struct {
    const char *what;
    uint32_t requests, burst;
    enum zt_ratelimit_unit unit;
    struct step steps[8];
} MATH[] = {
    {"10/s: the burst, then one token per 100 ms",
     10,
     10,
     ZT_RATELIMIT_SECOND,
     {{5000, 10, 0, 0, 100},
      {5000, 1, ZT_E_RATE_LIMITED, 0, 100},
      {5099, 1, ZT_E_RATE_LIMITED, 0, 1},
      {5100, 1, 0, 0, 100},
      {5100, 1, ZT_E_RATE_LIMITED, 0, 100},
      {5350, 2, 0, 0, 50},
      {7000, 1, 0, 9, 100}}},
    {"burst above the rate: 3/minute, burst 5",
     3,
     5,
     ZT_RATELIMIT_MINUTE,
     {{0, 5, 0, 0, 20000},
      {19999, 1, ZT_E_RATE_LIMITED, 0, 1},
      {20000, 1, 0, 0, 20000},
      {100000, 1, 0, 3, 20000}}},
    {"1/hour",
     1,
     1,
     ZT_RATELIMIT_HOUR,
     {{1000, 1, 0, 0, 3600000},
      {3600999, 1, ZT_E_RATE_LIMITED, 0, 1},
      {3601000, 1, 0, 0, 3600000}}},
    {"7/hour: a token every 514285.7 ms, never drifting",
     7,
     1,
     ZT_RATELIMIT_HOUR,
     {{0, 1, 0, 0, 514286},
      {514285, 1, ZT_E_RATE_LIMITED, 0, 1},
      {514286, 1, 0, 0, 514286},
      {3600000, 1, 0, 0, 514286},
      {3600000, 1, ZT_E_RATE_LIMITED, 0, 514286}}},
    {"1e9/s, burst 1e9: a million tokens a millisecond",
     1000000000,
     1000000000,
     ZT_RATELIMIT_SECOND,
     {{1, 3, 0, 999999997, 1}, {2, 1, 0, 999999999, 1}, {MAXU64 - 1, 1, 0, 999999999, 1}}},
    {"1e9/hour, burst 1e9: the largest bucket (3.6e15 ticks)",
     1000000000,
     1000000000,
     ZT_RATELIMIT_HOUR,
     {{0, 2, 0, 999999998, 1}, {MAXU64, 1, 0, 999999999, 1}}},
    {"a clock near the end of uint64",
     2,
     2,
     ZT_RATELIMIT_SECOND,
     {{MAXU64 - 1500, 2, 0, 0, 500},
      {MAXU64 - 1001, 1, ZT_E_RATE_LIMITED, 0, 1},
      {MAXU64 - 1000, 1, 0, 0, 500},
      {MAXU64, 1, 0, 1, 500}}},
    {"a clock behind the bucket's refills nothing and moves nothing",
     10,
     2,
     ZT_RATELIMIT_SECOND,
     {{1000, 2, 0, 0, 100},
      {500, 1, ZT_E_RATE_LIMITED, 0, 100},
      {1099, 1, ZT_E_RATE_LIMITED, 0, 1},
      {1100, 1, 0, 0, 100}}},
};

static void test_bucket_math(void)
{
    for (size_t i = 0; i < sizeof(MATH) / sizeof(MATH[0]); i++) {
        struct zt_ratelimit_set *s =
            one(pol("ns1", "p", MATH[i].requests, MATH[i].unit, MATH[i].burst));
        for (size_t j = 0; j < 8 && MATH[i].steps[j].n; j++) {
            const struct step *st = &MATH[i].steps[j];
            struct zt_ratelimit_result res;
            int rc = 0;
            for (unsigned k = 0; k < st->n; k++) {
                rc = zt_ratelimit_check(s, &SVC, st->now, &res);
                if (k + 1 < st->n && rc != st->rc)
                    break;
            }
            if (rc != st->rc || res.remaining != st->remaining || res.reset_ms != st->reset_ms) {
                fprintf(stderr, "  %s, step %zu: rc %d remaining %u reset_ms %llu\n", MATH[i].what,
                        j, rc, res.remaining, (unsigned long long)res.reset_ms);
                CHECK(0);
            }
            CHECK(res.applied && res.limited == (rc != 0) && !res.untracked);
            CHECK_EQ_INT(res.reset_s, (st->reset_ms + 999) / 1000);
            CHECK_EQ_INT(res.limit, MATH[i].requests);
            CHECK_EQ_INT(res.burst, MATH[i].burst);
            CHECK_EQ_STR(res.policy->name, "p");
        }
        zt_ratelimit_set_unref(s);
    }
}

/* Counters: passed per applying policy, limited once, for the decider. */
static void test_stats(void)
{
    struct zt_ratelimit_set *s = one(pol("ns1", "p", 1, ZT_RATELIMIT_MINUTE, 2));
    struct zt_ratelimit_result res;
    struct zt_ratelimit_stats st;
    for (int i = 0; i < 5; i++)
        zt_ratelimit_check(s, &SVC, 10, &res);
    CHECK_EQ_INT(zt_ratelimit_set_stats(s, 0, &st), 0);
    CHECK(st.passed == 2 && st.limited == 3 && st.untracked == 0 && st.keys == 0);
    CHECK_EQ_INT(zt_ratelimit_set_stats(s, 1, &st), ZT_E_NOT_FOUND);
    zt_ratelimit_set_unref(s);
}

/* ---- keys ---- */

static void test_principal_key(void)
{
    struct zt_ratelimit_set *s = one(keyed(pol("ns1", "p", 1, ZT_RATELIMIT_MINUTE, 1), NULL, 10));
    struct zt_ratelimit_request a = SVC, b = SVC, none = SVC;
    struct zt_ratelimit_result res;
    struct zt_ratelimit_stats st;
    a.source_principal = "spiffe://cluster.local/ns/a/sa/default";
    b.source_principal = "spiffe://cluster.local/ns/b/sa/default";
    CHECK_EQ_INT(zt_ratelimit_check(s, &a, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &a, 0, &res), ZT_E_RATE_LIMITED);
    CHECK_EQ_INT(zt_ratelimit_check(s, &b, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &b, 0, &res), ZT_E_RATE_LIMITED);
    /* No principal: the one shared absent bucket, not in the table. */
    CHECK_EQ_INT(zt_ratelimit_check(s, &none, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &none, 0, &res), ZT_E_RATE_LIMITED);
    CHECK_EQ_INT(zt_ratelimit_check(s, &a, 60000, &res), 0);
    zt_ratelimit_set_stats(s, 0, &st);
    CHECK_EQ_INT(st.keys, 2);
    zt_ratelimit_set_unref(s);
}

static void test_header_key(void)
{
    struct zt_ratelimit_set *s =
        one(keyed(pol("ns1", "p", 1, ZT_RATELIMIT_MINUTE, 2), "x-user-id", 10));
    struct zt_http_head h1, h2, h0;
    struct zt_ratelimit_request r1 = SVC, r2 = SVC, r0 = SVC, nohead = SVC;
    struct zt_ratelimit_result res;
    char big[8193];
    zt_http_head_init(&h1, false);
    zt_http_head_init(&h2, false);
    zt_http_head_init(&h0, false);
    memset(big, 'u', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    /* The first field counts; a name in any case is the same header. */
    zt_http_head_add(&h1, "X-User-Id", 9, "alice", 5);
    zt_http_head_add(&h1, "x-user-id", 9, "bob", 3);
    zt_http_head_add(&h2, "x-user-id", 9, big, sizeof(big) - 1);
    zt_http_head_add(&h0, "x-other", 7, "alice", 5);
    r1.head = &h1;
    r2.head = &h2;
    r0.head = &h0;
    CHECK_EQ_INT(zt_ratelimit_check(s, &r1, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &r1, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &r1, 0, &res), ZT_E_RATE_LIMITED);
    CHECK_EQ_INT(zt_ratelimit_check(s, &r2, 0, &res), 0);
    CHECK_EQ_INT(res.remaining, 1);
    /* Without the header, or without a head: one absent bucket. */
    CHECK_EQ_INT(zt_ratelimit_check(s, &r0, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &nohead, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &r0, 0, &res), ZT_E_RATE_LIMITED);
    zt_http_head_cleanup(&h1);
    zt_http_head_cleanup(&h2);
    zt_http_head_cleanup(&h0);
    zt_ratelimit_set_unref(s);
}

/* A flood of distinct values never buys fresh buckets past max_keys: the
 * tracked keys keep their state (the repeated one stays limited), the
 * untracked ones share one overflow bucket, and the table stays at
 * max_keys. Once buckets have refilled, new values take their places. */
static void test_key_flood(void)
{
    static const uint32_t maxes[] = {1, 4, 100};
    for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
        struct zt_ratelimit_set *s =
            one(keyed(pol("ns1", "p", 1, ZT_RATELIMIT_MINUTE, 1), "x-user-id", maxes[m]));
        struct zt_http_head h, victim;
        struct zt_ratelimit_request r = SVC, v = SVC;
        struct zt_ratelimit_result res;
        struct zt_ratelimit_stats st;
        unsigned passed = 0, victim_passed = 0;
        zt_http_head_init(&h, false);
        zt_http_head_init(&victim, false);
        zt_http_head_add(&victim, "x-user-id", 9, "victim", 6);
        r.head = &h;
        v.head = &victim;
        for (unsigned i = 0; i < 20000; i++) {
            char val[32];
            int n = snprintf(val, sizeof(val), "attacker-%u", i);
            uint64_t now = i / 1000; /* 20 s: no bucket refills */
            zt_http_head_set(&h, "x-user-id", val);
            (void)n;
            passed += zt_ratelimit_check(s, &r, now, &res) == 0;
            if (i % 100 == 0)
                victim_passed += zt_ratelimit_check(s, &v, now, &res) == 0;
        }
        /* Fresh buckets at most max_keys of them, plus the overflow's burst. */
        CHECK(passed <= maxes[m] + 1);
        CHECK(victim_passed <= 1);
        zt_ratelimit_set_stats(s, 0, &st);
        CHECK(st.keys <= maxes[m]);
        CHECK(st.untracked > 0);
        /* A minute later every bucket is full again: free to replace. */
        zt_http_head_set(&h, "x-user-id", "newcomer");
        CHECK_EQ_INT(zt_ratelimit_check(s, &r, 80000, &res), 0);
        CHECK(!res.untracked);
        CHECK_EQ_INT(zt_ratelimit_check(s, &r, 80000, &res), ZT_E_RATE_LIMITED);
        CHECK(!res.untracked);
        zt_ratelimit_set_stats(s, 0, &st);
        CHECK(st.keys <= maxes[m]);
        zt_http_head_cleanup(&h);
        zt_http_head_cleanup(&victim);
        zt_ratelimit_set_unref(s);
    }
}

/* A table of 1000 live keys, refilled and replaced in LRU order. */
static void test_key_table(void)
{
    struct zt_ratelimit_set *s =
        one(keyed(pol("ns1", "p", 10, ZT_RATELIMIT_SECOND, 1), NULL, 1000));
    struct zt_ratelimit_request r = SVC;
    struct zt_ratelimit_result res;
    struct zt_ratelimit_stats st;
    char id[64];
    r.source_principal = id;
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 1000; i++) {
            snprintf(id, sizeof(id), "spiffe://td/ns/n/sa/%d", i + round * 500);
            /* Each round 100 ms later: every old bucket has its token back. */
            CHECK_EQ_INT(zt_ratelimit_check(s, &r, (uint64_t)round * 100, &res), 0);
            CHECK_EQ_INT(zt_ratelimit_check(s, &r, (uint64_t)round * 100, &res), ZT_E_RATE_LIMITED);
            CHECK(!res.untracked);
        }
    zt_ratelimit_set_stats(s, 0, &st);
    CHECK_EQ_INT(st.keys, 1000);
    CHECK_EQ_INT(st.untracked, 0);
    zt_ratelimit_set_unref(s);
}

/* ---- attachment ---- */

/* Policies a..f (index order), each with a large limit so only which ones
 * applied changes. */
static struct zt_ratelimit_set *attached(void)
{
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    zt_ratelimit_set_add(
        s, target(pol("ns1", "a", 1000, ZT_RATELIMIT_SECOND, 1000), ZT_RATELIMIT_GATEWAY, "wp", 0));
    zt_ratelimit_set_add(s, target(pol("ns1", "b", 1000, ZT_RATELIMIT_SECOND, 1000),
                                   ZT_RATELIMIT_SERVICE, "svc", NULL));
    zt_ratelimit_set_add(s, target(pol("ns1", "c", 1000, ZT_RATELIMIT_SECOND, 1000),
                                   ZT_RATELIMIT_HTTP_ROUTE, "r", NULL));
    zt_ratelimit_set_add(s, target(pol("ns1", "d", 1000, ZT_RATELIMIT_SECOND, 1000),
                                   ZT_RATELIMIT_HTTP_ROUTE, "r", "writes"));
    zt_ratelimit_set_add(s, target(pol("ns1", "e", 1000, ZT_RATELIMIT_SECOND, 1000),
                                   ZT_RATELIMIT_GRPC_ROUTE, "r", NULL));
    /* In ns2: only ns2's service. Attached twice: counted once. */
    zt_ratelimit_set_add(s, target(target(pol("ns2", "f", 1000, ZT_RATELIMIT_SECOND, 1000),
                                          ZT_RATELIMIT_SERVICE, "svc", NULL),
                                   ZT_RATELIMIT_GATEWAY, "wp", NULL));
    zt_ratelimit_set_seal(s);
    return s;
}

static const struct {
    struct zt_ratelimit_request rq;
    const char *want; /* the policies that applied */
} ATTACH[] = {
    {{0}, ""},
    {{"ns1", "wp", NULL, NULL, NULL, NULL, NULL, false, NULL, NULL}, "a"},
    {{"ns1", "wp", "ns1", "svc", NULL, NULL, NULL, false, NULL, NULL}, "ab"},
    {{"ns1", "wp", "ns1", "svc", "ns1", "r", NULL, false, NULL, NULL}, "abc"},
    {{"ns1", "wp", "ns1", "svc", "ns1", "r", "writes", false, NULL, NULL}, "abcd"},
    {{"ns1", "wp", "ns1", "svc", "ns1", "r", "reads", false, NULL, NULL}, "abc"},
    {{"ns1", "wp", "ns1", "svc", "ns1", "r", "writes", true, NULL, NULL}, "abe"},
    {{NULL, NULL, NULL, NULL, "ns1", "r", "writes", false, NULL, NULL}, "cd"},
    {{NULL, NULL, NULL, NULL, "ns2", "r", "writes", false, NULL, NULL}, ""},
    {{NULL, NULL, "ns2", "svc", NULL, NULL, NULL, false, NULL, NULL}, "f"},
    {{"ns2", "wp", "ns2", "svc", NULL, NULL, NULL, false, NULL, NULL}, "f"},
    {{"ns1", "other", "ns1", "svc2", NULL, NULL, NULL, false, NULL, NULL}, ""},
};

static void test_attachment(void)
{
    for (size_t i = 0; i < sizeof(ATTACH) / sizeof(ATTACH[0]); i++) {
        struct zt_ratelimit_set *s = attached();
        struct zt_ratelimit_result res;
        char got[8] = "";
        size_t n = 0;
        CHECK_EQ_INT(zt_ratelimit_check(s, &ATTACH[i].rq, 0, &res), 0);
        for (size_t p = 0; p < zt_ratelimit_set_count(s); p++) {
            struct zt_ratelimit_stats st;
            zt_ratelimit_set_stats(s, p, &st);
            if (st.passed) {
                CHECK_EQ_INT(st.passed, 1);
                got[n++] = zt_ratelimit_set_at(s, p)->name[0];
            }
        }
        if (strcmp(got, ATTACH[i].want) != 0) {
            fprintf(stderr, "  case %zu: applied \"%s\", want \"%s\"\n", i, got, ATTACH[i].want);
            CHECK(0);
        }
        CHECK_EQ_INT(res.applied, n > 0);
        CHECK_EQ_INT(res.n_applied, n);
        zt_ratelimit_set_unref(s);
    }
}

/* 1000 policies on other services change nothing; 40 on the same one all
 * apply (past the check's stack arrays). */
static void test_many_policies(void)
{
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    struct zt_ratelimit_request other = SVC;
    struct zt_ratelimit_result res;
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "svc-%d", i);
        zt_ratelimit_set_add(
            s, target(pol("ns1", name, 1, ZT_RATELIMIT_HOUR, 1), ZT_RATELIMIT_SERVICE, name, NULL));
    }
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "many-%02d", i);
        zt_ratelimit_set_add(s, target(pol("ns1", name, 100, ZT_RATELIMIT_HOUR, 40 + (uint32_t)i),
                                       ZT_RATELIMIT_SERVICE, "many", NULL));
    }
    zt_ratelimit_set_add(
        s, target(pol("ns1", "p", 1, ZT_RATELIMIT_HOUR, 1), ZT_RATELIMIT_SERVICE, "svc", NULL));
    zt_ratelimit_set_seal(s);
    CHECK_EQ_INT(zt_ratelimit_set_count(s), 1041);
    CHECK_EQ_INT(zt_ratelimit_check(s, &SVC, 0, &res), 0);
    CHECK(res.n_applied == 1 && !strcmp(res.policy->name, "p"));
    CHECK_EQ_INT(zt_ratelimit_check(s, &SVC, 0, &res), ZT_E_RATE_LIMITED);
    other.service_name = "many";
    for (int i = 0; i < 40; i++) {
        CHECK_EQ_INT(zt_ratelimit_check(s, &other, 0, &res), 0);
        CHECK_EQ_INT(res.n_applied, 40);
        /* The fewest left: many-00 (burst 40). */
        CHECK_EQ_STR(res.policy->name, "many-00");
        CHECK_EQ_INT(res.remaining, 39 - i);
    }
    CHECK_EQ_INT(zt_ratelimit_check(s, &other, 0, &res), ZT_E_RATE_LIMITED);
    CHECK_EQ_STR(res.policy->name, "many-00");
    zt_ratelimit_set_unref(s);
}

/* Stacked: a request passes only with a token in every bucket, and one
 * limited takes nothing from the others. The later of two policies with
 * the same name replaces the first. */
static void test_stacked(void)
{
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    struct zt_ratelimit_request gw = SVC;
    struct zt_ratelimit_result res;
    zt_ratelimit_set_add(s, target(pol("ns1", "tight", 9, ZT_RATELIMIT_MINUTE, 9),
                                   ZT_RATELIMIT_SERVICE, "svc", NULL));
    zt_ratelimit_set_add(s, target(pol("ns1", "tight", 1, ZT_RATELIMIT_MINUTE, 1),
                                   ZT_RATELIMIT_SERVICE, "svc", NULL));
    zt_ratelimit_set_add(s, target(pol("ns1", "loose", 5, ZT_RATELIMIT_MINUTE, 5),
                                   ZT_RATELIMIT_GATEWAY, "wp", NULL));
    zt_ratelimit_set_seal(s);
    CHECK_EQ_INT(zt_ratelimit_set_count(s), 2);
    gw.service_ns = gw.service_name = NULL;
    CHECK_EQ_INT(zt_ratelimit_check(s, &SVC, 0, &res), 0);
    CHECK(res.n_applied == 2 && !strcmp(res.policy->name, "tight") && res.remaining == 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(zt_ratelimit_check(s, &SVC, 0, &res), ZT_E_RATE_LIMITED);
        CHECK_EQ_STR(res.policy->name, "tight");
        CHECK_EQ_INT(res.reset_s, 60);
    }
    /* loose lost one token, to the request that passed. */
    CHECK_EQ_INT(zt_ratelimit_check(s, &gw, 0, &res), 0);
    CHECK(res.n_applied == 1 && !strcmp(res.policy->name, "loose") && res.remaining == 3);
    CHECK_EQ_INT(zt_ratelimit_check(s, &gw, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &gw, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &gw, 0, &res), 0);
    /* Both empty now: the longer wait decides (tight, 60 s; loose, 12 s). */
    CHECK_EQ_INT(zt_ratelimit_check(s, &SVC, 0, &res), ZT_E_RATE_LIMITED);
    CHECK_EQ_STR(res.policy->name, "tight");
    CHECK_EQ_INT(zt_ratelimit_check(s, &SVC, 59000, &res), ZT_E_RATE_LIMITED);
    CHECK_EQ_STR(res.policy->name, "tight");
    CHECK_EQ_INT(res.reset_ms, 1000);
    zt_ratelimit_set_unref(s);
}

static void test_empty(void)
{
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    struct zt_ratelimit_result res;
    zt_ratelimit_set_seal(s);
    CHECK_EQ_INT(zt_ratelimit_check(NULL, &SVC, 0, &res), 0);
    CHECK(!res.applied && !res.policy);
    CHECK_EQ_INT(zt_ratelimit_check(s, &SVC, 0, &res), 0);
    CHECK(!res.applied);
    CHECK(zt_ratelimit_set_ref(s) == s);
    zt_ratelimit_set_unref(s);
    zt_ratelimit_set_unref(s);
    zt_ratelimit_set_unref(NULL);
    zt_ratelimit_policy_free(NULL);
    /* Never sealed: freed all the same. */
    s = zt_ratelimit_set_new();
    zt_ratelimit_set_add(s, pol("ns1", "p", 1, ZT_RATELIMIT_SECOND, 1));
    zt_ratelimit_set_unref(s);
    CHECK_EQ_STR(zt_ratelimit_unit_str(ZT_RATELIMIT_HOUR), "hour");
    CHECK_EQ_STR(zt_ratelimit_target_kind_str(ZT_RATELIMIT_GRPC_ROUTE), "GRPCRoute");
}

/* A reload carries buckets (and counters) of unchanged policies: the same
 * limit stays spent, a changed one starts full, a key table too large for
 * the new maxKeys is dropped. */
static struct zt_ratelimit_set *reload(uint32_t q_burst, uint32_t r_max_keys)
{
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    zt_ratelimit_set_add(
        s, target(pol("ns1", "p", 1, ZT_RATELIMIT_MINUTE, 2), ZT_RATELIMIT_SERVICE, "svc", NULL));
    zt_ratelimit_set_add(s, target(pol("ns1", "q", 1, ZT_RATELIMIT_MINUTE, q_burst),
                                   ZT_RATELIMIT_GATEWAY, "wp", NULL));
    zt_ratelimit_set_add(s,
                         target(keyed(pol("ns1", "r", 1, ZT_RATELIMIT_MINUTE, 1), NULL, r_max_keys),
                                ZT_RATELIMIT_HTTP_ROUTE, "api", NULL));
    zt_ratelimit_set_seal(s);
    return s;
}

static void test_inherit(void)
{
    struct zt_ratelimit_set *a = reload(1, 10), *b = reload(1, 10), *c = reload(2, 1), *d;
    struct zt_ratelimit_request svc = SVC, gw = SVC, route = {0};
    struct zt_ratelimit_result res;
    struct zt_ratelimit_stats st;
    char id[64];
    svc.gateway_ns = svc.gateway_name = NULL;
    gw.service_ns = gw.service_name = NULL;
    route.route_ns = "ns1";
    route.route_name = "api";
    route.source_principal = id;
    CHECK_EQ_INT(zt_ratelimit_check(a, &svc, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(a, &gw, 0, &res), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "spiffe://td/ns/n/sa/%d", i);
        CHECK_EQ_INT(zt_ratelimit_check(a, &route, 0, &res), 0);
    }
    /* b: the same policies, so the same state. */
    zt_ratelimit_set_inherit(b, a);
    zt_ratelimit_set_inherit(b, NULL);
    CHECK_EQ_INT(zt_ratelimit_check(b, &svc, 0, &res), 0);
    CHECK_EQ_INT(res.remaining, 0);
    CHECK_EQ_INT(zt_ratelimit_check(b, &gw, 0, &res), ZT_E_RATE_LIMITED);
    CHECK_EQ_INT(zt_ratelimit_check(b, &route, 0, &res), ZT_E_RATE_LIMITED);
    CHECK(!res.untracked);
    snprintf(id, sizeof(id), "spiffe://td/ns/n/sa/new");
    CHECK_EQ_INT(zt_ratelimit_check(b, &route, 0, &res), 0);
    zt_ratelimit_set_stats(b, 0, &st);
    CHECK(st.passed == 2 && st.limited == 0);
    zt_ratelimit_set_stats(b, 2, &st);
    CHECK(st.passed == 4 && st.limited == 1 && st.keys == 4);
    /* c: q's burst changed (full again), r's table past its maxKeys. */
    zt_ratelimit_set_inherit(c, a);
    CHECK_EQ_INT(zt_ratelimit_check(c, &gw, 0, &res), 0);
    CHECK_EQ_INT(res.remaining, 1);
    snprintf(id, sizeof(id), "spiffe://td/ns/n/sa/2");
    CHECK_EQ_INT(zt_ratelimit_check(c, &route, 0, &res), 0);
    zt_ratelimit_set_stats(c, 1, &st);
    CHECK(st.passed == 2 && st.limited == 0);
    /* Inheriting from a set that inherited: the chain goes on. */
    d = reload(1, 10);
    zt_ratelimit_set_inherit(d, b);
    CHECK_EQ_INT(zt_ratelimit_check(d, &svc, 0, &res), ZT_E_RATE_LIMITED);
    CHECK_EQ_INT(zt_ratelimit_check(d, &svc, 60000, &res), 0);
    zt_ratelimit_set_unref(a);
    zt_ratelimit_set_unref(b);
    zt_ratelimit_set_unref(c);
    zt_ratelimit_set_unref(d);
}

/* ---- threads ---- */

#define THREADS 8
#define PER_THREAD 20000

struct hammer {
    struct zt_ratelimit_set *s;
    const struct zt_ratelimit_request *rq;
    unsigned passed;
};

static void *hammer(void *arg)
{
    struct hammer *h = arg;
    struct zt_ratelimit_result res;
    for (int i = 0; i < PER_THREAD; i++)
        h->passed += zt_ratelimit_check(h->s, h->rq, 42, &res) == 0;
    return NULL;
}

/* With the clock frozen, threads hammering one bucket take exactly its
 * burst in all: unkeyed, and through a key table. */
static void test_threads(void)
{
    for (int k = 0; k < 2; k++) {
        struct zt_ratelimit_policy *p = pol("ns1", "p", 1, ZT_RATELIMIT_HOUR, 5000);
        struct zt_ratelimit_set *s;
        struct zt_ratelimit_request rq = SVC;
        struct hammer h[THREADS];
        pthread_t t[THREADS];
        struct zt_ratelimit_stats st;
        unsigned total = 0;
        if (k) {
            keyed(p, NULL, 16);
            rq.source_principal = "spiffe://td/ns/n/sa/one";
        }
        s = one(p);
        for (int i = 0; i < THREADS; i++) {
            h[i] = (struct hammer){s, &rq, 0};
            CHECK_EQ_INT(pthread_create(&t[i], NULL, hammer, &h[i]), 0);
        }
        for (int i = 0; i < THREADS; i++) {
            pthread_join(t[i], NULL);
            total += h[i].passed;
        }
        CHECK_EQ_INT(total, 5000);
        zt_ratelimit_set_stats(s, 0, &st);
        CHECK_EQ_INT(st.passed, 5000);
        CHECK_EQ_INT(st.limited, THREADS * PER_THREAD - 5000);
        zt_ratelimit_set_unref(s);
    }
}

int main(void)
{
    RUN(test_bucket_math);
    RUN(test_stats);
    RUN(test_principal_key);
    RUN(test_header_key);
    RUN(test_key_flood);
    RUN(test_key_table);
    RUN(test_attachment);
    RUN(test_many_policies);
    RUN(test_stacked);
    RUN(test_empty);
    RUN(test_inherit);
    RUN(test_threads);
    return TEST_REPORT();
}
