/* A local certificate authority loaded from an Istio "cacerts" directory,
 * used to mint workload certificates without istiod, and the control
 * plane's TLS server certificate (plus a loader for one issued elsewhere).
 *
 * Directory layout (the files Istio's plugged-in CA reads):
 *   ca-cert.pem     signing certificate (an intermediate, or the root itself)
 *   ca-key.pem      its private key
 *   root-cert.pem   the mesh trust bundle: one or more roots
 *   cert-chain.pem  optional: chain from ca-cert up to the root
 *
 * Minting and CSR signing are thread-safe (an internal mutex serialises
 * signing). */
#ifndef ZT_TLS_LOCALCA_H
#define ZT_TLS_LOCALCA_H

#include "tls/cert.h"
#include "tls/spiffe.h"

#include <stddef.h>

struct zt_tls_localca;

/* Longest accepted lifetime of a minted certificate (one year). */
#define ZT_TLS_LOCALCA_TTL_MAX (366u * 24 * 3600)

/* Loads and checks the directory: every file parses, the key matches
 * ca-cert.pem, ca-cert.pem is a CA and chains to root-cert.pem (through
 * cert-chain.pem if present) at the current time. Borrows `dir`.
 * Returns 0 and *out (owned by the caller, release with
 * zt_tls_localca_free), or ZT_E_CONFIG with a message naming the file and
 * the reason written into err (may be NULL). */
int zt_tls_localca_load(const char *dir, struct zt_tls_localca **out, char *err, size_t errlen);

/* Mints a certificate for `id` valid for ttl_seconds (1 .. ZT_TLS_LOCALCA_TTL_MAX,
 * cut short at the CA certificate's own expiry): a fresh ECDSA P-256 key, an
 * X.509 v3 leaf with an empty subject, a random 128-bit serial, notBefore
 * back-dated by min(60 s, ttl/10) for clock skew, a critical SubjectAltName
 * holding exactly one URI (the SPIFFE id), critical keyUsage
 * digitalSignature+keyEncipherment, extKeyUsage serverAuth+clientAuth,
 * critical basicConstraints CA:FALSE, authorityKeyIdentifier, SHA-256
 * signature. Intermediates = ca-cert (+ the non-root part of cert-chain.pem)
 * unless ca-cert is itself a root; roots = root-cert.pem.
 * Returns 0 and *out (one reference), ZT_E_CONFIG for a bad ttl, ZT_E_TLS if
 * OpenSSL fails. Borrows ca and id. */
int zt_tls_localca_mint(struct zt_tls_localca *ca, const struct zt_spiffe_id *id,
                        unsigned ttl_seconds, struct zt_tls_cert **out);

/* Most names (DNS plus IP) in one server certificate. */
#define ZT_TLS_LOCALCA_SERVER_NAMES_MAX 64

/* Mints a TLS server certificate for the control plane's xDS/CA port,
 * checked by clients against the mesh roots and a host name
 * (zt_tls_expect_host). Same key type, serial, back-dating, validity cap,
 * authorityKeyIdentifier, SHA-256 signature, intermediates and roots as
 * zt_tls_localca_mint(); differs in: subject CN = dns[0] (or ips[0] when
 * there is no DNS name; empty subject if that name is over 64 bytes), a
 * SubjectAltName (critical only with an empty subject) holding every DNS
 * name then every IP address, extKeyUsage serverAuth only. Still critical
 * basicConstraints CA:FALSE and keyUsage digitalSignature+keyEncipherment.
 * `dns`: host names of letters, digits, '-', '_' in 1..63-byte labels,
 * total at most 253, optionally starting with a "*." wildcard label (an
 * IPv4 literal is refused here: pass it in `ips`). `ips`: IPv4 dotted or
 * IPv6 text (no zone). Either array may be NULL when its count is 0; at
 * least one name in all. The cert's `id` is all zero (no SPIFFE SAN).
 * Returns 0 and *out (one reference), ZT_E_CONFIG for a bad ttl, no names
 * or a name that does not parse, ZT_E_TOO_BIG over
 * ZT_TLS_LOCALCA_SERVER_NAMES_MAX names, ZT_E_TLS if the CA certificate has
 * expired or OpenSSL fails. Borrows ca and the strings; thread-safe like
 * minting. */
int zt_tls_localca_mint_server(struct zt_tls_localca *ca, const char *const *dns, size_t n_dns,
                               const char *const *ips, size_t n_ips, unsigned ttl_seconds,
                               struct zt_tls_cert **out);

/* Loads a server certificate issued elsewhere (e.g. the control plane's
 * --tls-cert/--tls-key): `cert_file` holds PEM certificates, the leaf first,
 * then its intermediates (a self-signed certificate there is taken as a
 * root: kept in `roots`, never sent); `key_file` a PEM private key (PKCS#8 or
 * traditional; an encrypted key is refused, never prompted for) that must
 * match the leaf. Files are capped at
 * ZT_TLS_PEM_MAX bytes, the chain at ZT_TLS_CHAIN_MAX intermediates. The
 * leaf must not have expired. The result is built with
 * zt_tls_cert_new_server(): `id` is the leaf's first SPIFFE SAN or zero,
 * `roots` may be empty. It lives next to the cacerts loader, whose file
 * reading it shares. Borrows the paths.
 * Returns 0 and *out (one reference), or ZT_E_CONFIG with "<file>: <reason>"
 * in err (may be NULL); err is "ok" on success. */
int zt_tls_cert_load_files(const char *cert_file, const char *key_file, struct zt_tls_cert **out,
                           char *err, size_t errlen);

/* Shortest lifetime zt_tls_localca_sign_csr() issues. */
#define ZT_TLS_LOCALCA_CSR_TTL_MIN 60u

/* The server side of Istio's CA protocol: checks a PEM CSR with
 * zt_tls_csr_parse() (tls/csr.h) and signs a leaf for its public key shaped
 * exactly like zt_tls_localca_mint()'s: the one SPIFFE URI is the only thing
 * taken from the request besides the key; its subject and any other
 * requested extensions are ignored. ttl_seconds is clamped to
 * ZT_TLS_LOCALCA_CSR_TTL_MIN .. ZT_TLS_LOCALCA_TTL_MAX (a caller maps an
 * absent requested lifetime to its default before calling), then cut short
 * at the CA certificate's expiry. Authorising the identity (may the caller
 * ask for it?) is the caller's job: compare with zt_tls_csr_parse()
 * first.
 * Returns 0 and *chain_out, an array of *n_out malloc'd NUL-terminated PEM
 * strings the caller frees with zt_tls_pem_list_free(): [0] the leaf, then
 * each intermediate alone, and last the whole trust bundle (root-cert.pem's
 * certificates). Errors: those of zt_tls_csr_parse() (ZT_E_TOO_BIG,
 * ZT_E_PROTO, ZT_E_IDENTITY), or ZT_E_TLS if the CA certificate has expired
 * or signing fails; err (may be NULL) gets a one-line reason. Borrows ca and
 * csr_pem; thread-safe like minting. */
int zt_tls_localca_sign_csr(struct zt_tls_localca *ca, const char *csr_pem, size_t len,
                            unsigned ttl_seconds, char ***chain_out, size_t *n_out, char *err,
                            size_t errlen);

/* The trust bundle (borrowed; valid while ca lives). */
STACK_OF(X509) * zt_tls_localca_roots(const struct zt_tls_localca *ca);

/* NULL-safe. No mint may be running. */
void zt_tls_localca_free(struct zt_tls_localca *ca);

#endif
