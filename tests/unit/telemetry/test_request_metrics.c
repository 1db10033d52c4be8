/* The waypoint's HTTP request metrics (metrics.h, waypoint facts 2.5): label
 * names and order exactly as Istio's stats filter, the values Istio gives a
 * missing label, escaping, Envoy's histogram buckets (a value equal to a
 * bound counts in that bucket), sums across shards, the series cap with its
 * eviction and overflow, and promtool's verdict on an exposition holding
 * both TCP and request series. */
#include "test.h"

#include "base/buf.h"
#include "telemetry/metrics.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char *render(struct zt_metrics *m)
{
    struct zt_buf b = {0};
    zt_metrics_render(m, &b);
    char *s = malloc(b.len + 1);
    if (!s)
        abort();
    memcpy(s, zt_buf_head(&b), b.len);
    s[b.len] = 0;
    zt_buf_release(&b);
    return s;
}

/* Value of the sample whose line starts with `series` followed by a space;
 * -1 when there is none. */
static long long sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    const char *p = text;
    while (*p) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        p = nl + 1;
    }
    return -1;
}

/* The value text of that sample, copied into out; "" when there is none. */
static void sample_str(const char *text, const char *series, char *out, size_t cap)
{
    size_t n = strlen(series);
    out[0] = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            size_t len = nl ? (size_t)(nl - p - n - 1) : strlen(p + n + 1);
            if (len >= cap)
                len = cap - 1;
            memcpy(out, p + n + 1, len);
            out[len] = 0;
            return;
        }
        if (!nl)
            break;
        p = nl + 1;
    }
}

static int count_substr(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* A waypoint's label set for one request, every value known. */
static struct zt_request_labels full_labels(void)
{
    struct zt_request_labels l = {{0}};
    l.v[ZT_RL_REPORTER] = "waypoint";
    l.v[ZT_RL_SOURCE_WORKLOAD] = "client";
    l.v[ZT_RL_SOURCE_CANONICAL_SERVICE] = "client-svc";
    l.v[ZT_RL_SOURCE_CANONICAL_REVISION] = "v1";
    l.v[ZT_RL_SOURCE_WORKLOAD_NAMESPACE] = "ns1";
    l.v[ZT_RL_SOURCE_PRINCIPAL] = "spiffe://cluster.local/ns/ns1/sa/client";
    l.v[ZT_RL_SOURCE_APP] = "client-app";
    l.v[ZT_RL_SOURCE_VERSION] = "v1a";
    l.v[ZT_RL_SOURCE_CLUSTER] = "Kubernetes";
    l.v[ZT_RL_DESTINATION_WORKLOAD] = "echo-v2";
    l.v[ZT_RL_DESTINATION_WORKLOAD_NAMESPACE] = "ns2";
    l.v[ZT_RL_DESTINATION_PRINCIPAL] = "spiffe://cluster.local/ns/ns2/sa/echo";
    l.v[ZT_RL_DESTINATION_APP] = "echo-app";
    l.v[ZT_RL_DESTINATION_VERSION] = "v2";
    l.v[ZT_RL_DESTINATION_SERVICE] = "echo.ns2.svc.cluster.local";
    l.v[ZT_RL_DESTINATION_CANONICAL_SERVICE] = "echo";
    l.v[ZT_RL_DESTINATION_CANONICAL_REVISION] = "v2r";
    l.v[ZT_RL_DESTINATION_SERVICE_NAME] = "echo-name";
    l.v[ZT_RL_DESTINATION_SERVICE_NAMESPACE] = "ns2s";
    l.v[ZT_RL_DESTINATION_CLUSTER] = "Kubernetes2";
    l.v[ZT_RL_REQUEST_PROTOCOL] = "grpc";
    l.v[ZT_RL_RESPONSE_CODE] = "200";
    l.v[ZT_RL_GRPC_RESPONSE_STATUS] = "14";
    l.v[ZT_RL_RESPONSE_FLAGS] = "UH";
    l.v[ZT_RL_CONNECTION_SECURITY_POLICY] = "mutual_tls";
    return l;
}

#define FULL_LABELS                                                                                \
    "{reporter=\"waypoint\",source_workload=\"client\",source_canonical_service=\"client-svc\","   \
    "source_canonical_revision=\"v1\",source_workload_namespace=\"ns1\","                          \
    "source_principal=\"spiffe://cluster.local/ns/ns1/sa/client\",source_app=\"client-app\","      \
    "source_version=\"v1a\",source_cluster=\"Kubernetes\",destination_workload=\"echo-v2\","       \
    "destination_workload_namespace=\"ns2\","                                                      \
    "destination_principal=\"spiffe://cluster.local/ns/ns2/sa/echo\","                             \
    "destination_app=\"echo-app\",destination_version=\"v2\","                                     \
    "destination_service=\"echo.ns2.svc.cluster.local\",destination_canonical_service=\"echo\","   \
    "destination_canonical_revision=\"v2r\",destination_service_name=\"echo-name\","               \
    "destination_service_namespace=\"ns2s\",destination_cluster=\"Kubernetes2\","                  \
    "request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"14\","                 \
    "response_flags=\"UH\",connection_security_policy=\"mutual_tls\"}"

/* Only the reporter and the protocol given: what Istio renders for each
 * missing value. */
#define MISSING_LABELS                                                                             \
    "{reporter=\"waypoint\",source_workload=\"unknown\",source_canonical_service=\"unknown\","     \
    "source_canonical_revision=\"latest\",source_workload_namespace=\"unknown\","                  \
    "source_principal=\"unknown\",source_app=\"unknown\",source_version=\"unknown\","              \
    "source_cluster=\"unknown\",destination_workload=\"unknown\","                                 \
    "destination_workload_namespace=\"unknown\",destination_principal=\"unknown\","                \
    "destination_app=\"unknown\",destination_version=\"unknown\","                                 \
    "destination_service=\"unknown\",destination_canonical_service=\"unknown\","                   \
    "destination_canonical_revision=\"latest\",destination_service_name=\"unknown\","              \
    "destination_service_namespace=\"unknown\",destination_cluster=\"unknown\","                   \
    "request_protocol=\"http\",response_code=\"0\",grpc_response_status=\"\","                     \
    "response_flags=\"-\",connection_security_policy=\"unknown\"}"

static void test_label_names_in_istio_order(void)
{
    static const char *const want[ZT_RL_COUNT] = {
        "reporter",
        "source_workload",
        "source_canonical_service",
        "source_canonical_revision",
        "source_workload_namespace",
        "source_principal",
        "source_app",
        "source_version",
        "source_cluster",
        "destination_workload",
        "destination_workload_namespace",
        "destination_principal",
        "destination_app",
        "destination_version",
        "destination_service",
        "destination_canonical_service",
        "destination_canonical_revision",
        "destination_service_name",
        "destination_service_namespace",
        "destination_cluster",
        "request_protocol",
        "response_code",
        "grpc_response_status",
        "response_flags",
        "connection_security_policy",
    };
    CHECK_EQ_INT(ZT_RL_COUNT, 25);
    for (int i = 0; i < ZT_RL_COUNT; i++)
        CHECK_EQ_STR(zt_rl_name((enum zt_rl)i), want[i]);
    CHECK_EQ_STR(zt_rl_name(ZT_RL_COUNT), "unknown");
}

/* No request yet: no request family, the cap's three values at zero. */
static void test_absent_until_counted(void)
{
    struct zt_metrics *m = zt_metrics_new(2, "t");
    char *text = render(m);
    CHECK(strstr(text, "# TYPE istio_request") == NULL);
    CHECK(strstr(text, "# TYPE istio_response_bytes") == NULL);
    CHECK_EQ_INT(sample(text, "ztunnel_metrics_request_series"), 0);
    CHECK_EQ_INT(sample(text, "ztunnel_metrics_request_series_evicted_total"), 0);
    CHECK_EQ_INT(sample(text, "ztunnel_metrics_request_labels_dropped_total"), 0);
    free(text);
    zt_metrics_free(m);
}

/* The four families byte for byte for one request, placed right after the
 * TCP families and before istio_build. */
static void test_one_request_exact(void)
{
    struct zt_metrics *m = zt_metrics_new(2, "1.24.0");
    struct zt_request_labels l = full_labels();
    struct zt_request_series *s = zt_metrics_request_series(m, 1, &l);
    zt_request_series_observe(s, 7250, 300, 5);
    zt_metrics_request_series_release(m, 1, s);

    char *text = render(m);
    static const char *const les[] = {"0.5",    "1",      "5",       "10",      "25",
                                      "50",     "100",    "250",     "500",     "1000",
                                      "2500",   "5000",   "10000",   "30000",   "60000",
                                      "300000", "600000", "1800000", "3600000", "+Inf"};
    struct zt_buf want = {0};
    const char *head = "# HELP istio_requests_total Requests handled.\n"
                       "# TYPE istio_requests_total counter\n"
                       "istio_requests_total" FULL_LABELS " 1\n";
    zt_buf_append(&want, head, strlen(head));
    static const struct {
        const char *name, *help, *sum;
        int first; /* index of the first bucket holding the value */
    } h[3] = {
        {"istio_request_duration_milliseconds",
         "Time from a request's first byte to its response's last byte, in milliseconds.", "7.250",
         3},
        {"istio_request_bytes", "Request sizes in bytes, headers included.", "300", 8},
        {"istio_response_bytes", "Response sizes in bytes, headers included.", "5", 2},
    };
    char line[2048];
    for (int k = 0; k < 3; k++) {
        int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s histogram\n", h[k].name,
                         h[k].help, h[k].name);
        zt_buf_append(&want, line, (size_t)n);
        const char *lb = FULL_LABELS;
        for (int b = 0; b < 20; b++) {
            n = snprintf(line, sizeof(line), "%s_bucket%.*s,le=\"%s\"} %d\n", h[k].name,
                         (int)strlen(lb) - 1, lb, les[b], b >= h[k].first ? 1 : 0);
            zt_buf_append(&want, line, (size_t)n);
        }
        n = snprintf(line, sizeof(line), "%s_sum%s %s\n%s_count%s 1\n", h[k].name, lb, h[k].sum,
                     h[k].name, lb);
        zt_buf_append(&want, line, (size_t)n);
    }
    zt_buf_append(&want, "# HELP istio_build ", strlen("# HELP istio_build ") + 1);

    const char *got = strstr(text, "# HELP istio_requests_total");
    int same = got && strncmp(got, (const char *)zt_buf_head(&want), want.len - 1) == 0;
    if (!same)
        fprintf(stderr, "got:\n%s\nwant:\n%s\n", got ? got : text,
                (const char *)zt_buf_head(&want));
    zt_buf_release(&want);
    CHECK(strstr(text, "# HELP istio_tcp_connections") == NULL);
    free(text);
    zt_metrics_free(m);
    CHECK(same);
}

/* NULL and "" are both "missing", rendered as Istio renders each label. */
static void test_missing_values(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "t");
    struct zt_request_labels a = {{0}};
    a.v[ZT_RL_REPORTER] = "waypoint";
    a.v[ZT_RL_REQUEST_PROTOCOL] = "http";
    struct zt_request_labels b = a;
    for (int i = 0; i < ZT_RL_COUNT; i++)
        if (!b.v[i])
            b.v[i] = "";
    zt_metrics_request_observe(m, 0, &a, 1000, 1, 1);
    zt_metrics_request_observe(m, 0, &b, 1000, 1, 1);
    char *text = render(m);
    long long n = sample(text, "istio_requests_total" MISSING_LABELS);
    int series = count_substr(text, "\nistio_requests_total{");
    free(text);
    zt_metrics_free(m);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(series, 1);
}

static void test_escaping(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "t");
    struct zt_request_labels l = full_labels();
    l.v[ZT_RL_SOURCE_WORKLOAD] = "a\"b\\c\nd";
    l.v[ZT_RL_DESTINATION_SERVICE] = "caf\xc3\xa9 \xff\xc3"; /* é, a bad byte, a cut é */
    zt_metrics_request_observe(m, 0, &l, 1, 1, 1);
    char *text = render(m);
    CHECK(count_substr(text, "source_workload=\"a\\\"b\\\\c\\nd\",") == 1 + 3 * 22);
    CHECK(strstr(text, "destination_service=\"caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\",") != NULL);
    for (const char *p = text; *p; p = strchr(p, '\n') + 1)
        CHECK(*p == '#' || (*p >= 'a' && *p <= 'z'));
    free(text);
    zt_metrics_free(m);
}

/* Bucket `le` of histogram `name` for the full label set; -1 if absent. */
static long long bucket(const char *text, const char *name, const char *le)
{
    char series[2048];
    const char *lb = FULL_LABELS;
    snprintf(series, sizeof(series), "%s_bucket%.*s,le=\"%s\"}", name, (int)strlen(lb) - 1, lb, le);
    return sample(text, series);
}

/* A value equal to a bound counts in that bound's bucket, one just past it
 * in the next; past the last bound only +Inf counts it. */
static void test_bucket_boundaries(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "t");
    struct zt_request_labels l = full_labels();
    struct zt_request_series *s = zt_metrics_request_series(m, 0, &l);
    /* duration_us, request bytes, response bytes */
    zt_request_series_observe(s, 500, 0, 3600000);       /* 0.5 ms; 0 B; last bound */
    zt_request_series_observe(s, 501, 1, 3600001);       /* just past 0.5; 1 B; past all */
    zt_request_series_observe(s, 1000, 2, 5);            /* 1 ms; 2 B in le=5; 5 B */
    zt_request_series_observe(s, 3600000000ull, 10, 6);  /* the last bound (an hour) */
    zt_request_series_observe(s, 3600000001ull, 11, 10); /* past every bound */
    zt_request_series_observe(s, UINT64_MAX / 4, UINT64_MAX / 4, 1000000); /* le=1800000 */
    zt_metrics_request_series_release(m, 0, s);
    char *text = render(m);
    const char *d = "istio_request_duration_milliseconds";
    const char *q = "istio_request_bytes";
    const char *r = "istio_response_bytes";
    long long got[] = {
        bucket(text, d, "0.5"),     bucket(text, d, "1"),       bucket(text, d, "5"),
        bucket(text, d, "1800000"), bucket(text, d, "3600000"), bucket(text, d, "+Inf"),
        bucket(text, q, "0.5"),     bucket(text, q, "1"),       bucket(text, q, "5"),
        bucket(text, q, "10"),      bucket(text, q, "25"),      bucket(text, q, "3600000"),
        bucket(text, q, "+Inf"),    bucket(text, r, "1"),       bucket(text, r, "5"),
        bucket(text, r, "10"),      bucket(text, r, "600000"),  bucket(text, r, "1800000"),
        bucket(text, r, "3600000"), bucket(text, r, "+Inf"),
    };
    long long want[] = {
        1, 3, 3, 3, 4, 6,    /* duration */
        1, 2, 3, 4, 5, 5, 6, /* request bytes */
        0, 1, 3, 3, 4, 5, 6, /* response bytes */
    };
    char sum[64];
    sample_str(text, "istio_response_bytes_sum" FULL_LABELS, sum, sizeof(sum));
    long long count = sample(text, "istio_request_duration_milliseconds_count" FULL_LABELS);
    free(text);
    zt_metrics_free(m);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (got[i] != want[i])
            fprintf(stderr, "  value %zu\n", i);
        CHECK_EQ_INT(got[i], want[i]);
    }
    CHECK_EQ_STR(sum, "8200022"); /* 3600000 + 3600001 + 5 + 6 + 10 + 1000000 */
    CHECK_EQ_INT(count, 6);
}

/* The same label set counted by two writers is one series, summed; the
 * duration's sum in milliseconds keeps the microseconds. */
static void test_sums_across_shards(void)
{
    struct zt_metrics *m = zt_metrics_new(2, "t");
    struct zt_request_labels l = full_labels();
    struct zt_request_labels other = full_labels();
    other.v[ZT_RL_RESPONSE_CODE] = "503";
    struct zt_request_series *s0 = zt_metrics_request_series(m, 0, &l);
    struct zt_request_series *s1 = zt_metrics_request_series(m, 1, &l);
    for (int i = 0; i < 3; i++)
        zt_request_series_observe(s0, 1500, 100, 1000);
    for (int i = 0; i < 4; i++)
        zt_request_series_observe(s1, 20001, 200, 2000);
    zt_metrics_request_observe(m, 1, &other, 1, 1, 1);
    zt_metrics_request_series_release(m, 0, s0);
    zt_metrics_request_series_release(m, 1, s1);
    char *text = render(m);
    long long total = sample(text, "istio_requests_total" FULL_LABELS);
    int series = count_substr(text, "\nistio_requests_total{");
    char dsum[64], qsum[64];
    sample_str(text, "istio_request_duration_milliseconds_sum" FULL_LABELS, dsum, sizeof(dsum));
    sample_str(text, "istio_request_bytes_sum" FULL_LABELS, qsum, sizeof(qsum));
    long long rcount = sample(text, "istio_response_bytes_count" FULL_LABELS);
    long long le5 = bucket(text, "istio_request_duration_milliseconds", "5");
    long long le25 = bucket(text, "istio_request_duration_milliseconds", "25");
    long long gauge = sample(text, "ztunnel_metrics_request_series");
    free(text);
    zt_metrics_free(m);
    CHECK_EQ_INT(total, 7);
    CHECK_EQ_INT(series, 2);
    CHECK_EQ_STR(dsum, "84.504"); /* 3 * 1.5 + 4 * 20.001 */
    CHECK_EQ_STR(qsum, "1100");
    CHECK_EQ_INT(rcount, 7);
    CHECK_EQ_INT(le5, 3);
    CHECK_EQ_INT(le25, 7);
    CHECK_EQ_INT(gauge, 3); /* two in shard 0 and 1, plus the 503 */
}

/* 10 000 requests in one shard of eight, each with its own workload and
 * response code, released in turn: the series kept and the exposition stay
 * bounded by the shard's share of the cap (1/8), newest kept, the
 * evictions counted. */
static void test_cap_evicts_least_recently_released(void)
{
    struct zt_metrics *m = zt_metrics_new(8, "t");
    const int share = ZT_METRICS_REQUEST_SERIES_MAX / 8;
    char wl[32], code[8];
    size_t size_at_3000 = 0;
    for (int i = 0; i < 10000; i++) {
        struct zt_request_labels l = full_labels();
        snprintf(wl, sizeof(wl), "wl-%d", i);
        snprintf(code, sizeof(code), "%d", 100 + i % 900);
        l.v[ZT_RL_SOURCE_WORKLOAD] = wl;
        l.v[ZT_RL_RESPONSE_CODE] = code;
        zt_metrics_request_observe(m, 0, &l, 10, 10, 10);
        if (i == 2999) {
            char *t = render(m);
            size_at_3000 = strlen(t);
            free(t);
        }
    }
    /* The other shard has its own share. */
    struct zt_request_labels l1 = full_labels();
    zt_metrics_request_observe(m, 1, &l1, 10, 10, 10);
    char *text = render(m);
    size_t size = strlen(text);
    int kept = count_substr(text, "\nistio_requests_total{");
    long long gauge = sample(text, "ztunnel_metrics_request_series");
    long long evicted = sample(text, "ztunnel_metrics_request_series_evicted_total");
    long long dropped = sample(text, "ztunnel_metrics_request_labels_dropped_total");
    bool has_newest = strstr(text, "source_workload=\"wl-9999\"") != NULL;
    char oldest[48], evicted_wl[48];
    snprintf(oldest, sizeof(oldest), "source_workload=\"wl-%d\"", 10000 - share);
    snprintf(evicted_wl, sizeof(evicted_wl), "source_workload=\"wl-%d\"", 10000 - share - 1);
    bool has_oldest = strstr(text, oldest) != NULL;
    bool has_evicted = strstr(text, evicted_wl) != NULL;
    long long in_shard1 = sample(text, "istio_requests_total" FULL_LABELS);
    free(text);
    zt_metrics_free(m);
    CHECK_EQ_INT(kept, share + 1);
    CHECK_EQ_INT(gauge, share + 1);
    CHECK_EQ_INT(evicted, 10000 - share);
    CHECK_EQ_INT(dropped, 0);
    CHECK(has_newest && has_oldest && !has_evicted);
    CHECK_EQ_INT(in_shard1, 1);
    /* 3000 requests had already filled the share: only longer names since. */
    CHECK(size < size_at_3000 + size_at_3000 / 20);
}

/* Held series are never evicted: with every series of a shard held (its
 * share of the cap, 1/16 here), a new label set is counted in the overflow
 * series (all "unknown" but the reporter) and counted as dropped; once one
 * is released, a new label set takes its place. A released series found
 * again is no longer idle. */
static void test_cap_held_series_and_overflow(void)
{
    enum { N = ZT_METRICS_REQUEST_SERIES_MAX / 16 };
    struct zt_metrics *m = zt_metrics_new(16, "t");
    static struct zt_request_series *held[N];
    char wl[32];
    for (int i = 0; i < N; i++) {
        struct zt_request_labels l = full_labels();
        snprintf(wl, sizeof(wl), "h-%d", i);
        l.v[ZT_RL_SOURCE_WORKLOAD] = wl;
        held[i] = zt_metrics_request_series(m, 0, &l);
        zt_request_series_observe(held[i], 1, 1, 1);
    }
    struct zt_request_labels extra = full_labels();
    extra.v[ZT_RL_SOURCE_WORKLOAD] = "extra";
    zt_metrics_request_observe(m, 0, &extra, 2000, 3, 4);
    zt_metrics_request_observe(m, 0, &extra, 2000, 3, 4);

    char *text = render(m);
    static const char overflow[] =
        "istio_requests_total{reporter=\"waypoint\",source_workload=\"unknown\","
        "source_canonical_service=\"unknown\",source_canonical_revision=\"unknown\","
        "source_workload_namespace=\"unknown\",source_principal=\"unknown\","
        "source_app=\"unknown\",source_version=\"unknown\",source_cluster=\"unknown\","
        "destination_workload=\"unknown\",destination_workload_namespace=\"unknown\","
        "destination_principal=\"unknown\",destination_app=\"unknown\","
        "destination_version=\"unknown\",destination_service=\"unknown\","
        "destination_canonical_service=\"unknown\",destination_canonical_revision=\"unknown\","
        "destination_service_name=\"unknown\",destination_service_namespace=\"unknown\","
        "destination_cluster=\"unknown\",request_protocol=\"unknown\",response_code=\"unknown\","
        "grpc_response_status=\"unknown\",response_flags=\"unknown\","
        "connection_security_policy=\"unknown\"}";
    long long n_overflow = sample(text, overflow);
    long long dropped = sample(text, "ztunnel_metrics_request_labels_dropped_total");
    long long gauge = sample(text, "ztunnel_metrics_request_series");
    bool has_extra = strstr(text, "source_workload=\"extra\"") != NULL;
    free(text);
    CHECK_EQ_INT(n_overflow, 2);
    CHECK_EQ_INT(dropped, 2);
    CHECK_EQ_INT(gauge, N);
    CHECK(!has_extra);

    /* Release h-0 and h-1, then find h-0 again: it is held again, so the
     * new label set evicts h-1, the only idle one. */
    zt_metrics_request_series_release(m, 0, held[0]);
    zt_metrics_request_series_release(m, 0, held[1]);
    struct zt_request_labels l0 = full_labels();
    l0.v[ZT_RL_SOURCE_WORKLOAD] = "h-0";
    struct zt_request_series *again = zt_metrics_request_series(m, 0, &l0);
    CHECK(again == held[0]);
    zt_metrics_request_observe(m, 0, &extra, 2000, 3, 4);
    text = render(m);
    has_extra = strstr(text, "source_workload=\"extra\"") != NULL;
    bool has_h0 = strstr(text, "source_workload=\"h-0\"") != NULL;
    bool has_h1 = strstr(text, "source_workload=\"h-1\"") != NULL;
    long long evicted = sample(text, "ztunnel_metrics_request_series_evicted_total");
    dropped = sample(text, "ztunnel_metrics_request_labels_dropped_total");
    free(text);
    for (int i = 2; i < N; i++)
        zt_metrics_request_series_release(m, 0, held[i]);
    zt_metrics_request_series_release(m, 0, again);
    zt_metrics_request_series_release(m, 0, NULL);
    zt_metrics_free(m);
    CHECK(has_extra && has_h0 && !has_h1);
    CHECK_EQ_INT(evicted, 1);
    CHECK_EQ_INT(dropped, 2);
}

/* A shard remembers its last label sets by value (request_metrics.c's
 * cache): a set that differs from a remembered one only in a value's
 * last bytes, or where one value is a prefix of another, is a series of
 * its own; NULL and "" are the same value, as rendered; a remembered
 * series that the cap evicts is counted afresh when its labels come
 * back (the cache never hands out a freed series: ASan). */
/* The istio_requests_total sample of the series whose labels start with
 * the reporter then source_workload=wl; -1 when there is none. */
static long long requests_of(const char *text, const char *wl)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix),
             "istio_requests_total{reporter=\"waypoint\",source_workload=\"%s\",", wl);
    const char *line = strstr(text, prefix);
    const char *v = line ? strstr(line, "} ") : NULL;
    return v ? strtoll(v + 2, NULL, 10) : -1;
}

static void test_recent_label_sets(void)
{
    struct zt_metrics *m = zt_metrics_new(16, "t");
    struct zt_request_labels a = full_labels(), ab = full_labels(), a_empty = full_labels();
    a.v[ZT_RL_SOURCE_WORKLOAD] = "a";
    a.v[ZT_RL_SOURCE_APP] = NULL;
    ab.v[ZT_RL_SOURCE_WORKLOAD] = "ab";
    ab.v[ZT_RL_SOURCE_APP] = NULL;
    a_empty.v[ZT_RL_SOURCE_WORKLOAD] = "a";
    a_empty.v[ZT_RL_SOURCE_APP] = "";
    for (int i = 0; i < 3; i++) {
        zt_metrics_request_observe(m, 0, &a, 10, 10, 10);
        zt_metrics_request_observe(m, 0, &ab, 10, 10, 10);
        zt_metrics_request_observe(m, 0, &a_empty, 10, 10, 10);
    }
    char *text = render(m);
    long long gauge = sample(text, "ztunnel_metrics_request_series");
    long long n_a = requests_of(text, "a"), n_ab = requests_of(text, "ab");
    free(text);
    CHECK_EQ_INT(gauge, 2);
    CHECK_EQ_INT(n_a, 6);
    CHECK_EQ_INT(n_ab, 3);

    /* The shard's share is 64: 200 other label sets evict "a" and "ab". */
    char wl[32];
    for (int i = 0; i < 200; i++) {
        struct zt_request_labels l = full_labels();
        snprintf(wl, sizeof(wl), "other-%d", i);
        l.v[ZT_RL_SOURCE_WORKLOAD] = wl;
        zt_metrics_request_observe(m, 0, &l, 10, 10, 10);
    }
    zt_metrics_request_observe(m, 0, &a, 10, 10, 10);
    text = render(m);
    n_a = requests_of(text, "a");
    n_ab = requests_of(text, "ab");
    long long evicted = sample(text, "ztunnel_metrics_request_series_evicted_total");
    free(text);
    zt_metrics_free(m);
    CHECK_EQ_INT(n_a, 1);
    CHECK_EQ_INT(n_ab, -1);
    CHECK_EQ_INT(evicted, 200 + 2 - ZT_METRICS_REQUEST_SERIES_MAX / 16 + 1);
}

/* Two writers count into the same label set (one holding its series, one
 * with the one-call form) while a reader scrapes: every scrape's buckets
 * are cumulative and end at _count, and the final sums are exact. */
enum { ITERS = 20000 };
static _Atomic int writers_done;

struct writer_arg {
    struct zt_metrics *m;
    unsigned shard;
};

static void *writer_main(void *arg)
{
    struct writer_arg *w = arg;
    struct zt_request_labels l = full_labels();
    struct zt_request_series *s = zt_metrics_request_series(w->m, w->shard, &l);
    for (int i = 0; i < ITERS; i++) {
        if (w->shard == 0)
            zt_request_series_observe(s, (uint64_t)(i % 7) * 1000, 3, 5);
        else
            zt_metrics_request_observe(w->m, w->shard, &l, (uint64_t)(i % 7) * 1000, 3, 5);
    }
    zt_metrics_request_series_release(w->m, w->shard, s);
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

/* Checks one scrape's duration histogram; returns false if inconsistent. */
static bool scrape_consistent(const char *text)
{
    const char *prefix = "istio_request_duration_milliseconds_bucket{";
    long long last = 0;
    int n = 0;
    for (const char *p = strstr(text, prefix); p; p = strstr(p + 1, prefix)) {
        const char *sp = strchr(p, ' ');
        long long v = strtoll(sp + 1, NULL, 10);
        if (v < last)
            return false;
        last = v;
        n++;
    }
    if (n == 0)
        return true; /* before the first request */
    return n == 20 && sample(text, "istio_request_duration_milliseconds_count" FULL_LABELS) == last;
}

static void *reader_main(void *arg)
{
    struct zt_metrics *m = arg;
    long bad = 0;
    while (atomic_load(&writers_done) < 2) {
        char *text = render(m);
        if (!scrape_consistent(text))
            bad++;
        free(text);
    }
    return (void *)bad;
}

static void test_concurrent_writers_and_scrapes(void)
{
    struct zt_metrics *m = zt_metrics_new(2, "t");
    pthread_t w[2], r;
    struct writer_arg args[2] = {{m, 0}, {m, 1}};
    atomic_store(&writers_done, 0);
    pthread_create(&r, NULL, reader_main, m);
    for (int i = 0; i < 2; i++)
        pthread_create(&w[i], NULL, writer_main, &args[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    void *bad;
    pthread_join(r, &bad);
    char *text = render(m);
    long long total = sample(text, "istio_requests_total" FULL_LABELS);
    long long count = sample(text, "istio_response_bytes_count" FULL_LABELS);
    long long rsum = sample(text, "istio_response_bytes_sum" FULL_LABELS);
    long long le1 = bucket(text, "istio_request_duration_milliseconds", "1");
    bool ok = scrape_consistent(text);
    free(text);
    zt_metrics_free(m);
    CHECK_EQ_INT((long)bad, 0);
    CHECK(ok);
    CHECK_EQ_INT(total, 2 * ITERS);
    CHECK_EQ_INT(count, 2 * ITERS);
    CHECK_EQ_INT(rsum, 5LL * 2 * ITERS);
    /* i % 7 in {0, 1}: 0 and 1000 us are within le=1 */
    CHECK_EQ_INT(le1, 2 * (2 * (ITERS / 7) + (ITERS % 7 > 1 ? 2 : ITERS % 7)));
}

/* Feeds `text` to `promtool check metrics`; returns its exit status (-1 if
 * it could not run) and its combined output in `out`. */
static int run_promtool(const char *text, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/zt-reqmetrics-%ld", (long)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
    FILE *f = w == (ssize_t)len ? popen(cmd, "r") : NULL;
    if (!f) {
        unlink(path);
        return -1;
    }
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    int st = pclose(f);
    unlink(path);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Drops every line mentioning `what`. */
static void drop_lines(char *text, const char *what)
{
    char *w = text;
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
        char save = p[n];
        p[n] = 0;
        bool keep = strstr(p, what) == NULL;
        p[n] = save;
        if (keep) {
            memmove(w, p, n);
            w += n;
        }
        p += n;
    }
    *w = 0;
}

/* promtool parses an exposition with TCP and request series (escaped
 * values, an empty grpc_response_status) as a Prometheus server would and
 * lints it. The two workload_manager_*_proxy_count gauges and
 * istio_request_duration_milliseconds keep Istio's names, which its linter
 * objects to (see test_metrics.c): exactly that finding is expected, and
 * none without them. */
static void test_promtool_accepts_tcp_and_requests(void)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        SKIP("promtool not installed (Debian: prometheus)");
    }
    struct zt_metrics *m = zt_metrics_new(2, "1.24.0");
    struct zt_traffic_labels t = {.has_locality = false};
    t.v[ZT_TL_REPORTER] = "source";
    t.v[ZT_TL_REQUEST_PROTOCOL] = "tcp";
    struct zt_tcp_series *ts = zt_metrics_tcp_series(m, 0, &t);
    zt_tcp_series_opened(ts);
    zt_tcp_series_add_bytes(ts, 10, 20);
    zt_metrics_tcp_series_release(m, 0, ts);

    struct zt_request_labels a = full_labels();
    struct zt_request_labels b = full_labels();
    b.v[ZT_RL_SOURCE_WORKLOAD] = "we\"ird\\name\nx";
    b.v[ZT_RL_REQUEST_PROTOCOL] = "http";
    b.v[ZT_RL_GRPC_RESPONSE_STATUS] = NULL;
    b.v[ZT_RL_RESPONSE_CODE] = "404";
    zt_metrics_request_observe(m, 0, &a, 1234, 500, 600);
    zt_metrics_request_observe(m, 1, &a, 99999999, 5000000, 0);
    zt_metrics_request_observe(m, 1, &b, 0, 0, 0);
    char *text = render(m);
    zt_metrics_free(m);

    drop_lines(text, "_proxy_count");
    CHECK(strstr(text, "istio_tcp_connections_opened_total{") != NULL);
    CHECK(strstr(text, "istio_response_bytes_bucket{") != NULL);
    CHECK(strstr(text, "grpc_response_status=\"\"") != NULL);
    static char out[8192];
    int st = run_promtool(text, out, sizeof(out));
    /* 3 is promtool's "lint problems" (1 would be a parse error): the
     * duration histogram keeps Istio's name, in milliseconds. */
    const char *expected = "istio_request_duration_milliseconds use base unit \"seconds\" instead "
                           "of \"milliseconds\"\n";
    if (st != 3 || strcmp(out, expected) != 0)
        fprintf(stderr, "  promtool exit %d:\n%s", st, out);
    CHECK_EQ_INT(st, 3);
    CHECK_EQ_STR(out, expected);
    /* Without it, nothing to object to. */
    drop_lines(text, "istio_request_duration_milliseconds");
    CHECK(strstr(text, "istio_request_bytes_bucket{") != NULL);
    st = run_promtool(text, out, sizeof(out));
    if (st != 0)
        fprintf(stderr, "  promtool exit %d:\n%s", st, out);
    free(text);
    CHECK_EQ_INT(st, 0);
}

int main(void)
{
    RUN(test_label_names_in_istio_order);
    RUN(test_absent_until_counted);
    RUN(test_one_request_exact);
    RUN(test_missing_values);
    RUN(test_escaping);
    RUN(test_bucket_boundaries);
    RUN(test_sums_across_shards);
    RUN(test_cap_evicts_least_recently_released);
    RUN(test_cap_held_series_and_overflow);
    RUN(test_recent_label_sets);
    RUN(test_concurrent_writers_and_scrapes);
    RUN(test_promtool_accepts_tcp_and_requests);
    return TEST_REPORT();
}
