/* /config_dump of the route table (dump.h). Field names and enum spellings
 * are the Gateway API's, so the dump reads like the objects users wrote;
 * durations are printed as Gateway API durations ("500ms"). */
#include "route/dump.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* jansson only fails on allocation or bad UTF-8 (handled in str). */
static json_t *must(json_t *v)
{
    if (!v)
        abort();
    return v;
}

static void set(json_t *o, const char *key, json_t *v)
{
    if (json_object_set_new(o, key, must(v)) != 0)
        abort();
}

static void push(json_t *a, json_t *v)
{
    if (json_array_append_new(a, must(v)) != 0)
        abort();
}

json_t *zt_json_str(const char *s)
{
    json_t *v = json_string(s ? s : "");
    if (v)
        return v;
    size_t n = strlen(s);
    char *b = malloc(4 * n + 1), *p = b;
    if (!b)
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80)
            *p++ = (char)c;
        else
            p += sprintf(p, "\\x%02x", c);
    }
    *p = '\0';
    v = must(json_string(b));
    free(b);
    return v;
}

static json_t *str(const char *s)
{
    return zt_json_str(s);
}

static void set_str(json_t *o, const char *key, const char *s)
{
    if (s)
        set(o, key, str(s));
}

static json_t *duration(uint32_t ms)
{
    char b[32];
    snprintf(b, sizeof(b), "%" PRIu32 "ms", ms);
    return str(b);
}

static const char *path_kind_str(enum zt_route_path_kind k)
{
    switch (k) {
    case ZT_ROUTE_PATH_EXACT:
        return "Exact";
    case ZT_ROUTE_PATH_PREFIX:
        return "PathPrefix";
    case ZT_ROUTE_PATH_REGEX:
        return "RegularExpression";
    default:
        return NULL;
    }
}

static json_t *strmatches(const struct zt_route_strmatch *m, size_t n)
{
    json_t *a = must(json_array());
    for (size_t i = 0; i < n; i++) {
        json_t *o = must(json_object());
        set_str(o, "type", m[i].kind == ZT_ROUTE_STR_REGEX ? "RegularExpression" : "Exact");
        set_str(o, "name", m[i].name);
        set_str(o, "value", m[i].value);
        push(a, o);
    }
    return a;
}

static json_t *match_json(const struct zt_route_match *m)
{
    json_t *o = must(json_object());
    if (m->path_kind != ZT_ROUTE_PATH_NONE) {
        json_t *p = must(json_object());
        set_str(p, "type", path_kind_str(m->path_kind));
        /* A prefix is kept without its trailing '/' ("" for "/"). */
        set_str(p, "value", m->path_kind == ZT_ROUTE_PATH_PREFIX && !m->path[0] ? "/" : m->path);
        set(o, "path", p);
    }
    set_str(o, "method", m->method);
    if (m->n_headers)
        set(o, "headers", strmatches(m->headers, m->n_headers));
    if (m->n_query)
        set(o, "queryParams", strmatches(m->query, m->n_query));
    return o;
}

static json_t *fields(const struct zt_http_field *f, size_t n)
{
    json_t *a = must(json_array());
    for (size_t i = 0; i < n; i++) {
        json_t *o = must(json_object());
        set_str(o, "name", f[i].name);
        set_str(o, "value", f[i].value);
        push(a, o);
    }
    return a;
}

static bool header_mod_empty(const struct zt_route_header_mod *m)
{
    return !m->n_set && !m->n_add && !m->n_remove;
}

static json_t *header_mod(const struct zt_route_header_mod *m)
{
    json_t *o = must(json_object()), *rm = must(json_array());
    set(o, "set", fields(m->set, m->n_set));
    set(o, "add", fields(m->add, m->n_add));
    for (size_t i = 0; i < m->n_remove; i++)
        push(rm, str(m->remove[i]));
    set(o, "remove", rm);
    return o;
}

static void set_path_mod(json_t *o, const struct zt_route_path_mod *p)
{
    if (p->kind == ZT_ROUTE_PATH_MOD_NONE)
        return;
    bool full = p->kind == ZT_ROUTE_PATH_MOD_FULL;
    json_t *v = must(json_object());
    set_str(v, "type", full ? "ReplaceFullPath" : "ReplacePrefixMatch");
    set_str(v, full ? "replaceFullPath" : "replacePrefixMatch", p->value);
    set(o, "path", v);
}

static json_t *backend_json(const struct zt_route_backend *b, bool weighted)
{
    json_t *o = must(json_object());
    set_str(o, "namespace", b->ns);
    set_str(o, "name", b->name);
    if (b->port)
        set(o, "port", json_integer(b->port));
    if (weighted)
        set(o, "weight", json_integer(b->weight));
    if (b->invalid)
        set(o, "unsupported", json_true());
    return o;
}

/* One object per filter, as the API spells them. */
static json_t *filters_json(const struct zt_route_filters *f)
{
    json_t *a = must(json_array());
    json_t *o;
    if (!header_mod_empty(&f->request)) {
        o = must(json_object());
        set_str(o, "type", "RequestHeaderModifier");
        set(o, "requestHeaderModifier", header_mod(&f->request));
        push(a, o);
    }
    if (!header_mod_empty(&f->response)) {
        o = must(json_object());
        set_str(o, "type", "ResponseHeaderModifier");
        set(o, "responseHeaderModifier", header_mod(&f->response));
        push(a, o);
    }
    if (f->has_redirect) {
        json_t *r = must(json_object());
        set_str(r, "scheme", f->redirect.scheme);
        set_str(r, "hostname", f->redirect.hostname);
        set_path_mod(r, &f->redirect.path);
        if (f->redirect.port)
            set(r, "port", json_integer(f->redirect.port));
        set(r, "statusCode", json_integer(f->redirect.status));
        o = must(json_object());
        set_str(o, "type", "RequestRedirect");
        set(o, "requestRedirect", r);
        push(a, o);
    }
    if (f->has_rewrite) {
        json_t *r = must(json_object());
        set_str(r, "hostname", f->rewrite.hostname);
        set_path_mod(r, &f->rewrite.path);
        o = must(json_object());
        set_str(o, "type", "URLRewrite");
        set(o, "urlRewrite", r);
        push(a, o);
    }
    for (size_t i = 0; i < f->n_mirrors; i++) {
        const struct zt_route_mirror *m = &f->mirrors[i];
        json_t *r = must(json_object()), *fr = must(json_object());
        set(r, "backendRef", backend_json(&m->backend, false));
        set(fr, "numerator", json_integer(m->numerator));
        set(fr, "denominator", json_integer(m->denominator));
        set(r, "fraction", fr);
        o = must(json_object());
        set_str(o, "type", "RequestMirror");
        set(o, "requestMirror", r);
        push(a, o);
    }
    return a;
}

static json_t *rule_json(const struct zt_route_rule *r)
{
    json_t *o = must(json_object()), *ms = must(json_array()), *bs = must(json_array());
    set_str(o, "name", r->name);
    for (size_t i = 0; i < r->n_matches; i++)
        push(ms, match_json(&r->matches[i]));
    set(o, "matches", ms);
    set(o, "filters", filters_json(&r->filters));
    for (size_t i = 0; i < r->n_backends; i++)
        push(bs, backend_json(&r->backends[i], true));
    set(o, "backendRefs", bs);
    if (r->request_timeout_ms || r->backend_timeout_ms) {
        json_t *t = must(json_object());
        if (r->request_timeout_ms)
            set(t, "request", duration(r->request_timeout_ms));
        if (r->backend_timeout_ms)
            set(t, "backendRequest", duration(r->backend_timeout_ms));
        set(o, "timeouts", t);
    }
    if (r->has_retry) {
        json_t *t = must(json_object()), *codes = must(json_array());
        set(t, "attempts", json_integer(r->retry.attempts));
        for (size_t i = 0; i < r->retry.n_codes; i++)
            push(codes, json_integer(r->retry.codes[i]));
        set(t, "codes", codes);
        set(t, "backoff", duration(r->retry.backoff_ms));
        set(o, "retry", t);
    }
    return o;
}

static json_t *route_json(const struct zt_route_def *d)
{
    json_t *o = must(json_object()), *ps = must(json_array()), *hs = must(json_array());
    json_t *rs = must(json_array());
    set_str(o, "kind", zt_route_kind_str(d->kind));
    set_str(o, "namespace", d->ns);
    set_str(o, "name", d->name);
    struct tm tm;
    time_t created = (time_t)d->created;
    char ts[32];
    if (d->has_created && gmtime_r(&created, &tm) && strftime(ts, sizeof(ts), "%FT%TZ", &tm))
        set_str(o, "creationTimestamp", ts);
    for (size_t i = 0; i < d->n_parents; i++) {
        const struct zt_route_parent *p = &d->parents[i];
        json_t *po = must(json_object());
        set_str(po, "kind", p->kind == ZT_ROUTE_PARENT_GATEWAY ? "Gateway" : "Service");
        set_str(po, "namespace", p->ns);
        set_str(po, "name", p->name);
        if (p->port)
            set(po, "port", json_integer(p->port));
        set_str(po, "sectionName", p->section);
        push(ps, po);
    }
    set(o, "parentRefs", ps);
    for (size_t i = 0; i < d->n_hostnames; i++)
        push(hs, str(d->hostnames[i]));
    set(o, "hostnames", hs);
    for (size_t i = 0; i < d->n_rules; i++)
        push(rs, rule_json(&d->rules[i]));
    set(o, "rules", rs);
    return o;
}

json_t *zt_route_table_dump(const struct zt_route_table *t)
{
    json_t *o = must(json_object()), *a = must(json_array());
    size_t n = t ? zt_route_table_count(t) : 0;
    for (size_t i = 0; i < n; i++)
        push(a, route_json(zt_route_table_route_at(t, i)));
    set(o, "routes", a);
    set(o, "leftOut", json_integer(t ? (json_int_t)zt_route_table_left_out(t) : 0));
    return o;
}
