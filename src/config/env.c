/* Environment settings. See env.h. */
#include "config/env.h"

#include "base/err.h"
#include "h2/grpc.h"
#include "state/ip.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_WORKERS 1024

struct envctx {
    zt_config_getenv_fn *get;
    void *ud;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 4, 5))) static int bad(struct envctx *e, const char *name,
                                                     const char *value, const char *fmt, ...)
{
    char where[300];
    snprintf(where, sizeof(where), "%s=\"%.200s\"", name, value);
    va_list ap;
    va_start(ap, fmt);
    int rc = zt_verrf_at(e->err, e->errlen, ZT_E_CONFIG, where, fmt, ap);
    va_end(ap);
    return rc;
}

/* An address list (h2/grpc.h); NULL (unset or empty) is fine. */
static int check_targets(struct envctx *e, const char *name, const char *v)
{
    struct zt_grpc_target t[ZT_GRPC_TARGETS_MAX];
    size_t n;
    if (v && zt_grpc_parse_targets(name, v, t, &n, e->err, e->errlen) < 0)
        return ZT_E_CONFIG;
    return 0;
}

static const char *or_empty(const char *v)
{
    return v ? v : "";
}

/* Unset and empty are the same: "use the default". */
static const char *get(struct envctx *e, const char *name)
{
    const char *v = e->get(name, e->ud);
    return v && *v ? v : NULL;
}

static int parse_u64(const char *s, uint64_t *out);

/* A DNS name as a cluster domain: labels of letters, digits and '-', at
 * most 63 each, 253 in all, no leading or trailing dot. */
static int check_domain(struct envctx *e, const char *name, const char *v)
{
    size_t n = strlen(v), label = 0;
    if (n == 0 || n > 253 || v[0] == '.' || v[n - 1] == '.')
        return bad(e, name, v,
                   "not a DNS domain (1 to 253 characters, no leading or trailing dot)");
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        if (ch == '.') {
            if (label == 0)
                return bad(e, name, v, "empty label");
            label = 0;
        } else if (isalnum((unsigned char)ch) || ch == '-') {
            if (++label > 63)
                return bad(e, name, v, "a label is longer than 63 characters");
        } else {
            return bad(e, name, v, "only letters, digits, '-' and '.' may appear");
        }
    }
    return 0;
}

/* ISTIO_META_DNS_CAPTURE, ISTIO_META_DNS_PROXY_ADDR, ZTUNNEL_RESOLV_CONF and
 * PREFERED_SERVICE_NAMESPACE. */
static int dns_proxy(struct envctx *e, struct zt_config *c)
{
    struct zt_proxy_metadata md;
    const char *mesh = get(e, "ZTUNNEL_MESH_CONFIG");
    int rc = zt_config_proxy_metadata(mesh ? mesh : "/etc/istio/config/mesh",
                                      get(e, "PROXY_CONFIG"), &md, e->err, e->errlen);
    if (rc)
        return rc;
    const char *cap = get(e, "ISTIO_META_DNS_CAPTURE");
    if (!cap)
        cap = md.dns_capture;
    c->dns_proxy = !cap || strcasecmp(cap, "true") == 0;
    c->resolv_conf = get(e, "ZTUNNEL_RESOLV_CONF");
    if (!c->resolv_conf)
        c->resolv_conf = "/etc/resolv.conf";
    c->preferred_service_ns = get(e, "PREFERED_SERVICE_NAMESPACE");
    const char *addr = get(e, "ISTIO_META_DNS_PROXY_ADDR");
    char md_addr[80] = "";
    if (!addr && md.dns_proxy_addr) {
        snprintf(md_addr, sizeof(md_addr), "%s", md.dns_proxy_addr);
        addr = md_addr;
    }
    zt_proxy_metadata_free(&md);
    if (!addr)
        addr = "localhost:15053";
    const char *colon = strrchr(addr, ':');
    uint64_t port = 0;
    if (!colon || parse_u64(colon + 1, &port) < 0 || port == 0 || port > 65535)
        return bad(e, "ISTIO_META_DNS_PROXY_ADDR", addr, "expected localhost:PORT or IP:PORT");
    char host[64];
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof(host))
        return bad(e, "ISTIO_META_DNS_PROXY_ADDR", addr, "expected localhost:PORT or IP:PORT");
    memcpy(host, addr, hl);
    host[hl] = 0;
    if (strcmp(host, "localhost") == 0) {
        struct zt_ip lo4, lo6;
        zt_ip_parse("127.0.0.1", &lo4);
        zt_ip_parse("::1", &lo6);
        zt_ip_to_sockaddr(&lo4, (uint16_t)port, &c->dns_proxy_addr[0]);
        zt_ip_to_sockaddr(&lo6, (uint16_t)port, &c->dns_proxy_addr[1]);
        c->n_dns_proxy_addr = c->ipv6_enabled ? 2 : 1;
        return 0;
    }
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    struct zt_ip ip;
    if (zt_ip_parse(host, &ip) < 0)
        return bad(e, "ISTIO_META_DNS_PROXY_ADDR", addr, "expected localhost:PORT or IP:PORT");
    zt_ip_to_sockaddr(&ip, (uint16_t)port, &c->dns_proxy_addr[0]);
    c->n_dns_proxy_addr = 1;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    if (*s < '0' || *s > '9')
        return ZT_E_CONFIG;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return ZT_E_CONFIG;
    *out = v;
    return 0;
}

int zt_config_parse_uid(const char *s, uint32_t *out)
{
    uint64_t v;
    if (!s || parse_u64(s, &v) < 0 || v >= UINT32_MAX)
        return ZT_E_CONFIG;
    *out = (uint32_t)v;
    return 0;
}

int zt_config_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    uint64_t total = 0;
    if (!s || !*s)
        return ZT_E_CONFIG;
    if (parse_u64(s, &total) == 0) {
        if (total > UINT64_MAX / 1000)
            return ZT_E_CONFIG;
        *out_ms = total * 1000;
        return 0;
    }
    while (*s) {
        char *end;
        unsigned long long v;
        uint64_t mul;
        if (*s < '0' || *s > '9')
            return ZT_E_CONFIG;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s)
            return ZT_E_CONFIG;
        s = end;
        if (strncmp(s, "ms", 2) == 0) {
            mul = 1;
            s += 2;
        } else if (*s == 's') {
            mul = 1000;
            s++;
        } else if (*s == 'm') {
            mul = 60000;
            s++;
        } else if (*s == 'h') {
            mul = 3600000;
            s++;
        } else if (*s == 'd') {
            mul = 86400000;
            s++;
        } else {
            return ZT_E_CONFIG;
        }
        if (v > (UINT64_MAX - total) / mul)
            return ZT_E_CONFIG;
        total += v * mul;
    }
    *out_ms = total;
    return 0;
}

int zt_config_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {{"", 1},         {"B", 1},         {"K", 1000},       {"KB", 1000},
                 {"Ki", 1024},    {"KiB", 1024},    {"M", 1000000},    {"MB", 1000000},
                 {"Mi", 1 << 20}, {"MiB", 1 << 20}, {"G", 1000000000}, {"GB", 1000000000},
                 {"Gi", 1 << 30}, {"GiB", 1 << 30}};
    char *end;
    unsigned long long v;
    if (!s || *s < '0' || *s > '9')
        return ZT_E_CONFIG;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return ZT_E_CONFIG;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            if (v > UINT64_MAX / units[i].mul)
                return ZT_E_CONFIG;
            *out = v * units[i].mul;
            return 0;
        }
    }
    return ZT_E_CONFIG;
}

static int env_bool(struct envctx *e, const char *name, bool def, bool *out)
{
    const char *v = get(e, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!strcasecmp(v, "true") || !strcmp(v, "1"))
        *out = true;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0"))
        *out = false;
    else
        return bad(e, name, v, "expected true or false");
    return 0;
}

static int env_u32(struct envctx *e, const char *name, uint32_t def, uint32_t min, uint32_t max,
                   uint32_t *out)
{
    const char *v = get(e, name);
    uint64_t x;
    if (!v) {
        *out = def;
        return 0;
    }
    if (parse_u64(v, &x))
        return bad(e, name, v, "expected a non-negative integer");
    if (x < min || x > max)
        return bad(e, name, v, "out of range (%u-%u)", min, max);
    *out = (uint32_t)x;
    return 0;
}

static int env_size(struct envctx *e, const char *name, uint32_t def, uint32_t min, uint32_t max,
                    uint32_t *out)
{
    const char *v = get(e, name);
    uint64_t x;
    if (!v) {
        *out = def;
        return 0;
    }
    if (zt_config_parse_size(v, &x))
        return bad(e, name, v, "expected a size such as 4194304 or 4Mi");
    if (x < min || x > max)
        return bad(e, name, v, "out of range (%u-%u bytes)", min, max);
    *out = (uint32_t)x;
    return 0;
}

static int env_duration(struct envctx *e, const char *name, uint64_t def_ms, uint64_t *out_ms,
                        bool *was_set)
{
    const char *v = get(e, name);
    if (was_set)
        *was_set = v != NULL;
    if (!v) {
        *out_ms = def_ms;
        return 0;
    }
    if (zt_config_parse_duration_ms(v, out_ms))
        return bad(e, name, v, "expected a duration such as 90s, 30m, 24h or seconds");
    return 0;
}

/* A Kubernetes CPU quantity ("2", "1.5", "500m") as whole CPUs, rounded
 * up. Returns 0, or ZT_E_CONFIG for anything else (zero included). */
static int parse_cpu_quantity(const char *s, uint64_t *out)
{
    uint64_t whole = 0;
    bool frac = false, digits = false;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++, digits = true)
        if (whole < 1000000000)
            whole = whole * 10 + (uint64_t)(*p - '0');
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, digits = true)
            frac |= *p != '0';
    bool milli = *p == 'm';
    if (!digits || p[milli ? 1 : 0] != '\0')
        return ZT_E_CONFIG;
    whole += frac;
    if (milli)
        whole = (whole + 999) / 1000;
    if (whole == 0)
        return ZT_E_CONFIG;
    *out = whole;
    return 0;
}

static int env_cpu_quantity(struct envctx *e, const char *name, uint64_t *out)
{
    const char *v = get(e, name);
    *out = 0;
    if (!v)
        return 0;
    if (parse_cpu_quantity(v, out))
        return bad(e, name, v, "expected a positive CPU quantity such as 2, 1.5 or 500m");
    if (*out > MAX_WORKERS)
        return bad(e, name, v, "more than %d CPUs", MAX_WORKERS);
    return 0;
}

/* Worker threads as Istio's ztunnel derives them (wire facts §1). The CPU
 * count is ZTUNNEL_RESOURCE_CPU_LIMIT, else ZTUNNEL_CPU_LIMIT (which Istio's
 * chart fills from the pod's limits.cpu, or the node's cores without a
 * limit), else ncpus. ZTUNNEL_WORKER_THREADS "N%" and "0" refer to it.
 * Without ZTUNNEL_WORKER_THREADS: an explicit ZTUNNEL_RESOURCE_CPU_LIMIT is
 * the count, raised to ZTUNNEL_RESOURCE_CPU_REQUEST; otherwise a quarter of
 * the CPUs rounded up, at least 2 and at least the request. */
static int env_workers(struct envctx *e, unsigned ncpus, unsigned *out)
{
    const char *name = "ZTUNNEL_WORKER_THREADS";
    const char *v;
    uint64_t res_limit, res_request, cpus = ncpus ? ncpus : 1, x;
    size_t len;
    int rc;

    if ((rc = env_cpu_quantity(e, "ZTUNNEL_RESOURCE_CPU_LIMIT", &res_limit)) ||
        (rc = env_cpu_quantity(e, "ZTUNNEL_RESOURCE_CPU_REQUEST", &res_request)))
        return rc;
    if ((v = get(e, "ZTUNNEL_CPU_LIMIT"))) {
        if (parse_u64(v, &x) || x == 0)
            return bad(e, "ZTUNNEL_CPU_LIMIT", v, "expected a whole number of CPUs, at least 1");
        cpus = x;
    }
    if (res_limit)
        cpus = res_limit;

    v = get(e, name);
    if (!v) {
        if (res_limit) {
            x = res_limit > res_request ? res_limit : res_request;
        } else {
            x = (cpus + 3) / 4;
            if (x < res_request)
                x = res_request;
            if (x < 2)
                x = 2;
        }
        /* A large ZTUNNEL_CPU_LIMIT only means a big node: cap, not fail. */
        *out = x > MAX_WORKERS ? MAX_WORKERS : (unsigned)x;
        return 0;
    }
    len = strlen(v);
    if (len > 1 && v[len - 1] == '%') {
        char num[32];
        if (len - 1 >= sizeof(num))
            return bad(e, name, v, "expected N, N%% or 0");
        memcpy(num, v, len - 1);
        num[len - 1] = '\0';
        if (parse_u64(num, &x) || x == 0 || x > 100)
            return bad(e, name, v, "percentage must be 1-100");
        x = (cpus * x + 99) / 100; /* round up so 1% of 2 cores is 1 */
    } else {
        if (parse_u64(v, &x))
            return bad(e, name, v, "expected N, N%% or 0");
        if (x == 0)
            x = cpus;
    }
    if (x > MAX_WORKERS)
        return bad(e, name, v, "at most %d threads", MAX_WORKERS);
    *out = x ? (unsigned)x : 1;
    return 0;
}

/* KEEPALIVE_TIME / KEEPALIVE_INTERVAL (default 180 s): whole seconds within
 * the kernel's TCP_KEEPIDLE / TCP_KEEPINTVL range, so that no socket ends up
 * without the keepalive asked for. */
static int env_keepalive_s(struct envctx *e, const char *name, unsigned *out_s)
{
    uint64_t ms;
    int rc = env_duration(e, name, 180000, &ms, NULL);
    if (rc)
        return rc;
    if (ms < 1000 || ms / 1000 > 32767)
        return bad(e, name, get(e, name), "out of range (1s-32767s)");
    *out_s = (unsigned)(ms / 1000);
    return 0;
}

static int env_log(struct envctx *e, struct zt_config *c)
{
    const char *v = get(e, "LOG_FORMAT");
    c->log_format = ZT_LOG_FORMAT_PLAIN;
    if (v) {
        if (!strcmp(v, "json"))
            c->log_format = ZT_LOG_FORMAT_JSON;
        else if (strcmp(v, "plain") != 0)
            return bad(e, "LOG_FORMAT", v, "expected plain or json");
    }
    c->log_level = ZT_LOG_INFO;
    if ((v = get(e, "LOG_LEVEL"))) {
        if (zt_log_level_parse(v, &c->log_level))
            return bad(e, "LOG_LEVEL", v, "expected error, warn, info, debug or trace");
        return 0;
    }
    if ((v = get(e, "RUST_LOG"))) {
        /* RUST_LOG is "level" or "level,target=level,...": only the bare
         * default level applies to us. */
        const char *p = v;
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            char item[32];
            if (n && n < sizeof(item) && !memchr(p, '=', n)) {
                memcpy(item, p, n);
                item[n] = '\0';
                if (zt_log_level_parse(item, &c->log_level))
                    return bad(e, "RUST_LOG", v, "unknown level \"%s\"", item);
            }
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    return 0;
}

static int env_termination(struct envctx *e, struct zt_config *c)
{
    const char *v;
    bool set;
    int rc =
        env_duration(e, "CONNECTION_TERMINATION_DEADLINE", 5000, &c->termination_deadline_ms, &set);
    c->has_termination_deadline = set;
    if (rc || set)
        return rc;
    if ((v = get(e, "TERMINATION_GRACE_PERIOD_SECONDS"))) {
        uint64_t g;
        if (parse_u64(v, &g) || g > 86400 * 365)
            return bad(e, "TERMINATION_GRACE_PERIOD_SECONDS", v, "expected whole seconds");
        /* Leave the kubelet a margin before its SIGKILL (wire facts 9.4). */
        g = g > 10 ? g - 5 : (g > 1 ? g - 1 : 1);
        c->termination_deadline_ms = g * 1000;
    }
    return 0;
}

int zt_config_from_env_fn(zt_config_getenv_fn *getenv_fn, void *ud, unsigned ncpus,
                          struct zt_config *c, char *err, size_t errlen)
{
    struct envctx e = {.get = getenv_fn, .ud = ud, .err = err, .errlen = errlen};
    const char *v;
    uint64_t x;
    int rc;

    memset(c, 0, sizeof(*c));
    if (errlen)
        err[0] = '\0';
    if ((rc = env_workers(&e, ncpus, &c->worker_threads)))
        return rc;

    v = get(&e, "INPOD_UDS");
    if (!v)
        v = "/var/run/ztunnel/ztunnel.sock";
    if (strlen(v) >= sizeof(c->inpod_uds))
        return bad(&e, "INPOD_UDS", v, "path longer than %zu bytes", sizeof(c->inpod_uds) - 1);
    memcpy(c->inpod_uds, v, strlen(v) + 1);
    if ((rc = env_bool(&e, "INPOD_PORT_REUSE", true, &c->inpod_port_reuse)))
        return rc;
    if ((v = get(&e, "ZTUNNEL_TRUSTED_UID")) && zt_config_parse_uid(v, &c->trusted_uid) < 0)
        return bad(&e, "ZTUNNEL_TRUSTED_UID", v, "expected a numeric uid (0-4294967294)");

    c->packet_mark = 1337;
    if ((v = get(&e, "PACKET_MARK"))) {
        char *end;
        unsigned long long m;
        errno = 0;
        m = strtoull(v, &end, (v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) ? 16 : 10);
        if (errno || *end || end == v || v[0] == '-' || v[0] == '+' || v[0] == ' ')
            return bad(&e, "PACKET_MARK", v, "expected a decimal or 0x-prefixed hex number");
        if (m > UINT32_MAX)
            return bad(&e, "PACKET_MARK", v, "does not fit in 32 bits");
        c->packet_mark = (uint32_t)m;
    }

    c->proxy_mode = ZT_PROXY_MODE_SHARED;
    if ((v = get(&e, "PROXY_MODE"))) {
        if (!strcmp(v, "dedicated"))
            return bad(&e, "PROXY_MODE", v, "dedicated mode is not supported yet");
        if (strcmp(v, "shared") != 0)
            return bad(&e, "PROXY_MODE", v, "expected shared or dedicated");
    }

    c->local_xds_path = get(&e, "LOCAL_XDS_PATH");
    c->local_xds = get(&e, "LOCAL_XDS");
    if (c->local_xds_path && c->local_xds)
        return bad(&e, "LOCAL_XDS", "...", "LOCAL_XDS_PATH and LOCAL_XDS cannot both be set");
    c->local_ca_dir = get(&e, "LOCAL_CA_DIR");

    if ((rc = env_duration(&e, "SECRET_TTL", 86400000, &x, NULL)))
        return rc;
    if (x < 1000)
        return bad(&e, "SECRET_TTL", get(&e, "SECRET_TTL"), "must be at least 1s");
    c->secret_ttl_s = x / 1000;

    c->node_name = get(&e, "NODE_NAME");
    c->cluster_id = get(&e, "ISTIO_META_CLUSTER_ID");
    if (!c->cluster_id)
        c->cluster_id = get(&e, "CLUSTER_ID");
    if (!c->cluster_id)
        c->cluster_id = "Kubernetes";
    c->trust_domain = get(&e, "TRUST_DOMAIN");
    if (!c->trust_domain)
        c->trust_domain = "cluster.local";
    /* The cluster's DNS domain: the DNS proxy's search domains and
     * Kubernetes names (<svc>.<ns>.svc.<domain>). */
    c->cluster_domain = get(&e, "CLUSTER_DOMAIN");
    if (!c->cluster_domain)
        c->cluster_domain = "cluster.local";
    if ((rc = check_domain(&e, "CLUSTER_DOMAIN", c->cluster_domain)))
        return rc;
    /* As Istio's ztunnel: an empty CRL_PATH is the same as none. */
    c->crl_path = get(&e, "CRL_PATH");
    if (c->crl_path && !c->crl_path[0])
        c->crl_path = NULL;
    c->network = get(&e, "NETWORK");
    if (!c->network)
        c->network = "";
    c->xds_address = get(&e, "XDS_ADDRESS");
    /* Certificates from the CA at CA_ADDRESS; by default from the xDS
     * server, as Istio does, unless minted locally (LOCAL_CA_DIR). */
    c->ca_address = get(&e, "CA_ADDRESS");
    /* Each may list several instances (failover); checked here so that a
     * bad entry stops the start with the variable and the entry named. */
    if ((rc = check_targets(&e, "XDS_ADDRESS", c->xds_address)) ||
        (rc = check_targets(&e, "CA_ADDRESS", c->ca_address)))
        return rc;
    if (!c->ca_address && !c->local_ca_dir)
        c->ca_address = c->xds_address;
    /* HTTP/2 PING keepalive on the xDS and CA connections: Istio's
     * ztunnel's 30 s and 10 s by default (tls/control.rs), so a control
     * plane that hangs without closing is left within 40 s. */
    if ((rc = env_duration(&e, "CONTROL_PLANE_KEEPALIVE_INTERVAL", 30000,
                           &c->control_keepalive_interval_ms, NULL)))
        return rc;
    if (c->control_keepalive_interval_ms < 1000 || c->control_keepalive_interval_ms > 3600000)
        return bad(&e, "CONTROL_PLANE_KEEPALIVE_INTERVAL",
                   get(&e, "CONTROL_PLANE_KEEPALIVE_INTERVAL"), "must be between 1s and 1h");
    if ((rc = env_duration(&e, "CONTROL_PLANE_KEEPALIVE_TIMEOUT", 10000,
                           &c->control_keepalive_timeout_ms, NULL)))
        return rc;
    if (c->control_keepalive_timeout_ms < 1000 || c->control_keepalive_timeout_ms > 3600000)
        return bad(&e, "CONTROL_PLANE_KEEPALIVE_TIMEOUT",
                   get(&e, "CONTROL_PLANE_KEEPALIVE_TIMEOUT"), "must be between 1s and 1h");
    c->alt_xds_hostname = get(&e, "ALT_XDS_HOSTNAME");
    c->alt_ca_hostname = get(&e, "ALT_CA_HOSTNAME");
    c->pod_name = or_empty(get(&e, "POD_NAME"));
    c->pod_namespace = or_empty(get(&e, "POD_NAMESPACE"));
    c->service_account = or_empty(get(&e, "SERVICE_ACCOUNT"));
    c->gateway_name = get(&e, "GATEWAY");
    if (!c->gateway_name || !*c->gateway_name)
        c->gateway_name = c->service_account;
    c->jwks_root_ca = get(&e, "JWKS_ROOT_CA");
    if (c->jwks_root_ca && !*c->jwks_root_ca)
        c->jwks_root_ca = NULL;
    if ((rc = env_duration(&e, "JWKS_REFRESH_INTERVAL", 1200000, &x, NULL)))
        return rc;
    if (x < 1000 || x > 86400000)
        return bad(&e, "JWKS_REFRESH_INTERVAL", get(&e, "JWKS_REFRESH_INTERVAL"),
                   "must be between 1s and 24h");
    c->jwks_refresh_s = (uint32_t)(x / 1000);
    c->instance_ip = or_empty(get(&e, "INSTANCE_IP"));
    /* Istio's defaults are "./var/run/...", relative to its container's
     * working directory, which is "/". Resolved against "/" here, so the
     * files read never depend on where the proxy was started. */
    c->xds_root_ca = get(&e, "XDS_ROOT_CA");
    if (!c->xds_root_ca)
        c->xds_root_ca = "/var/run/secrets/istio/root-cert.pem";
    c->ca_root_ca = get(&e, "CA_ROOT_CA");
    if (!c->ca_root_ca)
        c->ca_root_ca = c->xds_root_ca;
    c->auth_token = get(&e, "AUTH_TOKEN");
    if (!c->auth_token)
        c->auth_token = "/var/run/secrets/tokens/istio-token";

    if ((v = get(&e, "ENABLE_ORIG_SRC"))) {
        bool b;
        if ((rc = env_bool(&e, "ENABLE_ORIG_SRC", false, &b)))
            return rc;
        c->enable_orig_src = b ? ZT_TRUE : ZT_FALSE;
    }
    if ((rc = env_bool(&e, "IPV6_ENABLED", true, &c->ipv6_enabled)))
        return rc;
    if ((rc = dns_proxy(&e, c)))
        return rc;
    if ((rc = env_bool(&e, "LOCALHOST_APP_TUNNEL", true, &c->localhost_app_tunnel)))
        return rc;

    if ((rc = env_u32(&e, "POOL_MAX_STREAMS_PER_CONNECTION", 100, 1, 1u << 20,
                      &c->pool_max_streams_per_conn)))
        return rc;
    if ((rc = env_duration(&e, "POOL_UNUSED_RELEASE_TIMEOUT", 300000,
                           &c->pool_unused_release_timeout_ms, NULL)))
        return rc;
    /* HTTP/2 limits: windows up to 2^31-1 (RFC 9113 6.9.1), frames
     * 16 KiB..16 MiB-1 (6.5.2). */
    if ((rc = env_size(&e, "HTTP2_STREAM_WINDOW_SIZE", 4u << 20, 65535, 0x7fffffff,
                       &c->h2_stream_window)))
        return rc;
    if ((rc = env_size(&e, "HTTP2_CONNECTION_WINDOW_SIZE", 16u << 20, 65535, 0x7fffffff,
                       &c->h2_conn_window)))
        return rc;
    if ((rc = env_size(&e, "HTTP2_FRAME_SIZE", 1u << 20, 16384, (1u << 24) - 1, &c->h2_frame_size)))
        return rc;
    if ((rc = env_termination(&e, c)))
        return rc;
    if ((rc = env_log(&e, c)))
        return rc;
    if ((rc = env_bool(&e, "AUTHZ_POLICY_INFO_LOGGING", false, &c->authz_policy_info_logging)))
        return rc;
    if ((rc = env_bool(&e, "KEEPALIVE_ENABLED", true, &c->keepalive_enabled)))
        return rc;
    if ((rc = env_keepalive_s(&e, "KEEPALIVE_TIME", &c->keepalive_time_s)) ||
        (rc = env_keepalive_s(&e, "KEEPALIVE_INTERVAL", &c->keepalive_interval_s)))
        return rc;
    if ((rc = env_u32(&e, "KEEPALIVE_RETRIES", 9, 1, 127, &c->keepalive_retries)))
        return rc;
    return 0;
}

static const char *real_getenv(const char *name, void *ud)
{
    (void)ud;
    return getenv(name);
}

int zt_config_from_env(struct zt_config *out, char *err, size_t errlen)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return zt_config_from_env_fn(real_getenv, NULL, n > 0 ? (unsigned)n : 1, out, err, errlen);
}
