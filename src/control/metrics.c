/* The control plane's Prometheus metrics, rendered from atomic counters on
 * the monitoring server's threads. Names follow istiod where it has one, so
 * dashboards and alerts written for istiod keep working. */
#include "control/control_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const type_label[ZT_ADS_NTYPES] = {
    "address",  "authorization", "route", "authorization_policy", "request_authentication",
    "ratelimit"};

static void line(struct zt_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void line(struct zt_buf *out, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        zt_buf_append(out, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static void head(struct zt_buf *out, const char *name, const char *type, const char *help)
{
    line(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(struct zt_buf *out, const char *name, const char *type, const char *help,
                uint64_t v)
{
    head(out, name, type, help);
    line(out, "%s %" PRIu64 "\n", name, v);
}

/* A series per xDS type. */
static void per_type(struct zt_buf *out, const char *name, const char *type, const char *help,
                     atomic_uint_fast64_t *v)
{
    head(out, name, type, help);
    for (int t = 0; t < ZT_ADS_NTYPES; t++)
        line(out, "%s{type=\"%s\"} %" PRIu64 "\n", name, type_label[t],
             (uint64_t)ZT_CONTROL_GET(v[t]));
}

void zt_control_render_metrics(struct zt_control *cp, struct zt_buf *out)
{
    struct zt_control_counters *n = &cp->n;
    one(out, "pilot_xds", "gauge", "Number of xDS streams connected to this control plane.",
        ZT_CONTROL_GET(n->ads_streams));
    per_type(out, "pilot_xds_pushes", "counter", "xDS responses sent, by resource type.",
             n->pushes);
    per_type(out, "pilot_total_xds_rejects", "counter",
             "xDS responses rejected (NACKed) by proxies, by resource type.", n->nacks);
    per_type(out, "ztunnel_control_xds_acks_total", "counter",
             "xDS responses acknowledged by proxies, by resource type.", n->acks);
    per_type(out, "ztunnel_control_xds_resources", "gauge",
             "Resources in the served configuration, by resource type.", n->resources);
    one(out, "ztunnel_control_xds_unauthenticated_total", "counter",
        "xDS streams refused for a missing or unknown node token.",
        ZT_CONTROL_GET(n->xds_unauthenticated));
    one(out, "ztunnel_control_connections", "gauge", "Open TLS connections.",
        ZT_CONTROL_GET(n->connections));
    one(out, "ztunnel_control_connections_refused_total", "counter",
        "Connections closed at once: over the per-address or the total cap.",
        ZT_CONTROL_GET(n->refused));
    one(out, "ztunnel_control_connections_unauthenticated_closed_total", "counter",
        "Connections closed for opening no authenticated stream in time.",
        ZT_CONTROL_GET(n->auth_timeouts));
    one(out, "ztunnel_control_accept_pauses_total", "counter",
        "Times accepting paused for want of file descriptors or memory.",
        ZT_CONTROL_GET(n->accept_pauses));
    one(out, "ztunnel_control_config_version", "gauge",
        "Configurations accepted since start (the served system_version_info).",
        ZT_CONTROL_GET(n->config_version));
    one(out, "ztunnel_control_config_errors_total", "counter",
        "Configuration reloads refused (the last good one stays served).",
        ZT_CONTROL_GET(n->config_errors));
    one(out, "citadel_server_csr_count", "counter", "Certificate signing requests received.",
        ZT_CONTROL_GET(n->csr));
    one(out, "citadel_server_success_cert_issuance_count", "counter", "Certificates issued.",
        ZT_CONTROL_GET(n->issued));
    one(out, "citadel_server_authentication_failure_count", "counter",
        "Certificate requests without a valid node token.", ZT_CONTROL_GET(n->unauthenticated));
    one(out, "citadel_server_csr_parsing_err_count", "counter",
        "Certificate requests refused as malformed.", ZT_CONTROL_GET(n->bad_csr));
    one(out, "citadel_server_csr_sign_err_count", "counter", "Certificate signing failures.",
        ZT_CONTROL_GET(n->sign_errors));
    one(out, "ztunnel_control_csr_unauthorized_total", "counter",
        "Certificate requests for an identity with no workload on the caller's node.",
        ZT_CONTROL_GET(n->unauthorized));
    head(out, "citadel_server_root_cert_expiry_timestamp", "gauge",
         "Unix time at which the earliest root certificate expires.");
    line(out, "citadel_server_root_cert_expiry_timestamp %" PRId64 "\n",
         (int64_t)ZT_CONTROL_GET(n->root_expiry));
}

bool zt_control_ready(struct zt_control *cp)
{
    return atomic_load(&cp->n.ready);
}
