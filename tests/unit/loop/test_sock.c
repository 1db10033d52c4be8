/* Socket options as the kernel reports them on sockets the socket layer
 * made: keepalive from the options given (KEEPALIVE_*), none without. */
#include "test.h"

#include "loop/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

static int get_opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    if (getsockopt(fd, level, name, &v, &len) < 0)
        return -errno;
    return v;
}

/* A loopback listener on an ephemeral port; its address in *addr. */
static int listener(struct sockaddr_in *addr)
{
    struct zt_sock_opts o = {.netns_fd = -1};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = zt_sock_listen((struct sockaddr *)&a, sizeof(a), &o);
    socklen_t len = sizeof(*addr);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)addr, &len) < 0)
        return -1;
    return fd;
}

static void test_connect_keepalive_from_opts(void)
{
    struct sockaddr_in addr;
    int lfd = listener(&addr);
    CHECK(lfd >= 0);
    struct zt_sock_keepalive ka = {.enabled = true, .time_s = 77, .interval_s = 11, .retries = 5};
    struct zt_sock_opts o = {.netns_fd = -1, .keepalive = &ka};
    int fd = zt_sock_connect((struct sockaddr *)&addr, NULL, &o, NULL);
    CHECK(fd >= 0);
    CHECK_EQ_INT(get_opt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    CHECK_EQ_INT(get_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 77);
    CHECK_EQ_INT(get_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL), 11);
    CHECK_EQ_INT(get_opt(fd, IPPROTO_TCP, TCP_KEEPCNT), 5);
    CHECK_EQ_INT(get_opt(fd, IPPROTO_TCP, TCP_NODELAY), 1);

    /* Disabled, and absent: no keepalive, still no Nagle. */
    ka.enabled = false;
    int fd2 = zt_sock_connect((struct sockaddr *)&addr, NULL, &o, NULL);
    CHECK(fd2 >= 0);
    CHECK_EQ_INT(get_opt(fd2, SOL_SOCKET, SO_KEEPALIVE), 0);
    CHECK_EQ_INT(get_opt(fd2, IPPROTO_TCP, TCP_NODELAY), 1);
    o.keepalive = NULL;
    int fd3 = zt_sock_connect((struct sockaddr *)&addr, NULL, &o, NULL);
    CHECK(fd3 >= 0);
    CHECK_EQ_INT(get_opt(fd3, SOL_SOCKET, SO_KEEPALIVE), 0);
    close(fd);
    close(fd2);
    close(fd3);
    close(lfd);
}

static void test_tune_accepted(void)
{
    struct sockaddr_in addr;
    int lfd = listener(&addr);
    CHECK(lfd >= 0);
    struct zt_sock_opts o = {.netns_fd = -1};
    int cfd = zt_sock_connect((struct sockaddr *)&addr, NULL, &o, NULL);
    CHECK(cfd >= 0);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    CHECK_EQ_INT(poll(&p, 1, -1), 1);
    int afd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    CHECK(afd >= 0);
    CHECK_EQ_INT(get_opt(afd, SOL_SOCKET, SO_KEEPALIVE), 0);
    CHECK_EQ_INT(zt_sock_tune(afd, &zt_sock_keepalive_control_plane), 0);
    CHECK_EQ_INT(get_opt(afd, SOL_SOCKET, SO_KEEPALIVE), 1);
    CHECK_EQ_INT(get_opt(afd, IPPROTO_TCP, TCP_KEEPIDLE), 300);
    CHECK_EQ_INT(get_opt(afd, IPPROTO_TCP, TCP_KEEPINTVL), 75);
    CHECK_EQ_INT(get_opt(afd, IPPROTO_TCP, TCP_KEEPCNT), 9);
    /* A value the kernel refuses is an error, not a silent default. */
    struct zt_sock_keepalive bad = {
        .enabled = true, .time_s = 40000, .interval_s = 1, .retries = 1};
    CHECK_EQ_INT(zt_sock_tune(cfd, &bad), -EINVAL);
    close(afd);
    close(cfd);
    close(lfd);
}

int main(void)
{
    RUN(test_connect_keepalive_from_opts);
    RUN(test_tune_accepted);
    return TEST_REPORT();
}
