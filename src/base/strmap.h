/* A hash map from strings to strings, for names a peer chooses (xDS
 * resource names and versions): SipHash-2-4 under a random key per map, so
 * colliding names cannot be picked in advance; open addressing with linear
 * probing and backward-shift deletion (no tombstones after long runs of
 * removals); at most 3/4 full.
 *
 * An owning map copies keys and values in and frees them; a borrowing map
 * keeps the caller's pointers, which must outlive their entries. A value
 * may be NULL. Lengths are the caller's to cap. Not thread-safe. */
#ifndef ZT_BASE_STRMAP_H
#define ZT_BASE_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zt_strmap_entry {
    const char *key; /* NULL: a free slot */
    const char *value;
    uint64_t hash;
};

struct zt_strmap {
    struct zt_strmap_entry *v;
    size_t cap; /* 0 or a power of two */
    size_t n;
    uint64_t sip_key[2];
    bool owns;
};

void zt_strmap_init(struct zt_strmap *m, bool owns);
/* Removes every entry; the map stays usable (same key, same ownership). */
void zt_strmap_clear(struct zt_strmap *m);
/* The entry of key, NULL if none. Valid until the next change. */
const struct zt_strmap_entry *zt_strmap_find(const struct zt_strmap *m, const char *key);
/* Inserts key or replaces its value. */
void zt_strmap_put(struct zt_strmap *m, const char *key, const char *value);
/* Removes key; returns whether it was there. */
bool zt_strmap_del(struct zt_strmap *m, const char *key);
/* Walks the entries in no particular order: start with *pos = 0; NULL at
 * the end. The map must not change during the walk. */
const struct zt_strmap_entry *zt_strmap_next(const struct zt_strmap *m, size_t *pos);

/* SipHash-2-4 (Aumasson and Bernstein, 2012) of data[0..len) under key:
 * for tables keyed by what a peer chooses. */
uint64_t zt_siphash(const uint64_t key[2], const void *data, size_t len);

#endif
