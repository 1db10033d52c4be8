/* `ztunnel control`: the standalone control plane (src/control/). Parses
 * the command line, runs the server on one loop and stops on SIGTERM or
 * SIGINT (a second signal exits at once). */
#include "cmd/cmd.h"
#include "cmd/common.h"

#include "admin/admin.h"
#include "base/log.h"
#include "control/control.h"
#include "h2/grpc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define DEFAULT_LISTEN "0.0.0.0:15012"
#define DEFAULT_MONITORING "127.0.0.1:15014"
#define MAX_SERVER_NAMES 32

struct control_main {
    struct zt_control *cp;
    struct zt_admin *monitoring;
    uv_signal_t sigterm, sigint;
    int signals;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ztunnel control --config-dir DIR --ca-dir DIR --node-tokens FILE\n"
            "                       [--listen ADDR:PORT] [--tls-cert FILE --tls-key FILE]\n"
            "                       [--server-name NAME]... [--cert-ttl SECONDS]\n"
            "                       [--max-cert-ttl SECONDS] [--monitoring ADDR:PORT|off]\n"
            "                       [--max-conns-per-address N]\n"
            "Runs a control plane for ztunnel proxies: Istio's delta xDS and CA services on\n"
            "one TLS port.\n"
            "  --listen ADDR:PORT   address to serve on (default " DEFAULT_LISTEN ")\n"
            "  --config-dir DIR     YAML files with workloads, services and policies (the\n"
            "                       LOCAL_XDS_PATH schema); watched, changes are pushed\n"
            "  --ca-dir DIR         Istio cacerts directory (ca-cert.pem, ca-key.pem,\n"
            "                       root-cert.pem, optional cert-chain.pem)\n"
            "  --node-tokens FILE   one \"NODE_NAME TOKEN\" per line; proxies send their\n"
            "                       node's token (AUTH_TOKEN); re-read when it changes\n"
            "  --tls-cert, --tls-key  serving certificate chain and key (default: minted\n"
            "                       from the CA for this host's names and addresses)\n"
            "  --server-name NAME   extra DNS name or IP for the minted certificate\n"
            "  --cert-ttl SECONDS   workload certificate lifetime when a request asks for\n"
            "                       none (default %u)\n"
            "  --max-cert-ttl SECONDS  longest lifetime granted (default %u)\n"
            "  --monitoring ADDR:PORT  Prometheus /metrics and /ready (default " DEFAULT_MONITORING
            ";\n"
            "                       off: none)\n"
            "  --max-conns-per-address N  connections one client address may hold open\n"
            "                       (default %u; proxies behind one NAT address share it)\n"
            "Environment: LOG_FORMAT (plain or json), RUST_LOG / LOG_LEVEL.\n",
            ZT_CONTROL_CERT_TTL_DEFAULT, ZT_CONTROL_CERT_TTL_MAX,
            ZT_CONTROL_CONNS_PER_ADDR_DEFAULT);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct control_main *m = h->data;
    if (++m->signals > 1) {
        ZT_INFO("control", "second signal: exiting now");
        exit(0);
    }
    ZT_INFO("control", "received %s, shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    zt_admin_stop(m->monitoring); /* joins its threads: no metrics read after this */
    m->monitoring = NULL;
    zt_control_stop(m->cp);
    m->cp = NULL;
    uv_signal_stop(&m->sigterm);
    uv_signal_stop(&m->sigint);
    uv_unref((uv_handle_t *)&m->sigterm);
    uv_unref((uv_handle_t *)&m->sigint);
}

static void mon_metrics(void *ud, struct zt_buf *out)
{
    struct control_main *m = ud;
    zt_control_render_metrics(m->cp, out);
}

static bool mon_ready(void *ud, char *why, size_t cap)
{
    struct control_main *m = ud;
    if (zt_control_ready(m->cp))
        return true;
    snprintf(why, cap, "control plane");
    return false;
}

static const struct zt_admin_ops mon_ops = {.metrics = mon_metrics, .ready = mon_ready};

/* The monitoring port: the admin module's stats server alone. */
static int start_monitoring(struct control_main *m, const char *addr, char *err, size_t errlen)
{
    char host[64], port[8], auth[128];
    if (zt_grpc_parse_target(addr, host, sizeof(host), port, sizeof(port), auth, sizeof(auth)) <
        0) {
        snprintf(err, errlen, "expected ADDR:PORT or off");
        return -1;
    }
    struct zt_admin_opts ao = {
        .stats_addr = host, .stats_port = (uint16_t)atoi(port), .stats_only = true};
    if (zt_admin_start(&ao, &mon_ops, m, &m->monitoring, err, errlen) < 0)
        return -1;
    ZT_INFO("control", "monitoring on %s (/metrics, /ready)", addr);
    return 0;
}

static int parse_seconds(const char *opt, const char *v, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || end == v || *end || n == 0 || n > 366ul * 24 * 3600 || v[0] == '-') {
        fprintf(stderr, "ztunnel control: %s: bad value '%s': expected 1 to %u seconds\n", opt, v,
                366u * 24 * 3600);
        return -1;
    }
    *out = (unsigned)n;
    return 0;
}

static int parse_count(const char *opt, const char *v, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || end == v || *end || n == 0 || n > max || v[0] == '-') {
        fprintf(stderr, "ztunnel control: %s: bad value '%s': expected 1 to %u\n", opt, v, max);
        return -1;
    }
    *out = (unsigned)n;
    return 0;
}

int zt_cmd_control(int argc, char **argv)
{
    struct zt_control_opts o = {.listen = DEFAULT_LISTEN};
    const char *names[MAX_SERVER_NAMES];
    struct control_main m = {0};
    const char *monitoring = DEFAULT_MONITORING;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "ztunnel control: %s: %s\n", a,
                    strncmp(a, "--", 2) == 0 ? "missing value" : "unexpected argument");
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--listen") == 0)
            o.listen = v;
        else if (strcmp(a, "--config-dir") == 0)
            o.config_dir = v;
        else if (strcmp(a, "--ca-dir") == 0)
            o.ca_dir = v;
        else if (strcmp(a, "--node-tokens") == 0)
            o.node_tokens = v;
        else if (strcmp(a, "--tls-cert") == 0)
            o.tls_cert = v;
        else if (strcmp(a, "--tls-key") == 0)
            o.tls_key = v;
        else if (strcmp(a, "--monitoring") == 0)
            monitoring = v;
        else if (strcmp(a, "--server-name") == 0 && o.n_server_names < MAX_SERVER_NAMES)
            names[o.n_server_names++] = v;
        else if (strcmp(a, "--cert-ttl") == 0) {
            if (parse_seconds(a, v, &o.cert_ttl_default) < 0)
                return 2;
        } else if (strcmp(a, "--max-cert-ttl") == 0) {
            if (parse_seconds(a, v, &o.cert_ttl_max) < 0)
                return 2;
        } else if (strcmp(a, "--max-conns-per-address") == 0) {
            if (parse_count(a, v, 16384, &o.max_conns_per_addr) < 0)
                return 2;
        } else {
            fprintf(stderr, "ztunnel control: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    o.server_names = names;
    signal(SIGPIPE, SIG_IGN);
    if (zt_cmd_setup_logging("control") != 0)
        return 2;
    zt_cmd_raise_nofile("control");
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[1024];
    if (zt_control_start(&loop, &o, &m.cp, err, sizeof(err)) < 0) {
        fprintf(stderr, "ztunnel control: %s\n", err);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    if (strcmp(monitoring, "off") != 0 && start_monitoring(&m, monitoring, err, sizeof(err)) < 0) {
        fprintf(stderr, "ztunnel control: --monitoring %s: %s\n", monitoring, err);
        zt_control_stop(m.cp);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    uv_signal_init(&loop, &m.sigterm);
    uv_signal_init(&loop, &m.sigint);
    m.sigterm.data = m.sigint.data = &m;
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&m.sigterm, NULL);
    uv_close((uv_handle_t *)&m.sigint, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}
