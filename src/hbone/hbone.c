#include "hbone/hbone.h"

#include "base/err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool zt_hbone_port_is_illegal(uint16_t port)
{
    return port == 15001 || port == 15006 || port == 15008;
}

static int parse_port(const char *p, uint16_t *out)
{
    if (!*p || strlen(p) > 5)
        return ZT_E_BAD_AUTHORITY;
    unsigned v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return ZT_E_BAD_AUTHORITY;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v == 0 || v > 65535)
        return ZT_E_BAD_AUTHORITY;
    *out = (uint16_t)v;
    return 0;
}

int zt_hbone_parse_authority(const char *s, struct sockaddr_storage *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon;
    size_t hlen;
    memset(out, 0, sizeof(*out));
    if (!s || strlen(s) > 64)
        return ZT_E_BAD_AUTHORITY;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return ZT_E_BAD_AUTHORITY;
        hlen = (size_t)(end - s - 1);
        if (hlen == 0 || hlen >= sizeof(host))
            return ZT_E_BAD_AUTHORITY;
        memcpy(host, s + 1, hlen);
        host[hlen] = 0;
        colon = end + 1;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
        uint16_t port;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1 || parse_port(colon + 1, &port) < 0)
            return ZT_E_BAD_AUTHORITY;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(port)};
            memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
            memset(out, 0, sizeof(*out));
            memcpy(out, &s4, sizeof(s4));
        }
        return 0;
    }
    colon = strrchr(s, ':');
    if (!colon)
        return ZT_E_BAD_AUTHORITY;
    hlen = (size_t)(colon - s);
    if (hlen == 0 || hlen >= sizeof(host))
        return ZT_E_BAD_AUTHORITY;
    memcpy(host, s, hlen);
    host[hlen] = 0;
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    uint16_t port;
    if (inet_pton(AF_INET, host, &s4->sin_addr) != 1 || parse_port(colon + 1, &port) < 0)
        return ZT_E_BAD_AUTHORITY;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    return 0;
}

void zt_hbone_format_authority(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, ntohs(s4->sin_port));
    }
}

static bool same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

static bool is_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.';
}

int zt_hbone_parse_target(const char *s, struct zt_hbone_target *out)
{
    memset(out, 0, sizeof(*out));
    if (zt_hbone_parse_authority(s, &out->addr) == 0) {
        out->port =
            ntohs(out->addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&out->addr)->sin6_port
                                                  : ((struct sockaddr_in *)&out->addr)->sin_port);
        return 0;
    }
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon)
        return ZT_E_BAD_AUTHORITY;
    size_t hlen = (size_t)(colon - s);
    if (hlen == 0 || hlen > ZT_HBONE_HOST_MAX || s[0] == '.')
        goto bad;
    for (size_t i = 0; i < hlen; i++) {
        if (!is_host_char(s[i]))
            goto bad;
    }
    if (parse_port(colon + 1, &out->port) < 0)
        goto bad;
    memcpy(out->host, s, hlen);
    out->host[hlen] = 0;
    out->is_host = true;
    return 0;
bad:
    memset(out, 0, sizeof(*out));
    return ZT_E_BAD_AUTHORITY;
}

int zt_hbone_check_request(const char *method, const char *authority,
                           struct zt_hbone_target *target, const char **why)
{
    if (!method || strcmp(method, "CONNECT") != 0) {
        *why = "method is not CONNECT";
        return 400;
    }
    if (zt_hbone_parse_target(authority, target) < 0) {
        *why = "unparseable :authority";
        return 400;
    }
    *why = NULL;
    return 200;
}

int zt_hbone_check_target(const struct zt_hbone_target *target, const struct sockaddr *accepted_on,
                          bool any_ip, const char **why)
{
    *why = NULL;
    if (target->is_host)
        return 200;
    if (!any_ip && !same_ip((const struct sockaddr *)&target->addr, accepted_on)) {
        *why = ":authority is not the address this connection was accepted on";
        return 400;
    }
    if (zt_hbone_port_is_illegal(target->port)) {
        *why = "target port is reserved for the proxy";
        return 503;
    }
    return 200;
}
