/* Fuzzes the proxy's decoder of istio.workload.Address resources (the Any
 * value bytes a control plane sends), as the ADS client applies them: into
 * a builder started from an empty snapshot, then finished.
 *
 * Invariants: a rejected resource leaves an error "<field>: <reason>" and no
 * name; an accepted one is in the finished snapshot under the name returned,
 * which equals zt_xds_workload_name / zt_xds_service_name of the object. Then
 * the round trip through our own encoder (encode.h): the object encodes, the
 * bytes are accepted again under the same name, and encoding the second
 * object gives the same bytes. The first encoding is not compared with the
 * input, because encode.h documents what the wire does not keep (a
 * full-length CIDR VIP comes back as a VIP, NULL strings as "") and the
 * decoder applies defaults; after one pass the object must be a fixed
 * point. */
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

/* Applies one Address to a builder on an empty snapshot and finishes it.
 * Returns the snapshot (NULL if the resource or the snapshot was refused)
 * and the resource name in *name (NULL when refused). */
static struct zt_state *decode(const uint8_t *data, size_t size, char **name)
{
    struct zt_state *empty = zt_state_new_empty(), *s = NULL;
    struct zt_state_builder *b = zt_state_builder_new(empty);
    char err[512];
    int rc;

    err[0] = '\0';
    rc = zt_xds_apply_address(b, data, size, name, err, sizeof(err));
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

/* The Address encoding of the object called name in s (which must be there,
 * one workload or one service), and that object's own idea of its name. */
static void encode(const struct zt_state *s, const char *name, uint8_t **out, size_t *len)
{
    const struct zt_workload *wl = zt_state_workload_by_uid(s, name);
    const struct zt_service *svc = zt_state_service_by_key(s, name);
    char *own;

    if (zt_state_workload_count(s) + zt_state_service_count(s) != 1 ||
        zt_state_policy_count(s) != 0 || (!wl == !svc))
        __builtin_trap();
    if (wl) {
        own = zt_xds_workload_name(wl);
        if (zt_xds_encode_workload(wl, out, len) != 0)
            __builtin_trap();
    } else {
        own = zt_xds_service_name(svc);
        if (zt_xds_encode_service(svc, out, len) != 0)
            __builtin_trap();
    }
    if (!*out || strcmp(own, name) != 0)
        __builtin_trap();
    free(own);
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
