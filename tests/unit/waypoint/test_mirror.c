/* RequestMirror's pure part: Envoy's "-shadow" host. */
#include "test.h"
#include "base/err.h"
#include "waypoint/mirror.h"

static void test_shadow_host(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"svc-web", "svc-web-shadow"},
        {"svc-web:80", "svc-web-shadow:80"},
        {"svc.ns.svc.cluster.local:8080", "svc.ns.svc.cluster.local-shadow:8080"},
        {"10.96.0.1", "10.96.0.1-shadow"},
        {"[fd00::1]:80", "[fd00::1]-shadow:80"},
        {"[fd00::1]", "[fd00::1]-shadow"},
        {"", "-shadow"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ_INT(wp_mirror_shadow_host(cases[i].in, out, sizeof(out)), 0);
        CHECK_EQ_STR(out, cases[i].want);
    }
    /* Exactly fits, one byte short. */
    CHECK_EQ_INT(wp_mirror_shadow_host("ab:1", out, sizeof("ab-shadow:1")), 0);
    CHECK_EQ_STR(out, "ab-shadow:1");
    CHECK_EQ_INT(wp_mirror_shadow_host("ab:1", out, sizeof("ab-shadow:1") - 1), ZT_E_TOO_BIG);
}

int main(void)
{
    RUN(test_shadow_host);
    return TEST_REPORT();
}
