/* Local configuration file (wire facts 3.4): Istio's ztunnel YAML schema
 * (camelCase keys, unknown keys rejected) turned into a state snapshot.
 *
 *   workloads: [ {uid, name, namespace, serviceAccount, workloadIps, protocol,
 *                 services: {"ns/host": {80: 8080}}, ...} ]
 *   services:  [ {name, namespace, hostname, vips: ["net/ip"], ports: {80: 8080}} ]
 *   policies:  [ {name, namespace, scope, action, rules: [[[ {match} ]]]} ]
 *
 * A file may hold several YAML documents ("---"): each is either that
 * schema or one Kubernetes object. Gateways of class istio-waypoint and
 * Namespace labels, with the `labels:` of workloads and services
 * (istio.io/use-waypoint), set the waypoint fields (config/k8s.h); other
 * kinds are skipped (the dispatch by kind is in local.c, k8s_kinds[]).
 *
 * Every error message has the form "<file>:<line>: <key path>: <reason>",
 * e.g. "ztunnel.yaml:7: workloads[1].protocol: bad value \"HTTP\": expected
 * TCP or HBONE" (lines are 1-based). */
#ifndef ZT_CONFIG_LOCAL_H
#define ZT_CONFIG_LOCAL_H

#include "state/state.h"

#include <stddef.h>

/* Largest accepted file, in bytes. */
#define ZT_CONFIG_LOCAL_MAX_BYTES (64u << 20)

/* Reads and parses path. On success *out is a new snapshot (one reference,
 * owned by the caller) and 0 is returned; otherwise ZT_E_CONFIG (or
 * ZT_E_TOO_BIG, or -errno for the file) with the message in err. */
int zt_config_local_load(const char *path, struct zt_state **out, char *err, size_t errlen);

/* Same for YAML held in memory (LOCAL_XDS); name is used in messages in
 * place of a file name. yaml is borrowed. */
int zt_config_local_load_string(const char *name, const char *yaml, size_t len,
                                struct zt_state **out, char *err, size_t errlen);

#endif
