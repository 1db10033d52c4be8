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

static struct zt_workload *new_workload(const char *uid)
{
    struct zt_workload *wl = zt_workload_new();
    wl->uid = zt_state_xstrdup(uid);
    wl->name = zt_state_xstrdup(uid);
    wl->namespace = zt_state_xstrdup("app");
    return wl;
}

static struct zt_policy *new_policy(const char *name)
{
    struct zt_policy *p = zt_policy_new();
    p->namespace = zt_state_xstrdup("app");
    p->name = zt_state_xstrdup(name);
    p->scope = ZT_POLICY_NAMESPACE;
    p->action = ZT_POLICY_DENY;
    return p;
}

static struct zt_state *finish(struct zt_state_builder *b)
{
    struct zt_state *s = NULL;
    char err[256];
    if (zt_state_builder_finish(b, &s, err, sizeof(err)))
        abort();
    return s;
}

/* A snapshot that keeps its base's policy records shares the base's
 * indexes: built before or after the delta, once, freed with the last of
 * the two. A delta that touches a policy gets its own. */
static void test_shared_while_policies_unchanged(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s1, *s2, *s3, *s4;
    const int *a, *c;

    atomic_store(&n_built, 0);
    atomic_store(&n_freed, 0);
    zt_state_builder_add_workload(b, new_workload("w1"));
    zt_state_builder_add_policy(b, new_policy("p1"));
    s1 = finish(b);

    /* Not built yet for s1: the build through s2 serves both. */
    b = zt_state_builder_new(s1);
    zt_state_builder_put_workload(b, new_workload("w2"));
    s2 = finish(b);
    a = zt_state_derived(s2, ZT_STATE_DERIVED_AUTHZ, build_counting, free_counting);
    CHECK(zt_state_derived(s1, ZT_STATE_DERIVED_AUTHZ, build_counting, free_counting) == a);
    CHECK_EQ_INT(atomic_load(&n_built), 1);

    /* Replacing or removing workloads keeps it. */
    b = zt_state_builder_new(s2);
    zt_state_builder_put_workload(b, new_workload("w1"));
    zt_state_builder_remove_workload(b, "w2");
    s3 = finish(b);
    CHECK(zt_state_derived(s3, ZT_STATE_DERIVED_AUTHZ, build_counting, free_counting) == a);
    CHECK_EQ_INT(atomic_load(&n_built), 1);

    /* A policy replaced by an equal one is a new record: rebuilt. */
    b = zt_state_builder_new(s3);
    zt_state_builder_put_policy(b, new_policy("p1"));
    s4 = finish(b);
    c = zt_state_derived(s4, ZT_STATE_DERIVED_AUTHZ, build_counting, free_counting);
    CHECK(c != a);
    CHECK_EQ_INT(atomic_load(&n_built), 2);

    zt_state_unref(s1);
    zt_state_unref(s3);
    CHECK_EQ_INT(atomic_load(&n_freed), 0);
    zt_state_unref(s2);
    CHECK_EQ_INT(atomic_load(&n_freed), 1);
    zt_state_unref(s4);
    CHECK_EQ_INT(atomic_load(&n_freed), 2);
}

/* Adding or removing a policy changes the set: each gets its own. */
static void test_not_shared_across_policy_changes(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_state *s1, *s2, *s3;
    const int *a, *c, *d;

    atomic_store(&n_built, 0);
    atomic_store(&n_freed, 0);
    zt_state_builder_add_policy(b, new_policy("p1"));
    s1 = finish(b);
    a = zt_state_derived(s1, ZT_STATE_DERIVED_AUTHZ, build_counting, free_counting);
    b = zt_state_builder_new(s1);
    zt_state_builder_put_policy(b, new_policy("p2"));
    s2 = finish(b);
    c = zt_state_derived(s2, ZT_STATE_DERIVED_AUTHZ, build_counting, free_counting);
    b = zt_state_builder_new(s2);
    zt_state_builder_remove_policy(b, "app/p1");
    zt_state_builder_remove_policy(b, "app/p2");
    s3 = finish(b);
    d = zt_state_derived(s3, ZT_STATE_DERIVED_AUTHZ, build_counting, free_counting);
    CHECK_EQ_INT(*a, 43);
    CHECK_EQ_INT(*c, 44);
    CHECK_EQ_INT(*d, 42);
    CHECK_EQ_INT(atomic_load(&n_built), 3);
    zt_state_unref(s1);
    zt_state_unref(s2);
    zt_state_unref(s3);
    CHECK_EQ_INT(atomic_load(&n_freed), 3);
}

int main(void)
{
    RUN(test_built_once_freed_with_snapshot);
    RUN(test_never_asked_never_built);
    RUN(test_concurrent_callers_share_one_build);
    RUN(test_shared_while_policies_unchanged);
    RUN(test_not_shared_across_policy_changes);
    return TEST_REPORT();
}
