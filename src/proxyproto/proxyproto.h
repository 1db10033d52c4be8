/* PROXY protocol version 2 (haproxy's proxy-protocol.txt, section 2.2),
 * encoding only, sans-I/O: what Istio's ztunnel writes first on an inbound
 * connection to a workload with an application tunnel of protocol PROXY
 * (wire facts 2.8).
 *
 * A header is the 12-byte signature, the version/command byte (0x21:
 * version 2, PROXY), the family/transport byte, a big-endian length of what
 * follows, the addresses and the TLVs. Only what ztunnel sends is produced:
 * STREAM over INET (0x11) or INET6 (0x21), or, when the two addresses are
 * of different families, UNSPEC (0x01) without an address block, as Istio's
 * encoder does; and at most one TLV, 0xD0, carrying the client's SPIFFE
 * identity. */
#ifndef ZT_PROXYPROTO_PROXYPROTO_H
#define ZT_PROXYPROTO_PROXYPROTO_H

#include "tls/spiffe.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The TLV type Istio uses for the peer's identity ("authority" in its
 * source; not one of the types the PROXY specification registers). */
#define ZT_PROXYPROTO_TLV_PEER_IDENTITY 0xD0

/* The longest header: signature and fixed part (16), two IPv6 addresses and
 * ports (36), one TLV header (3) and the longest SPIFFE id. */
#define ZT_PROXYPROTO_V2_MAX (16 + 36 + 3 + ZT_SPIFFE_ID_MAX)

/* Writes the header for a stream from `src` to `dst` (AF_INET or AF_INET6,
 * both borrowed for the call) into buf (cap bytes), with the 0xD0 TLV if
 * `identity` (borrowed; NULL or "" for none) is given. On success stores the
 * header's size in *out_len and returns 0. Returns ZT_E_TOO_BIG if the
 * identity is longer than ZT_SPIFFE_ID_MAX or the header does not fit in
 * cap, -EAFNOSUPPORT for another address family; buf is then unspecified. */
int zt_proxyproto_v2_encode(const struct sockaddr *src, const struct sockaddr *dst,
                            const char *identity, uint8_t *buf, size_t cap, size_t *out_len);

#endif
