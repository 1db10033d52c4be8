/* Writes the generated part of the xDS seed corpora with the project's own
 * encoder (encode.h) and catalog, from a local config file:
 *   build-fuzz/xds_seeds tests/unit/config/testdata/good.yaml fuzz/corpus
 * (make -f fuzz/build.mk seeds). Writes, into the target folders under the
 * corpus directory:
 *   xds_address/gen-<kind>-<n>        every workload and service
 *   xds_authorization/gen-policy-<n>  every policy
 *   ads_request/gen-*                 DeltaDiscoveryRequests whose
 *       initial_resource_versions name catalog entries at their real
 *       version, at a stale one, and names the catalog lacks.
 * Not a fuzz target. */
#include "config/local.h"
#include "proto/discovery.pb-c.h"
#include "xds/catalog.h"
#include "xds/encode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest Request;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry Entry;

static const char *dir;

static void put(const char *sub, const char *name, const uint8_t *buf, size_t len)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
    f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void put_encoded(const char *sub, const char *kind, size_t i, int rc, uint8_t *buf,
                        size_t len)
{
    char name[64];
    if (rc != 0) {
        fprintf(stderr, "encoding %s %zu failed\n", kind, i);
        exit(1);
    }
    snprintf(name, sizeof(name), "gen-%s-%zu", kind, i);
    put(sub, name, buf, len);
    free(buf);
}

/* A request of type t whose initial versions are n (name, version) pairs. */
static void put_request(const char *name, enum zt_ads_type t, const char *const *kv, size_t n)
{
    Request req = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    Entry entries[8], *ptrs[8];
    uint8_t buf[4096];
    size_t len;

    if (n > 8)
        abort();
    req.type_url = (char *)zt_ads_type_url(t);
    for (size_t i = 0; i < n; i++) {
        Entry e =
            ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INITIAL_RESOURCE_VERSIONS_ENTRY__INIT;
        e.key = (char *)kv[2 * i];
        e.value = (char *)kv[2 * i + 1];
        entries[i] = e;
        ptrs[i] = &entries[i];
    }
    req.n_initial_resource_versions = n;
    req.initial_resource_versions = ptrs;
    len = envoy__service__discovery__v3__delta_discovery_request__get_packed_size(&req);
    if (len > sizeof(buf))
        abort();
    envoy__service__discovery__v3__delta_discovery_request__pack(&req, buf);
    put("ads_request", name, buf, len);
}

int main(int argc, char **argv)
{
    struct zt_state *s = NULL;
    struct zt_xds_catalog *cat = NULL;
    char err[512], *text;
    uint8_t *buf;
    size_t len, n;
    FILE *f;

    if (argc != 3) {
        fprintf(stderr, "usage: %s CONFIG.yaml CORPUS_DIR\n", argv[0]);
        return 2;
    }
    dir = argv[2];
    f = fopen(argv[1], "rb");
    text = malloc(1 << 20);
    if (!f || !text || (n = fread(text, 1, 1 << 20, f)) == 0) {
        perror(argv[1]);
        return 1;
    }
    fclose(f);
    if (zt_config_local_load_string(argv[1], text, n, &s, err, sizeof(err)) != 0 ||
        zt_xds_catalog_build(s, &cat, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    free(text);

    for (size_t i = 0; i < zt_state_workload_count(s); i++) {
        int rc = zt_xds_encode_workload(zt_state_workload_at(s, i), &buf, &len);
        put_encoded("xds_address", "workload", i, rc, buf, len);
    }
    for (size_t i = 0; i < zt_state_service_count(s); i++) {
        int rc = zt_xds_encode_service(zt_state_service_at(s, i), &buf, &len);
        put_encoded("xds_address", "service", i, rc, buf, len);
    }
    for (size_t i = 0; i < zt_state_policy_count(s); i++) {
        int rc = zt_xds_encode_policy(zt_state_policy_at(s, i), &buf, &len);
        put_encoded("xds_authorization", "policy", i, rc, buf, len);
    }

    /* Address: first entry current, second stale, plus an unknown name. */
    const struct zt_xds_entry *a0 = zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 0);
    const struct zt_xds_entry *a1 = zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 1);
    const struct zt_xds_entry *p0 = zt_xds_catalog_at(cat, ZT_ADS_AUTHORIZATION, 0);
    const struct zt_xds_entry *p1 = zt_xds_catalog_at(cat, ZT_ADS_AUTHORIZATION, 1);
    if (!a0 || !a1 || !p0 || !p1)
        abort();
    const char *addr[] = {
        a0->name,          a0->version, a1->name, "0000000000000000", "c1//v1/Pod/default/gone",
        "1111111111111111"};
    put_request("gen-address-mixed", ZT_ADS_ADDRESS, addr, 3);
    const char *pol[] = {p0->name, p0->version, p1->name, p1->version};
    put_request("gen-authorization-current", ZT_ADS_AUTHORIZATION, pol, 2);
    put_request("gen-authorization-empty", ZT_ADS_AUTHORIZATION, NULL, 0);
    zt_xds_catalog_unref(cat);
    zt_state_unref(s);
    return 0;
}
