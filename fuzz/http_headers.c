/* Fuzzes the baggage, forwarded and traceparent parsers with the same input.
 * Invariants: outputs are empty on error and printable ASCII within their
 * caps on success; anything parsed formats without error, and parsing the
 * formatted text gives back exactly what was parsed; a smaller caller
 * buffer for forwarded either gets the same value or "" (never a prefix). */
#include "base/err.h"
#include "telemetry/headers.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(const char *v, size_t cap)
{
    size_t n = strnlen(v, cap);
    if (n == cap || n > ZT_TELEMETRY_VALUE_MAX)
        __builtin_trap();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            __builtin_trap();
}

static void fuzz_baggage(const char *s, size_t len)
{
    static const struct zt_telemetry_baggage zero;
    struct zt_telemetry_baggage a, b;
    char buf[ZT_TELEMETRY_HEADER_MAX];
    int rc = zt_telemetry_baggage_parse(s, len, &a);

    if (rc != 0) {
        if (rc != ZT_E_PROTO || memcmp(&a, &zero, sizeof(a)) != 0)
            __builtin_trap();
        return;
    }
    check_value(a.cluster, sizeof(a.cluster));
    check_value(a.namespace_, sizeof(a.namespace_));
    check_value(a.workload, sizeof(a.workload));
    check_value(a.service, sizeof(a.service));
    check_value(a.version, sizeof(a.version));
    check_value(a.region, sizeof(a.region));
    check_value(a.zone, sizeof(a.zone));
    if ((a.workload[0] == '\0') != (a.workload_type[0] == '\0'))
        __builtin_trap();

    int n = zt_telemetry_baggage_format(&a, buf, sizeof(buf));
    if (n < 0 || (n == 0) == a.any)
        __builtin_trap();
    if (zt_telemetry_baggage_parse(buf, (size_t)n, &b) != 0 || memcmp(&a, &b, sizeof(a)) != 0)
        __builtin_trap();
}

static void fuzz_forwarded(const char *s, size_t len)
{
    char host[ZT_TELEMETRY_VALUE_MAX + 1], for_[ZT_TELEMETRY_VALUE_MAX + 1];
    char host2[ZT_TELEMETRY_VALUE_MAX + 1], for2[ZT_TELEMETRY_VALUE_MAX + 1];
    char small_host[9], small_for[5];
    char buf[4 * ZT_TELEMETRY_VALUE_MAX + 32];
    int rc = zt_telemetry_forwarded_parse(s, len, host, sizeof(host), for_, sizeof(for_));

    if (rc != 0) {
        if (rc != ZT_E_PROTO || host[0] || for_[0])
            __builtin_trap();
        return;
    }
    check_value(host, sizeof(host));
    check_value(for_, sizeof(for_));

    if (zt_telemetry_forwarded_parse(s, len, small_host, sizeof(small_host), small_for,
                                     sizeof(small_for)) != 0)
        __builtin_trap();
    if (strcmp(small_host, strlen(host) < sizeof(small_host) ? host : "") != 0 ||
        strcmp(small_for, strlen(for_) < sizeof(small_for) ? for_ : "") != 0)
        __builtin_trap();

    int n = zt_telemetry_forwarded_format(for_, host, buf, sizeof(buf));
    if (n < 0)
        __builtin_trap();
    if (zt_telemetry_forwarded_parse(buf, (size_t)n, host2, sizeof(host2), for2, sizeof(for2)) !=
            0 ||
        strcmp(host, host2) != 0 || strcmp(for_, for2) != 0)
        __builtin_trap();
}

static void fuzz_traceparent(const char *s, size_t len)
{
    static const struct zt_telemetry_traceparent zero;
    struct zt_telemetry_traceparent a, b;
    char buf[ZT_TELEMETRY_TRACEPARENT_LEN + 1];
    int rc = zt_telemetry_traceparent_parse(s, len, &a);

    if (rc != 0) {
        if (rc != ZT_E_PROTO || memcmp(&a, &zero, sizeof(a)) != 0)
            __builtin_trap();
        return;
    }
    if (zt_telemetry_traceparent_format(&a, buf, sizeof(buf)) != ZT_TELEMETRY_TRACEPARENT_LEN)
        __builtin_trap();
    if (zt_telemetry_traceparent_parse(buf, ZT_TELEMETRY_TRACEPARENT_LEN, &b) != 0 ||
        memcmp(&a, &b, sizeof(a)) != 0)
        __builtin_trap();
    /* A version-00 header is reproduced byte for byte, whitespace aside. */
    while (len > 0 && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len >= 3 && memcmp(s, "00-", 3) == 0 &&
        (len != ZT_TELEMETRY_TRACEPARENT_LEN || memcmp(s, buf, len) != 0))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy, so ASan catches any read past len. */
    char *s = malloc(size ? size : 1);

    if (!s)
        abort();
    memcpy(s, data, size);
    fuzz_baggage(s, size);
    fuzz_forwarded(s, size);
    fuzz_traceparent(s, size);
    free(s);
    return 0;
}
