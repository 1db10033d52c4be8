/* Endpoint selection and outbound destination resolution (wire facts 9.3).
 *
 * The random value is an argument so that the choice is a pure function of
 * its inputs: callers pass a fresh random number, tests pass constants. */
#include "state/state_int.h"

#include "base/err.h"

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
 * rest is ranked regardless and a matching network adds len - 1. */
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
        rank = (int)lead + (net ? (int)(n - 1) : 0);
    } else {
        full = lead == n;
        rank = (int)lead;
    }
    if (svc->lb_mode == ZT_LB_STRICT && !full)
        return -1;
    return rank;
}

/* Decides whether ep can serve svc_port and at which target port. */
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
    if (sp->target_port) {
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

/* An endpoint is picked only if the proxy can dial it: healthy (or the
 * service allows any), with an address of a family the service allows, on
 * the client's network. Hostname-only endpoints need on-demand DNS and
 * endpoints on another network need double HBONE through its gateway;
 * until the proxy has those, picking them would fail the connection. */
static bool endpoint_usable(const struct zt_service *svc, const struct zt_workload *client,
                            const struct zt_workload *ep)
{
    if (ep->status == ZT_WL_UNHEALTHY && svc->lb_health != ZT_LB_ALLOW_ALL)
        return false;
    if (client && strcmp(client->network, ep->network) != 0)
        return false;
    for (size_t i = 0; i < ep->n_addresses; i++)
        if (family_allowed(svc->ip_families, &ep->addresses[i]))
            return true;
    return false;
}

int zt_state_pick_endpoint(const struct zt_state *s, const struct zt_service *svc,
                           uint16_t svc_port, const struct zt_workload *client,
                           uint32_t random_value, const struct zt_workload **out_wl,
                           uint16_t *out_target_port)
{
    const struct zt_workload *const *eps;
    const struct zt_port_map *sp = zt_service_find_port(svc, svc_port);
    size_t n_eps = zt_state_service_endpoints(s, svc, &eps);
    int best_rank = -1;
    uint64_t total = 0, pick;
    bool all_zero = false;

    if (!sp || n_eps == 0)
        return ZT_E_NOT_FOUND;

    /* Pass 1: best rank among usable endpoints. */
    for (size_t i = 0; i < n_eps; i++) {
        uint16_t tp;
        int r;
        if (!endpoint_usable(svc, client, eps[i]) ||
            !endpoint_target_port(svc, sp, eps[i], svc_port, &tp))
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
            uint16_t tp;
            if (!endpoint_usable(svc, client, eps[i]) ||
                !endpoint_target_port(svc, sp, eps[i], svc_port, &tp) ||
                endpoint_rank(svc, client, eps[i]) != best_rank)
                continue;
            total += all_zero ? 1 : eps[i]->capacity;
        }
    }

    /* Pass 3: weighted choice. */
    pick = random_value % total;
    for (size_t i = 0; i < n_eps; i++) {
        uint16_t tp;
        uint64_t w;
        if (!endpoint_usable(svc, client, eps[i]) ||
            !endpoint_target_port(svc, sp, eps[i], svc_port, &tp) ||
            endpoint_rank(svc, client, eps[i]) != best_rank)
            continue;
        w = all_zero ? 1 : eps[i]->capacity;
        if (pick < w) {
            *out_wl = eps[i];
            *out_target_port = tp;
            return 0;
        }
        pick -= w;
    }
    return ZT_E_NOT_FOUND; /* not reached: pick < total */
}

static bool family_allowed(enum zt_ip_families f, const struct zt_ip *ip)
{
    if (f == ZT_IPF_IPV4_ONLY)
        return ip->family == AF_INET;
    if (f == ZT_IPF_IPV6_ONLY)
        return ip->family == AF_INET6;
    return true;
}

/* Chooses which of the endpoint's addresses to dial for a service. */
static void select_endpoint_ip(const struct zt_service *svc, const struct zt_workload *ep,
                               const struct zt_ip *dst, struct zt_upstream *out)
{
    const struct zt_ip *fallback = NULL;
    out->has_ip = false;
    for (size_t i = 0; i < ep->n_addresses; i++) {
        const struct zt_ip *a = &ep->addresses[i];
        if (!family_allowed(svc->ip_families, a))
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

int zt_state_resolve_outbound(const struct zt_state *s, const struct zt_workload *client,
                              const struct zt_ip *dst_in, uint16_t dst_port, uint32_t random_value,
                              struct zt_upstream *out)
{
    const char *network = client ? client->network : "";
    const char *client_ns = client ? client->namespace : NULL;
    const struct zt_service *svc;
    const struct zt_workload *wl;
    struct zt_ip dst = *dst_in;
    uint16_t tp;
    int rc;

    zt_ip_canonicalize(&dst);
    memset(out, 0, sizeof(*out));
    out->kind = ZT_UPSTREAM_PASSTHROUGH;
    out->ip = dst;
    out->has_ip = true;
    out->port = dst_port;

    svc = zt_state_service_lookup(s, network, &dst, client_ns);
    if (svc) {
        out->svc = svc;
        if (svc->lb_mode == ZT_LB_PASSTHROUGH)
            return 0;
        rc = zt_state_pick_endpoint(s, svc, dst_port, client, random_value, &wl, &tp);
        if (rc)
            return rc;
        out->kind = ZT_UPSTREAM_SERVICE;
        out->wl = wl;
        out->port = tp;
        out->is_hbone = wl->protocol == ZT_WL_PROTO_HBONE;
        out->sans = svc->subject_alt_names;
        out->n_sans = svc->n_subject_alt_names;
        /* The dialed IP is kept if it is the endpoint's own (CIDR VIPs can
         * cover pod IPs); otherwise pick one of the endpoint's. */
        if (!zt_workload_has_ip(wl, &dst))
            select_endpoint_ip(svc, wl, &dst, out);
        return 0;
    }

    wl = zt_state_workload_by_ip(s, network, &dst);
    if (wl) {
        out->kind = ZT_UPSTREAM_WORKLOAD;
        out->wl = wl;
        out->is_hbone = wl->protocol == ZT_WL_PROTO_HBONE;
    }
    return 0;
}
