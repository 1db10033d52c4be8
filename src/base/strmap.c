#include "base/strmap.h"

#include "base/alloc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13) ^ v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17) ^ v[2];
    v[2] = rotl(v[2], 32);
}

uint64_t zt_siphash(const uint64_t key[2], const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i = 0;
    uint64_t v[4] = {
        key[0] ^ 0x736f6d6570736575ULL,
        key[1] ^ 0x646f72616e646f6dULL,
        key[0] ^ 0x6c7967656e657261ULL,
        key[1] ^ 0x7465646279746573ULL,
    };
    uint64_t m;
    for (; i + 8 <= len; i += 8) {
        m = 0;
        for (int j = 0; j < 8; j++)
            m |= (uint64_t)p[i + j] << (8 * j);
        v[3] ^= m;
        sip_round(v);
        sip_round(v);
        v[0] ^= m;
    }
    m = (uint64_t)len << 56;
    for (int j = 0; i + (size_t)j < len; j++)
        m |= (uint64_t)p[i + (size_t)j] << (8 * j);
    v[3] ^= m;
    sip_round(v);
    sip_round(v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for (int r = 0; r < 4; r++)
        sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static uint64_t siphash(const uint64_t key[2], const char *s)
{
    return zt_siphash(key, s, strlen(s));
}

void zt_strmap_init(struct zt_strmap *m, bool owns)
{
    memset(m, 0, sizeof(*m));
    m->owns = owns;
    if (getrandom(m->sip_key, sizeof(m->sip_key), GRND_NONBLOCK) != (ssize_t)sizeof(m->sip_key)) {
        /* No entropy yet (early boot): still distinct per map and run. */
        m->sip_key[0] = (uint64_t)(uintptr_t)m;
        m->sip_key[1] = (uint64_t)(uintptr_t)&m;
    }
}

static void free_entry(const struct zt_strmap *m, struct zt_strmap_entry *e)
{
    if (m->owns) {
        free((char *)e->key);
        free((char *)e->value);
    }
}

void zt_strmap_clear(struct zt_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->v[i].key)
            free_entry(m, &m->v[i]);
    free(m->v);
    m->v = NULL;
    m->cap = m->n = 0;
}

static size_t slot_of(const struct zt_strmap *m, const char *key, uint64_t h)
{
    if (!m->cap)
        return SIZE_MAX;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const struct zt_strmap_entry *e = &m->v[i];
        if (!e->key)
            return SIZE_MAX;
        if (e->hash == h && strcmp(e->key, key) == 0)
            return i;
    }
}

const struct zt_strmap_entry *zt_strmap_find(const struct zt_strmap *m, const char *key)
{
    if (!m->cap)
        return NULL;
    size_t i = slot_of(m, key, siphash(m->sip_key, key));
    return i == SIZE_MAX ? NULL : &m->v[i];
}

static void place(struct zt_strmap *m, struct zt_strmap_entry e)
{
    size_t i = e.hash & (m->cap - 1);
    while (m->v[i].key)
        i = (i + 1) & (m->cap - 1);
    m->v[i] = e;
}

static void grow(struct zt_strmap *m)
{
    struct zt_strmap_entry *old = m->v;
    size_t old_cap = m->cap;
    m->cap = old_cap ? old_cap * 2 : 16;
    m->v = zt_xcalloc(m->cap, sizeof(*m->v));
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key)
            place(m, old[i]);
    free(old);
}

static const char *copy(const struct zt_strmap *m, const char *s)
{
    return m->owns && s ? zt_xstrdup(s) : s;
}

void zt_strmap_put(struct zt_strmap *m, const char *key, const char *value)
{
    uint64_t h = siphash(m->sip_key, key);
    size_t i = slot_of(m, key, h);
    if (i != SIZE_MAX) {
        struct zt_strmap_entry *e = &m->v[i];
        bool same = e->value == value || (e->value && value && strcmp(e->value, value) == 0);
        if (m->owns && same)
            return; /* nothing to copy */
        if (m->owns)
            free((char *)e->value);
        e->value = copy(m, value);
        return;
    }
    if ((m->n + 1) * 4 > m->cap * 3)
        grow(m);
    place(m, (struct zt_strmap_entry){.key = copy(m, key), .value = copy(m, value), .hash = h});
    m->n++;
}

bool zt_strmap_del(struct zt_strmap *m, const char *key)
{
    size_t i = slot_of(m, key, siphash(m->sip_key, key));
    if (i == SIZE_MAX)
        return false;
    free_entry(m, &m->v[i]);
    size_t mask = m->cap - 1;
    /* Pulls back each following entry of the run whose home slot is not in
     * (i, j] cyclically, so every entry stays reachable from its home
     * without crossing a free slot. */
    for (size_t j = (i + 1) & mask; m->v[j].key; j = (j + 1) & mask) {
        size_t home = m->v[j].hash & mask;
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        m->v[i] = m->v[j];
        i = j;
    }
    m->v[i] = (struct zt_strmap_entry){0};
    m->n--;
    return true;
}

const struct zt_strmap_entry *zt_strmap_next(const struct zt_strmap *m, size_t *pos)
{
    while (*pos < m->cap) {
        const struct zt_strmap_entry *e = &m->v[(*pos)++];
        if (e->key)
            return e;
    }
    return NULL;
}
