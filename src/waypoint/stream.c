/* The waypoint's HTTP/2 streams as byte pipes (stream.h). */
#include "waypoint/stream.h"

#include <errno.h>
#include <string.h>

static void wake(struct wp_stream *s)
{
    if (s->h2 && s->is_flowing) {
        struct zt_h2conn *h2 = s->h2;
        zt_h2conn_resume(h2, s->sid);
        zt_h2conn_flush(h2);
    }
}

static void on_response(void *sud, int status)
{
    struct wp_stream *s = sud;
    if (status == 200)
        s->is_flowing = true;
    if (s->ops->on_response)
        s->ops->on_response(s, status);
    if (status == 200 && (s->q.len || s->q_eof))
        wake(s);
}

static void on_data(void *sud, const uint8_t *data, size_t len)
{
    struct wp_stream *s = sud;
    s->rx += len;
    s->ops->on_data(s, data, len);
}

static void on_end(void *sud)
{
    struct wp_stream *s = sud;
    s->rx_eof = true;
    s->ops->on_end(s);
}

static void on_close(void *sud, int error)
{
    struct wp_stream *s = sud;
    s->h2 = NULL;
    s->is_flowing = false;
    bool clean = error == 0 && s->rx_eof && s->eof_sent;
    s->ops->on_close(s, clean ? 0 : error ? error : -ECONNRESET);
}

static ssize_t on_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct wp_stream *s = sud;
    size_t n = s->q.len < len ? s->q.len : len;
    if (n == 0) {
        if (s->q_eof) {
            *eof = true;
            s->eof_sent = true;
            return 0;
        }
        return -EAGAIN;
    }
    memcpy(buf, zt_buf_head(&s->q), n);
    zt_buf_consume(&s->q, n);
    s->tx += n;
    /* The end goes with the last bytes: after a short read nghttp2 asks
     * again only when resumed. */
    if (s->q.len == 0 && s->q_eof) {
        *eof = true;
        s->eof_sent = true;
    }
    if (s->ops->on_sent)
        s->ops->on_sent(s, n);
    return (ssize_t)n;
}

static const struct zt_h2_stream_ops h2_ops = {
    .on_response = on_response,
    .on_data = on_data,
    .on_end = on_end,
    .on_close = on_close,
    .read = on_read,
    .is_body_on_resume = true,
};

void wp_stream_init(struct wp_stream *s, const struct wp_stream_ops *ops, void *owner)
{
    memset(s, 0, sizeof(*s));
    s->ops = ops;
    s->owner = owner;
}

void wp_stream_attach(struct wp_stream *s, struct zt_h2conn *h2, int32_t sid)
{
    s->h2 = h2;
    s->sid = sid;
    zt_h2conn_attach(h2, sid, &h2_ops, s);
}

int wp_stream_respond(struct wp_stream *s, int status)
{
    if (!s->h2)
        return -EPIPE;
    struct zt_h2conn *h2 = s->h2;
    int rc = zt_h2conn_respond(h2, s->sid, status, NULL, 0);
    if (rc == 0 && status == 200) {
        s->is_flowing = true;
        if (s->q.len || s->q_eof)
            zt_h2conn_resume(h2, s->sid);
    }
    zt_h2conn_flush(h2);
    return rc;
}

int wp_stream_connect(struct wp_stream *s, struct zt_h2conn *h2, const char *authority,
                      const char *const *headers, size_t n_headers)
{
    int32_t sid = zt_h2conn_connect(h2, authority, headers, n_headers, &h2_ops, s);
    if (sid < 0)
        return sid;
    s->h2 = h2;
    s->sid = sid;
    zt_h2conn_flush(h2);
    return 0;
}

void wp_stream_write(struct wp_stream *s, const void *data, size_t len)
{
    if (len == 0)
        return;
    zt_buf_append(&s->q, data, len);
    wake(s);
}

void wp_stream_queue(struct wp_stream *s, const void *data, size_t len)
{
    zt_buf_append(&s->q, data, len);
}

void wp_stream_flush(struct wp_stream *s)
{
    if (s->q.len)
        wake(s);
}

void wp_stream_end(struct wp_stream *s)
{
    if (s->q_eof)
        return;
    s->q_eof = true;
    wake(s);
}

void wp_stream_consume(struct wp_stream *s, size_t n)
{
    if (s->h2 && n) {
        struct zt_h2conn *h2 = s->h2;
        zt_h2conn_consume(h2, s->sid, n);
        zt_h2conn_flush(h2);
    }
}

void wp_stream_reset(struct wp_stream *s)
{
    if (s->h2) {
        struct zt_h2conn *h2 = s->h2;
        zt_h2conn_reset(h2, s->sid);
        zt_h2conn_flush(h2);
    }
}

void wp_stream_detach(struct wp_stream *s)
{
    if (s->h2) {
        struct zt_h2conn *h2 = s->h2;
        s->h2 = NULL;
        zt_h2conn_detach(h2, s->sid);
    }
}

void wp_stream_move(struct wp_stream *to, struct wp_stream *from)
{
    const struct wp_stream_ops *ops = to->ops;
    void *owner = to->owner;
    zt_buf_release(&to->q);
    *to = *from;
    to->ops = ops;
    to->owner = owner;
    if (to->h2)
        zt_h2conn_attach(to->h2, to->sid, &h2_ops, to);
    wp_stream_init(from, from->ops, from->owner);
}

void wp_stream_cleanup(struct wp_stream *s)
{
    zt_buf_release(&s->q);
}
