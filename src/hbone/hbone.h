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

/* Longest service hostname an authority may name (a DNS name). */
#define ZT_HBONE_HOST_MAX 253

/* What a CONNECT's :authority names: an address (`ip:port`, `[ipv6]:port`,
 * as zt_hbone_parse_authority) or a service hostname and port
 * (`echo.default.svc.cluster.local:80`), which the server resolves itself
 * (wire facts 2.3). */
struct zt_hbone_target {
    bool is_host;
    struct sockaddr_storage addr;     /* !is_host: the address and port */
    char host[ZT_HBONE_HOST_MAX + 1]; /* is_host: NUL-terminated */
    uint16_t port;                    /* both: never 0 */
};

/* Parses an authority into *out: an address first; otherwise a hostname of
 * letters, digits, '-', '_' and '.' (at most ZT_HBONE_HOST_MAX bytes, not
 * starting with '.') and a port of 1..65535. Returns 0, or
 * ZT_E_BAD_AUTHORITY for anything else. */
int zt_hbone_parse_target(const char *s, struct zt_hbone_target *out);

/* Server-side checks of one CONNECT before the local workload is looked up:
 * the method and that the authority parses (an address or a hostname). On
 * success fills *target and returns 200; otherwise returns 400 and a reason
 * in `why`. */
int zt_hbone_check_request(const char *method, const char *authority,
                           struct zt_hbone_target *target, const char **why);

/* The checks of an address target once the local workload is known: that
 * it is the address the connection was accepted on (inbound HBONE only ever
 * reaches the pod that accepted it), unless `any_ip` (the workload has an
 * application tunnel, to which the target is only passed on), and that its
 * port is not a proxy port. A hostname target passes (the caller resolves
 * it and checks the port it resolves to). Returns 200, or the status to
 * answer (400 for a foreign address, 503 for a proxy port) and a reason in
 * `why`. */
int zt_hbone_check_target(const struct zt_hbone_target *target, const struct sockaddr *accepted_on,
                          bool any_ip, const char **why);

#endif
