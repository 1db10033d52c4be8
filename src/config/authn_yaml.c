/* RequestAuthentication YAML into jwt/authn.h policies. See config/authn.h.
 *
 * On the AuthorizationPolicy reader's walkers (authz_yaml.c): the same
 * targetRefs attachment, strict keys and messages. */
#include "config/authn.h"
#include "config/authz.h"
#include "config/routes.h"
#include "config/routes_int.h"

#include "base/alloc.h"
#include "base/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_AN_URI 2048

typedef struct zt_config_routes_ctx ctx_t;

/* A list of scalars (key of m) into a heap array of copies. */
static int read_strs(ctx_t *c, const struct ynode *m, const char *key, const char *path,
                     const char *const **out, size_t *n)
{
    const struct ynode *l;
    int rc = zt_config_authz_scalars(c, m, key, path, &l);
    if (rc || !l)
        return rc;
    const char **v = zt_xcalloc(l->n_items ? l->n_items : 1, sizeof(*v));
    for (size_t i = 0; i < l->n_items; i++)
        v[i] = zt_xstrdup(l->items[i]->value);
    *out = v;
    *n = l->n_items;
    return 0;
}

static int read_bool(ctx_t *c, const struct ynode *m, const char *key, const char *path, bool *out)
{
    const struct ynode *v = zt_config_routes_get(m, key);
    char sub[PATH_LEN];
    if (!v)
        return 0;
    zt_config_routes_key(sub, path, key);
    if (v->type == YAML_SCALAR_NODE && !strcmp(v->value, "true"))
        *out = true;
    else if (v->type == YAML_SCALAR_NODE && !strcmp(v->value, "false"))
        *out = false;
    else
        return zt_config_routes_fail(c, v, sub, "expected true or false");
    return 0;
}

static int read_from_headers(ctx_t *c, const struct ynode *rn, const char *path,
                             struct zt_jwt_rule_spec *r)
{
    static const char *const keys[] = {"name", "prefix", NULL};
    const struct ynode *l;
    char sub[PATH_LEN], item[PATH_LEN];
    int rc = zt_config_routes_list(c, rn, "fromHeaders", path, ZT_JWT_RULE_LIST_MAX, &l);
    if (rc || !l)
        return rc;
    zt_config_routes_key(sub, path, "fromHeaders");
    struct zt_jwt_from_header *v = zt_xcalloc(l->n_items ? l->n_items : 1, sizeof(*v));
    r->from_headers = v;
    for (size_t i = 0; i < l->n_items && !rc; i++) {
        char *name = NULL, *prefix = NULL;
        zt_config_routes_idx(item, sub, i);
        if ((rc = zt_config_authz_strict_keys(c, l->items[i], item, keys)) ||
            (rc = zt_config_routes_str(c, l->items[i], "name", item, true, MAX_NAME, &name)) ||
            (rc =
                 zt_config_routes_str(c, l->items[i], "prefix", item, false, MAX_VALUE, &prefix))) {
            free(name);
            break;
        }
        v[r->n_from_headers++] = (struct zt_jwt_from_header){name, prefix};
    }
    return rc;
}

static int read_claim_headers(ctx_t *c, const struct ynode *rn, const char *path,
                              struct zt_jwt_rule_spec *r)
{
    static const char *const keys[] = {"header", "claim", NULL};
    const struct ynode *l;
    char sub[PATH_LEN], item[PATH_LEN];
    int rc = zt_config_routes_list(c, rn, "outputClaimToHeaders", path, ZT_JWT_RULE_LIST_MAX, &l);
    if (rc || !l)
        return rc;
    zt_config_routes_key(sub, path, "outputClaimToHeaders");
    struct zt_jwt_claim_header *v = zt_xcalloc(l->n_items ? l->n_items : 1, sizeof(*v));
    r->output_claim_to_headers = v;
    for (size_t i = 0; i < l->n_items && !rc; i++) {
        char *header = NULL, *claim = NULL;
        zt_config_routes_idx(item, sub, i);
        if ((rc = zt_config_authz_strict_keys(c, l->items[i], item, keys)) ||
            (rc = zt_config_routes_str(c, l->items[i], "header", item, true, MAX_NAME, &header)) ||
            (rc = zt_config_routes_str(c, l->items[i], "claim", item, true, MAX_NAME, &claim))) {
            free(header);
            break;
        }
        v[r->n_output_claim_to_headers++] = (struct zt_jwt_claim_header){header, claim};
    }
    return rc;
}

static int read_rule(ctx_t *c, const struct ynode *rn, const char *path, struct zt_jwt_rule_spec *r)
{
    static const char *const keys[] = {"issuer",
                                       "audiences",
                                       "jwksUri",
                                       "jwks",
                                       "fromHeaders",
                                       "fromParams",
                                       "fromCookies",
                                       "outputPayloadToHeader",
                                       "forwardOriginalToken",
                                       "outputClaimToHeaders",
                                       "timeout",
                                       NULL};
    char *s = NULL;
    int rc;
    if ((rc = zt_config_authz_strict_keys(c, rn, path, keys)) ||
        (rc = zt_config_routes_str(c, rn, "issuer", path, true, MAX_VALUE, &s)))
        return rc;
    r->issuer = s;
    if ((rc = read_strs(c, rn, "audiences", path, &r->audiences, &r->n_audiences)) ||
        (rc = zt_config_routes_str(c, rn, "jwksUri", path, false, MAX_AN_URI, &s)))
        return rc;
    r->jwks_uri = s;
    if ((rc = zt_config_routes_str(c, rn, "jwks", path, false, ZT_JWT_JWKS_MAX, &s)))
        return rc;
    r->jwks = s;
    if ((rc = read_from_headers(c, rn, path, r)) ||
        (rc = read_strs(c, rn, "fromParams", path, &r->from_params, &r->n_from_params)) ||
        (rc = read_strs(c, rn, "fromCookies", path, &r->from_cookies, &r->n_from_cookies)) ||
        (rc = zt_config_routes_str(c, rn, "outputPayloadToHeader", path, false, MAX_NAME, &s)))
        return rc;
    r->output_payload_to_header = s;
    if ((rc = read_bool(c, rn, "forwardOriginalToken", path, &r->forward_original_token)) ||
        (rc = read_claim_headers(c, rn, path, r)))
        return rc;

    char sub[PATH_LEN];
    const struct ynode *n;
    if (r->jwks && r->jwks_uri) {
        zt_config_routes_key(sub, path, "jwks");
        return zt_config_routes_fail(c, zt_config_routes_get(rn, "jwks"), sub,
                                     "set only one of jwks and jwksUri");
    }
    if (!r->jwks && !r->jwks_uri)
        return zt_config_routes_fail(c, rn, path,
                                     "set jwks or jwksUri (discovering the keys from the issuer's "
                                     "OpenID configuration is not supported)");
    if (r->jwks_uri && strncmp(r->jwks_uri, "https://", 8) != 0 &&
        strncmp(r->jwks_uri, "http://", 7) != 0) {
        zt_config_routes_key(sub, path, "jwksUri");
        return zt_config_routes_fail(c, zt_config_routes_get(rn, "jwksUri"), sub,
                                     "must be an http:// or https:// URL");
    }
    if ((n = zt_config_routes_get(rn, "timeout"))) {
        uint32_t ms;
        if ((rc = zt_config_routes_duration(c, rn, "timeout", path, &ms)))
            return rc;
        zt_config_routes_key(sub, path, "timeout");
        zt_config_routes_warn(c, n, sub, "the JWKS fetcher's own timeout applies");
    }
    /* Compiled once here so that its errors name the field. */
    char err[256];
    struct zt_jwt_rules *trial = zt_jwt_rules_new();
    rc = zt_jwt_rules_add(trial, r, err, sizeof(err));
    zt_jwt_rules_free(trial);
    if (rc < 0)
        return zt_config_routes_fail(c, rn, path, "%s", err);
    return 0;
}

static int read_policy(ctx_t *c, const struct ynode *doc, struct zt_jwt_authn_policy *p, bool *skip)
{
    static const char *const spec_keys[] = {"selector", "targetRef", "targetRefs", "jwtRules",
                                            NULL};
    const struct ynode *spec, *rules;
    char sub[PATH_LEN];
    int rc = zt_config_routes_object(c, doc, "RequestAuthentication", &p->name, &p->ns);
    if (rc)
        return rc;
    c->ns = p->ns;
    spec = zt_config_routes_get(doc, "spec");
    if (!spec)
        return (*skip = true), 0;
    if ((rc = zt_config_authz_strict_keys(c, spec, "spec", spec_keys)) ||
        (rc = zt_config_authz_targets(c, spec, p->ns, &p->targets, &p->n_targets, skip)) || *skip)
        return rc;
    if ((rc = zt_config_routes_list(c, spec, "jwtRules", "spec", ZT_JWT_RULES_MAX, &rules)) ||
        !rules)
        return rc;
    p->rules = zt_xcalloc(rules->n_items ? rules->n_items : 1, sizeof(*p->rules));
    for (size_t i = 0; i < rules->n_items && !rc; i++) {
        zt_config_routes_idx(sub, "spec.jwtRules", i);
        p->n_rules++;
        rc = read_rule(c, rules->items[i], sub, &p->rules[i]);
    }
    return rc;
}

int zt_config_authn_parse_doc(const char *file, const struct ynode *doc,
                              struct zt_route_errors *errs, struct zt_jwt_authn_policy **out)
{
    static const char *const versions[] = {"security.istio.io/v1", "security.istio.io/v1beta1",
                                           NULL};
    ctx_t c = {.file = file, .errs = errs};
    bool skip = false, is;
    int rc;

    *out = NULL;
    if ((rc = zt_config_routes_kind(&c, doc, "RequestAuthentication", versions, &is)) || !is)
        return rc;
    struct zt_jwt_authn_policy *p = zt_xcalloc(1, sizeof(*p));
    rc = read_policy(&c, doc, p, &skip);
    if (rc || skip)
        zt_jwt_authn_policy_free(p);
    else
        *out = p;
    return rc;
}

static void add_one(void *ud, const char *file, const struct ynode *doc,
                    struct zt_route_errors *errs)
{
    struct zt_jwt_authn_policy *p;
    if (zt_config_authn_parse_doc(file, doc, errs, &p) == 0 && p)
        zt_jwt_authn_policies_add(ud, p);
}

int zt_config_authn_load_string(struct zt_jwt_authn_policies *l, const char *file, const char *yaml,
                                size_t len, struct zt_route_errors *errs)
{
    return zt_config_routes_each(file, yaml, len, errs, add_one, l);
}
