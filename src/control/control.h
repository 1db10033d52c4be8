/* `ztunnel control`: a small control plane speaking Istio's protocols, for
 * meshes without istiod. One TLS port serves both gRPC services istiod
 * offers node proxies (wire facts §3.1, §4):
 *
 *   envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources
 *       istio.workload.Address and istio.security.Authorization, wildcard,
 *       and, for waypoints, ztunnel.routes.v1.Route (proto/routes.proto)
 *       from the directory's HTTPRoute and GRPCRoute documents,
 *       from the YAML files of a directory (LOCAL_XDS_PATH schema), which is
 *       watched: a change is pushed as a delta to every stream within a
 *       second; a directory that does not load is refused (logged with file
 *       and line) and the last good state stays served.
 *   istio.v1.auth.IstioCertificateService/CreateCertificate
 *       signs CSRs with an Istio cacerts directory.
 *
 * Every call must carry `authorization: Bearer <token>` naming a node
 * (control/tokens.h), else UNAUTHENTICATED. A node obtains certificates
 * only for identities of workloads that the current configuration places on
 * that node (workload.node); anything else is PERMISSION_DENIED, logged.
 *
 * Everything runs on one libuv loop. */
#ifndef ZT_CONTROL_CONTROL_H
#define ZT_CONTROL_CONTROL_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Certificate lifetimes (seconds): istiod's defaults. */
#define ZT_CONTROL_CERT_TTL_DEFAULT (24u * 3600)
#define ZT_CONTROL_CERT_TTL_MAX (90u * 24 * 3600)

/* Limits against a peer that holds resources without using them. */
/* Connections one source address may hold open at a time; more are closed
 * as soon as they are accepted (nodes behind one NAT address share it). */
#define ZT_CONTROL_CONNS_PER_ADDR_DEFAULT 100
/* A connection that has not opened a stream with a valid node token this
 * long after it was accepted is closed. */
#define ZT_CONTROL_AUTH_TIMEOUT_MS_DEFAULT 10000
/* The largest DeltaDiscoveryRequest taken: istiod's default gRPC receive
 * limit (4 MiB). Requests are small; the largest legitimate one lists the
 * resources a reconnecting proxy holds (about 80 bytes each). */
#define ZT_CONTROL_ADS_REQUEST_MAX (4u << 20)

struct zt_control_opts {
    const char *listen;      /* "ADDR:PORT", "[v6]:PORT"; ADDR numeric */
    const char *config_dir;  /* YAML directory */
    const char *ca_dir;      /* Istio cacerts directory */
    const char *node_tokens; /* "NODE TOKEN" lines */
    const char *tls_cert;    /* PEM chain; NULL: mint one from ca_dir */
    const char *tls_key;     /* with tls_cert */
    /* Extra names for a minted server certificate (DNS names or IP
     * literals), besides the defaults (see zt_control_start). */
    const char *const *server_names;
    size_t n_server_names;
    unsigned cert_ttl_default;   /* 0 = ZT_CONTROL_CERT_TTL_DEFAULT */
    unsigned cert_ttl_max;       /* 0 = ZT_CONTROL_CERT_TTL_MAX */
    unsigned max_conns_per_addr; /* 0 = ZT_CONTROL_CONNS_PER_ADDR_DEFAULT */
    unsigned auth_timeout_ms;    /* 0 = ZT_CONTROL_AUTH_TIMEOUT_MS_DEFAULT */
};

struct zt_control;

/* Loads the CA, tokens and configuration, sets up TLS and starts listening.
 * A minted server certificate names localhost, istiod.istio-system.svc,
 * istiod, this host's name, the listen address (or, for a wildcard
 * address, every address of this host's interfaces) and server_names; it
 * is renewed at half-life. Returns 0, or ZT_E_CONFIG / -errno with the
 * reason (naming the file or option) in err. */
int zt_control_start(uv_loop_t *loop, const struct zt_control_opts *opts, struct zt_control **out,
                     char *err, size_t errlen);

/* The bound port (useful with port 0). */
uint16_t zt_control_port(const struct zt_control *cp);

/* Prometheus text for the monitoring port, appended to out: istiod's
 * metric names where istiod has one (pilot_xds, pilot_xds_pushes,
 * pilot_total_xds_rejects, citadel_server_*), ztunnel_control_* otherwise.
 * Any thread (the counters are atomic); cp must outlive the call. */
void zt_control_render_metrics(struct zt_control *cp, struct zt_buf *out);

/* True once the configuration is loaded and the port listens, until stop.
 * Any thread. */
bool zt_control_ready(struct zt_control *cp);

/* Ends every stream with UNAVAILABLE, sends GOAWAY, stops listening and
 * frees everything once the loop has closed the handles (run the loop after
 * this). */
void zt_control_stop(struct zt_control *cp);

#endif
