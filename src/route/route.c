/* The route table: model, precedence and selection. See route.h.
 *
 * Every (parent, rule, match) triple of every route becomes one entry. The
 * builder sorts the entries once by (service, precedence), so selection is a
 * binary search for the service followed by a walk in precedence order that
 * stops at the first match; routes attached to the waypoint Gateway itself
 * live in a second sorted run that the walk merges in. Nothing is written
 * after finish, so worker threads read a table without locks. */
#include "route/route.h"

#include "base/alloc.h"
#include "base/err.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Bounds on one regex match: backtracking stops (as no match) well before
 * a request could cost noticeable CPU or memory. */
#define MATCH_LIMIT 100000u
#define DEPTH_LIMIT 1000u
#define HEAP_LIMIT_KIB 1024u

const struct zt_route_retry zt_route_retry_default = {
    .attempts = 2,
    .on = ZT_ROUTE_RETRY_CONNECT_FAILURE | ZT_ROUTE_RETRY_REFUSED_STREAM |
          ZT_ROUTE_RETRY_UNAVAILABLE | ZT_ROUTE_RETRY_CANCELLED | ZT_ROUTE_RETRY_STATUS_CODES,
    .n_codes = 0,
    .backoff_ms = 25,
    .max_backoff_ms = 250,
};

/* ---- regular expressions ---- */

struct zt_route_regex {
    pcre2_code *code;
    pcre2_match_context *mctx;
};

/* RE2 has no backreferences and no lookaround; pcre2 would accept them and
 * match differently from Istio, so they are refused up front. */
static const char *re2_unsupported(const char *p)
{
    bool in_class = false;
    for (size_t i = 0; p[i]; i++) {
        if (p[i] == '\\') {
            char c = p[i + 1];
            if (c == '\0')
                return NULL; /* pcre2 reports the trailing backslash */
            if (!in_class && ((c >= '1' && c <= '9') || c == 'g' || c == 'k'))
                return "backreferences are not supported (RE2 syntax)";
            i++;
        } else if (in_class) {
            if (p[i] == ']')
                in_class = false;
        } else if (p[i] == '[') {
            in_class = true;
            if (p[i + 1] == '^')
                i++;
            if (p[i + 1] == ']')
                i++;
        } else if (p[i] == '(' && p[i + 1] == '?') {
            const char *q = p + i + 2;
            if (q[0] == '=' || q[0] == '!' || (q[0] == '<' && (q[1] == '=' || q[1] == '!')))
                return "lookaround is not supported (RE2 syntax)";
        }
    }
    return NULL;
}

int zt_route_regex_new(const char *pattern, struct zt_route_regex **out, char *err, size_t errlen)
{
    int errcode;
    PCRE2_SIZE off;
    const char *why;
    struct zt_route_regex *re;

    *out = NULL;
    if (strlen(pattern) > ZT_ROUTE_MAX_PATH)
        return zt_errf(err, errlen, ZT_E_CONFIG, "regex longer than %d bytes", ZT_ROUTE_MAX_PATH);
    if ((why = re2_unsupported(pattern)))
        return zt_errf(err, errlen, ZT_E_CONFIG, "%s", why);
    re = zt_xcalloc(1, sizeof(*re));
    re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                             PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF |
                                 PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C,
                             &errcode, &off, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        free(re);
        return zt_errf(err, errlen, ZT_E_CONFIG, "invalid regex: %s at offset %zu",
                       (const char *)msg, (size_t)off);
    }
    /* Without JIT (some architectures) the interpreter runs the same
     * pattern under the same limits. */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    re->mctx = pcre2_match_context_create(NULL);
    if (!re->mctx)
        abort();
    pcre2_set_match_limit(re->mctx, MATCH_LIMIT);
    pcre2_set_depth_limit(re->mctx, DEPTH_LIMIT);
    pcre2_set_heap_limit(re->mctx, HEAP_LIMIT_KIB);
    *out = re;
    return 0;
}

void zt_route_regex_free(struct zt_route_regex *re)
{
    if (!re)
        return;
    pcre2_code_free(re->code);
    pcre2_match_context_free(re->mctx);
    free(re);
}

bool zt_route_regex_match(const struct zt_route_regex *re, const char *s, size_t len)
{
    /* Match data is per call: the compiled code is shared by threads. */
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int rc;
    if (!md)
        abort();
    rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, 0, 0, md, re->mctx);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* ---- the model ---- */

static void strmatch_cleanup(struct zt_route_strmatch *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].value);
        zt_route_regex_free(v[i].re);
    }
    free(v);
}

static void fields_free(struct zt_http_field *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].value);
    }
    free(v);
}

static void header_mod_cleanup(struct zt_route_header_mod *h)
{
    fields_free(h->set, h->n_set);
    fields_free(h->add, h->n_add);
    for (size_t i = 0; i < h->n_remove; i++)
        free(h->remove[i]);
    free(h->remove);
}

static void backend_cleanup(struct zt_route_backend *b)
{
    free(b->ns);
    free(b->name);
}

static void rule_cleanup(struct zt_route_rule *r)
{
    struct zt_route_filters *f = &r->filters;
    free(r->name);
    for (size_t i = 0; i < r->n_matches; i++) {
        struct zt_route_match *m = &r->matches[i];
        free(m->path);
        zt_route_regex_free(m->path_re);
        free(m->method);
        strmatch_cleanup(m->headers, m->n_headers);
        strmatch_cleanup(m->query, m->n_query);
    }
    free(r->matches);
    header_mod_cleanup(&f->request);
    header_mod_cleanup(&f->response);
    free(f->redirect.scheme);
    free(f->redirect.hostname);
    free(f->redirect.path.value);
    free(f->rewrite.hostname);
    free(f->rewrite.path.value);
    for (size_t i = 0; i < f->n_mirrors; i++)
        backend_cleanup(&f->mirrors[i].backend);
    free(f->mirrors);
    for (size_t i = 0; i < r->n_backends; i++)
        backend_cleanup(&r->backends[i]);
    free(r->backends);
}

void zt_route_def_cleanup(struct zt_route_def *d)
{
    free(d->ns);
    free(d->name);
    for (size_t i = 0; i < d->n_parents; i++) {
        free(d->parents[i].ns);
        free(d->parents[i].name);
        free(d->parents[i].section);
    }
    free(d->parents);
    for (size_t i = 0; i < d->n_hostnames; i++)
        free(d->hostnames[i]);
    free(d->hostnames);
    for (size_t i = 0; i < d->n_rules; i++)
        rule_cleanup(&d->rules[i]);
    free(d->rules);
    memset(d, 0, sizeof(*d));
}

const char *zt_route_kind_str(enum zt_route_kind k)
{
    return k == ZT_ROUTE_GRPC ? "GRPCRoute" : "HTTPRoute";
}

const char *zt_route_outcome_str(enum zt_route_outcome o)
{
    switch (o) {
    case ZT_ROUTE_DEFAULT:
        return "default";
    case ZT_ROUTE_NOT_FOUND:
        return "not_found";
    case ZT_ROUTE_FORWARD:
        return "forward";
    case ZT_ROUTE_REDIRECT:
        return "redirect";
    case ZT_ROUTE_NO_BACKEND:
        return "no_backend";
    }
    return "unknown";
}

/* ---- builder and table ---- */

#define GATEWAY_GROUP SIZE_MAX

struct entry {
    size_t group; /* index into groups, or GATEWAY_GROUP */
    uint16_t port;
    const char *section; /* a port name, or NULL */
    uint8_t rank;        /* 0 exact, 1 prefix, 2 regex, 3 none */
    size_t path_len;
    size_t def_idx, rule_idx, match_idx;
    const struct zt_route_def *def;
    const struct zt_route_rule *rule;
    const struct zt_route_match *match; /* NULL: match everything */
};

struct group {
    const char *ns, *name; /* borrowed from a parent */
    size_t first, n;
};

struct zt_route_builder {
    char *wp_ns, *wp_name;
    struct zt_route_def *defs;
    size_t n_defs, cap_defs;
    /* Open addressing over (kind, namespace, name) for the duplicate check:
     * index + 1 into defs, 0 for an empty slot; at most half full. */
    size_t *slots;
    size_t n_slots;
    size_t left_out;
};

static uint64_t def_hash(const struct zt_route_def *d)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)d->kind; /* FNV-1a */
    for (const char *p = d->ns; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = d->name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static bool same_def(const struct zt_route_def *a, const struct zt_route_def *b)
{
    return a->kind == b->kind && strcmp(a->ns, b->ns) == 0 && strcmp(a->name, b->name) == 0;
}

/* The slot holding a def like d, or the empty slot where it would go. */
static size_t *find_slot(const struct zt_route_builder *b, const struct zt_route_def *d)
{
    size_t mask = b->n_slots - 1, i = (size_t)def_hash(d) & mask;
    while (b->slots[i] && !same_def(&b->defs[b->slots[i] - 1], d))
        i = (i + 1) & mask;
    return &b->slots[i];
}

static void grow_slots(struct zt_route_builder *b)
{
    free(b->slots);
    b->n_slots = b->n_slots ? 2 * b->n_slots : 64;
    b->slots = zt_xcalloc(b->n_slots, sizeof(*b->slots));
    for (size_t i = 0; i < b->n_defs; i++)
        *find_slot(b, &b->defs[i]) = i + 1;
}

struct zt_route_table {
    atomic_uint refs;
    char *wp_ns, *wp_name;
    struct zt_route_def *defs;
    size_t n_defs;
    struct group *groups;
    size_t n_groups;
    struct entry *entries;
    size_t n_entries;
    size_t gw_first, gw_n;
    size_t left_out;
};

struct zt_route_builder *zt_route_builder_new(const char *waypoint_ns, const char *waypoint_name)
{
    struct zt_route_builder *b = zt_xcalloc(1, sizeof(*b));
    if (waypoint_ns && waypoint_name) {
        b->wp_ns = zt_xstrdup(waypoint_ns);
        b->wp_name = zt_xstrdup(waypoint_name);
    }
    return b;
}

void zt_route_builder_free(struct zt_route_builder *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n_defs; i++)
        zt_route_def_cleanup(&b->defs[i]);
    free(b->defs);
    free(b->wp_ns);
    free(b->wp_name);
    free(b->slots);
    free(b);
}

int zt_route_builder_add(struct zt_route_builder *b, struct zt_route_def *def, char *err,
                         size_t errlen)
{
    size_t *slot;
    int rc = 0;
    if (!def->ns || !def->name) {
        rc = zt_errf(err, errlen, ZT_E_CONFIG, "route without namespace or name");
        goto out;
    }
    if (b->n_defs >= ZT_ROUTE_MAX_ROUTES) {
        rc = zt_errf(err, errlen, ZT_E_TOO_BIG, "more than %d routes", ZT_ROUTE_MAX_ROUTES);
        goto out;
    }
    if (2 * (b->n_defs + 1) > b->n_slots)
        grow_slots(b);
    slot = find_slot(b, def);
    if (*slot) {
        rc = zt_errf(err, errlen, ZT_E_CONFIG, "duplicate %s %s/%s", zt_route_kind_str(def->kind),
                     def->ns, def->name);
        goto out;
    }
    /* PathPrefix values are kept without a trailing '/' (route.h), whoever
     * filled the def. */
    for (size_t r = 0; r < def->n_rules; r++) {
        for (size_t m = 0; m < def->rules[r].n_matches; m++) {
            struct zt_route_match *mt = &def->rules[r].matches[m];
            size_t l = mt->path ? strlen(mt->path) : 0;
            while (mt->path_kind == ZT_ROUTE_PATH_PREFIX && l && mt->path[l - 1] == '/')
                mt->path[--l] = '\0';
        }
    }
    if (b->n_defs == b->cap_defs) {
        b->cap_defs = b->cap_defs ? 2 * b->cap_defs : 16;
        b->defs = zt_xrealloc(b->defs, b->cap_defs * sizeof(*b->defs));
    }
    b->defs[b->n_defs++] = *def;
    *slot = b->n_defs;
    memset(def, 0, sizeof(*def));
out:
    if (rc)
        zt_route_def_cleanup(def);
    return rc;
}

static uint8_t match_rank(const struct zt_route_match *m, size_t *len)
{
    *len = 0;
    if (!m)
        return 3;
    switch (m->path_kind) {
    case ZT_ROUTE_PATH_EXACT:
        *len = strlen(m->path);
        return 0;
    case ZT_ROUTE_PATH_PREFIX:
        *len = strlen(m->path);
        return 1; /* "/" too: Istio ranks it as a prefix, above any regex */
    case ZT_ROUTE_PATH_REGEX:
        *len = strlen(m->path);
        return 2;
    case ZT_ROUTE_PATH_NONE:
        break;
    }
    return 3;
}

/* Precedence only (route.h), without the service group. */
static int cmp_prec(const struct entry *a, const struct entry *b)
{
    const struct zt_route_match *ma = a->match, *mb = b->match;
    size_t ha = ma ? ma->n_headers : 0, hb = mb ? mb->n_headers : 0;
    size_t qa = ma ? ma->n_query : 0, qb = mb ? mb->n_query : 0;
    bool xa = ma && ma->method, xb = mb && mb->method;
    int c;
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    if (a->path_len != b->path_len)
        return a->path_len > b->path_len ? -1 : 1;
    if (xa != xb)
        return xa ? -1 : 1;
    if (ha != hb)
        return ha > hb ? -1 : 1;
    if (qa != qb)
        return qa > qb ? -1 : 1;
    if (a->def != b->def) {
        if (a->def->has_created != b->def->has_created)
            return a->def->has_created ? -1 : 1;
        if (a->def->has_created && a->def->created != b->def->created)
            return a->def->created < b->def->created ? -1 : 1;
        if (!a->def->has_created)
            return a->def_idx < b->def_idx ? -1 : 1; /* load order */
        if ((c = strcmp(a->def->ns, b->def->ns)) || (c = strcmp(a->def->name, b->def->name)))
            return c;
        /* Same namespace/name: an HTTPRoute and a GRPCRoute. */
        return a->def_idx < b->def_idx ? -1 : 1;
    }
    if (a->rule_idx != b->rule_idx)
        return a->rule_idx < b->rule_idx ? -1 : 1;
    if (a->match_idx != b->match_idx)
        return a->match_idx < b->match_idx ? -1 : 1;
    /* The same pair under two parentRefs of one service (two ports). */
    if (a->port != b->port)
        return a->port < b->port ? -1 : 1;
    return strcmp(a->section ? a->section : "", b->section ? b->section : "");
}

static int cmp_entry(const void *pa, const void *pb)
{
    const struct entry *a = pa, *b = pb;
    if (a->group != b->group)
        return a->group < b->group ? -1 : 1;
    return cmp_prec(a, b);
}

static int cmp_group(const void *pa, const void *pb)
{
    const struct group *a = pa, *b = pb;
    int c = strcmp(a->ns, b->ns);
    return c ? c : strcmp(a->name, b->name);
}

static size_t find_group(const struct group *g, size_t n, const char *ns, const char *name)
{
    struct group key = {.ns = ns, .name = name};
    const struct group *p = bsearch(&key, g, n, sizeof(*g), cmp_group);
    return p ? (size_t)(p - g) : GATEWAY_GROUP;
}

/* Whether parent p of route d attaches here (route.h "Attachment"; a
 * Service parent counts only from the service's namespace or the
 * waypoint's, as Istio). */
static bool attaches(const struct zt_route_builder *b, const struct zt_route_def *d,
                     const struct zt_route_parent *p)
{
    if (p->kind == ZT_ROUTE_PARENT_GATEWAY)
        return b->wp_ns && strcmp(p->ns, b->wp_ns) == 0 && strcmp(p->name, b->wp_name) == 0;
    return strcmp(p->ns, d->ns) == 0 || (b->wp_ns && strcmp(d->ns, b->wp_ns) == 0);
}

struct zt_route_table *zt_route_builder_finish(struct zt_route_builder *b)
{
    struct zt_route_table *t = zt_xcalloc(1, sizeof(*t));
    size_t n_groups = 0, n_entries = 0, k = 0;

    atomic_init(&t->refs, 1);
    t->defs = b->defs;
    t->n_defs = b->n_defs;
    t->wp_ns = b->wp_ns;
    t->wp_name = b->wp_name;
    t->left_out = b->left_out;

    /* Services first: their groups, sorted and deduplicated. */
    for (size_t i = 0; i < t->n_defs; i++)
        for (size_t j = 0; j < t->defs[i].n_parents; j++)
            n_groups++;
    t->groups = zt_xcalloc(n_groups ? n_groups : 1, sizeof(*t->groups));
    for (size_t i = 0; i < t->n_defs; i++) {
        const struct zt_route_def *d = &t->defs[i];
        for (size_t j = 0; j < d->n_parents; j++) {
            const struct zt_route_parent *p = &d->parents[j];
            if (p->kind == ZT_ROUTE_PARENT_SERVICE && attaches(b, d, p)) {
                t->groups[t->n_groups].ns = p->ns;
                t->groups[t->n_groups++].name = p->name;
            }
        }
    }
    if (t->n_groups)
        qsort(t->groups, t->n_groups, sizeof(*t->groups), cmp_group);
    for (size_t i = 0; i < t->n_groups; i++)
        if (k == 0 || cmp_group(&t->groups[k - 1], &t->groups[i]) != 0)
            t->groups[k++] = t->groups[i];
    t->n_groups = k;

    for (size_t i = 0; i < t->n_defs; i++) {
        const struct zt_route_def *d = &t->defs[i];
        size_t pairs = 0;
        for (size_t r = 0; r < d->n_rules; r++)
            pairs += d->rules[r].n_matches ? d->rules[r].n_matches : 1;
        n_entries += pairs * d->n_parents;
    }
    t->entries = zt_xcalloc(n_entries ? n_entries : 1, sizeof(*t->entries));
    for (size_t i = 0; i < t->n_defs; i++) {
        const struct zt_route_def *d = &t->defs[i];
        for (size_t j = 0; j < d->n_parents; j++) {
            const struct zt_route_parent *p = &d->parents[j];
            size_t group;
            if (!attaches(b, d, p))
                continue;
            group = p->kind == ZT_ROUTE_PARENT_GATEWAY
                        ? GATEWAY_GROUP
                        : find_group(t->groups, t->n_groups, p->ns, p->name);
            for (size_t r = 0; r < d->n_rules; r++) {
                const struct zt_route_rule *rule = &d->rules[r];
                size_t n = rule->n_matches ? rule->n_matches : 1;
                for (size_t m = 0; m < n; m++) {
                    struct entry *e = &t->entries[t->n_entries++];
                    e->group = group;
                    e->port = p->kind == ZT_ROUTE_PARENT_GATEWAY ? 0 : p->port;
                    e->section = p->kind == ZT_ROUTE_PARENT_GATEWAY ? NULL : p->section;
                    e->def = d;
                    e->rule = rule;
                    e->match = rule->n_matches ? &rule->matches[m] : NULL;
                    e->def_idx = i;
                    e->rule_idx = r;
                    e->match_idx = m;
                    e->rank = match_rank(e->match, &e->path_len);
                }
            }
        }
    }
    if (t->n_entries)
        qsort(t->entries, t->n_entries, sizeof(*t->entries), cmp_entry);
    for (size_t i = 0; i < t->n_entries; i++) {
        struct entry *e = &t->entries[i];
        if (e->group == GATEWAY_GROUP) {
            if (!t->gw_n)
                t->gw_first = i;
            t->gw_n++;
        } else {
            struct group *g = &t->groups[e->group];
            if (!g->n)
                g->first = i;
            g->n++;
        }
    }
    free(b->slots);
    free(b);
    return t;
}

struct zt_route_table *zt_route_table_ref(struct zt_route_table *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void zt_route_table_unref(struct zt_route_table *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < t->n_defs; i++)
        zt_route_def_cleanup(&t->defs[i]);
    free(t->defs);
    free(t->groups);
    free(t->entries);
    free(t->wp_ns);
    free(t->wp_name);
    free(t);
}

size_t zt_route_table_count(const struct zt_route_table *t)
{
    return t->n_defs;
}

const struct zt_route_def *zt_route_table_route_at(const struct zt_route_table *t, size_t i)
{
    return &t->defs[i];
}

void zt_route_builder_set_left_out(struct zt_route_builder *b, size_t n)
{
    b->left_out = n;
}

size_t zt_route_table_left_out(const struct zt_route_table *t)
{
    return t->left_out;
}

/* ---- matching ---- */

static size_t path_only_len(const char *path)
{
    return strcspn(path, "?#");
}

static bool path_matches(const struct zt_route_match *m, const char *path)
{
    size_t len = path_only_len(path), plen;
    switch (m->path_kind) {
    case ZT_ROUTE_PATH_NONE:
        return true;
    case ZT_ROUTE_PATH_EXACT:
        return strlen(m->path) == len && memcmp(m->path, path, len) == 0;
    case ZT_ROUTE_PATH_PREFIX:
        plen = strlen(m->path);
        if (plen == 0)
            return true;
        return len >= plen && memcmp(m->path, path, plen) == 0 &&
               (len == plen || path[plen] == '/');
    case ZT_ROUTE_PATH_REGEX:
        return zt_route_regex_match(m->path_re, path, len);
    }
    return false;
}

static bool str_matches(const struct zt_route_strmatch *s, const char *v, size_t len)
{
    if (s->kind == ZT_ROUTE_STR_REGEX)
        return zt_route_regex_match(s->re, v, len);
    return strlen(s->value) == len && memcmp(s->value, v, len) == 0;
}

/* Several fields of one name are matched as one value joined by ",", as
 * Envoy's header matcher does. */
static bool header_matches(const struct zt_route_strmatch *s, const struct zt_http_head *req)
{
    size_t n = zt_http_head_count(req, s->name), total = 0, at = 0;
    char *joined;
    bool ok;
    if (n == 0)
        return false;
    if (n == 1) {
        const char *v = zt_http_head_get(req, s->name);
        return str_matches(s, v, strlen(v));
    }
    for (size_t i = 0; i < req->n_fields; i++)
        if (strcasecmp(req->fields[i].name, s->name) == 0)
            total += strlen(req->fields[i].value) + 1;
    joined = zt_xmalloc(total);
    for (size_t i = 0; i < req->n_fields; i++) {
        if (strcasecmp(req->fields[i].name, s->name) == 0) {
            size_t l = strlen(req->fields[i].value);
            if (at)
                joined[at++] = ',';
            memcpy(joined + at, req->fields[i].value, l);
            at += l;
        }
    }
    ok = str_matches(s, joined, at);
    free(joined);
    return ok;
}

/* The first parameter named s->name in the query (names and values compared
 * as sent, without percent-decoding). */
static bool query_matches(const struct zt_route_strmatch *s, const char *path)
{
    const char *q = strchr(path, '?');
    size_t nl = strlen(s->name);
    if (!q)
        return false;
    q++;
    while (*q && *q != '#') {
        size_t plen = strcspn(q, "&#");
        const char *eq = memchr(q, '=', plen);
        size_t klen = eq ? (size_t)(eq - q) : plen;
        if (klen == nl && memcmp(q, s->name, nl) == 0) {
            const char *v = eq ? eq + 1 : q + plen;
            return str_matches(s, v, (size_t)(q + plen - v));
        }
        q += plen;
        if (*q == '&')
            q++;
    }
    return false;
}

static bool entry_matches(const struct entry *e, const struct zt_http_head *req)
{
    const struct zt_route_match *m = e->match;
    const char *path = req->path ? req->path : "";
    if (!m)
        return true;
    if (m->method && (!req->method || strcmp(m->method, req->method) != 0))
        return false;
    if (!path_matches(m, path))
        return false;
    for (size_t i = 0; i < m->n_headers; i++)
        if (!header_matches(&m->headers[i], req))
            return false;
    for (size_t i = 0; i < m->n_query; i++)
        if (!query_matches(&m->query[i], path))
            return false;
    return true;
}

/* Istio's weights: zero-weight backends drop out; a single remaining one
 * takes everything; none remaining is a 500. */
static const struct zt_route_backend *pick_backend(const struct zt_route_rule *r, uint32_t rnd)
{
    uint64_t total = 0, at;
    for (size_t i = 0; i < r->n_backends; i++)
        total += r->backends[i].weight;
    if (total == 0)
        return NULL;
    at = rnd % total;
    for (size_t i = 0; i < r->n_backends; i++) {
        if (at < r->backends[i].weight)
            return &r->backends[i];
        at -= r->backends[i].weight;
    }
    return NULL; /* not reached: at < total */
}

static void fill_policy(struct zt_route_result *out, const struct zt_route_rule *r)
{
    out->retry = r && r->has_retry ? r->retry : zt_route_retry_default;
    out->retry.per_try_timeout_ms = 0;
    out->timeout_ms = r ? r->request_timeout_ms : 0;
    if (r && r->backend_timeout_ms) {
        if (r->has_retry)
            out->retry.per_try_timeout_ms = r->backend_timeout_ms;
        else
            out->timeout_ms = r->backend_timeout_ms;
    }
}

int zt_route_select(const struct zt_route_table *t, const struct zt_route_target *target,
                    const struct zt_http_head *req, uint32_t rnd, struct zt_route_result *out)
{
    size_t g = find_group(t->groups, t->n_groups, target->ns, target->name);
    size_t si = 0, sn = g == GATEWAY_GROUP ? 0 : t->groups[g].n;
    size_t gi = 0, gn = t->gw_n;
    const struct entry *sv = g == GATEWAY_GROUP ? NULL : t->entries + t->groups[g].first;
    const struct entry *gw = t->entries + t->gw_first;
    bool any = false;

    memset(out, 0, sizeof(*out));
    while (si < sn || gi < gn) {
        const struct entry *e;
        if (gi >= gn || (si < sn && cmp_prec(&sv[si], &gw[gi]) <= 0))
            e = &sv[si++];
        else
            e = &gw[gi++];
        if (e->port && e->port != target->port)
            continue;
        if (e->section && (!target->port_name || strcmp(e->section, target->port_name) != 0))
            continue;
        any = true;
        if (!entry_matches(e, req))
            continue;
        out->route = e->def;
        out->rule = e->rule;
        out->match = e->match;
        out->filters = &e->rule->filters;
        fill_policy(out, e->rule);
        if (e->rule->filters.has_redirect) {
            out->outcome = ZT_ROUTE_REDIRECT;
        } else {
            out->backend = pick_backend(e->rule, rnd);
            if (out->backend && out->backend->invalid)
                out->backend = NULL;
            out->outcome = out->backend ? ZT_ROUTE_FORWARD : ZT_ROUTE_NO_BACKEND;
        }
        return 0;
    }
    out->outcome = any ? ZT_ROUTE_NOT_FOUND : ZT_ROUTE_DEFAULT;
    fill_policy(out, NULL);
    return 0;
}

/* ---- filters ---- */

static int apply_header_mod(const struct zt_route_header_mod *h, struct zt_http_head *head)
{
    int rc;
    for (size_t i = 0; i < h->n_remove; i++)
        zt_http_head_remove(head, h->remove[i]);
    for (size_t i = 0; i < h->n_set; i++)
        if ((rc = zt_http_head_set(head, h->set[i].name, h->set[i].value)))
            return rc;
    for (size_t i = 0; i < h->n_add; i++)
        if ((rc = zt_http_head_add(head, h->add[i].name, strlen(h->add[i].name), h->add[i].value,
                                   strlen(h->add[i].value))))
            return rc;
    return 0;
}

/* The part of a path that ReplacePrefixMatch keeps: what follows the
 * matched prefix (kept without a trailing '/'; "" for "/", and for a rule
 * without a PathPrefix match). */
static const char *matched_prefix(const struct zt_route_match *m)
{
    if (m && (m->path_kind == ZT_ROUTE_PATH_PREFIX || m->path_kind == ZT_ROUTE_PATH_EXACT))
        return m->path;
    return "";
}

/* Builds the new path (with the request's query and fragment) into a heap
 * string of at most ZT_HTTP_HEAD_MAX bytes; NULL when longer. */
static char *rewrite_path(const struct zt_route_path_mod *pm, const struct zt_route_match *m,
                          const char *path)
{
    size_t plen = path_only_len(path), vlen = strlen(pm->value), keep = 0;
    const char *rest = "", *tail = path + plen;
    size_t rlen = 0, tlen = strlen(tail), n;
    char *out;

    if (pm->kind == ZT_ROUTE_PATH_MOD_PREFIX) {
        const char *pre = matched_prefix(m);
        size_t prelen = strlen(pre);
        /* The prefix matched segment-wise, so what follows starts with '/'
         * or is empty; a head rewritten since may not, then all is kept. */
        if (plen >= prelen && memcmp(path, pre, prelen) == 0)
            keep = prelen;
        rest = path + keep;
        rlen = plen - keep;
        while (vlen && pm->value[vlen - 1] == '/')
            vlen--;
    }
    n = vlen + rlen + tlen;
    if (n + 1 > ZT_HTTP_HEAD_MAX)
        return NULL;
    out = zt_xmalloc(n + 2);
    memcpy(out, pm->value, vlen);
    memcpy(out + vlen, rest, rlen);
    if (vlen + rlen == 0) {
        out[0] = '/';
        rlen = 1;
    } else if (out[0] != '/') {
        memmove(out + 1, out, vlen + rlen);
        out[0] = '/';
        rlen++;
    }
    memcpy(out + vlen + rlen, tail, tlen);
    out[vlen + rlen + tlen] = '\0';
    return out;
}

int zt_route_apply_request(const struct zt_route_filters *f, const struct zt_route_match *m,
                           struct zt_http_head *req)
{
    int rc = apply_header_mod(&f->request, req);
    if (rc || !f->has_rewrite)
        return rc;
    if (f->rewrite.hostname &&
        (rc = zt_http_head_set_part(req, &req->authority, f->rewrite.hostname,
                                    strlen(f->rewrite.hostname))))
        return rc;
    if (f->rewrite.path.kind != ZT_ROUTE_PATH_MOD_NONE) {
        char *p = rewrite_path(&f->rewrite.path, m, req->path ? req->path : "/");
        if (!p)
            return ZT_E_TOO_BIG;
        rc = zt_http_head_set_part(req, &req->path, p, strlen(p));
        free(p);
    }
    return rc;
}

int zt_route_apply_response(const struct zt_route_filters *f, struct zt_http_head *resp)
{
    return apply_header_mod(&f->response, resp);
}

int zt_route_redirect_location(const struct zt_route_redirect *r, const struct zt_route_match *m,
                               const struct zt_http_head *req, uint16_t listener_port, char *out,
                               size_t outlen, int *status)
{
    const char *scheme = r->scheme ? r->scheme : req->scheme ? req->scheme : "http";
    const char *host = r->hostname, *path = req->path ? req->path : "/";
    size_t hlen;
    unsigned port;
    char *newpath = NULL;
    char portstr[8] = "";
    int n, rc = 0;

    if (outlen)
        out[0] = '\0';
    *status = r->status ? r->status : 302;
    if (host) {
        hlen = strlen(host);
    } else {
        const char *a = req->authority;
        if (!a || !*a)
            return ZT_E_PROTO;
        if (a[0] == '[') {
            const char *end = strchr(a, ']');
            hlen = end ? (size_t)(end - a) + 1 : strlen(a);
        } else {
            hlen = strcspn(a, ":");
        }
        host = a;
    }
    if (r->port)
        port = r->port;
    else if (r->scheme && strcasecmp(r->scheme, "http") == 0)
        port = 80;
    else if (r->scheme && strcasecmp(r->scheme, "https") == 0)
        port = 443;
    else
        port = listener_port;
    if (port && !(port == 80 && strcasecmp(scheme, "http") == 0) &&
        !(port == 443 && strcasecmp(scheme, "https") == 0))
        snprintf(portstr, sizeof(portstr), ":%u", port);
    if (r->path.kind != ZT_ROUTE_PATH_MOD_NONE) {
        if (!(newpath = rewrite_path(&r->path, m, path)))
            return ZT_E_TOO_BIG;
        path = newpath;
    }
    n = snprintf(out, outlen, "%s://%.*s%s%s", scheme, (int)hlen, host, portstr, path);
    if (n < 0 || (size_t)n >= outlen) {
        if (outlen)
            out[0] = '\0';
        rc = ZT_E_TOO_BIG;
    } else if (!zt_route_header_value_ok(out)) {
        /* The request's own authority or path carried a control byte. */
        out[0] = '\0';
        rc = ZT_E_PROTO;
    }
    free(newpath);
    return rc;
}

bool zt_route_mirror_hit(const struct zt_route_mirror *m, uint32_t rnd)
{
    if (m->denominator == 0 || m->numerator >= m->denominator)
        return true;
    return rnd % m->denominator < m->numerator;
}

bool zt_route_header_name_ok(const char *name)
{
    if (!*name)
        return false;
    for (const char *c = name; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (!((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
              strchr("!#$%&'*+-.^_`|~", u)))
            return false;
    }
    return true;
}

bool zt_route_header_value_ok(const char *value)
{
    for (const char *c = value; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if ((u < 0x20 && u != '\t') || u == 0x7f)
            return false;
    }
    return true;
}

void zt_route_errors_add(struct zt_route_errors *e, bool is_warning, const char *fmt, ...)
{
    va_list ap;
    char buf[1024];
    if (is_warning)
        e->n_warnings++;
    else
        e->n_errors++;
    if (e->n >= ZT_ROUTE_MAX_DIAGS) {
        e->dropped++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (e->n == e->cap) {
        e->cap = e->cap ? 2 * e->cap : 8;
        e->v = zt_xrealloc(e->v, e->cap * sizeof(*e->v));
    }
    e->v[e->n].is_warning = is_warning;
    e->v[e->n++].msg = zt_xstrdup(buf);
}

void zt_route_errors_cleanup(struct zt_route_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i].msg);
    free(e->v);
    memset(e, 0, sizeof(*e));
}
