#include "test.h"

#include "base/err.h"
#include "ca/manager.h"
#include "tls/ctx.h"
#include "tls/fixture.h"
#include "tls/localca.h"

#include <pthread.h>
#include <time.h>
#include <uv.h>

static struct fx_ca fx;
static struct zt_tls_localca *ca;

static struct zt_spiffe_id id_of(const char *ns, const char *sa)
{
    struct zt_spiffe_id id;
    if (zt_spiffe_make("cluster.local", ns, sa, &id) != 0)
        abort();
    return id;
}

/* Runs the loop until check(arg) holds (polled every 50 ms) or `ms` pass;
 * returns whether it held. */
struct waiter {
    uv_timer_t poll;
    uint64_t deadline;
    bool (*check)(void *);
    void *arg;
    bool met;
};

static void on_poll(uv_timer_t *t)
{
    struct waiter *w = t->data;
    if ((w->check != NULL && w->check(w->arg)) || uv_now(t->loop) >= w->deadline) {
        w->met = w->check != NULL && w->check(w->arg);
        uv_timer_stop(t);
        uv_stop(t->loop);
    }
}

static bool run_until(uv_loop_t *loop, uint64_t ms, bool (*check)(void *), void *arg)
{
    struct waiter w = {.check = check, .arg = arg};
    uv_update_time(loop);
    w.deadline = uv_now(loop) + ms;
    uv_timer_init(loop, &w.poll);
    w.poll.data = &w;
    uv_timer_start(&w.poll, on_poll, 50, 50);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&w.poll, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return w.met;
}

static void finish(uv_loop_t *loop, struct zt_ca_mgr *mgr)
{
    zt_ca_mgr_free(mgr);
    uv_run(loop, UV_RUN_DEFAULT);
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

static bool handshake_ok(struct zt_ca_identity *client, struct zt_ca_identity *server)
{
    struct fx_conn conn;
    fx_handshake(client->client_ctx, server->server_ctx, NULL, &conn);
    bool ok = conn.c_res == FX_HS_DONE && conn.s_res == FX_HS_DONE &&
              zt_tls_verify_server_identity(conn.c, &server->id, 1) == 0;
    fx_conn_free(&conn);
    return ok;
}

static void test_acquire_caches_per_identity(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct zt_ca_mgr *mgr = zt_ca_mgr_new(&loop, ca, 3600);
    struct zt_ca_identity *a1 = NULL, *a2 = NULL, *b = NULL;
    struct zt_spiffe_id ia = id_of("ns", "a"), ib = id_of("ns", "b");
    CHECK(mgr != NULL);
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &ia, &a1), 0);
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &ia, &a2), 0);
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &ib, &b), 0);
    CHECK(a1 == a2);
    CHECK(a1 != b);
    CHECK(zt_spiffe_eq(&a1->cert->id, &ia));
    CHECK(zt_spiffe_eq(&b->cert->id, &ib));
    CHECK(a1->server_ctx != NULL && a1->client_ctx != NULL);
    CHECK_EQ_INT(zt_ca_mgr_count(mgr), 2);
    CHECK(handshake_ok(a1, b));
    CHECK(handshake_ok(b, a1));

    /* Forget drops the entry; handed-out identities stay usable; the next
     * acquire issues a new one. */
    zt_ca_mgr_forget(mgr, &ia);
    CHECK_EQ_INT(zt_ca_mgr_count(mgr), 1);
    CHECK(handshake_ok(a1, b));
    struct zt_ca_identity *a3 = NULL;
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &ia, &a3), 0);
    CHECK(a3 != a1 && a3->generation > b->generation);
    zt_ca_mgr_forget(mgr, &ia);
    zt_ca_mgr_forget(mgr, &ia); /* absent: no-op */
    uv_run(&loop, UV_RUN_NOWAIT);
    zt_ca_identity_unref(a1);
    zt_ca_identity_unref(a2);
    zt_ca_identity_unref(a3);
    zt_ca_identity_unref(b);
    finish(&loop, mgr);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

struct race {
    struct zt_ca_mgr *mgr;
    struct zt_spiffe_id id;
    struct zt_ca_identity *got;
};

static void *race_thread(void *arg)
{
    struct race *r = arg;
    if (zt_ca_mgr_acquire(r->mgr, &r->id, &r->got) != 0)
        r->got = NULL;
    return NULL;
}

static void test_concurrent_acquire(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct zt_ca_mgr *mgr = zt_ca_mgr_new(&loop, ca, 3600);
    struct race r[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct race){.mgr = mgr, .id = id_of("race", "x")};
        pthread_create(&th[i], NULL, race_thread, &r[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    bool same = true;
    for (int i = 0; i < 4; i++)
        same = same && r[i].got != NULL && r[i].got == r[0].got;
    size_t count = zt_ca_mgr_count(mgr);
    for (int i = 0; i < 4; i++)
        zt_ca_identity_unref(r[i].got);
    finish(&loop, mgr);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    CHECK(same);
    CHECK_EQ_INT(count, 1);
}

static void test_renews_at_half_life(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct zt_ca_mgr *mgr = zt_ca_mgr_new(&loop, ca, 4);
    struct zt_ca_identity *old = NULL, *peer = NULL, *cur = NULL;
    struct zt_spiffe_id id = id_of("ns", "short"), pid = id_of("ns", "peer");
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &id, &old), 0);
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &pid, &peer), 0);
    CHECK_EQ_INT(old->cert->not_after - old->cert->not_before, 4);

    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop);
    struct gen_check g = {.mgr = mgr, .id = id, .old_gen = old->generation};
    bool renewed = run_until(&loop, 20000, generation_changed, &g);
    uint64_t took = uv_now(&loop) - t0;
    time_t renewed_at = time(NULL);
    CHECK(renewed);
    /* Not before half of 4 s (give or take the second granularity of X.509
     * times), and while the old certificate was still valid. */
    CHECK(took >= 900);
    CHECK(renewed_at <= old->cert->not_after);

    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &id, &cur), 0);
    CHECK(cur != old);
    CHECK(cur->generation > old->generation);
    CHECK(cur->cert->not_before >= old->cert->not_before);
    CHECK(X509_cmp(cur->cert->leaf, old->cert->leaf) != 0);
    /* The old identity is still whole and still handshakes, both ways. */
    CHECK(handshake_ok(old, cur));
    CHECK(handshake_ok(cur, old));
    CHECK(handshake_ok(peer, old));

    zt_ca_identity_unref(old);
    zt_ca_identity_unref(cur);
    zt_ca_identity_unref(peer);
    finish(&loop, mgr);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* An issuer that fails on demand, to exercise the retry path. */
struct flaky {
    atomic_int fail_left;
    atomic_int calls;
};

static int flaky_mint(void *arg, const struct zt_spiffe_id *id, unsigned ttl,
                      struct zt_tls_cert **out)
{
    struct flaky *f = arg;
    atomic_fetch_add(&f->calls, 1);
    if (atomic_load(&f->fail_left) > 0) {
        atomic_fetch_sub(&f->fail_left, 1);
        return ZT_E_TLS;
    }
    return zt_tls_localca_mint(ca, id, ttl, out);
}

static bool second_call_made(void *arg)
{
    struct flaky *f = arg;
    return atomic_load(&f->calls) >= 2;
}

static void test_renewal_failure_retries_and_keeps_old(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct flaky f;
    atomic_init(&f.fail_left, 0);
    atomic_init(&f.calls, 0);
    struct zt_ca_mgr *mgr = zt_ca_mgr_new_custom(&loop, flaky_mint, &f, 6);
    struct zt_ca_identity *old = NULL, *mid = NULL, *cur = NULL;
    struct zt_spiffe_id id = id_of("ns", "flaky");
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &id, &old), 0);
    CHECK_EQ_INT(atomic_load(&f.calls), 1);

    /* A failed first attempt at ~3 s; the old cert keeps being served. */
    atomic_store(&f.fail_left, 1);
    struct gen_check g = {.mgr = mgr, .id = id, .old_gen = old->generation};
    CHECK(run_until(&loop, 3600, second_call_made, &f));
    CHECK(!generation_changed(&g));
    CHECK_EQ_INT(atomic_load(&f.calls), 2);
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &id, &mid), 0);
    CHECK(mid == old);

    /* The retry comes after its backoff (about 1 s, +-20 %), not at once,
     * and succeeds. */
    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop);
    CHECK(run_until(&loop, 20000, generation_changed, &g));
    CHECK(uv_now(&loop) - t0 >= 700);
    CHECK_EQ_INT(atomic_load(&f.calls), 3);
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &id, &cur), 0);
    CHECK(cur != old);
    CHECK(handshake_ok(old, cur));

    zt_ca_identity_unref(old);
    zt_ca_identity_unref(mid);
    zt_ca_identity_unref(cur);
    finish(&loop, mgr);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

struct seen {
    int n;
    bool has_a, has_b;
    uint64_t gen_a;
    enum zt_ca_entry_state st_a;
};

static void on_each(void *ud, const struct zt_ca_identity *ident, enum zt_ca_entry_state st)
{
    struct seen *s = ud;
    s->n++;
    if (strcmp(ident->id.sa, "a") == 0) {
        s->has_a = true;
        s->gen_a = ident->generation;
        s->st_a = st;
    } else if (strcmp(ident->id.sa, "b") == 0) {
        s->has_b = true;
    }
}

static void test_foreach_lists_cached_identities(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct zt_ca_mgr *mgr = zt_ca_mgr_new(&loop, ca, 3600);
    struct zt_ca_identity *a = NULL, *b = NULL;
    struct zt_spiffe_id ia = id_of("ns", "a"), ib = id_of("ns", "b");
    struct seen s = {0};
    zt_ca_mgr_foreach(mgr, on_each, &s);
    CHECK_EQ_INT(s.n, 0);
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &ia, &a), 0);
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &ib, &b), 0);
    zt_ca_mgr_foreach(mgr, on_each, &s);
    CHECK_EQ_INT(s.n, 2);
    CHECK(s.has_a && s.has_b);
    CHECK_EQ_INT(s.gen_a, a->generation);
    CHECK_EQ_INT(s.st_a, ZT_CA_ENTRY_ST_NEW);
    /* Once the control loop has armed the timers the state says so. */
    uv_run(&loop, UV_RUN_NOWAIT);
    s = (struct seen){0};
    zt_ca_mgr_foreach(mgr, on_each, &s);
    CHECK_EQ_INT(s.st_a, ZT_CA_ENTRY_ST_SCHEDULED);
    /* A forgotten identity is no longer listed. */
    zt_ca_mgr_forget(mgr, &ib);
    s = (struct seen){0};
    zt_ca_mgr_foreach(mgr, on_each, &s);
    CHECK_EQ_INT(s.n, 1);
    CHECK(s.has_a && !s.has_b);
    zt_ca_identity_unref(a);
    zt_ca_identity_unref(b);
    finish(&loop, mgr);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

static void test_entry_state_names(void)
{
    CHECK_EQ_STR(zt_ca_entry_state_str(ZT_CA_ENTRY_ST_NEW), "new");
    CHECK_EQ_STR(zt_ca_entry_state_str(ZT_CA_ENTRY_ST_SCHEDULED), "scheduled");
    CHECK_EQ_STR(zt_ca_entry_state_str(ZT_CA_ENTRY_ST_RETRY), "retry");
    CHECK_EQ_STR(zt_ca_entry_state_str(ZT_CA_ENTRY_ST_CLOSING), "closing");
    uv_loop_t loop;
    uv_loop_init(&loop);
    CHECK(zt_ca_mgr_new(&loop, ca, 0) == NULL);
    CHECK(zt_ca_mgr_new(&loop, NULL, 10) == NULL);
    zt_ca_mgr_free(NULL);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void)
{
    if (!fx_ca_make(&fx, true) || zt_tls_localca_load(fx.dir, &ca, NULL, 0) != 0) {
        fprintf(stderr, "fixture set-up failed\n");
        return 1;
    }
    RUN(test_acquire_caches_per_identity);
    RUN(test_concurrent_acquire);
    RUN(test_renews_at_half_life);
    RUN(test_renewal_failure_retries_and_keeps_old);
    RUN(test_foreach_lists_cached_identities);
    RUN(test_entry_state_names);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
    return TEST_REPORT();
}
