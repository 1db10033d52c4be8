#include "tls/localca.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/file.h"
#include "tls/csr.h"
#include "tls/tls_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct zt_tls_localca {
    pthread_mutex_t mu; /* serialises signing with `key` */
    X509 *ca_cert;
    EVP_PKEY *key;
    STACK_OF(X509) * intermediates; /* what minted leaves carry; empty if ca_cert is a root */
    STACK_OF(X509) * roots;
    time_t ca_not_after;
};

/* dir/name, whole (at most ZT_TLS_PEM_MAX bytes): 0, -ENOENT when missing,
 * another -errno or ZT_E_TOO_BIG. */
static int read_file(const char *dir, const char *name, char **out, size_t *len)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    return zt_read_file(path, ZT_TLS_PEM_MAX, NULL, out, len);
}

static const char *read_err_str(int rc)
{
    return rc == -ENOENT ? "missing" : zt_strerror(rc);
}

static int load_certs(const char *dir, const char *name, int max, STACK_OF(X509) * *out, char *err,
                      size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = read_file(dir, name, &buf, &len);
    if (rc != 0)
        return zt_errf(err, errlen, rc, "%s/%s: %s", dir, name, read_err_str(rc));
    rc = zt_tls_read_pem_certs(buf, len, max, out);
    if (rc != 0)
        zt_errf(err, errlen, 0, "%s/%s: %s", dir, name,
                rc == ZT_E_TOO_BIG ? "too many certificates" : "unparsable PEM certificate");
    OPENSSL_cleanse(buf, len);
    free(buf);
    return rc;
}

static int load_key(const char *dir, const char *name, EVP_PKEY **out, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    BIO *bio;
    int rc = read_file(dir, name, &buf, &len);
    if (rc != 0)
        return zt_errf(err, errlen, rc, "%s/%s: %s", dir, name, read_err_str(rc));
    bio = BIO_new_mem_buf(buf, (int)len);
    if (bio == NULL)
        abort();
    *out = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    /* The file held the CA key: do not leave a copy in freed memory. */
    OPENSSL_cleanse(buf, len);
    free(buf);
    if (*out == NULL)
        return zt_errf(err, errlen, ZT_E_TLS, "%s/%s: unparsable PEM private key", dir, name);
    return 0;
}

static bool stack_has(STACK_OF(X509) * sk, X509 *x)
{
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (X509_cmp(sk_X509_value(sk, i), x) == 0)
            return true;
    return false;
}

static void push_ref(STACK_OF(X509) * sk, X509 *x)
{
    if (!X509_up_ref(x) || !sk_X509_push(sk, x))
        abort();
}

/* Checks that ca_cert chains to the roots through the intermediates, now. */
static int verify_ca_chain(struct zt_tls_localca *ca, const char *dir, char *err, size_t errlen)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *sctx = X509_STORE_CTX_new();
    int rc = 0;

    if (store == NULL || sctx == NULL)
        abort();
    for (int i = 0; i < sk_X509_num(ca->roots); i++)
        X509_STORE_add_cert(store, sk_X509_value(ca->roots, i));
    ERR_clear_error();
    if (X509_STORE_CTX_init(sctx, store, ca->ca_cert, ca->intermediates) != 1)
        abort();
    if (X509_verify_cert(sctx) != 1) {
        rc =
            zt_errf(err, errlen, ZT_E_CONFIG, "%s/ca-cert.pem: does not chain to root-cert.pem: %s",
                    dir, X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx)));
    }
    ERR_clear_error();
    X509_STORE_CTX_free(sctx);
    X509_STORE_free(store);
    return rc;
}

int zt_tls_localca_load(const char *dir, struct zt_tls_localca **out, char *err, size_t errlen)
{
    struct zt_tls_localca *ca = calloc(1, sizeof(*ca));
    STACK_OF(X509) *ca_certs = NULL, *chain = NULL;
    int rc;

    if (ca == NULL)
        abort();
    *out = NULL;
    zt_errf(err, errlen, 0, "ok");
    pthread_mutex_init(&ca->mu, NULL);
    ca->intermediates = sk_X509_new_null();
    if (ca->intermediates == NULL)
        abort();

    if (load_certs(dir, "ca-cert.pem", ZT_TLS_CHAIN_MAX, &ca_certs, err, errlen) != 0 ||
        load_key(dir, "ca-key.pem", &ca->key, err, errlen) != 0 ||
        load_certs(dir, "root-cert.pem", ZT_TLS_CHAIN_MAX, &ca->roots, err, errlen) != 0)
        goto fail;
    /* Some tools write the signing cert followed by its chain into
     * ca-cert.pem; the first certificate is the signing one. */
    ca->ca_cert = sk_X509_shift(ca_certs);
    if (X509_check_private_key(ca->ca_cert, ca->key) != 1) {
        zt_errf(err, errlen, 0, "%s/ca-key.pem: key does not match ca-cert.pem", dir);
        goto fail;
    }
    if (X509_check_ca(ca->ca_cert) == 0) {
        zt_errf(err, errlen, 0, "%s/ca-cert.pem: not a CA certificate", dir);
        goto fail;
    }
    if (zt_tls_asn1_time_to_time(X509_get0_notAfter(ca->ca_cert), &ca->ca_not_after) != 0) {
        zt_errf(err, errlen, 0, "%s/ca-cert.pem: unreadable notAfter", dir);
        goto fail;
    }

    rc = load_certs(dir, "cert-chain.pem", ZT_TLS_CHAIN_MAX, &chain, err, errlen);
    if (rc == -ENOENT) {
        zt_errf(err, errlen, 0, "ok");
    } else if (rc != 0) {
        goto fail;
    }

    /* What a minted leaf carries up to (not including) the root: nothing if
     * the CA cert is a root itself, else the CA cert and whichever chain
     * entries are neither the CA cert again, nor self-signed, nor roots. */
    if (!zt_tls_is_self_signed(ca->ca_cert)) {
        push_ref(ca->intermediates, ca->ca_cert);
        for (int i = 0; i < sk_X509_num(ca_certs); i++) {
            X509 *x = sk_X509_value(ca_certs, i);
            if (!zt_tls_is_self_signed(x) && !stack_has(ca->roots, x) &&
                !stack_has(ca->intermediates, x))
                push_ref(ca->intermediates, x);
        }
        for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
            X509 *x = sk_X509_value(chain, i);
            if (!zt_tls_is_self_signed(x) && !stack_has(ca->roots, x) &&
                !stack_has(ca->intermediates, x))
                push_ref(ca->intermediates, x);
        }
    }
    if (sk_X509_num(ca->intermediates) > ZT_TLS_CHAIN_MAX) {
        zt_errf(err, errlen, 0, "%s/cert-chain.pem: too many certificates", dir);
        goto fail;
    }
    if (verify_ca_chain(ca, dir, err, errlen) != 0)
        goto fail;

    sk_X509_pop_free(ca_certs, X509_free);
    sk_X509_pop_free(chain, X509_free);
    *out = ca;
    return 0;

fail:
    ERR_clear_error();
    sk_X509_pop_free(ca_certs, X509_free);
    sk_X509_pop_free(chain, X509_free);
    zt_tls_localca_free(ca);
    return ZT_E_CONFIG;
}

void zt_tls_localca_free(struct zt_tls_localca *ca)
{
    if (ca == NULL)
        return;
    X509_free(ca->ca_cert);
    EVP_PKEY_free(ca->key);
    sk_X509_pop_free(ca->intermediates, X509_free);
    sk_X509_pop_free(ca->roots, X509_free);
    pthread_mutex_destroy(&ca->mu);
    free(ca);
}

STACK_OF(X509) * zt_tls_localca_roots(const struct zt_tls_localca *ca)
{
    return ca->roots;
}

/* Adds a DER-encodable extension value; `crit` marks it critical. */
static void add_ext(X509 *x, int nid, void *value, int crit)
{
    if (X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_DEFAULT) != 1)
        abort();
}

static int set_random_serial(X509 *x)
{
    unsigned char raw[16];
    BIGNUM *bn = NULL;
    int rc = ZT_E_TLS;

    do {
        if (RAND_bytes(raw, sizeof(raw)) != 1)
            goto out;
        BN_free(bn);
        bn = BN_bin2bn(raw, sizeof(raw), NULL);
        if (bn == NULL)
            abort();
    } while (BN_is_zero(bn));
    if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
        goto out;
    rc = 0;
out:
    BN_free(bn);
    return rc;
}

/* What distinguishes the leaves this CA issues: workload leaves have an
 * empty subject, one SPIFFE URI and both TLS roles; control-plane server
 * leaves a CN, DNS/IP names and the server role only. */
struct leaf_shape {
    const char *cn;      /* subject CN, or NULL for an empty subject */
    GENERAL_NAMES *san;  /* borrowed */
    bool has_client_eku; /* extKeyUsage clientAuth besides serverAuth */
};

/* Appends an IA5String-valued general name (URI or DNS) to names. */
static void push_ia5_name(GENERAL_NAMES *names, int type, const char *value)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    if (gn == NULL || ia5 == NULL || !ASN1_STRING_set(ia5, value, -1))
        abort();
    GENERAL_NAME_set0_value(gn, type, ia5);
    if (!sk_GENERAL_NAME_push(names, gn))
        abort();
}

static void push_ip_name(GENERAL_NAMES *names, const unsigned char *addr, int len)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    if (gn == NULL || os == NULL || !ASN1_OCTET_STRING_set(os, addr, len))
        abort();
    GENERAL_NAME_set0_value(gn, GEN_IPADD, os);
    if (!sk_GENERAL_NAME_push(names, gn))
        abort();
}

static void add_leaf_extensions(X509 *x, X509 *issuer, const struct leaf_shape *shape)
{
    /* RFC 5280 4.2.1.6: SubjectAltName is critical when the subject is empty. */
    add_ext(x, NID_subject_alt_name, shape->san, shape->cn == NULL);

    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    if (ku == NULL || !ASN1_BIT_STRING_set_bit(ku, 0, 1) || /* digitalSignature */
        !ASN1_BIT_STRING_set_bit(ku, 2, 1))                 /* keyEncipherment */
        abort();
    add_ext(x, NID_key_usage, ku, 1);
    ASN1_BIT_STRING_free(ku);

    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    if (eku == NULL || !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) ||
        (shape->has_client_eku && !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth))))
        abort();
    add_ext(x, NID_ext_key_usage, eku, 0);
    /* The objects are static built-ins: free only the stack. */
    sk_ASN1_OBJECT_free(eku);

    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    if (bc == NULL)
        abort();
    bc->ca = 0;
    add_ext(x, NID_basic_constraints, bc, 1);
    BASIC_CONSTRAINTS_free(bc);

    /* authorityKeyIdentifier = the issuer's subjectKeyIdentifier, or the
     * SHA-1 of its public key (RFC 5280 method 1) when it has none. */
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    ASN1_OCTET_STRING *kid = ASN1_OCTET_STRING_new();
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);
    if (akid == NULL || kid == NULL)
        abort();
    if (ski != NULL) {
        if (!ASN1_OCTET_STRING_set(kid, ASN1_STRING_get0_data(ski), ASN1_STRING_length(ski)))
            abort();
    } else {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (!X509_pubkey_digest(issuer, EVP_sha1(), md, &mdlen) ||
            !ASN1_OCTET_STRING_set(kid, md, (int)mdlen))
            abort();
    }
    akid->keyid = kid;
    add_ext(x, NID_authority_key_identifier, akid, 0);
    AUTHORITY_KEYID_free(akid);
}

/* Makes and signs a leaf for `pubkey` shaped by `shape`, valid for
 * ttl_seconds (already range-checked) but never past the CA certificate.
 * Returns 0 and *out, or ZT_E_TLS if the CA has expired or OpenSSL fails. */
static int issue_leaf(struct zt_tls_localca *ca, const struct leaf_shape *shape, EVP_PKEY *pubkey,
                      unsigned ttl_seconds, X509 **out)
{
    X509 *x = NULL;
    int rc = ZT_E_TLS;
    time_t now = time(NULL);
    time_t skew, not_after;

    *out = NULL;
    /* Back-date for peers whose clock is a little behind, but never by a
     * large share of a short lifetime: that would pull the half-life
     * refresh point into the past. */
    skew = ttl_seconds / 10 < 60 ? (time_t)(ttl_seconds / 10) : 60;
    not_after = now + (time_t)ttl_seconds;
    if (not_after > ca->ca_not_after)
        not_after = ca->ca_not_after;
    if (not_after <= now)
        return ZT_E_TLS; /* the CA certificate has expired */

    x = X509_new();
    if (x == NULL)
        goto out;
    if (!X509_set_version(x, X509_VERSION_3) || set_random_serial(x) != 0 ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca->ca_cert)) ||
        !ASN1_TIME_set(X509_getm_notBefore(x), now - skew) ||
        !ASN1_TIME_set(X509_getm_notAfter(x), not_after) || !X509_set_pubkey(x, pubkey))
        goto out;
    if (shape->cn != NULL &&
        !X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
                                    (const unsigned char *)shape->cn, -1, -1, 0))
        goto out;
    add_leaf_extensions(x, ca->ca_cert, shape);

    pthread_mutex_lock(&ca->mu);
    int signed_len = X509_sign(x, ca->key, EVP_sha256());
    pthread_mutex_unlock(&ca->mu);
    if (signed_len <= 0)
        goto out;
    *out = x;
    x = NULL;
    rc = 0;
out:
    ERR_clear_error();
    X509_free(x);
    return rc;
}

/* A workload leaf: empty subject, exactly one URI (the SPIFFE id). */
static int issue_workload_leaf(struct zt_tls_localca *ca, const char *uri, EVP_PKEY *pubkey,
                               unsigned ttl_seconds, X509 **out)
{
    struct leaf_shape shape = {.cn = NULL, .san = GENERAL_NAMES_new(), .has_client_eku = true};
    if (shape.san == NULL)
        abort();
    push_ia5_name(shape.san, GEN_URI, uri);
    int rc = issue_leaf(ca, &shape, pubkey, ttl_seconds, out);
    GENERAL_NAMES_free(shape.san);
    return rc;
}

int zt_tls_localca_mint(struct zt_tls_localca *ca, const struct zt_spiffe_id *id,
                        unsigned ttl_seconds, struct zt_tls_cert **out)
{
    char uri[ZT_SPIFFE_ID_MAX + 1];
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    int rc = ZT_E_TLS;

    *out = NULL;
    if (ttl_seconds == 0 || ttl_seconds > ZT_TLS_LOCALCA_TTL_MAX)
        return ZT_E_CONFIG;
    if (zt_spiffe_format(id, uri, sizeof(uri)) < 0)
        return ZT_E_IDENTITY;
    key = EVP_EC_gen("P-256");
    if (key == NULL)
        goto out;
    rc = issue_workload_leaf(ca, uri, key, ttl_seconds, &x);
    if (rc == 0)
        rc = zt_tls_cert_new(x, ca->intermediates, key, ca->roots, out);
out:
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* Appends the PEM of every certificate of sk to bio. */
static void write_pems(BIO *bio, STACK_OF(X509) * sk)
{
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (!PEM_write_bio_X509(bio, sk_X509_value(sk, i)))
            abort();
}

/* Moves what a memory BIO holds into a malloc'd NUL-terminated string and
 * empties the BIO. */
static char *take_bio_string(BIO *bio)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s;
    if (n < 0)
        n = 0;
    s = zt_xmalloc((size_t)n + 1);
    if (n > 0)
        memcpy(s, data, (size_t)n);
    s[n] = '\0';
    if (BIO_reset(bio) != 1)
        abort();
    return s;
}

int zt_tls_localca_sign_csr(struct zt_tls_localca *ca, const char *csr_pem, size_t len,
                            unsigned ttl_seconds, char ***chain_out, size_t *n_out, char *err,
                            size_t errlen)
{
    char uri[ZT_SPIFFE_ID_MAX + 1];
    struct zt_spiffe_id id;
    EVP_PKEY *pubkey = NULL;
    X509 *x = NULL;
    BIO *bio = NULL;
    char **list = NULL;
    size_t n = 0, cap;
    int rc;

    *chain_out = NULL;
    *n_out = 0;
    rc = zt_tls_csr_parse(csr_pem, len, &id, &pubkey, err, errlen);
    if (rc != 0)
        goto out;
    if (zt_spiffe_format(&id, uri, sizeof(uri)) < 0) {
        rc = zt_errf(err, errlen, ZT_E_IDENTITY, "CSR identity does not format");
        goto out;
    }
    if (ttl_seconds < ZT_TLS_LOCALCA_CSR_TTL_MIN)
        ttl_seconds = ZT_TLS_LOCALCA_CSR_TTL_MIN;
    if (ttl_seconds > ZT_TLS_LOCALCA_TTL_MAX)
        ttl_seconds = ZT_TLS_LOCALCA_TTL_MAX;
    rc = issue_workload_leaf(ca, uri, pubkey, ttl_seconds, &x);
    if (rc != 0) {
        zt_errf(err, errlen, 0, "signing failed (CA certificate expired?)");
        goto out;
    }

    /* Istio's answer: the leaf, each intermediate alone, then the whole
     * trust bundle as the last element. */
    cap = 2 + (size_t)sk_X509_num(ca->intermediates);
    list = calloc(cap, sizeof(*list));
    bio = BIO_new(BIO_s_mem());
    if (list == NULL || bio == NULL)
        abort();
    if (!PEM_write_bio_X509(bio, x))
        abort();
    list[n++] = take_bio_string(bio);
    for (int i = 0; i < sk_X509_num(ca->intermediates); i++) {
        if (!PEM_write_bio_X509(bio, sk_X509_value(ca->intermediates, i)))
            abort();
        list[n++] = take_bio_string(bio);
    }
    write_pems(bio, ca->roots);
    list[n++] = take_bio_string(bio);
    *chain_out = list;
    *n_out = n;
    list = NULL;
    zt_errf(err, errlen, 0, "ok");
out:
    ERR_clear_error();
    BIO_free(bio);
    zt_tls_pem_list_free(list, n);
    X509_free(x);
    EVP_PKEY_free(pubkey);
    return rc;
}

/* Longest CN (RFC 5280 ub-common-name); a longer first name leaves the
 * subject empty and the names in the SAN only. */
#define CN_MAX 64
/* RFC 1035 limits on a host name and on one of its labels. */
#define DNS_NAME_MAX 253
#define DNS_LABEL_MAX 63

/* A host name as certificates carry it: dot-separated labels of letters,
 * digits, '-' and '_', each 1..63 long, with an optional leading "*."
 * wildcard label. An IPv4 address is refused here: it belongs in the IP
 * list, where a client checking that address looks for it. */
static bool dns_name_ok(const char *name)
{
    struct in_addr a4;
    size_t len = strnlen(name, DNS_NAME_MAX + 1), label = 0;

    if (len == 0 || len > DNS_NAME_MAX || inet_pton(AF_INET, name, &a4) == 1)
        return false;
    if (strncmp(name, "*.", 2) == 0)
        name += 2;
    for (const char *p = name;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0 || label > DNS_LABEL_MAX)
                return false;
            if (*p == '\0')
                return true;
            label = 0;
            continue;
        }
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_';
        if (!ok)
            return false;
        label++;
    }
}

int zt_tls_localca_mint_server(struct zt_tls_localca *ca, const char *const *dns, size_t n_dns,
                               const char *const *ips, size_t n_ips, unsigned ttl_seconds,
                               struct zt_tls_cert **out)
{
    struct leaf_shape shape = {.cn = NULL, .san = NULL, .has_client_eku = false};
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    int rc = ZT_E_CONFIG;

    *out = NULL;
    if (ttl_seconds == 0 || ttl_seconds > ZT_TLS_LOCALCA_TTL_MAX || n_dns + n_ips == 0)
        return ZT_E_CONFIG;
    if (n_dns > ZT_TLS_LOCALCA_SERVER_NAMES_MAX || n_ips > ZT_TLS_LOCALCA_SERVER_NAMES_MAX ||
        n_dns + n_ips > ZT_TLS_LOCALCA_SERVER_NAMES_MAX)
        return ZT_E_TOO_BIG;

    shape.san = GENERAL_NAMES_new();
    if (shape.san == NULL)
        abort();
    for (size_t i = 0; i < n_dns; i++) {
        if (dns[i] == NULL || !dns_name_ok(dns[i]))
            goto out;
        push_ia5_name(shape.san, GEN_DNS, dns[i]);
    }
    for (size_t i = 0; i < n_ips; i++) {
        unsigned char addr[16];
        if (ips[i] == NULL)
            goto out;
        if (inet_pton(AF_INET, ips[i], addr) == 1)
            push_ip_name(shape.san, addr, 4);
        else if (inet_pton(AF_INET6, ips[i], addr) == 1)
            push_ip_name(shape.san, addr, 16);
        else
            goto out;
    }
    shape.cn = n_dns > 0 ? dns[0] : ips[0];
    if (strlen(shape.cn) > CN_MAX)
        shape.cn = NULL;

    rc = ZT_E_TLS;
    key = EVP_EC_gen("P-256");
    if (key == NULL)
        goto out;
    rc = issue_leaf(ca, &shape, key, ttl_seconds, &x);
    if (rc == 0)
        rc = zt_tls_cert_new_server(x, ca->intermediates, key, ca->roots, out);
out:
    ERR_clear_error();
    GENERAL_NAMES_free(shape.san);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* Refuses every passphrase request: with no callback OpenSSL would prompt
 * on the terminal for an encrypted key, which a daemon must never do. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

int zt_tls_cert_load_files(const char *cert_file, const char *key_file, struct zt_tls_cert **out,
                           char *err, size_t errlen)
{
    STACK_OF(X509) *chain = NULL, *intermediates = NULL, *roots = NULL;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    char *buf = NULL;
    size_t len = 0;
    time_t not_after;
    BIO *bio = NULL;
    int rc = ZT_E_CONFIG, r;

    *out = NULL;
    zt_errf(err, errlen, 0, "ok");
    r = zt_read_file(cert_file, ZT_TLS_PEM_MAX, NULL, &buf, &len);
    if (r != 0) {
        zt_errf(err, errlen, 0, "%s: %s", cert_file, read_err_str(r));
        goto out;
    }
    r = zt_tls_read_pem_certs(buf, len, ZT_TLS_CHAIN_MAX + 1, &chain);
    free(buf);
    buf = NULL;
    if (r != 0) {
        zt_errf(err, errlen, 0, "%s: %s", cert_file,
                r == ZT_E_TOO_BIG ? "too many certificates" : "unparsable PEM certificate");
        goto out;
    }

    r = zt_read_file(key_file, ZT_TLS_PEM_MAX, NULL, &buf, &len);
    if (r != 0) {
        zt_errf(err, errlen, 0, "%s: %s", key_file, read_err_str(r));
        goto out;
    }
    bio = BIO_new_mem_buf(buf, (int)len);
    if (bio == NULL)
        abort();
    key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    /* Do not leave a copy of the private key in freed memory. */
    OPENSSL_cleanse(buf, len);
    if (key == NULL) {
        zt_errf(err, errlen, 0, "%s: unparsable or encrypted PEM private key", key_file);
        goto out;
    }

    /* Leaf first. Whatever follows is sent as the chain, except a
     * self-signed certificate: that is a root, which peers must already
     * hold and which is never sent. */
    leaf = sk_X509_shift(chain);
    intermediates = sk_X509_new_null();
    roots = sk_X509_new_null();
    if (intermediates == NULL || roots == NULL)
        abort();
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        push_ref(zt_tls_is_self_signed(x) ? roots : intermediates, x);
    }
    if (X509_check_private_key(leaf, key) != 1) {
        zt_errf(err, errlen, 0, "%s: key does not match the first certificate of %s", key_file,
                cert_file);
        goto out;
    }
    if (zt_tls_asn1_time_to_time(X509_get0_notAfter(leaf), &not_after) != 0) {
        zt_errf(err, errlen, 0, "%s: unreadable notAfter", cert_file);
        goto out;
    }
    if (not_after <= time(NULL)) {
        zt_errf(err, errlen, 0, "%s: certificate has expired", cert_file);
        goto out;
    }
    if (zt_tls_cert_new_server(leaf, intermediates, key, roots, out) != 0) {
        zt_errf(err, errlen, 0, "%s: unusable certificate (validity unreadable)", cert_file);
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(bio);
    free(buf);
    X509_free(leaf);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(intermediates, X509_free);
    sk_X509_pop_free(roots, X509_free);
    return rc;
}
