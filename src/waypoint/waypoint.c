/* The waypoint as the proxy's L7 layer: per-worker state, the CONNECT
 * entry point and destination resolution. */
#include "waypoint/waypoint_int.h"
#include "waypoint/stream.h"
#include "waypoint/mirror.h"

#include "base/random.h"
#include "base/alloc.h"
#include "base/err.h"
#include "state/ip.h"
#include "telemetry/accesslog.h"
#include "tls/spiffe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct zt_waypoint *zt_waypoint_new(const struct zt_waypoint_opts *opts)
{
    struct zt_waypoint *wp = zt_xcalloc(1, sizeof(*wp));
    wp->opts = *opts;
    snprintf(wp->cluster_domain, sizeof(wp->cluster_domain), "%s",
             opts->cluster_domain && *opts->cluster_domain ? opts->cluster_domain
                                                           : "cluster.local");
    wp->opts.cluster_domain = wp->cluster_domain;
    snprintf(wp->gateway_ns, sizeof(wp->gateway_ns), "%s",
             opts->gateway_ns ? opts->gateway_ns : "");
    snprintf(wp->gateway_name, sizeof(wp->gateway_name), "%s",
             opts->gateway_name ? opts->gateway_name : "");
    wp->opts.gateway_ns = wp->gateway_ns;
    wp->opts.gateway_name = wp->gateway_name;
    pthread_mutex_init(&wp->mu, NULL);
    atomic_init(&wp->routes_version, 0);
    return wp;
}

void zt_waypoint_free(struct zt_waypoint *wp)
{
    if (!wp)
        return;
    zt_route_table_unref(wp->routes);
    zt_authz_l7_set_unref(wp->policies);
    zt_jwt_authn_set_unref(wp->authn);
    zt_ratelimit_set_unref(wp->ratelimits);
    pthread_mutex_destroy(&wp->mu);
    free(wp);
}

void zt_waypoint_set_routes(struct zt_waypoint *wp, struct zt_route_table *t)
{
    struct zt_route_table *old;
    pthread_mutex_lock(&wp->mu);
    old = wp->routes;
    wp->routes = t ? zt_route_table_ref(t) : NULL;
    atomic_fetch_add(&wp->routes_version, 1);
    pthread_mutex_unlock(&wp->mu);
    zt_route_table_unref(old);
}

void zt_waypoint_set_policies(struct zt_waypoint *wp, struct zt_authz_l7_set *p)
{
    struct zt_authz_l7_set *old;
    pthread_mutex_lock(&wp->mu);
    old = wp->policies;
    wp->policies = p ? zt_authz_l7_set_ref(p) : NULL;
    atomic_fetch_add(&wp->routes_version, 1);
    pthread_mutex_unlock(&wp->mu);
    zt_authz_l7_set_unref(old);
}

void zt_waypoint_set_authn(struct zt_waypoint *wp, struct zt_jwt_authn_set *a)
{
    struct zt_jwt_authn_set *old;
    pthread_mutex_lock(&wp->mu);
    old = wp->authn;
    wp->authn = a ? zt_jwt_authn_set_ref(a) : NULL;
    atomic_fetch_add(&wp->routes_version, 1);
    pthread_mutex_unlock(&wp->mu);
    zt_jwt_authn_set_unref(old);
}

void zt_waypoint_set_ratelimits(struct zt_waypoint *wp, struct zt_ratelimit_set *r)
{
    struct zt_ratelimit_set *old;
    pthread_mutex_lock(&wp->mu);
    old = wp->ratelimits;
    wp->ratelimits = r ? zt_ratelimit_set_ref(r) : NULL;
    atomic_fetch_add(&wp->routes_version, 1);
    pthread_mutex_unlock(&wp->mu);
    zt_ratelimit_set_unref(old);
}

struct zt_ratelimit_set *zt_waypoint_ratelimits(struct zt_waypoint *wp)
{
    pthread_mutex_lock(&wp->mu);
    struct zt_ratelimit_set *r = wp->ratelimits ? zt_ratelimit_set_ref(wp->ratelimits) : NULL;
    pthread_mutex_unlock(&wp->mu);
    return r;
}

struct zt_route_table *zt_waypoint_routes(struct zt_waypoint *wp)
{
    pthread_mutex_lock(&wp->mu);
    struct zt_route_table *t = wp->routes ? zt_route_table_ref(wp->routes) : NULL;
    pthread_mutex_unlock(&wp->mu);
    return t;
}

/* One atomic load per request; the lock only when the routes or the
 * policies changed (both bump the version). */
static void worker_refresh(struct wp_worker *w)
{
    uint_fast64_t v = atomic_load_explicit(&w->wp->routes_version, memory_order_acquire);
    if (v == w->routes_version)
        return;
    pthread_mutex_lock(&w->wp->mu);
    struct zt_route_table *t = w->wp->routes ? zt_route_table_ref(w->wp->routes) : NULL;
    struct zt_authz_l7_set *p = w->wp->policies ? zt_authz_l7_set_ref(w->wp->policies) : NULL;
    struct zt_jwt_authn_set *a = w->wp->authn ? zt_jwt_authn_set_ref(w->wp->authn) : NULL;
    struct zt_ratelimit_set *rl =
        w->wp->ratelimits ? zt_ratelimit_set_ref(w->wp->ratelimits) : NULL;
    v = atomic_load(&w->wp->routes_version);
    pthread_mutex_unlock(&w->wp->mu);
    zt_ratelimit_set_unref(w->ratelimits);
    w->ratelimits = rl;
    zt_route_table_unref(w->routes);
    zt_authz_l7_set_unref(w->policies);
    zt_jwt_authn_set_unref(w->authn);
    w->routes = t;
    w->policies = p;
    w->authn = a;
    w->routes_version = v;
}

struct zt_route_table *wp_worker_routes(struct wp_worker *w)
{
    worker_refresh(w);
    return w->routes;
}

const struct zt_authz_l7_set *wp_worker_policies(struct wp_worker *w)
{
    worker_refresh(w);
    return w->policies;
}

const struct zt_jwt_authn_set *wp_worker_authn(struct wp_worker *w)
{
    worker_refresh(w);
    return w->authn;
}

struct zt_ratelimit_set *wp_worker_ratelimits(struct wp_worker *w)
{
    worker_refresh(w);
    return w->ratelimits;
}

int wp_connect_endpoint(struct wp_stream *st, struct zt_h2conn *h2,
                        const struct sockaddr_storage *hbone, uint16_t port,
                        const char *const *extra, size_t n_extra, char *authority, size_t len)
{
    const char *hdrs[2 * 4];
    size_t n = 0;
    for (size_t i = 0; i < n_extra && n < 3; i++, n++) {
        hdrs[2 * n] = extra[2 * i];
        hdrs[2 * n + 1] = extra[2 * i + 1];
    }
    size_t nl = 0;
    if (!zt_l7_stream_target(h2, authority, len, &hdrs[2 * n], &nl)) {
        struct zt_ip ip;
        uint16_t p;
        struct sockaddr_storage ss;
        authority[0] = '\0';
        if (zt_ip_from_sockaddr((const struct sockaddr *)hbone, &ip, &p) == 0) {
            zt_ip_to_sockaddr(&ip, port, &ss);
            zt_hbone_format_authority((struct sockaddr *)&ss, authority, len);
        }
    }
    return wp_stream_connect(st, h2, authority, hdrs, n + nl);
}

const struct zt_service *wp_backend_service(const struct wp_worker *w, const struct zt_state *snap,
                                            const char *ns, const char *name)
{
    char host[512];
    const struct zt_service *const *svcs;
    snprintf(host, sizeof(host), "%s.%s.svc.%s", name, ns, w->wp->cluster_domain);
    size_t n = zt_state_services_by_hostname(snap, host, &svcs);
    for (size_t i = 0; i < n; i++)
        if (strcmp(svcs[i]->namespace, ns) == 0)
            return svcs[i];
    return NULL;
}

/* Whether the waypoint reference gw, or one of the weighted ones, is self. */
static bool uses_self(const struct zt_state *s, const struct zt_gateway *gw,
                      const struct zt_weighted_waypoint *ww, size_t n_ww,
                      const struct zt_workload *self, const struct zt_ip *accepted)
{
    if (zt_state_gateway_is_self(s, gw, self, accepted))
        return true;
    for (size_t i = 0; i < n_ww; i++)
        if (zt_state_gateway_is_self(s, &ww[i].destination, self, accepted))
            return true;
    return false;
}

/* The service a hostname target names: the one in the waypoint's own
 * namespace first, else the first (they are sorted by namespace). */
static const struct zt_service *service_by_host(const struct zt_state *s, const char *host,
                                                const struct zt_workload *self)
{
    const struct zt_service *const *svcs;
    size_t n = zt_state_services_by_hostname(s, host, &svcs);
    for (size_t i = 0; i < n; i++)
        if (strcmp(svcs[i]->namespace, self->namespace) == 0)
            return svcs[i];
    return n ? svcs[0] : NULL;
}

int wp_resolve(const struct zt_state *s, const char *network, const struct zt_workload *self,
               const struct zt_hbone_target *target, const struct sockaddr_storage *accepted,
               uint32_t rnd, struct wp_dest *out, const char **why)
{
    struct zt_ip acc, ip;
    uint16_t acc_port, port;
    memset(out, 0, sizeof(*out));
    if (zt_ip_from_sockaddr((const struct sockaddr *)accepted, &acc, &acc_port) < 0) {
        *why = "no local address";
        return 503;
    }
    const struct zt_service *svc = NULL;
    const struct zt_workload *twl = NULL;
    if (target->is_host) {
        svc = service_by_host(s, target->host, self);
        port = target->port;
    } else {
        if (zt_ip_from_sockaddr((const struct sockaddr *)&target->addr, &ip, &port) < 0) {
            *why = "bad target address";
            return 400;
        }
        twl = zt_state_workload_by_ip(s, network, &ip);
        if (!twl)
            svc = zt_state_service_by_vip(s, network, &ip);
    }
    out->svc_port = port;
    if (twl) {
        if (!uses_self(s, &twl->waypoint, NULL, 0, self, &acc)) {
            *why = "the destination workload does not use this waypoint";
            return 403;
        }
        out->wl = twl;
        out->port = port;
        return 0;
    }
    if (!svc) {
        *why = "unknown destination";
        return 503;
    }
    if (!uses_self(s, &svc->waypoint, svc->weighted_waypoints, svc->n_weighted_waypoints, self,
                   &acc)) {
        *why = "the destination service does not use this waypoint";
        return 403;
    }
    out->svc = svc;
    if (zt_state_pick_endpoint(s, svc, port, self, rnd, &out->wl, &out->port) < 0) {
        *why = "no healthy upstream";
        return 503;
    }
    return 0;
}

void wp_log_tcp(const struct wp_worker *w, const struct wp_tcp_record *r)
{
    char src[64], dst[64] = "", hb[64] = "", dst_id[ZT_SPIFFE_ID_MAX + 1] = "";
    struct zt_ip ip;
    uint16_t p;
    zt_hbone_format_authority((const struct sockaddr *)r->peer, src, sizeof(src));
    if (r->wl && zt_ip_from_sockaddr((const struct sockaddr *)r->hbone_dst, &ip, &p) == 0) {
        struct sockaddr_storage ss;
        zt_ip_to_sockaddr(&ip, r->port, &ss);
        zt_hbone_format_authority((struct sockaddr *)&ss, hb, sizeof(hb));
        zt_hbone_format_authority((const struct sockaddr *)r->hbone_dst, dst, sizeof(dst));
    }
    if (r->wl)
        zt_workload_identity(r->wl, dst_id, sizeof(dst_id));
    struct zt_accesslog a = {
        .src_addr = src,
        .src_identity = r->src_identity,
        .dst_addr = dst,
        .dst_hbone_addr = hb,
        .dst_service = r->svc ? r->svc->hostname : NULL,
        .dst_workload = r->wl ? r->wl->name : NULL,
        .dst_namespace = r->wl ? r->wl->namespace : NULL,
        .dst_identity = dst_id,
        .direction = "waypoint",
        .bytes_sent = r->bytes_sent,
        .bytes_recv = r->bytes_recv,
        .duration_ms = uv_now(w->loop) - r->start_ms,
        .error = r->error && r->error[0] ? r->error : NULL,
    };
    zt_accesslog_emit(&a);
}

static void refuse(const struct zt_l7_connect *c, int status, const char *why)
{
    char src[64], dst[64], msg[512];
    zt_h2conn_respond(c->h2, c->sid, status, NULL, 0);
    zt_hbone_format_authority((const struct sockaddr *)c->peer, src, sizeof(src));
    zt_hbone_format_authority((const struct sockaddr *)c->local, dst, sizeof(dst));
    snprintf(msg, sizeof(msg), "%d: %s (authority %s, peer %s)", status, why,
             c->req->authority ? c->req->authority : "-", c->peer_identity);
    zt_accesslog_emit_failed(src, dst, "waypoint", msg);
}

static void on_reap(uv_check_t *h)
{
    wp_tunnels_reap(h->data);
    wp_https_reap(h->data);
    wp_h2cs_reap(h->data);
    wp_mirrors_reap(h->data);
}

static void on_tick(uv_timer_t *t)
{
    struct wp_worker *w = t->data;
    wp_https_tick(w, uv_now(w->loop));
    wp_mirrors_tick(w, uv_now(w->loop));
}

static void *l7_worker_start(void *ud, unsigned worker, uv_loop_t *loop)
{
    struct wp_worker *w = zt_xcalloc(1, sizeof(*w));
    w->wp = ud;
    w->loop = loop;
    w->id = worker;
    zt_list_init(&w->tunnels);
    zt_list_init(&w->dead);
    zt_list_init(&w->https);
    zt_list_init(&w->dead_https);
    zt_list_init(&w->h2cs);
    zt_list_init(&w->dead_h2cs);
    zt_list_init(&w->dead_h2ups);
    uv_check_init(loop, &w->reap);
    w->reap.data = w;
    uv_check_start(&w->reap, on_reap);
    uv_unref((uv_handle_t *)&w->reap);
    uv_timer_init(loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, 500, 500);
    uv_unref((uv_handle_t *)&w->tick);
    w->handles = 2;
    return w;
}

/* The worker's last handle closed: the sessions whose timers closed
 * before it (libuv runs close callbacks in order) are freed with it. */
static void on_worker_closed(uv_handle_t *h)
{
    struct wp_worker *w = h->data;
    if (--w->handles == 0) {
        wp_tunnels_reap(w);
        wp_https_reap(w);
        wp_h2cs_reap(w);
        free(w);
    }
}

static void l7_worker_stop(void *wctx)
{
    struct wp_worker *w = wctx;
    wp_tunnels_reap(w);
    wp_https_reap(w);
    wp_h2cs_reap(w);
    wp_mirrors_stop(w);
    zt_route_table_unref(w->routes);
    w->routes = NULL;
    zt_authz_l7_set_unref(w->policies);
    w->policies = NULL;
    zt_jwt_authn_set_unref(w->authn);
    w->authn = NULL;
    zt_ratelimit_set_unref(w->ratelimits);
    w->ratelimits = NULL;
    zt_jwt_cache_free(w->jwt_cache);
    w->jwt_cache = NULL;
    uv_close((uv_handle_t *)&w->reap, on_worker_closed);
    uv_close((uv_handle_t *)&w->tick, on_worker_closed);
}

static void l7_on_connect(void *wctx, const struct zt_l7_connect *c)
{
    struct wp_worker *w = wctx;
    const struct zt_workload *self = zt_l7_self(c->pod);
    struct wp_dest d;
    struct wp_denial den;
    const char *why = NULL;
    if (w->draining) {
        refuse(c, 503, "waypoint draining");
        return;
    }
    int st = wp_resolve(zt_l7_state(c->pod), zt_l7_network(c->pod), self, c->target, c->local,
                        zt_random_u32(), &d, &why);
    if (st != 0) {
        refuse(c, st, why);
        return;
    }
    /* The port's protocol: declared HTTP (http, http2, grpc) served as
     * HTTP/1.1 or h2c, whichever the client speaks (Envoy's AUTO codec);
     * TCP and TLS relayed; unknown sniffed, except the ports Istio always
     * treats as TCP (SMTP, DNS, MySQL, MongoDB: server-first or binary). */
    const struct zt_port_map *pm = d.svc ? zt_service_find_port(d.svc, d.svc_port) : NULL;
    enum zt_app_protocol ap = pm ? (enum zt_app_protocol)pm->app_protocol : ZT_APP_UNKNOWN;
    bool is_tcp_port =
        d.svc_port == 25 || d.svc_port == 53 || d.svc_port == 3306 || d.svc_port == 27017;
    if (ap == ZT_APP_HTTP11 || ap == ZT_APP_HTTP2 || ap == ZT_APP_GRPC)
        wp_http_start(w, c, &d, false);
    else if (ap == ZT_APP_UNKNOWN && !is_tcp_port)
        wp_http_start(w, c, &d, true);
    else if (wp_authorize_tcp(w, &d, c->peer, c->peer_identity, &den))
        refuse(c, 403, den.details);
    else
        wp_tunnel_start(w, c, &d);
}

static void l7_pod_close(void *wctx, struct zt_pod_inst *pod)
{
    wp_tunnels_pod_close(wctx, pod);
    wp_https_pod_close(wctx, pod);
    wp_h2cs_pod_close(wctx, pod);
    wp_mirrors_pod_close(wctx, pod);
}

static void l7_drain(void *wctx)
{
    struct wp_worker *w = wctx;
    w->draining = true;
    wp_https_drain(w);
    wp_h2cs_drain(w);
    wp_mirrors_drain(w);
}

const struct zt_proxy_l7_ops zt_waypoint_l7_ops = {
    .worker_start = l7_worker_start,
    .worker_stop = l7_worker_stop,
    .on_connect = l7_on_connect,
    .pod_close = l7_pod_close,
    .drain = l7_drain,
};
