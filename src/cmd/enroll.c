/* `ztunnel enroll` / `ztunnel unenroll`: one request to the running node
 * agent over $ZTUNNEL_CNI_DIR/agent.sock, result printed.
 * Exit status: 0 done; 1 failed (nothing changed); 2 usage; 3 enrolled or
 * removed but the proxy reported an error. */
#include "cmd/cmd.h"

#include "base/err.h"
#include "cni/ctl.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_CNI_DIR "/var/run/ztunnel/cni"
/* Rule installation plus the agent's 5 s wait for the proxy's Ack. */
#define CALL_TIMEOUT_MS 20000

struct opt {
    const char *name;
    char *dst;
    size_t max;
    bool is_set;
};

/* Accepts "--name value" and "--name=value". Returns 0 or prints usage. */
static int parse(const char *cmd, int argc, char **argv, struct opt *opts, size_t nopts)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        size_t k;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "ztunnel %s: unexpected argument '%s'\n", cmd, a);
            return -1;
        }
        for (k = 0; k < nopts; k++) {
            size_t n = strlen(opts[k].name);
            if (strncmp(a + 2, opts[k].name, n) != 0)
                continue;
            if (a[2 + n] == '=')
                val = a + 3 + n;
            else if (a[2 + n] == '\0' && i + 1 < argc)
                val = argv[++i];
            else if (a[2 + n] != '\0')
                continue;
            break;
        }
        if (k == nopts) {
            fprintf(stderr, "ztunnel %s: unknown option '%s'\n", cmd, a);
            return -1;
        }
        if (!val) {
            fprintf(stderr, "ztunnel %s: option --%s needs a value\n", cmd, opts[k].name);
            return -1;
        }
        if (strlen(val) > opts[k].max || val[0] == '\0') {
            fprintf(stderr, "ztunnel %s: --%s must be 1 to %zu characters\n", cmd, opts[k].name,
                    opts[k].max);
            return -1;
        }
        memcpy(opts[k].dst, val, strlen(val) + 1);
        opts[k].is_set = true;
    }
    for (size_t k = 0; k < nopts; k++)
        if (!opts[k].is_set) {
            fprintf(stderr, "ztunnel %s: missing --%s\n", cmd, opts[k].name);
            return -1;
        }
    return 0;
}

static int call_agent(const char *cmd, const struct zt_cni_ctl_request *req)
{
    const char *dir = getenv("ZTUNNEL_CNI_DIR");
    struct zt_cni_ctl_reply rep;
    char sock[4096];
    struct stat st;
    int rc;

    if (!dir || !dir[0])
        dir = DEFAULT_CNI_DIR;
    snprintf(sock, sizeof(sock), "%s/agent.sock", dir);
    signal(SIGPIPE, SIG_IGN);
    if (stat(sock, &st) < 0 && errno == ENOENT) {
        fprintf(stderr, "ztunnel %s: node agent not running (no socket at %s)\n", cmd, sock);
        return 1;
    }
    if (access(sock, W_OK) < 0) {
        fprintf(stderr, "ztunnel %s: cannot reach the node agent at %s: %s\n", cmd, sock,
                strerror(errno));
        return 1;
    }
    rc = zt_cni_ctl_call(sock, req, &rep, CALL_TIMEOUT_MS);
    if (rc == -ECONNREFUSED || rc == -ENOENT) {
        fprintf(stderr, "ztunnel %s: node agent not running (nothing listens on %s)\n", cmd, sock);
        return 1;
    }
    if (rc < 0) {
        fprintf(stderr, "ztunnel %s: talking to the node agent at %s failed: %s\n", cmd, sock,
                zt_strerror(rc));
        return 1;
    }
    if (!rep.ok) {
        fprintf(stderr, "ztunnel %s: %s\n", cmd, rep.error[0] ? rep.error : "failed");
        return 1;
    }
    printf("%s\n", rep.message);
    if (rep.proxy_error[0]) {
        fprintf(stderr, "ztunnel %s: warning: the proxy reported an error: %s\n", cmd,
                rep.proxy_error);
        return 3;
    }
    return 0;
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

int zt_cmd_enroll(int argc, char **argv)
{
    static const char usage[] =
        "usage: ztunnel enroll --netns NAME_OR_PATH --uid UID --name NAME --namespace NS "
        "--service-account SA\n"
        "  NAME_OR_PATH: a name under /var/run/netns (ip netns) or a path such as "
        "/proc/PID/ns/net\n";
    struct zt_cni_ctl_request req = {.op = ZT_CNI_CTL_ENROLL};
    struct opt opts[] = {
        {"netns", req.pod.netns, ZT_CNI_NETNS_PATH_MAX, false},
        {"uid", req.pod.uid, ZT_ZDS_UID_MAX, false},
        {"name", req.pod.info.name, ZT_ZDS_NAME_MAX, false},
        {"namespace", req.pod.info.namespace, ZT_ZDS_NAMESPACE_MAX, false},
        {"service-account", req.pod.info.service_account, ZT_ZDS_SA_MAX, false},
    };

    if (wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    if (parse("enroll", argc, argv, opts, sizeof(opts) / sizeof(opts[0])) < 0) {
        fputs(usage, stderr);
        return 2;
    }
    if (!zt_cni_uid_is_valid(req.pod.uid)) {
        fprintf(stderr, "ztunnel enroll: invalid --uid (letters, digits, '.', '_', '-')\n");
        return 2;
    }
    return call_agent("enroll", &req);
}

int zt_cmd_unenroll(int argc, char **argv)
{
    static const char usage[] = "usage: ztunnel unenroll --uid UID\n";
    struct zt_cni_ctl_request req = {.op = ZT_CNI_CTL_UNENROLL};
    struct opt opts[] = {{"uid", req.pod.uid, ZT_ZDS_UID_MAX, false}};

    if (wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    if (parse("unenroll", argc, argv, opts, 1) < 0) {
        fputs(usage, stderr);
        return 2;
    }
    return call_agent("unenroll", &req);
}
