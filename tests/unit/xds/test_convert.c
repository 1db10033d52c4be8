/* xds/convert: protobuf-c structs are packed to bytes, applied through
 * zt_xds_apply_* into a builder, and the resulting snapshot is read back.
 * Every validation rule has a rejection test that checks the error text. */
#include "test.h"

#include "base/err.h"
#include "xds/convert.h"

#include <arpa/inet.h>
#include <stdlib.h>

static const uint8_t ip4_a[4] = {10, 1, 0, 5};
static const uint8_t ip4_b[4] = {10, 96, 0, 10};
static const uint8_t ip6_a[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

static ProtobufCBinaryData bin(const uint8_t *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

static struct zt_ip mkip(const char *s)
{
    struct zt_ip a;
    if (zt_ip_parse(s, &a))
        abort();
    return a;
}

/* ---------------------------------------------------------------- fixtures
 * A full Workload, Service and Authorization built from stack structs; each
 * test copies a fixture, breaks one field and checks the rejection. */

struct wl_fix {
    Istio__Workload__Workload wl;
    ProtobufCBinaryData addrs[2];
    Istio__Workload__GatewayAddress wp, ngw;
    Istio__Workload__NamespacedHostname wp_host;
    Istio__Workload__NetworkAddress ngw_addr;
    Istio__Workload__ApplicationTunnel tun;
    Istio__Workload__Port port0, port1;
    Istio__Workload__Port *ports[2];
    Istio__Workload__PortList plist;
    Istio__Workload__Workload__ServicesEntry sentry;
    Istio__Workload__Workload__ServicesEntry *sentries[1];
    char *pols[1];
    Istio__Workload__Locality loc;
    Google__Protobuf__UInt32Value cap;
};

static void wl_fix_init(struct wl_fix *f)
{
    Istio__Workload__Workload wl = ISTIO__WORKLOAD__WORKLOAD__INIT;
    Istio__Workload__GatewayAddress ga = ISTIO__WORKLOAD__GATEWAY_ADDRESS__INIT;
    Istio__Workload__NamespacedHostname nh = ISTIO__WORKLOAD__NAMESPACED_HOSTNAME__INIT;
    Istio__Workload__NetworkAddress na = ISTIO__WORKLOAD__NETWORK_ADDRESS__INIT;
    Istio__Workload__ApplicationTunnel tun = ISTIO__WORKLOAD__APPLICATION_TUNNEL__INIT;
    Istio__Workload__Port port = ISTIO__WORKLOAD__PORT__INIT;
    Istio__Workload__PortList pl = ISTIO__WORKLOAD__PORT_LIST__INIT;
    Istio__Workload__Workload__ServicesEntry se = ISTIO__WORKLOAD__WORKLOAD__SERVICES_ENTRY__INIT;
    Istio__Workload__Locality loc = ISTIO__WORKLOAD__LOCALITY__INIT;
    Google__Protobuf__UInt32Value cap = GOOGLE__PROTOBUF__UINT32_VALUE__INIT;

    memset(f, 0, sizeof(*f));
    f->wl = wl;
    f->wl.uid = "c1//v1/Pod/default/app";
    f->wl.name = "app";
    f->wl.namespace_ = "default";
    f->addrs[0] = bin(ip4_a, 4);
    f->addrs[1] = bin(ip6_a, 16);
    f->wl.addresses = f->addrs;
    f->wl.n_addresses = 2;
    f->wl.network = "net1";
    f->wl.tunnel_protocol = ISTIO__WORKLOAD__TUNNEL_PROTOCOL__HBONE;
    f->wl.trust_domain = "example.org";
    f->wl.service_account = "app-sa";
    f->wp = ga;
    f->wp_host = nh;
    f->wp_host.namespace_ = "default";
    f->wp_host.hostname = "waypoint.default.svc.cluster.local";
    f->wp.destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_HOSTNAME;
    f->wp.hostname = &f->wp_host;
    f->wp.hbone_mtls_port = 15008;
    f->wl.waypoint = &f->wp;
    f->ngw = ga;
    f->ngw_addr = na;
    f->ngw_addr.network = "net2";
    f->ngw_addr.address = bin(ip4_b, 4);
    f->ngw.destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_ADDRESS;
    f->ngw.address = &f->ngw_addr;
    f->ngw.hbone_mtls_port = 15009;
    f->wl.network_gateway = &f->ngw;
    f->wl.node = "node-a";
    f->wl.canonical_name = "app";
    f->wl.canonical_revision = "v1";
    f->wl.workload_type = ISTIO__WORKLOAD__WORKLOAD_TYPE__POD;
    f->wl.workload_name = "app-deploy";
    f->wl.native_tunnel = 1;
    f->tun = tun;
    f->tun.protocol = ISTIO__WORKLOAD__APPLICATION_TUNNEL__PROTOCOL__PROXY;
    f->tun.port = 15088;
    f->wl.application_tunnel = &f->tun;
    f->port0 = port;
    f->port0.service_port = 80;
    f->port0.target_port = 8080;
    f->port1 = port;
    f->port1.service_port = 443;
    f->ports[0] = &f->port0;
    f->ports[1] = &f->port1;
    f->plist = pl;
    f->plist.ports = f->ports;
    f->plist.n_ports = 2;
    f->sentry = se;
    f->sentry.key = "default/app.default.svc.cluster.local";
    f->sentry.value = &f->plist;
    f->sentries[0] = &f->sentry;
    f->wl.services = f->sentries;
    f->wl.n_services = 1;
    f->pols[0] = "default/allow-all";
    f->wl.authorization_policies = f->pols;
    f->wl.n_authorization_policies = 1;
    f->wl.status = ISTIO__WORKLOAD__WORKLOAD_STATUS__UNHEALTHY;
    f->wl.cluster_id = "c1";
    f->loc = loc;
    f->loc.region = "r1";
    f->loc.zone = "z1";
    f->loc.subzone = "s1";
    f->wl.locality = &f->loc;
    f->wl.network_mode = ISTIO__WORKLOAD__NETWORK_MODE__STANDARD;
    f->cap = cap;
    f->cap.value = 7;
    f->wl.capacity = &f->cap;
}

struct svc_fix {
    Istio__Workload__Service svc;
    Istio__Workload__NetworkAddress a0, a1, a2;
    Istio__Workload__NetworkAddress *addrs[3];
    Istio__Workload__Port port0;
    Istio__Workload__Port *ports[1];
    char *sans[1];
    Istio__Workload__LoadBalancing lb;
    Istio__Workload__LoadBalancing__Scope scopes[2];
    Istio__Workload__GatewayAddress wp;
    Istio__Workload__NamespacedHostname wp_host;
    Istio__Workload__WeightedWaypoint ww;
    Istio__Workload__WeightedWaypoint *wws[1];
};

static void svc_fix_init(struct svc_fix *f)
{
    Istio__Workload__Service svc = ISTIO__WORKLOAD__SERVICE__INIT;
    Istio__Workload__NetworkAddress na = ISTIO__WORKLOAD__NETWORK_ADDRESS__INIT;
    Istio__Workload__Port port = ISTIO__WORKLOAD__PORT__INIT;
    Istio__Workload__LoadBalancing lb = ISTIO__WORKLOAD__LOAD_BALANCING__INIT;
    Istio__Workload__GatewayAddress ga = ISTIO__WORKLOAD__GATEWAY_ADDRESS__INIT;
    Istio__Workload__NamespacedHostname nh = ISTIO__WORKLOAD__NAMESPACED_HOSTNAME__INIT;
    Istio__Workload__WeightedWaypoint ww = ISTIO__WORKLOAD__WEIGHTED_WAYPOINT__INIT;

    memset(f, 0, sizeof(*f));
    f->svc = svc;
    f->svc.name = "app";
    f->svc.namespace_ = "default";
    f->svc.hostname = "app.default.svc.cluster.local";
    /* a0: host VIP without length; a1: IPv6 VIP with full length; a2: CIDR. */
    f->a0 = na;
    f->a0.address = bin(ip4_b, 4);
    f->a1 = na;
    f->a1.network = "net1";
    f->a1.address = bin(ip6_a, 16);
    f->a1.length_opt_case = ISTIO__WORKLOAD__NETWORK_ADDRESS__LENGTH_OPT_LENGTH;
    f->a1.length = 128;
    f->a2 = na;
    f->a2.address = bin(ip4_a, 4);
    f->a2.length_opt_case = ISTIO__WORKLOAD__NETWORK_ADDRESS__LENGTH_OPT_LENGTH;
    f->a2.length = 16;
    f->addrs[0] = &f->a0;
    f->addrs[1] = &f->a1;
    f->addrs[2] = &f->a2;
    f->svc.addresses = f->addrs;
    f->svc.n_addresses = 3;
    f->port0 = port;
    f->port0.service_port = 80;
    f->port0.target_port = 8080;
    f->ports[0] = &f->port0;
    f->svc.ports = f->ports;
    f->svc.n_ports = 1;
    f->sans[0] = "spiffe://example.org/ns/default/sa/other";
    f->svc.subject_alt_names = f->sans;
    f->svc.n_subject_alt_names = 1;
    f->lb = lb;
    f->scopes[0] = ISTIO__WORKLOAD__LOAD_BALANCING__SCOPE__NETWORK;
    f->scopes[1] = ISTIO__WORKLOAD__LOAD_BALANCING__SCOPE__ZONE;
    f->lb.routing_preference = f->scopes;
    f->lb.n_routing_preference = 2;
    f->lb.mode = ISTIO__WORKLOAD__LOAD_BALANCING__MODE__FAILOVER;
    f->lb.health_policy = ISTIO__WORKLOAD__LOAD_BALANCING__HEALTH_POLICY__ALLOW_ALL;
    f->svc.load_balancing = &f->lb;
    f->svc.ip_families = ISTIO__WORKLOAD__IPFAMILIES__DUAL;
    f->svc.canonical = 1;
    f->svc.visibility = ISTIO__WORKLOAD__SERVICE__VISIBILITY__NAMESPACE;
    f->wp = ga;
    f->wp_host = nh;
    f->wp_host.namespace_ = "default";
    f->wp_host.hostname = "wp.default.svc.cluster.local";
    f->wp.destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_HOSTNAME;
    f->wp.hostname = &f->wp_host;
    f->wp.hbone_mtls_port = 15008;
    f->svc.waypoint = &f->wp;
    f->ww = ww;
    f->ww.destination = &f->wp;
    f->ww.weight = 30;
    f->wws[0] = &f->ww;
    f->svc.weighted_waypoints = f->wws;
    f->svc.n_weighted_waypoints = 1;
}

struct pol_fix {
    Istio__Security__Authorization pol;
    Istio__Security__Rule rule;
    Istio__Security__Rule *rules[1];
    Istio__Security__Clause clause;
    Istio__Security__Clause *clauses[1];
    Istio__Security__Match match;
    Istio__Security__Match *matches[1];
    Istio__Security__StringMatch ns0, pr0, pr1;
    Istio__Security__StringMatch *nss[1], *prs[2];
    Google__Protobuf__Empty empty;
    Istio__Security__ServiceAccountMatch sa0;
    Istio__Security__ServiceAccountMatch *sas[1];
    Istio__Security__Address src0, dst0;
    Istio__Security__Address *srcs[1], *dsts[1];
    uint32_t ports[2];
};

static void pol_fix_init(struct pol_fix *f)
{
    Istio__Security__Authorization pol = ISTIO__SECURITY__AUTHORIZATION__INIT;
    Istio__Security__Rule rule = ISTIO__SECURITY__RULE__INIT;
    Istio__Security__Clause clause = ISTIO__SECURITY__CLAUSE__INIT;
    Istio__Security__Match match = ISTIO__SECURITY__MATCH__INIT;
    Istio__Security__StringMatch sm = ISTIO__SECURITY__STRING_MATCH__INIT;
    Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
    Istio__Security__ServiceAccountMatch sa = ISTIO__SECURITY__SERVICE_ACCOUNT_MATCH__INIT;
    Istio__Security__Address addr = ISTIO__SECURITY__ADDRESS__INIT;

    memset(f, 0, sizeof(*f));
    f->pol = pol;
    f->pol.name = "deny-9090";
    f->pol.namespace_ = "default";
    f->pol.scope = ISTIO__SECURITY__SCOPE__WORKLOAD_SELECTOR;
    f->pol.action = ISTIO__SECURITY__ACTION__DENY;
    f->pol.dry_run = 1;
    f->ns0 = sm;
    f->ns0.match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PREFIX;
    f->ns0.prefix = "team-";
    f->nss[0] = &f->ns0;
    f->pr0 = sm;
    f->pr0.match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_SUFFIX;
    f->pr0.suffix = "/sa/client";
    f->empty = empty;
    f->pr1 = sm;
    f->pr1.match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PRESENCE;
    f->pr1.presence = &f->empty;
    f->prs[0] = &f->pr0;
    f->prs[1] = &f->pr1;
    f->sa0 = sa;
    f->sa0.namespace_ = "default";
    f->sa0.serviceaccount = "client";
    f->sas[0] = &f->sa0;
    f->src0 = addr;
    f->src0.address = bin(ip4_a, 4);
    f->src0.length = 24;
    f->srcs[0] = &f->src0;
    f->dst0 = addr;
    f->dst0.address = bin(ip6_a, 16);
    f->dst0.length = 128;
    f->dsts[0] = &f->dst0;
    f->ports[0] = 9090;
    f->ports[1] = 70000;
    f->match = match;
    f->match.namespaces = f->nss;
    f->match.n_namespaces = 1;
    f->match.not_principals = f->prs;
    f->match.n_not_principals = 2;
    f->match.service_accounts = f->sas;
    f->match.n_service_accounts = 1;
    f->match.source_ips = f->srcs;
    f->match.n_source_ips = 1;
    f->match.not_destination_ips = f->dsts;
    f->match.n_not_destination_ips = 1;
    f->match.destination_ports = f->ports;
    f->match.n_destination_ports = 2;
    f->matches[0] = &f->match;
    f->clause = clause;
    f->clause.matches = f->matches;
    f->clause.n_matches = 1;
    f->clauses[0] = &f->clause;
    f->rule = rule;
    f->rule.clauses = f->clauses;
    f->rule.n_clauses = 1;
    f->rules[0] = &f->rule;
    f->pol.rules = f->rules;
    f->pol.n_rules = 1;
}

/* ---------------------------------------------------------------- packing */

struct buf {
    uint8_t *p;
    size_t n;
};

static struct buf pack_workload(const Istio__Workload__Workload *wl)
{
    Istio__Workload__Address a = ISTIO__WORKLOAD__ADDRESS__INIT;
    struct buf b;
    a.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD;
    a.workload = (Istio__Workload__Workload *)wl;
    b.n = istio__workload__address__get_packed_size(&a);
    b.p = malloc(b.n + 1);
    if (istio__workload__address__pack(&a, b.p) != b.n)
        abort();
    return b;
}

static struct buf pack_service(const Istio__Workload__Service *svc)
{
    Istio__Workload__Address a = ISTIO__WORKLOAD__ADDRESS__INIT;
    struct buf b;
    a.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_SERVICE;
    a.service = (Istio__Workload__Service *)svc;
    b.n = istio__workload__address__get_packed_size(&a);
    b.p = malloc(b.n + 1);
    if (istio__workload__address__pack(&a, b.p) != b.n)
        abort();
    return b;
}

static struct buf pack_policy(const Istio__Security__Authorization *p)
{
    struct buf b;
    b.n = istio__security__authorization__get_packed_size(p);
    b.p = malloc(b.n + 1);
    if (istio__security__authorization__pack(p, b.p) != b.n)
        abort();
    return b;
}

/* Applies one Address through the wire into a fresh snapshot. Returns the
 * apply result; *out is the snapshot (NULL on failure). */
static int apply_addr(struct buf b, struct zt_state **out, char *err, size_t errlen)
{
    struct zt_state_builder *bld = zt_state_builder_new(NULL);
    char *name = NULL;
    int rc = zt_xds_apply_address(bld, b.p, b.n, &name, err, errlen);
    free(b.p);
    *out = NULL;
    if (rc) {
        if (name)
            abort(); /* name_out must be NULL on failure */
        zt_state_builder_free(bld);
        return rc;
    }
    free(name);
    if (zt_state_builder_finish(bld, out, err, errlen))
        return -1;
    return 0;
}

static int apply_pol(struct buf b, struct zt_state **out, char *err, size_t errlen)
{
    struct zt_state_builder *bld = zt_state_builder_new(NULL);
    int rc = zt_xds_apply_authorization(bld, b.p, b.n, NULL, err, errlen);
    free(b.p);
    *out = NULL;
    if (rc) {
        zt_state_builder_free(bld);
        return rc;
    }
    if (zt_state_builder_finish(bld, out, err, errlen))
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- round trips */

static void test_workload_round_trip(void)
{
    struct wl_fix f;
    struct zt_state *s;
    char err[256] = "";
    const struct zt_workload *w;
    struct zt_ip v6;

    wl_fix_init(&f);
    CHECK_EQ_INT(apply_addr(pack_workload(&f.wl), &s, err, sizeof(err)), 0);
    w = zt_state_workload_by_uid(s, "c1//v1/Pod/default/app");
    CHECK(w != NULL);
    CHECK_EQ_STR(w->name, "app");
    CHECK_EQ_STR(w->namespace, "default");
    CHECK_EQ_INT(w->n_addresses, 2);
    CHECK(zt_ip_eq(&w->addresses[0], &(struct zt_ip){0}) == 0);
    {
        struct zt_ip a = mkip("10.1.0.5");
        CHECK(zt_ip_eq(&w->addresses[0], &a));
    }
    v6 = mkip("fd00::1");
    CHECK(zt_ip_eq(&w->addresses[1], &v6));
    CHECK_EQ_STR(w->network, "net1");
    CHECK_EQ_INT(w->protocol, ZT_WL_PROTO_HBONE);
    CHECK_EQ_STR(w->trust_domain, "example.org");
    CHECK_EQ_STR(w->service_account, "app-sa");
    CHECK_EQ_INT(w->waypoint.kind, ZT_GATEWAY_HOSTNAME);
    CHECK_EQ_STR(w->waypoint.namespace, "default");
    CHECK_EQ_STR(w->waypoint.hostname, "waypoint.default.svc.cluster.local");
    CHECK_EQ_INT(w->waypoint.hbone_mtls_port, 15008);
    CHECK_EQ_INT(w->network_gateway.kind, ZT_GATEWAY_ADDRESS);
    CHECK_EQ_STR(w->network_gateway.network, "net2");
    {
        struct zt_ip g = mkip("10.96.0.10");
        CHECK(zt_ip_eq(&w->network_gateway.ip, &g));
    }
    CHECK_EQ_INT(w->network_gateway.hbone_mtls_port, 15009);
    CHECK_EQ_STR(w->node, "node-a");
    CHECK_EQ_STR(w->canonical_name, "app");
    CHECK_EQ_STR(w->canonical_revision, "v1");
    CHECK_EQ_INT(w->workload_type, ZT_WL_TYPE_POD);
    CHECK_EQ_STR(w->workload_name, "app-deploy");
    CHECK(w->native_tunnel);
    CHECK(w->has_application_tunnel);
    CHECK_EQ_INT(w->application_tunnel_protocol, ZT_APP_TUNNEL_PROXY);
    CHECK_EQ_INT(w->application_tunnel_port, 15088);
    CHECK_EQ_INT(w->n_services, 1);
    CHECK_EQ_STR(w->services[0].key, "default/app.default.svc.cluster.local");
    CHECK_EQ_INT(w->services[0].n_ports, 2);
    CHECK_EQ_INT(w->services[0].ports[0].service_port, 80);
    CHECK_EQ_INT(w->services[0].ports[0].target_port, 8080);
    CHECK_EQ_INT(w->services[0].ports[1].service_port, 443);
    CHECK_EQ_INT(w->services[0].ports[1].target_port, 0);
    CHECK_EQ_INT(w->n_authorization_policies, 1);
    CHECK_EQ_STR(w->authorization_policies[0], "default/allow-all");
    CHECK_EQ_INT(w->status, ZT_WL_UNHEALTHY);
    CHECK_EQ_STR(w->cluster_id, "c1");
    CHECK_EQ_STR(w->locality.region, "r1");
    CHECK_EQ_STR(w->locality.zone, "z1");
    CHECK_EQ_STR(w->locality.subzone, "s1");
    CHECK_EQ_INT(w->network_mode, ZT_NETMODE_STANDARD);
    CHECK_EQ_INT(w->capacity, 7);
    {
        struct zt_ip a = mkip("10.1.0.5");
        CHECK(zt_state_workload_by_ip(s, "net1", &a) == w);
    }
    zt_state_unref(s);
}

/* Defaults: an almost empty workload gets capacity 1 and the builder's
 * default identity parts; a TCP, HOST_NETWORK workload is read as such. */
static void test_workload_defaults(void)
{
    Istio__Workload__Workload wl = ISTIO__WORKLOAD__WORKLOAD__INIT;
    struct zt_state *s;
    char err[256] = "";
    const struct zt_workload *w;

    wl.uid = "u1";
    wl.network_mode = ISTIO__WORKLOAD__NETWORK_MODE__HOST_NETWORK;
    CHECK_EQ_INT(apply_addr(pack_workload(&wl), &s, err, sizeof(err)), 0);
    w = zt_state_workload_by_uid(s, "u1");
    CHECK(w != NULL);
    CHECK_EQ_INT(w->capacity, 1);
    CHECK_EQ_INT(w->protocol, ZT_WL_PROTO_TCP);
    CHECK_EQ_INT(w->network_mode, ZT_NETMODE_HOST_NETWORK);
    CHECK_EQ_STR(w->service_account, "default");
    CHECK_EQ_STR(w->trust_domain, "cluster.local");
    CHECK_EQ_STR(w->cluster_id, "Kubernetes");
    CHECK(!w->has_application_tunnel);
    CHECK_EQ_INT(w->waypoint.kind, ZT_GATEWAY_NONE);
    zt_state_unref(s);
}

/* A map key sent twice keeps the last value (protobuf map semantics). */
static void test_workload_duplicate_map_key(void)
{
    struct wl_fix f;
    Istio__Workload__Workload__ServicesEntry e2 = ISTIO__WORKLOAD__WORKLOAD__SERVICES_ENTRY__INIT;
    Istio__Workload__Workload__ServicesEntry *entries[2];
    Istio__Workload__PortList pl = ISTIO__WORKLOAD__PORT_LIST__INIT;
    struct zt_workload *w;
    char err[256] = "";

    wl_fix_init(&f);
    e2.key = f.sentry.key;
    e2.value = &pl; /* no ports */
    entries[0] = &f.sentry;
    entries[1] = &e2;
    f.wl.services = entries;
    f.wl.n_services = 2;
    CHECK_EQ_INT(zt_xds_workload_from_pb(&f.wl, &w, err, sizeof(err)), 0);
    CHECK_EQ_INT(w->n_services, 1);
    CHECK_EQ_INT(w->services[0].n_ports, 0);
    zt_workload_unref(w);
}

static void test_service_round_trip(void)
{
    struct svc_fix f;
    struct zt_state *s;
    char err[256] = "", buf[64];
    const struct zt_service *svc;
    struct zt_ip a;

    svc_fix_init(&f);
    CHECK_EQ_INT(apply_addr(pack_service(&f.svc), &s, err, sizeof(err)), 0);
    svc = zt_state_service_by_key(s, "default/app.default.svc.cluster.local");
    CHECK(svc != NULL);
    CHECK_EQ_STR(svc->name, "app");
    CHECK_EQ_STR(svc->namespace, "default");
    CHECK_EQ_INT(svc->n_vips, 2);
    CHECK_EQ_STR(svc->vips[0].network, "");
    a = mkip("10.96.0.10");
    CHECK(zt_ip_eq(&svc->vips[0].ip, &a));
    CHECK_EQ_STR(svc->vips[1].network, "net1");
    a = mkip("fd00::1");
    CHECK(zt_ip_eq(&svc->vips[1].ip, &a));
    CHECK_EQ_INT(svc->n_cidr_vips, 1);
    CHECK_EQ_STR(zt_cidr_format(&svc->cidr_vips[0].cidr, buf, sizeof(buf)), "10.1.0.0/16");
    CHECK_EQ_INT(svc->n_ports, 1);
    CHECK_EQ_INT(svc->ports[0].service_port, 80);
    CHECK_EQ_INT(svc->ports[0].target_port, 8080);
    CHECK_EQ_INT(svc->n_subject_alt_names, 1);
    CHECK_EQ_STR(svc->subject_alt_names[0], "spiffe://example.org/ns/default/sa/other");
    CHECK(svc->has_load_balancing);
    CHECK_EQ_INT(svc->lb_mode, ZT_LB_FAILOVER);
    CHECK_EQ_INT(svc->n_lb_routing, 2);
    CHECK_EQ_INT(svc->lb_routing[0], ZT_LB_SCOPE_NETWORK);
    CHECK_EQ_INT(svc->lb_routing[1], ZT_LB_SCOPE_ZONE);
    CHECK_EQ_INT(svc->lb_health, ZT_LB_ALLOW_ALL);
    CHECK_EQ_INT(svc->ip_families, ZT_IPF_DUAL);
    CHECK(svc->canonical);
    CHECK_EQ_INT(svc->visibility, ZT_VIS_NAMESPACE);
    CHECK_EQ_INT(svc->waypoint.kind, ZT_GATEWAY_HOSTNAME);
    CHECK_EQ_STR(svc->waypoint.hostname, "wp.default.svc.cluster.local");
    CHECK_EQ_INT(svc->n_weighted_waypoints, 1);
    CHECK_EQ_INT(svc->weighted_waypoints[0].weight, 30);
    CHECK_EQ_INT(svc->weighted_waypoints[0].destination.hbone_mtls_port, 15008);
    a = mkip("10.96.0.10");
    CHECK(zt_state_service_by_vip(s, "", &a) == svc);
    zt_state_unref(s);
}

/* Unknown visibility values are PUBLIC, not a rejection. */
static void test_service_unknown_visibility(void)
{
    struct svc_fix f;
    struct zt_state *s;
    char err[256] = "";
    svc_fix_init(&f);
    f.svc.visibility = (Istio__Workload__Service__Visibility)9;
    CHECK_EQ_INT(apply_addr(pack_service(&f.svc), &s, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_state_service_at(s, 0)->visibility, ZT_VIS_PUBLIC);
    zt_state_unref(s);
}

static void test_policy_round_trip(void)
{
    struct pol_fix f;
    struct zt_state *s;
    char err[256] = "", buf[64];
    const struct zt_policy *p;
    const struct zt_policy_match *m;

    pol_fix_init(&f);
    CHECK_EQ_INT(apply_pol(pack_policy(&f.pol), &s, err, sizeof(err)), 0);
    p = zt_state_policy_by_key(s, "default/deny-9090");
    CHECK(p != NULL);
    CHECK_EQ_INT(p->scope, ZT_POLICY_WORKLOAD_SELECTOR);
    CHECK_EQ_INT(p->action, ZT_POLICY_DENY);
    CHECK(p->dry_run);
    CHECK_EQ_INT(p->n_rules, 1);
    CHECK_EQ_INT(p->rules[0].n_clauses, 1);
    CHECK_EQ_INT(p->rules[0].clauses[0].n_matches, 1);
    m = &p->rules[0].clauses[0].matches[0];
    CHECK_EQ_INT(m->namespaces.n, 1);
    CHECK_EQ_INT(m->namespaces.v[0].kind, ZT_STRMATCH_PREFIX);
    CHECK_EQ_STR(m->namespaces.v[0].value, "team-");
    CHECK_EQ_INT(m->not_principals.n, 2);
    CHECK_EQ_INT(m->not_principals.v[0].kind, ZT_STRMATCH_SUFFIX);
    CHECK_EQ_STR(m->not_principals.v[0].value, "/sa/client");
    CHECK_EQ_INT(m->not_principals.v[1].kind, ZT_STRMATCH_PRESENCE);
    CHECK(m->not_principals.v[1].value == NULL);
    CHECK_EQ_INT(m->service_accounts.n, 1);
    CHECK_EQ_STR(m->service_accounts.v[0].namespace, "default");
    CHECK_EQ_STR(m->service_accounts.v[0].service_account, "client");
    CHECK_EQ_INT(m->source_ips.n, 1);
    CHECK_EQ_STR(zt_cidr_format(&m->source_ips.v[0], buf, sizeof(buf)), "10.1.0.0/24");
    CHECK_EQ_INT(m->not_destination_ips.n, 1);
    CHECK_EQ_STR(zt_cidr_format(&m->not_destination_ips.v[0], buf, sizeof(buf)), "fd00::1/128");
    CHECK_EQ_INT(m->destination_ports.n, 2);
    CHECK_EQ_INT(m->destination_ports.v[0], 9090);
    CHECK_EQ_INT(m->destination_ports.v[1], 70000);
    CHECK_EQ_INT(m->principals.n + m->not_namespaces.n + m->destination_ips.n, 0);
    zt_state_unref(s);
}

/* ---------------------------------------------------------------- rejections */

/* Packs, applies, and expects rc with err starting with want. */
#define EXPECT_REJECT(bufexpr, applyfn, want_rc, want)                                             \
    do {                                                                                           \
        struct zt_state *s_ = NULL;                                                                \
        char err_[256] = "";                                                                       \
        CHECK_EQ_INT(applyfn(bufexpr, &s_, err_, sizeof(err_)), want_rc);                          \
        CHECK(s_ == NULL);                                                                         \
        if (strncmp(err_, want, strlen(want)) != 0) {                                              \
            fprintf(stderr, "  err \"%s\" does not start with \"%s\"\n", err_, want);              \
            CHECK(0);                                                                              \
        }                                                                                          \
    } while (0)

static void test_reject_workload(void)
{
    struct wl_fix f;
    static const uint8_t five[5] = {1, 2, 3, 4, 5};
    static const uint8_t bad_gw[3] = {1, 2, 3};

    wl_fix_init(&f);
    f.wl.uid = "";
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO, "uid: empty");

    wl_fix_init(&f);
    f.addrs[1] = bin(five, 5);
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "addresses[1]: length 5, want 4 or 16");

    wl_fix_init(&f);
    f.addrs[0] = bin(NULL, 0);
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO, "addresses[0]: length 0");

    wl_fix_init(&f);
    f.wl.tunnel_protocol = ISTIO__WORKLOAD__TUNNEL_PROTOCOL__LEGACY_ISTIO_MTLS;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "tunnel_protocol: LEGACY_ISTIO_MTLS is not supported");

    wl_fix_init(&f);
    f.wl.tunnel_protocol = (Istio__Workload__TunnelProtocol)3;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "tunnel_protocol: unknown enum value 3");

    wl_fix_init(&f);
    f.wl.workload_type = (Istio__Workload__WorkloadType)4;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "workload_type: unknown enum value 4");

    wl_fix_init(&f);
    f.wl.status = (Istio__Workload__WorkloadStatus)2;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO, "status: unknown enum value 2");

    wl_fix_init(&f);
    f.wl.network_mode = (Istio__Workload__NetworkMode)-1;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "network_mode: unknown enum value -1");

    wl_fix_init(&f);
    f.tun.protocol = (Istio__Workload__ApplicationTunnel__Protocol)2;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "application_tunnel.protocol: unknown enum value 2");

    wl_fix_init(&f);
    f.tun.port = 65536;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "application_tunnel.port: 65536 is not a port");

    wl_fix_init(&f);
    f.port1.service_port = 100000;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "services[0].ports[1].service_port: 100000 is not a port");

    wl_fix_init(&f);
    f.port0.target_port = 70000;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "services[0].ports[0].target_port: 70000 is not a port");

    wl_fix_init(&f);
    f.wp.destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION__NOT_SET;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO, "waypoint: destination not set");

    wl_fix_init(&f);
    f.wp_host.hostname = "";
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "waypoint.hostname.hostname: empty");

    wl_fix_init(&f);
    f.wp.hbone_mtls_port = 65536;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "waypoint.hbone_mtls_port: 65536 is not a port");

    wl_fix_init(&f);
    f.ngw_addr.address = bin(bad_gw, 3);
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_PROTO,
                  "network_gateway.address.address: length 3, want 4 or 16");
}

static void test_reject_workload_caps(void)
{
    struct wl_fix f;
    char *big = malloc(ZT_XDS_MAX_STR + 2);
    ProtobufCBinaryData *many = calloc(ZT_XDS_MAX_LIST + 1, sizeof(*many));
    char **pols = calloc(ZT_XDS_MAX_LIST + 1, sizeof(char *));

    memset(big, 'a', ZT_XDS_MAX_STR + 1);
    big[ZT_XDS_MAX_STR + 1] = '\0';
    for (size_t i = 0; i <= ZT_XDS_MAX_LIST; i++) {
        many[i] = bin(ip4_a, 4);
        pols[i] = "ns/p";
    }

    /* Exactly at the caps is fine. */
    wl_fix_init(&f);
    big[ZT_XDS_MAX_STR] = '\0';
    f.wl.name = big;
    f.wl.addresses = many;
    f.wl.n_addresses = ZT_XDS_MAX_LIST;
    {
        struct zt_workload *w;
        char err[128];
        int rc = zt_xds_workload_from_pb(&f.wl, &w, err, sizeof(err));
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(w->n_addresses, ZT_XDS_MAX_LIST);
        zt_workload_unref(w);
    }
    big[ZT_XDS_MAX_STR] = 'a';

    wl_fix_init(&f);
    f.wl.hostname = big;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_TOO_BIG,
                  "hostname: longer than 1024 bytes");

    wl_fix_init(&f);
    f.wl.addresses = many;
    f.wl.n_addresses = ZT_XDS_MAX_LIST + 1;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_TOO_BIG,
                  "addresses: 1025 elements, at most 1024 allowed");

    wl_fix_init(&f);
    f.wl.authorization_policies = pols;
    f.wl.n_authorization_policies = ZT_XDS_MAX_LIST + 1;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_TOO_BIG,
                  "authorization_policies: 1025 elements");

    wl_fix_init(&f);
    f.pols[0] = big;
    EXPECT_REJECT(pack_workload(&f.wl), apply_addr, ZT_E_TOO_BIG,
                  "authorization_policies[0]: longer than 1024 bytes");

    free(big);
    free(many);
    free(pols);
}

static void test_reject_service(void)
{
    struct svc_fix f;
    static const uint8_t five[5] = {1, 2, 3, 4, 5};
    Istio__Workload__LoadBalancing__Scope seven[7];

    svc_fix_init(&f);
    f.svc.hostname = "";
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_PROTO, "hostname: empty");

    svc_fix_init(&f);
    f.a0.address = bin(five, 5);
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_PROTO,
                  "addresses[0]: length 5, want 4 or 16");

    svc_fix_init(&f);
    f.a2.length = 33;
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_PROTO,
                  "addresses[2]: prefix length 33 longer than the address");

    svc_fix_init(&f);
    f.scopes[1] = ISTIO__WORKLOAD__LOAD_BALANCING__SCOPE__UNSPECIFIED_SCOPE;
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_PROTO,
                  "load_balancing.routing_preference[1]: UNSPECIFIED_SCOPE is not allowed");

    svc_fix_init(&f);
    f.scopes[0] = (Istio__Workload__LoadBalancing__Scope)7;
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_PROTO,
                  "load_balancing.routing_preference[0]: unknown enum value 7");

    svc_fix_init(&f);
    for (size_t i = 0; i < 7; i++)
        seven[i] = ISTIO__WORKLOAD__LOAD_BALANCING__SCOPE__REGION;
    f.lb.routing_preference = seven;
    f.lb.n_routing_preference = 7;
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_TOO_BIG,
                  "load_balancing.routing_preference: 7 scopes");

    svc_fix_init(&f);
    f.lb.mode = (Istio__Workload__LoadBalancing__Mode)4;
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_PROTO,
                  "load_balancing.mode: unknown enum value 4");

    svc_fix_init(&f);
    f.lb.health_policy = (Istio__Workload__LoadBalancing__HealthPolicy)2;
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_PROTO,
                  "load_balancing.health_policy: unknown enum value 2");

    svc_fix_init(&f);
    f.svc.ip_families = (Istio__Workload__IPFamilies)4;
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_PROTO,
                  "ip_families: unknown enum value 4");

    svc_fix_init(&f);
    f.port0.service_port = 65536;
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_PROTO,
                  "ports[0].service_port: 65536 is not a port");

    svc_fix_init(&f);
    f.ww.destination = NULL;
    EXPECT_REJECT(pack_service(&f.svc), apply_addr, ZT_E_PROTO,
                  "weighted_waypoints[0].destination: missing");
}

static void test_reject_policy(void)
{
    struct pol_fix f;
    static const uint8_t five[5] = {1, 2, 3, 4, 5};

    pol_fix_init(&f);
    f.pol.name = "";
    EXPECT_REJECT(pack_policy(&f.pol), apply_pol, ZT_E_PROTO, "name: empty");

    pol_fix_init(&f);
    f.pol.scope = (Istio__Security__Scope)3;
    EXPECT_REJECT(pack_policy(&f.pol), apply_pol, ZT_E_PROTO, "scope: unknown enum value 3");

    pol_fix_init(&f);
    f.pol.action = (Istio__Security__Action)2; /* e.g. a future AUDIT */
    EXPECT_REJECT(pack_policy(&f.pol), apply_pol, ZT_E_PROTO, "action: unknown enum value 2");

    pol_fix_init(&f);
    f.src0.address = bin(five, 5);
    EXPECT_REJECT(pack_policy(&f.pol), apply_pol, ZT_E_PROTO,
                  "rules[0].clauses[0].matches[0].source_ips[0]: length 5, want 4 or 16");

    pol_fix_init(&f);
    f.dst0.length = 129;
    EXPECT_REJECT(pack_policy(&f.pol), apply_pol, ZT_E_PROTO,
                  "rules[0].clauses[0].matches[0].not_destination_ips[0]: prefix length 129");

    pol_fix_init(&f);
    f.pr0.match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE__NOT_SET;
    EXPECT_REJECT(pack_policy(&f.pol), apply_pol, ZT_E_PROTO,
                  "rules[0].clauses[0].matches[0].not_principals[0]: match_type not set");

    {
        uint32_t *ports = calloc(ZT_XDS_MAX_LIST + 1, sizeof(uint32_t));
        pol_fix_init(&f);
        f.match.not_destination_ports = ports;
        f.match.n_not_destination_ports = ZT_XDS_MAX_LIST + 1;
        EXPECT_REJECT(pack_policy(&f.pol), apply_pol, ZT_E_TOO_BIG,
                      "rules[0].clauses[0].matches[0].not_destination_ports: 1025 elements");
        free(ports);
    }
}

/* Malformed bytes, an empty Address and an oversized resource. */
static void test_reject_bytes(void)
{
    static const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
    static const uint8_t empty_addr[1] = {0};
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    char err[256];
    char *name = (char *)"untouched";
    struct zt_state *s;

    CHECK_EQ_INT(zt_xds_apply_address(b, garbage, sizeof(garbage), &name, err, sizeof(err)),
                 ZT_E_PROTO);
    CHECK(name == NULL);
    CHECK_EQ_STR(err, "resource: not a valid istio.workload.Address");
    CHECK_EQ_INT(zt_xds_apply_authorization(b, garbage, sizeof(garbage), NULL, err, sizeof(err)),
                 ZT_E_PROTO);
    CHECK_EQ_STR(err, "resource: not a valid istio.security.Authorization");
    CHECK_EQ_INT(zt_xds_apply_address(b, empty_addr, 0, NULL, err, sizeof(err)), ZT_E_PROTO);
    CHECK_EQ_STR(err, "type: neither workload nor service set");
    /* The length is checked before any byte is read. */
    CHECK_EQ_INT(
        zt_xds_apply_address(b, empty_addr, ZT_XDS_MAX_RESOURCE_LEN + 1, NULL, err, sizeof(err)),
        ZT_E_TOO_BIG);
    CHECK(strstr(err, "resource: ") == err);
    /* errlen 0 must not write. */
    CHECK_EQ_INT(zt_xds_apply_address(b, garbage, sizeof(garbage), NULL, NULL, 0), ZT_E_PROTO);
    /* Nothing was put: the snapshot is empty. */
    CHECK_EQ_INT(zt_state_builder_finish(b, &s, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_state_workload_count(s) + zt_state_service_count(s), 0);
    zt_state_unref(s);
}

/* The key reported through name_out matches the resource naming of 3.1. */
static void test_apply_names(void)
{
    struct wl_fix wf;
    struct svc_fix sf;
    struct pol_fix pf;
    struct buf b;
    struct zt_state_builder *bld = zt_state_builder_new(NULL);
    struct zt_state *s;
    char err[256], *name = NULL;

    wl_fix_init(&wf);
    svc_fix_init(&sf);
    pol_fix_init(&pf);
    b = pack_workload(&wf.wl);
    CHECK_EQ_INT(zt_xds_apply_address(bld, b.p, b.n, &name, err, sizeof(err)), 0);
    free(b.p);
    CHECK_EQ_STR(name, "c1//v1/Pod/default/app");
    free(name);
    b = pack_service(&sf.svc);
    CHECK_EQ_INT(zt_xds_apply_address(bld, b.p, b.n, &name, err, sizeof(err)), 0);
    free(b.p);
    CHECK_EQ_STR(name, "default/app.default.svc.cluster.local");
    free(name);
    b = pack_policy(&pf.pol);
    CHECK_EQ_INT(zt_xds_apply_authorization(bld, b.p, b.n, &name, err, sizeof(err)), 0);
    free(b.p);
    CHECK_EQ_STR(name, "default/deny-9090");
    free(name);
    CHECK_EQ_INT(zt_state_builder_finish(bld, &s, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_state_workload_count(s), 1);
    CHECK_EQ_INT(zt_state_service_count(s), 1);
    CHECK_EQ_INT(zt_state_policy_count(s), 1);
    /* The workload's services map points at the service: it is an endpoint. */
    {
        const struct zt_workload *const *eps;
        CHECK_EQ_INT(zt_state_service_endpoints(s, zt_state_service_at(s, 0), &eps), 1);
    }
    zt_state_unref(s);
}

static void test_service_name_shape(void)
{
    CHECK(zt_xds_is_service_name("ns/host.example"));
    CHECK(!zt_xds_is_service_name("c1//v1/Pod/ns/name"));
    CHECK(!zt_xds_is_service_name("/host"));
    CHECK(!zt_xds_is_service_name("ns/"));
    CHECK(!zt_xds_is_service_name("uid-without-slash"));
    CHECK(!zt_xds_is_service_name(NULL));
}

/* Deltas: a base with a workload, a service and a policy; removals by
 * resource name produce the next snapshot. */
static void test_removals(void)
{
    struct wl_fix wf;
    struct svc_fix sf;
    struct pol_fix pf;
    Istio__Workload__Workload odd = ISTIO__WORKLOAD__WORKLOAD__INIT;
    struct buf b;
    struct zt_state_builder *bld = zt_state_builder_new(NULL);
    struct zt_state *s0, *s1, *s2;
    char err[256];

    wl_fix_init(&wf);
    svc_fix_init(&sf);
    pol_fix_init(&pf);
    /* A workload whose uid looks like a service name: removal by that name
     * must remove the workload (it exists in base), not the service. */
    odd.uid = "default/app.default.svc.cluster.local";
    b = pack_workload(&wf.wl);
    CHECK_EQ_INT(zt_xds_apply_address(bld, b.p, b.n, NULL, err, sizeof(err)), 0);
    free(b.p);
    b = pack_workload(&odd);
    CHECK_EQ_INT(zt_xds_apply_address(bld, b.p, b.n, NULL, err, sizeof(err)), 0);
    free(b.p);
    b = pack_service(&sf.svc);
    CHECK_EQ_INT(zt_xds_apply_address(bld, b.p, b.n, NULL, err, sizeof(err)), 0);
    free(b.p);
    b = pack_policy(&pf.pol);
    CHECK_EQ_INT(zt_xds_apply_authorization(bld, b.p, b.n, NULL, err, sizeof(err)), 0);
    free(b.p);
    CHECK_EQ_INT(zt_state_builder_finish(bld, &s0, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_state_workload_count(s0), 2);

    bld = zt_state_builder_new(s0);
    zt_xds_remove_address(bld, s0, "default/app.default.svc.cluster.local");
    zt_xds_remove_address(bld, s0, "no-such-uid");
    zt_xds_remove_authorization(bld, "default/deny-9090");
    CHECK_EQ_INT(zt_state_builder_finish(bld, &s1, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_state_workload_count(s1), 1);
    CHECK(zt_state_workload_by_uid(s1, "c1//v1/Pod/default/app") != NULL);
    CHECK(zt_state_service_by_key(s1, "default/app.default.svc.cluster.local") != NULL);
    CHECK_EQ_INT(zt_state_policy_count(s1), 0);

    bld = zt_state_builder_new(s1);
    zt_xds_remove_address(bld, s1, "default/app.default.svc.cluster.local");
    zt_xds_remove_address(bld, s1, "c1//v1/Pod/default/app");
    CHECK_EQ_INT(zt_state_builder_finish(bld, &s2, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_state_workload_count(s2), 0);
    CHECK_EQ_INT(zt_state_service_count(s2), 0);
    /* Older snapshots are untouched. */
    CHECK_EQ_INT(zt_state_service_count(s1), 1);
    zt_state_unref(s0);
    zt_state_unref(s1);
    zt_state_unref(s2);
}

/* An unknown enum number arriving from the wire (not through our structs)
 * is still rejected: protobuf-c keeps open enums as plain ints. */
static void test_unknown_enum_from_wire(void)
{
    /* Address{workload{name="", uid="u", tunnel_protocol=9}} by hand:
     * field 1 (workload) len 6: field 20 (uid) = "u" (0xa2 0x01 0x01 'u'),
     * field 5 varint 9 (0x28 0x09). */
    static const uint8_t msg[] = {0x0a, 0x06, 0xa2, 0x01, 0x01, 'u', 0x28, 0x09};
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    char err[256] = "";
    CHECK_EQ_INT(zt_xds_apply_address(b, msg, sizeof(msg), NULL, err, sizeof(err)), ZT_E_PROTO);
    zt_state_builder_free(b);
    CHECK_EQ_STR(err, "tunnel_protocol: unknown enum value 9");
}

int main(void)
{
    RUN(test_workload_round_trip);
    RUN(test_workload_defaults);
    RUN(test_workload_duplicate_map_key);
    RUN(test_service_round_trip);
    RUN(test_service_unknown_visibility);
    RUN(test_policy_round_trip);
    RUN(test_reject_workload);
    RUN(test_reject_workload_caps);
    RUN(test_reject_service);
    RUN(test_reject_policy);
    RUN(test_reject_bytes);
    RUN(test_apply_names);
    RUN(test_service_name_shape);
    RUN(test_removals);
    RUN(test_unknown_enum_from_wire);
    return TEST_REPORT();
}
