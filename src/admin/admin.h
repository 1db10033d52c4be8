/* The three small HTTP/1.1 servers of wire facts §7.3, §7.4 and §1.1:
 *
 *   admin   127.0.0.1:15000  /  /config_dump  /logging  /quitquitquit
 *   stats   [::]:15020       /metrics  /stats/prometheus
 *   ready   [::]:15021       /healthz/ready
 *
 * Each server is one libmicrohttpd daemon with its own internal polling
 * thread (epoll when available). Abuse is bounded per daemon: at most
 * conn_limit connections per client address and 2 * conn_limit in all; a
 * connection over either is accepted and closed at once, except that a full
 * daemon makes room for an address holding at least two fewer than the
 * address holding the most, by shutting down that one's oldest connection.
 * So every address keeps a fair share however a few others behave (idle,
 * trickling, or reading slowly). Also a per-connection memory pool (request
 * headers that do not fit are refused by libmicrohttpd with 431), request
 * bodies over ZT_ADMIN_MAX_BODY refused with 413, and connections idle for
 * conn_timeout_s seconds closed. None of these routes needs a request body;
 * a small one is read and ignored.
 *
 * The admin server (loopback only) also refuses, with 403, every request
 * that a web page in a local browser could send: one with an Origin header
 * (cross-site requests) or whose Host is not localhost, 127.0.0.1 or [::1]
 * with an optional port (DNS rebinding), or that has no or several Hosts.
 *
 * Threads: every zt_admin_ops callback runs on one of the daemons' threads,
 * possibly at the same time as others (three daemons), so the callbacks must
 * be thread-safe. /logging changes the process-wide level through
 * zt_log_set_level(), which is thread-safe. */
#ifndef ZT_ADMIN_ADMIN_H
#define ZT_ADMIN_ADMIN_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Request bodies larger than this are answered 413. */
#define ZT_ADMIN_MAX_BODY (64 * 1024)
/* Per-connection memory pool (request line + headers must fit; else 431). */
#define ZT_ADMIN_CONN_MEMORY (32 * 1024)
#define ZT_ADMIN_DEFAULT_CONN_LIMIT 64
#define ZT_ADMIN_DEFAULT_TIMEOUT_S 10

struct zt_admin_ops {
    /* JSON for /config_dump: a malloc'd NUL-terminated string the admin
     * server frees, or NULL on failure (answered 500). NULL op: 500. */
    char *(*config_dump)(void *ud);
    /* Prometheus text for /metrics and /stats/prometheus, appended to out
     * (owned by the caller). NULL op: empty body. */
    void (*metrics)(void *ud, struct zt_buf *out);
    /* Readiness: returns true when ready; otherwise writes the pending
     * blockers (e.g. "state manager, workload proxy manager") as a
     * NUL-terminated string of at most cap bytes into why. NULL op: ready. */
    bool (*ready)(void *ud, char *why, size_t cap);
    /* POST /quitquitquit: begin graceful shutdown. Called once per request,
     * after the reply was queued. NULL op: the reply is still sent. */
    void (*quit)(void *ud);
};

/* Listening addresses. A NULL address selects the default; port 0 asks the
 * kernel for an ephemeral port (read it back with zt_admin_port()). */
struct zt_admin_opts {
    const char *admin_addr;  /* default "127.0.0.1" */
    uint16_t admin_port;     /* 15000 is the usual value; 0: ephemeral */
    const char *stats_addr;  /* default "::" (dual stack), falls back to "0.0.0.0" */
    uint16_t stats_port;     /* usually 15020 */
    const char *ready_addr;  /* default "::", falls back to "0.0.0.0" */
    uint16_t ready_port;     /* usually 15021 */
    unsigned conn_limit;     /* per client address; a daemon holds at most twice
                                that in all. 0: ZT_ADMIN_DEFAULT_CONN_LIMIT */
    unsigned conn_timeout_s; /* idle connection timeout; 0: ZT_ADMIN_DEFAULT_TIMEOUT_S */
    /* Start only the stats server, which then also answers /ready and
     * /healthz/ready (one monitoring port, as the control plane uses). */
    bool stats_only;
};

/* Which server zt_admin_port() reports. */
enum zt_admin_server {
    ZT_ADMIN_SRV_ADMIN = 0,
    ZT_ADMIN_SRV_STATS = 1,
    ZT_ADMIN_SRV_READY = 2,
};
const char *zt_admin_server_str(enum zt_admin_server which);

struct zt_admin;

/* Starts the three servers. Borrows opts (only for the call), copies
 * *ops (may be NULL: every op absent) and keeps ud, which must stay valid
 * until zt_admin_stop().
 * Records the current log level as the one "/logging?reset" returns to.
 * Returns 0 and *out, or -errno / ZT_E_CONFIG (unparseable address) with a
 * reason in err (e.g. "stats [::]:15020: Address already in use"); on failure
 * nothing is left running. */
int zt_admin_start(const struct zt_admin_opts *opts, const struct zt_admin_ops *ops, void *ud,
                   struct zt_admin **out, char *err, size_t errlen);

/* The bound port of a server (useful with port 0), or 0 if unknown. */
uint16_t zt_admin_port(const struct zt_admin *admin, enum zt_admin_server which);

/* Closes the listening sockets of the three servers, so that another
 * process (the proxy replacing this one) can bind the ports; connections
 * already accepted are served to the end. zt_admin_port() still reports the
 * old port. NULL-safe; a second call is a no-op. Not from an ops callback. */
void zt_admin_release_ports(struct zt_admin *admin);

/* Stops the servers (closing their connections and joining their threads;
 * no ops callback runs after it returns) and frees admin. NULL-safe. Must
 * not be called from inside an ops callback. */
void zt_admin_stop(struct zt_admin *admin);

#endif
