#include "telemetry/accesslog.h"

#include "base/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len + 1 >= o->cap)
        return;
    size_t room = o->cap - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = 0;
}

static bool needs_quotes(const char *v)
{
    for (const char *p = v; *p; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p < 0x20)
            return true;
    return false;
}

static void field(struct out *o, const char *k, const char *v)
{
    if (!v || !*v)
        return;
    if (o->len)
        put(o, " ", 1);
    put(o, k, strlen(k));
    put(o, "=", 1);
    if (!needs_quotes(v)) {
        put(o, v, strlen(v));
        return;
    }
    put(o, "\"", 1);
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(o, esc, 2);
        } else if (c < 0x20) {
            char esc[8];
            int n = snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(o, esc, (size_t)n);
        } else {
            put(o, (const char *)&c, 1);
        }
    }
    put(o, "\"", 1);
}

static void field_u64(struct out *o, const char *k, uint64_t v, const char *suffix)
{
    char num[32];
    snprintf(num, sizeof(num), "%" PRIu64 "%s", v, suffix);
    field(o, k, num);
}

size_t zt_accesslog_format(const struct zt_accesslog *r, char *buf, size_t cap)
{
    struct out o = {buf, cap, 0};
    if (cap)
        buf[0] = 0;
    field(&o, "src.addr", r->src_addr);
    field(&o, "src.workload", r->src_workload);
    field(&o, "src.namespace", r->src_namespace);
    field(&o, "src.identity", r->src_identity);
    field(&o, "src.cluster", r->src_cluster);
    field(&o, "dst.addr", r->dst_addr);
    field(&o, "dst.hbone_addr", r->dst_hbone_addr);
    field(&o, "dst.service", r->dst_service);
    field(&o, "dst.workload", r->dst_workload);
    field(&o, "dst.namespace", r->dst_namespace);
    field(&o, "dst.identity", r->dst_identity);
    field(&o, "dst.cluster", r->dst_cluster);
    field(&o, "direction", r->direction);
    field_u64(&o, "bytes_sent", r->bytes_sent, "");
    field_u64(&o, "bytes_recv", r->bytes_recv, "");
    field_u64(&o, "duration", r->duration_ms, "ms");
    field(&o, "error", r->error);
    return o.len;
}

void zt_accesslog_emit(const struct zt_accesslog *r)
{
    char line[3072];
    zt_accesslog_format(r, line, sizeof(line));
    if (r->error && *r->error)
        zt_log(ZT_LOG_ERROR, "access", "connection complete\t%s", line);
    else
        ZT_INFO("access", "connection complete\t%s", line);
}

void zt_accesslog_emit_failed(const char *src_addr, const char *dst_addr, const char *direction,
                              const char *error)
{
    struct zt_accesslog r = {
        .src_addr = src_addr, .dst_addr = dst_addr, .direction = direction, .error = error};
    char line[1024];
    struct out o = {line, sizeof(line), 0};
    line[0] = 0;
    field(&o, "src.addr", r.src_addr);
    field(&o, "dst.addr", r.dst_addr);
    field(&o, "direction", r.direction);
    field(&o, "error", r.error);
    zt_log(ZT_LOG_WARN, "access", "connection failed\t%s", line);
}
