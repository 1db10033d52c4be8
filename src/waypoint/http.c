/* HTTP/1.1 sessions: a client's CONNECT stream carrying HTTP/1.1 requests,
 * each sent on to an endpoint of the destination over the waypoint's own
 * HBONE stream to it, and the responses back.
 *
 * One exchange at a time per session (HTTP/1.1 has no multiplexing): the
 * request parser pauses after each request, and bytes the client pipelined
 * behind it wait, unparsed and unreturned to its window, until the response
 * has ended. The upstream stream (one TCP connection to the endpoint's app)
 * is kept between requests while the next request goes to the same
 * endpoint and both sides keep the connection alive.
 *
 * Messages are re-framed, never copied as they came: heads are parsed and
 * written anew (hop-by-hop fields dropped, RFC 9110 7.6.1), bodies pass as
 * de-chunked payload with our own Content-Length or chunked framing. A
 * request the parser refuses (smuggling, oversized heads) gets its status
 * (400, 413, 431, 501, 505) and the session closes; the waypoint's other
 * sessions never see it.
 *
 * Flow control: bytes parsed from one side are returned to its window only
 * while the queue toward the other side is short (WP_HTTP_QUEUE_HIGH); a
 * slow reader so stops its own sender, as in tunnel.c.
 *
 * Upgrades (WebSocket): the request's Upgrade goes on; a 101 turns the
 * session into a byte tunnel both ways, any other answer keeps it HTTP. */
#include "waypoint/waypoint_int.h"
#include "waypoint/mirror.h"
#include "waypoint/stream.h"

#include "base/random.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "http/http1.h"
#include "state/ip.h"
#include "telemetry/accesslog.h"
#include "telemetry/headers.h"
#include "tls/spiffe.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Above this many bytes queued toward one side, the other side's window
 * stays closed until they are sent. */
#define WP_HTTP_QUEUE_HIGH (256 * 1024)

enum wp_http_state {
    WP_H_SNIFF,    /* the first bytes decide: HTTP/2 (its preface), HTTP/1, or (a port
                    * of unknown protocol only) TCP */
    WP_H_IDLE,     /* waiting for a request head */
    WP_H_EXCHANGE, /* a request in flight: its body and/or its response */
    WP_H_TUNNEL,   /* upgraded: bytes both ways */
    WP_H_CLOSING,  /* the last response is queued; the stream ends after it */
    WP_H_ENDED,
};

/* The current exchange, for its access line. */
struct wp_exchange {
    char method[16];
    char path[256];
    char authority[128];
    char upstream[64];
    int status;
    bool is_head, is_upgrade, req_chunked, req_done, resp_started, resp_done, resp_chunked;
    bool down_keep; /* the client's connection outlives this exchange */
    bool up_keep;   /* the upstream connection does */
    bool local_reply;
    uint8_t shadow;  /* WP_SHADOW_* */
    struct wp_rl rl; /* the rate limit's fields for the response */
    uint64_t start_ms, start_ns, req_bytes, resp_bytes;
    const struct zt_workload *dst_wl;
    const struct zt_service *dst_svc; /* the service the request went to */
    /* The route that took it (held while the exchange lives), for the
     * response filters; NULL for the default route. */
    struct zt_route_table *routes;
    const struct zt_route_filters *filters;
    char route[128]; /* "<ns>/<name>" of the route, for the log */
    /* Retries: the policy, the tries so far, and the request as sent while
     * it fits WP_RETRY_BUFFER_MAX (a longer one is never retried). */
    struct zt_route_retry retry;
    uint32_t timeout_ms; /* the route's, 0: none */
    unsigned tries;
    bool is_replayable;
    bool is_retry_pending; /* a retriable answer: the upstream is dropped after the parse */
    char req_method[16];   /* for the retried try's response parser */
    uint16_t svc_port;     /* the port of dst_svc the request went to */
    struct zt_buf replay;
    struct wp_mirror *mirror; /* RequestMirror copies while the request arrives */
    /* W3C trace context: the waypoint's span (parent_id is its id). */
    struct zt_telemetry_traceparent trace;
    char error[384];
};

/* A keep-alive session idle for this long holds no storage an exchange
 * needs (the parsers', the exchange, buffers), so that idle connections
 * cost little and a burst of them leaves no high-water heap behind; a busy
 * one keeps them from one request to the next rather than freeing and
 * allocating them again each time. */
#define WP_HTTP_IDLE_SHRINK_MS 20

/* The most request bytes kept for a retry (Envoy keeps up to its buffer
 * limit; a waypoint's requests are small, and memory per request stays
 * bounded). */
#define WP_RETRY_BUFFER_MAX (64 * 1024)
/* A replay buffer up to this size is kept from one request to the next. */
#define WP_REPLAY_KEEP (16 * 1024)

struct wp_http {
    struct wp_worker *w;
    struct zt_pod_inst *pod;
    struct zt_list_node link; /* in w->https, then w->dead_https */
    enum wp_http_state state;
    struct wp_stream down, up;
    struct zt_hbone_waiter waiter;
    bool up_waiting;                  /* waiter pending in the pool */
    const struct zt_workload *up_wl;  /* endpoint of the upstream stream, NULL: none */
    uint16_t up_port;                 /* its target port */
    struct sockaddr_storage up_hbone; /* its ip:15008 */
    struct zt_http1_parser *req_p, *resp_p;
    struct zt_buf din;      /* client bytes not parsed yet */
    size_t down_unreturned; /* client bytes parsed, not yet returned to its window */
    size_t up_unreturned;   /* upstream bytes parsed, not yet returned */
    const struct zt_state *snap;
    struct wp_dest dst; /* what the CONNECT named */
    struct sockaddr_storage peer;
    char *src_identity;    /* the client's SPIFFE id (at most ZT_SPIFFE_ID_MAX bytes), "" if none */
    struct zt_buf scratch; /* head encoding */
    /* The current exchange: allocated by ex_of when first touched, freed
     * by wp_https_tick once the session has been idle a while (an idle
     * keep-alive session holds none). NULL reads as all zero. */
    struct wp_exchange *exp;
    uint64_t idle_since;     /* loop time the last exchange ended (0: busy or never) */
    uint64_t sniff_deadline; /* loop time: a silent client is relayed as TCP */
    uint64_t start_ms;
    bool is_tcp;        /* not HTTP after all: relayed as TCP, logged as a connection */
    bool is_declared;   /* the port is declared HTTP (else sniffed: TCP possible) */
    bool in_req_parse;  /* inside zt_http1_parse of req_p */
    bool in_resp_parse; /* inside zt_http1_parse of resp_p: a new request
                         * could replace resp_p under its own parse */
    bool held;
    /* Retry backoff and the route timeout; the session is freed once both
     * have closed. */
    uv_timer_t retry_timer, timeout_timer;
    int handles;
};

static const struct wp_stream_ops down_ops, up_ops;
static const struct zt_http1_ops req_ops, resp_ops;

static struct wp_exchange *ex_of(struct wp_http *h)
{
    if (!h->exp)
        h->exp = zt_xcalloc(1, sizeof(*h->exp));
    return h->exp;
}

/* s (NULL: "") into dst, cut to cap - 1 bytes, as snprintf "%s" would. */
static void copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = s ? strnlen(s, cap - 1) : 0;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

/* ---- access lines ---- */

static void log_exchange(struct wp_http *h)
{
    struct wp_exchange *x = ex_of(h);
    struct wp_request_record r = {
        .peer = &h->peer,
        .src_identity = h->src_identity,
        .snap = h->snap,
        .network = zt_l7_network(h->pod),
        .dst_svc = x->dst_svc,
        .dst_wl = x->dst_wl,
        .upstream = x->upstream,
        .method = x->method,
        .path = x->path,
        .authority = x->authority,
        .protocol = "HTTP/1.1",
        .route = x->route,
        .error = x->error,
        .trace_id = x->trace.trace_id[0] ? x->trace.trace_id : NULL,
        .span_id = x->trace.parent_id[0] ? x->trace.parent_id : NULL,
        .is_local_reply = x->local_reply,
        .shadow = x->shadow,
        .status = x->status,
        .grpc_status = -1,
        .start_ms = x->start_ms,
        .start_ns = x->start_ns,
        .req_bytes = x->req_bytes,
        .resp_bytes = x->resp_bytes,
    };
    wp_log_request(h->w, &r);
}

static void ex_fail(struct wp_http *h, const char *what, const char *detail)
{
    struct wp_exchange *x = ex_of(h);
    if (!x->error[0])
        snprintf(x->error, sizeof(x->error), "%s%s%s", what, detail ? ": " : "",
                 detail ? detail : "");
}

/* Forgets the exchange (its route table reference too). */
static void ex_reset(struct wp_http *h)
{
    if (h->handles == 2) {
        uv_timer_stop(&h->retry_timer);
        uv_timer_stop(&h->timeout_timer);
    }
    if (!h->exp)
        return;
    zt_route_table_unref(h->exp->routes);
    wp_mirror_abandon(&h->exp->mirror);
    /* The replay buffer's storage serves the next request (idle_shrink
     * frees it), unless a long request grew it. */
    struct zt_buf replay = h->exp->replay;
    if (replay.cap > WP_REPLAY_KEEP)
        zt_buf_release(&replay);
    replay.len = replay.off = 0;
    memset(h->exp, 0, sizeof(*h->exp));
    h->exp->replay = replay;
}

/* Forgets the upstream stream (reset if open, its queue dropped) and any
 * wait for its connection; the next request opens another. */
static void drop_upstream(struct wp_http *h)
{
    h->up_wl = NULL;
    if (h->up_waiting)
        zt_l7_upstream_cancel(&h->waiter);
    h->up_waiting = false;
    wp_stream_detach(&h->up);
    wp_stream_cleanup(&h->up);
    wp_stream_init(&h->up, &up_ops, h);
}

/* The access line of a session relayed as TCP, as tunnel.c's. */
static void log_tcp(struct wp_http *h)
{
    struct wp_tcp_record r = {.peer = &h->peer,
                              .src_identity = h->src_identity,
                              .svc = h->dst.svc,
                              .wl = ex_of(h)->dst_wl,
                              .hbone_dst = &h->up_hbone,
                              .port = h->up_port,
                              .bytes_sent = h->up.rx,
                              .bytes_recv = h->down.rx,
                              .start_ms = h->start_ms,
                              .error = ex_of(h)->error};
    wp_log_tcp(h->w, &r);
}

/* ---- lifecycle ---- */

/* The session's last handle closed: the reaper frees it. */
static void on_timer_closed(uv_handle_t *t)
{
    struct wp_http *h = t->data;
    if (--h->handles == 0)
        zt_list_insert_head(&h->w->dead_https, &h->link);
}

static void session_end(struct wp_http *h)
{
    if (h->state == WP_H_ENDED)
        return;
    if (h->is_tcp) {
        log_tcp(h);
        ex_reset(h);
    }
    if (h->exp && h->exp->start_ms && !h->exp->resp_done) {
        ex_fail(h, "session ended before the response", NULL);
        log_exchange(h);
    }
    ex_reset(h);
    h->state = WP_H_ENDED;
    if (h->up_waiting)
        zt_l7_upstream_cancel(&h->waiter);
    h->up_waiting = false;
    wp_stream_detach(&h->up);
    wp_stream_detach(&h->down);
    if (h->held)
        zt_l7_release(h->pod);
    h->held = false;
    zt_list_remove(&h->link);
    uv_close((uv_handle_t *)&h->retry_timer, on_timer_closed);
    uv_close((uv_handle_t *)&h->timeout_timer, on_timer_closed);
}

/* ---- flow control ---- */

static void return_down(struct wp_http *h)
{
    if (h->down_unreturned && h->up.q.len < WP_HTTP_QUEUE_HIGH) {
        size_t n = h->down_unreturned;
        h->down_unreturned = 0;
        wp_stream_consume(&h->down, n);
    }
}

static void return_up(struct wp_http *h)
{
    if (h->up_unreturned && h->down.q.len < WP_HTTP_QUEUE_HIGH) {
        size_t n = h->up_unreturned;
        h->up_unreturned = 0;
        wp_stream_consume(&h->up, n);
    }
}

/* ---- local replies ---- */

/* A response of the waypoint's own (no upstream answered, or the request
 * was refused); the session ends after it, as Envoy's local replies to a
 * broken exchange do. */
static void local_reply(struct wp_http *h, int status, const char *body, const char *extra)
{
    struct wp_exchange *x = ex_of(h);
    char head[2560];
    size_t blen = x->is_head ? 0 : strlen(body);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n"
                     "%sconnection: close\r\n\r\n",
                     status, zt_http1_reason_phrase(status), strlen(body), extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof(head))
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 500 Internal Server Error\r\n"
                     "content-length: 0\r\nconnection: close\r\n\r\n");
    x->status = status;
    x->local_reply = true;
    x->resp_bytes += (uint64_t)n + blen;
    wp_stream_write(&h->down, head, (size_t)n);
    wp_stream_write(&h->down, body, blen);
    if (!x->start_ms) {
        x->start_ms = uv_now(h->w->loop);
        x->start_ns = uv_hrtime();
    }
    log_exchange(h);
    ex_reset(h);
    h->state = WP_H_CLOSING;
    drop_upstream(h);
    wp_stream_end(&h->down);
}

/* ---- the exchange ---- */

static void feed_requests(struct wp_http *h);
static void on_idle(uv_timer_t *t);

/* Both the request and its response ended: log, then the next request
 * (parsed now unless we are inside the request parser, whose caller goes
 * on) or the end. */
static void exchange_done(struct wp_http *h)
{
    struct wp_exchange *x = ex_of(h);
    if (!x->req_done || !x->resp_done || h->state != WP_H_EXCHANGE)
        return;
    log_exchange(h);
    bool keep = x->down_keep;
    ex_reset(h);
    if (!keep) {
        h->state = WP_H_CLOSING;
        wp_stream_end(&h->down);
        wp_stream_end(&h->up);
        return;
    }
    h->state = WP_H_IDLE;
    /* Its buffers are kept for the next request a while (idle_shrink):
     * the retry timer, idle between exchanges, says when. */
    h->idle_since = uv_now(h->w->loop);
    if (h->handles == 2)
        uv_timer_start(&h->retry_timer, on_idle, WP_HTTP_IDLE_SHRINK_MS, 0);
    /* From inside a parser, its caller parses the next request once the
     * parser has returned (feed_requests' loop, up_on_data). */
    if (!h->in_req_parse && !h->in_resp_parse)
        feed_requests(h);
}

/* The upstream failed before its response began: a 503 of our own. */
static bool maybe_retry(struct wp_http *h, uint32_t cond, const char *why);
/* A cond for maybe_retry: the try ran past its per-try timeout, retried
 * while attempts remain whatever `on` lists (Istio's backendRequest with a
 * retry). */
#define WP_RETRY_PER_TRY_TIMEOUT 0x80000000u
static void start_try_timer(struct wp_http *h);

/* cond: the retry condition this failure is (ZT_ROUTE_RETRY_*), 0 for
 * one never retried. */
static void upstream_failed(struct wp_http *h, uint32_t cond, const char *what, const char *detail)
{
    struct wp_exchange *x = ex_of(h);
    drop_upstream(h);
    if (h->state == WP_H_TUNNEL) {
        wp_stream_reset(&h->down); /* a TCP relay without its upstream */
        return;
    }
    if (h->state != WP_H_EXCHANGE)
        return;
    if (!x->resp_started && maybe_retry(h, cond, what))
        return;
    ex_fail(h, what, detail);
    if (x->resp_started) {
        /* Part of a response went out: the client can only see it cut. */
        session_end(h);
        return;
    }
    local_reply(h, 503, "upstream connect error or disconnect/reset before headers\n", NULL);
}

static void open_up(struct wp_http *h, struct zt_h2conn *h2)
{
    char authority[WP_AUTHORITY_MAX];
    if (wp_connect_endpoint(&h->up, h2, &h->up_hbone, h->up_port, NULL, 0, authority,
                            sizeof(authority)) < 0)
        upstream_failed(h, ZT_ROUTE_RETRY_CONNECT_FAILURE, "cannot open an HBONE stream to",
                        authority);
}

static void on_pool(struct zt_hbone_waiter *wt, struct zt_h2conn *h2, int err)
{
    struct wp_http *h = (struct wp_http *)((char *)wt - offsetof(struct wp_http, waiter));
    h->up_waiting = false;
    if (err < 0 || !h2) {
        upstream_failed(h, ZT_ROUTE_RETRY_CONNECT_FAILURE,
                        "HBONE connection to the endpoint failed",
                        err == ZT_E_IDENTITY ? "server identity not accepted" : zt_strerror(err));
        return;
    }
    open_up(h, h2);
}

/* Makes the upstream stream go to (wl, port): the current one if it does,
 * else a new one (the old one, idle, is dropped). Returns 0 or an error. */
static int use_upstream(struct wp_http *h, const struct zt_workload *wl, uint16_t port,
                        const struct zt_service *svc, uint16_t svc_port)
{
    if (h->up_wl == wl && h->up_port == port && (h->up.h2 || h->up_waiting))
        return 0;
    drop_upstream(h);
    zt_http1_parser_free(h->resp_p);
    h->resp_p = zt_http1_parser_new(true, &resp_ops, h);
    h->up_unreturned = 0;
    h->up_wl = wl;
    h->up_port = port;
    struct zt_h2conn *ready = NULL;
    h->waiter.cb = on_pool;
    int rc = zt_l7_upstream(h->pod, wl, svc, svc_port, &h->waiter, &ready, &h->up_hbone);
    if (rc < 0) {
        h->up_wl = NULL;
        return rc;
    }
    if (ready)
        open_up(h, ready);
    else
        h->up_waiting = true;
    return 0;
}

/* Picks the endpoint for a request to svc:port (the service's, load
 * balanced per request), or, without a service, the workload the CONNECT
 * named. */
static int pick_endpoint(struct wp_http *h, const struct zt_service *svc, uint16_t port,
                         const struct zt_workload **wl, uint16_t *tport)
{
    if (!svc) {
        *wl = h->dst.wl;
        *tport = h->dst.port;
        return 0;
    }
    return zt_state_pick_endpoint(h->snap, svc, port, zt_l7_self(h->pod), zt_random_u32(), wl,
                                  tport);
}

static void local_reply(struct wp_http *h, int status, const char *body, const char *extra);

/* Answers a request the security steps refused (wp_authorize,
 * wp_ratelimit) with their status, body and fields. */
static void deny(struct wp_http *h, int status, const struct wp_denial *d)
{
    char hdr[sizeof(d->www_auth) + 256] = "";
    size_t n = 0;
    ex_of(h)->req_done = true;
    copy_str(ex_of(h)->error, sizeof(ex_of(h)->error), d->details);
    for (size_t i = 0; i < d->n_hdrs && n < sizeof(hdr); i++) {
        int k =
            snprintf(hdr + n, sizeof(hdr) - n, "%s: %s\r\n", d->hdrs[2 * i], d->hdrs[2 * i + 1]);
        if (k < 0 || (size_t)k >= sizeof(hdr) - n)
            break;
        n += (size_t)k;
    }
    local_reply(h, status, d->body, n ? hdr : NULL);
}

/* The request's route (Gateway API semantics, route/route.h): where it
 * goes (*svc, *port), after the rule's request filters rewrote req; or
 * answered here (404 when routes exist and none matches, 500 without a
 * usable backend, a redirect). Returns 1 to forward, 0 when answered. */
static int route_request(struct wp_http *h, struct zt_http_head *req, const struct zt_service **svc,
                         uint16_t *port)
{
    struct wp_exchange *x = ex_of(h);
    struct wp_denial d;
    int st = wp_authorize(h->w, &h->dst, &h->peer, h->src_identity, req, &d);
    x->shadow = d.shadow;
    if (st) {
        deny(h, st, &d);
        return 0;
    }
    struct wp_routed r;
    wp_route(h->w, h->snap, &h->dst, req, &r);
    copy_str(x->route, sizeof(x->route), r.route);
    x->retry = r.retry;
    x->timeout_ms = r.timeout_ms;
    if (r.local_status) {
        char hdr[sizeof(r.location) + 16] = "";
        x->req_done = true;
        if (r.error)
            ex_fail(h, r.error, r.error_detail);
        if (r.location[0])
            snprintf(hdr, sizeof(hdr), "location: %s\r\n", r.location);
        local_reply(h, r.local_status, r.local_body, hdr[0] ? hdr : NULL);
        return 0;
    }
    if ((st = wp_ratelimit(h->w, &h->dst, &r, h->src_identity, req, &x->rl, &d))) {
        zt_route_table_unref(r.routes);
        deny(h, st, &d);
        return 0;
    }
    x->routes = r.routes;
    x->filters = r.filters;
    *svc = r.svc;
    *port = r.port;
    return 1;
}

/* ---- retries and timeouts ---- */

static bool status_retriable(const struct wp_exchange *x, int status)
{
    if (!(x->retry.on & ZT_ROUTE_RETRY_STATUS_CODES))
        return false;
    for (size_t i = 0; i < x->retry.n_codes; i++)
        if (x->retry.codes[i] == status)
            return true;
    return false;
}

/* The next try: another endpoint when the service has one (as Envoy's
 * retry host predicate, a few picks), the request sent again from the
 * replay buffer. */
static void on_retry(uv_timer_t *t)
{
    struct wp_http *h = t->data;
    struct wp_exchange *x = ex_of(h);
    if (h->state != WP_H_EXCHANGE)
        return;
    const struct zt_workload *wl = NULL, *prev = x->dst_wl;
    uint16_t svc_port = x->svc_port, port = 0;
    for (int i = 0; i < 5; i++) {
        if (pick_endpoint(h, x->dst_svc, svc_port, &wl, &port) < 0) {
            wl = NULL;
            break;
        }
        if (wl != prev)
            break;
    }
    if (!wl) {
        ex_fail(h, "no healthy upstream", NULL);
        local_reply(h, 503, "no healthy upstream\n", NULL);
        return;
    }
    x->dst_wl = wl;
    int rc = use_upstream(h, wl, port, x->dst_svc, x->svc_port);
    if (rc < 0) {
        ex_fail(h, "no HBONE connection to the endpoint", zt_strerror(rc));
        local_reply(h, 503, "upstream connect error or disconnect/reset before headers\n", NULL);
        return;
    }
    /* use_upstream made a new response parser: it learns the method. */
    zt_http1_parser_expect(h->resp_p, x->req_method, false);
    struct zt_ip ip;
    uint16_t p;
    struct sockaddr_storage ss;
    if (zt_ip_from_sockaddr((struct sockaddr *)&h->up_hbone, &ip, &p) == 0) {
        zt_ip_to_sockaddr(&ip, port, &ss);
        zt_hbone_format_authority((struct sockaddr *)&ss, x->upstream, sizeof(x->upstream));
    }
    wp_stream_write(&h->up, zt_buf_head(&x->replay), x->replay.len);
    start_try_timer(h);
}

/* A try failed for `cond` before any of its response reached the client:
 * schedules the next one if the policy allows (attempts left, the
 * condition listed, the request still whole in the replay buffer), after
 * Envoy's backoff (base doubling per try, capped, full jitter). */
static bool maybe_retry(struct wp_http *h, uint32_t cond, const char *why)
{
    struct wp_exchange *x = ex_of(h);
    if (!cond || !((x->retry.on & cond) || cond == WP_RETRY_PER_TRY_TIMEOUT) ||
        x->tries >= x->retry.attempts || !x->is_replayable || x->resp_started || h->handles != 2)
        return false;
    x->tries++;
    uint64_t base = x->retry.backoff_ms ? x->retry.backoff_ms : 25;
    uint64_t cap = x->retry.max_backoff_ms ? x->retry.max_backoff_ms : 10 * base;
    uint64_t b = base << (x->tries - 1 < 10 ? x->tries - 1 : 10);
    if (b > cap)
        b = cap;
    b = b ? zt_random_below((uint32_t)b + 1) : 0;
    ZT_DEBUG("waypoint", "retry %u of %u after %s (%s), in %llu ms", x->tries, x->retry.attempts,
             why ? why : "failure", x->upstream, (unsigned long long)b);
    uv_timer_start(&h->retry_timer, on_retry, b, 0);
    return true;
}

/* A try ran past the per-try timeout before its response began: the next
 * try, or 504 when none is left. The retry timer times the try while it is
 * in flight (it is idle then) and the backoff between tries. */
static void on_try_timeout(uv_timer_t *t)
{
    struct wp_http *h = t->data;
    struct wp_exchange *x = ex_of(h);
    if (h->state != WP_H_EXCHANGE || x->resp_started)
        return;
    drop_upstream(h);
    if (maybe_retry(h, WP_RETRY_PER_TRY_TIMEOUT, "per-try timeout"))
        return;
    ex_fail(h, "upstream per-try timeout", NULL);
    local_reply(h, 504, "upstream request timeout\n", NULL);
}

static void start_try_timer(struct wp_http *h)
{
    if (ex_of(h)->retry.per_try_timeout_ms)
        uv_timer_start(&h->retry_timer, on_try_timeout, ex_of(h)->retry.per_try_timeout_ms, 0);
}

/* The route's timeout: 504 if no response has begun, else the response is
 * cut. */
static void on_timeout(uv_timer_t *t)
{
    struct wp_http *h = t->data;
    struct wp_exchange *x = ex_of(h);
    if (h->state != WP_H_EXCHANGE || x->resp_done)
        return;
    ex_fail(h, "upstream request timeout", NULL);
    if (x->resp_started) {
        session_end(h);
        return;
    }
    uv_timer_stop(&h->retry_timer);
    local_reply(h, 504, "upstream request timeout\n", NULL);
}

/* Request bytes toward the upstream, kept for a retry while they fit. */
static void send_up(struct wp_http *h, const void *data, size_t len)
{
    struct wp_exchange *x = ex_of(h);
    x->req_bytes += len;
    if (x->is_replayable) {
        if (x->replay.len + len <= WP_RETRY_BUFFER_MAX) {
            zt_buf_append(&x->replay, data, len);
        } else {
            x->is_replayable = false;
            zt_buf_release(&x->replay);
        }
    }
    wp_stream_write(&h->up, data, len);
}

static void req_on_head(void *ud, struct zt_http_head *req, const struct zt_http1_framing *f)
{
    struct wp_http *h = ud;
    struct wp_exchange *x = ex_of(h);
    ex_reset(h);
    h->state = WP_H_EXCHANGE;
    h->idle_since = 0;
    x->start_ms = uv_now(h->w->loop);
    x->start_ns = uv_hrtime();
    copy_str(x->method, sizeof(x->method), req->method);
    copy_str(x->path, sizeof(x->path), req->path);
    copy_str(x->authority, sizeof(x->authority), req->authority);
    x->is_head = strcmp(req->method, "HEAD") == 0;
    x->is_upgrade = f->is_upgrade;
    x->req_chunked = f->chunked;
    x->down_keep = f->keep_alive;
    x->up_keep = true;
    /* The waypoint's span: a child of a valid incoming traceparent (one
     * field only, as W3C asks), else the root of a new trace. */
    const char *tp =
        zt_http_head_count(req, "traceparent") == 1 ? zt_http_head_get(req, "traceparent") : NULL;
    zt_telemetry_traceparent_child(tp, tp ? strlen(tp) : 0, &x->trace);
    if (strcmp(req->method, "CONNECT") == 0) {
        x->req_done = true;
        local_reply(h, 405, "CONNECT is not proxied\n", NULL);
        zt_http1_parser_pause(h->req_p);
        return;
    }
    const struct zt_service *svc = NULL;
    const struct zt_workload *wl = NULL;
    uint16_t svc_port = 0, port = 0;
    if (!route_request(h, req, &svc, &svc_port)) {
        zt_http1_parser_pause(h->req_p);
        return;
    }
    x->dst_svc = svc;
    x->svc_port = svc_port;
    if (pick_endpoint(h, svc, svc_port, &wl, &port) < 0) {
        x->req_done = true;
        ex_fail(h, "no healthy upstream", NULL);
        local_reply(h, 503, "no healthy upstream\n", NULL);
        zt_http1_parser_pause(h->req_p);
        return;
    }
    x->dst_wl = wl;
    int rc = use_upstream(h, wl, port, svc, svc_port);
    if (rc < 0) {
        x->req_done = true;
        ex_fail(h, "no HBONE connection to the endpoint", zt_strerror(rc));
        local_reply(h, 503, "upstream connect error or disconnect/reset before headers\n", NULL);
        zt_http1_parser_pause(h->req_p);
        return;
    }
    struct zt_ip ip;
    uint16_t p;
    struct sockaddr_storage ss;
    if (zt_ip_from_sockaddr((struct sockaddr *)&h->up_hbone, &ip, &p) == 0) {
        zt_ip_to_sockaddr(&ip, port, &ss);
        zt_hbone_format_authority((struct sockaddr *)&ss, x->upstream, sizeof(x->upstream));
    }
    /* The head goes on rewritten: hop-by-hop fields out, our framing. */
    /* An upgrade's `connection: upgrade` may not fit the caps: refused. */
    rc = zt_http1_strip_hop_by_hop(req, f->is_upgrade);
    zt_http_head_remove(req, "content-length");
    char len[32];
    if (rc == 0 && f->chunked)
        rc = zt_http_head_set(req, "transfer-encoding", "chunked");
    else if (rc == 0 && f->has_length) {
        snprintf(len, sizeof(len), "%" PRIu64, f->length);
        rc = zt_http_head_set(req, "content-length", len);
    }
    if (rc == 0 && !zt_http_head_get(req, "x-forwarded-proto"))
        rc = zt_http_head_set(req, "x-forwarded-proto", "http");
    char tpv[ZT_TELEMETRY_TRACEPARENT_LEN + 1];
    if (rc == 0 && zt_telemetry_traceparent_format(&x->trace, tpv, sizeof(tpv)) > 0)
        rc = zt_http_head_set(req, "traceparent", tpv);
    h->scratch.len = 0;
    h->scratch.off = 0;
    if (rc == 0)
        rc = zt_http1_encode_head(req, &h->scratch);
    if (rc < 0) {
        x->req_done = true;
        ex_fail(h, "request head cannot be forwarded", zt_strerror(rc));
        local_reply(h, 400, "bad request\n", NULL);
        zt_http1_parser_pause(h->req_p);
        return;
    }
    zt_http1_parser_expect(h->resp_p, req->method, f->is_upgrade);
    /* An upgrade's later bytes are a tunnel's: never replayed. */
    x->is_replayable = !f->is_upgrade && x->retry.attempts > 0;
    copy_str(x->req_method, sizeof(x->req_method), req->method);
    send_up(h, zt_buf_head(&h->scratch), h->scratch.len);
    if (x->filters && x->filters->n_mirrors && !f->is_upgrade)
        x->mirror = wp_mirror_begin(h->w, h->pod, h->snap, x->filters, h->dst.svc_port, req);
    if (x->timeout_ms)
        uv_timer_start(&h->timeout_timer, on_timeout, x->timeout_ms, 0);
    start_try_timer(h);
}

static void req_on_body(void *ud, const uint8_t *data, size_t len)
{
    struct wp_http *h = ud;
    if (h->state != WP_H_EXCHANGE)
        return;
    bool chunked = ex_of(h)->req_chunked;
    struct zt_buf *b = &h->scratch;
    wp_mirror_body(&ex_of(h)->mirror, data, len);
    b->len = b->off = 0;
    if (chunked) {
        zt_http1_encode_chunk_header(b, len);
        send_up(h, zt_buf_head(b), b->len);
    }
    send_up(h, data, len);
    if (chunked) {
        b->len = b->off = 0;
        zt_http1_encode_chunk_end(b);
        send_up(h, zt_buf_head(b), b->len);
    }
}

static void req_on_message_end(void *ud, struct zt_http_head *trailers)
{
    struct wp_http *h = ud;
    if (h->state != WP_H_EXCHANGE)
        return;
    if (trailers) {
        struct zt_buf *b = &h->scratch;
        b->len = b->off = 0;
        zt_http_head_remove(trailers, "content-length");
        zt_http_head_remove(trailers, "transfer-encoding");
        if (zt_http1_encode_last_chunk(trailers, b) < 0) {
            b->len = b->off = 0;
            zt_http1_encode_last_chunk(NULL, b);
        }
        send_up(h, zt_buf_head(b), b->len);
    }
    ex_of(h)->req_done = true;
    wp_mirror_end(&ex_of(h)->mirror);
    exchange_done(h);
}

static const struct zt_http1_ops req_ops = {
    .on_head = req_on_head,
    .on_body = req_on_body,
    .on_message_end = req_on_message_end,
};

/* After this many sessions shrank since the worker's last tick, the freed
 * memory goes back to the system (malloc_trim): a burst of connections
 * that then idle would otherwise leave the heap at its high-water mark. */
#define WP_HTTP_TRIM_AFTER 32
static _Thread_local unsigned shrunk_since_tick;

/* From on_idle, or wp_https_tick (no parse or callback of h under way). */
static void idle_shrink(struct wp_http *h, uint64_t now)
{
    /* idle_since is 0 while busy and once shrunk. */
    if (h->state != WP_H_IDLE || !h->idle_since || now - h->idle_since < WP_HTTP_IDLE_SHRINK_MS ||
        h->din.len || h->in_req_parse || h->in_resp_parse)
        return;
    h->idle_since = 0;
    shrunk_since_tick++;
    zt_http1_parser_shrink(h->req_p);
    zt_http1_parser_shrink(h->resp_p);
    zt_buf_release(&h->scratch);
    zt_buf_release(&h->din);
    if (h->down.q.len == 0)
        zt_buf_release(&h->down.q);
    if (h->up.q.len == 0)
        zt_buf_release(&h->up.q);
    ex_reset(h);
    if (h->exp)
        zt_buf_release(&h->exp->replay);
    free(h->exp);
    h->exp = NULL;
}

static void on_idle(uv_timer_t *t)
{
    struct wp_http *h = t->data;
    idle_shrink(h, uv_now(h->w->loop));
}

/* Parses what the client sent, one request at a time. */
static void feed_requests(struct wp_http *h)
{
    while (h->state == WP_H_IDLE || (h->state == WP_H_EXCHANGE && !ex_of(h)->req_done)) {
        enum zt_http1_state st = zt_http1_parser_state(h->req_p);
        if (st == ZT_HTTP1_ST_DONE && h->state == WP_H_IDLE) {
            zt_http1_parser_resume(h->req_p);
            continue;
        }
        if (st == ZT_HTTP1_ST_DONE || st == ZT_HTTP1_ST_UPGRADED || h->din.len == 0)
            break;
        size_t used = 0;
        h->in_req_parse = true;
        int rc = zt_http1_parse(h->req_p, zt_buf_head(&h->din), h->din.len, &used);
        h->in_req_parse = false;
        if (h->state == WP_H_ENDED)
            return;
        zt_buf_consume(&h->din, used);
        h->down_unreturned += used;
        if (rc < 0) {
            enum zt_http1_error e = zt_http1_parser_error(h->req_p);
            if (h->state == WP_H_CLOSING)
                return;
            if (h->state != WP_H_EXCHANGE) {
                ex_reset(h);
                h->state = WP_H_EXCHANGE;
            }
            ex_fail(h, "bad request", zt_http1_parser_reason(h->req_p));
            if (ex_of(h)->resp_started) {
                session_end(h);
                return;
            }
            local_reply(h, zt_http1_error_status(e), "bad request\n", NULL);
            return;
        }
        /* A request that ended while its response had ended already. */
        if (h->state == WP_H_IDLE)
            continue;
        if (used == 0)
            break;
    }
    if (h->state == WP_H_ENDED)
        return;
    return_down(h);
}

/* ---- responses ---- */

static void resp_on_head(void *ud, struct zt_http_head *resp, const struct zt_http1_framing *f)
{
    struct wp_http *h = ud;
    struct wp_exchange *x = ex_of(h);
    if (f->is_interim) {
        /* 100 Continue and the like go on as they are. */
        h->scratch.len = h->scratch.off = 0;
        zt_http1_strip_hop_by_hop(resp, false);
        if (zt_http1_encode_head(resp, &h->scratch) == 0) {
            wp_stream_write(&h->down, zt_buf_head(&h->scratch), h->scratch.len);
            x->resp_bytes += h->scratch.len;
        }
        return;
    }
    if (status_retriable(x, resp->status)) {
        if (maybe_retry(h, ZT_ROUTE_RETRY_STATUS_CODES, "retriable status")) {
            /* This answer is not the client's: the upstream connection is
             * dropped once the parser returns (up_on_data). */
            x->is_retry_pending = true;
            zt_http1_parser_pause(h->resp_p);
            return;
        }
    }
    x->status = resp->status;
    x->resp_started = true;
    x->up_keep = f->keep_alive;
    uv_timer_stop(&h->retry_timer); /* the try's timeout ends with its answer */
    if ((x->filters && zt_route_apply_response(x->filters, resp) < 0) ||
        wp_ratelimit_headers(&x->rl, resp) < 0) {
        ex_fail(h, "response filters pass the head's caps", NULL);
        x->resp_started = false;
        h->up_wl = NULL;
        local_reply(h, 502, "upstream response cannot be forwarded\n", NULL);
        return;
    }
    if (h->w->draining)
        x->down_keep = false;
    int rc = zt_http1_strip_hop_by_hop(resp, f->is_upgrade);
    zt_http_head_remove(resp, "content-length");
    char len[32];
    x->resp_chunked = false;
    /* A failed strip (an upgrade's `connection: upgrade` past the caps)
     * skips the framing and fails the encoding below: 502. */
    bool until_close = f->has_body && !f->is_upgrade && !f->has_length;
    bool empty =
        !f->has_body && !f->is_upgrade && resp->status != 204 && resp->status != 304 && !x->is_head;
    if (rc == 0 && f->has_length) {
        snprintf(len, sizeof(len), "%" PRIu64, f->length);
        rc = zt_http_head_set(resp, "content-length", len);
    } else if (rc == 0 && until_close) {
        /* Chunked, or until the upstream closes: chunked toward the
         * client, so its connection can outlive this response. */
        x->resp_chunked = true;
        rc = zt_http_head_set(resp, "transfer-encoding", "chunked");
    } else if (rc == 0 && empty) {
        rc = zt_http_head_set(resp, "content-length", "0");
    }
    if (!x->down_keep && !f->is_upgrade && rc == 0)
        rc = zt_http_head_set(resp, "connection", "close");
    h->scratch.len = h->scratch.off = 0;
    if (rc == 0)
        rc = zt_http1_encode_head(resp, &h->scratch);
    if (rc < 0) {
        ex_fail(h, "response head cannot be forwarded", zt_strerror(rc));
        x->resp_started = false;
        local_reply(h, 502, "upstream sent a bad response\n", NULL);
        return;
    }
    wp_stream_write(&h->down, zt_buf_head(&h->scratch), h->scratch.len);
    x->resp_bytes += h->scratch.len;
    if (f->is_upgrade && resp->status == 101) {
        /* A tunnel from now on: what the client sent after its request. */
        h->state = WP_H_TUNNEL;
        x->resp_done = true;
        log_exchange(h);
        if (h->din.len) {
            wp_stream_write(&h->up, zt_buf_head(&h->din), h->din.len);
            h->down_unreturned += h->din.len;
            zt_buf_consume(&h->din, h->din.len);
        }
    }
}

static void resp_on_body(void *ud, const uint8_t *data, size_t len)
{
    struct wp_http *h = ud;
    struct wp_exchange *x = ex_of(h);
    if (h->state != WP_H_EXCHANGE)
        return;
    struct zt_buf *b = &h->scratch;
    if (x->resp_chunked) {
        b->len = b->off = 0;
        zt_http1_encode_chunk_header(b, len);
        wp_stream_write(&h->down, zt_buf_head(b), b->len);
        x->resp_bytes += b->len;
    }
    wp_stream_write(&h->down, data, len);
    x->resp_bytes += len;
    if (x->resp_chunked) {
        b->len = b->off = 0;
        zt_http1_encode_chunk_end(b);
        wp_stream_write(&h->down, zt_buf_head(b), b->len);
        x->resp_bytes += b->len;
    }
}

static void resp_on_message_end(void *ud, struct zt_http_head *trailers)
{
    struct wp_http *h = ud;
    struct wp_exchange *x = ex_of(h);
    if (h->state != WP_H_EXCHANGE)
        return;
    if (x->resp_chunked) {
        struct zt_buf *b = &h->scratch;
        b->len = b->off = 0;
        if (trailers) {
            zt_http_head_remove(trailers, "content-length");
            zt_http_head_remove(trailers, "transfer-encoding");
        }
        if (zt_http1_encode_last_chunk(trailers, b) < 0) {
            b->len = b->off = 0;
            zt_http1_encode_last_chunk(NULL, b);
        }
        wp_stream_write(&h->down, zt_buf_head(b), b->len);
        x->resp_bytes += b->len;
    }
    x->resp_done = true;
    /* The upstream connection serves the next request only if it says so
     * (the parser resumes once back in up_on_data). */
    if (!x->up_keep) {
        h->up_wl = NULL;
        wp_stream_end(&h->up);
    }
    exchange_done(h);
}

static const struct zt_http1_ops resp_ops = {
    .on_head = resp_on_head,
    .on_body = resp_on_body,
    .on_message_end = resp_on_message_end,
};

/* ---- stream events ---- */

static void become_tunnel(struct wp_http *h);

/* A port of unknown protocol: HTTP/1 when the first line is a request line
 * ("METHOD SP target SP HTTP/1.x"), HTTP/2 after its preface (sniff_h2),
 * anything else a byte stream. Returns 1 for HTTP/1, 0 for TCP, -1 while
 * undecided. */
static int sniff(const uint8_t *p, size_t n)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    size_t i = 0;
    while (i < n && (p[i] >= 'A' && p[i] <= 'Z'
                         ? 1
                         : (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') ||
                               (p[i] && strchr(tchar, p[i]))))
        i++;
    if (i == n)
        return n > 32 ? 0 : -1;
    if (i == 0 || p[i] != ' ')
        return 0;
    /* The target: visible bytes up to the next space. */
    size_t j = i + 1;
    while (j < n && p[j] > ' ' && p[j] < 0x7f)
        j++;
    if (j == n)
        return n > ZT_HTTP1_TARGET_MAX + 32 ? 0 : -1;
    if (j == i + 1 || p[j] != ' ')
        return 0;
    static const char v[] = "HTTP/1.";
    for (size_t k = 0; k < sizeof(v) - 1; k++) {
        if (j + 1 + k == n)
            return -1;
        if (p[j + 1 + k] != (uint8_t)v[k])
            return 0;
    }
    return 1;
}

/* The HTTP/2 client preface (RFC 9113 3.4): 1 when din holds it, 0 when
 * it cannot, -1 while din is a prefix of it. */
static int sniff_h2(const uint8_t *p, size_t n)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t m = n < sizeof(preface) - 1 ? n : sizeof(preface) - 1;
    if (memcmp(p, preface, m) != 0)
        return 0;
    return m == sizeof(preface) - 1 ? 1 : -1;
}

static void decide(struct wp_http *h)
{
    int h2 = sniff_h2(zt_buf_head(&h->din), h->din.len);
    if (h2 < 0)
        return;
    if (h2 == 1) {
        /* HTTP/2 cleartext: an h2c session takes the stream over. */
        wp_h2c_adopt(h->w, h->pod, &h->down, &h->dst, &h->peer, h->src_identity,
                     zt_buf_head(&h->din), h->din.len, h->down_unreturned);
        zt_buf_consume(&h->din, h->din.len);
        session_end(h);
        return;
    }
    /* HTTP/1.1 to a port declared HTTP/2 or gRPC goes on as h2c (the
     * port's protocol, as Istio's waypoint): the h2c engine takes it. */
    const struct zt_port_map *pm =
        h->dst.svc ? zt_service_find_port(h->dst.svc, h->dst.svc_port) : NULL;
    if (h->is_declared && pm &&
        (pm->app_protocol == ZT_APP_HTTP2 || pm->app_protocol == ZT_APP_GRPC)) {
        wp_h2c_adopt_h1(h->w, h->pod, &h->down, &h->dst, &h->peer, h->src_identity,
                        zt_buf_head(&h->din), h->din.len, h->down_unreturned);
        zt_buf_consume(&h->din, h->din.len);
        session_end(h);
        return;
    }
    /* A port declared HTTP takes HTTP/1.1 or h2c (Envoy's AUTO codec);
     * one of unknown protocol may be TCP too. */
    int r = h->is_declared ? 1 : sniff(zt_buf_head(&h->din), h->din.len);
    if (r < 0)
        return;
    if (r == 1) {
        h->state = WP_H_IDLE;
        feed_requests(h);
    } else {
        become_tunnel(h);
    }
}

static void down_on_data(struct wp_stream *s, const uint8_t *data, size_t len)
{
    struct wp_http *h = s->owner;
    if (h->state == WP_H_TUNNEL) {
        wp_stream_write(&h->up, data, len);
        h->down_unreturned += len;
        return_down(h);
        return;
    }
    if (h->state == WP_H_CLOSING || h->state == WP_H_ENDED) {
        wp_stream_consume(s, len); /* nothing more is read: dropped */
        return;
    }
    zt_buf_append(&h->din, data, len);
    if (h->state == WP_H_SNIFF)
        decide(h);
    else
        feed_requests(h);
}

static void down_on_end(struct wp_stream *s)
{
    struct wp_http *h = s->owner;
    if (h->state == WP_H_SNIFF) {
        if (h->din.len == 0) {
            h->state = WP_H_CLOSING;
            wp_stream_end(&h->down);
            return;
        }
        if (h->is_declared)
            h->state = WP_H_IDLE; /* a cut preface: the parser refuses it below */
        else
            become_tunnel(h);
    }
    if (h->state == WP_H_TUNNEL) {
        wp_stream_end(&h->up);
        return;
    }
    if (h->state == WP_H_IDLE && h->din.len == 0) {
        /* The client is done between requests: a clean end. */
        h->state = WP_H_CLOSING;
        wp_stream_end(&h->down);
        wp_stream_end(&h->up);
        return;
    }
    if ((h->state == WP_H_IDLE || (h->state == WP_H_EXCHANGE && !ex_of(h)->req_done)) &&
        zt_http1_parse_eof(h->req_p) < 0) {
        ex_fail(h, "client ended the stream inside a request", NULL);
        if (h->state == WP_H_EXCHANGE)
            log_exchange(h);
        ex_reset(h);
        session_end(h);
    }
}

static void down_on_close(struct wp_stream *s, int error)
{
    struct wp_http *h = s->owner;
    if (error && ex_of(h)->start_ms)
        ex_fail(h, "client stream closed", zt_strerror(error));
    session_end(h);
}

static void down_on_sent(struct wp_stream *s, size_t n)
{
    return_up(s->owner);
}

static void up_on_response(struct wp_stream *s, int status)
{
    struct wp_http *h = s->owner;
    if (status == 200)
        return;
    char st[16];
    snprintf(st, sizeof(st), "%d", status);
    if (h->state == WP_H_TUNNEL) {
        wp_stream_reset(&h->down);
        return;
    }
    upstream_failed(h, ZT_ROUTE_RETRY_CONNECT_FAILURE, "upstream HBONE returned status", st);
}

/* The upstream connection is broken for HTTP: it is dropped, and the
 * exchange in flight (if any) fails. */
static void up_broken(struct wp_http *h, const char *what, const char *detail)
{
    if (what && h->state == WP_H_EXCHANGE && !ex_of(h)->resp_done) {
        upstream_failed(h, 0, what, detail);
        return;
    }
    drop_upstream(h);
}

static void up_on_data(struct wp_stream *s, const uint8_t *data, size_t len)
{
    struct wp_http *h = s->owner;
    if (h->state == WP_H_TUNNEL) {
        wp_stream_write(&h->down, data, len);
        h->up_unreturned += len;
        return_up(h);
        return;
    }
    /* Returned at once: what is kept is queued toward the client, which
     * return_up weighs; what is dropped is gone. */
    h->up_unreturned += len;
    size_t off = 0;
    while (off < len) {
        if (h->state != WP_H_EXCHANGE || ex_of(h)->resp_done) {
            up_broken(h, "upstream sent bytes nobody asked for", NULL);
            break;
        }
        size_t used = 0;
        h->in_resp_parse = true;
        int rc = zt_http1_parse(h->resp_p, data + off, len - off, &used);
        h->in_resp_parse = false;
        off += used;
        if (h->state == WP_H_ENDED)
            return;
        if (ex_of(h)->is_retry_pending) {
            ex_of(h)->is_retry_pending = false;
            up_broken(h, NULL, NULL);
            break;
        }
        if (rc < 0) {
            ex_fail(h, "bad response", zt_http1_parser_reason(h->resp_p));
            if (ex_of(h)->resp_started) {
                session_end(h);
                return;
            }
            ex_of(h)->resp_started = false;
            h->up_wl = NULL;
            local_reply(h, 502, "upstream sent a bad response\n", NULL);
            return;
        }
        enum zt_http1_state st = zt_http1_parser_state(h->resp_p);
        if (st == ZT_HTTP1_ST_UPGRADED) {
            /* Bytes after the 101 are the server's side of the tunnel. */
            wp_stream_write(&h->down, data + off, len - off);
            break;
        }
        if (st == ZT_HTTP1_ST_DONE)
            zt_http1_parser_resume(h->resp_p);
        else if (used == 0)
            break;
    }
    if (h->state == WP_H_IDLE && h->din.len) {
        /* The response ended with a pipelined request waiting: parsed now
         * that the response parser has returned (it may be replaced). */
        return_up(h);
        feed_requests(h);
        return;
    }
    if (h->state == WP_H_ENDED)
        return;
    return_up(h);
}

static void up_on_end(struct wp_stream *s)
{
    struct wp_http *h = s->owner;
    if (h->state == WP_H_TUNNEL) {
        wp_stream_end(&h->down);
        return;
    }
    h->up_wl = NULL; /* no next request on it */
    if (h->state == WP_H_EXCHANGE && !ex_of(h)->resp_done) {
        h->in_resp_parse = true;
        int rc = zt_http1_parse_eof(h->resp_p);
        h->in_resp_parse = false;
        if (h->state == WP_H_ENDED)
            return;
        if (rc < 0 || (h->state == WP_H_EXCHANGE && !ex_of(h)->resp_done)) {
            upstream_failed(h, 0, "upstream closed before its response ended", NULL);
            return;
        }
    }
    if (s->h2)
        wp_stream_end(s);
    if (h->state == WP_H_IDLE && h->din.len)
        feed_requests(h);
}

static void up_on_close(struct wp_stream *s, int error)
{
    struct wp_http *h = s->owner;
    h->up_wl = NULL;
    if (h->state == WP_H_TUNNEL) {
        if (error)
            wp_stream_reset(&h->down);
        else
            wp_stream_end(&h->down);
        return;
    }
    if (h->state == WP_H_EXCHANGE && !ex_of(h)->resp_done)
        upstream_failed(h, ex_of(h)->req_bytes && h->up.tx == 0 ? ZT_ROUTE_RETRY_REFUSED_STREAM : 0,
                        "upstream stream closed", error ? zt_strerror(error) : NULL);
}

static void up_on_sent(struct wp_stream *s, size_t n)
{
    return_down(s->owner);
}

static const struct wp_stream_ops down_ops = {
    .on_data = down_on_data,
    .on_end = down_on_end,
    .on_close = down_on_close,
    .on_sent = down_on_sent,
};

static const struct wp_stream_ops up_ops = {
    .on_response = up_on_response,
    .on_data = up_on_data,
    .on_end = up_on_end,
    .on_close = up_on_close,
    .on_sent = up_on_sent,
};

/* Not HTTP: relayed as TCP to an endpoint picked now, with what the
 * client sent so far. */
static void become_tunnel(struct wp_http *h)
{
    const struct zt_workload *wl = NULL;
    uint16_t port = 0;
    struct wp_denial d;
    h->state = WP_H_TUNNEL;
    h->is_tcp = true;
    ex_reset(h);
    if (wp_authorize_tcp(h->w, &h->dst, &h->peer, h->src_identity, &d)) {
        ex_fail(h, d.details, NULL);
        wp_stream_reset(&h->down);
        return;
    }
    if (pick_endpoint(h, h->dst.svc, h->dst.svc_port, &wl, &port) < 0) {
        ex_fail(h, "no healthy upstream", NULL);
        wp_stream_reset(&h->down);
        return;
    }
    ex_of(h)->dst_wl = wl;
    ex_of(h)->dst_svc = h->dst.svc;
    if (use_upstream(h, wl, port, h->dst.svc, h->dst.svc_port) < 0) {
        ex_fail(h, "no HBONE connection to the endpoint", NULL);
        wp_stream_reset(&h->down);
        return;
    }
    struct zt_ip ip;
    uint16_t p;
    struct sockaddr_storage ss;
    if (zt_ip_from_sockaddr((struct sockaddr *)&h->up_hbone, &ip, &p) == 0) {
        zt_ip_to_sockaddr(&ip, port, &ss);
        zt_hbone_format_authority((struct sockaddr *)&ss, ex_of(h)->upstream,
                                  sizeof(ex_of(h)->upstream));
    }
    if (h->din.len) {
        wp_stream_write(&h->up, zt_buf_head(&h->din), h->din.len);
        h->down_unreturned += h->din.len;
        zt_buf_consume(&h->din, h->din.len);
    }
    return_down(h);
}

/* ---- entry points ---- */

void wp_http_start(struct wp_worker *w, const struct zt_l7_connect *c, const struct wp_dest *d,
                   bool is_sniffed)
{
    struct wp_http *h = zt_xcalloc(1, sizeof(*h));
    h->w = w;
    h->pod = c->pod;
    h->state = WP_H_SNIFF;
    h->is_declared = !is_sniffed;
    h->start_ms = uv_now(w->loop);
    h->sniff_deadline = h->start_ms + WP_SNIFF_TIMEOUT_MS;
    h->snap = zt_l7_state(c->pod);
    zt_state_ref(h->snap);
    h->dst = *d;
    h->peer = *c->peer;
    size_t id_len = c->peer_identity ? strnlen(c->peer_identity, ZT_SPIFFE_ID_MAX) : 0;
    h->src_identity = zt_xmalloc(id_len + 1); /* most are far shorter than the cap */
    copy_str(h->src_identity, id_len + 1, c->peer_identity);
    h->req_p = zt_http1_parser_new(false, &req_ops, h);
    h->resp_p = zt_http1_parser_new(true, &resp_ops, h);
    wp_stream_init(&h->down, &down_ops, h);
    wp_stream_init(&h->up, &up_ops, h);
    uv_timer_init(w->loop, &h->retry_timer);
    uv_timer_init(w->loop, &h->timeout_timer);
    h->retry_timer.data = h->timeout_timer.data = h;
    h->handles = 2;
    zt_list_insert_head(&w->https, &h->link);
    zt_l7_hold(c->pod);
    h->held = true;
    wp_stream_attach(&h->down, c->h2, c->sid);
    /* As Envoy's waypoint: the tunnel is answered at once, before any
     * upstream is chosen (that happens per request). */
    if (wp_stream_respond(&h->down, 200) < 0)
        session_end(h);
}

void wp_https_pod_close(struct wp_worker *w, struct zt_pod_inst *pod)
{
    for (struct zt_list_node *n = zt_list_first(&w->https), *next; n; n = next) {
        next = zt_list_next(&w->https, n);
        struct wp_http *h = zt_list_entry(n, struct wp_http, link);
        if (h->pod == pod) {
            ex_fail(h, "waypoint stopped", NULL);
            session_end(h);
        }
    }
}

void wp_https_tick(struct wp_worker *w, uint64_t now)
{
    for (struct zt_list_node *n = zt_list_first(&w->https), *next; n; n = next) {
        next = zt_list_next(&w->https, n);
        struct wp_http *h = zt_list_entry(n, struct wp_http, link);
        if (h->state == WP_H_SNIFF && !h->is_declared && now >= h->sniff_deadline)
            become_tunnel(h);
        else
            idle_shrink(h, now); /* one whose timer could not run it */
    }
    if (shrunk_since_tick >= WP_HTTP_TRIM_AFTER)
        malloc_trim(0);
    shrunk_since_tick = 0;
}

void wp_https_drain(struct wp_worker *w)
{
    /* Idle keep-alive sessions end now; the others after their exchange
     * (resp_on_head sees the drain and answers `connection: close`). */
    for (struct zt_list_node *n = zt_list_first(&w->https), *next; n; n = next) {
        next = zt_list_next(&w->https, n);
        struct wp_http *h = zt_list_entry(n, struct wp_http, link);
        if (h->state == WP_H_IDLE && h->din.len == 0) {
            h->state = WP_H_CLOSING;
            wp_stream_end(&h->down);
            wp_stream_end(&h->up);
        } else if (h->state == WP_H_EXCHANGE) {
            ex_of(h)->down_keep = false;
        }
    }
}

void wp_https_reap(struct wp_worker *w)
{
    while (!zt_list_empty(&w->dead_https)) {
        struct wp_http *h = zt_list_entry(zt_list_first(&w->dead_https), struct wp_http, link);
        zt_list_remove(&h->link);
        wp_stream_cleanup(&h->down);
        wp_stream_cleanup(&h->up);
        zt_http1_parser_free(h->req_p);
        zt_http1_parser_free(h->resp_p);
        zt_buf_release(&h->din);
        zt_buf_release(&h->scratch);
        zt_state_unref(h->snap);
        if (h->exp)
            zt_buf_release(&h->exp->replay);
        free(h->exp);
        free(h->src_identity);
        free(h);
    }
}
