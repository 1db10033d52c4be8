/* Network namespaces for the node agent: resolve and open one, run a
 * helper program (iptables-restore, ip) inside it. */
#ifndef ZT_CNI_NETNS_H
#define ZT_CNI_NETNS_H

#include <stdbool.h>
#include <stddef.h>

#define ZT_CNI_NETNS_PATH_MAX 255

/* Resolves NAME (no '/': [A-Za-z0-9._-], as `ip netns` names) to
 * /var/run/netns/NAME; an absolute path (e.g. /proc/PID/ns/net) is kept.
 * Writes the path into `path` (cap bytes). Returns 0 or ZT_E_CONFIG. */
int zt_cni_netns_resolve(const char *name_or_path, char *path, size_t cap);

/* Opens `path` (O_RDONLY|O_CLOEXEC) and checks it is a network namespace.
 * Returns the fd (owned by the caller), -ENOENT if it does not exist,
 * ZT_E_CONFIG if it is not a netns, or another -errno. */
int zt_cni_netns_open(const char *path);

/* Runs argv[0] (searched in PATH) inside the netns `netns_fd` (borrowed):
 * fork, setns(CLONE_NEWNET), exec. `input` (may be NULL) is written to its
 * stdin; its stdout+stderr are collected into `out` (NUL-terminated,
 * truncated to cap-1; out may be NULL). Blocks until the child exits.
 * Returns the exit status (0..255), 127 if it could not be executed, or
 * -errno if fork/pipe failed. The caller must ignore SIGPIPE (a helper that
 * exits before reading its input would otherwise kill the agent). */
int zt_cni_netns_run(int netns_fd, char *const argv[], const char *input, char *out, size_t cap);

/* Whether `name` (no '/') is an executable regular file in one of PATH's
 * directories (glibc's default "/bin:/usr/bin" when PATH is unset), as
 * zt_cni_netns_run will look for it: lets a caller refuse at start what
 * would otherwise fail at every enrollment. */
bool zt_cni_netns_has_program(const char *name);

/* The IPv6 addresses of a netns, as far as redirection cares. An address is
 * routable unless its scope is link (fe80::/10) or host (::1): traffic from
 * a routable address leaves the pod, so it must be captured. */
struct zt_cni_ipv6 {
    bool has_loopback; /* lo has an IPv6 address: the local route can work */
    bool has_routable; /* some interface has a routable address */
    char routable[46]; /* the first routable address (for messages), or "" */
};

/* Reads /proc/net/if_inet6 text (`text`, NUL-terminated; "" when the kernel
 * has no IPv6). Returns 0, or ZT_E_PROTO for a line it cannot read (the
 * caller then cannot know whether IPv6 must be captured). */
int zt_cni_ipv6_parse(const char *text, struct zt_cni_ipv6 *out);

/* Fills `out` for the netns `netns_fd` (borrowed) by reading its
 * /proc/net/if_inet6 from a helper inside it. Returns 0, ZT_E_PROTO (see
 * above), ZT_E_TOO_BIG (too many addresses to read), ZT_E_CONFIG (the
 * helper failed) or -errno. */
int zt_cni_netns_ipv6(int netns_fd, struct zt_cni_ipv6 *out);

#endif
