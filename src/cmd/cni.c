/* `ztunnel cni`: the node agent process. Wires src/cni/agent to a libuv
 * loop and handles SIGTERM/SIGINT (sockets closed and unlinked; enrollments
 * and rules stay, so a restart restores them). */
#include "cmd/cmd.h"
#include "cmd/common.h"

#include "base/log.h"
#include "cni/agent.h"
#include "cni/netns.h"
#include "config/env.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define DEFAULT_UDS "/var/run/ztunnel/ztunnel.sock"
#define DEFAULT_CNI_DIR "/var/run/ztunnel/cni"

struct cni_main {
    struct zt_cni_agent *agent;
    uv_signal_t sigterm, sigint;
};

static void on_signal(uv_signal_t *h, int signum)
{
    struct cni_main *m = h->data;
    ZT_INFO("cni", "received %s, shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    zt_cni_agent_stop(m->agent);
    m->agent = NULL;
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    uv_close((uv_handle_t *)&m->sigint, NULL);
}

int zt_cmd_cni(int argc, char **argv)
{
    struct zt_cni_agent_config cfg = {0};
    struct cni_main m = {0};
    const char *trusted, *redirect;
    bool want_dns;
    uv_loop_t loop;

    if (argc > 1) {
        bool is_help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(is_help ? stdout : stderr,
                "usage: ztunnel cni\n"
                "Runs the node agent: ZDS server for the proxy, in-pod redirection rules,\n"
                "enrollment store. Environment:\n"
                "  INPOD_UDS         ZDS socket (default " DEFAULT_UDS ")\n"
                "  ZTUNNEL_CNI_DIR   agent.sock and pods/ (default " DEFAULT_CNI_DIR ")\n"
                "  ZTUNNEL_TRUSTED_UID  uid besides root that may connect to both sockets\n"
                "                    (proxies, ztunnel enroll); it owns the socket files\n"
                "  AMBIENT_DNS_CAPTURE  true (default): pods' DNS (port 53) is redirected to\n"
                "                    the proxy's resolver on 15053; false: no DNS rules\n"
                "  ZTUNNEL_REDIRECT  iptables (default): in-pod rules by iptables-restore;\n"
                "                    nftables: by nft -f, in the pod's own inet tables\n"
                "                    istio-ambient-{nat,mangle,raw} (nft must be in PATH)\n"
                "  LOG_FORMAT        plain (default) or json\n"
                "  RUST_LOG          log level: error, warn, info (default), debug, trace\n");
        return is_help ? 0 : 2;
    }
    /* Helpers may exit before reading their stdin; and a peer may vanish. */
    signal(SIGPIPE, SIG_IGN);
    if (zt_cmd_setup_logging("cni") != 0)
        return 2;
    zt_cmd_raise_nofile("cni");
    cfg.uds_path = zt_cmd_env_or("INPOD_UDS", DEFAULT_UDS);
    cfg.cni_dir = zt_cmd_env_or("ZTUNNEL_CNI_DIR", DEFAULT_CNI_DIR);
    trusted = zt_cmd_env_or("ZTUNNEL_TRUSTED_UID", NULL);
    if (trusted && zt_config_parse_uid(trusted, &cfg.trusted_uid) < 0) {
        fprintf(stderr,
                "ztunnel cni: ZTUNNEL_TRUSTED_UID=\"%s\": expected a numeric uid "
                "(0-4294967294)\n",
                trusted);
        return 2;
    }
    if (zt_cmd_env_bool("cni", "AMBIENT_DNS_CAPTURE", true, &want_dns) != 0)
        return 2;
    cfg.is_dns_capture_off = !want_dns;
    redirect = zt_cmd_env_or("ZTUNNEL_REDIRECT", "iptables");
    if (zt_cni_backend_parse(redirect, &cfg.backend) < 0) {
        fprintf(stderr, "ztunnel cni: ZTUNNEL_REDIRECT=\"%s\": expected iptables or nftables\n",
                redirect);
        return 2;
    }
    /* Every enrollment would fail; better to say so once, now. */
    if (cfg.backend == ZT_CNI_NFTABLES && !zt_cni_netns_has_program("nft")) {
        fprintf(stderr,
                "ztunnel cni: ZTUNNEL_REDIRECT=nftables, but no nft program in PATH (%s): "
                "install the nftables package\n",
                zt_cmd_env_or("PATH", "unset"));
        return 2;
    }
    uv_loop_init(&loop);
    if (zt_cni_agent_start(&loop, &cfg, &m.agent) < 0) {
        uv_loop_close(&loop);
        return 1;
    }
    uv_signal_init(&loop, &m.sigterm);
    uv_signal_init(&loop, &m.sigint);
    m.sigterm.data = m.sigint.data = &m;
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}
