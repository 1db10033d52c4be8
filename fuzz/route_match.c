/* Fuzzes route selection and the filters: a fixed table (every match kind,
 * filter and weight rule) is built once; each input is one request:
 *
 *   byte 0: the target (service and port), byte 1: rnd
 *   then "METHOD PATH\n" and "name: value\n" header lines.
 *
 * Invariants: selection always gives an outcome; a forward has a backend;
 * filters keep the head within its caps; a Location is NUL-terminated,
 * shorter than its buffer and free of control bytes. */
#include "base/err.h"
#include "base/log.h"
#include "config/routes.h"
#include "route/route.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct zt_route_table *table;

static const char ROUTES[] =
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
    "metadata: {name: r, namespace: default}\n"
    "spec:\n"
    "  parentRefs:\n"
    "  - {kind: Service, group: \"\", name: svc}\n"
    "  - {kind: Service, group: \"\", name: ported, port: 8080}\n"
    "  - {name: waypoint, namespace: mesh}\n"
    "  rules:\n"
    "  - matches:\n"
    "    - path: {type: Exact, value: /exact}\n"
    "    - path: {type: RegularExpression, value: \"/re/[a-z]+(/[0-9]{1,3})?\"}\n"
    "      headers: [{name: x-a, type: RegularExpression, value: \"(a|b)+\"}]\n"
    "    backendRefs: [{name: a, port: 80, weight: 3}, {name: b, port: 80, weight: 0},"
    " {name: c, port: 81}]\n"
    "  - matches:\n"
    "    - path: {value: /pre}\n"
    "      method: POST\n"
    "      queryParams: [{name: q, value: \"1\"}, {name: r, type: RegularExpression, value: "
    "\"x.*\"}]\n"
    "    filters:\n"
    "    - type: RequestHeaderModifier\n"
    "      requestHeaderModifier: {set: [{name: x-set, value: s}], add: [{name: x-add, value: "
    "a}], remove: [x-rm]}\n"
    "    - type: ResponseHeaderModifier\n"
    "      responseHeaderModifier: {add: [{name: x-resp, value: r}]}\n"
    "    - type: URLRewrite\n"
    "      urlRewrite: {hostname: rewritten.example, path: {type: ReplacePrefixMatch, "
    "replacePrefixMatch: /new/}}\n"
    "    - type: RequestMirror\n"
    "      requestMirror: {backendRef: {name: m, port: 80}, percent: 50}\n"
    "    backendRefs: [{name: d, port: 80}]\n"
    "    timeouts: {request: 10s, backendRequest: 1s}\n"
    "    retry: {attempts: 3, codes: [503]}\n"
    "  - matches: [{path: {value: /redir}}]\n"
    "    filters:\n"
    "    - type: RequestRedirect\n"
    "      requestRedirect: {scheme: https, path: {type: ReplacePrefixMatch, "
    "replacePrefixMatch: /}}\n"
    "  - matches: [{path: {value: /full}}]\n"
    "    filters:\n"
    "    - {type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: "
    "/f}}}\n"
    "    - type: RequestHeaderModifier\n"
    "      requestHeaderModifier: {add: [{name: x-add, value: a}]}\n"
    "    backendRefs: [{name: e, port: 80}, {kind: Other, group: x.io, name: f}]\n"
    "  - matches: [{headers: [{name: x-zero, value: \"1\"}]}]\n"
    "    backendRefs: [{name: z, port: 80, weight: 0}]\n"
    "---\n"
    "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n"
    "metadata: {name: g, namespace: default}\n"
    "spec:\n"
    "  parentRefs: [{kind: Service, group: \"\", name: svc}]\n"
    "  rules:\n"
    "  - matches: [{method: {service: pkg.Svc, method: Get}}, {method: {type: "
    "RegularExpression, method: \"L.*\"}}]\n"
    "    backendRefs: [{name: grpc, port: 9000}]\n";

static const struct zt_route_target targets[] = {
    {"default", "svc", 80, NULL},
    {"default", "ported", 8080, NULL},
    {"default", "ported", 9090, NULL},
    {"other", "nothing", 80, NULL},
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct zt_route_builder *b = zt_route_builder_new("mesh", "waypoint");
    struct zt_route_errors errs = {0};
    zt_log_set_level(ZT_LOG_ERROR);
    if (zt_config_routes_load_string(b, "fuzz.yaml", ROUTES, strlen(ROUTES), &errs) ||
        errs.n_errors)
        abort();
    zt_route_errors_cleanup(&errs);
    table = zt_route_builder_finish(b);
    if (zt_route_table_count(table) != 2)
        abort();
    return 0;
}

static size_t line_len(const uint8_t *p, size_t n)
{
    const uint8_t *nl = memchr(p, '\n', n);
    return nl ? (size_t)(nl - p) : n;
}

static void check_head(const struct zt_http_head *h)
{
    size_t bytes = 0;
    if (h->n_fields > ZT_HTTP_MAX_FIELDS || h->bytes > ZT_HTTP_HEAD_MAX)
        __builtin_trap();
    for (size_t i = 0; i < h->n_fields; i++)
        bytes += strlen(h->fields[i].name) + strlen(h->fields[i].value);
    if (bytes > h->bytes)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zt_http_head req, resp;
    struct zt_route_result res;
    const struct zt_route_target *tg;
    uint32_t rnd;
    size_t l, sp;

    if (size < 2)
        return 0;
    tg = &targets[data[0] % (sizeof(targets) / sizeof(targets[0]))];
    rnd = data[1];
    data += 2;
    size -= 2;
    zt_http_head_init(&req, false);
    l = line_len(data, size);
    for (sp = 0; sp < l && data[sp] != ' '; sp++)
        ;
    zt_http_head_set_part(&req, &req.method, (const char *)data, sp);
    if (sp < l)
        zt_http_head_set_part(&req, &req.path, (const char *)data + sp + 1, l - sp - 1);
    zt_http_head_set_part(&req, &req.scheme, "http", 4);
    zt_http_head_set_part(&req, &req.authority, "svc.default:80", 14);
    data += l < size ? l + 1 : l;
    size -= l < size ? l + 1 : l;
    while (size) {
        const uint8_t *colon;
        l = line_len(data, size);
        colon = memchr(data, ':', l);
        if (colon && colon > data) {
            size_t nl = (size_t)(colon - data), vo = nl + 1;
            while (vo < l && data[vo] == ' ')
                vo++;
            zt_http_head_add(&req, (const char *)data, nl, (const char *)data + vo, l - vo);
        }
        data += l < size ? l + 1 : l;
        size -= l < size ? l + 1 : l;
    }

    zt_route_select(table, tg, &req, rnd, &res);
    switch (res.outcome) {
    case ZT_ROUTE_FORWARD:
        if (!res.backend || !res.rule || res.backend->invalid || res.backend->weight == 0)
            __builtin_trap();
        if (zt_route_apply_request(res.filters, res.match, &req) == 0 && req.path &&
            req.path[0] != '/' && req.path[0] != '\0')
            __builtin_trap();
        check_head(&req);
        zt_http_head_init(&resp, true);
        zt_route_apply_response(res.filters, &resp);
        check_head(&resp);
        zt_http_head_cleanup(&resp);
        for (size_t i = 0; i < res.filters->n_mirrors; i++)
            (void)zt_route_mirror_hit(&res.filters->mirrors[i], rnd);
        break;
    case ZT_ROUTE_REDIRECT: {
        char loc[512];
        int status = 0;
        memset(loc, 'x', sizeof(loc));
        int rc = zt_route_redirect_location(&res.filters->redirect, res.match, &req, 80, loc,
                                            sizeof(loc), &status);
        if (memchr(loc, '\0', sizeof(loc)) == NULL)
            __builtin_trap();
        if (rc == 0 &&
            (!zt_route_header_value_ok(loc) || strncmp(loc, "https://", 8) != 0 || status != 302))
            __builtin_trap();
        break;
    }
    case ZT_ROUTE_DEFAULT:
    case ZT_ROUTE_NOT_FOUND:
        if (res.route || res.backend || res.retry.attempts != 2)
            __builtin_trap();
        break;
    case ZT_ROUTE_NO_BACKEND:
        if (res.backend || !res.rule)
            __builtin_trap();
        break;
    }
    zt_http_head_cleanup(&req);
    return 0;
}
