/* baggage, forwarded and traceparent (wire facts §2.3): tables of valid and
 * invalid inputs, the drop-never-truncate rule for long values, duplicates,
 * percent-encoding, non-ASCII, and format -> parse round trips. */
#include "test.h"

#include "base/err.h"
#include "telemetry/headers.h"

#include <stdbool.h>
#include <stdlib.h>

#define V ZT_TELEMETRY_VALUE_MAX

/* ---- baggage ------------------------------------------------------------ */

/* Field names for table rows: "c"=cluster "n"=namespace "w"=workload
 * "t"=type "s"=service "v"=version "r"=region "z"=zone. NULL = expect "". */
struct bag_want {
    const char *c, *n, *w, *t, *s, *v, *r, *z;
};

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

static bool bag_equals(const struct zt_telemetry_baggage *b, const struct bag_want *w)
{
    return !strcmp(b->cluster, or_empty(w->c)) && !strcmp(b->namespace_, or_empty(w->n)) &&
           !strcmp(b->workload, or_empty(w->w)) && !strcmp(b->workload_type, or_empty(w->t)) &&
           !strcmp(b->service, or_empty(w->s)) && !strcmp(b->version, or_empty(w->v)) &&
           !strcmp(b->region, or_empty(w->r)) && !strcmp(b->zone, or_empty(w->z));
}

static void dump_bag(const char *in, const struct zt_telemetry_baggage *b)
{
    fprintf(stderr, "  input [%s] -> c=%s n=%s w=%s t=%s s=%s v=%s r=%s z=%s any=%d\n", in,
            b->cluster, b->namespace_, b->workload, b->workload_type, b->service, b->version,
            b->region, b->zone, b->any);
}

static void test_baggage_valid(void)
{
    static const struct {
        const char *in;
        struct bag_want want;
    } cases[] = {
        /* What Istio sends, in its order. */
        {"k8s.cluster.name=Kubernetes,k8s.namespace.name=ns1,k8s.deployment.name=client,"
         "service.name=client,service.version=v1,cloud.region=us-east1,"
         "cloud.availability_zone=us-east1-b",
         {"Kubernetes", "ns1", "client", "deployment", "client", "v1", "us-east1", "us-east1-b"}},
        /* Each workload type, and order does not matter. */
        {"k8s.pod.name=p-1,k8s.cluster.name=c", {.c = "c", .w = "p-1", .t = "pod"}},
        {"k8s.cronjob.name=cj", {.w = "cj", .t = "cronjob"}},
        {"k8s.job.name=j", {.w = "j", .t = "job"}},
        /* Whitespace around members and '='. */
        {"  k8s.namespace.name = ns1 ,\tservice.name=\tsvc\t", {.n = "ns1", .s = "svc"}},
        /* Properties after ';' are ignored, valid or not. */
        {"service.name=svc;prop1;p2=x, service.version=v2 ; ;;=", {.s = "svc", .v = "v2"}},
        /* Percent-decoding, either hex case; '%' itself encoded. */
        {"service.name=a%2Cb%3Bc%20d%25e%3d", {.s = "a,b;c d%e="}},
        {"service.version=%7e%7E", {.v = "~~"}},
        /* Empty members are skipped. */
        {",,service.name=s,, ,", {.s = "s"}},
        /* Unknown keys ignored, including similar-looking ones. */
        {"foo=bar,k8s.replicaset.name=rs,K8S.CLUSTER.NAME=x,service.name=s", {.s = "s"}},
        /* Duplicates: first wins; empty values do not claim a key. */
        {"service.name=a,service.name=b", {.s = "a"}},
        {"service.name=,service.name=b", {.s = "b"}},
        {"k8s.pod.name=p,k8s.deployment.name=d", {.w = "p", .t = "pod"}},
        /* Malformed members skipped, others kept. */
        {"service.name=a b,service.version=v", {.v = "v"}},
        {"service.name=bad%zz,service.name=good", {.s = "good"}},
        {"service.name=trunc%4,cloud.region=r", {.r = "r"}},
        {"noequals,service.name=s", {.s = "s"}},
        {"=v,service.name=s", {.s = "s"}},
        {"service.name=\"quoted\",service.version=v", {.v = "v"}},
        /* Decoded non-ASCII or control bytes: member dropped. */
        {"service.name=caf%C3%A9,service.version=v", {.v = "v"}},
        {"service.name=a%0Ab,cloud.region=r", {.r = "r"}},
        /* '=' is a legal value octet. */
        {"service.name=a=b", {.s = "a=b"}},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct zt_telemetry_baggage b;
        int rc = zt_telemetry_baggage_parse(cases[i].in, strlen(cases[i].in), &b);
        if (rc != 0 || !bag_equals(&b, &cases[i].want))
            dump_bag(cases[i].in, &b);
        CHECK_EQ_INT(rc, 0);
        CHECK(bag_equals(&b, &cases[i].want));
        CHECK(b.any);
    }
}

static void test_baggage_nothing_known(void)
{
    static const char *const cases[] = {
        "", "   ", "\t", "foo=bar", "service.name=", "service.name=%C3%A9", "a=1;p,b=2"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct zt_telemetry_baggage b;
        memset(&b, 0x55, sizeof(b));
        CHECK_EQ_INT(zt_telemetry_baggage_parse(cases[i], strlen(cases[i]), &b), 0);
        CHECK(!b.any);
        CHECK(bag_equals(&b, &(struct bag_want){0}));
    }
}

static void test_baggage_invalid(void)
{
    static const struct {
        const char *in;
        size_t len; /* 0: strlen */
    } cases[] = {
        {"garbage", 0},
        {",,,", 0},
        {"service.name=a b", 0},
        {"service.name=%", 0},
        {"service.name=%g0", 0},
        {"=x", 0},
        {"service.name=\xc3\xa9", 0},            /* raw non-ASCII anywhere rejects all */
        {"service.name=s,x=\xff", 0},            /* even in an unknown member */
        {"service.name=s\r\n", 0},               /* control bytes */
        {"service.name=s\0,cloud.region=r", 30}, /* embedded NUL */
        {"service.name=s\x7f", 0},               /* DEL */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct zt_telemetry_baggage b;
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        memset(&b, 0x55, sizeof(b));
        int rc = zt_telemetry_baggage_parse(cases[i].in, len, &b);
        if (rc != ZT_E_PROTO)
            fprintf(stderr, "  case %zu accepted\n", i);
        CHECK_EQ_INT(rc, ZT_E_PROTO);
        CHECK(!b.any);
        CHECK(bag_equals(&b, &(struct bag_want){0}));
    }
}

/* Length is only bounded by len, never by a NUL. */
static void test_baggage_respects_len(void)
{
    const char *s = "service.name=abcdef,cloud.region=r";
    struct zt_telemetry_baggage b;

    CHECK_EQ_INT(zt_telemetry_baggage_parse(s, 16, &b), 0);
    CHECK_EQ_STR(b.service, "abc");
    CHECK_EQ_STR(b.region, "");
}

/* Values over the cap are dropped (member skipped), never truncated; the cap
 * applies to the decoded length. */
static void test_baggage_long_values(void)
{
    char in[8 * V + 200], val[3 * V + 10];
    struct zt_telemetry_baggage b;

    memset(val, 'a', V);
    val[V] = '\0';
    snprintf(in, sizeof(in), "service.name=%s", val);
    CHECK_EQ_INT(zt_telemetry_baggage_parse(in, strlen(in), &b), 0);
    CHECK_EQ_INT(strlen(b.service), V);

    snprintf(in, sizeof(in), "service.name=%sb,service.name=short,cloud.region=%sb", val, val);
    CHECK_EQ_INT(zt_telemetry_baggage_parse(in, strlen(in), &b), 0);
    CHECK_EQ_STR(b.service, "short");
    CHECK_EQ_STR(b.region, "");

    /* 253 escapes decode to 253 bytes: kept. */
    for (int i = 0; i < V; i++)
        memcpy(val + 3 * i, "%2C", 3);
    val[3 * V] = '\0';
    snprintf(in, sizeof(in), "cloud.region=%s", val);
    CHECK_EQ_INT(zt_telemetry_baggage_parse(in, strlen(in), &b), 0);
    CHECK_EQ_INT(strlen(b.region), V);
    CHECK(b.region[0] == ',' && b.region[V - 1] == ',');
}

static void test_baggage_header_cap(void)
{
    size_t n = ZT_TELEMETRY_HEADER_MAX + 1;
    char *in = malloc(n);
    struct zt_telemetry_baggage b;
    int rc;

    CHECK(in != NULL);
    memset(in, ' ', n);
    memcpy(in, "service.name=s", 14);
    rc = zt_telemetry_baggage_parse(in, n, &b);
    int rc2 = zt_telemetry_baggage_parse(in, n - 1, &b);
    free(in);
    CHECK_EQ_INT(rc, ZT_E_PROTO);
    CHECK_EQ_INT(rc2, 0);
    CHECK_EQ_STR(b.service, "s");
}

static void test_baggage_format(void)
{
    struct zt_telemetry_baggage b = {0};
    char buf[1024];

    CHECK_EQ_INT(zt_telemetry_baggage_format(&b, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "");

    strcpy(b.cluster, "Kubernetes");
    strcpy(b.namespace_, "ns1");
    strcpy(b.workload, "client");
    strcpy(b.workload_type, "deployment");
    strcpy(b.service, "client");
    strcpy(b.version, "v1");
    strcpy(b.zone, "z");
    const char *want = "k8s.cluster.name=Kubernetes,k8s.namespace.name=ns1,"
                       "k8s.deployment.name=client,service.name=client,service.version=v1,"
                       "cloud.availability_zone=z";
    int n = zt_telemetry_baggage_format(&b, buf, sizeof(buf));
    CHECK_EQ_STR(buf, want);
    CHECK_EQ_INT(n, strlen(want));

    /* Exactly fitting, and one byte short. */
    CHECK_EQ_INT(zt_telemetry_baggage_format(&b, buf, strlen(want) + 1), strlen(want));
    CHECK_EQ_INT(zt_telemetry_baggage_format(&b, buf, strlen(want)), ZT_E_TOO_BIG);
    CHECK_EQ_STR(buf, "");
    CHECK_EQ_INT(zt_telemetry_baggage_format(&b, buf, 0), ZT_E_TOO_BIG);

    /* Encoding of the octets baggage cannot carry raw. */
    memset(&b, 0, sizeof(b));
    strcpy(b.service, "a b,c;d\"e\\f%g=h");
    CHECK(zt_telemetry_baggage_format(&b, buf, sizeof(buf)) > 0);
    CHECK_EQ_STR(buf, "service.name=a%20b%2Cc%3Bd%22e%5Cf%25g=h");

    /* Workload without a known type, or a non-ASCII value: refused. */
    memset(&b, 0, sizeof(b));
    strcpy(b.workload, "w");
    CHECK_EQ_INT(zt_telemetry_baggage_format(&b, buf, sizeof(buf)), ZT_E_PROTO);
    strcpy(b.workload_type, "statefulset");
    CHECK_EQ_INT(zt_telemetry_baggage_format(&b, buf, sizeof(buf)), ZT_E_PROTO);
    strcpy(b.workload_type, "job");
    CHECK_EQ_INT(zt_telemetry_baggage_format(&b, buf, sizeof(buf)), strlen("k8s.job.name=w"));
    strcpy(b.region, "caf\xc3\xa9");
    CHECK_EQ_INT(zt_telemetry_baggage_format(&b, buf, sizeof(buf)), ZT_E_PROTO);
    CHECK_EQ_STR(buf, "");

    /* A type without a workload is not written. */
    memset(&b, 0, sizeof(b));
    strcpy(b.workload_type, "pod");
    strcpy(b.version, "v");
    CHECK(zt_telemetry_baggage_format(&b, buf, sizeof(buf)) > 0);
    CHECK_EQ_STR(buf, "service.version=v");

    /* An unterminated field is caught, not over-read. */
    memset(&b, 0, sizeof(b));
    memset(b.cluster, 'c', sizeof(b.cluster));
    CHECK_EQ_INT(zt_telemetry_baggage_format(&b, buf, sizeof(buf)), ZT_E_TOO_BIG);
}

static void test_baggage_round_trip(void)
{
    static const char *const values[] = {"x",    "with space", "a,b;c",
                                         "100%", "q\"uo\\te",  "~!#$&'()*+-./:<=>?@[]^_`{|}"};
    char buf[8192];

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        for (size_t t = 0; t < 4; t++) {
            static const char *const types[] = {"deployment", "cronjob", "pod", "job"};
            struct zt_telemetry_baggage a = {0}, b;
            strcpy(a.cluster, values[i]);
            strcpy(a.namespace_, "ns");
            strcpy(a.workload, values[i]);
            strcpy(a.workload_type, types[t]);
            strcpy(a.service, values[(i + 1) % 6]);
            strcpy(a.version, values[(i + 2) % 6]);
            strcpy(a.region, values[(i + 3) % 6]);
            strcpy(a.zone, values[(i + 4) % 6]);
            a.any = true;
            int n = zt_telemetry_baggage_format(&a, buf, sizeof(buf));
            CHECK(n > 0);
            CHECK_EQ_INT(zt_telemetry_baggage_parse(buf, (size_t)n, &b), 0);
            CHECK(memcmp(&a, &b, sizeof(a)) == 0);
        }
    }

    /* Every field at the cap, every byte escaped: still under the header
     * cap, and read back whole. */
    struct zt_telemetry_baggage a = {0}, b;
    memset(a.cluster, ',', V);
    memset(a.namespace_, ' ', V);
    memset(a.workload, '%', V);
    strcpy(a.workload_type, "deployment");
    memset(a.service, ';', V);
    memset(a.version, '"', V);
    memset(a.region, '\\', V);
    memset(a.zone, ',', V);
    a.any = true;
    int n = zt_telemetry_baggage_format(&a, buf, sizeof(buf));
    CHECK(n > 7 * 3 * V);
    CHECK(n <= ZT_TELEMETRY_HEADER_MAX);
    CHECK_EQ_INT(zt_telemetry_baggage_parse(buf, (size_t)n, &b), 0);
    CHECK(memcmp(&a, &b, sizeof(a)) == 0);
}

/* ---- forwarded ---------------------------------------------------------- */

static void test_forwarded_valid(void)
{
    static const struct {
        const char *in, *host, *for_;
    } cases[] = {
        {"for=\"10.0.0.1:4567\";host=echo.default.svc.cluster.local",
         "echo.default.svc.cluster.local", "10.0.0.1:4567"},
        {"for=\"10.0.0.1:4567\"", "", "10.0.0.1:4567"},
        {"host=h", "h", ""},
        {"", "", ""},
        {"  ", "", ""},
        {"for=\"[2001:db8::1]:80\";host=\"a.b\"", "a.b", "[2001:db8::1]:80"},
        /* Case-insensitive names, whitespace, empty pairs, unknown params. */
        {" HOST = h ; For=1.2.3.4 ;; proto=https;by=_x", "h", "1.2.3.4"},
        {";;host=h;", "h", ""},
        /* Lenient unquoted value with ':'. */
        {"for=10.0.0.1:80;host=h", "h", "10.0.0.1:80"},
        /* Only the first element counts; later ones may be anything. */
        {"for=a;host=first, host=second", "first", "a"},
        {"host=h,\xff garbage \"unterminated", "h", ""},
        {"for=x, host=h", "", "x"},
        /* Quoted-pair escapes; quoted ',' and ';' do not end anything. */
        {"host=\"a\\\"b\\\\c\";for=\"x,y;z\"", "a\"b\\c", "x,y;z"},
        /* Repeated parameter: first wins (even if empty). */
        {"host=a;host=b", "a", ""},
        {"host=\"\";host=b", "", ""},
        {"host=;for=f", "", "f"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[V + 1], for_[V + 1];
        memset(host, 'X', sizeof(host));
        memset(for_, 'X', sizeof(for_));
        int rc = zt_telemetry_forwarded_parse(cases[i].in, strlen(cases[i].in), host, sizeof(host),
                                              for_, sizeof(for_));
        if (rc != 0)
            fprintf(stderr, "  case %zu [%s] rejected\n", i, cases[i].in);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_STR(host, cases[i].host);
        CHECK_EQ_STR(for_, cases[i].for_);
    }
}

static void test_forwarded_invalid(void)
{
    static const char *const cases[] = {
        "host",                 /* no '=' */
        "=h",                   /* no name */
        "host=\"unterminated",  /* open quote */
        "host=\"ends in \\",    /* dangling escape */
        "host=h junk",          /* junk after the value */
        "host=\"a\"b",          /* junk after a quoted value */
        "host=caf\xc3\xa9",     /* non-ASCII unquoted */
        "host=\"caf\xc3\xa9\"", /* non-ASCII quoted */
        "host=\"a\tb\"",        /* control in quotes */
        "ho st=h",              /* space in a name */
        "for=1;host=h\r\n",     /* CR LF */
        "host=h;\x01",          /* control as a name */
        "host=\"a\\\xff\"",     /* escaped non-ASCII */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[64] = "X", for_[64] = "X";
        int rc = zt_telemetry_forwarded_parse(cases[i], strlen(cases[i]), host, sizeof(host), for_,
                                              sizeof(for_));
        if (rc != ZT_E_PROTO)
            fprintf(stderr, "  case %zu [%s] accepted host=[%s]\n", i, cases[i], host);
        CHECK_EQ_INT(rc, ZT_E_PROTO);
        CHECK_EQ_STR(host, "");
        CHECK_EQ_STR(for_, "");
    }
}

static void test_forwarded_caps(void)
{
    char in[2 * V + 64], val[V + 2], host[V + 1], small[8], for_[V + 1];

    /* Exactly at the cap: kept. One over: dropped (not truncated), and the
     * element still parses. */
    memset(val, 'h', V);
    val[V] = '\0';
    snprintf(in, sizeof(in), "for=f;host=%s", val);
    CHECK_EQ_INT(
        zt_telemetry_forwarded_parse(in, strlen(in), host, sizeof(host), for_, sizeof(for_)), 0);
    CHECK_EQ_INT(strlen(host), V);
    snprintf(in, sizeof(in), "for=f;host=\"%sh\";host=other", val);
    CHECK_EQ_INT(
        zt_telemetry_forwarded_parse(in, strlen(in), host, sizeof(host), for_, sizeof(for_)), 0);
    CHECK_EQ_STR(host, "");
    CHECK_EQ_STR(for_, "f");

    /* The caller's smaller buffer is a cap too. */
    const char *s = "host=1234567;for=12345678";
    CHECK_EQ_INT(zt_telemetry_forwarded_parse(s, strlen(s), small, sizeof(small), for_, 9), 0);
    CHECK_EQ_STR(small, "1234567");
    CHECK_EQ_STR(for_, "12345678");
    CHECK_EQ_INT(zt_telemetry_forwarded_parse(s, strlen(s), small, 7, for_, 8), 0);
    CHECK_EQ_STR(small, "");
    CHECK_EQ_STR(for_, "");

    /* Outputs are optional. */
    CHECK_EQ_INT(zt_telemetry_forwarded_parse(s, strlen(s), NULL, 0, for_, sizeof(for_)), 0);
    CHECK_EQ_STR(for_, "12345678");
    CHECK_EQ_INT(zt_telemetry_forwarded_parse("host", 4, NULL, 0, NULL, 0), ZT_E_PROTO);

    /* len bounds the read: the NUL-less prefix "host=ab" is what counts. */
    CHECK_EQ_INT(zt_telemetry_forwarded_parse("host=abc", 7, host, sizeof(host), NULL, 0), 0);
    CHECK_EQ_STR(host, "ab");

    /* Whole-header cap. */
    size_t n = ZT_TELEMETRY_HEADER_MAX + 1;
    char *big = malloc(n);
    CHECK(big != NULL);
    memset(big, ' ', n);
    memcpy(big, "host=h", 6);
    int rc = zt_telemetry_forwarded_parse(big, n, host, sizeof(host), NULL, 0);
    int rc2 = zt_telemetry_forwarded_parse(big, n - 1, host, sizeof(host), NULL, 0);
    free(big);
    CHECK_EQ_INT(rc, ZT_E_PROTO);
    CHECK_EQ_INT(rc2, 0);
    CHECK_EQ_STR(host, "h");
}

static void test_forwarded_format(void)
{
    char buf[600], host[V + 1], for_[V + 1];

    CHECK_EQ_INT(zt_telemetry_forwarded_format("10.0.0.1:4567", "echo.default.svc.cluster.local",
                                               buf, sizeof(buf)),
                 strlen("for=\"10.0.0.1:4567\";host=echo.default.svc.cluster.local"));
    CHECK_EQ_STR(buf, "for=\"10.0.0.1:4567\";host=echo.default.svc.cluster.local");
    CHECK(zt_telemetry_forwarded_format("[::1]:80", NULL, buf, sizeof(buf)) > 0);
    CHECK_EQ_STR(buf, "for=\"[::1]:80\"");
    CHECK(zt_telemetry_forwarded_format("", "h", buf, sizeof(buf)) > 0);
    CHECK_EQ_STR(buf, "host=h");
    CHECK_EQ_INT(zt_telemetry_forwarded_format(NULL, NULL, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "");
    CHECK(zt_telemetry_forwarded_format("a\"b", "x y\\z", buf, sizeof(buf)) > 0);
    CHECK_EQ_STR(buf, "for=\"a\\\"b\";host=\"x y\\\\z\"");

    CHECK_EQ_INT(zt_telemetry_forwarded_format("1.2.3.4:5", "h", buf, 10), ZT_E_TOO_BIG);
    CHECK_EQ_STR(buf, "");
    CHECK_EQ_INT(zt_telemetry_forwarded_format("f", "caf\xc3\xa9", buf, sizeof(buf)), ZT_E_PROTO);
    char longv[V + 2];
    memset(longv, 'a', V + 1);
    longv[V + 1] = '\0';
    CHECK_EQ_INT(zt_telemetry_forwarded_format(NULL, longv, buf, sizeof(buf)), ZT_E_TOO_BIG);
    longv[V] = '\0';
    CHECK(zt_telemetry_forwarded_format(NULL, longv, buf, sizeof(buf)) > 0);

    /* Round trips. */
    static const char *const vals[][2] = {
        {"10.0.0.1:4567", "echo.default.svc.cluster.local"},
        {"[fd00::1]:8080", "a b"},
        {"\"\\\";,=", ";,\""},
        {"", "only-host"},
        {"only-for", ""},
    };
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        int n = zt_telemetry_forwarded_format(vals[i][0], vals[i][1], buf, sizeof(buf));
        CHECK(n >= 0);
        CHECK_EQ_INT(
            zt_telemetry_forwarded_parse(buf, (size_t)n, host, sizeof(host), for_, sizeof(for_)),
            0);
        CHECK_EQ_STR(for_, vals[i][0]);
        CHECK_EQ_STR(host, vals[i][1]);
    }
}

/* ---- traceparent -------------------------------------------------------- */

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"

static void test_traceparent_valid(void)
{
    static const struct {
        const char *in;
        uint8_t flags;
    } cases[] = {
        {"00-" TID "-" PID "-00", 0x00},
        {"00-" TID "-" PID "-01", 0x01},
        {"00-" TID "-" PID "-ff", 0xff}, /* unknown flag bits are carried */
        {"  00-" TID "-" PID "-01\t", 0x01},
        {"01-" TID "-" PID "-01", 0x01},                 /* later version, same size */
        {"cc-" TID "-" PID "-01-what-the-future", 0x01}, /* later version, more fields */
        {"fe-" TID "-" PID "-09-", 0x09},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct zt_telemetry_traceparent tp;
        int rc = zt_telemetry_traceparent_parse(cases[i].in, strlen(cases[i].in), &tp);
        if (rc != 0)
            fprintf(stderr, "  case %zu [%s] rejected\n", i, cases[i].in);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_STR(tp.trace_id, TID);
        CHECK_EQ_STR(tp.parent_id, PID);
        CHECK_EQ_INT(tp.flags, cases[i].flags);
    }
}

static void test_traceparent_invalid(void)
{
    static const char *const cases[] = {
        "",
        "garbage",
        "00-" TID "-" PID "-0",                           /* short */
        "00-" TID "-" PID "-001",                         /* v00 too long */
        "00-" TID "-" PID "-00-extra",                    /* v00 has no extra fields */
        "01-" TID "-" PID "-00x",                         /* later: needs '-' */
        "ff-" TID "-" PID "-00",                          /* version ff */
        "0g-" TID "-" PID "-00",                          /* bad version */
        "0A-" TID "-" PID "-00",                          /* uppercase version */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-00", /* uppercase trace id */
        "00-" TID "-00F067AA0BA902B7-00",                 /* uppercase parent id */
        "00-" TID "-" PID "-0A",                          /* uppercase flags */
        "00-00000000000000000000000000000000-" PID "-00", /* zero trace id */
        "00-" TID "-0000000000000000-00",                 /* zero parent id */
        "00_" TID "-" PID "-00",                          /* bad separators */
        "00-" TID "_" PID "-00",
        "00-" TID "-" PID "_00",
        "00-" TID "x" PID "-00",
        "00-4bf92f3577b34da6a3ce929d0e0e473-" PID "-00x", /* misplaced '-' */
        "00-" TID "-" PID "-0\xff",                       /* non-ASCII */
        "00-" TID "-" PID "-\xc3\xa9",
        " 00 -" TID "-" PID "-00",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct zt_telemetry_traceparent tp;
        memset(&tp, 0x55, sizeof(tp));
        int rc = zt_telemetry_traceparent_parse(cases[i], strlen(cases[i]), &tp);
        if (rc != ZT_E_PROTO)
            fprintf(stderr, "  case %zu [%s] accepted\n", i, cases[i]);
        CHECK_EQ_INT(rc, ZT_E_PROTO);
        CHECK_EQ_STR(tp.trace_id, "");
        CHECK_EQ_STR(tp.parent_id, "");
        CHECK_EQ_INT(tp.flags, 0);
    }
    /* len is the bound, not the NUL: a valid header cut short is invalid. */
    struct zt_telemetry_traceparent tp;
    const char *ok = "00-" TID "-" PID "-01";
    CHECK_EQ_INT(zt_telemetry_traceparent_parse(ok, strlen(ok), &tp), 0);
    CHECK_EQ_INT(zt_telemetry_traceparent_parse(ok, strlen(ok) - 1, &tp), ZT_E_PROTO);
}

/* The waypoint's span: a valid parent is continued (trace id and flags
 * kept, a new parent id), anything else starts a new trace. */
static void test_traceparent_child(void)
{
    static const struct {
        const char *in;
        uint8_t flags;
    } cont[] = {
        {"00-" TID "-" PID "-00", 0x00},
        {"00-" TID "-" PID "-01", 0x01},
        {"00-" TID "-" PID "-03", 0x03},               /* unknown flag bits kept */
        {"01-" TID "-" PID "-01-future-fields", 0x01}, /* a later version, read as 00 */
        {" 00-" TID "-" PID "-01 ", 0x01},
    };
    static const char *const fresh[] = {
        "",
        "00-" TID "-" PID "-0",                           /* 54 bytes */
        "00-" TID "-" PID "-011",                         /* 56 bytes */
        "00-" TID "-" PID "-01-x",                        /* v00 with more fields */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01", /* uppercase */
        "00-" TID "-00F067AA0BA902B7-01",
        "00-00000000000000000000000000000000-" PID "-01", /* all-zero ids */
        "00-" TID "-0000000000000000-01",
        "ff-" TID "-" PID "-01", /* version ff */
        "01-" TID "-" PID "-01x",
    };
    struct zt_telemetry_traceparent tp, back;
    char buf[ZT_TELEMETRY_TRACEPARENT_LEN + 1];
    for (size_t i = 0; i < sizeof(cont) / sizeof(cont[0]); i++) {
        CHECK(zt_telemetry_traceparent_child(cont[i].in, strlen(cont[i].in), &tp));
        CHECK_EQ_STR(tp.trace_id, TID);
        CHECK(strcmp(tp.parent_id, PID) != 0);
        CHECK_EQ_INT(tp.flags, cont[i].flags);
        CHECK_EQ_INT(zt_telemetry_traceparent_format(&tp, buf, sizeof(buf)),
                     ZT_TELEMETRY_TRACEPARENT_LEN);
        CHECK_EQ_INT(strncmp(buf, "00-", 3), 0);
        CHECK_EQ_INT(zt_telemetry_traceparent_parse(buf, strlen(buf), &back), 0);
    }
    for (size_t i = 0; i < sizeof(fresh) / sizeof(fresh[0]); i++) {
        if (zt_telemetry_traceparent_child(fresh[i], strlen(fresh[i]), &tp))
            fprintf(stderr, "  case %zu [%s] continued\n", i, fresh[i]);
        CHECK(strcmp(tp.trace_id, TID) != 0);
        CHECK_EQ_INT(tp.flags, 0);
        CHECK_EQ_INT(zt_telemetry_traceparent_format(&tp, buf, sizeof(buf)),
                     ZT_TELEMETRY_TRACEPARENT_LEN);
    }
    /* None at all: a new trace; two calls, two traces. */
    CHECK(!zt_telemetry_traceparent_child(NULL, 0, &tp));
    CHECK(!zt_telemetry_traceparent_child(NULL, 0, &back));
    CHECK(strcmp(tp.trace_id, back.trace_id) != 0);
    CHECK_EQ_INT(zt_telemetry_traceparent_format(&tp, buf, sizeof(buf)),
                 ZT_TELEMETRY_TRACEPARENT_LEN);
    /* len bounds the input: a valid value cut by one byte is not continued. */
    const char *ok = "00-" TID "-" PID "-01";
    CHECK(!zt_telemetry_traceparent_child(ok, strlen(ok) - 1, &tp));
}

static void test_traceparent_format_new(void)
{
    struct zt_telemetry_traceparent tp = {TID, PID, 0x01}, back, other;
    char buf[ZT_TELEMETRY_TRACEPARENT_LEN + 1];

    CHECK_EQ_INT(zt_telemetry_traceparent_format(&tp, buf, sizeof(buf)),
                 ZT_TELEMETRY_TRACEPARENT_LEN);
    CHECK_EQ_STR(buf, "00-" TID "-" PID "-01");
    CHECK_EQ_INT(zt_telemetry_traceparent_format(&tp, buf, sizeof(buf) - 1), ZT_E_TOO_BIG);
    CHECK_EQ_STR(buf, "");

    /* Invalid contents are refused rather than sent. */
    struct zt_telemetry_traceparent bad = tp;
    bad.trace_id[0] = 'A';
    CHECK_EQ_INT(zt_telemetry_traceparent_format(&bad, buf, sizeof(buf)), ZT_E_PROTO);
    bad = tp;
    memset(bad.parent_id, '0', 16);
    CHECK_EQ_INT(zt_telemetry_traceparent_format(&bad, buf, sizeof(buf)), ZT_E_PROTO);
    bad = tp;
    bad.trace_id[5] = '\0';
    CHECK_EQ_INT(zt_telemetry_traceparent_format(&bad, buf, sizeof(buf)), ZT_E_PROTO);

    /* Fresh ids: valid, flags 00, round trip, and different each time. */
    zt_telemetry_traceparent_new(&tp);
    zt_telemetry_traceparent_new(&other);
    CHECK_EQ_INT(tp.flags, 0);
    CHECK_EQ_INT(strlen(tp.trace_id), 32);
    CHECK_EQ_INT(strlen(tp.parent_id), 16);
    CHECK_EQ_INT(zt_telemetry_traceparent_format(&tp, buf, sizeof(buf)),
                 ZT_TELEMETRY_TRACEPARENT_LEN);
    CHECK(strncmp(buf, "00-", 3) == 0 && strcmp(buf + 53, "00") == 0);
    CHECK_EQ_INT(zt_telemetry_traceparent_parse(buf, ZT_TELEMETRY_TRACEPARENT_LEN, &back), 0);
    CHECK(memcmp(&tp, &back, sizeof(tp)) == 0);
    CHECK(strcmp(tp.trace_id, other.trace_id) != 0);
    CHECK(strcmp(tp.parent_id, other.parent_id) != 0);

    /* A later version is normalised to 00 on the way out. */
    const char *v1 = "42-" TID "-" PID "-03-more";
    CHECK_EQ_INT(zt_telemetry_traceparent_parse(v1, strlen(v1), &back), 0);
    CHECK_EQ_INT(zt_telemetry_traceparent_format(&back, buf, sizeof(buf)),
                 ZT_TELEMETRY_TRACEPARENT_LEN);
    CHECK_EQ_STR(buf, "00-" TID "-" PID "-03");
}

int main(void)
{
    RUN(test_baggage_valid);
    RUN(test_baggage_nothing_known);
    RUN(test_baggage_invalid);
    RUN(test_baggage_respects_len);
    RUN(test_baggage_long_values);
    RUN(test_baggage_header_cap);
    RUN(test_baggage_format);
    RUN(test_baggage_round_trip);
    RUN(test_forwarded_valid);
    RUN(test_forwarded_invalid);
    RUN(test_forwarded_caps);
    RUN(test_forwarded_format);
    RUN(test_traceparent_valid);
    RUN(test_traceparent_invalid);
    RUN(test_traceparent_format_new);
    RUN(test_traceparent_child);
    return TEST_REPORT();
}
