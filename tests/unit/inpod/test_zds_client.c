/* Drives the ZDS client against a fake node agent written here: a real
 * SOCK_SEQPACKET listener, requests encoded with the zds codec. */
#include "test.h"

#include "base/err.h"
#include "inpod/zds_client.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uv_loop_t loop;
static char sock_path[108];

struct rec {
    char log[2048];
    int add_rc;
    int adds, dels;
    bool connected, snap;
    unsigned pending;
    struct zt_inpod_client *stop_on_del; /* stop from inside del() */
};
static struct rec g;

static int on_add(void *ud, const char *uid, int fd, const struct zt_zds_workload_info *info)
{
    size_t n = strlen(g.log);
    snprintf(g.log + n, sizeof(g.log) - n, "add:%s:%s/%s;", uid, info->namespace, info->name);
    if (g.add_rc < 0)
        return g.add_rc;
    g.adds++;
    close(fd);
    return 0;
}

static void on_del(void *ud, const char *uid)
{
    size_t n = strlen(g.log);
    snprintf(g.log + n, sizeof(g.log) - n, "del:%s;", uid);
    g.dels++;
    if (g.stop_on_del)
        zt_inpod_client_stop(g.stop_on_del);
}

static void on_state(void *ud, bool connected, bool snap, unsigned pending)
{
    g.connected = connected;
    g.snap = snap;
    g.pending = pending;
}

static const struct zt_inpod_client_ops ops = {on_add, on_del, on_state};

static void pump(void)
{
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
}

static int listen_fake(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);
    snprintf(sock_path, sizeof(sock_path), "/tmp/zt-zdsc-%d.sock", (int)getpid());
    unlink(sock_path);
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
        return -1;
    return fd;
}

/* Accepts the client's connection and checks its hello. -1 on failure. */
static int accept_hello(int lfd)
{
    uint8_t buf[ZT_ZDS_MSG_MAX];
    size_t len;
    int cfd = -1, fd, v = 0;
    for (int i = 0; i < 3000 && cfd < 0; i++) {
        pump();
        cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
    }
    if (cfd < 0)
        return -1;
    for (int i = 0; i < 3000; i++) {
        int rc = zt_zds_recv(cfd, buf, &len, &fd);
        if (rc == 0)
            return zt_zds_hello_decode(buf, len, &v) == 0 && v == 1 ? cfd : -1;
        pump();
    }
    return -1;
}

/* Sends raw bytes (+fd) and returns the Ack text, or "<none>". */
static const char *exchange_raw(int cfd, const uint8_t *msg, size_t mlen, int pass_fd)
{
    static char err[ZT_ZDS_ERROR_MAX + 1];
    uint8_t buf[ZT_ZDS_MSG_MAX];
    size_t len;
    int fd;
    if (zt_zds_send(cfd, msg, mlen, pass_fd) < 0)
        return "<send failed>";
    for (int i = 0; i < 3000; i++) {
        int rc = zt_zds_recv(cfd, buf, &len, &fd);
        if (rc == 0)
            return zt_zds_ack_decode(buf, len, err, sizeof(err)) == 0 ? err : "<bad ack>";
        if (rc != -EAGAIN)
            return "<closed>";
        pump();
    }
    return "<none>";
}

static const char *exchange(int cfd, enum zt_zds_req_kind kind, const char *uid, bool has_info,
                            int pass_fd)
{
    struct zt_zds_request r;
    uint8_t buf[ZT_ZDS_MSG_MAX];
    size_t len = 0;
    memset(&r, 0, sizeof(r));
    r.kind = kind;
    snprintf(r.uid, sizeof(r.uid), "%s", uid);
    r.has_info = has_info;
    strcpy(r.info.name, "n-");
    strcat(r.info.name, uid);
    strcpy(r.info.namespace, "ns");
    strcpy(r.info.service_account, "sa");
    if (!has_info && kind == ZT_ZDS_REQ_ADD) {
        /* The encoder refuses this; hand-build AddWorkload{uid} only. */
        size_t n = strlen(uid);
        buf[0] = 0x0a;
        buf[1] = (uint8_t)(n + 2);
        buf[2] = 0x0a;
        buf[3] = (uint8_t)n;
        memcpy(buf + 4, uid, n);
        return exchange_raw(cfd, buf, n + 4, pass_fd);
    }
    if (zt_zds_request_encode(&r, buf, sizeof(buf), &len) < 0)
        return "<encode failed>";
    return exchange_raw(cfd, buf, len, pass_fd);
}

static int self_ns(void)
{
    return open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
}

/* A child in a fresh netns; returns its netns fd or -1 (no privilege). */
static int other_ns(pid_t *child)
{
    int p[2], fd;
    char c;
    char path[64];
    if (pipe(p) < 0)
        return -1;
    *child = fork();
    if (*child == 0) {
        c = unshare(CLONE_NEWNET) == 0 ? 'y' : 'n';
        (void)!write(p[1], &c, 1);
        pause();
        _exit(0);
    }
    if (read(p[0], &c, 1) != 1 || c != 'y') {
        kill(*child, SIGKILL);
        waitpid(*child, NULL, 0);
        close(p[0]);
        close(p[1]);
        return -1;
    }
    close(p[0]);
    close(p[1]);
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)*child);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd;
}

static void start(struct zt_inpod_client **c)
{
    memset(&g, 0, sizeof(g));
    if (zt_inpod_client_start(&loop, sock_path, &ops, NULL, c) == 0)
        zt_inpod_client_set_timing(*c, 30, 40);
}

static void finish(struct zt_inpod_client *c, int lfd)
{
    zt_inpod_client_stop(c);
    for (int i = 0; i < 5; i++)
        pump();
    close(lfd);
    unlink(sock_path);
}

static void test_snapshot_and_protocol_errors(void)
{
    struct zt_inpod_client *c = NULL;
    int lfd = listen_fake(), cfd, ns = self_ns();
    pid_t child = -1;
    CHECK(lfd >= 0 && ns >= 0);
    start(&c);
    CHECK(c != NULL);
    CHECK_EQ_INT(zt_inpod_client_state(c), ZT_INPOD_CLIENT_ST_BACKOFF);
    cfd = accept_hello(lfd);
    CHECK(cfd >= 0);
    CHECK_EQ_INT(zt_inpod_client_state(c), ZT_INPOD_CLIENT_ST_SNAPSHOT);
    CHECK(g.connected && !g.snap);

    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_ADD, "u1", true, ns), "");
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_KEEP, "u2", false, -1), "");
    CHECK(!g.snap);
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_SNAPSHOT_SENT, "", false, -1), "");
    CHECK(g.snap && g.pending == 0);
    CHECK_EQ_INT(zt_inpod_client_state(c), ZT_INPOD_CLIENT_ST_READY);
    CHECK_EQ_STR(g.log, "add:u1:ns/n-u1;");

    /* Same uid, same netns: acked, proxy not called again. */
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_ADD, "u1", true, ns), "");
    CHECK_EQ_INT(g.adds, 1);

    /* Protocol errors: NACKed, session continues. */
    CHECK(strstr(exchange(cfd, ZT_ZDS_REQ_KEEP, "u1", false, -1), "keep") != NULL);
    CHECK(strstr(exchange(cfd, ZT_ZDS_REQ_SNAPSHOT_SENT, "", false, -1), "snapshot") != NULL);
    CHECK(strstr(exchange(cfd, ZT_ZDS_REQ_ADD, "u9", false, ns), "workload_info") != NULL);
    CHECK(strstr(exchange(cfd, ZT_ZDS_REQ_ADD, "u9", true, -1), "fd") != NULL);
    CHECK(strstr(exchange(cfd, ZT_ZDS_REQ_DEL, "u1", false, ns), "fd passed") != NULL);
    CHECK(strstr(exchange_raw(cfd, (const uint8_t *)"\xff\xff\xff", 3, -1), "bad message") != NULL);
    {
        int devnull = open("/dev/null", O_RDONLY);
        CHECK(strstr(exchange(cfd, ZT_ZDS_REQ_ADD, "u9", true, devnull), "not a network") != NULL);
        close(devnull);
    }
    CHECK_EQ_INT(g.adds, 1);
    CHECK_EQ_INT(g.dels, 0); /* the fd-on-del was refused, not applied */
    CHECK_EQ_INT(zt_inpod_client_count(c), 1);

    /* Different netns for u1: old proxy deleted, new one started. */
    int other = other_ns(&child);
    if (other >= 0) {
        g.log[0] = '\0';
        CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_ADD, "u1", true, other), "");
        CHECK_EQ_STR(g.log, "del:u1;add:u1:ns/n-u1;");
        close(other);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }

    /* Unknown del is fine (deletes go to every connection); known is applied. */
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_DEL, "nobody", false, -1), "");
    int dels = g.dels;
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_DEL, "u1", false, -1), "");
    CHECK_EQ_INT(g.dels, dels + 1);
    CHECK_EQ_INT(zt_inpod_client_count(c), 0);
    close(cfd);
    close(ns);
    finish(c, lfd);
}

static void test_reconnect_reconciles(void)
{
    struct zt_inpod_client *c = NULL;
    int lfd = listen_fake(), cfd, ns = self_ns();
    CHECK(lfd >= 0);
    start(&c);
    cfd = accept_hello(lfd);
    CHECK(cfd >= 0);
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_ADD, "a", true, ns), "");
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_ADD, "b", true, ns), "");
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_ADD, "c", true, ns), "");
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_SNAPSHOT_SENT, "", false, -1), "");
    CHECK_EQ_INT(g.adds, 3);

    /* The agent restarts: the client reconnects and sends hello again. */
    close(cfd);
    for (int i = 0; i < 20 && g.connected; i++)
        pump();
    CHECK(!g.connected);
    CHECK(g.snap); /* sticky: readiness does not flap on agent restarts */
    cfd = accept_hello(lfd);
    CHECK(cfd >= 0);
    CHECK_EQ_INT(zt_inpod_client_state(c), ZT_INPOD_CLIENT_ST_SNAPSHOT);
    g.log[0] = '\0';
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_ADD, "a", true, ns), ""); /* same netns: no-op */
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_KEEP, "b", false, -1), "");
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_SNAPSHOT_SENT, "", false, -1), "");
    CHECK_EQ_STR(g.log, "del:c;");
    CHECK_EQ_INT(zt_inpod_client_count(c), 2);
    close(cfd);
    close(ns);
    finish(c, lfd);
}

static void test_failed_add_pending_and_retried(void)
{
    struct zt_inpod_client *c = NULL;
    int lfd = listen_fake(), cfd, ns = self_ns();
    const char *ack;
    CHECK(lfd >= 0);
    start(&c);
    cfd = accept_hello(lfd);
    CHECK(cfd >= 0);
    g.add_rc = -EADDRINUSE;
    ack = exchange(cfd, ZT_ZDS_REQ_ADD, "p", true, ns);
    CHECK(strstr(ack, "Address already in use") != NULL);
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_SNAPSHOT_SENT, "", false, -1), "");
    CHECK(g.snap);
    CHECK_EQ_INT(g.pending, 1); /* not ready */
    g.add_rc = 0;
    for (int i = 0; i < 500 && g.pending; i++)
        pump();
    CHECK_EQ_INT(g.pending, 0);
    CHECK_EQ_INT(g.adds, 1);
    close(cfd);
    close(ns);
    finish(c, lfd);
}

static void test_stop_inside_callback(void)
{
    struct zt_inpod_client *c = NULL;
    int lfd = listen_fake(), cfd, ns = self_ns();
    CHECK(lfd >= 0);
    start(&c);
    cfd = accept_hello(lfd);
    CHECK(cfd >= 0);
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_ADD, "a", true, ns), "");
    CHECK_EQ_STR(exchange(cfd, ZT_ZDS_REQ_ADD, "b", true, ns), "");
    g.stop_on_del = c;
    /* del a, then del b queued behind it: the first del() stops the
     * client, which must neither answer nor touch freed memory. */
    CHECK(zt_zds_send(cfd,
                      (const uint8_t *)"\x12\x03\x12\x01"
                                       "a",
                      5, -1) == 0);
    CHECK(zt_zds_send(cfd,
                      (const uint8_t *)"\x12\x03\x12\x01"
                                       "b",
                      5, -1) == 0);
    for (int i = 0; i < 50; i++)
        pump();
    CHECK_EQ_INT(g.dels, 1);
    close(cfd);
    close(ns);
    close(lfd);
    unlink(sock_path);
}

static void test_start_rejects_bad_args(void)
{
    struct zt_inpod_client *c = NULL;
    char longp[200];
    memset(longp, 'x', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    CHECK_EQ_INT(zt_inpod_client_start(&loop, longp, &ops, NULL, &c), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_inpod_client_start(&loop, "", &ops, NULL, &c), ZT_E_CONFIG);
    CHECK_EQ_STR(zt_inpod_client_state_str(ZT_INPOD_CLIENT_ST_READY), "ready");
}

#define NOBODY 65534

/* A fake node agent running as uid NOBODY in a child process: it accepts
 * one connection and writes to `*report` (a pipe) "hello" if the client
 * said hello, or "closed" if the client hung up first. Returns its pid, or
 * -1; `*report` is closed by the caller. */
static pid_t spawn_nobody_agent(const char *dir, int *report)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int p[2];
    char c;
    pid_t pid;

    snprintf(sock_path, sizeof(sock_path), "%s/zt.sock", dir);
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    if (pipe(p) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        uint8_t buf[ZT_ZDS_MSG_MAX];
        size_t len;
        int lfd, cfd, fd = -1, v = 0, rc;
        close(p[0]);
        if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
            setresuid(NOBODY, NOBODY, NOBODY) < 0)
            _exit(1);
        lfd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4) < 0)
            _exit(1);
        if (write(p[1], "L", 1) != 1 || (cfd = accept(lfd, NULL, NULL)) < 0)
            _exit(1);
        rc = zt_zds_recv(cfd, buf, &len, &fd);
        if (rc == 0 && zt_zds_hello_decode(buf, len, &v) == 0)
            (void)!write(p[1], "hello", 5);
        else if (rc == ZT_E_CLOSED || rc == -ECONNRESET)
            (void)!write(p[1], "closed", 6);
        else
            (void)!write(p[1], "error", 5);
        _exit(0);
    }
    close(p[1]);
    if (pid < 0 || read(p[0], &c, 1) != 1) {
        close(p[0]);
        return -1;
    }
    *report = p[0];
    return pid;
}

/* Turns the loop until the fake agent reports; returns its report. */
static const char *agent_report(int report)
{
    static char res[16];
    size_t used = 0;
    res[0] = '\0';
    for (int i = 0; i < 10000; i++) {
        struct pollfd pf = {.fd = report, .events = POLLIN};
        ssize_t r;
        pump();
        if (poll(&pf, 1, 0) <= 0)
            continue;
        r = read(report, res + used, sizeof(res) - 1 - used);
        if (r <= 0)
            break;
        used += (size_t)r;
        res[used] = '\0';
    }
    return res[0] ? res : "<no report>";
}

/* Another uid listening on INPOD_UDS is a node agent only if it is the
 * configured trusted uid; otherwise the client hangs up before saying
 * anything. Root only (the fake agent must run as another uid). */
static void test_agent_uid_checked(void)
{
    char dir[] = "/tmp/zt-zdsc-uid-XXXXXX";
    struct zt_inpod_client *c = NULL;
    int report = -1;
    pid_t pid;

    if (geteuid() != 0)
        SKIP("needs root to run the fake agent as another uid");
    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ_INT(chown(dir, NOBODY, NOBODY), 0);

    /* Positive control: trusted, so it gets the hello. */
    pid = spawn_nobody_agent(dir, &report);
    CHECK(pid > 0);
    start(&c);
    zt_inpod_client_set_trusted_uid(c, NOBODY);
    CHECK_EQ_STR(agent_report(report), "hello");
    zt_inpod_client_stop(c);
    close(report);
    waitpid(pid, NULL, 0);
    unlink(sock_path);

    /* Not trusted: refused without a word, and never reported connected. */
    pid = spawn_nobody_agent(dir, &report);
    CHECK(pid > 0);
    start(&c);
    CHECK_EQ_STR(agent_report(report), "closed");
    CHECK(!g.connected);
    CHECK(zt_inpod_client_state(c) == ZT_INPOD_CLIENT_ST_BACKOFF);
    zt_inpod_client_stop(c);
    close(report);
    waitpid(pid, NULL, 0);
    for (int i = 0; i < 5; i++)
        pump();
    unlink(sock_path);
    rmdir(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    RUN(test_snapshot_and_protocol_errors);
    RUN(test_reconnect_reconciles);
    RUN(test_failed_add_pending_and_retried);
    RUN(test_stop_inside_callback);
    RUN(test_start_rejects_bad_args);
    RUN(test_agent_uid_checked);
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    return TEST_REPORT();
}
