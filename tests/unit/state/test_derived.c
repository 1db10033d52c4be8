#include "test.h"

#include "state/state.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static atomic_int n_built, n_freed;

static void *build_counting(const struct zt_state *s)
{
    /* Slow enough that concurrent callers arrive during the build. */
    struct timespec ts = {0, 20 * 1000 * 1000};
    int *v = malloc(sizeof(*v));
    atomic_fetch_add(&n_built, 1);
    nanosleep(&ts, NULL);
    *v = (int)zt_state_policy_count(s) + 42;
    return v;
}

static void free_counting(void *v)
{
    atomic_fetch_add(&n_freed, 1);
    free(v);
}

static void test_built_once_freed_with_snapshot(void)
{
    struct zt_state *s = zt_state_new_empty();
    const int *a, *b;

    atomic_store(&n_built, 0);
    atomic_store(&n_freed, 0);
    a = zt_state_derived(s, ZT_STATE_DERIVED_AUTHZ, build_counting, free_counting);
    b = zt_state_derived(s, ZT_STATE_DERIVED_AUTHZ, build_counting, free_counting);
    CHECK(a != NULL && a == b);
    CHECK_EQ_INT(*a, 42);
    CHECK_EQ_INT(atomic_load(&n_built), 1);
    zt_state_ref(s);
    zt_state_unref(s);
    CHECK_EQ_INT(atomic_load(&n_freed), 0);
    zt_state_unref(s);
    CHECK_EQ_INT(atomic_load(&n_freed), 1);
}

static void test_never_asked_never_built(void)
{
    atomic_store(&n_built, 0);
    atomic_store(&n_freed, 0);
    zt_state_unref(zt_state_new_empty());
    CHECK_EQ_INT(atomic_load(&n_built), 0);
    CHECK_EQ_INT(atomic_load(&n_freed), 0);
}

struct racer {
    const struct zt_state *s;
    pthread_barrier_t *start;
    const void *got;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->start);
    r->got = zt_state_derived(r->s, ZT_STATE_DERIVED_AUTHZ, build_counting, free_counting);
    return NULL;
}

static void test_concurrent_callers_share_one_build(void)
{
    enum { N = 4 };
    struct zt_state *s = zt_state_new_empty();
    pthread_barrier_t start;
    pthread_t th[N];
    struct racer r[N];

    atomic_store(&n_built, 0);
    atomic_store(&n_freed, 0);
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        r[i] = (struct racer){.s = s, .start = &start};
        pthread_create(&th[i], NULL, race, &r[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 1; i < N; i++)
        CHECK(r[i].got == r[0].got);
    CHECK_EQ_INT(atomic_load(&n_built), 1);
    zt_state_unref(s);
    CHECK_EQ_INT(atomic_load(&n_freed), 1);
}

int main(void)
{
    RUN(test_built_once_freed_with_snapshot);
    RUN(test_never_asked_never_built);
    RUN(test_concurrent_callers_share_one_build);
    return TEST_REPORT();
}
