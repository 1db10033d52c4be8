/* The waypoint's request engine (h2c_int.h): one exchange from the
 * client's complete head to the end of its response, whichever front it
 * came from and whichever protocol its upstream speaks: routing, policies,
 * rate limits, mirrors, the upstream connection, retries with Istio's
 * defaults or the route's (gRPC's conditions read from a trailers-only
 * response: grpc-status 14 unavailable, 1 cancelled; a request whose body
 * passed WP_H2C_REPLAY_MAX is never retried), timeouts, local replies
 * (gRPC's form for gRPC requests: 200 with grpc-status mapped from the
 * HTTP status as Envoy does) and the access line.
 *
 * Objects end at safe points: an exchange once its timers have closed. */
#include "waypoint/h2c_int.h"
#include "waypoint/mirror.h"

#include "base/random.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "state/ip.h"

#include <stdlib.h>
#include <string.h>

static bool x_retry_later(struct wp_h2x *x, uint32_t cond, const char *what);
static void x_send_try(struct wp_h2x *x);

void wp_h2x_error(struct wp_h2x *x, const char *what, const char *detail)
{
    if (!x->error[0])
        snprintf(x->error, sizeof(x->error), "%s%s%s", what, detail ? ": " : "",
                 detail ? detail : "");
}

int wp_h2x_grpc_status(const struct zt_http_head *h)
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
        .protocol = s->req_p ? "HTTP/1.1" : "HTTP/2",
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
void wp_h2x_detach_up(struct wp_h2x *x)
{
    struct wp_h2up *up = x->up;
    if (!up)
        return;
    x->up = NULL;
    up->n_reqs--;
    if (up->is_h1) {
        up->x = NULL;
        wp_h1up_release(up);
    } else if (x->up_sid > 0) {
        wp_h2up_cancel(up, x->up_sid);
    }
    x->up_sid = 0;
    uv_timer_stop(&x->try_timer);
}

/* The client's side is gone: the request ends (logged once). */
void wp_h2x_end(struct wp_h2x *x)
{
    struct wp_h2c *s = x->s;
    if (x->start_ms) {
        if (!x->resp_end && !x->error[0])
            wp_h2x_error(x, "stream ended before the response", NULL);
        x_log(x);
    }
    wp_h2x_detach_up(x);
    wp_mirror_abandon(&x->mirror);
    if (!s->ended)
        s->front->forget(x);
    zt_route_table_unref(x->routes);
    x->routes = NULL;
    zt_list_remove(&x->link);
    uv_close((uv_handle_t *)&x->try_timer, on_x_timer_closed);
    uv_close((uv_handle_t *)&x->timeout_timer, on_x_timer_closed);
}

struct wp_h2x *wp_h2x_new(struct wp_h2c *s, int32_t sid)
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
void wp_h2x_local_reply(struct wp_h2x *x, int status, const char *body, const char *const *hdrs,
                        size_t n_hdrs)
{
    struct wp_h2c *s = x->s;
    struct zt_http_head *h = &x->resp;
    char num[24], msg[128];
    wp_h2x_detach_up(x);
    uv_timer_stop(&x->timeout_timer);
    x->is_local_reply = true;
    x->resp_started = x->resp_end = true;
    x->status = status;
    zt_buf_release(&x->to_down);
    zt_http_head_reset(h, true);
    zt_http_head_reset(&x->resp_trailers, true);
    bool end = true;
    /* A handful of short fields: within any cap. */
    if (x->is_grpc) {
        x->grpc_status = grpc_from_http(status);
        h->status = 200;
        snprintf(num, sizeof(num), "%d", x->grpc_status);
        zt_http_head_set(h, "content-type", "application/grpc");
        zt_http_head_set(h, "grpc-status", num);
        /* The body's text as the message (Envoy's local reply body). */
        snprintf(msg, sizeof(msg), "%s", body);
        msg[strcspn(msg, "\n")] = '\0';
        zt_http_head_set(h, "grpc-message", msg);
    } else {
        size_t blen = strcmp(x->method, "HEAD") == 0 ? 0 : strlen(body);
        h->status = status;
        snprintf(num, sizeof(num), "%zu", strlen(body));
        zt_http_head_set(h, "content-type", "text/plain");
        zt_http_head_set(h, "content-length", num);
        for (size_t i = 0; i < n_hdrs; i++)
            zt_http_head_add(h, hdrs[2 * i], strlen(hdrs[2 * i]), hdrs[2 * i + 1],
                             strlen(hdrs[2 * i + 1]));
        zt_buf_append(&x->to_down, body, blen);
        x->resp_bytes += blen;
        end = blen == 0;
    }
    s->front->respond(x, end);
    s->repump = true;
}

/* The response head from the upstream: a retry if it is a retriable
 * answer, else on to the client (after the route's response filters). */
void wp_h2x_response_head(struct wp_h2x *x, bool end)
{
    struct wp_h2c *s = x->s;
    if (end)
        x->grpc_status = wp_h2x_grpc_status(&x->resp);
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
        wp_h2x_error(x, "response filters pass the head's caps", NULL);
        wp_h2x_local_reply(x, 502, "upstream response cannot be forwarded\n", NULL, 0);
        return;
    }
    x->status = x->resp.status;
    x->resp_started = true;
    x->resp_end = end;
    s->front->respond(x, end);
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
    wp_h2x_detach_up(x);
    x->tries++;
    uint64_t base = x->retry.backoff_ms ? x->retry.backoff_ms : 25;
    uint64_t cap = x->retry.max_backoff_ms ? x->retry.max_backoff_ms : 10 * base;
    uint64_t b = base << (x->tries - 1 < 10 ? x->tries - 1 : 10);
    if (b > cap)
        b = cap;
    b = b ? zt_random_below((uint32_t)b + 1) : 0;
    ZT_DEBUG("waypoint", "h2 retry %u of %u after %s (%s), in %llu ms", x->tries, x->retry.attempts,
             what, x->upstream, (unsigned long long)b);
    uv_timer_start(&x->try_timer, on_retry, b, 0);
    return true;
}

/* A try failed: the next one, else 503 (504 for a per-try timeout), or
 * once a response began, the client's stream is reset. */
void wp_h2x_fail(struct wp_h2x *x, uint32_t cond, const char *what, const char *detail)
{
    struct wp_h2c *s = x->s;
    if (x_retry_later(x, cond, what))
        return;
    wp_h2x_detach_up(x);
    wp_h2x_error(x, what, detail);
    if (x->resp_started) {
        if (!x->resp_end)
            s->front->reset(x, NGHTTP2_INTERNAL_ERROR);
        s->repump = true;
        return;
    }
    if (cond == WP_H2C_RETRY_PER_TRY_TIMEOUT)
        wp_h2x_local_reply(x, 504, "upstream request timeout\n", NULL, 0);
    else
        wp_h2x_local_reply(x, 503, "upstream connect error or disconnect/reset before headers\n",
                           NULL, 0);
}

static void on_retry(uv_timer_t *t)
{
    struct wp_h2x *x = t->data;
    struct wp_h2c *s = x->s;
    const struct zt_workload *wl = NULL, *prev = x->dst_wl;
    uint16_t port = 0;
    for (int i = 0; i < 5 && x->dst_svc; i++) {
        if (zt_state_pick_endpoint(s->snap, x->dst_svc, x->svc_port, zt_l7_self(s->pod),
                                   zt_random_u32(), &wl, &port) < 0) {
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
        wp_h2x_error(x, "no healthy upstream", NULL);
        wp_h2x_local_reply(x, 503, "no healthy upstream\n", NULL, 0);
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
    wp_h2c_pump(s);
}

static void on_try_timeout(uv_timer_t *t)
{
    struct wp_h2x *x = t->data;
    if (x->resp_started)
        return;
    wp_h2x_fail(x, WP_H2C_RETRY_PER_TRY_TIMEOUT, "upstream per-try timeout", NULL);
    wp_h2c_pump(x->s);
}

static void on_timeout(uv_timer_t *t)
{
    struct wp_h2x *x = t->data;
    struct wp_h2c *s = x->s;
    if (x->resp_end)
        return;
    wp_h2x_error(x, "upstream request timeout", NULL);
    if (x->resp_started) {
        wp_h2x_detach_up(x);
        s->front->reset(x, NGHTTP2_CANCEL);
    } else {
        uv_timer_stop(&x->try_timer);
        wp_h2x_local_reply(x, 504, "upstream request timeout\n", NULL, 0);
    }
    wp_h2c_pump(s);
}

/* Sends the request on (a first try, or a retry from the replay buffer)
 * to x->dst_wl's port. */
static void x_send_try(struct wp_h2x *x)
{
    struct wp_h2c *s = x->s;
    int err = 0;
    struct wp_h2up *up =
        wp_h2up_get(s, x->dst_wl, x->port, x->dst_svc, x->svc_port, x->up_h1, &err);
    if (!up) {
        wp_h2x_fail(x, ZT_ROUTE_RETRY_CONNECT_FAILURE, "no HBONE connection to the endpoint",
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
        if (wp_h1up_begin(x, up) == 0 && x->retry.per_try_timeout_ms)
            uv_timer_start(&x->try_timer, on_try_timeout, x->retry.per_try_timeout_ms, 0);
        s->repump = true;
        return;
    }
    wp_h2up_submit(x, up);
    if (x->up && x->retry.per_try_timeout_ms)
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
void wp_h2x_start(struct wp_h2x *x)
{
    struct wp_h2c *s = x->s;
    struct zt_http_head *req = &x->req;
    x->start_ms = uv_now(s->w->loop);
    x->start_ns = uv_hrtime();
    if (!req->authority && zt_http_head_get(req, "host"))
        zt_http_head_set_part(req, &req->authority, zt_http_head_get(req, "host"),
                              strlen(zt_http_head_get(req, "host")));
    zt_http_head_remove(req, "host");
    wp_h2x_copy(x->method, sizeof(x->method), req->method);
    wp_h2x_copy(x->path, sizeof(x->path), req->path);
    wp_h2x_copy(x->authority, sizeof(x->authority), req->authority);
    const char *ct = zt_http_head_get(req, "content-type");
    x->is_grpc = ct && strncmp(ct, "application/grpc", 16) == 0;
    if (x->too_big) {
        wp_h2x_error(x, "request head passes the caps", NULL);
        wp_h2x_local_reply(x, 431, "request header fields too large\n", NULL, 0);
        return;
    }
    if (x->is_upgrade) {
        wp_h2x_error(x, "upgrade toward a port declared HTTP/2", NULL);
        wp_h2x_local_reply(x, 501, "upgrade not supported toward this port\n", NULL, 0);
        return;
    }
    if (!req->method || !req->path || strcmp(req->method, "CONNECT") == 0) {
        wp_h2x_error(x, "CONNECT is not proxied", NULL);
        wp_h2x_local_reply(x, 405, "CONNECT is not proxied\n", NULL, 0);
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
        wp_h2x_copy(x->error, sizeof(x->error), d.details);
        wp_h2x_local_reply(x, st, d.body, d.hdrs, d.n_hdrs);
        return;
    }
    struct wp_routed r;
    wp_route(s->w, s->snap, &s->dst, req, &r);
    wp_h2x_copy(x->route, sizeof(x->route), r.route);
    x->retry = r.retry;
    x->timeout_ms = r.timeout_ms;
    if (r.local_status) {
        if (r.error)
            wp_h2x_error(x, r.error, r.error_detail);
        const char *loc[2] = {"location", r.location};
        wp_h2x_local_reply(x, r.local_status, r.local_body, loc, r.location[0] ? 1 : 0);
        return;
    }
    if ((st = wp_ratelimit(s->w, &s->dst, &r, s->src_identity, req, &x->rl, &d))) {
        zt_route_table_unref(r.routes);
        wp_h2x_copy(x->error, sizeof(x->error), d.details);
        wp_h2x_local_reply(x, st, d.body, d.hdrs, d.n_hdrs);
        return;
    }
    x->routes = r.routes;
    x->filters = r.filters;
    x->dst_svc = r.svc;
    x->svc_port = r.port;
    if (!r.svc) {
        x->dst_wl = s->dst.wl;
        x->port = s->dst.port;
    } else if (zt_state_pick_endpoint(s->snap, r.svc, r.port, zt_l7_self(s->pod), zt_random_u32(),
                                      &x->dst_wl, &x->port) < 0) {
        wp_h2x_error(x, "no healthy upstream", NULL);
        wp_h2x_local_reply(x, 503, "no healthy upstream\n", NULL, 0);
        return;
    }
    char tpv[ZT_TELEMETRY_TRACEPARENT_LEN + 1];
    if ((!zt_http_head_get(req, "x-forwarded-proto") &&
         zt_http_head_set(req, "x-forwarded-proto", "http") < 0) ||
        zt_telemetry_traceparent_format(&x->trace, tpv, sizeof(tpv)) < 0 ||
        zt_http_head_set(req, "traceparent", tpv) < 0) {
        wp_h2x_error(x, "request head cannot be forwarded", "past the head's caps");
        wp_h2x_local_reply(x, 431, "request header fields too large\n", NULL, 0);
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

void wp_h2x_body(struct wp_h2x *x, const uint8_t *data, size_t len)
{
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
        wp_h1up_push(x);
    x->s->repump = true;
}

void wp_h2x_req_end(struct wp_h2x *x)
{
    x->req_end = true;
    wp_mirror_trailers(&x->mirror, &x->req_trailers);
    wp_mirror_end(&x->mirror);
    if (x->up && x->up_sid > 0)
        nghttp2_session_resume_data(x->up->ng, x->up_sid);
    else
        wp_h1up_push(x);
    x->s->repump = true;
}

void wp_h2x_down_took(struct wp_h2x *x, size_t n)
{
    struct wp_h2up *up = x->up;
    if (!n || !up)
        return;
    if (x->up_sid > 0) {
        nghttp2_session_consume_stream(up->ng, x->up_sid, n);
        x->s->repump = true;
    } else if (up->is_h1) {
        size_t k = n < up->body_held ? n : (size_t)up->body_held;
        up->body_held -= k;
        wp_stream_consume(&up->st, k);
    }
}

/* Bytes of an earlier try went back to the client's window then; the
 * others go now. */
void wp_h2x_body_sent(struct wp_h2x *x, size_t n)
{
    struct wp_h2c *s = x->s;
    x->try_sent += n;
    if (x->try_sent > x->body_returned) {
        uint64_t give = x->try_sent - x->body_returned;
        x->body_returned = x->try_sent;
        if (!s->ended)
            s->front->consumed(x, (size_t)give);
        s->repump = true;
    }
}
