/* RequestAuthentication YAML (config/authn.h) and the rule sets built from
 * it (jwt/authn.h): every jwtRules field read, each refusal with its
 * file:line, object and field path next to a good policy that still loads,
 * what attaches to which waypoint and service, a later policy of the same
 * name replacing an earlier one, jwksUri documents from the lookup. */
#include "test.h"
#include "dump_errs.h"
#include "base/err.h"
#include "config/authn.h"
#include "http/head.h"

#include <stdio.h>

#define JWK                                                                                        \
    "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e1\","                                            \
    "\"x\":\"_doYx0iKjWCqpxhk3onsUTZ_ugX6IQ6b1VGpKkn0TJY\","                                       \
    "\"y\":\"ij4Vi--lYd1lY1piPknvD6NQ7su7XZTZwe1DODlShBI\"}"
#define JWKS "{\"keys\":[" JWK "]}"

static const char REAL[] = "apiVersion: security.istio.io/v1\n"
                           "kind: RequestAuthentication\n"
                           "metadata: {name: jwt-reviews, namespace: bookinfo}\n"
                           "spec:\n"
                           "  targetRefs:\n"
                           "  - {kind: Service, group: \"\", name: reviews}\n"
                           "  jwtRules:\n"
                           "  - issuer: https://accounts.example\n"
                           "    audiences: [reviews, bookinfo]\n"
                           "    jwks: '" JWKS "'\n"
                           "    fromHeaders:\n"
                           "    - {name: X-Jwt, prefix: \"Token \"}\n"
                           "    - {name: x-other}\n"
                           "    fromParams: [jwt]\n"
                           "    fromCookies: [session]\n"
                           "    forwardOriginalToken: true\n"
                           "    outputPayloadToHeader: x-jwt-payload\n"
                           "    outputClaimToHeaders:\n"
                           "    - {header: x-sub, claim: sub}\n"
                           "  - issuer: https://other.example\n"
                           "    jwksUri: https://other.example/keys\n"
                           "    timeout: 5s\n";

static void test_real(void)
{
    struct zt_jwt_authn_policies l = {0};
    struct zt_route_errors errs = {0};
    CHECK_EQ_INT(zt_config_authn_load_string(&l, "t.yaml", REAL, strlen(REAL), &errs), 0);
    CHECK_EQ_INT(errs.n_errors, 0);
    CHECK_EQ_INT(errs.n_warnings, 1); /* timeout */
    if (errs.n_warnings == 1)
        CHECK_EQ_STR(errs.v[0].msg, "t.yaml:22: RequestAuthentication bookinfo/jwt-reviews: "
                                    "spec.jwtRules[1].timeout: the JWKS fetcher's own timeout "
                                    "applies");
    CHECK_EQ_INT(l.n, 1);
    if (l.n != 1) {
        dump(&errs);
        return;
    }
    const struct zt_jwt_authn_policy *p = l.v[0];
    CHECK_EQ_STR(p->ns, "bookinfo");
    CHECK_EQ_STR(p->name, "jwt-reviews");
    CHECK_EQ_INT(p->n_targets, 1);
    CHECK_EQ_INT(p->targets[0].kind, ZT_AUTHZ_L7_SERVICE);
    CHECK_EQ_STR(p->targets[0].name, "reviews");
    CHECK_EQ_INT(p->n_rules, 2);
    const struct zt_jwt_rule_spec *r = &p->rules[0];
    CHECK_EQ_STR(r->issuer, "https://accounts.example");
    CHECK_EQ_INT(r->n_audiences, 2);
    CHECK_EQ_STR(r->audiences[1], "bookinfo");
    CHECK_EQ_STR(r->jwks, JWKS);
    CHECK(r->jwks_uri == NULL);
    CHECK_EQ_INT(r->n_from_headers, 2);
    CHECK_EQ_STR(r->from_headers[0].name, "X-Jwt");
    CHECK_EQ_STR(r->from_headers[0].prefix, "Token ");
    CHECK(r->from_headers[1].prefix == NULL);
    CHECK_EQ_INT(r->n_from_params, 1);
    CHECK_EQ_STR(r->from_params[0], "jwt");
    CHECK_EQ_INT(r->n_from_cookies, 1);
    CHECK_EQ_STR(r->from_cookies[0], "session");
    CHECK(r->forward_original_token);
    CHECK_EQ_STR(r->output_payload_to_header, "x-jwt-payload");
    CHECK_EQ_INT(r->n_output_claim_to_headers, 1);
    CHECK_EQ_STR(r->output_claim_to_headers[0].claim, "sub");
    CHECK_EQ_STR(p->rules[1].jwks_uri, "https://other.example/keys");
    CHECK(!p->rules[1].forward_original_token);
    zt_jwt_authn_policies_cleanup(&l);
    zt_route_errors_cleanup(&errs);
}

#define HEAD                                                                                       \
    "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: p}\n"         \
    "spec:\n  targetRefs: [{kind: Service, name: s}]\n  jwtRules:\n"

static const struct {
    const char *yaml, *want;
} BAD[] = {
    {HEAD "  - {audiences: [a], jwks: '" JWKS "'}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0].issuer: required"},
    {HEAD "  - {issuer: i, jwks: '" JWKS "', jwksUri: 'https://x/k'}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0].jwks: set only one of jwks "
     "and jwksUri"},
    {HEAD "  - {issuer: i}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0]: set jwks or jwksUri "
     "(discovering the keys from the issuer's OpenID configuration is not supported)"},
    {HEAD "  - {issuer: i, jwksUri: 'ftp://x/k'}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0].jwksUri: must be an http:// "
     "or https:// URL"},
    {HEAD "  - {issuer: i, jwks: '{\"keys\": 1}'}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0]: jwks: no \"keys\" array"},
    {HEAD "  - {issuer: i, jwks: 'not json'}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0]: jwks: line 1: '[' or '{' "
     "expected near 'not'"},
    {HEAD "  - {issuer: i, jwksUri: 'https://x/k', fromHeaders: [{name: 'bad name'}]}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0]: fromHeaders[0].name: not a "
     "header name"},
    {HEAD "  - {issuer: i, jwksUri: 'https://x/k', fromHeaders: [{prefix: x}]}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0].fromHeaders[0].name: "
     "required"},
    {HEAD "  - {issuer: i, jwksUri: 'https://x/k', outputClaimToHeaders: [{header: x}]}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0].outputClaimToHeaders[0].claim: "
     "required"},
    {HEAD "  - {issuer: i, jwksUri: 'https://x/k', forwardOriginalToken: yes}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0].forwardOriginalToken: expected "
     "true or false"},
    {HEAD "  - {issuer: i, jwksUri: 'https://x/k', fromParams: ['']}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0].fromParams[0]: must not be "
     "empty"},
    {HEAD "  - {issuer: i, jwksUri: 'https://x/k', outputPayloadToHeader: 'a b'}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0]: outputPayloadToHeader: not a "
     "header name"},
    {HEAD "  - {issuer: i, jwksUri: 'https://x/k', spaceDelimitedClaims: [scope]}\n",
     "t.yaml:7: RequestAuthentication default/p: spec.jwtRules[0].spaceDelimitedClaims: not "
     "supported here (the policy is refused rather than read without it)"},
    {"apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: p}\n"
     "spec:\n  selector: {matchLabels: {a: b}}\n  targetRefs: [{kind: Service, name: s}]\n",
     "t.yaml:5: RequestAuthentication default/p: spec.selector: set only one of selector and "
     "targetRefs"},
    {"apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: p}\n"
     "spec:\n  targetRefs: [{kind: Deployment, name: s}]\n",
     "t.yaml:5: RequestAuthentication default/p: spec.targetRefs[0]: kind Deployment of group "
     "\"\" is not a target at a waypoint (Gateway or GatewayClass of gateway.networking.k8s.io, "
     "Service of \"\", ServiceEntry of networking.istio.io)"},
    {"apiVersion: security.istio.io/v2\nkind: RequestAuthentication\nmetadata: {name: p}\n",
     "t.yaml:1: RequestAuthentication: apiVersion: \"security.istio.io/v2\" is not a supported "
     "version of RequestAuthentication"},
};

#define GOOD "---\n" HEAD "  - {issuer: ok, jwks: '" JWKS "'}\n"

static void test_bad(void)
{
    for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
        struct zt_jwt_authn_policies l = {0};
        struct zt_route_errors errs = {0};
        char yaml[4096];
        int n = snprintf(yaml, sizeof(yaml), "%s%s", BAD[i].yaml, GOOD);
        int rc = zt_config_authn_load_string(&l, "t.yaml", yaml, (size_t)n, &errs);
        if (rc || errs.n != 1 || errs.n_errors != 1 || strcmp(errs.v[0].msg, BAD[i].want) != 0) {
            fprintf(stderr, "  case %zu, want: %s\n", i, BAD[i].want);
            dump(&errs);
            CHECK(0);
        }
        CHECK_EQ_INT(l.n, 1);
        if (l.n)
            CHECK_EQ_STR(l.v[0]->rules[0].issuer, "ok");
        zt_jwt_authn_policies_cleanup(&l);
        zt_route_errors_cleanup(&errs);
    }
}

/* A policy with `n` rules (issuers prefix0.. prefixN-1) targeting what
 * `target` says. */
static void policy(char *buf, size_t len, const char *ns, const char *name, const char *target,
                   const char *prefix, int n)
{
    int w = snprintf(buf, len,
                     "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
                     "metadata: {name: %s, namespace: %s}\nspec:\n  %s\n  jwtRules:\n",
                     name, ns, target);
    for (int i = 0; i < n; i++)
        w +=
            snprintf(buf + w, len - (size_t)w, "  - {issuer: %s%d, jwks: '" JWKS "'}\n", prefix, i);
}

static const char *lookup(void *ud, const char *uri, size_t *len)
{
    (*(int *)ud)++;
    if (strcmp(uri, "https://keys.example/jwks") != 0)
        return NULL;
    *len = strlen(JWKS);
    return JWKS;
}

/* Which rules apply where: the Gateway's (and the class's from the root
 * namespace) everywhere, a service's only there; others never. */
static void test_attach(void)
{
    static char yaml[32768];
    size_t w = 0;
    const char *gw = "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]";
    const char *cls = "targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, "
                      "name: istio-waypoint}]";
    policy(yaml + w, sizeof(yaml) - w, "apps", "gw", gw, "gw", 1);
    w = strlen(yaml);
    policy(yaml + w, sizeof(yaml) - w, "istio-system", "cls", cls, "cls", 1);
    w = strlen(yaml);
    policy(yaml + w, sizeof(yaml) - w, "apps", "cls-not-root", cls, "x", 1);
    w = strlen(yaml);
    policy(yaml + w, sizeof(yaml) - w, "other", "gw-other-ns", gw, "y", 1);
    w = strlen(yaml);
    policy(yaml + w, sizeof(yaml) - w, "apps", "s1", "targetRefs: [{kind: Service, name: s1}]",
           "old", 5);
    w = strlen(yaml);
    policy(yaml + w, sizeof(yaml) - w, "apps", "s2",
           "targetRefs: [{kind: Service, name: s2}, {kind: Service, name: s3}]", "s2", 3);
    w = strlen(yaml);
    /* The same ns/name again: replaces the first s1 (5 rules) with 2. */
    policy(yaml + w, sizeof(yaml) - w, "apps", "s1", "targetRefs: [{kind: Service, name: s1}]",
           "s1", 2);
    w = strlen(yaml);
    snprintf(yaml + w, sizeof(yaml) - w,
             "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
             "metadata: {name: remote, namespace: apps}\nspec:\n"
             "  targetRefs: [{kind: Service, name: s4}]\n  jwtRules:\n"
             "  - {issuer: r, jwksUri: 'https://keys.example/jwks'}\n"
             "  - {issuer: r2, jwksUri: 'https://keys.example/jwks'}\n"
             "  - {issuer: r3, jwksUri: 'https://down.example/jwks'}\n");

    struct zt_jwt_authn_policies l = {0};
    struct zt_route_errors errs = {0};
    CHECK_EQ_INT(zt_config_authn_load_string(&l, "t.yaml", yaml, strlen(yaml), &errs), 0);
    if (errs.n)
        dump(&errs);
    CHECK_EQ_INT(errs.n, 0);
    CHECK_EQ_INT(l.n, 8);

    const char *uris[4];
    CHECK_EQ_INT(zt_jwt_authn_policies_uris(&l, uris, 4), 2);
    CHECK_EQ_STR(uris[0], "https://keys.example/jwks");
    CHECK_EQ_STR(uris[1], "https://down.example/jwks");
    CHECK_EQ_INT(zt_jwt_authn_policies_uris(&l, uris, 1), 2);

    int calls = 0;
    size_t bad = 99;
    struct zt_jwt_authn_set *s =
        zt_jwt_authn_set_build(&l, NULL, "apps", "wp", lookup, &calls, &bad);
    CHECK(s != NULL);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(calls, 3); /* each remote rule, in the one set (s4's) it is in */
    /* gw, cls, s1, s2, remote attach; cls-not-root and gw-other-ns do not. */
    CHECK_EQ_INT(zt_jwt_authn_set_policies(s), 5);
    CHECK_EQ_INT(zt_jwt_authn_set_sets(s), 5); /* the gateway's, s1, s2, s3, s4 */
    CHECK_EQ_INT(zt_jwt_rules_count(zt_jwt_authn_rules(s, "apps", "s1", false)), 4);
    CHECK_EQ_INT(zt_jwt_rules_count(zt_jwt_authn_rules(s, "apps", "s2", false)), 5);
    CHECK_EQ_INT(zt_jwt_rules_count(zt_jwt_authn_rules(s, "apps", "s3", false)), 5);
    CHECK_EQ_INT(zt_jwt_rules_count(zt_jwt_authn_rules(s, "apps", "other", false)), 2);
    CHECK_EQ_INT(zt_jwt_rules_count(zt_jwt_authn_rules(s, "other", "s1", false)), 2);
    CHECK_EQ_INT(zt_jwt_rules_count(zt_jwt_authn_rules(s, "apps", "s1", true)), 2);
    CHECK_EQ_INT(zt_jwt_rules_count(zt_jwt_authn_rules(s, NULL, NULL, false)), 2);

    /* jwksUri: the fetched document's key is in the set (a token with its
     * kid fails only its signature), a URI without one makes its tokens
     * "Jwks remote fetch is failed". */
    const struct zt_jwt_rules *rs = zt_jwt_authn_rules(s, "apps", "s4", false);
    static const char hdr_e1[] = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImUxIn0"; /* ES256, kid e1 */
    struct zt_jwt_result res;
    char tok[256];
    /* {"iss":"r","sub":"x"} and {"iss":"r3","sub":"x"} */
    snprintf(tok, sizeof(tok), "%s.eyJpc3MiOiJyIiwic3ViIjoieCJ9.c2ln", hdr_e1);
    CHECK_EQ_INT(zt_jwt_verify(rs, tok, strlen(tok), NULL, 1800000000, &res), ZT_JWT_INVALID);
    CHECK_EQ_STR(res.reason, "Jwt verification fails");
    zt_jwt_result_cleanup(&res);
    snprintf(tok, sizeof(tok), "%s.eyJpc3MiOiJyMyIsInN1YiI6IngifQ.c2ln", hdr_e1);
    CHECK_EQ_INT(zt_jwt_verify(rs, tok, strlen(tok), NULL, 1800000000, &res), ZT_JWT_INVALID);
    CHECK_EQ_STR(res.reason, "Jwks remote fetch is failed");
    zt_jwt_result_cleanup(&res);
    zt_jwt_authn_set_unref(s);

    /* Another waypoint (Gateway "wp2"): only the class policy and the
     * services' apply. */
    s = zt_jwt_authn_set_build(&l, NULL, "apps", "wp2", NULL, NULL, NULL);
    CHECK_EQ_INT(zt_jwt_authn_set_policies(s), 4);
    CHECK_EQ_INT(zt_jwt_rules_count(zt_jwt_authn_rules(s, "apps", "s1", false)), 3);
    CHECK_EQ_INT(zt_jwt_rules_count(zt_jwt_authn_rules(s, "apps", "other", false)), 1);
    zt_jwt_authn_set_unref(s);
    zt_jwt_authn_policies_cleanup(&l);
    zt_route_errors_cleanup(&errs);
}

/* Nothing attaches: no set at all (no JWT step); selector and
 * namespace-wide policies are skipped silently. */
static void test_none(void)
{
    static const char y[] =
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a}\n"
        "spec: {selector: {matchLabels: {app: x}}, jwtRules: [{issuer: i, jwksUri: "
        "'https://x/k'}]}\n"
        "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: b}\n"
        "spec: {jwtRules: [{issuer: i, jwksUri: 'https://x/k'}]}\n"
        "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: c}\n"
        "spec:\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: elsewhere}]"
        "\n  jwtRules: [{issuer: i, jwksUri: 'https://x/k'}]\n";
    struct zt_jwt_authn_policies l = {0};
    struct zt_route_errors errs = {0};
    CHECK_EQ_INT(zt_config_authn_load_string(&l, "t.yaml", y, strlen(y), &errs), 0);
    CHECK_EQ_INT(errs.n, 0);
    CHECK_EQ_INT(l.n, 1);
    CHECK(zt_jwt_authn_set_build(&l, NULL, "default", "wp", NULL, NULL, NULL) == NULL);
    struct zt_jwt_authn_set *s =
        zt_jwt_authn_set_build(&l, NULL, "default", "elsewhere", NULL, NULL, NULL);
    CHECK(s != NULL);
    CHECK(zt_jwt_authn_rules(NULL, "default", "x", false) == NULL);
    zt_jwt_authn_set_unref(s);
    zt_jwt_authn_set_unref(NULL);
    zt_jwt_authn_policies_cleanup(&l);
    zt_route_errors_cleanup(&errs);
}

int main(void)
{
    RUN(test_real);
    RUN(test_bad);
    RUN(test_attach);
    RUN(test_none);
    return TEST_REPORT();
}
