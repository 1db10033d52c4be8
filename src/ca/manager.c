#include "ca/manager.h"

#include "base/err.h"
#include "base/log.h"
#include "tls/ctx.h"

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

/* One cached identity. Fields marked (mu) are guarded by mgr->mu; the rest
 * belong to the control loop thread. */
struct entry {
    struct entry *next;  /* (mu) hash chain */
    struct entry *qnext; /* (mu) pending or dead queue */
    struct zt_ca_mgr *mgr;
    struct zt_spiffe_id id;
    struct zt_ca_identity *cur; /* (mu) current identity, one reference */
    bool in_pending;            /* (mu) queued for timer set-up */
    bool is_dead;               /* (mu) forgotten: no longer in the table */
    enum zt_ca_entry_state state;
    bool has_timer;
    uv_timer_t timer;
    uint64_t backoff_ms;
};

struct zt_ca_mgr {
    uv_loop_t *loop;
    uv_async_t async; /* workers poke the control loop through this */
    pthread_mutex_t mu;
    struct entry *buckets[N_BUCKETS]; /* (mu) */
    struct entry *pending;            /* (mu) new entries without a timer */
    struct entry *dead;               /* (mu) forgotten entries with a timer to close */
    size_t count;                     /* (mu) */
    zt_ca_mint_fn *mint;
    void *mint_arg;
    unsigned ttl;
    atomic_uint_fast64_t generation;
    uint32_t rng; /* jitter; control loop only */
    unsigned closing;
    bool is_freeing;
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

static bool is_expired(const struct zt_ca_identity *ident)
{
    return time(NULL) >= ident->cert->not_after;
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

/* (mu) */
static struct entry *find(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id)
{
    for (struct entry *e = mgr->buckets[hash_id(id)]; e != NULL; e = e->next)
        if (zt_spiffe_eq(&e->id, id))
            return e;
    return NULL;
}

/* Mints a certificate and builds both contexts. */
static int issue(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id, struct zt_ca_identity **out)
{
    struct zt_tls_cert *cert = NULL;
    struct zt_ca_identity *ident;
    int rc;

    *out = NULL;
    rc = mgr->mint(mgr->mint_arg, id, mgr->ttl, &cert);
    if (rc != 0)
        return rc;
    ident = calloc(1, sizeof(*ident));
    if (ident == NULL)
        abort();
    atomic_init(&ident->refs, 1);
    ident->id = *id;
    ident->cert = cert;
    ident->server_ctx = zt_tls_server_ctx_new(cert);
    ident->client_ctx = zt_tls_client_ctx_new(cert);
    if (ident->server_ctx == NULL || ident->client_ctx == NULL) {
        zt_ca_identity_unref(ident);
        return ZT_E_TLS;
    }
    ident->generation = atomic_fetch_add(&mgr->generation, 1) + 1;
    *out = ident;
    return 0;
}

static int localca_mint(void *arg, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                        struct zt_tls_cert **out)
{
    return zt_tls_localca_mint(arg, id, ttl_seconds, out);
}

static void on_refresh(uv_timer_t *timer);

/* Arms the timer for the half-life of `cert`. Control loop. */
static void schedule_refresh(struct entry *e, const struct zt_tls_cert *cert)
{
    int64_t delay = (int64_t)zt_tls_cert_refresh_at(cert) * 1000 - now_ms();
    if (delay < REFRESH_MIN_MS)
        delay = REFRESH_MIN_MS;
    e->backoff_ms = 0;
    set_state(e, ZT_CA_ENTRY_ST_SCHEDULED);
    uv_timer_start(&e->timer, on_refresh, (uint64_t)delay, 0);
}

/* Arms the timer for the next retry after a failed renewal. Control loop. */
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
    int64_t left = (int64_t)old->not_after * 1000 - now_ms();
    if (left > 0 && (uint64_t)left < delay)
        delay = (uint64_t)left;
    set_state(e, ZT_CA_ENTRY_ST_RETRY);
    uv_timer_start(&e->timer, on_refresh, delay, 0);
    return delay;
}

static void on_refresh(uv_timer_t *timer)
{
    struct entry *e = timer->data;
    struct zt_ca_mgr *mgr = e->mgr;
    struct zt_ca_identity *old, *fresh = NULL;
    char name[ZT_SPIFFE_ID_MAX + 1];
    int rc;

    pthread_mutex_lock(&mgr->mu);
    old = e->is_dead ? NULL : zt_ca_identity_ref(e->cur);
    pthread_mutex_unlock(&mgr->mu);
    if (old == NULL)
        return; /* forgotten; the drain closes the timer */

    zt_spiffe_format(&e->id, name, sizeof(name));
    rc = issue(mgr, &e->id, &fresh);
    if (rc != 0) {
        uint64_t delay = schedule_retry(e, old->cert);
        ZT_WARN("ca", "renewing %s failed: %s; retry in %llu ms (current cert %s)", name,
                zt_strerror(rc), (unsigned long long)delay,
                is_expired(old) ? "expired" : "still valid");
        goto out;
    }
    ZT_INFO("ca", "renewed %s (generation %llu)", name, (unsigned long long)fresh->generation);
    schedule_refresh(e, fresh->cert);
    pthread_mutex_lock(&mgr->mu);
    if (!e->is_dead) {
        struct zt_ca_identity *tmp = e->cur;
        e->cur = fresh;
        fresh = tmp; /* released below, outside the lock */
    }
    pthread_mutex_unlock(&mgr->mu);
out:
    zt_ca_identity_unref(fresh);
    zt_ca_identity_unref(old);
}

static void maybe_finish_free(struct zt_ca_mgr *mgr)
{
    if (mgr->is_freeing && mgr->closing == 0) {
        pthread_mutex_destroy(&mgr->mu);
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

/* Arms timers of new entries and closes those of forgotten ones. Control
 * loop. The mutex is held throughout: libuv calls here never call back
 * synchronously, and close callbacks run later without it. */
static void drain(struct zt_ca_mgr *mgr)
{
    pthread_mutex_lock(&mgr->mu);
    struct entry *p = mgr->pending, *d = mgr->dead;
    mgr->pending = NULL;
    mgr->dead = NULL;
    while (p != NULL) {
        struct entry *e = p;
        p = e->qnext;
        e->qnext = NULL;
        e->in_pending = false;
        if (e->is_dead) {
            entry_destroy(e); /* forgotten before it ever had a timer */
            continue;
        }
        uv_timer_init(mgr->loop, &e->timer);
        e->timer.data = e;
        e->has_timer = true;
        schedule_refresh(e, e->cur->cert);
    }
    while (d != NULL) {
        struct entry *e = d;
        d = e->qnext;
        e->qnext = NULL;
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

struct zt_ca_mgr *zt_ca_mgr_new_custom(uv_loop_t *control_loop, zt_ca_mint_fn *mint, void *arg,
                                       unsigned ttl_seconds)
{
    struct zt_ca_mgr *mgr;
    if (ttl_seconds == 0 || mint == NULL)
        return NULL;
    mgr = calloc(1, sizeof(*mgr));
    if (mgr == NULL)
        abort();
    mgr->loop = control_loop;
    mgr->mint = mint;
    mgr->mint_arg = arg;
    mgr->ttl = ttl_seconds;
    atomic_init(&mgr->generation, 0);
    mgr->rng = (uint32_t)now_ms() ^ (uint32_t)(uintptr_t)mgr;
    if (mgr->rng == 0)
        mgr->rng = 1;
    pthread_mutex_init(&mgr->mu, NULL);
    if (uv_async_init(control_loop, &mgr->async, on_async) != 0) {
        pthread_mutex_destroy(&mgr->mu);
        free(mgr);
        return NULL;
    }
    mgr->async.data = mgr;
    return mgr;
}

struct zt_ca_mgr *zt_ca_mgr_new(uv_loop_t *control_loop, struct zt_tls_localca *ca,
                                unsigned ttl_seconds)
{
    if (ca == NULL)
        return NULL;
    return zt_ca_mgr_new_custom(control_loop, localca_mint, ca, ttl_seconds);
}

int zt_ca_mgr_acquire(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id,
                      struct zt_ca_identity **out)
{
    struct zt_ca_identity *fresh = NULL, *stale = NULL;
    struct entry *e;
    bool need_wake = false;
    int rc;

    *out = NULL;
    pthread_mutex_lock(&mgr->mu);
    e = find(mgr, id);
    if (e != NULL && !is_expired(e->cur))
        *out = zt_ca_identity_ref(e->cur);
    pthread_mutex_unlock(&mgr->mu);
    if (*out != NULL)
        return 0;

    /* Mint without the lock; if another thread raced us to it, its
     * identity wins and ours is dropped. */
    rc = issue(mgr, id, &fresh);
    if (rc != 0)
        return rc;

    pthread_mutex_lock(&mgr->mu);
    e = find(mgr, id);
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e == NULL)
            abort();
        e->mgr = mgr;
        e->id = *id;
        e->state = ZT_CA_ENTRY_ST_NEW;
        e->cur = fresh;
        fresh = NULL;
        unsigned b = hash_id(id);
        e->next = mgr->buckets[b];
        mgr->buckets[b] = e;
        e->qnext = mgr->pending;
        mgr->pending = e;
        e->in_pending = true;
        mgr->count++;
        need_wake = true;
    } else if (is_expired(e->cur)) {
        stale = e->cur;
        e->cur = fresh;
        fresh = NULL;
    }
    *out = zt_ca_identity_ref(e->cur);
    pthread_mutex_unlock(&mgr->mu);

    zt_ca_identity_unref(fresh);
    zt_ca_identity_unref(stale);
    if (need_wake)
        uv_async_send(&mgr->async);
    return 0;
}

/* Unlinks e from the table and queues it for closing. (mu) */
static void unlink_entry(struct zt_ca_mgr *mgr, struct entry *e)
{
    struct entry **pp = &mgr->buckets[hash_id(&e->id)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    e->next = NULL;
    e->is_dead = true;
    mgr->count--;
    /* A pending entry is destroyed by the drain of the pending queue. */
    if (!e->in_pending) {
        e->qnext = mgr->dead;
        mgr->dead = e;
    }
}

void zt_ca_mgr_forget(struct zt_ca_mgr *mgr, const struct zt_spiffe_id *id)
{
    pthread_mutex_lock(&mgr->mu);
    struct entry *e = find(mgr, id);
    if (e != NULL)
        unlink_entry(mgr, e);
    pthread_mutex_unlock(&mgr->mu);
    if (e != NULL)
        uv_async_send(&mgr->async);
}

size_t zt_ca_mgr_count(struct zt_ca_mgr *mgr)
{
    pthread_mutex_lock(&mgr->mu);
    size_t n = mgr->count;
    pthread_mutex_unlock(&mgr->mu);
    return n;
}

void zt_ca_mgr_foreach(struct zt_ca_mgr *mgr,
                       void (*fn)(void *ud, const struct zt_ca_identity *ident,
                                  enum zt_ca_entry_state st),
                       void *ud)
{
    pthread_mutex_lock(&mgr->mu);
    for (int b = 0; b < N_BUCKETS; b++)
        for (struct entry *e = mgr->buckets[b]; e != NULL; e = e->next)
            fn(ud, e->cur, e->state);
    pthread_mutex_unlock(&mgr->mu);
}

void zt_ca_mgr_free(struct zt_ca_mgr *mgr)
{
    if (mgr == NULL)
        return;
    pthread_mutex_lock(&mgr->mu);
    for (int b = 0; b < N_BUCKETS; b++)
        while (mgr->buckets[b] != NULL)
            unlink_entry(mgr, mgr->buckets[b]);
    pthread_mutex_unlock(&mgr->mu);
    drain(mgr);
    mgr->is_freeing = true;
    mgr->closing++;
    uv_close((uv_handle_t *)&mgr->async, on_async_closed);
}
