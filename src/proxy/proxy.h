/* The data plane: per-pod listeners (15001 outbound, 15006 inbound
 * plaintext, 15008 inbound HBONE) inside each enrolled pod's network
 * namespace, served by share-nothing worker loops.
 *
 * Threading: every function here is called on the control loop's thread.
 * The proxy hands work to its workers by posting tasks; each worker keeps its
 * own reference to the current state snapshot, its own pod instances,
 * connections and HBONE pools. */
#ifndef ZT_PROXY_PROXY_H
#define ZT_PROXY_PROXY_H

#include "ca/manager.h"
#include "dns/server.h"
#include "h2/h2conn.h"
#include "loop/sock.h"
#include "state/state.h"
#include "telemetry/metrics.h"
#include "zds/zds.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct zt_proxy_l7_ops; /* proxy/l7.h */

struct zt_proxy_opts {
    unsigned workers;
    uint32_t mark;            /* SO_MARK on every socket in a pod (0x539) */
    bool reuseport;           /* SO_REUSEPORT on pod listeners */
    bool orig_src;            /* spoof the client's source IP upstream */
    const char *trust_domain; /* for pods whose workload is not yet known */
    const char *node;         /* NODE_NAME, prefers local workloads */
    /* NETWORK ("" or NULL: the default network): inbound connections come
     * from it, so their sources are looked up by (network, IP). */
    const char *network;
    struct zt_h2_settings client_h2, server_h2;
    unsigned pool_max_streams;
    uint64_t pool_idle_ms;
    struct zt_metrics *metrics; /* borrowed; NULL = no metrics; one shard per worker */
    bool authz_info_logging;    /* log authorization decisions at info, not debug */
    /* KEEPALIVE_*: on sockets accepted on 15001 and 15006 and on every
     * socket dialed from a pod (to apps, HBONE peers, passthrough), as
     * Istio's ztunnel; accepted HBONE (15008) sockets get none there. */
    struct zt_sock_keepalive keepalive;
    bool ipv4_only; /* IPV6_ENABLED=false: pod listeners bind 0.0.0.0, not [::] */
    /* The DNS proxy (wire facts 9.1): with dns_enabled each pod gets UDP
     * and TCP listeners on dns_addr[0..n_dns_addr) (127.0.0.1:15053 and
     * [::1]:15053 by default; an address the pod lacks is skipped), served
     * by one of the workers. */
    bool dns_enabled;
    /* LOCALHOST_APP_TUNNEL: a PROXY application tunnel is dialed on
     * loopback (true, Istio's default) or on the pod's address. */
    bool localhost_app_tunnel;
    struct zt_dns_opts dns;
    struct zt_dns_upstreams dns_upstreams;
    struct sockaddr_storage dns_addr[2];
    size_t n_dns_addr;
    /* An L7 layer (the waypoint) serving inbound HBONE instead of the
     * proxy's forwarding, NULL for the node proxy: pods then listen on
     * 15008 only (proxy/l7.h). */
    const struct zt_proxy_l7_ops *l7;
    void *l7_ud;
};

struct zt_proxy;

/* Creates the proxy; `ca` is borrowed and must outlive it. */
struct zt_proxy *zt_proxy_new(uv_loop_t *control, const struct zt_proxy_opts *opts,
                              struct zt_ca_mgr *ca);

/* Starts the worker threads. Returns 0 or a negative errno. */
int zt_proxy_start(struct zt_proxy *p);

/* Publishes a new snapshot to every worker (each takes its own reference;
 * `state` stays the caller's). */
void zt_proxy_set_state(struct zt_proxy *p, const struct zt_state *state);

/* Starts serving a pod: opens its listeners inside netns_fd. On success the
 * proxy owns netns_fd; on failure (e.g. a port in use) it stays the caller's.
 * Adding a uid twice replaces the old instance. */
int zt_proxy_pod_add(struct zt_proxy *p, const char *uid, int netns_fd,
                     const struct zt_zds_workload_info *info);

/* Stops serving a pod now: listeners and every connection of it closed. */
void zt_proxy_pod_del(struct zt_proxy *p, const char *uid);

unsigned zt_proxy_pod_count(const struct zt_proxy *p);

/* Appends ours on how the workers share the accepted connections
 * (Prometheus text): ztunnel_worker_connections{worker,listener} (gauge,
 * served now; listener "hbone" for 15008, "app" for 15001 and 15006) and
 * ztunnel_worker_connections_moved_total{listener} (accepted on one worker
 * and served by another). Any thread. */
void zt_proxy_render_metrics(struct zt_proxy *p, struct zt_buf *out);

/* The CRLs in force changed (tls/crl.h): every worker closes its HBONE
 * connections, inbound and outbound, whose peer chain crl now revokes, and
 * counts each in istio_crl_policy_rejections_total (reporter destination
 * or source). crl is referenced until the workers are done. */
struct zt_tls_crl;
void zt_proxy_crl_changed(struct zt_proxy *p, struct zt_tls_crl *crl);

/* Graceful shutdown (wire facts §9.4): every pod stops accepting, HBONE
 * clients get GOAWAY, connections in flight go on. `done(ud)` runs on the
 * control loop once none is left or `deadline_ms` has passed; the caller
 * then frees the proxy, which closes whatever remains. Once only. */
void zt_proxy_drain(struct zt_proxy *p, uint64_t deadline_ms, void (*done)(void *ud), void *ud);

/* Stops the workers (closing everything) and frees the proxy; the control
 * loop must run once more afterwards to finish closing its handles. */
void zt_proxy_free(struct zt_proxy *p);

#endif
