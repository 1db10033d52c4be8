/* Where an inbound HBONE request goes, decided from the request's target,
 * the local workload and a state snapshot alone (sans-I/O), as Istio's
 * ztunnel decides it (wire facts 2.5, 2.8, 8):
 *
 * - An address target must be the address the connection was accepted on,
 *   except for a workload with an application tunnel (a sandwiched
 *   waypoint), which receives the target in a PROXY header instead.
 * - A hostname target (`<service hostname>:<service port>`) names a service:
 *   among those with that hostname visible from the workload's namespace,
 *   the one in that namespace, else the (last) canonical one, else the
 *   first. Its port maps to the workload's own endpoint port for it, else
 *   to the service's target port; neither, or a proxy port, is refused.
 * - Either way the app is reached at the accepted address (only ever the
 *   pod that accepted the connection), with the resolved port, which an
 *   application tunnel may override with its own.
 * - A PROXY application tunnel is dialed on loopback (with Istio's
 *   LOCALHOST_APP_TUNNEL, default true; else on the pod's address), and
 *   told the client and the target:
 *   for a hostname, a VIP of the service, preferring one on the local
 *   network, then IPv4, with the service port asked for. */
#ifndef ZT_PROXY_INBOUND_ROUTE_H
#define ZT_PROXY_INBOUND_ROUTE_H

#include "hbone/hbone.h"
#include "state/state.h"

#include <stdbool.h>
#include <sys/socket.h>

struct zt_inbound_route {
    /* The accepted IP with the final port: what policies check as the
     * destination. */
    struct sockaddr_storage upstream;
    /* Where to connect: upstream, or loopback (of upstream's family, with
     * its port) for a PROXY application tunnel. */
    struct sockaddr_storage dial;
    bool is_loopback; /* dial is loopback: connect from loopback too */
    /* A PROXY application tunnel: write a PROXY v2 header first, its
     * destination being tunnel_dst. */
    bool want_proxy_header;
    struct sockaddr_storage tunnel_dst;
    /* A hostname target's service (borrowed from the snapshot), else NULL. */
    const struct zt_service *svc;
};

/* Routes target (borrowed) for the local workload self (borrowed) on a
 * connection accepted on accepted_on, with snapshot s (borrowed; out->svc
 * points into it), the proxy's network (NULL: "") and whether application
 * tunnels are dialed on loopback (localhost_tunnel). Returns 200 and fills
 * *out, or the status to answer (400: a foreign address; 503: unknown
 * service, no port, a proxy port, no VIP to tell the tunnel) with a static
 * reason in *why. */
int zt_inbound_route(const struct zt_state *s, const char *network, const struct zt_workload *self,
                     const struct zt_hbone_target *target, const struct sockaddr *accepted_on,
                     bool localhost_tunnel, struct zt_inbound_route *out, const char **why);

#endif
