/* HBONE request semantics (sans-I/O): what a CONNECT asks for, what a server
 * answers, and the headers a client sends. Istio's rules, wire facts §2.3-2.5. */
#ifndef ZT_HBONE_HBONE_H
#define ZT_HBONE_HBONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The ports a connection may never be forwarded to (15001, 15006, 15008). */
bool zt_hbone_port_is_illegal(uint16_t port);

/* Parses an `ip:port` or `[ipv6]:port` authority. IPv4-mapped IPv6 becomes
 * IPv4. Returns 0, or ZT_E_BAD_AUTHORITY for anything else (including host
 * names, empty ports and port 0). */
int zt_hbone_parse_authority(const char *s, struct sockaddr_storage *out);

/* Formats `ip:port` / `[ip]:port`. */
void zt_hbone_format_authority(const struct sockaddr *sa, char *buf, size_t cap);

/* Server-side checks of one CONNECT before any lookup: method, authority and
 * that the target is the address the connection was accepted on (inbound
 * HBONE only ever reaches the pod that accepted it) and not a proxy port.
 * On success fills *target and returns 200; otherwise returns the HTTP
 * status to answer (400 or 503) and a reason in `why`. */
int zt_hbone_check_request(const char *method, const char *authority,
                           const struct sockaddr *accepted_on, struct sockaddr_storage *target,
                           const char **why);

#endif
