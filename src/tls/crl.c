/* CRL_PATH: loading, the set in force, and the revocation checks of the
 * HBONE contexts. OpenSSL does the checking (X509_V_FLAG_CRL_CHECK_ALL over
 * CRLs handed to each verification with X509_STORE_CTX_set0_crls); a
 * verify callback turns its stricter defaults into Istio's rules. */
#include "tls/crl.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/file.h"
#include "tls/ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One loaded file: immutable, shared by the checks running with it. */
struct crl_set {
    atomic_uint refs;
    STACK_OF(X509_CRL) * crls;
    size_t n_revoked;
    unsigned char digest[32]; /* of the file content */
};

struct zt_tls_crl {
    atomic_uint refs;
    char *path;
    zt_tls_crl_reject_fn *on_reject;
    void *ud;
    pthread_mutex_t mu;  /* guards set: held only to swap or take a reference */
    struct crl_set *set; /* never NULL */
};

static struct crl_set *set_new(STACK_OF(X509_CRL) * crls, const unsigned char digest[32])
{
    struct crl_set *s = zt_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->crls = crls;
    for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
        /* A CRL without entries has no list at all (-1). */
        int n = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(sk_X509_CRL_value(crls, i)));
        s->n_revoked += n > 0 ? (size_t)n : 0;
    }
    if (digest != NULL)
        memcpy(s->digest, digest, sizeof(s->digest));
    return s;
}

static void set_unref(struct crl_set *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    sk_X509_CRL_pop_free(s->crls, X509_CRL_free);
    free(s);
}

/* The set in force, with a reference for the caller. */
static struct crl_set *set_get(struct zt_tls_crl *crl)
{
    pthread_mutex_lock(&crl->mu);
    struct crl_set *s = crl->set;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&crl->mu);
    return s;
}

struct zt_tls_crl *zt_tls_crl_new(const char *path, zt_tls_crl_reject_fn *on_reject, void *ud)
{
    struct zt_tls_crl *crl = zt_xcalloc(1, sizeof(*crl));
    atomic_init(&crl->refs, 1);
    crl->path = strdup(path ? path : "");
    STACK_OF(X509_CRL) *none = sk_X509_CRL_new_null();
    if (crl->path == NULL || none == NULL)
        abort();
    crl->on_reject = on_reject;
    crl->ud = ud;
    pthread_mutex_init(&crl->mu, NULL);
    /* An all-zero digest never matches a file's SHA-256 in practice; the
     * first load always installs what it read. */
    crl->set = set_new(none, NULL);
    return crl;
}

struct zt_tls_crl *zt_tls_crl_ref(struct zt_tls_crl *crl)
{
    if (crl != NULL)
        atomic_fetch_add(&crl->refs, 1);
    return crl;
}

void zt_tls_crl_unref(struct zt_tls_crl *crl)
{
    if (crl == NULL || atomic_fetch_sub(&crl->refs, 1) != 1)
        return;
    set_unref(crl->set);
    pthread_mutex_destroy(&crl->mu);
    free(crl->path);
    free(crl);
}

/* ---- loading ---- */

/* One DER CRL that must fill der[0..len) exactly. */
static X509_CRL *crl_from_der(const unsigned char *der, long len)
{
    const unsigned char *p = der;
    X509_CRL *c = d2i_X509_CRL(NULL, &p, len);
    if (c != NULL && p != der + len) {
        X509_CRL_free(c);
        c = NULL;
    }
    return c;
}

static int parse_pem(const char *data, size_t len, STACK_OF(X509_CRL) * out, char *err,
                     size_t errlen)
{
    int rc = 0, block = 0;
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    if (bio == NULL)
        abort();
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long der_len = 0;
        if (PEM_read_bio(bio, &name, &header, &der, &der_len) != 1) {
            /* The end ("no start line"), or a damaged block. */
            unsigned long e = ERR_peek_last_error();
            if (!(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
                snprintf(err, errlen, "PEM block %d is damaged", block + 1);
                rc = ZT_E_TLS;
            }
            break;
        }
        block++;
        if (strcmp(name, PEM_STRING_X509_CRL) == 0) {
            X509_CRL *c = NULL;
            if (sk_X509_CRL_num(out) >= ZT_TLS_CRL_MAX) {
                snprintf(err, errlen, "more than %d CRLs", ZT_TLS_CRL_MAX);
                rc = ZT_E_TOO_BIG;
            } else if ((c = crl_from_der(der, der_len)) == NULL) {
                snprintf(err, errlen, "PEM block %d is not a valid CRL", block);
                rc = ZT_E_TLS;
            } else if (!sk_X509_CRL_push(out, c)) {
                abort();
            }
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        if (rc != 0)
            break;
    }
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

/* Istio's rules: empty = no CRL; PEM = every CRL block; otherwise one DER
 * CRL. Istio takes a file for PEM when it starts with "-----BEGIN"; here
 * any "-----BEGIN " will do, so text before the blocks (`openssl crl
 * -text` output, comments) is read as PEM does, not refused as bad DER. */
static int parse(const char *data, size_t len, STACK_OF(X509_CRL) * *out, char *err, size_t errlen)
{
    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    int rc = 0;
    size_t skip = 0;
    if (crls == NULL)
        abort();
    while (skip < len && strchr(" \t\r\n", data[skip]) != NULL && data[skip] != 0)
        skip++;
    if (skip == len) {
        /* Empty (or only white space): nothing revoked. */
    } else if (memmem(data, len, "-----BEGIN ", 11) != NULL) {
        rc = parse_pem(data, len, crls, err, errlen);
    } else {
        X509_CRL *c = len > (size_t)ZT_TLS_CRL_FILE_MAX
                          ? NULL
                          : crl_from_der((const unsigned char *)data, (long)len);
        ERR_clear_error();
        if (c == NULL) {
            snprintf(err, errlen, "neither PEM nor a DER CRL");
            rc = ZT_E_TLS;
        } else if (!sk_X509_CRL_push(crls, c)) {
            abort();
        }
    }
    if (rc != 0) {
        sk_X509_CRL_pop_free(crls, X509_CRL_free);
        return rc;
    }
    *out = crls;
    return 0;
}

int zt_tls_crl_load(struct zt_tls_crl *crl, size_t *n_crls, char *err, size_t errlen)
{
    char *data = NULL, why[160] = "";
    size_t len = 0;
    unsigned char digest[32];
    unsigned int dlen = 0;
    STACK_OF(X509_CRL) *crls = NULL;
    int rc = zt_read_file(crl->path, ZT_TLS_CRL_FILE_MAX, NULL, &data, &len);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read: %s", crl->path, zt_strerror(rc));
        return rc;
    }
    if (EVP_Digest(data, len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32)
        abort();
    struct crl_set *cur = set_get(crl);
    bool same = memcmp(cur->digest, digest, sizeof(digest)) == 0;
    set_unref(cur);
    if (same) {
        free(data);
        return 0;
    }
    rc = parse(data, len, &crls, why, sizeof(why));
    free(data);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", crl->path, why);
        return rc;
    }
    struct crl_set *next = set_new(crls, digest);
    if (n_crls != NULL)
        *n_crls = (size_t)sk_X509_CRL_num(crls);
    pthread_mutex_lock(&crl->mu);
    struct crl_set *old = crl->set;
    crl->set = next;
    pthread_mutex_unlock(&crl->mu);
    set_unref(old);
    return 1;
}

void zt_tls_crl_counts(struct zt_tls_crl *crl, size_t *n_crls, size_t *n_revoked)
{
    struct crl_set *s = set_get(crl);
    *n_crls = (size_t)sk_X509_CRL_num(s->crls);
    *n_revoked = s->n_revoked;
    set_unref(s);
}

/* ---- contexts ---- */

static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ex_crl_idx = -1;

static void on_ctx_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    zt_tls_crl_unref(ptr);
}

static void init_ex_index(void)
{
    ex_crl_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, on_ctx_ex_free);
    if (ex_crl_idx < 0)
        abort();
}

int zt_tls_ctx_set_crl(SSL_CTX *ctx, struct zt_tls_crl *crl)
{
    pthread_once(&ex_once, init_ex_index);
    if (SSL_CTX_get_ex_data(ctx, ex_crl_idx) != NULL)
        return ZT_E_TLS;
    if (!SSL_CTX_set_ex_data(ctx, ex_crl_idx, zt_tls_crl_ref(crl))) {
        zt_tls_crl_unref(crl);
        return ZT_E_TLS;
    }
    return 0;
}

struct zt_tls_crl *zt_tls_ctx_crl(const SSL_CTX *ctx)
{
    pthread_once(&ex_once, init_ex_index);
    return SSL_CTX_get_ex_data(ctx, ex_crl_idx);
}

/* ---- checks ---- */

static const unsigned long crl_flags = X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;

/* Handshake: OpenSSL's CRL checking, relaxed where Istio's is. */
static int on_handshake_verify(int ok, X509_STORE_CTX *sctx)
{
    if (ok)
        return 1;
    switch (X509_STORE_CTX_get_error(sctx)) {
    case X509_V_ERR_UNABLE_TO_GET_CRL: /* the issuer has no CRL here: status unknown, allowed */
    case X509_V_ERR_CRL_HAS_EXPIRED:   /* expiry of CRLs is not enforced */
    case X509_V_ERR_CRL_NOT_YET_VALID:
        X509_STORE_CTX_set_error(sctx, X509_V_OK);
        return 1;
    default:
        return 0;
    }
}

int zt_tls_crl_verify_chain(X509_STORE_CTX *sctx)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct zt_tls_crl *crl = ssl != NULL ? zt_tls_ctx_crl(SSL_get_SSL_CTX(ssl)) : NULL;
    if (crl == NULL)
        return X509_verify_cert(sctx);
    struct crl_set *set = set_get(crl);
    if (sk_X509_CRL_num(set->crls) == 0) {
        set_unref(set);
        return X509_verify_cert(sctx);
    }
    X509_STORE_CTX_set0_crls(sctx, set->crls);
    X509_STORE_CTX_set_flags(sctx, crl_flags);
    X509_STORE_CTX_set_verify_cb(sctx, on_handshake_verify);
    int ok = X509_verify_cert(sctx);
    X509_STORE_CTX_set0_crls(sctx, NULL); /* the set's reference ends below */
    set_unref(set);
    if (ok != 1 && X509_STORE_CTX_get_error(sctx) == X509_V_ERR_CERT_REVOKED &&
        crl->on_reject != NULL)
        crl->on_reject(crl->ud, SSL_is_server(ssl) == 1);
    return ok;
}

/* Live connection: only a revoked certificate matters; anything else
 * (expiry since the handshake, a CRL now unusable) lets the walk go on. */
static int on_recheck_verify(int ok, X509_STORE_CTX *sctx)
{
    if (!ok && X509_STORE_CTX_get_error(sctx) == X509_V_ERR_CERT_REVOKED) {
        bool *revoked = X509_STORE_CTX_get_app_data(sctx);
        *revoked = true;
    }
    return 1;
}

int zt_tls_crl_peer_revoked(struct zt_tls_crl *crl, SSL *ssl)
{
    STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
    struct zt_tls_cert *own = zt_tls_ctx_cert(SSL_get_SSL_CTX(ssl));
    if (chain == NULL || sk_X509_num(chain) == 0 || own == NULL ||
        SSL_get_verify_result(ssl) != X509_V_OK)
        return ZT_E_NOT_FOUND;
    struct crl_set *set = set_get(crl);
    if (sk_X509_CRL_num(set->crls) == 0) {
        set_unref(set);
        return 0;
    }
    bool revoked = false;
    X509_STORE_CTX *sctx = X509_STORE_CTX_new();
    if (sctx == NULL)
        abort();
    /* The roots the handshake used (the context's certificate's) and the
     * chain it verified, leaf first. */
    if (X509_STORE_CTX_init(sctx, own->store, sk_X509_value(chain, 0), chain) != 1)
        abort();
    X509_STORE_CTX_set_app_data(sctx, &revoked);
    X509_STORE_CTX_set0_crls(sctx, set->crls);
    X509_STORE_CTX_set_flags(sctx, crl_flags);
    X509_STORE_CTX_set_verify_cb(sctx, on_recheck_verify);
    (void)X509_verify_cert(sctx); /* the answer is in `revoked` */
    X509_STORE_CTX_free(sctx);
    set_unref(set);
    ERR_clear_error();
    return revoked ? 1 : 0;
}
