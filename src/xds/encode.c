/* Packing of state objects into istio.workload / istio.security messages.
 *
 * The protobuf-c structs are built on the heap in a small arena (every
 * allocation is remembered and freed after packing); strings and address
 * bytes point into the borrowed state object, since packing only reads
 * them. Errors are sticky: the first one is kept in enc.rc and the rest of
 * the walk becomes a cheap no-op, so the builders read straight through. */
#include "xds/encode.h"

#include "base/err.h"
#include "proto/authorization.pb-c.h"
#include "proto/workload.pb-c.h"
#include "xds/convert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct enc {
    void **allocs;
    size_t n_allocs;
    int rc;
};

static void *enc_alloc(struct enc *e, size_t n, size_t size)
{
    void *p = zt_state_xcalloc(n ? n : 1, size);
    *(void **)zt_state_array_push(&e->allocs, &e->n_allocs, sizeof(void *)) = p;
    return p;
}

static void enc_free(struct enc *e)
{
    for (size_t i = 0; i < e->n_allocs; i++)
        free(e->allocs[i]);
    free(e->allocs);
    e->allocs = NULL;
    e->n_allocs = 0;
}

static void enc_fail(struct enc *e, int rc)
{
    if (!e->rc)
        e->rc = rc;
}

/* A list length the decoder accepts. */
static size_t enc_list(struct enc *e, size_t n)
{
    if (n > ZT_XDS_MAX_LIST)
        enc_fail(e, ZT_E_TOO_BIG);
    return n;
}

/* A string the decoder accepts; NULL becomes "". */
static char *enc_str(struct enc *e, const char *s)
{
    if (!s)
        return (char *)"";
    if (strnlen(s, ZT_XDS_MAX_STR + 1) > ZT_XDS_MAX_STR)
        enc_fail(e, ZT_E_TOO_BIG);
    return (char *)s;
}

static char **enc_str_list(struct enc *e, char *const *v, size_t n)
{
    char **out = enc_alloc(e, enc_list(e, n), sizeof(char *));
    for (size_t i = 0; i < n; i++)
        out[i] = enc_str(e, v[i]);
    return out;
}

/* The 4 or 16 raw bytes of ip (borrowed). */
static void enc_ip(struct enc *e, const struct zt_ip *ip, ProtobufCBinaryData *out)
{
    out->data = (uint8_t *)ip->addr;
    if (ip->family == AF_INET) {
        out->len = 4;
    } else if (ip->family == AF_INET6) {
        out->len = 16;
    } else {
        out->len = 0;
        enc_fail(e, ZT_E_PROTO);
    }
}

static uint32_t enc_enum(struct enc *e, int v, int max)
{
    if (v < 0 || v > max)
        enc_fail(e, ZT_E_PROTO);
    return (uint32_t)v;
}

static Istio__Workload__GatewayAddress *enc_gateway(struct enc *e, const struct zt_gateway *g)
{
    Istio__Workload__GatewayAddress *pb = enc_alloc(e, 1, sizeof(*pb));
    istio__workload__gateway_address__init(pb);
    pb->hbone_mtls_port = g->hbone_mtls_port;
    switch (g->kind) {
    case ZT_GATEWAY_HOSTNAME: {
        Istio__Workload__NamespacedHostname *h = enc_alloc(e, 1, sizeof(*h));
        istio__workload__namespaced_hostname__init(h);
        h->namespace_ = enc_str(e, g->namespace);
        h->hostname = enc_str(e, g->hostname);
        if (!h->hostname[0])
            enc_fail(e, ZT_E_PROTO);
        pb->destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_HOSTNAME;
        pb->hostname = h;
        break;
    }
    case ZT_GATEWAY_ADDRESS: {
        Istio__Workload__NetworkAddress *a = enc_alloc(e, 1, sizeof(*a));
        istio__workload__network_address__init(a);
        a->network = enc_str(e, g->network);
        enc_ip(e, &g->ip, &a->address);
        pb->destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_ADDRESS;
        pb->address = a;
        break;
    }
    default:
        enc_fail(e, ZT_E_PROTO);
        break;
    }
    return pb;
}

static Istio__Workload__Port **enc_ports(struct enc *e, const struct zt_port_map *v, size_t n)
{
    Istio__Workload__Port **out = enc_alloc(e, enc_list(e, n), sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        out[i] = enc_alloc(e, 1, sizeof(*out[i]));
        istio__workload__port__init(out[i]);
        out[i]->service_port = v[i].service_port;
        out[i]->target_port = v[i].target_port;
        out[i]->app_protocol = (Istio__Workload__AppProtocol)v[i].app_protocol;
    }
    return out;
}

/* Packs msg into a fresh buffer after the size cap. */
static int enc_pack(struct enc *e, const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
    size_t n;
    if (e->rc)
        return e->rc;
    n = protobuf_c_message_get_packed_size(msg);
    if (n > ZT_XDS_MAX_RESOURCE_LEN)
        return ZT_E_TOO_BIG;
    *out = zt_state_xcalloc(n ? n : 1, 1);
    *len = protobuf_c_message_pack(msg, *out);
    return 0;
}

/* ---------------------------------------------------------------- workload */

static Istio__Workload__Workload *enc_workload(struct enc *e, const struct zt_workload *wl)
{
    Istio__Workload__Workload *pb = enc_alloc(e, 1, sizeof(*pb));
    istio__workload__workload__init(pb);
    pb->uid = enc_str(e, wl->uid);
    if (!pb->uid[0])
        enc_fail(e, ZT_E_PROTO);
    pb->name = enc_str(e, wl->name);
    pb->namespace_ = enc_str(e, wl->namespace);
    pb->hostname = enc_str(e, wl->hostname);
    pb->network = enc_str(e, wl->network);
    pb->trust_domain = enc_str(e, wl->trust_domain);
    pb->service_account = enc_str(e, wl->service_account);
    pb->node = enc_str(e, wl->node);
    pb->canonical_name = enc_str(e, wl->canonical_name);
    pb->canonical_revision = enc_str(e, wl->canonical_revision);
    pb->workload_name = enc_str(e, wl->workload_name);
    pb->cluster_id = enc_str(e, wl->cluster_id);

    pb->n_addresses = enc_list(e, wl->n_addresses);
    pb->addresses = enc_alloc(e, wl->n_addresses, sizeof(*pb->addresses));
    for (size_t i = 0; i < wl->n_addresses; i++)
        enc_ip(e, &wl->addresses[i], &pb->addresses[i]);

    pb->tunnel_protocol = (Istio__Workload__TunnelProtocol)enc_enum(e, (int)wl->protocol, 1);
    pb->workload_type = (Istio__Workload__WorkloadType)enc_enum(e, (int)wl->workload_type, 3);
    pb->status = (Istio__Workload__WorkloadStatus)enc_enum(e, (int)wl->status, 1);
    pb->network_mode = (Istio__Workload__NetworkMode)enc_enum(e, (int)wl->network_mode, 1);

    if (wl->waypoint.kind != ZT_GATEWAY_NONE)
        pb->waypoint = enc_gateway(e, &wl->waypoint);
    if (wl->network_gateway.kind != ZT_GATEWAY_NONE)
        pb->network_gateway = enc_gateway(e, &wl->network_gateway);
    pb->native_tunnel = wl->native_tunnel;
    if (wl->has_application_tunnel) {
        Istio__Workload__ApplicationTunnel *t = enc_alloc(e, 1, sizeof(*t));
        istio__workload__application_tunnel__init(t);
        t->protocol = (Istio__Workload__ApplicationTunnel__Protocol)enc_enum(
            e, (int)wl->application_tunnel_protocol, 1);
        t->port = wl->application_tunnel_port;
        pb->application_tunnel = t;
    }

    pb->n_services = enc_list(e, wl->n_services);
    pb->services = enc_alloc(e, wl->n_services, sizeof(*pb->services));
    for (size_t i = 0; i < wl->n_services; i++) {
        const struct zt_workload_service *ws = &wl->services[i];
        Istio__Workload__Workload__ServicesEntry *en = enc_alloc(e, 1, sizeof(*en));
        Istio__Workload__PortList *pl = enc_alloc(e, 1, sizeof(*pl));
        istio__workload__workload__services_entry__init(en);
        istio__workload__port_list__init(pl);
        en->key = enc_str(e, ws->key);
        pl->n_ports = ws->n_ports;
        pl->ports = enc_ports(e, ws->ports, ws->n_ports);
        en->value = pl;
        pb->services[i] = en;
    }

    pb->n_authorization_policies = wl->n_authorization_policies;
    pb->authorization_policies =
        enc_str_list(e, wl->authorization_policies, wl->n_authorization_policies);

    /* convert.c reads an absent locality as all "", so sending it only when
     * something is set loses nothing. */
    if ((wl->locality.region && wl->locality.region[0]) ||
        (wl->locality.zone && wl->locality.zone[0]) ||
        (wl->locality.subzone && wl->locality.subzone[0])) {
        Istio__Workload__Locality *l = enc_alloc(e, 1, sizeof(*l));
        istio__workload__locality__init(l);
        l->region = enc_str(e, wl->locality.region);
        l->zone = enc_str(e, wl->locality.zone);
        l->subzone = enc_str(e, wl->locality.subzone);
        pb->locality = l;
    }

    /* Always present: an absent capacity reads as 1, so 0 must be explicit. */
    pb->capacity = enc_alloc(e, 1, sizeof(*pb->capacity));
    google__protobuf__uint32_value__init(pb->capacity);
    pb->capacity->value = wl->capacity;
    return pb;
}

int zt_xds_encode_workload(const struct zt_workload *wl, uint8_t **out, size_t *len)
{
    struct enc e = {0};
    Istio__Workload__Address addr = ISTIO__WORKLOAD__ADDRESS__INIT;
    int rc;

    *out = NULL;
    *len = 0;
    if (!wl)
        return ZT_E_PROTO;
    addr.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD;
    addr.workload = enc_workload(&e, wl);
    rc = enc_pack(&e, &addr.base, out, len);
    enc_free(&e);
    return rc;
}

/* ---------------------------------------------------------------- service */

static Istio__Workload__NetworkAddress *enc_netaddr(struct enc *e, const char *network,
                                                    const struct zt_ip *ip)
{
    Istio__Workload__NetworkAddress *a = enc_alloc(e, 1, sizeof(*a));
    istio__workload__network_address__init(a);
    a->network = enc_str(e, network);
    enc_ip(e, ip, &a->address);
    return a;
}

static Istio__Workload__Service *enc_service(struct enc *e, const struct zt_service *svc)
{
    Istio__Workload__Service *pb = enc_alloc(e, 1, sizeof(*pb));
    size_t n;

    istio__workload__service__init(pb);
    pb->name = enc_str(e, svc->name);
    pb->namespace_ = enc_str(e, svc->namespace);
    pb->hostname = enc_str(e, svc->hostname);
    if (!pb->hostname[0])
        enc_fail(e, ZT_E_PROTO);

    /* VIPs carry no length; CIDR VIPs carry theirs (see encode.h for the
     * full-length case). */
    n = enc_list(e, svc->n_vips + svc->n_cidr_vips);
    pb->n_addresses = n;
    pb->addresses = enc_alloc(e, n, sizeof(*pb->addresses));
    for (size_t i = 0; i < svc->n_vips; i++)
        pb->addresses[i] = enc_netaddr(e, svc->vips[i].network, &svc->vips[i].ip);
    for (size_t i = 0; i < svc->n_cidr_vips; i++) {
        const struct zt_cidr_vip *cv = &svc->cidr_vips[i];
        Istio__Workload__NetworkAddress *a = enc_netaddr(e, cv->network, &cv->cidr.ip);
        if (cv->cidr.prefix > (a->address.len == 4 ? 32 : 128))
            enc_fail(e, ZT_E_PROTO);
        a->length_opt_case = ISTIO__WORKLOAD__NETWORK_ADDRESS__LENGTH_OPT_LENGTH;
        a->length = cv->cidr.prefix;
        pb->addresses[svc->n_vips + i] = a;
    }

    pb->n_ports = svc->n_ports;
    pb->ports = enc_ports(e, svc->ports, svc->n_ports);
    pb->n_subject_alt_names = svc->n_subject_alt_names;
    pb->subject_alt_names = enc_str_list(e, svc->subject_alt_names, svc->n_subject_alt_names);
    if (svc->waypoint.kind != ZT_GATEWAY_NONE)
        pb->waypoint = enc_gateway(e, &svc->waypoint);

    if (svc->has_load_balancing) {
        Istio__Workload__LoadBalancing *lb = enc_alloc(e, 1, sizeof(*lb));
        istio__workload__load_balancing__init(lb);
        if (svc->n_lb_routing > ZT_LB_MAX_SCOPES)
            enc_fail(e, ZT_E_TOO_BIG);
        lb->n_routing_preference = svc->n_lb_routing <= ZT_LB_MAX_SCOPES ? svc->n_lb_routing : 0;
        lb->routing_preference =
            enc_alloc(e, lb->n_routing_preference, sizeof(*lb->routing_preference));
        for (size_t i = 0; i < lb->n_routing_preference; i++) {
            int s = (int)svc->lb_routing[i];
            if (s == ISTIO__WORKLOAD__LOAD_BALANCING__SCOPE__UNSPECIFIED_SCOPE)
                enc_fail(e, ZT_E_PROTO);
            lb->routing_preference[i] = (Istio__Workload__LoadBalancing__Scope)enc_enum(e, s, 6);
        }
        lb->mode = (Istio__Workload__LoadBalancing__Mode)enc_enum(e, (int)svc->lb_mode, 3);
        lb->health_policy =
            (Istio__Workload__LoadBalancing__HealthPolicy)enc_enum(e, (int)svc->lb_health, 1);
        pb->load_balancing = lb;
    }

    pb->ip_families = (Istio__Workload__IPFamilies)enc_enum(e, (int)svc->ip_families, 3);
    pb->canonical = svc->canonical;
    pb->visibility = svc->visibility == ZT_VIS_NAMESPACE
                         ? ISTIO__WORKLOAD__SERVICE__VISIBILITY__NAMESPACE
                         : ISTIO__WORKLOAD__SERVICE__VISIBILITY__PUBLIC;

    pb->n_weighted_waypoints = enc_list(e, svc->n_weighted_waypoints);
    pb->weighted_waypoints =
        enc_alloc(e, svc->n_weighted_waypoints, sizeof(*pb->weighted_waypoints));
    for (size_t i = 0; i < svc->n_weighted_waypoints; i++) {
        Istio__Workload__WeightedWaypoint *w = enc_alloc(e, 1, sizeof(*w));
        istio__workload__weighted_waypoint__init(w);
        w->destination = enc_gateway(e, &svc->weighted_waypoints[i].destination);
        w->weight = svc->weighted_waypoints[i].weight;
        pb->weighted_waypoints[i] = w;
    }
    return pb;
}

int zt_xds_encode_service(const struct zt_service *svc, uint8_t **out, size_t *len)
{
    struct enc e = {0};
    Istio__Workload__Address addr = ISTIO__WORKLOAD__ADDRESS__INIT;
    int rc;

    *out = NULL;
    *len = 0;
    if (!svc)
        return ZT_E_PROTO;
    addr.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_SERVICE;
    addr.service = enc_service(&e, svc);
    rc = enc_pack(&e, &addr.base, out, len);
    enc_free(&e);
    return rc;
}

/* ---------------------------------------------------------------- policy */

static Istio__Security__StringMatch **enc_strmatches(struct enc *e,
                                                     const struct zt_strmatch_list *l, size_t *n)
{
    Istio__Security__StringMatch **out = enc_alloc(e, enc_list(e, l->n), sizeof(*out));
    *n = l->n;
    for (size_t i = 0; i < l->n; i++) {
        Istio__Security__StringMatch *m = enc_alloc(e, 1, sizeof(*m));
        istio__security__string_match__init(m);
        switch (l->v[i].kind) {
        case ZT_STRMATCH_EXACT:
            m->match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_EXACT;
            m->exact = enc_str(e, l->v[i].value);
            break;
        case ZT_STRMATCH_PREFIX:
            m->match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PREFIX;
            m->prefix = enc_str(e, l->v[i].value);
            break;
        case ZT_STRMATCH_SUFFIX:
            m->match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_SUFFIX;
            m->suffix = enc_str(e, l->v[i].value);
            break;
        case ZT_STRMATCH_PRESENCE:
            m->match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PRESENCE;
            m->presence = enc_alloc(e, 1, sizeof(*m->presence));
            google__protobuf__empty__init(m->presence);
            break;
        default:
            enc_fail(e, ZT_E_PROTO);
            break;
        }
        out[i] = m;
    }
    return out;
}

static Istio__Security__ServiceAccountMatch **enc_sa_matches(struct enc *e,
                                                             const struct zt_sa_list *l, size_t *n)
{
    Istio__Security__ServiceAccountMatch **out = enc_alloc(e, enc_list(e, l->n), sizeof(*out));
    *n = l->n;
    for (size_t i = 0; i < l->n; i++) {
        out[i] = enc_alloc(e, 1, sizeof(*out[i]));
        istio__security__service_account_match__init(out[i]);
        out[i]->namespace_ = enc_str(e, l->v[i].namespace);
        out[i]->serviceaccount = enc_str(e, l->v[i].service_account);
    }
    return out;
}

static Istio__Security__Address **enc_cidrs(struct enc *e, const struct zt_cidr_list *l, size_t *n)
{
    Istio__Security__Address **out = enc_alloc(e, enc_list(e, l->n), sizeof(*out));
    *n = l->n;
    for (size_t i = 0; i < l->n; i++) {
        out[i] = enc_alloc(e, 1, sizeof(*out[i]));
        istio__security__address__init(out[i]);
        enc_ip(e, &l->v[i].ip, &out[i]->address);
        if (l->v[i].prefix > (out[i]->address.len == 4 ? 32 : 128))
            enc_fail(e, ZT_E_PROTO);
        out[i]->length = l->v[i].prefix;
    }
    return out;
}

static uint32_t *enc_port_list(struct enc *e, const struct zt_port_list *l, size_t *n)
{
    uint32_t *out = enc_alloc(e, enc_list(e, l->n), sizeof(*out));
    *n = l->n;
    if (l->n)
        memcpy(out, l->v, l->n * sizeof(*out));
    return out;
}

static Istio__Security__Match *enc_match(struct enc *e, const struct zt_policy_match *m)
{
    Istio__Security__Match *pb = enc_alloc(e, 1, sizeof(*pb));
    istio__security__match__init(pb);
    pb->namespaces = enc_strmatches(e, &m->namespaces, &pb->n_namespaces);
    pb->not_namespaces = enc_strmatches(e, &m->not_namespaces, &pb->n_not_namespaces);
    pb->service_accounts = enc_sa_matches(e, &m->service_accounts, &pb->n_service_accounts);
    pb->not_service_accounts =
        enc_sa_matches(e, &m->not_service_accounts, &pb->n_not_service_accounts);
    pb->principals = enc_strmatches(e, &m->principals, &pb->n_principals);
    pb->not_principals = enc_strmatches(e, &m->not_principals, &pb->n_not_principals);
    pb->source_ips = enc_cidrs(e, &m->source_ips, &pb->n_source_ips);
    pb->not_source_ips = enc_cidrs(e, &m->not_source_ips, &pb->n_not_source_ips);
    pb->destination_ips = enc_cidrs(e, &m->destination_ips, &pb->n_destination_ips);
    pb->not_destination_ips = enc_cidrs(e, &m->not_destination_ips, &pb->n_not_destination_ips);
    pb->destination_ports = enc_port_list(e, &m->destination_ports, &pb->n_destination_ports);
    pb->not_destination_ports =
        enc_port_list(e, &m->not_destination_ports, &pb->n_not_destination_ports);
    return pb;
}

static Istio__Security__Authorization *enc_policy(struct enc *e, const struct zt_policy *p)
{
    Istio__Security__Authorization *pb = enc_alloc(e, 1, sizeof(*pb));
    istio__security__authorization__init(pb);
    pb->name = enc_str(e, p->name);
    if (!pb->name[0])
        enc_fail(e, ZT_E_PROTO);
    pb->namespace_ = enc_str(e, p->namespace);
    pb->scope = (Istio__Security__Scope)enc_enum(e, (int)p->scope, 2);
    pb->action = (Istio__Security__Action)enc_enum(e, (int)p->action, 1);
    pb->dry_run = p->dry_run;
    pb->n_rules = enc_list(e, p->n_rules);
    pb->rules = enc_alloc(e, p->n_rules, sizeof(*pb->rules));
    for (size_t i = 0; i < p->n_rules; i++) {
        const struct zt_policy_rule *r = &p->rules[i];
        Istio__Security__Rule *rpb = enc_alloc(e, 1, sizeof(*rpb));
        istio__security__rule__init(rpb);
        rpb->n_clauses = enc_list(e, r->n_clauses);
        rpb->clauses = enc_alloc(e, r->n_clauses, sizeof(*rpb->clauses));
        for (size_t j = 0; j < r->n_clauses; j++) {
            const struct zt_policy_clause *c = &r->clauses[j];
            Istio__Security__Clause *cpb = enc_alloc(e, 1, sizeof(*cpb));
            istio__security__clause__init(cpb);
            cpb->n_matches = enc_list(e, c->n_matches);
            cpb->matches = enc_alloc(e, c->n_matches, sizeof(*cpb->matches));
            for (size_t k = 0; k < c->n_matches; k++)
                cpb->matches[k] = enc_match(e, &c->matches[k]);
            rpb->clauses[j] = cpb;
        }
        pb->rules[i] = rpb;
    }
    return pb;
}

int zt_xds_encode_policy(const struct zt_policy *p, uint8_t **out, size_t *len)
{
    struct enc e = {0};
    Istio__Security__Authorization *pb;
    int rc;

    *out = NULL;
    *len = 0;
    if (!p)
        return ZT_E_PROTO;
    pb = enc_policy(&e, p);
    rc = enc_pack(&e, &pb->base, out, len);
    enc_free(&e);
    return rc;
}

/* ---------------------------------------------------------------- names */

static char *join_name(const char *ns, const char *name)
{
    size_t n;
    char *k;
    ns = ns ? ns : "";
    name = name ? name : "";
    n = strlen(ns) + strlen(name) + 2;
    k = zt_state_xcalloc(1, n);
    snprintf(k, n, "%s/%s", ns, name);
    return k;
}

char *zt_xds_workload_name(const struct zt_workload *wl)
{
    return zt_state_xstrdup(wl->uid ? wl->uid : "");
}

char *zt_xds_service_name(const struct zt_service *svc)
{
    return join_name(svc->namespace, svc->hostname);
}

char *zt_xds_policy_name(const struct zt_policy *p)
{
    return join_name(p->namespace, p->name);
}
