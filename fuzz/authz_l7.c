/* Fuzzes the waypoint's AuthorizationPolicy and RequestAuthentication
 * readers and engines: the input is a file of documents, and its first
 * line is also a request path and a bearer token.
 * Invariants: every diagnostic names the file first; a syntax error is the
 * only way the load fails; a check's return agrees with its result; path
 * normalization stays within its bound and is idempotent. */
#include "authz/l7.h"
#include "base/err.h"
#include "base/log.h"
#include "config/authn.h"
#include "config/authz.h"
#include "http/head.h"
#include "yaml_errs.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    return 0;
}

static void check_path(const char *p, size_t len)
{
    char *a = malloc(len + 2), *b = malloc(len + 2);
    size_t n = zt_authz_l7_path_normalize(p, len, a), m;
    if (n > len + 1 || strlen(a) != n)
        __builtin_trap();
    /* Idempotent unless a '%' lacks its two hex digits (see l7.h). */
    for (size_t i = 0; i < len; i++)
        if (p[i] == '%' && (i + 2 >= len || !isxdigit((unsigned char)p[i + 1]) ||
                            !isxdigit((unsigned char)p[i + 2])))
            goto out;
    m = zt_authz_l7_path_normalize(a, n, b);
    if (m != n || memcmp(a, b, n) != 0)
        __builtin_trap();
out:
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char name[] = "fuzz.yaml";
    const char *nl = memchr(data, '\n', size);
    size_t plen = nl ? (size_t)(nl - (const char *)data) : size;
    char *first = strndup((const char *)data, plen > 4096 ? 4096 : plen);
    const char *paths[] = {"/", "/api/v1?x=1", "/a/../admin", first};
    struct zt_authz_l7_set *s = zt_authz_l7_set_new(NULL);
    struct zt_route_errors errs = {0};
    int rc = zt_config_authz_load_string(s, name, (const char *)data, size, &errs);
    json_t *claims = json_pack("{s:s,s:[s,s],s:{s:s}}", "sub", "u", "groups", "a", "b", "realm",
                               "role", "admin");
    const char *aud[] = {"api"};

    fuzz_check_load(name, rc, &errs);
    zt_authz_l7_set_seal(s);
    check_path(first, strlen(first));
    struct zt_jwt_authn_policies authn = {0};
    size_t n_err = errs.n;
    rc = zt_config_authn_load_string(&authn, name, (const char *)data, size, &errs);
    if ((rc != 0 && rc != ZT_E_CONFIG) || (rc && errs.n_errors == 0))
        __builtin_trap();
    for (size_t i = n_err; i < errs.n; i++)
        if (strncmp(errs.v[i].msg, name, sizeof(name) - 1) != 0)
            __builtin_trap();
    struct zt_jwt_authn_set *an =
        zt_jwt_authn_set_build(&authn, NULL, "ns1", "waypoint", NULL, NULL, NULL);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct zt_http_head h;
        struct zt_authz_l7_request rq = {0};
        struct zt_authz_l7_result res;
        char details[512];
        zt_http_head_init(&h, false);
        zt_http_head_set_part(&h, &h.method, i & 1 ? "POST" : "GET", i & 1 ? 4 : 3);
        zt_http_head_set_part(&h, &h.path, paths[i], strlen(paths[i]));
        zt_http_head_set_part(&h, &h.authority, "svc.ns1:80", 10);
        zt_http_head_add(&h, "x-token", 7, "abc", 3);
        zt_http_head_add(&h, "x-forwarded-for", 15, "203.0.113.7", 11);
        if (i == 3)
            zt_http_head_add(&h, "authorization", 13, first, strlen(first));
        const struct zt_jwt_rules *jr = zt_jwt_authn_rules(an, "ns1", "svc", i == 2);
        if (jr) {
            struct zt_jwt_result jres;
            enum zt_jwt_status st = zt_jwt_authenticate(jr, &h, 1800000000, &jres);
            if (st != jres.status || (st == ZT_JWT_INVALID && !jres.reason))
                __builtin_trap();
            zt_jwt_apply(jr, &jres, &h);
            zt_jwt_result_cleanup(&jres);
        }
        rq.head = &h;
        rq.source_principal = i & 2 ? "spiffe://cluster.local/ns/client/sa/default" : NULL;
        zt_ip_parse("10.0.0.1", &rq.source_ip);
        zt_authz_l7_remote_ip(&h, &rq.source_ip, &rq.remote_ip);
        zt_ip_parse("10.1.0.5", &rq.destination_ip);
        rq.destination_port = 80;
        if (i & 1) {
            rq.request_principal = "iss/u";
            rq.audiences = aud;
            rq.n_audiences = 1;
            rq.claims = claims;
        }
        rq.gateway_ns = "ns1";
        rq.gateway_name = "waypoint";
        rq.service_ns = i == 3 ? "default" : "ns1";
        rq.service_name = "svc";
        rc = zt_authz_l7_check(s, &rq, &res);
        if ((rc == 0) != res.allowed || (rc != 0 && rc != ZT_E_DENIED))
            __builtin_trap();
        zt_authz_l7_details(&res, details, sizeof(details));
        zt_http_head_cleanup(&h);
    }
    json_decref(claims);
    free(first);
    zt_authz_l7_set_unref(s);
    zt_jwt_authn_set_unref(an);
    zt_jwt_authn_policies_cleanup(&authn);
    zt_route_errors_cleanup(&errs);
    return 0;
}
