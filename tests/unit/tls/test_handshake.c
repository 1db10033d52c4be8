#include "test.h"

#include "base/err.h"
#include "tls/cert.h"
#include "tls/ctx.h"
#include "tls/fixture.h"
#include "tls/localca.h"

static struct fx_ca fx, fx_other;
static struct zt_tls_localca *ca, *ca_other;

static struct zt_spiffe_id id_of(const char *td, const char *ns, const char *sa)
{
    struct zt_spiffe_id id;
    if (zt_spiffe_make(td, ns, sa, &id) != 0)
        abort();
    return id;
}

static struct zt_tls_cert *mint(struct zt_tls_localca *from, const char *td, const char *ns,
                                const char *sa)
{
    struct zt_spiffe_id id = id_of(td, ns, sa);
    struct zt_tls_cert *c = NULL;
    if (zt_tls_localca_mint(from, &id, 600, &c) != 0)
        abort();
    return c;
}

/* Handshake between a client cert and a server cert. */
static void run(struct zt_tls_cert *client, struct zt_tls_cert *server, void (*setup)(SSL *),
                struct fx_conn *conn)
{
    SSL_CTX *cctx = zt_tls_client_ctx_new(client);
    SSL_CTX *sctx = zt_tls_server_ctx_new(server);
    if (cctx == NULL || sctx == NULL)
        abort();
    fx_handshake(cctx, sctx, setup, conn);
    /* The SSLs keep their contexts alive. */
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
}

static void test_success_both_ways(void)
{
    struct zt_tls_cert *cc = mint(ca, "cluster.local", "ns1", "client");
    struct zt_tls_cert *sc = mint(ca, "cluster.local", "ns2", "server");
    struct fx_conn conn;
    struct zt_spiffe_id got;
    run(cc, sc, NULL, &conn);
    CHECK_EQ_INT(conn.c_res, FX_HS_DONE);
    CHECK_EQ_INT(conn.s_res, FX_HS_DONE);
    CHECK_EQ_INT(SSL_version(conn.c), TLS1_3_VERSION);
    CHECK_EQ_STR(SSL_get_cipher_name(conn.c), "TLS_AES_256_GCM_SHA384");
    CHECK(zt_tls_alpn_is_h2(conn.c));
    CHECK(zt_tls_alpn_is_h2(conn.s));
    CHECK(!SSL_session_reused(conn.c));
    /* No SNI went out. */
    CHECK(SSL_get_servername(conn.s, TLSEXT_NAMETYPE_host_name) == NULL);

    CHECK_EQ_INT(zt_tls_peer_identity(conn.s, &got), 0);
    CHECK(zt_spiffe_eq(&got, &cc->id));
    CHECK_EQ_INT(zt_tls_peer_identity(conn.c, &got), 0);
    CHECK(zt_spiffe_eq(&got, &sc->id));

    /* The server sent leaf + intermediate, not the root. */
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(conn.c);
    CHECK(sent != NULL);
    CHECK_EQ_INT(sk_X509_num(sent), 2);
    for (int i = 0; i < sk_X509_num(sent); i++)
        CHECK(X509_cmp(sk_X509_value(sent, i), fx.root) != 0);
    /* And so did the client (on the server, the chain excludes the leaf). */
    sent = SSL_get_peer_cert_chain(conn.s);
    CHECK(sent != NULL);
    CHECK_EQ_INT(sk_X509_num(sent), 1);
    CHECK_EQ_INT(X509_cmp(sk_X509_value(sent, 0), fx.ca), 0);

    struct zt_spiffe_id want[2] = {id_of("cluster.local", "ns2", "other"), sc->id};
    CHECK_EQ_INT(zt_tls_verify_server_identity(conn.c, want, 2), 0);
    fx_conn_free(&conn);
    zt_tls_cert_unref(cc);
    zt_tls_cert_unref(sc);
}

static void test_client_rejects_unexpected_server(void)
{
    struct zt_tls_cert *cc = mint(ca, "cluster.local", "ns1", "client");
    struct zt_tls_cert *sc = mint(ca, "cluster.local", "ns2", "impostor");
    struct fx_conn conn;
    run(cc, sc, NULL, &conn);
    CHECK_EQ_INT(conn.c_res, FX_HS_DONE);
    struct zt_spiffe_id want[2] = {id_of("cluster.local", "ns2", "server"),
                                   id_of("other.local", "ns2", "impostor")};
    CHECK_EQ_INT(zt_tls_verify_server_identity(conn.c, want, 2), ZT_E_IDENTITY);
    CHECK_EQ_INT(zt_tls_verify_server_identity(conn.c, want, 0), ZT_E_IDENTITY);
    CHECK_EQ_INT(zt_tls_verify_server_identity(conn.c, &sc->id, 1), 0);
    fx_conn_free(&conn);
    zt_tls_cert_unref(cc);
    zt_tls_cert_unref(sc);
}

static void test_server_rejects_other_trust_domain(void)
{
    struct zt_tls_cert *cc = mint(ca, "other.local", "ns1", "client");
    struct zt_tls_cert *sc = mint(ca, "cluster.local", "ns2", "server");
    struct fx_conn conn;
    struct zt_spiffe_id got;
    run(cc, sc, NULL, &conn);
    CHECK_EQ_INT(conn.s_res, FX_HS_FAILED);
    /* The client learns through the alert when it next reads. */
    CHECK_EQ_INT(conn.c_res, FX_HS_FAILED);
    CHECK_EQ_INT(SSL_get_verify_result(conn.s), X509_V_ERR_APPLICATION_VERIFICATION);
    CHECK_EQ_INT(zt_tls_peer_identity(conn.s, &got), ZT_E_IDENTITY);
    fx_conn_free(&conn);
    zt_tls_cert_unref(cc);
    zt_tls_cert_unref(sc);
}

static SSL_CTX *bare_client_ctx(struct zt_tls_localca *from, bool with_alpn)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509) *roots = zt_tls_localca_roots(from);
    for (int i = 0; i < sk_X509_num(roots); i++)
        X509_STORE_add_cert(st, sk_X509_value(roots, i));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (with_alpn)
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3);
    return ctx;
}

static void test_server_rejects_no_client_cert(void)
{
    struct zt_tls_cert *sc = mint(ca, "cluster.local", "ns2", "server");
    SSL_CTX *cctx = bare_client_ctx(ca, true);
    SSL_CTX *sctx = zt_tls_server_ctx_new(sc);
    struct fx_conn conn;
    fx_handshake(cctx, sctx, NULL, &conn);
    CHECK_EQ_INT(conn.s_res, FX_HS_FAILED);
    CHECK_EQ_INT(conn.c_res, FX_HS_FAILED);
    /* The client itself accepted the server: the failure is the server's
     * client-certificate requirement. */
    CHECK_EQ_INT(SSL_get_verify_result(conn.c), X509_V_OK);
    fx_conn_free(&conn);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    zt_tls_cert_unref(sc);
}

/* Same leaf, chain and key, with the trust bundle of the main CA. */
static struct zt_tls_cert *retrust(struct zt_tls_cert *c)
{
    struct zt_tls_cert *out = NULL;
    if (zt_tls_cert_new(c->leaf, c->intermediates, c->key, zt_tls_localca_roots(ca), &out) != 0)
        abort();
    zt_tls_cert_unref(c);
    return out;
}

static void test_untrusted_ca_rejected(void)
{
    struct zt_tls_cert *good_c = mint(ca, "cluster.local", "ns1", "client");
    struct zt_tls_cert *good_s = mint(ca, "cluster.local", "ns2", "server");
    /* Certificates issued by the foreign CA, but trusting our roots, so
     * that only the peer's verification can fail. */
    struct zt_tls_cert *bad_c = retrust(mint(ca_other, "cluster.local", "ns1", "client"));
    struct zt_tls_cert *bad_s = retrust(mint(ca_other, "cluster.local", "ns2", "server"));
    struct fx_conn conn;

    /* Client from a foreign CA. */
    run(bad_c, good_s, NULL, &conn);
    CHECK_EQ_INT(conn.s_res, FX_HS_FAILED);
    CHECK(SSL_get_verify_result(conn.s) != X509_V_OK);
    fx_conn_free(&conn);

    /* Server from a foreign CA. */
    run(good_c, bad_s, NULL, &conn);
    CHECK_EQ_INT(conn.c_res, FX_HS_FAILED);
    CHECK(SSL_get_verify_result(conn.c) != X509_V_OK);
    fx_conn_free(&conn);

    zt_tls_cert_unref(good_c);
    zt_tls_cert_unref(good_s);
    zt_tls_cert_unref(bad_c);
    zt_tls_cert_unref(bad_s);
}

static void clear_alpn(SSL *ssl)
{
    SSL_set_alpn_protos(ssl, NULL, 0);
}

static void http11_alpn(SSL *ssl)
{
    SSL_set_alpn_protos(ssl, (const unsigned char *)"\x08http/1.1", 9);
}

static void test_server_requires_h2(void)
{
    struct zt_tls_cert *cc = mint(ca, "cluster.local", "ns1", "client");
    struct zt_tls_cert *sc = mint(ca, "cluster.local", "ns2", "server");
    struct fx_conn conn;
    run(cc, sc, clear_alpn, &conn);
    CHECK_EQ_INT(conn.s_res, FX_HS_FAILED);
    CHECK_EQ_INT(conn.c_res, FX_HS_FAILED);
    fx_conn_free(&conn);
    run(cc, sc, http11_alpn, &conn);
    CHECK_EQ_INT(conn.s_res, FX_HS_FAILED);
    CHECK_EQ_INT(conn.c_res, FX_HS_FAILED);
    fx_conn_free(&conn);
    zt_tls_cert_unref(cc);
    zt_tls_cert_unref(sc);
}

/* A peer context built by hand, as an attacker would: leaf with `san`,
 * signed by the mesh CA, trusting the mesh roots, offering/accepting h2. */
static SSL_CTX *raw_ctx(bool server, const char *san)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *leaf = fx_cert(NULL, k, fx.ca, fx.ca_key, false, 600, san);
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx || SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, k) != 1)
        abort();
    if (fx.ca != fx.root && SSL_CTX_add1_chain_cert(ctx, fx.ca) != 1)
        abort();
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), fx.root);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (!server)
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3);
    X509_free(leaf);
    EVP_PKEY_free(k);
    return ctx;
}

/* A client leaf must carry exactly one SPIFFE id: with two, the one that
 * passed the trust-domain check need not be the one policy would see. */
static void test_server_refuses_two_spiffe_sans(void)
{
    static const char *const sans[] = {
        "critical,URI:spiffe://evil.example/ns/x/sa/y,URI:spiffe://cluster.local/ns/a/sa/b",
        "critical,URI:spiffe://cluster.local/ns/a/sa/b,URI:spiffe://evil.example/ns/x/sa/y",
        "critical,URI:spiffe://cluster.local/ns/a/sa/b,URI:spiffe://cluster.local/ns/c/sa/d",
    };
    struct zt_tls_cert *sc = mint(ca, "cluster.local", "ns2", "server");
    SSL_CTX *sctx = zt_tls_server_ctx_new(sc);
    for (size_t i = 0; i < sizeof(sans) / sizeof(sans[0]); i++) {
        SSL_CTX *cctx = raw_ctx(false, sans[i]);
        struct fx_conn conn;
        struct zt_spiffe_id got;
        fx_handshake(cctx, sctx, NULL, &conn);
        CHECK_EQ_INT(conn.s_res, FX_HS_FAILED);
        CHECK_EQ_INT(zt_tls_peer_identity(conn.s, &got), ZT_E_IDENTITY);
        fx_conn_free(&conn);
        SSL_CTX_free(cctx);
    }
    /* Positive control: one SPIFFE id beside a URI of another scheme. */
    SSL_CTX *cctx =
        raw_ctx(false, "critical,URI:https://x.example,URI:spiffe://cluster.local/ns/a/sa/b");
    struct fx_conn conn;
    struct zt_spiffe_id got;
    fx_handshake(cctx, sctx, NULL, &conn);
    CHECK_EQ_INT(conn.s_res, FX_HS_DONE);
    CHECK_EQ_INT(zt_tls_peer_identity(conn.s, &got), 0);
    CHECK_EQ_STR(got.ns, "a");
    CHECK_EQ_STR(got.sa, "b");
    fx_conn_free(&conn);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    zt_tls_cert_unref(sc);
}

/* A server leaf with two SPIFFE ids is not any identity we expect, even one
 * of the two; one SPIFFE id beside an https URI is. */
static void test_client_refuses_two_spiffe_sans(void)
{
    struct zt_tls_cert *cc = mint(ca, "cluster.local", "ns1", "client");
    SSL_CTX *cctx = zt_tls_client_ctx_new(cc);
    struct zt_spiffe_id want = id_of("cluster.local", "c", "d"), got;
    struct fx_conn conn;

    SSL_CTX *sctx = raw_ctx(true, "critical,URI:spiffe://cluster.local/ns/a/sa/b,"
                                  "URI:spiffe://cluster.local/ns/c/sa/d");
    fx_handshake(cctx, sctx, NULL, &conn);
    CHECK_EQ_INT(zt_tls_verify_server_identity(conn.c, &want, 1), ZT_E_IDENTITY);
    CHECK_EQ_INT(zt_tls_peer_identity(conn.c, &got), ZT_E_IDENTITY);
    fx_conn_free(&conn);
    SSL_CTX_free(sctx);

    sctx = raw_ctx(true, "critical,URI:https://x.example,URI:spiffe://cluster.local/ns/c/sa/d");
    fx_handshake(cctx, sctx, NULL, &conn);
    CHECK_EQ_INT(conn.c_res, FX_HS_DONE);
    CHECK_EQ_INT(zt_tls_verify_server_identity(conn.c, &want, 1), 0);
    fx_conn_free(&conn);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    zt_tls_cert_unref(cc);
}

/* Our own workload certificate follows the same rule. */
static void test_own_cert_needs_one_spiffe_san(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *two = fx_cert(NULL, k, fx.ca, fx.ca_key, false, 600,
                        "critical,URI:spiffe://cluster.local/ns/a/sa/b,"
                        "URI:spiffe://cluster.local/ns/c/sa/d");
    X509 *one = fx_cert(NULL, k, fx.ca, fx.ca_key, false, 600,
                        "critical,URI:https://x.example,URI:spiffe://cluster.local/ns/c/sa/d");
    STACK_OF(X509) *inter = sk_X509_new_null(), *roots = sk_X509_new_null();
    sk_X509_push(inter, fx.ca);
    sk_X509_push(roots, fx.root);
    struct zt_tls_cert *c = NULL;
    CHECK_EQ_INT(zt_tls_cert_new(two, inter, k, roots, &c), ZT_E_IDENTITY);
    CHECK(c == NULL);
    CHECK_EQ_INT(zt_tls_cert_new(one, inter, k, roots, &c), 0);
    if (c)
        CHECK_EQ_STR(c->id.sa, "d");
    zt_tls_cert_unref(c);
    sk_X509_free(inter);
    sk_X509_free(roots);
    X509_free(two);
    X509_free(one);
    EVP_PKEY_free(k);
}

static void test_ctx_holds_cert_reference(void)
{
    struct zt_tls_cert *sc = mint(ca, "cluster.local", "ns2", "server");
    CHECK_EQ_INT(atomic_load(&sc->refs), 1);
    SSL_CTX *s = zt_tls_server_ctx_new(sc);
    SSL_CTX *c = zt_tls_client_ctx_new(sc);
    CHECK(s != NULL && c != NULL);
    CHECK(zt_tls_ctx_cert(s) == sc);
    CHECK_EQ_INT(atomic_load(&sc->refs), 3);
    CHECK_EQ_INT(SSL_CTX_get_num_tickets(s), 0);
    CHECK(SSL_CTX_get_session_cache_mode(s) == SSL_SESS_CACHE_OFF);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
    CHECK_EQ_INT(atomic_load(&sc->refs), 1);
    zt_tls_cert_unref(sc);
}

int main(void)
{
    if (!fx_ca_make(&fx, true) || !fx_ca_make(&fx_other, true) ||
        zt_tls_localca_load(fx.dir, &ca, NULL, 0) != 0 ||
        zt_tls_localca_load(fx_other.dir, &ca_other, NULL, 0) != 0) {
        fprintf(stderr, "fixture set-up failed\n");
        return 1;
    }
    RUN(test_success_both_ways);
    RUN(test_client_rejects_unexpected_server);
    RUN(test_server_rejects_other_trust_domain);
    RUN(test_server_rejects_no_client_cert);
    RUN(test_untrusted_ca_rejected);
    RUN(test_server_requires_h2);
    RUN(test_server_refuses_two_spiffe_sans);
    RUN(test_client_refuses_two_spiffe_sans);
    RUN(test_own_cert_needs_one_spiffe_san);
    RUN(test_ctx_holds_cert_reference);
    zt_tls_localca_free(ca);
    zt_tls_localca_free(ca_other);
    fx_ca_free(&fx);
    fx_ca_free(&fx_other);
    return TEST_REPORT();
}
