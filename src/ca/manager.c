/* Identity manager. An entry per identity holds the current certificate and
 * at most one request; the scheduler below decides which queued request
 * goes to the issuer next. Everything shared is guarded by one mutex, which
 * is never held while the issuer runs, while a wait callback runs, or
 * while TLS contexts are built. Timers belong to the control loop: other
 * threads hand it work through three queues (new entries, answered
 * requests, dead entries) and a uv_async. */
#include "ca/manager.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/list.h"
#include "base/log.h"
#include "loop/worker.h"
#include "tls/crl.h"
#include "tls/ctx.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_BUCKETS 256
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 150000
/* Never renew sooner than this after scheduling: a certificate whose
 * half-life already passed (short CA lifetime, clock jump) must not spin. */
#define REFRESH_MIN_MS 1000

enum req_state {
    REQ_NONE,    /* no request */
    REQ_QUEUED,  /* in a priority queue */
    REQ_RUNNING, /* with the issuer */
};

struct entry;

/* One caller waiting for an entry's request. Worker waits are heap objects
 * with two references (the caller's, dropped by cancel or consumed by the
 * callback; the manager's, dropped once the delivery task ran or was not
 * needed). Blocking waits (worker NULL) live on the caller's stack. */
struct zt_ca_wait {
    atomic_uint refs;
    struct zt_ca_mgr *mgr;
    struct entry *e; /* (mu) set while in e->waiters */
    /* (mu) In e->waiters; once answered, in on_mint_done's list of waits
     * to deliver, which it alone holds. */
    struct zt_list_node link;
    struct zt_worker *worker;
    zt_ca_wait_cb *cb;
    void *ud;
    bool is_cancelled;            /* worker thread only */
    bool is_done;                 /* (mu) blocking waits */
    int rc;                       /* result, set before delivery */
    struct zt_ca_identity *ident; /* result, one reference */
};

/* One identity. Fields marked (mu) are guarded by mgr->mu; the rest belong
 * to the control loop thread. An entry is referenced by the table, by its
 * request while one is queued or running, and briefly by acquire calls; it
 * goes to the dead queue when the last reference is dropped, and the
 * control loop frees it (closing its timer first). */
struct entry {
    struct entry *next;                  /* (mu) hash chain */
    struct entry *pnext, *cnext, *dnext; /* (mu) new / answered / dead queues */
    struct entry *qprev, *qnext;         /* (mu) priority queue or start list */
    struct zt_ca_mgr *mgr;
    struct zt_spiffe_id id;
    struct zt_ca_identity *cur;   /* (mu) current identity, one reference; NULL before the first */
    unsigned refs;                /* (mu) */
    enum req_state req;           /* (mu) */
    enum zt_ca_priority prio;     /* (mu) of the queued or running request */
    struct zt_list waiters;       /* (mu) of zt_ca_wait, oldest first */
    int last_rc;                  /* (mu) outcome of the last request */
    bool in_pending;              /* (mu) */
    bool in_answered;             /* (mu) */
    bool is_dead;                 /* (mu) no longer in the table */
    enum zt_ca_entry_state state; /* written by the control loop with mu held */
    bool has_timer;
    bool has_issued; /* a certificate was installed before: the next one is a renewal */
    /* (mu) The last request failed and its backoff has not run out: live
     * connections get that error instead of asking the CA again. */
    bool in_backoff;
    uv_timer_t timer;
    uint64_t backoff_ms;
};

struct prio_queue {
    struct entry *head, *tail;
};

struct zt_ca_mgr {
    uv_loop_t *loop;
    uv_async_t async; /* other threads poke the control loop through this */
    pthread_mutex_t mu;
    pthread_cond_t cv;                          /* blocking acquires */
    struct entry *buckets[N_BUCKETS];           /* (mu) */
    struct entry *pending;                      /* (mu) new entries without a timer */
    struct entry *answered;                     /* (mu) requests answered, timer to set */
    struct entry *dead;                         /* (mu) entries to free */
    size_t count;                               /* (mu) */
    struct prio_queue queues[ZT_CA_PRIO_COUNT]; /* (mu) */
    unsigned inflight;                          /* (mu) */
    unsigned queued;                            /* (mu) */
    zt_ca_async_mint_fn *mint;
    void *mint_arg;
    zt_ca_mint_fn *sync_mint; /* synchronous issuer behind sync_adapter */
    void *sync_arg;
    unsigned ttl;
    atomic_uint_fast64_t generation;
    uint32_t rng; /* jitter; control loop only */
    unsigned closing;
    bool is_freeing;
    struct zt_tls_crl *crl; /* CRL_PATH, set before use; NULL = none */
};

const char *zt_ca_entry_state_str(enum zt_ca_entry_state st)
{
    switch (st) {
    case ZT_CA_ENTRY_ST_NEW:
        return "new";
    case ZT_CA_ENTRY_ST_SCHEDULED:
        return "scheduled";
    case ZT_CA_ENTRY_ST_RETRY:
        return "retry";
    case ZT_CA_ENTRY_ST_CLOSING:
        return "closing";
    }
    return "unknown";
}

const char *zt_ca_priority_str(enum zt_ca_priority prio)
{
    switch (prio) {
    case ZT_CA_PRIO_RENEW:
        return "renew";
    case ZT_CA_PRIO_PREFETCH:
        return "prefetch";
    case ZT_CA_PRIO_LIVE:
        return "live";
    }
    return "unknown";
}

/* Control loop, mu held. */
static void set_state(struct entry *e, enum zt_ca_entry_state st)
{
    if (e->state != st)
        ZT_DEBUG("ca", "identity %s/%s: %s -> %s", e->id.ns, e->id.sa,
                 zt_ca_entry_state_str(e->state), zt_ca_entry_state_str(st));
    e->state = st;
}

struct zt_ca_identity *zt_ca_identity_ref(struct zt_ca_identity *ident)
{
    if (ident != NULL)
        atomic_fetch_add_explicit(&ident->refs, 1, memory_order_relaxed);
    return ident;
}

void zt_ca_identity_unref(struct zt_ca_identity *ident)
{
    if (ident == NULL || atomic_fetch_sub_explicit(&ident->refs, 1, memory_order_acq_rel) != 1)
        return;
    SSL_CTX_free(ident->server_ctx);
    SSL_CTX_free(ident->client_ctx);
    zt_tls_cert_unref(ident->cert);
    free(ident);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_valid(const struct zt_ca_identity *ident)
{
    return ident != NULL && time(NULL) < ident->cert->not_after;
}

static unsigned hash_id(const struct zt_spiffe_id *id)
{
    /* FNV-1a over the three parts, separated so "a"+"bc" != "ab"+"c". */
    uint32_t h = 2166136261u;
    const char *parts[3] = {id->trust_domain, id->ns, id->sa};
    for (int i = 0; i < 3; i++) {
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++)
            h = (h ^ *p) * 16777619u;
        h = (h ^ '/') * 16777619u;
    }
    return h % N_BUCKETS;
}

static void wake(struct zt_ca_mgr *mgr)
{
    uv_async_send(&mgr->async);
}

/* ---- entries (mu) ---- */

static struct entry *find(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id)
{
    for (struct entry *e = mgr->buckets[hash_id(id)]; e != NULL; e = e->next)
        if (zt_spiffe_eq(&e->id, id))
            return e;
    return NULL;
}

/* A new entry in the table, queued for its timer. */
static struct entry *entry_create(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id)
{
    struct entry *e = zt_xcalloc(1, sizeof(*e));
    e->mgr = mgr;
    e->id = *id;
    zt_list_init(&e->waiters);
    e->state = ZT_CA_ENTRY_ST_NEW;
    e->refs = 1; /* the table */
    unsigned b = hash_id(id);
    e->next = mgr->buckets[b];
    mgr->buckets[b] = e;
    e->pnext = mgr->pending;
    mgr->pending = e;
    e->in_pending = true;
    mgr->count++;
    return e;
}

static void entry_unref(struct zt_ca_mgr *mgr, struct entry *e)
{
    if (--e->refs > 0)
        return;
    e->dnext = mgr->dead;
    mgr->dead = e;
}

/* Unlinks e from the table. */
static void unlink_entry(struct zt_ca_mgr *mgr, struct entry *e)
{
    struct entry **pp = &mgr->buckets[hash_id(&e->id)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    e->next = NULL;
    e->is_dead = true;
    mgr->count--;
}

/* ---- scheduler (mu) ---- */

static void queue_push(struct zt_ca_mgr *mgr, struct entry *e)
{
    struct prio_queue *q = &mgr->queues[e->prio];
    e->qnext = NULL;
    e->qprev = q->tail;
    if (q->tail)
        q->tail->qnext = e;
    else
        q->head = e;
    q->tail = e;
    mgr->queued++;
}

static void queue_remove(struct zt_ca_mgr *mgr, struct entry *e)
{
    struct prio_queue *q = &mgr->queues[e->prio];
    if (e->qprev)
        e->qprev->qnext = e->qnext;
    else
        q->head = e->qnext;
    if (e->qnext)
        e->qnext->qprev = e->qprev;
    else
        q->tail = e->qprev;
    e->qprev = e->qnext = NULL;
    mgr->queued--;
}

/* Queues a request for e at prio, or raises the one already queued. A
 * running request is left alone: its answer is coming. */
static void request(struct zt_ca_mgr *mgr, struct entry *e, enum zt_ca_priority prio)
{
    if (e->req == REQ_NONE) {
        e->req = REQ_QUEUED;
        e->prio = prio;
        e->refs++; /* the request's */
        queue_push(mgr, e);
    } else if (e->req == REQ_QUEUED && prio > e->prio) {
        queue_remove(mgr, e);
        e->prio = prio;
        queue_push(mgr, e);
    }
}

/* Moves requests from the queues to the issuer while the window has room;
 * returns them as a list (linked through qnext) for start_all. */
static struct entry *pump(struct zt_ca_mgr *mgr)
{
    struct entry *head = NULL, **tail = &head;
    while (mgr->inflight < ZT_CA_MGR_MAX_INFLIGHT && mgr->queued > 0) {
        struct entry *e = NULL;
        for (int p = ZT_CA_PRIO_COUNT - 1; p >= 0 && e == NULL; p--)
            e = mgr->queues[p].head;
        queue_remove(mgr, e);
        e->req = REQ_RUNNING;
        mgr->inflight++;
        *tail = e;
        tail = &e->qnext;
    }
    return head;
}

static void on_mint_done(void *ud, int rc, struct zt_tls_cert *cert);

/* Hands each listed request to the issuer. Without the mutex. */
static void start_all(struct zt_ca_mgr *mgr, struct entry *list)
{
    while (list != NULL) {
        struct entry *e = list;
        list = e->qnext; /* read first: an inline answer may requeue e */
        e->qnext = NULL;
        /* e->prio does not change while the request runs. */
        int rc = mgr->mint(mgr->mint_arg, &e->id, mgr->ttl, e->prio, on_mint_done, e);
        if (rc < 0)
            on_mint_done(e, rc, NULL);
    }
}

/* ---- answers ---- */

/* Wraps a certificate with both TLS contexts. Takes the cert reference. */
static int make_identity(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id,
                         struct zt_tls_cert *cert, struct zt_ca_identity **out)
{
    struct zt_ca_identity *ident = zt_xcalloc(1, sizeof(*ident));
    atomic_init(&ident->refs, 1);
    ident->id = *id;
    ident->cert = cert;
    ident->server_ctx = zt_tls_server_ctx_new(cert);
    ident->client_ctx = zt_tls_client_ctx_new(cert);
    if (ident->server_ctx == NULL || ident->client_ctx == NULL ||
        (mgr->crl != NULL && (zt_tls_ctx_set_crl(ident->server_ctx, mgr->crl) != 0 ||
                              zt_tls_ctx_set_crl(ident->client_ctx, mgr->crl) != 0))) {
        zt_ca_identity_unref(ident);
        *out = NULL;
        return ZT_E_TLS;
    }
    ident->generation = atomic_fetch_add(&mgr->generation, 1) + 1;
    *out = ident;
    return 0;
}

static void wait_release(struct zt_ca_wait *w, unsigned n)
{
    if (atomic_fetch_sub_explicit(&w->refs, n, memory_order_acq_rel) != n)
        return;
    zt_ca_identity_unref(w->ident);
    free(w);
}

/* Worker thread: the answer to a wait. */
static void task_deliver(void *arg)
{
    struct zt_ca_wait *w = arg;
    struct zt_ca_identity *ident = w->ident;
    w->ident = NULL;
    if (w->is_cancelled) {
        zt_ca_identity_unref(ident);
        wait_release(w, 1); /* ours; the caller's went with the cancel */
        return;
    }
    w->cb(w->ud, ident, w->rc);
    wait_release(w, 2); /* the caller's, consumed by the callback, and ours */
}

static void wait_link(struct entry *e, struct zt_ca_wait *w)
{
    w->e = e;
    zt_list_insert_tail(&e->waiters, &w->link);
}

static void wait_unlink(struct zt_ca_wait *w)
{
    w->e = NULL;
    zt_list_remove(&w->link);
}

/* The first wait of l, NULL if none. */
static struct zt_ca_wait *first_wait(const struct zt_list *l)
{
    return zt_list_entry(zt_list_first(l), struct zt_ca_wait, link);
}

/* The issuer answered e's request. Any thread. */
static void on_mint_done(void *ud, int rc, struct zt_tls_cert *cert)
{
    struct entry *e = ud;
    struct zt_ca_mgr *mgr = e->mgr;
    struct zt_ca_identity *fresh = NULL, *old = NULL;
    struct zt_list deliver; /* answered worker waits */
    zt_list_init(&deliver);

    if (rc == 0)
        rc = make_identity(mgr, &e->id, cert, &fresh);
    else
        zt_tls_cert_unref(cert);

    pthread_mutex_lock(&mgr->mu);
    mgr->inflight--;
    e->req = REQ_NONE;
    e->last_rc = rc;
    e->in_backoff = rc < 0;
    if (fresh != NULL && !e->is_dead) {
        old = e->cur;
        e->cur = zt_ca_identity_ref(fresh);
    }
    /* What waiters get: the new identity, else a still valid old one. */
    struct zt_ca_identity *give = fresh != NULL ? fresh : is_valid(e->cur) ? e->cur : NULL;
    int give_rc = give != NULL ? 0 : rc < 0 ? rc : ZT_E_TLS;
    struct zt_ca_wait *w;
    while ((w = first_wait(&e->waiters)) != NULL) {
        wait_unlink(w);
        w->rc = give_rc;
        w->ident = zt_ca_identity_ref(give);
        if (w->worker == NULL)
            w->is_done = true;
        else
            zt_list_insert_tail(&deliver, &w->link);
    }
    if (!e->is_dead && !e->in_answered) {
        e->in_answered = true;
        e->cnext = mgr->answered;
        mgr->answered = e;
    }
    entry_unref(mgr, e); /* the request's */
    struct entry *next = pump(mgr);
    pthread_cond_broadcast(&mgr->cv);
    pthread_mutex_unlock(&mgr->mu);

    /* Each wait leaves the list before it is posted: its worker may free it
     * at once. */
    while ((w = first_wait(&deliver)) != NULL) {
        zt_list_remove(&w->link);
        if (zt_worker_post(w->worker, task_deliver, w) < 0)
            wait_release(w, 1); /* worker stopping: its owner cancels */
    }
    zt_ca_identity_unref(old);
    zt_ca_identity_unref(fresh);
    start_all(mgr, next);
    wake(mgr);
}

/* The synchronous issuer behind the asynchronous interface: answers at once
 * in the calling thread. */
static int sync_adapter(void *arg, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                        enum zt_ca_priority prio, zt_ca_mint_done_fn *done, void *done_ud)
{
    struct zt_ca_mgr *mgr = arg;
    struct zt_tls_cert *cert = NULL;
    int rc = mgr->sync_mint(mgr->sync_arg, id, ttl_seconds, &cert);
    done(done_ud, rc, rc == 0 ? cert : NULL);
    return 0;
}

static int localca_mint(void *arg, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                        struct zt_tls_cert **out)
{
    return zt_tls_localca_mint(arg, id, ttl_seconds, out);
}

/* ---- control loop: timers ---- */

static void on_refresh(uv_timer_t *timer);

/* Arms the timer for the half-life of `cert`. Control loop, mu held. */
static void schedule_refresh(struct entry *e, const struct zt_tls_cert *cert)
{
    int64_t delay = (int64_t)zt_tls_cert_refresh_at(cert) * 1000 - now_ms();
    if (delay < REFRESH_MIN_MS)
        delay = REFRESH_MIN_MS;
    e->backoff_ms = 0;
    set_state(e, ZT_CA_ENTRY_ST_SCHEDULED);
    uv_timer_start(&e->timer, on_refresh, (uint64_t)delay, 0);
}

/* Arms the timer for the next try after a failure (old may be NULL).
 * Control loop, mu held. */
static uint64_t schedule_retry(struct entry *e, const struct zt_tls_cert *old)
{
    struct zt_ca_mgr *mgr = e->mgr;
    e->backoff_ms = e->backoff_ms == 0 ? BACKOFF_FIRST_MS : e->backoff_ms * 2;
    if (e->backoff_ms > BACKOFF_MAX_MS)
        e->backoff_ms = BACKOFF_MAX_MS;
    /* xorshift32: jitter needs spread, not secrecy. */
    mgr->rng ^= mgr->rng << 13;
    mgr->rng ^= mgr->rng >> 17;
    mgr->rng ^= mgr->rng << 5;
    /* factor in [0.8, 1.2] */
    uint64_t delay = e->backoff_ms * (800 + mgr->rng % 401) / 1000;
    /* While the old cert is valid, try again before it runs out. */
    int64_t left = old != NULL ? (int64_t)old->not_after * 1000 - now_ms() : 0;
    if (left > 0 && (uint64_t)left < delay)
        delay = (uint64_t)left;
    set_state(e, ZT_CA_ENTRY_ST_RETRY);
    uv_timer_start(&e->timer, on_refresh, delay, 0);
    return delay;
}

/* Half-life or backoff reached: queue a request; never waits for it. */
static void on_refresh(uv_timer_t *timer)
{
    struct entry *e = timer->data;
    struct zt_ca_mgr *mgr = e->mgr;
    struct entry *next = NULL;

    pthread_mutex_lock(&mgr->mu);
    if (!e->is_dead) {
        e->in_backoff = false;
        /* Without any certificate yet, this is a prefetch being retried. */
        request(mgr, e, e->cur != NULL ? ZT_CA_PRIO_RENEW : ZT_CA_PRIO_PREFETCH);
        next = pump(mgr);
    }
    pthread_mutex_unlock(&mgr->mu);
    start_all(mgr, next);
}

/* Control loop, mu held: the timer follows the request's outcome. */
static void after_answer(struct entry *e)
{
    char name[ZT_SPIFFE_ID_MAX + 1];
    if (!e->has_timer)
        return;
    zt_spiffe_format(&e->id, name, sizeof(name));
    if (e->last_rc == 0) {
        if (e->has_issued)
            ZT_INFO("ca", "renewed %s (generation %llu)", name,
                    (unsigned long long)e->cur->generation);
        e->has_issued = true;
        schedule_refresh(e, e->cur->cert);
        return;
    }
    uint64_t delay = schedule_retry(e, e->cur != NULL ? e->cur->cert : NULL);
    ZT_WARN("ca", "certificate for %s failed: %s; retry in %llu ms (current cert %s)", name,
            zt_strerror(e->last_rc), (unsigned long long)delay,
            e->cur == NULL     ? "none"
            : is_valid(e->cur) ? "still valid"
                               : "expired");
}

static void maybe_finish_free(struct zt_ca_mgr *mgr)
{
    if (mgr->is_freeing && mgr->closing == 0) {
        pthread_cond_destroy(&mgr->cv);
        pthread_mutex_destroy(&mgr->mu);
        zt_tls_crl_unref(mgr->crl);
        free(mgr);
    }
}

static void entry_destroy(struct entry *e)
{
    zt_ca_identity_unref(e->cur);
    free(e);
}

static void on_entry_closed(uv_handle_t *h)
{
    struct entry *e = h->data;
    struct zt_ca_mgr *mgr = e->mgr;
    entry_destroy(e);
    mgr->closing--;
    maybe_finish_free(mgr);
}

/* Arms timers of new entries, sets them after answers, frees dead
 * entries. Control loop. The mutex is held throughout: libuv calls here
 * never call back synchronously, and close callbacks run later without it.
 * The three queues are taken together, and handled in this order, so an
 * entry that was answered and died since the last drain is seen dead. */
static void drain(struct zt_ca_mgr *mgr)
{
    pthread_mutex_lock(&mgr->mu);
    struct entry *p = mgr->pending, *a = mgr->answered, *d = mgr->dead;
    mgr->pending = mgr->answered = mgr->dead = NULL;
    while (p != NULL) {
        struct entry *e = p;
        p = e->pnext;
        e->pnext = NULL;
        e->in_pending = false;
        if (e->is_dead)
            continue;
        uv_timer_init(mgr->loop, &e->timer);
        e->timer.data = e;
        e->has_timer = true;
    }
    while (a != NULL) {
        struct entry *e = a;
        a = e->cnext;
        e->cnext = NULL;
        e->in_answered = false;
        if (!e->is_dead)
            after_answer(e);
    }
    while (d != NULL) {
        struct entry *e = d;
        d = e->dnext;
        e->dnext = NULL;
        if (!e->has_timer) {
            entry_destroy(e);
            continue;
        }
        set_state(e, ZT_CA_ENTRY_ST_CLOSING);
        mgr->closing++;
        uv_close((uv_handle_t *)&e->timer, on_entry_closed);
    }
    pthread_mutex_unlock(&mgr->mu);
}

static void on_async(uv_async_t *async)
{
    drain(async->data);
}

static void on_async_closed(uv_handle_t *h)
{
    struct zt_ca_mgr *mgr = h->data;
    mgr->closing--;
    maybe_finish_free(mgr);
}

/* ---- public API ---- */

struct zt_ca_mgr *zt_ca_mgr_new_async(uv_loop_t *control_loop, zt_ca_async_mint_fn *mint, void *arg,
                                      unsigned ttl_seconds)
{
    struct zt_ca_mgr *mgr;
    if (ttl_seconds == 0 || mint == NULL)
        return NULL;
    mgr = zt_xcalloc(1, sizeof(*mgr));
    mgr->loop = control_loop;
    mgr->mint = mint;
    mgr->mint_arg = arg;
    mgr->ttl = ttl_seconds;
    atomic_init(&mgr->generation, 0);
    mgr->rng = (uint32_t)now_ms() ^ (uint32_t)(uintptr_t)mgr;
    if (mgr->rng == 0)
        mgr->rng = 1;
    pthread_mutex_init(&mgr->mu, NULL);
    pthread_cond_init(&mgr->cv, NULL);
    if (uv_async_init(control_loop, &mgr->async, on_async) != 0) {
        pthread_cond_destroy(&mgr->cv);
        pthread_mutex_destroy(&mgr->mu);
        free(mgr);
        return NULL;
    }
    mgr->async.data = mgr;
    return mgr;
}

struct zt_ca_mgr *zt_ca_mgr_new_custom(uv_loop_t *control_loop, zt_ca_mint_fn *mint, void *arg,
                                       unsigned ttl_seconds)
{
    if (mint == NULL)
        return NULL;
    struct zt_ca_mgr *mgr = zt_ca_mgr_new_async(control_loop, sync_adapter, NULL, ttl_seconds);
    if (mgr != NULL) {
        mgr->mint_arg = mgr;
        mgr->sync_mint = mint;
        mgr->sync_arg = arg;
    }
    return mgr;
}

struct zt_ca_mgr *zt_ca_mgr_new(uv_loop_t *control_loop, struct zt_tls_localca *ca,
                                unsigned ttl_seconds)
{
    if (ca == NULL)
        return NULL;
    return zt_ca_mgr_new_custom(control_loop, localca_mint, ca, ttl_seconds);
}

/* The common start of both acquires: returns the cached identity in *out,
 * or the entry (with a reference held) after queueing a LIVE request and
 * starting what the window allows. Takes and releases mu. */
static struct entry *acquire_begin(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id,
                                   struct zt_ca_identity **out)
{
    struct entry *next = NULL, *e;
    bool created = false;

    *out = NULL;
    pthread_mutex_lock(&mgr->mu);
    e = find(mgr, id);
    if (e != NULL && is_valid(e->cur)) {
        *out = zt_ca_identity_ref(e->cur);
        pthread_mutex_unlock(&mgr->mu);
        return NULL;
    }
    if (e == NULL) {
        e = entry_create(mgr, id);
        created = true;
    }
    e->refs++; /* ours, until acquire_end */
    /* During a failure's backoff the caller gets that failure
     * (acquire_check): a connection must not bring the retry forward, or
     * every new connection would be another request to a failing CA. */
    if (!e->in_backoff)
        request(mgr, e, ZT_CA_PRIO_LIVE);
    next = pump(mgr);
    pthread_mutex_unlock(&mgr->mu);
    if (created)
        wake(mgr);
    start_all(mgr, next);
    return e;
}

/* mu held: an answer is available (0 / error), or -EAGAIN to wait. */
static int acquire_check(struct entry *e, struct zt_ca_identity **out)
{
    if (is_valid(e->cur)) {
        *out = zt_ca_identity_ref(e->cur);
        return 0;
    }
    if (e->req != REQ_NONE)
        return -EAGAIN;
    return e->last_rc < 0 ? e->last_rc : ZT_E_TLS;
}

int zt_ca_mgr_acquire(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id,
                      struct zt_ca_identity **out)
{
    struct entry *e = acquire_begin(mgr, id, out);
    if (e == NULL)
        return 0;
    pthread_mutex_lock(&mgr->mu);
    int rc = acquire_check(e, out);
    if (rc == -EAGAIN) {
        struct zt_ca_wait w = {.mgr = mgr};
        wait_link(e, &w);
        while (!w.is_done)
            pthread_cond_wait(&mgr->cv, &mgr->mu);
        rc = w.rc;
        *out = w.ident;
    }
    entry_unref(mgr, e);
    pthread_mutex_unlock(&mgr->mu);
    wake(mgr);
    return rc;
}

int zt_ca_mgr_acquire_async(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id,
                            struct zt_worker *worker, zt_ca_wait_cb *cb, void *ud,
                            struct zt_ca_identity **out, struct zt_ca_wait **wait)
{
    *wait = NULL;
    struct entry *e = acquire_begin(mgr, id, out);
    if (e == NULL)
        return 0;
    pthread_mutex_lock(&mgr->mu);
    int rc = acquire_check(e, out);
    if (rc == -EAGAIN) {
        struct zt_ca_wait *w = zt_xcalloc(1, sizeof(*w));
        atomic_init(&w->refs, 2);
        w->mgr = mgr;
        w->worker = worker;
        w->cb = cb;
        w->ud = ud;
        wait_link(e, w);
        *wait = w;
    }
    entry_unref(mgr, e);
    pthread_mutex_unlock(&mgr->mu);
    wake(mgr);
    return rc;
}

void zt_ca_wait_cancel(struct zt_ca_wait *w)
{
    if (w == NULL)
        return;
    struct zt_ca_mgr *mgr = w->mgr;
    unsigned drop = 1;
    pthread_mutex_lock(&mgr->mu);
    if (w->e != NULL) {
        wait_unlink(w);
        drop = 2; /* no delivery was posted: ours too */
    }
    pthread_mutex_unlock(&mgr->mu);
    /* A delivery already posted runs on this same thread later: it sees
     * the flag and only drops its reference. */
    w->is_cancelled = true;
    wait_release(w, drop);
}

void zt_ca_mgr_prefetch(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id)
{
    struct entry *next = NULL, *e;
    bool created = false;

    pthread_mutex_lock(&mgr->mu);
    e = find(mgr, id);
    if (e == NULL) {
        e = entry_create(mgr, id);
        created = true;
    }
    /* A valid certificate renews on its own timer; a failed one waits for
     * its backoff. Only a new entry (or one whose renewal is still queued
     * at a lower priority) needs a request here. */
    if (created || e->req == REQ_QUEUED)
        request(mgr, e, ZT_CA_PRIO_PREFETCH);
    next = pump(mgr);
    pthread_mutex_unlock(&mgr->mu);
    if (created)
        wake(mgr);
    start_all(mgr, next);
}

void zt_ca_mgr_retry_now(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id)
{
    struct entry *next = NULL, *e;

    pthread_mutex_lock(&mgr->mu);
    e = find(mgr, id);
    if (e != NULL && e->in_backoff && !is_valid(e->cur)) {
        /* The retry timer stays armed: when it fires, it joins this request
         * or, after its answer, is re-armed by after_answer. */
        e->in_backoff = false;
        request(mgr, e, ZT_CA_PRIO_PREFETCH);
        next = pump(mgr);
    }
    pthread_mutex_unlock(&mgr->mu);
    start_all(mgr, next);
}

/* mu held: drops e from the table; a queued request nobody waits for is
 * withdrawn. */
static void forget_entry(struct zt_ca_mgr *mgr, struct entry *e)
{
    unlink_entry(mgr, e);
    if (e->req == REQ_QUEUED && zt_list_empty(&e->waiters)) {
        queue_remove(mgr, e);
        e->req = REQ_NONE;
        entry_unref(mgr, e); /* the request's */
    }
    entry_unref(mgr, e); /* the table's */
}

void zt_ca_mgr_forget(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id)
{
    pthread_mutex_lock(&mgr->mu);
    struct entry *e = find(mgr, id);
    if (e != NULL)
        forget_entry(mgr, e);
    pthread_mutex_unlock(&mgr->mu);
    if (e != NULL)
        wake(mgr);
}

size_t zt_ca_mgr_count(struct zt_ca_mgr *mgr)
{
    pthread_mutex_lock(&mgr->mu);
    size_t n = mgr->count;
    pthread_mutex_unlock(&mgr->mu);
    return n;
}

void zt_ca_mgr_requests(struct zt_ca_mgr *mgr, unsigned *inflight, unsigned *queued)
{
    pthread_mutex_lock(&mgr->mu);
    *inflight = mgr->inflight;
    *queued = mgr->queued;
    pthread_mutex_unlock(&mgr->mu);
}

void zt_ca_mgr_foreach(struct zt_ca_mgr *mgr,
                       void (*fn)(void *ud, const struct zt_ca_identity *ident,
                                  enum zt_ca_entry_state st),
                       void *ud)
{
    pthread_mutex_lock(&mgr->mu);
    for (int b = 0; b < N_BUCKETS; b++)
        for (struct entry *e = mgr->buckets[b]; e != NULL; e = e->next)
            if (e->cur != NULL)
                fn(ud, e->cur, e->state);
    pthread_mutex_unlock(&mgr->mu);
}

void zt_ca_mgr_foreach_pending(struct zt_ca_mgr *mgr,
                               void (*fn)(void *ud, const struct zt_spiffe_id *id, int last_rc),
                               void *ud)
{
    pthread_mutex_lock(&mgr->mu);
    for (int b = 0; b < N_BUCKETS; b++)
        for (struct entry *e = mgr->buckets[b]; e != NULL; e = e->next)
            if (e->cur == NULL)
                fn(ud, &e->id, e->last_rc);
    pthread_mutex_unlock(&mgr->mu);
}

void zt_ca_mgr_set_crl(struct zt_ca_mgr *mgr, struct zt_tls_crl *crl)
{
    zt_tls_crl_unref(mgr->crl);
    mgr->crl = zt_tls_crl_ref(crl);
}

void zt_ca_mgr_free(struct zt_ca_mgr *mgr)
{
    if (mgr == NULL)
        return;
    pthread_mutex_lock(&mgr->mu);
    if (mgr->inflight > 0)
        ZT_ERROR("ca", "identity manager freed with %u request(s) still with the issuer",
                 mgr->inflight);
    /* Queued requests are dropped with whoever waits for them: the workers
     * are gone by now. */
    for (int p = 0; p < ZT_CA_PRIO_COUNT; p++) {
        while (mgr->queues[p].head != NULL) {
            struct entry *e = mgr->queues[p].head;
            queue_remove(mgr, e);
            e->req = REQ_NONE;
            struct zt_ca_wait *w;
            while ((w = first_wait(&e->waiters)) != NULL) {
                wait_unlink(w);
                wait_release(w, 1);
            }
            entry_unref(mgr, e);
        }
    }
    for (int b = 0; b < N_BUCKETS; b++)
        while (mgr->buckets[b] != NULL)
            forget_entry(mgr, mgr->buckets[b]);
    pthread_mutex_unlock(&mgr->mu);
    drain(mgr);
    mgr->is_freeing = true;
    mgr->closing++;
    uv_close((uv_handle_t *)&mgr->async, on_async_closed);
}
