/* HTTP message heads: copies, lower-case names, replace/remove, the caps. */
#include "test.h"
#include "base/err.h"
#include "http/head.h"

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

int main(void)
{
    RUN(test_fields);
    RUN(test_limits);
    return TEST_REPORT();
}
