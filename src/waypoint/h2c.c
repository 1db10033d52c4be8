/* HTTP/2 cleartext sessions (gRPC included): a client's CONNECT stream
 * carrying h2c, served by an nghttp2 server session of its own; each
 * request routed and sent on over an h2c connection to an endpoint of its
 * destination (an nghttp2 client session inside the waypoint's HBONE
 * stream to that endpoint's port), and the responses, trailers included,
 * back.
 *
 * Requests are multiplexed both ways: a session keeps one upstream
 * connection per endpoint and port while the endpoint takes more streams,
 * and opens another past its SETTINGS_MAX_CONCURRENT_STREAMS. Upstream
 * connections belong to the session and end with it.
 *
 * Heads are decoded into struct zt_http_head, routed and filtered like
 * HTTP/1.1's (exchange.c), and encoded anew; nghttp2 validates what the
 * client sends (pseudo-headers, connection-specific fields, content-length
 * against DATA) and answers floods and rapid resets itself.
 *
 * Flow control is manual on every session: DATA received from one side is
 * returned to its stream's window only once the other side's nghttp2 took
 * it for sending (the connection's window at once), so each stream holds
 * at most one stream window of bytes per direction and a slow reader
 * stops its own sender.
 *
 * Retries as HTTP/1.1's (Istio's default or the route's), with gRPC's
 * conditions read from a trailers-only response (grpc-status 14:
 * unavailable, 1: cancelled); a request whose body passed
 * WP_H2C_REPLAY_MAX is never retried. Local replies to a gRPC request are
 * gRPC's: 200 with grpc-status mapped from the HTTP status as Envoy does.
 *
 * Re-entrancy: nghttp2 never runs inside its own callbacks; every entry
 * point (stream events, pool answers, timers) ends with pump(), which
 * moves each session's output into its HBONE stream. Objects end at safe
 * points: requests when their timers have closed, sessions and upstream
 * connections in the worker's reaper. */
#include "waypoint/waypoint_int.h"
#include "waypoint/mirror.h"
#include "waypoint/stream.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "http/head.h"
#include "http/http1.h"
#include "state/ip.h"
#include "telemetry/headers.h"
#include "tls/spiffe.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Advertised to clients. With the stream window, it bounds what a session
 * holds in queues: at most one stream window per stream and direction. */
#define WP_H2C_MAX_STREAMS 100
#define WP_H2C_STREAM_WINDOW (128 * 1024)
#define WP_H2C_CONN_WINDOW (4 * 1024 * 1024)
/* Above this many bytes queued toward an HBONE stream, its session's
 * output waits (nghttp2 keeps it) until they are sent. */
#define WP_H2C_QUEUE_HIGH (256 * 1024)
/* The most request body bytes kept for a retry, as http.c's. */
#define WP_H2C_REPLAY_MAX (64 * 1024)
#define WP_H2C_MAX_NV (ZT_HTTP_MAX_FIELDS + 8)
/* A cond for x_fail: the try ran past its per-try timeout (retried while
 * attempts remain, whatever the policy lists, as http.c). */
#define WP_H2C_RETRY_PER_TRY_TIMEOUT 0x80000000u

struct wp_h2c;

/* One connection to an endpoint's port, inside an HBONE stream: h2c
 * (streams multiplexed), or HTTP/1.1 (is_h1: one exchange at a time, kept
 * for the next while both sides allow it). */
struct wp_h2up {
    struct wp_h2c *s;
    struct zt_list_node link; /* in s->ups, then w->dead_h2ups */
    struct wp_stream st;
    struct zt_hbone_waiter waiter;
    nghttp2_session *ng;
    const struct zt_workload *wl;
    uint16_t port;
    struct sockaddr_storage hbone; /* ip:15008 */
    size_t n_reqs;
    bool waiting; /* for the pool */
    bool is_dead; /* failed or ended: takes nothing new */
    bool no_new;  /* GOAWAY received: takes nothing new */
    /* HTTP/1.1 only. */
    bool is_h1;
    bool req_chunked;           /* the request body goes chunked */
    bool req_written;           /* all of the request is queued */
    bool resp_done;             /* its response ended */
    bool reusable;              /* ... and allows another exchange */
    struct zt_http1_parser *h1; /* the responses */
    struct wp_h2x *x;           /* the exchange in flight, NULL when idle */
    struct zt_buf scratch;      /* framing being encoded */
    uint64_t body_held;         /* response body bytes given to x, not yet back in the window */
    uint64_t body_fed;          /* ... of them, during the current parse */
    uint64_t tx_at_start;       /* st.tx when the exchange began */
    unsigned n_done;            /* exchanges completed */
};

/* One request (a client stream) and its response. */
struct wp_h2x {
    struct wp_h2c *s;
    struct zt_list_node link; /* in s->reqs */
    int32_t down_sid, up_sid;
    struct wp_h2up *up; /* NULL: no try in flight */
    struct zt_http_head req, req_trailers, resp, resp_trailers;
    struct zt_buf to_up, to_down, replay;
    uint64_t body_returned; /* request body bytes returned to the client's window */
    uint64_t try_sent;      /* request body bytes sent in the current try */
    const struct zt_service *dst_svc;
    const struct zt_workload *dst_wl;
    uint16_t svc_port, port; /* the service's as routed; the endpoint's target port */
    struct zt_route_table *routes;
    const struct zt_route_filters *filters;
    struct wp_mirror *mirror; /* RequestMirror copies while the request arrives */
    struct zt_route_retry retry;
    uint32_t timeout_ms;
    unsigned tries;
    int status, grpc_status;
    bool is_grpc, too_big;
    bool up_h1;          /* the upstream speaks HTTP/1.1 (the port's protocol) */
    bool resp_too_big;   /* the upstream's head passed the caps: 502 */
    bool in_trailers;    /* the client's next header block is trailers */
    bool req_end;        /* the client ended its side */
    bool up_in_trailers; /* the upstream's next header block is trailers */
    bool resp_started;   /* the response head went to the client */
    bool resp_end;       /* ... and all of it arrived */
    bool is_replayable, is_local_reply;
    uint8_t shadow;  /* WP_SHADOW_* */
    struct wp_rl rl; /* the rate limit's fields for the response */
    /* W3C trace context: the waypoint's span (parent_id is its id). */
    struct zt_telemetry_traceparent trace;
    uint64_t start_ms, start_ns, req_bytes, resp_bytes;
    char method[16], path[256], authority[128], upstream[64], route[128], error[384];
    uv_timer_t try_timer, timeout_timer;
    int handles;
};

struct wp_h2c {
    struct wp_worker *w;
    struct zt_pod_inst *pod;
    struct zt_list_node link; /* in w->h2cs, then w->dead_h2cs */
    struct wp_stream down;
    nghttp2_session *ng;
    struct zt_list ups;  /* of wp_h2up */
    struct zt_list reqs; /* of wp_h2x */
    const struct zt_state *snap;
    struct wp_dest dst;
    struct sockaddr_storage peer;
    char src_identity[ZT_SPIFFE_ID_MAX + 1];
    size_t down_unreturned; /* HBONE bytes fed to ng, not yet returned */
    unsigned ups_gen;       /* bumped when ups changes */
    bool ended, held, pumping, repump;
};

static const struct wp_stream_ops down_ops, up_ops;
static const struct zt_http1_ops h1_ops;
static nghttp2_session_callbacks *server_cbs, *client_cbs;
static nghttp2_option *ng_opts;

static void pump(struct wp_h2c *s);
static bool x_retry_later(struct wp_h2x *x, uint32_t cond, const char *what);
static void x_fail(struct wp_h2x *x, uint32_t cond, const char *what, const char *detail);
static void x_send_try(struct wp_h2x *x);
static void up_kill(struct wp_h2up *up);
static void h1_release(struct wp_h2up *up);

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

static void x_error(struct wp_h2x *x, const char *what, const char *detail)
{
    if (!x->error[0])
        snprintf(x->error, sizeof(x->error), "%s%s%s", what, detail ? ": " : "",
                 detail ? detail : "");
}

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

static int parse_grpc_status(const struct zt_http_head *h)
{
    const char *v = zt_http_head_get(h, "grpc-status");
    if (!v || !*v || strlen(v) > 3)
        return -1;
    for (const char *p = v; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    return atoi(v);
}

/* ---- requests: lifecycle ---- */

static void x_log(struct wp_h2x *x)
{
    struct wp_h2c *s = x->s;
    struct wp_request_record r = {
        .peer = &s->peer,
        .src_identity = s->src_identity,
        .snap = s->snap,
        .network = zt_l7_network(s->pod),
        .dst_svc = x->dst_svc,
        .dst_wl = x->dst_wl,
        .upstream = x->upstream,
        .method = x->method,
        .path = x->path,
        .authority = x->authority,
        .protocol = "HTTP/2",
        .route = x->route,
        .error = x->error,
        .trace_id = x->trace.trace_id[0] ? x->trace.trace_id : NULL,
        .span_id = x->trace.parent_id[0] ? x->trace.parent_id : NULL,
        .is_grpc = x->is_grpc,
        .is_local_reply = x->is_local_reply,
        .shadow = x->shadow,
        .status = x->status,
        .grpc_status = x->grpc_status,
        .start_ms = x->start_ms,
        .start_ns = x->start_ns,
        .req_bytes = x->req_bytes,
        .resp_bytes = x->resp_bytes,
    };
    wp_log_request(s->w, &r);
}

static void on_x_timer_closed(uv_handle_t *t)
{
    struct wp_h2x *x = t->data;
    if (--x->handles)
        return;
    zt_http_head_cleanup(&x->req);
    zt_http_head_cleanup(&x->req_trailers);
    zt_http_head_cleanup(&x->resp);
    zt_http_head_cleanup(&x->resp_trailers);
    zt_buf_release(&x->to_up);
    zt_buf_release(&x->to_down);
    zt_buf_release(&x->replay);
    free(x);
}

/* Forgets the try in flight: its upstream stream is reset (if open) and
 * will find no request in its callbacks. */
static void x_detach_up(struct wp_h2x *x)
{
    struct wp_h2up *up = x->up;
    if (!up)
        return;
    x->up = NULL;
    up->n_reqs--;
    if (up->is_h1) {
        up->x = NULL;
        h1_release(up);
    } else if (x->up_sid > 0) {
        nghttp2_session_set_stream_user_data(up->ng, x->up_sid, NULL);
        nghttp2_submit_rst_stream(up->ng, NGHTTP2_FLAG_NONE, x->up_sid, NGHTTP2_CANCEL);
        x->s->repump = true;
    }
    x->up_sid = 0;
    uv_timer_stop(&x->try_timer);
}

/* The client stream is gone: the request ends (logged once). */
static void x_end(struct wp_h2x *x)
{
    struct wp_h2c *s = x->s;
    if (x->start_ms) {
        if (!x->resp_end && !x->error[0])
            x_error(x, "stream ended before the response", NULL);
        x_log(x);
    }
    x_detach_up(x);
    wp_mirror_abandon(&x->mirror);
    if (x->down_sid > 0 && !s->ended)
        nghttp2_session_set_stream_user_data(s->ng, x->down_sid, NULL);
    zt_route_table_unref(x->routes);
    x->routes = NULL;
    zt_list_remove(&x->link);
    uv_close((uv_handle_t *)&x->try_timer, on_x_timer_closed);
    uv_close((uv_handle_t *)&x->timeout_timer, on_x_timer_closed);
}

static struct wp_h2x *x_new(struct wp_h2c *s, int32_t sid)
{
    struct wp_h2x *x = zt_xcalloc(1, sizeof(*x));
    x->s = s;
    x->down_sid = sid;
    x->grpc_status = -1;
    zt_http_head_init(&x->req, false);
    zt_http_head_init(&x->req_trailers, false);
    zt_http_head_init(&x->resp, true);
    zt_http_head_init(&x->resp_trailers, true);
    uv_timer_init(s->w->loop, &x->try_timer);
    uv_timer_init(s->w->loop, &x->timeout_timer);
    x->try_timer.data = x->timeout_timer.data = x;
    x->handles = 2;
    zt_list_insert_tail(&s->reqs, &x->link);
    return x;
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
    if (n && x->up && x->up_sid > 0) {
        nghttp2_session_consume_stream(x->up->ng, x->up_sid, n);
        s->repump = true;
    } else if (n && x->up && x->up->is_h1) {
        size_t k = n < x->up->body_held ? n : (size_t)x->up->body_held;
        x->up->body_held -= k;
        wp_stream_consume(&x->up->st, k);
    }
    return rc;
}

/* Envoy's HTTP status -> gRPC status for a local reply. */
static int grpc_from_http(int status)
{
    switch (status) {
    case 400:
        return 13; /* internal */
    case 401:
        return 16; /* unauthenticated */
    case 403:
        return 7; /* permission denied */
    case 404:
        return 12; /* unimplemented */
    case 429:
    case 502:
    case 503:
    case 504:
        return 14; /* unavailable */
    default:
        return 2; /* unknown */
    }
}

/* A response of the waypoint's own; for gRPC a trailers-only 200 with
 * grpc-status and grpc-message. The request's later bytes are dropped. */
static void x_local_reply(struct wp_h2x *x, int status, const char *body, const char *const *hdrs,
                          size_t n_hdrs)
{
    struct wp_h2c *s = x->s;
    struct nvs a = {.n = 0};
    char len[24], grpc[8], msg[128];
    x_detach_up(x);
    uv_timer_stop(&x->timeout_timer);
    x->is_local_reply = true;
    x->resp_started = x->resp_end = true;
    x->status = status;
    zt_buf_release(&x->to_down);
    if (x->is_grpc) {
        x->grpc_status = grpc_from_http(status);
        snprintf(grpc, sizeof(grpc), "%d", x->grpc_status);
        nv_add(&a, ":status", "200");
        nv_add(&a, "content-type", "application/grpc");
        nv_add(&a, "grpc-status", grpc);
        /* The body's text as the message (Envoy's local reply body). */
        snprintf(msg, sizeof(msg), "%s", body);
        msg[strcspn(msg, "\n")] = '\0';
        nv_add(&a, "grpc-message", msg);
        nghttp2_submit_response(s->ng, x->down_sid, a.v, a.n, NULL);
    } else {
        size_t blen = strcmp(x->method, "HEAD") == 0 ? 0 : strlen(body);
        snprintf(a.status, sizeof(a.status), "%d", status);
        snprintf(len, sizeof(len), "%zu", strlen(body));
        nv_add(&a, ":status", a.status);
        nv_add(&a, "content-type", "text/plain");
        nv_add(&a, "content-length", len);
        for (size_t i = 0; i < n_hdrs; i++)
            nv_add(&a, hdrs[2 * i], hdrs[2 * i + 1]);
        zt_buf_append(&x->to_down, body, blen);
        x->resp_bytes += blen;
        nghttp2_data_provider prd = {.read_callback = read_down};
        nghttp2_submit_response(s->ng, x->down_sid, a.v, a.n, blen ? &prd : NULL);
    }
    s->repump = true;
}

/* The response head from the upstream: a retry if it is a retriable
 * answer, else on to the client (after the route's response filters). */
static void x_response_head(struct wp_h2x *x, bool end)
{
    struct wp_h2c *s = x->s;
    if (end)
        x->grpc_status = parse_grpc_status(&x->resp);
    uint32_t cond = 0;
    if ((x->retry.on & ZT_ROUTE_RETRY_STATUS_CODES))
        for (size_t i = 0; i < x->retry.n_codes; i++)
            if (x->retry.codes[i] == x->resp.status)
                cond = ZT_ROUTE_RETRY_STATUS_CODES;
    if (x->is_grpc && x->grpc_status == 14)
        cond = ZT_ROUTE_RETRY_UNAVAILABLE;
    if (x->is_grpc && x->grpc_status == 1)
        cond = ZT_ROUTE_RETRY_CANCELLED;
    if (cond && x_retry_later(x, cond, "retriable answer")) {
        zt_http_head_reset(&x->resp, true);
        x->grpc_status = -1;
        return;
    }
    uv_timer_stop(&x->try_timer);
    if ((x->filters && zt_route_apply_response(x->filters, &x->resp) < 0) ||
        wp_ratelimit_headers(&x->rl, &x->resp) < 0) {
        x_error(x, "response filters pass the head's caps", NULL);
        x_local_reply(x, 502, "upstream response cannot be forwarded\n", NULL, 0);
        return;
    }
    x->status = x->resp.status;
    x->resp_started = true;
    x->resp_end = end;
    struct nvs a;
    nv_response(&a, &x->resp);
    nghttp2_data_provider prd = {.read_callback = read_down};
    if (nghttp2_submit_response(s->ng, x->down_sid, a.v, a.n, end ? NULL : &prd) != 0) {
        x_error(x, "response cannot be sent", NULL);
        nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, x->down_sid, NGHTTP2_INTERNAL_ERROR);
    }
    if (end)
        uv_timer_stop(&x->timeout_timer);
    s->repump = true;
}

/* ---- retries and timeouts ---- */

static void on_retry(uv_timer_t *t);

/* A try failed for cond before its response reached the client:
 * schedules the next one if the policy allows (attempts left, the
 * condition listed, the body still whole in the replay buffer), after
 * Envoy's backoff (base doubling per try, capped, full jitter). */
static bool x_retry_later(struct wp_h2x *x, uint32_t cond, const char *what)
{
    if (x->resp_started || !cond ||
        !((x->retry.on & cond) || cond == WP_H2C_RETRY_PER_TRY_TIMEOUT) ||
        x->tries >= x->retry.attempts || !x->is_replayable)
        return false;
    x_detach_up(x);
    x->tries++;
    uint64_t base = x->retry.backoff_ms ? x->retry.backoff_ms : 25;
    uint64_t cap = x->retry.max_backoff_ms ? x->retry.max_backoff_ms : 10 * base;
    uint64_t b = base << (x->tries - 1 < 10 ? x->tries - 1 : 10);
    if (b > cap)
        b = cap;
    b = b ? arc4random_uniform((uint32_t)b + 1) : 0;
    ZT_DEBUG("waypoint", "h2 retry %u of %u after %s (%s), in %llu ms", x->tries, x->retry.attempts,
             what, x->upstream, (unsigned long long)b);
    uv_timer_start(&x->try_timer, on_retry, b, 0);
    return true;
}

/* A try failed: the next one, else 503 (504 for a per-try timeout), or
 * once a response began, the client's stream is reset. */
static void x_fail(struct wp_h2x *x, uint32_t cond, const char *what, const char *detail)
{
    struct wp_h2c *s = x->s;
    if (x_retry_later(x, cond, what))
        return;
    x_detach_up(x);
    x_error(x, what, detail);
    if (x->resp_started) {
        if (!x->resp_end)
            nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, x->down_sid,
                                      NGHTTP2_INTERNAL_ERROR);
        s->repump = true;
        return;
    }
    if (cond == WP_H2C_RETRY_PER_TRY_TIMEOUT)
        x_local_reply(x, 504, "upstream request timeout\n", NULL, 0);
    else
        x_local_reply(x, 503, "upstream connect error or disconnect/reset before headers\n", NULL,
                      0);
}

static void on_retry(uv_timer_t *t)
{
    struct wp_h2x *x = t->data;
    struct wp_h2c *s = x->s;
    const struct zt_workload *wl = NULL, *prev = x->dst_wl;
    uint16_t port = 0;
    for (int i = 0; i < 5 && x->dst_svc; i++) {
        if (zt_state_pick_endpoint(s->snap, x->dst_svc, x->svc_port, zt_l7_self(s->pod),
                                   arc4random(), &wl, &port) < 0) {
            wl = NULL;
            break;
        }
        if (wl != prev)
            break;
    }
    if (!x->dst_svc) {
        wl = prev;
        port = x->port;
    }
    if (!wl) {
        x_error(x, "no healthy upstream", NULL);
        x_local_reply(x, 503, "no healthy upstream\n", NULL, 0);
    } else {
        x->dst_wl = wl;
        if (x->dst_svc)
            x->port = port;
        /* The body again from the start. */
        zt_buf_release(&x->to_up);
        zt_buf_append(&x->to_up, zt_buf_head(&x->replay), x->replay.len);
        x->try_sent = 0;
        x_send_try(x);
    }
    pump(s);
}

static void on_try_timeout(uv_timer_t *t)
{
    struct wp_h2x *x = t->data;
    if (x->resp_started)
        return;
    x_fail(x, WP_H2C_RETRY_PER_TRY_TIMEOUT, "upstream per-try timeout", NULL);
    pump(x->s);
}

static void on_timeout(uv_timer_t *t)
{
    struct wp_h2x *x = t->data;
    struct wp_h2c *s = x->s;
    if (x->resp_end)
        return;
    x_error(x, "upstream request timeout", NULL);
    if (x->resp_started) {
        x_detach_up(x);
        nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, x->down_sid, NGHTTP2_CANCEL);
    } else {
        uv_timer_stop(&x->try_timer);
        x_local_reply(x, 504, "upstream request timeout\n", NULL, 0);
    }
    pump(s);
}

/* ---- upstream connections ---- */

/* The upstream connection failed or ended: its requests lose their try
 * (retried, answered 503, or reset once their response began). */
/* The connection takes nothing more: its stream is reset (if open) and it
 * is freed by the reaper. Its requests are the caller's. */
static void up_kill(struct wp_h2up *up)
{
    struct wp_h2c *s = up->s;
    if (up->is_dead)
        return;
    up->is_dead = true;
    s->ups_gen++;
    zt_list_remove(&up->link);
    zt_list_insert_tail(&s->w->dead_h2ups, &up->link);
    if (up->waiting)
        zt_hbone_pool_cancel(&up->waiter);
    up->waiting = false;
    wp_stream_detach(&up->st);
    s->repump = true;
}

static void up_fail(struct wp_h2up *up, uint32_t cond, const char *what, const char *detail)
{
    struct wp_h2c *s = up->s;
    if (up->is_dead)
        return;
    up_kill(up);
    up->x = NULL;
    for (struct zt_list_node *n = zt_list_first(&s->reqs), *next; n; n = next) {
        next = zt_list_next(&s->reqs, n);
        struct wp_h2x *x = zt_list_entry(n, struct wp_h2x, link);
        if (x->up == up) {
            x->up_sid = 0; /* nothing to reset: the connection is gone */
            x_fail(x, x->resp_started ? 0 : cond, what, detail);
        }
    }
    s->repump = true;
}

static void up_open(struct wp_h2up *up, struct zt_h2conn *h2)
{
    struct zt_ip ip;
    uint16_t p;
    struct sockaddr_storage ss;
    char authority[64];
    zt_ip_from_sockaddr((struct sockaddr *)&up->hbone, &ip, &p);
    zt_ip_to_sockaddr(&ip, up->port, &ss);
    zt_hbone_format_authority((struct sockaddr *)&ss, authority, sizeof(authority));
    if (wp_stream_connect(&up->st, h2, authority, NULL, 0) < 0)
        up_fail(up, ZT_ROUTE_RETRY_CONNECT_FAILURE, "cannot open an HBONE stream to", authority);
}

static void up_on_pool(struct zt_hbone_waiter *wt, struct zt_h2conn *h2, int err)
{
    struct wp_h2up *up = (struct wp_h2up *)((char *)wt - offsetof(struct wp_h2up, waiter));
    struct wp_h2c *s = up->s;
    up->waiting = false;
    if (err < 0 || !h2)
        up_fail(up, ZT_ROUTE_RETRY_CONNECT_FAILURE, "HBONE connection to the endpoint failed",
                err == ZT_E_IDENTITY ? "server identity not accepted" : zt_strerror(err));
    else
        up_open(up, h2);
    pump(s);
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
static struct wp_h2up *up_get(struct wp_h2c *s, const struct zt_workload *wl, uint16_t port,
                              const struct zt_service *svc, bool is_h1, int *err)
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
        up->h1 = zt_http1_parser_new(true, &h1_ops, up);
    } else {
        if (nghttp2_session_client_new2(&up->ng, client_cbs, up, ng_opts) != 0)
            abort();
        send_settings(up->ng, false);
    }
    struct zt_h2conn *ready = NULL;
    up->waiter.cb = up_on_pool;
    int rc = zt_l7_upstream(s->pod, wl, svc, &up->waiter, &ready, &up->hbone);
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

/* n request body bytes of the current try went on: bytes of an earlier
 * try went back to the client's window then, the others go now. */
static void x_body_sent(struct wp_h2x *x, size_t n)
{
    struct wp_h2c *s = x->s;
    x->try_sent += n;
    if (x->try_sent > x->body_returned) {
        uint64_t give = x->try_sent - x->body_returned;
        x->body_returned = x->try_sent;
        if (!s->ended && x->down_sid > 0)
            nghttp2_session_consume_stream(s->ng, x->down_sid, (size_t)give);
        s->repump = true;
    }
}

static ssize_t read_up(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                       nghttp2_data_source *src, void *user)
{
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, sid);
    if (!x)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n;
    ssize_t rc = take(ng, sid, &x->to_up, x->req_end, &x->req_trailers, buf, len, flags, &n);
    x_body_sent(x, n);
    return rc;
}

/* ---- HTTP/1.1 upstream connections ---- */

/* Methods whose requests carry a body by their meaning: sent with
 * `content-length: 0` when the client's request had none. */
static bool h1_method_has_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

static void h1_queue_scratch(struct wp_h2up *up)
{
    wp_stream_queue(&up->st, zt_buf_head(&up->scratch), up->scratch.len);
    zt_buf_consume(&up->scratch, up->scratch.len);
}

/* Moves the request body from x->to_up into the connection, chunked if
 * the request goes so, while its queue is short; then the last chunk with
 * the client's trailers once the client ended its side. */
static void h1_push(struct wp_h2x *x)
{
    struct wp_h2up *up = x->up;
    if (!up || !up->is_h1 || up->is_dead || up->req_written)
        return;
    size_t sent = 0;
    while (x->to_up.len && up->st.q.len < WP_H2C_QUEUE_HIGH) {
        size_t n = x->to_up.len < WP_H2C_QUEUE_HIGH ? x->to_up.len : WP_H2C_QUEUE_HIGH;
        if (up->req_chunked) {
            zt_http1_encode_chunk_header(&up->scratch, n);
            h1_queue_scratch(up);
        }
        wp_stream_queue(&up->st, zt_buf_head(&x->to_up), n);
        if (up->req_chunked) {
            zt_http1_encode_chunk_end(&up->scratch);
            h1_queue_scratch(up);
        }
        zt_buf_consume(&x->to_up, n);
        sent += n;
    }
    if (sent)
        x_body_sent(x, sent);
    if (x->to_up.len == 0 && x->req_end) {
        zt_buf_release(&x->to_up);
        /* Trailers HTTP/1.1 cannot carry (a bad name or value) are dropped. */
        if (up->req_chunked && zt_http1_encode_last_chunk(&x->req_trailers, &up->scratch) < 0)
            zt_http1_encode_last_chunk(NULL, &up->scratch);
        h1_queue_scratch(up);
        up->req_written = true;
    }
    x->s->repump = true;
}

/* Starts x's try on idle HTTP/1.1 connection up: the head, then the body
 * as it comes. -1 if the head cannot be written as HTTP/1.1 (x answered). */
static int h1_begin(struct wp_h2x *x, struct wp_h2up *up)
{
    struct zt_http_head *h = &x->req;
    bool bodyless = x->req_end && x->to_up.len == 0 && x->req_trailers.n_fields == 0;
    /* HTTP/2 has no framing fields: the body is framed anew (a length the
     * client gave is kept, nghttp2 checked it against its DATA). */
    zt_http1_strip_hop_by_hop(h, false);
    up->req_chunked = !bodyless && !zt_http_head_get(h, "content-length");
    int rc = 0;
    if (up->req_chunked)
        rc = zt_http_head_set(h, "transfer-encoding", "chunked");
    else if (bodyless && h1_method_has_body(h->method) && !zt_http_head_get(h, "content-length"))
        rc = zt_http_head_set(h, "content-length", "0");
    if (rc < 0 || zt_http1_encode_head(h, &up->scratch) < 0) {
        zt_buf_consume(&up->scratch, up->scratch.len);
        up_kill(up);
        x_error(x, "request cannot be written as HTTP/1.1",
                rc < 0 ? "past the head's caps" : "a method, authority or field HTTP/1.1 refuses");
        x_local_reply(x, 400, "request cannot be forwarded\n", NULL, 0);
        return -1;
    }
    h1_queue_scratch(up);
    zt_http1_parser_expect(up->h1, h->method, false);
    up->x = x;
    up->req_written = up->resp_done = up->reusable = false;
    up->body_held = 0;
    up->tx_at_start = up->st.tx;
    x->up = up;
    up->n_reqs = 1;
    h1_push(x);
    return 0;
}

/* x's exchange on up is over (x detached): up is kept for the next
 * request if the whole exchange went through and both sides allow it,
 * else closed. */
static void h1_release(struct wp_h2up *up)
{
    if (up->is_dead)
        return;
    if (!up->resp_done || !up->req_written || !up->reusable) {
        up_kill(up);
        return;
    }
    /* The response's last bytes may still wait for the client: the
     * window is theirs no more (the next response is another's). */
    wp_stream_consume(&up->st, up->body_held);
    up->body_held = 0;
    up->n_done++;
    zt_http1_parser_resume(up->h1);
    zt_http1_parser_shrink(up->h1);
}

static void h1_on_head(void *ud, struct zt_http_head *head, const struct zt_http1_framing *f)
{
    struct wp_h2up *up = ud;
    struct wp_h2x *x = up->x;
    /* Interim answers (100, 103) are not passed on, as over HTTP/2. */
    if (f->is_interim || !x || x->is_local_reply)
        return;
    up->reusable = f->keep_alive;
    zt_http_head_cleanup(&x->resp);
    zt_http1_parser_take_head(up->h1, &x->resp);
    zt_http1_strip_hop_by_hop(&x->resp, false);
    x_response_head(x, !f->has_body);
}

static void h1_on_body(void *ud, const uint8_t *data, size_t len)
{
    struct wp_h2up *up = ud;
    struct wp_h2x *x = up->x;
    if (!x || !x->resp_started || x->is_local_reply)
        return;
    x->resp_bytes += len;
    zt_buf_append(&x->to_down, data, len);
    up->body_held += len;
    up->body_fed += len;
    if (!x->s->ended)
        nghttp2_session_resume_data(x->s->ng, x->down_sid);
    x->s->repump = true;
}

static void h1_on_message_end(void *ud, struct zt_http_head *trailers)
{
    struct wp_h2up *up = ud;
    struct wp_h2x *x = up->x;
    up->resp_done = true;
    if (!x || x->is_local_reply)
        return;
    if (trailers) {
        zt_http1_strip_hop_by_hop(trailers, false);
        zt_http_head_remove(trailers, "content-length");
        for (size_t i = 0; i < trailers->n_fields; i++) {
            const struct zt_http_field *f = &trailers->fields[i];
            if (zt_http_head_add(&x->resp_trailers, f->name, strlen(f->name), f->value,
                                 strlen(f->value)) < 0)
                break;
        }
        int g = parse_grpc_status(&x->resp_trailers);
        if (g >= 0)
            x->grpc_status = g;
    }
    x->resp_end = true;
    uv_timer_stop(&x->timeout_timer);
    if (!x->s->ended)
        nghttp2_session_resume_data(x->s->ng, x->down_sid);
    x->s->repump = true;
}

static const struct zt_http1_ops h1_ops = {
    .on_head = h1_on_head,
    .on_body = h1_on_body,
    .on_message_end = h1_on_message_end,
};

/* Bytes from an HTTP/1.1 endpoint: its response to the exchange in
 * flight. Framing goes back to the window at once, body bytes once the
 * client's nghttp2 took them (read_down). */
static void h1_on_data(struct wp_h2up *up, const uint8_t *data, size_t len)
{
    struct wp_h2x *x = up->x;
    if (!x) {
        ZT_DEBUG("waypoint", "HTTP/1.1 upstream sent %zu bytes while idle: closed", len);
        up_kill(up);
        return;
    }
    size_t used = 0;
    up->body_fed = 0;
    int rc = zt_http1_parse(up->h1, data, len, &used);
    if (up->is_dead)
        return;
    wp_stream_consume(&up->st, len - up->body_fed);
    x = up->x;
    if (rc < 0 || (up->resp_done && used < len)) {
        const char *why = rc < 0 ? zt_http1_parser_reason(up->h1) : "bytes after the response";
        if (!x)
            up_kill(up);
        else if (!x->resp_started) {
            x_error(x, "upstream sent a bad HTTP/1.1 response", why);
            x_local_reply(x, 502, "upstream sent a bad response\n", NULL, 0);
        } else if (!x->resp_end) {
            x_fail(x, 0, "upstream sent a bad HTTP/1.1 response", why);
        } else {
            up->reusable = false;
            x_detach_up(x);
        }
        return;
    }
    if (up->resp_done && x)
        x_detach_up(x);
}

/* The endpoint closed its side: the end of a response read until then,
 * else the exchange (or an idle connection) is over. */
static void h1_on_end(struct wp_h2up *up)
{
    struct wp_h2x *x = up->x;
    if (x && !up->resp_done && zt_http1_parse_eof(up->h1) == 0 && up->resp_done && up->x) {
        up->reusable = false;
        x_detach_up(up->x);
        return;
    }
    /* Nothing of this request went out before the close (a kept-alive
     * connection the endpoint closed meanwhile): as a refused stream. */
    uint32_t cond = x && up->st.tx == up->tx_at_start ? ZT_ROUTE_RETRY_REFUSED_STREAM : 0;
    up_fail(up, cond, "upstream closed the connection",
            x && x->resp_started ? "before the response ended" : "before a response");
}

/* Sends the request on (a first try, or a retry from the replay buffer)
 * to x->dst_wl's port. */
static void x_send_try(struct wp_h2x *x)
{
    struct wp_h2c *s = x->s;
    int err = 0;
    struct wp_h2up *up = up_get(s, x->dst_wl, x->port, x->dst_svc, x->up_h1, &err);
    if (!up) {
        x_fail(x, ZT_ROUTE_RETRY_CONNECT_FAILURE, "no HBONE connection to the endpoint",
               zt_strerror(err));
        return;
    }
    struct zt_ip ip;
    uint16_t p;
    struct sockaddr_storage ss;
    if (zt_ip_from_sockaddr((struct sockaddr *)&up->hbone, &ip, &p) == 0) {
        zt_ip_to_sockaddr(&ip, x->port, &ss);
        zt_hbone_format_authority((struct sockaddr *)&ss, x->upstream, sizeof(x->upstream));
    }
    if (up->is_h1) {
        if (h1_begin(x, up) == 0 && x->retry.per_try_timeout_ms)
            uv_timer_start(&x->try_timer, on_try_timeout, x->retry.per_try_timeout_ms, 0);
        s->repump = true;
        return;
    }
    struct nvs a;
    nv_request(&a, &x->req);
    bool bodyless = x->req_end && x->to_up.len == 0 && x->req_trailers.n_fields == 0;
    nghttp2_data_provider prd = {.read_callback = read_up};
    int32_t sid = nghttp2_submit_request(up->ng, NULL, a.v, a.n, bodyless ? NULL : &prd, x);
    if (sid < 0) {
        x_fail(x, ZT_ROUTE_RETRY_REFUSED_STREAM, "upstream took no new stream",
               nghttp2_strerror(sid));
        return;
    }
    x->up = up;
    x->up_sid = sid;
    up->n_reqs++;
    if (x->retry.per_try_timeout_ms)
        uv_timer_start(&x->try_timer, on_try_timeout, x->retry.per_try_timeout_ms, 0);
    s->repump = true;
}

/* ---- requests: from the client ---- */

/* The protocol a service port declares (unknown for none). */
static enum zt_app_protocol port_protocol(const struct zt_service *svc, uint16_t port)
{
    const struct zt_port_map *pm = svc ? zt_service_find_port(svc, port) : NULL;
    return pm ? (enum zt_app_protocol)pm->app_protocol : ZT_APP_UNKNOWN;
}

/* The request head is complete: routed, then sent on, or answered here. */
static void x_start(struct wp_h2x *x)
{
    struct wp_h2c *s = x->s;
    struct zt_http_head *req = &x->req;
    x->start_ms = uv_now(s->w->loop);
    x->start_ns = uv_hrtime();
    if (!req->authority && zt_http_head_get(req, "host"))
        zt_http_head_set_part(req, &req->authority, zt_http_head_get(req, "host"),
                              strlen(zt_http_head_get(req, "host")));
    zt_http_head_remove(req, "host");
    copy_str(x->method, sizeof(x->method), req->method);
    copy_str(x->path, sizeof(x->path), req->path);
    copy_str(x->authority, sizeof(x->authority), req->authority);
    const char *ct = zt_http_head_get(req, "content-type");
    x->is_grpc = ct && strncmp(ct, "application/grpc", 16) == 0;
    if (x->too_big) {
        x_error(x, "request head passes the caps", NULL);
        x_local_reply(x, 431, "request header fields too large\n", NULL, 0);
        return;
    }
    if (!req->method || !req->path || strcmp(req->method, "CONNECT") == 0) {
        x_error(x, "CONNECT is not proxied", NULL);
        x_local_reply(x, 405, "CONNECT is not proxied\n", NULL, 0);
        return;
    }
    /* The waypoint's span: a child of a valid incoming traceparent (one
     * field only, as W3C asks), else the root of a new trace; sent on
     * after the route's filters. */
    const char *tp =
        zt_http_head_count(req, "traceparent") == 1 ? zt_http_head_get(req, "traceparent") : NULL;
    zt_telemetry_traceparent_child(tp, tp ? strlen(tp) : 0, &x->trace);
    struct wp_denial d;
    int st = wp_authorize(s->w, &s->dst, &s->peer, s->src_identity, req, &d);
    x->shadow = d.shadow;
    if (st) {
        copy_str(x->error, sizeof(x->error), d.details);
        x_local_reply(x, st, d.body, d.hdrs, d.n_hdrs);
        return;
    }
    struct wp_routed r;
    wp_route(s->w, s->snap, &s->dst, req, &r);
    copy_str(x->route, sizeof(x->route), r.route);
    x->retry = r.retry;
    x->timeout_ms = r.timeout_ms;
    if (r.local_status) {
        if (r.error)
            x_error(x, r.error, r.error_detail);
        const char *loc[2] = {"location", r.location};
        x_local_reply(x, r.local_status, r.local_body, loc, r.location[0] ? 1 : 0);
        return;
    }
    if ((st = wp_ratelimit(s->w, &s->dst, &r, s->src_identity, req, &x->rl, &d))) {
        zt_route_table_unref(r.routes);
        copy_str(x->error, sizeof(x->error), d.details);
        x_local_reply(x, st, d.body, d.hdrs, d.n_hdrs);
        return;
    }
    x->routes = r.routes;
    x->filters = r.filters;
    x->dst_svc = r.svc;
    x->svc_port = r.port;
    if (!r.svc) {
        x->dst_wl = s->dst.wl;
        x->port = s->dst.port;
    } else if (zt_state_pick_endpoint(s->snap, r.svc, r.port, zt_l7_self(s->pod), arc4random(),
                                      &x->dst_wl, &x->port) < 0) {
        x_error(x, "no healthy upstream", NULL);
        x_local_reply(x, 503, "no healthy upstream\n", NULL, 0);
        return;
    }
    char tpv[ZT_TELEMETRY_TRACEPARENT_LEN + 1];
    if ((!zt_http_head_get(req, "x-forwarded-proto") &&
         zt_http_head_set(req, "x-forwarded-proto", "http") < 0) ||
        zt_telemetry_traceparent_format(&x->trace, tpv, sizeof(tpv)) < 0 ||
        zt_http_head_set(req, "traceparent", tpv) < 0) {
        x_error(x, "request head cannot be forwarded", "past the head's caps");
        x_local_reply(x, 431, "request header fields too large\n", NULL, 0);
        return;
    }
    x->is_replayable = x->retry.attempts > 0;
    x->up_h1 =
        !x->is_grpc && port_protocol(x->dst_svc ? x->dst_svc : s->dst.svc,
                                     x->dst_svc ? x->svc_port : s->dst.svc_port) == ZT_APP_HTTP11;
    if (x->filters && x->filters->n_mirrors)
        x->mirror = wp_mirror_begin_h2(s->w, s->pod, s->snap, x->filters, s->dst.svc_port, req);
    if (x->req_end) /* no body: the request is whole */
        wp_mirror_end(&x->mirror);
    if (x->timeout_ms)
        uv_timer_start(&x->timeout_timer, on_timeout, x->timeout_ms, 0);
    x_send_try(x);
}

static int srv_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct wp_h2c *s = user;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (f->headers.cat == NGHTTP2_HCAT_REQUEST && !x) {
        x = x_new(s, f->hd.stream_id);
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
    x->req_bytes += len;
    zt_buf_append(&x->to_up, data, len);
    if (x->is_replayable) {
        if (x->replay.len + len <= WP_H2C_REPLAY_MAX) {
            zt_buf_append(&x->replay, data, len);
        } else {
            x->is_replayable = false;
            zt_buf_release(&x->replay);
        }
    }
    if (x->up && x->up_sid > 0)
        nghttp2_session_resume_data(x->up->ng, x->up_sid);
    else
        h1_push(x);
    s->repump = true;
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
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        x_start(x);
        return 0;
    }
    if (end) {
        wp_mirror_trailers(&x->mirror, &x->req_trailers);
        wp_mirror_end(&x->mirror);
    }
    if (end && x->up && x->up_sid > 0)
        nghttp2_session_resume_data(x->up->ng, x->up_sid);
    else if (end)
        h1_push(x);
    s->repump = true;
    return 0;
}

static int srv_stream_close(nghttp2_session *ng, int32_t sid, uint32_t error_code, void *user)
{
    struct wp_h2x *x = nghttp2_session_get_stream_user_data(ng, sid);
    if (!x)
        return 0;
    if (error_code && !x->resp_end)
        x_error(x, "client reset the stream", nghttp2_http2_strerror(error_code));
    x->down_sid = 0;
    x_end(x);
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
        nghttp2_session_resume_data(up->s->ng, x->down_sid);
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
        x_response_head(x, end);
        return 0;
    }
    if (f->hd.type == NGHTTP2_HEADERS) {
        int g = parse_grpc_status(&x->resp_trailers);
        if (g >= 0)
            x->grpc_status = g;
    }
    if (end && !x->is_local_reply) {
        x->resp_end = true;
        uv_timer_stop(&x->timeout_timer);
        if (!up->s->ended)
            nghttp2_session_resume_data(up->s->ng, x->down_sid);
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
        x_detach_up(x);
        return 0;
    }
    if (x->resp_too_big && !x->resp_started) {
        x_error(x, "upstream response head passes the caps", NULL);
        x_local_reply(x, 502, "upstream sent a bad response\n", NULL, 0);
        up->s->repump = true;
        return 0;
    }
    uint32_t cond = error_code == NGHTTP2_REFUSED_STREAM ? ZT_ROUTE_RETRY_REFUSED_STREAM : 0;
    x_fail(x, cond, "upstream stream closed",
           error_code ? nghttp2_http2_strerror(error_code) : "before the response ended");
    up->s->repump = true;
    return 0;
}

/* ---- the session ---- */

static void session_end(struct wp_h2c *s)
{
    if (s->ended)
        return;
    while (!zt_list_empty(&s->reqs)) {
        struct wp_h2x *x = zt_list_entry(zt_list_first(&s->reqs), struct wp_h2x, link);
        if (x->start_ms && !x->resp_end)
            x_error(x, "session ended before the response", NULL);
        x_end(x);
    }
    s->ended = true;
    while (!zt_list_empty(&s->ups)) {
        struct wp_h2up *up = zt_list_entry(zt_list_first(&s->ups), struct wp_h2up, link);
        up->is_dead = true;
        if (up->waiting)
            zt_hbone_pool_cancel(&up->waiter);
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

static void pump(struct wp_h2c *s)
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
        if (pump_one(s->ng, &s->down) < 0) {
            s->pumping = false;
            wp_stream_reset(&s->down);
            session_end(s);
            return;
        }
        for (struct zt_list_node *n = zt_list_first(&s->ups); n && !s->ended;) {
            struct wp_h2up *up = zt_list_entry(n, struct wp_h2up, link);
            unsigned gen = s->ups_gen;
            if (!up->is_h1 && pump_one(up->ng, &up->st) < 0)
                up_fail(up, 0, "upstream HTTP/2 session failed", NULL);
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
    if ((!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng)) ||
        (s->down.rx_eof && zt_list_empty(&s->reqs)))
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
        pump(s);
        if (!s->ended) {
            wp_stream_end(&s->down);
            session_end(s);
        }
        return;
    }
    if (s->down.q.len < WP_H2C_QUEUE_HIGH)
        wp_stream_consume(st, len);
    else
        s->down_unreturned += len;
    pump(s);
}

static void down_on_end(struct wp_stream *st)
{
    pump(st->owner);
}

static void down_on_close(struct wp_stream *st, int error)
{
    session_end(st->owner);
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
        pump(s);
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
    up_fail(up, ZT_ROUTE_RETRY_CONNECT_FAILURE, "upstream HBONE returned status", code);
    pump(up->s);
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
        h1_on_data(up, data, len);
        pump(s);
        return;
    }
    ssize_t n = nghttp2_session_mem_recv(up->ng, data, len);
    if (n < 0)
        up_fail(up, 0, "upstream sent bad HTTP/2", nghttp2_strerror((int)n));
    else
        wp_stream_consume(st, len);
    pump(s);
}

static void up_on_end(struct wp_stream *st)
{
    struct wp_h2up *up = st->owner;
    if (up->is_h1)
        h1_on_end(up);
    else
        up_fail(up, 0, "upstream closed the connection", NULL);
    pump(up->s);
}

static void up_on_close(struct wp_stream *st, int error)
{
    struct wp_h2up *up = st->owner;
    up_fail(up, up->st.rx == 0 ? ZT_ROUTE_RETRY_CONNECT_FAILURE : 0, "upstream stream closed",
            error ? zt_strerror(error) : NULL);
    pump(up->s);
}

/* Room toward an HTTP/1.1 endpoint: more of the request body (and the
 * client's window back). */
static void up_on_sent(struct wp_stream *st, size_t n)
{
    struct wp_h2up *up = st->owner;
    if (up->is_h1 && up->x) {
        h1_push(up->x);
        pump(up->s);
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

static struct wp_h2c *session_new(struct wp_worker *w, struct zt_pod_inst *pod,
                                  const struct wp_dest *d, const struct sockaddr_storage *peer,
                                  const char *identity)
{
    pthread_once(&cbs_once, cbs_init);
    struct wp_h2c *s = zt_xcalloc(1, sizeof(*s));
    s->w = w;
    s->pod = pod;
    s->snap = zt_l7_state(pod);
    zt_state_ref(s->snap);
    s->dst = *d;
    s->peer = *peer;
    copy_str(s->src_identity, sizeof(s->src_identity), identity);
    zt_list_init(&s->ups);
    zt_list_init(&s->reqs);
    wp_stream_init(&s->down, &down_ops, s);
    if (nghttp2_session_server_new2(&s->ng, server_cbs, s, ng_opts) != 0)
        abort();
    send_settings(s->ng, true);
    zt_list_insert_head(&w->h2cs, &s->link);
    zt_l7_hold(pod);
    s->held = true;
    return s;
}

void wp_h2c_adopt(struct wp_worker *w, struct zt_pod_inst *pod, struct wp_stream *down,
                  const struct wp_dest *d, const struct sockaddr_storage *peer,
                  const char *identity, const uint8_t *initial, size_t n, size_t unreturned)
{
    struct wp_h2c *s = session_new(w, pod, d, peer, identity);
    wp_stream_move(&s->down, down);
    s->down_unreturned = unreturned;
    if (n)
        down_on_data(&s->down, initial, n);
    else
        pump(s);
    if (!s->ended && s->down.rx_eof)
        down_on_end(&s->down);
}

void wp_h2cs_pod_close(struct wp_worker *w, struct zt_pod_inst *pod)
{
    for (struct zt_list_node *n = zt_list_first(&w->h2cs), *next; n; n = next) {
        next = zt_list_next(&w->h2cs, n);
        struct wp_h2c *s = zt_list_entry(n, struct wp_h2c, link);
        if (s->pod == pod) {
            wp_stream_reset(&s->down);
            session_end(s);
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
        nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(s->ng), NGHTTP2_NO_ERROR,
                              NULL, 0);
        pump(s);
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
        nghttp2_session_del(s->ng);
        zt_state_unref(s->snap);
        free(s);
    }
}
