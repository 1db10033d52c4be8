/* Certificate signing requests as Istio's CA protocol uses them
 * (wire facts 4), both sides.
 *
 * Proxy side: zt_tls_csr_new() makes a key and a CSR for one SPIFFE id;
 * the CA answers with a list of PEM strings that
 * zt_tls_cert_from_ca_response() checks and turns into a zt_tls_cert.
 *
 * Server side: zt_tls_csr_parse() checks a CSR a client sent; the local CA
 * signs it with zt_tls_localca_sign_csr() (tls/localca.h), which answers
 * with the same list shape.
 *
 * A CA response is a list of PEM strings:
 *   [0]        the leaf (further certificates in it count as intermediates)
 *   [1..n-2]   intermediates, usually one each; self-signed certificates and
 *              copies of a root found here are dropped, because Istio's CA
 *              may send its whole cert-chain.pem, root included, as one
 *              middle element
 *   [n-1]      the trust bundle: one or more root certificates
 *
 * Nothing here logs; errors come back as codes with an optional message in
 * err[errlen] (may be NULL). */
#ifndef ZT_TLS_CSR_H
#define ZT_TLS_CSR_H

#include "tls/cert.h"
#include "tls/spiffe.h"

#include <openssl/evp.h>
#include <stddef.h>

/* Longest accepted CSR PEM and longest element of a CA response. */
#define ZT_TLS_CSR_PEM_MAX (64 * 1024)
#define ZT_TLS_CA_ELEM_MAX (64 * 1024)
/* Most elements in a CA response. */
#define ZT_TLS_CA_RESPONSE_MAX 16
/* Smallest RSA key zt_tls_csr_parse() accepts, and the largest (which bounds
 * the cost of checking the signature of a request from the network). */
#define ZT_TLS_CSR_RSA_MIN_BITS 2048
#define ZT_TLS_CSR_RSA_MAX_BITS 8192

/* Proxy side. Makes a fresh ECDSA P-256 key and a PEM CSR for it: version 1,
 * empty subject, one extension request holding a critical SubjectAltName
 * with exactly one URI (the formatted `id`), signed with ECDSA-SHA256.
 * Borrows id. Returns 0 with *key_out (caller frees with EVP_PKEY_free) and
 * *csr_pem_out (NUL-terminated, caller frees with free), or ZT_E_IDENTITY
 * (id does not format) or ZT_E_TLS (OpenSSL failed); outputs are NULL then. */
int zt_tls_csr_new(const struct zt_spiffe_id *id, EVP_PKEY **key_out, char **csr_pem_out);

/* Writes `key` (borrowed) as unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY")
 * into a malloc'd NUL-terminated string; *len (optional) gets its length.
 * The caller wipes it with OPENSSL_cleanse before free. Intermediate
 * buffers are wiped here. Returns 0 or ZT_E_TLS. */
int zt_tls_key_to_pkcs8_pem(EVP_PKEY *key, char **pem_out, size_t *len);

/* Proxy side. Builds a cert from a CA response `chain[0..n)` (NUL-terminated
 * strings, borrowed) and the key the CSR was made with (borrowed; the cert
 * takes its own reference). Checks, in order: 2 <= n <= ZT_TLS_CA_RESPONSE_MAX
 * and every element at most ZT_TLS_CA_ELEM_MAX bytes; every element parses;
 * the leaf matches `key`; the leaf verifies now through the intermediates to
 * a root of the bundle; the leaf's first SPIFFE URI SAN equals *expected
 * (skipped when expected is NULL; a leaf without one always fails).
 * Returns 0 and *out (one reference), or
 *   ZT_E_PROTO     fewer than 2 elements, or an element is not PEM certificates,
 *   ZT_E_TOO_BIG   too many elements, an element too long, or more than
 *                  ZT_TLS_CHAIN_MAX intermediates or roots,
 *   ZT_E_TLS       the key does not match the leaf, or the chain does not verify,
 *   ZT_E_IDENTITY  the leaf carries no SPIFFE id, or another one than *expected.
 * err gets a one-line reason. */
int zt_tls_cert_from_ca_response(const char *const *chain, size_t n, EVP_PKEY *key,
                                 const struct zt_spiffe_id *expected, struct zt_tls_cert **out,
                                 char *err, size_t errlen);

/* Server side. Parses and checks a PEM CSR of `len` bytes (no NUL needed;
 * the first CERTIFICATE REQUEST block is used). Accepted:
 *   - at most ZT_TLS_CSR_PEM_MAX bytes,
 *   - the self-signature verifies, with SHA-256, SHA-384 or SHA-512,
 *   - the key is EC P-256 or P-384, or RSA of ZT_TLS_CSR_RSA_MIN_BITS ..
 *     ZT_TLS_CSR_RSA_MAX_BITS bits,
 *   - exactly one SubjectAltName extension requested, holding exactly one
 *     name, a URI that parses as a SPIFFE id (critical or not).
 * The subject and other requested extensions are ignored: a signer takes
 * nothing but the public key and this one URI from a CSR.
 * Returns 0 and *id, plus *key_out if key_out is not NULL (the CSR's public
 * key; caller frees with EVP_PKEY_free), or
 *   ZT_E_TOO_BIG   over the size cap,
 *   ZT_E_PROTO     not a PEM CSR, bad signature, weak digest, unsupported key,
 *   ZT_E_IDENTITY  no SAN, several SANs or names, a non-URI name, or a URI
 *                  that is not a SPIFFE id.
 * err gets a one-line reason. Borrows pem. */
int zt_tls_csr_parse(const char *pem, size_t len, struct zt_spiffe_id *id, EVP_PKEY **key_out,
                     char *err, size_t errlen);

/* Frees list[0..n) and list. NULL-safe. */
void zt_tls_pem_list_free(char **list, size_t n);

#endif
