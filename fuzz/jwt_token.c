/* Fuzzes the token path (zt_jwt_verify, and zt_jwt_authenticate with the
 * input as an Authorization bearer value and as an access_token parameter)
 * against a fixed JWKS: the public keys of the run of tests/unit/jwt/mint.js
 * that signed the seeds in fuzz/corpus/jwt_token/. Invariants: a result is
 * VALID only with a principal-bearing payload from a configured issuer, an
 * INVALID result always names a reason, and no input over the token cap is
 * ever valid. */
#include "base/err.h"
#include "http/head.h"
#include "jwt/jwt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1800000000

static const char jwks[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"yeh-wpfKhvLVTLlZexxPrd_dQGB3rO5Jv66fBEO2uR8SC"
    "B5ISmVE0LYlofKmYCu65PJqtPYx9t8RM7LiL-zjIEaZobU4cibKgPQN3oam4rC-6REkNp0a4"
    "5LwJQNLHF0CVBjd3Sm21B7k9vHgCslshfvhIwcLZotrL98lgCPWAqDbt61gk-BZbd-DaHEbj"
    "IJwE0CkmCYKiTxRsbDCvcVdc20t4GT1m07hr-bAthmtBoxncBpQa44fekiMSZ2QjDVNoCFv7"
    "UGKoe60NpP1unJClfVl4QtHDBjOcHV4T6CtU02aXIrhHNhDCNj1l_K3t5-wMLLoPsfBMTf44"
    "-pU3Dk63Q\",\"e\":\"AQAB\",\"kid\":\"k1\",\"use\":\"sig\"},{\"kty\":\"EC\",\"x\":\"4oMR03-cv"
    "Flvi-Rxrrdjn04I44zGsOjpfLjMy0s2UXI\",\"y\":\"lXWt3LsD4Lguv17SmAoKBilT_6pa-4n"
    "ZReGtXr4XOtU\",\"crv\":\"P-256\",\"kid\":\"e1\",\"use\":\"sig\"},{\"kty\":\"EC\",\"x\":\"Teh"
    "_-Y8Lo65a1CSLONLScv5eoq4dYCAWjUg-e5pM6YI3P9NMjgldwdcp_yIUy16R\",\"y\":\"qHoO"
    "5RBLRf_QErVALNrq0_-G-zkjGNn1jb9wwdz3K1q3856KnuAfLpO6BcZxKkzw\",\"crv\":\"P-3"
    "84\",\"kid\":\"e2\",\"use\":\"sig\"},{\"crv\":\"Ed25519\",\"x\":\"Sn7qwQJbqZzwPx1GNuL9tj"
    "k8J-wK5P5k8HY__2Z-brg\",\"kty\":\"OKP\",\"kid\":\"d1\",\"use\":\"sig\"}]}";

static struct zt_jwt_rules *rules(void)
{
    static struct zt_jwt_rules *rs;
    if (!rs) {
        static const char *const auds[] = {"svc-a"};
        struct zt_jwt_rule_spec spec = {.issuer = "https://issuer.example",
                                        .audiences = auds,
                                        .n_audiences = 1,
                                        .jwks = jwks,
                                        .output_payload_to_header = "x-jwt-payload"};
        rs = zt_jwt_rules_new();
        char err[256];
        if (zt_jwt_rules_add(rs, &spec, err, sizeof(err)) != 0)
            abort();
    }
    return rs;
}

static void check_result(const struct zt_jwt_result *r, size_t size)
{
    if (r->status == ZT_JWT_INVALID && !r->reason)
        __builtin_trap();
    if (r->status == ZT_JWT_VALID &&
        (size > ZT_JWT_TOKEN_MAX || !r->issuer || !r->claims || !r->payload_b64 ||
         strcmp(r->issuer, "https://issuer.example") != 0))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zt_jwt_rules *rs = rules();
    struct zt_jwt_result r;
    zt_jwt_verify(rs, (const char *)data, size, NULL, NOW, &r);
    check_result(&r, size);
    zt_jwt_result_cleanup(&r);

    /* The same bytes as a header value and a query parameter (the head
     * copies them; NUL bytes end the C string there). */
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    size_t len = strlen(s);
    char *path = malloc(len + 32), *bearer = malloc(len + 8);
    memcpy(path, "/p?access_token=", 16);
    memcpy(path + 16, s, len + 1);
    memcpy(bearer, "Bearer ", 7);
    memcpy(bearer + 7, s, len + 1);
    struct zt_http_head h;
    zt_http_head_init(&h, false);
    /* Each location alone (one token), then both (the same token twice). */
    for (int mode = 0; mode < 3; mode++) {
        zt_http_head_reset(&h, false);
        if (mode != 1 && zt_http_head_set_part(&h, &h.path, path, strlen(path)) != 0)
            continue;
        if (mode != 0 && zt_http_head_add(&h, "authorization", 13, bearer, len + 7) != 0)
            continue;
        zt_jwt_authenticate(rs, &h, NOW, &r);
        check_result(&r, len);
        zt_jwt_apply(rs, &r, &h);
        zt_jwt_result_cleanup(&r);
    }
    zt_http_head_cleanup(&h);
    free(bearer);
    free(path);
    free(s);
    return 0;
}
