/* PROXY protocol v2 encoding: every expected header below is written byte
 * by byte from haproxy's proxy-protocol.txt (section 2.2), not produced by
 * the encoder. */
#include "test.h"

#include "base/err.h"
#include "proxyproto/proxyproto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/un.h>

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    inet_pton(AF_INET, ip, &s->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &s->sin6_addr);
    return ss;
}

#define SIG 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A

static void test_ipv4_with_identity(void)
{
    static const char id[] = "spiffe://cluster.local/ns/default/sa/go"; /* 39 bytes */
    static const uint8_t want[] = {
        SIG,  0x21,                 /* version 2, PROXY */
        0x11,                       /* AF_INET, STREAM */
        0x00, 12 + 3 + 39,          /* length of what follows */
        10,   200,         1,   4,  /* source address */
        10,   96,          0,   10, /* destination address */
        0xA0, 0x00,                 /* source port 40960 */
        0x00, 0x50,                 /* destination port 80 */
        0xD0, 0x00,        39,      /* TLV 0xD0, length 39 */
        's',  'p',         'i', 'f', 'f', 'e', ':', '/', '/', 'c', 'l', 'u', 's',
        't',  'e',         'r', '.', 'l', 'o', 'c', 'a', 'l', '/', 'n', 's', '/',
        'd',  'e',         'f', 'a', 'u', 'l', 't', '/', 's', 'a', '/', 'g', 'o',
    };
    struct sockaddr_storage s = v4("10.200.1.4", 40960), d = v4("10.96.0.10", 80);
    uint8_t buf[ZT_PROXYPROTO_V2_MAX];
    size_t n = 0;
    CHECK_EQ_INT(strlen(id), 39);
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&s, (struct sockaddr *)&d, id, buf,
                                         sizeof(buf), &n),
                 0);
    CHECK_EQ_INT(n, sizeof(want));
    CHECK(memcmp(buf, want, n) == 0);
}

static void test_ipv6_without_identity(void)
{
    static const uint8_t want[] = {
        SIG,  0x21, 0x21,                                              /* AF_INET6, STREAM */
        0x00, 36,                                                      /* addresses only */
        0xfd, 0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    0x01, /* fd00::1 */
        0xfd, 0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, /* fd00::1234 */
        0x9c, 0x40,                                                    /* 40000 */
        0x1f, 0x90,                                                    /* 8080 */
    };
    struct sockaddr_storage s = v6("fd00::1", 40000), d = v6("fd00::1234", 8080);
    uint8_t buf[ZT_PROXYPROTO_V2_MAX];
    size_t n = 0;
    /* NULL and "" both mean no identity: no TLV at all. */
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&s, (struct sockaddr *)&d, NULL, buf,
                                         sizeof(buf), &n),
                 0);
    CHECK_EQ_INT(n, sizeof(want));
    CHECK(memcmp(buf, want, n) == 0);
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&s, (struct sockaddr *)&d, "", buf,
                                         sizeof(buf), &n),
                 0);
    CHECK_EQ_INT(n, sizeof(want));
    CHECK(memcmp(buf, want, n) == 0);
}

/* Mixed families have no address block of their own: UNSPEC, TLV only. */
static void test_mixed_families_unspec(void)
{
    static const uint8_t want[] = {SIG, 0x21, 0x01, 0x00, 3 + 1, 0xD0, 0x00, 0x01, 'x'};
    struct sockaddr_storage s = v4("10.0.0.1", 1), d = v6("fd00::2", 2);
    uint8_t buf[ZT_PROXYPROTO_V2_MAX];
    size_t n = 0;
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&s, (struct sockaddr *)&d, "x", buf,
                                         sizeof(buf), &n),
                 0);
    CHECK_EQ_INT(n, sizeof(want));
    CHECK(memcmp(buf, want, n) == 0);
}

/* The longest identity fills ZT_PROXYPROTO_V2_MAX exactly; one byte more,
 * or one byte less of room, is refused. */
static void test_caps(void)
{
    char id[ZT_SPIFFE_ID_MAX + 2];
    memset(id, 'a', sizeof(id) - 1);
    id[ZT_SPIFFE_ID_MAX] = 0;
    struct sockaddr_storage s = v6("::1", 1), d = v6("::1", 2);
    uint8_t buf[ZT_PROXYPROTO_V2_MAX];
    size_t n = 0;
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&s, (struct sockaddr *)&d, id, buf,
                                         sizeof(buf), &n),
                 0);
    CHECK_EQ_INT(n, ZT_PROXYPROTO_V2_MAX);
    CHECK_EQ_INT((buf[14] << 8) | buf[15], 36 + 3 + ZT_SPIFFE_ID_MAX);
    CHECK_EQ_INT((buf[52 + 1] << 8) | buf[52 + 2], ZT_SPIFFE_ID_MAX);
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&s, (struct sockaddr *)&d, id, buf,
                                         sizeof(buf) - 1, &n),
                 ZT_E_TOO_BIG);
    id[ZT_SPIFFE_ID_MAX] = 'a';
    id[ZT_SPIFFE_ID_MAX + 1] = 0;
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&s, (struct sockaddr *)&d, id, buf,
                                         sizeof(buf), &n),
                 ZT_E_TOO_BIG);
    /* The smallest header: IPv4, no TLV, 28 bytes. */
    struct sockaddr_storage s4 = v4("1.2.3.4", 5), d4 = v4("5.6.7.8", 9);
    uint8_t small[28];
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&s4, (struct sockaddr *)&d4, NULL,
                                         small, sizeof(small), &n),
                 0);
    CHECK_EQ_INT(n, 28);
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&s4, (struct sockaddr *)&d4, NULL,
                                         small, sizeof(small) - 1, &n),
                 ZT_E_TOO_BIG);
}

static void test_other_family(void)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct sockaddr_storage d = v4("1.2.3.4", 5);
    uint8_t buf[ZT_PROXYPROTO_V2_MAX];
    size_t n = 0;
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&un, (struct sockaddr *)&d, NULL, buf,
                                         sizeof(buf), &n),
                 -EAFNOSUPPORT);
    CHECK_EQ_INT(zt_proxyproto_v2_encode((struct sockaddr *)&d, (struct sockaddr *)&un, NULL, buf,
                                         sizeof(buf), &n),
                 -EAFNOSUPPORT);
}

int main(void)
{
    RUN(test_ipv4_with_identity);
    RUN(test_ipv6_without_identity);
    RUN(test_mixed_families_unspec);
    RUN(test_caps);
    RUN(test_other_family);
    return TEST_REPORT();
}
