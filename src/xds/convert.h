/* xDS resources -> state objects.
 *
 * istiod sends ztunnel two resource types over delta ADS (wire facts 3.1):
 * "type.googleapis.com/istio.workload.Address" (a Workload or a Service) and
 * "type.googleapis.com/istio.security.Authorization". This module decodes
 * the Any payload of one DeltaDiscoveryResponse Resource, validates it
 * (3.1-3.3) and turns it into a struct zt_workload / zt_service / zt_policy
 * that a struct zt_state_builder takes. It does no I/O and keeps no state:
 * the ADS client owns the stream, the builder and the ACK/NACK bookkeeping.
 *
 * Validation is strict where a wrong guess would be unsafe: addresses must
 * be 4 or 16 bytes, TunnelProtocol LEGACY_ISTIO_MTLS and every unknown enum
 * value are rejected (except Service.visibility, unknown => PUBLIC), a
 * LoadBalancing scope of UNSPECIFIED is rejected, ports above 65535 are
 * rejected (authorization ports excepted, see below), and every list and
 * string is capped. Unlike Rust ztunnel, an authorization Address or
 * StringMatch that cannot be read rejects the whole policy instead of being
 * dropped from its match (dropping could widen an ALLOW rule).
 *
 * Errors: every function returning int returns 0, ZT_E_PROTO (malformed or
 * invalid) or ZT_E_TOO_BIG (a cap), and on failure writes a NUL-terminated
 * "<field>: <reason>" into err (errlen bytes, may be 0), for example
 * "addresses[1]: length 5, want 4 or 16". The caller builds the NACK text
 * "<resource name>: <err>". Nothing is logged here. */
#ifndef ZT_XDS_CONVERT_H
#define ZT_XDS_CONVERT_H

#include "proto/authorization.pb-c.h"
#include "proto/workload.pb-c.h"
#include "state/state.h"

#include <stddef.h>
#include <stdint.h>

#define ZT_XDS_TYPE_ADDRESS "type.googleapis.com/istio.workload.Address"
#define ZT_XDS_TYPE_AUTHORIZATION "type.googleapis.com/istio.security.Authorization"

/* Caps on one resource. */
#define ZT_XDS_MAX_RESOURCE_LEN (4u << 20) /* encoded Any value bytes */
#define ZT_XDS_MAX_LIST 1024               /* elements of any repeated field or map */
#define ZT_XDS_MAX_STR 1024                /* bytes of any string */

/* Converts a decoded Workload. pb is borrowed. On success *out is a new
 * workload (one reference, owned by the caller, typically handed to
 * zt_state_builder_put_workload); on failure *out is NULL. An empty uid is
 * rejected; an absent capacity becomes 1. */
int zt_xds_workload_from_pb(const Istio__Workload__Workload *pb, struct zt_workload **out,
                            char *err, size_t errlen);

/* Converts a decoded Service (same ownership rules). An empty hostname is
 * rejected. Each NetworkAddress without a length, or with the full length,
 * becomes a VIP; a shorter length makes a CIDR VIP. */
int zt_xds_service_from_pb(const Istio__Workload__Service *pb, struct zt_service **out, char *err,
                           size_t errlen);

/* Converts a decoded Authorization (same ownership rules). Empty name is
 * rejected. Port values are kept as sent (a port above 65535 never
 * matches); CIDR prefixes longer than the address are rejected. */
int zt_xds_policy_from_pb(const Istio__Security__Authorization *pb, struct zt_policy **out,
                          char *err, size_t errlen);

/* Decodes the bytes of an istio.workload.Address (the `value` of the
 * Resource's Any, len bytes, borrowed), converts it and puts the workload or
 * service into b (replacing any object with the same key). Nothing is put on
 * failure. An Address with neither workload nor service set is rejected.
 * If name_out is not NULL it receives the object's key (a heap string the
 * caller frees; NULL on failure): the uid or "ns/hostname", for checking
 * against the Resource name. */
int zt_xds_apply_address(struct zt_state_builder *b, const uint8_t *any_value, size_t len,
                         char **name_out, char *err, size_t errlen);

/* Same for an istio.security.Authorization; the key is "ns/name". */
int zt_xds_apply_authorization(struct zt_state_builder *b, const uint8_t *any_value, size_t len,
                               char **name_out, char *err, size_t errlen);

/* True if name has the "<namespace>/<hostname>" shape of a service resource
 * name: exactly one '/', neither side empty. Workload uids
 * ("cluster//v1/Pod/ns/name") never have it. */
bool zt_xds_is_service_name(const char *name);

/* Handles one Address name from removed_resources: if base (the snapshot the
 * builder started from; borrowed, may be NULL) holds a workload with that
 * uid, it is removed; otherwise a service-shaped name removes that service
 * and anything else removes the workload uid. Unknown names are not an
 * error, so this returns nothing. */
void zt_xds_remove_address(struct zt_state_builder *b, const struct zt_state *base,
                           const char *name);

/* Handles one Authorization name ("ns/name") from removed_resources. */
void zt_xds_remove_authorization(struct zt_state_builder *b, const char *name);

#endif
