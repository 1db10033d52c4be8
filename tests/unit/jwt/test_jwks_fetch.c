/* The jwksUri fetcher against a local Node server (tests/unit/jwt/
 * jwks_server.js: two throwaway CAs made with the openssl CLI, HTTPS from
 * each and plain HTTP, all on 127.0.0.1): first fetch and rotation,
 * unchanged bodies, 500 then recovery with the last good body kept and the
 * failure logged once per change, the 64 KiB cap at the limit and one past
 * (with and without a Content-Length), a timeout while other URIs are
 * fetched, a certificate from another CA, removal (in flight too) with a
 * kept URI as control, redirects and proxy variables, and the set_uris
 * limits. Every wait runs the loop until its condition: no sleeps, no
 * deadlines. Run from the repository root. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "test.h"
#include "base/err.h"
#include "jwt/jwks_fetch.h"
#include "jwt/jwt.h"

static char dir[64]; /* mkdtemp's template, then the directory */
static bool have_dir;
static char ca1[300], ca2[300];
static int port_a, port_b, port_http; /* ca1, ca2, plain */
static pid_t server_pid = -1;
static int server_stdin = -1;

/* What the callback saw, per URI. */
#define SEEN_MAX 80
struct seen {
    char *uri;
    int calls;
    char *body;
    size_t len;
};
struct ctx {
    struct seen seen[SEEN_MAX];
    size_t n;
};

static struct seen *seen_of(struct ctx *c, const char *uri)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->seen[i].uri, uri) == 0)
            return &c->seen[i];
    if (c->n == SEEN_MAX)
        abort();
    struct seen *s = &c->seen[c->n++];
    s->uri = strdup(uri);
    return s;
}

static int calls(struct ctx *c, const char *uri)
{
    return seen_of(c, uri)->calls;
}

static void on_fetch(void *ud, const char *uri, const char *body, size_t len)
{
    struct seen *s = seen_of(ud, uri);
    s->calls++;
    free(s->body);
    s->body = malloc(len + 1);
    memcpy(s->body, body, len + 1);
    s->len = len;
}

static void ctx_cleanup(struct ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->seen[i].uri);
        free(c->seen[i].body);
    }
    c->n = 0;
}

/* One fetcher on its own loop. */
struct fixture {
    uv_loop_t loop;
    struct zt_jwks_fetcher *f;
    struct ctx ctx;
    bool is_closed;
};

static bool fixture_init(struct fixture *fx, const struct zt_jwks_fetcher_opts *o)
{
    memset(fx, 0, sizeof(*fx));
    if (uv_loop_init(&fx->loop) != 0)
        return false;
    fx->f = zt_jwks_fetcher_new(&fx->loop, o, on_fetch, &fx->ctx);
    return fx->f != NULL;
}

static void on_closed(void *ud)
{
    ((struct fixture *)ud)->is_closed = true;
}

/* Closes the fetcher and the loop; false if a handle was left open. */
static bool fixture_cleanup(struct fixture *fx)
{
    zt_jwks_fetcher_close(fx->f, on_closed, fx);
    while (!fx->is_closed)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    ctx_cleanup(&fx->ctx);
    return uv_loop_close(&fx->loop) == 0;
}

static struct zt_jwks_fetch_status status(struct fixture *fx, const char *uri)
{
    struct zt_jwks_fetch_status st = {0};
    st.last_error = zt_jwks_fetcher_status(fx->f, uri, &st) == 0 ? st.last_error : -1;
    return st;
}

static void set1(struct fixture *fx, const char *uri)
{
    char err[256];
    if (zt_jwks_fetcher_set_uris(fx->f, &uri, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "  set_uris: %s\n", err);
        abort();
    }
}

static void put_file(const char *name, const char *content)
{
    char path[400], tmp[420];
    snprintf(path, sizeof(path), "%s/www/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp || fputs(content, fp) < 0 || fclose(fp) != 0 || rename(tmp, path) != 0)
        abort();
}

static void rm_file(const char *name)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/www/%s", dir, name);
    unlink(path);
}

static char *url(int port, const char *path_)
{
    char *u = malloc(strlen(path_) + 64);
    sprintf(u, "%s://127.0.0.1:%d%s", port == port_http ? "http" : "https", port, path_);
    return u;
}

#define NEED_SERVER()                                                                              \
    do {                                                                                           \
        if (server_pid < 0)                                                                        \
            SKIP("node or openssl not available for the JWKS server");                             \
    } while (0)

static void test_fetch_and_rotate(void)
{
    NEED_SERVER();
    struct fixture fx;
    struct zt_jwks_fetcher_opts o = {.ca_file = ca1, .refresh_s = 1};
    CHECK(fixture_init(&fx, &o));
    put_file("rot", "{\"keys\":[1]}");
    char *u = url(port_a, "/file/rot");
    set1(&fx, u);
    while (calls(&fx.ctx, u) < 1)
        uv_run(&fx.loop, UV_RUN_ONCE);
    CHECK_EQ_STR(seen_of(&fx.ctx, u)->body, "{\"keys\":[1]}");
    size_t len = 0;
    const char *b = zt_jwks_fetcher_body(fx.f, u, &len);
    CHECK(b != NULL);
    CHECK_EQ_INT(len, strlen("{\"keys\":[1]}"));
    CHECK_EQ_STR(b, "{\"keys\":[1]}");
    CHECK(zt_jwks_fetcher_body(fx.f, "https://127.0.0.1:1/other", NULL) == NULL);
    /* Rotation: the refresh after refresh_s brings the new document. */
    put_file("rot", "{\"keys\":[2]}");
    while (calls(&fx.ctx, u) < 2)
        uv_run(&fx.loop, UV_RUN_ONCE);
    CHECK_EQ_STR(seen_of(&fx.ctx, u)->body, "{\"keys\":[2]}");
    CHECK_EQ_STR(zt_jwks_fetcher_body(fx.f, u, NULL), "{\"keys\":[2]}");
    struct zt_jwks_fetch_status st = status(&fx, u);
    CHECK(st.successes >= 2);
    CHECK_EQ_INT(st.failures, 0);
    CHECK_EQ_INT(st.http_status, 200);
    free(u);
    CHECK(fixture_cleanup(&fx));
}

/* A real JWKS goes from the fetcher into a rule set, as the waypoint will
 * do it. */
static void test_body_installs_in_rules(void)
{
    NEED_SERVER();
    static const char jwks[] = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e1\","
                               "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                               "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";
    struct fixture fx;
    struct zt_jwks_fetcher_opts o = {.ca_file = ca1};
    CHECK(fixture_init(&fx, &o));
    put_file("real", jwks);
    char *u = url(port_a, "/file/real");
    set1(&fx, u);
    while (calls(&fx.ctx, u) < 1)
        uv_run(&fx.loop, UV_RUN_ONCE);
    struct zt_jwt_rules *rs = zt_jwt_rules_new();
    struct zt_jwt_rule_spec spec = {.issuer = "https://issuer.example", .jwks_uri = u};
    char err[256];
    CHECK(zt_jwt_rules_add(rs, &spec, err, sizeof(err)) == 0);
    struct seen *s = seen_of(&fx.ctx, zt_jwt_rules_jwks_uri(rs, 0));
    int rc = zt_jwt_rules_set_jwks(rs, 0, s->body, s->len, err, sizeof(err));
    zt_jwt_rules_free(rs);
    free(u);
    CHECK(fixture_cleanup(&fx));
    CHECK_EQ_INT(rc, 0);
}

static void test_unchanged_no_second_callback(void)
{
    NEED_SERVER();
    struct fixture fx;
    struct zt_jwks_fetcher_opts o = {.ca_file = ca1, .refresh_s = 1};
    CHECK(fixture_init(&fx, &o));
    put_file("same", "{\"keys\":[]}");
    char *u = url(port_a, "/file/same");
    set1(&fx, u);
    while (status(&fx, u).successes < 3)
        uv_run(&fx.loop, UV_RUN_ONCE);
    CHECK_EQ_INT(calls(&fx.ctx, u), 1);
    free(u);
    CHECK(fixture_cleanup(&fx));
}

/* Counts lines of `level` naming `needle` in the captured log. */
static int count_log(const char *log, const char *level, const char *needle)
{
    int n = 0;
    char tag[32];
    snprintf(tag, sizeof(tag), "\t%s\tjwt\t", level);
    for (const char *line = log; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *l = strndup(line, len);
        if (strstr(l, tag) && strstr(l, needle))
            n++;
        free(l);
        line = end ? end + 1 : NULL;
    }
    return n;
}

static void test_500_then_recover_keeps_last_good(void)
{
    NEED_SERVER();
    char logpath[400];
    snprintf(logpath, sizeof(logpath), "%s/log.txt", dir);
    int logfd = open(logpath, O_CREAT | O_TRUNC | O_RDWR, 0600);
    int saved = dup(2);
    CHECK(logfd >= 0 && saved >= 0);
    CHECK(dup2(logfd, 2) == 2);

    struct fixture fx;
    struct zt_jwks_fetcher_opts o = {
        .ca_file = ca1, .refresh_s = 1, .retry_min_ms = 20, .retry_max_ms = 80};
    bool ok = fixture_init(&fx, &o);
    rm_file("flaky");
    char *u = url(port_a, "/file/flaky");
    if (ok)
        set1(&fx, u);
    struct zt_jwks_fetch_status st1 = {0}, st2 = {0}, st3 = {0};
    const char *body_while_failing = NULL;
    char reason1[64] = "";
    int calls_while_failing = -1, calls_after = -1;
    if (ok) {
        while (status(&fx, u).failures < 4)
            uv_run(&fx.loop, UV_RUN_ONCE);
        st1 = status(&fx, u);
        snprintf(reason1, sizeof(reason1), "%s", st1.reason);
        calls_while_failing = calls(&fx.ctx, u);
        put_file("flaky", "{\"v\":1}");
        while (calls(&fx.ctx, u) < 1)
            uv_run(&fx.loop, UV_RUN_ONCE);
        st2 = status(&fx, u);
        /* Failing again after a success: the last good body stays. */
        rm_file("flaky");
        uint64_t f0 = st2.failures;
        while (status(&fx, u).failures < f0 + 3)
            uv_run(&fx.loop, UV_RUN_ONCE);
        st3 = status(&fx, u);
        body_while_failing = zt_jwks_fetcher_body(fx.f, u, NULL);
        body_while_failing = body_while_failing ? strdup(body_while_failing) : NULL;
        calls_after = calls(&fx.ctx, u);
        put_file("flaky", "{\"v\":2}");
        while (calls(&fx.ctx, u) < 2)
            uv_run(&fx.loop, UV_RUN_ONCE);
    }
    dup2(saved, 2);
    close(saved);
    char *log = NULL;
    off_t size = lseek(logfd, 0, SEEK_END);
    if (size > 0) {
        log = calloc(1, (size_t)size + 1);
        if (pread(logfd, log, (size_t)size, 0) != size)
            log[0] = '\0';
    }
    close(logfd);
    CHECK(ok);
    CHECK_EQ_INT(calls_while_failing, 0);
    CHECK_EQ_INT(st1.last_error, ZT_E_PROTO);
    CHECK_EQ_INT(st1.http_status, 500);
    CHECK_EQ_STR(reason1, "HTTP status 500");
    CHECK_EQ_INT(st2.last_error, 0);
    CHECK_EQ_INT(st3.last_error, ZT_E_PROTO);
    CHECK_EQ_STR(body_while_failing, "{\"v\":1}");
    CHECK_EQ_INT(calls_after, 1);
    CHECK_EQ_STR(seen_of(&fx.ctx, u)->body, "{\"v\":2}");
    /* Two runs of failures, each logged once at error level (7 failures
     * at least); the recovery once at info level. */
    CHECK(log != NULL);
    CHECK_EQ_INT(count_log(log, "error", u), 2);
    CHECK(count_log(log, "info", "fetched again after HTTP status 500") >= 1);
    free(log);
    free((char *)body_while_failing);
    free(u);
    CHECK(fixture_cleanup(&fx));
}

static void test_size_cap(void)
{
    NEED_SERVER();
    struct fixture fx;
    struct zt_jwks_fetcher_opts o = {.ca_file = ca1, .retry_min_ms = 60000};
    CHECK(fixture_init(&fx, &o));
    char p[4][64];
    snprintf(p[0], sizeof(p[0]), "/size/%d", ZT_JWT_JWKS_MAX);
    snprintf(p[1], sizeof(p[1]), "/size/%d", ZT_JWT_JWKS_MAX + 1);
    snprintf(p[2], sizeof(p[2]), "/chunked/%d", ZT_JWT_JWKS_MAX);
    snprintf(p[3], sizeof(p[3]), "/chunked/%d", ZT_JWT_JWKS_MAX + 1);
    char *u[5];
    for (int i = 0; i < 4; i++)
        u[i] = url(port_a, p[i]);
    u[4] = url(port_a, "/chunked/100000000"); /* aborted at the cap, not read */
    char err[256];
    CHECK(zt_jwks_fetcher_set_uris(fx.f, (const char *const *)u, 5, err, sizeof(err)) == 0);
    for (int i = 0; i < 5; i++) {
        for (;;) {
            struct zt_jwks_fetch_status st = status(&fx, u[i]);
            if (st.successes + st.failures >= 1)
                break;
            uv_run(&fx.loop, UV_RUN_ONCE);
        }
    }
    for (int i = 0; i < 4; i += 2) {
        CHECK_EQ_INT(calls(&fx.ctx, u[i]), 1);
        CHECK_EQ_INT(seen_of(&fx.ctx, u[i])->len, ZT_JWT_JWKS_MAX);
    }
    for (int i = 1; i < 5; i += (i == 1 ? 2 : 1)) {
        CHECK_EQ_INT(calls(&fx.ctx, u[i]), 0);
        CHECK_EQ_INT(status(&fx, u[i]).last_error, ZT_E_TOO_BIG);
        CHECK(zt_jwks_fetcher_body(fx.f, u[i], NULL) == NULL);
    }
    for (int i = 0; i < 5; i++)
        free(u[i]);
    CHECK(fixture_cleanup(&fx));
}

static void test_timeout_others_fetched_meanwhile(void)
{
    NEED_SERVER();
    struct fixture fx;
    struct zt_jwks_fetcher_opts o = {.ca_file = ca1, .timeout_ms = 3000, .retry_min_ms = 60000};
    CHECK(fixture_init(&fx, &o));
    put_file("t", "{\"t\":1}");
    char *u[2] = {url(port_a, "/hang"), url(port_a, "/file/t")};
    char err[256];
    CHECK(zt_jwks_fetcher_set_uris(fx.f, (const char *const *)u, 2, err, sizeof(err)) == 0);
    while (calls(&fx.ctx, u[1]) < 1)
        uv_run(&fx.loop, UV_RUN_ONCE);
    struct zt_jwks_fetch_status st = status(&fx, u[0]);
    CHECK(st.is_fetching);
    CHECK_EQ_INT(st.failures, 0);
    while (status(&fx, u[0]).failures < 1)
        uv_run(&fx.loop, UV_RUN_ONCE);
    st = status(&fx, u[0]);
    CHECK_EQ_INT(st.last_error, ZT_E_TIMEOUT);
    CHECK(!st.is_fetching);
    CHECK_EQ_INT(calls(&fx.ctx, u[0]), 0);
    free(u[0]);
    free(u[1]);
    CHECK(fixture_cleanup(&fx));
}

static void test_other_ca_refused(void)
{
    NEED_SERVER();
    put_file("ca", "{\"ca\":1}");
    char *ub = url(port_b, "/file/ca"), *ua = url(port_a, "/file/ca");
    struct fixture fx;
    struct zt_jwks_fetcher_opts o = {.ca_file = ca1, .retry_min_ms = 60000};
    CHECK(fixture_init(&fx, &o));
    const char *both[] = {ub, ua};
    char err[256];
    CHECK(zt_jwks_fetcher_set_uris(fx.f, both, 2, err, sizeof(err)) == 0);
    while (status(&fx, ub).failures < 1 || calls(&fx.ctx, ua) < 1)
        uv_run(&fx.loop, UV_RUN_ONCE);
    CHECK_EQ_INT(status(&fx, ub).last_error, ZT_E_TLS);
    CHECK_EQ_INT(calls(&fx.ctx, ub), 0);
    CHECK(fixture_cleanup(&fx));
    /* Control: trusting ca2, the same server is fetched. */
    o.ca_file = ca2;
    CHECK(fixture_init(&fx, &o));
    set1(&fx, ub);
    while (calls(&fx.ctx, ub) < 1)
        uv_run(&fx.loop, UV_RUN_ONCE);
    CHECK(fixture_cleanup(&fx));
    /* No ca_file: the system's roots, which do not hold the test CAs. */
    o.ca_file = NULL;
    CHECK(fixture_init(&fx, &o));
    set1(&fx, ua);
    while (status(&fx, ua).failures < 1)
        uv_run(&fx.loop, UV_RUN_ONCE);
    CHECK_EQ_INT(status(&fx, ua).last_error, ZT_E_TLS);
    free(ua);
    free(ub);
    CHECK(fixture_cleanup(&fx));
}

static void test_remove_stops_callbacks(void)
{
    NEED_SERVER();
    struct fixture fx;
    struct zt_jwks_fetcher_opts o = {.ca_file = ca1, .refresh_s = 1};
    CHECK(fixture_init(&fx, &o));
    put_file("x1", "{\"x1\":1}");
    put_file("x2", "{\"x2\":1}");
    char *x1 = url(port_a, "/file/x1"), *x2 = url(port_a, "/file/x2");
    char *hold = url(port_a, "/hold/h1"), *release = url(port_a, "/release/h1");
    char *hold2 = url(port_a, "/hold/h2"), *release2 = url(port_a, "/release/h2");
    char err[256];
    const char *s1[] = {x1, x2, hold};
    CHECK(zt_jwks_fetcher_set_uris(fx.f, s1, 3, err, sizeof(err)) == 0);
    while (calls(&fx.ctx, x1) < 1 || calls(&fx.ctx, x2) < 1)
        uv_run(&fx.loop, UV_RUN_ONCE);
    CHECK(status(&fx, hold).is_fetching);
    /* x1 and the held transfer leave; x2 stays; the release comes in. */
    const char *s2[] = {x2, release, x2};
    CHECK(zt_jwks_fetcher_set_uris(fx.f, s2, 3, err, sizeof(err)) == 0);
    CHECK(zt_jwks_fetcher_body(fx.f, x1, NULL) == NULL);
    struct zt_jwks_fetch_status st;
    CHECK_EQ_INT(zt_jwks_fetcher_status(fx.f, x1, &st), ZT_E_NOT_FOUND);
    CHECK_EQ_INT(zt_jwks_fetcher_status(fx.f, hold, &st), ZT_E_NOT_FOUND);
    put_file("x1", "{\"x1\":2}");
    put_file("x2", "{\"x2\":2}");
    while (calls(&fx.ctx, release) < 1 || calls(&fx.ctx, x2) < 2)
        uv_run(&fx.loop, UV_RUN_ONCE);
    CHECK_EQ_INT(calls(&fx.ctx, x1), 1);
    CHECK_EQ_INT(calls(&fx.ctx, hold), 0);
    /* Control: a held transfer that stays in the set is answered on
     * release, and x2 still rotates. */
    const char *s3[] = {x2, hold2};
    CHECK(zt_jwks_fetcher_set_uris(fx.f, s3, 2, err, sizeof(err)) == 0);
    while (!status(&fx, hold2).is_fetching)
        uv_run(&fx.loop, UV_RUN_ONCE);
    const char *s4[] = {x2, hold2, release2};
    CHECK(zt_jwks_fetcher_set_uris(fx.f, s4, 3, err, sizeof(err)) == 0);
    put_file("x2", "{\"x2\":3}");
    while (calls(&fx.ctx, hold2) < 1 || calls(&fx.ctx, x2) < 3)
        uv_run(&fx.loop, UV_RUN_ONCE);
    CHECK_EQ_STR(seen_of(&fx.ctx, hold2)->body, "held");
    CHECK_EQ_INT(calls(&fx.ctx, x1), 1);
    CHECK_EQ_INT(calls(&fx.ctx, hold), 0);
    free(x1);
    free(x2);
    free(hold);
    free(release);
    free(hold2);
    free(release2);
    CHECK(fixture_cleanup(&fx));
}

/* A callback that removes its own URI and closes the fetcher. */
struct self_close {
    struct fixture *fx;
    int calls;
};
static void on_fetch_close(void *ud, const char *uri, const char *body, size_t len)
{
    struct self_close *sc = ud;
    sc->calls++;
    char err[64];
    if (zt_jwks_fetcher_set_uris(sc->fx->f, NULL, 0, err, sizeof(err)) != 0)
        abort();
    zt_jwks_fetcher_close(sc->fx->f, on_closed, sc->fx);
}

static void test_close_from_callback(void)
{
    NEED_SERVER();
    struct fixture fx = {0};
    struct self_close sc = {.fx = &fx};
    CHECK(uv_loop_init(&fx.loop) == 0);
    struct zt_jwks_fetcher_opts o = {.ca_file = ca1};
    fx.f = zt_jwks_fetcher_new(&fx.loop, &o, on_fetch_close, &sc);
    CHECK(fx.f != NULL);
    put_file("c1", "{}");
    put_file("c2", "{}");
    char *u[2] = {url(port_a, "/file/c1"), url(port_a, "/file/c2")};
    char err[256];
    CHECK(zt_jwks_fetcher_set_uris(fx.f, (const char *const *)u, 2, err, sizeof(err)) == 0);
    while (!fx.is_closed)
        uv_run(&fx.loop, UV_RUN_ONCE);
    uv_run(&fx.loop, UV_RUN_NOWAIT);
    free(u[0]);
    free(u[1]);
    CHECK_EQ_INT(sc.calls, 1);
    CHECK(uv_loop_close(&fx.loop) == 0);
}

static void test_redirect_and_proxy_env(void)
{
    NEED_SERVER();
    /* A proxy in the environment would make every fetch fail: it is
     * ignored. Port 9 on loopback has no listener. */
    setenv("http_proxy", "http://127.0.0.1:9", 1);
    setenv("https_proxy", "http://127.0.0.1:9", 1);
    setenv("HTTPS_PROXY", "http://127.0.0.1:9", 1);
    setenv("ALL_PROXY", "http://127.0.0.1:9", 1);
    struct fixture fx;
    struct zt_jwks_fetcher_opts o = {.ca_file = ca1, .retry_min_ms = 60000};
    bool ok = fixture_init(&fx, &o);
    put_file("a", "{\"a\":1}");
    char *u[3] = {url(port_a, "/redirect"), url(port_http, "/file/a"), url(port_a, "/file/a")};
    char err[256];
    if (ok)
        ok = zt_jwks_fetcher_set_uris(fx.f, (const char *const *)u, 3, err, sizeof(err)) == 0;
    while (ok &&
           (status(&fx, u[0]).failures < 1 || calls(&fx.ctx, u[1]) < 1 || calls(&fx.ctx, u[2]) < 1))
        uv_run(&fx.loop, UV_RUN_ONCE);
    unsetenv("http_proxy");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("ALL_PROXY");
    CHECK(ok);
    struct zt_jwks_fetch_status st = status(&fx, u[0]);
    CHECK_EQ_INT(st.last_error, ZT_E_PROTO);
    CHECK_EQ_INT(st.http_status, 302);
    CHECK_EQ_INT(calls(&fx.ctx, u[0]), 0);
    CHECK_EQ_STR(seen_of(&fx.ctx, u[1])->body, "{\"a\":1}");
    for (int i = 0; i < 3; i++)
        free(u[i]);
    CHECK(fixture_cleanup(&fx));
}

static void test_set_uris_limits(void)
{
    /* Needs no server: nothing here is expected to answer. Port 9 on
     * loopback has no listener. */
    struct fixture fx;
    struct zt_jwks_fetcher_opts o = {.retry_min_ms = 60000};
    CHECK(fixture_init(&fx, &o));
    char err[256];
    static char longu[ZT_JWKS_URI_LEN_MAX + 2];
    int n = snprintf(longu, sizeof(longu), "https://127.0.0.1:9/long?pad=");
    memset(longu + n, 'p', sizeof(longu) - 1 - (size_t)n);
    longu[ZT_JWKS_URI_LEN_MAX] = '\0'; /* exactly 2048 bytes */
    const char *one[] = {longu};
    CHECK_EQ_INT(zt_jwks_fetcher_set_uris(fx.f, one, 1, err, sizeof(err)), 0);
    longu[ZT_JWKS_URI_LEN_MAX] = 'p'; /* 2049 */
    CHECK_EQ_INT(zt_jwks_fetcher_set_uris(fx.f, one, 1, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strstr(err, "longer than 2048") != NULL);
    /* The failed call changed nothing. */
    longu[ZT_JWKS_URI_LEN_MAX] = '\0';
    struct zt_jwks_fetch_status st;
    CHECK_EQ_INT(zt_jwks_fetcher_status(fx.f, longu, &st), 0);

    const char *bad[] = {"ftp://127.0.0.1:9/jwks", "file:///etc/passwd", "127.0.0.1:9/jwks",
                         "https://127.0.0.1:9/a b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *b1[] = {"https://127.0.0.1:9/ok", bad[i]};
        CHECK_EQ_INT(zt_jwks_fetcher_set_uris(fx.f, b1, 2, err, sizeof(err)), ZT_E_CONFIG);
        CHECK_EQ_INT(zt_jwks_fetcher_status(fx.f, "https://127.0.0.1:9/ok", &st), ZT_E_NOT_FOUND);
    }
    static char many[ZT_JWKS_URIS_MAX + 2][64];
    const char *ptr[ZT_JWKS_URIS_MAX + 2];
    for (int i = 0; i < ZT_JWKS_URIS_MAX + 1; i++) {
        snprintf(many[i], sizeof(many[i]), "https://127.0.0.1:9/k%d", i);
        ptr[i] = many[i];
    }
    ptr[ZT_JWKS_URIS_MAX + 1] = many[0]; /* a duplicate counts once */
    CHECK_EQ_INT(zt_jwks_fetcher_set_uris(fx.f, ptr, ZT_JWKS_URIS_MAX + 1, err, sizeof(err)),
                 ZT_E_TOO_BIG);
    CHECK_EQ_INT(zt_jwks_fetcher_status(fx.f, longu, &st), 0);
    ptr[ZT_JWKS_URIS_MAX] = many[0];
    CHECK_EQ_INT(zt_jwks_fetcher_set_uris(fx.f, ptr, ZT_JWKS_URIS_MAX + 1, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_jwks_fetcher_status(fx.f, many[ZT_JWKS_URIS_MAX - 1], &st), 0);
    CHECK_EQ_INT(zt_jwks_fetcher_status(fx.f, longu, &st), ZT_E_NOT_FOUND);
    /* Let some of the 64 connection attempts start, then close with them in
     * flight. */
    uv_run(&fx.loop, UV_RUN_NOWAIT);
    CHECK(fixture_cleanup(&fx));
}

static bool start_server(void)
{
    if (system("command -v node >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1") != 0)
        return false;
    size_t n = (size_t)snprintf(dir, sizeof(dir), "/tmp/zt-jwks-");
    memset(dir + n, 'X', 6); /* the six characters mkdtemp replaces */
    dir[n + 6] = '\0';
    if (!mkdtemp(dir))
        return false;
    have_dir = true;
    snprintf(ca1, sizeof(ca1), "%s/ca1.pem", dir);
    snprintf(ca2, sizeof(ca2), "%s/ca2.pem", dir);
    int out[2], in[2];
    if (pipe(out) != 0 || pipe(in) != 0)
        return false;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(in[0], 0);
        close(out[0]);
        close(out[1]);
        close(in[0]);
        close(in[1]);
        execlp("node", "node", "tests/unit/jwt/jwks_server.js", dir, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(in[0]);
    server_stdin = in[1];
    FILE *fp = fdopen(out[0], "r");
    char line[128];
    bool ok = fp && fgets(line, sizeof(line), fp) &&
              sscanf(line, "%d %d %d", &port_a, &port_b, &port_http) == 3;
    if (fp)
        fclose(fp);
    if (!ok) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return false;
    }
    server_pid = pid;
    return true;
}

static void stop_server(void)
{
    if (server_pid > 0) {
        close(server_stdin);
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    if (have_dir) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "  could not remove %s\n", dir);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (!start_server())
        fprintf(stderr, "  the JWKS server did not start\n");
    RUN(test_fetch_and_rotate);
    RUN(test_body_installs_in_rules);
    RUN(test_unchanged_no_second_callback);
    RUN(test_500_then_recover_keeps_last_good);
    RUN(test_size_cap);
    RUN(test_timeout_others_fetched_meanwhile);
    RUN(test_other_ca_refused);
    RUN(test_remove_stops_callbacks);
    RUN(test_close_from_callback);
    RUN(test_redirect_and_proxy_env);
    RUN(test_set_uris_limits);
    stop_server();
    return TEST_REPORT();
}
