/* `ztunnel cni`: the node agent process. Wires src/cni/agent to a libuv
 * loop and handles SIGTERM/SIGINT (sockets closed and unlinked; enrollments
 * and rules stay, so a restart restores them). */
#include "cmd/cmd.h"
#include "cmd/common.h"

#include "base/log.h"
#include "cni/agent.h"
#include "cni/netns.h"
#include "config/env.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
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

/* The agent's eBPF pin directory: ZTUNNEL_BPF_DIR, else the default for
 * its state directory. */
static int bpf_dir_of(const char *cni_dir, char *out, size_t cap)
{
    const char *dir = zt_cmd_env_or("ZTUNNEL_BPF_DIR", NULL);
    if (dir)
        return (size_t)snprintf(out, cap, "%s", dir) >= cap ? -1 : 0;
    return zt_cni_ebpf_default_dir(cni_dir, out, cap) < 0 ? -1 : 0;
}

/* `ztunnel cni cleanup`: removes the eBPF programs, links and maps of the
 * agent whose state is ZTUNNEL_CNI_DIR, with the agent stopped (a running
 * one would be left without its programs). */
static int cleanup_main(void)
{
    const char *cni_dir = zt_cmd_env_or("ZTUNNEL_CNI_DIR", DEFAULT_CNI_DIR);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char dir[PATH_MAX], err[512];
    int fd, n;

    if (bpf_dir_of(cni_dir, dir, sizeof(dir)) < 0) {
        fprintf(stderr, "ztunnel cni cleanup: no usable eBPF pin directory for %s\n", cni_dir);
        return 2;
    }
    n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/agent.sock", cni_dir);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && n > 0 && (size_t)n < sizeof(sa.sun_path) &&
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        close(fd);
        fprintf(stderr,
                "ztunnel cni cleanup: a node agent is running (%s answers); stop it first\n",
                sa.sun_path);
        return 1;
    }
    if (fd >= 0)
        close(fd);
    if (!zt_cni_ebpf_dir_exists(dir)) {
        printf("nothing to remove: %s does not exist\n", dir);
        return 0;
    }
    if (zt_cni_ebpf_cleanup(dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "ztunnel cni cleanup: %s\n", err);
        return 1;
    }
    printf("removed the eBPF programs, links and maps pinned in %s\n", dir);
    return 0;
}

int zt_cmd_cni(int argc, char **argv)
{
    struct zt_cni_agent_config cfg = {0};
    struct cni_main m = {0};
    const char *trusted, *redirect;
    char bpf_dir[PATH_MAX];
    bool want_dns;
    uv_loop_t loop;

    if (argc == 2 && strcmp(argv[1], "cleanup") == 0)
        return cleanup_main();
    if (argc > 1) {
        bool is_help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(is_help ? stdout : stderr,
                "usage: ztunnel cni [cleanup]\n"
                "Runs the node agent: ZDS server for the proxy, in-pod redirection rules,\n"
                "enrollment store. `ztunnel cni cleanup` (agent stopped) removes the eBPF\n"
                "programs, links and maps of ZTUNNEL_REDIRECT=ebpf. Environment:\n"
                "  INPOD_UDS         ZDS socket (default " DEFAULT_UDS ")\n"
                "  ZTUNNEL_CNI_DIR   agent.sock and pods/ (default " DEFAULT_CNI_DIR ")\n"
                "  ZTUNNEL_TRUSTED_UID  uid besides root that may connect to both sockets\n"
                "                    (proxies, ztunnel enroll); it owns the socket files\n"
                "  AMBIENT_DNS_CAPTURE  true (default): pods' DNS (port 53) is redirected to\n"
                "                    the proxy's resolver on 15053; false: no DNS rules\n"
                "  ZTUNNEL_REDIRECT  iptables (default): in-pod rules by iptables-restore;\n"
                "                    nftables: by nft -f, in the pod's own inet tables\n"
                "                    istio-ambient-{nat,mangle,raw} (nft must be in PATH);\n"
                "                    ebpf: cgroup and sk_lookup programs (docs/inpod.md)\n"
                "  ZTUNNEL_BPF_DIR   ebpf: pin directory on a bpf filesystem (default\n"
                "                    /sys/fs/bpf/ztunnel/<ZTUNNEL_CNI_DIR, '/' as '_'>)\n"
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
        fprintf(stderr,
                "ztunnel cni: ZTUNNEL_REDIRECT=\"%s\": expected iptables, nftables or ebpf\n",
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
    if (bpf_dir_of(cfg.cni_dir, bpf_dir, sizeof(bpf_dir)) < 0) {
        fprintf(stderr, "ztunnel cni: no usable eBPF pin directory for %s (ZTUNNEL_BPF_DIR)\n",
                cfg.cni_dir);
        return 2;
    }
    cfg.bpf_dir = bpf_dir;
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
