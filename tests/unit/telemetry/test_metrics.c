/* Prometheus metrics (wire facts 7.1): exact exposition of a series, label
 * order and "unknown", locality labels, escaping, merging across shards,
 * process and workload-manager values, concurrent counting during scrapes,
 * and (when installed) promtool's verdict on a rendered exposition. */
#include "test.h"

#include "base/buf.h"
#include "telemetry/metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* The whole exposition as a NUL-terminated, malloc'd string. */
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

/* Value of the sample whose line starts with `series` ("name{labels}" or
 * "name") followed by a space; -1 when there is no such line. */
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

static int count_substr(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Lines that start with `prefix` and end with `suffix`. */
static int count_lines(const char *text, const char *prefix, const char *suffix)
{
    int n = 0;
    size_t pl = strlen(prefix), sl = strlen(suffix);
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len >= pl + sl && strncmp(p, prefix, pl) == 0 && strncmp(p + len - sl, suffix, sl) == 0)
            n++;
        if (!nl)
            break;
        p = nl + 1;
    }
    return n;
}

/* An outbound label set as the proxy fills it; some values left empty. */
static struct zt_traffic_labels outbound_labels(void)
{
    struct zt_traffic_labels l = {.has_locality = false};
    l.v[ZT_TL_REPORTER] = "source";
    l.v[ZT_TL_SOURCE_WORKLOAD] = "client";
    l.v[ZT_TL_SOURCE_CANONICAL_SERVICE] = "client";
    l.v[ZT_TL_SOURCE_CANONICAL_REVISION] = "v1";
    l.v[ZT_TL_SOURCE_WORKLOAD_NAMESPACE] = "ns1";
    l.v[ZT_TL_SOURCE_PRINCIPAL] = "spiffe://cluster.local/ns/ns1/sa/client";
    l.v[ZT_TL_SOURCE_APP] = "client";
    l.v[ZT_TL_SOURCE_VERSION] = "v1";
    l.v[ZT_TL_SOURCE_CLUSTER] = "Kubernetes";
    l.v[ZT_TL_DESTINATION_SERVICE] = "echo.ns2.svc.cluster.local";
    l.v[ZT_TL_DESTINATION_SERVICE_NAMESPACE] = "ns2";
    l.v[ZT_TL_DESTINATION_SERVICE_NAME] = "echo";
    l.v[ZT_TL_DESTINATION_WORKLOAD] = "echo";
    l.v[ZT_TL_DESTINATION_CANONICAL_SERVICE] = "echo";
    l.v[ZT_TL_DESTINATION_CANONICAL_REVISION] = ""; /* -> unknown */
    l.v[ZT_TL_DESTINATION_WORKLOAD_NAMESPACE] = "ns2";
    l.v[ZT_TL_DESTINATION_PRINCIPAL] = "spiffe://cluster.local/ns/ns2/sa/echo";
    l.v[ZT_TL_DESTINATION_APP] = "echo";
    l.v[ZT_TL_DESTINATION_VERSION] = NULL; /* -> unknown */
    l.v[ZT_TL_DESTINATION_CLUSTER] = "Kubernetes";
    l.v[ZT_TL_REQUEST_PROTOCOL] = "tcp";
    l.v[ZT_TL_RESPONSE_FLAGS] = "-";
    l.v[ZT_TL_CONNECTION_SECURITY_POLICY] = "mutual_tls";
    l.v[ZT_TL_SOURCE_REGION] = "region-a"; /* ignored: has_locality is false */
    return l;
}

#define OUTBOUND_LABELS                                                                            \
    "{reporter=\"source\",source_workload=\"client\",source_canonical_service=\"client\","         \
    "source_canonical_revision=\"v1\",source_workload_namespace=\"ns1\","                          \
    "source_principal=\"spiffe://cluster.local/ns/ns1/sa/client\",source_app=\"client\","          \
    "source_version=\"v1\",source_cluster=\"Kubernetes\","                                         \
    "destination_service=\"echo.ns2.svc.cluster.local\",destination_service_namespace=\"ns2\","    \
    "destination_service_name=\"echo\",destination_workload=\"echo\","                             \
    "destination_canonical_service=\"echo\",destination_canonical_revision=\"unknown\","           \
    "destination_workload_namespace=\"ns2\","                                                      \
    "destination_principal=\"spiffe://cluster.local/ns/ns2/sa/echo\",destination_app=\"echo\","    \
    "destination_version=\"unknown\",destination_cluster=\"Kubernetes\","                          \
    "request_protocol=\"tcp\",response_flags=\"-\",connection_security_policy=\"mutual_tls\"}"

static void test_label_names(void)
{
    CHECK_EQ_STR(zt_tl_name(ZT_TL_REPORTER), "reporter");
    CHECK_EQ_STR(zt_tl_name(ZT_TL_DESTINATION_SERVICE_NAMESPACE), "destination_service_namespace");
    CHECK_EQ_STR(zt_tl_name(ZT_TL_CONNECTION_SECURITY_POLICY), "connection_security_policy");
    CHECK_EQ_STR(zt_tl_name(ZT_TL_DESTINATION_ZONE), "destination_zone");
    for (int i = 0; i < ZT_TL_COUNT; i++)
        CHECK(zt_tl_name((enum zt_tl)i) != NULL && *zt_tl_name((enum zt_tl)i));
}

/* The traffic part of the exposition for one series, byte for byte. */
static void test_one_series_exact(void)
{
    struct zt_metrics *m = zt_metrics_new(2, "1.24.0");
    struct zt_traffic_labels l = outbound_labels();
    struct zt_tcp_series *s = zt_metrics_tcp_series(m, 1, &l);
    zt_tcp_series_opened(s);
    zt_tcp_series_opened(s);
    zt_tcp_series_closed(s);
    zt_tcp_series_add_bytes(s, 100, 2000);
    zt_tcp_series_add_bytes(s, 5, 0);

    char *text = render(m);
    const char *want =
        "# HELP istio_tcp_connections_opened_total TCP connections opened.\n"
        "# TYPE istio_tcp_connections_opened_total counter\n"
        "istio_tcp_connections_opened_total" OUTBOUND_LABELS " 2\n"
        "# HELP istio_tcp_connections_closed_total TCP connections closed.\n"
        "# TYPE istio_tcp_connections_closed_total counter\n"
        "istio_tcp_connections_closed_total" OUTBOUND_LABELS " 1\n"
        "# HELP istio_tcp_connections_failed_total TCP connections that failed (denied, "
        "unreachable, TLS or identity errors).\n"
        "# TYPE istio_tcp_connections_failed_total counter\n"
        "istio_tcp_connections_failed_total" OUTBOUND_LABELS " 0\n"
        "# HELP istio_tcp_received_bytes_total Bytes sent from client to server over TCP "
        "connections.\n"
        "# TYPE istio_tcp_received_bytes_total counter\n"
        "istio_tcp_received_bytes_total" OUTBOUND_LABELS " 105\n"
        "# HELP istio_tcp_sent_bytes_total Bytes sent from server to client over TCP "
        "connections.\n"
        "# TYPE istio_tcp_sent_bytes_total counter\n"
        "istio_tcp_sent_bytes_total" OUTBOUND_LABELS " 2000\n"
        "# HELP istio_build ";
    size_t n = strlen(want);
    int same = strncmp(text, want, n) == 0;
    if (!same)
        fprintf(stderr, "got:\n%s\n", text);
    free(text);
    zt_metrics_free(m);
    CHECK(same);
}

static void test_fixed_families(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "1.24.0");
    char *text = render(m);
    /* No traffic yet: no istio_tcp_* counter families at all. */
    CHECK(strstr(text, "istio_tcp_connections") == NULL);
    CHECK(strstr(text, "_bytes_total") == NULL);
    CHECK(strstr(text, "# TYPE istio_build gauge\nistio_build{component=\"ztunnel\","
                       "tag=\"1.24.0\"} 1\n") != NULL);
    CHECK_EQ_INT(sample(text, "workload_manager_active_proxy_count"), 0);
    CHECK_EQ_INT(sample(text, "workload_manager_pending_proxy_count"), 0);
    CHECK_EQ_INT(sample(text, "workload_manager_proxies_started_total"), 0);
    CHECK_EQ_INT(sample(text, "workload_manager_proxies_stopped_total"), 0);
    CHECK_EQ_INT(sample(text, "istio_tcp_sockets_open{reporter=\"source\"}"), 0);
    CHECK_EQ_INT(sample(text, "istio_tcp_sockets_open{reporter=\"destination\"}"), 0);
    CHECK(strstr(text, "# TYPE workload_manager_proxies_started_total counter\n") != NULL);
    CHECK(strstr(text, "# TYPE workload_manager_active_proxy_count gauge\n") != NULL);
    CHECK(strstr(text, "# TYPE istio_tcp_sockets_open gauge\n") != NULL);
    CHECK(strstr(text, "# TYPE process_open_fds gauge\n") != NULL);
    CHECK(strstr(text, "# TYPE process_max_fds gauge\n") != NULL);
    free(text);
    zt_metrics_free(m);
}

static void test_gauges_and_counters(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "");
    zt_metrics_gauge_set(m, ZT_G_WORKLOAD_MANAGER_ACTIVE_PROXIES, 7);
    zt_metrics_gauge_add(m, ZT_G_WORKLOAD_MANAGER_ACTIVE_PROXIES, -2);
    zt_metrics_gauge_add(m, ZT_G_WORKLOAD_MANAGER_PENDING_PROXIES, 3);
    zt_metrics_gauge_add(m, ZT_G_TCP_SOCKETS_OPEN_SOURCE, 4);
    zt_metrics_gauge_add(m, ZT_G_TCP_SOCKETS_OPEN_SOURCE, -1);
    zt_metrics_gauge_set(m, ZT_G_TCP_SOCKETS_OPEN_DESTINATION, 9);
    for (int i = 0; i < 6; i++)
        zt_metrics_counter_inc(m, ZT_C_WORKLOAD_MANAGER_PROXIES_STARTED);
    zt_metrics_counter_inc(m, ZT_C_WORKLOAD_MANAGER_PROXIES_STOPPED);

    char *text = render(m);
    CHECK(strstr(text, "istio_build{component=\"ztunnel\",tag=\"unknown\"} 1\n") != NULL);
    CHECK_EQ_INT(sample(text, "workload_manager_active_proxy_count"), 5);
    CHECK_EQ_INT(sample(text, "workload_manager_pending_proxy_count"), 3);
    CHECK_EQ_INT(sample(text, "workload_manager_proxies_started_total"), 6);
    CHECK_EQ_INT(sample(text, "workload_manager_proxies_stopped_total"), 1);
    CHECK_EQ_INT(sample(text, "istio_tcp_sockets_open{reporter=\"source\"}"), 3);
    CHECK_EQ_INT(sample(text, "istio_tcp_sockets_open{reporter=\"destination\"}"), 9);

    /* process_open_fds follows the descriptors actually open. */
    long long before = sample(text, "process_open_fds");
    free(text);
    int p[2];
    CHECK(pipe(p) == 0);
    text = render(m);
    long long after = sample(text, "process_open_fds");
    close(p[0]);
    close(p[1]);
    CHECK(before > 2);
    CHECK_EQ_INT(after, before + 2);

    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECK_EQ_INT(sample(text, "process_max_fds"), (long long)rl.rlim_cur);
    free(text);
    zt_metrics_free(m);
}

static void test_merge_across_shards(void)
{
    struct zt_metrics *m = zt_metrics_new(3, "t");
    struct zt_traffic_labels a = outbound_labels();
    struct zt_traffic_labels b = outbound_labels();
    b.v[ZT_TL_RESPONSE_FLAGS] = "DENY";

    struct zt_tcp_series *a0 = zt_metrics_tcp_series(m, 0, &a);
    struct zt_tcp_series *a2 = zt_metrics_tcp_series(m, 2, &a);
    struct zt_tcp_series *b1 = zt_metrics_tcp_series(m, 1, &b);
    CHECK(a0 != a2);
    /* The same label set in the same shard is the same series. */
    CHECK(zt_metrics_tcp_series(m, 0, &a) == a0);
    zt_tcp_series_opened(a0);
    zt_tcp_series_opened(a2);
    zt_tcp_series_opened(a2);
    zt_tcp_series_add_bytes(a0, 10, 1);
    zt_tcp_series_add_bytes(a2, 20, 2);
    zt_tcp_series_opened(b1);
    zt_tcp_series_failed(b1);

    char *text = render(m);
    const char *deny_labels = strstr(text, "response_flags=\"DENY\"");
    CHECK(deny_labels != NULL);
    CHECK_EQ_INT(sample(text, "istio_tcp_connections_opened_total" OUTBOUND_LABELS), 3);
    CHECK_EQ_INT(sample(text, "istio_tcp_received_bytes_total" OUTBOUND_LABELS), 30);
    CHECK_EQ_INT(sample(text, "istio_tcp_sent_bytes_total" OUTBOUND_LABELS), 3);
    CHECK_EQ_INT(sample(text, "istio_tcp_connections_failed_total" OUTBOUND_LABELS), 0);
    /* Two label sets: two lines per family, one HELP/TYPE per family. */
    CHECK_EQ_INT(count_substr(text, "\nistio_tcp_connections_opened_total{"), 2);
    CHECK_EQ_INT(count_substr(text, "\nistio_tcp_sent_bytes_total{"), 2);
    CHECK_EQ_INT(count_substr(text, "# TYPE istio_tcp_connections_opened_total counter"), 1);
    CHECK_EQ_INT(count_substr(text, "# HELP istio_tcp_connections_opened_total "), 1);
    CHECK_EQ_INT(count_substr(text, "# TYPE istio_tcp_sent_bytes_total counter"), 1);
    CHECK_EQ_INT(count_substr(text, "istio_tcp_connections_failed_total{"), 2);
    /* Rows are sorted by label text: "-" (0x2d) sorts before "DENY". */
    const char *fam = strstr(text, "# TYPE istio_tcp_connections_failed_total");
    CHECK(fam != NULL);
    const char *dash = strstr(fam, "response_flags=\"-\"");
    const char *deny = strstr(fam, "response_flags=\"DENY\"");
    CHECK(dash != NULL && deny != NULL && dash < deny);
    CHECK(deny < strstr(fam, "# HELP istio_tcp_received_bytes_total"));
    CHECK(strstr(fam, "response_flags=\"DENY\",connection_security_policy=\"mutual_tls\"} 1\n"));
    free(text);
    zt_metrics_free(m);
}

/* Labels are copied: the caller's strings may change after the call. */
static void test_labels_copied_and_empty_equals_null(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "t");
    char name[16] = "client";
    struct zt_traffic_labels l = outbound_labels();
    l.v[ZT_TL_SOURCE_WORKLOAD] = name;
    struct zt_tcp_series *s = zt_metrics_tcp_series(m, 0, &l);
    zt_tcp_series_opened(s);
    strcpy(name, "other");
    char *text = render(m);
    CHECK_EQ_INT(sample(text, "istio_tcp_connections_opened_total" OUTBOUND_LABELS), 1);
    free(text);

    /* NULL, "" and "unknown" all render the same and so are one series. */
    struct zt_traffic_labels e = outbound_labels();
    e.v[ZT_TL_DESTINATION_VERSION] = "";
    e.v[ZT_TL_DESTINATION_CANONICAL_REVISION] = NULL;
    strcpy(name, "client");
    CHECK(zt_metrics_tcp_series(m, 0, &e) == s);
    e.v[ZT_TL_DESTINATION_VERSION] = "unknown";
    CHECK(zt_metrics_tcp_series(m, 0, &e) == s);
    zt_metrics_free(m);
}

static void test_locality_labels(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "t");
    struct zt_traffic_labels l = outbound_labels();
    zt_tcp_series_opened(zt_metrics_tcp_series(m, 0, &l));
    char *text = render(m);
    CHECK(strstr(text, "region") == NULL);
    CHECK(strstr(text, "zone") == NULL);
    free(text);

    l.has_locality = true;
    l.v[ZT_TL_SOURCE_ZONE] = "zone-1";
    l.v[ZT_TL_DESTINATION_REGION] = "region-b";
    struct zt_tcp_series *s = zt_metrics_tcp_series(m, 0, &l);
    zt_tcp_series_opened(s);
    zt_tcp_series_opened(s);
    text = render(m);
    /* The locality labels follow connection_security_policy, in order. */
    const char *with = "istio_tcp_connections_opened_total" OUTBOUND_LABELS;
    char series[2048];
    snprintf(series, sizeof(series),
             "%.*s,source_region=\"region-a\",source_zone=\"zone-1\","
             "destination_region=\"region-b\",destination_zone=\"unknown\"}",
             (int)strlen(with) - 1, with);
    CHECK_EQ_INT(sample(text, series), 2);
    CHECK_EQ_INT(sample(text, with), 1);
    CHECK_EQ_INT(count_substr(text, "\nistio_tcp_connections_opened_total{"), 2);
    free(text);
    zt_metrics_free(m);
}

static void test_escaping(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "v\"1");
    struct zt_traffic_labels l = outbound_labels();
    l.v[ZT_TL_SOURCE_WORKLOAD] = "a\"b\\c\nd";
    l.v[ZT_TL_DESTINATION_SERVICE] = "caf\xc3\xa9 \xff\xc3"; /* é, a bad byte, a cut é */
    zt_tcp_series_opened(zt_metrics_tcp_series(m, 0, &l));
    char *text = render(m);
    CHECK(strstr(text, "source_workload=\"a\\\"b\\\\c\\nd\",") != NULL);
    CHECK(strstr(text, "destination_service=\"caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\",") != NULL);
    CHECK(strstr(text, "istio_build{component=\"ztunnel\",tag=\"v\\\"1\"} 1\n") != NULL);
    /* No raw newline inside any sample line: every line is a comment or
     * starts with a metric name. */
    for (const char *p = text; *p; p = strchr(p, '\n') + 1)
        CHECK(*p == '#' || (*p >= 'a' && *p <= 'z'));
    free(text);
    zt_metrics_free(m);
}

/* Long values are capped at ZT_METRICS_LABEL_VALUE_MAX bytes, never in the
 * middle of a character. */
static void test_long_value_capped(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "t");
    size_t n = ZT_METRICS_LABEL_VALUE_MAX + 100;
    char *v = malloc(n + 1);
    CHECK(v != NULL);
    memset(v, 'x', n);
    /* A two-byte character straddling the cap. */
    v[ZT_METRICS_LABEL_VALUE_MAX - 1] = (char)0xc3;
    v[ZT_METRICS_LABEL_VALUE_MAX] = (char)0xa9;
    v[n] = 0;
    struct zt_traffic_labels l = outbound_labels();
    l.v[ZT_TL_SOURCE_PRINCIPAL] = v;
    zt_tcp_series_opened(zt_metrics_tcp_series(m, 0, &l));
    char *text = render(m);
    const char *p = strstr(text, "source_principal=\"");
    CHECK(p != NULL);
    p += strlen("source_principal=\"");
    size_t got = strcspn(p, "\"");
    free(v);
    free(text);
    zt_metrics_free(m);
    CHECK_EQ_INT(got, ZT_METRICS_LABEL_VALUE_MAX - 1);
}

/* Enough label sets in one shard to make its table grow several times. */
static void test_many_series(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "t");
    enum { N = 700 };
    static struct zt_tcp_series *got[N];
    char name[32];
    struct zt_traffic_labels l = outbound_labels();
    l.v[ZT_TL_SOURCE_WORKLOAD] = name;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "w%d", i);
        got[i] = zt_metrics_tcp_series(m, 0, &l);
        zt_tcp_series_add_bytes(got[i], (uint64_t)i, 0);
    }
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "w%d", i);
        CHECK(zt_metrics_tcp_series(m, 0, &l) == got[i]);
    }
    char *text = render(m);
    int lines = count_substr(text, "\nistio_tcp_received_bytes_total{");
    long long w123 = -1;
    const char *p = strstr(text, "istio_tcp_received_bytes_total{reporter=\"source\","
                                 "source_workload=\"w123\",");
    if (p)
        w123 = strtoll(strstr(p, "} ") + 2, NULL, 10);
    free(text);
    zt_metrics_free(m);
    CHECK_EQ_INT(lines, N);
    CHECK_EQ_INT(w123, 123);
}

/* Labels as the destination proxy builds them for a source known only by
 * its baggage: the source workload is the peer's choice. */
static struct zt_traffic_labels baggage_labels(const char *workload)
{
    struct zt_traffic_labels l = outbound_labels();
    l.v[ZT_TL_REPORTER] = "destination";
    l.v[ZT_TL_SOURCE_WORKLOAD] = workload;
    l.from_peer = ZT_TL_BIT(ZT_TL_SOURCE_WORKLOAD) | ZT_TL_BIT(ZT_TL_SOURCE_CLUSTER);
    return l;
}

/* 10 000 connections, each with its own baggage value, one after another as
 * from one peer: the series kept, the exposition's size and the eviction
 * counter are bounded by the cap, newest values kept, config series kept. */
static void test_peer_series_bounded(void)
{
    struct zt_metrics *m = zt_metrics_new(2, "t");
    const unsigned share = ZT_METRICS_PEER_SERIES_MAX / 2;
    char name[32];
    size_t size_at_1000 = 0;

    struct zt_traffic_labels cfg = outbound_labels();
    struct zt_tcp_series *cs = zt_metrics_tcp_series(m, 0, &cfg);
    zt_tcp_series_opened(cs);
    zt_metrics_tcp_series_release(m, 0, cs);
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "bg-%d", i);
        struct zt_traffic_labels l = baggage_labels(name);
        struct zt_tcp_series *s = zt_metrics_tcp_series(m, 0, &l);
        zt_tcp_series_opened(s);
        zt_tcp_series_add_bytes(s, 1, 1);
        zt_tcp_series_closed(s);
        zt_metrics_tcp_series_release(m, 0, s);
        if (i == 999) {
            char *t = render(m);
            size_at_1000 = strlen(t);
            free(t);
        }
    }
    char *text = render(m);
    size_t size = strlen(text);
    int kept = count_substr(text, "\nistio_tcp_connections_opened_total{reporter=\"destination\"");
    long long evicted = sample(text, "ztunnel_metrics_peer_series_evicted_total");
    long long gauge = sample(text, "ztunnel_metrics_peer_series");
    long long dropped = sample(text, "ztunnel_metrics_peer_labels_dropped_total");
    bool has_newest = strstr(text, "source_workload=\"bg-9999\"") != NULL;
    bool has_oldest = strstr(text, "source_workload=\"bg-0\"") != NULL;
    long long cfg_opened = sample(text, "istio_tcp_connections_opened_total" OUTBOUND_LABELS);
    free(text);
    zt_metrics_free(m);
    CHECK_EQ_INT(kept, share);
    CHECK_EQ_INT(gauge, share);
    CHECK_EQ_INT(evicted, 10000 - share);
    CHECK_EQ_INT(dropped, 0);
    CHECK(has_newest && !has_oldest);
    CHECK_EQ_INT(cfg_opened, 1);
    CHECK(size < size_at_1000 + size_at_1000 / 50); /* longer names and counts only */
}

/* Held series are never evicted: with every peer series of the shard held,
 * a new value is counted without the peer's labels ("unknown"), and
 * counted as dropped; once one is released, a new value takes its place. */
static void test_peer_series_held_not_evicted(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "t");
    enum { N = ZT_METRICS_PEER_SERIES_MAX };
    static struct zt_tcp_series *held[N];
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "held-%d", i);
        struct zt_traffic_labels l = baggage_labels(name);
        held[i] = zt_metrics_tcp_series(m, 0, &l);
        zt_tcp_series_opened(held[i]);
    }
    struct zt_traffic_labels extra = baggage_labels("extra");
    struct zt_tcp_series *x = zt_metrics_tcp_series(m, 0, &extra);
    zt_tcp_series_opened(x);
    for (int i = 0; i < N; i++)
        zt_tcp_series_add_bytes(held[i], 7, 0); /* still valid (ASan would say) */
    char *text = render(m);
    bool has_extra = strstr(text, "\"extra\"") != NULL;
    long long unknown =
        sample(text, "istio_tcp_connections_opened_total{reporter=\"destination\","
                     "source_workload=\"unknown\",source_canonical_service=\"client\","
                     "source_canonical_revision=\"v1\",source_workload_namespace=\"ns1\","
                     "source_principal=\"spiffe://cluster.local/ns/ns1/sa/client\","
                     "source_app=\"client\",source_version=\"v1\",source_cluster=\"unknown\","
                     "destination_service=\"echo.ns2.svc.cluster.local\","
                     "destination_service_namespace=\"ns2\",destination_service_name=\"echo\","
                     "destination_workload=\"echo\",destination_canonical_service=\"echo\","
                     "destination_canonical_revision=\"unknown\","
                     "destination_workload_namespace=\"ns2\","
                     "destination_principal=\"spiffe://cluster.local/ns/ns2/sa/echo\","
                     "destination_app=\"echo\",destination_version=\"unknown\","
                     "destination_cluster=\"Kubernetes\",request_protocol=\"tcp\","
                     "response_flags=\"-\",connection_security_policy=\"mutual_tls\"}");
    long long dropped = sample(text, "ztunnel_metrics_peer_labels_dropped_total");
    long long evicted = sample(text, "ztunnel_metrics_peer_series_evicted_total");
    int held_bytes = count_lines(text,
                                 "istio_tcp_received_bytes_total{reporter=\"destination\","
                                 "source_workload=\"held-",
                                 " 7");
    free(text);
    CHECK(!has_extra);
    CHECK_EQ_INT(unknown, 1);
    CHECK_EQ_INT(dropped, 1);
    CHECK_EQ_INT(evicted, 0);
    CHECK_EQ_INT(held_bytes, N);

    /* Release one: the next new value evicts it and is kept as it is. */
    zt_metrics_tcp_series_release(m, 0, x);
    zt_metrics_tcp_series_release(m, 0, held[5]);
    x = zt_metrics_tcp_series(m, 0, &extra);
    zt_tcp_series_opened(x);
    text = render(m);
    has_extra = strstr(text, "source_workload=\"extra\"") != NULL;
    bool has_5 = strstr(text, "\"held-5\"") != NULL;
    evicted = sample(text, "ztunnel_metrics_peer_series_evicted_total");
    long long gauge = sample(text, "ztunnel_metrics_peer_series");
    free(text);
    zt_metrics_free(m);
    CHECK(has_extra && !has_5);
    CHECK_EQ_INT(evicted, 1);
    CHECK_EQ_INT(gauge, N);
}

/* A from_peer label set whose peer values are all empty renders like a
 * config one and is not counted against the cap. */
static void test_peer_marks_without_values(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "t");
    struct zt_traffic_labels l = baggage_labels("");
    l.v[ZT_TL_SOURCE_CLUSTER] = NULL;
    struct zt_tcp_series *s = zt_metrics_tcp_series(m, 0, &l);
    zt_metrics_tcp_series_release(m, 0, s);
    char *text = render(m);
    long long gauge = sample(text, "ztunnel_metrics_peer_series");
    free(text);
    zt_metrics_free(m);
    CHECK_EQ_INT(gauge, 0);
}

enum { ITERS = 20000 };

struct writer {
    struct zt_metrics *m;
    unsigned shard;
};

static _Atomic int writers_done;

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct zt_traffic_labels shared = outbound_labels();
    struct zt_traffic_labels own = outbound_labels();
    own.v[ZT_TL_SOURCE_WORKLOAD] = w->shard == 0 ? "only-0" : "only-1";
    for (int i = 0; i < ITERS; i++) {
        /* A lookup per "connection", as the proxy does. */
        struct zt_tcp_series *s = zt_metrics_tcp_series(w->m, w->shard, &shared);
        zt_tcp_series_opened(s);
        zt_tcp_series_add_bytes(s, 3, 5);
        zt_tcp_series_closed(s);
        if (i % 100 == 0) {
            own.v[ZT_TL_RESPONSE_FLAGS] = (i / 100) % 2 ? "DENY" : "-";
            zt_tcp_series_failed(zt_metrics_tcp_series(w->m, w->shard, &own));
        }
    }
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

struct reader {
    struct zt_metrics *m;
    int renders;
    int bad;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    long long last = 0;
    do {
        char *text = render(r->m);
        long long v = sample(text, "istio_tcp_connections_opened_total" OUTBOUND_LABELS);
        long long bytes = sample(text, "istio_tcp_sent_bytes_total" OUTBOUND_LABELS);
        /* Merged totals only grow, and never exceed what two writers add. */
        if (v >= 0 && (v < last || v > 2 * ITERS || bytes < 0 || bytes > 5LL * 2 * ITERS))
            r->bad++;
        if (v > last)
            last = v;
        free(text);
        r->renders++;
    } while (atomic_load(&writers_done) < 2);
    return NULL;
}

static void test_concurrent_writers_and_scrapes(void)
{
    struct zt_metrics *m = zt_metrics_new(2, "t");
    struct writer w[2] = {{m, 0}, {m, 1}};
    struct reader r = {m, 0, 0};
    pthread_t tw[2], tr;
    atomic_store(&writers_done, 0);
    CHECK(pthread_create(&tr, NULL, reader_main, &r) == 0);
    CHECK(pthread_create(&tw[0], NULL, writer_main, &w[0]) == 0);
    CHECK(pthread_create(&tw[1], NULL, writer_main, &w[1]) == 0);
    pthread_join(tw[0], NULL);
    pthread_join(tw[1], NULL);
    pthread_join(tr, NULL);

    char *text = render(m);
    long long opened = sample(text, "istio_tcp_connections_opened_total" OUTBOUND_LABELS);
    long long closed = sample(text, "istio_tcp_connections_closed_total" OUTBOUND_LABELS);
    long long recv = sample(text, "istio_tcp_received_bytes_total" OUTBOUND_LABELS);
    long long sent = sample(text, "istio_tcp_sent_bytes_total" OUTBOUND_LABELS);
    int rows = count_substr(text, "\nistio_tcp_connections_failed_total{");
    int failed_sum = 0;
    for (const char *p = strstr(text, "\nistio_tcp_connections_failed_total{"); p;
         p = strstr(p + 1, "\nistio_tcp_connections_failed_total{"))
        failed_sum += (int)strtol(strstr(p, "} ") + 2, NULL, 10);
    free(text);
    zt_metrics_free(m);

    CHECK(r.renders > 0);
    CHECK_EQ_INT(r.bad, 0);
    CHECK_EQ_INT(opened, 2 * ITERS);
    CHECK_EQ_INT(closed, 2 * ITERS);
    CHECK_EQ_INT(recv, 3LL * 2 * ITERS);
    CHECK_EQ_INT(sent, 5LL * 2 * ITERS);
    /* shared + only-0 and only-1 each with "-" and "DENY". */
    CHECK_EQ_INT(rows, 5);
    CHECK_EQ_INT(failed_sum, 2 * (ITERS / 100));
}

/* Feeds `text` to `promtool check metrics`; returns its exit status (-1 if
 * it could not run) and its combined output in `out`. */
static int run_promtool(const char *text, char *out, size_t cap)
{
    char path[] = "/tmp/zt-metrics-XXXXXX";
    int fd = mkstemp(path);
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

/* Drops every line mentioning `what` (a family removed with its HELP/TYPE). */
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

/* promtool (Debian package prometheus) parses the exposition as a
 * Prometheus server would and lints names, HELP and TYPE. Its linter
 * objects to a "_count" suffix on a gauge, but Istio's dashboards query
 * workload_manager_{active,pending}_proxy_count under exactly those names,
 * so those two findings are expected on the full exposition, and without
 * those two families promtool must accept everything. */
static void test_promtool_accepts_exposition(void)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        SKIP("promtool not installed (Debian: prometheus)");
    }
    struct zt_metrics *m = zt_metrics_new(2, "1.24.0-\"dev\"");
    struct zt_traffic_labels a = outbound_labels();
    struct zt_traffic_labels b = outbound_labels();
    b.v[ZT_TL_REPORTER] = "destination";
    b.v[ZT_TL_SOURCE_WORKLOAD] = "we\"ird\\name\nx";
    b.v[ZT_TL_CONNECTION_SECURITY_POLICY] = "unknown";
    b.has_locality = true;
    b.v[ZT_TL_SOURCE_ZONE] = "z1";
    struct zt_traffic_labels c = outbound_labels();
    c.v[ZT_TL_RESPONSE_FLAGS] = "CONNECT";
    zt_tcp_series_opened(zt_metrics_tcp_series(m, 0, &a));
    zt_tcp_series_add_bytes(zt_metrics_tcp_series(m, 1, &a), 10, 20);
    zt_tcp_series_opened(zt_metrics_tcp_series(m, 1, &b));
    zt_tcp_series_failed(zt_metrics_tcp_series(m, 0, &c));
    zt_metrics_gauge_set(m, ZT_G_TCP_SOCKETS_OPEN_DESTINATION, 2);
    zt_metrics_counter_inc(m, ZT_C_WORKLOAD_MANAGER_PROXIES_STARTED);
    zt_metrics_counter_inc(m, ZT_C_XDS_TERMINATIONS_ERROR);
    zt_metrics_xds_message(m, "type.googleapis.com/istio.workload.Address", 42);
    char *text = render(m);
    zt_metrics_free(m);

    static char out[8192];
    int st = run_promtool(text, out, sizeof(out));
    if (st != 0) {
        /* 3 is promtool's "lint problems"; 1 would be a parse error. */
        const char *expected =
            "workload_manager_active_proxy_count non-histogram and non-summary metrics should "
            "not have \"_count\" suffix\n"
            "workload_manager_pending_proxy_count non-histogram and non-summary metrics should "
            "not have \"_count\" suffix\n";
        if (st != 3 || strcmp(out, expected) != 0)
            fprintf(stderr, "  promtool exit %d:\n%s", st, out);
        CHECK_EQ_INT(st, 3);
        CHECK_EQ_STR(out, expected);
    }
    drop_lines(text, "_proxy_count");
    CHECK(strstr(text, "istio_tcp_connections_failed_total{") != NULL);
    CHECK(strstr(text, "istio_xds_message_bytes_total{") != NULL);
    st = run_promtool(text, out, sizeof(out));
    if (st != 0)
        fprintf(stderr, "  promtool exit %d:\n%s", st, out);
    free(text);
    CHECK_EQ_INT(st, 0);
}

/* istio_xds_*: absent until counted; then Istio's names, reasons and url
 * labels, one series per type URL, the bytes summed. */
static void test_xds_families(void)
{
    static const char *const addr = "type.googleapis.com/istio.workload.Address";
    static const char *const authz = "type.googleapis.com/istio.security.Authorization";
    struct zt_metrics *m = zt_metrics_new(2, "1.24.0");
    char *text = render(m);
    CHECK(strstr(text, "istio_xds") == NULL);
    free(text);

    zt_metrics_xds_message(m, addr, 100);
    zt_metrics_xds_message(m, addr, 23);
    zt_metrics_xds_message(m, authz, 0);
    zt_metrics_counter_inc(m, ZT_C_XDS_TERMINATIONS_CONNECTION_ERROR);
    zt_metrics_counter_inc(m, ZT_C_XDS_TERMINATIONS_CONNECTION_ERROR);
    zt_metrics_counter_inc(m, ZT_C_XDS_TERMINATIONS_RECONNECT);
    text = render(m);
    CHECK(strstr(text, "# HELP istio_xds_message_total Total number of messages received "
                       "(unstable).\n# TYPE istio_xds_message_total counter\n"
                       "istio_xds_message_total{url=\"type.googleapis.com/istio.workload."
                       "Address\"} 2\n"
                       "istio_xds_message_total{url=\"type.googleapis.com/istio.security."
                       "Authorization\"} 1\n") != NULL);
    CHECK(strstr(text, "# TYPE istio_xds_message_bytes_total counter\n"
                       "istio_xds_message_bytes_total{url=\"type.googleapis.com/istio.workload."
                       "Address\"} 123\n"
                       "istio_xds_message_bytes_total{url=\"type.googleapis.com/istio.security."
                       "Authorization\"} 0\n") != NULL);
    CHECK(strstr(text,
                 "# TYPE istio_xds_connection_terminations_total counter\n"
                 "istio_xds_connection_terminations_total{reason=\"ConnectionError\"} 2\n"
                 "istio_xds_connection_terminations_total{reason=\"Reconnect\"} 1\n") != NULL);
    /* Reasons not seen yet have no series; one family header each. */
    CHECK(strstr(text, "reason=\"Error\"") == NULL);
    CHECK(strstr(text, "reason=\"Complete\"") == NULL);
    CHECK_EQ_INT(count_substr(text, "# TYPE istio_xds_"), 3);
    CHECK(strstr(text, "url=\"other\"") == NULL);
    free(text);
    zt_metrics_free(m);
}

/* Type URLs are counted apart up to the cap; the rest share url="other",
 * and a URL with quotes is escaped like any label value. */
static void test_xds_urls_capped(void)
{
    struct zt_metrics *m = zt_metrics_new(1, "1.24.0");
    char url[64];
    for (int i = 0; i < ZT_METRICS_XDS_URLS_MAX + 3; i++) {
        snprintf(url, sizeof(url), "type.example/t%d", i);
        zt_metrics_xds_message(m, url, 10);
    }
    zt_metrics_xds_message(m, "type.example/t0", 5); /* an old one still counts apart */
    zt_metrics_xds_message(m, NULL, 1);              /* past the cap too */
    char *text = render(m);
    CHECK_EQ_INT(sample(text, "istio_xds_message_total{url=\"type.example/t0\"}"), 2);
    CHECK_EQ_INT(sample(text, "istio_xds_message_bytes_total{url=\"type.example/t0\"}"), 15);
    snprintf(url, sizeof(url), "istio_xds_message_total{url=\"type.example/t%d\"}",
             ZT_METRICS_XDS_URLS_MAX - 1);
    CHECK_EQ_INT(sample(text, url), 1);
    snprintf(url, sizeof(url), "istio_xds_message_total{url=\"type.example/t%d\"}",
             ZT_METRICS_XDS_URLS_MAX);
    CHECK_EQ_INT(sample(text, url), -1);
    CHECK_EQ_INT(sample(text, "istio_xds_message_total{url=\"other\"}"), 4);
    CHECK_EQ_INT(sample(text, "istio_xds_message_bytes_total{url=\"other\"}"), 31);
    CHECK_EQ_INT(count_lines(text, "istio_xds_message_total{", ""), ZT_METRICS_XDS_URLS_MAX + 1);
    free(text);
    zt_metrics_free(m);

    m = zt_metrics_new(1, "1.24.0");
    zt_metrics_xds_message(m, "we\"ird", 1);
    zt_metrics_xds_message(m, "", 1);
    text = render(m);
    CHECK_EQ_INT(sample(text, "istio_xds_message_total{url=\"we\\\"ird\"}"), 1);
    CHECK_EQ_INT(sample(text, "istio_xds_message_total{url=\"unknown\"}"), 1);
    free(text);
    zt_metrics_free(m);
}

int main(void)
{
    RUN(test_label_names);
    RUN(test_one_series_exact);
    RUN(test_fixed_families);
    RUN(test_gauges_and_counters);
    RUN(test_merge_across_shards);
    RUN(test_labels_copied_and_empty_equals_null);
    RUN(test_locality_labels);
    RUN(test_escaping);
    RUN(test_long_value_capped);
    RUN(test_many_series);
    RUN(test_peer_series_bounded);
    RUN(test_peer_series_held_not_evicted);
    RUN(test_peer_marks_without_values);
    RUN(test_xds_families);
    RUN(test_xds_urls_capped);
    RUN(test_concurrent_writers_and_scrapes);
    RUN(test_promtool_accepts_exposition);
    return TEST_REPORT();
}
