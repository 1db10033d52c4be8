#include "hbone/pool.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct pool_conn {
    struct zt_hbone_pool *pool;
    struct zt_hbone_key key;
    struct zt_h2conn *h2;
    bool ready;     /* handshake done and identity verified */
    bool reusable;  /* not draining */
    bool wants_ctx; /* waiting for its TLS context; h2 is NULL */
    struct zt_hbone_ctx_req creq;
    uint64_t last_used;
    struct zt_list waiters;   /* of zt_hbone_waiter, newest first */
    struct zt_list_node link; /* in the pool's conns */
};

struct zt_hbone_pool {
    uv_loop_t *loop;
    const struct zt_hbone_pool_ops *ops;
    void *ud;
    struct zt_h2_settings settings;
    unsigned max_streams;
    uint64_t idle_ms;
    uv_timer_t sweep;
    struct zt_list conns; /* of pool_conn, newest first */
    unsigned nconns;
    bool freeing;
};

static bool key_eq(const struct zt_hbone_key *a, const struct zt_hbone_key *b)
{
    return strcmp(a->src_id, b->src_id) == 0 && strcmp(a->dst_ids, b->dst_ids) == 0 &&
           memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0 &&
           memcmp(&a->src, &b->src, sizeof(a->src)) == 0;
}

static void waiter_unlink(struct zt_hbone_waiter *w)
{
    if (!w->pc)
        return;
    zt_list_remove(&w->link);
    w->pc = NULL;
}

/* The first waiter of l, NULL if none. */
static struct zt_hbone_waiter *first_waiter(const struct zt_list *l)
{
    return zt_list_entry(zt_list_first(l), struct zt_hbone_waiter, link);
}

/* Ends every stream waiting on pc with err (each callback once). */
static void fail_waiters(struct pool_conn *pc, int err)
{
    struct zt_hbone_waiter *w;
    while ((w = first_waiter(&pc->waiters)) != NULL) {
        waiter_unlink(w);
        w->cb(w, NULL, err);
    }
}

static void waiter_add(struct pool_conn *pc, struct zt_hbone_waiter *w)
{
    w->pc = pc;
    zt_list_insert_head(&pc->waiters, &w->link);
}

static unsigned capacity(const struct pool_conn *pc)
{
    uint32_t peer = zt_h2conn_peer_max_streams(pc->h2);
    unsigned cap = pc->pool->max_streams;
    return peer < cap ? peer : cap;
}

static bool has_room(const struct pool_conn *pc)
{
    return pc->ready && pc->reusable && zt_h2conn_state(pc->h2) == ZT_H2_ST_OPEN &&
           zt_h2conn_streams(pc->h2) < capacity(pc);
}

static void conn_unlink(struct pool_conn *pc)
{
    struct zt_hbone_pool *p = pc->pool;
    zt_list_remove(&pc->link);
    p->nconns--;
}

static void on_sweep_closed(uv_handle_t *h)
{
    free(h->data);
}

static void maybe_finish_free(struct zt_hbone_pool *p)
{
    if (p->freeing && p->nconns == 0 && !uv_is_closing((uv_handle_t *)&p->sweep))
        uv_close((uv_handle_t *)&p->sweep, on_sweep_closed);
}

/* ---- h2 connection callbacks ---- */

static int on_ready(struct zt_h2conn *h2, void *ud)
{
    struct pool_conn *pc = ud;
    struct zt_hbone_pool *p = pc->pool;
    int rc = p->ops->verify(p->ud, zt_h2conn_ssl(h2), &pc->key);
    if (rc < 0)
        return rc;
    pc->ready = true;
    /* Hand the connection to as many waiters as it has room for; the rest
     * ask the pool again, which dials the next connection for the key. A
     * callback may close h2, which frees pc at once (on_closed): the key is
     * copied first, and pc is not read once h2 is closed. */
    const struct zt_hbone_key key = pc->key;
    struct zt_list overflow; /* unlinked waiters, through their link */
    zt_list_init(&overflow);
    unsigned granted = 0, cap = capacity(pc);
    struct zt_hbone_waiter *w;
    while ((w = first_waiter(&pc->waiters)) != NULL) {
        waiter_unlink(w);
        if (granted < cap) {
            granted++;
            w->cb(w, h2, 0);
            if (zt_h2conn_state(h2) == ZT_H2_ST_CLOSED)
                break;
        } else {
            zt_list_insert_head(&overflow, &w->link);
        }
    }
    /* Each leaves the list before it asks again: the pool may link it. */
    while ((w = first_waiter(&overflow)) != NULL) {
        zt_list_remove(&w->link);
        struct zt_h2conn *now = NULL;
        int err = zt_hbone_pool_get(p, &key, w, &now);
        if (err < 0 || now)
            w->cb(w, now, err);
    }
    return 0;
}

static void on_draining(struct zt_h2conn *h2, void *ud)
{
    struct pool_conn *pc = ud;
    pc->reusable = false;
}

static void on_closed(struct zt_h2conn *h2, void *ud, int error)
{
    struct pool_conn *pc = ud;
    struct zt_hbone_pool *p = pc->pool;
    conn_unlink(pc);
    int err = error ? error : ZT_E_CLOSED;
    fail_waiters(pc, err);
    free(pc);
    maybe_finish_free(p);
}

static const struct zt_h2conn_ops conn_ops = {
    .on_ready = on_ready,
    .on_draining = on_draining,
    .on_closed = on_closed,
};

/* ---- pool ---- */

static void conn_link(struct pool_conn *pc)
{
    struct zt_hbone_pool *p = pc->pool;
    zt_list_insert_head(&p->conns, &pc->link);
    p->nconns++;
}

/* Dials pc's key and starts the TLS + HTTP/2 session with ctx. */
static int conn_start(struct pool_conn *pc, SSL_CTX *ctx)
{
    struct zt_hbone_pool *p = pc->pool;
    int fd = p->ops->dial(p->ud, &pc->key);
    if (fd < 0)
        return fd;
    pc->h2 = zt_h2conn_new(p->loop, fd, ctx, ZT_H2_CLIENT, &p->settings, &conn_ops, pc);
    return pc->h2 ? 0 : -EBADF;
}

static void on_sweep(uv_timer_t *t)
{
    struct zt_hbone_pool *p = t->data;
    uint64_t now = uv_now(p->loop);
    for (struct zt_list_node *n = zt_list_first(&p->conns), *next; n; n = next) {
        next = zt_list_next(&p->conns, n);
        struct pool_conn *pc = zt_list_entry(n, struct pool_conn, link);
        /* Idle too long, or set up after a drain began: GOAWAY, and close
         * once its streams end. */
        if (pc->ready && zt_h2conn_state(pc->h2) == ZT_H2_ST_OPEN &&
            ((zt_h2conn_streams(pc->h2) == 0 && now - pc->last_used >= p->idle_ms) ||
             !pc->reusable))
            zt_h2conn_shutdown(pc->h2);
    }
}

struct zt_hbone_pool *zt_hbone_pool_new(uv_loop_t *loop, const struct zt_hbone_pool_ops *ops,
                                        void *ud, const struct zt_h2_settings *settings,
                                        unsigned max_streams, uint64_t idle_ms)
{
    struct zt_hbone_pool *p = zt_xcalloc(1, sizeof(*p));
    zt_list_init(&p->conns);
    p->loop = loop;
    p->ops = ops;
    p->ud = ud;
    p->settings = *settings;
    p->max_streams = max_streams ? max_streams : 100;
    p->idle_ms = idle_ms ? idle_ms : 300000;
    uv_timer_init(loop, &p->sweep);
    p->sweep.data = p;
    uint64_t every = p->idle_ms / 4 < 1000 ? 1000 : p->idle_ms / 4;
    uv_timer_start(&p->sweep, on_sweep, every, every);
    uv_unref((uv_handle_t *)&p->sweep);
    return p;
}

int zt_hbone_pool_get(struct zt_hbone_pool *p, const struct zt_hbone_key *key,
                      struct zt_hbone_waiter *w, struct zt_h2conn **ready)
{
    *ready = NULL;
    if (p->freeing)
        return ZT_E_CLOSED;
    struct pool_conn *pending = NULL;
    for (struct zt_list_node *n = zt_list_first(&p->conns); n; n = zt_list_next(&p->conns, n)) {
        struct pool_conn *pc = zt_list_entry(n, struct pool_conn, link);
        if (!key_eq(&pc->key, key))
            continue;
        if (has_room(pc)) {
            pc->last_used = uv_now(p->loop);
            *ready = pc->h2;
            return 0;
        }
        if (!pc->ready)
            pending = pc;
    }
    if (pending) {
        waiter_add(pending, w);
        return 0;
    }
    struct pool_conn *pc = zt_xcalloc(1, sizeof(*pc));
    zt_list_init(&pc->waiters);
    pc->pool = p;
    pc->key = *key;
    pc->reusable = true;
    pc->last_used = uv_now(p->loop);
    SSL_CTX *ctx = NULL;
    int rc = p->ops->client_ctx(p->ud, key, &pc->creq, &ctx);
    if (rc == -EAGAIN) {
        pc->wants_ctx = true;
        conn_link(pc);
        waiter_add(pc, w);
        return 0;
    }
    if (rc < 0) {
        free(pc);
        return rc;
    }
    conn_link(pc);
    waiter_add(pc, w);
    rc = conn_start(pc, ctx);
    if (rc < 0) {
        waiter_unlink(w);
        conn_unlink(pc);
        free(pc);
    }
    return rc;
}

void zt_hbone_pool_ctx_ready(struct zt_hbone_ctx_req *req, SSL_CTX *ctx, int err)
{
    struct pool_conn *pc = (struct pool_conn *)((char *)req - offsetof(struct pool_conn, creq));
    struct zt_hbone_pool *p = pc->pool;
    pc->wants_ctx = false;
    if (err == 0 && zt_list_empty(&pc->waiters))
        err = ZT_E_CLOSED; /* nobody waits any more: do not dial */
    else if (err == 0 && !ctx)
        err = ZT_E_IDENTITY;
    if (err == 0)
        err = conn_start(pc, ctx);
    if (err == 0)
        return;
    conn_unlink(pc);
    fail_waiters(pc, err);
    free(pc);
    maybe_finish_free(p);
}

void zt_hbone_pool_drain(struct zt_hbone_pool *p)
{
    for (struct zt_list_node *n = zt_list_first(&p->conns), *next; n; n = next) {
        next = zt_list_next(&p->conns, n); /* an idle connection is freed inside shutdown */
        struct pool_conn *pc = zt_list_entry(n, struct pool_conn, link);
        pc->reusable = false;
        if (pc->ready)
            zt_h2conn_shutdown(pc->h2);
    }
}

void zt_hbone_pool_foreach(struct zt_hbone_pool *p, void (*fn)(void *ud, struct zt_h2conn *h2),
                           void *ud)
{
    for (struct zt_list_node *n = zt_list_first(&p->conns); n; n = zt_list_next(&p->conns, n)) {
        struct pool_conn *pc = zt_list_entry(n, struct pool_conn, link);
        if (pc->h2 != NULL)
            fn(ud, pc->h2);
    }
}

void zt_hbone_pool_cancel(struct zt_hbone_waiter *w)
{
    waiter_unlink(w);
}

unsigned zt_hbone_pool_size(const struct zt_hbone_pool *p)
{
    return p->nconns;
}

void zt_hbone_pool_free(struct zt_hbone_pool *p)
{
    if (!p)
        return;
    p->freeing = true;
    for (struct zt_list_node *n = zt_list_first(&p->conns), *next; n; n = next) {
        next = zt_list_next(&p->conns, n);
        struct pool_conn *pc = zt_list_entry(n, struct pool_conn, link);
        if (pc->wants_ctx) {
            /* No context will come now: end its requests here. */
            if (p->ops->ctx_cancel)
                p->ops->ctx_cancel(p->ud, &pc->creq);
            conn_unlink(pc);
            fail_waiters(pc, ZT_E_CLOSED);
            free(pc);
        } else {
            zt_h2conn_close(pc->h2, ZT_E_CLOSED);
        }
    }
    maybe_finish_free(p);
}
