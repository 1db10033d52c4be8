/* Kubernetes objects in config files (config/k8s.h): Gateways of class
 * istio-waypoint, Namespace labels and the labels of our own services and
 * workloads, turned into the waypoint fields the node proxies read. Files
 * are loaded whole (zt_config_local_load_string) or as a directory
 * (config/dir.h) for the reload cases. */
#include "test.h"

#include "base/err.h"
#include "config/dir.h"
#include "config/local.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define H ".default.svc.cluster.local"

/* A waypoint Gateway as `kubectl get gateway -o yaml` prints it (status,
 * managedFields and all), named name in namespace ns. */
#define GATEWAY(name, ns, extra_labels)                                                            \
    "apiVersion: gateway.networking.k8s.io/v1\n"                                                   \
    "kind: Gateway\n"                                                                              \
    "metadata:\n"                                                                                  \
    "  name: " name "\n"                                                                           \
    "  namespace: " ns "\n"                                                                        \
    "  creationTimestamp: \"2026-11-30T10:00:00Z\"\n"                                              \
    "  generation: 1\n"                                                                            \
    "  labels:\n"                                                                                  \
    "    topology.istio.io/network: \"\"\n" extra_labels "  managedFields:\n"                      \
    "  - apiVersion: gateway.networking.k8s.io/v1\n"                                               \
    "    fieldsType: FieldsV1\n"                                                                   \
    "    manager: istioctl\n"                                                                      \
    "spec:\n"                                                                                      \
    "  gatewayClassName: istio-waypoint\n"                                                         \
    "  listeners:\n"                                                                               \
    "  - name: mesh\n"                                                                             \
    "    port: 15008\n"                                                                            \
    "    protocol: HBONE\n"                                                                        \
    "status:\n"                                                                                    \
    "  conditions:\n"                                                                              \
    "  - type: Programmed\n"                                                                       \
    "    status: \"True\"\n"

#define NAMESPACE(name, labels)                                                                    \
    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " name "\n  labels:\n" labels

/* Our schema: the waypoint's service and workload (its endpoint). */
#define WAYPOINT_OBJECTS(name)                                                                     \
    "services:\n"                                                                                  \
    "- {name: " name ", namespace: default, hostname: " name H ", ports: {15008: 15008}}\n"        \
    "workloads:\n"                                                                                 \
    "- {uid: " name "-pod, name: " name ", namespace: default, serviceAccount: " name ",\n"        \
    "   workloadIps: [\"10.0.9.1\"], protocol: HBONE, services: {\"default/" name H                \
    "\": {15008: 15008}}}\n"

static int load(const char *yaml, struct zt_state **s, char *err, size_t errlen)
{
    int rc = zt_config_local_load_string("k.yaml", yaml, strlen(yaml), s, err, errlen);
    if (rc)
        fprintf(stderr, "  err: %s\n", err);
    return rc;
}

static const struct zt_gateway *svc_wp(const struct zt_state *s, const char *key)
{
    const struct zt_service *svc = zt_state_service_by_key(s, key);
    return svc ? &svc->waypoint : NULL;
}

static const struct zt_gateway *wl_wp(const struct zt_state *s, const char *uid)
{
    const struct zt_workload *wl = zt_state_workload_by_uid(s, uid);
    return wl ? &wl->waypoint : NULL;
}

/* "ns/hostname:port" of a hostname waypoint, "ip:port" of an address one,
 * "none" for none. */
static const char *wp_str(const struct zt_gateway *g)
{
    static char buf[256];
    char ip[64];
    if (!g)
        return "(no object)";
    switch (g->kind) {
    case ZT_GATEWAY_HOSTNAME:
        snprintf(buf, sizeof(buf), "%s/%s:%u", g->namespace, g->hostname, g->hbone_mtls_port);
        return buf;
    case ZT_GATEWAY_ADDRESS:
        snprintf(buf, sizeof(buf), "%s/%s:%u", g->network, zt_ip_format(&g->ip, ip, sizeof(ip)),
                 g->hbone_mtls_port);
        return buf;
    default:
        return "none";
    }
}

static void test_pasted_gateway_and_namespace(void)
{
    const char *yaml = NAMESPACE("default", "    istio.io/use-waypoint: wp\n") "---\n" GATEWAY(
        "wp", "default",
        "") "---\n" WAYPOINT_OBJECTS("wp") "---\n"
                                           "services:\n"
                                           "- {name: app, namespace: default, hostname: app" H
                                           ", vips: [\"/10.96.0.1\"], ports: {80: 8080}}\n"
                                           "- {name: other, namespace: other, hostname: "
                                           "other.other.svc.cluster.local}\n"
                                           "workloads:\n"
                                           "- {uid: app-pod, namespace: default, workloadIps: "
                                           "[\"10.0.0.1\"],\n"
                                           "   services: {\"default/app" H "\": {80: 8080}}}\n";
    struct zt_state *s = NULL;
    char err[512] = "";
    CHECK_EQ_INT(load(yaml, &s, err, sizeof(err)), 0);
    /* The service of the labelled namespace goes through the waypoint's
     * service, by hostname, on the HBONE port. */
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/app" H)), "default/wp" H ":15008");
    /* Not the waypoint's own service and workload, not another namespace,
     * and not the workload (a service waypoint, the default). */
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/wp" H)), "none");
    CHECK_EQ_STR(wp_str(wl_wp(s, "wp-pod")), "none");
    CHECK_EQ_STR(wp_str(svc_wp(s, "other/other.other.svc.cluster.local")), "none");
    CHECK_EQ_STR(wp_str(wl_wp(s, "app-pod")), "none");
    zt_state_unref(s);
}

/* Three waypoints: nsw for everything (the namespace's), svcw for
 * services, wlw for workloads. */
#define THREE_WAYPOINTS                                                                            \
    GATEWAY("nsw", "default", "    istio.io/waypoint-for: all\n")                                  \
    "---\n" GATEWAY("svcw", "default", "") "---\n" GATEWAY(                                        \
        "wlw", "default",                                                                          \
        "    istio.io/waypoint-for: workload\n") "---\n"                                           \
                                                 "services:\n"                                     \
                                                 "- {name: nsw, namespace: default, hostname: "    \
                                                 "nsw" H "}\n"                                     \
                                                 "- {name: svcw, namespace: default, hostname: "   \
                                                 "svcw" H "}\n"                                    \
                                                 "- {name: wlw, namespace: default, hostname: "    \
                                                 "wlw" H "}\n"                                     \
                                                 "---\n" NAMESPACE(                                \
                                                     "default",                                    \
                                                     "    istio.io/use-waypoint: nsw\n") "---\n"

static void test_precedence(void)
{
    const char *yaml = THREE_WAYPOINTS
        "services:\n"
        "- name: s1\n  namespace: default\n  hostname: s1" H "\n"
        "  labels: {istio.io/use-waypoint: svcw, app: s1}\n"
        "- {name: s2, namespace: default, hostname: s2" H "}\n"
        "- {name: s3, namespace: default, hostname: s3" H
        ", labels: {istio.io/use-waypoint: none}}\n"
        "- {name: s4, namespace: default, hostname: s4" H ",\n"
        "   waypoint: {destination: \"/10.0.7.7\", hboneMtlsPort: 15008}}\n"
        "workloads:\n"
        "- {uid: w1, namespace: default, labels: {istio.io/use-waypoint: wlw},\n"
        "   services: {\"default/s1" H "\": {80: 80}}}\n"
        "- {uid: w2, namespace: default, services: {\"default/s1" H "\": {80: 80}}}\n"
        "- {uid: w3, namespace: default, labels: {istio.io/use-waypoint: none}}\n";
    struct zt_state *s = NULL;
    char err[512] = "";
    CHECK_EQ_INT(load(yaml, &s, err, sizeof(err)), 0);
    /* Service label beats namespace label. */
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/s1" H)), "default/svcw" H ":15008");
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/s2" H)), "default/nsw" H ":15008");
    /* none opts out below a namespace label (s2 above is the control). */
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/s3" H)), "none");
    /* An explicit waypoint beats the namespace label. */
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/s4" H)), "/10.0.7.7:15008");
    /* Workload label beats everything for its pod IP; its service's label
     * does not reach it (w2, an endpoint of s1 too, gets the namespace's). */
    CHECK_EQ_STR(wp_str(wl_wp(s, "w1")), "default/wlw" H ":15008");
    CHECK_EQ_STR(wp_str(wl_wp(s, "w2")), "default/nsw" H ":15008");
    CHECK_EQ_STR(wp_str(wl_wp(s, "w3")), "none");
    zt_state_unref(s);
}

static void test_waypoint_for(void)
{
    struct zt_state *s = NULL;
    char err[512] = "";
    /* Namespace names a workload-only waypoint: workloads get it, services
     * not; a none waypoint serves nobody. */
    const char *yaml =
        GATEWAY("wlw", "default", "    istio.io/waypoint-for: workload\n") "---\n" GATEWAY("nonew", "other", "    istio.io/waypoint-for: none\n") "---\n" NAMESPACE(
            "default",
            "    istio.io/use-waypoint: wlw\n") "---\n" NAMESPACE("other",
                                                                  "    istio.io/use-waypoint: "
                                                                  "nonew\n") "---\n"
                                                                             "services:\n"
                                                                             "- {name: wlw, "
                                                                             "namespace: default, "
                                                                             "hostname: wlw" H "}\n"
                                                                             "- {name: nonew, "
                                                                             "namespace: other, "
                                                                             "hostname: "
                                                                             "nonew.other.svc."
                                                                             "cluster.local}\n"
                                                                             "- {name: s, "
                                                                             "namespace: default, "
                                                                             "hostname: s" H "}\n"
                                                                             "- {name: o, "
                                                                             "namespace: other, "
                                                                             "hostname: "
                                                                             "o.other.svc.cluster."
                                                                             "local}\n"
                                                                             "workloads:\n"
                                                                             "- {uid: w, "
                                                                             "namespace: default}\n"
                                                                             "- {uid: wo, "
                                                                             "namespace: other}\n";
    CHECK_EQ_INT(load(yaml, &s, err, sizeof(err)), 0);
    CHECK_EQ_STR(wp_str(wl_wp(s, "w")), "default/wlw" H ":15008");
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/s" H)), "none");
    CHECK_EQ_STR(wp_str(wl_wp(s, "wo")), "none");
    CHECK_EQ_STR(wp_str(svc_wp(s, "other/o.other.svc.cluster.local")), "none");
    zt_state_unref(s);

    /* On the object itself, a waypoint that does not take its traffic is
     * an error. */
    yaml = GATEWAY("svcw", "default",
                   "") "---\n"
                       "services: [{name: svcw, namespace: default, hostname: svcw" H "}]\n"
                       "workloads:\n"
                       "- uid: w\n"
                       "  namespace: default\n"
                       "  labels:\n"
                       "    istio.io/use-waypoint: svcw\n";
    s = (struct zt_state *)1;
    CHECK_EQ_INT(zt_config_local_load_string("k.yaml", yaml, strlen(yaml), &s, err, sizeof(err)),
                 ZT_E_CONFIG);
    CHECK(s == NULL);
    CHECK_EQ_STR(err, "k.yaml:30: workload \"w\": istio.io/use-waypoint: Gateway default/svcw "
                      "(k.yaml:2) is for service traffic (istio.io/waypoint-for), not workload");
}

static void expect_error(const char *yaml, const char *want)
{
    struct zt_state *s = (struct zt_state *)1;
    char err[512] = "";
    int rc = zt_config_local_load_string("k.yaml", yaml, strlen(yaml), &s, err, sizeof(err));
    CHECK_EQ_INT(rc, ZT_E_CONFIG);
    CHECK(s == NULL);
    CHECK_EQ_STR(err, want);
}

static void test_unknown_waypoint(void)
{
    /* Positive control: the same file with the Gateway loads. */
    struct zt_state *s = NULL;
    char err[512] = "";
    const char *ok =
        GATEWAY("wp", "default", "") "---\n"
                                     "services:\n"
                                     "- {name: wp, namespace: default, hostname: wp" H "}\n"
                                     "- {name: a, namespace: default, hostname: a" H ",\n"
                                     "   labels: {istio.io/use-waypoint: wp}}\n";
    CHECK_EQ_INT(load(ok, &s, err, sizeof(err)), 0);
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/a" H)), "default/wp" H ":15008");
    zt_state_unref(s);

    expect_error("services:\n"
                 "- {name: a, namespace: default, hostname: a" H ",\n"
                 "   labels: {istio.io/use-waypoint: wp}}\n",
                 "k.yaml:3: service \"default/a" H "\": istio.io/use-waypoint: no Gateway "
                 "default/wp (of class istio-waypoint) in the configuration");
    expect_error("workloads:\n"
                 "- uid: w\n"
                 "  namespace: default\n"
                 "  labels:\n"
                 "    istio.io/use-waypoint: wp\n"
                 "    istio.io/use-waypoint-namespace: infra\n",
                 "k.yaml:5: workload \"w\": istio.io/use-waypoint: no Gateway infra/wp (of class "
                 "istio-waypoint) in the configuration");
    expect_error(NAMESPACE("ns1", "    istio.io/use-waypoint: wp\n"),
                 "k.yaml:6: Namespace ns1: istio.io/use-waypoint: no Gateway ns1/wp (of class "
                 "istio-waypoint) in the configuration");
    /* A label and an explicit waypoint on one object. */
    expect_error("services:\n"
                 "- name: a\n"
                 "  namespace: default\n"
                 "  hostname: a" H "\n"
                 "  waypoint: {destination: \"/10.0.0.9\", hboneMtlsPort: 15008}\n"
                 "  labels: {istio.io/use-waypoint: wp}\n",
                 "k.yaml:6: services[0].labels.istio.io/use-waypoint: set together with an "
                 "explicit waypoint: which one wins is ambiguous (keep one of the two)");
}

static void test_cross_namespace(void)
{
    struct zt_state *s = NULL;
    char err[512] = "";
    const char *gw_all =
        "apiVersion: gateway.networking.k8s.io/v1\n"
        "kind: Gateway\n"
        "metadata: {name: wp, namespace: infra}\n"
        "spec:\n"
        "  gatewayClassName: istio-waypoint\n"
        "  addresses: [{type: IPAddress, value: 10.0.5.5}]\n"
        "  listeners:\n"
        "  - name: mesh\n"
        "    port: 15008\n"
        "    protocol: HBONE\n"
        "    allowedRoutes: {namespaces: {from: All}}\n"
        "---\n" NAMESPACE(
            "app",
            "    istio.io/use-waypoint: wp\n"
            "    istio.io/use-waypoint-namespace: infra\n") "---\n"
                                                            "services: [{name: a, namespace: app, "
                                                            "hostname: a.app.svc.cluster.local}]\n";
    CHECK_EQ_INT(load(gw_all, &s, err, sizeof(err)), 0);
    /* No service of that name: spec.addresses gives the address. */
    CHECK_EQ_STR(wp_str(svc_wp(s, "app/a.app.svc.cluster.local")), "/10.0.5.5:15008");
    zt_state_unref(s);

    expect_error(
        GATEWAY(
            "wp", "infra",
            "") "---\n"
                "services: [{name: wp, namespace: infra, hostname: wp.infra.svc.cluster.local}]\n"
                "---\n"
                "services:\n"
                "- {name: a, namespace: app, hostname: a.app.svc.cluster.local,\n"
                "   labels: {istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: infra}}\n",
        "k.yaml:29: service \"app/a.app.svc.cluster.local\": istio.io/use-waypoint: "
        "Gateway infra/wp (k.yaml:2) serves only its own namespace (its HBONE listener's "
        "allowedRoutes.namespaces.from is not All)");
}

static void test_address_from_status(void)
{
    struct zt_state *s = NULL;
    char err[512] = "";
    /* No service named after the Gateway: status.addresses (a Hostname
     * before an IPAddress) gives the address, and what it names is the
     * waypoint's own (no waypoint from the namespace label for it). */
    const char *yaml =
        "apiVersion: gateway.networking.k8s.io/v1\n"
        "kind: Gateway\n"
        "metadata: {name: wp, namespace: default}\n"
        "spec:\n"
        "  gatewayClassName: istio-waypoint\n"
        "  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n"
        "status:\n"
        "  addresses:\n"
        "  - {type: IPAddress, value: 10.96.9.9}\n"
        "  - {type: Hostname, value: waypoint-svc" H "}\n"
        "---\n" NAMESPACE(
            "default",
            "    istio.io/use-waypoint: wp\n") "---\n"
                                               "services:\n"
                                               "- {name: waypoint-svc, namespace: default, "
                                               "hostname: waypoint-svc" H "}\n"
                                               "- {name: a, namespace: default, hostname: a" H
                                               "}\n";
    CHECK_EQ_INT(load(yaml, &s, err, sizeof(err)), 0);
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/a" H)), "default/waypoint-svc" H ":15008");
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/waypoint-svc" H)), "none");
    zt_state_unref(s);
}

static void test_bad_gateways(void)
{
#define GW_HEAD                                                                                    \
    "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: "    \
    "default}\n"
    expect_error(GW_HEAD "spec:\n  gatewayClassName: istio-waypoint\n"
                         "  listeners: [{name: http, port: 80, protocol: HTTP}]\n",
                 "k.yaml:6: Gateway default/wp: spec.listeners: no listener with port 15008 and "
                 "protocol HBONE");
    expect_error(GW_HEAD "spec:\n  gatewayClassName: istio-waypoint\n",
                 "k.yaml:5: Gateway default/wp: spec.listeners: expected a list with the HBONE "
                 "listener (port 15008, protocol HBONE)");
    expect_error("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
                 "metadata:\n  name: wp\n  labels: {istio.io/waypoint-for: pods}\n"
                 "spec:\n  gatewayClassName: istio-waypoint\n"
                 "  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n",
                 "k.yaml:5: Gateway default/wp: metadata.labels.istio.io/waypoint-for: bad value "
                 "\"pods\": expected service, workload, all or none");
    expect_error(GW_HEAD "spec:\n  gatewayClassName: istio-waypoint\n"
                         "  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n",
                 "k.yaml:2: Gateway default/wp: no address: declare its service (a service named "
                 "wp in namespace default, with the waypoint's workloads as endpoints) or give "
                 "spec.addresses");
    expect_error(GW_HEAD "spec:\n  gatewayClassName: istio-waypoint\n"
                         "  addresses: [{value: 10.0.0.300}]\n"
                         "  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n",
                 "k.yaml:6: Gateway default/wp: spec.addresses[0].value: bad IP address "
                 "\"10.0.0.300\"");
    expect_error(GW_HEAD "spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n"
                         "  - {name: mesh, port: 15008, protocol: HBONE,\n"
                         "     allowedRoutes: {namespaces: {from: Selector}}}\n",
                 "k.yaml:8: Gateway default/wp: spec.listeners[0].allowedRoutes.namespaces.from: "
                 "expected Same or All (Selector is not supported here)");
    expect_error("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {namespace: "
                 "x}\nspec: {}\n",
                 "k.yaml:3: Gateway: missing metadata.name");
    expect_error(GW_HEAD "spec:\n  gatewayClassName: istio-waypoint\n"
                         "  addresses: [{value: 10.0.0.3}]\n"
                         "  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n"
                         "---\n" GW_HEAD "spec:\n  gatewayClassName: istio-waypoint\n"
                         "  addresses: [{value: 10.0.0.4}]\n"
                         "  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n",
                 "k.yaml:10: Gateway default/wp: already declared at k.yaml:2");
#undef GW_HEAD
}

static void test_other_kinds(void)
{
    struct zt_state *s = NULL;
    char err[512] = "";
    /* Other kinds (and another API's Gateway) are skipped; a List's items
     * are read; a Gateway of another class is skipped (with a note, see
     * test_dir_reload); our schema may sit in any document. */
    const char *yaml = "apiVersion: gateway.networking.k8s.io/v1\n"
                       "kind: HTTPRoute\n"
                       "metadata: {name: r}\n"
                       "spec: {parentRefs: [{kind: Service, name: a}]}\n"
                       "---\n"
                       "apiVersion: networking.istio.io/v1\n"
                       "kind: Gateway\n"
                       "metadata: {name: ingress}\n"
                       "spec: {selector: {istio: ingressgateway}}\n"
                       "---\n"
                       "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n"
                       "---\n"
                       "apiVersion: gateway.networking.k8s.io/v1\n"
                       "kind: Gateway\n"
                       "metadata: {name: ingress, namespace: default}\n"
                       "spec:\n  gatewayClassName: istio\n  listeners: []\n"
                       "---\n"
                       "apiVersion: v1\n"
                       "kind: List\n"
                       "items:\n"
                       "- apiVersion: gateway.networking.k8s.io/v1\n"
                       "  kind: Gateway\n"
                       "  metadata: {name: wp, namespace: default}\n"
                       "  spec:\n"
                       "    gatewayClassName: istio-waypoint\n"
                       "    listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n"
                       "---\n"
                       "workloads: [{uid: w, namespace: default, labels: ~}]\n"
                       "---\n"
                       "services:\n"
                       "- {name: wp, namespace: default, hostname: wp" H "}\n"
                       "- {name: a, namespace: default, hostname: a" H ",\n"
                       "   labels: {istio.io/use-waypoint: wp}}\n";
    CHECK_EQ_INT(load(yaml, &s, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_state_workload_count(s), 1);
    CHECK_EQ_INT(zt_state_service_count(s), 2);
    CHECK_EQ_STR(wp_str(svc_wp(s, "default/a" H)), "default/wp" H ":15008");
    zt_state_unref(s);
    /* A document that is neither: our schema's unknown-key error. */
    expect_error("workloads: []\n---\ncolour: blue\n", "k.yaml:3: colour: unknown key");
    expect_error("metadata: {name: x}\n", "k.yaml:1: kind: expected the object's kind, a string");
    /* A List that contains itself (an alias) is refused, not followed. */
    expect_error(
        "apiVersion: v1\nkind: List\nitems:\n- &l {apiVersion: v1, kind: List, items: [*l]}\n",
        "k.yaml:4: items: a List inside a List");
}

/* ---- a directory, reloaded ---- */

static char dirbuf[128];

static const char *mk_dir(void)
{
    static unsigned seq;
    snprintf(dirbuf, sizeof(dirbuf), "/tmp/zt_test_k8s_%ld_%u", (long)getpid(), seq++);
    if (mkdir(dirbuf, 0700) != 0)
        abort();
    return dirbuf;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Writes dir/name anew (a new inode, as an editor's rename does). */
static void put(const char *dir, const char *name, const char *text)
{
    char path[512], tmp[520];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
    f = fopen(tmp, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
    if (rename(tmp, path) != 0)
        abort();
}

static void test_dir_reload(void)
{
    const char *d = mk_dir();
    struct zt_config_dir *cd = zt_config_dir_new(d);
    struct zt_state *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL;
    const struct zt_service *a1, *a2;
    char err[512] = "";

    put(d, "gw.yaml",
        GATEWAY("wp", "default", "") "---\n" WAYPOINT_OBJECTS(
            "wp") "---\n"
                  "apiVersion: gateway.networking.k8s.io/v1\n"
                  "kind: Gateway\n"
                  "metadata: {name: ingress, namespace: default}\n"
                  "spec: {gatewayClassName: istio, listeners: []}\n");
    put(d, "ns.yaml", NAMESPACE("default", "    istio.io/use-waypoint: wp\n"));
    put(d, "apps.yaml",
        "services:\n"
        "- {name: a, namespace: default, hostname: a" H "}\n"
        "- {name: b, namespace: default, hostname: b" H "}\n");
    put(d, "more.yaml", "workloads: [{uid: x, namespace: default}]\n");
    CHECK_EQ_INT(zt_config_dir_reload(cd, &s1, err, sizeof(err)), 0);
    CHECK_EQ_STR(wp_str(svc_wp(s1, "default/a" H)), "default/wp" H ":15008");
    CHECK_EQ_STR(wp_str(svc_wp(s1, "default/b" H)), "default/wp" H ":15008");
    char want[512];
    snprintf(want, sizeof(want),
             "%s/gw.yaml:32: Gateway default/ingress: skipped: gatewayClassName \"istio\" is not "
             "istio-waypoint\n",
             d);
    CHECK_EQ_STR(zt_config_dir_notes(cd), want);

    /* An unrelated file changes: the derived records are the same objects
     * (the catalog keeps their entries). */
    put(d, "more.yaml", "workloads: [{uid: y, namespace: default}]\n");
    CHECK_EQ_INT(zt_config_dir_reload(cd, &s2, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_config_dir_files_read(cd), 1);
    a1 = zt_state_service_by_key(s1, "default/a" H);
    a2 = zt_state_service_by_key(s2, "default/a" H);
    CHECK(a1 == a2);
    CHECK(zt_state_workload_by_uid(s2, "y") != NULL);

    /* The Namespace label goes (only ns.yaml is read): the services of
     * apps.yaml, unread, lose their waypoint. */
    put(d, "ns.yaml", NAMESPACE("default", "    team: a\n"));
    CHECK_EQ_INT(zt_config_dir_reload(cd, &s3, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_config_dir_files_read(cd), 1);
    CHECK_EQ_STR(wp_str(svc_wp(s3, "default/a" H)), "none");
    CHECK_EQ_STR(wp_str(svc_wp(s3, "default/b" H)), "none");

    /* A service label brings it back for that service only; a label naming
     * no Gateway is refused and the last good state stays. */
    put(d, "apps.yaml",
        "services:\n"
        "- {name: a, namespace: default, hostname: a" H ",\n"
        "   labels: {istio.io/use-waypoint: nothere}}\n");
    s4 = (struct zt_state *)1;
    CHECK_EQ_INT(zt_config_dir_reload(cd, &s4, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(s4 == NULL);
    snprintf(want, sizeof(want),
             "%s/apps.yaml:3: service \"default/a" H "\": istio.io/use-waypoint: no Gateway "
             "default/nothere (of class istio-waypoint) in the configuration",
             d);
    CHECK_EQ_STR(err, want);
    put(d, "apps.yaml",
        "services:\n"
        "- {name: a, namespace: default, hostname: a" H ",\n"
        "   labels: {istio.io/use-waypoint: wp}}\n"
        "- {name: b, namespace: default, hostname: b" H "}\n");
    CHECK_EQ_INT(zt_config_dir_reload(cd, &s4, err, sizeof(err)), 0);
    CHECK_EQ_STR(wp_str(svc_wp(s4, "default/a" H)), "default/wp" H ":15008");
    CHECK_EQ_STR(wp_str(svc_wp(s4, "default/b" H)), "none");

    zt_state_unref(s1);
    zt_state_unref(s2);
    zt_state_unref(s3);
    zt_state_unref(s4);
    zt_config_dir_free(cd);
    nftw(d, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    RUN(test_pasted_gateway_and_namespace);
    RUN(test_precedence);
    RUN(test_waypoint_for);
    RUN(test_unknown_waypoint);
    RUN(test_cross_namespace);
    RUN(test_address_from_status);
    RUN(test_bad_gateways);
    RUN(test_other_kinds);
    RUN(test_dir_reload);
    return TEST_REPORT();
}
