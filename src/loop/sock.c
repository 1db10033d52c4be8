#include "loop/sock.h"

#include "base/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct zt_sock_keepalive zt_sock_keepalive_control_plane = {
    .enabled = true, .time_s = 300, .interval_s = 75, .retries = 9};

/* Enters `netns_fd` for the duration of one socket() call. The caller's
 * namespace is kept as an fd opened per call: cheap next to a connection, and
 * it keeps threads free of hidden per-thread state. */
static int socket_in(int netns_fd, int family, int type)
{
    if (netns_fd < 0) {
        int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        return fd < 0 ? -errno : fd;
    }
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return -errno;
    int fd;
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
        fd = -errno;
        goto out;
    }
    fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fd = -errno;
    if (setns(self, CLONE_NEWNET) < 0) {
        /* A thread stuck in a pod namespace would create every later socket
         * there: there is no safe way to continue. */
        perror("ztunnel: setns back to own namespace");
        abort();
    }
out:
    close(self);
    return fd;
}

/* /proc/sys/net resolves against the namespace of the thread that opens a
 * file, so the open and the write happen while inside netns_fd. */
int zt_sock_netns_sysctl_set(int netns_fd, const char *path, const char *value)
{
    int self = -1, rc = 0;
    if (netns_fd >= 0) {
        self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0)
            return -errno;
        if (setns(netns_fd, CLONE_NEWNET) < 0) {
            rc = -errno;
            goto out;
        }
    }
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t n = strlen(value);
    if (fd < 0)
        rc = -errno;
    else if (write(fd, value, n) != (ssize_t)n)
        rc = errno ? -errno : -EIO;
    if (fd >= 0)
        close(fd);
    if (self >= 0 && setns(self, CLONE_NEWNET) < 0) {
        perror("ztunnel: setns back to own namespace");
        abort();
    }
out:
    if (self >= 0)
        close(self);
    return rc;
}

static int apply_opts(int fd, int family, const struct zt_sock_opts *o)
{
    int one = 1;
    if (o->mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &o->mark, sizeof(o->mark)) < 0)
        return -errno;
    if (o->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        return -errno;
    if (o->transparent) {
        int lvl = family == AF_INET6 ? SOL_IPV6 : SOL_IP;
        int t = family == AF_INET6 ? IPV6_TRANSPARENT : IP_TRANSPARENT;
        int f = family == AF_INET6 ? IPV6_FREEBIND : IP_FREEBIND;
        if (setsockopt(fd, lvl, t, &one, sizeof(one)) < 0 ||
            setsockopt(fd, lvl, f, &one, sizeof(one)) < 0)
            return -errno;
    }
    return 0;
}

static int make_socket(int family, int type, const struct zt_sock_opts *opts)
{
    int fd = socket_in(opts->netns_fd, family, type);
    if (fd < 0)
        return fd;
    int rc = apply_opts(fd, family, opts);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int zt_sock_tcp(int family, const struct zt_sock_opts *opts)
{
    return make_socket(family, SOCK_STREAM, opts);
}

int zt_sock_udp(int family, const struct zt_sock_opts *opts)
{
    return make_socket(family, SOCK_DGRAM, opts);
}

int zt_sock_udp_bind(const struct sockaddr *addr, socklen_t len, const struct zt_sock_opts *opts)
{
    int fd = zt_sock_udp(addr->sa_family, opts);
    if (fd < 0)
        return fd;
    if (bind(fd, addr, len) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int zt_sock_listen(const struct sockaddr *addr, socklen_t len, const struct zt_sock_opts *opts)
{
    int fd = zt_sock_tcp(addr->sa_family, opts);
    if (fd < 0)
        return fd;
    int one = 1, rc = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr->sa_family == AF_INET6) {
        int zero = 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    if (bind(fd, addr, len) < 0 || listen(fd, 128) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int zt_sock_connect(const struct sockaddr *dst, const struct sockaddr *bind_src,
                    const struct zt_sock_opts *opts, bool *bind_failed)
{
    struct zt_sock_opts o = *opts;
    int fd = zt_sock_tcp(dst->sa_family, &o);
    if (fd < 0 && o.transparent) {
        /* Without CAP_NET_ADMIN or support for transparent sockets we go on
         * without preserving the source address, as ztunnel does. */
        o.transparent = false;
        fd = zt_sock_tcp(dst->sa_family, &o);
        if (bind_failed)
            *bind_failed = true;
        bind_src = NULL;
    }
    if (fd < 0)
        return fd;
    int rc = zt_sock_tune(fd, o.keepalive);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    /* Bounds the handshake (ztunnel: 10 s): the kernel gives up on SYN
     * retransmits after TCP_USER_TIMEOUT. zt_sock_connect_result() clears it
     * once connected. */
    if (o.connect_timeout_ms)
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &o.connect_timeout_ms,
                   sizeof(o.connect_timeout_ms));
    if (bind_src && bind(fd, bind_src, zt_sockaddr_len(bind_src)) < 0 && bind_failed)
        *bind_failed = true;
    if (connect(fd, dst, zt_sockaddr_len(dst)) < 0 && errno != EINPROGRESS) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int zt_sock_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    if (err == 0) {
        unsigned none = 0;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &none, sizeof(none));
    }
    return -err;
}

void zt_sockaddr_unmap(struct sockaddr_storage *ss)
{
    if (ss->ss_family != AF_INET6)
        return;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (!IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
        return;
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = s6->sin6_port};
    memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &s4, sizeof(s4));
}

int zt_sock_original_dst(int fd, struct sockaddr_storage *out)
{
    socklen_t len = sizeof(struct sockaddr_in);
    memset(out, 0, sizeof(*out));
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len) == 0)
        return 0;
    len = sizeof(struct sockaddr_in6);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out, &len) == 0) {
        zt_sockaddr_unmap(out);
        return 0;
    }
    len = sizeof(*out);
    if (getsockname(fd, (struct sockaddr *)out, &len) < 0)
        return -errno;
    zt_sockaddr_unmap(out);
    return 0;
}

int zt_sock_tune(int fd, const struct zt_sock_keepalive *ka)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        return -errno;
    if (!ka || !ka->enabled)
        return 0;
    int idle = (int)ka->time_s, intvl = (int)ka->interval_s, cnt = (int)ka->retries;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0)
        return -errno;
    return 0;
}

const char *zt_sockaddr_str(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, ntohs(s->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(s->sin6_port));
    } else {
        snprintf(buf, cap, "?");
    }
    return buf;
}

uint16_t zt_sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

socklen_t zt_sockaddr_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}
