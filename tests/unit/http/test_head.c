/* HTTP message heads: copies, lower-case names, replace/remove, the caps. */
#include "test.h"
#include "base/err.h"
#include "http/head.h"

#include <stdio.h>
#include <string.h>

static void test_fields(void)
{
    struct zt_http_head h;
    zt_http_head_init(&h, false);
    CHECK(zt_http_head_set_part(&h, &h.method, "GET", 3) == 0);
    CHECK(zt_http_head_add(&h, "X-A", 3, "1", 1) == 0);
    CHECK(zt_http_head_add(&h, "x-a", 3, "2", 1) == 0);
    CHECK(zt_http_head_add(&h, "Host", 4, "svc", 3) == 0);
    CHECK_EQ_STR(h.fields[0].name, "x-a");
    CHECK_EQ_STR(zt_http_head_get(&h, "X-a"), "1");
    CHECK(zt_http_head_count(&h, "x-A") == 2);
    CHECK(zt_http_head_set(&h, "X-A", "3") == 0);
    CHECK(zt_http_head_count(&h, "x-a") == 1);
    CHECK_EQ_STR(zt_http_head_get(&h, "x-a"), "3");
    CHECK(zt_http_head_remove(&h, "HOST") == 1);
    CHECK(zt_http_head_get(&h, "host") == NULL);
    CHECK(h.bytes == 3 + 3 + 1);
    zt_http_head_reset(&h, true);
    CHECK(h.n_fields == 0 && h.method == NULL && h.bytes == 0 && h.is_response);
    zt_http_head_cleanup(&h);
}

static void test_limits(void)
{
    struct zt_http_head h;
    zt_http_head_init(&h, false);
    for (int i = 0; i < ZT_HTTP_MAX_FIELDS; i++)
        CHECK(zt_http_head_add(&h, "a", 1, "b", 1) == 0);
    CHECK(zt_http_head_add(&h, "a", 1, "b", 1) == ZT_E_TOO_BIG);
    CHECK(zt_http_head_set(&h, "c", "d") == ZT_E_TOO_BIG);
    CHECK(zt_http_head_set(&h, "a", "d") == 0); /* replaces all 100 by one */
    CHECK(h.n_fields == 1);
    zt_http_head_cleanup(&h);
    zt_http_head_init(&h, false);
    static char big[ZT_HTTP_HEAD_MAX];
    memset(big, 'v', sizeof(big));
    CHECK(zt_http_head_add(&h, "n", 1, big, sizeof(big) - 1) == 0); /* exactly at the cap */
    CHECK(zt_http_head_add(&h, "m", 1, "", 0) == ZT_E_TOO_BIG);
    CHECK(zt_http_head_set_part(&h, &h.path, "/", 1) == ZT_E_TOO_BIG);
    CHECK(h.path == NULL && h.n_fields == 1);
    zt_http_head_cleanup(&h);
}

/* Strings live in blocks of the head's: those handed out stay valid while
 * later ones need new blocks (a long value, many fields), a part set to a
 * piece of its own old value reads right, and a reset head (one block
 * kept) takes the next message whole. */
static void test_string_blocks(void)
{
    struct zt_http_head h;
    zt_http_head_init(&h, false);
    CHECK(zt_http_head_set_part(&h, &h.path, "/first/path", 11) == 0);
    const char *first = h.path;
    static char big[5000];
    memset(big, 'x', sizeof(big));
    char name[16];
    for (int m = 0; m < 3; m++) {
        for (int i = 0; i < 60; i++) {
            snprintf(name, sizeof(name), "N-%d", i);
            CHECK(zt_http_head_add(&h, name, strlen(name), big, (size_t)(i % 7) * 100) == 0);
        }
        CHECK(zt_http_head_add(&h, "long", 4, big, sizeof(big)) == 0);
        if (m == 0) {
            CHECK(first == h.path);
            CHECK_EQ_STR(h.path, "/first/path");
            CHECK(zt_http_head_set_part(&h, &h.path, h.path + 6, 5) == 0);
            CHECK_EQ_STR(h.path, "/path");
        }
        CHECK_EQ_STR(h.fields[3].name, "n-3");
        CHECK(strlen(h.fields[3].value) == 300);
        CHECK(strlen(zt_http_head_get(&h, "long")) == sizeof(big));
        CHECK(zt_http_head_remove(&h, "n-1") == 1);
        CHECK(zt_http_head_set(&h, "N-2", "two") == 0);
        CHECK_EQ_STR(zt_http_head_get(&h, "n-2"), "two");
        CHECK(h.n_fields == 60);
        zt_http_head_reset(&h, false);
        CHECK(h.n_fields == 0 && h.bytes == 0 && h.path == NULL);
    }
    /* A moved head (zt_http1_parser_take_head's way) is cleaned up once. */
    CHECK(zt_http_head_add(&h, "a", 1, "b", 1) == 0);
    struct zt_http_head moved = h;
    zt_http_head_init(&h, false);
    CHECK_EQ_STR(zt_http_head_get(&moved, "a"), "b");
    zt_http_head_cleanup(&h);
    zt_http_head_cleanup(&moved);
}

int main(void)
{
    RUN(test_fields);
    RUN(test_limits);
    RUN(test_string_blocks);
    return TEST_REPORT();
}
