/* The socket transport of an HTTP/2 session: polls a non-blocking fd with
 * libuv, pulls ciphertext into the session with recv(2), pushes what it
 * produces with send(2), and keeps one timer on the session's deadline. All
 * protocol logic lives in h2/session.c.
 *
 * A tunneled connection (double HBONE's inner one) has no socket: its
 * ciphertext is the DATA of a CONNECT stream on another connection. The
 * session is the same; only where its bytes come from and go changes. */
#include "h2/h2conn.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUDGET (1024 * 1024) /* plaintext bytes per poll callback before yielding */
/* Tunneled: ciphertext taken from the session and waiting for the outer
 * stream; once this much waits, the session keeps the rest. */
#define TUNNEL_TX_CAP (256 * 1024)
/* Tunneled: after a clean close, how long the outer stream may take to end
 * (its last bytes and END_STREAM out, the peer's end in) before a reset. */
#define TUNNEL_LINGER_MS 10000

struct zt_h2conn {
    uv_loop_t *loop;
    int fd;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;
    int poll_events;
    bool connecting;   /* client: TCP connect in progress, nothing sent yet */
    bool want_write;   /* ciphertext waits for POLLOUT */
    bool closed;       /* the session closed; handles are closing */
    uint64_t timer_at; /* deadline the timer is armed for, UINT64_MAX = none */
    struct zt_h2_session *s;
    const struct zt_h2conn_ops *ops;
    void *ud;
    /* Tunneled (fd -1, no poll handle): the CONNECT stream outer_sid of
     * outer carries the ciphertext; outer is NULL once that stream is gone.
     * tx holds ciphertext for it (tx_off already given). */
    bool is_tunneled;
    bool is_released;  /* the timer handle is closing */
    bool is_tx_capped; /* the session may hold more than tx took */
    bool is_outer_eof; /* closed cleanly: END_STREAM once tx is given */
    struct zt_h2conn *outer;
    int32_t outer_sid;
    uint8_t *tx;
    size_t tx_len, tx_off, tx_size;
    /* A flush asked for while a connection of this thread was reading
     * waits on the thread's pending list until that read is over. */
    bool is_flush_pending;
    struct zt_h2conn *pending_next;
};

/* Flushes asked for inside a read (a request that turns into a write on
 * another connection, a response head then its body, window updates) are
 * gathered and done once the read is over, so each connection sends once
 * per event instead of once per write: what a read produces leaves in as
 * few send(2) calls as the bytes allow. Per thread: connections never
 * move between loops. */
static __thread int read_depth;
static __thread struct zt_h2conn *pending_head;

static void pending_unlink(struct zt_h2conn *c)
{
    if (!c->is_flush_pending)
        return;
    for (struct zt_h2conn **pp = &pending_head; *pp; pp = &(*pp)->pending_next) {
        if (*pp == c) {
            *pp = c->pending_next;
            break;
        }
    }
    c->is_flush_pending = false;
    c->pending_next = NULL;
}

static void pend(struct zt_h2conn *c)
{
    if (!c->is_flush_pending) {
        c->is_flush_pending = true;
        c->pending_next = pending_head;
        pending_head = c;
    }
}

static void flush_pending(void)
{
    while (pending_head) {
        struct zt_h2conn *c = pending_head;
        pending_head = c->pending_next;
        c->pending_next = NULL;
        c->is_flush_pending = false;
        zt_h2conn_flush(c);
    }
}

static const char *const state_names[] = {"tcp-connecting", "tls-handshake", "open", "draining",
                                          "closed"};

const char *zt_h2conn_state_str(enum zt_h2conn_state st)
{
    return (unsigned)st < sizeof(state_names) / sizeof(state_names[0]) ? state_names[st] : "?";
}

/* ---- teardown ---- */

static void on_handle_closed(uv_handle_t *h)
{
    struct zt_h2conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    pending_unlink(c);
    zt_h2_session_free(c->s);
    if (c->fd >= 0)
        close(c->fd);
    free(c->tx);
    free(c);
}

static void on_tunnel_closed(struct zt_h2_session *s, struct zt_h2conn *c, int error);

/* The session closed (any cause): tell the owner, give what the session
 * left (a TLS alert, a GOAWAY) one chance to leave, and close the handles. */
static void on_session_closed(struct zt_h2_session *s, void *ud, int error)
{
    struct zt_h2conn *c = ud;
    c->closed = true;
    if (c->ops->on_closed)
        c->ops->on_closed(c, c->ud, error);
    if (c->is_tunneled) {
        on_tunnel_closed(s, c, error);
        return;
    }
    const uint8_t *p;
    size_t n;
    zt_h2_session_out(s, &p, &n);
    if (n > 0 && !c->connecting) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w; /* best effort: the connection is gone either way */
    }
    uv_poll_stop(&c->poll);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->poll, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void zt_h2conn_close(struct zt_h2conn *c, int error)
{
    zt_h2_session_close(c->s, error);
}

/* ---- session callbacks, mapped onto the connection's ---- */

static int on_session_ready(struct zt_h2_session *s, void *ud)
{
    struct zt_h2conn *c = ud;
    return c->ops->on_ready ? c->ops->on_ready(c, c->ud) : 0;
}

static void on_session_request(struct zt_h2_session *s, void *ud, int32_t stream_id,
                               const struct zt_h2_request *req)
{
    struct zt_h2conn *c = ud;
    c->ops->on_request(c, c->ud, stream_id, req);
}

static void on_session_draining(struct zt_h2_session *s, void *ud)
{
    struct zt_h2conn *c = ud;
    if (c->ops->on_draining)
        c->ops->on_draining(c, c->ud);
}

static const struct zt_h2_session_ops session_ops = {
    .on_ready = on_session_ready,
    .on_request = on_session_request,
    .on_draining = on_session_draining,
    .on_closed = on_session_closed,
};

/* ---- polling and the timer ---- */

static void on_poll(uv_poll_t *p, int status, int events);
static void on_timer(uv_timer_t *t);

static void update_poll(struct zt_h2conn *c)
{
    if (c->closed || c->is_tunneled)
        return;
    int ev = c->connecting ? UV_WRITABLE : UV_READABLE | (c->want_write ? UV_WRITABLE : 0);
    if (ev != c->poll_events) {
        c->poll_events = ev;
        uv_poll_start(&c->poll, ev, on_poll);
    }
}

/* One timer on the session's next deadline; "now" when a budgeted read left
 * input inside the session (the socket may never become readable again for
 * bytes OpenSSL already holds). */
static void update_timer(struct zt_h2conn *c)
{
    if (c->closed)
        return;
    uint64_t at = zt_h2_session_has_input(c->s) ? 0 : zt_h2_session_deadline(c->s);
    if (c->is_tunneled && c->is_tx_capped && c->tx_len - c->tx_off < TUNNEL_TX_CAP)
        at = 0; /* the outer stream took tx down: take more from the session */
    if (at == c->timer_at)
        return;
    c->timer_at = at;
    if (at == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = uv_now(c->loop);
    uv_timer_start(&c->timer, on_timer, at > now ? at - now : 0, 0);
}

/* ---- bytes ---- */

static ssize_t sock_recv(void *arg, uint8_t *buf, size_t len)
{
    struct zt_h2conn *c = arg;
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* Reads, with the flushes it asks for gathered (read_depth). */
static void do_read(struct zt_h2conn *c)
{
    read_depth++;
    zt_h2_session_read(c->s, sock_recv, c, READ_BUDGET);
    read_depth--;
}

static void tunnel_push(struct zt_h2conn *c);

/* Sends what the session produces until it has nothing more or the socket
 * is full: one send(2) for up to 256 KiB of records. */
void zt_h2conn_flush(struct zt_h2conn *c)
{
    if (c->closed || c->connecting)
        return;
    if (read_depth > 0) {
        pend(c);
        return;
    }
    if (c->is_tunneled) {
        tunnel_push(c);
        return;
    }
    for (;;) {
        const uint8_t *p;
        size_t n;
        if (zt_h2_session_out(c->s, &p, &n) != 0 || c->closed)
            return; /* closed: on_session_closed did the rest */
        if (n == 0) {
            c->want_write = false;
            break;
        }
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            zt_h2_session_out_done(c->s, (size_t)w);
            if ((size_t)w < n) {
                c->want_write = true; /* the socket took what it could */
                break;
            }
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->want_write = true;
            break;
        }
        zt_h2_session_close(c->s, w < 0 ? -errno : -EIO);
        return;
    }
    update_poll(c);
    update_timer(c);
}

void zt_h2conn_flush_soon(struct zt_h2conn *c)
{
    if (!c->closed)
        pend(c);
}

void zt_h2conn_flush_queued(void)
{
    if (read_depth == 0)
        flush_pending();
}

static void on_timer(uv_timer_t *t)
{
    struct zt_h2conn *c = t->data;
    c->timer_at = UINT64_MAX; /* one-shot: it fired */
    if (c->closed)
        return;
    if (zt_h2_session_tick(c->s, uv_now(c->loop)) != 0 || c->closed)
        return;
    if (!c->connecting && !c->is_tunneled && zt_h2_session_has_input(c->s))
        do_read(c);
    if (!c->closed)
        zt_h2conn_flush(c);
    if (read_depth == 0)
        flush_pending();
    update_timer(c); /* also while connecting, when flush does nothing */
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct zt_h2conn *c = p->data;
    if (c->closed)
        return;
    /* The session's clock is the loop's: a read may open the session, and
     * its keepalive counts from then. */
    if (zt_h2_session_tick(c->s, uv_now(c->loop)) != 0 || c->closed)
        return;
    if (status < 0 && !c->connecting) {
        /* libuv reports a socket error (POLLERR, e.g. a peer's RST) as
         * UV_EBADF; the socket knows the real cause. */
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        zt_h2_session_close(c->s, err ? -err : status);
        return;
    }
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            zt_h2_session_close(c->s, -err);
            return;
        }
        c->connecting = false;
        zt_h2conn_flush(c); /* the ClientHello */
        return;
    }
    if (events & UV_READABLE)
        do_read(c);
    if (!c->closed)
        zt_h2conn_flush(c);
    if (read_depth == 0)
        flush_pending();
}

/* ---- tunneled: the ciphertext rides a CONNECT stream of another connection ---- */

static void tx_append(struct zt_h2conn *c, const uint8_t *p, size_t n)
{
    if (c->tx_off > 0) {
        memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
        c->tx_len -= c->tx_off;
        c->tx_off = 0;
    }
    if (c->tx_len + n > c->tx_size) {
        c->tx_size = c->tx_len + n;
        c->tx = zt_xrealloc(c->tx, c->tx_size);
    }
    memcpy(c->tx + c->tx_len, p, n);
    c->tx_len += n;
}

/* Wakes the outer stream's body source and lets the outer connection send.
 * Flushing another connection is safe from our callbacks: inside its own
 * read callbacks a session only gives what already waits. */
static void outer_kick(struct zt_h2conn *c)
{
    if (!c->outer)
        return;
    zt_h2conn_resume(c->outer, c->outer_sid);
    zt_h2conn_flush(c->outer); /* may close it: tun_on_close then runs */
}

/* Moves the session's ciphertext into tx (up to about TUNNEL_TX_CAP; the
 * session stops producing DATA while its own output waits) and has the
 * outer stream carry it. */
static void tunnel_push(struct zt_h2conn *c)
{
    c->is_tx_capped = false;
    for (;;) {
        const uint8_t *p;
        size_t n;
        if (c->tx_len - c->tx_off >= TUNNEL_TX_CAP) {
            c->is_tx_capped = true;
            break;
        }
        if (zt_h2_session_out(c->s, &p, &n) != 0 || c->closed)
            return; /* closed: on_tunnel_closed took what was left */
        if (n == 0)
            break;
        tx_append(c, p, n);
        zt_h2_session_out_done(c->s, n);
    }
    if (c->tx_len > c->tx_off)
        outer_kick(c);
    update_timer(c);
}

/* The timer handle goes, and the object with it, once both the session is
 * closed and the outer stream is gone. */
static void tunnel_release(struct zt_h2conn *c)
{
    if (c->is_released || !c->closed || c->outer)
        return;
    c->is_released = true;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_linger_timer(uv_timer_t *t)
{
    struct zt_h2conn *c = t->data;
    struct zt_h2conn *outer = c->outer;
    if (!outer)
        return;
    c->outer = NULL;
    zt_h2conn_detach(outer, c->outer_sid); /* resets it */
    zt_h2conn_flush(outer);
    tunnel_release(c);
}

/* The session closed. Cleanly: what it left (its GOAWAY) goes out on the
 * outer stream, which then ends (END_STREAM), giving the peer a clean end
 * too; a stream that does not finish within TUNNEL_LINGER_MS is reset.
 * After an error the outer stream is reset at once. */
static void on_tunnel_closed(struct zt_h2_session *s, struct zt_h2conn *c, int error)
{
    const uint8_t *p;
    size_t n;
    zt_h2_session_out(s, &p, &n);
    if (n > 0 && c->outer && error == 0 && !c->connecting)
        tx_append(c, p, n);
    uv_timer_stop(&c->timer);
    c->timer_at = UINT64_MAX;
    if (c->outer && error == 0 && !c->connecting) {
        c->is_outer_eof = true;
        uv_timer_start(&c->timer, on_linger_timer, TUNNEL_LINGER_MS, 0);
        outer_kick(c);
    } else if (c->outer) {
        struct zt_h2conn *outer = c->outer;
        c->outer = NULL;
        zt_h2conn_detach(outer, c->outer_sid);
        zt_h2conn_flush(outer);
    }
    tunnel_release(c);
}

static void tun_on_response(void *sud, int status)
{
    struct zt_h2conn *c = sud;
    if (c->closed)
        return;
    if (status != 200) {
        /* The gateway refused the outer tunnel: nothing was sent inside. */
        zt_h2_session_close(c->s, status == 401 ? ZT_E_DENIED : ZT_E_UPSTREAM);
        return;
    }
    c->connecting = false;
    zt_h2conn_flush(c); /* the ClientHello */
}

/* Ciphertext for the session. The session takes all of it at once, so the
 * outer stream's window reopens right away; the inner streams' own windows
 * bound what their owners buffer. */
static void tun_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct zt_h2conn *c = sud;
    if (c->outer)
        zt_h2conn_consume(c->outer, c->outer_sid, len);
    if (c->closed)
        return; /* lingering: the peer's last bytes are of no use */
    zt_h2_session_feed(c->s, data, len);
    if (!c->closed)
        zt_h2conn_flush(c);
}

static void tun_on_end(void *sud)
{
    struct zt_h2conn *c = sud;
    if (c->closed)
        return;
    zt_h2_session_feed(c->s, NULL, 0); /* the peer closed its side */
    if (!c->closed)
        zt_h2conn_flush(c);
}

static void tun_on_close(void *sud, int error)
{
    struct zt_h2conn *c = sud;
    c->outer = NULL;
    if (!c->closed) {
        zt_h2_session_close(c->s, error ? error : ZT_E_CLOSED);
        return; /* on_tunnel_closed released it */
    }
    tunnel_release(c);
}

/* The outer stream's body: tx, then END_STREAM after a clean close. Only
 * copies: the session is not run from inside the outer connection's
 * engine; when tx ran low the timer takes more at the next loop turn. */
static ssize_t tun_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct zt_h2conn *c = sud;
    size_t avail = c->tx_len - c->tx_off, n = avail < len ? avail : len;
    memcpy(buf, c->tx + c->tx_off, n);
    c->tx_off += n;
    if (c->tx_off == c->tx_len)
        c->tx_off = c->tx_len = 0;
    if (c->tx_len == 0 && c->is_outer_eof) {
        *eof = true;
        return (ssize_t)n;
    }
    if (!c->closed && c->is_tx_capped)
        update_timer(c);
    return n > 0 ? (ssize_t)n : -EAGAIN;
}

static const struct zt_h2_stream_ops tunnel_stream_ops = {
    .on_response = tun_on_response,
    .on_data = tun_on_data,
    .on_end = tun_on_end,
    .on_close = tun_on_close,
    .read = tun_read,
    .is_body_on_resume = true,
};

struct zt_h2conn *zt_h2conn_new_tunneled(struct zt_h2conn *outer, const char *authority,
                                         const char *const *headers, size_t n_headers, SSL_CTX *ctx,
                                         const struct zt_h2_settings *settings,
                                         const struct zt_h2conn_ops *ops, void *ud)
{
    if (!ctx || outer->is_tunneled)
        return NULL;
    struct zt_h2conn *c = zt_xcalloc(1, sizeof(*c));
    c->loop = outer->loop;
    c->fd = -1;
    c->ops = ops;
    c->ud = ud;
    c->is_tunneled = true;
    c->connecting = true; /* until the outer CONNECT is answered */
    c->timer_at = UINT64_MAX;
    int32_t sid = zt_h2conn_connect(outer, authority, headers, n_headers, &tunnel_stream_ops, c);
    if (sid < 0) {
        free(c);
        return NULL;
    }
    c->outer = outer;
    c->outer_sid = sid;
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 1;
    /* The handshake timeout covers the wait for the outer CONNECT's answer. */
    c->s = zt_h2_session_new(ctx, ZT_H2_CLIENT, settings, &session_ops, c, uv_now(c->loop));
    update_timer(c);
    return c;
}

/* ---- public API ---- */

struct zt_h2conn *zt_h2conn_new(uv_loop_t *loop, int fd, SSL_CTX *ctx, enum zt_h2conn_role role,
                                const struct zt_h2_settings *settings,
                                const struct zt_h2conn_ops *ops, void *ud)
{
    if (!ctx) {
        close(fd);
        return NULL;
    }
    struct zt_h2conn *c = zt_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->fd = fd;
    c->ops = ops;
    c->ud = ud;
    c->connecting = role == ZT_H2_CLIENT;
    c->timer_at = UINT64_MAX;
    if (uv_poll_init(loop, &c->poll, fd) < 0) {
        close(fd);
        free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    c->poll.data = c->timer.data = c;
    c->handles_open = 2;
    c->s = zt_h2_session_new(ctx, role, settings, &session_ops, c, uv_now(loop));
    /* Never handshake before returning: callbacks must not run inside new().
     * The handshake timeout covers the TCP connect too. */
    update_poll(c);
    update_timer(c);
    return c;
}

enum zt_h2conn_state zt_h2conn_state(const struct zt_h2conn *c)
{
    switch (zt_h2_session_state(c->s)) {
    case ZT_H2_SESS_HANDSHAKE:
        return c->connecting ? ZT_H2_ST_TCP_CONNECTING : ZT_H2_ST_TLS_HANDSHAKE;
    case ZT_H2_SESS_OPEN:
        return ZT_H2_ST_OPEN;
    case ZT_H2_SESS_DRAINING:
        return ZT_H2_ST_DRAINING;
    default:
        return ZT_H2_ST_CLOSED;
    }
}

SSL *zt_h2conn_ssl(struct zt_h2conn *c)
{
    return zt_h2_session_ssl(c->s);
}

int zt_h2conn_fd(const struct zt_h2conn *c)
{
    return c->fd;
}

unsigned zt_h2conn_streams(const struct zt_h2conn *c)
{
    return zt_h2_session_streams(c->s);
}

uint64_t zt_h2conn_streams_opened(const struct zt_h2conn *c)
{
    return zt_h2_session_streams_opened(c->s);
}

uint32_t zt_h2conn_peer_max_streams(const struct zt_h2conn *c)
{
    return zt_h2_session_peer_max_streams(c->s);
}

int32_t zt_h2conn_submit(struct zt_h2conn *c, const char *const *headers, size_t n_headers,
                         const struct zt_h2_stream_ops *ops, void *sud)
{
    return zt_h2_session_submit(c->s, headers, n_headers, ops, sud);
}

int32_t zt_h2conn_connect(struct zt_h2conn *c, const char *authority, const char *const *headers,
                          size_t n_headers, const struct zt_h2_stream_ops *ops, void *sud)
{
    return zt_h2_session_connect(c->s, authority, headers, n_headers, ops, sud);
}

int zt_h2conn_set_trailers(struct zt_h2conn *c, int32_t stream_id, const char *const *headers,
                           size_t n_headers)
{
    return zt_h2_session_set_trailers(c->s, stream_id, headers, n_headers);
}

void zt_h2conn_attach(struct zt_h2conn *c, int32_t stream_id, const struct zt_h2_stream_ops *ops,
                      void *sud)
{
    zt_h2_session_attach(c->s, stream_id, ops, sud);
}

int zt_h2conn_respond(struct zt_h2conn *c, int32_t stream_id, int status,
                      const char *const *headers, size_t n_headers)
{
    return zt_h2_session_respond(c->s, stream_id, status, headers, n_headers);
}

void zt_h2conn_consume(struct zt_h2conn *c, int32_t stream_id, size_t n)
{
    zt_h2_session_consume(c->s, stream_id, n);
}

void zt_h2conn_resume(struct zt_h2conn *c, int32_t stream_id)
{
    zt_h2_session_resume(c->s, stream_id);
}

void zt_h2conn_reset(struct zt_h2conn *c, int32_t stream_id)
{
    zt_h2_session_reset(c->s, stream_id);
}

void zt_h2conn_detach(struct zt_h2conn *c, int32_t stream_id)
{
    zt_h2_session_detach(c->s, stream_id);
}

void zt_h2conn_close_when_idle(struct zt_h2conn *c)
{
    zt_h2_session_close_when_idle(c->s);
    zt_h2conn_flush(c);
}

void zt_h2conn_shutdown(struct zt_h2conn *c)
{
    zt_h2_session_shutdown(c->s);
    zt_h2conn_flush(c);
}
