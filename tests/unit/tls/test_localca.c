#include "test.h"

#include "base/err.h"
#include "tls/cert.h"
#include "tls/fixture.h"
#include "tls/localca.h"

#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <time.h>

static struct zt_spiffe_id id_of(const char *td, const char *ns, const char *sa)
{
    struct zt_spiffe_id id;
    if (zt_spiffe_make(td, ns, sa, &id) != 0)
        abort();
    return id;
}

static bool chain_verifies(struct zt_tls_cert *cert)
{
    X509_STORE_CTX *sctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(sctx, cert->store, cert->leaf, cert->intermediates);
    X509_STORE_CTX_set_purpose(sctx, X509_PURPOSE_SSL_CLIENT);
    bool ok = X509_verify_cert(sctx) == 1;
    X509_STORE_CTX_free(sctx);
    return ok;
}

static void test_mint_contents(void)
{
    struct fx_ca fx;
    struct zt_tls_localca *ca = NULL;
    struct zt_tls_cert *cert = NULL, *cert2 = NULL;
    char err[256];
    struct zt_spiffe_id id = id_of("cluster.local", "default", "web");
    CHECK(fx_ca_make(&fx, true));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), 0);
    time_t now = time(NULL);
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &id, 86400, &cert), 0);
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &id, 86400, &cert2), 0);

    X509 *x = cert->leaf;
    CHECK_EQ_INT(X509_get_version(x), X509_VERSION_3);
    CHECK_EQ_INT(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    CHECK(zt_spiffe_eq(&cert->id, &id));

    /* Critical SAN with exactly one URI. */
    int idx = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
    CHECK(idx >= 0);
    CHECK_EQ_INT(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    CHECK(names != NULL);
    int n_names = sk_GENERAL_NAME_num(names);
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, 0);
    bool is_uri = gn->type == GEN_URI;
    char uri[256] = "";
    if (is_uri)
        snprintf(uri, sizeof(uri), "%.*s", ASN1_STRING_length(gn->d.uniformResourceIdentifier),
                 ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier));
    GENERAL_NAMES_free(names);
    CHECK_EQ_INT(n_names, 1);
    CHECK(is_uri);
    CHECK_EQ_STR(uri, "spiffe://cluster.local/ns/default/sa/web");

    /* P-256 key matching the leaf. */
    char group[64] = "";
    size_t glen = 0;
    CHECK(EVP_PKEY_get_group_name(cert->key, group, sizeof(group), &glen) == 1);
    CHECK_EQ_STR(group, "prime256v1");
    CHECK_EQ_INT(X509_check_private_key(x, cert->key), 1);
    CHECK_EQ_INT(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);

    /* Lifetimes: back-dated 60 s, ttl ahead, refresh at half-life. */
    CHECK(cert->not_before >= now - 61 && cert->not_before <= now - 59 + 1);
    CHECK(cert->not_after >= now + 86400 - 1 && cert->not_after <= now + 86400 + 2);
    CHECK_EQ_INT(zt_tls_cert_refresh_at(cert),
                 cert->not_before + (cert->not_after - cert->not_before) / 2);

    /* Key usage, EKU, basic constraints, AKI. */
    idx = X509_get_ext_by_NID(x, NID_key_usage, -1);
    CHECK(idx >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, idx)) == 1);
    CHECK_EQ_INT(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    CHECK_EQ_INT(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    idx = X509_get_ext_by_NID(x, NID_basic_constraints, -1);
    CHECK(idx >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, idx)) == 1);
    CHECK_EQ_INT(X509_check_ca(x), 0);
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(fx.ca);
    CHECK(akid != NULL && ski != NULL && ASN1_OCTET_STRING_cmp(akid, ski) == 0);

    /* Random serials, large. */
    BIGNUM *s1 = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    BIGNUM *s2 = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert2->leaf), NULL);
    int cmp = BN_cmp(s1, s2), bits = BN_num_bits(s1);
    BN_free(s1);
    BN_free(s2);
    CHECK(cmp != 0);
    CHECK(bits > 96 && bits <= 128);

    /* Chain: leaf + intermediate (never the root), verifying to the root. */
    CHECK_EQ_INT(sk_X509_num(cert->intermediates), 1);
    CHECK_EQ_INT(X509_cmp(sk_X509_value(cert->intermediates, 0), fx.ca), 0);
    CHECK_EQ_INT(sk_X509_num(cert->roots), 1);
    CHECK(chain_verifies(cert));

    zt_tls_cert_unref(cert);
    zt_tls_cert_unref(cert2);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
}

static void test_mint_short_ttl_and_limits(void)
{
    struct fx_ca fx;
    struct zt_tls_localca *ca = NULL;
    struct zt_tls_cert *cert = NULL;
    struct zt_spiffe_id id = id_of("cluster.local", "a", "b");
    CHECK(fx_ca_make(&fx, true));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, NULL, 0), 0);
    time_t now = time(NULL);
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &id, 4, &cert), 0);
    /* No back-dating for a 4 s lifetime: the half-life stays in the future. */
    CHECK(cert->not_before >= now && cert->not_before <= now + 1);
    CHECK_EQ_INT(cert->not_after - cert->not_before, 4);
    CHECK(zt_tls_cert_refresh_at(cert) >= now + 2);
    zt_tls_cert_unref(cert);
    cert = NULL;
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &id, 0, &cert), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &id, ZT_TLS_LOCALCA_TTL_MAX + 1, &cert), ZT_E_CONFIG);
    CHECK(cert == NULL);
    /* Cut short at the CA's own expiry (one day in the fixture). */
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &id, 7 * 86400, &cert), 0);
    time_t ca_end;
    CHECK_EQ_INT(zt_tls_asn1_time_to_time(X509_get0_notAfter(fx.ca), &ca_end), 0);
    CHECK_EQ_INT(cert->not_after, ca_end);
    zt_tls_cert_unref(cert);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
}

static void test_root_as_signing_ca(void)
{
    struct fx_ca fx;
    struct zt_tls_localca *ca = NULL;
    struct zt_tls_cert *cert = NULL;
    struct zt_spiffe_id id = id_of("cluster.local", "a", "b");
    char err[256];
    CHECK(fx_ca_make(&fx, false));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &id, 600, &cert), 0);
    CHECK_EQ_INT(sk_X509_num(cert->intermediates), 0);
    CHECK(chain_verifies(cert));
    zt_tls_cert_unref(cert);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
}

static void test_several_roots(void)
{
    struct fx_ca fx, other;
    struct zt_tls_localca *ca = NULL;
    CHECK(fx_ca_make(&fx, true));
    CHECK(fx_ca_make(&other, true));
    CHECK(fx_write_certs(fx.dir, "root-cert.pem", other.root, fx.root));
    char err[256];
    int rc = zt_tls_localca_load(fx.dir, &ca, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(sk_X509_num(zt_tls_localca_roots(ca)), 2);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
    fx_ca_free(&other);
}

static bool contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

static void test_load_errors(void)
{
    struct fx_ca fx, other;
    struct zt_tls_localca *ca = NULL;
    char err[512], path[256];
    CHECK(fx_ca_make(&fx, true));
    CHECK(fx_ca_make(&other, true));

    CHECK_EQ_INT(zt_tls_localca_load("/nonexistent-zt", &ca, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(ca == NULL);
    CHECK(contains(err, "ca-cert.pem") && contains(err, "missing"));

    /* Key of another CA. */
    CHECK(fx_write_key(fx.dir, "ca-key.pem", other.ca_key));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, "ca-key.pem") && contains(err, "does not match"));
    CHECK(fx_write_key(fx.dir, "ca-key.pem", fx.ca_key));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), 0);
    zt_tls_localca_free(ca);
    ca = NULL;

    /* Garbage key. */
    snprintf(path, sizeof(path), "%s/ca-key.pem", fx.dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, "ca-key.pem") && contains(err, "unparsable"));
    CHECK(fx_write_key(fx.dir, "ca-key.pem", fx.ca_key));

    /* Missing and unparsable roots. */
    snprintf(path, sizeof(path), "%s/root-cert.pem", fx.dir);
    unlink(path);
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, "root-cert.pem") && contains(err, "missing"));
    f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("hello\n", f);
    fclose(f);
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, "root-cert.pem") && contains(err, "unparsable"));

    /* A root that did not sign the CA. */
    CHECK(fx_write_certs(fx.dir, "root-cert.pem", other.root, NULL));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, "ca-cert.pem") && contains(err, "does not chain"));

    /* A leaf is not a CA. */
    CHECK(fx_write_certs(fx.dir, "root-cert.pem", fx.root, NULL));
    EVP_PKEY *lk = EVP_EC_gen("P-256");
    X509 *leaf =
        fx_cert(NULL, lk, fx.root, fx.root_key, false, 3600, "critical,URI:spiffe://td/ns/a/sa/b");
    bool ok =
        fx_write_certs(fx.dir, "ca-cert.pem", leaf, NULL) && fx_write_key(fx.dir, "ca-key.pem", lk);
    X509_free(leaf);
    EVP_PKEY_free(lk);
    CHECK(ok);
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(contains(err, "ca-cert.pem") && contains(err, "not a CA"));

    fx_ca_free(&fx);
    fx_ca_free(&other);
}

/* Runs the repository's script (tests run from the repository root). */
static void test_gen_cacerts_script(void)
{
    char dir[] = "/tmp/zt-gencacerts-XXXXXX", cmd[512], err[256], path[300];
    struct zt_tls_localca *ca = NULL;
    struct zt_tls_cert *cert = NULL;
    struct stat st1, st2;
    struct zt_spiffe_id id = id_of("cluster.local", "ns1", "sa1");
    CHECK(mkdtemp(dir) != NULL);
    CHECK(access("scripts/gen-cacerts.sh", X_OK) == 0);
    snprintf(cmd, sizeof(cmd), "scripts/gen-cacerts.sh %s >/dev/null", dir);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_EQ_INT(zt_tls_localca_load(dir, &ca, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &id, 3600, &cert), 0);
    /* cert-chain.pem holds intermediate + root; only the intermediate is carried. */
    CHECK_EQ_INT(sk_X509_num(cert->intermediates), 1);
    CHECK(!X509_self_signed(sk_X509_value(cert->intermediates, 0), 0));
    CHECK(chain_verifies(cert));
    zt_tls_cert_unref(cert);
    zt_tls_localca_free(ca);

    /* Idempotent: a second run leaves the key alone; --force replaces it. */
    snprintf(path, sizeof(path), "%s/ca-key.pem", dir);
    CHECK_EQ_INT(stat(path, &st1), 0);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_EQ_INT(stat(path, &st2), 0);
    CHECK_EQ_INT(st1.st_ino, st2.st_ino);
    CHECK_EQ_INT(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);
    snprintf(cmd, sizeof(cmd), "scripts/gen-cacerts.sh --force %s >/dev/null && rm -rf %s", dir,
             dir);
    CHECK_EQ_INT(system(cmd), 0);
}

static void test_cert_from_pem_roundtrip(void)
{
    struct fx_ca fx;
    struct zt_tls_localca *ca = NULL;
    struct zt_tls_cert *cert = NULL, *back = NULL;
    struct zt_spiffe_id id = id_of("cluster.local", "x", "y");
    char *chain = NULL, *key = NULL, *roots = NULL;
    size_t chain_len = 0;
    CHECK(fx_ca_make(&fx, true));
    CHECK_EQ_INT(zt_tls_localca_load(fx.dir, &ca, NULL, 0), 0);
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &id, 600, &cert), 0);
    CHECK_EQ_INT(zt_tls_cert_chain_pem(cert, &chain, &chain_len), 0);
    CHECK_EQ_INT(chain_len, strlen(chain));

    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, cert->key, NULL, NULL, 0, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    key = strndup(data, (size_t)n);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, fx.root);
    n = BIO_get_mem_data(b, &data);
    roots = strndup(data, (size_t)n);
    BIO_free(b);

    int rc = zt_tls_cert_from_pem(chain, chain_len, key, strlen(key), roots, strlen(roots), &back);
    CHECK_EQ_INT(rc, 0);
    CHECK(zt_spiffe_eq(&back->id, &id));
    CHECK_EQ_INT(X509_cmp(back->leaf, cert->leaf), 0);
    CHECK_EQ_INT(sk_X509_num(back->intermediates), 1);
    CHECK_EQ_INT(back->not_after, cert->not_after);
    zt_tls_cert_unref(back);
    back = NULL;

    /* Key of another cert, garbage roots, and oversize input are refused. */
    struct zt_tls_cert *other = NULL;
    CHECK_EQ_INT(zt_tls_localca_mint(ca, &id, 600, &other), 0);
    char *key2 = NULL;
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, other->key, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(b, &data);
    key2 = strndup(data, (size_t)n);
    BIO_free(b);
    zt_tls_cert_unref(other);
    CHECK_EQ_INT(
        zt_tls_cert_from_pem(chain, chain_len, key2, strlen(key2), roots, strlen(roots), &back),
        ZT_E_TLS);
    CHECK_EQ_INT(zt_tls_cert_from_pem(chain, chain_len, key, strlen(key), "junk", 4, &back),
                 ZT_E_TLS);
    CHECK_EQ_INT(zt_tls_cert_from_pem(chain, ZT_TLS_PEM_MAX + 1, key, strlen(key), roots,
                                      strlen(roots), &back),
                 ZT_E_TOO_BIG);
    CHECK(back == NULL);

    free(key2);
    free(chain);
    free(key);
    free(roots);
    zt_tls_cert_unref(cert);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
}

/* Exactly one SPIFFE URI SAN: other schemes and SAN types are ignored; two
 * SPIFFE URIs, or one that does not parse (even beside a good one), are no
 * identity. */
static void test_spiffe_id_from_x509(void)
{
    struct fx_ca fx;
    struct zt_spiffe_id id;
    CHECK(fx_ca_make(&fx, true));
    EVP_PKEY *k = EVP_EC_gen("P-256");
    static const struct {
        const char *san;
        int rc;
    } cases[] = {
        {"critical,URI:https://example.com,DNS:a.example,URI:spiffe://td/ns/a/sa/b", 0},
        {"critical,URI:spiffe://td/ns/a/sa/b,URI:spiffe://td2/ns/c/sa/d", ZT_E_IDENTITY},
        {"critical,URI:spiffe://td/ns/a/sa/b/extra,URI:spiffe://td/ns/a/sa/b", ZT_E_IDENTITY},
        {"critical,URI:spiffe://td/ns/a/sa/b,URI:SPIFFE://td/ns/a/sa/b", ZT_E_IDENTITY},
        {"critical,URI:spiffe://td/ns/a/sa/b/extra", ZT_E_IDENTITY},
        {"DNS:a.example", ZT_E_IDENTITY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        X509 *x = fx_cert(NULL, k, fx.ca, fx.ca_key, false, 3600, cases[i].san);
        int rc = zt_tls_x509_spiffe_id(x, &id);
        X509_free(x);
        if (rc != cases[i].rc)
            fprintf(stderr, "  case %zu: %s\n", i, cases[i].san);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0) {
            CHECK_EQ_STR(id.trust_domain, "td");
            CHECK_EQ_STR(id.sa, "b");
        } else {
            CHECK_EQ_STR(id.trust_domain, "");
        }
    }
    X509 *none = fx_cert(NULL, k, fx.ca, fx.ca_key, false, 3600, "DNS:a.example");
    struct zt_tls_cert *c = NULL;
    int rc3 = zt_tls_cert_new(none, NULL, k, NULL, &c);
    STACK_OF(X509) *roots = sk_X509_new_null();
    sk_X509_push(roots, fx.root);
    int rc4 = zt_tls_cert_new(none, NULL, k, roots, &c);
    sk_X509_free(roots);
    X509_free(none);
    EVP_PKEY_free(k);
    fx_ca_free(&fx);
    CHECK_EQ_INT(rc3, ZT_E_CONFIG);
    CHECK_EQ_INT(rc4, ZT_E_IDENTITY);
    CHECK(c == NULL);
}

int main(void)
{
    RUN(test_mint_contents);
    RUN(test_mint_short_ttl_and_limits);
    RUN(test_root_as_signing_ca);
    RUN(test_several_roots);
    RUN(test_load_errors);
    RUN(test_gen_cacerts_script);
    RUN(test_cert_from_pem_roundtrip);
    RUN(test_spiffe_id_from_x509);
    return TEST_REPORT();
}
