/* The control plane's TLS server side: server certificates minted by the
 * local CA or loaded from files, and the context proxies connect to with
 * zt_tls_server_auth_ctx_new() + zt_tls_expect_host(). */
#include "test.h"

#include "base/err.h"
#include "tls/cert.h"
#include "tls/ctx.h"
#include "tls/fixture.h"
#include "tls/localca.h"

#include <arpa/inet.h>

static struct fx_ca fx, fx_other;
static struct zt_tls_localca *ca, *ca_other;
static char root_file[128];
static char tmpdir[64];

static const char *const test_dns[] = {"istiod.test"};
static const char *const test_ips[] = {"127.0.0.1", "::1"};

static struct zt_tls_cert *mint_server(struct zt_tls_localca *from)
{
    struct zt_tls_cert *c = NULL;
    if (zt_tls_localca_mint_server(from, test_dns, 1, test_ips, 2, 600, &c) != 0)
        abort();
    return c;
}

/* ---- handshake plumbing ---- */

static const char *want_host;           /* host the client expects; set before run() */
static bool client_tls12_only;          /* cap the client at TLS 1.2 */
static int alpn_mode;                   /* 0 h2 (the ctx's), 1 none, 2 http/1.1 */
static struct zt_tls_cert *client_cert; /* offered if the server asks */
static int client_alert_got;            /* last alert description the client read, or -1 */

static void on_client_info(const SSL *ssl, int where, int ret)
{
    if (where & SSL_CB_READ_ALERT)
        client_alert_got = ret & 0xff;
}

static void client_setup(SSL *ssl)
{
    if (want_host != NULL && zt_tls_expect_host(ssl, want_host) != 0)
        abort();
    if (client_tls12_only && !SSL_set_max_proto_version(ssl, TLS1_2_VERSION))
        abort();
    if (alpn_mode == 1)
        SSL_set_alpn_protos(ssl, NULL, 0);
    else if (alpn_mode == 2)
        SSL_set_alpn_protos(ssl, (const unsigned char *)"\x08http/1.1", 9);
    if (client_cert != NULL && (SSL_use_certificate(ssl, client_cert->leaf) != 1 ||
                                SSL_use_PrivateKey(ssl, client_cert->key) != 1))
        abort();
    SSL_set_info_callback(ssl, on_client_info);
}

static void reset_client_opts(void)
{
    want_host = NULL;
    client_tls12_only = false;
    alpn_mode = 0;
    client_cert = NULL;
    client_alert_got = -1;
}

/* A proxy-style client (root file + host check) against the control
 * server context built on `server`. */
static void run(struct zt_tls_cert *server, const char *roots, struct fx_conn *conn)
{
    char err[256] = "";
    SSL_CTX *cctx = zt_tls_server_auth_ctx_new(roots, err, sizeof(err));
    SSL_CTX *sctx = zt_tls_control_server_ctx_new(server, err, sizeof(err));
    if (cctx == NULL || sctx == NULL) {
        fprintf(stderr, "ctx: %s\n", err);
        abort();
    }
    client_alert_got = -1;
    fx_handshake(cctx, sctx, client_setup, conn);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
}

/* ---- minted certificate shape ---- */

static bool has_dns(GENERAL_NAMES *names, const char *want)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type == GEN_DNS && ASN1_STRING_length(gn->d.dNSName) == (int)strlen(want) &&
            memcmp(ASN1_STRING_get0_data(gn->d.dNSName), want, strlen(want)) == 0)
            return true;
    }
    return false;
}

static bool has_ip(GENERAL_NAMES *names, int af, const char *text)
{
    unsigned char addr[16];
    int len = af == AF_INET ? 4 : 16;
    if (inet_pton(af, text, addr) != 1)
        abort();
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type == GEN_IPADD && ASN1_STRING_length(gn->d.iPAddress) == len &&
            memcmp(ASN1_STRING_get0_data(gn->d.iPAddress), addr, (size_t)len) == 0)
            return true;
    }
    return false;
}

static int ext_critical(X509 *x, int nid)
{
    int idx = X509_get_ext_by_NID(x, nid, -1);
    return idx < 0 ? -1 : X509_EXTENSION_get_critical(X509_get_ext(x, idx));
}

static void test_mint_server_shape(void)
{
    struct zt_tls_cert *c = mint_server(ca);
    X509 *leaf = c->leaf;
    char cn[128] = "";
    int crit = -1;

    CHECK(X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn)) >
          0);
    CHECK_EQ_STR(cn, "istiod.test");
    CHECK_EQ_INT(X509_get_version(leaf), X509_VERSION_3);
    CHECK_EQ_INT(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(fx.ca)), 0);

    GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
    CHECK(names != NULL);
    bool ok = sk_GENERAL_NAME_num(names) == 3 && has_dns(names, "istiod.test") &&
              has_ip(names, AF_INET, "127.0.0.1") && has_ip(names, AF_INET6, "::1") &&
              !has_dns(names, "127.0.0.1");
    GENERAL_NAMES_free(names);
    CHECK(ok);
    /* The subject names the server, so the SAN need not be critical. */
    CHECK_EQ_INT(crit, 0);

    /* X509_check_purpose caches the extension flags read below. */
    CHECK_EQ_INT(X509_check_purpose(leaf, -1, 0), 1);
    CHECK_EQ_INT(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER);
    CHECK_EQ_INT(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    CHECK_EQ_INT(ext_critical(leaf, NID_key_usage), 1);
    CHECK_EQ_INT(ext_critical(leaf, NID_basic_constraints), 1);
    CHECK_EQ_INT(ext_critical(leaf, NID_ext_key_usage), 0);
    CHECK_EQ_INT(X509_check_ca(leaf), 0);

    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(leaf);
    CHECK(akid != NULL);
    CHECK_EQ_INT(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(fx.ca)), 0);
    CHECK_EQ_INT(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
    CHECK_EQ_INT(EVP_PKEY_get_base_id(c->key), EVP_PKEY_EC);
    /* 128 random bits: at most 16 bytes (17 with a sign byte), rarely short. */
    const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
    CHECK(ASN1_STRING_length(serial) >= 8 && ASN1_STRING_length(serial) <= 17);

    /* Back-dated by 60 s (ttl 600 / 10). */
    CHECK_EQ_INT(c->not_after - c->not_before, 600 + 60);
    /* Intermediate sent, root kept for trust only; no SPIFFE identity. */
    CHECK_EQ_INT(sk_X509_num(c->intermediates), 1);
    CHECK_EQ_INT(X509_cmp(sk_X509_value(c->intermediates, 0), fx.ca), 0);
    CHECK_EQ_INT(sk_X509_num(c->roots), 1);
    CHECK_EQ_INT(X509_cmp(sk_X509_value(c->roots, 0), fx.root), 0);
    CHECK_EQ_STR(c->id.trust_domain, "");
    CHECK_EQ_INT(X509_check_host(leaf, "istiod.test", 0, 0, NULL), 1);
    CHECK_EQ_INT(X509_check_ip_asc(leaf, "::1", 0), 1);
    zt_tls_cert_unref(c);
}

static void test_mint_server_inputs(void)
{
    struct zt_tls_cert *c = NULL;
    char cn[128] = "";
    int crit = -1;

    /* No names at all. */
    CHECK_EQ_INT(zt_tls_localca_mint_server(ca, NULL, 0, NULL, 0, 600, &c), ZT_E_CONFIG);
    CHECK(c == NULL);
    /* Lifetimes. */
    CHECK_EQ_INT(zt_tls_localca_mint_server(ca, test_dns, 1, NULL, 0, 0, &c), ZT_E_CONFIG);
    CHECK_EQ_INT(
        zt_tls_localca_mint_server(ca, test_dns, 1, NULL, 0, ZT_TLS_LOCALCA_TTL_MAX + 1, &c),
        ZT_E_CONFIG);

    static const char *const bad_ips[] = {"1.2.3", "127.0.0.1.5", "fe80::1%eth0",
                                          "::g",   "istiod.test", ""};
    for (size_t i = 0; i < sizeof(bad_ips) / sizeof(bad_ips[0]); i++) {
        CHECK_EQ_INT(zt_tls_localca_mint_server(ca, test_dns, 1, &bad_ips[i], 1, 600, &c),
                     ZT_E_CONFIG);
        CHECK(c == NULL);
    }
    static const char *const bad_dns[] = {"",     "bad name", "a..b", ".a",    "a.",
                                          "a*.b", "10.0.0.1", "x/y",  "é.test"};
    for (size_t i = 0; i < sizeof(bad_dns) / sizeof(bad_dns[0]); i++) {
        CHECK_EQ_INT(zt_tls_localca_mint_server(ca, &bad_dns[i], 1, NULL, 0, 600, &c), ZT_E_CONFIG);
        CHECK(c == NULL);
    }
    char label64[80];
    memset(label64, 'a', 64);
    strcpy(label64 + 64, ".test");
    const char *const too_long_label[] = {label64};
    CHECK_EQ_INT(zt_tls_localca_mint_server(ca, too_long_label, 1, NULL, 0, 600, &c), ZT_E_CONFIG);

    /* Over the name cap. */
    const char *many[ZT_TLS_LOCALCA_SERVER_NAMES_MAX + 1];
    for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
        many[i] = "x.test";
    CHECK_EQ_INT(
        zt_tls_localca_mint_server(ca, many, ZT_TLS_LOCALCA_SERVER_NAMES_MAX, many, 1, 600, &c),
        ZT_E_TOO_BIG);

    /* IP only: the CN is the first address. */
    CHECK_EQ_INT(zt_tls_localca_mint_server(ca, NULL, 0, &test_ips[1], 1, 600, &c), 0);
    CHECK(X509_NAME_get_text_by_NID(X509_get_subject_name(c->leaf), NID_commonName, cn,
                                    sizeof(cn)) > 0);
    CHECK_EQ_STR(cn, "::1");
    zt_tls_cert_unref(c);
    c = NULL;

    /* A first name too long for a CN: empty subject, critical SAN. A
     * wildcard name is accepted. */
    char long_name[120];
    memset(long_name, 'b', 60);
    strcpy(long_name + 60, ".istio-system.svc.cluster.local");
    const char *const names[] = {long_name, "*.istio-system.svc"};
    CHECK_EQ_INT(zt_tls_localca_mint_server(ca, names, 2, NULL, 0, 600, &c), 0);
    CHECK_EQ_INT(X509_NAME_entry_count(X509_get_subject_name(c->leaf)), 0);
    GENERAL_NAMES *san = X509_get_ext_d2i(c->leaf, NID_subject_alt_name, &crit, NULL);
    bool ok = san != NULL && has_dns(san, long_name) && has_dns(san, "*.istio-system.svc");
    GENERAL_NAMES_free(san);
    CHECK(ok);
    CHECK_EQ_INT(crit, 1);
    CHECK_EQ_INT(X509_check_host(c->leaf, "istiod.istio-system.svc", 0, 0, NULL), 1);
    zt_tls_cert_unref(c);
}

/* ---- handshakes ---- */

static void check_good_handshake(struct fx_conn *conn)
{
    CHECK_EQ_INT(conn->c_res, FX_HS_DONE);
    CHECK_EQ_INT(conn->s_res, FX_HS_DONE);
    CHECK_EQ_INT(SSL_get_verify_result(conn->c), X509_V_OK);
    CHECK(zt_tls_alpn_is_h2(conn->c));
    CHECK(zt_tls_alpn_is_h2(conn->s));
    /* Leaf plus intermediate went out, never the root. */
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(conn->c);
    CHECK(sent != NULL);
    CHECK_EQ_INT(sk_X509_num(sent), 2);
    for (int i = 0; i < sk_X509_num(sent); i++)
        CHECK(X509_cmp(sk_X509_value(sent, i), fx.root) != 0);
    /* The server did not ask for (so did not get) the certificate the
     * client was ready to send. */
    CHECK(SSL_get0_peer_certificate(conn->s) == NULL);
    CHECK(!SSL_session_reused(conn->c));
}

static void test_handshake_hosts(void)
{
    static const char *const good[] = {"istiod.test", "127.0.0.1", "::1"};
    struct zt_tls_cert *sc = mint_server(ca);
    struct zt_spiffe_id wid;
    if (zt_spiffe_make("cluster.local", "ns", "sa", &wid) != 0)
        abort();
    struct zt_tls_cert *wc = NULL;
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &wid, 600, &wc), 0);
    struct fx_conn conn;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        reset_client_opts();
        want_host = good[i];
        client_cert = wc;
        run(sc, root_file, &conn);
        check_good_handshake(&conn);
        if (zt_test_cur_failed) {
            fprintf(stderr, "  (host %s)\n", good[i]);
            break;
        }
        CHECK_EQ_INT(SSL_version(conn.c), TLS1_3_VERSION);
        /* No ticket arrived, so there is nothing to resume with. */
        CHECK(!SSL_SESSION_is_resumable(SSL_get0_session(conn.c)));
        fx_conn_free(&conn);
    }
    if (zt_test_cur_failed) {
        fx_conn_free(&conn);
        goto out;
    }

    /* Names the certificate does not carry. */
    static const struct {
        const char *host;
        long verr;
    } bad[] = {{"other.test", X509_V_ERR_HOSTNAME_MISMATCH},
               {"127.0.0.2", X509_V_ERR_IP_ADDRESS_MISMATCH},
               {"::2", X509_V_ERR_IP_ADDRESS_MISMATCH}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reset_client_opts();
        want_host = bad[i].host;
        run(sc, root_file, &conn);
        long verr = SSL_get_verify_result(conn.c);
        int c_res = conn.c_res;
        fx_conn_free(&conn);
        CHECK_EQ_INT(c_res, FX_HS_FAILED);
        CHECK_EQ_INT(verr, bad[i].verr);
    }

    /* A server certificate from a CA the client does not trust. */
    struct zt_tls_cert *foreign = mint_server(ca_other);
    reset_client_opts();
    want_host = "istiod.test";
    run(foreign, root_file, &conn);
    long verr = SSL_get_verify_result(conn.c);
    int c_res = conn.c_res;
    fx_conn_free(&conn);
    zt_tls_cert_unref(foreign);
    CHECK_EQ_INT(c_res, FX_HS_FAILED);
    CHECK(verr != X509_V_OK);
out:
    zt_tls_cert_unref(sc);
    zt_tls_cert_unref(wc);
}

static void test_alpn_required(void)
{
    struct zt_tls_cert *sc = mint_server(ca);
    struct fx_conn conn;
    int res[2][3];

    for (int mode = 1; mode <= 2; mode++) {
        reset_client_opts();
        want_host = "istiod.test";
        alpn_mode = mode;
        run(sc, root_file, &conn);
        res[mode - 1][0] = conn.c_res;
        res[mode - 1][1] = conn.s_res;
        res[mode - 1][2] = client_alert_got;
        fx_conn_free(&conn);
    }
    zt_tls_cert_unref(sc);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(res[i][0], FX_HS_FAILED);
        CHECK_EQ_INT(res[i][1], FX_HS_FAILED);
        CHECK_EQ_INT(res[i][2], SSL_AD_NO_APPLICATION_PROTOCOL);
    }
}

static void test_tls12_client(void)
{
    struct zt_tls_cert *sc = mint_server(ca);
    struct fx_conn conn;
    reset_client_opts();
    want_host = "127.0.0.1";
    client_tls12_only = true;
    run(sc, root_file, &conn);
    check_good_handshake(&conn);
    if (!zt_test_cur_failed) {
        CHECK_EQ_INT(SSL_version(conn.c), TLS1_2_VERSION);
        const char *cipher = SSL_get_cipher_name(conn.c);
        CHECK(strncmp(cipher, "ECDHE-ECDSA-", 12) == 0);
        CHECK(strstr(cipher, "GCM") != NULL || strstr(cipher, "CHACHA20") != NULL);
        /* No ticket and no cached session to resume. */
        CHECK(!SSL_SESSION_has_ticket(SSL_get0_session(conn.c)));
    }
    fx_conn_free(&conn);
    zt_tls_cert_unref(sc);
}

static void test_ctx_holds_reference(void)
{
    struct zt_tls_cert *sc = mint_server(ca);
    char err[128] = "";
    CHECK_EQ_INT(atomic_load(&sc->refs), 1);
    SSL_CTX *s = zt_tls_control_server_ctx_new(sc, err, sizeof(err));
    CHECK(s != NULL);
    CHECK(zt_tls_ctx_cert(s) == sc);
    CHECK_EQ_INT(atomic_load(&sc->refs), 2);
    CHECK_EQ_INT(SSL_CTX_get_num_tickets(s), 0);
    CHECK(SSL_CTX_get_session_cache_mode(s) == SSL_SESS_CACHE_OFF);
    CHECK_EQ_INT(SSL_CTX_get_verify_mode(s), SSL_VERIFY_NONE);
    CHECK_EQ_INT(SSL_CTX_get_min_proto_version(s), TLS1_2_VERSION);
    SSL_CTX_free(s);
    CHECK_EQ_INT(atomic_load(&sc->refs), 1);
    zt_tls_cert_unref(sc);
}

/* ---- loading from files ---- */

static const char *tmp_path(const char *name)
{
    static char path[4][160];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof(path[0]), "%s/%s", tmpdir, name);
    return p;
}

static bool write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static bool write_chain(const char *path, X509 *leaf, X509 *a, X509 *b)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    bool ok = PEM_write_X509(f, leaf) && (a == NULL || PEM_write_X509(f, a)) &&
              (b == NULL || PEM_write_X509(f, b));
    return fclose(f) == 0 && ok;
}

static bool write_pkey(const char *path, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    bool ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    return fclose(f) == 0 && ok;
}

static bool contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

static void test_load_files_roundtrip(void)
{
    struct zt_tls_cert *minted = mint_server(ca), *loaded = NULL;
    const char *cert_file = tmp_path("tls.crt"), *key_file = tmp_path("tls.key");
    char err[512] = "";
    char *pem = NULL;
    size_t len = 0;

    /* What zt_tls_cert_chain_pem writes (leaf, intermediate) reads back. */
    CHECK_EQ_INT(zt_tls_cert_chain_pem(minted, &pem, &len), 0);
    bool wrote = write_text(cert_file, pem) && write_pkey(key_file, minted->key);
    free(pem);
    CHECK(wrote);
    CHECK_EQ_INT(zt_tls_cert_load_files(cert_file, key_file, &loaded, err, sizeof(err)), 0);
    CHECK_EQ_STR(err, "ok");
    CHECK_EQ_INT(X509_cmp(loaded->leaf, minted->leaf), 0);
    CHECK_EQ_INT(sk_X509_num(loaded->intermediates), 1);
    CHECK_EQ_INT(X509_cmp(sk_X509_value(loaded->intermediates, 0), fx.ca), 0);
    CHECK_EQ_INT(sk_X509_num(loaded->roots), 0);
    CHECK_EQ_INT(EVP_PKEY_eq(loaded->key, minted->key), 1);
    CHECK_EQ_INT(loaded->not_after, minted->not_after);

    struct fx_conn conn;
    reset_client_opts();
    want_host = "istiod.test";
    run(loaded, root_file, &conn);
    check_good_handshake(&conn);
    fx_conn_free(&conn);
    zt_tls_cert_unref(loaded);
    loaded = NULL;

    /* A root at the end of the file is kept aside, not sent. */
    CHECK(write_chain(cert_file, minted->leaf, fx.ca, fx.root));
    CHECK_EQ_INT(zt_tls_cert_load_files(cert_file, key_file, &loaded, err, sizeof(err)), 0);
    CHECK_EQ_INT(sk_X509_num(loaded->intermediates), 1);
    CHECK_EQ_INT(sk_X509_num(loaded->roots), 1);
    CHECK_EQ_INT(X509_cmp(sk_X509_value(loaded->roots, 0), fx.root), 0);
    run(loaded, root_file, &conn);
    check_good_handshake(&conn);
    fx_conn_free(&conn);
    zt_tls_cert_unref(loaded);
    zt_tls_cert_unref(minted);
    unlink(cert_file);
    unlink(key_file);
}

/* A certificate from elsewhere: an RSA key, names only in the SAN. TLS 1.2
 * then needs the ECDHE-RSA suites. */
static void test_load_files_rsa(void)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    X509 *leaf =
        fx_cert(NULL, k, fx.ca, fx.ca_key, false, 600, "critical,DNS:istiod.test,IP:127.0.0.1");
    const char *cert_file = tmp_path("rsa.crt"), *key_file = tmp_path("rsa.key");
    struct zt_tls_cert *loaded = NULL;
    char err[512] = "";
    bool wrote = write_chain(cert_file, leaf, fx.ca, NULL) && write_pkey(key_file, k);
    X509_free(leaf);
    EVP_PKEY_free(k);
    CHECK(wrote);
    CHECK_EQ_INT(zt_tls_cert_load_files(cert_file, key_file, &loaded, err, sizeof(err)), 0);

    struct fx_conn conn;
    reset_client_opts();
    want_host = "127.0.0.1";
    client_tls12_only = true;
    run(loaded, root_file, &conn);
    check_good_handshake(&conn);
    if (!zt_test_cur_failed)
        CHECK(strncmp(SSL_get_cipher_name(conn.c), "ECDHE-RSA-", 10) == 0);
    fx_conn_free(&conn);
    zt_tls_cert_unref(loaded);
    unlink(cert_file);
    unlink(key_file);
}

static void test_load_files_errors(void)
{
    struct zt_tls_cert *a = mint_server(ca), *b = mint_server(ca), *out = NULL;
    const char *cert_file = tmp_path("e.crt"), *key_file = tmp_path("e.key");
    const char *junk = tmp_path("junk.pem"), *missing = tmp_path("missing.pem");
    char err[512] = "";

    CHECK(write_chain(cert_file, a->leaf, fx.ca, NULL));
    CHECK(write_pkey(key_file, b->key));
    CHECK(write_text(junk, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                           "-----END CERTIFICATE-----\n"));

    /* Key of another certificate. */
    CHECK_EQ_INT(zt_tls_cert_load_files(cert_file, key_file, &out, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(out == NULL);
    CHECK(contains(err, key_file));
    CHECK(contains(err, "does not match"));

    CHECK_EQ_INT(zt_tls_cert_load_files(missing, key_file, &out, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, missing));
    CHECK(contains(err, "missing"));
    CHECK_EQ_INT(zt_tls_cert_load_files(cert_file, missing, &out, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, missing));

    CHECK_EQ_INT(zt_tls_cert_load_files(junk, key_file, &out, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, junk));
    CHECK(contains(err, "unparsable PEM certificate"));
    /* A certificate file is not a key. */
    CHECK_EQ_INT(zt_tls_cert_load_files(cert_file, cert_file, &out, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, "unparsable or encrypted PEM private key"));

    /* An encrypted key fails at once (no passphrase prompt). */
    FILE *f = fopen(key_file, "w");
    CHECK(f != NULL);
    bool enc_ok =
        PEM_write_PrivateKey(f, a->key, EVP_aes_128_cbc(), (unsigned char *)"pw", 2, NULL, NULL);
    CHECK(fclose(f) == 0 && enc_ok);
    CHECK(write_chain(cert_file, a->leaf, fx.ca, NULL));
    CHECK_EQ_INT(zt_tls_cert_load_files(cert_file, key_file, &out, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, key_file));
    CHECK(contains(err, "encrypted"));

    /* An expired leaf. */
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *old = fx_cert("istiod.test", k, fx.ca, fx.ca_key, false, -30, "DNS:istiod.test");
    bool wrote = write_chain(cert_file, old, NULL, NULL) && write_pkey(key_file, k);
    X509_free(old);
    EVP_PKEY_free(k);
    CHECK(wrote);
    CHECK_EQ_INT(zt_tls_cert_load_files(cert_file, key_file, &out, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, cert_file));
    CHECK(contains(err, "expired"));

    /* NULL err is allowed. */
    CHECK_EQ_INT(zt_tls_cert_load_files(missing, missing, &out, NULL, 0), ZT_E_CONFIG);
    CHECK(out == NULL);

    zt_tls_cert_unref(a);
    zt_tls_cert_unref(b);
    unlink(cert_file);
    unlink(key_file);
    unlink(junk);
}

/* Removes the temporary directory, including files a failed test left. */
static void tmpdir_remove(void)
{
    static const char *const names[] = {"tls.crt", "tls.key", "rsa.crt", "rsa.key",
                                        "e.crt",   "e.key",   "junk.pem"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unlink(tmp_path(names[i]));
    rmdir(tmpdir);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/zt-tls-srv-XXXXXX");
    if (!fx_ca_make(&fx, true) || !fx_ca_make(&fx_other, true) ||
        zt_tls_localca_load(fx.dir, &ca, NULL, 0) != 0 ||
        zt_tls_localca_load(fx_other.dir, &ca_other, NULL, 0) != 0 || mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "fixture set-up failed\n");
        return 1;
    }
    snprintf(root_file, sizeof(root_file), "%s/root-cert.pem", fx.dir);
    RUN(test_mint_server_shape);
    RUN(test_mint_server_inputs);
    RUN(test_handshake_hosts);
    RUN(test_alpn_required);
    RUN(test_tls12_client);
    RUN(test_ctx_holds_reference);
    RUN(test_load_files_roundtrip);
    RUN(test_load_files_rsa);
    RUN(test_load_files_errors);
    tmpdir_remove();
    zt_tls_localca_free(ca);
    zt_tls_localca_free(ca_other);
    fx_ca_free(&fx);
    fx_ca_free(&fx_other);
    return TEST_REPORT();
}
