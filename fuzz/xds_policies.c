/* Fuzzes the waypoint's decoders of ztunnel.policy.v1.AuthorizationPolicy
 * and RequestAuthentication resources (the Any value bytes `ztunnel
 * control` sends, proto/policies.proto). The first byte picks the type
 * (even: AuthorizationPolicy), the rest is the resource.
 *
 * Invariants: a rejected resource leaves "<field>: <reason>" in err and no
 * policy; an accepted one encodes again (the encoder refuses only what the
 * decoder refuses), that encoding decodes, and encoding the second policy
 * gives the same bytes: after one pass a policy is a fixed point. An
 * accepted AuthorizationPolicy also goes into a sealed set, and a
 * RequestAuthentication into a built rule set, as the waypoint does. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0)
        authz(data + 1, size - 1);
    else
        authn(data + 1, size - 1);
    return 0;
}
