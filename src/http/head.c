/* HTTP message heads (head.h): owned copies, lower-case names, hard caps. */
#include "http/head.h"

#include "base/err.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A block of strings: bump-allocated, never moved (pointers into it are
 * handed out), freed whole. */
struct zt_http_strings {
    struct zt_http_strings *next; /* older, smaller blocks */
    size_t used, cap;
    char data[];
};

#define STRINGS_FIRST 512 /* a typical head's strings fit in one block */

/* A NUL-terminated copy of s[0..n) in h's blocks. */
static char *dup_n(struct zt_http_head *h, const char *s, size_t n)
{
    struct zt_http_strings *b = h->strings;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = b ? 2 * b->cap : STRINGS_FIRST;
        while (cap < n + 1)
            cap *= 2;
        b = malloc(sizeof(*b) + cap);
        if (!b)
            abort();
        b->next = h->strings;
        b->used = 0;
        b->cap = cap;
        h->strings = b;
    }
    char *p = b->data + b->used;
    memcpy(p, s, n);
    p[n] = '\0';
    b->used += n + 1;
    return p;
}

static void free_blocks(struct zt_http_strings *b)
{
    while (b) {
        struct zt_http_strings *next = b->next;
        free(b);
        b = next;
    }
}

void zt_http_head_init(struct zt_http_head *h, bool is_response)
{
    memset(h, 0, sizeof(*h));
    h->is_response = is_response;
    h->version = 1;
}

void zt_http_head_cleanup(struct zt_http_head *h)
{
    free_blocks(h->strings);
    free(h->fields);
    memset(h, 0, sizeof(*h));
}

void zt_http_head_reset(struct zt_http_head *h, bool is_response)
{
    struct zt_http_field *f = h->fields;
    size_t cap = h->cap_fields;
    struct zt_http_strings *b = h->strings;
    if (b) {
        /* The newest block is the largest: kept, emptied. */
        free_blocks(b->next);
        b->next = NULL;
        b->used = 0;
    }
    memset(h, 0, sizeof(*h));
    h->fields = f;
    h->cap_fields = cap;
    h->strings = b;
    h->is_response = is_response;
    h->version = 1;
}

int zt_http_head_set_part(struct zt_http_head *h, char **slot, const char *value, size_t len)
{
    size_t old = *slot ? strlen(*slot) : 0;
    size_t add = value ? len : 0;
    if (h->bytes - old + add > ZT_HTTP_HEAD_MAX)
        return ZT_E_TOO_BIG;
    *slot = value ? dup_n(h, value, len) : NULL;
    h->bytes = h->bytes - old + add;
    return 0;
}

int zt_http_head_add(struct zt_http_head *h, const char *name, size_t name_len, const char *value,
                     size_t value_len)
{
    if (h->n_fields >= ZT_HTTP_MAX_FIELDS || name_len + value_len > ZT_HTTP_HEAD_MAX - h->bytes)
        return ZT_E_TOO_BIG;
    if (h->n_fields == h->cap_fields) {
        size_t cap = h->cap_fields ? 2 * h->cap_fields : 16;
        if (cap > ZT_HTTP_MAX_FIELDS)
            cap = ZT_HTTP_MAX_FIELDS;
        struct zt_http_field *f = realloc(h->fields, cap * sizeof(*f));
        if (!f)
            abort();
        h->fields = f;
        h->cap_fields = cap;
    }
    struct zt_http_field *f = &h->fields[h->n_fields++];
    f->name = dup_n(h, name, name_len);
    for (char *c = f->name; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    f->value = dup_n(h, value, value_len);
    h->bytes += name_len + value_len;
    return 0;
}

static size_t field_bytes(const struct zt_http_field *f)
{
    return strlen(f->name) + strlen(f->value);
}

size_t zt_http_head_remove(struct zt_http_head *h, const char *name)
{
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < h->n_fields; i++) {
        struct zt_http_field *f = &h->fields[i];
        if (strcasecmp(f->name, name) == 0) {
            h->bytes -= field_bytes(f);
            removed++;
        } else {
            h->fields[kept++] = *f;
        }
    }
    h->n_fields = kept;
    return removed;
}

int zt_http_head_set(struct zt_http_head *h, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), freed = 0, n = 0;
    for (size_t i = 0; i < h->n_fields; i++) {
        if (strcasecmp(h->fields[i].name, name) == 0) {
            freed += field_bytes(&h->fields[i]);
            n++;
        }
    }
    if (h->bytes - freed + nl + vl > ZT_HTTP_HEAD_MAX ||
        (n == 0 && h->n_fields >= ZT_HTTP_MAX_FIELDS))
        return ZT_E_TOO_BIG;
    zt_http_head_remove(h, name);
    return zt_http_head_add(h, name, nl, value, vl);
}

const char *zt_http_head_get(const struct zt_http_head *h, const char *name)
{
    for (size_t i = 0; i < h->n_fields; i++)
        if (strcasecmp(h->fields[i].name, name) == 0)
            return h->fields[i].value;
    return NULL;
}

size_t zt_http_head_count(const struct zt_http_head *h, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n_fields; i++)
        n += strcasecmp(h->fields[i].name, name) == 0;
    return n;
}
