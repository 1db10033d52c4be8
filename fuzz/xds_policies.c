/* Fuzzes the waypoint's decoders of ztunnel.policy.v1.AuthorizationPolicy,
 * RequestAuthentication and RateLimit resources (the Any value bytes
 * `ztunnel control` sends, proto/policies.proto). The first byte picks the
 * type (modulo 3: 0 AuthorizationPolicy, 1 RequestAuthentication, 2
 * RateLimit), the rest is the resource.
 *
 * Invariants: a rejected resource leaves "<field>: <reason>" in err and no
 * policy; an accepted one encodes again (the encoder refuses only what the
 * decoder refuses), that encoding decodes, and encoding the second policy
 * gives the same bytes: after one pass a policy is a fixed point. An
 * accepted AuthorizationPolicy also goes into a sealed set, a
 * RequestAuthentication into a built rule set, and a RateLimit into a
 * sealed rate-limit set that inherits from the last one accepted and is
 * checked with a request its first target applies to, as the waypoint
 * does. */
#include "base/err.h"
#include "base/log.h"
#include "xds/policies.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    return 0;
}

static void authz(const uint8_t *data, size_t size)
{
    struct zt_authz_l7_policy *p, *q;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    char err[512] = "";

    if (zt_xds_authz_decode(data, size, &p, err, sizeof(err)) != 0) {
        if (!strstr(err, ": ") || p)
            __builtin_trap();
        return;
    }
    if (!p->ns || !p->name || !p->n_targets)
        __builtin_trap();
    if (zt_xds_authz_encode(p, &b1, &n1, err, sizeof(err)) != 0 ||
        zt_xds_authz_decode(b1, n1, &q, err, sizeof(err)) != 0 ||
        zt_xds_authz_encode(q, &b2, &n2, err, sizeof(err)) != 0 || n1 != n2 ||
        memcmp(b1, b2, n1) != 0)
        __builtin_trap();
    free(b1);
    free(b2);
    zt_authz_l7_policy_free(q);
    struct zt_authz_l7_set *s = zt_authz_l7_set_new(NULL);
    zt_authz_l7_set_add(s, p);
    zt_authz_l7_set_seal(s);
    if (zt_authz_l7_set_count(s) != 1)
        __builtin_trap();
    zt_authz_l7_set_unref(s);
}

static void authn(const uint8_t *data, size_t size)
{
    struct zt_jwt_authn_policy *p, *q;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    char err[512] = "";

    if (zt_xds_authn_decode(data, size, &p, err, sizeof(err)) != 0) {
        if (!strstr(err, ": ") || p)
            __builtin_trap();
        return;
    }
    if (zt_xds_authn_encode(p, &b1, &n1, err, sizeof(err)) != 0 ||
        zt_xds_authn_decode(b1, n1, &q, err, sizeof(err)) != 0 ||
        zt_xds_authn_encode(q, &b2, &n2, err, sizeof(err)) != 0 || n1 != n2 ||
        memcmp(b1, b2, n1) != 0)
        __builtin_trap();
    free(b1);
    free(b2);
    zt_jwt_authn_policy_free(q);
    struct zt_jwt_authn_policies l = {0};
    size_t bad = 0;
    zt_jwt_authn_policies_add(&l, p);
    zt_jwt_authn_set_unref(zt_jwt_authn_set_build(&l, NULL, p->ns, "wp", NULL, NULL, &bad));
    if (bad)
        __builtin_trap();
    zt_jwt_authn_policies_cleanup(&l);
}

/* The set of the last accepted RateLimit (kept across inputs, as the
 * waypoint keeps the set in force). */
static struct zt_ratelimit_set *last_rl;

static void ratelimit(const uint8_t *data, size_t size)
{
    struct zt_ratelimit_policy *p, *q;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    char err[512] = "";

    if (zt_xds_ratelimit_decode(data, size, &p, err, sizeof(err)) != 0) {
        if (!strstr(err, ": ") || p)
            __builtin_trap();
        return;
    }
    if (!p->ns || !p->name || !p->n_targets || !p->requests || !p->burst ||
        (p->key == ZT_RATELIMIT_KEY_HEADER) != (p->header != NULL) ||
        (p->key == ZT_RATELIMIT_KEY_NONE) != (p->max_keys == 0))
        __builtin_trap();
    if (zt_xds_ratelimit_encode(p, &b1, &n1, err, sizeof(err)) != 0 ||
        zt_xds_ratelimit_decode(b1, n1, &q, err, sizeof(err)) != 0 ||
        zt_xds_ratelimit_encode(q, &b2, &n2, err, sizeof(err)) != 0 || n1 != n2 ||
        memcmp(b1, b2, n1) != 0)
        __builtin_trap();
    free(b1);
    free(b2);
    zt_ratelimit_policy_free(q);
    const struct zt_ratelimit_target *t = &p->targets[0];
    struct zt_ratelimit_request rq = {.source_principal = "spiffe://td/ns/a/sa/b"};
    if (t->kind == ZT_RATELIMIT_GATEWAY) {
        rq.gateway_ns = p->ns;
        rq.gateway_name = t->name;
    } else if (t->kind == ZT_RATELIMIT_SERVICE) {
        rq.service_ns = p->ns;
        rq.service_name = t->name;
    } else {
        rq.route_ns = p->ns;
        rq.route_name = t->name;
        rq.rule_name = t->section;
        rq.route_is_grpc = t->kind == ZT_RATELIMIT_GRPC_ROUTE;
    }
    struct zt_ratelimit_set *s = zt_ratelimit_set_new();
    zt_ratelimit_set_add(s, p);
    zt_ratelimit_set_seal(s);
    if (zt_ratelimit_set_count(s) != 1)
        __builtin_trap();
    zt_ratelimit_set_inherit(s, last_rl);
    struct zt_ratelimit_result res;
    int rc = zt_ratelimit_check(s, &rq, 1000, &res);
    /* No head: a header key uses the absent bucket; the policy applies. */
    if ((rc != 0 && rc != ZT_E_RATE_LIMITED) || !res.applied)
        __builtin_trap();
    zt_ratelimit_set_unref(last_rl);
    last_rl = s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 3 == 0)
        authz(data + 1, size - 1);
    else if (data[0] % 3 == 1)
        authn(data + 1, size - 1);
    else
        ratelimit(data + 1, size - 1);
    return 0;
}
