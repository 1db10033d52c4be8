/* Outbound HBONE connection pool, one per (worker, pod): HTTP/2 connections
 * keyed by (source identity, expected destination identities, destination
 * address, source IP), each carrying up to `max_streams` CONNECT streams.
 *
 * Never two dials for one key at a time: while a connection for a key is
 * being set up, every request for that key waits on it; requests beyond its
 * capacity are re-queued once it is ready, which may dial the next one.
 * The TLS context presenting the source identity may not be at hand yet
 * (its certificate is being issued): the connection then waits for it,
 * with its requests, and dials once the owner hands it over.
 * Connections unused for `idle_ms` are closed by a sweep. */
#ifndef ZT_HBONE_POOL_H
#define ZT_HBONE_POOL_H

#include "base/list.h"
#include "h2/h2conn.h"
#include "tls/spiffe.h"

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/* The most server identities a key accepts: the workload's own and up to
 * eight more from the service's subject alt names. */
#define ZT_HBONE_KEY_MAX_IDS 9

/* Both identity fields hold full-length SPIFFE ids: a key that cannot hold
 * its identities is an error for the caller, never a truncated (and so
 * different, possibly valid) identity. */
struct zt_hbone_key {
    char src_id[ZT_SPIFFE_ID_MAX + 1]; /* spiffe:// identity we present */
    /* accepted server identities, sorted, comma-separated */
    char dst_ids[ZT_HBONE_KEY_MAX_IDS * (ZT_SPIFFE_ID_MAX + 1)];
    struct sockaddr_storage dst; /* ip:15008 */
    struct sockaddr_storage src; /* source IP, port 0 */
};

struct zt_hbone_pool;
struct pool_conn;

/* A request for a connection; embedded in the requester. `cb` runs once with
 * an OPEN connection (err 0) or an error, unless cancelled first. */
struct zt_hbone_waiter {
    void (*cb)(struct zt_hbone_waiter *w, struct zt_h2conn *h2, int err);
    struct pool_conn *pc;     /* set while waiting on it */
    struct zt_list_node link; /* in pc's waiters (private to the pool) */
    void *tunnel;             /* set while a double-HBONE wait of proxy/l7.c holds it */
};

/* A connection's pending request for its TLS context; embedded in the
 * pool's connection. */
struct zt_hbone_ctx_req {
    void *owner_data; /* free for the ops' use (e.g. their pending certificate wait) */
};

struct zt_hbone_pool_ops {
    /* Starts a TCP connect to key->dst from the right namespace; returns the
     * fd or a negative error. */
    int (*dial)(void *ud, const struct zt_hbone_key *key);
    /* The client TLS context presenting key->src_id. Returns 0 and *ctx
     * (borrowed for the call); -EAGAIN when it is not available yet: the
     * connection waits, and the owner later calls zt_hbone_pool_ctx_ready
     * (req, ...) once, on the pool's loop, unless ctx_cancel(ud, req) came
     * first; or a negative error, which the get returns. */
    int (*client_ctx)(void *ud, const struct zt_hbone_key *key, struct zt_hbone_ctx_req *req,
                      SSL_CTX **ctx);
    /* Withdraws a pending context request (the pool is being freed). May
     * be NULL when client_ctx never returns -EAGAIN. */
    void (*ctx_cancel)(void *ud, struct zt_hbone_ctx_req *req);
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

/* Answers a client_ctx that returned -EAGAIN: ctx (borrowed for the call),
 * or NULL and err < 0. The connection dials now; if it cannot, or err < 0,
 * each of its waiting requests gets cb(w, NULL, error). If every request
 * was cancelled meanwhile, the connection is dropped without dialing. */
void zt_hbone_pool_ctx_ready(struct zt_hbone_ctx_req *req, SSL_CTX *ctx, int err);

/* Withdraws a waiting request (no callback follows). No-op if not waiting. */
void zt_hbone_pool_cancel(struct zt_hbone_waiter *w);

/* Connections (any state) the pool holds. */
unsigned zt_hbone_pool_size(const struct zt_hbone_pool *p);

/* Calls fn(ud, h2) for every connection that has started its TLS session
 * (any state but waiting for its context), e.g. to re-check peers when
 * CRLs change. fn borrows h2 and must not close it or call into the pool:
 * collect, then close with zt_h2conn_close() (the pool then fails the
 * connection's waiters and forgets it as for any close). */
void zt_hbone_pool_foreach(struct zt_hbone_pool *p, void (*fn)(void *ud, struct zt_h2conn *h2),
                           void *ud);

/* Graceful stop (the proxy drains): every open connection sends GOAWAY,
 * takes no new stream and closes once its streams end; an idle one closes
 * now. A connection still being set up serves its waiting requests and
 * gets the same treatment at the next sweep (within a second). Later
 * zt_hbone_pool_get calls still work (they dial afresh). */
void zt_hbone_pool_drain(struct zt_hbone_pool *p);

/* Closes every connection (their streams get on_close) and frees the pool
 * once they are gone. */
void zt_hbone_pool_free(struct zt_hbone_pool *p);

#endif
