/* An issued workload certificate: leaf, intermediates, private key, the mesh
 * trust roots it is verified against, and the SPIFFE identity it carries.
 *
 * A zt_tls_cert is immutable after creation and reference-counted with an
 * atomic counter, so any thread may hold and read it. Renewal builds a new
 * zt_tls_cert; holders of the old one keep a valid object. The last unref
 * frees everything; the private key goes through EVP_PKEY_free(), which
 * clears the key material before releasing it. */
#ifndef ZT_TLS_CERT_H
#define ZT_TLS_CERT_H

#include "tls/spiffe.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

/* Caps on what zt_tls_cert_from_pem() accepts. */
#define ZT_TLS_PEM_MAX (1024 * 1024)
#define ZT_TLS_CHAIN_MAX 16

struct zt_tls_cert {
    atomic_uint refs;
    X509 *leaf;
    STACK_OF(X509) * intermediates; /* leaf's issuer first; never a root; may be empty */
    EVP_PKEY *key;                  /* matches leaf */
    STACK_OF(X509) * roots;         /* mesh trust bundle, at least one (may be empty
                                     * for a cert from zt_tls_cert_new_server) */
    X509_STORE *store;              /* holds `roots`; shared by the SSL_CTXs built on this cert */
    struct zt_spiffe_id id;         /* first SPIFFE URI SAN of the leaf (all zero for a
                                     * server cert without one) */
    time_t not_before;
    time_t not_after;
};

/* Builds a cert from parts. Borrows every argument (takes its own references;
 * the caller keeps and frees its own). `intermediates` may be NULL.
 * Returns 0 and *out with one reference, or
 *   ZT_E_IDENTITY  the leaf has no parseable SPIFFE URI SAN,
 *   ZT_E_TLS       the key does not match the leaf, or a validity time is unreadable,
 *   ZT_E_CONFIG    no roots given,
 *   ZT_E_TOO_BIG   more than ZT_TLS_CHAIN_MAX intermediates or roots. */
int zt_tls_cert_new(X509 *leaf, STACK_OF(X509) * intermediates, EVP_PKEY *key,
                    STACK_OF(X509) * roots, struct zt_tls_cert **out);

/* Like zt_tls_cert_new() for a TLS server that is not a mesh workload (the
 * control plane's xDS/CA port): the leaf need not carry a SPIFFE SAN (id
 * stays all zero then; the first one is taken if present) and `roots` may be
 * NULL or empty (store then holds no roots: such a cert only suits
 * contexts that do not verify peers, zt_tls_control_server_ctx_new()).
 * Borrows every argument. Returns 0 and *out with one reference, or
 *   ZT_E_TLS       the key does not match the leaf, or a validity time is unreadable,
 *   ZT_E_TOO_BIG   more than ZT_TLS_CHAIN_MAX intermediates or roots. */
int zt_tls_cert_new_server(X509 *leaf, STACK_OF(X509) * intermediates, EVP_PKEY *key,
                           STACK_OF(X509) * roots, struct zt_tls_cert **out);

/* Builds a cert from PEM text, the shape a CA answer comes in: `chain_pem`
 * holds the leaf followed by its intermediates, `key_pem` the private key
 * (PKCS#8 or traditional), `roots_pem` one or more roots. Lengths are capped
 * at ZT_TLS_PEM_MAX. Returns 0 or ZT_E_TLS (unparseable), ZT_E_TOO_BIG, or an
 * error from zt_tls_cert_new(). Borrows the buffers. */
int zt_tls_cert_from_pem(const char *chain_pem, size_t chain_len, const char *key_pem,
                         size_t key_len, const char *roots_pem, size_t roots_len,
                         struct zt_tls_cert **out);

/* Returns cert (for chaining). NULL-safe. */
struct zt_tls_cert *zt_tls_cert_ref(struct zt_tls_cert *cert);
/* Drops one reference; frees on the last. NULL-safe. */
void zt_tls_cert_unref(struct zt_tls_cert *cert);

/* When the cert should be replaced: not_before + (not_after - not_before) / 2. */
time_t zt_tls_cert_refresh_at(const struct zt_tls_cert *cert);

/* The leaf followed by the intermediates as PEM, in a malloc'd NUL-terminated
 * string the caller frees; *len (optional) gets its length. Returns 0. */
int zt_tls_cert_chain_pem(const struct zt_tls_cert *cert, char **out, size_t *len);

/* The SPIFFE id of `x`: its SAN extension must hold exactly one URI SAN
 * of the spiffe scheme (an X.509-SVID has one identity), which must parse
 * strictly. Other SAN types and URIs of other schemes are ignored. Returns 0
 * with *out set, or ZT_E_IDENTITY (no SAN extension, a repeated one, no
 * SPIFFE URI, two or more, or one that does not parse) with *out zeroed.
 * Borrows x. */
int zt_tls_x509_spiffe_id(X509 *x, struct zt_spiffe_id *out);

/* Converts an ASN1_TIME to time_t. Returns 0 or ZT_E_TLS. */
int zt_tls_asn1_time_to_time(const ASN1_TIME *t, time_t *out);

#endif
