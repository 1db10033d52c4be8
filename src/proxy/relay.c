/* The relay's one pump and the tunnel state machine (see relay.h). */
#include "proxy/relay.h"

#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>

#define DEFAULT_CAP (256 * 1024)
#define DEFAULT_READ (256 * 1024)

static const char *const state_names[ZT_TUN_STATE_COUNT] = {
    "connecting",       "connect-sent", "established", "half-closed-up",
    "half-closed-down", "closed",       "failed",
};

const char *zt_tunnel_state_str(enum zt_tunnel_state st)
{
    return (unsigned)st < ZT_TUN_STATE_COUNT ? state_names[st] : "?";
}

/* Side A is the pod's own socket: downstream; side B upstream. */
static const char *const side_names[2] = {"downstream", "upstream"};

void zt_relay_init(struct zt_relay *r, const struct zt_relay_ops *ops, struct zt_endpoint *a,
                   struct zt_endpoint *b, size_t cap, size_t read_sz)
{
    *r = (struct zt_relay){
        .state = ZT_TUN_CONNECTING,
        .ops = ops,
        .cap = cap && cap <= UINT32_MAX ? (uint32_t)cap : DEFAULT_CAP,
        .read_sz = read_sz && read_sz <= UINT32_MAX ? (uint32_t)read_sz : DEFAULT_READ,
    };
    zt_relay_set_endpoint(r, ZT_RELAY_A, a);
    zt_relay_set_endpoint(r, ZT_RELAY_B, b);
}

void zt_relay_set_endpoint(struct zt_relay *r, enum zt_relay_side side, struct zt_endpoint *ep)
{
    r->ep[side] = ep;
    if (ep) {
        ep->relay = r;
        ep->side = side;
    }
}

bool zt_relay_done(const struct zt_relay *r)
{
    return r->state == ZT_TUN_CLOSED || r->state == ZT_TUN_FAILED;
}

bool zt_relay_moving(const struct zt_relay *r)
{
    return r->state >= ZT_TUN_ESTABLISHED && r->state <= ZT_TUN_HALF_CLOSED_DOWN;
}

/* The one place the state changes; entering a state does its actions. */
static void set_state(struct zt_relay *r, enum zt_tunnel_state st, const char *error)
{
    enum zt_tunnel_state from = r->state;
    if (from == st || zt_relay_done(r))
        return;
    r->state = st;
    r->ops->on_state(r, from, error);
}

static void fail(struct zt_relay *r, const char *what, enum zt_relay_side side, ssize_t err)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "%s %s: %s", what, side_names[side], zt_strerror((int)err));
    set_state(r, ZT_TUN_FAILED, msg);
}

/* Interest of each endpoint, from the buffers: read while there is room
 * toward the other side, write while bytes wait for it. A flush handed to
 * the owner (defer_flush) is not also waited for by polling. */
static void update_wants(struct zt_relay *r)
{
    bool moving = zt_relay_moving(r);
    for (int s = 0; s < 2; s++) {
        struct zt_endpoint *ep = r->ep[s];
        if (!ep)
            continue;
        const struct zt_relay_flow *out = &r->flow[s], *in = &r->flow[1 - s];
        bool rd = !out->is_src_eof && (ep->is_unbounded || (moving && out->buf.len < r->cap));
        bool wr = moving && in->buf.len > 0 && !in->is_flush_deferred;
        ep->ops->want(ep, rd, wr);
        if (zt_relay_done(r))
            return;
    }
}

static void finish_flow(struct zt_relay *r, enum zt_relay_dir d)
{
    r->flow[d].is_done = true;
    if (r->flow[1 - d].is_done)
        set_state(r, ZT_TUN_CLOSED, NULL);
    else if (r->state == ZT_TUN_ESTABLISHED)
        set_state(r, d == ZT_RELAY_UP ? ZT_TUN_HALF_CLOSED_UP : ZT_TUN_HALF_CLOSED_DOWN, NULL);
}

/* Shuts the sink once the source ended and every byte reached it. */
static void maybe_shut(struct zt_relay *r, enum zt_relay_dir d)
{
    struct zt_relay_flow *f = &r->flow[d];
    if (!zt_relay_moving(r) || f->buf.len > 0 || !f->is_src_eof || f->is_shut)
        return;
    struct zt_endpoint *dst = r->ep[1 - d];
    f->is_shut = true;
    int rc = dst->ops->shutdown_write(dst);
    if (zt_relay_done(r))
        return;
    if (rc < 0)
        fail(r, "shutdown", dst->side, rc);
    else if (rc == 0)
        finish_flow(r, d);
}

/* Bytes of direction d read into the scratch: written to the sink at once
 * if it may be, what it does not take kept in the buffer. Returns false
 * once the tunnel ended. */
static bool take_scratch(struct zt_relay *r, enum zt_relay_dir d, const uint8_t *p, size_t n,
                         bool *may_write)
{
    struct zt_relay_flow *f = &r->flow[d];
    struct zt_endpoint *src = r->ep[d], *dst = r->ep[1 - d];
    size_t off = 0;
    if (*may_write) {
        ssize_t w = dst->ops->write(dst, p, n);
        if (zt_relay_done(r))
            return false;
        if (w > 0) {
            off = (size_t)w;
            if (src->ops->delivered) {
                src->ops->delivered(src, off);
                if (zt_relay_done(r))
                    return false;
            }
        } else if (w != -EAGAIN) {
            fail(r, "write to", dst->side, w);
            return false;
        } else {
            *may_write = false;
        }
    }
    if (off < n)
        zt_buf_append(&f->buf, p + off, n - off);
    return true;
}

/* Moves bytes of direction d: what waits goes to the sink (if may_write),
 * then more is read from the source (if may_read and there is room), until
 * neither side makes progress. Returns false once the tunnel ended. */
static bool pump(struct zt_relay *r, enum zt_relay_dir d, bool may_read, bool may_write)
{
    struct zt_relay_flow *f = &r->flow[d];
    struct zt_endpoint *src = r->ep[d], *dst = r->ep[1 - d];
    bool moved = true;
    while (moved) {
        moved = false;
        if (may_write && f->buf.len > 0) {
            ssize_t n = dst->ops->write(dst, zt_buf_head(&f->buf), f->buf.len);
            if (zt_relay_done(r))
                return false;
            if (n > 0) {
                zt_buf_consume(&f->buf, (size_t)n);
                if (src->ops->delivered) {
                    src->ops->delivered(src, (size_t)n);
                    if (zt_relay_done(r))
                        return false;
                }
                moved = true;
            } else if (n != -EAGAIN) {
                fail(r, "write to", dst->side, n);
                return false;
            } else {
                may_write = false;
            }
        }
        bool room = src->is_unbounded || f->buf.len < r->cap;
        if (may_read && !f->is_src_eof && room) {
            size_t want = r->read_sz;
            if (!src->is_unbounded && r->cap - f->buf.len < want)
                want = r->cap - f->buf.len;
            /* A stream hands over what it has, often a few bytes: read into
             * the room there is rather than grow the buffer by a whole
             * read's worth (the loop comes back if the source has more). */
            size_t room_left = f->buf.cap - f->buf.off - f->buf.len;
            if (src->is_unbounded && f->buf.len > 0 && room_left > 0 && room_left < want)
                want = room_left;
            /* With nothing waiting, a socket is read into a scratch buffer
             * of the thread's pool and written on from there: no copy, and
             * the connection holds no buffer for a read that finds nothing
             * or the end. */
            bool direct = f->buf.len == 0 && !src->is_unbounded && !dst->is_pull;
            uint8_t *scratch = NULL, *p;
            if (direct) {
                if (want > ZT_BUF_POOL_CAP)
                    want = ZT_BUF_POOL_CAP;
                p = scratch = zt_buf_pool_take();
            } else {
                p = zt_buf_reserve(&f->buf, want);
            }
            ssize_t n = src->ops->read(src, p, want);
            bool alive = !zt_relay_done(r);
            if (alive && n > 0 && direct)
                alive = take_scratch(r, d, p, (size_t)n, &may_write);
            if (scratch)
                zt_buf_pool_give(scratch);
            if (!alive)
                return false;
            if (n > 0) {
                f->bytes += (uint64_t)n;
                moved = true;
                if (!direct)
                    zt_buf_commit(&f->buf, (size_t)n);
                /* A short read most likely emptied the source: the next
                 * would only say EAGAIN (one syscall saved per event). */
                if ((size_t)n < want)
                    may_read = false;
            } else if (n == 0) {
                f->is_src_eof = true;
                moved = true;
            } else if (n != -EAGAIN) {
                fail(r, "read from", src->side, n);
                return false;
            } else {
                may_read = false;
            }
        }
    }
    /* No buffer is held while nothing waits: an idle tunnel costs none. */
    if (f->buf.len == 0)
        zt_buf_release(&f->buf);
    maybe_shut(r, d);
    return !zt_relay_done(r);
}

/* Reading from a source: its bytes go to the sink at once, or, for an
 * unbounded source with an owner that batches, at the owner's flush. */
static void on_source(struct zt_relay *r, enum zt_relay_dir d)
{
    struct zt_relay_flow *f = &r->flow[d];
    bool defer = r->ep[d]->is_unbounded && r->ops->defer_flush;
    bool moving = zt_relay_moving(r);
    if (!moving && !r->ep[d]->is_unbounded)
        return;
    if (!pump(r, d, true, moving && !defer))
        return;
    if (moving && defer && f->buf.len > 0 && !f->is_flush_deferred) {
        f->is_flush_deferred = true;
        r->ops->defer_flush(r, d);
        if (zt_relay_done(r))
            return;
    }
    update_wants(r);
}

void zt_relay_readable(struct zt_relay *r, enum zt_relay_side side)
{
    if (zt_relay_done(r) || !r->ep[side])
        return;
    on_source(r, (enum zt_relay_dir)side);
}

void zt_relay_writable(struct zt_relay *r, enum zt_relay_side side)
{
    if (!zt_relay_moving(r))
        return;
    enum zt_relay_dir d = (enum zt_relay_dir)(1 - side);
    if (!pump(r, d, !r->ep[d]->is_unbounded, true))
        return;
    update_wants(r);
}

void zt_relay_pull(struct zt_relay *r, enum zt_relay_side side)
{
    if (!zt_relay_moving(r))
        return;
    if (!pump(r, (enum zt_relay_dir)(1 - side), false, true))
        return;
    update_wants(r);
}

void zt_relay_flush(struct zt_relay *r, enum zt_relay_dir d)
{
    r->flow[d].is_flush_deferred = false;
    zt_relay_writable(r, (enum zt_relay_side)(1 - d));
}

void zt_relay_shutdown_done(struct zt_relay *r, enum zt_relay_side side)
{
    enum zt_relay_dir d = (enum zt_relay_dir)(1 - side);
    if (zt_relay_done(r) || !r->flow[d].is_shut || r->flow[d].is_done)
        return;
    finish_flow(r, d);
}

void zt_relay_set_state(struct zt_relay *r, enum zt_tunnel_state st)
{
    if (zt_relay_done(r) || st <= r->state || st > ZT_TUN_ESTABLISHED)
        return;
    if (st == ZT_TUN_ESTABLISHED && (!r->ep[ZT_RELAY_A] || !r->ep[ZT_RELAY_B]))
        return; /* a caller's bug: nothing to move bytes between */
    set_state(r, st, NULL);
    if (st != ZT_TUN_ESTABLISHED || zt_relay_done(r))
        return;
    /* What unbounded sources delivered while connecting goes now. */
    for (int d = 0; d < 2; d++) {
        r->flow[d].is_flush_deferred = false;
        if (!pump(r, (enum zt_relay_dir)d, false, true))
            return;
    }
    update_wants(r);
}

void zt_relay_abort(struct zt_relay *r, enum zt_relay_side side, const char *error)
{
    if (zt_relay_done(r))
        return;
    enum zt_relay_dir d = (enum zt_relay_dir)side;
    if (zt_relay_moving(r) && r->flow[d].buf.len > 0 && !pump(r, d, false, true))
        return;
    zt_relay_close(r, error);
}

void zt_relay_close(struct zt_relay *r, const char *error)
{
    set_state(r, error ? ZT_TUN_FAILED : ZT_TUN_CLOSED, error);
}

void zt_relay_cleanup(struct zt_relay *r)
{
    zt_buf_release(&r->flow[0].buf);
    zt_buf_release(&r->flow[1].buf);
}
