/* Log lines as they reach stderr: plain key=value quoting and the JSON
 * format (LOG_FORMAT=json), captured through a pipe. */
#include "test.h"

#include "base/log.h"

#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

/* Runs fn with stderr redirected into a pipe; returns what it wrote. */
static char *capture(void (*fn)(void))
{
    static char out[8192];
    int p[2], saved = dup(STDERR_FILENO);
    if (pipe(p) < 0)
        abort();
    dup2(p[1], STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(p[1]);
    ssize_t n = read(p[0], out, sizeof(out) - 1);
    close(p[0]);
    out[n > 0 ? n : 0] = 0;
    return out;
}

static const char *const fields[] = {"src.addr", "10.0.0.1:5",  "src.identity", "",
                                     "error",    "bad \"x\"\n", "bytes_sent",   "42"};

static void log_kv(void)
{
    zt_log_kv(ZT_LOG_INFO, "access", "connection complete", fields, 4);
}

static void log_debug(void)
{
    zt_log_kv(ZT_LOG_DEBUG, "access", "connection opened", fields, 4);
}

static void test_plain_kv(void)
{
    zt_log_set_json(false);
    zt_log_set_level(ZT_LOG_INFO);
    char *line = capture(log_kv);
    CHECK(strstr(line, "\tinfo\taccess\tconnection complete\t") != NULL);
    CHECK(strstr(line, "src.addr=10.0.0.1:5 error=\"bad \\\"x\\\"\\u000a\" bytes_sent=42\n") !=
          NULL);
    CHECK(strstr(line, "src.identity") == NULL); /* empty values are left out */
}

static void test_json_kv(void)
{
    zt_log_set_json(true);
    zt_log_set_level(ZT_LOG_INFO);
    char *line = capture(log_kv);
    zt_log_set_json(false);
    json_error_t e;
    json_t *o = json_loads(line, 0, &e);
    CHECK(o != NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(o, "level")), "info");
    CHECK_EQ_STR(json_string_value(json_object_get(o, "scope")), "access");
    CHECK_EQ_STR(json_string_value(json_object_get(o, "message")), "connection complete");
    CHECK_EQ_STR(json_string_value(json_object_get(o, "src.addr")), "10.0.0.1:5");
    CHECK_EQ_STR(json_string_value(json_object_get(o, "error")), "bad \"x\"\n");
    CHECK(json_is_integer(json_object_get(o, "bytes_sent")));
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "bytes_sent")), 42);
    CHECK(json_object_get(o, "src.identity") == NULL);
    CHECK(json_string_value(json_object_get(o, "time")) != NULL);
    CHECK(line[strlen(line) - 1] == '\n' && strchr(line, '\n') == line + strlen(line) - 1);
    json_decref(o);
}

static void log_printf(void)
{
    ZT_WARN("proxy", "pod %s: %d", "a\tb", 7);
}

static void test_json_printf(void)
{
    zt_log_set_json(true);
    char *line = capture(log_printf);
    zt_log_set_json(false);
    json_t *o = json_loads(line, 0, NULL);
    CHECK(o != NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(o, "level")), "warn");
    CHECK_EQ_STR(json_string_value(json_object_get(o, "message")), "pod a\tb: 7");
    json_decref(o);
}

static void test_level_filters(void)
{
    zt_log_set_level(ZT_LOG_INFO);
    CHECK_EQ_STR(capture(log_debug), "");
    zt_log_set_level(ZT_LOG_DEBUG);
    CHECK(strstr(capture(log_debug), "connection opened") != NULL);
    zt_log_set_level(ZT_LOG_INFO);
}

int main(void)
{
    RUN(test_plain_kv);
    RUN(test_json_kv);
    RUN(test_json_printf);
    RUN(test_level_filters);
    return TEST_REPORT();
}
