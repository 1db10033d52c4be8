/* A proxied connection: a relay (relay.c) between the pod's TCP socket and a
 * TCP socket or an HBONE stream, the two endpoint kinds defined here, and
 * the connection's lifecycle (access log, metrics, release).
 *
 * Backpressure: a socket is read only while the buffer toward the other side
 * has room; stream DATA is returned to the HTTP/2 windows (consume) only
 * once written to the socket, so a slow reader throttles its own sender. */
#include "proxy/proxy_int.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "loop/sock.h"
#include "telemetry/accesslog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_CAP (256 * 1024) /* most bytes buffered toward a socket from a socket */
#define READ_SZ (256 * 1024)

static const struct zt_relay_ops conn_relay_ops;
static const struct zt_endpoint_ops tcp_ep_ops, stream_ep_ops;

static struct zt_conn *conn_of(struct zt_relay *r)
{
    return (struct zt_conn *)((char *)r - offsetof(struct zt_conn, relay));
}

/* `s` is the s of a struct zt_ident, or NULL. */
static void ident_unref(const char *s)
{
    if (!s)
        return;
    struct zt_ident *x = (struct zt_ident *)(s - offsetof(struct zt_ident, s));
    if (--x->refs == 0)
        free(x);
}

static void conn_free(struct zt_conn *c)
{
    zt_relay_cleanup(&c->relay);
    free(c->b.tcp); /* never polled, or its handle is closed */
    ident_unref(c->src_identity);
    ident_unref(c->dst_identity);
    free(c);
}

void zt_conn_addr_set(union zt_conn_addr *a, const struct sockaddr *sa)
{
    memset(a, 0, sizeof(*a));
    if (sa->sa_family == AF_INET)
        a->in = *(const struct sockaddr_in *)sa;
    else if (sa->sa_family == AF_INET6)
        a->in6 = *(const struct sockaddr_in6 *)sa;
}

const char *zt_conn_addr_str(const union zt_conn_addr *a, char *buf, size_t cap)
{
    if (a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6) {
        if (cap)
            buf[0] = 0;
        return buf;
    }
    return zt_sockaddr_str(&a->sa, buf, cap);
}

void zt_conn_set_identity(struct zt_conn *c, const char **slot, const char *id)
{
    ident_unref(*slot);
    *slot = NULL;
    if (!id || !id[0])
        return;
    struct zt_pod_inst *pod = c->pod;
    for (unsigned i = 0; i < ZT_POD_IDENTS; i++) {
        struct zt_ident *x = pod->idents[i];
        if (x && strcmp(x->s, id) == 0) {
            x->refs++;
            *slot = x->s;
            return;
        }
    }
    size_t n = strlen(id);
    struct zt_ident *x = zt_xmalloc(sizeof(*x) + n + 1);
    memcpy(x->s, id, n + 1);
    x->refs = 2; /* the slot's and the pod's */
    unsigned k = pod->ident_next++ % ZT_POD_IDENTS;
    if (pod->idents[k])
        ident_unref(pod->idents[k]->s);
    pod->idents[k] = x;
    *slot = x->s;
}

void zt_pod_idents_release(struct zt_pod_inst *pod)
{
    for (unsigned i = 0; i < ZT_POD_IDENTS; i++) {
        if (pod->idents[i])
            ident_unref(pod->idents[i]->s);
        pod->idents[i] = NULL;
    }
}

/* ---- the TCP socket endpoint ---- */

static void on_tcp_poll(uv_poll_t *h, int status, int events);

static void on_tcp_closed(uv_handle_t *h)
{
    struct zt_tcp_ep *t = h->data;
    struct zt_conn *c = t->conn;
    close(t->fd);
    t->fd = -1;
    if (t == c->b.tcp) {
        free(t);
        c->b.tcp = NULL;
    }
    if (--c->handles_open == 0)
        conn_free(c); /* the tunnel ended before its handles were closed */
}

static void tcp_open(struct zt_conn *c, struct zt_tcp_ep *t, int fd, bool connecting)
{
    t->ep.ops = &tcp_ep_ops;
    t->conn = c;
    t->fd = fd;
    t->events = t->wanted = 0;
    t->is_poll_dirty = false;
    t->is_connecting = connecting;
    if (uv_poll_init(&c->pod->pw->worker.loop, &t->poll, fd) < 0) {
        /* Not pollable: a dead socket (its reads fail), never a crash. */
        close(fd);
        t->fd = -1;
        return;
    }
    t->poll.data = t;
    t->is_open = true;
    c->handles_open++;
}

static void poll_undirty(struct zt_tcp_ep *t);

static void tcp_close(struct zt_tcp_ep *t)
{
    poll_undirty(t);
    if (t->is_open) {
        uv_poll_stop(&t->poll);
        uv_close((uv_handle_t *)&t->poll, on_tcp_closed);
        t->is_open = false;
    } else if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
}

/* Poll interest is applied once per loop iteration, just before the loop
 * waits: libuv (1.44) takes a socket out of epoll on every uv_poll_stop and
 * uv_poll_start and puts it back at the next wait, so a relay that stops
 * reading at its buffer cap and resumes once the stream took the bytes (the
 * usual bulk cycle) would cost three epoll_ctl calls per 256 KiB. */
static void on_poll_prepare(uv_prepare_t *h)
{
    struct zt_pw *pw = h->data;
    for (size_t i = 0; i < pw->n_poll_dirty; i++) {
        struct zt_tcp_ep *t = pw->poll_dirty[i];
        if (!t)
            continue; /* closed since */
        t->is_poll_dirty = false;
        if (!t->is_open || t->events == t->wanted)
            continue;
        t->events = t->wanted;
        if (t->events)
            uv_poll_start(&t->poll, t->events, on_tcp_poll);
        else
            uv_poll_stop(&t->poll);
    }
    pw->n_poll_dirty = 0;
    uv_prepare_stop(h);
}

static void poll_undirty(struct zt_tcp_ep *t)
{
    if (!t->is_poll_dirty)
        return;
    struct zt_pw *pw = t->conn->pod->pw;
    for (size_t i = 0; i < pw->n_poll_dirty; i++)
        if (pw->poll_dirty[i] == t)
            pw->poll_dirty[i] = NULL;
    t->is_poll_dirty = false;
}

static void tcp_poll_for(struct zt_tcp_ep *t, int events)
{
    if (!t->is_open)
        return;
    t->wanted = (uint8_t)events;
    if (t->is_poll_dirty || t->wanted == t->events)
        return; /* already queued; or nothing to change (off and on again) */
    struct zt_pw *pw = t->conn->pod->pw;
    if (pw->n_poll_dirty == pw->cap_poll_dirty) {
        size_t cap = pw->cap_poll_dirty ? 2 * pw->cap_poll_dirty : 64;
        pw->poll_dirty = zt_xrealloc(pw->poll_dirty, cap * sizeof(*pw->poll_dirty));
        pw->cap_poll_dirty = cap;
    }
    pw->poll_dirty[pw->n_poll_dirty++] = t;
    t->is_poll_dirty = true;
    uv_prepare_start(&pw->poll_prepare, on_poll_prepare);
}

static ssize_t tcp_read(struct zt_endpoint *ep, uint8_t *buf, size_t len)
{
    struct zt_tcp_ep *t = (struct zt_tcp_ep *)ep;
    if (t->fd < 0)
        return -EBADF;
    ssize_t n = recv(t->fd, buf, len, 0);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
}

static ssize_t tcp_write(struct zt_endpoint *ep, const uint8_t *buf, size_t len)
{
    struct zt_tcp_ep *t = (struct zt_tcp_ep *)ep;
    if (t->fd < 0)
        return -EBADF;
    ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
}

static int tcp_shutdown(struct zt_endpoint *ep)
{
    struct zt_tcp_ep *t = (struct zt_tcp_ep *)ep;
    /* A peer already gone (ENOTCONN) has nothing left to be told. */
    if (t->fd >= 0 && shutdown(t->fd, SHUT_WR) < 0 && errno != ENOTCONN)
        return -errno;
    return 0;
}

static void tcp_want(struct zt_endpoint *ep, bool rd, bool wr)
{
    struct zt_tcp_ep *t = (struct zt_tcp_ep *)ep;
    if (t->is_connecting)
        return; /* polled for the connect's end */
    tcp_poll_for(t, (rd ? UV_READABLE : 0) | (wr ? UV_WRITABLE : 0));
}

static const struct zt_endpoint_ops tcp_ep_ops = {
    .read = tcp_read,
    .write = tcp_write,
    .shutdown_write = tcp_shutdown,
    .want = tcp_want,
};

static void on_tcp_poll(uv_poll_t *h, int status, int events)
{
    struct zt_tcp_ep *t = h->data;
    struct zt_conn *c = t->conn;
    if (zt_conn_closed(c))
        return;
    if (t->is_connecting) {
        /* POLLERR arrives as UV_EBADF; the socket knows the real reason. */
        t->is_connecting = false;
        tcp_poll_for(t, 0);
        int err = zt_sock_connect_result(t->fd);
        zt_conn_on_connected(c, err < 0 ? err : status);
        return;
    }
    if (status < 0) {
        /* POLLERR arrives as UV_EBADF; the socket's pending error is the
         * real reason (a reset, most often). */
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
            status = -err;
        char msg[128];
        snprintf(msg, sizeof(msg), "%s: %s", t == &c->a ? "downstream" : "upstream",
                 zt_strerror(status));
        zt_conn_close(c, msg);
        return;
    }
    if (events & UV_WRITABLE) {
        zt_relay_writable(&c->relay, t->ep.side);
        if (zt_conn_closed(c))
            return;
    }
    if (events & UV_READABLE)
        zt_relay_readable(&c->relay, t->ep.side);
}

/* ---- the HBONE stream endpoint ---- */

/* The stream DATA being handed over (st_on_data) and the body buffer being
 * filled (st_read), for the one stream of this thread inside each: nghttp2
 * is never re-entered, so neither nests, and no stream keeps them. */
static _Thread_local struct {
    const struct zt_stream_ep *st;
    const uint8_t *data;
    size_t len;
} rx;
static _Thread_local struct {
    const struct zt_stream_ep *st;
    uint8_t *buf;
    size_t cap, len;
} tx;

static ssize_t stream_read(struct zt_endpoint *ep, uint8_t *buf, size_t len)
{
    struct zt_stream_ep *st = (struct zt_stream_ep *)ep;
    if (rx.st != st || rx.len == 0)
        return st->is_rx_eof ? 0 : -EAGAIN;
    size_t n = rx.len < len ? rx.len : len;
    memcpy(buf, rx.data, n);
    rx.data += n;
    rx.len -= n;
    return (ssize_t)n;
}

static ssize_t stream_write(struct zt_endpoint *ep, const uint8_t *buf, size_t len)
{
    struct zt_stream_ep *st = (struct zt_stream_ep *)ep;
    size_t room = tx.st == st ? tx.cap - tx.len : 0;
    if (room == 0)
        return -EAGAIN;
    size_t n = len < room ? len : room;
    memcpy(tx.buf + tx.len, buf, n);
    tx.len += n;
    return (ssize_t)n;
}

static void on_flush_check(uv_check_t *h);

/* The data source said "nothing now" earlier: ask nghttp2 to call it again
 * (never from inside it) and send at the end of this loop iteration's
 * reads (on_flush_check), so that what several sockets had for streams of
 * one connection leaves in one record and one send(2) rather than one
 * each. */
static void stream_resume(struct zt_stream_ep *st)
{
    if (!st->is_deferred || tx.st == st || !st->h2)
        return;
    st->is_deferred = false;
    struct zt_conn *c = (struct zt_conn *)((char *)st - offsetof(struct zt_conn, b.st));
    struct zt_pw *pw = c->pod->pw;
    zt_h2conn_resume(st->h2, st->sid);
    zt_h2conn_flush_soon(st->h2); /* may close the stream, and the tunnel, then */
    pw->is_h2_flush_queued = true;
    uv_check_start(&pw->flush_check, on_flush_check);
}

static int stream_shutdown(struct zt_endpoint *ep)
{
    struct zt_stream_ep *st = (struct zt_stream_ep *)ep;
    st->is_eof_wanted = true;
    stream_resume(st);
    /* Done once the stream has closed cleanly: before that, a reset (at
     * close) could overtake the END_STREAM. */
    return 1;
}

static void stream_want(struct zt_endpoint *ep, bool rd, bool wr)
{
    if (wr)
        stream_resume((struct zt_stream_ep *)ep);
}

static void stream_delivered(struct zt_endpoint *ep, size_t n)
{
    struct zt_stream_ep *st = (struct zt_stream_ep *)ep;
    if (!st->h2)
        return;
    struct zt_h2conn *h2 = st->h2;
    zt_h2conn_consume(h2, st->sid, n);
    /* The window update must leave now: the sender may be waiting for it
     * with nothing else due on this connection. */
    zt_h2conn_flush(h2);
}

static const struct zt_endpoint_ops stream_ep_ops = {
    .read = stream_read,
    .write = stream_write,
    .shutdown_write = stream_shutdown,
    .want = stream_want,
    .delivered = stream_delivered,
};

/* The connection's addresses as text, for one access-log line. */
struct addr_text {
    char src[ZT_CONN_ADDR_STR_MAX], dst[ZT_CONN_ADDR_STR_MAX], hbone[ZT_CONN_ADDR_STR_MAX];
};

/* `error` (borrowed, may be NULL) is what ended the connection; the record
 * points into `t`. */
static void fill_record(struct zt_conn *c, const char *error, struct addr_text *t,
                        struct zt_accesslog *r)
{
    zt_conn_addr_str(&c->src_addr, t->src, sizeof(t->src));
    zt_conn_addr_str(&c->dst_addr, t->dst, sizeof(t->dst));
    zt_conn_addr_str(&c->hbone_addr, t->hbone, sizeof(t->hbone));
    bool outbound = c->kind == ZT_CONN_OUTBOUND;
    *r = (struct zt_accesslog){
        .src_addr = t->src,
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
        .dst_addr = t->dst,
        /* Double HBONE asks for a service hostname, not an address. */
        .dst_hbone_addr =
            zt_outbound_dhbone_authority(c) ? zt_outbound_dhbone_authority(c) : t->hbone,
        .dst_service = c->dst_svc ? c->dst_svc->hostname : NULL,
        .dst_workload = c->dst_wl ? c->dst_wl->name : NULL,
        .dst_namespace = c->dst_wl ? c->dst_wl->namespace : NULL,
        .dst_identity = c->dst_identity,
        .dst_cluster = c->dst_wl ? c->dst_wl->cluster_id : NULL,
        .direction = outbound ? "outbound" : "inbound",
        /* From the reporter's view: outbound sends what the app wrote;
         * inbound sends what the app answered. */
        .bytes_sent =
            outbound ? c->relay.flow[ZT_RELAY_UP].bytes : c->relay.flow[ZT_RELAY_DOWN].bytes,
        .bytes_recv =
            outbound ? c->relay.flow[ZT_RELAY_DOWN].bytes : c->relay.flow[ZT_RELAY_UP].bytes,
        .duration_ms = uv_now(&c->pod->pw->worker.loop) - c->start_ms,
        .error = error && error[0] ? error : NULL,
    };
}

void zt_conn_log_opened(struct zt_conn *c)
{
    struct zt_accesslog r;
    struct addr_text t;
    fill_record(c, NULL, &t, &r);
    zt_accesslog_emit_opened(&r);
}

static void emit_log(struct zt_conn *c, const char *error)
{
    struct zt_accesslog r;
    struct addr_text t;
    fill_record(c, error, &t, &r);
    zt_accesslog_emit(&r);
}

/* ---- lifecycle ---- */

/* The tunnel ended: everything the connection holds goes, its memory at a
 * safe point (a handle's close callback, or the worker's next check). `error` is the caller's and
 * stays valid through this call, where the access line is written. */
static void conn_finish(struct zt_conn *c, const char *error)
{
    struct zt_pw *pw = c->pod->pw;
    zt_hbone_pool_cancel(&c->waiter);
    zt_outbound_dns_cancel(c);
    if (c->in_flush) {
        struct zt_conn **pp = &pw->flush_head;
        while (*pp && *pp != c)
            pp = &(*pp)->flush_next;
        if (*pp) {
            *pp = c->flush_next;
            c->in_flush = false;
        } /* else: on the list on_flush_check is walking; it skips c */
    }
    if (c->has_stream && c->b.st.h2) {
        struct zt_stream_ep *st = &c->b.st;
        struct zt_h2conn *h2 = st->h2;
        st->h2 = NULL;
        /* After an error status the stream ends by itself; a reset now could
         * overtake the status and the client would never see it. */
        if (st->sid > 0 && st->is_final_status)
            zt_h2conn_attach(h2, st->sid, NULL, NULL);
        else if (st->sid > 0)
            zt_h2conn_detach(h2, st->sid);
        zt_h2conn_flush(h2);
    }
    emit_log(c, error);
    zt_outbound_dhbone_end(c);
    zt_conn_metrics_close(c);
    atomic_fetch_sub_explicit(&pw->live, 1, memory_order_relaxed);
    if (c->is_accepted)
        atomic_fetch_sub_explicit(&pw->conns_in[ZT_SPREAD_APP], 1, memory_order_relaxed);
    zt_list_remove(&c->link);
    tcp_close(&c->a);
    if (c->b.tcp)
        tcp_close(c->b.tcp);
    if (c->handles_open == 0) {
        /* No handle to wait for: freed at the worker's next check, the list
         * linked through `link` (c is off its pod's list now). */
        zt_list_insert_tail(&pw->dead, &c->link);
        uv_check_start(&pw->flush_check, on_flush_check);
    }
}

static void on_relay_state(struct zt_relay *r, enum zt_tunnel_state from, const char *error)
{
    struct zt_conn *c = conn_of(r);
    ZT_DEBUG("proxy", "conn %llu %s -> %s", (unsigned long long)c->id, zt_tunnel_state_str(from),
             zt_tunnel_state_str(r->state));
    if (zt_relay_done(r))
        conn_finish(c, error);
}

/* Stream bytes for the socket wait for the end of this loop iteration's
 * reads: usually one send(2) for all the frames that arrived together. */
static void on_defer_flush(struct zt_relay *r, enum zt_relay_dir dir)
{
    struct zt_conn *c = conn_of(r);
    if (c->in_flush)
        return;
    struct zt_pw *pw = c->pod->pw;
    uv_check_start(&pw->flush_check, on_flush_check);
    c->in_flush = true;
    c->flush_next = pw->flush_head;
    pw->flush_head = c;
}

static const struct zt_relay_ops conn_relay_ops = {
    .on_state = on_relay_state,
    .defer_flush = on_defer_flush,
};

static void worker_reap(struct zt_pw *pw)
{
    struct zt_conn *c;
    while ((c = zt_list_entry(zt_list_first(&pw->dead), struct zt_conn, link)) != NULL) {
        zt_list_remove(&c->link);
        conn_free(c);
    }
}

void zt_conn_worker_cleanup(struct zt_pw *pw)
{
    worker_reap(pw);
    free(pw->poll_dirty);
    pw->poll_dirty = NULL;
    pw->n_poll_dirty = pw->cap_poll_dirty = 0;
}

static void on_flush_check(uv_check_t *h)
{
    struct zt_pw *pw = h->data;
    struct zt_conn *c = pw->flush_head;
    pw->flush_head = NULL;
    while (c) {
        struct zt_conn *next = c->flush_next;
        c->in_flush = false;
        c->flush_next = NULL;
        if (!zt_conn_closed(c))
            zt_relay_flush(&c->relay, ZT_RELAY_DOWN);
        c = next;
    }
    /* Then the connections stream_resume queued (window updates the
     * flushes above gave go with them). */
    pw->is_h2_flush_queued = false;
    zt_h2conn_flush_queued();
    worker_reap(pw);
    if (!pw->flush_head && !pw->is_h2_flush_queued)
        uv_check_stop(h);
}

void zt_conn_worker_init(struct zt_pw *pw)
{
    zt_list_init(&pw->dead);
    uv_check_init(&pw->worker.loop, &pw->flush_check);
    pw->flush_check.data = pw;
    uv_prepare_init(&pw->worker.loop, &pw->poll_prepare);
    pw->poll_prepare.data = pw;
}

void zt_conn_authz(const struct zt_conn *c, struct zt_authz_conn *out)
{
    const union zt_conn_addr *dst =
        c->kind == ZT_CONN_INBOUND_HBONE ? &c->upstream_addr : &c->dst_addr;
    *out = (struct zt_authz_conn){.src_identity = c->src_identity};
    zt_ip_from_sockaddr(&c->src_addr.sa, &out->src_ip, &out->src_port);
    zt_ip_from_sockaddr(&dst->sa, &out->dst_ip, &out->dst_port);
}

void zt_conn_close(struct zt_conn *c, const char *error)
{
    zt_relay_close(&c->relay, error);
}

static const char *const reason_flags[ZT_CLOSE_REASON_COUNT] = {
    "-", "CONNECT", "DENY", "IDENTITY_ERROR", "TLS_FAILURE", "NETWORK_POLICY", "CERT_REVOKED",
};

const char *zt_close_reason_flag(enum zt_close_reason why)
{
    return (unsigned)why < ZT_CLOSE_REASON_COUNT ? reason_flags[why] : "-";
}

void zt_conn_fail(struct zt_conn *c, enum zt_close_reason why, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->reason = why;
    zt_conn_close(c, msg);
}

void zt_conn_fail_connect(struct zt_conn *c, const union zt_conn_addr *to, int err)
{
    char addr[ZT_CONN_ADDR_STR_MAX];
    zt_conn_fail(c, ZT_CLOSE_CONNECT, "connect to %s: %s", zt_conn_addr_str(to, addr, sizeof(addr)),
                 zt_strerror(err));
}

struct zt_conn *zt_conn_new(struct zt_pod_inst *pod, enum zt_conn_kind kind, int afd)
{
    struct zt_conn *c = zt_xcalloc(1, sizeof(*c));
    c->id = ++pod->pw->next_conn_id;
    c->kind = kind;
    c->pod = pod;
    zt_relay_init(&c->relay, &conn_relay_ops, NULL, NULL, BUF_CAP, READ_SZ);
    c->a.fd = -1;
    c->start_ms = uv_now(&pod->pw->worker.loop);
    zt_list_insert_head(&pod->conns, &c->link);
    atomic_fetch_add_explicit(&pod->pw->live, 1, memory_order_relaxed);
    if (afd >= 0) {
        c->is_accepted = true;
        atomic_fetch_add_explicit(&pod->pw->conns_in[ZT_SPREAD_APP], 1, memory_order_relaxed);
        zt_conn_set_tcp_a(c, afd, false);
    }
    return c;
}

static void set_tcp(struct zt_conn *c, enum zt_relay_side side, int fd, bool connecting)
{
    struct zt_tcp_ep *t = &c->a;
    if (side == ZT_RELAY_B) {
        t = c->b.tcp = calloc(1, sizeof(*t));
        if (!t)
            abort();
    }
    tcp_open(c, t, fd, connecting);
    zt_relay_set_endpoint(&c->relay, side, &t->ep);
    if (connecting)
        tcp_poll_for(t, UV_WRITABLE);
}

void zt_conn_set_tcp_b(struct zt_conn *c, int fd, bool connecting)
{
    c->has_stream = false;
    set_tcp(c, ZT_RELAY_B, fd, connecting);
}

void zt_conn_set_tcp_a(struct zt_conn *c, int fd, bool connecting)
{
    set_tcp(c, ZT_RELAY_A, fd, connecting);
}

void zt_conn_set_stream(struct zt_conn *c, struct zt_h2conn *h2, int32_t sid)
{
    c->has_stream = true;
    struct zt_stream_ep *st = &c->b.st;
    *st = (struct zt_stream_ep){
        .ep = {.ops = &stream_ep_ops, .is_unbounded = true, .is_pull = true},
        .h2 = h2,
        .sid = sid,
        .is_deferred = true, /* no body read before the first resume */
    };
    zt_relay_set_endpoint(&c->relay, ZT_RELAY_B, &st->ep);
}

void zt_conn_connect_sent(struct zt_conn *c)
{
    zt_relay_set_state(&c->relay, ZT_TUN_CONNECT_SENT);
}

void zt_conn_start_relay(struct zt_conn *c)
{
    zt_relay_set_state(&c->relay, ZT_TUN_ESTABLISHED);
}

/* ---- HBONE stream callbacks (the user pointer is the connection) ---- */

static void st_on_response(void *sud, int status)
{
    zt_outbound_upstream_ready(sud, status);
}

static void st_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct zt_conn *c = sud;
    if (zt_conn_closed(c))
        return;
    rx.st = &c->b.st;
    rx.data = data;
    rx.len = len;
    zt_relay_readable(&c->relay, ZT_RELAY_B); /* takes all of it */
    rx.st = NULL;
    rx.data = NULL;
    rx.len = 0;
}

static void st_on_end(void *sud)
{
    struct zt_conn *c = sud;
    if (zt_conn_closed(c))
        return;
    c->b.st.is_rx_eof = true;
    zt_relay_readable(&c->relay, ZT_RELAY_B);
}

static void st_on_close(void *sud, int error)
{
    struct zt_conn *c = sud;
    struct zt_stream_ep *st = &c->b.st;
    st->h2 = NULL;
    if (zt_conn_closed(c))
        return;
    if (!zt_relay_moving(&c->relay)) {
        if (c->kind == ZT_CONN_OUTBOUND)
            zt_conn_close(c, error ? zt_strerror(error) : "stream closed before the response");
        else
            zt_conn_close(c, "client closed the stream before the upstream connected");
        return;
    }
    if (error || !st->is_eof_sent) {
        /* The peer reset the tunnel: deliver what we have, then give up. */
        zt_relay_abort(&c->relay, ZT_RELAY_B, error ? "tunnel reset by peer" : NULL);
        return;
    }
    /* Both ends of the stream are done. */
    st->is_rx_eof = true;
    zt_relay_readable(&c->relay, ZT_RELAY_B);
    if (!zt_conn_closed(c))
        zt_relay_shutdown_done(&c->relay, ZT_RELAY_B);
}

/* nghttp2 asks for DATA: the stream is writable into `buf` for this call. */
static ssize_t st_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct zt_conn *c = sud;
    struct zt_stream_ep *st = &c->b.st;
    if (zt_conn_closed(c))
        return -EAGAIN;
    size_t n = 0;
    if (zt_relay_moving(&c->relay)) {
        tx.st = st;
        tx.buf = buf;
        tx.cap = len;
        tx.len = 0;
        zt_relay_pull(&c->relay, ZT_RELAY_B);
        n = tx.len;
        tx.st = NULL;
        tx.buf = NULL;
        if (zt_conn_closed(c))
            return n ? (ssize_t)n : -EAGAIN;
    }
    if (st->is_eof_wanted) {
        *eof = true;
        st->is_eof_sent = true;
        return (ssize_t)n;
    }
    /* Less than asked: the session ends this body source (the stream's
     * DATA is read on resume only, so an idle tunnel holds no pending
     * body in nghttp2); resume again once the relay has more. */
    if (n > 0 && n < len)
        st->is_deferred = true;
    if (n > 0)
        return (ssize_t)n;
    st->is_deferred = true;
    return -EAGAIN;
}

const struct zt_h2_stream_ops zt_conn_stream_ops = {
    .on_response = st_on_response,
    .on_data = st_on_data,
    .on_end = st_on_end,
    .on_close = st_on_close,
    .read = st_read,
    .is_body_on_resume = true,
};
