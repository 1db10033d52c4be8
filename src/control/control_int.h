/* Internals shared by the files of src/control/ (not a public API). */
#ifndef ZT_CONTROL_CONTROL_INT_H
#define ZT_CONTROL_CONTROL_INT_H

#include "base/list.h"
#include "control/control.h"
#include "config/dir.h"
#include "control/tokens.h"
#include "h2/grpc.h"
#include "h2/h2conn.h"
#include "loop/dirwatch.h"
#include "state/state.h"
#include "tls/localca.h"
#include "xds/ads.h"
#include "xds/catalog.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#define ZT_CONTROL_ADS_PATH                                                                        \
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#define ZT_CONTROL_CA_PATH "/istio.v1.auth.IstioCertificateService/CreateCertificate"

/* Open connections of one source address (server.c). */
struct zt_control_addr {
    struct zt_control_addr *next; /* hash chain */
    unsigned char ip[16];         /* IPv4 as v4-mapped IPv6 */
    unsigned n;
    bool warned; /* a refusal was logged since it was last under the cap */
};

/* One accepted TLS connection. */
struct zt_control_conn {
    struct zt_list_node link; /* in cp->conns */
    struct zt_control *cp;
    struct zt_h2conn *h2;
    struct zt_control_addr *addr;
    /* Until it opens a stream with a valid token, the connection is on the
     * list of connections waiting to authenticate (cp->waiting), closed at
     * `deadline`. */
    struct zt_list_node wait_link;
    uint64_t deadline; /* loop time, ms */
    char peer[64];     /* "ip:port" for logs */
};

/* Counters and gauges read by the monitoring server's threads. */
struct zt_control_counters {
    atomic_uint_fast64_t config_version; /* accepted configurations, from 1 */
    atomic_uint_fast64_t config_errors;  /* refused reloads */
    atomic_uint_fast64_t connections, ads_streams;
    atomic_uint_fast64_t resources[ZT_ADS_NTYPES];
    atomic_uint_fast64_t pushes[ZT_ADS_NTYPES], acks[ZT_ADS_NTYPES], nacks[ZT_ADS_NTYPES];
    atomic_uint_fast64_t csr, issued, unauthenticated, unauthorized, bad_csr, sign_errors;
    atomic_uint_fast64_t xds_unauthenticated;
    atomic_uint_fast64_t refused, auth_timeouts, accept_pauses;
    atomic_int_fast64_t root_expiry; /* Unix seconds of the earliest root's notAfter */
    atomic_bool ready;
};

#define ZT_CONTROL_INC(field) atomic_fetch_add_explicit(&(field), 1, memory_order_relaxed)
#define ZT_CONTROL_DEC(field) atomic_fetch_sub_explicit(&(field), 1, memory_order_relaxed)
#define ZT_CONTROL_GET(field) atomic_load_explicit(&(field), memory_order_relaxed)

/* One DeltaAggregatedResources stream (control/ads.c). */
struct zt_control_ads;

struct zt_control {
    uv_loop_t *loop;
    int lfd;
    uv_poll_t lpoll;
    uint16_t port;
    char listen_host[64];
    SSL_CTX *tls; /* for new connections */
    bool minted_tls;
    uv_timer_t tls_timer; /* renews a minted server certificate */
    char **server_names;
    size_t n_server_names;
    struct zt_tls_localca *ca;
    struct zt_control_tokens *tokens;
    char *config_dir;
    /* The directory's files as last loaded: a reload reads only those that
     * changed. */
    struct zt_config_dir *dir;
    struct zt_dirwatch *watch; /* config_dir; NULL until started */
    uv_timer_t debounce;
    struct zt_state *state;     /* last good configuration */
    struct zt_xds_catalog *cat; /* its resources */
    struct zt_list conns;       /* of zt_control_conn, newest first */
    struct zt_list streams;     /* of zt_control_ads, newest first */
    /* Limits (control.h). */
    unsigned max_per_addr;
    unsigned auth_timeout_ms;
    struct zt_control_addr **addrs; /* ADDR_BUCKETS hash chains */
    uint64_t addr_seed;
    bool full_warned;
    /* Connections that have not authenticated yet (zt_control_conn
     * through wait_link), oldest first. */
    struct zt_list waiting;
    uv_timer_t auth_timer;
    /* Re-reads the token file and ends the streams of revoked tokens. */
    uv_timer_t token_timer;
    unsigned long token_gen;
    /* Accepting paused after running out of descriptors or memory. */
    uv_timer_t accept_timer;
    unsigned accept_backoff_ms; /* 0 while accepting */
    uint64_t accept_paused_at;
    uint64_t accept_warned_at; /* loop time of the last warning, 0: none */
    bool accept_pause_logged;  /* this pause was warned about */
    unsigned ttl_default, ttl_max;
    struct zt_control_counters n;
    unsigned closing; /* handles still closing after stop */
    bool stopping;
};

/* control/ads.c */
/* `token` is the digest of the token the stream was opened with. */
void zt_control_ads_accept(struct zt_control *cp, struct zt_control_conn *conn, int32_t sid,
                           const char *node, const unsigned char token[ZT_CONTROL_TOKEN_DIGEST]);
/* Ends (UNAUTHENTICATED) every stream whose token is no longer in the
 * table or now names another node. */
void zt_control_ads_revalidate(struct zt_control *cp);
/* Pushes the current catalog to every stream that lacks part of it. */
void zt_control_ads_push_all(struct zt_control *cp);
/* Ends every stream with `status` (stop). */
void zt_control_ads_end_all(struct zt_control *cp, int status, const char *message);

/* control/ca.c */
void zt_control_ca_accept(struct zt_control *cp, struct zt_control_conn *conn, int32_t sid,
                          const char *node);

#endif
