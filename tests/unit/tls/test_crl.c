/* CRL_PATH (tls/crl.h): loading (PEM with several CRLs and other blocks,
 * DER, empty, refused files keeping the set in force) and the checks on
 * both sides of an HBONE handshake and on a live connection, with Istio's
 * rules (whole chain, unknown status allowed, expiry ignored, a badly
 * signed CRL fails closed). */
#include "test.h"

#include "base/err.h"
#include "tls/cert.h"
#include "tls/crl.h"
#include "tls/ctx.h"
#include "tls/fixture.h"
#include "tls/localca.h"

#include <errno.h>

static struct fx_ca fx, fx_other;
static struct zt_tls_localca *ca;
static char dir[64], file[128];
static int rejected_server, rejected_client;

static void on_reject(void *ud, bool is_server)
{
    if (is_server)
        rejected_server++;
    else
        rejected_client++;
}

static struct zt_tls_cert *mint(const char *sa)
{
    struct zt_spiffe_id id;
    struct zt_tls_cert *c = NULL;
    if (zt_spiffe_make("cluster.local", "default", sa, &id) != 0 ||
        zt_tls_localca_mint(ca, &id, 600, &c) != 0)
        abort();
    return c;
}

/* A CRL by issuer's name signed with key, listing the serials of `revoked`
 * (NULL-terminated), valid from last_s to next_s seconds from now. */
static X509_CRL *make_crl(X509 *issuer, EVP_PKEY *key, X509 *const *revoked, long last_s,
                          long next_s)
{
    X509_CRL *crl = X509_CRL_new();
    if (crl == NULL || !X509_CRL_set_version(crl, 1) ||
        !X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)))
        abort();
    ASN1_TIME *t = X509_gmtime_adj(NULL, last_s);
    X509_CRL_set1_lastUpdate(crl, t);
    ASN1_TIME_free(t);
    t = X509_gmtime_adj(NULL, next_s);
    X509_CRL_set1_nextUpdate(crl, t);
    ASN1_TIME_free(t);
    for (; revoked != NULL && *revoked != NULL; revoked++) {
        X509_REVOKED *r = X509_REVOKED_new();
        t = X509_gmtime_adj(NULL, -60);
        if (r == NULL || !X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(*revoked)) ||
            !X509_REVOKED_set_revocationDate(r, t) || !X509_CRL_add0_revoked(crl, r))
            abort();
        ASN1_TIME_free(t);
    }
    if (!X509_CRL_sort(crl) || X509_CRL_sign(crl, key, EVP_sha256()) <= 0)
        abort();
    return crl;
}

/* The intermediate's CRL revoking one certificate (or none). */
static X509_CRL *ca_crl(X509 *revoked)
{
    X509 *list[2] = {revoked, NULL};
    return make_crl(fx.ca, fx.ca_key, list, -60, 3600);
}

/* Writes text then the CRLs as PEM (a rename into place); crls
 * NULL-terminated and freed here. */
static bool put_pem(const char *text, X509_CRL **crls)
{
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return false;
    bool ok = fputs(text, f) >= 0;
    for (; crls != NULL && *crls != NULL; crls++) {
        ok = ok && PEM_write_X509_CRL(f, *crls);
        X509_CRL_free(*crls);
    }
    return fclose(f) == 0 && ok && rename(tmp, file) == 0;
}

static bool put_one(X509_CRL *crl)
{
    X509_CRL *v[2] = {crl, NULL};
    return put_pem("", v);
}

static bool put_der(X509_CRL *crl)
{
    FILE *f = fopen(file, "w");
    bool ok = f != NULL && i2d_X509_CRL_fp(f, crl);
    X509_CRL_free(crl);
    return f != NULL && fclose(f) == 0 && ok;
}

static void counts(struct zt_tls_crl *crl, size_t *n, size_t *revoked)
{
    zt_tls_crl_counts(crl, n, revoked);
}

static void test_load(void)
{
    struct zt_tls_crl *crl = zt_tls_crl_new(file, NULL, NULL);
    struct zt_tls_cert *a = mint("a"), *b = mint("b");
    char err[256] = "";
    size_t n = 99, revoked = 99;

    /* Missing before anything loaded: an error, nothing in force. */
    unlink(file);
    CHECK_EQ_INT(zt_tls_crl_load(crl, &n, err, sizeof(err)), -ENOENT);
    CHECK(strstr(err, file) != NULL);
    counts(crl, &n, &revoked);
    CHECK_EQ_INT(n, 0);

    /* Empty: valid, nothing revoked. */
    CHECK(put_pem("", NULL));
    CHECK_EQ_INT(zt_tls_crl_load(crl, &n, err, sizeof(err)), 1);
    CHECK_EQ_INT(n, 0);

    /* PEM: two CRLs, with a certificate block and text around, skipped. */
    X509 *ab[3] = {a->leaf, b->leaf, NULL};
    X509_CRL *two[3] = {make_crl(fx.ca, fx.ca_key, ab, -60, 3600),
                        make_crl(fx.root, fx.root_key, NULL, -60, 3600), NULL};
    BIO *mem = BIO_new(BIO_s_mem());
    CHECK(mem != NULL && PEM_write_bio_X509(mem, fx.root));
    char *cert_pem = NULL;
    long cert_len = BIO_get_mem_data(mem, &cert_pem);
    char text[4096];
    snprintf(text, sizeof(text), "# the mesh CRLs\n%.*s", (int)cert_len, cert_pem);
    BIO_free(mem);
    CHECK(put_pem(text, two));
    CHECK_EQ_INT(zt_tls_crl_load(crl, &n, err, sizeof(err)), 1);
    CHECK_EQ_INT(n, 2);
    counts(crl, &n, &revoked);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(revoked, 2);
    /* Read again unchanged: nothing to do. */
    CHECK_EQ_INT(zt_tls_crl_load(crl, &n, err, sizeof(err)), 0);

    /* Refused files keep the set in force: a damaged block, a CRL block
     * that holds no CRL, bytes that are neither PEM nor DER, no file. */
    static const char *const bad[] = {
        "-----BEGIN X509 CRL-----\nnot base64!\n-----END X509 CRL-----\n",
        "-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n",
        "\x30\x03garbage",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(put_pem(bad[i], NULL));
        err[0] = 0;
        CHECK_EQ_INT(zt_tls_crl_load(crl, &n, err, sizeof(err)), ZT_E_TLS);
        CHECK(strstr(err, file) != NULL);
        counts(crl, &n, &revoked);
        CHECK_EQ_INT(n, 2);
        CHECK_EQ_INT(revoked, 2);
    }
    unlink(file);
    CHECK_EQ_INT(zt_tls_crl_load(crl, &n, err, sizeof(err)), -ENOENT);
    counts(crl, &n, &revoked);
    CHECK_EQ_INT(revoked, 2);

    /* DER: one CRL. */
    CHECK(put_der(ca_crl(a->leaf)));
    CHECK_EQ_INT(zt_tls_crl_load(crl, &n, err, sizeof(err)), 1);
    counts(crl, &n, &revoked);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(revoked, 1);

    /* PEM with no CRL block at all: nothing revoked (as Istio). */
    CHECK(put_pem(text, NULL));
    CHECK_EQ_INT(zt_tls_crl_load(crl, &n, err, sizeof(err)), 1);
    CHECK_EQ_INT(n, 0);
    zt_tls_cert_unref(a);
    zt_tls_cert_unref(b);
    zt_tls_crl_unref(crl);
}

/* A handshake between HBONE contexts of client and server that both check
 * against crl (NULL: neither does). */
static void run(struct zt_tls_cert *client, struct zt_tls_cert *server, struct zt_tls_crl *crl,
                struct fx_conn *conn)
{
    SSL_CTX *cctx = zt_tls_client_ctx_new(client);
    SSL_CTX *sctx = zt_tls_server_ctx_new(server);
    if (cctx == NULL || sctx == NULL)
        abort();
    if (crl != NULL && (zt_tls_ctx_set_crl(cctx, crl) != 0 || zt_tls_ctx_set_crl(sctx, crl) != 0))
        abort();
    fx_handshake(cctx, sctx, NULL, conn);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
}

static bool connects(struct zt_tls_cert *client, struct zt_tls_cert *server, struct zt_tls_crl *crl)
{
    struct fx_conn conn;
    run(client, server, crl, &conn);
    bool ok = conn.c_res == FX_HS_DONE && conn.s_res == FX_HS_DONE;
    fx_conn_free(&conn);
    return ok;
}

static void test_handshake_both_sides(void)
{
    struct zt_tls_crl *crl = zt_tls_crl_new(file, on_reject, NULL);
    struct zt_tls_cert *cc = mint("client"), *sc = mint("server");
    char err[256];
    rejected_server = rejected_client = 0;

    /* A CRL revoking neither. */
    CHECK(put_one(ca_crl(NULL)));
    CHECK_EQ_INT(zt_tls_crl_load(crl, NULL, err, sizeof(err)), 1);
    CHECK(connects(cc, sc, crl));

    /* The client revoked: the server side refuses it. */
    CHECK(put_one(ca_crl(cc->leaf)));
    CHECK_EQ_INT(zt_tls_crl_load(crl, NULL, err, sizeof(err)), 1);
    struct fx_conn conn;
    run(cc, sc, crl, &conn);
    CHECK_EQ_INT(conn.s_res, FX_HS_FAILED);
    CHECK_EQ_INT(SSL_get_verify_result(conn.s), X509_V_ERR_CERT_REVOKED);
    fx_conn_free(&conn);
    CHECK_EQ_INT(rejected_server, 1);
    CHECK_EQ_INT(rejected_client, 0);
    /* Positive control: contexts without the CRL let it in. */
    CHECK(connects(cc, sc, NULL));

    /* The server revoked: the client side refuses it. */
    CHECK(put_one(ca_crl(sc->leaf)));
    CHECK_EQ_INT(zt_tls_crl_load(crl, NULL, err, sizeof(err)), 1);
    run(cc, sc, crl, &conn);
    CHECK_EQ_INT(conn.c_res, FX_HS_FAILED);
    CHECK_EQ_INT(SSL_get_verify_result(conn.c), X509_V_ERR_CERT_REVOKED);
    fx_conn_free(&conn);
    CHECK_EQ_INT(rejected_client, 1);
    CHECK_EQ_INT(rejected_server, 1);

    zt_tls_cert_unref(cc);
    zt_tls_cert_unref(sc);
    zt_tls_crl_unref(crl);
}

static void test_rules(void)
{
    struct zt_tls_crl *crl = zt_tls_crl_new(file, NULL, NULL);
    struct zt_tls_cert *cc = mint("client"), *sc = mint("server");
    char err[256];
    X509 *list[2] = {cc->leaf, NULL};

    /* Another CA's CRL listing the same serial: says nothing about our
     * issuer's certificates (unknown status is allowed). */
    EVP_PKEY *other_key = EVP_EC_gen("P-256");
    X509 *other_ca = fx_cert("Other CA", other_key, NULL, NULL, true, 3600, NULL);
    CHECK(put_one(make_crl(other_ca, other_key, list, -60, 3600)));
    X509_free(other_ca);
    EVP_PKEY_free(other_key);
    CHECK_EQ_INT(zt_tls_crl_load(crl, NULL, err, sizeof(err)), 1);
    CHECK(connects(cc, sc, crl));

    /* Past its nextUpdate, a CRL still revokes. */
    CHECK(put_one(make_crl(fx.ca, fx.ca_key, list, -7200, -3600)));
    CHECK_EQ_INT(zt_tls_crl_load(crl, NULL, err, sizeof(err)), 1);
    CHECK(!connects(cc, sc, crl));

    /* The whole chain: the root's CRL revoking the intermediate refuses
     * every leaf under it. */
    X509 *inter[2] = {fx.ca, NULL};
    CHECK(put_one(make_crl(fx.root, fx.root_key, inter, -60, 3600)));
    CHECK_EQ_INT(zt_tls_crl_load(crl, NULL, err, sizeof(err)), 1);
    CHECK(!connects(cc, sc, crl));

    /* A CRL in our issuer's name with a signature that does not verify:
     * fail closed, even for a serial it does not list. */
    X509 *none[1] = {NULL};
    CHECK(put_one(make_crl(fx.ca, fx_other.ca_key, none, -60, 3600)));
    CHECK_EQ_INT(zt_tls_crl_load(crl, NULL, err, sizeof(err)), 1);
    CHECK(!connects(cc, sc, crl));

    zt_tls_cert_unref(cc);
    zt_tls_cert_unref(sc);
    zt_tls_crl_unref(crl);
}

static void test_live_connection(void)
{
    struct zt_tls_crl *crl = zt_tls_crl_new(file, NULL, NULL);
    struct zt_tls_cert *cc = mint("client"), *sc = mint("server"), *other = mint("other");
    char err[256];
    struct fx_conn conn;

    /* No CRL in force: nothing is revoked. */
    run(cc, sc, crl, &conn);
    CHECK_EQ_INT(conn.s_res, FX_HS_DONE);
    CHECK_EQ_INT(zt_tls_crl_peer_revoked(crl, conn.s), 0);

    /* Another certificate revoked: this connection's peers are not. */
    CHECK(put_one(ca_crl(other->leaf)));
    CHECK_EQ_INT(zt_tls_crl_load(crl, NULL, err, sizeof(err)), 1);
    CHECK_EQ_INT(zt_tls_crl_peer_revoked(crl, conn.s), 0);
    CHECK_EQ_INT(zt_tls_crl_peer_revoked(crl, conn.c), 0);

    /* The client revoked: the server's side of the live connection sees
     * it; the client's side (whose peer is the server) does not. */
    CHECK(put_one(ca_crl(cc->leaf)));
    CHECK_EQ_INT(zt_tls_crl_load(crl, NULL, err, sizeof(err)), 1);
    CHECK_EQ_INT(zt_tls_crl_peer_revoked(crl, conn.s), 1);
    CHECK_EQ_INT(zt_tls_crl_peer_revoked(crl, conn.c), 0);

    /* The intermediate revoked: both peers are. */
    X509 *inter[2] = {fx.ca, NULL};
    CHECK(put_one(make_crl(fx.root, fx.root_key, inter, -60, 3600)));
    CHECK_EQ_INT(zt_tls_crl_load(crl, NULL, err, sizeof(err)), 1);
    CHECK_EQ_INT(zt_tls_crl_peer_revoked(crl, conn.s), 1);
    CHECK_EQ_INT(zt_tls_crl_peer_revoked(crl, conn.c), 1);
    fx_conn_free(&conn);

    /* No handshake, no verified chain: cannot be checked. */
    SSL_CTX *ctx = zt_tls_server_ctx_new(sc);
    SSL *ssl = SSL_new(ctx);
    CHECK_EQ_INT(zt_tls_crl_peer_revoked(crl, ssl), ZT_E_NOT_FOUND);
    SSL_free(ssl);
    SSL_CTX_free(ctx);

    zt_tls_cert_unref(cc);
    zt_tls_cert_unref(sc);
    zt_tls_cert_unref(other);
    zt_tls_crl_unref(crl);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/zt-tls-crl-XXXXXX");
    if (!fx_ca_make(&fx, true) || !fx_ca_make(&fx_other, true) ||
        zt_tls_localca_load(fx.dir, &ca, NULL, 0) != 0 || mkdtemp(dir) == NULL) {
        fprintf(stderr, "fixture set-up failed\n");
        return 1;
    }
    snprintf(file, sizeof(file), "%s/crl.pem", dir);
    RUN(test_load);
    RUN(test_handshake_both_sides);
    RUN(test_rules);
    RUN(test_live_connection);
    unlink(file);
    rmdir(dir);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
    fx_ca_free(&fx_other);
    return TEST_REPORT();
}
