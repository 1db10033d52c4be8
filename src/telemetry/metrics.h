/* Prometheus metrics with Istio's names and labels (wire facts §7.1).
 *
 * Sharding: the registry has one shard per writer thread (each worker, plus
 * the control loop). A writer only touches its own shard: finding or adding
 * a label set takes that shard's mutex (once per connection), counting is a
 * relaxed atomic add on the series it holds. Rendering (the /metrics
 * scrape, any thread) takes each shard's mutex in turn and sums series with
 * equal labels across shards.
 *
 * Bounded label sets: a label set holding a value a peer chose (its
 * baggage) is a "peer series". There are at most ZT_METRICS_PEER_SERIES_MAX
 * of them per registry, split evenly among the shards. A series is held by
 * each connection counting into it; a peer series that nobody holds is idle,
 * and when a shard needs room for a new peer series it evicts its least
 * recently released idle one (its counts are gone: Prometheus sees the
 * series end, as after a restart) and counts the eviction. When every peer
 * series of the shard is held, the new connection is counted without the
 * peer's values (they render "unknown") and that is counted too. Series
 * whose labels all come from the configuration are bounded by it and are
 * never evicted, as in Istio's ztunnel.
 *
 * Rendering is the Prometheus text format (version 0.0.4): counters are
 * exposed as `<name>_total` with `# HELP` / `# TYPE` lines, label values are
 * escaped, empty values render as "unknown" as Istio does. */
#ifndef ZT_TELEMETRY_METRICS_H
#define ZT_TELEMETRY_METRICS_H

#include "base/buf.h"

#include <stdbool.h>
#include <stdint.h>

/* CommonTrafficLabels, in Istio's order. */
enum zt_tl {
    ZT_TL_REPORTER, /* "source" | "destination" */
    ZT_TL_SOURCE_WORKLOAD,
    ZT_TL_SOURCE_CANONICAL_SERVICE,
    ZT_TL_SOURCE_CANONICAL_REVISION,
    ZT_TL_SOURCE_WORKLOAD_NAMESPACE,
    ZT_TL_SOURCE_PRINCIPAL,
    ZT_TL_SOURCE_APP,
    ZT_TL_SOURCE_VERSION,
    ZT_TL_SOURCE_CLUSTER,
    ZT_TL_DESTINATION_SERVICE,
    ZT_TL_DESTINATION_SERVICE_NAMESPACE,
    ZT_TL_DESTINATION_SERVICE_NAME,
    ZT_TL_DESTINATION_WORKLOAD,
    ZT_TL_DESTINATION_CANONICAL_SERVICE,
    ZT_TL_DESTINATION_CANONICAL_REVISION,
    ZT_TL_DESTINATION_WORKLOAD_NAMESPACE,
    ZT_TL_DESTINATION_PRINCIPAL,
    ZT_TL_DESTINATION_APP,
    ZT_TL_DESTINATION_VERSION,
    ZT_TL_DESTINATION_CLUSTER,
    ZT_TL_REQUEST_PROTOCOL,           /* always "tcp" */
    ZT_TL_RESPONSE_FLAGS,             /* "-" or a flag such as "DENY" */
    ZT_TL_CONNECTION_SECURITY_POLICY, /* "mutual_tls" | "unknown" */
    ZT_TL_SOURCE_REGION,              /* the locality labels are emitted only */
    ZT_TL_SOURCE_ZONE,                /* when has_locality is set */
    ZT_TL_DESTINATION_REGION,
    ZT_TL_DESTINATION_ZONE,
    ZT_TL_COUNT
};

/* The Prometheus label name of a zt_tl value. */
const char *zt_tl_name(enum zt_tl l);

/* Longest label value kept, in bytes: longer values are cut at a character
 * boundary. Bytes that are not valid UTF-8 are rendered as U+FFFD, since the
 * exposition must be UTF-8. */
#define ZT_METRICS_LABEL_VALUE_MAX 1024

/* Most label sets with a value taken from a peer (its baggage) kept at a
 * time, per registry (so per proxy). */
#define ZT_METRICS_PEER_SERIES_MAX 512

/* A label set to look up; strings are borrowed for the call (NULL or "" is
 * rendered "unknown"). */
struct zt_traffic_labels {
    const char *v[ZT_TL_COUNT];
    bool has_locality; /* a source or destination workload was known */
    /* Bit (1u << l) is set for each label l whose value the peer chose
     * (taken from its baggage): such a label set is a peer series, capped
     * as above. */
    uint32_t from_peer;
};
#define ZT_TL_BIT(l) (1u << (l))

struct zt_metrics;
/* The istio_tcp_* counters of one label set in one shard. */
struct zt_tcp_series;

/* Creates a registry with `nshards` writer shards. `build_tag` is the
 * istio_build tag label (e.g. the version). Never NULL (aborts on OOM). */
struct zt_metrics *zt_metrics_new(unsigned nshards, const char *build_tag);
void zt_metrics_free(struct zt_metrics *m);

/* Finds or creates the series for `labels` in `shard` (< nshards) and holds
 * it: it stays valid until released with zt_metrics_tcp_series_release (or
 * zt_metrics_free). A peer series may instead come back as the same labels
 * without the peer's values, when the shard's peer series are all held (see
 * above). Never NULL. Call only from the shard's writer thread. */
struct zt_tcp_series *zt_metrics_tcp_series(struct zt_metrics *m, unsigned shard,
                                            const struct zt_traffic_labels *labels);

/* Drops one hold on s, got from zt_metrics_tcp_series on the same shard; s
 * must not be used afterwards (an idle peer series may be evicted). From the
 * shard's writer thread. NULL s is a no-op. */
void zt_metrics_tcp_series_release(struct zt_metrics *m, unsigned shard, struct zt_tcp_series *s);

/* Counting, from the shard's writer thread (relaxed atomics). */
void zt_tcp_series_opened(struct zt_tcp_series *s);
void zt_tcp_series_closed(struct zt_tcp_series *s);
/* istio_tcp_connections_failed_total (response flags such as DENY,
 * CONNECT, TLS_FAILURE, IDENTITY_ERROR). */
void zt_tcp_series_failed(struct zt_tcp_series *s);
/* Bytes client->server (istio_tcp_received_bytes_total) and
 * server->client (istio_tcp_sent_bytes_total). */
void zt_tcp_series_add_bytes(struct zt_tcp_series *s, uint64_t received, uint64_t sent);

/* The waypoint's HTTP request metrics (Istio's stats filter, waypoint
 * facts 2.5): istio_requests_total (counter) and the histograms
 * istio_request_duration_milliseconds, istio_request_bytes and
 * istio_response_bytes, with Envoy's default buckets (0.5, 1, 5, 10, 25,
 * 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
 * 1800000, 3600000; a value equal to a bound counts in that bound's bucket).
 * Same sharding as the istio_tcp_* series: a writer finds or adds a label
 * set under its own shard's mutex, counts with relaxed atomics, and the
 * scrape sums equal label sets across shards.
 *
 * Labels, in the stats filter's order. A NULL or "" value is "missing" and
 * renders as Istio renders a missing value: "latest" for the two canonical
 * revisions, "0" for response_code, "" for grpc_response_status (non-gRPC),
 * "-" for response_flags, "unknown" for the others. Other values render as
 * given (escaped, capped at ZT_METRICS_LABEL_VALUE_MAX, invalid UTF-8 as
 * U+FFFD), so the waypoint passes exactly Istio's values. */
enum zt_rl {
    ZT_RL_REPORTER, /* "waypoint"; must come from the configuration */
    ZT_RL_SOURCE_WORKLOAD,
    ZT_RL_SOURCE_CANONICAL_SERVICE,
    ZT_RL_SOURCE_CANONICAL_REVISION,
    ZT_RL_SOURCE_WORKLOAD_NAMESPACE,
    ZT_RL_SOURCE_PRINCIPAL,
    ZT_RL_SOURCE_APP,
    ZT_RL_SOURCE_VERSION,
    ZT_RL_SOURCE_CLUSTER,
    ZT_RL_DESTINATION_WORKLOAD,
    ZT_RL_DESTINATION_WORKLOAD_NAMESPACE,
    ZT_RL_DESTINATION_PRINCIPAL,
    ZT_RL_DESTINATION_APP,
    ZT_RL_DESTINATION_VERSION,
    ZT_RL_DESTINATION_SERVICE,
    ZT_RL_DESTINATION_CANONICAL_SERVICE,
    ZT_RL_DESTINATION_CANONICAL_REVISION,
    ZT_RL_DESTINATION_SERVICE_NAME,
    ZT_RL_DESTINATION_SERVICE_NAMESPACE,
    ZT_RL_DESTINATION_CLUSTER,
    ZT_RL_REQUEST_PROTOCOL,           /* "http" | "grpc" */
    ZT_RL_RESPONSE_CODE,              /* decimal, e.g. "200" */
    ZT_RL_GRPC_RESPONSE_STATUS,       /* decimal; missing for non-gRPC */
    ZT_RL_RESPONSE_FLAGS,             /* Envoy short flags, "-" when none */
    ZT_RL_CONNECTION_SECURITY_POLICY, /* "mutual_tls" | "none" */
    ZT_RL_COUNT
};

/* The Prometheus label name of a zt_rl value. */
const char *zt_rl_name(enum zt_rl l);

/* A request label set to look up; strings are borrowed for the call. */
struct zt_request_labels {
    const char *v[ZT_RL_COUNT];
};

/* Most request label sets kept at a time, per registry, split evenly among
 * the shards (at least one each). Every request label set counts against
 * it, since the response code and the workloads come from traffic. A
 * series is held while a caller counts into it; when a shard needs room it
 * evicts its least recently released idle series (counted in
 * ztunnel_metrics_request_series_evicted_total; Prometheus sees the series
 * end, as after a restart). When every series of the shard is held, the
 * request is counted in an overflow series whose labels are all "unknown"
 * but the reporter (counted in ztunnel_metrics_request_labels_dropped_total);
 * overflow series are outside the cap and there is one per reporter value.
 * ztunnel_metrics_request_series is the gauge of series kept under the cap.
 * A series renders 67 lines (about 60 KB with typical labels), so a full
 * cap is a scrape of about 60 MB (docs/telemetry.md). */
#define ZT_METRICS_REQUEST_SERIES_MAX 1024

/* The request counters of one label set in one shard. */
struct zt_request_series;

/* Finds or creates the series for `labels` in `shard` (< nshards) and holds
 * it: it stays valid until released with zt_metrics_request_series_release
 * (or zt_metrics_free). May come back as the overflow series (see above).
 * Never NULL. Call only from the shard's writer thread. */
struct zt_request_series *zt_metrics_request_series(struct zt_metrics *m, unsigned shard,
                                                    const struct zt_request_labels *labels);

/* Drops one hold on s, got from zt_metrics_request_series on the same shard;
 * s must not be used afterwards (an idle series may be evicted). From the
 * shard's writer thread. NULL s is a no-op. */
void zt_metrics_request_series_release(struct zt_metrics *m, unsigned shard,
                                       struct zt_request_series *s);

/* One request done: istio_requests_total += 1, and one observation in each
 * histogram: `duration_us` microseconds (rendered in milliseconds), and the
 * request's and response's wire bytes (headers included). Relaxed atomics,
 * from the shard's writer thread. */
void zt_request_series_observe(struct zt_request_series *s, uint64_t duration_us,
                               uint64_t request_bytes, uint64_t response_bytes);

/* zt_metrics_request_series, zt_request_series_observe and the release in
 * one call (one lock), for a caller that learns the labels (response_code)
 * only when the request is done. Same thread rule. */
void zt_metrics_request_observe(struct zt_metrics *m, unsigned shard,
                                const struct zt_request_labels *labels, uint64_t duration_us,
                                uint64_t request_bytes, uint64_t response_bytes);

/* Process-level values, settable from any thread. */
enum zt_gauge {
    ZT_G_WORKLOAD_MANAGER_ACTIVE_PROXIES,  /* workload_manager_active_proxy_count */
    ZT_G_WORKLOAD_MANAGER_PENDING_PROXIES, /* workload_manager_pending_proxy_count */
    ZT_G_TCP_SOCKETS_OPEN_SOURCE,          /* istio_tcp_sockets_open{reporter="source"} */
    ZT_G_TCP_SOCKETS_OPEN_DESTINATION,     /* istio_tcp_sockets_open{reporter="destination"} */
    ZT_G_COUNT
};
void zt_metrics_gauge_add(struct zt_metrics *m, enum zt_gauge g, int64_t delta);
void zt_metrics_gauge_set(struct zt_metrics *m, enum zt_gauge g, int64_t value);

enum zt_counter {
    ZT_C_WORKLOAD_MANAGER_PROXIES_STARTED, /* workload_manager_proxies_started_total */
    ZT_C_WORKLOAD_MANAGER_PROXIES_STOPPED, /* workload_manager_proxies_stopped_total */
    /* istio_crl_policy_rejections_total{reporter=...}: HBONE connections
     * refused at the handshake or closed later because a CRL revokes the
     * peer (outbound: source, inbound: destination). */
    ZT_C_CRL_POLICY_REJECTIONS_SOURCE,
    ZT_C_CRL_POLICY_REJECTIONS_DESTINATION,
    /* istio_crl_untracked_connections_total{reporter=...}: connections
     * whose peer could not be re-checked when CRLs change. */
    ZT_C_CRL_UNTRACKED_SOURCE,
    ZT_C_CRL_UNTRACKED_DESTINATION,
    /* istio_xds_connection_terminations_total{reason=...}: how each xDS
     * attempt ended, with Istio's ztunnel's reasons: ConnectionError (no
     * stream: resolve, connect, TLS or HTTP/2 failure), Error (the stream
     * ended with an error status), Reconnect (a status istiod uses to move
     * clients: CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, UNAVAILABLE "transport
     * is closing" / "received prior goaway"), Complete (status OK). */
    ZT_C_XDS_TERMINATIONS_CONNECTION_ERROR,
    ZT_C_XDS_TERMINATIONS_ERROR,
    ZT_C_XDS_TERMINATIONS_RECONNECT,
    ZT_C_XDS_TERMINATIONS_COMPLETE,
    /* The waypoint's security steps, by Envoy's stat names (a family shows
     * once it has counted something):
     * ztunnel_waypoint_jwt_authn_total{result="allowed"|"denied"}: requests
     * that passed JWT authentication (a valid token, or none) or got 401;
     * ztunnel_waypoint_rbac_total{result=...}: the enforced policies'
     * verdict; ztunnel_waypoint_rbac_shadow_total{result=...}: the dry-run
     * policies' (istio.io/dry-run), never enforced;
     * ztunnel_waypoint_rate_limited_total: requests answered 429. */
    ZT_C_WP_JWT_ALLOWED,
    ZT_C_WP_JWT_DENIED,
    ZT_C_WP_RBAC_ALLOWED,
    ZT_C_WP_RBAC_DENIED,
    ZT_C_WP_RBAC_SHADOW_ALLOWED,
    ZT_C_WP_RBAC_SHADOW_DENIED,
    ZT_C_WP_RATE_LIMITED,
    ZT_C_COUNT
};
void zt_metrics_counter_inc(struct zt_metrics *m, enum zt_counter c);

/* Most distinct type URLs counted apart by the xDS message counters;
 * responses with further URLs are counted under url="other". */
#define ZT_METRICS_XDS_URLS_MAX 16

/* One DeltaDiscoveryResponse received: istio_xds_message_total{url} += 1
 * and istio_xds_message_bytes_total{url} += `bytes` (as Istio's ztunnel,
 * the sizes of its resources' Any payloads). `type_url` is borrowed for the
 * call (NULL or "" renders "unknown"). Any thread; takes a mutex. */
void zt_metrics_xds_message(struct zt_metrics *m, const char *type_url, uint64_t bytes);

/* Appends the whole exposition to `out`: istio_tcp_* and the request
 * families (each summed over shards, once some series exists),
 * istio_build, workload_manager_*, istio_tcp_sockets_open, istio_crl_*,
 * istio_xds_* (each series once it has counted something, as Istio's),
 * process_open_fds and process_max_fds (read from /proc/self at render
 * time), and ours on the peer series cap: ztunnel_metrics_peer_series
 * (gauge, kept now), ztunnel_metrics_peer_series_evicted_total and
 * ztunnel_metrics_peer_labels_dropped_total (connections counted without
 * their peer's values), and on the request series cap:
 * ztunnel_metrics_request_series, ztunnel_metrics_request_series_evicted_total
 * and ztunnel_metrics_request_labels_dropped_total. Any thread. */
/* One query of a pod's DNS proxy, counted as Istio's ztunnel counts it:
 * istio_dns_requests_total for every query; for one sent upstream also
 * istio_dns_upstream_requests_total, istio_dns_upstream_failures_total
 * when no upstream answered, and the time taken in the histogram
 * istio_dns_upstream_request_duration_seconds. Labels request_query_type
 * ("a", "aaaa", ...), request_protocol ("udp" | "tcp") and the source
 * workload's canonical service and revision (NULL or "": "unknown"). The
 * query type comes from the client: past ZT_METRICS_DNS_SERIES_MAX label
 * sets, new ones are counted with request_query_type "other". Thread-safe. */
#define ZT_METRICS_DNS_SERIES_MAX 256
struct zt_metrics_dns_sample {
    const char *query_type, *protocol, *canonical_service, *canonical_revision;
    bool forwarded, failed;
    uint64_t upstream_us;
};
void zt_metrics_dns(struct zt_metrics *m, const struct zt_metrics_dns_sample *s);

/* istio_on_demand_dns_total: one lookup of an endpoint's hostname made
 * for a connection (cached or not), labelled with the source workload and
 * the hostname, as Istio's ztunnel counts it. Past
 * ZT_METRICS_DNS_SERIES_MAX label sets, new ones count with hostname
 * "other". NULL or "" values are "unknown". Thread-safe. */
struct zt_metrics_on_demand_dns_sample {
    const char *source_workload, *source_canonical_service, *source_canonical_revision,
        *source_workload_namespace, *source_principal, *source_app, *source_version,
        *source_cluster, *hostname;
};
void zt_metrics_on_demand_dns(struct zt_metrics *m,
                              const struct zt_metrics_on_demand_dns_sample *s);

void zt_metrics_render(struct zt_metrics *m, struct zt_buf *out);

/* For families other modules render after zt_metrics_render: "# HELP" and
 * "# TYPE" lines, and a sample "name<labels> v" (labels NULL or "{k=\"v\",...}"). */
void zt_metrics_put_family_header(struct zt_buf *b, const char *name, const char *help,
                                  const char *type);
void zt_metrics_put_u64(struct zt_buf *b, const char *name, const char *labels, uint64_t v);

#endif
