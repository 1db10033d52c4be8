#include "state/ip.h"

#include "base/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void zt_ip_canonicalize(struct zt_ip *ip)
{
    if (ip->family == AF_INET6 && memcmp(ip->addr, v4_mapped_prefix, 12) == 0) {
        uint8_t v4[4];
        memcpy(v4, ip->addr + 12, 4);
        memset(ip->addr, 0, sizeof(ip->addr));
        memcpy(ip->addr, v4, 4);
        ip->family = AF_INET;
    }
}

int zt_ip_parse(const char *s, struct zt_ip *out)
{
    struct zt_ip ip;
    memset(&ip, 0, sizeof(ip));
    if (!s)
        return ZT_E_CONFIG;
    if (inet_pton(AF_INET, s, ip.addr) == 1) {
        ip.family = AF_INET;
    } else if (inet_pton(AF_INET6, s, ip.addr) == 1) {
        ip.family = AF_INET6;
        zt_ip_canonicalize(&ip);
    } else {
        return ZT_E_CONFIG;
    }
    *out = ip;
    return 0;
}

int zt_ip_from_bytes(const uint8_t *b, size_t len, struct zt_ip *out)
{
    struct zt_ip ip;
    memset(&ip, 0, sizeof(ip));
    if (len == 4)
        ip.family = AF_INET;
    else if (len == 16)
        ip.family = AF_INET6;
    else
        return ZT_E_PROTO;
    memcpy(ip.addr, b, len);
    zt_ip_canonicalize(&ip);
    *out = ip;
    return 0;
}

char *zt_ip_format(const struct zt_ip *ip, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    buf[0] = '\0';
    if (ip->family != AF_INET && ip->family != AF_INET6)
        return buf;
    if (!inet_ntop(ip->family, ip->addr, buf, (socklen_t)len))
        buf[0] = '\0';
    return buf;
}

bool zt_ip_eq(const struct zt_ip *a, const struct zt_ip *b)
{
    return zt_ip_cmp(a, b) == 0;
}

int zt_ip_cmp(const struct zt_ip *a, const struct zt_ip *b)
{
    if (a->family != b->family)
        return a->family < b->family ? -1 : 1;
    return memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16);
}

int zt_ip_from_sockaddr(const struct sockaddr *sa, struct zt_ip *out, uint16_t *port)
{
    struct zt_ip ip;
    memset(&ip, 0, sizeof(ip));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        ip.family = AF_INET;
        memcpy(ip.addr, &sin->sin_addr, 4);
        if (port)
            *port = ntohs(sin->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        ip.family = AF_INET6;
        memcpy(ip.addr, &sin6->sin6_addr, 16);
        zt_ip_canonicalize(&ip);
        if (port)
            *port = ntohs(sin6->sin6_port);
    } else {
        return -EAFNOSUPPORT;
    }
    *out = ip;
    return 0;
}

socklen_t zt_ip_to_sockaddr(const struct zt_ip *ip, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (ip->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, ip->addr, 4);
        return sizeof(*sin);
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    memcpy(&sin6->sin6_addr, ip->addr, 16);
    return sizeof(*sin6);
}

static void mask_host_bits(struct zt_ip *ip, unsigned prefix)
{
    unsigned bits = ip->family == AF_INET ? 32 : 128;
    for (unsigned i = prefix; i < bits; i++)
        ip->addr[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
}

int zt_cidr_parse(const char *s, struct zt_cidr *out)
{
    char buf[ZT_IP_STRLEN + 8];
    struct zt_cidr c;
    const char *slash;
    unsigned long prefix;
    bool mapped;
    size_t iplen;

    if (!s)
        return ZT_E_CONFIG;
    slash = strchr(s, '/');
    iplen = slash ? (size_t)(slash - s) : strlen(s);
    if (iplen == 0 || iplen >= sizeof(buf))
        return ZT_E_CONFIG;
    memcpy(buf, s, iplen);
    buf[iplen] = '\0';
    memset(&c, 0, sizeof(c));
    /* Parse without canonicalising first so a mapped prefix length can be
     * translated along with the address. */
    if (inet_pton(AF_INET, buf, c.ip.addr) == 1)
        c.ip.family = AF_INET;
    else if (inet_pton(AF_INET6, buf, c.ip.addr) == 1)
        c.ip.family = AF_INET6;
    else
        return ZT_E_CONFIG;
    mapped = c.ip.family == AF_INET6 && memcmp(c.ip.addr, v4_mapped_prefix, 12) == 0;
    prefix = c.ip.family == AF_INET ? 32 : 128;
    if (slash) {
        char *end;
        const char *p = slash + 1;
        if (*p < '0' || *p > '9')
            return ZT_E_CONFIG;
        errno = 0;
        prefix = strtoul(p, &end, 10);
        if (errno || *end != '\0' || prefix > (c.ip.family == AF_INET ? 32u : 128u))
            return ZT_E_CONFIG;
    }
    if (mapped && prefix >= 96) {
        zt_ip_canonicalize(&c.ip);
        prefix -= 96;
    }
    c.prefix = (uint8_t)prefix;
    mask_host_bits(&c.ip, c.prefix);
    *out = c;
    return 0;
}

bool zt_cidr_contains(const struct zt_cidr *cidr, const struct zt_ip *ip_in)
{
    struct zt_ip ip = *ip_in;
    zt_ip_canonicalize(&ip);
    if (ip.family != cidr->ip.family)
        return false;
    mask_host_bits(&ip, cidr->prefix);
    return memcmp(ip.addr, cidr->ip.addr, 16) == 0;
}

char *zt_cidr_format(const struct zt_cidr *cidr, char *buf, size_t len)
{
    char ipbuf[ZT_IP_STRLEN];
    if (len == 0)
        return buf;
    snprintf(buf, len, "%s/%u", zt_ip_format(&cidr->ip, ipbuf, sizeof(ipbuf)),
             (unsigned)cidr->prefix);
    return buf;
}
