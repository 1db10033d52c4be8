/* Outbound HBONE connection pool, one per (worker, pod): HTTP/2 connections
 * keyed by (source identity, expected destination identities, destination
 * address, source IP), each carrying up to `max_streams` CONNECT streams.
 *
 * Never two dials for one key at a time: while a connection for a key is
 * being set up, every request for that key waits on it; requests beyond its
 * capacity are re-queued once it is ready, which may dial the next one.
 * Connections unused for `idle_ms` are closed by a sweep. */
#ifndef ZT_HBONE_POOL_H
#define ZT_HBONE_POOL_H

#include "h2/h2conn.h"

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct zt_hbone_key {
    char src_id[320];            /* spiffe:// identity we present */
    char dst_ids[768];           /* accepted server identities, sorted, comma-separated */
    struct sockaddr_storage dst; /* ip:15008 */
    struct sockaddr_storage src; /* source IP, port 0 */
};

struct zt_hbone_pool;
struct pool_conn;

/* A request for a connection; embedded in the requester. `cb` runs once with
 * an OPEN connection (err 0) or an error, unless cancelled first. */
struct zt_hbone_waiter {
    void (*cb)(struct zt_hbone_waiter *w, struct zt_h2conn *h2, int err);
    struct pool_conn *pc;
    struct zt_hbone_waiter *prev, *next;
};

struct zt_hbone_pool_ops {
    /* Starts a TCP connect to key->dst from the right namespace; returns the
     * fd or a negative error. */
    int (*dial)(void *ud, const struct zt_hbone_key *key);
    /* The client TLS context presenting key->src_id (borrowed for the call). */
    SSL_CTX *(*client_ctx)(void *ud, const struct zt_hbone_key *key);
    /* Checks the handshake's server identity against key->dst_ids: 0 or a
     * negative error. */
    int (*verify)(void *ud, SSL *ssl, const struct zt_hbone_key *key);
};

struct zt_hbone_pool *zt_hbone_pool_new(uv_loop_t *loop, const struct zt_hbone_pool_ops *ops,
                                        void *ud, const struct zt_h2_settings *settings,
                                        unsigned max_streams, uint64_t idle_ms);

/* Finds or creates a connection for `key`. Returns 0 with *ready set when an
 * OPEN connection has room now; 0 with *ready NULL when `w->cb` will be
 * called later; or a negative error (dial failure). */
int zt_hbone_pool_get(struct zt_hbone_pool *p, const struct zt_hbone_key *key,
                      struct zt_hbone_waiter *w, struct zt_h2conn **ready);

/* Withdraws a waiting request (no callback follows). No-op if not waiting. */
void zt_hbone_pool_cancel(struct zt_hbone_waiter *w);

/* Connections (any state) the pool holds. */
unsigned zt_hbone_pool_size(const struct zt_hbone_pool *p);

/* Closes every connection (their streams get on_close) and frees the pool
 * once they are gone. */
void zt_hbone_pool_free(struct zt_hbone_pool *p);

#endif
