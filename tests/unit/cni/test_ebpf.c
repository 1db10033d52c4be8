/* The eBPF backend's pure parts: the redirection decision the programs
 * compile (src/cni/bpf/redirect_logic.h, the same code), the pin directory
 * name, the /proc/net/tcp and `ip addr` readers, the mangle-only iptables
 * text and the backend's name. Loading and attaching are covered by
 * tests/e2e/test_ebpf.sh. */
#include "test.h"

#include "base/err.h"
#include "cni/bpf/redirect_logic.h"
#include "cni/rules.h"

#include <arpa/inet.h>
#include <stdint.h>

/* ip (text, either family) as the programs see it: 16 bytes, IPv4 mapped. */
static void addr(const char *ip, __u8 out[16])
{
    uint8_t v4[4];
    memset(out, 0, 16);
    if (inet_pton(AF_INET, ip, v4) == 1) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, v4, 4);
        return;
    }
    if (inet_pton(AF_INET6, ip, out) != 1)
        abort();
}

/* Pod 10.200.1.2 (and fd00::2 if `v6`), DNS capture as given. */
static struct zt_bpf_pod pod(bool dns, bool v6)
{
    struct zt_bpf_pod p = {.flags = ZT_BPF_POD_HAS_IP4 | (dns ? ZT_BPF_POD_DNS_CAPTURE : 0)};
    inet_pton(AF_INET, "10.200.1.2", p.ip4);
    if (v6) {
        p.flags |= ZT_BPF_POD_HAS_IP6;
        inet_pton(AF_INET6, "fd00::2", p.ip6);
    }
    return p;
}

static enum zt_bpf_verdict decide(const struct zt_bpf_pod *p, const char *ip, __u16 port,
                                  int is_tcp, __u32 mark)
{
    __u8 a[16];
    addr(ip, a);
    return zt_bpf_decide(p, a, port, is_tcp, mark);
}

static void test_decide_tcp(void)
{
    struct zt_bpf_pod p = pod(true, true);
    CHECK_EQ_INT(decide(&p, "10.200.2.2", 8080, 1, 0), ZT_BPF_OUTBOUND);
    CHECK_EQ_INT(decide(&p, "fd00::9", 80, 1, 0), ZT_BPF_OUTBOUND);
    /* The proxy's own sockets (mark 0x539 in the low 12 bits). */
    CHECK_EQ_INT(decide(&p, "10.200.2.2", 8080, 1, 0x539), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&p, "10.200.2.2", 8080, 1, 0x7000539), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&p, "10.200.2.2", 8080, 1, 0x538), ZT_BPF_OUTBOUND);
    /* Loopback (all of 127/8, ::1), the probe address, the pod itself. */
    CHECK_EQ_INT(decide(&p, "127.0.0.1", 8080, 1, 0), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&p, "127.3.0.9", 8080, 1, 0), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&p, "::1", 8080, 1, 0), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&p, "169.254.7.127", 8080, 1, 0), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&p, "fd16:9254:7127:1337:ffff:ffff:ffff:ffff", 80, 1, 0), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&p, "10.200.1.2", 8080, 1, 0), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&p, "fd00::2", 8080, 1, 0), ZT_BPF_PASS);
    /* Not the pod's v6 address when it has none recorded. */
    p = pod(true, false);
    CHECK_EQ_INT(decide(&p, "::", 8080, 1, 0), ZT_BPF_OUTBOUND);
    /* Other UDP is never touched. */
    CHECK_EQ_INT(decide(&p, "10.200.2.2", 8080, 0, 0), ZT_BPF_PASS);
}

static void test_decide_dns(void)
{
    struct zt_bpf_pod on = pod(true, false), off = pod(false, false);
    CHECK_EQ_INT(decide(&on, "10.96.0.10", 53, 0, 0), ZT_BPF_DNS);
    CHECK_EQ_INT(decide(&on, "10.96.0.10", 53, 1, 0), ZT_BPF_DNS);
    CHECK_EQ_INT(decide(&on, "2001:db8::53", 53, 0, 0), ZT_BPF_DNS);
    /* The proxy's upstream queries. */
    CHECK_EQ_INT(decide(&on, "10.96.0.10", 53, 0, 0x539), ZT_BPF_PASS);
    /* A resolver on loopback; UDP to the pod's own address (out lo, as
     * iptables' `! -o lo`), but TCP to it is captured. */
    CHECK_EQ_INT(decide(&on, "127.0.0.53", 53, 0, 0), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&on, "10.200.1.2", 53, 0, 0), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&on, "10.200.1.2", 53, 1, 0), ZT_BPF_DNS);
    /* Capture off: UDP alone, TCP to the outbound listener. */
    CHECK_EQ_INT(decide(&off, "10.96.0.10", 53, 0, 0), ZT_BPF_PASS);
    CHECK_EQ_INT(decide(&off, "10.96.0.10", 53, 1, 0), ZT_BPF_OUTBOUND);
}

static void test_target(void)
{
    struct zt_bpf_pod p = pod(true, true), none = {0};
    __u8 dst[16], to[16], want[16];
    __u16 port;

    addr("10.200.2.2", dst);
    zt_bpf_target(&p, ZT_BPF_OUTBOUND, dst, to, &port);
    addr("10.200.1.2", want);
    CHECK(memcmp(to, want, 16) == 0);
    CHECK_EQ_INT(port, 15001);
    zt_bpf_target(&p, ZT_BPF_DNS, dst, to, &port);
    addr("127.0.0.1", want);
    CHECK(memcmp(to, want, 16) == 0);
    CHECK_EQ_INT(port, 15053);
    /* No address recorded: loopback. */
    zt_bpf_target(&none, ZT_BPF_OUTBOUND, dst, to, &port);
    CHECK(memcmp(to, want, 16) == 0);
    addr("fd00::9", dst);
    zt_bpf_target(&p, ZT_BPF_OUTBOUND, dst, to, &port);
    addr("fd00::2", want);
    CHECK(memcmp(to, want, 16) == 0);
    zt_bpf_target(&p, ZT_BPF_DNS, dst, to, &port);
    addr("::1", want);
    CHECK(memcmp(to, want, 16) == 0);
    CHECK_EQ_INT(port, 15053);
}

static void test_inbound_wanted(void)
{
    __u8 pod_ip[16], client[16], lo[16], probe[16];
    addr("10.200.1.2", pod_ip);
    addr("10.200.2.2", client);
    addr("127.0.0.1", lo);
    addr("169.254.7.127", probe);
    CHECK(zt_bpf_inbound_wanted(pod_ip, 8080, client, 0));
    CHECK(zt_bpf_inbound_wanted(pod_ip, 15001, client, 0));
    CHECK(!zt_bpf_inbound_wanted(pod_ip, 15008, client, 0));
    CHECK(!zt_bpf_inbound_wanted(pod_ip, 8080, client, 1)); /* opened by the pod */
    CHECK(!zt_bpf_inbound_wanted(lo, 8080, client, 0));
    CHECK(!zt_bpf_inbound_wanted(pod_ip, 8080, probe, 0));
}

static void test_default_dir(void)
{
    char out[128];
    CHECK_EQ_INT(zt_cni_ebpf_default_dir("/var/run/ztunnel/cni", out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "/sys/fs/bpf/ztunnel/var_run_ztunnel_cni");
    CHECK_EQ_INT(zt_cni_ebpf_default_dir("/tmp/x/n1/cni/", out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "/sys/fs/bpf/ztunnel/tmp_x_n1_cni");
    CHECK_EQ_INT(zt_cni_ebpf_default_dir("rel/dir", out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "/sys/fs/bpf/ztunnel/rel_dir");
    CHECK_EQ_INT(zt_cni_ebpf_default_dir("/", out, sizeof(out)), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_cni_ebpf_default_dir("/var/run/ztunnel/cni", out, 24), ZT_E_TOO_BIG);
}

static void test_parse_listeners(void)
{
    /* Two dual-stack listeners on 15006 ([::]:3A9E), one on 15001, one
     * established connection from port 15006, as /proc/net/tcp6 shows. */
    static const char tcp6[] =
        "  sl  local_address                         remote_address                        st "
        "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000000000000000000000000000:3A99 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 70101 1 0000000000000000 100 0 0 "
        "10 0\n"
        "   1: 00000000000000000000000000000000:3A9E 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 70102 1 0000000000000000 100 0 0 "
        "10 0\n"
        "   2: 00000000000000000000000000000000:3A9E 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 70105 1 0000000000000000 100 0 0 "
        "10 0\n"
        "   3: 0000000000000000FFFF00000201C80A:3A9E 0000000000000000FFFF00000202C80A:D431 01 "
        "00000000:00000000 00:00000000 00000000     0        0 70200 1 0000000000000000 20 4 0 "
        "10 -1\n";
    uint64_t ino[4];
    size_t n = 9;
    CHECK_EQ_INT(zt_cni_ebpf_parse_listeners(tcp6, 15006, ino, 4, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ino[0], 70102);
    CHECK_EQ_INT(ino[1], 70105);
    CHECK_EQ_INT(zt_cni_ebpf_parse_listeners(tcp6, 15006, ino, 1, &n), ZT_E_TOO_BIG);
    CHECK_EQ_INT(zt_cni_ebpf_parse_listeners(tcp6, 15008, ino, 4, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(zt_cni_ebpf_parse_listeners("", 15006, ino, 4, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(zt_cni_ebpf_parse_listeners("   0: 0100007F 00000000:0000 0A 0 0 0 0 0 7\n", 15006,
                                             ino, 4, &n),
                 ZT_E_PROTO);
}

static void test_parse_ipv4(void)
{
    uint8_t ip[4];
    CHECK_EQ_INT(zt_cni_ebpf_parse_ipv4("2: eth0    inet 10.200.1.2/32 scope global eth0\\       "
                                        "valid_lft forever preferred_lft forever\n",
                                        ip),
                 0);
    CHECK(ip[0] == 10 && ip[1] == 200 && ip[2] == 1 && ip[3] == 2);
    CHECK_EQ_INT(zt_cni_ebpf_parse_ipv4("", ip), ZT_E_NOT_FOUND);
    CHECK_EQ_INT(zt_cni_ebpf_parse_ipv4("2: eth0    inet 10.200.1/32 scope global\n", ip),
                 ZT_E_PROTO);
}

/* With eBPF only the mangle rules are iptables': nat and raw chains of ours
 * (an earlier iptables install) are removed, mangle refilled. */
static void test_iptables_text_mangle_only(void)
{
    static const char current[] = "*mangle\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                                  "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\n"
                                  "COMMIT\n*nat\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                                  "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\n"
                                  "COMMIT\n*raw\n:ISTIO_OUTPUT - [0:0]\n-A OUTPUT -j ISTIO_OUTPUT\n"
                                  "COMMIT\n";
    struct zt_cni_rules_opts o = {.want_dns_capture = true, .backend = ZT_CNI_EBPF};
    char buf[4096];
    size_t len;
    CHECK_EQ_INT(zt_cni_rules_install_text(ZT_CNI_IPV4, &o, current, buf, sizeof(buf), &len), 0);
    CHECK_EQ_STR(buf, "*mangle\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                      "-F ISTIO_PRERT\n-F ISTIO_OUTPUT\n"
                      "-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark "
                      "0x111/0xfff\n"
                      "-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark "
                      "--nfmask 0xffffffff --ctmask 0xffffffff\n"
                      "COMMIT\n"
                      "*nat\n-D PREROUTING -j ISTIO_PRERT\n-D OUTPUT -j ISTIO_OUTPUT\n"
                      "-F ISTIO_PRERT\n-X ISTIO_PRERT\n-F ISTIO_OUTPUT\n-X ISTIO_OUTPUT\nCOMMIT\n"
                      "*raw\n-D OUTPUT -j ISTIO_OUTPUT\n-F ISTIO_OUTPUT\n-X ISTIO_OUTPUT\n"
                      "COMMIT\n");
    CHECK_EQ_INT(len, strlen(buf));
}

static void test_backend_name(void)
{
    enum zt_cni_backend b = ZT_CNI_IPTABLES;
    CHECK_EQ_INT(zt_cni_backend_parse("ebpf", &b), 0);
    CHECK_EQ_INT(b, ZT_CNI_EBPF);
    CHECK_EQ_STR(zt_cni_backend_str(ZT_CNI_EBPF), "ebpf");
    CHECK_EQ_INT(zt_cni_backend_parse("eBPF", &b), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_cni_backend_parse("bpf", &b), ZT_E_CONFIG);
    CHECK_EQ_INT(b, ZT_CNI_EBPF);
}

int main(void)
{
    RUN(test_decide_tcp);
    RUN(test_decide_dns);
    RUN(test_target);
    RUN(test_inbound_wanted);
    RUN(test_default_dir);
    RUN(test_parse_listeners);
    RUN(test_parse_ipv4);
    RUN(test_iptables_text_mangle_only);
    RUN(test_backend_name);
    return TEST_REPORT();
}
