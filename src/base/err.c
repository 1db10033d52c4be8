#include "base/err.h"

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
    default:
        break;
    }
    if (err < 0 && err > -1000)
        return strerror(-err);
    return "unknown error";
}
