/* xds/catalog.h: catalog build, known maps and deltas.
 *
 * Snapshots come from tests/unit/config/testdata/good.yaml (read from the
 * repository root, as `make unit` runs) or are made with the builder. Every
 * entry's bytes are decoded with protobuf-c to check that they are the
 * Address / Authorization the name says. */
#include "test.h"

#include "base/err.h"
#include "config/local.h"
#include "proto/authorization.pb-c.h"
#include "proto/workload.pb-c.h"
#include "xds/catalog.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define GOOD_YAML "tests/unit/config/testdata/good.yaml"

/* ------------------------------------------------------------ helpers */

static struct zt_state *load_good(void)
{
    struct zt_state *s = NULL;
    char err[256] = "";
    if (zt_config_local_load(GOOD_YAML, &s, err, sizeof(err)))
        fprintf(stderr, "  load: %s\n", err);
    return s;
}

static struct zt_workload *mk_wl(const char *uid, const char *ip)
{
    struct zt_workload *wl = zt_workload_new();
    struct zt_ip *a = zt_state_array_push(&wl->addresses, &wl->n_addresses, sizeof(*a));
    wl->uid = zt_state_xstrdup(uid);
    wl->name = zt_state_xstrdup(uid);
    wl->namespace = zt_state_xstrdup("default");
    if (zt_ip_parse(ip, a) != 0)
        abort();
    return wl;
}

static struct zt_service *mk_svc(const char *ns, const char *host)
{
    struct zt_service *svc = zt_service_new();
    svc->name = zt_state_xstrdup("s");
    svc->namespace = zt_state_xstrdup(ns);
    svc->hostname = zt_state_xstrdup(host);
    return svc;
}

static struct zt_policy *mk_pol(const char *ns, const char *name)
{
    struct zt_policy *p = zt_policy_new();
    p->name = zt_state_xstrdup(name);
    p->namespace = zt_state_xstrdup(ns);
    p->action = ZT_POLICY_DENY;
    return p;
}

/* The base snapshot of the delta tests: w1 (address ip1), w2, s1, p1, p2
 * (p2 only if with_p2). */
static struct zt_state *mk_state(const char *ip1, bool with_p2)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s = NULL;
    char err[256];
    zt_state_builder_add_workload(b, mk_wl("w1", ip1));
    zt_state_builder_add_workload(b, mk_wl("w2", "10.0.0.2"));
    zt_state_builder_add_service(b, mk_svc("default", "s1.default.svc"));
    zt_state_builder_add_policy(b, mk_pol("default", "p1"));
    if (with_p2)
        zt_state_builder_add_policy(b, mk_pol("default", "p2"));
    if (zt_state_builder_finish(b, &s, err, sizeof(err)))
        fprintf(stderr, "  finish: %s\n", err);
    return s;
}

static struct zt_xds_catalog *build(const struct zt_state *s)
{
    struct zt_xds_catalog *cat = NULL;
    char err[256];
    size_t skipped = zt_xds_catalog_build(s, &cat, err, sizeof(err));
    if (skipped)
        fprintf(stderr, "  build: %zu left out: %s\n", skipped, err);
    return cat;
}

/* Seeds known with every entry of type t of cat, as a client that has
 * received all of it would list in initial_resource_versions. */
static int seed_all(struct zt_xds_known *k, const struct zt_xds_catalog *cat, enum zt_ads_type t)
{
    size_t n = zt_xds_catalog_count(cat, t);
    const char **names = calloc(n + 1, sizeof(char *));
    const char **versions = calloc(n + 1, sizeof(char *));
    int rc;
    for (size_t i = 0; i < n; i++) {
        names[i] = zt_xds_catalog_at(cat, t, i)->name;
        versions[i] = zt_xds_catalog_at(cat, t, i)->version;
    }
    rc = zt_xds_known_seed(k, t, names, versions, n);
    free(names);
    free(versions);
    return rc;
}

static bool is_hex_version(const char *v)
{
    if (strlen(v) != ZT_XDS_VERSION_LEN)
        return false;
    for (; *v; v++)
        if (!((*v >= '0' && *v <= '9') || (*v >= 'a' && *v <= 'f')))
            return false;
    return true;
}

/* Checks that e's bytes decode to an object named e->name. */
static bool entry_decodes(const struct zt_xds_entry *e)
{
    char name[2200];
    bool ok = false;

    if (e->type == ZT_ADS_ADDRESS) {
        Istio__Workload__Address *a = istio__workload__address__unpack(NULL, e->len, e->value);
        if (!a)
            return false;
        if (a->type_case == ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD)
            ok = strcmp(a->workload->uid, e->name) == 0;
        else if (a->type_case == ISTIO__WORKLOAD__ADDRESS__TYPE_SERVICE) {
            snprintf(name, sizeof(name), "%s/%s", a->service->namespace_, a->service->hostname);
            ok = strcmp(name, e->name) == 0;
        }
        istio__workload__address__free_unpacked(a, NULL);
    } else {
        Istio__Security__Authorization *p =
            istio__security__authorization__unpack(NULL, e->len, e->value);
        if (!p)
            return false;
        snprintf(name, sizeof(name), "%s/%s", p->namespace_, p->name);
        ok = strcmp(name, e->name) == 0;
        istio__security__authorization__free_unpacked(p, NULL);
    }
    return ok;
}

static bool version_is_sha256_prefix(const struct zt_xds_entry *e)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char want[ZT_XDS_VERSION_LEN + 1];
    if (!EVP_Digest(e->value, e->len, md, &mdlen, EVP_sha256(), NULL))
        return false;
    for (int i = 0; i < ZT_XDS_VERSION_LEN / 2; i++)
        snprintf(want + 2 * i, 3, "%02x", md[i]);
    return strcmp(want, e->version) == 0;
}

/* ------------------------------------------------------------ catalog */

static void test_build_good(void)
{
    struct zt_state *s = load_good();
    struct zt_xds_catalog *cat = NULL;
    char err[256] = "x";
    size_t skipped;

    CHECK(s != NULL);
    skipped = zt_xds_catalog_build(s, &cat, err, sizeof(err));
    zt_state_unref(s);
    CHECK_EQ_INT(skipped, 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(zt_xds_catalog_count(cat, ZT_ADS_ADDRESS), 3);
    CHECK_EQ_INT(zt_xds_catalog_count(cat, ZT_ADS_AUTHORIZATION), 2);
    CHECK_EQ_INT(zt_xds_catalog_count(cat, ZT_ADS_NTYPES), 0);
    CHECK_EQ_STR(zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 0)->name, "c1//v1/Pod/default/app");
    CHECK_EQ_STR(zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 1)->name, "c1//v1/Pod/default/db");
    CHECK_EQ_STR(zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 2)->name,
                 "default/app.default.svc.cluster.local");
    CHECK_EQ_STR(zt_xds_catalog_at(cat, ZT_ADS_AUTHORIZATION, 0)->name, "default/deny-9090");
    CHECK_EQ_STR(zt_xds_catalog_at(cat, ZT_ADS_AUTHORIZATION, 1)->name, "default/only-foo");
    CHECK(zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 3) == NULL);
    CHECK(zt_xds_catalog_at(cat, ZT_ADS_NTYPES, 0) == NULL);

    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        for (size_t i = 0; i < zt_xds_catalog_count(cat, t); i++) {
            const struct zt_xds_entry *e = zt_xds_catalog_at(cat, t, i);
            CHECK_EQ_INT(e->type, t);
            CHECK(e->value != NULL && e->len > 0);
            CHECK(is_hex_version(e->version));
            CHECK(version_is_sha256_prefix(e));
            CHECK(entry_decodes(e));
            CHECK(zt_xds_catalog_find(cat, t, e->name) == e);
            /* Wrong type: not found. */
            CHECK(zt_xds_catalog_find(cat, (enum zt_ads_type)(1 - t), e->name) == NULL);
        }
    }
    CHECK(zt_xds_catalog_find(cat, ZT_ADS_ADDRESS, "nope") == NULL);
    CHECK(zt_xds_catalog_find(cat, ZT_ADS_ADDRESS, "") == NULL);
    CHECK(zt_xds_catalog_find(cat, ZT_ADS_ADDRESS, NULL) == NULL);
    zt_xds_catalog_unref(cat);
}

static void test_empty_state(void)
{
    struct zt_state *s = zt_state_new_empty();
    struct zt_xds_catalog *cat = NULL;
    struct zt_xds_delta d;
    char err[16];

    CHECK_EQ_INT(zt_xds_catalog_build(s, &cat, err, sizeof(err)), 0);
    zt_state_unref(s);
    CHECK(cat != NULL);
    CHECK_EQ_INT(zt_xds_catalog_count(cat, ZT_ADS_ADDRESS), 0);
    CHECK(zt_xds_catalog_find(cat, ZT_ADS_ADDRESS, "x") == NULL);
    CHECK_EQ_INT(zt_xds_catalog_delta(cat, ZT_ADS_ADDRESS, NULL, &d), 0);
    CHECK(zt_xds_delta_is_empty(&d));
    zt_xds_delta_cleanup(&d);
    zt_xds_catalog_unref(cat);
}

/* Same state twice: same bytes and versions. One field changed: only that
 * object's version changes. */
static void test_versions(void)
{
    struct zt_state *s1 = load_good(), *s2 = load_good();
    struct zt_state *a = mk_state("10.0.0.1", true), *b = mk_state("10.0.0.9", true);
    struct zt_xds_catalog *c1 = build(s1), *c2 = build(s2), *ca = build(a), *cb = build(b);
    bool same = true;

    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        if (zt_xds_catalog_count(c1, t) != zt_xds_catalog_count(c2, t))
            same = false;
        for (size_t i = 0; same && i < zt_xds_catalog_count(c1, t); i++) {
            const struct zt_xds_entry *x = zt_xds_catalog_at(c1, t, i);
            const struct zt_xds_entry *y = zt_xds_catalog_at(c2, t, i);
            same = !strcmp(x->name, y->name) && !strcmp(x->version, y->version) &&
                   x->len == y->len && !memcmp(x->value, y->value, x->len);
        }
    }
    zt_state_unref(s1);
    zt_state_unref(s2);
    zt_state_unref(a);
    zt_state_unref(b);
    CHECK(same);

    CHECK(strcmp(zt_xds_catalog_find(ca, ZT_ADS_ADDRESS, "w1")->version,
                 zt_xds_catalog_find(cb, ZT_ADS_ADDRESS, "w1")->version) != 0);
    CHECK_EQ_STR(zt_xds_catalog_find(ca, ZT_ADS_ADDRESS, "w2")->version,
                 zt_xds_catalog_find(cb, ZT_ADS_ADDRESS, "w2")->version);
    CHECK_EQ_STR(zt_xds_catalog_find(ca, ZT_ADS_ADDRESS, "default/s1.default.svc")->version,
                 zt_xds_catalog_find(cb, ZT_ADS_ADDRESS, "default/s1.default.svc")->version);
    CHECK_EQ_STR(zt_xds_catalog_find(ca, ZT_ADS_AUTHORIZATION, "default/p1")->version,
                 zt_xds_catalog_find(cb, ZT_ADS_AUTHORIZATION, "default/p1")->version);
    /* p1 and p2 differ only by name, which is in the bytes. */
    CHECK(strcmp(zt_xds_catalog_find(ca, ZT_ADS_AUTHORIZATION, "default/p1")->version,
                 zt_xds_catalog_find(ca, ZT_ADS_AUTHORIZATION, "default/p2")->version) != 0);
    zt_xds_catalog_unref(c1);
    zt_xds_catalog_unref(c2);
    zt_xds_catalog_unref(ca);
    zt_xds_catalog_unref(cb);
}

/* An object the encoder rejects is left out and reported; the rest is
 * served. */
static void test_left_out(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s = NULL;
    struct zt_xds_catalog *cat = NULL;
    struct zt_policy *bad = mk_pol("default", "bad"), *bad2 = mk_pol("default", "z-also-bad");
    char err[256] = "";
    size_t skipped;

    /* Enum values outside the protocol's: the builder keeps them, the
     * encoder refuses them. */
    bad->scope = (enum zt_policy_scope)7;
    bad2->action = (enum zt_policy_action)9;
    zt_state_builder_add_workload(b, mk_wl("w1", "10.0.0.1"));
    zt_state_builder_add_policy(b, mk_pol("default", "good"));
    zt_state_builder_add_policy(b, bad2);
    zt_state_builder_add_policy(b, bad);
    CHECK_EQ_INT(zt_state_builder_finish(b, &s, err, sizeof(err)), 0);
    skipped = zt_xds_catalog_build(s, &cat, err, sizeof(err));
    zt_state_unref(s);
    CHECK_EQ_INT(skipped, 2);
    CHECK(strncmp(err, "default/bad: not encodable", 26) == 0);
    CHECK_EQ_INT(zt_xds_catalog_count(cat, ZT_ADS_AUTHORIZATION), 1);
    CHECK_EQ_STR(zt_xds_catalog_at(cat, ZT_ADS_AUTHORIZATION, 0)->name, "default/good");
    CHECK_EQ_INT(zt_xds_catalog_count(cat, ZT_ADS_ADDRESS), 1);
    zt_xds_catalog_unref(cat);
}

/* A service named like a workload uid cannot share the Address name
 * space: the workload stays. */
static void test_name_collision(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s = NULL;
    struct zt_xds_catalog *cat = NULL;
    char err[256] = "";
    size_t skipped;

    zt_state_builder_add_workload(b, mk_wl("default/h", "10.0.0.1"));
    zt_state_builder_add_service(b, mk_svc("default", "h"));
    zt_state_builder_add_service(b, mk_svc("default", "a"));
    CHECK_EQ_INT(zt_state_builder_finish(b, &s, err, sizeof(err)), 0);
    skipped = zt_xds_catalog_build(s, &cat, err, sizeof(err));
    zt_state_unref(s);
    CHECK_EQ_INT(skipped, 1);
    CHECK_EQ_STR(err, "default/h: address name already used by a workload uid");
    CHECK_EQ_INT(zt_xds_catalog_count(cat, ZT_ADS_ADDRESS), 2);
    CHECK_EQ_STR(zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 0)->name, "default/a");
    CHECK(entry_decodes(zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 0)));
    CHECK_EQ_STR(zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 1)->name, "default/h");
    /* It is the workload. */
    Istio__Workload__Address *a =
        istio__workload__address__unpack(NULL, zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 1)->len,
                                         zt_xds_catalog_at(cat, ZT_ADS_ADDRESS, 1)->value);
    CHECK(a != NULL);
    bool is_wl = a->type_case == ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD;
    istio__workload__address__free_unpacked(a, NULL);
    CHECK(is_wl);
    zt_xds_catalog_unref(cat);
}

/* ------------------------------------------------------------ known map */

static void test_known_basic(void)
{
    struct zt_xds_known *k = zt_xds_known_new();
    char big[ZT_ADS_MAX_VERSION + 2];

    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_ADDRESS), 0);
    CHECK(zt_xds_known_get(k, ZT_ADS_ADDRESS, "a") == NULL);
    CHECK_EQ_INT(zt_xds_known_set(k, ZT_ADS_ADDRESS, "a", "1"), 0);
    CHECK_EQ_INT(zt_xds_known_set(k, ZT_ADS_ADDRESS, "b", NULL), 0);
    CHECK_EQ_INT(zt_xds_known_set(k, ZT_ADS_AUTHORIZATION, "a", "x"), 0);
    CHECK_EQ_INT(zt_xds_known_set(k, ZT_ADS_ADDRESS, "a", "2"), 0);
    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_ADDRESS), 2);
    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_AUTHORIZATION), 1);
    CHECK_EQ_STR(zt_xds_known_get(k, ZT_ADS_ADDRESS, "a"), "2");
    CHECK_EQ_STR(zt_xds_known_get(k, ZT_ADS_ADDRESS, "b"), "");
    CHECK_EQ_STR(zt_xds_known_get(k, ZT_ADS_AUTHORIZATION, "a"), "x");
    CHECK(zt_xds_known_remove(k, ZT_ADS_ADDRESS, "a"));
    CHECK(!zt_xds_known_remove(k, ZT_ADS_ADDRESS, "a"));
    CHECK(zt_xds_known_get(k, ZT_ADS_ADDRESS, "a") == NULL);
    CHECK_EQ_STR(zt_xds_known_get(k, ZT_ADS_AUTHORIZATION, "a"), "x");

    /* Errors leave the map unchanged. */
    CHECK_EQ_INT(zt_xds_known_set(k, ZT_ADS_NTYPES, "a", "1"), ZT_E_PROTO);
    CHECK_EQ_INT(zt_xds_known_set(k, ZT_ADS_ADDRESS, NULL, "1"), ZT_E_PROTO);
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK_EQ_INT(zt_xds_known_set(k, ZT_ADS_ADDRESS, "c", big), ZT_E_TOO_BIG);
    big[ZT_ADS_MAX_VERSION] = '\0';
    CHECK_EQ_INT(zt_xds_known_set(k, ZT_ADS_ADDRESS, "c", big), 0);
    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_ADDRESS), 2);

    /* Seed: all or nothing. */
    {
        char longname[ZT_ADS_MAX_NAME + 2];
        const char *names[] = {"n1", "n2", longname};
        const char *versions[] = {"1", "2", "3"};
        memset(longname, 'n', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        CHECK_EQ_INT(zt_xds_known_seed(k, ZT_ADS_AUTHORIZATION, names, versions, 3), ZT_E_TOO_BIG);
        CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_AUTHORIZATION), 1);
        CHECK(zt_xds_known_get(k, ZT_ADS_AUTHORIZATION, "n1") == NULL);
        CHECK_EQ_INT(zt_xds_known_seed(k, ZT_ADS_AUTHORIZATION, names, NULL,
                                       (size_t)ZT_ADS_MAX_RESOURCES + 1),
                     ZT_E_TOO_BIG);
        CHECK_EQ_INT(zt_xds_known_seed(k, ZT_ADS_NTYPES, names, versions, 2), ZT_E_PROTO);
        /* A name given twice keeps the last version. */
        names[2] = "n1";
        CHECK_EQ_INT(zt_xds_known_seed(k, ZT_ADS_AUTHORIZATION, names, versions, 3), 0);
        CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_AUTHORIZATION), 3);
        CHECK_EQ_STR(zt_xds_known_get(k, ZT_ADS_AUTHORIZATION, "n1"), "3");
        CHECK_EQ_STR(zt_xds_known_get(k, ZT_ADS_AUTHORIZATION, "n2"), "2");
    }
    zt_xds_known_clear(k, ZT_ADS_AUTHORIZATION);
    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_AUTHORIZATION), 0);
    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_ADDRESS), 2);
    CHECK_EQ_INT(zt_xds_known_set(k, ZT_ADS_AUTHORIZATION, "again", "1"), 0);
    CHECK_EQ_STR(zt_xds_known_get(k, ZT_ADS_AUTHORIZATION, "again"), "1");
    zt_xds_known_free(k);
    zt_xds_known_free(NULL);
}

/* 100k names: insert, remove every other one (exercising deletion inside
 * probe runs), check every answer. */
static void test_known_scale(void)
{
    enum { N = 100000 };
    struct zt_xds_known *k = zt_xds_known_new();
    char name[32], ver[32];
    bool ok = true;

    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "cluster//v1/Pod/ns/w%d", i);
        snprintf(ver, sizeof(ver), "%d", i);
        if (zt_xds_known_set(k, ZT_ADS_ADDRESS, name, ver))
            ok = false;
    }
    CHECK(ok);
    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_ADDRESS), N);
    for (int i = 0; i < N; i += 2) {
        snprintf(name, sizeof(name), "cluster//v1/Pod/ns/w%d", i);
        if (!zt_xds_known_remove(k, ZT_ADS_ADDRESS, name))
            ok = false;
    }
    CHECK(ok);
    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_ADDRESS), N / 2);
    for (int i = 0; i < N && ok; i++) {
        const char *v;
        snprintf(name, sizeof(name), "cluster//v1/Pod/ns/w%d", i);
        snprintf(ver, sizeof(ver), "%d", i);
        v = zt_xds_known_get(k, ZT_ADS_ADDRESS, name);
        ok = (i % 2) ? (v && !strcmp(v, ver)) : v == NULL;
    }
    CHECK(ok);
    zt_xds_known_free(k);
}

/* ------------------------------------------------------------ deltas */

static void test_delta_empty_known(void)
{
    struct zt_state *s = load_good();
    struct zt_xds_catalog *cat = build(s);
    struct zt_xds_known *k = zt_xds_known_new();
    struct zt_xds_delta d;

    zt_state_unref(s);
    /* The types a state fills (the kept types come from zt_xds_catalog_with). */
    for (int t = 0; t < ZT_ADS_ROUTE; t++) {
        CHECK_EQ_INT(zt_xds_catalog_delta(cat, t, k, &d), 0);
        CHECK_EQ_INT(d.type, t);
        CHECK_EQ_INT(d.n_updates, zt_xds_catalog_count(cat, t));
        CHECK_EQ_INT(d.n_removed, 0);
        CHECK(!zt_xds_delta_is_empty(&d));
        for (size_t i = 0; i < d.n_updates; i++)
            CHECK(d.updates[i] == zt_xds_catalog_at(cat, t, i));
        zt_xds_delta_cleanup(&d);
        /* NULL known reads as empty. */
        CHECK_EQ_INT(zt_xds_catalog_delta(cat, t, NULL, &d), 0);
        CHECK_EQ_INT(d.n_updates, zt_xds_catalog_count(cat, t));
        zt_xds_delta_cleanup(&d);
    }
    CHECK_EQ_INT(zt_xds_catalog_delta(cat, ZT_ADS_NTYPES, k, &d), ZT_E_PROTO);
    CHECK(zt_xds_delta_is_empty(&d));
    zt_xds_delta_cleanup(&d);
    zt_xds_delta_cleanup(&d);
    zt_xds_known_free(k);
    zt_xds_catalog_unref(cat);
}

static void test_delta_seeded_same(void)
{
    struct zt_state *s = load_good();
    struct zt_xds_catalog *cat = build(s);
    struct zt_xds_known *k = zt_xds_known_new();
    struct zt_xds_delta d;

    zt_state_unref(s);
    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        CHECK_EQ_INT(seed_all(k, cat, t), 0);
        CHECK_EQ_INT(zt_xds_catalog_delta(cat, t, k, &d), 0);
        CHECK(zt_xds_delta_is_empty(&d));
        zt_xds_delta_cleanup(&d);
    }
    zt_xds_known_free(k);
    zt_xds_catalog_unref(cat);
}

static void test_delta_changed_and_removed(void)
{
    struct zt_state *a = mk_state("10.0.0.1", true), *b = mk_state("10.0.0.9", false);
    struct zt_xds_catalog *ca = build(a), *cb = build(b);
    struct zt_xds_known *k = zt_xds_known_new();
    struct zt_xds_delta d;

    zt_state_unref(a);
    zt_state_unref(b);
    CHECK_EQ_INT(seed_all(k, ca, ZT_ADS_ADDRESS), 0);
    CHECK_EQ_INT(seed_all(k, ca, ZT_ADS_AUTHORIZATION), 0);

    /* Only w1 changed. */
    CHECK_EQ_INT(zt_xds_catalog_delta(cb, ZT_ADS_ADDRESS, k, &d), 0);
    CHECK_EQ_INT(d.n_updates, 1);
    CHECK_EQ_INT(d.n_removed, 0);
    CHECK_EQ_STR(d.updates[0]->name, "w1");
    CHECK_EQ_STR(d.updates[0]->version, zt_xds_catalog_find(cb, ZT_ADS_ADDRESS, "w1")->version);
    CHECK_EQ_INT(zt_xds_known_apply(k, ZT_ADS_ADDRESS, cb, &d), 0);
    CHECK_EQ_STR(zt_xds_known_get(k, ZT_ADS_ADDRESS, "w1"),
                 zt_xds_catalog_find(cb, ZT_ADS_ADDRESS, "w1")->version);
    zt_xds_delta_cleanup(&d);

    /* p2 is gone. */
    CHECK_EQ_INT(zt_xds_catalog_delta(cb, ZT_ADS_AUTHORIZATION, k, &d), 0);
    CHECK_EQ_INT(d.n_updates, 0);
    CHECK_EQ_INT(d.n_removed, 1);
    CHECK_EQ_STR(d.removed[0], "default/p2");
    CHECK_EQ_INT(zt_xds_known_apply(k, ZT_ADS_AUTHORIZATION, cb, &d), 0);
    CHECK(zt_xds_known_get(k, ZT_ADS_AUTHORIZATION, "default/p2") == NULL);
    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_AUTHORIZATION), 1);
    zt_xds_delta_cleanup(&d);

    /* Nothing left to send. */
    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        CHECK_EQ_INT(zt_xds_catalog_delta(cb, t, k, &d), 0);
        CHECK(zt_xds_delta_is_empty(&d));
        zt_xds_delta_cleanup(&d);
    }

    /* Against the old catalog again: p2 comes back. */
    CHECK_EQ_INT(zt_xds_catalog_delta(ca, ZT_ADS_AUTHORIZATION, k, &d), 0);
    CHECK_EQ_INT(d.n_updates, 1);
    CHECK_EQ_STR(d.updates[0]->name, "default/p2");
    CHECK_EQ_INT(d.n_removed, 0);
    zt_xds_delta_cleanup(&d);

    zt_xds_known_free(k);
    zt_xds_catalog_unref(ca);
    zt_xds_catalog_unref(cb);
}

/* initial_resource_versions naming resources we do not have, or at an old
 * version: the unknown ones are removed (in name order), the stale one
 * sent, the current ones not. */
static void test_delta_unknown_initial(void)
{
    struct zt_state *s = mk_state("10.0.0.1", true);
    struct zt_xds_catalog *cat = build(s);
    struct zt_xds_known *k = zt_xds_known_new();
    struct zt_xds_delta d;
    const char *w2v = zt_xds_catalog_find(cat, ZT_ADS_ADDRESS, "w2")->version;
    const char *svv = zt_xds_catalog_find(cat, ZT_ADS_ADDRESS, "default/s1.default.svc")->version;
    const char *names[] = {"zz/gone", "w2", "aa//old", "w1", "default/s1.default.svc", "m"};
    const char *versions[] = {"1", w2v, "1", "0000000000000000", svv, NULL};

    zt_state_unref(s);
    CHECK_EQ_INT(zt_xds_known_seed(k, ZT_ADS_ADDRESS, names, versions, 6), 0);
    CHECK_EQ_INT(zt_xds_catalog_delta(cat, ZT_ADS_ADDRESS, k, &d), 0);
    CHECK_EQ_INT(d.n_updates, 1);
    CHECK_EQ_STR(d.updates[0]->name, "w1");
    CHECK_EQ_INT(d.n_removed, 3);
    CHECK_EQ_STR(d.removed[0], "aa//old");
    CHECK_EQ_STR(d.removed[1], "m");
    CHECK_EQ_STR(d.removed[2], "zz/gone");

    /* Applying with another type or catalog is refused. */
    CHECK_EQ_INT(zt_xds_known_apply(k, ZT_ADS_AUTHORIZATION, cat, &d), ZT_E_PROTO);
    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_ADDRESS), 6);

    CHECK_EQ_INT(zt_xds_known_apply(k, ZT_ADS_ADDRESS, cat, &d), 0);
    zt_xds_delta_cleanup(&d);
    CHECK_EQ_INT(zt_xds_known_count(k, ZT_ADS_ADDRESS), 3);
    CHECK_EQ_INT(zt_xds_catalog_delta(cat, ZT_ADS_ADDRESS, k, &d), 0);
    CHECK(zt_xds_delta_is_empty(&d));
    zt_xds_delta_cleanup(&d);
    zt_xds_known_free(k);
    zt_xds_catalog_unref(cat);
}

/* The delta keeps the catalog alive; the catalog outlives its first
 * owner's reference. (ASan checks the reads.) */
static void test_refcount(void)
{
    struct zt_state *s = load_good();
    struct zt_xds_catalog *cat = build(s), *again;
    struct zt_xds_delta d;

    zt_state_unref(s);
    again = zt_xds_catalog_ref(cat);
    CHECK(again == cat);
    zt_xds_catalog_unref(cat);
    CHECK_EQ_INT(zt_xds_catalog_delta(again, ZT_ADS_AUTHORIZATION, NULL, &d), 0);
    zt_xds_catalog_unref(again);
    CHECK_EQ_INT(d.n_updates, 2);
    CHECK_EQ_STR(d.updates[1]->name, "default/only-foo");
    CHECK(entry_decodes(d.updates[1]));
    zt_xds_delta_cleanup(&d);
    zt_xds_catalog_unref(NULL);
}

/* A catalog of a few thousand workloads against a client that has all but
 * a few: the delta holds exactly the difference. */
static void test_delta_large(void)
{
    enum { N = 5000 };
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s = NULL;
    struct zt_xds_catalog *cat;
    struct zt_xds_known *k = zt_xds_known_new();
    struct zt_xds_delta d;
    char uid[64], ip[32], err[256];

    for (int i = 0; i < N; i++) {
        snprintf(uid, sizeof(uid), "c//v1/Pod/ns/w%05d", i);
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        zt_state_builder_add_workload(b, mk_wl(uid, ip));
    }
    CHECK_EQ_INT(zt_state_builder_finish(b, &s, err, sizeof(err)), 0);
    cat = build(s);
    zt_state_unref(s);
    CHECK_EQ_INT(zt_xds_catalog_count(cat, ZT_ADS_ADDRESS), N);
    CHECK_EQ_INT(seed_all(k, cat, ZT_ADS_ADDRESS), 0);
    zt_xds_known_remove(k, ZT_ADS_ADDRESS, "c//v1/Pod/ns/w00042");
    zt_xds_known_set(k, ZT_ADS_ADDRESS, "c//v1/Pod/ns/w04999", "stale");
    zt_xds_known_set(k, ZT_ADS_ADDRESS, "c//v1/Pod/ns/w99999", "x");
    CHECK_EQ_INT(zt_xds_catalog_delta(cat, ZT_ADS_ADDRESS, k, &d), 0);
    CHECK_EQ_INT(d.n_updates, 2);
    CHECK_EQ_STR(d.updates[0]->name, "c//v1/Pod/ns/w00042");
    CHECK_EQ_STR(d.updates[1]->name, "c//v1/Pod/ns/w04999");
    CHECK_EQ_INT(d.n_removed, 1);
    CHECK_EQ_STR(d.removed[0], "c//v1/Pod/ns/w99999");
    zt_xds_delta_cleanup(&d);
    zt_xds_known_free(k);
    zt_xds_catalog_unref(cat);
}

/* An update from the last catalog encodes only the records that are new to
 * the snapshot, shares the other entries, equals a full build, and its
 * delta for a client that held the last catalog covers the changes only. */
static void test_update_and_delta_since(void)
{
    struct zt_state *s1 = mk_state("10.0.0.1", true), *s2 = NULL;
    struct zt_state_builder *b = zt_state_builder_new(s1);
    struct zt_xds_catalog *c1 = build(s1), *c2 = NULL, *full = NULL;
    struct zt_xds_known *k = zt_xds_known_new();
    struct zt_xds_delta d, fd;
    char err[256];

    zt_state_builder_put_workload(b, mk_wl("w1", "10.0.0.9"));
    zt_state_builder_add_workload(b, mk_wl("w3", "10.0.0.3"));
    zt_state_builder_remove_policy(b, "default/p2");
    CHECK_EQ_INT(zt_state_builder_finish(b, &s2, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_xds_catalog_update(c1, s2, &c2, err, sizeof(err)), 0);
    CHECK(zt_xds_catalog_gen(c2) != zt_xds_catalog_gen(c1));
    full = build(s2);

    /* Same entries as a full build, in the same order. */
    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        CHECK_EQ_INT(zt_xds_catalog_count(c2, t), zt_xds_catalog_count(full, t));
        for (size_t i = 0; i < zt_xds_catalog_count(full, t); i++) {
            CHECK_EQ_STR(zt_xds_catalog_at(c2, t, i)->name, zt_xds_catalog_at(full, t, i)->name);
            CHECK_EQ_STR(zt_xds_catalog_at(c2, t, i)->version,
                         zt_xds_catalog_at(full, t, i)->version);
        }
    }
    /* Untouched records keep their entry; the replaced one is new. */
    CHECK(zt_xds_catalog_find(c2, ZT_ADS_ADDRESS, "w2") ==
          zt_xds_catalog_find(c1, ZT_ADS_ADDRESS, "w2"));
    CHECK(zt_xds_catalog_find(c2, ZT_ADS_ADDRESS, "default/s1.default.svc") ==
          zt_xds_catalog_find(c1, ZT_ADS_ADDRESS, "default/s1.default.svc"));
    CHECK(zt_xds_catalog_find(c2, ZT_ADS_AUTHORIZATION, "default/p1") ==
          zt_xds_catalog_find(c1, ZT_ADS_AUTHORIZATION, "default/p1"));
    CHECK(strcmp(zt_xds_catalog_find(c2, ZT_ADS_ADDRESS, "w1")->version,
                 zt_xds_catalog_find(c1, ZT_ADS_ADDRESS, "w1")->version) != 0);

    /* A client holding c1: the delta since c1 is the full delta. */
    CHECK_EQ_INT(seed_all(k, c1, ZT_ADS_ADDRESS), 0);
    CHECK_EQ_INT(seed_all(k, c1, ZT_ADS_AUTHORIZATION), 0);
    for (int t = 0; t < ZT_ADS_ROUTE; t++) {
        CHECK_EQ_INT(zt_xds_catalog_delta_since(c2, t, k, zt_xds_catalog_gen(c1), &d), 0);
        CHECK_EQ_INT(zt_xds_catalog_delta(c2, t, k, &fd), 0);
        CHECK_EQ_INT(d.n_updates, fd.n_updates);
        CHECK_EQ_INT(d.n_removed, fd.n_removed);
        for (size_t i = 0; i < d.n_updates && i < fd.n_updates; i++)
            CHECK(d.updates[i] == fd.updates[i]);
        for (size_t i = 0; i < d.n_removed && i < fd.n_removed; i++)
            CHECK_EQ_STR(d.removed[i], fd.removed[i]);
        if (t == ZT_ADS_ADDRESS) {
            CHECK_EQ_INT(d.n_updates, 2);
            CHECK_EQ_INT(d.n_removed, 0);
            CHECK_EQ_STR(d.updates[0]->name, "w1");
            CHECK_EQ_STR(d.updates[1]->name, "w3");
        } else {
            CHECK_EQ_INT(d.n_updates, 0);
            CHECK_EQ_INT(d.n_removed, 1);
            CHECK_EQ_STR(d.removed[0], "default/p2");
        }
        zt_xds_delta_cleanup(&d);
        zt_xds_delta_cleanup(&fd);
    }
    /* Another generation: a full comparison (here: nothing known of c2's
     * parent, so everything not held is sent). */
    CHECK_EQ_INT(zt_xds_catalog_delta_since(c2, ZT_ADS_ADDRESS, k, zt_xds_catalog_gen(full), &d),
                 0);
    CHECK_EQ_INT(d.n_updates, 2);
    zt_xds_delta_cleanup(&d);

    zt_xds_known_free(k);
    zt_xds_catalog_unref(c1);
    zt_state_unref(s1);
    zt_xds_catalog_unref(full);
    zt_xds_catalog_unref(c2);
    zt_state_unref(s2);
}

/* Routes: set on a twin; a stream holding the parent gets only what
 * changed (delta_since = full delta); an update of the state carries the
 * routes over, also through a full build; unchanged routes share entries. */
static void test_with_routes(void)
{
    struct zt_state *s1 = mk_state("10.0.0.1", true), *s2 = mk_state("10.0.0.9", true);
    struct zt_xds_catalog *c0 = build(s1), *c1, *c2, *c3, *c4;
    struct zt_xds_known *k = zt_xds_known_new();
    struct zt_xds_delta d, fd;
    char err[256];
    const struct zt_xds_item r1[] = {
        {"HTTPRoute/ns/b", (const uint8_t *)"bb", 2},
        {"HTTPRoute/ns/a", (const uint8_t *)"aa", 2},
        {"HTTPRoute/ns/a", (const uint8_t *)"zz", 2}, /* a duplicate: the first wins */
    };
    const struct zt_xds_item r2[] = {
        {"HTTPRoute/ns/a", (const uint8_t *)"aa", 2},
        {"GRPCRoute/ns/c", (const uint8_t *)"cc", 2},
    };

    c1 = zt_xds_catalog_with(c0, ZT_ADS_ROUTE, r1, 3);
    CHECK_EQ_INT(zt_xds_catalog_count(c1, ZT_ADS_ROUTE), 2);
    CHECK_EQ_STR(zt_xds_catalog_at(c1, ZT_ADS_ROUTE, 0)->name, "HTTPRoute/ns/a");
    CHECK(memcmp(zt_xds_catalog_at(c1, ZT_ADS_ROUTE, 0)->value, "aa", 2) == 0);
    CHECK_EQ_INT(zt_xds_catalog_count(c1, ZT_ADS_ADDRESS),
                 zt_xds_catalog_count(c0, ZT_ADS_ADDRESS));
    CHECK(zt_xds_catalog_at(c1, ZT_ADS_ADDRESS, 0) == zt_xds_catalog_at(c0, ZT_ADS_ADDRESS, 0));

    /* A stream that got all of c1, then the state and the routes change. */
    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        CHECK_EQ_INT(zt_xds_catalog_delta(c1, t, k, &d), 0);
        CHECK_EQ_INT(zt_xds_known_apply(k, t, c1, &d), 0);
        zt_xds_delta_cleanup(&d);
    }
    CHECK_EQ_INT(zt_xds_catalog_update(c1, s2, &c2, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_xds_catalog_count(c2, ZT_ADS_ROUTE), 2);
    c3 = zt_xds_catalog_with(c2, ZT_ADS_ROUTE, r2, 2);
    CHECK(zt_xds_catalog_find(c3, ZT_ADS_ROUTE, "HTTPRoute/ns/a") ==
          zt_xds_catalog_find(c1, ZT_ADS_ROUTE, "HTTPRoute/ns/a"));
    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        CHECK_EQ_INT(zt_xds_catalog_delta_since(c3, t, k, zt_xds_catalog_gen(c1), &d), 0);
        CHECK_EQ_INT(zt_xds_catalog_delta(c3, t, k, &fd), 0);
        CHECK_EQ_INT(d.n_updates, fd.n_updates);
        CHECK_EQ_INT(d.n_removed, fd.n_removed);
        if (t == ZT_ADS_ROUTE) {
            CHECK_EQ_INT(d.n_updates, 1);
            CHECK_EQ_STR(d.updates[0]->name, "GRPCRoute/ns/c");
            CHECK_EQ_INT(d.n_removed, 1);
            CHECK_EQ_STR(d.removed[0], "HTTPRoute/ns/b");
        }
        zt_xds_delta_cleanup(&d);
        zt_xds_delta_cleanup(&fd);
    }
    /* A full build (no parent) keeps them too. */
    CHECK_EQ_INT(zt_xds_catalog_update(NULL, s2, &c4, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_xds_catalog_count(c4, ZT_ADS_ROUTE), 0);
    zt_xds_catalog_unref(c4);
    {
        /* A workload uid equal to a service's name makes update build in
         * full (the clash is resolved there). */
        struct zt_state_builder *b = zt_state_builder_new(s2);
        struct zt_state *s3 = NULL;
        struct zt_xds_catalog *c5 = NULL;
        zt_state_builder_add_workload(b, mk_wl("default/s1.default.svc", "10.0.0.7"));
        CHECK_EQ_INT(zt_state_builder_finish(b, &s3, err, sizeof(err)), 0);
        CHECK_EQ_INT(zt_xds_catalog_update(c3, s3, &c5, err, sizeof(err)), 1);
        CHECK_EQ_INT(zt_xds_catalog_count(c5, ZT_ADS_ROUTE), 2);
        CHECK(zt_xds_catalog_find(c5, ZT_ADS_ROUTE, "GRPCRoute/ns/c") ==
              zt_xds_catalog_find(c3, ZT_ADS_ROUTE, "GRPCRoute/ns/c"));
        zt_xds_catalog_unref(c5);
        zt_state_unref(s3);
    }

    zt_xds_known_free(k);
    zt_xds_catalog_unref(c0);
    zt_xds_catalog_unref(c1);
    zt_xds_catalog_unref(c2);
    zt_xds_catalog_unref(c3);
    zt_state_unref(s1);
    zt_state_unref(s2);
}

/* The policy types are set like routes, each without touching the
 * others, and an update of the state carries all of them over. */
static void test_with_policies(void)
{
    struct zt_state *s1 = mk_state("10.0.0.1", true), *s2 = mk_state("10.0.0.9", true);
    struct zt_xds_catalog *c0 = build(s1), *c1, *c2, *c3, *c4, *c5;
    char err[256];
    const struct zt_xds_item r[] = {{"HTTPRoute/ns/a", (const uint8_t *)"aa", 2}};
    const struct zt_xds_item az[] = {{"ns/deny", (const uint8_t *)"dd", 2}};
    const struct zt_xds_item an[] = {{"ns/jwt", (const uint8_t *)"jj", 2}};

    c1 = zt_xds_catalog_with(c0, ZT_ADS_ROUTE, r, 1);
    c2 = zt_xds_catalog_with(c1, ZT_ADS_AUTHZ_POLICY, az, 1);
    c3 = zt_xds_catalog_with(c2, ZT_ADS_AUTHN_POLICY, an, 1);
    CHECK_EQ_INT(zt_xds_catalog_count(c3, ZT_ADS_ROUTE), 1);
    CHECK_EQ_INT(zt_xds_catalog_count(c3, ZT_ADS_AUTHZ_POLICY), 1);
    CHECK_EQ_INT(zt_xds_catalog_count(c3, ZT_ADS_AUTHN_POLICY), 1);
    CHECK(zt_xds_catalog_find(c3, ZT_ADS_ROUTE, "HTTPRoute/ns/a") ==
          zt_xds_catalog_find(c1, ZT_ADS_ROUTE, "HTTPRoute/ns/a"));
    CHECK_EQ_STR(zt_xds_catalog_at(c3, ZT_ADS_AUTHN_POLICY, 0)->name, "ns/jwt");
    CHECK_EQ_INT(zt_xds_catalog_update(c3, s2, &c4, err, sizeof(err)), 0);
    for (int t = ZT_ADS_FIRST_KEPT; t < ZT_ADS_NTYPES; t++)
        CHECK(zt_xds_catalog_at(c4, t, 0) == zt_xds_catalog_at(c3, t, 0));
    c5 = zt_xds_catalog_with(c4, ZT_ADS_AUTHZ_POLICY, NULL, 0);
    CHECK_EQ_INT(zt_xds_catalog_count(c5, ZT_ADS_AUTHZ_POLICY), 0);
    CHECK_EQ_INT(zt_xds_catalog_count(c5, ZT_ADS_ROUTE), 1);
    CHECK_EQ_INT(zt_xds_catalog_count(c5, ZT_ADS_AUTHN_POLICY), 1);
    zt_xds_catalog_unref(c0);
    zt_xds_catalog_unref(c1);
    zt_xds_catalog_unref(c2);
    zt_xds_catalog_unref(c3);
    zt_xds_catalog_unref(c4);
    zt_xds_catalog_unref(c5);
    zt_state_unref(s1);
    zt_state_unref(s2);
}

int main(void)
{
    RUN(test_build_good);
    RUN(test_with_policies);
    RUN(test_empty_state);
    RUN(test_versions);
    RUN(test_left_out);
    RUN(test_name_collision);
    RUN(test_known_basic);
    RUN(test_known_scale);
    RUN(test_delta_empty_known);
    RUN(test_delta_seeded_same);
    RUN(test_delta_changed_and_removed);
    RUN(test_delta_unknown_initial);
    RUN(test_refcount);
    RUN(test_delta_large);
    RUN(test_update_and_delta_since);
    RUN(test_with_routes);
    return TEST_REPORT();
}
