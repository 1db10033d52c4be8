/* The DNS proxy's I/O: one server per pod, on the worker loop that serves
 * the pod, listening on 15053 over UDP and TCP inside the pod's network
 * namespace (the sockets are the caller's to open there). Each query goes
 * through zt_dns_answer(); what is not ours goes to the upstream resolvers
 * of resolv.conf, over UDP and again over TCP when the upstream truncates,
 * from sockets the caller opens in the pod's namespace (ops->socket), so
 * that the upstream sees the pod and the pod's redirection lets them pass.
 *
 * Bounded: a query over UDP is at most ZT_DNS_UDP_QUERY_MAX bytes (a
 * larger one is answered FORMERR), a TCP client at most ZT_DNS_TCP_CLIENTS
 * at once per pod, each idle for at most ZT_DNS_TCP_IDLE_MS, and at most
 * ZT_DNS_FORWARDS queries wait for upstreams at once (more get SERVFAIL).
 *
 * Threading: everything runs on `loop`'s thread. */
#ifndef ZT_DNS_SERVER_H
#define ZT_DNS_SERVER_H

#include "dns/dns.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define ZT_DNS_UDP_QUERY_MAX 4096
#define ZT_DNS_TCP_CLIENTS 64
#define ZT_DNS_TCP_IDLE_MS 10000
#define ZT_DNS_FORWARDS 256
#define ZT_DNS_MAX_UPSTREAMS 3 /* as glibc's MAXNS */

/* The upstream resolvers, from a resolv.conf. */
struct zt_dns_upstreams {
    struct sockaddr_storage addr[ZT_DNS_MAX_UPSTREAMS];
    size_t n;
    unsigned timeout_ms; /* per try: "options timeout:N" (default 5 s, at most 30 s) */
    unsigned attempts;   /* rounds over all upstreams: "options attempts:N" (2, at most 5) */
};

/* Reads nameserver lines (IPv4 or IPv6, port 53; the first 3, as glibc)
 * and the timeout and attempts options from the resolv.conf at path.
 * Returns 0, or a negative errno / ZT_E_CONFIG with "path:line: reason" in
 * err. A file without nameservers is not an error (out->n == 0: every
 * forwarded query is then answered SERVFAIL). */
int zt_dns_upstreams_load(const char *path, struct zt_dns_upstreams *out, char *err, size_t errlen);

/* One query handled, for metrics and logs. */
struct zt_dns_event {
    const struct zt_dns_query *q;
    const struct zt_workload *client; /* NULL: unknown */
    bool tcp;                         /* the client asked over TCP */
    bool forwarded;                   /* sent upstream */
    bool upstream_failed;             /* ... and no upstream answered */
    uint64_t upstream_us;             /* time the upstream took (forwarded only) */
};

struct zt_dns_server_ops {
    /* The snapshot and the pod's workload (NULL while unknown) to answer a
     * query with; borrowed until the callback returns to the loop. */
    const struct zt_state *(*state)(void *ud);
    const struct zt_workload *(*client)(void *ud);
    /* A new non-blocking socket of family and type (SOCK_DGRAM or
     * SOCK_STREAM) for an upstream query, or a negative errno. */
    int (*socket)(void *ud, int family, int type);
    /* Called once per query answered or forwarded (may be NULL). */
    void (*observe)(void *ud, const struct zt_dns_event *ev);
};

struct zt_dns_server;

/* Starts serving on the given bound UDP sockets and listening TCP sockets
 * (up to 2 of each; the server owns them from now on, even on failure).
 * opts, ups and ops are borrowed and must outlive the server; ud is passed
 * to ops. Returns the server, or NULL with *err set (a negative errno). */
struct zt_dns_server *zt_dns_server_new(uv_loop_t *loop, const int *udp_fds, size_t n_udp,
                                        const int *tcp_fds, size_t n_tcp,
                                        const struct zt_dns_opts *opts,
                                        const struct zt_dns_upstreams *ups,
                                        const struct zt_dns_server_ops *ops, void *ud, int *err);

/* Stops serving: listeners, clients and upstream queries are closed;
 * `closed(arg)` runs once every handle is closed and the server freed.
 * ops are not called any more from now on. */
void zt_dns_server_close(struct zt_dns_server *s, void (*closed)(void *arg), void *arg);

#endif
