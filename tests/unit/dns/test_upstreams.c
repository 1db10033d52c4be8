/* resolv.conf as the DNS proxy reads it (src/dns/upstreams.c). */
#include "dns/server.h"

#include "base/err.h"
#include "loop/sock.h"
#include "test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>

static const char *write_conf(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/zt-test-resolv.%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        abort();
    close(fd);
    return path;
}

static void test_nameservers_and_options(void)
{
    const char *p = write_conf("# kubelet\nsearch a.svc.cluster.local svc.cluster.local\n"
                               "nameserver 10.96.0.10\nnameserver fd00::a\n"
                               "nameserver 10.0.0.3\nnameserver 10.0.0.4\n"
                               "options ndots:5 timeout:3 attempts:9 rotate\n");
    struct zt_dns_upstreams u;
    char err[256], s[64];
    CHECK_EQ_INT(zt_dns_upstreams_load(p, &u, err, sizeof(err)), 0);
    CHECK_EQ_INT(u.n, 3); /* glibc's MAXNS: the fourth is ignored */
    CHECK_EQ_STR(zt_sockaddr_str((struct sockaddr *)&u.addr[0], s, sizeof(s)), "10.96.0.10:53");
    CHECK_EQ_STR(zt_sockaddr_str((struct sockaddr *)&u.addr[1], s, sizeof(s)), "[fd00::a]:53");
    CHECK_EQ_INT(u.timeout_ms, 3000);
    CHECK_EQ_INT(u.attempts, 5); /* capped */
    unlink(p);
    p = write_conf("search x\n");
    CHECK_EQ_INT(zt_dns_upstreams_load(p, &u, err, sizeof(err)), 0);
    CHECK_EQ_INT(u.n, 0);
    CHECK_EQ_INT(u.timeout_ms, 5000);
    CHECK_EQ_INT(u.attempts, 2);
    unlink(p);
}

static void test_errors(void)
{
    const char *p = write_conf("nameserver 10.0.0.1\nnameserver dns.example\n");
    struct zt_dns_upstreams u;
    char err[256], want[128];
    CHECK_EQ_INT(zt_dns_upstreams_load(p, &u, err, sizeof(err)), ZT_E_CONFIG);
    snprintf(want, sizeof(want), "%s:2: nameserver: not an IP address: dns.example", p);
    CHECK_EQ_STR(err, want);
    unlink(p);
    CHECK(zt_dns_upstreams_load("/nonexistent/resolv.conf", &u, err, sizeof(err)) == -ENOENT);
    CHECK(strstr(err, "/nonexistent/resolv.conf") != NULL);
}

int main(void)
{
    RUN(test_nameservers_and_options);
    RUN(test_errors);
    return TEST_REPORT();
}
