/* The node agent end to end on one loop: control requests from a thread
 * (as `ztunnel enroll` would send them), our own ZDS client as the proxy,
 * fake rule installers (rules have their own root-only test). */
#include "test.h"

#include "base/err.h"
#include "cni/agent.h"
#include "cni/ctl.h"
#include "inpod/zds_client.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static uv_loop_t loop;
static char dir[64], uds[128], ctl[128];
static int applied, removed, proxy_adds, proxy_dels, proxy_add_rc;
static bool proxy_snap;
static const char *apply_error; /* non-NULL: fake_apply fails with this text */

static int fake_apply(int fd, char *err, size_t cap)
{
    applied++;
    if (apply_error) {
        snprintf(err, cap, "%s", apply_error);
        return ZT_E_CONFIG;
    }
    err[0] = '\0';
    return 0;
}
static int fake_remove(int fd, char *err, size_t cap)
{
    removed++;
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
    proxy_snap = false;
}

static void pump(int n)
{
    for (int i = 0; i < n; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static void test_enroll_flow(void)
{
    struct zt_cni_agent_config cfg = {uds, dir, fake_apply, fake_remove};
    struct zt_cni_agent *a = NULL;
    struct zt_inpod_client *cl = NULL;
    struct zt_cni_ctl_reply rep;

    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    /* Before any proxy: enrolled, nobody to tell. */
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u1", "/proc/self/ns/net", &rep), 0);
    CHECK(rep.ok);
    CHECK(strstr(rep.message, "no proxy") != NULL);
    CHECK_EQ_INT(applied, 1);

    CHECK_EQ_INT(zt_inpod_client_start(&loop, uds, &pops, NULL, &cl), 0);
    for (int i = 0; i < 2000 && !proxy_snap; i++)
        pump(1);
    CHECK(proxy_snap);
    CHECK_EQ_INT(proxy_adds, 1); /* u1 came in the snapshot */

    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u2", "/proc/self/ns/net", &rep), 0);
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
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "u4", "/proc/self/ns/net", &rep), 0);
    CHECK(rep.ok);
    CHECK(strstr(rep.proxy_error, "Address already in use") != NULL);
    proxy_add_rc = 0;

    CHECK_EQ_INT(call(ZT_CNI_CTL_UNENROLL, "u2", "", &rep), 0);
    CHECK(rep.ok);
    CHECK_EQ_INT(proxy_dels, 1);
    CHECK_EQ_INT(removed, 1);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 2);

    /* Restart: enrollments come back from disk, rules re-installed. */
    zt_cni_agent_stop(a);
    pump(5);
    CHECK(access(ctl, F_OK) != 0 && access(uds, F_OK) != 0);
    applied = 0;
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 2);
    CHECK_EQ_INT(applied, 2);
    zt_cni_agent_stop(a);
    zt_inpod_client_stop(cl);
    pump(5);
}

/* Rules that fail half-way (IPv4 in, IPv6 refused) are rolled back: the
 * pod is not enrolled and the client hears why. */
static void test_failed_rules_rolled_back(void)
{
    struct zt_cni_agent_config cfg = {uds, dir, fake_apply, fake_remove};
    struct zt_cni_agent *a = NULL;
    struct zt_cni_ctl_reply rep;

    reset();
    CHECK_EQ_INT(zt_cni_agent_start(&loop, &cfg, &a), 0);
    apply_error = "IPv6 rules not installed: ip6tables-restore failed (exit 1)";
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "v6", "/proc/self/ns/net", &rep), 0);
    apply_error = NULL;
    CHECK(!rep.ok);
    CHECK(strstr(rep.error, "IPv6 rules not installed: ip6tables-restore failed") != NULL);
    CHECK_EQ_INT(applied, 1);
    CHECK_EQ_INT(removed, 1);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 0);
    /* Positive control: the same request without the failure enrolls. */
    CHECK_EQ_INT(call(ZT_CNI_CTL_ENROLL, "v6", "/proc/self/ns/net", &rep), 0);
    CHECK(rep.ok);
    CHECK_EQ_INT(zt_cni_agent_pod_count(a), 1);
    CHECK_EQ_INT(call(ZT_CNI_CTL_UNENROLL, "v6", "", &rep), 0);
    CHECK(rep.ok);
    zt_cni_agent_stop(a);
    pump(5);
}

int main(void)
{
    char cmd[128];
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    snprintf(dir, sizeof(dir), "/tmp/zt-agent-%d", (int)getpid());
    snprintf(uds, sizeof(uds), "%s/run/ztunnel.sock", dir);
    snprintf(ctl, sizeof(ctl), "%s/agent.sock", dir);
    RUN(test_enroll_flow);
    RUN(test_failed_rules_rolled_back);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)!system(cmd);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    return TEST_REPORT();
}
