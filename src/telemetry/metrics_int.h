/* Private to src/telemetry: what metrics.c (the registry, the other
 * families and the exposition) shares with request_metrics.c (the
 * waypoint's HTTP request families). */
#ifndef ZT_TELEMETRY_METRICS_INT_H
#define ZT_TELEMETRY_METRICS_INT_H

#include "base/buf.h"
#include "telemetry/metrics.h"

#include <stddef.h>
#include <stdint.h>

/* The request series of a registry, sharded like its TCP series. */
struct zt_request_metrics;

/* Never NULL (aborts on OOM); nshards >= 1. */
struct zt_request_metrics *zt_request_metrics_new(unsigned nshards);
void zt_request_metrics_free(struct zt_request_metrics *r);
/* The registry's request series (made by zt_metrics_new). */
struct zt_request_metrics *zt_metrics_requests(struct zt_metrics *m);
/* Appends the four request families (none while no series exists). */
void zt_request_metrics_render(struct zt_request_metrics *r, struct zt_buf *out);
/* Appends the cap's gauge and two counters (always). */
void zt_request_metrics_render_cap(struct zt_request_metrics *r, struct zt_buf *out);

/* The exposition helpers of metrics.c, for the request families (the
 * header and counter ones are in metrics.h). */
/* A quoted label value: NULL or "" as "unknown", escaped and capped. */
void zt_metrics_put_label_value(struct zt_buf *b, const char *v);
/* "name{labels} value\n"; labels may be NULL. */
void zt_metrics_put_sample(struct zt_buf *b, const char *name, const char *labels,
                           const char *value);
/* FNV-1a, 64 bit. */
uint64_t zt_metrics_hash(const uint8_t *p, size_t n);

#endif
