#include "test.h"

#include "base/err.h"
#include "base/log.h"

#include <errno.h>

static void test_strerror_project_codes(void)
{
    CHECK_EQ_STR(zt_strerror(ZT_E_DENIED), "denied by policy");
    CHECK_EQ_STR(zt_strerror(ZT_E_RATE_LIMITED), "rate limited");
    CHECK_EQ_STR(zt_strerror(-ECONNREFUSED), "Connection refused");
    CHECK_EQ_STR(zt_strerror(-5000), "unknown error");
}

static void test_errf_code_and_text(void)
{
    char buf[64];
    CHECK_EQ_INT(zt_errf(buf, sizeof(buf), ZT_E_CONFIG, "port %d: %s", 80, "taken"), ZT_E_CONFIG);
    CHECK_EQ_STR(buf, "port 80: taken");
    CHECK_EQ_INT(zt_errf(buf, sizeof(buf), 0, "ok"), 0);
    CHECK_EQ_STR(buf, "ok");
    CHECK_EQ_INT(zt_errf(buf, sizeof(buf), -EINVAL, "%s", ""), -EINVAL);
    CHECK_EQ_STR(buf, "");
}

/* A message of exactly errlen - 1 bytes fits; one more byte is cut, and
 * nothing is written past errlen. */
static void test_errf_truncation(void)
{
    char buf[8];
    memset(buf, 'x', sizeof(buf));
    CHECK_EQ_INT(zt_errf(buf, 5, ZT_E_PROTO, "%s", "abcd"), ZT_E_PROTO);
    CHECK_EQ_STR(buf, "abcd");
    CHECK(buf[5] == 'x');
    memset(buf, 'x', sizeof(buf));
    zt_errf(buf, 5, ZT_E_PROTO, "%s", "abcde");
    CHECK_EQ_STR(buf, "abcd");
    CHECK(buf[5] == 'x');
    memset(buf, 'x', sizeof(buf));
    zt_errf(buf, 1, ZT_E_PROTO, "%s", "abcde");
    CHECK_EQ_STR(buf, "");
    CHECK(buf[1] == 'x');
}

static void test_errf_no_buffer(void)
{
    char buf[4] = "abc";
    CHECK_EQ_INT(zt_errf(buf, 0, ZT_E_TLS, "%s", "never written"), ZT_E_TLS);
    CHECK_EQ_STR(buf, "abc");
    CHECK_EQ_INT(zt_errf(NULL, 0, ZT_E_TLS, "x"), ZT_E_TLS);
    CHECK_EQ_INT(zt_errf(NULL, 16, ZT_E_TLS, "x"), ZT_E_TLS);
    CHECK_EQ_INT(zt_errf_at(buf, 0, ZT_E_CONFIG, "where", "%s", "never"), ZT_E_CONFIG);
    CHECK_EQ_STR(buf, "abc");
    CHECK_EQ_INT(zt_errf_at(NULL, 16, ZT_E_CONFIG, "where", "x"), ZT_E_CONFIG);
}

static void test_errf_at(void)
{
    char buf[32];
    CHECK_EQ_INT(zt_errf_at(buf, sizeof(buf), ZT_E_CONFIG, "f.yaml:3: a.b", "bad %s", "port"),
                 ZT_E_CONFIG);
    CHECK_EQ_STR(buf, "f.yaml:3: a.b: bad port");
    /* Truncation at errlen - 1: inside the reason, then inside the prefix. */
    char small[12];
    memset(small, 'x', sizeof(small));
    zt_errf_at(small, 10, 0, "name", "%s", "reasons");
    CHECK_EQ_STR(small, "name: rea");
    CHECK(small[10] == 'x');
    zt_errf_at(small, 10, 0, "name", "%s", "rea");
    CHECK_EQ_STR(small, "name: rea");
    zt_errf_at(small, 5, 0, "name", "%s", "reason");
    CHECK_EQ_STR(small, "name");
    zt_errf_at(small, 6, 0, "name", "%s", "reason");
    CHECK_EQ_STR(small, "name:");
    zt_errf_at(small, 7, 0, "name", "%s", "reason");
    CHECK_EQ_STR(small, "name: ");
}

static void test_log_level_parse(void)
{
    enum zt_log_level l;
    CHECK_EQ_INT(zt_log_level_parse("DEBUG", &l), 0);
    CHECK_EQ_INT(l, ZT_LOG_DEBUG);
    CHECK_EQ_INT(zt_log_level_parse("warning", &l), 0);
    CHECK_EQ_INT(l, ZT_LOG_WARN);
    CHECK_EQ_INT(zt_log_level_parse("loud", &l), ZT_E_CONFIG);
}

int main(void)
{
    RUN(test_strerror_project_codes);
    RUN(test_errf_code_and_text);
    RUN(test_errf_truncation);
    RUN(test_errf_no_buffer);
    RUN(test_errf_at);
    RUN(test_log_level_parse);
    return TEST_REPORT();
}
