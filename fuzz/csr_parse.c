/* Fuzzes the CA's check of a certificate signing request (a PEM text from a
 * network peer, tls/csr.h). Each input is tried twice: as the PEM text
 * itself, and as DER bytes wrapped into a CERTIFICATE REQUEST PEM block, so
 * mutations reach the ASN.1 and the checks behind it rather than only the
 * base64 layer.
 *
 * Invariants: the result is 0 or one of the documented codes, ZT_E_TOO_BIG
 * exactly when the text is over ZT_TLS_CSR_PEM_MAX; a failure leaves an
 * error text, no key and a zeroed id; the answer does not depend on whether
 * the key is asked for. On success the key is EC or RSA, the id formats and
 * parses back to itself, and OpenSSL, reading the same text on its own,
 * verifies the request's signature with the returned key. */
#include "base/err.h"
#include "base/log.h"
#include "tls/csr.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    return 0;
}

static bool is_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i])
            return false;
    return true;
}

/* OpenSSL's own verdict on the first request in pem, with key. */
static bool openssl_verifies(const char *pem, size_t len, EVP_PKEY *key)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_REQ *req;
    bool ok = false;

    if (!bio)
        abort();
    req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    if (req)
        ok = X509_REQ_verify(req, key) == 1;
    X509_REQ_free(req);
    BIO_free(bio);
    ERR_clear_error();
    return ok;
}

static void check(const char *pem, size_t len)
{
    struct zt_spiffe_id id, id2, back;
    char err[256], err2[256], buf[ZT_SPIFFE_ID_MAX + 1];
    EVP_PKEY *key = (EVP_PKEY *)&id; /* must be overwritten */
    int rc, rc2, n;

    err[0] = '\0';
    rc = zt_tls_csr_parse(pem, len, &id, &key, err, sizeof(err));
    rc2 = zt_tls_csr_parse(pem, len, &id2, NULL, err2, sizeof(err2));
    if (rc != rc2 || strcmp(err, err2) != 0 || memcmp(&id, &id2, sizeof(id)) != 0)
        __builtin_trap();
    if ((rc == ZT_E_TOO_BIG) != (len > ZT_TLS_CSR_PEM_MAX))
        __builtin_trap();
    if (rc != 0) {
        if ((rc != ZT_E_TOO_BIG && rc != ZT_E_PROTO && rc != ZT_E_IDENTITY) || key ||
            err[0] == '\0' || !is_zero(&id, sizeof(id)))
            __builtin_trap();
        return;
    }
    if (!key ||
        (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC && EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA))
        __builtin_trap();
    n = zt_spiffe_format(&id, buf, sizeof(buf));
    if (n <= 0 || zt_spiffe_parse(buf, (size_t)n, &back) != 0 || !zt_spiffe_eq(&id, &back))
        __builtin_trap();
    if (!openssl_verifies(pem, len, key))
        __builtin_trap();
    EVP_PKEY_free(key);
}

/* Wraps der into a PEM CERTIFICATE REQUEST block (64-column base64). */
static char *wrap(const uint8_t *der, size_t size, size_t *len)
{
    static const char head[] = "-----BEGIN CERTIFICATE REQUEST-----\n";
    static const char tail[] = "-----END CERTIFICATE REQUEST-----\n";
    size_t b64 = 4 * ((size + 2) / 3), cap = sizeof(head) + b64 + b64 / 64 + 2 + sizeof(tail);
    char *out = malloc(cap), *p = out;
    unsigned char line[66];

    if (!out)
        abort();
    memcpy(p, head, sizeof(head) - 1);
    p += sizeof(head) - 1;
    for (size_t i = 0; i < size; i += 48) {
        size_t chunk = size - i < 48 ? size - i : 48;
        int k = EVP_EncodeBlock(line, der + i, (int)chunk);
        memcpy(p, line, (size_t)k);
        p += k;
        *p++ = '\n';
    }
    memcpy(p, tail, sizeof(tail) - 1);
    p += sizeof(tail) - 1;
    *len = (size_t)(p - out);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len;
    char *pem;

    check((const char *)data, size);
    pem = wrap(data, size, &len);
    check(pem, len);
    free(pem);
    return 0;
}
