/* HTTPRoute and GRPCRoute YAML into route definitions. See routes.h.
 *
 * Each document is built into a node tree (yaml_tree.c) and walked along
 * the fields the Gateway API defines; only known fields are descended into
 * and every list is checked against the CRD's maxItems before it is walked,
 * so the work per document is bounded whatever its aliases. The first
 * problem in an object rejects it; the other objects still load, because a
 * typo in one route must not take down the routes of every other service. */
#include "config/routes.h"
#include "config/local.h"
#include "config/local_int.h"

#include "base/alloc.h"
#include "base/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define PATH_LEN 256
#define MAX_RULES 16
#define MAX_MATCHES 64
#define MAX_FILTERS 16
#define MAX_BACKENDS 16
#define MAX_PARENTS 32
#define MAX_HOSTNAMES 16
#define MAX_MODS 16
#define MAX_NAME 253
#define MAX_VALUE 4096
#define MAX_WEIGHT 1000000
#define MAX_FIELDS 64 /* keys in one mapping */
/* Work units one document may cost (a key or list item is one, a regex
 * compile 50): aliases can repeat a large subtree many times. */
#define WORK_BUDGET 200000u

struct pc {
    const char *file;
    struct zt_route_errors *errs;
    char obj[320]; /* "HTTPRoute ns/name" */
    enum zt_route_kind kind;
    const char *ns; /* the route's namespace, the default of references */
    unsigned work;
};

static unsigned long line_of(const struct ynode *n)
{
    return n ? (unsigned long)n->line + 1 : 1ul;
}

__attribute__((format(printf, 5, 0))) static void diag(struct pc *c, bool warning,
                                                       const struct ynode *n, const char *path,
                                                       const char *fmt, va_list ap)
{
    char why[512];
    vsnprintf(why, sizeof(why), fmt, ap);
    zt_route_errors_add(c->errs, warning, "%s:%lu: %s: %s: %s", c->file, line_of(n), c->obj,
                        *path ? path : "(document)", why);
}

__attribute__((format(printf, 4, 5))) static int fail(struct pc *c, const struct ynode *n,
                                                      const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag(c, false, n, path, fmt, ap);
    va_end(ap);
    return ZT_E_CONFIG;
}

__attribute__((format(printf, 4, 5))) static void warn(struct pc *c, const struct ynode *n,
                                                       const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag(c, true, n, path, fmt, ap);
    va_end(ap);
}

static void pkey(char *dst, const char *parent, const char *key)
{
    snprintf(dst, PATH_LEN, "%s%s%s", parent, *parent ? "." : "", key);
}

static void pidx(char *dst, const char *parent, size_t i)
{
    snprintf(dst, PATH_LEN, "%s[%zu]", parent, i);
}

/* A plain "~", "null" or empty scalar stands for "not set". */
static bool is_null(const struct ynode *n)
{
    if (n->type != YAML_SCALAR_NODE || !n->plain)
        return false;
    return n->len == 0 || strcmp(n->value, "~") == 0 || strcasecmp(n->value, "null") == 0;
}

static const struct ynode *get(const struct ynode *m, const char *key)
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

static int want(struct pc *c, const struct ynode *n, yaml_node_type_t t, const char *path)
{
    if (n->type != t)
        return fail(c, n, path, "expected %s, found %s", type_name(t), type_name(n->type));
    return 0;
}

/* Checks m is a mapping with string keys, each once; keys outside known
 * are warnings (the Gateway API grows fields; an older reader ignores them
 * as the API server's pruning would), except those in quiet. */
static int check_keys(struct pc *c, const struct ynode *m, const char *path,
                      const char *const *known, const char *const *quiet)
{
    int rc = want(c, m, YAML_MAPPING_NODE, path);
    char sub[PATH_LEN];
    if (rc)
        return rc;
    if (m->n_pairs > MAX_FIELDS)
        return fail(c, m, path, "more than %d fields", MAX_FIELDS);
    if ((c->work += (unsigned)m->n_pairs + 1) > WORK_BUDGET)
        return fail(c, m, path, "document too complex (aliases?)");
    for (size_t i = 0; i < m->n_pairs; i++) {
        const struct ynode *k = m->pairs[i].key;
        bool ok = false;
        if (k->type != YAML_SCALAR_NODE)
            return fail(c, k, path, "mapping keys must be strings");
        pkey(sub, path, k->value);
        for (size_t j = 0; j < i; j++)
            if (m->pairs[j].key->type == YAML_SCALAR_NODE &&
                strcmp(m->pairs[j].key->value, k->value) == 0)
                return fail(c, k, sub, "duplicate key (first at line %lu)",
                            line_of(m->pairs[j].key));
        for (size_t j = 0; known[j] && !ok; j++)
            ok = strcmp(known[j], k->value) == 0;
        for (size_t j = 0; quiet && quiet[j] && !ok; j++)
            ok = strcmp(quiet[j], k->value) == 0;
        if (!ok)
            warn(c, k, sub, "unknown field, ignored");
    }
    return 0;
}

/* Field key of m as a string: absent or null leaves *out NULL (an error
 * when required); empty strings are refused. */
static int get_str(struct pc *c, const struct ynode *m, const char *key, const char *path,
                   bool required, size_t max, char **out)
{
    const struct ynode *n = get(m, key);
    char sub[PATH_LEN];
    int rc;
    *out = NULL;
    pkey(sub, path, key);
    if (!n)
        return required ? fail(c, m, sub, "required") : 0;
    if ((rc = want(c, n, YAML_SCALAR_NODE, sub)))
        return rc;
    if (n->len == 0)
        return fail(c, n, sub, "must not be empty");
    if (n->len > max)
        return fail(c, n, sub, "longer than %zu bytes", max);
    if (strlen(n->value) != n->len)
        return fail(c, n, sub, "contains a NUL byte");
    *out = zt_xstrdup(n->value);
    return 0;
}

/* A reference's group: "" (the core group) is a value here, not absent. */
static int get_group(struct pc *c, const struct ynode *m, const char *path, char **out)
{
    const struct ynode *n = get(m, "group");
    if (n && n->type == YAML_SCALAR_NODE && n->len == 0) {
        *out = zt_xstrdup("");
        return 0;
    }
    return get_str(c, m, "group", path, false, MAX_NAME, out);
}

static bool core_group(const char *g)
{
    return !g || !*g || strcmp(g, "core") == 0;
}

/* Field key of m as a decimal integer in [min, max]; *present false if
 * absent. */
static int get_uint(struct pc *c, const struct ynode *m, const char *key, const char *path,
                    unsigned long min, unsigned long max, bool *present, unsigned long *out)
{
    const struct ynode *n = get(m, key);
    char sub[PATH_LEN], *end;
    unsigned long v = 0;
    int rc;
    *present = false;
    *out = 0;
    pkey(sub, path, key);
    if (!n)
        return 0;
    if ((rc = want(c, n, YAML_SCALAR_NODE, sub)))
        return rc;
    if (n->len == 0 || n->len > 10 || n->value[0] < '0' || n->value[0] > '9')
        return fail(c, n, sub, "expected an integer, found \"%.40s\"", n->value);
    errno = 0;
    v = strtoul(n->value, &end, 10);
    if (*end || errno)
        return fail(c, n, sub, "expected an integer, found \"%.40s\"", n->value);
    if (v < min || v > max)
        return fail(c, n, sub, "%lu is out of range (%lu..%lu)", v, min, max);
    *present = true;
    *out = v;
    return 0;
}

/* Field key of m as a list of at most max items (NULL if absent). */
static int get_list(struct pc *c, const struct ynode *m, const char *key, const char *path,
                    size_t max, const struct ynode **out)
{
    const struct ynode *n = get(m, key);
    char sub[PATH_LEN];
    int rc;
    *out = NULL;
    pkey(sub, path, key);
    if (!n)
        return 0;
    if ((rc = want(c, n, YAML_SEQUENCE_NODE, sub)))
        return rc;
    if (n->n_items > max)
        return fail(c, n, sub, "more than %zu items", max);
    *out = n;
    return 0;
}

/* Field key of m as a mapping with the given fields (NULL if absent). */
static int get_map(struct pc *c, const struct ynode *m, const char *key, const char *path,
                   const char *const *known, const struct ynode **out, char *sub)
{
    const struct ynode *n = get(m, key);
    *out = NULL;
    pkey(sub, path, key);
    if (!n)
        return 0;
    *out = n;
    return check_keys(c, n, sub, known, NULL);
}

static bool one_of(const char *v, const char *const *set)
{
    for (size_t i = 0; set[i]; i++)
        if (strcmp(v, set[i]) == 0)
            return true;
    return false;
}

/* A Gateway API Duration: ^([0-9]{1,5}(h|m|s|ms)){1,4}$, into ms. */
static int get_duration(struct pc *c, const struct ynode *m, const char *key, const char *path,
                        uint32_t *ms)
{
    char *v = NULL, sub[PATH_LEN];
    const char *p;
    uint64_t total = 0;
    int parts = 0, rc = get_str(c, m, key, path, false, 64, &v);
    *ms = 0;
    if (rc || !v)
        return rc;
    pkey(sub, path, key);
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
        rc = fail(c, get(m, key), sub, "\"%s\" is not a duration (like 10s, 500ms, 1m30s)", v);
    else if (total > UINT32_MAX)
        rc = fail(c, get(m, key), sub, "\"%s\" is too long", v);
    else
        *ms = (uint32_t)total;
    free(v);
    return rc;
}

/* A path value as the Gateway API allows it: absolute, no fragment, no
 * dot segments, no doubled or encoded slashes. */
static const char *bad_path(const char *v)
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

static int compile(struct pc *c, const struct ynode *n, const char *path, const char *pattern,
                   struct zt_route_regex **out)
{
    char err[300];
    if ((c->work += 50) > WORK_BUDGET)
        return fail(c, n, path, "document too complex (aliases?)");
    if (zt_route_regex_new(pattern, out, err, sizeof(err)))
        return fail(c, n, path, "%s", err);
    return 0;
}

/* ---- matches ---- */

static int parse_strmatch(struct pc *c, const struct ynode *n, const char *path, bool header,
                          struct zt_route_strmatch *s)
{
    static const char *const keys[] = {"name", "value", "type", NULL};
    char *type = NULL, sub[PATH_LEN];
    int rc = check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = get_str(c, n, "name", path, true, header ? MAX_NAME : 256, &s->name);
    if (!rc)
        rc = get_str(c, n, "type", path, false, 64, &type);
    if (!rc) {
        /* An empty value is allowed (a header present with no value). */
        const struct ynode *v = get(n, "value");
        pkey(sub, path, "value");
        if (!v)
            rc = fail(c, n, sub, "required");
        else if (!(rc = want(c, v, YAML_SCALAR_NODE, sub))) {
            if (v->len > MAX_VALUE || strlen(v->value) != v->len)
                rc = fail(c, v, sub, "longer than %d bytes or contains NUL", MAX_VALUE);
            else
                s->value = zt_xstrdup(v->value);
        }
    }
    if (!rc && header) {
        pkey(sub, path, "name");
        if (!zt_route_header_name_ok(s->name))
            rc = fail(c, get(n, "name"), sub, "\"%s\" is not a header name", s->name);
        for (char *p = s->name; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    }
    if (!rc) {
        pkey(sub, path, "type");
        if (!type || strcmp(type, "Exact") == 0) {
            s->kind = ZT_ROUTE_STR_EXACT;
        } else if (strcmp(type, "RegularExpression") == 0) {
            s->kind = ZT_ROUTE_STR_REGEX;
            char vsub[PATH_LEN];
            pkey(vsub, path, "value");
            rc = compile(c, get(n, "value"), vsub, s->value, &s->re);
        } else {
            rc = fail(c, get(n, "type"), sub, "\"%s\" is not Exact or RegularExpression", type);
        }
    }
    free(type);
    return rc;
}

/* headers or queryParams of a match; a second entry for a name already
 * listed is dropped, as the Gateway API says only the first counts. */
static int parse_strmatches(struct pc *c, const struct ynode *m, const char *key, const char *path,
                            bool header, struct zt_route_strmatch **out, size_t *n_out)
{
    const struct ynode *list;
    char sub[PATH_LEN];
    int rc = get_list(c, m, key, path, ZT_ROUTE_MAX_MATCH_FIELDS, &list);
    if (rc || !list)
        return rc;
    pkey(sub, path, key);
    *out = zt_xcalloc(list->n_items ? list->n_items : 1, sizeof(**out));
    for (size_t i = 0; i < list->n_items; i++) {
        char isub[PATH_LEN];
        struct zt_route_strmatch *s = &(*out)[*n_out];
        bool dup = false;
        pidx(isub, sub, i);
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

static int parse_http_match(struct pc *c, const struct ynode *n, const char *path,
                            struct zt_route_match *m)
{
    static const char *const keys[] = {"path", "headers", "queryParams", "method", NULL};
    static const char *const path_keys[] = {"type", "value", NULL};
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH", NULL};
    const struct ynode *p;
    char sub[PATH_LEN], psub[PATH_LEN];
    char *type = NULL, *value = NULL;
    int rc = check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = get_map(c, n, "path", path, path_keys, &p, psub);
    if (!rc && p)
        rc = get_str(c, p, "type", psub, false, 64, &type);
    if (!rc && p)
        rc = get_str(c, p, "value", psub, false, ZT_ROUTE_MAX_PATH, &value);
    if (!rc) {
        const char *t = type ? type : "PathPrefix";
        const struct ynode *vn = p ? get(p, "value") : NULL;
        const char *why;
        pkey(sub, psub, "value");
        if (!value)
            value = zt_xstrdup("/");
        if (strcmp(t, "Exact") == 0 || strcmp(t, "PathPrefix") == 0) {
            if ((why = bad_path(value))) {
                rc = fail(c, vn ? vn : p, sub, "%s", why);
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
            pkey(sub, psub, "type");
            rc = fail(c, get(p, "type"), sub,
                      "\"%s\" is not Exact, PathPrefix or RegularExpression", t);
        }
    }
    if (!rc)
        rc = parse_strmatches(c, n, "headers", path, true, &m->headers, &m->n_headers);
    if (!rc)
        rc = parse_strmatches(c, n, "queryParams", path, false, &m->query, &m->n_query);
    if (!rc)
        rc = get_str(c, n, "method", path, false, 16, &m->method);
    if (!rc && m->method && !one_of(m->method, methods)) {
        pkey(sub, path, "method");
        rc = fail(c, get(n, "method"), sub, "\"%s\" is not an HTTP method the API allows",
                  m->method);
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
static int parse_grpc_match(struct pc *c, const struct ynode *n, const char *path,
                            struct zt_route_match *m)
{
    static const char *const keys[] = {"method", "headers", NULL};
    static const char *const mkeys[] = {"type", "service", "method", NULL};
    const struct ynode *mm;
    char msub[PATH_LEN], sub[PATH_LEN];
    char *type = NULL, *svc = NULL, *meth = NULL;
    int rc = check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = get_map(c, n, "method", path, mkeys, &mm, msub);
    if (!rc && mm) {
        bool regex;
        rc = get_str(c, mm, "type", msub, false, 64, &type);
        if (!rc)
            rc = get_str(c, mm, "service", msub, false, 1024, &svc);
        if (!rc)
            rc = get_str(c, mm, "method", msub, false, 1024, &meth);
        regex = type && strcmp(type, "RegularExpression") == 0;
        if (!rc && type && !regex && strcmp(type, "Exact") != 0) {
            pkey(sub, msub, "type");
            rc = fail(c, get(mm, "type"), sub, "\"%s\" is not Exact or RegularExpression", type);
        }
        if (!rc && !svc && !meth)
            rc = fail(c, mm, msub, "one of service and method is required");
        if (!rc && !regex && svc && !grpc_name_ok(svc, true)) {
            pkey(sub, msub, "service");
            rc = fail(c, get(mm, "service"), sub, "\"%s\" is not a gRPC service name", svc);
        }
        if (!rc && !regex && meth && !grpc_name_ok(meth, false)) {
            pkey(sub, msub, "method");
            rc = fail(c, get(mm, "method"), sub, "\"%s\" is not a gRPC method name", meth);
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

/* ---- filters ---- */

static int parse_fields(struct pc *c, const struct ynode *m, const char *key, const char *path,
                        struct zt_http_field **out, size_t *n_out)
{
    static const char *const keys[] = {"name", "value", NULL};
    const struct ynode *list;
    char sub[PATH_LEN];
    int rc = get_list(c, m, key, path, MAX_MODS, &list);
    if (rc || !list)
        return rc;
    pkey(sub, path, key);
    *out = zt_xcalloc(list->n_items ? list->n_items : 1, sizeof(**out));
    for (size_t i = 0; i < list->n_items; i++) {
        char isub[PATH_LEN], fsub[PATH_LEN];
        const struct ynode *it = list->items[i], *v;
        struct zt_http_field *f = &(*out)[(*n_out)++];
        pidx(isub, sub, i);
        if ((rc = check_keys(c, it, isub, keys, NULL)) ||
            (rc = get_str(c, it, "name", isub, true, MAX_NAME, &f->name)))
            return rc;
        pkey(fsub, isub, "name");
        if (!zt_route_header_name_ok(f->name))
            return fail(c, get(it, "name"), fsub, "\"%s\" is not a header name", f->name);
        for (char *p = f->name; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        pkey(fsub, isub, "value");
        if (!(v = get(it, "value")))
            return fail(c, it, fsub, "required");
        if ((rc = want(c, v, YAML_SCALAR_NODE, fsub)))
            return rc;
        if (v->len > MAX_VALUE || strlen(v->value) != v->len || !zt_route_header_value_ok(v->value))
            return fail(c, v, fsub, "longer than %d bytes or contains control characters",
                        MAX_VALUE);
        f->value = zt_xstrdup(v->value);
    }
    return 0;
}

static int parse_header_mod(struct pc *c, const struct ynode *n, const char *path,
                            struct zt_route_header_mod *h)
{
    static const char *const keys[] = {"set", "add", "remove", NULL};
    const struct ynode *list;
    char sub[PATH_LEN];
    int rc = check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = parse_fields(c, n, "set", path, &h->set, &h->n_set);
    if (!rc)
        rc = parse_fields(c, n, "add", path, &h->add, &h->n_add);
    if (!rc)
        rc = get_list(c, n, "remove", path, MAX_MODS, &list);
    if (rc || !list)
        return rc;
    pkey(sub, path, "remove");
    h->remove = zt_xcalloc(list->n_items ? list->n_items : 1, sizeof(*h->remove));
    for (size_t i = 0; i < list->n_items; i++) {
        char isub[PATH_LEN];
        const struct ynode *it = list->items[i];
        pidx(isub, sub, i);
        if ((rc = want(c, it, YAML_SCALAR_NODE, isub)))
            return rc;
        if (it->len > MAX_NAME || !zt_route_header_name_ok(it->value))
            return fail(c, it, isub, "\"%.64s\" is not a header name", it->value);
        h->remove[h->n_remove] = zt_xstrdup(it->value);
        for (char *p = h->remove[h->n_remove]; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        h->n_remove++;
    }
    return 0;
}

static int parse_path_mod(struct pc *c, const struct ynode *n, const char *path,
                          struct zt_route_path_mod *pm)
{
    static const char *const keys[] = {"type", "replaceFullPath", "replacePrefixMatch", NULL};
    char *type = NULL, sub[PATH_LEN];
    const char *field = NULL, *why;
    int rc = check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = get_str(c, n, "type", path, true, 64, &type);
    if (!rc) {
        if (strcmp(type, "ReplaceFullPath") == 0) {
            pm->kind = ZT_ROUTE_PATH_MOD_FULL;
            field = "replaceFullPath";
        } else if (strcmp(type, "ReplacePrefixMatch") == 0) {
            pm->kind = ZT_ROUTE_PATH_MOD_PREFIX;
            field = "replacePrefixMatch";
        } else {
            pkey(sub, path, "type");
            rc = fail(c, get(n, "type"), sub, "\"%s\" is not ReplaceFullPath or ReplacePrefixMatch",
                      type);
        }
    }
    if (!rc) {
        /* An empty replacement is allowed: ReplacePrefixMatch "" strips the
         * prefix (the Gateway API's table), a full path "" becomes "/". */
        const struct ynode *v = get(n, field);
        if (v && v->type == YAML_SCALAR_NODE && v->len == 0)
            pm->value = zt_xstrdup("");
        else
            rc = get_str(c, n, field, path, true, ZT_ROUTE_MAX_PATH, &pm->value);
        pkey(sub, path, field);
        if (!rc && *pm->value && (why = bad_path(pm->value)))
            rc = fail(c, get(n, field), sub, "%s", why);
        const char *other = field[7] == 'F' ? "replacePrefixMatch" : "replaceFullPath";
        if (!rc && get(n, other)) {
            pkey(sub, path, other);
            rc = fail(c, get(n, other), sub, "not allowed with type %s", type);
        }
    }
    free(type);
    return rc;
}

static bool hostname_ok(const char *h)
{
    for (; *h; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') ||
              *h == '-' || *h == '.'))
            return false;
    return true;
}

static int get_hostname(struct pc *c, const struct ynode *n, const char *path, char **out)
{
    char sub[PATH_LEN];
    int rc = get_str(c, n, "hostname", path, false, MAX_NAME, out);
    pkey(sub, path, "hostname");
    if (!rc && *out && !hostname_ok(*out))
        rc = fail(c, get(n, "hostname"), sub, "\"%s\" is not a hostname", *out);
    return rc;
}

static int parse_redirect(struct pc *c, const struct ynode *n, const char *path,
                          struct zt_route_redirect *r)
{
    static const char *const keys[] = {"scheme", "hostname", "path", "port", "statusCode", NULL};
    static const char *const schemes[] = {"http", "https", NULL};
    const struct ynode *p;
    char sub[PATH_LEN];
    unsigned long v = 0;
    bool has = false;
    int rc = check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = get_str(c, n, "scheme", path, false, 16, &r->scheme);
    if (!rc && r->scheme && !one_of(r->scheme, schemes)) {
        pkey(sub, path, "scheme");
        rc = fail(c, get(n, "scheme"), sub, "\"%s\" is not http or https", r->scheme);
    }
    if (!rc)
        rc = get_hostname(c, n, path, &r->hostname);
    if (!rc && (p = get(n, "path"))) {
        pkey(sub, path, "path");
        rc = parse_path_mod(c, p, sub, &r->path);
    }
    if (!rc)
        rc = get_uint(c, n, "port", path, 1, 65535, &has, &v);
    r->port = (uint16_t)v;
    if (!rc)
        rc = get_uint(c, n, "statusCode", path, 0, 999, &has, &v);
    r->status = has ? (int)v : 302;
    if (!rc && has && v != 301 && v != 302 && v != 303 && v != 307 && v != 308) {
        pkey(sub, path, "statusCode");
        rc = fail(c, get(n, "statusCode"), sub, "%lu is not 301, 302, 303, 307 or 308", v);
    }
    return rc;
}

static int parse_rewrite(struct pc *c, const struct ynode *n, const char *path,
                         struct zt_route_rewrite *r)
{
    static const char *const keys[] = {"hostname", "path", NULL};
    const struct ynode *p;
    char sub[PATH_LEN];
    int rc = check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = get_hostname(c, n, path, &r->hostname);
    if (!rc && (p = get(n, "path"))) {
        pkey(sub, path, "path");
        rc = parse_path_mod(c, p, sub, &r->path);
    }
    return rc;
}

/* A backendRef (or a mirror's): Service references only; another kind is
 * kept as an invalid backend (the Gateway API answers 500 for the share of
 * requests it would get) with a warning. */
static int parse_backend(struct pc *c, const struct ynode *n, const char *path, bool mirror,
                         struct zt_route_backend *b)
{
    static const char *const keys[] = {"group", "kind",   "name", "namespace",
                                       "port",  "weight", NULL};
    static const char *const mkeys[] = {"group", "kind", "name", "namespace", "port", NULL};
    char *group = NULL, *kind = NULL, sub[PATH_LEN];
    unsigned long v = 0;
    bool has = false;
    int rc = check_keys(c, n, path, mirror ? mkeys : keys,
                        mirror ? NULL : (const char *[]){"filters", NULL});
    if (!rc && !mirror && get(n, "filters")) {
        pkey(sub, path, "filters");
        rc = fail(c, get(n, "filters"), sub, "per-backend filters are not supported");
    }
    if (!rc)
        rc = get_group(c, n, path, &group);
    if (!rc)
        rc = get_str(c, n, "kind", path, false, 64, &kind);
    if (!rc)
        rc = get_str(c, n, "name", path, true, MAX_NAME, &b->name);
    if (!rc)
        rc = get_str(c, n, "namespace", path, false, 63, &b->ns);
    if (!rc && !b->ns)
        b->ns = zt_xstrdup(c->ns);
    if (!rc)
        rc = get_uint(c, n, "port", path, 1, 65535, &has, &v);
    b->port = (uint16_t)v;
    if (!rc && !mirror)
        rc = get_uint(c, n, "weight", path, 0, MAX_WEIGHT, &has, &v);
    b->weight = has && !mirror ? (uint32_t)v : 1;
    if (!rc && (!core_group(group) || (kind && strcmp(kind, "Service") != 0))) {
        warn(c, n, path, "kind %s%s%s is not supported; its share of requests gets 500",
             group ? group : "", group ? "/" : "", kind ? kind : "Service");
        b->invalid = true;
    }
    if (!rc && !b->invalid && !b->port) {
        pkey(sub, path, "port");
        rc = fail(c, n, sub, "required for a Service");
    }
    free(group);
    free(kind);
    return rc;
}

static int parse_mirror(struct pc *c, const struct ynode *n, const char *path,
                        struct zt_route_filters *f)
{
    static const char *const keys[] = {"backendRef", "percent", "fraction", NULL};
    static const char *const fkeys[] = {"numerator", "denominator", NULL};
    struct zt_route_mirror *m;
    const struct ynode *br, *fr;
    char sub[PATH_LEN];
    unsigned long v = 0;
    bool has = false;
    int rc = check_keys(c, n, path, keys, NULL);
    if (rc)
        return rc;
    f->mirrors = zt_xrealloc(f->mirrors, (f->n_mirrors + 1) * sizeof(*f->mirrors));
    m = &f->mirrors[f->n_mirrors++];
    memset(m, 0, sizeof(*m));
    m->numerator = m->denominator = 100;
    pkey(sub, path, "backendRef");
    if (!(br = get(n, "backendRef")))
        return fail(c, n, sub, "required");
    if ((rc = parse_backend(c, br, sub, true, &m->backend)))
        return rc;
    if ((rc = get_uint(c, n, "percent", path, 0, 100, &has, &v)))
        return rc;
    if (has)
        m->numerator = (uint32_t)v;
    if ((rc = get_map(c, n, "fraction", path, fkeys, &fr, sub)) || !fr)
        return rc;
    if (has)
        return fail(c, fr, sub, "not allowed with percent");
    if ((rc = get_uint(c, fr, "numerator", sub, 0, UINT32_MAX, &has, &v)))
        return rc;
    if (!has)
        return fail(c, fr, sub, "numerator is required");
    m->numerator = (uint32_t)v;
    if ((rc = get_uint(c, fr, "denominator", sub, 1, UINT32_MAX, &has, &v)))
        return rc;
    m->denominator = has ? (uint32_t)v : 100;
    if (m->numerator > m->denominator)
        return fail(c, fr, sub, "numerator is larger than denominator");
    return 0;
}

static int parse_filters(struct pc *c, const struct ynode *rn, const char *path,
                         struct zt_route_rule *r)
{
    static const char *const keys[] = {"type",
                                       "requestHeaderModifier",
                                       "responseHeaderModifier",
                                       "requestRedirect",
                                       "urlRewrite",
                                       "requestMirror",
                                       "cors",
                                       "extensionRef",
                                       NULL};
    static const char *const fields[] = {"requestHeaderModifier", "responseHeaderModifier",
                                         "requestRedirect",       "urlRewrite",
                                         "requestMirror",         NULL};
    static const char *const types[] = {"RequestHeaderModifier", "ResponseHeaderModifier",
                                        "RequestRedirect",       "URLRewrite",
                                        "RequestMirror",         NULL};
    struct zt_route_filters *f = &r->filters;
    const struct ynode *list;
    bool seen[5] = {false};
    char sub[PATH_LEN];
    int rc = get_list(c, rn, "filters", path, MAX_FILTERS, &list);
    if (rc || !list)
        return rc;
    pkey(sub, path, "filters");
    for (size_t i = 0; i < list->n_items; i++) {
        const struct ynode *it = list->items[i], *cfg;
        char isub[PATH_LEN], csub[PATH_LEN];
        char *type = NULL;
        size_t t = 0;
        pidx(isub, sub, i);
        if ((rc = check_keys(c, it, isub, keys, NULL)) ||
            (rc = get_str(c, it, "type", isub, true, 64, &type)))
            return rc;
        while (types[t] && strcmp(types[t], type) != 0)
            t++;
        pkey(csub, isub, "type");
        if (!types[t] || (c->kind == ZT_ROUTE_GRPC && (t == 2 || t == 3))) {
            rc = fail(c, get(it, "type"), csub, "filter type %s is not supported%s", type,
                      c->kind == ZT_ROUTE_GRPC ? " in a GRPCRoute" : "");
            free(type);
            return rc;
        }
        free(type);
        if (seen[t] && t != 4)
            return fail(c, get(it, "type"), csub, "%s given twice in one rule", types[t]);
        seen[t] = true;
        for (size_t j = 0; fields[j]; j++) {
            if (j != t && get(it, fields[j])) {
                pkey(csub, isub, fields[j]);
                return fail(c, get(it, fields[j]), csub, "not allowed with type %s", types[t]);
            }
        }
        pkey(csub, isub, fields[t]);
        if (!(cfg = get(it, fields[t])))
            return fail(c, it, csub, "required for type %s", types[t]);
        switch (t) {
        case 0:
            rc = parse_header_mod(c, cfg, csub, &f->request);
            break;
        case 1:
            rc = parse_header_mod(c, cfg, csub, &f->response);
            break;
        case 2:
            f->has_redirect = true;
            rc = parse_redirect(c, cfg, csub, &f->redirect);
            break;
        case 3:
            f->has_rewrite = true;
            rc = parse_rewrite(c, cfg, csub, &f->rewrite);
            break;
        default:
            rc = parse_mirror(c, cfg, csub, f);
            break;
        }
        if (rc)
            return rc;
    }
    if (f->has_redirect && f->has_rewrite)
        return fail(c, list, sub, "RequestRedirect and URLRewrite cannot be used together");
    return 0;
}

/* ---- rules ---- */

static int parse_retry(struct pc *c, const struct ynode *n, const char *path,
                       struct zt_route_retry *rt)
{
    static const char *const keys[] = {"attempts", "backoff", "codes", NULL};
    const struct ynode *codes;
    char sub[PATH_LEN];
    unsigned long v = 0;
    bool has = false;
    int rc = check_keys(c, n, path, keys, NULL);
    /* A retry stanza keeps Istio's connection conditions and adds codes. */
    *rt = zt_route_retry_default;
    if (!rc)
        rc = get_uint(c, n, "attempts", path, 0, 1000, &has, &v);
    if (!rc && has)
        rt->attempts = (uint32_t)v;
    if (!rc && get(n, "backoff")) {
        rc = get_duration(c, n, "backoff", path, &rt->backoff_ms);
        if (rt->max_backoff_ms < rt->backoff_ms * 10u)
            rt->max_backoff_ms = rt->backoff_ms * 10u; /* Envoy: 10x the base */
    }
    if (!rc)
        rc = get_list(c, n, "codes", path, ZT_ROUTE_MAX_RETRY_CODES, &codes);
    if (rc || !codes)
        return rc;
    pkey(sub, path, "codes");
    for (size_t i = 0; i < codes->n_items; i++) {
        const struct ynode *it = codes->items[i];
        char isub[PATH_LEN], *end;
        pidx(isub, sub, i);
        if ((rc = want(c, it, YAML_SCALAR_NODE, isub)))
            return rc;
        v = strtoul(it->value, &end, 10);
        if (it->len == 0 || *end || it->value[0] < '0' || it->value[0] > '9' || v < 400 || v > 599)
            return fail(c, it, isub, "\"%.16s\" is not a status code 400..599", it->value);
        rt->codes[rt->n_codes++] = (uint16_t)v;
    }
    return 0;
}

static int parse_rule(struct pc *c, const struct ynode *n, const char *path,
                      struct zt_route_rule *r)
{
    static const char *const http_keys[] = {"name",     "matches", "filters", "backendRefs",
                                            "timeouts", "retry",   NULL};
    static const char *const grpc_keys[] = {"name", "matches", "filters", "backendRefs", NULL};
    static const char *const tkeys[] = {"request", "backendRequest", NULL};
    const struct ynode *list, *tn;
    char sub[PATH_LEN], tsub[PATH_LEN];
    int rc = check_keys(c, n, path, c->kind == ZT_ROUTE_GRPC ? grpc_keys : http_keys, NULL);
    if (!rc)
        rc = get_str(c, n, "name", path, false, MAX_NAME, &r->name);
    if (!rc)
        rc = get_list(c, n, "matches", path, MAX_MATCHES, &list);
    if (!rc && list && list->n_items) {
        pkey(sub, path, "matches");
        r->matches = zt_xcalloc(list->n_items, sizeof(*r->matches));
        for (size_t i = 0; i < list->n_items && !rc; i++) {
            char isub[PATH_LEN];
            pidx(isub, sub, i);
            r->n_matches++;
            rc = c->kind == ZT_ROUTE_GRPC
                     ? parse_grpc_match(c, list->items[i], isub, &r->matches[i])
                     : parse_http_match(c, list->items[i], isub, &r->matches[i]);
        }
    }
    if (!rc)
        rc = parse_filters(c, n, path, r);
    if (!rc && r->filters.has_rewrite && r->filters.rewrite.path.kind == ZT_ROUTE_PATH_MOD_PREFIX) {
        for (size_t i = 0; i < r->n_matches && !rc; i++) {
            if (r->matches[i].path_kind != ZT_ROUTE_PATH_PREFIX) {
                pkey(sub, path, "filters");
                rc = fail(c, n, sub,
                          "ReplacePrefixMatch needs PathPrefix matches (matches[%zu] is not)", i);
            }
        }
    }
    if (!rc && r->filters.has_redirect &&
        r->filters.redirect.path.kind == ZT_ROUTE_PATH_MOD_PREFIX) {
        for (size_t i = 0; i < r->n_matches && !rc; i++) {
            if (r->matches[i].path_kind != ZT_ROUTE_PATH_PREFIX) {
                pkey(sub, path, "filters");
                rc = fail(c, n, sub,
                          "ReplacePrefixMatch needs PathPrefix matches (matches[%zu] is not)", i);
            }
        }
    }
    if (!rc)
        rc = get_list(c, n, "backendRefs", path, MAX_BACKENDS, &list);
    if (!rc && list && list->n_items) {
        pkey(sub, path, "backendRefs");
        r->backends = zt_xcalloc(list->n_items, sizeof(*r->backends));
        for (size_t i = 0; i < list->n_items && !rc; i++) {
            char isub[PATH_LEN];
            pidx(isub, sub, i);
            r->n_backends++;
            rc = parse_backend(c, list->items[i], isub, false, &r->backends[i]);
        }
    }
    if (!rc)
        rc = get_map(c, n, "timeouts", path, tkeys, &tn, tsub);
    if (!rc && tn) {
        rc = get_duration(c, tn, "request", tsub, &r->request_timeout_ms);
        if (!rc)
            rc = get_duration(c, tn, "backendRequest", tsub, &r->backend_timeout_ms);
        if (!rc && r->request_timeout_ms && r->backend_timeout_ms > r->request_timeout_ms) {
            pkey(sub, tsub, "backendRequest");
            rc = fail(c, get(tn, "backendRequest"), sub, "longer than timeouts.request");
        }
    }
    if (!rc && (tn = get(n, "retry"))) {
        pkey(sub, path, "retry");
        r->has_retry = true;
        rc = parse_retry(c, tn, sub, &r->retry);
    }
    return rc;
}

/* ---- the object ---- */

static void parse_created(struct pc *c, const struct ynode *md, struct zt_route_def *d)
{
    const struct ynode *n = get(md, "creationTimestamp");
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
    warn(c, n, "metadata.creationTimestamp", "not an RFC 3339 UTC time, ignored (load order used)");
}

static int parse_parents(struct pc *c, const struct ynode *spec, struct zt_route_def *d)
{
    static const char *const keys[] = {"group",       "kind", "namespace", "name",
                                       "sectionName", "port", NULL};
    const struct ynode *list;
    int rc = get_list(c, spec, "parentRefs", "spec", MAX_PARENTS, &list);
    if (rc)
        return rc;
    if (!list || list->n_items == 0) {
        warn(c, spec, "spec.parentRefs", "no parents: the route attaches to nothing");
        return 0;
    }
    d->parents = zt_xcalloc(list->n_items, sizeof(*d->parents));
    for (size_t i = 0; i < list->n_items; i++) {
        const struct ynode *it = list->items[i];
        struct zt_route_parent *p = &d->parents[d->n_parents];
        char sub[PATH_LEN], *group = NULL, *kind = NULL, *section = NULL;
        unsigned long v = 0;
        bool has, service, gateway;
        pidx(sub, "spec.parentRefs", i);
        rc = check_keys(c, it, sub, keys, NULL);
        if (!rc)
            rc = get_group(c, it, sub, &group);
        if (!rc)
            rc = get_str(c, it, "kind", sub, false, 64, &kind);
        if (!rc)
            rc = get_str(c, it, "sectionName", sub, false, MAX_NAME, &section);
        if (!rc)
            rc = get_uint(c, it, "port", sub, 1, 65535, &has, &v);
        if (!rc) {
            d->n_parents++;
            p->port = (uint16_t)v;
            rc = get_str(c, it, "name", sub, true, MAX_NAME, &p->name);
        }
        if (!rc)
            rc = get_str(c, it, "namespace", sub, false, 63, &p->ns);
        if (!rc && !p->ns)
            p->ns = zt_xstrdup(d->ns);
        /* The API's defaults: group gateway.networking.k8s.io, kind Gateway. */
        service = kind && strcmp(kind, "Service") == 0 && core_group(group);
        gateway = (!kind || strcmp(kind, "Gateway") == 0) &&
                  (!group || strcmp(group, "gateway.networking.k8s.io") == 0);
        if (!rc && service && section) {
            p->section = section; /* a port name */
            section = NULL;
        } else if (!rc && !service && !gateway) {
            warn(c, it, sub, "parent kind %s%s%s is not supported; parent ignored",
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

static int parse_object(struct pc *c, const struct ynode *doc, struct zt_route_def *d)
{
    static const char *const top[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    static const char *const quiet_top[] = {"status", NULL};
    static const char *const spec_keys[] = {"parentRefs", "hostnames", "rules", NULL};
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
    const struct ynode *md = get(doc, "metadata"), *spec, *rules, *hosts;
    int rc = check_keys(c, doc, "", top, quiet_top);
    if (rc)
        return rc;
    if (!md)
        return fail(c, doc, "metadata", "required");
    if ((rc = check_keys(c, md, "metadata", md_keys, md_quiet)) ||
        (rc = get_str(c, md, "name", "metadata", true, MAX_NAME, &d->name)) ||
        (rc = get_str(c, md, "namespace", "metadata", false, 63, &d->ns)))
        return rc;
    if (!d->ns)
        d->ns = zt_xstrdup("default");
    c->ns = d->ns;
    snprintf(c->obj, sizeof(c->obj), "%s %s/%s", zt_route_kind_str(c->kind), d->ns, d->name);
    parse_created(c, md, d);
    if (!(spec = get(doc, "spec")))
        return fail(c, doc, "spec", "required");
    if ((rc = check_keys(c, spec, "spec", spec_keys, NULL)) || (rc = parse_parents(c, spec, d)) ||
        (rc = get_list(c, spec, "hostnames", "spec", MAX_HOSTNAMES, &hosts)) ||
        (rc = get_list(c, spec, "rules", "spec", MAX_RULES, &rules)))
        return rc;
    if (!rules || rules->n_items == 0) {
        /* The API's default: one rule with no matches and no backends. */
        d->rules = zt_xcalloc(1, sizeof(*d->rules));
        d->n_rules = 1;
        return 0;
    }
    d->rules = zt_xcalloc(rules->n_items, sizeof(*d->rules));
    for (size_t i = 0; i < rules->n_items && !rc; i++) {
        char sub[PATH_LEN];
        pidx(sub, "spec.rules", i);
        d->n_rules++;
        rc = parse_rule(c, rules->items[i], sub, &d->rules[i]);
    }
    return rc;
}

int zt_config_routes_add_doc(struct zt_route_builder *b, const char *file, const struct ynode *doc,
                             struct zt_route_errors *errs)
{
    struct pc c = {.file = file, .errs = errs};
    struct zt_route_def d = {0};
    const struct ynode *kind, *api;
    char err[256];
    int rc;

    if (!doc || doc->type != YAML_MAPPING_NODE)
        return 0;
    kind = get(doc, "kind");
    api = get(doc, "apiVersion");
    if (!kind || kind->type != YAML_SCALAR_NODE)
        return 0;
    if (strcmp(kind->value, "HTTPRoute") == 0)
        c.kind = ZT_ROUTE_HTTP;
    else if (strcmp(kind->value, "GRPCRoute") == 0)
        c.kind = ZT_ROUTE_GRPC;
    else
        return 0;
    d.kind = c.kind;
    snprintf(c.obj, sizeof(c.obj), "%s", kind->value);
    if (!api || api->type != YAML_SCALAR_NODE)
        return fail(&c, doc, "apiVersion", "required");
    if (strcmp(api->value, "gateway.networking.k8s.io/v1") != 0 &&
        strcmp(api->value, c.kind == ZT_ROUTE_HTTP ? "gateway.networking.k8s.io/v1beta1"
                                                   : "gateway.networking.k8s.io/v1alpha2") != 0)
        return fail(&c, api, "apiVersion", "\"%.80s\" is not a supported version of %s", api->value,
                    kind->value);
    rc = parse_object(&c, doc, &d);
    if (rc) {
        zt_route_def_cleanup(&d);
        return rc;
    }
    if ((rc = zt_route_builder_add(b, &d, err, sizeof(err))))
        return fail(&c, doc, "metadata.name", "%s", err);
    return 0;
}

/* Anchors are per document: forget the last document's before the next. */
static void forget_anchors(struct zt_yreader *r)
{
    for (size_t i = 0; i < r->n_anchors; i++)
        free(r->anchors[i].name);
    r->n_anchors = 0;
}

static void add_root(struct zt_route_builder *b, const char *file, const struct ynode *root,
                     struct zt_route_errors *errs)
{
    const struct ynode *kind, *items;
    if (root->type != YAML_MAPPING_NODE)
        return;
    kind = get(root, "kind");
    items = get(root, "items");
    /* kubectl's "kind: List" wraps objects in items. */
    if (kind && kind->type == YAML_SCALAR_NODE && strcmp(kind->value, "List") == 0 && items &&
        items->type == YAML_SEQUENCE_NODE) {
        for (size_t i = 0; i < items->n_items; i++)
            zt_config_routes_add_doc(b, file, items->items[i], errs);
        return;
    }
    zt_config_routes_add_doc(b, file, root, errs);
}

int zt_config_routes_load_string(struct zt_route_builder *b, const char *file, const char *yaml,
                                 size_t len, struct zt_route_errors *errs)
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
        add_root(b, file, root, errs);
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
