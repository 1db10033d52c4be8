#include "base/log.h"

#include "base/err.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = ZT_LOG_INFO;

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

void zt_log(enum zt_log_level level, const char *scope, const char *fmt, ...)
{
    if (!zt_log_enabled(level))
        return;
    char line[4096];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\t%s\t%s\t",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000, zt_log_level_str(level), scope);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    /* One write per line keeps lines from different threads whole. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
