/* RateLimit documents (our own kind) into the waypoint's rate limit set
 * (ratelimit/ratelimit.h), from the same files as its routes and
 * AuthorizationPolicies; other kinds are skipped silently.
 *
 *   apiVersion: ratelimit.ztunnel-c.io/v1alpha1
 *   kind: RateLimit
 *   metadata: {name: reviews-per-user, namespace: default}
 *   spec:
 *     targetRefs:                 # 1..16
 *     - {kind: Service, name: reviews}
 *     - {kind: HTTPRoute, name: api, sectionName: writes}   # a rule name
 *     limit: {requests: 100, unit: minute, burst: 20}
 *     key: {header: x-user-id}    # or {sourcePrincipal: {}}; absent: one bucket
 *     maxKeys: 10000              # only with key; default 10000
 *
 * targetRefs: kind Gateway, HTTPRoute or GRPCRoute (group
 * gateway.networking.k8s.io, or no group) or Service (the core group),
 * always in the policy's namespace: a reference to another namespace is
 * ignored with a warning, and a policy left without targets is ignored
 * with a warning. sectionName is only for routes (a rule's name).
 * limit: requests 1..1e9 per unit (second, minute or hour), burst 1..1e9
 * (default requests), the most a client may send at once.
 * maxKeys: 1..1e6 buckets of distinct key values (see ratelimit.h).
 *
 * Errors never take the other policies down: an invalid policy is left out
 * and one entry appended to errs, "<file>:<line>: RateLimit <ns>/<name>:
 * <field path>: <why>". Unknown fields under spec are refused (a limit we
 * read without them could be looser than the one written).
 *
 * Ownership: errs borrowed for the call (entries stay for the caller to
 * free with zt_route_errors_cleanup); strings are copied. */
#ifndef ZT_CONFIG_RATELIMIT_H
#define ZT_CONFIG_RATELIMIT_H

#include "ratelimit/ratelimit.h"
#include "route/route.h"

#include <stddef.h>

struct ynode;

/* Reads the object doc (anything may be passed) into *out (heap, the
 * caller's). Returns 0 with *out set for a RateLimit, 0 with *out NULL for
 * anything else (another kind, a policy whose targets were all ignored),
 * ZT_E_CONFIG when rejected (reason appended to errs). */
int zt_config_ratelimit_parse_doc(const char *file, const struct ynode *doc,
                                  struct zt_route_errors *errs, struct zt_ratelimit_policy **out);

/* Adds every RateLimit of yaml[0..len) (file names it in messages) to s
 * (not yet sealed). Returns 0, ZT_E_CONFIG for a YAML syntax error
 * (documents before it are added) or ZT_E_TOO_BIG past
 * ZT_CONFIG_LOCAL_MAX_BYTES; invalid policies do not make it fail. */
int zt_config_ratelimit_load_string(struct zt_ratelimit_set *s, const char *file, const char *yaml,
                                    size_t len, struct zt_route_errors *errs);

#endif
