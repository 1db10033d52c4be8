#include "base/buf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Buffers of ZT_BUF_POOL_CAP bytes (the relay's reads) are kept for reuse
 * by their thread, a few at most, so a connection takes one only while it
 * has bytes in flight and giving it back costs no free/malloc. A thread's
 * pool is freed when it exits. */
#define POOL_SLOTS 4
#define POOL_MIN (16 * 1024) /* smaller reservations grow from 4 KiB as before */

struct pool {
    uint8_t *slot[POOL_SLOTS];
    unsigned n;
};
static _Thread_local struct pool pool;
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_free(void *arg)
{
    struct pool *p = arg;
    while (p->n > 0)
        free(p->slot[--p->n]);
}

static void pool_key_init(void)
{
    if (pthread_key_create(&pool_key, pool_free) != 0)
        abort();
}

uint8_t *zt_buf_pool_take(void)
{
    if (pool.n > 0)
        return pool.slot[--pool.n];
    uint8_t *p = malloc(ZT_BUF_POOL_CAP);
    if (!p)
        abort();
    return p;
}

void zt_buf_pool_give(uint8_t *p)
{
    if (pool.n == POOL_SLOTS) {
        free(p);
        return;
    }
    if (pool.n == 0) {
        /* The destructor runs at thread exit only with a non-NULL value. */
        pthread_once(&pool_once, pool_key_init);
        if (pthread_getspecific(pool_key) == NULL && pthread_setspecific(pool_key, &pool) != 0) {
            free(p);
            return;
        }
    }
    pool.slot[pool.n++] = p;
}

unsigned zt_buf_pool_count(void)
{
    return pool.n;
}

uint8_t *zt_buf_reserve(struct zt_buf *b, size_t n)
{
    if (!b->data && n >= POOL_MIN && n <= ZT_BUF_POOL_CAP) {
        b->data = zt_buf_pool_take();
        b->cap = ZT_BUF_POOL_CAP;
        b->off = b->len = 0;
        return b->data;
    }
    if (b->off + b->len + n <= b->cap)
        return b->data + b->off + b->len;
    /* Compact first: most of the time the head has been consumed. */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
        if (b->len + n <= b->cap)
            return b->data + b->len;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    /* Only the bytes held move (realloc would copy the whole old block, a
     * pooled one included, and keep it from its pool). */
    uint8_t *p = malloc(cap);
    if (!p)
        abort();
    if (b->len)
        memcpy(p, b->data, b->len);
    if (b->data && b->cap == ZT_BUF_POOL_CAP)
        zt_buf_pool_give(b->data);
    else
        free(b->data);
    b->data = p;
    b->cap = cap;
    return b->data + b->len;
}

void zt_buf_commit(struct zt_buf *b, size_t n)
{
    b->len += n;
}

void zt_buf_append(struct zt_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(zt_buf_reserve(b, n), p, n);
    b->len += n;
}

void zt_buf_consume(struct zt_buf *b, size_t n)
{
    if (n >= b->len) {
        b->off = 0;
        b->len = 0;
        return;
    }
    b->off += n;
    b->len -= n;
}

void zt_buf_release(struct zt_buf *b)
{
    if (b->data && b->cap == ZT_BUF_POOL_CAP)
        zt_buf_pool_give(b->data);
    else
        free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
