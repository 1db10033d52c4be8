/* One DNS query sent to the upstream resolvers until one answers it: each
 * upstream in turn, for `attempts` rounds, each try bounded by the
 * upstream's timeout; over UDP from a socket of its own (a random source
 * port, and a random id of its own, so that a reply from anywhere else is
 * never taken), and again over TCP to the same upstream when the UDP reply
 * came truncated and the caller wants the whole answer. A reply is taken
 * only if it answers the query (its id and question). Used by the DNS
 * proxy to forward a client's query, and by the resolver of hostname
 * endpoints.
 *
 * Threading: on `loop`'s thread only. */
#ifndef ZT_DNS_EXCHANGE_H
#define ZT_DNS_EXCHANGE_H

#include "dns/server.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The reply (borrowed for the call; it carries the exchange's own id and
 * is taken only if it answers the query), or NULL when every try failed.
 * The exchange is finished and freed once this returns. */
typedef void zt_dns_exchange_cb(void *ud, const uint8_t *reply, size_t len);
/* A new non-blocking socket of family and type for one try, or a negative
 * errno. */
typedef int zt_dns_socket_fn(void *ud, int family, int type);

struct zt_dns_exchange;

/* Starts sending query[0..qlen) (copied; at least a header) to ups (which
 * must outlive the exchange and have n > 0). With tcp_on_truncation a
 * truncated UDP reply is asked again over TCP; without, it is delivered.
 * cb runs later, never from within this call. */
struct zt_dns_exchange *zt_dns_exchange_start(uv_loop_t *loop, const struct zt_dns_upstreams *ups,
                                              zt_dns_socket_fn *sock, void *sock_ud,
                                              const uint8_t *query, size_t qlen,
                                              bool tcp_on_truncation, zt_dns_exchange_cb *cb,
                                              void *ud);

/* Stops it: cb will not run; it frees itself once its handles are closed. */
void zt_dns_exchange_cancel(struct zt_dns_exchange *x);

#endif
