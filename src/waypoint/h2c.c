/* HTTP/2 cleartext sessions (gRPC included): a client's CONNECT stream
 * carrying h2c, served by an nghttp2 server session of its own (the
 * HTTP/2 front of h2c_int.h); each request an exchange (h2x.c) sent on
 * over an h2c connection to an endpoint of its destination (an nghttp2
 * client session inside the waypoint's HBONE stream to that endpoint's
 * port) or, toward a port declared HTTP/1.1, over HTTP/1.1 (h2c_h1.c);
 * the responses, trailers included, back.
 *
 * Requests are multiplexed both ways: a session keeps one upstream h2c
 * connection per endpoint and port while the endpoint takes more streams,
 * and opens another past its SETTINGS_MAX_CONCURRENT_STREAMS. Upstream
 * connections belong to the session and end with it.
 *
 * nghttp2 validates what the client sends (pseudo-headers,
 * connection-specific fields, content-length against DATA) and answers
 * floods and rapid resets itself.
 *
 * Flow control is manual on every session: DATA received from one side is
 * returned to its stream's window only once the other side's nghttp2 took
 * it for sending (the connection's window at once), so each stream holds
 * at most one stream window of bytes per direction and a slow reader
 * stops its own sender.
 *
 * Re-entrancy: nghttp2 never runs inside its own callbacks; every entry
 * point (stream events, pool answers, timers) ends with wp_h2c_pump(),
 * which moves each session's output into its HBONE stream. Objects end at
 * safe points: sessions and upstream connections in the worker's reaper. */
#include "waypoint/h2c_int.h"
#include "waypoint/mirror.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "http/http1.h"
#include "state/ip.h"

#include <stdlib.h>
#include <string.h>

#define WP_H2C_MAX_NV (ZT_HTTP_MAX_FIELDS + 8)

static const struct wp_stream_ops down_ops, up_ops;
static const struct wp_front_ops h2_front;
static nghttp2_session_callbacks *server_cbs, *client_cbs;
static nghttp2_option *ng_opts;

/* ---- heads as nghttp2 name/value arrays ---- */

struct nvs {
    nghttp2_nv v[WP_H2C_MAX_NV];
    size_t n;
    char status[8];
};

static void nv_add(struct nvs *a, const char *name, const char *value)
{
    if (!value || a->n == WP_H2C_MAX_NV)
        return;
    a->v[a->n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                                NGHTTP2_NV_FLAG_NONE};
}

/* Connection-specific fields never go into HTTP/2 (RFC 9113 8.2.2). */
static bool is_hop_by_hop(const char *name)
{
    static const char *const hop[] = {"connection",        "keep-alive", "proxy-connection",
                                      "transfer-encoding", "upgrade",    "host"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (strcmp(name, hop[i]) == 0)
            return true;
    return false;
}

static void nv_fields(struct nvs *a, const struct zt_http_head *h)
{
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct zt_http_field *f = &h->fields[i];
        if (is_hop_by_hop(f->name) || (strcmp(f->name, "te") == 0 && strcmp(f->value, "trailers")))
            continue;
        nv_add(a, f->name, f->value);
    }
}

static void nv_request(struct nvs *a, const struct zt_http_head *h)
{
    a->n = 0;
    nv_add(a, ":method", h->method);
    nv_add(a, ":scheme", h->scheme ? h->scheme : "http");
    nv_add(a, ":authority", h->authority);
    nv_add(a, ":path", h->path);
    nv_fields(a, h);
}

static void nv_response(struct nvs *a, const struct zt_http_head *h)
{
    a->n = 0;
    snprintf(a->status, sizeof(a->status), "%d", h->status);
    nv_add(a, ":status", a->status);
    nv_fields(a, h);
}

/* ---- responses toward the client ---- */

/* A data source's read: up to len bytes of q into buf (*n). Once q is
 * empty: the end of the stream when `end` (trailers, if any, follow as a
 * HEADERS frame), else NGHTTP2_ERR_DEFERRED until resumed. */
static ssize_t take(nghttp2_session *ng, int32_t sid, struct zt_buf *q, bool end,
                    const struct zt_http_head *trailers, uint8_t *buf, size_t len, uint32_t *flags,
                    size_t *n)
{
    *n = q->len < len ? q->len : len;
    if (*n) {
        memcpy(buf, zt_buf_head(q), *n);
        zt_buf_consume(q, *n);
    }
    if (q->len)
        return (ssize_t)*n;
    zt_buf_release(q);
    if (!end)
        return *n ? (ssize_t)*n : NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (trailers->n_fields) {
        struct nvs a;
        a.n = 0;
        nv_fields(&a, trailers);
        if (nghttp2_submit_trailer(ng, sid, a.v, a.n) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return (ssize_t)*n;
}

static ssize_t read_down(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct wp_h2c *s = user;
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, sid);
    if (!x)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n;
    ssize_t rc = take(ng, sid, &x->to_down, x->resp_end, &x->resp_trailers, buf, len, flags, &n);
    wp_h2x_down_took(x, n);
    s->repump = true;
    return rc;
}

/* ---- the HTTP/2 front ---- */

static void h2_respond(struct wp_h2x *x, bool end)
{
    struct wp_h2c *s = x->s;
    struct nvs a;
    nv_response(&a, &x->resp);
    nghttp2_data_provider prd = {.read_callback = read_down};
    if (nghttp2_submit_response(s->ng, x->down_sid, a.v, a.n, end ? NULL : &prd) != 0) {
        wp_h2x_error(x, "response cannot be sent", NULL);
        nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, x->down_sid, NGHTTP2_INTERNAL_ERROR);
    }
    s->repump = true;
}

static void h2_resume(struct wp_h2x *x)
{
    if (x->down_sid > 0)
        nghttp2_session_resume_data(x->s->ng, x->down_sid);
    x->s->repump = true;
}

static void h2_reset(struct wp_h2x *x, uint32_t h2_error)
{
    if (x->down_sid > 0)
        nghttp2_submit_rst_stream(x->s->ng, NGHTTP2_FLAG_NONE, x->down_sid, h2_error);
    x->s->repump = true;
}

static void h2_consumed(struct wp_h2x *x, size_t n)
{
    if (x->down_sid > 0)
        nghttp2_session_consume_stream(x->s->ng, x->down_sid, n);
    x->s->repump = true;
}

static void h2_forget(struct wp_h2x *x)
{
    if (x->down_sid > 0)
        nghttp2_session_set_stream_user_data(x->s->ng, x->down_sid, NULL);
}

static const struct wp_front_ops h2_front = {
    .respond = h2_respond,
    .resume = h2_resume,
    .reset = h2_reset,
    .consumed = h2_consumed,
    .forget = h2_forget,
};

/* ---- upstream connections ---- */

/* The upstream connection failed or ended: its requests lose their try
 * (retried, answered 503, or reset once their response began). */
/* The connection takes nothing more: its stream is reset (if open) and it
 * is freed by the reaper. Its requests are the caller's. */
void wp_h2up_kill(struct wp_h2up *up)
{
    struct wp_h2c *s = up->s;
    if (up->is_dead)
        return;
    up->is_dead = true;
    s->ups_gen++;
    zt_list_remove(&up->link);
    zt_list_insert_tail(&s->w->dead_h2ups, &up->link);
    if (up->waiting)
        zt_l7_upstream_cancel(&up->waiter);
    up->waiting = false;
    wp_stream_detach(&up->st);
    s->repump = true;
}

void wp_h2up_fail(struct wp_h2up *up, uint32_t cond, const char *what, const char *detail)
{
    struct wp_h2c *s = up->s;
    if (up->is_dead)
        return;
    wp_h2up_kill(up);
    up->x = NULL;
    for (struct zt_list_node *n = zt_list_first(&s->reqs), *next; n; n = next) {
        next = zt_list_next(&s->reqs, n);
        struct wp_h2x *x = zt_list_entry(n, struct wp_h2x, link);
        if (x->up == up) {
            x->up_sid = 0; /* nothing to reset: the connection is gone */
            wp_h2x_fail(x, x->resp_started ? 0 : cond, what, detail);
        }
    }
    s->repump = true;
}

static void up_open(struct wp_h2up *up, struct zt_h2conn *h2)
{
    char authority[WP_AUTHORITY_MAX];
    if (wp_connect_endpoint(&up->st, h2, &up->hbone, up->port, NULL, 0, authority,
                            sizeof(authority)) < 0)
        wp_h2up_fail(up, ZT_ROUTE_RETRY_CONNECT_FAILURE, "cannot open an HBONE stream to",
                     authority);
}

static void up_on_pool(struct zt_hbone_waiter *wt, struct zt_h2conn *h2, int err)
{
    struct wp_h2up *up = (struct wp_h2up *)((char *)wt - offsetof(struct wp_h2up, waiter));
    struct wp_h2c *s = up->s;
    up->waiting = false;
    if (err < 0 || !h2)
        wp_h2up_fail(up, ZT_ROUTE_RETRY_CONNECT_FAILURE, "HBONE connection to the endpoint failed",
                     err == ZT_E_IDENTITY ? "server identity not accepted" : zt_strerror(err));
    else
        up_open(up, h2);
    wp_h2c_pump(s);
}

/* Our SETTINGS and the connection window, for either role. */
static void send_settings(nghttp2_session *ng, bool is_server)
{
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WP_H2C_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, ZT_HTTP_HEAD_MAX},
        is_server
            ? (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, WP_H2C_MAX_STREAMS}
            : (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    /* Both only queue frames on a fresh session: they cannot fail. */
    nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0, WP_H2C_CONN_WINDOW);
}

/* A connection to wl's port taking another request: one of the
 * session's (h2c: with a stream to spare; HTTP/1.1: idle), or a new one.
 * NULL with *err on failure. */
struct wp_h2up *wp_h2up_get(struct wp_h2c *s, const struct zt_workload *wl, uint16_t port,
                            const struct zt_service *svc, uint16_t svc_port, bool is_h1, int *err)
{
    for (struct zt_list_node *n = zt_list_first(&s->ups); n; n = zt_list_next(&s->ups, n)) {
        struct wp_h2up *up = zt_list_entry(n, struct wp_h2up, link);
        if (up->wl != wl || up->port != port || up->is_h1 != is_h1)
            continue;
        if (is_h1
                ? !up->x
                : !up->no_new && up->n_reqs < nghttp2_session_get_remote_settings(
                                                  up->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
            return up;
    }
    struct wp_h2up *up = zt_xcalloc(1, sizeof(*up));
    up->s = s;
    up->wl = wl;
    up->port = port;
    up->is_h1 = is_h1;
    wp_stream_init(&up->st, &up_ops, up);
    if (is_h1) {
        up->h1 = wp_h1up_parser(up);
    } else {
        if (nghttp2_session_client_new2(&up->ng, client_cbs, up, ng_opts) != 0)
            abort();
        send_settings(up->ng, false);
    }
    struct zt_h2conn *ready = NULL;
    up->waiter.cb = up_on_pool;
    int rc = zt_l7_upstream(s->pod, wl, svc, svc_port, &up->waiter, &ready, &up->hbone);
    if (rc < 0) {
        if (up->ng)
            nghttp2_session_del(up->ng);
        zt_http1_parser_free(up->h1);
        *err = rc;
        return NULL;
    }
    zt_list_insert_tail(&s->ups, &up->link);
    s->ups_gen++;
    if (ready)
        up_open(up, ready);
    else
        up->waiting = true;
    if (up->is_dead) {
        *err = ZT_E_NOT_FOUND;
        return NULL;
    }
    return up;
}

static ssize_t read_up(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                       nghttp2_data_source *src, void *user)
{
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, sid);
    if (!x)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n;
    ssize_t rc = take(ng, sid, &x->to_up, x->req_end, &x->req_trailers, buf, len, flags, &n);
    wp_h2x_body_sent(x, n);
    return rc;
}

void wp_h2up_submit(struct wp_h2x *x, struct wp_h2up *up)
{
    struct nvs a;
    nv_request(&a, &x->req);
    bool bodyless = x->req_end && x->to_up.len == 0 && x->req_trailers.n_fields == 0;
    nghttp2_data_provider prd = {.read_callback = read_up};
    int32_t sid = nghttp2_submit_request(up->ng, NULL, a.v, a.n, bodyless ? NULL : &prd, x);
    if (sid < 0) {
        wp_h2x_fail(x, ZT_ROUTE_RETRY_REFUSED_STREAM, "upstream took no new stream",
                    nghttp2_strerror(sid));
        return;
    }
    x->up = up;
    x->up_sid = sid;
    up->n_reqs++;
    x->s->repump = true;
}

void wp_h2up_cancel(struct wp_h2up *up, int32_t sid)
{
    nghttp2_session_set_stream_user_data(up->ng, sid, NULL);
    nghttp2_submit_rst_stream(up->ng, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
    up->s->repump = true;
}

static int srv_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct wp_h2c *s = user;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (f->headers.cat == NGHTTP2_HCAT_REQUEST && !x) {
        x = wp_h2x_new(s, f->hd.stream_id);
        nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, x);
    } else if (x) {
        x->in_trailers = true;
    }
    return 0;
}

static int srv_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                      size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                      void *user)
{
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!x || x->too_big)
        return 0;
    struct zt_http_head *h = x->in_trailers ? &x->req_trailers : &x->req;
    int rc = 0;
    if (namelen && name[0] == ':') {
        char **slot = NULL;
        if (namelen == 7 && memcmp(name, ":method", 7) == 0)
            slot = &h->method;
        else if (namelen == 5 && memcmp(name, ":path", 5) == 0)
            slot = &h->path;
        else if (namelen == 7 && memcmp(name, ":scheme", 7) == 0)
            slot = &h->scheme;
        else if (namelen == 10 && memcmp(name, ":authority", 10) == 0)
            slot = &h->authority;
        if (slot)
            rc = zt_http_head_set_part(h, slot, (const char *)value, valuelen);
    } else {
        rc = zt_http_head_add(h, (const char *)name, namelen, (const char *)value, valuelen);
    }
    if (rc < 0)
        x->too_big = true;
    return 0;
}

/* The client's body: queued toward the upstream (and kept for a retry
 * while it fits). Returned to the client's window once sent on. */
static int srv_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                    size_t len, void *user)
{
    struct wp_h2c *s = user;
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, sid);
    if (x)
        wp_mirror_body(&x->mirror, data, len);
    if (!x || x->is_local_reply) {
        nghttp2_session_consume(ng, sid, len);
        s->repump = true;
        return 0;
    }
    /* The connection's window at once (each stream's bounds what waits
     * here); the stream's once the bytes went on. */
    nghttp2_session_consume_connection(ng, len);
    wp_h2x_body(x, data, len);
    return 0;
}

static int srv_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct wp_h2c *s = user;
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!x || (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
        return 0;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (end)
        x->req_end = true;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
        wp_h2x_start(x);
    else if (end)
        wp_h2x_req_end(x);
    s->repump = true;
    return 0;
}

static int srv_stream_close(nghttp2_session *ng, int32_t sid, uint32_t error_code, void *user)
{
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, sid);
    if (!x)
        return 0;
    if (error_code && !x->resp_end)
        wp_h2x_error(x, "client reset the stream", nghttp2_http2_strerror(error_code));
    x->down_sid = 0;
    wp_h2x_end(x);
    return 0;
}

/* ---- responses: from the upstream ---- */

static int cli_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (x && f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_HEADERS &&
        x->resp_started)
        x->up_in_trailers = true;
    return 0;
}

static int cli_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                      size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                      void *user)
{
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!x)
        return 0;
    struct zt_http_head *h = x->up_in_trailers ? &x->resp_trailers : &x->resp;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int st = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            st = st * 10 + (value[i] - '0');
        h->status = st;
        return 0;
    }
    if (namelen && name[0] == ':')
        return 0;
    if (zt_http_head_add(h, (const char *)name, namelen, (const char *)value, valuelen) < 0) {
        x->resp_too_big = true; /* nghttp2 resets the stream: cli_stream_close answers */
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static int cli_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                    size_t len, void *user)
{
    struct wp_h2up *up = user;
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, sid);
    if (!x || !x->resp_started || x->is_local_reply) {
        nghttp2_session_consume(ng, sid, len);
        up->s->repump = true;
        return 0;
    }
    nghttp2_session_consume_connection(ng, len); /* as srv_data */
    x->resp_bytes += len;
    zt_buf_append(&x->to_down, data, len);
    if (!up->s->ended)
        up->s->front->resume(x);
    up->s->repump = true;
    return 0;
}

static int cli_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct wp_h2up *up = user;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        up->no_new = true;
        return 0;
    }
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!x || (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
        return 0;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (f->hd.type == NGHTTP2_HEADERS && !x->up_in_trailers) {
        if (x->resp.status < 200) {
            /* 1xx: an interim answer, not passed on. */
            zt_http_head_reset(&x->resp, true);
            return 0;
        }
        wp_h2x_response_head(x, end);
        return 0;
    }
    if (f->hd.type == NGHTTP2_HEADERS) {
        int g = wp_h2x_grpc_status(&x->resp_trailers);
        if (g >= 0)
            x->grpc_status = g;
    }
    if (end && !x->is_local_reply) {
        x->resp_end = true;
        uv_timer_stop(&x->timeout_timer);
        if (!up->s->ended)
            up->s->front->resume(x);
        up->s->repump = true;
    }
    return 0;
}

static int cli_stream_close(nghttp2_session *ng, int32_t sid, uint32_t error_code, void *user)
{
    struct wp_h2up *up = user;
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, sid);
    if (!x)
        return 0;
    /* The try is over; its response ended, or it failed. */
    x->up_sid = 0;
    if (x->resp_end) {
        wp_h2x_detach_up(x);
        return 0;
    }
    if (x->resp_too_big && !x->resp_started) {
        wp_h2x_error(x, "upstream response head passes the caps", NULL);
        wp_h2x_local_reply(x, 502, "upstream sent a bad response\n", NULL, 0);
        up->s->repump = true;
        return 0;
    }
    uint32_t cond = error_code == NGHTTP2_REFUSED_STREAM ? ZT_ROUTE_RETRY_REFUSED_STREAM : 0;
    wp_h2x_fail(x, cond, "upstream stream closed",
                error_code ? nghttp2_http2_strerror(error_code) : "before the response ended");
    up->s->repump = true;
    return 0;
}

/* ---- the session ---- */

void wp_h2c_session_end(struct wp_h2c *s)
{
    if (s->ended)
        return;
    while (!zt_list_empty(&s->reqs)) {
        struct wp_h2x *x = zt_list_entry(zt_list_first(&s->reqs), struct wp_h2x, link);
        if (x->start_ms && !x->resp_end)
            wp_h2x_error(x, "session ended before the response", NULL);
        wp_h2x_end(x);
    }
    s->ended = true;
    while (!zt_list_empty(&s->ups)) {
        struct wp_h2up *up = zt_list_entry(zt_list_first(&s->ups), struct wp_h2up, link);
        up->is_dead = true;
        if (up->waiting)
            zt_l7_upstream_cancel(&up->waiter);
        up->waiting = false;
        wp_stream_detach(&up->st);
        zt_list_remove(&up->link);
        zt_list_insert_tail(&s->w->dead_h2ups, &up->link);
    }
    wp_stream_detach(&s->down);
    if (s->held)
        zt_l7_release(s->pod);
    s->held = false;
    zt_list_remove(&s->link);
    zt_list_insert_tail(&s->w->dead_h2cs, &s->link);
}

/* Moves ng's output into st while its queue is short. -1 if ng failed. */
static int pump_one(nghttp2_session *ng, struct wp_stream *st)
{
    int rc = 0;
    while (st->q.len < WP_H2C_QUEUE_HIGH) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(ng, &p);
        if (n < 0) {
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        wp_stream_queue(st, p, (size_t)n);
    }
    return rc;
}

void wp_h2c_pump(struct wp_h2c *s)
{
    if (s->ended)
        return;
    if (s->pumping) {
        s->repump = true;
        return;
    }
    s->pumping = true;
    do {
        s->repump = false;
        if (s->ng ? pump_one(s->ng, &s->down) < 0 : wp_h1front_out(s) < 0) {
            s->pumping = false;
            wp_stream_reset(&s->down);
            wp_h2c_session_end(s);
            return;
        }
        for (struct zt_list_node *n = zt_list_first(&s->ups); n && !s->ended;) {
            struct wp_h2up *up = zt_list_entry(n, struct wp_h2up, link);
            unsigned gen = s->ups_gen;
            if (!up->is_h1 && pump_one(up->ng, &up->st) < 0)
                wp_h2up_fail(up, 0, "upstream HTTP/2 session failed", NULL);
            else
                wp_stream_flush(&up->st);
            n = gen == s->ups_gen ? zt_list_next(&s->ups, n) : zt_list_first(&s->ups);
            if (gen != s->ups_gen)
                s->repump = true;
        }
        if (!s->ended)
            wp_stream_flush(&s->down);
    } while (s->repump && !s->ended);
    s->pumping = false;
    if (s->ended)
        return;
    /* The client is done (GOAWAY both ways, or it ended its side with
     * nothing in flight): the tunnel ends after what is queued. */
    if ((s->ng && !nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng)) ||
        (s->ng && s->down.rx_eof && zt_list_empty(&s->reqs)))
        wp_stream_end(&s->down);
}

static void down_on_data(struct wp_stream *st, const uint8_t *data, size_t len)
{
    struct wp_h2c *s = st->owner;
    if (s->ended) {
        wp_stream_consume(st, len);
        return;
    }
    ssize_t n = nghttp2_session_mem_recv(s->ng, data, len);
    len += s->down_unreturned;
    s->down_unreturned = 0;
    if (n < 0) {
        ZT_DEBUG("waypoint", "h2c client error: %s", nghttp2_strerror((int)n));
        /* nghttp2 queued a GOAWAY where it could: sent, then the end. */
        wp_h2c_pump(s);
        if (!s->ended) {
            wp_stream_end(&s->down);
            wp_h2c_session_end(s);
        }
        return;
    }
    if (s->down.q.len < WP_H2C_QUEUE_HIGH)
        wp_stream_consume(st, len);
    else
        s->down_unreturned += len;
    wp_h2c_pump(s);
}

static void down_on_end(struct wp_stream *st)
{
    wp_h2c_pump(st->owner);
}

static void down_on_close(struct wp_stream *st, int error)
{
    wp_h2c_session_end(st->owner);
}

static void down_on_sent(struct wp_stream *st, size_t n)
{
    struct wp_h2c *s = st->owner;
    if (s->down_unreturned && s->down.q.len < WP_H2C_QUEUE_HIGH) {
        size_t u = s->down_unreturned;
        s->down_unreturned = 0;
        wp_stream_consume(st, u);
    }
    if (s->down.q.len < WP_H2C_QUEUE_HIGH)
        wp_h2c_pump(s);
}

static const struct wp_stream_ops down_ops = {
    .on_data = down_on_data,
    .on_end = down_on_end,
    .on_close = down_on_close,
    .on_sent = down_on_sent,
};

static void up_on_response(struct wp_stream *st, int status)
{
    struct wp_h2up *up = st->owner;
    if (status == 200)
        return;
    char code[16];
    snprintf(code, sizeof(code), "%d", status);
    wp_h2up_fail(up, ZT_ROUTE_RETRY_CONNECT_FAILURE, "upstream HBONE returned status", code);
    wp_h2c_pump(up->s);
}

static void up_on_data(struct wp_stream *st, const uint8_t *data, size_t len)
{
    struct wp_h2up *up = st->owner;
    struct wp_h2c *s = up->s;
    if (up->is_dead) {
        wp_stream_consume(st, len);
        return;
    }
    if (up->is_h1) {
        wp_h1up_on_data(up, data, len);
        wp_h2c_pump(s);
        return;
    }
    ssize_t n = nghttp2_session_mem_recv(up->ng, data, len);
    if (n < 0)
        wp_h2up_fail(up, 0, "upstream sent bad HTTP/2", nghttp2_strerror((int)n));
    else
        wp_stream_consume(st, len);
    wp_h2c_pump(s);
}

static void up_on_end(struct wp_stream *st)
{
    struct wp_h2up *up = st->owner;
    if (up->is_h1)
        wp_h1up_on_end(up);
    else
        wp_h2up_fail(up, 0, "upstream closed the connection", NULL);
    wp_h2c_pump(up->s);
}

static void up_on_close(struct wp_stream *st, int error)
{
    struct wp_h2up *up = st->owner;
    wp_h2up_fail(up, up->st.rx == 0 ? ZT_ROUTE_RETRY_CONNECT_FAILURE : 0, "upstream stream closed",
                 error ? zt_strerror(error) : NULL);
    wp_h2c_pump(up->s);
}

/* Room toward an HTTP/1.1 endpoint: more of the request body (and the
 * client's window back). */
static void up_on_sent(struct wp_stream *st, size_t n)
{
    struct wp_h2up *up = st->owner;
    if (up->is_h1 && up->x) {
        wp_h1up_push(up->x);
        wp_h2c_pump(up->s);
    }
}

static const struct wp_stream_ops up_ops = {
    .on_response = up_on_response,
    .on_data = up_on_data,
    .on_end = up_on_end,
    .on_close = up_on_close,
    .on_sent = up_on_sent,
};

/* ---- entry points ---- */

static pthread_once_t cbs_once = PTHREAD_ONCE_INIT;

static void cbs_init(void)
{
    if (nghttp2_session_callbacks_new(&server_cbs) != 0 ||
        nghttp2_session_callbacks_new(&client_cbs) != 0 || nghttp2_option_new(&ng_opts) != 0)
        abort();
    nghttp2_session_callbacks_set_on_begin_headers_callback(server_cbs, srv_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(server_cbs, srv_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(server_cbs, srv_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(server_cbs, srv_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(server_cbs, srv_stream_close);
    nghttp2_session_callbacks_set_on_begin_headers_callback(client_cbs, cli_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(client_cbs, cli_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(client_cbs, cli_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(client_cbs, cli_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(client_cbs, cli_stream_close);
    nghttp2_option_set_no_auto_window_update(ng_opts, 1);
    nghttp2_option_set_max_deflate_dynamic_table_size(ng_opts, 4096);
}

struct wp_h2c *wp_h2c_session_new(struct wp_worker *w, struct zt_pod_inst *pod,
                                  const struct wp_dest *d, const struct sockaddr_storage *peer,
                                  const char *identity, bool is_h1)
{
    pthread_once(&cbs_once, cbs_init);
    struct wp_h2c *s = zt_xcalloc(1, sizeof(*s));
    s->w = w;
    s->pod = pod;
    s->snap = zt_l7_state(pod);
    zt_state_ref(s->snap);
    s->dst = *d;
    s->peer = *peer;
    wp_h2x_copy(s->src_identity, sizeof(s->src_identity), identity);
    zt_list_init(&s->ups);
    zt_list_init(&s->reqs);
    if (is_h1) {
        s->front = &wp_h1front_ops;
        s->req_p = wp_h1front_parser(s);
        s->keep = true;
        wp_stream_init(&s->down, &wp_h1front_down_ops, s);
    } else {
        s->front = &h2_front;
        wp_stream_init(&s->down, &down_ops, s);
        if (nghttp2_session_server_new2(&s->ng, server_cbs, s, ng_opts) != 0)
            abort();
        send_settings(s->ng, true);
    }
    zt_list_insert_head(&w->h2cs, &s->link);
    zt_l7_hold(pod);
    s->held = true;
    return s;
}

/* s takes over down, with what it carried so far. */
static void adopt(struct wp_h2c *s, struct wp_stream *down, const uint8_t *initial, size_t n,
                  size_t unreturned)
{
    wp_stream_move(&s->down, down);
    s->down_unreturned = unreturned;
    if (n)
        s->down.ops->on_data(&s->down, initial, n);
    else
        wp_h2c_pump(s);
    if (!s->ended && s->down.rx_eof)
        s->down.ops->on_end(&s->down);
}

void wp_h2c_adopt(struct wp_worker *w, struct zt_pod_inst *pod, struct wp_stream *down,
                  const struct wp_dest *d, const struct sockaddr_storage *peer,
                  const char *identity, const uint8_t *initial, size_t n, size_t unreturned)
{
    adopt(wp_h2c_session_new(w, pod, d, peer, identity, false), down, initial, n, unreturned);
}

void wp_h2c_adopt_h1(struct wp_worker *w, struct zt_pod_inst *pod, struct wp_stream *down,
                     const struct wp_dest *d, const struct sockaddr_storage *peer,
                     const char *identity, const uint8_t *initial, size_t n, size_t unreturned)
{
    adopt(wp_h2c_session_new(w, pod, d, peer, identity, true), down, initial, n, unreturned);
}

void wp_h2cs_pod_close(struct wp_worker *w, struct zt_pod_inst *pod)
{
    for (struct zt_list_node *n = zt_list_first(&w->h2cs), *next; n; n = next) {
        next = zt_list_next(&w->h2cs, n);
        struct wp_h2c *s = zt_list_entry(n, struct wp_h2c, link);
        if (s->pod == pod) {
            wp_stream_reset(&s->down);
            wp_h2c_session_end(s);
        }
    }
}

void wp_h2cs_drain(struct wp_worker *w)
{
    /* GOAWAY to every client: what is in flight finishes, then each
     * session ends (pump sees nghttp2 wanting nothing more). */
    for (struct zt_list_node *n = zt_list_first(&w->h2cs), *next; n; n = next) {
        next = zt_list_next(&w->h2cs, n);
        struct wp_h2c *s = zt_list_entry(n, struct wp_h2c, link);
        if (s->ng)
            nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(s->ng), NGHTTP2_NO_ERROR,
                                  NULL, 0);
        else
            wp_h1front_drain(s);
        wp_h2c_pump(s);
    }
}

void wp_h2cs_reap(struct wp_worker *w)
{
    while (!zt_list_empty(&w->dead_h2ups)) {
        struct wp_h2up *up = zt_list_entry(zt_list_first(&w->dead_h2ups), struct wp_h2up, link);
        zt_list_remove(&up->link);
        wp_stream_detach(&up->st);
        wp_stream_cleanup(&up->st);
        if (up->ng)
            nghttp2_session_del(up->ng);
        zt_http1_parser_free(up->h1);
        zt_buf_release(&up->scratch);
        free(up);
    }
    while (!zt_list_empty(&w->dead_h2cs)) {
        struct wp_h2c *s = zt_list_entry(zt_list_first(&w->dead_h2cs), struct wp_h2c, link);
        zt_list_remove(&s->link);
        wp_stream_cleanup(&s->down);
        if (s->ng)
            nghttp2_session_del(s->ng);
        zt_http1_parser_free(s->req_p);
        zt_buf_release(&s->din);
        zt_buf_release(&s->out);
        zt_state_unref(s->snap);
        free(s);
    }
}
