/* Error codes shared by every module, and the formatting of error messages
 * into a caller's buffer (zt_errf).
 *
 * Functions return 0 on success and a negative value on failure: -errno for
 * operating-system errors, or one of the ZT_E_* project codes below (all at or
 * below -1000). -EAGAIN always means "wait and retry", never failure. */
#ifndef ZT_BASE_ERR_H
#define ZT_BASE_ERR_H

#include <stdarg.h>
#include <stddef.h>

enum zt_err {
    ZT_E_PROTO = -1000,         /* peer violated a protocol */
    ZT_E_DENIED = -1001,        /* authorization policy denied */
    ZT_E_NO_WORKLOAD = -1002,   /* no such local workload */
    ZT_E_CONFIG = -1003,        /* invalid configuration */
    ZT_E_TLS = -1004,           /* TLS failure */
    ZT_E_IDENTITY = -1005,      /* peer identity missing or not expected */
    ZT_E_NOT_FOUND = -1006,     /* lookup found nothing */
    ZT_E_TOO_BIG = -1007,       /* input over a size cap */
    ZT_E_CLOSED = -1008,        /* object already closed */
    ZT_E_TIMEOUT = -1009,       /* operation timed out */
    ZT_E_BAD_AUTHORITY = -1010, /* HBONE :authority unparseable or foreign */
    ZT_E_UPSTREAM = -1011,      /* upstream connect failed */
    ZT_E_ILLEGAL_PORT = -1012,  /* destination port reserved for the proxy */
    ZT_E_REVOKED = -1013,       /* peer certificate revoked by a CRL */
    ZT_E_RATE_LIMITED = -1014   /* a local rate limit refused the request */
};

/* Returns a static, human-readable description of any code this project
 * returns (negative errno or ZT_E_*). Never NULL. */
const char *zt_strerror(int err);

/* Error messages for a caller's buffer. Many functions take `char *err,
 * size_t errlen` and, on failure, leave a one-line reason there for the
 * caller to log; these write it and return `code`, so a failing path reads
 *
 *   return zt_errf(err, errlen, ZT_E_CONFIG, "%s: expected a port", name);
 *
 * The buffer is borrowed for the call. A NULL err or an errlen of 0 writes
 * nothing; otherwise the message is truncated to errlen - 1 bytes and
 * always NUL-terminated. `code` is returned as it is (0 is allowed, for a
 * message that is not a failure). */
int zt_errf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int zt_verrf(char *err, size_t errlen, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* The same, for a reason about a named thing: writes "<where>: <reason>"
 * (where: a file and line, a setting, a resource name; not a format). */
int zt_errf_at(char *err, size_t errlen, int code, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
int zt_verrf_at(char *err, size_t errlen, int code, const char *where, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

#endif
