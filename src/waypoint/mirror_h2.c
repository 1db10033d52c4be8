/* A RequestMirror copy as HTTP/2 cleartext (mirror_h2.h).
 *
 * nghttp2 is only called from the three entry points, never from its own
 * callbacks: the callbacks note what they saw (status, the response's
 * end, the stream's close) and the trailers, which nghttp2 would take
 * from inside the body's read callback, are submitted by
 * wp_mirror_h2_send once the body's last DATA went out with
 * NGHTTP2_DATA_FLAG_NO_END_STREAM. The response's DATA is dropped and
 * nghttp2 returns it to the windows itself. */
#include "waypoint/mirror_h2.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/err.h"

#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct wp_mirror_h2 {
    nghttp2_session *ng;
    enum wp_mirror_h2_state state;
    int32_t sid;
    int status;
    struct zt_buf body;
    struct zt_http_head trailers;
    bool has_trailers;
    bool want_trailers; /* the body is out: submit the trailers */
    char error[96];
};

const char *wp_mirror_h2_state_str(enum wp_mirror_h2_state st)
{
    switch (st) {
    case WP_MIRROR_H2_ST_EXCHANGE:
        return "exchange";
    case WP_MIRROR_H2_ST_DONE:
        return "done";
    case WP_MIRROR_H2_ST_FAILED:
        return "failed";
    }
    return "?";
}

static void set_state(struct wp_mirror_h2 *e, enum wp_mirror_h2_state st, const char *error)
{
    if (e->state != WP_MIRROR_H2_ST_EXCHANGE)
        return;
    e->state = st;
    if (error)
        snprintf(e->error, sizeof(e->error), "%s", error);
}

/* ---- heads as name/value arrays ---- */

static bool is_connection_specific(const struct zt_http_field *f)
{
    static const char *const names[] = {"connection",        "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade",    "host"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(f->name, names[i]) == 0)
            return true;
    return strcmp(f->name, "te") == 0 && strcmp(f->value, "trailers") != 0;
}

/* h's pseudo-headers (a request's, when `pseudo`) and fields into v
 * (room for 4 + h->n_fields); pointers borrow h. The count. */
static size_t to_nv(const struct zt_http_head *h, bool pseudo, nghttp2_nv *v)
{
    size_t n = 0;
    const char *p[][2] = {{":method", h->method},
                          {":scheme", h->scheme ? h->scheme : "http"},
                          {":authority", h->authority},
                          {":path", h->path}};
    for (size_t i = 0; pseudo && i < 4; i++)
        if (p[i][1])
            v[n++] = (nghttp2_nv){(uint8_t *)p[i][0], (uint8_t *)p[i][1], strlen(p[i][0]),
                                  strlen(p[i][1]), NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct zt_http_field *f = &h->fields[i];
        if (!is_connection_specific(f))
            v[n++] = (nghttp2_nv){(uint8_t *)f->name, (uint8_t *)f->value, strlen(f->name),
                                  strlen(f->value), NGHTTP2_NV_FLAG_NONE};
    }
    return n;
}

/* ---- nghttp2's callbacks: notes only ---- */

static ssize_t read_body(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct wp_mirror_h2 *e = user;
    size_t n = e->body.len < len ? e->body.len : len;
    memcpy(buf, zt_buf_head(&e->body), n);
    zt_buf_consume(&e->body, n);
    if (e->body.len == 0) {
        zt_buf_release(&e->body);
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (e->has_trailers) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            e->want_trailers = true;
        }
    }
    return (ssize_t)n;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct wp_mirror_h2 *e = user;
    if (f->hd.stream_id == e->sid && f->headers.cat == NGHTTP2_HCAT_RESPONSE && namelen == 7 &&
        memcmp(name, ":status", 7) == 0 && valuelen == 3) {
        int st = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        if (st >= 200)
            e->status = st;
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct wp_mirror_h2 *e = user;
    if (f->hd.stream_id == e->sid && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA))
        set_state(e, WP_MIRROR_H2_ST_DONE, NULL);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t error_code, void *user)
{
    struct wp_mirror_h2 *e = user;
    char why[96];
    if (sid != e->sid)
        return 0;
    snprintf(why, sizeof(why), "stream closed: %s", nghttp2_http2_strerror(error_code));
    set_state(e, WP_MIRROR_H2_ST_FAILED, why);
    return 0;
}

static nghttp2_session_callbacks *cbs;
static pthread_once_t cbs_once = PTHREAD_ONCE_INIT;

static void cbs_init(void)
{
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        abort();
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
}

/* ---- entry points ---- */

int wp_mirror_h2_new(const struct zt_http_head *req, const void *body, size_t len,
                     const struct zt_http_head *trailers, struct wp_mirror_h2 **out)
{
    pthread_once(&cbs_once, cbs_init);
    struct wp_mirror_h2 *e = zt_xcalloc(1, sizeof(*e));
    zt_http_head_init(&e->trailers, false);
    if (nghttp2_session_client_new(&e->ng, cbs, e) != 0)
        abort();
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(e->ng, NGHTTP2_FLAG_NONE, iv, 1);
    zt_buf_append(&e->body, body, len);
    for (size_t i = 0; trailers && i < trailers->n_fields; i++) {
        const struct zt_http_field *f = &trailers->fields[i];
        zt_http_head_add(&e->trailers, f->name, strlen(f->name), f->value, strlen(f->value));
    }
    e->has_trailers = e->trailers.n_fields > 0;
    nghttp2_nv *v = zt_xcalloc(req->n_fields + 4, sizeof(*v));
    size_t n = to_nv(req, true, v);
    nghttp2_data_provider prd = {.read_callback = read_body};
    bool bodyless = len == 0 && !e->has_trailers;
    e->sid = nghttp2_submit_request(e->ng, NULL, v, n, bodyless ? NULL : &prd, NULL);
    free(v);
    if (e->sid < 0) {
        wp_mirror_h2_free(e);
        return ZT_E_PROTO;
    }
    *out = e;
    return 0;
}

void wp_mirror_h2_free(struct wp_mirror_h2 *e)
{
    if (!e)
        return;
    nghttp2_session_del(e->ng);
    zt_buf_release(&e->body);
    zt_http_head_cleanup(&e->trailers);
    free(e);
}

ssize_t wp_mirror_h2_send(struct wp_mirror_h2 *e, const uint8_t **p)
{
    for (;;) {
        ssize_t n = nghttp2_session_mem_send(e->ng, p);
        if (n < 0) {
            set_state(e, WP_MIRROR_H2_ST_FAILED, nghttp2_strerror((int)n));
            return ZT_E_PROTO;
        }
        /* A connection error is not returned by mem_recv: nghttp2 queues
         * a GOAWAY and, once it went, wants nothing more. */
        if (n == 0 && !nghttp2_session_want_read(e->ng))
            set_state(e, WP_MIRROR_H2_ST_FAILED, "HTTP/2 session ended");
        if (n > 0 || !e->want_trailers)
            return n;
        e->want_trailers = false;
        nghttp2_nv *v = zt_xcalloc(e->trailers.n_fields + 4, sizeof(*v));
        size_t k = to_nv(&e->trailers, false, v);
        int rc = nghttp2_submit_trailer(e->ng, e->sid, v, k);
        free(v);
        if (rc != 0) {
            set_state(e, WP_MIRROR_H2_ST_FAILED, nghttp2_strerror(rc));
            return ZT_E_PROTO;
        }
    }
}

int wp_mirror_h2_recv(struct wp_mirror_h2 *e, const uint8_t *data, size_t len)
{
    ssize_t n = nghttp2_session_mem_recv(e->ng, data, len);
    if (n < 0) {
        set_state(e, WP_MIRROR_H2_ST_FAILED, nghttp2_strerror((int)n));
        return ZT_E_PROTO;
    }
    return 0;
}

enum wp_mirror_h2_state wp_mirror_h2_state(const struct wp_mirror_h2 *e)
{
    return e->state;
}

int wp_mirror_h2_status(const struct wp_mirror_h2 *e)
{
    return e->status;
}

const char *wp_mirror_h2_error(const struct wp_mirror_h2 *e)
{
    return e->error;
}
