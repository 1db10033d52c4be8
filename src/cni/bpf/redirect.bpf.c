/* eBPF redirection (ZTUNNEL_REDIRECT=ebpf), the cgroup part: attached once
 * to the cgroup2 root, so these run for every socket on the host, and act
 * only on sockets of a network namespace the agent enrolled (zt_pods, keyed
 * by netns cookie); all else returns at the first map lookup.
 *
 * Outbound: connect4/6 rewrite an app's TCP connect to the pod's outbound
 * listener (15001) and remember the destination by socket cookie; sockops
 * (active established) re-keys it by the client's 4-tuple; getsockopt
 * answers SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST on the proxy's accepted
 * socket from it, so the proxy finds the destination as it does after
 * iptables' REDIRECT. getpeername4/6 give the app the address it dialed.
 * DNS capture: sendmsg4/6 and connect4/6 send UDP (and TCP) to port 53 to
 * the proxy's resolver on 15053; recvmsg4/6 make the answers come from the
 * server the app asked. The decision itself is redirect_logic.h. */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "redirect_logic.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOL_IP 0
#define SOL_IPV6 41
#define SO_ORIGINAL_DST 80
#define IP6T_SO_ORIGINAL_DST 80
#define PAGE_SIZE 4096

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, ZT_BPF_MAX_PODS);
    __type(key, __u64);
    __type(value, struct zt_bpf_pod);
} zt_pods SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, ZT_BPF_MAX_CONNS);
    __type(key, __u64);
    __type(value, struct zt_bpf_addr);
} zt_orig_cookie SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, ZT_BPF_MAX_CONNS);
    __type(key, struct zt_bpf_tuple);
    __type(value, struct zt_bpf_addr);
} zt_orig_tuple SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, ZT_BPF_MAX_CONNS);
    __type(key, struct zt_bpf_tuple);
    __type(value, __u8);
} zt_local_conns SEC(".maps");

static __always_inline struct zt_bpf_pod *pod_of(void *ctx)
{
    __u64 ns = bpf_get_netns_cookie(ctx);
    return bpf_map_lookup_elem(&zt_pods, &ns);
}

static __always_inline void map4(__u32 be, __u8 out[16])
{
    __builtin_memset(out, 0, 16);
    out[10] = out[11] = 0xff;
    __builtin_memcpy(out + 12, &be, 4);
}

static __always_inline __u32 unmap4(const __u8 ip[16])
{
    __u32 be;
    __builtin_memcpy(&be, ip + 12, 4);
    return be;
}

/* Context fields are read one constant offset at a time (the verifier
 * refuses a pointer into the context). */
static __always_inline void load6(__u32 a, __u32 b, __u32 c, __u32 d, __u8 out[16])
{
    __builtin_memcpy(out, &a, 4);
    __builtin_memcpy(out + 4, &b, 4);
    __builtin_memcpy(out + 8, &c, 4);
    __builtin_memcpy(out + 12, &d, 4);
}
/* One 32-bit load or store at base + a constant offset, in assembly so the
 * compiler cannot fold the offset into a modified base pointer. */
static __always_inline __u32 rd32(const void *base, const long off)
{
    __u32 v;
    asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(v) : "r"(base), "i"(off));
    return v;
}
static __always_inline void wr32(void *base, const long off, __u32 v)
{
    asm volatile("*(u32 *)(%0 + %1) = %2" ::"r"(base), "i"(off), "r"(v) : "memory");
}
#define LOAD6(p, type, f, out)                                                                     \
    load6(rd32(p, __builtin_offsetof(type, f[0])), rd32(p, __builtin_offsetof(type, f[1])),        \
          rd32(p, __builtin_offsetof(type, f[2])), rd32(p, __builtin_offsetof(type, f[3])), out)

static __always_inline int same16(const __u8 a[16], const __u8 b[16])
{
    int same = 1;
    for (int i = 0; i < 16; i++)
        if (a[i] != b[i])
            same = 0;
    return same;
}

/* connect / sendmsg: decide, remember the original, rewrite. */
static __always_inline int redirect(struct bpf_sock_addr *ctx, int is6)
{
    struct zt_bpf_pod *pod = pod_of(ctx);
    struct bpf_sock *sk;
    struct zt_bpf_addr orig = {};
    enum zt_bpf_verdict v;
    __u8 to[16];
    __u16 to_port;
    __u64 cookie;

    if (!pod)
        return 1;
    sk = ctx->sk;
    if (!sk)
        return 1;
    if (is6)
        LOAD6(ctx, struct bpf_sock_addr, user_ip6, orig.ip);
    else
        map4(ctx->user_ip4, orig.ip);
    orig.port = bpf_ntohs((__u16)ctx->user_port);
    orig.family = is6 ? AF_INET6 : AF_INET;
    v = zt_bpf_decide(pod, orig.ip, orig.port, ctx->type == SOCK_STREAM, sk->mark);
    cookie = bpf_get_socket_cookie(ctx);
    if (v == ZT_BPF_PASS) {
        /* A socket connected again elsewhere must not keep an old entry. */
        bpf_map_delete_elem(&zt_orig_cookie, &cookie);
        return 1;
    }
    zt_bpf_target(pod, v, orig.ip, to, &to_port);
    if (bpf_map_update_elem(&zt_orig_cookie, &cookie, &orig, BPF_ANY) < 0)
        return 0; /* fail closed: EPERM rather than an unmeshed connection */
    if (is6) {
        __u32 w[4];
        __builtin_memcpy(w, to, 16);
        wr32(ctx, __builtin_offsetof(struct bpf_sock_addr, user_ip6[0]), w[0]);
        wr32(ctx, __builtin_offsetof(struct bpf_sock_addr, user_ip6[1]), w[1]);
        wr32(ctx, __builtin_offsetof(struct bpf_sock_addr, user_ip6[2]), w[2]);
        wr32(ctx, __builtin_offsetof(struct bpf_sock_addr, user_ip6[3]), w[3]);
    } else {
        ctx->user_ip4 = unmap4(to);
    }
    ctx->user_port = bpf_htons(to_port);
    return 1;
}

SEC("cgroup/connect4")
int zt_connect4(struct bpf_sock_addr *ctx)
{
    return redirect(ctx, 0);
}

SEC("cgroup/connect6")
int zt_connect6(struct bpf_sock_addr *ctx)
{
    return redirect(ctx, 1);
}

/* Unconnected UDP: only DNS is ever redirected (zt_bpf_decide passes any
 * other UDP). */
SEC("cgroup/sendmsg4")
int zt_sendmsg4(struct bpf_sock_addr *ctx)
{
    return redirect(ctx, 0);
}

SEC("cgroup/sendmsg6")
int zt_sendmsg6(struct bpf_sock_addr *ctx)
{
    return redirect(ctx, 1);
}

/* The peer address the app sees (recvmsg source, getpeername): our target
 * becomes the original again. */
static __always_inline int restore(struct bpf_sock_addr *ctx, int is6)
{
    struct zt_bpf_pod *pod = pod_of(ctx);
    struct zt_bpf_addr *orig;
    __u8 cur[16], to[16];
    __u16 port, to_port;
    __u64 cookie;

    if (!pod)
        return 1;
    cookie = bpf_get_socket_cookie(ctx);
    orig = bpf_map_lookup_elem(&zt_orig_cookie, &cookie);
    if (!orig)
        return 1;
    if (is6)
        LOAD6(ctx, struct bpf_sock_addr, user_ip6, cur);
    else
        map4(ctx->user_ip4, cur);
    port = bpf_ntohs((__u16)ctx->user_port);
    /* Only what came from where we sent it. */
    zt_bpf_target(pod, orig->port == 53 ? ZT_BPF_DNS : ZT_BPF_OUTBOUND, orig->ip, to, &to_port);
    if (port != to_port || !same16(cur, to))
        return 1;
    if (is6) {
        __u32 w[4];
        __builtin_memcpy(w, orig->ip, 16);
        wr32(ctx, __builtin_offsetof(struct bpf_sock_addr, user_ip6[0]), w[0]);
        wr32(ctx, __builtin_offsetof(struct bpf_sock_addr, user_ip6[1]), w[1]);
        wr32(ctx, __builtin_offsetof(struct bpf_sock_addr, user_ip6[2]), w[2]);
        wr32(ctx, __builtin_offsetof(struct bpf_sock_addr, user_ip6[3]), w[3]);
    } else {
        ctx->user_ip4 = unmap4(orig->ip);
    }
    ctx->user_port = bpf_htons(orig->port);
    return 1;
}

SEC("cgroup/recvmsg4")
int zt_recvmsg4(struct bpf_sock_addr *ctx)
{
    return restore(ctx, 0);
}

SEC("cgroup/recvmsg6")
int zt_recvmsg6(struct bpf_sock_addr *ctx)
{
    return restore(ctx, 1);
}

SEC("cgroup/getpeername4")
int zt_getpeername4(struct bpf_sock_addr *ctx)
{
    return restore(ctx, 0);
}

SEC("cgroup/getpeername6")
int zt_getpeername6(struct bpf_sock_addr *ctx)
{
    return restore(ctx, 1);
}

/* The 4-tuple of a socket as its client side sees it. */
static __always_inline int tuple_of(struct bpf_sock_ops *skops, struct zt_bpf_tuple *key)
{
    if (skops->family == AF_INET) {
        map4(skops->local_ip4, key->src);
        map4(skops->remote_ip4, key->dst);
    } else if (skops->family == AF_INET6) {
        LOAD6(skops, struct bpf_sock_ops, local_ip6, key->src);
        LOAD6(skops, struct bpf_sock_ops, remote_ip6, key->dst);
    } else {
        return -1;
    }
    key->sport = (__u16)skops->local_port;
    /* remote_port holds the network-order port in its upper 16 bits. */
    key->dport = bpf_ntohs((__u16)(skops->remote_port >> 16));
    return 0;
}

/* TCP_CONNECT: a connection the pod opens itself, remembered for the
 * pod's sk_lookup (zt_local_conns), with a state callback to forget it.
 * ACTIVE_ESTABLISHED (before the proxy can accept): the original
 * destination, known by socket cookie, is re-keyed by the 4-tuple the
 * proxy's accepted socket will see. STATE (closed): both forgotten. */
SEC("sockops")
int zt_sockops(struct bpf_sock_ops *skops)
{
    struct zt_bpf_tuple key = {};
    struct zt_bpf_addr *orig;
    __u32 op = skops->op;
    __u8 one = 1;
    __u64 cookie;

    if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
        op != BPF_SOCK_OPS_STATE_CB)
        return 1;
    if (!pod_of(skops) || tuple_of(skops, &key) < 0)
        return 1;
    if (op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
        bpf_map_update_elem(&zt_local_conns, &key, &one, BPF_ANY);
        bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
        return 1;
    }
    if (op == BPF_SOCK_OPS_STATE_CB) {
        if (skops->args[1] == BPF_TCP_CLOSE) {
            bpf_map_delete_elem(&zt_local_conns, &key);
            bpf_map_delete_elem(&zt_orig_tuple, &key);
        }
        return 1;
    }
    cookie = bpf_get_socket_cookie(skops);
    orig = bpf_map_lookup_elem(&zt_orig_cookie, &cookie);
    if (!orig || key.dport != ZT_BPF_PORT_OUTBOUND) {
        /* Not ours: an entry an earlier connection on this tuple left must
         * not answer for this one. */
        bpf_map_delete_elem(&zt_orig_tuple, &key);
        return 1;
    }
    bpf_map_update_elem(&zt_orig_tuple, &key, orig, BPF_ANY);
    return 1;
}

/* SO_ORIGINAL_DST on the proxy's accepted socket (local = the pod's
 * 15001, peer = the app). */
SEC("cgroup/getsockopt")
int zt_getsockopt(struct bpf_sockopt *ctx)
{
    struct bpf_sock *sk = ctx->sk;
    struct zt_bpf_tuple key = {};
    struct zt_bpf_addr *orig;
    int is_v4_opt = ctx->level == SOL_IP && ctx->optname == SO_ORIGINAL_DST;
    int is_v6_opt = ctx->level == SOL_IPV6 && ctx->optname == IP6T_SO_ORIGINAL_DST;

    if (!is_v4_opt && !is_v6_opt)
        goto out;
    if (!sk || !pod_of(ctx))
        goto out;
    if (sk->family == AF_INET) {
        map4(sk->dst_ip4, key.src);
        map4(sk->src_ip4, key.dst);
    } else if (sk->family == AF_INET6) {
        LOAD6(sk, struct bpf_sock, src_ip6, key.dst);
        LOAD6(sk, struct bpf_sock, dst_ip6, key.src);
    } else {
        goto out;
    }
    key.sport = bpf_ntohs(sk->dst_port);
    key.dport = (__u16)sk->src_port;
    orig = bpf_map_lookup_elem(&zt_orig_tuple, &key);
    if (!orig)
        goto out;
    if (is_v4_opt && orig->family == AF_INET) {
        struct sockaddr_in *sin = ctx->optval;
        if ((void *)(sin + 1) > ctx->optval_end)
            goto out;
        __builtin_memset(sin, 0, sizeof(*sin));
        sin->sin_family = AF_INET;
        sin->sin_port = bpf_htons(orig->port);
        sin->sin_addr.s_addr = unmap4(orig->ip);
        ctx->optlen = sizeof(*sin);
        ctx->retval = 0;
        return 1;
    }
    if (is_v6_opt && orig->family == AF_INET6) {
        struct sockaddr_in6 *sin6 = ctx->optval;
        if ((void *)(sin6 + 1) > ctx->optval_end)
            goto out;
        __builtin_memset(sin6, 0, sizeof(*sin6));
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = bpf_htons(orig->port);
        __builtin_memcpy(&sin6->sin6_addr, orig->ip, 16);
        ctx->optlen = sizeof(*sin6);
        ctx->retval = 0;
        return 1;
    }
out:
    /* Beyond a page the kernel's own buffer is used (see the kernel's
     * prog_cgroup_sockopt documentation). */
    if (ctx->optlen > PAGE_SIZE)
        ctx->optlen = 0;
    return 1;
}
