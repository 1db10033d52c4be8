/* Allocation that cannot fail: out of memory aborts (a daemon cannot go on
 * half-allocated; see STYLE.md "Errors"). Sizes derived from peer input are
 * capped by the caller before they get here. */
#ifndef ZT_BASE_ALLOC_H
#define ZT_BASE_ALLOC_H

#include <stddef.h>

void *zt_xmalloc(size_t size);
void *zt_xcalloc(size_t n, size_t size); /* n * size overflowing aborts too */
void *zt_xrealloc(void *p, size_t size);
char *zt_xstrdup(const char *s);
char *zt_xstrndup(const char *s, size_t n);

#endif
