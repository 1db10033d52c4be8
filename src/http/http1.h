/* HTTP/1.1 for the waypoint, sans-I/O: a streaming parser for requests or
 * responses over libhttp-parser, with the strict checks a proxy at a
 * security boundary needs and the library leaves lenient, and an encoder
 * for heads and chunked framing.
 *
 * Parsing. The owner feeds the bytes it read; the parser calls the owner's
 * ops, in this order, for each message:
 *
 *   on_head         once, after the whole head passed every check;
 *   on_body         zero or more times, with the de-chunked payload as
 *                   slices of the caller's input (a body of any size
 *                   streams through, never buffered whole);
 *   on_message_end  once; trailers of a chunked message are passed here
 *                   (an empty head if there were none, NULL if not chunked),
 *                   checked like fields but as received: framing fields
 *                   among them are the owner's to drop.
 *
 * After on_message_end the parser pauses (state ZT_HTTP1_ST_DONE) and
 * zt_http1_parse returns, *consumed saying where the message ended, so
 * pipelined requests are handled one at a time: the owner calls
 * zt_http1_parser_resume() and feeds the unconsumed bytes again. A head
 * that ends the HTTP part of the connection (an upgrade request with
 * `Connection: upgrade` + `Upgrade:`, a CONNECT request, a 101 response, a
 * 2xx response to CONNECT) is delivered with framing.is_upgrade set and
 * then ends its message; the parser moves to ZT_HTTP1_ST_UPGRADED and the
 * bytes after *consumed are tunnel bytes to relay raw. An upgrade request
 * the server declines (its response is not 101) continues as HTTP: the
 * owner calls zt_http1_parser_resume() and parses the following bytes as
 * the next request (it must not relay them before the 101 arrives).
 *
 * Responses: before each response the owner says which request it answers
 * (zt_http1_parser_expect): a response to HEAD has no body whatever its
 * headers say, nor do 1xx, 204 and 304; a 2xx to CONNECT and a 101 to an
 * upgrade request are upgrades; a 101 nobody asked for is an error. An
 * interim 1xx response (100 Continue, 103) is delivered through on_head
 * with framing.is_interim set, has no on_message_end, and parsing goes on
 * to the final response within the same call.
 *
 * Errors. zt_http1_parse returns 0 or a negative code: ZT_E_TOO_BIG (head
 * over ZT_HTTP_HEAD_MAX or ZT_HTTP_MAX_FIELDS, request target over
 * ZT_HTTP1_TARGET_MAX) or ZT_E_PROTO (anything else). The parser is then
 * in ZT_HTTP1_ST_ERROR for good; zt_http1_parser_error() says which check
 * failed (enum zt_http1_error), zt_http1_parser_reason() gives a short
 * static reason to log and zt_http1_error_status() the status a server
 * answers a bad request with (a bad response is a 502 whatever the check).
 * In a message with two defects, which one is reported may depend on how
 * the input was cut into reads; that it fails does not.
 *
 * Checks made here beyond Debian's libhttp-parser 2.9.4 (built without
 * HTTP_PARSER_STRICT, so it accepts tabs and 8-bit bytes in the target,
 * spaces in field names, bare LF line ends, obs-fold and any version):
 * one message framing only (Content-Length together with Transfer-Encoding,
 * more than one Content-Length even if equal, and any Transfer-Encoding
 * but a single `chunked`, or one in HTTP/1.0, are rejected: the last with
 * 501, as Envoy does);
 * CRLF after each chunk-size line and chunk's data; field names are tokens, values have no
 * control characters but HTAB; lines end in CRLF and are never folded;
 * versions 1.0 and 1.1 only; one Host, required in HTTP/1.1 requests; a
 * target in origin form (or `*` for OPTIONS, authority form for CONNECT,
 * absolute form, whose authority then wins over Host) of visible ASCII.
 * Chunk extensions are ignored (the waypoint writes its own framing
 * upstream, so the library's reading of them is the only one that counts).
 *
 * Heads. The parsed head (head.h) has method, path (the target; for the
 * absolute form, its path and query, with scheme and authority set from
 * it), authority (from Host, which is not kept among the fields), version
 * (0 or 1), status, and the other fields in order, names lower-cased,
 * values without surrounding whitespace. The parser owns it; it is valid
 * from on_head until zt_http1_parser_resume() (an interim 1xx head: only
 * during its on_head), and the owner may change it or move it out
 * (zt_http1_parser_take_head).
 *
 * Not thread-safe; one parser per direction of one connection. */
#ifndef ZT_HTTP_HTTP1_H
#define ZT_HTTP_HTTP1_H

#include "base/buf.h"
#include "http/head.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest request target (414 beyond), as Envoy's default for the path. */
#define ZT_HTTP1_TARGET_MAX (8 * 1024)

enum zt_http1_error {
    ZT_HTTP1_E_NONE = 0,
    ZT_HTTP1_E_SYNTAX,            /* the library rejected the message */
    ZT_HTTP1_E_CL_AND_TE,         /* Content-Length and Transfer-Encoding */
    ZT_HTTP1_E_MULTIPLE_CL,       /* more than one Content-Length */
    ZT_HTTP1_E_BAD_CL,            /* Content-Length not 1*DIGIT (or too big) */
    ZT_HTTP1_E_TRANSFER_ENCODING, /* Transfer-Encoding other than one `chunked` */
    ZT_HTTP1_E_CHUNK,             /* bad chunk size or chunk framing */
    ZT_HTTP1_E_FIELD_NAME,        /* a field name that is not a token */
    ZT_HTTP1_E_FIELD_VALUE,       /* a control character in a field value */
    ZT_HTTP1_E_LINE_END,          /* a bare CR or LF in the head */
    ZT_HTTP1_E_OBS_FOLD,          /* a folded (continuation) line */
    ZT_HTTP1_E_HEAD_TOO_BIG,      /* over ZT_HTTP_HEAD_MAX */
    ZT_HTTP1_E_TOO_MANY_FIELDS,   /* over ZT_HTTP_MAX_FIELDS */
    ZT_HTTP1_E_TARGET_TOO_LONG,   /* request target over ZT_HTTP1_TARGET_MAX */
    ZT_HTTP1_E_TARGET,            /* request target of a bad form or character */
    ZT_HTTP1_E_VERSION,           /* not HTTP/1.0 or HTTP/1.1 */
    ZT_HTTP1_E_NO_HOST,           /* HTTP/1.1 request without Host */
    ZT_HTTP1_E_MULTIPLE_HOST,     /* more than one Host */
    ZT_HTTP1_E_BAD_HOST,          /* a Host that is not host[:port] */
    ZT_HTTP1_E_STATUS,            /* status out of 100..599, or an unasked-for 101 */
    ZT_HTTP1_E_TRUNCATED,         /* the stream ended inside a message */
    ZT_HTTP1_E_AFTER_CLOSE,       /* bytes after a message that closes the connection */
};

/* Short static description ("both content-length and transfer-encoding"). */
const char *zt_http1_error_str(enum zt_http1_error e);
/* The status a server answers a request failing with e: 400, except 414
 * (target too long), 431 (head too big, too many fields), 501 (transfer
 * coding) and 505 (version); 0 for ZT_HTTP1_E_NONE. */
int zt_http1_error_status(enum zt_http1_error e);

enum zt_http1_state {
    ZT_HTTP1_ST_HEAD,     /* waiting for, or reading, a head */
    ZT_HTTP1_ST_BODY,     /* head delivered, reading the body or trailers */
    ZT_HTTP1_ST_DONE,     /* message ended; paused until resume */
    ZT_HTTP1_ST_UPGRADED, /* the rest of the stream is a tunnel */
    ZT_HTTP1_ST_ERROR,    /* a check failed; see zt_http1_parser_error */
};
const char *zt_http1_state_str(enum zt_http1_state s);

/* How the message delivered with on_head is framed. */
struct zt_http1_framing {
    bool has_body;        /* body bytes may follow (chunked, length > 0, until close) */
    bool chunked;         /* Transfer-Encoding: chunked */
    bool has_length;      /* Content-Length given (and used) */
    uint64_t length;      /* its value */
    bool until_close;     /* response body ends when the connection does */
    bool keep_alive;      /* the connection may carry another message after this */
    bool is_upgrade;      /* the bytes after this message are a tunnel */
    bool is_interim;      /* a 1xx response other than 101 */
    bool expect_continue; /* request with `Expect: 100-continue` */
};

/* The owner's callbacks; each gets the ops' `ud`. They must not free the
 * parser nor feed it; they may call zt_http1_parser_pause (on_head) and
 * the getters. Pointers passed are borrowed for the call, except the head
 * (see above). */
struct zt_http1_ops {
    void (*on_head)(void *ud, struct zt_http_head *head, const struct zt_http1_framing *f);
    void (*on_body)(void *ud, const uint8_t *data, size_t len);
    /* trailers: NULL unless the message was chunked (then possibly empty);
     * the owner may change or move them until resume. */
    void (*on_message_end)(void *ud, struct zt_http_head *trailers);
};

struct zt_http1_parser;

/* A parser for requests (is_response false) or responses. ops is kept by
 * reference (static storage is the usual case); ud is passed back. */
struct zt_http1_parser *zt_http1_parser_new(bool is_response, const struct zt_http1_ops *ops,
                                            void *ud);
void zt_http1_parser_free(struct zt_http1_parser *p);
/* Frees what the parser keeps between messages (the last message's head,
 * trailers and field buffers), for a connection going idle. Only between
 * messages (a no-op in the middle of one), never inside zt_http1_parse, and
 * only when the owner keeps no pointer into the heads. */
void zt_http1_parser_shrink(struct zt_http1_parser *p);

/* Feeds len bytes (borrowed for the call; body slices passed to on_body
 * point into them). Parses until the input ends, a message ends (state
 * DONE), an upgrade (UPGRADED), a pause requested in on_head, or an error.
 * *consumed is how many bytes were used (always set, <= len): on return
 * with 0, bytes after *consumed are to be fed again after resume (DONE,
 * a pause) or are tunnel bytes (UPGRADED); in state HEAD or BODY every byte
 * was used. Returns 0, ZT_E_PROTO or ZT_E_TOO_BIG (see above). A parser in
 * DONE, UPGRADED or ERROR consumes nothing and returns 0 (ERROR: the
 * error again). */
int zt_http1_parse(struct zt_http1_parser *p, const uint8_t *data, size_t len, size_t *consumed);

/* The peer closed its side, and every byte read was fed: ends a response
 * body read until close (calls on_message_end, state DONE). Returns 0 if that was the end of a
 * message or nothing of a message had arrived, ZT_E_PROTO (ZT_HTTP1_E_TRUNCATED) if a message was
 * cut short. */
int zt_http1_parse_eof(struct zt_http1_parser *p);

/* From on_head: stop after this head; zt_http1_parse returns with the rest
 * unconsumed (state BODY) until the next call. */
void zt_http1_parser_pause(struct zt_http1_parser *p);

/* After DONE (next message) or UPGRADED (an upgrade the server declined):
 * forgets the message (its head and trailers) and reads the next one. If
 * the message ended the connection (framing.keep_alive false), any byte fed
 * after it is an error (ZT_HTTP1_E_AFTER_CLOSE) and zt_http1_parse_eof is
 * a clean end. */
void zt_http1_parser_resume(struct zt_http1_parser *p);

/* Responses: the request the next response answers. method is the
 * request's (borrowed for the call; "HEAD" and "CONNECT" matter), upgrade
 * whether it asked for one (Connection: upgrade with Upgrade). Applies
 * until the next call (a new parser expects a response to GET). */
void zt_http1_parser_expect(struct zt_http1_parser *p, const char *method, bool upgrade);

enum zt_http1_state zt_http1_parser_state(const struct zt_http1_parser *p);
enum zt_http1_error zt_http1_parser_error(const struct zt_http1_parser *p);
/* zt_http1_error_str of the error, "" if none. */
const char *zt_http1_parser_reason(const struct zt_http1_parser *p);
/* The current message's head (valid from on_head until resume), or NULL. */
struct zt_http_head *zt_http1_parser_head(struct zt_http1_parser *p);
/* Moves the head out into *out (a cleaned-up or never-initialized head;
 * the caller then owns it and cleans it up); the parser keeps an empty one. */
void zt_http1_parser_take_head(struct zt_http1_parser *p, struct zt_http_head *out);

/* ---- encoding ----------------------------------------------------------- */

/* Appends h as an HTTP/1.1 head to out: `METHOD path HTTP/1.1` and
 * `host: authority` (the authority stands for Host; a `host` field is not
 * written besides), or `HTTP/1.1 status Reason`; then the fields in order
 * and the empty line. Nothing is appended unless every part is valid:
 * ZT_E_PROTO for a method or field name that is not a token, a path or
 * authority with bytes outside visible ASCII, a value with a control
 * character but HTAB (CR, LF or NUL could smuggle a header), a missing
 * method or path, or a status outside 100..599. Framing fields
 * (content-length, transfer-encoding) are the caller's to set. */
int zt_http1_encode_head(const struct zt_http_head *h, struct zt_buf *out);
/* Chunked framing: `<hex len>CRLF` before len (> 0) bytes of data and CRLF
 * after them; the last chunk `0CRLF`, the trailers (NULL for none; checked
 * as fields above: ZT_E_PROTO and nothing appended), and CRLF. */
void zt_http1_encode_chunk_header(struct zt_buf *out, size_t len);
void zt_http1_encode_chunk_end(struct zt_buf *out);
int zt_http1_encode_last_chunk(const struct zt_http_head *trailers, struct zt_buf *out);
/* The reason phrase for a status ("Not Found"; "" for unknown codes). */
const char *zt_http1_reason_phrase(int status);

/* Removes the hop-by-hop fields a proxy must not forward (RFC 9110 7.6.1):
 * Connection and every field it names, Keep-Alive, Proxy-Connection, TE,
 * Transfer-Encoding and Upgrade. With is_upgrade, Upgrade is kept and
 * Connection becomes exactly `upgrade`. Connection cannot remove
 * content-length (the framing). Returns 0, or ZT_E_TOO_BIG if adding
 * `connection: upgrade` to a head without Connection passes a cap (h is
 * then stripped but has no Connection). */
int zt_http1_strip_hop_by_hop(struct zt_http_head *h, bool is_upgrade);

#endif
