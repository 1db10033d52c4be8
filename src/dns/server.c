/* The DNS proxy's sockets: see server.h. */
#include "dns/server.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/list.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A TCP client that stops reading its replies is closed once this many
 * bytes of them wait. */
#define TCP_WRITE_QUEUE_MAX (256 * 1024)

struct zt_dns_server;

struct udp_ls {
    struct zt_dns_server *s;
    uv_udp_t h;
};

struct tcp_ls {
    struct zt_dns_server *s;
    uv_tcp_t h;
};

struct tcp_client {
    struct zt_dns_server *s;
    struct zt_list_node link;
    uv_tcp_t h;
    uv_timer_t idle;
    uint8_t *buf; /* at most 2 + ZT_DNS_MSG_MAX bytes */
    size_t len, cap;
    int handles;
    bool closing;
};

struct fwd;

/* One try of a forwarded query: a socket to one upstream. Freed when its
 * handle has closed; f is NULL once the query has moved on. */
struct up {
    struct fwd *f;
    struct zt_dns_server *s;
    bool tcp;
    union {
        uv_udp_t u;
        uv_tcp_t t;
    } h;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t *wbuf;
    uint8_t *rbuf; /* TCP: the reply as it arrives */
    size_t rlen, rcap;
};

/* A query sent upstream, until an upstream answers or every try failed. */
struct fwd {
    struct zt_dns_server *s;
    struct zt_list_node link;
    bool client_tcp;
    struct tcp_client *tc;        /* TCP client; NULL once it has gone */
    struct udp_ls *ul;            /* UDP: the listener it came on ... */
    struct sockaddr_storage peer; /* ... and from where */
    uint16_t client_id;
    size_t max_reply;
    uint8_t *query; /* as sent upstream: the client's with an id of ours */
    size_t qlen;
    struct zt_dns_query q;
    unsigned try;
    struct up *up;
    uv_timer_t timer;
    uint64_t start;
};

struct zt_dns_server {
    uv_loop_t *loop;
    const struct zt_dns_opts *opts;
    const struct zt_dns_upstreams *ups;
    const struct zt_dns_server_ops *ops;
    void *ud;
    struct udp_ls udp[2];
    struct tcp_ls tcp[2];
    size_t n_udp, n_tcp;
    struct zt_list clients; /* of tcp_client */
    struct zt_list fwds;    /* of fwd */
    unsigned n_clients, n_fwds;
    int handles;
    bool closing;
    void (*closed)(void *arg);
    void *closed_arg;
};

static void handle_gone(struct zt_dns_server *s)
{
    if (--s->handles == 0 && s->closing) {
        void (*closed)(void *) = s->closed;
        void *arg = s->closed_arg;
        free(s);
        if (closed)
            closed(arg);
    }
}

static void observe(struct zt_dns_server *s, const struct zt_dns_query *q, bool tcp, bool forwarded,
                    bool failed, uint64_t us)
{
    if (s->closing || !s->ops->observe)
        return;
    struct zt_dns_event ev = {.q = q,
                              .client = s->ops->client(s->ud),
                              .tcp = tcp,
                              .forwarded = forwarded,
                              .upstream_failed = failed,
                              .upstream_us = us};
    s->ops->observe(s->ud, &ev);
}

/* ---- replies to clients ---- */

struct tcp_wr {
    uv_write_t req;
    uint8_t data[];
};

static void client_close(struct tcp_client *c);

static void on_client_write(uv_write_t *req, int status)
{
    free(req);
}

static void send_tcp(struct tcp_client *c, const uint8_t *msg, size_t len)
{
    if (c->closing || len > ZT_DNS_MSG_MAX)
        return;
    if (c->h.write_queue_size > TCP_WRITE_QUEUE_MAX) {
        client_close(c); /* a client that does not read what it asked for */
        return;
    }
    struct tcp_wr *w = zt_xmalloc(sizeof(*w) + 2 + len);
    w->data[0] = (uint8_t)(len >> 8);
    w->data[1] = (uint8_t)len;
    memcpy(w->data + 2, msg, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)(2 + len));
    if (uv_write(&w->req, (uv_stream_t *)&c->h, &b, 1, on_client_write) < 0) {
        free(w);
        client_close(c);
        return;
    }
    uv_timer_again(&c->idle);
}

static void send_udp(struct udp_ls *l, const struct sockaddr *to, const uint8_t *msg, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)msg, (unsigned)len);
    /* A reply that cannot go now is lost, as UDP replies may be; the
     * client asks again. */
    (void)uv_udp_try_send(&l->h, &b, 1, to);
}

/* ---- forwarding ---- */

static void start_try(struct fwd *f, bool tcp);

static void reply_fwd(struct fwd *f, const uint8_t *msg, size_t len)
{
    if (f->client_tcp) {
        if (f->tc)
            send_tcp(f->tc, msg, len);
    } else {
        send_udp(f->ul, (const struct sockaddr *)&f->peer, msg, len);
    }
}

static void on_up_closed(uv_handle_t *h)
{
    struct up *u = h->data;
    struct zt_dns_server *s = u->s;
    free(u->wbuf);
    free(u->rbuf);
    free(u);
    handle_gone(s);
}

static void up_drop(struct fwd *f)
{
    struct up *u = f->up;
    if (!u)
        return;
    f->up = NULL;
    u->f = NULL;
    u->h.u.data = u;
    uv_close((uv_handle_t *)&u->h, on_up_closed);
}

static void on_fwd_timer_closed(uv_handle_t *h)
{
    struct fwd *f = h->data;
    struct zt_dns_server *s = f->s;
    free(f->query);
    free(f);
    handle_gone(s);
}

static void fwd_free(struct fwd *f)
{
    up_drop(f);
    zt_list_remove(&f->link);
    f->s->n_fwds--;
    uv_close((uv_handle_t *)&f->timer, on_fwd_timer_closed);
}

/* Counted before the client has its reply: whoever reads the metrics
 * after an answer sees it counted. */
static void fwd_finish(struct fwd *f, const uint8_t *reply, size_t len)
{
    struct zt_dns_server *s = f->s;
    uint64_t us = (uv_hrtime() - f->start) / 1000;
    uint8_t *err = NULL;
    if (!reply) {
        /* Every upstream failed: SERVFAIL, as a resolver says it. */
        err = zt_dns_error_reply(f->query, f->qlen, 2, &len);
        if (err)
            zt_dns_set_id(err, f->client_id);
        reply = err;
        f->q.result = "upstream failed";
    }
    observe(s, &f->q, f->client_tcp, true, err != NULL || !reply, us);
    if (reply)
        reply_fwd(f, reply, len);
    free(err);
    fwd_free(f);
}

static void next_try(struct fwd *f)
{
    const struct zt_dns_upstreams *ups = f->s->ups;
    up_drop(f);
    if (++f->try >= ups->n * ups->attempts) {
        fwd_finish(f, NULL, 0);
        return;
    }
    start_try(f, false);
}

/* An upstream's reply: delivered if it answers the query; a truncated one
 * is asked again over TCP when the client came over TCP (a UDP client gets
 * it as it is and asks us over TCP itself). */
static void got_reply(struct fwd *f, const uint8_t *msg, size_t len, bool over_tcp)
{
    uint8_t *out = NULL;
    size_t olen = 0;
    bool tc = false;
    if (zt_dns_upstream_reply(f->query, f->qlen, msg, len, f->client_id, f->max_reply, &out, &olen,
                              &tc) < 0)
        return; /* not the answer to our query: wait for it */
    if (tc && !over_tcp && f->client_tcp) {
        free(out);
        up_drop(f);
        start_try(f, true);
        return;
    }
    fwd_finish(f, out, olen);
    free(out);
}

static void on_fwd_timeout(uv_timer_t *t)
{
    next_try(t->data);
}

static void on_up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
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

static void on_up_udp(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                      unsigned flags)
{
    struct up *u = h->data;
    if (!u->f || n <= 0 || (flags & UV_UDP_PARTIAL))
        return;
    got_reply(u->f, u->rbuf, (size_t)n, false);
}

static void on_up_tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct up *u = st->data;
    struct fwd *f = u->f;
    if (!f)
        return;
    if (n < 0) {
        next_try(f);
        return;
    }
    u->rlen += (size_t)n;
    if (u->rlen < 2)
        return;
    size_t mlen = (size_t)u->rbuf[0] << 8 | u->rbuf[1];
    if (u->rlen < 2 + mlen) {
        if (u->rlen == u->rcap && u->rcap == 2 + ZT_DNS_MSG_MAX)
            next_try(f); /* cannot happen: a length prefix caps the message */
        return;
    }
    got_reply(f, u->rbuf + 2, mlen, true);
    /* A reply that was not ours leaves f waiting for its timer. */
}

static void on_up_written(uv_write_t *req, int status)
{
    struct up *u = req->data;
    if (u->f && status < 0)
        next_try(u->f);
}

static void on_up_connected(uv_connect_t *req, int status)
{
    struct up *u = req->data;
    struct fwd *f = u->f;
    if (!f)
        return;
    if (status < 0) {
        next_try(f);
        return;
    }
    u->wbuf = zt_xmalloc(2 + f->qlen);
    u->wbuf[0] = (uint8_t)(f->qlen >> 8);
    u->wbuf[1] = (uint8_t)f->qlen;
    memcpy(u->wbuf + 2, f->query, f->qlen);
    uv_buf_t b = uv_buf_init((char *)u->wbuf, (unsigned)(2 + f->qlen));
    u->wreq.data = u;
    if (uv_write(&u->wreq, (uv_stream_t *)&u->h.t, &b, 1, on_up_written) < 0 ||
        uv_read_start((uv_stream_t *)&u->h.t, on_up_alloc, on_up_tcp_read) < 0)
        next_try(f);
}

/* Sends f to upstream f->try % n, over TCP or UDP; a failure to even
 * send moves on to the next try at once. */
static void start_try(struct fwd *f, bool tcp)
{
    struct zt_dns_server *s = f->s;
    const struct sockaddr *to = (const struct sockaddr *)&s->ups->addr[f->try % s->ups->n];
    int fd = s->ops->socket(s->ud, to->sa_family, tcp ? SOCK_STREAM : SOCK_DGRAM);
    if (fd < 0) {
        next_try(f);
        return;
    }
    struct up *u = zt_xcalloc(1, sizeof(*u));
    u->f = f;
    u->s = s;
    u->tcp = tcp;
    int rc;
    if (tcp) {
        uv_tcp_init(s->loop, &u->h.t);
        rc = uv_tcp_open(&u->h.t, fd);
    } else {
        uv_udp_init(s->loop, &u->h.u);
        rc = uv_udp_open(&u->h.u, fd);
    }
    u->h.u.data = u;
    s->handles++;
    f->up = u;
    if (rc < 0) {
        close(fd);
        next_try(f);
        return;
    }
    uv_timer_start(&f->timer, on_fwd_timeout, s->ups->timeout_ms, 0);
    if (tcp) {
        u->creq.data = u;
        if (uv_tcp_connect(&u->creq, &u->h.t, to, on_up_connected) < 0)
            next_try(f);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)f->query, (unsigned)f->qlen);
    if (uv_udp_connect(&u->h.u, to) < 0 || uv_udp_recv_start(&u->h.u, on_up_alloc, on_up_udp) < 0 ||
        uv_udp_try_send(&u->h.u, &b, 1, NULL) < 0)
        next_try(f);
}

static void forward(struct zt_dns_server *s, const uint8_t *msg, size_t len,
                    const struct zt_dns_query *q, struct tcp_client *tc, struct udp_ls *ul,
                    const struct sockaddr *peer)
{
    if (s->ups->n == 0 || s->n_fwds >= ZT_DNS_FORWARDS) {
        size_t elen = 0;
        uint8_t *err = zt_dns_error_reply(msg, len, 2, &elen);
        struct zt_dns_query fq = *q;
        fq.result = s->ups->n ? "too many queries upstream" : "no upstream resolver";
        observe(s, &fq, tc != NULL, true, true, 0);
        if (err && tc)
            send_tcp(tc, err, elen);
        else if (err)
            send_udp(ul, peer, err, elen);
        free(err);
        return;
    }
    struct fwd *f = zt_xcalloc(1, sizeof(*f));
    f->s = s;
    f->client_tcp = tc != NULL;
    f->tc = tc;
    f->ul = ul;
    if (peer)
        memcpy(&f->peer, peer,
               peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
    f->client_id = q->id;
    f->max_reply = tc ? ZT_DNS_MSG_MAX : q->max_udp;
    f->q = *q;
    f->query = zt_xmalloc(len);
    memcpy(f->query, msg, len);
    f->qlen = len;
    zt_dns_set_id(f->query, (uint16_t)arc4random());
    f->start = uv_hrtime();
    uv_timer_init(s->loop, &f->timer);
    f->timer.data = f;
    s->handles++;
    zt_list_insert_tail(&s->fwds, &f->link);
    s->n_fwds++;
    start_try(f, false);
}

/* ---- queries ---- */

static void handle_query(struct zt_dns_server *s, const uint8_t *msg, size_t len,
                         struct tcp_client *tc, struct udp_ls *ul, const struct sockaddr *peer)
{
    struct zt_dns_query q;
    uint8_t *out = NULL;
    size_t olen = 0;
    const struct zt_workload *client = s->ops->client(s->ud);
    enum zt_dns_verdict v = zt_dns_answer(s->ops->state(s->ud), client, s->opts, msg, len,
                                          tc == NULL, arc4random(), &out, &olen, &q);
    switch (v) {
    case ZT_DNS_DROP:
        break;
    case ZT_DNS_ANSWER:
        observe(s, &q, tc != NULL, false, false, 0);
        if (tc)
            send_tcp(tc, out, olen);
        else
            send_udp(ul, peer, out, olen);
        break;
    case ZT_DNS_FORWARD:
        forward(s, msg, len, &q, tc, ul, peer);
        break;
    }
    free(out);
}

/* A query is read into a buffer of the thread's pool, given back at once:
 * no memory per pod, no copy. */
static void on_udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    *buf = uv_buf_init((char *)zt_buf_pool_take(), ZT_DNS_UDP_QUERY_MAX);
}

static void on_udp_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                        unsigned flags)
{
    struct udp_ls *l = h->data;
    if (n <= 0 || !from || l->s->closing) {
        /* nothing */
    } else if (flags & UV_UDP_PARTIAL) {
        /* Larger than any query needs to be: FORMERR for its header. */
        size_t elen = 0;
        uint8_t *err = zt_dns_error_reply((uint8_t *)buf->base, 12, 1, &elen);
        if (err)
            send_udp(l, from, err, elen);
        free(err);
    } else {
        handle_query(l->s, (const uint8_t *)buf->base, (size_t)n, NULL, l, from);
    }
    if (buf->base)
        zt_buf_pool_give((uint8_t *)buf->base);
}

/* ---- TCP clients ---- */

static void on_client_handle_closed(uv_handle_t *h)
{
    struct tcp_client *c = h->data;
    struct zt_dns_server *s = c->s;
    if (--c->handles == 0) {
        free(c->buf);
        free(c);
    }
    handle_gone(s);
}

static void client_close(struct tcp_client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    struct zt_dns_server *s = c->s;
    zt_list_remove(&c->link);
    s->n_clients--;
    for (struct zt_list_node *n = zt_list_first(&s->fwds); n; n = zt_list_next(&s->fwds, n)) {
        struct fwd *f = zt_list_entry(n, struct fwd, link);
        if (f->tc == c)
            f->tc = NULL;
    }
    uv_close((uv_handle_t *)&c->h, on_client_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_client_handle_closed);
}

static void on_client_idle(uv_timer_t *t)
{
    client_close(t->data);
}

static void on_client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct tcp_client *c = h->data;
    size_t want = 2 + ZT_DNS_MSG_MAX;
    if (c->len == c->cap && c->cap < want) {
        c->cap = c->cap ? (c->cap * 4 > want ? want : c->cap * 4) : 512;
        c->buf = zt_xrealloc(c->buf, c->cap);
    }
    *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_client_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct tcp_client *c = st->data;
    if (n < 0) {
        client_close(c);
        return;
    }
    c->len += (size_t)n;
    size_t off = 0;
    while (!c->closing && c->len - off >= 2) {
        size_t mlen = (size_t)c->buf[off] << 8 | c->buf[off + 1];
        if (mlen == 0) {
            client_close(c); /* nothing there to answer */
            return;
        }
        if (c->len - off < 2 + mlen)
            break;
        uv_timer_again(&c->idle);
        handle_query(c->s, c->buf + off + 2, mlen, c, NULL, NULL);
        off += 2 + mlen;
    }
    if (c->closing)
        return;
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
}

static void on_tcp_conn(uv_stream_t *ls, int status)
{
    struct tcp_ls *l = ls->data;
    struct zt_dns_server *s = l->s;
    if (status < 0 || s->closing)
        return;
    struct tcp_client *c = zt_xcalloc(1, sizeof(*c));
    c->s = s;
    uv_tcp_init(s->loop, &c->h);
    uv_timer_init(s->loop, &c->idle);
    c->h.data = c;
    c->idle.data = c;
    c->handles = 2;
    s->handles += 2;
    zt_list_insert_tail(&s->clients, &c->link);
    s->n_clients++;
    if (uv_accept(ls, (uv_stream_t *)&c->h) < 0 || s->n_clients > ZT_DNS_TCP_CLIENTS) {
        client_close(c);
        return;
    }
    uv_timer_start(&c->idle, on_client_idle, ZT_DNS_TCP_IDLE_MS, ZT_DNS_TCP_IDLE_MS);
    if (uv_read_start((uv_stream_t *)&c->h, on_client_alloc, on_client_read) < 0)
        client_close(c);
}

/* ---- the server ---- */

struct zt_dns_server *zt_dns_server_new(uv_loop_t *loop, const int *udp_fds, size_t n_udp,
                                        const int *tcp_fds, size_t n_tcp,
                                        const struct zt_dns_opts *opts,
                                        const struct zt_dns_upstreams *ups,
                                        const struct zt_dns_server_ops *ops, void *ud, int *err)
{
    struct zt_dns_server *s = zt_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->opts = opts;
    s->ups = ups;
    s->ops = ops;
    s->ud = ud;
    zt_list_init(&s->clients);
    zt_list_init(&s->fwds);
    int rc = 0;
    for (size_t i = 0; i < n_udp && i < 2; i++) {
        struct udp_ls *l = &s->udp[s->n_udp];
        l->s = s;
        uv_udp_init(loop, &l->h);
        l->h.data = l;
        s->n_udp++;
        s->handles++;
        if (!rc && ((rc = uv_udp_open(&l->h, udp_fds[i])) < 0 ||
                    (rc = uv_udp_recv_start(&l->h, on_udp_alloc, on_udp_recv)) < 0))
            close(udp_fds[i]);
        else if (rc)
            close(udp_fds[i]);
    }
    for (size_t i = 0; i < n_tcp && i < 2; i++) {
        struct tcp_ls *l = &s->tcp[s->n_tcp];
        l->s = s;
        uv_tcp_init(loop, &l->h);
        l->h.data = l;
        s->n_tcp++;
        s->handles++;
        if (!rc && ((rc = uv_tcp_open(&l->h, tcp_fds[i])) < 0 ||
                    (rc = uv_listen((uv_stream_t *)&l->h, 128, on_tcp_conn)) < 0))
            close(tcp_fds[i]);
        else if (rc)
            close(tcp_fds[i]);
    }
    if (rc < 0) {
        *err = rc;
        zt_dns_server_close(s, NULL, NULL);
        return NULL;
    }
    return s;
}

static void on_udp_ls_closed(uv_handle_t *h)
{
    handle_gone(((struct udp_ls *)h->data)->s);
}

static void on_tcp_ls_closed(uv_handle_t *h)
{
    handle_gone(((struct tcp_ls *)h->data)->s);
}

void zt_dns_server_close(struct zt_dns_server *s, void (*closed)(void *arg), void *arg)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    s->closed = closed;
    s->closed_arg = arg;
    s->handles++; /* held while closing everything below */
    for (size_t i = 0; i < s->n_udp; i++)
        uv_close((uv_handle_t *)&s->udp[i].h, on_udp_ls_closed);
    for (size_t i = 0; i < s->n_tcp; i++)
        uv_close((uv_handle_t *)&s->tcp[i].h, on_tcp_ls_closed);
    while (!zt_list_empty(&s->clients))
        client_close(zt_list_entry(zt_list_first(&s->clients), struct tcp_client, link));
    while (!zt_list_empty(&s->fwds))
        fwd_free(zt_list_entry(zt_list_first(&s->fwds), struct fwd, link));
    handle_gone(s);
}
