/* eBPF redirection, the inbound part: one copy of this program per enrolled
 * pod, attached to the pod's network namespace (sk_lookup), with the pod's
 * netns cookie as a constant (sk_lookup programs cannot ask for it). A new
 * TCP connection to the pod that iptables' PREROUTING would redirect to
 * 15006 is handed to the proxy's plaintext listener, which the agent put
 * in zt_listeners under that cookie; the accepted socket's local address is
 * the destination the client dialed (getsockname, as the proxy reads it).
 * Without a listener the connection is refused: fail closed, never to the
 * app around the proxy. */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "redirect_logic.h"

#define AF_INET 2
#define IPPROTO_TCP 6

char LICENSE[] SEC("license") = "GPL";

const volatile __u64 pod_cookie = 0;

struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, ZT_BPF_MAX_PODS);
    __type(key, __u64);
    __type(value, __u64);
} zt_listeners SEC(".maps");

/* Context fields are read one constant offset at a time (the verifier
 * refuses a pointer into the context). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, ZT_BPF_MAX_CONNS);
    __type(key, struct zt_bpf_tuple);
    __type(value, __u8);
} zt_local_conns SEC(".maps");

static __always_inline void addr_of(__u32 family, __u32 ip4, __u32 a, __u32 b, __u32 c, __u32 d,
                                    __u8 out[16])
{
    __builtin_memset(out, 0, 16);
    if (family == AF_INET) {
        out[10] = out[11] = 0xff;
        __builtin_memcpy(out + 12, &ip4, 4);
        return;
    }
    __builtin_memcpy(out, &a, 4);
    __builtin_memcpy(out + 4, &b, 4);
    __builtin_memcpy(out + 8, &c, 4);
    __builtin_memcpy(out + 12, &d, 4);
}
#define RD(x) (*(volatile __u32 *)&(x))
#define ADDR_OF(ctx, which, out)                                                                   \
    addr_of((ctx)->family, RD((ctx)->which##_ip4), RD((ctx)->which##_ip6[0]),                      \
            RD((ctx)->which##_ip6[1]), RD((ctx)->which##_ip6[2]), RD((ctx)->which##_ip6[3]), out)

SEC("sk_lookup")
int zt_inbound(struct bpf_sk_lookup *ctx)
{
    struct zt_bpf_tuple t = {};
    struct bpf_sock *sk;
    __u64 key = pod_cookie;
    long err;

    if (ctx->protocol != IPPROTO_TCP)
        return SK_PASS;
    ADDR_OF(ctx, local, t.dst);
    ADDR_OF(ctx, remote, t.src);
    t.dport = (__u16)ctx->local_port;
    t.sport = bpf_ntohs(ctx->remote_port);
    if (!zt_bpf_inbound_wanted(t.dst, t.dport, t.src,
                               bpf_map_lookup_elem(&zt_local_conns, &t) != NULL))
        return SK_PASS;
    sk = bpf_map_lookup_elem(&zt_listeners, &key);
    if (!sk)
        return SK_DROP;
    err = bpf_sk_assign(ctx, sk, 0);
    bpf_sk_release(sk);
    return err ? SK_DROP : SK_PASS;
}
