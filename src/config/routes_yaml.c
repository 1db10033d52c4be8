/* HTTPRoute and GRPCRoute YAML into route definitions. See routes.h.
 *
 * Each document is built into a node tree (yaml_tree.c) and walked along
 * the fields the Gateway API defines; only known fields are descended into
 * and every list is checked against the CRD's maxItems before it is walked,
 * so the work per document is bounded whatever its aliases. The first
 * problem in an object rejects it; the other objects still load, because a
 * typo in one route must not take down the routes of every other service.
 *
 * This file holds the shared walkers (routes_int.h), matches, rules, the
 * object and the documents; routes_filters.c the filters, backends and
 * retry. */
#include "config/routes.h"
#include "config/local.h"
#include "config/routes_int.h"

#include "base/alloc.h"
#include "base/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static unsigned long line_of(const struct ynode *n)
{
    return n ? (unsigned long)n->line + 1 : 1ul;
}

__attribute__((format(printf, 5, 0))) static void diag(struct zt_config_routes_ctx *c, bool warning,
                                                       const struct ynode *n, const char *path,
                                                       const char *fmt, va_list ap)
{
    char why[512];
    vsnprintf(why, sizeof(why), fmt, ap);
    zt_route_errors_add(c->errs, warning, "%s:%lu: %s: %s: %s", c->file, line_of(n), c->obj,
                        *path ? path : "(document)", why);
}

int zt_config_routes_fail(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag(c, false, n, path, fmt, ap);
    va_end(ap);
    return ZT_E_CONFIG;
}

void zt_config_routes_warn(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag(c, true, n, path, fmt, ap);
    va_end(ap);
}

/* A field path too deep for PATH_LEN (only in messages) ends in "...". */
static void mark_cut(char *dst, int n)
{
    if (n < 0 || n >= PATH_LEN)
        memcpy(dst + PATH_LEN - 4, "...", 4);
}

void zt_config_routes_key(char *dst, const char *parent, const char *key)
{
    mark_cut(dst, snprintf(dst, PATH_LEN, "%s%s%s", parent, *parent ? "." : "", key));
}

void zt_config_routes_idx(char *dst, const char *parent, size_t i)
{
    mark_cut(dst, snprintf(dst, PATH_LEN, "%s[%zu]", parent, i));
}

/* A plain "~", "null" or empty scalar stands for "not set". */
static bool is_null(const struct ynode *n)
{
    if (n->type != YAML_SCALAR_NODE || !n->plain)
        return false;
    return n->len == 0 || strcmp(n->value, "~") == 0 || strcasecmp(n->value, "null") == 0;
}

const struct ynode *zt_config_routes_get(const struct ynode *m, const char *key)
{
    for (size_t i = 0; i < m->n_pairs; i++) {
        const struct ynode *k = m->pairs[i].key;
        if (k->type == YAML_SCALAR_NODE && strcmp(k->value, key) == 0)
            return is_null(m->pairs[i].value) ? NULL : m->pairs[i].value;
    }
    return NULL;
}

static const char *type_name(yaml_node_type_t t)
{
    return t == YAML_SCALAR_NODE     ? "a scalar"
           : t == YAML_SEQUENCE_NODE ? "a list"
           : t == YAML_MAPPING_NODE  ? "a mapping"
                                     : "nothing";
}

int zt_config_routes_want(struct zt_config_routes_ctx *c, const struct ynode *n, yaml_node_type_t t,
                          const char *path)
{
    if (n->type != t)
        return zt_config_routes_fail(c, n, path, "expected %s, found %s", type_name(t),
                                     type_name(n->type));
    return 0;
}

/* Checks m is a mapping with string keys, each once; keys outside known
 * are warnings (the Gateway API grows fields; an older reader ignores them
 * as the API server's pruning would), except those in quiet. */
int zt_config_routes_check_keys(struct zt_config_routes_ctx *c, const struct ynode *m,
                                const char *path, const char *const *known,
                                const char *const *quiet)
{
    int rc = zt_config_routes_want(c, m, YAML_MAPPING_NODE, path);
    char sub[PATH_LEN];
    if (rc)
        return rc;
    if (m->n_pairs > MAX_FIELDS)
        return zt_config_routes_fail(c, m, path, "more than %d fields", MAX_FIELDS);
    if ((c->work += (unsigned)m->n_pairs + 1) > WORK_BUDGET)
        return zt_config_routes_fail(c, m, path, "document too complex (aliases?)");
    for (size_t i = 0; i < m->n_pairs; i++) {
        const struct ynode *k = m->pairs[i].key;
        bool ok = false;
        if (k->type != YAML_SCALAR_NODE)
            return zt_config_routes_fail(c, k, path, "mapping keys must be strings");
        zt_config_routes_key(sub, path, k->value);
        for (size_t j = 0; j < i; j++)
            if (m->pairs[j].key->type == YAML_SCALAR_NODE &&
                strcmp(m->pairs[j].key->value, k->value) == 0)
                return zt_config_routes_fail(c, k, sub, "duplicate key (first at line %lu)",
                                             line_of(m->pairs[j].key));
        for (size_t j = 0; known[j] && !ok; j++)
            ok = strcmp(known[j], k->value) == 0;
        for (size_t j = 0; quiet && quiet[j] && !ok; j++)
            ok = strcmp(quiet[j], k->value) == 0;
        if (!ok)
            zt_config_routes_warn(c, k, sub, "unknown field, ignored");
    }
    return 0;
}

/* Field key of m as a string: absent or null leaves *out NULL (an error
 * when required); empty strings are refused. */
int zt_config_routes_str(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                         const char *path, bool required, size_t max, char **out)
{
    const struct ynode *n = zt_config_routes_get(m, key);
    char sub[PATH_LEN];
    int rc;
    *out = NULL;
    zt_config_routes_key(sub, path, key);
    if (!n)
        return required ? zt_config_routes_fail(c, m, sub, "required") : 0;
    if ((rc = zt_config_routes_want(c, n, YAML_SCALAR_NODE, sub)))
        return rc;
    if (n->len == 0)
        return zt_config_routes_fail(c, n, sub, "must not be empty");
    if (n->len > max)
        return zt_config_routes_fail(c, n, sub, "longer than %zu bytes", max);
    if (strlen(n->value) != n->len)
        return zt_config_routes_fail(c, n, sub, "contains a NUL byte");
    *out = zt_xstrdup(n->value);
    return 0;
}

/* A reference's group: "" (the core group) is a value here, not absent. */
int zt_config_routes_group(struct zt_config_routes_ctx *c, const struct ynode *m, const char *path,
                           char **out)
{
    const struct ynode *n = zt_config_routes_get(m, "group");
    if (n && n->type == YAML_SCALAR_NODE && n->len == 0) {
        *out = zt_xstrdup("");
        return 0;
    }
    return zt_config_routes_str(c, m, "group", path, false, MAX_NAME, out);
}

bool zt_config_routes_core_group(const char *g)
{
    return !g || !*g || strcmp(g, "core") == 0;
}

/* Field key of m as a decimal integer in [min, max]; *present false if
 * absent. */
int zt_config_routes_uint(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                          const char *path, unsigned long min, unsigned long max, bool *present,
                          unsigned long *out)
{
    const struct ynode *n = zt_config_routes_get(m, key);
    char sub[PATH_LEN], *end;
    unsigned long v = 0;
    int rc;
    *present = false;
    *out = 0;
    zt_config_routes_key(sub, path, key);
    if (!n)
        return 0;
    if ((rc = zt_config_routes_want(c, n, YAML_SCALAR_NODE, sub)))
        return rc;
    if (n->len == 0 || n->len > 10 || n->value[0] < '0' || n->value[0] > '9')
        return zt_config_routes_fail(c, n, sub, "expected an integer, found \"%.40s\"", n->value);
    errno = 0;
    v = strtoul(n->value, &end, 10);
    if (*end || errno)
        return zt_config_routes_fail(c, n, sub, "expected an integer, found \"%.40s\"", n->value);
    if (v < min || v > max)
        return zt_config_routes_fail(c, n, sub, "%lu is out of range (%lu..%lu)", v, min, max);
    *present = true;
    *out = v;
    return 0;
}

/* Field key of m as a list of at most max items (NULL if absent). */
int zt_config_routes_list(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                          const char *path, size_t max, const struct ynode **out)
{
    const struct ynode *n = zt_config_routes_get(m, key);
    char sub[PATH_LEN];
    int rc;
    *out = NULL;
    zt_config_routes_key(sub, path, key);
    if (!n)
        return 0;
    if ((rc = zt_config_routes_want(c, n, YAML_SEQUENCE_NODE, sub)))
        return rc;
    if (n->n_items > max)
        return zt_config_routes_fail(c, n, sub, "more than %zu items", max);
    *out = n;
    return 0;
}

/* Field key of m as a mapping with the given fields (NULL if absent). */
int zt_config_routes_map(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                         const char *path, const char *const *known, const struct ynode **out,
                         char *sub)
{
    const struct ynode *n = zt_config_routes_get(m, key);
    *out = NULL;
    zt_config_routes_key(sub, path, key);
    if (!n)
        return 0;
    *out = n;
    return zt_config_routes_check_keys(c, n, sub, known, NULL);
}

bool zt_config_routes_one_of(const char *v, const char *const *set)
{
    for (size_t i = 0; set[i]; i++)
        if (strcmp(v, set[i]) == 0)
            return true;
    return false;
}

/* A Gateway API Duration: ^([0-9]{1,5}(h|m|s|ms)){1,4}$, into ms. */
int zt_config_routes_duration(struct zt_config_routes_ctx *c, const struct ynode *m,
                              const char *key, const char *path, uint32_t *ms)
{
    char *v = NULL, sub[PATH_LEN];
    const char *p;
    uint64_t total = 0;
    int parts = 0, rc = zt_config_routes_str(c, m, key, path, false, 64, &v);
    *ms = 0;
    if (rc || !v)
        return rc;
    zt_config_routes_key(sub, path, key);
    for (p = v; *p && rc == 0; parts++) {
        uint64_t n = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 6) {
            n = n * 10 + (uint64_t)(*p++ - '0');
            digits++;
        }
        if (digits == 0 || digits > 5 || parts >= 4) {
            rc = -1;
        } else if (p[0] == 'm' && p[1] == 's') {
            total += n;
            p += 2;
        } else if (*p == 'h' || *p == 'm' || *p == 's') {
            total += n * (*p == 'h' ? 3600000u : *p == 'm' ? 60000u : 1000u);
            p++;
        } else {
            rc = -1;
        }
    }
    if (rc)
        rc = zt_config_routes_fail(c, zt_config_routes_get(m, key), sub,
                                   "\"%s\" is not a duration (like 10s, 500ms, 1m30s)", v);
    else if (total > UINT32_MAX)
        rc = zt_config_routes_fail(c, zt_config_routes_get(m, key), sub, "\"%s\" is too long", v);
    else
        *ms = (uint32_t)total;
    free(v);
    return rc;
}

/* A path value as the Gateway API allows it: absolute, no fragment, no
 * dot segments, no doubled or encoded slashes. */
const char *zt_config_routes_bad_path(const char *v)
{
    size_t n = strlen(v);
    if (v[0] != '/')
        return "must start with \"/\"";
    if (strchr(v, '#'))
        return "must not contain \"#\"";
    if (strstr(v, "//") || strcasestr(v, "%2f"))
        return "must not contain \"//\" or \"%2f\"";
    if (strstr(v, "/./") || strstr(v, "/../") || (n >= 2 && strcmp(v + n - 2, "/.") == 0) ||
        (n >= 3 && strcmp(v + n - 3, "/..") == 0))
        return "must not contain \".\" or \"..\" segments";
    if (!zt_route_header_value_ok(v) || strchr(v, ' '))
        return "must not contain spaces or control characters";
    return NULL;
}

static int compile(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                   const char *pattern, struct zt_route_regex **out)
{
    char err[300];
    if ((c->work += 50) > WORK_BUDGET)
        return zt_config_routes_fail(c, n, path, "document too complex (aliases?)");
    if (zt_route_regex_new(pattern, out, err, sizeof(err)))
        return zt_config_routes_fail(c, n, path, "%s", err);
    return 0;
}

/* ---- matches ---- */

static int parse_strmatch(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                          bool header, struct zt_route_strmatch *s)
{
    static const char *const keys[] = {"name", "value", "type", NULL};
    char *type = NULL, sub[PATH_LEN];
    int rc = zt_config_routes_check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = zt_config_routes_str(c, n, "name", path, true, header ? MAX_NAME : 256, &s->name);
    if (!rc)
        rc = zt_config_routes_str(c, n, "type", path, false, 64, &type);
    if (!rc) {
        /* An empty value is allowed (a header present with no value). */
        const struct ynode *v = zt_config_routes_get(n, "value");
        zt_config_routes_key(sub, path, "value");
        if (!v)
            rc = zt_config_routes_fail(c, n, sub, "required");
        else if (!(rc = zt_config_routes_want(c, v, YAML_SCALAR_NODE, sub))) {
            if (v->len > MAX_VALUE || strlen(v->value) != v->len)
                rc = zt_config_routes_fail(c, v, sub, "longer than %d bytes or contains NUL",
                                           MAX_VALUE);
            else
                s->value = zt_xstrdup(v->value);
        }
    }
    if (!rc && header) {
        zt_config_routes_key(sub, path, "name");
        if (!zt_route_header_name_ok(s->name))
            rc = zt_config_routes_fail(c, zt_config_routes_get(n, "name"), sub,
                                       "\"%s\" is not a header name", s->name);
        for (char *p = s->name; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    }
    if (!rc) {
        zt_config_routes_key(sub, path, "type");
        if (!type || strcmp(type, "Exact") == 0) {
            s->kind = ZT_ROUTE_STR_EXACT;
        } else if (strcmp(type, "RegularExpression") == 0) {
            s->kind = ZT_ROUTE_STR_REGEX;
            char vsub[PATH_LEN];
            zt_config_routes_key(vsub, path, "value");
            rc = compile(c, zt_config_routes_get(n, "value"), vsub, s->value, &s->re);
        } else {
            rc = zt_config_routes_fail(c, zt_config_routes_get(n, "type"), sub,
                                       "\"%s\" is not Exact or RegularExpression", type);
        }
    }
    free(type);
    return rc;
}

/* headers or queryParams of a match; a second entry for a name already
 * listed is dropped, as the Gateway API says only the first counts. */
static int parse_strmatches(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                            const char *path, bool header, struct zt_route_strmatch **out,
                            size_t *n_out)
{
    const struct ynode *list;
    char sub[PATH_LEN];
    int rc = zt_config_routes_list(c, m, key, path, ZT_ROUTE_MAX_MATCH_FIELDS, &list);
    if (rc || !list)
        return rc;
    zt_config_routes_key(sub, path, key);
    *out = zt_xcalloc(list->n_items ? list->n_items : 1, sizeof(**out));
    for (size_t i = 0; i < list->n_items; i++) {
        char isub[PATH_LEN];
        struct zt_route_strmatch *s = &(*out)[*n_out];
        bool dup = false;
        zt_config_routes_idx(isub, sub, i);
        (*n_out)++; /* counted before parsing so cleanup frees a partial one */
        if ((rc = parse_strmatch(c, list->items[i], isub, header, s)))
            return rc;
        for (size_t j = 0; j + 1 < *n_out && !dup; j++)
            dup = header ? strcasecmp((*out)[j].name, s->name) == 0
                         : strcmp((*out)[j].name, s->name) == 0;
        if (dup) {
            free(s->name);
            free(s->value);
            zt_route_regex_free(s->re);
            memset(s, 0, sizeof(*s));
            (*n_out)--;
        }
    }
    return 0;
}

static int parse_http_match(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                            struct zt_route_match *m)
{
    static const char *const keys[] = {"path", "headers", "queryParams", "method", NULL};
    static const char *const path_keys[] = {"type", "value", NULL};
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH", NULL};
    const struct ynode *p;
    char sub[PATH_LEN], psub[PATH_LEN];
    char *type = NULL, *value = NULL;
    int rc = zt_config_routes_check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = zt_config_routes_map(c, n, "path", path, path_keys, &p, psub);
    if (!rc && p)
        rc = zt_config_routes_str(c, p, "type", psub, false, 64, &type);
    if (!rc && p)
        rc = zt_config_routes_str(c, p, "value", psub, false, ZT_ROUTE_MAX_PATH, &value);
    if (!rc) {
        const char *t = type ? type : "PathPrefix";
        const struct ynode *vn = p ? zt_config_routes_get(p, "value") : NULL;
        const char *why;
        zt_config_routes_key(sub, psub, "value");
        if (!value)
            value = zt_xstrdup("/");
        if (strcmp(t, "Exact") == 0 || strcmp(t, "PathPrefix") == 0) {
            if ((why = zt_config_routes_bad_path(value))) {
                rc = zt_config_routes_fail(c, vn ? vn : p, sub, "%s", why);
            } else if (t[0] == 'E') {
                m->path_kind = ZT_ROUTE_PATH_EXACT;
                m->path = value;
                value = NULL;
            } else {
                size_t l = strlen(value);
                while (l && value[l - 1] == '/')
                    value[--l] = '\0';
                m->path_kind = ZT_ROUTE_PATH_PREFIX;
                m->path = value;
                value = NULL;
            }
        } else if (strcmp(t, "RegularExpression") == 0) {
            m->path_kind = ZT_ROUTE_PATH_REGEX;
            m->path = value;
            value = NULL;
            rc = compile(c, vn ? vn : p, sub, m->path, &m->path_re);
        } else {
            zt_config_routes_key(sub, psub, "type");
            rc = zt_config_routes_fail(c, zt_config_routes_get(p, "type"), sub,
                                       "\"%s\" is not Exact, PathPrefix or RegularExpression", t);
        }
    }
    if (!rc)
        rc = parse_strmatches(c, n, "headers", path, true, &m->headers, &m->n_headers);
    if (!rc)
        rc = parse_strmatches(c, n, "queryParams", path, false, &m->query, &m->n_query);
    if (!rc)
        rc = zt_config_routes_str(c, n, "method", path, false, 16, &m->method);
    if (!rc && m->method && !zt_config_routes_one_of(m->method, methods)) {
        zt_config_routes_key(sub, path, "method");
        rc = zt_config_routes_fail(c, zt_config_routes_get(n, "method"), sub,
                                   "\"%s\" is not an HTTP method the API allows", m->method);
    }
    free(type);
    free(value);
    return rc;
}

/* A gRPC service or method name: letters, digits, '_' and (services) '.'. */
static bool grpc_name_ok(const char *s, bool service)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || (service && *s == '.')))
            return false;
    return true;
}

/* Appends s to buf as a regex matching it literally. */
static void re_quote(char *buf, size_t cap, const char *s)
{
    size_t at = strlen(buf);
    for (; *s && at + 3 < cap; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            buf[at++] = '\\';
        buf[at++] = *s;
    }
    buf[at] = '\0';
}

/* GRPCRoute method matches become path matches, as Istio converts them:
 * service and method Exact -> Exact "/svc/method"; service only -> prefix
 * "/svc/"; method only -> regex "/[^/]+/method"; RegularExpression parts
 * -> one regex over the path. */
static int parse_grpc_match(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                            struct zt_route_match *m)
{
    static const char *const keys[] = {"method", "headers", NULL};
    static const char *const mkeys[] = {"type", "service", "method", NULL};
    const struct ynode *mm;
    char msub[PATH_LEN], sub[PATH_LEN];
    char *type = NULL, *svc = NULL, *meth = NULL;
    int rc = zt_config_routes_check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = zt_config_routes_map(c, n, "method", path, mkeys, &mm, msub);
    if (!rc && mm) {
        bool regex;
        rc = zt_config_routes_str(c, mm, "type", msub, false, 64, &type);
        if (!rc)
            rc = zt_config_routes_str(c, mm, "service", msub, false, 1024, &svc);
        if (!rc)
            rc = zt_config_routes_str(c, mm, "method", msub, false, 1024, &meth);
        regex = type && strcmp(type, "RegularExpression") == 0;
        if (!rc && type && !regex && strcmp(type, "Exact") != 0) {
            zt_config_routes_key(sub, msub, "type");
            rc = zt_config_routes_fail(c, zt_config_routes_get(mm, "type"), sub,
                                       "\"%s\" is not Exact or RegularExpression", type);
        }
        if (!rc && !svc && !meth)
            rc = zt_config_routes_fail(c, mm, msub, "one of service and method is required");
        if (!rc && !regex && svc && !grpc_name_ok(svc, true)) {
            zt_config_routes_key(sub, msub, "service");
            rc = zt_config_routes_fail(c, zt_config_routes_get(mm, "service"), sub,
                                       "\"%s\" is not a gRPC service name", svc);
        }
        if (!rc && !regex && meth && !grpc_name_ok(meth, false)) {
            zt_config_routes_key(sub, msub, "method");
            rc = zt_config_routes_fail(c, zt_config_routes_get(mm, "method"), sub,
                                       "\"%s\" is not a gRPC method name", meth);
        }
        if (!rc && !regex && svc && meth) {
            size_t l = strlen(svc) + strlen(meth) + 3;
            m->path_kind = ZT_ROUTE_PATH_EXACT;
            m->path = zt_xmalloc(l);
            snprintf(m->path, l, "/%s/%s", svc, meth);
        } else if (!rc && !regex && svc) {
            size_t l = strlen(svc) + 2;
            m->path_kind = ZT_ROUTE_PATH_PREFIX;
            m->path = zt_xmalloc(l);
            snprintf(m->path, l, "/%s", svc);
        } else if (!rc) {
            char re[2 * 2048 + 32] = "/";
            if (!svc)
                strcat(re, "[^/]+");
            else if (regex)
                snprintf(re, sizeof(re), "/(?:%s)", svc);
            else
                re_quote(re, sizeof(re), svc);
            strcat(re, "/");
            if (!meth)
                strcat(re, "[^/]+");
            else if (regex)
                snprintf(re + strlen(re), sizeof(re) - strlen(re), "(?:%s)", meth);
            else
                re_quote(re, sizeof(re), meth);
            m->path_kind = ZT_ROUTE_PATH_REGEX;
            m->path = zt_xstrdup(re);
            rc = compile(c, mm, msub, re, &m->path_re);
        }
    }
    if (!rc)
        rc = parse_strmatches(c, n, "headers", path, true, &m->headers, &m->n_headers);
    free(type);
    free(svc);
    free(meth);
    return rc;
}

/* ---- rules ---- */

static int parse_rule(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                      struct zt_route_rule *r)
{
    static const char *const http_keys[] = {"name",     "matches", "filters", "backendRefs",
                                            "timeouts", "retry",   NULL};
    static const char *const grpc_keys[] = {"name", "matches", "filters", "backendRefs", NULL};
    static const char *const tkeys[] = {"request", "backendRequest", NULL};
    const struct ynode *list, *tn;
    char sub[PATH_LEN], tsub[PATH_LEN];
    int rc = zt_config_routes_check_keys(c, n, path,
                                         c->kind == ZT_ROUTE_GRPC ? grpc_keys : http_keys, NULL);
    if (!rc)
        rc = zt_config_routes_str(c, n, "name", path, false, MAX_NAME, &r->name);
    if (!rc)
        rc = zt_config_routes_list(c, n, "matches", path, MAX_MATCHES, &list);
    if (!rc && list && list->n_items) {
        zt_config_routes_key(sub, path, "matches");
        r->matches = zt_xcalloc(list->n_items, sizeof(*r->matches));
        for (size_t i = 0; i < list->n_items && !rc; i++) {
            char isub[PATH_LEN];
            zt_config_routes_idx(isub, sub, i);
            r->n_matches++;
            rc = c->kind == ZT_ROUTE_GRPC
                     ? parse_grpc_match(c, list->items[i], isub, &r->matches[i])
                     : parse_http_match(c, list->items[i], isub, &r->matches[i]);
        }
    }
    if (!rc)
        rc = zt_config_routes_filters(c, n, path, r);
    if (!rc && r->filters.has_rewrite && r->filters.rewrite.path.kind == ZT_ROUTE_PATH_MOD_PREFIX) {
        for (size_t i = 0; i < r->n_matches && !rc; i++) {
            if (r->matches[i].path_kind != ZT_ROUTE_PATH_PREFIX) {
                zt_config_routes_key(sub, path, "filters");
                rc = zt_config_routes_fail(
                    c, n, sub, "ReplacePrefixMatch needs PathPrefix matches (matches[%zu] is not)",
                    i);
            }
        }
    }
    if (!rc && r->filters.has_redirect &&
        r->filters.redirect.path.kind == ZT_ROUTE_PATH_MOD_PREFIX) {
        for (size_t i = 0; i < r->n_matches && !rc; i++) {
            if (r->matches[i].path_kind != ZT_ROUTE_PATH_PREFIX) {
                zt_config_routes_key(sub, path, "filters");
                rc = zt_config_routes_fail(
                    c, n, sub, "ReplacePrefixMatch needs PathPrefix matches (matches[%zu] is not)",
                    i);
            }
        }
    }
    if (!rc)
        rc = zt_config_routes_list(c, n, "backendRefs", path, MAX_BACKENDS, &list);
    if (!rc && list && list->n_items) {
        zt_config_routes_key(sub, path, "backendRefs");
        r->backends = zt_xcalloc(list->n_items, sizeof(*r->backends));
        for (size_t i = 0; i < list->n_items && !rc; i++) {
            char isub[PATH_LEN];
            zt_config_routes_idx(isub, sub, i);
            r->n_backends++;
            rc = zt_config_routes_backend(c, list->items[i], isub, false, &r->backends[i]);
        }
    }
    if (!rc)
        rc = zt_config_routes_map(c, n, "timeouts", path, tkeys, &tn, tsub);
    if (!rc && tn) {
        rc = zt_config_routes_duration(c, tn, "request", tsub, &r->request_timeout_ms);
        if (!rc)
            rc = zt_config_routes_duration(c, tn, "backendRequest", tsub, &r->backend_timeout_ms);
        if (!rc && r->request_timeout_ms && r->backend_timeout_ms > r->request_timeout_ms) {
            zt_config_routes_key(sub, tsub, "backendRequest");
            rc = zt_config_routes_fail(c, zt_config_routes_get(tn, "backendRequest"), sub,
                                       "longer than timeouts.request");
        }
    }
    if (!rc && (tn = zt_config_routes_get(n, "retry"))) {
        zt_config_routes_key(sub, path, "retry");
        r->has_retry = true;
        rc = zt_config_routes_retry(c, tn, sub, &r->retry);
    }
    return rc;
}

/* ---- the object ---- */

static void parse_created(struct zt_config_routes_ctx *c, const struct ynode *md,
                          struct zt_route_def *d)
{
    const struct ynode *n = zt_config_routes_get(md, "creationTimestamp");
    struct tm tm = {0};
    char *end;
    if (!n)
        return;
    if (n->type == YAML_SCALAR_NODE && (end = strptime(n->value, "%Y-%m-%dT%H:%M:%S", &tm))) {
        if (*end == '.')
            end += 1 + strspn(end + 1, "0123456789");
        if (strcmp(end, "Z") == 0) {
            d->created = (int64_t)timegm(&tm);
            d->has_created = true;
            return;
        }
    }
    zt_config_routes_warn(c, n, "metadata.creationTimestamp",
                          "not an RFC 3339 UTC time, ignored (load order used)");
}

static int parse_parents(struct zt_config_routes_ctx *c, const struct ynode *spec,
                         struct zt_route_def *d)
{
    static const char *const keys[] = {"group",       "kind", "namespace", "name",
                                       "sectionName", "port", NULL};
    const struct ynode *list;
    int rc = zt_config_routes_list(c, spec, "parentRefs", "spec", MAX_PARENTS, &list);
    if (rc)
        return rc;
    if (!list || list->n_items == 0) {
        zt_config_routes_warn(c, spec, "spec.parentRefs",
                              "no parents: the route attaches to nothing");
        return 0;
    }
    d->parents = zt_xcalloc(list->n_items, sizeof(*d->parents));
    for (size_t i = 0; i < list->n_items; i++) {
        const struct ynode *it = list->items[i];
        struct zt_route_parent *p = &d->parents[d->n_parents];
        char sub[PATH_LEN], *group = NULL, *kind = NULL, *section = NULL;
        unsigned long v = 0;
        bool has, service, gateway;
        zt_config_routes_idx(sub, "spec.parentRefs", i);
        rc = zt_config_routes_check_keys(c, it, sub, keys, NULL);
        if (!rc)
            rc = zt_config_routes_group(c, it, sub, &group);
        if (!rc)
            rc = zt_config_routes_str(c, it, "kind", sub, false, 64, &kind);
        if (!rc)
            rc = zt_config_routes_str(c, it, "sectionName", sub, false, MAX_NAME, &section);
        if (!rc)
            rc = zt_config_routes_uint(c, it, "port", sub, 1, 65535, &has, &v);
        if (!rc) {
            d->n_parents++;
            p->port = (uint16_t)v;
            rc = zt_config_routes_str(c, it, "name", sub, true, MAX_NAME, &p->name);
        }
        if (!rc)
            rc = zt_config_routes_str(c, it, "namespace", sub, false, 63, &p->ns);
        if (!rc && !p->ns)
            p->ns = zt_xstrdup(d->ns);
        /* The API's defaults: group gateway.networking.k8s.io, kind Gateway. */
        service = kind && strcmp(kind, "Service") == 0 && zt_config_routes_core_group(group);
        gateway = (!kind || strcmp(kind, "Gateway") == 0) &&
                  (!group || strcmp(group, "gateway.networking.k8s.io") == 0);
        if (!rc && service && section) {
            p->section = section; /* a port name */
            section = NULL;
        } else if (!rc && !service && !gateway) {
            zt_config_routes_warn(c, it, sub, "parent kind %s%s%s is not supported; parent ignored",
                                  group ? group : "", group ? "/" : "", kind ? kind : "Gateway");
        }
        if (!rc && !service && !gateway) {
            free(p->ns);
            free(p->name);
            memset(p, 0, sizeof(*p));
            d->n_parents--;
        } else if (!rc) {
            p->kind = service ? ZT_ROUTE_PARENT_SERVICE : ZT_ROUTE_PARENT_GATEWAY;
            if (gateway)
                p->port = 0; /* the waypoint's one listener */
        }
        free(group);
        free(kind);
        free(section);
        if (rc)
            return rc;
    }
    return 0;
}

int zt_config_routes_object(struct zt_config_routes_ctx *c, const struct ynode *doc,
                            const char *kind, char **name, char **ns)
{
    static const char *const top[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    static const char *const quiet_top[] = {"status", NULL};
    static const char *const md_keys[] = {"name", "namespace", "creationTimestamp", NULL};
    static const char *const md_quiet[] = {"labels",
                                           "annotations",
                                           "uid",
                                           "resourceVersion",
                                           "generation",
                                           "managedFields",
                                           "finalizers",
                                           "ownerReferences",
                                           "deletionTimestamp",
                                           "generateName",
                                           NULL};
    const struct ynode *md = zt_config_routes_get(doc, "metadata");
    int rc = zt_config_routes_check_keys(c, doc, "", top, quiet_top);
    if (rc)
        return rc;
    if (!md)
        return zt_config_routes_fail(c, doc, "metadata", "required");
    if ((rc = zt_config_routes_check_keys(c, md, "metadata", md_keys, md_quiet)) ||
        (rc = zt_config_routes_str(c, md, "name", "metadata", true, MAX_NAME, name)) ||
        (rc = zt_config_routes_str(c, md, "namespace", "metadata", false, 63, ns)))
        return rc;
    if (!*ns)
        *ns = zt_xstrdup("default");
    snprintf(c->obj, sizeof(c->obj), "%s %s/%s", kind, *ns, *name);
    return 0;
}

static int parse_object(struct zt_config_routes_ctx *c, const struct ynode *doc,
                        struct zt_route_def *d)
{
    static const char *const spec_keys[] = {"parentRefs", "hostnames", "rules", NULL};
    const struct ynode *md = zt_config_routes_get(doc, "metadata"), *spec, *rules, *hosts;
    int rc = zt_config_routes_object(c, doc, zt_route_kind_str(c->kind), &d->name, &d->ns);
    if (rc)
        return rc;
    c->ns = d->ns;
    parse_created(c, md, d);
    if (!(spec = zt_config_routes_get(doc, "spec")))
        return zt_config_routes_fail(c, doc, "spec", "required");
    if ((rc = zt_config_routes_check_keys(c, spec, "spec", spec_keys, NULL)) ||
        (rc = parse_parents(c, spec, d)) ||
        (rc = zt_config_routes_list(c, spec, "hostnames", "spec", MAX_HOSTNAMES, &hosts)) ||
        (rc = zt_config_routes_list(c, spec, "rules", "spec", MAX_RULES, &rules)))
        return rc;
    /* Hostnames are kept for /config_dump only (not matched). */
    d->hostnames = zt_xcalloc(hosts && hosts->n_items ? hosts->n_items : 1, sizeof(char *));
    for (size_t i = 0; hosts && i < hosts->n_items; i++)
        if (hosts->items[i]->type == YAML_SCALAR_NODE && hosts->items[i]->len <= 253)
            d->hostnames[d->n_hostnames++] = zt_xstrdup(hosts->items[i]->value);
    if (!rules || rules->n_items == 0) {
        /* The API's default: one rule with no matches and no backends. */
        d->rules = zt_xcalloc(1, sizeof(*d->rules));
        d->n_rules = 1;
        return 0;
    }
    d->rules = zt_xcalloc(rules->n_items, sizeof(*d->rules));
    for (size_t i = 0; i < rules->n_items && !rc; i++) {
        char sub[PATH_LEN];
        zt_config_routes_idx(sub, "spec.rules", i);
        d->n_rules++;
        rc = parse_rule(c, rules->items[i], sub, &d->rules[i]);
    }
    return rc;
}

int zt_config_routes_kind(struct zt_config_routes_ctx *c, const struct ynode *doc, const char *kind,
                          const char *const *versions, bool *is)
{
    const struct ynode *k, *api;
    *is = false;
    if (!doc || doc->type != YAML_MAPPING_NODE)
        return 0;
    k = zt_config_routes_get(doc, "kind");
    api = zt_config_routes_get(doc, "apiVersion");
    if (!k || k->type != YAML_SCALAR_NODE || strcmp(k->value, kind) != 0)
        return 0;
    *is = true;
    snprintf(c->obj, sizeof(c->obj), "%s", kind);
    if (!api || api->type != YAML_SCALAR_NODE)
        return zt_config_routes_fail(c, doc, "apiVersion", "required");
    if (!zt_config_routes_one_of(api->value, versions))
        return zt_config_routes_fail(
            c, api, "apiVersion", "\"%.80s\" is not a supported version of %s", api->value, kind);
    return 0;
}

int zt_config_routes_parse_doc(const char *file, const struct ynode *doc,
                               struct zt_route_errors *errs, struct zt_route_def *out)
{
    static const char *const http[] = {"gateway.networking.k8s.io/v1",
                                       "gateway.networking.k8s.io/v1beta1", NULL};
    static const char *const grpc[] = {"gateway.networking.k8s.io/v1",
                                       "gateway.networking.k8s.io/v1alpha2", NULL};
    struct zt_config_routes_ctx c = {.file = file, .errs = errs};
    bool is;
    int rc;

    memset(out, 0, sizeof(*out));
    c.kind = ZT_ROUTE_HTTP;
    rc = zt_config_routes_kind(&c, doc, "HTTPRoute", http, &is);
    if (!rc && !is) {
        c.kind = ZT_ROUTE_GRPC;
        rc = zt_config_routes_kind(&c, doc, "GRPCRoute", grpc, &is);
    }
    if (rc || !is)
        return rc;
    out->kind = c.kind;
    rc = parse_object(&c, doc, out);
    if (rc)
        zt_route_def_cleanup(out);
    return rc;
}

int zt_config_routes_add_doc(struct zt_route_builder *b, const char *file, const struct ynode *doc,
                             struct zt_route_errors *errs)
{
    struct zt_route_def d;
    char err[256];
    int rc = zt_config_routes_parse_doc(file, doc, errs, &d);

    if (rc || !d.name)
        return rc;
    struct zt_config_routes_ctx c = {.file = file, .errs = errs, .kind = d.kind};
    snprintf(c.obj, sizeof(c.obj), "%s %s/%s", zt_route_kind_str(d.kind), d.ns, d.name);
    /* The builder takes d in every case. */
    if ((rc = zt_route_builder_add(b, &d, err, sizeof(err))))
        return zt_config_routes_fail(&c, doc, "metadata.name", "%s", err);
    return 0;
}

/* Anchors are per document: forget the last document's before the next. */
static void forget_anchors(struct zt_yreader *r)
{
    for (size_t i = 0; i < r->n_anchors; i++)
        free(r->anchors[i].name);
    r->n_anchors = 0;
}

/* fn for each object of one document root (a kind: List's items). */
static void each_object(const char *file, const struct ynode *root, struct zt_route_errors *errs,
                        zt_config_routes_doc_fn *fn, void *ud)
{
    const struct ynode *kind, *items;
    if (root->type != YAML_MAPPING_NODE)
        return;
    kind = zt_config_routes_get(root, "kind");
    items = zt_config_routes_get(root, "items");
    /* kubectl's "kind: List" wraps objects in items. */
    if (kind && kind->type == YAML_SCALAR_NODE && strcmp(kind->value, "List") == 0 && items &&
        items->type == YAML_SEQUENCE_NODE) {
        for (size_t i = 0; i < items->n_items; i++)
            fn(ud, file, items->items[i], errs);
        return;
    }
    fn(ud, file, root, errs);
}

int zt_config_routes_each(const char *file, const char *yaml, size_t len,
                          struct zt_route_errors *errs, zt_config_routes_doc_fn *fn, void *ud)
{
    yaml_parser_t parser;
    char err[512] = "";
    struct zt_yreader y = {.file = file, .parser = &parser, .err = err, .errlen = sizeof(err)};
    yaml_event_t ev;
    int rc;

    if (len > ZT_CONFIG_LOCAL_MAX_BYTES) {
        zt_route_errors_add(errs, false, "%s: larger than %u bytes", file,
                            ZT_CONFIG_LOCAL_MAX_BYTES);
        return ZT_E_TOO_BIG;
    }
    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    rc = zt_yreader_next(&y, &ev); /* STREAM-START */
    while (!rc) {
        struct ynode *root;
        yaml_event_type_t t;
        yaml_event_delete(&ev);
        if ((rc = zt_yreader_next(&y, &ev)))
            break;
        t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        yaml_event_delete(&ev); /* DOCUMENT-START */
        if ((rc = zt_yreader_next(&y, &ev)))
            break;
        rc = zt_yreader_node(&y, &ev, &root);
        yaml_event_delete(&ev);
        if (rc)
            break;
        each_object(file, root, errs, fn, ud);
        forget_anchors(&y);
        zt_yreader_reset(&y);
        rc = zt_yreader_next(&y, &ev); /* DOCUMENT-END */
    }
    if (rc)
        zt_route_errors_add(errs, false, "%s", err);
    zt_yreader_cleanup(&y);
    yaml_parser_delete(&parser);
    return rc;
}

static void add_one(void *ud, const char *file, const struct ynode *doc,
                    struct zt_route_errors *errs)
{
    zt_config_routes_add_doc(ud, file, doc, errs);
}

int zt_config_routes_load_string(struct zt_route_builder *b, const char *file, const char *yaml,
                                 size_t len, struct zt_route_errors *errs)
{
    return zt_config_routes_each(file, yaml, len, errs, add_one, b);
}

int zt_config_routes_load_file(struct zt_route_builder *b, const char *path,
                               struct zt_route_errors *errs)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;

    if (!f) {
        rc = -errno;
        zt_route_errors_add(errs, false, "%s: %s", path, strerror(-rc));
        return rc;
    }
    for (;;) {
        size_t got;
        if (len == cap) {
            if (cap > ZT_CONFIG_LOCAL_MAX_BYTES) {
                zt_route_errors_add(errs, false, "%s: larger than %u bytes", path,
                                    ZT_CONFIG_LOCAL_MAX_BYTES);
                rc = ZT_E_TOO_BIG;
                break;
            }
            cap = cap ? 2 * cap : 65536;
            buf = zt_xrealloc(buf, cap);
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                rc = -EIO;
                zt_route_errors_add(errs, false, "%s: read error", path);
            }
            break;
        }
    }
    fclose(f);
    if (!rc)
        rc = zt_config_routes_load_string(b, path, buf ? buf : "", len, errs);
    free(buf);
    return rc;
}
