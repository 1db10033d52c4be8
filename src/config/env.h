/* Proxy settings from environment variables (wire facts 3.5).
 *
 * zt_config_from_env() reads the process environment; the _fn variant takes
 * a lookup function so tests can supply their own variables. Every error
 * names the variable, its value and the reason, e.g.
 *   PACKET_MARK="12x": expected a decimal or 0x-prefixed hex number */
#ifndef ZT_CONFIG_ENV_H
#define ZT_CONFIG_ENV_H

#include "base/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum zt_proxy_mode { ZT_PROXY_MODE_SHARED = 0, ZT_PROXY_MODE_DEDICATED = 1 };
enum zt_log_format { ZT_LOG_FORMAT_PLAIN = 0, ZT_LOG_FORMAT_JSON = 1 };
enum zt_tristate { ZT_UNSET = 0, ZT_FALSE = 1, ZT_TRUE = 2 };

/* Plain values; string fields are borrowed from the environment (or from
 * the lookup function's storage) or point at static defaults. NULL means
 * unset. */
struct zt_config {
    unsigned worker_threads; /* resolved count, >= 1 */
    char inpod_uds[108];     /* sun_path size */
    bool inpod_port_reuse;
    uint32_t packet_mark;
    enum zt_proxy_mode proxy_mode;
    const char *local_xds_path; /* LOCAL_XDS_PATH */
    const char *local_xds;      /* LOCAL_XDS inline YAML */
    const char *local_ca_dir;
    uint64_t secret_ttl_s;
    const char *node_name;
    const char *cluster_id;     /* default "Kubernetes" */
    const char *trust_domain;   /* default "cluster.local" */
    const char *cluster_domain; /* "cluster.local", the only value accepted */
    const char *network;        /* default "" */
    const char *xds_root_ca;    /* XDS_ROOT_CA: PEM file or SYSTEM */
    const char *ca_root_ca;     /* CA_ROOT_CA, else XDS_ROOT_CA */
    const char *auth_token;     /* AUTH_TOKEN: bearer token file */
    enum zt_tristate enable_orig_src;
    bool ipv6_enabled;
    uint32_t pool_max_streams_per_conn;
    uint64_t pool_unused_release_timeout_ms;
    uint32_t h2_stream_window;
    uint32_t h2_conn_window;
    uint32_t h2_frame_size;
    bool has_termination_deadline;
    uint64_t termination_deadline_ms; /* derived per 9.4 */
    enum zt_log_format log_format;
    enum zt_log_level log_level;
    /* KEEPALIVE_*: whole seconds (the kernel's unit; fractions dropped, as
     * Istio's ztunnel does), 1..32767; retries 1..127. */
    unsigned keepalive_time_s;
    unsigned keepalive_interval_s;
    uint32_t keepalive_retries;
    bool keepalive_enabled;
    bool authz_policy_info_logging; /* AUTHZ_POLICY_INFO_LOGGING: decisions at info */
    uint32_t trusted_uid; /* ZTUNNEL_TRUSTED_UID: node agent uid besides root (0 = root only) */
    const char *crl_path; /* CRL_PATH: HBONE peer CRLs; NULL (unset or empty) = off */
    /* The control plane. NULL when unset or empty. */
    const char *xds_address;      /* XDS_ADDRESS: istiod's xDS, host:port[,host:port...] */
    const char *ca_address;       /* CA_ADDRESS, else XDS_ADDRESS unless LOCAL_CA_DIR */
    const char *alt_xds_hostname; /* ALT_XDS_HOSTNAME: name checked in istiod's cert */
    const char *alt_ca_hostname;  /* ALT_CA_HOSTNAME */
    /* CONTROL_PLANE_KEEPALIVE_INTERVAL / _TIMEOUT: HTTP/2 PING on the xDS
     * and CA connections (default 30 s / 10 s, as Istio's ztunnel), 1 s to
     * 1 h each. */
    uint64_t control_keepalive_interval_ms;
    uint64_t control_keepalive_timeout_ms;
    /* Who the proxy is, for its xDS node id and metadata ("" when unset;
     * INSTANCE_IP is "1.1.1.1" in the node id then, as Istio's ztunnel). */
    const char *pod_name;      /* POD_NAME */
    const char *pod_namespace; /* POD_NAMESPACE */
    /* SERVICE_ACCOUNT: `ztunnel waypoint`'s own (its identity when its
     * workload is not in the configuration yet); "" if unset. */
    const char *service_account;
    /* GATEWAY: the waypoint's Gateway name (routes whose parentRef is that
     * Gateway apply to all its services); default SERVICE_ACCOUNT, as
     * Istio names a waypoint's service account after its Gateway. */
    const char *gateway_name;
    /* JWKS_ROOT_CA: PEM roots that verify jwksUri servers (`ztunnel
     * waypoint`); NULL: the system's. */
    const char *jwks_root_ca;
    uint32_t jwks_refresh_s; /* JWKS_REFRESH_INTERVAL: re-fetch period, default 20m */
    const char *instance_ip; /* INSTANCE_IP */
    /* The DNS proxy (wire facts 9.1). Proxy metadata as Istio's ztunnel
     * reads it: ISTIO_META_* variables, else PROXY_CONFIG's or the mesh
     * config's (ZTUNNEL_MESH_CONFIG, default /etc/istio/config/mesh)
     * proxyMetadata: DNS_CAPTURE (anything but "true", any case, turns the
     * proxy off; unset = on) and DNS_PROXY_ADDR ("localhost:PORT" =
     * 127.0.0.1 and ::1, or IP:PORT). */
    bool dns_proxy;
    struct sockaddr_storage dns_proxy_addr[2];
    size_t n_dns_proxy_addr;
    const char *resolv_conf;          /* ZTUNNEL_RESOLV_CONF: upstream resolvers */
    const char *preferred_service_ns; /* PREFERED_SERVICE_NAMESPACE (Istio's spelling) */
    bool localhost_app_tunnel;        /* LOCALHOST_APP_TUNNEL (default true) */
};

/* Returns the value of a variable, or NULL if unset. */
/* The proxy metadata this proxy reads (NULL: not set), from the mesh config
 * file's defaultConfig.proxyMetadata and PROXY_CONFIG's proxyMetadata (it
 * wins), keys with or without ISTIO_META_, as Istio's ztunnel. A missing
 * file is no error; a file or variable that is not valid YAML is, with its
 * name and line in err. Free with zt_proxy_metadata_free. */
struct zt_proxy_metadata {
    char *dns_capture;
    char *dns_proxy_addr;
};
int zt_config_proxy_metadata(const char *mesh_path, const char *pc_env,
                             struct zt_proxy_metadata *md, char *err, size_t errlen);
void zt_proxy_metadata_free(struct zt_proxy_metadata *md);

typedef const char *zt_config_getenv_fn(const char *name, void *ud);

/* Fills *out from the environment. ncpus is the core count used for "N%"
 * and 0 of ZTUNNEL_WORKER_THREADS. Strings returned point into the
 * environment (getenv) or into the lookup function's storage, which must
 * outlive *out. Returns 0 or ZT_E_CONFIG with a message in err. */
int zt_config_from_env(struct zt_config *out, char *err, size_t errlen);
int zt_config_from_env_fn(zt_config_getenv_fn *getenv_fn, void *ud, unsigned ncpus,
                          struct zt_config *out, char *err, size_t errlen);

/* Parses a duration "90s", "30m", "24h", "500ms", "1h30m" or plain seconds.
 * Returns 0 or ZT_E_CONFIG. */
int zt_config_parse_duration_ms(const char *s, uint64_t *out_ms);

/* Parses a numeric uid (ZTUNNEL_TRUSTED_UID): decimal 0-4294967294, as
 * 4294967295 is (uid_t)-1, "no uid". Returns 0 or ZT_E_CONFIG. */
int zt_config_parse_uid(const char *s, uint32_t *out);

/* Parses a size "4194304", "4Mi", "4MiB", "16Ki", "1G". Returns 0 or
 * ZT_E_CONFIG. */
int zt_config_parse_size(const char *s, uint64_t *out);

#endif
