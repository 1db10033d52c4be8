/* HTTPRoute / GRPCRoute filters, backendRefs and retry from YAML (the
 * walkers of routes_yaml.c; see routes.h and routes_int.h). */
#include "config/routes_int.h"

#include "base/alloc.h"
#include "base/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- filters ---- */

static int parse_fields(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                        const char *path, struct zt_http_field **out, size_t *n_out)
{
    static const char *const keys[] = {"name", "value", NULL};
    const struct ynode *list;
    char sub[PATH_LEN];
    int rc = zt_config_routes_list(c, m, key, path, MAX_MODS, &list);
    if (rc || !list)
        return rc;
    zt_config_routes_key(sub, path, key);
    *out = zt_xcalloc(list->n_items ? list->n_items : 1, sizeof(**out));
    for (size_t i = 0; i < list->n_items; i++) {
        char isub[PATH_LEN], fsub[PATH_LEN];
        const struct ynode *it = list->items[i], *v;
        struct zt_http_field *f = &(*out)[(*n_out)++];
        zt_config_routes_idx(isub, sub, i);
        if ((rc = zt_config_routes_check_keys(c, it, isub, keys, NULL)) ||
            (rc = zt_config_routes_str(c, it, "name", isub, true, MAX_NAME, &f->name)))
            return rc;
        zt_config_routes_key(fsub, isub, "name");
        if (!zt_route_header_name_ok(f->name))
            return zt_config_routes_fail(c, zt_config_routes_get(it, "name"), fsub,
                                         "\"%s\" is not a header name", f->name);
        for (char *p = f->name; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        zt_config_routes_key(fsub, isub, "value");
        if (!(v = zt_config_routes_get(it, "value")))
            return zt_config_routes_fail(c, it, fsub, "required");
        if ((rc = zt_config_routes_want(c, v, YAML_SCALAR_NODE, fsub)))
            return rc;
        if (v->len > MAX_VALUE || strlen(v->value) != v->len || !zt_route_header_value_ok(v->value))
            return zt_config_routes_fail(
                c, v, fsub, "longer than %d bytes or contains control characters", MAX_VALUE);
        f->value = zt_xstrdup(v->value);
    }
    return 0;
}

static int parse_header_mod(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                            struct zt_route_header_mod *h)
{
    static const char *const keys[] = {"set", "add", "remove", NULL};
    const struct ynode *list;
    char sub[PATH_LEN];
    int rc = zt_config_routes_check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = parse_fields(c, n, "set", path, &h->set, &h->n_set);
    if (!rc)
        rc = parse_fields(c, n, "add", path, &h->add, &h->n_add);
    if (!rc)
        rc = zt_config_routes_list(c, n, "remove", path, MAX_MODS, &list);
    if (rc || !list)
        return rc;
    zt_config_routes_key(sub, path, "remove");
    h->remove = zt_xcalloc(list->n_items ? list->n_items : 1, sizeof(*h->remove));
    for (size_t i = 0; i < list->n_items; i++) {
        char isub[PATH_LEN];
        const struct ynode *it = list->items[i];
        zt_config_routes_idx(isub, sub, i);
        if ((rc = zt_config_routes_want(c, it, YAML_SCALAR_NODE, isub)))
            return rc;
        if (it->len > MAX_NAME || !zt_route_header_name_ok(it->value))
            return zt_config_routes_fail(c, it, isub, "\"%.64s\" is not a header name", it->value);
        h->remove[h->n_remove] = zt_xstrdup(it->value);
        for (char *p = h->remove[h->n_remove]; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        h->n_remove++;
    }
    return 0;
}

static int parse_path_mod(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                          struct zt_route_path_mod *pm)
{
    static const char *const keys[] = {"type", "replaceFullPath", "replacePrefixMatch", NULL};
    char *type = NULL, sub[PATH_LEN];
    const char *field = NULL, *why;
    int rc = zt_config_routes_check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = zt_config_routes_str(c, n, "type", path, true, 64, &type);
    if (!rc) {
        if (strcmp(type, "ReplaceFullPath") == 0) {
            pm->kind = ZT_ROUTE_PATH_MOD_FULL;
            field = "replaceFullPath";
        } else if (strcmp(type, "ReplacePrefixMatch") == 0) {
            pm->kind = ZT_ROUTE_PATH_MOD_PREFIX;
            field = "replacePrefixMatch";
        } else {
            zt_config_routes_key(sub, path, "type");
            rc = zt_config_routes_fail(c, zt_config_routes_get(n, "type"), sub,
                                       "\"%s\" is not ReplaceFullPath or ReplacePrefixMatch", type);
        }
    }
    if (!rc) {
        /* An empty replacement is allowed: ReplacePrefixMatch "" strips the
         * prefix (the Gateway API's table), a full path "" becomes "/". */
        const struct ynode *v = zt_config_routes_get(n, field);
        if (v && v->type == YAML_SCALAR_NODE && v->len == 0)
            pm->value = zt_xstrdup("");
        else
            rc = zt_config_routes_str(c, n, field, path, true, ZT_ROUTE_MAX_PATH, &pm->value);
        zt_config_routes_key(sub, path, field);
        if (!rc && *pm->value && (why = zt_config_routes_bad_path(pm->value)))
            rc = zt_config_routes_fail(c, zt_config_routes_get(n, field), sub, "%s", why);
        const char *other = field[7] == 'F' ? "replacePrefixMatch" : "replaceFullPath";
        if (!rc && zt_config_routes_get(n, other)) {
            zt_config_routes_key(sub, path, other);
            rc = zt_config_routes_fail(c, zt_config_routes_get(n, other), sub,
                                       "not allowed with type %s", type);
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

static int get_hostname(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                        char **out)
{
    char sub[PATH_LEN];
    int rc = zt_config_routes_str(c, n, "hostname", path, false, MAX_NAME, out);
    zt_config_routes_key(sub, path, "hostname");
    if (!rc && *out && !hostname_ok(*out))
        rc = zt_config_routes_fail(c, zt_config_routes_get(n, "hostname"), sub,
                                   "\"%s\" is not a hostname", *out);
    return rc;
}

static int parse_redirect(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                          struct zt_route_redirect *r)
{
    static const char *const keys[] = {"scheme", "hostname", "path", "port", "statusCode", NULL};
    static const char *const schemes[] = {"http", "https", NULL};
    const struct ynode *p;
    char sub[PATH_LEN];
    unsigned long v = 0;
    bool has = false;
    int rc = zt_config_routes_check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = zt_config_routes_str(c, n, "scheme", path, false, 16, &r->scheme);
    if (!rc && r->scheme && !zt_config_routes_one_of(r->scheme, schemes)) {
        zt_config_routes_key(sub, path, "scheme");
        rc = zt_config_routes_fail(c, zt_config_routes_get(n, "scheme"), sub,
                                   "\"%s\" is not http or https", r->scheme);
    }
    if (!rc)
        rc = get_hostname(c, n, path, &r->hostname);
    if (!rc && (p = zt_config_routes_get(n, "path"))) {
        zt_config_routes_key(sub, path, "path");
        rc = parse_path_mod(c, p, sub, &r->path);
    }
    if (!rc)
        rc = zt_config_routes_uint(c, n, "port", path, 1, 65535, &has, &v);
    r->port = (uint16_t)v;
    if (!rc)
        rc = zt_config_routes_uint(c, n, "statusCode", path, 0, 999, &has, &v);
    r->status = has ? (int)v : 302;
    if (!rc && has && v != 301 && v != 302 && v != 303 && v != 307 && v != 308) {
        zt_config_routes_key(sub, path, "statusCode");
        rc = zt_config_routes_fail(c, zt_config_routes_get(n, "statusCode"), sub,
                                   "%lu is not 301, 302, 303, 307 or 308", v);
    }
    return rc;
}

static int parse_rewrite(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                         struct zt_route_rewrite *r)
{
    static const char *const keys[] = {"hostname", "path", NULL};
    const struct ynode *p;
    char sub[PATH_LEN];
    int rc = zt_config_routes_check_keys(c, n, path, keys, NULL);
    if (!rc)
        rc = get_hostname(c, n, path, &r->hostname);
    if (!rc && (p = zt_config_routes_get(n, "path"))) {
        zt_config_routes_key(sub, path, "path");
        rc = parse_path_mod(c, p, sub, &r->path);
    }
    return rc;
}

/* A backendRef (or a mirror's): Service references only; another kind is
 * kept as an invalid backend (the Gateway API answers 500 for the share of
 * requests it would get) with a warning. */
int zt_config_routes_backend(struct zt_config_routes_ctx *c, const struct ynode *n,
                             const char *path, bool mirror, struct zt_route_backend *b)
{
    static const char *const keys[] = {"group", "kind",   "name", "namespace",
                                       "port",  "weight", NULL};
    static const char *const mkeys[] = {"group", "kind", "name", "namespace", "port", NULL};
    char *group = NULL, *kind = NULL, sub[PATH_LEN];
    unsigned long v = 0;
    bool has = false;
    int rc = zt_config_routes_check_keys(c, n, path, mirror ? mkeys : keys,
                                         mirror ? NULL : (const char *[]){"filters", NULL});
    if (!rc && !mirror && zt_config_routes_get(n, "filters")) {
        zt_config_routes_key(sub, path, "filters");
        rc = zt_config_routes_fail(c, zt_config_routes_get(n, "filters"), sub,
                                   "per-backend filters are not supported");
    }
    if (!rc)
        rc = zt_config_routes_group(c, n, path, &group);
    if (!rc)
        rc = zt_config_routes_str(c, n, "kind", path, false, 64, &kind);
    if (!rc)
        rc = zt_config_routes_str(c, n, "name", path, true, MAX_NAME, &b->name);
    if (!rc)
        rc = zt_config_routes_str(c, n, "namespace", path, false, 63, &b->ns);
    if (!rc && !b->ns)
        b->ns = zt_xstrdup(c->ns);
    if (!rc)
        rc = zt_config_routes_uint(c, n, "port", path, 1, 65535, &has, &v);
    b->port = (uint16_t)v;
    if (!rc && !mirror)
        rc = zt_config_routes_uint(c, n, "weight", path, 0, MAX_WEIGHT, &has, &v);
    b->weight = has && !mirror ? (uint32_t)v : 1;
    if (!rc && (!zt_config_routes_core_group(group) || (kind && strcmp(kind, "Service") != 0))) {
        zt_config_routes_warn(c, n, path,
                              "kind %s%s%s is not supported; its share of requests gets 500",
                              group ? group : "", group ? "/" : "", kind ? kind : "Service");
        b->invalid = true;
    }
    if (!rc && !b->invalid && !b->port) {
        zt_config_routes_key(sub, path, "port");
        rc = zt_config_routes_fail(c, n, sub, "required for a Service");
    }
    free(group);
    free(kind);
    return rc;
}

static int parse_mirror(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                        struct zt_route_filters *f)
{
    static const char *const keys[] = {"backendRef", "percent", "fraction", NULL};
    static const char *const fkeys[] = {"numerator", "denominator", NULL};
    struct zt_route_mirror *m;
    const struct ynode *br, *fr;
    char sub[PATH_LEN];
    unsigned long v = 0;
    bool has = false;
    int rc = zt_config_routes_check_keys(c, n, path, keys, NULL);
    if (rc)
        return rc;
    f->mirrors = zt_xrealloc(f->mirrors, (f->n_mirrors + 1) * sizeof(*f->mirrors));
    m = &f->mirrors[f->n_mirrors++];
    memset(m, 0, sizeof(*m));
    m->numerator = m->denominator = 100;
    zt_config_routes_key(sub, path, "backendRef");
    if (!(br = zt_config_routes_get(n, "backendRef")))
        return zt_config_routes_fail(c, n, sub, "required");
    if ((rc = zt_config_routes_backend(c, br, sub, true, &m->backend)))
        return rc;
    if ((rc = zt_config_routes_uint(c, n, "percent", path, 0, 100, &has, &v)))
        return rc;
    if (has)
        m->numerator = (uint32_t)v;
    if ((rc = zt_config_routes_map(c, n, "fraction", path, fkeys, &fr, sub)) || !fr)
        return rc;
    if (has)
        return zt_config_routes_fail(c, fr, sub, "not allowed with percent");
    if ((rc = zt_config_routes_uint(c, fr, "numerator", sub, 0, UINT32_MAX, &has, &v)))
        return rc;
    if (!has)
        return zt_config_routes_fail(c, fr, sub, "numerator is required");
    m->numerator = (uint32_t)v;
    if ((rc = zt_config_routes_uint(c, fr, "denominator", sub, 1, UINT32_MAX, &has, &v)))
        return rc;
    m->denominator = has ? (uint32_t)v : 100;
    if (m->numerator > m->denominator)
        return zt_config_routes_fail(c, fr, sub, "numerator is larger than denominator");
    return 0;
}

int zt_config_routes_filters(struct zt_config_routes_ctx *c, const struct ynode *rn,
                             const char *path, struct zt_route_rule *r)
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
    int rc = zt_config_routes_list(c, rn, "filters", path, MAX_FILTERS, &list);
    if (rc || !list)
        return rc;
    zt_config_routes_key(sub, path, "filters");
    for (size_t i = 0; i < list->n_items; i++) {
        const struct ynode *it = list->items[i], *cfg;
        char isub[PATH_LEN], csub[PATH_LEN];
        char *type = NULL;
        size_t t = 0;
        zt_config_routes_idx(isub, sub, i);
        if ((rc = zt_config_routes_check_keys(c, it, isub, keys, NULL)) ||
            (rc = zt_config_routes_str(c, it, "type", isub, true, 64, &type)))
            return rc;
        while (types[t] && strcmp(types[t], type) != 0)
            t++;
        zt_config_routes_key(csub, isub, "type");
        if (!types[t] || (c->kind == ZT_ROUTE_GRPC && (t == 2 || t == 3))) {
            rc = zt_config_routes_fail(c, zt_config_routes_get(it, "type"), csub,
                                       "filter type %s is not supported%s", type,
                                       c->kind == ZT_ROUTE_GRPC ? " in a GRPCRoute" : "");
            free(type);
            return rc;
        }
        free(type);
        if (seen[t] && t != 4)
            return zt_config_routes_fail(c, zt_config_routes_get(it, "type"), csub,
                                         "%s given twice in one rule", types[t]);
        seen[t] = true;
        for (size_t j = 0; fields[j]; j++) {
            if (j != t && zt_config_routes_get(it, fields[j])) {
                zt_config_routes_key(csub, isub, fields[j]);
                return zt_config_routes_fail(c, zt_config_routes_get(it, fields[j]), csub,
                                             "not allowed with type %s", types[t]);
            }
        }
        zt_config_routes_key(csub, isub, fields[t]);
        if (!(cfg = zt_config_routes_get(it, fields[t])))
            return zt_config_routes_fail(c, it, csub, "required for type %s", types[t]);
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
        return zt_config_routes_fail(c, list, sub,
                                     "RequestRedirect and URLRewrite cannot be used together");
    return 0;
}

int zt_config_routes_retry(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                           struct zt_route_retry *rt)
{
    static const char *const keys[] = {"attempts", "backoff", "codes", NULL};
    const struct ynode *codes;
    char sub[PATH_LEN];
    unsigned long v = 0;
    bool has = false;
    int rc = zt_config_routes_check_keys(c, n, path, keys, NULL);
    /* A retry stanza keeps Istio's connection conditions and adds codes. */
    *rt = zt_route_retry_default;
    if (!rc)
        rc = zt_config_routes_uint(c, n, "attempts", path, 0, 1000, &has, &v);
    if (!rc && has)
        rt->attempts = (uint32_t)v;
    if (!rc && zt_config_routes_get(n, "backoff")) {
        rc = zt_config_routes_duration(c, n, "backoff", path, &rt->backoff_ms);
        if (rt->max_backoff_ms < rt->backoff_ms * 10u)
            rt->max_backoff_ms = rt->backoff_ms * 10u; /* Envoy: 10x the base */
    }
    if (!rc)
        rc = zt_config_routes_list(c, n, "codes", path, ZT_ROUTE_MAX_RETRY_CODES, &codes);
    if (rc || !codes)
        return rc;
    zt_config_routes_key(sub, path, "codes");
    for (size_t i = 0; i < codes->n_items; i++) {
        const struct ynode *it = codes->items[i];
        char isub[PATH_LEN], *end;
        zt_config_routes_idx(isub, sub, i);
        if ((rc = zt_config_routes_want(c, it, YAML_SCALAR_NODE, isub)))
            return rc;
        v = strtoul(it->value, &end, 10);
        if (it->len == 0 || *end || it->value[0] < '0' || it->value[0] > '9' || v < 400 || v > 599)
            return zt_config_routes_fail(c, it, isub, "\"%.16s\" is not a status code 400..599",
                                         it->value);
        rt->codes[rt->n_codes++] = (uint16_t)v;
    }
    return 0;
}
