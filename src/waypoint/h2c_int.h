/* Private to h2c.c, h2x.c and h2c_h1.c: the request engine shared by the
 * waypoint's HTTP/2 sessions and by its HTTP/1.1 sessions toward ports
 * declared HTTP/2 or gRPC.
 *
 * A session (struct wp_h2c) is a client's CONNECT stream. Its front reads
 * the client's requests, each an exchange (struct wp_h2x, h2x.c): routed,
 * checked and sent on to an endpoint over an upstream connection (struct
 * wp_h2up) of the session's, h2c (h2c.c) or HTTP/1.1 (h2c_h1.c) as the
 * destination port's protocol says, with retries and timeouts; the
 * response goes back through the front. Fronts: HTTP/2 (an nghttp2 server
 * session, h2c.c) and HTTP/1.1 (h2c_h1.c). */
#ifndef ZT_WAYPOINT_H2C_INT_H
#define ZT_WAYPOINT_H2C_INT_H

#include "waypoint/waypoint_int.h"
#include "waypoint/stream.h"

#include "http/head.h"
#include "telemetry/headers.h"
#include "tls/spiffe.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>

/* Advertised to clients. With the stream window, it bounds what a session
 * holds in queues: at most one stream window per stream and direction. */
#define WP_H2C_MAX_STREAMS 100
#define WP_H2C_STREAM_WINDOW (128 * 1024)
#define WP_H2C_CONN_WINDOW (4 * 1024 * 1024)
/* Above this many bytes queued toward an HBONE stream, its session's
 * output waits until they are sent. */
#define WP_H2C_QUEUE_HIGH (256 * 1024)
/* The most request body bytes kept for a retry, as http.c's. */
#define WP_H2C_REPLAY_MAX (64 * 1024)
/* A cond for wp_h2x_fail: the try ran past its per-try timeout (retried
 * while attempts remain, whatever the policy lists, as http.c). */
#define WP_H2C_RETRY_PER_TRY_TIMEOUT 0x80000000u

struct wp_h2c;
struct wp_h2x;
struct zt_http1_parser;

/* One connection to an endpoint's port, inside an HBONE stream: h2c
 * (streams multiplexed), or HTTP/1.1 (is_h1: one exchange at a time, kept
 * for the next while both sides allow it). */
struct wp_h2up {
    struct wp_h2c *s;
    struct zt_list_node link; /* in s->ups, then w->dead_h2ups */
    struct wp_stream st;
    struct zt_hbone_waiter waiter;
    nghttp2_session *ng; /* h2c */
    const struct zt_workload *wl;
    uint16_t port;
    struct sockaddr_storage hbone; /* ip:15008 */
    size_t n_reqs;
    bool waiting; /* for the pool */
    bool is_dead; /* failed or ended: takes nothing new */
    bool no_new;  /* GOAWAY received: takes nothing new */
    /* HTTP/1.1 only. */
    bool is_h1;
    bool req_chunked;           /* the request body goes chunked */
    bool req_written;           /* all of the request is queued */
    bool resp_done;             /* its response ended */
    bool reusable;              /* ... and allows another exchange */
    struct zt_http1_parser *h1; /* the responses */
    struct wp_h2x *x;           /* the exchange in flight, NULL when idle */
    struct zt_buf scratch;      /* framing being encoded */
    uint64_t body_held;         /* response body bytes given to x, not yet back in the window */
    uint64_t body_fed;          /* ... of them, during the current parse */
    uint64_t tx_at_start;       /* st.tx when the exchange began */
    unsigned n_done;            /* exchanges completed */
};

/* One request and its response. */
struct wp_h2x {
    struct wp_h2c *s;
    struct zt_list_node link; /* in s->reqs */
    int32_t down_sid, up_sid; /* HTTP/2 streams: the client's, the upstream's */
    struct wp_h2up *up;       /* NULL: no try in flight */
    struct zt_http_head req, req_trailers, resp, resp_trailers;
    struct zt_buf to_up, to_down, replay;
    uint64_t body_returned; /* request body bytes returned to the client's window */
    uint64_t try_sent;      /* request body bytes sent in the current try */
    const struct zt_service *dst_svc;
    const struct zt_workload *dst_wl;
    uint16_t svc_port, port; /* the service's as routed; the endpoint's target port */
    struct zt_route_table *routes;
    const struct zt_route_filters *filters;
    struct wp_mirror *mirror; /* RequestMirror copies while the request arrives */
    struct zt_route_retry retry;
    uint32_t timeout_ms;
    unsigned tries;
    int status, grpc_status;
    bool is_grpc, too_big;
    bool is_upgrade;     /* HTTP/1.1 asked for an upgrade: refused (501) */
    bool up_h1;          /* the upstream speaks HTTP/1.1 (the port's protocol) */
    bool resp_too_big;   /* the upstream's head passed the caps: 502 */
    bool in_trailers;    /* the client's next header block is trailers */
    bool req_end;        /* the client ended its side */
    bool up_in_trailers; /* the upstream's next header block is trailers */
    bool resp_started;   /* the response head went to the client */
    bool resp_end;       /* ... and all of it arrived */
    bool is_replayable, is_local_reply;
    uint8_t shadow;  /* WP_SHADOW_* */
    struct wp_rl rl; /* the rate limit's fields for the response */
    /* W3C trace context: the waypoint's span (parent_id is its id). */
    struct zt_telemetry_traceparent trace;
    uint64_t start_ms, start_ns, req_bytes, resp_bytes;
    char method[16], path[256], authority[128], upstream[64], route[128], error[384];
    uv_timer_t try_timer, timeout_timer;
    int handles;
};

/* What an exchange needs of its session's front. */
struct wp_front_ops {
    /* The response head x->resp goes to the client (end: nothing follows). */
    void (*respond)(struct wp_h2x *x, bool end);
    /* More of the response: x->to_down grew, or x->resp_end was set. */
    void (*resume)(struct wp_h2x *x);
    /* The response cannot complete: the client's stream, or (HTTP/1.1)
     * connection, is reset. */
    void (*reset)(struct wp_h2x *x, uint32_t h2_error);
    /* n more request body bytes went on: the client may send as many. */
    void (*consumed)(struct wp_h2x *x, size_t n);
    /* x ends (wp_h2x_end): the front forgets it. */
    void (*forget)(struct wp_h2x *x);
};

struct wp_h2c {
    struct wp_worker *w;
    struct zt_pod_inst *pod;
    struct zt_list_node link; /* in w->h2cs, then w->dead_h2cs */
    const struct wp_front_ops *front;
    struct wp_stream down;
    nghttp2_session *ng; /* HTTP/2 front: the client's session */
    struct zt_list ups;  /* of wp_h2up */
    struct zt_list reqs; /* of wp_h2x */
    const struct zt_state *snap;
    struct wp_dest dst;
    struct sockaddr_storage peer;
    char src_identity[ZT_SPIFFE_ID_MAX + 1];
    size_t down_unreturned; /* HBONE bytes received, not yet returned */
    unsigned ups_gen;       /* bumped when ups changes */
    bool ended, held, pumping, repump;
    /* HTTP/1.1 front. */
    struct zt_http1_parser *req_p;
    struct zt_buf din;    /* client bytes not parsed yet */
    struct zt_buf out;    /* framing being encoded */
    struct wp_h2x *cur;   /* the request in flight, NULL: none */
    bool keep;            /* the client's connection outlives the request */
    bool resp_chunked;    /* the response goes chunked */
    bool resp_trailer_ok; /* ... and may end with trailers */
    bool in_parse;        /* inside zt_http1_parse of req_p */
    bool closing;         /* the last response is queued */
    bool cut;             /* a response cannot complete: the connection is reset */
};

static inline void wp_h2x_copy(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

/* ---- h2x.c: exchanges ---- */
struct wp_h2x *wp_h2x_new(struct wp_h2c *s, int32_t sid);
/* The request head x->req is complete: routed, then sent on, or answered. */
void wp_h2x_start(struct wp_h2x *x);
/* The client's side of x is gone: logged (once) and freed. */
void wp_h2x_end(struct wp_h2x *x);
void wp_h2x_error(struct wp_h2x *x, const char *what, const char *detail);
/* A response of the waypoint's own (gRPC's form for a gRPC request). */
void wp_h2x_local_reply(struct wp_h2x *x, int status, const char *body, const char *const *hdrs,
                        size_t n_hdrs);
/* The upstream's response head is in x->resp: retried, or on to the client. */
void wp_h2x_response_head(struct wp_h2x *x, bool end);
/* The try failed for cond: the next try, else 503/504, or a reset. */
void wp_h2x_fail(struct wp_h2x *x, uint32_t cond, const char *what, const char *detail);
/* Forgets the try in flight. */
void wp_h2x_detach_up(struct wp_h2x *x);
/* n request body bytes of the current try went on. */
void wp_h2x_body_sent(struct wp_h2x *x, size_t n);
/* n response body bytes left x->to_down for the client. */
void wp_h2x_down_took(struct wp_h2x *x, size_t n);
/* A request body chunk from the client (queued on, kept for a retry). */
void wp_h2x_body(struct wp_h2x *x, const uint8_t *data, size_t len);
/* The client ended its side (trailers in x->req_trailers). */
void wp_h2x_req_end(struct wp_h2x *x);
/* grpc-status of h as a number, -1 if none or malformed. */
int wp_h2x_grpc_status(const struct zt_http_head *h);

/* ---- h2c.c: sessions and h2c upstream connections ---- */
void wp_h2c_pump(struct wp_h2c *s);
/* A connection to wl's port taking another request (h2c or HTTP/1.1). */
struct wp_h2up *wp_h2up_get(struct wp_h2c *s, const struct zt_workload *wl, uint16_t port,
                            const struct zt_service *svc, uint16_t svc_port, bool is_h1, int *err);
/* Sends x's try on h2c connection up. */
void wp_h2up_submit(struct wp_h2x *x, struct wp_h2up *up);
/* Resets stream sid (an exchange's, forgotten) of h2c connection up. */
void wp_h2up_cancel(struct wp_h2up *up, int32_t sid);
/* The connection takes nothing more (its exchanges are the caller's). */
void wp_h2up_kill(struct wp_h2up *up);
/* The connection failed: its exchanges lose their try. */
void wp_h2up_fail(struct wp_h2up *up, uint32_t cond, const char *what, const char *detail);
struct wp_h2c *wp_h2c_session_new(struct wp_worker *w, struct zt_pod_inst *pod,
                                  const struct wp_dest *d, const struct sockaddr_storage *peer,
                                  const char *identity, bool is_h1);
/* Ends the session (its requests end, its connections close). */
void wp_h2c_session_end(struct wp_h2c *s);

/* ---- h2c_h1.c: HTTP/1.1 upstream connections and the HTTP/1.1 front ---- */
struct zt_http1_parser *wp_h1up_parser(struct wp_h2up *up);
int wp_h1up_begin(struct wp_h2x *x, struct wp_h2up *up);
void wp_h1up_push(struct wp_h2x *x);
void wp_h1up_release(struct wp_h2up *up);
void wp_h1up_on_data(struct wp_h2up *up, const uint8_t *data, size_t len);
void wp_h1up_on_end(struct wp_h2up *up);
extern const struct wp_front_ops wp_h1front_ops;
extern const struct wp_stream_ops wp_h1front_down_ops;
struct zt_http1_parser *wp_h1front_parser(struct wp_h2c *s);
/* Moves the response in flight toward the client; -1 if the connection
 * must be reset. */
int wp_h1front_out(struct wp_h2c *s);
/* No request after the one in flight. */
void wp_h1front_drain(struct wp_h2c *s);

#endif
