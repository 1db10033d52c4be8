#include "base/buf.h"

#include <stdlib.h>
#include <string.h>

uint8_t *zt_buf_reserve(struct zt_buf *b, size_t n)
{
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
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        abort();
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
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
