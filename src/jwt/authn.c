/* RequestAuthentication policies compiled per attachment. See authn.h. */
#include "jwt/authn.h"

#include "base/alloc.h"
#include "base/log.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void free_strs(const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((char *)v[i]);
    free((void *)v);
}

static void spec_cleanup(struct zt_jwt_rule_spec *r)
{
    free((char *)r->issuer);
    free_strs(r->audiences, r->n_audiences);
    free((char *)r->jwks);
    free((char *)r->jwks_uri);
    for (size_t i = 0; i < r->n_from_headers; i++) {
        free((char *)r->from_headers[i].name);
        free((char *)r->from_headers[i].prefix);
    }
    free((void *)r->from_headers);
    free_strs(r->from_params, r->n_from_params);
    free_strs(r->from_cookies, r->n_from_cookies);
    free((char *)r->output_payload_to_header);
    for (size_t i = 0; i < r->n_output_claim_to_headers; i++) {
        free((char *)r->output_claim_to_headers[i].header);
        free((char *)r->output_claim_to_headers[i].claim);
    }
    free((void *)r->output_claim_to_headers);
}

void zt_jwt_authn_policy_free(struct zt_jwt_authn_policy *p)
{
    if (!p)
        return;
    free(p->ns);
    free(p->name);
    for (size_t i = 0; i < p->n_targets; i++) {
        free(p->targets[i].ns);
        free(p->targets[i].name);
    }
    free(p->targets);
    for (size_t i = 0; i < p->n_rules; i++)
        spec_cleanup(&p->rules[i]);
    free(p->rules);
    free(p);
}

void zt_jwt_authn_policies_add(struct zt_jwt_authn_policies *l, struct zt_jwt_authn_policy *p)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = zt_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = p;
}

void zt_jwt_authn_policies_cleanup(struct zt_jwt_authn_policies *l)
{
    for (size_t i = 0; i < l->n; i++)
        zt_jwt_authn_policy_free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

size_t zt_jwt_authn_policies_uris(const struct zt_jwt_authn_policies *l, const char **uris,
                                  size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        for (size_t r = 0; r < l->v[i]->n_rules; r++) {
            const char *u = l->v[i]->rules[r].jwks_uri;
            bool seen = false;
            for (size_t k = 0; u && k < n && k < max && !seen; k++)
                seen = strcmp(uris[k], u) == 0;
            if (!u || seen)
                continue;
            if (n < max)
                uris[n] = u;
            n++;
        }
    return n;
}

/* One compiled rule set and the service it is for (none: the Gateway's). */
struct attached {
    bool is_entry;
    const char *ns, *name; /* borrowed from keys below; NULL for the Gateway's */
    struct zt_jwt_rules *rules;
};

struct zt_jwt_authn_set {
    atomic_uint refs;
    size_t n_policies;
    struct zt_jwt_rules *gateway; /* the Gateway's own, NULL if none */
    struct attached *svcs;        /* sorted by (is_entry, ns, name) */
    size_t n_svcs;
    char **keys; /* owned copies of the services' ns and name */
    size_t n_keys;
};

static int cmp_key(bool ae, const char *an, const char *am, bool be, const char *bn, const char *bm)
{
    if (ae != be)
        return ae ? 1 : -1;
    int c = strcmp(an, bn);
    return c ? c : strcmp(am, bm);
}

static int cmp_attached(const void *a, const void *b)
{
    const struct attached *x = a, *y = b;
    return cmp_key(x->is_entry, x->ns, x->name, y->is_entry, y->ns, y->name);
}

/* Policies by ns/name, a later one of the same name after the earlier. */
struct pol_ref {
    const struct zt_jwt_authn_policy *p;
    size_t order;
};

static int cmp_pol(const void *a, const void *b)
{
    const struct pol_ref *x = a, *y = b;
    int c = strcmp(x->p->ns, y->p->ns);
    if (!c)
        c = strcmp(x->p->name, y->p->name);
    if (!c)
        c = x->order < y->order ? -1 : x->order > y->order;
    return c;
}

static bool at_gateway(const struct zt_authz_l7_target *t, const struct zt_jwt_authn_policy *p,
                       const char *root_ns, const char *gw_ns, const char *gw_name)
{
    if (t->kind == ZT_AUTHZ_L7_GATEWAY_CLASS)
        return strcmp(p->ns, root_ns) == 0;
    return t->kind == ZT_AUTHZ_L7_GATEWAY && gw_ns && gw_name && strcmp(t->ns, gw_ns) == 0 &&
           strcmp(t->name, gw_name) == 0;
}

static bool is_service(const struct zt_authz_l7_target *t)
{
    return t->kind == ZT_AUTHZ_L7_SERVICE || t->kind == ZT_AUTHZ_L7_SERVICE_ENTRY;
}

/* Adds p's rules to *rs (created on first use). */
static void add_rules(struct zt_jwt_rules **rs, const struct zt_jwt_authn_policy *p,
                      zt_jwt_jwks_lookup_fn *jwks, void *ud, size_t *n_bad)
{
    char err[256];
    if (!*rs)
        *rs = zt_jwt_rules_new();
    for (size_t i = 0; i < p->n_rules; i++) {
        const struct zt_jwt_rule_spec *spec = &p->rules[i];
        int idx = zt_jwt_rules_add(*rs, spec, err, sizeof(err));
        if (idx < 0) {
            ZT_WARN("jwt", "RequestAuthentication %s/%s: jwtRules[%zu]: %s: rule left out", p->ns,
                    p->name, i, err);
            (*n_bad)++;
            continue;
        }
        size_t len = 0;
        const char *doc = spec->jwks_uri && jwks ? jwks(ud, spec->jwks_uri, &len) : NULL;
        if (doc && zt_jwt_rules_set_jwks(*rs, (size_t)idx, doc, len, err, sizeof(err)) < 0)
            ZT_WARN("jwt", "RequestAuthentication %s/%s: %s: %s", p->ns, p->name, spec->jwks_uri,
                    err);
    }
}

struct zt_jwt_authn_set *zt_jwt_authn_set_build(const struct zt_jwt_authn_policies *l,
                                                const char *root_ns, const char *gw_ns,
                                                const char *gw_name, zt_jwt_jwks_lookup_fn *jwks,
                                                void *ud, size_t *n_bad)
{
    size_t bad = 0, n = 0;
    root_ns = root_ns ? root_ns : "istio-system";
    /* The policies in force: the last of each ns/name. */
    struct pol_ref *pols = zt_xcalloc(l->n ? l->n : 1, sizeof(*pols));
    for (size_t i = 0; i < l->n; i++)
        pols[i] = (struct pol_ref){l->v[i], i};
    qsort(pols, l->n, sizeof(*pols), cmp_pol);
    for (size_t i = 0; i < l->n; i++) {
        if (i + 1 < l->n && strcmp(pols[i].p->ns, pols[i + 1].p->ns) == 0 &&
            strcmp(pols[i].p->name, pols[i + 1].p->name) == 0)
            continue;
        pols[n++] = pols[i];
    }

    struct zt_jwt_authn_set *s = zt_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    /* The services targeted, one entry each. */
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < pols[i].p->n_targets; t++)
            cap += is_service(&pols[i].p->targets[t]);
    s->svcs = zt_xcalloc(cap ? cap : 1, sizeof(*s->svcs));
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < pols[i].p->n_targets; t++) {
            const struct zt_authz_l7_target *tg = &pols[i].p->targets[t];
            if (is_service(tg))
                s->svcs[s->n_svcs++] = (struct attached){tg->kind == ZT_AUTHZ_L7_SERVICE_ENTRY,
                                                         tg->ns, tg->name, NULL};
        }
    qsort(s->svcs, s->n_svcs, sizeof(*s->svcs), cmp_attached);
    size_t u = 0;
    for (size_t i = 0; i < s->n_svcs; i++)
        if (!u || cmp_attached(&s->svcs[u - 1], &s->svcs[i]) != 0)
            s->svcs[u++] = s->svcs[i];
    s->n_svcs = u;
    s->keys = zt_xcalloc(2 * u + 1, sizeof(*s->keys));
    for (size_t i = 0; i < u; i++) {
        s->keys[s->n_keys++] = zt_xstrdup(s->svcs[i].ns);
        s->keys[s->n_keys++] = zt_xstrdup(s->svcs[i].name);
        s->svcs[i].ns = s->keys[s->n_keys - 2];
        s->svcs[i].name = s->keys[s->n_keys - 1];
    }

    /* In ns/name order: a Gateway (or class) policy adds its rules to every
     * set, a service policy to its service's. */
    for (size_t i = 0; i < n; i++) {
        const struct zt_jwt_authn_policy *p = pols[i].p;
        bool gw = false, any = false;
        for (size_t t = 0; t < p->n_targets && !gw; t++)
            gw = at_gateway(&p->targets[t], p, root_ns, gw_ns, gw_name);
        if (gw) {
            add_rules(&s->gateway, p, jwks, ud, &bad);
            for (size_t k = 0; k < s->n_svcs; k++)
                add_rules(&s->svcs[k].rules, p, jwks, ud, &bad);
            any = true;
        }
        for (size_t t = 0; t < p->n_targets && !gw; t++) {
            const struct zt_authz_l7_target *tg = &p->targets[t];
            if (!is_service(tg))
                continue;
            struct attached key = {tg->kind == ZT_AUTHZ_L7_SERVICE_ENTRY, tg->ns, tg->name, NULL};
            struct attached *a = bsearch(&key, s->svcs, s->n_svcs, sizeof(*s->svcs), cmp_attached);
            if (a)
                add_rules(&a->rules, p, jwks, ud, &bad);
            any = true;
        }
        s->n_policies += any;
    }
    free(pols);
    if (n_bad)
        *n_bad = bad;
    if (!s->n_policies) {
        zt_jwt_authn_set_unref(s);
        return NULL;
    }
    return s;
}

struct zt_jwt_authn_set *zt_jwt_authn_set_ref(struct zt_jwt_authn_set *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void zt_jwt_authn_set_unref(struct zt_jwt_authn_set *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    zt_jwt_rules_free(s->gateway);
    for (size_t i = 0; i < s->n_svcs; i++)
        zt_jwt_rules_free(s->svcs[i].rules);
    free(s->svcs);
    for (size_t i = 0; i < s->n_keys; i++)
        free(s->keys[i]);
    free(s->keys);
    free(s);
}

const struct zt_jwt_rules *zt_jwt_authn_rules(const struct zt_jwt_authn_set *s, const char *svc_ns,
                                              const char *svc_name, bool is_entry)
{
    if (!s)
        return NULL;
    if (svc_ns && svc_name && s->n_svcs) {
        struct attached key = {is_entry, svc_ns, svc_name, NULL};
        const struct attached *a =
            bsearch(&key, s->svcs, s->n_svcs, sizeof(*s->svcs), cmp_attached);
        if (a)
            return a->rules;
    }
    return s->gateway;
}

size_t zt_jwt_authn_set_policies(const struct zt_jwt_authn_set *s)
{
    return s ? s->n_policies : 0;
}

size_t zt_jwt_authn_set_sets(const struct zt_jwt_authn_set *s)
{
    return s ? (s->gateway != NULL) + s->n_svcs : 0;
}
