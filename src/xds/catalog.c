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

/* An entry is shared by every catalog built from the same object (see
 * zt_xds_catalog_update): it carries its own reference count. */
struct box {
    struct zt_xds_entry e; /* first: an entry pointer is its box */
    atomic_uint refs;
};

struct zt_xds_catalog {
    atomic_uint refs;
    struct zt_xds_entry **v[ZT_ADS_NTYPES]; /* boxes, by name */
    size_t n[ZT_ADS_NTYPES];
    /* What it was built from, for the next update: the snapshot (one
     * reference) and, parallel to its workloads, services and policies,
     * each object's entry (NULL: left out). */
    const struct zt_state *src;
    struct box **obj_box[3];
    size_t skipped;
    uint64_t gen, parent_gen;
    /* Names that differ from the parent's (updated, added or removed), by
     * name; only when parent_gen is not 0. */
    char **changed[ZT_ADS_NTYPES];
    size_t n_changed[ZT_ADS_NTYPES];
};

static atomic_uint_fast64_t next_gen = 1;

struct build {
    struct zt_xds_catalog *cat;
    size_t skipped;
    char *err;
    size_t errlen;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct zt_xds_entry *x = *(const struct zt_xds_entry *const *)a,
                              *y = *(const struct zt_xds_entry *const *)b;
    return strcmp(x->name, y->name);
}

static void box_unref(struct zt_xds_entry *e)
{
    struct box *b = (struct box *)e;
    if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(b->e.name);
    free(b->e.value);
    free(b);
}

static struct zt_xds_entry *box_ref(struct zt_xds_entry *e)
{
    atomic_fetch_add_explicit(&((struct box *)e)->refs, 1, memory_order_relaxed);
    return e;
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

/* A new entry (one reference); takes ownership of name and value. */
static struct box *new_box(enum zt_ads_type t, char *name, uint8_t *value, size_t len)
{
    struct box *bx = zt_state_xcalloc(1, sizeof(*bx));
    atomic_init(&bx->refs, 1);
    bx->e.type = t;
    bx->e.name = name;
    bx->e.value = value;
    bx->e.len = len;
    set_version(&bx->e);
    return bx;
}

/* Takes ownership of name and of a successful encoding. Returns the new
 * entry, or NULL when it was left out. */
static struct box *add(struct build *b, enum zt_ads_type t, char *name, int rc, uint8_t *value,
                       size_t len)
{
    struct box *bx;

    if (rc) {
        skip(b, name, "%s", encode_reason(rc));
        free(name);
        free(value);
        return NULL;
    }
    bx = new_box(t, name, value, len);
    *(struct zt_xds_entry **)zt_state_array_push(&b->cat->v[t], &b->cat->n[t],
                                                 sizeof(struct zt_xds_entry *)) = &bx->e;
    return bx;
}

enum { OBJ_WL, OBJ_SVC, OBJ_POL };

static struct zt_xds_catalog *cat_new(const struct zt_state *s)
{
    struct zt_xds_catalog *cat = zt_state_xcalloc(1, sizeof(*cat));
    atomic_init(&cat->refs, 1);
    cat->src = zt_state_ref(s);
    cat->obj_box[OBJ_WL] = zt_state_xcalloc(zt_state_workload_count(s) + 1, sizeof(struct box *));
    cat->obj_box[OBJ_SVC] = zt_state_xcalloc(zt_state_service_count(s) + 1, sizeof(struct box *));
    cat->obj_box[OBJ_POL] = zt_state_xcalloc(zt_state_policy_count(s) + 1, sizeof(struct box *));
    cat->gen = atomic_fetch_add(&next_gen, 1);
    return cat;
}

size_t zt_xds_catalog_build(const struct zt_state *s, struct zt_xds_catalog **out, char *err,
                            size_t errlen)
{
    struct zt_xds_catalog *cat = cat_new(s);
    struct build b = {.cat = cat, .err = err, .errlen = errlen};
    size_t n_wl;

    if (errlen)
        err[0] = '\0';

    for (size_t i = 0; i < zt_state_workload_count(s); i++) {
        const struct zt_workload *wl = zt_state_workload_at(s, i);
        uint8_t *v = NULL;
        size_t len = 0;
        int rc = zt_xds_encode_workload(wl, &v, &len);
        cat->obj_box[OBJ_WL][i] = add(&b, ZT_ADS_ADDRESS, zt_xds_workload_name(wl), rc, v, len);
    }
    /* Workloads are sorted on their own first, so that a service whose
     * name a workload already uses can be found and left out. */
    n_wl = cat->n[ZT_ADS_ADDRESS];
    if (n_wl)
        qsort(cat->v[ZT_ADS_ADDRESS], n_wl, sizeof(struct zt_xds_entry *), cmp_entry);
    for (size_t i = 0; i < zt_state_service_count(s); i++) {
        const struct zt_service *svc = zt_state_service_at(s, i);
        struct zt_xds_entry probe = {.name = zt_xds_service_name(svc)}, *pp = &probe;
        uint8_t *v = NULL;
        size_t len = 0;
        int rc;
        if (n_wl && bsearch(&pp, cat->v[ZT_ADS_ADDRESS], n_wl, sizeof(pp), cmp_entry)) {
            skip(&b, probe.name, "address name already used by a workload uid");
            free(probe.name);
            continue;
        }
        rc = zt_xds_encode_service(svc, &v, &len);
        cat->obj_box[OBJ_SVC][i] = add(&b, ZT_ADS_ADDRESS, probe.name, rc, v, len);
    }
    for (size_t i = 0; i < zt_state_policy_count(s); i++) {
        const struct zt_policy *p = zt_state_policy_at(s, i);
        uint8_t *v = NULL;
        size_t len = 0;
        int rc = zt_xds_encode_policy(p, &v, &len);
        cat->obj_box[OBJ_POL][i] = add(&b, ZT_ADS_AUTHORIZATION, zt_xds_policy_name(p), rc, v, len);
    }
    for (int t = 0; t < ZT_ADS_NTYPES; t++)
        if (cat->n[t])
            qsort(cat->v[t], cat->n[t], sizeof(struct zt_xds_entry *), cmp_entry);
    cat->skipped = b.skipped;
    *out = cat;
    return b.skipped;
}

/* ------------------------------------------------------------ update */

static size_t obj_count(const struct zt_state *s, int k)
{
    return k == OBJ_WL    ? zt_state_workload_count(s)
           : k == OBJ_SVC ? zt_state_service_count(s)
                          : zt_state_policy_count(s);
}

static const void *obj_at(const struct zt_state *s, int k, size_t i)
{
    return k == OBJ_WL    ? (const void *)zt_state_workload_at(s, i)
           : k == OBJ_SVC ? (const void *)zt_state_service_at(s, i)
                          : (const void *)zt_state_policy_at(s, i);
}

/* The key the snapshot sorts the object by. */
static const char *obj_key(const void *o, int k)
{
    return k == OBJ_WL    ? ((const struct zt_workload *)o)->uid
           : k == OBJ_SVC ? ((const struct zt_service *)o)->key
                          : ((const struct zt_policy *)o)->key;
}

/* A new entry for o, or NULL when it does not encode. */
static struct box *encode_obj(const void *o, int k)
{
    uint8_t *v = NULL;
    size_t len = 0;
    int rc;
    char *name;
    if (k == OBJ_WL) {
        rc = zt_xds_encode_workload(o, &v, &len);
        name = zt_xds_workload_name(o);
    } else if (k == OBJ_SVC) {
        rc = zt_xds_encode_service(o, &v, &len);
        name = zt_xds_service_name(o);
    } else {
        rc = zt_xds_encode_policy(o, &v, &len);
        name = zt_xds_policy_name(o);
    }
    if (rc) {
        free(v);
        free(name);
        return NULL;
    }
    return new_box(k == OBJ_POL ? ZT_ADS_AUTHORIZATION : ZT_ADS_ADDRESS, name, v, len);
}

struct ptrv {
    void **v;
    size_t n;
};

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void push(struct ptrv *pv, void *p)
{
    *(void **)zt_state_array_push(&pv->v, &pv->n, sizeof(*pv->v)) = p;
}

/* Matches the objects of s with those of prev's snapshot by key: the same
 * record keeps its entry; a new or replaced one is encoded (fresh), the
 * entries of records gone or replaced are collected (gone). Returns false
 * when an object does not encode or a new address name may clash with
 * another kind's (the full build decides those). */
static bool match_objects(struct zt_xds_catalog *cat, const struct zt_xds_catalog *prev,
                          const struct zt_state *s, struct ptrv *fresh, struct ptrv *gone)
{
    for (int k = OBJ_WL; k <= OBJ_POL; k++) {
        const struct zt_state *ps = prev->src;
        size_t n = obj_count(s, k), pn = obj_count(ps, k), i = 0, j = 0;
        int t = k == OBJ_POL ? ZT_ADS_AUTHORIZATION : ZT_ADS_ADDRESS;
        while (i < n || j < pn) {
            const void *o = i < n ? obj_at(s, k, i) : NULL;
            const void *po = j < pn ? obj_at(ps, k, j) : NULL;
            /* The common case, a shared record, needs no key comparison. */
            if (o && o == po) {
                cat->obj_box[k][i++] = prev->obj_box[k][j++];
                continue;
            }
            int c = !o ? 1 : !po ? -1 : strcmp(obj_key(o, k), obj_key(po, k));
            if (c >= 0) {
                push(&gone[t], prev->obj_box[k][j++]);
                if (c > 0)
                    continue;
            }
            struct box *bx = encode_obj(o, k);
            if (!bx)
                return false;
            cat->obj_box[k][i++] = bx;
            push(&fresh[t], bx);
            /* A workload uid that is also a service's "ns/hostname" (or
             * the reverse) leaves one of them out: not for this path. */
            if ((k == OBJ_WL && zt_state_service_by_key(s, bx->e.name)) ||
                (k == OBJ_SVC && zt_state_workload_by_uid(s, bx->e.name)))
                return false;
        }
    }
    return true;
}

/* prev's entries of type t without the gone ones, merged by name with the
 * fresh ones; the changed names recorded. */
static void merge_entries(struct zt_xds_catalog *cat, const struct zt_xds_catalog *prev, int t,
                          struct ptrv *fresh, struct ptrv *gone)
{
    size_t i = 0, j = 0, n = 0;
    struct ptrv names = {0};

    if (gone->n)
        qsort(gone->v, gone->n, sizeof(*gone->v), cmp_ptr);
    if (fresh->n)
        qsort(fresh->v, fresh->n, sizeof(*fresh->v), cmp_entry);
    cat->v[t] = zt_state_xcalloc(prev->n[t] + fresh->n + 1, sizeof(*cat->v[t]));
    while (i < prev->n[t] || j < fresh->n) {
        struct zt_xds_entry *pe = i < prev->n[t] ? prev->v[t][i] : NULL;
        struct zt_xds_entry *fe = j < fresh->n ? fresh->v[j] : NULL;
        if (pe && gone->n && bsearch(&pe, gone->v, gone->n, sizeof(*gone->v), cmp_ptr)) {
            i++;
            continue;
        }
        if (pe && (!fe || strcmp(pe->name, fe->name) < 0)) {
            cat->v[t][n++] = box_ref(pe);
            i++;
        } else {
            cat->v[t][n++] = fe;
            j++;
        }
    }
    cat->n[t] = n;

    for (size_t g = 0; g < gone->n; g++)
        push(&names, ((struct zt_xds_entry *)gone->v[g])->name);
    for (size_t f = 0; f < fresh->n; f++)
        push(&names, ((struct zt_xds_entry *)fresh->v[f])->name);
    if (names.n)
        qsort(names.v, names.n, sizeof(*names.v), cmp_strp);
    for (size_t k = 0; k < names.n; k++) {
        if (k && strcmp(names.v[k], names.v[k - 1]) == 0)
            continue;
        *(char **)zt_state_array_push(&cat->changed[t], &cat->n_changed[t], sizeof(char *)) =
            zt_state_xstrdup(names.v[k]);
    }
    free(names.v);
}

/* The state gives no kept types (routes, policies): a full build takes
 * prev's. */
static size_t build_keeping_kept(const struct zt_xds_catalog *prev, const struct zt_state *s,
                                 struct zt_xds_catalog **out, char *err, size_t errlen)
{
    size_t skipped = zt_xds_catalog_build(s, out, err, errlen);
    struct zt_xds_catalog *cat = *out;
    for (int t = ZT_ADS_FIRST_KEPT; prev && t < ZT_ADS_NTYPES; t++) {
        if (!prev->n[t])
            continue;
        cat->v[t] = zt_state_xcalloc(prev->n[t], sizeof(struct zt_xds_entry *));
        for (size_t i = 0; i < prev->n[t]; i++)
            cat->v[t][i] = box_ref(prev->v[t][i]);
        cat->n[t] = prev->n[t];
    }
    return skipped;
}

size_t zt_xds_catalog_update(const struct zt_xds_catalog *prev, const struct zt_state *s,
                             struct zt_xds_catalog **out, char *err, size_t errlen)
{
    struct zt_xds_catalog *cat;
    struct ptrv fresh[ZT_ADS_NTYPES] = {{0}}, gone[ZT_ADS_NTYPES] = {{0}};
    bool ok;

    if (!prev || prev->skipped)
        return build_keeping_kept(prev, s, out, err, errlen);
    if (errlen)
        err[0] = '\0';
    cat = cat_new(s);
    ok = match_objects(cat, prev, s, fresh, gone);
    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        if (ok)
            merge_entries(cat, prev, t, &fresh[t], &gone[t]);
        else
            for (size_t f = 0; f < fresh[t].n; f++)
                box_unref(fresh[t].v[f]);
        free(fresh[t].v);
        free(gone[t].v);
    }
    if (!ok) {
        zt_xds_catalog_unref(cat);
        return build_keeping_kept(prev, s, out, err, errlen);
    }
    cat->parent_gen = prev->gen;
    *out = cat;
    return 0;
}

static void push_name(char ***v, size_t *n, const char *name)
{
    *(char **)zt_state_array_push(v, n, sizeof(char *)) = zt_state_xstrdup(name);
}

struct zt_xds_catalog *zt_xds_catalog_with(const struct zt_xds_catalog *cat, enum zt_ads_type kept,
                                           const struct zt_xds_item *items, size_t n)
{
    const int rt = kept;
    struct zt_xds_catalog *tw = cat_new(cat->src);
    size_t i = 0, j = 0;

    if (rt < ZT_ADS_FIRST_KEPT || rt >= ZT_ADS_NTYPES)
        abort(); /* the state's types come from the snapshot only */
    /* Everything but type rt is cat's. */
    for (int k = 0; k < 3; k++)
        memcpy(tw->obj_box[k], cat->obj_box[k], obj_count(cat->src, k) * sizeof(struct box *));
    tw->skipped = cat->skipped;
    tw->parent_gen = cat->parent_gen;
    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        if (t == rt)
            continue;
        tw->v[t] = zt_state_xcalloc(cat->n[t] + 1, sizeof(struct zt_xds_entry *));
        for (size_t e = 0; e < cat->n[t]; e++)
            tw->v[t][e] = box_ref(cat->v[t][e]);
        tw->n[t] = cat->n[t];
        for (size_t c = 0; c < cat->n_changed[t]; c++)
            push_name(&tw->changed[t], &tw->n_changed[t], cat->changed[t][c]);
    }

    for (size_t k = 0; k < n; k++) {
        struct box *bx;
        uint8_t *v;
        if (!items[k].name || zt_xds_catalog_find(tw, rt, items[k].name))
            continue;
        v = zt_state_xcalloc(items[k].len ? items[k].len : 1, 1);
        memcpy(v, items[k].value, items[k].len);
        bx = new_box((enum zt_ads_type)rt, zt_state_xstrdup(items[k].name), v, items[k].len);
        /* Kept sorted as it grows, so the duplicate check above works. */
        size_t at = tw->n[rt];
        *(struct zt_xds_entry **)zt_state_array_push(&tw->v[rt], &tw->n[rt],
                                                     sizeof(struct zt_xds_entry *)) = &bx->e;
        while (at > 0 && strcmp(tw->v[rt][at - 1]->name, bx->e.name) > 0) {
            tw->v[rt][at] = tw->v[rt][at - 1];
            tw->v[rt][--at] = &bx->e;
        }
    }
    /* Share cat's entry when nothing changed (its version is the same), and
     * record the names that differ from cat's entries of type rt, which are
     * also the parent's: kept types only ever change through this
     * function. */
    while (i < tw->n[rt] || j < cat->n[rt]) {
        struct zt_xds_entry *e = i < tw->n[rt] ? tw->v[rt][i] : NULL;
        struct zt_xds_entry *pe = j < cat->n[rt] ? cat->v[rt][j] : NULL;
        int c = !e ? 1 : !pe ? -1 : strcmp(e->name, pe->name);
        if (c == 0 && strcmp(e->version, pe->version) == 0) {
            box_unref(e);
            tw->v[rt][i] = box_ref(pe);
        } else if (c <= 0) {
            push_name(&tw->changed[rt], &tw->n_changed[rt], e->name);
        } else {
            push_name(&tw->changed[rt], &tw->n_changed[rt], pe->name);
        }
        i += c <= 0;
        j += c >= 0;
    }
    return tw;
}

uint64_t zt_xds_catalog_gen(const struct zt_xds_catalog *cat)
{
    return cat->gen;
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
        for (size_t i = 0; i < cat->n[t]; i++)
            box_unref(cat->v[t][i]);
        free(cat->v[t]);
        for (size_t i = 0; i < cat->n_changed[t]; i++)
            free(cat->changed[t][i]);
        free(cat->changed[t]);
    }
    for (int k = 0; k < 3; k++)
        free(cat->obj_box[k]);
    zt_state_unref(cat->src);
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
    return cat->v[t][i];
}

const struct zt_xds_entry *zt_xds_catalog_find(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                                               const char *name)
{
    struct zt_xds_entry probe = {.name = (char *)name}, *pp = &probe, **hit;
    if (!type_ok(t) || !name || !cat->n[t])
        return NULL;
    hit = bsearch(&pp, cat->v[t], cat->n[t], sizeof(pp), cmp_entry);
    return hit ? *hit : NULL;
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

int zt_xds_catalog_delta(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                         const struct zt_xds_known *known, struct zt_xds_delta *out)
{
    memset(out, 0, sizeof(*out));
    out->type = t;
    if (!type_ok(t))
        return ZT_E_PROTO;
    out->cat = zt_xds_catalog_ref(cat);

    for (size_t i = 0; i < cat->n[t]; i++) {
        const struct zt_xds_entry *e = cat->v[t][i];
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
        qsort(out->removed, out->n_removed, sizeof(*out->removed), cmp_strp);
    return 0;
}

int zt_xds_catalog_delta_since(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                               const struct zt_xds_known *known, uint64_t known_gen,
                               struct zt_xds_delta *out)
{
    if (!type_ok(t) || !known || !known_gen || known_gen != cat->parent_gen)
        return zt_xds_catalog_delta(cat, t, known, out);
    memset(out, 0, sizeof(*out));
    out->type = t;
    out->cat = zt_xds_catalog_ref(cat);
    /* known holds exactly the parent's entries: only changed names can
     * differ. */
    for (size_t i = 0; i < cat->n_changed[t]; i++) {
        const char *name = cat->changed[t][i];
        const struct zt_xds_entry *e = zt_xds_catalog_find(cat, t, name);
        const char *have = zt_xds_known_get(known, t, name);
        if (e && !(have && strcmp(have, e->version) == 0))
            *(const struct zt_xds_entry **)zt_state_array_push(&out->updates, &out->n_updates,
                                                               sizeof(*out->updates)) = e;
        else if (!e && have)
            *(char **)zt_state_array_push(&out->removed, &out->n_removed, sizeof(char *)) =
                zt_state_xstrdup(name);
    }
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
