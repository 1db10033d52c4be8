/* The L7 AuthorizationPolicy engine. See l7.h for semantics and cost.
 *
 * Policies keep the form the reader gives them: every value classified
 * once (exact / prefix / suffix / presence / template, CIDRs parsed, ports
 * as numbers), so a check only compares bytes. Sealing sorts the policies
 * by ns/name (a stable order for reports) and builds a sorted array of
 * (target, policy) pairs searched with bsearch. */
#include "authz/l7.h"

#include "base/alloc.h"
#include "base/err.h"
#include "http/head.h"

#include <assert.h>
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *zt_authz_l7_action_str(enum zt_authz_l7_action a)
{
    switch (a) {
    case ZT_AUTHZ_L7_ALLOW:
        return "ALLOW";
    case ZT_AUTHZ_L7_DENY:
        return "DENY";
    case ZT_AUTHZ_L7_AUDIT:
        return "AUDIT";
    }
    return "?";
}

/* ---------------------------------------------------------------- parsing values */

/* Istio's CheckValidPathTemplate: between the slashes, {*} (one segment),
 * {**} (one or more; no operator after it, literal segments may follow) or
 * a literal of RFC 3986 pchars (no '*', '{', '}', no empty segment but a
 * trailing one). */
static const char *check_template(const char *v)
{
    static const char pchar[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                "-._~%!$&'()+,;:@=";
    const char *p = v;
    bool any = false;
    if (*v != '/')
        return "a path template must start with '/'";
    while (*p) {
        const char *seg = ++p, *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        bool op = (n == 3 && !memcmp(seg, "{*}", 3)) || (n == 4 && !memcmp(seg, "{**}", 4));
        if (op && any)
            return "{**} must be the last operator of a path template";
        if (op)
            any = n == 4;
        else if ((n == 0 && end) || strspn(seg, pchar) < n)
            return "a path template segment must be {*}, {**} or a literal of URL path characters";
        p = seg + n;
    }
    return NULL;
}

int zt_authz_l7_str_parse(const char *v, unsigned flags, struct zt_authz_l7_str *out,
                          const char **why)
{
    size_t n = strlen(v);
    memset(out, 0, sizeof(*out));
    *why = NULL;
    if ((flags & ZT_AUTHZ_L7_F_PATH) && strstr(v, "{*")) {
        if ((*why = check_template(v)))
            return ZT_E_CONFIG;
        out->kind = ZT_AUTHZ_L7_TEMPLATE;
        out->v = zt_xstrdup(v);
    } else if (n == 1 && v[0] == '*') {
        out->kind = ZT_AUTHZ_L7_PRESENCE;
        out->v = zt_xstrdup("");
    } else if (n > 1 && v[0] == '*') {
        out->kind = ZT_AUTHZ_L7_SUFFIX;
        out->v = zt_xstrdup(v + 1);
    } else if (n > 1 && v[n - 1] == '*') {
        out->kind = ZT_AUTHZ_L7_PREFIX;
        out->v = zt_xstrndup(v, n - 1);
    } else {
        out->kind = ZT_AUTHZ_L7_EXACT;
        out->v = zt_xstrdup(v);
    }
    out->len = (uint32_t)strlen(out->v);
    if (out->kind != ZT_AUTHZ_L7_TEMPLATE && out->kind != ZT_AUTHZ_L7_PRESENCE &&
        strchr(out->v, '*')) {
        free(out->v);
        out->v = NULL;
        *why = "'*' is allowed only as the first or last character, or alone";
        return ZT_E_CONFIG;
    }
    if (flags & ZT_AUTHZ_L7_F_HOST) {
        out->nocase = true;
        for (char *p = out->v; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    }
    return 0;
}

static const struct {
    const char *name;
    enum zt_authz_l7_key key;
} plain_keys[] = {
    {"source.ip", ZT_AUTHZ_L7_K_SOURCE_IP},
    {"remote.ip", ZT_AUTHZ_L7_K_REMOTE_IP},
    {"source.namespace", ZT_AUTHZ_L7_K_SOURCE_NS},
    {"source.principal", ZT_AUTHZ_L7_K_SOURCE_PRINCIPAL},
    {"source.serviceAccount", ZT_AUTHZ_L7_K_SOURCE_SA},
    {"source.trustDomain", ZT_AUTHZ_L7_K_SOURCE_TD},
    {"request.auth.principal", ZT_AUTHZ_L7_K_AUTH_PRINCIPAL},
    {"request.auth.audiences", ZT_AUTHZ_L7_K_AUTH_AUDIENCES},
    {"request.auth.presenter", ZT_AUTHZ_L7_K_AUTH_PRESENTER},
    {"destination.ip", ZT_AUTHZ_L7_K_DEST_IP},
    {"destination.port", ZT_AUTHZ_L7_K_DEST_PORT},
    {"connection.sni", ZT_AUTHZ_L7_K_SNI},
};

/* "[a][b]..." after a prefix: the bracketed names (none empty, no '[' or
 * ']' inside), at most max of them. Returns how many, or -1. */
static int brackets(const char *p, char **names, int max)
{
    int n = 0;
    while (*p) {
        const char *end;
        if (*p != '[' || n == max)
            goto fail;
        end = strchr(p + 1, ']');
        if (!end || end == p + 1 || memchr(p + 1, '[', (size_t)(end - p - 1)))
            goto fail;
        names[n++] = zt_xstrndup(p + 1, (size_t)(end - p - 1));
        p = end + 1;
    }
    return n;
fail:
    while (n > 0)
        free(names[--n]);
    return -1;
}

int zt_authz_l7_when_key_parse(const char *key, struct zt_authz_l7_when *w, char *why,
                               size_t why_len)
{
    static const char hdr[] = "request.headers", clm[] = "request.auth.claims";
    char *names[ZT_AUTHZ_L7_MAX_CLAIM_DEPTH];
    int n;
    for (size_t i = 0; i < sizeof(plain_keys) / sizeof(plain_keys[0]); i++)
        if (!strcmp(key, plain_keys[i].name)) {
            w->key = (uint8_t)plain_keys[i].key;
            return 0;
        }
    if (!strncmp(key, hdr, sizeof(hdr) - 1)) {
        if ((n = brackets(key + sizeof(hdr) - 1, names, 1)) != 1)
            return zt_errf(why, why_len, ZT_E_CONFIG, "\"%.80s\": expected request.headers[<name>]",
                           key);
        for (char *p = names[0]; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        w->key = ZT_AUTHZ_L7_K_HEADER;
        w->header = names[0];
        return 0;
    }
    if (!strncmp(key, clm, sizeof(clm) - 1)) {
        if ((n = brackets(key + sizeof(clm) - 1, names, ZT_AUTHZ_L7_MAX_CLAIM_DEPTH)) < 1)
            return zt_errf(why, why_len, ZT_E_CONFIG,
                           "\"%.80s\": expected request.auth.claims[<name>] (nested: [a][b], "
                           "at most %d levels)",
                           key, ZT_AUTHZ_L7_MAX_CLAIM_DEPTH);
        w->key = ZT_AUTHZ_L7_K_AUTH_CLAIMS;
        w->claim = zt_xcalloc((size_t)n, sizeof(char *));
        memcpy(w->claim, names, (size_t)n * sizeof(char *));
        w->n_claim = (size_t)n;
        return 0;
    }
    if (!strncmp(key, "experimental.envoy.filters.", 27))
        return zt_errf(why, why_len, ZT_E_CONFIG,
                       "\"%.80s\": experimental.envoy.filters.* keys are not supported here", key);
    return zt_errf(why, why_len, ZT_E_CONFIG, "\"%.80s\" is not a supported key", key);
}

const char *zt_authz_l7_source_invalid(const struct zt_authz_l7_source *s)
{
    if ((s->service_accounts.n | s->not_service_accounts.n) &&
        (s->principals.n | s->not_principals.n | s->namespaces.n | s->not_namespaces.n))
        return "cannot set serviceAccounts with namespaces or principals";
    if (!(s->principals.n | s->not_principals.n | s->request_principals.n |
          s->not_request_principals.n | s->namespaces.n | s->not_namespaces.n | s->ip_blocks.n |
          s->not_ip_blocks.n | s->remote_ip_blocks.n | s->not_remote_ip_blocks.n |
          s->service_accounts.n | s->not_service_accounts.n))
        return "must not be empty";
    return NULL;
}

const char *zt_authz_l7_operation_invalid(const struct zt_authz_l7_operation *o)
{
    if (!(o->hosts.n | o->not_hosts.n | o->methods.n | o->not_methods.n | o->paths.n |
          o->not_paths.n | o->ports.n | o->not_ports.n))
        return "must not be empty";
    return NULL;
}

/* ---------------------------------------------------------------- ownership */

static void strs_free(struct zt_authz_l7_strs *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].v);
    free(l->v);
}

static void source_free(struct zt_authz_l7_source *s)
{
    strs_free(&s->principals);
    strs_free(&s->not_principals);
    strs_free(&s->namespaces);
    strs_free(&s->not_namespaces);
    strs_free(&s->request_principals);
    strs_free(&s->not_request_principals);
    strs_free(&s->service_accounts);
    strs_free(&s->not_service_accounts);
    free(s->ip_blocks.v);
    free(s->not_ip_blocks.v);
    free(s->remote_ip_blocks.v);
    free(s->not_remote_ip_blocks.v);
}

static void operation_free(struct zt_authz_l7_operation *o)
{
    strs_free(&o->hosts);
    strs_free(&o->not_hosts);
    strs_free(&o->methods);
    strs_free(&o->not_methods);
    strs_free(&o->paths);
    strs_free(&o->not_paths);
    free(o->ports.v);
    free(o->not_ports.v);
}

static void when_free(struct zt_authz_l7_when *w)
{
    free(w->header);
    for (size_t i = 0; i < w->n_claim; i++)
        free(w->claim[i]);
    free(w->claim);
    strs_free(&w->values);
    strs_free(&w->not_values);
    free(w->cidrs.v);
    free(w->not_cidrs.v);
    free(w->ports.v);
    free(w->not_ports.v);
}

void zt_authz_l7_policy_free(struct zt_authz_l7_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_rules; i++) {
        struct zt_authz_l7_rule *r = &p->rules[i];
        for (size_t j = 0; j < r->n_from; j++)
            source_free(&r->from[j]);
        for (size_t j = 0; j < r->n_to; j++)
            operation_free(&r->to[j]);
        for (size_t j = 0; j < r->n_when; j++)
            when_free(&r->when[j]);
        free(r->from);
        free(r->to);
        free(r->when);
    }
    for (size_t i = 0; i < p->n_targets; i++) {
        free(p->targets[i].ns);
        free(p->targets[i].name);
    }
    free(p->rules);
    free(p->targets);
    free(p->ns);
    free(p->name);
    free(p);
}

/* ---------------------------------------------------------------- the set */

struct tentry {
    uint8_t kind;
    const char *ns, *name;
    uint32_t policy; /* index in policies (sorted) */
};

struct zt_authz_l7_set {
    atomic_int refs;
    bool sealed;
    bool has_audit, has_dry_run; /* passes a check may skip */
    char *root_ns;
    struct zt_authz_l7_policy **policies;
    size_t n, cap;
    struct tentry *targets;
    size_t n_targets;
};

struct zt_authz_l7_set *zt_authz_l7_set_new(const char *root_ns)
{
    struct zt_authz_l7_set *s = zt_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->root_ns = zt_xstrdup(root_ns ? root_ns : "istio-system");
    return s;
}

void zt_authz_l7_set_add(struct zt_authz_l7_set *s, struct zt_authz_l7_policy *p)
{
    assert(!s->sealed);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->policies = zt_xrealloc(s->policies, s->cap * sizeof(*s->policies));
    }
    s->policies[s->n++] = p;
}

/* Order by ns/name; among equals the later addition first, so the dedup
 * below keeps it. The index array breaks ties (qsort is not stable). */
struct pslot {
    struct zt_authz_l7_policy *p;
    size_t added;
};

static int cmp_pslot(const void *a, const void *b)
{
    const struct pslot *x = a, *y = b;
    int c = strcmp(x->p->ns, y->p->ns);
    if (!c)
        c = strcmp(x->p->name, y->p->name);
    if (!c)
        c = x->added < y->added ? 1 : -1;
    return c;
}

static int cmp_key(uint8_t ka, const char *nsa, const char *na, uint8_t kb, const char *nsb,
                   const char *nb)
{
    int c = (int)ka - (int)kb;
    if (!c)
        c = strcmp(nsa, nsb);
    if (!c)
        c = strcmp(na, nb);
    return c;
}

static int cmp_tentry(const void *a, const void *b)
{
    const struct tentry *x = a, *y = b;
    int c = cmp_key(x->kind, x->ns, x->name, y->kind, y->ns, y->name);
    if (!c)
        c = x->policy < y->policy ? -1 : x->policy > y->policy;
    return c;
}

void zt_authz_l7_set_seal(struct zt_authz_l7_set *s)
{
    struct pslot *v = zt_xcalloc(s->n ? s->n : 1, sizeof(*v));
    size_t n = 0, nt = 0;
    assert(!s->sealed);
    for (size_t i = 0; i < s->n; i++)
        v[i] = (struct pslot){s->policies[i], i};
    qsort(v, s->n, sizeof(*v), cmp_pslot);
    for (size_t i = 0; i < s->n; i++) {
        if (n && !strcmp(s->policies[n - 1]->ns, v[i].p->ns) &&
            !strcmp(s->policies[n - 1]->name, v[i].p->name)) {
            zt_authz_l7_policy_free(v[i].p);
            continue;
        }
        s->policies[n++] = v[i].p;
        nt += v[i].p->n_targets;
        s->has_audit = s->has_audit || v[i].p->action == ZT_AUTHZ_L7_AUDIT;
        s->has_dry_run = s->has_dry_run || v[i].p->dry_run;
    }
    free(v);
    s->n = n;
    s->targets = zt_xcalloc(nt ? nt : 1, sizeof(*s->targets));
    for (size_t i = 0; i < n; i++) {
        const struct zt_authz_l7_policy *p = s->policies[i];
        for (size_t j = 0; j < p->n_targets; j++) {
            const struct zt_authz_l7_target *t = &p->targets[j];
            /* GatewayClass attaches only from the root namespace. */
            if (t->kind == ZT_AUTHZ_L7_GATEWAY_CLASS && strcmp(p->ns, s->root_ns) != 0)
                continue;
            s->targets[s->n_targets++] = (struct tentry){
                t->kind, t->kind == ZT_AUTHZ_L7_GATEWAY_CLASS ? "" : p->ns, t->name, (uint32_t)i};
        }
    }
    qsort(s->targets, s->n_targets, sizeof(*s->targets), cmp_tentry);
    s->sealed = true;
}

size_t zt_authz_l7_set_count(const struct zt_authz_l7_set *s)
{
    return s ? s->n : 0;
}

const struct zt_authz_l7_policy *zt_authz_l7_set_at(const struct zt_authz_l7_set *s, size_t i)
{
    return s && i < s->n ? s->policies[i] : NULL;
}

struct zt_authz_l7_set *zt_authz_l7_set_ref(struct zt_authz_l7_set *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void zt_authz_l7_set_unref(struct zt_authz_l7_set *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->n; i++)
        zt_authz_l7_policy_free(s->policies[i]);
    free(s->policies);
    free(s->targets);
    free(s->root_ns);
    free(s);
}

/* The entries of target (kind, ns, name): [*lo, *hi). */
static void find_target(const struct zt_authz_l7_set *s, uint8_t kind, const char *ns,
                        const char *name, size_t *lo, size_t *hi)
{
    size_t a = 0, b = s->n_targets;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        const struct tentry *e = &s->targets[m];
        if (cmp_key(e->kind, e->ns, e->name, kind, ns, name) < 0)
            a = m + 1;
        else
            b = m;
    }
    *lo = a;
    while (a < s->n_targets &&
           !cmp_key(s->targets[a].kind, s->targets[a].ns, s->targets[a].name, kind, ns, name))
        a++;
    *hi = a;
}

/* ---------------------------------------------------------------- path normalization */

/* The value of hex digit c (isxdigit): '0'-'9' are 0x3N, letters 0x4N or
 * 0x6N with N from 1. */
static int hexval(int c)
{
    return (c & 0xf) + (c >> 6) * 9;
}

static bool is_unreserved(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

size_t zt_authz_l7_path_normalize(const char *in, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0, i = 0;
    bool abs = len > 0 && in[0] == '/';
    for (size_t k = 0; k < len; k++)
        if (in[k] == '?' || in[k] == '#') {
            len = k;
            break;
        }
    if (!abs) { /* "*" (OPTIONS) or an authority (CONNECT): as given */
        memcpy(out, in, len);
        out[len] = '\0';
        return len;
    }
    /* Segment by segment: decode, then drop "." and pop on "..". out always
     * holds "/seg/seg..." with no trailing slash handling until the end. */
    while (i < len) {
        size_t start = o, dots = 0, chars = 0;
        i++; /* the '/' */
        out[o++] = '/';
        while (i < len && in[i] != '/') {
            int c = (unsigned char)in[i];
            if (c == '%' && i + 2 < len && isxdigit((unsigned char)in[i + 1]) &&
                isxdigit((unsigned char)in[i + 2])) {
                int h1 = hexval(in[i + 1]), h2 = hexval(in[i + 2]), d = h1 * 16 + h2;
                if (is_unreserved(d)) {
                    out[o++] = (char)d;
                } else {
                    out[o++] = '%';
                    out[o++] = hex[h1];
                    out[o++] = hex[h2];
                }
                i += 3;
                if (d == '.')
                    dots++;
                chars++;
                continue;
            }
            if (c == '.')
                dots++;
            out[o++] = (char)c;
            chars++;
            i++;
        }
        if (chars == dots && (dots == 1 || dots == 2)) {
            bool last = i >= len;
            o = start; /* drop the segment itself */
            if (dots == 2 && o > 0) {
                while (o > 0 && out[o - 1] != '/')
                    o--;
                if (o > 0)
                    o--; /* the previous segment's '/' */
            }
            if (last) /* "/a/.." is "/", "/a/." is "/a/" */
                out[o++] = '/';
        }
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return o;
}

/* ---------------------------------------------------------------- remote address */

void zt_authz_l7_remote_ip(const struct zt_http_head *h, const struct zt_ip *source,
                           struct zt_ip *out)
{
    const char *xff = NULL, *last;
    char buf[ZT_IP_STRLEN + 1];
    size_t n;
    *out = *source;
    for (size_t i = 0; h && i < h->n_fields; i++)
        if (!strcmp(h->fields[i].name, "x-forwarded-for"))
            xff = h->fields[i].value;
    if (!xff)
        return;
    last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ' || *last == '\t')
        last++;
    n = strlen(last);
    while (n && (last[n - 1] == ' ' || last[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= sizeof(buf))
        return;
    memcpy(buf, last, n);
    buf[n] = '\0';
    if (zt_ip_parse(buf, out))
        *out = *source;
}

/* ---------------------------------------------------------------- matching */

/* The request's attributes, computed once per check. */
struct probe {
    const struct zt_authz_l7_request *rq;
    const char *principal; /* without "spiffe://", NULL without identity */
    const char *ns;        /* views into principal */
    size_t ns_len;
    const char *sa;
    size_t sa_len;
    /* "ns/sa" of the identity; NULL when it has none or it is longer than
     * any value Istio accepts, so that no exact value matches. */
    const char *nssa;
    size_t nssa_len;
    char nssa_buf[ZT_AUTHZ_L7_MAX_SA + 1];
    size_t td_len;
    struct zt_ip remote;
    const char *path; /* normalized */
    size_t path_len;
    const char *host;
    const char *method;
    /* A TCP connection (no request): the HTTP-only fields are left out of
     * DENY and AUDIT rules and make ALLOW rules never match, as Istio
     * builds a waypoint's network RBAC. */
    bool tcp;
};

static void probe_identity(struct probe *pr, const char *id)
{
    const char *p;
    if (!id || !*id)
        return;
    pr->principal = !strncmp(id, "spiffe://", 9) ? id + 9 : id;
    p = strchr(pr->principal, '/');
    pr->td_len = p ? (size_t)(p - pr->principal) : strlen(pr->principal);
    /* td/ns/<ns>/sa/<sa> */
    if (p && !strncmp(p, "/ns/", 4)) {
        const char *ns = p + 4, *e = strchr(ns, '/');
        if (e && !strncmp(e, "/sa/", 4)) {
            pr->ns = ns;
            pr->ns_len = (size_t)(e - ns);
            pr->sa = e + 4;
            pr->sa_len = strlen(pr->sa);
            if (pr->ns_len + 1 + pr->sa_len <= ZT_AUTHZ_L7_MAX_SA) {
                memcpy(pr->nssa_buf, pr->ns, pr->ns_len);
                pr->nssa_buf[pr->ns_len] = '/';
                memcpy(pr->nssa_buf + pr->ns_len + 1, pr->sa, pr->sa_len);
                pr->nssa = pr->nssa_buf;
                pr->nssa_len = pr->ns_len + 1 + pr->sa_len;
            }
        }
    }
}

static bool template_match(const char *t, const char *s, size_t len)
{
    /* Both start with '/'; compare segment by segment. */
    const char *end = s + len;
    while (*t) {
        const char *tseg = t + 1, *tend = strchr(tseg, '/');
        size_t tn = tend ? (size_t)(tend - tseg) : strlen(tseg);
        const char *sseg, *send;
        if (s >= end || *s != '/')
            return false;
        sseg = s + 1;
        send = memchr(sseg, '/', (size_t)(end - sseg));
        if (!send)
            send = end;
        if (tn == 4 && !memcmp(tseg, "{**}", 4)) {
            /* One or more segments, then the literal rest of t. */
            size_t tail = strlen(tseg + 4);
            return (size_t)(end - s) >= 2 + tail && !memcmp(end - tail, tseg + 4, tail);
        }
        if (tn == 3 && !memcmp(tseg, "{*}", 3)) {
            if (send == sseg)
                return false;
        } else if ((size_t)(send - sseg) != tn || memcmp(sseg, tseg, tn) != 0) {
            return false;
        }
        t = tseg + tn;
        s = send;
    }
    return s == end;
}

/* Whether value v[0..len) (NULL: absent) matches m. */
static bool str_match(const struct zt_authz_l7_str *m, const char *v, size_t len)
{
    if (!v)
        return false;
    switch (m->kind) {
    case ZT_AUTHZ_L7_EXACT:
        return len == m->len && (m->nocase ? !strncasecmp(v, m->v, len) : !memcmp(v, m->v, len));
    case ZT_AUTHZ_L7_PREFIX:
        return len >= m->len &&
               (m->nocase ? !strncasecmp(v, m->v, m->len) : !memcmp(v, m->v, m->len));
    case ZT_AUTHZ_L7_SUFFIX:
        return len >= m->len && (m->nocase ? !strncasecmp(v + len - m->len, m->v, m->len)
                                           : !memcmp(v + len - m->len, m->v, m->len));
    case ZT_AUTHZ_L7_PRESENCE:
        return len > 0;
    case ZT_AUTHZ_L7_TEMPLATE:
        return template_match(m->v, v, len);
    }
    return false;
}

static bool strs_any(const struct zt_authz_l7_strs *l, const char *v, size_t len)
{
    for (size_t i = 0; i < l->n; i++)
        if (str_match(&l->v[i], v, len))
            return true;
    return false;
}

/* A populated positive / negative pair: true when it passes. */
static bool strs_ok(const struct zt_authz_l7_strs *pos, const struct zt_authz_l7_strs *neg,
                    const char *v, size_t len)
{
    if (pos->n && !strs_any(pos, v, len))
        return false;
    return !(neg->n && strs_any(neg, v, len));
}

static bool strs_ok_z(const struct zt_authz_l7_strs *pos, const struct zt_authz_l7_strs *neg,
                      const char *v)
{
    return strs_ok(pos, neg, v, v ? strlen(v) : 0);
}

static bool cidrs_any(const struct zt_authz_l7_cidrs *l, const struct zt_ip *ip)
{
    for (size_t i = 0; i < l->n; i++)
        if (ip->family && zt_cidr_contains(&l->v[i], ip))
            return true;
    return false;
}

static bool cidrs_ok(const struct zt_authz_l7_cidrs *pos, const struct zt_authz_l7_cidrs *neg,
                     const struct zt_ip *ip)
{
    if (pos->n && !cidrs_any(pos, ip))
        return false;
    return !(neg->n && cidrs_any(neg, ip));
}

static bool ports_any(const struct zt_authz_l7_ports *l, uint16_t port)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == port)
            return true;
    return false;
}

static bool ports_ok(const struct zt_authz_l7_ports *pos, const struct zt_authz_l7_ports *neg,
                     uint16_t port)
{
    if (pos->n && !ports_any(pos, port))
        return false;
    return !(neg->n && ports_any(neg, port));
}

/* principals and namespaces need an identity: without one a positive list
 * fails and a not-list passes (Envoy's NOT of a failed match). */
static bool source_ok(const struct zt_authz_l7_source *s, const struct probe *pr)
{
    const struct zt_authz_l7_request *rq = pr->rq;
    return strs_ok_z(&s->principals, &s->not_principals, pr->principal) &&
           strs_ok(&s->namespaces, &s->not_namespaces, pr->ns, pr->ns_len) &&
           strs_ok(&s->service_accounts, &s->not_service_accounts, pr->nssa, pr->nssa_len) &&
           (pr->tcp ||
            strs_ok_z(&s->request_principals, &s->not_request_principals, rq->request_principal)) &&
           cidrs_ok(&s->ip_blocks, &s->not_ip_blocks, &rq->source_ip) &&
           cidrs_ok(&s->remote_ip_blocks, &s->not_remote_ip_blocks, &pr->remote);
}

static bool operation_ok(const struct zt_authz_l7_operation *o, const struct probe *pr)
{
    return (pr->tcp || (strs_ok_z(&o->hosts, &o->not_hosts, pr->host) &&
                        strs_ok_z(&o->methods, &o->not_methods, pr->method) &&
                        strs_ok(&o->paths, &o->not_paths, pr->path, pr->path_len))) &&
           ports_ok(&o->ports, &o->not_ports, pr->rq->destination_port);
}

/* Envoy's present_match ("*" on a header) holds for a field with an empty
 * value too; the other forms compare the value as strings do. */
static bool header_any(const struct zt_authz_l7_strs *l, const char *v, size_t len)
{
    for (size_t i = 0; i < l->n; i++)
        if (v && (l->v[i].kind == ZT_AUTHZ_L7_PRESENCE || str_match(&l->v[i], v, len)))
            return true;
    return false;
}

static bool header_ok(const struct zt_authz_l7_strs *pos, const struct zt_authz_l7_strs *neg,
                      const char *v, size_t len)
{
    if (pos->n && !header_any(pos, v, len))
        return false;
    return !(neg->n && header_any(neg, v, len));
}

/* A header's value as Envoy's matcher sees it: repeated fields joined with
 * ",". Returns a pointer to the value (the field's own, or buf / *heap). */
static const char *header_value(const struct zt_http_head *h, const char *name, char *buf,
                                size_t cap, char **heap, size_t *len)
{
    const char *first = NULL;
    size_t total = 0, count = 0, o = 0;
    char *dst;
    for (size_t i = 0; h && i < h->n_fields; i++)
        if (!strcmp(h->fields[i].name, name)) {
            if (!first)
                first = h->fields[i].value;
            total += strlen(h->fields[i].value) + 1;
            count++;
        }
    if (count <= 1) {
        *len = first ? strlen(first) : 0;
        return first;
    }
    dst = total <= cap ? buf : (*heap = zt_xmalloc(total));
    for (size_t i = 0; i < h->n_fields; i++)
        if (!strcmp(h->fields[i].name, name)) {
            size_t n = strlen(h->fields[i].value);
            if (o)
                dst[o++] = ',';
            memcpy(dst + o, h->fields[i].value, n);
            o += n;
        }
    dst[o] = '\0';
    *len = o;
    return dst;
}

/* A claim value matches when it is a string that matches, or a list with a
 * string that does. scope and permission are space-delimited (Istio). */
static bool claim_str_any(const struct zt_authz_l7_strs *l, const char *v, bool spaced)
{
    if (!spaced)
        return strs_any(l, v, strlen(v));
    while (*v) {
        size_t n = strcspn(v, " ");
        if (n && strs_any(l, v, n))
            return true;
        v += n;
        v += strspn(v, " ");
    }
    return false;
}

static bool claim_any(const struct zt_authz_l7_strs *l, const json_t *v, bool spaced)
{
    if (json_is_string(v))
        return claim_str_any(l, json_string_value(v), spaced);
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            if (json_is_string(e) && claim_str_any(l, json_string_value(e), spaced))
                return true;
        }
    }
    return false;
}

static bool claims_ok(const struct zt_authz_l7_when *w, const json_t *claims)
{
    const json_t *v = claims;
    const char *leaf = w->claim[w->n_claim - 1];
    bool spaced = !strcmp(leaf, "scope") || !strcmp(leaf, "permission");
    for (size_t i = 0; i < w->n_claim && v; i++)
        v = json_is_object(v) ? json_object_get(v, w->claim[i]) : NULL;
    if (w->values.n && !(v && claim_any(&w->values, v, spaced)))
        return false;
    return !(w->not_values.n && v && claim_any(&w->not_values, v, spaced));
}

static bool audiences_any(const struct zt_authz_l7_strs *l, const struct zt_authz_l7_request *rq)
{
    for (size_t i = 0; i < rq->n_audiences; i++)
        if (rq->audiences[i] && strs_any(l, rq->audiences[i], strlen(rq->audiences[i])))
            return true;
    return false;
}

/* A `when` key only a request has. */
static bool when_is_http(const struct zt_authz_l7_when *w)
{
    switch (w->key) {
    case ZT_AUTHZ_L7_K_HEADER:
    case ZT_AUTHZ_L7_K_AUTH_PRINCIPAL:
    case ZT_AUTHZ_L7_K_AUTH_AUDIENCES:
    case ZT_AUTHZ_L7_K_AUTH_PRESENTER:
    case ZT_AUTHZ_L7_K_AUTH_CLAIMS:
        return true;
    default:
        return false;
    }
}

static bool strs_set(const struct zt_authz_l7_strs *a, const struct zt_authz_l7_strs *b)
{
    return a->n || b->n;
}

/* Whether rule r uses a field only a request has (for TCP). */
static bool rule_is_http(const struct zt_authz_l7_rule *r)
{
    for (size_t i = 0; i < r->n_from; i++)
        if (strs_set(&r->from[i].request_principals, &r->from[i].not_request_principals))
            return true;
    for (size_t i = 0; i < r->n_to; i++) {
        const struct zt_authz_l7_operation *o = &r->to[i];
        if (strs_set(&o->hosts, &o->not_hosts) || strs_set(&o->methods, &o->not_methods) ||
            strs_set(&o->paths, &o->not_paths))
            return true;
    }
    for (size_t i = 0; i < r->n_when; i++)
        if (when_is_http(&r->when[i]))
            return true;
    return false;
}

static bool when_ok(const struct zt_authz_l7_when *w, const struct probe *pr)
{
    const struct zt_authz_l7_request *rq = pr->rq;
    if (pr->tcp && when_is_http(w))
        return true; /* left out (an ALLOW rule with it never gets here) */
    switch (w->key) {
    case ZT_AUTHZ_L7_K_HEADER: {
        char buf[4096], *heap = NULL;
        size_t len;
        const char *v = header_value(rq->head, w->header, buf, sizeof(buf), &heap, &len);
        bool ok = header_ok(&w->values, &w->not_values, v, len);
        free(heap);
        return ok;
    }
    case ZT_AUTHZ_L7_K_SOURCE_IP:
        return cidrs_ok(&w->cidrs, &w->not_cidrs, &rq->source_ip);
    case ZT_AUTHZ_L7_K_REMOTE_IP:
        return cidrs_ok(&w->cidrs, &w->not_cidrs, &pr->remote);
    case ZT_AUTHZ_L7_K_DEST_IP:
        return cidrs_ok(&w->cidrs, &w->not_cidrs, &rq->destination_ip);
    case ZT_AUTHZ_L7_K_DEST_PORT:
        return ports_ok(&w->ports, &w->not_ports, rq->destination_port);
    case ZT_AUTHZ_L7_K_SOURCE_NS:
        return strs_ok(&w->values, &w->not_values, pr->ns, pr->ns_len);
    case ZT_AUTHZ_L7_K_SOURCE_PRINCIPAL:
        return strs_ok_z(&w->values, &w->not_values, pr->principal);
    case ZT_AUTHZ_L7_K_SOURCE_SA:
        return strs_ok(&w->values, &w->not_values, pr->nssa, pr->nssa_len);
    case ZT_AUTHZ_L7_K_SOURCE_TD:
        return strs_ok(&w->values, &w->not_values, pr->principal, pr->td_len);
    case ZT_AUTHZ_L7_K_AUTH_PRINCIPAL:
        return strs_ok_z(&w->values, &w->not_values, rq->request_principal);
    case ZT_AUTHZ_L7_K_AUTH_PRESENTER:
        return strs_ok_z(&w->values, &w->not_values, rq->presenter);
    case ZT_AUTHZ_L7_K_AUTH_AUDIENCES:
        if (w->values.n && !audiences_any(&w->values, rq))
            return false;
        return !(w->not_values.n && audiences_any(&w->not_values, rq));
    case ZT_AUTHZ_L7_K_AUTH_CLAIMS:
        return claims_ok(w, rq->claims);
    case ZT_AUTHZ_L7_K_SNI:
        return strs_ok_z(&w->values, &w->not_values, rq->sni);
    }
    return false;
}

static bool rule_ok(const struct zt_authz_l7_rule *r, const struct probe *pr, uint8_t action)
{
    if (pr->tcp && action == ZT_AUTHZ_L7_ALLOW && rule_is_http(r))
        return false;
    bool ok = r->n_from == 0;
    for (size_t i = 0; i < r->n_from && !ok; i++)
        ok = source_ok(&r->from[i], pr);
    if (!ok)
        return false;
    ok = r->n_to == 0;
    for (size_t i = 0; i < r->n_to && !ok; i++)
        ok = operation_ok(&r->to[i], pr);
    if (!ok)
        return false;
    for (size_t i = 0; i < r->n_when; i++)
        if (!when_ok(&r->when[i], pr))
            return false;
    return true;
}

/* The index of the first rule of p that matches, or -1. */
static int policy_rule(const struct zt_authz_l7_policy *p, const struct probe *pr)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (rule_ok(&p->rules[i], pr, p->action))
            return (int)i;
    return -1;
}

/* ---------------------------------------------------------------- the check */

struct ranges {
    size_t lo[3], hi[3];
};

/* What one pass over the applicable policies of one class found. */
struct pass {
    bool applies;
    const struct zt_authz_l7_policy *hit;
    int rule;
};

static void run_pass(const struct zt_authz_l7_set *s, const struct ranges *rg,
                     const struct probe *pr, uint8_t action, bool dry_run, struct pass *out)
{
    memset(out, 0, sizeof(*out));
    out->rule = -1;
    for (int g = 0; g < 3; g++)
        for (size_t i = rg->lo[g]; i < rg->hi[g]; i++) {
            const struct zt_authz_l7_policy *p = s->policies[s->targets[i].policy];
            int r;
            if (p->action != action || p->dry_run != dry_run)
                continue;
            out->applies = true;
            if ((r = policy_rule(p, pr)) >= 0) {
                out->hit = p;
                out->rule = r;
                return;
            }
        }
}

int zt_authz_l7_check(const struct zt_authz_l7_set *s, const struct zt_authz_l7_request *rq,
                      struct zt_authz_l7_result *res)
{
    struct probe pr = {.rq = rq};
    struct ranges rg = {{0}, {0}};
    struct pass deny, allow, audit, ddeny, dallow;
    char pbuf[4096], *pheap = NULL;
    const struct zt_http_head *h = rq->head;
    bool any = false;

    memset(res, 0, sizeof(*res));
    res->allowed = true;
    res->rule = res->dry_run_rule = -1;
    /* An unsealed set has no index: checking it would allow everything. */
    assert(!s || s->sealed);
    if (!s || !s->n_targets)
        return 0;
    find_target(s, ZT_AUTHZ_L7_GATEWAY_CLASS, "", "istio-waypoint", &rg.lo[0], &rg.hi[0]);
    if (rq->gateway_ns && rq->gateway_name)
        find_target(s, ZT_AUTHZ_L7_GATEWAY, rq->gateway_ns, rq->gateway_name, &rg.lo[1], &rg.hi[1]);
    if (rq->service_ns && rq->service_name)
        find_target(s, rq->service_is_entry ? ZT_AUTHZ_L7_SERVICE_ENTRY : ZT_AUTHZ_L7_SERVICE,
                    rq->service_ns, rq->service_name, &rg.lo[2], &rg.hi[2]);
    for (int g = 0; g < 3; g++)
        any = any || rg.lo[g] < rg.hi[g];
    if (!any)
        return 0;

    probe_identity(&pr, rq->source_principal);
    pr.tcp = rq->is_tcp;
    if (rq->remote_ip.family)
        pr.remote = rq->remote_ip;
    else
        pr.remote = rq->source_ip;
    if (h) {
        pr.method = h->method;
        pr.host = h->authority;
        if (h->path && rq->path_is_normalized) {
            pr.path = h->path;
            pr.path_len = strcspn(h->path, "?#");
        } else if (h->path) {
            size_t n = strlen(h->path);
            char *dst = n + 2 <= sizeof(pbuf) ? pbuf : (pheap = zt_xmalloc(n + 2));
            pr.path_len = zt_authz_l7_path_normalize(h->path, n, dst);
            pr.path = dst;
        }
    }

    if (s->has_audit) {
        run_pass(s, &rg, &pr, ZT_AUTHZ_L7_AUDIT, false, &audit);
        res->audit = audit.hit;
    }
    run_pass(s, &rg, &pr, ZT_AUTHZ_L7_DENY, false, &deny);
    if (deny.hit) {
        res->allowed = false;
        res->policy = deny.hit;
        res->rule = deny.rule;
    } else {
        run_pass(s, &rg, &pr, ZT_AUTHZ_L7_ALLOW, false, &allow);
        res->has_allow = allow.applies;
        res->allowed = !allow.applies || allow.hit;
        res->policy = allow.hit;
        res->rule = allow.rule;
    }
    /* The shadow engine: dry-run DENY, then dry-run ALLOW. */
    if (!s->has_dry_run)
        goto out;
    run_pass(s, &rg, &pr, ZT_AUTHZ_L7_DENY, true, &ddeny);
    if (ddeny.hit) {
        res->has_dry_run = true;
        res->dry_run_policy = ddeny.hit;
        res->dry_run_rule = ddeny.rule;
    } else {
        run_pass(s, &rg, &pr, ZT_AUTHZ_L7_ALLOW, true, &dallow);
        res->has_dry_run = ddeny.applies || dallow.applies;
        res->dry_run_allowed = !dallow.applies || dallow.hit;
        res->dry_run_policy = dallow.hit;
        res->dry_run_rule = dallow.rule;
    }
out:
    free(pheap);
    return res->allowed ? 0 : ZT_E_DENIED;
}

char *zt_authz_l7_details(const struct zt_authz_l7_result *res, char *buf, size_t len)
{
    if (res->policy && !res->allowed)
        snprintf(buf, len, "rbac_access_denied_matched_policy[ns[%s]-policy[%s]-rule[%d]]",
                 res->policy->ns, res->policy->name, res->rule);
    else
        snprintf(buf, len, "rbac_access_denied_matched_policy[none]");
    return buf;
}
