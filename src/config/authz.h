/* Istio AuthorizationPolicy documents into the waypoint's L7 policy set
 * (authz/l7.h).
 *
 * Accepted: kind AuthorizationPolicy with apiVersion security.istio.io/v1
 * or v1beta1, in files of "---"-separated documents or a kind: List. Other
 * kinds are skipped silently.
 *
 * What attaches at a waypoint (waypoint facts 2.6): targetRefs (or the
 * legacy targetRef) naming a Gateway, a Service, a ServiceEntry or the
 * GatewayClass istio-waypoint. A policy with a selector, or with neither
 * selector nor targetRefs (namespace- or mesh-wide), is for the node
 * proxies only: skipped silently, as Istio never gives it to a waypoint.
 * Setting both selector and targetRefs is an error (Istio's validation).
 * A targetRef with a namespace other than the policy's is ignored with a
 * warning (Istio ignores cross-namespace references).
 *
 * Errors never take the other policies down: an invalid policy is left out
 * and one entry appended to errs, "<file>:<line>: AuthorizationPolicy
 * <ns>/<name>: <field path>: <why>" (e.g. spec.rules[0].to[1].operation.
 * paths[2]). Refused outright, because ignoring them would change what the
 * policy allows: action CUSTOM (ext_authz is not available here), unknown
 * fields under source / operation / when, `when` keys outside the list in
 * authz/l7.h (experimental.envoy.filters.* included), and what Istio's
 * validating webhook rejects (DENY without rules, provider without CUSTOM,
 * an empty source or operation, serviceAccounts with namespaces or
 * principals, a condition without values, a bad CIDR or port, '*' inside a
 * value, an operator after {**}).
 *
 * Ownership: errs borrowed for the call (entries stay for the caller to
 * free with zt_route_errors_cleanup); strings are copied. */
#ifndef ZT_CONFIG_AUTHZ_H
#define ZT_CONFIG_AUTHZ_H

#include "authz/l7.h"
#include "route/route.h"

#include <stdbool.h>
#include <stddef.h>

struct ynode;

/* Reads the object doc (anything may be passed) into *out (heap, the
 * caller's). Returns 0 with *out set for a policy that attaches to
 * waypoints, 0 with *out NULL for anything else (another kind, a selector
 * policy), ZT_E_CONFIG when rejected (reason appended to errs). */
int zt_config_authz_parse_doc(const char *file, const struct ynode *doc,
                              struct zt_route_errors *errs, struct zt_authz_l7_policy **out);

/* Adds every policy of yaml[0..len) (file names it in messages) to s (not
 * yet sealed). Returns 0, ZT_E_CONFIG for a YAML syntax error (documents
 * before it are added) or ZT_E_TOO_BIG past ZT_CONFIG_LOCAL_MAX_BYTES;
 * invalid policies do not make it fail. */
int zt_config_authz_load_string(struct zt_authz_l7_set *s, const char *file, const char *yaml,
                                size_t len, struct zt_route_errors *errs);

/* Shared with the RequestAuthentication reader (authn_yaml.c): the
 * selector / targetRef / targetRefs of spec, as above, into *targets (heap;
 * *n_targets of them) for a policy of namespace pol_ns. *skip is set for a
 * selector or namespace-wide policy and when no target applies. */
struct zt_config_routes_ctx;
/* Every key of mapping m is in known: an unknown one is an error (the
 * policy is refused rather than read without it). */
int zt_config_authz_strict_keys(struct zt_config_routes_ctx *c, const struct ynode *m,
                                const char *path, const char *const *known);
/* Field key of m as a list of non-empty scalars without NUL bytes, at most
 * 4096 bytes each (*out NULL if absent). */
int zt_config_authz_scalars(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                            const char *path, const struct ynode **out);
int zt_config_authz_targets(struct zt_config_routes_ctx *c, const struct ynode *spec,
                            const char *pol_ns, struct zt_authz_l7_target **targets,
                            size_t *n_targets, bool *skip);

#endif
