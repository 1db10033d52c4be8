/* Access-log records, one per proxied connection, in the field names and
 * order of Istio's ztunnel (wire facts §7.2). */
#ifndef ZT_TELEMETRY_ACCESSLOG_H
#define ZT_TELEMETRY_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* All strings borrowed; NULL or "" fields are omitted. */
struct zt_accesslog {
    const char *src_addr;
    const char *src_workload;
    const char *src_namespace;
    const char *src_identity;
    const char *src_cluster;
    const char *dst_addr;
    const char *dst_hbone_addr;
    const char *dst_service;
    const char *dst_workload;
    const char *dst_namespace;
    const char *dst_identity;
    const char *dst_cluster;
    const char *direction; /* "outbound" | "inbound" */
    uint64_t bytes_sent;
    uint64_t bytes_recv;
    uint64_t duration_ms;
    const char *error;
};

/* Formats the `k=v k=v` part into buf (always NUL-terminated); values with
 * spaces, quotes or control characters are quoted and escaped. Returns the
 * length written. */
size_t zt_accesslog_format(const struct zt_accesslog *r, char *buf, size_t cap);

/* Logs "connection complete" (INFO, or ERROR when r->error is set). */
void zt_accesslog_emit(const struct zt_accesslog *r);

/* Logs "connection opened" (DEBUG): the fields known at the start. */
void zt_accesslog_emit_opened(const struct zt_accesslog *r);

/* Logs "connection failed" (WARN) for early denials: only addresses,
 * direction and error. */
void zt_accesslog_emit_failed(const char *src_addr, const char *dst_addr, const char *direction,
                              const char *error);

#endif
