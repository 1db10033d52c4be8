/* The DNS proxy's sockets: see server.h. */
#include "dns/server.h"

#include "dns/exchange.h"

#include "base/random.h"
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

/* A client's query forwarded upstream, until the exchange ends. */
struct fwd {
    struct zt_dns_server *s;
    struct zt_list_node link;
    bool client_tcp;
    struct tcp_client *tc;        /* TCP client; NULL once it has gone */
    struct udp_ls *ul;            /* UDP: the listener it came on ... */
    struct sockaddr_storage peer; /* ... and from where */
    uint16_t client_id;
    size_t max_reply;
    struct zt_dns_query q;
    uint8_t *query; /* as the client sent it: a SERVFAIL repeats its question */
    size_t qlen;
    struct zt_dns_exchange *x;
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

static void reply_fwd(struct fwd *f, const uint8_t *msg, size_t len)
{
    if (f->client_tcp) {
        if (f->tc)
            send_tcp(f->tc, msg, len);
    } else {
        send_udp(f->ul, (const struct sockaddr *)&f->peer, msg, len);
    }
}

static void fwd_free(struct fwd *f)
{
    zt_list_remove(&f->link);
    f->s->n_fwds--;
    free(f);
}

/* The upstream's reply (NULL: none answered), rewritten for the client.
 * Counted before the client has it: whoever reads the metrics after an
 * answer sees it counted. */
static void on_exchange_done(void *ud, const uint8_t *reply, size_t len)
{
    struct fwd *f = ud;
    uint64_t us = (uv_hrtime() - f->start) / 1000;
    uint8_t *out = NULL;
    size_t olen = 0;
    if (reply)
        out = zt_dns_reply_for_client(reply, len, f->client_id, f->max_reply, &olen);
    if (!out) {
        /* Every upstream failed: SERVFAIL, as a resolver says it. */
        f->q.result = "upstream failed";
        out = zt_dns_error_reply(f->query, f->qlen, 2, &olen);
    }
    observe(f->s, &f->q, f->client_tcp, true, !reply, us);
    if (out)
        reply_fwd(f, out, olen);
    free(out);
    free(f->query);
    fwd_free(f);
}

static int fwd_socket(void *ud, int family, int type)
{
    struct zt_dns_server *s = ud;
    return s->ops->socket(s->ud, family, type);
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
    f->start = uv_hrtime();
    zt_list_insert_tail(&s->fwds, &f->link);
    s->n_fwds++;
    /* A TCP client wants the whole answer: a truncated one is asked again
     * over TCP. A UDP client gets it truncated and asks us over TCP. */
    f->x = zt_dns_exchange_start(s->loop, s->ups, fwd_socket, s, msg, len, tc != NULL,
                                 on_exchange_done, f);
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
                                          tc == NULL, zt_random_u32(), &out, &olen, &q);
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
    while (!zt_list_empty(&s->fwds)) {
        struct fwd *f = zt_list_entry(zt_list_first(&s->fwds), struct fwd, link);
        zt_dns_exchange_cancel(f->x);
        free(f->query);
        fwd_free(f);
    }
    handle_gone(s);
}
