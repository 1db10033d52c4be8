/* HTTP/1.1 in the waypoint's request engine (h2c_int.h): connections to
 * endpoints whose port is declared HTTP/1.1, for requests that came as
 * HTTP/2; and the HTTP/1.1 front, for HTTP/1.1 clients of ports declared
 * HTTP/2 or gRPC (sent on as h2c, as Istio's waypoint does).
 *
 * Upstream: one exchange at a time per connection; the session keeps the
 * connection for its next request to the same endpoint and port while
 * both sides allow it. Heads are written anew (hop-by-hop fields dropped,
 * our own framing), responses read by the strict parser of http1.h.
 *
 * Front: the client's requests one at a time (pipelined ones wait,
 * unparsed, until the response before them has ended), responses written
 * with their length or chunked, trailers in the last chunk. Bytes from the
 * client are returned to its window only while the request body queued
 * toward the endpoint is short. */
#include "waypoint/h2c_int.h"
#include "waypoint/mirror.h"

#include "base/err.h"
#include "base/log.h"
#include "http/http1.h"

#include <string.h>

static const struct zt_http1_ops h1_ops;

/* The fields of HTTP/1.1 trailers that may go on (framing and hop-by-hop
 * ones dropped) into dst, as many as fit. */
static void copy_trailers(struct zt_http_head *dst, struct zt_http_head *t)
{
    zt_http1_strip_hop_by_hop(t, false);
    zt_http_head_remove(t, "content-length");
    for (size_t i = 0; i < t->n_fields; i++) {
        const struct zt_http_field *f = &t->fields[i];
        if (zt_http_head_add(dst, f->name, strlen(f->name), f->value, strlen(f->value)) < 0)
            break;
    }
}

struct zt_http1_parser *wp_h1up_parser(struct wp_h2up *up)
{
    return zt_http1_parser_new(true, &h1_ops, up);
}

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
void wp_h1up_push(struct wp_h2x *x)
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
        wp_h2x_body_sent(x, sent);
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
int wp_h1up_begin(struct wp_h2x *x, struct wp_h2up *up)
{
    struct zt_http_head *h = &x->req;
    bool bodyless = x->req_end && x->to_up.len == 0 && x->req_trailers.n_fields == 0;
    /* HTTP/2 has no framing fields: the body is framed anew (a length the
     * client gave is kept: its front checked it against the body). */
    zt_http1_strip_hop_by_hop(h, false);
    up->req_chunked = !bodyless && !zt_http_head_get(h, "content-length");
    int rc = 0;
    if (up->req_chunked)
        rc = zt_http_head_set(h, "transfer-encoding", "chunked");
    else if (bodyless && h1_method_has_body(h->method) && !zt_http_head_get(h, "content-length"))
        rc = zt_http_head_set(h, "content-length", "0");
    if (rc < 0 || zt_http1_encode_head(h, &up->scratch) < 0) {
        zt_buf_consume(&up->scratch, up->scratch.len);
        wp_h2up_kill(up);
        wp_h2x_error(x, "request cannot be written as HTTP/1.1",
                     rc < 0 ? "past the head's caps"
                            : "a method, authority or field HTTP/1.1 refuses");
        wp_h2x_local_reply(x, 400, "request cannot be forwarded\n", NULL, 0);
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
    wp_h1up_push(x);
    return 0;
}

/* x's exchange on up is over (x detached): up is kept for the next
 * request if the whole exchange went through and both sides allow it,
 * else closed. */
void wp_h1up_release(struct wp_h2up *up)
{
    if (up->is_dead)
        return;
    if (!up->resp_done || !up->req_written || !up->reusable) {
        wp_h2up_kill(up);
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
    wp_h2x_response_head(x, !f->has_body);
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
        x->s->front->resume(x);
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
        copy_trailers(&x->resp_trailers, trailers);
        int g = wp_h2x_grpc_status(&x->resp_trailers);
        if (g >= 0)
            x->grpc_status = g;
    }
    x->resp_end = true;
    uv_timer_stop(&x->timeout_timer);
    if (!x->s->ended)
        x->s->front->resume(x);
    x->s->repump = true;
}

static const struct zt_http1_ops h1_ops = {
    .on_head = h1_on_head,
    .on_body = h1_on_body,
    .on_message_end = h1_on_message_end,
};

/* Bytes from an HTTP/1.1 endpoint: its response to the exchange in
 * flight. Framing goes back to the window at once, body bytes once the
 * client's front took them (wp_h2x_down_took). */
void wp_h1up_on_data(struct wp_h2up *up, const uint8_t *data, size_t len)
{
    struct wp_h2x *x = up->x;
    if (!x) {
        ZT_DEBUG("waypoint", "HTTP/1.1 upstream sent %zu bytes while idle: closed", len);
        wp_h2up_kill(up);
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
            wp_h2up_kill(up);
        else if (!x->resp_started) {
            wp_h2x_error(x, "upstream sent a bad HTTP/1.1 response", why);
            wp_h2x_local_reply(x, 502, "upstream sent a bad response\n", NULL, 0);
        } else if (!x->resp_end) {
            wp_h2x_fail(x, 0, "upstream sent a bad HTTP/1.1 response", why);
        } else {
            up->reusable = false;
            wp_h2x_detach_up(x);
        }
        return;
    }
    if (up->resp_done && x)
        wp_h2x_detach_up(x);
}

/* The endpoint closed its side: the end of a response read until then,
 * else the exchange (or an idle connection) is over. */
void wp_h1up_on_end(struct wp_h2up *up)
{
    struct wp_h2x *x = up->x;
    if (x && !up->resp_done && zt_http1_parse_eof(up->h1) == 0 && up->resp_done && up->x) {
        up->reusable = false;
        wp_h2x_detach_up(up->x);
        return;
    }
    /* Nothing of this request went out before the close (a kept-alive
     * connection the endpoint closed meanwhile): as a refused stream. */
    uint32_t cond = x && up->st.tx == up->tx_at_start ? ZT_ROUTE_RETRY_REFUSED_STREAM : 0;
    wp_h2up_fail(up, cond, "upstream closed the connection",
                 x && x->resp_started ? "before the response ended" : "before a response");
}

/* ---- the HTTP/1.1 front ---- */

static void f_feed(struct wp_h2c *s);
static void f_maybe_close(struct wp_h2c *s);

/* Client bytes go back to its window while the body queued toward the
 * endpoint is short. */
static void f_return(struct wp_h2c *s)
{
    if (!s->down_unreturned || s->ended || (s->cur && s->cur->to_up.len >= WP_H2C_QUEUE_HIGH))
        return;
    size_t n = s->down_unreturned;
    s->down_unreturned = 0;
    wp_stream_consume(&s->down, n);
}

/* A request the parser refused, or one that cannot go on: answered, and
 * the connection closes after the answer. */
static void f_refuse(struct wp_h2c *s, int status, const char *what, const char *detail)
{
    struct wp_h2x *x = s->cur;
    s->keep = false;
    if (x && x->resp_started) {
        wp_h2x_error(x, what, detail);
        s->front->reset(x, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    if (!x) {
        x = s->cur = wp_h2x_new(s, 0);
        x->start_ms = uv_now(s->w->loop);
        x->start_ns = uv_hrtime();
    }
    x->req_end = true;
    wp_h2x_error(x, what, detail);
    char body[96];
    snprintf(body, sizeof(body), "%s\n", zt_http1_reason_phrase(status));
    wp_h2x_local_reply(x, status, body, NULL, 0);
}

static void f_on_head(void *ud, struct zt_http_head *req, const struct zt_http1_framing *f)
{
    struct wp_h2c *s = ud;
    struct wp_h2x *x = s->cur = wp_h2x_new(s, 0);
    s->keep = f->keep_alive && !s->w->draining;
    zt_http_head_cleanup(&x->req);
    zt_http1_parser_take_head(s->req_p, &x->req);
    /* Connection and what it names, TE, Transfer-Encoding: HTTP/1.1's. */
    zt_http1_strip_hop_by_hop(&x->req, false);
    x->req_end = !f->has_body;
    x->is_upgrade = f->is_upgrade;
    if (f->is_upgrade)
        s->keep = false;
    /* As Envoy: the waypoint asks for the body itself. */
    if (f->expect_continue && f->has_body)
        wp_stream_queue(&s->down, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    wp_h2x_start(x);
}

static void f_on_body(void *ud, const uint8_t *data, size_t len)
{
    struct wp_h2c *s = ud;
    struct wp_h2x *x = s->cur;
    if (!x)
        return;
    wp_mirror_body(&x->mirror, data, len);
    if (!x->is_local_reply)
        wp_h2x_body(x, data, len);
}

static void f_on_message_end(void *ud, struct zt_http_head *trailers)
{
    struct wp_h2c *s = ud;
    struct wp_h2x *x = s->cur;
    if (!x)
        return;
    if (trailers)
        copy_trailers(&x->req_trailers, trailers);
    if (!x->req_end)
        wp_h2x_req_end(x);
    x->req_end = true;
}

static const struct zt_http1_ops f_ops = {
    .on_head = f_on_head,
    .on_body = f_on_body,
    .on_message_end = f_on_message_end,
};

/* The client ended its side: once nothing is in flight and every byte it
 * sent was parsed (pipelined requests are answered first), the connection
 * ends; a request it cut short is refused. */
static void f_maybe_close(struct wp_h2c *s)
{
    if (s->ended || s->closing || s->cur || !s->down.rx_eof || s->din.len)
        return;
    if (zt_http1_parse_eof(s->req_p) < 0) {
        f_refuse(s, 400, "bad request", "the client closed inside a request");
        return;
    }
    s->closing = true;
    wp_stream_end(&s->down);
}

/* Parses what the client sent while no request is in flight, or the
 * body of the one that is. */
static void f_feed(struct wp_h2c *s)
{
    if (s->in_parse)
        return;
    while (!s->ended && !s->closing && s->din.len) {
        enum zt_http1_state st = zt_http1_parser_state(s->req_p);
        if (st == ZT_HTTP1_ST_UPGRADED)
            return; /* refused (501); nothing more is read */
        if (st == ZT_HTTP1_ST_DONE) {
            if (s->cur || !s->keep)
                return;
            zt_http1_parser_resume(s->req_p);
        }
        size_t used = 0;
        s->in_parse = true;
        int rc = zt_http1_parse(s->req_p, zt_buf_head(&s->din), s->din.len, &used);
        s->in_parse = false;
        zt_buf_consume(&s->din, used);
        if (rc < 0) {
            enum zt_http1_error e = zt_http1_parser_error(s->req_p);
            f_refuse(s, zt_http1_error_status(e), "bad request", zt_http1_error_str(e));
            return;
        }
        if (used == 0)
            return;
    }
    if (!s->din.len)
        zt_buf_release(&s->din);
}

/* The response head: framed for HTTP/1.1 and queued. */
static void f_respond(struct wp_h2x *x, bool end)
{
    struct wp_h2c *s = x->s;
    struct zt_http_head *h = &x->resp;
    bool no_body =
        strcmp(x->method, "HEAD") == 0 || h->status < 200 || h->status == 204 || h->status == 304;
    zt_http_head_remove(h, "transfer-encoding");
    s->resp_chunked = false;
    int rc = 0;
    if (!no_body && !zt_http_head_get(h, "content-length")) {
        if (end)
            rc = zt_http_head_set(h, "content-length", "0");
        else
            rc = zt_http_head_set(h, "transfer-encoding", "chunked");
        s->resp_chunked = !end;
    }
    if (!x->req_end)
        s->keep = false; /* the rest of the request is not read */
    if (rc == 0 && !s->keep)
        rc = zt_http_head_set(h, "connection", "close");
    if (rc < 0 || zt_http1_encode_head(h, &s->out) < 0) {
        zt_buf_consume(&s->out, s->out.len);
        wp_h2x_error(x, "response cannot be written as HTTP/1.1", NULL);
        s->front->reset(x, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    wp_stream_queue(&s->down, zt_buf_head(&s->out), s->out.len);
    zt_buf_consume(&s->out, s->out.len);
    s->repump = true;
}

static void f_resume(struct wp_h2x *x)
{
    x->s->repump = true;
}

/* HTTP/1.1 cannot cut a response short but by closing the connection. */
static void f_reset(struct wp_h2x *x, uint32_t h2_error)
{
    x->s->keep = false;
    x->s->closing = true;
    x->s->cut = true;
    x->s->repump = true;
}

static void f_consumed(struct wp_h2x *x, size_t n)
{
    f_return(x->s);
}

static void f_forget(struct wp_h2x *x)
{
    if (x->s->cur == x)
        x->s->cur = NULL;
}

const struct wp_front_ops wp_h1front_ops = {
    .respond = f_respond,
    .resume = f_resume,
    .reset = f_reset,
    .consumed = f_consumed,
    .forget = f_forget,
};

int wp_h1front_out(struct wp_h2c *s)
{
    struct wp_h2x *x = s->cur;
    if (s->cut)
        return -1;
    if (!x || !x->resp_started)
        return 0;
    size_t took = 0;
    while (x->to_down.len && s->down.q.len < WP_H2C_QUEUE_HIGH) {
        size_t n = x->to_down.len < WP_H2C_QUEUE_HIGH ? x->to_down.len : WP_H2C_QUEUE_HIGH;
        if (s->resp_chunked)
            zt_http1_encode_chunk_header(&s->out, n);
        wp_stream_queue(&s->down, zt_buf_head(&s->out), s->out.len);
        zt_buf_consume(&s->out, s->out.len);
        wp_stream_queue(&s->down, zt_buf_head(&x->to_down), n);
        if (s->resp_chunked)
            zt_http1_encode_chunk_end(&s->out);
        zt_buf_consume(&x->to_down, n);
        took += n;
    }
    wp_h2x_down_took(x, took);
    if (!x->resp_end || x->to_down.len)
        return 0;
    /* The response is whole: its end, then the next request (or the end
     * of the connection). */
    zt_buf_release(&x->to_down);
    if (s->resp_chunked && zt_http1_encode_last_chunk(&x->resp_trailers, &s->out) < 0)
        zt_http1_encode_last_chunk(NULL, &s->out);
    wp_stream_queue(&s->down, zt_buf_head(&s->out), s->out.len);
    zt_buf_consume(&s->out, s->out.len);
    if (!x->req_end)
        s->keep = false;
    wp_h2x_end(x);
    s->cur = NULL;
    if (!s->keep) {
        s->closing = true;
        wp_stream_end(&s->down);
        return 0;
    }
    zt_http1_parser_shrink(s->req_p);
    f_feed(s);
    f_return(s);
    f_maybe_close(s);
    return 0;
}

static void f_down_on_data(struct wp_stream *st, const uint8_t *data, size_t len)
{
    struct wp_h2c *s = st->owner;
    if (s->ended || s->closing) {
        wp_stream_consume(st, len);
        return;
    }
    zt_buf_append(&s->din, data, len);
    s->down_unreturned += len;
    f_feed(s);
    f_return(s);
    wp_h2c_pump(s);
}

static void f_down_on_end(struct wp_stream *st)
{
    struct wp_h2c *s = st->owner;
    if (s->ended)
        return;
    f_feed(s);
    /* A body cut short can never end: the request is refused (or its
     * response cut). */
    if (s->cur && !s->cur->req_end && !s->din.len && !s->closing)
        f_refuse(s, 400, "bad request", "the client closed inside a request");
    f_maybe_close(s);
    wp_h2c_pump(s);
}

static void f_down_on_close(struct wp_stream *st, int error)
{
    wp_h2c_session_end(st->owner);
}

static void f_down_on_sent(struct wp_stream *st, size_t n)
{
    struct wp_h2c *s = st->owner;
    if (s->down.q.len < WP_H2C_QUEUE_HIGH)
        wp_h2c_pump(s);
}

const struct wp_stream_ops wp_h1front_down_ops = {
    .on_data = f_down_on_data,
    .on_end = f_down_on_end,
    .on_close = f_down_on_close,
    .on_sent = f_down_on_sent,
};

struct zt_http1_parser *wp_h1front_parser(struct wp_h2c *s)
{
    return zt_http1_parser_new(false, &f_ops, s);
}

void wp_h1front_drain(struct wp_h2c *s)
{
    s->keep = false;
    if (!s->cur && !s->closing && !s->ended) {
        s->closing = true;
        wp_stream_end(&s->down);
    }
}
