/* Resource catalog, per-stream known versions and deltas. See catalog.h.
 *
 * The catalog keeps one array of entries per type, sorted by name, so a
 * lookup is a binary search and a delta walks the array in order. The known
 * map is a hash table: a client's initial_resource_versions can hold every
 * resource of a large mesh, and each delta asks it once per catalog entry.
 * Its names come from the peer, so the hash is keyed with a per-map random
 * key (SipHash-2-4) and cannot be steered into long probe runs. */
#include "xds/catalog.h"

#include "base/err.h"
#include "base/strmap.h"
#include "xds/encode.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool type_ok(enum zt_ads_type t)
{
    return (unsigned)t < ZT_ADS_NTYPES;
}

/* ================================================================ catalog */

struct zt_xds_catalog {
    atomic_uint refs;
    struct zt_xds_entry *v[ZT_ADS_NTYPES];
    size_t n[ZT_ADS_NTYPES];
};

struct build {
    struct zt_xds_catalog *cat;
    size_t skipped;
    char *err;
    size_t errlen;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct zt_xds_entry *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static void set_version(struct zt_xds_entry *e)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    /* Only fails when OpenSSL cannot allocate: treated as out of memory. */
    if (!EVP_Digest(e->value, e->len, md, &mdlen, EVP_sha256(), NULL) ||
        mdlen < ZT_XDS_VERSION_LEN / 2)
        abort();
    for (size_t i = 0; i < ZT_XDS_VERSION_LEN / 2; i++) {
        e->version[2 * i] = hex[md[i] >> 4];
        e->version[2 * i + 1] = hex[md[i] & 15];
    }
    e->version[ZT_XDS_VERSION_LEN] = '\0';
}

__attribute__((format(printf, 3, 4))) static void skip(struct build *b, const char *name,
                                                       const char *fmt, ...)
{
    if (b->skipped++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        zt_verrf_at(b->err, b->errlen, 0, name, fmt, ap);
        va_end(ap);
    }
}

static const char *encode_reason(int rc)
{
    if (rc == ZT_E_TOO_BIG)
        return "not encodable: a list, a string or the message is over the xDS caps";
    return "not encodable: a field has a value the protocol cannot carry";
}

/* Takes ownership of name and of a successful encoding. */
static void add(struct build *b, enum zt_ads_type t, char *name, int rc, uint8_t *value, size_t len)
{
    struct zt_xds_entry *e;

    if (rc) {
        skip(b, name, "%s", encode_reason(rc));
        free(name);
        free(value);
        return;
    }
    e = zt_state_array_push(&b->cat->v[t], &b->cat->n[t], sizeof(*e));
    e->type = t;
    e->name = name;
    e->value = value;
    e->len = len;
    set_version(e);
}

size_t zt_xds_catalog_build(const struct zt_state *s, struct zt_xds_catalog **out, char *err,
                            size_t errlen)
{
    struct zt_xds_catalog *cat = zt_state_xcalloc(1, sizeof(*cat));
    struct build b = {.cat = cat, .err = err, .errlen = errlen};
    size_t n_wl;

    atomic_init(&cat->refs, 1);
    if (errlen)
        err[0] = '\0';

    for (size_t i = 0; i < zt_state_workload_count(s); i++) {
        const struct zt_workload *wl = zt_state_workload_at(s, i);
        uint8_t *v = NULL;
        size_t len = 0;
        int rc = zt_xds_encode_workload(wl, &v, &len);
        add(&b, ZT_ADS_ADDRESS, zt_xds_workload_name(wl), rc, v, len);
    }
    /* Workloads are sorted on their own first, so that a service whose
     * name a workload already uses can be found and left out. */
    n_wl = cat->n[ZT_ADS_ADDRESS];
    if (n_wl)
        qsort(cat->v[ZT_ADS_ADDRESS], n_wl, sizeof(struct zt_xds_entry), cmp_entry);
    for (size_t i = 0; i < zt_state_service_count(s); i++) {
        const struct zt_service *svc = zt_state_service_at(s, i);
        struct zt_xds_entry probe = {.name = zt_xds_service_name(svc)};
        uint8_t *v = NULL;
        size_t len = 0;
        int rc;
        if (n_wl && bsearch(&probe, cat->v[ZT_ADS_ADDRESS], n_wl, sizeof(probe), cmp_entry)) {
            skip(&b, probe.name, "address name already used by a workload uid");
            free(probe.name);
            continue;
        }
        rc = zt_xds_encode_service(svc, &v, &len);
        add(&b, ZT_ADS_ADDRESS, probe.name, rc, v, len);
    }
    for (size_t i = 0; i < zt_state_policy_count(s); i++) {
        const struct zt_policy *p = zt_state_policy_at(s, i);
        uint8_t *v = NULL;
        size_t len = 0;
        int rc = zt_xds_encode_policy(p, &v, &len);
        add(&b, ZT_ADS_AUTHORIZATION, zt_xds_policy_name(p), rc, v, len);
    }
    for (int t = 0; t < ZT_ADS_NTYPES; t++)
        if (cat->n[t])
            qsort(cat->v[t], cat->n[t], sizeof(struct zt_xds_entry), cmp_entry);
    *out = cat;
    return b.skipped;
}

struct zt_xds_catalog *zt_xds_catalog_ref(const struct zt_xds_catalog *ccat)
{
    /* The reference count is the one mutable part of a catalog. */
    struct zt_xds_catalog *cat = (struct zt_xds_catalog *)ccat;
    atomic_fetch_add_explicit(&cat->refs, 1, memory_order_relaxed);
    return cat;
}

void zt_xds_catalog_unref(const struct zt_xds_catalog *ccat)
{
    struct zt_xds_catalog *cat = (struct zt_xds_catalog *)ccat;
    if (!cat || atomic_fetch_sub_explicit(&cat->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        for (size_t i = 0; i < cat->n[t]; i++) {
            free(cat->v[t][i].name);
            free(cat->v[t][i].value);
        }
        free(cat->v[t]);
    }
    free(cat);
}

size_t zt_xds_catalog_count(const struct zt_xds_catalog *cat, enum zt_ads_type t)
{
    return type_ok(t) ? cat->n[t] : 0;
}

const struct zt_xds_entry *zt_xds_catalog_at(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                                             size_t i)
{
    if (!type_ok(t) || i >= cat->n[t])
        return NULL;
    return &cat->v[t][i];
}

const struct zt_xds_entry *zt_xds_catalog_find(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                                               const char *name)
{
    struct zt_xds_entry probe = {.name = (char *)name};
    if (!type_ok(t) || !name || !cat->n[t])
        return NULL;
    return bsearch(&probe, cat->v[t], cat->n[t], sizeof(probe), cmp_entry);
}

/* ================================================================ known */

/* One map of name -> version per type (base/strmap.h: its names come from
 * the peer, so each map hashes under its own random key). */
struct zt_xds_known {
    struct zt_strmap maps[ZT_ADS_NTYPES];
};

struct zt_xds_known *zt_xds_known_new(void)
{
    struct zt_xds_known *k = zt_state_xcalloc(1, sizeof(*k));
    for (int t = 0; t < ZT_ADS_NTYPES; t++)
        zt_strmap_init(&k->maps[t], true);
    return k;
}

void zt_xds_known_free(struct zt_xds_known *k)
{
    if (!k)
        return;
    for (int t = 0; t < ZT_ADS_NTYPES; t++)
        zt_strmap_clear(&k->maps[t]);
    free(k);
}

static int check_strings(const char *name, const char *version)
{
    if (!name)
        return ZT_E_PROTO;
    if (strnlen(name, ZT_ADS_MAX_NAME + 1) > ZT_ADS_MAX_NAME)
        return ZT_E_TOO_BIG;
    if (version && strnlen(version, ZT_ADS_MAX_VERSION + 1) > ZT_ADS_MAX_VERSION)
        return ZT_E_TOO_BIG;
    return 0;
}

int zt_xds_known_set(struct zt_xds_known *k, enum zt_ads_type t, const char *name,
                     const char *version)
{
    int rc;
    if (!type_ok(t))
        return ZT_E_PROTO;
    rc = check_strings(name, version);
    if (rc)
        return rc;
    zt_strmap_put(&k->maps[t], name, version ? version : "");
    return 0;
}

bool zt_xds_known_remove(struct zt_xds_known *k, enum zt_ads_type t, const char *name)
{
    if (!type_ok(t) || !name)
        return false;
    return zt_strmap_del(&k->maps[t], name);
}

const char *zt_xds_known_get(const struct zt_xds_known *k, enum zt_ads_type t, const char *name)
{
    if (!type_ok(t) || !name)
        return NULL;
    const struct zt_strmap_entry *e = zt_strmap_find(&k->maps[t], name);
    return e ? e->value : NULL;
}

size_t zt_xds_known_count(const struct zt_xds_known *k, enum zt_ads_type t)
{
    return type_ok(t) ? k->maps[t].n : 0;
}

void zt_xds_known_clear(struct zt_xds_known *k, enum zt_ads_type t)
{
    if (type_ok(t))
        zt_strmap_clear(&k->maps[t]);
}

int zt_xds_known_seed(struct zt_xds_known *k, enum zt_ads_type t, const char *const *names,
                      const char *const *versions, size_t n)
{
    if (!type_ok(t))
        return ZT_E_PROTO;
    if (n > ZT_ADS_MAX_RESOURCES)
        return ZT_E_TOO_BIG;
    /* Everything is checked before anything is set: all or nothing. */
    for (size_t i = 0; i < n; i++) {
        int rc = check_strings(names[i], versions ? versions[i] : NULL);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v = versions && versions[i] ? versions[i] : "";
        zt_strmap_put(&k->maps[t], names[i], v);
    }
    return 0;
}

/* ================================================================ delta */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int zt_xds_catalog_delta(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                         const struct zt_xds_known *known, struct zt_xds_delta *out)
{
    memset(out, 0, sizeof(*out));
    out->type = t;
    if (!type_ok(t))
        return ZT_E_PROTO;
    out->cat = zt_xds_catalog_ref(cat);

    for (size_t i = 0; i < cat->n[t]; i++) {
        const struct zt_xds_entry *e = &cat->v[t][i];
        const char *have = known ? zt_xds_known_get(known, t, e->name) : NULL;
        if (have && strcmp(have, e->version) == 0)
            continue;
        *(const struct zt_xds_entry **)zt_state_array_push(&out->updates, &out->n_updates,
                                                           sizeof(*out->updates)) = e;
    }
    if (!known)
        return 0;
    size_t pos = 0;
    for (const struct zt_strmap_entry *ke; (ke = zt_strmap_next(&known->maps[t], &pos)) != NULL;) {
        const char *name = ke->key;
        if (zt_xds_catalog_find(cat, t, name))
            continue;
        *(char **)zt_state_array_push(&out->removed, &out->n_removed, sizeof(char *)) =
            zt_state_xstrdup(name);
    }
    if (out->n_removed)
        qsort(out->removed, out->n_removed, sizeof(*out->removed), cmp_str);
    return 0;
}

bool zt_xds_delta_is_empty(const struct zt_xds_delta *d)
{
    return d->n_updates == 0 && d->n_removed == 0;
}

void zt_xds_delta_cleanup(struct zt_xds_delta *d)
{
    for (size_t i = 0; i < d->n_removed; i++)
        free(d->removed[i]);
    free(d->removed);
    free(d->updates);
    zt_xds_catalog_unref(d->cat);
    memset(d, 0, sizeof(*d));
}

int zt_xds_known_apply(struct zt_xds_known *known, enum zt_ads_type t,
                       const struct zt_xds_catalog *cat, const struct zt_xds_delta *d)
{
    if (!type_ok(t) || d->type != t || d->cat != cat)
        return ZT_E_PROTO;
    /* Catalog names are within ZT_ADS_MAX_NAME (the encoder caps every
     * string at ZT_XDS_MAX_STR), so no cap applies here. */
    for (size_t i = 0; i < d->n_updates; i++)
        zt_strmap_put(&known->maps[t], d->updates[i]->name, d->updates[i]->version);
    for (size_t i = 0; i < d->n_removed; i++)
        zt_strmap_del(&known->maps[t], d->removed[i]);
    return 0;
}
