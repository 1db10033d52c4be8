/* The nftables backend's text. Table and chain names, chain types, hooks,
 * priorities and the rules in their order are istio-cni's (its nftables
 * AppendInpodRules), so a pod looks the same under either node agent; the
 * marks are the wire facts of rules.c. Every piece is a constant: the text
 * depends only on the options, never on what the netns holds. */
#include "cni/rules.h"

#include "base/err.h"

#include <string.h>

#define NAT "istio-ambient-nat"
#define MANGLE "istio-ambient-mangle"
#define RAW "istio-ambient-raw"

/* Deleting a table that does not exist fails the whole transaction; adding
 * one that exists is a no-op. So: add, then delete. */
#define DROP(t) "add table inet " t "\ndelete table inet " t "\n"

/* A table with its base chains (type, hook, priority) jumping to the
 * regular chains that hold the rules. */
#define TABLE(t, pre_type, out_type, prio)                                                         \
    "add table inet " t "\n"                                                                       \
    "add chain inet " t " prerouting { type " pre_type " hook prerouting priority " prio "; }\n"   \
    "add chain inet " t " output { type " out_type " hook output priority " prio "; }\n"           \
    "add chain inet " t " istio-prerouting\n"                                                      \
    "add chain inet " t " istio-output\n"                                                          \
    "add rule inet " t " prerouting jump istio-prerouting\n"                                       \
    "add rule inet " t " output jump istio-output\n"

#define NAT_PRE "add rule inet " NAT " istio-prerouting "
#define NAT_OUT "add rule inet " NAT " istio-output "
#define PROBE4 "169.254.7.127"
#define PROBE6 "fd16:9254:7127:1337:ffff:ffff:ffff:ffff"
/* Not sent by the proxy (its sockets carry mark 0x539 in the low 12 bits). */
#define UNMARKED "meta mark & 0xfff != 0x539"

struct text {
    char *buf;
    size_t cap, len;
    bool is_full;
};

static void add(struct text *t, bool is_wanted, const char *s)
{
    size_t n = strlen(s);
    if (!is_wanted || t->is_full)
        return;
    if (n >= t->cap - t->len) {
        t->is_full = true;
        return;
    }
    memcpy(t->buf + t->len, s, n + 1);
    t->len += n;
}

static int finish(struct text *t, size_t *len)
{
    if (t->is_full) {
        t->buf[0] = '\0';
        return ZT_E_TOO_BIG;
    }
    *len = t->len;
    return 0;
}

int zt_cni_nft_install_text(const struct zt_cni_rules_opts *opts, bool want_ipv6, char *buf,
                            size_t cap, size_t *len)
{
    struct text t = {.buf = buf, .cap = cap};
    bool v6 = want_ipv6, dns = opts->want_dns_capture;

    if (cap == 0)
        return ZT_E_TOO_BIG;
    buf[0] = '\0';
    add(&t, true, DROP(NAT) DROP(MANGLE) DROP(RAW));

    /* dstnat priority, as iptables' nat table. */
    add(&t, true, TABLE(NAT, "nat", "nat", "-100"));
    /* Kubelet probes, SNATed to the probe address on the node, are left
     * alone; other inbound TCP goes to the plaintext inbound port, except
     * HBONE (15008) and what the proxy itself sends. */
    add(&t, true, NAT_PRE "meta l4proto tcp ip saddr " PROBE4 " counter accept\n");
    add(&t, v6, NAT_PRE "meta l4proto tcp ip6 saddr " PROBE6 " counter accept\n");
    add(&t, true,
        NAT_PRE "ip daddr != 127.0.0.1/32 tcp dport != 15008 " UNMARKED
                " counter redirect to :15006\n");
    add(&t, v6,
        NAT_PRE "ip6 daddr != ::1/128 tcp dport != 15008 " UNMARKED
                " counter redirect to :15006\n");
    add(&t, true, NAT_OUT "meta l4proto tcp ip daddr " PROBE4 " counter accept\n");
    add(&t, v6, NAT_OUT "meta l4proto tcp ip6 daddr " PROBE6 " counter accept\n");
    /* The app's DNS to the proxy's resolver: UDP not leaving through lo
     * (either family), TCP not to loopback. */
    add(&t, dns,
        NAT_OUT "oifname != \"lo\" " UNMARKED " udp dport 53 counter redirect to :15053\n");
    add(&t, dns,
        NAT_OUT "ip daddr != 127.0.0.1/32 tcp dport 53 " UNMARKED " counter redirect to :15053\n");
    add(&t, dns && v6,
        NAT_OUT "ip6 daddr != ::1/128 tcp dport 53 " UNMARKED " counter redirect to :15053\n");
    /* Replies on connections the proxy spoofed (mark restored in mangle). */
    add(&t, true, NAT_OUT "meta l4proto tcp meta mark & 0xfff == 0x111 counter accept\n");
    /* The pod talking to itself by its own address. */
    add(&t, true, NAT_OUT "oifname \"lo\" ip daddr != 127.0.0.1/32 counter accept\n");
    add(&t, v6, NAT_OUT "oifname \"lo\" ip6 daddr != ::1/128 counter accept\n");
    add(&t, true,
        NAT_OUT "meta l4proto tcp ip daddr != 127.0.0.1/32 " UNMARKED
                " counter redirect to :15001\n");
    add(&t, v6,
        NAT_OUT "meta l4proto tcp ip6 daddr != ::1/128 " UNMARKED " counter redirect to :15001\n");

    /* Mangle priority; the output chain is of type route so that a
     * restored mark re-routes the packet (through table 100), as the
     * iptables mangle table does. */
    add(&t, true, TABLE(MANGLE, "filter", "route", "-150"));
    add(&t, true,
        "add rule inet " MANGLE " istio-prerouting meta mark & 0xfff == 0x539 counter "
        "ct mark set ct mark & 0xfffff000 | 0x111\n");
    add(&t, true,
        "add rule inet " MANGLE " istio-output ct mark & 0xfff == 0x111 counter "
        "meta mark set ct mark\n");

    /* Raw priority, before conntrack: the proxy's upstream queries and
     * their answers get conntrack zone 1 (see rules.c, istio/istio#33469). */
    add(&t, dns, TABLE(RAW, "filter", "filter", "-300"));
    add(&t, dns,
        "add rule inet " RAW " istio-output udp dport 53 meta mark & 0xfff == 0x539 counter "
        "ct zone set 1\n");
    add(&t, dns,
        "add rule inet " RAW " istio-prerouting udp sport 53 " UNMARKED " counter ct zone set 1\n");
    return finish(&t, len);
}

int zt_cni_nft_remove_text(char *buf, size_t cap, size_t *len)
{
    struct text t = {.buf = buf, .cap = cap};

    if (cap == 0)
        return ZT_E_TOO_BIG;
    buf[0] = '\0';
    add(&t, true, DROP(NAT) DROP(MANGLE) DROP(RAW));
    return finish(&t, len);
}
