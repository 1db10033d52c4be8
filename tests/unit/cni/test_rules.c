#include "test.h"

#include "base/err.h"
#include "cni/rules.h"

static const char *empty_save = "*mangle\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
                                "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

static const struct zt_cni_rules_opts dns_on = {.want_dns_capture = true};
static const struct zt_cni_rules_opts dns_off = {.want_dns_capture = false};

/* The text for a fresh netns: istio-cni's AppendInpodRules in iptables-save
 * form (what iptables-save prints back after the restore). */
#define MANGLE_V4                                                                                  \
    "*mangle\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"                                       \
    "-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff\n"              \
    "-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask "          \
    "0xffffffff --ctmask 0xffffffff\n"                                                             \
    "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"
#define NAT_V4_HEAD                                                                                \
    "*nat\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"                                          \
    "-A ISTIO_PRERT -s 169.254.7.127/32 -p tcp -j ACCEPT\n"                                        \
    "-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp -m tcp ! --dport 15008 -m mark ! --mark "             \
    "0x539/0xfff -j REDIRECT --to-ports 15006\n"                                                   \
    "-A ISTIO_OUTPUT -d 169.254.7.127/32 -p tcp -j ACCEPT\n"
#define NAT_V4_DNS                                                                                 \
    "-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff -m udp --dport 53 -j REDIRECT "   \
    "--to-ports 15053\n"                                                                           \
    "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m tcp --dport 53 -m mark ! --mark 0x539/0xfff "     \
    "-j REDIRECT --to-ports 15053\n"
#define NAT_V4_TAIL                                                                                \
    "-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT\n"                                \
    "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT\n"                                          \
    "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT "           \
    "--to-ports 15001\n"                                                                           \
    "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"
#define RAW                                                                                        \
    "*raw\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"                                          \
    "-A ISTIO_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 -j CT --zone 1\n"         \
    "-A ISTIO_PRERT -p udp -m mark ! --mark 0x539/0xfff -m udp --sport 53 -j CT --zone 1\n"        \
    "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"

static const char *expected_v4 = MANGLE_V4 NAT_V4_HEAD NAT_V4_DNS NAT_V4_TAIL RAW;
static const char *expected_v4_no_dns = MANGLE_V4 NAT_V4_HEAD NAT_V4_TAIL;

static void test_install_fresh_v4(void)
{
    char buf[4096];
    size_t len = 0;
    CHECK_EQ_INT(
        zt_cni_rules_install_text(ZT_CNI_IPV4, &dns_on, empty_save, buf, sizeof(buf), &len), 0);
    CHECK_EQ_STR(buf, expected_v4);
    CHECK_EQ_INT(len, strlen(expected_v4));
    CHECK_EQ_INT(zt_cni_rules_install_text(ZT_CNI_IPV4, &dns_on, NULL, buf, sizeof(buf), &len), 0);
    CHECK_EQ_STR(buf, expected_v4);
}

/* Without DNS capture: the same TCP rules (positive control), no rule on
 * port 53 and no raw table at all. */
static void test_install_fresh_v4_no_dns(void)
{
    char buf[4096];
    size_t len = 0;
    CHECK_EQ_INT(
        zt_cni_rules_install_text(ZT_CNI_IPV4, &dns_off, empty_save, buf, sizeof(buf), &len), 0);
    CHECK_EQ_STR(buf, expected_v4_no_dns);
    CHECK_EQ_INT(len, strlen(expected_v4_no_dns));
    CHECK(strstr(buf, "--to-ports 15001\n") != NULL);
    CHECK(strstr(buf, "15053") == NULL);
    CHECK(strstr(buf, "*raw") == NULL);
}

static void test_install_v6_addresses(void)
{
    char buf[4096];
    size_t len = 0;
    const char *raw;
    CHECK_EQ_INT(zt_cni_rules_install_text(ZT_CNI_IPV6, &dns_on, NULL, buf, sizeof(buf), &len), 0);
    CHECK(strstr(buf, "-A ISTIO_PRERT -s fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128 -p tcp -j "
                      "ACCEPT\n") != NULL);
    CHECK(strstr(buf, "-A ISTIO_OUTPUT ! -d ::1/128 -o lo -j ACCEPT\n") != NULL);
    /* TCP DNS excludes ::1; UDP DNS is written as for IPv4 (`! -o lo`). */
    CHECK(strstr(buf, "-A ISTIO_OUTPUT ! -d ::1/128 -p tcp -m tcp --dport 53 -m mark ! --mark "
                      "0x539/0xfff -j REDIRECT --to-ports 15053\n") != NULL);
    CHECK(strstr(buf, "-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff -m udp "
                      "--dport 53 -j REDIRECT --to-ports 15053\n") != NULL);
    raw = strstr(buf, "*raw\n");
    CHECK(raw != NULL);
    CHECK(raw && strstr(raw, "-j CT --zone 1\n") != NULL);
    CHECK(strstr(buf, "127.0.0.1") == NULL);
    CHECK(strstr(buf, "169.254") == NULL);
}

/* The DNS rules sit after the probe ACCEPT and before the other OUTPUT
 * rules, where istio-cni puts them: the probe reply is never redirected,
 * and TCP DNS is redirected before the catch-all to 15001. */
static void test_dns_rules_order(void)
{
    char buf[4096];
    size_t len = 0;
    const char *probe, *udp, *tcp, *connmark, *catchall;
    CHECK_EQ_INT(zt_cni_rules_install_text(ZT_CNI_IPV4, &dns_on, NULL, buf, sizeof(buf), &len), 0);
    probe = strstr(buf, "-A ISTIO_OUTPUT -d 169.254.7.127/32");
    udp = strstr(buf, "-A ISTIO_OUTPUT ! -o lo -p udp");
    tcp = strstr(buf, "--dport 53 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053");
    connmark = strstr(buf, "-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT");
    catchall = strstr(buf, "-j REDIRECT --to-ports 15001");
    CHECK(probe && udp && tcp && connmark && catchall);
    CHECK(probe < udp && udp < tcp && tcp < connmark && connmark < catchall);
}

/* Re-install over our own rules: chains flushed, jumps not duplicated,
 * extra jumps removed. */
static void test_install_idempotent(void)
{
    const char *save = "# Generated by iptables-save\n*mangle\n:PREROUTING ACCEPT [0:0]\n"
                       ":ISTIO_OUTPUT - [0:0]\n:ISTIO_PRERT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\n"
                       "-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"
                       "*nat\n:ISTIO_PRERT - [0:0]\n-A PREROUTING -j ISTIO_PRERT \nCOMMIT\n"
                       "*filter\n:ISTIO_OUTPUT - [0:0]\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n";
    char buf[4096];
    size_t len;
    const char *nat, *raw;
    CHECK_EQ_INT(zt_cni_rules_install_text(ZT_CNI_IPV4, &dns_on, save, buf, sizeof(buf), &len), 0);
    nat = strstr(buf, "*nat\n");
    raw = strstr(buf, "*raw\n");
    CHECK(nat != NULL && raw != NULL && nat < raw);
    /* mangle: both chains flushed, PREROUTING jump kept, one OUTPUT jump removed */
    CHECK(strstr(buf, "-F ISTIO_PRERT\n-F ISTIO_OUTPUT\n") < nat);
    CHECK(strstr(buf, "-D OUTPUT -j ISTIO_OUTPUT\n") < nat);
    /* nat: only ISTIO_PRERT existed; its jump exists (trailing space ignored) */
    CHECK(strstr(nat, "-F ISTIO_PRERT\n") < raw);
    CHECK(strstr(nat, "-F ISTIO_OUTPUT\n") == NULL);
    CHECK(strstr(nat, "-A OUTPUT -j ISTIO_OUTPUT\n") < raw); /* filter's jump does not count */
    /* PREROUTING jumps exist in mangle and nat: appended only in raw */
    CHECK(strstr(buf, "-A PREROUTING -j ISTIO_PRERT\n") > raw);
    CHECK(strstr(buf, "-D PREROUTING") == NULL);
}

/* Installing over a complete install (both with DNS capture) refills the
 * chains of the three tables and adds and removes no jump. */
static void test_reinstall_dns_idempotent(void)
{
    const char *save = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                       ":ISTIO_OUTPUT - [0:0]\n:ISTIO_PRERT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\n"
                       "-A ISTIO_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 -j CT "
                       "--zone 1\nCOMMIT\n"
                       "*mangle\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_PRERT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"
                       "*nat\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_PRERT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n";
    char buf[4096];
    size_t len;
    const char *raw;
    int flushes = 0;
    CHECK_EQ_INT(zt_cni_rules_install_text(ZT_CNI_IPV4, &dns_on, save, buf, sizeof(buf), &len), 0);
    CHECK(strstr(buf, "-A PREROUTING") == NULL);
    CHECK(strstr(buf, "-A OUTPUT") == NULL);
    CHECK(strstr(buf, "-D ") == NULL);
    for (const char *p = buf; (p = strstr(p, "-F ISTIO_")); p++)
        flushes++;
    CHECK_EQ_INT(flushes, 6);
    raw = strstr(buf, "*raw\n");
    CHECK(raw && strstr(raw, "-F ISTIO_PRERT\n-F ISTIO_OUTPUT\n-A ISTIO_OUTPUT -p udp") != NULL);
    CHECK(raw && strstr(raw, "--sport 53 -j CT --zone 1\nCOMMIT\n") != NULL);
}

/* DNS capture turned off: a re-install takes away the raw chains and jumps
 * an install with capture on left, and refills nat without the DNS rules. */
static void test_install_no_dns_removes_raw(void)
{
    char first[4096], buf[4096];
    size_t len;
    const char *save = "*mangle\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"
                       "*nat\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\n"
                       "-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff -m udp "
                       "--dport 53 -j REDIRECT --to-ports 15053\nCOMMIT\n"
                       "*raw\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n";
    const char *raw;
    CHECK_EQ_INT(zt_cni_rules_install_text(ZT_CNI_IPV4, &dns_off, save, buf, sizeof(buf), &len), 0);
    raw = strstr(buf, "*raw\n");
    CHECK(raw != NULL);
    CHECK_EQ_STR(raw, "*raw\n-D PREROUTING -j ISTIO_PRERT\n-D OUTPUT -j ISTIO_OUTPUT\n"
                      "-F ISTIO_PRERT\n-X ISTIO_PRERT\n-F ISTIO_OUTPUT\n-X ISTIO_OUTPUT\nCOMMIT\n");
    CHECK(strstr(buf, "15053") == NULL);
    CHECK(strstr(buf, "*nat\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n-F ISTIO_PRERT\n"
                      "-F ISTIO_OUTPUT\n") != NULL);
    /* Positive control: with capture on, the same netns keeps raw. */
    CHECK_EQ_INT(zt_cni_rules_install_text(ZT_CNI_IPV4, &dns_on, save, first, sizeof(first), &len),
                 0);
    CHECK(strstr(first, "-X ") == NULL);
    CHECK(strstr(first, "-j CT --zone 1") != NULL);
    /* Off over an install that was already off: raw is not mentioned. */
    CHECK_EQ_INT(
        zt_cni_rules_install_text(ZT_CNI_IPV4, &dns_off, empty_save, buf, sizeof(buf), &len), 0);
    CHECK(strstr(buf, "raw") == NULL);
}

static void test_remove_text(void)
{
    const char *save = "*mangle\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"
                       "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n";
    char buf[4096];
    size_t len = 99;
    CHECK_EQ_INT(zt_cni_rules_remove_text(ZT_CNI_IPV4, save, buf, sizeof(buf), &len), 0);
    CHECK_EQ_STR(buf, "*mangle\n-D PREROUTING -j ISTIO_PRERT\n-D OUTPUT -j ISTIO_OUTPUT\n"
                      "-F ISTIO_PRERT\n-X ISTIO_PRERT\n-F ISTIO_OUTPUT\n-X ISTIO_OUTPUT\nCOMMIT\n");
    CHECK_EQ_INT(zt_cni_rules_remove_text(ZT_CNI_IPV4, empty_save, buf, sizeof(buf), &len), 0);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_STR(buf, "");
}

/* Removal after an install with DNS capture, read back from iptables-save
 * (tables in its order: raw first): all three tables are cleaned. */
static void test_remove_text_with_raw(void)
{
    const char *save = "# Generated by iptables-save v1.8.9 (nf_tables)\n"
                       "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                       ":ISTIO_OUTPUT - [0:0]\n:ISTIO_PRERT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\n"
                       "-A ISTIO_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 -j CT "
                       "--zone 1\n"
                       "-A ISTIO_PRERT -p udp -m mark ! --mark 0x539/0xfff -m udp --sport 53 -j CT "
                       "--zone 1\nCOMMIT\n"
                       "*mangle\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"
                       "*nat\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n";
    const char *table = "-D PREROUTING -j ISTIO_PRERT\n-D OUTPUT -j ISTIO_OUTPUT\n"
                        "-F ISTIO_PRERT\n-X ISTIO_PRERT\n-F ISTIO_OUTPUT\n-X ISTIO_OUTPUT\n"
                        "COMMIT\n";
    char buf[4096], want[1024];
    size_t len = 0;
    snprintf(want, sizeof(want), "*mangle\n%s*nat\n%s*raw\n%s", table, table, table);
    CHECK_EQ_INT(zt_cni_rules_remove_text(ZT_CNI_IPV6, save, buf, sizeof(buf), &len), 0);
    CHECK_EQ_STR(buf, want);
    CHECK_EQ_INT(len, strlen(want));
}

/* The text for the largest case, IPv6 with DNS capture over a netns that
 * has every chain and doubled jumps, fits the 4 KiB the header promises. */
static void test_small_buffer(void)
{
    char buf[100], big[4096];
    size_t len;
    const char *save = "*mangle\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A PREROUTING -j ISTIO_PRERT\n"
                       "-A OUTPUT -j ISTIO_OUTPUT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"
                       "*nat\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A PREROUTING -j ISTIO_PRERT\n"
                       "-A OUTPUT -j ISTIO_OUTPUT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"
                       "*raw\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n"
                       "-A PREROUTING -j ISTIO_PRERT\n-A PREROUTING -j ISTIO_PRERT\n"
                       "-A OUTPUT -j ISTIO_OUTPUT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n";
    CHECK_EQ_INT(zt_cni_rules_install_text(ZT_CNI_IPV4, &dns_on, NULL, buf, sizeof(buf), &len),
                 ZT_E_TOO_BIG);
    CHECK_EQ_STR(buf, "");
    CHECK_EQ_INT(zt_cni_rules_install_text(ZT_CNI_IPV6, &dns_on, save, big, sizeof(big), &len), 0);
    CHECK(len < 3072); /* room to spare */
}

int main(void)
{
    RUN(test_install_fresh_v4);
    RUN(test_install_fresh_v4_no_dns);
    RUN(test_install_v6_addresses);
    RUN(test_dns_rules_order);
    RUN(test_install_idempotent);
    RUN(test_reinstall_dns_idempotent);
    RUN(test_install_no_dns_removes_raw);
    RUN(test_remove_text);
    RUN(test_remove_text_with_raw);
    RUN(test_small_buffer);
    return TEST_REPORT();
}
