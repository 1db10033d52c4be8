/* What an upgrade in place relies on when the old proxy closes a pod's
 * listener (docs/upgrade.md): with net.ipv4.tcp_migrate_req on in the
 * namespace, set through zt_sock_netns_sysctl_set, the connections queued
 * on a closing SO_REUSEPORT listener move to another listener of the group;
 * with it off (the control) some of them are reset. In a network namespace
 * of its own (a child process holds it). */
#include "test.h"

#include "loop/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NCONN 64
#define SYSCTL "/proc/sys/net/ipv4/tcp_migrate_req"

/* A child in a new network namespace with lo up, until *sock closes.
 * Returns the namespace's fd, or -1. */
static int netns_new(pid_t *pid, int *sock)
{
    int sv[2];
    char b;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    *pid = fork();
    if (*pid < 0)
        return -1;
    if (*pid == 0) {
        close(sv[0]);
        if (unshare(CLONE_NEWNET) < 0 && unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
            _exit(1);
        struct ifreq ifr = {.ifr_name = "lo"};
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
            _exit(1);
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0 || write(sv[1], "r", 1) != 1)
            _exit(1);
        (void)!read(sv[1], &b, 1);
        _exit(0);
    }
    close(sv[1]);
    *sock = sv[0];
    if (read(sv[0], &b, 1) != 1)
        return -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)*pid);
    return open(path, O_RDONLY | O_CLOEXEC);
}

static bool connected(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof(err);
    return poll(&p, 1, 5000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
           err == 0;
}

/* Two listeners in one SO_REUSEPORT group, NCONN connections completed
 * by the kernel and accepted by nobody, the first listener closed: returns
 * how many the second one can accept, and in *reset how many clients were
 * reset (-1 on a set-up failure). */
static int close_one_of_two(int netns_fd, bool migrate, int *reset)
{
    struct zt_sock_opts o = {.netns_fd = netns_fd, .reuseport = true};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(15001)};
    int cl[NCONN], accepted = 0, rc;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    *reset = 0;
    if ((rc = zt_sock_netns_sysctl_set(netns_fd, SYSCTL, migrate ? "1" : "0")) < 0) {
        fprintf(stderr, "  %s: %s\n", SYSCTL, strerror(-rc));
        return -1;
    }
    int l1 = zt_sock_listen((struct sockaddr *)&a, sizeof(a), &o);
    int l2 = zt_sock_listen((struct sockaddr *)&a, sizeof(a), &o);
    if (l1 < 0 || l2 < 0)
        return -1;
    for (int i = 0; i < NCONN; i++) {
        cl[i] = zt_sock_tcp(AF_INET, &(struct zt_sock_opts){.netns_fd = netns_fd});
        if (cl[i] < 0 ||
            (connect(cl[i], (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) ||
            !connected(cl[i]))
            return -1;
    }
    close(l1);
    for (int fd; (fd = accept4(l2, NULL, NULL, SOCK_CLOEXEC)) >= 0; close(fd))
        accepted++;
    for (int i = 0; i < NCONN; i++) {
        char c;
        if (recv(cl[i], &c, 1, MSG_DONTWAIT) < 0 && errno == ECONNRESET)
            (*reset)++;
        close(cl[i]);
    }
    close(l2);
    return accepted;
}

static void test_queued_connections_move_to_the_new_listener(void)
{
    pid_t pid;
    int sock, reset;
    if (geteuid() != 0) {
        SKIP("needs root (network namespaces)");
        return;
    }
    int ns = netns_new(&pid, &sock);
    CHECK(ns >= 0);
    if (ns < 0)
        return;
    int n = close_one_of_two(ns, true, &reset);
    if (n == -1 && access(SYSCTL, F_OK) != 0) {
        SKIP("kernel without net.ipv4.tcp_migrate_req (Linux 5.14)");
    } else {
        CHECK_EQ_INT(n, NCONN);
        CHECK_EQ_INT(reset, 0);
        /* The control: without it the first listener's queue is reset. */
        n = close_one_of_two(ns, false, &reset);
        CHECK(n >= 0 && n < NCONN);
        CHECK_EQ_INT(reset, NCONN - n);
    }
    close(ns);
    close(sock);
    waitpid(pid, NULL, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(test_queued_connections_move_to_the_new_listener);
    return TEST_REPORT();
}
