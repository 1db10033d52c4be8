/* Minimal unit-test harness: each tests/unit/.../test_*.c is one binary.
 *
 *   static void test_thing(void) { CHECK(1 + 1 == 2); CHECK_EQ_STR(a, b); }
 *   int main(void) { RUN(test_thing); return TEST_REPORT(); }
 *
 * A failed CHECK ends that test function (return) and marks it failed; the
 * binary prints "N passed, N failed" and exits non-zero on any failure.
 *
 * A test that cannot run here (a tool missing, not root, not at the
 * repository root) calls SKIP(why), or main returns SKIP_ALL(why): it is
 * counted as skipped, never as passed ("N skipped" is printed before the
 * totals). Under CI=true, where everything is installed and the suite runs
 * as root, a skip counts as a failure. */
#ifndef ZT_TEST_H
#define ZT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int zt_test_passed, zt_test_failed, zt_test_cur_failed;
static int zt_test_skipped, zt_test_cur_skipped;

/* Records a skip (or, under CI=true, a failure); returns 1 if it failed. */
static inline int zt_test_skip_(const char *why)
{
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "  cannot run: %s (a failure under CI=true)\n", why);
        zt_test_cur_failed = 1;
        return 1;
    }
    fprintf(stderr, "  skipped: %s\n", why);
    zt_test_cur_skipped = 1;
    return 0;
}

#define SKIP(why)                                                                                  \
    do {                                                                                           \
        zt_test_skip_(why);                                                                        \
        return;                                                                                    \
    } while (0)

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
        zt_test_cur_failed = zt_test_cur_skipped = 0;                                              \
        fn();                                                                                      \
        if (zt_test_cur_failed) {                                                                  \
            zt_test_failed++;                                                                      \
            fprintf(stderr, "FAIL %s\n", #fn);                                                     \
        } else if (zt_test_cur_skipped) {                                                          \
            zt_test_skipped++;                                                                     \
            fprintf(stderr, "SKIP %s\n", #fn);                                                     \
        } else {                                                                                   \
            zt_test_passed++;                                                                      \
            fprintf(stderr, "ok   %s\n", #fn);                                                     \
        }                                                                                          \
    } while (0)

#define TEST_REPORT()                                                                              \
    ((zt_test_skipped ? printf("%d skipped\n", zt_test_skipped) : 0),                              \
     printf("%d passed, %d failed\n", zt_test_passed, zt_test_failed), zt_test_failed ? 1 : 0)

/* From main: the whole binary cannot run here; counts one skip (or one
 * failure under CI=true) and reports. */
#define SKIP_ALL(why) (zt_test_skip_(why) ? zt_test_failed++ : zt_test_skipped++, TEST_REPORT())

#endif
