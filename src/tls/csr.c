#include "tls/csr.h"

#include "base/alloc.h"
#include "base/err.h"
#include "tls/tls_int.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies what a memory BIO holds into a malloc'd NUL-terminated string. */
static char *bio_to_string(BIO *bio, size_t *len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s;
    if (n < 0)
        n = 0;
    s = zt_xmalloc((size_t)n + 1);
    if (n > 0)
        memcpy(s, data, (size_t)n);
    s[n] = '\0';
    if (len != NULL)
        *len = (size_t)n;
    return s;
}

/* A SubjectAltName extension holding one URI. */
static X509_EXTENSION *uri_san_ext(const char *uri, int crit)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    X509_EXTENSION *ext;
    if (names == NULL || gn == NULL || ia5 == NULL || !ASN1_STRING_set(ia5, uri, -1))
        abort();
    GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
    if (!sk_GENERAL_NAME_push(names, gn))
        abort();
    ext = X509V3_EXT_i2d(NID_subject_alt_name, crit, names);
    GENERAL_NAMES_free(names);
    return ext;
}

int zt_tls_csr_new(const struct zt_spiffe_id *id, EVP_PKEY **key_out, char **csr_pem_out)
{
    char uri[ZT_SPIFFE_ID_MAX + 1];
    struct zt_spiffe_id check;
    int uri_len;
    EVP_PKEY *key = NULL;
    X509_REQ *req = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_EXTENSION *san = NULL;
    BIO *bio = NULL;
    int rc = ZT_E_TLS;

    *key_out = NULL;
    *csr_pem_out = NULL;
    /* Formatting does not validate the parts: parse the result back so a
     * CSR never asks for something our own CA would refuse. */
    uri_len = zt_spiffe_format(id, uri, sizeof(uri));
    if (uri_len < 0 || zt_spiffe_parse(uri, (size_t)uri_len, &check) != 0)
        return ZT_E_IDENTITY;

    key = EVP_EC_gen("P-256");
    req = X509_REQ_new();
    exts = sk_X509_EXTENSION_new_null();
    bio = BIO_new(BIO_s_mem());
    if (key == NULL || req == NULL || exts == NULL || bio == NULL)
        goto out;
    /* The subject stays the empty name X509_REQ_new() made: the identity
     * lives in the SAN alone, which is why the SAN is critical. */
    san = uri_san_ext(uri, 1);
    if (san == NULL || !sk_X509_EXTENSION_push(exts, san))
        goto out;
    san = NULL; /* now owned by exts */
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) || !X509_REQ_set_pubkey(req, key) ||
        !X509_REQ_add_extensions(req, exts) || X509_REQ_sign(req, key, EVP_sha256()) <= 0 ||
        !PEM_write_bio_X509_REQ(bio, req))
        goto out;
    *csr_pem_out = bio_to_string(bio, NULL);
    *key_out = key;
    key = NULL;
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(bio);
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    return rc;
}

int zt_tls_key_to_pkcs8_pem(EVP_PKEY *key, char **pem_out, size_t *len)
{
    /* A secure-memory BIO wipes its buffer when freed. */
    BIO *bio = BIO_new(BIO_s_secmem());
    int rc = ZT_E_TLS;

    *pem_out = NULL;
    if (bio == NULL)
        abort();
    if (PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1)
        goto out;
    *pem_out = bio_to_string(bio, len);
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(bio);
    return rc;
}

void zt_tls_pem_list_free(char **list, size_t n)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* ---- CA response (proxy side) ---- */

static bool stack_has(STACK_OF(X509) * sk, X509 *x)
{
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (X509_cmp(sk_X509_value(sk, i), x) == 0)
            return true;
    return false;
}

/* Moves the certificates of `from` that are neither self-signed, nor a root,
 * nor already present into `to`; frees the rest. Empties `from`. */
static int take_intermediates(STACK_OF(X509) * to, STACK_OF(X509) * from, STACK_OF(X509) * roots)
{
    X509 *x;
    int rc = 0;
    while ((x = sk_X509_shift(from)) != NULL) {
        if (rc != 0 || zt_tls_is_self_signed(x) || stack_has(roots, x) || stack_has(to, x)) {
            X509_free(x);
            continue;
        }
        if (sk_X509_num(to) >= ZT_TLS_CHAIN_MAX) {
            X509_free(x);
            rc = ZT_E_TOO_BIG;
            continue;
        }
        if (!sk_X509_push(to, x))
            abort();
    }
    return rc;
}

static int verify_chain(X509 *leaf, STACK_OF(X509) * intermediates, STACK_OF(X509) * roots,
                        char *err, size_t errlen)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *sctx = X509_STORE_CTX_new();
    int rc = 0;

    if (store == NULL || sctx == NULL)
        abort();
    for (int i = 0; i < sk_X509_num(roots); i++)
        X509_STORE_add_cert(store, sk_X509_value(roots, i));
    ERR_clear_error();
    if (X509_STORE_CTX_init(sctx, store, leaf, intermediates) != 1)
        abort();
    if (X509_verify_cert(sctx) != 1)
        rc = zt_errf(err, errlen, ZT_E_TLS, "leaf does not verify to the root bundle: %s",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx)));
    ERR_clear_error();
    X509_STORE_CTX_free(sctx);
    X509_STORE_free(store);
    return rc;
}

/* Parses element i of a CA response, capped in length and count. */
static int parse_element(const char *const *chain, size_t i, int max, STACK_OF(X509) * *out,
                         char *err, size_t errlen)
{
    size_t len;
    int rc;
    if (chain[i] == NULL)
        return zt_errf(err, errlen, ZT_E_PROTO, "certificate chain element %zu is missing", i);
    len = strnlen(chain[i], ZT_TLS_CA_ELEM_MAX + 1);
    if (len > ZT_TLS_CA_ELEM_MAX)
        return zt_errf(err, errlen, ZT_E_TOO_BIG, "certificate chain element %zu is over %d bytes",
                       i, ZT_TLS_CA_ELEM_MAX);
    rc = zt_tls_read_pem_certs(chain[i], len, max, out);
    if (rc == ZT_E_TOO_BIG) {
        zt_errf(err, errlen, 0, "certificate chain element %zu holds over %d certificates", i, max);
    } else if (rc != 0) {
        rc = zt_errf(err, errlen, ZT_E_PROTO,
                     "certificate chain element %zu is not PEM certificates", i);
    }
    return rc;
}

int zt_tls_cert_from_ca_response(const char *const *chain, size_t n, EVP_PKEY *key,
                                 const struct zt_spiffe_id *expected, struct zt_tls_cert **out,
                                 char *err, size_t errlen)
{
    STACK_OF(X509) *first = NULL, *roots = NULL, *mid = NULL, *intermediates = NULL;
    X509 *leaf = NULL;
    struct zt_spiffe_id got;
    int rc;

    *out = NULL;
    zt_errf(err, errlen, 0, "ok");
    if (n < 2)
        return zt_errf(err, errlen, ZT_E_PROTO,
                       "certificate chain has %zu element(s), need leaf and roots", n);
    if (n > ZT_TLS_CA_RESPONSE_MAX)
        return zt_errf(err, errlen, ZT_E_TOO_BIG,
                       "certificate chain has %zu elements, at most %d allowed", n,
                       ZT_TLS_CA_RESPONSE_MAX);
    intermediates = sk_X509_new_null();
    if (intermediates == NULL)
        abort();

    rc = parse_element(chain, n - 1, ZT_TLS_CHAIN_MAX, &roots, err, errlen);
    if (rc != 0)
        goto out;
    rc = parse_element(chain, 0, ZT_TLS_CHAIN_MAX + 1, &first, err, errlen);
    if (rc != 0)
        goto out;
    leaf = sk_X509_shift(first);
    rc = take_intermediates(intermediates, first, roots);
    for (size_t i = 1; rc == 0 && i + 1 < n; i++) {
        rc = parse_element(chain, i, ZT_TLS_CHAIN_MAX + 1, &mid, err, errlen);
        if (rc == 0)
            rc = take_intermediates(intermediates, mid, roots);
        sk_X509_pop_free(mid, X509_free);
        mid = NULL;
    }
    if (rc == ZT_E_TOO_BIG)
        zt_errf(err, errlen, 0, "certificate chain holds over %d intermediates", ZT_TLS_CHAIN_MAX);
    if (rc != 0)
        goto out;

    if (X509_check_private_key(leaf, key) != 1) {
        rc = zt_errf(err, errlen, ZT_E_TLS, "leaf certificate does not match the private key");
        goto out;
    }
    rc = verify_chain(leaf, intermediates, roots, err, errlen);
    if (rc != 0)
        goto out;
    if (zt_tls_x509_spiffe_id(leaf, &got) != 0) {
        rc = zt_errf(err, errlen, ZT_E_IDENTITY,
                     "leaf certificate does not carry exactly one SPIFFE id");
        goto out;
    }
    if (expected != NULL && !zt_spiffe_eq(&got, expected)) {
        char want[ZT_SPIFFE_ID_MAX + 1], have[ZT_SPIFFE_ID_MAX + 1];
        zt_spiffe_format(expected, want, sizeof(want));
        zt_spiffe_format(&got, have, sizeof(have));
        rc = zt_errf(err, errlen, ZT_E_IDENTITY, "leaf certificate is for %s, requested %s", have,
                     want);
        goto out;
    }
    rc = zt_tls_cert_new(leaf, intermediates, key, roots, out);
    if (rc != 0)
        zt_errf(err, errlen, 0, "unusable certificate: %s", zt_strerror(rc));
out:
    ERR_clear_error();
    X509_free(leaf);
    sk_X509_pop_free(first, X509_free);
    sk_X509_pop_free(roots, X509_free);
    sk_X509_pop_free(intermediates, X509_free);
    return rc;
}

/* ---- CSR checks (server side) ---- */

static int check_key(EVP_PKEY *pk, char *err, size_t errlen)
{
    char group[64] = "";
    size_t glen = 0;
    int bits;

    switch (EVP_PKEY_get_base_id(pk)) {
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) != 1)
            group[0] = '\0';
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "secp384r1") == 0)
            return 0;
        return zt_errf(err, errlen, ZT_E_PROTO, "CSR key is on unsupported curve '%s'", group);
    case EVP_PKEY_RSA:
        bits = EVP_PKEY_get_bits(pk);
        if (bits >= ZT_TLS_CSR_RSA_MIN_BITS && bits <= ZT_TLS_CSR_RSA_MAX_BITS)
            return 0;
        return zt_errf(err, errlen, ZT_E_PROTO, "CSR RSA key has %d bits, need %d..%d", bits,
                       ZT_TLS_CSR_RSA_MIN_BITS, ZT_TLS_CSR_RSA_MAX_BITS);
    default:
        return zt_errf(err, errlen, ZT_E_PROTO, "CSR key type is not EC or RSA");
    }
}

static int check_signature(X509_REQ *req, EVP_PKEY *pk, char *err, size_t errlen)
{
    int md_nid = NID_undef, pk_nid = NID_undef;

    /* RSA-PSS and unknown algorithms have no single digest here and are
     * refused along with the weak ones. */
    if (!OBJ_find_sigid_algs(X509_REQ_get_signature_nid(req), &md_nid, &pk_nid) ||
        (md_nid != NID_sha256 && md_nid != NID_sha384 && md_nid != NID_sha512)) {
        return zt_errf(err, errlen, ZT_E_PROTO,
                       "CSR signature algorithm is not ECDSA/RSA with SHA-2");
    }
    if (X509_REQ_verify(req, pk) != 1)
        return zt_errf(err, errlen, ZT_E_PROTO, "CSR signature does not verify");
    return 0;
}

/* The one SPIFFE URI of the requested SubjectAltName. */
static int csr_identity(X509_REQ *req, struct zt_spiffe_id *id, char *err, size_t errlen)
{
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *names = NULL;
    const GENERAL_NAME *gn;
    int idx, len, rc = ZT_E_IDENTITY;

    /* X509_REQ_get_extensions() reads the first request attribute only;
     * a second one would be a place to hide names. */
    idx = X509_REQ_get_attr_by_NID(req, NID_ext_req, -1);
    if (idx >= 0 && X509_REQ_get_attr_by_NID(req, NID_ext_req, idx) >= 0)
        return zt_errf(err, errlen, ZT_E_PROTO, "CSR has several extension requests");
    exts = X509_REQ_get_extensions(req);
    idx = exts != NULL ? X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1) : -1;
    if (idx < 0) {
        zt_errf(err, errlen, 0, "CSR requests no SubjectAltName");
        goto out;
    }
    if (X509v3_get_ext_by_NID(exts, NID_subject_alt_name, idx) >= 0) {
        zt_errf(err, errlen, 0, "CSR requests several SubjectAltName extensions");
        goto out;
    }
    names = X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, idx));
    if (names == NULL) {
        rc = zt_errf(err, errlen, ZT_E_PROTO, "CSR SubjectAltName does not parse");
        goto out;
    }
    if (sk_GENERAL_NAME_num(names) != 1) {
        zt_errf(err, errlen, 0, "CSR SubjectAltName holds %d names, need exactly one URI",
                sk_GENERAL_NAME_num(names));
        goto out;
    }
    gn = sk_GENERAL_NAME_value(names, 0);
    if (gn->type != GEN_URI) {
        zt_errf(err, errlen, 0, "CSR SubjectAltName is not a URI");
        goto out;
    }
    len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
    if (len <= 0 ||
        zt_spiffe_parse((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
                        (size_t)len, id) != 0) {
        zt_errf(err, errlen, 0, "CSR SubjectAltName URI is not a SPIFFE id");
        goto out;
    }
    rc = 0;
out:
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

int zt_tls_csr_parse(const char *pem, size_t len, struct zt_spiffe_id *id, EVP_PKEY **key_out,
                     char *err, size_t errlen)
{
    X509_REQ *req = NULL;
    EVP_PKEY *pk;
    BIO *bio = NULL;
    int rc;

    memset(id, 0, sizeof(*id));
    if (key_out != NULL)
        *key_out = NULL;
    zt_errf(err, errlen, 0, "ok");
    if (len > ZT_TLS_CSR_PEM_MAX)
        return zt_errf(err, errlen, ZT_E_TOO_BIG, "CSR is over %d bytes", ZT_TLS_CSR_PEM_MAX);
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        abort();
    req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    if (req == NULL) {
        rc = zt_errf(err, errlen, ZT_E_PROTO, "CSR is not a PEM certificate request");
        goto out;
    }
    pk = X509_REQ_get0_pubkey(req);
    if (pk == NULL) {
        rc = zt_errf(err, errlen, ZT_E_PROTO, "CSR public key does not parse");
        goto out;
    }
    /* The key type first: it bounds what checking the signature costs. */
    rc = check_key(pk, err, errlen);
    if (rc == 0)
        rc = check_signature(req, pk, err, errlen);
    if (rc == 0)
        rc = csr_identity(req, id, err, errlen);
    if (rc != 0) {
        memset(id, 0, sizeof(*id));
        goto out;
    }
    if (key_out != NULL) {
        if (!EVP_PKEY_up_ref(pk))
            abort();
        *key_out = pk;
    }
out:
    ERR_clear_error();
    X509_REQ_free(req);
    BIO_free(bio);
    return rc;
}
