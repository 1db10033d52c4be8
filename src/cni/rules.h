/* In-pod redirection rules (wire facts 5.5), installed inside a pod netns,
 * with one of two backends, as istio-cni:
 *
 * iptables: rule text is built sans-I/O from the netns' current
 * `iptables-save` output, so installing is idempotent (missing jumps added,
 * duplicate jumps removed, our chains refilled) and removing touches only
 * what exists. The text is fed to `iptables-restore --noflush`, which
 * applies it atomically per table. Chains: ISTIO_PRERT (from PREROUTING)
 * and ISTIO_OUTPUT (from OUTPUT) in the mangle and nat tables, and in the
 * raw table with DNS capture.
 *
 * nftables: our own inet tables istio-ambient-nat, istio-ambient-mangle and
 * (with DNS capture) istio-ambient-raw, each with base chains prerouting and
 * output jumping to istio-prerouting and istio-output (istio-cni's names,
 * hooks and priorities). The text needs no current state: every install
 * deletes and redefines our tables in one `nft -f -` transaction, and
 * nothing outside them is touched. One inet table serves both families.
 *
 * ebpf: programs instead of nat rules (rules_ebpf.c, docs/inpod.md): cgroup
 * programs on the cgroup2 root rewrite the pods' connects and DNS sends,
 * and answer SO_ORIGINAL_DST; an sk_lookup program per pod netns hands
 * inbound connections to the proxy's plaintext listener. The mangle rules
 * (connmark 0x111 for replies to connections the proxy spoofed) and the ip
 * rule/route stay, written by iptables-restore: no BPF hook can mark the
 * first reply (the SYN-ACK) of such a connection. */
#ifndef ZT_CNI_RULES_H
#define ZT_CNI_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum zt_cni_family { ZT_CNI_IPV4 = 4, ZT_CNI_IPV6 = 6 };

/* Which tool writes the rules (ZTUNNEL_REDIRECT). */
enum zt_cni_backend { ZT_CNI_IPTABLES, ZT_CNI_NFTABLES, ZT_CNI_EBPF };

/* "iptables" / "nftables" / "ebpf". */
const char *zt_cni_backend_str(enum zt_cni_backend b);

/* Parses "iptables", "nftables" or "ebpf" (exact, lower case). Returns 0
 * or ZT_E_CONFIG. */
int zt_cni_backend_parse(const char *s, enum zt_cni_backend *out);

/* What to install besides the TCP redirection. */
struct zt_cni_rules_opts {
    /* DNS capture, as istio-cni's AMBIENT_DNS_CAPTURE: the app's DNS (UDP
     * to port 53 not leaving through lo, TCP to port 53 not to loopback)
     * is redirected to the proxy's resolver on 15053, unless sent with the
     * proxy's mark 0x539; and in the raw table, the proxy's own UDP DNS
     * (mark 0x539, to port 53) and the answers to it (from port 53,
     * unmarked) are put in conntrack zone 1. Off: none of these rules, and
     * an install removes those a previous install left. */
    bool want_dns_capture;
    /* Zero (the default) is iptables. */
    enum zt_cni_backend backend;
    /* The eBPF backend's pin directory on a bpf filesystem (borrowed), set
     * whatever the backend: the other backends remove a pod's eBPF state
     * from it, so that switching backends moves pods over. NULL: none. */
    const char *bpf_dir;
};

/* Writes the iptables-restore input that installs our rules (borrowing
 * `opts`), given `current` (iptables-save output for that family; NULL =
 * no rules). The text is NUL-terminated; `*len` excludes the NUL. Returns
 * 0 or ZT_E_TOO_BIG if `cap` is too small (4 KiB always suffices). */
int zt_cni_rules_install_text(enum zt_cni_family fam, const struct zt_cni_rules_opts *opts,
                              const char *current, char *buf, size_t cap, size_t *len);

/* Same for removal: deletes our jumps and chains that `current` shows, in
 * every table (raw included, whatever the options of the install were).
 * `*len` is 0 when there is nothing to remove. */
int zt_cni_rules_remove_text(enum zt_cni_family fam, const char *current, char *buf, size_t cap,
                             size_t *len);

/* Writes the `nft -f -` input that installs our tables (borrowing `opts`;
 * its backend is not read): one transaction that deletes whichever of our
 * tables exist (each is added first, since deleting a missing table would
 * fail the whole transaction) and defines them again, so a re-install
 * replaces them atomically, with counters reset. Without DNS capture the
 * raw table is deleted and not defined. `want_ipv6` adds the IPv6 rules
 * (::1, the IPv6 probe address) beside the IPv4 ones; the family-free rules
 * (UDP DNS, mark 0x111) match both families either way. NUL-terminated;
 * `*len` excludes the NUL. Returns 0 or ZT_E_TOO_BIG (8 KiB always
 * suffices). */
int zt_cni_nft_install_text(const struct zt_cni_rules_opts *opts, bool want_ipv6, char *buf,
                            size_t cap, size_t *len);

/* Same for removal: deletes our three tables if they exist, nothing else. */
int zt_cni_nft_remove_text(char *buf, size_t cap, size_t *len);

/* ---- eBPF backend (rules_ebpf.c) ---- */

/* The default pin directory for the agent whose state is in `cni_dir`:
 * /sys/fs/bpf/ztunnel/ followed by cni_dir without its leading '/' and
 * with '/' as '_' (/var/run/ztunnel/cni: .../var_run_ztunnel_cni), so two
 * agents with their own state never share maps. Returns 0, ZT_E_CONFIG
 * (cni_dir is "/" or empty) or ZT_E_TOO_BIG. */
int zt_cni_ebpf_default_dir(const char *cni_dir, char *out, size_t cap);

/* From /proc/net/tcp or tcp6 text: the inodes of the sockets listening
 * (st 0A) on `port`, at most `max`. Returns 0, ZT_E_TOO_BIG (more than
 * max) or ZT_E_PROTO (a line with an unreadable local address). */
int zt_cni_ebpf_parse_listeners(const char *text, uint16_t port, uint64_t *inodes, size_t max,
                                size_t *n);

/* The first address of `ip -o -4 addr show` text, network order. Returns
 * 0, ZT_E_NOT_FOUND (none) or ZT_E_PROTO. */
int zt_cni_ebpf_parse_ipv4(const char *text, uint8_t out[4]);

/* Loads the cgroup programs and attaches them to the cgroup2 root (links
 * with BPF_F_ALLOW_MULTI semantics, pinned as link_<program> in `dir`; an
 * existing pin is updated to this binary's program), with their maps
 * pinned in `dir` (reused, entries and all, when already there). Creates
 * `dir`; mounts /sys/fs/bpf if `dir` is under it and nothing is mounted
 * there. Returns 0 or a negative error with `err` naming the program or
 * map and the errno. */
int zt_cni_ebpf_setup(const char *dir, char *err, size_t errcap);

/* Enrolls the netns `netns_fd` (borrowed) in the programs set up in `dir`:
 * its sk_lookup link (pinned as inbound_<netns cookie>) first, then its
 * zt_pods entry (its addresses, the DNS capture flag). Until the proxy's
 * listener is captured the pod's inbound connections are refused. Returns
 * 0 or a negative error described in `err`; what was done is not undone. */
int zt_cni_ebpf_pod_install(const char *dir, int netns_fd, bool want_dns, char *err, size_t errcap);

/* Removes the netns from `dir`'s maps and its sk_lookup link. Missing
 * pieces are not errors. */
int zt_cni_ebpf_pod_remove(const char *dir, int netns_fd, char *err, size_t errcap);

/* Puts the proxy's plaintext inbound listener (15006) of the pod netns
 * `netns_fd` into zt_listeners: finds the pod's listening sockets on 15006
 * by inode (the pod's /proc/net/tcp6 and tcp), the one process
 * `proxy_pid` holds, and takes a copy with pidfd_getfd (CAP_SYS_PTRACE),
 * closed again once in the map. Returns 0 or a negative error. */
int zt_cni_ebpf_capture_listener(const char *dir, int netns_fd, pid_t proxy_pid, char *err,
                                 size_t errcap);

/* Removes every pin in `dir` and `dir` itself: the links detach, programs
 * and maps are freed (unless some process holds an fd to them). A missing
 * `dir` is not an error. */
int zt_cni_ebpf_cleanup(const char *dir, char *err, size_t errcap);

/* Whether `dir` (may be NULL) exists. */
bool zt_cni_ebpf_dir_exists(const char *dir);

/* Installs everything inside `netns_fd` (borrowed), as `opts` (borrowed)
 * says: the backend's rules, then
 * `ip rule fwmark 0x111/0xfff pref 32764 lookup 100` and the local default
 * route in table 100. IPv4 is mandatory. IPv6 is attempted when lo has an
 * IPv6 address or any interface has a routable one (zt_cni_netns_ipv6); its
 * failure is fatal when there is a routable address (that traffic would
 * bypass the mesh), else a warning. With nftables the IPv6 rules are in the
 * same transaction as the IPv4 ones, so only the IPv6 ip rule/route step
 * can fail alone. Rules of the other backend (left by an agent that ran
 * with it) are removed afterwards, best effort, so that switching
 * ZTUNNEL_REDIRECT and restarting the agent leaves one set of rules.
 * Returns 0 or a negative error with a description in `err` (on 0, `err`
 * may hold an IPv6 warning, else ""). A failure does not undo the steps
 * that succeeded: the caller decides whether to call zt_cni_rules_remove (a
 * re-install over rules that were already there must not remove them).
 * Blocks while the helpers run. */
int zt_cni_rules_apply(int netns_fd, const struct zt_cni_rules_opts *opts, char *err,
                       size_t errcap);

/* Removes our chains and jumps, or our tables, ip rule and route (v4 and
 * v6, whatever the netns' addresses now), for both backends. Best effort:
 * returns the first failure of `opts->backend`'s rules (IPv4 for iptables)
 * but always tries every step; the other backend's failures (its tool may
 * not be installed) are ignored. */
int zt_cni_rules_remove(int netns_fd, const struct zt_cni_rules_opts *opts, char *err,
                        size_t errcap);

#endif
