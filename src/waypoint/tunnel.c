/* A CONNECT relayed as a TCP stream: the client's HBONE stream (down) and
 * an HBONE stream to the endpoint (up), bytes moved both ways.
 *
 * Both sides are HTTP/2 streams, so no socket is touched here: DATA from
 * one side is queued toward the other and handed to nghttp2 when it asks
 * for the other stream's body; only then is it returned to the sender's
 * flow-control window (zt_h2conn_consume). A slow reader on one side so
 * stops its own sender at the stream window, never the connections.
 *
 * Re-entrancy: a call into one connection (reset, resume, flush) may run
 * the other stream's callbacks, including on_close. A tunnel therefore
 * never frees itself: once both streams are gone it moves to the
 * worker's dead list, freed at the next loop check (wp_tunnels_reap). */
#include "waypoint/waypoint_int.h"
#include "waypoint/stream.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "state/ip.h"
#include "telemetry/accesslog.h"
#include "tls/spiffe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum wp_tunnel_state {
    WP_TUN_POOL,         /* waiting for an HBONE connection to the endpoint */
    WP_TUN_CONNECT_SENT, /* upstream CONNECT sent */
    WP_TUN_OPEN,         /* bytes move */
    WP_TUN_ENDED,
};

struct wp_tunnel {
    struct wp_worker *w;
    struct zt_pod_inst *pod;
    struct zt_list_node link; /* in w->tunnels, then w->dead */
    enum wp_tunnel_state state;
    struct wp_stream down, up;
    struct zt_hbone_waiter waiter;
    const struct zt_state *snap; /* referenced: dst pointers below are from it */
    struct wp_dest dst;
    struct sockaddr_storage peer, hbone_dst;
    char src_identity[ZT_SPIFFE_ID_MAX + 1];
    char traceparent[64];
    char error[160];
    uint64_t start_ms;
    bool held; /* counted in the worker's live connections */
};

static void log_tunnel(struct wp_tunnel *t)
{
    struct wp_tcp_record r = {.peer = &t->peer,
                              .src_identity = t->src_identity,
                              .svc = t->dst.svc,
                              .wl = t->dst.wl,
                              .hbone_dst = &t->hbone_dst,
                              .port = t->dst.port,
                              .bytes_sent = t->up.rx,
                              .bytes_recv = t->down.rx,
                              .start_ms = t->start_ms,
                              .error = t->error};
    wp_log_tcp(t->w, &r);
}

/* Both streams are gone (or were never there): log, and leave the tunnel
 * to the reaper. */
static void tunnel_end(struct wp_tunnel *t)
{
    if (t->state == WP_TUN_ENDED)
        return;
    t->state = WP_TUN_ENDED;
    zt_l7_upstream_cancel(&t->waiter);
    log_tunnel(t);
    if (t->held)
        zt_l7_release(t->pod);
    t->held = false;
    zt_list_remove(&t->link);
    zt_list_insert_head(&t->w->dead, &t->link);
}

/* Keeps the first reason the tunnel failed for the access log (cut to
 * its buffer: a hostname authority can be longer). */
static void fail(struct wp_tunnel *t, const char *what, const char *detail)
{
    if (!t->error[0] && snprintf(t->error, sizeof(t->error), "%s%s%s", what, detail ? ": " : "",
                                 detail ? detail : "") >= (int)sizeof(t->error))
        ZT_DEBUG("waypoint", "tunnel failure reason cut to %zu bytes", sizeof(t->error) - 1);
}

static struct wp_stream *other(struct wp_tunnel *t, struct wp_stream *s)
{
    return s == &t->down ? &t->up : &t->down;
}

/* Ends the tunnel once both streams are gone (or, still waiting for the
 * endpoint's connection, once the client's is). */
static void after_close(struct wp_tunnel *t)
{
    if (!t->down.h2 && (!t->up.h2 || t->state == WP_TUN_POOL))
        tunnel_end(t);
}

static void on_data(struct wp_stream *s, const uint8_t *data, size_t len)
{
    struct wp_tunnel *t = s->owner;
    wp_stream_write(other(t, s), data, len);
}

static void on_end(struct wp_stream *s)
{
    struct wp_tunnel *t = s->owner;
    wp_stream_end(other(t, s));
}

/* Bytes sent on s were received on the other stream: its window reopens. */
static void on_sent(struct wp_stream *s, size_t n)
{
    struct wp_tunnel *t = s->owner;
    wp_stream_consume(other(t, s), n);
}

/* A stream that ends before both directions finished (a reset, a dropped
 * connection) takes the other one with it. */
static void on_close(struct wp_stream *s, int error)
{
    struct wp_tunnel *t = s->owner;
    if (error) {
        fail(t, s == &t->down ? "client stream closed" : "upstream stream closed",
             zt_strerror(error));
        wp_stream_reset(other(t, s));
    }
    after_close(t);
}

static void up_on_response(struct wp_stream *s, int status)
{
    struct wp_tunnel *t = s->owner;
    if (status != 200) {
        char st[16];
        snprintf(st, sizeof(st), "%d", status);
        fail(t, "upstream returned HTTP status", st);
        /* The client's proxy hears what the endpoint's said. */
        wp_stream_respond(&t->down, status == 401 ? 401 : 503);
        return;
    }
    t->state = WP_TUN_OPEN;
    if (wp_stream_respond(&t->down, 200) < 0)
        wp_stream_reset(&t->down);
}

static const struct wp_stream_ops down_ops = {
    .on_data = on_data,
    .on_end = on_end,
    .on_close = on_close,
    .on_sent = on_sent,
};

static const struct wp_stream_ops up_ops = {
    .on_response = up_on_response,
    .on_data = on_data,
    .on_end = on_end,
    .on_close = on_close,
    .on_sent = on_sent,
};

static void refuse_down(struct wp_tunnel *t, int status)
{
    wp_stream_respond(&t->down, status);
}

/* The endpoint's HBONE connection is open (or failed): send the CONNECT. */
static void open_up(struct wp_tunnel *t, struct zt_h2conn *h2)
{
    char authority[WP_AUTHORITY_MAX];
    const char *hdrs[2] = {"traceparent", t->traceparent};
    if (wp_connect_endpoint(&t->up, h2, &t->hbone_dst, t->dst.port, hdrs, t->traceparent[0] ? 1 : 0,
                            authority, sizeof(authority)) < 0) {
        fail(t, "cannot open an HBONE stream to", authority);
        refuse_down(t, 503);
        return;
    }
    t->state = WP_TUN_CONNECT_SENT;
}

static void on_pool(struct zt_hbone_waiter *wt, struct zt_h2conn *h2, int err)
{
    struct wp_tunnel *t = (struct wp_tunnel *)((char *)wt - offsetof(struct wp_tunnel, waiter));
    if (t->state != WP_TUN_POOL)
        return;
    if (err < 0 || !h2) {
        fail(t, "HBONE connection to the endpoint failed",
             err == ZT_E_IDENTITY ? "server identity not accepted" : zt_strerror(err));
        refuse_down(t, 503);
        return;
    }
    open_up(t, h2);
}

void wp_tunnel_start(struct wp_worker *w, const struct zt_l7_connect *c, const struct wp_dest *d)
{
    struct wp_tunnel *t = zt_xcalloc(1, sizeof(*t));
    t->w = w;
    t->pod = c->pod;
    t->state = WP_TUN_POOL;
    wp_stream_init(&t->down, &down_ops, t);
    wp_stream_init(&t->up, &up_ops, t);
    t->snap = zt_l7_state(c->pod);
    zt_state_ref(t->snap);
    t->dst = *d;
    t->peer = *c->peer;
    snprintf(t->src_identity, sizeof(t->src_identity), "%s", c->peer_identity);
    if (c->req->traceparent && strlen(c->req->traceparent) < sizeof(t->traceparent))
        snprintf(t->traceparent, sizeof(t->traceparent), "%s", c->req->traceparent);
    t->start_ms = uv_now(w->loop);
    zt_list_insert_head(&w->tunnels, &t->link);
    zt_l7_hold(c->pod);
    t->held = true;
    wp_stream_attach(&t->down, c->h2, c->sid);
    t->waiter.cb = on_pool;
    struct zt_h2conn *ready = NULL;
    int rc = zt_l7_upstream(c->pod, d->wl, d->svc, d->svc_port, &t->waiter, &ready, &t->hbone_dst);
    if (rc < 0) {
        fail(t, "no HBONE connection to the endpoint", zt_strerror(rc));
        refuse_down(t, 503);
        return;
    }
    if (ready)
        open_up(t, ready);
}

void wp_tunnels_pod_close(struct wp_worker *w, struct zt_pod_inst *pod)
{
    for (struct zt_list_node *n = zt_list_first(&w->tunnels), *next; n; n = next) {
        next = zt_list_next(&w->tunnels, n);
        struct wp_tunnel *t = zt_list_entry(n, struct wp_tunnel, link);
        if (t->pod != pod)
            continue;
        fail(t, "waypoint stopped", NULL);
        wp_stream_detach(&t->down);
        wp_stream_detach(&t->up);
        tunnel_end(t);
    }
}

void wp_tunnels_reap(struct wp_worker *w)
{
    while (!zt_list_empty(&w->dead)) {
        struct wp_tunnel *t = zt_list_entry(zt_list_first(&w->dead), struct wp_tunnel, link);
        zt_list_remove(&t->link);
        wp_stream_cleanup(&t->down);
        wp_stream_cleanup(&t->up);
        zt_state_unref(t->snap);
        free(t);
    }
}
