/* JWT checks against tokens minted by Node's crypto (tests/unit/jwt/mint.js,
 * run here into a temporary directory): each algorithm, the time window and
 * its skew, issuer, audience, signature and kid failures, refused
 * algorithms, key rotation, the token search, the output headers and every
 * cap at its limit and one past. Run from the repository root. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "base/err.h"
#include "http/head.h"
#include "jwt/jwt.h"

#define NOW 1800000000
#define ISS "https://issuer.example"

static char dir[] = "/tmp/zt-jwt-XXXXXX";
static bool have_fixtures;

static char *slurp(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[70000];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

static char *tok(const char *name)
{
    char file[64];
    snprintf(file, sizeof(file), "%s.jwt", name);
    return slurp(file);
}

/* One rule for ISS over jwks1 with audiences svc-a. */
static struct zt_jwt_rules *rules1(const struct zt_jwt_rule_spec *extra)
{
    static const char *const auds[] = {"svc-a"};
    char *jwks = slurp("jwks1.json");
    struct zt_jwt_rule_spec spec = {.issuer = ISS, .audiences = auds, .n_audiences = 1};
    if (extra)
        spec = *extra;
    spec.jwks = jwks;
    struct zt_jwt_rules *rs = zt_jwt_rules_new();
    char err[256];
    int rc = zt_jwt_rules_add(rs, &spec, err, sizeof(err));
    free(jwks);
    if (rc != 0) {
        fprintf(stderr, "  rules_add: %s\n", err);
        zt_jwt_rules_free(rs);
        return NULL;
    }
    return rs;
}

/* The status of one token (file name) checked at `now`; reason out. */
static enum zt_jwt_status check(struct zt_jwt_rules *rs, const char *name, int64_t now,
                                const char **reason)
{
    char *t = tok(name);
    struct zt_jwt_result r;
    enum zt_jwt_status st = zt_jwt_verify(rs, t, strlen(t), NULL, now, &r);
    if (reason)
        *reason = r.reason;
    zt_jwt_result_cleanup(&r);
    free(t);
    return st;
}

#define NEED_FIXTURES()                                                                            \
    do {                                                                                           \
        if (!have_fixtures)                                                                        \
            SKIP("node not available to mint tokens");                                             \
    } while (0)

static void test_valid_algorithms(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rules *rs = rules1(NULL);
    CHECK(rs);
    const char *names[] = {"rs256", "rs384", "rs512", "ps256",       "ps384", "ps512",
                           "es256", "es384", "nokid", "es256_nokid", "eddsa", "eddsa_nokid"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *reason = NULL;
        enum zt_jwt_status st = check(rs, names[i], NOW, &reason);
        if (st != ZT_JWT_VALID)
            fprintf(stderr, "  %s: %s\n", names[i], reason ? reason : "?");
        CHECK(st == ZT_JWT_VALID);
    }
    zt_jwt_rules_free(rs);
}

static void test_result_fields(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rules *rs = rules1(NULL);
    CHECK(rs);
    char *t = tok("rs256");
    struct zt_jwt_result r;
    CHECK(zt_jwt_verify(rs, t, strlen(t), NULL, NOW, &r) == ZT_JWT_VALID);
    CHECK_EQ_STR(r.principal, ISS "/alice");
    CHECK_EQ_STR(r.issuer, ISS);
    CHECK_EQ_STR(r.subject, "alice");
    CHECK_EQ_STR(r.presenter, "client-1");
    CHECK(r.n_audiences == 2);
    CHECK_EQ_STR(r.audiences[0], "svc-a");
    CHECK_EQ_STR(r.audiences[1], "other");
    /* request.auth.claims[realm][level][x] and a list claim. */
    const char *path[] = {"realm", "level", "x"};
    CHECK_EQ_STR(json_string_value(zt_jwt_claim(r.claims, path, 3)), "deep");
    const char *groups[] = {"groups"};
    CHECK(json_array_size(zt_jwt_claim(r.claims, groups, 1)) == 2);
    const char *missing[] = {"realm", "nope"};
    CHECK(zt_jwt_claim(r.claims, missing, 2) == NULL);
    const char *through_scalar[] = {"n", "x"};
    CHECK(zt_jwt_claim(r.claims, through_scalar, 2) == NULL);
    /* The payload segment, as Envoy forwards it. */
    const char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
    CHECK(strlen(r.payload_b64) == (size_t)(d2 - d1 - 1));
    CHECK(memcmp(r.payload_b64, d1 + 1, (size_t)(d2 - d1 - 1)) == 0);
    zt_jwt_result_cleanup(&r);
    free(t);

    /* No sub: valid, but no principal. */
    CHECK(check(rs, "nosub", NOW, NULL) == ZT_JWT_VALID);
    zt_jwt_rules_free(rs);
}

static void test_time_window(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rules *rs = rules1(NULL);
    CHECK(rs);
    const char *reason = NULL;
    /* exp = nbf = NOW; 60 s of skew either way. */
    CHECK(check(rs, "edge", NOW, NULL) == ZT_JWT_VALID);
    CHECK(check(rs, "edge", NOW + 60, NULL) == ZT_JWT_VALID);
    CHECK(check(rs, "edge", NOW + 61, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwt is expired");
    CHECK(check(rs, "edge", NOW - 60, NULL) == ZT_JWT_VALID);
    CHECK(check(rs, "edge", NOW - 61, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwt not yet valid");
    /* The long-lived token an hour later. */
    CHECK(check(rs, "rs256", NOW + 3600 + 61, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwt is expired");
    CHECK(check(rs, "exp_string", NOW, &reason) == ZT_JWT_INVALID);
    /* Extreme times (unsigned: time is checked before the signature) must
     * not overflow the skew arithmetic. */
    const char *ext[][2] = {
        {"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0."
         "eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoic3ZjLWEiLCJleHAiOi05MjIzMzcyMDM2ODU0"
         "Nzc1ODA4fQ.AAAA",
         "Jwt is expired"},
        {"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0."
         "eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoic3ZjLWEiLCJuYmYiOjkyMjMzNzIwMzY4NTQ3"
         "NzU4MDd9.AAAA",
         "Jwt not yet valid"}};
    for (size_t i = 0; i < 2; i++) {
        struct zt_jwt_result r;
        CHECK(zt_jwt_verify(rs, ext[i][0], strlen(ext[i][0]), NULL, NOW, &r) == ZT_JWT_INVALID);
        CHECK_EQ_STR(r.reason, ext[i][1]);
        zt_jwt_result_cleanup(&r);
    }
    zt_jwt_rules_free(rs);
}

static void test_issuer_audience(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rules *rs = rules1(NULL);
    CHECK(rs);
    const char *reason = NULL;
    CHECK(check(rs, "wrong_iss", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwt issuer is not configured");
    CHECK(check(rs, "wrong_aud", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Audiences in Jwt are not allowed");
    /* Envoy ignores the scheme and a trailing slash of audiences. */
    CHECK(check(rs, "aud_scheme", NOW, NULL) == ZT_JWT_VALID);
    zt_jwt_rules_free(rs);

    /* No audiences in the rule: any aud passes. */
    struct zt_jwt_rule_spec spec = {.issuer = ISS};
    rs = rules1(&spec);
    CHECK(rs);
    CHECK(check(rs, "wrong_aud", NOW, NULL) == ZT_JWT_VALID);
    zt_jwt_rules_free(rs);
}

static void test_signature_failures(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rules *rs = rules1(NULL);
    CHECK(rs);
    const char *reason = NULL;
    CHECK(check(rs, "unknown_kid", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwks doesn't have key to match kid or alg from Jwt");
    CHECK(check(rs, "other_key", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwt verification fails");
    CHECK(check(rs, "eddsa_other", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwt verification fails");

    /* One signature character changed (the last one may carry only
     * padding bits, so change the first). */
    char *t = tok("rs256");
    char *sig = strrchr(t, '.') + 1;
    char orig = sig[0];
    sig[0] = orig == 'A' ? 'B' : 'A';
    struct zt_jwt_result r;
    CHECK(zt_jwt_verify(rs, t, strlen(t), NULL, NOW, &r) == ZT_JWT_INVALID);
    CHECK_EQ_STR(r.reason, "Jwt verification fails");
    zt_jwt_result_cleanup(&r);
    /* Another token's payload (nosub: all claims fine) under rs256's
     * header and signature. */
    sig[0] = orig;
    char *t2 = tok("nosub");
    char *mix = malloc(strlen(t) + strlen(t2) + 1);
    const char *p2 = strchr(t2, '.'), *s2 = strrchr(t2, '.');
    size_t h1 = (size_t)(strchr(t, '.') - t);
    memcpy(mix, t, h1);
    memcpy(mix + h1, p2, (size_t)(s2 - p2));
    strcpy(mix + h1 + (size_t)(s2 - p2), strrchr(t, '.'));
    CHECK(zt_jwt_verify(rs, mix, strlen(mix), NULL, NOW, &r) == ZT_JWT_INVALID);
    CHECK_EQ_STR(r.reason, "Jwt verification fails");
    zt_jwt_result_cleanup(&r);
    free(mix);
    free(t2);
    free(t);
    zt_jwt_rules_free(rs);
}

static void test_refused_algorithms(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rules *rs = rules1(NULL);
    CHECK(rs);
    const char *reason = NULL;
    /* alg none (an empty signature) is refused for its alg, as Envoy does. */
    CHECK(check(rs, "alg_none", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwt header [alg] is not supported");
    CHECK(check(rs, "alg_none_nokid", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwt header [alg] is not supported");
    const char *names[] = {"hs256_pem", "hs256_n", "hs256_x"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        CHECK(check(rs, names[i], NOW, &reason) == ZT_JWT_INVALID);
        CHECK_EQ_STR(reason, "Jwt header [alg] is not supported");
    }
    zt_jwt_rules_free(rs);
}

static void test_malformed(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rules *rs = rules1(NULL);
    CHECK(rs);
    char *t = tok("rs256");
    size_t len = strlen(t);
    const char *bad[] = {"", ".", "..", "a.b", "a.b.c.d", "a..c", "!!!.e30.sig", "e30.e30.",
                         "eyJhbGciOiJSUzI1NiJ9.%%%.abc", "bm90IGpzb24.e30.abc",
                         /* A segment of 4n+1 characters is no base64 (cjose
                          * asserts on it): refused before it is decoded. */
                         "eyJhb.e30.abc", "eyJhbGciOiJSUzI1NiJ9.e30Ab.abc",
                         "eyJhbGciOiJSUzI1NiJ9.e30.abcde"};
    struct zt_jwt_result r;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(zt_jwt_verify(rs, bad[i], strlen(bad[i]), NULL, NOW, &r) == ZT_JWT_INVALID);
        CHECK(r.reason != NULL);
        zt_jwt_result_cleanup(&r);
    }
    /* Truncated at every length: never valid, never a crash. */
    for (size_t n = 0; n < len; n++) {
        CHECK(zt_jwt_verify(rs, t, n, NULL, NOW, &r) == ZT_JWT_INVALID);
        zt_jwt_result_cleanup(&r);
    }
    /* An allowed alg with the signature cut off: fails verification. */
    size_t cut = (size_t)(strrchr(t, '.') - t) + 1;
    CHECK(zt_jwt_verify(rs, t, cut, NULL, NOW, &r) == ZT_JWT_INVALID);
    CHECK_EQ_STR(r.reason, "Jwt verification fails");
    zt_jwt_result_cleanup(&r);
    /* Bad base64 inside the payload segment. */
    char *d1 = strchr(t, '.');
    d1[3] = '*';
    CHECK(zt_jwt_verify(rs, t, len, NULL, NOW, &r) == ZT_JWT_INVALID);
    zt_jwt_result_cleanup(&r);
    free(t);
    zt_jwt_rules_free(rs);
}

static void test_caps_token_and_depth(void)
{
    NEED_FIXTURES();
    static const char *const auds[] = {"svc-a"};
    struct zt_jwt_rule_spec spec = {.issuer = ISS, .audiences = auds, .n_audiences = 1};
    struct zt_jwt_rules *rs = rules1(&spec);
    CHECK(rs);
    const char *reason = NULL;
    CHECK(check(rs, "len8192", NOW, NULL) == ZT_JWT_VALID);
    CHECK(check(rs, "len8193", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwt is too long");
    CHECK(check(rs, "depth16", NOW, NULL) == ZT_JWT_VALID);
    CHECK(check(rs, "depth17", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwt payload nests too deep");
    /* A huge header: many times the cap, refused before any decoding. */
    size_t big = 1 << 20;
    char *huge = malloc(big);
    memset(huge, 'A', big);
    huge[100] = '.';
    huge[big - 10] = '.';
    struct zt_jwt_result r;
    CHECK(zt_jwt_verify(rs, huge, big, NULL, NOW, &r) == ZT_JWT_INVALID);
    CHECK_EQ_STR(r.reason, "Jwt is too long");
    zt_jwt_result_cleanup(&r);
    free(huge);
    zt_jwt_rules_free(rs);
}

/* A JWKS of `n` copies of jwks1's first key (kid k1) under kids k0, k1,
 * ..., padded with spaces to `size` bytes when size is not 0. */
static char *jwks_of(size_t n, size_t size, size_t *len)
{
    char *src = slurp("jwks1.json");
    char *k = strstr(src, "{\"kty\":\"RSA\"");
    char *end = strchr(k, '}');
    char *kid = strstr(k, "\"kid\":\"k1\"");
    size_t klen = (size_t)(end + 1 - k);
    size_t before = (size_t)(kid - k), after = (size_t)(end + 1 - (kid + 10));
    size_t cap = 64 + n * (klen + 16) + size;
    char *out = calloc(1, cap);
    size_t o = (size_t)sprintf(out, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            out[o++] = ',';
        memcpy(out + o, k, before);
        o += before;
        o += (size_t)sprintf(out + o, "\"kid\":\"k%zu\"", i);
        memcpy(out + o, kid + 10, after);
        o += after;
    }
    o += (size_t)sprintf(out + o, "]}");
    while (size && o < size)
        out[o++] = ' ';
    *len = o;
    free(src);
    return out;
}

static void test_caps_jwks(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rule_spec spec = {.issuer = ISS};
    struct zt_jwt_rules *rs = rules1(&spec);
    CHECK(rs);
    char err[256];
    size_t len;
    char *j = jwks_of(ZT_JWT_JWKS_KEYS_MAX, 0, &len);
    int rc = zt_jwt_rules_set_jwks(rs, 0, j, len, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    CHECK(rc == 0);
    free(j);
    j = jwks_of(ZT_JWT_JWKS_KEYS_MAX + 1, 0, &len);
    CHECK(zt_jwt_rules_set_jwks(rs, 0, j, len, err, sizeof(err)) == ZT_E_TOO_BIG);
    free(j);
    j = jwks_of(1, ZT_JWT_JWKS_MAX, &len);
    CHECK(len == ZT_JWT_JWKS_MAX);
    CHECK(zt_jwt_rules_set_jwks(rs, 0, j, len, err, sizeof(err)) == 0);
    free(j);
    j = jwks_of(1, ZT_JWT_JWKS_MAX + 1, &len);
    CHECK(len == ZT_JWT_JWKS_MAX + 1);
    CHECK(zt_jwt_rules_set_jwks(rs, 0, j, len, err, sizeof(err)) == ZT_E_TOO_BIG);
    free(j);
    /* The set that stayed (k0 only, a copy of k1's key) verifies a token
     * with no kid, but not one naming k1. */
    CHECK(check(rs, "nokid", NOW, NULL) == ZT_JWT_VALID);
    CHECK(check(rs, "rs256", NOW, NULL) == ZT_JWT_INVALID);
    /* Broken sets keep the old one. */
    const char *bad[] = {"{", "[]", "{\"keys\":{}}",
                         "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}",
                         "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"!\",\"e\":\"AQAB\"}]}",
                         "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}",
                         "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"AAAA\"}]}",
                         /* Not base64url ('=' inside, 4n+1 characters, a
                          * number): cjose would assert on the first two. */
                         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":"
                         "\"_doYx0iKjWCqpxhk3onsUTZ_ugX6IQ6b1VGpKkn0TJY\",\"y\":"
                         "\"ij4Vi=-lYd1lY1piPknvD6NQ7su7XZTZwe1DODlShBI\"}]}",
                         "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AAAAA\",\"e\":\"AQAB\"}]}",
                         "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AAAA\",\"e\":65537}]}",
                         "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":"
                         "\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHU=Ro\"}]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(zt_jwt_rules_set_jwks(rs, 0, bad[i], strlen(bad[i]), err, sizeof(err)) ==
              ZT_E_CONFIG);
    CHECK(check(rs, "nokid", NOW, NULL) == ZT_JWT_VALID);
    CHECK(zt_jwt_rules_set_jwks(rs, 7, "{}", 2, err, sizeof(err)) == ZT_E_NOT_FOUND);
    zt_jwt_rules_free(rs);
}

static void test_rotation_and_uri(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rule_spec spec = {.issuer = ISS, .jwks_uri = "https://issuer.example/jwks"};
    struct zt_jwt_rules *rs = zt_jwt_rules_new();
    char err[256];
    CHECK(zt_jwt_rules_add(rs, &spec, err, sizeof(err)) == 0);
    CHECK_EQ_STR(zt_jwt_rules_jwks_uri(rs, 0), "https://issuer.example/jwks");
    const char *reason = NULL;
    /* Not fetched yet. */
    CHECK(check(rs, "rs256", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwks remote fetch is failed");
    char *j1 = slurp("jwks1.json"), *j2 = slurp("jwks2.json");
    CHECK(zt_jwt_rules_set_jwks(rs, 0, j1, strlen(j1), err, sizeof(err)) == 0);
    CHECK(check(rs, "rs256", NOW, NULL) == ZT_JWT_VALID);
    CHECK(check(rs, "rot_new", NOW, NULL) == ZT_JWT_INVALID);
    CHECK(zt_jwt_rules_set_jwks(rs, 0, j2, strlen(j2), err, sizeof(err)) == 0);
    CHECK(check(rs, "rs256", NOW, &reason) == ZT_JWT_INVALID);
    CHECK_EQ_STR(reason, "Jwks doesn't have key to match kid or alg from Jwt");
    CHECK(check(rs, "rot_new", NOW, NULL) == ZT_JWT_VALID);
    free(j1);
    free(j2);
    zt_jwt_rules_free(rs);
}

static void test_rule_errors(void)
{
    struct zt_jwt_rules *rs = zt_jwt_rules_new();
    char err[256];
    struct zt_jwt_rule_spec none = {0};
    CHECK(zt_jwt_rules_add(rs, &none, err, sizeof(err)) == ZT_E_CONFIG);
    struct zt_jwt_rule_spec both = {.issuer = "i", .jwks = "{}", .jwks_uri = "https://x"};
    CHECK(zt_jwt_rules_add(rs, &both, err, sizeof(err)) == ZT_E_CONFIG);
    struct zt_jwt_rule_spec badjson = {.issuer = "i", .jwks = "{\"keys\":"};
    CHECK(zt_jwt_rules_add(rs, &badjson, err, sizeof(err)) == ZT_E_CONFIG);
    struct zt_jwt_from_header fh = {.name = "bad header", .prefix = ""};
    struct zt_jwt_rule_spec badh = {.issuer = "i", .from_headers = &fh, .n_from_headers = 1};
    CHECK(zt_jwt_rules_add(rs, &badh, err, sizeof(err)) == ZT_E_CONFIG);
    const char *auds[ZT_JWT_RULE_LIST_MAX + 1];
    for (size_t i = 0; i <= ZT_JWT_RULE_LIST_MAX; i++)
        auds[i] = "a";
    struct zt_jwt_rule_spec many = {.issuer = "i", .audiences = auds};
    many.n_audiences = ZT_JWT_RULE_LIST_MAX;
    CHECK(zt_jwt_rules_add(rs, &many, err, sizeof(err)) == 0);
    many.n_audiences = ZT_JWT_RULE_LIST_MAX + 1;
    CHECK(zt_jwt_rules_add(rs, &many, err, sizeof(err)) == ZT_E_TOO_BIG);
    CHECK(zt_jwt_rules_count(rs) == 1);
    struct zt_jwt_rule_spec plain = {.issuer = "i"};
    for (size_t i = 1; i < ZT_JWT_RULES_MAX; i++)
        CHECK(zt_jwt_rules_add(rs, &plain, err, sizeof(err)) == (int)i);
    CHECK(zt_jwt_rules_add(rs, &plain, err, sizeof(err)) == ZT_E_TOO_BIG);
    zt_jwt_rules_free(rs);
    zt_jwt_rules_free(NULL);
}

static void head_with(struct zt_http_head *h, const char *path)
{
    zt_http_head_init(h, false);
    zt_http_head_set_part(h, &h->method, "GET", 3);
    zt_http_head_set_part(h, &h->path, path, strlen(path));
}

static void add_hdr(struct zt_http_head *h, const char *name, const char *v1, const char *v2)
{
    char buf[10000];
    snprintf(buf, sizeof(buf), "%s%s", v1, v2);
    zt_http_head_add(h, name, strlen(name), buf, strlen(buf));
}

static void test_default_locations(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rules *rs = rules1(NULL);
    CHECK(rs);
    char *t = tok("rs256"), *t2 = tok("es256");
    struct zt_http_head h;
    struct zt_jwt_result r;

    head_with(&h, "/x");
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_NONE);
    zt_jwt_result_cleanup(&r);
    /* A different scheme is not a token location. */
    add_hdr(&h, "Authorization", "Basic ", "dXNlcjpwYXNz");
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_NONE);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);

    head_with(&h, "/x");
    add_hdr(&h, "Authorization", "bearer ", t);
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_VALID);
    CHECK(r.n_found == 1 && !r.found[0].is_param);
    CHECK_EQ_STR(r.found[0].name, "authorization");
    CHECK(zt_jwt_apply(rs, &r, &h) == 0);
    CHECK(zt_http_head_get(&h, "authorization") == NULL);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);

    /* access_token query parameter; the path is left as it is (Envoy). */
    char path[9000];
    snprintf(path, sizeof(path), "/x?a=1&access_token=%s&b=2", t);
    head_with(&h, path);
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_VALID);
    CHECK(r.n_found == 1 && r.found[0].is_param);
    CHECK_EQ_STR(r.found[0].name, "access_token");
    zt_jwt_result_cleanup(&r);
    /* The same token in the header too: one token, valid. */
    add_hdr(&h, "authorization", "Bearer ", t);
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_VALID);
    CHECK(r.n_found == 2);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);

    /* Two different tokens: refused. */
    snprintf(path, sizeof(path), "/x?access_token=%s", t2);
    head_with(&h, path);
    add_hdr(&h, "authorization", "Bearer ", t);
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_INVALID);
    CHECK_EQ_STR(r.reason, "Jwt multiple tokens in one request");
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);

    /* An invalid token in the header. */
    head_with(&h, "/x");
    add_hdr(&h, "authorization", "Bearer ", "not.a.token");
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_INVALID);
    zt_jwt_result_cleanup(&r);
    /* Occurrences past the cap are refused, not ignored. */
    for (int i = 0; i < ZT_JWT_FOUND_MAX; i++) {
        char v[16];
        snprintf(v, sizeof(v), "x%d", i);
        add_hdr(&h, "authorization", "Bearer ", v);
    }
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_INVALID);
    CHECK_EQ_STR(r.reason, "Jwt multiple tokens in one request");
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);
    free(t);
    free(t2);
    zt_jwt_rules_free(rs);
}

static void test_custom_locations_and_outputs(void)
{
    NEED_FIXTURES();
    struct zt_jwt_from_header fh = {.name = "X-Jwt-Assertion", .prefix = "Token "};
    const char *params[] = {"jwt"};
    struct zt_jwt_claim_header ch[] = {{"x-sub", "sub"},       {"x-level", "realm.level.x"},
                                       {"x-n", "n"},           {"x-b", "b"},
                                       {"x-groups", "groups"}, {"x-missing", "nope"}};
    struct zt_jwt_rule_spec spec = {.issuer = ISS,
                                    .from_headers = &fh,
                                    .n_from_headers = 1,
                                    .from_params = params,
                                    .n_from_params = 1,
                                    .output_payload_to_header = "X-Jwt-Payload",
                                    .output_claim_to_headers = ch,
                                    .n_output_claim_to_headers = 6};
    struct zt_jwt_rules *rs = rules1(&spec);
    CHECK(rs);
    char *t = tok("rs256");
    struct zt_http_head h;
    struct zt_jwt_result r;

    /* The default Authorization location is not used by this rule. */
    head_with(&h, "/x?access_token=abc");
    add_hdr(&h, "authorization", "Bearer ", t);
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_NONE);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);

    head_with(&h, "/x");
    add_hdr(&h, "x-jwt-assertion", "Token ", t);
    add_hdr(&h, "x-sub", "forged", "");
    add_hdr(&h, "x-missing", "forged", "");
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_VALID);
    CHECK(zt_jwt_apply(rs, &r, &h) == 0);
    CHECK(zt_http_head_get(&h, "x-jwt-assertion") == NULL);
    CHECK_EQ_STR(zt_http_head_get(&h, "x-jwt-payload"), r.payload_b64);
    CHECK_EQ_STR(zt_http_head_get(&h, "x-sub"), "alice");
    CHECK(zt_http_head_count(&h, "x-sub") == 1);
    CHECK_EQ_STR(zt_http_head_get(&h, "x-level"), "deep");
    CHECK_EQ_STR(zt_http_head_get(&h, "x-n"), "42");
    CHECK_EQ_STR(zt_http_head_get(&h, "x-b"), "true");
    CHECK(zt_http_head_get(&h, "x-groups") == NULL); /* a list: not copied */
    CHECK(zt_http_head_get(&h, "x-missing") == NULL);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);

    /* A token in a location of the rule but naming another issuer. */
    char *bad = tok("wrong_iss");
    char path[9000];
    snprintf(path, sizeof(path), "/x?jwt=%s", bad);
    head_with(&h, path);
    add_hdr(&h, "x-jwt-payload", "forged", "");
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_INVALID);
    CHECK_EQ_STR(r.reason, "Jwt issuer is not configured");
    CHECK(zt_jwt_apply(rs, &r, &h) == 0);
    CHECK(zt_http_head_get(&h, "x-jwt-payload") == NULL);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);
    free(bad);
    free(t);
    zt_jwt_rules_free(rs);

    /* forwardOriginalToken keeps the header. */
    struct zt_jwt_rule_spec fwd = {.issuer = ISS, .forward_original_token = true};
    rs = rules1(&fwd);
    CHECK(rs);
    t = tok("es256");
    head_with(&h, "/x");
    add_hdr(&h, "authorization", "Bearer ", t);
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_VALID);
    CHECK(zt_jwt_apply(rs, &r, &h) == 0);
    CHECK(zt_http_head_get(&h, "authorization") != NULL);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);
    free(t);
    zt_jwt_rules_free(rs);
}

static void test_cookies(void)
{
    NEED_FIXTURES();
    const char *cookies[] = {"session"};
    struct zt_jwt_rule_spec spec = {.issuer = ISS, .from_cookies = cookies, .n_from_cookies = 1};
    struct zt_jwt_rules *rs = rules1(&spec);
    CHECK(rs);
    char *t = tok("rs256");
    struct zt_http_head h;
    struct zt_jwt_result r;
    char v[9000];

    /* Found among other cookies, spaces and a quoted value; not removed. */
    snprintf(v, sizeof(v), "a=1; session=\"%s\" ;b=2", t);
    head_with(&h, "/x");
    add_hdr(&h, "cookie", v, "");
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_VALID);
    CHECK(r.n_found == 1 && r.found[0].is_cookie && !r.found[0].is_param);
    CHECK_EQ_STR(r.found[0].name, "session");
    CHECK(zt_jwt_apply(rs, &r, &h) == 0);
    CHECK(zt_http_head_get(&h, "cookie") != NULL);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);

    /* A rule with only cookies does not look at Authorization (positive
     * control: the same token in the cookie is found above); a cookie
     * whose name merely ends or starts with "session" is another cookie. */
    head_with(&h, "/x");
    add_hdr(&h, "authorization", "Bearer ", t);
    add_hdr(&h, "cookie", "xsession=abc; sessionx=abc; session=", "");
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_NONE);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);

    /* A bad token in the cookie is invalid; two cookie fields with two
     * different tokens are refused. */
    head_with(&h, "/x");
    add_hdr(&h, "cookie", "session=not.a.token", "");
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_INVALID);
    zt_jwt_result_cleanup(&r);
    snprintf(v, sizeof(v), "session=%s", t);
    add_hdr(&h, "cookie", v, "");
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &r) == ZT_JWT_INVALID);
    CHECK_EQ_STR(r.reason, "Jwt multiple tokens in one request");
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);

    /* A token found in a cookie must suit a rule that reads that cookie. */
    struct zt_jwt_location loc = {.is_cookie = true, .name = "other"};
    CHECK(zt_jwt_verify(rs, t, strlen(t), &loc, NOW, &r) == ZT_JWT_INVALID);
    zt_jwt_result_cleanup(&r);
    loc.name = "session";
    CHECK(zt_jwt_verify(rs, t, strlen(t), &loc, NOW, &r) == ZT_JWT_VALID);
    zt_jwt_result_cleanup(&r);
    free(t);
    zt_jwt_rules_free(rs);
}

static void test_cache(void)
{
    NEED_FIXTURES();
    struct zt_jwt_rules *rs = rules1(NULL);
    CHECK(rs);
    struct zt_jwt_cache *c = zt_jwt_cache_new(1); /* one slot: tokens evict each other */
    char *t = tok("rs256"), *t2 = tok("es256"), *edge = tok("edge");
    struct zt_http_head h;
    struct zt_jwt_result r, plain;
    uint64_t hits, misses;

    head_with(&h, "/x");
    add_hdr(&h, "authorization", "Bearer ", t);
    CHECK(zt_jwt_authenticate_cached(rs, c, &h, NOW, &r) == ZT_JWT_VALID);
    zt_jwt_result_cleanup(&r);
    CHECK(zt_jwt_authenticate_cached(rs, c, &h, NOW, &r) == ZT_JWT_VALID);
    zt_jwt_cache_counts(c, &hits, &misses);
    CHECK(hits == 1 && misses == 1);
    /* A hit gives what a check gives, and where this request had it. */
    CHECK(zt_jwt_authenticate(rs, &h, NOW, &plain) == ZT_JWT_VALID);
    CHECK_EQ_STR(r.principal, plain.principal);
    CHECK_EQ_STR(r.presenter, plain.presenter);
    CHECK_EQ_STR(r.payload_b64, plain.payload_b64);
    CHECK(r.n_audiences == plain.n_audiences && r.rule == plain.rule);
    CHECK(json_equal(r.claims, plain.claims));
    CHECK(r.n_found == 1 && !strcmp(r.found[0].name, "authorization"));
    CHECK(zt_jwt_apply(rs, &r, &h) == 0);
    CHECK(zt_http_head_get(&h, "authorization") == NULL);
    zt_jwt_result_cleanup(&r);
    zt_jwt_result_cleanup(&plain);
    zt_http_head_cleanup(&h);

    /* The same token in the query: another place, a miss. */
    char path[9000];
    snprintf(path, sizeof(path), "/x?access_token=%s", t);
    head_with(&h, path);
    CHECK(zt_jwt_authenticate_cached(rs, c, &h, NOW, &r) == ZT_JWT_VALID);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);
    zt_jwt_cache_counts(c, &hits, &misses);
    CHECK(hits == 1 && misses == 2);

    /* A cached token past its exp (+ skew) is refused, not served. */
    head_with(&h, "/x");
    add_hdr(&h, "authorization", "Bearer ", edge);
    CHECK(zt_jwt_authenticate_cached(rs, c, &h, NOW, &r) == ZT_JWT_VALID);
    zt_jwt_result_cleanup(&r);
    CHECK(zt_jwt_authenticate_cached(rs, c, &h, NOW + ZT_JWT_CLOCK_SKEW_S + 1, &r) ==
          ZT_JWT_INVALID);
    CHECK_EQ_STR(r.reason, "Jwt is expired");
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);

    /* Invalid verdicts are not kept: the same bad token is checked twice. */
    zt_jwt_cache_counts(c, &hits, &misses);
    uint64_t m0 = misses;
    head_with(&h, "/x");
    add_hdr(&h, "authorization", "Bearer ", "e30.e30.c2ln");
    CHECK(zt_jwt_authenticate_cached(rs, c, &h, NOW, &r) == ZT_JWT_INVALID);
    zt_jwt_result_cleanup(&r);
    CHECK(zt_jwt_authenticate_cached(rs, c, &h, NOW, &r) == ZT_JWT_INVALID);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);
    zt_jwt_cache_counts(c, &hits, &misses);
    CHECK(misses == m0 + 2);

    /* Key rotation: after set_jwks the cached verdict of a token signed by
     * the old key no longer holds (positive control: it was a hit before). */
    head_with(&h, "/x");
    add_hdr(&h, "authorization", "Bearer ", t2);
    CHECK(zt_jwt_authenticate_cached(rs, c, &h, NOW, &r) == ZT_JWT_VALID);
    zt_jwt_result_cleanup(&r);
    CHECK(zt_jwt_authenticate_cached(rs, c, &h, NOW, &r) == ZT_JWT_VALID);
    zt_jwt_result_cleanup(&r);
    zt_jwt_cache_counts(c, &hits, &misses);
    CHECK(hits == 2);
    char *j2 = slurp("jwks2.json");
    char err[256];
    CHECK(zt_jwt_rules_set_jwks(rs, 0, j2, strlen(j2), err, sizeof(err)) == 0);
    CHECK(zt_jwt_authenticate_cached(rs, c, &h, NOW, &r) == ZT_JWT_INVALID);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);
    /* NULL cache: a plain check. */
    head_with(&h, "/x");
    CHECK(zt_jwt_authenticate_cached(rs, NULL, &h, NOW, &r) == ZT_JWT_NONE);
    zt_jwt_result_cleanup(&r);
    zt_http_head_cleanup(&h);
    free(j2);
    free(t);
    free(t2);
    free(edge);
    zt_jwt_cache_free(c);
    zt_jwt_cache_free(NULL);
    zt_jwt_rules_free(rs);
}

static void test_two_rules(void)
{
    NEED_FIXTURES();
    /* A second issuer over jwks2 beside the first: each token goes to the
     * rule of its issuer; a token whose issuer is nowhere is invalid. */
    char *j2 = slurp("jwks2.json");
    struct zt_jwt_rules *rs = rules1(NULL);
    CHECK(rs);
    struct zt_jwt_rule_spec other = {.issuer = "https://evil.example", .jwks = j2};
    char err[256];
    CHECK(zt_jwt_rules_add(rs, &other, err, sizeof(err)) == 1);
    struct zt_jwt_result r;
    char *t = tok("wrong_iss"); /* iss evil.example, signed by k1: not in jwks2 */
    CHECK(zt_jwt_verify(rs, t, strlen(t), NULL, NOW, &r) == ZT_JWT_INVALID);
    CHECK_EQ_STR(r.reason, "Jwks doesn't have key to match kid or alg from Jwt");
    zt_jwt_result_cleanup(&r);
    free(t);
    t = tok("rs256");
    CHECK(zt_jwt_verify(rs, t, strlen(t), NULL, NOW, &r) == ZT_JWT_VALID);
    CHECK(r.rule == 0);
    zt_jwt_result_cleanup(&r);
    free(t);
    free(j2);
    zt_jwt_rules_free(rs);
}

int main(void)
{
    if (system("command -v node >/dev/null 2>&1") == 0 && mkdtemp(dir)) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "node tests/unit/jwt/mint.js %s", dir);
        have_fixtures = system(cmd) == 0;
    }
    RUN(test_valid_algorithms);
    RUN(test_result_fields);
    RUN(test_time_window);
    RUN(test_issuer_audience);
    RUN(test_signature_failures);
    RUN(test_refused_algorithms);
    RUN(test_malformed);
    RUN(test_caps_token_and_depth);
    RUN(test_caps_jwks);
    RUN(test_rotation_and_uri);
    RUN(test_rule_errors);
    RUN(test_default_locations);
    RUN(test_custom_locations_and_outputs);
    RUN(test_cookies);
    RUN(test_cache);
    RUN(test_two_rules);
    if (have_fixtures) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "  could not remove %s\n", dir);
    }
    return TEST_REPORT();
}
