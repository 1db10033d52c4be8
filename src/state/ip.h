/* IP addresses and CIDR ranges as plain values.
 *
 * A struct zt_ip is either IPv4 (family AF_INET, the address in addr[0..3],
 * the rest zero) or IPv6 (AF_INET6, all 16 bytes). IPv4-mapped IPv6
 * addresses (::ffff:a.b.c.d) are always canonicalised to IPv4 by every
 * function here, so "the same" address compares equal whichever socket API it
 * came from. Values are small and copied freely; nothing here allocates. */
#ifndef ZT_STATE_IP_H
#define ZT_STATE_IP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Big enough for any formatted IPv6 address plus NUL. */
#define ZT_IP_STRLEN 46

struct zt_ip {
    uint8_t family; /* AF_INET or AF_INET6; 0 means "unset" */
    uint8_t addr[16];
};

struct zt_cidr {
    struct zt_ip ip;
    uint8_t prefix; /* 0..32 for IPv4, 0..128 for IPv6 */
};

/* Parses a textual IPv4 or IPv6 address. Returns 0 or ZT_E_CONFIG. */
int zt_ip_parse(const char *s, struct zt_ip *out);

/* Builds an address from 4 or 16 raw bytes (the xDS wire form). Returns 0 or
 * ZT_E_PROTO for any other length. */
int zt_ip_from_bytes(const uint8_t *b, size_t len, struct zt_ip *out);

/* Formats into buf (at least ZT_IP_STRLEN bytes is always enough) and
 * returns buf; an unset or unformattable address gives "". */
char *zt_ip_format(const struct zt_ip *ip, char *buf, size_t len);

bool zt_ip_eq(const struct zt_ip *a, const struct zt_ip *b);

/* Total order: IPv4 before IPv6, then bytewise. */
int zt_ip_cmp(const struct zt_ip *a, const struct zt_ip *b);

/* Converts IPv4-mapped IPv6 to IPv4 in place; other addresses unchanged. */
void zt_ip_canonicalize(struct zt_ip *ip);

/* Reads address and port (host order; port may be NULL) from a sockaddr_in
 * or sockaddr_in6. Returns 0 or -EAFNOSUPPORT. */
int zt_ip_from_sockaddr(const struct sockaddr *sa, struct zt_ip *out, uint16_t *port);

/* Fills a sockaddr_in/sockaddr_in6 for ip:port and returns its length. */
socklen_t zt_ip_to_sockaddr(const struct zt_ip *ip, uint16_t port, struct sockaddr_storage *out);

/* Parses "ip/len" or a bare "ip" (full-length prefix). Host bits below the
 * prefix are cleared. Returns 0 or ZT_E_CONFIG. */
int zt_cidr_parse(const char *s, struct zt_cidr *out);

/* True if ip lies inside cidr (families must match after canonicalising). */
bool zt_cidr_contains(const struct zt_cidr *cidr, const struct zt_ip *ip);

/* Formats "ip/len" into buf (ZT_IP_STRLEN + 4 bytes is enough). */
char *zt_cidr_format(const struct zt_cidr *cidr, char *buf, size_t len);

#endif
