/* The policy index of a snapshot: what zt_authz_check consults so that a
 * check costs about the same with 10 000 policies as with 10.
 *
 * Built once per snapshot (zt_state_derived), from every policy compiled
 * (compile.c) with a guard per rule:
 *
 * - Policies are grouped as they apply: one group of GLOBAL policies and one
 *   group per namespace of its NAMESPACE policies. A group maps every guard
 *   value to the rules it guards (posting lists), so a check evaluates only
 *   the rules whose guard the connection satisfies, plus the rules without
 *   a guard ("scan" rules). Source CIDR guards are looked up once per
 *   distinct prefix length in the group, with the address masked to it.
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
#include <stdlib.h>
#include <string.h>

static size_t pow2_at_least(size_t n)
{
    size_t c = 8;
    while (c < n)
        c <<= 1;
    return c;
}

/* A rule as a group lists it. */
struct rref {
    const struct zt_authz_crule *rule;
    const struct zt_authz_cpolicy *pol;
};

/* A guard value of a group and where its rules are in post[]. */
struct slot {
    uint64_t h;
    const struct zt_authz_key *key; /* NULL: empty slot */
    uint32_t off, n;
};

struct plen {
    uint8_t family, prefix;
};

struct zt_authz_group {
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
    const struct zt_authz_cpolicy *pol;
};

struct nsslot {
    uint64_t h;
    struct zt_authz_group *g;
};

struct zt_authz_index {
    struct zt_authz_arena arena;
    struct zt_authz_cpolicy *pols;
    size_t n_pols;
    size_t key_cap;
    struct kslot *keys; /* policy key -> policy */
    struct zt_authz_group global;
    size_t ns_cap;
    struct nsslot *ns; /* namespace -> group */
};

/* ---------------------------------------------------------------- groups */

static struct slot *slot_find_in(struct slot *slots, size_t cap, const struct zt_authz_key *k)
{
    size_t mask = cap - 1;
    for (size_t i = k->h & mask;; i = (i + 1) & mask) {
        struct slot *s = &slots[i];
        if (!s->key || (s->h == k->h && zt_authz_key_eq(s->key, k)))
            return s;
    }
}

static const struct slot *slot_find(const struct zt_authz_group *g, const struct zt_authz_key *k)
{
    return slot_find_in(g->slots, g->cap, k);
}

/* Every (family, prefix) pair fits: 0..32 and 0..128 (and an unset family,
 * compared as 128 bits). */
#define MAX_PLENS (33 + 129 + 129)

static void group_add_plen(struct zt_authz_arena *a, struct zt_authz_group *g,
                           const struct zt_authz_key *k)
{
    struct plen pl = {(uint8_t)(k->len >> 8), (uint8_t)k->len};
    for (uint32_t i = 0; i < g->n_plens; i++)
        if (g->plens[i].family == pl.family && g->plens[i].prefix == pl.prefix)
            return;
    if (!g->plens)
        g->plens = ZT_AUTHZ_NEW(a, struct plen, MAX_PLENS);
    assert(g->n_plens < MAX_PLENS);
    g->plens[g->n_plens++] = pl;
}

/* Builds g's posting lists over the policies pols[members[0..n)]. The slot
 * table grows with the distinct keys (most rules share a few ports or
 * namespaces), in a heap table copied into the arena when complete. */
static void group_build(struct zt_authz_arena *a, struct zt_authz_group *g,
                        const struct zt_authz_cpolicy *pols, const uint32_t *members, size_t n)
{
    size_t cap = 16, used = 0, n_post = 0;
    struct slot *tmp = zt_state_xcalloc(cap, sizeof(*tmp));
    struct rref *post, *scan;

    for (size_t i = 0; i < n; i++) {
        const struct zt_authz_cpolicy *cp = &pols[members[i]];
        if (cp->cls == ZT_AUTHZ_CLS_ALLOW)
            g->has_allow = true;
        if (cp->cls == ZT_AUTHZ_CLS_DRY_ALLOW)
            g->has_dry_allow = true;
        for (uint32_t r = 0; r < cp->n_rules; r++)
            if (cp->rules[r].guard == ZT_AUTHZ_GUARD_NONE)
                g->n_scan++;
    }
    scan = ZT_AUTHZ_NEW(a, struct rref, g->n_scan);
    g->scan = scan;
    g->n_scan = 0;
    /* Pass 1: count per key. */
    for (size_t i = 0; i < n; i++) {
        const struct zt_authz_cpolicy *cp = &pols[members[i]];
        for (uint32_t r = 0; r < cp->n_rules; r++) {
            const struct zt_authz_crule *rule = &cp->rules[r];
            if (rule->guard == ZT_AUTHZ_GUARD_NONE) {
                scan[g->n_scan++] = (struct rref){rule, cp};
                continue;
            }
            for (uint32_t k = 0; k < rule->n_keys; k++) {
                const struct zt_authz_key *key = &rule->keys[k];
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
                    if (key->kind == ZT_AUTHZ_GUARD_SRC)
                        group_add_plen(a, g, key);
                }
                s->n++;
            }
        }
    }
    if (used) {
        g->cap = cap;
        g->slots = ZT_AUTHZ_NEW(a, struct slot, cap);
        memcpy(g->slots, tmp, cap * sizeof(*tmp));
    }
    free(tmp);
    for (size_t i = 0; i < g->cap; i++) {
        g->slots[i].off = (uint32_t)n_post;
        n_post += g->slots[i].n;
        g->slots[i].n = 0;
    }
    /* Pass 2: fill, in policy order. */
    post = ZT_AUTHZ_NEW(a, struct rref, n_post);
    for (size_t i = 0; i < n; i++) {
        const struct zt_authz_cpolicy *cp = &pols[members[i]];
        for (uint32_t r = 0; r < cp->n_rules; r++) {
            const struct zt_authz_crule *rule = &cp->rules[r];
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

static const struct zt_authz_cpolicy *policy_find(const struct zt_authz_index *idx, const char *key)
{
    size_t len = strlen(key), mask = idx->key_cap - 1;
    uint64_t h = zt_authz_hash(key, len);
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
    struct zt_authz_arena *a = &idx->arena;
    size_t n = zt_state_policy_count(s), n_groups = 0, n_global = 0;
    uint32_t *group_of, *start, *members, *global;
    struct zt_authz_group **groups;

    idx->n_pols = n;
    idx->pols = ZT_AUTHZ_NEW(a, struct zt_authz_cpolicy, n);
    idx->key_cap = pow2_at_least(n * 2);
    idx->keys = ZT_AUTHZ_NEW(a, struct kslot, idx->key_cap);
    idx->ns_cap = pow2_at_least(n * 2);
    idx->ns = ZT_AUTHZ_NEW(a, struct nsslot, idx->ns_cap);
    group_of = zt_state_xcalloc(n + 1, sizeof(*group_of));
    groups = zt_state_xcalloc(n + 1, sizeof(*groups));
    global = zt_state_xcalloc(n + 1, sizeof(*global));

    for (size_t i = 0; i < n; i++) {
        const struct zt_policy *p = zt_state_policy_at(s, i);
        struct zt_authz_cpolicy *cp = &idx->pols[i];
        const char *key = p->key ? p->key : "";
        size_t key_len = strlen(key);
        uint64_t h = zt_authz_hash(key, key_len);
        zt_authz_compile_policy(a, p, (uint32_t)i, cp);
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
            uint64_t hn = zt_authz_hash(ns, len);
            struct nsslot *sl = ns_find(idx, ns, len, hn);
            if (!sl->g) {
                sl->g = ZT_AUTHZ_NEW(a, struct zt_authz_group, 1);
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
    zt_authz_arena_free(&idx->arena);
    free(idx);
}

/* ---------------------------------------------------------------- evaluation */

struct eval {
    const struct zt_authz_probe *pr;
    bool want_dry_run;
    const struct zt_authz_cpolicy *deny, *dry_deny;
    uint32_t deny_ord, dry_deny_ord;
    bool allowed, dry_allowed;
};

/* Whether policy cp could still change the outcome if ord is its position. */
static bool undecided(const struct eval *e, const struct zt_authz_cpolicy *cp, uint32_t ord)
{
    switch ((enum zt_authz_class)cp->cls) {
    case ZT_AUTHZ_CLS_DENY:
        return !e->deny || ord < e->deny_ord;
    case ZT_AUTHZ_CLS_DRY_DENY:
        return e->want_dry_run && (!e->dry_deny || ord < e->dry_deny_ord);
    case ZT_AUTHZ_CLS_ALLOW:
        return !e->allowed && !e->deny;
    case ZT_AUTHZ_CLS_DRY_ALLOW:
        return e->want_dry_run && !e->dry_allowed;
    }
    return false;
}

static void record(struct eval *e, const struct zt_authz_cpolicy *cp, uint32_t ord)
{
    switch ((enum zt_authz_class)cp->cls) {
    case ZT_AUTHZ_CLS_DENY:
        e->deny = cp;
        e->deny_ord = ord;
        break;
    case ZT_AUTHZ_CLS_DRY_DENY:
        e->dry_deny = cp;
        e->dry_deny_ord = ord;
        break;
    case ZT_AUTHZ_CLS_ALLOW:
        e->allowed = true;
        break;
    case ZT_AUTHZ_CLS_DRY_ALLOW:
        e->dry_allowed = true;
        break;
    }
}

static void eval_list(struct eval *e, const struct rref *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (undecided(e, v[i].pol, v[i].pol->ord) && zt_authz_rule_ok(v[i].rule, e->pr))
            record(e, v[i].pol, v[i].pol->ord);
}

static void eval_key(struct eval *e, const struct zt_authz_group *g, const struct zt_authz_key *k)
{
    const struct slot *s = slot_find(g, k);
    if (s->key)
        eval_list(e, g->post + s->off, s->n);
}

static void eval_group(struct eval *e, const struct zt_authz_group *g)
{
    const struct zt_authz_probe *pr = e->pr;
    const struct zt_authz_ident *id = pr->id;

    eval_list(e, g->scan, g->n_scan);
    if (!g->cap)
        return;
    if (id->present && (g->kinds & 1u << ZT_AUTHZ_GUARD_PRIN)) {
        struct zt_authz_key k = {.h = pr->h_prin,
                                 .s = id->principal,
                                 .len = (uint32_t)id->principal_len,
                                 .kind = ZT_AUTHZ_GUARD_PRIN};
        eval_key(e, g, &k);
    }
    if (id->present && (g->kinds & 1u << ZT_AUTHZ_GUARD_NS)) {
        struct zt_authz_key k = {
            .h = pr->h_ns, .s = pr->ns, .len = (uint32_t)pr->ns_len, .kind = ZT_AUTHZ_GUARD_NS};
        eval_key(e, g, &k);
    }
    for (uint32_t i = 0; i < g->n_plens; i++) {
        uint8_t addr[16];
        struct zt_authz_key k;
        if (g->plens[i].family != pr->src.family)
            continue;
        zt_authz_masked(&pr->src, g->plens[i].prefix, addr);
        k = zt_authz_src_key((const char *)addr, pr->src.family, g->plens[i].prefix);
        eval_key(e, g, &k);
    }
    if (g->kinds & 1u << ZT_AUTHZ_GUARD_PORT) {
        struct zt_authz_key k = {.h = zt_authz_mix((uint64_t)pr->port + 1),
                                 .len = pr->port,
                                 .kind = ZT_AUTHZ_GUARD_PORT};
        eval_key(e, g, &k);
    }
}

static void eval_policy(struct eval *e, const struct zt_authz_cpolicy *cp, uint32_t ord)
{
    for (uint32_t r = 0; r < cp->n_rules && undecided(e, cp, ord); r++)
        if (zt_authz_guard_ok(&cp->rules[r], e->pr) && zt_authz_rule_ok(&cp->rules[r], e->pr))
            record(e, cp, ord);
}

void zt_authz_index_eval(const struct zt_authz_index *idx, const struct zt_workload *wl,
                         const struct zt_authz_conn *conn, const struct zt_authz_ident *id,
                         bool want_dry_run, struct zt_authz_verdict *out)
{
    struct zt_authz_probe pr;
    struct eval e = {.pr = &pr, .want_dry_run = want_dry_run};
    const char *ns = wl->namespace ? wl->namespace : "";
    size_t ns_len = strlen(ns);
    const struct zt_authz_group *home = ns_find(idx, ns, ns_len, zt_authz_hash(ns, ns_len))->g;

    memset(out, 0, sizeof(*out));
    zt_authz_probe_init(&pr, conn, id);
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
        const struct zt_authz_cpolicy *cp = policy_find(idx, wl->authorization_policies[i]);
        if (!cp || cp->home == &idx->global || (cp->home && cp->home == home))
            continue;
        if (cp->cls == ZT_AUTHZ_CLS_ALLOW)
            out->has_allow = true;
        if (cp->cls == ZT_AUTHZ_CLS_DRY_ALLOW && want_dry_run)
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
