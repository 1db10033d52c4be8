/* The policy index of a snapshot: what zt_authz_check consults so that a
 * check costs about the same with 10 000 policies as with 10.
 *
 * Built once per snapshot (zt_state_derived), from every policy:
 *
 * - Each policy is compiled: a Match keeps only its populated field groups
 *   ("tests"), with exact strings hashed and sorted, prefix/suffix/presence
 *   apart, CIDRs as merged sorted address ranges and ports as a sorted set.
 *   Entries that can never match are dropped where that is exact (a port
 *   above 65535, a CIDR with host bits set, a service account pair
 *   containing '/'), then Matches, Clauses and Rules that can never match.
 * - Each compiled Rule gets a guard: one attribute the connection must have
 *   for the rule to match at all, taken from a clause whose every Match
 *   requires it: an exact principal, the namespace (from exact namespaces or
 *   service accounts), the source address within one of some CIDRs, or the
 *   destination port. Rules without one are "scan" rules.
 * - Policies are grouped as they apply: one group of GLOBAL policies and one
 *   group per namespace of its NAMESPACE policies. A group maps every guard
 *   value to the rules it guards (posting lists), so a check evaluates only
 *   the rules whose guard the connection satisfies, plus the scan rules.
 *   Source CIDR guards are looked up once per distinct prefix length in the
 *   group, with the address masked to it.
 * - A map from policy key to compiled policy serves the keys a workload
 *   lists; such a policy is evaluated alone, its rules filtered by their
 *   guards.
 *
 * Results are the reference evaluator's (authz.c), including which policy
 * is reported: the first DENY in visiting order (GLOBAL and same-namespace
 * policies in key order, then the workload's list in its order). Each
 * candidate carries its position in that order ("ord"), and the lowest
 * matching one wins. Everything is allocated from one arena, freed at once
 * with the snapshot. */
#include "authz/authz_int.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---------------------------------------------------------------- arena */

/* Chunks come straight from mmap: the pages arrive zeroed (no memset, which
 * calloc would do on recycled heap memory) and populated in one call rather
 * than one fault at a time; an index of 10 000 policies takes tens of MB.
 * Sizes grow geometrically so that a small index stays small. */
#define CHUNK_MIN (64u << 10)
#define CHUNK_MAX (4u << 20)

struct chunk {
    struct chunk *next;
    size_t used, cap; /* cap: bytes after the header */
    max_align_t data[];
};

struct arena {
    struct chunk *head;
    size_t next_size;
    size_t bytes; /* total mapped */
};

static void *arena_alloc(struct arena *a, size_t n)
{
    struct chunk *c = a->head;
    void *p;
    n = (n + 7) & ~(size_t)7;
    if (!c || c->cap - c->used < n) {
        size_t size = a->next_size ? a->next_size : CHUNK_MIN;
        while (size - sizeof(*c) < n)
            size *= 2;
        c = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1,
                 0);
        if (c == MAP_FAILED)
            abort(); /* out of memory (STYLE.md) */
        c->cap = size - sizeof(*c);
        c->next = a->head;
        a->head = c;
        a->bytes += size;
        a->next_size = size < CHUNK_MAX ? size * 2 : CHUNK_MAX;
    }
    p = (char *)c->data + c->used;
    c->used += n;
    return p; /* zeroed: fresh pages, never reused */
}

#define ARENA_NEW(a, type, n) ((type *)arena_alloc((a), sizeof(type) * (size_t)(n)))

static void arena_free(struct arena *a)
{
    struct chunk *c = a->head;
    while (c) {
        struct chunk *next = c->next;
        munmap(c, c->cap + sizeof(*c));
        c = next;
    }
    a->head = NULL;
}

/* ---------------------------------------------------------------- hashing */

/* Strings come from configuration and are only looked up with a peer's
 * value, so a plain multiplicative hash is enough; equality is always
 * confirmed on the bytes. */
static uint64_t mix(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        b += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, b, n);
        h = (h ^ w) * 0x94d049bb133111ebull;
    }
    return mix(h);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 8;
    while (c < n)
        c <<= 1;
    return c;
}

/* ---------------------------------------------------------------- compiled form */

enum fld { FLD_NS, FLD_SA, FLD_PRIN, FLD_SRC, FLD_DST, FLD_PORT };

struct cstr {
    uint64_t h;
    const char *s; /* never NULL: a NULL value is "" as in the reference */
    uint32_t len;
    uint8_t kind; /* enum zt_strmatch_kind */
};

struct csa {
    uint64_t h_ns, h_sa;
    const char *ns, *sa;
    size_t ns_len, sa_len;
};

struct crange {
    uint8_t family;
    uint8_t lo[16], hi[16];
};

/* One populated field group of a Match. */
struct ctest {
    uint8_t field;    /* enum fld */
    bool negate;      /* the not_ list */
    bool presence;    /* strings: a presence entry */
    uint32_t n_exact; /* strings: v[0..n_exact) are EXACT, sorted by hash */
    uint32_t n;
    const void *v; /* cstr, csa, crange or uint16_t, by field */
};

struct cmatch {
    uint32_t n_tests; /* 0: matches every connection */
    const struct ctest *tests;
};

struct cclause {
    uint32_t n_matches; /* >= 1: clauses that always match are dropped */
    uint32_t orig;      /* its index in the policy's rule */
    const struct cmatch *matches;
};

enum guard_kind { GK_NONE = 0, GK_PRIN, GK_NS, GK_SRC, GK_PORT };

/* A guard value: a string (PRIN, NS: s, len), a CIDR (SRC: s is the 16
 * address bytes with host bits clear, len is family << 8 | prefix) or a port
 * (PORT: len). */
struct gkey {
    uint64_t h;
    const char *s;
    uint32_t len;
    uint8_t kind; /* enum guard_kind */
};

struct crule {
    uint32_t n_clauses; /* 0: matches every connection */
    const struct cclause *clauses;
    uint8_t guard; /* enum guard_kind */
    uint32_t n_keys;
    const struct gkey *keys;
};

enum cls { CLS_DENY, CLS_DRY_DENY, CLS_ALLOW, CLS_DRY_ALLOW };

struct group;

struct cpolicy {
    const struct zt_policy *p;
    uint32_t ord; /* position in the snapshot (key order) */
    uint8_t cls;  /* enum cls */
    uint32_t n_rules;
    const struct crule *rules;
    const struct group *home; /* GLOBAL/NAMESPACE: the group holding it */
};

/* A rule as a group lists it. */
struct rref {
    const struct crule *rule;
    const struct cpolicy *pol;
};

/* A guard value of a group and where its rules are in post[]. */
struct slot {
    uint64_t h;
    const struct gkey *key; /* NULL: empty slot */
    uint32_t off, n;
};

struct plen {
    uint8_t family, prefix;
};

struct group {
    const char *ns; /* namespace groups */
    uint32_t num;   /* while building: the group's number */
    uint64_t h;
    size_t cap; /* slots, a power of two (0: no guarded rules) */
    struct slot *slots;
    const struct rref *post;
    const struct rref *scan;
    uint32_t n_scan;
    struct plen *plens; /* distinct source CIDR lengths guarded here */
    uint32_t n_plens;
    unsigned kinds; /* 1 << guard_kind for each kind of key held */
    bool has_allow, has_dry_allow;
};

struct kslot {
    uint64_t h;
    const char *key;
    size_t len;
    const struct cpolicy *pol;
};

struct nsslot {
    uint64_t h;
    struct group *g;
};

struct zt_authz_index {
    struct arena arena;
    struct cpolicy *pols;
    size_t n_pols;
    size_t key_cap;
    struct kslot *keys; /* policy key -> policy */
    struct group global;
    size_t ns_cap;
    struct nsslot *ns; /* namespace -> group */
};

/* ---------------------------------------------------------------- the connection */

/* Every attribute of a connection a test or a guard reads, computed once. */
struct probe {
    const struct zt_authz_ident *id;
    const char *ns; /* "" when the identity has no namespace */
    size_t ns_len;
    uint64_t h_prin, h_ns, h_sa;
    struct zt_ip src, dst; /* canonical */
    uint16_t port;
};

static void probe_init(struct probe *pr, const struct zt_authz_conn *c,
                       const struct zt_authz_ident *id)
{
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->ns = id->ns ? id->ns : "";
    pr->ns_len = id->ns ? id->ns_len : 0;
    if (id->present) {
        pr->h_prin = hash_bytes(id->principal, id->principal_len);
        pr->h_ns = hash_bytes(pr->ns, pr->ns_len);
        if (id->sa)
            pr->h_sa = hash_bytes(id->sa, id->sa_len);
    }
    pr->src = c->src_ip;
    zt_ip_canonicalize(&pr->src);
    pr->dst = c->dst_ip;
    zt_ip_canonicalize(&pr->dst);
    pr->port = c->dst_port;
}

static bool cstr_eq(const struct cstr *e, uint64_t h, const char *v, size_t len)
{
    return e->h == h && e->len == len && memcmp(e->s, v, len) == 0;
}

static bool str_any(const struct ctest *t, const char *v, size_t len, uint64_t h)
{
    const struct cstr *e = t->v;
    if (t->presence && len > 0)
        return true;
    if (t->n_exact <= 8) {
        for (uint32_t i = 0; i < t->n_exact; i++)
            if (cstr_eq(&e[i], h, v, len))
                return true;
    } else {
        /* First entry with hash >= h, then every entry of that hash. */
        uint32_t lo = 0, hi = t->n_exact;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (e[mid].h < h)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < t->n_exact && e[lo].h == h; lo++)
            if (cstr_eq(&e[lo], h, v, len))
                return true;
    }
    for (uint32_t i = t->n_exact; i < t->n; i++) {
        if (e[i].len > len)
            continue;
        if (e[i].kind == ZT_STRMATCH_PREFIX ? memcmp(e[i].s, v, e[i].len) == 0
                                            : memcmp(e[i].s, v + len - e[i].len, e[i].len) == 0)
            return true;
    }
    return false;
}

static bool sa_any(const struct ctest *t, const struct probe *pr)
{
    const struct csa *e = t->v;
    const struct zt_authz_ident *id = pr->id;
    if (!id->present || !id->ns)
        return false;
    for (uint32_t i = 0; i < t->n; i++)
        if (e[i].h_ns == pr->h_ns && e[i].h_sa == pr->h_sa && e[i].ns_len == id->ns_len &&
            e[i].sa_len == id->sa_len && memcmp(e[i].ns, id->ns, id->ns_len) == 0 &&
            memcmp(e[i].sa, id->sa, id->sa_len) == 0)
            return true;
    return false;
}

static int range_cmp(uint8_t fa, const uint8_t *a, uint8_t fb, const uint8_t *b)
{
    if (fa != fb)
        return fa < fb ? -1 : 1;
    return memcmp(a, b, 16);
}

static bool ip_any(const struct ctest *t, const struct zt_ip *ip)
{
    const struct crange *r = t->v;
    uint32_t lo = 0, hi = t->n;
    /* Ranges are sorted and disjoint: the last one starting at or before ip
     * is the only candidate. */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (range_cmp(r[mid].family, r[mid].lo, ip->family, ip->addr) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    r = &r[lo - 1];
    return r->family == ip->family && memcmp(ip->addr, r->hi, 16) <= 0;
}

static bool port_any(const struct ctest *t, uint16_t port)
{
    const uint16_t *v = t->v;
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v[mid] < port)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n && v[lo] == port;
}

/* Whether the field's list has an element matching (before negation). A
 * field that needs an identity has none without one, which the caller
 * turns into "positive fails, not_ passes" exactly as the reference. */
static bool test_hit(const struct ctest *t, const struct probe *pr)
{
    const struct zt_authz_ident *id = pr->id;
    switch ((enum fld)t->field) {
    case FLD_NS:
        return id->present && str_any(t, pr->ns, pr->ns_len, pr->h_ns);
    case FLD_SA:
        return sa_any(t, pr);
    case FLD_PRIN:
        return id->present && str_any(t, id->principal, id->principal_len, pr->h_prin);
    case FLD_SRC:
        return ip_any(t, &pr->src);
    case FLD_DST:
        return ip_any(t, &pr->dst);
    case FLD_PORT:
        return port_any(t, pr->port);
    }
    return false;
}

static bool match_ok(const struct cmatch *m, const struct probe *pr)
{
    for (uint32_t i = 0; i < m->n_tests; i++)
        if (test_hit(&m->tests[i], pr) == m->tests[i].negate)
            return false;
    return true;
}

static bool rule_ok(const struct crule *r, const struct probe *pr)
{
    for (uint32_t c = 0; c < r->n_clauses; c++) {
        const struct cclause *cl = &r->clauses[c];
        bool any = false;
        for (uint32_t m = 0; m < cl->n_matches && !any; m++)
            any = match_ok(&cl->matches[m], pr);
        if (!any)
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- compiling */

static int cmp_cstr(const void *a, const void *b)
{
    const struct cstr *x = a, *y = b;
    bool ex = x->kind == ZT_STRMATCH_EXACT, ey = y->kind == ZT_STRMATCH_EXACT;
    if (ex != ey)
        return ex ? -1 : 1;
    if (ex && x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return 0;
}

/* Returns false if the list has no entry left that can match. */
static bool compile_str(struct arena *a, const struct zt_strmatch_list *l, struct ctest *t)
{
    struct cstr *v = ARENA_NEW(a, struct cstr, l->n);
    for (size_t i = 0; i < l->n; i++) {
        const struct zt_strmatch *m = &l->v[i];
        if (m->kind == ZT_STRMATCH_PRESENCE) {
            t->presence = true;
            continue;
        }
        if (m->kind != ZT_STRMATCH_EXACT && m->kind != ZT_STRMATCH_PREFIX &&
            m->kind != ZT_STRMATCH_SUFFIX)
            continue; /* the reference matches nothing with it */
        v[t->n].s = m->value ? m->value : "";
        v[t->n].len = strlen(v[t->n].s);
        v[t->n].h = hash_bytes(v[t->n].s, v[t->n].len);
        v[t->n].kind = m->kind;
        if (m->kind == ZT_STRMATCH_EXACT)
            t->n_exact++;
        t->n++;
    }
    qsort(v, t->n, sizeof(*v), cmp_cstr);
    t->v = v;
    return t->n || t->presence;
}

static bool compile_sa(struct arena *a, const struct zt_sa_list *l, struct ctest *t)
{
    struct csa *v = ARENA_NEW(a, struct csa, l->n);
    for (size_t i = 0; i < l->n; i++) {
        const char *ns = l->v[i].namespace ? l->v[i].namespace : "";
        const char *sa = l->v[i].service_account ? l->v[i].service_account : "";
        /* A parsed identity has no '/' in either part. */
        if (strchr(ns, '/') || strchr(sa, '/'))
            continue;
        v[t->n] = (struct csa){.ns = ns, .sa = sa, .ns_len = strlen(ns), .sa_len = strlen(sa)};
        v[t->n].h_ns = hash_bytes(ns, v[t->n].ns_len);
        v[t->n].h_sa = hash_bytes(sa, v[t->n].sa_len);
        t->n++;
    }
    t->v = v;
    return t->n > 0;
}

static unsigned family_bits(uint8_t family)
{
    return family == AF_INET ? 32 : 128;
}

/* The effective prefix of a CIDR as zt_cidr_contains reads it, or -1 if it
 * can never contain an address (host bits set below the prefix). */
static int cidr_prefix(const struct zt_cidr *c)
{
    unsigned bits = family_bits(c->ip.family), p = c->prefix < bits ? c->prefix : bits;
    for (unsigned i = p; i < bits; i++)
        if (c->ip.addr[i / 8] & (0x80u >> (i % 8)))
            return -1;
    return (int)p;
}

static int cmp_range(const void *a, const void *b)
{
    const struct crange *x = a, *y = b;
    return range_cmp(x->family, x->lo, y->family, y->lo);
}

static bool compile_cidr(struct arena *a, const struct zt_cidr_list *l, struct ctest *t)
{
    struct crange *v = ARENA_NEW(a, struct crange, l->n);
    uint32_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct zt_cidr *c = &l->v[i];
        int p = cidr_prefix(c);
        if (p < 0)
            continue;
        v[t->n].family = c->ip.family;
        memcpy(v[t->n].lo, c->ip.addr, 16);
        memcpy(v[t->n].hi, c->ip.addr, 16);
        for (unsigned b = (unsigned)p; b < family_bits(c->ip.family); b++)
            v[t->n].hi[b / 8] |= (uint8_t)(0x80u >> (b % 8));
        t->n++;
    }
    qsort(v, t->n, sizeof(*v), cmp_range);
    /* Merge overlapping ranges so that at most one can hold an address. */
    for (uint32_t i = 0; i < t->n; i++) {
        if (n && v[n - 1].family == v[i].family && memcmp(v[i].lo, v[n - 1].hi, 16) <= 0) {
            if (memcmp(v[i].hi, v[n - 1].hi, 16) > 0)
                memcpy(v[n - 1].hi, v[i].hi, 16);
            continue;
        }
        v[n++] = v[i];
    }
    t->n = n;
    t->v = v;
    return n > 0;
}

static int cmp_u16(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static bool compile_port(struct arena *a, const struct zt_port_list *l, struct ctest *t)
{
    uint16_t *v = ARENA_NEW(a, uint16_t, l->n);
    uint32_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] <= 65535)
            v[t->n++] = (uint16_t)l->v[i];
    qsort(v, t->n, sizeof(*v), cmp_u16);
    for (uint32_t i = 0; i < t->n; i++)
        if (!n || v[n - 1] != v[i])
            v[n++] = v[i];
    t->n = n;
    t->v = v;
    return n > 0;
}

static bool match_is_empty(const struct zt_policy_match *m)
{
    return !m->namespaces.n && !m->not_namespaces.n && !m->service_accounts.n &&
           !m->not_service_accounts.n && !m->principals.n && !m->not_principals.n &&
           !m->source_ips.n && !m->not_source_ips.n && !m->destination_ips.n &&
           !m->not_destination_ips.n && !m->destination_ports.n && !m->not_destination_ports.n;
}

/* Compiles one field list into *t. Returns false if the Match can never
 * match (a positive list with nothing that can match); a not_ list with
 * nothing that can match is left out (t->n_tests unchanged). */
static bool add_test(struct arena *a, struct cmatch *m, struct ctest *tests, enum fld field,
                     bool negate, const void *list, size_t n)
{
    struct ctest *t;
    bool live;
    if (!n)
        return true;
    t = &tests[m->n_tests];
    memset(t, 0, sizeof(*t));
    t->field = (uint8_t)field;
    t->negate = negate;
    switch (field) {
    case FLD_NS:
    case FLD_PRIN:
        live = compile_str(a, list, t);
        break;
    case FLD_SA:
        live = compile_sa(a, list, t);
        break;
    case FLD_SRC:
    case FLD_DST:
        live = compile_cidr(a, list, t);
        break;
    default:
        live = compile_port(a, list, t);
        break;
    }
    if (live)
        m->n_tests++;
    return live || negate;
}

/* Returns false if the Match never matches. */
static bool compile_match(struct arena *a, const struct zt_policy_match *pm, struct cmatch *m)
{
    size_t n = !!pm->principals.n + !!pm->namespaces.n + !!pm->service_accounts.n +
               !!pm->source_ips.n + !!pm->destination_ips.n + !!pm->destination_ports.n +
               !!pm->not_principals.n + !!pm->not_namespaces.n + !!pm->not_service_accounts.n +
               !!pm->not_source_ips.n + !!pm->not_destination_ips.n + !!pm->not_destination_ports.n;
    struct ctest *t = ARENA_NEW(a, struct ctest, n);
    bool ok = n > 0;
    /* The slot may hold a Match dropped just before. */
    *m = (struct cmatch){.tests = t};
    ok = ok && add_test(a, m, t, FLD_PRIN, false, &pm->principals, pm->principals.n);
    ok = ok && add_test(a, m, t, FLD_NS, false, &pm->namespaces, pm->namespaces.n);
    ok = ok && add_test(a, m, t, FLD_SA, false, &pm->service_accounts, pm->service_accounts.n);
    ok = ok && add_test(a, m, t, FLD_SRC, false, &pm->source_ips, pm->source_ips.n);
    ok = ok && add_test(a, m, t, FLD_DST, false, &pm->destination_ips, pm->destination_ips.n);
    ok = ok && add_test(a, m, t, FLD_PORT, false, &pm->destination_ports, pm->destination_ports.n);
    ok = ok && add_test(a, m, t, FLD_PRIN, true, &pm->not_principals, pm->not_principals.n);
    ok = ok && add_test(a, m, t, FLD_NS, true, &pm->not_namespaces, pm->not_namespaces.n);
    ok = ok &&
         add_test(a, m, t, FLD_SA, true, &pm->not_service_accounts, pm->not_service_accounts.n);
    ok = ok && add_test(a, m, t, FLD_SRC, true, &pm->not_source_ips, pm->not_source_ips.n);
    ok =
        ok && add_test(a, m, t, FLD_DST, true, &pm->not_destination_ips, pm->not_destination_ips.n);
    ok = ok &&
         add_test(a, m, t, FLD_PORT, true, &pm->not_destination_ports, pm->not_destination_ports.n);
    return ok;
}

/* The positive test of field in m, or NULL. */
static const struct ctest *find_test(const struct cmatch *m, enum fld field)
{
    for (uint32_t i = 0; i < m->n_tests; i++)
        if (m->tests[i].field == field && !m->tests[i].negate)
            return &m->tests[i];
    return NULL;
}

/* Whether every Match of cl requires a value of kind (then the values are
 * appended to keys, if not NULL, and counted in *n). */
static bool clause_keys(const struct cclause *cl, enum guard_kind kind, struct gkey *keys,
                        uint32_t *n)
{
    *n = 0;
    for (uint32_t i = 0; i < cl->n_matches; i++) {
        const struct cmatch *m = &cl->matches[i];
        const struct ctest *t;
        switch (kind) {
        case GK_PRIN:
            t = find_test(m, FLD_PRIN);
            if (!t || t->presence || t->n_exact != t->n)
                return false;
            for (uint32_t k = 0; k < t->n && keys; k++) {
                const struct cstr *e = &((const struct cstr *)t->v)[k];
                keys[*n + k] = (struct gkey){.h = e->h, .s = e->s, .len = e->len};
            }
            *n += t->n;
            break;
        case GK_NS:
            t = find_test(m, FLD_NS);
            if (t && !t->presence && t->n_exact == t->n) {
                for (uint32_t k = 0; k < t->n && keys; k++) {
                    const struct cstr *e = &((const struct cstr *)t->v)[k];
                    keys[*n + k] = (struct gkey){.h = e->h, .s = e->s, .len = e->len};
                }
            } else if ((t = find_test(m, FLD_SA))) {
                for (uint32_t k = 0; k < t->n && keys; k++) {
                    const struct csa *e = &((const struct csa *)t->v)[k];
                    keys[*n + k] = (struct gkey){.h = e->h_ns, .s = e->ns, .len = e->ns_len};
                }
            } else {
                return false;
            }
            *n += t->n;
            break;
        case GK_SRC:
            /* The CIDRs themselves, not the merged ranges: a range is not
             * always a single prefix. */
            return false;
        case GK_PORT:
            t = find_test(m, FLD_PORT);
            if (!t)
                return false;
            for (uint32_t k = 0; k < t->n && keys; k++) {
                uint16_t port = ((const uint16_t *)t->v)[k];
                keys[*n + k] = (struct gkey){.h = mix(port + 1), .len = port};
            }
            *n += t->n;
            break;
        default:
            return false;
        }
    }
    return true;
}

static struct gkey src_key(const char *addr, uint8_t family, unsigned prefix)
{
    uint32_t len = (uint32_t)family << 8 | prefix;
    return (struct gkey){
        .h = mix(hash_bytes(addr, 16) ^ len), .s = addr, .len = len, .kind = GK_SRC};
}

/* Source CIDR guards come from the policy (the compiled ranges are merged,
 * so no longer prefixes): whether every Match of the policy's clause pc
 * (compiled as cl) has usable source_ips. */
static bool clause_src_keys(const struct zt_policy_clause *pc, struct gkey *keys, uint32_t *n)
{
    *n = 0;
    for (size_t i = 0; i < pc->n_matches; i++) {
        const struct zt_policy_match *pm = &pc->matches[i];
        if (match_is_empty(pm))
            continue; /* dropped from the compiled clause too */
        if (!pm->source_ips.n)
            return false;
        for (size_t k = 0; k < pm->source_ips.n; k++) {
            const struct zt_cidr *c = &pm->source_ips.v[k];
            int p = cidr_prefix(c);
            if (p < 0)
                continue; /* never contains anything */
            if (keys)
                keys[*n] = src_key((const char *)c->ip.addr, c->ip.family, (unsigned)p);
            (*n)++;
        }
    }
    return true;
}

static bool gkey_eq(const struct gkey *a, const struct gkey *b)
{
    if (a->h != b->h || a->len != b->len || a->kind != b->kind)
        return false;
    switch ((enum guard_kind)a->kind) {
    case GK_PRIN:
    case GK_NS:
        return memcmp(a->s, b->s, a->len) == 0;
    case GK_SRC:
        return memcmp(a->s, b->s, 16) == 0;
    default:
        return true;
    }
}

static int cmp_gkey(const void *a, const void *b)
{
    const struct gkey *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return 0;
}

/* Sorts keys and removes duplicates so that one connection value finds a
 * rule at most once. */
static uint32_t unique_keys(enum guard_kind kind, struct gkey *keys, uint32_t n)
{
    uint32_t out = 0;
    for (uint32_t i = 0; i < n; i++)
        keys[i].kind = (uint8_t)kind;
    qsort(keys, n, sizeof(*keys), cmp_gkey);
    for (uint32_t i = 0; i < n; i++) {
        bool dup = false;
        for (uint32_t j = out; j-- > 0 && keys[j].h == keys[i].h && !dup;)
            dup = gkey_eq(&keys[j], &keys[i]);
        if (!dup)
            keys[out++] = keys[i];
    }
    return out;
}

/* Picks the rule's guard: the most selective kind some clause requires. */
static void choose_guard(struct arena *a, const struct zt_policy_rule *pr, struct crule *r)
{
    static const enum guard_kind order[] = {GK_PRIN, GK_NS, GK_SRC, GK_PORT};
    for (size_t o = 0; o < sizeof(order) / sizeof(order[0]); o++) {
        for (uint32_t c = 0; c < r->n_clauses; c++) {
            const struct zt_policy_clause *pc = &pr->clauses[r->clauses[c].orig];
            struct gkey *keys;
            uint32_t n;
            bool ok = order[o] == GK_SRC ? clause_src_keys(pc, NULL, &n)
                                         : clause_keys(&r->clauses[c], order[o], NULL, &n);
            if (!ok || !n)
                continue;
            keys = ARENA_NEW(a, struct gkey, n);
            if (order[o] == GK_SRC)
                clause_src_keys(pc, keys, &n);
            else
                clause_keys(&r->clauses[c], order[o], keys, &n);
            r->guard = (uint8_t)order[o];
            r->n_keys = unique_keys(order[o], keys, n);
            r->keys = keys;
            return;
        }
    }
    r->guard = GK_NONE;
}

/* Returns false if the rule never matches. */
static bool compile_rule(struct arena *a, const struct zt_policy_rule *pr, struct crule *r)
{
    struct cclause *cls = ARENA_NEW(a, struct cclause, pr->n_clauses);
    bool ok = true;

    /* The slot may hold a rule dropped just before. */
    memset(r, 0, sizeof(*r));

    for (size_t c = 0; c < pr->n_clauses && ok; c++) {
        const struct zt_policy_clause *pc = &pr->clauses[c];
        struct cmatch *ms = ARENA_NEW(a, struct cmatch, pc->n_matches);
        struct cclause *cl = &cls[r->n_clauses];
        bool always = pc->n_matches == 0;
        /* The slot may hold a clause dropped just before. */
        *cl = (struct cclause){.matches = ms};
        for (size_t m = 0; m < pc->n_matches && !always; m++) {
            if (!compile_match(a, &pc->matches[m], &ms[cl->n_matches]))
                continue;
            if (ms[cl->n_matches].n_tests == 0)
                always = true;
            cl->n_matches++;
        }
        if (always)
            continue; /* AND with true */
        if (cl->n_matches == 0)
            ok = false; /* no Match can match: neither can the rule */
        cl->orig = (uint32_t)c;
        r->n_clauses++;
    }
    r->clauses = cls;
    if (ok)
        choose_guard(a, pr, r);
    return ok;
}

static void compile_policy(struct arena *a, const struct zt_policy *p, uint32_t ord,
                           struct cpolicy *cp)
{
    struct crule *rules = ARENA_NEW(a, struct crule, p->n_rules);
    cp->p = p;
    cp->ord = ord;
    if (p->action == ZT_POLICY_DENY)
        cp->cls = p->dry_run ? CLS_DRY_DENY : CLS_DENY;
    else
        cp->cls = p->dry_run ? CLS_DRY_ALLOW : CLS_ALLOW;
    for (size_t r = 0; r < p->n_rules; r++)
        if (compile_rule(a, &p->rules[r], &rules[cp->n_rules]))
            cp->n_rules++;
    cp->rules = rules;
}

/* ---------------------------------------------------------------- groups */

static struct slot *slot_find_in(struct slot *slots, size_t cap, const struct gkey *k)
{
    size_t mask = cap - 1;
    for (size_t i = k->h & mask;; i = (i + 1) & mask) {
        struct slot *s = &slots[i];
        if (!s->key || (s->h == k->h && gkey_eq(s->key, k)))
            return s;
    }
}

static const struct slot *slot_find(const struct group *g, const struct gkey *k)
{
    return slot_find_in(g->slots, g->cap, k);
}

/* Every (family, prefix) pair fits: 0..32 and 0..128 (and an unset family,
 * compared as 128 bits). */
#define MAX_PLENS (33 + 129 + 129)

static void group_add_plen(struct arena *a, struct group *g, const struct gkey *k)
{
    struct plen pl = {(uint8_t)(k->len >> 8), (uint8_t)k->len};
    for (uint32_t i = 0; i < g->n_plens; i++)
        if (g->plens[i].family == pl.family && g->plens[i].prefix == pl.prefix)
            return;
    if (!g->plens)
        g->plens = ARENA_NEW(a, struct plen, MAX_PLENS);
    assert(g->n_plens < MAX_PLENS);
    g->plens[g->n_plens++] = pl;
}

/* Builds g's posting lists over the policies pols[members[0..n)]. The slot
 * table grows with the distinct keys (most rules share a few ports or
 * namespaces), in a heap table copied into the arena when complete. */
static void group_build(struct arena *a, struct group *g, const struct cpolicy *pols,
                        const uint32_t *members, size_t n)
{
    size_t cap = 16, used = 0, n_post = 0;
    struct slot *tmp = zt_state_xcalloc(cap, sizeof(*tmp));
    struct rref *post, *scan;

    for (size_t i = 0; i < n; i++) {
        const struct cpolicy *cp = &pols[members[i]];
        if (cp->cls == CLS_ALLOW)
            g->has_allow = true;
        if (cp->cls == CLS_DRY_ALLOW)
            g->has_dry_allow = true;
        for (uint32_t r = 0; r < cp->n_rules; r++)
            if (cp->rules[r].guard == GK_NONE)
                g->n_scan++;
    }
    scan = ARENA_NEW(a, struct rref, g->n_scan);
    g->scan = scan;
    g->n_scan = 0;
    /* Pass 1: count per key. */
    for (size_t i = 0; i < n; i++) {
        const struct cpolicy *cp = &pols[members[i]];
        for (uint32_t r = 0; r < cp->n_rules; r++) {
            const struct crule *rule = &cp->rules[r];
            if (rule->guard == GK_NONE) {
                scan[g->n_scan++] = (struct rref){rule, cp};
                continue;
            }
            for (uint32_t k = 0; k < rule->n_keys; k++) {
                const struct gkey *key = &rule->keys[k];
                struct slot *s = slot_find_in(tmp, cap, key);
                if (!s->key && 2 * (used + 1) > cap) {
                    struct slot *old = tmp;
                    tmp = zt_state_xcalloc(cap * 2, sizeof(*tmp));
                    for (size_t o = 0; o < cap; o++)
                        if (old[o].key)
                            *slot_find_in(tmp, cap * 2, old[o].key) = old[o];
                    free(old);
                    cap *= 2;
                    s = slot_find_in(tmp, cap, key);
                }
                if (!s->key) {
                    s->key = key;
                    s->h = key->h;
                    used++;
                    g->kinds |= 1u << key->kind;
                    if (key->kind == GK_SRC)
                        group_add_plen(a, g, key);
                }
                s->n++;
            }
        }
    }
    if (used) {
        g->cap = cap;
        g->slots = ARENA_NEW(a, struct slot, cap);
        memcpy(g->slots, tmp, cap * sizeof(*tmp));
    }
    free(tmp);
    for (size_t i = 0; i < g->cap; i++) {
        g->slots[i].off = (uint32_t)n_post;
        n_post += g->slots[i].n;
        g->slots[i].n = 0;
    }
    /* Pass 2: fill, in policy order. */
    post = ARENA_NEW(a, struct rref, n_post);
    for (size_t i = 0; i < n; i++) {
        const struct cpolicy *cp = &pols[members[i]];
        for (uint32_t r = 0; r < cp->n_rules; r++) {
            const struct crule *rule = &cp->rules[r];
            for (uint32_t k = 0; k < rule->n_keys; k++) {
                struct slot *s = slot_find_in(g->slots, g->cap, &rule->keys[k]);
                post[s->off + s->n++] = (struct rref){rule, cp};
            }
        }
    }
    g->post = post;
}

static struct nsslot *ns_find(const struct zt_authz_index *idx, const char *ns, size_t len,
                              uint64_t h)
{
    size_t mask = idx->ns_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct nsslot *sl = &idx->ns[i];
        if (!sl->g || (sl->h == h && strlen(sl->g->ns) == len && memcmp(sl->g->ns, ns, len) == 0))
            return sl;
    }
}

static const struct cpolicy *policy_find(const struct zt_authz_index *idx, const char *key)
{
    size_t len = strlen(key), mask = idx->key_cap - 1;
    uint64_t h = hash_bytes(key, len);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const struct kslot *k = &idx->keys[i];
        if (!k->pol)
            return NULL;
        if (k->h == h && k->len == len && memcmp(k->key, key, len) == 0)
            return k->pol;
    }
}

struct zt_authz_index *zt_authz_index_build(const struct zt_state *s)
{
    struct zt_authz_index *idx = zt_state_xcalloc(1, sizeof(*idx));
    struct arena *a = &idx->arena;
    size_t n = zt_state_policy_count(s), n_groups = 0, n_global = 0;
    uint32_t *group_of, *start, *members, *global;
    struct group **groups;

    idx->n_pols = n;
    idx->pols = ARENA_NEW(a, struct cpolicy, n);
    idx->key_cap = pow2_at_least(n * 2);
    idx->keys = ARENA_NEW(a, struct kslot, idx->key_cap);
    idx->ns_cap = pow2_at_least(n * 2);
    idx->ns = ARENA_NEW(a, struct nsslot, idx->ns_cap);
    group_of = zt_state_xcalloc(n + 1, sizeof(*group_of));
    groups = zt_state_xcalloc(n + 1, sizeof(*groups));
    global = zt_state_xcalloc(n + 1, sizeof(*global));

    for (size_t i = 0; i < n; i++) {
        const struct zt_policy *p = zt_state_policy_at(s, i);
        struct cpolicy *cp = &idx->pols[i];
        const char *key = p->key ? p->key : "";
        size_t key_len = strlen(key);
        uint64_t h = hash_bytes(key, key_len);
        compile_policy(a, p, (uint32_t)i, cp);
        /* Keys are unique in a snapshot. */
        for (size_t k = h & (idx->key_cap - 1);; k = (k + 1) & (idx->key_cap - 1)) {
            if (!idx->keys[k].pol) {
                idx->keys[k] = (struct kslot){h, key, key_len, cp};
                break;
            }
        }
        if (p->scope == ZT_POLICY_GLOBAL) {
            global[n_global++] = (uint32_t)i;
            cp->home = &idx->global;
        } else if (p->scope == ZT_POLICY_NAMESPACE) {
            const char *ns = p->namespace ? p->namespace : "";
            size_t len = strlen(ns);
            uint64_t hn = hash_bytes(ns, len);
            struct nsslot *sl = ns_find(idx, ns, len, hn);
            if (!sl->g) {
                sl->g = ARENA_NEW(a, struct group, 1);
                sl->h = hn;
                sl->g->ns = ns;
                sl->g->num = (uint32_t)n_groups;
                groups[n_groups++] = sl->g;
            }
            group_of[i] = sl->g->num + 1;
            cp->home = sl->g;
        }
    }

    /* Members of each namespace group, in policy order (counting sort). */
    start = zt_state_xcalloc(n_groups + 2, sizeof(*start));
    members = zt_state_xcalloc(n + 1, sizeof(*members));
    for (size_t i = 0; i < n; i++)
        if (group_of[i])
            start[group_of[i]]++;
    for (size_t g = 1; g <= n_groups + 1; g++)
        start[g] += start[g - 1];
    for (size_t i = 0; i < n; i++)
        if (group_of[i])
            members[start[group_of[i] - 1]++] = (uint32_t)i;
    for (size_t g = n_groups; g > 0; g--)
        start[g] = start[g - 1];
    start[0] = 0;
    for (size_t g = 0; g < n_groups; g++)
        group_build(a, groups[g], idx->pols, members + start[g], start[g + 1] - start[g]);
    group_build(a, &idx->global, idx->pols, global, n_global);

    free(group_of);
    free(groups);
    free(global);
    free(start);
    free(members);
    return idx;
}

void zt_authz_index_free(struct zt_authz_index *idx)
{
    if (!idx)
        return;
    arena_free(&idx->arena);
    free(idx);
}

/* ---------------------------------------------------------------- evaluation */

struct eval {
    const struct probe *pr;
    bool want_dry_run;
    const struct cpolicy *deny, *dry_deny;
    uint32_t deny_ord, dry_deny_ord;
    bool allowed, dry_allowed;
};

/* Whether policy cp could still change the outcome if ord is its position. */
static bool undecided(const struct eval *e, const struct cpolicy *cp, uint32_t ord)
{
    switch ((enum cls)cp->cls) {
    case CLS_DENY:
        return !e->deny || ord < e->deny_ord;
    case CLS_DRY_DENY:
        return e->want_dry_run && (!e->dry_deny || ord < e->dry_deny_ord);
    case CLS_ALLOW:
        return !e->allowed && !e->deny;
    case CLS_DRY_ALLOW:
        return e->want_dry_run && !e->dry_allowed;
    }
    return false;
}

static void record(struct eval *e, const struct cpolicy *cp, uint32_t ord)
{
    switch ((enum cls)cp->cls) {
    case CLS_DENY:
        e->deny = cp;
        e->deny_ord = ord;
        break;
    case CLS_DRY_DENY:
        e->dry_deny = cp;
        e->dry_deny_ord = ord;
        break;
    case CLS_ALLOW:
        e->allowed = true;
        break;
    case CLS_DRY_ALLOW:
        e->dry_allowed = true;
        break;
    }
}

static void eval_list(struct eval *e, const struct rref *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (undecided(e, v[i].pol, v[i].pol->ord) && rule_ok(v[i].rule, e->pr))
            record(e, v[i].pol, v[i].pol->ord);
}

static void eval_key(struct eval *e, const struct group *g, const struct gkey *k)
{
    const struct slot *s = slot_find(g, k);
    if (s->key)
        eval_list(e, g->post + s->off, s->n);
}

/* ip's address with the bits from prefix on cleared. */
static void masked(const struct zt_ip *ip, unsigned prefix, uint8_t out[16])
{
    memcpy(out, ip->addr, 16);
    for (unsigned b = prefix; b < family_bits(ip->family); b++)
        out[b / 8] &= (uint8_t) ~(0x80u >> (b % 8));
}

static void eval_group(struct eval *e, const struct group *g)
{
    const struct probe *pr = e->pr;
    const struct zt_authz_ident *id = pr->id;

    eval_list(e, g->scan, g->n_scan);
    if (!g->cap)
        return;
    if (id->present && (g->kinds & 1u << GK_PRIN)) {
        struct gkey k = {.h = pr->h_prin,
                         .s = id->principal,
                         .len = (uint32_t)id->principal_len,
                         .kind = GK_PRIN};
        eval_key(e, g, &k);
    }
    if (id->present && (g->kinds & 1u << GK_NS)) {
        struct gkey k = {.h = pr->h_ns, .s = pr->ns, .len = (uint32_t)pr->ns_len, .kind = GK_NS};
        eval_key(e, g, &k);
    }
    for (uint32_t i = 0; i < g->n_plens; i++) {
        uint8_t addr[16];
        struct gkey k;
        if (g->plens[i].family != pr->src.family)
            continue;
        masked(&pr->src, g->plens[i].prefix, addr);
        k = src_key((const char *)addr, pr->src.family, g->plens[i].prefix);
        eval_key(e, g, &k);
    }
    if (g->kinds & 1u << GK_PORT) {
        struct gkey k = {.h = mix((uint64_t)pr->port + 1), .len = pr->port, .kind = GK_PORT};
        eval_key(e, g, &k);
    }
}

/* Whether the connection has the value a guard asks for (a cheap filter:
 * rule_ok decides). */
static bool guard_ok(const struct crule *r, const struct probe *pr)
{
    const struct zt_authz_ident *id = pr->id;
    if (r->guard == GK_NONE)
        return true;
    for (uint32_t i = 0; i < r->n_keys; i++) {
        const struct gkey *k = &r->keys[i];
        uint8_t addr[16];
        switch ((enum guard_kind)r->guard) {
        case GK_NONE:
            return true;
        case GK_PRIN:
            if (id->present && k->h == pr->h_prin)
                return true;
            break;
        case GK_NS:
            if (id->present && k->h == pr->h_ns)
                return true;
            break;
        case GK_SRC:
            if ((k->len >> 8) != pr->src.family)
                break;
            masked(&pr->src, k->len & 0xff, addr);
            if (memcmp(addr, k->s, 16) == 0)
                return true;
            break;
        case GK_PORT:
            if (k->len == pr->port)
                return true;
            break;
        }
    }
    return false;
}

static void eval_policy(struct eval *e, const struct cpolicy *cp, uint32_t ord)
{
    for (uint32_t r = 0; r < cp->n_rules && undecided(e, cp, ord); r++)
        if (guard_ok(&cp->rules[r], e->pr) && rule_ok(&cp->rules[r], e->pr))
            record(e, cp, ord);
}

void zt_authz_index_eval(const struct zt_authz_index *idx, const struct zt_workload *wl,
                         const struct zt_authz_conn *conn, const struct zt_authz_ident *id,
                         bool want_dry_run, struct zt_authz_verdict *out)
{
    struct probe pr;
    struct eval e = {.pr = &pr, .want_dry_run = want_dry_run};
    const char *ns = wl->namespace ? wl->namespace : "";
    size_t ns_len = strlen(ns);
    const struct group *home = ns_find(idx, ns, ns_len, hash_bytes(ns, ns_len))->g;

    memset(out, 0, sizeof(*out));
    probe_init(&pr, conn, id);
    out->has_allow = idx->global.has_allow || (home && home->has_allow);
    out->res.has_dry_run_allow =
        want_dry_run && (idx->global.has_dry_allow || (home && home->has_dry_allow));
    eval_group(&e, &idx->global);
    if (home)
        eval_group(&e, home);
    /* The listed keys, after every policy of the groups in visiting order.
     * A key listed twice is evaluated twice: the same outcome, and its
     * first position is the lower one. */
    for (size_t i = 0; i < wl->n_authorization_policies; i++) {
        const struct cpolicy *cp = policy_find(idx, wl->authorization_policies[i]);
        if (!cp || cp->home == &idx->global || (cp->home && cp->home == home))
            continue;
        if (cp->cls == CLS_ALLOW)
            out->has_allow = true;
        if (cp->cls == CLS_DRY_ALLOW && want_dry_run)
            out->res.has_dry_run_allow = true;
        eval_policy(&e, cp, (uint32_t)(idx->n_pols + i));
    }
    out->allowed = e.allowed;
    out->res.denied_by = e.deny ? e.deny->p : NULL;
    if (want_dry_run) {
        out->res.dry_run_denied_by = e.dry_deny ? e.dry_deny->p : NULL;
        out->res.dry_run_allow_matched = e.dry_allowed;
    }
}
