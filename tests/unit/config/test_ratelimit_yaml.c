/* RateLimit YAML (config/ratelimit.h): policies as users write them read
 * field by field, every refusal with its file:line, object and field
 * path, a bad policy next to good ones, what is skipped. */
#include "test.h"
#include "dump_errs.h"
#include "base/err.h"
#include "config/ratelimit.h"
#include "http/head.h"

#include <stdio.h>

static const char REAL[] =
    "# 100 a minute per user on reviews, bursts of 20\n"
    "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\n"
    "kind: RateLimit\n"
    "metadata:\n"
    "  name: reviews-per-user\n"
    "  namespace: bookinfo\n"
    "  labels: {team: a}\n"
    "spec:\n"
    "  targetRefs:\n"
    "  - kind: Service\n"
    "    group: \"\"\n"
    "    name: reviews\n"
    "  - {kind: HTTPRoute, group: gateway.networking.k8s.io, name: api, sectionName: writes}\n"
    "  - {kind: GRPCRoute, name: grpc, namespace: bookinfo}\n"
    "  - {kind: Gateway, name: waypoint}\n"
    "  limit: {requests: 100, unit: minute, burst: 20}\n"
    "  key: {header: X-User-Id}\n"
    "  maxKeys: 500\n"
    "---\n"
    "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\n"
    "kind: RateLimit\n"
    "metadata: {name: per-client}\n"
    "spec:\n"
    "  targetRefs: [{kind: Gateway, name: waypoint}]\n"
    "  limit: {requests: 1000000000, unit: hour}\n"
    "  key: {sourcePrincipal: {}}\n"
    "---\n"
    "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\n"
    "kind: RateLimit\n"
    "metadata: {name: whole, namespace: bookinfo}\n"
    "spec:\n"
    "  targetRefs: [{kind: Service, name: ratings}]\n"
    "  limit: {requests: 1, unit: second}\n";

static void test_real(void)
{
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    struct zt_route_errors errs = {0};
    const struct zt_ratelimit_policy *a, *b, *c;
    CHECK_EQ_INT(zt_config_ratelimit_load_string(s, "t.yaml", REAL, strlen(REAL), &errs), 0);
    zt_ratelimit_set_seal(s);
    if (errs.n)
        dump(&errs);
    CHECK_EQ_INT(errs.n, 0);
    CHECK_EQ_INT(zt_ratelimit_set_count(s), 3);
    a = zt_ratelimit_set_at(s, 0);
    b = zt_ratelimit_set_at(s, 1);
    c = zt_ratelimit_set_at(s, 2);
    CHECK_EQ_STR(a->ns, "bookinfo");
    CHECK_EQ_STR(a->name, "reviews-per-user");
    CHECK(a->requests == 100 && a->unit == ZT_RATELIMIT_MINUTE && a->burst == 20);
    CHECK_EQ_INT(a->key, ZT_RATELIMIT_KEY_HEADER);
    CHECK_EQ_STR(a->header, "x-user-id");
    CHECK_EQ_INT(a->max_keys, 500);
    CHECK_EQ_INT(a->n_targets, 4);
    CHECK_EQ_INT(a->targets[0].kind, ZT_RATELIMIT_SERVICE);
    CHECK_EQ_STR(a->targets[0].name, "reviews");
    CHECK(a->targets[0].section == NULL);
    CHECK_EQ_INT(a->targets[1].kind, ZT_RATELIMIT_HTTP_ROUTE);
    CHECK_EQ_STR(a->targets[1].section, "writes");
    CHECK_EQ_INT(a->targets[2].kind, ZT_RATELIMIT_GRPC_ROUTE);
    CHECK_EQ_INT(a->targets[3].kind, ZT_RATELIMIT_GATEWAY);
    CHECK_EQ_STR(b->name, "whole");
    CHECK(b->requests == 1 && b->burst == 1 && b->unit == ZT_RATELIMIT_SECOND);
    CHECK_EQ_INT(b->key, ZT_RATELIMIT_KEY_NONE);
    CHECK_EQ_INT(b->max_keys, 0);
    CHECK_EQ_STR(c->ns, "default");
    CHECK_EQ_STR(c->name, "per-client");
    CHECK(c->requests == 1000000000 && c->burst == 1000000000 && c->unit == ZT_RATELIMIT_HOUR);
    CHECK_EQ_INT(c->key, ZT_RATELIMIT_KEY_PRINCIPAL);
    CHECK_EQ_INT(c->max_keys, ZT_RATELIMIT_DEFAULT_MAX_KEYS);
    zt_ratelimit_set_unref(s);
    zt_route_errors_cleanup(&errs);
}

/* One policy: HEAD, then `tail` (YAML lines at spec level, after
 * targetRefs); the error must be exactly `want`. */
#define HEAD                                                                                       \
    "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\n"                                                \
    "kind: RateLimit\n"                                                                            \
    "metadata: {name: p, namespace: ns1}\n"                                                        \
    "spec:\n"                                                                                      \
    "  targetRefs: [{kind: Service, name: svc}]\n"
#define LIMIT "  limit: {requests: 10, unit: second}\n"
#define OBJ "RateLimit ns1/p: "
#define T4                                                                                         \
    "{kind: Service, name: a}, {kind: Service, name: b}, {kind: Service, name: c}, "               \
    "{kind: Service, name: d}, "
#define T17 T4 T4 T4 T4 "{kind: Service, name: e}"
#define X64 "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"

static const struct {
    const char *yaml, *want;
} BAD[] = {
    {"apiVersion: ratelimit.ztunnel-c.io/v1\nkind: RateLimit\nmetadata: {name: p}\n",
     "t.yaml:1: RateLimit: apiVersion: \"ratelimit.ztunnel-c.io/v1\" is not a supported version "
     "of RateLimit"},
    {"kind: RateLimit\nmetadata: {name: p}\n", "t.yaml:1: RateLimit: apiVersion: required"},
    {"apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\nmetadata: {namespace: n}\n",
     "t.yaml:3: RateLimit: metadata.name: required"},
    {"apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
     "metadata: {name: p, namespace: ns1}\n",
     "t.yaml:1: " OBJ "spec: required"},
    {HEAD LIMIT "  rules: []\n",
     "t.yaml:7: " OBJ "spec.rules: not supported here (the policy is refused rather than read "
     "without it)"},
    {"apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
     "metadata: {name: p, namespace: ns1}\nspec:\n" LIMIT,
     "t.yaml:5: " OBJ "spec.targetRefs: required"},
    {"apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
     "metadata: {name: p, namespace: ns1}\nspec:\n  targetRefs: []\n" LIMIT,
     "t.yaml:5: " OBJ "spec.targetRefs: must not be empty"},
    {"apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
     "metadata: {name: p, namespace: ns1}\nspec:\n  targetRefs: [{kind: Deployment, group: apps, "
     "name: x}]\n" LIMIT,
     "t.yaml:5: " OBJ "spec.targetRefs[0]: kind Deployment of group \"apps\" is not a RateLimit "
     "target (Gateway, HTTPRoute or GRPCRoute of gateway.networking.k8s.io, Service of \"\")"},
    {"apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
     "metadata: {name: p, namespace: ns1}\nspec:\n  targetRefs: [{kind: Gateway, group: \"\", "
     "name: x}]\n" LIMIT,
     "t.yaml:5: " OBJ "spec.targetRefs[0]: kind Gateway of group \"\" is not a RateLimit target "
     "(Gateway, HTTPRoute or GRPCRoute of gateway.networking.k8s.io, Service of \"\")"},
    {"apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
     "metadata: {name: p, namespace: ns1}\nspec:\n  targetRefs: [{kind: Service, name: x, "
     "sectionName: http}]\n" LIMIT,
     "t.yaml:5: " OBJ "spec.targetRefs[0].sectionName: only for HTTPRoute and GRPCRoute targets "
     "(a rule name)"},
    {"apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
     "metadata: {name: p, namespace: ns1}\nspec:\n  targetRefs: [{kind: Service, name: x, "
     "port: 80}]\n" LIMIT,
     "t.yaml:5: " OBJ "spec.targetRefs[0].port: not supported here (the policy is refused rather "
     "than read without it)"},
    {"apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
     "metadata: {name: p, namespace: ns1}\nspec:\n  targetRefs: [{kind: Service}]\n" LIMIT,
     "t.yaml:5: " OBJ "spec.targetRefs[0].name: required"},
    {HEAD, "t.yaml:5: " OBJ "spec.limit: required"},
    {HEAD "  limit: {unit: second}\n", "t.yaml:6: " OBJ "spec.limit.requests: required"},
    {HEAD "  limit: {requests: 0, unit: second}\n",
     "t.yaml:6: " OBJ "spec.limit.requests: 0 is out of range (1..1000000000)"},
    {HEAD "  limit: {requests: 1000000001, unit: second}\n",
     "t.yaml:6: " OBJ "spec.limit.requests: 1000000001 is out of range (1..1000000000)"},
    {HEAD "  limit: {requests: -1, unit: second}\n",
     "t.yaml:6: " OBJ "spec.limit.requests: expected an integer, found \"-1\""},
    {HEAD "  limit: {requests: 1.5, unit: second}\n",
     "t.yaml:6: " OBJ "spec.limit.requests: expected an integer, found \"1.5\""},
    {HEAD "  limit: {requests: 10, unit: second, burst: 0}\n",
     "t.yaml:6: " OBJ "spec.limit.burst: 0 is out of range (1..1000000000)"},
    {HEAD "  limit: {requests: 10}\n", "t.yaml:6: " OBJ "spec.limit.unit: required"},
    {HEAD "  limit: {requests: 10, unit: day}\n",
     "t.yaml:6: " OBJ "spec.limit.unit: \"day\" is not second, minute or hour"},
    {HEAD "  limit: {requests: 10, unit: second, per: ip}\n",
     "t.yaml:6: " OBJ "spec.limit.per: not supported here (the policy is refused rather than read "
     "without it)"},
    {HEAD "  limit: [10]\n", "t.yaml:6: " OBJ "spec.limit: expected a mapping, found a list"},
    {HEAD LIMIT "  key: {header: x-user, sourcePrincipal: {}}\n",
     "t.yaml:7: " OBJ "spec.key: set only one of header and sourcePrincipal"},
    {HEAD LIMIT "  key: {}\n", "t.yaml:7: " OBJ "spec.key: set one of header and sourcePrincipal"},
    {HEAD LIMIT "  key: {header: \"\"}\n", "t.yaml:7: " OBJ "spec.key.header: must not be empty"},
    {HEAD LIMIT "  key: {header: \"x user\"}\n",
     "t.yaml:7: " OBJ "spec.key.header: \"x user\" is not a header name"},
    {HEAD LIMIT "  key: {header: \":authority\"}\n",
     "t.yaml:7: " OBJ "spec.key.header: \":authority\" is not a header name"},
    {HEAD LIMIT "  key: {sourcePrincipal: {exact: a}}\n",
     "t.yaml:7: " OBJ "spec.key.sourcePrincipal.exact: not supported here (the policy is refused "
     "rather than read without it)"},
    {HEAD LIMIT "  key: {sourcePrincipal: yes}\n",
     "t.yaml:7: " OBJ "spec.key.sourcePrincipal: expected a mapping, found a scalar"},
    {HEAD LIMIT "  key: {cookie: session}\n",
     "t.yaml:7: " OBJ "spec.key.cookie: not supported here (the policy is refused rather than "
     "read without it)"},
    {HEAD LIMIT "  maxKeys: 100\n", "t.yaml:7: " OBJ "spec.maxKeys: only with spec.key"},
    {"apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
     "metadata: {name: p, namespace: ns1}\nspec:\n  targetRefs: [" T17 "]\n" LIMIT,
     "t.yaml:5: " OBJ "spec.targetRefs: more than 16 items"},
    {HEAD LIMIT "  key: {header: " X64 X64 X64 X64 "h}\n",
     "t.yaml:7: " OBJ "spec.key.header: longer than 256 bytes"},
    {HEAD LIMIT "  key: {header: x}\n  maxKeys: 0\n",
     "t.yaml:8: " OBJ "spec.maxKeys: 0 is out of range (1..1000000)"},
    {HEAD LIMIT "  key: {header: x}\n  maxKeys: 1000001\n",
     "t.yaml:8: " OBJ "spec.maxKeys: 1000001 is out of range (1..1000000)"},
};

#define GOOD "---\n" HEAD LIMIT

/* Each bad policy is refused with its message; a good one in the same
 * file still loads. */
static void test_bad(void)
{
    size_t failed = 0;
    for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
        struct zt_ratelimit_set *s = zt_ratelimit_set_new();
        struct zt_route_errors errs = {0};
        char yaml[2048];
        int n = snprintf(yaml, sizeof(yaml), "%s%s", BAD[i].yaml, GOOD);
        int rc = zt_config_ratelimit_load_string(s, "t.yaml", yaml, (size_t)n, &errs);
        zt_ratelimit_set_seal(s);
        if (rc || errs.n != 1 || errs.n_errors != 1 || strcmp(errs.v[0].msg, BAD[i].want) != 0) {
            fprintf(stderr, "  case %zu, want: %s\n", i, BAD[i].want);
            dump(&errs);
            failed++;
        }
        failed += zt_ratelimit_set_count(s) != 1;
        zt_ratelimit_set_unref(s);
        zt_route_errors_cleanup(&errs);
    }
    CHECK_EQ_INT(failed, 0);
}

/* Skipped with a warning: targets in another namespace, then the policy
 * left without any. Other kinds and lists: read or skipped silently. */
static void test_skipped(void)
{
    static const char y[] =
        "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
        "metadata: {name: a, namespace: ns1}\n"
        "spec:\n  targetRefs:\n  - {kind: Service, name: s, namespace: ns2}\n" LIMIT
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: e}\n"
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: f}\n"
        "---\nkind: List\napiVersion: v1\nitems:\n"
        "- {apiVersion: ratelimit.ztunnel-c.io/v1alpha1, kind: RateLimit, metadata: {name: g},"
        " spec: {targetRefs: [{kind: Service, name: s}], limit: {requests: 1, unit: hour}}}\n";
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    struct zt_route_errors errs = {0};
    CHECK_EQ_INT(zt_config_ratelimit_load_string(s, "t.yaml", y, strlen(y), &errs), 0);
    zt_ratelimit_set_seal(s);
    if (errs.n != 2)
        dump(&errs);
    CHECK_EQ_INT(errs.n_errors, 0);
    CHECK_EQ_INT(errs.n_warnings, 2);
    CHECK_EQ_STR(errs.v[0].msg, "t.yaml:6: RateLimit ns1/a: spec.targetRefs[0]: cross-namespace "
                                "reference to ns2/s ignored");
    CHECK_EQ_STR(errs.v[1].msg, "t.yaml:5: RateLimit ns1/a: spec: no target applies: policy "
                                "ignored");
    CHECK_EQ_INT(zt_ratelimit_set_count(s), 1);
    CHECK_EQ_STR(zt_ratelimit_set_at(s, 0)->name, "g");
    zt_ratelimit_set_unref(s);
    zt_route_errors_cleanup(&errs);
}

static void test_syntax(void)
{
    static const char y[] = GOOD "---\nkind: [unclosed\n";
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    struct zt_route_errors errs = {0};
    CHECK_EQ_INT(zt_config_ratelimit_load_string(s, "t.yaml", y, strlen(y), &errs), ZT_E_CONFIG);
    zt_ratelimit_set_seal(s);
    CHECK_EQ_INT(errs.n_errors, 1);
    CHECK(strncmp(errs.v[0].msg, "t.yaml:", 7) == 0);
    CHECK_EQ_INT(zt_ratelimit_set_count(s), 1);
    zt_ratelimit_set_unref(s);
    zt_route_errors_cleanup(&errs);
}

/* What the reader gives the engine limits as written: 2 a second per
 * header value on the rule "writes" of route api. */
static void test_loaded(void)
{
    static const char y[] =
        "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\n"
        "metadata: {name: w, namespace: ns1}\n"
        "spec:\n  targetRefs: [{kind: HTTPRoute, name: api, sectionName: writes}]\n"
        "  limit: {requests: 2, unit: second}\n  key: {header: X-User}\n";
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    struct zt_route_errors errs = {0};
    struct zt_http_head h;
    struct zt_ratelimit_request rq = {
        .route_ns = "ns1", .route_name = "api", .rule_name = "writes"};
    struct zt_ratelimit_result res;
    zt_http_head_init(&h, false);
    zt_http_head_add(&h, "x-user", 6, "u1", 2);
    rq.head = &h;
    CHECK_EQ_INT(zt_config_ratelimit_load_string(s, "t.yaml", y, strlen(y), &errs), 0);
    CHECK_EQ_INT(errs.n, 0);
    zt_ratelimit_set_seal(s);
    CHECK_EQ_INT(zt_ratelimit_check(s, &rq, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &rq, 0, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(s, &rq, 0, &res), ZT_E_RATE_LIMITED);
    CHECK(res.limit == 2 && res.remaining == 0 && res.reset_ms == 500 && res.reset_s == 1);
    CHECK_EQ_INT(zt_ratelimit_check(s, &rq, 500, &res), 0);
    rq.rule_name = "reads";
    CHECK_EQ_INT(zt_ratelimit_check(s, &rq, 500, &res), 0);
    CHECK(!res.applied);
    zt_http_head_cleanup(&h);
    zt_ratelimit_set_unref(s);
    zt_route_errors_cleanup(&errs);
}

int main(void)
{
    RUN(test_real);
    RUN(test_bad);
    RUN(test_skipped);
    RUN(test_syntax);
    RUN(test_loaded);
    return TEST_REPORT();
}
