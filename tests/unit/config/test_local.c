#include "test.h"

#include "authz/authz.h"
#include "base/err.h"
#include "base/buf.h"
#include "config/local.h"

#include <errno.h>
#include <stdlib.h>

#define TD "tests/unit/config/testdata/"

static struct zt_ip ip(const char *s)
{
    struct zt_ip a;
    if (zt_ip_parse(s, &a) != 0)
        abort();
    return a;
}

static void test_good_file(void)
{
    struct zt_state *s = NULL;
    char err[512];
    const struct zt_workload *w;
    const struct zt_service *svc;
    const struct zt_policy *p;
    const struct zt_policy_match *m;
    struct zt_ip a;
    char buf[64];

    CHECK_EQ_INT(zt_config_local_load(TD "good.yaml", &s, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_state_workload_count(s), 2);
    w = zt_state_workload_by_uid(s, "c1//v1/Pod/default/app");
    CHECK(w != NULL);
    CHECK_EQ_STR(w->name, "app");
    CHECK_EQ_STR(w->service_account, "app");
    CHECK_EQ_STR(w->trust_domain, "example.org");
    CHECK_EQ_INT(w->n_addresses, 2);
    CHECK_EQ_STR(zt_ip_format(&w->addresses[1], buf, sizeof(buf)), "fd00::5");
    CHECK_EQ_INT(w->protocol, ZT_WL_PROTO_HBONE);
    CHECK_EQ_STR(w->network, "net1");
    CHECK_EQ_STR(w->node, "node-a");
    CHECK_EQ_STR(w->hostname, "app.example");
    CHECK_EQ_INT(w->workload_type, ZT_WL_TYPE_DEPLOYMENT);
    CHECK_EQ_STR(w->canonical_revision, "v1");
    CHECK(w->has_application_tunnel);
    CHECK_EQ_INT(w->application_tunnel_protocol, ZT_APP_TUNNEL_PROXY);
    CHECK_EQ_INT(w->application_tunnel_port, 15088);
    CHECK_EQ_INT(w->waypoint.kind, ZT_GATEWAY_HOSTNAME);
    CHECK_EQ_STR(w->waypoint.hostname, "wp.default.svc.cluster.local");
    CHECK_EQ_INT(w->network_gateway.kind, ZT_GATEWAY_ADDRESS);
    CHECK_EQ_STR(w->network_gateway.network, "net1");
    CHECK_EQ_INT(w->network_gateway.hbone_mtls_port, 15008);
    CHECK_EQ_INT(w->n_authorization_policies, 1);
    CHECK_EQ_STR(w->cluster_id, "c1");
    CHECK_EQ_STR(w->locality.subzone, "s1");
    CHECK_EQ_INT(w->capacity, 3);
    CHECK_EQ_INT(w->n_services, 1);
    CHECK_EQ_INT(w->services[0].n_ports, 2);
    CHECK_EQ_INT(w->services[0].ports[1].service_port, 443);
    CHECK_EQ_INT(w->services[0].ports[1].target_port, 8443);

    w = zt_state_workload_by_uid(s, "c1//v1/Pod/default/db");
    CHECK(w != NULL);
    CHECK_EQ_STR(w->service_account, "default");
    CHECK_EQ_INT(w->status, ZT_WL_UNHEALTHY);
    CHECK_EQ_INT(w->capacity, 1);
    a = ip("10.1.0.6");
    CHECK(zt_state_workload_by_ip(s, "", &a) == w); /* mapped address canonicalised */

    svc = zt_state_service_by_key(s, "default/app.default.svc.cluster.local");
    CHECK(svc != NULL);
    CHECK_EQ_INT(svc->n_vips, 2);
    a = ip("10.96.0.11");
    CHECK(zt_state_service_by_vip(s, "", &a) == svc);
    a = ip("10.96.0.10");
    CHECK(zt_state_service_by_vip(s, "net1", &a) == svc);
    CHECK_EQ_INT(svc->n_cidr_vips, 1);
    CHECK_EQ_INT(svc->cidr_vips[0].cidr.prefix, 16);
    CHECK_EQ_INT(svc->n_ports, 2);
    CHECK_EQ_INT(svc->n_subject_alt_names, 1);
    CHECK_EQ_INT(svc->lb_mode, ZT_LB_FAILOVER);
    CHECK_EQ_INT(svc->n_lb_routing, 3);
    CHECK_EQ_INT(svc->lb_routing[0], ZT_LB_SCOPE_NETWORK);
    CHECK_EQ_INT(svc->lb_routing[2], ZT_LB_SCOPE_ZONE);
    CHECK_EQ_INT(svc->lb_health, ZT_LB_ALLOW_ALL);
    CHECK_EQ_INT(svc->ip_families, ZT_IPF_DUAL);
    CHECK(svc->canonical);
    CHECK_EQ_INT(svc->visibility, ZT_VIS_NAMESPACE);
    CHECK_EQ_INT(svc->n_weighted_waypoints, 1);
    CHECK_EQ_INT(svc->weighted_waypoints[0].weight, 10);

    p = zt_state_policy_by_key(s, "default/only-foo");
    CHECK(p != NULL);
    CHECK_EQ_INT(p->scope, ZT_POLICY_WORKLOAD_SELECTOR);
    CHECK_EQ_INT(p->action, ZT_POLICY_ALLOW);
    CHECK_EQ_INT(p->n_rules, 1);
    CHECK_EQ_INT(p->rules[0].n_clauses, 2);
    CHECK_EQ_INT(p->rules[0].clauses[1].n_matches, 0);
    m = &p->rules[0].clauses[0].matches[0];
    CHECK_EQ_INT(m->namespaces.n, 1);
    CHECK_EQ_INT(m->namespaces.v[0].kind, ZT_STRMATCH_EXACT);
    CHECK_EQ_STR(m->namespaces.v[0].value, "foo");
    CHECK_EQ_INT(m->not_namespaces.v[0].kind, ZT_STRMATCH_PREFIX);
    CHECK_EQ_STR(m->service_accounts.v[0].service_account, "bar");
    CHECK_EQ_STR(m->not_service_accounts.v[0].service_account, "evil");
    CHECK_EQ_INT(m->principals.n, 2);
    CHECK_EQ_INT(m->principals.v[0].kind, ZT_STRMATCH_SUFFIX);
    CHECK_EQ_INT(m->principals.v[1].kind, ZT_STRMATCH_PRESENCE);
    CHECK_EQ_INT(m->not_principals.n, 1);
    CHECK_EQ_INT(m->source_ips.n, 2);
    CHECK_EQ_INT(m->not_source_ips.n, 1);
    CHECK_EQ_INT(m->destination_ips.n, 1);
    CHECK_EQ_INT(m->not_destination_ips.v[0].prefix, 32);
    CHECK_EQ_INT(m->destination_ports.v[0], 8080);
    CHECK_EQ_INT(m->not_destination_ports.v[0], 9090);

    /* End to end: the loaded policies enforce what the file says. */
    {
        const struct zt_workload *dst = zt_state_workload_by_uid(s, "c1//v1/Pod/default/app");
        struct zt_authz_conn c = {.src_identity = "spiffe://cluster.local/ns/foo/sa/bar",
                                  .src_ip = ip("10.0.0.1"),
                                  .dst_ip = ip("10.1.0.5"),
                                  .dst_port = 8080};
        char reason[128];
        CHECK_EQ_INT(zt_authz_check(s, dst, &c, reason, sizeof(reason)), 0);
        c.dst_port = 9090;
        CHECK_EQ_INT(zt_authz_check(s, dst, &c, reason, sizeof(reason)), ZT_E_DENIED);
        CHECK_EQ_STR(reason, "explicitly denied by default/deny-9090");
        c.dst_port = 8080;
        c.src_identity = "spiffe://cluster.local/ns/other/sa/bar";
        CHECK_EQ_INT(zt_authz_check(s, dst, &c, reason, sizeof(reason)), ZT_E_DENIED);
        CHECK_EQ_STR(reason, "allow policies exist, but none allowed");
    }
    zt_state_unref(s);
}

struct bad_case {
    const char *file;
    const char *want;
};

static const struct bad_case bad_cases[] = {
    {"unknown_key.yaml", TD "unknown_key.yaml:4: workloads[0].workloadIPs: unknown key"},
    {"bad_protocol.yaml",
     TD "bad_protocol.yaml:6: workloads[1].protocol: bad value \"HTTP\": expected TCP or HBONE"},
    {"bad_ip.yaml", TD "bad_ip.yaml:6: workloads[0].workloadIps[1]: bad IP address \"10.0.0.300\""},
    {"port_range.yaml",
     TD "port_range.yaml:6: services[0].ports.80: port 70000 out of range (0-65535)"},
    {"missing_uid.yaml", TD "missing_uid.yaml:2: workloads[0]: missing required key uid"},
    {"dup_uid.yaml",
     TD "dup_uid.yaml:6: workloads[2].uid: duplicate uid \"same\" (first at line 2)"},
    {"syntax.yaml", TD "syntax.yaml:4: YAML syntax error: did not find expected ',' or ']' while "
                       "parsing a flow sequence"},
    {"wrong_type.yaml", TD "wrong_type.yaml:2: workloads: expected a list, got a mapping"},
    {"bad_strmatch.yaml",
     TD "bad_strmatch.yaml:5: policies[0].rules[0][0][0].principals[0]: bad string match "
        "\"Absent\": expected {Exact|Prefix|Suffix: value} or Presence"},
    {"bad_bool.yaml", TD "bad_bool.yaml:4: policies[0].dryRun: expected true or false"},
    {"bad_scope.yaml", TD "bad_scope.yaml:4: policies[0].scope: bad value \"Cluster\": expected "
                          "Global, Namespace or WorkloadSelector"},
    {"bad_vip.yaml", TD "bad_vip.yaml:5: services[0].vips[0]: bad ip \"10.96.0.1\": expected "
                        "\"network/ip\""},
};

static void test_bad_files(void)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        char path[256], err[512];
        struct zt_state *s = (struct zt_state *)1;
        int rc;
        snprintf(path, sizeof(path), TD "%s", bad_cases[i].file);
        rc = zt_config_local_load(path, &s, err, sizeof(err));
        if (strcmp(err, bad_cases[i].want) != 0)
            fprintf(stderr, "  %s: got \"%s\"\n", bad_cases[i].file, err);
        CHECK_EQ_INT(rc, ZT_E_CONFIG);
        CHECK(s == NULL);
        CHECK_EQ_STR(err, bad_cases[i].want);
    }
}

/* A port's long form names its target port and application protocol. */
static void test_port_app_protocol(void)
{
    struct zt_state *s = NULL;
    char err[512];
    const char *y = "services:\n- name: s\n  namespace: ns\n  hostname: s.ns.svc\n"
                    "  ports: {80: {targetPort: 8080, appProtocol: http}, 81: 8081,\n"
                    "          50051: {appProtocol: grpc}, 82: {targetPort: 8082, appProtocol: "
                    "kubernetes.io/h2c}}\n";
    CHECK_EQ_INT(zt_config_local_load_string("LOCAL_XDS", y, strlen(y), &s, err, sizeof(err)), 0);
    const struct zt_service *svc = zt_state_service_by_key(s, "ns/s.ns.svc");
    CHECK(svc && svc->n_ports == 4);
    CHECK_EQ_INT(svc->ports[0].target_port, 8080);
    CHECK_EQ_INT(svc->ports[0].app_protocol, ZT_APP_HTTP11);
    CHECK_EQ_INT(svc->ports[1].app_protocol, ZT_APP_UNKNOWN);
    CHECK_EQ_INT(svc->ports[2].target_port, 0);
    CHECK_EQ_INT(svc->ports[2].app_protocol, ZT_APP_GRPC);
    CHECK_EQ_INT(svc->ports[3].app_protocol, ZT_APP_HTTP2);
    zt_state_unref(s);
    y = "services:\n- name: s\n  namespace: ns\n  hostname: s.ns.svc\n"
        "  ports: {80: {targetPort: 8080, appProtocol: HTTP}}\n";
    CHECK_EQ_INT(zt_config_local_load_string("LOCAL_XDS", y, strlen(y), &s, err, sizeof(err)),
                 ZT_E_CONFIG);
    CHECK_EQ_STR(err, "LOCAL_XDS:5: services[0].ports.80.appProtocol: bad value \"HTTP\": expected "
                      "http, http2, grpc, tcp, tls or kubernetes.io/h2c");
    y = "services:\n- name: s\n  namespace: ns\n  hostname: s.ns.svc\n"
        "  ports: {80: {port: 8080}}\n";
    CHECK_EQ_INT(zt_config_local_load_string("LOCAL_XDS", y, strlen(y), &s, err, sizeof(err)),
                 ZT_E_CONFIG);
    CHECK_EQ_STR(err, "LOCAL_XDS:5: services[0].ports.80.port: unknown key");
}

static void test_inline_and_edge_cases(void)
{
    struct zt_state *s = NULL;
    char err[512];
    const char *y = "workloads:\n- uid: x\n  namespace: ns\n  services:\n"
                    "    ns/h: {80: 8080}\n";
    CHECK_EQ_INT(zt_config_local_load_string("LOCAL_XDS", y, strlen(y), &s, err, sizeof(err)), 0);
    CHECK(zt_state_workload_by_uid(s, "x") != NULL);
    zt_state_unref(s);

    /* Empty document: empty state. */
    CHECK_EQ_INT(zt_config_local_load_string("LOCAL_XDS", "", 0, &s, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_state_workload_count(s), 0);
    zt_state_unref(s);

    y = "services: []\npolicies: ~\nextra: 1\n";
    CHECK_EQ_INT(zt_config_local_load_string("LOCAL_XDS", y, strlen(y), &s, err, sizeof(err)),
                 ZT_E_CONFIG);
    CHECK_EQ_STR(err, "LOCAL_XDS:3: extra: unknown key");

    y = "workloads:\n- uid: x\n  namespace: ns\n  uid: y\n";
    CHECK_EQ_INT(zt_config_local_load_string("LOCAL_XDS", y, strlen(y), &s, err, sizeof(err)),
                 ZT_E_CONFIG);
    CHECK_EQ_STR(err, "LOCAL_XDS:4: workloads[0].uid: duplicate key");

    y = "workloads:\n- uid: x\n  namespace: ns\n  services: {nohost: {80: 80}}\n";
    CHECK_EQ_INT(zt_config_local_load_string("LOCAL_XDS", y, strlen(y), &s, err, sizeof(err)),
                 ZT_E_CONFIG);
    CHECK_EQ_STR(err, "LOCAL_XDS:4: workloads[0].services[\"nohost\"]: expected a "
                      "\"namespace/hostname\" key");

    y = "workloads:\n- uid: x\n  namespace: ns\n  capacity: -1\n";
    CHECK_EQ_INT(zt_config_local_load_string("LOCAL_XDS", y, strlen(y), &s, err, sizeof(err)),
                 ZT_E_CONFIG);
    CHECK_EQ_STR(err, "LOCAL_XDS:4: workloads[0].capacity: expected integer, got \"-1\"");

    y = "policies:\n- name: p\n  namespace: ns\n  rules: [[[{destinationPorts: [http]}]]]\n";
    CHECK_EQ_INT(zt_config_local_load_string("LOCAL_XDS", y, strlen(y), &s, err, sizeof(err)),
                 ZT_E_CONFIG);
    CHECK_EQ_STR(err, "LOCAL_XDS:4: policies[0].rules[0][0][0].destinationPorts[0]: expected "
                      "port, got \"http\"");

    CHECK_EQ_INT(zt_config_local_load(TD "does-not-exist.yaml", &s, err, sizeof(err)), -ENOENT);
    CHECK_EQ_STR(err, TD "does-not-exist.yaml: No such file or directory");
}

/* Large lists (a control plane's directory): duplicates are found among
 * tens of thousands of items, and the error is the first a front-to-back
 * reading meets. */
static void test_large_lists(void)
{
    enum { N = 30000 };
    struct zt_buf y = {0};
    char line[256], err[256];
    struct zt_state *s = NULL;
    zt_buf_append(&y, "workloads:\n", 11);
    for (int i = 0; i < N; i++) {
        /* Items 5000 and 20000 repeat item 100's uid; 15000 repeats 14000's. */
        int u = i == 5000 || i == 20000 ? 100 : i == 15000 ? 14000 : i;
        int n = snprintf(line, sizeof(line),
                         "- {uid: w%d, namespace: ns, workloadIps: [\"10.%d.%d.%d\"]}\n", u,
                         (i >> 16) & 255, (i >> 8) & 255, i & 255);
        zt_buf_append(&y, line, (size_t)n);
    }
    CHECK_EQ_INT(zt_config_local_load_string("big", (const char *)zt_buf_head(&y), y.len, &s, err,
                                             sizeof(err)),
                 ZT_E_CONFIG);
    /* Item i is on line i + 2. */
    CHECK_EQ_STR(err, "big:5002: workloads[5000].uid: duplicate uid \"w100\" (first at line 102)");
    zt_buf_release(&y);

    /* Two keys (namespace/name): same name in another namespace is fine. */
    zt_buf_append(&y, "policies:\n", 10);
    for (int i = 0; i < N; i++) {
        int n = snprintf(line, sizeof(line),
                         "- {name: p%d, namespace: ns%d, scope: Global, action: Deny, rules: "
                         "[[[ {destinationPorts: [1]} ]]]}\n",
                         i == N - 1 ? 7 : i % 1000, i == N - 1 ? 7 : i / 1000);
        zt_buf_append(&y, line, (size_t)n);
    }
    CHECK_EQ_INT(zt_config_local_load_string("big", (const char *)zt_buf_head(&y), y.len, &s, err,
                                             sizeof(err)),
                 ZT_E_CONFIG);
    CHECK_EQ_STR(err,
                 "big:30001: policies[29999]: duplicate policy \"ns7/p7\" (first at line 7009)");
    zt_buf_release(&y);
}

int main(void)
{
    RUN(test_good_file);
    RUN(test_bad_files);
    RUN(test_inline_and_edge_cases);
    RUN(test_port_app_protocol);
    RUN(test_large_lists);
    return TEST_REPORT();
}
