/* AuthorizationPolicy YAML (config/authz.h): a policy as users write it
 * read field by field, every refusal with its file:line, object and field
 * path, a bad object next to good ones, what attaches to waypoints. */
#include "test.h"
#include "dump_errs.h"
#include "base/err.h"
#include "config/authz.h"

#include <stdio.h>

static const char REAL[] =
    "# Istio's docs: only GET from the bookinfo namespace's productpage\n"
    "apiVersion: security.istio.io/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata:\n"
    "  name: reviews-viewer\n"
    "  namespace: bookinfo\n"
    "  annotations:\n"
    "    istio.io/dry-run: \"true\"\n"
    "spec:\n"
    "  targetRefs:\n"
    "  - kind: Service\n"
    "    group: \"\"\n"
    "    name: reviews\n"
    "  - kind: Gateway\n"
    "    group: gateway.networking.k8s.io\n"
    "    name: waypoint\n"
    "  action: DENY\n"
    "  rules:\n"
    "  - from:\n"
    "    - source:\n"
    "        principals: [\"cluster.local/ns/bookinfo/sa/bookinfo-productpage\"]\n"
    "        notIpBlocks: [\"10.0.0.0/8\"]\n"
    "    to:\n"
    "    - operation:\n"
    "        methods: [\"GET\"]\n"
    "        hosts: [\"Reviews.bookinfo*\"]\n"
    "        paths: [\"/api/{*}/reviews\", \"*.json\"]\n"
    "        notPorts: [\"9090\"]\n"
    "    when:\n"
    "    - key: request.headers[X-Version]\n"
    "      values: [\"v1\"]\n"
    "    - key: request.auth.claims[realm_access][roles]\n"
    "      notValues: [\"guest\"]\n"
    "    - key: destination.port\n"
    "      values: [\"9080\"]\n"
    "  - {}\n"
    "---\n"
    "apiVersion: security.istio.io/v1beta1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: mesh, namespace: istio-system}\n"
    "spec:\n"
    "  targetRef: {kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}\n"
    "  action: AUDIT\n";

static void test_real(void)
{
    struct zt_authz_l7_set *s = zt_authz_l7_set_new(NULL);
    struct zt_route_errors errs = {0};
    const struct zt_authz_l7_policy *p, *m;
    const struct zt_authz_l7_rule *r;
    CHECK_EQ_INT(zt_config_authz_load_string(s, "t.yaml", REAL, strlen(REAL), &errs), 0);
    zt_authz_l7_set_seal(s);
    if (errs.n)
        dump(&errs);
    CHECK_EQ_INT(errs.n, 0);
    CHECK_EQ_INT(zt_authz_l7_set_count(s), 2);
    p = zt_authz_l7_set_at(s, 0);
    m = zt_authz_l7_set_at(s, 1);
    CHECK_EQ_STR(p->ns, "bookinfo");
    CHECK_EQ_STR(p->name, "reviews-viewer");
    CHECK_EQ_INT(p->action, ZT_AUTHZ_L7_DENY);
    CHECK(p->dry_run);
    CHECK_EQ_INT(p->n_targets, 2);
    CHECK_EQ_INT(p->targets[0].kind, ZT_AUTHZ_L7_SERVICE);
    CHECK_EQ_INT(p->targets[1].kind, ZT_AUTHZ_L7_GATEWAY);
    CHECK_EQ_STR(p->targets[1].name, "waypoint");
    CHECK_EQ_INT(p->n_rules, 2);
    r = &p->rules[0];
    CHECK(r->n_from == 1 && r->n_to == 1 && r->n_when == 3);
    CHECK_EQ_INT(r->from[0].principals.v[0].kind, ZT_AUTHZ_L7_EXACT);
    CHECK_EQ_INT(r->from[0].not_ip_blocks.v[0].prefix, 8);
    CHECK_EQ_STR(r->to[0].hosts.v[0].v, "reviews.bookinfo");
    CHECK_EQ_INT(r->to[0].hosts.v[0].kind, ZT_AUTHZ_L7_PREFIX);
    CHECK(r->to[0].hosts.v[0].nocase);
    CHECK_EQ_INT(r->to[0].paths.v[0].kind, ZT_AUTHZ_L7_TEMPLATE);
    CHECK_EQ_INT(r->to[0].paths.v[1].kind, ZT_AUTHZ_L7_SUFFIX);
    CHECK_EQ_STR(r->to[0].paths.v[1].v, ".json");
    CHECK_EQ_INT(r->to[0].not_ports.v[0], 9090);
    CHECK_EQ_INT(r->when[0].key, ZT_AUTHZ_L7_K_HEADER);
    CHECK_EQ_STR(r->when[0].header, "x-version");
    CHECK_EQ_INT(r->when[1].key, ZT_AUTHZ_L7_K_AUTH_CLAIMS);
    CHECK_EQ_INT(r->when[1].n_claim, 2);
    CHECK_EQ_STR(r->when[1].claim[1], "roles");
    CHECK_EQ_INT(r->when[2].ports.v[0], 9080);
    CHECK(p->rules[1].n_from == 0 && p->rules[1].n_to == 0 && p->rules[1].n_when == 0);
    CHECK_EQ_INT(m->action, ZT_AUTHZ_L7_AUDIT);
    CHECK_EQ_INT(m->targets[0].kind, ZT_AUTHZ_L7_GATEWAY_CLASS);
    CHECK_EQ_INT(m->n_rules, 0);
    zt_authz_l7_set_unref(s);
    zt_route_errors_cleanup(&errs);
}

/* One policy whose spec ends with `tail` (YAML lines at spec level); the
 * error must be exactly `want`. */
#define HEAD                                                                                       \
    "apiVersion: security.istio.io/v1\n"                                                           \
    "kind: AuthorizationPolicy\n"                                                                  \
    "metadata: {name: p, namespace: ns1}\n"                                                        \
    "spec:\n"                                                                                      \
    "  targetRefs: [{kind: Service, name: svc}]\n"

static const struct {
    const char *yaml, *want;
} BAD[] = {
    {HEAD "  action: CUSTOM\n  provider: {name: ext}\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.action: CUSTOM (external authorization) is not "
     "supported by this waypoint: policy not loaded"},
    {HEAD "  action: allow\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.action: \"allow\" is not ALLOW, DENY, AUDIT or "
     "CUSTOM"},
    {HEAD "  rules: [{when: [{key: \"experimental.envoy.filters.network.mysql_proxy[db.t]\", "
          "values: [\"[update]\"]}]}]\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.rules[0].when[0].key: "
     "\"experimental.envoy.filters.network.mysql_proxy[db.t]\": experimental.envoy.filters.* "
     "keys are not supported here"},
    {HEAD "  rules: [{when: [{key: request.time, values: [x]}]}]\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.rules[0].when[0].key: \"request.time\" is not a "
     "supported key"},
    {HEAD "  rules: [{when: [{key: \"request.headers[]\", values: [x]}]}]\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.rules[0].when[0].key: \"request.headers[]\": "
     "expected request.headers[<name>]"},
    {HEAD "  rules: [{when: [{key: source.ip}]}]\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.rules[0].when[0]: values or notValues required"},
    {HEAD "  rules: [{when: [{key: source.ip, values: [10.0.0.300]}]}]\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.rules[0].when[0].values[0]: \"10.0.0.300\" is "
     "not an IP address or CIDR block"},
    {HEAD "  rules:\n  - from:\n    - source: {trustDomains: [td]}\n",
     "t.yaml:8: AuthorizationPolicy ns1/p: spec.rules[0].from[0].source.trustDomains: not "
     "supported here (the policy is refused rather than read without it)"},
    {HEAD "  rules:\n  - from:\n    - source: {serviceAccounts: [a/sa], namespaces: [x]}\n",
     "t.yaml:8: AuthorizationPolicy ns1/p: spec.rules[0].from[0].source: cannot set "
     "serviceAccounts with namespaces or principals"},
    {HEAD "  rules:\n  - from:\n    - source: {notServiceAccounts: [\"a/*\"]}\n",
     "t.yaml:8: AuthorizationPolicy ns1/p: spec.rules[0].from[0].source.notServiceAccounts[0]: "
     "\"a/*\": wildcards are not allowed here"},
    {HEAD "  rules: [{when: [{key: source.serviceAccount, values: [a/b/c]}]}]\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.rules[0].when[0].values[0]: \"a/b/c\": expected "
     "\"serviceAccount\" or \"namespace/serviceAccount\""},
    {HEAD "  action: DENY\n",
     "t.yaml:5: AuthorizationPolicy ns1/p: spec.rules: DENY without rules would never match; "
     "add an empty rule {} to deny every request"},
    {HEAD "  provider: {name: ext}\n  rules: [{}]\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.provider: only for action CUSTOM"},
    {HEAD "  rules:\n  - from:\n    - source: {}\n",
     "t.yaml:8: AuthorizationPolicy ns1/p: spec.rules[0].from[0].source: must not be empty"},
    {HEAD "  rules:\n  - to:\n    - operation: {paths: []}\n",
     "t.yaml:8: AuthorizationPolicy ns1/p: spec.rules[0].to[0].operation: must not be empty"},
    {HEAD "  rules:\n  - to:\n    - operation: {ports: [\"0\", http]}\n",
     "t.yaml:8: AuthorizationPolicy ns1/p: spec.rules[0].to[0].operation.ports[1]: \"http\" is "
     "not a port (0..65535)"},
    {HEAD "  rules:\n  - to:\n    - operation: {paths: [\"/a*b\"]}\n",
     "t.yaml:8: AuthorizationPolicy ns1/p: spec.rules[0].to[0].operation.paths[0]: \"/a*b\": "
     "'*' is allowed only as the first or last character, or alone"},
    {HEAD "  rules:\n  - to:\n    - operation: {paths: [\"/a/{**}/{*}\"]}\n",
     "t.yaml:8: AuthorizationPolicy ns1/p: spec.rules[0].to[0].operation.paths[0]: "
     "\"/a/{**}/{*}\": {**} must be the last operator of a path template"},
    {HEAD "  rules:\n  - to:\n    - operation: {paths: [\"/a/{*}/b c\"]}\n",
     "t.yaml:8: AuthorizationPolicy ns1/p: spec.rules[0].to[0].operation.paths[0]: "
     "\"/a/{*}/b c\": a path template segment must be {*}, {**} or a literal of URL path "
     "characters"},
    {HEAD "  rules:\n  - to:\n    - operation: {methods: [\"\"]}\n",
     "t.yaml:8: AuthorizationPolicy ns1/p: spec.rules[0].to[0].operation.methods[0]: must not be "
     "empty"},
    {HEAD "  rules:\n  - to:\n    - operation: {methods: [GET]}\n      extra: 1\n",
     "t.yaml:9: AuthorizationPolicy ns1/p: spec.rules[0].to[0].extra: not supported here (the "
     "policy is refused rather than read without it)"},
    {HEAD "  selector: {matchLabels: {app: x}}\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.selector: set only one of selector and "
     "targetRefs"},
    {HEAD "  targetRef: {kind: Service, name: svc}\n",
     "t.yaml:6: AuthorizationPolicy ns1/p: spec.targetRef: set only one of targetRef and "
     "targetRefs"},
    {"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
     "spec:\n  targetRefs: [{kind: Deployment, group: apps, name: x}]\n",
     "t.yaml:5: AuthorizationPolicy default/p: spec.targetRefs[0]: kind Deployment of group "
     "\"apps\" is not a target at a waypoint (Gateway or GatewayClass of "
     "gateway.networking.k8s.io, Service of \"\", ServiceEntry of networking.istio.io)"},
    {"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
     "spec:\n  targetRefs: [{kind: Gateway, name: waypoint}]\n",
     "t.yaml:5: AuthorizationPolicy default/p: spec.targetRefs[0]: kind Gateway of group \"\" is "
     "not a target at a waypoint (Gateway or GatewayClass of gateway.networking.k8s.io, Service "
     "of \"\", ServiceEntry of networking.istio.io)"},
    {"apiVersion: security.istio.io/v2\nkind: AuthorizationPolicy\nmetadata: {name: p}\n",
     "t.yaml:1: AuthorizationPolicy: apiVersion: \"security.istio.io/v2\" is not a supported "
     "version of AuthorizationPolicy"},
    {"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n"
     "  annotations: {istio.io/dry-run: maybe}\n",
     "t.yaml:5: AuthorizationPolicy default/p: metadata.annotations.istio.io/dry-run: expected "
     "\"true\" or \"false\""},
};

#define GOOD "---\n" HEAD "  rules: [{}]\n"

/* Each bad policy is refused with its message; a good one in the same
 * file still loads. */
static void test_bad(void)
{
    for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
        struct zt_authz_l7_set *s = zt_authz_l7_set_new(NULL);
        struct zt_route_errors errs = {0};
        char yaml[2048];
        int n = snprintf(yaml, sizeof(yaml), "%s%s", BAD[i].yaml, GOOD);
        int rc = zt_config_authz_load_string(s, "t.yaml", yaml, (size_t)n, &errs);
        zt_authz_l7_set_seal(s);
        if (rc || errs.n != 1 || errs.n_errors != 1 || strcmp(errs.v[0].msg, BAD[i].want) != 0) {
            fprintf(stderr, "  case %zu, want: %s\n", i, BAD[i].want);
            dump(&errs);
            CHECK(0);
        }
        CHECK_EQ_INT(zt_authz_l7_set_count(s), 1);
        zt_authz_l7_set_unref(s);
        zt_route_errors_cleanup(&errs);
    }
}

/* Not for waypoints: skipped without a word (selector, namespace-wide, no
 * spec), or with a warning (targets all ignored). Other kinds: silent. */
static void test_skipped(void)
{
    static const char y[] =
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
        "spec: {selector: {matchLabels: {app: x}}, action: DENY}\n"
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: b}\n"
        "spec: {}\n"
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: c}\n"
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: d, namespace: ns1}\n"
        "spec:\n  targetRefs:\n  - {kind: Service, name: s, namespace: ns2}\n"
        "  - {kind: GatewayClass, group: gateway.networking.k8s.io, name: istio}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: e}\n"
        "---\nkind: List\napiVersion: v1\nitems:\n"
        "- {apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: f},"
        " spec: {targetRefs: [{kind: Service, name: s}]}}\n";
    struct zt_authz_l7_set *s = zt_authz_l7_set_new(NULL);
    struct zt_route_errors errs = {0};
    CHECK_EQ_INT(zt_config_authz_load_string(s, "t.yaml", y, strlen(y), &errs), 0);
    zt_authz_l7_set_seal(s);
    if (errs.n != 3)
        dump(&errs);
    CHECK_EQ_INT(errs.n_errors, 0);
    CHECK_EQ_INT(errs.n_warnings, 3);
    CHECK_EQ_STR(errs.v[0].msg, "t.yaml:20: AuthorizationPolicy ns1/d: spec.targetRefs[0]: "
                                "cross-namespace reference to ns2/s ignored");
    CHECK_EQ_STR(errs.v[1].msg, "t.yaml:21: AuthorizationPolicy ns1/d: spec.targetRefs[1]: "
                                "GatewayClass istio is not istio-waypoint: ignored");
    CHECK_EQ_STR(errs.v[2].msg,
                 "t.yaml:19: AuthorizationPolicy ns1/d: spec: no target applies: policy ignored");
    CHECK_EQ_INT(zt_authz_l7_set_count(s), 1);
    CHECK_EQ_STR(zt_authz_l7_set_at(s, 0)->name, "f");
    zt_authz_l7_set_unref(s);
    zt_route_errors_cleanup(&errs);
}

static void test_syntax(void)
{
    static const char y[] = GOOD "---\nkind: [unclosed\n";
    struct zt_authz_l7_set *s = zt_authz_l7_set_new(NULL);
    struct zt_route_errors errs = {0};
    CHECK_EQ_INT(zt_config_authz_load_string(s, "t.yaml", y, strlen(y), &errs), ZT_E_CONFIG);
    zt_authz_l7_set_seal(s);
    CHECK_EQ_INT(errs.n_errors, 1);
    CHECK(strncmp(errs.v[0].msg, "t.yaml:", 7) == 0);
    CHECK_EQ_INT(zt_authz_l7_set_count(s), 1);
    zt_authz_l7_set_unref(s);
    zt_route_errors_cleanup(&errs);
}

int main(void)
{
    RUN(test_real);
    RUN(test_bad);
    RUN(test_skipped);
    RUN(test_syntax);
    return TEST_REPORT();
}
