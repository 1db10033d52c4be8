/* State objects -> protobuf -> state objects must give back equal objects.
 *
 * Every workload, service and policy of the full local config
 * (tests/unit/config/testdata/good.yaml, read from the repository root as
 * `make unit` runs) is encoded with encode.h, decoded with
 * zt_xds_apply_address / zt_xds_apply_authorization into a fresh builder,
 * and compared field by field with the original. */
#include "test.h"

#include "base/err.h"
#include "config/local.h"
#include "xds/convert.h"
#include "xds/encode.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#define GOOD_YAML "tests/unit/config/testdata/good.yaml"

/* ------------------------------------------------------------ comparison */

/* Set while a test expects a difference, to keep the output clean. */
static bool quiet;

#define DIFF(what)                                                                                 \
    do {                                                                                           \
        if (!quiet)                                                                                \
            fprintf(stderr, "  differs: %s\n", what);                                              \
        return false;                                                                              \
    } while (0)

static bool eq_s(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

static bool eq_ip(const struct zt_ip *a, const struct zt_ip *b)
{
    return a->family == b->family && !memcmp(a->addr, b->addr, sizeof(a->addr));
}

static bool eq_cidr(const struct zt_cidr *a, const struct zt_cidr *b)
{
    return eq_ip(&a->ip, &b->ip) && a->prefix == b->prefix;
}

static bool eq_gw(const struct zt_gateway *a, const struct zt_gateway *b)
{
    if (a->kind != b->kind || a->hbone_mtls_port != b->hbone_mtls_port)
        return false;
    if (a->kind == ZT_GATEWAY_ADDRESS)
        return eq_s(a->network, b->network) && eq_ip(&a->ip, &b->ip);
    if (a->kind == ZT_GATEWAY_HOSTNAME)
        return eq_s(a->namespace, b->namespace) && eq_s(a->hostname, b->hostname);
    return true;
}

static bool eq_ports(const struct zt_port_map *a, size_t na, const struct zt_port_map *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (a[i].service_port != b[i].service_port || a[i].target_port != b[i].target_port ||
            a[i].app_protocol != b[i].app_protocol)
            return false;
    return true;
}

static bool eq_strs(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!eq_s(a[i], b[i]))
            return false;
    return true;
}

static bool workload_eq(const struct zt_workload *a, const struct zt_workload *b)
{
    if (!eq_s(a->uid, b->uid))
        DIFF("uid");
    if (!eq_s(a->name, b->name) || !eq_s(a->namespace, b->namespace))
        DIFF("name/namespace");
    if (!eq_s(a->service_account, b->service_account) || !eq_s(a->trust_domain, b->trust_domain))
        DIFF("service_account/trust_domain");
    if (a->n_addresses != b->n_addresses)
        DIFF("n_addresses");
    for (size_t i = 0; i < a->n_addresses; i++)
        if (!eq_ip(&a->addresses[i], &b->addresses[i]))
            DIFF("addresses");
    if (!eq_s(a->network, b->network) || !eq_s(a->node, b->node) || !eq_s(a->hostname, b->hostname))
        DIFF("network/node/hostname");
    if (a->protocol != b->protocol || a->network_mode != b->network_mode ||
        a->status != b->status || a->workload_type != b->workload_type)
        DIFF("protocol/network_mode/status/workload_type");
    if (!eq_s(a->cluster_id, b->cluster_id) || !eq_s(a->canonical_name, b->canonical_name) ||
        !eq_s(a->canonical_revision, b->canonical_revision) ||
        !eq_s(a->workload_name, b->workload_name))
        DIFF("cluster_id/canonical_*/workload_name");
    if (a->native_tunnel != b->native_tunnel)
        DIFF("native_tunnel");
    if (a->n_services != b->n_services)
        DIFF("n_services");
    for (size_t i = 0; i < a->n_services; i++)
        if (!eq_s(a->services[i].key, b->services[i].key) ||
            !eq_ports(a->services[i].ports, a->services[i].n_ports, b->services[i].ports,
                      b->services[i].n_ports))
            DIFF("services");
    if (!eq_strs(a->authorization_policies, a->n_authorization_policies, b->authorization_policies,
                 b->n_authorization_policies))
        DIFF("authorization_policies");
    if (!eq_s(a->locality.region, b->locality.region) ||
        !eq_s(a->locality.zone, b->locality.zone) ||
        !eq_s(a->locality.subzone, b->locality.subzone))
        DIFF("locality");
    if (a->capacity != b->capacity)
        DIFF("capacity");
    if (a->has_application_tunnel != b->has_application_tunnel ||
        a->application_tunnel_protocol != b->application_tunnel_protocol ||
        a->application_tunnel_port != b->application_tunnel_port)
        DIFF("application_tunnel");
    if (!eq_gw(&a->waypoint, &b->waypoint))
        DIFF("waypoint");
    if (!eq_gw(&a->network_gateway, &b->network_gateway))
        DIFF("network_gateway");
    return true;
}

static bool service_eq(const struct zt_service *a, const struct zt_service *b)
{
    if (!eq_s(a->name, b->name) || !eq_s(a->namespace, b->namespace) ||
        !eq_s(a->hostname, b->hostname) || !eq_s(a->key, b->key))
        DIFF("name/namespace/hostname/key");
    if (a->n_vips != b->n_vips)
        DIFF("n_vips");
    for (size_t i = 0; i < a->n_vips; i++)
        if (!eq_s(a->vips[i].network, b->vips[i].network) || !eq_ip(&a->vips[i].ip, &b->vips[i].ip))
            DIFF("vips");
    if (a->n_cidr_vips != b->n_cidr_vips)
        DIFF("n_cidr_vips");
    for (size_t i = 0; i < a->n_cidr_vips; i++)
        if (!eq_s(a->cidr_vips[i].network, b->cidr_vips[i].network) ||
            !eq_cidr(&a->cidr_vips[i].cidr, &b->cidr_vips[i].cidr))
            DIFF("cidr_vips");
    if (!eq_ports(a->ports, a->n_ports, b->ports, b->n_ports))
        DIFF("ports");
    if (!eq_strs(a->subject_alt_names, a->n_subject_alt_names, b->subject_alt_names,
                 b->n_subject_alt_names))
        DIFF("subject_alt_names");
    if (a->has_load_balancing != b->has_load_balancing || a->lb_mode != b->lb_mode ||
        a->lb_health != b->lb_health || a->n_lb_routing != b->n_lb_routing)
        DIFF("load_balancing");
    for (size_t i = 0; i < a->n_lb_routing; i++)
        if (a->lb_routing[i] != b->lb_routing[i])
            DIFF("lb_routing");
    if (a->ip_families != b->ip_families || a->canonical != b->canonical ||
        a->visibility != b->visibility)
        DIFF("ip_families/canonical/visibility");
    if (!eq_gw(&a->waypoint, &b->waypoint))
        DIFF("waypoint");
    if (a->n_weighted_waypoints != b->n_weighted_waypoints)
        DIFF("n_weighted_waypoints");
    for (size_t i = 0; i < a->n_weighted_waypoints; i++)
        if (a->weighted_waypoints[i].weight != b->weighted_waypoints[i].weight ||
            !eq_gw(&a->weighted_waypoints[i].destination, &b->weighted_waypoints[i].destination))
            DIFF("weighted_waypoints");
    return true;
}

static bool eq_sm(const struct zt_strmatch_list *a, const struct zt_strmatch_list *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i].kind != b->v[i].kind)
            return false;
        if (a->v[i].kind == ZT_STRMATCH_PRESENCE ? (a->v[i].value || b->v[i].value)
                                                 : !eq_s(a->v[i].value, b->v[i].value))
            return false;
    }
    return true;
}

static bool eq_sa(const struct zt_sa_list *a, const struct zt_sa_list *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!eq_s(a->v[i].namespace, b->v[i].namespace) ||
            !eq_s(a->v[i].service_account, b->v[i].service_account))
            return false;
    return true;
}

static bool eq_cl(const struct zt_cidr_list *a, const struct zt_cidr_list *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!eq_cidr(&a->v[i], &b->v[i]))
            return false;
    return true;
}

static bool eq_pl(const struct zt_port_list *a, const struct zt_port_list *b)
{
    return a->n == b->n && (!a->n || !memcmp(a->v, b->v, a->n * sizeof(*a->v)));
}

static bool match_eq(const struct zt_policy_match *a, const struct zt_policy_match *b)
{
    if (!eq_sm(&a->namespaces, &b->namespaces) || !eq_sm(&a->not_namespaces, &b->not_namespaces))
        DIFF("namespaces");
    if (!eq_sa(&a->service_accounts, &b->service_accounts) ||
        !eq_sa(&a->not_service_accounts, &b->not_service_accounts))
        DIFF("service_accounts");
    if (!eq_sm(&a->principals, &b->principals) || !eq_sm(&a->not_principals, &b->not_principals))
        DIFF("principals");
    if (!eq_cl(&a->source_ips, &b->source_ips) || !eq_cl(&a->not_source_ips, &b->not_source_ips))
        DIFF("source_ips");
    if (!eq_cl(&a->destination_ips, &b->destination_ips) ||
        !eq_cl(&a->not_destination_ips, &b->not_destination_ips))
        DIFF("destination_ips");
    if (!eq_pl(&a->destination_ports, &b->destination_ports) ||
        !eq_pl(&a->not_destination_ports, &b->not_destination_ports))
        DIFF("destination_ports");
    return true;
}

static bool policy_eq(const struct zt_policy *a, const struct zt_policy *b)
{
    if (!eq_s(a->name, b->name) || !eq_s(a->namespace, b->namespace) || !eq_s(a->key, b->key))
        DIFF("name/namespace/key");
    if (a->scope != b->scope || a->action != b->action || a->dry_run != b->dry_run)
        DIFF("scope/action/dry_run");
    if (a->n_rules != b->n_rules)
        DIFF("n_rules");
    for (size_t i = 0; i < a->n_rules; i++) {
        if (a->rules[i].n_clauses != b->rules[i].n_clauses)
            DIFF("n_clauses");
        for (size_t j = 0; j < a->rules[i].n_clauses; j++) {
            const struct zt_policy_clause *ca = &a->rules[i].clauses[j];
            const struct zt_policy_clause *cb = &b->rules[i].clauses[j];
            if (ca->n_matches != cb->n_matches)
                DIFF("n_matches");
            for (size_t k = 0; k < ca->n_matches; k++)
                if (!match_eq(&ca->matches[k], &cb->matches[k]))
                    return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------ helpers */

static struct zt_state *load_good(void)
{
    struct zt_state *s = NULL;
    char err[256] = "";
    char *buf;
    long n;
    FILE *f = fopen(GOOD_YAML, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) == (size_t)n &&
        zt_config_local_load_string("good.yaml", buf, (size_t)n, &s, err, sizeof(err)))
        fprintf(stderr, "  load: %s\n", err);
    free(buf);
    fclose(f);
    return s;
}

/* Decodes one encoded Address / Authorization into a new snapshot. */
static struct zt_state *decode(const uint8_t *p, size_t n, bool is_policy, char **name)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s = NULL;
    char err[256] = "";
    int rc = is_policy ? zt_xds_apply_authorization(b, p, n, name, err, sizeof(err))
                       : zt_xds_apply_address(b, p, n, name, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "  apply: %s\n", err);
        zt_state_builder_free(b);
        return NULL;
    }
    if (zt_state_builder_finish(b, &s, err, sizeof(err)))
        fprintf(stderr, "  finish: %s\n", err);
    return s;
}

/* ------------------------------------------------------------ tests */

static void test_workloads_round_trip(void)
{
    struct zt_state *s = load_good();
    CHECK(s);
    CHECK_EQ_INT(zt_state_workload_count(s), 2);
    for (size_t i = 0; i < zt_state_workload_count(s); i++) {
        const struct zt_workload *wl = zt_state_workload_at(s, i);
        uint8_t *p;
        size_t n;
        char *name = NULL, *want = zt_xds_workload_name(wl);
        int rc = zt_xds_encode_workload(wl, &p, &n);
        struct zt_state *d = rc ? NULL : decode(p, n, false, &name);
        bool ok = d && zt_state_workload_count(d) == 1 &&
                  workload_eq(wl, zt_state_workload_by_uid(d, wl->uid)) && eq_s(name, want);
        free(p);
        free(name);
        free(want);
        zt_state_unref(d);
        if (!ok)
            zt_state_unref(s);
        CHECK_EQ_INT(rc, 0);
        CHECK(ok);
    }
    /* The comparator sees real differences: the two workloads differ. */
    quiet = true;
    bool ok = !workload_eq(zt_state_workload_at(s, 0), zt_state_workload_at(s, 1));
    quiet = false;
    zt_state_unref(s);
    CHECK(ok);
}

static void test_services_round_trip(void)
{
    struct zt_state *s = load_good();
    CHECK(s);
    CHECK_EQ_INT(zt_state_service_count(s), 1);
    for (size_t i = 0; i < zt_state_service_count(s); i++) {
        const struct zt_service *svc = zt_state_service_at(s, i);
        uint8_t *p;
        size_t n;
        char *name = NULL, *want = zt_xds_service_name(svc);
        int rc = zt_xds_encode_service(svc, &p, &n);
        struct zt_state *d = rc ? NULL : decode(p, n, false, &name);
        bool ok = d && zt_state_service_count(d) == 1 &&
                  service_eq(svc, zt_state_service_by_key(d, svc->key)) && eq_s(name, want) &&
                  eq_s(want, svc->key);
        free(p);
        free(name);
        free(want);
        zt_state_unref(d);
        if (!ok)
            zt_state_unref(s);
        CHECK_EQ_INT(rc, 0);
        CHECK(ok);
    }
    zt_state_unref(s);
}

static void test_policies_round_trip(void)
{
    struct zt_state *s = load_good();
    CHECK(s);
    CHECK_EQ_INT(zt_state_policy_count(s), 2);
    for (size_t i = 0; i < zt_state_policy_count(s); i++) {
        const struct zt_policy *pol = zt_state_policy_at(s, i);
        uint8_t *p;
        size_t n;
        char *name = NULL, *want = zt_xds_policy_name(pol);
        int rc = zt_xds_encode_policy(pol, &p, &n);
        struct zt_state *d = rc ? NULL : decode(p, n, true, &name);
        bool ok = d && zt_state_policy_count(d) == 1 &&
                  policy_eq(pol, zt_state_policy_by_key(d, pol->key)) && eq_s(name, want) &&
                  eq_s(want, pol->key);
        free(p);
        free(name);
        free(want);
        zt_state_unref(d);
        if (!ok)
            zt_state_unref(s);
        CHECK_EQ_INT(rc, 0);
        CHECK(ok);
    }
    quiet = true;
    bool ok = !policy_eq(zt_state_policy_at(s, 0), zt_state_policy_at(s, 1));
    quiet = false;
    zt_state_unref(s);
    CHECK(ok);
}

/* Values a YAML file cannot express: capacity 0, IPv6 CIDR VIP, hostname
 * network gateway, every StringMatch kind in one list. */
static void test_edge_values_round_trip(void)
{
    struct zt_workload *wl = zt_workload_new();
    struct zt_service *svc = zt_service_new();
    struct zt_policy *pol = zt_policy_new();
    struct zt_policy_rule *r;
    struct zt_policy_clause *c;
    struct zt_policy_match *m;
    struct zt_cidr_vip *cv;
    struct zt_state_builder *b;
    struct zt_state *s = NULL, *d;
    char err[256] = "";
    uint8_t *p;
    size_t n;
    bool ok;

    wl->uid = zt_state_xstrdup("c//v1/Pod/ns/x");
    wl->capacity = 0;
    wl->network_gateway.kind = ZT_GATEWAY_HOSTNAME;
    wl->network_gateway.namespace = zt_state_xstrdup("ns");
    wl->network_gateway.hostname = zt_state_xstrdup("gw.ns.svc");
    wl->network_gateway.hbone_mtls_port = 15009;
    b = zt_state_builder_new(NULL);
    zt_state_builder_add_workload(b, wl);
    svc->name = zt_state_xstrdup("s");
    svc->namespace = zt_state_xstrdup("ns");
    svc->hostname = zt_state_xstrdup("s.ns.svc");
    struct zt_port_map *pm = zt_state_array_push(&svc->ports, &svc->n_ports, sizeof(*pm));
    pm->service_port = 50051;
    pm->app_protocol = ZT_APP_GRPC;
    cv = zt_state_array_push(&svc->cidr_vips, &svc->n_cidr_vips, sizeof(*cv));
    cv->network = zt_state_xstrdup("n");
    CHECK(zt_cidr_parse("fd00:1::/64", &cv->cidr) == 0);
    zt_state_builder_add_service(b, svc);
    pol->name = zt_state_xstrdup("p");
    pol->namespace = zt_state_xstrdup("ns");
    pol->dry_run = true;
    pol->action = ZT_POLICY_DENY;
    r = zt_state_array_push(&pol->rules, &pol->n_rules, sizeof(*r));
    c = zt_state_array_push(&r->clauses, &r->n_clauses, sizeof(*c));
    m = zt_state_array_push(&c->matches, &c->n_matches, sizeof(*m));
    for (int k = ZT_STRMATCH_EXACT; k <= ZT_STRMATCH_PRESENCE; k++) {
        struct zt_strmatch *sm =
            zt_state_array_push(&m->not_principals.v, &m->not_principals.n, sizeof(*sm));
        sm->kind = (enum zt_strmatch_kind)k;
        sm->value = k == ZT_STRMATCH_PRESENCE ? NULL : zt_state_xstrdup("v");
    }
    *(uint32_t *)zt_state_array_push(&m->destination_ports.v, &m->destination_ports.n,
                                     sizeof(uint32_t)) = 70000;
    zt_state_builder_add_policy(b, pol);
    /* Through a builder first, so both sides carry the builder's defaults. */
    CHECK_EQ_INT(zt_state_builder_finish(b, &s, err, sizeof(err)), 0);
    wl = (struct zt_workload *)zt_state_workload_at(s, 0);
    svc = (struct zt_service *)zt_state_service_at(s, 0);
    pol = (struct zt_policy *)zt_state_policy_at(s, 0);

    CHECK_EQ_INT(zt_xds_encode_workload(wl, &p, &n), 0);
    d = decode(p, n, false, NULL);
    free(p);
    ok = d && workload_eq(wl, zt_state_workload_by_uid(d, wl->uid));
    zt_state_unref(d);
    if (!ok)
        zt_state_unref(s);
    CHECK(ok);

    CHECK_EQ_INT(zt_xds_encode_service(svc, &p, &n), 0);
    d = decode(p, n, false, NULL);
    free(p);
    ok = d && service_eq(svc, zt_state_service_by_key(d, svc->key));
    zt_state_unref(d);
    if (!ok)
        zt_state_unref(s);
    CHECK(ok);

    CHECK_EQ_INT(zt_xds_encode_policy(pol, &p, &n), 0);
    d = decode(p, n, true, NULL);
    free(p);
    ok = d && policy_eq(pol, zt_state_policy_by_key(d, pol->key));
    zt_state_unref(d);
    zt_state_unref(s);
    CHECK(ok);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    uint8_t *buf = NULL;
    long n;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET)) {
        buf = malloc((size_t)n + 1);
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

/* The committed golden resources (test_golden.c): decode, re-encode, decode
 * again; both objects must be equal. */
static void test_golden_round_trip(void)
{
    static const char *const files[] = {"workload", "service", "authorization"};
    for (size_t i = 0; i < 3; i++) {
        char path[128];
        size_t n = 0, n2 = 0;
        uint8_t *p, *p2 = NULL;
        struct zt_state *a, *d = NULL;
        bool is_policy = i == 2, ok = false;
        int rc = -1;

        snprintf(path, sizeof(path), "tests/unit/xds/golden/%s.bin", files[i]);
        p = read_file(path, &n);
        CHECK(p);
        a = decode(p, n, is_policy, NULL);
        free(p);
        CHECK(a);
        if (i == 0 && zt_state_workload_count(a) == 1) {
            const struct zt_workload *wl = zt_state_workload_at(a, 0);
            rc = zt_xds_encode_workload(wl, &p2, &n2);
            d = rc ? NULL : decode(p2, n2, false, NULL);
            ok = d && workload_eq(wl, zt_state_workload_by_uid(d, wl->uid));
        } else if (i == 1 && zt_state_service_count(a) == 1) {
            const struct zt_service *svc = zt_state_service_at(a, 0);
            rc = zt_xds_encode_service(svc, &p2, &n2);
            d = rc ? NULL : decode(p2, n2, false, NULL);
            ok = d && service_eq(svc, zt_state_service_by_key(d, svc->key));
        } else if (i == 2 && zt_state_policy_count(a) == 1) {
            const struct zt_policy *pol = zt_state_policy_at(a, 0);
            rc = zt_xds_encode_policy(pol, &p2, &n2);
            d = rc ? NULL : decode(p2, n2, true, NULL);
            ok = d && policy_eq(pol, zt_state_policy_by_key(d, pol->key));
        }
        free(p2);
        zt_state_unref(d);
        zt_state_unref(a);
        CHECK_EQ_INT(rc, 0);
        CHECK(ok);
    }
}

/* Objects our own decoder would reject are refused by the encoder. */
static void test_rejects(void)
{
    struct zt_workload *wl = zt_workload_new();
    struct zt_service *svc = zt_service_new();
    struct zt_policy *pol = zt_policy_new();
    struct zt_ip *ip;
    char big[ZT_XDS_MAX_STR + 2];
    uint8_t *p = (uint8_t *)1;
    size_t n = 1;
    int rc1, rc2, rc3, rc4, rc5;

    rc1 = zt_xds_encode_workload(wl, &p, &n); /* empty uid */
    wl->uid = zt_state_xstrdup("u");
    ip = zt_state_array_push(&wl->addresses, &wl->n_addresses, sizeof(*ip)); /* family 0 */
    rc2 = zt_xds_encode_workload(wl, &p, &n);
    ip->family = AF_INET;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    wl->node = zt_state_xstrdup(big);
    rc3 = zt_xds_encode_workload(wl, &p, &n);
    rc4 = zt_xds_encode_service(svc, &p, &n); /* empty hostname */
    pol->name = zt_state_xstrdup("p");
    pol->scope = (enum zt_policy_scope)7;
    rc5 = zt_xds_encode_policy(pol, &p, &n);
    zt_workload_unref(wl);
    zt_service_unref(svc);
    zt_policy_unref(pol);
    CHECK_EQ_INT(rc1, ZT_E_PROTO);
    CHECK_EQ_INT(rc2, ZT_E_PROTO);
    CHECK_EQ_INT(rc3, ZT_E_TOO_BIG);
    CHECK_EQ_INT(rc4, ZT_E_PROTO);
    CHECK_EQ_INT(rc5, ZT_E_PROTO);
    CHECK(p == NULL && n == 0);
}

int main(void)
{
    RUN(test_workloads_round_trip);
    RUN(test_services_round_trip);
    RUN(test_policies_round_trip);
    RUN(test_edge_values_round_trip);
    RUN(test_golden_round_trip);
    RUN(test_rejects);
    return TEST_REPORT();
}
