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

/* TCP keepalive (KEEPALIVE_*): SO_KEEPALIVE with TCP_KEEPIDLE = time_s,
 * TCP_KEEPINTVL = interval_s and TCP_KEEPCNT = retries. The kernel takes
 * 1..32767 s and 1..127 probes (config/env.c refuses other values). */
struct zt_sock_keepalive {
    bool enabled;
    unsigned time_s, interval_s, retries;
};

/* Istio's ztunnel uses 300 s / 75 s / 9 probes on its control-plane
 * channels (xDS, CA), whatever KEEPALIVE_* say. */
extern const struct zt_sock_keepalive zt_sock_keepalive_control_plane;

struct zt_sock_opts {
    int netns_fd; /* namespace to create the socket in; -1 = current */
    /* zt_sock_connect: keepalive of the new socket; borrowed for the call;
     * NULL or !enabled = none. */
    const struct zt_sock_keepalive *keepalive;
    uint32_t mark;               /* SO_MARK, 0 = none */
    bool reuseport;              /* SO_REUSEPORT (listeners) */
    bool transparent;            /* IP_TRANSPARENT + IP_FREEBIND (spoofed source) */
    unsigned connect_timeout_ms; /* zt_sock_connect: give up after; 0 = kernel default */
};

/* Creates a non-blocking, close-on-exec TCP socket of `family` with `opts`.
 * Returns the fd or a negative errno. */
int zt_sock_tcp(int family, const struct zt_sock_opts *opts);

/* The same for a UDP socket, and one bound to `addr` (DNS). */
int zt_sock_udp(int family, const struct zt_sock_opts *opts);
int zt_sock_udp_bind(const struct sockaddr *addr, socklen_t len, const struct zt_sock_opts *opts);

/* Writes `value` to the sysctl file `path` (absolute, under /proc/sys/net)
 * as seen from the network namespace `netns_fd` (borrowed; -1: the
 * caller's). The calling thread enters the namespace for the open and
 * write only. Returns 0 or a negative errno (-EROFS when /proc/sys is
 * mounted read-only, -EACCES without CAP_NET_ADMIN there). */
int zt_sock_netns_sysctl_set(int netns_fd, const char *path, const char *value);

/* Creates a listening socket bound to `addr` (backlog 128) with `opts`.
 * Returns the fd or a negative errno. */
int zt_sock_listen(const struct sockaddr *addr, socklen_t len, const struct zt_sock_opts *opts);

/* Starts a non-blocking connect of a new socket made with `opts` (tuned by
 * zt_sock_tune with opts->keepalive); if `bind_src`
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

/* Sets TCP_NODELAY and, if `ka` (borrowed, may be NULL) is enabled, its
 * keepalive; without it SO_KEEPALIVE is left as the socket has it (off for
 * a new or accepted socket). Returns 0 or a negative errno. */
int zt_sock_tune(int fd, const struct zt_sock_keepalive *ka);

/* Formats "ip:port" ("[ip]:port" for IPv6) into buf. */
const char *zt_sockaddr_str(const struct sockaddr *sa, char *buf, size_t cap);

/* Canonicalizes an IPv4-mapped IPv6 sockaddr in place to AF_INET. */
void zt_sockaddr_unmap(struct sockaddr_storage *ss);

uint16_t zt_sockaddr_port(const struct sockaddr *sa);
socklen_t zt_sockaddr_len(const struct sockaddr *sa);

#endif
