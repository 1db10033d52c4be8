/* The admin, stats and readiness servers, exercised over real loopback
 * HTTP/1.1 with ephemeral ports. */
#include "test.h"

#include "admin/admin.h"
#include "base/err.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* ---------------------------------------------------------------- fixture */

struct fx {
    atomic_int quits;
    atomic_int dumps;
    atomic_bool is_ready;
    atomic_bool dump_fails;
    const char *metrics_text;
};

static char *fx_config_dump(void *ud)
{
    struct fx *f = ud;
    atomic_fetch_add(&f->dumps, 1);
    if (atomic_load(&f->dump_fails))
        return NULL;
    char *s = NULL;
    if (asprintf(&s, "{\"dumps\": %d}", atomic_load(&f->dumps)) < 0)
        abort();
    return s;
}

static void fx_metrics(void *ud, struct zt_buf *out)
{
    struct fx *f = ud;
    zt_buf_append(out, f->metrics_text, strlen(f->metrics_text));
}

static bool fx_ready(void *ud, char *why, size_t cap)
{
    struct fx *f = ud;
    if (atomic_load(&f->is_ready))
        return true;
    snprintf(why, cap, "state manager, workload proxy manager");
    return false;
}

static void fx_quit(void *ud)
{
    struct fx *f = ud;
    atomic_fetch_add(&f->quits, 1);
}

static const struct zt_admin_ops fx_ops = {
    .config_dump = fx_config_dump,
    .metrics = fx_metrics,
    .ready = fx_ready,
    .quit = fx_quit,
};

static void fx_init(struct fx *f)
{
    atomic_init(&f->quits, 0);
    atomic_init(&f->dumps, 0);
    atomic_init(&f->is_ready, false);
    atomic_init(&f->dump_fails, false);
    f->metrics_text = "# TYPE istio_build gauge\nistio_build{component=\"ztunnel\",tag=\"t\"} 1\n";
}

static struct zt_admin *fx_start(struct fx *f, unsigned timeout_s)
{
    struct zt_admin_opts o = {.conn_timeout_s = timeout_s};
    struct zt_admin *a = NULL;
    char err[256];
    int rc = zt_admin_start(&o, &fx_ops, f, &a, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "zt_admin_start: %s (%s)\n", err, zt_strerror(rc));
        return NULL;
    }
    return a;
}

/* ---------------------------------------------------------------- client */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connects to 127.0.0.1:port from source address src (NULL: any). */
static int dial_from(const char *src, uint16_t port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval tv = {.tv_sec = 5};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (src != NULL) {
        struct sockaddr_in me = {.sin_family = AF_INET};
        inet_pton(AF_INET, src, &me.sin_addr);
        if (bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0) {
            close(fd);
            return -1;
        }
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int dial(uint16_t port)
{
    return dial_from(NULL, port);
}

struct resp {
    int status; /* 0: no response (closed or timed out) */
    char *raw;  /* whole response, NUL-terminated */
    size_t len;
    const char *body;
    size_t body_len;
};

static void resp_free(struct resp *r)
{
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

/* The value of header `name` (case-insensitive) copied into buf, or "". */
static const char *resp_header(const struct resp *r, const char *name, char *buf, size_t cap)
{
    size_t n = strlen(name);
    buf[0] = '\0';
    if (r->raw == NULL)
        return buf;
    for (const char *p = strstr(r->raw, "\r\n"); p != NULL && p < r->body;
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t l = e != NULL ? (size_t)(e - v) : strlen(v);
            if (l >= cap)
                l = cap - 1;
            memcpy(buf, v, l);
            buf[l] = '\0';
            break;
        }
    }
    return buf;
}

/* Reads a whole response (the request asked for Connection: close). */
static void read_resp(int fd, struct resp *r)
{
    size_t cap = 4096;
    memset(r, 0, sizeof(*r));
    r->raw = malloc(cap);
    for (;;) {
        if (r->len + 1 == cap)
            r->raw = realloc(r->raw, cap *= 2);
        ssize_t n = recv(fd, r->raw + r->len, cap - r->len - 1, 0);
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    r->raw[r->len] = '\0';
    if (sscanf(r->raw, "HTTP/1.%*d %d", &r->status) != 1)
        r->status = 0;
    const char *h = strstr(r->raw, "\r\n\r\n");
    r->body = h != NULL ? h + 4 : r->raw + r->len;
    r->body_len = (size_t)(r->raw + r->len - r->body);
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server may refuse early; the caller checks the reply */
        p += w;
        n -= (size_t)w;
    }
}

/* One request from source address src (NULL: any); extra_headers is "" or
 * "Name: value\r\n..." lines. */
static void http_from(const char *src, uint16_t port, const char *method, const char *path,
                      const char *extra_headers, struct resp *r)
{
    char req[1024];
    int fd = dial_from(src, port);
    memset(r, 0, sizeof(*r));
    if (fd < 0)
        return;
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n",
             method, path, extra_headers);
    send_all(fd, req, strlen(req));
    read_resp(fd, r);
    close(fd);
}

static void http(uint16_t port, const char *method, const char *path, const char *extra_headers,
                 struct resp *r)
{
    http_from(NULL, port, method, path, extra_headers, r);
}

/* Sends `raw` (a whole request) on a new connection and reads the reply. */
static void http_raw(uint16_t port, const char *raw, struct resp *r)
{
    int fd = dial(port);
    memset(r, 0, sizeof(*r));
    if (fd < 0)
        return;
    send_all(fd, raw, strlen(raw));
    read_resp(fd, r);
    close(fd);
}

/* POST path with the given Host line ("" for none) and extra header lines. */
static void post_host(uint16_t port, const char *path, const char *host_line, const char *extra,
                      struct resp *r)
{
    char req[512];
    snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\n%s%sConnection: close\r\n\r\n", path, host_line,
             extra);
    http_raw(port, req, r);
}

static bool body_is(const struct resp *r, const char *s)
{
    return r->body != NULL && r->body_len == strlen(s) && memcmp(r->body, s, r->body_len) == 0;
}

#define PORT_ADMIN(a) zt_admin_port(a, ZT_ADMIN_SRV_ADMIN)
#define PORT_STATS(a) zt_admin_port(a, ZT_ADMIN_SRV_STATS)
#define PORT_READY(a) zt_admin_port(a, ZT_ADMIN_SRV_READY)

/* ---------------------------------------------------------------- tests */

static void test_admin_routes(void)
{
    struct fx f;
    struct resp r;
    char h[128];
    fx_init(&f);
    struct zt_admin *a = fx_start(&f, 0);
    CHECK(a != NULL);
    uint16_t p = PORT_ADMIN(a);
    CHECK(p != 0 && PORT_STATS(a) != 0 && PORT_READY(a) != 0);
    CHECK(p != PORT_STATS(a) && PORT_STATS(a) != PORT_READY(a));

    http(p, "GET", "/", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(resp_header(&r, "Content-Type", h, sizeof(h)), "text/html; charset=utf-8");
    CHECK(strstr(r.body, "/config_dump") != NULL && strstr(r.body, "/quitquitquit") != NULL);
    resp_free(&r);

    /* /config_dump: any method, the op's JSON verbatim. */
    http(p, "GET", "/config_dump", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(resp_header(&r, "Content-Type", h, sizeof(h)), "application/json");
    CHECK(body_is(&r, "{\"dumps\": 1}"));
    resp_free(&r);
    http(p, "POST", "/config_dump", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(body_is(&r, "{\"dumps\": 2}"));
    resp_free(&r);
    atomic_store(&f.dump_fails, true);
    http(p, "GET", "/config_dump", "", &r);
    CHECK_EQ_INT(r.status, 500);
    resp_free(&r);

    http(p, "GET", "/nope", "", &r);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    http(p, "GET", "/config_dump/x", "", &r);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);

    /* Wrong methods: 405 with an Allow header and help, no side effect. */
    http(p, "GET", "/logging", "", &r);
    CHECK_EQ_INT(r.status, 405);
    CHECK_EQ_STR(resp_header(&r, "Allow", h, sizeof(h)), "POST");
    CHECK(strstr(r.body, "usage") != NULL);
    resp_free(&r);
    http(p, "GET", "/quitquitquit", "", &r);
    CHECK_EQ_INT(r.status, 405);
    CHECK_EQ_INT(atomic_load(&f.quits), 0);
    resp_free(&r);

    /* POST /quitquitquit: reply, then quit once per request. */
    http(p, "POST", "/quitquitquit", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(body_is(&r, "shutdown now\n"));
    CHECK_EQ_INT(atomic_load(&f.quits), 1);
    resp_free(&r);
    http(p, "POST", "/quitquitquit", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(atomic_load(&f.quits), 2);
    resp_free(&r);

    /* The metrics and readiness paths are not served on the admin port. */
    http(p, "GET", "/metrics", "", &r);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    zt_admin_stop(a);
}

static void test_logging_levels(void)
{
    struct fx f;
    struct resp r;
    fx_init(&f);
    enum zt_log_level saved = zt_log_get_level();
    zt_log_set_level(ZT_LOG_WARN);
    struct zt_admin *a = fx_start(&f, 0);
    CHECK(a != NULL);
    uint16_t p = PORT_ADMIN(a);

    http(p, "POST", "/logging", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(body_is(&r, "current log level is warn\n"));
    resp_free(&r);

    http(p, "POST", "/logging?level=debug", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(body_is(&r, "current log level is debug\n"));
    CHECK_EQ_INT(zt_log_get_level(), ZT_LOG_DEBUG);
    resp_free(&r);

    /* Per-target directives: one global level, the last one wins, and the
     * reply says so. */
    http(p, "POST", "/logging?level=access=error,proxy=trace", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(zt_log_get_level(), ZT_LOG_TRACE);
    CHECK(strstr(r.body, "not supported") != NULL);
    CHECK(strstr(r.body, "current log level is trace\n") != NULL);
    resp_free(&r);

    /* Bad levels: 400 with help, level unchanged. */
    const char *bad[] = {"/logging?level=loud",
                         "/logging?level=",
                         "/logging?level",
                         "/logging?level=a=b=c",
                         "/logging?level=info,,debug",
                         "/logging?level==info",
                         "/logging?verbose=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http(p, "POST", bad[i], "", &r);
        if (r.status != 400)
            fprintf(stderr, "  %s -> %d\n", bad[i], r.status);
        CHECK_EQ_INT(r.status, 400);
        CHECK(strstr(r.body, "usage") != NULL);
        CHECK_EQ_INT(zt_log_get_level(), ZT_LOG_TRACE);
        resp_free(&r);
    }

    /* Mixed case is accepted, like zt_log_level_parse. */
    http(p, "POST", "/logging?level=Info", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(zt_log_get_level(), ZT_LOG_INFO);
    resp_free(&r);

    /* reset: back to the level at start (warn). */
    http(p, "POST", "/logging?reset", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(body_is(&r, "current log level is warn\n"));
    CHECK_EQ_INT(zt_log_get_level(), ZT_LOG_WARN);
    resp_free(&r);

    zt_admin_stop(a);
    zt_log_set_level(saved);
}

/* DNS rebinding and browser CSRF: the admin server answers only requests
 * that name it by a loopback name in Host and carry no Origin. Each refusal
 * (403, no side effect) has its accepted twin. */
static void test_admin_host_and_origin(void)
{
    struct fx f;
    struct resp r;
    char host[64];
    fx_init(&f);
    enum zt_log_level saved = zt_log_get_level();
    zt_log_set_level(ZT_LOG_WARN);
    struct zt_admin *a = fx_start(&f, 0);
    CHECK(a != NULL);
    uint16_t p = PORT_ADMIN(a);

    const char *bad_hosts[] = {
        "Host: evil.example\r\n",
        "Host: evil.example:15000\r\n",
        "Host: localhost.evil.example\r\n",
        "Host: 127.0.0.1.nip.io\r\n",
        "Host: 127.0.0.2\r\n",
        "Host: 10.0.0.1:15000\r\n",
        "Host: [::2]\r\n",
        "Host: localhost:\r\n",
        "Host: localhost:15000x\r\n",
        "Host: localhost:123456\r\n",
        "Host: [::1\r\n",
        "Host: localhost.\r\n",
        "Host: \r\n",
        "Host: localhost\r\nHost: evil.example\r\n",
    };
    for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
        post_host(p, "/quitquitquit", bad_hosts[i], "", &r);
        if (r.status != 403 && r.status != 400)
            fprintf(stderr, "  %s-> %d\n", bad_hosts[i], r.status);
        CHECK(r.status == 403 || r.status == 400);
        CHECK_EQ_INT(atomic_load(&f.quits), 0);
        resp_free(&r);
        post_host(p, "/logging?level=debug", bad_hosts[i], "", &r);
        CHECK(r.status == 403 || r.status == 400);
        CHECK_EQ_INT(zt_log_get_level(), ZT_LOG_WARN);
        resp_free(&r);
    }
    /* No Host at all (HTTP/1.0 allows that): refused too. */
    http_raw(p, "POST /quitquitquit HTTP/1.0\r\n\r\n", &r);
    CHECK_EQ_INT(r.status, 403);
    CHECK_EQ_INT(atomic_load(&f.quits), 0);
    resp_free(&r);

    /* An Origin header, even a loopback one, is a browser: refused. */
    const char *origins[] = {"Origin: http://evil.example\r\n", "Origin: null\r\n",
                             "Origin: http://localhost:15000\r\n"};
    for (size_t i = 0; i < sizeof(origins) / sizeof(origins[0]); i++) {
        post_host(p, "/quitquitquit", "Host: localhost\r\n", origins[i], &r);
        CHECK_EQ_INT(r.status, 403);
        CHECK_EQ_INT(atomic_load(&f.quits), 0);
        resp_free(&r);
        post_host(p, "/logging?level=debug", "Host: 127.0.0.1\r\n", origins[i], &r);
        CHECK_EQ_INT(r.status, 403);
        CHECK_EQ_INT(zt_log_get_level(), ZT_LOG_WARN);
        resp_free(&r);
    }

    /* Accepted: each loopback name, with or without a port, any case. */
    snprintf(host, sizeof(host), "Host: 127.0.0.1:%u\r\n", (unsigned)p);
    const char *good_hosts[] = {"Host: localhost\r\n",
                                "Host: localhost:15000\r\n",
                                "Host: LocalHost\r\n",
                                "Host: 127.0.0.1\r\n",
                                host,
                                "Host: [::1]\r\n",
                                "Host: [::1]:15000\r\n"};
    int quits = 0;
    for (size_t i = 0; i < sizeof(good_hosts) / sizeof(good_hosts[0]); i++) {
        post_host(p, "/quitquitquit", good_hosts[i], "", &r);
        if (r.status != 200)
            fprintf(stderr, "  %s-> %d\n", good_hosts[i], r.status);
        CHECK_EQ_INT(r.status, 200);
        CHECK_EQ_INT(atomic_load(&f.quits), ++quits);
        resp_free(&r);
        zt_log_set_level(ZT_LOG_WARN);
        post_host(p, "/logging?level=debug", good_hosts[i], "", &r);
        CHECK_EQ_INT(r.status, 200);
        CHECK_EQ_INT(zt_log_get_level(), ZT_LOG_DEBUG);
        resp_free(&r);
    }
    zt_admin_stop(a);
    zt_log_set_level(saved);
}

/* Opens a keep-alive connection from src to port and has one request
 * answered on it, so the server has surely accepted it; returns the fd (the
 * connection stays open, idle) or -1 if the server refused or closed it. */
static int hold_from(const char *src, uint16_t port)
{
    int fd = dial_from(src, port);
    if (fd < 0)
        return -1;
    const char *req = "GET /healthz/ready HTTP/1.1\r\nHost: localhost\r\n\r\n";
    send_all(fd, req, strlen(req));
    /* The reply is small: read until its body ("ready\n") has arrived. */
    char buf[1024];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = 0;
        if (strstr(buf, "\r\n\r\nready\n") != NULL)
            return fd;
    }
    close(fd);
    return -1;
}

/* True once the server has closed fd (EOF or reset); waits for it. */
static bool closed_by_server(int fd)
{
    char c;
    return recv(fd, &c, 1, 0) <= 0;
}

/* A few client addresses, each holding all the connections it may, cannot
 * keep a newcomer out: the server keeps a fair share per address and makes
 * room by closing the oldest connection of the address holding the most. */
static void test_fair_share_against_few_addresses(void)
{
    struct fx f;
    struct resp r;
    fx_init(&f);
    atomic_store(&f.is_ready, true);
    /* 4 per address, 8 in all; a long idle timeout so nothing is freed by
     * time during the test. */
    struct zt_admin_opts o = {.conn_limit = 4, .conn_timeout_s = 60};
    struct zt_admin *a = NULL;
    char err[256];
    CHECK_EQ_INT(zt_admin_start(&o, &fx_ops, &f, &a, err, sizeof(err)), 0);
    uint16_t p = PORT_READY(a);

    const char *srcs[] = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
    int fds[4][5];
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < 5; i++) /* one more than the per-address cap */
            fds[s][i] = hold_from(srcs[s], p);
    /* The fifth of each address was refused, and the later addresses got
     * in: the first addresses lost their oldest connections to them. */
    for (int s = 0; s < 4; s++)
        CHECK(fds[s][4] < 0);
    CHECK(fds[3][0] >= 0);
    /* Each address now holds exactly its fair share, 8 / 4: the server has
     * already shut down the connections it took back (before answering the
     * connection that took the place), so their end of stream is there. */
    for (int s = 0; s < 4; s++) {
        int open_now = 0;
        for (int i = 0; i < 4; i++) {
            if (fds[s][i] < 0)
                continue;
            struct pollfd pfd = {.fd = fds[s][i], .events = POLLIN};
            if (poll(&pfd, 1, 0) == 0 || !closed_by_server(fds[s][i]))
                open_now++;
        }
        if (open_now != 2)
            fprintf(stderr, "  %s holds %d\n", srcs[s], open_now);
        CHECK_EQ_INT(open_now, 2);
    }

    /* Newcomers from other addresses are answered at once. */
    http_from("127.0.0.1", p, "GET", "/healthz/ready", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    http_from("127.0.0.6", p, "GET", "/healthz/ready", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < 5; i++)
            if (fds[s][i] >= 0)
                close(fds[s][i]);
    zt_admin_stop(a);
}

static bool gunzip_eq(const char *gz, size_t len, const char *want)
{
    char out[4096];
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return false;
    zs.next_in = (Bytef *)gz;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = sizeof(out);
    int rc = inflate(&zs, Z_FINISH);
    size_t n = zs.total_out;
    inflateEnd(&zs);
    return rc == Z_STREAM_END && n == strlen(want) && memcmp(out, want, n) == 0;
}

static void test_stats_routes(void)
{
    struct fx f;
    struct resp r;
    char h[128];
    char big[2048];
    fx_init(&f);
    struct zt_admin *a = fx_start(&f, 0);
    CHECK(a != NULL);
    uint16_t p = PORT_STATS(a);
    const char *paths[] = {"/metrics", "/stats/prometheus"};
    for (int i = 0; i < 2; i++) {
        http(p, "GET", paths[i], "", &r);
        CHECK_EQ_INT(r.status, 200);
        CHECK_EQ_STR(resp_header(&r, "Content-Type", h, sizeof(h)),
                     "text/plain; version=0.0.4; charset=utf-8");
        CHECK(body_is(&r, f.metrics_text));
        resp_free(&r);
        http(p, "POST", paths[i], "", &r);
        CHECK_EQ_INT(r.status, 405);
        resp_free(&r);
    }
    http(p, "GET", "/", "", &r);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    http(p, "GET", "/config_dump", "", &r);
    CHECK_EQ_INT(r.status, 404);
    CHECK_EQ_INT(atomic_load(&f.dumps), 0);
    resp_free(&r);

    /* gzip when asked for and worth it; the body round-trips. */
    size_t n = 0;
    while (n + 64 < sizeof(big))
        n += (size_t)snprintf(big + n, sizeof(big) - n, "x_total{i=\"%zu\"} %zu\n", n, n);
    f.metrics_text = big;
    http(p, "GET", "/metrics", "Accept-Encoding: deflate, gzip;q=0.5\r\n", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(resp_header(&r, "Content-Encoding", h, sizeof(h)), "gzip");
    CHECK(r.body_len < strlen(big));
    CHECK(gunzip_eq(r.body, r.body_len, big));
    resp_free(&r);
    http(p, "GET", "/metrics", "Accept-Encoding: gzip;q=0, br\r\n", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(resp_header(&r, "Content-Encoding", h, sizeof(h)), "");
    CHECK(body_is(&r, big));
    resp_free(&r);
    zt_admin_stop(a);
}

static void test_readiness(void)
{
    struct fx f;
    struct resp r;
    fx_init(&f);
    struct zt_admin *a = fx_start(&f, 0);
    CHECK(a != NULL);
    uint16_t p = PORT_READY(a);
    http(p, "GET", "/healthz/ready", "", &r);
    CHECK_EQ_INT(r.status, 500);
    CHECK(body_is(&r, "not ready, pending: {state manager, workload proxy manager}\n"));
    resp_free(&r);
    atomic_store(&f.is_ready, true);
    http(p, "GET", "/healthz/ready", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(body_is(&r, "ready\n"));
    resp_free(&r);
    http(p, "POST", "/healthz/ready", "", &r);
    CHECK_EQ_INT(r.status, 405);
    resp_free(&r);
    http(p, "GET", "/healthz", "", &r);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    zt_admin_stop(a);
}

/* stats_only: one port with metrics and readiness (the control plane's
 * monitoring port); the two other servers are not started. */
static void test_stats_only(void)
{
    struct fx f;
    struct resp r;
    fx_init(&f);
    struct zt_admin_opts o = {.stats_addr = "127.0.0.1", .stats_only = true};
    struct zt_admin *a = NULL;
    char err[256];
    CHECK_EQ_INT(zt_admin_start(&o, &fx_ops, &f, &a, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_admin_port(a, ZT_ADMIN_SRV_ADMIN), 0);
    CHECK_EQ_INT(zt_admin_port(a, ZT_ADMIN_SRV_READY), 0);
    uint16_t p = PORT_STATS(a);
    CHECK(p != 0);
    http(p, "GET", "/ready", "", &r);
    CHECK_EQ_INT(r.status, 500);
    resp_free(&r);
    atomic_store(&f.is_ready, true);
    http(p, "GET", "/ready", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    http(p, "GET", "/healthz/ready", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    http(p, "GET", "/metrics", "", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(body_is(&r, f.metrics_text));
    resp_free(&r);
    zt_admin_stop(a);

    /* Without it, the stats port has no readiness route. */
    a = fx_start(&f, 0);
    CHECK(a != NULL);
    http(PORT_STATS(a), "GET", "/ready", "", &r);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    zt_admin_stop(a);
}

/* Sends head (and then body_len filler bytes) and reads the reply. */
static void send_big(uint16_t port, const char *head, size_t body_len, struct resp *r)
{
    int fd = dial(port);
    memset(r, 0, sizeof(*r));
    if (fd < 0)
        return;
    send_all(fd, head, strlen(head));
    if (body_len > 0) {
        char *fill = malloc(body_len);
        memset(fill, 'a', body_len);
        send_all(fd, fill, body_len);
        free(fill);
    }
    read_resp(fd, r);
    close(fd);
}

static void test_huge_requests_refused(void)
{
    struct fx f;
    struct resp r;
    const size_t mib = 1024 * 1024;
    fx_init(&f);
    atomic_store(&f.is_ready, true);
    struct zt_admin *a = fx_start(&f, 0);
    CHECK(a != NULL);

    /* A 1 MiB header: refused (431) by every server. */
    char *big = malloc(mib + 256);
    int n = snprintf(big, 256, "GET /healthz/ready HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'h', mib);
    strcpy(big + n + mib, "\r\nConnection: close\r\n\r\n");
    for (int w = 0; w < 3; w++) {
        send_big(zt_admin_port(a, (enum zt_admin_server)w), big, 0, &r);
        if (r.status != 431)
            fprintf(stderr, "  server %d: status %d\n", w, r.status);
        CHECK_EQ_INT(r.status, 431);
        resp_free(&r);
    }
    free(big);

    /* A 1 MiB declared body: 413 before reading it. */
    char head[256];
    snprintf(head, sizeof(head),
             "POST /logging HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\nConnection: "
             "close\r\n\r\n",
             mib);
    send_big(PORT_ADMIN(a), head, mib, &r);
    CHECK_EQ_INT(r.status, 413);
    resp_free(&r);
    /* A chunked 1 MiB body: the connection is dropped, not served. */
    {
        int fd = dial(PORT_ADMIN(a));
        CHECK(fd >= 0);
        const char *h =
            "POST /quitquitquit HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n";
        send_all(fd, h, strlen(h));
        char chunk[8192 + 16];
        int hl = snprintf(chunk, 16, "2000\r\n");
        memset(chunk + hl, 'c', 8192);
        memcpy(chunk + hl + 8192, "\r\n", 2);
        for (int i = 0; i < 128; i++)
            send_all(fd, chunk, (size_t)hl + 8192 + 2);
        send_all(fd, "0\r\n\r\n", 5);
        read_resp(fd, &r);
        close(fd);
        CHECK(r.status != 200);
        CHECK_EQ_INT(atomic_load(&f.quits), 0);
        resp_free(&r);
    }
    /* A small body is fine. */
    snprintf(head, sizeof(head),
             "POST /logging HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: "
             "close\r\n\r\n");
    send_big(PORT_ADMIN(a), head, 5, &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);

    /* Every server still answers. */
    http(PORT_READY(a), "GET", "/healthz/ready", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    http(PORT_STATS(a), "GET", "/metrics", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    http(PORT_ADMIN(a), "GET", "/", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    zt_admin_stop(a);
}

static void test_slow_client_dropped(void)
{
    struct fx f;
    struct resp r;
    fx_init(&f);
    atomic_store(&f.is_ready, true);
    struct zt_admin *a = fx_start(&f, 1);
    CHECK(a != NULL);
    uint16_t p = PORT_READY(a);
    int silent = dial(p);
    int partial = dial(p);
    CHECK(silent >= 0 && partial >= 0);
    send_all(partial, "GET /healthz/re", 15);

    /* Others are served meanwhile: while both stalled connections are
     * still open (served before them, not after their timeout). */
    for (int i = 0; i < 5; i++) {
        http(p, "GET", "/healthz/ready", "", &r);
        CHECK_EQ_INT(r.status, 200);
        resp_free(&r);
    }
    struct pollfd open_check[2] = {{.fd = silent, .events = POLLIN},
                                   {.fd = partial, .events = POLLIN}};
    CHECK_EQ_INT(poll(open_check, 2, 0), 0);

    /* After the 1 s timeout both stalled connections are closed (the 20 s
     * bound only stops a hung test). */
    struct pollfd pfd[2] = {{.fd = silent, .events = POLLIN}, {.fd = partial, .events = POLLIN}};
    int64_t t0 = now_ms();
    int closed = 0;
    while (closed < 2 && now_ms() - t0 < 20000) {
        if (poll(pfd, 2, 200) > 0)
            for (int i = 0; i < 2; i++)
                if (pfd[i].fd >= 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                    char c;
                    ssize_t got = recv(pfd[i].fd, &c, 1, MSG_DONTWAIT);
                    if (got <= 0) {
                        closed++;
                        pfd[i].fd = -1;
                    }
                }
    }
    close(silent);
    close(partial);
    CHECK_EQ_INT(closed, 2);
    zt_admin_stop(a);
}

static void test_many_idle_connections(void)
{
    struct fx f;
    struct resp r;
    int fds[70];
    fx_init(&f);
    atomic_store(&f.is_ready, true);
    struct zt_admin *a = fx_start(&f, 0); /* 10 s timeout: idlers stay */
    CHECK(a != NULL);
    uint16_t p = PORT_READY(a);
    for (int i = 0; i < 70; i++)
        fds[i] = dial_from("127.0.0.1", p); /* the kernel completes the handshake */

    /* A new request is answered or refused, not left hanging until the
     * idlers' 10 s timeout frees a slot (the bound is that timeout's). */
    int64_t t0 = now_ms();
    http(p, "GET", "/healthz/ready", "", &r);
    int64_t took = now_ms() - t0;
    fprintf(stderr, "  with 70 idle: status %d after %lld ms\n", r.status, (long long)took);
    resp_free(&r);
    /* Another client address is still served. */
    http_from("127.0.0.2", p, "GET", "/healthz/ready", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    /* The other servers are unaffected. */
    http(PORT_STATS(a), "GET", "/metrics", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 70; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    CHECK(took < 9000);

    /* Once the idlers are gone, requests are served again. */
    int status = 0;
    t0 = now_ms();
    while (status != 200 && now_ms() - t0 < 3000) {
        http(p, "GET", "/healthz/ready", "", &r);
        status = r.status;
        resp_free(&r);
        if (status != 200)
            usleep(50 * 1000);
    }
    CHECK_EQ_INT(status, 200);
    zt_admin_stop(a);
}

static void test_start_errors_and_restart(void)
{
    struct fx f;
    struct resp r;
    char err[256];
    struct zt_admin *a = NULL, *b = NULL;
    fx_init(&f);

    struct zt_admin_opts bad = {.admin_addr = "not-an-ip"};
    CHECK_EQ_INT(zt_admin_start(&bad, &fx_ops, &f, &a, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(a == NULL);
    CHECK(strstr(err, "not-an-ip") != NULL);

    a = fx_start(&f, 0);
    CHECK(a != NULL);
    struct zt_admin_opts same = {
        .admin_port = PORT_ADMIN(a), .stats_port = PORT_STATS(a), .ready_port = PORT_READY(a)};
    /* The admin port is taken: a clear error, nothing left running. */
    int rc = zt_admin_start(&same, &fx_ops, &f, &b, err, sizeof(err));
    CHECK(rc < 0 && b == NULL);
    CHECK(strstr(err, "admin") != NULL);

    /* Connections in TIME_WAIT do not block a restart on the same ports. */
    http(same.admin_port, "GET", "/", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    zt_admin_stop(a);
    rc = zt_admin_start(&same, &fx_ops, &f, &b, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "  restart: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(PORT_ADMIN(b), same.admin_port);
    http(same.admin_port, "GET", "/", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    zt_admin_stop(b);
    zt_admin_stop(NULL);
    CHECK_EQ_STR(zt_admin_server_str(ZT_ADMIN_SRV_STATS), "stats");
    CHECK_EQ_INT(zt_admin_port(NULL, ZT_ADMIN_SRV_ADMIN), 0);
}

/* Reads one response of a kept-alive connection (by its Content-Length);
 * returns its status, 0 if none came. */
static int read_one_resp(int fd)
{
    char buf[8192];
    size_t len = 0;
    int status = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            return 0;
        len += (size_t)n;
        buf[len] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "\r\ncontent-length:");
        if (end == NULL || cl == NULL || cl > end)
            continue;
        size_t want = (size_t)(end + 4 - buf) + strtoul(cl + 17, NULL, 10);
        if (len >= want || len == sizeof(buf) - 1)
            break;
    }
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

/* A proxy being replaced releases its ports at the start of its drain: the
 * new one binds them at once, while a request on a connection the old one
 * accepted before is still answered by the old one. */
static void test_release_ports_for_successor(void)
{
    struct fx f;
    struct resp r;
    char err[256];
    struct zt_admin *b = NULL;
    fx_init(&f);
    struct zt_admin *a = fx_start(&f, 0);
    CHECK(a != NULL);
    if (a == NULL)
        return;
    struct zt_admin_opts same = {
        .admin_port = PORT_ADMIN(a), .stats_port = PORT_STATS(a), .ready_port = PORT_READY(a)};
    /* A keep-alive connection, answered once: the old daemon holds it. */
    int held = dial(same.admin_port);
    CHECK(held >= 0);
    const char first[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    send_all(held, first, sizeof(first) - 1);
    CHECK(read_one_resp(held) == 200);
    CHECK_EQ_INT(zt_admin_start(&same, &fx_ops, &f, &b, err, sizeof(err)), -EADDRINUSE);

    zt_admin_release_ports(a);
    zt_admin_release_ports(a); /* a second call is a no-op */
    int rc = zt_admin_start(&same, &fx_ops, &f, &b, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "  successor: %s\n", err);
    CHECK_EQ_INT(rc, 0);

    /* The old daemon still serves what it accepted. */
    const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    send_all(held, req, sizeof(req) - 1);
    memset(&r, 0, sizeof(r));
    read_resp(held, &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    close(held);
    /* New connections reach the successor. */
    http(same.stats_port, "GET", "/metrics", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    zt_admin_stop(a);
    http(same.admin_port, "GET", "/", "", &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    zt_admin_stop(b);
    zt_admin_release_ports(NULL);
}

int main(void)
{
    RUN(test_admin_routes);
    RUN(test_logging_levels);
    RUN(test_admin_host_and_origin);
    RUN(test_stats_routes);
    RUN(test_readiness);
    RUN(test_stats_only);
    RUN(test_huge_requests_refused);
    RUN(test_slow_client_dropped);
    RUN(test_many_idle_connections);
    RUN(test_fair_share_against_few_addresses);
    RUN(test_start_errors_and_restart);
    RUN(test_release_ports_for_successor);
    return TEST_REPORT();
}
