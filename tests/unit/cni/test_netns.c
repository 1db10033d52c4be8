/* The sans-I/O part of cni/netns: which IPv6 addresses need capturing. */
#include "test.h"

#include "base/err.h"
#include "cni/netns.h"

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

int main(void)
{
    RUN(test_ipv6_parse);
    return TEST_REPORT();
}
