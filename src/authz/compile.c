/* Compiled policies: how the index (index.c) holds a policy, and how a
 * compiled rule is matched against a connection.
 *
 * A Match keeps only its populated field groups ("tests"), with exact
 * strings hashed and sorted, prefix/suffix/presence apart, CIDRs as merged
 * sorted address ranges and ports as a sorted set. Entries that can never
 * match are dropped where that is exact (a port above 65535, a CIDR with
 * host bits set, a service account pair containing '/'), then Matches,
 * Clauses and Rules that can never match. Each compiled Rule gets a guard:
 * one attribute the connection must have for the rule to match at all,
 * taken from a clause whose every Match requires it: an exact principal,
 * the namespace (from exact namespaces or service accounts), the source
 * address within one of some CIDRs, or the destination port. Matching gives
 * exactly the reference evaluator's answer (authz.c). */
#include "authz/authz_int.h"

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

struct zt_authz_chunk {
    struct zt_authz_chunk *next;
    size_t used, cap; /* cap: bytes after the header */
    max_align_t data[];
};

void *zt_authz_arena_alloc(struct zt_authz_arena *a, size_t n)
{
    struct zt_authz_chunk *c = a->head;
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

void zt_authz_arena_free(struct zt_authz_arena *a)
{
    struct zt_authz_chunk *c = a->head;
    while (c) {
        struct zt_authz_chunk *next = c->next;
        munmap(c, c->cap + sizeof(*c));
        c = next;
    }
    a->head = NULL;
}

/* ---------------------------------------------------------------- hashing */

/* Strings come from configuration and are only looked up with a peer's
 * value, so a plain multiplicative hash is enough; equality is always
 * confirmed on the bytes. */
uint64_t zt_authz_mix(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

uint64_t zt_authz_hash(const void *p, size_t n)
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
    return zt_authz_mix(h);
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

struct zt_authz_cclause {
    uint32_t n_matches; /* >= 1: clauses that always match are dropped */
    uint32_t orig;      /* its index in the policy's rule */
    const struct cmatch *matches;
};

/* ---------------------------------------------------------------- matching */

void zt_authz_probe_init(struct zt_authz_probe *pr, const struct zt_authz_conn *c,
                         const struct zt_authz_ident *id)
{
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->ns = id->ns ? id->ns : "";
    pr->ns_len = id->ns ? id->ns_len : 0;
    if (id->present) {
        pr->h_prin = zt_authz_hash(id->principal, id->principal_len);
        pr->h_ns = zt_authz_hash(pr->ns, pr->ns_len);
        if (id->sa)
            pr->h_sa = zt_authz_hash(id->sa, id->sa_len);
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

static bool sa_any(const struct ctest *t, const struct zt_authz_probe *pr)
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
static bool test_hit(const struct ctest *t, const struct zt_authz_probe *pr)
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

static bool match_ok(const struct cmatch *m, const struct zt_authz_probe *pr)
{
    for (uint32_t i = 0; i < m->n_tests; i++)
        if (test_hit(&m->tests[i], pr) == m->tests[i].negate)
            return false;
    return true;
}

bool zt_authz_rule_ok(const struct zt_authz_crule *r, const struct zt_authz_probe *pr)
{
    for (uint32_t c = 0; c < r->n_clauses; c++) {
        const struct zt_authz_cclause *cl = &r->clauses[c];
        bool any = false;
        for (uint32_t m = 0; m < cl->n_matches && !any; m++)
            any = match_ok(&cl->matches[m], pr);
        if (!any)
            return false;
    }
    return true;
}

static unsigned family_bits(uint8_t family)
{
    return family == AF_INET ? 32 : 128;
}

/* ip's address with the bits from prefix on cleared. */
void zt_authz_masked(const struct zt_ip *ip, unsigned prefix, uint8_t out[16])
{
    unsigned bits = family_bits(ip->family);
    memcpy(out, ip->addr, 16);
    if (prefix >= bits)
        return;
    /* The partial byte, then whole bytes up to the family's length. */
    if (prefix % 8)
        out[prefix / 8] &= (uint8_t)(0xffu << (8 - prefix % 8));
    for (unsigned byte = (prefix + 7) / 8; byte < bits / 8; byte++)
        out[byte] = 0;
}

/* Whether the connection has the value a guard asks for (a cheap filter:
 * rule_ok decides). */
bool zt_authz_guard_ok(const struct zt_authz_crule *r, const struct zt_authz_probe *pr)
{
    const struct zt_authz_ident *id = pr->id;
    if (r->guard == ZT_AUTHZ_GUARD_NONE)
        return true;
    for (uint32_t i = 0; i < r->n_keys; i++) {
        const struct zt_authz_key *k = &r->keys[i];
        uint8_t addr[16];
        switch ((enum zt_authz_guard)r->guard) {
        case ZT_AUTHZ_GUARD_NONE:
            return true;
        case ZT_AUTHZ_GUARD_PRIN:
            if (id->present && k->h == pr->h_prin)
                return true;
            break;
        case ZT_AUTHZ_GUARD_NS:
            if (id->present && k->h == pr->h_ns)
                return true;
            break;
        case ZT_AUTHZ_GUARD_SRC:
            if ((k->len >> 8) != pr->src.family)
                break;
            zt_authz_masked(&pr->src, k->len & 0xff, addr);
            if (memcmp(addr, k->s, 16) == 0)
                return true;
            break;
        case ZT_AUTHZ_GUARD_PORT:
            if (k->len == pr->port)
                return true;
            break;
        }
    }
    return false;
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
static bool compile_str(struct zt_authz_arena *a, const struct zt_strmatch_list *l, struct ctest *t)
{
    struct cstr *v = ZT_AUTHZ_NEW(a, struct cstr, l->n);
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
        v[t->n].h = zt_authz_hash(v[t->n].s, v[t->n].len);
        v[t->n].kind = m->kind;
        if (m->kind == ZT_STRMATCH_EXACT)
            t->n_exact++;
        t->n++;
    }
    qsort(v, t->n, sizeof(*v), cmp_cstr);
    t->v = v;
    return t->n || t->presence;
}

static bool compile_sa(struct zt_authz_arena *a, const struct zt_sa_list *l, struct ctest *t)
{
    struct csa *v = ZT_AUTHZ_NEW(a, struct csa, l->n);
    for (size_t i = 0; i < l->n; i++) {
        const char *ns = l->v[i].namespace ? l->v[i].namespace : "";
        const char *sa = l->v[i].service_account ? l->v[i].service_account : "";
        /* A parsed identity has no '/' in either part. */
        if (strchr(ns, '/') || strchr(sa, '/'))
            continue;
        v[t->n] = (struct csa){.ns = ns, .sa = sa, .ns_len = strlen(ns), .sa_len = strlen(sa)};
        v[t->n].h_ns = zt_authz_hash(ns, v[t->n].ns_len);
        v[t->n].h_sa = zt_authz_hash(sa, v[t->n].sa_len);
        t->n++;
    }
    t->v = v;
    return t->n > 0;
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

static bool compile_cidr(struct zt_authz_arena *a, const struct zt_cidr_list *l, struct ctest *t)
{
    struct crange *v = ZT_AUTHZ_NEW(a, struct crange, l->n);
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

static bool compile_port(struct zt_authz_arena *a, const struct zt_port_list *l, struct ctest *t)
{
    uint16_t *v = ZT_AUTHZ_NEW(a, uint16_t, l->n);
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
static bool add_test(struct zt_authz_arena *a, struct cmatch *m, struct ctest *tests,
                     enum fld field, bool negate, const void *list, size_t n)
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
static bool compile_match(struct zt_authz_arena *a, const struct zt_policy_match *pm,
                          struct cmatch *m)
{
    size_t n = !!pm->principals.n + !!pm->namespaces.n + !!pm->service_accounts.n +
               !!pm->source_ips.n + !!pm->destination_ips.n + !!pm->destination_ports.n +
               !!pm->not_principals.n + !!pm->not_namespaces.n + !!pm->not_service_accounts.n +
               !!pm->not_source_ips.n + !!pm->not_destination_ips.n + !!pm->not_destination_ports.n;
    struct ctest *t = ZT_AUTHZ_NEW(a, struct ctest, n);
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
static bool clause_keys(const struct zt_authz_cclause *cl, enum zt_authz_guard kind,
                        struct zt_authz_key *keys, uint32_t *n)
{
    *n = 0;
    for (uint32_t i = 0; i < cl->n_matches; i++) {
        const struct cmatch *m = &cl->matches[i];
        const struct ctest *t;
        switch (kind) {
        case ZT_AUTHZ_GUARD_PRIN:
            t = find_test(m, FLD_PRIN);
            if (!t || t->presence || t->n_exact != t->n)
                return false;
            for (uint32_t k = 0; k < t->n && keys; k++) {
                const struct cstr *e = &((const struct cstr *)t->v)[k];
                keys[*n + k] = (struct zt_authz_key){.h = e->h, .s = e->s, .len = e->len};
            }
            *n += t->n;
            break;
        case ZT_AUTHZ_GUARD_NS:
            t = find_test(m, FLD_NS);
            if (t && !t->presence && t->n_exact == t->n) {
                for (uint32_t k = 0; k < t->n && keys; k++) {
                    const struct cstr *e = &((const struct cstr *)t->v)[k];
                    keys[*n + k] = (struct zt_authz_key){.h = e->h, .s = e->s, .len = e->len};
                }
            } else if ((t = find_test(m, FLD_SA))) {
                for (uint32_t k = 0; k < t->n && keys; k++) {
                    const struct csa *e = &((const struct csa *)t->v)[k];
                    keys[*n + k] =
                        (struct zt_authz_key){.h = e->h_ns, .s = e->ns, .len = e->ns_len};
                }
            } else {
                return false;
            }
            *n += t->n;
            break;
        case ZT_AUTHZ_GUARD_SRC:
            /* The CIDRs themselves, not the merged ranges: a range is not
             * always a single prefix. */
            return false;
        case ZT_AUTHZ_GUARD_PORT:
            t = find_test(m, FLD_PORT);
            if (!t)
                return false;
            for (uint32_t k = 0; k < t->n && keys; k++) {
                uint16_t port = ((const uint16_t *)t->v)[k];
                keys[*n + k] = (struct zt_authz_key){.h = zt_authz_mix(port + 1), .len = port};
            }
            *n += t->n;
            break;
        default:
            return false;
        }
    }
    return true;
}

struct zt_authz_key zt_authz_src_key(const char *addr, uint8_t family, unsigned prefix)
{
    uint32_t len = (uint32_t)family << 8 | prefix;
    return (struct zt_authz_key){.h = zt_authz_mix(zt_authz_hash(addr, 16) ^ len),
                                 .s = addr,
                                 .len = len,
                                 .kind = ZT_AUTHZ_GUARD_SRC};
}

/* Source CIDR guards come from the policy (the compiled ranges are merged,
 * so no longer prefixes): whether every Match of the policy's clause pc
 * (compiled as cl) has usable source_ips. */
static bool clause_src_keys(const struct zt_policy_clause *pc, struct zt_authz_key *keys,
                            uint32_t *n)
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
                keys[*n] = zt_authz_src_key((const char *)c->ip.addr, c->ip.family, (unsigned)p);
            (*n)++;
        }
    }
    return true;
}

bool zt_authz_key_eq(const struct zt_authz_key *a, const struct zt_authz_key *b)
{
    if (a->h != b->h || a->len != b->len || a->kind != b->kind)
        return false;
    switch ((enum zt_authz_guard)a->kind) {
    case ZT_AUTHZ_GUARD_PRIN:
    case ZT_AUTHZ_GUARD_NS:
        return memcmp(a->s, b->s, a->len) == 0;
    case ZT_AUTHZ_GUARD_SRC:
        return memcmp(a->s, b->s, 16) == 0;
    default:
        return true;
    }
}

static int cmp_gkey(const void *a, const void *b)
{
    const struct zt_authz_key *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return 0;
}

/* Sorts keys and removes duplicates so that one connection value finds a
 * rule at most once. */
static uint32_t unique_keys(enum zt_authz_guard kind, struct zt_authz_key *keys, uint32_t n)
{
    uint32_t out = 0;
    for (uint32_t i = 0; i < n; i++)
        keys[i].kind = (uint8_t)kind;
    qsort(keys, n, sizeof(*keys), cmp_gkey);
    for (uint32_t i = 0; i < n; i++) {
        bool dup = false;
        for (uint32_t j = out; j-- > 0 && keys[j].h == keys[i].h && !dup;)
            dup = zt_authz_key_eq(&keys[j], &keys[i]);
        if (!dup)
            keys[out++] = keys[i];
    }
    return out;
}

/* Picks the rule's guard: the most selective kind some clause requires. */
static void choose_guard(struct zt_authz_arena *a, const struct zt_policy_rule *pr,
                         struct zt_authz_crule *r)
{
    static const enum zt_authz_guard order[] = {ZT_AUTHZ_GUARD_PRIN, ZT_AUTHZ_GUARD_NS,
                                                ZT_AUTHZ_GUARD_SRC, ZT_AUTHZ_GUARD_PORT};
    for (size_t o = 0; o < sizeof(order) / sizeof(order[0]); o++) {
        for (uint32_t c = 0; c < r->n_clauses; c++) {
            const struct zt_policy_clause *pc = &pr->clauses[r->clauses[c].orig];
            struct zt_authz_key *keys;
            uint32_t n;
            bool ok = order[o] == ZT_AUTHZ_GUARD_SRC
                          ? clause_src_keys(pc, NULL, &n)
                          : clause_keys(&r->clauses[c], order[o], NULL, &n);
            if (!ok || !n)
                continue;
            keys = ZT_AUTHZ_NEW(a, struct zt_authz_key, n);
            if (order[o] == ZT_AUTHZ_GUARD_SRC)
                clause_src_keys(pc, keys, &n);
            else
                clause_keys(&r->clauses[c], order[o], keys, &n);
            r->guard = (uint8_t)order[o];
            r->n_keys = unique_keys(order[o], keys, n);
            r->keys = keys;
            return;
        }
    }
    r->guard = ZT_AUTHZ_GUARD_NONE;
}

/* Returns false if the rule never matches. */
static bool compile_rule(struct zt_authz_arena *a, const struct zt_policy_rule *pr,
                         struct zt_authz_crule *r)
{
    struct zt_authz_cclause *cls = ZT_AUTHZ_NEW(a, struct zt_authz_cclause, pr->n_clauses);
    bool ok = true;

    /* The slot may hold a rule dropped just before. */
    memset(r, 0, sizeof(*r));

    for (size_t c = 0; c < pr->n_clauses && ok; c++) {
        const struct zt_policy_clause *pc = &pr->clauses[c];
        struct cmatch *ms = ZT_AUTHZ_NEW(a, struct cmatch, pc->n_matches);
        struct zt_authz_cclause *cl = &cls[r->n_clauses];
        bool always = pc->n_matches == 0;
        /* The slot may hold a clause dropped just before. */
        *cl = (struct zt_authz_cclause){.matches = ms};
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

void zt_authz_compile_policy(struct zt_authz_arena *a, const struct zt_policy *p, uint32_t ord,
                             struct zt_authz_cpolicy *cp)
{
    struct zt_authz_crule *rules = ZT_AUTHZ_NEW(a, struct zt_authz_crule, p->n_rules);
    cp->p = p;
    cp->ord = ord;
    if (p->action == ZT_POLICY_DENY)
        cp->cls = p->dry_run ? ZT_AUTHZ_CLS_DRY_DENY : ZT_AUTHZ_CLS_DENY;
    else
        cp->cls = p->dry_run ? ZT_AUTHZ_CLS_DRY_ALLOW : ZT_AUTHZ_CLS_ALLOW;
    for (size_t r = 0; r < p->n_rules; r++)
        if (compile_rule(a, &p->rules[r], &rules[cp->n_rules]))
            cp->n_rules++;
    cp->rules = rules;
}
