/* Identity manager: one workload certificate (and its TLS contexts) per
 * SPIFFE identity, issued on first use and renewed at half-life.
 *
 * Threads: zt_ca_mgr_new/_free run on the control loop's thread; every
 * libuv handle lives there. zt_ca_mgr_acquire and zt_ca_mgr_forget may be
 * called from any thread (workers): they take an internal mutex briefly.
 * A miss mints synchronously in the calling thread (a P-256 key and one
 * signature, well under a millisecond), outside the mutex.
 *
 * Renewal: a timer per identity on the control loop fires at
 * zt_tls_cert_refresh_at() (at least 1 s ahead), mints a new certificate,
 * builds new contexts and swaps the entry. Holders of the previous
 * zt_ca_identity keep a fully usable object, so live connections are not
 * disturbed. A failed renewal is retried after 1 s, doubling to at most
 * 150 s, with +-20 % jitter, never later than the old cert's expiry. */
#ifndef ZT_CA_MANAGER_H
#define ZT_CA_MANAGER_H

#include "tls/cert.h"
#include "tls/localca.h"
#include "tls/spiffe.h"

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

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

/* Issues a certificate; the manager calls it from whichever thread needs
 * one. Must be thread-safe. Returns 0 and *out (one reference) or < 0. */
typedef int zt_ca_mint_fn(void *arg, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                          struct zt_tls_cert **out);

/* Renewal state of one cached identity (control-loop view). */
enum zt_ca_entry_state {
    ZT_CA_ENTRY_ST_NEW,       /* issued, waiting for the control loop to arm its timer */
    ZT_CA_ENTRY_ST_SCHEDULED, /* valid; timer set for the half-life */
    ZT_CA_ENTRY_ST_RETRY,     /* last renewal failed; timer set for the backoff */
    ZT_CA_ENTRY_ST_CLOSING    /* forgotten; timer closing */
};
const char *zt_ca_entry_state_str(enum zt_ca_entry_state st);

struct zt_ca_mgr;

/* Local-CA mode. Borrows ca (must outlive the manager) and keeps a pointer
 * to loop. ttl_seconds is the requested lifetime (SECRET_TTL). Returns NULL
 * if ttl_seconds is 0 or the async handle cannot be set up. */
struct zt_ca_mgr *zt_ca_mgr_new(uv_loop_t *control_loop, struct zt_tls_localca *ca,
                                unsigned ttl_seconds);

/* Same, with any issuer (tests, or a future synchronous signer). */
struct zt_ca_mgr *zt_ca_mgr_new_custom(uv_loop_t *control_loop, zt_ca_mint_fn *mint, void *arg,
                                       unsigned ttl_seconds);

/* Returns 0 and *out = a new reference to the current identity for `id`
 * (issuing it on first use, or when the cached one has expired), or the
 * minter's error / ZT_E_TLS if contexts cannot be built. Borrows id. */
int zt_ca_mgr_acquire(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id,
                      struct zt_ca_identity **out);

/* Drops the cached entry for id (no-op if absent); its timer is closed on
 * the control loop. Identities already handed out stay valid. */
void zt_ca_mgr_forget(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id);

/* Calls fn(ud, ident, st) once for every cached identity, in no particular
 * order, with the manager's mutex held: fn borrows ident for the call (take
 * a reference with zt_ca_identity_ref to keep it), must be quick, and must
 * not call back into the manager. st is the renewal state as last set by the
 * control loop (it may lag one transition behind a renewal in progress).
 * Any thread. */
void zt_ca_mgr_foreach(struct zt_ca_mgr *mgr,
                       void (*fn)(void *ud, const struct zt_ca_identity *ident,
                                  enum zt_ca_entry_state st),
                       void *ud);

/* Number of cached identities. */
size_t zt_ca_mgr_count(struct zt_ca_mgr *mgr);

/* Starts closing every handle; memory is released from the close callbacks,
 * so the loop must run again (uv_run) afterwards. Call on the control loop
 * thread, once no other thread can call into the manager. NULL-safe. */
void zt_ca_mgr_free(struct zt_ca_mgr *mgr);

#endif
