#include "tls/spiffe.h"

#include "base/err.h"

#include <stdio.h>
#include <string.h>

static const char spiffe_prefix[] = "spiffe://";

/* Copies one part into dst (capacity cap including the NUL) after checking it
 * is non-empty, fits, and holds only visible ASCII or UTF-8 bytes. */
static bool copy_part(char *dst, size_t cap, const char *src, size_t len)
{
    if (len == 0 || len >= cap)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c < 0x21 || c == 0x7f)
            return false;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return true;
}

int zt_spiffe_parse(const char *s, size_t len, struct zt_spiffe_id *out)
{
    const size_t plen = sizeof(spiffe_prefix) - 1;
    const char *part[5];
    size_t part_len[5];
    size_t n = 0;

    memset(out, 0, sizeof(*out));
    if (s == NULL || len <= plen || len > ZT_SPIFFE_ID_MAX || memcmp(s, spiffe_prefix, plen) != 0)
        goto fail;

    /* Split the remainder on '/'; a sixth part is an error, not ignored. */
    const char *p = s + plen, *end = s + len;
    const char *start = p;
    for (;; p++) {
        if (p == end || *p == '/') {
            if (n == 5)
                goto fail;
            part[n] = start;
            part_len[n] = (size_t)(p - start);
            n++;
            if (p == end)
                break;
            start = p + 1;
        }
    }
    if (n != 5)
        goto fail;
    if (part_len[1] != 2 || memcmp(part[1], "ns", 2) != 0)
        goto fail;
    if (part_len[3] != 2 || memcmp(part[3], "sa", 2) != 0)
        goto fail;
    if (!copy_part(out->trust_domain, sizeof(out->trust_domain), part[0], part_len[0]) ||
        !copy_part(out->ns, sizeof(out->ns), part[2], part_len[2]) ||
        !copy_part(out->sa, sizeof(out->sa), part[4], part_len[4]))
        goto fail;
    return 0;

fail:
    memset(out, 0, sizeof(*out));
    return ZT_E_IDENTITY;
}

int zt_spiffe_make(const char *trust_domain, const char *ns, const char *sa,
                   struct zt_spiffe_id *out)
{
    memset(out, 0, sizeof(*out));
    if (trust_domain == NULL || ns == NULL || sa == NULL)
        return ZT_E_IDENTITY;
    /* A '/' inside a part would change the parse, so it is refused here too. */
    if (strchr(trust_domain, '/') || strchr(ns, '/') || strchr(sa, '/') ||
        !copy_part(out->trust_domain, sizeof(out->trust_domain), trust_domain,
                   strlen(trust_domain)) ||
        !copy_part(out->ns, sizeof(out->ns), ns, strlen(ns)) ||
        !copy_part(out->sa, sizeof(out->sa), sa, strlen(sa))) {
        memset(out, 0, sizeof(*out));
        return ZT_E_IDENTITY;
    }
    return 0;
}

int zt_spiffe_format(const struct zt_spiffe_id *id, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s%s/ns/%s/sa/%s", spiffe_prefix, id->trust_domain, id->ns, id->sa);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return ZT_E_TOO_BIG;
    }
    return n;
}

bool zt_spiffe_eq(const struct zt_spiffe_id *a, const struct zt_spiffe_id *b)
{
    return strcmp(a->trust_domain, b->trust_domain) == 0 && strcmp(a->ns, b->ns) == 0 &&
           strcmp(a->sa, b->sa) == 0;
}
