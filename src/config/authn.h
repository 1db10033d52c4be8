/* Istio RequestAuthentication documents into the waypoint's JWT policies
 * (jwt/authn.h).
 *
 * Accepted: kind RequestAuthentication with apiVersion security.istio.io/v1
 * or v1beta1, in the same files and forms as AuthorizationPolicy
 * (config/authz.h), attached the same way: targetRefs (or targetRef) to
 * the waypoint's Gateway, a Service / ServiceEntry, or GatewayClass
 * istio-waypoint; selector and namespace-wide policies are for sidecars
 * and are skipped silently. Other kinds are skipped.
 *
 * jwtRules fields: issuer (required), audiences, jwks (inline JSON) or
 * jwksUri (http:// or https://; one of the two is required: OpenID
 * discovery from the issuer is not done), fromHeaders {name, prefix},
 * fromParams, fromCookies, forwardOriginalToken, outputPayloadToHeader,
 * outputClaimToHeaders {header, claim}, timeout (read; the fetcher's own
 * timeout applies, with a warning). Each rule is compiled once while
 * reading, so a JWKS that does not parse, a bad header name or a cap is
 * reported here with its field path. Unknown fields in a rule are errors
 * (the policy is left out, others are kept): "<file>:<line>:
 * RequestAuthentication <ns>/<name>: spec.jwtRules[i].<field>: <why>". */
#ifndef ZT_CONFIG_AUTHN_H
#define ZT_CONFIG_AUTHN_H

#include "jwt/authn.h"
#include "route/route.h"

#include <stddef.h>

struct ynode;

/* Reads doc into *out (heap, the caller's): 0 with *out set for a policy
 * that attaches to waypoints, 0 with *out NULL for anything else,
 * ZT_E_CONFIG when rejected (reason appended to errs). */
int zt_config_authn_parse_doc(const char *file, const struct ynode *doc,
                              struct zt_route_errors *errs, struct zt_jwt_authn_policy **out);

/* Appends every waypoint RequestAuthentication of yaml[0..len) to l.
 * Returns as zt_config_authz_load_string. */
int zt_config_authn_load_string(struct zt_jwt_authn_policies *l, const char *file, const char *yaml,
                                size_t len, struct zt_route_errors *errs);

#endif
