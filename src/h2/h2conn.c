/* HTTP/2 over TLS on a non-blocking socket. The nghttp2 session is sans-I/O;
 * this file moves its bytes through OpenSSL and the socket, and maps its
 * callbacks onto per-stream owner callbacks. */
#include "h2/h2conn.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define OUT_HIGH (64 * 1024)     /* plaintext per SSL_write: several full records */
#define CIPHER_HIGH (256 * 1024) /* stop producing while this much waits for the socket */
/* DATA frames of 4 TLS records exactly (header included), when the peer's
 * SETTINGS_MAX_FRAME_SIZE and the windows allow. */
#define DATA_FRAME_MAX (4 * 16384)
#define READ_CHUNK (64 * 1024)    /* one SSL_read */
#define READ_BUDGET (1024 * 1024) /* bytes per poll callback before yielding */
#define HANDSHAKE_TIMEOUT_MS 10000
#define PING_INTERVAL_MS 10000 /* keepalive defaults, as ztunnel: PING every 10 s ... */
#define PING_TIMEOUT_MS 20000  /* ... and drop the connection after 20 s without an ACK */
#define MAX_HEADER_VALUE 8192

struct h2_stream {
    int32_t id;
    const struct zt_h2_stream_ops *ops;
    void *sud;
    struct h2_stream *prev, *next;
    /* Request headers, server role, until on_request has run. */
    char *method, *authority, *baggage, *forwarded, *traceparent;
    char *path, *content_type, *authorization, *cluster_id;
    int status;           /* client role: response :status */
    nghttp2_nv *trailers; /* server role: sent after the body (zt_h2conn_set_trailers) */
    size_t n_trailers;
    char *trailer_buf;
    size_t unconsumed; /* DATA handed to on_data, not yet consumed */
};

struct zt_h2conn {
    uv_loop_t *loop;
    int fd;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;
    int poll_events;
    SSL *ssl;
    nghttp2_session *ng;
    enum zt_h2conn_role role;
    enum zt_h2conn_state state;
    struct zt_h2_settings settings;
    const struct zt_h2conn_ops *ops;
    void *ud;
    struct zt_buf out;
    BIO *wbio;          /* TLS output lands here, then goes out in one send() */
    struct zt_buf cout; /* ciphertext the socket has not taken yet */
    bool want_write;    /* cout is waiting for POLLOUT */
    int recv_depth;
    uint64_t ping_sent_ms;
    /* outstanding keepalive PING, 0 = none */ /* inside nghttp2_session_mem_recv: sending is
                                                  not allowed */
    struct h2_stream *streams;
    unsigned nstreams;
    uint64_t opened;
    size_t conn_unannounced; /* consumed, not yet in a connection WINDOW_UPDATE */
    int close_error;
};

static _Thread_local uint8_t read_buf[READ_CHUNK];

static const char *const state_names[] = {"tcp-connecting", "tls-handshake", "open", "draining",
                                          "closed"};

const char *zt_h2conn_state_str(enum zt_h2conn_state st)
{
    return (unsigned)st < sizeof(state_names) / sizeof(state_names[0]) ? state_names[st] : "?";
}

static void set_state(struct zt_h2conn *c, enum zt_h2conn_state st)
{
    ZT_DEBUG("h2", "conn %p fd=%d %s -> %s", (void *)c, c->fd, zt_h2conn_state_str(c->state),
             zt_h2conn_state_str(st));
    c->state = st;
}

static bool is_closed(const struct zt_h2conn *c)
{
    return c->state == ZT_H2_ST_CLOSED;
}

/* ---- streams ---- */

static struct h2_stream *stream_new(struct zt_h2conn *c, int32_t id)
{
    struct h2_stream *st = calloc(1, sizeof(*st));
    if (!st)
        abort();
    st->id = id;
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    c->nstreams++;
    c->opened++;
    return st;
}

static void stream_free_headers(struct h2_stream *st)
{
    free(st->path);
    free(st->content_type);
    free(st->authorization);
    free(st->cluster_id);
    st->path = st->content_type = st->authorization = st->cluster_id = NULL;
    free(st->method);
    free(st->authority);
    free(st->baggage);
    free(st->forwarded);
    free(st->traceparent);
    st->method = st->authority = st->baggage = st->forwarded = st->traceparent = NULL;
}

static void stream_unlink(struct zt_h2conn *c, struct h2_stream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    c->nstreams--;
    stream_free_headers(st);
    free(st->trailers);
    free(st->trailer_buf);
    free(st);
}

static struct h2_stream *stream_get(struct zt_h2conn *c, int32_t id)
{
    if (is_closed(c))
        return NULL;
    return nghttp2_session_get_stream_user_data(c->ng, id);
}

/* ---- connection teardown ---- */

static void on_handle_closed(uv_handle_t *h)
{
    struct zt_h2conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->ng)
        nghttp2_session_del(c->ng);
    if (c->fd >= 0)
        close(c->fd);
    zt_buf_release(&c->out);
    zt_buf_release(&c->cout);
    free(c);
}

void zt_h2conn_close(struct zt_h2conn *c, int error)
{
    if (is_closed(c))
        return;
    set_state(c, ZT_H2_ST_CLOSED);
    c->close_error = error;
    int stream_err = error ? error : ZT_E_CLOSED;
    while (c->streams) {
        struct h2_stream *st = c->streams;
        const struct zt_h2_stream_ops *ops = st->ops;
        void *sud = st->sud;
        nghttp2_session_set_stream_user_data(c->ng, st->id, NULL);
        stream_unlink(c, st);
        if (ops)
            ops->on_close(sud, stream_err);
    }
    if (c->ops->on_closed)
        c->ops->on_closed(c, c->ud, error);
    uv_poll_stop(&c->poll);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->poll, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* ---- polling ---- */

static void on_poll(uv_poll_t *p, int status, int events);

static void update_poll(struct zt_h2conn *c)
{
    if (is_closed(c))
        return;
    int ev = 0;
    switch (c->state) {
    case ZT_H2_ST_TCP_CONNECTING:
        ev = UV_WRITABLE;
        break;
    case ZT_H2_ST_TLS_HANDSHAKE:
        ev = UV_READABLE | (c->want_write ? UV_WRITABLE : 0);
        break;
    default:
        ev = UV_READABLE | (c->want_write ? UV_WRITABLE : 0);
        break;
    }
    if (ev != c->poll_events) {
        c->poll_events = ev;
        uv_poll_start(&c->poll, ev, on_poll);
    }
}

/* ---- output ---- */

/* Moves what OpenSSL wrote into the memory BIO to the socket: one send()
 * for all the records produced since the last call, the rest kept in cout
 * until the socket is writable. Returns 0 or a negative errno. */
static int push_cipher(struct zt_h2conn *c)
{
    char *p;
    long n = BIO_get_mem_data(c->wbio, &p);
    size_t off = 0;
    if (n > 0) {
        if (c->cout.len == 0) {
            while (off < (size_t)n) {
                ssize_t w = send(c->fd, p + off, (size_t)n - off, MSG_NOSIGNAL);
                if (w > 0) {
                    off += (size_t)w;
                    continue;
                }
                if (w < 0 && (errno == EAGAIN || errno == EINTR))
                    break;
                return -errno;
            }
        }
        zt_buf_append(&c->cout, p + off, (size_t)n - off);
        (void)BIO_reset(c->wbio);
    } else if (c->cout.len > 0) {
        while (c->cout.len > 0) {
            ssize_t w = send(c->fd, zt_buf_head(&c->cout), c->cout.len, MSG_NOSIGNAL);
            if (w > 0) {
                zt_buf_consume(&c->cout, (size_t)w);
                continue;
            }
            if (w < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            return -errno;
        }
    }
    if (c->cout.len == 0)
        zt_buf_release(&c->cout);
    c->want_write = c->cout.len > 0;
    return 0;
}

void zt_h2conn_flush(struct zt_h2conn *c)
{
    if (c->state != ZT_H2_ST_OPEN && c->state != ZT_H2_ST_DRAINING)
        return;
    if (c->recv_depth > 0)
        return; /* do_read flushes once nghttp2 returns */
    int rc = push_cipher(c);
    /* Frames are packed into OUT_HIGH of plaintext so records come out full
     * (a DATA frame is a few bytes over one record), and production stops
     * while the socket is behind: that is the connection's backpressure. */
    while (rc == 0 && c->cout.len < CIPHER_HIGH) {
        while (c->out.len < OUT_HIGH) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(c->ng, &p);
            if (n < 0) {
                zt_h2conn_close(c, ZT_E_PROTO);
                return;
            }
            if (n == 0)
                break;
            if (c->out.len == 0 && (size_t)n >= DATA_FRAME_MAX) {
                /* A full DATA frame is exactly whole records: encrypt it
                 * straight from nghttp2's buffer, no copy. */
                for (ssize_t done = 0; done < n;) {
                    /* Partial-write mode returns after each record. */
                    ERR_clear_error();
                    int w = SSL_write(c->ssl, p + done, (int)(n - done));
                    if (w <= 0) {
                        zt_h2conn_close(c, ZT_E_TLS);
                        return;
                    }
                    done += w;
                }
                rc = push_cipher(c);
                if (rc < 0 || c->cout.len >= CIPHER_HIGH)
                    break;
                continue;
            }
            zt_buf_append(&c->out, p, (size_t)n);
        }
        if (is_closed(c))
            return;
        if (c->out.len == 0)
            break;
        ERR_clear_error();
        int w = SSL_write(c->ssl, zt_buf_head(&c->out), (int)c->out.len);
        if (w <= 0) {
            zt_h2conn_close(c, ZT_E_TLS);
            return;
        }
        zt_buf_consume(&c->out, (size_t)w);
        rc = push_cipher(c);
    }
    if (rc < 0) {
        zt_h2conn_close(c, rc);
        return;
    }
    if (c->out.len == 0)
        zt_buf_release(&c->out);
    bool idle = c->out.len == 0 && c->cout.len == 0;
    if (idle && !nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng)) {
        zt_h2conn_close(c, 0);
        return;
    }
    if (idle && c->state == ZT_H2_ST_DRAINING && c->nstreams == 0) {
        zt_h2conn_close(c, 0);
        return;
    }
    update_poll(c);
}

/* ---- input ---- */

static void do_read(struct zt_h2conn *c)
{
    size_t budget = READ_BUDGET;
    while (!is_closed(c)) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, read_buf, sizeof(read_buf));
        if (n > 0) {
            c->recv_depth++;
            ssize_t r = nghttp2_session_mem_recv(c->ng, read_buf, (size_t)n);
            c->recv_depth--;
            if (r < 0) {
                ZT_DEBUG("h2", "fd=%d http/2 error: %s", c->fd, nghttp2_strerror((int)r));
                /* nghttp2 queued a GOAWAY for protocol errors; try to send it. */
                zt_h2conn_flush(c);
                zt_h2conn_close(c, ZT_E_PROTO);
                return;
            }
            /* Read-ahead took what the socket had; when OpenSSL holds no
             * more, the next read would only say EAGAIN: leave it to the
             * (level-triggered) poll. */
            if (!SSL_has_pending(c->ssl) || (size_t)n >= budget)
                return;
            budget -= (size_t)n;
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            return;
        zt_h2conn_close(c, err == SSL_ERROR_ZERO_RETURN
                               ? 0
                               : (err == SSL_ERROR_SYSCALL ? -ECONNRESET : ZT_E_TLS));
        return;
    }
}

/* ---- handshake ---- */

static void on_timeout(uv_timer_t *t);

static void start_session(struct zt_h2conn *c)
{
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        zt_h2conn_close(c, ZT_E_TLS);
        return;
    }
    uv_timer_stop(&c->timer);
    uint64_t every = c->settings.ping_interval_ms ? c->settings.ping_interval_ms : PING_INTERVAL_MS;
    uv_timer_start(&c->timer, on_timeout, every, every);
    set_state(c, ZT_H2_ST_OPEN);
    nghttp2_settings_entry iv[5];
    size_t n = 0;
    iv[n++] =
        (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->settings.stream_window};
    iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_FRAME_SIZE, c->settings.max_frame_size};
    iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
                                       c->settings.max_header_list};
    if (c->role == ZT_H2_CLIENT)
        iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
    if (c->settings.max_concurrent_streams)
        iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                                           c->settings.max_concurrent_streams};
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, n) != 0 ||
        nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)c->settings.connection_window) != 0) {
        zt_h2conn_close(c, ZT_E_PROTO);
        return;
    }
    /* SETTINGS are queued first, so streams opened from on_ready follow them. */
    if (c->ops->on_ready) {
        int rc = c->ops->on_ready(c, c->ud);
        if (rc < 0) {
            zt_h2conn_close(c, rc);
            return;
        }
        if (is_closed(c))
            return;
    }
    zt_h2conn_flush(c);
    if (!is_closed(c))
        do_read(c);
    if (!is_closed(c))
        zt_h2conn_flush(c);
}

static void do_handshake(struct zt_h2conn *c)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(c->ssl);
    int err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, rc);
    /* Handshake records (and alerts on failure) sit in the memory BIO. */
    int perr = push_cipher(c);
    if (perr < 0) {
        zt_h2conn_close(c, perr);
        return;
    }
    if (rc == 1) {
        start_session(c);
        return;
    }
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        update_poll(c);
        return;
    }
    unsigned long e = ERR_peek_error();
    char reason[256] = "connection closed";
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    long vr = SSL_get_verify_result(c->ssl);
    ZT_DEBUG("h2", "fd=%d TLS handshake failed: %s (verify: %s)", c->fd, reason,
             X509_verify_cert_error_string(vr));
    zt_h2conn_close(c, ZT_E_TLS);
}

static void on_timeout(uv_timer_t *t)
{
    struct zt_h2conn *c = t->data;
    if (c->state == ZT_H2_ST_TCP_CONNECTING || c->state == ZT_H2_ST_TLS_HANDSHAKE) {
        zt_h2conn_close(c, ZT_E_TIMEOUT);
        return;
    }
    if (is_closed(c))
        return;
    uint64_t now = uv_now(c->loop);
    if (c->ping_sent_ms) {
        uint64_t limit =
            c->settings.ping_timeout_ms ? c->settings.ping_timeout_ms : PING_TIMEOUT_MS;
        if (now - c->ping_sent_ms >= limit) {
            ZT_DEBUG("h2", "fd=%d keepalive PING not answered: closing", c->fd);
            zt_h2conn_close(c, ZT_E_TIMEOUT);
        }
        return;
    }
    if (nghttp2_submit_ping(c->ng, NGHTTP2_FLAG_NONE, NULL) == 0) {
        c->ping_sent_ms = now;
        zt_h2conn_flush(c);
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct zt_h2conn *c = p->data;
    if (is_closed(c))
        return;
    if (status < 0 && c->state != ZT_H2_ST_TCP_CONNECTING) {
        /* libuv reports a socket error (POLLERR, e.g. a peer's RST) as
         * UV_EBADF; the socket knows the real cause. */
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        zt_h2conn_close(c, err ? -err : status);
        return;
    }
    switch (c->state) {
    case ZT_H2_ST_TCP_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            zt_h2conn_close(c, -err);
            return;
        }
        set_state(c, ZT_H2_ST_TLS_HANDSHAKE);
        do_handshake(c);
        return;
    }
    case ZT_H2_ST_TLS_HANDSHAKE:
        do_handshake(c);
        return;
    default:
        do_read(c);
        if (!is_closed(c))
            zt_h2conn_flush(c);
        return;
    }
}

/* ---- flow control ---- */

/* Returns `n` received bytes to the connection window (and to the stream's
 * if `stream_too`). nghttp2 alone would announce them only once half the
 * connection window is consumed; then streams whose readers stall can hold
 * so much of it that a live stream never gets the rest back. So announce as
 * soon as what was given back is at least what the peer has left. */
static void give_back(struct zt_h2conn *c, int32_t stream_id, size_t n, bool stream_too)
{
    int32_t before = nghttp2_session_get_local_window_size(c->ng);
    if (stream_too)
        nghttp2_session_consume(c->ng, stream_id, n);
    else
        nghttp2_session_consume_connection(c->ng, n);
    c->conn_unannounced += n;
    int32_t left = nghttp2_session_get_local_window_size(c->ng);
    if (left > before) {
        c->conn_unannounced = 0; /* nghttp2 queued its own WINDOW_UPDATE */
        return;
    }
    if (c->conn_unannounced >= (size_t)left) {
        nghttp2_submit_window_update(c->ng, NGHTTP2_FLAG_NONE, 0, (int32_t)c->conn_unannounced);
        c->conn_unannounced = 0;
    }
}

/* ---- nghttp2 callbacks ---- */

static char *dup_capped(const uint8_t *v, size_t len)
{
    if (len > MAX_HEADER_VALUE)
        len = MAX_HEADER_VALUE;
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, v, len);
    s[len] = 0;
    return s;
}

static int cb_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct zt_h2conn *c = user;
    if (c->role != ZT_H2_SERVER || f->hd.type != NGHTTP2_HEADERS ||
        f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (c->state != ZT_H2_ST_OPEN) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    struct h2_stream *st = stream_new(c, f->hd.stream_id);
    nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, st);
    return 0;
}

static int cb_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct zt_h2conn *c = user;
    struct h2_stream *st = stream_get(c, f->hd.stream_id);
    if (!st)
        return 0;
    if (c->role == ZT_H2_CLIENT) {
        if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3)
            st->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        else if (st->ops && st->ops->on_header && namelen < 128 && valuelen <= MAX_HEADER_VALUE) {
            /* Response headers and trailers (gRPC status) for owners that
             * want them; nghttp2 has validated the field already. */
            char n[128], *v = dup_capped(value, valuelen);
            memcpy(n, name, namelen);
            n[namelen] = 0;
            st->ops->on_header(st->sud, n, v, f->headers.cat == NGHTTP2_HCAT_HEADERS);
            free(v);
        }
        return 0;
    }
    char **slot = NULL;
#define HDR(lit, field)                                                                            \
    if (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)                             \
        slot = &st->field;
    HDR(":method", method)
    HDR(":authority", authority)
    HDR("baggage", baggage)
    HDR("forwarded", forwarded)
    HDR("traceparent", traceparent)
    HDR(":path", path)
    HDR("content-type", content_type)
    HDR("authorization", authorization)
    HDR("clusterid", cluster_id)
#undef HDR
    if (slot && !*slot)
        *slot = dup_capped(value, valuelen);
    return 0;
}

static void notify_end(struct h2_stream *st)
{
    if (st->ops && st->ops->on_end)
        st->ops->on_end(st->sud);
}

static int cb_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct zt_h2conn *c = user;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) {
        c->ping_sent_ms = 0;
        return 0;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
        if (c->state == ZT_H2_ST_OPEN) {
            set_state(c, ZT_H2_ST_DRAINING);
            if (c->ops->on_draining)
                c->ops->on_draining(c, c->ud);
        }
        return 0;
    }
    struct h2_stream *st = stream_get(c, f->hd.stream_id);
    if (!st)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_HEADERS)) {
        if (c->role == ZT_H2_SERVER && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            struct zt_h2_request req = {
                .method = st->method ? st->method : "",
                .authority = st->authority ? st->authority : "",
                .baggage = st->baggage,
                .forwarded = st->forwarded,
                .traceparent = st->traceparent,
                .path = st->path,
                .content_type = st->content_type,
                .authorization = st->authorization,
                .cluster_id = st->cluster_id,
            };
            c->ops->on_request(c, c->ud, f->hd.stream_id, &req);
            st = stream_get(c, f->hd.stream_id);
            if (!st)
                return 0;
            stream_free_headers(st);
        } else if (c->role == ZT_H2_CLIENT && f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
            if (st->ops && st->ops->on_response)
                st->ops->on_response(st->sud, st->status);
            if (is_closed(c))
                return 0;
            st = stream_get(c, f->hd.stream_id);
            if (!st)
                return 0;
        }
    }
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        notify_end(st);
    return 0;
}

static int cb_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user)
{
    struct zt_h2conn *c = user;
    struct h2_stream *st = stream_get(c, stream_id);
    if (!st || !st->ops || !st->ops->on_data) {
        give_back(c, stream_id, len, true);
        return 0;
    }
    st->unconsumed += len;
    st->ops->on_data(st->sud, data, len);
    return 0;
}

static int cb_stream_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code, void *user)
{
    struct zt_h2conn *c = user;
    struct h2_stream *st = stream_get(c, stream_id);
    if (!st)
        return 0;
    const struct zt_h2_stream_ops *ops = st->ops;
    void *sud = st->sud;
    /* Bytes its owner never consumed would otherwise shrink the connection
     * window for good. */
    if (st->unconsumed)
        give_back(c, stream_id, st->unconsumed, false);
    nghttp2_session_set_stream_user_data(ng, stream_id, NULL);
    stream_unlink(c, st);
    if (ops) {
        /* A peer's RST with NO_ERROR or CANCEL is an orderly end of its side. */
        int err =
            (error_code == NGHTTP2_NO_ERROR || error_code == NGHTTP2_CANCEL) ? 0 : ZT_E_CLOSED;
        ops->on_close(sud, err);
    }
    return 0;
}

/* A server's final answer without a body ends the whole stream: once it is
 * out, RST_STREAM(NO_ERROR) tells the client to stop sending (RFC 9113 8.1)
 * rather than leaving the stream half-open until the client's END_STREAM.
 * Submitted only after the HEADERS left: an earlier RST would cancel them. */
static int cb_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct zt_h2conn *c = user;
    if (c->role == ZT_H2_SERVER && f->hd.type == NGHTTP2_HEADERS &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_session_get_stream_remote_close(ng, f->hd.stream_id) == 0)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static ssize_t cb_data_read(nghttp2_session *ng, int32_t stream_id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct zt_h2conn *c = user;
    struct h2_stream *st = stream_get(c, stream_id);
    if (!st || !st->ops || !st->ops->read)
        return NGHTTP2_ERR_DEFERRED;
    bool eof = false;
    ssize_t n = st->ops->read(st->sud, buf, len, &eof);
    if (n == -EAGAIN)
        return NGHTTP2_ERR_DEFERRED;
    if (n < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->trailers) {
            /* The stream ends with the trailers' HEADERS frame instead. */
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(ng, stream_id, st->trailers, st->n_trailers) != 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return n;
}

static ssize_t cb_read_length(nghttp2_session *ng, uint8_t frame_type, int32_t stream_id,
                              int32_t session_window, int32_t stream_window,
                              uint32_t remote_max_frame_size, void *user)
{
    ssize_t n = DATA_FRAME_MAX - 9; /* the frame header */
    if (n > session_window)
        n = session_window;
    if (n > stream_window)
        n = stream_window;
    if (n > (ssize_t)remote_max_frame_size)
        n = (ssize_t)remote_max_frame_size;
    return n;
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static pthread_once_t callbacks_once = PTHREAD_ONCE_INIT;

static void init_callbacks(void)
{
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, cb_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, cb_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, cb_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, cb_frame_send);
    nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks, cb_read_length);
    nghttp2_option_new(&options);
    nghttp2_option_set_no_auto_window_update(options, 1);
    nghttp2_option_set_peer_max_concurrent_streams(options, 100);
}

/* ---- public API ---- */

struct zt_h2conn *zt_h2conn_new(uv_loop_t *loop, int fd, SSL_CTX *ctx, enum zt_h2conn_role role,
                                const struct zt_h2_settings *settings,
                                const struct zt_h2conn_ops *ops, void *ud)
{
    pthread_once(&callbacks_once, init_callbacks);
    struct zt_h2conn *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->loop = loop;
    c->fd = fd;
    c->role = role;
    c->settings = *settings;
    c->ops = ops;
    c->ud = ud;
    c->state = role == ZT_H2_CLIENT ? ZT_H2_ST_TCP_CONNECTING : ZT_H2_ST_TLS_HANDSHAKE;
    if (uv_poll_init(loop, &c->poll, fd) < 0) {
        close(fd);
        free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    c->poll.data = c->timer.data = c;
    c->handles_open = 2;
    c->ssl = SSL_new(ctx);
    if (!c->ssl)
        abort();
    /* Reads come straight from the socket, several records per read(2);
     * writes go to a memory BIO so each flush costs one send(2). */
    BIO *rbio = BIO_new_socket(fd, BIO_NOCLOSE);
    c->wbio = BIO_new(BIO_s_mem());
    if (!rbio || !c->wbio)
        abort();
    SSL_set_bio(c->ssl, rbio, c->wbio);
    SSL_set_read_ahead(c->ssl, 1);
    SSL_set_default_read_buffer_len(c->ssl, READ_CHUNK);
    int rc = role == ZT_H2_CLIENT ? nghttp2_session_client_new2(&c->ng, callbacks, c, options)
                                  : nghttp2_session_server_new2(&c->ng, callbacks, c, options);
    if (rc != 0)
        abort();
    if (role == ZT_H2_CLIENT)
        SSL_set_connect_state(c->ssl);
    else
        SSL_set_accept_state(c->ssl);
    uv_timer_start(&c->timer, on_timeout, HANDSHAKE_TIMEOUT_MS, 0);
    /* Never handshake before returning: callbacks must not run inside new(). */
    update_poll(c);
    return c;
}

enum zt_h2conn_state zt_h2conn_state(const struct zt_h2conn *c)
{
    return c->state;
}

SSL *zt_h2conn_ssl(struct zt_h2conn *c)
{
    return c->ssl;
}

int zt_h2conn_fd(const struct zt_h2conn *c)
{
    return c->fd;
}

unsigned zt_h2conn_streams(const struct zt_h2conn *c)
{
    return c->nstreams;
}

uint64_t zt_h2conn_streams_opened(const struct zt_h2conn *c)
{
    return c->opened;
}

uint32_t zt_h2conn_peer_max_streams(const struct zt_h2conn *c)
{
    if (c->state != ZT_H2_ST_OPEN && c->state != ZT_H2_ST_DRAINING)
        return UINT32_MAX;
    return nghttp2_session_get_remote_settings(c->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

static size_t build_nv(nghttp2_nv *nv, size_t cap, const char *const *headers, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < cap; i++) {
        const char *name = headers[2 * i], *value = headers[2 * i + 1];
        if (!value || !*value)
            continue;
        nv[k++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                               NGHTTP2_NV_FLAG_NONE};
    }
    return k;
}

int32_t zt_h2conn_submit(struct zt_h2conn *c, const char *const *headers, size_t n_headers,
                         const struct zt_h2_stream_ops *ops, void *sud)
{
    if (c->state != ZT_H2_ST_OPEN)
        return ZT_E_CLOSED;
    nghttp2_nv nv[24];
    size_t n = build_nv(nv, 24, headers, n_headers);
    struct h2_stream *st = stream_new(c, 0);
    st->ops = ops;
    st->sud = sud;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = cb_data_read};
    int32_t id = nghttp2_submit_request(c->ng, NULL, nv, n, &prd, st);
    if (id < 0) {
        stream_unlink(c, st);
        return ZT_E_PROTO;
    }
    st->id = id;
    return id;
}

int32_t zt_h2conn_connect(struct zt_h2conn *c, const char *authority, const char *const *headers,
                          size_t n_headers, const struct zt_h2_stream_ops *ops, void *sud)
{
    const char *all[2 * 16];
    size_t n = 0;
    all[n++] = ":method";
    all[n++] = "CONNECT";
    all[n++] = ":authority";
    all[n++] = authority;
    for (size_t i = 0; i < n_headers && n + 2 <= sizeof(all) / sizeof(all[0]); i++) {
        all[n++] = headers[2 * i];
        all[n++] = headers[2 * i + 1];
    }
    return zt_h2conn_submit(c, all, n / 2, ops, sud);
}

int zt_h2conn_set_trailers(struct zt_h2conn *c, int32_t stream_id, const char *const *headers,
                           size_t n_headers)
{
    struct h2_stream *st = stream_get(c, stream_id);
    if (!st)
        return ZT_E_CLOSED;
    if (n_headers > 8)
        return ZT_E_TOO_BIG;
    size_t bytes = 0;
    for (size_t i = 0; i < 2 * n_headers; i++)
        bytes += strlen(headers[i]) + 1;
    free(st->trailers);
    free(st->trailer_buf);
    st->trailers = calloc(n_headers ? n_headers : 1, sizeof(nghttp2_nv));
    st->trailer_buf = malloc(bytes ? bytes : 1);
    if (!st->trailers || !st->trailer_buf)
        abort();
    char *p = st->trailer_buf;
    for (size_t i = 0; i < n_headers; i++) {
        size_t nl = strlen(headers[2 * i]), vl = strlen(headers[2 * i + 1]);
        memcpy(p, headers[2 * i], nl + 1);
        memcpy(p + nl + 1, headers[2 * i + 1], vl + 1);
        st->trailers[i] =
            (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + nl + 1, nl, vl, NGHTTP2_NV_FLAG_NONE};
        p += nl + vl + 2;
    }
    st->n_trailers = n_headers;
    return 0;
}

void zt_h2conn_attach(struct zt_h2conn *c, int32_t stream_id, const struct zt_h2_stream_ops *ops,
                      void *sud)
{
    struct h2_stream *st = stream_get(c, stream_id);
    if (!st)
        return;
    st->ops = ops;
    st->sud = sud;
}

int zt_h2conn_respond(struct zt_h2conn *c, int32_t stream_id, int status,
                      const char *const *headers, size_t n_headers)
{
    struct h2_stream *st = stream_get(c, stream_id);
    if (!st)
        return ZT_E_CLOSED;
    char code[4];
    snprintf(code, sizeof(code), "%03d", status);
    nghttp2_nv nv[16];
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    size_t n = 1 + build_nv(nv + 1, 15, headers, n_headers);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = cb_data_read};
    int rc = nghttp2_submit_response(c->ng, stream_id, nv, n, status == 200 ? &prd : NULL);
    return rc == 0 ? 0 : ZT_E_PROTO;
}

void zt_h2conn_consume(struct zt_h2conn *c, int32_t stream_id, size_t n)
{
    struct h2_stream *st = stream_get(c, stream_id);
    /* A closed stream's bytes went back when it closed. */
    if (!st)
        return;
    if (n > st->unconsumed)
        n = st->unconsumed;
    if (n == 0)
        return;
    st->unconsumed -= n;
    give_back(c, stream_id, n, true);
}

void zt_h2conn_resume(struct zt_h2conn *c, int32_t stream_id)
{
    if (is_closed(c))
        return;
    nghttp2_session_resume_data(c->ng, stream_id);
}

void zt_h2conn_reset(struct zt_h2conn *c, int32_t stream_id)
{
    if (is_closed(c))
        return;
    nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
}

void zt_h2conn_detach(struct zt_h2conn *c, int32_t stream_id)
{
    struct h2_stream *st = stream_get(c, stream_id);
    if (!st)
        return;
    st->ops = NULL;
    st->sud = NULL;
    nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
}

void zt_h2conn_shutdown(struct zt_h2conn *c)
{
    if (c->state == ZT_H2_ST_OPEN) {
        nghttp2_submit_shutdown_notice(c->ng);
        nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->ng), NGHTTP2_NO_ERROR,
                              NULL, 0);
        set_state(c, ZT_H2_ST_DRAINING);
        zt_h2conn_flush(c);
    } else if (c->state < ZT_H2_ST_OPEN) {
        zt_h2conn_close(c, ZT_E_CLOSED);
    }
}
