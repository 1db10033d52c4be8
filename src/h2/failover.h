/* Control-plane failover, sans-I/O: which address of XDS_ADDRESS /
 * CA_ADDRESS (h2/grpc.h's address lists) the xDS and CA clients try next,
 * and how long they wait. Both clients follow the same policy:
 *
 * - A round resolves every entry (each may give several addresses: up to
 *   ZT_FAILOVER_PER_TARGET per entry, ZT_FAILOVER_MAX in all) and then
 *   walks the addresses in order, starting after the one last used. An
 *   address listed twice for one entry is tried once; two entries that
 *   resolve to one address are two attempts, each verified against its
 *   own entry's name.
 * - When an attempt ends (a stream or connection lost, a connection that
 *   never became ready), the next address is tried at once; only after
 *   every address of the round failed in a row is the round over: the
 *   client waits (zt_failover_backoff) and resolves the names again.
 * - An attempt that succeeded (the xDS client: a response handled; the CA
 *   client: a connection ready) restarts the count, so losing a working
 *   instance moves to the next one at once.
 *
 * Typical use:
 *
 *   zt_failover_init(&f);
 *   attempt:  if (f.need_resolve) { zt_failover_begin_round(&f);
 *                                   for each entry: zt_failover_add(...);
 *                                   if (!zt_failover_resolved(&f)) round over; }
 *             ep = zt_failover_pick(&f); connect to ep->sa, verify entry ep->target
 *   success:  zt_failover_succeeded(&f);
 *   end:      if (zt_failover_failed(&f)) attempt again now
 *             else wait zt_failover_backoff(engine_ms, zt_random_u32())
 *
 * Nothing here is thread-safe; each client owns its struct. */
#ifndef ZT_H2_FAILOVER_H
#define ZT_H2_FAILOVER_H

#include "h2/grpc.h"

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ZT_FAILOVER_PER_TARGET 16     /* addresses one entry may contribute */
#define ZT_FAILOVER_MAX 64            /* addresses of one round */
#define ZT_FAILOVER_RETRY_MAX_MS 5000 /* longest wait between two rounds */
/* TCP connect bound for an attempt (Istio's ztunnel: 5 s). */
#define ZT_FAILOVER_CONNECT_TIMEOUT_MS 5000

struct zt_failover_endpoint {
    struct sockaddr_storage sa;
    unsigned target; /* index of the entry it came from */
    /* "authority" when the entry is the address itself, else
     * "authority (ip:port)": what the logs call it. */
    char name[sizeof(((struct zt_grpc_target *)0)->authority) + 64];
};

struct zt_failover {
    struct zt_failover_endpoint eps[ZT_FAILOVER_MAX];
    size_t n;          /* addresses of this round */
    size_t next;       /* the address of the next attempt */
    size_t cur;        /* the address of the current (or last) attempt */
    size_t failures;   /* attempts ended in a row without success */
    bool need_resolve; /* a new round before the next attempt */
};

/* Empty, a round needed first. */
void zt_failover_init(struct zt_failover *f);
/* Forgets the addresses of the last round (next is kept, to go on after
 * the address last used). */
void zt_failover_begin_round(struct zt_failover *f);
/* Adds the IPv4 / IPv6 addresses of res (a getaddrinfo list, borrowed) for
 * entry number target, t (borrowed), within the caps and without
 * duplicates within that entry. Returns how many were added. */
size_t zt_failover_add(struct zt_failover *f, unsigned target, const struct zt_grpc_target *t,
                       const struct addrinfo *res);
/* The round's lookups are done. Returns true when it has an address; false
 * leaves need_resolve set (the round is over before it began). */
bool zt_failover_resolved(struct zt_failover *f);
/* The address of the next attempt (f->n > 0): becomes cur, next moves on. */
const struct zt_failover_endpoint *zt_failover_pick(struct zt_failover *f);
/* zt_failover_pick for a client of the entries `targets` (the list the
 * round was resolved from): also writes the authority to send and the name
 * the instance's certificate must prove, `alt_host` when not empty (ALT_*_
 * HOSTNAME), else the host of the address's own entry: an instance reached
 * through another entry's address must still prove the name it was asked
 * by. Buffers sized as zt_grpc_target's authority and host hold any. */
const struct zt_failover_endpoint *zt_failover_pick_target(struct zt_failover *f,
                                                           const struct zt_grpc_target *targets,
                                                           const char *alt_host, char *authority,
                                                           size_t authority_len, char *verify_host,
                                                           size_t verify_host_len);
/* The current attempt succeeded: the count of failures restarts. */
void zt_failover_succeeded(struct zt_failover *f);
/* The current attempt ended. Returns true to try f->eps[f->next] at once;
 * false when every address of the round failed in a row: the count
 * restarts, need_resolve is set, and the caller waits before the next
 * round. */
bool zt_failover_failed(struct zt_failover *f);
/* The wait before the next round: d = min(engine_ms,
 * ZT_FAILOVER_RETRY_MAX_MS), drawn uniformly in [d/2, d] from rnd (any
 * 32-bit value) so that proxies that lost the same instance do not come
 * back in step. */
uint64_t zt_failover_backoff(uint64_t engine_ms, uint32_t rnd);

#endif
