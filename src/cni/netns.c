/* Helpers are run in a forked child that joins the pod netns, so the agent
 * itself never leaves its own namespace. */
#include "cni/netns.h"

#include "base/err.h"
#include "zds/zds.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int zt_cni_netns_resolve(const char *s, char *path, size_t cap)
{
    size_t n = s ? strlen(s) : 0;
    int w;

    if (n == 0 || n > ZT_CNI_NETNS_PATH_MAX)
        return ZT_E_CONFIG;
    if (strchr(s, '/')) {
        if (s[0] != '/' || strstr(s, "/../") || (n >= 3 && strcmp(s + n - 3, "/..") == 0))
            return ZT_E_CONFIG;
        w = snprintf(path, cap, "%s", s);
    } else {
        if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 ||
            strspn(s, "abcdefghijklmnopqrstuvwxyz"
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789._-") != n)
            return ZT_E_CONFIG;
        w = snprintf(path, cap, "/var/run/netns/%s", s);
    }
    return w < 0 || (size_t)w >= cap || (size_t)w > ZT_CNI_NETNS_PATH_MAX ? ZT_E_CONFIG : 0;
}

int zt_cni_netns_open(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (zt_zds_netns_check(fd) < 0) {
        close(fd);
        return ZT_E_CONFIG;
    }
    return fd;
}

/* In the child: only async-signal-safe calls until exec. */
static void child(int netns_fd, char *const argv[], int in_fd, int out_fd)
{
    if (setns(netns_fd, CLONE_NEWNET) < 0)
        _exit(126);
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        _exit(126);
    execvp(argv[0], argv);
    _exit(127);
}

int zt_cni_netns_run(int netns_fd, char *const argv[], const char *input, char *out, size_t cap)
{
    int in[2] = {-1, -1}, outp[2] = {-1, -1};
    size_t used = 0, inlen = input ? strlen(input) : 0, inoff = 0;
    int status, rc;
    pid_t pid;

    if (out && cap)
        out[0] = '\0';
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0) {
        rc = -errno;
        goto out;
    }
    pid = fork();
    if (pid < 0) {
        rc = -errno;
        goto out;
    }
    if (pid == 0)
        child(netns_fd, argv, in[0], outp[1]);
    close(in[0]);
    close(outp[1]);
    in[0] = outp[1] = -1;
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    if (inlen == 0) {
        close(in[1]);
        in[1] = -1;
    }
    /* Feed stdin and drain stdout together: either may block the child. */
    for (;;) {
        struct pollfd pf[2] = {{.fd = outp[0], .events = POLLIN}, {.fd = in[1], .events = POLLOUT}};
        int np = in[1] >= 0 ? 2 : 1;
        if (poll(pf, (nfds_t)np, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (np == 2 && pf[1].revents) {
            ssize_t w = write(in[1], input + inoff, inlen - inoff);
            if (w > 0)
                inoff += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                inoff = inlen;
            if (inoff == inlen) {
                close(in[1]);
                in[1] = -1;
            }
        }
        if (pf[0].revents) {
            char tmp[1024];
            ssize_t r = read(outp[0], tmp, sizeof(tmp));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            if (out && cap && used < cap - 1) {
                size_t k = (size_t)r < cap - 1 - used ? (size_t)r : cap - 1 - used;
                memcpy(out + used, tmp, k);
                used += k;
                out[used] = '\0';
            }
        }
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            rc = -errno;
            goto out;
        }
    }
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
out:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (outp[i] >= 0)
            close(outp[i]);
    }
    return rc;
}

bool zt_cni_netns_has_program(const char *name)
{
    const char *path = getenv("PATH"), *p;
    char file[PATH_MAX];
    struct stat st;

    if (!path)
        path = "/bin:/usr/bin";
    for (p = path;; p++) {
        size_t n = strcspn(p, ":");
        /* An empty entry is the current directory, as for execvp. */
        int w = n ? snprintf(file, sizeof(file), "%.*s/%s", (int)n, p, name)
                  : snprintf(file, sizeof(file), "%s", name);
        if (w > 0 && (size_t)w < sizeof(file) && stat(file, &st) == 0 && S_ISREG(st.st_mode) &&
            access(file, X_OK) == 0)
            return true;
        p += n;
        if (!*p)
            return false;
    }
}

int zt_cni_ipv6_parse(const char *text, struct zt_cni_ipv6 *out)
{
    const char *p = text;

    memset(out, 0, sizeof(*out));
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[256], hex[33], ifname[32];
        unsigned idx, plen, scope, flags;
        struct in6_addr a;

        if (n >= sizeof(line))
            return ZT_E_PROTO;
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl ? nl + 1 : p + n;
        if (strspn(line, " \t") == n)
            continue;
        /* "<32 hex> <ifindex> <prefixlen> <scope> <flags> <name>", all hex */
        if (sscanf(line, "%32[0-9a-fA-F] %x %x %x %x %31s", hex, &idx, &plen, &scope, &flags,
                   ifname) != 6 ||
            strlen(hex) != 32)
            return ZT_E_PROTO;
        for (int i = 0; i < 16; i++) {
            unsigned b;
            if (sscanf(hex + 2 * i, "%2x", &b) != 1)
                return ZT_E_PROTO;
            a.s6_addr[i] = (uint8_t)b;
        }
        if (strcmp(ifname, "lo") == 0)
            out->has_loopback = true;
        /* IPV6_ADDR_LOOPBACK 0x10 and IPV6_ADDR_LINKLOCAL 0x20 in the kernel. */
        if (scope == 0x10 || scope == 0x20 || out->has_routable)
            continue;
        out->has_routable = true;
        if (!inet_ntop(AF_INET6, &a, out->routable, sizeof(out->routable)))
            return ZT_E_PROTO;
    }
    return 0;
}

int zt_cni_netns_ipv6(int netns_fd, struct zt_cni_ipv6 *out)
{
    /* /proc/net shows the netns of the reading process: the helper's. A
     * kernel without IPv6 has no such file. */
    char *const argv[] = {"sh", "-c",
                          "if [ -e /proc/net/if_inet6 ]; then cat /proc/net/if_inet6; fi", NULL};
    size_t cap = 64 * 1024;
    char *text = malloc(cap);
    int rc;

    if (!text)
        abort();
    rc = zt_cni_netns_run(netns_fd, argv, NULL, text, cap);
    if (rc > 0)
        rc = ZT_E_CONFIG;
    else if (rc == 0 && strlen(text) >= cap - 1)
        rc = ZT_E_TOO_BIG;
    else if (rc == 0)
        rc = zt_cni_ipv6_parse(text, out);
    free(text);
    return rc;
}
