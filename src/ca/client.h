/* Istio CA client (wire facts §4): IstioCertificateService/CreateCertificate
 * over gRPC over TLS to CA_ADDRESS, with a P-256 CSR carrying the critical
 * SPIFFE URI SAN, `ImpersonatedIdentity` metadata in shared (node) mode,
 * `authorization: Bearer <token>` (re-read per call) and `clusterid`. The
 * leaf must carry the requested identity; the last chain element is the
 * trust bundle.
 *
 * The client runs its own thread and event loop with one HTTP/2 connection
 * (reconnected on demand). zt_ca_client_mint() is an identity-manager mint
 * function (zt_ca_mint_fn): it blocks its caller until the CA answers or
 * the timeout passes. At most ZT_CA_CLIENT_MAX_INFLIGHT requests are on the
 * wire at once; more wait their turn. */
#ifndef ZT_CA_CLIENT_H
#define ZT_CA_CLIENT_H

#include "tls/cert.h"
#include "tls/spiffe.h"

#include <stdbool.h>

#define ZT_CA_CLIENT_MAX_INFLIGHT 8

struct zt_ca_client_opts {
    const char *address;      /* "host:port", "https://" accepted */
    const char *root_ca;      /* PEM file verifying the CA server, or "SYSTEM" */
    const char *alt_hostname; /* name to verify instead of the host; NULL = host */
    const char *token_path;   /* bearer token file; NULL or unreadable = none */
    const char *cluster_id;
    bool impersonate;    /* shared mode: ask for workloads' identities */
    unsigned timeout_ms; /* per certificate; 0 = 10 s */
};

struct zt_ca_client;

/* Starts the client's thread (no connection until the first request).
 * Returns 0 or ZT_E_CONFIG with the reason in err. */
int zt_ca_client_new(const struct zt_ca_client_opts *opts, struct zt_ca_client **out, char *err,
                     size_t errlen);

/* zt_ca_mint_fn: a new key, CSR, CreateCertificate, and the verified
 * result in *out. Any thread but the client's own. Returns 0,
 * ZT_E_TIMEOUT, ZT_E_IDENTITY (the CA signed another identity), ZT_E_TLS,
 * or ZT_E_PROTO / ZT_E_UPSTREAM for CA errors (logged with the gRPC status). */
int zt_ca_client_mint(void *client, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                      struct zt_tls_cert **out);

/* Stops the thread; requests still waiting fail with ZT_E_CLOSED. */
void zt_ca_client_free(struct zt_ca_client *c);

#endif
