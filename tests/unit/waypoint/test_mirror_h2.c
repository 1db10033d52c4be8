/* A RequestMirror copy over HTTP/2 (mirror_h2.c) against an nghttp2
 * server in memory: what the server receives, and how the copy ends. */
#include "test.h"
#include "base/buf.h"
#include "base/err.h"
#include "waypoint/mirror_h2.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <string.h>

/* The server's view of the one request. */
struct srv {
    nghttp2_session *ng;
    char authority[64], trailer[64], method[16], path[64];
    bool has_connection, in_trailers, req_end;
    size_t body;
    int32_t sid;
    /* How to answer once the request ended. */
    bool reset;
};

static int srv_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct srv *s = user;
    if (f->headers.cat == NGHTTP2_HCAT_HEADERS)
        s->in_trailers = true;
    return 0;
}

static int srv_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                      const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
    struct srv *s = user;
    const struct {
        const char *name;
        char *slot;
        size_t cap;
    } kept[] = {
        {s->in_trailers ? "grpc-status" : ":authority", s->in_trailers ? s->trailer : s->authority,
         sizeof(s->authority)},
        {":method", s->method, sizeof(s->method)},
        {":path", s->path, sizeof(s->path)},
    };
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        if (strlen(kept[i].name) == nl && memcmp(name, kept[i].name, nl) == 0)
            snprintf(kept[i].slot, kept[i].cap, "%.*s", (int)vl, (const char *)value);
    if (nl == 10 && memcmp(name, "connection", 10) == 0)
        s->has_connection = true;
    return 0;
}

static int srv_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                    size_t len, void *user)
{
    ((struct srv *)user)->body += len;
    return 0;
}

static int srv_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct srv *s = user;
    if (f->hd.stream_id && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        s->req_end = true;
        s->sid = f->hd.stream_id;
    }
    return 0;
}

static void srv_init(struct srv *s)
{
    nghttp2_session_callbacks *cb;
    memset(s, 0, sizeof(*s));
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, srv_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, srv_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, srv_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, srv_frame_recv);
    nghttp2_session_server_new(&s->ng, cb, s);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, NULL, 0);
}

/* Bytes both ways until neither side has any; the server answers 200
 * (or resets) once the request ended. */
static void run(struct wp_mirror_h2 *e, struct srv *s)
{
    bool answered = false;
    for (int round = 0; round < 100; round++) {
        const uint8_t *p;
        ssize_t n, moved = 0;
        while ((n = wp_mirror_h2_send(e, &p)) > 0) {
            CHECK(nghttp2_session_mem_recv(s->ng, p, (size_t)n) == n);
            moved += n;
        }
        if (s->req_end && !answered) {
            answered = true;
            if (s->reset) {
                nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, s->sid, NGHTTP2_INTERNAL_ERROR);
            } else {
                nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0}};
                nghttp2_submit_response(s->ng, s->sid, nv, 1, NULL);
            }
        }
        while ((n = nghttp2_session_mem_send(s->ng, &p)) > 0) {
            CHECK_EQ_INT(wp_mirror_h2_recv(e, p, (size_t)n), 0);
            moved += n;
        }
        if (moved == 0)
            return;
    }
    CHECK(!"the exchange did not settle");
}

static void head(struct zt_http_head *h, const char *method, const char *path)
{
    zt_http_head_init(h, false);
    zt_http_head_set_part(h, &h->method, method, strlen(method));
    zt_http_head_set_part(h, &h->path, path, strlen(path));
    zt_http_head_set_part(h, &h->authority, "b2-shadow:8080", 14);
    zt_http_head_add(h, "content-type", 12, "application/grpc", 16);
    zt_http_head_add(h, "connection", 10, "close", 5);
    zt_http_head_add(h, "te", 2, "trailers", 8);
}

/* A 64 KiB body (past the default stream window: it waits for a window
 * update) and trailers reach the server whole; the copy ends with the
 * response. */
static void test_body_and_trailers(void)
{
    static uint8_t body[64 * 1024];
    struct zt_http_head req, tr;
    struct wp_mirror_h2 *e = NULL;
    struct srv s;
    srv_init(&s);
    head(&req, "POST", "/echo.Echo/Say");
    zt_http_head_init(&tr, false);
    zt_http_head_add(&tr, "grpc-status", 11, "0", 1);
    CHECK_EQ_INT(wp_mirror_h2_new(&req, body, sizeof(body), &tr, &e), 0);
    run(e, &s);
    CHECK_EQ_STR(s.authority, "b2-shadow:8080");
    CHECK_EQ_STR(s.method, "POST");
    CHECK_EQ_STR(s.path, "/echo.Echo/Say");
    CHECK(!s.has_connection);
    CHECK_EQ_INT((int)s.body, (int)sizeof(body));
    CHECK_EQ_STR(s.trailer, "0");
    CHECK_EQ_STR(wp_mirror_h2_state_str(wp_mirror_h2_state(e)), "done");
    CHECK_EQ_INT(wp_mirror_h2_status(e), 200);
    wp_mirror_h2_free(e);
    zt_http_head_cleanup(&req);
    zt_http_head_cleanup(&tr);
    nghttp2_session_del(s.ng);
}

static void test_bodyless(void)
{
    struct zt_http_head req;
    struct wp_mirror_h2 *e = NULL;
    struct srv s;
    srv_init(&s);
    head(&req, "GET", "/x");
    CHECK_EQ_INT(wp_mirror_h2_new(&req, NULL, 0, NULL, &e), 0);
    run(e, &s);
    CHECK_EQ_STR(s.method, "GET");
    CHECK_EQ_INT((int)s.body, 0);
    CHECK_EQ_STR(s.trailer, "");
    CHECK_EQ_INT(wp_mirror_h2_state(e), WP_MIRROR_H2_ST_DONE);
    wp_mirror_h2_free(e);
    zt_http_head_cleanup(&req);
    nghttp2_session_del(s.ng);
}

/* A reset stream, and bytes that are not HTTP/2, fail the copy. */
static void test_failures(void)
{
    struct zt_http_head req;
    struct wp_mirror_h2 *e = NULL;
    struct srv s;
    srv_init(&s);
    s.reset = true;
    head(&req, "POST", "/x");
    CHECK_EQ_INT(wp_mirror_h2_new(&req, "abc", 3, NULL, &e), 0);
    run(e, &s);
    CHECK_EQ_INT((int)s.body, 3);
    CHECK_EQ_INT(wp_mirror_h2_state(e), WP_MIRROR_H2_ST_FAILED);
    CHECK(strstr(wp_mirror_h2_error(e), "stream closed") != NULL);
    CHECK_EQ_INT(wp_mirror_h2_status(e), 0);
    wp_mirror_h2_free(e);
    nghttp2_session_del(s.ng);

    CHECK_EQ_INT(wp_mirror_h2_new(&req, NULL, 0, NULL, &e), 0);
    /* SETTINGS of 5 bytes: a connection error (FRAME_SIZE_ERROR). */
    const uint8_t junk[] = {0, 0, 5, 4, 0, 0, 0, 0, 0, 'a', 'b', 'c', 'd', 'e'};
    const uint8_t *p;
    CHECK_EQ_INT(wp_mirror_h2_recv(e, junk, sizeof(junk)), 0);
    CHECK_EQ_INT(wp_mirror_h2_state(e), WP_MIRROR_H2_ST_EXCHANGE);
    while (wp_mirror_h2_send(e, &p) > 0)
        ;
    CHECK_EQ_INT(wp_mirror_h2_state(e), WP_MIRROR_H2_ST_FAILED);
    CHECK(wp_mirror_h2_error(e)[0] != 0);
    wp_mirror_h2_free(e);
    zt_http_head_cleanup(&req);
}

int main(void)
{
    RUN(test_body_and_trailers);
    RUN(test_bodyless);
    RUN(test_failures);
    return TEST_REPORT();
}
