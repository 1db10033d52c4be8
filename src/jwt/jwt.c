/* JWT checks for RequestAuthentication. RSA and EC signatures and JWK
 * parsing go through cjose (OpenSSL underneath); EdDSA, which cjose lacks,
 * goes to OpenSSL's EVP_DigestVerify with a key made by
 * EVP_PKEY_new_raw_public_key from the JWK's "x". This file decides which
 * key, which algorithms and which claims, with the rules of Envoy's
 * jwt_authn filter as Istio configures it. The reasons returned are Envoy's status texts, so a
 * 401 body reads the same as behind an Istio waypoint. */
#include "jwt/jwt.h"

#include <cjose/cjose.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/strmap.h"
#include "base/err.h"
#include "http/head.h"

enum alg_family { FAM_RSA, FAM_EC, FAM_OKP };

struct alg_info {
    const char *name;
    enum alg_family family;
    const char *crv; /* EC only: the curve the key must be on */
};

static const struct alg_info algs[] = {
    {"RS256", FAM_RSA, NULL},      {"RS384", FAM_RSA, NULL},   {"RS512", FAM_RSA, NULL},
    {"PS256", FAM_RSA, NULL},      {"PS384", FAM_RSA, NULL},   {"PS512", FAM_RSA, NULL},
    {"ES256", FAM_EC, "P-256"},    {"ES384", FAM_EC, "P-384"}, {"ES512", FAM_EC, "P-521"},
    {"EdDSA", FAM_OKP, "Ed25519"},
};

struct key {
    cjose_jwk_t *jwk;  /* RSA, EC */
    EVP_PKEY *ed25519; /* OKP */
    enum alg_family family;
    char *kid; /* NULL if the JWK has none */
    char *alg; /* the JWK's own "alg", NULL if none */
    char *crv; /* EC */
};

struct keyset {
    struct key *keys;
    size_t n;
};

struct rule {
    char *issuer;
    char **audiences;
    size_t n_audiences;
    char *jwks_uri;
    struct keyset keys;
    bool has_keys;
    struct zt_jwt_from_header *headers; /* owned strings */
    size_t n_headers;
    char **params;
    size_t n_params;
    char **cookies;
    size_t n_cookies;
    bool forward;
    char *payload_header;
    struct zt_jwt_claim_header *claim_headers; /* owned strings */
    size_t n_claim_headers;
};

struct zt_jwt_rules {
    struct rule *rules;
    size_t n;
    uint64_t id; /* unique per set and key-set change: the token cache's key */
};

/* Ids for rule sets (never reused, so a cache entry of a freed set can
 * never match a new one at the same address). */
static _Atomic uint64_t next_rules_id = 1;

/* Envoy's jwt_verify_lib status texts for the failures we can meet. */
#define R_FORMAT "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
#define R_HEADER "Jwt header is an invalid JSON"
#define R_ALG "Jwt header [alg] is not supported"
#define R_PAYLOAD "Jwt payload is an invalid JSON"
#define R_ISSUER "Jwt issuer is not configured"
#define R_EXPIRED "Jwt is expired"
#define R_NBF "Jwt not yet valid"
#define R_AUD "Audiences in Jwt are not allowed"
#define R_NOKEY "Jwks doesn't have key to match kid or alg from Jwt"
#define R_SIG "Jwt verification fails"
#define R_NOJWKS "Jwks remote fetch is failed"
#define R_TOO_LONG "Jwt is too long"
#define R_DEPTH "Jwt payload nests too deep"
#define R_MULTI "Jwt multiple tokens in one request"
#define R_CLAIM "Jwt payload has a claim of the wrong type"

const char *zt_jwt_status_str(enum zt_jwt_status st)
{
    switch (st) {
    case ZT_JWT_NONE:
        return "none";
    case ZT_JWT_VALID:
        return "valid";
    case ZT_JWT_INVALID:
        return "invalid";
    }
    return "?";
}

static void keyset_cleanup(struct keyset *ks)
{
    for (size_t i = 0; i < ks->n; i++) {
        cjose_jwk_release(ks->keys[i].jwk);
        EVP_PKEY_free(ks->keys[i].ed25519);
        free(ks->keys[i].kid);
        free(ks->keys[i].alg);
        free(ks->keys[i].crv);
    }
    free(ks->keys);
    ks->keys = NULL;
    ks->n = 0;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void rule_cleanup(struct rule *r)
{
    free(r->issuer);
    free_strv(r->audiences, r->n_audiences);
    free(r->jwks_uri);
    keyset_cleanup(&r->keys);
    for (size_t i = 0; i < r->n_headers; i++) {
        free((char *)r->headers[i].name);
        free((char *)r->headers[i].prefix);
    }
    free(r->headers);
    free_strv(r->params, r->n_params);
    free_strv(r->cookies, r->n_cookies);
    free(r->payload_header);
    for (size_t i = 0; i < r->n_claim_headers; i++) {
        free((char *)r->claim_headers[i].header);
        free((char *)r->claim_headers[i].claim);
    }
    free(r->claim_headers);
}

struct zt_jwt_rules *zt_jwt_rules_new(void)
{
    struct zt_jwt_rules *rs = zt_xcalloc(1, sizeof(struct zt_jwt_rules));
    rs->id = atomic_fetch_add(&next_rules_id, 1);
    return rs;
}

void zt_jwt_rules_free(struct zt_jwt_rules *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->n; i++)
        rule_cleanup(&rs->rules[i]);
    free(rs->rules);
    free(rs);
}

size_t zt_jwt_rules_count(const struct zt_jwt_rules *rs)
{
    return rs->n;
}

const char *zt_jwt_rules_jwks_uri(const struct zt_jwt_rules *rs, size_t idx)
{
    return idx < rs->n ? rs->rules[idx].jwks_uri : NULL;
}

static char *lower_dup(const char *s)
{
    char *d = zt_xstrdup(s);
    for (char *p = d; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

/* A header name as HTTP allows it (token characters). */
static bool is_header_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

static const char *json_str(const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Strict unpadded base64url (RFC 7515 2): the alphabet only, and no length
 * of 4n+1 characters, which no byte string encodes to. */
static bool b64url_strict(const char *s, size_t n)
{
    if (n % 4 == 1)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

/* The first member of an RSA or EC JWK that must be base64url and is not
 * (NULL if none): checked before cjose sees the key, whose decoder asserts
 * on some malformed input (an '=' inside a value) instead of failing. */
static const char *bad_b64_member(const json_t *k)
{
    static const char *const names[] = {"n", "e", "d", "p", "q", "dp", "dq", "qi", "x", "y"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const json_t *v = json_object_get(k, names[i]);
        if (v &&
            (!json_is_string(v) || !b64url_strict(json_string_value(v), json_string_length(v))))
            return names[i];
    }
    return NULL;
}

/* An OKP JWK's public key: Ed25519 only (Ed448, X25519: NULL, skipped). */
static int import_okp(const json_t *k, EVP_PKEY **out, char *err, size_t errlen, size_t i)
{
    const char *crv = json_str(k, "crv"), *x = json_str(k, "x");
    *out = NULL;
    if (!crv || strcmp(crv, "Ed25519") != 0)
        return 0;
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    cjose_err cerr;
    if (!x || !b64url_strict(x, strlen(x)) ||
        !cjose_base64url_decode(x, strlen(x), &raw, &raw_len, &cerr) || raw_len != 32) {
        if (raw)
            cjose_get_dealloc()(raw);
        return zt_errf(err, errlen, ZT_E_CONFIG, "jwks: key %zu: Ed25519 \"x\" is not 32 bytes", i);
    }
    *out = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, raw_len);
    cjose_get_dealloc()(raw);
    if (!*out)
        return zt_errf(err, errlen, ZT_E_CONFIG, "jwks: key %zu: not an Ed25519 key", i);
    return 0;
}

/* Parses a JWKS into *out. Keys of types we never verify with (oct: only
 * HMAC, which we refuse; OKP curves other than Ed25519) are skipped, as
 * Envoy skips unknown types; a broken RSA, EC or Ed25519 key fails the
 * whole set. */
static int parse_jwks(const char *json, size_t len, struct keyset *out, char *err, size_t errlen)
{
    int rc = 0;
    json_t *doc = NULL;
    struct keyset ks = {0};
    if (len > ZT_JWT_JWKS_MAX) {
        rc = zt_errf(err, errlen, ZT_E_TOO_BIG, "jwks: %zu bytes, over the %d byte cap", len,
                     ZT_JWT_JWKS_MAX);
        goto out;
    }
    json_error_t jerr;
    doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        rc = zt_errf(err, errlen, ZT_E_CONFIG, "jwks: line %d: %s", jerr.line, jerr.text);
        goto out;
    }
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        rc = zt_errf(err, errlen, ZT_E_CONFIG, "jwks: no \"keys\" array");
        goto out;
    }
    size_t n = json_array_size(keys);
    if (n > ZT_JWT_JWKS_KEYS_MAX) {
        rc = zt_errf(err, errlen, ZT_E_TOO_BIG, "jwks: %zu keys, over the cap of %d", n,
                     ZT_JWT_JWKS_KEYS_MAX);
        goto out;
    }
    ks.keys = zt_xcalloc(n ? n : 1, sizeof(*ks.keys));
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_array_get(keys, i);
        const char *kty = json_str(k, "kty");
        if (!json_is_object(k) || !kty) {
            rc = zt_errf(err, errlen, ZT_E_CONFIG, "jwks: key %zu: no \"kty\"", i);
            goto out;
        }
        enum alg_family fam;
        if (strcmp(kty, "RSA") == 0)
            fam = FAM_RSA;
        else if (strcmp(kty, "EC") == 0)
            fam = FAM_EC;
        else if (strcmp(kty, "OKP") == 0)
            fam = FAM_OKP;
        else
            continue;
        const char *use = json_str(k, "use");
        if (use && strcmp(use, "sig") != 0)
            continue;
        cjose_jwk_t *jwk = NULL;
        EVP_PKEY *ed = NULL;
        if (fam == FAM_OKP) {
            rc = import_okp(k, &ed, err, errlen, i);
            if (rc < 0)
                goto out;
            if (!ed)
                continue;
        } else {
            cjose_err cerr;
            const char *bad = bad_b64_member(k);
            if (bad) {
                rc = zt_errf(err, errlen, ZT_E_CONFIG, "jwks: key %zu: \"%s\" is not base64url", i,
                             bad);
                goto out;
            }
            jwk = cjose_jwk_import_json(k, &cerr);
            if (!jwk) {
                rc = zt_errf(err, errlen, ZT_E_CONFIG, "jwks: key %zu: %s", i, cerr.message);
                goto out;
            }
        }
        struct key *dst = &ks.keys[ks.n++];
        dst->jwk = jwk;
        dst->ed25519 = ed;
        dst->family = fam;
        const char *kid = json_str(k, "kid"), *alg = json_str(k, "alg"), *crv = json_str(k, "crv");
        dst->kid = kid ? zt_xstrdup(kid) : NULL;
        dst->alg = alg ? zt_xstrdup(alg) : NULL;
        dst->crv = crv ? zt_xstrdup(crv) : NULL;
    }
    if (ks.n == 0) {
        rc = zt_errf(err, errlen, ZT_E_CONFIG, "jwks: no RSA, EC or Ed25519 signing key");
        goto out;
    }
    *out = ks;
    ks = (struct keyset){0};
out:
    keyset_cleanup(&ks);
    json_decref(doc);
    return rc;
}

static int copy_strv(const char *const *src, size_t n, char ***dst, size_t *n_dst, const char *what,
                     char *err, size_t errlen)
{
    if (n > ZT_JWT_RULE_LIST_MAX)
        return zt_errf(err, errlen, ZT_E_TOO_BIG, "%s: %zu entries, over the cap of %d", what, n,
                       ZT_JWT_RULE_LIST_MAX);
    for (size_t i = 0; i < n; i++)
        if (!src[i] || !*src[i])
            return zt_errf(err, errlen, ZT_E_CONFIG, "%s[%zu]: empty", what, i);
    *dst = zt_xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        (*dst)[i] = zt_xstrdup(src[i]);
    *n_dst = n;
    return 0;
}

int zt_jwt_rules_add(struct zt_jwt_rules *rs, const struct zt_jwt_rule_spec *spec, char *err,
                     size_t errlen)
{
    int rc = 0;
    struct rule r = {0};
    if (rs->n >= ZT_JWT_RULES_MAX) {
        rc = zt_errf(err, errlen, ZT_E_TOO_BIG, "jwtRules: over the cap of %d", ZT_JWT_RULES_MAX);
        goto out;
    }
    if (!spec->issuer || !*spec->issuer) {
        rc = zt_errf(err, errlen, ZT_E_CONFIG, "issuer: required");
        goto out;
    }
    if (spec->jwks && spec->jwks_uri) {
        rc = zt_errf(err, errlen, ZT_E_CONFIG, "jwks and jwksUri: only one may be set");
        goto out;
    }
    if (spec->n_from_headers > ZT_JWT_RULE_LIST_MAX ||
        spec->n_output_claim_to_headers > ZT_JWT_RULE_LIST_MAX) {
        rc = zt_errf(err, errlen, ZT_E_TOO_BIG, "fromHeaders/outputClaimToHeaders: over the cap");
        goto out;
    }
    r.issuer = zt_xstrdup(spec->issuer);
    rc = copy_strv(spec->audiences, spec->n_audiences, &r.audiences, &r.n_audiences, "audiences",
                   err, errlen);
    if (rc < 0)
        goto out;
    rc = copy_strv(spec->from_params, spec->n_from_params, &r.params, &r.n_params, "fromParams",
                   err, errlen);
    if (rc < 0)
        goto out;
    rc = copy_strv(spec->from_cookies, spec->n_from_cookies, &r.cookies, &r.n_cookies,
                   "fromCookies", err, errlen);
    if (rc < 0)
        goto out;
    r.headers = zt_xcalloc(spec->n_from_headers + 1, sizeof(*r.headers));
    for (size_t i = 0; i < spec->n_from_headers; i++) {
        const struct zt_jwt_from_header *h = &spec->from_headers[i];
        if (!is_header_name(h->name)) {
            rc = zt_errf(err, errlen, ZT_E_CONFIG, "fromHeaders[%zu].name: not a header name", i);
            goto out;
        }
        r.headers[i].name = lower_dup(h->name);
        r.headers[i].prefix = zt_xstrdup(h->prefix ? h->prefix : "");
        r.n_headers++;
    }
    /* Istio's default location applies only when the rule names none. */
    if (spec->n_from_headers == 0 && spec->n_from_params == 0 && spec->n_from_cookies == 0) {
        r.headers[0].name = zt_xstrdup("authorization");
        r.headers[0].prefix = zt_xstrdup("Bearer ");
        r.n_headers = 1;
        free(r.params);
        r.params = zt_xcalloc(1, sizeof(char *));
        r.params[0] = zt_xstrdup("access_token");
        r.n_params = 1;
    }
    r.forward = spec->forward_original_token;
    if (spec->output_payload_to_header) {
        if (!is_header_name(spec->output_payload_to_header)) {
            rc = zt_errf(err, errlen, ZT_E_CONFIG, "outputPayloadToHeader: not a header name");
            goto out;
        }
        r.payload_header = lower_dup(spec->output_payload_to_header);
    }
    r.claim_headers = zt_xcalloc(spec->n_output_claim_to_headers + 1, sizeof(*r.claim_headers));
    for (size_t i = 0; i < spec->n_output_claim_to_headers; i++) {
        const struct zt_jwt_claim_header *c = &spec->output_claim_to_headers[i];
        if (!is_header_name(c->header) || !c->claim || !*c->claim) {
            rc = zt_errf(err, errlen, ZT_E_CONFIG,
                         "outputClaimToHeaders[%zu]: needs a header name and a claim", i);
            goto out;
        }
        r.claim_headers[i].header = lower_dup(c->header);
        r.claim_headers[i].claim = zt_xstrdup(c->claim);
        r.n_claim_headers++;
    }
    if (spec->jwks_uri)
        r.jwks_uri = zt_xstrdup(spec->jwks_uri);
    if (spec->jwks) {
        rc = parse_jwks(spec->jwks, strlen(spec->jwks), &r.keys, err, errlen);
        if (rc < 0)
            goto out;
        r.has_keys = true;
    }
    rs->rules = zt_xrealloc(rs->rules, (rs->n + 1) * sizeof(*rs->rules));
    rs->rules[rs->n] = r;
    rs->id = atomic_fetch_add(&next_rules_id, 1);
    r = (struct rule){0};
    rc = (int)rs->n++;
out:
    rule_cleanup(&r);
    return rc;
}

int zt_jwt_rules_set_jwks(struct zt_jwt_rules *rs, size_t idx, const char *json, size_t len,
                          char *err, size_t errlen)
{
    if (idx >= rs->n)
        return zt_errf(err, errlen, ZT_E_NOT_FOUND, "jwt rule %zu: no such rule", idx);
    struct keyset ks;
    int rc = parse_jwks(json, len, &ks, err, errlen);
    if (rc < 0)
        return rc;
    keyset_cleanup(&rs->rules[idx].keys);
    rs->rules[idx].keys = ks;
    rs->id = atomic_fetch_add(&next_rules_id, 1); /* cached verdicts no longer hold */
    rs->rules[idx].has_keys = true;
    return 0;
}

/* ---- checking a token ---- */

/* Depth of a JSON value: a scalar is 0, an object or array 1 + its
 * deepest member. The result is exact up to `limit`; past it, some value
 * over `limit` comes back without looking deeper, so a hostile payload
 * costs no more than the cap. */
static int json_depth(const json_t *v, int limit)
{
    bool is_obj = json_is_object(v);
    if (!is_obj && !json_is_array(v))
        return 0;
    if (limit < 1)
        return 1;
    size_t n = is_obj ? json_object_size(v) : json_array_size(v);
    void *it = is_obj ? json_object_iter((json_t *)v) : NULL;
    int d = 0;
    for (size_t i = 0; i < n && d < limit; i++) {
        const json_t *m = is_obj ? json_object_iter_value(it) : json_array_get(v, i);
        if (is_obj)
            it = json_object_iter_next((json_t *)v, it);
        int md = json_depth(m, limit - 1);
        if (md > d)
            d = md;
    }
    return d + 1;
}

/* Envoy compares audiences without an http(s):// scheme and trailing '/'. */
static bool aud_eq(const char *a, const char *b)
{
    const char *sa = a, *sb = b;
    size_t la, lb;
    if (strncmp(sa, "https://", 8) == 0)
        sa += 8;
    else if (strncmp(sa, "http://", 7) == 0)
        sa += 7;
    if (strncmp(sb, "https://", 8) == 0)
        sb += 8;
    else if (strncmp(sb, "http://", 7) == 0)
        sb += 7;
    la = strlen(sa);
    lb = strlen(sb);
    if (la && sa[la - 1] == '/')
        la--;
    if (lb && sb[lb - 1] == '/')
        lb--;
    return la == lb && memcmp(sa, sb, la) == 0;
}

static bool rule_has_location(const struct rule *r, const struct zt_jwt_location *loc)
{
    if (!loc)
        return true;
    if (loc->is_cookie) {
        for (size_t i = 0; i < r->n_cookies; i++)
            if (strcmp(r->cookies[i], loc->name) == 0)
                return true;
        return false;
    }
    if (loc->is_param) {
        for (size_t i = 0; i < r->n_params; i++)
            if (strcmp(r->params[i], loc->name) == 0)
                return true;
        return false;
    }
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, loc->name) == 0)
            return true;
    return false;
}

/* A time claim: absent is fine; present it must be a number. */
static int time_claim(const json_t *payload, const char *name, bool *has, int64_t *val)
{
    const json_t *v = json_object_get(payload, name);
    *has = false;
    if (!v)
        return 0;
    if (json_is_integer(v))
        *val = (int64_t)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) > -9e18 && json_real_value(v) < 9e18)
        *val = (int64_t)json_real_value(v);
    else
        return -1;
    *has = true;
    return 0;
}

/* What a signature check needs: cjose's parsed token for RSA/EC (made on
 * first use), the signing input and raw signature for Ed25519. */
struct sig_ctx {
    const char *tok;
    size_t len;
    cjose_jws_t *jws;
    bool import_failed;
    const char *input; /* header.payload */
    size_t input_len;
    const char *sig_b64;
    size_t sig_b64_len;
};

static bool verify_ed25519(const struct sig_ctx *c, EVP_PKEY *pkey)
{
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    cjose_err cerr;
    bool ok = false;
    EVP_MD_CTX *md = NULL;
    if (!cjose_base64url_decode(c->sig_b64, c->sig_b64_len, &sig, &sig_len, &cerr))
        goto out;
    md = EVP_MD_CTX_new();
    if (!md)
        abort(); /* out of memory */
    ok = EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey) == 1 &&
         EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)c->input, c->input_len) == 1;
out:
    EVP_MD_CTX_free(md);
    if (sig)
        cjose_get_dealloc()(sig);
    return ok;
}

static bool try_key(struct sig_ctx *c, const struct key *k, const struct alg_info *ai)
{
    if (k->family != ai->family)
        return false;
    if (k->alg && strcmp(k->alg, ai->name) != 0)
        return false;
    if (ai->crv && (!k->crv || strcmp(k->crv, ai->crv) != 0))
        return false;
    if (ai->family == FAM_OKP)
        return verify_ed25519(c, k->ed25519);
    cjose_err cerr;
    if (!c->jws && !c->import_failed) {
        c->jws = cjose_jws_import(c->tok, c->len, &cerr);
        c->import_failed = !c->jws;
    }
    return c->jws && cjose_jws_verify(c->jws, k->jwk, &cerr);
}

static enum zt_jwt_status invalid(struct zt_jwt_result *res, const char *reason)
{
    res->status = ZT_JWT_INVALID;
    res->reason = reason;
    return ZT_JWT_INVALID;
}

static void fill_valid(struct zt_jwt_result *res, size_t rule, json_t *payload, const char *tok,
                       size_t pay_off, size_t pay_len)
{
    const char *iss = json_str(payload, "iss"), *sub = json_str(payload, "sub");
    const char *azp = json_str(payload, "azp");
    res->status = ZT_JWT_VALID;
    res->reason = NULL;
    res->rule = rule;
    res->issuer = zt_xstrdup(iss);
    if (sub) {
        res->subject = zt_xstrdup(sub);
        size_t n = strlen(iss) + 1 + strlen(sub) + 1;
        res->principal = zt_xmalloc(n);
        snprintf(res->principal, n, "%s/%s", iss, sub);
    }
    res->presenter = azp ? zt_xstrdup(azp) : NULL;
    const json_t *aud = json_object_get(payload, "aud");
    if (json_is_string(aud)) {
        res->audiences = zt_xcalloc(1, sizeof(char *));
        res->audiences[0] = zt_xstrdup(json_string_value(aud));
        res->n_audiences = 1;
    } else if (json_is_array(aud)) {
        res->audiences = zt_xcalloc(json_array_size(aud) + 1, sizeof(char *));
        size_t i;
        json_t *a;
        json_array_foreach(aud, i, a)
        {
            if (json_is_string(a))
                res->audiences[res->n_audiences++] = zt_xstrdup(json_string_value(a));
        }
    }
    res->claims = json_incref(payload);
    res->payload_b64 = zt_xstrndup(tok + pay_off, pay_len);
}

/* Checks everything but the token search; res->status is not yet set by
 * the caller. */
static enum zt_jwt_status check_token(const struct zt_jwt_rules *rs, const char *tok, size_t len,
                                      const struct zt_jwt_location *loc, int64_t now,
                                      struct zt_jwt_result *res)
{
    enum zt_jwt_status st;
    struct sig_ctx sc = {.tok = tok, .len = len};
    json_t *hdr = NULL, *payload = NULL;
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    cjose_err cerr;

    if (len > ZT_JWT_TOKEN_MAX)
        return invalid(res, R_TOO_LONG);
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) || d1 == tok ||
        d2 == d1 + 1 || !b64url_strict(tok, (size_t)(d1 - tok)) ||
        !b64url_strict(d1 + 1, (size_t)(d2 - d1 - 1)) ||
        !b64url_strict(d2 + 1, (size_t)(tok + len - d2 - 1)))
        return invalid(res, R_FORMAT);
    sc.input = tok;
    sc.input_len = (size_t)(d2 - tok);
    sc.sig_b64 = d2 + 1;
    sc.sig_b64_len = (size_t)(tok + len - d2 - 1);

    /* The header is read here, before cjose sees the token, so that only
     * the algorithms we allow ever reach its verify path (cjose would run
     * HS256 with whatever bytes the key holds). */
    uint8_t *hraw = NULL;
    size_t hraw_len = 0;
    if (!cjose_base64url_decode(tok, (size_t)(d1 - tok), &hraw, &hraw_len, &cerr)) {
        st = invalid(res, R_HEADER);
        goto out;
    }
    json_error_t jerr;
    hdr = json_loadb((const char *)hraw, hraw_len, JSON_REJECT_DUPLICATES, &jerr);
    cjose_get_dealloc()(hraw);
    if (!json_is_object(hdr) ||
        json_depth(hdr, ZT_JWT_CLAIMS_DEPTH_MAX) > ZT_JWT_CLAIMS_DEPTH_MAX) {
        st = invalid(res, R_HEADER);
        goto out;
    }
    const char *alg = json_str(hdr, "alg");
    const json_t *kidv = json_object_get(hdr, "kid");
    const struct alg_info *ai = NULL;
    for (size_t i = 0; alg && i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcmp(alg, algs[i].name) == 0)
            ai = &algs[i];
    if (!ai) {
        st = invalid(res, R_ALG);
        goto out;
    }
    if (kidv && !json_is_string(kidv)) {
        st = invalid(res, R_HEADER);
        goto out;
    }
    /* An empty signature (as alg "none" tokens end) is let through the
     * format check so that such a token is refused for its alg, as Envoy
     * does; with an allowed alg it cannot verify. */
    if (sc.sig_b64_len == 0) {
        st = invalid(res, R_SIG);
        goto out;
    }
    if (!cjose_base64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &plain, &plain_len, &cerr)) {
        st = invalid(res, R_PAYLOAD);
        goto out;
    }
    payload = json_loadb((const char *)plain, plain_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(payload)) {
        st = invalid(res, R_PAYLOAD);
        goto out;
    }
    if (json_depth(payload, ZT_JWT_CLAIMS_DEPTH_MAX) > ZT_JWT_CLAIMS_DEPTH_MAX) {
        st = invalid(res, R_DEPTH);
        goto out;
    }
    const char *iss = json_str(payload, "iss");
    const json_t *aud = json_object_get(payload, "aud");
    if ((json_object_get(payload, "iss") && !iss) ||
        (json_object_get(payload, "sub") && !json_str(payload, "sub")) ||
        (json_object_get(payload, "azp") && !json_str(payload, "azp")) ||
        (aud && !json_is_string(aud) && !json_is_array(aud))) {
        st = invalid(res, R_CLAIM);
        goto out;
    }
    size_t ri = 0;
    const struct rule *r = NULL;
    for (; iss && ri < rs->n; ri++)
        if (strcmp(rs->rules[ri].issuer, iss) == 0 && rule_has_location(&rs->rules[ri], loc)) {
            r = &rs->rules[ri];
            break;
        }
    if (!r) {
        st = invalid(res, R_ISSUER);
        goto out;
    }
    bool has_exp, has_nbf;
    int64_t exp = 0, nbf = 0;
    if (time_claim(payload, "exp", &has_exp, &exp) < 0 ||
        time_claim(payload, "nbf", &has_nbf, &nbf) < 0) {
        st = invalid(res, R_CLAIM);
        goto out;
    }
    /* Written so that no claim value can overflow (now is ours, sane). */
    if (has_nbf && nbf > now + ZT_JWT_CLOCK_SKEW_S) {
        st = invalid(res, R_NBF);
        goto out;
    }
    if (has_exp && exp < now - ZT_JWT_CLOCK_SKEW_S) {
        st = invalid(res, R_EXPIRED);
        goto out;
    }
    if (r->n_audiences) {
        bool ok = false;
        if (json_is_string(aud)) {
            for (size_t i = 0; !ok && i < r->n_audiences; i++)
                ok = aud_eq(r->audiences[i], json_string_value(aud));
        } else if (json_is_array(aud)) {
            size_t j;
            json_t *a;
            json_array_foreach(aud, j, a)
            {
                for (size_t i = 0; !ok && json_is_string(a) && i < r->n_audiences; i++)
                    ok = aud_eq(r->audiences[i], json_string_value(a));
            }
        }
        if (!ok) {
            st = invalid(res, R_AUD);
            goto out;
        }
    }
    if (!r->has_keys) {
        st = invalid(res, R_NOJWKS);
        goto out;
    }
    const char *kid = kidv ? json_string_value(kidv) : NULL;
    bool tried = false, ok = false;
    for (size_t i = 0; !ok && i < r->keys.n; i++) {
        const struct key *k = &r->keys.keys[i];
        if (kid && (!k->kid || strcmp(k->kid, kid) != 0))
            continue;
        tried = true;
        ok = try_key(&sc, k, ai);
    }
    if (!ok) {
        st = invalid(res, tried ? R_SIG : R_NOKEY);
        goto out;
    }
    fill_valid(res, ri, payload, tok, (size_t)(d1 + 1 - tok), (size_t)(d2 - d1 - 1));
    res->has_exp = has_exp;
    res->has_nbf = has_nbf;
    res->exp = exp;
    res->nbf = nbf;
    st = ZT_JWT_VALID;
out:
    json_decref(hdr);
    json_decref(payload);
    if (plain)
        cjose_get_dealloc()(plain);
    cjose_jws_release(sc.jws);
    return st;
}

enum zt_jwt_status zt_jwt_verify(const struct zt_jwt_rules *rs, const char *token, size_t len,
                                 const struct zt_jwt_location *loc, int64_t now,
                                 struct zt_jwt_result *res)
{
    memset(res, 0, sizeof(*res));
    return check_token(rs, token, len, loc, now, res);
}

/* ---- finding tokens in a request ---- */

struct found_tok {
    const char *p;
    size_t len;
};

/* Records one occurrence; returns false when the cap is reached. */
enum { LOC_HEADER, LOC_PARAM, LOC_COOKIE };

static bool add_found(struct zt_jwt_result *res, struct found_tok *toks, int kind, const char *name,
                      const char *p, size_t len)
{
    bool is_param = kind == LOC_PARAM, is_cookie = kind == LOC_COOKIE;
    for (size_t i = 0; i < res->n_found; i++)
        if (res->found[i].is_param == is_param && res->found[i].is_cookie == is_cookie &&
            strcasecmp(res->found[i].name, name) == 0 && toks[i].len == len &&
            memcmp(toks[i].p, p, len) == 0)
            return true; /* the same token seen through a second rule */
    if (res->n_found == ZT_JWT_FOUND_MAX)
        return false;
    res->found[res->n_found].is_param = is_param;
    res->found[res->n_found].is_cookie = is_cookie;
    res->found[res->n_found].name = zt_xstrdup(name);
    toks[res->n_found] = (struct found_tok){p, len};
    res->n_found++;
    return true;
}

static void trim(const char **p, size_t *len)
{
    while (*len && (**p == ' ' || **p == '\t')) {
        (*p)++;
        (*len)--;
    }
    while (*len && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        (*len)--;
}

/* Every `name=value` pair of the Cookie fields (RFC 6265: pairs split by
 * ';', optional spaces, a value optionally in double quotes) whose name is
 * `name`; false if over the cap. */
static bool find_cookie(const struct zt_http_head *head, const char *name,
                        struct zt_jwt_result *res, struct found_tok *toks)
{
    size_t nlen = strlen(name);
    for (size_t f = 0; f < head->n_fields; f++) {
        if (strcmp(head->fields[f].name, "cookie") != 0)
            continue;
        const char *s = head->fields[f].value;
        while (*s) {
            size_t seg = strcspn(s, ";");
            const char *p = s;
            size_t len = seg;
            trim(&p, &len);
            if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
                const char *v = p + nlen + 1;
                size_t vlen = len - nlen - 1;
                if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                    v++;
                    vlen -= 2;
                }
                if (vlen && !add_found(res, toks, LOC_COOKIE, name, v, vlen))
                    return false;
            }
            s += seg;
            if (*s == ';')
                s++;
        }
    }
    return true;
}

/* Collects every token of every rule's locations; false if over the cap. */
static bool find_tokens(const struct zt_jwt_rules *rs, const struct zt_http_head *head,
                        struct zt_jwt_result *res, struct found_tok *toks)
{
    const char *query = head->path ? strchr(head->path, '?') : NULL;
    for (size_t ri = 0; ri < rs->n; ri++) {
        const struct rule *r = &rs->rules[ri];
        for (size_t hi = 0; hi < r->n_headers; hi++) {
            const char *name = r->headers[hi].name, *prefix = r->headers[hi].prefix;
            size_t plen = strlen(prefix);
            for (size_t f = 0; f < head->n_fields; f++) {
                if (strcmp(head->fields[f].name, name) != 0)
                    continue;
                const char *v = head->fields[f].value;
                size_t vlen = strlen(v);
                if (vlen < plen || strncasecmp(v, prefix, plen) != 0)
                    continue;
                v += plen;
                vlen -= plen;
                trim(&v, &vlen);
                if (vlen && !add_found(res, toks, LOC_HEADER, name, v, vlen))
                    return false;
            }
        }
        for (size_t pi = 0; query && pi < r->n_params; pi++) {
            const char *name = r->params[pi];
            size_t nlen = strlen(name);
            const char *s = query + 1;
            while (*s && *s != '#') {
                size_t seg = strcspn(s, "&#");
                if (seg > nlen && strncmp(s, name, nlen) == 0 && s[nlen] == '=' &&
                    !add_found(res, toks, LOC_PARAM, name, s + nlen + 1, seg - nlen - 1))
                    return false;
                s += seg;
                if (*s == '&')
                    s++;
            }
        }
        for (size_t ci = 0; ci < r->n_cookies; ci++)
            if (!find_cookie(head, r->cookies[ci], res, toks))
                return false;
    }
    return true;
}

static enum zt_jwt_status check_cached(const struct zt_jwt_rules *rs, struct zt_jwt_cache *c,
                                       const char *tok, size_t len, int64_t now,
                                       struct zt_jwt_result *res);

/* The search, then the one distinct token checked (through c if not NULL):
 * it must suit a rule at one of the places it was found; the first
 * location stands for all (the same text). */
static enum zt_jwt_status authenticate(const struct zt_jwt_rules *rs, struct zt_jwt_cache *c,
                                       const struct zt_http_head *head, int64_t now,
                                       struct zt_jwt_result *res)
{
    struct found_tok toks[ZT_JWT_FOUND_MAX];
    memset(res, 0, sizeof(*res));
    if (!find_tokens(rs, head, res, toks))
        return invalid(res, R_MULTI);
    if (res->n_found == 0) {
        res->status = ZT_JWT_NONE;
        return ZT_JWT_NONE;
    }
    for (size_t i = 1; i < res->n_found; i++)
        if (toks[i].len != toks[0].len || memcmp(toks[i].p, toks[0].p, toks[0].len) != 0)
            return invalid(res, R_MULTI);
    if (c)
        return check_cached(rs, c, toks[0].p, toks[0].len, now, res);
    return check_token(rs, toks[0].p, toks[0].len, &res->found[0], now, res);
}

enum zt_jwt_status zt_jwt_authenticate(const struct zt_jwt_rules *rs,
                                       const struct zt_http_head *head, int64_t now,
                                       struct zt_jwt_result *res)
{
    return authenticate(rs, NULL, head, now, res);
}

/* ---- the verified-token cache ---- */

struct cache_entry {
    uint64_t rules_id;
    uint64_t hash;
    char *token; /* NULL: empty slot */
    size_t len;
    struct zt_jwt_location loc; /* where it was found (rules match on it) */
    struct zt_jwt_result res;   /* VALID, without found[] */
};

struct zt_jwt_cache {
    struct cache_entry *slots;
    size_t mask;
    uint64_t key[2];
    uint64_t hits, misses;
};

struct zt_jwt_cache *zt_jwt_cache_new(size_t slots)
{
    size_t n = 1;
    while (n < slots && n < ZT_JWT_CACHE_MAX)
        n <<= 1;
    struct zt_jwt_cache *c = zt_xcalloc(1, sizeof(*c));
    c->slots = zt_xcalloc(n, sizeof(*c->slots));
    c->mask = n - 1;
    arc4random_buf(c->key, sizeof(c->key));
    return c;
}

static void entry_clear(struct cache_entry *e)
{
    free(e->token);
    free(e->loc.name);
    zt_jwt_result_cleanup(&e->res);
    memset(e, 0, sizeof(*e));
}

void zt_jwt_cache_free(struct zt_jwt_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i <= c->mask; i++)
        entry_clear(&c->slots[i]);
    free(c->slots);
    free(c);
}

void zt_jwt_cache_counts(const struct zt_jwt_cache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = c ? c->hits : 0;
    *misses = c ? c->misses : 0;
}

static char **strv_dup(char *const *v, size_t n)
{
    char **out = zt_xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        out[i] = zt_xstrdup(v[i]);
    return out;
}

/* A deep copy of a VALID result's token fields (not found[]). */
static void result_copy(struct zt_jwt_result *dst, const struct zt_jwt_result *src)
{
    dst->status = src->status;
    dst->rule = src->rule;
    dst->principal = src->principal ? zt_xstrdup(src->principal) : NULL;
    dst->issuer = src->issuer ? zt_xstrdup(src->issuer) : NULL;
    dst->subject = src->subject ? zt_xstrdup(src->subject) : NULL;
    dst->audiences = strv_dup(src->audiences, src->n_audiences);
    dst->n_audiences = src->n_audiences;
    dst->presenter = src->presenter ? zt_xstrdup(src->presenter) : NULL;
    dst->claims = json_incref(src->claims);
    dst->payload_b64 = src->payload_b64 ? zt_xstrdup(src->payload_b64) : NULL;
    dst->has_exp = src->has_exp;
    dst->has_nbf = src->has_nbf;
    dst->exp = src->exp;
    dst->nbf = src->nbf;
}

static bool same_loc(const struct zt_jwt_location *a, const struct zt_jwt_location *b)
{
    return a->is_param == b->is_param && a->is_cookie == b->is_cookie &&
           strcmp(a->name, b->name) == 0;
}

enum zt_jwt_status zt_jwt_authenticate_cached(const struct zt_jwt_rules *rs, struct zt_jwt_cache *c,
                                              const struct zt_http_head *head, int64_t now,
                                              struct zt_jwt_result *res)
{
    return authenticate(rs, c, head, now, res);
}

static enum zt_jwt_status check_cached(const struct zt_jwt_rules *rs, struct zt_jwt_cache *c,
                                       const char *tok, size_t len, int64_t now,
                                       struct zt_jwt_result *res)
{
    uint64_t h = zt_siphash(c->key, tok, len) ^ rs->id;
    struct cache_entry *e = &c->slots[h & c->mask];
    /* A hit must be the same token, found in the same place, for the same
     * rules and keys, and still within its time window. */
    if (e->token && e->rules_id == rs->id && e->hash == h && e->len == len &&
        memcmp(e->token, tok, len) == 0 && same_loc(&e->loc, &res->found[0]) &&
        !(e->res.has_nbf && e->res.nbf > now + ZT_JWT_CLOCK_SKEW_S) &&
        !(e->res.has_exp && e->res.exp < now - ZT_JWT_CLOCK_SKEW_S)) {
        c->hits++;
        result_copy(res, &e->res);
        return ZT_JWT_VALID;
    }
    c->misses++;
    enum zt_jwt_status st = check_token(rs, tok, len, &res->found[0], now, res);
    if (st != ZT_JWT_VALID)
        return st;
    entry_clear(e);
    e->rules_id = rs->id;
    e->hash = h;
    e->token = zt_xmalloc(len);
    memcpy(e->token, tok, len);
    e->len = len;
    e->loc = (struct zt_jwt_location){res->found[0].is_param, res->found[0].is_cookie,
                                      zt_xstrdup(res->found[0].name)};
    result_copy(&e->res, res);
    return st;
}

const json_t *zt_jwt_claim(const json_t *claims, const char *const *names, size_t n_names)
{
    const json_t *v = claims;
    for (size_t i = 0; v && i < n_names; i++)
        v = json_is_object(v) ? json_object_get(v, names[i]) : NULL;
    return v;
}

/* The claim at a dotted path ("a.b"), as Envoy's claim_to_headers. */
static const json_t *claim_dotted(const json_t *claims, const char *path)
{
    const json_t *v = claims;
    const char *s = path;
    while (v && *s) {
        size_t n = strcspn(s, ".");
        char name[256];
        if (n >= sizeof(name) || !json_is_object(v))
            return NULL;
        memcpy(name, s, n);
        name[n] = '\0';
        v = json_object_get(v, name);
        s += n;
        if (*s == '.')
            s++;
    }
    return v;
}

/* A header value for a string, integer or boolean claim; NULL for other
 * types and for strings a header cannot carry (control characters). */
static char *claim_value(const json_t *v)
{
    char buf[32];
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return NULL;
        return zt_xstrndup(s, n);
    }
    if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return zt_xstrdup(buf);
    }
    if (json_is_boolean(v))
        return zt_xstrdup(json_is_true(v) ? "true" : "false");
    return NULL;
}

int zt_jwt_apply(const struct zt_jwt_rules *rs, const struct zt_jwt_result *res,
                 struct zt_http_head *head)
{
    for (size_t ri = 0; ri < rs->n; ri++) {
        const struct rule *r = &rs->rules[ri];
        if (r->payload_header)
            zt_http_head_remove(head, r->payload_header);
        for (size_t i = 0; i < r->n_claim_headers; i++)
            zt_http_head_remove(head, r->claim_headers[i].header);
    }
    if (res->status != ZT_JWT_VALID)
        return 0;
    const struct rule *r = &rs->rules[res->rule];
    if (!r->forward)
        for (size_t i = 0; i < res->n_found; i++)
            if (!res->found[i].is_param && !res->found[i].is_cookie)
                zt_http_head_remove(head, res->found[i].name);
    if (r->payload_header && zt_http_head_set(head, r->payload_header, res->payload_b64) < 0)
        return ZT_E_TOO_BIG;
    for (size_t i = 0; i < r->n_claim_headers; i++) {
        char *v = claim_value(claim_dotted(res->claims, r->claim_headers[i].claim));
        int rc = v ? zt_http_head_set(head, r->claim_headers[i].header, v) : 0;
        free(v);
        if (rc < 0)
            return ZT_E_TOO_BIG;
    }
    return 0;
}

void zt_jwt_result_cleanup(struct zt_jwt_result *res)
{
    free(res->principal);
    free(res->issuer);
    free(res->subject);
    free_strv(res->audiences, res->n_audiences);
    free(res->presenter);
    json_decref(res->claims);
    free(res->payload_b64);
    for (size_t i = 0; i < res->n_found; i++)
        free(res->found[i].name);
    memset(res, 0, sizeof(*res));
}
