/* AuthorizationPolicy YAML into authz/l7.h policies. See config/authz.h.
 *
 * Built on the HTTPRoute reader's walkers (routes_int.h): the same node
 * trees, field paths, work budget and "<file>:<line>: <object>: <path>:
 * <why>" messages. Unlike routes, unknown fields inside a rule are errors:
 * a field we would ignore could make an ALLOW wider or a DENY narrower. */
#include "config/authz.h"
#include "config/routes.h"
#include "config/routes_int.h"

#include "base/alloc.h"
#include "base/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_AZ_RULES ZT_AUTHZ_L7_MAX_RULES
#define MAX_AZ_PARTS ZT_AUTHZ_L7_MAX_PARTS
#define MAX_AZ_VALUES ZT_AUTHZ_L7_MAX_VALUES
#define MAX_AZ_TARGETS ZT_AUTHZ_L7_MAX_TARGETS
#define MAX_AZ_VALUE ZT_AUTHZ_L7_MAX_VALUE

typedef struct zt_config_routes_ctx ctx_t;

/* Every key of mapping m is in known (an error otherwise), then the
 * shared checks (duplicates, budget). */
int zt_config_authz_strict_keys(ctx_t *c, const struct ynode *m, const char *path,
                                const char *const *known)
{
    char sub[PATH_LEN];
    int rc = zt_config_routes_want(c, m, YAML_MAPPING_NODE, path);
    if (rc)
        return rc;
    for (size_t i = 0; i < m->n_pairs; i++) {
        const struct ynode *k = m->pairs[i].key;
        if (k->type != YAML_SCALAR_NODE || zt_config_routes_one_of(k->value, known))
            continue;
        zt_config_routes_key(sub, path, k->value);
        return zt_config_routes_fail(c, k, sub,
                                     "not supported here (the policy is refused rather than "
                                     "read without it)");
    }
    return zt_config_routes_check_keys(c, m, path, known, NULL);
}

/* Field key of m as a list of non-empty scalars (NULL if absent). */
int zt_config_authz_scalars(ctx_t *c, const struct ynode *m, const char *key, const char *path,
                            const struct ynode **out)
{
    char sub[PATH_LEN];
    int rc = zt_config_routes_list(c, m, key, path, MAX_AZ_VALUES, out);
    if (rc || !*out)
        return rc;
    zt_config_routes_key(sub, path, key);
    if ((c->work += (unsigned)(*out)->n_items) > WORK_BUDGET)
        return zt_config_routes_fail(c, *out, sub, "document too complex (aliases?)");
    for (size_t i = 0; i < (*out)->n_items; i++) {
        const struct ynode *n = (*out)->items[i];
        char item[PATH_LEN];
        zt_config_routes_idx(item, sub, i);
        if ((rc = zt_config_routes_want(c, n, YAML_SCALAR_NODE, item)))
            return rc;
        if (n->len == 0)
            return zt_config_routes_fail(c, n, item, "must not be empty");
        if (n->len > MAX_AZ_VALUE)
            return zt_config_routes_fail(c, n, item, "longer than %d bytes", MAX_AZ_VALUE);
        if (strlen(n->value) != n->len)
            return zt_config_routes_fail(c, n, item, "contains a NUL byte");
    }
    return 0;
}

/* One value into slot; on failure why (appended to the quoted value). */
typedef int item_fn(const ctx_t *c, const char *v, unsigned flags, void *slot, char *why,
                    size_t why_len);

static int item_str(const ctx_t *c, const char *v, unsigned flags, void *slot, char *why,
                    size_t why_len)
{
    const char *reason;
    if (!zt_authz_l7_str_parse(v, flags, slot, &reason))
        return 0;
    return zt_errf(why, why_len, ZT_E_CONFIG, ": %s", reason);
}

static int item_cidr(const ctx_t *c, const char *v, unsigned flags, void *slot, char *why,
                     size_t why_len)
{
    if (!zt_cidr_parse(v, slot))
        return 0;
    return zt_errf(why, why_len, ZT_E_CONFIG, " is not an IP address or CIDR block");
}

static int item_port(const ctx_t *c, const char *v, unsigned flags, void *slot, char *why,
                     size_t why_len)
{
    char *end;
    unsigned long p = strtoul(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end || strlen(v) > 5 || p > 65535)
        return zt_errf(why, why_len, ZT_E_CONFIG, " is not a port (0..65535)");
    *(uint16_t *)slot = (uint16_t)p;
    return 0;
}

/* Istio's CheckServiceAccount: "sa" (in the policy's namespace) or
 * "ns/sa", no wildcard; kept as the exact string "ns/sa". */
static int item_sa(const ctx_t *c, const char *v, unsigned flags, void *slot, char *why,
                   size_t why_len)
{
    struct zt_authz_l7_str *out = slot;
    const char *slash = strchr(v, '/');
    char buf[2 * ZT_AUTHZ_L7_MAX_SA + 2];
    if (strchr(v, '*'))
        return zt_errf(why, why_len, ZT_E_CONFIG, ": wildcards are not allowed here");
    if (strlen(v) > ZT_AUTHZ_L7_MAX_SA)
        return zt_errf(why, why_len, ZT_E_CONFIG, ": longer than %d bytes", ZT_AUTHZ_L7_MAX_SA);
    if (slash && (slash == v || !slash[1] || strchr(slash + 1, '/')))
        return zt_errf(why, why_len, ZT_E_CONFIG,
                       ": expected \"serviceAccount\" or \"namespace/serviceAccount\"");
    snprintf(buf, sizeof(buf), "%s%s%s", slash ? "" : c->ns, slash ? "" : "/", v);
    memset(out, 0, sizeof(*out));
    out->kind = ZT_AUTHZ_L7_EXACT;
    out->v = zt_xstrdup(buf);
    out->len = (uint32_t)strlen(buf);
    return 0;
}

/* Field key of m, a list of scalars, into *v_ptr / *n (elements of size
 * bytes, each read by fn). Absent: left empty. */
static int read_list(ctx_t *c, const struct ynode *m, const char *key, const char *path,
                     unsigned flags, item_fn *fn, size_t size, void *v_ptr, size_t *n)
{
    const struct ynode *l;
    char sub[PATH_LEN], item[PATH_LEN], why[160];
    void **v = v_ptr;
    int rc = zt_config_authz_scalars(c, m, key, path, &l);
    if (rc || !l)
        return rc;
    zt_config_routes_key(sub, path, key);
    *v = zt_xcalloc(l->n_items ? l->n_items : 1, size);
    for (size_t i = 0; i < l->n_items; i++) {
        if (fn(c, l->items[i]->value, flags, (char *)*v + *n * size, why, sizeof(why))) {
            zt_config_routes_idx(item, sub, i);
            return zt_config_routes_fail(c, l->items[i], item, "\"%.80s\"%s", l->items[i]->value,
                                         why);
        }
        (*n)++;
    }
    return 0;
}

static int read_strs(ctx_t *c, const struct ynode *m, const char *key, const char *path,
                     unsigned flags, struct zt_authz_l7_strs *out)
{
    return read_list(c, m, key, path, flags, item_str, sizeof(*out->v), &out->v, &out->n);
}

static int read_cidrs(ctx_t *c, const struct ynode *m, const char *key, const char *path,
                      struct zt_authz_l7_cidrs *out)
{
    return read_list(c, m, key, path, 0, item_cidr, sizeof(*out->v), &out->v, &out->n);
}

static int read_ports(ctx_t *c, const struct ynode *m, const char *key, const char *path,
                      struct zt_authz_l7_ports *out)
{
    return read_list(c, m, key, path, 0, item_port, sizeof(*out->v), &out->v, &out->n);
}

static int read_sas(ctx_t *c, const struct ynode *m, const char *key, const char *path,
                    struct zt_authz_l7_strs *out)
{
    const struct ynode *l = zt_config_routes_get(m, key);
    char sub[PATH_LEN];
    zt_config_routes_key(sub, path, key);
    if (l && l->type == YAML_SEQUENCE_NODE && l->n_items > ZT_AUTHZ_L7_MAX_SAS)
        return zt_config_routes_fail(c, l, sub, "more than %d values", ZT_AUTHZ_L7_MAX_SAS);
    return read_list(c, m, key, path, 0, item_sa, sizeof(*out->v), &out->v, &out->n);
}

static int read_source(ctx_t *c, const struct ynode *fn, const char *path,
                       struct zt_authz_l7_source *s)
{
    static const char *const from_keys[] = {"source", NULL};
    static const char *const keys[] = {"principals",
                                       "notPrincipals",
                                       "requestPrincipals",
                                       "notRequestPrincipals",
                                       "namespaces",
                                       "notNamespaces",
                                       "ipBlocks",
                                       "notIpBlocks",
                                       "remoteIpBlocks",
                                       "notRemoteIpBlocks",
                                       "serviceAccounts",
                                       "notServiceAccounts",
                                       NULL};
    const struct ynode *n;
    char sub[PATH_LEN];
    int rc;
    if ((rc = zt_config_authz_strict_keys(c, fn, path, from_keys)))
        return rc;
    zt_config_routes_key(sub, path, "source");
    if (!(n = zt_config_routes_get(fn, "source")))
        return zt_config_routes_fail(c, fn, sub, "required");
    if ((rc = zt_config_authz_strict_keys(c, n, sub, keys)) ||
        (rc = read_strs(c, n, "principals", sub, 0, &s->principals)) ||
        (rc = read_strs(c, n, "notPrincipals", sub, 0, &s->not_principals)) ||
        (rc = read_strs(c, n, "requestPrincipals", sub, 0, &s->request_principals)) ||
        (rc = read_strs(c, n, "notRequestPrincipals", sub, 0, &s->not_request_principals)) ||
        (rc = read_strs(c, n, "namespaces", sub, 0, &s->namespaces)) ||
        (rc = read_strs(c, n, "notNamespaces", sub, 0, &s->not_namespaces)) ||
        (rc = read_cidrs(c, n, "ipBlocks", sub, &s->ip_blocks)) ||
        (rc = read_cidrs(c, n, "notIpBlocks", sub, &s->not_ip_blocks)) ||
        (rc = read_cidrs(c, n, "remoteIpBlocks", sub, &s->remote_ip_blocks)) ||
        (rc = read_cidrs(c, n, "notRemoteIpBlocks", sub, &s->not_remote_ip_blocks)) ||
        (rc = read_sas(c, n, "serviceAccounts", sub, &s->service_accounts)) ||
        (rc = read_sas(c, n, "notServiceAccounts", sub, &s->not_service_accounts)))
        return rc;
    const char *why = zt_authz_l7_source_invalid(s);
    return why ? zt_config_routes_fail(c, n, sub, "%s", why) : 0;
}

static int read_operation(ctx_t *c, const struct ynode *tn, const char *path,
                          struct zt_authz_l7_operation *o)
{
    static const char *const to_keys[] = {"operation", NULL};
    static const char *const keys[] = {"hosts",      "notHosts", "ports",    "notPorts", "methods",
                                       "notMethods", "paths",    "notPaths", NULL};
    const struct ynode *n;
    char sub[PATH_LEN];
    int rc;
    if ((rc = zt_config_authz_strict_keys(c, tn, path, to_keys)))
        return rc;
    zt_config_routes_key(sub, path, "operation");
    if (!(n = zt_config_routes_get(tn, "operation")))
        return zt_config_routes_fail(c, tn, sub, "required");
    if ((rc = zt_config_authz_strict_keys(c, n, sub, keys)) ||
        (rc = read_strs(c, n, "hosts", sub, ZT_AUTHZ_L7_F_HOST, &o->hosts)) ||
        (rc = read_strs(c, n, "notHosts", sub, ZT_AUTHZ_L7_F_HOST, &o->not_hosts)) ||
        (rc = read_strs(c, n, "methods", sub, 0, &o->methods)) ||
        (rc = read_strs(c, n, "notMethods", sub, 0, &o->not_methods)) ||
        (rc = read_strs(c, n, "paths", sub, ZT_AUTHZ_L7_F_PATH, &o->paths)) ||
        (rc = read_strs(c, n, "notPaths", sub, ZT_AUTHZ_L7_F_PATH, &o->not_paths)) ||
        (rc = read_ports(c, n, "ports", sub, &o->ports)) ||
        (rc = read_ports(c, n, "notPorts", sub, &o->not_ports)))
        return rc;
    const char *why = zt_authz_l7_operation_invalid(o);
    return why ? zt_config_routes_fail(c, n, sub, "%s", why) : 0;
}

static int read_when(ctx_t *c, const struct ynode *n, const char *path, struct zt_authz_l7_when *w)
{
    static const char *const keys[] = {"key", "values", "notValues", NULL};
    char *key = NULL, sub[PATH_LEN], why[256];
    int rc;
    if ((rc = zt_config_authz_strict_keys(c, n, path, keys)) ||
        (rc = zt_config_routes_str(c, n, "key", path, true, MAX_AZ_VALUE, &key)))
        return rc;
    zt_config_routes_key(sub, path, "key");
    rc = zt_authz_l7_when_key_parse(key, w, why, sizeof(why));
    free(key);
    if (rc)
        return zt_config_routes_fail(c, zt_config_routes_get(n, "key"), sub, "%s", why);
    switch (w->key) {
    case ZT_AUTHZ_L7_K_SOURCE_IP:
    case ZT_AUTHZ_L7_K_REMOTE_IP:
    case ZT_AUTHZ_L7_K_DEST_IP:
        rc = read_cidrs(c, n, "values", path, &w->cidrs);
        if (!rc)
            rc = read_cidrs(c, n, "notValues", path, &w->not_cidrs);
        break;
    case ZT_AUTHZ_L7_K_DEST_PORT:
        rc = read_ports(c, n, "values", path, &w->ports);
        if (!rc)
            rc = read_ports(c, n, "notValues", path, &w->not_ports);
        break;
    case ZT_AUTHZ_L7_K_SOURCE_SA:
        rc = read_sas(c, n, "values", path, &w->values);
        if (!rc)
            rc = read_sas(c, n, "notValues", path, &w->not_values);
        break;
    default:
        rc = read_strs(c, n, "values", path, 0, &w->values);
        if (!rc)
            rc = read_strs(c, n, "notValues", path, 0, &w->not_values);
    }
    if (rc)
        return rc;
    if (!(w->cidrs.n | w->not_cidrs.n | w->ports.n | w->not_ports.n | w->values.n |
          w->not_values.n))
        return zt_config_routes_fail(c, n, path, "values or notValues required");
    return 0;
}

static int read_rule(ctx_t *c, const struct ynode *rn, const char *path, struct zt_authz_l7_rule *r)
{
    static const char *const keys[] = {"from", "to", "when", NULL};
    const struct ynode *from, *to, *when;
    char sub[PATH_LEN], item[PATH_LEN];
    int rc;
    if ((rc = zt_config_authz_strict_keys(c, rn, path, keys)) ||
        (rc = zt_config_routes_list(c, rn, "from", path, MAX_AZ_PARTS, &from)) ||
        (rc = zt_config_routes_list(c, rn, "to", path, MAX_AZ_PARTS, &to)) ||
        (rc = zt_config_routes_list(c, rn, "when", path, MAX_AZ_PARTS, &when)))
        return rc;
    if (from && from->n_items) {
        zt_config_routes_key(sub, path, "from");
        r->from = zt_xcalloc(from->n_items, sizeof(*r->from));
        for (size_t i = 0; i < from->n_items && !rc; i++) {
            zt_config_routes_idx(item, sub, i);
            r->n_from++;
            rc = read_source(c, from->items[i], item, &r->from[i]);
        }
    }
    if (!rc && to && to->n_items) {
        zt_config_routes_key(sub, path, "to");
        r->to = zt_xcalloc(to->n_items, sizeof(*r->to));
        for (size_t i = 0; i < to->n_items && !rc; i++) {
            zt_config_routes_idx(item, sub, i);
            r->n_to++;
            rc = read_operation(c, to->items[i], item, &r->to[i]);
        }
    }
    if (!rc && when && when->n_items) {
        zt_config_routes_key(sub, path, "when");
        r->when = zt_xcalloc(when->n_items, sizeof(*r->when));
        for (size_t i = 0; i < when->n_items && !rc; i++) {
            zt_config_routes_idx(item, sub, i);
            r->n_when++;
            rc = read_when(c, when->items[i], item, &r->when[i]);
        }
    }
    return rc;
}

/* One targetRef into targets[*n] (or a warning when ignored). */
static int read_target(ctx_t *c, const struct ynode *n, const char *path, const char *pol_ns,
                       struct zt_authz_l7_target *targets, size_t *n_targets)
{
    static const char *const keys[] = {"group", "kind", "name", "namespace", NULL};
    char *group = NULL, *kind = NULL, *name = NULL, *ns = NULL;
    int rc, tk = -1;
    if ((rc = zt_config_routes_check_keys(c, n, path, keys, NULL)) ||
        (rc = zt_config_routes_group(c, n, path, &group)) ||
        (rc = zt_config_routes_str(c, n, "kind", path, true, MAX_NAME, &kind)) ||
        (rc = zt_config_routes_str(c, n, "name", path, true, MAX_NAME, &name)) ||
        (rc = zt_config_routes_str(c, n, "namespace", path, false, 63, &ns)))
        goto out;
    if (!strcmp(kind, "Gateway") && group && !strcmp(group, "gateway.networking.k8s.io"))
        tk = ZT_AUTHZ_L7_GATEWAY;
    else if (!strcmp(kind, "GatewayClass") && group && !strcmp(group, "gateway.networking.k8s.io"))
        tk = ZT_AUTHZ_L7_GATEWAY_CLASS;
    else if (!strcmp(kind, "Service") && zt_config_routes_core_group(group))
        tk = ZT_AUTHZ_L7_SERVICE;
    else if (!strcmp(kind, "ServiceEntry") && group && !strcmp(group, "networking.istio.io"))
        tk = ZT_AUTHZ_L7_SERVICE_ENTRY;
    if (tk < 0) {
        rc = zt_config_routes_fail(c, n, path,
                                   "kind %s of group \"%s\" is not a target at a waypoint "
                                   "(Gateway or GatewayClass of gateway.networking.k8s.io, Service "
                                   "of \"\", ServiceEntry of networking.istio.io)",
                                   kind, group ? group : "");
        goto out;
    }
    if (ns && strcmp(ns, pol_ns) != 0) {
        zt_config_routes_warn(c, n, path, "cross-namespace reference to %s/%s ignored", ns, name);
        goto out;
    }
    if (tk == ZT_AUTHZ_L7_GATEWAY_CLASS && strcmp(name, "istio-waypoint") != 0) {
        zt_config_routes_warn(c, n, path, "GatewayClass %s is not istio-waypoint: ignored", name);
        goto out;
    }
    targets[(*n_targets)++] = (struct zt_authz_l7_target){
        (uint8_t)tk, zt_xstrdup(tk == ZT_AUTHZ_L7_GATEWAY_CLASS ? "" : pol_ns), name};
    name = NULL;
out:
    free(group);
    free(kind);
    free(name);
    free(ns);
    return rc;
}

int zt_config_authz_targets(ctx_t *c, const struct ynode *spec, const char *pol_ns,
                            struct zt_authz_l7_target **targets, size_t *n_targets, bool *skip)
{
    const struct ynode *refs, *ref, *sel;
    char sub[PATH_LEN];
    int rc;
    if ((rc = zt_config_routes_list(c, spec, "targetRefs", "spec", MAX_AZ_TARGETS, &refs)))
        return rc;
    ref = zt_config_routes_get(spec, "targetRef");
    sel = zt_config_routes_get(spec, "selector");
    if (ref && refs)
        return zt_config_routes_fail(c, ref, "spec.targetRef",
                                     "set only one of targetRef and "
                                     "targetRefs");
    if (sel && (ref || (refs && refs->n_items)))
        return zt_config_routes_fail(c, sel, "spec.selector",
                                     "set only one of selector and targetRefs");
    if (!ref && !(refs && refs->n_items))
        return (*skip = true), 0; /* selector or namespace-wide: node proxies only */
    *targets = zt_xcalloc(refs ? refs->n_items : 1, sizeof(**targets));
    if (ref)
        rc = read_target(c, ref, "spec.targetRef", pol_ns, *targets, n_targets);
    for (size_t i = 0; refs && i < refs->n_items && !rc; i++) {
        zt_config_routes_idx(sub, "spec.targetRefs", i);
        rc = read_target(c, refs->items[i], sub, pol_ns, *targets, n_targets);
    }
    if (rc)
        return rc;
    if (!*n_targets) {
        zt_config_routes_warn(c, spec, "spec", "no target applies: policy ignored");
        return (*skip = true), 0;
    }
    return 0;
}

static int read_dry_run(ctx_t *c, const struct ynode *md, struct zt_authz_l7_policy *p)
{
    static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True", NULL};
    static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False", NULL};
    const struct ynode *an = zt_config_routes_get(md, "annotations"), *v;
    if (!an)
        return 0;
    if (an->type != YAML_MAPPING_NODE)
        return zt_config_routes_fail(c, an, "metadata.annotations", "expected a mapping");
    if (!(v = zt_config_routes_get(an, "istio.io/dry-run")))
        return 0;
    if (v->type == YAML_SCALAR_NODE && zt_config_routes_one_of(v->value, yes))
        p->dry_run = true;
    else if (!(v->type == YAML_SCALAR_NODE && zt_config_routes_one_of(v->value, no)))
        return zt_config_routes_fail(c, v, "metadata.annotations.istio.io/dry-run",
                                     "expected \"true\" or \"false\"");
    return 0;
}

/* Returns 0 with *skip set for a policy that is not for waypoints. */
static int read_policy(ctx_t *c, const struct ynode *doc, struct zt_authz_l7_policy *p, bool *skip)
{
    static const char *const spec_keys[] = {"selector", "targetRef", "targetRefs", "action",
                                            "provider", "rules",     NULL};
    const struct ynode *md = zt_config_routes_get(doc, "metadata"), *spec, *rules;
    char *action = NULL, sub[PATH_LEN];
    int rc = zt_config_routes_object(c, doc, "AuthorizationPolicy", &p->name, &p->ns);
    if (rc)
        return rc;
    c->ns = p->ns;
    if ((rc = read_dry_run(c, md, p)))
        return rc;
    spec = zt_config_routes_get(doc, "spec");
    if (!spec) /* spec: {} is ALLOW with no rules; absent reads the same */
        return (*skip = true), 0;
    if ((rc = zt_config_routes_check_keys(c, spec, "spec", spec_keys, NULL)) ||
        (rc = zt_config_routes_str(c, spec, "action", "spec", false, 16, &action)))
        return rc;
    if (!action || !strcmp(action, "ALLOW"))
        p->action = ZT_AUTHZ_L7_ALLOW;
    else if (!strcmp(action, "DENY"))
        p->action = ZT_AUTHZ_L7_DENY;
    else if (!strcmp(action, "AUDIT"))
        p->action = ZT_AUTHZ_L7_AUDIT;
    else if (!strcmp(action, "CUSTOM"))
        rc = zt_config_routes_fail(c, zt_config_routes_get(spec, "action"), "spec.action",
                                   "CUSTOM (external authorization) is not supported by this "
                                   "waypoint: policy not loaded");
    else
        rc = zt_config_routes_fail(c, zt_config_routes_get(spec, "action"), "spec.action",
                                   "\"%.20s\" is not ALLOW, DENY, AUDIT or CUSTOM", action);
    free(action);
    if (!rc && zt_config_routes_get(spec, "provider")) /* CUSTOM was refused above */
        rc = zt_config_routes_fail(c, zt_config_routes_get(spec, "provider"), "spec.provider",
                                   "only for action CUSTOM");
    if (rc)
        return rc;
    if ((rc = zt_config_authz_targets(c, spec, p->ns, &p->targets, &p->n_targets, skip)) || *skip)
        return rc;
    if ((rc = zt_config_routes_list(c, spec, "rules", "spec", MAX_AZ_RULES, &rules)))
        return rc;
    /* Istio's validation refuses it: such a policy could never match. */
    if (p->action == ZT_AUTHZ_L7_DENY && !(rules && rules->n_items))
        return zt_config_routes_fail(c, spec, "spec.rules",
                                     "DENY without rules would never match; add an empty rule {} "
                                     "to deny every request");
    if (!rules)
        return 0;
    p->rules = zt_xcalloc(rules->n_items ? rules->n_items : 1, sizeof(*p->rules));
    for (size_t i = 0; i < rules->n_items && !rc; i++) {
        zt_config_routes_idx(sub, "spec.rules", i);
        p->n_rules++;
        rc = read_rule(c, rules->items[i], sub, &p->rules[i]);
    }
    return rc;
}

int zt_config_authz_parse_doc(const char *file, const struct ynode *doc,
                              struct zt_route_errors *errs, struct zt_authz_l7_policy **out)
{
    static const char *const versions[] = {"security.istio.io/v1", "security.istio.io/v1beta1",
                                           NULL};
    ctx_t c = {.file = file, .errs = errs};
    struct zt_authz_l7_policy *p;
    bool skip = false, is;
    int rc;

    *out = NULL;
    if ((rc = zt_config_routes_kind(&c, doc, "AuthorizationPolicy", versions, &is)) || !is)
        return rc;
    p = zt_xcalloc(1, sizeof(*p));
    rc = read_policy(&c, doc, p, &skip);
    if (rc || skip)
        zt_authz_l7_policy_free(p);
    else
        *out = p;
    return rc;
}

static void add_one(void *ud, const char *file, const struct ynode *doc,
                    struct zt_route_errors *errs)
{
    struct zt_authz_l7_policy *p;
    if (zt_config_authz_parse_doc(file, doc, errs, &p) == 0 && p)
        zt_authz_l7_set_add(ud, p);
}

int zt_config_authz_load_string(struct zt_authz_l7_set *s, const char *file, const char *yaml,
                                size_t len, struct zt_route_errors *errs)
{
    return zt_config_routes_each(file, yaml, len, errs, add_one, s);
}
