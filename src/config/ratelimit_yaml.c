/* RateLimit YAML into ratelimit/ratelimit.h policies. See
 * config/ratelimit.h.
 *
 * Built on the HTTPRoute reader's walkers (routes_int.h), as the
 * AuthorizationPolicy reader is: the same node trees, field paths and
 * "<file>:<line>: <object>: <path>: <why>" messages, and its strict key
 * check: unknown fields under spec are refused. */
#include "config/ratelimit.h"
#include "config/authz.h"
#include "config/routes.h"
#include "config/routes_int.h"

#include "base/alloc.h"
#include "base/err.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API_VERSION "ratelimit.ztunnel-c.io/v1alpha1"

typedef struct zt_config_routes_ctx ctx_t;

static const char GATEWAY_GROUP[] = "gateway.networking.k8s.io";

/* One targetRef into p->targets (or a warning when ignored). */
static int read_target(ctx_t *c, const struct ynode *n, const char *path,
                       struct zt_ratelimit_policy *p)
{
    static const char *const keys[] = {"group", "kind", "name", "namespace", "sectionName", NULL};
    char *group = NULL, *kind = NULL, *name = NULL, *ns = NULL, *section = NULL, sub[PATH_LEN];
    bool gw_group;
    int rc, tk = -1;
    if ((rc = zt_config_authz_strict_keys(c, n, path, keys)) ||
        (rc = zt_config_routes_group(c, n, path, &group)) ||
        (rc = zt_config_routes_str(c, n, "kind", path, true, MAX_NAME, &kind)) ||
        (rc = zt_config_routes_str(c, n, "name", path, true, MAX_NAME, &name)) ||
        (rc = zt_config_routes_str(c, n, "namespace", path, false, 63, &ns)) ||
        (rc = zt_config_routes_str(c, n, "sectionName", path, false, MAX_NAME, &section)))
        goto out;
    gw_group = !group || !strcmp(group, GATEWAY_GROUP);
    if (!strcmp(kind, "Gateway") && gw_group)
        tk = ZT_RATELIMIT_GATEWAY;
    else if (!strcmp(kind, "HTTPRoute") && gw_group)
        tk = ZT_RATELIMIT_HTTP_ROUTE;
    else if (!strcmp(kind, "GRPCRoute") && gw_group)
        tk = ZT_RATELIMIT_GRPC_ROUTE;
    else if (!strcmp(kind, "Service") && zt_config_routes_core_group(group))
        tk = ZT_RATELIMIT_SERVICE;
    if (tk < 0) {
        rc = zt_config_routes_fail(c, n, path,
                                   "kind %s of group \"%s\" is not a RateLimit target (Gateway, "
                                   "HTTPRoute or GRPCRoute of gateway.networking.k8s.io, Service "
                                   "of \"\")",
                                   kind, group ? group : "");
        goto out;
    }
    if (section && tk != ZT_RATELIMIT_HTTP_ROUTE && tk != ZT_RATELIMIT_GRPC_ROUTE) {
        zt_config_routes_key(sub, path, "sectionName");
        rc = zt_config_routes_fail(c, zt_config_routes_get(n, "sectionName"), sub,
                                   "only for HTTPRoute and GRPCRoute targets (a rule name)");
        goto out;
    }
    if (ns && strcmp(ns, p->ns) != 0) {
        zt_config_routes_warn(c, n, path, "cross-namespace reference to %s/%s ignored", ns, name);
        goto out;
    }
    p->targets[p->n_targets++] = (struct zt_ratelimit_target){(uint8_t)tk, name, section};
    name = section = NULL;
out:
    free(group);
    free(kind);
    free(name);
    free(ns);
    free(section);
    return rc;
}

static int read_limit(ctx_t *c, const struct ynode *spec, struct zt_ratelimit_policy *p)
{
    static const char *const keys[] = {"requests", "unit", "burst", NULL};
    static const char *const units[] = {"second", "minute", "hour", NULL};
    const struct ynode *n = zt_config_routes_get(spec, "limit");
    unsigned long v;
    bool present;
    char *unit = NULL;
    int rc;
    if (!n)
        return zt_config_routes_fail(c, spec, "spec.limit", "required");
    if ((rc = zt_config_authz_strict_keys(c, n, "spec.limit", keys)) ||
        (rc = zt_config_routes_uint(c, n, "requests", "spec.limit", 1, ZT_RATELIMIT_MAX_REQUESTS,
                                    &present, &v)))
        return rc;
    if (!present)
        return zt_config_routes_fail(c, n, "spec.limit.requests", "required");
    p->requests = (uint32_t)v;
    if ((rc = zt_config_routes_uint(c, n, "burst", "spec.limit", 1, ZT_RATELIMIT_MAX_BURST,
                                    &present, &v)))
        return rc;
    p->burst = present ? (uint32_t)v : p->requests;
    if ((rc = zt_config_routes_str(c, n, "unit", "spec.limit", true, 16, &unit)))
        return rc;
    for (int i = 0; units[i]; i++)
        if (!strcmp(unit, units[i])) {
            p->unit = (uint8_t)i;
            free(unit);
            return 0;
        }
    rc = zt_config_routes_fail(c, zt_config_routes_get(n, "unit"), "spec.limit.unit",
                               "\"%s\" is not second, minute or hour", unit);
    free(unit);
    return rc;
}

static int read_key(ctx_t *c, const struct ynode *spec, struct zt_ratelimit_policy *p)
{
    static const char *const keys[] = {"header", "sourcePrincipal", NULL};
    static const char *const none[] = {NULL};
    const struct ynode *n = zt_config_routes_get(spec, "key"), *sp;
    bool present;
    unsigned long v;
    int rc;
    if (n) {
        if ((rc = zt_config_authz_strict_keys(c, n, "spec.key", keys)))
            return rc;
        sp = zt_config_routes_get(n, "sourcePrincipal");
        if (sp && zt_config_routes_get(n, "header"))
            return zt_config_routes_fail(c, n, "spec.key",
                                         "set only one of header and sourcePrincipal");
        if (sp) {
            if ((rc = zt_config_authz_strict_keys(c, sp, "spec.key.sourcePrincipal", none)))
                return rc;
            p->key = ZT_RATELIMIT_KEY_PRINCIPAL;
        } else if (zt_config_routes_get(n, "header")) {
            if ((rc = zt_config_routes_str(c, n, "header", "spec.key", true,
                                           ZT_RATELIMIT_MAX_HEADER, &p->header)))
                return rc;
            if (!zt_route_header_name_ok(p->header))
                return zt_config_routes_fail(c, zt_config_routes_get(n, "header"),
                                             "spec.key.header", "\"%s\" is not a header name",
                                             p->header);
            for (char *q = p->header; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            p->key = ZT_RATELIMIT_KEY_HEADER;
        } else {
            return zt_config_routes_fail(c, n, "spec.key", "set one of header and sourcePrincipal");
        }
    }
    if ((rc = zt_config_routes_uint(c, spec, "maxKeys", "spec", 1, ZT_RATELIMIT_MAX_KEYS, &present,
                                    &v)))
        return rc;
    if (present && !n)
        return zt_config_routes_fail(c, zt_config_routes_get(spec, "maxKeys"), "spec.maxKeys",
                                     "only with spec.key");
    p->max_keys = present ? (uint32_t)v : n ? ZT_RATELIMIT_DEFAULT_MAX_KEYS : 0;
    return 0;
}

/* Returns 0 with *skip set when every target was ignored. */
static int read_policy(ctx_t *c, const struct ynode *doc, struct zt_ratelimit_policy *p, bool *skip)
{
    static const char *const spec_keys[] = {"targetRefs", "limit", "key", "maxKeys", NULL};
    const struct ynode *spec, *refs;
    char sub[PATH_LEN];
    int rc = zt_config_routes_object(c, doc, "RateLimit", &p->name, &p->ns);
    if (rc)
        return rc;
    c->ns = p->ns;
    if (!(spec = zt_config_routes_get(doc, "spec")))
        return zt_config_routes_fail(c, doc, "spec", "required");
    if ((rc = zt_config_authz_strict_keys(c, spec, "spec", spec_keys)) ||
        (rc =
             zt_config_routes_list(c, spec, "targetRefs", "spec", ZT_RATELIMIT_MAX_TARGETS, &refs)))
        return rc;
    if (!refs)
        return zt_config_routes_fail(c, spec, "spec.targetRefs", "required");
    if (!refs->n_items)
        return zt_config_routes_fail(c, refs, "spec.targetRefs", "must not be empty");
    if ((rc = read_limit(c, spec, p)) || (rc = read_key(c, spec, p)))
        return rc;
    p->targets = zt_xcalloc(refs->n_items, sizeof(*p->targets));
    for (size_t i = 0; i < refs->n_items && !rc; i++) {
        zt_config_routes_idx(sub, "spec.targetRefs", i);
        rc = read_target(c, refs->items[i], sub, p);
    }
    if (!rc && !p->n_targets) {
        zt_config_routes_warn(c, spec, "spec", "no target applies: policy ignored");
        *skip = true;
    }
    return rc;
}

int zt_config_ratelimit_parse_doc(const char *file, const struct ynode *doc,
                                  struct zt_route_errors *errs, struct zt_ratelimit_policy **out)
{
    static const char *const versions[] = {API_VERSION, NULL};
    ctx_t c = {.file = file, .errs = errs};
    struct zt_ratelimit_policy *p;
    bool skip = false, is;
    int rc;

    *out = NULL;
    if ((rc = zt_config_routes_kind(&c, doc, "RateLimit", versions, &is)) || !is)
        return rc;
    p = zt_xcalloc(1, sizeof(*p));
    rc = read_policy(&c, doc, p, &skip);
    if (rc || skip)
        zt_ratelimit_policy_free(p);
    else
        *out = p;
    return rc;
}

static void add_one(void *ud, const char *file, const struct ynode *doc,
                    struct zt_route_errors *errs)
{
    struct zt_ratelimit_policy *p;
    if (zt_config_ratelimit_parse_doc(file, doc, errs, &p) == 0 && p)
        zt_ratelimit_set_add(ud, p);
}

int zt_config_ratelimit_load_string(struct zt_ratelimit_set *s, const char *file, const char *yaml,
                                    size_t len, struct zt_route_errors *errs)
{
    return zt_config_routes_each(file, yaml, len, errs, add_one, s);
}
