#include "base/random.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define RANDOM_RESERVE 512

static _Thread_local struct {
    uint8_t b[RANDOM_RESERVE];
    size_t left; /* unused bytes at the end of b */
} reserve;

static void fill_from_kernel(uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            arc4random_buf(p, n); /* aborts rather than fail */
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

void zt_random(void *buf, size_t n)
{
    uint8_t *out = buf;
    if (n > RANDOM_RESERVE / 4) {
        fill_from_kernel(out, n);
        return;
    }
    if (reserve.left < n) {
        fill_from_kernel(reserve.b, RANDOM_RESERVE);
        reserve.left = RANDOM_RESERVE;
    }
    uint8_t *src = reserve.b + RANDOM_RESERVE - reserve.left;
    memcpy(out, src, n);
    memset(src, 0, n);
    reserve.left -= n;
}

uint32_t zt_random_u32(void)
{
    uint32_t v;
    zt_random(&v, sizeof(v));
    return v;
}

uint32_t zt_random_below(uint32_t n)
{
    if (n <= 1)
        return 0;
    /* Values below 2^32 mod n would make the low results likelier. */
    uint32_t floor = (uint32_t)(-n) % n;
    for (;;) {
        uint32_t v = zt_random_u32();
        if (v >= floor)
            return v % n;
    }
}
