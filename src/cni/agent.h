/* The node agent behind `ztunnel cni`: ZDS server for proxies, in-pod
 * redirection rules, enrollment store, and the local control socket used by
 * `ztunnel enroll` / `ztunnel unenroll`.
 *
 * Runs on one libuv loop. Proxies connect to the SOCK_SEQPACKET socket at
 * `uds_path` (INPOD_UDS) and send ZdsHello; the agent replies with `add`
 * (netns fd attached) for every enrolled pod whose netns it holds, `keep`
 * for the others, then `snapshot_sent`, one message at a time, each waiting
 * for its Ack (5 s deadline; a missed deadline or a stray datagram closes
 * that connection). Afterwards new enrollments go to the newest connection
 * and removals to all connections, as istio-cni does: during an upgrade the
 * new proxy gets everything and the old one nothing new. Beyond istio-cni:
 * when the newest connection closes while older ones remain, the newest of
 * those is offered every pod (adds of pods it serves are no-ops to it). */
#ifndef ZT_CNI_AGENT_H
#define ZT_CNI_AGENT_H

#include "cni/rules.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct zt_cni_agent;

/* Installs the in-pod rules in a netns (borrowed fd) as `opts` (borrowed)
 * says; fills `err` on failure. Returns 0 or a negative error. */
typedef int zt_cni_rules_apply_fn(int netns_fd, const struct zt_cni_rules_opts *opts, char *err,
                                  size_t errcap);
/* Removes them (`opts` says which backend's failures count). Same
 * conventions. */
typedef int zt_cni_rules_fn(int netns_fd, const struct zt_cni_rules_opts *opts, char *err,
                            size_t errcap);

struct zt_cni_agent_config {
    const char *uds_path; /* ZDS socket; its parent directory is created 0755 */
    const char *cni_dir;  /* holds agent.sock and pods/; created 0700 */
    /* NULL = zt_cni_rules_apply / zt_cni_rules_remove. Tests pass fakes. */
    zt_cni_rules_apply_fn *rules_apply;
    zt_cni_rules_fn *rules_remove;
    /* No DNS capture rules in the pods (AMBIENT_DNS_CAPTURE=false). By
     * default the app's DNS is redirected to the proxy, as istio-cni does
     * since Istio 1.25. Applies to every install, re-installs at start
     * included, so turning it off and restarting takes the rules away. */
    bool is_dns_capture_off;
    /* Who writes the rules (ZTUNNEL_REDIRECT); iptables by default, as
     * istio-cni. Applies to every install and removal; an install also
     * removes the other backend's rules, so restarting the agent with the
     * other backend moves every pod over. */
    enum zt_cni_backend backend;
    /* The eBPF backend's pin directory (ZTUNNEL_BPF_DIR), on a bpf
     * filesystem; NULL = zt_cni_ebpf_default_dir(cni_dir). With
     * ZTUNNEL_REDIRECT=ebpf the agent loads and attaches the programs there
     * at start (failing the start if it cannot) and, after each proxy Ack
     * of an add, hands that proxy's plaintext inbound listener to the pod's
     * sk_lookup program. With another backend, an existing directory (an
     * earlier run with ebpf) is removed once the pods are re-installed. */
    const char *bpf_dir;
    /* Besides root, the uid whose processes may connect to both sockets
     * (ZTUNNEL_TRUSTED_UID); 0 = root only. When set, the socket files are
     * owned by it and group root, writable by both (so root without
     * CAP_DAC_OVERRIDE connects too), and a newly created cni_dir is 0711
     * so it can reach agent.sock. */
    uint32_t trusted_uid;
};

/* Creates both sockets (unlinking stale socket files; fails with -EADDRINUSE
 * if another agent answers on agent.sock), loads the enrollments from
 * <cni_dir>/pods (corrupt files are logged and skipped) and re-installs
 * their rules. The socket directories and pods/ must be owned by root (or
 * the agent's user) and not writable by group or others: otherwise
 * ZT_E_CONFIG, logged with the path and its owner or mode. Strings in `cfg`
 * are copied. Returns 0 and `*out`, or a negative error (logged).
 *
 * Refused at run time, with the reason in the reply: a control or ZDS client
 * whose uid (SO_PEERCRED) is neither 0 nor `trusted_uid` (a ZDS client is
 * just disconnected), an enroll of the agent's own network namespace, and
 * an enroll of a netns that is already enrolled under another pod uid. */
int zt_cni_agent_start(uv_loop_t *loop, const struct zt_cni_agent_config *cfg,
                       struct zt_cni_agent **out);

/* Number of enrolled pods. */
unsigned zt_cni_agent_pod_count(const struct zt_cni_agent *a);

/* Closes every socket and unlinks the socket files; enrollments and rules
 * stay in place so that a restart restores them. Memory is freed from a
 * later close callback. NULL or a second call is a no-op. */
void zt_cni_agent_stop(struct zt_cni_agent *a);

#endif
