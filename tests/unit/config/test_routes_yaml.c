/* HTTPRoute / GRPCRoute YAML: a real route as users write it, every error
 * path with its file:line and field path, a bad object next to good ones. */
#include "test.h"
#include "dump_errs.h"
#include "base/err.h"
#include "config/routes.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

static struct zt_route_table *load(const char *yaml, struct zt_route_errors *errs, int *rc)
{
    struct zt_route_builder *b = zt_route_builder_new("istio-system", "waypoint");
    int r = zt_config_routes_load_string(b, "t.yaml", yaml, strlen(yaml), errs);
    if (rc)
        *rc = r;
    return zt_route_builder_finish(b);
}

static struct zt_http_head *req(const char *method, const char *path)
{
    static struct zt_http_head h;
    zt_http_head_cleanup(&h);
    zt_http_head_init(&h, false);
    zt_http_head_set_part(&h, &h.method, method, strlen(method));
    zt_http_head_set_part(&h, &h.path, path, strlen(path));
    zt_http_head_set_part(&h, &h.authority, "reviews:9080", 12);
    return &h;
}

static const char REAL[] = "# The bookinfo reviews route, as in Istio's traffic-management docs\n"
                           "apiVersion: gateway.networking.k8s.io/v1\n"
                           "kind: HTTPRoute\n"
                           "metadata:\n"
                           "  name: reviews\n"
                           "  namespace: bookinfo\n"
                           "  creationTimestamp: \"2024-05-01T10:00:00Z\"\n"
                           "  labels:\n"
                           "    app: reviews\n"
                           "  annotations:\n"
                           "    kubectl.kubernetes.io/last-applied-configuration: |\n"
                           "      {}\n"
                           "spec:\n"
                           "  parentRefs:\n"
                           "  - group: \"\"\n"
                           "    kind: Service\n"
                           "    name: reviews\n"
                           "    port: 9080\n"
                           "  rules:\n"
                           "  - matches:\n"
                           "    - headers:\n"
                           "      - name: end-user\n"
                           "        value: jason\n"
                           "    backendRefs:\n"
                           "    - name: reviews-v2\n"
                           "      port: 9080\n"
                           "  - matches:\n"
                           "    - path:\n"
                           "        type: PathPrefix\n"
                           "        value: /api/\n"
                           "      method: GET\n"
                           "    filters:\n"
                           "    - type: RequestHeaderModifier\n"
                           "      requestHeaderModifier:\n"
                           "        add:\n"
                           "        - name: X-Canary\n"
                           "          value: \"true\"\n"
                           "        remove: [\"x-debug\"]\n"
                           "    - type: URLRewrite\n"
                           "      urlRewrite:\n"
                           "        path:\n"
                           "          type: ReplacePrefixMatch\n"
                           "          replacePrefixMatch: /v2/\n"
                           "    backendRefs:\n"
                           "    - name: reviews-v1\n"
                           "      port: 9080\n"
                           "      weight: 90\n"
                           "    - name: reviews-v3\n"
                           "      port: 9080\n"
                           "      weight: 10\n"
                           "    timeouts:\n"
                           "      request: 1m30s\n"
                           "      backendRequest: 500ms\n"
                           "    retry:\n"
                           "      attempts: 3\n"
                           "      backoff: 100ms\n"
                           "      codes: [503, 502]\n"
                           "status:\n"
                           "  parents: []\n"
                           "---\n"
                           "apiVersion: v1\n"
                           "kind: Service\n"
                           "metadata: {name: reviews, namespace: bookinfo}\n"
                           "spec: {ports: [{port: 9080, name: http}]}\n"
                           "---\n"
                           "apiVersion: gateway.networking.k8s.io/v1\n"
                           "kind: GRPCRoute\n"
                           "metadata: {name: echo, namespace: bookinfo}\n"
                           "spec:\n"
                           "  parentRefs: [{kind: Service, group: core, name: echo}]\n"
                           "  rules:\n"
                           "  - matches:\n"
                           "    - method: {service: echo.Echo, method: Ping}\n"
                           "    backendRefs: [{name: echo-ping, port: 7070}]\n"
                           "  - matches:\n"
                           "    - method: {service: echo.Echo}\n"
                           "    backendRefs: [{name: echo-svc, port: 7070}]\n"
                           "  - matches:\n"
                           "    - method: {method: Stream}\n"
                           "    backendRefs: [{name: echo-stream, port: 7070}]\n"
                           "  - matches:\n"
                           "    - method: {type: RegularExpression, service: \"echo\\\\..*\", "
                           "method: \"Get.*\"}\n"
                           "      headers: [{name: X-Env, value: canary}]\n"
                           "    backendRefs: [{name: echo-re, port: 7070}]\n";

static void test_real_routes(void)
{
    struct zt_route_errors errs = {0};
    int rc;
    struct zt_route_table *t = load(REAL, &errs, &rc);
    struct zt_route_target reviews = {"bookinfo", "reviews", 9080, NULL};
    struct zt_route_target echo = {"bookinfo", "echo", 7070, NULL};
    struct zt_route_result res;
    struct zt_http_head *h;
    int v1 = 0, v3 = 0;
    if (errs.n != 0)
        dump(&errs);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(errs.n, 0);
    CHECK_EQ_INT(zt_route_table_count(t), 2);

    h = req("GET", "/productpage");
    zt_http_head_add(h, "End-User", 8, "jason", 5);
    zt_route_select(t, &reviews, h, 0, &res);
    CHECK(res.outcome == ZT_ROUTE_FORWARD);
    CHECK_EQ_STR(res.backend->name, "reviews-v2");
    CHECK_EQ_STR(res.backend->ns, "bookinfo");
    CHECK_EQ_INT(res.backend->port, 9080);
    CHECK_EQ_INT(res.retry.attempts, 2); /* no retry stanza: Istio's default */
    CHECK(res.route->has_created && res.route->created == 1714557600);

    /* The prefix rule outranks the header-only rule (its path is "/"). */
    h = req("GET", "/api/ratings?x=1");
    zt_http_head_add(h, "end-user", 8, "jason", 5);
    zt_http_head_add(h, "x-debug", 7, "1", 1);
    for (uint32_t r = 0; r < 100; r++) {
        zt_route_select(t, &reviews, h, r, &res);
        CHECK(res.outcome == ZT_ROUTE_FORWARD);
        v1 += strcmp(res.backend->name, "reviews-v1") == 0;
        v3 += strcmp(res.backend->name, "reviews-v3") == 0;
    }
    CHECK_EQ_INT(v1, 90);
    CHECK_EQ_INT(v3, 10);
    CHECK_EQ_INT(res.retry.attempts, 3);
    CHECK_EQ_INT(res.retry.n_codes, 2);
    CHECK_EQ_INT(res.retry.codes[1], 502);
    CHECK_EQ_INT(res.retry.backoff_ms, 100);
    CHECK_EQ_INT(res.retry.per_try_timeout_ms, 500);
    CHECK_EQ_INT(res.timeout_ms, 90000);
    CHECK_EQ_INT(zt_route_apply_request(res.filters, res.match, h), 0);
    CHECK_EQ_STR(h->path, "/v2/ratings?x=1");
    CHECK_EQ_STR(zt_http_head_get(h, "x-canary"), "true");
    CHECK(zt_http_head_get(h, "x-debug") == NULL);
    h = req("POST", "/api/ratings");
    zt_route_select(t, &reviews, h, 0, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_NOT_FOUND);

    /* GRPCRoute: methods become paths. */
    static const struct {
        const char *path, *env, *want;
    } grpc[] = {
        {"/echo.Echo/Ping", NULL, "echo-ping"},
        {"/echo.Echo/Other", NULL, "echo-svc"},
        {"/other.Svc/Stream", NULL, "echo-stream"},
        {"/echo.Echo/Stream", NULL, "echo-svc"},
        {"/echoXEcho/GetA", "canary", NULL},
        {"/echo.X/GetA", "canary", "echo-re"},
        {"/echo.X/GetA", NULL, NULL},
        {"/echo.Echox/Ping", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(grpc) / sizeof(grpc[0]); i++) {
        h = req("POST", grpc[i].path);
        if (grpc[i].env)
            zt_http_head_add(h, "x-env", 5, grpc[i].env, strlen(grpc[i].env));
        zt_route_select(t, &echo, h, 0, &res);
        if ((res.backend == NULL) != (grpc[i].want == NULL))
            fprintf(stderr, "  grpc case %zu: %s\n", i, zt_route_outcome_str(res.outcome));
        if (grpc[i].want) {
            CHECK(res.backend != NULL);
            CHECK_EQ_STR(res.backend->name, grpc[i].want);
        } else {
            CHECK_EQ_INT(res.outcome, ZT_ROUTE_NOT_FOUND);
        }
    }
    zt_http_head_cleanup(h);
    zt_route_errors_cleanup(&errs);
    zt_route_table_unref(t);
}

/* One HTTPRoute whose rule starts on line 11 ("  - " + body). */
static const char HEAD[] = "apiVersion: gateway.networking.k8s.io/v1\n" /* 1 */
                           "kind: HTTPRoute\n"                          /* 2 */
                           "metadata:\n"                                /* 3 */
                           "  name: r\n"                                /* 4 */
                           "spec:\n"                                    /* 5 */
                           "  parentRefs:\n"                            /* 6 */
                           "  - kind: Service\n"                        /* 7 */
                           "    group: \"\"\n"                          /* 8 */
                           "    name: svc\n"                            /* 9 */
                           "  rules:\n"                                 /* 10 */
                           "  - ";                                      /* 11 */

static void test_error_paths(void)
{
    static const struct {
        const char *rule, *want;
    } cases[] = {
        {"matches:\n    - path:\n        type: Foo\n",
         "t.yaml:13: HTTPRoute default/r: spec.rules[0].matches[0].path.type: \"Foo\" is not "
         "Exact, PathPrefix or RegularExpression"},
        {"matches:\n    - path:\n        type: RegularExpression\n        value: \"/a(b\"\n",
         "t.yaml:14: HTTPRoute default/r: spec.rules[0].matches[0].path.value: invalid regex: "
         "missing closing parenthesis at offset 4"},
        {"matches:\n    - path: {value: foo}\n",
         "t.yaml:12: HTTPRoute default/r: spec.rules[0].matches[0].path.value: must start with"},
        {"matches:\n    - path: {value: /a/../b}\n", "spec.rules[0].matches[0].path.value: must "
                                                     "not contain \".\" or \"..\" segments"},
        {"matches:\n    - headers:\n      - name: x\n        type: RegularExpression\n"
         "        value: \"(?=x)\"\n",
         "t.yaml:15: HTTPRoute default/r: spec.rules[0].matches[0].headers[0].value: lookaround"},
        {"matches:\n    - headers:\n      - name: bad name\n        value: x\n",
         "t.yaml:13: HTTPRoute default/r: spec.rules[0].matches[0].headers[0].name: \"bad name\" "
         "is not a header name"},
        {"matches:\n    - queryParams:\n      - name: q\n",
         "t.yaml:13: HTTPRoute default/r: spec.rules[0].matches[0].queryParams[0].value: "
         "required"},
        {"matches:\n    - method: FETCH\n",
         "t.yaml:12: HTTPRoute default/r: spec.rules[0].matches[0].method: \"FETCH\" is not"},
        {"backendRefs:\n    - name: b\n",
         "t.yaml:12: HTTPRoute default/r: spec.rules[0].backendRefs[0].port: required for a "
         "Service"},
        {"backendRefs:\n    - name: b\n      port: 80\n      weight: -1\n",
         "t.yaml:14: HTTPRoute default/r: spec.rules[0].backendRefs[0].weight: expected an "
         "integer, found \"-1\""},
        {"backendRefs:\n    - {name: b, port: 70000}\n",
         "spec.rules[0].backendRefs[0].port: 70000 is out of range (1..65535)"},
        {"backendRefs:\n    - {name: b, port: 80, filters: []}\n",
         "spec.rules[0].backendRefs[0].filters: per-backend filters are not supported"},
        {"timeouts:\n      request: 10 s\n",
         "t.yaml:12: HTTPRoute default/r: spec.rules[0].timeouts.request: \"10 s\" is not a "
         "duration"},
        {"timeouts: {request: 1s, backendRequest: 2s}\n",
         "spec.rules[0].timeouts.backendRequest: longer than timeouts.request"},
        {"timeouts: {request: 1d}\n", "spec.rules[0].timeouts.request: \"1d\" is not a duration"},
        {"timeouts: {request: 1h1h1h1h1h}\n", "spec.rules[0].timeouts.request: \"1h1h1h1h1h\""},
        {"retry:\n      codes: [503, 200]\n",
         "t.yaml:12: HTTPRoute default/r: spec.rules[0].retry.codes[1]: \"200\" is not a status "
         "code 400..599"},
        {"retry: {attempts: x}\n", "spec.rules[0].retry.attempts: expected an integer"},
        {"filters:\n    - type: RequestRedirect\n      requestRedirect:\n        statusCode: 305\n",
         "t.yaml:14: HTTPRoute default/r: spec.rules[0].filters[0].requestRedirect.statusCode: "
         "305 is not 301, 302, 303, 307 or 308"},
        {"filters:\n    - type: RequestRedirect\n      requestRedirect: {scheme: ftp}\n",
         "spec.rules[0].filters[0].requestRedirect.scheme: \"ftp\" is not http or https"},
        {"filters:\n    - type: RequestRedirect\n      requestRedirect: {}\n"
         "    - type: URLRewrite\n      urlRewrite: {hostname: a.b}\n",
         "t.yaml:12: HTTPRoute default/r: spec.rules[0].filters: RequestRedirect and URLRewrite "
         "cannot be used together"},
        {"matches:\n    - path: {type: Exact, value: /a}\n    filters:\n    - type: URLRewrite\n"
         "      urlRewrite:\n        path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}\n",
         "t.yaml:11: HTTPRoute default/r: spec.rules[0].filters: ReplacePrefixMatch needs "
         "PathPrefix matches (matches[0] is not)"},
        {"filters:\n    - type: URLRewrite\n      urlRewrite:\n        path: {type: "
         "ReplaceFullPath, replacePrefixMatch: /b}\n",
         "spec.rules[0].filters[0].urlRewrite.path.replaceFullPath: required"},
        {"filters:\n    - type: URLRewrite\n      urlRewrite:\n        path: {type: "
         "ReplacePrefixMatch, replacePrefixMatch: x}\n",
         "t.yaml:14: HTTPRoute default/r: "
         "spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch: must start with \"/\""},
        {"filters:\n    - type: URLRewrite\n      urlRewrite: {hostname: \"a b\"}\n",
         "spec.rules[0].filters[0].urlRewrite.hostname: \"a b\" is not a hostname"},
        {"filters:\n    - type: CORS\n      cors: {}\n",
         "t.yaml:12: HTTPRoute default/r: spec.rules[0].filters[0].type: filter type CORS is not "
         "supported"},
        {"filters:\n    - type: RequestHeaderModifier\n      urlRewrite: {}\n",
         "t.yaml:13: HTTPRoute default/r: spec.rules[0].filters[0].urlRewrite: not allowed with "
         "type RequestHeaderModifier"},
        {"filters:\n    - type: RequestHeaderModifier\n",
         "t.yaml:12: HTTPRoute default/r: spec.rules[0].filters[0].requestHeaderModifier: "
         "required for type RequestHeaderModifier"},
        {"filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n"
         "        set:\n        - name: x\n          value: \"a\\r\\nb\"\n",
         "t.yaml:16: HTTPRoute default/r: "
         "spec.rules[0].filters[0].requestHeaderModifier.set[0].value: longer than 4096 bytes "
         "or contains control characters"},
        {"filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {remove: "
         "[\":path\"]}\n",
         "spec.rules[0].filters[0].requestHeaderModifier.remove[0]: \":path\" is not a header "
         "name"},
        {"filters:\n    - {type: ResponseHeaderModifier, responseHeaderModifier: {}}\n"
         "    - {type: ResponseHeaderModifier, responseHeaderModifier: {}}\n",
         "t.yaml:13: HTTPRoute default/r: spec.rules[0].filters[1].type: ResponseHeaderModifier "
         "given twice in one rule"},
        {"filters:\n    - type: RequestMirror\n      requestMirror:\n        backendRef: {name: m, "
         "port: 80}\n        percent: 10\n        fraction: {numerator: 1}\n",
         "spec.rules[0].filters[0].requestMirror.fraction: not allowed with percent"},
        {"filters:\n    - type: RequestMirror\n      requestMirror:\n        fraction: "
         "{numerator: 1}\n",
         "spec.rules[0].filters[0].requestMirror.backendRef: required"},
        {"matches: {path: /}\n",
         "t.yaml:11: HTTPRoute default/r: spec.rules[0].matches: expected a list, found a "
         "mapping"},
        {"matches: []\n    matches: []\n",
         "t.yaml:12: HTTPRoute default/r: spec.rules[0].matches: duplicate key (first at line "
         "11)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[2048];
        struct zt_route_errors errs = {0};
        snprintf(yaml, sizeof(yaml), "%s%s", HEAD, cases[i].rule);
        struct zt_route_table *t = load(yaml, &errs, NULL);
        bool found = errs.n_errors == 1;
        for (size_t j = 0; j < errs.n && found; j++)
            found = errs.v[j].is_warning || strstr(errs.v[j].msg, cases[i].want) != NULL;
        if (!found) {
            fprintf(stderr, "  case %zu: want \"%s\", got:\n", i, cases[i].want);
            dump(&errs);
        }
        CHECK(found);
        CHECK_EQ_INT(zt_route_table_count(t), 0);
        zt_route_errors_cleanup(&errs);
        zt_route_table_unref(t);
    }
}

static void test_object_errors(void)
{
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"apiVersion: gateway.networking.k8s.io/v2\nkind: HTTPRoute\nmetadata: {name: r}\n",
         "t.yaml:1: HTTPRoute: apiVersion: \"gateway.networking.k8s.io/v2\" is not a supported "
         "version of HTTPRoute"},
        {"apiVersion: gateway.networking.k8s.io/v1beta1\nkind: GRPCRoute\nmetadata: {name: r}\n",
         "is not a supported version of GRPCRoute"},
        {"kind: HTTPRoute\nmetadata: {name: r}\n", "t.yaml:1: HTTPRoute: apiVersion: required"},
        {"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {namespace: x}\n",
         "t.yaml:3: HTTPRoute: metadata.name: required"},
        {"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n",
         "t.yaml:1: HTTPRoute default/r: spec: required"},
        {"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
         "spec:\n  parentRefs:\n  - {kind: Service, group: \"\", name: s, port: 0}\n",
         "t.yaml:6: HTTPRoute default/r: spec.parentRefs[0].port: 0 is out of range"},
        {"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
         "spec:\n  parentRefs:\n  - {kind: Service, group: \"\"}\n",
         "spec.parentRefs[0].name: required"},
        {"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\n"
         "spec:\n  rules:\n  - matches:\n    - method: {service: \"a/b\"}\n",
         "t.yaml:7: GRPCRoute default/g: spec.rules[0].matches[0].method.service: \"a/b\" is not "
         "a gRPC service name"},
        {"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\n"
         "spec:\n  rules:\n  - matches:\n    - method: {type: Exact}\n",
         "t.yaml:7: GRPCRoute default/g: spec.rules[0].matches[0].method: one of service and "
         "method is required"},
        {"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\n"
         "spec:\n  rules:\n  - matches:\n    - method: {type: RegularExpression, method: \"(\"}\n",
         "spec.rules[0].matches[0].method: invalid regex: missing closing parenthesis"},
        {"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\n"
         "spec:\n  rules:\n  - filters:\n    - {type: URLRewrite, urlRewrite: {}}\n",
         "spec.rules[0].filters[0].type: filter type URLRewrite is not supported in a GRPCRoute"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct zt_route_errors errs = {0};
        struct zt_route_table *t = load(cases[i].yaml, &errs, NULL);
        bool found = false;
        for (size_t j = 0; j < errs.n && !found; j++)
            found = !errs.v[j].is_warning && strstr(errs.v[j].msg, cases[i].want) != NULL;
        if (!found) {
            fprintf(stderr, "  case %zu: want \"%s\", got:\n", i, cases[i].want);
            dump(&errs);
        }
        CHECK(found);
        CHECK_EQ_INT(zt_route_table_count(t), 0);
        zt_route_errors_cleanup(&errs);
        zt_route_table_unref(t);
    }
}

static const char MIXED[] =
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"                /* 1-2 */
    "metadata: {name: good1, namespace: ns}\n"                                   /* 3 */
    "spec:\n  parentRefs: [{kind: Service, group: \"\", name: a}]\n"             /* 4-5 */
    "  rules: [{backendRefs: [{name: a1, port: 80}]}]\n"                         /* 6 */
    "---\n"                                                                      /* 7 */
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"                /* 8-9 */
    "metadata: {name: bad, namespace: ns}\n"                                     /* 10 */
    "spec:\n  parentRefs: [{kind: Service, group: \"\", name: b}]\n"             /* 11-12 */
    "  rules:\n  - backendRefs: [{name: b1, port: 80, weight: lots}]\n"          /* 13-14 */
    "---\n"                                                                      /* 15 */
    "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"                  /* 16-17 */
    "metadata: {name: waypoint}\nspec: {gatewayClassName: istio-waypoint}\n"     /* 18-19 */
    "---\n"                                                                      /* 20 */
    "# empty document\n"                                                         /* 21 */
    "---\n"                                                                      /* 22 */
    "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\n"           /* 23-24 */
    "metadata: {name: good2, namespace: ns}\n"                                   /* 25 */
    "spec:\n  parentRefs: [{kind: Service, group: \"\", name: b}]\n"             /* 26-27 */
    "  rules: [{backendRefs: [{name: b2, port: 80}], sessionPersistence: {}}]\n" /* 28 */
    "---\n"                                                                      /* 29 */
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"                /* 30-31 */
    "metadata: {name: good1, namespace: ns}\n"                                   /* 32 */
    "spec: {}\n";                                                                /* 33 */

static void test_bad_next_to_good(void)
{
    struct zt_route_errors errs = {0};
    int rc;
    struct zt_route_table *t = load(MIXED, &errs, &rc);
    struct zt_route_target a = {"ns", "a", 80, NULL}, b = {"ns", "b", 80, NULL};
    struct zt_route_result res;
    if (errs.n != 4)
        dump(&errs);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(zt_route_table_count(t), 2);
    CHECK_EQ_INT(errs.n_errors, 2);
    CHECK_EQ_INT(errs.n_warnings, 2);
    CHECK_EQ_STR(errs.v[0].msg, "t.yaml:14: HTTPRoute ns/bad: spec.rules[0].backendRefs[0].weight: "
                                "expected an integer, found \"lots\"");
    CHECK(errs.v[1].is_warning);
    CHECK_EQ_STR(errs.v[1].msg, "t.yaml:28: HTTPRoute ns/good2: spec.rules[0].sessionPersistence: "
                                "unknown field, ignored");
    CHECK_EQ_STR(errs.v[2].msg, "t.yaml:33: HTTPRoute ns/good1: spec.parentRefs: no parents: "
                                "the route attaches to nothing");
    CHECK_EQ_STR(errs.v[3].msg,
                 "t.yaml:30: HTTPRoute ns/good1: metadata.name: duplicate HTTPRoute ns/good1");
    zt_route_select(t, &a, req("GET", "/"), 0, &res);
    CHECK(res.backend && strcmp(res.backend->name, "a1") == 0);
    zt_route_select(t, &b, req("GET", "/"), 0, &res);
    CHECK(res.backend && strcmp(res.backend->name, "b2") == 0);
    zt_route_errors_cleanup(&errs);
    zt_route_table_unref(t);
}

static void test_parents(void)
{
    static const char yaml[] =
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        "metadata: {name: r, namespace: istio-system}\n"
        "spec:\n"
        "  parentRefs:\n"
        "  - name: waypoint\n"                                             /* Gateway by default */
        "  - {kind: ServiceEntry, group: networking.istio.io, name: se}\n" /* line 7 */
        "  - {kind: Service, group: \"\", name: s, sectionName: http}\n"   /* line 8 */
        "  - {kind: Service, group: \"\", name: p, namespace: prod, port: 8080}\n"
        "  rules:\n"
        "  - matches: [{path: {type: Exact, value: /x}}]\n"
        "    backendRefs:\n"
        "    - {name: x, port: 80}\n"
        "    - {kind: Backend, group: example.com, name: y, weight: 1}\n"; /* line 14 */
    struct zt_route_errors errs = {0};
    struct zt_route_table *t = load(yaml, &errs, NULL);
    struct zt_route_target any = {"default", "any", 1, NULL}, p8080 = {"prod", "p", 8080, NULL},
                           p80 = {"prod", "p", 80, NULL};
    struct zt_route_result res;
    if (errs.n != 2)
        dump(&errs);
    CHECK_EQ_INT(errs.n_errors, 0);
    CHECK_EQ_INT(errs.n_warnings, 2);
    CHECK(strstr(errs.v[0].msg, "t.yaml:7: HTTPRoute istio-system/r: spec.parentRefs[1]: parent "
                                "kind networking.istio.io/ServiceEntry is not supported") != NULL);
    CHECK(strstr(errs.v[1].msg, "t.yaml:14: HTTPRoute istio-system/r: "
                                "spec.rules[0].backendRefs[1]: kind example.com/Backend") != NULL);
    zt_route_select(t, &any, req("GET", "/x"), 0, &res);
    CHECK(res.backend && strcmp(res.backend->name, "x") == 0);
    zt_route_select(t, &any, req("GET", "/x"), 1, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_NO_BACKEND); /* the unsupported backend's share */
    zt_route_select(t, &p8080, req("GET", "/x"), 0, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_FORWARD);
    zt_route_select(t, &p80, req("GET", "/y"), 0, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_NOT_FOUND); /* the Gateway parent's rules still apply */
    /* sectionName names the service's port. */
    struct zt_route_target s_http = {"istio-system", "s", 1, "http"},
                           s_grpc = {"istio-system", "s", 1, "grpc"};
    zt_route_select(t, &s_http, req("GET", "/y"), 0, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_NOT_FOUND);
    zt_route_select(t, &s_grpc, req("GET", "/x"), 0, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_FORWARD); /* the Gateway parent */
    CHECK(res.route->parents[1].section != NULL);
    CHECK_EQ_STR(res.route->parents[1].section, "http");
    zt_route_errors_cleanup(&errs);
    zt_route_table_unref(t);
}

static void test_syntax_error_and_lists(void)
{
    static const char yaml[] =
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        "metadata: &m {name: r1}\nspec: {parentRefs: [{kind: Service, group: \"\", name: s}]}\n"
        "---\n"
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n"
        "  metadata: &m {name: r2}\n  spec: {}\n" /* the same anchor name, another document */
        "- {apiVersion: v1, kind: ConfigMap}\n"
        "---\n"
        "a: [b\n";
    struct zt_route_errors errs = {0};
    int rc;
    struct zt_route_table *t = load(yaml, &errs, &rc);
    if (errs.n != 2)
        dump(&errs);
    CHECK_EQ_INT(rc, ZT_E_CONFIG);
    CHECK_EQ_INT(zt_route_table_count(t), 2);
    CHECK_EQ_INT(errs.n_errors, 1);
    CHECK_EQ_INT(errs.n, 2); /* and r2's "no parents" warning */
    CHECK(strncmp(errs.v[1].msg, "t.yaml:16: YAML syntax error", 28) == 0);
    zt_route_errors_cleanup(&errs);
    zt_route_table_unref(t);
}

static void test_empty_prefix_replacement(void)
{
    static const char yaml[] =
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        "metadata: {name: strip}\n"
        "spec:\n"
        "  parentRefs: [{kind: Service, group: \"\", name: s}]\n"
        "  rules:\n"
        "  - matches: [{path: {value: /api}}]\n"
        "    filters:\n"
        "    - type: URLRewrite\n"
        "      urlRewrite:\n"
        "        path: {type: ReplacePrefixMatch, replacePrefixMatch: \"\"}\n"
        "    backendRefs: [{name: s, port: 80}]\n";
    struct zt_route_errors errs = {0};
    struct zt_route_table *t = load(yaml, &errs, NULL);
    struct zt_route_target s = {"default", "s", 80, NULL};
    struct zt_route_result res;
    struct zt_http_head *h = req("GET", "/api/v1/x");
    if (errs.n)
        dump(&errs);
    CHECK_EQ_INT(errs.n, 0);
    zt_route_select(t, &s, h, 0, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_FORWARD);
    CHECK_EQ_INT(zt_route_apply_request(res.filters, res.match, h), 0);
    CHECK_EQ_STR(h->path, "/v1/x");
    zt_route_errors_cleanup(&errs);
    zt_route_table_unref(t);
}

/* Aliases repeating a large subtree hit the work budget, not the CPU: 16
 * rules x 64 matches x 16 regex headers from a few hundred bytes. */
static void test_alias_budget(void)
{
    char yaml[8192];
    size_t at = 0;
    struct zt_route_errors errs = {0};
    at += (size_t)snprintf(yaml + at, sizeof(yaml) - at,
                           "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
                           "metadata: {name: bomb}\nspec:\n  rules:\n  - &r\n    matches:\n"
                           "    - &m\n      headers:\n");
    for (int i = 0; i < 16; i++)
        at += (size_t)snprintf(yaml + at, sizeof(yaml) - at,
                               "      - {name: h%d, type: RegularExpression, value: \"(a|b)*c\"}\n",
                               i);
    for (int i = 1; i < 64; i++)
        at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "    - *m\n");
    for (int i = 1; i < 16; i++)
        at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "  - *r\n");
    CHECK(at < sizeof(yaml));
    struct zt_route_table *t = load(yaml, &errs, NULL);
    CHECK_EQ_INT(errs.n_errors, 1);
    CHECK(errs.n == 2 && errs.v[0].is_warning && !errs.v[1].is_warning); /* no parents */
    CHECK(strstr(errs.v[1].msg, "HTTPRoute default/bomb: ") != NULL);
    CHECK(strstr(errs.v[1].msg, "document too complex") != NULL);
    CHECK_EQ_INT(zt_route_table_count(t), 0);
    zt_route_errors_cleanup(&errs);
    zt_route_table_unref(t);
}

static void test_load_file(void)
{
    char path[] = "/tmp/zt-routes-......";
    int fd;
    memset(path + sizeof(path) - 7, 'X', 6); /* mkstemp's template */
    fd = mkstemp(path);
    struct zt_route_errors errs = {0};
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_table *t;
    CHECK(fd >= 0);
    CHECK(write(fd, REAL, strlen(REAL)) == (ssize_t)strlen(REAL));
    close(fd);
    CHECK_EQ_INT(zt_config_routes_load_file(b, path, &errs), 0);
    unlink(path);
    CHECK_EQ_INT(zt_config_routes_load_file(b, path, &errs), -ENOENT);
    CHECK_EQ_INT(errs.n, 1);
    CHECK(strstr(errs.v[0].msg, path) != NULL);
    t = zt_route_builder_finish(b);
    CHECK_EQ_INT(zt_route_table_count(t), 2);
    zt_route_errors_cleanup(&errs);
    zt_route_table_unref(t);
}

int main(void)
{
    RUN(test_real_routes);
    RUN(test_error_paths);
    RUN(test_object_errors);
    RUN(test_bad_next_to_good);
    RUN(test_parents);
    RUN(test_syntax_error_and_lists);
    RUN(test_empty_prefix_replacement);
    RUN(test_alias_budget);
    RUN(test_load_file);
    return TEST_REPORT();
}
