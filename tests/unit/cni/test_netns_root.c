/* Root only: installs and removes the in-pod rules in a real, throwaway
 * network namespace. Skipped (no tests run) without root or iproute2. */
#include "test.h"

#include "cni/netns.h"
#include "cni/rules.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static char ns_name[64];
static const struct zt_cni_rules_opts dns_on = {.want_dns_capture = true};
static const struct zt_cni_rules_opts dns_off = {.want_dns_capture = false};
static const struct zt_cni_rules_opts nft_dns_on = {.want_dns_capture = true,
                                                    .backend = ZT_CNI_NFTABLES};
static const struct zt_cni_rules_opts nft_dns_off = {.want_dns_capture = false,
                                                     .backend = ZT_CNI_NFTABLES};

/* Our rules as the real iptables-save prints them back: the text we
 * restore must round-trip exactly, DNS capture included. */
static void check_dns_rules(const char *out, const char *lo)
{
    char want[256];
    CHECK(strstr(out, "-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff -m udp "
                      "--dport 53 -j REDIRECT --to-ports 15053\n") != NULL);
    snprintf(want, sizeof(want),
             "-A ISTIO_OUTPUT ! -d %s -p tcp -m tcp --dport 53 -m mark ! --mark 0x539/0xfff -j "
             "REDIRECT --to-ports 15053\n",
             lo);
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "-A ISTIO_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 -j CT "
                      "--zone 1\n") != NULL);
    CHECK(strstr(out, "-A ISTIO_PRERT -p udp -m mark ! --mark 0x539/0xfff -m udp --sport 53 -j "
                      "CT --zone 1\n") != NULL);
    CHECK(strstr(out, "*raw\n") && strstr(strstr(out, "*raw\n"), "-A OUTPUT -j ISTIO_OUTPUT\n"));
}

static void test_install_remove(void)
{
    char path[128], out[16384], err[512], cmd[200];
    char *const save[] = {"iptables-save", NULL};
    char *const rules[] = {"ip", "rule", NULL};
    char *const route[] = {"ip", "route", "show", "table", "100", NULL};
    int fd;

    snprintf(cmd, sizeof(cmd), "ip netns add %s", ns_name);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_EQ_INT(zt_cni_netns_resolve(ns_name, path, sizeof(path)), 0);
    fd = zt_cni_netns_open(path);
    CHECK(fd >= 0);
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &dns_on, err, sizeof(err)), 0); /* idempotent */
    CHECK_EQ_INT(zt_cni_netns_run(fd, save, NULL, out, sizeof(out)), 0);
    check_dns_rules(out, "127.0.0.1/32");
    CHECK(strstr(out, "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff "
                      "-j REDIRECT --to-ports 15001") != NULL);
    CHECK(strstr(out, "--dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006") !=
          NULL);
    CHECK(strstr(out, "-j CONNMARK --set-xmark 0x111/0xfff") != NULL);
    /* exactly one jump per hook and table after two installs */
    {
        int n = 0;
        for (const char *p = out; (p = strstr(p, "-A PREROUTING -j ISTIO_PRERT\n")); p++)
            n++;
        CHECK_EQ_INT(n, 3);
    }
    CHECK_EQ_INT(zt_cni_netns_run(fd, rules, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "32764:\tfrom all fwmark 0x111/0xfff lookup 100") != NULL);
    CHECK(strstr(strstr(out, "32764") + 1, "32764") == NULL);
    CHECK_EQ_INT(zt_cni_netns_run(fd, route, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "local default dev lo") != NULL);

    /* DNS capture turned off: a re-install takes the DNS rules and the raw
     * chains away, the TCP rules stay (positive control). */
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &dns_off, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, save, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "-j REDIRECT --to-ports 15001") != NULL);
    CHECK(strstr(out, "--dport 53") == NULL);
    CHECK(strstr(out, "CT --zone") == NULL);
    {
        int chains = 0; /* ISTIO_PRERT left in mangle and nat only */
        for (const char *p = out; (p = strstr(p, ":ISTIO_PRERT ")); p++)
            chains++;
        CHECK_EQ_INT(chains, 2);
    }
    /* ...and back on. */
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, save, NULL, out, sizeof(out)), 0);
    check_dns_rules(out, "127.0.0.1/32");

    CHECK_EQ_INT(zt_cni_rules_remove(fd, &dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, save, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "ISTIO") == NULL);
    CHECK_EQ_INT(zt_cni_netns_run(fd, rules, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "0x111") == NULL);
    close(fd);
    /* Not a netns / missing netns. */
    CHECK_EQ_INT(zt_cni_netns_open("/etc/hostname"), -1003);
    CHECK(zt_cni_netns_open("/var/run/netns/zt-does-not-exist") == -2);
}

/* A netns with a routable IPv6 address must get the IPv6 rules or fail:
 * with IPv6 disabled on lo the local route cannot be installed. */
static void test_ipv6_fails_closed(void)
{
    char path[128], out[16384], err[512], cmd[1024];
    char *const save6[] = {"ip6tables-save", NULL};
    char *const rules6[] = {"ip", "-6", "rule", NULL};
    int fd;

    snprintf(cmd, sizeof(cmd),
             "ip netns add %s-6 && ip -n %s-6 link set lo up && "
             "ip -n %s-6 link add v0 type veth peer name v1 && ip -n %s-6 link set v0 up && "
             "ip -n %s-6 link set v1 up && ip -n %s-6 addr add fd00:7::5/64 dev v0 nodad",
             ns_name, ns_name, ns_name, ns_name, ns_name, ns_name);
    CHECK_EQ_INT(system(cmd), 0);
    snprintf(path, sizeof(path), "/var/run/netns/%s-6", ns_name);
    fd = zt_cni_netns_open(path);
    CHECK(fd >= 0);

    /* Positive control: with IPv6 on lo, both families are installed. */
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &dns_on, err, sizeof(err)), 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(zt_cni_netns_run(fd, save6, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "-A ISTIO_OUTPUT ! -d ::1/128 -p tcp") != NULL);
    check_dns_rules(out, "::1/128");
    CHECK_EQ_INT(zt_cni_netns_run(fd, rules6, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "fwmark 0x111/0xfff lookup 100") != NULL);
    CHECK_EQ_INT(zt_cni_rules_remove(fd, &dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, save6, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "ISTIO") == NULL);

    /* IPv6 off on lo, fd00:7::5 still on v0: its traffic would bypass. */
    snprintf(cmd, sizeof(cmd), "ip netns exec %s-6 sysctl -qw net.ipv6.conf.lo.disable_ipv6=1",
             ns_name);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK(zt_cni_rules_apply(fd, &dns_on, err, sizeof(err)) < 0);
    CHECK(strstr(err, "IPv6 rules not installed") != NULL);
    CHECK(strstr(err, "routable IPv6 address fd00:7::5") != NULL);
    CHECK_EQ_INT(zt_cni_rules_remove(fd, &dns_on, err, sizeof(err)), 0);
    /* The same with nftables: its IPv6 rules go in, the local route cannot. */
    if (zt_cni_netns_has_program("nft")) {
        CHECK(zt_cni_rules_apply(fd, &nft_dns_on, err, sizeof(err)) < 0);
        CHECK(strstr(err, "IPv6 ip rule/route not installed") != NULL);
        CHECK(strstr(err, "routable IPv6 address fd00:7::5") != NULL);
        CHECK_EQ_INT(zt_cni_rules_remove(fd, &nft_dns_on, err, sizeof(err)), 0);
    }
    close(fd);
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Creates the netns <ns_name>-<suffix> with lo up (so with ::1) and opens
 * it: returns the fd or a negative value. */
static int add_netns(const char *suffix)
{
    char name[96], cmd[512], path[160];
    snprintf(name, sizeof(name), "%s-%s", ns_name, suffix);
    snprintf(cmd, sizeof(cmd), "ip netns add %s && ip -n %s link set lo up", name, name);
    if (system(cmd) != 0)
        return -1;
    snprintf(path, sizeof(path), "/var/run/netns/%s", name);
    return zt_cni_netns_open(path);
}

/* The nftables backend in a real netns: our three inet tables with the
 * rules as nft prints them back (IPv6 ones too: lo has ::1), a re-install
 * that leaves exactly the same ruleset, DNS capture off taking the raw
 * table away, switching backends both ways leaving only one set of rules,
 * and removal, which leaves other tables alone. */
static void test_nft_install_remove(void)
{
    char out[16384], again[16384], err[512];
    char *const ruleset[] = {"nft", "list", "ruleset", NULL};
    char *const tables[] = {"nft", "list", "tables", NULL};
    char *const save[] = {"sh", "-c", "iptables-save; ip6tables-save", NULL};
    char *const rules[] = {"ip", "rule", NULL};
    char *const add_mine[] = {"nft", "add", "table", "inet", "mine", NULL};
    int fd;

    if (!zt_cni_netns_has_program("nft"))
        SKIP("no nft (Debian package nftables)");
    fd = add_netns("nft");
    CHECK(fd >= 0);
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &nft_dns_on, err, sizeof(err)), 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(zt_cni_netns_run(fd, ruleset, NULL, out, sizeof(out)), 0);
    CHECK_EQ_INT(count(out, "\ntable "), 2);
    CHECK(strncmp(out, "table inet istio-ambient-nat {\n", 31) == 0);
    CHECK(strstr(out, "table inet istio-ambient-mangle {\n") != NULL);
    CHECK(strstr(out, "table inet istio-ambient-raw {\n") != NULL);
    CHECK(strstr(out, "type nat hook prerouting priority dstnat; policy accept;") != NULL);
    CHECK(strstr(out, "type route hook output priority mangle; policy accept;") != NULL);
    CHECK(strstr(out, "type filter hook prerouting priority raw; policy accept;") != NULL);
    CHECK(strstr(out, "ip daddr != 127.0.0.1 tcp dport != 15008 meta mark & 0x00000fff != "
                      "0x00000539 counter packets 0 bytes 0 redirect to :15006") != NULL);
    CHECK(strstr(out, "meta l4proto tcp ip6 daddr != ::1 meta mark & 0x00000fff != 0x00000539 "
                      "counter packets 0 bytes 0 redirect to :15001") != NULL);
    CHECK(strstr(out, "oifname != \"lo\" meta mark & 0x00000fff != 0x00000539 udp dport 53 "
                      "counter packets 0 bytes 0 redirect to :15053") != NULL);
    CHECK(strstr(out, "udp dport 53 meta mark & 0x00000fff == 0x00000539 counter packets 0 bytes "
                      "0 ct zone set 1") != NULL);
    CHECK(strstr(out, "ct mark & 0x00000fff == 0x00000111 counter packets 0 bytes 0 meta mark set "
                      "ct mark") != NULL);
    /* Re-install: the same ruleset, not a second copy. */
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &nft_dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, ruleset, NULL, again, sizeof(again)), 0);
    CHECK_EQ_STR(again, out);
    CHECK_EQ_INT(zt_cni_netns_run(fd, rules, NULL, out, sizeof(out)), 0);
    CHECK_EQ_INT(count(out, "fwmark 0x111/0xfff lookup 100"), 1);
    /* No iptables chain of ours. */
    CHECK_EQ_INT(zt_cni_netns_run(fd, save, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "ISTIO") == NULL);

    /* DNS capture off: no raw table, nothing on port 53; on again. */
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &nft_dns_off, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, tables, NULL, out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "table inet istio-ambient-nat\ntable inet istio-ambient-mangle\n");
    CHECK_EQ_INT(zt_cni_netns_run(fd, ruleset, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "15053") == NULL);
    CHECK(strstr(out, "redirect to :15001") != NULL);
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &nft_dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, ruleset, NULL, out, sizeof(out)), 0);
    CHECK_EQ_STR(out, again);

    /* To iptables: the ISTIO chains come, our tables go; and back. */
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, save, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "-j REDIRECT --to-ports 15001") != NULL);
    CHECK_EQ_INT(zt_cni_netns_run(fd, tables, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "istio-ambient") == NULL);
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &nft_dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, save, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "ISTIO") == NULL);
    CHECK_EQ_INT(zt_cni_netns_run(fd, ruleset, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "table inet istio-ambient-raw {\n") != NULL);

    /* Removal: none of our tables, no ip rule; a second removal is fine. */
    CHECK_EQ_INT(zt_cni_rules_remove(fd, &nft_dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, tables, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "istio-ambient") == NULL);
    CHECK_EQ_INT(zt_cni_netns_run(fd, rules, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "0x111") == NULL);
    CHECK_EQ_INT(zt_cni_rules_remove(fd, &nft_dns_on, err, sizeof(err)), 0);
    /* An iptables removal also takes nftables tables away. */
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &nft_dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_rules_remove(fd, &dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, tables, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "istio-ambient") == NULL);

    /* Tables that are not ours, one of our making and iptables-nft's from
     * the iptables rounds above, survive an install and a removal. */
    CHECK_EQ_INT(zt_cni_netns_run(fd, add_mine, NULL, out, sizeof(out)), 0);
    CHECK_EQ_INT(zt_cni_rules_apply(fd, &nft_dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_rules_remove(fd, &nft_dns_on, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, tables, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "table inet mine\n") != NULL);
    CHECK(strstr(out, "table ip nat\n") != NULL);
    CHECK(strstr(out, "istio-ambient") == NULL);
    close(fd);
}

int main(void)
{
    char cmd[400];
    if (geteuid() != 0 || system("command -v ip >/dev/null && command -v iptables-save "
                                 ">/dev/null") != 0) {
        return SKIP_ALL("needs root, ip and iptables");
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(ns_name, sizeof(ns_name), "zt-cni-test-%d", (int)getpid());
    RUN(test_install_remove);
    RUN(test_ipv6_fails_closed);
    RUN(test_nft_install_remove);
    snprintf(cmd, sizeof(cmd),
             "ip netns del %s 2>/dev/null; ip netns del %s-6 2>/dev/null; ip netns del %s-nft "
             "2>/dev/null",
             ns_name, ns_name, ns_name);
    (void)!system(cmd);
    return TEST_REPORT();
}
