/* gRPC over our HTTP/2 connections (the xDS and CA protocols). Framed by us
 * as the gRPC wire format describes: each message is a 1-byte compression
 * flag (always 0 here), a 4-byte big-endian length and the bytes; the
 * status travels in trailers (grpc-status, grpc-message).
 *
 * A call is one HTTP/2 stream. Both sides are streaming; a unary call is a
 * stream with one message each way. Callbacks run on the connection's loop.
 * A call object is freed right after its on_close callback returns, or at
 * once by cancel (which calls nothing). */
#ifndef ZT_H2_GRPC_H
#define ZT_H2_GRPC_H

#include "base/buf.h"
#include "h2/h2conn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes used here. */
enum zt_grpc_status {
    ZT_GRPC_OK = 0,
    ZT_GRPC_CANCELLED = 1,
    ZT_GRPC_UNKNOWN = 2,
    ZT_GRPC_INVALID_ARGUMENT = 3,
    ZT_GRPC_DEADLINE_EXCEEDED = 4,
    ZT_GRPC_NOT_FOUND = 5,
    ZT_GRPC_PERMISSION_DENIED = 7,
    ZT_GRPC_RESOURCE_EXHAUSTED = 8,
    ZT_GRPC_UNIMPLEMENTED = 12,
    ZT_GRPC_INTERNAL = 13,
    ZT_GRPC_UNAVAILABLE = 14,
    ZT_GRPC_UNAUTHENTICATED = 16
};

/* ---- framing (sans-I/O) ---- */

/* Reassembles messages from DATA bytes. `max` caps one message. The
 * message buffer grows with the bytes received (at most twice them), not
 * with the length the header declares. */
struct zt_grpc_reader {
    uint8_t hdr[5];
    size_t hdr_len;
    uint8_t *msg; /* owned */
    size_t msg_len, msg_got, msg_cap;
    size_t max;
};

/* Consumes bytes from data[0..len): returns 1 with *msg and *msg_len (valid
 * until the next call) when a message completed (*used tells how much was
 * consumed; call again with the rest), 0 when all bytes were consumed
 * without completing one, ZT_E_TOO_BIG for a message over `max`, ZT_E_PROTO
 * for a compressed message (we never negotiate compression). */
int zt_grpc_reader_feed(struct zt_grpc_reader *r, const uint8_t *data, size_t len, size_t *used,
                        const uint8_t **msg, size_t *msg_len);
void zt_grpc_reader_cleanup(struct zt_grpc_reader *r);

/* Appends one framed message to `out`. */
void zt_grpc_frame(struct zt_buf *out, const uint8_t *msg, size_t len);

/* Percent-encodes a grpc-message value (spec: bytes outside 0x20-0x7e and
 * '%'). Always NUL-terminates. */
void zt_grpc_encode_message(const char *in, char *out, size_t cap);

/* ---- control-plane channels (xDS, CA) ---- */

/* Splits "host:port", "https://host:port" or "[v6]:port" into host (no
 * brackets), port and the authority to send ("host:port" as written).
 * Returns 0 or ZT_E_CONFIG. */
int zt_grpc_parse_target(const char *address, char *host, size_t host_cap, char *port,
                         size_t port_cap, char *authority, size_t authority_cap);

/* A control-plane address list (XDS_ADDRESS, CA_ADDRESS): one or more
 * "host:port" entries separated by commas, each optionally "https://"
 * and surrounded by blanks. host is an IPv4 address, a bracketed IPv6
 * address or a DNS name (labels of letters, digits, '-' and '_', 1 to 63
 * characters each, 253 in all; one trailing dot allowed); port is 1 to
 * 65535. A name may resolve to several addresses: the clients try all of
 * them. */
#define ZT_GRPC_TARGETS_MAX 16 /* entries in one list */
#define ZT_GRPC_HOST_MAX 253   /* a DNS name's longest legal length (no trailing dot) */

struct zt_grpc_target {
    char host[ZT_GRPC_HOST_MAX + 2]; /* no brackets; a trailing dot kept */
    char port[6];
    char authority[ZT_GRPC_HOST_MAX + 12]; /* "host:port" as written ([v6] kept) */
};

/* Parses list into out[0..*n) (out has room for ZT_GRPC_TARGETS_MAX).
 * Returns 0, or ZT_E_CONFIG with "VAR: entry K 'ENTRY': reason" in err,
 * where var (borrowed) names the variable and K counts from 1. Empty
 * entries, other schemes than https://, paths, bad ports and more than
 * ZT_GRPC_TARGETS_MAX entries are refused. */
int zt_grpc_parse_targets(const char *var, const char *list, struct zt_grpc_target *out, size_t *n,
                          char *err, size_t errlen);

/* Reads a bearer token file (trailing whitespace dropped) into buf; returns
 * its length, 0 when path is NULL or the file cannot be read. */
size_t zt_grpc_read_token(const char *path, char *buf, size_t cap);

/* The request metadata istiod's CA and xDS services take: "authorization:
 * Bearer <token>" when token_path (may be NULL) reads non-empty, then
 * "clusterid". The token is read at each init (tokens rotate); its copy is
 * on the heap, wiped and freed by cleanup. cluster_id is borrowed until
 * cleanup. */
#define ZT_GRPC_TOKEN_MAX 16384
struct zt_grpc_metadata {
    const char *kv[4]; /* name, value pairs */
    size_t n;          /* pairs in kv */
    char *bearer;      /* "Bearer <token>", NULL when none */
};
void zt_grpc_metadata_init(struct zt_grpc_metadata *md, const char *token_path,
                           const char *cluster_id);
void zt_grpc_metadata_cleanup(struct zt_grpc_metadata *md);

/* ---- client calls ---- */

struct zt_grpc_call;

struct zt_grpc_call_ops {
    void (*on_message)(void *ud, const uint8_t *msg, size_t len);
    /* The call ended: the server's status, or a local one (UNAVAILABLE
     * when the connection broke, RESOURCE_EXHAUSTED for an oversized
     * message, INTERNAL for a non-200 answer). */
    void (*on_close)(void *ud, int status, const char *message);
};

/* Starts a call on an OPEN client connection: POST `path` with
 * content-type application/grpc, te: trailers, and `metadata` (name/value
 * pairs, borrowed). Returns NULL if the stream cannot be opened. */
struct zt_grpc_call *zt_grpc_call_start(struct zt_h2conn *h2, const char *authority,
                                        const char *path, const char *const *metadata,
                                        size_t n_metadata, size_t max_message,
                                        const struct zt_grpc_call_ops *ops, void *ud);
/* Queues one message (copied) and sends it. */
int zt_grpc_call_send(struct zt_grpc_call *call, const uint8_t *msg, size_t len);
/* No more messages from us (END_STREAM after what is queued). */
void zt_grpc_call_close_send(struct zt_grpc_call *call);
/* Resets the stream and frees the call; no callback follows. */
void zt_grpc_call_cancel(struct zt_grpc_call *call);

/* ---- server calls ---- */

struct zt_grpc_scall;

struct zt_grpc_scall_ops {
    void (*on_message)(void *ud, struct zt_grpc_scall *call, const uint8_t *msg, size_t len);
    /* The client finished sending. */
    void (*on_half_close)(void *ud, struct zt_grpc_scall *call);
    /* The stream is gone (finished, reset or connection lost). */
    void (*on_close)(void *ud, struct zt_grpc_scall *call);
};

/* Accepts a request announced by the connection's on_request: answers 200
 * with content-type application/grpc and attaches the call. */
struct zt_grpc_scall *zt_grpc_scall_accept(struct zt_h2conn *h2, int32_t stream_id,
                                           size_t max_message, const struct zt_grpc_scall_ops *ops,
                                           void *ud);
/* Answers a request with only a status (e.g. UNIMPLEMENTED, UNAUTHENTICATED). */
void zt_grpc_reject(struct zt_h2conn *h2, int32_t stream_id, int status, const char *message);
int zt_grpc_scall_send(struct zt_grpc_scall *call, const uint8_t *msg, size_t len);
/* Ends the call with a status after what is queued. */
void zt_grpc_scall_finish(struct zt_grpc_scall *call, int status, const char *message);

#endif
