/* The redirection decision, shared by the BPF programs (which compile it
 * with clang -target bpf) and the unit tests (tests/unit/cni/test_ebpf.c),
 * so the rule the kernel runs is the rule the tests check. Pure functions of
 * their arguments: no maps, no helpers. Mirrors the nat OUTPUT rules of the
 * iptables backend (src/cni/rules.c): the proxy's own sockets (mark 0x539),
 * loopback and the probe address are left alone; with DNS capture, UDP and
 * TCP to port 53 go to the proxy's resolver; other TCP goes to the outbound
 * listener, except to the pod's own addresses (the pod talking to itself,
 * which leaves through lo: iptables' `-o lo ! -d 127.0.0.1 -j ACCEPT`). */
#ifndef ZT_CNI_BPF_REDIRECT_LOGIC_H
#define ZT_CNI_BPF_REDIRECT_LOGIC_H

#include "redirect_abi.h"

enum zt_bpf_verdict {
    ZT_BPF_PASS = 0,     /* leave the destination alone */
    ZT_BPF_OUTBOUND = 1, /* to the pod's 15001 */
    ZT_BPF_DNS = 2       /* to loopback 15053 */
};

static inline int zt_bpf_is_mapped4(const __u8 ip[16])
{
    for (int i = 0; i < 10; i++)
        if (ip[i])
            return 0;
    return ip[10] == 0xff && ip[11] == 0xff;
}

/* 127.0.0.0/8 (mapped) or ::1. */
static inline int zt_bpf_is_loopback(const __u8 ip[16])
{
    if (zt_bpf_is_mapped4(ip))
        return ip[12] == 127;
    for (int i = 0; i < 15; i++)
        if (ip[i])
            return 0;
    return ip[15] == 1;
}

static inline int zt_bpf_is_probe(const __u8 ip[16])
{
    static const __u8 probe6[16] = {0xfd, 0x16, 0x92, 0x54, 0x71, 0x27, 0x13, 0x37,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    int same = 1;
    if (zt_bpf_is_mapped4(ip))
        return ip[12] == ZT_BPF_PROBE4_B0 && ip[13] == ZT_BPF_PROBE4_B1 &&
               ip[14] == ZT_BPF_PROBE4_B2 && ip[15] == ZT_BPF_PROBE4_B3;
    for (int i = 0; i < 16; i++)
        if (ip[i] != probe6[i])
            same = 0;
    return same;
}

/* One of the pod's own addresses, as the agent recorded them. */
static inline int zt_bpf_is_own(const struct zt_bpf_pod *pod, const __u8 ip[16])
{
    int same = 1;
    if (zt_bpf_is_mapped4(ip))
        return (pod->flags & ZT_BPF_POD_HAS_IP4) && ip[12] == pod->ip4[0] &&
               ip[13] == pod->ip4[1] && ip[14] == pod->ip4[2] && ip[15] == pod->ip4[3];
    if (!(pod->flags & ZT_BPF_POD_HAS_IP6))
        return 0;
    for (int i = 0; i < 16; i++)
        if (ip[i] != pod->ip6[i])
            same = 0;
    return same;
}

/* What to do with a connect() or sendmsg() of an enrolled pod's socket
 * (mark: the socket's SO_MARK) to dst:port (port in host order). */
static inline enum zt_bpf_verdict zt_bpf_decide(const struct zt_bpf_pod *pod, const __u8 dst[16],
                                                __u16 port, int is_tcp, __u32 mark)
{
    if ((mark & ZT_BPF_MARK_MASK) == ZT_BPF_PROXY_MARK)
        return ZT_BPF_PASS;
    if (zt_bpf_is_loopback(dst) || zt_bpf_is_probe(dst))
        return ZT_BPF_PASS;
    if (port == 53 && (pod->flags & ZT_BPF_POD_DNS_CAPTURE)) {
        /* UDP to the pod's own address leaves through lo: not captured,
         * as iptables' `! -o lo`; TCP to it is (`! -d 127.0.0.1`). */
        if (!is_tcp && zt_bpf_is_own(pod, dst))
            return ZT_BPF_PASS;
        return ZT_BPF_DNS;
    }
    if (!is_tcp || zt_bpf_is_own(pod, dst))
        return ZT_BPF_PASS;
    return ZT_BPF_OUTBOUND;
}

/* Where a verdict sends a destination of dst's family: the pod's own
 * address (or loopback) at 15001, or loopback at 15053. An IPv4 (mapped)
 * destination gets an IPv4 (mapped) target. */
static inline void zt_bpf_target(const struct zt_bpf_pod *pod, enum zt_bpf_verdict v,
                                 const __u8 dst[16], __u8 out[16], __u16 *port)
{
    int is4 = zt_bpf_is_mapped4(dst);
    for (int i = 0; i < 16; i++)
        out[i] = 0;
    *port = v == ZT_BPF_DNS ? ZT_BPF_PORT_DNS : ZT_BPF_PORT_OUTBOUND;
    if (is4) {
        out[10] = out[11] = 0xff;
        if (v == ZT_BPF_OUTBOUND && (pod->flags & ZT_BPF_POD_HAS_IP4)) {
            out[12] = pod->ip4[0];
            out[13] = pod->ip4[1];
            out[14] = pod->ip4[2];
            out[15] = pod->ip4[3];
        } else {
            out[12] = 127;
            out[15] = 1;
        }
        return;
    }
    if (v == ZT_BPF_OUTBOUND && (pod->flags & ZT_BPF_POD_HAS_IP6)) {
        for (int i = 0; i < 16; i++)
            out[i] = pod->ip6[i];
        return;
    }
    out[15] = 1;
}

/* Inbound (sk_lookup): whether a new TCP connection to local:lport from
 * remote goes to the plaintext inbound listener. Left alone: connections
 * the pod opened itself (`is_from_pod`: the proxy's own to the app, the
 * pod's to its own address, the app's to the proxy), HBONE (15008),
 * loopback destinations and the probe source, as iptables' PREROUTING. */
static inline int zt_bpf_inbound_wanted(const __u8 local[16], __u16 lport, const __u8 remote[16],
                                        int is_from_pod)
{
    if (is_from_pod || lport == ZT_BPF_PORT_HBONE)
        return 0;
    return !zt_bpf_is_loopback(local) && !zt_bpf_is_probe(remote);
}

#endif
