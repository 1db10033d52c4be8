/* Fuzzes the waypoint's traceparent step (zt_telemetry_traceparent_child)
 * with the parser under it. Invariants: the result always formats as a
 * valid version-00 value that parses back to itself; a continued trace
 * keeps the parsed trace id and flags and never the parent id; a value
 * the parser rejects is never continued. */
#include "base/err.h"
#include "telemetry/headers.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct zt_telemetry_traceparent in, out, back;
    char buf[ZT_TELEMETRY_TRACEPARENT_LEN + 1];
    int parsed = zt_telemetry_traceparent_parse(s, size, &in);
    bool cont = zt_telemetry_traceparent_child(s, size, &out);

    if (cont != (parsed == 0))
        __builtin_trap();
    if (zt_telemetry_traceparent_format(&out, buf, sizeof(buf)) != ZT_TELEMETRY_TRACEPARENT_LEN)
        __builtin_trap();
    if (zt_telemetry_traceparent_parse(buf, ZT_TELEMETRY_TRACEPARENT_LEN, &back) != 0 ||
        memcmp(&back, &out, sizeof(back)) != 0)
        __builtin_trap();
    if (cont && (strcmp(out.trace_id, in.trace_id) != 0 || out.flags != in.flags ||
                 strcmp(out.parent_id, in.parent_id) == 0))
        __builtin_trap();
    if (!cont && out.flags != 0)
        __builtin_trap();
    return 0;
}
