/* `ztunnel proxy`: wires configuration, identities, the data plane and the
 * in-pod (ZDS) client together and owns the process lifecycle. */
#include "cmd/cmd.h"
#include "base/alloc.h"
#include "cmd/proxy_app.h"
#include "cmd/common.h"

#include "base/err.h"
#include "base/file.h"
#include "base/log.h"
#include "ca/manager.h"
#include "config/authn.h"
#include "config/authz.h"
#include "config/ratelimit.h"
#include "config/env.h"
#include "config/local.h"
#include "config/routes.h"
#include "inpod/zds_client.h"
#include "proxy/proxy.h"
#include "telemetry/metrics.h"
#include "tls/crl.h"
#include "tls/localca.h"
#include "xds/policies.h"
#include "xds/routes.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The identity a pod's certificates carry: its workload's, or one made of
 * the pod's own service account when the workload is not (yet) known. */
static int pod_identity(struct proxy_app *app, const struct zt_zds_workload_info *info,
                        struct zt_spiffe_id *id)
{
    const char *sa = info->service_account[0] ? info->service_account : NULL;
    const struct zt_workload *wl =
        zt_state_workload_by_info(app->state, info->name, info->namespace, sa, app->cfg.node_name);
    return zt_spiffe_make(wl ? wl->trust_domain : app->cfg.trust_domain, info->namespace,
                          wl ? wl->service_account : (sa ? sa : "default"), id);
}

/* Whether an enrolled pod (other than `skip`, may be NULL) or a workload
 * of this node still uses id: then its certificate stays. */
static bool identity_in_use(const struct proxy_app *app, const struct zt_spiffe_id *id,
                            const struct pod_ident *skip)
{
    for (size_t i = 0; i < app->n_pod_ids; i++)
        if (&app->pod_ids[i] != skip && app->pod_ids[i].has_id &&
            zt_spiffe_eq(&app->pod_ids[i].id, id))
            return true;
    for (size_t i = 0; i < app->n_node_ids; i++)
        if (zt_spiffe_eq(&app->node_ids[i], id))
            return true;
    return false;
}

static bool id_listed(const struct zt_spiffe_id *ids, size_t n, const struct zt_spiffe_id *id)
{
    for (size_t i = 0; i < n; i++)
        if (zt_spiffe_eq(&ids[i], id))
            return true;
    return false;
}

/* Wire facts §4: with the Istio CA, certificates are prefetched for every
 * workload of this node that speaks HBONE, and forgotten when the last
 * workload (or enrolled pod) with that identity is gone. Runs on every new
 * state; never waits for the CA. */
static void sync_node_identities(struct proxy_app *app)
{
    /* A draining proxy asks the CA for nothing more: the one replacing it
     * fetches what the node needs from now on. */
    if (!app->ca_client || !app->cfg.node_name || !app->cfg.node_name[0] ||
        atomic_load(&app->draining))
        return;
    struct zt_spiffe_id *ids = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < zt_state_workload_count(app->state); i++) {
        const struct zt_workload *wl = zt_state_workload_at(app->state, i);
        struct zt_spiffe_id id;
        if (!wl->node || strcmp(wl->node, app->cfg.node_name) != 0 ||
            (wl->protocol != ZT_WL_PROTO_HBONE && !wl->native_tunnel) ||
            zt_spiffe_make(wl->trust_domain, wl->namespace, wl->service_account, &id) != 0 ||
            id_listed(ids, n, &id))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            ids = zt_xrealloc(ids, cap * sizeof(*ids));
        }
        ids[n++] = id;
    }
    struct zt_spiffe_id *old = app->node_ids;
    size_t n_old = app->n_node_ids;
    app->node_ids = ids;
    app->n_node_ids = n;
    app->cap_node_ids = cap;
    for (size_t i = 0; i < n; i++) {
        zt_ca_mgr_prefetch(app->ca, &ids[i]);
        /* New on this node: a refusal from before (the CA did not know the
         * workload yet, e.g. its pod was enrolled first) may not hold now;
         * the connections waiting for the workload need the answer now. */
        if (!id_listed(old, n_old, &ids[i]))
            zt_ca_mgr_retry_now(app->ca, &ids[i]);
    }
    for (size_t i = 0; i < n_old; i++)
        if (!identity_in_use(app, &old[i], NULL))
            zt_ca_mgr_forget(app->ca, &old[i]);
    free(old);
}

static int pod_add(void *ud, const char *uid, int netns_fd, const struct zt_zds_workload_info *info)
{
    struct proxy_app *app = ud;
    int rc = zt_proxy_pod_add(app->proxy, uid, netns_fd, info);
    if (rc < 0)
        return rc;
    struct pod_ident *p = NULL;
    for (size_t i = 0; i < app->n_pod_ids && !p; i++)
        if (strcmp(app->pod_ids[i].uid, uid) == 0)
            p = &app->pod_ids[i];
    if (!p) {
        if (app->n_pod_ids == app->cap_pod_ids) {
            app->cap_pod_ids = app->cap_pod_ids ? 2 * app->cap_pod_ids : 16;
            app->pod_ids = zt_xrealloc(app->pod_ids, app->cap_pod_ids * sizeof(*app->pod_ids));
        }
        p = &app->pod_ids[app->n_pod_ids++];
        snprintf(p->uid, sizeof(p->uid), "%s", uid);
    }
    p->has_id = pod_identity(app, info, &p->id) == 0;
    if (p->has_id && app->ca_client) {
        /* Ask for the pod's certificate now, so its first connection
         * likely finds it; the control loop does not wait for it. */
        zt_ca_mgr_prefetch(app->ca, &p->id);
    }
    zt_proxy_admin_pod_up(app, uid, info);
    zt_metrics_counter_inc(app->metrics, ZT_C_WORKLOAD_MANAGER_PROXIES_STARTED);
    zt_metrics_gauge_set(app->metrics, ZT_G_WORKLOAD_MANAGER_ACTIVE_PROXIES,
                         zt_proxy_pod_count(app->proxy));
    return 0;
}

static void pod_del(void *ud, const char *uid)
{
    struct proxy_app *app = ud;
    zt_proxy_pod_del(app->proxy, uid);
    zt_proxy_admin_pod_down(app, uid);
    /* A certificate is forgotten when the last pod or node workload using
     * it leaves. */
    for (size_t i = 0; i < app->n_pod_ids; i++) {
        if (strcmp(app->pod_ids[i].uid, uid) != 0)
            continue;
        struct pod_ident gone = app->pod_ids[i];
        app->pod_ids[i] = app->pod_ids[--app->n_pod_ids];
        if (gone.has_id && !identity_in_use(app, &gone.id, NULL))
            zt_ca_mgr_forget(app->ca, &gone.id);
        break;
    }
    zt_metrics_counter_inc(app->metrics, ZT_C_WORKLOAD_MANAGER_PROXIES_STOPPED);
    zt_metrics_gauge_set(app->metrics, ZT_G_WORKLOAD_MANAGER_ACTIVE_PROXIES,
                         zt_proxy_pod_count(app->proxy));
}

static void inpod_state(void *ud, bool connected, bool snapshot_received, unsigned pending)
{
    struct proxy_app *app = ud;
    zt_metrics_gauge_set(app->metrics, ZT_G_WORKLOAD_MANAGER_PENDING_PROXIES, pending);
    atomic_store(&app->inpod_ready, connected && snapshot_received && pending == 0);
    ZT_INFO("inpod", "node agent %s, snapshot %s, %u pending pod(s)",
            connected ? "connected" : "disconnected", snapshot_received ? "received" : "pending",
            pending);
    zt_proxy_upgrade_check(app);
}

static const struct zt_inpod_client_ops inpod_ops = {
    .add = pod_add,
    .del = pod_del,
    .state = inpod_state,
};

static void on_drained(void *ud)
{
    struct proxy_app *app = ud;
    uv_stop(app->loop);
}

void zt_proxy_begin_drain(struct proxy_app *app, const char *why)
{
    if (atomic_exchange(&app->draining, true))
        return;
    ZT_INFO("proxy", "%s: draining for up to %llu ms", why,
            (unsigned long long)app->cfg.termination_deadline_ms);
    zt_inpod_client_stop(app->inpod);
    app->inpod = NULL;
    /* A proxy replacing this one in the same network namespace waits for
     * the admin ports (an upgrade on a host). */
    zt_proxy_admin_release(app);
    zt_proxy_drain(app->proxy, app->cfg.termination_deadline_ms, on_drained, app);
}

/* SIGTERM, SIGINT: drain (wire facts §9.4); a second SIGINT: stop now. */
static void on_signal(uv_signal_t *s, int signum)
{
    struct proxy_app *app = s->data;
    if (++app->signals > 1) {
        ZT_WARN("proxy", "received %s again: stopping now", strsignal(signum));
        uv_stop(app->loop);
        return;
    }
    char why[64];
    snprintf(why, sizeof(why), "received %s", strsignal(signum));
    zt_proxy_begin_drain(app, why);
}

static void on_quit(uv_async_t *a)
{
    zt_proxy_begin_drain(a->data, "POST /quitquitquit");
}

/* ENABLE_ORIG_SRC: unset = use it if the kernel lets us, true = required. */
static int probe_orig_src(const struct zt_config *cfg, bool *out)
{
    *out = false;
    if (cfg->enable_orig_src == ZT_FALSE)
        return 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    bool ok = fd >= 0 && setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok && cfg->enable_orig_src == ZT_TRUE) {
        fprintf(stderr, "ztunnel proxy: ENABLE_ORIG_SRC=true but IP_TRANSPARENT is not "
                        "permitted (needs CAP_NET_ADMIN)\n");
        return ZT_E_CONFIG;
    }
    *out = ok;
    return 0;
}

/* `ztunnel waypoint`: the HTTPRoute and GRPCRoute documents of
 * LOCAL_XDS_PATH become the routes in force. A bad route is logged and left
 * out; the others apply. */
static void load_routes(struct proxy_app *app)
{
    if (!app->is_waypoint || !app->cfg.local_xds_path)
        return;
    struct zt_route_errors errs = {0};
    struct zt_route_builder *b =
        zt_route_builder_new(app->cfg.pod_namespace, app->cfg.gateway_name);
    int rc = zt_config_routes_load_file(b, app->cfg.local_xds_path, &errs);
    zt_route_builder_set_left_out(b, errs.n_errors);
    for (size_t i = 0; i < errs.n; i++) {
        if (errs.v[i].is_warning)
            ZT_WARN("routes", "%s", errs.v[i].msg);
        else
            ZT_ERROR("routes", "%s: route left out", errs.v[i].msg);
    }
    struct zt_route_table *t = zt_route_builder_finish(b);
    if (rc < 0 && rc != ZT_E_CONFIG) {
        ZT_ERROR("routes", "%s: %s: the routes in force stay", app->cfg.local_xds_path,
                 zt_strerror(rc));
    } else {
        ZT_INFO("routes", "%zu route(s) in force (%zu left out, %zu warning(s))",
                zt_route_table_count(t), errs.n_errors, errs.n_warnings);
        zt_waypoint_set_routes(app->waypoint, t);
    }
    zt_route_table_unref(t);
    zt_route_errors_cleanup(&errs);
}

static const char *jwks_lookup(void *ud, const char *uri, size_t *len)
{
    struct proxy_app *app = ud;
    for (size_t i = 0; i < app->n_jwks_docs; i++)
        if (strcmp(app->jwks_docs[i].uri, uri) == 0) {
            *len = app->jwks_docs[i].len;
            return app->jwks_docs[i].body;
        }
    return NULL;
}

/* The RequestAuthentication rules in force, rebuilt from the policies
 * last read and the key sets fetched so far. */
static void apply_authn(struct proxy_app *app)
{
    size_t bad = 0;
    struct zt_jwt_authn_set *a =
        zt_jwt_authn_set_build(&app->authn_policies, NULL, app->cfg.pod_namespace,
                               app->cfg.gateway_name, jwks_lookup, app, &bad);
    ZT_INFO("jwt", "%zu RequestAuthentication polic%s in force at this waypoint (%zu rule set%s)",
            zt_jwt_authn_set_policies(a), zt_jwt_authn_set_policies(a) == 1 ? "y" : "ies",
            zt_jwt_authn_set_sets(a), zt_jwt_authn_set_sets(a) == 1 ? "" : "s");
    zt_waypoint_set_authn(app->waypoint, a);
    zt_jwt_authn_set_unref(a);
}

/* A new document for uri from the fetcher: kept (and the rules rebuilt)
 * only if it is a usable JWKS; otherwise the last good one stays. */
static void on_jwks(void *ud, const char *uri, const char *body, size_t len)
{
    struct proxy_app *app = ud;
    char err[256];
    struct zt_jwt_rules *trial = zt_jwt_rules_new();
    struct zt_jwt_rule_spec spec = {.issuer = "-", .jwks_uri = uri};
    int rc = zt_jwt_rules_add(trial, &spec, err, sizeof(err));
    if (rc >= 0)
        rc = zt_jwt_rules_set_jwks(trial, (size_t)rc, body, len, err, sizeof(err));
    zt_jwt_rules_free(trial);
    if (rc < 0) {
        ZT_ERROR("jwt", "%s: %s: the last good key set stays", uri, err);
        return;
    }
    struct proxy_jwks_doc *d = NULL;
    for (size_t i = 0; i < app->n_jwks_docs && !d; i++)
        if (strcmp(app->jwks_docs[i].uri, uri) == 0)
            d = &app->jwks_docs[i];
    if (!d) {
        app->jwks_docs =
            zt_xrealloc(app->jwks_docs, (app->n_jwks_docs + 1) * sizeof(*app->jwks_docs));
        d = &app->jwks_docs[app->n_jwks_docs++];
        d->uri = zt_xstrdup(uri);
    } else {
        free(d->body);
    }
    d->body = zt_xstrndup(body, len);
    d->len = len;
    ZT_INFO("jwt", "%s: new key set (%zu bytes)", uri, len);
    apply_authn(app);
}

/* Fetches the jwksUris the policies name (and only those: documents of
 * URIs no longer named are dropped). */
static void fetch_jwks(struct proxy_app *app)
{
    const char *uris[ZT_JWKS_URIS_MAX];
    char err[256];
    size_t n = zt_jwt_authn_policies_uris(&app->authn_policies, uris, ZT_JWKS_URIS_MAX);
    if (n > ZT_JWKS_URIS_MAX) {
        ZT_ERROR("jwt", "%zu jwksUris named, only the first %d are fetched", n, ZT_JWKS_URIS_MAX);
        n = ZT_JWKS_URIS_MAX;
    }
    size_t k = 0;
    for (size_t i = 0; i < app->n_jwks_docs; i++) {
        bool named = false;
        for (size_t j = 0; j < n && !named; j++)
            named = strcmp(uris[j], app->jwks_docs[i].uri) == 0;
        if (named) {
            app->jwks_docs[k++] = app->jwks_docs[i];
        } else {
            free(app->jwks_docs[i].uri);
            free(app->jwks_docs[i].body);
        }
    }
    app->n_jwks_docs = k;
    if (!n && !app->jwks)
        return;
    if (!app->jwks) {
        struct zt_jwks_fetcher_opts o = {.ca_file = app->cfg.jwks_root_ca,
                                         .refresh_s = app->cfg.jwks_refresh_s};
        if (!(app->jwks = zt_jwks_fetcher_new(app->loop, &o, on_jwks, app))) {
            ZT_ERROR("jwt", "the jwksUri fetcher cannot start: rules with a jwksUri refuse "
                            "their tokens");
            return;
        }
    }
    if (zt_jwks_fetcher_set_uris(app->jwks, uris, n, err, sizeof(err)) < 0)
        ZT_ERROR("jwt", "jwksUris not fetched: %s", err);
}

static void log_policy_errors(const char *scope, const struct zt_route_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++) {
        if (errs->v[i].is_warning)
            ZT_WARN(scope, "%s", errs->v[i].msg);
        else
            ZT_ERROR(scope, "%s: policy left out", errs->v[i].msg);
    }
}

/* set (filled, not sealed; borrowed) becomes the limits in force, from
 * LOCAL_XDS_PATH or from xDS alike: sealed, it inherits the counters and,
 * for policies whose limit and key did not change, the buckets of the set
 * in force (a reload is no fresh burst; ratelimit.h). */
static void install_ratelimits(struct proxy_app *app, struct zt_ratelimit_set *set,
                               const char *from, size_t left_out)
{
    zt_ratelimit_set_seal(set);
    struct zt_ratelimit_set *old = zt_waypoint_ratelimits(app->waypoint);
    zt_ratelimit_set_inherit(set, old);
    zt_ratelimit_set_unref(old);
    ZT_INFO("ratelimit", "%zu rate limit polic%s in force%s (%zu left out)",
            zt_ratelimit_set_count(set), zt_ratelimit_set_count(set) == 1 ? "y" : "ies", from,
            left_out);
    zt_waypoint_set_ratelimits(app->waypoint, zt_ratelimit_set_count(set) ? set : NULL);
}

/* The RateLimit documents of yaml[0..len) (file names it) become the
 * limits in force. A bad policy is logged and left out. */
static void load_ratelimits(struct proxy_app *app, const char *file, const char *yaml, size_t len)
{
    struct zt_route_errors errs = {0};
    struct zt_ratelimit_set *set = zt_ratelimit_set_new();
    int rc = zt_config_ratelimit_load_string(set, file, yaml, len, &errs);
    log_policy_errors("ratelimit", &errs);
    if (rc < 0 && rc != ZT_E_CONFIG)
        ZT_ERROR("ratelimit", "%s: %s: the rate limits in force stay", file, zt_strerror(rc));
    else
        install_ratelimits(app, set, "", errs.n_errors);
    zt_ratelimit_set_unref(set);
    zt_route_errors_cleanup(&errs);
}

/* `ztunnel waypoint`: the AuthorizationPolicy and RequestAuthentication
 * documents of LOCAL_XDS_PATH that attach to waypoints become the L7
 * policies and JWT rules in force. A bad policy is logged and left out;
 * the others apply. A file that cannot be read keeps what is in force. */
static void load_policies(struct proxy_app *app)
{
    if (!app->is_waypoint || !app->cfg.local_xds_path)
        return;
    const char *path = app->cfg.local_xds_path;
    char *buf = NULL;
    size_t len = 0;
    int rc = zt_read_file(path, ZT_CONFIG_LOCAL_MAX_BYTES, NULL, &buf, &len);
    if (rc < 0) {
        ZT_ERROR("authz", "%s: %s: the policies in force stay", path, zt_strerror(rc));
        return;
    }
    struct zt_route_errors errs = {0};
    struct zt_authz_l7_set *set = zt_authz_l7_set_new(NULL);
    rc = zt_config_authz_load_string(set, path, buf, len, &errs);
    log_policy_errors("authz", &errs);
    if (rc < 0 && rc != ZT_E_CONFIG) {
        ZT_ERROR("authz", "%s: %s: the policies in force stay", path, zt_strerror(rc));
    } else {
        zt_authz_l7_set_seal(set);
        ZT_INFO("authz", "%zu L7 authorization polic%s in force (%zu left out)",
                zt_authz_l7_set_count(set), zt_authz_l7_set_count(set) == 1 ? "y" : "ies",
                errs.n_errors);
        zt_waypoint_set_policies(app->waypoint, zt_authz_l7_set_count(set) ? set : NULL);
    }
    zt_authz_l7_set_unref(set);
    zt_route_errors_cleanup(&errs);

    load_ratelimits(app, path, buf, len);
    struct zt_jwt_authn_policies authn = {0};
    errs = (struct zt_route_errors){0};
    rc = zt_config_authn_load_string(&authn, path, buf, len, &errs);
    free(buf);
    log_policy_errors("jwt", &errs);
    zt_route_errors_cleanup(&errs);
    if (rc < 0 && rc != ZT_E_CONFIG) {
        ZT_ERROR("jwt", "%s: %s: the RequestAuthentications in force stay", path, zt_strerror(rc));
        zt_jwt_authn_policies_cleanup(&authn);
        return;
    }
    /* Under mu: /config_dump reads them on the admin thread. */
    pthread_mutex_lock(&app->mu);
    zt_jwt_authn_policies_cleanup(&app->authn_policies);
    app->authn_policies = authn;
    pthread_mutex_unlock(&app->mu);
    fetch_jwks(app);
    apply_authn(app);
}

/* A new state from a config source: data plane, admin view, reference.
 * The certificates of identities new on this node are asked for before
 * the workers see the state: a connection waiting for its workload resumes
 * as soon as they do, and must find the request under way, not the CA's
 * refusal from before the workload was configured. */
static void publish_state(struct proxy_app *app, struct zt_state *next)
{
    zt_state_unref(app->state);
    app->state = next;
    sync_node_identities(app);
    zt_proxy_set_state(app->proxy, next);
    zt_proxy_admin_set_state(app, next);
}

static void on_xds_publish(void *ud, struct zt_state *state)
{
    struct proxy_app *app = ud;
    ZT_INFO("xds", "new state: %zu workloads, %zu services, %zu policies",
            zt_state_workload_count(state), zt_state_service_count(state),
            zt_state_policy_count(state));
    publish_state(app, state);
}

static void on_xds_ready(void *ud)
{
    struct proxy_app *app = ud;
    atomic_store(&app->xds_pending, false);
    zt_proxy_upgrade_check(app);
}

/* A waypoint without LOCAL_XDS_PATH takes its routes from the xDS server
 * (`ztunnel control`): every accepted Route, decoded into one new table.
 * The client checked each resource already; a route the builder refuses
 * (two resources holding one route) is logged and left out. */
static void on_xds_routes(void *ud, const struct zt_ads_resource *routes, size_t n)
{
    struct proxy_app *app = ud;
    struct zt_route_builder *b =
        zt_route_builder_new(app->cfg.pod_namespace, app->cfg.gateway_name);
    size_t left_out = 0;
    for (size_t i = 0; i < n; i++) {
        struct zt_route_def d;
        char err[300];
        if (zt_xds_route_decode(routes[i].value, routes[i].value_len, &d, err, sizeof(err)) < 0 ||
            zt_route_builder_add(b, &d, err, sizeof(err)) < 0) {
            ZT_ERROR("routes", "%s: %s: route left out", routes[i].name, err);
            left_out++;
        }
    }
    struct zt_route_table *t = zt_route_builder_finish(b);
    ZT_INFO("routes", "%zu route(s) in force from xDS (%zu left out)", zt_route_table_count(t),
            left_out);
    zt_waypoint_set_routes(app->waypoint, t);
    zt_route_table_unref(t);
}

static const struct zt_xds_client_ops xds_ops = {
    .publish = on_xds_publish,
    .ready = on_xds_ready,
};

/* A waypoint without LOCAL_XDS_PATH takes its AuthorizationPolicies from
 * the xDS server (`ztunnel control`): every accepted one, decoded into one
 * new sealed set. The client checked each resource already. */
static void install_xds_authz(struct proxy_app *app, const struct zt_ads_resource *v, size_t n)
{
    struct zt_authz_l7_set *set = zt_authz_l7_set_new(NULL);
    size_t left_out = 0;
    for (size_t i = 0; i < n; i++) {
        struct zt_authz_l7_policy *p;
        char err[300];
        if (zt_xds_authz_decode(v[i].value, v[i].value_len, &p, err, sizeof(err)) < 0) {
            ZT_ERROR("authz", "%s: %s: policy left out", v[i].name, err);
            left_out++;
            continue;
        }
        zt_authz_l7_set_add(set, p);
    }
    zt_authz_l7_set_seal(set);
    ZT_INFO("authz", "%zu L7 authorization polic%s in force from xDS (%zu left out)",
            zt_authz_l7_set_count(set), zt_authz_l7_set_count(set) == 1 ? "y" : "ies", left_out);
    zt_waypoint_set_policies(app->waypoint, zt_authz_l7_set_count(set) ? set : NULL);
    zt_authz_l7_set_unref(set);
}

/* The same for RequestAuthentications: they become the policies the JWT
 * rules are built from, their jwksUris are fetched, and the rules in force
 * are rebuilt (fetch_jwks and apply_authn, as for LOCAL_XDS_PATH). */
static void install_xds_authn(struct proxy_app *app, const struct zt_ads_resource *v, size_t n)
{
    struct zt_jwt_authn_policies l = {0};
    for (size_t i = 0; i < n; i++) {
        struct zt_jwt_authn_policy *p;
        char err[300];
        if (zt_xds_authn_decode(v[i].value, v[i].value_len, &p, err, sizeof(err)) < 0) {
            ZT_ERROR("jwt", "%s: %s: policy left out", v[i].name, err);
            continue;
        }
        zt_jwt_authn_policies_add(&l, p);
    }
    pthread_mutex_lock(&app->mu); /* as load_policies */
    zt_jwt_authn_policies_cleanup(&app->authn_policies);
    app->authn_policies = l;
    pthread_mutex_unlock(&app->mu);
    fetch_jwks(app);
    apply_authn(app);
}

/* The same for RateLimits: one new set, installed as a LOCAL_XDS_PATH
 * reload installs it (install_ratelimits). */
static void install_xds_ratelimits(struct proxy_app *app, const struct zt_ads_resource *v, size_t n)
{
    struct zt_ratelimit_set *set = zt_ratelimit_set_new();
    size_t left_out = 0;
    for (size_t i = 0; i < n; i++) {
        struct zt_ratelimit_policy *p;
        char err[300];
        if (zt_xds_ratelimit_decode(v[i].value, v[i].value_len, &p, err, sizeof(err)) < 0) {
            ZT_ERROR("ratelimit", "%s: %s: policy left out", v[i].name, err);
            left_out++;
            continue;
        }
        zt_ratelimit_set_add(set, p);
    }
    install_ratelimits(app, set, " from xDS", left_out);
    zt_ratelimit_set_unref(set);
}

static void on_xds_policies(void *ud, enum zt_ads_type t, const struct zt_ads_resource *v, size_t n)
{
    if (t == ZT_ADS_AUTHZ_POLICY)
        install_xds_authz(ud, v, n);
    else if (t == ZT_ADS_AUTHN_POLICY)
        install_xds_authn(ud, v, n);
    else
        install_xds_ratelimits(ud, v, n);
}

static const struct zt_xds_client_ops xds_ops_waypoint = {
    .publish = on_xds_publish,
    .ready = on_xds_ready,
    .routes = on_xds_routes,
    .policies = on_xds_policies,
};

/* XDS_ADDRESS set and not empty: istiod (or `ztunnel control`) is the
 * source of workloads, services and policies, on top of any local config. */
static int start_xds(struct proxy_app *app)
{
    const struct zt_config *cfg = &app->cfg;
    if (!cfg->xds_address)
        return 0;
    const char *pod = cfg->pod_name, *ns = cfg->pod_namespace;
    char node_id[600];
    snprintf(node_id, sizeof(node_id), "ztunnel~%s~%s.%s~%s.svc.cluster.local",
             cfg->instance_ip[0] ? cfg->instance_ip : "1.1.1.1", pod, ns, ns);
    /* Node metadata: Istio's fixed keys, then every ISTIO_META_* variable
     * (the one family of variables not read by config/env.c: a set, not
     * named ones). */
    extern char **environ;
    size_t cap = 8;
    for (char **e = environ; *e; e++)
        cap += 2;
    const char **meta = calloc(cap, sizeof(*meta));
    char **owned = calloc(cap, sizeof(*owned));
    if (!meta || !owned)
        abort();
    size_t n = 0, no = 0;
    const char *fixed[] = {"NAME",         pod,
                           "NAMESPACE",    ns,
                           "INSTANCE_IPS", cfg->instance_ip,
                           "NODE_NAME",    app->cfg.node_name ? app->cfg.node_name : ""};
    for (size_t i = 0; i < 8; i++)
        meta[n++] = fixed[i];
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "ISTIO_META_", 11) != 0 || !strchr(*e, '='))
            continue;
        char *kv = zt_xstrdup(*e + 11);
        owned[no++] = kv;
        char *eq = strchr(kv, '=');
        *eq = 0;
        meta[n++] = kv;
        meta[n++] = eq + 1;
    }
    struct zt_xds_client_opts o = {
        .address = cfg->xds_address,
        .root_ca = app->cfg.xds_root_ca,
        .alt_hostname = cfg->alt_xds_hostname,
        .token_path = app->cfg.auth_token,
        .cluster_id = app->cfg.cluster_id,
        .node_id = node_id,
        .node_meta = meta,
        .n_node_meta = n / 2,
        .metrics = app->metrics,
        .ping_interval_ms = (uint32_t)cfg->control_keepalive_interval_ms,
        .ping_timeout_ms = (uint32_t)cfg->control_keepalive_timeout_ms,
    };
    char err[512];
    atomic_store(&app->xds_pending, true);
    /* Routes and L7 policies come from LOCAL_XDS_PATH when it is set
     * (load_routes, load_policies), else from the server; only a waypoint
     * asks for them. */
    bool want_waypoint_types = app->is_waypoint && !cfg->local_xds_path;
    int rc = zt_xds_client_start(app->loop, &o, app->state,
                                 want_waypoint_types ? &xds_ops_waypoint : &xds_ops, app, &app->xds,
                                 err, sizeof(err));
    for (size_t i = 0; i < no; i++)
        free(owned[i]);
    free(owned);
    free(meta);
    if (rc < 0)
        fprintf(stderr, "ztunnel proxy: %s\n", err);
    return rc;
}

static void on_reload_timer(uv_timer_t *t)
{
    struct proxy_app *app = t->data;
    char err[512];
    struct zt_state *next = NULL;
    uint64_t t0 = uv_hrtime();
    if (zt_config_local_load(app->cfg.local_xds_path, &next, err, sizeof(err)) < 0) {
        ZT_ERROR("config", "%s: edit refused, the previous configuration stays in force", err);
        return;
    }
    publish_state(app, next);
    load_routes(app);
    load_policies(app);
    /* The time is what bench/config.sh reports for an edit. */
    ZT_INFO("config", "reloaded %s: %zu workloads, %zu services, %zu policies in %.1f ms",
            app->cfg.local_xds_path, zt_state_workload_count(next), zt_state_service_count(next),
            zt_state_policy_count(next), (double)(uv_hrtime() - t0) / 1e6);
}

static void on_dir_change(void *ud, const char *name)
{
    struct proxy_app *app = ud;
    /* NULL: events were lost, the file may have changed. */
    if (name && strcmp(name, app->watch_base) != 0)
        return;
    /* Editors write in several steps: act once things settle. */
    uv_timer_start(&app->reload_timer, on_reload_timer, 100, 0);
}

static void start_watch(struct proxy_app *app)
{
    const char *path = app->cfg.local_xds_path;
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash) {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path == 0 ? 1 : slash - path), path);
        snprintf(app->watch_base, sizeof(app->watch_base), "%s", slash + 1);
    } else {
        snprintf(dir, sizeof(dir), ".");
        snprintf(app->watch_base, sizeof(app->watch_base), "%s", path);
    }
    uv_timer_init(app->loop, &app->reload_timer);
    app->reload_timer.data = app;
    int rc = zt_dirwatch_start(app->loop, dir, on_dir_change, app, &app->watch);
    if (rc < 0) {
        ZT_WARN("config", "cannot watch %s for changes: %s", dir, zt_strerror(rc));
        uv_close((uv_handle_t *)&app->reload_timer, NULL);
        return;
    }
    app->watching = true;
}

static int load_state(struct proxy_app *app)
{
    char err[512];
    int rc;
    uint64_t t0 = uv_hrtime();
    if (app->cfg.local_xds_path)
        rc = zt_config_local_load(app->cfg.local_xds_path, &app->state, err, sizeof(err));
    else if (app->cfg.local_xds)
        rc = zt_config_local_load_string("LOCAL_XDS", app->cfg.local_xds,
                                         strlen(app->cfg.local_xds), &app->state, err, sizeof(err));
    else {
        app->state = zt_state_new_empty();
        ZT_WARN("proxy", "neither LOCAL_XDS_PATH nor LOCAL_XDS is set: no workloads known");
        return 0;
    }
    if (rc < 0)
        fprintf(stderr, "ztunnel proxy: %s\n", err);
    else
        ZT_INFO("config", "loaded %s: %zu workloads, %zu services, %zu policies in %.1f ms",
                app->cfg.local_xds_path ? app->cfg.local_xds_path : "LOCAL_XDS",
                zt_state_workload_count(app->state), zt_state_service_count(app->state),
                zt_state_policy_count(app->state), (double)(uv_hrtime() - t0) / 1e6);
    return rc;
}

/* Certificates: the Istio CA at CA_ADDRESS (by default the xDS server, as
 * Istio does) or, without one, minted locally from LOCAL_CA_DIR. */
static int init_ca(struct proxy_app *app)
{
    char err[512];
    if (app->cfg.ca_address) {
        struct zt_ca_client_opts co = {
            .address = app->cfg.ca_address,
            .root_ca = app->cfg.ca_root_ca,
            .alt_hostname = app->cfg.alt_ca_hostname,
            .token_path = app->cfg.auth_token,
            .cluster_id = app->cfg.cluster_id,
            .impersonate = app->cfg.proxy_mode == ZT_PROXY_MODE_SHARED,
            .ping_interval_ms = (uint32_t)app->cfg.control_keepalive_interval_ms,
            .ping_timeout_ms = (uint32_t)app->cfg.control_keepalive_timeout_ms,
        };
        if (zt_ca_client_new(&co, &app->ca_client, err, sizeof(err)) < 0) {
            fprintf(stderr, "ztunnel proxy: %s\n", err);
            return -1;
        }
        return 0;
    }
    if (!app->cfg.local_ca_dir) {
        fprintf(stderr, "ztunnel proxy: no certificate authority: set CA_ADDRESS (Istio CA) or "
                        "LOCAL_CA_DIR (an Istio cacerts directory)\n");
        return -1;
    }
    if (zt_tls_localca_load(app->cfg.local_ca_dir, &app->localca, err, sizeof(err)) < 0) {
        fprintf(stderr, "ztunnel proxy: LOCAL_CA_DIR: %s\n", err);
        return -1;
    }
    return 0;
}

/* `ztunnel waypoint` serves the namespace it runs in as its one pod: its
 * workload is found by POD_NAME, POD_NAMESPACE and SERVICE_ACCOUNT, as a
 * node agent would name it. */
static int start_waypoint_pod(struct proxy_app *app)
{
    const struct zt_config *cfg = &app->cfg;
    struct zt_zds_workload_info info;
    memset(&info, 0, sizeof(info));
    if (!cfg->pod_name[0] || !cfg->pod_namespace[0] || strlen(cfg->pod_name) >= sizeof(info.name) ||
        strlen(cfg->pod_namespace) >= sizeof(info.namespace) ||
        strlen(cfg->service_account) >= sizeof(info.service_account)) {
        fprintf(stderr, "ztunnel waypoint: POD_NAME and POD_NAMESPACE must name the waypoint's "
                        "workload (and SERVICE_ACCOUNT its service account)\n");
        return -1;
    }
    snprintf(info.name, sizeof(info.name), "%s", cfg->pod_name);
    snprintf(info.namespace, sizeof(info.namespace), "%s", cfg->pod_namespace);
    snprintf(info.service_account, sizeof(info.service_account), "%s", cfg->service_account);
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "ztunnel waypoint: /proc/self/ns/net: %s\n", strerror(errno));
        return -1;
    }
    int rc = pod_add(app, "waypoint", fd, &info);
    if (rc < 0) {
        close(fd);
        fprintf(stderr, "ztunnel waypoint: cannot serve 15008: %s\n", zt_strerror(rc));
        return -1;
    }
    atomic_store(&app->inpod_ready, true);
    return 0;
}

/* Builds and starts everything. On failure (the reason printed) returns -1
 * with what was built so far left for proxy_cleanup. */
static int proxy_init(struct proxy_app *app)
{
    char err[512];
    if (zt_config_from_env(&app->cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "ztunnel proxy: %s\n", err);
        return -1;
    }
    zt_log_set_level(app->cfg.log_level);
    zt_log_set_json(app->cfg.log_format == ZT_LOG_FORMAT_JSON);
    zt_cmd_raise_nofile("proxy");
    if (load_state(app) < 0 || init_ca(app) < 0)
        return -1;
    bool orig_src;
    if (probe_orig_src(&app->cfg, &orig_src) < 0)
        return -1;

    app->loop = uv_default_loop();
    /* With the Istio CA nothing waits for an answer but the connections
     * that need it; local minting is quick enough to stay inline. */
    app->ca = app->ca_client
                  ? zt_ca_mgr_new_async(app->loop, zt_ca_client_mint_async, app->ca_client,
                                        (unsigned)app->cfg.secret_ttl_s)
                  : zt_ca_mgr_new(app->loop, app->localca, (unsigned)app->cfg.secret_ttl_s);
    app->metrics = zt_metrics_new(app->cfg.worker_threads, ZT_VERSION);
    if (zt_proxy_crl_init(app) < 0)
        return -1;
    const struct zt_config *cfg = &app->cfg;
    struct zt_proxy_opts opts = {
        .workers = cfg->worker_threads,
        .mark = cfg->packet_mark,
        .reuseport = cfg->inpod_port_reuse,
        .orig_src = orig_src,
        .trust_domain = cfg->trust_domain,
        .node = cfg->node_name,
        .network = cfg->network,
        .client_h2 = {.stream_window = cfg->h2_stream_window,
                      .connection_window = cfg->h2_conn_window,
                      .max_frame_size = cfg->h2_frame_size,
                      .max_header_list = 16 * 1024},
        .server_h2 = {.stream_window = cfg->h2_stream_window,
                      .connection_window = cfg->h2_conn_window,
                      .max_frame_size = cfg->h2_frame_size,
                      .max_header_list = 64 * 1024,
                      .max_concurrent_streams = 200},
        .pool_max_streams = cfg->pool_max_streams_per_conn,
        .pool_idle_ms = cfg->pool_unused_release_timeout_ms,
        .metrics = app->metrics,
        .authz_info_logging = cfg->authz_policy_info_logging,
        .keepalive = {.enabled = cfg->keepalive_enabled,
                      .time_s = cfg->keepalive_time_s,
                      .interval_s = cfg->keepalive_interval_s,
                      .retries = cfg->keepalive_retries},
        .ipv4_only = !cfg->ipv6_enabled,
        .dns_enabled = cfg->dns_proxy,
        .localhost_app_tunnel = cfg->localhost_app_tunnel,
        .dns = {.cluster_domain = cfg->cluster_domain,
                .ipv6_enabled = cfg->ipv6_enabled,
                .preferred_ns = cfg->preferred_service_ns},
        .n_dns_addr = cfg->n_dns_proxy_addr,
    };
    memcpy(opts.dns_addr, cfg->dns_proxy_addr, sizeof(opts.dns_addr));
    if (cfg->dns_proxy) {
        /* Without upstreams the proxy still answers mesh names; the rest
         * gets SERVFAIL, as from a resolver that cannot reach any. */
        char why[512];
        if (zt_dns_upstreams_load(cfg->resolv_conf, &opts.dns_upstreams, why, sizeof(why)) < 0)
            ZT_WARN("dns", "no upstream DNS resolvers: %s", why);
        else if (opts.dns_upstreams.n == 0)
            ZT_WARN("dns", "no upstream DNS resolvers: %s has no nameserver", cfg->resolv_conf);
    }
    if (app->is_waypoint) {
        struct zt_waypoint_opts wo = {.metrics = app->metrics,
                                      .cluster_domain = cfg->cluster_domain,
                                      .gateway_ns = cfg->pod_namespace,
                                      .gateway_name = cfg->gateway_name};
        app->waypoint = zt_waypoint_new(&wo);
        load_routes(app);
        load_policies(app);
        opts.l7 = &zt_waypoint_l7_ops;
        opts.l7_ud = app->waypoint;
        opts.dns_enabled = false;
    }
    app->proxy = zt_proxy_new(app->loop, &opts, app->ca);
    int rc = zt_proxy_start(app->proxy);
    if (rc < 0) {
        fprintf(stderr, "ztunnel proxy: cannot start workers: %s\n", zt_strerror(rc));
        return -1;
    }
    sync_node_identities(app);
    zt_proxy_set_state(app->proxy, app->state);
    pthread_mutex_init(&app->mu, NULL);
    app->has_mu = true;
    zt_proxy_admin_set_state(app, app->state);
    uv_async_init(app->loop, &app->quit_async, on_quit);
    app->quit_async.data = app;
    uv_signal_init(app->loop, &app->sigterm);
    uv_signal_init(app->loop, &app->sigint);
    app->sigterm.data = app->sigint.data = app;
    app->has_handles = true;
    if (zt_proxy_admin_start(app) < 0)
        return -1;
    if (app->is_waypoint) {
        if (start_waypoint_pod(app) < 0)
            return -1;
    } else {
        rc = zt_inpod_client_start(app->loop, cfg->inpod_uds, &inpod_ops, app, &app->inpod);
        if (rc < 0) {
            fprintf(stderr, "ztunnel proxy: in-pod client: %s\n", zt_strerror(rc));
            return -1;
        }
        zt_inpod_client_set_trusted_uid(app->inpod, cfg->trusted_uid);
    }
    if (start_xds(app) < 0)
        return -1;
    /* With xDS the file is the starting point only: a reload would replace
     * what the control plane sent. */
    if (cfg->local_xds_path && !app->xds)
        start_watch(app);
    zt_proxy_crl_watch(app);
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    zt_proxy_upgrade_init(app);
    if (app->is_waypoint)
        ZT_INFO("proxy", "ztunnel-c %s waypoint started: %u worker(s), %zu workload(s) configured",
                ZT_VERSION, opts.workers, zt_state_workload_count(app->state));
    else
        ZT_INFO("proxy",
                "ztunnel-c %s started: %u worker(s), %zu workload(s) configured, "
                "orig-src %s, node agent socket %s",
                ZT_VERSION, opts.workers, zt_state_workload_count(app->state),
                orig_src ? "on" : "off", cfg->inpod_uds);
    return 0;
}

/* Releases whatever proxy_init built, after a run or a failed start. */
static void jwks_closed(void *ud)
{
    *(bool *)ud = false;
}

static void proxy_cleanup(struct proxy_app *app)
{
    zt_proxy_upgrade_stop(app);
    zt_inpod_client_stop(app->inpod);
    zt_xds_client_stop(app->xds);
    if (app->has_mu)
        zt_proxy_admin_stop(app);
    zt_proxy_free(app->proxy);
    if (app->has_handles) {
        uv_close((uv_handle_t *)&app->quit_async, NULL);
        uv_close((uv_handle_t *)&app->sigterm, NULL);
        uv_close((uv_handle_t *)&app->sigint, NULL);
    }
    if (app->watching) {
        zt_dirwatch_stop(app->watch);
        uv_close((uv_handle_t *)&app->reload_timer, NULL);
    }
    zt_proxy_crl_stop(app);
    bool jwks_open = app->jwks != NULL;
    zt_jwks_fetcher_close(app->jwks, jwks_closed, &jwks_open);
    app->jwks = NULL;
    /* The CA client answers what it still holds before the manager goes. */
    zt_ca_client_free(app->ca_client);
    zt_ca_mgr_free(app->ca);
    if (app->loop)
        uv_run(app->loop, UV_RUN_NOWAIT);
    for (int i = 0; jwks_open && i < 100; i++) /* its handles close in a few iterations */
        uv_run(app->loop, UV_RUN_NOWAIT);
    zt_tls_localca_free(app->localca);
    zt_tls_crl_unref(app->crl);
    free(app->pod_ids);
    free(app->node_ids);
    zt_waypoint_free(app->waypoint);
    zt_jwt_authn_policies_cleanup(&app->authn_policies);
    for (size_t i = 0; i < app->n_jwks_docs; i++) {
        free(app->jwks_docs[i].uri);
        free(app->jwks_docs[i].body);
    }
    free(app->jwks_docs);
    zt_metrics_free(app->metrics);
    zt_state_unref(app->state);
    if (app->has_mu)
        pthread_mutex_destroy(&app->mu);
}

static int run(struct proxy_app *app)
{
    signal(SIGPIPE, SIG_IGN);
    int rc = proxy_init(app);
    /* Type=notify units; a proxy replacing another says so once it serves
     * every pod (proxy_upgrade.c). */
    if (rc == 0 && !app->has_handover_fd)
        zt_proxy_upgrade_notify("READY=1");
    if (rc == 0)
        uv_run(app->loop, UV_RUN_DEFAULT);
    proxy_cleanup(app);
    if (rc == 0)
        ZT_INFO("proxy", "stopped");
    return rc == 0 ? 0 : 1;
}

int zt_cmd_waypoint(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr,
                "ztunnel waypoint: unexpected argument '%s' (configured by environment "
                "variables, as the proxy)\n",
                argv[1]);
        return 2;
    }
    struct proxy_app app = {.is_waypoint = true};
    return run(&app);
}

int zt_cmd_proxy(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "ztunnel") == 0)
            continue; /* Istio's chart runs `ztunnel proxy ztunnel` */
        fprintf(stderr, "ztunnel proxy: unexpected argument '%s'\n", argv[i]);
        return 2;
    }
    struct proxy_app app = {0};
    return run(&app);
}
