/* One HTTP/2 stream of the waypoint (a client's HBONE stream, or one it
 * opened to an endpoint) as a byte pipe: bytes written are queued and
 * handed to nghttp2 when it asks for the stream's body; bytes received
 * are passed to the owner, who returns them to the flow-control window
 * (wp_stream_consume) once they have gone on, so a slow reader stops its
 * own sender at the stream window and never the connection.
 *
 * Re-entrancy: any call here may run callbacks of this or another stream
 * (a flush can close a connection). Owners never free themselves from a
 * callback; they end at a safe point (see tunnel.c, http.c). */
#ifndef ZT_WAYPOINT_STREAM_H
#define ZT_WAYPOINT_STREAM_H

#include "base/buf.h"
#include "h2/h2conn.h"

#include <stdbool.h>
#include <stdint.h>

struct wp_stream;

struct wp_stream_ops {
    /* Client role: the CONNECT's answer. */
    void (*on_response)(struct wp_stream *s, int status);
    /* DATA received (borrowed for the call); consume it later. */
    void (*on_data)(struct wp_stream *s, const uint8_t *data, size_t len);
    /* The peer ended its side. */
    void (*on_end)(struct wp_stream *s);
    /* The stream is gone (0: both sides ended cleanly); h2 is NULL now. */
    void (*on_close)(struct wp_stream *s, int error);
    /* n queued bytes went to nghttp2: the owner may consume what it
     * received for them. May be NULL. */
    void (*on_sent)(struct wp_stream *s, size_t n);
};

struct wp_stream {
    const struct wp_stream_ops *ops;
    void *owner;
    struct zt_h2conn *h2; /* NULL when not (or no longer) open */
    int32_t sid;
    struct zt_buf q; /* to send */
    bool is_flowing; /* the body may be sent (CONNECT answered 200) */
    bool q_eof;      /* end the stream once q is empty */
    bool eof_sent;   /* ... and it was */
    bool rx_eof;     /* the peer ended its side */
    uint64_t rx, tx; /* bytes received, sent */
};

void wp_stream_init(struct wp_stream *s, const struct wp_stream_ops *ops, void *owner);
/* Server role: takes stream sid of h2 (announced by the proxy). */
void wp_stream_attach(struct wp_stream *s, struct zt_h2conn *h2, int32_t sid);
/* Server role: answers the CONNECT; 200 starts the body flowing, any other
 * status ends the stream. 0 or a negative error. */
int wp_stream_respond(struct wp_stream *s, int status);
/* Client role: sends a CONNECT for authority with extra headers
 * (name/value pairs, borrowed). 0 or a negative error. */
int wp_stream_connect(struct wp_stream *s, struct zt_h2conn *h2, const char *authority,
                      const char *const *headers, size_t n_headers);
/* Queues bytes (copied) and ends the stream after them. */
void wp_stream_write(struct wp_stream *s, const void *data, size_t len);
void wp_stream_end(struct wp_stream *s);
/* Queues bytes (copied) without handing them on yet: a writer of many
 * small pieces calls wp_stream_flush once after them. */
void wp_stream_queue(struct wp_stream *s, const void *data, size_t len);
void wp_stream_flush(struct wp_stream *s);
/* Returns n received bytes to the window. */
void wp_stream_consume(struct wp_stream *s, size_t n);
/* Resets the stream (its on_close follows, maybe at once). */
void wp_stream_reset(struct wp_stream *s);
/* Forgets the stream without callbacks (reset if still open). */
void wp_stream_detach(struct wp_stream *s);
/* Hands stream `from` (open or not, its queue and counts) to `to`, which
 * keeps its own ops and owner; `from` is left detached and empty, with
 * no callback. For a session that finds out it is another protocol. */
void wp_stream_move(struct wp_stream *to, struct wp_stream *from);
/* Frees the queue (after the stream is gone). */
void wp_stream_cleanup(struct wp_stream *s);

#endif
