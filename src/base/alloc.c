#include "base/alloc.h"

#include <stdlib.h>
#include <string.h>

static void *check(void *p)
{
    if (!p)
        abort();
    return p;
}

void *zt_xmalloc(size_t size)
{
    return check(malloc(size ? size : 1));
}

void *zt_xcalloc(size_t n, size_t size)
{
    return check(calloc(n ? n : 1, size ? size : 1));
}

void *zt_xrealloc(void *p, size_t size)
{
    return check(realloc(p, size ? size : 1));
}

char *zt_xstrdup(const char *s)
{
    return check(strdup(s));
}

char *zt_xstrndup(const char *s, size_t n)
{
    return check(strndup(s, n));
}
