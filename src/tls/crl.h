/* Certificate revocation lists for HBONE peers (CRL_PATH), as Istio's
 * ztunnel does it.
 *
 * The file holds PEM blocks ("X509 CRL"; any number, other PEM blocks are
 * skipped) or one DER CRL; an empty file, or PEM without a CRL block,
 * revokes nothing. A zt_tls_crl holds the set last loaded; every HBONE TLS
 * context of the proxy carries a reference (zt_tls_ctx_set_crl), so both
 * sides check the peer: inbound the client's chain, outbound the server's.
 *
 * Checking rules (those of Istio's ztunnel, webpki with revocation depth
 * "chain", unknown status allowed, expiry ignored): every certificate of
 * the peer's verified chain is looked up; a certificate whose issuer has
 * no CRL in the set passes; a CRL past its nextUpdate (or before its
 * thisUpdate) still counts; a CRL whose signature does not verify with the
 * issuer's key, or whose issuer may not sign CRLs, fails the handshake.
 *
 * Loading (zt_tls_crl_load): a file that cannot be read or does not parse
 * is refused with the reason and the set last loaded stays in force; before
 * any successful load the set is empty. The owner re-loads when the file
 * changes and then asks zt_tls_crl_peer_revoked() about live connections,
 * closing those of a newly revoked peer.
 *
 * Threads: load from one thread (the control loop); checks from any. */
#ifndef ZT_TLS_CRL_H
#define ZT_TLS_CRL_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

/* Largest CRL file read, and most CRLs taken from it. */
#define ZT_TLS_CRL_FILE_MAX (64u << 20)
#define ZT_TLS_CRL_MAX 1024

struct zt_tls_crl;

/* A handshake was refused because the peer's chain is revoked; is_server:
 * this side was the TLS server (inbound HBONE). Runs on the handshaking
 * thread, must be quick and thread-safe. */
typedef void zt_tls_crl_reject_fn(void *ud, bool is_server);

/* A holder for `path` (copied) with an empty set; nothing is read yet.
 * on_reject may be NULL; ud is kept. Never NULL (aborts on OOM). One
 * reference, released with zt_tls_crl_unref. */
struct zt_tls_crl *zt_tls_crl_new(const char *path, zt_tls_crl_reject_fn *on_reject, void *ud);
struct zt_tls_crl *zt_tls_crl_ref(struct zt_tls_crl *crl); /* NULL-safe */
void zt_tls_crl_unref(struct zt_tls_crl *crl);             /* NULL-safe */

/* Reads and parses the file. Returns 1 when its CRLs replaced the set in
 * force (*n_crls, may be NULL, gets their count), 0 when the content is
 * what is already in force, or an error with the reason in err, the set
 * in force unchanged: -errno (cannot read, e.g. -ENOENT), ZT_E_TOO_BIG
 * (over ZT_TLS_CRL_FILE_MAX or ZT_TLS_CRL_MAX), ZT_E_TLS (a CRL that does
 * not parse, or a damaged PEM block). */
int zt_tls_crl_load(struct zt_tls_crl *crl, size_t *n_crls, char *err, size_t errlen);

/* Number of CRLs in force and revoked serials they list (any thread). */
void zt_tls_crl_counts(struct zt_tls_crl *crl, size_t *n_crls, size_t *n_revoked);

/* Makes ctx check peers against crl (keeps a reference, released when the
 * context is freed). Call once, before the context is shared. Returns 0 or
 * ZT_E_TLS. */
int zt_tls_ctx_set_crl(SSL_CTX *ctx, struct zt_tls_crl *crl);

/* The crl of a context (borrowed), or NULL. */
struct zt_tls_crl *zt_tls_ctx_crl(const SSL_CTX *ctx);

/* Certificate verification for a handshake (inside an
 * SSL_CTX_set_cert_verify_callback callback): X509_verify_cert(), plus the
 * revocation rules above when the SSL's context carries a crl with CRLs.
 * Returns what X509_verify_cert returns (1 = verified); a revoked chain
 * fails with X509_V_ERR_CERT_REVOKED and calls on_reject. */
int zt_tls_crl_verify_chain(X509_STORE_CTX *sctx);

/* For a live connection: whether the CRLs in force revoke a certificate of
 * the chain the peer was verified with at its handshake. Only revocation
 * counts (a certificate that expired since is not this check's business).
 * Returns 1 (revoked), 0 (not, or no CRL in force), or ZT_E_NOT_FOUND when
 * the connection has no verified chain or its context was not made by
 * zt_tls_server_ctx_new / zt_tls_client_ctx_new (it cannot be checked). */
int zt_tls_crl_peer_revoked(struct zt_tls_crl *crl, SSL *ssl);

#endif
