/* CRL_PATH for `ztunnel proxy` (tls/crl.h), as Istio's ztunnel: the file is
 * loaded at start and watched through its directory (a ConfigMap update
 * swaps a symlink there, an editor renames a file into place); every change
 * is re-read after things settle, and once new CRLs are in force the
 * workers close the live HBONE connections of newly revoked peers.
 *
 * At start, a missing file is not an error (it may be mounted later): the
 * set is empty until it appears. A file that exists but does not load stops
 * the start (Istio's ztunnel would run without revocation checks at all).
 * Later, a file that does not load, or is deleted, is reported and the CRLs
 * in force stay. */
#include "cmd/proxy_app.h"

#include "base/err.h"
#include "base/log.h"
#include "tls/crl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* How long the directory must be quiet before the file is read again. */
#define CRL_SETTLE_MS 100

static void on_reject(void *ud, bool is_server)
{
    zt_metrics_counter_inc(ud, is_server ? ZT_C_CRL_POLICY_REJECTIONS_DESTINATION
                                         : ZT_C_CRL_POLICY_REJECTIONS_SOURCE);
}

/* Loads the file; returns what zt_tls_crl_load returns, logged. */
static int load(struct proxy_app *app, bool at_start)
{
    char err[600];
    size_t n = 0, revoked = 0;
    int rc = zt_tls_crl_load(app->crl, NULL, err, sizeof(err));
    if (rc > 0) {
        zt_tls_crl_counts(app->crl, &n, &revoked);
        ZT_INFO("crl", "CRL_PATH %s: %zu CRL(s), %zu revoked serial(s) in force", app->cfg.crl_path,
                n, revoked);
    } else if (rc == -ENOENT && at_start) {
        ZT_WARN("crl", "CRL_PATH %s: no such file yet; nothing is revoked until it appears",
                app->cfg.crl_path);
    } else if (rc < 0 && !at_start) {
        zt_tls_crl_counts(app->crl, &n, &revoked);
        ZT_ERROR("crl", "CRL_PATH refused, the %zu CRL(s) in force stay: %s", n, err);
    } else if (rc < 0) {
        fprintf(stderr, "ztunnel proxy: CRL_PATH: %s\n", err);
    }
    return rc;
}

int zt_proxy_crl_init(struct proxy_app *app)
{
    if (app->cfg.crl_path == NULL)
        return 0;
    app->crl = zt_tls_crl_new(app->cfg.crl_path, on_reject, app->metrics);
    int rc = load(app, true);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    zt_ca_mgr_set_crl(app->ca, app->crl);
    return 0;
}

static void on_settled(uv_timer_t *t)
{
    struct proxy_app *app = t->data;
    if (load(app, false) > 0)
        zt_proxy_crl_changed(app->proxy, app->crl);
}

static void on_dir_change(void *ud, const char *name)
{
    struct proxy_app *app = ud;
    /* Any name (NULL: events were lost): a ConfigMap swaps "..data", not the file itself. Reading
     * an unchanged file again costs a digest and changes nothing. */
    uv_timer_start(&app->crl_timer, on_settled, CRL_SETTLE_MS, 0);
}

void zt_proxy_crl_watch(struct proxy_app *app)
{
    if (app->crl == NULL)
        return;
    char dir[4096];
    const char *path = app->cfg.crl_path, *slash = strrchr(path, '/');
    if (slash != NULL)
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash == path ? 1 : slash - path), path);
    else
        snprintf(dir, sizeof(dir), ".");
    uv_timer_init(app->loop, &app->crl_timer);
    app->crl_timer.data = app;
    int rc = zt_dirwatch_start(app->loop, dir, on_dir_change, app, &app->crl_watch);
    if (rc < 0) {
        ZT_WARN("crl", "cannot watch %s: %s; CRL_PATH changes need a restart", dir,
                zt_strerror(rc));
        uv_close((uv_handle_t *)&app->crl_timer, NULL);
        return;
    }
    app->crl_watching = true;
}

void zt_proxy_crl_stop(struct proxy_app *app)
{
    if (!app->crl_watching)
        return;
    app->crl_watching = false;
    zt_dirwatch_stop(app->crl_watch);
    uv_close((uv_handle_t *)&app->crl_timer, NULL);
}
