#include "test.h"

#include "base/random.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Draws across several refills of the per-thread reserve, and one larger
 * than the reserve serves, are all different (a repeated 8-byte draw would
 * mean the reserve handed bytes out twice), and every byte value turns up. */
static void test_draws(void)
{
    enum { N = 1000 };
    static uint64_t v[N];
    unsigned seen[256] = {0};
    for (int i = 0; i < N; i++) {
        zt_random(&v[i], sizeof(v[i]));
        for (int k = 0; k < 8; k++)
            seen[(v[i] >> (8 * k)) & 0xff]++;
    }
    int dups = 0, missing = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            dups += v[i] == v[j];
    for (int b = 0; b < 256; b++)
        missing += seen[b] == 0;
    uint8_t big[4096] = {0}, zero[4096] = {0};
    zt_random(big, sizeof(big));
    uint32_t a = zt_random_u32(), b = zt_random_u32();
    uint32_t c = zt_random_u32();
    CHECK_EQ_INT(dups, 0);
    CHECK_EQ_INT(missing, 0);
    CHECK(memcmp(big, zero, sizeof(big)) != 0);
    CHECK(!(a == b && b == c));
}

/* zt_random_below stays in range, reaches both ends, and is about uniform:
 * over 3 values (2^32 is not a multiple of 3) each count is within 5% of a
 * third of 30000 draws (a >5-sigma deviation for a fair draw). */
static void test_below(void)
{
    CHECK_EQ_INT(zt_random_below(0), 0);
    CHECK_EQ_INT(zt_random_below(1), 0);
    unsigned count[3] = {0};
    int out_of_range = 0;
    for (int i = 0; i < 30000; i++) {
        uint32_t v = zt_random_below(3);
        if (v >= 3)
            out_of_range++;
        else
            count[v]++;
    }
    CHECK_EQ_INT(out_of_range, 0);
    for (int k = 0; k < 3; k++)
        CHECK(count[k] > 9500 && count[k] < 10500);
    bool top = false, bottom = false;
    for (int i = 0; i < 2000 && !(top && bottom); i++) {
        uint32_t v = zt_random_below(UINT32_MAX);
        top |= v > UINT32_MAX - UINT32_MAX / 8;
        bottom |= v < UINT32_MAX / 8;
        CHECK(v < UINT32_MAX);
    }
    CHECK(top && bottom);
}

int main(void)
{
    RUN(test_draws);
    RUN(test_below);
    return TEST_REPORT();
}
