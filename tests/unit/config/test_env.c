#include "test.h"

#include "base/err.h"
#include "config/env.h"

/* A NULL-terminated list of "NAME", "value" pairs. */
static const char *lookup(const char *name, void *ud)
{
    const char *const *kv = ud;
    for (; kv[0]; kv += 2)
        if (!strcmp(kv[0], name))
            return kv[1];
    return NULL;
}

static int load(const char *const *kv, unsigned ncpus, struct zt_config *c, char *err,
                size_t errlen)
{
    return zt_config_from_env_fn(lookup, (void *)kv, ncpus, c, err, errlen);
}

static void test_defaults(void)
{
    const char *kv[] = {NULL};
    struct zt_config c;
    char err[256];
    CHECK_EQ_INT(load(kv, 8, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.worker_threads, 2);
    CHECK_EQ_STR(c.inpod_uds, "/var/run/ztunnel/ztunnel.sock");
    CHECK(c.inpod_port_reuse);
    CHECK_EQ_INT(c.packet_mark, 1337);
    CHECK_EQ_INT(c.proxy_mode, ZT_PROXY_MODE_SHARED);
    CHECK(c.local_xds_path == NULL && c.local_xds == NULL);
    CHECK_EQ_INT(c.secret_ttl_s, 86400);
    CHECK_EQ_STR(c.cluster_id, "Kubernetes");
    CHECK_EQ_STR(c.trust_domain, "cluster.local");
    CHECK_EQ_STR(c.network, "");
    CHECK_EQ_INT(c.enable_orig_src, ZT_UNSET);
    CHECK(c.ipv6_enabled);
    CHECK_EQ_INT(c.pool_max_streams_per_conn, 100);
    CHECK_EQ_INT(c.pool_unused_release_timeout_ms, 300000);
    CHECK_EQ_INT(c.h2_stream_window, 4 << 20);
    CHECK_EQ_INT(c.h2_conn_window, 16 << 20);
    CHECK_EQ_INT(c.h2_frame_size, 1 << 20);
    CHECK_EQ_INT(c.termination_deadline_ms, 5000);
    CHECK_EQ_INT(c.log_format, ZT_LOG_FORMAT_PLAIN);
    CHECK_EQ_INT(c.log_level, ZT_LOG_INFO);
    CHECK_EQ_INT(c.keepalive_retries, 9);
    CHECK(c.crl_path == NULL);
}

/* CRL_PATH as Istio's ztunnel reads it: set and not empty turns CRLs on. */
static void test_crl_path(void)
{
    const char *on[] = {"CRL_PATH", "/etc/crl/crl.pem", NULL};
    const char *empty[] = {"CRL_PATH", "", NULL};
    struct zt_config c;
    char err[256];
    CHECK_EQ_INT(load(on, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_STR(c.crl_path, "/etc/crl/crl.pem");
    CHECK_EQ_INT(load(empty, 2, &c, err, sizeof(err)), 0);
    CHECK(c.crl_path == NULL);
}

static void test_values(void)
{
    const char *kv[] = {"ZTUNNEL_WORKER_THREADS",
                        "50%",
                        "PACKET_MARK",
                        "0x539",
                        "SECRET_TTL",
                        "30m",
                        "ISTIO_META_CLUSTER_ID",
                        "c2",
                        "CLUSTER_ID",
                        "ignored",
                        "ENABLE_ORIG_SRC",
                        "false",
                        "IPV6_ENABLED",
                        "false",
                        "HTTP2_FRAME_SIZE",
                        "64Ki",
                        "TERMINATION_GRACE_PERIOD_SECONDS",
                        "30",
                        "LOG_FORMAT",
                        "json",
                        "RUST_LOG",
                        "access=debug,warn",
                        "POOL_UNUSED_RELEASE_TIMEOUT",
                        "1h30m",
                        "LOCAL_XDS_PATH",
                        "/etc/z.yaml",
                        "NETWORK",
                        "n1",
                        NULL};
    struct zt_config c;
    char err[256];
    CHECK_EQ_INT(load(kv, 8, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.worker_threads, 4);
    CHECK_EQ_INT(c.packet_mark, 1337);
    CHECK_EQ_INT(c.secret_ttl_s, 1800);
    CHECK_EQ_STR(c.cluster_id, "c2");
    CHECK_EQ_INT(c.enable_orig_src, ZT_FALSE);
    CHECK(!c.ipv6_enabled);
    CHECK_EQ_INT(c.h2_frame_size, 65536);
    CHECK_EQ_INT(c.termination_deadline_ms, 25000);
    CHECK_EQ_INT(c.log_format, ZT_LOG_FORMAT_JSON);
    CHECK_EQ_INT(c.log_level, ZT_LOG_WARN);
    CHECK_EQ_INT(c.pool_unused_release_timeout_ms, 5400000);
    CHECK_EQ_STR(c.local_xds_path, "/etc/z.yaml");
    CHECK_EQ_STR(c.network, "n1");
}

static void test_workers(void)
{
    const char *zero[] = {"ZTUNNEL_WORKER_THREADS", "0", NULL};
    const char *one_pct[] = {"ZTUNNEL_WORKER_THREADS", "1%", NULL};
    const char *three[] = {"ZTUNNEL_WORKER_THREADS", "3", NULL};
    struct zt_config c;
    char err[256];
    CHECK_EQ_INT(load(zero, 6, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.worker_threads, 6);
    CHECK_EQ_INT(load(one_pct, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.worker_threads, 1);
    CHECK_EQ_INT(load(three, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.worker_threads, 3);
}

static void test_grace_period(void)
{
    const char *small[] = {"TERMINATION_GRACE_PERIOD_SECONDS", "5", NULL};
    const char *tiny[] = {"TERMINATION_GRACE_PERIOD_SECONDS", "1", NULL};
    const char *both[] = {"TERMINATION_GRACE_PERIOD_SECONDS", "30",
                          "CONNECTION_TERMINATION_DEADLINE", "7s", NULL};
    struct zt_config c;
    char err[256];
    CHECK_EQ_INT(load(small, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.termination_deadline_ms, 4000);
    CHECK_EQ_INT(load(tiny, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.termination_deadline_ms, 1000);
    CHECK_EQ_INT(load(both, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.termination_deadline_ms, 7000);
}

struct err_case {
    const char *name, *value, *want;
};

static const struct err_case err_cases[] = {
    {"PACKET_MARK", "12x", "PACKET_MARK=\"12x\": expected a decimal or 0x-prefixed hex number"},
    {"PACKET_MARK", "0x1ffffffff", "PACKET_MARK=\"0x1ffffffff\": does not fit in 32 bits"},
    {"PROXY_MODE", "dedicated", "PROXY_MODE=\"dedicated\": dedicated mode is not supported yet"},
    {"PROXY_MODE", "sidecar", "PROXY_MODE=\"sidecar\": expected shared or dedicated"},
    {"SECRET_TTL", "1y", "SECRET_TTL=\"1y\": expected a duration such as 90s, 30m, 24h or seconds"},
    {"ZTUNNEL_WORKER_THREADS", "two", "ZTUNNEL_WORKER_THREADS=\"two\": expected N, N% or 0"},
    {"ZTUNNEL_WORKER_THREADS", "150%", "ZTUNNEL_WORKER_THREADS=\"150%\": percentage must be 1-100"},
    {"INPOD_PORT_REUSE", "yes", "INPOD_PORT_REUSE=\"yes\": expected true or false"},
    {"ENABLE_ORIG_SRC", "maybe", "ENABLE_ORIG_SRC=\"maybe\": expected true or false"},
    {"LOG_FORMAT", "xml", "LOG_FORMAT=\"xml\": expected plain or json"},
    {"RUST_LOG", "loud", "RUST_LOG=\"loud\": unknown level \"loud\""},
    {"HTTP2_FRAME_SIZE", "1k", "HTTP2_FRAME_SIZE=\"1k\": expected a size such as 4194304 or 4Mi"},
    {"HTTP2_FRAME_SIZE", "1024", "HTTP2_FRAME_SIZE=\"1024\": out of range (16384-16777215 bytes)"},
    {"POOL_MAX_STREAMS_PER_CONNECTION", "0",
     "POOL_MAX_STREAMS_PER_CONNECTION=\"0\": out of range (1-1048576)"},
};

static void test_errors(void)
{
    for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++) {
        const char *kv[] = {err_cases[i].name, err_cases[i].value, NULL};
        struct zt_config c;
        char err[256];
        CHECK_EQ_INT(load(kv, 2, &c, err, sizeof(err)), ZT_E_CONFIG);
        CHECK_EQ_STR(err, err_cases[i].want);
    }
    {
        const char *kv[] = {"LOCAL_XDS_PATH", "/a", "LOCAL_XDS", "workloads: []", NULL};
        struct zt_config c;
        char err[256];
        CHECK_EQ_INT(load(kv, 2, &c, err, sizeof(err)), ZT_E_CONFIG);
        CHECK(strstr(err, "LOCAL_XDS_PATH and LOCAL_XDS cannot both be set") != NULL);
    }
}

static void test_duration_parse(void)
{
    uint64_t ms;
    CHECK_EQ_INT(zt_config_parse_duration_ms("24h", &ms), 0);
    CHECK_EQ_INT(ms, 86400000);
    CHECK_EQ_INT(zt_config_parse_duration_ms("90", &ms), 0);
    CHECK_EQ_INT(ms, 90000);
    CHECK_EQ_INT(zt_config_parse_duration_ms("250ms", &ms), 0);
    CHECK_EQ_INT(ms, 250);
    CHECK_EQ_INT(zt_config_parse_duration_ms("", &ms), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_config_parse_duration_ms("5 s", &ms), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_config_parse_duration_ms("99999999999999999999h", &ms), ZT_E_CONFIG);
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_values);
    RUN(test_crl_path);
    RUN(test_workers);
    RUN(test_grace_period);
    RUN(test_errors);
    RUN(test_duration_parse);
    return TEST_REPORT();
}
