/* Addresses of a hostname, for endpoints that have a hostname and no
 * address (a ServiceEntry with DNS resolution): asked of the upstream
 * resolvers (A, and AAAA unless IPv6 is off) when a connection picks such
 * an endpoint, as Istio's ztunnel does, and cached for the records' TTL.
 * Concurrent lookups of one name share one query; answers that say the
 * name has no address are cached too (for the SOA's negative TTL, at most
 * ZT_DNS_NEGATIVE_TTL_MAX seconds), so a burst of connections to a broken
 * name asks once.
 *
 * One resolver per worker loop; everything on that loop's thread. */
#ifndef ZT_DNS_RESOLVER_H
#define ZT_DNS_RESOLVER_H

#include "dns/exchange.h"
#include "state/ip.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#define ZT_DNS_RESOLVE_MAX 16         /* addresses kept per name */
#define ZT_DNS_CACHE_MAX 4096         /* names kept (Istio's cache size) */
#define ZT_DNS_NEGATIVE_TTL_MAX 30    /* seconds a "no such address" is kept */
#define ZT_DNS_POSITIVE_TTL_MAX 86400 /* seconds an answer is kept at most */

struct zt_dns_resolver;
struct zt_dns_lookup;

/* ups and the socket function are borrowed and must outlive the
 * resolver; sockets are made in the caller's namespace (the proxy's own,
 * as Istio's ztunnel resolves these names). */
struct zt_dns_resolver *zt_dns_resolver_new(uv_loop_t *loop, const struct zt_dns_upstreams *ups,
                                            bool ipv6, zt_dns_socket_fn *sock, void *sock_ud);
/* Cancels every lookup (no callback runs) and frees the resolver; its
 * handles finish closing on the loop. NULL is a no-op. */
void zt_dns_resolver_free(struct zt_dns_resolver *r);

/* The answer: 0 with addrs[0..n) (borrowed for the call), ZT_E_NOT_FOUND
 * (the name has no address), or ZT_E_UPSTREAM (no upstream answered). */
typedef void zt_dns_lookup_cb(void *ud, int err, const struct zt_ip *addrs, size_t n);

/* Looks host up. From a fresh cache entry: returns 0 or ZT_E_NOT_FOUND at
 * once, with up to cap addresses copied to addrs (*n). Otherwise returns
 * -EAGAIN with *out set: cb(ud, ...) runs later, unless the lookup is
 * cancelled first. A name longer than a DNS name can be: ZT_E_TOO_BIG. */
int zt_dns_resolver_lookup(struct zt_dns_resolver *r, const char *host, struct zt_ip *addrs,
                           size_t cap, size_t *n, zt_dns_lookup_cb *cb, void *ud,
                           struct zt_dns_lookup **out);

/* The callback of l will not run. NULL is a no-op. */
void zt_dns_lookup_cancel(struct zt_dns_lookup *l);

#endif
