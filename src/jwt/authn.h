/* RequestAuthentication at the waypoint: the policies as read
 * (config/authn.h) and, built from them, the JWT rule set each request
 * is checked against (jwt/jwt.h).
 *
 * Attachment is AuthorizationPolicy's at a waypoint (authz/l7.h):
 * targetRefs naming this waypoint's Gateway, a Service / ServiceEntry in
 * the policy's namespace, or GatewayClass istio-waypoint from the root
 * namespace. Every policy that applies to a request adds its jwtRules to
 * one set, as Istio gives Envoy's jwt_authn one provider per rule with
 * "any of them, or none" as the requirement: a token valid for any rule
 * passes, an invalid one is refused (401), no token passes without
 * request.auth.*.
 *
 * A built set (zt_jwt_authn_set) is immutable and refcounted: the waypoint
 * builds a new one when the policies or a fetched JWKS change and swaps it
 * in, so worker threads check tokens without locks. Rule sets are compiled
 * once per attachment (the Gateway's, and the Gateway's plus each
 * targeted service's), so a request costs one binary search. */
#ifndef ZT_JWT_AUTHN_H
#define ZT_JWT_AUTHN_H

#include "authz/l7.h"
#include "jwt/jwt.h"

#include <stdbool.h>
#include <stddef.h>

/* One RequestAuthentication as read. Every string, array and rule spec
 * field is heap-owned (freed by zt_jwt_authn_policy_free). */
struct zt_jwt_authn_policy {
    char *ns, *name;
    struct zt_authz_l7_target *targets;
    size_t n_targets;
    struct zt_jwt_rule_spec *rules;
    size_t n_rules;
};
/* NULL is a no-op. */
void zt_jwt_authn_policy_free(struct zt_jwt_authn_policy *p);

/* The policies of one configuration, in reading order; a later policy
 * with the ns/name of an earlier one replaces it. */
struct zt_jwt_authn_policies {
    struct zt_jwt_authn_policy **v;
    size_t n, cap;
};
/* Takes ownership of p. */
void zt_jwt_authn_policies_add(struct zt_jwt_authn_policies *l, struct zt_jwt_authn_policy *p);
void zt_jwt_authn_policies_cleanup(struct zt_jwt_authn_policies *l);
/* The distinct jwksUri values of every rule of l, into uris (borrowed from
 * l), at most max; returns how many there are (may exceed max). */
size_t zt_jwt_authn_policies_uris(const struct zt_jwt_authn_policies *l, const char **uris,
                                  size_t max);

/* The last good JWKS document of a jwksUri, or NULL (len set when not). */
typedef const char *zt_jwt_jwks_lookup_fn(void *ud, const char *uri, size_t *len);

struct zt_jwt_authn_set;

/* Builds the set for the waypoint gateway gw_ns/gw_name from l (borrowed
 * for the call) with root_ns the mesh root namespace (NULL:
 * "istio-system"). Rules with a jwksUri get the document jwks(ud, uri)
 * gives (jwks NULL, or no document yet: such a rule makes its tokens
 * invalid until one arrives, as Envoy's "Jwks remote fetch is failed").
 * Returns NULL when no policy attaches to this waypoint (no JWT step at
 * all). A rule that no longer compiles (a cap) is left out and counted in
 * *n_bad (may be NULL). */
struct zt_jwt_authn_set *zt_jwt_authn_set_build(const struct zt_jwt_authn_policies *l,
                                                const char *root_ns, const char *gw_ns,
                                                const char *gw_name, zt_jwt_jwks_lookup_fn *jwks,
                                                void *ud, size_t *n_bad);
struct zt_jwt_authn_set *zt_jwt_authn_set_ref(struct zt_jwt_authn_set *s);
/* NULL is a no-op. */
void zt_jwt_authn_set_unref(struct zt_jwt_authn_set *s);

/* The rules for a request addressed to service svc_ns/svc_name (NULL:
 * none; is_entry: a ServiceEntry), or NULL when no policy applies to it.
 * Borrowed from s. */
const struct zt_jwt_rules *zt_jwt_authn_rules(const struct zt_jwt_authn_set *s, const char *svc_ns,
                                              const char *svc_name, bool is_entry);

/* How many policies attach to this waypoint, and rule sets were compiled
 * (the Gateway's plus one per targeted service). */
size_t zt_jwt_authn_set_policies(const struct zt_jwt_authn_set *s);
size_t zt_jwt_authn_set_sets(const struct zt_jwt_authn_set *s);

#endif
