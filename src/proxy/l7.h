/* The proxy's interface for an L7 layer (the waypoint, src/waypoint/).
 *
 * With zt_proxy_opts.l7 set, each pod listens on 15008 only, and every
 * CONNECT that passes the HBONE checks (TLS with a proven client identity,
 * method, authority) is handed to the layer instead of being forwarded to
 * the pod's workload: the layer answers it, reads and writes the stream, and
 * opens HBONE streams to endpoints through the pod's pool, presenting the
 * pod's own identity. The proxy keeps everything below: certificates,
 * listeners, TLS, HTTP/2, the pool, CRLs, drain.
 *
 * Threading: every callback and function here runs on the worker that owns
 * the pod instance; a layer keeps per-worker state in the context its
 * worker_start returns.
 *
 * Lifetime: a pod instance (struct zt_pod_inst, opaque here) lives until
 * pod_close; the layer must drop every pointer to it (and detach every
 * stream it holds for it) inside that call. */
#ifndef ZT_PROXY_L7_H
#define ZT_PROXY_L7_H

#include "h2/h2conn.h"
#include "hbone/hbone.h"
#include "hbone/pool.h"
#include "state/state.h"

#include <stdbool.h>
#include <sys/socket.h>
#include <uv.h>

struct zt_pod_inst;

/* One CONNECT for the layer; everything is borrowed for the call. */
struct zt_l7_connect {
    struct zt_pod_inst *pod;
    struct zt_h2conn *h2;
    int32_t sid;
    const struct zt_h2_request *req;      /* baggage, forwarded, traceparent */
    const struct zt_hbone_target *target; /* the parsed :authority */
    const char *peer_identity;            /* the client's SPIFFE id, proven by mTLS */
    const struct sockaddr_storage *peer;  /* the HBONE connection's TCP peer */
    const struct sockaddr_storage *local; /* the address it was accepted on */
};

struct zt_proxy_l7_ops {
    /* On each worker's thread at start (ud: opts.l7_ud): the layer's
     * per-worker context, passed to the calls below. */
    void *(*worker_start)(void *ud, unsigned worker, uv_loop_t *loop);
    /* At shutdown, after every pod of the worker was closed. */
    void (*worker_stop)(void *wctx);
    /* A CONNECT: the layer must attach to the stream (zt_h2conn_attach)
     * and respond, or respond now with an error status. */
    void (*on_connect)(void *wctx, const struct zt_l7_connect *c);
    /* The pod instance goes away (removed, or shutdown): the layer closes
     * everything it holds for it, now. */
    void (*pod_close)(void *wctx, struct zt_pod_inst *pod);
    /* The proxy drains: finish what is in flight, start nothing new that
     * can be refused (e.g. close idle keep-alive connections). May be NULL. */
    void (*drain)(void *wctx);
};

/* The worker's current snapshot (borrowed; take a reference to keep it
 * past the current callback). */
const struct zt_state *zt_l7_state(struct zt_pod_inst *pod);
/* The pod's own workload in that snapshot, NULL if not (yet) known. */
const struct zt_workload *zt_l7_self(struct zt_pod_inst *pod);
/* NETWORK of this proxy ("" for the default). */
const char *zt_l7_network(struct zt_pod_inst *pod);
uv_loop_t *zt_l7_loop(struct zt_pod_inst *pod);

/* Asks for an HBONE connection to endpoint wl of svc (may be NULL; the
 * port dialed svc_port), presenting the pod's identity and accepting wl's
 * identity or any SPIFFE SAN of svc. On the pod's network: from the pod's
 * pool, to wl's address on port 15008. On another network (svc required):
 * double HBONE through wl's network gateway (docs/multinetwork.md): the
 * outer tunnel from the pool to the gateway, then an inner connection of
 * its own inside it, whose server must present one of svc's SANs; it is
 * handed over through w->cb, carries the streams its user opens in that
 * call (zt_l7_stream_target names them) and closes after them. As
 * zt_hbone_pool_get: 0 with *ready, 0 with *ready NULL and w->cb later,
 * or a negative error (ZT_E_IDENTITY: no identity to present or expect;
 * ZT_E_NOT_FOUND: nothing reaches wl). On success *dst gets wl's ip:15008. */
int zt_l7_upstream(struct zt_pod_inst *pod, const struct zt_workload *wl,
                   const struct zt_service *svc, uint16_t svc_port, struct zt_hbone_waiter *w,
                   struct zt_h2conn **ready, struct sockaddr_storage *dst);
/* Stops a wait of zt_l7_upstream (w->cb never runs). */
void zt_l7_upstream_cancel(struct zt_hbone_waiter *w);
/* The :authority and extra headers (name/value pairs, static until the
 * call returns) of a stream the caller of w->cb opens on h2: for an inner
 * connection through a network gateway, "<service hostname>:<port>" and
 * x-forwarded-network, and true; false for any other connection (the
 * caller names ip:port). */
bool zt_l7_stream_target(const struct zt_h2conn *h2, char *authority, size_t len,
                         const char **headers, size_t *n_headers);

/* Counts one more / one less thing in flight on the pod's worker, which
 * the drain waits for. */
void zt_l7_hold(struct zt_pod_inst *pod);
void zt_l7_release(struct zt_pod_inst *pod);

#endif
