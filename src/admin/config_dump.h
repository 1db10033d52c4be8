/* The /config_dump document (wire facts §7.3), in the shape Istio's ztunnel
 * prints: field names in camelCase, enums as their Istio names, times in
 * RFC 3339 UTC. The waypoint adds "routes" (route/dump.h).
 *
 *   {
 *     "workloads":    [ {uid, workloadIps, protocol, name, namespace, ...} ],
 *     "services":     [ {name, namespace, hostname, vips, ports, ...} ],
 *     "policies":     [ {name, namespace, scope, action, dryRun, rules} ],
 *     "certificates": [ {identity, state, certChain: [...], rootCerts: [...]} ],
 *     "workloadState": {...}, "config": {...}, "version": "...",
 *     "staticConfig": {}
 *   }
 *
 * Rendering only reads its inputs and may run on any thread while the
 * producers keep working: the state snapshot is immutable, the CA manager
 * is enumerated under its own mutex. */
#ifndef ZT_ADMIN_CONFIG_DUMP_H
#define ZT_ADMIN_CONFIG_DUMP_H

#include "ca/manager.h"
#include "state/state.h"

#include <jansson.h>
#include <time.h>

/* Every pointer is borrowed for the duration of the call; any may be NULL
 * (the matching section is then empty: [] or {}). */
struct zt_config_dump_in {
    const struct zt_state *state;
    struct zt_ca_mgr *ca;
    const char *version;
    json_t *config;         /* effective configuration */
    json_t *workload_state; /* in-pod mode: uid -> {state, info, ...} */
    json_t *routes;         /* `ztunnel waypoint`: its route table (route/dump.h); NULL: no key */
    json_t *waypoint;       /* `ztunnel waypoint`: more keys (its policies); NULL: none */
};

/* Returns the document as a malloc'd NUL-terminated string (the caller
 * frees it with free(); jansson's default allocator is assumed), or NULL
 * if jansson cannot serialise it (out of memory). */
char *zt_config_dump_render(const struct zt_config_dump_in *in);

/* The same document as a jansson object (one reference, caller owns). */
json_t *zt_config_dump_build(const struct zt_config_dump_in *in);

/* Formats t as "YYYY-MM-DDTHH:MM:SSZ" into buf (21 bytes are enough) and
 * returns buf. */
char *zt_config_dump_time(time_t t, char *buf, size_t len);

#endif
