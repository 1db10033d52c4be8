/* Fuzzes the waypoint's RateLimit reader and engine: the input is a file
 * of documents, and its first line is also a header value and a source
 * principal (keys of any length and bytes). Invariants: every diagnostic
 * names the file first; a syntax error is the only way the load fails; a
 * check's return agrees with its result; what the result reports stays
 * within the deciding policy's limits; at a frozen clock a bucket never
 * passes more than its burst. */
#include "base/err.h"
#include "base/log.h"
#include "config/ratelimit.h"
#include "http/head.h"
#include "ratelimit/ratelimit.h"
#include "yaml_errs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    return 0;
}

static void check_result(int rc, const struct zt_ratelimit_result *res)
{
    if ((rc != 0 && rc != ZT_E_RATE_LIMITED) || res->limited != (rc != 0))
        __builtin_trap();
    if (!res->applied) {
        if (rc || res->policy || res->n_applied)
            __builtin_trap();
        return;
    }
    if (!res->policy || !res->n_applied || res->limit != res->policy->requests ||
        res->burst != res->policy->burst || res->remaining >= res->burst ||
        (res->limited && res->remaining) || res->reset_s != (res->reset_ms + 999) / 1000 ||
        res->reset_ms > zt_ratelimit_unit_ms(res->unit))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char name[] = "fuzz.yaml";
    static const uint64_t clocks[] = {0, 0, 1, 999, 60000, UINT64_MAX - 1, UINT64_MAX};
    const char *nl = memchr(data, '\n', size);
    size_t flen = nl ? (size_t)(nl - (const char *)data) : size;
    char *first = strndup((const char *)data, flen > 8192 ? 8192 : flen);
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    struct zt_route_errors errs = {0};
    int rc = zt_config_ratelimit_load_string(s, name, (const char *)data, size, &errs);
    struct zt_http_head h;

    fuzz_check_load(name, rc, &errs);
    zt_ratelimit_set_seal(s);
    zt_http_head_init(&h, false);
    zt_http_head_add(&h, "x-user-id", 9, first, strlen(first));
    zt_http_head_add(&h, "x-tenant", 8, "t1", 2);
    for (size_t i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++) {
        struct zt_ratelimit_request rq = {.gateway_ns = "default",
                                          .gateway_name = "waypoint",
                                          .service_ns = i & 1 ? "ns1" : "default",
                                          .service_name = "svc",
                                          .route_ns = "default",
                                          .route_name = "api",
                                          .rule_name = i & 2 ? "writes" : NULL,
                                          .route_is_grpc = i == 3,
                                          .source_principal = i & 4 ? first : NULL,
                                          .head = i == 2 ? NULL : &h};
        struct zt_ratelimit_result res;
        rc = zt_ratelimit_check(s, &rq, clocks[i], &res);
        check_result(rc, &res);
    }
    for (size_t k = 0; k < zt_ratelimit_set_count(s); k++) {
        struct zt_ratelimit_stats st;
        if (zt_ratelimit_set_stats(s, k, &st) != 0 || st.keys > zt_ratelimit_set_at(s, k)->max_keys)
            __builtin_trap();
    }
    /* A frozen clock (behind the one above: nothing refills): no more
     * passes than the burst of any policy that decided. */
    {
        struct zt_ratelimit_request rq = {.gateway_ns = "default", .gateway_name = "waypoint"};
        struct zt_ratelimit_result res;
        uint32_t passed = 0, burst = 0;
        for (int i = 0; i < 64; i++) {
            rc = zt_ratelimit_check(s, &rq, 5, &res);
            check_result(rc, &res);
            passed += rc == 0;
            if (res.applied && (!burst || res.burst < burst))
                burst = res.burst;
        }
        if ((passed && !burst && passed != 64) || (burst && passed > burst))
            __builtin_trap();
    }
    zt_http_head_cleanup(&h);
    free(first);
    zt_ratelimit_set_unref(s);
    zt_route_errors_cleanup(&errs);
    return 0;
}
