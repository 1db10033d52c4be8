/* Test fixtures for tls and ca tests: an in-process CA written out as an
 * Istio cacerts directory, and an in-memory TLS handshake driver. */
#ifndef ZT_TEST_TLS_FIXTURE_H
#define ZT_TEST_TLS_FIXTURE_H

#include "tls/cert.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void fx_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
    if (ext == NULL || !X509_add_ext(x, ext, -1))
        abort();
    X509_EXTENSION_free(ext);
}

/* A certificate for `key` named CN=cn (empty subject if cn is NULL), signed
 * by issuer/issuer_key (self-signed when issuer is NULL), valid from a minute
 * ago for valid_s seconds. A CA shape or a workload-leaf shape; `san`, if
 * set, is an OpenSSL config value such as "critical,URI:spiffe://...". */
static inline X509 *fx_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                            bool is_ca, long valid_s, const char *san)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    if (x == NULL || name == NULL || serial == NULL)
        abort();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(serial, (long)(random() & 0x7fffffff) + 1);
    X509_set_serialNumber(x, serial);
    ASN1_INTEGER_free(serial);
    if (cn != NULL)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), valid_s);
    X509_set_pubkey(x, key);
    X509 *iss = issuer != NULL ? issuer : x;
    if (is_ca) {
        fx_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
        fx_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
        fx_ext(x, iss, NID_subject_key_identifier, "hash");
        /* Lets OpenSSL tell apart roots of the same name (root rotation). */
        if (issuer != NULL)
            fx_ext(x, iss, NID_authority_key_identifier, "keyid:always");
    } else {
        fx_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE");
        fx_ext(x, iss, NID_key_usage, "critical,digitalSignature,keyEncipherment");
        fx_ext(x, iss, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    if (san != NULL)
        fx_ext(x, iss, NID_subject_alt_name, san);
    if (X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) <= 0)
        abort();
    return x;
}

struct fx_ca {
    char dir[64];
    EVP_PKEY *root_key, *ca_key;
    X509 *root, *ca; /* ca == root when made with with_intermediate=false */
};

static inline bool fx_write_certs(const char *dir, const char *name, X509 *a, X509 *b)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    bool ok = PEM_write_X509(f, a) && (b == NULL || PEM_write_X509(f, b));
    fclose(f);
    return ok;
}

static inline bool fx_write_key(const char *dir, const char *name, EVP_PKEY *key)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    bool ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    return ok;
}

/* Makes a fresh CA in a new temporary directory. */
static inline bool fx_ca_make(struct fx_ca *ca, bool with_intermediate)
{
    memset(ca, 0, sizeof(*ca));
    snprintf(ca->dir, sizeof(ca->dir), "/tmp/zt-tls-test-XXXXXX");
    if (mkdtemp(ca->dir) == NULL)
        return false;
    ca->root_key = EVP_EC_gen("P-256");
    ca->root = fx_cert("Test Root", ca->root_key, NULL, NULL, true, 3600 * 24, NULL);
    if (with_intermediate) {
        ca->ca_key = EVP_EC_gen("P-256");
        ca->ca =
            fx_cert("Test Intermediate", ca->ca_key, ca->root, ca->root_key, true, 3600 * 24, NULL);
    } else {
        ca->ca_key = ca->root_key;
        ca->ca = ca->root;
        EVP_PKEY_up_ref(ca->ca_key);
        X509_up_ref(ca->ca);
    }
    return fx_write_certs(ca->dir, "root-cert.pem", ca->root, NULL) &&
           fx_write_certs(ca->dir, "ca-cert.pem", ca->ca, NULL) &&
           fx_write_key(ca->dir, "ca-key.pem", ca->ca_key) &&
           (!with_intermediate || fx_write_certs(ca->dir, "cert-chain.pem", ca->ca, ca->root));
}

static inline void fx_ca_free(struct fx_ca *ca)
{
    static const char *files[] = {"root-cert.pem", "ca-cert.pem", "ca-key.pem", "cert-chain.pem"};
    char path[256];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", ca->dir, files[i]);
        unlink(path);
    }
    rmdir(ca->dir);
    X509_free(ca->root);
    X509_free(ca->ca);
    EVP_PKEY_free(ca->root_key);
    EVP_PKEY_free(ca->ca_key);
    memset(ca, 0, sizeof(*ca));
}

enum fx_hs_result { FX_HS_PENDING, FX_HS_DONE, FX_HS_FAILED };

struct fx_conn {
    SSL *c, *s;
    enum fx_hs_result c_res, s_res;
};

static inline void fx_step(SSL *ssl, enum fx_hs_result *res)
{
    if (*res != FX_HS_PENDING)
        return;
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        *res = FX_HS_DONE;
        return;
    }
    int e = SSL_get_error(ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        *res = FX_HS_FAILED;
}

/* Runs a handshake between new SSLs of the two contexts over a BIO pair.
 * `setup` (may be NULL) adjusts the client SSL first. After the handshake a
 * byte goes each way so TLS 1.3 failures the server reports after the
 * client finished (client cert rejected) reach the client too. */
static inline void fx_handshake(SSL_CTX *cctx, SSL_CTX *sctx, void (*setup)(SSL *),
                                struct fx_conn *conn)
{
    BIO *bc, *bs;
    memset(conn, 0, sizeof(*conn));
    conn->c = SSL_new(cctx);
    conn->s = SSL_new(sctx);
    if (conn->c == NULL || conn->s == NULL || !BIO_new_bio_pair(&bc, 0, &bs, 0))
        abort();
    SSL_set_bio(conn->c, bc, bc);
    SSL_set_bio(conn->s, bs, bs);
    SSL_set_connect_state(conn->c);
    SSL_set_accept_state(conn->s);
    if (setup != NULL)
        setup(conn->c);
    for (int i = 0; i < 50; i++) {
        fx_step(conn->c, &conn->c_res);
        fx_step(conn->s, &conn->s_res);
    }
    if (conn->c_res == FX_HS_DONE && conn->s_res == FX_HS_DONE) {
        char b = 'x';
        size_t n;
        if (SSL_write_ex(conn->c, &b, 1, &n) != 1 || SSL_read_ex(conn->s, &b, 1, &n) != 1 ||
            SSL_write_ex(conn->s, &b, 1, &n) != 1 || SSL_read_ex(conn->c, &b, 1, &n) != 1)
            conn->c_res = FX_HS_FAILED;
    } else if (conn->c_res == FX_HS_DONE) {
        char b;
        size_t n;
        if (SSL_read_ex(conn->c, &b, 1, &n) != 1)
            conn->c_res = FX_HS_FAILED;
    }
    ERR_clear_error();
}

static inline void fx_conn_free(struct fx_conn *conn)
{
    SSL_free(conn->c);
    SSL_free(conn->s);
    memset(conn, 0, sizeof(*conn));
}

#endif
