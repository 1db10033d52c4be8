/* The waypoint's L7 AuthorizationPolicy engine: one table row per field
 * (match and not-match), the combination rules and the cases of Istio's
 * authorization docs (allow-nothing, deny beats allow, `{}` allows all,
 * notPaths, wildcard forms, nested claims, requestPrincipals "*" requiring
 * a token, dry-run), attachment by targetRefs, path normalization. Policies
 * are written as users write them and read with config/authz.h. */
#include "test.h"
#include "authz/l7.h"
#include "base/err.h"
#include "config/authz.h"
#include "http/head.h"

#include <jansson.h>
#include <stdio.h>

/* One AuthorizationPolicy on Service ns1/svc, rules in YAML flow style. */
#define AP_T(name, ns, target, action, rules)                                                      \
    "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " name     \
    ", namespace: " ns "}\nspec: {targetRefs: [" target "], action: " action ", rules: " rules     \
    "}\n"
#define SVC_T "{kind: Service, group: \"\", name: svc}"
#define AP(name, action, rules) AP_T(name, "ns1", SVC_T, action, rules)
#define ALLOW_TO(name, op) AP(name, "ALLOW", "[{to: [{operation: " op "}]}]")
#define ALLOW_FROM(name, src) AP(name, "ALLOW", "[{from: [{source: " src "}]}]")
#define ALLOW_WHEN(name, w) AP(name, "ALLOW", "[{when: [" w "]}]")

/* The request of a row: fields left 0/NULL take the defaults of mkreq. */
struct rq {
    const char *principal; /* "-" for none */
    const char *src_ip, *xff, *method, *path, *host;
    uint16_t port;
    const char *hdr, *hdr_val, *hdr_val2;
    const char *req_principal, *aud, *presenter, *claims;
    const char *dst_ip, *sni;
    const char *svc; /* "-" for none */
    bool pre;        /* path_is_normalized */
    bool tcp;        /* a connection relayed as TCP: no request */
};

struct row {
    const char *what;
    const char *yaml;
    struct rq rq;
    int allowed;
    const char *policy; /* the deciding policy's name, NULL for none */
};

#define DENY_NONE 0, NULL

static const struct row ROWS[] = {
    {"no policy", "", {0}, 1, NULL},
    /* ---- TCP through the waypoint: HTTP-only fields never match in an
     * ALLOW rule and are left out of a DENY rule (Istio's network RBAC). */
    {"tcp: ALLOW by methods never matches",
     ALLOW_TO("a", "{methods: [GET]}"),
     {.tcp = 1},
     DENY_NONE},
    {"http control: ALLOW by methods", ALLOW_TO("a", "{methods: [GET]}"), {0}, 1, "a"},
    {"tcp: ALLOW by ports", ALLOW_TO("a", "{ports: [\"8080\"]}"), {.tcp = 1}, 1, "a"},
    {"tcp: ALLOW by ports and methods: the rule is ignored",
     ALLOW_TO("a", "{ports: [\"8080\"], methods: [GET]}"),
     {.tcp = 1},
     DENY_NONE},
    {"tcp: ALLOW by principal",
     ALLOW_FROM("a", "{principals: [cluster.local/ns/client-ns/sa/client]}"),
     {.tcp = 1},
     1,
     "a"},
    {"tcp: ALLOW by requestPrincipals never matches",
     ALLOW_FROM("a", "{requestPrincipals: [\"*\"]}"),
     {.tcp = 1},
     DENY_NONE},
    {"tcp: ALLOW when a header never matches",
     ALLOW_WHEN("a", "{key: \"request.headers[x]\", values: [y]}"),
     {.tcp = 1},
     DENY_NONE},
    {"tcp: ALLOW, the rule without HTTP fields matches",
     AP("a", "ALLOW",
        "[{to: [{operation: {methods: [GET]}}]}, {from: [{source: {namespaces: [client-ns]}}]}]"),
     {.tcp = 1},
     1,
     "a"},
    {"tcp: DENY of methods denies every connection",
     AP("d", "DENY", "[{to: [{operation: {methods: [POST]}}]}]"),
     {.tcp = 1},
     0,
     "d"},
    {"http control: DENY of POST, a GET",
     AP("d", "DENY", "[{to: [{operation: {methods: [POST]}}]}]"),
     {0},
     1,
     NULL},
    {"tcp: DENY of methods on another port",
     AP("d", "DENY", "[{to: [{operation: {methods: [GET], ports: [\"9000\"]}}]}]"),
     {.tcp = 1},
     1,
     NULL},
    {"tcp: DENY of a header from another principal",
     AP("d", "DENY",
        "[{from: [{source: {principals: [x]}}], when: [{key: \"request.headers[x]\", values: "
        "[y]}]}]"),
     {.tcp = 1},
     1,
     NULL},
    {"tcp: DENY of notPaths and requestPrincipals denies",
     AP("d", "DENY",
        "[{from: [{source: {requestPrincipals: [a/b]}}], to: [{operation: {notPaths: [/x]}}]}]"),
     {.tcp = 1},
     0,
     "d"},
    /* ---- source.principals */
    {"principals exact",
     ALLOW_FROM("a", "{principals: [cluster.local/ns/client-ns/sa/client]}"),
     {0},
     1,
     "a"},
    {"principals exact, other",
     ALLOW_FROM("a", "{principals: [cluster.local/ns/x/sa/y]}"),
     {0},
     DENY_NONE},
    {"principals prefix",
     ALLOW_FROM("a", "{principals: [cluster.local/ns/client-ns/*]}"),
     {0},
     1,
     "a"},
    {"principals suffix", ALLOW_FROM("a", "{principals: [\"*/sa/client\"]}"), {0}, 1, "a"},
    {"principals presence", ALLOW_FROM("a", "{principals: [\"*\"]}"), {0}, 1, "a"},
    {"principals presence, plaintext",
     ALLOW_FROM("a", "{principals: [\"*\"]}"),
     {.principal = "-"},
     DENY_NONE},
    {"principals values ORed", ALLOW_FROM("a", "{principals: [x, \"*/sa/client\"]}"), {0}, 1, "a"},
    {"notPrincipals hit", ALLOW_FROM("a", "{notPrincipals: [\"*/sa/client\"]}"), {0}, DENY_NONE},
    {"notPrincipals miss", ALLOW_FROM("a", "{notPrincipals: [\"*/sa/other\"]}"), {0}, 1, "a"},
    {"notPrincipals without identity",
     ALLOW_FROM("a", "{notPrincipals: [\"*\"]}"),
     {.principal = "-"},
     1,
     "a"},
    /* ---- source.namespaces */
    {"namespaces exact", ALLOW_FROM("a", "{namespaces: [client-ns]}"), {0}, 1, "a"},
    {"namespaces other", ALLOW_FROM("a", "{namespaces: [foo]}"), {0}, DENY_NONE},
    {"namespaces prefix", ALLOW_FROM("a", "{namespaces: [client-*]}"), {0}, 1, "a"},
    {"namespaces without identity",
     ALLOW_FROM("a", "{namespaces: [\"*\"]}"),
     {.principal = "-"},
     DENY_NONE},
    {"notNamespaces hit", ALLOW_FROM("a", "{notNamespaces: [client-ns]}"), {0}, DENY_NONE},
    {"notNamespaces miss", ALLOW_FROM("a", "{notNamespaces: [foo]}"), {0}, 1, "a"},
    /* ---- source.serviceAccounts */
    {"serviceAccounts ns/sa",
     ALLOW_FROM("a", "{serviceAccounts: [client-ns/client]}"),
     {0},
     1,
     "a"},
    {"serviceAccounts bare: the policy's namespace",
     ALLOW_FROM("a", "{serviceAccounts: [client]}"),
     {.principal = "spiffe://td/ns/ns1/sa/client"},
     1,
     "a"},
    {"serviceAccounts bare, other namespace",
     ALLOW_FROM("a", "{serviceAccounts: [client]}"),
     {0},
     DENY_NONE},
    {"serviceAccounts without identity",
     ALLOW_FROM("a", "{serviceAccounts: [client-ns/client]}"),
     {.principal = "-"},
     DENY_NONE},
    {"notServiceAccounts hit",
     ALLOW_FROM("a", "{notServiceAccounts: [client-ns/client]}"),
     {0},
     DENY_NONE},
    {"notServiceAccounts miss",
     ALLOW_FROM("a", "{notServiceAccounts: [client-ns/x]}"),
     {0},
     1,
     "a"},
    /* ---- ipBlocks, remoteIpBlocks */
    {"ipBlocks in", ALLOW_FROM("a", "{ipBlocks: [10.0.0.0/24]}"), {0}, 1, "a"},
    {"ipBlocks bare address", ALLOW_FROM("a", "{ipBlocks: [10.0.0.1]}"), {0}, 1, "a"},
    {"ipBlocks out", ALLOW_FROM("a", "{ipBlocks: [10.9.0.0/16]}"), {0}, DENY_NONE},
    {"notIpBlocks hit", ALLOW_FROM("a", "{notIpBlocks: [10.0.0.0/8]}"), {0}, DENY_NONE},
    {"notIpBlocks miss", ALLOW_FROM("a", "{notIpBlocks: [192.168.0.0/16]}"), {0}, 1, "a"},
    {"remoteIpBlocks from XFF",
     ALLOW_FROM("a", "{remoteIpBlocks: [203.0.113.0/24]}"),
     {.xff = "198.51.100.1, 203.0.113.7"},
     1,
     "a"},
    {"remoteIpBlocks, no XFF: the peer",
     ALLOW_FROM("a", "{remoteIpBlocks: [203.0.113.0/24]}"),
     {0},
     DENY_NONE},
    {"notRemoteIpBlocks hit",
     ALLOW_FROM("a", "{notRemoteIpBlocks: [203.0.113.0/24]}"),
     {.xff = "203.0.113.7"},
     DENY_NONE},
    {"notRemoteIpBlocks miss",
     ALLOW_FROM("a", "{notRemoteIpBlocks: [203.0.113.0/24]}"),
     {0},
     1,
     "a"},
    /* ---- requestPrincipals */
    {"requestPrincipals * needs a token",
     ALLOW_FROM("a", "{requestPrincipals: [\"*\"]}"),
     {0},
     DENY_NONE},
    {"requestPrincipals * with a token",
     ALLOW_FROM("a", "{requestPrincipals: [\"*\"]}"),
     {.req_principal = "https://issuer.example/user-1"},
     1,
     "a"},
    {"requestPrincipals exact",
     ALLOW_FROM("a", "{requestPrincipals: [\"https://issuer.example/user-1\"]}"),
     {.req_principal = "https://issuer.example/user-1"},
     1,
     "a"},
    {"requestPrincipals issuer prefix",
     ALLOW_FROM("a", "{requestPrincipals: [\"https://issuer.example/*\"]}"),
     {.req_principal = "https://other.example/user-1"},
     DENY_NONE},
    {"notRequestPrincipals * without token",
     AP("d", "DENY", "[{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]"),
     {0},
     0,
     "d"},
    {"notRequestPrincipals * with token",
     AP("d", "DENY", "[{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]"),
     {.req_principal = "i/s"},
     1,
     NULL},
    /* ---- operation.hosts */
    {"hosts exact, any case", ALLOW_TO("a", "{hosts: [SVC.ns1.svc.cluster.local]}"), {0}, 1, "a"},
    {"hosts other", ALLOW_TO("a", "{hosts: [other.ns1]}"), {0}, DENY_NONE},
    {"hosts port compared literally",
     ALLOW_TO("a", "{hosts: [svc.ns1.svc.cluster.local]}"),
     {.host = "svc.ns1.svc.cluster.local:8080"},
     DENY_NONE},
    {"hosts with port",
     ALLOW_TO("a", "{hosts: [\"svc.ns1.svc.cluster.local:8080\"]}"),
     {.host = "svc.ns1.svc.cluster.local:8080"},
     1,
     "a"},
    {"hosts suffix", ALLOW_TO("a", "{hosts: [\"*.Cluster.Local\"]}"), {0}, 1, "a"},
    {"hosts prefix", ALLOW_TO("a", "{hosts: [svc.*]}"), {0}, 1, "a"},
    {"notHosts hit", ALLOW_TO("a", "{notHosts: [\"*.cluster.local\"]}"), {0}, DENY_NONE},
    {"notHosts miss", ALLOW_TO("a", "{notHosts: [evil.com]}"), {0}, 1, "a"},
    /* ---- ports */
    {"ports hit", ALLOW_TO("a", "{ports: [\"9090\", \"8080\"]}"), {0}, 1, "a"},
    {"ports miss", ALLOW_TO("a", "{ports: [\"9090\"]}"), {0}, DENY_NONE},
    {"notPorts hit", ALLOW_TO("a", "{notPorts: [\"8080\"]}"), {0}, DENY_NONE},
    {"notPorts miss", ALLOW_TO("a", "{notPorts: [\"9090\"]}"), {0}, 1, "a"},
    /* ---- methods */
    {"methods hit", ALLOW_TO("a", "{methods: [GET, HEAD]}"), {0}, 1, "a"},
    {"methods case-sensitive", ALLOW_TO("a", "{methods: [get]}"), {0}, DENY_NONE},
    {"methods miss", ALLOW_TO("a", "{methods: [POST]}"), {0}, DENY_NONE},
    {"notMethods hit", ALLOW_TO("a", "{notMethods: [GET]}"), {0}, DENY_NONE},
    {"notMethods miss", ALLOW_TO("a", "{notMethods: [DELETE]}"), {0}, 1, "a"},
    /* ---- paths */
    {"paths exact, query ignored", ALLOW_TO("a", "{paths: [/api/v1]}"), {0}, 1, "a"},
    {"paths exact, other", ALLOW_TO("a", "{paths: [/api]}"), {0}, DENY_NONE},
    {"paths prefix", ALLOW_TO("a", "{paths: [/api/*]}"), {0}, 1, "a"},
    {"paths suffix", ALLOW_TO("a", "{paths: [\"*/v1\"]}"), {0}, 1, "a"},
    {"paths presence", ALLOW_TO("a", "{paths: [\"*\"]}"), {0}, 1, "a"},
    {"paths template {*}", ALLOW_TO("a", "{paths: [\"/api/{*}\"]}"), {0}, 1, "a"},
    {"paths template {*} one segment",
     ALLOW_TO("a", "{paths: [\"/api/{*}\"]}"),
     {.path = "/api/v1/x"},
     DENY_NONE},
    {"paths template {**}",
     ALLOW_TO("a", "{paths: [\"/{*}/{**}\"]}"),
     {.path = "/api/v1/x/y"},
     1,
     "a"},
    {"paths template {**} needs a segment",
     ALLOW_TO("a", "{paths: [\"/api/{**}\"]}"),
     {.path = "/api/"},
     DENY_NONE},
    {"paths template literal after {**}",
     ALLOW_TO("a", "{paths: [\"/{**}/edit\"]}"),
     {.path = "/a/b/edit"},
     1,
     "a"},
    {"paths template literal after {**}, other",
     ALLOW_TO("a", "{paths: [\"/{**}/edit\"]}"),
     {.path = "/a/b/view"},
     DENY_NONE},
    {"paths template literal after {**}, nothing before",
     ALLOW_TO("a", "{paths: [\"/{**}/edit\"]}"),
     {.path = "/edit"},
     DENY_NONE},
    {"notPaths hit", ALLOW_TO("a", "{notPaths: [/api/*]}"), {0}, DENY_NONE},
    {"notPaths miss", ALLOW_TO("a", "{notPaths: [/admin*]}"), {0}, 1, "a"},
    {"DENY path after dot segments",
     AP("d", "DENY", "[{to: [{operation: {paths: [/admin*]}}]}]"),
     {.path = "/public/../admin/x"},
     0,
     "d"},
    {"DENY path after encoded dots",
     AP("d", "DENY", "[{to: [{operation: {paths: [/admin*]}}]}]"),
     {.path = "/public/%2e%2E/admin"},
     0,
     "d"},
    {"DENY path after decoded unreserved",
     AP("d", "DENY", "[{to: [{operation: {paths: [/admin]}}]}]"),
     {.path = "/%61dmin"},
     0,
     "d"},
    {"a path the caller normalized is taken as it is",
     AP("d", "DENY", "[{to: [{operation: {paths: [/admin]}}]}]"),
     {.path = "/x/../admin?q", .pre = true},
     1,
     NULL},
    {"a normalized path: query still ignored",
     AP("d", "DENY", "[{to: [{operation: {paths: [/admin]}}]}]"),
     {.path = "/admin?q", .pre = true},
     0,
     "d"},
    {"slashes are not merged (BASE)",
     AP("d", "DENY", "[{to: [{operation: {paths: [/admin/x]}}]}]"),
     {.path = "/admin//x"},
     1,
     NULL},
    {"escaped slash kept",
     AP("d", "DENY", "[{to: [{operation: {paths: [/a/b]}}]}]"),
     {.path = "/a%2fb"},
     1,
     NULL},
    /* ---- when */
    {"when header values",
     ALLOW_WHEN("a", "{key: \"request.headers[X-Token]\", values: [abc*]}"),
     {.hdr = "x-token", .hdr_val = "abc123"},
     1,
     "a"},
    {"when header other",
     ALLOW_WHEN("a", "{key: \"request.headers[x-token]\", values: [abc]}"),
     {.hdr = "x-token", .hdr_val = "zzz"},
     DENY_NONE},
    {"when header absent",
     ALLOW_WHEN("a", "{key: \"request.headers[x-token]\", values: [\"*\"]}"),
     {0},
     DENY_NONE},
    {"when header present but empty",
     ALLOW_WHEN("a", "{key: \"request.headers[x-token]\", values: [\"*\"]}"),
     {.hdr = "x-token", .hdr_val = ""},
     1,
     "a"},
    {"when header notValues absent",
     ALLOW_WHEN("a", "{key: \"request.headers[x-token]\", notValues: [bad]}"),
     {0},
     1,
     "a"},
    {"when header notValues hit",
     ALLOW_WHEN("a", "{key: \"request.headers[x-token]\", notValues: [bad]}"),
     {.hdr = "x-token", .hdr_val = "bad"},
     DENY_NONE},
    {"when repeated header joined",
     ALLOW_WHEN("a", "{key: \"request.headers[x-token]\", values: [\"a,b\"]}"),
     {.hdr = "x-token", .hdr_val = "a", .hdr_val2 = "b"},
     1,
     "a"},
    {"when source.ip", ALLOW_WHEN("a", "{key: source.ip, values: [10.0.0.0/16]}"), {0}, 1, "a"},
    {"when source.ip notValues",
     ALLOW_WHEN("a", "{key: source.ip, notValues: [10.0.0.1]}"),
     {0},
     DENY_NONE},
    {"when remote.ip",
     ALLOW_WHEN("a", "{key: remote.ip, values: [203.0.113.7]}"),
     {.xff = "203.0.113.7"},
     1,
     "a"},
    {"when source.namespace",
     ALLOW_WHEN("a", "{key: source.namespace, values: [client-ns]}"),
     {0},
     1,
     "a"},
    {"when source.namespace other",
     ALLOW_WHEN("a", "{key: source.namespace, values: [x]}"),
     {0},
     DENY_NONE},
    {"when source.principal",
     ALLOW_WHEN("a", "{key: source.principal, values: [\"cluster.local/ns/client-ns/sa/client\"]}"),
     {0},
     1,
     "a"},
    {"when source.serviceAccount",
     ALLOW_WHEN("a", "{key: source.serviceAccount, values: [client-ns/client]}"),
     {0},
     1,
     "a"},
    {"when source.trustDomain",
     ALLOW_WHEN("a", "{key: source.trustDomain, values: [other.td]}"),
     {0},
     DENY_NONE},
    {"when request.auth.principal",
     ALLOW_WHEN("a", "{key: request.auth.principal, values: [\"iss/sub\"]}"),
     {.req_principal = "iss/sub"},
     1,
     "a"},
    {"when request.auth.principal, no token",
     ALLOW_WHEN("a", "{key: request.auth.principal, values: [\"*\"]}"),
     {0},
     DENY_NONE},
    {"when request.auth.audiences",
     ALLOW_WHEN("a", "{key: request.auth.audiences, values: [api]}"),
     {.req_principal = "i/s", .aud = "api"},
     1,
     "a"},
    {"when request.auth.audiences other",
     ALLOW_WHEN("a", "{key: request.auth.audiences, values: [web]}"),
     {.req_principal = "i/s", .aud = "api"},
     DENY_NONE},
    {"when request.auth.presenter",
     ALLOW_WHEN("a", "{key: request.auth.presenter, values: [cli*]}"),
     {.req_principal = "i/s", .presenter = "client-app"},
     1,
     "a"},
    {"when claims",
     ALLOW_WHEN("a", "{key: \"request.auth.claims[group]\", values: [admins]}"),
     {.req_principal = "i/s", .claims = "{\"group\":\"admins\"}"},
     1,
     "a"},
    {"when claims list",
     ALLOW_WHEN("a", "{key: \"request.auth.claims[groups]\", values: [b]}"),
     {.req_principal = "i/s", .claims = "{\"groups\":[\"a\",\"b\"]}"},
     1,
     "a"},
    {"when nested claims",
     ALLOW_WHEN("a", "{key: \"request.auth.claims[realm][role]\", values: [admin]}"),
     {.req_principal = "i/s", .claims = "{\"realm\":{\"role\":\"admin\"}}"},
     1,
     "a"},
    {"when nested claims other",
     ALLOW_WHEN("a", "{key: \"request.auth.claims[realm][role]\", values: [admin]}"),
     {.req_principal = "i/s", .claims = "{\"realm\":{\"role\":\"user\"}}"},
     DENY_NONE},
    {"when nested claim missing",
     ALLOW_WHEN("a", "{key: \"request.auth.claims[realm][role]\", values: [admin]}"),
     {.req_principal = "i/s", .claims = "{\"role\":\"admin\"}"},
     DENY_NONE},
    {"when scope is space-delimited",
     ALLOW_WHEN("a", "{key: \"request.auth.claims[scope]\", values: [write]}"),
     {.req_principal = "i/s", .claims = "{\"scope\":\"read write\"}"},
     1,
     "a"},
    {"when claims notValues",
     ALLOW_WHEN("a", "{key: \"request.auth.claims[group]\", notValues: [guests]}"),
     {.req_principal = "i/s", .claims = "{\"group\":\"guests\"}"},
     DENY_NONE},
    {"when destination.port",
     ALLOW_WHEN("a", "{key: destination.port, values: [\"8080\"]}"),
     {0},
     1,
     "a"},
    {"when destination.port other",
     ALLOW_WHEN("a", "{key: destination.port, values: [\"80\"]}"),
     {0},
     DENY_NONE},
    {"when destination.ip",
     ALLOW_WHEN("a", "{key: destination.ip, values: [10.1.0.0/16]}"),
     {0},
     1,
     "a"},
    {"when connection.sni",
     ALLOW_WHEN("a", "{key: connection.sni, values: [\"*.example.com\"]}"),
     {.sni = "api.example.com"},
     1,
     "a"},
    {"when connection.sni absent",
     ALLOW_WHEN("a", "{key: connection.sni, values: [\"*\"]}"),
     {0},
     DENY_NONE},
    /* ---- combination rules */
    {"ALLOW with no rules allows nothing", AP("a", "ALLOW", "[]"), {0}, DENY_NONE},
    {"rules [{}] allows all", AP("a", "ALLOW", "[{}]"), {0}, 1, "a"},
    {"DENY beats ALLOW",
     AP("a", "ALLOW", "[{}]") AP("d", "DENY", "[{to: [{operation: {methods: [GET]}}]}]"),
     {0},
     0,
     "d"},
    {"DENY missing, ALLOW decides",
     AP("a", "ALLOW", "[{}]") AP("d", "DENY", "[{to: [{operation: {methods: [POST]}}]}]"),
     {0},
     1,
     "a"},
    {"any ALLOW policy suffices",
     ALLOW_TO("a", "{methods: [POST]}") ALLOW_TO("b", "{methods: [GET]}"),
     {0},
     1,
     "b"},
    {"operation fields ANDed", ALLOW_TO("a", "{methods: [GET], paths: [/other]}"), {0}, DENY_NONE},
    {"operations ORed",
     AP("a", "ALLOW", "[{to: [{operation: {methods: [POST]}}, {operation: {paths: [/api/*]}}]}]"),
     {0},
     1,
     "a"},
    {"from and to ANDed",
     AP("a", "ALLOW",
        "[{from: [{source: {namespaces: [client-ns]}}], to: [{operation: {methods: [POST]}}]}]"),
     {0},
     DENY_NONE},
    {"rules ORed",
     AP("a", "ALLOW",
        "[{to: [{operation: {methods: [POST]}}]}, {from: [{source: {namespaces: [client-ns]}}]}]"),
     {0},
     1,
     "a"},
    {"when entries ANDed",
     ALLOW_WHEN("a", "{key: source.namespace, values: [client-ns]}, {key: destination.port, "
                     "values: [\"80\"]}"),
     {0},
     DENY_NONE},
    {"AUDIT never decides", AP("au", "AUDIT", "[{}]"), {0}, 1, NULL},
    {"dry-run DENY is not enforced",
     "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: d, "
     "namespace: ns1, annotations: {istio.io/dry-run: \"true\"}}\nspec: {targetRefs: [" SVC_T
     "], action: DENY, rules: [{}]}\n",
     {0},
     1,
     NULL},
    /* ---- attachment */
    {"Gateway target covers every service",
     AP_T("g", "ns1", "{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}", "ALLOW",
          "[]"),
     {.svc = "other"},
     DENY_NONE},
    {"Gateway target of another waypoint",
     AP_T("g", "ns1", "{kind: Gateway, group: gateway.networking.k8s.io, name: wp2}", "ALLOW",
          "[]"),
     {0},
     1,
     NULL},
    {"Service target: other service unaffected", AP("a", "ALLOW", "[]"), {.svc = "other"}, 1, NULL},
    {"no service: only gateway policies", AP("a", "ALLOW", "[]"), {.svc = "-"}, 1, NULL},
    {"Service target in another namespace", AP_T("a", "ns2", SVC_T, "ALLOW", "[]"), {0}, 1, NULL},
    {"GatewayClass from the root namespace",
     AP_T("m", "istio-system",
          "{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}", "DENY",
          "[{to: [{operation: {paths: [/api/*]}}]}]"),
     {0},
     0,
     "m"},
    {"GatewayClass outside the root namespace",
     AP_T("m", "ns1",
          "{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}", "DENY",
          "[{}]"),
     {0},
     1,
     NULL},
    {"selector policies never apply",
     "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: s, "
     "namespace: ns1}\nspec: {selector: {matchLabels: {app: svc}}, action: DENY, rules: [{}]}\n"
     "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: nsw, "
     "namespace: ns1}\nspec: {action: DENY, rules: [{}]}\n",
     {0},
     1,
     NULL},
};

struct built {
    struct zt_http_head head;
    struct zt_authz_l7_request rq;
    json_t *claims;
    const char *aud[1];
};

static void mkreq(const struct rq *r, struct built *b)
{
    const char *method = r->method ? r->method : "GET", *path = r->path ? r->path : "/api/v1?x=1",
               *host = r->host ? r->host : "svc.ns1.svc.cluster.local";
    memset(b, 0, sizeof(*b));
    zt_http_head_init(&b->head, false);
    zt_http_head_set_part(&b->head, &b->head.method, method, strlen(method));
    zt_http_head_set_part(&b->head, &b->head.path, path, strlen(path));
    zt_http_head_set_part(&b->head, &b->head.authority, host, strlen(host));
    if (r->hdr) {
        zt_http_head_add(&b->head, r->hdr, strlen(r->hdr), r->hdr_val, strlen(r->hdr_val));
        if (r->hdr_val2)
            zt_http_head_add(&b->head, r->hdr, strlen(r->hdr), r->hdr_val2, strlen(r->hdr_val2));
    }
    if (r->xff)
        zt_http_head_add(&b->head, "x-forwarded-for", 15, r->xff, strlen(r->xff));
    b->rq.head = r->tcp ? NULL : &b->head;
    b->rq.is_tcp = r->tcp;
    b->rq.path_is_normalized = r->pre;
    b->rq.source_principal = !r->principal ? "spiffe://cluster.local/ns/client-ns/sa/client"
                             : strcmp(r->principal, "-") ? r->principal
                                                         : NULL;
    zt_ip_parse(r->src_ip ? r->src_ip : "10.0.0.1", &b->rq.source_ip);
    if (!r->tcp)
        zt_authz_l7_remote_ip(&b->head, &b->rq.source_ip, &b->rq.remote_ip);
    zt_ip_parse(r->dst_ip ? r->dst_ip : "10.1.0.5", &b->rq.destination_ip);
    b->rq.destination_port = r->port ? r->port : 8080;
    b->rq.sni = r->sni;
    b->rq.request_principal = r->req_principal;
    if (r->aud) {
        b->aud[0] = r->aud;
        b->rq.audiences = b->aud;
        b->rq.n_audiences = 1;
    }
    b->rq.presenter = r->presenter;
    if (r->claims)
        b->claims = json_loads(r->claims, 0, NULL);
    b->rq.claims = b->claims;
    b->rq.gateway_ns = "ns1";
    b->rq.gateway_name = "waypoint";
    b->rq.service_ns = "ns1";
    b->rq.service_name = !r->svc ? "svc" : strcmp(r->svc, "-") ? r->svc : NULL;
    if (!b->rq.service_name)
        b->rq.service_ns = NULL;
}

static void freereq(struct built *b)
{
    zt_http_head_cleanup(&b->head);
    json_decref(b->claims);
}

static struct zt_authz_l7_set *load(const char *yaml, struct zt_route_errors *errs)
{
    struct zt_authz_l7_set *s = zt_authz_l7_set_new(NULL);
    zt_config_authz_load_string(s, "t.yaml", yaml, strlen(yaml), errs);
    zt_authz_l7_set_seal(s);
    return s;
}

static void test_table(void)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof(ROWS) / sizeof(ROWS[0]); i++) {
        const struct row *row = &ROWS[i];
        struct zt_route_errors errs = {0};
        struct zt_authz_l7_set *s = load(row->yaml, &errs);
        struct zt_authz_l7_result res;
        struct built b;
        int rc;
        mkreq(&row->rq, &b);
        rc = zt_authz_l7_check(s, &b.rq, &res);
        if (errs.n_errors || (rc == 0) != res.allowed || res.allowed != row->allowed ||
            (row->policy ? !res.policy || strcmp(res.policy->name, row->policy)
                         : res.policy != NULL)) {
            fprintf(stderr, "  row \"%s\": allowed %d (want %d), policy %s (want %s)\n", row->what,
                    res.allowed, row->allowed, res.policy ? res.policy->name : "-",
                    row->policy ? row->policy : "-");
            for (size_t j = 0; j < errs.n; j++)
                fprintf(stderr, "    %s\n", errs.v[j].msg);
            bad++;
        }
        freereq(&b);
        zt_route_errors_cleanup(&errs);
        zt_authz_l7_set_unref(s);
    }
    CHECK_EQ_INT(bad, 0);
}

static void check_one(const char *yaml, const struct rq *r, struct zt_authz_l7_result *res)
{
    struct zt_route_errors errs = {0};
    struct zt_authz_l7_set *s = load(yaml, &errs);
    struct built b;
    mkreq(r, &b);
    zt_authz_l7_check(s, &b.rq, res);
    freereq(&b);
    zt_route_errors_cleanup(&errs);
    /* res's policy pointers die with s: tests read only the flags and
     * copy names before this point in test_dry_run. */
    zt_authz_l7_set_unref(s);
}

static void test_dry_run(void)
{
    static const char deny[] =
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, "
        "namespace: ns1, annotations: {istio.io/dry-run: \"true\"}}\nspec: {targetRefs: [" SVC_T
        "], action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}\n";
    static const char allow[] =
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, "
        "namespace: ns1, annotations: {istio.io/dry-run: \"True\"}}\nspec: {targetRefs: [" SVC_T
        "], rules: [{to: [{operation: {methods: [POST]}}]}]}\n";
    struct zt_route_errors errs = {0};
    struct zt_authz_l7_set *s = load(deny, &errs);
    struct zt_authz_l7_result res;
    struct built b;
    struct rq r = {0};
    mkreq(&r, &b);
    CHECK_EQ_INT(zt_authz_l7_check(s, &b.rq, &res), 0);
    CHECK(res.allowed && res.has_dry_run && !res.dry_run_allowed);
    CHECK(res.dry_run_policy && !strcmp(res.dry_run_policy->name, "d"));
    CHECK_EQ_INT(res.dry_run_rule, 0);
    zt_authz_l7_set_unref(s);
    freereq(&b);

    check_one(allow, &r, &res);
    CHECK(res.allowed && res.has_dry_run && !res.dry_run_allowed && !res.has_allow);
    r.method = "POST";
    check_one(allow, &r, &res);
    CHECK(res.allowed && res.has_dry_run && res.dry_run_allowed);
    check_one("", &r, &res);
    CHECK(res.allowed && !res.has_dry_run);
    zt_route_errors_cleanup(&errs);
}

static void test_audit_and_details(void)
{
    struct zt_route_errors errs = {0};
    struct zt_authz_l7_set *s =
        load(AP("au", "AUDIT", "[{}]") AP("x", "ALLOW", "[{to: [{operation: {methods: [POST]}}]}]")
                 AP("d", "DENY", "[{to: [{operation: {paths: [/nope]}}]}, {}]"),
             &errs);
    struct zt_authz_l7_result res;
    struct built b;
    struct rq r = {0};
    char buf[200];
    mkreq(&r, &b);
    CHECK_EQ_INT(zt_authz_l7_check(s, &b.rq, &res), ZT_E_DENIED);
    CHECK(res.audit && !strcmp(res.audit->name, "au"));
    CHECK_EQ_STR(zt_authz_l7_details(&res, buf, sizeof(buf)),
                 "rbac_access_denied_matched_policy[ns[ns1]-policy[d]-rule[1]]");
    zt_authz_l7_set_unref(s);
    freereq(&b);
    s = load(AP("x", "ALLOW", "[{to: [{operation: {methods: [POST]}}]}]"), &errs);
    mkreq(&r, &b);
    CHECK_EQ_INT(zt_authz_l7_check(s, &b.rq, &res), ZT_E_DENIED);
    CHECK(res.has_allow && !res.policy && !res.audit);
    CHECK_EQ_STR(zt_authz_l7_details(&res, buf, sizeof(buf)),
                 "rbac_access_denied_matched_policy[none]");
    CHECK_EQ_INT(zt_authz_l7_check(NULL, &b.rq, &res), 0);
    zt_authz_l7_set_unref(s);
    freereq(&b);
    zt_route_errors_cleanup(&errs);
}

static void test_path_normalize(void)
{
    static const char *const cases[][2] = {
        {"/", "/"},           {"/a/b", "/a/b"},       {"/a/b?q=/../x", "/a/b"},
        {"/a/./b", "/a/b"},   {"/a/../b", "/b"},      {"/../../b", "/b"},
        {"/a/..", "/"},       {"/a/.", "/a/"},        {"/a/b/", "/a/b/"},
        {"/a//b", "/a//b"},   {"/a/%2e%2E/b", "/b"},  {"/%7euser/%41", "/~user/A"},
        {"/a%2fb", "/a%2Fb"}, {"/a%20b", "/a%20b"},   {"/a..b/..c", "/a..b/..c"},
        {"/a/...", "/a/..."}, {"/bad%zz", "/bad%zz"}, {"/trail%2", "/trail%2"},
        {"*", "*"},           {"/x#frag", "/x"},      {"/%4%41", "/%4A"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];
        size_t n = zt_authz_l7_path_normalize(cases[i][0], strlen(cases[i][0]), out);
        CHECK_EQ_STR(out, cases[i][1]);
        CHECK_EQ_INT(n, strlen(cases[i][1]));
    }
}

static void test_remote_ip(void)
{
    struct zt_http_head h;
    struct zt_ip src, out;
    char buf[ZT_IP_STRLEN];
    zt_ip_parse("10.0.0.1", &src);
    zt_http_head_init(&h, false);
    zt_authz_l7_remote_ip(&h, &src, &out);
    CHECK(zt_ip_eq(&out, &src));
    zt_http_head_add(&h, "x-forwarded-for", 15, "1.1.1.1", 7);
    zt_http_head_add(&h, "x-forwarded-for", 15, "2.2.2.2 , 2001:db8::1 ", 22);
    zt_authz_l7_remote_ip(&h, &src, &out);
    CHECK_EQ_STR(zt_ip_format(&out, buf, sizeof(buf)), "2001:db8::1");
    zt_http_head_set(&h, "x-forwarded-for", "garbage");
    zt_authz_l7_remote_ip(&h, &src, &out);
    CHECK(zt_ip_eq(&out, &src));
    zt_http_head_cleanup(&h);
}

/* A later policy with the same ns/name replaces the earlier one; policies
 * come out in ns/name order. */
static void test_set_order(void)
{
    struct zt_authz_l7_set *s = zt_authz_l7_set_new("istio-system");
    struct zt_route_errors errs = {0};
    const char *y = AP("b", "DENY", "[{}]") AP("a", "ALLOW", "[{}]") AP("b", "ALLOW", "[{}]");
    struct zt_authz_l7_result res;
    struct built b;
    struct rq r = {0};
    zt_config_authz_load_string(s, "t.yaml", y, strlen(y), &errs);
    zt_authz_l7_set_seal(s);
    CHECK_EQ_INT(zt_authz_l7_set_count(s), 2);
    CHECK_EQ_STR(zt_authz_l7_set_at(s, 0)->name, "a");
    CHECK_EQ_INT(zt_authz_l7_set_at(s, 1)->action, ZT_AUTHZ_L7_ALLOW);
    CHECK(zt_authz_l7_set_at(s, 2) == NULL);
    mkreq(&r, &b);
    CHECK_EQ_INT(zt_authz_l7_check(s, &b.rq, &res), 0);
    freereq(&b);
    zt_authz_l7_set_unref(zt_authz_l7_set_ref(s));
    zt_authz_l7_set_unref(s);
    zt_route_errors_cleanup(&errs);
}

/* 1000 policies on other services and 10 on this one: the answer is the
 * same as with only the 10 (the index visits only what applies). */
static void test_many(void)
{
    size_t cap = 1 << 20, n = 0;
    char *y = malloc(cap);
    struct zt_route_errors errs = {0};
    struct zt_authz_l7_set *s;
    struct zt_authz_l7_result res;
    struct built b;
    struct rq r = {0};
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(y + n, cap - n,
                              "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                              "metadata: {name: p%d, namespace: ns1}\nspec: {targetRefs: "
                              "[{kind: Service, name: s%d}], action: DENY, rules: [{}]}\n",
                              i, i);
    for (int i = 0; i < 10; i++)
        n += (size_t)snprintf(y + n, cap - n,
                              "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                              "metadata: {name: q%d, namespace: ns1}\nspec: {targetRefs: [" SVC_T
                              "], rules: [{to: [{operation: {paths: [/p%d]}}]}]}\n",
                              i, i);
    s = zt_authz_l7_set_new(NULL);
    CHECK_EQ_INT(zt_config_authz_load_string(s, "big.yaml", y, n, &errs), 0);
    zt_authz_l7_set_seal(s);
    CHECK_EQ_INT(errs.n, 0);
    CHECK_EQ_INT(zt_authz_l7_set_count(s), 1010);
    r.path = "/p7";
    mkreq(&r, &b);
    CHECK_EQ_INT(zt_authz_l7_check(s, &b.rq, &res), 0);
    CHECK_EQ_STR(res.policy->name, "q7");
    freereq(&b);
    r.path = "/p70";
    mkreq(&r, &b);
    CHECK_EQ_INT(zt_authz_l7_check(s, &b.rq, &res), ZT_E_DENIED);
    CHECK(res.policy == NULL);
    freereq(&b);
    zt_authz_l7_set_unref(s);
    zt_route_errors_cleanup(&errs);
    free(y);
}

int main(void)
{
    RUN(test_table);
    RUN(test_dry_run);
    RUN(test_audit_and_details);
    RUN(test_path_normalize);
    RUN(test_remote_ip);
    RUN(test_set_order);
    RUN(test_many);
    return TEST_REPORT();
}
