#include "tls/cert.h"

#include "base/alloc.h"
#include "tls/tls_int.h"

#include "base/err.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

int zt_tls_asn1_time_to_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return ZT_E_TLS;
    time_t v = timegm(&tm);
    if (v == (time_t)-1)
        return ZT_E_TLS;
    *out = v;
    return 0;
}

int zt_tls_x509_spiffe_id(X509 *x, struct zt_spiffe_id *out)
{
    int crit = 0, rc = ZT_E_IDENTITY;
    size_t found = 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);

    memset(out, 0, sizeof(*out));
    if (names == NULL)
        return ZT_E_IDENTITY;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI)
            continue;
        const ASN1_IA5STRING *uri = gn->d.uniformResourceIdentifier;
        const char *s = (const char *)ASN1_STRING_get0_data(uri);
        int len = ASN1_STRING_length(uri);
        /* URI schemes are case-insensitive (RFC 3986 3.1): "SPIFFE:" is a
         * second SPIFFE id too, even though it will not parse. */
        if (len < 7 || strncasecmp(s, "spiffe:", 7) != 0)
            continue;
        if (++found > 1)
            break;
        rc = zt_spiffe_parse(s, (size_t)len, out);
    }
    GENERAL_NAMES_free(names);
    if (found != 1 || rc != 0) {
        memset(out, 0, sizeof(*out));
        return ZT_E_IDENTITY;
    }
    return 0;
}

static void cert_free(struct zt_tls_cert *c)
{
    X509_free(c->leaf);
    sk_X509_pop_free(c->intermediates, X509_free);
    sk_X509_pop_free(c->roots, X509_free);
    X509_STORE_free(c->store);
    EVP_PKEY_free(c->key);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

/* Copies a stack, taking a reference on every element. */
static STACK_OF(X509) * dup_stack(STACK_OF(X509) * in)
{
    STACK_OF(X509) *out = sk_X509_new_null();
    if (out == NULL)
        abort();
    for (int i = 0; in != NULL && i < sk_X509_num(in); i++) {
        X509 *x = sk_X509_value(in, i);
        if (!X509_up_ref(x) || !sk_X509_push(out, x))
            abort();
    }
    return out;
}

/* Shared by both constructors. A workload cert must carry a SPIFFE id and
 * trust roots; a plain server cert (control plane) need not. */
static int cert_build(X509 *leaf, STACK_OF(X509) * intermediates, EVP_PKEY *key,
                      STACK_OF(X509) * roots, bool is_workload, struct zt_tls_cert **out)
{
    struct zt_tls_cert *c = NULL;
    int rc;

    *out = NULL;
    if (is_workload && (roots == NULL || sk_X509_num(roots) <= 0))
        return ZT_E_CONFIG;
    if ((roots != NULL && sk_X509_num(roots) > ZT_TLS_CHAIN_MAX) ||
        (intermediates != NULL && sk_X509_num(intermediates) > ZT_TLS_CHAIN_MAX))
        return ZT_E_TOO_BIG;

    c = zt_xcalloc(1, sizeof(*c));
    atomic_init(&c->refs, 1);
    if (!X509_up_ref(leaf) || !EVP_PKEY_up_ref(key))
        abort();
    c->leaf = leaf;
    c->key = key;
    c->intermediates = dup_stack(intermediates);
    c->roots = dup_stack(roots);

    rc = zt_tls_x509_spiffe_id(leaf, &c->id);
    if (rc != 0 && is_workload)
        goto fail;
    if (rc != 0)
        memset(&c->id, 0, sizeof(c->id));
    if (X509_check_private_key(leaf, key) != 1) {
        ERR_clear_error();
        rc = ZT_E_TLS;
        goto fail;
    }
    if (zt_tls_asn1_time_to_time(X509_get0_notBefore(leaf), &c->not_before) != 0 ||
        zt_tls_asn1_time_to_time(X509_get0_notAfter(leaf), &c->not_after) != 0 ||
        c->not_after <= c->not_before) {
        rc = ZT_E_TLS;
        goto fail;
    }

    c->store = X509_STORE_new();
    if (c->store == NULL)
        abort();
    for (int i = 0; i < sk_X509_num(c->roots); i++) {
        /* A duplicate root in the bundle is harmless; OpenSSL 3 ignores it. */
        if (X509_STORE_add_cert(c->store, sk_X509_value(c->roots, i)) != 1) {
            ERR_clear_error();
            rc = ZT_E_TLS;
            goto fail;
        }
    }
    *out = c;
    return 0;

fail:
    cert_free(c);
    return rc;
}

int zt_tls_cert_new(X509 *leaf, STACK_OF(X509) * intermediates, EVP_PKEY *key,
                    STACK_OF(X509) * roots, struct zt_tls_cert **out)
{
    return cert_build(leaf, intermediates, key, roots, true, out);
}

int zt_tls_cert_new_server(X509 *leaf, STACK_OF(X509) * intermediates, EVP_PKEY *key,
                           STACK_OF(X509) * roots, struct zt_tls_cert **out)
{
    return cert_build(leaf, intermediates, key, roots, false, out);
}

int zt_tls_read_pem_certs(const char *pem, size_t len, int max, STACK_OF(X509) * *out)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *bio = NULL;
    int rc = 0;
    X509 *x;

    if (sk == NULL)
        abort();
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        abort();
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_num(sk) >= max) {
            X509_free(x);
            rc = ZT_E_TOO_BIG;
            goto out;
        }
        if (!sk_X509_push(sk, x))
            abort();
    }
    /* The loop ends on "no more PEM blocks" (fine once something was read)
     * or on a damaged block (always an error). */
    unsigned long e = ERR_peek_last_error();
    if (sk_X509_num(sk) == 0 ||
        !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
        rc = ZT_E_TLS;
out:
    ERR_clear_error();
    BIO_free(bio);
    if (rc != 0)
        sk_X509_pop_free(sk, X509_free);
    else
        *out = sk;
    return rc;
}

int zt_tls_cert_from_pem(const char *chain_pem, size_t chain_len, const char *key_pem,
                         size_t key_len, const char *roots_pem, size_t roots_len,
                         struct zt_tls_cert **out)
{
    STACK_OF(X509) *chain = NULL, *roots = NULL;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    BIO *bio = NULL;
    int rc;

    *out = NULL;
    if (chain_len > ZT_TLS_PEM_MAX || key_len > ZT_TLS_PEM_MAX || roots_len > ZT_TLS_PEM_MAX)
        return ZT_E_TOO_BIG;
    rc = zt_tls_read_pem_certs(chain_pem, chain_len, ZT_TLS_CHAIN_MAX + 1, &chain);
    if (rc != 0)
        goto out;
    rc = zt_tls_read_pem_certs(roots_pem, roots_len, ZT_TLS_CHAIN_MAX, &roots);
    if (rc != 0)
        goto out;
    bio = BIO_new_mem_buf(key_pem, (int)key_len);
    if (bio == NULL)
        abort();
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (key == NULL) {
        rc = ZT_E_TLS;
        goto out;
    }
    leaf = sk_X509_shift(chain);
    rc = zt_tls_cert_new(leaf, chain, key, roots, out);
out:
    ERR_clear_error();
    BIO_free(bio);
    X509_free(leaf);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(roots, X509_free);
    return rc;
}

struct zt_tls_cert *zt_tls_cert_ref(struct zt_tls_cert *cert)
{
    if (cert != NULL)
        atomic_fetch_add_explicit(&cert->refs, 1, memory_order_relaxed);
    return cert;
}

void zt_tls_cert_unref(struct zt_tls_cert *cert)
{
    if (cert == NULL)
        return;
    if (atomic_fetch_sub_explicit(&cert->refs, 1, memory_order_acq_rel) == 1)
        cert_free(cert);
}

time_t zt_tls_cert_refresh_at(const struct zt_tls_cert *cert)
{
    return cert->not_before + (cert->not_after - cert->not_before) / 2;
}

int zt_tls_cert_chain_pem(const struct zt_tls_cert *cert, char **out, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long n;

    if (bio == NULL || !PEM_write_bio_X509(bio, cert->leaf))
        abort();
    for (int i = 0; i < sk_X509_num(cert->intermediates); i++)
        if (!PEM_write_bio_X509(bio, sk_X509_value(cert->intermediates, i)))
            abort();
    n = BIO_get_mem_data(bio, &data);
    *out = malloc((size_t)n + 1);
    if (*out == NULL)
        abort();
    memcpy(*out, data, (size_t)n);
    (*out)[n] = '\0';
    if (len != NULL)
        *len = (size_t)n;
    BIO_free(bio);
    return 0;
}

bool zt_tls_is_self_signed(X509 *x)
{
    /* X509_self_signed(x, 1) also checks the signature. */
    int r = X509_self_signed(x, 1);
    ERR_clear_error();
    return r == 1;
}
