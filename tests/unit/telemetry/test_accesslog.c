/* Access-log records: field names and order (wire facts 7.2), omission of
 * empty fields, quoting, truncation, and the emitted lines. */
#include "test.h"

#include "base/log.h"
#include "telemetry/accesslog.h"

#include <stdlib.h>
#include <unistd.h>

static struct zt_accesslog full(void)
{
    return (struct zt_accesslog){
        .src_addr = "10.0.0.1:4567",
        .src_workload = "client-7d4f",
        .src_namespace = "ns1",
        .src_identity = "spiffe://cluster.local/ns/ns1/sa/client",
        .dst_addr = "10.0.0.2:15008",
        .dst_hbone_addr = "10.0.0.2:8080",
        .dst_service = "echo.ns2.svc.cluster.local",
        .dst_workload = "echo-5c9b",
        .dst_namespace = "ns2",
        .dst_identity = "spiffe://cluster.local/ns/ns2/sa/echo",
        .direction = "outbound",
        .bytes_sent = 123,
        .bytes_recv = 18446744073709551615ull,
        .duration_ms = 42,
        .error = "connection reset",
    };
}

static void test_all_fields_in_order(void)
{
    struct zt_accesslog r = full();
    char buf[2048];
    size_t n = zt_accesslog_format(&r, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "src.addr=10.0.0.1:4567 src.workload=client-7d4f src.namespace=ns1 "
                      "src.identity=spiffe://cluster.local/ns/ns1/sa/client "
                      "dst.addr=10.0.0.2:15008 dst.hbone_addr=10.0.0.2:8080 "
                      "dst.service=echo.ns2.svc.cluster.local dst.workload=echo-5c9b "
                      "dst.namespace=ns2 dst.identity=spiffe://cluster.local/ns/ns2/sa/echo "
                      "direction=outbound bytes_sent=123 bytes_recv=18446744073709551615 "
                      "duration=42ms error=\"connection reset\"");
    CHECK_EQ_INT(n, strlen(buf));
}

static void test_empty_fields_omitted(void)
{
    struct zt_accesslog r = full();
    r.src_workload = NULL;
    r.src_namespace = "";
    r.src_identity = NULL;
    r.dst_hbone_addr = "";
    r.dst_service = NULL;
    r.dst_identity = "";
    r.error = NULL;
    r.bytes_sent = 0;
    r.bytes_recv = 0;
    r.duration_ms = 0;
    char buf[1024];
    size_t n = zt_accesslog_format(&r, buf, sizeof(buf));
    /* Counters are always present, even at zero; no doubled or trailing spaces. */
    CHECK_EQ_STR(buf, "src.addr=10.0.0.1:4567 dst.addr=10.0.0.2:15008 dst.workload=echo-5c9b "
                      "dst.namespace=ns2 direction=outbound bytes_sent=0 bytes_recv=0 "
                      "duration=0ms");
    CHECK_EQ_INT(n, strlen(buf));

    struct zt_accesslog none = {0};
    n = zt_accesslog_format(&none, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "bytes_sent=0 bytes_recv=0 duration=0ms");
    CHECK_EQ_INT(n, strlen(buf));
}

static void test_quoting(void)
{
    static const struct {
        const char *value, *want;
    } cases[] = {
        {"plain", "error=plain"},
        {"a b", "error=\"a b\""},
        {"say \"hi\"", "error=\"say \\\"hi\\\"\""},
        {"back\\slash", "error=\"back\\\\slash\""},
        {"k=v", "error=\"k=v\""},
        {"line1\nline2", "error=\"line1\\u000aline2\""},
        {"tab\there", "error=\"tab\\u0009here\""},
        {"\x01\x1f", "error=\"\\u0001\\u001f\""},
        {"\"", "error=\"\\\"\""},
        {" ", "error=\" \""},
        /* Bytes >= 0x80 are passed through as they are. */
        {"caf\xc3\xa9", "error=caf\xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct zt_accesslog r = {.error = cases[i].value};
        char buf[256];
        zt_accesslog_format(&r, buf, sizeof(buf));
        const char *err = strstr(buf, "error=");
        CHECK(err != NULL);
        CHECK_EQ_STR(err, cases[i].want);
    }
    /* A quoted value in the middle keeps the following fields separate. */
    struct zt_accesslog r = {.src_workload = "a b", .direction = "inbound"};
    char buf[256];
    zt_accesslog_format(&r, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "src.workload=\"a b\" direction=inbound bytes_sent=0 bytes_recv=0 "
                      "duration=0ms");
}

/* Every prefix of a full record: the output is the same prefix of the full
 * line, terminated, and nothing past cap is touched. */
static void test_truncation(void)
{
    struct zt_accesslog r = full();
    r.error = "a \"quoted\"\nvalue";
    char ref[2048];
    size_t full_len = zt_accesslog_format(&r, ref, sizeof(ref));
    CHECK(full_len > 100);
    for (size_t cap = 0; cap <= full_len + 2; cap++) {
        char *buf = malloc(cap + 16);
        CHECK(buf != NULL);
        memset(buf, 'Z', cap + 16);
        size_t n = zt_accesslog_format(&r, buf, cap);
        for (size_t k = cap; k < cap + 16; k++)
            CHECK_EQ_INT(buf[k], 'Z');
        if (cap == 0) {
            CHECK_EQ_INT(n, 0);
        } else {
            size_t want = cap - 1 < full_len ? cap - 1 : full_len;
            CHECK_EQ_INT(n, want);
            CHECK_EQ_INT(buf[n], 0);
            CHECK_EQ_INT(strlen(buf), n);
            CHECK(memcmp(buf, ref, n) == 0);
        }
        free(buf);
    }
    /* An exactly fitting buffer holds the whole line. */
    char exact[2048];
    CHECK_EQ_INT(zt_accesslog_format(&r, exact, full_len + 1), full_len);
    CHECK_EQ_STR(exact, ref);
}

/* Runs fn with stderr captured into buf. */
static void capture(void (*fn)(void), char *buf, size_t cap)
{
    char path[] = "/tmp/zt-accesslog-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, buf, cap - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
}

static void emit_ok(void)
{
    struct zt_accesslog r = full();
    r.error = NULL;
    zt_accesslog_emit(&r);
}

static void emit_err(void)
{
    struct zt_accesslog r = full();
    zt_accesslog_emit(&r);
}

static void emit_failed(void)
{
    zt_accesslog_emit_failed("10.0.0.1:4567", "10.0.0.2:15008", "inbound", "policy rejection");
}

static void emit_failed_empty(void)
{
    zt_accesslog_emit_failed("10.0.0.1:4567", NULL, "inbound", "");
}

static void test_emit_lines(void)
{
    char out[4096];
    zt_log_set_level(ZT_LOG_INFO);

    capture(emit_ok, out, sizeof(out));
    CHECK(strstr(out, "\tinfo\taccess\tconnection complete\tsrc.addr=10.0.0.1:4567 ") != NULL);
    CHECK(strstr(out, "duration=42ms\n") != NULL);
    CHECK(strstr(out, "error=") == NULL);

    capture(emit_err, out, sizeof(out));
    CHECK(strstr(out, "\terror\taccess\tconnection complete\tsrc.addr=") != NULL);
    CHECK(strstr(out, " error=\"connection reset\"\n") != NULL);

    capture(emit_failed, out, sizeof(out));
    CHECK(strstr(out,
                 "\twarn\taccess\tconnection failed\tsrc.addr=10.0.0.1:4567 "
                 "dst.addr=10.0.0.2:15008 direction=inbound error=\"policy rejection\"\n") != NULL);
    /* Only addresses, direction and error: no counters. */
    CHECK(strstr(out, "bytes_sent") == NULL);

    capture(emit_failed_empty, out, sizeof(out));
    CHECK(strstr(out, "connection failed\tsrc.addr=10.0.0.1:4567 direction=inbound\n") != NULL);

    /* Below the level, a successful record is not printed; errors still are. */
    zt_log_set_level(ZT_LOG_WARN);
    capture(emit_ok, out, sizeof(out));
    CHECK_EQ_STR(out, "");
    capture(emit_err, out, sizeof(out));
    CHECK(strstr(out, "connection complete") != NULL);
    zt_log_set_level(ZT_LOG_INFO);
}

int main(void)
{
    RUN(test_all_fields_in_order);
    RUN(test_empty_fields_omitted);
    RUN(test_quoting);
    RUN(test_truncation);
    RUN(test_emit_lines);
    return TEST_REPORT();
}
