/* For the YAML readers' tests: prints a zt_route_errors list to stderr
 * (one line an entry), to show what a failed check saw. */
#ifndef ZT_TEST_CONFIG_DUMP_ERRS_H
#define ZT_TEST_CONFIG_DUMP_ERRS_H

#include "route/route.h"

#include <stdio.h>

static inline void dump(const struct zt_route_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "    %s %s\n", e->v[i].is_warning ? "warning" : "error", e->v[i].msg);
}

#endif
