/* ztunnel control in one process with our own clients: the Istio CA client
 * (its own thread) and the xDS client (a second loop on the test thread),
 * the server running on a loop thread of its own. Covers the paths the
 * e2e suite covers over network namespaces, in seconds and without root:
 * issuance and node authorization, a wrong token, the first state, a
 * pushed change, a refused broken file, a waypoint's RateLimits following
 * the directory, and both clients following their root file when it is
 * rotated on disk (no restart). */
#include "test.h"

#include "base/buf.h"
#include "base/err.h"
#include "ca/client.h"
#include "control/control.h"
#include "tls/spiffe.h"
#include "xds/client.h"
#include "xds/policies.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define TOKEN1 "node1-token-0123456789"
#define WAIT_MS 5000

static struct {
    char dir[64], cfg[96], ca[96], tokens[96], tok1[96], tok_bad[96], root[128], addr[32];
    char other_ca[96], other_root[128];
    uv_loop_t loop;
    uv_async_t stop;
    pthread_t thread;
    struct zt_control *cp;
} w;

static void write_file(const char *path, const char *text)
{
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
    if (rename(tmp, path) != 0)
        abort();
}

/* Replaces dst with src's content the way a ConfigMap update does (a new
 * file renamed over the old one). */
static void copy_file(const char *src, const char *dst)
{
    char text[65536];
    FILE *f = fopen(src, "r");
    if (!f)
        abort();
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    write_file(dst, text);
}

static void on_stop(uv_async_t *h)
{
    zt_control_stop(w.cp);
    uv_close((uv_handle_t *)h, NULL);
}

static void *server_thread(void *arg)
{
    uv_run(&w.loop, UV_RUN_DEFAULT);
    return NULL;
}

static const char *const WORKLOADS =
    "workloads:\n"
    "- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: [\"10.0.0.1\"], "
    "protocol: HBONE, node: node1}\n"
    "- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: [\"10.0.0.2\"], "
    "protocol: HBONE, node: node2}\n";

static int world_start(void)
{
    char cmd[256], err[512];
    snprintf(w.dir, sizeof(w.dir), "/tmp/zt-control-XXXXXX");
    if (!mkdtemp(w.dir))
        return -1;
    snprintf(w.cfg, sizeof(w.cfg), "%s/cfg", w.dir);
    snprintf(w.ca, sizeof(w.ca), "%s/ca", w.dir);
    snprintf(w.tokens, sizeof(w.tokens), "%s/tokens", w.dir);
    snprintf(w.tok1, sizeof(w.tok1), "%s/tok1", w.dir);
    snprintf(w.tok_bad, sizeof(w.tok_bad), "%s/tok-bad", w.dir);
    snprintf(w.root, sizeof(w.root), "%s/root-cert.pem", w.ca);
    snprintf(w.other_ca, sizeof(w.other_ca), "%s/other-ca", w.dir);
    snprintf(w.other_root, sizeof(w.other_root), "%s/root-cert.pem", w.other_ca);
    mkdir(w.cfg, 0755);
    snprintf(cmd, sizeof(cmd), "scripts/gen-cacerts.sh %s >/dev/null", w.ca);
    if (system(cmd) != 0)
        return -1;
    /* A second mesh root, which did not sign the server's certificate. */
    snprintf(cmd, sizeof(cmd), "scripts/gen-cacerts.sh %s >/dev/null", w.other_ca);
    if (system(cmd) != 0)
        return -1;
    write_file(w.tokens, "node1 " TOKEN1 "\nnode2 node2-token-0123456789\n");
    write_file(w.tok1, TOKEN1 "\n");
    write_file(w.tok_bad, "not-a-node-token-0000\n");
    char path[160];
    snprintf(path, sizeof(path), "%s/workloads.yaml", w.cfg);
    write_file(path, WORKLOADS);
    uv_loop_init(&w.loop);
    struct zt_control_opts o = {
        .listen = "127.0.0.1:0", .config_dir = w.cfg, .ca_dir = w.ca, .node_tokens = w.tokens};
    if (zt_control_start(&w.loop, &o, &w.cp, err, sizeof(err)) != 0) {
        fprintf(stderr, "zt_control_start: %s\n", err);
        return -1;
    }
    snprintf(w.addr, sizeof(w.addr), "127.0.0.1:%u", zt_control_port(w.cp));
    uv_async_init(&w.loop, &w.stop, on_stop);
    return pthread_create(&w.thread, NULL, server_thread, NULL);
}

static void world_stop(void)
{
    char cmd[128];
    uv_async_send(&w.stop);
    pthread_join(w.thread, NULL);
    uv_loop_close(&w.loop);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", w.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", w.dir);
}

/* A counter from the monitoring text (thread-safe render), or -1. */
static long metric(const char *name)
{
    struct zt_buf out = {0};
    zt_control_render_metrics(w.cp, &out);
    zt_buf_append(&out, "", 1);
    long v = -1;
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr((const char *)zt_buf_head(&out), key);
    if (p)
        v = strtol(p + strlen(key), NULL, 10);
    zt_buf_release(&out);
    return v;
}

/* ---- CA ---- */

static struct zt_ca_client *ca_client(const char *token_path)
{
    struct zt_ca_client_opts o = {.address = w.addr,
                                  .root_ca = w.root,
                                  .token_path = token_path,
                                  .cluster_id = "Kubernetes",
                                  .impersonate = true,
                                  .timeout_ms = WAIT_MS};
    struct zt_ca_client *c = NULL;
    char err[256];
    if (zt_ca_client_new(&o, &c, err, sizeof(err)) != 0)
        fprintf(stderr, "zt_ca_client_new: %s\n", err);
    return c;
}

static void test_ca_issues_and_authorizes(void)
{
    struct zt_ca_client *c = ca_client(w.tok1);
    CHECK(c != NULL);
    struct zt_spiffe_id a, other;
    const char *sa = "spiffe://cluster.local/ns/default/sa/sa-a";
    const char *sc = "spiffe://cluster.local/ns/default/sa/sa-c";
    CHECK_EQ_INT(zt_spiffe_parse(sa, strlen(sa), &a), 0);
    CHECK_EQ_INT(zt_spiffe_parse(sc, strlen(sc), &other), 0);
    struct zt_tls_cert *cert = NULL;
    CHECK_EQ_INT(zt_ca_client_mint(c, &a, 600, &cert), 0);
    CHECK(cert != NULL && zt_spiffe_eq(&cert->id, &a));
    /* The requested lifetime (600 s, minus the backdating) was granted. */
    CHECK(cert->not_after - cert->not_before >= 600 && cert->not_after - cert->not_before <= 660);
    CHECK(sk_X509_num(cert->roots) >= 1);
    zt_tls_cert_unref(cert);
    cert = NULL;
    /* sa-c runs on node2 only: node1's token cannot have it. */
    CHECK(zt_ca_client_mint(c, &other, 600, &cert) < 0);
    CHECK(cert == NULL);
    zt_ca_client_free(c);
    CHECK_EQ_INT(metric("citadel_server_success_cert_issuance_count"), 1);
    CHECK_EQ_INT(metric("ztunnel_control_csr_unauthorized_total"), 1);

    c = ca_client(w.tok_bad);
    CHECK(c != NULL);
    CHECK(zt_ca_client_mint(c, &a, 600, &cert) < 0);
    zt_ca_client_free(c);
    CHECK_EQ_INT(metric("citadel_server_authentication_failure_count"), 1);
}

/* CA_ROOT_CA rotated on disk: the running client's next connection uses the
 * new roots. Negative control first: with roots that did not sign the
 * server's certificate the request fails. */
static void test_ca_follows_root_file(void)
{
    char roots[160];
    snprintf(roots, sizeof(roots), "%s/ca-roots.pem", w.dir);
    copy_file(w.other_root, roots);
    struct zt_ca_client_opts o = {.address = w.addr,
                                  .root_ca = roots,
                                  .token_path = w.tok1,
                                  .cluster_id = "Kubernetes",
                                  .impersonate = true,
                                  .timeout_ms = WAIT_MS};
    struct zt_ca_client *c = NULL;
    char err[256];
    CHECK_EQ_INT(zt_ca_client_new(&o, &c, err, sizeof(err)), 0);
    struct zt_spiffe_id a;
    const char *sa = "spiffe://cluster.local/ns/default/sa/sa-a";
    CHECK_EQ_INT(zt_spiffe_parse(sa, strlen(sa), &a), 0);
    struct zt_tls_cert *cert = NULL;
    CHECK(zt_ca_client_mint(c, &a, 600, &cert) < 0);
    CHECK(cert == NULL);
    /* The mesh's root replaces the file: the same client now gets one. */
    copy_file(w.root, roots);
    CHECK_EQ_INT(zt_ca_client_mint(c, &a, 600, &cert), 0);
    CHECK(cert != NULL && zt_spiffe_eq(&cert->id, &a));
    zt_tls_cert_unref(cert);
    cert = NULL;
    zt_ca_client_free(c);
}

/* ---- xDS ---- */

struct xds_watch {
    uv_loop_t loop;
    uv_timer_t timer;
    struct zt_state *last;
    int publishes;
    bool ready;
};

static void x_publish(void *ud, struct zt_state *state)
{
    struct xds_watch *x = ud;
    zt_state_unref(x->last);
    x->last = state;
    x->publishes++;
}

static void x_ready(void *ud)
{
    struct xds_watch *x = ud;
    x->ready = true;
}

static const struct zt_xds_client_ops x_ops = {.publish = x_publish, .ready = x_ready};

static void on_tick(uv_timer_t *t)
{
}

/* Runs the client loop until cond holds or WAIT_MS pass. */
#define X_WAIT(x, cond)                                                                            \
    do {                                                                                           \
        uint64_t until_ = uv_now(&(x)->loop) + WAIT_MS;                                            \
        while (!(cond) && uv_now(&(x)->loop) < until_)                                             \
            uv_run(&(x)->loop, UV_RUN_ONCE);                                                       \
    } while (0)

static size_t workloads(const struct xds_watch *x)
{
    return x->last ? zt_state_workload_count(x->last) : 0;
}

static void test_xds_state_push_and_refusal(void)
{
    struct xds_watch x = {0};
    uv_loop_init(&x.loop);
    uv_timer_init(&x.loop, &x.timer);
    uv_timer_start(&x.timer, on_tick, 20, 20); /* keeps UV_RUN_ONCE returning */
    const char *meta[] = {"NODE_NAME", "node1"};
    struct zt_xds_client_opts o = {.address = w.addr,
                                   .root_ca = w.root,
                                   .token_path = w.tok1,
                                   .cluster_id = "Kubernetes",
                                   .node_id = "ztunnel~10.0.0.9~ztunnel.istio-system~istio-system."
                                              "svc.cluster.local",
                                   .node_meta = meta,
                                   .n_node_meta = 1};
    struct zt_xds_client *c = NULL;
    char err[256];
    CHECK_EQ_INT(zt_xds_client_start(&x.loop, &o, NULL, &x_ops, &x, &c, err, sizeof(err)), 0);
    X_WAIT(&x, x.ready && workloads(&x) == 2);
    CHECK(x.ready);
    CHECK_EQ_INT((int)workloads(&x), 2);

    /* A new file with a workload and a policy: pushed. */
    char path[160];
    snprintf(path, sizeof(path), "%s/more.yaml", w.cfg);
    write_file(path, "workloads:\n"
                     "- {uid: d, name: d, namespace: default, serviceAccount: sa-d, workloadIps: "
                     "[\"10.0.0.3\"], protocol: HBONE, node: node2}\n"
                     "policies:\n"
                     "- {name: deny, namespace: default, scope: Namespace, action: Deny, rules: "
                     "[[[ {destinationPorts: [9090]} ]]]}\n");
    X_WAIT(&x, workloads(&x) == 3 && zt_state_policy_count(x.last) == 1);
    CHECK_EQ_INT((int)workloads(&x), 3);
    CHECK(zt_state_workload_by_uid(x.last, "d") != NULL);
    CHECK_EQ_INT((int)zt_state_policy_count(x.last), 1);

    /* A broken edit is refused; the served state stays. */
    int before = x.publishes;
    write_file(path, "workloads:\n- {uid: d, colour: blue}\n");
    X_WAIT(&x, metric("ztunnel_control_config_errors_total") == 1);
    CHECK_EQ_INT(metric("ztunnel_control_config_errors_total"), 1);
    CHECK_EQ_INT(x.publishes, before);
    CHECK_EQ_INT((int)workloads(&x), 3);

    /* Removing the file removes its objects. */
    unlink(path);
    X_WAIT(&x, workloads(&x) == 2 && zt_state_policy_count(x.last) == 0);
    CHECK_EQ_INT((int)workloads(&x), 2);
    CHECK(zt_state_workload_by_uid(x.last, "d") == NULL);

    zt_xds_client_stop(c);
    uv_close((uv_handle_t *)&x.timer, NULL);
    uv_run(&x.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&x.loop), 0);
    zt_state_unref(x.last);
}

/* A waypoint's client (policies callback set) subscribes to RateLimit too:
 * what the RateLimit callback last got, decoded. */
struct rl_watch {
    struct xds_watch x;
    int calls;
    size_t n;
    uint32_t requests[4];
    char names[4][64];
};

static void rl_policies(void *ud, enum zt_ads_type t, const struct zt_ads_resource *v, size_t n)
{
    struct rl_watch *r = ud;
    if (t != ZT_ADS_RATELIMIT)
        return;
    r->calls++;
    r->n = n;
    for (size_t i = 0; i < n && i < 4; i++) {
        struct zt_ratelimit_policy *p = NULL;
        char err[256];
        r->requests[i] = 0;
        snprintf(r->names[i], sizeof(r->names[i]), "%s", v[i].name);
        if (zt_xds_ratelimit_decode(v[i].value, v[i].value_len, &p, err, sizeof(err)) == 0)
            r->requests[i] = p->requests;
        zt_ratelimit_policy_free(p);
    }
}

static void rl_publish(void *ud, struct zt_state *state)
{
    x_publish(&((struct rl_watch *)ud)->x, state);
}

static void rl_ready(void *ud)
{
    x_ready(&((struct rl_watch *)ud)->x);
}

static void rl_routes(void *ud, const struct zt_ads_resource *v, size_t n)
{
}

static const struct zt_xds_client_ops rl_ops = {
    .publish = rl_publish, .ready = rl_ready, .routes = rl_routes, .policies = rl_policies};

#define RATELIMIT(name, requests)                                                                  \
    "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\nmetadata: {name: " name         \
    ", namespace: default}\nspec:\n  targetRefs: [{kind: Service, name: web}]\n  limit: "          \
    "{requests: " requests ", unit: minute}\n"

/* RateLimit documents in the directory reach a waypoint's client as
 * ztunnel.policy.v1.RateLimit resources named "<ns>/<name>"; an edit is
 * pushed; a bad one is left out while the good one beside it is served;
 * deleting the files removes them (the callback gets none). */
static void test_xds_waypoint_ratelimits(void)
{
    struct rl_watch r = {0};
    struct xds_watch *x = &r.x;
    char path[160], bad[160], err[256];
    snprintf(path, sizeof(path), "%s/ratelimit.yaml", w.cfg);
    snprintf(bad, sizeof(bad), "%s/bad-rl.yaml", w.cfg);
    write_file(path, RATELIMIT("rl", "3"));
    uv_loop_init(&x->loop);
    uv_timer_init(&x->loop, &x->timer);
    uv_timer_start(&x->timer, on_tick, 20, 20);
    const char *meta[] = {"NODE_NAME", "node1"};
    struct zt_xds_client_opts o = {.address = w.addr,
                                   .root_ca = w.root,
                                   .token_path = w.tok1,
                                   .cluster_id = "Kubernetes",
                                   .node_id =
                                       "waypoint~10.0.0.9~w.default~default.svc.cluster.local",
                                   .node_meta = meta,
                                   .n_node_meta = 1};
    struct zt_xds_client *c = NULL;
    CHECK_EQ_INT(zt_xds_client_start(&x->loop, &o, NULL, &rl_ops, &r, &c, err, sizeof(err)), 0);
    X_WAIT(x, r.n == 1 && r.requests[0] == 3);
    CHECK(r.n == 1 && r.requests[0] == 3);
    CHECK_EQ_STR(r.names[0], "default/rl");

    write_file(path, RATELIMIT("rl", "5"));
    X_WAIT(x, r.n == 1 && r.requests[0] == 5);
    CHECK(r.n == 1 && r.requests[0] == 5);

    /* A bad one and a good one in a second file: the good one joins. */
    write_file(bad, RATELIMIT("broken", "0") "---\n" RATELIMIT("other", "7"));
    X_WAIT(x, r.n == 2);
    CHECK(r.n == 2 && !strcmp(r.names[0], "default/other") && r.requests[0] == 7 &&
          !strcmp(r.names[1], "default/rl") && r.requests[1] == 5);

    int calls = r.calls;
    unlink(path);
    unlink(bad);
    X_WAIT(x, r.n == 0 && r.calls > calls);
    CHECK(r.n == 0 && r.calls > calls);

    zt_xds_client_stop(c);
    uv_close((uv_handle_t *)&x->timer, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&x->loop), 0);
    zt_state_unref(x->last);
}

/* XDS_ROOT_CA rotated on disk: the running client's next connection attempt
 * uses the new roots, without a restart. Negative control first: with
 * roots that did not sign the server's certificate no attempt succeeds. */
static void test_xds_follows_root_file(void)
{
    char roots[160];
    snprintf(roots, sizeof(roots), "%s/xds-roots.pem", w.dir);
    copy_file(w.other_root, roots);
    struct xds_watch x = {0};
    uv_loop_init(&x.loop);
    uv_timer_init(&x.loop, &x.timer);
    uv_timer_start(&x.timer, on_tick, 20, 20);
    const char *meta[] = {"NODE_NAME", "node1"};
    struct zt_xds_client_opts o = {.address = w.addr,
                                   .root_ca = roots,
                                   .token_path = w.tok1,
                                   .cluster_id = "Kubernetes",
                                   .node_id = "ztunnel~10.0.0.9~ztunnel.istio-system~istio-system."
                                              "svc.cluster.local",
                                   .node_meta = meta,
                                   .n_node_meta = 1};
    struct zt_xds_client *c = NULL;
    char err[256];
    CHECK_EQ_INT(zt_xds_client_start(&x.loop, &o, NULL, &x_ops, &x, &c, err, sizeof(err)), 0);
    /* Wait for the first attempt to fail: connecting, then back off. */
    X_WAIT(&x, zt_xds_client_state(c) == ZT_XDS_ST_CONNECTING);
    CHECK(zt_xds_client_state(c) == ZT_XDS_ST_CONNECTING);
    X_WAIT(&x, zt_xds_client_state(c) == ZT_XDS_ST_BACKOFF);
    CHECK(zt_xds_client_state(c) == ZT_XDS_ST_BACKOFF);
    CHECK(!x.ready);
    copy_file(w.root, roots);
    X_WAIT(&x, x.ready);
    CHECK(x.ready);
    CHECK_EQ_INT((int)workloads(&x), 2);
    zt_xds_client_stop(c);
    uv_close((uv_handle_t *)&x.timer, NULL);
    uv_run(&x.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&x.loop), 0);
    zt_state_unref(x.last);
}

int main(void)
{
    if (access("scripts/gen-cacerts.sh", X_OK) != 0) {
        return SKIP_ALL("run from the repository root (no scripts/gen-cacerts.sh)");
    }
    if (world_start() != 0) {
        fprintf(stderr, "cannot start the control plane\n");
        return 1;
    }
    RUN(test_ca_issues_and_authorizes);
    RUN(test_xds_state_push_and_refusal);
    RUN(test_xds_waypoint_ratelimits);
    RUN(test_ca_follows_root_file);
    RUN(test_xds_follows_root_file);
    world_stop();
    return TEST_REPORT();
}
