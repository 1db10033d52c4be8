/* Socket helpers: non-blocking TCP sockets created inside a network namespace,
 * listeners with the in-pod options, original-destination recovery.
 *
 * Namespace switching uses setns(2), which affects only the calling thread;
 * every helper returns the thread to the namespace it was in before. */
#ifndef ZT_LOOP_SOCK_H
#define ZT_LOOP_SOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Upstream connects fail after this long (ztunnel: 10 s). */
#define ZT_SOCK_CONNECT_TIMEOUT_MS 10000

struct zt_sock_opts {
    int netns_fd;                /* namespace to create the socket in; -1 = current */
    uint32_t mark;               /* SO_MARK, 0 = none */
    bool reuseport;              /* SO_REUSEPORT (listeners) */
    bool transparent;            /* IP_TRANSPARENT + IP_FREEBIND (spoofed source) */
    unsigned connect_timeout_ms; /* zt_sock_connect: give up after; 0 = kernel default */
};

/* Creates a non-blocking, close-on-exec TCP socket of `family` with `opts`.
 * Returns the fd or a negative errno. */
int zt_sock_tcp(int family, const struct zt_sock_opts *opts);

/* Creates a listening socket bound to `addr` (backlog 128) with `opts`.
 * Returns the fd or a negative errno. */
int zt_sock_listen(const struct sockaddr *addr, socklen_t len, const struct zt_sock_opts *opts);

/* Starts a non-blocking connect of a new socket made with `opts`; if `bind_src`
 * is non-NULL the socket is bound to it first (a failure to bind is reported
 * through *bind_failed and the connect proceeds unbound). Returns the fd (the
 * connect is usually still in progress) or a negative errno. */
int zt_sock_connect(const struct sockaddr *dst, const struct sockaddr *bind_src,
                    const struct zt_sock_opts *opts, bool *bind_failed);

/* Returns 0 once a non-blocking connect finished successfully (and lifts
 * the connect timeout), else the negative errno of the failure. */
int zt_sock_connect_result(int fd);

/* Original destination of a REDIRECTed connection (SO_ORIGINAL_DST, then
 * IP6T_SO_ORIGINAL_DST, then the local address). IPv4-mapped IPv6 addresses
 * are returned as IPv4. */
int zt_sock_original_dst(int fd, struct sockaddr_storage *out);

/* TCP_NODELAY and the keepalive settings of Istio's ztunnel. */
void zt_sock_tune(int fd);

/* Formats "ip:port" ("[ip]:port" for IPv6) into buf. */
const char *zt_sockaddr_str(const struct sockaddr *sa, char *buf, size_t cap);

/* Canonicalizes an IPv4-mapped IPv6 sockaddr in place to AF_INET. */
void zt_sockaddr_unmap(struct sockaddr_storage *ss);

uint16_t zt_sockaddr_port(const struct sockaddr *sa);
socklen_t zt_sockaddr_len(const struct sockaddr *sa);

#endif
