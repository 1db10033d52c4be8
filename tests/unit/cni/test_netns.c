/* The parts of cni/netns that need no namespace: which IPv6 addresses
 * need capturing, and finding a helper program in PATH. */
#include "test.h"

#include "base/err.h"
#include "cni/netns.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_ipv6_parse(void)
{
    struct zt_cni_ipv6 v6;

    /* No IPv6 in the kernel, or none configured. */
    CHECK_EQ_INT(zt_cni_ipv6_parse("", &v6), 0);
    CHECK(!v6.has_loopback && !v6.has_routable);
    CHECK_EQ_STR(v6.routable, "");

    /* ::1 on lo and link-local only: nothing leaves the link. */
    CHECK_EQ_INT(zt_cni_ipv6_parse("00000000000000000000000000000001 01 80 10 80       lo\n"
                                   "fe8000000000000044bdf4fffebbff88 03 40 20 c0     eth0\n",
                                   &v6),
                 0);
    CHECK(v6.has_loopback && !v6.has_routable);

    /* A ULA (scope global) on eth0, lo without IPv6; the first routable
     * address is named. */
    CHECK_EQ_INT(zt_cni_ipv6_parse("fe8000000000000044bdf4fffebbff88 03 40 20 c0     eth0\n"
                                   "fd000000000000000000000000000005 03 40 00 82     eth0\n"
                                   "20010db8000000000000000000000001 03 40 00 80     eth0\n",
                                   &v6),
                 0);
    CHECK(!v6.has_loopback && v6.has_routable);
    CHECK_EQ_STR(v6.routable, "fd00::5");

    /* Site-local scope counts as routable; no trailing newline is fine. */
    CHECK_EQ_INT(zt_cni_ipv6_parse("fec00000000000000000000000000001 02 40 40 80 eth1", &v6), 0);
    CHECK(v6.has_routable);
    CHECK_EQ_STR(v6.routable, "fec0::1");

    /* Unreadable text fails: the caller cannot tell what to capture. */
    CHECK_EQ_INT(zt_cni_ipv6_parse("garbage\n", &v6), ZT_E_PROTO);
    CHECK_EQ_INT(zt_cni_ipv6_parse("fd00 03 40 00 82 eth0\n", &v6), ZT_E_PROTO);
}

/* Only an executable regular file in one of PATH's directories counts. */
static void test_has_program(void)
{
    char dir[] = "/tmp/zt-netns-path-XXXXXX", file[128], path[512];
    const char *old = getenv("PATH");
    char *saved = old ? strdup(old) : NULL;
    FILE *f;
    bool has_exec, has_plain, has_dir, has_missing, has_second, has_unset;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(file, sizeof(file), "%s/tool", dir);
    CHECK((f = fopen(file, "w")) != NULL);
    fclose(f);
    snprintf(file, sizeof(file), "%s/subdir", dir);
    CHECK_EQ_INT(mkdir(file, 0755), 0);

    snprintf(path, sizeof(path), "/nonexistent:%s", dir);
    setenv("PATH", path, 1);
    has_plain = zt_cni_netns_has_program("tool"); /* not executable */
    has_dir = zt_cni_netns_has_program("subdir");
    has_missing = zt_cni_netns_has_program("zt-no-such-tool");
    snprintf(file, sizeof(file), "%s/tool", dir);
    chmod(file, 0755);
    has_second = zt_cni_netns_has_program("tool"); /* in the second entry */
    snprintf(path, sizeof(path), "%s:/nonexistent", dir);
    setenv("PATH", path, 1);
    has_exec = zt_cni_netns_has_program("tool");
    unsetenv("PATH"); /* execvp's default, /bin:/usr/bin */
    has_unset = zt_cni_netns_has_program("sh");

    if (saved)
        setenv("PATH", saved, 1);
    free(saved);
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    (void)!system(path);
    CHECK(!has_plain);
    CHECK(!has_dir);
    CHECK(!has_missing);
    CHECK(has_second);
    CHECK(has_exec);
    CHECK(has_unset);
}

int main(void)
{
    RUN(test_ipv6_parse);
    RUN(test_has_program);
    return TEST_REPORT();
}
