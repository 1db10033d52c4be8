/* The HTTP/2 engine with no I/O: nghttp2 (sans-I/O) on top of OpenSSL
 * running over a BIO on the session's own buffers. This file maps nghttp2's
 * callbacks onto per-stream owner callbacks, packs frames into full TLS
 * records, and keeps the keepalive and handshake clocks in the caller's time. */
#include "h2/session.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/list.h"
#include "base/log.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_HIGH (64 * 1024) /* plaintext per SSL_write: several full records */
/* Stop producing while this much waits to go out: 256 KiB of DATA (a relay
 * buffer's worth) plus room for the records' and frames' overhead and the
 * short frame that usually ends a burst, so that a burst is one send(2). */
#define CIPHER_HIGH (256 * 1024 + 16 * 1024)
/* DATA frames of 4 TLS records exactly (header included), when the peer's
 * SETTINGS_MAX_FRAME_SIZE and the windows allow. */
#define DATA_FRAME_MAX (4 * 16384)
/* Room for one production run of full frames, reserved at once so bulk
 * output does not grow the buffer by doubling (each growth a copy). */
#define CIPHER_ROOM (CIPHER_HIGH + DATA_FRAME_MAX + 4 * 1024)
#define READ_CHUNK (64 * 1024) /* one SSL_read */
_Static_assert(READ_CHUNK <= ZT_BUF_POOL_CAP, "a read fits a pool buffer");
/* OpenSSL's read-ahead buffer: one recv(2) takes up to 256 KiB of records
 * (four times fewer calls than one per 64 KiB, the cost that matters on a
 * VM where each system call is dear); released while empty. */
#define RECORD_BUF (256 * 1024)
/* OpenSSL's record buffers (the read-ahead one above, and the write one),
 * and ours (out, cout), are kept while a connection is busy and freed once
 * it has been quiet this long: the contexts' SSL_MODE_RELEASE_BUFFERS would free and
 * allocate them again around every read and write (a 256 KiB malloc and
 * free per event, and the heap trims and page faults that go with them). */
#define BUFFERS_IDLE_MS 500
#define HANDSHAKE_TIMEOUT_MS 10000
#define PING_INTERVAL_MS 10000 /* keepalive defaults, as ztunnel: PING every 10 s ... */
#define PING_TIMEOUT_MS 20000  /* ... and drop the connection after 20 s without an ACK */
#define MAX_HEADER_VALUE 8192
/* Our HPACK encoder's dynamic table (RFC 7541 4.2, 6.3), instead of 4096: a
 * pooled connection's encoder and its peer's decoder each hold one as long
 * as it lives (with nghttp2's per-entry overhead, about twice this), and
 * what CONNECT requests repeat (:authority, baggage) fits. Only our side
 * shrinks: advertising a smaller SETTINGS_HEADER_TABLE_SIZE to the peer's
 * encoder made Go clients' requests fail to decode (COMPRESSION_ERROR in
 * e2e test_baggage). */
#define HPACK_TABLE_SIZE 1024

/* Request headers of a server stream, until on_request has run. */
struct h2_req_headers {
    char *method, *authority, *baggage, *forwarded, *traceparent;
    char *path, *content_type, *authorization, *cluster_id, *forwarded_network;
};

/* Trailers of a server stream, sent after the body (set_trailers). */
struct h2_trailers {
    size_t n;
    nghttp2_nv nv[]; /* names and values follow the array */
};

/* One per open stream, so kept small: what only some streams need for a
 * while (request headers, trailers) lives out of line. */
struct h2_stream {
    int32_t id;
    /* DATA handed to on_data, not yet consumed: at most the stream's
     * window, which nghttp2 enforces (< 2^31). */
    uint32_t unconsumed;
    const struct zt_h2_stream_ops *ops;
    void *sud;
    struct zt_list_node link;   /* in the session's streams */
    struct h2_req_headers *req; /* server role, until on_request has run */
    /* is_body_on_resume: a body source of ours is in nghttp2 (submitted,
     * not yet drained), so a resume needs no new one. */
    bool has_body;
    struct h2_trailers *trailers;
};

struct zt_h2_session {
    SSL *ssl; /* NULL in plaintext mode */
    nghttp2_session *ng;
    enum zt_h2conn_role role;
    enum zt_h2_session_state state;
    struct zt_h2_settings settings;
    const struct zt_h2_session_ops *ops;
    void *ud;
    struct zt_buf out;  /* frames gathered into one SSL_write */
    struct zt_buf cout; /* ciphertext the caller has not taken yet */
    /* Input source during zt_h2_session_read: OpenSSL's read BIO calls it. */
    zt_h2_recv_fn *recv;
    void *recv_arg;
    int recv_err;    /* a recv error other than -EAGAIN */
    bool in_eof;     /* recv said end of stream */
    int recv_depth;  /* inside nghttp2_session_mem_recv: no mem_send */
    bool producing;  /* inside produce(): no re-entry */
    bool idle_close; /* shut down once no stream is open (zt_h2_session_close_when_idle) */
    /* The last read stopped on its budget with input still buffered (not a
     * partial record: SSL_has_pending would also say so for one of those). */
    bool stopped_on_budget;
    bool sent_goaway_error; /* our GOAWAY carried an error code */
    /* Clocks, in the caller's milliseconds. */
    uint64_t now_ms;
    uint64_t handshake_deadline;
    uint64_t next_ping_ms;
    uint64_t ping_sent_ms;
    bool ping_outstanding;
    /* Server shutdown in two steps (zt_h2_session_shutdown): the notice
     * went out with a PING at goaway_ping_ms, and streams the client
     * opened before it read the notice are still taken until the ACK. */
    bool is_goaway_pending;
    uint64_t goaway_ping_ms;
    /* OpenSSL's buffers (BUFFERS_IDLE_MS): is_releasing_idle when this
     * session frees them itself (the context asked for released buffers);
     * is_buffers_used once records moved since they were last freed, the
     * last time at io_ms; they are looked at again at release_check_ms. */
    bool is_releasing_idle, is_buffers_used;
    uint64_t io_ms, release_check_ms;
    /* Client role: the :status of the header block being received (its
     * frames are contiguous, RFC 9113 6.10), for on_response. */
    int rx_status;
    struct zt_list streams; /* of h2_stream, newest first */
    unsigned nstreams;
    uint64_t opened;
    size_t conn_unannounced; /* consumed, not yet in a connection WINDOW_UPDATE */
    int close_error;
};

static const char *const state_names[] = {"handshake", "open", "draining", "closed"};

const char *zt_h2_session_state_str(enum zt_h2_session_state st)
{
    return (unsigned)st < sizeof(state_names) / sizeof(state_names[0]) ? state_names[st] : "?";
}

static void set_state(struct zt_h2_session *s, enum zt_h2_session_state st)
{
    ZT_DEBUG("h2", "session %p %s -> %s", (void *)s, zt_h2_session_state_str(s->state),
             zt_h2_session_state_str(st));
    s->state = st;
}

static bool is_closed(const struct zt_h2_session *s)
{
    return s->state == ZT_H2_SESS_CLOSED;
}

static void produce(struct zt_h2_session *s);

/* ---- streams ---- */

static struct h2_stream *stream_new(struct zt_h2_session *s, int32_t id)
{
    struct h2_stream *st = zt_xcalloc(1, sizeof(*st));
    st->id = id;
    zt_list_insert_head(&s->streams, &st->link);
    s->nstreams++;
    s->opened++;
    return st;
}

static void stream_free_headers(struct h2_stream *st)
{
    struct h2_req_headers *h = st->req;
    if (!h)
        return;
    free(h->path);
    free(h->content_type);
    free(h->authorization);
    free(h->cluster_id);
    free(h->forwarded_network);
    free(h->method);
    free(h->authority);
    free(h->baggage);
    free(h->forwarded);
    free(h->traceparent);
    free(h);
    st->req = NULL;
}

static void stream_unlink(struct zt_h2_session *s, struct h2_stream *st)
{
    zt_list_remove(&st->link);
    s->nstreams--;
    stream_free_headers(st);
    free(st->trailers);
    free(st);
}

static struct h2_stream *stream_get(struct zt_h2_session *s, int32_t id)
{
    if (is_closed(s))
        return NULL;
    return nghttp2_session_get_stream_user_data(s->ng, id);
}

/* ---- close ---- */

void zt_h2_session_close(struct zt_h2_session *s, int error)
{
    if (is_closed(s))
        return;
    set_state(s, ZT_H2_SESS_CLOSED);
    s->close_error = error;
    s->out.len = 0;
    zt_buf_release(&s->out);
    int stream_err = error ? error : ZT_E_CLOSED;
    struct h2_stream *st;
    while ((st = zt_list_entry(zt_list_first(&s->streams), struct h2_stream, link)) != NULL) {
        const struct zt_h2_stream_ops *ops = st->ops;
        void *sud = st->sud;
        nghttp2_session_set_stream_user_data(s->ng, st->id, NULL);
        stream_unlink(s, st);
        if (ops)
            ops->on_close(sud, stream_err);
    }
    if (s->ops->on_closed)
        s->ops->on_closed(s, s->ud, error);
}

/* ---- OpenSSL's BIO: reads from the caller's recv, writes to cout ---- */

static int bio_read(BIO *b, char *buf, int len)
{
    struct zt_h2_session *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!s->recv || len <= 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    ssize_t n = s->recv(s->recv_arg, (uint8_t *)buf, (size_t)len);
    if (n > 0)
        return (int)(n > len ? len : n);
    if (n == 0) {
        s->in_eof = true;
        return 0;
    }
    if (n == -EAGAIN) {
        BIO_set_retry_read(b);
        return -1;
    }
    s->recv_err = (int)n;
    return -1;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    struct zt_h2_session *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    zt_buf_append(&s->cout, buf, (size_t)len);
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct zt_h2_session *s = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        /* As a socket BIO: OpenSSL tells an unexpected EOF from an error. */
        return s && s->in_eof;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;

/* ---- flow control ---- */

/* Returns `n` received bytes to the connection window (and to the stream's
 * if `stream_too`). nghttp2 alone would announce them only once half the
 * connection window is consumed; then streams whose readers stall can hold
 * so much of it that a live stream never gets the rest back. So announce as
 * soon as what was given back is at least what the peer has left. */
static void give_back(struct zt_h2_session *s, int32_t stream_id, size_t n, bool stream_too)
{
    int32_t before = nghttp2_session_get_local_window_size(s->ng);
    if (stream_too)
        nghttp2_session_consume(s->ng, stream_id, n);
    else
        nghttp2_session_consume_connection(s->ng, n);
    s->conn_unannounced += n;
    int32_t left = nghttp2_session_get_local_window_size(s->ng);
    if (left > before) {
        s->conn_unannounced = 0; /* nghttp2 queued its own WINDOW_UPDATE */
        return;
    }
    if (s->conn_unannounced >= (size_t)left) {
        nghttp2_submit_window_update(s->ng, NGHTTP2_FLAG_NONE, 0, (int32_t)s->conn_unannounced);
        s->conn_unannounced = 0;
    }
}

/* The opaque data of the PING that follows a shutdown notice. */
static const uint8_t goaway_ping[8] = {'z', 't', '-', 'd', 'r', 'a', 'i', 'n'};

/* The GOAWAY that ends a shutdown: streams above the last one processed
 * are refused from now on. */
static void final_goaway(struct zt_h2_session *s)
{
    s->is_goaway_pending = false;
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
}

/* ---- nghttp2 callbacks ---- */

static char *dup_capped(const uint8_t *v, size_t len)
{
    if (len > MAX_HEADER_VALUE)
        len = MAX_HEADER_VALUE;
    char *p = zt_xmalloc(len + 1);
    memcpy(p, v, len);
    p[len] = 0;
    return p;
}

static int cb_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct zt_h2_session *s = user;
    s->rx_status = 0;
    if (s->role != ZT_H2_SERVER || f->hd.type != NGHTTP2_HEADERS ||
        f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (s->state != ZT_H2_SESS_OPEN && !s->is_goaway_pending) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    struct h2_stream *st = stream_new(s, f->hd.stream_id);
    st->req = zt_xcalloc(1, sizeof(*st->req));
    nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, st);
    return 0;
}

static int cb_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct zt_h2_session *s = user;
    struct h2_stream *st = stream_get(s, f->hd.stream_id);
    if (!st)
        return 0;
    if (s->role == ZT_H2_CLIENT) {
        if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3)
            s->rx_status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
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
    struct h2_req_headers *h = st->req;
    if (!h)
        return 0; /* trailers: not kept */
    char **slot = NULL;
#define HDR(lit, field)                                                                            \
    if (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)                             \
        slot = &h->field;
    HDR(":method", method)
    HDR(":authority", authority)
    HDR("baggage", baggage)
    HDR("forwarded", forwarded)
    HDR("traceparent", traceparent)
    HDR(":path", path)
    HDR("content-type", content_type)
    HDR("authorization", authorization)
    HDR("clusterid", cluster_id)
    HDR("x-forwarded-network", forwarded_network)
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
    struct zt_h2_session *s = user;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) {
        if (s->is_goaway_pending &&
            memcmp(f->ping.opaque_data, goaway_ping, sizeof(goaway_ping)) == 0)
            final_goaway(s);
        else
            s->ping_outstanding = false;
        return 0;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
        if (s->state == ZT_H2_SESS_OPEN) {
            set_state(s, ZT_H2_SESS_DRAINING);
            if (s->ops->on_draining)
                s->ops->on_draining(s, s->ud);
        }
        return 0;
    }
    struct h2_stream *st = stream_get(s, f->hd.stream_id);
    if (!st)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_HEADERS)) {
        if (s->role == ZT_H2_SERVER && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            struct h2_req_headers none = {0}, *h = st->req ? st->req : &none;
            struct zt_h2_request req = {
                .method = h->method ? h->method : "",
                .authority = h->authority ? h->authority : "",
                .baggage = h->baggage,
                .forwarded = h->forwarded,
                .traceparent = h->traceparent,
                .path = h->path,
                .content_type = h->content_type,
                .authorization = h->authorization,
                .cluster_id = h->cluster_id,
                .forwarded_network = h->forwarded_network,
            };
            s->ops->on_request(s, s->ud, f->hd.stream_id, &req);
            st = stream_get(s, f->hd.stream_id);
            if (!st)
                return 0;
            stream_free_headers(st);
        } else if (s->role == ZT_H2_CLIENT && f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
            if (st->ops && st->ops->on_response)
                st->ops->on_response(st->sud, s->rx_status);
            st = stream_get(s, f->hd.stream_id);
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
    struct zt_h2_session *s = user;
    struct h2_stream *st = stream_get(s, stream_id);
    if (!st || !st->ops || !st->ops->on_data) {
        if (!is_closed(s))
            give_back(s, stream_id, len, true);
        return 0;
    }
    st->unconsumed += (uint32_t)len;
    st->ops->on_data(st->sud, data, len);
    return 0;
}

static int cb_stream_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code, void *user)
{
    struct zt_h2_session *s = user;
    struct h2_stream *st = stream_get(s, stream_id);
    if (!st)
        return 0;
    const struct zt_h2_stream_ops *ops = st->ops;
    void *sud = st->sud;
    /* Bytes its owner never consumed would otherwise shrink the connection
     * window for good. */
    if (st->unconsumed)
        give_back(s, stream_id, st->unconsumed, false);
    nghttp2_session_set_stream_user_data(ng, stream_id, NULL);
    stream_unlink(s, st);
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
    struct zt_h2_session *s = user;
    /* nghttp2 answers a peer's protocol error with a GOAWAY carrying the
     * error and then wants nothing more: the close that follows is the
     * peer's fault, not a clean end. */
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
        ZT_DEBUG("h2", "session %p GOAWAY sent: error %u", (void *)s, f->goaway.error_code);
        s->sent_goaway_error = true;
    }
    if (s->role == ZT_H2_SERVER && f->hd.type == NGHTTP2_HEADERS &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_session_get_stream_remote_close(ng, f->hd.stream_id) == 0)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static ssize_t cb_data_read(nghttp2_session *ng, int32_t stream_id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct zt_h2_session *s = user;
    struct h2_stream *st = stream_get(s, stream_id);
    if (!st || !st->ops || !st->ops->read)
        return NGHTTP2_ERR_DEFERRED;
    bool eof = false;
    ssize_t n = st->ops->read(st->sud, buf, len, &eof);
    if (n == -EAGAIN)
        return NGHTTP2_ERR_DEFERRED;
    if (n < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    /* The owner may have closed the session (freeing st). */
    if (is_closed(s))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    /* Drained: this body source ends here, without END_STREAM (nghttp2
     * frees it); the owner's next resume starts another. */
    if (!eof && (size_t)n < len && st->ops && st->ops->is_body_on_resume) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        st->has_body = false;
        return n;
    }
    if (eof) {
        st->has_body = false;
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->trailers) {
            /* The stream ends with the trailers' HEADERS frame instead. */
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(ng, stream_id, st->trailers->nv, st->trailers->n) != 0)
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

/* nghttp2's reason for a connection error it answers with GOAWAY. */
static int cb_error(nghttp2_session *ng, int lib_error_code, const char *msg, size_t len,
                    void *user)
{
    ZT_DEBUG("h2", "session %p peer error: %.*s", user, (int)len, msg);
    return 0;
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_globals(void)
{
    if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&options) != 0)
        abort();
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, cb_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, cb_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, cb_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, cb_frame_send);
    nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks, cb_read_length);
    nghttp2_session_callbacks_set_error_callback2(callbacks, cb_error);
    nghttp2_option_set_no_auto_window_update(options, 1);
    nghttp2_option_set_peer_max_concurrent_streams(options, 100);
    nghttp2_option_set_max_deflate_dynamic_table_size(options, HPACK_TABLE_SIZE);
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "zt-h2-session");
    if (!bio_method || !BIO_meth_set_read(bio_method, bio_read) ||
        !BIO_meth_set_write(bio_method, bio_write) || !BIO_meth_set_ctrl(bio_method, bio_ctrl) ||
        !BIO_meth_set_create(bio_method, bio_create))
        abort();
}

/* ---- handshake ---- */

static uint64_t ping_interval(const struct zt_h2_session *s)
{
    return s->settings.ping_interval_ms ? s->settings.ping_interval_ms : PING_INTERVAL_MS;
}

static uint64_t ping_timeout(const struct zt_h2_session *s)
{
    return s->settings.ping_timeout_ms ? s->settings.ping_timeout_ms : PING_TIMEOUT_MS;
}

/* Records just moved through OpenSSL's buffers. */
static void buffers_used(struct zt_h2_session *s)
{
    s->io_ms = s->now_ms;
    if (s->is_releasing_idle && !s->is_buffers_used) {
        s->is_buffers_used = true;
        s->release_check_ms = s->now_ms + BUFFERS_IDLE_MS;
    }
}

/* At release_check_ms: frees the buffers if the session has been quiet
 * long enough (and nothing waits in them), else looks again later. */
static void release_check(struct zt_h2_session *s, uint64_t now)
{
    if (!s->is_buffers_used || now < s->release_check_ms)
        return;
    if (now - s->io_ms >= BUFFERS_IDLE_MS && SSL_free_buffers(s->ssl) == 1) {
        s->is_buffers_used = false;
        if (s->out.len == 0)
            zt_buf_release(&s->out);
        if (s->cout.len == 0)
            zt_buf_release(&s->cout);
        return;
    }
    s->release_check_ms = (now - s->io_ms >= BUFFERS_IDLE_MS ? now : s->io_ms) + BUFFERS_IDLE_MS;
}

static void start_session(struct zt_h2_session *s)
{
    if (s->ssl) {
        const unsigned char *alpn = NULL;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(s->ssl, &alpn, &alpn_len);
        if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
            zt_h2_session_close(s, ZT_E_TLS);
            return;
        }
    }
    s->next_ping_ms = s->now_ms + ping_interval(s);
    if (s->ssl && (SSL_get_mode(s->ssl) & SSL_MODE_RELEASE_BUFFERS)) {
        SSL_clear_mode(s->ssl, SSL_MODE_RELEASE_BUFFERS);
        s->is_releasing_idle = true;
        buffers_used(s);
    }
    set_state(s, ZT_H2_SESS_OPEN);
    nghttp2_settings_entry iv[5];
    size_t n = 0;
    iv[n++] =
        (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, s->settings.stream_window};
    iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_FRAME_SIZE, s->settings.max_frame_size};
    iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
                                       s->settings.max_header_list};
    if (s->role == ZT_H2_CLIENT)
        iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
    if (s->settings.max_concurrent_streams)
        iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                                           s->settings.max_concurrent_streams};
    if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, n) != 0 ||
        nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)s->settings.connection_window) != 0) {
        zt_h2_session_close(s, ZT_E_PROTO);
        return;
    }
    /* SETTINGS are queued first, so streams opened from on_ready follow them. */
    if (s->ops->on_ready) {
        int rc = s->ops->on_ready(s, s->ud);
        if (rc < 0)
            zt_h2_session_close(s, rc);
    }
}

static void advance_handshake(struct zt_h2_session *s)
{
    if (!s->ssl) {
        start_session(s);
        return;
    }
    ERR_clear_error();
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) {
        start_session(s);
        return;
    }
    int err = SSL_get_error(s->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return;
    unsigned long e = ERR_peek_error();
    char reason[256] = "connection closed";
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    long vr = SSL_get_verify_result(s->ssl);
    ZT_DEBUG("h2", "session %p TLS handshake failed: %s (verify: %s)", (void *)s, reason,
             X509_verify_cert_error_string(vr));
    /* An alert, if any, waits in cout for the caller. */
    zt_h2_session_close(s, ZT_E_TLS);
}

/* ---- input ---- */

/* Hands plaintext to nghttp2. Returns false once the session is closed. */
static bool deliver(struct zt_h2_session *s, const uint8_t *p, size_t n)
{
    s->recv_depth++;
    ssize_t r = nghttp2_session_mem_recv(s->ng, p, n);
    s->recv_depth--;
    if (is_closed(s))
        return false;
    if (r < 0) {
        ZT_DEBUG("h2", "session %p http/2 error: %s", (void *)s, nghttp2_strerror((int)r));
        /* nghttp2 queued a GOAWAY for protocol errors: leave it in cout. */
        produce(s);
        zt_h2_session_close(s, ZT_E_PROTO);
        return false;
    }
    return true;
}

/* Feeding a session from inside its own callbacks would re-enter nghttp2:
 * a bug of ours, never the peer's. */
static void check_not_nested(const struct zt_h2_session *s)
{
    if (s->recv || s->recv_depth > 0)
        abort();
}

int zt_h2_session_read(struct zt_h2_session *s, zt_h2_recv_fn *recv_fn, void *arg, size_t budget)
{
    s->stopped_on_budget = false;
    if (is_closed(s))
        return s->close_error;
    check_not_nested(s);
    s->recv = recv_fn;
    s->recv_arg = arg;
    s->recv_err = 0;
    if (s->state == ZT_H2_SESS_HANDSHAKE)
        advance_handshake(s);
    /* Plaintext lands in a buffer of the thread's pool, taken for the call
     * (a _Thread_local array would cost every thread its pages). */
    uint8_t *read_buf = NULL;
    if (!is_closed(s) && s->state != ZT_H2_SESS_HANDSHAKE)
        read_buf = zt_buf_pool_take();
    while (!is_closed(s) && s->state != ZT_H2_SESS_HANDSHAKE) {
        if (!s->ssl) {
            ssize_t n = recv_fn(arg, read_buf, READ_CHUNK);
            if (n > 0) {
                if (!deliver(s, read_buf, (size_t)n) || (size_t)n >= budget)
                    break;
                budget -= (size_t)n;
                continue;
            }
            if (n == -EAGAIN)
                break;
            zt_h2_session_close(s, n == 0 ? 0 : (int)n);
            break;
        }
        ERR_clear_error();
        int n = SSL_read(s->ssl, read_buf, READ_CHUNK);
        if (s->is_releasing_idle)
            buffers_used(s); /* even without plaintext: the read buffer may hold records */
        if (n > 0) {
            if (!deliver(s, read_buf, (size_t)n))
                break;
            /* Read-ahead took what recv had; when OpenSSL holds no more,
             * the next recv would only say -EAGAIN. */
            if (!SSL_has_pending(s->ssl))
                break;
            if ((size_t)n >= budget) {
                s->stopped_on_budget = true;
                break;
            }
            budget -= (size_t)n;
            continue;
        }
        int err = SSL_get_error(s->ssl, n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            break;
        zt_h2_session_close(s, err == SSL_ERROR_ZERO_RETURN ? 0
                               : err == SSL_ERROR_SYSCALL
                                   ? (s->recv_err ? s->recv_err : -ECONNRESET)
                                   : ZT_E_TLS);
        break;
    }
    if (read_buf)
        zt_buf_pool_give(read_buf);
    s->recv = NULL;
    s->recv_arg = NULL;
    return is_closed(s) ? s->close_error : 0;
}

struct slice {
    const uint8_t *p;
    size_t len;
};

static ssize_t slice_recv(void *arg, uint8_t *buf, size_t len)
{
    struct slice *sl = arg;
    if (!sl->p)
        return 0; /* end of stream */
    if (sl->len == 0)
        return -EAGAIN;
    size_t n = sl->len < len ? sl->len : len;
    memcpy(buf, sl->p, n);
    sl->p += n;
    sl->len -= n;
    return (ssize_t)n;
}

int zt_h2_session_feed(struct zt_h2_session *s, const uint8_t *data, size_t len)
{
    struct slice sl = {len ? data : NULL, len};
    if (!sl.p)
        return zt_h2_session_read(s, slice_recv, &sl, SIZE_MAX);
    while (sl.len > 0 && !is_closed(s)) {
        size_t before = sl.len;
        check_not_nested(s);
        if (!s->ssl && s->state != ZT_H2_SESS_HANDSHAKE) {
            /* Plaintext: straight from the caller's bytes. */
            sl.len = 0;
            deliver(s, sl.p, before);
            break;
        }
        int rc = zt_h2_session_read(s, slice_recv, &sl, SIZE_MAX);
        if (rc != 0)
            return rc;
        if (sl.len == before) {
            /* Nothing taken although bytes wait: a bug of ours, not the
             * peer's; fail closed rather than spin. */
            zt_h2_session_close(s, ZT_E_PROTO);
            break;
        }
    }
    return is_closed(s) ? s->close_error : 0;
}

bool zt_h2_session_has_input(const struct zt_h2_session *s)
{
    return !is_closed(s) && s->stopped_on_budget;
}

/* ---- output ---- */

/* Encrypts `n` bytes (or, in plaintext mode, copies them) into cout. */
static bool seal(struct zt_h2_session *s, const uint8_t *p, size_t n)
{
    if (!s->ssl) {
        zt_buf_append(&s->cout, p, n);
        return true;
    }
    for (size_t done = 0; done < n;) {
        /* Partial-write mode returns after each record. */
        ERR_clear_error();
        int w = SSL_write(s->ssl, p + done, (int)(n - done));
        if (s->is_releasing_idle)
            buffers_used(s);
        if (w <= 0) {
            zt_h2_session_close(s, ZT_E_TLS);
            return false;
        }
        done += (size_t)w;
    }
    return true;
}

/* Runs nghttp2 until CIPHER_HIGH bytes wait in cout or it has nothing more.
 * Frames are packed into OUT_HIGH of plaintext so records come out full (a
 * DATA frame is a few bytes over one record); a full DATA frame is exactly
 * whole records and is encrypted straight from nghttp2's buffer, no copy. */
static void produce(struct zt_h2_session *s)
{
    if (is_closed(s) || s->recv_depth > 0 || s->producing)
        return;
    if (s->state == ZT_H2_SESS_HANDSHAKE) {
        advance_handshake(s);
        if (s->state == ZT_H2_SESS_HANDSHAKE || is_closed(s))
            return;
    }
    s->producing = true;
    while (!is_closed(s) && s->cout.len < CIPHER_HIGH) {
        while (s->out.len < OUT_HIGH) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(s->ng, &p);
            if (is_closed(s))
                goto out; /* a body source closed the session */
            if (n < 0) {
                ZT_DEBUG("h2", "session %p http/2 send error: %s", (void *)s,
                         nghttp2_strerror((int)n));
                zt_h2_session_close(s, ZT_E_PROTO);
                goto out;
            }
            if (n == 0)
                break;
            if (s->out.len == 0 && (size_t)n >= DATA_FRAME_MAX) {
                if (s->cout.cap - s->cout.off < CIPHER_ROOM)
                    zt_buf_reserve(&s->cout, CIPHER_ROOM - s->cout.len);
                if (!seal(s, p, (size_t)n))
                    goto out;
                if (s->cout.len >= CIPHER_HIGH)
                    break;
                continue;
            }
            zt_buf_append(&s->out, p, (size_t)n);
        }
        if (s->out.len == 0)
            break;
        if (!seal(s, zt_buf_head(&s->out), s->out.len))
            goto out;
        zt_buf_consume(&s->out, s->out.len);
    }
out:
    s->producing = false;
    if (s->out.len == 0 && !s->is_buffers_used)
        zt_buf_release(&s->out); /* else kept while busy, as OpenSSL's (release_check) */
}

int zt_h2_session_out(struct zt_h2_session *s, const uint8_t **data, size_t *len)
{
    if (!is_closed(s) && s->recv_depth == 0 && !s->producing) {
        produce(s);
        if (s->idle_close && s->state == ZT_H2_SESS_OPEN && s->nstreams == 0) {
            zt_h2_session_shutdown(s);
            produce(s);
        }
        bool open = s->state == ZT_H2_SESS_OPEN || s->state == ZT_H2_SESS_DRAINING;
        if (open && s->cout.len == 0) {
            /* Nothing left to say and nothing to wait for, or a drained
             * session whose last stream ended: done. */
            if ((!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng)) ||
                (s->state == ZT_H2_SESS_DRAINING && s->nstreams == 0 && !s->is_goaway_pending))
                zt_h2_session_close(s, s->sent_goaway_error ? ZT_E_PROTO : 0);
        }
        if (s->cout.len == 0 && !s->is_buffers_used)
            zt_buf_release(&s->cout); /* an idle session holds no buffer */
    }
    /* A released buffer has no head (NULL + 0 is undefined behaviour). */
    *data = s->cout.len ? zt_buf_head(&s->cout) : NULL;
    *len = s->cout.len;
    return is_closed(s) ? s->close_error : 0;
}

void zt_h2_session_out_done(struct zt_h2_session *s, size_t n)
{
    zt_buf_consume(&s->cout, n);
}

/* ---- time ---- */

uint64_t zt_h2_session_deadline(const struct zt_h2_session *s)
{
    switch (s->state) {
    case ZT_H2_SESS_HANDSHAKE:
        return s->handshake_deadline;
    case ZT_H2_SESS_OPEN:
    case ZT_H2_SESS_DRAINING: {
        uint64_t at = s->ping_outstanding ? s->ping_sent_ms + ping_timeout(s) : s->next_ping_ms;
        if (s->is_goaway_pending && s->goaway_ping_ms + ping_timeout(s) < at)
            at = s->goaway_ping_ms + ping_timeout(s);
        return s->is_buffers_used && s->release_check_ms < at ? s->release_check_ms : at;
    }
    default:
        return UINT64_MAX;
    }
}

int zt_h2_session_tick(struct zt_h2_session *s, uint64_t now_ms)
{
    if (now_ms > s->now_ms)
        s->now_ms = now_ms;
    uint64_t now = s->now_ms;
    if (is_closed(s))
        return s->close_error;
    if (s->state == ZT_H2_SESS_HANDSHAKE) {
        if (now >= s->handshake_deadline)
            zt_h2_session_close(s, ZT_E_TIMEOUT);
    } else if (s->ping_outstanding) {
        if (now - s->ping_sent_ms >= ping_timeout(s)) {
            ZT_DEBUG("h2", "session %p keepalive PING not answered: closing", (void *)s);
            zt_h2_session_close(s, ZT_E_TIMEOUT);
        }
    } else if (now >= s->next_ping_ms) {
        s->next_ping_ms = now + ping_interval(s);
        if (nghttp2_submit_ping(s->ng, NGHTTP2_FLAG_NONE, NULL) == 0) {
            s->ping_outstanding = true;
            s->ping_sent_ms = now;
        }
    }
    /* A client that does not answer the PING gets the final GOAWAY anyway
     * (it is told to stop either way; a late stream is refused). */
    if (!is_closed(s) && s->is_goaway_pending && now - s->goaway_ping_ms >= ping_timeout(s))
        final_goaway(s);
    if (!is_closed(s) && s->state != ZT_H2_SESS_HANDSHAKE)
        release_check(s, now);
    return is_closed(s) ? s->close_error : 0;
}

/* ---- life cycle and inspection ---- */

struct zt_h2_session *zt_h2_session_new(SSL_CTX *ctx, enum zt_h2conn_role role,
                                        const struct zt_h2_settings *settings,
                                        const struct zt_h2_session_ops *ops, void *ud,
                                        uint64_t now_ms)
{
    pthread_once(&init_once, init_globals);
    struct zt_h2_session *s = zt_xcalloc(1, sizeof(*s));
    zt_list_init(&s->streams);
    s->role = role;
    s->settings = *settings;
    s->ops = ops;
    s->ud = ud;
    s->state = ZT_H2_SESS_HANDSHAKE;
    s->now_ms = now_ms;
    s->handshake_deadline = now_ms + HANDSHAKE_TIMEOUT_MS;
    int rc = role == ZT_H2_CLIENT ? nghttp2_session_client_new2(&s->ng, callbacks, s, options)
                                  : nghttp2_session_server_new2(&s->ng, callbacks, s, options);
    if (rc != 0)
        abort();
    if (!ctx)
        return s;
    s->ssl = SSL_new(ctx);
    BIO *rbio = BIO_new(bio_method), *wbio = BIO_new(bio_method);
    if (!s->ssl || !rbio || !wbio)
        abort();
    BIO_set_data(rbio, s);
    BIO_set_data(wbio, s);
    SSL_set_bio(s->ssl, rbio, wbio);
    /* Several records per recv, into OpenSSL's own buffer. */
    SSL_set_read_ahead(s->ssl, 1);
    SSL_set_default_read_buffer_len(s->ssl, RECORD_BUF);
    if (role == ZT_H2_CLIENT)
        SSL_set_connect_state(s->ssl);
    else
        SSL_set_accept_state(s->ssl);
    return s;
}

void zt_h2_session_free(struct zt_h2_session *s)
{
    if (!s)
        return;
    zt_h2_session_close(s, ZT_E_CLOSED);
    SSL_free(s->ssl);
    nghttp2_session_del(s->ng);
    zt_buf_release(&s->out);
    zt_buf_release(&s->cout);
    free(s);
}

enum zt_h2_session_state zt_h2_session_state(const struct zt_h2_session *s)
{
    return s->state;
}

int zt_h2_session_close_error(const struct zt_h2_session *s)
{
    return s->close_error;
}

SSL *zt_h2_session_ssl(struct zt_h2_session *s)
{
    return s->ssl;
}

enum zt_h2conn_role zt_h2_session_role(const struct zt_h2_session *s)
{
    return s->role;
}

unsigned zt_h2_session_streams(const struct zt_h2_session *s)
{
    return s->nstreams;
}

uint64_t zt_h2_session_streams_opened(const struct zt_h2_session *s)
{
    return s->opened;
}

uint32_t zt_h2_session_peer_max_streams(const struct zt_h2_session *s)
{
    if (s->state != ZT_H2_SESS_OPEN && s->state != ZT_H2_SESS_DRAINING)
        return UINT32_MAX;
    return nghttp2_session_get_remote_settings(s->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

/* ---- streams ---- */

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

int32_t zt_h2_session_submit(struct zt_h2_session *s, const char *const *headers, size_t n_headers,
                             const struct zt_h2_stream_ops *ops, void *sud)
{
    if (s->state != ZT_H2_SESS_OPEN)
        return ZT_E_CLOSED;
    nghttp2_nv nv[24];
    size_t n = build_nv(nv, 24, headers, n_headers);
    struct h2_stream *st = stream_new(s, 0);
    st->ops = ops;
    st->sud = sud;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = cb_data_read};
    /* HEADERS alone leave the stream open when there is no provider. */
    int32_t id = ops && ops->is_body_on_resume
                     ? nghttp2_submit_headers(s->ng, NGHTTP2_FLAG_NONE, -1, NULL, nv, n, st)
                     : nghttp2_submit_request(s->ng, NULL, nv, n, &prd, st);
    if (id < 0) {
        stream_unlink(s, st);
        return ZT_E_PROTO;
    }
    st->id = id;
    return id;
}

int32_t zt_h2_session_connect(struct zt_h2_session *s, const char *authority,
                              const char *const *headers, size_t n_headers,
                              const struct zt_h2_stream_ops *ops, void *sud)
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
    return zt_h2_session_submit(s, all, n / 2, ops, sud);
}

int zt_h2_session_set_trailers(struct zt_h2_session *s, int32_t stream_id,
                               const char *const *headers, size_t n_headers)
{
    struct h2_stream *st = stream_get(s, stream_id);
    if (!st)
        return ZT_E_CLOSED;
    if (n_headers > 8)
        return ZT_E_TOO_BIG;
    size_t bytes = 0;
    for (size_t i = 0; i < 2 * n_headers; i++)
        bytes += strlen(headers[i]) + 1;
    free(st->trailers);
    struct h2_trailers *t = zt_xmalloc(sizeof(*t) + n_headers * sizeof(t->nv[0]) + bytes);
    t->n = n_headers;
    char *p = (char *)(t->nv + n_headers);
    for (size_t i = 0; i < n_headers; i++) {
        size_t nl = strlen(headers[2 * i]), vl = strlen(headers[2 * i + 1]);
        memcpy(p, headers[2 * i], nl + 1);
        memcpy(p + nl + 1, headers[2 * i + 1], vl + 1);
        t->nv[i] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + nl + 1, nl, vl, NGHTTP2_NV_FLAG_NONE};
        p += nl + vl + 2;
    }
    st->trailers = t;
    return 0;
}

void zt_h2_session_attach(struct zt_h2_session *s, int32_t stream_id,
                          const struct zt_h2_stream_ops *ops, void *sud)
{
    struct h2_stream *st = stream_get(s, stream_id);
    if (!st)
        return;
    st->ops = ops;
    st->sud = sud;
}

int zt_h2_session_respond(struct zt_h2_session *s, int32_t stream_id, int status,
                          const char *const *headers, size_t n_headers)
{
    struct h2_stream *st = stream_get(s, stream_id);
    if (!st)
        return ZT_E_CLOSED;
    if (status < 100 || status > 999)
        return ZT_E_PROTO;
    char code[4];
    snprintf(code, sizeof(code), "%03d", status);
    nghttp2_nv nv[16];
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    size_t n = 1 + build_nv(nv + 1, 15, headers, n_headers);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = cb_data_read};
    int rc;
    if (status == 200 && st->ops && st->ops->is_body_on_resume)
        rc = nghttp2_submit_headers(s->ng, NGHTTP2_FLAG_NONE, stream_id, NULL, nv, n, NULL);
    else
        rc = nghttp2_submit_response(s->ng, stream_id, nv, n, status == 200 ? &prd : NULL);
    return rc >= 0 ? 0 : ZT_E_PROTO;
}

void zt_h2_session_consume(struct zt_h2_session *s, int32_t stream_id, size_t n)
{
    struct h2_stream *st = stream_get(s, stream_id);
    /* A closed stream's bytes went back when it closed. */
    if (!st)
        return;
    if (n > st->unconsumed)
        n = st->unconsumed;
    if (n == 0)
        return;
    st->unconsumed -= (uint32_t)n;
    give_back(s, stream_id, n, true);
}

void zt_h2_session_resume(struct zt_h2_session *s, int32_t stream_id)
{
    if (is_closed(s))
        return;
    if (nghttp2_session_resume_data(s->ng, stream_id) == 0)
        return;
    /* No body source waiting: start one, if the stream reads only on resume
     * (an active one, or a stream already ended, makes this a no-op). */
    struct h2_stream *st = stream_get(s, stream_id);
    if (!st || !st->ops || !st->ops->is_body_on_resume || st->has_body)
        return; /* has_body: nghttp2 reads it as soon as it may (a new one
                 * would be allocated only to be refused) */
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = cb_data_read};
    if (nghttp2_submit_data(s->ng, NGHTTP2_FLAG_END_STREAM, stream_id, &prd) == 0)
        st->has_body = true;
}

void zt_h2_session_reset(struct zt_h2_session *s, int32_t stream_id)
{
    if (is_closed(s))
        return;
    nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
}

/* As stream_get, and also a stream submitted but not yet sent (nghttp2
 * creates its stream object only when the HEADERS go out). */
static struct h2_stream *stream_find(struct zt_h2_session *s, int32_t id)
{
    struct h2_stream *st = stream_get(s, id);
    if (st || is_closed(s))
        return st;
    for (struct zt_list_node *n = zt_list_first(&s->streams); n; n = zt_list_next(&s->streams, n)) {
        st = zt_list_entry(n, struct h2_stream, link);
        if (st->id == id)
            return st;
    }
    return NULL;
}

void zt_h2_session_detach(struct zt_h2_session *s, int32_t stream_id)
{
    struct h2_stream *st = stream_find(s, stream_id);
    if (!st)
        return;
    st->ops = NULL;
    st->sud = NULL;
    nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
}

void zt_h2_session_close_when_idle(struct zt_h2_session *s)
{
    s->idle_close = true;
}

void zt_h2_session_shutdown(struct zt_h2_session *s)
{
    if (s->state == ZT_H2_SESS_OPEN) {
        /* A server's GOAWAY races the streams the client is opening: those
         * above its last stream id are refused, and the client's request
         * fails. So, as RFC 9113 (6.8) advises: a GOAWAY naming the highest
         * id first, a PING, and the real last stream id once the PING comes
         * back, when the client has read the notice and opens no more. */
        if (s->role == ZT_H2_SERVER && nghttp2_submit_shutdown_notice(s->ng) == 0 &&
            nghttp2_submit_ping(s->ng, NGHTTP2_FLAG_NONE, goaway_ping) == 0) {
            s->is_goaway_pending = true;
            s->goaway_ping_ms = s->now_ms;
        } else {
            final_goaway(s);
        }
        set_state(s, ZT_H2_SESS_DRAINING);
    } else if (s->state == ZT_H2_SESS_HANDSHAKE) {
        zt_h2_session_close(s, ZT_E_CLOSED);
    }
}
