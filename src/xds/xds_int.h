/* Helpers shared by the codecs of our own xDS resources (routes.c,
 * policies.c); private to src/xds.
 *
 * Encoding builds protobuf-c structs whose nodes are allocated in a small
 * arena (struct zt_xds_arena) and freed at once after packing; strings
 * point into the borrowed source struct.
 *
 * Decoding walks the unpacked message with the field path of each step in
 * a buffer of ZT_XDS_FIELD_LEN bytes ("rules[0].matches[2].path"), so the
 * first problem found is reported as "<field>: <reason>" in the caller's
 * err buffer. Nothing here logs. Out of memory aborts. */
#ifndef ZT_XDS_XDS_INT_H
#define ZT_XDS_XDS_INT_H

#include <stdbool.h>
#include <stddef.h>

#define ZT_XDS_FIELD_LEN 160

struct zt_xds_arena {
    void **allocs;
    size_t n_allocs, cap_allocs;
};

/* n zeroed items of size bytes (at least one), owned by the arena. */
void *zt_xds_arena_alloc(struct zt_xds_arena *e, size_t n, size_t size);
/* Frees everything allocated and empties the arena. */
void zt_xds_arena_cleanup(struct zt_xds_arena *e);

/* s, or "" for NULL, as protobuf-c's non-const string type. */
char *zt_xds_s_or_empty(const char *s);

struct zt_xds_dec {
    char *err;
    size_t errlen;
};

/* Writes "<field>: <reason>" to c->err and returns code. */
int zt_xds_bad(struct zt_xds_dec *c, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* dst (ZT_XDS_FIELD_LEN bytes) = "parent.k" / "parent.k[i]" ("k" alone
 * when parent is ""), ending in "..." when cut. */
void zt_xds_key(char *dst, const char *parent, const char *k);
void zt_xds_idx(char *dst, const char *parent, const char *k, size_t i);

/* A string of at most max bytes without control bytes, copied into *out;
 * "" gives NULL unless is_required (then it is an error) or keep_empty. */
int zt_xds_str(struct zt_xds_dec *c, const char *field, const char *v, size_t max, bool is_required,
               bool keep_empty, char **out);
/* n items where at most max are allowed (ZT_E_TOO_BIG otherwise). */
int zt_xds_list(struct zt_xds_dec *c, const char *field, size_t n, size_t max);

#endif
