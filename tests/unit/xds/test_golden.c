/* Golden wire bytes for our .proto files.
 *
 * Each test builds one message with the generated protobuf-c structs, packs
 * it and compares the bytes with tests/unit/xds/golden/<name>.bin. Then
 * golden/check.sh decodes every .bin with Debian's protoc against our .proto
 * files (and with --decode_raw, which shows bare field numbers) and diffs
 * the text with the committed <name>.txt / <name>.raw.txt, so a change of a
 * field number, name or type shows up as a readable diff. Run from the
 * repository root (as `make unit` does).
 *
 * Regenerate after an intended change:
 *   ZT_XDS_GOLDEN_UPDATE=1 build-x/tests/xds/test_golden
 *   tests/unit/xds/golden/check.sh --update */
#include "test.h"

#include "proto/ca.pb-c.h"
#include "proto/discovery.pb-c.h"
#include "proto/workload.pb-c.h"
#include "xds/convert.h"

#include <stdlib.h>
#include <sys/stat.h>

#define GOLDEN_DIR "tests/unit/xds/golden/"

static bool have_golden_dir(void)
{
    struct stat st;
    return stat(GOLDEN_DIR "check.sh", &st) == 0;
}

/* Compares (or, with ZT_XDS_GOLDEN_UPDATE=1, rewrites) golden/<name>.bin.
 * Returns 0 when equal or written. */
static int golden_compare(const char *name, const uint8_t *p, size_t n)
{
    char path[256];
    uint8_t *old = NULL;
    long len;
    FILE *f;
    int rc = -1;
    const char *upd = getenv("ZT_XDS_GOLDEN_UPDATE");

    snprintf(path, sizeof(path), GOLDEN_DIR "%s.bin", name);
    if (upd && !strcmp(upd, "1")) {
        f = fopen(path, "wb");
        if (!f)
            return -1;
        rc = fwrite(p, 1, n, f) == n ? 0 : -1;
        fclose(f);
        return rc;
    }
    f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "  %s: missing (run with ZT_XDS_GOLDEN_UPDATE=1)\n", path);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
        goto out;
    old = malloc((size_t)len + 1);
    if (fread(old, 1, (size_t)len, f) != (size_t)len)
        goto out;
    if ((size_t)len != n || memcmp(old, p, n) != 0) {
        fprintf(stderr, "  %s: %zu packed bytes differ from the %ld committed\n", path, n, len);
        goto out;
    }
    rc = 0;
out:
    free(old);
    fclose(f);
    return rc;
}

static const uint8_t ip4[4] = {10, 1, 0, 5};
static const uint8_t vip4[4] = {10, 96, 0, 10};
static const uint8_t ip6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

static uint8_t *pack_any(const ProtobufCMessage *m, size_t *n)
{
    uint8_t *p;
    *n = protobuf_c_message_get_packed_size(m);
    p = malloc(*n + 1);
    if (protobuf_c_message_pack(m, p) != *n)
        abort();
    return p;
}

static void test_golden_workload(void)
{
    Istio__Workload__Address a = ISTIO__WORKLOAD__ADDRESS__INIT;
    Istio__Workload__Workload wl = ISTIO__WORKLOAD__WORKLOAD__INIT;
    ProtobufCBinaryData addrs[2] = {{4, (uint8_t *)ip4}, {16, (uint8_t *)ip6}};
    Istio__Workload__Port port = ISTIO__WORKLOAD__PORT__INIT;
    Istio__Workload__Port *ports[1] = {&port};
    Istio__Workload__PortList pl = ISTIO__WORKLOAD__PORT_LIST__INIT;
    Istio__Workload__Workload__ServicesEntry se = ISTIO__WORKLOAD__WORKLOAD__SERVICES_ENTRY__INIT;
    Istio__Workload__Workload__ServicesEntry *ses[1] = {&se};
    Istio__Workload__GatewayAddress wp = ISTIO__WORKLOAD__GATEWAY_ADDRESS__INIT;
    Istio__Workload__NamespacedHostname wph = ISTIO__WORKLOAD__NAMESPACED_HOSTNAME__INIT;
    Istio__Workload__Locality loc = ISTIO__WORKLOAD__LOCALITY__INIT;
    Istio__Workload__ApplicationTunnel tun = ISTIO__WORKLOAD__APPLICATION_TUNNEL__INIT;
    Google__Protobuf__UInt32Value cap = GOOGLE__PROTOBUF__UINT32_VALUE__INIT;
    char *pols[1] = {"default/allow-9090"};
    struct zt_workload *zw;
    char err[128];
    uint8_t *p;
    size_t n;

    wl.uid = "c1//v1/Pod/default/app-1";
    wl.name = "app-1";
    wl.namespace_ = "default";
    wl.addresses = addrs;
    wl.n_addresses = 2;
    wl.network = "net1";
    wl.tunnel_protocol = ISTIO__WORKLOAD__TUNNEL_PROTOCOL__HBONE;
    wl.trust_domain = "cluster.local";
    wl.service_account = "app";
    wph.namespace_ = "default";
    wph.hostname = "waypoint.default.svc.cluster.local";
    wp.destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_HOSTNAME;
    wp.hostname = &wph;
    wp.hbone_mtls_port = 15008;
    wl.waypoint = &wp;
    wl.node = "node-a";
    wl.canonical_name = "app";
    wl.canonical_revision = "v1";
    wl.workload_type = ISTIO__WORKLOAD__WORKLOAD_TYPE__POD;
    wl.workload_name = "app";
    tun.protocol = ISTIO__WORKLOAD__APPLICATION_TUNNEL__PROTOCOL__PROXY;
    tun.port = 15088;
    wl.application_tunnel = &tun;
    port.service_port = 80;
    port.target_port = 8080;
    pl.ports = ports;
    pl.n_ports = 1;
    se.key = "default/app.default.svc.cluster.local";
    se.value = &pl;
    wl.services = ses;
    wl.n_services = 1;
    wl.authorization_policies = pols;
    wl.n_authorization_policies = 1;
    wl.cluster_id = "c1";
    loc.region = "us-east1";
    loc.zone = "us-east1-b";
    wl.locality = &loc;
    cap.value = 3;
    wl.capacity = &cap;
    a.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD;
    a.workload = &wl;

    /* The golden message is also a valid resource for our converter. */
    CHECK_EQ_INT(zt_xds_workload_from_pb(&wl, &zw, err, sizeof(err)), 0);
    zt_workload_unref(zw);
    p = pack_any(&a.base, &n);
    CHECK_EQ_INT(golden_compare("workload", p, n), 0);
    free(p);
}

static void test_golden_service(void)
{
    Istio__Workload__Address a = ISTIO__WORKLOAD__ADDRESS__INIT;
    Istio__Workload__Service svc = ISTIO__WORKLOAD__SERVICE__INIT;
    Istio__Workload__NetworkAddress v0 = ISTIO__WORKLOAD__NETWORK_ADDRESS__INIT;
    Istio__Workload__NetworkAddress v1 = ISTIO__WORKLOAD__NETWORK_ADDRESS__INIT;
    Istio__Workload__NetworkAddress *vips[2] = {&v0, &v1};
    Istio__Workload__Port port = ISTIO__WORKLOAD__PORT__INIT;
    Istio__Workload__Port *ports[1] = {&port};
    Istio__Workload__LoadBalancing lb = ISTIO__WORKLOAD__LOAD_BALANCING__INIT;
    Istio__Workload__LoadBalancing__Scope scopes[2] = {
        ISTIO__WORKLOAD__LOAD_BALANCING__SCOPE__NETWORK,
        ISTIO__WORKLOAD__LOAD_BALANCING__SCOPE__ZONE};
    char *sans[1] = {"spiffe://cluster.local/ns/default/sa/app"};
    struct zt_service *zs;
    char err[128];
    uint8_t *p;
    size_t n;

    svc.name = "app";
    svc.namespace_ = "default";
    svc.hostname = "app.default.svc.cluster.local";
    v0.address.data = (uint8_t *)vip4;
    v0.address.len = 4;
    v1.network = "net1";
    v1.address.data = (uint8_t *)ip4;
    v1.address.len = 4;
    v1.length_opt_case = ISTIO__WORKLOAD__NETWORK_ADDRESS__LENGTH_OPT_LENGTH;
    v1.length = 24;
    svc.addresses = vips;
    svc.n_addresses = 2;
    port.service_port = 80;
    port.target_port = 8080;
    port.app_protocol = ISTIO__WORKLOAD__APP_PROTOCOL__HTTP11;
    svc.ports = ports;
    svc.n_ports = 1;
    svc.subject_alt_names = sans;
    svc.n_subject_alt_names = 1;
    lb.routing_preference = scopes;
    lb.n_routing_preference = 2;
    lb.mode = ISTIO__WORKLOAD__LOAD_BALANCING__MODE__FAILOVER;
    svc.load_balancing = &lb;
    svc.ip_families = ISTIO__WORKLOAD__IPFAMILIES__IPV4_ONLY;
    svc.canonical = 1;
    svc.visibility = ISTIO__WORKLOAD__SERVICE__VISIBILITY__NAMESPACE;
    a.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_SERVICE;
    a.service = &svc;

    CHECK_EQ_INT(zt_xds_service_from_pb(&svc, &zs, err, sizeof(err)), 0);
    CHECK_EQ_INT(zs->n_vips, 1);
    CHECK_EQ_INT(zs->n_cidr_vips, 1);
    zt_service_unref(zs);
    p = pack_any(&a.base, &n);
    CHECK_EQ_INT(golden_compare("service", p, n), 0);
    free(p);
}

static void test_golden_authorization(void)
{
    Istio__Security__Authorization pol = ISTIO__SECURITY__AUTHORIZATION__INIT;
    Istio__Security__Rule rule = ISTIO__SECURITY__RULE__INIT;
    Istio__Security__Rule *rules[1] = {&rule};
    Istio__Security__Clause cl = ISTIO__SECURITY__CLAUSE__INIT;
    Istio__Security__Clause *cls[1] = {&cl};
    Istio__Security__Match m = ISTIO__SECURITY__MATCH__INIT;
    Istio__Security__Match *ms[1] = {&m};
    Istio__Security__StringMatch ns = ISTIO__SECURITY__STRING_MATCH__INIT;
    Istio__Security__StringMatch pres = ISTIO__SECURITY__STRING_MATCH__INIT;
    Istio__Security__StringMatch *nss[1] = {&ns}, *prs[1] = {&pres};
    Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
    Istio__Security__ServiceAccountMatch sa = ISTIO__SECURITY__SERVICE_ACCOUNT_MATCH__INIT;
    Istio__Security__ServiceAccountMatch *sas[1] = {&sa};
    Istio__Security__Address src = ISTIO__SECURITY__ADDRESS__INIT;
    Istio__Security__Address *srcs[1] = {&src};
    uint32_t dports[2] = {9090, 9091};
    struct zt_policy *zp;
    char err[128];
    uint8_t *p;
    size_t n;

    pol.name = "allow-9090";
    pol.namespace_ = "default";
    pol.scope = ISTIO__SECURITY__SCOPE__WORKLOAD_SELECTOR;
    pol.action = ISTIO__SECURITY__ACTION__ALLOW;
    ns.match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_EXACT;
    ns.exact = "frontend";
    pres.match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PRESENCE;
    pres.presence = &empty;
    sa.namespace_ = "frontend";
    sa.serviceaccount = "web";
    src.address.data = (uint8_t *)ip4;
    src.address.len = 4;
    src.length = 16;
    m.namespaces = nss;
    m.n_namespaces = 1;
    m.principals = prs;
    m.n_principals = 1;
    m.service_accounts = sas;
    m.n_service_accounts = 1;
    m.source_ips = srcs;
    m.n_source_ips = 1;
    m.destination_ports = dports;
    m.n_destination_ports = 2;
    cl.matches = ms;
    cl.n_matches = 1;
    rule.clauses = cls;
    rule.n_clauses = 1;
    pol.rules = rules;
    pol.n_rules = 1;

    CHECK_EQ_INT(zt_xds_policy_from_pb(&pol, &zp, err, sizeof(err)), 0);
    zt_policy_unref(zp);
    p = pack_any(&pol.base, &n);
    CHECK_EQ_INT(golden_compare("authorization", p, n), 0);
    free(p);
}

static Google__Protobuf__Value *str_value(Google__Protobuf__Value *v, const char *s)
{
    Google__Protobuf__Value init = GOOGLE__PROTOBUF__VALUE__INIT;
    *v = init;
    v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v->string_value = (char *)s;
    return v;
}

static void test_golden_delta_request(void)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest req =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    Google__Protobuf__Struct md = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Struct__FieldsEntry fe[2] = {GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT,
                                                   GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT};
    Google__Protobuf__Struct__FieldsEntry *fes[2] = {&fe[0], &fe[1]};
    Google__Protobuf__Value vals[2];
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry irv =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INITIAL_RESOURCE_VERSIONS_ENTRY__INIT;
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry *irvs[1] = {
        &irv};
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    uint8_t *p;
    size_t n;

    node.id = "ztunnel~10.0.0.7~ztunnel-abcde.istio-system~istio-system.svc.cluster.local";
    node.cluster = "Kubernetes";
    fe[0].key = "NAME";
    fe[0].value = str_value(&vals[0], "ztunnel-abcde");
    fe[1].key = "NODE_NAME";
    fe[1].value = str_value(&vals[1], "node-a");
    md.fields = fes;
    md.n_fields = 2;
    node.metadata = &md;
    node.user_agent_name = "ztunnel-c";
    node.user_agent_version_type_case =
        ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE_USER_AGENT_VERSION;
    node.user_agent_version = "0.1";
    req.node = &node;
    req.type_url = ZT_XDS_TYPE_ADDRESS;
    irv.key = "c1//v1/Pod/default/app-1";
    irv.value = "2026-01-01T00:00:00Z/7";
    req.initial_resource_versions = irvs;
    req.n_initial_resource_versions = 1;
    req.response_nonce = "nonce-1";
    st.code = 3; /* INVALID_ARGUMENT */
    st.message = "c1//v1/Pod/default/bad: addresses[0]: length 5, want 4 or 16";
    req.error_detail = &st;

    p = pack_any(&req.base, &n);
    CHECK_EQ_INT(golden_compare("delta_request", p, n), 0);
    free(p);
}

/* A response carrying one Address resource in an Any, plus a removal. */
static void test_golden_delta_response(void)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse resp =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_RESPONSE__INIT;
    Envoy__Service__Discovery__V3__Resource res = ENVOY__SERVICE__DISCOVERY__V3__RESOURCE__INIT;
    Envoy__Service__Discovery__V3__Resource *ress[1] = {&res};
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    Istio__Workload__Address a = ISTIO__WORKLOAD__ADDRESS__INIT;
    Istio__Workload__Workload wl = ISTIO__WORKLOAD__WORKLOAD__INIT;
    ProtobufCBinaryData addrs[1] = {{4, (uint8_t *)ip4}};
    char *removed[1] = {"default/old.default.svc.cluster.local"};
    struct zt_state_builder *b;
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *back;
    char err[128], *name = NULL;
    uint8_t *inner, *p;
    size_t ninner, n;

    wl.uid = "c1//v1/Pod/default/app-1";
    wl.name = "app-1";
    wl.namespace_ = "default";
    wl.addresses = addrs;
    wl.n_addresses = 1;
    a.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD;
    a.workload = &wl;
    inner = pack_any(&a.base, &ninner);
    any.type_url = ZT_XDS_TYPE_ADDRESS;
    any.value.data = inner;
    any.value.len = ninner;
    res.name = wl.uid;
    res.version = "7";
    res.resource = &any;
    resp.system_version_info = "2026-01-01T00:00:00Z";
    resp.resources = ress;
    resp.n_resources = 1;
    resp.type_url = ZT_XDS_TYPE_ADDRESS;
    resp.nonce = "nonce-2";
    resp.removed_resources = removed;
    resp.n_removed_resources = 1;
    p = pack_any(&resp.base, &n);
    free(inner);

    /* Decode it back the way the ADS client will, and apply the resource. */
    back = envoy__service__discovery__v3__delta_discovery_response__unpack(NULL, n, p);
    CHECK(back != NULL);
    CHECK_EQ_INT(back->n_resources, 1);
    CHECK_EQ_STR(back->resources[0]->resource->type_url, ZT_XDS_TYPE_ADDRESS);
    b = zt_state_builder_new(NULL);
    CHECK_EQ_INT(zt_xds_apply_address(b, back->resources[0]->resource->value.data,
                                      back->resources[0]->resource->value.len, &name, err,
                                      sizeof(err)),
                 0);
    zt_state_builder_free(b);
    CHECK_EQ_STR(name, back->resources[0]->name);
    free(name);
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(back, NULL);

    CHECK_EQ_INT(golden_compare("delta_response", p, n), 0);
    free(p);
}

static void test_golden_cert_request(void)
{
    Istio__V1__Auth__IstioCertificateRequest req = ISTIO__V1__AUTH__ISTIO_CERTIFICATE_REQUEST__INIT;
    Google__Protobuf__Struct md = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Struct__FieldsEntry fe = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    Google__Protobuf__Struct__FieldsEntry *fes[1] = {&fe};
    Google__Protobuf__Value v;
    uint8_t *p;
    size_t n;

    req.csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBtest\n-----END CERTIFICATE REQUEST-----\n";
    req.validity_duration = 86400;
    fe.key = "ImpersonatedIdentity";
    fe.value = str_value(&v, "spiffe://cluster.local/ns/default/sa/app");
    md.fields = fes;
    md.n_fields = 1;
    req.metadata = &md;
    p = pack_any(&req.base, &n);
    CHECK_EQ_INT(golden_compare("cert_request", p, n), 0);
    free(p);
}

/* The control plane's answer: leaf, intermediate, trust bundle. */
static void test_golden_cert_response(void)
{
    Istio__V1__Auth__IstioCertificateResponse resp =
        ISTIO__V1__AUTH__ISTIO_CERTIFICATE_RESPONSE__INIT;
    char *chain[3] = {"-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n",
                      "-----BEGIN CERTIFICATE-----\nintermediate\n-----END CERTIFICATE-----\n",
                      "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"};
    uint8_t *p;
    size_t n;

    resp.cert_chain = chain;
    resp.n_cert_chain = 3;
    p = pack_any(&resp.base, &n);
    CHECK_EQ_INT(golden_compare("cert_response", p, n), 0);
    free(p);
}

/* Decodes every .bin with protoc against our .proto files; skipped with a
 * message when protoc is not installed. */
static void test_protoc_decode(void)
{
    int rc;
    if (system("command -v protoc >/dev/null 2>&1") != 0) {
        SKIP("protoc not installed (Debian: protobuf-compiler)");
    }
    rc = system(GOLDEN_DIR "check.sh");
    CHECK_EQ_INT(rc, 0);
}

int main(void)
{
    if (!have_golden_dir()) {
        return SKIP_ALL("run from the repository root (no " GOLDEN_DIR ")");
    }
    RUN(test_golden_workload);
    RUN(test_golden_service);
    RUN(test_golden_authorization);
    RUN(test_golden_delta_request);
    RUN(test_golden_delta_response);
    RUN(test_golden_cert_request);
    RUN(test_golden_cert_response);
    RUN(test_protoc_decode);
    return TEST_REPORT();
}
