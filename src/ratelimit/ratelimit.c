/* The local rate limit engine. See ratelimit.h for the semantics.
 *
 * A bucket is two integers: its level in ticks (one token is unit_ms
 * ticks, so a full bucket holds burst * unit_ms of them) and the
 * millisecond of its last update. Each elapsed millisecond adds `requests`
 * ticks, which is exactly requests tokens per unit with no rounding to
 * accumulate. The largest level, 1e9 tokens of an hour, is 3.6e15 ticks:
 * far from overflowing 64 bits, and a refill never multiplies more than
 * the milliseconds needed to fill the bucket.
 *
 * A keyed policy's table is an array of entries with hash chains and an
 * LRU list threaded through 32-bit indices; the array grows by doubling up
 * to max_keys and never shrinks (entries are reused in place). One mutex
 * guards it: the work under it is a hash probe and a few stores, short
 * next to a request, and a single table keeps the bound exact (shards
 * that each replaced only their own refilled entries would refuse a new
 * key while another shard held plenty). */
#include "ratelimit/ratelimit.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/strmap.h"
#include "http/head.h"

#include <assert.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define NONE UINT32_MAX
#define EVICT_SCAN 8      /* least recently used entries looked at for a full one */
#define STACK_APPLYING 16 /* applying policies handled without allocating */

const char *zt_ratelimit_unit_str(enum zt_ratelimit_unit u)
{
    switch (u) {
    case ZT_RATELIMIT_SECOND:
        return "second";
    case ZT_RATELIMIT_MINUTE:
        return "minute";
    case ZT_RATELIMIT_HOUR:
        return "hour";
    }
    return "?";
}

uint64_t zt_ratelimit_unit_ms(enum zt_ratelimit_unit u)
{
    return u == ZT_RATELIMIT_HOUR ? 3600000u : u == ZT_RATELIMIT_MINUTE ? 60000u : 1000u;
}

const char *zt_ratelimit_target_kind_str(enum zt_ratelimit_target_kind k)
{
    switch (k) {
    case ZT_RATELIMIT_GATEWAY:
        return "Gateway";
    case ZT_RATELIMIT_SERVICE:
        return "Service";
    case ZT_RATELIMIT_HTTP_ROUTE:
        return "HTTPRoute";
    case ZT_RATELIMIT_GRPC_ROUTE:
        return "GRPCRoute";
    }
    return "?";
}

void zt_ratelimit_policy_free(struct zt_ratelimit_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_targets; i++) {
        free(p->targets[i].name);
        free(p->targets[i].section);
    }
    free(p->targets);
    free(p->header);
    free(p->ns);
    free(p->name);
    free(p);
}

/* ---------------------------------------------------------------- buckets */

struct bucket {
    uint64_t level; /* ticks */
    uint64_t last;  /* ms of the last refill */
};

struct entry {
    uint64_t hash;
    struct bucket b;
    uint32_t chain;        /* next entry of the same hash chain */
    uint32_t newer, older; /* the LRU list */
};

struct table {
    pthread_mutex_t mu;
    struct entry *v;
    uint32_t n, cap; /* entries used, allocated */
    uint32_t *heads; /* mask + 1 chain heads (NULL until the first entry) */
    uint32_t mask;
    uint32_t newest, oldest;
};

/* A policy's buckets. */
struct pstate {
    const struct zt_ratelimit_policy *p;
    uint64_t tick; /* ticks per token: the unit in ms */
    uint64_t full; /* capacity in ticks */
    /* Guards `one` (the policy's bucket, or a keyed policy's absent one) and
     * `overflow`. With the table's lock it is taken second. */
    pthread_mutex_t mu;
    struct bucket one, overflow;
    struct table *keys; /* keyed policies only */
    atomic_uint_fast64_t passed, limited, untracked;
};

static void bucket_init(const struct pstate *ps, struct bucket *b, uint64_t now)
{
    b->level = ps->full;
    b->last = now;
}

/* Adds the ticks of the milliseconds since b->last; a clock behind
 * b->last (another worker's ran ahead) adds nothing and moves nothing. */
static void bucket_refill(const struct pstate *ps, struct bucket *b, uint64_t now)
{
    uint64_t dt;
    if (now <= b->last)
        return;
    dt = now - b->last;
    b->last = now;
    /* Full when dt * requests would pass the room left, tested by division
     * so that the product is only formed when it is at most that room. */
    if ((ps->full - b->level) / ps->p->requests < dt)
        b->level = ps->full;
    else
        b->level += dt * ps->p->requests;
}

/* Milliseconds until b gains its next whole token; 0 when full. */
static uint64_t bucket_next_ms(const struct pstate *ps, const struct bucket *b)
{
    uint64_t target;
    if (b->level >= ps->full)
        return 0;
    target = (b->level / ps->tick + 1) * ps->tick;
    return (target - b->level + ps->p->requests - 1) / ps->p->requests;
}

/* ---------------------------------------------------------------- key tables */

static void lru_unlink(struct table *t, uint32_t i)
{
    struct entry *e = &t->v[i];
    if (e->newer != NONE)
        t->v[e->newer].older = e->older;
    else
        t->newest = e->older;
    if (e->older != NONE)
        t->v[e->older].newer = e->newer;
    else
        t->oldest = e->newer;
}

static void lru_push(struct table *t, uint32_t i)
{
    struct entry *e = &t->v[i];
    e->newer = NONE;
    e->older = t->newest;
    if (t->newest != NONE)
        t->v[t->newest].newer = i;
    else
        t->oldest = i;
    t->newest = i;
}

static void chain_unlink(struct table *t, uint32_t i)
{
    uint32_t *pp = &t->heads[t->v[i].hash & t->mask];
    while (*pp != i)
        pp = &t->v[*pp].chain;
    *pp = t->v[i].chain;
}

static void chain_push(struct table *t, uint32_t i)
{
    uint32_t *head = &t->heads[t->v[i].hash & t->mask];
    t->v[i].chain = *head;
    *head = i;
}

/* Room for one more entry: doubles the array (up to max) and, when the
 * chains would grow longer than one entry on average, their heads. */
static void table_grow(struct table *t, uint32_t max)
{
    uint32_t cap = t->cap ? t->cap * 2 : 8, heads;
    if (cap > max)
        cap = max;
    t->v = zt_xrealloc(t->v, (size_t)cap * sizeof(*t->v));
    t->cap = cap;
    if (t->heads && t->mask + 1 >= cap)
        return;
    for (heads = 8; heads < cap; heads *= 2)
        ;
    free(t->heads);
    t->heads = zt_xmalloc((size_t)heads * sizeof(*t->heads));
    memset(t->heads, 0xff, (size_t)heads * sizeof(*t->heads));
    t->mask = heads - 1;
    for (uint32_t i = 0; i < t->n; i++)
        chain_push(t, i);
}

/* One of the least recently used entries whose bucket has refilled to
 * capacity (forgetting it loses nothing), or NONE. */
static uint32_t table_evictable(const struct pstate *ps, struct table *t, uint64_t now)
{
    uint32_t i = t->oldest;
    for (int k = 0; k < EVICT_SCAN && i != NONE; k++, i = t->v[i].newer) {
        bucket_refill(ps, &t->v[i].b, now);
        if (t->v[i].b.level == ps->full)
            return i;
    }
    return NONE;
}

/* The bucket of hash h (created full if new), or NULL when the table is
 * full and its least recently used buckets all hold state. A new key takes
 * a refilled entry's place before it takes room. Called with t->mu held. */
static struct bucket *table_get(struct pstate *ps, struct table *t, uint64_t h, uint64_t now)
{
    uint32_t i = t->heads ? t->heads[h & t->mask] : NONE;
    for (; i != NONE; i = t->v[i].chain)
        if (t->v[i].hash == h) {
            if (t->newest != i) {
                lru_unlink(t, i);
                lru_push(t, i);
            }
            return &t->v[i].b;
        }
    if ((i = table_evictable(ps, t, now)) != NONE) {
        chain_unlink(t, i);
        lru_unlink(t, i);
    } else if (t->n < ps->p->max_keys) {
        if (t->n == t->cap)
            table_grow(t, ps->p->max_keys);
        i = t->n++;
    } else {
        return NULL;
    }
    t->v[i].hash = h;
    bucket_init(ps, &t->v[i].b, now);
    chain_push(t, i);
    lru_push(t, i);
    return &t->v[i].b;
}

/* ---------------------------------------------------------------- the set */

struct tentry {
    uint8_t kind;
    const char *ns, *name, *section; /* section "" for a whole target */
    uint32_t policy;                 /* index in policies (sorted) */
};

struct zt_ratelimit_set {
    atomic_int refs;
    bool sealed;
    uint64_t sip_key[2];
    struct zt_ratelimit_policy **policies;
    size_t n, cap;
    struct pstate *st; /* n of them, once sealed */
    struct tentry *targets;
    size_t n_targets;
};

struct zt_ratelimit_set *zt_ratelimit_set_new(void)
{
    struct zt_ratelimit_set *s = zt_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    if (getrandom(s->sip_key, sizeof(s->sip_key), GRND_NONBLOCK) != (ssize_t)sizeof(s->sip_key)) {
        /* No entropy yet (early boot): still distinct per set and run. */
        s->sip_key[0] = (uint64_t)(uintptr_t)s;
        s->sip_key[1] = (uint64_t)(uintptr_t)&s;
    }
    return s;
}

void zt_ratelimit_set_add(struct zt_ratelimit_set *s, struct zt_ratelimit_policy *p)
{
    assert(!s->sealed);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->policies = zt_xrealloc(s->policies, s->cap * sizeof(*s->policies));
    }
    s->policies[s->n++] = p;
}

/* ns/name order; among equal names the later addition sorts first, so the
 * seal keeps it (the insertion index makes qsort's order total). */
struct added {
    struct zt_ratelimit_policy *p;
    size_t at;
};

static int cmp_added(const void *a, const void *b)
{
    const struct added *x = a, *y = b;
    int c = strcmp(x->p->ns, y->p->ns);
    if (!c)
        c = strcmp(x->p->name, y->p->name);
    return c ? c : x->at < y->at ? 1 : -1;
}

static int cmp_target(uint8_t ka, const char *nsa, const char *na, const char *sa, uint8_t kb,
                      const char *nsb, const char *nb, const char *sb)
{
    int c = (int)ka - (int)kb;
    if (!c)
        c = strcmp(nsa, nsb);
    if (!c)
        c = strcmp(na, nb);
    if (!c)
        c = strcmp(sa, sb);
    return c;
}

static int cmp_tentry(const void *a, const void *b)
{
    const struct tentry *x = a, *y = b;
    int c = cmp_target(x->kind, x->ns, x->name, x->section, y->kind, y->ns, y->name, y->section);
    return c ? c : x->policy < y->policy ? -1 : x->policy > y->policy;
}

static void pstate_init(struct pstate *ps, const struct zt_ratelimit_policy *p)
{
    ps->p = p;
    ps->tick = zt_ratelimit_unit_ms(p->unit);
    ps->full = (uint64_t)p->burst * ps->tick;
    pthread_mutex_init(&ps->mu, NULL);
    bucket_init(ps, &ps->one, 0);
    bucket_init(ps, &ps->overflow, 0);
    atomic_init(&ps->passed, 0);
    atomic_init(&ps->limited, 0);
    atomic_init(&ps->untracked, 0);
    if (p->key == ZT_RATELIMIT_KEY_NONE)
        return;
    ps->keys = zt_xcalloc(1, sizeof(*ps->keys));
    pthread_mutex_init(&ps->keys->mu, NULL);
    ps->keys->newest = ps->keys->oldest = NONE;
}

static void pstate_cleanup(struct pstate *ps)
{
    if (ps->keys) {
        pthread_mutex_destroy(&ps->keys->mu);
        free(ps->keys->v);
        free(ps->keys->heads);
        free(ps->keys);
    }
    pthread_mutex_destroy(&ps->mu);
}

void zt_ratelimit_set_seal(struct zt_ratelimit_set *s)
{
    struct added *v = zt_xcalloc(s->n ? s->n : 1, sizeof(*v));
    size_t n = 0, nt = 0;
    assert(!s->sealed);
    for (size_t i = 0; i < s->n; i++)
        v[i] = (struct added){s->policies[i], i};
    qsort(v, s->n, sizeof(*v), cmp_added);
    for (size_t i = 0; i < s->n; i++) {
        if (n && !strcmp(s->policies[n - 1]->ns, v[i].p->ns) &&
            !strcmp(s->policies[n - 1]->name, v[i].p->name)) {
            zt_ratelimit_policy_free(v[i].p);
            continue;
        }
        s->policies[n++] = v[i].p;
        nt += v[i].p->n_targets;
    }
    free(v);
    s->n = n;
    s->st = zt_xcalloc(n ? n : 1, sizeof(*s->st));
    s->targets = zt_xcalloc(nt ? nt : 1, sizeof(*s->targets));
    for (size_t i = 0; i < n; i++) {
        const struct zt_ratelimit_policy *p = s->policies[i];
        pstate_init(&s->st[i], p);
        for (size_t j = 0; j < p->n_targets; j++) {
            const struct zt_ratelimit_target *t = &p->targets[j];
            s->targets[s->n_targets++] =
                (struct tentry){t->kind, p->ns, t->name, t->section ? t->section : "", (uint32_t)i};
        }
    }
    qsort(s->targets, s->n_targets, sizeof(*s->targets), cmp_tentry);
    s->sealed = true;
}

size_t zt_ratelimit_set_count(const struct zt_ratelimit_set *s)
{
    return s ? s->n : 0;
}

const struct zt_ratelimit_policy *zt_ratelimit_set_at(const struct zt_ratelimit_set *s, size_t i)
{
    return s && i < s->n ? s->policies[i] : NULL;
}

struct zt_ratelimit_set *zt_ratelimit_set_ref(struct zt_ratelimit_set *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void zt_ratelimit_set_unref(struct zt_ratelimit_set *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->n; i++) {
        if (s->sealed)
            pstate_cleanup(&s->st[i]);
        zt_ratelimit_policy_free(s->policies[i]);
    }
    free(s->policies);
    free(s->st);
    free(s->targets);
    free(s);
}

int zt_ratelimit_set_stats(struct zt_ratelimit_set *s, size_t i, struct zt_ratelimit_stats *out)
{
    struct pstate *ps;
    memset(out, 0, sizeof(*out));
    if (!s || !s->sealed || i >= s->n)
        return ZT_E_NOT_FOUND;
    ps = &s->st[i];
    out->passed = atomic_load(&ps->passed);
    out->limited = atomic_load(&ps->limited);
    out->untracked = atomic_load(&ps->untracked);
    if (ps->keys) {
        pthread_mutex_lock(&ps->keys->mu);
        out->keys = ps->keys->n;
        pthread_mutex_unlock(&ps->keys->mu);
    }
    return 0;
}

/* ---------------------------------------------------------------- reloads */

static bool same_limit(const struct zt_ratelimit_policy *a, const struct zt_ratelimit_policy *b)
{
    return a->requests == b->requests && a->unit == b->unit && a->burst == b->burst &&
           a->key == b->key && (a->key != ZT_RATELIMIT_KEY_HEADER || !strcmp(a->header, b->header));
}

static void table_copy(struct table *dst, const struct table *src)
{
    if (!src->cap)
        return;
    dst->v = zt_xmalloc((size_t)src->cap * sizeof(*dst->v));
    memcpy(dst->v, src->v, (size_t)src->n * sizeof(*dst->v));
    dst->heads = zt_xmalloc(((size_t)src->mask + 1) * sizeof(*dst->heads));
    memcpy(dst->heads, src->heads, ((size_t)src->mask + 1) * sizeof(*dst->heads));
    dst->n = src->n;
    dst->cap = src->cap;
    dst->mask = src->mask;
    dst->newest = src->newest;
    dst->oldest = src->oldest;
}

/* The index of ns/name in s's (sorted) policies, or -1. */
static ptrdiff_t find_policy(const struct zt_ratelimit_set *s, const char *ns, const char *name)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        int c = strcmp(s->policies[m]->ns, ns);
        if (!c)
            c = strcmp(s->policies[m]->name, name);
        if (!c)
            return (ptrdiff_t)m;
        if (c < 0)
            lo = m + 1;
        else
            hi = m;
    }
    return -1;
}

void zt_ratelimit_set_inherit(struct zt_ratelimit_set *s, struct zt_ratelimit_set *old)
{
    if (!old)
        return;
    assert(s->sealed && old->sealed);
    /* The tables hash keys under the set's key: s's are all empty yet. */
    memcpy(s->sip_key, old->sip_key, sizeof(s->sip_key));
    for (size_t i = 0; i < s->n; i++) {
        struct pstate *ps = &s->st[i];
        ptrdiff_t j = find_policy(old, ps->p->ns, ps->p->name);
        struct pstate *ops;
        if (j < 0)
            continue;
        ops = &old->st[j];
        atomic_store(&ps->passed, atomic_load(&ops->passed));
        atomic_store(&ps->limited, atomic_load(&ops->limited));
        atomic_store(&ps->untracked, atomic_load(&ops->untracked));
        if (!same_limit(ps->p, ops->p))
            continue;
        /* The check's order: the table's lock, then the policy's. */
        if (ops->keys)
            pthread_mutex_lock(&ops->keys->mu);
        pthread_mutex_lock(&ops->mu);
        ps->one = ops->one;
        ps->overflow = ops->overflow;
        if (ops->keys && ops->keys->n <= ps->p->max_keys)
            table_copy(ps->keys, ops->keys);
        pthread_mutex_unlock(&ops->mu);
        if (ops->keys)
            pthread_mutex_unlock(&ops->keys->mu);
    }
}

/* ---------------------------------------------------------------- the check */

/* Policy indices, on the stack unless many apply. */
struct idxbuf {
    uint32_t *v;
    size_t n, cap;
    uint32_t stack[STACK_APPLYING];
};

static void idx_push(struct idxbuf *b, uint32_t i)
{
    if (b->n == b->cap) {
        uint32_t *v = zt_xmalloc(2 * b->cap * sizeof(*v));
        memcpy(v, b->v, b->n * sizeof(*v));
        if (b->v != b->stack)
            free(b->v);
        b->v = v;
        b->cap *= 2;
    }
    b->v[b->n++] = i;
}

/* Appends to b the policies attached to target (kind, ns, name, section). */
static void find_target(const struct zt_ratelimit_set *s, uint8_t kind, const char *ns,
                        const char *name, const char *section, struct idxbuf *b)
{
    size_t lo = 0, hi = s->n_targets;
    if (!ns || !name)
        return;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        const struct tentry *e = &s->targets[m];
        if (cmp_target(e->kind, e->ns, e->name, e->section, kind, ns, name, section) < 0)
            lo = m + 1;
        else
            hi = m;
    }
    for (; lo < s->n_targets; lo++) {
        const struct tentry *e = &s->targets[lo];
        if (cmp_target(e->kind, e->ns, e->name, e->section, kind, ns, name, section))
            break;
        idx_push(b, e->policy);
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* One applying policy's bucket, locked. */
struct held {
    struct pstate *ps;
    struct bucket *b;
    pthread_mutex_t *first, *second; /* second: NULL or ps->mu after the table's */
    bool untracked;
};

static void acquire(const struct zt_ratelimit_set *s, struct pstate *ps,
                    const struct zt_ratelimit_request *rq, uint64_t now, struct held *h)
{
    const char *v = NULL;
    memset(h, 0, sizeof(*h));
    h->ps = ps;
    if (ps->p->key == ZT_RATELIMIT_KEY_PRINCIPAL)
        v = rq->source_principal;
    else if (ps->p->key == ZT_RATELIMIT_KEY_HEADER)
        v = rq->head ? zt_http_head_get(rq->head, ps->p->header) : NULL;
    if (v) {
        uint64_t hash = zt_siphash(s->sip_key, v, strlen(v));
        struct table *t = ps->keys;
        pthread_mutex_lock(&t->mu);
        h->first = &t->mu;
        h->b = table_get(ps, t, hash, now);
        if (!h->b) {
            pthread_mutex_lock(&ps->mu);
            h->second = &ps->mu;
            h->b = &ps->overflow;
            h->untracked = true;
        }
    } else {
        pthread_mutex_lock(&ps->mu);
        h->first = &ps->mu;
        h->b = &ps->one;
    }
    bucket_refill(ps, h->b, now);
}

/* Whether x decides over y (the current choice), limited or not. */
static bool decides_over(const struct held *x, uint64_t x_next, const struct held *y,
                         uint64_t y_next, bool limited)
{
    uint64_t xr = x->b->level / x->ps->tick, yr = y->b->level / y->ps->tick;
    if (limited) {
        if ((xr == 0) != (yr == 0))
            return xr == 0;
        return x_next > y_next;
    }
    return xr < yr || (xr == yr && x_next > y_next);
}

int zt_ratelimit_check(struct zt_ratelimit_set *s, const struct zt_ratelimit_request *rq,
                       uint64_t now_ms, struct zt_ratelimit_result *res)
{
    struct idxbuf ib;
    struct held stack_held[STACK_APPLYING], *held = stack_held;
    uint32_t *idx;
    size_t m = 0, best = 0;
    uint64_t best_next = 0;
    uint8_t route_kind = rq->route_is_grpc ? ZT_RATELIMIT_GRPC_ROUTE : ZT_RATELIMIT_HTTP_ROUTE;
    bool limited = false;

    memset(res, 0, sizeof(*res));
    /* An unsealed set has no index: checking it would pass everything. */
    assert(!s || s->sealed);
    if (!s || !s->n_targets)
        return 0;
    ib.v = ib.stack;
    ib.n = 0;
    ib.cap = STACK_APPLYING;
    find_target(s, ZT_RATELIMIT_GATEWAY, rq->gateway_ns, rq->gateway_name, "", &ib);
    find_target(s, ZT_RATELIMIT_SERVICE, rq->service_ns, rq->service_name, "", &ib);
    find_target(s, route_kind, rq->route_ns, rq->route_name, "", &ib);
    if (rq->rule_name && *rq->rule_name)
        find_target(s, route_kind, rq->route_ns, rq->route_name, rq->rule_name, &ib);
    if (!ib.n)
        return 0;
    idx = ib.v;
    /* A policy attached twice (its gateway and its service) counts once;
     * ascending order is the lock order. */
    qsort(idx, ib.n, sizeof(*idx), cmp_u32);
    for (size_t i = 0; i < ib.n; i++)
        if (!m || idx[m - 1] != idx[i])
            idx[m++] = idx[i];
    if (m > STACK_APPLYING)
        held = zt_xmalloc(m * sizeof(*held));
    for (size_t i = 0; i < m; i++) {
        acquire(s, &s->st[idx[i]], rq, now_ms, &held[i]);
        limited = limited || held[i].b->level < held[i].ps->tick;
    }
    for (size_t i = 0; i < m; i++) {
        struct held *h = &held[i];
        uint64_t next;
        if (!limited)
            h->b->level -= h->ps->tick;
        next = bucket_next_ms(h->ps, h->b);
        if (i == 0 || decides_over(h, next, &held[best], best_next, limited)) {
            best = i;
            best_next = next;
        }
    }
    res->applied = true;
    res->limited = limited;
    res->n_applied = m;
    res->policy = held[best].ps->p;
    res->untracked = held[best].untracked;
    res->limit = res->policy->requests;
    res->burst = res->policy->burst;
    res->unit = res->policy->unit;
    res->remaining = (uint32_t)(held[best].b->level / held[best].ps->tick);
    res->reset_ms = best_next;
    res->reset_s = (best_next + 999) / 1000;
    for (size_t i = m; i-- > 0;) {
        struct held *h = &held[i];
        if (h->second)
            pthread_mutex_unlock(h->second);
        pthread_mutex_unlock(h->first);
        if (h->untracked)
            atomic_fetch_add(&h->ps->untracked, 1);
        if (!limited)
            atomic_fetch_add(&h->ps->passed, 1);
    }
    if (limited)
        atomic_fetch_add(&held[best].ps->limited, 1);
    if (held != stack_held)
        free(held);
    if (idx != ib.stack)
        free(idx);
    return limited ? ZT_E_RATE_LIMITED : 0;
}
