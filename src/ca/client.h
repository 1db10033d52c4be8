/* Istio CA client (wire facts §4): IstioCertificateService/CreateCertificate
 * over gRPC over TLS to CA_ADDRESS, with a P-256 CSR carrying the critical
 * SPIFFE URI SAN, `ImpersonatedIdentity` metadata in shared (node) mode,
 * `authorization: Bearer <token>` (re-read per call) and `clusterid`. The
 * leaf must carry the requested identity; the last chain element is the
 * trust bundle.
 *
 * The client runs its own thread and event loop with one HTTP/2 connection
 * (reconnected on demand). CA_ADDRESS may list several instances and a
 * name may resolve to several addresses (h2/grpc.h): a connection that
 * fails before it is ready moves on to the next address at once; when
 * every address failed in a row, the waiting requests fail (the identity
 * manager retries them with its backoff) and the names are resolved
 * again. A connection that worked and then closed, did not answer its
 * keepalive PING (ping_interval_ms / ping_timeout_ms) or let a request
 * time out is left, and the next request connects to the next address.
 * Each address's certificate is checked against its own entry's host name
 * (or ALT_CA_HOSTNAME). Certificates already issued are unaffected.
 * CA_ROOT_CA is looked at again before each new
 * connection and re-read when it changed (tls/roots.h). zt_ca_client_mint_async() is the identity
 * manager's asynchronous issuer (zt_ca_async_mint_fn): key and CSR are made
 * on the client's thread and the answer is reported from there.
 * zt_ca_client_mint() is the blocking form (zt_ca_mint_fn). At most
 * ZT_CA_CLIENT_MAX_INFLIGHT requests are on the wire at once; more wait
 * their turn, higher priority first, then in order of arrival. Every
 * request is answered within the timeout. */
#ifndef ZT_CA_CLIENT_H
#define ZT_CA_CLIENT_H

#include "ca/manager.h"
#include "tls/cert.h"
#include "tls/spiffe.h"

#include <stdbool.h>

#define ZT_CA_CLIENT_MAX_INFLIGHT 8

struct zt_ca_client_opts {
    const char *address;      /* "host:port", "https://" accepted; several comma-separated */
    const char *root_ca;      /* PEM file verifying the CA server, or "SYSTEM" */
    const char *alt_hostname; /* name to verify instead of the host; NULL = host */
    const char *token_path;   /* bearer token file; NULL or unreadable = none */
    const char *cluster_id;
    bool impersonate;    /* shared mode: ask for workloads' identities */
    unsigned timeout_ms; /* per certificate; 0 = 10 s */
    /* HTTP/2 keepalive; 0 = 30 s / 10 s (Istio's ztunnel). */
    uint32_t ping_interval_ms;
    uint32_t ping_timeout_ms;
};

struct zt_ca_client;

/* Starts the client's thread (no connection until the first request).
 * Returns 0 or ZT_E_CONFIG with the reason in err. */
int zt_ca_client_new(const struct zt_ca_client_opts *opts, struct zt_ca_client **out, char *err,
                     size_t errlen);

/* zt_ca_async_mint_fn: a new key, CSR, CreateCertificate, and the verified
 * result. Any thread. Returns 0, and then done(done_ud, rc, cert) runs once
 * on the client's thread (never inside this call) with rc 0, ZT_E_TIMEOUT,
 * ZT_E_IDENTITY (the CA signed another identity), ZT_E_TLS, ZT_E_DENIED /
 * ZT_E_PROTO / ZT_E_UPSTREAM for CA errors (logged with the gRPC status) or
 * ZT_E_CLOSED (client stopping); or ZT_E_CLOSED at once (done not called).
 * Borrows id. */
int zt_ca_client_mint_async(void *client, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                            enum zt_ca_priority prio, zt_ca_mint_done_fn *done, void *done_ud);

/* zt_ca_mint_fn: the same at ZT_CA_PRIO_LIVE, blocking the caller until the
 * answer. Any thread but the client's own. */
int zt_ca_client_mint(void *client, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                      struct zt_tls_cert **out);

/* Stops the thread; requests still queued or on the wire are answered
 * ZT_E_CLOSED (from this call's thread's point of view, before it
 * returns). */
void zt_ca_client_free(struct zt_ca_client *c);

#endif
