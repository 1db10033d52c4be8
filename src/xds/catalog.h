/* What a delta-xDS server serves, and what each of its clients has: the
 * sans-I/O half of `ztunnel control` (wire facts 3.1, server side).
 *
 * struct zt_xds_catalog is the resource table made from one state snapshot:
 * one entry per workload and service (type ZT_ADS_ADDRESS, named by uid and
 * "ns/hostname") and per policy (ZT_ADS_AUTHORIZATION, "ns/name"), and the
 * waypoint routes and policies set with zt_xds_catalog_with (the kept
 * types: ZT_ADS_ROUTE, ZT_ADS_AUTHZ_POLICY, ZT_ADS_AUTHN_POLICY). Each
 * entry holds the Any value bytes (encode.h) and a version: the lowercase hex
 * of the first 8 bytes of the SHA-256 of those bytes, so equal objects get
 * equal versions in every build and every process. A catalog is immutable
 * once built and reference counted (atomically): build one per snapshot and
 * share it between streams and threads. It keeps a reference to the
 * snapshot it was built from, so that the next one can be built from it in
 * O(changes) (zt_xds_catalog_update).
 *
 * struct zt_xds_known is one stream's view of one client: name -> version
 * per type, seeded from the request's initial_resource_versions and updated
 * with every delta sent. A known map belongs to one stream (not
 * thread-safe).
 *
 * struct zt_xds_delta is the difference between the two for one type: the
 * entries to send (new, or known with another version) and the names to
 * remove (known but not in the catalog), both in name order.
 *
 * Typical use by the server:
 *
 *   cat = new snapshot ? build(state) : current;          (once, shared)
 *   on a stream's first request of type t:
 *       known_seed(k, t, initial names, versions, n);
 *   whenever cat changed or after the seed:
 *       catalog_delta(cat, t, k, &d);
 *       if (!delta_is_empty(&d)) { send d as one response; known_apply(k, t, cat, &d); }
 *       delta_cleanup(&d);
 *
 * Errors: 0 success; ZT_E_PROTO for a type outside enum zt_ads_type (or a
 * NULL name, or a delta applied with another type or catalog); ZT_E_TOO_BIG
 * for peer input over a cap. Nothing here logs. Out of memory aborts. */
#ifndef ZT_XDS_CATALOG_H
#define ZT_XDS_CATALOG_H

#include "state/state.h"
#include "xds/ads.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hex digits of a version string (8 bytes of SHA-256). */
#define ZT_XDS_VERSION_LEN 16

/* ---------------------------------------------------------------- catalog */

/* One resource. Every field is owned by the catalog and read-only; valid as
 * long as a reference to the catalog is held. */
struct zt_xds_entry {
    enum zt_ads_type type;
    char *name;                           /* the resource name */
    char version[ZT_XDS_VERSION_LEN + 1]; /* lowercase hex, NUL-terminated */
    uint8_t *value;                       /* Any value bytes (never NULL) */
    size_t len;                           /* bytes at value (may be 0) */
};

struct zt_xds_catalog;

/* Builds the catalog of snapshot s (borrowed; nothing of it is kept). *out
 * always receives a new catalog (one reference, owned by the caller), also
 * when objects were left out. Returns the number of objects left out: those
 * that fail to encode, and an address whose name is already taken by
 * another (a service whose "ns/hostname" equals a workload uid: the
 * workload is kept). When it is not 0, err (errlen bytes) holds the first
 * reason found, as "<name>: <reason>" (workloads are encoded first, then
 * services, then policies, each in key order); otherwise err is "". */
size_t zt_xds_catalog_build(const struct zt_state *s, struct zt_xds_catalog **out, char *err,
                            size_t errlen);

/* The catalog of s built on prev (borrowed; may be NULL), with the result
 * and errors of zt_xds_catalog_build. An object of s that is the very
 * record prev was built from (same pointer: snapshots share unchanged
 * records, state.h) keeps prev's entry, shared, without being encoded
 * again; only new or replaced records are encoded, and the entries are
 * merged in name order without sorting them all. The new catalog also
 * records which names differ from prev's, for zt_xds_catalog_delta_since.
 * Falls back to a full build when prev left objects out, or when a new
 * record does not encode or its name clashes with another kind's. */
size_t zt_xds_catalog_update(const struct zt_xds_catalog *prev, const struct zt_state *s,
                             struct zt_xds_catalog **out, char *err, size_t errlen);

/* One resource given as bytes (zt_xds_catalog_with). Borrowed. */
struct zt_xds_item {
    const char *name;
    const uint8_t *value;
    size_t len;
};

/* cat's twin (cat borrowed) whose entries of kept type t (t >=
 * ZT_ADS_FIRST_KEPT: a state type here is a bug, abort) are items[0..n)
 * (copied; any order; of a name given twice the first is kept). An entry
 * whose name and bytes cat already has is shared. Meant for a catalog just
 * built or updated, before it is shared: the twin takes cat's place as the
 * child of cat's parent (zt_xds_catalog_delta_since works from that parent
 * for every type), and zt_xds_catalog_update on the twin carries its kept
 * entries over. Never NULL. */
struct zt_xds_catalog *zt_xds_catalog_with(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                                           const struct zt_xds_item *items, size_t n);

/* A number no other catalog of this process has (never 0). */
uint64_t zt_xds_catalog_gen(const struct zt_xds_catalog *cat);

/* Takes one more reference; returns cat. */
struct zt_xds_catalog *zt_xds_catalog_ref(const struct zt_xds_catalog *cat);
/* Drops one reference; the last one frees the catalog. NULL is a no-op. */
void zt_xds_catalog_unref(const struct zt_xds_catalog *cat);

/* Entries of type t (0 for a type outside the enum). */
size_t zt_xds_catalog_count(const struct zt_xds_catalog *cat, enum zt_ads_type t);
/* The i-th entry of type t in name order (strcmp), or NULL if i >= count. */
const struct zt_xds_entry *zt_xds_catalog_at(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                                             size_t i);
/* The entry of type t called name (borrowed), or NULL. O(log n). */
const struct zt_xds_entry *zt_xds_catalog_find(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                                               const char *name);

/* ---------------------------------------------------------------- known */

struct zt_xds_known;

/* An empty map. Never NULL. */
struct zt_xds_known *zt_xds_known_new(void);
/* NULL is a no-op. */
void zt_xds_known_free(struct zt_xds_known *k);

/* Records that the client has name at version (both borrowed and copied;
 * version NULL reads as ""). Returns 0, ZT_E_PROTO (bad t, NULL name) or
 * ZT_E_TOO_BIG (name over ZT_ADS_MAX_NAME or version over
 * ZT_ADS_MAX_VERSION bytes); on error k is unchanged. */
int zt_xds_known_set(struct zt_xds_known *k, enum zt_ads_type t, const char *name,
                     const char *version);
/* Forgets name. Returns whether it was there. */
bool zt_xds_known_remove(struct zt_xds_known *k, enum zt_ads_type t, const char *name);
/* The version recorded for name, or NULL. Borrowed until k next changes. */
const char *zt_xds_known_get(const struct zt_xds_known *k, enum zt_ads_type t, const char *name);
size_t zt_xds_known_count(const struct zt_xds_known *k, enum zt_ads_type t);
/* Forgets every name of type t. */
void zt_xds_known_clear(struct zt_xds_known *k, enum zt_ads_type t);

/* Sets n names of type t from a request's initial_resource_versions
 * (names[i] -> versions[i]; arrays and strings borrowed; a NULL version
 * reads as ""; a name given twice keeps the last version). All or nothing:
 * returns 0, or ZT_E_TOO_BIG (n over ZT_ADS_MAX_RESOURCES, or a string over
 * its cap) / ZT_E_PROTO (bad t, a NULL name) with k unchanged. */
int zt_xds_known_seed(struct zt_xds_known *k, enum zt_ads_type t, const char *const *names,
                      const char *const *versions, size_t n);

/* ---------------------------------------------------------------- delta */

/* What to send for one type. Filled by zt_xds_catalog_delta, released by
 * zt_xds_delta_cleanup. The delta holds its own reference to the catalog, so
 * updates stay valid until cleanup. */
struct zt_xds_delta {
    enum zt_ads_type type;
    const struct zt_xds_catalog *cat;    /* referenced by the delta */
    const struct zt_xds_entry **updates; /* borrowed from cat; name order */
    size_t n_updates;
    char **removed; /* owned by the delta (copies); name order */
    size_t n_removed;
};

/* Fills *out (any previous content is overwritten, not freed) with the
 * entries of type t that known lacks or has at another version, and the
 * names of type t that known has and cat does not. cat and known are
 * borrowed (cat gets one reference held by *out); known may be NULL (the
 * client has nothing: every entry is an update). Returns 0, or ZT_E_PROTO
 * for a bad t (then *out is an empty delta that cleanup accepts). */
int zt_xds_catalog_delta(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                         const struct zt_xds_known *known, struct zt_xds_delta *out);

/* As zt_xds_catalog_delta, in O(names changed) when known is exactly what
 * the catalog of generation known_gen held for type t (a stream that sent
 * every delta of that catalog: see zt_xds_known_apply) and cat was updated
 * from that catalog (zt_xds_catalog_update). Otherwise (known_gen 0 or
 * another catalog) it is zt_xds_catalog_delta. */
int zt_xds_catalog_delta_since(const struct zt_xds_catalog *cat, enum zt_ads_type t,
                               const struct zt_xds_known *known, uint64_t known_gen,
                               struct zt_xds_delta *out);

/* True when the delta has neither updates nor removals. */
bool zt_xds_delta_is_empty(const struct zt_xds_delta *d);

/* Frees what the delta owns, drops its catalog reference and zeroes it.
 * Safe on a zeroed delta and twice in a row. */
void zt_xds_delta_cleanup(struct zt_xds_delta *d);

/* Records d as sent: every update's version is set in known, every removed
 * name is forgotten. t and cat must be the ones d was computed with
 * (ZT_E_PROTO otherwise, known unchanged). Returns 0. */
int zt_xds_known_apply(struct zt_xds_known *known, enum zt_ads_type t,
                       const struct zt_xds_catalog *cat, const struct zt_xds_delta *d);

#endif
