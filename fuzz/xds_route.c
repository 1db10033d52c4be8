/* Fuzzes the waypoint's decoder of ztunnel.routes.v1.Route resources (the
 * Any value bytes `ztunnel control` sends, proto/routes.proto).
 *
 * Invariants: a rejected resource leaves "<field>: <reason>" in err and a
 * zeroed def; an accepted one encodes again (the encoder refuses only what
 * the decoder refuses), that encoding decodes, and encoding the second def
 * gives the same bytes: after one pass a route is a fixed point. An accepted
 * route also goes through a builder into a table, as the waypoint does. */
#include "base/log.h"
#include "xds/routes.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zt_route_def d, d2;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    char err[512] = "";

    if (zt_xds_route_decode(data, size, &d, err, sizeof(err)) != 0) {
        if (!strstr(err, ": ") || d.name || d.rules || d.parents)
            __builtin_trap();
        return 0;
    }
    if (!d.name || !d.ns)
        __builtin_trap();
    if (zt_xds_route_encode(&d, &b1, &n1, err, sizeof(err)) != 0)
        __builtin_trap();
    if (zt_xds_route_decode(b1, n1, &d2, err, sizeof(err)) != 0)
        __builtin_trap();
    if (zt_xds_route_encode(&d2, &b2, &n2, err, sizeof(err)) != 0 || n1 != n2 ||
        memcmp(b1, b2, n1) != 0)
        __builtin_trap();
    free(b1);
    free(b2);
    zt_route_def_cleanup(&d2);

    struct zt_route_builder *b = zt_route_builder_new("ns", "wp");
    if (zt_route_builder_add(b, &d, err, sizeof(err)) != 0)
        __builtin_trap();
    struct zt_route_table *t = zt_route_builder_finish(b);
    if (zt_route_table_count(t) != 1)
        __builtin_trap();
    zt_route_table_unref(t);
    return 0;
}
