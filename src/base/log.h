/* Process-wide logging.
 *
 * Plain format, as Istio's ztunnel prints it:
 *   <RFC3339 time>\t<level>\t<scope>\t<message>
 * Access-log lines add "\tk=v k=v ..." through zt_log_fields(). Thread-safe:
 * every line is formatted into one buffer and written with a single write(2).
 * The level is global; zt_log_set_level() may be called at any time. */
#ifndef ZT_BASE_LOG_H
#define ZT_BASE_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum zt_log_level {
    ZT_LOG_ERROR = 0,
    ZT_LOG_WARN = 1,
    ZT_LOG_INFO = 2,
    ZT_LOG_DEBUG = 3,
    ZT_LOG_TRACE = 4
};

const char *zt_log_level_str(enum zt_log_level level);

/* Parses "error|warn|info|debug|trace" (case-insensitive). Returns 0 or
 * ZT_E_CONFIG. */
int zt_log_level_parse(const char *s, enum zt_log_level *out);

void zt_log_set_level(enum zt_log_level level);
enum zt_log_level zt_log_get_level(void);
bool zt_log_enabled(enum zt_log_level level);

/* Logs one line. `scope` is a short module name ("proxy", "cni", "access"). */
void zt_log(enum zt_log_level level, const char *scope, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* LOG_FORMAT=json: every line becomes one JSON object with "level", "time",
 * "scope", "message" and, for zt_log_kv, one key per field. */
void zt_log_set_json(bool on);
bool zt_log_is_json(void);

/* Logs `message` with fields: `kv` holds n (key, value) pairs, 2n strings,
 * borrowed; NULL or empty values are left out. Plain format:
 * "<message>\tk=v k=v", values with spaces, quotes, '=', '\\' or control
 * characters quoted and escaped. JSON: values of digits only are numbers. */
void zt_log_kv(enum zt_log_level level, const char *scope, const char *message,
               const char *const *kv, size_t n);

/* The plain "k=v k=v" rendering of zt_log_kv into buf (always
 * NUL-terminated, truncated to cap). Returns the length written. */
size_t zt_log_format_kv(char *buf, size_t cap, const char *const *kv, size_t n);

#define ZT_ERROR(scope, ...) zt_log(ZT_LOG_ERROR, scope, __VA_ARGS__)
#define ZT_WARN(scope, ...) zt_log(ZT_LOG_WARN, scope, __VA_ARGS__)
#define ZT_INFO(scope, ...)                                                                        \
    do {                                                                                           \
        if (zt_log_enabled(ZT_LOG_INFO))                                                           \
            zt_log(ZT_LOG_INFO, scope, __VA_ARGS__);                                               \
    } while (0)
#define ZT_DEBUG(scope, ...)                                                                       \
    do {                                                                                           \
        if (zt_log_enabled(ZT_LOG_DEBUG))                                                          \
            zt_log(ZT_LOG_DEBUG, scope, __VA_ARGS__);                                              \
    } while (0)

#endif
