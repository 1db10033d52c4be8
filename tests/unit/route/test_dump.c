/* The route table's /config_dump: every part of a route in Gateway API
 * terms, the left-out count, and strings escaped whatever they hold. */
#include "test.h"
#include "base/alloc.h"
#include "config/routes.h"
#include "route/dump.h"

#include <string.h>

static const char yaml[] =
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: web, namespace: shop, creationTimestamp: \"2026-01-02T03:04:05Z\"}\n"
    "spec:\n"
    "  parentRefs: [{kind: Service, name: svc-web, port: 80}]\n"
    "  hostnames: [web.example.com]\n"
    "  rules:\n"
    "  - matches: [{path: {type: PathPrefix, value: /}, method: GET,\n"
    "               headers: [{name: x-q, value: \"a\\\"b\\\\c\\n\"}]}]\n"
    "    filters:\n"
    "    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: "
    "\"1\"}]}}\n"
    "    - {type: RequestMirror, requestMirror: {backendRef: {name: svc-shadow, port: 80}, "
    "percent: 25}}\n"
    "    backendRefs: [{name: svc-web, port: 80, weight: 3}, {name: svc-v2, port: 80, weight: 1}]\n"
    "    timeouts: {request: 2s}\n"
    "    retry: {attempts: 1, codes: [503], backoff: 50ms}\n"
    "---\n"
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: bad, namespace: shop}\n"
    "spec: {parentRefs: [{kind: Service, name: x}], rules: [{matches: 5}]}\n";

static void test_dump_yaml(void)
{
    struct zt_route_errors errs = {0};
    struct zt_route_builder *b = zt_route_builder_new("shop", "waypoint");
    zt_config_routes_load_string(b, "t.yaml", yaml, strlen(yaml), &errs);
    CHECK_EQ_INT((int)errs.n_errors, 1);
    zt_route_builder_set_left_out(b, errs.n_errors);
    struct zt_route_table *t = zt_route_builder_finish(b);
    json_t *d = zt_route_table_dump(t);
    char *s = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_error_t err;
    json_t *back = json_loads(s, 0, &err);
    CHECK(back != NULL);
    CHECK_EQ_INT((int)json_integer_value(json_object_get(back, "leftOut")), 1);
    json_t *routes = json_object_get(back, "routes");
    CHECK_EQ_INT((int)json_array_size(routes), 1);
    json_t *r = json_array_get(routes, 0);
    CHECK_EQ_STR(json_string_value(json_object_get(r, "kind")), "HTTPRoute");
    CHECK_EQ_STR(json_string_value(json_object_get(r, "namespace")), "shop");
    CHECK_EQ_STR(json_string_value(json_object_get(r, "creationTimestamp")),
                 "2026-01-02T03:04:05Z");
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(r, "hostnames"), 0)),
                 "web.example.com");
    json_t *p = json_array_get(json_object_get(r, "parentRefs"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(p, "kind")), "Service");
    CHECK_EQ_INT((int)json_integer_value(json_object_get(p, "port")), 80);
    json_t *rule = json_array_get(json_object_get(r, "rules"), 0);
    json_t *m = json_array_get(json_object_get(rule, "matches"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(m, "path"), "value")), "/");
    CHECK_EQ_STR(json_string_value(json_object_get(m, "method")), "GET");
    /* The quote, backslash and newline came back as they were. */
    CHECK_EQ_STR(json_string_value(
                     json_object_get(json_array_get(json_object_get(m, "headers"), 0), "value")),
                 "a\"b\\c\n");
    json_t *fs = json_object_get(rule, "filters");
    CHECK_EQ_INT((int)json_array_size(fs), 2);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(fs, 1), "type")),
                 "RequestMirror");
    json_t *fr =
        json_object_get(json_object_get(json_array_get(fs, 1), "requestMirror"), "fraction");
    CHECK_EQ_INT((int)json_integer_value(json_object_get(fr, "numerator")), 25);
    json_t *bs = json_object_get(rule, "backendRefs");
    CHECK_EQ_INT((int)json_integer_value(json_object_get(json_array_get(bs, 0), "weight")), 3);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(bs, 1), "name")), "svc-v2");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(rule, "timeouts"), "request")),
                 "2000ms");
    json_t *retry = json_object_get(rule, "retry");
    CHECK_EQ_INT((int)json_integer_value(json_object_get(retry, "attempts")), 1);
    CHECK_EQ_INT((int)json_integer_value(json_array_get(json_object_get(retry, "codes"), 0)), 503);
    CHECK_EQ_STR(json_string_value(json_object_get(retry, "backoff")), "50ms");
    json_decref(back);
    free(s);
    json_decref(d);
    zt_route_table_unref(t);
    zt_route_errors_cleanup(&errs);
}

/* A name that is not UTF-8 (possible from another loader) still gives
 * valid JSON; no table gives an empty list. */
static void test_dump_bytes_and_empty(void)
{
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_def d = {0};
    char err[128];
    d.ns = zt_xstrdup("ns");
    d.name = zt_xstrdup("a\xff\"b");
    CHECK_EQ_INT(zt_route_builder_add(b, &d, err, sizeof(err)), 0);
    struct zt_route_table *t = zt_route_builder_finish(b);
    json_t *j = zt_route_table_dump(t);
    char *s = json_dumps(j, JSON_COMPACT);
    json_error_t e;
    json_t *back = json_loads(s, 0, &e);
    CHECK(back != NULL);
    CHECK_EQ_STR(json_string_value(
                     json_object_get(json_array_get(json_object_get(back, "routes"), 0), "name")),
                 "a\\xff\"b");
    json_decref(back);
    free(s);
    json_decref(j);
    zt_route_table_unref(t);

    j = zt_route_table_dump(NULL);
    s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_EQ_STR(s, "{\"leftOut\":0,\"routes\":[]}");
    free(s);
    json_decref(j);
}

int main(void)
{
    RUN(test_dump_yaml);
    RUN(test_dump_bytes_and_empty);
    return TEST_REPORT();
}
