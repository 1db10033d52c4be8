#include "test.h"

#include "base/err.h"
#include "state/state.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

static struct zt_ip ip(const char *s)
{
    struct zt_ip a;
    memset(&a, 0, sizeof(a));
    if (zt_ip_parse(s, &a) != 0)
        abort();
    return a;
}

static struct zt_workload *wl_new(const char *uid, const char *name, const char *ns,
                                  const char *addr, enum zt_workload_protocol proto)
{
    struct zt_workload *wl = zt_workload_new();
    wl->uid = zt_state_xstrdup(uid);
    wl->name = zt_state_xstrdup(name);
    wl->namespace = zt_state_xstrdup(ns);
    wl->protocol = proto;
    if (addr)
        *(struct zt_ip *)zt_state_array_push(&wl->addresses, &wl->n_addresses,
                                             sizeof(struct zt_ip)) = ip(addr);
    return wl;
}

/* Adds svc_key with one port mapping (target 0: none) to wl. */
static void wl_add_svc(struct zt_workload *wl, const char *key, uint16_t sp, uint16_t tp)
{
    struct zt_workload_service *ws =
        zt_state_array_push(&wl->services, &wl->n_services, sizeof(*ws));
    ws->key = zt_state_xstrdup(key);
    if (sp) {
        struct zt_port_map *pm = zt_state_array_push(&ws->ports, &ws->n_ports, sizeof(*pm));
        pm->service_port = sp;
        pm->target_port = tp;
    }
}

static struct zt_service *svc_new(const char *name, const char *ns, const char *vip, uint16_t sp,
                                  uint16_t tp)
{
    struct zt_service *svc = zt_service_new();
    char host[128];
    snprintf(host, sizeof(host), "%s.%s.svc.cluster.local", name, ns);
    svc->name = zt_state_xstrdup(name);
    svc->namespace = zt_state_xstrdup(ns);
    svc->hostname = zt_state_xstrdup(host);
    if (vip) {
        struct zt_vip *v = zt_state_array_push(&svc->vips, &svc->n_vips, sizeof(*v));
        v->network = zt_state_xstrdup("");
        v->ip = ip(vip);
    }
    if (sp) {
        struct zt_port_map *pm = zt_state_array_push(&svc->ports, &svc->n_ports, sizeof(*pm));
        pm->service_port = sp;
        pm->target_port = tp;
    }
    return svc;
}

static struct zt_state *finish(struct zt_state_builder *b)
{
    struct zt_state *s = NULL;
    char err[256];
    int rc = zt_state_builder_finish(b, &s, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "finish: %s\n", err);
        abort();
    }
    return s;
}

static void test_ip_parse_format(void)
{
    struct zt_ip a, b;
    char buf[ZT_IP_STRLEN];
    CHECK_EQ_INT(zt_ip_parse("10.1.2.3", &a), 0);
    CHECK_EQ_INT(a.family, AF_INET);
    CHECK_EQ_STR(zt_ip_format(&a, buf, sizeof(buf)), "10.1.2.3");
    CHECK_EQ_INT(zt_ip_parse("::ffff:10.1.2.3", &b), 0);
    CHECK_EQ_INT(b.family, AF_INET);
    CHECK(zt_ip_eq(&a, &b));
    CHECK_EQ_INT(zt_ip_parse("fd00::1", &b), 0);
    CHECK_EQ_INT(b.family, AF_INET6);
    CHECK_EQ_STR(zt_ip_format(&b, buf, sizeof(buf)), "fd00::1");
    CHECK(!zt_ip_eq(&a, &b));
    CHECK_EQ_INT(zt_ip_parse("10.1.2", &a), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_ip_parse("10.1.2.3 ", &a), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_ip_parse("", &a), ZT_E_CONFIG);
}

static void test_ip_sockaddr(void)
{
    struct sockaddr_in6 sin6;
    struct sockaddr_storage ss;
    struct zt_ip a;
    uint16_t port = 0;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(8080);
    inet_pton(AF_INET6, "::ffff:192.168.1.9", &sin6.sin6_addr);
    CHECK_EQ_INT(zt_ip_from_sockaddr((struct sockaddr *)&sin6, &a, &port), 0);
    CHECK_EQ_INT(a.family, AF_INET);
    CHECK_EQ_INT(port, 8080);
    CHECK_EQ_INT(zt_ip_to_sockaddr(&a, 99, &ss), sizeof(struct sockaddr_in));
    CHECK_EQ_INT(zt_ip_from_sockaddr((struct sockaddr *)&ss, &a, &port), 0);
    CHECK_EQ_INT(port, 99);
    CHECK(zt_ip_eq(&a, &(struct zt_ip){0}) == false);
    {
        uint8_t raw[3] = {1, 2, 3};
        CHECK_EQ_INT(zt_ip_from_bytes(raw, 3, &a), ZT_E_PROTO);
    }
}

static void test_cidr(void)
{
    struct zt_cidr c;
    struct zt_ip a = ip("10.1.200.7");
    CHECK_EQ_INT(zt_cidr_parse("10.1.0.0/16", &c), 0);
    CHECK(zt_cidr_contains(&c, &a));
    a = ip("10.2.0.1");
    CHECK(!zt_cidr_contains(&c, &a));
    CHECK_EQ_INT(zt_cidr_parse("10.1.2.3", &c), 0);
    CHECK_EQ_INT(c.prefix, 32);
    CHECK_EQ_INT(zt_cidr_parse("0.0.0.0/0", &c), 0);
    a = ip("8.8.8.8");
    CHECK(zt_cidr_contains(&c, &a));
    a = ip("::1");
    CHECK(!zt_cidr_contains(&c, &a)); /* family mismatch */
    CHECK_EQ_INT(zt_cidr_parse("::ffff:10.0.0.0/104", &c), 0);
    CHECK_EQ_INT(c.ip.family, AF_INET);
    CHECK_EQ_INT(c.prefix, 8);
    CHECK_EQ_INT(zt_cidr_parse("10.0.0.0/33", &c), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_cidr_parse("10.0.0.0/", &c), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_cidr_parse("10.0.0.0/-1", &c), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_cidr_parse("fd00::/8", &c), 0);
    a = ip("fdff::2");
    CHECK(zt_cidr_contains(&c, &a));
}

static void test_defaults_and_uid_lookup(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s;
    const struct zt_workload *w;
    char id[128];
    zt_state_builder_add_workload(b, wl_new("u1", "a", "ns1", "10.0.0.1", ZT_WL_PROTO_HBONE));
    s = finish(b);
    w = zt_state_workload_by_uid(s, "u1");
    CHECK(w != NULL);
    CHECK_EQ_STR(w->service_account, "default");
    CHECK_EQ_STR(w->trust_domain, "cluster.local");
    CHECK_EQ_STR(w->cluster_id, "Kubernetes");
    CHECK_EQ_STR(w->network, "");
    CHECK_EQ_INT(w->capacity, 1);
    CHECK_EQ_INT(zt_workload_identity(w, id, sizeof(id)), 0);
    CHECK_EQ_STR(id, "spiffe://cluster.local/ns/ns1/sa/default");
    CHECK(zt_state_workload_by_uid(s, "u2") == NULL);
    CHECK_EQ_INT(zt_state_workload_count(s), 1);
    zt_state_unref(s);
}

static void test_duplicate_uid_rejected(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s = (struct zt_state *)1;
    char err[256];
    zt_state_builder_add_workload(b, wl_new("u1", "a", "ns1", "10.0.0.1", ZT_WL_PROTO_TCP));
    zt_state_builder_add_workload(b, wl_new("u1", "b", "ns1", "10.0.0.2", ZT_WL_PROTO_TCP));
    CHECK_EQ_INT(zt_state_builder_finish(b, &s, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(s == NULL);
    CHECK_EQ_STR(err, "duplicate workload uid \"u1\"");

    b = zt_state_builder_new(NULL);
    zt_state_builder_add_service(b, svc_new("a", "ns", "10.96.0.1", 80, 8080));
    zt_state_builder_add_service(b, svc_new("a", "ns", "10.96.0.2", 80, 8080));
    CHECK_EQ_INT(zt_state_builder_finish(b, &s, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_STR(err, "duplicate service \"ns/a.ns.svc.cluster.local\"");

    b = zt_state_builder_new(NULL);
    zt_state_builder_add_workload(b, wl_new("", "a", "ns1", NULL, ZT_WL_PROTO_TCP));
    CHECK_EQ_INT(zt_state_builder_finish(b, &s, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_STR(err, "workload \"ns1/a\" has an empty uid");

    b = zt_state_builder_new(NULL);
    {
        struct zt_workload *w = wl_new("u9", "a", "ns1", NULL, ZT_WL_PROTO_TCP);
        wl_add_svc(w, "nohost", 80, 80);
        zt_state_builder_add_workload(b, w);
    }
    CHECK_EQ_INT(zt_state_builder_finish(b, &s, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_STR(err, "workload \"u9\": service key \"nohost\" is not namespace/hostname");
}

static void test_by_ip(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s;
    struct zt_workload *host = wl_new("host", "h", "ns", "10.0.0.9", ZT_WL_PROTO_TCP);
    struct zt_workload *v6 = wl_new("v6", "v6", "ns", "fd00::5", ZT_WL_PROTO_TCP);
    struct zt_workload *other_net = wl_new("onet", "o", "ns", "10.0.0.1", ZT_WL_PROTO_TCP);
    struct zt_ip a;
    host->network_mode = ZT_NETMODE_HOST_NETWORK;
    other_net->network = zt_state_xstrdup("net2");
    zt_state_builder_add_workload(b, wl_new("tcp", "t", "ns", "10.0.0.1", ZT_WL_PROTO_TCP));
    zt_state_builder_add_workload(b, wl_new("hbone", "h", "ns", "10.0.0.1", ZT_WL_PROTO_HBONE));
    zt_state_builder_add_workload(b, wl_new("a-tcp", "t2", "ns", "10.0.0.1", ZT_WL_PROTO_TCP));
    zt_state_builder_add_workload(b, host);
    zt_state_builder_add_workload(b, v6);
    zt_state_builder_add_workload(b, other_net);
    s = finish(b);

    a = ip("10.0.0.1");
    CHECK(zt_state_workload_by_ip(s, "", &a) != NULL);
    CHECK_EQ_STR(zt_state_workload_by_ip(s, "", &a)->uid, "hbone");
    CHECK_EQ_STR(zt_state_workload_by_ip(s, NULL, &a)->uid, "hbone");
    CHECK_EQ_STR(zt_state_workload_by_ip(s, "net2", &a)->uid, "onet");
    /* IPv4-mapped IPv6 finds the IPv4 workload even if not canonicalised. */
    memset(&a, 0, sizeof(a));
    a.family = AF_INET6;
    a.addr[10] = a.addr[11] = 0xff;
    a.addr[12] = 10;
    a.addr[15] = 1;
    CHECK(zt_state_workload_by_ip(s, "", &a) != NULL);
    CHECK_EQ_STR(zt_state_workload_by_ip(s, "", &a)->uid, "hbone");
    a = ip("10.0.0.9");
    CHECK(zt_state_workload_by_ip(s, "", &a) == NULL); /* host network */
    a = ip("fd00::5");
    CHECK_EQ_STR(zt_state_workload_by_ip(s, "", &a)->uid, "v6");
    a = ip("10.0.0.77");
    CHECK(zt_state_workload_by_ip(s, "", &a) == NULL);
    zt_state_unref(s);
}

static void test_by_vip_and_lookup(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s;
    struct zt_service *priv = svc_new("priv", "ns2", "10.96.0.1", 80, 80);
    struct zt_service *cidr = svc_new("cidr", "ns1", NULL, 80, 80);
    struct zt_cidr_vip *cv = zt_state_array_push(&cidr->cidr_vips, &cidr->n_cidr_vips, sizeof(*cv));
    struct zt_ip a;
    priv->visibility = ZT_VIS_NAMESPACE;
    cv->network = zt_state_xstrdup("");
    zt_cidr_parse("10.200.0.0/16", &cv->cidr);
    zt_state_builder_add_service(b, svc_new("pub", "ns1", "10.96.0.1", 80, 80));
    zt_state_builder_add_service(b, priv);
    zt_state_builder_add_service(b, cidr);
    s = finish(b);

    a = ip("10.96.0.1");
    CHECK(zt_state_service_by_vip(s, "", &a) != NULL);
    /* Same VIP in two namespaces: the client's namespace wins if visible. */
    CHECK_EQ_STR(zt_state_service_lookup(s, "", &a, "ns2")->name, "priv");
    CHECK_EQ_STR(zt_state_service_lookup(s, "", &a, "ns1")->name, "pub");
    CHECK_EQ_STR(zt_state_service_lookup(s, "", &a, "ns3")->name, "pub");
    CHECK(zt_state_service_by_vip(s, "other", &a) == NULL);
    a = ip("10.200.3.4");
    CHECK(zt_state_service_by_vip(s, "", &a) == NULL);
    CHECK_EQ_STR(zt_state_service_lookup(s, "", &a, "ns9")->name, "cidr");
    CHECK_EQ_STR(zt_state_service_by_key(s, "ns1/pub.ns1.svc.cluster.local")->name, "pub");
    CHECK(zt_state_service_by_key(s, "ns1/nope") == NULL);
    zt_state_unref(s);
}

static void test_by_info(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s;
    struct zt_workload *w1 = wl_new("u1", "app", "ns", "10.0.0.1", ZT_WL_PROTO_HBONE);
    struct zt_workload *w2 = wl_new("u2", "app", "ns", "10.0.0.2", ZT_WL_PROTO_HBONE);
    w1->node = zt_state_xstrdup("node-a");
    w2->node = zt_state_xstrdup("node-b");
    w1->service_account = zt_state_xstrdup("sa1");
    w2->service_account = zt_state_xstrdup("sa1");
    zt_state_builder_add_workload(b, w1);
    zt_state_builder_add_workload(b, w2);
    s = finish(b);
    CHECK_EQ_STR(zt_state_workload_by_info(s, "app", "ns", "sa1", NULL)->uid, "u1");
    CHECK_EQ_STR(zt_state_workload_by_info(s, "app", "ns", "sa1", "node-b")->uid, "u2");
    CHECK_EQ_STR(zt_state_workload_by_info(s, "app", "ns", NULL, "node-c")->uid, "u1");
    CHECK(zt_state_workload_by_info(s, "app", "ns", "other", NULL) == NULL);
    CHECK(zt_state_workload_by_info(s, "app", "ns2", NULL, NULL) == NULL);
    zt_state_unref(s);
}

static void test_delta_builder(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s1, *s2;
    const struct zt_workload *keep;
    zt_state_builder_add_workload(b, wl_new("u1", "a", "ns", "10.0.0.1", ZT_WL_PROTO_TCP));
    zt_state_builder_add_workload(b, wl_new("u2", "b", "ns", "10.0.0.2", ZT_WL_PROTO_TCP));
    zt_state_builder_add_service(b, svc_new("s", "ns", "10.96.0.1", 80, 80));
    s1 = finish(b);
    keep = zt_state_workload_by_uid(s1, "u2");

    b = zt_state_builder_new(s1);
    zt_state_builder_remove_workload(b, "u1");
    zt_state_builder_put_workload(b, wl_new("u3", "c", "ns", "10.0.0.3", ZT_WL_PROTO_HBONE));
    zt_state_builder_put_workload(b, wl_new("u3", "c2", "ns", "10.0.0.4", ZT_WL_PROTO_HBONE));
    zt_state_builder_remove_service(b, "ns/s.ns.svc.cluster.local");
    zt_state_builder_remove_workload(b, "never-existed");
    s2 = finish(b);
    /* The old snapshot is unchanged. */
    CHECK(zt_state_workload_by_uid(s1, "u1") != NULL);
    CHECK_EQ_INT(zt_state_service_count(s1), 1);
    CHECK(zt_state_workload_by_uid(s2, "u1") == NULL);
    CHECK(zt_state_workload_by_uid(s2, "u2") == keep); /* shared, not copied */
    CHECK_EQ_STR(zt_state_workload_by_uid(s2, "u3")->name, "c2");
    CHECK_EQ_INT(zt_state_workload_count(s2), 2);
    CHECK_EQ_INT(zt_state_service_count(s2), 0);
    zt_state_unref(s1);
    /* s2 still valid after s1 is gone. */
    CHECK_EQ_STR(zt_state_workload_at(s2, 0)->uid, "u2");
    zt_state_ref(s2);
    zt_state_unref(s2);
    zt_state_unref(s2);
}

/* Builds a service "web" in ns with three endpoints e1..e3. */
static struct zt_state *lb_state(enum zt_lb_mode mode, const enum zt_lb_scope *prefs, size_t n,
                                 void (*tweak)(struct zt_workload **eps))
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_service *svc = svc_new("web", "ns", "10.96.0.10", 80, 8080);
    struct zt_workload *eps[3];
    const char *key = "ns/web.ns.svc.cluster.local";
    svc->lb_mode = mode;
    for (size_t i = 0; i < n; i++)
        svc->lb_routing[i] = prefs[i];
    svc->n_lb_routing = n;
    /* second service port with no service-level target port */
    {
        struct zt_port_map *pm = zt_state_array_push(&svc->ports, &svc->n_ports, sizeof(*pm));
        pm->service_port = 81;
        pm->target_port = 0;
    }
    eps[0] = wl_new("e1", "e1", "ns", "10.0.1.1", ZT_WL_PROTO_HBONE);
    eps[1] = wl_new("e2", "e2", "ns", "10.0.1.2", ZT_WL_PROTO_TCP);
    eps[2] = wl_new("e3", "e3", "ns", "10.0.1.3", ZT_WL_PROTO_HBONE);
    wl_add_svc(eps[0], key, 80, 9000); /* endpoint mapping overrides 8080 */
    wl_add_svc(eps[1], key, 0, 0);
    wl_add_svc(eps[2], key, 81, 9181);
    if (tweak)
        tweak(eps);
    for (int i = 0; i < 3; i++)
        zt_state_builder_add_workload(b, eps[i]);
    zt_state_builder_add_service(b, svc);
    zt_state_builder_add_workload(b, wl_new("client", "c", "ns", "10.0.2.1", ZT_WL_PROTO_HBONE));
    return finish(b);
}

static void test_pick_ports(void)
{
    struct zt_state *s = lb_state(ZT_LB_STANDARD, NULL, 0, NULL);
    const struct zt_service *svc = zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    const struct zt_workload *w;
    uint16_t tp;
    const struct zt_workload *const *eps;
    CHECK_EQ_INT(zt_state_service_endpoints(s, svc, &eps), 3);
    /* Equal capacity: random 0,1,2 walk the endpoints in uid order. */
    CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, NULL, 0, &w, &tp), 0);
    CHECK_EQ_STR(w->uid, "e1");
    CHECK_EQ_INT(tp, 9000);
    CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, NULL, 1, &w, &tp), 0);
    CHECK_EQ_STR(w->uid, "e2");
    CHECK_EQ_INT(tp, 8080);
    CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, NULL, 5, &w, &tp), 0);
    CHECK_EQ_STR(w->uid, "e3");
    CHECK_EQ_INT(tp, 8080);
    /* Port 81 has no service target port: only e3 maps it. */
    for (uint32_t r = 0; r < 4; r++) {
        CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 81, NULL, r, &w, &tp), 0);
        CHECK_EQ_STR(w->uid, "e3");
        CHECK_EQ_INT(tp, 9181);
    }
    CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 82, NULL, 0, &w, &tp), ZT_E_NOT_FOUND);
    zt_state_unref(s);
}

static void tweak_health(struct zt_workload **eps)
{
    eps[0]->status = ZT_WL_UNHEALTHY;
    eps[1]->status = ZT_WL_UNHEALTHY;
    eps[2]->status = ZT_WL_UNHEALTHY;
}

static void test_pick_unhealthy(void)
{
    struct zt_state *s = lb_state(ZT_LB_STANDARD, NULL, 0, tweak_health);
    struct zt_service *svc =
        (struct zt_service *)zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    const struct zt_workload *w;
    uint16_t tp;
    struct zt_upstream up;
    struct zt_ip vip = ip("10.96.0.10");
    CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, NULL, 0, &w, &tp), ZT_E_NOT_FOUND);
    CHECK_EQ_INT(zt_state_resolve_outbound(s, NULL, NULL, &vip, 80, 0, &up), ZT_E_NOT_FOUND);
    zt_state_unref(s);

    s = lb_state(ZT_LB_STANDARD, NULL, 0, tweak_health);
    svc = (struct zt_service *)zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    /* Test-only: flip the health policy in place before anyone else sees it. */
    svc->lb_health = ZT_LB_ALLOW_ALL;
    CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, NULL, 0, &w, &tp), 0);
    CHECK_EQ_STR(w->uid, "e1");
    zt_state_unref(s);
}

static void tweak_capacity(struct zt_workload **eps)
{
    eps[0]->capacity = 1;
    eps[1]->capacity = 3;
    eps[2]->capacity = 0;
}

static void test_pick_capacity(void)
{
    struct zt_state *s = lb_state(ZT_LB_STANDARD, NULL, 0, tweak_capacity);
    const struct zt_service *svc = zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    const struct zt_workload *w;
    uint16_t tp;
    int counts[3] = {0, 0, 0};
    for (uint32_t r = 0; r < 400; r++) {
        CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, NULL, r, &w, &tp), 0);
        counts[w->uid[1] - '1']++;
    }
    CHECK_EQ_INT(counts[0], 100);
    CHECK_EQ_INT(counts[1], 300);
    CHECK_EQ_INT(counts[2], 0);
    zt_state_unref(s);
}

static void tweak_locality(struct zt_workload **eps)
{
    /* e1: same region+zone as client, e2: same region, e3: other region */
    eps[0]->locality.region = zt_state_xstrdup("r1");
    eps[0]->locality.zone = zt_state_xstrdup("z1");
    eps[1]->locality.region = zt_state_xstrdup("r1");
    eps[1]->locality.zone = zt_state_xstrdup("z2");
    eps[2]->locality.region = zt_state_xstrdup("r2");
    eps[2]->locality.zone = zt_state_xstrdup("z1");
}

static void tweak_locality_no_e1(struct zt_workload **eps)
{
    tweak_locality(eps);
    eps[0]->status = ZT_WL_UNHEALTHY;
}

static struct zt_workload *client_in(const char *region, const char *zone)
{
    struct zt_workload *c = wl_new("client", "c", "ns", "10.0.2.1", ZT_WL_PROTO_HBONE);
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s;
    c->locality.region = zt_state_xstrdup(region);
    c->locality.zone = zt_state_xstrdup(zone);
    /* Run it through a builder so defaults are applied, then keep it. */
    zt_state_builder_add_workload(b, zt_workload_ref(c));
    s = finish(b);
    zt_state_unref(s);
    return c;
}

static void test_pick_failover_strict(void)
{
    const enum zt_lb_scope prefs[] = {ZT_LB_SCOPE_REGION, ZT_LB_SCOPE_ZONE};
    struct zt_workload *client = client_in("r1", "z1");
    struct zt_state *s = lb_state(ZT_LB_FAILOVER, prefs, 2, tweak_locality);
    const struct zt_service *svc = zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    const struct zt_workload *w;
    uint16_t tp;
    for (uint32_t r = 0; r < 5; r++) {
        CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, client, r, &w, &tp), 0);
        CHECK_EQ_STR(w->uid, "e1");
    }
    zt_state_unref(s);

    /* e1 unhealthy: FAILOVER falls back to e2 (region match only). */
    s = lb_state(ZT_LB_FAILOVER, prefs, 2, tweak_locality_no_e1);
    svc = zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    for (uint32_t r = 0; r < 5; r++) {
        CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, client, r, &w, &tp), 0);
        CHECK_EQ_STR(w->uid, "e2");
    }
    zt_state_unref(s);

    /* STRICT: full match required; without e1 there is none. */
    s = lb_state(ZT_LB_STRICT, prefs, 2, tweak_locality);
    svc = zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, client, 1, &w, &tp), 0);
    CHECK_EQ_STR(w->uid, "e1");
    zt_state_unref(s);
    s = lb_state(ZT_LB_STRICT, prefs, 2, tweak_locality_no_e1);
    svc = zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, client, 1, &w, &tp), ZT_E_NOT_FOUND);
    zt_state_unref(s);

    /* STANDARD ignores locality. */
    s = lb_state(ZT_LB_STANDARD, prefs, 2, tweak_locality);
    svc = zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, client, 2, &w, &tp), 0);
    CHECK_EQ_STR(w->uid, "e3");
    zt_state_unref(s);
    zt_workload_unref(client);
}

static void tweak_network(struct zt_workload **eps)
{
    /* e1 on another network without a gateway: unreachable. */
    free(eps[0]->network);
    eps[0]->network = zt_state_xstrdup("remote");
}

static void tweak_unreachable(struct zt_workload **eps)
{
    /* e1: no address, not even a hostname. */
    eps[0]->n_addresses = 0;
    /* e3: another network, and no gateway to reach it through. */
    free(eps[2]->network);
    eps[2]->network = zt_state_xstrdup("remote");
}

/* Endpoints the proxy cannot reach are never picked: one without address
 * or hostname, and one on another network without a network gateway; nor one whose
 * addresses the service's IP families exclude. Every random value lands
 * on e2. */
static void test_pick_skips_undialable(void)
{
    struct zt_state *s = lb_state(ZT_LB_STANDARD, NULL, 0, tweak_unreachable);
    const struct zt_workload *client = zt_state_workload_by_uid(s, "client");
    struct zt_service *svc =
        (struct zt_service *)zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    const struct zt_workload *w;
    struct zt_upstream up;
    struct zt_ip vip = ip("10.96.0.10");
    uint16_t tp;
    for (uint32_t r = 0; r < 12; r++) {
        CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, client, r, &w, &tp), 0);
        CHECK_EQ_STR(w->uid, "e2");
        CHECK_EQ_INT(zt_state_resolve_outbound(s, client, NULL, &vip, 80, r, &up), 0);
        CHECK(up.has_ip && !up.needs_dns);
        CHECK_EQ_STR(up.wl->uid, "e2");
    }
    /* Test-only: IPv6 only, and e2 has only an IPv4 address. */
    svc->ip_families = ZT_IPF_IPV6_ONLY;
    CHECK_EQ_INT(zt_state_pick_endpoint(s, svc, 80, client, 0, &w, &tp), ZT_E_NOT_FOUND);
    CHECK_EQ_INT(zt_state_resolve_outbound(s, client, NULL, &vip, 80, 0, &up), ZT_E_NOT_FOUND);
    zt_state_unref(s);
}

static void tweak_hostname(struct zt_workload **eps)
{
    /* e1 and e2: known by hostname only (a DNS ServiceEntry's endpoints);
     * e3: one address. */
    for (int i = 0; i < 2; i++) {
        eps[i]->n_addresses = 0;
        free(eps[i]->hostname);
        eps[i]->hostname = zt_state_xstrdup(i ? "e2.example.com" : "e1.example.com");
    }
}

/* Hostname-only endpoints are picked like any (Istio resolves them once
 * picked): the upstream says to resolve the name, without an address;
 * an endpoint with an address is dialed as before. Even an IPv6-only
 * service picks them (the answer decides the family). */
static void test_pick_hostname_endpoints(void)
{
    struct zt_state *s = lb_state(ZT_LB_STANDARD, NULL, 0, tweak_hostname);
    const struct zt_workload *client = zt_state_workload_by_uid(s, "client");
    struct zt_upstream up;
    struct zt_ip vip = ip("10.96.0.10");
    unsigned by_name = 0, by_ip = 0;
    for (uint32_t r = 0; r < 300; r++) {
        CHECK_EQ_INT(zt_state_resolve_outbound(s, client, NULL, &vip, 80, r * 2654435761u, &up), 0);
        if (up.needs_dns) {
            CHECK(!up.has_ip && up.wl->hostname[0]);
            CHECK(up.kind == ZT_UPSTREAM_SERVICE && (up.port == 9000 || up.port == 8080));
            by_name++;
        } else {
            CHECK(up.has_ip);
            CHECK_EQ_STR(up.wl->uid, "e3");
            by_ip++;
        }
    }
    CHECK(by_name > 100 && by_ip > 50);
    struct zt_service *svc =
        (struct zt_service *)zt_state_service_by_key(s, "ns/web.ns.svc.cluster.local");
    svc->ip_families = ZT_IPF_IPV6_ONLY;
    for (uint32_t r = 0; r < 20; r++) {
        CHECK_EQ_INT(zt_state_resolve_outbound(s, client, NULL, &vip, 80, r * 2654435761u, &up), 0);
        CHECK(up.needs_dns);
    }
    zt_state_unref(s);
}

static void test_resolve_outbound(void)
{
    struct zt_state *s = lb_state(ZT_LB_STANDARD, NULL, 0, tweak_network);
    const struct zt_workload *client = zt_state_workload_by_uid(s, "client");
    struct zt_upstream up;
    struct zt_ip dst = ip("10.96.0.10");
    char buf[ZT_IP_STRLEN];

    CHECK_EQ_INT(zt_state_resolve_outbound(s, client, NULL, &dst, 80, 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_SERVICE);
    CHECK_EQ_STR(up.wl->uid, "e2"); /* e1 skipped: other network */
    CHECK(!up.is_hbone);
    CHECK_EQ_INT(up.port, 8080);
    CHECK(up.has_ip);
    CHECK_EQ_STR(zt_ip_format(&up.ip, buf, sizeof(buf)), "10.0.1.2");
    CHECK_EQ_STR(up.svc->name, "web");

    CHECK_EQ_INT(zt_state_resolve_outbound(s, client, NULL, &dst, 80, 1, &up), 0);
    CHECK_EQ_STR(up.wl->uid, "e3");
    CHECK(up.is_hbone);

    dst = ip("10.0.1.3");
    CHECK_EQ_INT(zt_state_resolve_outbound(s, client, NULL, &dst, 7000, 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WORKLOAD);
    CHECK_EQ_STR(up.wl->uid, "e3");
    CHECK(up.is_hbone);
    CHECK_EQ_INT(up.port, 7000);

    dst = ip("192.0.2.1");
    CHECK_EQ_INT(zt_state_resolve_outbound(s, client, NULL, &dst, 443, 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_PASSTHROUGH);
    CHECK(up.wl == NULL && up.svc == NULL && !up.is_hbone);
    CHECK_EQ_STR(zt_ip_format(&up.ip, buf, sizeof(buf)), "192.0.2.1");
    zt_state_unref(s);

    s = lb_state(ZT_LB_PASSTHROUGH, NULL, 0, NULL);
    dst = ip("10.96.0.10");
    CHECK_EQ_INT(zt_state_resolve_outbound(s, NULL, NULL, &dst, 80, 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_PASSTHROUGH);
    CHECK(up.svc != NULL);
    CHECK_EQ_INT(up.port, 80);
    zt_state_unref(s);
}

/* A delta over a large base: one changed workload, every other record
 * (and its strings) is the base's own; the delta is merged in key order;
 * adding a key the base has is a duplicate, removing it first is not; a
 * bad record in the delta is refused and the base stays usable. */
static void test_delta_merge(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s1, *s2, *s3 = (struct zt_state *)1;
    char uid[16], addr[32], err[128];
    size_t shared = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(uid, sizeof(uid), "u%03d", i);
        snprintf(addr, sizeof(addr), "10.0.%d.%d", i / 200, i % 200 + 1);
        zt_state_builder_add_workload(b, wl_new(uid, uid, "ns", addr, ZT_WL_PROTO_HBONE));
    }
    s1 = finish(b);

    b = zt_state_builder_new(s1);
    zt_state_builder_put_workload(b, wl_new("u050", "changed", "ns", "10.1.0.1", ZT_WL_PROTO_TCP));
    zt_state_builder_put_workload(b, wl_new("u0505", "new", "ns", "10.1.0.2", ZT_WL_PROTO_TCP));
    zt_state_builder_remove_workload(b, "u000");
    zt_state_builder_remove_workload(b, "u001");
    zt_state_builder_add_workload(b, wl_new("u001", "again", "ns", "10.1.0.3", ZT_WL_PROTO_TCP));
    s2 = finish(b);
    CHECK_EQ_INT(zt_state_workload_count(s2), 100);
    for (size_t i = 0; i < zt_state_workload_count(s2); i++) {
        const struct zt_workload *w = zt_state_workload_at(s2, i);
        if (w == zt_state_workload_by_uid(s1, w->uid))
            shared++;
        if (i)
            CHECK(strcmp(zt_state_workload_at(s2, i - 1)->uid, w->uid) < 0);
    }
    CHECK_EQ_INT(shared, 97); /* all but u050, u0505, u001 (and u000 gone) */
    CHECK_EQ_STR(zt_state_workload_by_uid(s2, "u050")->name, "changed");
    CHECK_EQ_STR(zt_state_workload_by_uid(s2, "u001")->name, "again");
    CHECK(zt_state_workload_by_uid(s2, "u000") == NULL);
    CHECK(zt_state_workload_by_ip(s2, "", &(struct zt_ip){0}) == NULL);
    {
        struct zt_ip a = ip("10.1.0.1"), old = ip("10.0.0.51");
        CHECK(zt_state_workload_by_ip(s2, "", &a) == zt_state_workload_by_uid(s2, "u050"));
        CHECK(zt_state_workload_by_ip(s2, "", &old) == NULL);
        CHECK(zt_state_workload_by_ip(s1, "", &old) == zt_state_workload_by_uid(s1, "u050"));
    }

    b = zt_state_builder_new(s2);
    zt_state_builder_add_workload(b, wl_new("u099", "dup", "ns", "10.1.0.9", ZT_WL_PROTO_TCP));
    CHECK_EQ_INT(zt_state_builder_finish(b, &s3, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_STR(err, "duplicate workload uid \"u099\"");
    CHECK(s3 == NULL);

    b = zt_state_builder_new(s2);
    zt_state_builder_put_workload(b, wl_new("", "nouid", "ns", "10.1.0.9", ZT_WL_PROTO_TCP));
    CHECK_EQ_INT(zt_state_builder_finish(b, &s3, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_STR(err, "workload \"ns/nouid\" has an empty uid");
    zt_state_unref(s1);
    CHECK_EQ_INT(zt_state_workload_count(s2), 100);
    zt_state_unref(s2);
}

/* Indexes built from a base plus a delta answer exactly as indexes built
 * from scratch over the same records: random rounds of puts and removes of
 * workloads (colliding addresses, services named before they exist) and of
 * services. */
static uint32_t rnd_state = 12345;
static uint32_t rnd(uint32_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

static struct zt_workload *rnd_wl(void)
{
    char uid[16], addr[32], key[64];
    struct zt_workload *w;
    snprintf(uid, sizeof(uid), "w%02u", rnd(60));
    snprintf(addr, sizeof(addr), "10.0.0.%u", rnd(40) + 1);
    w = wl_new(uid, uid, "ns", addr, rnd(2) ? ZT_WL_PROTO_HBONE : ZT_WL_PROTO_TCP);
    for (uint32_t k = rnd(3); k > 0; k--) {
        snprintf(key, sizeof(key), "ns/s%u.ns.svc.cluster.local", rnd(8));
        wl_add_svc(w, key, 80, 8080);
    }
    return w;
}

static void same_indexes(const struct zt_state *d)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *f;
    for (size_t i = 0; i < zt_state_workload_count(d); i++)
        zt_state_builder_add_workload(
            b, zt_workload_ref((struct zt_workload *)zt_state_workload_at(d, i)));
    for (size_t i = 0; i < zt_state_service_count(d); i++)
        zt_state_builder_add_service(
            b, zt_service_ref((struct zt_service *)zt_state_service_at(d, i)));
    f = finish(b);
    for (unsigned a = 1; a <= 41; a++) {
        char addr[32];
        struct zt_ip x;
        snprintf(addr, sizeof(addr), "10.0.0.%u", a);
        x = ip(addr);
        CHECK(zt_state_workload_by_ip(d, "", &x) == zt_state_workload_by_ip(f, "", &x));
    }
    CHECK_EQ_INT(zt_state_service_count(d), zt_state_service_count(f));
    for (size_t i = 0; i < zt_state_service_count(d); i++) {
        const struct zt_workload *const *ed, *const *ef;
        size_t nd = zt_state_service_endpoints(d, zt_state_service_at(d, i), &ed);
        size_t nf = zt_state_service_endpoints(f, zt_state_service_at(f, i), &ef);
        CHECK_EQ_INT(nd, nf);
        for (size_t k = 0; k < nd && k < nf; k++)
            CHECK(ed[k] == ef[k]);
    }
    zt_state_unref(f);
}

static void test_delta_indexes(void)
{
    struct zt_state *s = finish(zt_state_builder_new(NULL));
    for (int round = 0; round < 300; round++) {
        struct zt_state_builder *b = zt_state_builder_new(s);
        for (uint32_t k = rnd(4) + 1; k > 0; k--) {
            char key[64];
            switch (rnd(4)) {
            case 0:
            case 1:
                zt_state_builder_put_workload(b, rnd_wl());
                break;
            case 2:
                snprintf(key, sizeof(key), "w%02u", rnd(60));
                zt_state_builder_remove_workload(b, key);
                break;
            default:
                snprintf(key, sizeof(key), "s%u", rnd(8));
                if (rnd(3)) {
                    char vip[32];
                    snprintf(vip, sizeof(vip), "10.96.0.%u", rnd(8) + 1);
                    zt_state_builder_put_service(b, svc_new(key, "ns", vip, 80, 8080));
                } else {
                    char full[128];
                    snprintf(full, sizeof(full), "ns/%s.ns.svc.cluster.local", key);
                    zt_state_builder_remove_service(b, full);
                }
                break;
            }
        }
        zt_state_unref(s);
        s = finish(b);
        same_indexes(s);
    }
    zt_state_unref(s);
}

/* The builder moves a workload's addresses, services and ports into one
 * block: every value survives, in order. */
static void test_workload_packed(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_workload *w = wl_new("u1", "a", "ns", "10.0.0.1", ZT_WL_PROTO_HBONE);
    struct zt_state *s;
    const struct zt_workload *g;
    struct zt_ip a2 = ip("fd00::2");
    *(struct zt_ip *)zt_state_array_push(&w->addresses, &w->n_addresses, sizeof(struct zt_ip)) = a2;
    wl_add_svc(w, "ns/one", 80, 8080);
    wl_add_svc(w, "ns/two", 0, 0);
    wl_add_svc(w, "ns/three", 443, 8443);
    {
        struct zt_port_map *pm =
            zt_state_array_push(&w->services[2].ports, &w->services[2].n_ports, sizeof(*pm));
        pm->service_port = 9090;
    }
    zt_state_builder_add_workload(b, w);
    s = finish(b);
    g = zt_state_workload_by_uid(s, "u1");
    CHECK(g != NULL);
    CHECK_EQ_INT(g->n_addresses, 2);
    CHECK(zt_workload_has_ip(g, &a2));
    CHECK_EQ_INT(g->n_services, 3);
    CHECK_EQ_STR(g->services[1].key, "ns/two");
    CHECK_EQ_INT(g->services[1].n_ports, 0);
    CHECK_EQ_INT(g->services[0].ports[0].target_port, 8080);
    CHECK_EQ_INT(g->services[2].n_ports, 2);
    CHECK_EQ_INT(g->services[2].ports[0].target_port, 8443);
    CHECK_EQ_INT(g->services[2].ports[1].service_port, 9090);
    CHECK(zt_state_workload_by_ip(s, "", &a2) == g);
    zt_state_unref(s);
}

/* Strings that repeat across records are held once per snapshot; the
 * defaults and "" too. Freeing the snapshot frees them (ASan checks). */
static void test_strings_shared(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_workload *w1 = wl_new("u1", "a", "ns1", "10.0.0.1", ZT_WL_PROTO_HBONE);
    struct zt_workload *w2 = wl_new("u2", "b", "ns1", "10.0.0.2", ZT_WL_PROTO_HBONE);
    struct zt_service *svc = zt_service_new();
    const struct zt_workload *a, *c;
    struct zt_state *s = NULL;
    char err[128];
    wl_add_svc(w1, "ns1/h", 80, 8080);
    wl_add_svc(w2, "ns1/h", 80, 8080);
    svc->namespace = zt_state_xstrdup("ns1");
    svc->hostname = zt_state_xstrdup("h");
    zt_state_builder_add_workload(b, w1);
    zt_state_builder_add_workload(b, w2);
    zt_state_builder_add_service(b, svc);
    CHECK_EQ_INT(zt_state_builder_finish(b, &s, err, sizeof(err)), 0);
    a = zt_state_workload_by_uid(s, "u1");
    c = zt_state_workload_by_uid(s, "u2");
    CHECK(a && c);
    CHECK(a->namespace == c->namespace);
    CHECK(a->namespace == zt_state_service_by_key(s, "ns1/h")->namespace);
    CHECK_EQ_STR(a->service_account, "default");
    CHECK(a->service_account == c->service_account);
    CHECK(a->trust_domain == c->trust_domain);
    CHECK(a->network == c->node); /* both "" */
    CHECK(a->services[0].key == zt_state_service_by_key(s, "ns1/h")->key);
    CHECK(a->uid != c->uid);
    zt_state_unref(s);
}

/* Services sharing one hostname (a ServiceEntry host in two namespaces)
 * come back together, in namespace order, whatever the query's case; a
 * hostname before, between and after them finds nothing. */
static void test_by_hostname(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    zt_state_builder_add_service(b, svc_new("a", "ns1", "10.96.0.1", 80, 80));
    zt_state_builder_add_service(b, svc_new("c", "ns1", "10.96.0.3", 80, 80));
    struct zt_service *e1 = svc_new("ext", "ns2", "10.96.0.4", 80, 80);
    struct zt_service *e2 = svc_new("ext", "ns1", "10.96.0.5", 80, 80);
    free(e1->hostname);
    free(e2->hostname);
    e1->hostname = zt_state_xstrdup("b.example.com");
    e2->hostname = zt_state_xstrdup("B.Example.com");
    zt_state_builder_add_service(b, e1);
    zt_state_builder_add_service(b, e2);
    struct zt_state *s = finish(b);
    const struct zt_service *const *v;
    CHECK(zt_state_services_by_hostname(s, "b.EXAMPLE.com", &v) == 2);
    CHECK_EQ_STR(v[0]->namespace, "ns1");
    CHECK_EQ_STR(v[1]->namespace, "ns2");
    CHECK(zt_state_services_by_hostname(s, "a.ns1.svc.cluster.local", &v) == 1);
    CHECK_EQ_STR(v[0]->name, "a");
    CHECK(zt_state_services_by_hostname(s, "c.ns1.svc.cluster.local", &v) == 1);
    CHECK(zt_state_services_by_hostname(s, "a.example.com", &v) == 0);
    CHECK(zt_state_services_by_hostname(s, "bb.example.com", &v) == 0);
    CHECK(zt_state_services_by_hostname(s, "z", &v) == 0);
    zt_state_unref(s);
    struct zt_state *empty = zt_state_new_empty();
    CHECK(zt_state_services_by_hostname(empty, "a", &v) == 0);
    zt_state_unref(empty);
}

/* ---- waypoints (wire facts 8) ---- */

static void gw_ip(struct zt_gateway *g, const char *network, const char *addr, uint16_t port)
{
    g->kind = ZT_GATEWAY_ADDRESS;
    g->network = zt_state_xstrdup(network);
    g->ip = ip(addr);
    g->hbone_mtls_port = port;
}

static void gw_host(struct zt_gateway *g, const char *ns, const char *host, uint16_t port)
{
    g->kind = ZT_GATEWAY_HOSTNAME;
    g->namespace = zt_state_xstrdup(ns);
    g->hostname = zt_state_xstrdup(host);
    g->hbone_mtls_port = port;
}

static struct zt_weighted_waypoint *add_weighted(struct zt_service *svc, uint32_t weight)
{
    struct zt_weighted_waypoint *w =
        zt_state_array_push(&svc->weighted_waypoints, &svc->n_weighted_waypoints, sizeof(*w));
    w->weight = weight;
    return w;
}

static struct zt_workload *wl_sa(const char *uid, const char *addr, const char *sa)
{
    struct zt_workload *wl = wl_new(uid, uid, "ns", addr, ZT_WL_PROTO_HBONE);
    wl->service_account = zt_state_xstrdup(sa);
    return wl;
}

#define WP_SVC "ns/waypoint.ns.svc.cluster.local"
#define WP_AT_SVC "ns/wp-at.ns.svc.cluster.local"
#define WP_REMOTE_SVC "ns/wp-remote.ns.svc.cluster.local"

/* Workloads: client c (10.0.2.1); e1 (10.0.1.1) with its own waypoint at
 * 10.0.9.1, e2 (10.0.1.2), both endpoints of "web" (no waypoint); e3
 * (10.0.1.3) whose waypoint is the service "waypoint" (VIP 10.96.0.99,
 * port 15008, one extra SAN), of which wp1 (10.0.9.1) and wp2 (10.0.9.2)
 * are the endpoints here, wp-remote (10.0.9.5) one on net2; wp-at
 * (10.0.9.3, application tunnel) and wp-noat (10.0.9.4) of "wp-at" (no
 * ports); wp-remote is the only endpoint of "wp-remote". Services with a
 * VIP 10.96.0.N each show one waypoint configuration. */
static struct zt_state *wp_state(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_workload *w;
    struct zt_service *svc;

    zt_state_builder_add_workload(b, wl_sa("client", "10.0.2.1", "c"));
    w = wl_sa("e1", "10.0.1.1", "e");
    wl_add_svc(w, "ns/web.ns.svc.cluster.local", 80, 8080);
    gw_ip(&w->waypoint, "", "10.0.9.1", 15008);
    zt_state_builder_add_workload(b, w);
    w = wl_sa("e2", "10.0.1.2", "e");
    wl_add_svc(w, "ns/web.ns.svc.cluster.local", 80, 8080);
    zt_state_builder_add_workload(b, w);
    w = wl_sa("e3", "10.0.1.3", "e");
    gw_host(&w->waypoint, "ns", "waypoint.ns.svc.cluster.local", 15008);
    zt_state_builder_add_workload(b, w);
    w = wl_sa("wp1", "10.0.9.1", "waypoint");
    wl_add_svc(w, WP_SVC, 0, 0);
    zt_state_builder_add_workload(b, w);
    w = wl_sa("wp2", "10.0.9.2", "waypoint");
    wl_add_svc(w, WP_SVC, 0, 0);
    zt_state_builder_add_workload(b, w);
    w = wl_sa("wp-at", "10.0.9.3", "waypoint");
    w->has_application_tunnel = true;
    w->application_tunnel_protocol = ZT_APP_TUNNEL_PROXY;
    wl_add_svc(w, WP_AT_SVC, 0, 0);
    zt_state_builder_add_workload(b, w);
    w = wl_sa("wp-noat", "10.0.9.4", "waypoint");
    wl_add_svc(w, WP_AT_SVC, 0, 0);
    zt_state_builder_add_workload(b, w);
    w = wl_sa("wp-remote", "10.0.9.5", "waypoint");
    w->network = zt_state_xstrdup("net2");
    wl_add_svc(w, WP_REMOTE_SVC, 0, 0);
    wl_add_svc(w, WP_SVC, 0, 0);
    zt_state_builder_add_workload(b, w);

    zt_state_builder_add_service(b, svc_new("web", "ns", "10.96.0.10", 80, 8080));
    svc = svc_new("waypoint", "ns", "10.96.0.99", 15008, 15008);
    *(char **)zt_state_array_push(&svc->subject_alt_names, &svc->n_subject_alt_names,
                                  sizeof(char *)) =
        zt_state_xstrdup("spiffe://cluster.local/ns/ns/sa/wp-extra");
    zt_state_builder_add_service(b, svc);
    zt_state_builder_add_service(b, svc_new("wp-at", "ns", NULL, 0, 0));
    zt_state_builder_add_service(b, svc_new("wp-remote", "ns", NULL, 15008, 15008));
    zt_state_builder_add_service(b, svc_new("empty-wp", "ns", NULL, 15008, 15008));

    svc = svc_new("by-ip", "ns", "10.96.0.11", 80, 8080);
    gw_ip(&svc->waypoint, "", "10.0.9.1", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("by-host", "ns", "10.96.0.12", 80, 8080);
    gw_host(&svc->waypoint, "ns", "waypoint.ns.svc.cluster.local", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("by-at", "ns", "10.96.0.13", 80, 8080);
    gw_host(&svc->waypoint, "ns", "wp-at.ns.svc.cluster.local", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("weighted", "ns", "10.96.0.14", 80, 8080);
    gw_ip(&add_weighted(svc, 1)->destination, "", "10.0.9.1", 15008);
    gw_ip(&add_weighted(svc, 3)->destination, "", "10.0.9.2", 15008);
    gw_ip(&add_weighted(svc, 0)->destination, "", "10.0.9.3", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("zero", "ns", "10.96.0.15", 80, 8080);
    gw_ip(&add_weighted(svc, 0)->destination, "", "10.0.9.1", 15008);
    gw_ip(&add_weighted(svc, 0)->destination, "", "10.0.9.1", 15008);
    gw_ip(&svc->waypoint, "", "10.0.9.2", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("remote-ip", "ns", "10.96.0.16", 80, 8080);
    gw_ip(&svc->waypoint, "net2", "10.0.9.5", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("remote-host", "ns", "10.96.0.17", 80, 8080);
    gw_host(&svc->waypoint, "ns", "wp-remote.ns.svc.cluster.local", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("unknown-host", "ns", "10.96.0.18", 80, 8080);
    gw_host(&svc->waypoint, "ns", "nothing.ns.svc.cluster.local", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("unknown-ip", "ns", "10.96.0.19", 80, 8080);
    gw_ip(&svc->waypoint, "", "10.0.9.200", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("no-endpoints", "ns", "10.96.0.20", 80, 8080);
    gw_host(&svc->waypoint, "ns", "empty-wp.ns.svc.cluster.local", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("pt", "ns", "10.96.0.21", 80, 8080);
    svc->lb_mode = ZT_LB_PASSTHROUGH;
    gw_ip(&svc->waypoint, "", "10.0.9.1", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("weighted-bad", "ns", "10.96.0.22", 80, 8080);
    gw_ip(&add_weighted(svc, 1)->destination, "", "10.0.9.200", 15008);
    gw_ip(&svc->waypoint, "", "10.0.9.1", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("port0", "ns", "10.96.0.23", 80, 8080);
    gw_ip(&svc->waypoint, "", "10.0.9.1", 0);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("by-vip", "ns", "10.96.0.24", 80, 8080);
    gw_ip(&svc->waypoint, "", "10.96.0.99", 15008);
    zt_state_builder_add_service(b, svc);
    /* A waypoint known only by its hostname (no address). */
    w = wl_sa("wp-dns", "10.0.9.6", "waypoint");
    w->n_addresses = 0;
    free(w->hostname);
    w->hostname = zt_state_xstrdup("wp.corp.test");
    zt_state_builder_add_workload(b, w);
    svc = svc_new("by-dns", "ns", "10.96.0.25", 80, 8080);
    gw_host(&svc->waypoint, "ns", "wp.corp.test", 15008);
    zt_state_builder_add_service(b, svc);
    return finish(b);
}

/* Resolves dst:80 for the client c from its own address; rc checked. */
static int wp_resolve(const struct zt_state *s, const char *client_uid, const char *src,
                      const char *dst, uint32_t r, struct zt_upstream *up)
{
    struct zt_ip d = ip(dst), sip = ip(src);
    return zt_state_resolve_outbound(s, zt_state_workload_by_uid(s, client_uid), &sip, &d, 80, r,
                                     up);
}

static const char *ip_str(const struct zt_ip *a)
{
    static char buf[ZT_IP_STRLEN];
    return zt_ip_format(a, buf, sizeof(buf));
}

/* A VIP whose service names its waypoint by IP goes to that workload's
 * address at the gateway's port, expecting the waypoint's identity only;
 * the service stays the one dialed. So does a PASSTHROUGH service's. A
 * service without a waypoint is load-balanced as before, even though its
 * endpoint e1 has a waypoint of its own (service-addressed traffic). */
static void test_waypoint_service_by_ip(void)
{
    struct zt_state *s = wp_state();
    struct zt_upstream up;
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.11", 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WAYPOINT);
    CHECK_EQ_STR(up.wl->uid, "wp1");
    CHECK_EQ_STR(ip_str(&up.ip), "10.0.9.1");
    CHECK_EQ_INT(up.port, 15008);
    CHECK(up.is_hbone && up.has_ip);
    CHECK_EQ_STR(up.svc->name, "by-ip");
    CHECK_EQ_INT(up.n_sans, 0);
    CHECK_EQ_STR(zt_upstream_kind_str(up.kind), "waypoint");

    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.21", 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WAYPOINT);
    CHECK_EQ_STR(up.wl->uid, "wp1");
    CHECK_EQ_STR(up.svc->name, "pt");

    for (uint32_t r = 0; r < 4; r++) {
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.10", r, &up), 0);
        CHECK_EQ_INT(up.kind, ZT_UPSTREAM_SERVICE);
        CHECK_EQ_STR(up.wl->uid, r % 2 ? "e2" : "e1");
        CHECK_EQ_INT(up.port, 8080);
    }
    zt_state_unref(s);
}

/* By hostname: the waypoint service's endpoints are load-balanced (both
 * waypoint pods get picked; the one on another network is left out while
 * local ones exist), its SANs are expected too. In waypoint mode
 * an endpoint with an application tunnel serves even though its service
 * has no port at all, and one without is never picked. */
static void test_waypoint_service_by_hostname(void)
{
    struct zt_state *s = wp_state();
    struct zt_upstream up;
    int seen[2] = {0, 0};
    for (uint32_t r = 0; r < 64; r++) {
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.12", r, &up), 0);
        CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WAYPOINT);
        CHECK(strcmp(up.wl->uid, "wp1") == 0 || strcmp(up.wl->uid, "wp2") == 0);
        seen[up.wl->uid[2] - '1']++;
        CHECK(zt_workload_has_ip(up.wl, &up.ip));
        CHECK_EQ_INT(up.port, 15008);
        CHECK_EQ_STR(up.svc->name, "by-host");
        CHECK_EQ_INT(up.n_sans, 1);
        CHECK_EQ_STR(up.sans[0], "spiffe://cluster.local/ns/ns/sa/wp-extra");
    }
    CHECK(seen[0] > 0 && seen[1] > 0);
    /* A waypoint given by IP that is the waypoint service's VIP: the same. */
    for (uint32_t r = 0; r < 8; r++) {
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.24", r, &up), 0);
        CHECK(strcmp(up.wl->uid, "wp1") == 0 || strcmp(up.wl->uid, "wp2") == 0);
        CHECK_EQ_INT(up.n_sans, 1);
    }
    for (uint32_t r = 0; r < 16; r++) {
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.13", r, &up), 0);
        CHECK_EQ_STR(up.wl->uid, "wp-at");
        CHECK_EQ_INT(up.port, 15008);
    }
    zt_state_unref(s);
}

/* Weighted waypoints split connections in proportion to weight: over
 * every residue of the total weight, exactly; over pseudo-random values,
 * within 5 standard deviations; a zero weight never. With only zero weights
 * the single waypoint is used. A weighted pick that resolves to nothing
 * fails: it does not fall back to the single waypoint. */
static void test_waypoint_weighted(void)
{
    struct zt_state *s = wp_state();
    struct zt_upstream up;
    int n[3] = {0, 0, 0};
    for (uint32_t r = 0; r < 4000; r++) {
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.14", r, &up), 0);
        CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WAYPOINT);
        n[up.wl->uid[2] - '1']++;
    }
    CHECK_EQ_INT(n[0], 1000);
    CHECK_EQ_INT(n[1], 3000);
    n[0] = n[1] = 0;
    rnd_state = 777;
    for (int i = 0; i < 4000; i++) {
        uint32_t r = (rnd(65536) << 16) | rnd(65536);
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.14", r, &up), 0);
        CHECK(strcmp(up.wl->uid, "wp-at") != 0);
        n[up.wl->uid[2] - '1']++;
    }
    /* Binomial(4000, 0.25): mean 1000, standard deviation 27.4. */
    CHECK(n[0] > 1000 - 137 && n[0] < 1000 + 137);
    CHECK_EQ_INT(n[0] + n[1], 4000);

    for (uint32_t r = 0; r < 8; r++) {
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.15", r, &up), 0);
        CHECK_EQ_STR(up.wl->uid, "wp2");
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.22", r, &up), ZT_E_NOT_FOUND);
        CHECK_EQ_INT(up.fail, ZT_UPSTREAM_FAIL_WAYPOINT_UNKNOWN);
    }
    zt_state_unref(s);
}

/* Traffic to e1's pod IP goes to e1's own waypoint, with no service; the
 * same destination through the service VIP does not (test above). */
static void test_waypoint_workload(void)
{
    struct zt_state *s = wp_state();
    struct zt_upstream up;
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.0.1.1", 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WAYPOINT);
    CHECK_EQ_STR(up.wl->uid, "wp1");
    CHECK_EQ_STR(ip_str(&up.ip), "10.0.9.1");
    CHECK_EQ_INT(up.port, 15008);
    CHECK(up.svc == NULL);
    /* e2 has no waypoint: direct. */
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.0.1.2", 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WORKLOAD);
    CHECK_EQ_STR(up.wl->uid, "e2");
    zt_state_unref(s);
}

/* The waypoint's own traffic to e1 goes direct: wp1 has e1's waypoint's
 * identity and connects from its own address. A client with the
 * waypoint's identity from another address, or from the waypoint's address
 * with another identity, still goes through the waypoint. */
static void test_waypoint_source_is_waypoint(void)
{
    struct zt_state *s = wp_state();
    struct zt_upstream up;
    CHECK_EQ_INT(wp_resolve(s, "wp1", "10.0.9.1", "10.0.1.1", 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WORKLOAD);
    CHECK_EQ_STR(up.wl->uid, "e1");
    /* wp2: same identity as wp1, but not wp1's address. */
    CHECK_EQ_INT(wp_resolve(s, "wp2", "10.0.9.2", "10.0.1.1", 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WAYPOINT);
    /* the client, claiming wp1's address, has another identity. */
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.9.1", "10.0.1.1", 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WAYPOINT);
    /* A waypoint by hostname: any endpoint of its service is the waypoint. */
    CHECK_EQ_INT(wp_resolve(s, "wp2", "10.0.9.2", "10.0.1.3", 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WORKLOAD);
    CHECK_EQ_STR(up.wl->uid, "e3");
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.0.1.3", 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WAYPOINT);
    CHECK(up.svc == NULL);
    /* No source address known: never taken for the waypoint. */
    struct zt_ip d = ip("10.0.1.1");
    CHECK_EQ_INT(
        zt_state_resolve_outbound(s, zt_state_workload_by_uid(s, "wp1"), NULL, &d, 80, 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WAYPOINT);
    zt_state_unref(s);
}

/* A waypoint on another network (by IP, or a service whose only endpoint
 * is there) is refused, never bypassed. */
static void test_waypoint_other_network(void)
{
    struct zt_state *s = wp_state();
    struct zt_upstream up;
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.16", 0, &up), ZT_E_NOT_FOUND);
    CHECK_EQ_INT(up.fail, ZT_UPSTREAM_FAIL_WAYPOINT_NETWORK);
    CHECK_EQ_STR(up.svc->name, "remote-ip");
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.17", 0, &up), ZT_E_NOT_FOUND);
    CHECK_EQ_INT(up.fail, ZT_UPSTREAM_FAIL_WAYPOINT_NETWORK);
    zt_state_unref(s);
}

/* A waypoint that resolves to nothing fails the connection: an unknown
 * hostname, an IP no workload or service has, a service without
 * endpoints, an HBONE port of 0. */
static void test_waypoint_unresolvable(void)
{
    struct zt_state *s = wp_state();
    struct zt_upstream up;
    const char *vips[] = {"10.96.0.18", "10.96.0.19", "10.96.0.20", "10.96.0.23"};
    for (size_t i = 0; i < sizeof(vips) / sizeof(vips[0]); i++) {
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", vips[i], 0, &up), ZT_E_NOT_FOUND);
        CHECK_EQ_INT(up.fail, ZT_UPSTREAM_FAIL_WAYPOINT_UNKNOWN);
        CHECK(up.svc != NULL);
    }
    CHECK(strstr(zt_upstream_fail_str(ZT_UPSTREAM_FAIL_WAYPOINT_UNKNOWN), "waypoint") != NULL);
    zt_state_unref(s);
}

/* A waypoint workload known only by hostname is resolved when dialed, as
 * any endpoint: the plan says so, without an address. */
static void test_waypoint_hostname_only(void)
{
    struct zt_state *s = wp_state();
    struct zt_upstream up;
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.25", 0, &up), 0);
    CHECK(up.kind == ZT_UPSTREAM_WAYPOINT);
    CHECK(up.needs_dns && !up.has_ip);
    CHECK_EQ_STR(up.wl->uid, "wp-dns");
    CHECK_EQ_INT(up.port, 15008);
    CHECK_EQ_STR(up.svc->name, "by-dns");
    /* Waypoints with addresses are dialed as before. */
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.11", 0, &up), 0);
    CHECK(up.has_ip && !up.needs_dns);
    zt_state_unref(s);
}

/* ---- multi-network: double HBONE through network gateways (wire facts 2.7) ---- */

#define MN_WEB "ns/web.ns.svc.cluster.local"
#define MN_GW_SVC "istio-system/eastwest.istio-system.svc.cluster.local"
#define MN_RWP_SVC "ns/rwp.ns.svc.cluster.local"

static void add_san(struct zt_service *svc, const char *san)
{
    *(char **)zt_state_array_push(&svc->subject_alt_names, &svc->n_subject_alt_names,
                                  sizeof(char *)) = zt_state_xstrdup(san);
}

static struct zt_workload *wl_net(const char *uid, const char *addr, const char *network)
{
    struct zt_workload *wl = wl_new(uid, uid, "ns", addr, ZT_WL_PROTO_HBONE);
    wl->network = zt_state_xstrdup(network);
    return wl;
}

/* The client c (10.0.2.1) is on network "". Service web (VIP 10.96.0.10,
 * 80 -> 8080, SAN sa/web) has e1 here, e2 on net2 without an address behind
 * the gateway 172.16.0.1 (the workload gw1, by IP), e3 on net2 behind the
 * gateway service eastwest (by hostname: gw1 and gw2 on net2, port 15008,
 * SAN sa/gw-extra), e4 on net2 with no gateway. bad-gw (10.96.0.30) has only
 * e5, whose gateway IP is nobody's. failover (10.96.0.31, FAILOVER on
 * NETWORK) has f1 here and f2 behind gw1; with local_down f1 is unhealthy.
 * nogw (10.96.0.32) has only e4. wp-svc (10.96.0.33) has the waypoint
 * service rwp, whose only endpoint rwp1 is on net2 behind gw1 (SAN
 * sa/rwp-svc); e6 (10.0.1.6) has the workload waypoint rwp2 (10.0.9.7, on
 * net2 behind gw1). */
static struct zt_state *mn_state(bool local_down)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_workload *w;
    struct zt_service *svc;

    zt_state_builder_add_workload(b, wl_sa("client", "10.0.2.1", "c"));
    w = wl_net("e1", "10.0.1.1", "");
    wl_add_svc(w, MN_WEB, 80, 8080);
    zt_state_builder_add_workload(b, w);
    w = wl_net("e2", NULL, "net2");
    wl_add_svc(w, MN_WEB, 80, 8080);
    gw_ip(&w->network_gateway, "net2", "172.16.0.1", 15008);
    zt_state_builder_add_workload(b, w);
    w = wl_net("e3", "10.0.1.3", "net2");
    wl_add_svc(w, MN_WEB, 80, 8080);
    gw_host(&w->network_gateway, "istio-system", "eastwest.istio-system.svc.cluster.local", 15008);
    zt_state_builder_add_workload(b, w);
    w = wl_net("e4", "10.0.1.4", "net2");
    wl_add_svc(w, MN_WEB, 80, 8080);
    wl_add_svc(w, "ns/nogw.ns.svc.cluster.local", 80, 8080);
    zt_state_builder_add_workload(b, w);
    w = wl_net("e5", "10.0.1.5", "net2");
    wl_add_svc(w, "ns/bad-gw.ns.svc.cluster.local", 80, 8080);
    gw_ip(&w->network_gateway, "net2", "172.16.0.99", 15008);
    zt_state_builder_add_workload(b, w);
    w = wl_net("f1", "10.0.1.11", "");
    wl_add_svc(w, "ns/failover.ns.svc.cluster.local", 80, 8080);
    if (local_down)
        w->status = ZT_WL_UNHEALTHY;
    zt_state_builder_add_workload(b, w);
    w = wl_net("f2", "10.0.1.12", "net2");
    wl_add_svc(w, "ns/failover.ns.svc.cluster.local", 80, 8080);
    gw_ip(&w->network_gateway, "net2", "172.16.0.1", 15008);
    zt_state_builder_add_workload(b, w);
    w = wl_net("e6", "10.0.1.6", "");
    gw_ip(&w->waypoint, "net2", "10.0.9.7", 15008);
    zt_state_builder_add_workload(b, w);
    w = wl_net("rwp1", "10.0.9.6", "net2");
    w->service_account = zt_state_xstrdup("waypoint");
    wl_add_svc(w, MN_RWP_SVC, 0, 0);
    gw_ip(&w->network_gateway, "net2", "172.16.0.1", 15008);
    zt_state_builder_add_workload(b, w);
    w = wl_net("rwp2", "10.0.9.7", "net2");
    gw_ip(&w->network_gateway, "net2", "172.16.0.1", 15008);
    zt_state_builder_add_workload(b, w);
    for (int i = 1; i <= 2; i++) {
        char uid[16], addr[32];
        snprintf(uid, sizeof(uid), "gw%d", i);
        snprintf(addr, sizeof(addr), "172.16.0.%d", i);
        w = wl_net(uid, addr, "net2");
        free(w->namespace);
        w->namespace = zt_state_xstrdup("istio-system");
        w->service_account = zt_state_xstrdup("istio-eastwestgateway");
        wl_add_svc(w, MN_GW_SVC, 15008, 15008);
        zt_state_builder_add_workload(b, w);
    }

    svc = svc_new("web", "ns", "10.96.0.10", 80, 8080);
    add_san(svc, "spiffe://cluster.local/ns/ns/sa/web");
    zt_state_builder_add_service(b, svc);
    svc = svc_new("eastwest", "istio-system", NULL, 15008, 15008);
    add_san(svc, "spiffe://cluster.local/ns/istio-system/sa/gw-extra");
    zt_state_builder_add_service(b, svc);
    zt_state_builder_add_service(b, svc_new("bad-gw", "ns", "10.96.0.30", 80, 8080));
    svc = svc_new("failover", "ns", "10.96.0.31", 80, 8080);
    svc->lb_mode = ZT_LB_FAILOVER;
    svc->lb_routing[0] = ZT_LB_SCOPE_NETWORK;
    svc->n_lb_routing = 1;
    zt_state_builder_add_service(b, svc);
    zt_state_builder_add_service(b, svc_new("nogw", "ns", "10.96.0.32", 80, 8080));
    svc = svc_new("wp-svc", "ns", "10.96.0.33", 80, 8080);
    gw_host(&svc->waypoint, "ns", "rwp.ns.svc.cluster.local", 15008);
    zt_state_builder_add_service(b, svc);
    svc = svc_new("rwp", "ns", NULL, 15008, 15008);
    add_san(svc, "spiffe://cluster.local/ns/ns/sa/rwp-svc");
    zt_state_builder_add_service(b, svc);
    return finish(b);
}

/* Service web: e1 is dialed directly; e2 and e3, on net2, by double HBONE
 * through their gateways: the plan dials the gateway (by IP: gw1 at
 * 172.16.0.1:15008, expecting gw1's identity alone; by hostname: an
 * endpoint of eastwest at its target port, expecting its identity or the
 * service's SAN), and expects exactly web's SANs from the inner server,
 * with web.ns.svc.cluster.local:80 as both authorities. e4 (no gateway) is
 * never picked. */
static void test_multinetwork_service(void)
{
    struct zt_state *s = mn_state(false);
    struct zt_upstream up;
    int seen[3] = {0, 0, 0};
    for (uint32_t r = 0; r < 30; r++) {
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.10", r, &up), 0);
        CHECK_EQ_INT(up.kind, ZT_UPSTREAM_SERVICE);
        CHECK_EQ_STR(up.svc->name, "web");
        CHECK(up.is_hbone && up.has_ip);
        if (!up.is_double_hbone) {
            CHECK_EQ_STR(up.wl->uid, "e1");
            CHECK(up.final_wl == NULL);
            seen[0]++;
            continue;
        }
        CHECK_EQ_INT(up.svc_port, 80);
        CHECK_EQ_INT(up.n_final_sans, 1);
        CHECK_EQ_STR(up.final_sans[0], "spiffe://cluster.local/ns/ns/sa/web");
        CHECK_EQ_INT(up.port, 15008);
        CHECK(zt_workload_has_ip(up.wl, &up.ip));
        CHECK_EQ_STR(up.wl->service_account, "istio-eastwestgateway");
        if (strcmp(up.final_wl->uid, "e2") == 0) {
            CHECK_EQ_STR(up.wl->uid, "gw1");
            CHECK_EQ_STR(ip_str(&up.ip), "172.16.0.1");
            CHECK_EQ_INT(up.n_sans, 0);
            seen[1]++;
        } else {
            CHECK_EQ_STR(up.final_wl->uid, "e3");
            CHECK(strcmp(up.wl->uid, "gw1") == 0 || strcmp(up.wl->uid, "gw2") == 0);
            CHECK_EQ_INT(up.n_sans, 1);
            CHECK_EQ_STR(up.sans[0], "spiffe://cluster.local/ns/istio-system/sa/gw-extra");
            seen[2]++;
        }
    }
    CHECK_EQ_INT(seen[0], 10);
    CHECK_EQ_INT(seen[1], 10);
    CHECK_EQ_INT(seen[2], 10);
    zt_state_unref(s);
}

/* Failing closed: a gateway that resolves to nothing (an IP nobody has);
 * a service whose only endpoint is on another network with no gateway
 * (left out, so no endpoint); a pod IP whose workload waypoint is on
 * another network (not service-addressed: no double HBONE). */
static void test_multinetwork_fail_closed(void)
{
    struct zt_state *s = mn_state(false);
    struct zt_upstream up;
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.30", 0, &up), ZT_E_NOT_FOUND);
    CHECK_EQ_INT(up.fail, ZT_UPSTREAM_FAIL_GATEWAY_UNKNOWN);
    CHECK_EQ_STR(up.svc->name, "bad-gw");
    CHECK(strstr(zt_upstream_fail_str(up.fail), "gateway") != NULL);
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.32", 0, &up), ZT_E_NOT_FOUND);
    CHECK_EQ_INT(up.fail, ZT_UPSTREAM_FAIL_NO_ENDPOINT);
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.0.1.6", 0, &up), ZT_E_NOT_FOUND);
    CHECK_EQ_INT(up.fail, ZT_UPSTREAM_FAIL_WAYPOINT_NETWORK);
    CHECK(!up.is_double_hbone);
    zt_state_unref(s);
}

/* FAILOVER with NETWORK first: the local endpoint while it is healthy;
 * when it is not, the one on net2, through gw1. */
static void test_multinetwork_failover(void)
{
    struct zt_state *s = mn_state(false);
    struct zt_upstream up;
    for (uint32_t r = 0; r < 8; r++) {
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.31", r, &up), 0);
        CHECK_EQ_STR(up.wl->uid, "f1");
        CHECK(!up.is_double_hbone);
    }
    zt_state_unref(s);
    s = mn_state(true);
    for (uint32_t r = 0; r < 8; r++) {
        CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.31", r, &up), 0);
        CHECK(up.is_double_hbone);
        CHECK_EQ_STR(up.final_wl->uid, "f2");
        CHECK_EQ_STR(up.wl->uid, "gw1");
        CHECK_EQ_INT(up.n_final_sans, 0);
    }
    zt_state_unref(s);
}

/* A service's waypoint on net2 is reached through its gateway: the inner
 * tunnel ends at the waypoint and expects the waypoint service's SANs (as
 * Istio's ztunnel does); the authorities name the service dialed. */
static void test_multinetwork_waypoint(void)
{
    struct zt_state *s = mn_state(false);
    struct zt_upstream up;
    CHECK_EQ_INT(wp_resolve(s, "client", "10.0.2.1", "10.96.0.33", 0, &up), 0);
    CHECK_EQ_INT(up.kind, ZT_UPSTREAM_WAYPOINT);
    CHECK(up.is_double_hbone);
    CHECK_EQ_STR(up.final_wl->uid, "rwp1");
    CHECK_EQ_STR(up.wl->uid, "gw1");
    CHECK_EQ_STR(ip_str(&up.ip), "172.16.0.1");
    CHECK_EQ_INT(up.port, 15008);
    CHECK_EQ_STR(up.svc->name, "wp-svc");
    CHECK_EQ_INT(up.svc_port, 80);
    CHECK_EQ_INT(up.n_final_sans, 1);
    CHECK_EQ_STR(up.final_sans[0], "spiffe://cluster.local/ns/ns/sa/rwp-svc");
    zt_state_unref(s);
}

int main(void)
{
    RUN(test_by_hostname);
    RUN(test_ip_parse_format);
    RUN(test_ip_sockaddr);
    RUN(test_cidr);
    RUN(test_defaults_and_uid_lookup);
    RUN(test_duplicate_uid_rejected);
    RUN(test_by_ip);
    RUN(test_by_vip_and_lookup);
    RUN(test_by_info);
    RUN(test_delta_builder);
    RUN(test_pick_ports);
    RUN(test_pick_unhealthy);
    RUN(test_pick_capacity);
    RUN(test_pick_failover_strict);
    RUN(test_pick_skips_undialable);
    RUN(test_pick_hostname_endpoints);
    RUN(test_resolve_outbound);
    RUN(test_waypoint_service_by_ip);
    RUN(test_waypoint_service_by_hostname);
    RUN(test_waypoint_weighted);
    RUN(test_waypoint_workload);
    RUN(test_waypoint_source_is_waypoint);
    RUN(test_waypoint_other_network);
    RUN(test_waypoint_unresolvable);
    RUN(test_waypoint_hostname_only);
    RUN(test_multinetwork_service);
    RUN(test_multinetwork_fail_closed);
    RUN(test_multinetwork_failover);
    RUN(test_multinetwork_waypoint);
    RUN(test_strings_shared);
    RUN(test_delta_merge);
    RUN(test_delta_indexes);
    RUN(test_workload_packed);
    return TEST_REPORT();
}
