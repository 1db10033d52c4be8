#include "test.h"

#include "base/err.h"
#include "config/env.h"
#include "loop/sock.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

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
    CHECK(c.keepalive_enabled);
    CHECK_EQ_INT(c.keepalive_time_s, 180);
    CHECK_EQ_INT(c.keepalive_interval_s, 180);
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

/* KEEPALIVE_*: whole seconds (fractions dropped, as socket2 does for
 * Istio's ztunnel), within what the kernel accepts. */
/* The control plane's variables: CA_ADDRESS defaults to XDS_ADDRESS unless
 * certificates are minted locally; empty is unset; the node's own names. */
static void test_control_plane(void)
{
    struct zt_config c;
    char err[256];
    const char *none[] = {NULL};
    CHECK_EQ_INT(load(none, 2, &c, err, sizeof(err)), 0);
    CHECK(c.xds_address == NULL && c.ca_address == NULL);
    CHECK(c.alt_xds_hostname == NULL && c.alt_ca_hostname == NULL);
    CHECK_EQ_STR(c.pod_name, "");
    CHECK_EQ_STR(c.pod_namespace, "");
    CHECK_EQ_STR(c.instance_ip, "");

    const char *xds[] = {"XDS_ADDRESS", "istiod.istio-system.svc:15012", NULL};
    CHECK_EQ_INT(load(xds, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_STR(c.xds_address, "istiod.istio-system.svc:15012");
    CHECK_EQ_STR(c.ca_address, "istiod.istio-system.svc:15012");

    const char *local[] = {"XDS_ADDRESS", "istiod:15012", "LOCAL_CA_DIR", "/etc/cacerts", NULL};
    CHECK_EQ_INT(load(local, 2, &c, err, sizeof(err)), 0);
    CHECK(c.ca_address == NULL);

    const char *both[] = {"XDS_ADDRESS",
                          "istiod:15012",
                          "CA_ADDRESS",
                          "ca:15012",
                          "ALT_XDS_HOSTNAME",
                          "istiod.alt",
                          "ALT_CA_HOSTNAME",
                          "ca.alt",
                          "POD_NAME",
                          "ztunnel-x",
                          "POD_NAMESPACE",
                          "istio-system",
                          "INSTANCE_IP",
                          "10.0.0.7",
                          "LOCAL_CA_DIR",
                          "/etc/cacerts",
                          NULL};
    CHECK_EQ_INT(load(both, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_STR(c.ca_address, "ca:15012");
    CHECK_EQ_STR(c.alt_xds_hostname, "istiod.alt");
    CHECK_EQ_STR(c.alt_ca_hostname, "ca.alt");
    CHECK_EQ_STR(c.pod_name, "ztunnel-x");
    CHECK_EQ_STR(c.pod_namespace, "istio-system");
    CHECK_EQ_STR(c.instance_ip, "10.0.0.7");

    const char *empty[] = {"XDS_ADDRESS", "", "CA_ADDRESS", "", NULL};
    CHECK_EQ_INT(load(empty, 2, &c, err, sizeof(err)), 0);
    CHECK(c.xds_address == NULL && c.ca_address == NULL);
    CHECK_EQ_INT(c.control_keepalive_interval_ms, 30000);
    CHECK_EQ_INT(c.control_keepalive_timeout_ms, 10000);
}

/* Several control planes (failover): a list is taken as written; a bad
 * entry stops the start naming the variable and the entry. */
static void test_control_plane_lists(void)
{
    struct zt_config c;
    char err[512];
    const char *two[] = {"XDS_ADDRESS", "https://cp-a:15012,https://cp-b:15012", NULL};
    CHECK_EQ_INT(load(two, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_STR(c.xds_address, "https://cp-a:15012,https://cp-b:15012");
    CHECK_EQ_STR(c.ca_address, "https://cp-a:15012,https://cp-b:15012");

    const char *bad_xds[] = {"XDS_ADDRESS", "cp-a:15012,cp-b:0", NULL};
    CHECK_EQ_INT(load(bad_xds, 2, &c, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_STR(err, "XDS_ADDRESS: entry 2 'cp-b:0': bad port (expected 1 to 65535)");
    const char *bad_ca[] = {"XDS_ADDRESS", "cp-a:15012", "CA_ADDRESS", "ca-a:15012,,ca-b:15012",
                            NULL};
    CHECK_EQ_INT(load(bad_ca, 2, &c, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_STR(err, "CA_ADDRESS: entry 2 '': empty entry");

    const char *ka[] = {"CONTROL_PLANE_KEEPALIVE_INTERVAL", "2s", "CONTROL_PLANE_KEEPALIVE_TIMEOUT",
                        "1500ms", NULL};
    CHECK_EQ_INT(load(ka, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.control_keepalive_interval_ms, 2000);
    CHECK_EQ_INT(c.control_keepalive_timeout_ms, 1500);
    const char *ka_low[] = {"CONTROL_PLANE_KEEPALIVE_TIMEOUT", "999ms", NULL};
    CHECK_EQ_INT(load(ka_low, 2, &c, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strstr(err, "CONTROL_PLANE_KEEPALIVE_TIMEOUT"));
    const char *ka_high[] = {"CONTROL_PLANE_KEEPALIVE_INTERVAL", "3601s", NULL};
    CHECK_EQ_INT(load(ka_high, 2, &c, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strstr(err, "CONTROL_PLANE_KEEPALIVE_INTERVAL"));
    const char *ka_top[] = {"CONTROL_PLANE_KEEPALIVE_INTERVAL", "1h", NULL};
    CHECK_EQ_INT(load(ka_top, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.control_keepalive_interval_ms, 3600000);
}

static void test_keepalive(void)
{
    const char *kv[] = {"KEEPALIVE_TIME",
                        "77s",
                        "KEEPALIVE_INTERVAL",
                        "1500ms",
                        "KEEPALIVE_RETRIES",
                        "127",
                        "KEEPALIVE_ENABLED",
                        "false",
                        NULL};
    struct zt_config c;
    char err[256];
    CHECK_EQ_INT(load(kv, 2, &c, err, sizeof(err)), 0);
    CHECK(!c.keepalive_enabled);
    CHECK_EQ_INT(c.keepalive_time_s, 77);
    CHECK_EQ_INT(c.keepalive_interval_s, 1);
    CHECK_EQ_INT(c.keepalive_retries, 127);
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
                        "CLUSTER_DOMAIN",
                        "cluster.local",
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
    CHECK_EQ_STR(c.cluster_domain, "cluster.local");
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

/* Istio's defaults are relative ("./var/run/...") and meant for its
 * container, whose working directory is "/": they must not depend on where
 * the proxy was started. Explicit values are taken as given. */
static void test_cp_paths(void)
{
    const char *none[] = {NULL};
    const char *xds_only[] = {"XDS_ROOT_CA", "/etc/zt/root.pem", NULL};
    const char *all[] = {"XDS_ROOT_CA", "SYSTEM", "CA_ROOT_CA", "ca.pem",
                         "AUTH_TOKEN",  "tok",    NULL};
    struct zt_config c;
    char err[256];
    CHECK_EQ_INT(load(none, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_STR(c.xds_root_ca, "/var/run/secrets/istio/root-cert.pem");
    CHECK_EQ_STR(c.ca_root_ca, "/var/run/secrets/istio/root-cert.pem");
    CHECK_EQ_STR(c.auth_token, "/var/run/secrets/tokens/istio-token");
    CHECK_EQ_INT(load(xds_only, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_STR(c.xds_root_ca, "/etc/zt/root.pem");
    CHECK_EQ_STR(c.ca_root_ca, "/etc/zt/root.pem");
    CHECK_EQ_INT(load(all, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_STR(c.xds_root_ca, "SYSTEM");
    CHECK_EQ_STR(c.ca_root_ca, "ca.pem");
    CHECK_EQ_STR(c.auth_token, "tok");
}

/* Upstream's worker default: the CPU count is ZTUNNEL_RESOURCE_CPU_LIMIT
 * (a Kubernetes quantity), else ZTUNNEL_CPU_LIMIT (whole CPUs, which Istio's
 * chart fills from limits.cpu), else the host's cores. Without
 * ZTUNNEL_WORKER_THREADS: an explicit resource limit is the count (raised to
 * the request), else a quarter of the CPUs rounded up, at least 2 and at
 * least the request. */
static void test_cpu_limit(void)
{
    static const struct {
        const char *kv[7];
        unsigned ncpus, want;
    } cases[] = {
        {{NULL}, 8, 2},
        {{NULL}, 16, 4},
        {{NULL}, 17, 5},
        {{"ZTUNNEL_CPU_LIMIT", "12", NULL}, 64, 3},
        {{"ZTUNNEL_CPU_LIMIT", "1", NULL}, 64, 2},
        {{"ZTUNNEL_CPU_LIMIT", "4", "ZTUNNEL_WORKER_THREADS", "50%", NULL}, 64, 2},
        {{"ZTUNNEL_CPU_LIMIT", "4", "ZTUNNEL_WORKER_THREADS", "0", NULL}, 64, 4},
        {{"ZTUNNEL_CPU_LIMIT", "4", "ZTUNNEL_WORKER_THREADS", "7", NULL}, 64, 7},
        {{"ZTUNNEL_RESOURCE_CPU_LIMIT", "500m", "ZTUNNEL_CPU_LIMIT", "64", NULL}, 64, 1},
        {{"ZTUNNEL_RESOURCE_CPU_LIMIT", "2.5", "ZTUNNEL_CPU_LIMIT", "64", NULL}, 64, 3},
        {{"ZTUNNEL_RESOURCE_CPU_LIMIT", "1500m", "ZTUNNEL_RESOURCE_CPU_REQUEST", "3", NULL}, 64, 3},
        {{"ZTUNNEL_RESOURCE_CPU_LIMIT", "6", "ZTUNNEL_WORKER_THREADS", "50%", NULL}, 64, 3},
        {{"ZTUNNEL_RESOURCE_CPU_REQUEST", "6", NULL}, 8, 6},
        {{"ZTUNNEL_RESOURCE_CPU_REQUEST", "250m", NULL}, 8, 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct zt_config c;
        char err[256];
        CHECK_EQ_INT(load(cases[i].kv, cases[i].ncpus, &c, err, sizeof(err)), 0);
        if (c.worker_threads != cases[i].want)
            fprintf(stderr, "  case %zu\n", i);
        CHECK_EQ_INT(c.worker_threads, cases[i].want);
    }
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
    {"ZTUNNEL_CPU_LIMIT", "2.5",
     "ZTUNNEL_CPU_LIMIT=\"2.5\": expected a whole number of CPUs, at least 1"},
    {"ZTUNNEL_CPU_LIMIT", "0",
     "ZTUNNEL_CPU_LIMIT=\"0\": expected a whole number of CPUs, at least 1"},
    {"ZTUNNEL_RESOURCE_CPU_LIMIT", "0",
     "ZTUNNEL_RESOURCE_CPU_LIMIT=\"0\": expected a positive CPU quantity such as 2, 1.5 or 500m"},
    {"ZTUNNEL_RESOURCE_CPU_REQUEST", "1cpu",
     "ZTUNNEL_RESOURCE_CPU_REQUEST=\"1cpu\": expected a positive CPU quantity such as 2, 1.5 or "
     "500m"},
    {"ZTUNNEL_RESOURCE_CPU_LIMIT", "5000",
     "ZTUNNEL_RESOURCE_CPU_LIMIT=\"5000\": more than 1024 CPUs"},
    {"KEEPALIVE_TIME", "500ms", "KEEPALIVE_TIME=\"500ms\": out of range (1s-32767s)"},
    {"KEEPALIVE_INTERVAL", "10h", "KEEPALIVE_INTERVAL=\"10h\": out of range (1s-32767s)"},
    {"KEEPALIVE_TIME", "soon",
     "KEEPALIVE_TIME=\"soon\": expected a duration such as 90s, 30m, 24h or seconds"},
    {"KEEPALIVE_RETRIES", "128", "KEEPALIVE_RETRIES=\"128\": out of range (1-127)"},
    {"KEEPALIVE_ENABLED", "on", "KEEPALIVE_ENABLED=\"on\": expected true or false"},
    {"CLUSTER_DOMAIN", "corp..example", "CLUSTER_DOMAIN=\"corp..example\": empty label"},
    {"CLUSTER_DOMAIN", "corp.example.",
     "CLUSTER_DOMAIN=\"corp.example.\": not a DNS domain (1 to 253 characters, no leading or "
     "trailing dot)"},
    {"CLUSTER_DOMAIN", "corp_example",
     "CLUSTER_DOMAIN=\"corp_example\": only letters, digits, '-' and '.' may appear"},
    {"CLUSTER_DOMAIN", "a234567890123456789012345678901234567890123456789012345678901234.x",
     "CLUSTER_DOMAIN=\"a234567890123456789012345678901234567890123456789012345678901234.x\": a "
     "label is longer than 63 characters"},
    {"ISTIO_META_DNS_PROXY_ADDR", "localhost",
     "ISTIO_META_DNS_PROXY_ADDR=\"localhost\": expected localhost:PORT or IP:PORT"},
    {"ISTIO_META_DNS_PROXY_ADDR", "localhost:65536",
     "ISTIO_META_DNS_PROXY_ADDR=\"localhost:65536\": expected localhost:PORT or IP:PORT"},
    {"ISTIO_META_DNS_PROXY_ADDR", "dns.local:53",
     "ISTIO_META_DNS_PROXY_ADDR=\"dns.local:53\": expected localhost:PORT or IP:PORT"},
    {"INPOD_PORT_REUSE", "yes", "INPOD_PORT_REUSE=\"yes\": expected true or false"},
    {"ENABLE_ORIG_SRC", "maybe", "ENABLE_ORIG_SRC=\"maybe\": expected true or false"},
    {"LOG_FORMAT", "xml", "LOG_FORMAT=\"xml\": expected plain or json"},
    {"RUST_LOG", "loud", "RUST_LOG=\"loud\": unknown level \"loud\""},
    {"HTTP2_FRAME_SIZE", "1k", "HTTP2_FRAME_SIZE=\"1k\": expected a size such as 4194304 or 4Mi"},
    {"HTTP2_FRAME_SIZE", "1024", "HTTP2_FRAME_SIZE=\"1024\": out of range (16384-16777215 bytes)"},
    {"POOL_MAX_STREAMS_PER_CONNECTION", "0",
     "POOL_MAX_STREAMS_PER_CONNECTION=\"0\": out of range (1-1048576)"},
};

/* The DNS proxy's knobs: on by default on 127.0.0.1 and ::1 port 15053
 * (127.0.0.1 only without IPv6); DNS_CAPTURE other than "true" turns it
 * off; an address of its own; any valid cluster domain. */
static void test_dns(void)
{
    struct zt_config c;
    char err[256], s[64];
    const char *none[] = {NULL};
    CHECK_EQ_INT(load(none, 8, &c, err, sizeof(err)), 0);
    CHECK(c.dns_proxy);
    CHECK_EQ_INT(c.n_dns_proxy_addr, 2);
    CHECK_EQ_STR(zt_sockaddr_str((struct sockaddr *)&c.dns_proxy_addr[0], s, sizeof(s)),
                 "127.0.0.1:15053");
    CHECK_EQ_STR(zt_sockaddr_str((struct sockaddr *)&c.dns_proxy_addr[1], s, sizeof(s)),
                 "[::1]:15053");
    CHECK_EQ_STR(c.resolv_conf, "/etc/resolv.conf");
    CHECK_EQ_STR(c.cluster_domain, "cluster.local");
    CHECK(c.localhost_app_tunnel);
    const char *off[] = {"ISTIO_META_DNS_CAPTURE",
                         "False",
                         "IPV6_ENABLED",
                         "false",
                         "LOCALHOST_APP_TUNNEL",
                         "false",
                         NULL};
    CHECK_EQ_INT(load(off, 8, &c, err, sizeof(err)), 0);
    CHECK(!c.dns_proxy);
    CHECK(!c.localhost_app_tunnel);
    CHECK_EQ_INT(c.n_dns_proxy_addr, 1);
    const char *on[] = {"ISTIO_META_DNS_CAPTURE",
                        "TRUE",
                        "ISTIO_META_DNS_PROXY_ADDR",
                        "[fd00::53]:5353",
                        "CLUSTER_DOMAIN",
                        "corp.example",
                        "ZTUNNEL_RESOLV_CONF",
                        "/tmp/r.conf",
                        "PREFERED_SERVICE_NAMESPACE",
                        "istio-system",
                        NULL};
    CHECK_EQ_INT(load(on, 8, &c, err, sizeof(err)), 0);
    CHECK(c.dns_proxy);
    CHECK_EQ_INT(c.n_dns_proxy_addr, 1);
    CHECK_EQ_STR(zt_sockaddr_str((struct sockaddr *)&c.dns_proxy_addr[0], s, sizeof(s)),
                 "[fd00::53]:5353");
    CHECK_EQ_STR(c.cluster_domain, "corp.example");
    CHECK_EQ_STR(c.resolv_conf, "/tmp/r.conf");
    CHECK_EQ_STR(c.preferred_service_ns, "istio-system");
}

/* Proxy metadata from the mesh config file and PROXY_CONFIG (which wins),
 * keys with or without ISTIO_META_; ISTIO_META_* variables win over both;
 * a file or variable that is not YAML stops the start with its name. */
static void test_proxy_metadata(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/zt-test-mesh.%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const char *mesh = "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_PROXY_ADDR: "
                       "\"127.0.0.1:5353\"\n    DNS_CAPTURE: \"true\"\n    OTHER: x\n";
    CHECK(fd >= 0 && write(fd, mesh, strlen(mesh)) == (ssize_t)strlen(mesh));
    close(fd);
    struct zt_config c;
    char err[256], s[64];
    const char *kv1[] = {"ZTUNNEL_MESH_CONFIG", path, NULL};
    CHECK_EQ_INT(load(kv1, 8, &c, err, sizeof(err)), 0);
    CHECK(c.dns_proxy);
    CHECK_EQ_INT(c.n_dns_proxy_addr, 1);
    CHECK_EQ_STR(zt_sockaddr_str((struct sockaddr *)&c.dns_proxy_addr[0], s, sizeof(s)),
                 "127.0.0.1:5353");
    const char *kv2[] = {"ZTUNNEL_MESH_CONFIG", path, "PROXY_CONFIG",
                         "{\"proxyMetadata\": {\"DNS_CAPTURE\": \"false\"}}", NULL};
    CHECK_EQ_INT(load(kv2, 8, &c, err, sizeof(err)), 0);
    CHECK(!c.dns_proxy);
    const char *kv3[] = {"ZTUNNEL_MESH_CONFIG",
                         path,
                         "PROXY_CONFIG",
                         "proxyMetadata: {DNS_CAPTURE: \"false\"}",
                         "ISTIO_META_DNS_CAPTURE",
                         "true",
                         NULL};
    CHECK_EQ_INT(load(kv3, 8, &c, err, sizeof(err)), 0);
    CHECK(c.dns_proxy);
    const char *kv4[] = {"PROXY_CONFIG", "proxyMetadata: [", NULL};
    CHECK_EQ_INT(load(kv4, 8, &c, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strncmp(err, "PROXY_CONFIG: line ", 19) == 0);
    const char *kv5[] = {"PROXY_CONFIG", "proxyMetadata: [a, b]", NULL};
    CHECK_EQ_INT(load(kv5, 8, &c, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_STR(err, "PROXY_CONFIG: proxyMetadata: expected a map");
    unlink(path);
}

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

static void test_trusted_uid(void)
{
    const char *unset[] = {NULL};
    const char *set[] = {"ZTUNNEL_TRUSTED_UID", "1337", NULL};
    const char *bad[] = {"ZTUNNEL_TRUSTED_UID", "istio", NULL};
    const char *neg[] = {"ZTUNNEL_TRUSTED_UID", "-1", NULL};
    const char *nouid[] = {"ZTUNNEL_TRUSTED_UID", "4294967295", NULL};
    struct zt_config c;
    char err[256];
    uint32_t uid;

    CHECK_EQ_INT(load(unset, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.trusted_uid, 0);
    CHECK_EQ_INT(load(set, 2, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.trusted_uid, 1337);
    CHECK_EQ_INT(load(bad, 2, &c, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_STR(err, "ZTUNNEL_TRUSTED_UID=\"istio\": expected a numeric uid (0-4294967294)");
    CHECK_EQ_INT(load(neg, 2, &c, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_INT(load(nouid, 2, &c, err, sizeof(err)), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_config_parse_uid("4294967294", &uid), 0);
    CHECK_EQ_INT(uid, 4294967294u);
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_values);
    RUN(test_keepalive);
    RUN(test_crl_path);
    RUN(test_control_plane);
    RUN(test_control_plane_lists);
    RUN(test_workers);
    RUN(test_cp_paths);
    RUN(test_cpu_limit);
    RUN(test_grace_period);
    RUN(test_errors);
    RUN(test_dns);
    RUN(test_proxy_metadata);
    RUN(test_duration_parse);
    RUN(test_trusted_uid);
    return TEST_REPORT();
}
