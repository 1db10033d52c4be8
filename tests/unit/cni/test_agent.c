/* The node agent end to end on one loop: control requests from a thread
 * (as `ztunnel enroll` would send them), our own ZDS client as the proxy,
 * fake rule installers (rules have their own root-only test). Pods are
 * child processes sitting in network namespaces of their own. Checks that
 * need another uid (peer credentials, directory owners) run as root only. */
#include "test.h"

#include "base/err.h"
#include "cni/agent.h"
#include "cni/ctl.h"
#include "inpod/zds_client.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534
#define NPODS 4

static uv_loop_t loop;
static char dir[64], cnidir[96], uds[128], ctl[128];
static char nspath[NPODS][64]; /* /proc/PID/ns/net of each pod process */
static pid_t ns_pid[NPODS];
static int ns_sock[NPODS];
static int applied, removed, proxy_adds, proxy_dels, proxy_add_rc;
static bool proxy_snap;
static const char *apply_error; /* non-NULL: fake_apply fails with this text */
static int applied_with_dns, applied_without_dns;
static int applied_nft, removed_nft; /* with the nftables backend */

static int fake_apply(int fd, const struct zt_cni_rules_opts *opts, char *err, size_t cap)
{
    applied++;
    if (opts->backend == ZT_CNI_NFTABLES)
        applied_nft++;
    if (opts->want_dns_capture)
        applied_with_dns++;
    else
        applied_without_dns++;
    if (apply_error) {
        snprintf(err, cap, "%s", apply_error);
        return ZT_E_CONFIG;
    }
    err[0] = '\0';
    return 0;
}
static int fake_remove(int fd, const struct zt_cni_rules_opts *opts, char *err, size_t cap)
{
    removed++;
    if (opts->backend == ZT_CNI_NFTABLES)
        removed_nft++;
    err[0] = '\0';
    return 0;
}
static int p_add(void *ud, const char *uid, int fd, const struct zt_zds_workload_info *i)
{
    if (proxy_add_rc)
        return proxy_add_rc;
    proxy_adds++;
    close(fd);
    return 0;
}
static void p_del(void *ud, const char *uid)
{
    proxy_dels++;
}
static void p_state(void *ud, bool c, bool s, unsigned p)
{
    proxy_snap = s;
}
static const struct zt_inpod_client_ops pops = {p_add, p_del, p_state};

struct call {
    struct zt_cni_ctl_request req;
    struct zt_cni_ctl_reply rep;
    int rc;
    atomic_bool done;
};

static void *call_thread(void *arg)
{
    struct call *c = arg;
    c->rc = zt_cni_ctl_call(ctl, &c->req, &c->rep, 10000);
    atomic_store(&c->done, true);
    return NULL;
}

/* Runs one control request while the loop turns. */
static int call(enum zt_cni_ctl_op op, const char *uid, const char *netns,
                struct zt_cni_ctl_reply *rep)
{
    static struct call c;
    pthread_t t;
    memset(&c, 0, sizeof(c));
    c.req.op = op;
    snprintf(c.req.pod.uid, sizeof(c.req.pod.uid), "%s", uid);
    snprintf(c.req.pod.netns, sizeof(c.req.pod.netns), "%s", netns);
    strcpy(c.req.pod.info.name, "web");
    strcpy(c.req.pod.info.namespace, "shop");
    strcpy(c.req.pod.info.service_account, "sa");
    pthread_create(&t, NULL, call_thread, &c);
    while (!atomic_load(&c.done)) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    pthread_join(t, NULL);
    *rep = c.rep;
    return c.rc;
}

/* A fresh agent directory and counters for each test. */
static void reset(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)!system(cmd);
    applied = removed = proxy_adds = proxy_dels = proxy_add_rc = 0;
    applied_with_dns = applied_without_dns = applied_nft = removed_nft = 0;
    proxy_snap = false;
}

static void pump(int n)
{
    for (int i = 0; i < n; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

/* Starts a process in a new network namespace; it stays until its end of
 * the socket pair closes. Returns 0 or -1. */
static int spawn_netns(int i)
{
    int sv[2];
    char b;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    ns_pid[i] = fork();
    if (ns_pid[i] < 0)
        return -1;
    if (ns_pid[i] == 0) {
        /* Only the parent may hold the other pods' ends open. */
        for (int j = 0; j < i; j++)
            close(ns_sock[j]);
        close(sv[0]);
        if (unshare(CLONE_NEWNET) < 0 && unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
            _exit(1);
        if (write(sv[1], "r", 1) != 1)
            _exit(1);
        (void)!read(sv[1], &b, 1); /* until the parent closes its end */
        _exit(0);
    }
    close(sv[1]);
    ns_sock[i] = sv[0];
    snprintf(nspath[i], sizeof(nspath[i]), "/proc/%d/ns/net", (int)ns_pid[i]);
    return read(sv[0], &b, 1) == 1 ? 0 : -1;
}

/* Runs fn in a child process as uid/gid NOBODY while the loop turns, and
 * returns what it wrote (at most cap-1 bytes). */
static void as_nobody(void (*fn)(int out), char *res, size_t cap)
{
    size_t used = 0;
    int p[2];
    pid_t pid;

    res[0] = '\0';
    if (pipe(p) < 0)
        return;
    pid = fork();
    if (pid == 0) {
        close(p[0]);
        if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
            setresuid(NOBODY, NOBODY, NOBODY) < 0)
            _exit(1);
        fn(p[1]);
        _exit(0);
    }
    close(p[1]);
    for (;;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        ssize_t r;
        uv_run(&loop, UV_RUN_NOWAIT);
        if (poll(&pf, 1, 1) <= 0)
            continue;
        r = read(p[0], res + used, cap - 1 - used);
        if (r <= 0)
            break;
        used += (size_t)r;
        res[used] = '\0';
    }
    close(p[0]);
    waitpid(pid, NULL, 0);
}

static void put_str(int out, const char *s)
{
    (void)!write(out, s, strlen(s));
}

/* In the child: `ztunnel enroll` of pod 3's netns as uid u9. */
static void nobody_enroll(int out)
{
    struct zt_cni_ctl_request req = {.op = ZT_CNI_CTL_ENROLL};
    struct zt_cni_ctl_reply rep;
    char line[700];
    int rc;
    strcpy(req.pod.uid, "u9");
    strcpy(req.pod.netns, nspath[3]);
    strcpy(req.pod.info.name, "web");
    strcpy(req.pod.info.namespace, "shop");
    strcpy(req.pod.info.service_account, "sa");
    rc = zt_cni_ctl_call(ctl, &req, &rep, 10000);
    snprintf(line, sizeof(line), "rc=%d ok=%d error=%s", rc, rc == 0 && rep.ok,
             rc == 0 ? rep.error : "");
    put_str(out, line);
}

/* In the child: a proxy's hello on the ZDS socket; reports whether the
 * agent answered with a request (its snapshot) or closed. */
static void nobody_zds(int out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    uint8_t buf[ZT_ZDS_MSG_MAX];
    size_t len, hlen;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), pfd = -1, rc;
    strcpy(sa.sun_path, uds);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        put_str(out, "connect failed");
        return;
    }
    /* The agent may close before or after the hello is sent. */
    if ((rc = zt_zds_hello_encode(buf, sizeof(buf), &hlen)) == 0 &&
        (rc = zt_zds_send(fd, buf, hlen, -1)) == 0)
        rc = zt_zds_recv(fd, buf, &len, &pfd);
    put_str(out, rc == 0                                                  ? "request"
                 : rc == ZT_E_CLOSED || rc == -EPIPE || rc == -ECONNRESET ? "closed"
                                                                          : "error");
}

static void test_enroll_flow(void)
{
    struct zt_cni_agent_config cfg = {
        .uds_path = uds, .cni_dir = cnidir, .rules_apply = fake_apply, .rules_remove = fake_remove};
    struct zt_cni_agent *a = NULL;
    struct zt_inpod_client *cl = NULL;
    struct zt_cni_ctl_reply rep;

    reset();
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    /* Before any proxy: enrolled, nobody to tell. */
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u1", nspath[0], &rep), 0);
    CHECK(rep.ok);
    CHECK(strstr(rep.message, "no proxy") != NULL);
    CHECK_EQ_INT(applied, 1);
    CHECK_EQ_INT(applied_with_dns, 1); /* DNS capture is on by default */

    CHECK_EQ_INT(zt_inpod_client_start(&loop, uds, &pops, NULL, &cl), 0);
    for (int i = 0; i < 2000 && !proxy_snap; i++)
        pump(1);
    CHECK(proxy_snap);
    CHECK_EQ_INT(proxy_adds, 1); /* u1 came in the snapshot */

    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u2", nspath[1], &rep), 0);
    CHECK(rep.ok);
    CHECK(strstr(rep.message, "proxy acknowledged") != NULL);
    CHECK_EQ_INT(proxy_adds, 2);

    /* Errors leave nothing behind. */
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u3", "zt-no-such-netns", &rep), 0);
    CHECK(!rep.ok && strstr(rep.error, "does not exist") != NULL);
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u3", "/etc/hostname", &rep), 0);
    CHECK(!rep.ok && strstr(rep.error, "not a network namespace") != NULL);
    CHECK_EQ_INT(call(ZT_CNI_CTL_UNENROLL, "nope", "", &rep), 0);
    CHECK(!rep.ok && strstr(rep.error, "unknown uid") != NULL);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 2);

    /* A proxy NACK: still enrolled, reported. */
    proxy_add_rc = -EADDRINUSE;
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u4", nspath[2], &rep), 0);
    CHECK(rep.ok);
    CHECK(strstr(rep.proxy_error, "Address already in use") != NULL);
    proxy_add_rc = 0;

    CHECK_EQ_INT(call(ZT_CNI_CTL_UNENROLL, "u2", "", &rep), 0);
    CHECK(rep.ok);
    CHECK_EQ_INT(proxy_dels, 1);
    CHECK_EQ_INT(removed, 1);
    CHECK_EQ_INT(removed_nft, 0);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 2);

    /* Restart: enrollments come back from disk, rules re-installed. */
    zt_cni_agent_stop(a);
    pump(5);
    CHECK(access(ctl, F_OK) != 0 && access(uds, F_OK) != 0);
    applied = 0;
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 2);
    CHECK_EQ_INT(applied, 2);
    CHECK_EQ_INT(applied_without_dns, 0);
    zt_cni_agent_stop(a);
    pump(5);

    /* Restart with DNS capture off: the re-installs go without it. */
    cfg.is_dns_capture_off = true;
    applied = applied_with_dns = 0;
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    CHECK_EQ_INT(applied, 2);
    CHECK_EQ_INT(applied_without_dns, 2);
    CHECK_EQ_INT(applied_with_dns, 0);
    CHECK_EQ_INT(applied_nft, 0); /* iptables by default */
    zt_cni_agent_stop(a);
    pump(5);

    /* Restart with nftables: the re-installs and removals use it. */
    cfg.backend = ZT_CNI_NFTABLES;
    applied = 0;
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    CHECK_EQ_INT(applied, 2);
    CHECK_EQ_INT(applied_nft, 2);
    CHECK_EQ_INT(call(ZT_CNI_CTL_UNENROLL, "u1", "", &rep), 0);
    CHECK(rep.ok);
    CHECK_EQ_INT(removed, 2);
    CHECK_EQ_INT(removed_nft, 1);
    zt_cni_agent_stop(a);
    zt_inpod_client_stop(cl);
    pump(5);
}

/* Rules that fail half-way (IPv4 in, IPv6 refused) are rolled back: the
 * pod is not enrolled and the client hears why. */
static void test_failed_rules_rolled_back(void)
{
    struct zt_cni_agent_config cfg = {
        .uds_path = uds, .cni_dir = cnidir, .rules_apply = fake_apply, .rules_remove = fake_remove};
    struct zt_cni_agent *a = NULL;
    struct zt_cni_ctl_reply rep;

    reset();
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    apply_error = "IPv6 rules not installed: ip6tables-restore failed (exit 1)";
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "v6", nspath[0], &rep), 0);
    apply_error = NULL;
    CHECK(!rep.ok);
    CHECK(strstr(rep.error, "IPv6 rules not installed: ip6tables-restore failed") != NULL);
    CHECK_EQ_INT(applied, 1);
    CHECK_EQ_INT(removed, 1);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 0);
    /* Positive control: the same request without the failure enrolls. */
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "v6", nspath[0], &rep), 0);
    CHECK(rep.ok);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 1);
    CHECK_EQ_INT(call(ZT_CNI_CTL_UNENROLL, "v6", "", &rep), 0);
    CHECK(rep.ok);
    zt_cni_agent_stop(a);
    pump(5);
}

/* The agent's own netns (the node's) and a netns that another uid holds
 * are refused, however they are named. */
static void test_refused_netns(void)
{
    struct zt_cni_agent_config cfg = {
        .uds_path = uds, .cni_dir = cnidir, .rules_apply = fake_apply, .rules_remove = fake_remove};
    struct zt_cni_agent *a = NULL;
    struct zt_cni_ctl_reply rep;
    char other_name[64];

    reset();
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "self", "/proc/self/ns/net", &rep), 0);
    CHECK(!rep.ok);
    CHECK(strstr(rep.error, "the node agent's own network namespace") != NULL);
    snprintf(other_name, sizeof(other_name), "/proc/%d/task/%d/ns/net", (int)getpid(),
             (int)getpid());
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "self", other_name, &rep), 0);
    CHECK(!rep.ok);
    CHECK(strstr(rep.error, "the node agent's own network namespace") != NULL);
    CHECK_EQ_INT(applied, 0);

    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u1", nspath[0], &rep), 0);
    CHECK(rep.ok);
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u1", nspath[0], &rep), 0); /* same uid: idempotent */
    CHECK(rep.ok);
    CHECK_EQ_INT(applied, 2);
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u2", nspath[0], &rep), 0);
    CHECK(!rep.ok);
    CHECK(strstr(rep.error, "already enrolled as uid u1") != NULL);
    snprintf(other_name, sizeof(other_name), "/proc/%d/task/%d/ns/net", (int)ns_pid[0],
             (int)ns_pid[0]);
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u2", other_name, &rep), 0);
    CHECK(!rep.ok);
    CHECK(strstr(rep.error, "already enrolled as uid u1") != NULL);
    CHECK_EQ_INT(applied, 2);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 1);
    /* Once u1 is gone, its netns may be enrolled again. */
    CHECK_EQ_INT(call(ZT_CNI_CTL_UNENROLL, "u1", "", &rep), 0);
    CHECK(rep.ok);
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u2", nspath[0], &rep), 0);
    CHECK(rep.ok);
    zt_cni_agent_stop(a);
    pump(5);
}

static int mode_of(const char *path, uid_t *owner)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    *owner = st.st_uid;
    return (int)(st.st_mode & 07777);
}

/* Socket directories are created private; existing ones that others could
 * write in are refused at start. */
static void test_socket_dirs(void)
{
    struct zt_cni_agent_config cfg = {
        .uds_path = uds, .cni_dir = cnidir, .rules_apply = fake_apply, .rules_remove = fake_remove};
    struct zt_cni_agent *a = NULL;
    char run[128];
    uid_t owner;

    reset();
    snprintf(run, sizeof(run), "%s/run", dir);
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    zt_cni_agent_stop(a);
    pump(5);
    CHECK_EQ_INT(mode_of(run, &owner), 0755);
    CHECK_EQ_INT(owner, geteuid());
    CHECK_EQ_INT(mode_of(cnidir, &owner), 0700);

    CHECK_EQ_INT(chmod(run, 0777), 0);
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), ZT_E_CONFIG);
    CHECK_EQ_INT(chmod(run, 0775), 0);
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), ZT_E_CONFIG);
    CHECK_EQ_INT(chmod(run, 0755), 0);
    CHECK_EQ_INT(chmod(cnidir, 0720), 0);
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), ZT_E_CONFIG);
    CHECK_EQ_INT(chmod(cnidir, 0700), 0);
    if (geteuid() == 0) {
        CHECK_EQ_INT(chown(run, NOBODY, NOBODY), 0);
        CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), ZT_E_CONFIG);
        CHECK_EQ_INT(chown(run, 0, 0), 0);
    }
    /* Positive control: private again, it starts. */
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    zt_cni_agent_stop(a);
    pump(5);
}

/* Peer credentials: a client of another uid may use both sockets if it is
 * the configured trusted uid, which owns the socket files... */
static void test_peer_uid_trusted(void)
{
    struct zt_cni_agent_config cfg = {
        .uds_path = uds, .cni_dir = cnidir, .rules_apply = fake_apply, .rules_remove = fake_remove};
    struct zt_cni_agent *a = NULL;
    char res[700];
    uid_t owner;

    if (geteuid() != 0)
        SKIP("needs root to run a client as another uid");
    reset();
    /* Trusted uid: sockets owned by it and group root, writable by both;
     * it may enroll and be a proxy. The directory's mode whatever the
     * umask. */
    cfg.trusted_uid = NOBODY;
    mode_t old_umask = umask(077);
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    umask(old_umask);
    CHECK_EQ_INT(mode_of(cnidir, &owner), 0711);
    CHECK_EQ_INT(mode_of(ctl, &owner), 0660);
    CHECK_EQ_INT(owner, NOBODY);
    CHECK_EQ_INT(mode_of(uds, &owner), 0775);
    CHECK_EQ_INT(owner, NOBODY);
    as_nobody(nobody_enroll, res, sizeof(res));
    CHECK_EQ_STR(res, "rc=0 ok=1 error=");
    CHECK_EQ_INT(applied, 1);
    as_nobody(nobody_zds, res, sizeof(res));
    CHECK_EQ_STR(res, "request");
    zt_cni_agent_stop(a);
    pump(5);
}

/* ...and is refused on both otherwise, even with the socket modes opened
 * up (the first fence gone). */
static void test_peer_uid_refused(void)
{
    struct zt_cni_agent_config cfg = {
        .uds_path = uds, .cni_dir = cnidir, .rules_apply = fake_apply, .rules_remove = fake_remove};
    struct zt_cni_agent *a = NULL;
    char res[700];

    if (geteuid() != 0)
        SKIP("needs root to run a client as another uid");
    reset();
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    CHECK_EQ_INT(chmod(cnidir, 0711), 0);
    CHECK_EQ_INT(chmod(ctl, 0666), 0);
    CHECK_EQ_INT(chmod(uds, 0777), 0);
    as_nobody(nobody_enroll, res, sizeof(res));
    CHECK(strstr(res, "rc=0 ok=0 error=uid 65534 may not use the node agent") == res);
    CHECK_EQ_INT(applied, 0);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 0);
    as_nobody(nobody_zds, res, sizeof(res));
    CHECK_EQ_STR(res, "closed");
    zt_cni_agent_stop(a);
    pump(5);
}

/* A proxy of its own, counting what it hears. */
struct proxy_fx {
    int adds, dels;
    bool snap;
};
static int px_add(void *ud, const char *uid, int fd, const struct zt_zds_workload_info *i)
{
    ((struct proxy_fx *)ud)->adds++;
    close(fd);
    return 0;
}
static void px_del(void *ud, const char *uid)
{
    ((struct proxy_fx *)ud)->dels++;
}
static void px_state(void *ud, bool c, bool s, unsigned p)
{
    ((struct proxy_fx *)ud)->snap = s;
}
static const struct zt_inpod_client_ops px_ops = {px_add, px_del, px_state};

/* Two proxies connected, as during an upgrade (istio-cni's rules): each
 * gets the snapshot, the newest gets every later add, removals go to both.
 * When the newest leaves while the older one stays (an upgrade given up,
 * or the older one reconnected last after an agent restart and then
 * drained), the one left is offered every pod, including those enrolled
 * only to the one that left. */
static void test_newest_proxy_gets_adds(void)
{
    struct zt_cni_agent_config cfg = {
        .uds_path = uds, .cni_dir = cnidir, .rules_apply = fake_apply, .rules_remove = fake_remove};
    struct zt_cni_agent *a = NULL;
    struct zt_inpod_client *old = NULL, *new = NULL;
    struct proxy_fx po = {0}, pn = {0};
    struct zt_cni_ctl_reply rep;

    reset();
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u1", nspath[0], &rep), 0);
    CHECK_EQ_INT(zt_inpod_client_start(&loop, uds, &px_ops, &po, &old), 0);
    for (int i = 0; i < 2000 && !po.snap; i++)
        pump(1);
    CHECK_EQ_INT(zt_inpod_client_start(&loop, uds, &px_ops, &pn, &new), 0);
    for (int i = 0; i < 2000 && !pn.snap; i++)
        pump(1);
    CHECK(po.snap && pn.snap);
    CHECK_EQ_INT(po.adds, 1);
    CHECK_EQ_INT(pn.adds, 1);

    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u2", nspath[1], &rep), 0);
    CHECK(strstr(rep.message, "proxy acknowledged") != NULL);
    CHECK_EQ_INT(pn.adds, 2);
    CHECK_EQ_INT(po.adds, 1);
    CHECK_EQ_INT(call(ZT_CNI_CTL_UNENROLL, "u1", "", &rep), 0);
    for (int i = 0; i < 2000 && (po.dels < 1 || pn.dels < 1); i++)
        pump(1);
    CHECK_EQ_INT(pn.dels, 1);
    CHECK_EQ_INT(po.dels, 1);

    /* The newest leaves: the older one is offered u2, which it never had. */
    zt_inpod_client_stop(new);
    for (int i = 0; i < 2000 && po.adds < 2; i++)
        pump(1);
    CHECK_EQ_INT(po.adds, 2);
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u3", nspath[2], &rep), 0);
    CHECK(strstr(rep.message, "proxy acknowledged") != NULL);
    CHECK_EQ_INT(po.adds, 3);
    CHECK_EQ_INT(zt_inpod_client_count(old), 2);

    zt_cni_agent_stop(a);
    zt_inpod_client_stop(old);
    pump(5);
}

int main(void)
{
    char cmd[128];
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    snprintf(dir, sizeof(dir), "/tmp/zt-agent-%d", (int)getpid());
    snprintf(uds, sizeof(uds), "%s/run/ztunnel.sock", dir);
    snprintf(cnidir, sizeof(cnidir), "%s/cni", dir);
    snprintf(ctl, sizeof(ctl), "%s/agent.sock", cnidir);
    for (int i = 0; i < NPODS; i++)
        if (spawn_netns(i) < 0) {
            fprintf(stderr, "cannot create a network namespace\n");
            return 1;
        }
    RUN(test_enroll_flow);
    RUN(test_failed_rules_rolled_back);
    RUN(test_refused_netns);
    RUN(test_socket_dirs);
    RUN(test_peer_uid_trusted);
    RUN(test_peer_uid_refused);
    RUN(test_newest_proxy_gets_adds);
    for (int i = 0; i < NPODS; i++) {
        close(ns_sock[i]);
        waitpid(ns_pid[i], NULL, 0);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)!system(cmd);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    return TEST_REPORT();
}
