/* OpenSSL contexts for HBONE mTLS (wire facts 2.1).
 *
 * Both sides: TLS 1.3 only, TLS_AES_256_GCM_SHA384 then
 * TLS_AES_128_GCM_SHA256, groups X25519/P-256/P-384, ALPN "h2", the leaf plus
 * intermediates sent (never the root), peer chain verified against the
 * cert's roots with no hostname check, no session tickets or resumption,
 * partial writes and moving write buffers allowed, buffers released when idle.
 *
 * With a CRL attached (zt_tls_ctx_set_crl, tls/crl.h) both sides also
 * refuse a peer whose chain it revokes.
 *
 * Server side also: a client certificate is required; its leaf must carry a
 * strictly parsed SPIFFE URI SAN whose trust domain equals the server cert's;
 * a client that does not offer "h2" gets a no_application_protocol alert.
 *
 * A context keeps a reference on its zt_tls_cert, released when the context
 * is freed (SSL_CTX_free; SSL objects hold the context alive). Contexts are
 * read-only after creation: share them between threads, one SSL per
 * connection. The client never sets SNI: callers must not call
 * SSL_set_tlsext_host_name. */
#ifndef ZT_TLS_CTX_H
#define ZT_TLS_CTX_H

#include "tls/cert.h"
#include "tls/spiffe.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

/* Both return a new context (caller frees with SSL_CTX_free), or NULL if
 * OpenSSL refuses the certificate or settings. Keep a reference on cert. */
SSL_CTX *zt_tls_server_ctx_new(struct zt_tls_cert *cert);
SSL_CTX *zt_tls_client_ctx_new(struct zt_tls_cert *cert);

/* The cert a context was built on (borrowed; lives as long as ctx), or NULL
 * for contexts not made here. */
struct zt_tls_cert *zt_tls_ctx_cert(const SSL_CTX *ctx);

/* The SPIFFE id of the verified peer leaf (zt_tls_x509_spiffe_id: exactly
 * one). Call after the handshake. Returns 0, or ZT_E_IDENTITY when there is
 * no verified peer certificate or it does not carry exactly one SPIFFE id. */
int zt_tls_peer_identity(SSL *ssl, struct zt_spiffe_id *out);

/* A client context for control-plane connections (xDS, CA): no client
 * certificate, TLS 1.2 or 1.3, ALPN h2, the server's chain verified against
 * `root_ca` (a PEM file path, or "SYSTEM" for the OS roots). The host name
 * to check is set per connection with zt_tls_expect_host(). Returns NULL
 * with the reason in err. */
SSL_CTX *zt_tls_server_auth_ctx_new(const char *root_ca, char *err, size_t errlen);
/* The same with the roots taken from a PEM buffer (at most max_roots
 * certificates; other PEM blocks are skipped): NULL with the reason in err
 * when there is no certificate, a damaged block, or too many. Borrows pem. */
SSL_CTX *zt_tls_server_auth_ctx_from_pem(const char *pem, size_t len, int max_roots, char *err,
                                         size_t errlen);
/* Sends `host` as SNI (unless it is an IP literal, RFC 6066 3) and requires
 * the server certificate to match it (a DNS name, or an IP address SAN). */
int zt_tls_expect_host(SSL *ssl, const char *host);

/* Client side, after the handshake: 0 if the SPIFFE id of the verified
 * server leaf equals one of expected[0..n_expected), else ZT_E_IDENTITY
 * (also when n_expected is 0). Borrows everything. */
int zt_tls_verify_server_identity(SSL *ssl, const struct zt_spiffe_id *expected, size_t n_expected);

/* A server context for the control plane's xDS/CA port, whose clients are
 * proxies using zt_tls_server_auth_ctx_new() + zt_tls_expect_host(): TLS 1.2
 * (ECDHE with AES-GCM or ChaCha20-Poly1305) or 1.3, groups
 * X25519/P-256/P-384, ALPN "h2" required (a client not offering it gets a
 * no_application_protocol alert), no client certificate requested, the leaf
 * plus cert->intermediates sent (never a root), no session tickets or
 * resumption, partial writes and moving write buffers allowed. SNI is
 * ignored. `cert` would typically come from zt_tls_localca_mint_server() or
 * zt_tls_cert_load_files(); its roots are not used.
 * Returns a new context (caller frees with SSL_CTX_free) keeping a reference
 * on cert (zt_tls_ctx_cert() returns it), or NULL with the reason in err
 * (may be NULL). Read-only after creation like the others. */
SSL_CTX *zt_tls_control_server_ctx_new(struct zt_tls_cert *cert, char *err, size_t errlen);

/* True if the handshake negotiated ALPN "h2". */
bool zt_tls_alpn_is_h2(const SSL *ssl);

#endif
