/* Private to src/waypoint: per-worker state and what a CONNECT resolves to. */
#ifndef ZT_WAYPOINT_INT_H
#define ZT_WAYPOINT_INT_H

#include "base/buf.h"
#include "base/list.h"
#include "authz/l7.h"
#include "jwt/authn.h"
#include "ratelimit/ratelimit.h"
#include "proxy/l7.h"
#include "route/route.h"
#include "waypoint/waypoint.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct zt_waypoint {
    struct zt_waypoint_opts opts;
    char cluster_domain[256];
    char gateway_ns[254], gateway_name[254];
    pthread_mutex_t mu;                  /* guards routes, policies and authn */
    struct zt_route_table *routes;       /* NULL: none */
    struct zt_authz_l7_set *policies;    /* NULL: none */
    struct zt_jwt_authn_set *authn;      /* NULL: no RequestAuthentication */
    struct zt_ratelimit_set *ratelimits; /* NULL: no RateLimit */
    atomic_uint_fast64_t routes_version; /* bumped when any changes */
};

/* One per proxy worker (the l7 ops' context). */
struct wp_worker {
    struct zt_waypoint *wp;
    uv_loop_t *loop;
    unsigned id;
    struct zt_list tunnels;    /* of wp_tunnel: live */
    struct zt_list dead;       /* of wp_tunnel: ended, freed by `reap` */
    struct zt_list https;      /* of wp_http: live */
    struct zt_list dead_https; /* of wp_http: ended, freed by `reap` */
    struct zt_list h2cs;       /* of wp_h2c: live */
    struct zt_list dead_h2cs;  /* of wp_h2c: ended, freed by `reap` */
    struct zt_list dead_h2ups; /* of wp_h2up (h2c.c): ended, freed by `reap` */
    uv_check_t reap;
    uv_timer_t tick; /* sniffing deadlines */
    /* This worker's references to the routes and policies, and the
     * version they are. */
    struct zt_route_table *routes;
    struct zt_authz_l7_set *policies;
    struct zt_jwt_authn_set *authn;
    struct zt_ratelimit_set *ratelimits;
    uint_fast64_t routes_version;
    struct zt_jwt_cache *jwt_cache; /* verified tokens, NULL until the first */
    int handles;                    /* open handles; the worker is freed with the last */
    bool draining;
    struct wp_mirrors *mirrors; /* mirror.c's, NULL until the first mirror */
};

/* Where a CONNECT goes: the service (NULL when the target is a workload
 * that uses the waypoint itself) and the endpoint picked. Pointers into
 * the snapshot the caller holds. */
struct wp_dest {
    const struct zt_service *svc;
    const struct zt_workload *wl;
    uint16_t svc_port; /* the port as dialed */
    uint16_t port;     /* the endpoint's target port */
};

/* The routes in force for this worker (borrowed until the worker's next
 * call; take a reference to keep them), NULL for none. */
struct zt_route_table *wp_worker_routes(struct wp_worker *w);
/* The L7 authorization policies and the RequestAuthentication rules in
 * force, as wp_worker_routes. */
const struct zt_authz_l7_set *wp_worker_policies(struct wp_worker *w);
const struct zt_jwt_authn_set *wp_worker_authn(struct wp_worker *w);
struct zt_ratelimit_set *wp_worker_ratelimits(struct wp_worker *w);

/* Opens st as a CONNECT to an endpoint's port on h2, the connection
 * zt_l7_upstream gave (hbone: the address it filled): ip:port, or through
 * a network gateway what that tunnel names, with the extra headers
 * (name/value pairs, at most 3). The authority used goes to authority
 * (len >= WP_AUTHORITY_MAX). As wp_stream_connect. */
#define WP_AUTHORITY_MAX 320
struct wp_stream;
int wp_connect_endpoint(struct wp_stream *st, struct zt_h2conn *h2,
                        const struct sockaddr_storage *hbone, uint16_t port,
                        const char *const *extra, size_t n_extra, char *authority, size_t len);

/* The service a backendRef names, in snap (NULL if none). */
const struct zt_service *wp_backend_service(const struct wp_worker *w, const struct zt_state *snap,
                                            const char *ns, const char *name);

/* The access line of a CONNECT relayed as TCP ("connection complete",
 * direction waypoint): the client's address and identity, the service and
 * endpoint wl (NULL: none was reached) at hbone_dst (ip:15008) for its
 * port, bytes each way, the time since start_ms, error (NULL or ""). */
struct wp_tcp_record {
    const struct sockaddr_storage *peer;
    const char *src_identity;
    const struct zt_service *svc;
    const struct zt_workload *wl;
    const struct sockaddr_storage *hbone_dst;
    uint16_t port;
    uint64_t bytes_sent, bytes_recv, start_ms;
    const char *error;
};
void wp_log_tcp(const struct wp_worker *w, const struct wp_tcp_record *r);

/* Resolves a CONNECT's target for the waypoint self: a service VIP or
 * hostname, or a workload address, which must name this waypoint as its
 * waypoint (anything else is refused: a waypoint is no open proxy); then
 * an endpoint. Returns 0, or an HTTP status (403, 503) with a reason. */
int wp_resolve(const struct zt_state *s, const char *network, const struct zt_workload *self,
               const struct zt_hbone_target *target, const struct sockaddr_storage *accepted,
               uint32_t rnd, struct wp_dest *out, const char **why);

/* exchange.c: what a request's route decided (wp_route). */
struct wp_routed {
    /* 0: forward to svc:port (the CONNECT's service when no route took
     * the request); else answer here with this status and body (a
     * redirect's Location in `location`), error for the access line. */
    int local_status;
    const char *local_body;
    const char *error, *error_detail;
    char location[2048];
    const struct zt_service *svc;
    uint16_t port;
    /* The route that took it (a reference the caller drops), for the
     * response filters; NULL for the default route. */
    struct zt_route_table *routes;
    const struct zt_route_filters *filters;
    struct zt_route_retry retry;
    uint32_t timeout_ms; /* the route's, 0: none */
    char route[128];     /* "<ns>/<name>" of the route, for the log */
    /* The route and rule that took it (borrowed from `routes`), for the
     * rate limits; NULL for the default route. */
    const struct zt_route_def *def;
    const char *rule_name;
};

/* Routes req (Gateway API semantics, route/route.h) addressed to dst:
 * applies the rule's request filters to req. */
void wp_route(struct wp_worker *w, const struct zt_state *snap, const struct wp_dest *dst,
              struct zt_http_head *req, struct wp_routed *out);

/* The security steps before routing, in Envoy's filter order on a
 * waypoint chain (policies see the request as the client sent it, the
 * router comes after): JWT authentication (RequestAuthentication; a valid
 * token's headers are then removed or rewritten as the rule says), then
 * L7 authorization. Returns 0 to go on, or the status to answer with
 * out's body and header: 401 for a token that fails (body Envoy's reason,
 * `www-authenticate: Bearer realm="...", error="invalid_token"`), 403 for
 * a denial (body WP_RBAC_DENIED_BODY). out->details is Envoy's
 * response_code_details for the access line. Dry-run and AUDIT matches
 * are logged on `authz`. */
#define WP_RBAC_DENIED_BODY "RBAC: access denied"
enum { WP_SHADOW_NONE, WP_SHADOW_ALLOWED, WP_SHADOW_DENIED };
struct wp_denial {
    uint8_t shadow; /* the dry-run policies' verdict (WP_SHADOW_*), also when 0 is returned */
    const char *body;
    const char *hdrs[6]; /* extra response fields: name, value pairs */
    size_t n_hdrs;       /* pairs in hdrs */
    char details[384];
    char www_auth[1152];
};
int wp_authorize(struct wp_worker *w, const struct wp_dest *dst,
                 const struct sockaddr_storage *peer, const char *src_identity,
                 struct zt_http_head *req, struct wp_denial *out);
/* The local rate limit step, after routing (r: what wp_route decided,
 * before its filters' effects are used): 0 to go on, or 429 with body
 * `local_rate_limited`, the x-ratelimit-* fields in out->hdrs and
 * out->details `local_rate_limited`. When a policy applied, *rl holds the
 * values for the response's x-ratelimit-* fields (wp_ratelimit_headers). */
struct wp_rl {
    bool applied;
    uint32_t limit, remaining;
    uint64_t reset_s;
    char v[3][24]; /* formatted values, for a 429 */
};
#define WP_RATE_LIMITED_BODY "local_rate_limited"
int wp_ratelimit(struct wp_worker *w, const struct wp_dest *dst, const struct wp_routed *r,
                 const char *src_identity, const struct zt_http_head *req, struct wp_rl *rl,
                 struct wp_denial *out);
/* Sets x-ratelimit-limit, -remaining and -reset on a response (nothing
 * when no policy applied). Returns 0 or ZT_E_TOO_BIG. */
int wp_ratelimit_headers(const struct wp_rl *rl, struct zt_http_head *resp);

/* The same for a connection relayed as TCP (zt_authz_l7_request.is_tcp):
 * 0, or 403 with out->details when the policies deny it. */
int wp_authorize_tcp(struct wp_worker *w, const struct wp_dest *dst,
                     const struct sockaddr_storage *peer, const char *src_identity,
                     struct wp_denial *out);

/* One finished request, for its access line ("request complete") and
 * istio_requests_total (reporter waypoint). Everything borrowed. */
struct wp_request_record {
    const struct sockaddr_storage *peer; /* the HBONE client's address */
    const char *src_identity;
    const struct zt_state *snap;
    const char *network;
    const struct zt_service *dst_svc;
    const struct zt_workload *dst_wl;
    const char *upstream, *method, *path, *authority, *protocol, *route, *error;
    const char *trace_id, *span_id; /* NULL: none */
    bool is_grpc, is_local_reply;
    uint8_t shadow; /* WP_SHADOW_*: the access line's shadow_engine_result */
    int status;
    int grpc_status; /* -1: none */
    uint64_t start_ms, start_ns, req_bytes, resp_bytes;
};
void wp_log_request(const struct wp_worker *w, const struct wp_request_record *r);
/* Envoy's response flag for a local reply's cause ("-" otherwise). */
const char *wp_response_flags(bool is_local_reply, int status, const char *error);

/* h2c.c: HTTP/2 cleartext (gRPC included). A session whose client sent
 * the HTTP/2 preface (http.c sees it first) takes over its client stream (wp_stream_move) with the
 * n bytes received so far, and `unreturned` more bytes owed to the stream's window. */
struct wp_stream;
void wp_h2c_adopt(struct wp_worker *w, struct zt_pod_inst *pod, struct wp_stream *down,
                  const struct wp_dest *d, const struct sockaddr_storage *peer,
                  const char *identity, const uint8_t *initial, size_t n, size_t unreturned);
/* The same for an HTTP/1.1 client of a port declared HTTP/2 or gRPC: its
 * requests go on as h2c (h2c_h1.c). */
void wp_h2c_adopt_h1(struct wp_worker *w, struct zt_pod_inst *pod, struct wp_stream *down,
                     const struct wp_dest *d, const struct sockaddr_storage *peer,
                     const char *identity, const uint8_t *initial, size_t n, size_t unreturned);
void wp_h2cs_pod_close(struct wp_worker *w, struct zt_pod_inst *pod);
void wp_h2cs_drain(struct wp_worker *w);
void wp_h2cs_reap(struct wp_worker *w);

/* http.c: a CONNECT to a port declared HTTP, or (is_sniffed) of unknown
 * protocol: HTTP/1.1 if its first bytes are a request line, handed to
 * h2c.c after the HTTP/2 preface, else (sniffed only) relayed as TCP. */
#define WP_SNIFF_TIMEOUT_MS 5000
void wp_http_start(struct wp_worker *w, const struct zt_l7_connect *c, const struct wp_dest *d,
                   bool is_sniffed);
void wp_https_pod_close(struct wp_worker *w, struct zt_pod_inst *pod);
void wp_https_drain(struct wp_worker *w);
/* Sniffing sessions whose client said nothing by their deadline become
 * TCP relays (server-first protocols). */
void wp_https_tick(struct wp_worker *w, uint64_t now);
void wp_https_reap(struct wp_worker *w);

/* tunnel.c: a CONNECT relayed as a TCP stream to its endpoint. */
void wp_tunnel_start(struct wp_worker *w, const struct zt_l7_connect *c, const struct wp_dest *d);
/* Ends every tunnel of pod (detaching its streams) now. */
void wp_tunnels_pod_close(struct wp_worker *w, struct zt_pod_inst *pod);
/* Frees the ended tunnels (a safe point: no callback of theirs runs). */
void wp_tunnels_reap(struct wp_worker *w);

#endif
