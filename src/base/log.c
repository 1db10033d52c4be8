#include "base/log.h"

#include "base/err.h"

#include <jansson.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = ZT_LOG_INFO;
static _Atomic bool json_mode;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

const char *zt_log_level_str(enum zt_log_level level)
{
    if ((int)level < 0 || level > ZT_LOG_TRACE)
        return "?";
    return level_names[level];
}

int zt_log_level_parse(const char *s, enum zt_log_level *out)
{
    for (int i = 0; i <= ZT_LOG_TRACE; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum zt_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = ZT_LOG_WARN;
        return 0;
    }
    return ZT_E_CONFIG;
}

void zt_log_set_level(enum zt_log_level level)
{
    atomic_store(&current_level, (int)level);
}

enum zt_log_level zt_log_get_level(void)
{
    return (enum zt_log_level)atomic_load(&current_level);
}

bool zt_log_enabled(enum zt_log_level level)
{
    return (int)level <= atomic_load(&current_level);
}

void zt_log_set_json(bool on)
{
    atomic_store(&json_mode, on);
}

bool zt_log_is_json(void)
{
    return atomic_load(&json_mode);
}

static void timestamp(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

/* One write per line keeps lines from different threads whole. */
static void emit(const char *line, size_t len)
{
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

static bool all_digits(const char *v)
{
    if (!*v || strlen(v) > 18)
        return false;
    for (const char *p = v; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

static void emit_json(enum zt_log_level level, const char *scope, const char *message,
                      const char *const *kv, size_t n)
{
    char ts[64];
    timestamp(ts, sizeof(ts));
    json_t *o = json_object();
    json_object_set_new(o, "level", json_string(zt_log_level_str(level)));
    json_object_set_new(o, "time", json_string(ts));
    json_object_set_new(o, "scope", json_string(scope));
    /* Messages from the process are ASCII or UTF-8; anything else is
     * replaced rather than dropped. */
    json_t *m = json_string(message);
    json_object_set_new(o, "message", m ? m : json_string("(message not UTF-8)"));
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[2 * i], *v = kv[2 * i + 1];
        if (!k || !v || !*v)
            continue;
        json_t *jv = all_digits(v) ? json_integer(strtoll(v, NULL, 10)) : json_string(v);
        if (!jv)
            jv = json_string("(not UTF-8)");
        json_object_set_new(o, k, jv);
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text)
        return;
    size_t len = strlen(text);
    char *line = malloc(len + 2);
    if (!line)
        abort();
    memcpy(line, text, len);
    line[len] = '\n';
    emit(line, len + 1);
    free(line);
    free(text);
}

void zt_log(enum zt_log_level level, const char *scope, const char *fmt, ...)
{
    if (!zt_log_enabled(level))
        return;
    char msg[3072];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (m < 0)
        msg[0] = 0;
    if (zt_log_is_json()) {
        emit_json(level, scope, msg, NULL, 0);
        return;
    }
    char line[4096], ts[64];
    timestamp(ts, sizeof(ts));
    int len =
        snprintf(line, sizeof(line) - 1, "%s\t%s\t%s\t%s", ts, zt_log_level_str(level), scope, msg);
    if (len < 0)
        return;
    if ((size_t)len > sizeof(line) - 2)
        len = (int)sizeof(line) - 2;
    line[len++] = '\n';
    emit(line, (size_t)len);
}

/* ---- key=value fields ---- */

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
    if (!k || !v || !*v)
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
            int w = snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(o, esc, (size_t)w);
        } else {
            put(o, (const char *)&c, 1);
        }
    }
    put(o, "\"", 1);
}

size_t zt_log_format_kv(char *buf, size_t cap, const char *const *kv, size_t n)
{
    struct out o = {buf, cap, 0};
    if (cap)
        buf[0] = 0;
    for (size_t i = 0; i < n; i++)
        field(&o, kv[2 * i], kv[2 * i + 1]);
    return o.len;
}

void zt_log_kv(enum zt_log_level level, const char *scope, const char *message,
               const char *const *kv, size_t n)
{
    if (!zt_log_enabled(level))
        return;
    if (zt_log_is_json()) {
        emit_json(level, scope, message, kv, n);
        return;
    }
    char fields[3072];
    zt_log_format_kv(fields, sizeof(fields), kv, n);
    zt_log(level, scope, "%s\t%s", message, fields);
}
