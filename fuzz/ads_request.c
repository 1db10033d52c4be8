/* Fuzzes the control plane's handling of a DeltaDiscoveryRequest (what
 * src/control/ads.c does with a request from a proxy): protobuf-c unpack,
 * then the subscription's known map seeded from initial_resource_versions
 * and the delta computed against a catalog (xds/catalog.h). The catalog is
 * built once from a fixed snapshot: the local config of
 * tests/unit/config/testdata/good.yaml (2 workloads, 1 service, 2 policies).
 *
 * Invariants, for a request of a served type:
 *   - zt_xds_known_set per entry (the server's path) and zt_xds_known_seed
 *     of all entries (all or nothing) agree: both succeed with the same
 *     map, or set fails somewhere and seed fails leaving the map empty;
 *   - the delta sends exactly the catalog entries whose known version
 *     differs or is absent, removes exactly the known names the catalog
 *     lacks, both strictly in name order;
 *   - after zt_xds_known_apply the next delta is empty and the known map
 *     equals the catalog;
 *   - the other type's delta sends everything and removes nothing.
 * For any other type_url, seeding is refused with ZT_E_PROTO. */
#include "base/err.h"
#include "base/log.h"
#include "config/local.h"
#include "proto/discovery.pb-c.h"
#include "xds/catalog.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* tests/unit/config/testdata/good.yaml without its comment. */
static const char good_yaml[] =
    "workloads:\n"
    "- uid: c1//v1/Pod/default/app\n"
    "  name: app\n"
    "  namespace: default\n"
    "  serviceAccount: app\n"
    "  trustDomain: example.org\n"
    "  workloadIps: [\"10.1.0.5\", \"fd00::5\"]\n"
    "  protocol: HBONE\n"
    "  networkMode: Standard\n"
    "  network: net1\n"
    "  node: node-a\n"
    "  hostname: app.example\n"
    "  workloadName: app\n"
    "  workloadType: deployment\n"
    "  canonicalName: app\n"
    "  canonicalRevision: v1\n"
    "  nativeTunnel: false\n"
    "  applicationTunnel: {protocol: PROXY, port: 15088}\n"
    "  waypoint: {destination: {namespace: default, hostname: wp.default.svc.cluster.local}, "
    "hboneMtlsPort: 15008}\n"
    "  networkGateway: {destination: \"net1/10.9.0.1\", hboneMtlsPort: 15008}\n"
    "  authorizationPolicies: [default/only-foo]\n"
    "  status: Healthy\n"
    "  clusterId: c1\n"
    "  locality: {region: r1, zone: z1, subzone: s1}\n"
    "  capacity: 3\n"
    "  services: { \"default/app.default.svc.cluster.local\": { 80: 8080, 443: 8443 } }\n"
    "- uid: c1//v1/Pod/default/db\n"
    "  namespace: default\n"
    "  workloadIps: [\"::ffff:10.1.0.6\"]\n"
    "  status: Unhealthy\n"
    "services:\n"
    "- name: app\n"
    "  namespace: default\n"
    "  hostname: app.default.svc.cluster.local\n"
    "  vips: [\"net1/10.96.0.10\", \"/10.96.0.11\"]\n"
    "  cidrVips: [\"net1/10.200.0.0/16\"]\n"
    "  ports: { 80: 8080, 443: 0 }\n"
    "  subjectAltNames: [\"spiffe://example.org/ns/default/sa/app\"]\n"
    "  loadBalancer: {routingPreferences: [Network, Region, Zone], mode: Failover, healthPolicy: "
    "AllowAll}\n"
    "  ipFamilies: Dual\n"
    "  canonical: true\n"
    "  visibility: Namespace\n"
    "  weightedWaypoints: [{destination: {destination: \"net1/10.9.0.2\", hboneMtlsPort: 15008}, "
    "weight: 10}]\n"
    "policies:\n"
    "- name: only-foo\n"
    "  namespace: default\n"
    "  scope: WorkloadSelector\n"
    "  action: Allow\n"
    "  dryRun: false\n"
    "  rules:\n"
    "  - - - namespaces: [{Exact: foo}]\n"
    "        notNamespaces: [{Prefix: kube-}]\n"
    "        serviceAccounts: [{namespace: foo, serviceAccount: bar}]\n"
    "        notServiceAccounts: [{namespace: foo, serviceAccount: evil}]\n"
    "        principals: [{Suffix: /sa/bar}, Presence]\n"
    "        notPrincipals: [{Exact: cluster.local/ns/foo/sa/evil}]\n"
    "        sourceIps: [\"10.0.0.0/8\", \"fd00::/8\"]\n"
    "        notSourceIps: [\"10.66.0.0/16\"]\n"
    "        destinationIps: [\"10.1.0.5/32\"]\n"
    "        notDestinationIps: [\"10.1.0.6\"]\n"
    "        destinationPorts: [8080]\n"
    "        notDestinationPorts: [9090]\n"
    "    - []\n"
    "- name: deny-9090\n"
    "  namespace: default\n"
    "  scope: Namespace\n"
    "  action: Deny\n"
    "  rules: [[[ { destinationPorts: [9090] } ]]]\n";

static struct zt_xds_catalog *catalog;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct zt_state *s = NULL;
    char err[512];

    zt_log_set_level(ZT_LOG_ERROR);
    if (zt_config_local_load_string("good.yaml", good_yaml, sizeof(good_yaml) - 1, &s, err,
                                    sizeof(err)) != 0 ||
        zt_xds_catalog_build(s, &catalog, err, sizeof(err)) != 0 ||
        zt_xds_catalog_count(catalog, ZT_ADS_ADDRESS) != 3 ||
        zt_xds_catalog_count(catalog, ZT_ADS_AUTHORIZATION) != 2)
        abort();
    zt_state_unref(s);
    return 0;
}

/* Checks d (type t, against known k) entry by entry; see the header. */
static void check_delta(enum zt_ads_type t, const struct zt_xds_known *k,
                        const struct zt_xds_delta *d)
{
    size_t n = zt_xds_catalog_count(catalog, t), u = 0, known_in_cat = 0;

    if (d->type != t || d->cat != catalog)
        __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        const struct zt_xds_entry *e = zt_xds_catalog_at(catalog, t, i);
        const char *have = zt_xds_known_get(k, t, e->name);
        known_in_cat += have != NULL;
        if (have && strcmp(have, e->version) == 0)
            continue;
        /* Catalog order is name order, so updates must come in this order. */
        if (u >= d->n_updates || d->updates[u] != e)
            __builtin_trap();
        u++;
    }
    if (u != d->n_updates)
        __builtin_trap();
    for (size_t i = 0; i < d->n_removed; i++) {
        if (zt_xds_catalog_find(catalog, t, d->removed[i]) ||
            !zt_xds_known_get(k, t, d->removed[i]) ||
            (i > 0 && strcmp(d->removed[i - 1], d->removed[i]) >= 0))
            __builtin_trap();
    }
    if (known_in_cat + d->n_removed != zt_xds_known_count(k, t))
        __builtin_trap();
}

static void check_type(const Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *req,
                       enum zt_ads_type t)
{
    size_t n = req->n_initial_resource_versions;
    const char **names = calloc(n + 1, sizeof(*names));
    const char **versions = calloc(n + 1, sizeof(*versions));
    struct zt_xds_known *k = zt_xds_known_new(), *k2 = zt_xds_known_new();
    struct zt_xds_delta d, again;
    enum zt_ads_type other = t == ZT_ADS_ADDRESS ? ZT_ADS_AUTHORIZATION : ZT_ADS_ADDRESS;
    bool set_ok = true;
    int rc;

    if (!names || !versions)
        abort();
    for (size_t i = 0; i < n; i++) {
        const Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry
            *e = req->initial_resource_versions[i];
        names[i] = e->key;
        versions[i] = e->value;
        if (set_ok && e->key && zt_xds_known_set(k, t, e->key, e->value) < 0)
            set_ok = false;
    }
    rc = zt_xds_known_seed(k2, t, names, versions, n);
    if (!set_ok) {
        if (rc == 0 || zt_xds_known_count(k2, t) != 0)
            __builtin_trap();
        goto out; /* the server ends the stream */
    }
    if (rc != 0 || zt_xds_known_count(k, t) != zt_xds_known_count(k2, t))
        __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        const char *a = zt_xds_known_get(k, t, names[i]), *b = zt_xds_known_get(k2, t, names[i]);
        if (!a || !b || strcmp(a, b) != 0)
            __builtin_trap();
    }

    if (zt_xds_catalog_delta(catalog, t, k, &d) != 0)
        __builtin_trap();
    check_delta(t, k, &d);
    if (zt_xds_known_apply(k, t, catalog, &d) != 0)
        __builtin_trap();
    zt_xds_delta_cleanup(&d);
    if (zt_xds_catalog_delta(catalog, t, k, &again) != 0 || !zt_xds_delta_is_empty(&again) ||
        zt_xds_known_count(k, t) != zt_xds_catalog_count(catalog, t))
        __builtin_trap();
    zt_xds_delta_cleanup(&again);
    zt_xds_delta_cleanup(&again); /* documented as safe twice */

    if (zt_xds_catalog_delta(catalog, other, k2, &d) != 0 ||
        d.n_updates != zt_xds_catalog_count(catalog, other) || d.n_removed != 0)
        __builtin_trap();
    zt_xds_delta_cleanup(&d);
out:
    zt_xds_known_free(k);
    zt_xds_known_free(k2);
    free(names);
    free(versions);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *req =
        envoy__service__discovery__v3__delta_discovery_request__unpack(NULL, size, data);
    enum zt_ads_type t;

    if (!req)
        return 0;
    t = zt_ads_type_from_url(req->type_url);
    if (t == ZT_ADS_NTYPES) {
        struct zt_xds_known *k = zt_xds_known_new();
        const char *name = "x";
        if (zt_xds_known_seed(k, t, &name, NULL, 1) != ZT_E_PROTO ||
            zt_xds_known_set(k, t, name, NULL) != ZT_E_PROTO)
            __builtin_trap();
        zt_xds_known_free(k);
    } else {
        check_type(req, t);
    }
    envoy__service__discovery__v3__delta_discovery_request__free_unpacked(req, NULL);
    return 0;
}
