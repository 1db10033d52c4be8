#include "base/err.h"

#include <stdio.h>
#include <string.h>

const char *zt_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case ZT_E_PROTO:
        return "protocol error";
    case ZT_E_DENIED:
        return "denied by policy";
    case ZT_E_NO_WORKLOAD:
        return "unknown local workload";
    case ZT_E_CONFIG:
        return "invalid configuration";
    case ZT_E_TLS:
        return "TLS failure";
    case ZT_E_IDENTITY:
        return "peer identity not accepted";
    case ZT_E_NOT_FOUND:
        return "not found";
    case ZT_E_TOO_BIG:
        return "input too large";
    case ZT_E_CLOSED:
        return "closed";
    case ZT_E_TIMEOUT:
        return "timed out";
    case ZT_E_BAD_AUTHORITY:
        return "bad :authority";
    case ZT_E_UPSTREAM:
        return "upstream connect failed";
    case ZT_E_ILLEGAL_PORT:
        return "illegal destination port";
    case ZT_E_REVOKED:
        return "peer certificate revoked";
    case ZT_E_RATE_LIMITED:
        return "rate limited";
    default:
        break;
    }
    if (err < 0 && err > -1000)
        return strerror(-err);
    return "unknown error";
}

int zt_verrf(char *err, size_t errlen, int code, const char *fmt, va_list ap)
{
    if (err != NULL && errlen > 0 && vsnprintf(err, errlen, fmt, ap) < 0)
        err[0] = '\0';
    return code;
}

int zt_errf(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    zt_verrf(err, errlen, code, fmt, ap);
    va_end(ap);
    return code;
}

int zt_verrf_at(char *err, size_t errlen, int code, const char *where, const char *fmt, va_list ap)
{
    if (err == NULL || errlen == 0)
        return code;
    /* The reason goes straight after the prefix: no second buffer, and a
     * prefix that fills the buffer leaves no room for it. */
    int n = snprintf(err, errlen, "%s: ", where);
    if (n < 0)
        err[0] = '\0';
    else if ((size_t)n < errlen)
        zt_verrf(err + n, errlen - (size_t)n, code, fmt, ap);
    return code;
}

int zt_errf_at(char *err, size_t errlen, int code, const char *where, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    zt_verrf_at(err, errlen, code, where, fmt, ap);
    va_end(ap);
    return code;
}
