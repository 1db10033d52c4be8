/* The identity manager with an asynchronous issuer: a fake one that records
 * every request and answers only when the test says so, in the order the
 * test chooses. Proves the priority order behind a full window, one request
 * per identity, priority raise, wait cancellation, renewals that neither
 * block nor drop the old certificate, and the failure backoff. */
#include "test.h"

#include "base/err.h"
#include "ca/manager.h"
#include "loop/worker.h"
#include "tls/fixture.h"
#include "tls/localca.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <uv.h>

static struct fx_ca fx;
static struct zt_tls_localca *ca;

static struct zt_spiffe_id id_of(const char *sa)
{
    struct zt_spiffe_id id;
    if (zt_spiffe_make("cluster.local", "ns", sa, &id) != 0)
        abort();
    return id;
}

/* ---- the fake issuer ---- */

#define MAX_CALLS 64

struct call {
    struct zt_spiffe_id id;
    enum zt_ca_priority prio;
    unsigned ttl;
    zt_ca_mint_done_fn *done;
    void *done_ud;
    bool answered;
    uint64_t at_ms;
};

struct fake {
    pthread_mutex_t mu;
    struct call calls[MAX_CALLS];
    int n;
    int outstanding, max_outstanding;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int fake_mint(void *arg, const struct zt_spiffe_id *id, unsigned ttl,
                     enum zt_ca_priority prio, zt_ca_mint_done_fn *done, void *done_ud)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->mu);
    if (f->n == MAX_CALLS)
        abort();
    f->calls[f->n++] = (struct call){
        .id = *id, .prio = prio, .ttl = ttl, .done = done, .done_ud = done_ud, .at_ms = mono_ms()};
    if (++f->outstanding > f->max_outstanding)
        f->max_outstanding = f->outstanding;
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static void fake_init(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
}

static int fake_count(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->n;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* Answers call i: a real certificate from the local CA (rc 0) or rc. */
static void fake_answer(struct fake *f, int i, int rc)
{
    pthread_mutex_lock(&f->mu);
    struct call c = f->calls[i];
    if (c.answered)
        abort();
    f->calls[i].answered = true;
    f->outstanding--;
    pthread_mutex_unlock(&f->mu);
    struct zt_tls_cert *cert = NULL;
    if (rc == 0 && zt_tls_localca_mint(ca, &c.id, c.ttl, &cert) != 0)
        abort();
    c.done(c.done_ud, rc, cert);
}

static void fake_answer_all(struct fake *f)
{
    for (int i = 0; i < fake_count(f); i++)
        if (!f->calls[i].answered)
            fake_answer(f, i, ZT_E_CLOSED);
}

static bool call_is(struct fake *f, int i, const char *sa, enum zt_ca_priority prio)
{
    pthread_mutex_lock(&f->mu);
    bool ok = i < f->n && strcmp(f->calls[i].id.sa, sa) == 0 && f->calls[i].prio == prio;
    if (!ok && i < f->n)
        fprintf(stderr, "    call %d: %s at %s, expected %s at %s\n", i, f->calls[i].id.sa,
                zt_ca_priority_str(f->calls[i].prio), sa, zt_ca_priority_str(prio));
    pthread_mutex_unlock(&f->mu);
    return ok;
}

/* ---- loops and the worker ---- */

static void on_stop_timer(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the control loop for about ms. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_stop_timer, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Runs the loop in small steps until check(arg) or ms pass. */
static bool run_until(uv_loop_t *loop, uint64_t ms, bool (*check)(void *), void *arg)
{
    uint64_t end = mono_ms() + ms;
    while (!check(arg)) {
        if (mono_ms() >= end)
            return false;
        run_for(loop, 5);
    }
    return true;
}

struct on_worker {
    void (*fn)(void *);
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static void task_run(void *arg)
{
    struct on_worker *o = arg;
    o->fn(o->arg);
    pthread_mutex_lock(&o->mu);
    o->done = true;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

/* Runs fn(arg) on the worker's thread and waits for it. */
static void on_worker(struct zt_worker *w, void (*fn)(void *), void *arg)
{
    struct on_worker o = {.fn = fn, .arg = arg};
    pthread_mutex_init(&o.mu, NULL);
    pthread_cond_init(&o.cv, NULL);
    if (zt_worker_post(w, task_run, &o) != 0)
        abort();
    pthread_mutex_lock(&o.mu);
    while (!o.done)
        pthread_cond_wait(&o.cv, &o.mu);
    pthread_mutex_unlock(&o.mu);
    pthread_cond_destroy(&o.cv);
    pthread_mutex_destroy(&o.mu);
}

/* One asynchronous acquire made on the worker, and what it got. */
struct live {
    struct zt_ca_mgr *mgr;
    struct zt_worker *w;
    struct zt_spiffe_id id;
    int rc;                     /* of the acquire call */
    struct zt_ca_identity *now; /* returned at once */
    struct zt_ca_wait *wait;    /* when rc == -EAGAIN */
    atomic_int cb_calls;
    int cb_err;
    struct zt_ca_identity *cb_ident;
};

static void on_live(void *ud, struct zt_ca_identity *ident, int err)
{
    struct live *l = ud;
    l->cb_err = err;
    l->cb_ident = ident;
    l->wait = NULL;
    atomic_fetch_add(&l->cb_calls, 1);
}

static void do_acquire(void *arg)
{
    struct live *l = arg;
    l->rc = zt_ca_mgr_acquire_async(l->mgr, &l->id, l->w, on_live, l, &l->now, &l->wait);
}

static void do_cancel(void *arg)
{
    struct live *l = arg;
    zt_ca_wait_cancel(l->wait);
    l->wait = NULL;
}

static void live_start(struct live *l, struct zt_ca_mgr *mgr, struct zt_worker *w, const char *sa)
{
    memset(l, 0, sizeof(*l));
    l->mgr = mgr;
    l->w = w;
    l->id = id_of(sa);
    atomic_init(&l->cb_calls, 0);
    on_worker(w, do_acquire, l);
}

static bool live_called(void *arg)
{
    return atomic_load(&((struct live *)arg)->cb_calls) > 0;
}

static void live_release(struct live *l)
{
    zt_ca_identity_unref(l->now);
    zt_ca_identity_unref(l->cb_ident);
    l->now = l->cb_ident = NULL;
}

struct fixture {
    uv_loop_t loop;
    struct fake f;
    struct zt_worker w;
    struct zt_ca_mgr *mgr;
};

static void fixture_start(struct fixture *x, unsigned ttl)
{
    uv_loop_init(&x->loop);
    fake_init(&x->f);
    if (zt_worker_start(&x->w, 0, NULL) != 0)
        abort();
    x->mgr = zt_ca_mgr_new_async(&x->loop, fake_mint, &x->f, ttl);
    if (!x->mgr)
        abort();
}

static int fixture_finish(struct fixture *x)
{
    fake_answer_all(&x->f);
    zt_worker_stop(&x->w);
    zt_ca_mgr_free(x->mgr);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    pthread_mutex_destroy(&x->f.mu);
    return uv_loop_close(&x->loop);
}

/* ---- tests ---- */

struct count_check {
    struct fake *f;
    int n;
};

static bool calls_reach(void *arg)
{
    struct count_check *c = arg;
    return fake_count(c->f) >= c->n;
}

/* 8 requests with the issuer; behind them a renewal, two prefetches and a
 * live connection; then a live connection for one of the queued
 * prefetches. Each answer frees one slot: LIVE (in arrival order, the
 * raised one second), then PREFETCH, then RENEW. */
static void test_priority_order_with_full_window(void)
{
    struct fixture x;
    fixture_start(&x, 4); /* half-life 2 s: a renewal comes quickly */
    struct zt_spiffe_id r1 = id_of("r1");

    /* r1 gets a certificate first; its renewal will queue later. */
    zt_ca_mgr_prefetch(x.mgr, &r1);
    CHECK_EQ_INT(fake_count(&x.f), 1);
    CHECK(call_is(&x.f, 0, "r1", ZT_CA_PRIO_PREFETCH));
    fake_answer(&x.f, 0, 0);
    run_for(&x.loop, 10);
    struct zt_ca_identity *r1_old = NULL;
    CHECK_EQ_INT(zt_ca_mgr_acquire(x.mgr, &r1, &r1_old), 0);

    /* Fill the window. */
    char sa[16];
    for (int i = 0; i < 8; i++) {
        snprintf(sa, sizeof(sa), "f%d", i);
        struct zt_spiffe_id id = id_of(sa);
        zt_ca_mgr_prefetch(x.mgr, &id);
    }
    CHECK_EQ_INT(fake_count(&x.f), 9);
    unsigned inflight = 0, queued = 0;
    zt_ca_mgr_requests(x.mgr, &inflight, &queued);
    CHECK_EQ_INT(inflight, 8);
    CHECK_EQ_INT(queued, 0);

    /* r1's half-life passes: its renewal queues behind the window, and the
     * control loop goes on (we are running it). */
    uint64_t t0 = mono_ms();
    for (;;) {
        run_for(&x.loop, 20);
        zt_ca_mgr_requests(x.mgr, &inflight, &queued);
        if (queued == 1 || mono_ms() - t0 > 3000)
            break;
    }
    CHECK_EQ_INT(queued, 1);
    CHECK_EQ_INT(fake_count(&x.f), 9);
    /* Still served the old certificate meanwhile. */
    struct zt_ca_identity *r1_now = NULL;
    CHECK_EQ_INT(zt_ca_mgr_acquire(x.mgr, &r1, &r1_now), 0);
    CHECK(r1_now == r1_old);
    zt_ca_identity_unref(r1_now);

    struct zt_spiffe_id p1 = id_of("p1"), p2 = id_of("p2");
    zt_ca_mgr_prefetch(x.mgr, &p1);
    zt_ca_mgr_prefetch(x.mgr, &p2);
    struct live l1, l2;
    live_start(&l1, x.mgr, &x.w, "l1");
    CHECK_EQ_INT(l1.rc, -EAGAIN);
    CHECK(l1.wait != NULL);
    live_start(&l2, x.mgr, &x.w, "p2"); /* raises p2 to LIVE */
    CHECK_EQ_INT(l2.rc, -EAGAIN);
    zt_ca_mgr_requests(x.mgr, &inflight, &queued);
    CHECK_EQ_INT(inflight, 8);
    CHECK_EQ_INT(queued, 4);
    CHECK_EQ_INT(fake_count(&x.f), 9);

    /* Free one slot at a time (answers in a scrambled order). */
    const int order[4] = {5, 2, 8, 1};
    const char *want_sa[4] = {"l1", "p2", "p1", "r1"};
    const enum zt_ca_priority want_prio[4] = {ZT_CA_PRIO_LIVE, ZT_CA_PRIO_LIVE, ZT_CA_PRIO_PREFETCH,
                                              ZT_CA_PRIO_RENEW};
    for (int k = 0; k < 4; k++) {
        fake_answer(&x.f, order[k], 0);
        CHECK_EQ_INT(fake_count(&x.f), 10 + k);
        CHECK(call_is(&x.f, 9 + k, want_sa[k], want_prio[k]));
    }
    CHECK_EQ_INT(x.f.max_outstanding, 8);

    /* Both live waiters are answered on the worker with their identity. */
    fake_answer(&x.f, 9, 0);  /* l1 */
    fake_answer(&x.f, 10, 0); /* p2 */
    CHECK(run_until(&x.loop, 2000, live_called, &l1));
    CHECK(run_until(&x.loop, 2000, live_called, &l2));
    CHECK_EQ_INT(l1.cb_err, 0);
    CHECK(l1.cb_ident != NULL && strcmp(l1.cb_ident->id.sa, "l1") == 0);
    CHECK_EQ_INT(l2.cb_err, 0);
    CHECK(l2.cb_ident != NULL && strcmp(l2.cb_ident->id.sa, "p2") == 0);
    CHECK_EQ_INT(atomic_load(&l1.cb_calls), 1);

    live_release(&l1);
    live_release(&l2);
    zt_ca_identity_unref(r1_old);
    CHECK_EQ_INT(fixture_finish(&x), 0);
}

/* Many callers, one request; all get the same identity. */
static void test_coalescing(void)
{
    struct fixture x;
    fixture_start(&x, 3600);
    struct zt_spiffe_id id = id_of("shared");
    struct live a, b;
    zt_ca_mgr_prefetch(x.mgr, &id);
    live_start(&a, x.mgr, &x.w, "shared");
    live_start(&b, x.mgr, &x.w, "shared");
    zt_ca_mgr_prefetch(x.mgr, &id);
    CHECK_EQ_INT(a.rc, -EAGAIN);
    CHECK_EQ_INT(b.rc, -EAGAIN);
    CHECK_EQ_INT(fake_count(&x.f), 1);
    CHECK_EQ_INT(zt_ca_mgr_count(x.mgr), 1);

    fake_answer(&x.f, 0, 0);
    CHECK(run_until(&x.loop, 2000, live_called, &a));
    CHECK(run_until(&x.loop, 2000, live_called, &b));
    CHECK(a.cb_ident != NULL && a.cb_ident == b.cb_ident);
    CHECK_EQ_INT(a.cb_ident->generation, 1);

    /* Cached now: answered at once, no new request. */
    struct live c;
    live_start(&c, x.mgr, &x.w, "shared");
    CHECK_EQ_INT(c.rc, 0);
    CHECK(c.now == a.cb_ident);
    CHECK_EQ_INT(fake_count(&x.f), 1);

    live_release(&a);
    live_release(&b);
    live_release(&c);
    CHECK_EQ_INT(fixture_finish(&x), 0);
}

/* A cancelled wait gets no callback: cancelled while queued, and cancelled
 * after its answer was already posted to the worker but before it ran. */
struct late_cancel {
    struct live *l;
    struct fake *f;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running, answered;
};

static void task_late_cancel(void *arg)
{
    struct late_cancel *lc = arg;
    pthread_mutex_lock(&lc->mu);
    lc->running = true;
    pthread_cond_broadcast(&lc->cv);
    while (!lc->answered)
        pthread_cond_wait(&lc->cv, &lc->mu);
    pthread_mutex_unlock(&lc->mu);
    /* The delivery task is queued behind us now. */
    zt_ca_wait_cancel(lc->l->wait);
    lc->l->wait = NULL;
}

static void test_cancel(void)
{
    struct fixture x;
    fixture_start(&x, 3600);
    struct live a, b;
    live_start(&a, x.mgr, &x.w, "gone");
    live_start(&b, x.mgr, &x.w, "gone");
    CHECK_EQ_INT(a.rc, -EAGAIN);
    CHECK_EQ_INT(fake_count(&x.f), 1);
    on_worker(&x.w, do_cancel, &a);
    fake_answer(&x.f, 0, 0);
    CHECK(run_until(&x.loop, 2000, live_called, &b));
    run_for(&x.loop, 50);
    CHECK_EQ_INT(atomic_load(&a.cb_calls), 0);
    CHECK_EQ_INT(b.cb_err, 0);
    live_release(&b);

    /* Late cancel: the answer is posted while the worker is busy. */
    struct live c;
    live_start(&c, x.mgr, &x.w, "late");
    CHECK_EQ_INT(c.rc, -EAGAIN);
    CHECK_EQ_INT(fake_count(&x.f), 2);
    struct late_cancel lc = {.l = &c, .f = &x.f};
    pthread_mutex_init(&lc.mu, NULL);
    pthread_cond_init(&lc.cv, NULL);
    CHECK_EQ_INT(zt_worker_post(&x.w, task_late_cancel, &lc), 0);
    pthread_mutex_lock(&lc.mu);
    while (!lc.running)
        pthread_cond_wait(&lc.cv, &lc.mu);
    pthread_mutex_unlock(&lc.mu);
    fake_answer(&x.f, 1, 0); /* posts the delivery behind task_late_cancel */
    pthread_mutex_lock(&lc.mu);
    lc.answered = true;
    pthread_cond_broadcast(&lc.cv);
    pthread_mutex_unlock(&lc.mu);
    struct live probe; /* runs after the delivery task on the same worker */
    live_start(&probe, x.mgr, &x.w, "late");
    CHECK_EQ_INT(probe.rc, 0);
    CHECK_EQ_INT(atomic_load(&c.cb_calls), 0);
    live_release(&probe);
    pthread_cond_destroy(&lc.cv);
    pthread_mutex_destroy(&lc.mu);
    CHECK_EQ_INT(fixture_finish(&x), 0);
}

struct gen_check {
    struct zt_ca_mgr *mgr;
    struct zt_spiffe_id id;
    uint64_t old_gen;
};

static bool generation_changed(void *arg)
{
    struct gen_check *g = arg;
    struct zt_ca_identity *cur = NULL;
    if (zt_ca_mgr_acquire(g->mgr, &g->id, &cur) != 0)
        return false;
    bool changed = cur->generation != g->old_gen;
    zt_ca_identity_unref(cur);
    return changed;
}

/* The renewal is a request at RENEW priority; the control loop does not
 * wait for it and the old identity is served until the answer. */
static void test_renewal_async_keeps_old(void)
{
    struct fixture x;
    fixture_start(&x, 4);
    struct zt_spiffe_id id = id_of("renew");
    zt_ca_mgr_prefetch(x.mgr, &id);
    fake_answer(&x.f, 0, 0);
    run_for(&x.loop, 10);
    struct zt_ca_identity *old = NULL;
    CHECK_EQ_INT(zt_ca_mgr_acquire(x.mgr, &id, &old), 0);

    struct count_check cc = {.f = &x.f, .n = 2};
    CHECK(run_until(&x.loop, 3000, calls_reach, &cc));
    CHECK(call_is(&x.f, 1, "renew", ZT_CA_PRIO_RENEW));
    /* The loop keeps turning with the request outstanding (a loop that
     * waited for the CA would never come back from run_for). */
    run_for(&x.loop, 100);
    CHECK(!x.f.calls[1].answered);
    struct live l;
    live_start(&l, x.mgr, &x.w, "renew");
    CHECK_EQ_INT(l.rc, 0);
    CHECK(l.now == old);
    CHECK_EQ_INT(fake_count(&x.f), 2); /* joined, not duplicated */
    live_release(&l);

    fake_answer(&x.f, 1, 0);
    struct gen_check g = {.mgr = x.mgr, .id = id, .old_gen = old->generation};
    CHECK(run_until(&x.loop, 1000, generation_changed, &g));
    struct zt_ca_identity *cur = NULL;
    CHECK_EQ_INT(zt_ca_mgr_acquire(x.mgr, &id, &cur), 0);
    CHECK(cur != old && cur->generation > old->generation);
    CHECK(old->server_ctx != NULL && old->cert != NULL); /* still whole */
    zt_ca_identity_unref(cur);
    zt_ca_identity_unref(old);
    CHECK_EQ_INT(fixture_finish(&x), 0);
}

/* Failures: waiters get the issuer's error; background retries back off
 * about 1 s then 2 s (+-20 %); a live connection does not wait for the
 * backoff. */
static void test_failure_backoff(void)
{
    struct fixture x;
    fixture_start(&x, 3600);
    struct live a;
    live_start(&a, x.mgr, &x.w, "bad");
    CHECK_EQ_INT(a.rc, -EAGAIN);
    fake_answer(&x.f, 0, ZT_E_UPSTREAM);
    CHECK(run_until(&x.loop, 2000, live_called, &a));
    CHECK_EQ_INT(a.cb_err, ZT_E_UPSTREAM);
    CHECK(a.cb_ident == NULL);
    CHECK_EQ_INT(zt_ca_mgr_count(x.mgr), 1);

    /* First retry about 1 s after the failure, at prefetch priority. */
    uint64_t failed_at = mono_ms();
    struct count_check cc = {.f = &x.f, .n = 2};
    CHECK(run_until(&x.loop, 20000, calls_reach, &cc));
    uint64_t d1 = x.f.calls[1].at_ms - failed_at;
    CHECK(d1 >= 750); /* the backoff: not at once */
    CHECK(call_is(&x.f, 1, "bad", ZT_CA_PRIO_PREFETCH));
    fake_answer(&x.f, 1, ZT_E_UPSTREAM);
    failed_at = mono_ms();
    cc.n = 3;
    CHECK(run_until(&x.loop, 20000, calls_reach, &cc));
    uint64_t d2 = x.f.calls[2].at_ms - failed_at;
    CHECK(d2 >= 1550 && d2 > d1); /* doubled */
    fake_answer(&x.f, 2, ZT_E_DENIED);
    run_for(&x.loop, 20);

    /* In the 4 s backoff now: a live connection gets the last failure at
     * once and does not bring the retry forward (every connection would
     * otherwise be one more request to a failing CA). */
    struct live b, c;
    live_start(&b, x.mgr, &x.w, "bad");
    CHECK_EQ_INT(b.rc, ZT_E_DENIED);
    CHECK(b.wait == NULL && b.now == NULL);
    run_for(&x.loop, 20);
    CHECK_EQ_INT(fake_count(&x.f), 3);
    /* The backoff's own retry comes; a live connection then joins it. */
    cc.n = 4;
    CHECK(run_until(&x.loop, 8000, calls_reach, &cc));
    live_start(&c, x.mgr, &x.w, "bad");
    CHECK_EQ_INT(c.rc, -EAGAIN);
    CHECK_EQ_INT(fake_count(&x.f), 4);
    fake_answer(&x.f, 3, 0);
    CHECK(run_until(&x.loop, 2000, live_called, &c));
    CHECK_EQ_INT(c.cb_err, 0);
    run_for(&x.loop, 20);
    /* Success resets the backoff: the next request is the renewal. */
    run_for(&x.loop, 300);
    CHECK_EQ_INT(fake_count(&x.f), 4);
    live_release(&c);
    live_release(&a);
    live_release(&b);
    CHECK_EQ_INT(fixture_finish(&x), 0);
}

/* A refusal that may no longer hold (the identity's workload appeared on
 * this node): zt_ca_mgr_retry_now asks again at once, during the backoff, and
 * a live connection joins that request; with a valid certificate, or outside
 * a backoff, it does nothing. */
static void test_retry_now(void)
{
    struct fixture x;
    fixture_start(&x, 3600);
    struct live a, b;
    struct zt_spiffe_id id = id_of("late");
    live_start(&a, x.mgr, &x.w, "late");
    CHECK_EQ_INT(a.rc, -EAGAIN);
    fake_answer(&x.f, 0, ZT_E_DENIED);
    CHECK(run_until(&x.loop, 2000, live_called, &a));
    CHECK_EQ_INT(a.cb_err, ZT_E_DENIED);
    run_for(&x.loop, 20);
    /* In the backoff: a connection gets the refusal, no new request. */
    live_start(&b, x.mgr, &x.w, "late");
    CHECK_EQ_INT(b.rc, ZT_E_DENIED);
    CHECK_EQ_INT(fake_count(&x.f), 1);
    /* The workload appears: asked again at once (long before the 1 s
     * backoff would: the call is there without running the loop). */
    zt_ca_mgr_retry_now(x.mgr, &id);
    CHECK_EQ_INT(fake_count(&x.f), 2);
    CHECK(call_is(&x.f, 1, "late", ZT_CA_PRIO_PREFETCH));
    live_start(&b, x.mgr, &x.w, "late");
    CHECK_EQ_INT(b.rc, -EAGAIN);
    CHECK_EQ_INT(fake_count(&x.f), 2);
    fake_answer(&x.f, 1, 0);
    CHECK(run_until(&x.loop, 2000, live_called, &b));
    CHECK_EQ_INT(b.cb_err, 0);
    run_for(&x.loop, 20);
    /* Valid now: nothing to retry. */
    zt_ca_mgr_retry_now(x.mgr, &id);
    CHECK_EQ_INT(fake_count(&x.f), 2);
    live_release(&a);
    live_release(&b);
    CHECK_EQ_INT(fixture_finish(&x), 0);
}

/* Forgetting withdraws a queued request nobody waits for, and the blocking
 * acquire joins the request under way. */
struct blocker {
    struct zt_ca_mgr *mgr;
    struct zt_spiffe_id id;
    int rc;
    struct zt_ca_identity *got;
};

static void *blocking_acquire(void *arg)
{
    struct blocker *b = arg;
    b->rc = zt_ca_mgr_acquire(b->mgr, &b->id, &b->got);
    return NULL;
}

static void test_forget_and_blocking_acquire(void)
{
    struct fixture x;
    fixture_start(&x, 3600);
    char sa[16];
    for (int i = 0; i < 8; i++) {
        snprintf(sa, sizeof(sa), "w%d", i);
        struct zt_spiffe_id id = id_of(sa);
        zt_ca_mgr_prefetch(x.mgr, &id);
    }
    struct zt_spiffe_id q = id_of("queued");
    zt_ca_mgr_prefetch(x.mgr, &q);
    unsigned inflight, queued;
    zt_ca_mgr_requests(x.mgr, &inflight, &queued);
    CHECK_EQ_INT(queued, 1);
    zt_ca_mgr_forget(x.mgr, &q);
    zt_ca_mgr_requests(x.mgr, &inflight, &queued);
    CHECK_EQ_INT(queued, 0);
    CHECK_EQ_INT(zt_ca_mgr_count(x.mgr), 8);

    /* A blocking acquire of w3 waits for the request under way. */
    struct blocker b = {.mgr = x.mgr, .id = id_of("w3")};
    pthread_t th;
    pthread_create(&th, NULL, blocking_acquire, &b);
    run_for(&x.loop, 50);
    CHECK_EQ_INT(fake_count(&x.f), 8);
    fake_answer(&x.f, 3, 0);
    pthread_join(th, NULL);
    CHECK_EQ_INT(b.rc, 0);
    CHECK(b.got != NULL && strcmp(b.got->id.sa, "w3") == 0);
    zt_ca_identity_unref(b.got);
    run_for(&x.loop, 20);
    CHECK_EQ_INT(fake_count(&x.f), 8); /* the withdrawn one never went out */
    CHECK_EQ_INT(fixture_finish(&x), 0);
}

static void test_priority_names(void)
{
    CHECK_EQ_STR(zt_ca_priority_str(ZT_CA_PRIO_LIVE), "live");
    CHECK_EQ_STR(zt_ca_priority_str(ZT_CA_PRIO_PREFETCH), "prefetch");
    CHECK_EQ_STR(zt_ca_priority_str(ZT_CA_PRIO_RENEW), "renew");
}

int main(void)
{
    if (!fx_ca_make(&fx, true) || zt_tls_localca_load(fx.dir, &ca, NULL, 0) != 0) {
        fprintf(stderr, "fixture set-up failed\n");
        return 1;
    }
    RUN(test_priority_order_with_full_window);
    RUN(test_coalescing);
    RUN(test_cancel);
    RUN(test_renewal_async_keeps_old);
    RUN(test_failure_backoff);
    RUN(test_retry_now);
    RUN(test_forget_and_blocking_acquire);
    RUN(test_priority_names);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
    return TEST_REPORT();
}
