#include "proxy/inbound_route.h"

#include <netinet/in.h>
#include <string.h>

/* Istio's SOCKS5 port: reserved like the proxy's own (src/proxy/outbound.c). */
#define SOCKS5_PORT 15080

static bool visible_to(const struct zt_service *svc, const char *ns)
{
    return svc->visibility != ZT_VIS_NAMESPACE || strcmp(svc->namespace, ns) == 0;
}

/* The service a hostname names for a workload in namespace ns: the one in
 * ns ends the search; otherwise a canonical one (the last seen), else the
 * first seen. Hostnames compare exactly, as Istio's map keys do. */
static const struct zt_service *service_by_host(const struct zt_state *s, const char *host,
                                                const char *ns)
{
    const struct zt_service *const *v;
    size_t n = zt_state_services_by_hostname(s, host, &v);
    const struct zt_service *first = NULL, *canonical = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct zt_service *svc = v[i];
        if (strcmp(svc->hostname, host) != 0 || !visible_to(svc, ns))
            continue;
        if (strcmp(svc->namespace, ns) == 0)
            return svc;
        if (svc->canonical)
            canonical = svc;
        else if (!first)
            first = svc;
    }
    return canonical ? canonical : first;
}

/* The workload's target port for svc's service_port: its own endpoint
 * mapping, else the service's target port; 0 when neither has a number. */
static uint16_t target_port(const struct zt_workload *self, const struct zt_service *svc,
                            uint16_t service_port)
{
    const struct zt_workload_service *ws = zt_workload_find_service(self, svc->key);
    for (size_t i = 0; ws && i < ws->n_ports; i++) {
        if (ws->ports[i].service_port == service_port && ws->ports[i].target_port)
            return ws->ports[i].target_port;
    }
    const struct zt_port_map *pm = zt_service_find_port(svc, service_port);
    return pm ? pm->target_port : 0;
}

/* The VIP a PROXY header names for a hostname target: on our network
 * first, IPv4 before IPv6; among equals the last (as Istio's max_by_key). */
static const struct zt_ip *tunnel_vip(const struct zt_service *svc, const char *network)
{
    const struct zt_ip *best = NULL;
    int best_rank = -1;
    for (size_t i = 0; i < svc->n_vips; i++) {
        const struct zt_vip *vip = &svc->vips[i];
        int rank = strcmp(vip->network ? vip->network : "", network) != 0 ? 0
                   : vip->ip.family == AF_INET ? 2
                                               : 1;
        if (rank >= best_rank) {
            best = &vip->ip;
            best_rank = rank;
        }
    }
    return best;
}

static void loopback(int family, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons(port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)out;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s4->sin_port = htons(port);
    }
}

int zt_inbound_route(const struct zt_state *s, const char *network, const struct zt_workload *self,
                     const struct zt_hbone_target *target, const struct sockaddr *accepted_on,
                     bool localhost_tunnel, struct zt_inbound_route *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (!network)
        network = "";
    /* A target that is not this pod's address is admitted for a workload
     * with an application tunnel (it learns the target from the PROXY
     * header), and for the target's own waypoint (a sandwich without a
     * tunnel, matching on L7 only), as Istio's ztunnel. */
    bool any_ip = self->has_application_tunnel;
    struct zt_ip tip, aip;
    uint16_t tport, aport;
    if (!any_ip && !target->is_host &&
        zt_ip_from_sockaddr((const struct sockaddr *)&target->addr, &tip, &tport) == 0 &&
        zt_ip_from_sockaddr(accepted_on, &aip, &aport) == 0 && !zt_ip_eq(&tip, &aip))
        any_ip = zt_state_is_waypoint_for(s, network, &tip, self, &aip);
    int status = zt_hbone_check_target(target, accepted_on, any_ip, why);
    if (status != 200)
        return status;
    uint16_t port = target->port;
    if (target->is_host) {
        out->svc = service_by_host(s, target->host, self->namespace);
        if (!out->svc) {
            *why = "no service with the :authority's hostname";
            return 503;
        }
        port = target_port(self, out->svc, target->port);
        if (port == 0) {
            *why = "the service has no target port for the :authority's port";
            return 503;
        }
        if (zt_hbone_port_is_illegal(port) || port == SOCKS5_PORT) {
            *why = "the service port maps to a port reserved for the proxy";
            return 503;
        }
    }
    /* Always the pod that accepted the connection: only the port varies. */
    struct zt_ip ip;
    uint16_t unused;
    if (zt_ip_from_sockaddr(accepted_on, &ip, &unused) < 0) {
        *why = "connection accepted on an address of no known family";
        return 503;
    }
    if (self->has_application_tunnel && self->application_tunnel_port)
        port = self->application_tunnel_port;
    zt_ip_to_sockaddr(&ip, port, &out->upstream);
    out->dial = out->upstream;
    if (!self->has_application_tunnel || self->application_tunnel_protocol != ZT_APP_TUNNEL_PROXY)
        return 200;
    out->want_proxy_header = true;
    if (target->is_host) {
        const struct zt_ip *vip = tunnel_vip(out->svc, network);
        if (!vip) {
            *why = "the service has no VIP to name in the PROXY header";
            return 503;
        }
        zt_ip_to_sockaddr(vip, target->port, &out->tunnel_dst);
    } else {
        out->tunnel_dst = target->addr;
    }
    if (localhost_tunnel) {
        loopback(out->upstream.ss_family, port, &out->dial);
        out->is_loopback = true;
    }
    return 200;
}
