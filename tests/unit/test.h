/* Minimal unit-test harness: each tests/unit/.../test_*.c is one binary.
 *
 *   static void test_thing(void) { CHECK(1 + 1 == 2); CHECK_EQ_STR(a, b); }
 *   int main(void) { RUN(test_thing); return TEST_REPORT(); }
 *
 * A failed CHECK ends that test function (return) and marks it failed; the
 * binary prints "N passed, N failed" and exits non-zero on any failure. */
#ifndef ZT_TEST_H
#define ZT_TEST_H

#include <stdio.h>
#include <string.h>

static int zt_test_passed, zt_test_failed, zt_test_cur_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);             \
            zt_test_cur_failed = 1;                                                                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long zt_a_ = (long long)(a), zt_b_ = (long long)(b);                                  \
        if (zt_a_ != zt_b_) {                                                                      \
            fprintf(stderr, "  %s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__,          \
                    __LINE__, #a, #b, zt_a_, zt_b_);                                               \
            zt_test_cur_failed = 1;                                                                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *zt_a_ = (a), *zt_b_ = (b);                                                     \
        if (!zt_a_ || !zt_b_ || strcmp(zt_a_, zt_b_) != 0) {                                       \
            fprintf(stderr, "  %s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__,      \
                    __LINE__, #a, #b, zt_a_ ? zt_a_ : "(null)", zt_b_ ? zt_b_ : "(null)");         \
            zt_test_cur_failed = 1;                                                                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        zt_test_cur_failed = 0;                                                                    \
        fn();                                                                                      \
        if (zt_test_cur_failed) {                                                                  \
            zt_test_failed++;                                                                      \
            fprintf(stderr, "FAIL %s\n", #fn);                                                     \
        } else {                                                                                   \
            zt_test_passed++;                                                                      \
            fprintf(stderr, "ok   %s\n", #fn);                                                     \
        }                                                                                          \
    } while (0)

#define TEST_REPORT()                                                                              \
    (printf("%d passed, %d failed\n", zt_test_passed, zt_test_failed), zt_test_failed ? 1 : 0)

#endif
