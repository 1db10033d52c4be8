/* ztunnel.policy.v1.AuthorizationPolicy / RequestAuthentication /
 * RateLimit <-> struct zt_authz_l7_policy / zt_jwt_authn_policy /
 * zt_ratelimit_policy. See policies.h.
 *
 * As routes.c: encoding builds the protobuf-c structs in an arena (strings
 * point into the borrowed policy) and decodes its own output once, so the
 * decoder's checks are the one definition of a valid policy.
 *
 * That self-check goes through the same table of types (struct
 * policy_type) as the waypoint's decoding.
 *
 * A string match is checked by the reader's own parser: the Istio value it
 * stands for ("v*" for PREFIX "v", ...) is parsed again with the flags of
 * its field and must give back exactly what the wire says. So nothing the
 * YAML reader would refuse (a '*' inside a value, a template outside
 * paths, an upper-case host) can arrive by xDS either. */
#include "xds/policies.h"

#include "base/alloc.h"
#include "base/err.h"
#include "proto/policies.pb-c.h"
#include "route/route.h"
#include "xds/xds_int.h"

#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAME 253    /* metadata and target names, header names */
#define MAX_URI 2048    /* jwksUri, as config/authn_yaml.c */
#define MAX_SA_PART 320 /* each side of "ns/sa" (Istio's CheckServiceAccount) */
#define MAX_JWT_VALUE 4096
#define MAX_RL_NS 63 /* a RateLimit's namespace, as config/ratelimit_yaml.c reads it */

typedef struct zt_xds_arena arena_t;
typedef struct zt_xds_dec dec_t;

/* One resource type: its message, and how a policy of it is made,
 * decoded into and freed. The table entries are at the end. */
struct policy_type {
    const ProtobufCMessageDescriptor *desc;
    size_t size; /* of the policy struct */
    int (*decode)(dec_t *c, const ProtobufCMessage *m, void *p);
    void (*free)(void *p);
};

static const struct policy_type authz_type, authn_type, ratelimit_type;

static int decode(const struct policy_type *t, const uint8_t *value, size_t len, void **out,
                  char *err, size_t errlen);

char *zt_xds_waypoint_policy_name(const char *ns, const char *name)
{
    char *s;
    if (asprintf(&s, "%s/%s", ns ? ns : "", name ? name : "") < 0)
        abort();
    return s;
}

/* ================================================================ encode */

static Ztunnel__Policy__V1__StringMatch **enc_strs(arena_t *e, const struct zt_authz_l7_strs *l)
{
    Ztunnel__Policy__V1__StringMatch **out = zt_xds_arena_alloc(e, l->n, sizeof(*out));
    for (size_t i = 0; i < l->n; i++) {
        out[i] = zt_xds_arena_alloc(e, 1, sizeof(**out));
        ztunnel__policy__v1__string_match__init(out[i]);
        out[i]->kind = (Ztunnel__Policy__V1__StringMatchKind)l->v[i].kind;
        out[i]->nocase = l->v[i].nocase;
        out[i]->value = zt_xds_s_or_empty(l->v[i].v);
    }
    return out;
}

static Ztunnel__Policy__V1__Cidr **enc_cidrs(arena_t *e, const struct zt_authz_l7_cidrs *l)
{
    Ztunnel__Policy__V1__Cidr **out = zt_xds_arena_alloc(e, l->n, sizeof(*out));
    for (size_t i = 0; i < l->n; i++) {
        out[i] = zt_xds_arena_alloc(e, 1, sizeof(**out));
        ztunnel__policy__v1__cidr__init(out[i]);
        out[i]->address.data = (uint8_t *)l->v[i].ip.addr;
        out[i]->address.len = l->v[i].ip.family == AF_INET6 ? 16 : 4;
        out[i]->prefix_len = l->v[i].prefix;
    }
    return out;
}

static uint32_t *enc_ports(arena_t *e, const struct zt_authz_l7_ports *l)
{
    uint32_t *out = zt_xds_arena_alloc(e, l->n, sizeof(*out));
    for (size_t i = 0; i < l->n; i++)
        out[i] = l->v[i];
    return out;
}

/* Sets msg->n_<f> and msg-><f> from the struct's list of the same name. */
#define ENC_STRS(msg, src, f) ((msg)->n_##f = (src)->f.n, (msg)->f = enc_strs(e, &(src)->f))
#define ENC_CIDRS(msg, src, f) ((msg)->n_##f = (src)->f.n, (msg)->f = enc_cidrs(e, &(src)->f))
#define ENC_PORTS(msg, src, f) ((msg)->n_##f = (src)->f.n, (msg)->f = enc_ports(e, &(src)->f))

static Ztunnel__Policy__V1__Source *enc_source(arena_t *e, const struct zt_authz_l7_source *s)
{
    Ztunnel__Policy__V1__Source *m = zt_xds_arena_alloc(e, 1, sizeof(*m));
    ztunnel__policy__v1__source__init(m);
    ENC_STRS(m, s, principals);
    ENC_STRS(m, s, not_principals);
    ENC_STRS(m, s, namespaces);
    ENC_STRS(m, s, not_namespaces);
    ENC_STRS(m, s, request_principals);
    ENC_STRS(m, s, not_request_principals);
    ENC_STRS(m, s, service_accounts);
    ENC_STRS(m, s, not_service_accounts);
    ENC_CIDRS(m, s, ip_blocks);
    ENC_CIDRS(m, s, not_ip_blocks);
    ENC_CIDRS(m, s, remote_ip_blocks);
    ENC_CIDRS(m, s, not_remote_ip_blocks);
    return m;
}

static Ztunnel__Policy__V1__Operation *enc_operation(arena_t *e,
                                                     const struct zt_authz_l7_operation *o)
{
    Ztunnel__Policy__V1__Operation *m = zt_xds_arena_alloc(e, 1, sizeof(*m));
    ztunnel__policy__v1__operation__init(m);
    ENC_STRS(m, o, hosts);
    ENC_STRS(m, o, not_hosts);
    ENC_STRS(m, o, methods);
    ENC_STRS(m, o, not_methods);
    ENC_STRS(m, o, paths);
    ENC_STRS(m, o, not_paths);
    ENC_PORTS(m, o, ports);
    ENC_PORTS(m, o, not_ports);
    return m;
}

static Ztunnel__Policy__V1__Condition *enc_when(arena_t *e, const struct zt_authz_l7_when *w)
{
    Ztunnel__Policy__V1__Condition *m = zt_xds_arena_alloc(e, 1, sizeof(*m));
    ztunnel__policy__v1__condition__init(m);
    m->key = (Ztunnel__Policy__V1__ConditionKey)w->key;
    m->header = zt_xds_s_or_empty(w->header);
    m->n_claim = w->n_claim;
    m->claim = w->claim;
    ENC_STRS(m, w, values);
    ENC_STRS(m, w, not_values);
    ENC_CIDRS(m, w, cidrs);
    ENC_CIDRS(m, w, not_cidrs);
    ENC_PORTS(m, w, ports);
    ENC_PORTS(m, w, not_ports);
    return m;
}

static Ztunnel__Policy__V1__Target **enc_targets(arena_t *e, const struct zt_authz_l7_target *v,
                                                 size_t n)
{
    Ztunnel__Policy__V1__Target **out = zt_xds_arena_alloc(e, n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        out[i] = zt_xds_arena_alloc(e, 1, sizeof(**out));
        ztunnel__policy__v1__target__init(out[i]);
        /* The wire's 0 is UNSPECIFIED. */
        out[i]->kind = (Ztunnel__Policy__V1__TargetKind)(v[i].kind + 1);
        out[i]->namespace_ = zt_xds_s_or_empty(v[i].ns);
        out[i]->name = zt_xds_s_or_empty(v[i].name);
    }
    return out;
}

/* Packs msg (its arena e) into *out and checks it by decoding it as a
 * policy of type t. Frees the arena. */
static int finish_encode(arena_t *e, const ProtobufCMessage *msg, uint8_t **out, size_t *len,
                         const struct policy_type *t, char *err, size_t errlen)
{
    void *p = NULL;
    int rc = 0;
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > ZT_XDS_POLICY_MAX_LEN) {
        rc = zt_errf(err, errlen, ZT_E_TOO_BIG, "policy: %zu bytes encoded, over %u", n,
                     ZT_XDS_POLICY_MAX_LEN);
        goto out;
    }
    *out = zt_xmalloc(n ? n : 1);
    *len = protobuf_c_message_pack(msg, *out);
    /* What a waypoint would refuse is not served. */
    if ((rc = decode(t, *out, *len, &p, err, errlen))) {
        free(*out);
        *out = NULL;
        *len = 0;
    }
    if (p)
        t->free(p);
out:
    zt_xds_arena_cleanup(e);
    return rc;
}

int zt_xds_authz_encode(const struct zt_authz_l7_policy *p, uint8_t **out, size_t *len, char *err,
                        size_t errlen)
{
    arena_t arena = {0}, *e = &arena;
    Ztunnel__Policy__V1__AuthorizationPolicy m = ZTUNNEL__POLICY__V1__AUTHORIZATION_POLICY__INIT;

    *out = NULL;
    *len = 0;
    m.namespace_ = zt_xds_s_or_empty(p->ns);
    m.name = zt_xds_s_or_empty(p->name);
    m.action = (Ztunnel__Policy__V1__Action)p->action;
    m.dry_run = p->dry_run;
    m.n_targets = p->n_targets;
    m.targets = enc_targets(e, p->targets, p->n_targets);
    m.n_rules = p->n_rules;
    m.rules = zt_xds_arena_alloc(e, p->n_rules, sizeof(*m.rules));
    for (size_t i = 0; i < p->n_rules; i++) {
        const struct zt_authz_l7_rule *r = &p->rules[i];
        Ztunnel__Policy__V1__Rule *pr = zt_xds_arena_alloc(e, 1, sizeof(*pr));
        ztunnel__policy__v1__rule__init(pr);
        pr->n_from = r->n_from;
        pr->from = zt_xds_arena_alloc(e, r->n_from, sizeof(*pr->from));
        for (size_t j = 0; j < r->n_from; j++)
            pr->from[j] = enc_source(e, &r->from[j]);
        pr->n_to = r->n_to;
        pr->to = zt_xds_arena_alloc(e, r->n_to, sizeof(*pr->to));
        for (size_t j = 0; j < r->n_to; j++)
            pr->to[j] = enc_operation(e, &r->to[j]);
        pr->n_when = r->n_when;
        pr->when = zt_xds_arena_alloc(e, r->n_when, sizeof(*pr->when));
        for (size_t j = 0; j < r->n_when; j++)
            pr->when[j] = enc_when(e, &r->when[j]);
        m.rules[i] = pr;
    }
    return finish_encode(e, &m.base, out, len, &authz_type, err, errlen);
}

int zt_xds_authn_encode(const struct zt_jwt_authn_policy *p, uint8_t **out, size_t *len, char *err,
                        size_t errlen)
{
    arena_t arena = {0}, *e = &arena;
    Ztunnel__Policy__V1__RequestAuthentication m =
        ZTUNNEL__POLICY__V1__REQUEST_AUTHENTICATION__INIT;

    *out = NULL;
    *len = 0;
    m.namespace_ = zt_xds_s_or_empty(p->ns);
    m.name = zt_xds_s_or_empty(p->name);
    m.n_targets = p->n_targets;
    m.targets = enc_targets(e, p->targets, p->n_targets);
    m.n_jwt_rules = p->n_rules;
    m.jwt_rules = zt_xds_arena_alloc(e, p->n_rules, sizeof(*m.jwt_rules));
    for (size_t i = 0; i < p->n_rules; i++) {
        const struct zt_jwt_rule_spec *r = &p->rules[i];
        Ztunnel__Policy__V1__JwtRule *pr = zt_xds_arena_alloc(e, 1, sizeof(*pr));
        ztunnel__policy__v1__jwt_rule__init(pr);
        pr->issuer = zt_xds_s_or_empty(r->issuer);
        pr->n_audiences = r->n_audiences;
        pr->audiences = (char **)r->audiences;
        pr->jwks = zt_xds_s_or_empty(r->jwks);
        pr->jwks_uri = zt_xds_s_or_empty(r->jwks_uri);
        pr->n_from_headers = r->n_from_headers;
        pr->from_headers = zt_xds_arena_alloc(e, r->n_from_headers, sizeof(*pr->from_headers));
        for (size_t j = 0; j < r->n_from_headers; j++) {
            Ztunnel__Policy__V1__FromHeader *h = zt_xds_arena_alloc(e, 1, sizeof(*h));
            ztunnel__policy__v1__from_header__init(h);
            h->name = zt_xds_s_or_empty(r->from_headers[j].name);
            h->prefix = zt_xds_s_or_empty(r->from_headers[j].prefix);
            pr->from_headers[j] = h;
        }
        pr->n_from_params = r->n_from_params;
        pr->from_params = (char **)r->from_params;
        pr->n_from_cookies = r->n_from_cookies;
        pr->from_cookies = (char **)r->from_cookies;
        pr->forward_original_token = r->forward_original_token;
        pr->output_payload_to_header = zt_xds_s_or_empty(r->output_payload_to_header);
        pr->n_output_claim_to_headers = r->n_output_claim_to_headers;
        pr->output_claim_to_headers = zt_xds_arena_alloc(e, r->n_output_claim_to_headers,
                                                         sizeof(*pr->output_claim_to_headers));
        for (size_t j = 0; j < r->n_output_claim_to_headers; j++) {
            Ztunnel__Policy__V1__ClaimToHeader *h = zt_xds_arena_alloc(e, 1, sizeof(*h));
            ztunnel__policy__v1__claim_to_header__init(h);
            h->header = zt_xds_s_or_empty(r->output_claim_to_headers[j].header);
            h->claim = zt_xds_s_or_empty(r->output_claim_to_headers[j].claim);
            pr->output_claim_to_headers[j] = h;
        }
        m.jwt_rules[i] = pr;
    }
    return finish_encode(e, &m.base, out, len, &authn_type, err, errlen);
}

int zt_xds_ratelimit_encode(const struct zt_ratelimit_policy *p, uint8_t **out, size_t *len,
                            char *err, size_t errlen)
{
    arena_t arena = {0}, *e = &arena;
    Ztunnel__Policy__V1__RateLimit m = ZTUNNEL__POLICY__V1__RATE_LIMIT__INIT;

    *out = NULL;
    *len = 0;
    m.namespace_ = zt_xds_s_or_empty(p->ns);
    m.name = zt_xds_s_or_empty(p->name);
    m.n_targets = p->n_targets;
    m.targets = zt_xds_arena_alloc(e, p->n_targets, sizeof(*m.targets));
    for (size_t i = 0; i < p->n_targets; i++) {
        Ztunnel__Policy__V1__RateLimitTarget *t = zt_xds_arena_alloc(e, 1, sizeof(*t));
        ztunnel__policy__v1__rate_limit_target__init(t);
        /* The wire's 0 is UNSPECIFIED, as for the units. */
        t->kind = (Ztunnel__Policy__V1__RateLimitTargetKind)(p->targets[i].kind + 1);
        t->name = zt_xds_s_or_empty(p->targets[i].name);
        t->section = zt_xds_s_or_empty(p->targets[i].section);
        m.targets[i] = t;
    }
    m.requests = p->requests;
    m.unit = (Ztunnel__Policy__V1__RateLimitUnit)(p->unit + 1);
    m.burst = p->burst;
    m.key = (Ztunnel__Policy__V1__RateLimitKey)p->key;
    m.header = zt_xds_s_or_empty(p->header);
    m.max_keys = p->max_keys;
    return finish_encode(e, &m.base, out, len, &ratelimit_type, err, errlen);
}

/* ================================================================ decode */

/* How a field's values are read (config/authz_yaml.c's item readers). */
enum str_field { F_PLAIN, F_HOST, F_PATH, F_SA };

/* A service account "ns/sa", as the reader stores it. */
static int check_sa(dec_t *c, const char *f, const Ztunnel__Policy__V1__StringMatch *m)
{
    const char *v = m->value ? m->value : "", *slash = strchr(v, '/');
    if (m->kind != ZTUNNEL__POLICY__V1__STRING_MATCH_KIND__EXACT || m->nocase)
        return zt_xds_bad(c, ZT_E_PROTO, f, "a service account is an EXACT match");
    if (strnlen(v, 2 * MAX_SA_PART + 2) > 2 * MAX_SA_PART + 1)
        return zt_xds_bad(c, ZT_E_TOO_BIG, f, "longer than %d bytes", 2 * MAX_SA_PART + 1);
    if (!slash || slash == v || !slash[1] || strchr(slash + 1, '/') || strchr(v, '*') ||
        (size_t)(slash - v) > MAX_SA_PART || strlen(slash + 1) > MAX_SA_PART)
        return zt_xds_bad(c, ZT_E_PROTO, f, "expected \"namespace/serviceAccount\"");
    return 0;
}

/* One string match: the Istio value it stands for, parsed with the field's
 * flags, must give back the same kind, case rule and value. */
static int dec_str(dec_t *c, const char *f, const Ztunnel__Policy__V1__StringMatch *m,
                   enum str_field how, struct zt_authz_l7_str *out)
{
    const char *v = m->value ? m->value : "", *why = "an empty value";
    unsigned flags = how == F_HOST ? ZT_AUTHZ_L7_F_HOST : how == F_PATH ? ZT_AUTHZ_L7_F_PATH : 0;
    char *istio;
    int rc;

    if (how == F_SA && (rc = check_sa(c, f, m)))
        return rc;
    if ((unsigned)m->kind > ZTUNNEL__POLICY__V1__STRING_MATCH_KIND__TEMPLATE)
        return zt_xds_bad(c, ZT_E_PROTO, f, "unknown match kind %d", (int)m->kind);
    if (strnlen(v, ZT_AUTHZ_L7_MAX_VALUE) >= ZT_AUTHZ_L7_MAX_VALUE)
        return zt_xds_bad(c, ZT_E_TOO_BIG, f, "longer than %d bytes", ZT_AUTHZ_L7_MAX_VALUE - 1);
    if (how == F_SA) {
        *out = (struct zt_authz_l7_str){
            .kind = ZT_AUTHZ_L7_EXACT, .len = (uint32_t)strlen(v), .v = zt_xstrdup(v)};
        return 0;
    }
    bool star_first = m->kind == ZTUNNEL__POLICY__V1__STRING_MATCH_KIND__SUFFIX ||
                      m->kind == ZTUNNEL__POLICY__V1__STRING_MATCH_KIND__PRESENCE;
    bool star_last = m->kind == ZTUNNEL__POLICY__V1__STRING_MATCH_KIND__PREFIX;
    if (asprintf(&istio, "%s%s%s", star_first ? "*" : "", v, star_last ? "*" : "") < 0)
        abort();
    rc = istio[0] ? zt_authz_l7_str_parse(istio, flags, out, &why) : ZT_E_CONFIG;
    free(istio);
    if (rc == 0 && out->kind == (uint8_t)m->kind && out->nocase == m->nocase && !strcmp(out->v, v))
        return 0;
    free(out->v);
    memset(out, 0, sizeof(*out));
    if (rc)
        return zt_xds_bad(c, ZT_E_PROTO, f, "%s", why ? why : "not a value");
    return zt_xds_bad(c, ZT_E_PROTO, f, "not the value the reader makes of it");
}

static int dec_strs(dec_t *c, const char *parent, const char *k,
                    Ztunnel__Policy__V1__StringMatch *const *v, size_t n, enum str_field how,
                    struct zt_authz_l7_strs *out)
{
    char f[ZT_XDS_FIELD_LEN];
    int rc;
    zt_xds_key(f, parent, k);
    if ((rc = zt_xds_list(c, f, n, how == F_SA ? ZT_AUTHZ_L7_MAX_SAS : ZT_AUTHZ_L7_MAX_VALUES)))
        return rc;
    out->v = zt_xcalloc(n ? n : 1, sizeof(*out->v));
    for (size_t i = 0; i < n; i++) {
        zt_xds_idx(f, parent, k, i);
        if ((rc = dec_str(c, f, v[i], how, &out->v[i])))
            return rc;
        out->n = i + 1;
    }
    return 0;
}

static int dec_cidrs(dec_t *c, const char *parent, const char *k,
                     Ztunnel__Policy__V1__Cidr *const *v, size_t n, struct zt_authz_l7_cidrs *out)
{
    char f[ZT_XDS_FIELD_LEN];
    int rc;
    zt_xds_key(f, parent, k);
    if ((rc = zt_xds_list(c, f, n, ZT_AUTHZ_L7_MAX_VALUES)))
        return rc;
    out->v = zt_xcalloc(n ? n : 1, sizeof(*out->v));
    for (size_t i = 0; i < n; i++) {
        struct zt_cidr *cd = &out->v[i];
        size_t alen = v[i]->address.len;
        zt_xds_idx(f, parent, k, i);
        if (zt_ip_from_bytes(v[i]->address.data, alen, &cd->ip) < 0)
            return zt_xds_bad(c, ZT_E_PROTO, f, "an address is 4 or 16 bytes, not %zu", alen);
        if ((alen == 16) != (cd->ip.family == AF_INET6))
            return zt_xds_bad(c, ZT_E_PROTO, f, "an IPv4-mapped address (sent as 4 bytes)");
        if (v[i]->prefix_len > alen * 8)
            return zt_xds_bad(c, ZT_E_PROTO, f, "prefix length %u over %zu", v[i]->prefix_len,
                              alen * 8);
        cd->prefix = (uint8_t)v[i]->prefix_len;
        out->n = i + 1;
    }
    return 0;
}

static int dec_ports(dec_t *c, const char *parent, const char *k, const uint32_t *v, size_t n,
                     struct zt_authz_l7_ports *out)
{
    char f[ZT_XDS_FIELD_LEN];
    int rc;
    zt_xds_key(f, parent, k);
    if ((rc = zt_xds_list(c, f, n, ZT_AUTHZ_L7_MAX_VALUES)))
        return rc;
    out->v = zt_xcalloc(n ? n : 1, sizeof(*out->v));
    for (size_t i = 0; i < n; i++) {
        if (v[i] > 65535) {
            zt_xds_idx(f, parent, k, i);
            return zt_xds_bad(c, ZT_E_PROTO, f, "port %u, want 0..65535", v[i]);
        }
        out->v[i] = (uint16_t)v[i];
        out->n = i + 1;
    }
    return 0;
}

#define DEC_STRS(f, msg, dst, field, how)                                                          \
    dec_strs(c, f, #field, (msg)->field, (msg)->n_##field, how, &(dst)->field)
#define DEC_CIDRS(f, msg, dst, field)                                                              \
    dec_cidrs(c, f, #field, (msg)->field, (msg)->n_##field, &(dst)->field)
#define DEC_PORTS(f, msg, dst, field)                                                              \
    dec_ports(c, f, #field, (msg)->field, (msg)->n_##field, &(dst)->field)

/* One item of a repeated message field (msg) into dst. */
typedef int dec_item_fn(dec_t *c, const char *f, const void *msg, void *dst);

/* Repeated message field k of parent (v[0..n), at most max) into a new
 * array *out of n elements of size bytes; *n_out counts those started, so
 * that the owner's free releases a partial decode. always_alloc: an array
 * even for n 0 (jwt/authn.c's ownership wants one). */
static int dec_msgs(dec_t *c, const char *parent, const char *k, void *const *v, size_t n,
                    size_t max, size_t size, bool always_alloc, dec_item_fn *fn, void *out_ptr,
                    size_t *n_out)
{
    char f[ZT_XDS_FIELD_LEN];
    void **out = out_ptr;
    int rc;
    zt_xds_key(f, parent, k);
    if ((rc = zt_xds_list(c, f, n, max)))
        return rc;
    if (n || always_alloc)
        *out = zt_xcalloc(n ? n : 1, size);
    for (size_t i = 0; i < n; i++) {
        zt_xds_idx(f, parent, k, i);
        *n_out = i + 1;
        if ((rc = fn(c, f, v[i], (char *)*out + i * size)))
            return rc;
    }
    return 0;
}

static int dec_source(dec_t *c, const char *f, const void *msg, void *dst)
{
    const Ztunnel__Policy__V1__Source *m = msg;
    struct zt_authz_l7_source *s = dst;
    int rc;
    if ((rc = DEC_STRS(f, m, s, principals, F_PLAIN)) ||
        (rc = DEC_STRS(f, m, s, not_principals, F_PLAIN)) ||
        (rc = DEC_STRS(f, m, s, namespaces, F_PLAIN)) ||
        (rc = DEC_STRS(f, m, s, not_namespaces, F_PLAIN)) ||
        (rc = DEC_STRS(f, m, s, request_principals, F_PLAIN)) ||
        (rc = DEC_STRS(f, m, s, not_request_principals, F_PLAIN)) ||
        (rc = DEC_STRS(f, m, s, service_accounts, F_SA)) ||
        (rc = DEC_STRS(f, m, s, not_service_accounts, F_SA)) ||
        (rc = DEC_CIDRS(f, m, s, ip_blocks)) || (rc = DEC_CIDRS(f, m, s, not_ip_blocks)) ||
        (rc = DEC_CIDRS(f, m, s, remote_ip_blocks)) ||
        (rc = DEC_CIDRS(f, m, s, not_remote_ip_blocks)))
        return rc;
    const char *why = zt_authz_l7_source_invalid(s);
    return why ? zt_xds_bad(c, ZT_E_PROTO, f, "%s", why) : 0;
}

static int dec_operation(dec_t *c, const char *f, const void *msg, void *dst)
{
    const Ztunnel__Policy__V1__Operation *m = msg;
    struct zt_authz_l7_operation *o = dst;
    int rc;
    if ((rc = DEC_STRS(f, m, o, hosts, F_HOST)) || (rc = DEC_STRS(f, m, o, not_hosts, F_HOST)) ||
        (rc = DEC_STRS(f, m, o, methods, F_PLAIN)) ||
        (rc = DEC_STRS(f, m, o, not_methods, F_PLAIN)) || (rc = DEC_STRS(f, m, o, paths, F_PATH)) ||
        (rc = DEC_STRS(f, m, o, not_paths, F_PATH)) || (rc = DEC_PORTS(f, m, o, ports)) ||
        (rc = DEC_PORTS(f, m, o, not_ports)))
        return rc;
    const char *why = zt_authz_l7_operation_invalid(o);
    return why ? zt_xds_bad(c, ZT_E_PROTO, f, "%s", why) : 0;
}

/* A header name or claim key as zt_authz_l7_when_key_parse leaves it. */
static int when_name(dec_t *c, const char *f, const char *v, bool is_header, char **out)
{
    int rc = zt_xds_str(c, f, v, ZT_AUTHZ_L7_MAX_VALUE, true, false, out);
    if (rc)
        return rc;
    for (const char *p = *out; *p; p++)
        if (*p == '[' || *p == ']' || (is_header && *p >= 'A' && *p <= 'Z'))
            return zt_xds_bad(c, ZT_E_PROTO, f, "not a name the reader produces");
    return 0;
}

static int dec_when(dec_t *c, const char *f, const void *msg, void *dst)
{
    const Ztunnel__Policy__V1__Condition *m = msg;
    struct zt_authz_l7_when *w = dst;
    char sub[ZT_XDS_FIELD_LEN];
    int rc;
    if ((unsigned)m->key > ZTUNNEL__POLICY__V1__CONDITION_KEY__CONNECTION_SNI)
        return zt_xds_bad(c, ZT_E_PROTO, f, "unknown key %d", (int)m->key);
    w->key = (uint8_t)m->key;
    zt_xds_key(sub, f, "header");
    if (w->key == ZT_AUTHZ_L7_K_HEADER) {
        if ((rc = when_name(c, sub, m->header, true, &w->header)))
            return rc;
    } else if (m->header && m->header[0]) {
        return zt_xds_bad(c, ZT_E_PROTO, sub, "only for key HEADER");
    }
    zt_xds_key(sub, f, "claim");
    if (w->key == ZT_AUTHZ_L7_K_AUTH_CLAIMS) {
        if (!m->n_claim || m->n_claim > ZT_AUTHZ_L7_MAX_CLAIM_DEPTH)
            return zt_xds_bad(c, ZT_E_PROTO, sub, "%zu names, want 1..%d", m->n_claim,
                              ZT_AUTHZ_L7_MAX_CLAIM_DEPTH);
        w->claim = zt_xcalloc(m->n_claim, sizeof(*w->claim));
        for (size_t i = 0; i < m->n_claim; i++) {
            zt_xds_idx(sub, f, "claim", i);
            w->n_claim = i + 1;
            if ((rc = when_name(c, sub, m->claim[i], false, &w->claim[i])))
                return rc;
        }
    } else if (m->n_claim) {
        return zt_xds_bad(c, ZT_E_PROTO, sub, "only for key AUTH_CLAIMS");
    }
    if ((rc = DEC_STRS(f, m, w, values, w->key == ZT_AUTHZ_L7_K_SOURCE_SA ? F_SA : F_PLAIN)) ||
        (rc = DEC_STRS(f, m, w, not_values, w->key == ZT_AUTHZ_L7_K_SOURCE_SA ? F_SA : F_PLAIN)) ||
        (rc = DEC_CIDRS(f, m, w, cidrs)) || (rc = DEC_CIDRS(f, m, w, not_cidrs)) ||
        (rc = DEC_PORTS(f, m, w, ports)) || (rc = DEC_PORTS(f, m, w, not_ports)))
        return rc;
    bool is_ip = w->key == ZT_AUTHZ_L7_K_SOURCE_IP || w->key == ZT_AUTHZ_L7_K_REMOTE_IP ||
                 w->key == ZT_AUTHZ_L7_K_DEST_IP;
    bool is_port = w->key == ZT_AUTHZ_L7_K_DEST_PORT;
    size_t n_strs = w->values.n + w->not_values.n, n_cidrs = w->cidrs.n + w->not_cidrs.n,
           n_ports = w->ports.n + w->not_ports.n;
    if ((is_ip ? n_strs + n_ports : is_port ? n_strs + n_cidrs : n_cidrs + n_ports) != 0)
        return zt_xds_bad(c, ZT_E_PROTO, f, "values of another kind than the key's");
    if (!(n_strs + n_cidrs + n_ports))
        return zt_xds_bad(c, ZT_E_PROTO, f, "no values");
    return 0;
}

static int dec_rule(dec_t *c, const char *f, const void *msg, void *dst)
{
    const Ztunnel__Policy__V1__Rule *m = msg;
    struct zt_authz_l7_rule *r = dst;
    int rc;
    if ((rc = dec_msgs(c, f, "from", (void *const *)m->from, m->n_from, ZT_AUTHZ_L7_MAX_PARTS,
                       sizeof(*r->from), false, dec_source, &r->from, &r->n_from)) ||
        (rc = dec_msgs(c, f, "to", (void *const *)m->to, m->n_to, ZT_AUTHZ_L7_MAX_PARTS,
                       sizeof(*r->to), false, dec_operation, &r->to, &r->n_to)))
        return rc;
    return dec_msgs(c, f, "when", (void *const *)m->when, m->n_when, ZT_AUTHZ_L7_MAX_PARTS,
                    sizeof(*r->when), false, dec_when, &r->when, &r->n_when);
}

/* Namespace and name, then the targets (as the reader keeps them: at
 * least one; the policy's namespace, or GatewayClass istio-waypoint). */
static int dec_head(dec_t *c, const char *m_ns, const char *m_name,
                    Ztunnel__Policy__V1__Target *const *tv, size_t n_t, char **ns, char **name,
                    struct zt_authz_l7_target **targets, size_t *n_targets)
{
    char f[ZT_XDS_FIELD_LEN], sub[ZT_XDS_FIELD_LEN];
    int rc;
    if ((rc = zt_xds_str(c, "namespace", m_ns, MAX_NAME, true, false, ns)) ||
        (rc = zt_xds_str(c, "name", m_name, MAX_NAME, true, false, name)) ||
        (rc = zt_xds_list(c, "targets", n_t, ZT_AUTHZ_L7_MAX_TARGETS)))
        return rc;
    if (!n_t)
        return zt_xds_bad(c, ZT_E_PROTO, "targets", "required");
    *targets = zt_xcalloc(n_t, sizeof(**targets));
    for (size_t i = 0; i < n_t; i++) {
        struct zt_authz_l7_target *t = &(*targets)[i];
        zt_xds_idx(f, "", "targets", i);
        if (tv[i]->kind < ZTUNNEL__POLICY__V1__TARGET_KIND__GATEWAY_CLASS ||
            tv[i]->kind > ZTUNNEL__POLICY__V1__TARGET_KIND__SERVICE_ENTRY)
            return zt_xds_bad(c, ZT_E_PROTO, f, "unknown target kind %d", (int)tv[i]->kind);
        t->kind = (uint8_t)(tv[i]->kind - 1);
        *n_targets = i + 1;
        bool is_class = t->kind == ZT_AUTHZ_L7_GATEWAY_CLASS;
        zt_xds_key(sub, f, "name");
        if ((rc = zt_xds_str(c, sub, tv[i]->name, MAX_NAME, true, false, &t->name)))
            return rc;
        if (is_class && strcmp(t->name, "istio-waypoint") != 0)
            return zt_xds_bad(c, ZT_E_PROTO, sub, "a GatewayClass other than istio-waypoint");
        zt_xds_key(sub, f, "namespace");
        const char *tns = tv[i]->namespace_ ? tv[i]->namespace_ : "";
        if (strcmp(tns, is_class ? "" : *ns) != 0)
            return zt_xds_bad(c, ZT_E_PROTO, sub, "%s",
                              is_class ? "must be empty" : "must be the policy's");
        t->ns = zt_xstrdup(tns);
    }
    return 0;
}

static int dec_authz(dec_t *c, const Ztunnel__Policy__V1__AuthorizationPolicy *m,
                     struct zt_authz_l7_policy *p)
{
    int rc;
    if ((rc = dec_head(c, m->namespace_, m->name, m->targets, m->n_targets, &p->ns, &p->name,
                       &p->targets, &p->n_targets)))
        return rc;
    if ((unsigned)m->action > ZTUNNEL__POLICY__V1__ACTION__AUDIT)
        return zt_xds_bad(c, ZT_E_PROTO, "action", "unknown action %d", (int)m->action);
    p->action = (uint8_t)m->action;
    p->dry_run = m->dry_run;
    if (p->action == ZT_AUTHZ_L7_DENY && !m->n_rules)
        return zt_xds_bad(c, ZT_E_PROTO, "rules", "a DENY without rules");
    return dec_msgs(c, "", "rules", (void *const *)m->rules, m->n_rules, ZT_AUTHZ_L7_MAX_RULES,
                    sizeof(*p->rules), false, dec_rule, &p->rules, &p->n_rules);
}

/* ---------------------------------------------------------------- authn */

/* A list of non-empty strings of at most max bytes into *out / *n. */
static int dec_names(dec_t *c, const char *parent, const char *k, char *const *v, size_t n,
                     size_t max, const char *const **out, size_t *n_out)
{
    char f[ZT_XDS_FIELD_LEN];
    int rc;
    zt_xds_key(f, parent, k);
    if ((rc = zt_xds_list(c, f, n, ZT_JWT_RULE_LIST_MAX)))
        return rc;
    char **l = zt_xcalloc(n ? n : 1, sizeof(*l));
    *out = (const char *const *)l;
    for (size_t i = 0; i < n; i++) {
        zt_xds_idx(f, parent, k, i);
        if ((rc = zt_xds_str(c, f, v[i], max, true, false, &l[i])))
            return rc;
        *n_out = i + 1;
    }
    return 0;
}

/* An optional string into a const field. */
static int dec_opt(dec_t *c, const char *parent, const char *k, const char *v, size_t max,
                   bool is_required, const char **out)
{
    char f[ZT_XDS_FIELD_LEN], *s;
    zt_xds_key(f, parent, k);
    int rc = zt_xds_str(c, f, v, max, is_required, false, &s);
    *out = s;
    return rc;
}

static int dec_jwt_rule(dec_t *c, const char *f, const void *msg, void *dst)
{
    const Ztunnel__Policy__V1__JwtRule *m = msg;
    struct zt_jwt_rule_spec *r = dst;
    char sub[ZT_XDS_FIELD_LEN], sub2[ZT_XDS_FIELD_LEN], why[256];
    int rc;
    if ((rc = dec_opt(c, f, "issuer", m->issuer, MAX_JWT_VALUE, true, &r->issuer)) ||
        (rc = dec_names(c, f, "audiences", m->audiences, m->n_audiences, MAX_JWT_VALUE,
                        &r->audiences, &r->n_audiences)) ||
        (rc = dec_opt(c, f, "jwks", m->jwks, ZT_JWT_JWKS_MAX, false, &r->jwks)) ||
        (rc = dec_opt(c, f, "jwks_uri", m->jwks_uri, MAX_URI, false, &r->jwks_uri)))
        return rc;
    if (!r->jwks == !r->jwks_uri)
        return zt_xds_bad(c, ZT_E_PROTO, f, "exactly one of jwks and jwks_uri");
    zt_xds_key(sub, f, "jwks_uri");
    if (r->jwks_uri && strncmp(r->jwks_uri, "https://", 8) != 0 &&
        strncmp(r->jwks_uri, "http://", 7) != 0)
        return zt_xds_bad(c, ZT_E_PROTO, sub, "not an http:// or https:// URL");
    zt_xds_key(sub, f, "from_headers");
    if ((rc = zt_xds_list(c, sub, m->n_from_headers, ZT_JWT_RULE_LIST_MAX)))
        return rc;
    struct zt_jwt_from_header *fh =
        zt_xcalloc(m->n_from_headers ? m->n_from_headers : 1, sizeof(*fh));
    r->from_headers = fh;
    for (size_t i = 0; i < m->n_from_headers; i++) {
        zt_xds_idx(sub, f, "from_headers", i);
        r->n_from_headers = i + 1;
        if ((rc = dec_opt(c, sub, "name", m->from_headers[i]->name, MAX_NAME, true, &fh[i].name)) ||
            (rc = dec_opt(c, sub, "prefix", m->from_headers[i]->prefix, MAX_JWT_VALUE, false,
                          &fh[i].prefix)))
            return rc;
    }
    if ((rc = dec_names(c, f, "from_params", m->from_params, m->n_from_params, MAX_JWT_VALUE,
                        &r->from_params, &r->n_from_params)) ||
        (rc = dec_names(c, f, "from_cookies", m->from_cookies, m->n_from_cookies, MAX_JWT_VALUE,
                        &r->from_cookies, &r->n_from_cookies)) ||
        (rc = dec_opt(c, f, "output_payload_to_header", m->output_payload_to_header, MAX_NAME,
                      false, &r->output_payload_to_header)))
        return rc;
    r->forward_original_token = m->forward_original_token;
    zt_xds_key(sub, f, "output_claim_to_headers");
    if ((rc = zt_xds_list(c, sub, m->n_output_claim_to_headers, ZT_JWT_RULE_LIST_MAX)))
        return rc;
    struct zt_jwt_claim_header *ch =
        zt_xcalloc(m->n_output_claim_to_headers ? m->n_output_claim_to_headers : 1, sizeof(*ch));
    r->output_claim_to_headers = ch;
    for (size_t i = 0; i < m->n_output_claim_to_headers; i++) {
        zt_xds_idx(sub2, f, "output_claim_to_headers", i);
        r->n_output_claim_to_headers = i + 1;
        if ((rc = dec_opt(c, sub2, "header", m->output_claim_to_headers[i]->header, MAX_NAME, true,
                          &ch[i].header)) ||
            (rc = dec_opt(c, sub2, "claim", m->output_claim_to_headers[i]->claim, MAX_NAME, true,
                          &ch[i].claim)))
            return rc;
    }
    /* Compiled once, as the reader does: a JWKS that does not parse or a
     * bad header name is refused here. */
    struct zt_jwt_rules *trial = zt_jwt_rules_new();
    rc = zt_jwt_rules_add(trial, r, why, sizeof(why));
    zt_jwt_rules_free(trial);
    if (rc < 0)
        return zt_xds_bad(c, rc == ZT_E_TOO_BIG ? ZT_E_TOO_BIG : ZT_E_PROTO, f, "%s", why);
    return 0;
}

static int dec_authn(dec_t *c, const Ztunnel__Policy__V1__RequestAuthentication *m,
                     struct zt_jwt_authn_policy *p)
{
    int rc = dec_head(c, m->namespace_, m->name, m->targets, m->n_targets, &p->ns, &p->name,
                      &p->targets, &p->n_targets);
    if (rc)
        return rc;
    return dec_msgs(c, "", "jwt_rules", (void *const *)m->jwt_rules, m->n_jwt_rules,
                    ZT_JWT_RULES_MAX, sizeof(*p->rules), true, dec_jwt_rule, &p->rules,
                    &p->n_rules);
}

/* ---------------------------------------------------------------- ratelimit */

static int dec_rl_target(dec_t *c, const char *f, const void *msg, void *dst)
{
    const Ztunnel__Policy__V1__RateLimitTarget *m = msg;
    struct zt_ratelimit_target *t = dst;
    char sub[ZT_XDS_FIELD_LEN];
    int rc;
    if (m->kind < ZTUNNEL__POLICY__V1__RATE_LIMIT_TARGET_KIND__RATE_LIMIT_TARGET_GATEWAY ||
        m->kind > ZTUNNEL__POLICY__V1__RATE_LIMIT_TARGET_KIND__RATE_LIMIT_TARGET_GRPC_ROUTE)
        return zt_xds_bad(c, ZT_E_PROTO, f, "unknown target kind %d", (int)m->kind);
    t->kind = (uint8_t)(m->kind - 1);
    zt_xds_key(sub, f, "name");
    if ((rc = zt_xds_str(c, sub, m->name, MAX_NAME, true, false, &t->name)))
        return rc;
    zt_xds_key(sub, f, "section");
    if ((rc = zt_xds_str(c, sub, m->section, MAX_NAME, false, false, &t->section)))
        return rc;
    if (t->section && t->kind != ZT_RATELIMIT_HTTP_ROUTE && t->kind != ZT_RATELIMIT_GRPC_ROUTE)
        return zt_xds_bad(c, ZT_E_PROTO, sub, "only for HTTPRoute and GRPCRoute targets");
    return 0;
}

/* A number of 1..max. */
static int dec_count(dec_t *c, const char *f, uint32_t v, uint32_t max, uint32_t *out)
{
    if (v < 1 || v > max)
        return zt_xds_bad(c, ZT_E_PROTO, f, "%u, want 1..%u", v, max);
    *out = v;
    return 0;
}

/* The key and its header and max_keys, as config/ratelimit_yaml.c's
 * read_key leaves them. */
static int dec_rl_key(dec_t *c, const Ztunnel__Policy__V1__RateLimit *m,
                      struct zt_ratelimit_policy *p)
{
    int rc;
    if ((unsigned)m->key > ZTUNNEL__POLICY__V1__RATE_LIMIT_KEY__KEY_HEADER)
        return zt_xds_bad(c, ZT_E_PROTO, "key", "unknown key %d", (int)m->key);
    p->key = (uint8_t)m->key;
    if (p->key == ZT_RATELIMIT_KEY_HEADER) {
        if ((rc = zt_xds_str(c, "header", m->header, ZT_RATELIMIT_MAX_HEADER, true, false,
                             &p->header)))
            return rc;
        if (!zt_route_header_name_ok(p->header))
            return zt_xds_bad(c, ZT_E_PROTO, "header", "not a header name");
        for (const char *q = p->header; *q; q++)
            if (*q >= 'A' && *q <= 'Z')
                return zt_xds_bad(c, ZT_E_PROTO, "header", "not lower case");
    } else if (m->header && m->header[0]) {
        return zt_xds_bad(c, ZT_E_PROTO, "header", "only for key KEY_HEADER");
    }
    if (p->key == ZT_RATELIMIT_KEY_NONE) {
        if (m->max_keys)
            return zt_xds_bad(c, ZT_E_PROTO, "max_keys", "only with a key");
        return 0;
    }
    return dec_count(c, "max_keys", m->max_keys, ZT_RATELIMIT_MAX_KEYS, &p->max_keys);
}

static int dec_ratelimit(dec_t *c, const Ztunnel__Policy__V1__RateLimit *m,
                         struct zt_ratelimit_policy *p)
{
    int rc;
    if ((rc = zt_xds_str(c, "namespace", m->namespace_, MAX_RL_NS, true, false, &p->ns)) ||
        (rc = zt_xds_str(c, "name", m->name, MAX_NAME, true, false, &p->name)))
        return rc;
    if (!m->n_targets)
        return zt_xds_bad(c, ZT_E_PROTO, "targets", "required");
    if ((rc = dec_msgs(c, "", "targets", (void *const *)m->targets, m->n_targets,
                       ZT_RATELIMIT_MAX_TARGETS, sizeof(*p->targets), false, dec_rl_target,
                       &p->targets, &p->n_targets)) ||
        (rc = dec_count(c, "requests", m->requests, ZT_RATELIMIT_MAX_REQUESTS, &p->requests)) ||
        (rc = dec_count(c, "burst", m->burst, ZT_RATELIMIT_MAX_BURST, &p->burst)))
        return rc;
    if (m->unit < ZTUNNEL__POLICY__V1__RATE_LIMIT_UNIT__UNIT_SECOND ||
        m->unit > ZTUNNEL__POLICY__V1__RATE_LIMIT_UNIT__UNIT_HOUR)
        return zt_xds_bad(c, ZT_E_PROTO, "unit", "unknown unit %d", (int)m->unit);
    p->unit = (uint8_t)(m->unit - 1);
    return dec_rl_key(c, m, p);
}

/* ---------------------------------------------------------------- entry points */

static int authz_fill(dec_t *c, const ProtobufCMessage *m, void *p)
{
    return dec_authz(c, (const Ztunnel__Policy__V1__AuthorizationPolicy *)m, p);
}

static void authz_free(void *p)
{
    zt_authz_l7_policy_free(p);
}

static int authn_fill(dec_t *c, const ProtobufCMessage *m, void *p)
{
    return dec_authn(c, (const Ztunnel__Policy__V1__RequestAuthentication *)m, p);
}

static void authn_free(void *p)
{
    zt_jwt_authn_policy_free(p);
}

static int ratelimit_fill(dec_t *c, const ProtobufCMessage *m, void *p)
{
    return dec_ratelimit(c, (const Ztunnel__Policy__V1__RateLimit *)m, p);
}

static void ratelimit_free(void *p)
{
    zt_ratelimit_policy_free(p);
}

static const struct policy_type authz_type = {
    &ztunnel__policy__v1__authorization_policy__descriptor, sizeof(struct zt_authz_l7_policy),
    authz_fill, authz_free};
static const struct policy_type authn_type = {
    &ztunnel__policy__v1__request_authentication__descriptor, sizeof(struct zt_jwt_authn_policy),
    authn_fill, authn_free};
static const struct policy_type ratelimit_type = {&ztunnel__policy__v1__rate_limit__descriptor,
                                                  sizeof(struct zt_ratelimit_policy),
                                                  ratelimit_fill, ratelimit_free};

static int decode(const struct policy_type *t, const uint8_t *value, size_t len, void **out,
                  char *err, size_t errlen)
{
    dec_t c = {.err = err, .errlen = errlen};
    ProtobufCMessage *m;
    int rc;

    *out = NULL;
    if (len > ZT_XDS_POLICY_MAX_LEN)
        return zt_xds_bad(&c, ZT_E_TOO_BIG, "policy", "%zu bytes, over %u", len,
                          ZT_XDS_POLICY_MAX_LEN);
    if (!(m = protobuf_c_message_unpack(t->desc, NULL, len, value)))
        return zt_xds_bad(&c, ZT_E_PROTO, "policy", "not a %s", t->desc->name);
    void *p = zt_xcalloc(1, t->size);
    if ((rc = t->decode(&c, m, p)))
        t->free(p);
    else
        *out = p;
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

int zt_xds_authz_decode(const uint8_t *value, size_t len, struct zt_authz_l7_policy **out,
                        char *err, size_t errlen)
{
    return decode(&authz_type, value, len, (void **)out, err, errlen);
}

int zt_xds_authn_decode(const uint8_t *value, size_t len, struct zt_jwt_authn_policy **out,
                        char *err, size_t errlen)
{
    return decode(&authn_type, value, len, (void **)out, err, errlen);
}

int zt_xds_ratelimit_decode(const uint8_t *value, size_t len, struct zt_ratelimit_policy **out,
                            char *err, size_t errlen)
{
    return decode(&ratelimit_type, value, len, (void **)out, err, errlen);
}
