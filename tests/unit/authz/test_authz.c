#include "test.h"

#include "authz/authz.h"
#include "base/err.h"

#include <stdlib.h>

#define ID_FOO_BAR "spiffe://cluster.local/ns/foo/sa/bar"

static struct zt_ip ip(const char *s)
{
    struct zt_ip a;
    if (zt_ip_parse(s, &a) != 0)
        abort();
    return a;
}

static struct zt_policy *pol_new(const char *ns, const char *name, enum zt_policy_scope scope,
                                 enum zt_policy_action action)
{
    struct zt_policy *p = zt_policy_new();
    p->namespace = zt_state_xstrdup(ns);
    p->name = zt_state_xstrdup(name);
    p->scope = scope;
    p->action = action;
    return p;
}

static struct zt_policy_rule *add_rule(struct zt_policy *p)
{
    return zt_state_array_push(&p->rules, &p->n_rules, sizeof(*p->rules));
}

static struct zt_policy_clause *add_clause(struct zt_policy_rule *r)
{
    return zt_state_array_push(&r->clauses, &r->n_clauses, sizeof(*r->clauses));
}

static struct zt_policy_match *add_match(struct zt_policy_clause *c)
{
    return zt_state_array_push(&c->matches, &c->n_matches, sizeof(*c->matches));
}

enum field {
    F_NS,
    F_NOT_NS,
    F_SA,
    F_NOT_SA,
    F_PRIN,
    F_NOT_PRIN,
    F_SRC,
    F_NOT_SRC,
    F_DST,
    F_NOT_DST,
    F_PORT,
    F_NOT_PORT,
};

/* "exact:v", "prefix:v", "suffix:v" or "presence". */
static void push_strmatch(struct zt_strmatch_list *l, const char *spec)
{
    struct zt_strmatch *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    const char *colon = strchr(spec, ':');
    if (!strcmp(spec, "presence")) {
        m->kind = ZT_STRMATCH_PRESENCE;
        return;
    }
    if (!colon)
        abort();
    if (!strncmp(spec, "exact:", 6))
        m->kind = ZT_STRMATCH_EXACT;
    else if (!strncmp(spec, "prefix:", 7))
        m->kind = ZT_STRMATCH_PREFIX;
    else if (!strncmp(spec, "suffix:", 7))
        m->kind = ZT_STRMATCH_SUFFIX;
    else
        abort();
    m->value = zt_state_xstrdup(colon + 1);
}

static void push_sa(struct zt_sa_list *l, const char *spec)
{
    struct zt_sa_match *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    const char *slash = strchr(spec, '/');
    m->namespace = strndup(spec, (size_t)(slash - spec));
    m->service_account = zt_state_xstrdup(slash + 1);
}

static void push_cidr(struct zt_cidr_list *l, const char *spec)
{
    struct zt_cidr *c = zt_state_array_push(&l->v, &l->n, sizeof(*c));
    if (zt_cidr_parse(spec, c))
        abort();
}

static void push_port(struct zt_port_list *l, const char *spec)
{
    *(uint32_t *)zt_state_array_push(&l->v, &l->n, sizeof(uint32_t)) = (uint32_t)atoi(spec);
}

static void set_field(struct zt_policy_match *m, enum field f, const char *v)
{
    switch (f) {
    case F_NS:
        push_strmatch(&m->namespaces, v);
        break;
    case F_NOT_NS:
        push_strmatch(&m->not_namespaces, v);
        break;
    case F_SA:
        push_sa(&m->service_accounts, v);
        break;
    case F_NOT_SA:
        push_sa(&m->not_service_accounts, v);
        break;
    case F_PRIN:
        push_strmatch(&m->principals, v);
        break;
    case F_NOT_PRIN:
        push_strmatch(&m->not_principals, v);
        break;
    case F_SRC:
        push_cidr(&m->source_ips, v);
        break;
    case F_NOT_SRC:
        push_cidr(&m->not_source_ips, v);
        break;
    case F_DST:
        push_cidr(&m->destination_ips, v);
        break;
    case F_NOT_DST:
        push_cidr(&m->not_destination_ips, v);
        break;
    case F_PORT:
        push_port(&m->destination_ports, v);
        break;
    case F_NOT_PORT:
        push_port(&m->not_destination_ports, v);
        break;
    }
}

static struct zt_authz_conn conn_of(const char *identity, const char *src)
{
    struct zt_authz_conn c;
    memset(&c, 0, sizeof(c));
    c.src_identity = identity;
    c.src_ip = ip(src);
    c.src_port = 40000;
    c.dst_ip = ip("10.1.0.7");
    c.dst_port = 8080;
    return c;
}

struct field_case {
    const char *name;
    enum field field;
    const char *value;
    const char *identity; /* NULL: plaintext */
    const char *src;
    bool want;
};

static const struct field_case field_cases[] = {
    {"ns exact", F_NS, "exact:foo", ID_FOO_BAR, "10.0.0.5", true},
    {"ns exact other", F_NS, "exact:other", ID_FOO_BAR, "10.0.0.5", false},
    {"ns prefix", F_NS, "prefix:fo", ID_FOO_BAR, "10.0.0.5", true},
    {"ns prefix miss", F_NS, "prefix:oo", ID_FOO_BAR, "10.0.0.5", false},
    {"ns suffix", F_NS, "suffix:oo", ID_FOO_BAR, "10.0.0.5", true},
    {"ns suffix miss", F_NS, "suffix:fo", ID_FOO_BAR, "10.0.0.5", false},
    {"ns presence", F_NS, "presence", ID_FOO_BAR, "10.0.0.5", true},
    {"ns presence plaintext", F_NS, "presence", NULL, "10.0.0.5", false},
    {"ns exact empty plaintext", F_NS, "exact:", NULL, "10.0.0.5", false},
    {"not ns hit", F_NOT_NS, "exact:foo", ID_FOO_BAR, "10.0.0.5", false},
    {"not ns miss", F_NOT_NS, "exact:other", ID_FOO_BAR, "10.0.0.5", true},
    {"not ns plaintext", F_NOT_NS, "presence", NULL, "10.0.0.5", true},
    {"sa exact", F_SA, "foo/bar", ID_FOO_BAR, "10.0.0.5", true},
    {"sa other sa", F_SA, "foo/baz", ID_FOO_BAR, "10.0.0.5", false},
    {"sa other ns", F_SA, "other/bar", ID_FOO_BAR, "10.0.0.5", false},
    {"sa ignores td", F_SA, "foo/bar", "spiffe://other.td/ns/foo/sa/bar", "10.0.0.5", true},
    {"sa plaintext", F_SA, "foo/bar", NULL, "10.0.0.5", false},
    {"not sa hit", F_NOT_SA, "foo/bar", ID_FOO_BAR, "10.0.0.5", false},
    {"not sa miss", F_NOT_SA, "foo/baz", ID_FOO_BAR, "10.0.0.5", true},
    {"not sa plaintext", F_NOT_SA, "foo/bar", NULL, "10.0.0.5", true},
    {"principal exact", F_PRIN, "exact:cluster.local/ns/foo/sa/bar", ID_FOO_BAR, "10.0.0.5", true},
    {"principal keeps no scheme", F_PRIN, "exact:" ID_FOO_BAR, ID_FOO_BAR, "10.0.0.5", false},
    {"principal prefix", F_PRIN, "prefix:cluster.local/", ID_FOO_BAR, "10.0.0.5", true},
    {"principal suffix", F_PRIN, "suffix:/sa/bar", ID_FOO_BAR, "10.0.0.5", true},
    {"principal suffix miss", F_PRIN, "suffix:/sa/baz", ID_FOO_BAR, "10.0.0.5", false},
    {"principal presence", F_PRIN, "presence", ID_FOO_BAR, "10.0.0.5", true},
    {"principal presence plaintext", F_PRIN, "presence", NULL, "10.0.0.5", false},
    {"not principal presence plaintext", F_NOT_PRIN, "presence", NULL, "10.0.0.5", true},
    {"not principal presence mtls", F_NOT_PRIN, "presence", ID_FOO_BAR, "10.0.0.5", false},
    {"not principal other", F_NOT_PRIN, "exact:x/ns/y/sa/z", ID_FOO_BAR, "10.0.0.5", true},
    {"src in", F_SRC, "10.0.0.0/24", NULL, "10.0.0.5", true},
    {"src out", F_SRC, "10.0.1.0/24", NULL, "10.0.0.5", false},
    {"src host", F_SRC, "10.0.0.5", NULL, "10.0.0.5", true},
    {"src v4-mapped", F_SRC, "10.0.0.0/24", NULL, "::ffff:10.0.0.5", true},
    {"src v6", F_SRC, "fd00::/16", NULL, "fd00::9", true},
    {"src v6 vs v4", F_SRC, "fd00::/16", NULL, "10.0.0.5", false},
    {"not src hit", F_NOT_SRC, "10.0.0.0/24", NULL, "10.0.0.5", false},
    {"not src miss", F_NOT_SRC, "10.9.0.0/16", NULL, "10.0.0.5", true},
    {"dst in", F_DST, "10.1.0.7/32", NULL, "10.0.0.5", true},
    {"dst out", F_DST, "10.1.0.8/32", NULL, "10.0.0.5", false},
    {"not dst hit", F_NOT_DST, "10.1.0.0/16", NULL, "10.0.0.5", false},
    {"not dst miss", F_NOT_DST, "10.2.0.0/16", NULL, "10.0.0.5", true},
    {"port hit", F_PORT, "8080", NULL, "10.0.0.5", true},
    {"port hbone port is not the target", F_PORT, "15008", NULL, "10.0.0.5", false},
    {"not port hit", F_NOT_PORT, "8080", NULL, "10.0.0.5", false},
    {"not port miss", F_NOT_PORT, "9090", NULL, "10.0.0.5", true},
};

static void test_match_fields(void)
{
    for (size_t i = 0; i < sizeof(field_cases) / sizeof(field_cases[0]); i++) {
        const struct field_case *tc = &field_cases[i];
        struct zt_policy *p = pol_new("ns", "p", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW);
        struct zt_authz_conn c = conn_of(tc->identity, tc->src);
        bool got;
        set_field(add_match(add_clause(add_rule(p))), tc->field, tc->value);
        got = zt_authz_policy_matches(p, &c);
        zt_policy_unref(p);
        if (got != tc->want)
            fprintf(stderr, "  case \"%s\": got %d want %d\n", tc->name, got, tc->want);
        CHECK(got == tc->want);
    }
}

static void test_match_structure(void)
{
    struct zt_authz_conn c = conn_of(ID_FOO_BAR, "10.0.0.5");
    struct zt_policy *p;
    struct zt_policy_rule *r;
    struct zt_policy_clause *cl;
    struct zt_policy_match *m;

    /* No rules: never matches. */
    p = pol_new("ns", "p", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW);
    CHECK(!zt_authz_policy_matches(p, &c));
    /* A rule whose only clause has no matches: matches. */
    add_clause(add_rule(p));
    CHECK(zt_authz_policy_matches(p, &c));
    zt_policy_unref(p);

    /* A rule with no clauses: vacuously matches. */
    p = pol_new("ns", "p", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW);
    add_rule(p);
    CHECK(zt_authz_policy_matches(p, &c));
    zt_policy_unref(p);

    /* An all-empty Match never matches, even alone in its clause. */
    p = pol_new("ns", "p", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW);
    add_match(add_clause(add_rule(p)));
    CHECK(!zt_authz_policy_matches(p, &c));
    zt_policy_unref(p);

    /* Within a Match, fields AND. */
    p = pol_new("ns", "p", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW);
    m = add_match(add_clause(add_rule(p)));
    set_field(m, F_PORT, "8080");
    set_field(m, F_NS, "exact:other");
    CHECK(!zt_authz_policy_matches(p, &c));
    /* Within a field, values OR. */
    set_field(m, F_NS, "exact:foo");
    CHECK(zt_authz_policy_matches(p, &c));
    zt_policy_unref(p);

    /* Matches in a clause OR; clauses in a rule AND; rules OR. */
    p = pol_new("ns", "p", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW);
    r = add_rule(p);
    cl = add_clause(r);
    set_field(add_match(cl), F_PORT, "1");
    set_field(add_match(cl), F_PORT, "8080");
    cl = add_clause(r);
    set_field(add_match(cl), F_SA, "foo/nope");
    CHECK(!zt_authz_policy_matches(p, &c)); /* second clause fails */
    set_field(add_match(cl), F_SRC, "10.0.0.0/8");
    CHECK(zt_authz_policy_matches(p, &c));
    zt_policy_unref(p);

    p = pol_new("ns", "p", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW);
    set_field(add_match(add_clause(add_rule(p))), F_PORT, "1");
    CHECK(!zt_authz_policy_matches(p, &c));
    set_field(add_match(add_clause(add_rule(p))), F_PORT, "8080");
    CHECK(zt_authz_policy_matches(p, &c));
    zt_policy_unref(p);
}

/* A policy matching destination port `port`. */
static struct zt_policy *port_pol(const char *ns, const char *name, enum zt_policy_scope scope,
                                  enum zt_policy_action action, const char *port)
{
    struct zt_policy *p = pol_new(ns, name, scope, action);
    set_field(add_match(add_clause(add_rule(p))), F_PORT, port);
    return p;
}

static struct zt_workload *dst_wl(const char *const *pols, size_t n)
{
    struct zt_workload *wl = zt_workload_new();
    wl->uid = zt_state_xstrdup("dst");
    wl->name = zt_state_xstrdup("dst");
    wl->namespace = zt_state_xstrdup("app");
    for (size_t i = 0; i < n; i++)
        *(char **)zt_state_array_push(&wl->authorization_policies, &wl->n_authorization_policies,
                                      sizeof(char *)) = zt_state_xstrdup(pols[i]);
    return wl;
}

struct check_case {
    const char *name;
    struct zt_policy *(*make[4])(void);
    const char *wl_pols[3];
    int want;
    const char *reason;
};

static struct zt_policy *deny_ns_8080(void)
{
    return port_pol("app", "deny-8080", ZT_POLICY_NAMESPACE, ZT_POLICY_DENY, "8080");
}
static struct zt_policy *deny_ns_9090(void)
{
    return port_pol("app", "deny-9090", ZT_POLICY_NAMESPACE, ZT_POLICY_DENY, "9090");
}
static struct zt_policy *deny_other_ns_8080(void)
{
    return port_pol("other", "deny-8080", ZT_POLICY_NAMESPACE, ZT_POLICY_DENY, "8080");
}
static struct zt_policy *deny_global_8080(void)
{
    return port_pol("istio-system", "g", ZT_POLICY_GLOBAL, ZT_POLICY_DENY, "8080");
}
static struct zt_policy *deny_ws_8080(void)
{
    return port_pol("app", "ws-deny", ZT_POLICY_WORKLOAD_SELECTOR, ZT_POLICY_DENY, "8080");
}
static struct zt_policy *allow_ns_9090(void)
{
    return port_pol("app", "allow-9090", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW, "9090");
}
static struct zt_policy *allow_ns_8080(void)
{
    return port_pol("app", "allow-8080", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW, "8080");
}
static struct zt_policy *allow_ws_8080(void)
{
    return port_pol("app", "ws-allow", ZT_POLICY_WORKLOAD_SELECTOR, ZT_POLICY_ALLOW, "8080");
}
static struct zt_policy *allow_other_ns_8080(void)
{
    return port_pol("other", "allow-8080", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW, "8080");
}
static struct zt_policy *dry_deny_8080(void)
{
    struct zt_policy *p = deny_ns_8080();
    p->dry_run = true;
    return p;
}
static struct zt_policy *dry_allow_9090(void)
{
    struct zt_policy *p = allow_ns_9090();
    p->dry_run = true;
    return p;
}
static struct zt_policy *allow_no_rules(void)
{
    return pol_new("app", "allow-nothing", ZT_POLICY_NAMESPACE, ZT_POLICY_ALLOW);
}
static struct zt_policy *strict_mtls(void)
{
    struct zt_policy *p = pol_new("istio-system", "istio_converted_static_strict",
                                  ZT_POLICY_WORKLOAD_SELECTOR, ZT_POLICY_DENY);
    set_field(add_match(add_clause(add_rule(p))), F_NOT_PRIN, "presence");
    return p;
}

static const struct check_case check_cases[] = {
    {"no policies", {NULL}, {NULL}, 0, ""},
    {"deny matches", {deny_ns_8080}, {NULL}, ZT_E_DENIED, "explicitly denied by app/deny-8080"},
    {"deny misses", {deny_ns_9090}, {NULL}, 0, ""},
    {"deny other namespace", {deny_other_ns_8080}, {NULL}, 0, ""},
    {"deny global", {deny_global_8080}, {NULL}, ZT_E_DENIED, "explicitly denied by istio-system/g"},
    {"selector not listed", {deny_ws_8080}, {NULL}, 0, ""},
    {"selector listed",
     {deny_ws_8080},
     {"app/ws-deny"},
     ZT_E_DENIED,
     "explicitly denied by app/ws-deny"},
    {"unknown key skipped", {NULL}, {"app/missing"}, 0, ""},
    {"allow-list, none match",
     {allow_ns_9090},
     {NULL},
     ZT_E_DENIED,
     "allow policies exist, but none allowed"},
    {"allow-list, one matches", {allow_ns_9090, allow_ns_8080}, {NULL}, 0, ""},
    {"allow via selector", {allow_ns_9090, allow_ws_8080}, {"app/ws-allow"}, 0, ""},
    {"allow selector unlisted", {allow_ws_8080}, {NULL}, 0, ""},
    {"allow in other ns ignored", {allow_other_ns_8080}, {NULL}, 0, ""},
    {"deny wins over allow",
     {allow_ns_8080, deny_ns_8080},
     {NULL},
     ZT_E_DENIED,
     "explicitly denied by app/deny-8080"},
    {"dry-run deny not enforced", {dry_deny_8080}, {NULL}, 0, ""},
    {"dry-run allow no allow-listing", {dry_allow_9090}, {NULL}, 0, ""},
    {"allow with no rules denies",
     {allow_no_rules},
     {NULL},
     ZT_E_DENIED,
     "allow policies exist, but none allowed"},
    {"strict mtls with identity",
     {strict_mtls},
     {"istio-system/istio_converted_static_strict"},
     0,
     ""},
};

static struct zt_state *state_of(struct zt_policy *(*const *make)(void), struct zt_workload *wl)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s = NULL;
    char err[256];
    for (size_t i = 0; i < 4 && make[i]; i++)
        zt_state_builder_add_policy(b, make[i]());
    zt_state_builder_add_workload(b, wl);
    if (zt_state_builder_finish(b, &s, err, sizeof(err)))
        abort();
    return s;
}

static void test_check_table(void)
{
    for (size_t i = 0; i < sizeof(check_cases) / sizeof(check_cases[0]); i++) {
        const struct check_case *tc = &check_cases[i];
        size_t n = 0;
        struct zt_state *s;
        struct zt_authz_conn c = conn_of(ID_FOO_BAR, "10.0.0.5");
        char reason[128];
        int rc;
        while (n < 3 && tc->wl_pols[n])
            n++;
        s = state_of(tc->make, dst_wl(tc->wl_pols, n));
        rc = zt_authz_check(s, zt_state_workload_by_uid(s, "dst"), &c, reason, sizeof(reason));
        zt_state_unref(s);
        if (rc != tc->want || strcmp(reason, tc->reason) != 0)
            fprintf(stderr, "  case \"%s\": rc %d reason \"%s\"\n", tc->name, rc, reason);
        CHECK_EQ_INT(rc, tc->want);
        CHECK_EQ_STR(reason, tc->reason);
    }
}

static void test_strict_mtls_plaintext(void)
{
    struct zt_policy *(*make[4])(void) = {strict_mtls, NULL};
    const char *pols[] = {"istio-system/istio_converted_static_strict"};
    struct zt_state *s = state_of(make, dst_wl(pols, 1));
    struct zt_authz_conn c = conn_of(NULL, "10.0.0.5");
    char reason[128];
    CHECK_EQ_INT(zt_authz_check(s, zt_state_workload_by_uid(s, "dst"), &c, reason, sizeof(reason)),
                 ZT_E_DENIED);
    CHECK_EQ_STR(reason, "explicitly denied by istio-system/istio_converted_static_strict");
    zt_state_unref(s);
}

static void test_dry_run_result(void)
{
    struct zt_policy *(*make[4])(void) = {dry_deny_8080, dry_allow_9090, NULL};
    struct zt_state *s = state_of(make, dst_wl(NULL, 0));
    struct zt_authz_conn c = conn_of(ID_FOO_BAR, "10.0.0.5");
    struct zt_authz_result res;
    char reason[128];
    CHECK_EQ_INT(
        zt_authz_check_ex(s, zt_state_workload_by_uid(s, "dst"), &c, &res, reason, sizeof(reason)),
        0);
    CHECK(res.denied_by == NULL);
    CHECK(res.dry_run_denied_by != NULL);
    CHECK_EQ_STR(res.dry_run_denied_by->key, "app/deny-8080");
    CHECK(res.has_dry_run_allow);
    CHECK(!res.dry_run_allow_matched);
    c.dst_port = 9090;
    CHECK_EQ_INT(zt_authz_check_ex(s, zt_state_workload_by_uid(s, "dst"), &c, &res, NULL, 0), 0);
    CHECK(res.dry_run_denied_by == NULL);
    CHECK(res.dry_run_allow_matched);
    zt_state_unref(s);
}

int main(void)
{
    RUN(test_match_fields);
    RUN(test_match_structure);
    RUN(test_check_table);
    RUN(test_strict_mtls_plaintext);
    RUN(test_dry_run_result);
    return TEST_REPORT();
}
