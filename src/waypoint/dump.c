/* The waypoint's policies in force as JSON for /config_dump, in the shape
 * users wrote them (Istio's AuthorizationPolicy and RequestAuthentication
 * specs, our RateLimit), with each rate limit's counters. */
#include "waypoint/waypoint_int.h"

#include "route/dump.h"
#include "state/ip.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *must(json_t *j)
{
    if (!j)
        abort(); /* jansson fails only for memory */
    return j;
}

static void set(json_t *o, const char *k, json_t *v)
{
    if (json_object_set_new(o, k, must(v)) < 0)
        abort();
}

static void push(json_t *a, json_t *v)
{
    if (json_array_append_new(a, must(v)) < 0)
        abort();
}

static json_t *str(const char *s)
{
    return zt_json_str(s);
}

/* A string match back in Istio's form: "v", "v*", "*v", "*" (paths keep
 * their template as written). */
static json_t *match_json(const struct zt_authz_l7_str *m)
{
    char buf[ZT_AUTHZ_L7_MAX_VALUE + 2];
    switch (m->kind) {
    case ZT_AUTHZ_L7_PREFIX:
        snprintf(buf, sizeof(buf), "%s*", m->v);
        break;
    case ZT_AUTHZ_L7_SUFFIX:
        snprintf(buf, sizeof(buf), "*%s", m->v);
        break;
    case ZT_AUTHZ_L7_PRESENCE:
        snprintf(buf, sizeof(buf), "*");
        break;
    default:
        snprintf(buf, sizeof(buf), "%s", m->v);
        break;
    }
    return str(buf);
}

/* Adds key: [values] to o when there are any. */
static void strs(json_t *o, const char *key, const struct zt_authz_l7_strs *l)
{
    if (!l->n)
        return;
    json_t *a = must(json_array());
    for (size_t i = 0; i < l->n; i++)
        push(a, match_json(&l->v[i]));
    set(o, key, a);
}

static void cidrs(json_t *o, const char *key, const struct zt_authz_l7_cidrs *l)
{
    if (!l->n)
        return;
    json_t *a = must(json_array());
    char buf[64];
    for (size_t i = 0; i < l->n; i++)
        push(a, str(zt_cidr_format(&l->v[i], buf, sizeof(buf))));
    set(o, key, a);
}

static void ports(json_t *o, const char *key, const struct zt_authz_l7_ports *l)
{
    if (!l->n)
        return;
    json_t *a = must(json_array());
    char buf[8];
    for (size_t i = 0; i < l->n; i++) {
        snprintf(buf, sizeof(buf), "%u", (unsigned)l->v[i]);
        push(a, str(buf));
    }
    set(o, key, a);
}

static json_t *source_json(const struct zt_authz_l7_source *s)
{
    json_t *o = must(json_object());
    strs(o, "principals", &s->principals);
    strs(o, "notPrincipals", &s->not_principals);
    strs(o, "namespaces", &s->namespaces);
    strs(o, "notNamespaces", &s->not_namespaces);
    strs(o, "requestPrincipals", &s->request_principals);
    strs(o, "notRequestPrincipals", &s->not_request_principals);
    strs(o, "serviceAccounts", &s->service_accounts);
    strs(o, "notServiceAccounts", &s->not_service_accounts);
    cidrs(o, "ipBlocks", &s->ip_blocks);
    cidrs(o, "notIpBlocks", &s->not_ip_blocks);
    cidrs(o, "remoteIpBlocks", &s->remote_ip_blocks);
    cidrs(o, "notRemoteIpBlocks", &s->not_remote_ip_blocks);
    return must(json_pack("{s:o}", "source", o));
}

static json_t *operation_json(const struct zt_authz_l7_operation *op)
{
    json_t *o = must(json_object());
    strs(o, "hosts", &op->hosts);
    strs(o, "notHosts", &op->not_hosts);
    strs(o, "methods", &op->methods);
    strs(o, "notMethods", &op->not_methods);
    strs(o, "paths", &op->paths);
    strs(o, "notPaths", &op->not_paths);
    ports(o, "ports", &op->ports);
    ports(o, "notPorts", &op->not_ports);
    return must(json_pack("{s:o}", "operation", o));
}

static const char *when_key(const struct zt_authz_l7_when *w, char *buf, size_t len)
{
    static const char *const fixed[] = {
        [ZT_AUTHZ_L7_K_SOURCE_IP] = "source.ip",
        [ZT_AUTHZ_L7_K_REMOTE_IP] = "remote.ip",
        [ZT_AUTHZ_L7_K_SOURCE_NS] = "source.namespace",
        [ZT_AUTHZ_L7_K_SOURCE_PRINCIPAL] = "source.principal",
        [ZT_AUTHZ_L7_K_SOURCE_SA] = "source.serviceAccount",
        [ZT_AUTHZ_L7_K_SOURCE_TD] = "source.trustDomain",
        [ZT_AUTHZ_L7_K_AUTH_PRINCIPAL] = "request.auth.principal",
        [ZT_AUTHZ_L7_K_AUTH_AUDIENCES] = "request.auth.audiences",
        [ZT_AUTHZ_L7_K_AUTH_PRESENTER] = "request.auth.presenter",
        [ZT_AUTHZ_L7_K_DEST_IP] = "destination.ip",
        [ZT_AUTHZ_L7_K_DEST_PORT] = "destination.port",
        [ZT_AUTHZ_L7_K_SNI] = "connection.sni",
    };
    if (w->key == ZT_AUTHZ_L7_K_HEADER) {
        snprintf(buf, len, "request.headers[%s]", w->header);
    } else if (w->key == ZT_AUTHZ_L7_K_AUTH_CLAIMS) {
        size_t n = (size_t)snprintf(buf, len, "request.auth.claims");
        for (size_t i = 0; i < w->n_claim && n < len; i++)
            n += (size_t)snprintf(buf + n, len - n, "[%s]", w->claim[i]);
    } else {
        snprintf(buf, len, "%s",
                 w->key < sizeof(fixed) / sizeof(fixed[0]) && fixed[w->key] ? fixed[w->key] : "?");
    }
    return buf;
}

static json_t *when_json(const struct zt_authz_l7_when *w)
{
    char key[ZT_AUTHZ_L7_MAX_VALUE + 64];
    json_t *o = must(json_object());
    set(o, "key", str(when_key(w, key, sizeof(key))));
    strs(o, "values", &w->values);
    strs(o, "notValues", &w->not_values);
    cidrs(o, "values", &w->cidrs);
    cidrs(o, "notValues", &w->not_cidrs);
    ports(o, "values", &w->ports);
    ports(o, "notValues", &w->not_ports);
    return o;
}

static json_t *targets_json(const struct zt_authz_l7_target *t, size_t n)
{
    static const char *const kinds[] = {
        [ZT_AUTHZ_L7_GATEWAY_CLASS] = "GatewayClass",
        [ZT_AUTHZ_L7_GATEWAY] = "Gateway",
        [ZT_AUTHZ_L7_SERVICE] = "Service",
        [ZT_AUTHZ_L7_SERVICE_ENTRY] = "ServiceEntry",
    };
    json_t *a = must(json_array());
    for (size_t i = 0; i < n; i++)
        push(a, json_pack("{s:s, s:o}", "kind", t[i].kind < 4 ? kinds[t[i].kind] : "?", "name",
                          str(t[i].name)));
    return a;
}

static json_t *authz_json(const struct zt_authz_l7_policy *p)
{
    json_t *rules = must(json_array());
    for (size_t i = 0; i < p->n_rules; i++) {
        const struct zt_authz_l7_rule *r = &p->rules[i];
        json_t *o = must(json_object());
        json_t *from = must(json_array()), *to = must(json_array()), *when = must(json_array());
        for (size_t j = 0; j < r->n_from; j++)
            push(from, source_json(&r->from[j]));
        for (size_t j = 0; j < r->n_to; j++)
            push(to, operation_json(&r->to[j]));
        for (size_t j = 0; j < r->n_when; j++)
            push(when, when_json(&r->when[j]));
        set(o, "from", from);
        set(o, "to", to);
        set(o, "when", when);
        push(rules, o);
    }
    return must(json_pack("{s:o, s:o, s:s, s:b, s:o, s:o}", "name", str(p->name), "namespace",
                          str(p->ns), "action", zt_authz_l7_action_str(p->action), "dryRun",
                          p->dry_run, "targetRefs", targets_json(p->targets, p->n_targets), "rules",
                          rules));
}

static json_t *str_array(const char *const *v, size_t n)
{
    json_t *a = must(json_array());
    for (size_t i = 0; i < n; i++)
        push(a, str(v[i]));
    return a;
}

static json_t *authn_json(const struct zt_jwt_authn_policy *p)
{
    json_t *rules = must(json_array());
    for (size_t i = 0; i < p->n_rules; i++) {
        const struct zt_jwt_rule_spec *r = &p->rules[i];
        json_t *o = must(json_object());
        set(o, "issuer", str(r->issuer));
        set(o, "audiences", str_array(r->audiences, r->n_audiences));
        if (r->jwks_uri)
            set(o, "jwksUri", str(r->jwks_uri));
        else
            set(o, "jwksInlineBytes", json_integer((json_int_t)(r->jwks ? strlen(r->jwks) : 0)));
        json_t *hs = must(json_array());
        for (size_t j = 0; j < r->n_from_headers; j++)
            push(hs, json_pack("{s:o, s:o}", "name", str(r->from_headers[j].name), "prefix",
                               str(r->from_headers[j].prefix)));
        set(o, "fromHeaders", hs);
        set(o, "fromParams", str_array(r->from_params, r->n_from_params));
        set(o, "fromCookies", str_array(r->from_cookies, r->n_from_cookies));
        set(o, "forwardOriginalToken", json_boolean(r->forward_original_token));
        if (r->output_payload_to_header)
            set(o, "outputPayloadToHeader", str(r->output_payload_to_header));
        json_t *ch = must(json_array());
        for (size_t j = 0; j < r->n_output_claim_to_headers; j++)
            push(ch, json_pack("{s:o, s:o}", "header", str(r->output_claim_to_headers[j].header),
                               "claim", str(r->output_claim_to_headers[j].claim)));
        set(o, "outputClaimToHeaders", ch);
        push(rules, o);
    }
    return must(json_pack("{s:o, s:o, s:o, s:o}", "name", str(p->name), "namespace", str(p->ns),
                          "targetRefs", targets_json(p->targets, p->n_targets), "jwtRules", rules));
}

static json_t *ratelimit_json(struct zt_ratelimit_set *set_, size_t i)
{
    const struct zt_ratelimit_policy *p = zt_ratelimit_set_at(set_, i);
    json_t *targets = must(json_array());
    for (size_t j = 0; j < p->n_targets; j++) {
        json_t *t =
            must(json_pack("{s:s, s:o}", "kind", zt_ratelimit_target_kind_str(p->targets[j].kind),
                           "name", str(p->targets[j].name)));
        if (p->targets[j].section)
            set(t, "sectionName", str(p->targets[j].section));
        push(targets, t);
    }
    json_t *o =
        must(json_pack("{s:o, s:o, s:o, s:I, s:s, s:I}", "name", str(p->name), "namespace",
                       str(p->ns), "targetRefs", targets, "requests", (json_int_t)p->requests,
                       "unit", zt_ratelimit_unit_str(p->unit), "burst", (json_int_t)p->burst));
    if (p->key == ZT_RATELIMIT_KEY_PRINCIPAL)
        set(o, "by", str("principal"));
    else if (p->key == ZT_RATELIMIT_KEY_HEADER)
        set(o, "by", json_pack("{s:o}", "header", str(p->header)));
    if (p->key != ZT_RATELIMIT_KEY_NONE)
        set(o, "maxKeys", json_integer((json_int_t)p->max_keys));
    struct zt_ratelimit_stats st;
    if (zt_ratelimit_set_stats(set_, i, &st) == 0)
        set(o, "stats",
            json_pack("{s:I, s:I, s:I, s:I}", "passed", (json_int_t)st.passed, "limited",
                      (json_int_t)st.limited, "untracked", (json_int_t)st.untracked, "keys",
                      (json_int_t)st.keys));
    return o;
}

json_t *zt_waypoint_policies_dump(struct zt_waypoint *wp, const struct zt_jwt_authn_policies *authn)
{
    pthread_mutex_lock(&wp->mu);
    struct zt_authz_l7_set *pol = wp->policies ? zt_authz_l7_set_ref(wp->policies) : NULL;
    struct zt_ratelimit_set *rl = wp->ratelimits ? zt_ratelimit_set_ref(wp->ratelimits) : NULL;
    pthread_mutex_unlock(&wp->mu);
    json_t *a = must(json_array()), *j = must(json_array()), *r = must(json_array());
    for (size_t i = 0; pol && i < zt_authz_l7_set_count(pol); i++)
        push(a, authz_json(zt_authz_l7_set_at(pol, i)));
    for (size_t i = 0; authn && i < authn->n; i++)
        push(j, authn_json(authn->v[i]));
    for (size_t i = 0; rl && i < zt_ratelimit_set_count(rl); i++)
        push(r, ratelimit_json(rl, i));
    zt_authz_l7_set_unref(pol);
    zt_ratelimit_set_unref(rl);
    return must(json_pack("{s:o, s:o, s:o}", "authorizationPolicies", a, "requestAuthentications",
                          j, "rateLimits", r));
}
