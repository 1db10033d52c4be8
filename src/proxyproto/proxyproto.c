#include "proxyproto/proxyproto.h"

#include "base/err.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define VER_CMD_PROXY 0x21 /* version 2 in the high nibble, PROXY in the low */
#define FAM_UNSPEC_STREAM 0x01
#define FAM_INET_STREAM 0x11
#define FAM_INET6_STREAM 0x21

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

int zt_proxyproto_v2_encode(const struct sockaddr *src, const struct sockaddr *dst,
                            const char *identity, uint8_t *buf, size_t cap, size_t *out_len)
{
    if ((src->sa_family != AF_INET && src->sa_family != AF_INET6) ||
        (dst->sa_family != AF_INET && dst->sa_family != AF_INET6))
        return -EAFNOSUPPORT;
    size_t id_len = identity ? strlen(identity) : 0;
    if (id_len > ZT_SPIFFE_ID_MAX)
        return ZT_E_TOO_BIG;
    uint8_t fam = FAM_UNSPEC_STREAM;
    size_t addr_len = 0;
    if (src->sa_family == dst->sa_family) {
        fam = src->sa_family == AF_INET ? FAM_INET_STREAM : FAM_INET6_STREAM;
        addr_len = src->sa_family == AF_INET ? 12 : 36;
    }
    size_t body = addr_len + (id_len ? 3 + id_len : 0);
    if (16 + body > cap)
        return ZT_E_TOO_BIG;
    uint8_t *p = buf;
    memcpy(p, signature, sizeof(signature));
    p += sizeof(signature);
    *p++ = VER_CMD_PROXY;
    *p++ = fam;
    put16(p, (uint16_t)body); /* at most 36 + 3 + ZT_SPIFFE_ID_MAX */
    p += 2;
    /* Addresses, then ports, in network order: source first each time. */
    if (fam == FAM_INET_STREAM) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)src;
        const struct sockaddr_in *d = (const struct sockaddr_in *)dst;
        memcpy(p, &s->sin_addr, 4);
        memcpy(p + 4, &d->sin_addr, 4);
        memcpy(p + 8, &s->sin_port, 2);
        memcpy(p + 10, &d->sin_port, 2);
    } else if (fam == FAM_INET6_STREAM) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)src;
        const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)dst;
        memcpy(p, &s->sin6_addr, 16);
        memcpy(p + 16, &d->sin6_addr, 16);
        memcpy(p + 32, &s->sin6_port, 2);
        memcpy(p + 34, &d->sin6_port, 2);
    }
    p += addr_len;
    if (id_len) {
        *p++ = ZT_PROXYPROTO_TLV_PEER_IDENTITY;
        put16(p, (uint16_t)id_len);
        p += 2;
        memcpy(p, identity, id_len);
        p += id_len;
    }
    *out_len = (size_t)(p - buf);
    return 0;
}
