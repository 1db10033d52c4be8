/* Fuzzes the HTTPRoute / GRPCRoute YAML loader: the input is a file of
 * documents. Invariants: every diagnostic names the file first; a syntax
 * error is the only way the load fails; the table built from whatever
 * loaded answers a few requests (which also runs fuzzed regexes). */
#include "base/err.h"
#include "base/log.h"
#include "config/routes.h"
#include "route/route.h"
#include "yaml_errs.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char name[] = "fuzz.yaml";
    static const char *const paths[] = {"/", "/a/b?q=1&r=x", "/pkg.Svc/Get", ""};
    struct zt_route_builder *b = zt_route_builder_new("default", "waypoint");
    struct zt_route_errors errs = {0};
    struct zt_route_table *t;
    int rc = zt_config_routes_load_string(b, name, (const char *)data, size, &errs);

    fuzz_check_load(name, rc, &errs);
    t = zt_route_builder_finish(b);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct zt_http_head h;
        struct zt_route_result res;
        struct zt_route_target tg = {"default", "svc", (uint16_t)(80 + i), NULL};
        zt_http_head_init(&h, false);
        zt_http_head_set_part(&h, &h.method, "GET", 3);
        zt_http_head_set_part(&h, &h.path, paths[i], strlen(paths[i]));
        zt_http_head_set_part(&h, &h.authority, "svc", 3);
        zt_http_head_add(&h, "x-a", 3, "ab", 2);
        zt_route_select(t, &tg, &h, (uint32_t)i * 7919u, &res);
        if (res.outcome == ZT_ROUTE_FORWARD)
            zt_route_apply_request(res.filters, res.match, &h);
        else if (res.outcome == ZT_ROUTE_REDIRECT) {
            char loc[256];
            int status;
            zt_route_redirect_location(&res.filters->redirect, res.match, &h, 80, loc, sizeof(loc),
                                       &status);
        }
        zt_http_head_cleanup(&h);
    }
    zt_route_table_unref(t);
    zt_route_errors_cleanup(&errs);
    return 0;
}
