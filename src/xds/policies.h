/* Waypoint policies as xDS resources (proto/policies.proto, whose comments
 * are the wire contract):
 *   struct zt_authz_l7_policy (authz/l7.h) <-> ztunnel.policy.v1.
 *     AuthorizationPolicy, "type.googleapis.com/ztunnel.policy.v1.
 *     AuthorizationPolicy";
 *   struct zt_jwt_authn_policy (jwt/authn.h) <-> ztunnel.policy.v1.
 *     RequestAuthentication, "...ztunnel.policy.v1.RequestAuthentication";
 *   struct zt_ratelimit_policy (ratelimit/ratelimit.h) <-> ztunnel.policy.
 *     v1.RateLimit, "...ztunnel.policy.v1.RateLimit".
 * All are named "<namespace>/<name>".
 *
 * `ztunnel control` encodes each policy it read from its directory; a
 * waypoint decodes what it receives back into a policy and adds it to the
 * set it installs. The decoder trusts nothing: every list and string is
 * capped as the YAML readers cap them (authz/l7.h ZT_AUTHZ_L7_MAX_*, the
 * jwt/jwt.h caps, config/ratelimit.h's limits), enums outside the known
 * values, string matches the reader could not have produced, bad CIDRs,
 * ports, `when` keys and values of the wrong kind for their key, rate
 * limits out of range, a header key that is not a lower-case field name
 * and a sectionName on a target that is not a route are rejected with the
 * field named, and each jwtRule is compiled once (so a JWKS that does not
 * parse is refused here, as when reading YAML). The encoder refuses what the decoder would
 * reject, so the control plane never serves a policy its waypoints NACK.
 *
 * Not carried exactly, by design: a NULL string and "" are one value on the
 * wire (optional strings of a jwtRule are NULL after decoding).
 *
 * Errors: 0, or ZT_E_PROTO (malformed or invalid) / ZT_E_TOO_BIG (a cap),
 * with "<field>: <reason>" in err (errlen bytes), e.g.
 * "rules[0].to[1].paths[2]: not a value the reader produces". Nothing here
 * logs or keeps state. Out of memory aborts. */
#ifndef ZT_XDS_POLICIES_H
#define ZT_XDS_POLICIES_H

#include "authz/l7.h"
#include "jwt/authn.h"
#include "ratelimit/ratelimit.h"

#include <stddef.h>
#include <stdint.h>

#define ZT_XDS_TYPE_AUTHZ_POLICY "type.googleapis.com/ztunnel.policy.v1.AuthorizationPolicy"
#define ZT_XDS_TYPE_AUTHN_POLICY "type.googleapis.com/ztunnel.policy.v1.RequestAuthentication"
#define ZT_XDS_TYPE_RATELIMIT "type.googleapis.com/ztunnel.policy.v1.RateLimit"

/* Encoded bytes of one policy, at most. */
#define ZT_XDS_POLICY_MAX_LEN (4u << 20)

/* The resource name "<namespace>/<name>" of a policy of either type. A heap
 * string the caller frees. */
char *zt_xds_waypoint_policy_name(const char *ns, const char *name);

/* Packs p (borrowed). On success *out is a malloc'd buffer of *len bytes
 * (never NULL) owned by the caller; on failure *out is NULL and err says
 * which field. */
int zt_xds_authz_encode(const struct zt_authz_l7_policy *p, uint8_t **out, size_t *len, char *err,
                        size_t errlen);
/* Unpacks and checks value[0..len) (borrowed) into *out: a new policy
 * (zt_authz_l7_policy_free) on success, NULL on failure. */
int zt_xds_authz_decode(const uint8_t *value, size_t len, struct zt_authz_l7_policy **out,
                        char *err, size_t errlen);

/* The same for RequestAuthentication (free with zt_jwt_authn_policy_free). */
int zt_xds_authn_encode(const struct zt_jwt_authn_policy *p, uint8_t **out, size_t *len, char *err,
                        size_t errlen);
int zt_xds_authn_decode(const uint8_t *value, size_t len, struct zt_jwt_authn_policy **out,
                        char *err, size_t errlen);

/* The same for RateLimit (free with zt_ratelimit_policy_free). */
int zt_xds_ratelimit_encode(const struct zt_ratelimit_policy *p, uint8_t **out, size_t *len,
                            char *err, size_t errlen);
int zt_xds_ratelimit_decode(const uint8_t *value, size_t len, struct zt_ratelimit_policy **out,
                            char *err, size_t errlen);

#endif
