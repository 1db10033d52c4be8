/* What every HTTP exchange of the waypoint does the same way, whichever
 * protocol carried it (http.c: HTTP/1.1, h2c.c: HTTP/2 and gRPC): the
 * route decision, the access line and the request metrics. */
#include "waypoint/waypoint_int.h"

#include "base/random.h"
#include "base/err.h"
#include "base/log.h"
#include "state/ip.h"
#include "telemetry/headers.h"
#include "telemetry/metrics.h"
#include "tls/spiffe.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- routes ---- */

static void local(struct wp_routed *r, int status, const char *body, const char *error,
                  const char *detail)
{
    r->local_status = status;
    r->local_body = body;
    r->error = error;
    r->error_detail = detail;
}

void wp_route(struct wp_worker *w, const struct zt_state *snap, const struct wp_dest *dst,
              struct zt_http_head *req, struct wp_routed *r)
{
    memset(r, 0, sizeof(*r));
    r->svc = dst->svc;
    r->port = dst->svc_port;
    r->retry = zt_route_retry_default;
    struct zt_route_table *t = dst->svc ? wp_worker_routes(w) : NULL;
    if (!t)
        return;
    struct zt_route_target target = {
        .ns = dst->svc->namespace, .name = dst->svc->name, .port = dst->svc_port};
    struct zt_route_result res;
    zt_route_select(t, &target, req, zt_random_u32(), &res);
    if (res.route)
        snprintf(r->route, sizeof(r->route), "%s/%s", res.route->ns, res.route->name);
    r->def = res.route;
    r->rule_name = res.rule ? res.rule->name : NULL;
    r->retry = res.retry;
    r->timeout_ms = res.timeout_ms;
    switch (res.outcome) {
    case ZT_ROUTE_DEFAULT:
        return;
    case ZT_ROUTE_NOT_FOUND:
        local(r, 404, "route not found\n", "no route matched", NULL);
        return;
    case ZT_ROUTE_NO_BACKEND:
        local(r, 500, "no usable backend\n", "the route has no usable backend", NULL);
        return;
    case ZT_ROUTE_REDIRECT: {
        int status = 302;
        if (zt_route_redirect_location(&res.filters->redirect, res.match, req, dst->svc_port,
                                       r->location, sizeof(r->location), &status) < 0) {
            local(r, 400, "bad request\n", "redirect location cannot be built", NULL);
            return;
        }
        local(r, status, "", NULL, NULL);
        return;
    }
    case ZT_ROUTE_FORWARD:
        break;
    }
    const struct zt_service *b =
        res.backend->invalid ? NULL
                             : wp_backend_service(w, snap, res.backend->ns, res.backend->name);
    if (!b) {
        local(r, 500, "no usable backend\n", "backend service not found", res.backend->name);
        return;
    }
    if (zt_route_apply_request(res.filters, res.match, req) < 0) {
        local(r, 431, "request header fields too large\n", "request filters pass the head's caps",
              NULL);
        return;
    }
    r->routes = zt_route_table_ref(t);
    r->filters = res.filters;
    r->svc = b;
    r->port = res.backend->port ? res.backend->port : dst->svc_port;
}

/* ---- telemetry ---- */

const char *wp_response_flags(bool is_local_reply, int status, const char *error)
{
    if (!is_local_reply)
        return "-";
    switch (status) {
    case 404:
        return "NR";
    case 503:
        return error && strstr(error, "no healthy") ? "UH" : "UF";
    case 504:
        return "UT";
    case 429:
        return "RL"; /* the only 429 of the waypoint's own: a rate limit */
    default:
        return "-";
    }
}

static void wl_labels(struct zt_request_labels *l, bool src, const struct zt_workload *wl)
{
    if (!wl)
        return;
    l->v[src ? ZT_RL_SOURCE_WORKLOAD : ZT_RL_DESTINATION_WORKLOAD] = wl->workload_name;
    l->v[src ? ZT_RL_SOURCE_CANONICAL_SERVICE : ZT_RL_DESTINATION_CANONICAL_SERVICE] =
        wl->canonical_name;
    l->v[src ? ZT_RL_SOURCE_CANONICAL_REVISION : ZT_RL_DESTINATION_CANONICAL_REVISION] =
        wl->canonical_revision;
    l->v[src ? ZT_RL_SOURCE_WORKLOAD_NAMESPACE : ZT_RL_DESTINATION_WORKLOAD_NAMESPACE] =
        wl->namespace;
    l->v[src ? ZT_RL_SOURCE_APP : ZT_RL_DESTINATION_APP] = wl->canonical_name;
    l->v[src ? ZT_RL_SOURCE_VERSION : ZT_RL_DESTINATION_VERSION] = wl->canonical_revision;
    l->v[src ? ZT_RL_SOURCE_CLUSTER : ZT_RL_DESTINATION_CLUSTER] = wl->cluster_id;
}

/* istio_requests_total and the request histograms, reporter "waypoint":
 * the source is the client workload (by the tunnel's peer address, its
 * principal the certificate's), the destination the endpoint picked. */
static void observe(const struct wp_worker *w, const struct wp_request_record *r,
                    const char *dst_principal, const char *code, const char *grpc)
{
    struct zt_metrics *m = w->wp->opts.metrics;
    if (!m)
        return;
    struct zt_request_labels l;
    memset(&l, 0, sizeof(l));
    l.v[ZT_RL_REPORTER] = "waypoint";
    struct zt_ip ip;
    uint16_t port;
    const struct zt_workload *src = NULL;
    if (zt_ip_from_sockaddr((const struct sockaddr *)r->peer, &ip, &port) == 0)
        src = zt_state_workload_by_ip(r->snap, r->network, &ip);
    wl_labels(&l, true, src);
    l.v[ZT_RL_SOURCE_PRINCIPAL] = r->src_identity;
    wl_labels(&l, false, r->dst_wl);
    l.v[ZT_RL_DESTINATION_PRINCIPAL] = dst_principal;
    if (r->dst_svc) {
        l.v[ZT_RL_DESTINATION_SERVICE] = r->dst_svc->hostname;
        l.v[ZT_RL_DESTINATION_SERVICE_NAME] = r->dst_svc->name;
        l.v[ZT_RL_DESTINATION_SERVICE_NAMESPACE] = r->dst_svc->namespace;
    } else {
        l.v[ZT_RL_DESTINATION_SERVICE] = r->authority; /* Envoy's Host fallback */
    }
    l.v[ZT_RL_REQUEST_PROTOCOL] = r->is_grpc ? "grpc" : "http";
    l.v[ZT_RL_RESPONSE_CODE] = code;
    l.v[ZT_RL_GRPC_RESPONSE_STATUS] = grpc;
    l.v[ZT_RL_RESPONSE_FLAGS] = wp_response_flags(r->is_local_reply, r->status, r->error);
    l.v[ZT_RL_CONNECTION_SECURITY_POLICY] =
        r->src_identity && r->src_identity[0] && dst_principal && dst_principal[0] ? "mutual_tls"
                                                                                   : "none";
    uint64_t us = (uv_hrtime() - r->start_ns) / 1000;
    zt_metrics_request_observe(m, w->id, &l, us, r->req_bytes, r->resp_bytes);
}

void wp_log_request(const struct wp_worker *w, const struct wp_request_record *r)
{
    char src[64], status[16], grpc[16] = "", dur[32], rb[32], sb[32];
    char dst_id[ZT_SPIFFE_ID_MAX + 1] = "";
    snprintf(status, sizeof(status), "%d", r->status);
    if (r->grpc_status >= 0)
        snprintf(grpc, sizeof(grpc), "%d", r->grpc_status);
    if (r->dst_wl)
        zt_workload_identity(r->dst_wl, dst_id, sizeof(dst_id));
    bool failed = r->status >= 500 || (r->error && r->error[0]);
    enum zt_log_level level = failed ? ZT_LOG_ERROR : ZT_LOG_INFO;
    if (!zt_log_enabled(level)) {
        /* No access line at this level: only the metrics. */
        observe(w, r, dst_id, status, grpc[0] ? grpc : NULL);
        return;
    }
    zt_hbone_format_authority((const struct sockaddr *)r->peer, src, sizeof(src));
    snprintf(dur, sizeof(dur), "%" PRIu64 "ms", uv_now(w->loop) - r->start_ms);
    snprintf(rb, sizeof(rb), "%" PRIu64, r->req_bytes);
    snprintf(sb, sizeof(sb), "%" PRIu64, r->resp_bytes);
    const char *kv[] = {
        "src.addr",
        src,
        "src.identity",
        r->src_identity,
        "dst.service",
        r->dst_svc ? r->dst_svc->hostname : NULL,
        "dst.workload",
        r->dst_wl ? r->dst_wl->name : NULL,
        "dst.identity",
        dst_id,
        "upstream",
        r->upstream,
        "method",
        r->method,
        "path",
        r->path,
        "authority",
        r->authority,
        "protocol",
        r->protocol,
        "status",
        status,
        "grpc_status",
        grpc,
        "bytes_recv",
        rb,
        "bytes_sent",
        sb,
        "duration",
        dur,
        "route",
        r->route && r->route[0] ? r->route : NULL,
        "trace_id",
        r->trace_id,
        "span_id",
        r->span_id,
        "error",
        r->error && r->error[0] ? r->error : NULL,
        "shadow_engine_result",
        r->shadow == WP_SHADOW_ALLOWED  ? "allowed"
        : r->shadow == WP_SHADOW_DENIED ? "denied"
                                        : NULL,
    };
    zt_log_kv(level, "access", "request complete", kv, sizeof(kv) / sizeof(kv[0]) / 2);
    observe(w, r, dst_id, status, grpc[0] ? grpc : NULL);
}

/* ---- L7 authorization ---- */

/* A CORS preflight (OPTIONS with Origin and Access-Control-Request-
 * Method) skips JWT authentication: browsers send it without credentials
 * (Envoy's bypass_cors_preflight, which Istio turns on). */
static bool is_cors_preflight(const struct zt_http_head *req)
{
    return req->method && strcmp(req->method, "OPTIONS") == 0 && zt_http_head_get(req, "origin") &&
           zt_http_head_get(req, "access-control-request-method");
}

/* www-authenticate for a refused token, as Envoy's jwt_authn: the realm is
 * the request URL without its query (quotes and backslashes dropped,
 * bounded). */
static void www_authenticate(const struct zt_http_head *req, char *out, size_t len)
{
    char realm[1024];
    const char *host = req->authority ? req->authority : "", *path = req->path ? req->path : "/";
    size_t n = 0;
    for (const char *p = "http://"; *p && n + 1 < sizeof(realm); p++)
        realm[n++] = *p;
    for (const char *p = host; *p && n + 1 < sizeof(realm); p++)
        if (*p != '"' && *p != '\\')
            realm[n++] = *p;
    for (const char *p = path; *p && *p != '?' && *p != '#' && n + 1 < sizeof(realm); p++)
        if (*p != '"' && *p != '\\')
            realm[n++] = *p;
    realm[n] = '\0';
    snprintf(out, len, "Bearer realm=\"%s\", error=\"invalid_token\"", realm);
}

/* Envoy's response_code_details for a refused token:
 * "jwt_authn_access_denied{Jwt_is_expired}" (spaces become '_'). */
static void jwt_details(const char *reason, char *out, size_t len)
{
    int n = snprintf(out, len, "jwt_authn_access_denied{%s}", reason);
    for (int i = 0; i < n && (size_t)i < len && out[i]; i++)
        if (out[i] == ' ')
            out[i] = '_';
}

/* Verified tokens kept per worker (Envoy's jwt_cache_size is 100). */
#define WP_JWT_CACHE_SLOTS 256

static void count(const struct wp_worker *w, enum zt_counter c)
{
    if (w->wp->opts.metrics)
        zt_metrics_counter_inc(w->wp->opts.metrics, c);
}

/* The AuthorizationPolicy step of wp_authorize(_tcp): the check, its log
 * lines (dry-run and AUDIT), counters and denial. method/path only name the
 * request in the log. */
static int check_policies(struct wp_worker *w, const struct zt_authz_l7_set *set,
                          const struct zt_authz_l7_request *rq, const char *method,
                          const char *path, const char *src_identity, struct wp_denial *out)
{
    struct zt_authz_l7_result res;
    int rc = zt_authz_l7_check(set, rq, &res);
    method = method ? method : "-";
    path = path ? path : "-";
    src_identity = src_identity ? src_identity : "-";
    if (res.has_dry_run && !res.dry_run_allowed && res.dry_run_policy)
        ZT_INFO("authz", "dry-run: %s/%s would deny %s %s from %s", res.dry_run_policy->ns,
                res.dry_run_policy->name, method, path, src_identity);
    else if (res.has_dry_run && !res.dry_run_allowed)
        ZT_INFO("authz", "dry-run: no ALLOW policy would match %s %s from %s", method, path,
                src_identity);
    if (res.audit)
        ZT_INFO("authz", "audit: %s/%s matched %s %s from %s", res.audit->ns, res.audit->name,
                method, path, src_identity);
    if (res.has_dry_run) {
        out->shadow = res.dry_run_allowed ? WP_SHADOW_ALLOWED : WP_SHADOW_DENIED;
        count(w, res.dry_run_allowed ? ZT_C_WP_RBAC_SHADOW_ALLOWED : ZT_C_WP_RBAC_SHADOW_DENIED);
    }
    count(w, rc == 0 ? ZT_C_WP_RBAC_ALLOWED : ZT_C_WP_RBAC_DENIED);
    if (rc == 0)
        return 0;
    zt_authz_l7_details(&res, out->details, sizeof(out->details));
    out->body = WP_RBAC_DENIED_BODY;
    return 403;
}

int wp_authorize(struct wp_worker *w, const struct wp_dest *dst,
                 const struct sockaddr_storage *peer, const char *src_identity,
                 struct zt_http_head *req, struct wp_denial *out)
{
    const struct zt_jwt_authn_set *authn = wp_worker_authn(w);
    const struct zt_authz_l7_set *set = wp_worker_policies(w);
    memset(out, 0, offsetof(struct wp_denial, www_auth) + 1);
    if (!set && !authn)
        return 0;
    const char *svc_ns = dst->svc ? dst->svc->namespace : NULL;
    const char *svc_name = dst->svc ? dst->svc->name : NULL;
    struct zt_jwt_result jwt = {.status = ZT_JWT_NONE};
    const struct zt_jwt_rules *rules = authn && !is_cors_preflight(req)
                                           ? zt_jwt_authn_rules(authn, svc_ns, svc_name, false)
                                           : NULL;
    if (rules) {
        if (!w->jwt_cache)
            w->jwt_cache = zt_jwt_cache_new(WP_JWT_CACHE_SLOTS);
        zt_jwt_authenticate_cached(rules, w->jwt_cache, req, (int64_t)time(NULL), &jwt);
        if (zt_jwt_apply(rules, &jwt, req) < 0 && jwt.status == ZT_JWT_VALID) {
            zt_jwt_result_cleanup(&jwt);
            jwt.status = ZT_JWT_INVALID;
            jwt.reason = "Jwt output headers do not fit the request head";
        }
        if (jwt.status == ZT_JWT_INVALID) {
            ZT_DEBUG("jwt", "%s %s from %s: %s", req->method ? req->method : "-",
                     req->path ? req->path : "-", src_identity ? src_identity : "-", jwt.reason);
            jwt_details(jwt.reason, out->details, sizeof(out->details));
            www_authenticate(req, out->www_auth, sizeof(out->www_auth));
            out->body = jwt.reason; /* static text */
            out->hdrs[0] = "www-authenticate";
            out->hdrs[1] = out->www_auth;
            out->n_hdrs = 1;
            zt_jwt_result_cleanup(&jwt);
            count(w, ZT_C_WP_JWT_DENIED);
            return 401;
        }
        count(w, ZT_C_WP_JWT_ALLOWED);
    }
    if (!set) {
        zt_jwt_result_cleanup(&jwt);
        return 0;
    }
    struct zt_authz_l7_request rq = {
        .source_principal = src_identity && src_identity[0] ? src_identity : NULL,
        .destination_port = dst->svc_port,
        .head = req,
        .gateway_ns = w->wp->opts.gateway_ns,
        .gateway_name = w->wp->opts.gateway_name,
        .service_ns = svc_ns,
        .service_name = svc_name,
    };
    if (jwt.status == ZT_JWT_VALID) {
        rq.request_principal = jwt.principal;
        rq.audiences = (const char *const *)jwt.audiences;
        rq.n_audiences = jwt.n_audiences;
        rq.presenter = jwt.presenter;
        rq.claims = jwt.claims;
    }
    uint16_t port;
    if (zt_ip_from_sockaddr((const struct sockaddr *)peer, &rq.source_ip, &port) == 0)
        zt_authz_l7_remote_ip(req, &rq.source_ip, &rq.remote_ip);
    int rc = check_policies(w, set, &rq, req->method, req->path, src_identity, out);
    zt_jwt_result_cleanup(&jwt);
    return rc;
}

int wp_authorize_tcp(struct wp_worker *w, const struct wp_dest *dst,
                     const struct sockaddr_storage *peer, const char *src_identity,
                     struct wp_denial *out)
{
    const struct zt_authz_l7_set *set = wp_worker_policies(w);
    memset(out, 0, offsetof(struct wp_denial, www_auth) + 1);
    if (!set)
        return 0;
    struct zt_authz_l7_request rq = {
        .source_principal = src_identity && src_identity[0] ? src_identity : NULL,
        .destination_port = dst->svc_port,
        .gateway_ns = w->wp->opts.gateway_ns,
        .gateway_name = w->wp->opts.gateway_name,
        .service_ns = dst->svc ? dst->svc->namespace : NULL,
        .service_name = dst->svc ? dst->svc->name : NULL,
        .is_tcp = true,
    };
    uint16_t port;
    zt_ip_from_sockaddr((const struct sockaddr *)peer, &rq.source_ip, &port);
    return check_policies(w, set, &rq, "TCP", NULL, src_identity, out);
}

/* ---- rate limits ---- */

int wp_ratelimit(struct wp_worker *w, const struct wp_dest *dst, const struct wp_routed *r,
                 const char *src_identity, const struct zt_http_head *req, struct wp_rl *rl,
                 struct wp_denial *out)
{
    struct zt_ratelimit_set *set = wp_worker_ratelimits(w);
    rl->applied = false;
    memset(out, 0, offsetof(struct wp_denial, www_auth) + 1);
    if (!set)
        return 0;
    const struct zt_service *svc = dst->svc;
    struct zt_ratelimit_request rq = {
        .gateway_ns = w->wp->opts.gateway_ns,
        .gateway_name = w->wp->opts.gateway_name,
        .service_ns = svc ? svc->namespace : NULL,
        .service_name = svc ? svc->name : NULL,
        .route_ns = r->def ? r->def->ns : NULL,
        .route_name = r->def ? r->def->name : NULL,
        .rule_name = r->rule_name,
        .route_is_grpc = r->def && r->def->kind == ZT_ROUTE_GRPC,
        .source_principal = src_identity && src_identity[0] ? src_identity : NULL,
        .head = req,
    };
    struct zt_ratelimit_result res;
    int rc = zt_ratelimit_check(set, &rq, uv_now(w->loop), &res);
    if (!res.applied)
        return 0;
    rl->applied = true;
    rl->limit = res.limit;
    rl->remaining = res.remaining;
    rl->reset_s = res.reset_s;
    if (rc == 0)
        return 0;
    count(w, ZT_C_WP_RATE_LIMITED);
    snprintf(rl->v[0], sizeof(rl->v[0]), "%" PRIu32, rl->limit);
    snprintf(rl->v[1], sizeof(rl->v[1]), "%" PRIu32, rl->remaining);
    snprintf(rl->v[2], sizeof(rl->v[2]), "%" PRIu64, rl->reset_s);
    static const char *const names[] = {"x-ratelimit-limit", "x-ratelimit-remaining",
                                        "x-ratelimit-reset"};
    for (size_t i = 0; i < 3; i++) {
        out->hdrs[2 * i] = names[i];
        out->hdrs[2 * i + 1] = rl->v[i];
    }
    out->n_hdrs = 3;
    out->body = WP_RATE_LIMITED_BODY;
    snprintf(out->details, sizeof(out->details), "local_rate_limited");
    return 429;
}

int wp_ratelimit_headers(const struct wp_rl *rl, struct zt_http_head *resp)
{
    char v[24];
    if (!rl->applied)
        return 0;
    snprintf(v, sizeof(v), "%" PRIu32, rl->limit);
    if (zt_http_head_set(resp, "x-ratelimit-limit", v) < 0)
        return ZT_E_TOO_BIG;
    snprintf(v, sizeof(v), "%" PRIu32, rl->remaining);
    if (zt_http_head_set(resp, "x-ratelimit-remaining", v) < 0)
        return ZT_E_TOO_BIG;
    snprintf(v, sizeof(v), "%" PRIu64, rl->reset_s);
    return zt_http_head_set(resp, "x-ratelimit-reset", v) < 0 ? ZT_E_TOO_BIG : 0;
}
