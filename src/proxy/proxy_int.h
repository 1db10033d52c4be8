/* Private to src/proxy: workers, pod instances and proxied connections. */
#ifndef ZT_PROXY_INT_H
#define ZT_PROXY_INT_H

#include "authz/authz.h"
#include "dns/resolver.h"
#include "base/buf.h"
#include "base/list.h"
#include "hbone/pool.h"
#include "loop/worker.h"
#include "proxy/proxy.h"
#include "proxy/relay.h"
#include "telemetry/headers.h"
#include "telemetry/metrics.h"
#include "tls/spiffe.h"

#include <stdatomic.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct zt_pw;
struct zt_pod_inst;
struct zt_parked;
struct zt_in_wait;

/* What the control loop knows of a pod; shared read-only by the workers. */
struct zt_pod_shared {
    atomic_uint refs;
    int netns_fd;
    char uid[256];
    struct zt_zds_workload_info info;
};

enum zt_listener_kind { ZT_LS_OUTBOUND, ZT_LS_INBOUND_PLAIN, ZT_LS_INBOUND_HBONE, ZT_LS_COUNT };
/* The classes of accepted connections spread over the workers apart:
 * applications' (15001 and 15006) and HBONE (15008). */
enum zt_spread { ZT_SPREAD_APP, ZT_SPREAD_HBONE, ZT_SPREAD_COUNT };

struct zt_listener {
    struct zt_pod_inst *pod;
    enum zt_listener_kind kind;
    int fd; /* -1: not opened (an L7 pod has only 15008) */
    uv_poll_t poll;
    /* Out of descriptors or memory, accepting pauses for backoff_ms
     * (0 while accepting). */
    uv_timer_t backoff;
    unsigned backoff_ms;
    uint64_t warned_at;  /* loop time of the last warning, 0: none */
    bool backoff_logged; /* this pause was warned about */
};

/* An identity string shared by the connections that carry it (most of a
 * pod's carry the same one or two). Refcounted on its worker's thread only. */
struct zt_ident {
    unsigned refs;
    char s[];
};
/* The identities a pod's connections took last, looked up before copying. */
#define ZT_POD_IDENTS 4

/* A pod as served by one worker. */
struct zt_pod_inst {
    struct zt_pw *pw;
    struct zt_pod_shared *shared;
    struct zt_listener ls[ZT_LS_COUNT];
    struct zt_dns_server *dns; /* on one worker of the pod's; NULL on the others */
    struct zt_hbone_pool *pool;
    struct zt_ca_identity *dial_ident;      /* identity presented by the last dial */
    struct zt_list conns;                   /* of zt_conn: proxied connections */
    struct zt_list inbounds;                /* of zt_inbound: HBONE server connections */
    struct zt_parked *parked;               /* outbound sockets waiting for the pod's workload */
    struct zt_parked *in_parked;            /* plaintext inbound sockets, the same */
    unsigned n_parked;                      /* all of the pod's waiting sockets and requests */
    unsigned n_cert_waits;                  /* inbounds holding their socket for the certificate */
    struct zt_ident *idents[ZT_POD_IDENTS]; /* each holding a reference */
    unsigned ident_next;                    /* the slot the next new one takes */
    struct zt_pod_inst *prev, *next;
    int handles_open;
    bool closing;
    bool listeners_closed;
};

/* Per-worker state. */
struct zt_pw {
    struct zt_proxy *proxy;
    struct zt_worker worker;
    const struct zt_state *state; /* this worker's reference */
    /* Hostname endpoints' addresses (outbound.c), from the proxy's own
     * namespace as Istio's ztunnel resolves them. */
    struct zt_dns_resolver *resolver;
    struct zt_pod_inst *pods;
    uint64_t next_conn_id;
    /* Connections with stream bytes to write to their socket, flushed once
     * per loop iteration after all reads (one send for many DATA frames). */
    uv_check_t flush_check;
    struct zt_conn *flush_head;
    bool is_h2_flush_queued; /* stream_resume queued a connection (zt_h2conn_flush_soon) */
    struct zt_list dead;     /* of zt_conn: ended, freed at the next check (no handle left) */
    /* Sockets whose poll interest changed this loop iteration, applied just
     * before the loop waits (zt_tcp_ep.wanted): interest that goes off and
     * on again within one iteration, as a relay's reads do under
     * backpressure, costs no epoll_ctl. */
    uv_prepare_t poll_prepare;
    struct zt_tcp_ep **poll_dirty;
    size_t n_poll_dirty, cap_poll_dirty;
    /* Proxied and HBONE server connections alive on this worker; read by
     * the control loop while draining. */
    atomic_uint live;
    /* Connections this worker serves, by the listener class they came
     * from, for spreading new ones (proxy.c, place): HBONE ones from the
     * moment one is placed here until zt_inbound's unlink; application ones
     * (15001, 15006) while their zt_conn lives (is_accepted), and those
     * posted here and not yet taken in app_posted. */
    atomic_uint conns_in[ZT_SPREAD_COUNT];
    atomic_uint app_posted;
    bool draining;
    void *l7; /* the L7 layer's per-worker context (opts.l7), else NULL */
    /* Retries whatever waits for its pod's workload (zt_outbound_park_*,
     * zt_inbound_park_*) while anything does. */
    uv_timer_t park_timer;
    unsigned n_parked;
};

struct zt_proxy {
    uv_loop_t *control;
    unsigned next_dns_worker; /* the worker that serves the next pod's DNS */
    struct zt_proxy_opts opts;
    char trust_domain[256];
    char node[256];
    char *network; /* owned copy of opts.network */
    struct zt_ca_mgr *ca;
    struct zt_pw *pws;
    unsigned nworkers;
    /* Connections accepted by one worker and served by another. */
    atomic_ullong moved[ZT_SPREAD_COUNT];
    struct zt_pod_shared **pods; /* control-thread registry */
    unsigned npods, cap_pods;
    /* Draining (zt_proxy_drain). */
    uv_timer_t drain_timer;
    uint64_t drain_deadline;
    void (*drain_done)(void *ud);
    void *drain_ud;
    bool drain_timer_init;
    /* tcp_migrate_req could not be turned on in some pod (logged once). */
    bool is_migrate_warned;
};

enum zt_conn_kind { ZT_CONN_OUTBOUND, ZT_CONN_INBOUND_HBONE, ZT_CONN_INBOUND_PLAIN };

/* Why a connection failed, as Istio's response_flags label says it. */
enum zt_close_reason {
    ZT_CLOSE_NONE,           /* "-" */
    ZT_CLOSE_CONNECT,        /* the upstream could not be reached */
    ZT_CLOSE_DENY,           /* refused by policy */
    ZT_CLOSE_IDENTITY,       /* no identity to present or to expect, or the wrong one */
    ZT_CLOSE_TLS,            /* the TLS handshake failed */
    ZT_CLOSE_NETWORK_POLICY, /* the upstream never answered */
    ZT_CLOSE_CERT_REVOKED,   /* the peer's certificate was revoked */
    ZT_CLOSE_REASON_COUNT
};
/* The response_flags label: "-" for ZT_CLOSE_NONE. */
const char *zt_close_reason_flag(enum zt_close_reason why);

/* An IPv4 or IPv6 address and port of a connection. */
union zt_conn_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};
void zt_conn_addr_set(union zt_conn_addr *a, const struct sockaddr *sa);
/* "ip:port" or "[ip6]:port"; "" when none. Returns buf. */
const char *zt_conn_addr_str(const union zt_conn_addr *a, char *buf, size_t cap);
#define ZT_CONN_ADDR_STR_MAX 64

/* A TCP socket as a relay endpoint (conn.c). */
struct zt_tcp_ep {
    struct zt_endpoint ep;
    struct zt_conn *conn;
    int fd;
    uv_poll_t poll;
    uint8_t events;     /* polled for (UV_READABLE | UV_WRITABLE) */
    uint8_t wanted;     /* to poll for from the next wait on */
    bool is_poll_dirty; /* on the worker's poll_dirty list */
    bool is_open;       /* poll handle initialized */
    bool is_connecting; /* non-blocking connect in flight */
};

/* An HBONE stream as a relay endpoint (conn.c). Its DATA can only be taken
 * while nghttp2 hands it over (on_data) and given while nghttp2 asks for a
 * body (its data source callback); those moments' buffers are the worker
 * thread's (conn.c), not kept per stream. */
struct zt_stream_ep {
    struct zt_endpoint ep; /* always a conn's b.st */
    struct zt_h2conn *h2;  /* NULL once the stream is gone */
    int32_t sid;
    bool is_rx_eof;       /* the peer ended its side */
    bool is_eof_wanted;   /* the relay shut our side ... */
    bool is_eof_sent;     /* ... and END_STREAM was handed to nghttp2 */
    bool is_deferred;     /* no body read under way in nghttp2: resume to send */
    bool is_final_status; /* inbound: a non-200 status ends the stream */
};

/* One proxied connection: a relay between side A, always a TCP socket in
 * the pod, and side B, a TCP socket (passthrough, plain inbound) or an
 * HBONE stream. Data A->B is "up", B->A "down". Its state is the tunnel's
 * (c->relay.state). */
struct zt_conn {
    uint64_t id;
    struct zt_pod_inst *pod;
    struct zt_relay relay;
    struct zt_tcp_ep a;
    /* Side B: a stream inline (most connections), or a socket on the heap
     * (passthrough, plaintext inbound), NULL until set. */
    struct {
        struct zt_stream_ep st;
        struct zt_tcp_ep *tcp;
    } b;
    enum zt_conn_kind kind;
    enum zt_close_reason reason; /* response_flags */
    int handles_open;
    bool has_stream;  /* b is b.st */
    bool in_flush;    /* on the worker's flush list */
    bool is_accepted; /* side A came from 15001 or 15006: counted in conns_in[ZT_SPREAD_APP] */
    bool mtls;        /* outbound over HBONE */
    struct zt_hbone_waiter waiter;
    struct zt_outbound_dns *dns_wait; /* resolving the endpoint's hostname */
    uint64_t start_ms;
    struct zt_list_node link;   /* in pod->conns, then (ended) maybe in pw->dead */
    struct zt_conn *flush_next; /* the worker's flush list */
    /* access log: addresses kept as they are, formatted when logged
     * (zt_conn_addr_str); family 0 = none. Inbound, policies are checked
     * (and re-checked when they change, zt_conn_authz) on src_addr and the
     * address asked for: upstream_addr over HBONE, else dst_addr. */
    union zt_conn_addr src_addr, dst_addr, hbone_addr;
    /* Inbound HBONE: the pod's address and the port the target resolved to
     * (zt_inbound_route), and for a PROXY application tunnel the
     * destination its header names (family 0: no header). */
    union zt_conn_addr upstream_addr, tunnel_dst;
    /* Identities proven by mTLS, for the access log, metrics and policy
     * re-checks: the s of a struct zt_ident (exactly their length, shared
     * with the pod's other connections that carry the same), NULL when
     * none. Set with zt_conn_set_identity(); released with the connection. */
    const char *src_identity, *dst_identity;
    /* Telemetry: the snapshot the peers below come from stays referenced
     * while the connection lives, so they can label its metrics at close. */
    const struct zt_state *snap;
    const struct zt_workload *src_wl, *dst_wl;
    const struct zt_service *dst_svc;
    /* Inbound from a source not known by IP: who it says it is (request
     * baggage), for telemetry only. Heap, NULL when unused. */
    struct zt_telemetry_baggage *src_bag;
    struct zt_tcp_series *series; /* opened under these labels */
    /* Outbound double HBONE (outbound_dhbone.c): heap, NULL when unused. */
    struct zt_dhbone *dh;
};

static inline bool zt_conn_closed(const struct zt_conn *c)
{
    return zt_relay_done(&c->relay);
}

/* The HTTP/2 connection carrying the conn's stream, NULL if none (any more). */
static inline struct zt_h2conn *zt_conn_h2(const struct zt_conn *c)
{
    return c->has_stream ? c->b.st.h2 : NULL;
}

/* An HBONE server connection accepted on a pod's 15008. Until the pod's
 * certificate is at hand it is only the accepted socket (fd, cert_wait
 * set, h2 NULL); then the TLS + HTTP/2 session owns the socket. */
struct zt_inbound {
    struct zt_pod_inst *pod;
    struct zt_h2conn *h2;
    int fd;                       /* while waiting for the certificate, else -1 */
    struct zt_ca_wait *cert_wait; /* while waiting for the certificate */
    struct sockaddr_storage local, peer;
    char peer_identity[ZT_SPIFFE_ID_MAX + 1];
    struct zt_in_wait *waits; /* requests waiting for the pod's workload */
    bool established;         /* TLS handshake completed */
    struct zt_list_node link; /* in pod->inbounds */
};

/* conn.c */
struct zt_conn *zt_conn_new(struct zt_pod_inst *pod, enum zt_conn_kind kind, int afd);
/* Side B is a TCP socket `fd` (connect in flight when connecting is true). */
void zt_conn_set_tcp_b(struct zt_conn *c, int fd, bool connecting);
/* Side A is TCP socket `fd` (created after the conn; inbound HBONE upstream). */
void zt_conn_set_tcp_a(struct zt_conn *c, int fd, bool connecting);
/* Side B is stream `sid` of `h2`. */
void zt_conn_set_stream(struct zt_conn *c, struct zt_h2conn *h2, int32_t sid);
/* The HBONE CONNECT for the conn's stream is sent. */
void zt_conn_connect_sent(struct zt_conn *c);
/* Connection established: start moving bytes. */
void zt_conn_start_relay(struct zt_conn *c);
/* Replaces *slot (c->src_identity or c->dst_identity) with id (borrowed:
 * a shared copy is kept); NULL or "" clears it. */
void zt_conn_set_identity(struct zt_conn *c, const char **slot, const char *id);
/* Drops the pod's references to its recent identities (the pod is freed). */
void zt_pod_idents_release(struct zt_pod_inst *pod);
/* What inbound policies are checked on for `c` (see src_addr above);
 * out->src_identity borrows c's. */
void zt_conn_authz(const struct zt_conn *c, struct zt_authz_conn *out);
/* Ends the connection; `error` (may be NULL) goes to the access log. */
void zt_conn_close(struct zt_conn *c, const char *error);
/* Ends the connection as failed for `why`, the access log saying the
 * printf-formatted message. */
void zt_conn_fail(struct zt_conn *c, enum zt_close_reason why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* zt_conn_fail(c, ZT_CLOSE_CONNECT, "connect to <to>: <err>"). */
void zt_conn_fail_connect(struct zt_conn *c, const union zt_conn_addr *to, int err);
extern const struct zt_h2_stream_ops zt_conn_stream_ops;
/* "connection opened" at DEBUG, once the peers are known. */
void zt_conn_log_opened(struct zt_conn *c);
/* Called by conn.c when side A or B finished connecting (fd is writable). */
void zt_conn_on_connected(struct zt_conn *c, int err);

/* Starts the per-worker write batching and poll updates (call on the
 * worker's thread). */
void zt_conn_worker_init(struct zt_pw *pw);
/* At shutdown, once every connection was closed: frees the connections that
 * ended since the last loop turn and the worker's own lists. */
void zt_conn_worker_cleanup(struct zt_pw *pw);

/* telemetry.c: the peers of a connection and its istio_tcp_* metrics.
 * set_peers() records the workloads and service (from the worker's current
 * snapshot, which the connection then keeps referenced until close);
 * metrics_open() counts it as opened once they are known; metrics_close()
 * (from zt_conn_close, after the access log) counts the close and drops the
 * snapshot. pod_metrics_failed() counts an attempt refused before any
 * connection object exists. */
/* The W3C baggage Istio sends for `wl` (NULL or unknown: empty string). */
void zt_workload_baggage(const struct zt_workload *wl, char *buf, size_t cap);
void zt_conn_set_peers(struct zt_conn *c, const struct zt_workload *src_wl,
                       const struct zt_workload *dst_wl, const struct zt_service *svc);
void zt_conn_metrics_open(struct zt_conn *c);
void zt_conn_metrics_close(struct zt_conn *c);
void zt_pod_metrics_failed(struct zt_pod_inst *pod, enum zt_conn_kind kind,
                           const struct zt_workload *src_wl, const char *src_principal,
                           const struct zt_workload *dst_wl, enum zt_close_reason why);

/* outbound.c / inbound.c */
void zt_outbound_accept(struct zt_pod_inst *pod, int fd);

/* A connection for a pod whose own workload is not in the configuration
 * yet waits for it up to ZT_SELF_WAIT_MS, as Istio's ztunnel waits for a new
 * pod's workload: outbound and plaintext inbound sockets are held unread,
 * inbound HBONE requests unanswered. Then it is refused as before. At most
 * ZT_SELF_WAIT_MAX wait per pod. */
#define ZT_SELF_WAIT_MS 5000
#define ZT_SELF_WAIT_MAX 1024
/* A socket held meanwhile. */
struct zt_parked {
    struct zt_parked *next;
    int fd;
    uint64_t deadline; /* uv_now of the worker loop */
};
void zt_outbound_worker_init(struct zt_pw *pw);
/* Count one more (hold) or one less (release) waiting thing on pw; the
 * retry timer runs while any waits. */
void zt_pw_park_hold(struct zt_pw *pw);
void zt_pw_park_release(struct zt_pw *pw);
/* A new state arrived (or the timer fired): go on with the connections
 * whose pod's workload is now known, refuse the expired ones; `all` refuses
 * every waiting one (drain). */
void zt_outbound_park_retry(struct zt_pw *pw, bool all);
void zt_inbound_park_retry(struct zt_pw *pw, bool all);
/* The pod goes away: its waiting sockets are closed (waiting HBONE
 * requests go with their connections). */
void zt_outbound_park_drop(struct zt_pod_inst *pod);
void zt_inbound_park_drop(struct zt_pod_inst *pod);
void zt_inbound_plain_accept(struct zt_pod_inst *pod, int fd);
/* Serves an accepted HBONE socket on pod's worker, whose
 * conns_in[ZT_SPREAD_HBONE] already counts it. */
void zt_inbound_hbone_accept(struct zt_pod_inst *pod, int fd);
/* Accepted HBONE sockets one pod (on one worker) holds while its
 * certificate is being issued; more are closed at once, so a flood of
 * handshakes cannot pile up file descriptors behind a slow CA. */
#define ZT_INBOUND_CERT_WAIT_MAX 256
/* Closes an HBONE server connection (async through h2), or at once one
 * still waiting for its certificate. */
void zt_inbound_close(struct zt_inbound *in);
/* Called when a conn connecting on behalf of an inbound stream completes. */
void zt_inbound_upstream_ready(struct zt_conn *c, int err);
void zt_outbound_upstream_ready(struct zt_conn *c, int err);
/* The conn ends while its endpoint's hostname is being resolved. */
struct zt_outbound_dns;
void zt_outbound_dns_cancel(struct zt_conn *c);
/* The worker's resolver: made at worker start, freed at shutdown. */
void zt_outbound_worker_cleanup(struct zt_pw *pw);

/* outbound.c: sends c's CONNECT on h2 and makes the stream c's side B:
 * `authority` (NULL: c->hbone_addr formatted), the source's baggage,
 * forwarded and traceparent, and x-forwarded-network: `network` when not
 * NULL (double HBONE's inner CONNECT). Closes c on failure. */
void zt_outbound_open_stream(struct zt_conn *c, struct zt_h2conn *h2, const char *authority,
                             const char *network);
/* The server identities an HBONE client to wl accepts: wl's own and the
 * SPIFFE ids among sans, sorted, de-duplicated, comma-joined (a pool key's
 * dst_ids). 0, or ZT_E_IDENTITY when wl's identity is not a valid SPIFFE
 * id (nothing could be verified). */
int zt_outbound_dst_ids(const struct zt_workload *wl, char *const *sans, size_t n_sans, char *out,
                        size_t cap);
/* The CONNECT headers of c (as above, minus the authority), in caller
 * storage; kv gets *n name/value pairs pointing into it. */
struct zt_connect_headers {
    char baggage[1024], forwarded[384], traceparent[64];
    const char *kv[8];
    size_t n;
};
void zt_outbound_connect_headers(struct zt_conn *c, const char *network,
                                 struct zt_connect_headers *h);

/* outbound_dhbone.c: double HBONE (wire facts 2.7). prepare records the
 * plan's inner half for c (up borrowed): the authority
 * "<service hostname>:<port>" and the inner SANs; returns 0, or
 * ZT_E_IDENTITY when no SAN is a SPIFFE id (nothing could be verified), or
 * ZT_E_TOO_BIG. start runs once the pooled outer connection to the gateway
 * is OPEN: the outer CONNECT on it, then TLS + HTTP/2 inside the stream
 * (never pooled) and the inner CONNECT; failures close c. end is called
 * when c finishes: the inner connection is shut down gracefully and
 * forgets c. */
struct zt_upstream;
int zt_outbound_dhbone_prepare(struct zt_conn *c, const struct zt_upstream *up);
void zt_outbound_dhbone_start(struct zt_conn *c, struct zt_h2conn *outer);
void zt_outbound_dhbone_end(struct zt_conn *c);
/* The CONNECTs' authority for the access log; NULL when c is not double
 * HBONE. */
const char *zt_outbound_dhbone_authority(const struct zt_conn *c);

/* proxy.c */
const struct zt_workload *zt_pod_self(struct zt_pod_inst *pod);
struct zt_sock_opts;
void zt_pod_sock_opts(struct zt_pod_inst *pod, struct zt_sock_opts *o);
int zt_pod_identity(struct zt_pod_inst *pod, struct zt_spiffe_id *out);
/* One of the pod's handles has closed (frees a closing pod with the last). */
void zt_pod_handle_gone(struct zt_pod_inst *pod);

/* dns.c: the pod's DNS listeners, opened inside netns_fd (control
 * thread): UDP fds[0..n_udp), then TCP, at most 4 in all. Returns 0 or a
 * negative errno (nothing left open). */
int zt_pod_dns_open(const struct zt_proxy_opts *opts, int netns_fd, int *fds, size_t *n_udp,
                    size_t *n_tcp);
/* Starts the pod's DNS server on its worker (which takes the fds). */
void zt_pod_dns_start(struct zt_pod_inst *pod, const int *fds, size_t n_udp, size_t n_tcp);
/* Stops it; the pod counts it as an open handle until it has closed. */
void zt_pod_dns_stop(struct zt_pod_inst *pod);
/* telemetry.c: the DNS metrics of one query. */
struct zt_dns_event;
void zt_pod_dns_metrics(struct zt_pod_inst *pod, const struct zt_dns_event *ev);
/* telemetry.c: istio_on_demand_dns_total for a lookup of dst's hostname. */
void zt_pod_on_demand_dns(struct zt_pod_inst *pod, const struct zt_workload *dst);

#endif
