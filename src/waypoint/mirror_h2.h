/* One RequestMirror copy as HTTP/2 cleartext (mirror_h2.c), sans-I/O: an
 * nghttp2 client session that sends a single request (head, body,
 * trailers) and reads its response to the end, discarding it. Bytes come
 * in through wp_mirror_h2_recv and go out of wp_mirror_h2_send; no socket,
 * no loop, no log. mirror.c carries the bytes over an HBONE stream. */
#ifndef ZT_WAYPOINT_MIRROR_H2_H
#define ZT_WAYPOINT_MIRROR_H2_H

#include "http/head.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum wp_mirror_h2_state {
    WP_MIRROR_H2_ST_EXCHANGE, /* the request goes, the response comes */
    WP_MIRROR_H2_ST_DONE,     /* the response ended */
    WP_MIRROR_H2_ST_FAILED,   /* the stream or the session failed */
};
const char *wp_mirror_h2_state_str(enum wp_mirror_h2_state st);

struct wp_mirror_h2;

/* A session with the request submitted: req's method, scheme (default
 * "http"), authority, path and fields, connection-specific fields left out
 * (RFC 9113 8.2.2); the body's len bytes; trailers after it when it has
 * fields (may be NULL). Everything is borrowed for the call (copied).
 * 0, or ZT_E_PROTO if nghttp2 refuses the head. */
int wp_mirror_h2_new(const struct zt_http_head *req, const void *body, size_t len,
                     const struct zt_http_head *trailers, struct wp_mirror_h2 **out);
void wp_mirror_h2_free(struct wp_mirror_h2 *e);
/* The next bytes to send (*p valid until the next call on e), 0 when
 * there are none for now, or ZT_E_PROTO (the session failed). */
ssize_t wp_mirror_h2_send(struct wp_mirror_h2 *e, const uint8_t **p);
/* Bytes from the server. 0, or ZT_E_PROTO (the state is FAILED). Call
 * wp_mirror_h2_send after, then look at the state: acks, window updates
 * and an answer to bad HTTP/2 (a GOAWAY, then FAILED) wait for it. */
int wp_mirror_h2_recv(struct wp_mirror_h2 *e, const uint8_t *data, size_t len);
enum wp_mirror_h2_state wp_mirror_h2_state(const struct wp_mirror_h2 *e);
/* The final response's status, 0 until seen. */
int wp_mirror_h2_status(const struct wp_mirror_h2 *e);
/* Why it failed ("" otherwise); owned by e. */
const char *wp_mirror_h2_error(const struct wp_mirror_h2 *e);

#endif
