/* The proxy's xDS client: Istio's delta ADS over gRPC over TLS to
 * XDS_ADDRESS (wire facts §3.1), on the control loop. It keeps one stream
 * open, reconnecting with the engine's backoff, and hands every accepted
 * state to its owner. While the control plane is unreachable the last good
 * state stays in force (the client simply publishes nothing).
 *
 * Failover: XDS_ADDRESS may list several instances ("a:15012,b:15012",
 * h2/grpc.h) and a name may resolve to several addresses; all of them are
 * tried. A round resolves every entry (up to 16 addresses each, 64 in all)
 * and the attempts walk the addresses in order, starting after the one
 * last used: when a stream or a connection attempt ends, the next address
 * is tried at once, and only after every address failed in a row does the
 * client wait (the engine's backoff, capped at ZT_FAILOVER_RETRY_MAX_MS
 * = 5 s, drawn uniformly in [d/2, d]) and resolve the names again
 * (h2/failover.h, shared with the CA client). A
 * stream that handled a response restarts the count. The move is logged
 * (from which address to which, and why). The proxy's state is kept
 * across the move: the new stream's initial requests carry
 * initial_resource_versions, and what the new server does not have any
 * more is removed when its first response says so (removed_resources).
 *
 * Keepalive: an HTTP/2 PING every ping_interval_ms, the connection closed
 * when one is not answered within ping_timeout_ms (Istio's ztunnel: 30 s
 * and 10 s), so an instance that hangs without closing is left too; TCP
 * connect is bounded at 5 s and the TLS + HTTP/2 handshake at 10 s.
 *
 * Server-only TLS: the server certificate is verified against the root
 * file and the host name of the entry the address came from (or
 * ALT_XDS_HOSTNAME), for every address. The root file is
 * looked at again before each new connection and re-read when it changed
 * (tls/roots.h: rotation without a restart; a bad file keeps the roots
 * loaded before, with a warning). Each call carries
 * `authorization: Bearer <token file contents>` (re-read per call) and
 * `clusterid`. */
#ifndef ZT_XDS_CLIENT_H
#define ZT_XDS_CLIENT_H

#include "state/state.h"
#include "telemetry/metrics.h"
#include "xds/ads.h"

#include <stddef.h>
#include <uv.h>

struct zt_xds_client_opts {
    /* "host:port", "https://host:port" accepted; several comma-separated */
    const char *address;
    const char *root_ca;      /* PEM file, or "SYSTEM" */
    const char *alt_hostname; /* name to verify instead of the host; NULL = host */
    const char *token_path;   /* bearer token file; NULL or unreadable = none */
    const char *cluster_id;
    const char *node_id;
    /* Node metadata as string pairs (NAME, NAMESPACE, NODE_NAME, ...). */
    const char *const *node_meta;
    size_t n_node_meta;
    /* Borrowed, must outlive the client; NULL = no metrics. Counts
     * istio_xds_connection_terminations_total once per attempt and
     * istio_xds_message_total / istio_xds_message_bytes_total per decoded
     * response (unknown types included, as Istio's ztunnel). */
    struct zt_metrics *metrics;
    /* HTTP/2 keepalive; 0 = 30 s / 10 s. */
    uint32_t ping_interval_ms;
    uint32_t ping_timeout_ms;
};

struct zt_xds_client_ops {
    /* A new snapshot; the owner takes the reference. */
    void (*publish)(void *ud, struct zt_state *state);
    /* Address and Authorization have been ACKed once (readiness). */
    void (*ready)(void *ud);
    /* NULL, or (a waypoint) subscribes to ztunnel.routes.v1.Route too
     * (xds/routes.h) and is called after each response that changed the
     * routes, with every accepted route in name order: values are the
     * Route bytes, each already decoded once without error and named
     * "<kind>/<ns>/<name>" after its contents (a resource whose name says
     * otherwise is NACKed). Borrowed for the call. */
    void (*routes)(void *ud, const struct zt_ads_resource *routes, size_t n);
    /* NULL, or (a waypoint) subscribes to ztunnel.policy.v1.
     * AuthorizationPolicy, RequestAuthentication and RateLimit too
     * (xds/policies.h), and is called after each response that changed the
     * policies of type t (ZT_ADS_AUTHZ_POLICY, ZT_ADS_AUTHN_POLICY or
     * ZT_ADS_RATELIMIT) with every accepted
     * one of that type in name order, each decoded once without error and
     * named "<ns>/<name>" after its contents. Borrowed for the call. */
    void (*policies)(void *ud, enum zt_ads_type t, const struct zt_ads_resource *v, size_t n);
};

enum zt_xds_client_state {
    ZT_XDS_ST_BACKOFF,    /* waiting to (re)connect */
    ZT_XDS_ST_RESOLVING,  /* looking up the host */
    ZT_XDS_ST_CONNECTING, /* TCP + TLS + HTTP/2 */
    ZT_XDS_ST_STREAMING,  /* the ADS stream is open */
    ZT_XDS_ST_STOPPED
};
const char *zt_xds_client_state_str(enum zt_xds_client_state st);

struct zt_xds_client;

/* Starts connecting at once. `initial` (borrowed, may be NULL) is the base
 * of the first update (e.g. a local config). Options are copied. Returns 0,
 * or ZT_E_CONFIG with the reason in err. */
int zt_xds_client_start(uv_loop_t *loop, const struct zt_xds_client_opts *opts,
                        const struct zt_state *initial, const struct zt_xds_client_ops *ops,
                        void *ud, struct zt_xds_client **out, char *err, size_t errlen);

enum zt_xds_client_state zt_xds_client_state(const struct zt_xds_client *c);

/* Stops and frees on a later loop iteration; no callback afterwards. */
void zt_xds_client_stop(struct zt_xds_client *c);

#endif
