/* An HTTP/2 session over TLS with no I/O of its own: ciphertext goes in
 * (zt_h2_session_feed, or zt_h2_session_read with a caller's recv function),
 * ciphertext comes out (zt_h2_session_out / zt_h2_session_out_done), and time
 * is whatever the caller says it is (zt_h2_session_tick, with
 * zt_h2_session_deadline telling when to call it next). No sockets, no event
 * loop, no clock: h2conn.c is the thin socket transport around it, and unit
 * tests and fuzzers drive it from byte arrays.
 *
 * Inside, OpenSSL runs over a BIO on the session's own buffers and nghttp2
 * runs sans-I/O (mem_recv / mem_send). Both roles are served: a client
 * carrying CONNECT streams (HBONE pool, gRPC clients) and a server accepting
 * them (port 15008, control plane).
 *
 * Flow control is manual: DATA handed to a stream's on_data stays charged to
 * the HTTP/2 windows until the stream owner calls zt_h2_session_consume(), so
 * a slow reader stops its own sender, not the connection.
 *
 * Ownership: the session owns its SSL object and nghttp2 session. Stream
 * owners attach an ops table and a user pointer per stream; the session calls
 * on_close exactly once per attached stream, after which it never touches the
 * user pointer again. zt_h2_session_close() runs every stream's on_close and
 * then ops->on_closed; the object stays readable (state, remaining ciphertext)
 * until its owner calls zt_h2_session_free(), which must not happen inside a
 * session callback. */
#ifndef ZT_H2_SESSION_H
#define ZT_H2_SESSION_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct zt_h2_session;

enum zt_h2conn_role { ZT_H2_CLIENT, ZT_H2_SERVER };

enum zt_h2_session_state {
    ZT_H2_SESS_HANDSHAKE, /* TLS handshake, or (plaintext) not yet started */
    ZT_H2_SESS_OPEN,
    ZT_H2_SESS_DRAINING, /* GOAWAY sent or received: no new streams */
    ZT_H2_SESS_CLOSED
};
const char *zt_h2_session_state_str(enum zt_h2_session_state st);

struct zt_h2_settings {
    uint32_t stream_window;     /* SETTINGS_INITIAL_WINDOW_SIZE */
    uint32_t connection_window; /* stream 0 window */
    uint32_t max_frame_size;
    uint32_t max_header_list;
    uint32_t max_concurrent_streams; /* advertised by servers; 0 = not sent */
    /* Keepalive: a PING every interval once OPEN; no ACK within timeout
     * closes the connection with ZT_E_TIMEOUT. 0 = 10 s / 20 s. */
    uint32_t ping_interval_ms;
    uint32_t ping_timeout_ms;
};

/* A request as received by a server (headers of interest only). Strings are
 * NUL-terminated and valid during on_request only. */
struct zt_h2_request {
    const char *method;
    const char *authority;
    const char *baggage;
    const char *forwarded;
    const char *traceparent;
    const char *path;         /* NULL for CONNECT */
    const char *content_type; /* the following are NULL when absent */
    const char *authorization;
    const char *cluster_id; /* "clusterid" (Istio's gRPC metadata) */
    /* "x-forwarded-network": the client proxy's network, sent on the inner
     * CONNECT of double HBONE only (wire facts 2.3). */
    const char *forwarded_network;
};

/* Per-stream callbacks. `sud` is the pointer given when attaching. */
struct zt_h2_stream_ops {
    /* Client role: response headers arrived. */
    void (*on_response)(void *sud, int status);
    /* Client role, optional: each response header other than :status, then
     * each trailer (is_trailer), e.g. grpc-status. Strings valid during the
     * call only. */
    void (*on_header)(void *sud, const char *name, const char *value, bool is_trailer);
    /* DATA payload; the owner must later consume `len` bytes. */
    void (*on_data)(void *sud, const uint8_t *data, size_t len);
    /* The peer ended its side (END_STREAM, or RST with NO_ERROR/CANCEL). */
    void (*on_end)(void *sud);
    /* The stream is gone; error is 0 for a clean close, else a ZT_E_* or
     * -errno. Called once; `sud` is forgotten afterwards. */
    void (*on_close)(void *sud, int error);
    /* Body source: copy up to `len` bytes into buf and return the count;
     * return 0 and set *eof to end the stream; return -EAGAIN when nothing is
     * ready (resume the stream later). */
    ssize_t (*read)(void *sud, uint8_t *buf, size_t len, bool *eof);
    /* The body is read only after zt_h2_session_resume: submit and respond
     * send the headers alone, each resume starts reading, and reading stops
     * (the stream stays open) as soon as read gives less than `len`; the
     * owner resumes again when it has more. Meant for streams idle for long
     * stretches (tunnels): nghttp2 holds no pending body for them
     * meanwhile, about 150 bytes each. */
    bool is_body_on_resume;
};

/* Session callbacks; `ud` is the pointer given to zt_h2_session_new. */
struct zt_h2_session_ops {
    /* TLS handshake done (ALPN h2 checked). Return 0 to go on, or a negative
     * error to close the session (e.g. the peer identity is wrong). */
    int (*on_ready)(struct zt_h2_session *s, void *ud);
    /* Server role: a complete request header block. The owner must either
     * attach to the stream and respond later, or respond now with an error
     * status. */
    void (*on_request)(struct zt_h2_session *s, void *ud, int32_t stream_id,
                       const struct zt_h2_request *req);
    /* The peer sent GOAWAY or the session stopped taking new streams. */
    void (*on_draining)(struct zt_h2_session *s, void *ud);
    /* The session is closed; every attached stream already got on_close. */
    void (*on_closed)(struct zt_h2_session *s, void *ud, int error);
};

/* Creates a session using `ctx` (a reference is kept by the SSL object).
 * `ctx` NULL means plaintext HTTP/2 with prior knowledge: for unit tests and
 * fuzzers only, the socket transport refuses it. `now_ms` starts the
 * handshake timeout. Never fails (out of memory aborts); no callback runs
 * before the first feed, read, out or tick. */
struct zt_h2_session *zt_h2_session_new(SSL_CTX *ctx, enum zt_h2conn_role role,
                                        const struct zt_h2_settings *settings,
                                        const struct zt_h2_session_ops *ops, void *ud,
                                        uint64_t now_ms);

/* Frees a session (closing it first, with ZT_E_CLOSED, if still open).
 * NULL is a no-op. Not from inside one of its callbacks. */
void zt_h2_session_free(struct zt_h2_session *s);

/* ---- bytes in ---- */

/* Reads ciphertext: returns bytes written to buf (> 0), 0 at end of stream,
 * -EAGAIN when nothing more is available now, or another negative errno. */
typedef ssize_t zt_h2_recv_fn(void *arg, uint8_t *buf, size_t len);

/* Pulls ciphertext through `recv` (OpenSSL reads straight into its own
 * record buffer: no copy on the way in) and processes it, running callbacks,
 * until recv says -EAGAIN, about `budget` bytes of plaintext were handled,
 * or the session closed. Stops early, without a recv that could only say
 * -EAGAIN, once the last read left nothing buffered. Returns 0, or the
 * session's close error once it is closed. */
int zt_h2_session_read(struct zt_h2_session *s, zt_h2_recv_fn *recv_fn, void *arg, size_t budget);

/* Processes `len` bytes of ciphertext (borrowed for the call), all of them
 * unless the session closes; len 0 means the peer closed its side (end of
 * stream). Returns 0, or the session's close error once it is closed. */
int zt_h2_session_feed(struct zt_h2_session *s, const uint8_t *data, size_t len);

/* Whether the last zt_h2_session_read stopped on its budget while OpenSSL
 * still held input: call it again without waiting for the socket, which may
 * never become readable for bytes already taken from it. */
bool zt_h2_session_has_input(const struct zt_h2_session *s);

/* ---- bytes out ---- */

/* Runs the engine (handshake, frames queued by stream operations, DATA from
 * body sources) until 256 KiB of ciphertext wait or nothing more is ready,
 * and returns the waiting ciphertext (*len may be 0, *data then NULL). The view stays valid
 * until the next call on the session. While inside a read callback it only
 * returns what already waits. After close it returns what was left
 * (alerts, GOAWAY) without producing more. May close the session (0 when a
 * drained session has nothing left to do, or an error). Returns 0 or the
 * close error. */
int zt_h2_session_out(struct zt_h2_session *s, const uint8_t **data, size_t *len);

/* `n` bytes from the head of the last zt_h2_session_out view were sent. */
void zt_h2_session_out_done(struct zt_h2_session *s, size_t n);

/* ---- time ---- */

/* When the session next needs zt_h2_session_tick (absolute, in the clock
 * of now_ms); UINT64_MAX if never. Changes after any call on the session. */
uint64_t zt_h2_session_deadline(const struct zt_h2_session *s);

/* The clock moved to `now_ms`: fires what is due (handshake timeout,
 * keepalive PING or its timeout; ZT_E_TIMEOUT closes). Harmless when nothing
 * is due, so callers may call it whenever they know the time. Returns 0 or
 * the close error. */
int zt_h2_session_tick(struct zt_h2_session *s, uint64_t now_ms);

/* ---- inspection ---- */

enum zt_h2_session_state zt_h2_session_state(const struct zt_h2_session *s);
/* The close error once CLOSED (0 for a clean close). */
int zt_h2_session_close_error(const struct zt_h2_session *s);
/* NULL in plaintext mode. */
SSL *zt_h2_session_ssl(struct zt_h2_session *s);
enum zt_h2conn_role zt_h2_session_role(const struct zt_h2_session *s);
/* Streams currently open (both roles). */
unsigned zt_h2_session_streams(const struct zt_h2_session *s);
/* The peer's SETTINGS_MAX_CONCURRENT_STREAMS (UINT32_MAX if unlimited or
 * not yet known). */
uint32_t zt_h2_session_peer_max_streams(const struct zt_h2_session *s);
/* Total streams opened since creation. */
uint64_t zt_h2_session_streams_opened(const struct zt_h2_session *s);

/* ---- streams ---- */

/* Client role, session OPEN: any request; `headers` are name/value pairs
 * (borrowed for the call; a NULL or empty value drops the pair),
 * pseudo-headers (":method", ":scheme", ":path", ":authority") first. The
 * body comes from ops->read. Returns the stream id or a negative error. */
int32_t zt_h2_session_submit(struct zt_h2_session *s, const char *const *headers, size_t n_headers,
                             const struct zt_h2_stream_ops *ops, void *sud);

/* Client role, session OPEN: a CONNECT for `authority` with the extra
 * headers (as in submit). Returns the stream id (> 0) or a negative error. */
int32_t zt_h2_session_connect(struct zt_h2_session *s, const char *authority,
                              const char *const *headers, size_t n_headers,
                              const struct zt_h2_stream_ops *ops, void *sud);

/* Server role: trailers (name/value pairs, at most 8, copied) to send when
 * the body source reports EOF, which then ends the stream (gRPC status). */
int zt_h2_session_set_trailers(struct zt_h2_session *s, int32_t stream_id,
                               const char *const *headers, size_t n_headers);

/* Server role: attaches owner callbacks to a stream announced by on_request. */
void zt_h2_session_attach(struct zt_h2_session *s, int32_t stream_id,
                          const struct zt_h2_stream_ops *ops, void *sud);

/* Server role: responds with `status`. For 200 the stream stays open and its
 * body comes from ops->read; any other status ends the stream. Extra headers
 * as in submit. */
int zt_h2_session_respond(struct zt_h2_session *s, int32_t stream_id, int status,
                          const char *const *headers, size_t n_headers);

/* Returns `n` bytes of received DATA to the flow-control windows. */
void zt_h2_session_consume(struct zt_h2_session *s, int32_t stream_id, size_t n);

/* The stream's body source has data (or EOF) again after returning -EAGAIN
 * (or, with is_body_on_resume, after giving less than asked, or at first). */
void zt_h2_session_resume(struct zt_h2_session *s, int32_t stream_id);

/* Resets one stream (CANCEL); its on_close follows. */
void zt_h2_session_reset(struct zt_h2_session *s, int32_t stream_id);

/* Detaches the stream owner: no more callbacks for this stream, and resets
 * it if still open. */
void zt_h2_session_detach(struct zt_h2_session *s, int32_t stream_id);

/* Graceful: GOAWAY, no new streams, close once the last stream ended and
 * every byte went out. Before OPEN it closes with ZT_E_CLOSED. A server
 * says it twice (a notice and a PING, then the last stream id once the
 * PING is answered, or after the keepalive timeout): streams the client
 * opened before it read the notice are served, not refused. */
void zt_h2_session_shutdown(struct zt_h2_session *s);
/* As zt_h2_session_shutdown, once no stream is open (at once if none is):
 * for a connection that carries only the streams already opened on it.
 * Unlike a GOAWAY now, streams submitted but not yet sent still go out. */
void zt_h2_session_close_when_idle(struct zt_h2_session *s);

/* Abrupt close; `error` is passed to every stream's on_close, then to
 * ops->on_closed. No-op when already closed. */
void zt_h2_session_close(struct zt_h2_session *s, int error);

#endif
