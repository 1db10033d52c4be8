/* JWT request authentication with Istio's RequestAuthentication semantics,
 * sans-I/O: a compiled rule set (one rule per `jwtRules` entry) and a check
 * of one request head against it. No clock reads, no sockets, no logging.
 *
 * Usage:
 *   struct zt_jwt_rules *rs = zt_jwt_rules_new();
 *   struct zt_jwt_rule_spec spec = {.issuer = "https://issuer", .jwks = json};
 *   if (zt_jwt_rules_add(rs, &spec, err, sizeof err) < 0) ...config error...
 *   struct zt_jwt_result r;
 *   switch (zt_jwt_authenticate(rs, head, time(NULL), &r)) {
 *   case ZT_JWT_NONE:    pass on, no request.auth.* attributes
 *   case ZT_JWT_VALID:   r.principal, r.claims...; zt_jwt_apply(rs, &r, head)
 *   case ZT_JWT_INVALID: answer 401 with r.reason
 *   }
 *   zt_jwt_result_cleanup(&r);
 *
 * Semantics (docs/waypoint-security.md gives the order of checks and why):
 * - A token is looked for in every location of every rule (headers,
 *   query parameters, cookies; a rule naming none: `Authorization: Bearer
 *   <t>` and query parameter `access_token`). None
 *   found: ZT_JWT_NONE. More than one distinct token: ZT_JWT_INVALID (Istio
 *   leaves such requests undefined; we refuse them).
 * - The token must name (`iss`) the issuer of a rule that looks in the
 *   location the token came from, else it is invalid. It must carry an
 *   audience of the rule when the rule lists audiences, be within `exp` and
 *   `nbf` give or take ZT_JWT_CLOCK_SKEW_S, and be signed by a key of the
 *   rule's JWKS: the key whose `kid` matches, or with no `kid` in the token,
 *   any key of the algorithm's type. `alg` must be RS256/384/512,
 *   PS256/384/512, ES256/384/512 or EdDSA (Ed25519 keys): `none` and HS* (a
 *   public key used as an HMAC secret) are refused.
 *
 * Threads: a rule set is not locked. zt_jwt_rules_set_jwks changes it in
 * place, so it must not run while another thread checks tokens against the
 * same set; a fetcher serving worker threads builds a new set and swaps it,
 * as the state snapshots are swapped. */
#ifndef ZT_JWT_JWT_H
#define ZT_JWT_JWT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zt_http_head;

/* Caps on peer and configuration input. */
#define ZT_JWT_TOKEN_MAX 8192       /* bytes of one token (Envoy's 8 KiB header budget) */
#define ZT_JWT_CLAIMS_DEPTH_MAX 16  /* nesting of the payload (the payload object is 1) */
#define ZT_JWT_JWKS_MAX (64 * 1024) /* bytes of one JWKS document */
#define ZT_JWT_JWKS_KEYS_MAX 32     /* keys in one JWKS */
#define ZT_JWT_FOUND_MAX 8          /* token occurrences looked at in one request */
#define ZT_JWT_CLOCK_SKEW_S 60      /* Envoy's default clock_skew_seconds */
#define ZT_JWT_RULES_MAX 64         /* rules in one set */
#define ZT_JWT_RULE_LIST_MAX 32     /* audiences, locations, claim headers per rule */

/* Where a rule looks for a token: header `name` whose value starts with
 * `prefix` (compared case-insensitively; NULL or "" takes the whole value). */
struct zt_jwt_from_header {
    const char *name;
    const char *prefix;
};

/* outputClaimToHeaders: the value of `claim` (nested with '.', "a.b") is
 * copied to request header `header` when it is a string, integer or bool. */
struct zt_jwt_claim_header {
    const char *header;
    const char *claim;
};

/* One RequestAuthentication jwtRule. Every pointer is borrowed for the call
 * to zt_jwt_rules_add, which copies what it keeps. */
struct zt_jwt_rule_spec {
    const char *issuer; /* required */
    const char *const *audiences;
    size_t n_audiences;
    const char *jwks;                              /* inline JWKS JSON, or NULL */
    const char *jwks_uri;                          /* kept for a fetcher; exclusive with jwks */
    const struct zt_jwt_from_header *from_headers; /* none: Authorization "Bearer " */
    size_t n_from_headers;
    const char *const *from_params; /* none (and no other location): access_token */
    size_t n_from_params;
    const char *const *from_cookies; /* cookie names (Cookie header) */
    size_t n_from_cookies;
    bool forward_original_token;
    const char *output_payload_to_header; /* or NULL */
    const struct zt_jwt_claim_header *output_claim_to_headers;
    size_t n_output_claim_to_headers;
};

struct zt_jwt_rules;

struct zt_jwt_rules *zt_jwt_rules_new(void);
/* NULL is a no-op. */
void zt_jwt_rules_free(struct zt_jwt_rules *rs);

/* Compiles `spec` into a new rule; returns its index (>= 0), or ZT_E_CONFIG
 * (missing issuer, jwks and jwks_uri both set, a JWKS that does not parse,
 * an empty name) or ZT_E_TOO_BIG (over a cap) with a reason in err. A rule
 * with jwks_uri and no key set yet makes its tokens invalid
 * ("Jwks remote fetch is failed", as Envoy) until zt_jwt_rules_set_jwks. */
int zt_jwt_rules_add(struct zt_jwt_rules *rs, const struct zt_jwt_rule_spec *spec, char *err,
                     size_t errlen);
size_t zt_jwt_rules_count(const struct zt_jwt_rules *rs);
/* The jwksUri of rule `idx` (NULL when inline or out of range); borrowed
 * from the set. */
const char *zt_jwt_rules_jwks_uri(const struct zt_jwt_rules *rs, size_t idx);

/* Replaces rule `idx`'s key set with the JWKS in json[0..len) (a fetched
 * one: rotation). On any error the old set stays and an error comes back:
 * ZT_E_TOO_BIG (over ZT_JWT_JWKS_MAX bytes or ZT_JWT_JWKS_KEYS_MAX keys),
 * ZT_E_CONFIG (not JSON, no "keys" array, a bad RSA/EC/Ed25519 key, no
 * usable key), ZT_E_NOT_FOUND (no such rule). Keys of other types (oct, OKP
 * curves other than Ed25519) are skipped. */
int zt_jwt_rules_set_jwks(struct zt_jwt_rules *rs, size_t idx, const char *json, size_t len,
                          char *err, size_t errlen);

enum zt_jwt_status {
    ZT_JWT_NONE,    /* no token in any configured location */
    ZT_JWT_VALID,   /* one token, valid */
    ZT_JWT_INVALID, /* a token that fails: answer 401 */
};
const char *zt_jwt_status_str(enum zt_jwt_status st);

/* Where the token was found. */
struct zt_jwt_location {
    bool is_param;  /* query parameter (never removed, as Envoy) */
    bool is_cookie; /* cookie (never removed, as Envoy); neither: header */
    char *name;     /* header name (lower case), parameter or cookie name; owned */
};

/* The outcome of one check. Every pointer is owned by the result and freed
 * by zt_jwt_result_cleanup; all are NULL/0 unless status is VALID, except
 * reason (INVALID) and the locations (VALID and INVALID). */
struct zt_jwt_result {
    enum zt_jwt_status status;
    const char *reason; /* static text for the 401 body, e.g. "Jwt is expired" */
    size_t rule;        /* index of the rule that accepted the token */
    char *principal;    /* "<iss>/<sub>"; NULL without a sub */
    char *issuer, *subject;
    char **audiences; /* `aud` as a list (a string aud is one item) */
    size_t n_audiences;
    char *presenter;       /* `azp`, or NULL */
    json_t *claims;        /* the payload object; one reference held */
    char *payload_b64;     /* the token's payload segment (outputPayloadToHeader) */
    bool has_exp, has_nbf; /* VALID: the token's exp and nbf, for a cache */
    int64_t exp, nbf;
    struct zt_jwt_location found[ZT_JWT_FOUND_MAX];
    size_t n_found;
};

/* Looks for tokens in `head` (its headers, and the query of head->path) for
 * every rule and checks the one found. `now` is Unix time in seconds. Fills
 * *res (caller cleans it up in every case) and returns res->status. */
enum zt_jwt_status zt_jwt_authenticate(const struct zt_jwt_rules *rs,
                                       const struct zt_http_head *head, int64_t now,
                                       struct zt_jwt_result *res);

/* A cache of verified tokens, so that a client sending the same token on
 * every request costs one signature check, not one per request (Envoy's
 * jwt_cache_config). Not locked: one per thread. A hit is the same token
 * found in the same place for the same rule set with the same keys (each
 * set, and each key change, has an id never reused), and is served only
 * while the token's exp/nbf still hold at `now`; only VALID results are
 * kept. Direct-mapped: `slots` (rounded up to a power of two, at most
 * ZT_JWT_CACHE_MAX) entries, keyed by a SipHash with a random key. */
#define ZT_JWT_CACHE_MAX 4096
struct zt_jwt_cache;
struct zt_jwt_cache *zt_jwt_cache_new(size_t slots);
/* NULL is a no-op. */
void zt_jwt_cache_free(struct zt_jwt_cache *c);
/* zt_jwt_authenticate through cache c (NULL: no cache). */
enum zt_jwt_status zt_jwt_authenticate_cached(const struct zt_jwt_rules *rs, struct zt_jwt_cache *c,
                                              const struct zt_http_head *head, int64_t now,
                                              struct zt_jwt_result *res);
void zt_jwt_cache_counts(const struct zt_jwt_cache *c, uint64_t *hits, uint64_t *misses);

/* Checks one token as if found in `loc` (NULL: accepted by any rule). The
 * same result rules as zt_jwt_authenticate, without the token search. */
enum zt_jwt_status zt_jwt_verify(const struct zt_jwt_rules *rs, const char *token, size_t len,
                                 const struct zt_jwt_location *loc, int64_t now,
                                 struct zt_jwt_result *res);

/* What the waypoint does to the request after a check: on VALID, removes
 * the token's headers unless the rule forwards the original token, and sets
 * outputPayloadToHeader and outputClaimToHeaders; on every status first
 * removes any client-sent header named by a rule's outputs so that they
 * cannot be forged. Returns 0, or ZT_E_TOO_BIG if the head is full. */
int zt_jwt_apply(const struct zt_jwt_rules *rs, const struct zt_jwt_result *res,
                 struct zt_http_head *head);

/* The claim reached through nested objects by names[0], names[1], ...
 * (request.auth.claims[a][b] is {"a", "b"}), or NULL. Borrowed from
 * `claims`. */
const json_t *zt_jwt_claim(const json_t *claims, const char *const *names, size_t n_names);

void zt_jwt_result_cleanup(struct zt_jwt_result *res);

#endif
