/* A growable byte buffer with a read offset, used for relay and TLS output.
 *
 * Memory is allocated lazily on first append and can be released with
 * zt_buf_release() when the owner goes idle, so idle connections cost no
 * buffer memory. Out of memory aborts. Not thread-safe: a buffer is used by
 * one thread at a time. */
#ifndef ZT_BASE_BUF_H
#define ZT_BASE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct zt_buf {
    uint8_t *data;
    size_t off; /* first unread byte */
    size_t len; /* bytes after off */
    size_t cap;
};

static inline uint8_t *zt_buf_head(const struct zt_buf *b)
{
    return b->data + b->off;
}

/* Makes room for at least `n` more bytes at the tail and returns a pointer to
 * it; the caller writes up to n bytes and then calls zt_buf_commit(). */
uint8_t *zt_buf_reserve(struct zt_buf *b, size_t n);
void zt_buf_commit(struct zt_buf *b, size_t n);
void zt_buf_append(struct zt_buf *b, const void *p, size_t n);
/* Drops `n` bytes from the head. */
void zt_buf_consume(struct zt_buf *b, size_t n);
/* Frees the storage (the buffer must be empty or the caller discards it). */
void zt_buf_release(struct zt_buf *b);

/* A first reservation of 16-256 KiB takes a 256 KiB buffer from the calling
 * thread's small pool, and releasing a 256 KiB buffer gives it back there
 * (at most 4 kept per thread, freed at thread exit): the relay's read
 * buffers cost no malloc/free per burst, and a bulk burst is read with one
 * recv(2) into a buffer that never grows (growing copies what it holds).
 * Pages a buffer never had written into cost no memory. */
#define ZT_BUF_POOL_CAP (256 * 1024)
/* A ZT_BUF_POOL_CAP-byte buffer from the calling thread's pool (malloc'd if
 * it is empty; never NULL), and back. For a thread's scratch space: a
 * _Thread_local array would be zeroed, every page of it, in every thread
 * at its start, whether it ever uses it or not. */
uint8_t *zt_buf_pool_take(void);
void zt_buf_pool_give(uint8_t *p);
/* Buffers in the calling thread's pool (tests). */
unsigned zt_buf_pool_count(void);

#endif
