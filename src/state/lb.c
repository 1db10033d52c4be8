/* Endpoint selection and outbound destination resolution, waypoints
 * included (wire facts 8 and 9.3).
 *
 * The random value is an argument so that the choice is a pure function of
 * its inputs: callers pass a fresh random number, tests pass constants. */
#include "state/state_int.h"

#include "base/err.h"

#include <stdio.h>
#include <string.h>

static bool scope_matches(enum zt_lb_scope scope, const struct zt_workload *a,
                          const struct zt_workload *b)
{
    switch (scope) {
    case ZT_LB_SCOPE_REGION:
        return strcmp(a->locality.region, b->locality.region) == 0;
    case ZT_LB_SCOPE_ZONE:
        return strcmp(a->locality.zone, b->locality.zone) == 0;
    case ZT_LB_SCOPE_SUBZONE:
        return strcmp(a->locality.subzone, b->locality.subzone) == 0;
    case ZT_LB_SCOPE_NODE:
        return strcmp(a->node, b->node) == 0;
    case ZT_LB_SCOPE_CLUSTER:
        return strcmp(a->cluster_id, b->cluster_id) == 0;
    case ZT_LB_SCOPE_NETWORK:
        return strcmp(a->network, b->network) == 0;
    }
    return false;
}

/* Returns the rank of ep for client, or -1 if STRICT excludes it. Ranking
 * counts leading routing preferences that match, stopping at the first
 * mismatch. A leading NETWORK preference is "preferred, not required": the
 * rest is ranked regardless, and a matching network counts as a match plus
 * len - 1 (as in Istio's ztunnel), so any endpoint on the client's network
 * outranks every endpoint elsewhere. */
static int endpoint_rank(const struct zt_service *svc, const struct zt_workload *client,
                         const struct zt_workload *ep)
{
    size_t n = svc->n_lb_routing, start = 0, lead = 0;
    bool full, net_first;
    int rank;

    if (!client || (svc->lb_mode != ZT_LB_STRICT && svc->lb_mode != ZT_LB_FAILOVER))
        return 0;
    if (n > ZT_LB_MAX_SCOPES)
        n = ZT_LB_MAX_SCOPES;
    net_first = n > 0 && svc->lb_routing[0] == ZT_LB_SCOPE_NETWORK;
    if (net_first)
        start = 1;
    for (size_t i = start; i < n && scope_matches(svc->lb_routing[i], client, ep); i++)
        lead++;
    if (net_first) {
        bool net = scope_matches(ZT_LB_SCOPE_NETWORK, client, ep);
        full = net && lead == n - 1;
        rank = (int)lead + (net ? (int)n : 0);
    } else {
        full = lead == n;
        rank = (int)lead;
    }
    if (svc->lb_mode == ZT_LB_STRICT && !full)
        return -1;
    return rank;
}

/* Decides whether ep can serve svc_port and at which target port; sp is
 * the service's entry for svc_port, NULL when it has none (waypoint mode). */
static bool endpoint_target_port(const struct zt_service *svc, const struct zt_port_map *sp,
                                 const struct zt_workload *ep, uint16_t svc_port, uint16_t *target)
{
    const struct zt_workload_service *ws = zt_workload_find_service(ep, svc->key);
    if (ws) {
        for (size_t i = 0; i < ws->n_ports; i++) {
            if (ws->ports[i].service_port == svc_port && ws->ports[i].target_port) {
                *target = ws->ports[i].target_port;
                return true;
            }
        }
    }
    if (sp && sp->target_port) {
        *target = sp->target_port;
        return true;
    }
    if (ep->has_application_tunnel) {
        *target = svc_port;
        return true;
    }
    return false;
}

static bool family_allowed(enum zt_ip_families f, const struct zt_ip *ip);

/* An endpoint is picked only if the proxy can reach it: healthy (or the
 * service allows any), and on the client's network with an address of a
 * family the service allows or else a hostname (resolved when picked, as
 * Istio's ztunnel does), or on another network behind a network gateway,
 * as Istio's ztunnel admits them: it is reached by double HBONE through
 * the gateway, and its own addresses are never dialed. One on another
 * network without a gateway cannot be reached at all (Istio picks it and
 * fails the connection; leaving it out lets a reachable endpoint serve
 * instead). */
static bool endpoint_usable(const struct zt_service *svc, const struct zt_workload *client,
                            const struct zt_workload *ep)
{
    if (ep->status == ZT_WL_UNHEALTHY && svc->lb_health != ZT_LB_ALLOW_ALL)
        return false;
    if (client && strcmp(client->network, ep->network) != 0)
        return ep->network_gateway.kind != ZT_GATEWAY_NONE;
    for (size_t i = 0; i < ep->n_addresses; i++)
        if (family_allowed(svc->ip_families, &ep->addresses[i]))
            return true;
    return ep->hostname && ep->hostname[0];
}

/* How a service is load-balanced: for a client dialing it (STANDARD), or
 * as a waypoint (WAYPOINT: the port is the GatewayAddress's HBONE port,
 * and an endpoint with an application tunnel qualifies even when the
 * service does not define that port, as Istio's ztunnel resolves them). */
enum resolution_mode { RESOLVE_STANDARD, RESOLVE_WAYPOINT };

/* Whether ep takes part in the pick, and at which target port. any_network
 * lifts the client's-network rule (only to tell why nothing was found). */
static bool endpoint_eligible(const struct zt_service *svc, const struct zt_port_map *sp,
                              const struct zt_workload *client, const struct zt_workload *ep,
                              uint16_t svc_port, bool any_network, uint16_t *tp)
{
    if (!sp && !ep->has_application_tunnel)
        return false;
    return endpoint_usable(svc, any_network ? NULL : client, ep) &&
           endpoint_target_port(svc, sp, ep, svc_port, tp);
}

static int pick(const struct zt_state *s, const struct zt_service *svc, uint16_t svc_port,
                const struct zt_workload *client, uint32_t random_value, enum resolution_mode mode,
                bool any_network, const struct zt_workload **out_wl, uint16_t *out_target_port)
{
    const struct zt_workload *const *eps;
    const struct zt_port_map *sp = zt_service_find_port(svc, svc_port);
    size_t n_eps = zt_state_service_endpoints(s, svc, &eps);
    int best_rank = -1;
    uint64_t total = 0, pick_at;
    bool all_zero = false;
    uint16_t tp;

    if ((!sp && mode == RESOLVE_STANDARD) || n_eps == 0)
        return ZT_E_NOT_FOUND;

    /* Pass 1: best rank among usable endpoints. */
    for (size_t i = 0; i < n_eps; i++) {
        int r;
        if (!endpoint_eligible(svc, sp, client, eps[i], svc_port, any_network, &tp))
            continue;
        r = endpoint_rank(svc, client, eps[i]);
        if (r > best_rank)
            best_rank = r;
    }
    if (best_rank < 0)
        return ZT_E_NOT_FOUND;

    /* Pass 2: total capacity of the best group. Capacity 0 everywhere means
     * "no weights": treat each as 1 rather than refusing to pick. */
    for (int pass = 0; pass < 2 && total == 0; pass++) {
        all_zero = pass == 1;
        for (size_t i = 0; i < n_eps; i++) {
            if (!endpoint_eligible(svc, sp, client, eps[i], svc_port, any_network, &tp) ||
                endpoint_rank(svc, client, eps[i]) != best_rank)
                continue;
            total += all_zero ? 1 : eps[i]->capacity;
        }
    }

    /* Pass 3: weighted choice. */
    pick_at = random_value % total;
    for (size_t i = 0; i < n_eps; i++) {
        uint64_t w;
        if (!endpoint_eligible(svc, sp, client, eps[i], svc_port, any_network, &tp) ||
            endpoint_rank(svc, client, eps[i]) != best_rank)
            continue;
        w = all_zero ? 1 : eps[i]->capacity;
        if (pick_at < w) {
            *out_wl = eps[i];
            *out_target_port = tp;
            return 0;
        }
        pick_at -= w;
    }
    return ZT_E_NOT_FOUND; /* not reached: pick_at < total */
}

int zt_state_pick_endpoint(const struct zt_state *s, const struct zt_service *svc,
                           uint16_t svc_port, const struct zt_workload *client,
                           uint32_t random_value, const struct zt_workload **out_wl,
                           uint16_t *out_target_port)
{
    return pick(s, svc, svc_port, client, random_value, RESOLVE_STANDARD, false, out_wl,
                out_target_port);
}

static bool family_allowed(enum zt_ip_families f, const struct zt_ip *ip)
{
    if (f == ZT_IPF_IPV4_ONLY)
        return ip->family == AF_INET;
    if (f == ZT_IPF_IPV6_ONLY)
        return ip->family == AF_INET6;
    return true;
}

/* Chooses which of the endpoint's addresses to dial: one of dst's family
 * if it has one, else the first the families allow. */
static void select_endpoint_ip(enum zt_ip_families families, const struct zt_workload *ep,
                               const struct zt_ip *dst, struct zt_upstream *out)
{
    const struct zt_ip *fallback = NULL;
    out->has_ip = false;
    for (size_t i = 0; i < ep->n_addresses; i++) {
        const struct zt_ip *a = &ep->addresses[i];
        if (!family_allowed(families, a))
            continue;
        if (a->family == dst->family) {
            out->ip = *a;
            out->has_ip = true;
            return;
        }
        if (!fallback)
            fallback = a;
    }
    if (fallback) {
        out->ip = *fallback;
        out->has_ip = true;
    }
}

/* An independent-looking second random number from the first (murmur3's
 * finalizer): a connection that picks a weighted waypoint and then one of
 * its endpoints must not make the second choice follow the first. */
static uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x85ebca6bU;
    x ^= x >> 13;
    x *= 0xc2b2ae35U;
    x ^= x >> 16;
    return x;
}

/* The service "ns/hostname", or NULL. */
static const struct zt_service *service_by_name(const struct zt_state *s, const char *ns,
                                                const char *hostname)
{
    char key[512];
    int n = snprintf(key, sizeof(key), "%s/%s", ns ? ns : "", hostname ? hostname : "");
    if (n < 0 || (size_t)n >= sizeof(key))
        return NULL; /* longer than any key the builder accepts as a name */
    return zt_state_service_by_key(s, key);
}

/* The first workload (uid order) with that namespace and hostname, as
 * Istio falls back to when no service has the name: a rare path, so a scan
 * rather than another index. */
static const struct zt_workload *workload_by_hostname(const struct zt_state *s, const char *ns,
                                                      const char *hostname)
{
    if (!hostname || !*hostname)
        return NULL;
    for (size_t i = 0; i < s->n_wls; i++) {
        const struct zt_workload *wl = s->wls[i];
        if (strcmp(wl->hostname, hostname) == 0 && strcmp(wl->namespace, ns ? ns : "") == 0)
            return wl;
    }
    return NULL;
}

/* The GatewayAddress serving svc for one connection: one of its weighted
 * waypoints in proportion to weight (zero-weight ones never), else, with
 * none or only zero weights, its single waypoint; NULL when it has none. */
static const struct zt_gateway *service_waypoint(const struct zt_service *svc,
                                                 uint32_t random_value)
{
    uint64_t total = 0, at;
    for (size_t i = 0; i < svc->n_weighted_waypoints; i++)
        total += svc->weighted_waypoints[i].weight;
    if (total > 0) {
        at = random_value % total;
        for (size_t i = 0; i < svc->n_weighted_waypoints; i++) {
            if (at < svc->weighted_waypoints[i].weight)
                return &svc->weighted_waypoints[i].destination;
            at -= svc->weighted_waypoints[i].weight;
        }
    }
    return svc->waypoint.kind != ZT_GATEWAY_NONE ? &svc->waypoint : NULL;
}

static bool same_identity(const struct zt_workload *a, const struct zt_workload *b)
{
    return strcmp(a->trust_domain, b->trust_domain) == 0 &&
           strcmp(a->namespace, b->namespace) == 0 &&
           strcmp(a->service_account, b->service_account) == 0;
}

/* Whether the client is one of the workloads making up waypoint gw: one
 * with the client's identity that owns src_ip (Istio's check_from_waypoint:
 * a waypoint's own outbound traffic must not be sent back to it). The
 * gateway is looked up as a workload, then a service, by IP; or as a
 * service, then a workload, by name; a service's endpoints count whatever
 * their health. */
static bool client_is_waypoint(const struct zt_state *s, const struct zt_gateway *gw,
                               const struct zt_workload *client, const struct zt_ip *src_ip)
{
    const struct zt_service *svc = NULL;
    const struct zt_workload *wl = NULL;
    const struct zt_workload *const *eps;
    size_t n;

    if (!client || !src_ip)
        return false;
    if (gw->kind == ZT_GATEWAY_ADDRESS) {
        wl = zt_state_workload_by_ip(s, gw->network, &gw->ip);
        if (!wl)
            svc = zt_state_service_lookup(s, gw->network, &gw->ip, NULL);
    } else if (gw->kind == ZT_GATEWAY_HOSTNAME) {
        svc = service_by_name(s, gw->namespace, gw->hostname);
        if (!svc)
            wl = workload_by_hostname(s, gw->namespace, gw->hostname);
    }
    if (wl)
        return same_identity(wl, client) && zt_workload_has_ip(wl, src_ip);
    if (!svc)
        return false;
    n = zt_state_service_endpoints(s, svc, &eps);
    for (size_t i = 0; i < n; i++)
        if (same_identity(eps[i], client) && zt_workload_has_ip(eps[i], src_ip))
            return true;
    return false;
}

bool zt_state_gateway_is_self(const struct zt_state *s, const struct zt_gateway *gw,
                              const struct zt_workload *self, const struct zt_ip *accepted)
{
    if (!gw || gw->kind == ZT_GATEWAY_NONE)
        return false;
    /* The waypoint, found as Istio's find_destination finds it. */
    const struct zt_workload *wwl = NULL;
    const struct zt_service *wsvc = NULL;
    if (gw->kind == ZT_GATEWAY_ADDRESS) {
        wwl = zt_state_workload_by_ip(s, gw->network, &gw->ip);
        if (!wwl)
            wsvc = zt_state_service_by_vip(s, gw->network, &gw->ip);
    } else {
        wsvc = service_by_name(s, gw->namespace, gw->hostname);
        if (!wsvc)
            wwl = workload_by_hostname(s, gw->namespace, gw->hostname);
    }
    if (wwl)
        return zt_workload_has_ip(wwl, accepted);
    return wsvc && zt_workload_find_service(self, wsvc->key) != NULL;
}

bool zt_state_is_waypoint_for(const struct zt_state *s, const char *network,
                              const struct zt_ip *target, const struct zt_workload *self,
                              const struct zt_ip *accepted)
{
    /* The target: a workload by IP, else a service by VIP. */
    const struct zt_gateway *gw = NULL;
    const struct zt_workload *twl = zt_state_workload_by_ip(s, network, target);
    const struct zt_service *tsvc = twl ? NULL : zt_state_service_by_vip(s, network, target);
    if (twl)
        gw = &twl->waypoint;
    else if (tsvc)
        gw = &tsvc->waypoint;
    return zt_state_gateway_is_self(s, gw, self, accepted);
}

/* Fills out->wl, ip, port and sans with the network gateway gw names
 * (Istio's fetch_network_gateway): by IP, the service with that VIP on the
 * gateway's network, else the workload with that IP; by name, the service
 * "namespace/hostname", else a workload with that hostname. A service is
 * load-balanced on hbone_mtls_port like any service dialed there (its
 * endpoints are on the gateway's network, not the client's, so the network
 * rule is lifted); the dial port is then the endpoint's target port for
 * it. A workload is dialed at hbone_mtls_port. The address dialed is the
 * gateway's IP when it names one the workload has, else one of prefer's
 * family if there is one. The outer tunnel expects the gateway workload's
 * identity or one of its service's SANs. Returns 0 or ZT_E_NOT_FOUND. */
static int resolve_gateway(const struct zt_state *s, const struct zt_gateway *gw,
                           const struct zt_workload *client, const struct zt_ip *prefer,
                           uint32_t random_value, struct zt_upstream *out)
{
    const char *client_ns = client ? client->namespace : NULL;
    const struct zt_service *gsvc = NULL;
    const struct zt_workload *gwl = NULL;
    uint16_t port = gw->hbone_mtls_port;

    out->wl = NULL;
    out->has_ip = false;
    out->sans = NULL;
    out->n_sans = 0;
    if (port == 0)
        return ZT_E_NOT_FOUND;
    if (gw->kind == ZT_GATEWAY_ADDRESS) {
        prefer = &gw->ip;
        gsvc = zt_state_service_lookup(s, gw->network, &gw->ip, client_ns);
        if (!gsvc)
            gwl = zt_state_workload_by_ip(s, gw->network, &gw->ip);
    } else if (gw->kind == ZT_GATEWAY_HOSTNAME) {
        gsvc = service_by_name(s, gw->namespace, gw->hostname);
        if (!gsvc)
            gwl = workload_by_hostname(s, gw->namespace, gw->hostname);
    }
    if (gsvc) {
        if (gsvc->lb_mode == ZT_LB_PASSTHROUGH ||
            pick(s, gsvc, gw->hbone_mtls_port, client, random_value, RESOLVE_STANDARD, true, &gwl,
                 &port) < 0)
            return ZT_E_NOT_FOUND;
        out->sans = gsvc->subject_alt_names;
        out->n_sans = gsvc->n_subject_alt_names;
    }
    if (!gwl)
        return ZT_E_NOT_FOUND;
    if (zt_workload_has_ip(gwl, prefer)) {
        out->ip = *prefer;
        out->has_ip = true;
    } else {
        select_endpoint_ip(gsvc ? gsvc->ip_families : ZT_IPF_AUTOMATIC, gwl, prefer, out);
    }
    if (!out->has_ip)
        return ZT_E_NOT_FOUND; /* hostname-only: nothing resolves it yet */
    out->wl = gwl;
    out->port = port;
    return 0;
}

/* out->wl (with out->sans, its service's SANs) was picked and is on another
 * network than the client's: turns out into the double HBONE plan through
 * that workload's network gateway (Istio's build_request_through_gateway).
 * Only service-addressed traffic crosses networks (both CONNECTs name the
 * service); without that, or without a gateway, the call fails with
 * `unreachable`; a gateway that resolves to nothing fails it with
 * ZT_UPSTREAM_FAIL_GATEWAY_UNKNOWN. Returns 0 or ZT_E_NOT_FOUND. */
static int through_gateway(const struct zt_state *s, const struct zt_workload *client,
                           bool svc_addressed, const struct zt_ip *dst, uint16_t dst_port,
                           uint32_t random_value, struct zt_upstream *out,
                           enum zt_upstream_fail unreachable)
{
    const struct zt_workload *remote = out->wl;
    char *const *final_sans = out->sans;
    size_t n_final_sans = out->n_sans;

    if (!svc_addressed || remote->network_gateway.kind == ZT_GATEWAY_NONE) {
        out->wl = NULL;
        out->fail = unreachable;
        return ZT_E_NOT_FOUND;
    }
    if (resolve_gateway(s, &remote->network_gateway, client, dst, random_value, out) < 0) {
        out->fail = ZT_UPSTREAM_FAIL_GATEWAY_UNKNOWN;
        return ZT_E_NOT_FOUND;
    }
    out->is_hbone = true;
    out->is_double_hbone = true;
    out->final_wl = remote;
    out->final_sans = final_sans;
    out->n_final_sans = n_final_sans;
    out->svc_port = dst_port;
    out->fail = ZT_UPSTREAM_FAIL_NONE;
    return 0;
}

int zt_state_plan_through_gateway(const struct zt_state *s, const struct zt_workload *client,
                                  const struct zt_service *svc, uint16_t svc_port,
                                  const struct zt_workload *wl, uint16_t port,
                                  uint32_t random_value, struct zt_upstream *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = ZT_UPSTREAM_SERVICE;
    out->svc = svc;
    out->wl = wl;
    out->port = port;
    out->is_hbone = true;
    out->sans = svc ? svc->subject_alt_names : NULL;
    out->n_sans = svc ? svc->n_subject_alt_names : 0;
    if (!client || client->n_addresses == 0) {
        out->wl = NULL;
        out->fail = ZT_UPSTREAM_FAIL_GATEWAY_UNKNOWN;
        return ZT_E_NOT_FOUND;
    }
    return through_gateway(s, client, svc != NULL, &client->addresses[0], svc_port, random_value,
                           out, ZT_UPSTREAM_FAIL_NOT_SERVICE);
}

/* Fills out with the waypoint gw names (Istio's fetch_waypoint): by IP, the
 * service with that VIP (load-balanced in waypoint mode on the HBONE port)
 * or else the workload with that IP, dialed at that IP; by name, the
 * service (the same way) or else a workload with that hostname, dialed at
 * an address of dst's family if it has one. A waypoint on another network
 * is reached by double HBONE through its network gateway, for
 * service-addressed traffic only (svc_addressed; dst_port is the port
 * dialed); like any service, a waypoint service's endpoints on other
 * networks without a gateway are left out, and if they are all it has,
 * that is the failure. Returns 0 or ZT_E_NOT_FOUND with out->fail set. */
static int resolve_waypoint(const struct zt_state *s, const struct zt_gateway *gw,
                            const struct zt_workload *client, bool svc_addressed,
                            const struct zt_ip *dst, uint16_t dst_port, uint32_t random_value,
                            struct zt_upstream *out)
{
    const char *network = client ? client->network : "";
    const char *client_ns = client ? client->namespace : NULL;
    const struct zt_service *wsvc = NULL;
    const struct zt_workload *wl = NULL;
    const struct zt_ip *prefer = dst;
    uint16_t port = gw->hbone_mtls_port;

    out->kind = ZT_UPSTREAM_WAYPOINT;
    out->wl = NULL;
    out->has_ip = false;
    out->is_hbone = true;
    out->sans = NULL;
    out->n_sans = 0;
    out->fail = ZT_UPSTREAM_FAIL_WAYPOINT_UNKNOWN;
    if (port == 0)
        return ZT_E_NOT_FOUND;
    if (gw->kind == ZT_GATEWAY_ADDRESS) {
        prefer = &gw->ip;
        wsvc = zt_state_service_lookup(s, gw->network, &gw->ip, client_ns);
        if (!wsvc)
            wl = zt_state_workload_by_ip(s, gw->network, &gw->ip);
    } else if (gw->kind == ZT_GATEWAY_HOSTNAME) {
        wsvc = service_by_name(s, gw->namespace, gw->hostname);
        if (!wsvc)
            wl = workload_by_hostname(s, gw->namespace, gw->hostname);
    }
    if (wsvc) {
        const struct zt_workload *remote;
        uint16_t tp;
        if (wsvc->lb_mode == ZT_LB_PASSTHROUGH)
            return ZT_E_NOT_FOUND;
        if (pick(s, wsvc, gw->hbone_mtls_port, client, random_value, RESOLVE_WAYPOINT, false, &wl,
                 &port) < 0) {
            if (pick(s, wsvc, gw->hbone_mtls_port, client, random_value, RESOLVE_WAYPOINT, true,
                     &remote, &tp) == 0)
                out->fail = ZT_UPSTREAM_FAIL_WAYPOINT_NETWORK;
            return ZT_E_NOT_FOUND;
        }
        out->sans = wsvc->subject_alt_names;
        out->n_sans = wsvc->n_subject_alt_names;
    }
    if (!wl)
        return ZT_E_NOT_FOUND;
    if (strcmp(wl->network, network) != 0) {
        out->wl = wl;
        return through_gateway(s, client, svc_addressed, dst, dst_port, mix32(random_value), out,
                               ZT_UPSTREAM_FAIL_WAYPOINT_NETWORK);
    }
    if (zt_workload_has_ip(wl, prefer)) {
        out->ip = *prefer;
        out->has_ip = true;
    } else {
        select_endpoint_ip(wsvc ? wsvc->ip_families : ZT_IPF_AUTOMATIC, wl, prefer, out);
    }
    /* A waypoint known by hostname only is resolved when dialed, as any
     * endpoint (Istio's pick_workload_destination_or_resolve). */
    if (!out->has_ip && !(wl->hostname && wl->hostname[0]))
        return ZT_E_NOT_FOUND;
    out->needs_dns = !out->has_ip;
    out->wl = wl;
    out->port = port;
    out->fail = ZT_UPSTREAM_FAIL_NONE;
    return 0;
}

int zt_state_resolve_outbound(const struct zt_state *s, const struct zt_workload *client,
                              const struct zt_ip *src_ip, const struct zt_ip *dst_in,
                              uint16_t dst_port, uint32_t random_value, struct zt_upstream *out)
{
    const char *network = client ? client->network : "";
    const char *client_ns = client ? client->namespace : NULL;
    const struct zt_service *svc;
    const struct zt_workload *wl, *by_ip;
    const struct zt_gateway *gw;
    struct zt_ip dst = *dst_in;
    bool svc_addressed;
    uint16_t tp;
    int rc;

    zt_ip_canonicalize(&dst);
    memset(out, 0, sizeof(*out));
    out->kind = ZT_UPSTREAM_PASSTHROUGH;
    out->ip = dst;
    out->has_ip = true;
    out->port = dst_port;

    svc = zt_state_service_lookup(s, network, &dst, client_ns);
    by_ip = zt_state_workload_by_ip(s, network, &dst);
    /* As in Istio, an address a workload owns is that workload's even when
     * a (CIDR) VIP covers it: it is not service-addressed. */
    svc_addressed = svc && !by_ip;

    /* 1. A service's waypoint comes first, even for PASSTHROUGH services. */
    if (svc_addressed && (gw = service_waypoint(svc, random_value))) {
        rc = resolve_waypoint(s, gw, client, true, &dst, dst_port, mix32(random_value), out);
        out->svc = svc;
        return rc;
    }

    /* 2. The upstream itself. */
    if (svc) {
        out->svc = svc;
        if (svc->lb_mode == ZT_LB_PASSTHROUGH)
            return 0;
        rc = zt_state_pick_endpoint(s, svc, dst_port, client, random_value, &wl, &tp);
        if (rc) {
            out->fail = ZT_UPSTREAM_FAIL_NO_ENDPOINT;
            return rc;
        }
        out->kind = ZT_UPSTREAM_SERVICE;
        out->wl = wl;
        out->port = tp;
        out->is_hbone = wl->protocol == ZT_WL_PROTO_HBONE;
        out->sans = svc->subject_alt_names;
        out->n_sans = svc->n_subject_alt_names;
        if (client && strcmp(wl->network, network) != 0)
            return through_gateway(
                s, client, svc_addressed, &dst, dst_port, mix32(random_value), out,
                svc_addressed ? ZT_UPSTREAM_FAIL_NO_ENDPOINT : ZT_UPSTREAM_FAIL_NOT_SERVICE);
        /* The dialed IP is kept if it is the endpoint's own (CIDR VIPs can
         * cover pod IPs); otherwise pick one of the endpoint's. */
        if (!zt_workload_has_ip(wl, &dst))
            select_endpoint_ip(svc->ip_families, wl, &dst, out);
        /* No address of its own: its hostname is resolved when dialed. */
        out->needs_dns = !out->has_ip;
    } else if (by_ip) {
        out->kind = ZT_UPSTREAM_WORKLOAD;
        out->wl = by_ip;
        out->is_hbone = by_ip->protocol == ZT_WL_PROTO_HBONE;
    } else {
        return 0;
    }

    /* 3. The upstream workload's own waypoint, for traffic to its pod IP,
     * unless the client is that waypoint (its traffic would loop). */
    if (!svc_addressed && out->wl->waypoint.kind != ZT_GATEWAY_NONE &&
        !client_is_waypoint(s, &out->wl->waypoint, client, src_ip)) {
        svc = out->svc; /* the service behind it, if a CIDR VIP picked it */
        rc = resolve_waypoint(s, &out->wl->waypoint, client, false, &dst, dst_port,
                              mix32(random_value), out);
        out->svc = svc;
        return rc;
    }
    return 0;
}
