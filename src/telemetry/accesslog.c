#include "telemetry/accesslog.h"

#include "base/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The §7.2 fields in Istio's order as (key, value) pairs; `num` holds the
 * formatted numbers. Returns the number of pairs. */
static size_t to_kv(const struct zt_accesslog *r, const char *kv[34], char num[3][32])
{
    snprintf(num[0], sizeof(num[0]), "%" PRIu64, r->bytes_sent);
    snprintf(num[1], sizeof(num[1]), "%" PRIu64, r->bytes_recv);
    snprintf(num[2], sizeof(num[2]), "%" PRIu64 "ms", r->duration_ms);
    const char *pairs[] = {
        "src.addr",       r->src_addr,     "src.workload",   r->src_workload,   "src.namespace",
        r->src_namespace, "src.identity",  r->src_identity,  "src.cluster",     r->src_cluster,
        "dst.addr",       r->dst_addr,     "dst.hbone_addr", r->dst_hbone_addr, "dst.service",
        r->dst_service,   "dst.workload",  r->dst_workload,  "dst.namespace",   r->dst_namespace,
        "dst.identity",   r->dst_identity, "dst.cluster",    r->dst_cluster,    "direction",
        r->direction,     "bytes_sent",    num[0],           "bytes_recv",      num[1],
        "duration",       num[2],          "error",          r->error,
    };
    memcpy(kv, pairs, sizeof(pairs));
    return sizeof(pairs) / sizeof(pairs[0]) / 2;
}

size_t zt_accesslog_format(const struct zt_accesslog *r, char *buf, size_t cap)
{
    const char *kv[34];
    char num[3][32];
    size_t n = to_kv(r, kv, num);
    return zt_log_format_kv(buf, cap, kv, n);
}

void zt_accesslog_emit(const struct zt_accesslog *r)
{
    const char *kv[34];
    char num[3][32];
    size_t n = to_kv(r, kv, num);
    bool failed = r->error && *r->error;
    zt_log_kv(failed ? ZT_LOG_ERROR : ZT_LOG_INFO, "access", "connection complete", kv, n);
}

void zt_accesslog_emit_opened(const struct zt_accesslog *r)
{
    if (!zt_log_enabled(ZT_LOG_DEBUG))
        return;
    const char *kv[34];
    char num[3][32];
    size_t n = to_kv(r, kv, num);
    /* Opening: addresses, identities and direction; no counts yet. */
    zt_log_kv(ZT_LOG_DEBUG, "access", "connection opened", kv, n - 4);
}

void zt_accesslog_emit_failed(const char *src_addr, const char *dst_addr, const char *direction,
                              const char *error)
{
    const char *kv[] = {"src.addr",  src_addr,  "dst.addr", dst_addr,
                        "direction", direction, "error",    error};
    zt_log_kv(ZT_LOG_WARN, "access", "connection failed", kv, 4);
}
