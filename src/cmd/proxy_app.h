/* State of `ztunnel proxy` shared by the files of the command: the process
 * wiring (proxy.c) and the admin endpoints' view of it (proxy_admin.c). */
#ifndef ZT_CMD_PROXY_APP_H
#define ZT_CMD_PROXY_APP_H

#include "admin/admin.h"
#include "ca/client.h"
#include "ca/manager.h"
#include "config/env.h"
#include "inpod/zds_client.h"
#include "proxy/proxy.h"
#include "telemetry/metrics.h"
#include "tls/localca.h"
#include "jwt/authn.h"
#include "jwt/jwks_fetch.h"
#include "loop/dirwatch.h"
#include "waypoint/waypoint.h"
#include "xds/client.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

/* The identity of each served pod, to forget certificates nobody uses. */
struct pod_ident {
    char uid[130];
    bool has_id;
    struct zt_spiffe_id id;
};

struct proxy_app {
    uv_loop_t *loop;
    /* `ztunnel waypoint`: the proxy serves its own namespace as its one
     * pod, inbound HBONE only, through the L7 layer; no node agent. */
    bool is_waypoint;
    struct zt_waypoint *waypoint;
    /* The waypoint's RequestAuthentication policies as last read (the set
     * in force is rebuilt from them when a fetched JWKS changes). */
    struct zt_jwt_authn_policies authn_policies;
    /* Their jwksUri key sets: the fetcher (NULL until a policy has one) and
     * the last good document of each URI, checked before it is kept. */
    struct zt_jwks_fetcher *jwks;
    struct proxy_jwks_doc {
        char *uri, *body;
        size_t len;
    } * jwks_docs;
    size_t n_jwks_docs;
    struct zt_config cfg;
    struct zt_state *state;
    struct zt_tls_localca *localca;
    struct zt_ca_mgr *ca;
    struct zt_proxy *proxy;
    struct zt_metrics *metrics;
    struct zt_inpod_client *inpod;
    uv_signal_t sigterm, sigint;
    int signals;
    /* LOCAL_XDS_PATH is watched through its directory, so editors that
     * replace the file (write to a temp file, rename) are seen too. */
    struct zt_dirwatch *watch;
    uv_timer_t reload_timer;
    char watch_base[256];
    bool watching;
    /* Shared with the admin servers' threads. */
    pthread_mutex_t mu;            /* guards shared_state, workload_state, authn_policies */
    struct zt_state *shared_state; /* a reference to the current state */
    json_t *workload_state;        /* uid -> {state, info} of served pods */
    atomic_bool inpod_ready;       /* agent connected, snapshot received, none pending */
    atomic_bool draining;
    atomic_bool xds_pending; /* XDS_ADDRESS set, first ACK of both types not yet */
    struct zt_xds_client *xds;
    struct zt_ca_client *ca_client; /* CA_ADDRESS: certificates from an Istio CA */
    struct pod_ident *pod_ids;      /* control thread */
    size_t n_pod_ids, cap_pod_ids;
    /* Identities of this node's HBONE workloads in the current state,
     * prefetched from the CA (control thread; CA client mode only). */
    struct zt_spiffe_id *node_ids;
    size_t n_node_ids, cap_node_ids;
    uv_async_t quit_async; /* POST /quitquitquit */
    bool has_handles;      /* quit_async, sigterm and sigint are initialized */
    bool has_mu;           /* mu is initialized (and the admin state with it) */
    struct zt_admin *admin;
    /* The admin ports were taken at start (the proxy being replaced holds
     * them): retried until bound. */
    uv_timer_t admin_retry;
    bool has_admin_retry;
    /* Upgrade in place (proxy_upgrade.c). As the new proxy: the pipe to
     * the proxy that started it, written once this one serves every pod
     * (-1: none, or done). As the old one: the new proxy's process and the
     * read end of that pipe, while a hand-over is under way. */
    int handover_fd;
    bool has_handover_fd;
    uv_signal_t sighup;
    bool has_sighup;
    uv_process_t successor;
    bool has_successor; /* the handle is open (closed once it exited) */
    uv_poll_t handover_poll;
    int handover_rfd;
    bool has_handover_poll; /* waiting for the new proxy's byte */
    /* CRL_PATH (proxy_crl.c): NULL when unset; watched like LOCAL_XDS_PATH. */
    struct zt_tls_crl *crl;
    struct zt_dirwatch *crl_watch;
    uv_timer_t crl_timer;
    bool crl_watching;
};

/* CRL_PATH. _init (before the proxy starts, after the CA manager and the
 * metrics exist) loads the file and hands the CRLs to the manager's
 * contexts: returns 0, or the error (printed) for a file that exists but
 * does not load. _watch (once the proxy runs) follows the file; _stop
 * closes the watch. All three are no-ops without CRL_PATH. */
int zt_proxy_crl_init(struct proxy_app *app);
void zt_proxy_crl_watch(struct proxy_app *app);
void zt_proxy_crl_stop(struct proxy_app *app);

/* Starts the admin (127.0.0.1:15000), stats ([::]:15020) and readiness
 * ([::]:15021) servers in the proxy's own network namespace. A port held by
 * another process (the proxy this one replaces) is logged and retried every
 * 50 ms until bound, and 0 returned. Otherwise returns 0, or prints the
 * reason and returns the error. */
int zt_proxy_admin_start(struct proxy_app *app);
void zt_proxy_admin_stop(struct proxy_app *app);
/* Draining: the ports go to the proxy replacing this one (a host upgrade);
 * connections already accepted are still answered. */
void zt_proxy_admin_release(struct proxy_app *app);

/* Upgrade in place (proxy_upgrade.c). _init (once the loop exists): takes
 * ZTUNNEL_HANDOVER_FD from the environment when this proxy was started by
 * the one it replaces, and handles SIGHUP: start the binary at this
 * process's path as a new proxy with the same environment, which tells this
 * one through a pipe when it serves every pod; this one then drains.
 * _check (control thread, whenever readiness inputs change): as the new
 * proxy, tells the old one once every pod is served and the state is in.
 * _stop releases the handles. _notify sends `msg` to systemd's
 * NOTIFY_SOCKET if set (Type=notify). */
void zt_proxy_upgrade_init(struct proxy_app *app);
void zt_proxy_upgrade_check(struct proxy_app *app);
void zt_proxy_upgrade_stop(struct proxy_app *app);
void zt_proxy_upgrade_notify(const char *msg);

/* Starts the graceful drain (SIGTERM, /quitquitquit, a hand-over); `why`
 * is logged. A second call is a no-op. Control thread. */
void zt_proxy_begin_drain(struct proxy_app *app, const char *why);

/* Control thread: the state the admin endpoints show. */
void zt_proxy_admin_set_state(struct proxy_app *app, struct zt_state *state);
/* Control thread: a pod started or stopped being served. */
void zt_proxy_admin_pod_up(struct proxy_app *app, const char *uid,
                           const struct zt_zds_workload_info *info);
void zt_proxy_admin_pod_down(struct proxy_app *app, const char *uid);

#endif
