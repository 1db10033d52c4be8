#include "test.h"

#include "base/err.h"
#include "tls/cert.h"
#include "tls/csr.h"
#include "tls/ctx.h"
#include "tls/fixture.h"
#include "tls/localca.h"

#include <openssl/x509v3.h>
#include <time.h>

static struct zt_spiffe_id id_of(const char *td, const char *ns, const char *sa)
{
    struct zt_spiffe_id id;
    if (zt_spiffe_make(td, ns, sa, &id) != 0)
        abort();
    return id;
}

static bool contains(const char *hay, const char *needle)
{
    return hay != NULL && strstr(hay, needle) != NULL;
}

static char *req_to_pem(X509_REQ *req)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    if (b == NULL || !PEM_write_bio_X509_REQ(b, req))
        abort();
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static char *x509_to_pem(X509 *a, X509 *b)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    if (bio == NULL || !PEM_write_bio_X509(bio, a) || (b != NULL && !PEM_write_bio_X509(bio, b)))
        abort();
    long n = BIO_get_mem_data(bio, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(bio);
    return s;
}

static X509_REQ *pem_to_req(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509_REQ *req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    BIO_free(b);
    return req;
}

static void add_req_ext(STACK_OF(X509_EXTENSION) * exts, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, NULL, nid, value);
    if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext))
        abort();
}

/* A hand-made CSR: `san` (OpenSSL config syntax, NULL for none) as the
 * requested SubjectAltName, `extra` (may be NULL) a requested
 * basicConstraints value, `cn` (may be NULL) the subject CN. */
static char *make_csr(EVP_PKEY *key, const EVP_MD *md, const char *cn, const char *san,
                      const char *extra)
{
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    if (req == NULL || exts == NULL)
        abort();
    X509_REQ_set_version(req, X509_REQ_VERSION_1);
    if (cn != NULL)
        X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                                   (const unsigned char *)cn, -1, -1, 0);
    X509_REQ_set_pubkey(req, key);
    if (san != NULL)
        add_req_ext(exts, NID_subject_alt_name, san);
    if (extra != NULL)
        add_req_ext(exts, NID_basic_constraints, extra);
    if (sk_X509_EXTENSION_num(exts) > 0)
        X509_REQ_add_extensions(req, exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (X509_REQ_sign(req, key, md) <= 0)
        abort();
    char *pem = req_to_pem(req);
    X509_REQ_free(req);
    return pem;
}

static int parse(const char *pem, struct zt_spiffe_id *id, char *err, size_t errlen)
{
    return zt_tls_csr_parse(pem, strlen(pem), id, NULL, err, errlen);
}

static void test_csr_contents(void)
{
    struct zt_spiffe_id id = id_of("cluster.local", "default", "web"), back;
    EVP_PKEY *key = NULL, *key2 = NULL, *parsed_key = NULL;
    char *pem = NULL, *pkcs8 = NULL, err[256], group[64] = "", uri[256] = "";
    size_t glen = 0, pkcs8_len = 0;

    CHECK_EQ_INT(zt_tls_csr_new(&id, &key, &pem), 0);
    CHECK(key != NULL && pem != NULL);
    CHECK(contains(pem, "-----BEGIN CERTIFICATE REQUEST-----"));
    X509_REQ *req = pem_to_req(pem);
    CHECK(req != NULL);

    CHECK_EQ_INT(X509_REQ_get_version(req), X509_REQ_VERSION_1);
    CHECK_EQ_INT(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    CHECK(EVP_PKEY_eq(pub, key) == 1);
    CHECK_EQ_INT(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
    CHECK(EVP_PKEY_get_group_name(pub, group, sizeof(group), &glen) == 1);
    CHECK_EQ_STR(group, "prime256v1");
    CHECK_EQ_INT(X509_REQ_get_signature_nid(req), NID_ecdsa_with_SHA256);
    CHECK_EQ_INT(X509_REQ_verify(req, pub), 1);

    /* One extension request, one extension: a critical SAN, one URI. */
    CHECK_EQ_INT(X509_REQ_get_attr_count(req), 1);
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    int n_ext = sk_X509_EXTENSION_num(exts);
    X509_EXTENSION *ext = n_ext > 0 ? sk_X509_EXTENSION_value(exts, 0) : NULL;
    int nid = ext != NULL ? OBJ_obj2nid(X509_EXTENSION_get_object(ext)) : NID_undef;
    int crit = ext != NULL ? X509_EXTENSION_get_critical(ext) : -1;
    GENERAL_NAMES *names = ext != NULL ? X509V3_EXT_d2i(ext) : NULL;
    int n_names = sk_GENERAL_NAME_num(names);
    const GENERAL_NAME *gn = n_names > 0 ? sk_GENERAL_NAME_value(names, 0) : NULL;
    bool is_uri = gn != NULL && gn->type == GEN_URI;
    if (is_uri)
        snprintf(uri, sizeof(uri), "%.*s", ASN1_STRING_length(gn->d.uniformResourceIdentifier),
                 ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier));
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    CHECK_EQ_INT(n_ext, 1);
    CHECK_EQ_INT(nid, NID_subject_alt_name);
    CHECK_EQ_INT(crit, 1);
    CHECK_EQ_INT(n_names, 1);
    CHECK(is_uri);
    CHECK_EQ_STR(uri, "spiffe://cluster.local/ns/default/sa/web");

    /* Our own server side accepts it and hands back the same key. */
    CHECK_EQ_INT(zt_tls_csr_parse(pem, strlen(pem), &back, &parsed_key, err, sizeof(err)), 0);
    bool same_key = EVP_PKEY_eq(parsed_key, key) == 1;
    EVP_PKEY_free(parsed_key);
    CHECK(same_key);
    CHECK(zt_spiffe_eq(&back, &id));

    /* PKCS#8 PEM of the key reads back as the same key. */
    CHECK_EQ_INT(zt_tls_key_to_pkcs8_pem(key, &pkcs8, &pkcs8_len), 0);
    CHECK_EQ_INT(pkcs8_len, strlen(pkcs8));
    CHECK(strncmp(pkcs8, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    BIO *b = BIO_new_mem_buf(pkcs8, -1);
    key2 = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    bool pk_same = key2 != NULL && EVP_PKEY_eq(key2, key) == 1;
    EVP_PKEY_free(key2);
    OPENSSL_cleanse(pkcs8, pkcs8_len);
    free(pkcs8);
    CHECK(pk_same);

    /* Two CSRs never share a key. */
    EVP_PKEY *k3 = NULL;
    char *pem3 = NULL;
    CHECK_EQ_INT(zt_tls_csr_new(&id, &k3, &pem3), 0);
    bool differ = EVP_PKEY_eq(k3, key) != 1;
    EVP_PKEY_free(k3);
    free(pem3);
    CHECK(differ);

    /* A bad id is refused without output. */
    struct zt_spiffe_id bad = id;
    bad.ns[0] = '\0';
    EVP_PKEY *k4 = (EVP_PKEY *)1;
    char *pem4 = (char *)1;
    CHECK_EQ_INT(zt_tls_csr_new(&bad, &k4, &pem4), ZT_E_IDENTITY);
    CHECK(k4 == NULL && pem4 == NULL);

    EVP_PKEY_free(key);
    free(pem);
}

/* The openssl CLI's reading of our CSR, when the tool is installed. */
static void test_csr_openssl_cli(void)
{
    struct zt_spiffe_id id = id_of("example.org", "prod", "api");
    EVP_PKEY *key = NULL;
    char *pem = NULL, path[] = "/tmp/zt-csr-XXXXXX", cmd[512], out[8192] = "";
    size_t got = 0;

    if (system("command -v openssl >/dev/null 2>&1") != 0) {
        SKIP("openssl CLI not installed");
    }
    CHECK_EQ_INT(zt_tls_csr_new(&id, &key, &pem), 0);
    EVP_PKEY_free(key);
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    bool wrote = write(fd, pem, strlen(pem)) == (ssize_t)strlen(pem);
    close(fd);
    free(pem);
    CHECK(wrote);
    snprintf(cmd, sizeof(cmd), "openssl req -noout -text -verify -in %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    size_t r;
    while (got < sizeof(out) - 1 && (r = fread(out + got, 1, sizeof(out) - 1 - got, p)) > 0)
        got += r;
    out[got] = '\0';
    int status = pclose(p);
    unlink(path);
    CHECK_EQ_INT(status, 0);
    CHECK(contains(out, "verify OK"));
    CHECK(contains(out, "X509v3 Subject Alternative Name: critical"));
    CHECK(contains(out, "URI:spiffe://example.org/ns/prod/sa/api"));
    CHECK(contains(out, "ecdsa-with-SHA256"));
    CHECK(contains(out, "prime256v1") || contains(out, "P-256"));
    /* No subject attribute at all. */
    CHECK(!contains(out, "CN ="));
    CHECK(!contains(out, "CN="));
}

static void test_parse_accepts(void)
{
    struct zt_spiffe_id id;
    char err[256];
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    CHECK(p384 != NULL && rsa != NULL);
    /* P-384, SHA-384, non-critical SAN, a subject: all fine. */
    char *a = make_csr(p384, EVP_sha384(), "whoever", "URI:spiffe://td/ns/a/sa/b", NULL);
    char *b = make_csr(rsa, EVP_sha256(), NULL, "critical,URI:spiffe://td/ns/c/sa/d", NULL);
    int ra = parse(a, &id, err, sizeof(err));
    bool ida = strcmp(id.ns, "a") == 0 && strcmp(id.sa, "b") == 0;
    int rb = parse(b, &id, err, sizeof(err));
    bool idb = strcmp(id.ns, "c") == 0 && strcmp(id.sa, "d") == 0;
    free(a);
    free(b);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(rsa);
    CHECK_EQ_INT(ra, 0);
    CHECK(ida);
    CHECK_EQ_INT(rb, 0);
    CHECK(idb);
    CHECK_EQ_STR(err, "ok");
}

/* Flips one byte of the signed part of a CSR: a character of its SAN URI,
 * so the request still parses and names a valid SPIFFE id. */
static char *tamper(const char *pem)
{
    X509_REQ *req = pem_to_req(pem);
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    X509_REQ_free(req);
    if (len <= 0)
        abort();
    unsigned char *hit = memmem(der, (size_t)len, "sa/web", 6);
    if (hit == NULL)
        abort();
    hit[3] = 'x'; /* sa/web -> sa/xeb */
    const unsigned char *p = der;
    X509_REQ *bad = d2i_X509_REQ(NULL, &p, len);
    OPENSSL_free(der);
    if (bad == NULL)
        abort();
    char *out = req_to_pem(bad);
    X509_REQ_free(bad);
    return out;
}

static void test_parse_rejects(void)
{
    struct zt_spiffe_id id, web = id_of("cluster.local", "default", "web");
    char err[256];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    CHECK(k != NULL);

    /* Garbage and damaged PEM. */
    CHECK_EQ_INT(parse("hello", &id, err, sizeof(err)), ZT_E_PROTO);
    CHECK(contains(err, "not a PEM"));
    CHECK_EQ_INT(parse("-----BEGIN CERTIFICATE REQUEST-----\n!!!\n"
                       "-----END CERTIFICATE REQUEST-----\n",
                       &id, err, sizeof(err)),
                 ZT_E_PROTO);
    CHECK_EQ_INT(parse("", &id, err, sizeof(err)), ZT_E_PROTO);

    /* Over the cap, whatever the content. */
    char *big = malloc(ZT_TLS_CSR_PEM_MAX + 2);
    CHECK(big != NULL);
    memset(big, 'A', ZT_TLS_CSR_PEM_MAX + 1);
    big[ZT_TLS_CSR_PEM_MAX + 1] = '\0';
    int rbig = zt_tls_csr_parse(big, ZT_TLS_CSR_PEM_MAX + 1, &id, NULL, err, sizeof(err));
    free(big);
    CHECK_EQ_INT(rbig, ZT_E_TOO_BIG);

    /* A byte changed after signing. */
    EVP_PKEY *wk = NULL;
    char *good = NULL;
    CHECK_EQ_INT(zt_tls_csr_new(&web, &wk, &good), 0);
    EVP_PKEY_free(wk);
    char *bad = tamper(good);
    free(good);
    EVP_PKEY *kout = (EVP_PKEY *)1;
    int rbad = zt_tls_csr_parse(bad, strlen(bad), &id, &kout, err, sizeof(err));
    free(bad);
    CHECK_EQ_INT(rbad, ZT_E_PROTO);
    CHECK(contains(err, "signature"));
    CHECK(kout == NULL);
    CHECK_EQ_STR(id.trust_domain, "");

    /* SAN shapes. */
    static const struct {
        const char *san;
        int want;
        const char *msg;
    } cases[] = {
        {"critical,URI:spiffe://td/ns/a/sa/b,URI:spiffe://td/ns/a/sa/c", ZT_E_IDENTITY, "2 names"},
        {"critical,DNS:web.default.svc", ZT_E_IDENTITY, "not a URI"},
        {"critical,URI:spiffe://td/ns/a/sa/b,DNS:x.example", ZT_E_IDENTITY, "2 names"},
        {"critical,URI:https://example.com/x", ZT_E_IDENTITY, "not a SPIFFE"},
        {"critical,URI:spiffe://td/ns/a/sa/b/c", ZT_E_IDENTITY, "not a SPIFFE"},
        {NULL, ZT_E_IDENTITY, "no SubjectAltName"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *pem = make_csr(k, EVP_sha256(), NULL, cases[i].san, NULL);
        int rc = parse(pem, &id, err, sizeof(err));
        free(pem);
        if (rc != cases[i].want || !contains(err, cases[i].msg))
            fprintf(stderr, "  case %zu: rc %d err '%s'\n", i, rc, err);
        CHECK_EQ_INT(rc, cases[i].want);
        CHECK(contains(err, cases[i].msg));
    }
    /* Extensions requested, but no SAN among them. */
    char *nosan = make_csr(k, EVP_sha256(), "web", NULL, "critical,CA:FALSE");
    int rnosan = parse(nosan, &id, err, sizeof(err));
    free(nosan);
    CHECK_EQ_INT(rnosan, ZT_E_IDENTITY);

    /* Two SubjectAltName extensions in one request. */
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    add_req_ext(exts, NID_subject_alt_name, "critical,URI:spiffe://td/ns/a/sa/b");
    add_req_ext(exts, NID_subject_alt_name, "URI:spiffe://td/ns/a/sa/c");
    X509_REQ_set_pubkey(req, k);
    X509_REQ_add_extensions(req, exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_sign(req, k, EVP_sha256());
    char *two = req_to_pem(req);
    X509_REQ_free(req);
    int rtwo = parse(two, &id, err, sizeof(err));
    free(two);
    CHECK_EQ_INT(rtwo, ZT_E_IDENTITY);
    CHECK(contains(err, "several SubjectAltName"));

    /* Keys and digests. */
    EVP_PKEY *rsa1024 = EVP_RSA_gen(1024);
    EVP_PKEY *p521 = EVP_EC_gen("P-521");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    CHECK(rsa1024 != NULL && p521 != NULL && ed != NULL);
    const char *san = "critical,URI:spiffe://td/ns/a/sa/b";
    char *c1 = make_csr(rsa1024, EVP_sha256(), NULL, san, NULL);
    char *c2 = make_csr(p521, EVP_sha256(), NULL, san, NULL);
    char *c3 = make_csr(ed, NULL, NULL, san, NULL);
    char *c4 = make_csr(k, EVP_sha1(), NULL, san, NULL);
    char e1[256], e2[256], e3[256], e4[256];
    int r1 = parse(c1, &id, e1, sizeof(e1));
    int r2 = parse(c2, &id, e2, sizeof(e2));
    int r3 = parse(c3, &id, e3, sizeof(e3));
    int r4 = parse(c4, &id, e4, sizeof(e4));
    free(c1);
    free(c2);
    free(c3);
    free(c4);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(p521);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(k);
    CHECK_EQ_INT(r1, ZT_E_PROTO);
    CHECK(contains(e1, "1024 bits"));
    CHECK_EQ_INT(r2, ZT_E_PROTO);
    CHECK(contains(e2, "curve"));
    CHECK_EQ_INT(r3, ZT_E_PROTO);
    CHECK(contains(e3, "not EC or RSA"));
    CHECK_EQ_INT(r4, ZT_E_PROTO);
    CHECK(contains(e4, "SHA-2"));
}

/* Two extensionRequest attributes, one SAN each. OpenSSL refuses to add a
 * duplicate attribute, so the second goes in as challengePassword, whose
 * OID differs from extensionRequest's only in the last byte (9.7 vs 9.14),
 * and the DER is patched and signed again. */
static void test_extension_request_twice(void)
{
    static const unsigned char challenge_oid[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                                  0xf7, 0x0d, 0x01, 0x09, 0x07};
    struct zt_spiffe_id id;
    char err[256];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *a = sk_X509_EXTENSION_new_null();
    STACK_OF(X509_EXTENSION) *b = sk_X509_EXTENSION_new_null();
    add_req_ext(a, NID_subject_alt_name, "critical,URI:spiffe://td/ns/a/sa/b");
    add_req_ext(b, NID_subject_alt_name, "critical,URI:spiffe://td/ns/a/sa/c");
    X509_REQ_set_pubkey(req, k);
    X509_REQ_add_extensions(req, a);
    unsigned char *der = NULL;
    int der_len = ASN1_item_i2d((ASN1_VALUE *)b, &der, ASN1_ITEM_rptr(X509_EXTENSIONS));
    if (der_len <= 0 ||
        !X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword, V_ASN1_SEQUENCE, der, der_len))
        abort();
    OPENSSL_free(der);
    sk_X509_EXTENSION_pop_free(a, X509_EXTENSION_free);
    sk_X509_EXTENSION_pop_free(b, X509_EXTENSION_free);
    X509_REQ_sign(req, k, EVP_sha256());

    der = NULL;
    der_len = i2d_X509_REQ(req, &der);
    X509_REQ_free(req);
    unsigned char *oid = memmem(der, (size_t)der_len, challenge_oid, sizeof(challenge_oid));
    if (oid == NULL)
        abort();
    oid[sizeof(challenge_oid) - 1] = 0x0e;
    const unsigned char *p = der;
    req = d2i_X509_REQ(NULL, &p, der_len);
    OPENSSL_free(der);
    CHECK(req != NULL);
    X509_REQ_sign(req, k, EVP_sha256());
    int n_ext_attr = 0;
    for (int i = -1; (i = X509_REQ_get_attr_by_NID(req, NID_ext_req, i)) >= 0;)
        n_ext_attr++;
    char *pem = req_to_pem(req);
    X509_REQ_free(req);
    EVP_PKEY_free(k);
    int rc = parse(pem, &id, err, sizeof(err));
    free(pem);
    CHECK_EQ_INT(n_ext_attr, 2);
    CHECK_EQ_INT(rc, ZT_E_PROTO);
    CHECK(contains(err, "several extension requests"));
}

static bool leaf_has_one_critical_uri(X509 *x, const char *want)
{
    int idx = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
    if (idx < 0 || X509_get_ext_by_NID(x, NID_subject_alt_name, idx) >= 0 ||
        X509_EXTENSION_get_critical(X509_get_ext(x, idx)) != 1)
        return false;
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool ok = sk_GENERAL_NAME_num(names) == 1;
    if (ok) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, 0);
        ok =
            gn->type == GEN_URI &&
            ASN1_STRING_length(gn->d.uniformResourceIdentifier) == (int)strlen(want) &&
            memcmp(ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier), want, strlen(want)) == 0;
    }
    GENERAL_NAMES_free(names);
    return ok;
}

static void test_sign_roundtrip_and_handshake(void)
{
    struct fx_ca fx;
    struct zt_tls_localca *ca = NULL;
    struct zt_spiffe_id id = id_of("cluster.local", "default", "web");
    struct zt_spiffe_id srv_id = id_of("cluster.local", "istio-system", "ztunnel");
    struct zt_tls_cert *cert = NULL, *server = NULL;
    EVP_PKEY *key = NULL;
    char *csr = NULL, **chain = NULL, err[256];
    size_t n = 0;

    CHECK(fx_ca_make(&fx, true));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_tls_csr_new(&id, &key, &csr), 0);
    time_t now = time(NULL);
    CHECK_EQ_INT(zt_tls_localca_sign_csr(ca, csr, strlen(csr), 3600, &chain, &n, err, sizeof(err)),
                 0);
    CHECK_EQ_STR(err, "ok");

    /* [leaf, intermediate, root bundle]. */
    CHECK_EQ_INT(n, 3);
    char *inter_pem = x509_to_pem(fx.ca, NULL), *root_pem = x509_to_pem(fx.root, NULL);
    bool mid_ok = strcmp(chain[1], inter_pem) == 0, last_ok = strcmp(chain[2], root_pem) == 0;
    free(inter_pem);
    free(root_pem);
    CHECK(mid_ok);
    CHECK(last_ok);

    CHECK_EQ_INT(zt_tls_cert_from_ca_response((const char *const *)chain, n, key, &id, &cert, err,
                                              sizeof(err)),
                 0);
    CHECK(zt_spiffe_eq(&cert->id, &id));
    CHECK_EQ_INT(sk_X509_num(cert->intermediates), 1);
    CHECK_EQ_INT(sk_X509_num(cert->roots), 1);
    /* The leaf carries the CSR's key and a mint-shaped body. */
    X509 *x = cert->leaf;
    CHECK(EVP_PKEY_eq(X509_get0_pubkey(x), key) == 1);
    CHECK_EQ_INT(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    CHECK(leaf_has_one_critical_uri(x, "spiffe://cluster.local/ns/default/sa/web"));
    CHECK_EQ_INT(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    CHECK_EQ_INT(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    CHECK_EQ_INT(X509_check_ca(x), 0);
    CHECK_EQ_INT(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    CHECK_EQ_INT(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(fx.ca)), 0);
    CHECK(cert->not_before >= now - 61 && cert->not_before <= now - 59 + 1);
    CHECK(cert->not_after >= now + 3600 - 1 && cert->not_after <= now + 3600 + 2);

    /* The cert works for mTLS against a minted server cert. */
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &srv_id, 3600, &server), 0);
    SSL_CTX *cctx = zt_tls_client_ctx_new(cert);
    SSL_CTX *sctx = zt_tls_server_ctx_new(server);
    CHECK(cctx != NULL && sctx != NULL);
    struct fx_conn conn;
    fx_handshake(cctx, sctx, NULL, &conn);
    struct zt_spiffe_id peer_at_server, peer_at_client;
    int rs = zt_tls_peer_identity(conn.s, &peer_at_server);
    int rcl = zt_tls_peer_identity(conn.c, &peer_at_client);
    bool done = conn.c_res == FX_HS_DONE && conn.s_res == FX_HS_DONE;
    fx_conn_free(&conn);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    CHECK(done);
    CHECK_EQ_INT(rs, 0);
    CHECK(zt_spiffe_eq(&peer_at_server, &id));
    CHECK_EQ_INT(rcl, 0);
    CHECK(zt_spiffe_eq(&peer_at_client, &srv_id));

    /* Without an expected identity any SPIFFE leaf is taken. */
    struct zt_tls_cert *c2 = NULL;
    CHECK_EQ_INT(zt_tls_cert_from_ca_response((const char *const *)chain, n, key, NULL, &c2, err,
                                              sizeof(err)),
                 0);
    zt_tls_cert_unref(c2);

    zt_tls_pem_list_free(chain, n);
    zt_tls_cert_unref(cert);
    zt_tls_cert_unref(server);
    EVP_PKEY_free(key);
    free(csr);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
}

/* A root signing directly, several roots in the bundle, and the shape
 * Istio's own CA sends with a plugged-in cert-chain.pem: the middle element
 * holds intermediate and root together. */
static void test_response_shapes(void)
{
    struct fx_ca fx, other;
    struct zt_tls_localca *ca = NULL;
    struct zt_spiffe_id id = id_of("cluster.local", "a", "b");
    struct zt_tls_cert *cert = NULL;
    EVP_PKEY *key = NULL;
    char *csr = NULL, **chain = NULL, err[256];
    size_t n = 0;
    int rc;

    CHECK(fx_ca_make(&fx, false));
    CHECK(fx_ca_make(&other, true));
    /* The fixture's roots share a name and a self-signed root has no
     * authority key id, so loading needs the signing root listed first. */
    CHECK(fx_write_certs(fx.dir, "root-cert.pem", fx.root, other.root));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_tls_csr_new(&id, &key, &csr), 0);
    CHECK_EQ_INT(zt_tls_localca_sign_csr(ca, csr, strlen(csr), 600, &chain, &n, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(zt_tls_cert_from_ca_response((const char *const *)chain, n, key, &id, &cert, err,
                                              sizeof(err)),
                 0);
    CHECK_EQ_INT(sk_X509_num(cert->intermediates), 0);
    CHECK_EQ_INT(sk_X509_num(cert->roots), 2);
    zt_tls_cert_unref(cert);
    cert = NULL;
    /* The signing root second in the bundle: found by its key id. */
    char *reversed = x509_to_pem(other.root, fx.root);
    const char *rev[2] = {chain[0], reversed};
    rc = zt_tls_cert_from_ca_response(rev, 2, key, &id, &cert, err, sizeof(err));
    free(reversed);
    CHECK_EQ_INT(rc, 0);
    zt_tls_cert_unref(cert);
    cert = NULL;
    /* Only the other root: refused. */
    char *only_other = x509_to_pem(other.root, NULL);
    const char *oth[2] = {chain[0], only_other};
    rc = zt_tls_cert_from_ca_response(oth, 2, key, &id, &cert, err, sizeof(err));
    free(only_other);
    CHECK_EQ_INT(rc, ZT_E_TLS);
    zt_tls_pem_list_free(chain, n);
    zt_tls_localca_free(ca);
    ca = NULL;
    fx_ca_free(&fx);

    /* Intermediate CA: [leaf, intermediate+root, root]. */
    CHECK(fx_ca_make(&fx, true));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_tls_localca_sign_csr(ca, csr, strlen(csr), 600, &chain, &n, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(n, 3);
    char *both = x509_to_pem(fx.ca, fx.root);
    const char *istio[3] = {chain[0], both, chain[2]};
    rc = zt_tls_cert_from_ca_response(istio, 3, key, &id, &cert, err, sizeof(err));
    free(both);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(sk_X509_num(cert->intermediates), 1);
    CHECK_EQ_INT(X509_cmp(sk_X509_value(cert->intermediates, 0), fx.ca), 0);
    zt_tls_cert_unref(cert);
    cert = NULL;

    /* Leaf and intermediate in element 0 are fine too. */
    char leaf_and_mid[16384];
    snprintf(leaf_and_mid, sizeof(leaf_and_mid), "%s%s", chain[0], chain[1]);
    const char *packed[2] = {leaf_and_mid, chain[2]};
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(packed, 2, key, &id, &cert, err, sizeof(err)), 0);
    CHECK_EQ_INT(sk_X509_num(cert->intermediates), 1);
    zt_tls_cert_unref(cert);

    zt_tls_pem_list_free(chain, n);
    zt_tls_localca_free(ca);
    EVP_PKEY_free(key);
    free(csr);
    fx_ca_free(&fx);
    fx_ca_free(&other);
}

static void test_sign_ttl_and_ignored_fields(void)
{
    struct fx_ca fx;
    struct zt_tls_localca *ca = NULL;
    struct zt_tls_cert *cert = NULL;
    struct zt_spiffe_id id = id_of("cluster.local", "x", "y");
    char **chain = NULL, err[256];
    size_t n = 0;
    EVP_PKEY *k = EVP_EC_gen("P-256");

    CHECK(fx_ca_make(&fx, true));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), 0);
    /* A subject and a CA:TRUE request: neither reaches the leaf. */
    char *csr = make_csr(k, EVP_sha256(), "evil", "URI:spiffe://cluster.local/ns/x/sa/y",
                         "critical,CA:TRUE");
    time_t now = time(NULL);
    CHECK_EQ_INT(zt_tls_localca_sign_csr(ca, csr, strlen(csr), 1, &chain, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_tls_cert_from_ca_response((const char *const *)chain, n, k, &id, &cert, err,
                                              sizeof(err)),
                 0);
    zt_tls_pem_list_free(chain, n);
    chain = NULL;
    X509 *x = cert->leaf;
    CHECK_EQ_INT(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    CHECK_EQ_INT(X509_check_ca(x), 0);
    /* The SAN is made critical even though the request's was not. */
    CHECK(leaf_has_one_critical_uri(x, "spiffe://cluster.local/ns/x/sa/y"));
    /* ttl 1 is raised to the 60 s floor (back-dated by 6 s). */
    CHECK(cert->not_after >= now + 60 - 1 && cert->not_after <= now + 60 + 2);
    CHECK(cert->not_before >= now - 7 && cert->not_before <= now - 5);
    zt_tls_cert_unref(cert);
    cert = NULL;

    /* Far beyond the maximum: capped, then cut at the CA's expiry (1 day). */
    CHECK_EQ_INT(
        zt_tls_localca_sign_csr(ca, csr, strlen(csr), 0xffffffffu, &chain, &n, err, sizeof(err)),
        0);
    CHECK_EQ_INT(zt_tls_cert_from_ca_response((const char *const *)chain, n, k, &id, &cert, err,
                                              sizeof(err)),
                 0);
    zt_tls_pem_list_free(chain, n);
    time_t ca_end;
    CHECK_EQ_INT(zt_tls_asn1_time_to_time(X509_get0_notAfter(fx.ca), &ca_end), 0);
    CHECK_EQ_INT(cert->not_after, ca_end);
    zt_tls_cert_unref(cert);

    /* A rejected CSR yields no chain and the parser's reason. */
    chain = (char **)1;
    n = 7;
    CHECK_EQ_INT(zt_tls_localca_sign_csr(ca, "junk", 4, 600, &chain, &n, err, sizeof(err)),
                 ZT_E_PROTO);
    CHECK(chain == NULL && n == 0);
    CHECK(contains(err, "not a PEM"));
    char *nosan = make_csr(k, EVP_sha256(), "web", "DNS:web.example", NULL);
    CHECK_EQ_INT(
        zt_tls_localca_sign_csr(ca, nosan, strlen(nosan), 600, &chain, &n, err, sizeof(err)),
        ZT_E_IDENTITY);
    free(nosan);

    free(csr);
    EVP_PKEY_free(k);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
}

static void test_response_rejects(void)
{
    struct fx_ca fx, other;
    struct zt_tls_localca *ca = NULL, *ca_other = NULL;
    struct zt_spiffe_id id = id_of("cluster.local", "ns", "asked");
    struct zt_spiffe_id wrong = id_of("cluster.local", "ns", "given");
    struct zt_tls_cert *cert = NULL;
    EVP_PKEY *key = NULL, *key_wrong = NULL;
    char *csr = NULL, *csr_wrong = NULL, **chain = NULL, **chain_wrong = NULL, **chain_other = NULL;
    char err[256];
    size_t n = 0, n_wrong = 0, n_other = 0;

    CHECK(fx_ca_make(&fx, true));
    CHECK(fx_ca_make(&other, true));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_tls_localca_load(other.dir, &ca_other, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_tls_csr_new(&id, &key, &csr), 0);
    CHECK_EQ_INT(zt_tls_csr_new(&wrong, &key_wrong, &csr_wrong), 0);
    CHECK_EQ_INT(zt_tls_localca_sign_csr(ca, csr, strlen(csr), 600, &chain, &n, NULL, 0), 0);
    CHECK_EQ_INT(zt_tls_localca_sign_csr(ca, csr_wrong, strlen(csr_wrong), 600, &chain_wrong,
                                         &n_wrong, NULL, 0),
                 0);
    CHECK_EQ_INT(
        zt_tls_localca_sign_csr(ca_other, csr, strlen(csr), 600, &chain_other, &n_other, NULL, 0),
        0);
    const char *const *c = (const char *const *)chain;

    /* A leaf for another identity than requested. */
    cert = (struct zt_tls_cert *)1;
    CHECK_EQ_INT(zt_tls_cert_from_ca_response((const char *const *)chain_wrong, n_wrong, key_wrong,
                                              &id, &cert, err, sizeof(err)),
                 ZT_E_IDENTITY);
    CHECK(cert == NULL);
    CHECK(contains(err, "spiffe://cluster.local/ns/ns/sa/given") &&
          contains(err, "requested spiffe://cluster.local/ns/ns/sa/asked"));

    /* A leaf for another key. */
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(c, n, key_wrong, &id, &cert, err, sizeof(err)),
                 ZT_E_TLS);
    CHECK(contains(err, "private key"));

    /* Too few elements. */
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(c, 1, key, &id, &cert, err, sizeof(err)), ZT_E_PROTO);
    CHECK(contains(err, "1 element"));
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(c, 0, key, &id, &cert, err, sizeof(err)), ZT_E_PROTO);

    /* Chains that do not verify: foreign roots, a missing intermediate, a
     * leaf of another CA next to our chain. */
    const char *foreign[3] = {chain[0], chain[1], chain_other[2]};
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(foreign, 3, key, &id, &cert, err, sizeof(err)),
                 ZT_E_TLS);
    CHECK(contains(err, "does not verify"));
    const char *no_mid[2] = {chain[0], chain[2]};
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(no_mid, 2, key, &id, &cert, err, sizeof(err)),
                 ZT_E_TLS);
    const char *mixed[3] = {chain_other[0], chain[1], chain[2]};
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(mixed, 3, key, &id, &cert, err, sizeof(err)),
                 ZT_E_TLS);
    /* The other CA's own full answer is fine with the same key. */
    CHECK_EQ_INT(zt_tls_cert_from_ca_response((const char *const *)chain_other, n_other, key, &id,
                                              &cert, err, sizeof(err)),
                 0);
    zt_tls_cert_unref(cert);
    cert = NULL;

    /* Unparsable elements, wherever they are. */
    const char *junk0[3] = {"junk", chain[1], chain[2]};
    const char *junk1[3] = {chain[0], "-----BEGIN CERTIFICATE-----\nAAAA\n", chain[2]};
    const char *junk2[3] = {chain[0], chain[1], ""};
    const char *null1[3] = {chain[0], NULL, chain[2]};
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(junk0, 3, key, &id, &cert, err, sizeof(err)),
                 ZT_E_PROTO);
    CHECK(contains(err, "element 0"));
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(junk1, 3, key, &id, &cert, err, sizeof(err)),
                 ZT_E_PROTO);
    CHECK(contains(err, "element 1"));
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(junk2, 3, key, &id, &cert, err, sizeof(err)),
                 ZT_E_PROTO);
    CHECK(contains(err, "element 2"));
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(null1, 3, key, &id, &cert, err, sizeof(err)),
                 ZT_E_PROTO);

    /* Caps: element count and element size. */
    const char *many[ZT_TLS_CA_RESPONSE_MAX + 1];
    for (size_t i = 0; i < ZT_TLS_CA_RESPONSE_MAX + 1; i++)
        many[i] = chain[1];
    many[0] = chain[0];
    many[ZT_TLS_CA_RESPONSE_MAX] = chain[2];
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(many, ZT_TLS_CA_RESPONSE_MAX, key, &id, &cert, err,
                                              sizeof(err)),
                 ZT_E_TLS); /* 16 elements: within cap, but the last is not a root */
    many[ZT_TLS_CA_RESPONSE_MAX - 1] = chain[2];
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(many, ZT_TLS_CA_RESPONSE_MAX, key, &id, &cert, err,
                                              sizeof(err)),
                 0); /* repeated intermediates collapse to one */
    CHECK_EQ_INT(sk_X509_num(cert->intermediates), 1);
    zt_tls_cert_unref(cert);
    cert = NULL;
    CHECK_EQ_INT(zt_tls_cert_from_ca_response(many, ZT_TLS_CA_RESPONSE_MAX + 1, key, &id, &cert,
                                              err, sizeof(err)),
                 ZT_E_TOO_BIG);
    size_t blen = ZT_TLS_CA_ELEM_MAX + 1 + strlen(chain[2]);
    char *bigroots = malloc(blen + 1);
    CHECK(bigroots != NULL);
    memset(bigroots, '\n', ZT_TLS_CA_ELEM_MAX + 1);
    strcpy(bigroots + ZT_TLS_CA_ELEM_MAX + 1, chain[2]);
    const char *big[3] = {chain[0], chain[1], bigroots};
    int rbig = zt_tls_cert_from_ca_response(big, 3, key, &id, &cert, err, sizeof(err));
    free(bigroots);
    CHECK_EQ_INT(rbig, ZT_E_TOO_BIG);

    /* A verified leaf without a SPIFFE id. */
    X509 *dns_leaf = fx_cert(NULL, key, fx.ca, fx.ca_key, false, 3600, "critical,DNS:web.example");
    char *dns_pem = x509_to_pem(dns_leaf, NULL);
    X509_free(dns_leaf);
    const char *dns[3] = {dns_pem, chain[1], chain[2]};
    int rdns = zt_tls_cert_from_ca_response(dns, 3, key, NULL, &cert, err, sizeof(err));
    free(dns_pem);
    CHECK_EQ_INT(rdns, ZT_E_IDENTITY);
    CHECK(cert == NULL);

    zt_tls_pem_list_free(chain, n);
    zt_tls_pem_list_free(chain_wrong, n_wrong);
    zt_tls_pem_list_free(chain_other, n_other);
    EVP_PKEY_free(key);
    EVP_PKEY_free(key_wrong);
    free(csr);
    free(csr_wrong);
    zt_tls_localca_free(ca);
    zt_tls_localca_free(ca_other);
    fx_ca_free(&fx);
    fx_ca_free(&other);
}

int main(void)
{
    RUN(test_csr_contents);
    RUN(test_csr_openssl_cli);
    RUN(test_parse_accepts);
    RUN(test_parse_rejects);
    RUN(test_extension_request_twice);
    RUN(test_sign_roundtrip_and_handshake);
    RUN(test_response_shapes);
    RUN(test_sign_ttl_and_ignored_fields);
    RUN(test_response_rejects);
    return TEST_REPORT();
}
