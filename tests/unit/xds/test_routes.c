/* ztunnel.routes.v1.Route: routes read from YAML (config/routes.h) are
 * encoded, decoded and compared field by field with the original; the
 * decoder's caps and checks name the field; the encoding of a fixed route is
 * a golden file that golden/check.sh decodes with protoc (not our code). */
#include "test.h"

#include "base/err.h"
#include "config/routes.h"
#include "proto/routes.pb-c.h"
#include "xds/routes.h"

#include <stdlib.h>
#include <sys/stat.h>

static const char *const yaml_all =
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: reviews, namespace: shop, creationTimestamp: \"2026-12-01T09:00:00Z\"}\n"
    "spec:\n"
    "  parentRefs:\n"
    "  - {kind: Service, group: \"\", name: reviews, port: 9080}\n"
    "  - {kind: Service, name: ratings, sectionName: http}\n"
    "  - {kind: Gateway, group: gateway.networking.k8s.io, name: wp}\n"
    "  hostnames: [reviews.shop.svc.cluster.local]\n"
    "  rules:\n"
    "  - name: v2\n"
    "    matches:\n"
    "    - path: {type: PathPrefix, value: /api/}\n"
    "      method: POST\n"
    "      headers: [{name: X-Version, value: v2}, {type: RegularExpression, name: x-u, "
    "value: \"a.*\"}]\n"
    "      queryParams: [{name: Debug, value: \"1\"}]\n"
    "    - path: {type: PathPrefix, value: /}\n"
    "    filters:\n"
    "    - type: RequestHeaderModifier\n"
    "      requestHeaderModifier: {set: [{name: X-A, value: a}], add: [{name: x-b, value: b}], "
    "remove: [x-c]}\n"
    "    - type: ResponseHeaderModifier\n"
    "      responseHeaderModifier: {add: [{name: x-r, value: r}]}\n"
    "    - type: URLRewrite\n"
    "      urlRewrite: {hostname: new.example, path: {type: ReplacePrefixMatch, "
    "replacePrefixMatch: /v2}}\n"
    "    - type: RequestMirror\n"
    "      requestMirror: {backendRef: {name: shadow, port: 80}, fraction: {numerator: 1, "
    "denominator: 4}}\n"
    "    backendRefs: [{name: reviews-v2, port: 9080, weight: 3}, {name: reviews-v3, port: 9080, "
    "weight: 0}, {kind: Bucket, group: x.io, name: b}]\n"
    "    timeouts: {request: 2s, backendRequest: 500ms}\n"
    "    retry: {attempts: 3, codes: [503, 504], backoff: 100ms}\n"
    "  - matches: [{path: {type: Exact, value: /old}}]\n"
    "    filters:\n"
    "    - type: RequestRedirect\n"
    "      requestRedirect: {scheme: https, hostname: example.com, port: 8443, statusCode: 301, "
    "path: {type: ReplaceFullPath, replaceFullPath: /new}}\n"
    "  - matches: [{path: {type: Exact, value: /exact}}, {path: {type: RegularExpression, "
    "value: \"/r/[0-9]+\"}}]\n"
    "  - backendRefs: [{name: reviews-v1, namespace: other, port: 9080}]\n"
    "---\n"
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: GRPCRoute\n"
    "metadata: {name: greeter}\n"
    "spec:\n"
    "  parentRefs: [{kind: Service, group: core, name: greeter}]\n"
    "  rules:\n"
    "  - matches:\n"
    "    - method: {service: helloworld.Greeter, method: SayHello}\n"
    "    - method: {service: helloworld.Greeter}\n"
    "    - method: {method: SayBye}\n"
    "    - headers: [{name: x-g, value: g}]\n"
    "    backendRefs: [{name: greeter-v2, port: 50051}]\n";

struct parsed {
    struct zt_route_def *defs;
    size_t n, max;
};

static void collect(void *ud, const char *file, const struct ynode *doc,
                    struct zt_route_errors *errs)
{
    struct parsed *p = ud;
    if (p->n < p->max && zt_config_routes_parse_doc(file, doc, errs, &p->defs[p->n]) == 0 &&
        p->defs[p->n].name)
        p->n++;
}

/* Reads every route document of yaml into defs (at most max). */
static size_t parse(const char *yaml, struct zt_route_def *defs, size_t max)
{
    struct zt_route_errors errs = {0};
    struct parsed p = {.defs = defs, .max = max};
    zt_config_routes_each("t.yaml", yaml, strlen(yaml), &errs, collect, &p);
    for (size_t i = 0; i < errs.n; i++)
        if (!errs.v[i].is_warning)
            fprintf(stderr, "  %s\n", errs.v[i].msg);
    zt_route_errors_cleanup(&errs);
    return p.n;
}

/* ---- structural equality (NULL and "" are one value on the wire) ---- */

static bool s_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool sm_eq(const struct zt_route_strmatch *a, const struct zt_route_strmatch *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].kind != b[i].kind || !s_eq(a[i].name, b[i].name) ||
            !s_eq(a[i].value, b[i].value) || !a[i].re != !b[i].re)
            return false;
    return true;
}

static bool fields_eq(const struct zt_http_field *a, const struct zt_http_field *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!s_eq(a[i].name, b[i].name) || !s_eq(a[i].value, b[i].value))
            return false;
    return true;
}

static bool mod_eq(const struct zt_route_header_mod *a, const struct zt_route_header_mod *b)
{
    if (a->n_set != b->n_set || a->n_add != b->n_add || a->n_remove != b->n_remove ||
        !fields_eq(a->set, b->set, a->n_set) || !fields_eq(a->add, b->add, a->n_add))
        return false;
    for (size_t i = 0; i < a->n_remove; i++)
        if (!s_eq(a->remove[i], b->remove[i]))
            return false;
    return true;
}

static bool pm_eq(const struct zt_route_path_mod *a, const struct zt_route_path_mod *b)
{
    return a->kind == b->kind && s_eq(a->value, b->value);
}

static bool be_eq(const struct zt_route_backend *a, const struct zt_route_backend *b)
{
    return s_eq(a->ns, b->ns) && s_eq(a->name, b->name) && a->port == b->port &&
           a->weight == b->weight && a->invalid == b->invalid;
}

static bool rule_eq(const struct zt_route_rule *a, const struct zt_route_rule *b)
{
    const struct zt_route_filters *fa = &a->filters, *fb = &b->filters;
    if (!s_eq(a->name, b->name) || a->n_matches != b->n_matches || a->n_backends != b->n_backends ||
        a->request_timeout_ms != b->request_timeout_ms ||
        a->backend_timeout_ms != b->backend_timeout_ms || a->has_retry != b->has_retry)
        return false;
    for (size_t i = 0; i < a->n_matches; i++) {
        const struct zt_route_match *x = &a->matches[i], *y = &b->matches[i];
        if (x->path_kind != y->path_kind || !x->path != !y->path || !s_eq(x->path, y->path) ||
            !x->path_re != !y->path_re || !s_eq(x->method, y->method) ||
            x->n_headers != y->n_headers || x->n_query != y->n_query ||
            !sm_eq(x->headers, y->headers, x->n_headers) || !sm_eq(x->query, y->query, x->n_query))
            return false;
    }
    for (size_t i = 0; i < a->n_backends; i++)
        if (!be_eq(&a->backends[i], &b->backends[i]))
            return false;
    if (!mod_eq(&fa->request, &fb->request) || !mod_eq(&fa->response, &fb->response) ||
        fa->has_redirect != fb->has_redirect || fa->has_rewrite != fb->has_rewrite ||
        fa->n_mirrors != fb->n_mirrors)
        return false;
    if (fa->has_redirect &&
        (!s_eq(fa->redirect.scheme, fb->redirect.scheme) ||
         !s_eq(fa->redirect.hostname, fb->redirect.hostname) ||
         !pm_eq(&fa->redirect.path, &fb->redirect.path) || fa->redirect.port != fb->redirect.port ||
         fa->redirect.status != fb->redirect.status))
        return false;
    if (fa->has_rewrite && (!s_eq(fa->rewrite.hostname, fb->rewrite.hostname) ||
                            !pm_eq(&fa->rewrite.path, &fb->rewrite.path)))
        return false;
    for (size_t i = 0; i < fa->n_mirrors; i++)
        if (!be_eq(&fa->mirrors[i].backend, &fb->mirrors[i].backend) ||
            fa->mirrors[i].numerator != fb->mirrors[i].numerator ||
            fa->mirrors[i].denominator != fb->mirrors[i].denominator)
            return false;
    return !a->has_retry || memcmp(&a->retry, &b->retry, sizeof(a->retry)) == 0;
}

static bool def_eq(const struct zt_route_def *a, const struct zt_route_def *b)
{
    if (a->kind != b->kind || !s_eq(a->ns, b->ns) || !s_eq(a->name, b->name) ||
        a->has_created != b->has_created || a->created != b->created ||
        a->n_parents != b->n_parents || a->n_rules != b->n_rules ||
        a->n_hostnames != b->n_hostnames)
        return false;
    for (size_t i = 0; i < a->n_hostnames; i++)
        if (!s_eq(a->hostnames[i], b->hostnames[i]))
            return false;
    for (size_t i = 0; i < a->n_parents; i++) {
        const struct zt_route_parent *x = &a->parents[i], *y = &b->parents[i];
        if (x->kind != y->kind || !s_eq(x->ns, y->ns) || !s_eq(x->name, y->name) ||
            x->port != y->port || !s_eq(x->section, y->section))
            return false;
    }
    for (size_t i = 0; i < a->n_rules; i++)
        if (!rule_eq(&a->rules[i], &b->rules[i]))
            return false;
    return true;
}

static void test_round_trip(void)
{
    struct zt_route_def defs[4];
    size_t n = parse(yaml_all, defs, 4);
    CHECK_EQ_INT((int)n, 2);
    for (size_t i = 0; i < n; i++) {
        uint8_t *buf = NULL, *buf2 = NULL;
        size_t len = 0, len2 = 0;
        char err[256] = "";
        struct zt_route_def back;
        int rc = zt_xds_route_encode(&defs[i], &buf, &len, err, sizeof(err));
        if (rc)
            fprintf(stderr, "  encode: %s\n", err);
        CHECK_EQ_INT(rc, 0);
        rc = zt_xds_route_decode(buf, len, &back, err, sizeof(err));
        if (rc)
            fprintf(stderr, "  decode: %s\n", err);
        CHECK_EQ_INT(rc, 0);
        CHECK(def_eq(&defs[i], &back));
        /* The second encoding is the same bytes: a fixed point. */
        CHECK_EQ_INT(zt_xds_route_encode(&back, &buf2, &len2, err, sizeof(err)), 0);
        CHECK(len == len2 && memcmp(buf, buf2, len) == 0);
        free(buf);
        free(buf2);
        zt_route_def_cleanup(&back);
    }
    char *name = zt_xds_route_name(&defs[0]);
    CHECK_EQ_STR(name, "HTTPRoute/shop/reviews");
    free(name);
    name = zt_xds_route_name(&defs[1]);
    CHECK_EQ_STR(name, "GRPCRoute/default/greeter");
    free(name);
    for (size_t i = 0; i < n; i++)
        zt_route_def_cleanup(&defs[i]);
}

/* Packs r, decodes it and returns the decoder's result (err filled). */
static int decode_pb(Ztunnel__Routes__V1__Route *r, char *err, size_t errlen)
{
    struct zt_route_def d;
    size_t n = ztunnel__routes__v1__route__get_packed_size(r);
    uint8_t *buf = malloc(n ? n : 1);
    ztunnel__routes__v1__route__pack(r, buf);
    err[0] = '\0';
    int rc = zt_xds_route_decode(buf, n, &d, err, errlen);
    free(buf);
    zt_route_def_cleanup(&d);
    return rc;
}

static void test_rejects(void)
{
    Ztunnel__Routes__V1__Route r = ZTUNNEL__ROUTES__V1__ROUTE__INIT;
    Ztunnel__Routes__V1__Rule rule = ZTUNNEL__ROUTES__V1__RULE__INIT, *rules[20];
    Ztunnel__Routes__V1__Match m = ZTUNNEL__ROUTES__V1__MATCH__INIT, *ms[1] = {&m};
    Ztunnel__Routes__V1__StringMatch h = ZTUNNEL__ROUTES__V1__STRING_MATCH__INIT, *hs[1] = {&h};
    Ztunnel__Routes__V1__BackendRef be = ZTUNNEL__ROUTES__V1__BACKEND_REF__INIT, *bes[1] = {&be};
    char err[256];

    /* Kind missing. */
    r.namespace_ = (char *)"ns";
    r.name = (char *)"n";
    CHECK_EQ_INT(decode_pb(&r, err, sizeof(err)), ZT_E_PROTO);
    CHECK_EQ_STR(err, "kind: unknown route kind 0");
    r.kind = ZTUNNEL__ROUTES__V1__KIND__HTTP_ROUTE;
    CHECK_EQ_INT(decode_pb(&r, err, sizeof(err)), 0);

    /* Too many rules. */
    for (size_t i = 0; i < 20; i++)
        rules[i] = &rule;
    r.rules = rules;
    r.n_rules = 17;
    CHECK_EQ_INT(decode_pb(&r, err, sizeof(err)), ZT_E_TOO_BIG);
    CHECK_EQ_STR(err, "rules: 17 items, at most 16");

    /* A bad header name, a bad path, a bad regex, a bad backend port. */
    r.n_rules = 1;
    rule.matches = ms;
    rule.n_matches = 1;
    m.headers = hs;
    m.n_headers = 1;
    h.name = (char *)"bad name";
    h.value = (char *)"v";
    CHECK_EQ_INT(decode_pb(&r, err, sizeof(err)), ZT_E_PROTO);
    CHECK_EQ_STR(err, "rules[0].matches[0].headers[0].name: not a header name");
    h.name = (char *)"X-Ok";
    m.path_kind = ZTUNNEL__ROUTES__V1__PATH_KIND__EXACT;
    m.path = (char *)"/a/../b";
    CHECK_EQ_INT(decode_pb(&r, err, sizeof(err)), ZT_E_PROTO);
    CHECK_EQ_STR(err, "rules[0].matches[0].path: not a path the Gateway API allows");
    m.path_kind = ZTUNNEL__ROUTES__V1__PATH_KIND__REGULAR_EXPRESSION;
    m.path = (char *)"(a";
    CHECK_EQ_INT(decode_pb(&r, err, sizeof(err)), ZT_E_PROTO);
    CHECK(strncmp(err, "rules[0].matches[0].path: ", 26) == 0);
    m.path_kind = (Ztunnel__Routes__V1__PathKind)9;
    CHECK_EQ_INT(decode_pb(&r, err, sizeof(err)), ZT_E_PROTO);
    CHECK_EQ_STR(err, "rules[0].matches[0].path: unknown path kind 9");
    m.path_kind = ZTUNNEL__ROUTES__V1__PATH_KIND__PREFIX;
    m.path = (char *)"";
    rule.backend_refs = bes;
    rule.n_backend_refs = 1;
    be.namespace_ = (char *)"ns";
    be.name = (char *)"svc";
    be.port = 70000;
    CHECK_EQ_INT(decode_pb(&r, err, sizeof(err)), ZT_E_PROTO);
    CHECK_EQ_STR(err, "rules[0].backend_refs[0].port: port 70000, want 1..65535");
    be.port = 80;
    CHECK_EQ_INT(decode_pb(&r, err, sizeof(err)), 0);

    /* Not a message at all; over the size cap. */
    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    struct zt_route_def d;
    CHECK_EQ_INT(zt_xds_route_decode(junk, sizeof(junk), &d, err, sizeof(err)), ZT_E_PROTO);
    CHECK_EQ_STR(err, "route: not a ztunnel.routes.v1.Route");
    CHECK_EQ_INT(zt_xds_route_decode(junk, ZT_XDS_ROUTE_MAX_LEN + 1, &d, err, sizeof(err)),
                 ZT_E_TOO_BIG);
    CHECK(d.name == NULL && d.rules == NULL);
}

/* The encoding of yaml_all's HTTPRoute is golden/route.bin, which
 * golden/check.sh decodes with protoc against proto/routes.proto. */
static void test_golden(void)
{
    struct zt_route_def defs[2];
    struct stat st;
    size_t n = parse(yaml_all, defs, 2);
    uint8_t *buf = NULL, *old = NULL;
    size_t len = 0;
    char err[256];
    const char *path = "tests/unit/xds/golden/route.bin";

    if (stat("tests/unit/xds/golden/check.sh", &st) != 0) {
        SKIP("not run from the repository root");
        goto out;
    }
    CHECK(n == 2 && zt_xds_route_encode(&defs[0], &buf, &len, err, sizeof(err)) == 0);
    const char *upd = getenv("ZT_XDS_GOLDEN_UPDATE");
    if (upd && strcmp(upd, "1") == 0) {
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(buf, 1, len, f) == len);
        if (f)
            fclose(f);
        goto out;
    }
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f)
        goto out;
    old = malloc(len + 1);
    size_t got = fread(old, 1, len + 1, f);
    fclose(f);
    CHECK(got == len && memcmp(old, buf, len) == 0);
out:
    free(old);
    free(buf);
    for (size_t i = 0; i < n; i++)
        zt_route_def_cleanup(&defs[i]);
}

int main(void)
{
    RUN(test_round_trip);
    RUN(test_rejects);
    RUN(test_golden);
    return TEST_REPORT();
}
