/* What the eBPF redirection programs (redirect.bpf.c, inbound.bpf.c) and the agent
 * (src/cni/rules_ebpf.c) share: map names, key and value layouts, ports and
 * marks. Included by both sides, so only fixed-width types from
 * <linux/types.h> (or vmlinux.h on the BPF side) appear here.
 *
 * Addresses are kept as 16 bytes in network order, IPv4 as IPv4-mapped IPv6
 * (::ffff:a.b.c.d), so that an IPv4 client and a dual-stack listener's
 * accepted socket (which sees IPv4-mapped addresses) build the same key.
 * Ports are kept in host order. */
#ifndef ZT_CNI_BPF_REDIRECT_ABI_H
#define ZT_CNI_BPF_REDIRECT_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* The proxy's listeners inside each pod (wire facts 5.5). */
#define ZT_BPF_PORT_OUTBOUND 15001
#define ZT_BPF_PORT_INBOUND_PLAIN 15006
#define ZT_BPF_PORT_HBONE 15008
#define ZT_BPF_PORT_DNS 15053
/* ztunnel marks its own sockets 0x539 in the low 12 bits. */
#define ZT_BPF_MARK_MASK 0xfff
#define ZT_BPF_PROXY_MARK 0x539
/* 169.254.7.127 (kubelet probes, SNATed on the node), network order
 * bytes; and its IPv6 twin fd16:9254:7127:1337:ffff:ffff:ffff:ffff. */
#define ZT_BPF_PROBE4_B0 169
#define ZT_BPF_PROBE4_B1 254
#define ZT_BPF_PROBE4_B2 7
#define ZT_BPF_PROBE4_B3 127

/* zt_pods value flags. */
#define ZT_BPF_POD_DNS_CAPTURE 0x1u /* UDP and TCP port 53 go to 15053 */
#define ZT_BPF_POD_HAS_IP4 0x2u     /* ip4 is the pod's IPv4 address */
#define ZT_BPF_POD_HAS_IP6 0x4u     /* ip6 is the pod's routable IPv6 address */

/* Value of zt_pods, keyed by the pod netns' cookie (__u64). The outbound
 * redirection goes to the pod's own address (so the app's connection keeps
 * its source address, as with iptables' REDIRECT), or loopback if the pod
 * has none of that family. */
struct zt_bpf_pod {
    __u32 flags;
    __u8 ip4[4];
    __u8 ip6[16];
};

/* An address as the app dialed it. family is AF_INET or AF_INET6 (2, 10). */
struct zt_bpf_addr {
    __u8 ip[16]; /* IPv4: mapped */
    __u16 port;  /* host order */
    __u16 family;
};

/* The client side of a redirected TCP connection: what the proxy's
 * accepted socket sees as (peer, local). */
struct zt_bpf_tuple {
    __u8 src[16];
    __u8 dst[16];
    __u16 sport, dport; /* host order */
};

/* zt_local_conns: the TCP connections a pod netns opened itself (the
 * proxy's, the pod's own to its own address, the app's to the proxy),
 * keyed like zt_orig_tuple; sk_lookup leaves them alone, as iptables'
 * PREROUTING never re-NATs a connection conntrack saw leave through
 * OUTPUT. The value is unused. (sk_lookup cannot tell lo from eth0 here:
 * a connection to the pod's own address reports the address's device.) */
#define ZT_BPF_MAX_PODS 8192
#define ZT_BPF_MAX_CONNS 65536

/* Names of the maps and of the pins under the agent's bpffs directory. */
#define ZT_BPF_MAP_PODS "zt_pods"
#define ZT_BPF_MAP_ORIG_COOKIE "zt_orig_cookie"
#define ZT_BPF_MAP_ORIG_TUPLE "zt_orig_tuple"
#define ZT_BPF_MAP_LISTENERS "zt_listeners"
#define ZT_BPF_MAP_LOCAL_CONNS "zt_local_conns"

#endif
