/* bench/authz_l7_bench: the cost of one L7 AuthorizationPolicy check at the
 * waypoint (issue 12) with 0, 10 and 1000 policies in the same run, in two
 * layouts: "spread", the policies on 100 services of which the request's
 * is one (what a mesh looks like), and "one_service", every policy on the
 * request's service (the worst case: each is visited). Policies mix ALLOW,
 * DENY and AUDIT rules on principals, methods, path prefixes and a header;
 * the request matches none of them but the last ALLOW, so every attached
 * rule is evaluated. Built like the unit tests: make build/bench/authz_l7_bench
 *
 * Prints one row per case:
 *   authz_l7 layout=spread|one_service policies=N attached=N ns_per_check=X */
#include "authz/l7.h"
#include "config/authz.h"
#include "http/head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static struct zt_authz_l7_set *build(int n, bool one_service)
{
    size_t cap = 4096 + (size_t)n * 512, len = 0;
    char *y = malloc(cap);
    struct zt_authz_l7_set *s = zt_authz_l7_set_new(NULL);
    struct zt_route_errors errs = {0};
    static const char *const actions[] = {"ALLOW", "DENY", "AUDIT"};
    y[0] = '\0';
    for (int i = 0; i < n; i++) {
        char svc[32];
        snprintf(svc, sizeof(svc), one_service || i % 100 == 0 ? "svc" : "svc%d", i % 100);
        len += (size_t)snprintf(
            y + len, cap - len,
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            "metadata: {name: p%d, namespace: ns1}\n"
            "spec:\n  targetRefs: [{kind: Service, name: %s}]\n  action: %s\n"
            "  rules:\n  - from: [{source: {principals: [\"cluster.local/ns/x%d/*\"]}}]\n"
            "    to: [{operation: {methods: [POST], paths: [\"/p%d/*\"]}}]\n"
            "  - when: [{key: \"request.headers[x-user]\", values: [\"u%d\"]}]\n",
            i, svc, i + 1 == n ? "ALLOW" : actions[i % 3], i, i, i);
    }
    if (n) /* the last policy allows the request */
        len += (size_t)snprintf(y + len, cap - len,
                                "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                                "metadata: {name: zz, namespace: ns1}\nspec:\n"
                                "  targetRefs: [{kind: Service, name: svc}]\n"
                                "  rules: [{to: [{operation: {paths: [\"/api/*\"]}}]}]\n");
    if (zt_config_authz_load_string(s, "bench.yaml", y, len, &errs) || errs.n) {
        fprintf(stderr, "authz_l7_bench: %s\n", errs.n ? errs.v[0].msg : "load failed");
        exit(1);
    }
    zt_authz_l7_set_seal(s);
    zt_route_errors_cleanup(&errs);
    free(y);
    return s;
}

int main(void)
{
    static const int counts[] = {0, 10, 1000};
    for (int layout = 0; layout < 2; layout++)
        for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
            int n = counts[c], iters = 200000, denied = 0;
            struct zt_authz_l7_set *s = build(n, layout == 1);
            struct zt_http_head h;
            struct zt_authz_l7_request rq = {0};
            struct zt_authz_l7_result res;
            double t;
            zt_http_head_init(&h, false);
            zt_http_head_set_part(&h, &h.method, "GET", 3);
            zt_http_head_set_part(&h, &h.path, "/api/v1/items?x=1", 17);
            zt_http_head_set_part(&h, &h.authority, "svc.ns1", 7);
            zt_http_head_add(&h, "x-user", 6, "nobody", 6);
            rq.head = &h;
            rq.source_principal = "spiffe://cluster.local/ns/client/sa/default";
            zt_ip_parse("10.0.0.1", &rq.source_ip);
            rq.destination_port = 80;
            rq.gateway_ns = "ns1";
            rq.gateway_name = "waypoint";
            rq.service_ns = "ns1";
            rq.service_name = "svc";
            t = now();
            for (int i = 0; i < iters; i++)
                denied += zt_authz_l7_check(s, &rq, &res) != 0;
            t = now() - t;
            if (denied) {
                fprintf(stderr, "authz_l7_bench: the request was denied\n");
                return 1;
            }
            printf("authz_l7 layout=%s policies=%d attached=%d ns_per_check=%.0f\n",
                   layout ? "one_service" : "spread", n,
                   n == 0 ? 0 : (layout ? n : (n + 99) / 100) + 1, t / iters * 1e9);
            zt_http_head_cleanup(&h);
            zt_authz_l7_set_unref(s);
        }
    return 0;
}
