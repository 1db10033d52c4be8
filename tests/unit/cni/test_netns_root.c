/* Root only: installs and removes the in-pod rules in a real, throwaway
 * network namespace. Skipped (no tests run) without root or iproute2. */
#include "test.h"

#include "cni/netns.h"
#include "cni/rules.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static char ns_name[64];

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
    CHECK_EQ_INT(zt_cni_rules_apply(fd, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_rules_apply(fd, err, sizeof(err)), 0); /* idempotent */
    CHECK_EQ_INT(zt_cni_netns_run(fd, save, NULL, out, sizeof(out)), 0);
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
        CHECK_EQ_INT(n, 2);
    }
    CHECK_EQ_INT(zt_cni_netns_run(fd, rules, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "32764:\tfrom all fwmark 0x111/0xfff lookup 100") != NULL);
    CHECK(strstr(strstr(out, "32764") + 1, "32764") == NULL);
    CHECK_EQ_INT(zt_cni_netns_run(fd, route, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "local default dev lo") != NULL);

    CHECK_EQ_INT(zt_cni_rules_remove(fd, err, sizeof(err)), 0);
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
    CHECK_EQ_INT(zt_cni_rules_apply(fd, err, sizeof(err)), 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(zt_cni_netns_run(fd, save6, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "-A ISTIO_OUTPUT ! -d ::1/128 -p tcp") != NULL);
    CHECK_EQ_INT(zt_cni_netns_run(fd, rules6, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "fwmark 0x111/0xfff lookup 100") != NULL);
    CHECK_EQ_INT(zt_cni_rules_remove(fd, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_cni_netns_run(fd, save6, NULL, out, sizeof(out)), 0);
    CHECK(strstr(out, "ISTIO") == NULL);

    /* IPv6 off on lo, fd00:7::5 still on v0: its traffic would bypass. */
    snprintf(cmd, sizeof(cmd), "ip netns exec %s-6 sysctl -qw net.ipv6.conf.lo.disable_ipv6=1",
             ns_name);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK(zt_cni_rules_apply(fd, err, sizeof(err)) < 0);
    CHECK(strstr(err, "IPv6 rules not installed") != NULL);
    CHECK(strstr(err, "routable IPv6 address fd00:7::5") != NULL);
    CHECK_EQ_INT(zt_cni_rules_remove(fd, err, sizeof(err)), 0);
    close(fd);
}

int main(void)
{
    char cmd[200];
    if (geteuid() != 0 || system("command -v ip >/dev/null && command -v iptables-save "
                                 ">/dev/null") != 0) {
        return SKIP_ALL("needs root, ip and iptables");
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(ns_name, sizeof(ns_name), "zt-cni-test-%d", (int)getpid());
    RUN(test_install_remove);
    RUN(test_ipv6_fails_closed);
    snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null; ip netns del %s-6 2>/dev/null",
             ns_name, ns_name);
    (void)!system(cmd);
    return TEST_REPORT();
}
