/* A query to the upstream resolvers: see exchange.h. */
#include "dns/exchange.h"

#include "base/random.h"
#include "base/alloc.h"
#include "base/err.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct zt_dns_exchange;

/* One try: a socket to one upstream. Freed when its handle has closed; x is
 * NULL once the exchange has moved on. */
struct up {
    struct zt_dns_exchange *x;
    bool tcp;
    union {
        uv_udp_t u;
        uv_tcp_t t;
    } h;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t *wbuf;
    uint8_t *rbuf; /* UDP: one datagram; TCP: the reply as it arrives */
    size_t rlen, rcap;
};

struct zt_dns_exchange {
    uv_loop_t *loop;
    const struct zt_dns_upstreams *ups;
    zt_dns_socket_fn *sock;
    void *sock_ud;
    zt_dns_exchange_cb *cb;
    void *ud;
    uint8_t *query; /* with the exchange's own id */
    size_t qlen;
    bool tcp_on_truncation;
    bool done;
    unsigned try;
    struct up *up;
    uv_timer_t timer;
};

static void start_try(struct zt_dns_exchange *x, bool tcp);

static void on_up_closed(uv_handle_t *h)
{
    struct up *u = h->data;
    free(u->wbuf);
    free(u->rbuf);
    free(u);
}

static void up_drop(struct zt_dns_exchange *x)
{
    struct up *u = x->up;
    if (!u)
        return;
    x->up = NULL;
    u->x = NULL;
    uv_close((uv_handle_t *)&u->h, on_up_closed);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct zt_dns_exchange *x = h->data;
    free(x->query);
    free(x);
}

static void finish(struct zt_dns_exchange *x, const uint8_t *reply, size_t len)
{
    x->done = true;
    up_drop(x);
    uv_timer_stop(&x->timer);
    x->cb(x->ud, reply, len);
    uv_close((uv_handle_t *)&x->timer, on_timer_closed);
}

static void next_try(struct zt_dns_exchange *x)
{
    up_drop(x);
    if (++x->try >= x->ups->n * x->ups->attempts) {
        finish(x, NULL, 0);
        return;
    }
    start_try(x, false);
}

/* A reply that does not answer our query (another id or question) is not
 * taken: the try goes on until its timer. */
static void got_reply(struct zt_dns_exchange *x, const uint8_t *msg, size_t len, bool over_tcp)
{
    bool tc = false;
    if (zt_dns_reply_matches(x->query, x->qlen, msg, len, &tc) < 0)
        return;
    if (tc && !over_tcp && x->tcp_on_truncation) {
        up_drop(x);
        start_try(x, true);
        return;
    }
    finish(x, msg, len);
}

static void on_timeout(uv_timer_t *t)
{
    next_try(t->data);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct up *u = h->data;
    if (!u->tcp) {
        if (!u->rbuf)
            u->rbuf = zt_xmalloc(ZT_DNS_MSG_MAX);
        *buf = uv_buf_init((char *)u->rbuf, ZT_DNS_MSG_MAX);
        return;
    }
    size_t want = 2 + ZT_DNS_MSG_MAX;
    if (!u->rbuf) {
        u->rcap = 2048;
        u->rbuf = zt_xmalloc(u->rcap);
    } else if (u->rlen == u->rcap && u->rcap < want) {
        u->rcap = u->rcap * 4 > want ? want : u->rcap * 4;
        u->rbuf = zt_xrealloc(u->rbuf, u->rcap);
    }
    *buf = uv_buf_init((char *)u->rbuf + u->rlen, (unsigned)(u->rcap - u->rlen));
}

static void on_udp(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                   unsigned flags)
{
    struct up *u = h->data;
    if (!u->x || n <= 0 || (flags & UV_UDP_PARTIAL))
        return;
    got_reply(u->x, u->rbuf, (size_t)n, false);
}

static void on_tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct up *u = st->data;
    struct zt_dns_exchange *x = u->x;
    if (!x)
        return;
    if (n < 0) {
        next_try(x);
        return;
    }
    u->rlen += (size_t)n;
    if (u->rlen < 2)
        return;
    size_t mlen = (size_t)u->rbuf[0] << 8 | u->rbuf[1];
    if (u->rlen >= 2 + mlen)
        got_reply(x, u->rbuf + 2, mlen, true);
}

static void on_written(uv_write_t *req, int status)
{
    struct up *u = req->data;
    if (u->x && status < 0)
        next_try(u->x);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct up *u = req->data;
    struct zt_dns_exchange *x = u->x;
    if (!x)
        return;
    if (status < 0) {
        next_try(x);
        return;
    }
    u->wbuf = zt_xmalloc(2 + x->qlen);
    u->wbuf[0] = (uint8_t)(x->qlen >> 8);
    u->wbuf[1] = (uint8_t)x->qlen;
    memcpy(u->wbuf + 2, x->query, x->qlen);
    uv_buf_t b = uv_buf_init((char *)u->wbuf, (unsigned)(2 + x->qlen));
    u->wreq.data = u;
    if (uv_write(&u->wreq, (uv_stream_t *)&u->h.t, &b, 1, on_written) < 0 ||
        uv_read_start((uv_stream_t *)&u->h.t, on_alloc, on_tcp_read) < 0)
        next_try(x);
}

/* Sends x to upstream x->try % n, over TCP or UDP; a failure to even send
 * moves on to the next try at once. */
static void start_try(struct zt_dns_exchange *x, bool tcp)
{
    const struct sockaddr *to = (const struct sockaddr *)&x->ups->addr[x->try % x->ups->n];
    int fd = x->sock(x->sock_ud, to->sa_family, tcp ? SOCK_STREAM : SOCK_DGRAM);
    if (fd < 0) {
        next_try(x);
        return;
    }
    struct up *u = zt_xcalloc(1, sizeof(*u));
    u->x = x;
    u->tcp = tcp;
    int rc;
    if (tcp) {
        uv_tcp_init(x->loop, &u->h.t);
        rc = uv_tcp_open(&u->h.t, fd);
    } else {
        uv_udp_init(x->loop, &u->h.u);
        rc = uv_udp_open(&u->h.u, fd);
    }
    u->h.u.data = u;
    x->up = u;
    if (rc < 0) {
        close(fd);
        next_try(x);
        return;
    }
    uv_timer_start(&x->timer, on_timeout, x->ups->timeout_ms, 0);
    if (tcp) {
        u->creq.data = u;
        if (uv_tcp_connect(&u->creq, &u->h.t, to, on_connected) < 0)
            next_try(x);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)x->query, (unsigned)x->qlen);
    if (uv_udp_connect(&u->h.u, to) < 0 || uv_udp_recv_start(&u->h.u, on_alloc, on_udp) < 0 ||
        uv_udp_try_send(&u->h.u, &b, 1, NULL) < 0)
        next_try(x);
}

/* The first try starts from the loop, so that cb never runs inside
 * zt_dns_exchange_start. */
static void on_first_try(uv_timer_t *t)
{
    start_try(t->data, false);
}

struct zt_dns_exchange *zt_dns_exchange_start(uv_loop_t *loop, const struct zt_dns_upstreams *ups,
                                              zt_dns_socket_fn *sock, void *sock_ud,
                                              const uint8_t *query, size_t qlen,
                                              bool tcp_on_truncation, zt_dns_exchange_cb *cb,
                                              void *ud)
{
    struct zt_dns_exchange *x = zt_xcalloc(1, sizeof(*x));
    x->loop = loop;
    x->ups = ups;
    x->sock = sock;
    x->sock_ud = sock_ud;
    x->cb = cb;
    x->ud = ud;
    x->tcp_on_truncation = tcp_on_truncation;
    x->query = zt_xmalloc(qlen);
    memcpy(x->query, query, qlen);
    x->qlen = qlen;
    zt_dns_set_id(x->query, (uint16_t)zt_random_u32());
    uv_timer_init(loop, &x->timer);
    x->timer.data = x;
    uv_timer_start(&x->timer, on_first_try, 0, 0);
    return x;
}

void zt_dns_exchange_cancel(struct zt_dns_exchange *x)
{
    if (!x || x->done)
        return;
    x->done = true;
    up_drop(x);
    uv_close((uv_handle_t *)&x->timer, on_timer_closed);
}
