/* ztunnel.routes.v1.Route <-> struct zt_route_def. See routes.h.
 *
 * Encoding builds the protobuf-c structs in a small arena (strings point
 * into the borrowed def) and then decodes its own output once: the
 * decoder's checks are the one definition of a valid route, so the control
 * plane cannot serve what a waypoint would refuse.
 *
 * Decoding walks the unpacked message with the field path of each step in
 * a buffer, so the first problem found is reported with where it is. */
#include "xds/routes.h"

#include "base/alloc.h"
#include "base/err.h"
#include "proto/routes.pb-c.h"
#include "xds/xds_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ encode */

static Ztunnel__Routes__V1__StringMatch **
enc_strmatches(struct zt_xds_arena *e, const struct zt_route_strmatch *v, size_t n)
{
    Ztunnel__Routes__V1__StringMatch **out = zt_xds_arena_alloc(e, n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        out[i] = zt_xds_arena_alloc(e, 1, sizeof(**out));
        ztunnel__routes__v1__string_match__init(out[i]);
        out[i]->type = v[i].kind == ZT_ROUTE_STR_REGEX
                           ? ZTUNNEL__ROUTES__V1__STRING_MATCH_TYPE__STRING_REGULAR_EXPRESSION
                           : ZTUNNEL__ROUTES__V1__STRING_MATCH_TYPE__STRING_EXACT;
        out[i]->name = zt_xds_s_or_empty(v[i].name);
        out[i]->value = zt_xds_s_or_empty(v[i].value);
    }
    return out;
}

static Ztunnel__Routes__V1__Header **enc_fields(struct zt_xds_arena *e,
                                                const struct zt_http_field *v, size_t n)
{
    Ztunnel__Routes__V1__Header **out = zt_xds_arena_alloc(e, n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        out[i] = zt_xds_arena_alloc(e, 1, sizeof(**out));
        ztunnel__routes__v1__header__init(out[i]);
        out[i]->name = zt_xds_s_or_empty(v[i].name);
        out[i]->value = zt_xds_s_or_empty(v[i].value);
    }
    return out;
}

static Ztunnel__Routes__V1__HeaderModifier *enc_mod(struct zt_xds_arena *e,
                                                    const struct zt_route_header_mod *h)
{
    if (!h->n_set && !h->n_add && !h->n_remove)
        return NULL;
    Ztunnel__Routes__V1__HeaderModifier *m = zt_xds_arena_alloc(e, 1, sizeof(*m));
    ztunnel__routes__v1__header_modifier__init(m);
    m->n_set = h->n_set;
    m->set = enc_fields(e, h->set, h->n_set);
    m->n_add = h->n_add;
    m->add = enc_fields(e, h->add, h->n_add);
    m->n_remove = h->n_remove;
    m->remove = h->remove;
    return m;
}

static Ztunnel__Routes__V1__PathModifier *enc_path_mod(struct zt_xds_arena *e,
                                                       const struct zt_route_path_mod *p)
{
    if (p->kind == ZT_ROUTE_PATH_MOD_NONE)
        return NULL;
    Ztunnel__Routes__V1__PathModifier *m = zt_xds_arena_alloc(e, 1, sizeof(*m));
    ztunnel__routes__v1__path_modifier__init(m);
    m->kind = p->kind == ZT_ROUTE_PATH_MOD_FULL
                  ? ZTUNNEL__ROUTES__V1__PATH_MODIFIER_KIND__REPLACE_FULL_PATH
                  : ZTUNNEL__ROUTES__V1__PATH_MODIFIER_KIND__REPLACE_PREFIX_MATCH;
    m->value = zt_xds_s_or_empty(p->value);
    return m;
}

static Ztunnel__Routes__V1__BackendRef *enc_backend(struct zt_xds_arena *e,
                                                    const struct zt_route_backend *b)
{
    Ztunnel__Routes__V1__BackendRef *r = zt_xds_arena_alloc(e, 1, sizeof(*r));
    ztunnel__routes__v1__backend_ref__init(r);
    r->namespace_ = zt_xds_s_or_empty(b->ns);
    r->name = zt_xds_s_or_empty(b->name);
    r->port = b->port;
    r->weight = b->weight;
    r->invalid = b->invalid;
    return r;
}

static Ztunnel__Routes__V1__Filters *enc_filters(struct zt_xds_arena *e,
                                                 const struct zt_route_filters *f)
{
    Ztunnel__Routes__V1__Filters *pf = zt_xds_arena_alloc(e, 1, sizeof(*pf));
    ztunnel__routes__v1__filters__init(pf);
    pf->request_header_modifier = enc_mod(e, &f->request);
    pf->response_header_modifier = enc_mod(e, &f->response);
    if (f->has_redirect) {
        Ztunnel__Routes__V1__Redirect *r = zt_xds_arena_alloc(e, 1, sizeof(*r));
        ztunnel__routes__v1__redirect__init(r);
        r->scheme = zt_xds_s_or_empty(f->redirect.scheme);
        r->hostname = zt_xds_s_or_empty(f->redirect.hostname);
        r->path = enc_path_mod(e, &f->redirect.path);
        r->port = f->redirect.port;
        r->status_code = (uint32_t)f->redirect.status;
        pf->request_redirect = r;
    }
    if (f->has_rewrite) {
        Ztunnel__Routes__V1__Rewrite *r = zt_xds_arena_alloc(e, 1, sizeof(*r));
        ztunnel__routes__v1__rewrite__init(r);
        r->hostname = zt_xds_s_or_empty(f->rewrite.hostname);
        r->path = enc_path_mod(e, &f->rewrite.path);
        pf->url_rewrite = r;
    }
    pf->n_request_mirrors = f->n_mirrors;
    pf->request_mirrors = zt_xds_arena_alloc(e, f->n_mirrors, sizeof(*pf->request_mirrors));
    for (size_t i = 0; i < f->n_mirrors; i++) {
        Ztunnel__Routes__V1__Mirror *m = zt_xds_arena_alloc(e, 1, sizeof(*m));
        ztunnel__routes__v1__mirror__init(m);
        m->backend_ref = enc_backend(e, &f->mirrors[i].backend);
        m->numerator = f->mirrors[i].numerator;
        m->denominator = f->mirrors[i].denominator;
        pf->request_mirrors[i] = m;
    }
    return pf;
}

static Ztunnel__Routes__V1__Match *enc_match(struct zt_xds_arena *e, const struct zt_route_match *m)
{
    static const Ztunnel__Routes__V1__PathKind kinds[] = {
        [ZT_ROUTE_PATH_NONE] = ZTUNNEL__ROUTES__V1__PATH_KIND__PATH_NONE,
        [ZT_ROUTE_PATH_EXACT] = ZTUNNEL__ROUTES__V1__PATH_KIND__EXACT,
        [ZT_ROUTE_PATH_PREFIX] = ZTUNNEL__ROUTES__V1__PATH_KIND__PREFIX,
        [ZT_ROUTE_PATH_REGEX] = ZTUNNEL__ROUTES__V1__PATH_KIND__REGULAR_EXPRESSION,
    };
    Ztunnel__Routes__V1__Match *pm = zt_xds_arena_alloc(e, 1, sizeof(*pm));
    ztunnel__routes__v1__match__init(pm);
    pm->path_kind = kinds[m->path_kind];
    pm->path = zt_xds_s_or_empty(m->path);
    pm->method = zt_xds_s_or_empty(m->method);
    pm->n_headers = m->n_headers;
    pm->headers = enc_strmatches(e, m->headers, m->n_headers);
    pm->n_query_params = m->n_query;
    pm->query_params = enc_strmatches(e, m->query, m->n_query);
    return pm;
}

static Ztunnel__Routes__V1__Rule *enc_rule(struct zt_xds_arena *e, const struct zt_route_rule *r)
{
    Ztunnel__Routes__V1__Rule *pr = zt_xds_arena_alloc(e, 1, sizeof(*pr));
    ztunnel__routes__v1__rule__init(pr);
    pr->name = zt_xds_s_or_empty(r->name);
    pr->n_matches = r->n_matches;
    pr->matches = zt_xds_arena_alloc(e, r->n_matches, sizeof(*pr->matches));
    for (size_t i = 0; i < r->n_matches; i++)
        pr->matches[i] = enc_match(e, &r->matches[i]);
    pr->filters = enc_filters(e, &r->filters);
    pr->n_backend_refs = r->n_backends;
    pr->backend_refs = zt_xds_arena_alloc(e, r->n_backends, sizeof(*pr->backend_refs));
    for (size_t i = 0; i < r->n_backends; i++)
        pr->backend_refs[i] = enc_backend(e, &r->backends[i]);
    pr->request_timeout_ms = r->request_timeout_ms;
    pr->backend_request_timeout_ms = r->backend_timeout_ms;
    if (r->has_retry) {
        Ztunnel__Routes__V1__Retry *rt = zt_xds_arena_alloc(e, 1, sizeof(*rt));
        ztunnel__routes__v1__retry__init(rt);
        rt->attempts = r->retry.attempts;
        rt->retry_on = r->retry.on;
        rt->n_codes = r->retry.n_codes;
        rt->codes = zt_xds_arena_alloc(e, r->retry.n_codes, sizeof(*rt->codes));
        for (size_t i = 0; i < r->retry.n_codes && i < ZT_ROUTE_MAX_RETRY_CODES; i++)
            rt->codes[i] = r->retry.codes[i];
        rt->backoff_ms = r->retry.backoff_ms;
        rt->max_backoff_ms = r->retry.max_backoff_ms;
        rt->per_try_timeout_ms = r->retry.per_try_timeout_ms;
        pr->retry = rt;
    }
    return pr;
}

char *zt_xds_route_name(const struct zt_route_def *d)
{
    char *s;
    if (asprintf(&s, "%s/%s/%s", zt_route_kind_str(d->kind), d->ns ? d->ns : "",
                 d->name ? d->name : "") < 0)
        abort();
    return s;
}

int zt_xds_route_encode(const struct zt_route_def *d, uint8_t **out, size_t *len, char *err,
                        size_t errlen)
{
    struct zt_xds_arena e = {0};
    Ztunnel__Routes__V1__Route r = ZTUNNEL__ROUTES__V1__ROUTE__INIT;
    struct zt_route_def check;
    int rc = 0;

    *out = NULL;
    *len = 0;
    if ((unsigned)d->kind > ZT_ROUTE_GRPC || d->n_rules > ZT_XDS_ROUTE_MAX_RULES ||
        d->n_parents > ZT_XDS_ROUTE_MAX_PARENTS || d->n_hostnames > ZT_XDS_ROUTE_MAX_LIST)
        return zt_errf(err, errlen, ZT_E_TOO_BIG, "route: kind or list over the caps");
    for (size_t i = 0; i < d->n_rules; i++)
        for (size_t j = 0; j < d->rules[i].n_matches; j++)
            if ((unsigned)d->rules[i].matches[j].path_kind > ZT_ROUTE_PATH_REGEX)
                return zt_errf(err, errlen, ZT_E_PROTO, "rules[%zu].matches[%zu]: path kind", i, j);
    r.kind = d->kind == ZT_ROUTE_GRPC ? ZTUNNEL__ROUTES__V1__KIND__GRPC_ROUTE
                                      : ZTUNNEL__ROUTES__V1__KIND__HTTP_ROUTE;
    r.namespace_ = zt_xds_s_or_empty(d->ns);
    r.name = zt_xds_s_or_empty(d->name);
    r.has_creation_timestamp = d->has_created;
    r.creation_timestamp = d->has_created ? d->created : 0;
    r.n_parent_refs = d->n_parents;
    r.parent_refs = zt_xds_arena_alloc(&e, d->n_parents, sizeof(*r.parent_refs));
    for (size_t i = 0; i < d->n_parents; i++) {
        const struct zt_route_parent *p = &d->parents[i];
        Ztunnel__Routes__V1__ParentRef *pp = zt_xds_arena_alloc(&e, 1, sizeof(*pp));
        ztunnel__routes__v1__parent_ref__init(pp);
        pp->kind = p->kind == ZT_ROUTE_PARENT_GATEWAY ? ZTUNNEL__ROUTES__V1__PARENT_KIND__GATEWAY
                                                      : ZTUNNEL__ROUTES__V1__PARENT_KIND__SERVICE;
        pp->namespace_ = zt_xds_s_or_empty(p->ns);
        pp->name = zt_xds_s_or_empty(p->name);
        pp->port = p->port;
        pp->section_name = zt_xds_s_or_empty(p->section);
        r.parent_refs[i] = pp;
    }
    r.n_hostnames = d->n_hostnames;
    r.hostnames = zt_xds_arena_alloc(&e, d->n_hostnames, sizeof(*r.hostnames));
    for (size_t i = 0; i < d->n_hostnames; i++)
        r.hostnames[i] = zt_xds_s_or_empty(d->hostnames[i]);
    r.n_rules = d->n_rules;
    r.rules = zt_xds_arena_alloc(&e, d->n_rules, sizeof(*r.rules));
    for (size_t i = 0; i < d->n_rules; i++)
        r.rules[i] = enc_rule(&e, &d->rules[i]);

    size_t n = ztunnel__routes__v1__route__get_packed_size(&r);
    if (n > ZT_XDS_ROUTE_MAX_LEN) {
        rc = zt_errf(err, errlen, ZT_E_TOO_BIG, "route: %zu bytes encoded, over %u", n,
                     ZT_XDS_ROUTE_MAX_LEN);
        goto out;
    }
    *out = zt_xmalloc(n ? n : 1);
    *len = ztunnel__routes__v1__route__pack(&r, *out);
    /* What a waypoint would refuse is not served. */
    rc = zt_xds_route_decode(*out, *len, &check, err, errlen);
    zt_route_def_cleanup(&check);
    if (rc) {
        free(*out);
        *out = NULL;
        *len = 0;
    }
out:
    zt_xds_arena_cleanup(&e);
    return rc;
}

/* ================================================================ decode */

/* A path value as the Gateway API allows it (config/routes_yaml.c's rule):
 * absolute, no fragment, no dot segments, no doubled or encoded slashes. */
static int path_value(struct zt_xds_dec *c, const char *field, const char *v, bool allow_empty)
{
    size_t n = strlen(v);
    if (!n && allow_empty)
        return 0;
    if (n > ZT_ROUTE_MAX_PATH)
        return zt_xds_bad(c, ZT_E_TOO_BIG, field, "longer than %d bytes", ZT_ROUTE_MAX_PATH);
    if (v[0] != '/')
        return zt_xds_bad(c, ZT_E_PROTO, field, "must start with \"/\"");
    if (strchr(v, '#') || strstr(v, "//") || strcasestr(v, "%2f") || strstr(v, "/./") ||
        strstr(v, "/../") || (n >= 2 && strcmp(v + n - 2, "/.") == 0) ||
        (n >= 3 && strcmp(v + n - 3, "/..") == 0) || strchr(v, ' ') || !zt_route_header_value_ok(v))
        return zt_xds_bad(c, ZT_E_PROTO, field, "not a path the Gateway API allows");
    return 0;
}

static int regex(struct zt_xds_dec *c, const char *field, const char *pattern,
                 struct zt_route_regex **out)
{
    char why[300];
    if (zt_route_regex_new(pattern, out, why, sizeof(why)))
        return zt_xds_bad(c, ZT_E_PROTO, field, "%s", why);
    return 0;
}

/* A header name: a token, stored lower-case. */
static int header_name(struct zt_xds_dec *c, const char *field, const char *v, char **out)
{
    int rc = zt_xds_str(c, field, v, ZT_XDS_ROUTE_MAX_NAME, true, false, out);
    if (rc)
        return rc;
    if (!zt_route_header_name_ok(*out))
        return zt_xds_bad(c, ZT_E_PROTO, field, "not a header name");
    for (char *p = *out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return 0;
}

/* Letters, digits, '-' and '.', as the YAML loader takes them. */
static bool hostname_ok(const char *h)
{
    for (; *h; h++)
        if (!isalnum((unsigned char)*h) && *h != '-' && *h != '.')
            return false;
    return true;
}

static int header_value(struct zt_xds_dec *c, const char *field, const char *v, char **out)
{
    v = v ? v : "";
    if (strnlen(v, ZT_XDS_ROUTE_MAX_VALUE + 1) > ZT_XDS_ROUTE_MAX_VALUE)
        return zt_xds_bad(c, ZT_E_TOO_BIG, field, "longer than %d bytes", ZT_XDS_ROUTE_MAX_VALUE);
    if (!zt_route_header_value_ok(v))
        return zt_xds_bad(c, ZT_E_PROTO, field, "CR, LF or NUL in a header value");
    *out = zt_xstrdup(v);
    return 0;
}

static int port(struct zt_xds_dec *c, const char *field, uint32_t v, bool allow_zero, uint16_t *out)
{
    if (v > 65535 || (!v && !allow_zero))
        return zt_xds_bad(c, ZT_E_PROTO, field, "port %u, want 1..65535", v);
    *out = (uint16_t)v;
    return 0;
}

static int dec_strmatches(struct zt_xds_dec *c, const char *parent, const char *k, bool is_header,
                          Ztunnel__Routes__V1__StringMatch *const *v, size_t n,
                          struct zt_route_strmatch **out, size_t *n_out)
{
    char f[ZT_XDS_FIELD_LEN], sub[ZT_XDS_FIELD_LEN];
    int rc;
    zt_xds_key(f, parent, k);
    if ((rc = zt_xds_list(c, f, n, ZT_ROUTE_MAX_MATCH_FIELDS)))
        return rc;
    *out = zt_xcalloc(n ? n : 1, sizeof(**out));
    *n_out = n;
    for (size_t i = 0; i < n; i++) {
        struct zt_route_strmatch *m = &(*out)[i];
        zt_xds_idx(f, parent, k, i);
        if (v[i]->type != ZTUNNEL__ROUTES__V1__STRING_MATCH_TYPE__STRING_EXACT &&
            v[i]->type != ZTUNNEL__ROUTES__V1__STRING_MATCH_TYPE__STRING_REGULAR_EXPRESSION)
            return zt_xds_bad(c, ZT_E_PROTO, f, "unknown match type %d", (int)v[i]->type);
        m->kind = v[i]->type == ZTUNNEL__ROUTES__V1__STRING_MATCH_TYPE__STRING_EXACT
                      ? ZT_ROUTE_STR_EXACT
                      : ZT_ROUTE_STR_REGEX;
        zt_xds_key(sub, f, "name");
        rc = is_header
                 ? header_name(c, sub, v[i]->name, &m->name)
                 : zt_xds_str(c, sub, v[i]->name, ZT_XDS_ROUTE_MAX_NAME, true, false, &m->name);
        if (rc)
            return rc;
        zt_xds_key(sub, f, "value");
        if ((rc = header_value(c, sub, v[i]->value, &m->value)))
            return rc;
        if (m->kind == ZT_ROUTE_STR_REGEX && (rc = regex(c, sub, m->value, &m->re)))
            return rc;
    }
    return 0;
}

static int dec_match(struct zt_xds_dec *c, const char *f, const Ztunnel__Routes__V1__Match *pm,
                     struct zt_route_match *m)
{
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH", NULL};
    char sub[ZT_XDS_FIELD_LEN];
    const char *p = pm->path ? pm->path : "";
    int rc;

    zt_xds_key(sub, f, "path");
    switch (pm->path_kind) {
    case ZTUNNEL__ROUTES__V1__PATH_KIND__PATH_NONE:
        if (p[0])
            return zt_xds_bad(c, ZT_E_PROTO, sub, "a path without a path kind");
        m->path_kind = ZT_ROUTE_PATH_NONE;
        break;
    case ZTUNNEL__ROUTES__V1__PATH_KIND__EXACT:
    case ZTUNNEL__ROUTES__V1__PATH_KIND__PREFIX: {
        bool is_prefix = pm->path_kind == ZTUNNEL__ROUTES__V1__PATH_KIND__PREFIX;
        if ((rc = path_value(c, sub, p, is_prefix)))
            return rc;
        if (is_prefix && p[0] && p[strlen(p) - 1] == '/')
            return zt_xds_bad(c, ZT_E_PROTO, sub, "a prefix is sent without its trailing \"/\"");
        m->path_kind = is_prefix ? ZT_ROUTE_PATH_PREFIX : ZT_ROUTE_PATH_EXACT;
        m->path = zt_xstrdup(p);
        break;
    }
    case ZTUNNEL__ROUTES__V1__PATH_KIND__REGULAR_EXPRESSION:
        if ((rc = zt_xds_str(c, sub, p, ZT_ROUTE_MAX_PATH, true, false, &m->path)) ||
            (rc = regex(c, sub, m->path, &m->path_re)))
            return rc;
        m->path_kind = ZT_ROUTE_PATH_REGEX;
        break;
    default:
        return zt_xds_bad(c, ZT_E_PROTO, sub, "unknown path kind %d", (int)pm->path_kind);
    }
    zt_xds_key(sub, f, "method");
    if ((rc = zt_xds_str(c, sub, pm->method, 16, false, false, &m->method)))
        return rc;
    if (m->method) {
        size_t i = 0;
        while (methods[i] && strcmp(methods[i], m->method) != 0)
            i++;
        if (!methods[i])
            return zt_xds_bad(c, ZT_E_PROTO, sub, "\"%s\" is not an HTTP method the API allows",
                              m->method);
    }
    if ((rc = dec_strmatches(c, f, "headers", true, pm->headers, pm->n_headers, &m->headers,
                             &m->n_headers)))
        return rc;
    return dec_strmatches(c, f, "query_params", false, pm->query_params, pm->n_query_params,
                          &m->query, &m->n_query);
}

static int dec_fields(struct zt_xds_dec *c, const char *parent, const char *k,
                      Ztunnel__Routes__V1__Header *const *v, size_t n, struct zt_http_field **out,
                      size_t *n_out)
{
    char f[ZT_XDS_FIELD_LEN], sub[ZT_XDS_FIELD_LEN];
    int rc;
    zt_xds_key(f, parent, k);
    if ((rc = zt_xds_list(c, f, n, ZT_XDS_ROUTE_MAX_LIST)))
        return rc;
    *out = zt_xcalloc(n ? n : 1, sizeof(**out));
    *n_out = n;
    for (size_t i = 0; i < n; i++) {
        zt_xds_idx(f, parent, k, i);
        zt_xds_key(sub, f, "name");
        if ((rc = header_name(c, sub, v[i]->name, &(*out)[i].name)))
            return rc;
        zt_xds_key(sub, f, "value");
        if ((rc = header_value(c, sub, v[i]->value, &(*out)[i].value)))
            return rc;
    }
    return 0;
}

static int dec_mod(struct zt_xds_dec *c, const char *f,
                   const Ztunnel__Routes__V1__HeaderModifier *pm, struct zt_route_header_mod *h)
{
    char sub[ZT_XDS_FIELD_LEN];
    int rc;
    if (!pm)
        return 0;
    if ((rc = dec_fields(c, f, "set", pm->set, pm->n_set, &h->set, &h->n_set)) ||
        (rc = dec_fields(c, f, "add", pm->add, pm->n_add, &h->add, &h->n_add)))
        return rc;
    zt_xds_key(sub, f, "remove");
    if ((rc = zt_xds_list(c, sub, pm->n_remove, ZT_XDS_ROUTE_MAX_LIST)))
        return rc;
    h->remove = zt_xcalloc(pm->n_remove ? pm->n_remove : 1, sizeof(*h->remove));
    h->n_remove = pm->n_remove;
    for (size_t i = 0; i < pm->n_remove; i++) {
        zt_xds_idx(sub, f, "remove", i);
        if ((rc = header_name(c, sub, pm->remove[i], &h->remove[i])))
            return rc;
    }
    return 0;
}

static int dec_path_mod(struct zt_xds_dec *c, const char *f,
                        const Ztunnel__Routes__V1__PathModifier *pm, struct zt_route_path_mod *m)
{
    char sub[ZT_XDS_FIELD_LEN];
    int rc;
    if (!pm || pm->kind == ZTUNNEL__ROUTES__V1__PATH_MODIFIER_KIND__PATH_MODIFIER_NONE) {
        m->kind = ZT_ROUTE_PATH_MOD_NONE;
        return 0;
    }
    zt_xds_key(sub, f, "value");
    if (pm->kind == ZTUNNEL__ROUTES__V1__PATH_MODIFIER_KIND__REPLACE_FULL_PATH)
        m->kind = ZT_ROUTE_PATH_MOD_FULL;
    else if (pm->kind == ZTUNNEL__ROUTES__V1__PATH_MODIFIER_KIND__REPLACE_PREFIX_MATCH)
        m->kind = ZT_ROUTE_PATH_MOD_PREFIX;
    else
        return zt_xds_bad(c, ZT_E_PROTO, f, "unknown path modifier kind %d", (int)pm->kind);
    /* "" is allowed: ReplacePrefixMatch strips the prefix, a full path
     * becomes "/". */
    if ((rc = path_value(c, sub, pm->value ? pm->value : "", true)))
        return rc;
    m->value = zt_xstrdup(pm->value ? pm->value : "");
    return 0;
}

static int dec_backend(struct zt_xds_dec *c, const char *f,
                       const Ztunnel__Routes__V1__BackendRef *pb, bool is_mirror,
                       struct zt_route_backend *b)
{
    char sub[ZT_XDS_FIELD_LEN];
    int rc;
    if (!pb)
        return zt_xds_bad(c, ZT_E_PROTO, f, "required");
    b->invalid = pb->invalid;
    zt_xds_key(sub, f, "namespace");
    if ((rc =
             zt_xds_str(c, sub, pb->namespace_, ZT_XDS_ROUTE_MAX_NAME, !b->invalid, false, &b->ns)))
        return rc;
    zt_xds_key(sub, f, "name");
    if ((rc = zt_xds_str(c, sub, pb->name, ZT_XDS_ROUTE_MAX_NAME, !b->invalid, false, &b->name)))
        return rc;
    zt_xds_key(sub, f, "port");
    if ((rc = port(c, sub, pb->port, b->invalid, &b->port)))
        return rc;
    zt_xds_key(sub, f, "weight");
    if (pb->weight > ZT_XDS_ROUTE_MAX_WEIGHT)
        return zt_xds_bad(c, ZT_E_PROTO, sub, "%u, at most %d", pb->weight,
                          ZT_XDS_ROUTE_MAX_WEIGHT);
    if (is_mirror && pb->invalid)
        return zt_xds_bad(c, ZT_E_PROTO, f, "a mirror needs a Service backend");
    b->weight = pb->weight;
    return 0;
}

static int dec_filters(struct zt_xds_dec *c, const char *f, const Ztunnel__Routes__V1__Filters *pf,
                       struct zt_route_filters *out)
{
    char sub[ZT_XDS_FIELD_LEN], sub2[ZT_XDS_FIELD_LEN];
    int rc;
    if (!pf)
        return 0;
    zt_xds_key(sub, f, "request_header_modifier");
    if ((rc = dec_mod(c, sub, pf->request_header_modifier, &out->request)))
        return rc;
    zt_xds_key(sub, f, "response_header_modifier");
    if ((rc = dec_mod(c, sub, pf->response_header_modifier, &out->response)))
        return rc;
    if (pf->request_redirect) {
        const Ztunnel__Routes__V1__Redirect *r = pf->request_redirect;
        struct zt_route_redirect *rd = &out->redirect;
        out->has_redirect = true;
        zt_xds_key(sub, f, "request_redirect");
        zt_xds_key(sub2, sub, "scheme");
        if ((rc = zt_xds_str(c, sub2, r->scheme, 16, false, false, &rd->scheme)))
            return rc;
        if (rd->scheme && strcmp(rd->scheme, "http") != 0 && strcmp(rd->scheme, "https") != 0)
            return zt_xds_bad(c, ZT_E_PROTO, sub2, "\"%s\", want http or https", rd->scheme);
        zt_xds_key(sub2, sub, "hostname");
        if ((rc = zt_xds_str(c, sub2, r->hostname, ZT_XDS_ROUTE_MAX_NAME, false, false,
                             &rd->hostname)))
            return rc;
        if (rd->hostname && !hostname_ok(rd->hostname))
            return zt_xds_bad(c, ZT_E_PROTO, sub2, "not a host name");
        zt_xds_key(sub2, sub, "path");
        if ((rc = dec_path_mod(c, sub2, r->path, &rd->path)))
            return rc;
        zt_xds_key(sub2, sub, "port");
        if ((rc = port(c, sub2, r->port, true, &rd->port)))
            return rc;
        zt_xds_key(sub2, sub, "status_code");
        if (r->status_code != 301 && r->status_code != 302 && r->status_code != 303 &&
            r->status_code != 307 && r->status_code != 308)
            return zt_xds_bad(c, ZT_E_PROTO, sub2, "%u, want 301, 302, 303, 307 or 308",
                              r->status_code);
        rd->status = (int)r->status_code;
    }
    if (pf->url_rewrite) {
        out->has_rewrite = true;
        zt_xds_key(sub, f, "url_rewrite");
        zt_xds_key(sub2, sub, "hostname");
        if ((rc = zt_xds_str(c, sub2, pf->url_rewrite->hostname, ZT_XDS_ROUTE_MAX_NAME, false,
                             false, &out->rewrite.hostname)))
            return rc;
        if (out->rewrite.hostname && !hostname_ok(out->rewrite.hostname))
            return zt_xds_bad(c, ZT_E_PROTO, sub2, "not a host name");
        zt_xds_key(sub2, sub, "path");
        if ((rc = dec_path_mod(c, sub2, pf->url_rewrite->path, &out->rewrite.path)))
            return rc;
    }
    zt_xds_key(sub, f, "request_mirrors");
    if ((rc = zt_xds_list(c, sub, pf->n_request_mirrors, ZT_XDS_ROUTE_MAX_LIST)))
        return rc;
    out->mirrors =
        zt_xcalloc(pf->n_request_mirrors ? pf->n_request_mirrors : 1, sizeof(*out->mirrors));
    out->n_mirrors = pf->n_request_mirrors;
    for (size_t i = 0; i < pf->n_request_mirrors; i++) {
        const Ztunnel__Routes__V1__Mirror *pm = pf->request_mirrors[i];
        struct zt_route_mirror *m = &out->mirrors[i];
        zt_xds_idx(sub, f, "request_mirrors", i);
        zt_xds_key(sub2, sub, "backend_ref");
        if ((rc = dec_backend(c, sub2, pm->backend_ref, true, &m->backend)))
            return rc;
        if (pm->denominator == 0 || pm->numerator > pm->denominator)
            return zt_xds_bad(c, ZT_E_PROTO, sub, "%u out of %u is not a share", pm->numerator,
                              pm->denominator);
        m->numerator = pm->numerator;
        m->denominator = pm->denominator;
    }
    return 0;
}

static int dec_retry(struct zt_xds_dec *c, const char *f, const Ztunnel__Routes__V1__Retry *pr,
                     struct zt_route_retry *rt)
{
    char sub[ZT_XDS_FIELD_LEN];
    const uint32_t known = ZT_ROUTE_RETRY_CONNECT_FAILURE | ZT_ROUTE_RETRY_REFUSED_STREAM |
                           ZT_ROUTE_RETRY_UNAVAILABLE | ZT_ROUTE_RETRY_CANCELLED |
                           ZT_ROUTE_RETRY_STATUS_CODES;
    int rc;
    zt_xds_key(sub, f, "attempts");
    if (pr->attempts > 1000)
        return zt_xds_bad(c, ZT_E_PROTO, sub, "%u, at most 1000", pr->attempts);
    zt_xds_key(sub, f, "retry_on");
    if (pr->retry_on & ~known)
        return zt_xds_bad(c, ZT_E_PROTO, sub, "unknown conditions 0x%x", pr->retry_on & ~known);
    zt_xds_key(sub, f, "codes");
    if ((rc = zt_xds_list(c, sub, pr->n_codes, ZT_ROUTE_MAX_RETRY_CODES)))
        return rc;
    for (size_t i = 0; i < pr->n_codes; i++) {
        if (pr->codes[i] < 400 || pr->codes[i] > 599) {
            zt_xds_idx(sub, f, "codes", i);
            return zt_xds_bad(c, ZT_E_PROTO, sub, "%u is not a status code 400..599", pr->codes[i]);
        }
        rt->codes[i] = (uint16_t)pr->codes[i];
    }
    zt_xds_key(sub, f, "max_backoff_ms");
    if (pr->max_backoff_ms < pr->backoff_ms)
        return zt_xds_bad(c, ZT_E_PROTO, sub, "smaller than backoff_ms");
    rt->attempts = pr->attempts;
    rt->on = pr->retry_on;
    rt->n_codes = pr->n_codes;
    rt->backoff_ms = pr->backoff_ms;
    rt->max_backoff_ms = pr->max_backoff_ms;
    rt->per_try_timeout_ms = pr->per_try_timeout_ms;
    return 0;
}

static int dec_rule(struct zt_xds_dec *c, const char *f, const Ztunnel__Routes__V1__Rule *pr,
                    struct zt_route_rule *r)
{
    char sub[ZT_XDS_FIELD_LEN];
    int rc;
    zt_xds_key(sub, f, "name");
    if ((rc = zt_xds_str(c, sub, pr->name, ZT_XDS_ROUTE_MAX_NAME, false, false, &r->name)))
        return rc;
    zt_xds_key(sub, f, "matches");
    if ((rc = zt_xds_list(c, sub, pr->n_matches, ZT_XDS_ROUTE_MAX_MATCHES)))
        return rc;
    r->matches = zt_xcalloc(pr->n_matches ? pr->n_matches : 1, sizeof(*r->matches));
    r->n_matches = pr->n_matches;
    for (size_t i = 0; i < pr->n_matches; i++) {
        zt_xds_idx(sub, f, "matches", i);
        if ((rc = dec_match(c, sub, pr->matches[i], &r->matches[i])))
            return rc;
    }
    zt_xds_key(sub, f, "filters");
    if ((rc = dec_filters(c, sub, pr->filters, &r->filters)))
        return rc;
    if (r->filters.has_redirect && pr->n_backend_refs)
        return zt_xds_bad(c, ZT_E_PROTO, sub, "a redirect with backend_refs");
    zt_xds_key(sub, f, "backend_refs");
    if ((rc = zt_xds_list(c, sub, pr->n_backend_refs, ZT_XDS_ROUTE_MAX_LIST)))
        return rc;
    r->backends = zt_xcalloc(pr->n_backend_refs ? pr->n_backend_refs : 1, sizeof(*r->backends));
    r->n_backends = pr->n_backend_refs;
    for (size_t i = 0; i < pr->n_backend_refs; i++) {
        zt_xds_idx(sub, f, "backend_refs", i);
        if ((rc = dec_backend(c, sub, pr->backend_refs[i], false, &r->backends[i])))
            return rc;
    }
    r->request_timeout_ms = pr->request_timeout_ms;
    r->backend_timeout_ms = pr->backend_request_timeout_ms;
    if (pr->retry) {
        r->has_retry = true;
        zt_xds_key(sub, f, "retry");
        if ((rc = dec_retry(c, sub, pr->retry, &r->retry)))
            return rc;
    }
    return 0;
}

static int dec_parent(struct zt_xds_dec *c, const char *f, const Ztunnel__Routes__V1__ParentRef *pp,
                      struct zt_route_parent *p)
{
    char sub[ZT_XDS_FIELD_LEN];
    int rc;
    zt_xds_key(sub, f, "kind");
    if (pp->kind == ZTUNNEL__ROUTES__V1__PARENT_KIND__SERVICE)
        p->kind = ZT_ROUTE_PARENT_SERVICE;
    else if (pp->kind == ZTUNNEL__ROUTES__V1__PARENT_KIND__GATEWAY)
        p->kind = ZT_ROUTE_PARENT_GATEWAY;
    else
        return zt_xds_bad(c, ZT_E_PROTO, sub, "unknown parent kind %d", (int)pp->kind);
    zt_xds_key(sub, f, "namespace");
    if ((rc = zt_xds_str(c, sub, pp->namespace_, ZT_XDS_ROUTE_MAX_NAME, true, false, &p->ns)))
        return rc;
    zt_xds_key(sub, f, "name");
    if ((rc = zt_xds_str(c, sub, pp->name, ZT_XDS_ROUTE_MAX_NAME, true, false, &p->name)))
        return rc;
    zt_xds_key(sub, f, "port");
    if ((rc = port(c, sub, pp->port, true, &p->port)))
        return rc;
    zt_xds_key(sub, f, "section_name");
    return zt_xds_str(c, sub, pp->section_name, ZT_XDS_ROUTE_MAX_NAME, false, false, &p->section);
}

static int dec_route(struct zt_xds_dec *c, const Ztunnel__Routes__V1__Route *r,
                     struct zt_route_def *d)
{
    char sub[ZT_XDS_FIELD_LEN];
    int rc;
    if (r->kind == ZTUNNEL__ROUTES__V1__KIND__HTTP_ROUTE)
        d->kind = ZT_ROUTE_HTTP;
    else if (r->kind == ZTUNNEL__ROUTES__V1__KIND__GRPC_ROUTE)
        d->kind = ZT_ROUTE_GRPC;
    else
        return zt_xds_bad(c, ZT_E_PROTO, "kind", "unknown route kind %d", (int)r->kind);
    if ((rc = zt_xds_str(c, "namespace", r->namespace_, ZT_XDS_ROUTE_MAX_NAME, true, false,
                         &d->ns)) ||
        (rc = zt_xds_str(c, "name", r->name, ZT_XDS_ROUTE_MAX_NAME, true, false, &d->name)))
        return rc;
    d->has_created = r->has_creation_timestamp;
    d->created = r->has_creation_timestamp ? r->creation_timestamp : 0;
    if ((rc = zt_xds_list(c, "parent_refs", r->n_parent_refs, ZT_XDS_ROUTE_MAX_PARENTS)) ||
        (rc = zt_xds_list(c, "hostnames", r->n_hostnames, ZT_XDS_ROUTE_MAX_LIST)) ||
        (rc = zt_xds_list(c, "rules", r->n_rules, ZT_XDS_ROUTE_MAX_RULES)))
        return rc;
    /* Hostnames are kept for /config_dump; the waypoint does not match them. */
    d->hostnames = zt_xcalloc(r->n_hostnames ? r->n_hostnames : 1, sizeof(*d->hostnames));
    for (size_t i = 0; i < r->n_hostnames; i++) {
        zt_xds_idx(sub, "", "hostnames", i);
        if ((rc = zt_xds_str(c, sub, r->hostnames[i], ZT_XDS_ROUTE_MAX_NAME, true, false,
                             &d->hostnames[i])))
            return rc;
        d->n_hostnames = i + 1;
    }
    d->parents = zt_xcalloc(r->n_parent_refs ? r->n_parent_refs : 1, sizeof(*d->parents));
    d->n_parents = r->n_parent_refs;
    for (size_t i = 0; i < r->n_parent_refs; i++) {
        zt_xds_idx(sub, "", "parent_refs", i);
        if ((rc = dec_parent(c, sub, r->parent_refs[i], &d->parents[i])))
            return rc;
    }
    d->rules = zt_xcalloc(r->n_rules ? r->n_rules : 1, sizeof(*d->rules));
    d->n_rules = r->n_rules;
    for (size_t i = 0; i < r->n_rules; i++) {
        zt_xds_idx(sub, "", "rules", i);
        if ((rc = dec_rule(c, sub, r->rules[i], &d->rules[i])))
            return rc;
    }
    return 0;
}

int zt_xds_route_decode(const uint8_t *value, size_t len, struct zt_route_def *out, char *err,
                        size_t errlen)
{
    struct zt_xds_dec c = {.err = err, .errlen = errlen};
    Ztunnel__Routes__V1__Route *r;
    int rc;

    memset(out, 0, sizeof(*out));
    if (len > ZT_XDS_ROUTE_MAX_LEN)
        return zt_xds_bad(&c, ZT_E_TOO_BIG, "route", "%zu bytes, over %u", len,
                          ZT_XDS_ROUTE_MAX_LEN);
    r = ztunnel__routes__v1__route__unpack(NULL, len, value);
    if (!r)
        return zt_xds_bad(&c, ZT_E_PROTO, "route", "not a ztunnel.routes.v1.Route");
    rc = dec_route(&c, r, out);
    ztunnel__routes__v1__route__free_unpacked(r, NULL);
    if (rc)
        zt_route_def_cleanup(out);
    return rc;
}
