/* State objects -> xDS resources: the reverse of convert.h.
 *
 * Our own control plane (`ztunnel control`) serves workloads, services and
 * policies that it holds as struct zt_workload / zt_service / zt_policy.
 * This module packs one object into the bytes of the Any value istiod would
 * send: an istio.workload.Address (workload or service set) or an
 * istio.security.Authorization. It does no I/O and keeps no state.
 *
 * The encoding mirrors convert.c field by field, so that
 * zt_xds_apply_address / zt_xds_apply_authorization give back an equal
 * object. The encoder checks what the decoder would reject (empty uid,
 * hostname or policy name; an address that is neither IPv4 nor IPv6; a
 * gateway of unknown kind; an enum outside the known values; more than
 * ZT_XDS_MAX_LIST elements, a string longer than ZT_XDS_MAX_STR, or a
 * message longer than ZT_XDS_MAX_RESOURCE_LEN) so we never serve a
 * resource that our own client would NACK. Two values are not kept
 * exactly by the wire format, by design of the protocol: a CIDR VIP whose
 * prefix is the full address length comes back as a plain VIP, and a NULL
 * string comes back as "".
 *
 * Errors: each encode function returns 0 with *out a malloc'd buffer of *len
 * bytes (owned by the caller, free() it; never NULL on success, even for an
 * empty message), or ZT_E_PROTO (object not encodable) / ZT_E_TOO_BIG (a
 * cap) with *out = NULL and *len = 0. The object is borrowed. */
#ifndef ZT_XDS_ENCODE_H
#define ZT_XDS_ENCODE_H

#include "state/state.h"

#include <stddef.h>
#include <stdint.h>

/* istio.workload.Address{workload = wl}. */
int zt_xds_encode_workload(const struct zt_workload *wl, uint8_t **out, size_t *len);

/* istio.workload.Address{service = svc}. */
int zt_xds_encode_service(const struct zt_service *svc, uint8_t **out, size_t *len);

/* istio.security.Authorization. */
int zt_xds_encode_policy(const struct zt_policy *p, uint8_t **out, size_t *len);

/* The xDS resource name of each object, as a new heap string the caller
 * frees: the uid, "<namespace>/<hostname>" and "<namespace>/<name>" (the
 * same strings convert.h returns through name_out and the builder uses as
 * keys). NULL fields read as "". */
char *zt_xds_workload_name(const struct zt_workload *wl);
char *zt_xds_service_name(const struct zt_service *svc);
char *zt_xds_policy_name(const struct zt_policy *p);

#endif
