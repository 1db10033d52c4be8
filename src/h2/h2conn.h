/* An HTTP/2 connection over TLS on a non-blocking socket, driven by a libuv
 * loop: the thin transport around a sans-I/O session (h2/session.h) that
 * polls the socket, moves its bytes with recv/send, and drives the session's
 * clock with one timer (handshake timeout, keepalive PING). It serves both
 * roles: a client carrying CONNECT streams (HBONE pool) and a server
 * accepting them (port 15008).
 *
 * Flow control is manual: DATA handed to a stream's on_data stays charged to
 * the HTTP/2 windows until the stream owner calls zt_h2conn_consume(), so a
 * slow reader stops its own sender, not the connection.
 *
 * Ownership: the connection owns its fd, SSL and session. Stream owners
 * attach an ops table and a user pointer per stream; the connection calls
 * on_close exactly once per attached stream, after which it never touches the
 * user pointer again. zt_h2conn_close() is a request: the object is freed on a
 * later loop iteration, after ops->on_closed. */
#ifndef ZT_H2_H2CONN_H
#define ZT_H2_H2CONN_H

#include "h2/session.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct zt_h2conn;

enum zt_h2conn_state {
    ZT_H2_ST_TCP_CONNECTING,
    ZT_H2_ST_TLS_HANDSHAKE,
    ZT_H2_ST_OPEN,
    ZT_H2_ST_DRAINING, /* GOAWAY sent or received: no new streams */
    ZT_H2_ST_CLOSED
};
const char *zt_h2conn_state_str(enum zt_h2conn_state st);

/* enum zt_h2conn_role, struct zt_h2_settings, struct zt_h2_request and
 * struct zt_h2_stream_ops are the session's (h2/session.h). */

/* Connection callbacks. */
struct zt_h2conn_ops {
    /* TLS handshake done (ALPN h2 checked). Return 0 to go on, or a negative
     * error to close the connection (e.g. the peer identity is wrong). */
    int (*on_ready)(struct zt_h2conn *c, void *ud);
    /* Server role: a complete request header block. The owner must either
     * attach to the stream (zt_h2conn_attach) and respond later, or respond
     * now with an error status. */
    void (*on_request)(struct zt_h2conn *c, void *ud, int32_t stream_id,
                       const struct zt_h2_request *req);
    /* The peer sent GOAWAY or the connection stopped taking new streams. */
    void (*on_draining)(struct zt_h2conn *c, void *ud);
    /* The connection is closed; every attached stream already got on_close.
     * The object is freed right after this returns. */
    void (*on_closed)(struct zt_h2conn *c, void *ud, int error);
};

/* Creates a connection on `fd` (ownership taken; for clients the TCP
 * connect may still be in progress) using `ctx` (a reference is kept by the
 * SSL object; NULL is refused: plaintext is for tests only). Returns NULL,
 * with `fd` closed, if `fd` could not be polled or `ctx` is NULL. */
struct zt_h2conn *zt_h2conn_new(uv_loop_t *loop, int fd, SSL_CTX *ctx, enum zt_h2conn_role role,
                                const struct zt_h2_settings *settings,
                                const struct zt_h2conn_ops *ops, void *ud);

/* Client role, tunneled (double HBONE's inner connection): sends a CONNECT
 * for `authority` with the extra headers (borrowed, as in
 * zt_h2conn_connect) on `outer`, an OPEN client connection that is not
 * itself tunneled, and returns a connection whose TLS + HTTP/2 session runs
 * inside that stream once it is answered 200, with `ctx` (a reference is
 * kept). It behaves as a socket connection from then on: on_ready after
 * the handshake, streams, close. Any other status, the stream's reset or
 * end, or the handshake timeout (which also covers the wait for the
 * answer) closes it (401: ZT_E_DENIED, other statuses: ZT_E_UPSTREAM).
 * `outer` is borrowed: only the stream is kept, and outer's closing closes
 * this connection. A clean close ends the stream with END_STREAM, an error
 * resets it. Nothing is sent before the caller flushes `outer`, and no
 * callback runs inside this call. Returns NULL, with nothing sent, when
 * ctx is NULL, outer is tunneled or the CONNECT cannot be submitted. */
struct zt_h2conn *zt_h2conn_new_tunneled(struct zt_h2conn *outer, const char *authority,
                                         const char *const *headers, size_t n_headers, SSL_CTX *ctx,
                                         const struct zt_h2_settings *settings,
                                         const struct zt_h2conn_ops *ops, void *ud);

enum zt_h2conn_state zt_h2conn_state(const struct zt_h2conn *c);
SSL *zt_h2conn_ssl(struct zt_h2conn *c);
/* -1 for a tunneled connection. */
int zt_h2conn_fd(const struct zt_h2conn *c);
/* Streams currently open on this connection (both roles). */
unsigned zt_h2conn_streams(const struct zt_h2conn *c);
/* The peer's SETTINGS_MAX_CONCURRENT_STREAMS (UINT32_MAX if unlimited). */
uint32_t zt_h2conn_peer_max_streams(const struct zt_h2conn *c);
/* Total streams opened since creation. */
uint64_t zt_h2conn_streams_opened(const struct zt_h2conn *c);

/* Client role, connection OPEN: sends a CONNECT for `authority` with the extra
 * headers (name/value pairs, n_headers pairs; borrowed) and attaches the
 * stream. Returns the stream id (> 0) or a negative error. */
int32_t zt_h2conn_connect(struct zt_h2conn *c, const char *authority, const char *const *headers,
                          size_t n_headers, const struct zt_h2_stream_ops *ops, void *sud);

/* Client role: any request; `headers` are name/value pairs, pseudo-headers
 * (":method", ":scheme", ":path", ":authority") first. The body comes from
 * ops->read. Returns the stream id or a negative error. */
int32_t zt_h2conn_submit(struct zt_h2conn *c, const char *const *headers, size_t n_headers,
                         const struct zt_h2_stream_ops *ops, void *sud);

/* Server role: trailers (name/value pairs, at most 8, copied) to send when
 * the body source reports EOF, which then ends the stream (gRPC status). */
int zt_h2conn_set_trailers(struct zt_h2conn *c, int32_t stream_id, const char *const *headers,
                           size_t n_headers);

/* Server role: attaches owner callbacks to a stream announced by on_request. */
void zt_h2conn_attach(struct zt_h2conn *c, int32_t stream_id, const struct zt_h2_stream_ops *ops,
                      void *sud);

/* Server role: responds with `status`. For 200 the stream stays open and its
 * body comes from ops->read; any other status ends the stream. Extra headers
 * as in zt_h2conn_connect. */
int zt_h2conn_respond(struct zt_h2conn *c, int32_t stream_id, int status,
                      const char *const *headers, size_t n_headers);

/* Returns `n` bytes of received DATA to the flow-control windows. */
void zt_h2conn_consume(struct zt_h2conn *c, int32_t stream_id, size_t n);

/* The stream's body source has data (or EOF) again after returning -EAGAIN. */
void zt_h2conn_resume(struct zt_h2conn *c, int32_t stream_id);

/* Resets one stream (CANCEL); its on_close follows. */
void zt_h2conn_reset(struct zt_h2conn *c, int32_t stream_id);

/* Detaches the stream owner: no more callbacks for this stream, and resets
 * it if still open. Used when the owner goes away first. */
void zt_h2conn_detach(struct zt_h2conn *c, int32_t stream_id);

/* Sends bytes queued by stream operations. Called automatically from the
 * loop; callers that queue from outside a connection callback call it. */
void zt_h2conn_flush(struct zt_h2conn *c);

/* Like zt_h2conn_flush, later in this loop iteration: c is queued on this
 * thread's list of connections to flush, sent by the next
 * zt_h2conn_flush_queued (or once a read of a connection of this thread
 * ends), so that the bytes several sockets' events queue on one
 * connection leave in one record and one send(2). The caller makes sure
 * zt_h2conn_flush_queued runs before the loop waits again (a uv_check
 * handle). A connection that closes meanwhile leaves the list. */
void zt_h2conn_flush_soon(struct zt_h2conn *c);
/* Flushes the connections zt_h2conn_flush_soon queued on this thread
 * (nothing while one of its connections is reading: that read's end
 * does it). */
void zt_h2conn_flush_queued(void);

/* Graceful: GOAWAY, no new streams, close when the last stream ends. */
void zt_h2conn_shutdown(struct zt_h2conn *c);
/* The same once no stream is open: streams submitted but not yet sent
 * still go out (a GOAWAY now would cancel them). */
void zt_h2conn_close_when_idle(struct zt_h2conn *c);

/* Abrupt close; `error` is passed to every stream's on_close. */
void zt_h2conn_close(struct zt_h2conn *c, int error);

#endif
