/* The eBPF backend (ZTUNNEL_REDIRECT=ebpf): loads, attaches and pins the
 * programs of src/cni/bpf/, fills their maps for each pod, and hands the
 * proxy's plaintext inbound listener to sk_lookup.
 *
 * Everything lives as pins under the agent's bpffs directory, so nothing
 * here keeps state between calls: a call opens what it needs by path and
 * closes it again; the pins keep the links (and through them the programs
 * and maps) alive while the agent is stopped, as iptables rules are. The
 * directory's contents:
 *   zt_pods, zt_orig_cookie, zt_orig_tuple, zt_listeners   maps
 *   link_<program>     the cgroup links (one per program of redirect.bpf.c)
 *   inbound_<cookie>   the sk_lookup link of the pod whose netns has that
 *                      cookie (decimal)
 * Removing every pin (zt_cni_ebpf_cleanup) detaches and frees everything. */
#include "cni/rules.h"

#include "base/err.h"
#include "base/log.h"
#include "cni/bpf/redirect_abi.h"
#include "cni/netns.h"
#include "loop/sock.h"

#include "bpf/inbound.skel.h"
#include "bpf/redirect.skel.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SCOPE "cni"
#define BPF_FS_MAGIC_NUM 0xcafe4a11
#define BPF_FS_ROOT "/sys/fs/bpf"
#define MAX_LISTENERS 64
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

static int fail(char *err, size_t errcap, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errcap, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
    return rc;
}

/* libbpf's own messages (the verifier's log among them) go to our log. */
static int on_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    char line[1024];
    size_t n;
    if (level == LIBBPF_DEBUG)
        return 0;
    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    if (level == LIBBPF_WARN)
        ZT_WARN(SCOPE, "libbpf: %s", line);
    else
        ZT_DEBUG(SCOPE, "libbpf: %s", line);
    return 0;
}

/* ---- pure helpers ---- */

int zt_cni_ebpf_default_dir(const char *cni_dir, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "%s/ztunnel/", BPF_FS_ROOT), k = 0;
    const char *s = cni_dir;
    if (n >= cap)
        return ZT_E_TOO_BIG;
    while (*s == '/')
        s++;
    if (!*s)
        return ZT_E_CONFIG;
    for (; *s; s++) {
        if (n + k + 1 >= cap)
            return ZT_E_TOO_BIG;
        /* One path component per state directory: '/' becomes '_'. */
        out[n + k++] = *s == '/' ? '_' : *s;
    }
    while (k > 0 && out[n + k - 1] == '_')
        k--;
    out[n + k] = '\0';
    return 0;
}

/* One line of /proc/net/tcp or tcp6: 1 and `*inode` if it is a socket
 * listening on `port`, 0 if not (or not a socket line), ZT_E_PROTO if its
 * local address cannot be read. */
static int parse_listener_line(const char *line, uint16_t port, uint64_t *inode)
{
    char local[64], rem[64], st[8];
    unsigned long long ino;
    unsigned lport, sl;
    const char *colon;

    /* "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when
     *  retrnsmt   uid  timeout inode": local_address is HEX_IP:HEX_PORT,
     *  st 0A is LISTEN. */
    if (sscanf(line, " %u: %63s %63s %7s %*s %*s %*s %*s %*s %llu", &sl, local, rem, st, &ino) != 5)
        return 0;
    colon = strrchr(local, ':');
    if (!colon || sscanf(colon + 1, "%x", &lport) != 1)
        return ZT_E_PROTO;
    if (strcmp(st, "0A") != 0 || lport != port || ino == 0)
        return 0;
    *inode = ino;
    return 1;
}

int zt_cni_ebpf_parse_listeners(const char *text, uint16_t port, uint64_t *inodes, size_t max,
                                size_t *n)
{
    const char *p = text;
    *n = 0;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        char line[512];
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        uint64_t ino;
        int rc;
        if (len < sizeof(line)) {
            memcpy(line, p, len);
            line[len] = '\0';
            if ((rc = parse_listener_line(line, port, &ino)) < 0)
                return rc;
            if (rc == 1) {
                if (*n == max)
                    return ZT_E_TOO_BIG;
                inodes[(*n)++] = ino;
            }
        }
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

int zt_cni_ebpf_parse_ipv4(const char *text, uint8_t out[4])
{
    /* `ip -o -4 addr show scope global`: "2: eth0    inet 10.200.1.2/32 ..." */
    const char *p = strstr(text, " inet ");
    char addr[32];
    size_t k = 0;
    if (!p)
        return ZT_E_NOT_FOUND;
    p += 6;
    while (*p == ' ')
        p++;
    while (p[k] && p[k] != '/' && p[k] != ' ' && k < sizeof(addr) - 1) {
        addr[k] = p[k];
        k++;
    }
    addr[k] = '\0';
    return inet_pton(AF_INET, addr, out) == 1 ? 0 : ZT_E_PROTO;
}

/* ---- namespaces and pins ---- */

/* The cookie the kernel gives the netns (what bpf_get_netns_cookie
 * returns), read from a socket made inside it. */
static int netns_cookie(int netns_fd, uint64_t *cookie)
{
    struct zt_sock_opts o = {.netns_fd = netns_fd};
    socklen_t len = sizeof(*cookie);
    int fd = zt_sock_udp(AF_INET, &o), rc = 0;
    if (fd == -EAFNOSUPPORT)
        fd = zt_sock_udp(AF_INET6, &o);
    if (fd < 0)
        return fd;
    if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, cookie, &len) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

static int pin_path(const char *dir, const char *name, char *out, size_t cap)
{
    return (size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap ? ZT_E_TOO_BIG : 0;
}

static bool is_bpffs(const char *path)
{
    struct statfs sf;
    return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == BPF_FS_MAGIC_NUM;
}

/* True if a seccomp filter confines this process (a systemd unit's
 * SystemCallFilter=): mount(2) may then kill it rather than fail. */
static bool is_seccomp_filtered(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    int mode = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "Seccomp: %d", &mode) == 1)
            break;
    if (f)
        fclose(f);
    return mode == 2;
}

/* Creates `dir` (0700) and missing parents; its nearest existing ancestor
 * must be on a bpf filesystem. The default's /sys/fs/bpf is mounted when
 * nothing is there yet, as systemd does on most hosts; not under a syscall
 * filter (the packaged unit): there the mount would be the unit's own,
 * gone with it and its pins, and the filter forbids it anyway. */
static int make_pin_dir(const char *dir, char *err, size_t errcap)
{
    char tmp[PATH_MAX];
    size_t n = strlen(dir);
    if (n >= sizeof(tmp))
        return fail(err, errcap, -ENAMETOOLONG, "pin directory %s: path too long", dir);
    bool wants_root = strncmp(dir, BPF_FS_ROOT "/", strlen(BPF_FS_ROOT) + 1) == 0;
    if (wants_root && !is_bpffs(BPF_FS_ROOT) && is_seccomp_filtered())
        return fail(err, errcap, ZT_E_CONFIG,
                    "%s is not a bpf filesystem, and this agent runs under a syscall filter (a "
                    "systemd unit) that keeps it from mounting one: mount it on the host "
                    "(mount -t bpf bpf %s; systemd does at boot)",
                    BPF_FS_ROOT, BPF_FS_ROOT);
    if (wants_root && !is_bpffs(BPF_FS_ROOT) &&
        mount("bpf", BPF_FS_ROOT, "bpf", 0, "mode=0700") < 0)
        return fail(err, errcap, -errno, "mounting a bpf filesystem on %s: %s (errno %d)",
                    BPF_FS_ROOT, strerror(errno), errno);
    memcpy(tmp, dir, n + 1);
    for (char *s = tmp + 1;; s++) {
        bool is_end = *s == '\0';
        if (*s != '/' && !is_end)
            continue;
        *s = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return fail(err, errcap, -errno, "creating %s: %s (errno %d)", tmp, strerror(errno),
                        errno);
        if (is_end)
            break;
        *s = '/';
    }
    if (!is_bpffs(dir))
        return fail(err, errcap, ZT_E_CONFIG,
                    "%s is not on a bpf filesystem (mount -t bpf bpf DIR, or choose a path "
                    "under one with ZTUNNEL_BPF_DIR)",
                    dir);
    return 0;
}

/* The root of the cgroup2 hierarchy: a cgroup2 mount of this mount
 * namespace, else one made for the moment (`ip netns exec`, for one, gives
 * its command a /sys without cgroups). Returns an O_DIRECTORY fd. */
static int open_cgroup_root(char *err, size_t errcap)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[1024], root[PATH_MAX], mnt[PATH_MAX], tmp[] = "/tmp/ztunnel-cgroup2.______";
    int fd = -1;

    memset(tmp + sizeof(tmp) - 7, 'X', 6); /* mkdtemp's template: six X */

    /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE ...": a cgroup2
     * mount of the hierarchy's root (ROOT "/"). */
    while (f && fd < 0 && fgets(line, sizeof(line), f)) {
        if (!strstr(line, " - cgroup2 ") ||
            sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 || strcmp(root, "/") != 0)
            continue;
        fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (f)
        fclose(f);
    if (fd >= 0)
        return fd;
    if (!mkdtemp(tmp))
        return fail(err, errcap, -errno, "no cgroup2 mount, and mkdtemp: %s", strerror(errno));
    if (mount("cgroup2", tmp, "cgroup2", 0, NULL) < 0) {
        int e = errno;
        rmdir(tmp);
        return fail(err, errcap, -e, "no cgroup2 mount, and mounting one on %s: %s (errno %d)", tmp,
                    strerror(e), e);
    }
    fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        fd = fail(err, errcap, -errno, "opening the cgroup2 root %s: %s", tmp, strerror(errno));
    /* The fd is all the attach needs. */
    umount2(tmp, MNT_DETACH);
    rmdir(tmp);
    return fd;
}

/* Attaches `prog` through a link pinned at `path`: an existing pin is
 * pointed at this program (an agent restarted with a new binary replaces
 * its programs without a moment detached), else a new link is made and
 * pinned. `target_fd` is the cgroup or the netns. */
static int attach_pinned(struct bpf_program *prog, int target_fd, const char *path, char *err,
                         size_t errcap)
{
    int prog_fd = bpf_program__fd(prog), link_fd, rc = 0;
    enum bpf_attach_type type = bpf_program__expected_attach_type(prog);
    const char *name = bpf_program__name(prog), *sec = bpf_program__section_name(prog);

    if (prog_fd < 0)
        return fail(err, errcap, prog_fd, "program %s (%s) has no fd: %s", name, sec,
                    strerror(-prog_fd));
    link_fd = bpf_obj_get(path);
    if (link_fd >= 0) {
        if (bpf_link_update(link_fd, prog_fd, NULL) < 0)
            rc = fail(err, errcap, -errno, "updating the link %s to program %s (%s): %s (errno %d)",
                      path, name, sec, strerror(errno), errno);
        close(link_fd);
        return rc;
    }
    if (errno != ENOENT)
        return fail(err, errcap, -errno, "opening the pinned link %s: %s (errno %d)", path,
                    strerror(errno), errno);
    link_fd = bpf_link_create(prog_fd, target_fd, type, NULL);
    if (link_fd < 0)
        return fail(err, errcap, -errno, "attaching program %s (%s): %s (errno %d)", name, sec,
                    strerror(errno), errno);
    if (bpf_obj_pin(link_fd, path) < 0)
        rc = fail(err, errcap, -errno, "pinning the link of program %s at %s: %s (errno %d)", name,
                  path, strerror(errno), errno);
    close(link_fd); /* detaches again if the pin failed */
    return rc;
}

int zt_cni_ebpf_setup(const char *dir, char *err, size_t errcap)
{
    struct zt_redirect_bpf *skel = NULL;
    struct bpf_program *prog;
    struct bpf_map *map;
    char path[PATH_MAX];
    int cg = -1, rc;

    err[0] = '\0';
    libbpf_set_print(on_libbpf_print);
    if ((rc = make_pin_dir(dir, err, errcap)) < 0)
        return rc;
    skel = zt_redirect_bpf__open();
    if (!skel)
        return fail(err, errcap, -errno, "opening the eBPF object redirect.bpf.o: %s (errno %d)",
                    strerror(errno), errno);
    /* Maps already pinned (an earlier run) are reused, with their entries. */
    bpf_object__for_each_map(map, skel->obj)
    {
        if (bpf_map__is_internal(map))
            continue;
        if ((rc = pin_path(dir, bpf_map__name(map), path, sizeof(path))) < 0 ||
            (rc = bpf_map__set_pin_path(map, path)) < 0) {
            rc = fail(err, errcap, rc, "pin path for map %s under %s: %s", bpf_map__name(map), dir,
                      zt_strerror(rc));
            goto out;
        }
    }
    if ((rc = zt_redirect_bpf__load(skel)) < 0) {
        rc = fail(err, errcap, rc,
                  "loading the eBPF programs of redirect.bpf.o (maps pinned in %s): %s "
                  "(errno %d; the verifier's log is in the lines above)",
                  dir, strerror(-rc), -rc);
        goto out;
    }
    if ((cg = open_cgroup_root(err, errcap)) < 0) {
        rc = cg;
        goto out;
    }
    bpf_object__for_each_program(prog, skel->obj)
    {
        char name[128];
        snprintf(name, sizeof(name), "link_%s", bpf_program__name(prog));
        if ((rc = pin_path(dir, name, path, sizeof(path))) < 0 ||
            (rc = attach_pinned(prog, cg, path, err, errcap)) < 0)
            goto out;
    }
    rc = 0;
out:
    if (cg >= 0)
        close(cg);
    zt_redirect_bpf__destroy(skel);
    return rc;
}

/* ---- pods ---- */

/* The pod's own addresses, as the outbound redirection's target. */
static int pod_value(int netns_fd, bool want_dns, struct zt_bpf_pod *v, char *err, size_t errcap)
{
    char *const argv[] = {"ip", "-o", "-4", "addr", "show", "scope", "global", NULL};
    char out[4096];
    struct zt_cni_ipv6 v6;
    int rc;

    memset(v, 0, sizeof(*v));
    if (want_dns)
        v->flags |= ZT_BPF_POD_DNS_CAPTURE;
    rc = zt_cni_netns_run(netns_fd, argv, NULL, out, sizeof(out));
    if (rc != 0)
        return fail(err, errcap, rc < 0 ? rc : ZT_E_CONFIG,
                    "reading the pod's IPv4 address (ip -o -4 addr): %s",
                    rc < 0 ? zt_strerror(rc) : out);
    if (zt_cni_ebpf_parse_ipv4(out, v->ip4) == 0)
        v->flags |= ZT_BPF_POD_HAS_IP4;
    if ((rc = zt_cni_netns_ipv6(netns_fd, &v6)) < 0)
        return fail(err, errcap, rc, "reading the pod's IPv6 addresses: %s", zt_strerror(rc));
    if (v6.has_routable && inet_pton(AF_INET6, v6.routable, v->ip6) == 1)
        v->flags |= ZT_BPF_POD_HAS_IP6;
    return 0;
}

static int inbound_pin(const char *dir, uint64_t cookie, char *out, size_t cap)
{
    return (size_t)snprintf(out, cap, "%s/inbound_%" PRIu64, dir, cookie) >= cap ? ZT_E_TOO_BIG : 0;
}

/* Loads this pod's copy of the sk_lookup program (its cookie as a
 * constant) and attaches it to the netns through a pinned link. */
static int attach_inbound(const char *dir, int netns_fd, uint64_t cookie, char *err, size_t errcap)
{
    struct zt_inbound_bpf *skel = zt_inbound_bpf__open();
    char path[PATH_MAX];
    int rc;

    if (!skel)
        return fail(err, errcap, -errno, "opening the eBPF object inbound.bpf.o: %s (errno %d)",
                    strerror(errno), errno);
    skel->rodata->pod_cookie = cookie;
    if ((rc = pin_path(dir, ZT_BPF_MAP_LISTENERS, path, sizeof(path))) < 0 ||
        (rc = bpf_map__set_pin_path(skel->maps.zt_listeners, path)) < 0 ||
        (rc = pin_path(dir, ZT_BPF_MAP_LOCAL_CONNS, path, sizeof(path))) < 0 ||
        (rc = bpf_map__set_pin_path(skel->maps.zt_local_conns, path)) < 0) {
        rc = fail(err, errcap, rc, "pin paths for the maps of inbound.bpf.o: %s", zt_strerror(rc));
        goto out;
    }
    if ((rc = zt_inbound_bpf__load(skel)) < 0) {
        rc = fail(err, errcap, rc,
                  "loading program zt_inbound (sk_lookup) of inbound.bpf.o: %s (errno %d)",
                  strerror(-rc), -rc);
        goto out;
    }
    if ((rc = inbound_pin(dir, cookie, path, sizeof(path))) < 0)
        goto out;
    rc = attach_pinned(skel->progs.zt_inbound, netns_fd, path, err, errcap);
out:
    zt_inbound_bpf__destroy(skel);
    return rc;
}

static int open_map(const char *dir, const char *name, char *err, size_t errcap)
{
    char path[PATH_MAX];
    int fd;
    if (pin_path(dir, name, path, sizeof(path)) < 0)
        return fail(err, errcap, ZT_E_TOO_BIG, "%s/%s: path too long", dir, name);
    fd = bpf_obj_get(path);
    if (fd < 0)
        return fail(err, errcap, -errno,
                    "opening the pinned map %s: %s (errno %d; was the agent started with "
                    "ZTUNNEL_REDIRECT=ebpf?)",
                    path, strerror(errno), errno);
    return fd;
}

int zt_cni_ebpf_pod_install(const char *dir, int netns_fd, bool want_dns, char *err, size_t errcap)
{
    struct zt_bpf_pod v;
    uint64_t cookie;
    int pods = -1, rc;

    err[0] = '\0';
    if ((rc = netns_cookie(netns_fd, &cookie)) < 0)
        return fail(err, errcap, rc, "reading the netns cookie (SO_NETNS_COOKIE): %s",
                    zt_strerror(rc));
    if ((rc = pod_value(netns_fd, want_dns, &v, err, errcap)) < 0)
        return rc;
    /* Inbound first: until the proxy's listener is in zt_listeners, inbound
     * connections are refused rather than let through. */
    if ((rc = attach_inbound(dir, netns_fd, cookie, err, errcap)) < 0)
        return rc;
    if ((pods = open_map(dir, ZT_BPF_MAP_PODS, err, errcap)) < 0)
        return pods;
    if (bpf_map_update_elem(pods, &cookie, &v, BPF_ANY) < 0)
        rc = fail(err, errcap, -errno,
                  "adding netns cookie %" PRIu64 " to map zt_pods: %s (errno %d)", cookie,
                  strerror(errno), errno);
    close(pods);
    return rc;
}

int zt_cni_ebpf_pod_remove(const char *dir, int netns_fd, char *err, size_t errcap)
{
    char path[PATH_MAX];
    uint64_t cookie;
    int fd, rc, first = 0;

    err[0] = '\0';
    if ((rc = netns_cookie(netns_fd, &cookie)) < 0)
        return fail(err, errcap, rc, "reading the netns cookie (SO_NETNS_COOKIE): %s",
                    zt_strerror(rc));
    if (inbound_pin(dir, cookie, path, sizeof(path)) == 0 && unlink(path) < 0 && errno != ENOENT)
        first = fail(err, errcap, -errno, "removing the sk_lookup link %s: %s (errno %d)", path,
                     strerror(errno), errno);
    const char *maps[] = {ZT_BPF_MAP_PODS, ZT_BPF_MAP_LISTENERS};
    for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
        if (pin_path(dir, maps[i], path, sizeof(path)) < 0 || (fd = bpf_obj_get(path)) < 0)
            continue; /* no map, nothing of the pod in it */
        if (bpf_map_delete_elem(fd, &cookie) < 0 && errno != ENOENT && first == 0)
            first = fail(err, errcap, -errno, "removing netns cookie %" PRIu64 " from map %s: %s",
                         cookie, maps[i], strerror(errno));
        close(fd);
    }
    return first;
}

/* ---- the proxy's listener ---- */

/* Opens /proc/net/<file> of the netns `netns_fd` (this thread enters it
 * for the open, then comes back: the file stays bound to the netns it was
 * opened in). Returns the stream, or NULL with errno set (ENOENT: no such
 * file, e.g. tcp6 without IPv6). */
static FILE *open_net_file(int netns_fd, const char *file)
{
    char path[64];
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), e;
    FILE *f = NULL;
    if (self < 0)
        return NULL;
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
        e = errno;
        close(self);
        errno = e;
        return NULL;
    }
    snprintf(path, sizeof(path), "/proc/thread-self/net/%s", file);
    f = fopen(path, "re");
    e = errno;
    if (setns(self, CLONE_NEWNET) < 0) {
        /* Every later helper and socket would be made in the pod. */
        perror("ztunnel cni: setns back to the agent's namespace");
        abort();
    }
    close(self);
    errno = e;
    return f;
}

/* Adds the inodes of the sockets listening on `port` in /proc/net/<file>
 * of the netns to inodes[*n..max), line by line (a pod with many
 * connections, TIME_WAIT ones included, has a long file). */
static int scan_listeners(int netns_fd, const char *file, uint16_t port, uint64_t *inodes,
                          size_t max, size_t *n)
{
    FILE *f = open_net_file(netns_fd, file);
    char line[512];
    int rc = 0;
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    while (rc >= 0 && fgets(line, sizeof(line), f)) {
        uint64_t ino;
        if ((rc = parse_listener_line(line, port, &ino)) == 1) {
            if (*n == max)
                rc = ZT_E_TOO_BIG;
            else
                inodes[(*n)++] = ino;
        }
    }
    fclose(f);
    return rc < 0 ? rc : 0;
}

/* The proxy's fd number whose socket has one of `inodes`, or -1. */
static int find_fd(pid_t pid, const uint64_t *inodes, size_t n)
{
    char dirpath[64], link[384], target[64];
    struct dirent *e;
    DIR *d;
    int found = -1;

    snprintf(dirpath, sizeof(dirpath), "/proc/%d/fd", (int)pid);
    if (!(d = opendir(dirpath)))
        return -1;
    while (found < 0 && (e = readdir(d)) != NULL) {
        unsigned long long ino;
        ssize_t k;
        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "%s/%s", dirpath, e->d_name);
        k = readlink(link, target, sizeof(target) - 1);
        if (k <= 0)
            continue;
        target[k] = '\0';
        if (sscanf(target, "socket:[%llu]", &ino) != 1)
            continue;
        for (size_t i = 0; i < n; i++)
            if (inodes[i] == ino)
                found = atoi(e->d_name);
    }
    closedir(d);
    return found;
}

int zt_cni_ebpf_capture_listener(const char *dir, int netns_fd, pid_t proxy_pid, char *err,
                                 size_t errcap)
{
    uint64_t inodes[MAX_LISTENERS], cookie, sock_cookie, value;
    size_t n = 0;
    int pidfd = -1, fd = -1, map = -1, target, rc, accepting = 0;
    socklen_t sl;
    const char *files[] = {"tcp6", "tcp"};

    err[0] = '\0';
    if ((rc = netns_cookie(netns_fd, &cookie)) < 0) {
        rc = fail(err, errcap, rc, "reading the netns cookie: %s", zt_strerror(rc));
        goto out;
    }
    /* The pod's listening sockets on 15006, by inode, from its own
     * /proc/net/tcp6 and tcp (a dual-stack listener shows in tcp6). */
    for (size_t i = 0; i < 2; i++) {
        if ((rc = scan_listeners(netns_fd, files[i], ZT_BPF_PORT_INBOUND_PLAIN, inodes,
                                 MAX_LISTENERS, &n)) < 0) {
            rc = fail(err, errcap, rc, "reading the pod's /proc/net/%s: %s", files[i],
                      zt_strerror(rc));
            goto out;
        }
    }
    if (n == 0) {
        rc = fail(err, errcap, ZT_E_NOT_FOUND, "no socket listens on port %d in the pod",
                  ZT_BPF_PORT_INBOUND_PLAIN);
        goto out;
    }
    /* One of them held by the proxy process on the other end of the ZDS
     * connection (a root or trusted process: SO_PEERCRED was checked). */
    if ((target = find_fd(proxy_pid, inodes, n)) < 0) {
        rc = fail(err, errcap, ZT_E_NOT_FOUND,
                  "the proxy (pid %d) holds none of the pod's %zu listening sockets on port %d",
                  (int)proxy_pid, n, ZT_BPF_PORT_INBOUND_PLAIN);
        goto out;
    }
    pidfd = (int)syscall(SYS_pidfd_open, proxy_pid, 0);
    if (pidfd < 0) {
        rc = fail(err, errcap, -errno, "pidfd_open(%d): %s (errno %d)", (int)proxy_pid,
                  strerror(errno), errno);
        goto out;
    }
    fd = (int)syscall(SYS_pidfd_getfd, pidfd, target, 0);
    if (fd < 0) {
        rc = fail(err, errcap, -errno,
                  "pidfd_getfd(pid %d, fd %d): %s (errno %d; the agent needs CAP_SYS_PTRACE)",
                  (int)proxy_pid, target, strerror(errno), errno);
        goto out;
    }
    /* The fd may have been reused since the scan: check what it is. */
    sl = sizeof(accepting);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &sl) < 0 || !accepting ||
        (sl = sizeof(sock_cookie),
         getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &sock_cookie, &sl) < 0) ||
        sock_cookie != cookie) {
        rc = fail(err, errcap, ZT_E_NOT_FOUND,
                  "fd %d of the proxy (pid %d) is no longer a listener of the pod", target,
                  (int)proxy_pid);
        goto out;
    }
    if ((map = open_map(dir, ZT_BPF_MAP_LISTENERS, err, errcap)) < 0) {
        rc = map;
        goto out;
    }
    value = (uint64_t)fd;
    if (bpf_map_update_elem(map, &cookie, &value, BPF_ANY) < 0) {
        rc = fail(err, errcap, -errno,
                  "adding the proxy's listener to map zt_listeners: %s (errno %d)", strerror(errno),
                  errno);
        goto out;
    }
    rc = 0;
out:
    /* The map holds the socket itself; our copy of the fd must not keep
     * it open after the proxy closes it. */
    if (fd >= 0)
        close(fd);
    if (pidfd >= 0)
        close(pidfd);
    if (map >= 0)
        close(map);
    return rc;
}

/* ---- cleanup ---- */

int zt_cni_ebpf_cleanup(const char *dir, char *err, size_t errcap)
{
    char path[PATH_MAX];
    struct dirent *e;
    DIR *d = opendir(dir);
    int rc = 0;

    err[0] = '\0';
    if (!d)
        return errno == ENOENT ? 0
                               : fail(err, errcap, -errno, "opening %s: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (pin_path(dir, e->d_name, path, sizeof(path)) < 0)
            continue;
        /* Links first or maps first does not matter: a link keeps its
         * program, and the program its maps, until the last pin goes. */
        if (unlink(path) < 0 && rc == 0)
            rc = fail(err, errcap, -errno, "removing %s: %s (errno %d)", path, strerror(errno),
                      errno);
    }
    closedir(d);
    if (rmdir(dir) < 0 && errno != ENOENT && rc == 0)
        rc = fail(err, errcap, -errno, "removing %s: %s (errno %d)", dir, strerror(errno), errno);
    return rc;
}

bool zt_cni_ebpf_dir_exists(const char *dir)
{
    struct stat st;
    return dir && stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}
