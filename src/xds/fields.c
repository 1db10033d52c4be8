/* Encode arena and decode field paths for our xDS resources. See xds_int.h. */
#include "xds/xds_int.h"

#include "base/alloc.h"
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *zt_xds_arena_alloc(struct zt_xds_arena *e, size_t n, size_t size)
{
    void *p = zt_xcalloc(n ? n : 1, size);
    if (e->n_allocs == e->cap_allocs) {
        e->cap_allocs = e->cap_allocs ? 2 * e->cap_allocs : 32;
        e->allocs = zt_xrealloc(e->allocs, e->cap_allocs * sizeof(*e->allocs));
    }
    e->allocs[e->n_allocs++] = p;
    return p;
}

void zt_xds_arena_cleanup(struct zt_xds_arena *e)
{
    for (size_t i = 0; i < e->n_allocs; i++)
        free(e->allocs[i]);
    free(e->allocs);
    memset(e, 0, sizeof(*e));
}

char *zt_xds_s_or_empty(const char *s)
{
    return (char *)(s ? s : "");
}

int zt_xds_bad(struct zt_xds_dec *c, int code, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    zt_verrf_at(c->err, c->errlen, code, field, fmt, ap);
    va_end(ap);
    return code;
}

void zt_xds_key(char *dst, const char *parent, const char *k)
{
    int n = snprintf(dst, ZT_XDS_FIELD_LEN, "%s%s%s", parent, parent[0] ? "." : "", k);
    if (n >= ZT_XDS_FIELD_LEN)
        memcpy(dst + ZT_XDS_FIELD_LEN - 4, "...", 4);
}

void zt_xds_idx(char *dst, const char *parent, const char *k, size_t i)
{
    int n = snprintf(dst, ZT_XDS_FIELD_LEN, "%s%s%s[%zu]", parent, parent[0] ? "." : "", k, i);
    if (n >= ZT_XDS_FIELD_LEN)
        memcpy(dst + ZT_XDS_FIELD_LEN - 4, "...", 4);
}

static bool has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

int zt_xds_str(struct zt_xds_dec *c, const char *field, const char *v, size_t max, bool is_required,
               bool keep_empty, char **out)
{
    *out = NULL;
    v = v ? v : "";
    if (strnlen(v, max + 1) > max)
        return zt_xds_bad(c, ZT_E_TOO_BIG, field, "longer than %zu bytes", max);
    if (has_ctl(v))
        return zt_xds_bad(c, ZT_E_PROTO, field, "control characters");
    if (!v[0]) {
        if (is_required)
            return zt_xds_bad(c, ZT_E_PROTO, field, "required");
        if (!keep_empty)
            return 0;
    }
    *out = zt_xstrdup(v);
    return 0;
}

int zt_xds_list(struct zt_xds_dec *c, const char *field, size_t n, size_t max)
{
    if (n > max)
        return zt_xds_bad(c, ZT_E_TOO_BIG, field, "%zu items, at most %zu", n, max);
    return 0;
}
