/* ztunnel control under pressure, with real sockets on loopback: the
 * per-source-address connection cap, the deadline for opening an
 * authenticated stream, the size cap of ADS requests, a revoked token ending
 * its node's streams, and accepting when the process is out of file
 * descriptors. Server and clients share one loop on the test thread. */
#include "test.h"

#include "base/buf.h"
#include "base/log.h"
#include "control/control.h"
#include "h2/grpc.h"
#include "h2/h2conn.h"
#include "proto/discovery.pb-c.h"
#include "tls/ctx.h"
#include "xds/ads.h"
#include "xds/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define TOKEN1 "node1-token-0123456789"
#define TOKEN2 "node2-token-0123456789"
#define WAIT_MS 5000

struct xds_watch;
struct raw_call;
static void xds_stop(struct xds_watch *x);
static void raw_call_free(struct raw_call *r);

static struct {
    char dir[64], cfg[96], ca[96], tokens[96], tok1[96], tok2[96], root[128], addr[32];
    uv_loop_t loop;
    uv_timer_t tick;
    struct zt_control *cp;
    /* Released by world_stop, whatever the test left behind. */
    int fds[16];
    int n_fds;
    struct xds_watch *watches[4];
    int n_watches;
    struct raw_call *raw;
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

static void on_tick(uv_timer_t *t)
{
}

/* Runs the loop until cond holds or WAIT_MS pass. */
#define LOOP_WAIT(cond)                                                                            \
    do {                                                                                           \
        uint64_t until_ = uv_now(&w.loop) + WAIT_MS;                                               \
        while (!(cond) && uv_now(&w.loop) < until_)                                                \
            uv_run(&w.loop, UV_RUN_ONCE);                                                          \
    } while (0)

/* Runs the loop for ms milliseconds. */
static void loop_for(unsigned ms)
{
    uint64_t until = uv_now(&w.loop) + ms;
    while (uv_now(&w.loop) < until)
        uv_run(&w.loop, UV_RUN_ONCE);
}

static int world_start(unsigned per_addr, unsigned auth_timeout_ms)
{
    char cmd[256], err[512];
    snprintf(w.dir, sizeof(w.dir), "/tmp/zt-limits-XXXXXX");
    if (!mkdtemp(w.dir))
        return -1;
    snprintf(w.cfg, sizeof(w.cfg), "%s/cfg", w.dir);
    snprintf(w.ca, sizeof(w.ca), "%s/ca", w.dir);
    snprintf(w.tokens, sizeof(w.tokens), "%s/tokens", w.dir);
    snprintf(w.tok1, sizeof(w.tok1), "%s/tok1", w.dir);
    snprintf(w.tok2, sizeof(w.tok2), "%s/tok2", w.dir);
    snprintf(w.root, sizeof(w.root), "%s/root-cert.pem", w.ca);
    mkdir(w.cfg, 0755);
    snprintf(cmd, sizeof(cmd), "scripts/gen-cacerts.sh %s >/dev/null", w.ca);
    if (system(cmd) != 0)
        return -1;
    write_file(w.tokens, "node1 " TOKEN1 "\nnode2 " TOKEN2 "\n");
    write_file(w.tok1, TOKEN1 "\n");
    write_file(w.tok2, TOKEN2 "\n");
    char path[160];
    snprintf(path, sizeof(path), "%s/workloads.yaml", w.cfg);
    write_file(path, "workloads:\n"
                     "- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: "
                     "[\"10.0.0.1\"], protocol: HBONE, node: node1}\n");
    uv_loop_init(&w.loop);
    uv_timer_init(&w.loop, &w.tick);
    uv_timer_start(&w.tick, on_tick, 10, 10); /* keeps UV_RUN_ONCE returning */
    struct zt_control_opts o = {.listen = "127.0.0.1:0",
                                .config_dir = w.cfg,
                                .ca_dir = w.ca,
                                .node_tokens = w.tokens,
                                .max_conns_per_addr = per_addr,
                                .auth_timeout_ms = auth_timeout_ms};
    if (zt_control_start(&w.loop, &o, &w.cp, err, sizeof(err)) != 0) {
        fprintf(stderr, "zt_control_start: %s\n", err);
        return -1;
    }
    snprintf(w.addr, sizeof(w.addr), "127.0.0.1:%u", zt_control_port(w.cp));
    return 0;
}

static void world_stop(void)
{
    char cmd[128];
    for (int i = 0; i < w.n_fds; i++)
        close(w.fds[i]);
    for (int i = 0; i < w.n_watches; i++)
        xds_stop(w.watches[i]);
    if (w.raw)
        raw_call_free(w.raw);
    w.n_fds = w.n_watches = 0;
    w.raw = NULL;
    zt_control_stop(w.cp);
    w.cp = NULL;
    uv_close((uv_handle_t *)&w.tick, NULL);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w.loop) != 0)
        fprintf(stderr, "loop not empty at the end\n");
    snprintf(cmd, sizeof(cmd), "rm -rf %s", w.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", w.dir);
}

/* A counter or gauge from the monitoring text, or -1. */
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

static long conns(void)
{
    return metric("ztunnel_control_connections");
}

/* ---- raw TCP clients ---- */

/* A non-blocking TCP connection from src_ip to the control plane. */
static int raw_connect(const char *src_ip)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    inet_pton(AF_INET, src_ip, &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    dst.sin_port = htons(zt_control_port(w.cp));
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)) {
        close(fd);
        return -1;
    }
    if (w.n_fds < (int)(sizeof(w.fds) / sizeof(w.fds[0])))
        w.fds[w.n_fds++] = fd; /* closed by world_stop */
    return fd;
}

/* True once the server has closed the connection (EOF or reset). */
static bool closed_by_peer(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* ---- xDS clients (ours) ---- */

struct xds_watch {
    struct zt_xds_client *c;
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

static int xds_start(struct xds_watch *x, const char *token_path, const char *node)
{
    const char *meta[] = {"NODE_NAME", node};
    struct zt_xds_client_opts o = {.address = w.addr,
                                   .root_ca = w.root,
                                   .token_path = token_path,
                                   .cluster_id = "Kubernetes",
                                   .node_id = "ztunnel~10.0.0.9~ztunnel.istio-system~istio-system."
                                              "svc.cluster.local",
                                   .node_meta = meta,
                                   .n_node_meta = 1};
    char err[256];
    int rc = zt_xds_client_start(&w.loop, &o, NULL, &x_ops, x, &x->c, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "zt_xds_client_start: %s\n", err);
    else
        w.watches[w.n_watches++] = x;
    return rc;
}

static void xds_stop(struct xds_watch *x)
{
    zt_xds_client_stop(x->c);
    x->c = NULL;
    zt_state_unref(x->last);
    x->last = NULL;
}

/* ---- a raw gRPC client: one ADS call, messages of our choosing ---- */

struct raw_call {
    SSL_CTX *ctx;
    struct zt_h2conn *h2;
    struct zt_grpc_call *call;
    bool open, closed, conn_closed;
    int status;
    int messages; /* responses received */
};

static void rc_on_message(void *ud, const uint8_t *msg, size_t len)
{
    struct raw_call *r = ud;
    r->messages++;
}

static void rc_on_close(void *ud, int status, const char *message)
{
    struct raw_call *r = ud;
    r->closed = true;
    r->status = status;
    r->call = NULL;
}

static const struct zt_grpc_call_ops rc_call_ops = {.on_message = rc_on_message,
                                                    .on_close = rc_on_close};

static int rc_on_ready(struct zt_h2conn *c, void *ud)
{
    struct raw_call *r = ud;
    r->open = true;
    return 0;
}

static void rc_on_closed(struct zt_h2conn *c, void *ud, int error)
{
    struct raw_call *r = ud;
    r->conn_closed = true;
    r->h2 = NULL;
}

static const struct zt_h2conn_ops rc_conn_ops = {.on_ready = rc_on_ready,
                                                 .on_closed = rc_on_closed};

/* Connects and opens the ADS call with node1's token. */
static int raw_call_open(struct raw_call *r)
{
    static const struct zt_h2_settings s = {.stream_window = 4u << 20,
                                            .connection_window = 16u << 20,
                                            .max_frame_size = 1u << 14,
                                            .max_header_list = 64u << 10};
    char err[256];
    memset(r, 0, sizeof(*r));
    w.raw = r;
    r->ctx = zt_tls_server_auth_ctx_new(w.root, err, sizeof(err));
    if (!r->ctx)
        return -1;
    int fd = raw_connect("127.0.0.1");
    if (fd < 0)
        return -1;
    w.n_fds--; /* the connection owns it */
    r->h2 = zt_h2conn_new(&w.loop, fd, r->ctx, ZT_H2_CLIENT, &s, &rc_conn_ops, r);
    if (!r->h2 || zt_tls_expect_host(zt_h2conn_ssl(r->h2), "127.0.0.1") < 0)
        return -1;
    LOOP_WAIT(r->open || r->conn_closed);
    if (!r->open)
        return -1;
    const char *meta[] = {"authorization", "Bearer " TOKEN1};
    r->call = zt_grpc_call_start(r->h2, w.addr,
                                 "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
                                 "DeltaAggregatedResources",
                                 meta, 1, 64u << 20, &rc_call_ops, r);
    return r->call ? 0 : -1;
}

/* Sends a DeltaDiscoveryRequest for type_url whose response_nonce is
 * nonce_len bytes of 'x' (a cheap way to make a big, valid request). */
static void raw_call_send(struct raw_call *r, const char *type_url, size_t nonce_len)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest req =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    char *nonce = malloc(nonce_len + 1);
    if (!nonce)
        abort();
    memset(nonce, 'x', nonce_len);
    nonce[nonce_len] = 0;
    req.type_url = (char *)type_url;
    req.response_nonce = nonce;
    size_t len = envoy__service__discovery__v3__delta_discovery_request__get_packed_size(&req);
    uint8_t *buf = malloc(len);
    if (!buf)
        abort();
    envoy__service__discovery__v3__delta_discovery_request__pack(&req, buf);
    zt_grpc_call_send(r->call, buf, len);
    free(buf);
    free(nonce);
}

static void raw_call_free(struct raw_call *r)
{
    w.raw = NULL;
    if (r->call)
        zt_grpc_call_cancel(r->call);
    if (r->h2)
        zt_h2conn_close(r->h2, 0);
    LOOP_WAIT(!r->h2);
    SSL_CTX_free(r->ctx);
}

/* Closes a raw connection early. */
static void raw_close(int fd)
{
    for (int i = 0; i < w.n_fds; i++)
        if (w.fds[i] == fd)
            w.fds[i] = w.fds[--w.n_fds];
    close(fd);
}

/* ---- tests ---- */

/* One address may hold max_conns_per_addr connections; the next is closed
 * at once, another address is not affected, and a freed slot is usable. */
static void per_address_cap(void)
{
    int a[4];
    for (int i = 0; i < 3; i++)
        CHECK((a[i] = raw_connect("127.0.0.1")) >= 0);
    LOOP_WAIT(conns() == 3);
    CHECK_EQ_INT(conns(), 3);
    CHECK((a[3] = raw_connect("127.0.0.1")) >= 0);
    LOOP_WAIT(closed_by_peer(a[3]));
    CHECK(closed_by_peer(a[3]));
    CHECK_EQ_INT(conns(), 3);
    for (int i = 0; i < 3; i++)
        CHECK(!closed_by_peer(a[i]));
    /* Positive controls: another address is accepted; a freed slot is too. */
    CHECK(raw_connect("127.0.0.2") >= 0);
    LOOP_WAIT(conns() == 4);
    CHECK_EQ_INT(conns(), 4);
    raw_close(a[0]);
    LOOP_WAIT(conns() == 3);
    CHECK_EQ_INT(conns(), 3);
    int again = raw_connect("127.0.0.1");
    CHECK(again >= 0);
    LOOP_WAIT(conns() == 4);
    CHECK_EQ_INT(conns(), 4);
    CHECK(!closed_by_peer(again));
}

/* A connection that opens no authenticated stream in time is closed; one
 * carrying an xDS stream (opened before it) stays. */
static void unauthenticated_deadline(void)
{
    static struct xds_watch x;
    memset(&x, 0, sizeof(x));
    CHECK_EQ_INT(xds_start(&x, w.tok1, "node1"), 0);
    LOOP_WAIT(x.ready);
    CHECK(x.ready);
    CHECK_EQ_INT(conns(), 1);
    int fd = raw_connect("127.0.0.1");
    CHECK(fd >= 0);
    LOOP_WAIT(conns() == 2);
    CHECK_EQ_INT(conns(), 2);
    LOOP_WAIT(closed_by_peer(fd));
    CHECK(closed_by_peer(fd));
    LOOP_WAIT(conns() == 1);
    CHECK_EQ_INT(conns(), 1);
    CHECK_EQ_INT(metric("pilot_xds"), 1);
}

/* ADS requests are capped at ZT_CONTROL_ADS_REQUEST_MAX: a 1 MiB request is
 * served, one over the cap ends the stream with RESOURCE_EXHAUSTED. */
static void ads_request_cap(void)
{
    static struct raw_call r;
    CHECK_EQ_INT(raw_call_open(&r), 0);
    raw_call_send(&r, "type.googleapis.com/not.served", 1u << 20);
    raw_call_send(&r, zt_ads_type_url(ZT_ADS_ADDRESS), 0);
    LOOP_WAIT(r.messages == 1 || r.closed);
    CHECK_EQ_INT(r.messages, 1);
    CHECK(!r.closed);
    raw_call_send(&r, "type.googleapis.com/not.served", ZT_CONTROL_ADS_REQUEST_MAX + 1);
    LOOP_WAIT(r.closed);
    CHECK(r.closed);
    CHECK_EQ_INT(r.status, ZT_GRPC_RESOURCE_EXHAUSTED);
}

/* A token removed from the file ends its node's xDS stream; the other
 * node's stream goes on and still receives changes. */
static void revoked_token_ends_streams(void)
{
    static struct xds_watch x1, x2;
    memset(&x1, 0, sizeof(x1));
    memset(&x2, 0, sizeof(x2));
    CHECK_EQ_INT(xds_start(&x1, w.tok1, "node1"), 0);
    CHECK_EQ_INT(xds_start(&x2, w.tok2, "node2"), 0);
    LOOP_WAIT(x1.ready && x2.ready && metric("pilot_xds") == 2);
    CHECK(x1.ready && x2.ready);
    CHECK_EQ_INT(metric("pilot_xds"), 2);
    write_file(w.tokens, "node2 " TOKEN2 "\n");
    LOOP_WAIT(metric("pilot_xds") == 1);
    CHECK_EQ_INT(metric("pilot_xds"), 1);
    /* node1 comes back and is refused. */
    LOOP_WAIT(metric("ztunnel_control_xds_unauthenticated_total") >= 1);
    CHECK(metric("ztunnel_control_xds_unauthenticated_total") >= 1);
    /* node2 still gets changes; node1 does not. */
    int p1 = x1.publishes;
    char path[160];
    snprintf(path, sizeof(path), "%s/more.yaml", w.cfg);
    write_file(path, "workloads:\n"
                     "- {uid: d, name: d, namespace: default, serviceAccount: sa-d, workloadIps: "
                     "[\"10.0.0.3\"], protocol: HBONE, node: node2}\n");
    LOOP_WAIT(x2.last && zt_state_workload_count(x2.last) == 2);
    CHECK(x2.last && zt_state_workload_count(x2.last) == 2);
    CHECK_EQ_INT(x1.publishes, p1);
    CHECK_EQ_INT(metric("pilot_xds"), 1);
}

/* Lines of the file at fd (read from the start) that contain `what`. */
static int count_lines(int fd, const char *what)
{
    char line[1024];
    int n = 0;
    FILE *f = fdopen(dup(fd), "r");
    if (!f)
        return -1;
    rewind(f);
    while (fgets(line, sizeof(line), f))
        if (strstr(line, what))
            n++;
    fclose(f);
    return n;
}

/* Out of file descriptors: the control plane pauses accepting instead of
 * spinning on the readable listener and logging each failed accept; once
 * descriptors are free again the waiting connection is accepted. */
static void accept_backs_off_on_emfile(void)
{
    enum { FILL_MAX = 4096 };
    static int fill[FILL_MAX];
    int n_fill = 0;
    char logpath[128];
    int fd = raw_connect("127.0.0.1");
    CHECK(fd >= 0);
    snprintf(logpath, sizeof(logpath), "%s/log", w.dir);
    int logfd = open(logpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(logfd >= 0);
    int saved_err = dup(STDERR_FILENO);
    CHECK(saved_err >= 0);
    /* Keep the table small so that filling it is cheap. */
    struct rlimit saved, low;
    CHECK_EQ_INT(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = 512;
    CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &low), 0);
    dup2(logfd, STDERR_FILENO);
    while (n_fill < FILL_MAX) {
        int d = dup(logfd);
        if (d < 0)
            break;
        fill[n_fill++] = d;
    }
    int fill_errno = errno;
    loop_for(500);
    long during = conns();
    for (int i = 0; i < n_fill; i++)
        close(fill[i]);
    LOOP_WAIT(conns() == 1);
    dup2(saved_err, STDERR_FILENO);
    close(saved_err);
    setrlimit(RLIMIT_NOFILE, &saved);
    int lines = count_lines(logfd, "accept");
    close(logfd);
    fprintf(stderr, "  %d log line(s) about accepting while out of descriptors\n", lines);
    CHECK_EQ_INT(fill_errno, EMFILE);
    CHECK_EQ_INT(during, 0);
    CHECK(lines >= 1); /* it was reported... */
    CHECK(lines <= 2); /* ...once, not per loop iteration */
    /* Retries back off: a handful in half a second, not one per iteration. */
    long pauses = metric("ztunnel_control_accept_pauses_total");
    fprintf(stderr, "  %ld pause(s)\n", pauses);
    CHECK(pauses >= 1 && pauses <= 20);
    CHECK_EQ_INT(conns(), 1); /* accepting resumed */
    CHECK(!closed_by_peer(fd));
}

/* Runs body in a fresh control plane, stopped whatever the body did. */
#define IN_WORLD(name, body, per_addr, auth_timeout_ms)                                            \
    static void name(void)                                                                         \
    {                                                                                              \
        if (world_start(per_addr, auth_timeout_ms) != 0) {                                         \
            zt_test_cur_failed = 1;                                                                \
            return;                                                                                \
        }                                                                                          \
        body();                                                                                    \
        world_stop();                                                                              \
    }

IN_WORLD(test_per_address_cap, per_address_cap, 3, 60000)
IN_WORLD(test_unauthenticated_deadline, unauthenticated_deadline, 0, 300)
IN_WORLD(test_ads_request_cap, ads_request_cap, 0, 60000)
IN_WORLD(test_revoked_token_ends_streams, revoked_token_ends_streams, 0, 60000)
IN_WORLD(test_accept_backs_off_on_emfile, accept_backs_off_on_emfile, 0, 60000)

int main(void)
{
    if (access("scripts/gen-cacerts.sh", X_OK) != 0) {
        fprintf(stderr, "skipped: run from the repository root\n");
        return TEST_REPORT();
    }
    zt_log_set_level(ZT_LOG_WARN);
    RUN(test_per_address_cap);
    RUN(test_unauthenticated_deadline);
    RUN(test_ads_request_cap);
    RUN(test_revoked_token_ends_streams);
    RUN(test_accept_backs_off_on_emfile);
    return TEST_REPORT();
}
