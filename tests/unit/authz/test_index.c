/* The policy index (src/authz/index.c) against the reference evaluator
 * (zt_authz_check_linear): random snapshots and connections, then edge
 * cases written out. Every result must be identical: return code, reason,
 * and the dry-run details, down to which policy is reported. */
#include "test.h"

#include "authz/authz.h"
#include "authz/authz_int.h"
#include "base/err.h"

#include <stdint.h>
#include <stdlib.h>

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)((rng >> 11) % n);
}

static const char *pick(const char *const *v, size_t n)
{
    return v[rnd((uint32_t)n)];
}
#define PICK(arr) pick(arr, sizeof(arr) / sizeof(arr[0]))

static const char *const namespaces[] = {"app", "other", "a", "ab", ""};
static const char *const sas[] = {"x", "y", "", "x/y"};
static const char *const principals[] = {
    "cluster.local/ns/app/sa/x",
    "cluster.local/ns/other/sa/y",
    "other.td/ns/app/sa/x",
    "cluster.local/ns/a/sa/x",
    "cluster.local",
    "",
    "*",
    "cluster.local/ns/app/sa/x/z",
};
static const char *const prefixes[] = {"cluster.local/ns/app", "cluster.local/", "other.td", "",
                                       "cluster.local/ns/a"};
static const char *const suffixes[] = {"/sa/x", "/sa/y", "x", "", "app/sa/x"};
static const char *const cidrs[] = {
    "10.0.0.0/8",  "10.1.0.0/16",         "10.1.2.0/24",    "10.1.2.3/32",
    "10.1.2.3",    "0.0.0.0/0",           "192.168.0.0/16", "fd00::/8",
    "fd00:1::/32", "fd00:1::5/128",       "::/0",           "2001:db8::/32",
    "10.1.2.0/25", "::ffff:10.1.0.0/112", "10.1.128.0/17",  "fd00:1:8000::/33"};
static const uint32_t ports[] = {80, 443, 8080, 9090, 70000, 0};
static const char *const identities[] = {
    "spiffe://cluster.local/ns/app/sa/x",
    "spiffe://cluster.local/ns/app/sa/y",
    "spiffe://cluster.local/ns/other/sa/y",
    "spiffe://other.td/ns/app/sa/x",
    "spiffe://cluster.local/ns/a/sa/x",
    "spiffe://cluster.local/ns/ab/sa/",
    "spiffe://cluster.local/ns//sa/x",
    "spiffe://cluster.local/ns/app/sa/x/z",
    "spiffe://cluster.local",
    "cluster.local/ns/app/sa/x",
    "spiffe://",
    "",
    NULL,
    NULL,
};
static const char *const addrs[] = {
    "10.1.2.3",   "10.1.2.200",  "10.1.9.9",       "10.2.0.1",      "192.168.4.4",     "fd00:1::5",
    "fd00:2::1",  "2001:db8::1", "127.0.0.1",      "::1",           "::ffff:10.1.2.3", "0.0.0.0",
    "10.1.2.100", "10.1.200.1",  "fd00:1:4000::1", "fd00:1:c000::1"};

static void add_str(struct zt_strmatch_list *l)
{
    struct zt_strmatch *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    switch (rnd(5)) {
    case 0:
        m->kind = ZT_STRMATCH_PRESENCE;
        break;
    case 1:
        m->kind = ZT_STRMATCH_PREFIX;
        m->value = zt_state_xstrdup(PICK(prefixes));
        break;
    case 2:
        m->kind = ZT_STRMATCH_SUFFIX;
        m->value = zt_state_xstrdup(PICK(suffixes));
        break;
    default:
        m->kind = ZT_STRMATCH_EXACT;
        m->value = rnd(20) ? zt_state_xstrdup(PICK(principals)) : NULL;
        break;
    }
}

/* Namespace matches mostly exact, so that namespace guards are chosen. */
static void add_ns(struct zt_strmatch_list *l)
{
    struct zt_strmatch *m;
    if (rnd(4) == 0) {
        add_str(l);
        return;
    }
    m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    m->kind = ZT_STRMATCH_EXACT;
    m->value = zt_state_xstrdup(PICK(namespaces));
}

static void add_principal(struct zt_strmatch_list *l)
{
    struct zt_strmatch *m;
    if (rnd(3) == 0) {
        add_str(l);
        return;
    }
    m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    m->kind = ZT_STRMATCH_EXACT;
    m->value = zt_state_xstrdup(PICK(principals));
}

static void add_sa(struct zt_sa_list *l)
{
    struct zt_sa_match *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    m->namespace = zt_state_xstrdup(PICK(namespaces));
    m->service_account = zt_state_xstrdup(PICK(sas));
}

static void add_cidr(struct zt_cidr_list *l)
{
    struct zt_cidr *c = zt_state_array_push(&l->v, &l->n, sizeof(*c));
    if (zt_cidr_parse(PICK(cidrs), c))
        abort();
    /* What only a hand-made CIDR has: host bits set (never contains
     * anything) or a prefix longer than the address (the whole address). */
    if (rnd(15) == 0 && c->ip.family == AF_INET && c->prefix < 32)
        c->ip.addr[3] |= 1;
    else if (rnd(15) == 0)
        c->prefix = 200;
}

static void add_port(struct zt_port_list *l)
{
    *(uint32_t *)zt_state_array_push(&l->v, &l->n, sizeof(uint32_t)) =
        ports[rnd(sizeof(ports) / sizeof(ports[0]))];
}

/* n entries of a list with probability 1/odds, else none. */
#define MAYBE(odds, list, add)                                                                     \
    do {                                                                                           \
        if (rnd(odds) == 0)                                                                        \
            for (uint32_t n_ = 1 + rnd(3), i_ = 0; i_ < n_; i_++)                                  \
                add(list);                                                                         \
    } while (0)

static void random_match(struct zt_policy_match *m)
{
    if (rnd(12) == 0)
        return; /* all-empty: never matches */
    MAYBE(3, &m->principals, add_principal);
    MAYBE(4, &m->namespaces, add_ns);
    MAYBE(5, &m->service_accounts, add_sa);
    MAYBE(4, &m->source_ips, add_cidr);
    MAYBE(8, &m->destination_ips, add_cidr);
    MAYBE(4, &m->destination_ports, add_port);
    MAYBE(8, &m->not_principals, add_str);
    MAYBE(8, &m->not_namespaces, add_ns);
    MAYBE(10, &m->not_service_accounts, add_sa);
    MAYBE(8, &m->not_source_ips, add_cidr);
    MAYBE(10, &m->not_destination_ips, add_cidr);
    MAYBE(8, &m->not_destination_ports, add_port);
}

static const enum zt_policy_scope scopes[] = {ZT_POLICY_GLOBAL, ZT_POLICY_NAMESPACE,
                                              ZT_POLICY_NAMESPACE, ZT_POLICY_WORKLOAD_SELECTOR,
                                              ZT_POLICY_WORKLOAD_SELECTOR};
static const char *const pol_namespaces[] = {"app", "app", "other", "istio-system"};

static struct zt_policy *random_policy(unsigned i)
{
    struct zt_policy *p = zt_policy_new();
    char name[32];
    uint32_t n_rules = rnd(8) == 0 ? 0 : 1 + rnd(5);
    snprintf(name, sizeof(name), "p%02u", i);
    p->namespace = zt_state_xstrdup(PICK(pol_namespaces));
    p->name = zt_state_xstrdup(name);
    p->scope = scopes[rnd(sizeof(scopes) / sizeof(scopes[0]))];
    p->action = rnd(3) == 0 ? ZT_POLICY_DENY : ZT_POLICY_ALLOW;
    p->dry_run = rnd(5) == 0;
    for (uint32_t r = 0; r < n_rules; r++) {
        struct zt_policy_rule *rule = zt_state_array_push(&p->rules, &p->n_rules, sizeof(*rule));
        uint32_t n_clauses = rnd(4);
        for (uint32_t c = 0; c < n_clauses; c++) {
            struct zt_policy_clause *cl =
                zt_state_array_push(&rule->clauses, &rule->n_clauses, sizeof(*cl));
            uint32_t n_matches = rnd(6) == 0 ? 0 : 1 + rnd(3);
            for (uint32_t m = 0; m < n_matches; m++)
                random_match(zt_state_array_push(&cl->matches, &cl->n_matches,
                                                 sizeof(struct zt_policy_match)));
        }
    }
    return p;
}

static struct zt_workload *workload(const char *uid, const char *ns)
{
    struct zt_workload *wl = zt_workload_new();
    wl->uid = zt_state_xstrdup(uid);
    wl->name = zt_state_xstrdup(uid);
    wl->namespace = zt_state_xstrdup(ns);
    return wl;
}

static void list_key(struct zt_workload *wl, const char *key)
{
    *(char **)zt_state_array_push(&wl->authorization_policies, &wl->n_authorization_policies,
                                  sizeof(char *)) = zt_state_xstrdup(key);
}

static struct zt_ip ip(const char *s)
{
    struct zt_ip a;
    if (zt_ip_parse(s, &a))
        abort();
    return a;
}

/* Compares both evaluators on one connection; prints the difference. */
static bool same(const struct zt_state *s, const struct zt_workload *wl,
                 const struct zt_authz_conn *c)
{
    struct zt_authz_result a, b;
    char ra[256], rb[256], rc_[256];
    int x = zt_authz_check_ex(s, wl, c, &a, ra, sizeof(ra));
    int y = zt_authz_check_linear(s, wl, c, &b, rb, sizeof(rb));
    int z = zt_authz_check(s, wl, c, rc_, sizeof(rc_));
    char src[ZT_IP_STRLEN];
    if (x == y && z == y && !strcmp(ra, rb) && !strcmp(rc_, rb) && a.denied_by == b.denied_by &&
        a.dry_run_denied_by == b.dry_run_denied_by && a.has_dry_run_allow == b.has_dry_run_allow &&
        a.dry_run_allow_matched == b.dry_run_allow_matched)
        return true;
    fprintf(stderr,
            "  dst %s (ns %s), identity %s, src %s, port %u:\n"
            "    index %d \"%s\" (no details: %d \"%s\") dry deny %s dry allow %d/%d\n"
            "    reference %d \"%s\" dry deny %s dry allow %d/%d\n",
            wl->uid, wl->namespace, c->src_identity ? c->src_identity : "(none)",
            zt_ip_format(&c->src_ip, src, sizeof(src)), c->dst_port, x, ra, z, rc_,
            a.dry_run_denied_by ? a.dry_run_denied_by->key : "-", a.has_dry_run_allow,
            a.dry_run_allow_matched, y, rb, b.dry_run_denied_by ? b.dry_run_denied_by->key : "-",
            b.has_dry_run_allow, b.dry_run_allow_matched);
    return false;
}

static void test_random_against_reference(void)
{
    unsigned rounds = getenv("AUTHZ_ROUNDS") ? (unsigned)atoi(getenv("AUTHZ_ROUNDS")) : 1500;
    size_t checked = 0, denied = 0, allowed = 0;

    for (unsigned round = 0; round < rounds; round++) {
        struct zt_state_builder *b = zt_state_builder_new(NULL);
        struct zt_state *s = NULL;
        struct zt_workload *wls[3] = {workload("w-app", "app"), workload("w-other", "other"),
                                      workload("w-none", "nowhere")};
        uint32_t n_pols = rnd(14);
        char err[256], key[64];

        for (uint32_t i = 0; i < n_pols; i++) {
            struct zt_policy *p = random_policy(i);
            snprintf(key, sizeof(key), "%s/%s", p->namespace, p->name);
            for (int w = 0; w < 3; w++)
                if (rnd(3) == 0)
                    list_key(wls[w], key);
            zt_state_builder_add_policy(b, p);
        }
        for (int w = 0; w < 3; w++) {
            if (rnd(4) == 0)
                list_key(wls[w], "app/missing");
            if (wls[w]->n_authorization_policies && rnd(4) == 0)
                list_key(wls[w], wls[w]->authorization_policies[0]); /* listed twice */
            zt_state_builder_add_workload(b, wls[w]);
        }
        if (zt_state_builder_finish(b, &s, err, sizeof(err)))
            abort();
        for (int k = 0; k < 60; k++) {
            const struct zt_workload *wl = zt_state_workload_at(s, rnd(3));
            struct zt_authz_conn c = {.src_identity = PICK(identities),
                                      .src_ip = ip(PICK(addrs)),
                                      .src_port = 40000,
                                      .dst_ip = ip(PICK(addrs)),
                                      .dst_port = (uint16_t)ports[rnd(6)]};
            /* Mapped addresses as a dual-stack socket reports them. */
            if (rnd(6) == 0 && c.src_ip.family == AF_INET) {
                uint8_t v4[4];
                memcpy(v4, c.src_ip.addr, 4);
                memset(c.src_ip.addr, 0, 16);
                c.src_ip.addr[10] = c.src_ip.addr[11] = 0xff;
                memcpy(c.src_ip.addr + 12, v4, 4);
                c.src_ip.family = AF_INET6;
            }
            if (!same(s, wl, &c)) {
                fprintf(stderr, "  round %u, check %d\n", round, k);
                zt_state_unref(s);
                CHECK(false);
            }
            checked++;
            if (zt_authz_check_linear(s, wl, &c, NULL, NULL, 0))
                denied++;
            else
                allowed++;
        }
        zt_state_unref(s);
    }
    /* The generator must exercise both outcomes. */
    CHECK(checked == (size_t)rounds * 60);
    CHECK(denied > checked / 10);
    CHECK(allowed > checked / 10);
}

/* ---------------------------------------------------------------- edge cases */

static struct zt_policy *pol(const char *ns, const char *name, enum zt_policy_scope scope,
                             enum zt_policy_action action)
{
    struct zt_policy *p = zt_policy_new();
    p->namespace = zt_state_xstrdup(ns);
    p->name = zt_state_xstrdup(name);
    p->scope = scope;
    p->action = action;
    return p;
}

/* The only Match of a new one-clause rule of p. */
static struct zt_policy_match *new_match(struct zt_policy *p)
{
    struct zt_policy_rule *r = zt_state_array_push(&p->rules, &p->n_rules, sizeof(*r));
    struct zt_policy_clause *c = zt_state_array_push(&r->clauses, &r->n_clauses, sizeof(*c));
    return zt_state_array_push(&c->matches, &c->n_matches, sizeof(struct zt_policy_match));
}

static void push_port(struct zt_port_list *l, uint32_t port)
{
    *(uint32_t *)zt_state_array_push(&l->v, &l->n, sizeof(uint32_t)) = port;
}

static void push_cidr(struct zt_cidr_list *l, const char *text)
{
    struct zt_cidr *c = zt_state_array_push(&l->v, &l->n, sizeof(*c));
    if (zt_cidr_parse(text, c))
        abort();
}

static struct zt_state *snapshot(struct zt_policy **pols, size_t n, struct zt_workload *wl)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s = NULL;
    char err[256];
    for (size_t i = 0; i < n; i++)
        zt_state_builder_add_policy(b, pols[i]);
    zt_state_builder_add_workload(b, wl);
    if (zt_state_builder_finish(b, &s, err, sizeof(err)))
        abort();
    return s;
}

/* The indexed result for w, or -1 if the reference disagrees. */
static int check(const struct zt_state *s, const char *src, uint16_t port, char *reason, size_t len)
{
    struct zt_authz_conn c = {.src_identity = "spiffe://cluster.local/ns/app/sa/x",
                              .src_ip = ip(src),
                              .dst_ip = ip("10.1.0.7"),
                              .dst_port = port};
    const struct zt_workload *wl = zt_state_workload_by_uid(s, "w");
    int rc = zt_authz_check(s, wl, &c, reason, len);
    return rc == zt_authz_check_linear(s, wl, &c, NULL, NULL, 0) ? rc : -1;
}

/* A namespace-wide DENY is visited before every listed policy, whatever
 * the key order; listed ones in the order listed. */
static void test_deny_reported_in_visiting_order(void)
{
    struct zt_policy *p[4] = {
        pol("app", "z-ns", ZT_POLICY_NAMESPACE, ZT_POLICY_DENY),
        pol("app", "a-sel", ZT_POLICY_WORKLOAD_SELECTOR, ZT_POLICY_DENY),
        pol("app", "b-sel", ZT_POLICY_WORKLOAD_SELECTOR, ZT_POLICY_DENY),
        pol("other", "c-ns", ZT_POLICY_NAMESPACE, ZT_POLICY_DENY),
    };
    struct zt_workload *wl = workload("w", "app");
    struct zt_state *s;
    char reason[128];
    push_port(&new_match(p[0])->destination_ports, 8080);
    push_port(&new_match(p[1])->destination_ports, 8080);
    push_port(&new_match(p[1])->destination_ports, 9090);
    push_port(&new_match(p[2])->destination_ports, 9090);
    push_port(&new_match(p[3])->destination_ports, 7070);
    list_key(wl, "app/b-sel");
    list_key(wl, "app/a-sel");
    list_key(wl, "other/c-ns"); /* another namespace's policy, listed: applies */
    s = snapshot(p, 4, wl);
    CHECK_EQ_INT(check(s, "10.0.0.1", 8080, reason, sizeof(reason)), ZT_E_DENIED);
    CHECK_EQ_STR(reason, "explicitly denied by app/z-ns");
    CHECK_EQ_INT(check(s, "10.0.0.1", 9090, reason, sizeof(reason)), ZT_E_DENIED);
    CHECK_EQ_STR(reason, "explicitly denied by app/b-sel");
    CHECK_EQ_INT(check(s, "10.0.0.1", 7070, reason, sizeof(reason)), ZT_E_DENIED);
    CHECK_EQ_STR(reason, "explicitly denied by other/c-ns");
    CHECK_EQ_INT(check(s, "10.0.0.1", 80, reason, sizeof(reason)), 0);
    zt_state_unref(s);
}

/* Source blocks of several lengths in one rule, which the index looks up
 * once per length. */
static void test_source_blocks_of_several_lengths(void)
{
    struct zt_policy *p = pol("app", "allow", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW);
    struct zt_policy_match *m = new_match(p);
    struct zt_state *s;
    char reason[128];
    push_cidr(&m->source_ips, "10.0.0.0/8");
    push_cidr(&m->source_ips, "10.1.0.0/16");
    push_cidr(&m->source_ips, "10.1.2.3/32");
    push_cidr(&m->source_ips, "fd00:1::/32");
    push_cidr(&m->source_ips, "2001:db8::7/128");
    s = snapshot(&p, 1, workload("w", "app"));
    CHECK_EQ_INT(check(s, "10.1.2.3", 80, reason, sizeof(reason)), 0);
    CHECK_EQ_INT(check(s, "10.200.0.1", 80, reason, sizeof(reason)), 0);
    CHECK_EQ_INT(check(s, "::ffff:10.1.2.3", 80, reason, sizeof(reason)), 0);
    CHECK_EQ_INT(check(s, "fd00:1:ffff::1", 80, reason, sizeof(reason)), 0);
    CHECK_EQ_INT(check(s, "2001:db8::7", 80, reason, sizeof(reason)), 0);
    CHECK_EQ_INT(check(s, "11.0.0.1", 80, reason, sizeof(reason)), ZT_E_DENIED);
    CHECK_EQ_INT(check(s, "fd00:2::1", 80, reason, sizeof(reason)), ZT_E_DENIED);
    CHECK_EQ_INT(check(s, "2001:db8::8", 80, reason, sizeof(reason)), ZT_E_DENIED);
    CHECK_EQ_STR(reason, "allow policies exist, but none allowed");
    zt_state_unref(s);
}

/* Entries that can never match: a port above 65535 and a CIDR with host
 * bits set. In a positive list the Match never matches; in a not_ list
 * they exclude nothing, so the Match matches everything. */
static void test_entries_that_never_match(void)
{
    struct zt_policy *p[3] = {
        pol("app", "deny-big-port", ZT_POLICY_NAMESPACE, ZT_POLICY_DENY),
        pol("app", "deny-host-bits", ZT_POLICY_NAMESPACE, ZT_POLICY_DENY),
        pol("app", "deny-not-big-port", ZT_POLICY_NAMESPACE, ZT_POLICY_DENY),
    };
    struct zt_policy_match *m;
    struct zt_cidr *c;
    struct zt_state *s;
    char reason[128];
    push_port(&new_match(p[0])->destination_ports, 70000 + 8080);
    m = new_match(p[1]);
    c = zt_state_array_push(&m->source_ips.v, &m->source_ips.n, sizeof(*c));
    if (zt_cidr_parse("10.1.2.0/24", c))
        abort();
    c->ip.addr[3] = 3; /* 10.1.2.3/24, as no parser would leave it */
    s = snapshot(p, 2, workload("w", "app"));
    CHECK_EQ_INT(check(s, "10.1.2.3", 8080, reason, sizeof(reason)), 0);
    zt_state_unref(s);

    push_port(&new_match(p[2])->not_destination_ports, 70000);
    s = snapshot(&p[2], 1, workload("w", "app"));
    CHECK_EQ_INT(check(s, "10.1.2.3", 8080, reason, sizeof(reason)), ZT_E_DENIED);
    CHECK_EQ_STR(reason, "explicitly denied by app/deny-not-big-port");
    zt_state_unref(s);
}

/* Each snapshot has its own index: a snapshot made from another by
 * removing a policy no longer applies it, and the first one still does. */
static void test_index_follows_the_snapshot(void)
{
    struct zt_policy *p = pol("app", "deny", ZT_POLICY_NAMESPACE, ZT_POLICY_DENY);
    struct zt_state *s1, *s2 = NULL;
    struct zt_state_builder *b;
    char reason[128], err[256];
    push_port(&new_match(p)->destination_ports, 8080);
    s1 = snapshot(&p, 1, workload("w", "app"));
    CHECK_EQ_INT(check(s1, "10.0.0.1", 8080, reason, sizeof(reason)), ZT_E_DENIED);
    b = zt_state_builder_new(s1);
    zt_state_builder_remove_policy(b, "app/deny");
    CHECK_EQ_INT(zt_state_builder_finish(b, &s2, err, sizeof(err)), 0);
    CHECK_EQ_INT(check(s2, "10.0.0.1", 8080, reason, sizeof(reason)), 0);
    CHECK_EQ_INT(check(s1, "10.0.0.1", 8080, reason, sizeof(reason)), ZT_E_DENIED);
    zt_state_unref(s1);
    zt_state_unref(s2);
}

/* ---------------------------------------------------------------- reuse across snapshots */

static struct zt_authz_conn random_conn(void)
{
    struct zt_authz_conn c = {.src_identity = PICK(identities),
                              .src_ip = ip(PICK(addrs)),
                              .src_port = 40000,
                              .dst_ip = ip(PICK(addrs)),
                              .dst_port = (uint16_t)ports[rnd(6)]};
    return c;
}

static bool same_verdict(const struct zt_authz_verdict *a, const struct zt_authz_verdict *b)
{
    return a->has_allow == b->has_allow && a->allowed == b->allowed &&
           a->res.denied_by == b->res.denied_by &&
           a->res.dry_run_denied_by == b->res.dry_run_denied_by &&
           a->res.has_dry_run_allow == b->res.has_dry_run_allow &&
           a->res.dry_run_allow_matched == b->res.dry_run_allow_matched;
}

/* Checks every workload of s on random connections: the index s uses
 * against the reference and against an index built afresh from s. */
static bool checks_as_fresh(const struct zt_state *s)
{
    struct zt_authz_index *fresh = zt_authz_index_build(s);
    bool ok = true;
    for (int k = 0; k < 60 && ok; k++) {
        const struct zt_workload *wl =
            zt_state_workload_at(s, rnd((uint32_t)zt_state_workload_count(s)));
        struct zt_authz_conn c = random_conn();
        struct zt_authz_ident id;
        struct zt_authz_verdict a, b;
        zt_authz_ident_parse(c.src_identity, &id);
        zt_authz_index_eval(zt_authz_index_of(s), wl, &c, &id, true, &a);
        zt_authz_index_eval(fresh, wl, &c, &id, true, &b);
        ok = same(s, wl, &c) && same_verdict(&a, &b);
    }
    zt_authz_index_free(fresh);
    return ok;
}

static const char *const wl_namespaces[] = {"app", "other", "istio-system", "nowhere"};

/* A delta that changes only workloads (a workload moved to another
 * namespace with other listed policies, one removed, one added) keeps the
 * base's index, which gives the new snapshot the results of a fresh build;
 * a delta that changes a policy gets a new index. */
static void test_workload_delta_reuses_index(void)
{
    for (unsigned round = 0; round < 300; round++) {
        struct zt_state_builder *b = zt_state_builder_new(NULL);
        struct zt_state *s1 = NULL, *s2 = NULL, *s3 = NULL;
        struct zt_workload *moved = workload("w-app", PICK(wl_namespaces));
        struct zt_workload *added = workload("w-added", PICK(wl_namespaces));
        uint32_t n_pols = 1 + rnd(13);
        char err[256], key[64];
        bool ok;

        for (uint32_t i = 0; i < n_pols; i++) {
            struct zt_policy *p = random_policy(i);
            snprintf(key, sizeof(key), "%s/%s", p->namespace, p->name);
            if (rnd(3) == 0)
                list_key(moved, key);
            if (rnd(3) == 0)
                list_key(added, key);
            zt_state_builder_add_policy(b, p);
        }
        zt_state_builder_add_workload(b, workload("w-app", "app"));
        zt_state_builder_add_workload(b, workload("w-other", "other"));
        zt_state_builder_add_workload(b, workload("w-none", "nowhere"));
        if (zt_state_builder_finish(b, &s1, err, sizeof(err)))
            abort();
        zt_authz_prepare(s1);

        b = zt_state_builder_new(s1);
        zt_state_builder_put_workload(b, moved);
        zt_state_builder_put_workload(b, added);
        zt_state_builder_remove_workload(b, "w-other");
        CHECK_EQ_INT(zt_state_builder_finish(b, &s2, err, sizeof(err)), 0);
        CHECK(zt_authz_index_of(s2) == zt_authz_index_of(s1));
        ok = checks_as_fresh(s2) && checks_as_fresh(s1);

        b = zt_state_builder_new(s2);
        zt_state_builder_put_policy(b, random_policy(rnd(n_pols + 1)));
        CHECK_EQ_INT(zt_state_builder_finish(b, &s3, err, sizeof(err)), 0);
        CHECK(zt_authz_index_of(s3) != zt_authz_index_of(s2));
        ok = ok && checks_as_fresh(s3);

        zt_state_unref(s1);
        /* s2 still uses the index s1 built. */
        ok = ok && checks_as_fresh(s2);
        zt_state_unref(s2);
        zt_state_unref(s3);
        if (!ok) {
            fprintf(stderr, "  round %u\n", round);
            CHECK(false);
            return;
        }
    }
}

int main(void)
{
    RUN(test_random_against_reference);
    RUN(test_deny_reported_in_visiting_order);
    RUN(test_source_blocks_of_several_lengths);
    RUN(test_entries_that_never_match);
    RUN(test_index_follows_the_snapshot);
    RUN(test_workload_delta_reuses_index);
    return TEST_REPORT();
}
