/* Fuzzes the proxy's decoder of istio.security.Authorization resources (the
 * Any value bytes a control plane sends), as the ADS client applies them:
 * into a builder started from an empty snapshot, then finished.
 *
 * Invariants: a rejected resource leaves an error "<field>: <reason>" and no
 * name; an accepted one is the only object of the finished snapshot, under
 * the name returned ("ns/name", equal to zt_xds_policy_name). Then the round
 * trip through our own encoder (encode.h): the policy encodes, the bytes are
 * accepted again under the same name, and encoding the second policy gives
 * the same bytes. The first encoding is not compared with the input: the
 * wire does not keep NULL strings apart from "" (encode.h), and the decoder
 * applies defaults; after one pass the policy must be a fixed point.
 *
 * Then authorization: with a workload of the policy's namespace that lists
 * it, the indexed check (zt_authz_check_ex) must give exactly the reference
 * evaluator's result (zt_authz_check_linear) for a fixed set of connections:
 * identities of several shapes, IPv4, IPv6 and v4-mapped sources, ports. */
#include "authz/authz.h"
#include "base/log.h"
#include "xds/convert.h"
#include "xds/encode.h"

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

/* Applies one Authorization to a builder on an empty snapshot and finishes
 * it. Returns the snapshot (NULL if the resource or the snapshot was
 * refused) and the resource name in *name (NULL when refused). */
static struct zt_state *decode(const uint8_t *data, size_t size, char **name)
{
    struct zt_state *empty = zt_state_new_empty(), *s = NULL;
    struct zt_state_builder *b = zt_state_builder_new(empty);
    char err[512];
    int rc;

    err[0] = '\0';
    rc = zt_xds_apply_authorization(b, data, size, name, err, sizeof(err));
    if (rc != 0) {
        if (rc > 0 || *name || err[0] == '\0' || !strstr(err, ": "))
            __builtin_trap();
        zt_state_builder_free(b);
        goto out;
    }
    if (!*name)
        __builtin_trap();
    err[0] = '\0';
    if (zt_state_builder_finish(b, &s, err, sizeof(err)) != 0) {
        if (s || err[0] == '\0')
            __builtin_trap();
        s = NULL;
    }
out:
    zt_state_unref(empty);
    return s;
}

/* The encoding of the policy called name, the only object of s. */
static void encode(const struct zt_state *s, const char *name, uint8_t **out, size_t *len)
{
    const struct zt_policy *p = zt_state_policy_by_key(s, name);
    char *own;

    if (!p || zt_state_policy_count(s) != 1 || zt_state_workload_count(s) != 0 ||
        zt_state_service_count(s) != 0)
        __builtin_trap();
    own = zt_xds_policy_name(p);
    if (zt_xds_encode_policy(p, out, len) != 0 || !*out || strcmp(own, name) != 0)
        __builtin_trap();
    free(own);
}

static bool same_result(const struct zt_authz_result *a, const struct zt_authz_result *b)
{
    return a->denied_by == b->denied_by && a->dry_run_denied_by == b->dry_run_denied_by &&
           a->has_dry_run_allow == b->has_dry_run_allow &&
           a->dry_run_allow_matched == b->dry_run_allow_matched;
}

static const char *const identities[] = {
    NULL,
    "spiffe://cluster.local/ns/default/sa/default",
    "spiffe://cluster.local/ns/foo/sa/bar",
    "spiffe://other/ns/a/sa/b/c",
    "",
};
static const char *const sources[] = {"10.0.0.1", "192.168.1.1", "::ffff:10.1.2.3", "fd00::1",
                                      "2001:db8::7"};
static const uint16_t ports[] = {80, 8080, 15008, 65535};

/* The index and the reference agree on the policy `name` of s. */
static void check_authz(const struct zt_state *s, const char *name)
{
    const struct zt_policy *p = zt_state_policy_by_key(s, name);
    struct zt_state_builder *b = zt_state_builder_new(s);
    struct zt_workload *wl = zt_workload_new();
    struct zt_state *ws = NULL;
    char err[256];

    wl->uid = strdup("w");
    wl->namespace = strdup(p->namespace);
    *(char **)zt_state_array_push(&wl->authorization_policies, &wl->n_authorization_policies,
                                  sizeof(char *)) = strdup(name);
    zt_state_builder_add_workload(b, wl);
    if (zt_state_builder_finish(b, &ws, err, sizeof(err)) != 0)
        __builtin_trap();
    for (size_t i = 0; i < sizeof(identities) / sizeof(identities[0]); i++)
        for (size_t j = 0; j < sizeof(sources) / sizeof(sources[0]); j++)
            for (size_t k = 0; k < sizeof(ports) / sizeof(ports[0]); k++) {
                struct zt_authz_conn c = {.src_identity = identities[i], .dst_port = ports[k]};
                struct zt_authz_result x, y;
                char rx[300], ry[300];
                const struct zt_workload *w = zt_state_workload_by_uid(ws, "w");
                if (zt_ip_parse(sources[j], &c.src_ip) || zt_ip_parse("10.9.9.9", &c.dst_ip))
                    __builtin_trap();
                if (zt_authz_check_ex(ws, w, &c, &x, rx, sizeof(rx)) !=
                        zt_authz_check_linear(ws, w, &c, &y, ry, sizeof(ry)) ||
                    strcmp(rx, ry) != 0 || !same_result(&x, &y))
                    __builtin_trap();
            }
    zt_state_unref(ws);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *name = NULL, *name2 = NULL;
    struct zt_state *s = NULL, *s2 = NULL;
    uint8_t *enc = NULL, *enc2 = NULL;
    size_t len = 0, len2 = 0;

    s = decode(data, size, &name);
    if (!s)
        goto out;
    encode(s, name, &enc, &len);
    check_authz(s, name);
    s2 = decode(enc, len, &name2);
    if (!s2 || strcmp(name, name2) != 0)
        __builtin_trap();
    encode(s2, name2, &enc2, &len2);
    if (len != len2 || memcmp(enc, enc2, len) != 0)
        __builtin_trap();
out:
    free(enc);
    free(enc2);
    free(name);
    free(name2);
    zt_state_unref(s);
    zt_state_unref(s2);
    return 0;
}
