/* Identity manager: one workload certificate (and its TLS contexts) per
 * SPIFFE identity, issued on first use or prefetched, renewed at half-life,
 * dropped when forgotten.
 *
 * Issuers. A synchronous issuer (zt_ca_mint_fn: the local CA, a P-256 key
 * and one signature, well under a millisecond) runs in whichever thread
 * needs a certificate. An asynchronous one (zt_ca_async_mint_fn: the Istio
 * CA client) takes a request and reports later from any thread; nothing in
 * the manager then waits for it except zt_ca_mgr_acquire.
 *
 * Scheduling (wire facts §4). One request per identity at a time: every
 * caller that needs it waits on that one. At most ZT_CA_MGR_MAX_INFLIGHT
 * requests are with the issuer at once; the rest queue by priority (a live
 * connection waiting > prefetch > renewal), first come first served within
 * one priority. A queued request whose identity a live connection now
 * needs moves up to ZT_CA_PRIO_LIVE.
 *
 * Threads: zt_ca_mgr_new*, _prefetch and _free run on the control loop's
 * thread; every libuv handle lives there. zt_ca_mgr_acquire* and
 * zt_ca_mgr_forget may be called from any thread: they take an internal
 * mutex briefly and never call the issuer with it held.
 *
 * Renewal: a timer per identity on the control loop fires at
 * zt_tls_cert_refresh_at() (at least 1 s ahead) and queues a request at
 * ZT_CA_PRIO_RENEW; the control loop never waits for it. Until the new
 * certificate arrives the identity keeps serving the old one. On success
 * the entry's identity is swapped: holders of the previous zt_ca_identity
 * keep a fully usable object, so live connections are not disturbed. A
 * failed request is retried after 1 s, doubling to at most 150 s, with
 * +-20 % jitter, never later than the old certificate's expiry. */
#ifndef ZT_CA_MANAGER_H
#define ZT_CA_MANAGER_H

#include "tls/cert.h"
#include "tls/localca.h"
#include "tls/spiffe.h"

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#define ZT_CA_MGR_MAX_INFLIGHT 8

/* An issued identity: immutable after creation, atomically refcounted. */
struct zt_ca_identity {
    atomic_uint refs;
    struct zt_spiffe_id id;
    struct zt_tls_cert *cert; /* owned reference */
    SSL_CTX *server_ctx;      /* owned; inbound HBONE (requires client certs of our TD) */
    SSL_CTX *client_ctx;      /* owned; outbound HBONE */
    /* Increases with every certificate the manager issues (starts at 1);
     * a holder seeing a newer generation from acquire knows it was renewed. */
    uint64_t generation;
};

struct zt_ca_identity *zt_ca_identity_ref(struct zt_ca_identity *ident); /* NULL-safe */
void zt_ca_identity_unref(struct zt_ca_identity *ident);                 /* NULL-safe */

/* Why a certificate is wanted; a higher value is served first. */
enum zt_ca_priority {
    ZT_CA_PRIO_RENEW = 0,    /* half-life renewal or a background retry */
    ZT_CA_PRIO_PREFETCH = 1, /* a workload of this node, before its first connection */
    ZT_CA_PRIO_LIVE = 2      /* a connection is waiting */
};
#define ZT_CA_PRIO_COUNT 3
const char *zt_ca_priority_str(enum zt_ca_priority prio);

/* Synchronous issuer; the manager calls it from whichever thread needs a
 * certificate. Must be thread-safe. Returns 0 and *out (one reference) or
 * < 0. */
typedef int zt_ca_mint_fn(void *arg, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                          struct zt_tls_cert **out);

/* Result of an asynchronous request: rc 0 and cert (the callee takes the
 * reference), or rc < 0 and cert NULL. */
typedef void zt_ca_mint_done_fn(void *done_ud, int rc, struct zt_tls_cert *cert);

/* Asynchronous issuer: starts issuing a certificate for id (borrowed for
 * the call). Returns 0, and then done(done_ud, ...) runs exactly once, on
 * any thread, possibly before this returns; or < 0 and done is never
 * called. prio is advisory (the manager already orders its requests). */
typedef int zt_ca_async_mint_fn(void *arg, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                                enum zt_ca_priority prio, zt_ca_mint_done_fn *done, void *done_ud);

/* Renewal state of one cached identity (control-loop view). */
enum zt_ca_entry_state {
    ZT_CA_ENTRY_ST_NEW,       /* created, waiting for the control loop to arm its timer */
    ZT_CA_ENTRY_ST_SCHEDULED, /* valid; timer set for the half-life */
    ZT_CA_ENTRY_ST_RETRY,     /* last request failed; timer set for the backoff */
    ZT_CA_ENTRY_ST_CLOSING    /* forgotten; timer closing */
};
const char *zt_ca_entry_state_str(enum zt_ca_entry_state st);

struct zt_ca_mgr;
struct zt_worker;
struct zt_ca_wait;

/* Local-CA mode. Borrows ca (must outlive the manager) and keeps a pointer
 * to loop. ttl_seconds is the requested lifetime (SECRET_TTL). Returns NULL
 * if ttl_seconds is 0 or the async handle cannot be set up. */
struct zt_ca_mgr *zt_ca_mgr_new(uv_loop_t *control_loop, struct zt_tls_localca *ca,
                                unsigned ttl_seconds);

/* Same, with any synchronous issuer (tests, or another local signer). */
struct zt_ca_mgr *zt_ca_mgr_new_custom(uv_loop_t *control_loop, zt_ca_mint_fn *mint, void *arg,
                                       unsigned ttl_seconds);

/* Same, with an asynchronous issuer (zt_ca_client_mint_async). The issuer
 * must have reported every request it accepted before zt_ca_mgr_free. */
struct zt_ca_mgr *zt_ca_mgr_new_async(uv_loop_t *control_loop, zt_ca_async_mint_fn *mint, void *arg,
                                      unsigned ttl_seconds);

/* Every identity issued from now on gets HBONE contexts that check peers
 * against crl (CRL_PATH; the manager keeps a reference). Call on the
 * control loop before the first certificate is asked for. NULL: none. */
struct zt_tls_crl;
void zt_ca_mgr_set_crl(struct zt_ca_mgr *mgr, struct zt_tls_crl *crl);

/* Returns 0 and *out = a new reference to the current identity for `id`.
 * On a miss (or an expired certificate) it requests one at ZT_CA_PRIO_LIVE,
 * or joins the request already under way, and BLOCKS until it is answered:
 * with an asynchronous issuer do not call it from a loop thread (use
 * zt_ca_mgr_acquire_async or zt_ca_mgr_prefetch). Returns the issuer's
 * error or ZT_E_TLS if contexts cannot be built. Borrows id. */
int zt_ca_mgr_acquire(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id,
                      struct zt_ca_identity **out);

/* Called on the worker's loop with the outcome of zt_ca_mgr_acquire_async:
 * ident is a reference the callee now owns (NULL when err < 0). The wait
 * object is gone once this is called. */
typedef void zt_ca_wait_cb(void *ud, struct zt_ca_identity *ident, int err);

/* Non-blocking acquire for worker threads. Returns
 *  - 0 and *out (a new reference) when a valid identity is cached, or with a
 *    synchronous issuer that just issued it;
 *  - -EAGAIN and *wait: a request at ZT_CA_PRIO_LIVE is queued or under way
 *    (raised to LIVE if it was queued lower); cb(ud, ...) runs later on
 *    `worker`'s loop, once, unless zt_ca_wait_cancel(*wait) is called first;
 *  - another error (a synchronous issuer failed).
 * Must be called on `worker`'s thread (it is where cb runs). Borrows id. */
int zt_ca_mgr_acquire_async(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id,
                            struct zt_worker *worker, zt_ca_wait_cb *cb, void *ud,
                            struct zt_ca_identity **out, struct zt_ca_wait **wait);

/* Withdraws a wait: no callback follows, the object is freed. Call on the
 * worker that got it, before its callback ran (never after). NULL-safe. */
void zt_ca_wait_cancel(struct zt_ca_wait *wait);

/* Control loop: makes sure a certificate for id is cached or on its way
 * (queued at ZT_CA_PRIO_PREFETCH). Never blocks with an asynchronous
 * issuer. An identity whose last request failed waits for its backoff. */
void zt_ca_mgr_prefetch(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id);

/* Control loop: something that can turn a refusal into an issuance happened
 * for id (its workload just appeared on this node, so a CA that authorizes
 * by configuration may now say yes). An identity without a valid
 * certificate that is waiting out a failure's backoff asks again now, at
 * ZT_CA_PRIO_PREFETCH; its backoff stays for the next failure. Otherwise a
 * no-op. Never blocks with an asynchronous issuer. */
void zt_ca_mgr_retry_now(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id);

/* Drops the cached entry for id (no-op if absent); its timer is closed on
 * the control loop. Identities already handed out stay valid. A request
 * still queued for it is withdrawn unless a connection waits for it;
 * waiting connections still get their answer. */
void zt_ca_mgr_forget(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id);

/* Calls fn(ud, ident, st) once for every cached identity (entries still
 * waiting for their first certificate are skipped), in no particular
 * order, with the manager's mutex held: fn borrows ident for the call (take
 * a reference with zt_ca_identity_ref to keep it), must be quick, and must
 * not call back into the manager. st is the renewal state as last set by
 * the control loop (it may lag one transition behind a request in
 * progress). Any thread. */
void zt_ca_mgr_foreach(struct zt_ca_mgr *mgr,
                       void (*fn)(void *ud, const struct zt_ca_identity *ident,
                                  enum zt_ca_entry_state st),
                       void *ud);

/* Calls fn(ud, id, last_rc) for every identity still waiting for its first
 * certificate: queued, with the issuer, or backing off after a failure
 * (last_rc < 0 then, the issuer's error; 0 before any answer). Same rules
 * as zt_ca_mgr_foreach (mutex held, fn borrows id). Any thread. */
void zt_ca_mgr_foreach_pending(struct zt_ca_mgr *mgr,
                               void (*fn)(void *ud, const struct zt_spiffe_id *id, int last_rc),
                               void *ud);

/* Number of identities known: cached or waiting for their first certificate. */
size_t zt_ca_mgr_count(struct zt_ca_mgr *mgr);

/* Requests with the issuer now, and queued behind them (any thread). */
void zt_ca_mgr_requests(struct zt_ca_mgr *mgr, unsigned *inflight, unsigned *queued);

/* Starts closing every handle; memory is released from the close callbacks,
 * so the loop must run again (uv_run) afterwards. Call on the control loop
 * thread, once no other thread can call into the manager and the issuer
 * has reported everything (stop the CA client first). Waits not delivered
 * yet are dropped. NULL-safe. */
void zt_ca_mgr_free(struct zt_ca_mgr *mgr);

#endif
