#include "test.h"

#include "base/err.h"
#include "tls/spiffe.h"

#include <string.h>

struct parse_case {
    const char *in;
    int rc;
    const char *td, *ns, *sa;
};

static const struct parse_case cases[] = {
    {"spiffe://cluster.local/ns/default/sa/bookinfo", 0, "cluster.local", "default", "bookinfo"},
    {"spiffe://td/ns/a/sa/b", 0, "td", "a", "b"},
    {"spiffe://example.org/ns/ns/sa/sa", 0, "example.org", "ns", "sa"},
    {"spiffe://td/ns/a-b.c_d/sa/x:y", 0, "td", "a-b.c_d", "x:y"},
    /* prefix */
    {"cluster.local/ns/default/sa/x", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"SPIFFE://td/ns/a/sa/b", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe:/td/ns/a/sa/b", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"https://td/ns/a/sa/b", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"", ZT_E_IDENTITY, NULL, NULL, NULL},
    /* part counts */
    {"spiffe://td/ns/a/sa", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://td/ns/a", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://td/ns/a/sa/b/c", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://td/ns/a/sa/b/", ZT_E_IDENTITY, NULL, NULL, NULL},
    /* literals */
    {"spiffe://td/NS/a/sa/b", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://td/namespace/a/sa/b", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://td/ns/a/serviceaccount/b", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://td/sa/a/ns/b", ZT_E_IDENTITY, NULL, NULL, NULL},
    /* empty parts */
    {"spiffe:///ns/a/sa/b", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://td/ns//sa/b", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://td/ns/a/sa/", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://td//a/sa/b", ZT_E_IDENTITY, NULL, NULL, NULL},
    /* bad bytes */
    {"spiffe://td/ns/a b/sa/c", ZT_E_IDENTITY, NULL, NULL, NULL},
    {"spiffe://td/ns/a\n/sa/c", ZT_E_IDENTITY, NULL, NULL, NULL},
};

static void test_parse_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct zt_spiffe_id id;
        int rc = zt_spiffe_parse(cases[i].in, strlen(cases[i].in), &id);
        if (rc != cases[i].rc)
            fprintf(stderr, "  case %zu: \"%s\"\n", i, cases[i].in);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0) {
            CHECK_EQ_STR(id.trust_domain, cases[i].td);
            CHECK_EQ_STR(id.ns, cases[i].ns);
            CHECK_EQ_STR(id.sa, cases[i].sa);
        } else {
            CHECK_EQ_INT(id.trust_domain[0], 0);
        }
    }
}

static void test_parse_uses_len_and_rejects_nul(void)
{
    struct zt_spiffe_id id;
    const char s[] = "spiffe://td/ns/a/sa/bXXXX";
    /* Only the first len bytes count. */
    CHECK_EQ_INT(zt_spiffe_parse(s, strlen("spiffe://td/ns/a/sa/b"), &id), 0);
    CHECK_EQ_STR(id.sa, "b");
    const char withnul[] = "spiffe://td/ns/a/sa/b\0c";
    CHECK_EQ_INT(zt_spiffe_parse(withnul, sizeof(withnul) - 1, &id), ZT_E_IDENTITY);
    CHECK_EQ_INT(zt_spiffe_parse(NULL, 5, &id), ZT_E_IDENTITY);
}

static void test_over_long(void)
{
    char buf[2048];
    struct zt_spiffe_id id;
    char part[400];

    /* Namespace of exactly the cap is fine, one more is not. */
    memset(part, 'n', ZT_SPIFFE_NS_MAX);
    part[ZT_SPIFFE_NS_MAX] = '\0';
    snprintf(buf, sizeof(buf), "spiffe://td/ns/%s/sa/x", part);
    CHECK_EQ_INT(zt_spiffe_parse(buf, strlen(buf), &id), 0);
    CHECK_EQ_INT(strlen(id.ns), ZT_SPIFFE_NS_MAX);
    snprintf(buf, sizeof(buf), "spiffe://td/ns/%sn/sa/x", part);
    CHECK_EQ_INT(zt_spiffe_parse(buf, strlen(buf), &id), ZT_E_IDENTITY);

    memset(part, 't', ZT_SPIFFE_TD_MAX + 1);
    part[ZT_SPIFFE_TD_MAX + 1] = '\0';
    snprintf(buf, sizeof(buf), "spiffe://%s/ns/a/sa/x", part);
    CHECK_EQ_INT(zt_spiffe_parse(buf, strlen(buf), &id), ZT_E_IDENTITY);
    part[ZT_SPIFFE_TD_MAX] = '\0';
    snprintf(buf, sizeof(buf), "spiffe://%s/ns/a/sa/x", part);
    CHECK_EQ_INT(zt_spiffe_parse(buf, strlen(buf), &id), 0);

    memset(part, 's', ZT_SPIFFE_SA_MAX + 1);
    part[ZT_SPIFFE_SA_MAX + 1] = '\0';
    snprintf(buf, sizeof(buf), "spiffe://td/ns/a/sa/%s", part);
    CHECK_EQ_INT(zt_spiffe_parse(buf, strlen(buf), &id), ZT_E_IDENTITY);

    /* A huge input is refused by length before any splitting. */
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "spiffe://", 9);
    CHECK_EQ_INT(zt_spiffe_parse(buf, sizeof(buf), &id), ZT_E_IDENTITY);
}

static void test_format_roundtrip_and_eq(void)
{
    struct zt_spiffe_id a, b, c;
    char buf[ZT_SPIFFE_ID_MAX + 1];
    CHECK_EQ_INT(zt_spiffe_make("cluster.local", "default", "web", &a), 0);
    int n = zt_spiffe_format(&a, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "spiffe://cluster.local/ns/default/sa/web");
    CHECK_EQ_INT(n, strlen(buf));
    CHECK_EQ_INT(zt_spiffe_parse(buf, (size_t)n, &b), 0);
    CHECK(zt_spiffe_eq(&a, &b));
    CHECK_EQ_INT(zt_spiffe_make("cluster.local", "default", "web2", &c), 0);
    CHECK(!zt_spiffe_eq(&a, &c));
    CHECK_EQ_INT(zt_spiffe_make("other.local", "default", "web", &c), 0);
    CHECK(!zt_spiffe_eq(&a, &c));

    char small[10];
    CHECK_EQ_INT(zt_spiffe_format(&a, small, sizeof(small)), ZT_E_TOO_BIG);
    CHECK_EQ_STR(small, "");

    /* Parts that would not parse back are refused. */
    CHECK_EQ_INT(zt_spiffe_make("td", "a/sa/b", "c", &c), ZT_E_IDENTITY);
    CHECK_EQ_INT(zt_spiffe_make("td", "", "c", &c), ZT_E_IDENTITY);
    CHECK_EQ_INT(zt_spiffe_make("td", "a", "c d", &c), ZT_E_IDENTITY);
}

int main(void)
{
    RUN(test_parse_table);
    RUN(test_parse_uses_len_and_rejects_nul);
    RUN(test_over_long);
    RUN(test_format_roundtrip_and_eq);
    return TEST_REPORT();
}
