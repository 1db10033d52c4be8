/* zt_buf: growth, compaction, and the per-thread pool of 64 KiB buffers. */
#include "test.h"

#include "base/buf.h"

#include <pthread.h>

static void test_grow_and_consume(void)
{
    struct zt_buf b = {0};
    zt_buf_append(&b, "hello", 5);
    CHECK_EQ_INT(b.cap, 4096); /* small buffers grow from 4 KiB */
    zt_buf_append(&b, " world", 6);
    CHECK(memcmp(zt_buf_head(&b), "hello world", 11) == 0);
    zt_buf_consume(&b, 6);
    CHECK_EQ_INT(b.len, 5);
    CHECK(memcmp(zt_buf_head(&b), "world", 5) == 0);
    uint8_t *p = zt_buf_reserve(&b, 10000);
    memset(p, 'x', 10000);
    zt_buf_commit(&b, 10000);
    CHECK_EQ_INT(b.len, 10005);
    CHECK(memcmp(zt_buf_head(&b), "world", 5) == 0); /* compacted, kept */
    zt_buf_release(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

/* A relay-sized reservation takes a pooled buffer and gives it back on
 * release: the next one reuses it, no more than 4 are kept. */
static void test_pool(void)
{
    unsigned base = zt_buf_pool_count();
    struct zt_buf b = {0};
    uint8_t *p = zt_buf_reserve(&b, ZT_BUF_POOL_CAP);
    CHECK_EQ_INT(b.cap, ZT_BUF_POOL_CAP);
    memset(p, 1, ZT_BUF_POOL_CAP);
    zt_buf_commit(&b, ZT_BUF_POOL_CAP);
    zt_buf_release(&b);
    CHECK_EQ_INT(zt_buf_pool_count(), base + 1);
    CHECK(zt_buf_reserve(&b, 20000) == p); /* the same buffer again */
    CHECK_EQ_INT(zt_buf_pool_count(), base);
    zt_buf_release(&b);

    struct zt_buf many[6] = {{0}};
    for (int i = 0; i < 6; i++)
        zt_buf_reserve(&many[i], 32 * 1024);
    for (int i = 0; i < 6; i++)
        zt_buf_release(&many[i]);
    CHECK_EQ_INT(zt_buf_pool_count(), 4);

    /* Small first reservations do not take from the pool. */
    zt_buf_reserve(&b, 100);
    CHECK_EQ_INT(b.cap, 4096);
    CHECK_EQ_INT(zt_buf_pool_count(), 4);
    zt_buf_release(&b);
    /* Nor do ones above the pool's size. */
    zt_buf_reserve(&b, ZT_BUF_POOL_CAP + 1);
    CHECK(b.cap > ZT_BUF_POOL_CAP);
    CHECK_EQ_INT(zt_buf_pool_count(), 4);
    zt_buf_release(&b);
}

/* Another thread has a pool of its own, freed when it exits (the leak
 * checker would report it otherwise). */
static void *other_thread(void *arg)
{
    struct zt_buf b = {0};
    zt_buf_reserve(&b, 64 * 1024);
    zt_buf_release(&b);
    *(unsigned *)arg = zt_buf_pool_count();
    return NULL;
}

static void test_pool_per_thread(void)
{
    unsigned mine = zt_buf_pool_count(), theirs = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, other_thread, &theirs) == 0);
    pthread_join(t, NULL);
    CHECK_EQ_INT(theirs, 1);
    CHECK_EQ_INT(zt_buf_pool_count(), mine);
}

/* Scratch space taken straight from the pool goes back to it, and a buffer
 * given back is the next one taken (no malloc per use). */
static void test_pool_scratch(void)
{
    /* Start from an empty pool (earlier tests may have filled it). */
    uint8_t *held[4];
    unsigned n_held = 0;
    while (zt_buf_pool_count() > 0)
        held[n_held++] = zt_buf_pool_take();
    unsigned base = zt_buf_pool_count();
    uint8_t *p = zt_buf_pool_take();
    CHECK(p != NULL);
    p[0] = 1;
    p[ZT_BUF_POOL_CAP - 1] = 2; /* the whole size is usable (ASan checks) */
    zt_buf_pool_give(p);
    CHECK_EQ_INT(zt_buf_pool_count(), base + 1);
    CHECK(zt_buf_pool_take() == p);
    CHECK_EQ_INT(zt_buf_pool_count(), base);
    /* A buffer taken this way can back a zt_buf's first reservation later. */
    zt_buf_pool_give(p);
    struct zt_buf b = {0};
    CHECK(zt_buf_reserve(&b, ZT_BUF_POOL_CAP) == p);
    zt_buf_release(&b);
    CHECK_EQ_INT(zt_buf_pool_count(), base + 1);
    while (n_held > 0)
        zt_buf_pool_give(held[--n_held]);
}

/* Growing a pooled buffer keeps its bytes and gives the pooled one back. */
static void test_grow_from_pool(void)
{
    uint8_t *held[4];
    unsigned n_held = 0;
    while (zt_buf_pool_count() > 0)
        held[n_held++] = zt_buf_pool_take();
    struct zt_buf b = {0};
    uint8_t *p = zt_buf_reserve(&b, ZT_BUF_POOL_CAP);
    memcpy(p, "abc", 3);
    zt_buf_commit(&b, 3);
    zt_buf_consume(&b, 1);
    zt_buf_reserve(&b, ZT_BUF_POOL_CAP);
    CHECK(b.cap > ZT_BUF_POOL_CAP);
    CHECK_EQ_INT(b.len, 2);
    CHECK(memcmp(zt_buf_head(&b), "bc", 2) == 0);
    CHECK_EQ_INT(zt_buf_pool_count(), 1);
    zt_buf_release(&b);
    while (n_held > 0)
        zt_buf_pool_give(held[--n_held]);
}

int main(void)
{
    RUN(test_grow_and_consume);
    RUN(test_pool);
    RUN(test_pool_per_thread);
    RUN(test_pool_scratch);
    RUN(test_grow_from_pool);
    return TEST_REPORT();
}
