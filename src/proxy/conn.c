/* The relay: moves bytes between side A (a TCP socket in the pod) and side B
 * (a TCP socket or an HBONE stream), with bounded buffers and half-close.
 *
 * Backpressure: a side is read only while the buffer toward the other side
 * has room; stream DATA is returned to the HTTP/2 windows (consume) only
 * once written to the socket, so a slow reader throttles its own sender. */
#include "proxy/proxy_int.h"

#include "base/err.h"
#include "base/log.h"
#include "loop/sock.h"
#include "telemetry/accesslog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_CAP (256 * 1024) /* most bytes buffered toward one side */
#define READ_SZ (64 * 1024)

static const char *const conn_state_names[] = {"connecting", "relaying", "closed"};

const char *zt_conn_state_str(enum zt_conn_state st)
{
    return (unsigned)st < 3 ? conn_state_names[st] : "?";
}

static void set_state(struct zt_conn *c, enum zt_conn_state st)
{
    ZT_DEBUG("proxy", "conn %llu %s -> %s", (unsigned long long)c->id, zt_conn_state_str(c->state),
             zt_conn_state_str(st));
    c->state = st;
}

static bool closed(const struct zt_conn *c)
{
    return c->state == ZT_CONN_ST_CLOSED;
}

static void on_poll_a(uv_poll_t *h, int status, int events);
static void on_poll_b(uv_poll_t *h, int status, int events);
static void progress(struct zt_conn *c);

static void conn_free(struct zt_conn *c)
{
    zt_buf_release(&c->up);
    zt_buf_release(&c->down);
    free(c->src_identity);
    free(c->dst_identity);
    free(c);
}

void zt_conn_set_identity(char **slot, const char *id)
{
    free(*slot);
    *slot = NULL;
    if (id && id[0]) {
        *slot = strdup(id);
        if (!*slot)
            abort();
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct zt_conn *c = h->data;
    struct zt_tcp_side *s = (uv_poll_t *)h == &c->a.poll ? &c->a : &c->b;
    close(s->fd);
    s->fd = -1;
    if (--c->handles_open == 0)
        conn_free(c);
}

static void side_open(struct zt_conn *c, struct zt_tcp_side *s, int fd, uv_poll_cb cb)
{
    s->fd = fd;
    if (uv_poll_init(&c->pod->pw->worker.loop, &s->poll, fd) < 0) {
        /* Not pollable: treat as a dead socket, never as a crash. */
        close(fd);
        s->fd = -1;
        s->rd_eof = s->wr_shut = true;
        return;
    }
    s->poll.data = c;
    s->open = true;
    c->handles_open++;
    (void)cb;
}

static void side_update(struct zt_conn *c, struct zt_tcp_side *s, int want, uv_poll_cb cb)
{
    if (!s->open || s->events == want)
        return;
    s->events = want;
    if (want)
        uv_poll_start(&s->poll, want, cb);
    else
        uv_poll_stop(&s->poll);
}

static void update_polls(struct zt_conn *c)
{
    if (closed(c))
        return;
    bool relaying = c->state == ZT_CONN_ST_RELAYING;
    int ea = 0, eb = 0;
    if (c->a.connecting)
        ea = UV_WRITABLE;
    else if (relaying) {
        if (!c->a.rd_eof && c->up.len < BUF_CAP)
            ea |= UV_READABLE;
        if (c->down.len > 0)
            ea |= UV_WRITABLE;
    }
    side_update(c, &c->a, ea, on_poll_a);
    if (c->b_is_stream)
        return;
    if (c->b.connecting)
        eb = UV_WRITABLE;
    else if (relaying) {
        if (!c->b.rd_eof && c->down.len < BUF_CAP)
            eb |= UV_READABLE;
        if (c->up.len > 0)
            eb |= UV_WRITABLE;
    }
    side_update(c, &c->b, eb, on_poll_b);
}

static void close_side(struct zt_conn *c, struct zt_tcp_side *s)
{
    if (s->open) {
        uv_poll_stop(&s->poll);
        uv_close((uv_handle_t *)&s->poll, on_handle_closed);
        s->open = false;
    } else if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

/* `error` (borrowed, may be NULL) is what ended the connection. */
static void fill_record(struct zt_conn *c, const char *error, struct zt_accesslog *r)
{
    bool outbound = c->kind == ZT_CONN_OUTBOUND;
    *r = (struct zt_accesslog){
        .src_addr = c->src_addr,
        .src_workload = c->src_wl    ? c->src_wl->name
                        : c->src_bag ? c->src_bag->workload
                                     : NULL,
        .src_namespace = c->src_wl    ? c->src_wl->namespace
                         : c->src_bag ? c->src_bag->namespace_
                                      : NULL,
        .src_identity = c->src_identity,
        .src_cluster = c->src_wl    ? c->src_wl->cluster_id
                       : c->src_bag ? c->src_bag->cluster
                                    : NULL,
        .dst_addr = c->dst_addr,
        .dst_hbone_addr = c->hbone_addr,
        .dst_service = c->dst_svc ? c->dst_svc->hostname : NULL,
        .dst_workload = c->dst_wl ? c->dst_wl->name : NULL,
        .dst_namespace = c->dst_wl ? c->dst_wl->namespace : NULL,
        .dst_identity = c->dst_identity,
        .dst_cluster = c->dst_wl ? c->dst_wl->cluster_id : NULL,
        .direction = outbound ? "outbound" : "inbound",
        /* From the reporter's view: outbound sends what the app wrote;
         * inbound sends what the app answered. */
        .bytes_sent = outbound ? c->bytes_up : c->bytes_down,
        .bytes_recv = outbound ? c->bytes_down : c->bytes_up,
        .duration_ms = uv_now(&c->pod->pw->worker.loop) - c->start_ms,
        .error = error && error[0] ? error : NULL,
    };
}

void zt_conn_log_opened(struct zt_conn *c)
{
    struct zt_accesslog r;
    fill_record(c, NULL, &r);
    zt_accesslog_emit_opened(&r);
}

static void emit_log(struct zt_conn *c, const char *error)
{
    struct zt_accesslog r;
    fill_record(c, error, &r);
    zt_accesslog_emit(&r);
}

void zt_conn_close(struct zt_conn *c, const char *error)
{
    if (closed(c))
        return;
    /* `error` is the caller's and stays valid through this call, where the
     * access line is written: the connection does not keep a copy. */
    set_state(c, ZT_CONN_ST_CLOSED);
    zt_hbone_pool_cancel(&c->waiter);
    if (c->in_flush) {
        struct zt_conn **pp = &c->pod->pw->flush_head;
        while (*pp && *pp != c)
            pp = &(*pp)->flush_next;
        if (*pp)
            *pp = c->flush_next;
        c->in_flush = false;
    }
    if (c->h2 && !c->stream_closed) {
        struct zt_h2conn *h2 = c->h2;
        c->h2 = NULL;
        /* After an error status the stream ends by itself; a reset now could
         * overtake the status and the client would never see it. */
        if (c->sid > 0 && c->final_response_sent)
            zt_h2conn_attach(h2, c->sid, NULL, NULL);
        else if (c->sid > 0)
            zt_h2conn_detach(h2, c->sid);
        zt_h2conn_flush(h2);
    }
    emit_log(c, error);
    zt_conn_metrics_close(c);
    struct zt_pod_inst *pod = c->pod;
    atomic_fetch_sub_explicit(&pod->pw->live, 1, memory_order_relaxed);
    if (c->prev)
        c->prev->next = c->next;
    else
        pod->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    close_side(c, &c->a);
    close_side(c, &c->b);
    if (c->handles_open == 0)
        conn_free(c);
}

struct zt_conn *zt_conn_new(struct zt_pod_inst *pod, enum zt_conn_kind kind, int afd)
{
    struct zt_conn *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->id = ++pod->pw->next_conn_id;
    c->kind = kind;
    c->pod = pod;
    c->a.fd = c->b.fd = -1;
    c->start_ms = uv_now(&pod->pw->worker.loop);
    c->next = pod->conns;
    if (pod->conns)
        pod->conns->prev = c;
    pod->conns = c;
    atomic_fetch_add_explicit(&pod->pw->live, 1, memory_order_relaxed);
    if (afd >= 0)
        side_open(c, &c->a, afd, on_poll_a);
    return c;
}

void zt_conn_set_tcp_b(struct zt_conn *c, int fd, bool connecting)
{
    c->b_is_stream = false;
    side_open(c, &c->b, fd, on_poll_b);
    c->b.connecting = connecting;
    update_polls(c);
}

void zt_conn_set_tcp_a(struct zt_conn *c, int fd, bool connecting)
{
    side_open(c, &c->a, fd, on_poll_a);
    c->a.connecting = connecting;
    update_polls(c);
}

void zt_conn_set_stream(struct zt_conn *c, struct zt_h2conn *h2, int32_t sid)
{
    c->b_is_stream = true;
    c->h2 = h2;
    c->sid = sid;
}

void zt_conn_start_relay(struct zt_conn *c)
{
    if (closed(c))
        return;
    set_state(c, ZT_CONN_ST_RELAYING);
    update_polls(c);
}

/* ---- moving bytes ---- */

static int write_some(int fd, struct zt_buf *b, size_t *written)
{
    *written = 0;
    while (b->len > 0) {
        ssize_t n = send(fd, zt_buf_head(b), b->len, MSG_NOSIGNAL);
        if (n > 0) {
            zt_buf_consume(b, (size_t)n);
            *written += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        return -errno;
    }
    return 0;
}

/* Reads from `fd` into `b` until EAGAIN, EOF or the buffer cap. Returns 1 at
 * EOF, 0 otherwise, or a negative errno. */
static int read_some(int fd, struct zt_buf *b, uint64_t *counter)
{
    while (b->len < BUF_CAP) {
        size_t want = BUF_CAP - b->len < READ_SZ ? BUF_CAP - b->len : READ_SZ;
        uint8_t *p = zt_buf_reserve(b, want);
        ssize_t n = recv(fd, p, want, 0);
        if (n > 0) {
            zt_buf_commit(b, (size_t)n);
            *counter += (uint64_t)n;
            if ((size_t)n < want)
                return 0; /* likely drained; avoid a syscall that says EAGAIN */
            continue;
        }
        if (n == 0)
            return 1;
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        return -errno;
    }
    return 0;
}

static void fail_io(struct zt_conn *c, const char *what, int err)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "%s: %s", what, zt_strerror(err));
    zt_conn_close(c, msg);
}

/* Writes pending "down" bytes to side A. May close c (check closed()). */
static void flush_down(struct zt_conn *c)
{
    size_t n;
    int rc = write_some(c->a.fd, &c->down, &n);
    if (rc == 0 && c->down.len == 0) {
        zt_buf_release(&c->down);
        if (c->b.rd_eof && !c->a.wr_shut) {
            shutdown(c->a.fd, SHUT_WR);
            c->a.wr_shut = true;
        }
    }
    if (n && c->b_is_stream && c->h2 && !c->stream_closed) {
        struct zt_h2conn *h2 = c->h2;
        zt_h2conn_consume(h2, c->sid, n);
        /* The window update must leave now: the sender may be waiting for
         * it with nothing else due on this connection. */
        zt_h2conn_flush(h2);
    }
    if (rc < 0 && !closed(c))
        fail_io(c, "write to downstream", rc);
}

/* Writes pending "up" bytes to a TCP side B. */
static void flush_up(struct zt_conn *c)
{
    size_t n;
    int rc = write_some(c->b.fd, &c->up, &n);
    if (rc < 0) {
        fail_io(c, "write to upstream", rc);
        return;
    }
    if (c->up.len == 0) {
        zt_buf_release(&c->up);
        if (c->a.rd_eof && !c->b.wr_shut) {
            shutdown(c->b.fd, SHUT_WR);
            c->b.wr_shut = true;
        }
    }
}

static void progress(struct zt_conn *c)
{
    if (closed(c))
        return;
    if (c->state == ZT_CONN_ST_RELAYING) {
        bool done;
        if (c->b_is_stream)
            done = c->stream_closed && c->down.len == 0;
        else
            done = c->a.rd_eof && c->b.wr_shut && c->b.rd_eof && c->a.wr_shut;
        if (done) {
            zt_conn_close(c, NULL);
            return;
        }
    }
    update_polls(c);
}

static void on_poll_a(uv_poll_t *h, int status, int events)
{
    struct zt_conn *c = h->data;
    if (closed(c))
        return;
    if (c->a.connecting) {
        /* POLLERR arrives as UV_EBADF; the socket knows the real reason. */
        c->a.connecting = false;
        int err = zt_sock_connect_result(c->a.fd);
        zt_conn_on_connected(c, err < 0 ? err : status);
        return;
    }
    if (status < 0) {
        fail_io(c, "downstream", status);
        return;
    }
    if (events & UV_WRITABLE) {
        flush_down(c);
        if (closed(c))
            return;
    }
    if ((events & UV_READABLE) && !c->a.rd_eof) {
        int rc = read_some(c->a.fd, &c->up, &c->bytes_up);
        if (rc < 0) {
            fail_io(c, "read from downstream", rc);
            return;
        }
        if (rc == 1)
            c->a.rd_eof = true;
        if (c->b_is_stream) {
            if (c->h2 && !c->stream_closed) {
                struct zt_h2conn *h2 = c->h2;
                zt_h2conn_resume(h2, c->sid);
                zt_h2conn_flush(h2);
                if (closed(c))
                    return;
            }
        } else {
            flush_up(c);
        }
    }
    progress(c);
}

static void on_poll_b(uv_poll_t *h, int status, int events)
{
    struct zt_conn *c = h->data;
    if (closed(c))
        return;
    if (c->b.connecting) {
        c->b.connecting = false;
        int err = zt_sock_connect_result(c->b.fd);
        zt_conn_on_connected(c, err < 0 ? err : status);
        return;
    }
    if (status < 0) {
        fail_io(c, "upstream", status);
        return;
    }
    if (events & UV_WRITABLE) {
        flush_up(c);
        if (closed(c))
            return;
    }
    if ((events & UV_READABLE) && !c->b.rd_eof) {
        int rc = read_some(c->b.fd, &c->down, &c->bytes_down);
        if (rc < 0) {
            fail_io(c, "read from upstream", rc);
            return;
        }
        if (rc == 1)
            c->b.rd_eof = true;
        flush_down(c);
        if (closed(c))
            return;
    }
    progress(c);
}

/* ---- HBONE stream side ---- */

static void on_flush_check(uv_check_t *h)
{
    struct zt_pw *pw = h->data;
    struct zt_conn *c = pw->flush_head;
    pw->flush_head = NULL;
    uv_check_stop(h);
    while (c) {
        struct zt_conn *next = c->flush_next;
        c->in_flush = false;
        c->flush_next = NULL;
        if (!closed(c)) {
            flush_down(c);
            progress(c);
        }
        c = next;
    }
}

void zt_conn_worker_init(struct zt_pw *pw)
{
    uv_check_init(&pw->worker.loop, &pw->flush_check);
    pw->flush_check.data = pw;
}

static void st_on_response(void *sud, int status)
{
    struct zt_conn *c = sud;
    zt_outbound_upstream_ready(c, status);
}

static void st_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct zt_conn *c = sud;
    if (closed(c))
        return;
    c->bytes_down += len;
    zt_buf_append(&c->down, data, len);
    if (c->state != ZT_CONN_ST_RELAYING || c->in_flush)
        return;
    /* Written after this loop iteration's reads: usually one send(2) for
     * all the frames that arrived together. */
    struct zt_pw *pw = c->pod->pw;
    if (!pw->flush_head)
        uv_check_start(&pw->flush_check, on_flush_check);
    c->in_flush = true;
    c->flush_next = pw->flush_head;
    pw->flush_head = c;
}

static void st_on_end(void *sud)
{
    struct zt_conn *c = sud;
    if (closed(c))
        return;
    c->b.rd_eof = true;
    if (c->state == ZT_CONN_ST_RELAYING && c->down.len == 0 && !c->a.wr_shut) {
        shutdown(c->a.fd, SHUT_WR);
        c->a.wr_shut = true;
    }
    update_polls(c);
}

static void st_on_close(void *sud, int error)
{
    struct zt_conn *c = sud;
    c->stream_closed = true;
    c->h2 = NULL;
    if (closed(c))
        return;
    if (c->state != ZT_CONN_ST_RELAYING) {
        if (c->kind == ZT_CONN_OUTBOUND)
            zt_conn_close(c, error ? zt_strerror(error) : "stream closed before the response");
        else
            zt_conn_close(c, "client closed the stream before the upstream connected");
        return;
    }
    if (error || !c->stream_eof_sent) {
        /* The peer reset the tunnel: deliver what we have, then give up. */
        if (c->down.len)
            flush_down(c);
        if (!closed(c))
            zt_conn_close(c, error ? "tunnel reset by peer" : NULL);
        return;
    }
    c->b.rd_eof = true;
    progress(c);
}

static ssize_t st_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct zt_conn *c = sud;
    if (closed(c) || c->state != ZT_CONN_ST_RELAYING)
        return -EAGAIN;
    if (c->up.len > 0) {
        size_t n = c->up.len < len ? c->up.len : len;
        memcpy(buf, zt_buf_head(&c->up), n);
        zt_buf_consume(&c->up, n);
        if (c->up.len == 0) {
            zt_buf_release(&c->up);
            if (c->a.rd_eof) {
                *eof = true;
                c->stream_eof_sent = true;
            }
        }
        update_polls(c);
        return (ssize_t)n;
    }
    if (c->a.rd_eof) {
        *eof = true;
        c->stream_eof_sent = true;
        return 0;
    }
    return -EAGAIN;
}

const struct zt_h2_stream_ops zt_conn_stream_ops = {
    .on_response = st_on_response,
    .on_data = st_on_data,
    .on_end = st_on_end,
    .on_close = st_on_close,
    .read = st_read,
};
