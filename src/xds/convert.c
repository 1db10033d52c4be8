/* Conversion of istio.workload / istio.security protobuf messages into state
 * objects. Every value from the wire is checked before it is stored: list
 * lengths and string sizes against the caps of convert.h, enums against the
 * values we know, addresses against their two legal sizes. Error text names
 * the field by its path inside the resource ("services[\"ns/h\"].ports[0]"
 * would be too long to be useful, so map entries are indexed by position). */
#include "xds/convert.h"

#include "base/err.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest field path we build; deeper paths are truncated, never overrun. */
#define PATH_LEN 160

__attribute__((format(printf, 3, 4))) static void path_fmt(char *buf, size_t len, const char *fmt,
                                                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static int check_list(size_t n, const char *path, char *err, size_t errlen)
{
    if (n > ZT_XDS_MAX_LIST)
        return zt_errf(err, errlen, ZT_E_TOO_BIG, "%s: %zu elements, at most %d allowed", path, n,
                       ZT_XDS_MAX_LIST);
    return 0;
}

/* Copies a wire string (NULL reads as "") into *out after the size cap. */
static int get_str(const char *s, const char *path, char **out, char *err, size_t errlen)
{
    size_t n;
    if (!s)
        s = "";
    n = strnlen(s, ZT_XDS_MAX_STR + 1);
    if (n > ZT_XDS_MAX_STR)
        return zt_errf(err, errlen, ZT_E_TOO_BIG, "%s: longer than %d bytes", path, ZT_XDS_MAX_STR);
    free(*out);
    *out = zt_state_xstrdup(s);
    return 0;
}

static int get_port(uint32_t v, const char *path, uint16_t *out, char *err, size_t errlen)
{
    if (v > 65535)
        return zt_errf(err, errlen, ZT_E_PROTO, "%s: %u is not a port", path, (unsigned)v);
    *out = (uint16_t)v;
    return 0;
}

/* Enum check: the value must be in [0, max]. *out is always written. */
static int get_enum(int v, int max, const char *path, int *out, char *err, size_t errlen)
{
    *out = 0;
    if (v < 0 || v > max)
        return zt_errf(err, errlen, ZT_E_PROTO, "%s: unknown enum value %d", path, v);
    *out = v;
    return 0;
}

static int get_ip(const ProtobufCBinaryData *b, const char *path, struct zt_ip *out, char *err,
                  size_t errlen)
{
    if (!b->data || (b->len != 4 && b->len != 16))
        return zt_errf(err, errlen, ZT_E_PROTO, "%s: length %zu, want 4 or 16", path,
                       b->data ? b->len : 0);
    if (zt_ip_from_bytes(b->data, b->len, out))
        return zt_errf(err, errlen, ZT_E_PROTO, "%s: bad address", path);
    return 0;
}

/* Raw address bytes plus prefix length -> CIDR. The text round trip reuses
 * zt_cidr_parse, which already clears host bits and maps ::ffff:a.b.c.d/N
 * (N >= 96) onto IPv4, so YAML and xDS policies agree exactly. */
static int get_cidr(const ProtobufCBinaryData *b, uint32_t prefix, const char *path,
                    struct zt_cidr *out, char *err, size_t errlen)
{
    char ip[ZT_IP_STRLEN], text[ZT_IP_STRLEN + 16];
    int family;
    if (!b->data || (b->len != 4 && b->len != 16))
        return zt_errf(err, errlen, ZT_E_PROTO, "%s: length %zu, want 4 or 16", path,
                       b->data ? b->len : 0);
    family = b->len == 4 ? AF_INET : AF_INET6;
    if (prefix > (b->len == 4 ? 32u : 128u))
        return zt_errf(err, errlen, ZT_E_PROTO, "%s: prefix length %u longer than the address",
                       path, (unsigned)prefix);
    if (!inet_ntop(family, b->data, ip, sizeof(ip)))
        return zt_errf(err, errlen, ZT_E_PROTO, "%s: bad address", path);
    snprintf(text, sizeof(text), "%s/%u", ip, (unsigned)prefix);
    if (zt_cidr_parse(text, out))
        return zt_errf(err, errlen, ZT_E_PROTO, "%s: bad CIDR %s", path, text);
    return 0;
}

static int get_gateway(const Istio__Workload__GatewayAddress *pb, const char *path,
                       struct zt_gateway *g, char *err, size_t errlen)
{
    char sub[PATH_LEN];
    int rc;

    path_fmt(sub, sizeof(sub), "%s.hbone_mtls_port", path);
    if ((rc = get_port(pb->hbone_mtls_port, sub, &g->hbone_mtls_port, err, errlen)))
        return rc;
    switch (pb->destination_case) {
    case ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_HOSTNAME:
        if (!pb->hostname)
            return zt_errf(err, errlen, ZT_E_PROTO, "%s.hostname: missing", path);
        g->kind = ZT_GATEWAY_HOSTNAME;
        path_fmt(sub, sizeof(sub), "%s.hostname.namespace", path);
        if ((rc = get_str(pb->hostname->namespace_, sub, &g->namespace, err, errlen)))
            return rc;
        path_fmt(sub, sizeof(sub), "%s.hostname.hostname", path);
        if ((rc = get_str(pb->hostname->hostname, sub, &g->hostname, err, errlen)))
            return rc;
        if (!g->hostname[0])
            return zt_errf(err, errlen, ZT_E_PROTO, "%s: empty", sub);
        return 0;
    case ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_ADDRESS:
        if (!pb->address)
            return zt_errf(err, errlen, ZT_E_PROTO, "%s.address: missing", path);
        g->kind = ZT_GATEWAY_ADDRESS;
        path_fmt(sub, sizeof(sub), "%s.address.network", path);
        if ((rc = get_str(pb->address->network, sub, &g->network, err, errlen)))
            return rc;
        path_fmt(sub, sizeof(sub), "%s.address.address", path);
        return get_ip(&pb->address->address, sub, &g->ip, err, errlen);
    default:
        return zt_errf(err, errlen, ZT_E_PROTO, "%s: destination not set", path);
    }
}

static int get_ports(Istio__Workload__Port *const *v, size_t n, const char *path,
                     struct zt_port_map **out, size_t *n_out, char *err, size_t errlen)
{
    char sub[PATH_LEN];
    int rc;
    if ((rc = check_list(n, path, err, errlen)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct zt_port_map *pm = zt_state_array_push(out, n_out, sizeof(*pm));
        if (!v[i])
            return zt_errf(err, errlen, ZT_E_PROTO, "%s[%zu]: missing", path, i);
        path_fmt(sub, sizeof(sub), "%s[%zu].service_port", path, i);
        if ((rc = get_port(v[i]->service_port, sub, &pm->service_port, err, errlen)))
            return rc;
        path_fmt(sub, sizeof(sub), "%s[%zu].target_port", path, i);
        if ((rc = get_port(v[i]->target_port, sub, &pm->target_port, err, errlen)))
            return rc;
        /* A protocol this build does not know is one to sniff. */
        int ap = (int)v[i]->app_protocol;
        pm->app_protocol = ap >= ZT_APP_UNKNOWN && ap <= ZT_APP_TLS ? (uint8_t)ap : ZT_APP_UNKNOWN;
    }
    return 0;
}

static int get_str_list(char *const *v, size_t n, const char *path, char ***out, size_t *n_out,
                        char *err, size_t errlen)
{
    char sub[PATH_LEN];
    int rc;
    if ((rc = check_list(n, path, err, errlen)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        char **slot = zt_state_array_push(out, n_out, sizeof(char *));
        path_fmt(sub, sizeof(sub), "%s[%zu]", path, i);
        if ((rc = get_str(v[i], sub, slot, err, errlen)))
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- workload */

static int wl_services(const Istio__Workload__Workload *pb, struct zt_workload *wl, char *err,
                       size_t errlen)
{
    char sub[PATH_LEN];
    int rc;
    if ((rc = check_list(pb->n_services, "services", err, errlen)))
        return rc;
    for (size_t i = 0; i < pb->n_services; i++) {
        const Istio__Workload__Workload__ServicesEntry *e = pb->services[i];
        struct zt_workload_service *ws = NULL;
        char *key = NULL;
        if (!e)
            return zt_errf(err, errlen, ZT_E_PROTO, "services[%zu]: missing", i);
        path_fmt(sub, sizeof(sub), "services[%zu].key", i);
        if ((rc = get_str(e->key, sub, &key, err, errlen)))
            return rc;
        /* A map key sent twice: the last entry wins, as protobuf says. */
        for (size_t j = 0; j < wl->n_services; j++) {
            if (!strcmp(wl->services[j].key, key)) {
                ws = &wl->services[j];
                free(key);
                free(ws->ports);
                ws->ports = NULL;
                ws->n_ports = 0;
                break;
            }
        }
        if (!ws) {
            ws = zt_state_array_push(&wl->services, &wl->n_services, sizeof(*ws));
            ws->key = key;
        }
        if (e->value) {
            path_fmt(sub, sizeof(sub), "services[%zu].ports", i);
            rc = get_ports(e->value->ports, e->value->n_ports, sub, &ws->ports, &ws->n_ports, err,
                           errlen);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int wl_enums(const Istio__Workload__Workload *pb, struct zt_workload *wl, char *err,
                    size_t errlen)
{
    int v, rc;
    if (pb->tunnel_protocol == ISTIO__WORKLOAD__TUNNEL_PROTOCOL__LEGACY_ISTIO_MTLS)
        return zt_errf(err, errlen, ZT_E_PROTO,
                       "tunnel_protocol: LEGACY_ISTIO_MTLS is not supported");
    if ((rc = get_enum((int)pb->tunnel_protocol, 1, "tunnel_protocol", &v, err, errlen)))
        return rc;
    wl->protocol = v ? ZT_WL_PROTO_HBONE : ZT_WL_PROTO_TCP;
    if ((rc = get_enum((int)pb->workload_type, 3, "workload_type", &v, err, errlen)))
        return rc;
    wl->workload_type = (enum zt_workload_type)v;
    if ((rc = get_enum((int)pb->status, 1, "status", &v, err, errlen)))
        return rc;
    wl->status = (enum zt_workload_status)v;
    if ((rc = get_enum((int)pb->network_mode, 1, "network_mode", &v, err, errlen)))
        return rc;
    wl->network_mode = (enum zt_network_mode)v;
    return 0;
}

static int wl_fill(const Istio__Workload__Workload *pb, struct zt_workload *wl, char *err,
                   size_t errlen)
{
    struct {
        const char *src;
        char **dst;
        const char *name;
    } strs[] = {
        {pb->uid, &wl->uid, "uid"},
        {pb->name, &wl->name, "name"},
        {pb->namespace_, &wl->namespace, "namespace"},
        {pb->hostname, &wl->hostname, "hostname"},
        {pb->network, &wl->network, "network"},
        {pb->trust_domain, &wl->trust_domain, "trust_domain"},
        {pb->service_account, &wl->service_account, "service_account"},
        {pb->node, &wl->node, "node"},
        {pb->canonical_name, &wl->canonical_name, "canonical_name"},
        {pb->canonical_revision, &wl->canonical_revision, "canonical_revision"},
        {pb->workload_name, &wl->workload_name, "workload_name"},
        {pb->cluster_id, &wl->cluster_id, "cluster_id"},
    };
    char sub[PATH_LEN];
    int rc;

    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if ((rc = get_str(strs[i].src, strs[i].name, strs[i].dst, err, errlen)))
            return rc;
    if (!wl->uid[0])
        return zt_errf(err, errlen, ZT_E_PROTO, "uid: empty");
    if ((rc = check_list(pb->n_addresses, "addresses", err, errlen)))
        return rc;
    for (size_t i = 0; i < pb->n_addresses; i++) {
        struct zt_ip *ip = zt_state_array_push(&wl->addresses, &wl->n_addresses, sizeof(*ip));
        path_fmt(sub, sizeof(sub), "addresses[%zu]", i);
        if ((rc = get_ip(&pb->addresses[i], sub, ip, err, errlen)))
            return rc;
    }
    if ((rc = wl_enums(pb, wl, err, errlen)))
        return rc;
    if (pb->waypoint && (rc = get_gateway(pb->waypoint, "waypoint", &wl->waypoint, err, errlen)))
        return rc;
    if (pb->network_gateway && (rc = get_gateway(pb->network_gateway, "network_gateway",
                                                 &wl->network_gateway, err, errlen)))
        return rc;
    wl->native_tunnel = pb->native_tunnel;
    if (pb->application_tunnel) {
        int v;
        rc = get_enum((int)pb->application_tunnel->protocol, 1, "application_tunnel.protocol", &v,
                      err, errlen);
        if (rc)
            return rc;
        wl->has_application_tunnel = true;
        wl->application_tunnel_protocol = (enum zt_app_tunnel_protocol)v;
        rc = get_port(pb->application_tunnel->port, "application_tunnel.port",
                      &wl->application_tunnel_port, err, errlen);
        if (rc)
            return rc;
    }
    if ((rc = wl_services(pb, wl, err, errlen)))
        return rc;
    rc = get_str_list(pb->authorization_policies, pb->n_authorization_policies,
                      "authorization_policies", &wl->authorization_policies,
                      &wl->n_authorization_policies, err, errlen);
    if (rc)
        return rc;
    if (pb->locality) {
        if ((rc = get_str(pb->locality->region, "locality.region", &wl->locality.region, err,
                          errlen)) ||
            (rc = get_str(pb->locality->zone, "locality.zone", &wl->locality.zone, err, errlen)) ||
            (rc = get_str(pb->locality->subzone, "locality.subzone", &wl->locality.subzone, err,
                          errlen)))
            return rc;
    }
    wl->capacity = pb->capacity ? pb->capacity->value : 1;
    return 0;
}

int zt_xds_workload_from_pb(const Istio__Workload__Workload *pb, struct zt_workload **out,
                            char *err, size_t errlen)
{
    struct zt_workload *wl = zt_workload_new();
    int rc = wl_fill(pb, wl, err, errlen);
    if (rc) {
        zt_workload_unref(wl);
        wl = NULL;
    }
    *out = wl;
    return rc;
}

/* ---------------------------------------------------------------- service */

static int svc_address(const Istio__Workload__NetworkAddress *a, const char *path,
                       struct zt_service *svc, char *err, size_t errlen)
{
    char sub[PATH_LEN];
    uint32_t full;
    int rc;
    if (!a)
        return zt_errf(err, errlen, ZT_E_PROTO, "%s: missing", path);
    full = a->address.len == 4 ? 32 : 128;
    path_fmt(sub, sizeof(sub), "%s.network", path);
    if (a->length_opt_case == ISTIO__WORKLOAD__NETWORK_ADDRESS__LENGTH_OPT_LENGTH &&
        a->length != full) {
        struct zt_cidr_vip *cv =
            zt_state_array_push(&svc->cidr_vips, &svc->n_cidr_vips, sizeof(*cv));
        if ((rc = get_str(a->network, sub, &cv->network, err, errlen)))
            return rc;
        return get_cidr(&a->address, a->length, path, &cv->cidr, err, errlen);
    }
    struct zt_vip *v = zt_state_array_push(&svc->vips, &svc->n_vips, sizeof(*v));
    if ((rc = get_str(a->network, sub, &v->network, err, errlen)))
        return rc;
    return get_ip(&a->address, path, &v->ip, err, errlen);
}

static int svc_load_balancing(const Istio__Workload__LoadBalancing *lb, struct zt_service *svc,
                              char *err, size_t errlen)
{
    char sub[PATH_LEN];
    int v, rc;
    if (lb->n_routing_preference > ZT_LB_MAX_SCOPES)
        return zt_errf(err, errlen, ZT_E_TOO_BIG,
                       "load_balancing.routing_preference: %zu scopes, at most %d",
                       lb->n_routing_preference, ZT_LB_MAX_SCOPES);
    for (size_t i = 0; i < lb->n_routing_preference; i++) {
        int s = (int)lb->routing_preference[i];
        path_fmt(sub, sizeof(sub), "load_balancing.routing_preference[%zu]", i);
        if (s == ISTIO__WORKLOAD__LOAD_BALANCING__SCOPE__UNSPECIFIED_SCOPE)
            return zt_errf(err, errlen, ZT_E_PROTO, "%s: UNSPECIFIED_SCOPE is not allowed", sub);
        if ((rc = get_enum(s, 6, sub, &v, err, errlen)))
            return rc;
        svc->lb_routing[svc->n_lb_routing++] = (enum zt_lb_scope)v;
    }
    if ((rc = get_enum((int)lb->mode, 3, "load_balancing.mode", &v, err, errlen)))
        return rc;
    svc->lb_mode = (enum zt_lb_mode)v;
    if ((rc = get_enum((int)lb->health_policy, 1, "load_balancing.health_policy", &v, err, errlen)))
        return rc;
    svc->lb_health = (enum zt_lb_health)v;
    svc->has_load_balancing = true;
    return 0;
}

static int svc_fill(const Istio__Workload__Service *pb, struct zt_service *svc, char *err,
                    size_t errlen)
{
    char sub[PATH_LEN];
    int v, rc;

    if ((rc = get_str(pb->name, "name", &svc->name, err, errlen)) ||
        (rc = get_str(pb->namespace_, "namespace", &svc->namespace, err, errlen)) ||
        (rc = get_str(pb->hostname, "hostname", &svc->hostname, err, errlen)))
        return rc;
    if (!svc->hostname[0])
        return zt_errf(err, errlen, ZT_E_PROTO, "hostname: empty");
    if ((rc = check_list(pb->n_addresses, "addresses", err, errlen)))
        return rc;
    for (size_t i = 0; i < pb->n_addresses; i++) {
        path_fmt(sub, sizeof(sub), "addresses[%zu]", i);
        if ((rc = svc_address(pb->addresses[i], sub, svc, err, errlen)))
            return rc;
    }
    if ((rc = get_ports(pb->ports, pb->n_ports, "ports", &svc->ports, &svc->n_ports, err, errlen)))
        return rc;
    rc = get_str_list(pb->subject_alt_names, pb->n_subject_alt_names, "subject_alt_names",
                      &svc->subject_alt_names, &svc->n_subject_alt_names, err, errlen);
    if (rc)
        return rc;
    if (pb->waypoint && (rc = get_gateway(pb->waypoint, "waypoint", &svc->waypoint, err, errlen)))
        return rc;
    if (pb->load_balancing && (rc = svc_load_balancing(pb->load_balancing, svc, err, errlen)))
        return rc;
    if ((rc = get_enum((int)pb->ip_families, 3, "ip_families", &v, err, errlen)))
        return rc;
    svc->ip_families = (enum zt_ip_families)v;
    svc->canonical = pb->canonical;
    /* The one lenient enum (wire facts 3.1): anything unknown is PUBLIC. */
    svc->visibility = pb->visibility == ISTIO__WORKLOAD__SERVICE__VISIBILITY__NAMESPACE
                          ? ZT_VIS_NAMESPACE
                          : ZT_VIS_PUBLIC;
    if ((rc = check_list(pb->n_weighted_waypoints, "weighted_waypoints", err, errlen)))
        return rc;
    for (size_t i = 0; i < pb->n_weighted_waypoints; i++) {
        const Istio__Workload__WeightedWaypoint *w = pb->weighted_waypoints[i];
        struct zt_weighted_waypoint *ww =
            zt_state_array_push(&svc->weighted_waypoints, &svc->n_weighted_waypoints, sizeof(*ww));
        path_fmt(sub, sizeof(sub), "weighted_waypoints[%zu].destination", i);
        if (!w || !w->destination)
            return zt_errf(err, errlen, ZT_E_PROTO, "%s: missing", sub);
        if ((rc = get_gateway(w->destination, sub, &ww->destination, err, errlen)))
            return rc;
        ww->weight = w->weight;
    }
    return 0;
}

int zt_xds_service_from_pb(const Istio__Workload__Service *pb, struct zt_service **out, char *err,
                           size_t errlen)
{
    struct zt_service *svc = zt_service_new();
    int rc = svc_fill(pb, svc, err, errlen);
    if (rc) {
        zt_service_unref(svc);
        svc = NULL;
    }
    *out = svc;
    return rc;
}

/* ---------------------------------------------------------------- policy */

static int get_strmatches(Istio__Security__StringMatch *const *v, size_t n, const char *path,
                          struct zt_strmatch_list *l, char *err, size_t errlen)
{
    char sub[PATH_LEN];
    int rc;
    if ((rc = check_list(n, path, err, errlen)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct zt_strmatch *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
        const char *s = NULL;
        path_fmt(sub, sizeof(sub), "%s[%zu]", path, i);
        switch (v[i] ? v[i]->match_type_case : ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE__NOT_SET) {
        case ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_EXACT:
            m->kind = ZT_STRMATCH_EXACT;
            s = v[i]->exact;
            break;
        case ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PREFIX:
            m->kind = ZT_STRMATCH_PREFIX;
            s = v[i]->prefix;
            break;
        case ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_SUFFIX:
            m->kind = ZT_STRMATCH_SUFFIX;
            s = v[i]->suffix;
            break;
        case ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PRESENCE:
            m->kind = ZT_STRMATCH_PRESENCE;
            continue;
        default:
            return zt_errf(err, errlen, ZT_E_PROTO, "%s: match_type not set", sub);
        }
        if ((rc = get_str(s, sub, &m->value, err, errlen)))
            return rc;
    }
    return 0;
}

static int get_sa_matches(Istio__Security__ServiceAccountMatch *const *v, size_t n,
                          const char *path, struct zt_sa_list *l, char *err, size_t errlen)
{
    char sub[PATH_LEN];
    int rc;
    if ((rc = check_list(n, path, err, errlen)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct zt_sa_match *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
        if (!v[i])
            return zt_errf(err, errlen, ZT_E_PROTO, "%s[%zu]: missing", path, i);
        path_fmt(sub, sizeof(sub), "%s[%zu].namespace", path, i);
        if ((rc = get_str(v[i]->namespace_, sub, &m->namespace, err, errlen)))
            return rc;
        path_fmt(sub, sizeof(sub), "%s[%zu].serviceAccount", path, i);
        if ((rc = get_str(v[i]->serviceaccount, sub, &m->service_account, err, errlen)))
            return rc;
    }
    return 0;
}

static int get_cidrs(Istio__Security__Address *const *v, size_t n, const char *path,
                     struct zt_cidr_list *l, char *err, size_t errlen)
{
    char sub[PATH_LEN];
    int rc;
    if ((rc = check_list(n, path, err, errlen)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct zt_cidr *c = zt_state_array_push(&l->v, &l->n, sizeof(*c));
        path_fmt(sub, sizeof(sub), "%s[%zu]", path, i);
        if (!v[i])
            return zt_errf(err, errlen, ZT_E_PROTO, "%s: missing", sub);
        if ((rc = get_cidr(&v[i]->address, v[i]->length, sub, c, err, errlen)))
            return rc;
    }
    return 0;
}

static int get_port_list(const uint32_t *v, size_t n, const char *path, struct zt_port_list *l,
                         char *err, size_t errlen)
{
    int rc;
    if ((rc = check_list(n, path, err, errlen)))
        return rc;
    for (size_t i = 0; i < n; i++)
        *(uint32_t *)zt_state_array_push(&l->v, &l->n, sizeof(uint32_t)) = v[i];
    return 0;
}

static int get_match(const Istio__Security__Match *pb, const char *path, struct zt_policy_match *m,
                     char *err, size_t errlen)
{
    char sub[PATH_LEN];
    int rc;
#define SUB(field) (path_fmt(sub, sizeof(sub), "%s." #field, path), sub)
    if ((rc = get_strmatches(pb->namespaces, pb->n_namespaces, SUB(namespaces), &m->namespaces, err,
                             errlen)) ||
        (rc = get_strmatches(pb->not_namespaces, pb->n_not_namespaces, SUB(not_namespaces),
                             &m->not_namespaces, err, errlen)) ||
        (rc = get_sa_matches(pb->service_accounts, pb->n_service_accounts, SUB(service_accounts),
                             &m->service_accounts, err, errlen)) ||
        (rc = get_sa_matches(pb->not_service_accounts, pb->n_not_service_accounts,
                             SUB(not_service_accounts), &m->not_service_accounts, err, errlen)) ||
        (rc = get_strmatches(pb->principals, pb->n_principals, SUB(principals), &m->principals, err,
                             errlen)) ||
        (rc = get_strmatches(pb->not_principals, pb->n_not_principals, SUB(not_principals),
                             &m->not_principals, err, errlen)) ||
        (rc = get_cidrs(pb->source_ips, pb->n_source_ips, SUB(source_ips), &m->source_ips, err,
                        errlen)) ||
        (rc = get_cidrs(pb->not_source_ips, pb->n_not_source_ips, SUB(not_source_ips),
                        &m->not_source_ips, err, errlen)) ||
        (rc = get_cidrs(pb->destination_ips, pb->n_destination_ips, SUB(destination_ips),
                        &m->destination_ips, err, errlen)) ||
        (rc = get_cidrs(pb->not_destination_ips, pb->n_not_destination_ips,
                        SUB(not_destination_ips), &m->not_destination_ips, err, errlen)) ||
        (rc = get_port_list(pb->destination_ports, pb->n_destination_ports, SUB(destination_ports),
                            &m->destination_ports, err, errlen)) ||
        (rc = get_port_list(pb->not_destination_ports, pb->n_not_destination_ports,
                            SUB(not_destination_ports), &m->not_destination_ports, err, errlen)))
        return rc;
#undef SUB
    return 0;
}

static int pol_rules(const Istio__Security__Authorization *pb, struct zt_policy *p, char *err,
                     size_t errlen)
{
    char path[PATH_LEN];
    int rc;
    if ((rc = check_list(pb->n_rules, "rules", err, errlen)))
        return rc;
    for (size_t i = 0; i < pb->n_rules; i++) {
        const Istio__Security__Rule *r = pb->rules[i];
        struct zt_policy_rule *rule = zt_state_array_push(&p->rules, &p->n_rules, sizeof(*rule));
        if (!r)
            return zt_errf(err, errlen, ZT_E_PROTO, "rules[%zu]: missing", i);
        path_fmt(path, sizeof(path), "rules[%zu].clauses", i);
        if ((rc = check_list(r->n_clauses, path, err, errlen)))
            return rc;
        for (size_t j = 0; j < r->n_clauses; j++) {
            const Istio__Security__Clause *c = r->clauses[j];
            struct zt_policy_clause *cl =
                zt_state_array_push(&rule->clauses, &rule->n_clauses, sizeof(*cl));
            path_fmt(path, sizeof(path), "rules[%zu].clauses[%zu].matches", i, j);
            if (!c)
                return zt_errf(err, errlen, ZT_E_PROTO, "%s: missing", path);
            if ((rc = check_list(c->n_matches, path, err, errlen)))
                return rc;
            for (size_t k = 0; k < c->n_matches; k++) {
                struct zt_policy_match *m =
                    zt_state_array_push(&cl->matches, &cl->n_matches, sizeof(*m));
                path_fmt(path, sizeof(path), "rules[%zu].clauses[%zu].matches[%zu]", i, j, k);
                if (!c->matches[k])
                    return zt_errf(err, errlen, ZT_E_PROTO, "%s: missing", path);
                if ((rc = get_match(c->matches[k], path, m, err, errlen)))
                    return rc;
            }
        }
    }
    return 0;
}

static int pol_fill(const Istio__Security__Authorization *pb, struct zt_policy *p, char *err,
                    size_t errlen)
{
    int v, rc;
    if ((rc = get_str(pb->name, "name", &p->name, err, errlen)) ||
        (rc = get_str(pb->namespace_, "namespace", &p->namespace, err, errlen)))
        return rc;
    if (!p->name[0])
        return zt_errf(err, errlen, ZT_E_PROTO, "name: empty");
    if ((rc = get_enum((int)pb->scope, 2, "scope", &v, err, errlen)))
        return rc;
    p->scope = (enum zt_policy_scope)v;
    if ((rc = get_enum((int)pb->action, 1, "action", &v, err, errlen)))
        return rc;
    p->action = (enum zt_policy_action)v;
    p->dry_run = pb->dry_run;
    return pol_rules(pb, p, err, errlen);
}

int zt_xds_policy_from_pb(const Istio__Security__Authorization *pb, struct zt_policy **out,
                          char *err, size_t errlen)
{
    struct zt_policy *p = zt_policy_new();
    int rc = pol_fill(pb, p, err, errlen);
    if (rc) {
        zt_policy_unref(p);
        p = NULL;
    }
    *out = p;
    return rc;
}

/* ---------------------------------------------------------------- resources */

static char *join_key(const char *ns, const char *name)
{
    size_t n = strlen(ns) + strlen(name) + 2;
    char *k = zt_state_xcalloc(1, n);
    snprintf(k, n, "%s/%s", ns, name);
    return k;
}

int zt_xds_apply_address(struct zt_state_builder *b, const uint8_t *any_value, size_t len,
                         char **name_out, char *err, size_t errlen)
{
    Istio__Workload__Address *pb = NULL;
    char *name = NULL;
    int rc;

    if (len > ZT_XDS_MAX_RESOURCE_LEN) {
        rc = zt_errf(err, errlen, ZT_E_TOO_BIG, "resource: %zu bytes, at most %u", len,
                     ZT_XDS_MAX_RESOURCE_LEN);
        goto out;
    }
    pb = istio__workload__address__unpack(NULL, len, any_value);
    if (!pb) {
        rc = zt_errf(err, errlen, ZT_E_PROTO, "resource: not a valid istio.workload.Address");
        goto out;
    }
    if (pb->type_case == ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD && pb->workload) {
        struct zt_workload *wl;
        if ((rc = zt_xds_workload_from_pb(pb->workload, &wl, err, errlen)))
            goto out;
        name = zt_state_xstrdup(wl->uid);
        zt_state_builder_put_workload(b, wl);
    } else if (pb->type_case == ISTIO__WORKLOAD__ADDRESS__TYPE_SERVICE && pb->service) {
        struct zt_service *svc;
        if ((rc = zt_xds_service_from_pb(pb->service, &svc, err, errlen)))
            goto out;
        name = join_key(svc->namespace, svc->hostname);
        zt_state_builder_put_service(b, svc);
    } else {
        rc = zt_errf(err, errlen, ZT_E_PROTO, "type: neither workload nor service set");
    }
out:
    if (pb)
        istio__workload__address__free_unpacked(pb, NULL);
    if (name_out)
        *name_out = name;
    else
        free(name);
    return rc;
}

int zt_xds_apply_authorization(struct zt_state_builder *b, const uint8_t *any_value, size_t len,
                               char **name_out, char *err, size_t errlen)
{
    Istio__Security__Authorization *pb = NULL;
    struct zt_policy *p;
    char *name = NULL;
    int rc;

    if (len > ZT_XDS_MAX_RESOURCE_LEN) {
        rc = zt_errf(err, errlen, ZT_E_TOO_BIG, "resource: %zu bytes, at most %u", len,
                     ZT_XDS_MAX_RESOURCE_LEN);
        goto out;
    }
    pb = istio__security__authorization__unpack(NULL, len, any_value);
    if (!pb) {
        rc = zt_errf(err, errlen, ZT_E_PROTO, "resource: not a valid istio.security.Authorization");
        goto out;
    }
    if ((rc = zt_xds_policy_from_pb(pb, &p, err, errlen)))
        goto out;
    name = join_key(p->namespace, p->name);
    zt_state_builder_put_policy(b, p);
out:
    if (pb)
        istio__security__authorization__free_unpacked(pb, NULL);
    if (name_out)
        *name_out = name;
    else
        free(name);
    return rc;
}

bool zt_xds_is_service_name(const char *name)
{
    const char *slash = name ? strchr(name, '/') : NULL;
    return slash && slash != name && slash[1] != '\0' && !strchr(slash + 1, '/');
}

void zt_xds_remove_address(struct zt_state_builder *b, const struct zt_state *base,
                           const char *name)
{
    if (!name)
        return;
    if (base && zt_state_workload_by_uid(base, name)) {
        zt_state_builder_remove_workload(b, name);
        return;
    }
    if (zt_xds_is_service_name(name))
        zt_state_builder_remove_service(b, name);
    else
        zt_state_builder_remove_workload(b, name);
}

void zt_xds_remove_authorization(struct zt_state_builder *b, const char *name)
{
    if (name)
        zt_state_builder_remove_policy(b, name);
}
