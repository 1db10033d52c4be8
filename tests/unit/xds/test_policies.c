/* ztunnel.policy.v1.AuthorizationPolicy, RequestAuthentication and
 * RateLimit: policies read from YAML (config/authz.h, config/authn.h,
 * config/ratelimit.h) that use every field are encoded, decoded and
 * compared field by field with the original; the decoder refuses what the
 * readers refuse, naming the field;
 * the encodings are golden files that golden/check.sh decodes with protoc
 * (not our code). */
#include "test.h"

#include "base/err.h"
#include "config/authn.h"
#include "config/authz.h"
#include "config/ratelimit.h"
#include "config/routes.h"
#include "proto/policies.pb-c.h"
#include "xds/policies.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>

#define JWK                                                                                        \
    "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e1\","                                            \
    "\"x\":\"_doYx0iKjWCqpxhk3onsUTZ_ugX6IQ6b1VGpKkn0TJY\","                                       \
    "\"y\":\"ij4Vi--lYd1lY1piPknvD6NQ7su7XZTZwe1DODlShBI\"}"
#define JWKS "{\"keys\":[" JWK "]}"

static const char *const authz_all =
    "apiVersion: security.istio.io/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: all, namespace: shop, annotations: {istio.io/dry-run: \"true\"}}\n"
    "spec:\n"
    "  action: DENY\n"
    "  targetRefs:\n"
    "  - {kind: Gateway, group: gateway.networking.k8s.io, name: wp}\n"
    "  - {kind: Service, group: \"\", name: reviews}\n"
    "  - {kind: ServiceEntry, group: networking.istio.io, name: ext}\n"
    "  - {kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}\n"
    "  rules:\n"
    "  - from:\n"
    "    - source:\n"
    "        principals: [cluster.local/ns/shop/sa/a, \"*/sa/b\"]\n"
    "        notPrincipals: [\"cluster.local/*\"]\n"
    "        namespaces: [shop]\n"
    "        notNamespaces: [\"*\"]\n"
    "        requestPrincipals: [\"https://iss/*\"]\n"
    "        notRequestPrincipals: [\"https://iss/bad\"]\n"
    "        ipBlocks: [10.0.0.0/8, 192.0.2.1]\n"
    "        notIpBlocks: [\"2001:db8::/32\"]\n"
    "        remoteIpBlocks: [198.51.100.0/24]\n"
    "        notRemoteIpBlocks: [\"::1\"]\n"
    "    - source:\n"
    "        serviceAccounts: [a, other/b]\n"
    "        notServiceAccounts: [shop/c]\n"
    "    to:\n"
    "    - operation:\n"
    "        hosts: [Reviews.Shop, \"*.example.COM\"]\n"
    "        notHosts: [\"admin.*\"]\n"
    "        methods: [GET, POST]\n"
    "        notMethods: [DELETE]\n"
    "        paths: [/api/*, \"/v1/{*}/items/{**}\", /exact]\n"
    "        notPaths: [\"*.php\"]\n"
    "        ports: [\"80\", \"0\"]\n"
    "        notPorts: [\"65535\"]\n"
    "    when:\n"
    "    - {key: \"request.headers[X-Tenant]\", values: [a, \"b*\"], notValues: [\"*\"]}\n"
    "    - {key: \"request.auth.claims[groups][admin]\", values: [\"yes\"]}\n"
    "    - {key: source.ip, values: [10.1.0.0/16], notValues: [10.1.2.3]}\n"
    "    - {key: destination.port, values: [\"8080\"], notValues: [\"9090\"]}\n"
    "    - {key: source.serviceAccount, values: [x, ns2/y]}\n"
    "    - {key: connection.sni, notValues: [\"*.internal\"]}\n"
    "  - {}\n";

static const char *const authn_all =
    "apiVersion: security.istio.io/v1\n"
    "kind: RequestAuthentication\n"
    "metadata: {name: jwt, namespace: shop}\n"
    "spec:\n"
    "  targetRefs:\n"
    "  - {kind: Gateway, group: gateway.networking.k8s.io, name: wp}\n"
    "  - {kind: Service, name: reviews}\n"
    "  jwtRules:\n"
    "  - issuer: https://issuer.example\n"
    "    audiences: [shop, api]\n"
    "    jwks: '" JWKS "'\n"
    "    fromHeaders: [{name: X-Jwt, prefix: \"Token \"}, {name: x-other}]\n"
    "    fromParams: [token, jwt]\n"
    "    fromCookies: [session]\n"
    "    forwardOriginalToken: true\n"
    "    outputPayloadToHeader: x-jwt-payload\n"
    "    outputClaimToHeaders: [{header: x-sub, claim: sub}, {header: x-team, claim: org.team}]\n"
    "  - issuer: other\n"
    "    jwksUri: https://other.example/keys\n";

/* Every RateLimit field: all four target kinds, a sectionName, a header
 * key written in upper case (the reader lowers it), maxKeys; then the
 * reader's defaults (burst, maxKeys) and the other keys. */
static const char *const rl_all =
    "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\n"
    "kind: RateLimit\n"
    "metadata: {name: per-user, namespace: shop}\n"
    "spec:\n"
    "  targetRefs:\n"
    "  - {kind: Gateway, group: gateway.networking.k8s.io, name: wp}\n"
    "  - {kind: Service, name: reviews}\n"
    "  - {kind: HTTPRoute, name: api, sectionName: writes}\n"
    "  - {kind: GRPCRoute, name: rpc}\n"
    "  - {kind: Service, namespace: other, name: dropped}\n"
    "  limit: {requests: 100, unit: minute, burst: 20}\n"
    "  key: {header: X-User-Id}\n"
    "  maxKeys: 500\n"
    "---\n"
    "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\n"
    "kind: RateLimit\n"
    "metadata: {name: per-peer, namespace: shop}\n"
    "spec:\n"
    "  targetRefs: [{kind: Service, name: ratings}]\n"
    "  limit: {requests: 7, unit: hour}\n"
    "  key: {sourcePrincipal: {}}\n"
    "---\n"
    "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\n"
    "kind: RateLimit\n"
    "metadata: {name: whole, namespace: shop}\n"
    "spec:\n"
    "  targetRefs: [{kind: Gateway, name: wp}]\n"
    "  limit: {requests: 1000000000, unit: second, burst: 1}\n";

/* ---------------------------------------------------------------- readers */

static void take_authz(void *ud, const char *file, const struct ynode *doc,
                       struct zt_route_errors *errs)
{
    struct zt_authz_l7_policy **out = ud;
    if (!*out)
        zt_config_authz_parse_doc(file, doc, errs, out);
}

static struct zt_authz_l7_policy *read_authz(const char *yaml)
{
    struct zt_authz_l7_policy *p = NULL;
    struct zt_route_errors errs = {0};
    zt_config_routes_each("t.yaml", yaml, strlen(yaml), &errs, take_authz, &p);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  %s\n", errs.v[i].msg);
    zt_route_errors_cleanup(&errs);
    return p;
}

static struct zt_jwt_authn_policy *read_authn(const char *yaml)
{
    struct zt_jwt_authn_policies l = {0};
    struct zt_route_errors errs = {0};
    struct zt_jwt_authn_policy *p = NULL;
    zt_config_authn_load_string(&l, "t.yaml", yaml, strlen(yaml), &errs);
    zt_route_errors_cleanup(&errs);
    if (l.n == 1) {
        p = l.v[0];
        l.n = 0;
    }
    zt_jwt_authn_policies_cleanup(&l);
    return p;
}

/* The i-th RateLimit of rl_all, as the reader leaves it. */
struct take_rl {
    size_t want, seen;
    struct zt_ratelimit_policy *p;
};

static void take_ratelimit(void *ud, const char *file, const struct ynode *doc,
                           struct zt_route_errors *errs)
{
    struct take_rl *t = ud;
    struct zt_ratelimit_policy *p = NULL;
    if (zt_config_ratelimit_parse_doc(file, doc, errs, &p) == 0 && p && t->seen++ == t->want)
        t->p = p;
    else
        zt_ratelimit_policy_free(p);
}

static struct zt_ratelimit_policy *read_ratelimit(size_t i)
{
    struct take_rl t = {.want = i};
    struct zt_route_errors errs = {0};
    zt_config_routes_each("t.yaml", rl_all, strlen(rl_all), &errs, take_ratelimit, &t);
    for (size_t j = 0; j < errs.n; j++)
        if (!errs.v[j].is_warning)
            fprintf(stderr, "  %s\n", errs.v[j].msg);
    zt_route_errors_cleanup(&errs);
    return t.p;
}

/* ---------------------------------------------------------------- equality */

static bool same(const char *what, bool ok)
{
    if (!ok)
        fprintf(stderr, "  differs: %s\n", what);
    return ok;
}

static bool eq_s(const char *a, const char *b)
{
    return (!a || !*a) ? (!b || !*b) : (b && !strcmp(a, b));
}

static bool eq_strs(const char *what, const struct zt_authz_l7_strs *a,
                    const struct zt_authz_l7_strs *b)
{
    if (a->n != b->n)
        return same(what, false);
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].kind != b->v[i].kind || a->v[i].nocase != b->v[i].nocase ||
            a->v[i].len != b->v[i].len || strcmp(a->v[i].v, b->v[i].v) != 0)
            return same(what, false);
    return true;
}

static bool eq_cidrs(const char *what, const struct zt_authz_l7_cidrs *a,
                     const struct zt_authz_l7_cidrs *b)
{
    if (a->n != b->n)
        return same(what, false);
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].prefix != b->v[i].prefix || a->v[i].ip.family != b->v[i].ip.family ||
            memcmp(a->v[i].ip.addr, b->v[i].ip.addr, 16) != 0)
            return same(what, false);
    return true;
}

static bool eq_ports(const char *what, const struct zt_authz_l7_ports *a,
                     const struct zt_authz_l7_ports *b)
{
    return same(what, a->n == b->n && (!a->n || !memcmp(a->v, b->v, a->n * sizeof(*a->v))));
}

static bool eq_targets(const struct zt_authz_l7_target *a, size_t na,
                       const struct zt_authz_l7_target *b, size_t nb)
{
    if (na != nb)
        return same("n_targets", false);
    for (size_t i = 0; i < na; i++)
        if (a[i].kind != b[i].kind || strcmp(a[i].ns, b[i].ns) || strcmp(a[i].name, b[i].name))
            return same("targets", false);
    return true;
}

#define EQ_STRS(a, b, f) eq_strs(#f, &(a)->f, &(b)->f)
#define EQ_CIDRS(a, b, f) eq_cidrs(#f, &(a)->f, &(b)->f)
#define EQ_PORTS(a, b, f) eq_ports(#f, &(a)->f, &(b)->f)

static bool eq_source(const struct zt_authz_l7_source *a, const struct zt_authz_l7_source *b)
{
    return EQ_STRS(a, b, principals) && EQ_STRS(a, b, not_principals) &&
           EQ_STRS(a, b, namespaces) && EQ_STRS(a, b, not_namespaces) &&
           EQ_STRS(a, b, request_principals) && EQ_STRS(a, b, not_request_principals) &&
           EQ_STRS(a, b, service_accounts) && EQ_STRS(a, b, not_service_accounts) &&
           EQ_CIDRS(a, b, ip_blocks) && EQ_CIDRS(a, b, not_ip_blocks) &&
           EQ_CIDRS(a, b, remote_ip_blocks) && EQ_CIDRS(a, b, not_remote_ip_blocks);
}

static bool eq_operation(const struct zt_authz_l7_operation *a,
                         const struct zt_authz_l7_operation *b)
{
    return EQ_STRS(a, b, hosts) && EQ_STRS(a, b, not_hosts) && EQ_STRS(a, b, methods) &&
           EQ_STRS(a, b, not_methods) && EQ_STRS(a, b, paths) && EQ_STRS(a, b, not_paths) &&
           EQ_PORTS(a, b, ports) && EQ_PORTS(a, b, not_ports);
}

static bool eq_when(const struct zt_authz_l7_when *a, const struct zt_authz_l7_when *b)
{
    if (!same("when.key", a->key == b->key) || !same("when.header", eq_s(a->header, b->header)) ||
        !same("when.n_claim", a->n_claim == b->n_claim))
        return false;
    for (size_t i = 0; i < a->n_claim; i++)
        if (!same("when.claim", !strcmp(a->claim[i], b->claim[i])))
            return false;
    return EQ_STRS(a, b, values) && EQ_STRS(a, b, not_values) && EQ_CIDRS(a, b, cidrs) &&
           EQ_CIDRS(a, b, not_cidrs) && EQ_PORTS(a, b, ports) && EQ_PORTS(a, b, not_ports);
}

static bool eq_authz(const struct zt_authz_l7_policy *a, const struct zt_authz_l7_policy *b)
{
    if (!same("ns", !strcmp(a->ns, b->ns)) || !same("name", !strcmp(a->name, b->name)) ||
        !same("action", a->action == b->action) || !same("dry_run", a->dry_run == b->dry_run) ||
        !eq_targets(a->targets, a->n_targets, b->targets, b->n_targets) ||
        !same("n_rules", a->n_rules == b->n_rules))
        return false;
    for (size_t i = 0; i < a->n_rules; i++) {
        const struct zt_authz_l7_rule *x = &a->rules[i], *y = &b->rules[i];
        if (!same("rule sizes",
                  x->n_from == y->n_from && x->n_to == y->n_to && x->n_when == y->n_when))
            return false;
        for (size_t j = 0; j < x->n_from; j++)
            if (!eq_source(&x->from[j], &y->from[j]))
                return false;
        for (size_t j = 0; j < x->n_to; j++)
            if (!eq_operation(&x->to[j], &y->to[j]))
                return false;
        for (size_t j = 0; j < x->n_when; j++)
            if (!eq_when(&x->when[j], &y->when[j]))
                return false;
    }
    return true;
}

static bool eq_list(const char *what, const char *const *a, size_t na, const char *const *b,
                    size_t nb)
{
    if (na != nb)
        return same(what, false);
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return same(what, false);
    return true;
}

static bool eq_rule(const struct zt_jwt_rule_spec *a, const struct zt_jwt_rule_spec *b)
{
    if (!same("issuer", eq_s(a->issuer, b->issuer)) || !same("jwks", eq_s(a->jwks, b->jwks)) ||
        !same("jwks_uri", eq_s(a->jwks_uri, b->jwks_uri)) ||
        !eq_list("audiences", a->audiences, a->n_audiences, b->audiences, b->n_audiences) ||
        !eq_list("from_params", a->from_params, a->n_from_params, b->from_params,
                 b->n_from_params) ||
        !eq_list("from_cookies", a->from_cookies, a->n_from_cookies, b->from_cookies,
                 b->n_from_cookies) ||
        !same("forward", a->forward_original_token == b->forward_original_token) ||
        !same("payload", eq_s(a->output_payload_to_header, b->output_payload_to_header)) ||
        !same("n_from_headers", a->n_from_headers == b->n_from_headers) ||
        !same("n_claims", a->n_output_claim_to_headers == b->n_output_claim_to_headers))
        return false;
    for (size_t i = 0; i < a->n_from_headers; i++)
        if (!same("from_headers", eq_s(a->from_headers[i].name, b->from_headers[i].name) &&
                                      eq_s(a->from_headers[i].prefix, b->from_headers[i].prefix)))
            return false;
    for (size_t i = 0; i < a->n_output_claim_to_headers; i++)
        if (!same(
                "claims",
                eq_s(a->output_claim_to_headers[i].header, b->output_claim_to_headers[i].header) &&
                    eq_s(a->output_claim_to_headers[i].claim, b->output_claim_to_headers[i].claim)))
            return false;
    return true;
}

static bool eq_authn(const struct zt_jwt_authn_policy *a, const struct zt_jwt_authn_policy *b)
{
    if (!same("ns", !strcmp(a->ns, b->ns)) || !same("name", !strcmp(a->name, b->name)) ||
        !eq_targets(a->targets, a->n_targets, b->targets, b->n_targets) ||
        !same("n_rules", a->n_rules == b->n_rules))
        return false;
    for (size_t i = 0; i < a->n_rules; i++)
        if (!eq_rule(&a->rules[i], &b->rules[i]))
            return false;
    return true;
}

static bool eq_ratelimit(const struct zt_ratelimit_policy *a, const struct zt_ratelimit_policy *b)
{
    if (!same("ns", !strcmp(a->ns, b->ns)) || !same("name", !strcmp(a->name, b->name)) ||
        !same("requests", a->requests == b->requests) || !same("unit", a->unit == b->unit) ||
        !same("burst", a->burst == b->burst) || !same("key", a->key == b->key) ||
        !same("header", eq_s(a->header, b->header) && !a->header == !b->header) ||
        !same("max_keys", a->max_keys == b->max_keys) ||
        !same("n_targets", a->n_targets == b->n_targets))
        return false;
    for (size_t i = 0; i < a->n_targets; i++) {
        const struct zt_ratelimit_target *x = &a->targets[i], *y = &b->targets[i];
        if (!same("targets", x->kind == y->kind && !strcmp(x->name, y->name) &&
                                 eq_s(x->section, y->section) && !x->section == !y->section))
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- tests */

/* Every field survives encode + decode; a second encoding is the same
 * bytes. */
static void test_authz_round_trip(void)
{
    struct zt_authz_l7_policy *p = read_authz(authz_all), *q = NULL;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    char err[256] = "";
    CHECK(p != NULL);
    CHECK(p->n_targets == 4 && p->n_rules == 2 && p->rules[0].n_from == 2 &&
          p->rules[0].n_when == 6 && p->dry_run);
    CHECK_EQ_INT(zt_xds_authz_encode(p, &b1, &n1, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_xds_authz_decode(b1, n1, &q, err, sizeof(err)), 0);
    CHECK(eq_authz(p, q));
    CHECK_EQ_INT(zt_xds_authz_encode(q, &b2, &n2, err, sizeof(err)), 0);
    CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
    char *name = zt_xds_waypoint_policy_name(q->ns, q->name);
    CHECK_EQ_STR(name, "shop/all");
    free(name);
    free(b1);
    free(b2);
    zt_authz_l7_policy_free(p);
    zt_authz_l7_policy_free(q);
}

static void test_authn_round_trip(void)
{
    struct zt_jwt_authn_policy *p = read_authn(authn_all), *q = NULL;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    char err[256] = "";
    CHECK(p != NULL);
    CHECK(p->n_targets == 2 && p->n_rules == 2 && p->rules[0].n_from_headers == 2);
    CHECK_EQ_INT(zt_xds_authn_encode(p, &b1, &n1, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_xds_authn_decode(b1, n1, &q, err, sizeof(err)), 0);
    CHECK(eq_authn(p, q));
    CHECK_EQ_INT(zt_xds_authn_encode(q, &b2, &n2, err, sizeof(err)), 0);
    CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
    free(b1);
    free(b2);
    zt_jwt_authn_policy_free(p);
    zt_jwt_authn_policy_free(q);
}

/* Each RateLimit of rl_all (every field, the reader's defaults, each key
 * and unit) survives encode + decode; a second encoding is the same
 * bytes. */
static void test_ratelimit_round_trip(void)
{
    for (size_t i = 0; i < 3; i++) {
        struct zt_ratelimit_policy *p = read_ratelimit(i), *q = NULL;
        uint8_t *b1 = NULL, *b2 = NULL;
        size_t n1 = 0, n2 = 0;
        char err[256] = "";
        CHECK(p != NULL);
        if (!p)
            continue;
        CHECK_EQ_INT(zt_xds_ratelimit_encode(p, &b1, &n1, err, sizeof(err)), 0);
        CHECK_EQ_INT(zt_xds_ratelimit_decode(b1, n1, &q, err, sizeof(err)), 0);
        CHECK(q && eq_ratelimit(p, q));
        CHECK_EQ_INT(zt_xds_ratelimit_encode(q, &b2, &n2, err, sizeof(err)), 0);
        CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
        free(b1);
        free(b2);
        zt_ratelimit_policy_free(p);
        zt_ratelimit_policy_free(q);
    }
    /* What the reader made of them, so the round trip covered it. */
    struct zt_ratelimit_policy *a = read_ratelimit(0), *b = read_ratelimit(1),
                               *c = read_ratelimit(2);
    CHECK(a && a->n_targets == 4 && a->targets[0].kind == ZT_RATELIMIT_GATEWAY &&
          a->targets[1].kind == ZT_RATELIMIT_SERVICE &&
          a->targets[2].kind == ZT_RATELIMIT_HTTP_ROUTE &&
          a->targets[3].kind == ZT_RATELIMIT_GRPC_ROUTE &&
          !strcmp(a->targets[2].section, "writes") && !a->targets[3].section &&
          a->requests == 100 && a->unit == ZT_RATELIMIT_MINUTE && a->burst == 20 &&
          a->key == ZT_RATELIMIT_KEY_HEADER && !strcmp(a->header, "x-user-id") &&
          a->max_keys == 500);
    CHECK(b && b->key == ZT_RATELIMIT_KEY_PRINCIPAL && !b->header && b->burst == 7 &&
          b->unit == ZT_RATELIMIT_HOUR && b->max_keys == ZT_RATELIMIT_DEFAULT_MAX_KEYS);
    CHECK(c && c->key == ZT_RATELIMIT_KEY_NONE && c->max_keys == 0 && c->burst == 1 &&
          c->requests == ZT_RATELIMIT_MAX_REQUESTS && c->unit == ZT_RATELIMIT_SECOND);
    char *name = zt_xds_waypoint_policy_name(a->ns, a->name);
    CHECK_EQ_STR(name, "shop/per-user");
    free(name);
    zt_ratelimit_policy_free(a);
    zt_ratelimit_policy_free(b);
    zt_ratelimit_policy_free(c);
}

/* A set of decoded policies takes over the buckets of a set read from
 * YAML (zt_ratelimit_set_inherit sees the same limit), as a file reload
 * would: the waypoint swaps an xDS push in the same way. */
static void test_ratelimit_decoded_inherits(void)
{
    struct zt_ratelimit_policy *p = read_ratelimit(2), *q = NULL;
    uint8_t *b = NULL;
    size_t n = 0;
    char err[256];
    struct zt_ratelimit_result res;
    struct zt_ratelimit_request rq = {.gateway_ns = "shop", .gateway_name = "wp"};
    CHECK_EQ_INT(zt_xds_ratelimit_encode(p, &b, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_xds_ratelimit_decode(b, n, &q, err, sizeof(err)), 0);
    free(b);
    struct zt_ratelimit_set *old = zt_ratelimit_set_new(), *next = zt_ratelimit_set_new();
    zt_ratelimit_set_add(old, p);
    zt_ratelimit_set_seal(old);
    zt_ratelimit_set_add(next, q);
    zt_ratelimit_set_seal(next);
    /* burst 1: the first request passes, the second is limited. */
    CHECK_EQ_INT(zt_ratelimit_check(old, &rq, 1000, &res), 0);
    CHECK_EQ_INT(zt_ratelimit_check(old, &rq, 1000, &res), ZT_E_RATE_LIMITED);
    zt_ratelimit_set_inherit(next, old);
    CHECK_EQ_INT(zt_ratelimit_check(next, &rq, 1000, &res), ZT_E_RATE_LIMITED);
    struct zt_ratelimit_stats st;
    CHECK_EQ_INT(zt_ratelimit_set_stats(next, 0, &st), 0);
    CHECK(st.passed == 1 && st.limited == 2);
    zt_ratelimit_set_unref(old);
    zt_ratelimit_set_unref(next);
}

/* ---- refusals: a valid message, one field broken at a time ---- */

static Ztunnel__Policy__V1__StringMatch sm = ZTUNNEL__POLICY__V1__STRING_MATCH__INIT;
static Ztunnel__Policy__V1__StringMatch *sms[] = {&sm};
static Ztunnel__Policy__V1__Cidr cidr = ZTUNNEL__POLICY__V1__CIDR__INIT;
static Ztunnel__Policy__V1__Cidr *cidrs[] = {&cidr};
static uint8_t addr[16] = {10, 0, 0, 0};
static uint32_t ports[] = {80};
static Ztunnel__Policy__V1__Source src = ZTUNNEL__POLICY__V1__SOURCE__INIT;
static Ztunnel__Policy__V1__Source *srcs[] = {&src};
static Ztunnel__Policy__V1__Operation op = ZTUNNEL__POLICY__V1__OPERATION__INIT;
static Ztunnel__Policy__V1__Operation *ops[] = {&op};
static Ztunnel__Policy__V1__Condition cond = ZTUNNEL__POLICY__V1__CONDITION__INIT;
static Ztunnel__Policy__V1__Condition *conds[] = {&cond};
static Ztunnel__Policy__V1__Rule rule = ZTUNNEL__POLICY__V1__RULE__INIT;
static Ztunnel__Policy__V1__Rule *rules[] = {&rule};
static Ztunnel__Policy__V1__Target tgt = ZTUNNEL__POLICY__V1__TARGET__INIT;
static Ztunnel__Policy__V1__Target *tgts[] = {&tgt};
static Ztunnel__Policy__V1__AuthorizationPolicy pol =
    ZTUNNEL__POLICY__V1__AUTHORIZATION_POLICY__INIT;

/* A DENY of GET /a* from 10.0.0.0/8 to port 80 with header x-a: v, on
 * Gateway shop/wp. */
static void reset_authz(void)
{
    ztunnel__policy__v1__string_match__init(&sm);
    sm.value = (char *)"v";
    ztunnel__policy__v1__cidr__init(&cidr);
    cidr.address.data = addr;
    cidr.address.len = 4;
    cidr.prefix_len = 8;
    ztunnel__policy__v1__source__init(&src);
    src.n_ip_blocks = 1;
    src.ip_blocks = cidrs;
    ztunnel__policy__v1__operation__init(&op);
    op.n_methods = 1;
    op.methods = sms;
    op.n_ports = 1;
    op.ports = ports;
    ztunnel__policy__v1__condition__init(&cond);
    cond.key = ZTUNNEL__POLICY__V1__CONDITION_KEY__HEADER;
    cond.header = (char *)"x-a";
    cond.n_values = 1;
    cond.values = sms;
    ztunnel__policy__v1__rule__init(&rule);
    rule.n_from = rule.n_to = rule.n_when = 1;
    rule.from = srcs;
    rule.to = ops;
    rule.when = conds;
    ztunnel__policy__v1__target__init(&tgt);
    tgt.kind = ZTUNNEL__POLICY__V1__TARGET_KIND__GATEWAY;
    tgt.namespace_ = (char *)"shop";
    tgt.name = (char *)"wp";
    ztunnel__policy__v1__authorization_policy__init(&pol);
    pol.namespace_ = (char *)"shop";
    pol.name = (char *)"p";
    pol.action = ZTUNNEL__POLICY__V1__ACTION__DENY;
    pol.n_targets = 1;
    pol.targets = tgts;
    pol.n_rules = 1;
    pol.rules = rules;
}

/* Decodes pol; returns the error, with err filled. */
static int decode_pol(char *err, size_t errlen)
{
    uint8_t buf[4096];
    struct zt_authz_l7_policy *p = NULL;
    size_t n = ztunnel__policy__v1__authorization_policy__pack(&pol, buf);
    err[0] = '\0';
    int rc = zt_xds_authz_decode(buf, n, &p, err, errlen);
    if (rc == 0 && !p)
        rc = -1;
    if (rc && p)
        rc = -2;
    zt_authz_l7_policy_free(p);
    return rc;
}

static void test_authz_refusals(void)
{
    char err[256];
    uint8_t v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
    uint32_t bad_ports[] = {70000};
    char *claims[] = {(char *)"a"};

    reset_authz();
    CHECK_EQ_INT(decode_pol(err, sizeof(err)), 0);

#define REFUSED(setup, want)                                                                       \
    do {                                                                                           \
        reset_authz();                                                                             \
        setup;                                                                                     \
        CHECK(decode_pol(err, sizeof(err)) < 0);                                                   \
        if (!strstr(err, want))                                                                    \
            fprintf(stderr, "  got \"%s\", want \"%s\"\n", err, want);                             \
        CHECK(strstr(err, want) != NULL);                                                          \
    } while (0)

    REFUSED(pol.namespace_ = (char *)"", "namespace: required");
    REFUSED(pol.action = 7, "action: unknown action 7");
    REFUSED(pol.n_rules = 0, "rules: a DENY without rules");
    REFUSED(pol.n_targets = 0, "targets: required");
    REFUSED(tgt.kind = 0, "targets[0]: unknown target kind 0");
    REFUSED(tgt.namespace_ = (char *)"other", "targets[0].namespace: must be the policy's");
    REFUSED((tgt.kind = ZTUNNEL__POLICY__V1__TARGET_KIND__GATEWAY_CLASS, tgt.namespace_ = ""),
            "targets[0].name: a GatewayClass other than istio-waypoint");
    REFUSED(sm.value = (char *)"a*b", "rules[0].to[0].methods[0]: '*' is allowed only");
    REFUSED((sm.kind = ZTUNNEL__POLICY__V1__STRING_MATCH_KIND__TEMPLATE, sm.value = "/{*}"),
            "rules[0].to[0].methods[0]: '*' is allowed only");
    REFUSED(sm.kind = 9, "rules[0].to[0].methods[0]: unknown match kind 9");
    REFUSED(sm.nocase = true, "rules[0].to[0].methods[0]: not the value");
    REFUSED((op.n_hosts = 1, op.hosts = sms, sm.value = "A.b", sm.nocase = true),
            "rules[0].to[0].hosts[0]: not the value");
    REFUSED((sm.kind = ZTUNNEL__POLICY__V1__STRING_MATCH_KIND__PRESENCE),
            "rules[0].to[0].methods[0]: not the value");
    REFUSED(sm.value = (char *)"", "rules[0].to[0].methods[0]: an empty value");
    REFUSED(cidr.address.len = 5, "rules[0].from[0].ip_blocks[0]: an address is 4 or 16 bytes");
    REFUSED(cidr.prefix_len = 33, "rules[0].from[0].ip_blocks[0]: prefix length 33 over 32");
    REFUSED((cidr.address.data = v6, cidr.address.len = 16),
            "rules[0].from[0].ip_blocks[0]: an IPv4-mapped address");
    REFUSED(op.ports = bad_ports, "rules[0].to[0].ports[0]: port 70000");
    REFUSED(src.n_ip_blocks = 0, "rules[0].from[0]: must not be empty");
    REFUSED((op.n_methods = 0, op.n_ports = 0), "rules[0].to[0]: must not be empty");
    REFUSED((src.n_service_accounts = 1, src.service_accounts = sms),
            "rules[0].from[0].service_accounts[0]: expected \"namespace/serviceAccount\"");
    REFUSED((src.n_service_accounts = 1, src.service_accounts = sms, sm.value = "a/b",
             src.n_namespaces = 1, src.namespaces = sms),
            "rules[0].from[0]: cannot set serviceAccounts with namespaces or principals");
    REFUSED(cond.header = (char *)"X-A", "rules[0].when[0].header: not a name");
    REFUSED(cond.header = (char *)"", "rules[0].when[0].header: required");
    REFUSED((cond.n_claim = 1, cond.claim = claims), "rules[0].when[0].claim: only for key");
    REFUSED(cond.key = ZTUNNEL__POLICY__V1__CONDITION_KEY__SOURCE_IP,
            "rules[0].when[0].header: only for key HEADER");
    REFUSED((cond.key = ZTUNNEL__POLICY__V1__CONDITION_KEY__SOURCE_IP, cond.header = ""),
            "rules[0].when[0]: values of another kind than the key's");
    REFUSED((cond.key = ZTUNNEL__POLICY__V1__CONDITION_KEY__AUTH_CLAIMS, cond.header = ""),
            "rules[0].when[0].claim: 0 names, want 1..8");
    REFUSED(cond.n_values = 0, "rules[0].when[0]: no values");
    REFUSED(cond.key = 99, "rules[0].when[0]: unknown key 99");

    /* Caps. */
    Ztunnel__Policy__V1__Target *many_t[17];
    for (int i = 0; i < 17; i++)
        many_t[i] = &tgt;
    REFUSED((pol.n_targets = 17, pol.targets = many_t), "targets: 17 items, at most 16");
    Ztunnel__Policy__V1__Rule **many_r = calloc(1025, sizeof(*many_r));
    for (int i = 0; i < 1025; i++)
        many_r[i] = &rule;
    rule.n_from = rule.n_to = rule.n_when = 0;
    {
        uint8_t *buf;
        struct zt_authz_l7_policy *p = NULL;
        reset_authz();
        rule.n_from = rule.n_to = rule.n_when = 0;
        pol.n_rules = 1025;
        pol.rules = many_r;
        size_t n = ztunnel__policy__v1__authorization_policy__get_packed_size(&pol);
        buf = malloc(n);
        ztunnel__policy__v1__authorization_policy__pack(&pol, buf);
        CHECK_EQ_INT(zt_xds_authz_decode(buf, n, &p, err, sizeof(err)), ZT_E_TOO_BIG);
        CHECK(p == NULL && strstr(err, "rules: 1025 items, at most 1024"));
        free(buf);
    }
    free(many_r);

    /* Not the message at all, and over the size cap. */
    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    struct zt_authz_l7_policy *p = (void *)1;
    CHECK_EQ_INT(zt_xds_authz_decode(junk, sizeof(junk), &p, err, sizeof(err)), ZT_E_PROTO);
    CHECK(p == NULL && strstr(err, "not a ztunnel.policy.v1.AuthorizationPolicy"));
    CHECK_EQ_INT(zt_xds_authz_decode(junk, ZT_XDS_POLICY_MAX_LEN + 1, &p, err, sizeof(err)),
                 ZT_E_TOO_BIG);
}

static void test_authn_refusals(void)
{
    struct zt_jwt_authn_policy *p = read_authn(authn_all);
    struct zt_jwt_authn_policy *q = NULL;
    char err[256];
    uint8_t *buf = NULL;
    size_t n = 0;
    CHECK(p != NULL);

    /* The encoder refuses what the decoder would: both key sources. */
    struct zt_jwt_rule_spec *r = &p->rules[1];
    r->jwks = strdup(JWKS);
    CHECK_EQ_INT(zt_xds_authn_encode(p, &buf, &n, err, sizeof(err)), ZT_E_PROTO);
    CHECK(buf == NULL && strstr(err, "jwt_rules[1]: exactly one of jwks and jwks_uri"));
    free((char *)r->jwks);
    r->jwks = NULL;
    free((char *)r->jwks_uri);
    r->jwks_uri = strdup("ftp://x/keys");
    CHECK(zt_xds_authn_encode(p, &buf, &n, err, sizeof(err)) < 0);
    CHECK(strstr(err, "jwt_rules[1].jwks_uri: not an http:// or https:// URL"));
    free((char *)r->jwks_uri);
    r->jwks_uri = NULL;
    r->jwks = strdup("{\"keys\": 1}");
    CHECK(zt_xds_authn_encode(p, &buf, &n, err, sizeof(err)) < 0);
    CHECK(strstr(err, "jwt_rules[1]: ") != NULL);
    free((char *)r->jwks);
    r->jwks = strdup(JWKS);
    free((char *)r->issuer);
    r->issuer = strdup("");
    CHECK(zt_xds_authn_encode(p, &buf, &n, err, sizeof(err)) < 0);
    CHECK(strstr(err, "jwt_rules[1].issuer: required"));
    free((char *)r->issuer);
    r->issuer = strdup("other");
    CHECK_EQ_INT(zt_xds_authn_encode(p, &buf, &n, err, sizeof(err)), 0);
    free(buf);
    buf = NULL;

    /* A cap: 33 audiences. */
    const char *aud[33];
    for (int i = 0; i < 33; i++)
        aud[i] = "a";
    const char *const *saved = r->audiences;
    r->audiences = aud;
    r->n_audiences = 33;
    CHECK_EQ_INT(zt_xds_authn_encode(p, &buf, &n, err, sizeof(err)), ZT_E_TOO_BIG);
    CHECK(strstr(err, "jwt_rules[1].audiences: 33 items, at most 32"));
    r->audiences = saved;
    r->n_audiences = 0;
    zt_jwt_authn_policy_free(p);

    static const uint8_t junk[] = {0x0a, 0x05, 'a'};
    CHECK_EQ_INT(zt_xds_authn_decode(junk, sizeof(junk), &q, err, sizeof(err)), ZT_E_PROTO);
    CHECK(q == NULL && strstr(err, "not a ztunnel.policy.v1.RequestAuthentication"));
}

/* ---- RateLimit refusals: one test per reason ---- */

static Ztunnel__Policy__V1__RateLimitTarget rl_tgt = ZTUNNEL__POLICY__V1__RATE_LIMIT_TARGET__INIT;
static Ztunnel__Policy__V1__RateLimitTarget *rl_tgts[17];
static Ztunnel__Policy__V1__RateLimit rl = ZTUNNEL__POLICY__V1__RATE_LIMIT__INIT;

/* 10 per minute, burst 5, keyed by x-user (at most 100 keys), on Gateway
 * shop/wp. */
static void reset_rl(void)
{
    ztunnel__policy__v1__rate_limit_target__init(&rl_tgt);
    rl_tgt.kind = ZTUNNEL__POLICY__V1__RATE_LIMIT_TARGET_KIND__RATE_LIMIT_TARGET_GATEWAY;
    rl_tgt.name = (char *)"wp";
    for (int i = 0; i < 17; i++)
        rl_tgts[i] = &rl_tgt;
    ztunnel__policy__v1__rate_limit__init(&rl);
    rl.namespace_ = (char *)"shop";
    rl.name = (char *)"rl";
    rl.n_targets = 1;
    rl.targets = rl_tgts;
    rl.requests = 10;
    rl.unit = ZTUNNEL__POLICY__V1__RATE_LIMIT_UNIT__UNIT_MINUTE;
    rl.burst = 5;
    rl.key = ZTUNNEL__POLICY__V1__RATE_LIMIT_KEY__KEY_HEADER;
    rl.header = (char *)"x-user";
    rl.max_keys = 100;
}

/* Decodes rl; returns the error, with err filled. */
static int decode_rl(char *err, size_t errlen)
{
    uint8_t buf[4096];
    struct zt_ratelimit_policy *p = NULL;
    size_t n = ztunnel__policy__v1__rate_limit__pack(&rl, buf);
    err[0] = '\0';
    int rc = zt_xds_ratelimit_decode(buf, n, &p, err, errlen);
    if (rc == 0 && !p)
        rc = -1;
    if (rc && p)
        rc = -2;
    zt_ratelimit_policy_free(p);
    return rc;
}

static void rl_refused(int want_rc, const char *want)
{
    char err[256];
    CHECK_EQ_INT(decode_rl(err, sizeof(err)), want_rc);
    if (!strstr(err, want))
        fprintf(stderr, "  got \"%s\", want \"%s\"\n", err, want);
    CHECK(strstr(err, want) != NULL);
}

static void test_rl_valid(void)
{
    char err[256];
    reset_rl();
    CHECK_EQ_INT(decode_rl(err, sizeof(err)), 0);
    /* The same without a key, and with a section on a route target. */
    rl.key = ZTUNNEL__POLICY__V1__RATE_LIMIT_KEY__KEY_NONE;
    rl.header = (char *)"";
    rl.max_keys = 0;
    rl_tgt.kind = ZTUNNEL__POLICY__V1__RATE_LIMIT_TARGET_KIND__RATE_LIMIT_TARGET_GRPC_ROUTE;
    rl_tgt.section = (char *)"r1";
    CHECK_EQ_INT(decode_rl(err, sizeof(err)), 0);
}

#define RL_REFUSAL(test, setup, rc, want)                                                          \
    static void test(void)                                                                         \
    {                                                                                              \
        reset_rl();                                                                                \
        setup;                                                                                     \
        rl_refused(rc, want);                                                                      \
    }

static char long_ns[65], long_header[258], long_name[255];

RL_REFUSAL(test_rl_no_namespace, rl.namespace_ = (char *)"", ZT_E_PROTO, "namespace: required")
RL_REFUSAL(test_rl_long_namespace, (memset(long_ns, 'n', 64), rl.namespace_ = long_ns),
           ZT_E_TOO_BIG, "namespace: longer than 63 bytes")
RL_REFUSAL(test_rl_no_name, rl.name = (char *)"", ZT_E_PROTO, "name: required")
RL_REFUSAL(test_rl_control_name, rl.name = (char *)"a\nb", ZT_E_PROTO, "name: control characters")
RL_REFUSAL(test_rl_no_targets, rl.n_targets = 0, ZT_E_PROTO, "targets: required")
RL_REFUSAL(test_rl_many_targets, rl.n_targets = 17, ZT_E_TOO_BIG, "targets: 17 items, at most 16")
RL_REFUSAL(test_rl_target_kind_unspecified, rl_tgt.kind = 0, ZT_E_PROTO,
           "targets[0]: unknown target kind 0")
RL_REFUSAL(test_rl_target_kind_unknown, rl_tgt.kind = 5, ZT_E_PROTO,
           "targets[0]: unknown target kind 5")
RL_REFUSAL(test_rl_target_no_name, rl_tgt.name = (char *)"", ZT_E_PROTO,
           "targets[0].name: required")
RL_REFUSAL(test_rl_target_long_name, (memset(long_name, 'a', 254), rl_tgt.name = long_name),
           ZT_E_TOO_BIG, "targets[0].name: longer than 253 bytes")
RL_REFUSAL(test_rl_section_not_route,
           (rl_tgt.kind = ZTUNNEL__POLICY__V1__RATE_LIMIT_TARGET_KIND__RATE_LIMIT_TARGET_SERVICE,
            rl_tgt.section = (char *)"r1"),
           ZT_E_PROTO, "targets[0].section: only for HTTPRoute and GRPCRoute targets")
RL_REFUSAL(test_rl_no_requests, rl.requests = 0, ZT_E_PROTO, "requests: 0, want 1..1000000000")
RL_REFUSAL(test_rl_many_requests, rl.requests = ZT_RATELIMIT_MAX_REQUESTS + 1, ZT_E_PROTO,
           "requests: 1000000001, want 1..1000000000")
RL_REFUSAL(test_rl_no_burst, rl.burst = 0, ZT_E_PROTO, "burst: 0, want 1..1000000000")
RL_REFUSAL(test_rl_big_burst, rl.burst = ZT_RATELIMIT_MAX_BURST + 1, ZT_E_PROTO,
           "burst: 1000000001, want 1..1000000000")
RL_REFUSAL(test_rl_unit_unspecified, rl.unit = 0, ZT_E_PROTO, "unit: unknown unit 0")
RL_REFUSAL(test_rl_unit_unknown, rl.unit = 4, ZT_E_PROTO, "unit: unknown unit 4")
RL_REFUSAL(test_rl_key_unknown, rl.key = 3, ZT_E_PROTO, "key: unknown key 3")
RL_REFUSAL(test_rl_no_header, rl.header = (char *)"", ZT_E_PROTO, "header: required")
RL_REFUSAL(test_rl_header_not_token, rl.header = (char *)"x user", ZT_E_PROTO,
           "header: not a header name")
RL_REFUSAL(test_rl_header_upper, rl.header = (char *)"X-User", ZT_E_PROTO, "header: not lower case")
RL_REFUSAL(test_rl_header_long, (memset(long_header, 'h', 257), rl.header = long_header),
           ZT_E_TOO_BIG, "header: longer than 256 bytes")
RL_REFUSAL(test_rl_header_without_key_header,
           (rl.key = ZTUNNEL__POLICY__V1__RATE_LIMIT_KEY__KEY_SOURCE_PRINCIPAL), ZT_E_PROTO,
           "header: only for key KEY_HEADER")
RL_REFUSAL(test_rl_max_keys_without_key,
           (rl.key = ZTUNNEL__POLICY__V1__RATE_LIMIT_KEY__KEY_NONE, rl.header = (char *)""),
           ZT_E_PROTO, "max_keys: only with a key")
RL_REFUSAL(test_rl_no_max_keys, rl.max_keys = 0, ZT_E_PROTO, "max_keys: 0, want 1..1000000")
RL_REFUSAL(test_rl_many_max_keys, rl.max_keys = ZT_RATELIMIT_MAX_KEYS + 1, ZT_E_PROTO,
           "max_keys: 1000001, want 1..1000000")

/* Not the message at all, and over the size cap. */
static void test_rl_not_a_message(void)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    struct zt_ratelimit_policy *p = (void *)1;
    char err[256];
    CHECK_EQ_INT(zt_xds_ratelimit_decode(junk, sizeof(junk), &p, err, sizeof(err)), ZT_E_PROTO);
    CHECK(p == NULL && strstr(err, "policy: not a ztunnel.policy.v1.RateLimit"));
    CHECK_EQ_INT(zt_xds_ratelimit_decode(junk, ZT_XDS_POLICY_MAX_LEN + 1, &p, err, sizeof(err)),
                 ZT_E_TOO_BIG);
    CHECK(p == NULL && strstr(err, "policy: "));
}

/* The encoder refuses what the decoder would, naming the field: control
 * never serves a RateLimit its waypoints NACK. */
static void test_rl_encoder_refuses(void)
{
    struct zt_ratelimit_policy *p = read_ratelimit(0);
    uint8_t *buf = (void *)1;
    size_t n = 1;
    char err[256];
    CHECK(p != NULL);
    p->requests = 0;
    CHECK_EQ_INT(zt_xds_ratelimit_encode(p, &buf, &n, err, sizeof(err)), ZT_E_PROTO);
    CHECK(buf == NULL && n == 0 && strstr(err, "requests: 0, want"));
    p->requests = 100;
    p->header[0] = 'X';
    CHECK_EQ_INT(zt_xds_ratelimit_encode(p, &buf, &n, err, sizeof(err)), ZT_E_PROTO);
    CHECK(buf == NULL && strstr(err, "header: not lower case"));
    p->header[0] = 'x';
    free(p->targets[0].section);
    p->targets[0].section = strdup("r");
    CHECK_EQ_INT(zt_xds_ratelimit_encode(p, &buf, &n, err, sizeof(err)), ZT_E_PROTO);
    CHECK(buf == NULL && strstr(err, "targets[0].section: only for HTTPRoute"));
    free(p->targets[0].section);
    p->targets[0].section = NULL;
    CHECK_EQ_INT(zt_xds_ratelimit_encode(p, &buf, &n, err, sizeof(err)), 0);
    free(buf);
    zt_ratelimit_policy_free(p);
}

/* Writes (ZT_XDS_GOLDEN_UPDATE=1) or compares golden/<name>.bin. */
static int golden(const char *name, const uint8_t *buf, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "tests/unit/xds/golden/%s.bin", name);
    const char *upd = getenv("ZT_XDS_GOLDEN_UPDATE");
    if (upd && strcmp(upd, "1") == 0) {
        FILE *f = fopen(path, "wb");
        int ok = f && fwrite(buf, 1, len, f) == len;
        if (f)
            fclose(f);
        return ok ? 0 : -1;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint8_t *old = malloc(len + 1);
    size_t got = fread(old, 1, len + 1, f);
    fclose(f);
    int rc = got == len && memcmp(old, buf, len) == 0 ? 0 : -1;
    free(old);
    return rc;
}

/* The encodings of authz_all, authn_all and rl_all's first RateLimit are
 * golden/authz_policy.bin, authn_policy.bin and ratelimit_policy.bin, which
 * golden/check.sh decodes with protoc against proto/policies.proto. */
static void test_golden(void)
{
    struct stat st;
    if (stat("tests/unit/xds/golden/check.sh", &st) != 0) {
        SKIP("not run from the repository root");
    }
    struct zt_authz_l7_policy *a = read_authz(authz_all);
    struct zt_jwt_authn_policy *b = read_authn(authn_all);
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t n = 0, n2 = 0;
    char err[256];
    CHECK(a && b);
    CHECK_EQ_INT(zt_xds_authz_encode(a, &buf, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_xds_authn_encode(b, &buf2, &n2, err, sizeof(err)), 0);
    CHECK_EQ_INT(golden("authz_policy", buf, n), 0);
    CHECK_EQ_INT(golden("authn_policy", buf2, n2), 0);
    free(buf);
    free(buf2);
    zt_authz_l7_policy_free(a);
    zt_jwt_authn_policy_free(b);
    struct zt_ratelimit_policy *r = read_ratelimit(0);
    CHECK(r != NULL);
    CHECK_EQ_INT(zt_xds_ratelimit_encode(r, &buf, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(golden("ratelimit_policy", buf, n), 0);
    free(buf);
    zt_ratelimit_policy_free(r);
}

int main(void)
{
    RUN(test_authz_round_trip);
    RUN(test_authn_round_trip);
    RUN(test_authz_refusals);
    RUN(test_authn_refusals);
    RUN(test_ratelimit_round_trip);
    RUN(test_ratelimit_decoded_inherits);
    RUN(test_rl_valid);
    RUN(test_rl_no_namespace);
    RUN(test_rl_long_namespace);
    RUN(test_rl_no_name);
    RUN(test_rl_control_name);
    RUN(test_rl_no_targets);
    RUN(test_rl_many_targets);
    RUN(test_rl_target_kind_unspecified);
    RUN(test_rl_target_kind_unknown);
    RUN(test_rl_target_no_name);
    RUN(test_rl_target_long_name);
    RUN(test_rl_section_not_route);
    RUN(test_rl_no_requests);
    RUN(test_rl_many_requests);
    RUN(test_rl_no_burst);
    RUN(test_rl_big_burst);
    RUN(test_rl_unit_unspecified);
    RUN(test_rl_unit_unknown);
    RUN(test_rl_key_unknown);
    RUN(test_rl_no_header);
    RUN(test_rl_header_not_token);
    RUN(test_rl_header_upper);
    RUN(test_rl_header_long);
    RUN(test_rl_header_without_key_header);
    RUN(test_rl_max_keys_without_key);
    RUN(test_rl_no_max_keys);
    RUN(test_rl_many_max_keys);
    RUN(test_rl_not_a_message);
    RUN(test_rl_encoder_refuses);
    RUN(test_golden);
    return TEST_REPORT();
}
