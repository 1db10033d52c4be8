#include "test.h"

#include "base/err.h"
#include "base/log.h"

#include <errno.h>

static void test_strerror_project_codes(void)
{
    CHECK_EQ_STR(zt_strerror(ZT_E_DENIED), "denied by policy");
    CHECK_EQ_STR(zt_strerror(-ECONNREFUSED), "Connection refused");
    CHECK_EQ_STR(zt_strerror(-5000), "unknown error");
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
    RUN(test_log_level_parse);
    return TEST_REPORT();
}
