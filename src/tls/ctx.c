#include "tls/ctx.h"

#include "base/err.h"
#include "tls/crl.h"
#include "tls/tls_int.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const char ciphersuites[] = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256";
static const char groups[] = "X25519:P-256:P-384";
/* ALPN wire format: length-prefixed protocol names. */
static const unsigned char alpn_h2[] = {2, 'h', '2'};

/* Most intermediate CAs accepted between a peer leaf and a mesh root. */
#define VERIFY_DEPTH 8

static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ex_cert_idx = -1;

/* Runs when an SSL_CTX is freed: drops the context's reference on its cert. */
static void on_ctx_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    zt_tls_cert_unref(ptr);
}

static void init_ex_index(void)
{
    ex_cert_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, on_ctx_ex_free);
    if (ex_cert_idx < 0)
        abort();
}

struct zt_tls_cert *zt_tls_ctx_cert(const SSL_CTX *ctx)
{
    pthread_once(&ex_once, init_ex_index);
    return SSL_CTX_get_ex_data(ctx, ex_cert_idx);
}

/* Server side certificate verification: the usual chain check against the
 * roots (and the context's CRLs, crl.c), then the mesh rule that the
 * client has exactly one SPIFFE id, of our own trust domain: the id checked
 * here is the one policy sees. */
static int on_verify_client(X509_STORE_CTX *sctx, void *arg)
{
    const struct zt_tls_cert *own = arg;
    struct zt_spiffe_id id;

    if (zt_tls_crl_verify_chain(sctx) != 1)
        return 0;
    X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
    if (leaf == NULL || zt_tls_x509_spiffe_id(leaf, &id) != 0 ||
        strcmp(id.trust_domain, own->id.trust_domain) != 0) {
        X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    return 1;
}

/* Client side: the chain check against the roots (and the context's CRLs,
 * crl.c); the server's identity is checked after the handshake. */
static int on_verify_server(X509_STORE_CTX *sctx, void *arg)
{
    return zt_tls_crl_verify_chain(sctx);
}

/* Refuses a ClientHello without ALPN before any work is done: HBONE is
 * HTTP/2 and a client that cannot say so is not one of ours. */
static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    const unsigned char *data;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &data,
                                  &len) != 1) {
        *alert = SSL_AD_NO_APPLICATION_PROTOCOL;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    /* SSL_select_next_proto validates the client's list and falls back to
     * our first entry on no overlap; only a real overlap is accepted. */
    if (SSL_select_next_proto(&sel, &sel_len, alpn_h2, sizeof(alpn_h2), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

/* Attaches a reference on cert to ctx; do this first so SSL_CTX_free
 * releases it on any later failure. Returns 0 or ZT_E_TLS. */
static int attach_cert(SSL_CTX *ctx, struct zt_tls_cert *cert)
{
    pthread_once(&ex_once, init_ex_index);
    if (!SSL_CTX_set_ex_data(ctx, ex_cert_idx, zt_tls_cert_ref(cert))) {
        zt_tls_cert_unref(cert);
        return ZT_E_TLS;
    }
    return 0;
}

/* Our leaf, key and intermediates. Returns 0 or ZT_E_TLS. */
static int use_cert(SSL_CTX *ctx, const struct zt_tls_cert *cert)
{
    if (SSL_CTX_use_certificate(ctx, cert->leaf) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, cert->key) != 1 || SSL_CTX_check_private_key(ctx) != 1 ||
        SSL_CTX_set1_chain(ctx, cert->intermediates) != 1)
        return ZT_E_TLS;
    return 0;
}

/* Settings common to both sides. Returns 0 or ZT_E_TLS. */
static int ctx_setup(SSL_CTX *ctx, struct zt_tls_cert *cert)
{
    if (attach_cert(ctx, cert) != 0)
        return ZT_E_TLS;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, ciphersuites) || !SSL_CTX_set1_groups_list(ctx, groups))
        return ZT_E_TLS;
    if (use_cert(ctx, cert) != 0)
        return ZT_E_TLS;
    if (SSL_CTX_set1_verify_cert_store(ctx, cert->store) != 1)
        return ZT_E_TLS;
    /* No automatic chain building: it could append the root. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify_depth(ctx, VERIFY_DEPTH);
    return 0;
}

SSL_CTX *zt_tls_server_ctx_new(struct zt_tls_cert *cert)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        abort();
    if (ctx_setup(ctx, cert) != 0)
        goto fail;
    /* TLS 1.3 sends stateful tickets even with SSL_OP_NO_TICKET; zero
     * tickets turns resumption off entirely. */
    if (!SSL_CTX_set_num_tickets(ctx, 0))
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, on_verify_client, cert);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, NULL);
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *zt_tls_client_ctx_new(struct zt_tls_cert *cert)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        abort();
    if (ctx_setup(ctx, cert) != 0)
        goto fail;
    /* set_alpn_protos returns 0 on success. */
    if (SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof(alpn_h2)) != 0)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, on_verify_server, NULL);
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

int zt_tls_peer_identity(SSL *ssl, struct zt_spiffe_id *out)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    memset(out, 0, sizeof(*out));
    if (peer == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return ZT_E_IDENTITY;
    return zt_tls_x509_spiffe_id(peer, out);
}

int zt_tls_verify_server_identity(SSL *ssl, const struct zt_spiffe_id *expected, size_t n_expected)
{
    struct zt_spiffe_id id;
    if (zt_tls_peer_identity(ssl, &id) != 0)
        return ZT_E_IDENTITY;
    for (size_t j = 0; j < n_expected; j++)
        if (zt_spiffe_eq(&id, &expected[j]))
            return 0;
    return ZT_E_IDENTITY;
}

bool zt_tls_alpn_is_h2(const SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

/* A control-plane client context without its roots yet. */
static SSL_CTX *server_auth_ctx_base(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        abort();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* set_alpn_protos returns 0 on success. */
    if (SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof(alpn_h2)) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

SSL_CTX *zt_tls_server_auth_ctx_new(const char *root_ca, char *err, size_t errlen)
{
    SSL_CTX *ctx = server_auth_ctx_base();
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot set ALPN");
        goto fail;
    }
    int ok = root_ca && strcmp(root_ca, "SYSTEM") == 0
                 ? SSL_CTX_set_default_verify_paths(ctx)
                 : SSL_CTX_load_verify_locations(ctx, root_ca, NULL);
    if (ok != 1) {
        snprintf(err, errlen, "%s: cannot load root certificates", root_ca ? root_ca : "(none)");
        goto fail;
    }
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *zt_tls_server_auth_ctx_from_pem(const char *pem, size_t len, int max_roots, char *err,
                                         size_t errlen)
{
    STACK_OF(X509) *roots = NULL;
    SSL_CTX *ctx = NULL;
    int rc = zt_tls_read_pem_certs(pem, len, max_roots, &roots);
    if (rc != 0) {
        snprintf(err, errlen, "%s",
                 rc == ZT_E_TOO_BIG ? "more root certificates than allowed"
                                    : "no certificate, or a damaged PEM block");
        goto fail;
    }
    ctx = server_auth_ctx_base();
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot set ALPN");
        goto fail;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    for (int i = 0; i < sk_X509_num(roots); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(roots, i)) != 1) {
            snprintf(err, errlen, "OpenSSL refused root certificate %d", i + 1);
            goto fail;
        }
    sk_X509_pop_free(roots, X509_free);
    return ctx;
fail:
    ERR_clear_error();
    sk_X509_pop_free(roots, X509_free);
    SSL_CTX_free(ctx);
    return NULL;
}

int zt_tls_expect_host(SSL *ssl, const char *host)
{
    /* SNI carries host names only (RFC 6066 3): not for an IP literal. */
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if ((!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1) || SSL_set1_host(ssl, host) != 1)
        return ZT_E_TLS;
    return 0;
}

/* TLS 1.2 suites for control-plane clients: forward-secret AEAD only, which
 * is also what HTTP/2 (RFC 9113 9.2.2) allows. ECDSA first, for our keys;
 * RSA for a certificate loaded from files. */
static const char control_ciphers12[] =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305";
static const char control_ciphersuites[] =
    "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";

SSL_CTX *zt_tls_control_server_ctx_new(struct zt_tls_cert *cert, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *why = NULL;

    if (ctx == NULL)
        abort();
    if (attach_cert(ctx, cert) != 0) {
        why = "cannot attach the certificate";
        goto fail;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, control_ciphers12) ||
        !SSL_CTX_set_ciphersuites(ctx, control_ciphersuites) ||
        !SSL_CTX_set1_groups_list(ctx, groups)) {
        why = "OpenSSL refused the protocol settings";
        goto fail;
    }
    if (use_cert(ctx, cert) != 0) {
        why = "OpenSSL refused the certificate, key or chain";
        goto fail;
    }
    /* As for HBONE: no resumption in either version (no tickets, stateless
     * or stateful; no session cache), never the root in the chain. */
    if (!SSL_CTX_set_num_tickets(ctx, 0)) {
        why = "cannot turn off session tickets";
        goto fail;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* Proxies authenticate inside gRPC (a bearer token), not with TLS:
     * never ask for a client certificate. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, NULL);
    return ctx;
fail:
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "control server TLS context: %s", why);
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}
