/* What every fuzz target of a YAML reader checks after loading a file
 * named `name`: a syntax error (ZT_E_CONFIG, with an error) is the only way
 * the load fails, and every diagnostic names the file first. */
#ifndef ZT_FUZZ_YAML_ERRS_H
#define ZT_FUZZ_YAML_ERRS_H

#include "base/err.h"
#include "route/route.h"

#include <string.h>

static inline void fuzz_check_load(const char *name, int rc, const struct zt_route_errors *errs)
{
    size_t n = strlen(name);
    if (rc != 0 && rc != ZT_E_CONFIG)
        __builtin_trap();
    if (rc && errs->n_errors == 0)
        __builtin_trap();
    for (size_t i = 0; i < errs->n; i++)
        if (strncmp(errs->v[i].msg, name, n) != 0 || errs->v[i].msg[n] != ':')
            __builtin_trap();
}

#endif
