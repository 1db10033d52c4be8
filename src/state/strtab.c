/* Shared strings of snapshot records. See state_int.h.
 *
 * At 200k workloads most string fields repeat: a few hundred namespaces,
 * service accounts and nodes, one trust domain, one cluster id, and empty
 * strings everywhere. A builder interns each field once it takes a record,
 * so a snapshot holds each distinct string once, with a reference count
 * per string instead of a copy per record. */
#include "state/state_int.h"

#include <stdlib.h>
#include <string.h>

struct rcstr {
    atomic_uint refs;
    char s[];
};

static struct rcstr *rc_of(const char *s)
{
    return (struct rcstr *)(void *)(s - offsetof(struct rcstr, s));
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void zt_state_strtab_init(struct zt_state_strtab *t)
{
    memset(t, 0, sizeof(*t));
}

void zt_state_strtab_cleanup(struct zt_state_strtab *t)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].s)
            zt_state_str_unref(t->slots[i].s);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

static void grow(struct zt_state_strtab *t)
{
    size_t cap = t->cap ? t->cap * 2 : 256;
    struct zt_state_strslot *slots = zt_state_xcalloc(cap, sizeof(*slots));
    for (size_t i = 0; i < t->cap; i++) {
        size_t h;
        if (!t->slots[i].s)
            continue;
        for (h = t->slots[i].hash & (cap - 1); slots[h].s; h = (h + 1) & (cap - 1))
            ;
        slots[h] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
}

char *zt_state_strtab_intern(struct zt_state_strtab *t, const char *s)
{
    uint64_t hash = hash_str(s);
    size_t h, len;
    struct rcstr *r;
    if (2 * (t->n + 1) > t->cap)
        grow(t);
    /* The stored hash spares most probes a visit to the string. */
    for (h = (size_t)hash & (t->cap - 1); t->slots[h].s; h = (h + 1) & (t->cap - 1))
        if (t->slots[h].hash == hash && strcmp(t->slots[h].s, s) == 0)
            return zt_state_str_ref(t->slots[h].s);
    len = strlen(s);
    r = zt_state_xcalloc(1, sizeof(*r) + len + 1);
    memcpy(r->s, s, len);
    /* One reference for the table, one for the caller. */
    atomic_init(&r->refs, 2);
    t->slots[h].s = r->s;
    t->slots[h].hash = hash;
    t->n++;
    return r->s;
}

char *zt_state_str_ref(char *s)
{
    atomic_fetch_add_explicit(&rc_of(s)->refs, 1, memory_order_relaxed);
    return s;
}

void zt_state_str_unref(char *s)
{
    struct rcstr *r;
    if (!s)
        return;
    r = rc_of(s);
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
        free(r);
}
