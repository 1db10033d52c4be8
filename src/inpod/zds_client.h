/* The proxy's ZDS client: receives pods from the node agent (istio-cni or
 * `ztunnel cni`) over INPOD_UDS and tells the proxy to start / stop serving
 * them.
 *
 * Runs on one libuv loop (the control loop). Connects a nonblocking
 * SOCK_SEQPACKET socket, sends ZdsHello{V1}, then answers every request with
 * exactly one Ack, one request at a time. Disconnects reconnect with a
 * backoff of 10 ms doubling to 15 s; the pod table survives reconnects and
 * the next snapshot reconciles it.
 *
 * Semantics (wire facts 5.3): an add for a known uid with the same netns
 * (dev+ino) is acked without calling the proxy; with a different netns the
 * old proxy is deleted first. keep marks a uid as present in the snapshot;
 * snapshot_sent deletes every uid not added/kept since the session began.
 * Protocol errors (keep after the snapshot, a second snapshot_sent, an add
 * without workload_info or without an fd, an fd on another message, an
 * undecodable datagram) are NACKed and the session continues. A failed
 * add() is NACKed with its zt_strerror text and retried every few seconds. */
#ifndef ZT_INPOD_ZDS_CLIENT_H
#define ZT_INPOD_ZDS_CLIENT_H

#include "zds/zds.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct zt_inpod_client;

/* Session states; zt_inpod_client_state_str() names them for logs. */
enum zt_inpod_client_state {
    ZT_INPOD_CLIENT_ST_BACKOFF = 0,  /* not connected, reconnect timer armed */
    ZT_INPOD_CLIENT_ST_SNAPSHOT = 1, /* hello sent, receiving the snapshot */
    ZT_INPOD_CLIENT_ST_READY = 2,    /* snapshot_sent received this session */
    ZT_INPOD_CLIENT_ST_STOPPED = 3   /* zt_inpod_client_stop() called */
};
const char *zt_inpod_client_state_str(enum zt_inpod_client_state st);

/* Callbacks into the proxy, all on the client's loop. They may call
 * zt_inpod_client_stop(); the client then makes no further calls. */
struct zt_inpod_client_ops {
    /* Start serving pod `uid` in `netns_fd`. On 0 the callee owns netns_fd.
     * On a negative error the fd stays with the client, which NACKs with
     * zt_strerror(err), keeps the pod pending and retries later. `info` is
     * borrowed for the call. */
    int (*add)(void *ud, const char *uid, int netns_fd, const struct zt_zds_workload_info *info);
    /* Stop serving `uid` now (no grace: the netns may be gone). Only called
     * for uids whose add() succeeded. */
    void (*del)(void *ud, const char *uid);
    /* Readiness input, called whenever one of the values changes:
     * `snapshot_received` becomes true at the first snapshot_sent and stays
     * true across reconnects; `pending` counts pods whose add() failed. The
     * proxy is ready when snapshot_received && pending == 0. May be NULL. */
    void (*state)(void *ud, bool connected, bool snapshot_received, unsigned pending);
};

/* Starts the client on `loop`: the first connection attempt happens from
 * the loop, not inside this call. `uds_path` is copied (at most 107 bytes);
 * `ops` and `ud` are borrowed and must outlive the client. Returns 0 and
 * `*out`, or ZT_E_CONFIG for a bad path / missing add or del callback. */
int zt_inpod_client_start(uv_loop_t *loop, const char *uds_path,
                          const struct zt_inpod_client_ops *ops, void *ud,
                          struct zt_inpod_client **out);

/* Besides root, the uid a node agent may run as (ZTUNNEL_TRUSTED_UID; 0 =
 * root only, the default). Checked with SO_PEERCRED on every connect: a
 * listener of another uid is hung up on before the hello, logged, and
 * retried with the usual backoff. Takes effect at the next connect. */
void zt_inpod_client_set_trusted_uid(struct zt_inpod_client *c, uint32_t uid);

/* Test/tuning knobs: retry interval of pending adds (default 5000 ms) and
 * backoff cap (default 15000 ms). Takes effect for the next timer armed. */
void zt_inpod_client_set_timing(struct zt_inpod_client *c, unsigned retry_ms,
                                unsigned backoff_max_ms);

enum zt_inpod_client_state zt_inpod_client_state(const struct zt_inpod_client *c);
/* Number of pods in the table (served and pending). */
unsigned zt_inpod_client_count(const struct zt_inpod_client *c);

/* Closes the socket and timers; the memory is freed from a later close
 * callback, so it is safe to call from inside an ops callback. Pending netns
 * fds are closed; served pods are not deleted (the proxy drains them itself).
 * NULL is a no-op; a second call is a no-op. */
void zt_inpod_client_stop(struct zt_inpod_client *c);

#endif
