/* `ztunnel cni`: the node agent process. Wires src/cni/agent to a libuv
 * loop and handles SIGTERM/SIGINT (sockets closed and unlinked; enrollments
 * and rules stay, so a restart restores them). */
#include "cmd/cmd.h"

#include "base/log.h"
#include "cni/agent.h"

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

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && v[0] ? v : def;
}

int zt_cmd_cni(int argc, char **argv)
{
    struct zt_cni_agent_config cfg = {0};
    struct cni_main m = {0};
    uv_loop_t loop;

    if (argc > 1) {
        bool is_help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(is_help ? stdout : stderr,
                "usage: ztunnel cni\n"
                "Runs the node agent: ZDS server for the proxy, in-pod redirection rules,\n"
                "enrollment store. Environment:\n"
                "  INPOD_UDS         ZDS socket (default " DEFAULT_UDS ")\n"
                "  ZTUNNEL_CNI_DIR   agent.sock and pods/ (default " DEFAULT_CNI_DIR ")\n"
                "  LOG_FORMAT        plain (default) or json\n"
                "  RUST_LOG          log level: error, warn, info (default), debug, trace\n");
        return is_help ? 0 : 2;
    }
    /* Helpers may exit before reading their stdin; and a peer may vanish. */
    signal(SIGPIPE, SIG_IGN);
    /* Logging as the proxy's: LOG_FORMAT=json, RUST_LOG or LOG_LEVEL. */
    zt_log_set_json(strcmp(env_or("LOG_FORMAT", "plain"), "json") == 0);
    enum zt_log_level level;
    /* RUST_LOG may read "info,target=debug": the bare level applies. */
    char lvl[32];
    snprintf(lvl, sizeof(lvl), "%s", env_or("RUST_LOG", env_or("LOG_LEVEL", "info")));
    lvl[strcspn(lvl, ",")] = 0;
    if (zt_log_level_parse(lvl, &level) < 0) {
        fprintf(stderr,
                "ztunnel cni: RUST_LOG/LOG_LEVEL: bad level '%s' (error, warn, info, debug, "
                "trace)\n",
                lvl);
        return 2;
    }
    zt_log_set_level(level);
    cfg.uds_path = env_or("INPOD_UDS", DEFAULT_UDS);
    cfg.cni_dir = env_or("ZTUNNEL_CNI_DIR", DEFAULT_CNI_DIR);
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
