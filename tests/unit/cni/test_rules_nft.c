#include "test.h"

#include "base/err.h"
#include "cni/rules.h"

static const struct zt_cni_rules_opts dns_on = {.want_dns_capture = true,
                                                .backend = ZT_CNI_NFTABLES};
static const struct zt_cni_rules_opts dns_off = {.want_dns_capture = false,
                                                 .backend = ZT_CNI_NFTABLES};

/* istio-cni's nftables AppendInpodRules, written out by hand: the three
 * tables deleted (each added first), then redefined. */
#define DROP_ALL                                                                                   \
    "add table inet istio-ambient-nat\ndelete table inet istio-ambient-nat\n"                      \
    "add table inet istio-ambient-mangle\ndelete table inet istio-ambient-mangle\n"                \
    "add table inet istio-ambient-raw\ndelete table inet istio-ambient-raw\n"
#define NAT_CHAINS                                                                                 \
    "add table inet istio-ambient-nat\n"                                                           \
    "add chain inet istio-ambient-nat prerouting { type nat hook prerouting priority -100; }\n"    \
    "add chain inet istio-ambient-nat output { type nat hook output priority -100; }\n"            \
    "add chain inet istio-ambient-nat istio-prerouting\n"                                          \
    "add chain inet istio-ambient-nat istio-output\n"                                              \
    "add rule inet istio-ambient-nat prerouting jump istio-prerouting\n"                           \
    "add rule inet istio-ambient-nat output jump istio-output\n"
#define R_NAT_PRE "add rule inet istio-ambient-nat istio-prerouting "
#define R_NAT_OUT "add rule inet istio-ambient-nat istio-output "
#define PRE_PROBE4 R_NAT_PRE "meta l4proto tcp ip saddr 169.254.7.127 counter accept\n"
#define PRE_PROBE6                                                                                 \
    R_NAT_PRE "meta l4proto tcp ip6 saddr fd16:9254:7127:1337:ffff:ffff:ffff:ffff counter "        \
              "accept\n"
#define PRE_INBOUND4                                                                               \
    R_NAT_PRE "ip daddr != 127.0.0.1/32 tcp dport != 15008 meta mark & 0xfff != 0x539 counter "    \
              "redirect to :15006\n"
#define PRE_INBOUND6                                                                               \
    R_NAT_PRE "ip6 daddr != ::1/128 tcp dport != 15008 meta mark & 0xfff != 0x539 counter "        \
              "redirect to :15006\n"
#define OUT_PROBE4 R_NAT_OUT "meta l4proto tcp ip daddr 169.254.7.127 counter accept\n"
#define OUT_PROBE6                                                                                 \
    R_NAT_OUT "meta l4proto tcp ip6 daddr fd16:9254:7127:1337:ffff:ffff:ffff:ffff counter "        \
              "accept\n"
#define OUT_DNS_UDP                                                                                \
    R_NAT_OUT "oifname != \"lo\" meta mark & 0xfff != 0x539 udp dport 53 counter redirect to "     \
              ":15053\n"
#define OUT_DNS_TCP4                                                                               \
    R_NAT_OUT "ip daddr != 127.0.0.1/32 tcp dport 53 meta mark & 0xfff != 0x539 counter "          \
              "redirect to :15053\n"
#define OUT_DNS_TCP6                                                                               \
    R_NAT_OUT "ip6 daddr != ::1/128 tcp dport 53 meta mark & 0xfff != 0x539 counter redirect to "  \
              ":15053\n"
#define OUT_SPOOFED R_NAT_OUT "meta l4proto tcp meta mark & 0xfff == 0x111 counter accept\n"
#define OUT_LO4 R_NAT_OUT "oifname \"lo\" ip daddr != 127.0.0.1/32 counter accept\n"
#define OUT_LO6 R_NAT_OUT "oifname \"lo\" ip6 daddr != ::1/128 counter accept\n"
#define OUT_OUTBOUND4                                                                              \
    R_NAT_OUT "meta l4proto tcp ip daddr != 127.0.0.1/32 meta mark & 0xfff != 0x539 counter "      \
              "redirect to :15001\n"
#define OUT_OUTBOUND6                                                                              \
    R_NAT_OUT "meta l4proto tcp ip6 daddr != ::1/128 meta mark & 0xfff != 0x539 counter "          \
              "redirect to :15001\n"
#define MANGLE                                                                                     \
    "add table inet istio-ambient-mangle\n"                                                        \
    "add chain inet istio-ambient-mangle prerouting { type filter hook prerouting priority "       \
    "-150; }\n"                                                                                    \
    "add chain inet istio-ambient-mangle output { type route hook output priority -150; }\n"       \
    "add chain inet istio-ambient-mangle istio-prerouting\n"                                       \
    "add chain inet istio-ambient-mangle istio-output\n"                                           \
    "add rule inet istio-ambient-mangle prerouting jump istio-prerouting\n"                        \
    "add rule inet istio-ambient-mangle output jump istio-output\n"                                \
    "add rule inet istio-ambient-mangle istio-prerouting meta mark & 0xfff == 0x539 counter ct "   \
    "mark set ct mark & 0xfffff000 | 0x111\n"                                                      \
    "add rule inet istio-ambient-mangle istio-output ct mark & 0xfff == 0x111 counter meta mark "  \
    "set ct mark\n"
#define RAW                                                                                        \
    "add table inet istio-ambient-raw\n"                                                           \
    "add chain inet istio-ambient-raw prerouting { type filter hook prerouting priority -300; }\n" \
    "add chain inet istio-ambient-raw output { type filter hook output priority -300; }\n"         \
    "add chain inet istio-ambient-raw istio-prerouting\n"                                          \
    "add chain inet istio-ambient-raw istio-output\n"                                              \
    "add rule inet istio-ambient-raw prerouting jump istio-prerouting\n"                           \
    "add rule inet istio-ambient-raw output jump istio-output\n"                                   \
    "add rule inet istio-ambient-raw istio-output udp dport 53 meta mark & 0xfff == 0x539 "        \
    "counter ct zone set 1\n"                                                                      \
    "add rule inet istio-ambient-raw istio-prerouting udp sport 53 meta mark & 0xfff != 0x539 "    \
    "counter ct zone set 1\n"

static const char *expected_v4 = DROP_ALL NAT_CHAINS PRE_PROBE4 PRE_INBOUND4 OUT_PROBE4 OUT_DNS_UDP
    OUT_DNS_TCP4 OUT_SPOOFED OUT_LO4 OUT_OUTBOUND4 MANGLE RAW;
static const char *expected_v4_no_dns =
    DROP_ALL NAT_CHAINS PRE_PROBE4 PRE_INBOUND4 OUT_PROBE4 OUT_SPOOFED OUT_LO4 OUT_OUTBOUND4 MANGLE;
static const char *expected_v6 = DROP_ALL NAT_CHAINS PRE_PROBE4 PRE_PROBE6 PRE_INBOUND4 PRE_INBOUND6
    OUT_PROBE4 OUT_PROBE6 OUT_DNS_UDP OUT_DNS_TCP4 OUT_DNS_TCP6 OUT_SPOOFED OUT_LO4 OUT_LO6
        OUT_OUTBOUND4 OUT_OUTBOUND6 MANGLE RAW;
static const char *expected_v6_no_dns =
    DROP_ALL NAT_CHAINS PRE_PROBE4 PRE_PROBE6 PRE_INBOUND4 PRE_INBOUND6 OUT_PROBE4 OUT_PROBE6
        OUT_SPOOFED OUT_LO4 OUT_LO6 OUT_OUTBOUND4 OUT_OUTBOUND6 MANGLE;

static void check_install(const struct zt_cni_rules_opts *opts, bool want_ipv6,
                          const char *expected)
{
    char buf[8192];
    size_t len = 0;
    CHECK_EQ_INT(zt_cni_nft_install_text(opts, want_ipv6, buf, sizeof(buf), &len), 0);
    CHECK_EQ_STR(buf, expected);
    CHECK_EQ_INT(len, strlen(expected));
}

static void test_install_v4(void)
{
    check_install(&dns_on, false, expected_v4);
}

/* Without DNS capture: the same TCP rules (positive control), nothing on
 * port 53, and the raw table only deleted, never defined. */
static void test_install_v4_no_dns(void)
{
    char buf[8192];
    size_t len = 0;
    check_install(&dns_off, false, expected_v4_no_dns);
    CHECK_EQ_INT(zt_cni_nft_install_text(&dns_off, false, buf, sizeof(buf), &len), 0);
    CHECK(strstr(buf, "redirect to :15001\n") != NULL);
    CHECK(strstr(buf, "port 53") == NULL);
    CHECK(strstr(buf, "15053") == NULL);
    CHECK(strstr(buf, "delete table inet istio-ambient-raw\n") != NULL);
    CHECK(strstr(buf, "add chain inet istio-ambient-raw") == NULL);
    CHECK(strstr(buf, "ip6") == NULL);
}

static void test_install_v6(void)
{
    check_install(&dns_on, true, expected_v6);
}

static void test_install_v6_no_dns(void)
{
    check_install(&dns_off, true, expected_v6_no_dns);
}

/* The text does not depend on the backend field nor on any state: two
 * calls give the same bytes (the re-install is the same transaction). */
static void test_install_stateless(void)
{
    struct zt_cni_rules_opts other = dns_on;
    other.backend = ZT_CNI_IPTABLES;
    check_install(&other, false, expected_v4);
    check_install(&dns_on, false, expected_v4);
}

static void test_remove_text(void)
{
    char buf[1024];
    size_t len = 0;
    CHECK_EQ_INT(zt_cni_nft_remove_text(buf, sizeof(buf), &len), 0);
    CHECK_EQ_STR(buf, DROP_ALL);
    CHECK_EQ_INT(len, strlen(DROP_ALL));
}

/* The largest text fits the 8 KiB the header promises; a buffer too small
 * gives ZT_E_TOO_BIG and an empty string, never a cut transaction. */
static void test_small_buffer(void)
{
    char small[200], big[8192];
    size_t len = 7;
    CHECK_EQ_INT(zt_cni_nft_install_text(&dns_on, true, small, sizeof(small), &len), ZT_E_TOO_BIG);
    CHECK_EQ_STR(small, "");
    CHECK_EQ_INT(len, 7);
    CHECK_EQ_INT(zt_cni_nft_remove_text(small, 100, &len), ZT_E_TOO_BIG);
    CHECK_EQ_STR(small, "");
    CHECK_EQ_INT(zt_cni_nft_install_text(&dns_on, true, big, 0, &len), ZT_E_TOO_BIG);
    CHECK_EQ_INT(zt_cni_nft_install_text(&dns_on, true, big, sizeof(big), &len), 0);
    CHECK(len < 6144); /* room to spare */
    /* Exactly the text's size plus its NUL fits; one byte less does not. */
    CHECK_EQ_INT(zt_cni_nft_install_text(&dns_on, true, big, strlen(expected_v6) + 1, &len), 0);
    CHECK_EQ_INT(zt_cni_nft_install_text(&dns_on, true, big, strlen(expected_v6), &len),
                 ZT_E_TOO_BIG);
}

static void test_backend_names(void)
{
    enum zt_cni_backend b = ZT_CNI_NFTABLES;
    CHECK_EQ_INT(zt_cni_backend_parse("iptables", &b), 0);
    CHECK_EQ_INT(b, ZT_CNI_IPTABLES);
    CHECK_EQ_INT(zt_cni_backend_parse("nftables", &b), 0);
    CHECK_EQ_INT(b, ZT_CNI_NFTABLES);
    CHECK_EQ_STR(zt_cni_backend_str(ZT_CNI_NFTABLES), "nftables");
    CHECK_EQ_STR(zt_cni_backend_str(ZT_CNI_IPTABLES), "iptables");
    CHECK_EQ_INT(zt_cni_backend_parse("nft", &b), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_cni_backend_parse("NFTABLES", &b), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_cni_backend_parse("", &b), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_cni_backend_parse("iptables ", &b), ZT_E_CONFIG);
    CHECK_EQ_INT(b, ZT_CNI_NFTABLES); /* unchanged by a refusal */
    /* A zeroed options struct is iptables, the default. */
    {
        struct zt_cni_rules_opts zero = {0};
        CHECK_EQ_INT(zero.backend, ZT_CNI_IPTABLES);
    }
}

int main(void)
{
    RUN(test_install_v4);
    RUN(test_install_v4_no_dns);
    RUN(test_install_v6);
    RUN(test_install_v6_no_dns);
    RUN(test_install_stateless);
    RUN(test_remove_text);
    RUN(test_small_buffer);
    RUN(test_backend_names);
    return TEST_REPORT();
}
