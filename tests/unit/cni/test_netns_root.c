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

int main(void)
{
    char cmd[128];
    if (geteuid() != 0 || system("command -v ip >/dev/null && command -v iptables-save "
                                 ">/dev/null") != 0) {
        return SKIP_ALL("needs root, ip and iptables");
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(ns_name, sizeof(ns_name), "zt-cni-test-%d", (int)getpid());
    RUN(test_install_remove);
    snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null", ns_name);
    (void)!system(cmd);
    return TEST_REPORT();
}
