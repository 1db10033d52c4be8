/* What the admin, stats and readiness endpoints show of `ztunnel proxy`.
 * Their handlers run on libmicrohttpd's threads; everything they read is
 * either thread-safe by itself (metrics, CA manager) or copied under
 * app->mu by the control thread. */
#include "admin/config_dump.h"
#include "base/log.h"
#include "route/dump.h"
#include "cmd/proxy_app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *effective_config(const struct zt_config *c)
{
    return json_pack(
        "{s:i, s:s, s:b, s:I, s:s?, s:s?, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:s}",
        "workerThreads", (int)c->worker_threads, "inpodUds", c->inpod_uds, "inpodPortReuse",
        c->inpod_port_reuse, "packetMark", (json_int_t)c->packet_mark, "localXdsPath",
        c->local_xds_path, "localCaDir", c->local_ca_dir, "nodeName",
        c->node_name ? c->node_name : "", "clusterId", c->cluster_id, "trustDomain",
        c->trust_domain, "secretTtlSeconds", (json_int_t)c->secret_ttl_s,
        "poolMaxStreamsPerConnection", (json_int_t)c->pool_max_streams_per_conn,
        "poolUnusedReleaseTimeoutMs", (json_int_t)c->pool_unused_release_timeout_ms,
        "http2StreamWindowSize", (json_int_t)c->h2_stream_window, "http2ConnectionWindowSize",
        (json_int_t)c->h2_conn_window, "terminationDeadlineMs",
        (json_int_t)c->termination_deadline_ms, "logLevel", zt_log_level_str(zt_log_get_level()));
}

static char *op_config_dump(void *ud)
{
    struct proxy_app *app = ud;
    pthread_mutex_lock(&app->mu);
    struct zt_state *state = zt_state_ref(app->shared_state);
    json_t *ws = json_deep_copy(app->workload_state);
    pthread_mutex_unlock(&app->mu);
    json_t *config = effective_config(&app->cfg);
    json_t *routes = NULL, *wp = NULL;
    if (app->waypoint) {
        struct zt_route_table *t = zt_waypoint_routes(app->waypoint);
        routes = zt_route_table_dump(t);
        zt_route_table_unref(t);
        pthread_mutex_lock(&app->mu); /* app->authn_policies change under it */
        wp = zt_waypoint_policies_dump(app->waypoint, &app->authn_policies);
        pthread_mutex_unlock(&app->mu);
    }
    struct zt_config_dump_in in = {
        .state = state,
        .ca = app->ca,
        .version = ZT_VERSION,
        .config = config,
        .workload_state = ws,
        .routes = routes,
        .waypoint = wp,
    };
    char *out = zt_config_dump_render(&in);
    json_decref(config);
    json_decref(ws);
    json_decref(routes);
    json_decref(wp);
    zt_state_unref(state);
    return out;
}

static void op_metrics(void *ud, struct zt_buf *out)
{
    struct proxy_app *app = ud;
    zt_metrics_render(app->metrics, out);
    zt_proxy_render_metrics(app->proxy, out);
}

/* Istio's readiness blockers: with a local config the state is ready from
 * the start; the workload proxy manager is ready once the node agent's
 * snapshot is in and no pod is pending. */
static bool op_ready(void *ud, char *why, size_t cap)
{
    struct proxy_app *app = ud;
    if (atomic_load(&app->draining)) {
        snprintf(why, cap, "draining");
        return false;
    }
    bool state = atomic_load(&app->xds_pending), inpod = !atomic_load(&app->inpod_ready);
    if (state || inpod) {
        snprintf(why, cap, "%s%s%s", state ? "state manager" : "", state && inpod ? ", " : "",
                 inpod ? "workload proxy manager" : "");
        return false;
    }
    return true;
}

static void op_quit(void *ud)
{
    struct proxy_app *app = ud;
    uv_async_send(&app->quit_async);
}

static const struct zt_admin_ops admin_ops = {
    .config_dump = op_config_dump,
    .metrics = op_metrics,
    .ready = op_ready,
    .quit = op_quit,
};

/* How often a proxy whose ports another one holds tries them again. */
#define ADMIN_RETRY_MS 50

static void admin_opts(const struct proxy_app *app, struct zt_admin_opts *opts)
{
    /* IPV6_ENABLED=false: the public ports bind IPv4 only, as Istio's
     * ztunnel's wildcard address does. */
    const char *any = app->cfg.ipv6_enabled ? NULL : "0.0.0.0";
    *opts = (struct zt_admin_opts){
        .admin_port = 15000,
        .stats_addr = any,
        .stats_port = 15020,
        .ready_addr = any,
        .ready_port = 15021,
    };
}

static void on_admin_retry(uv_timer_t *t)
{
    struct proxy_app *app = t->data;
    struct zt_admin_opts opts;
    char err[256];
    if (atomic_load(&app->draining)) {
        uv_timer_stop(t);
        return;
    }
    admin_opts(app, &opts);
    int rc = zt_admin_start(&opts, &admin_ops, app, &app->admin, err, sizeof(err));
    if (rc == -EADDRINUSE)
        return;
    uv_timer_stop(t);
    if (rc < 0)
        ZT_ERROR("admin", "admin endpoints: %s: the proxy serves without them", err);
    else
        ZT_INFO("admin", "admin, stats and readiness ports bound (15000, 15020, 15021)");
}

int zt_proxy_admin_start(struct proxy_app *app)
{
    pthread_mutex_lock(&app->mu);
    if (!app->workload_state)
        app->workload_state = json_object();
    pthread_mutex_unlock(&app->mu);
    struct zt_admin_opts opts;
    admin_opts(app, &opts);
    char err[256];
    int rc = zt_admin_start(&opts, &admin_ops, app, &app->admin, err, sizeof(err));
    if (rc == -EADDRINUSE) {
        /* Usually the proxy this one replaces (an upgrade on a host, where
         * both share a network namespace): it releases the ports when it
         * starts draining. Meanwhile this one serves without them. */
        ZT_WARN("admin",
                "%s: waiting for the port (held by the proxy being replaced, or another "
                "process); serving pods meanwhile",
                err);
        uv_timer_init(app->loop, &app->admin_retry);
        app->admin_retry.data = app;
        app->has_admin_retry = true;
        uv_timer_start(&app->admin_retry, on_admin_retry, ADMIN_RETRY_MS, ADMIN_RETRY_MS);
        return 0;
    }
    if (rc < 0)
        fprintf(stderr, "ztunnel proxy: admin endpoints: %s\n", err);
    return rc;
}

void zt_proxy_admin_release(struct proxy_app *app)
{
    if (app->has_admin_retry)
        uv_timer_stop(&app->admin_retry);
    zt_admin_release_ports(app->admin);
}

void zt_proxy_admin_stop(struct proxy_app *app)
{
    if (app->has_admin_retry) {
        uv_close((uv_handle_t *)&app->admin_retry, NULL);
        app->has_admin_retry = false;
    }
    zt_admin_stop(app->admin);
    app->admin = NULL;
    pthread_mutex_lock(&app->mu);
    zt_state_unref(app->shared_state);
    app->shared_state = NULL;
    json_decref(app->workload_state);
    app->workload_state = NULL;
    pthread_mutex_unlock(&app->mu);
}

void zt_proxy_admin_set_state(struct proxy_app *app, struct zt_state *state)
{
    struct zt_state *ref = zt_state_ref(state);
    pthread_mutex_lock(&app->mu);
    struct zt_state *old = app->shared_state;
    app->shared_state = ref;
    pthread_mutex_unlock(&app->mu);
    zt_state_unref(old);
}

void zt_proxy_admin_pod_up(struct proxy_app *app, const char *uid,
                           const struct zt_zds_workload_info *info)
{
    json_t *entry =
        json_pack("{s:s, s:{s:s, s:s, s:s}}", "state", "Up", "info", "name", info->name,
                  "namespace", info->namespace, "serviceAccount", info->service_account);
    pthread_mutex_lock(&app->mu);
    if (!app->workload_state)
        app->workload_state = json_object();
    json_object_set_new(app->workload_state, uid, entry);
    pthread_mutex_unlock(&app->mu);
}

void zt_proxy_admin_pod_down(struct proxy_app *app, const char *uid)
{
    pthread_mutex_lock(&app->mu);
    if (app->workload_state)
        json_object_del(app->workload_state, uid);
    pthread_mutex_unlock(&app->mu);
}
