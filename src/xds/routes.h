/* Waypoint routes as xDS resources: struct zt_route_def (route/route.h) <->
 * ztunnel.routes.v1.Route (proto/routes.proto, whose comments are the wire
 * contract), the type "type.googleapis.com/ztunnel.routes.v1.Route".
 *
 * `ztunnel control` encodes each HTTPRoute / GRPCRoute it read from its
 * directory; a waypoint decodes what it receives back into a def and hands
 * it to a zt_route_builder. The decoder trusts nothing: every list and
 * string is capped as the YAML loader caps them (the Gateway API CRDs'
 * limits), enums outside the known values, bad paths, header names or
 * values, ports, weights, status codes and regexes are rejected with the
 * field named. The encoder refuses what the decoder would reject, so the
 * control plane never serves a route its waypoints NACK.
 *
 * Not carried exactly, by design: a NULL string and "" are one value on the
 * wire (optional strings are NULL after decoding; a match's path is "" for
 * PathPrefix "/" and NULL without a path).
 *
 * Errors: 0, or ZT_E_PROTO (malformed or invalid) / ZT_E_TOO_BIG (a cap),
 * with "<field>: <reason>" in err (errlen bytes), e.g.
 * "rules[0].matches[2].headers[1].name: not a header name". Nothing here
 * logs or keeps state. Out of memory aborts. */
#ifndef ZT_XDS_ROUTES_H
#define ZT_XDS_ROUTES_H

#include "route/route.h"

#include <stddef.h>
#include <stdint.h>

#define ZT_XDS_TYPE_ROUTE "type.googleapis.com/ztunnel.routes.v1.Route"

/* Caps (the CRDs', as config/routes_int.h applies them to YAML). */
#define ZT_XDS_ROUTE_MAX_RULES 16
#define ZT_XDS_ROUTE_MAX_MATCHES 64
#define ZT_XDS_ROUTE_MAX_LIST 16 /* filters, backends, modifiers, hostnames */
#define ZT_XDS_ROUTE_MAX_PARENTS 32
#define ZT_XDS_ROUTE_MAX_NAME 253
#define ZT_XDS_ROUTE_MAX_VALUE 4096
#define ZT_XDS_ROUTE_MAX_WEIGHT 1000000
#define ZT_XDS_ROUTE_MAX_LEN (1u << 20) /* encoded bytes */

/* The resource name of d: "<kind>/<namespace>/<name>", kind "HTTPRoute" or
 * "GRPCRoute". A heap string the caller frees. */
char *zt_xds_route_name(const struct zt_route_def *d);

/* Packs d (borrowed) into a ztunnel.routes.v1.Route. On success *out is a
 * malloc'd buffer of *len bytes (never NULL) owned by the caller; on
 * failure *out is NULL and err says which field. */
int zt_xds_route_encode(const struct zt_route_def *d, uint8_t **out, size_t *len, char *err,
                        size_t errlen);

/* Unpacks and checks value[0..len) (borrowed) into *out (zeroed first; on
 * success owned by the caller: zt_route_def_cleanup or a builder; on
 * failure left zeroed). Regexes are compiled here. */
int zt_xds_route_decode(const uint8_t *value, size_t len, struct zt_route_def *out, char *err,
                        size_t errlen);

#endif
