/* HBONE request semantics: authority parsing, the server's CONNECT checks and
 * the proxy ports (wire facts 2.3, 2.5). */
#include "test.h"

#include "base/err.h"
#include "hbone/hbone.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <netinet/in.h>

/* Formats a parsed address back to text for comparison ("v4 1.2.3.4 80"). */
static void describe(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "v4 %s %u", ip, ntohs(s4->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, "v6 %s %u", ip, ntohs(s6->sin6_port));
    } else {
        snprintf(buf, cap, "family %d", ss->ss_family);
    }
}

static void test_parse_authority_good(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"10.0.0.1:80", "v4 10.0.0.1 80"},
        {"1.2.3.4:1", "v4 1.2.3.4 1"},
        {"255.255.255.255:65535", "v4 255.255.255.255 65535"},
        {"10.0.0.1:08080", "v4 10.0.0.1 8080"},
        {"[::1]:443", "v6 ::1 443"},
        {"[fd00::a:b]:9080", "v6 fd00::a:b 9080"},
        {"[2001:db8::1]:15008", "v6 2001:db8::1 15008"},
        /* IPv4-mapped IPv6 becomes plain IPv4. */
        {"[::ffff:1.2.3.4]:80", "v4 1.2.3.4 80"},
        {"[::ffff:a00:1]:8080", "v4 10.0.0.1 8080"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        char got[96];
        memset(&ss, 0xa5, sizeof(ss));
        int rc = zt_hbone_parse_authority(cases[i].in, &ss);
        if (rc != 0)
            fprintf(stderr, "  case %s\n", cases[i].in);
        CHECK_EQ_INT(rc, 0);
        describe(&ss, got, sizeof(got));
        CHECK_EQ_STR(got, cases[i].want);
        /* Bytes past the address are zero, so keys built from it compare. */
        size_t used =
            ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        for (size_t k = used; k < sizeof(ss); k++)
            CHECK_EQ_INT(((unsigned char *)&ss)[k], 0);
        if (ss.ss_family == AF_INET6)
            CHECK_EQ_INT(((struct sockaddr_in6 *)&ss)->sin6_scope_id, 0);
    }
}

static void test_parse_authority_bad(void)
{
    char longer[300];
    memset(longer, '1', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = 0;
    memcpy(longer, "10.0.0.1:", 9);
    const char *cases[] = {
        "",
        ":",
        ":80",
        "10.0.0.1",
        "10.0.0.1:",
        "10.0.0.1:0",
        "10.0.0.1:00000",
        "10.0.0.1:65536",
        "10.0.0.1:99999",
        "10.0.0.1:123456",
        "10.0.0.1:8o",
        "10.0.0.1:+80",
        "10.0.0.1:-1",
        "10.0.0.1: 80",
        "10.0.0.1:80 ",
        " 10.0.0.1:80",
        "10.0.0.1:80:90",
        "10.0.0.256:80",
        "10.0.0:80",
        "010.0.0.1:80x",
        "example.com:80",
        "echo.default.svc.cluster.local:8080",
        "localhost:80",
        "[::1]",
        "[::1]:",
        "[::1]:0",
        "[::1]:65536",
        "[::1]80",
        "[::1",
        "::1]:80",
        "::1:80",
        "[]:80",
        "[1.2.3.4]:80",
        "[fe80::1%eth0]:80",
        "[example.com]:80",
        "[::1]:80]",
        "[[::1]]:80",
        "\x01\x02:\x03",
        "1.2.3.4:80\n",
        longer,
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        int rc = zt_hbone_parse_authority(cases[i], &ss);
        if (rc != ZT_E_BAD_AUTHORITY)
            fprintf(stderr, "  case \"%s\" -> %d\n", cases[i], rc);
        CHECK_EQ_INT(rc, ZT_E_BAD_AUTHORITY);
    }
    struct sockaddr_storage ss;
    CHECK_EQ_INT(zt_hbone_parse_authority(NULL, &ss), ZT_E_BAD_AUTHORITY);
}

static void test_format_authority_round_trip(void)
{
    const char *cases[] = {"10.1.2.3:8080", "[fd00::1]:443", "[::1]:1"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        char buf[64];
        CHECK_EQ_INT(zt_hbone_parse_authority(cases[i], &ss), 0);
        zt_hbone_format_authority((struct sockaddr *)&ss, buf, sizeof(buf));
        CHECK_EQ_STR(buf, cases[i]);
    }
    /* A short buffer is still terminated. */
    struct sockaddr_storage ss;
    char tiny[6];
    CHECK_EQ_INT(zt_hbone_parse_authority("10.1.2.3:8080", &ss), 0);
    zt_hbone_format_authority((struct sockaddr *)&ss, tiny, sizeof(tiny));
    CHECK_EQ_STR(tiny, "10.1.");
}

static void test_port_is_illegal(void)
{
    CHECK(zt_hbone_port_is_illegal(15001));
    CHECK(zt_hbone_port_is_illegal(15006));
    CHECK(zt_hbone_port_is_illegal(15008));
    CHECK(!zt_hbone_port_is_illegal(0));
    CHECK(!zt_hbone_port_is_illegal(80));
    CHECK(!zt_hbone_port_is_illegal(15000));
    CHECK(!zt_hbone_port_is_illegal(15007));
    CHECK(!zt_hbone_port_is_illegal(15009));
    CHECK(!zt_hbone_port_is_illegal(15021));
    CHECK(!zt_hbone_port_is_illegal(15053));
    CHECK(!zt_hbone_port_is_illegal(65535));
}

static struct sockaddr_storage addr(const char *authority)
{
    struct sockaddr_storage ss;
    if (zt_hbone_parse_authority(authority, &ss) != 0)
        abort();
    return ss;
}

/* Both server-side checks, as the inbound proxy runs them; *target gets
 * the address of an address target. */
static int check_request(const char *method, const char *authority, const struct sockaddr *on,
                         bool any_ip, struct sockaddr_storage *target, const char **why)
{
    struct zt_hbone_target t;
    int status = zt_hbone_check_request(method, authority, &t, why);
    if (status == 200)
        status = zt_hbone_check_target(&t, on, any_ip, why);
    *target = t.addr;
    return status;
}

static void test_check_request(void)
{
    struct sockaddr_storage on4 = addr("10.0.0.5:15008"), on6 = addr("[fd00::5]:15008");
    struct sockaddr_storage target;
    const char *why = NULL;
    char got[96];

    /* Good: 200, target filled, no reason. */
    why = "unset";
    CHECK_EQ_INT(
        check_request("CONNECT", "10.0.0.5:8080", (struct sockaddr *)&on4, false, &target, &why),
        200);
    CHECK(why == NULL);
    describe(&target, got, sizeof(got));
    CHECK_EQ_STR(got, "v4 10.0.0.5 8080");
    CHECK_EQ_INT(
        check_request("CONNECT", "[fd00::5]:9090", (struct sockaddr *)&on6, false, &target, &why),
        200);
    describe(&target, got, sizeof(got));
    CHECK_EQ_STR(got, "v6 fd00::5 9090");
    /* Mapped authority on a v4 connection is the same address. */
    CHECK_EQ_INT(check_request("CONNECT", "[::ffff:10.0.0.5]:80", (struct sockaddr *)&on4, false,
                               &target, &why),
                 200);

    /* Method. */
    const char *methods[] = {"GET", "connect", "POST", "", "CONNECTX", NULL};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        why = NULL;
        CHECK_EQ_INT(check_request(methods[i], "10.0.0.5:8080", (struct sockaddr *)&on4, false,
                                   &target, &why),
                     400);
        CHECK(why != NULL && *why);
    }

    /* Bad authority. */
    const char *bad[] = {"", "10.0.0.5", "10.0.0.5:0", "echo.svc:0", "[::1]", "x", "e cho:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        CHECK_EQ_INT(
            check_request("CONNECT", bad[i], (struct sockaddr *)&on4, false, &target, &why), 400);
        CHECK(why != NULL && *why);
    }
    why = NULL;
    CHECK_EQ_INT(check_request("CONNECT", NULL, (struct sockaddr *)&on4, false, &target, &why),
                 400);
    CHECK(why != NULL);

    /* Target IP differs from the accepted-on address (also across families). */
    const char *other[] = {"10.0.0.6:8080", "127.0.0.1:8080", "[fd00::5]:8080"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        why = NULL;
        CHECK_EQ_INT(
            check_request("CONNECT", other[i], (struct sockaddr *)&on4, false, &target, &why), 400);
        CHECK(why != NULL && *why);
    }
    CHECK_EQ_INT(
        check_request("CONNECT", "[fd00::6]:80", (struct sockaddr *)&on6, false, &target, &why),
        400);
    CHECK_EQ_INT(
        check_request("CONNECT", "10.0.0.5:80", (struct sockaddr *)&on6, false, &target, &why),
        400);

    /* Proxy ports: 503, both families. */
    const uint16_t ports[] = {15001, 15006, 15008};
    for (size_t i = 0; i < 3; i++) {
        char a[64];
        snprintf(a, sizeof(a), "10.0.0.5:%u", ports[i]);
        why = NULL;
        CHECK_EQ_INT(check_request("CONNECT", a, (struct sockaddr *)&on4, false, &target, &why),
                     503);
        CHECK(why != NULL && *why);
        snprintf(a, sizeof(a), "[fd00::5]:%u", ports[i]);
        CHECK_EQ_INT(check_request("CONNECT", a, (struct sockaddr *)&on6, false, &target, &why),
                     503);
    }
    /* A foreign IP on a proxy port is a 400 (checked first). */
    CHECK_EQ_INT(
        check_request("CONNECT", "10.0.0.9:15008", (struct sockaddr *)&on4, false, &target, &why),
        400);
}

static void test_parse_target(void)
{
    struct zt_hbone_target t;
    char got[96];
    CHECK_EQ_INT(zt_hbone_parse_target("10.0.0.1:80", &t), 0);
    describe(&t.addr, got, sizeof(got));
    CHECK(!t.is_host && t.port == 80);
    CHECK_EQ_STR(got, "v4 10.0.0.1 80");
    CHECK_EQ_INT(zt_hbone_parse_target("[fd00::1]:8080", &t), 0);
    CHECK(!t.is_host && t.port == 8080);
    CHECK_EQ_INT(zt_hbone_parse_target("echo.default.svc.cluster.local:80", &t), 0);
    CHECK(t.is_host && t.port == 80 && t.addr.ss_family == 0);
    CHECK_EQ_STR(t.host, "echo.default.svc.cluster.local");
    CHECK_EQ_INT(zt_hbone_parse_target("My_Svc-1:65535", &t), 0);
    CHECK(t.is_host && t.port == 65535);
    CHECK_EQ_STR(t.host, "My_Svc-1");
    /* Not an address, so a hostname: resolution fails later, not parsing. */
    CHECK_EQ_INT(zt_hbone_parse_target("10.0.0.256:80", &t), 0);
    CHECK(t.is_host);
    char longest[ZT_HBONE_HOST_MAX + 8];
    memset(longest, 'a', ZT_HBONE_HOST_MAX);
    strcpy(longest + ZT_HBONE_HOST_MAX, ":80");
    CHECK_EQ_INT(zt_hbone_parse_target(longest, &t), 0);
    CHECK_EQ_INT(strlen(t.host), ZT_HBONE_HOST_MAX);
    memset(longest, 'a', ZT_HBONE_HOST_MAX + 1);
    strcpy(longest + ZT_HBONE_HOST_MAX + 1, ":80");
    CHECK_EQ_INT(zt_hbone_parse_target(longest, &t), ZT_E_BAD_AUTHORITY);
    const char *bad[] = {"",       "echo",     "echo:",    "echo:0",   "echo:65536",
                         ":80",    ".echo:80", "ec ho:80", "ec/ho:80", "[echo]:80",
                         "e:c:80", "echo:8x",  "::1:80",   "echo:+80", "é:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t.is_host = true;
        CHECK_EQ_INT(zt_hbone_parse_target(bad[i], &t), ZT_E_BAD_AUTHORITY);
        CHECK(!t.is_host && t.host[0] == 0);
    }
    CHECK_EQ_INT(zt_hbone_parse_target(NULL, &t), ZT_E_BAD_AUTHORITY);
}

/* A hostname target passes the address checks (resolved later); with
 * any_ip (an application tunnel) a foreign address passes too, but never a
 * proxy port. */
static void test_check_target(void)
{
    struct sockaddr_storage on4 = addr("10.0.0.5:15008"), target;
    const char *why = "unset";
    CHECK_EQ_INT(check_request("CONNECT", "echo.ns.svc.cluster.local:80", (struct sockaddr *)&on4,
                               false, &target, &why),
                 200);
    CHECK(why == NULL);
    CHECK_EQ_INT(check_request("GET", "echo.ns.svc.cluster.local:80", (struct sockaddr *)&on4,
                               false, &target, &why),
                 400);
    CHECK_EQ_INT(
        check_request("CONNECT", "10.96.0.10:80", (struct sockaddr *)&on4, false, &target, &why),
        400);
    CHECK_EQ_INT(
        check_request("CONNECT", "10.96.0.10:80", (struct sockaddr *)&on4, true, &target, &why),
        200);
    CHECK_EQ_INT(
        check_request("CONNECT", "[fd00::9]:80", (struct sockaddr *)&on4, true, &target, &why),
        200);
    CHECK_EQ_INT(
        check_request("CONNECT", "10.96.0.10:15008", (struct sockaddr *)&on4, true, &target, &why),
        503);
    CHECK(why != NULL && *why);
}

int main(void)
{
    RUN(test_parse_authority_good);
    RUN(test_parse_authority_bad);
    RUN(test_format_authority_round_trip);
    RUN(test_port_is_illegal);
    RUN(test_check_request);
    RUN(test_parse_target);
    RUN(test_check_target);
    return TEST_REPORT();
}
