/* The relay: moves bytes both ways between two endpoints (side A and side B)
 * of one tunnelled connection, with one bounded buffer per direction,
 * half-close, and the tunnel's state machine. Sans-I/O: it sees only the
 * endpoint interface below; a TCP socket and an HBONE stream implement it
 * (src/proxy/conn.c), tests use fakes (tests/unit/proxy/test_relay.c).
 *
 * Directions: ZT_RELAY_UP carries A's bytes to B, ZT_RELAY_DOWN B's to A.
 * A direction is finished once its source said end of stream, every byte
 * reached the sink and the sink was shut for writing.
 *
 * Backpressure: a source is read only while the buffer toward its sink holds
 * less than `cap` bytes. A source that cannot be paused (an HBONE stream:
 * its DATA is bounded by the HTTP/2 window instead) is read whatever the
 * buffer holds, and told through `delivered` when its bytes have reached the
 * sink, so that the sender's window opens only as fast as the sink drains.
 *
 * Re-entrancy: every call into the relay, and every endpoint call the relay
 * makes, may end the tunnel (state CLOSED or FAILED). The relay checks
 * after each and stops; callers check zt_relay_done() before going on. So
 * the owner never frees the relay inside a callback: it frees it at a safe
 * point (a later loop phase), once the tunnel ended. */
#ifndef ZT_PROXY_RELAY_H
#define ZT_PROXY_RELAY_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum zt_relay_side { ZT_RELAY_A = 0, ZT_RELAY_B = 1 };
enum zt_relay_dir { ZT_RELAY_UP = 0, ZT_RELAY_DOWN = 1 }; /* == the source side */

enum zt_tunnel_state {
    ZT_TUN_CONNECTING,       /* waiting for the upstream: TCP connect, HBONE pool */
    ZT_TUN_CONNECT_SENT,     /* HBONE CONNECT sent, waiting for the response */
    ZT_TUN_ESTABLISHED,      /* bytes move both ways */
    ZT_TUN_HALF_CLOSED_UP,   /* A -> B finished, B -> A still moving */
    ZT_TUN_HALF_CLOSED_DOWN, /* B -> A finished, A -> B still moving */
    ZT_TUN_CLOSED,           /* both directions finished, or closed without error */
    ZT_TUN_FAILED,           /* ended by an error */
    ZT_TUN_STATE_COUNT
};
const char *zt_tunnel_state_str(enum zt_tunnel_state st);

struct zt_endpoint;
struct zt_relay;

/* What an endpoint does for the relay. Buffers are borrowed for the call.
 * Returns: a count of bytes, or -EAGAIN (nothing possible now: the endpoint
 * calls zt_relay_readable/zt_relay_writable once it may be), or another
 * negative error (the tunnel fails). */
struct zt_endpoint_ops {
    /* Up to `len` bytes into buf: > 0 read, 0 end of stream. */
    ssize_t (*read)(struct zt_endpoint *ep, uint8_t *buf, size_t len);
    /* Up to `len` (> 0) bytes from buf: > 0 taken. */
    ssize_t (*write)(struct zt_endpoint *ep, const uint8_t *buf, size_t len);
    /* No byte will follow the ones written. 0: done; 1: under way, the
     * endpoint calls zt_relay_shutdown_done() when it is; < 0 error. */
    int (*shutdown_write)(struct zt_endpoint *ep);
    /* The relay wants to read / write (level: the latest call holds). */
    void (*want)(struct zt_endpoint *ep, bool want_read, bool want_write);
    /* Optional: `n` bytes read from ep have reached the other side. */
    void (*delivered)(struct zt_endpoint *ep, size_t n);
};

struct zt_endpoint {
    const struct zt_endpoint_ops *ops;
    struct zt_relay *relay;
    enum zt_relay_side side;
    /* Its reads cannot be paused: read whatever the buffer holds. */
    bool is_unbounded;
    /* It takes bytes only when it asks for them (zt_relay_pull), so a read
     * toward it goes straight into the buffer, never through the scratch. */
    bool is_pull;
};

/* The owner's callbacks. */
struct zt_relay_ops {
    /* The state changed to r->state from `from`. Entering ZT_TUN_CLOSED or
     * ZT_TUN_FAILED ends the tunnel: the relay makes no more endpoint calls
     * and the owner releases everything, the relay's memory at a safe point
     * (see above); `error` (borrowed, NULL for CLOSED) says why. */
    void (*on_state)(struct zt_relay *r, enum zt_tunnel_state from, const char *error);
    /* Optional: bytes read from an unbounded source wait here for the owner
     * to call zt_relay_flush(r, dir) later (typically once per loop turn,
     * after every read: one write for many DATA frames). Without it they
     * are written at once. */
    void (*defer_flush)(struct zt_relay *r, enum zt_relay_dir dir);
};

struct zt_relay_flow {
    struct zt_buf buf;      /* read from the source, not yet taken by the sink */
    uint64_t bytes;         /* read from the source in all */
    bool is_src_eof;        /* the source said end of stream */
    bool is_shut;           /* the sink was asked to shut for writing */
    bool is_done;           /* ... and it is */
    bool is_flush_deferred; /* the owner will call zt_relay_flush */
};

struct zt_relay {
    enum zt_tunnel_state state;
    const struct zt_relay_ops *ops;
    struct zt_endpoint *ep[2];
    struct zt_relay_flow flow[2];
    uint32_t cap;     /* most bytes buffered toward a sink from a bounded source */
    uint32_t read_sz; /* most bytes per read */
};

/* Sets up a relay in ZT_TUN_CONNECTING between `a` and `b` (borrowed; both
 * outlive the relay's use of them; b may be set later with
 * zt_relay_set_endpoint). cap and read_sz: 0 = 256 KiB each. */
void zt_relay_init(struct zt_relay *r, const struct zt_relay_ops *ops, struct zt_endpoint *a,
                   struct zt_endpoint *b, size_t cap, size_t read_sz);
void zt_relay_set_endpoint(struct zt_relay *r, enum zt_relay_side side, struct zt_endpoint *ep);

/* ZT_TUN_CONNECT_SENT or ZT_TUN_ESTABLISHED (which starts moving bytes);
 * later states are the relay's own, earlier ones cannot come back. */
void zt_relay_set_state(struct zt_relay *r, enum zt_tunnel_state st);
bool zt_relay_done(const struct zt_relay *r);
bool zt_relay_moving(const struct zt_relay *r); /* established or half-closed */

/* Endpoint events. */
void zt_relay_readable(struct zt_relay *r, enum zt_relay_side side);
void zt_relay_writable(struct zt_relay *r, enum zt_relay_side side);
/* The sink `side` takes what waits for it, and no source is read: for a
 * sink that can take bytes only inside its own library's callback. */
void zt_relay_pull(struct zt_relay *r, enum zt_relay_side side);
void zt_relay_shutdown_done(struct zt_relay *r, enum zt_relay_side side);
/* Writes what waits toward the sink of `dir` (see defer_flush). */
void zt_relay_flush(struct zt_relay *r, enum zt_relay_dir dir);
/* The peer behind `side` broke off (e.g. a stream reset): what already
 * waits toward the other side gets one chance to be written, then the
 * tunnel ends, FAILED with `error`, or CLOSED if error is NULL. */
void zt_relay_abort(struct zt_relay *r, enum zt_relay_side side, const char *error);
/* Ends the tunnel now: FAILED with `error`, or CLOSED if it is NULL. */
void zt_relay_close(struct zt_relay *r, const char *error);

/* Releases the buffers (after the tunnel ended). */
void zt_relay_cleanup(struct zt_relay *r);

#endif
