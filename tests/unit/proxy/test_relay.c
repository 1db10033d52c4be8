/* The relay with fake endpoints: both directions, half-close, backpressure,
 * unbounded (stream) sources, batched flushes, errors on each side, a
 * tunnel ended from inside an endpoint call, pending shutdowns, aborts. */
#include "base/err.h"
#include "proxy/relay.h"
#include "test.h"

#include <errno.h>

#define FAKE_MAX (1 << 20)

struct fake {
    struct zt_endpoint ep;
    /* As a source: in[in_off..in_len) is readable, then EOF if in_eof. */
    uint8_t *in;
    size_t in_len, in_off;
    bool in_eof;
    int read_err; /* returned by the next read when set */
    unsigned reads;
    /* As a sink: takes up to write_room bytes, then says EAGAIN. */
    uint8_t *out;
    size_t out_len, write_room;
    int write_err;
    int shut_rc;
    unsigned shut_calls;
    bool want_rd, want_wr;
    size_t delivered;
    /* Called inside write (after taking the bytes), e.g. to end the tunnel. */
    void (*on_write)(struct fake *f);
};

static struct fake *as_fake(struct zt_endpoint *ep)
{
    return (struct fake *)ep;
}

static ssize_t f_read(struct zt_endpoint *ep, uint8_t *buf, size_t len)
{
    struct fake *f = as_fake(ep);
    f->reads++;
    if (f->read_err)
        return f->read_err;
    size_t avail = f->in_len - f->in_off;
    if (avail == 0)
        return f->in_eof ? 0 : -EAGAIN;
    size_t n = avail < len ? avail : len;
    memcpy(buf, f->in + f->in_off, n);
    f->in_off += n;
    return (ssize_t)n;
}

static ssize_t f_write(struct zt_endpoint *ep, const uint8_t *buf, size_t len)
{
    struct fake *f = as_fake(ep);
    if (f->write_err)
        return f->write_err;
    size_t n = len < f->write_room ? len : f->write_room;
    if (n == 0)
        return -EAGAIN;
    memcpy(f->out + f->out_len, buf, n);
    f->out_len += n;
    f->write_room -= n;
    if (f->on_write)
        f->on_write(f);
    return (ssize_t)n;
}

static int f_shutdown(struct zt_endpoint *ep)
{
    struct fake *f = as_fake(ep);
    f->shut_calls++;
    return f->shut_rc;
}

static void f_want(struct zt_endpoint *ep, bool rd, bool wr)
{
    as_fake(ep)->want_rd = rd;
    as_fake(ep)->want_wr = wr;
}

static void f_delivered(struct zt_endpoint *ep, size_t n)
{
    as_fake(ep)->delivered += n;
}

static const struct zt_endpoint_ops fake_ops = {
    .read = f_read,
    .write = f_write,
    .shutdown_write = f_shutdown,
    .want = f_want,
    .delivered = f_delivered,
};

static void fake_init(struct fake *f, bool unbounded)
{
    memset(f, 0, sizeof(*f));
    f->ep.ops = &fake_ops;
    f->ep.is_unbounded = unbounded;
    f->in = calloc(1, FAKE_MAX);
    f->out = calloc(1, FAKE_MAX);
    f->write_room = FAKE_MAX;
}

static void fake_free(struct fake *f)
{
    free(f->in);
    free(f->out);
}

static void fake_feed(struct fake *f, const void *p, size_t n)
{
    memcpy(f->in + f->in_len, p, n);
    f->in_len += n;
}

static void fake_feed_pattern(struct fake *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        f->in[f->in_len + i] = (uint8_t)(i * 7 + 3);
    f->in_len += n;
}

/* The owner: records every state change. */
struct owner {
    enum zt_tunnel_state seen[16];
    unsigned n_seen;
    char error[160];
    unsigned defers[2];
    struct zt_relay r;
};

static struct owner *owner_of(struct zt_relay *r)
{
    return (struct owner *)((char *)r - offsetof(struct owner, r));
}

static void on_state(struct zt_relay *r, enum zt_tunnel_state from, const char *error)
{
    struct owner *o = owner_of(r);
    if (o->n_seen < 16)
        o->seen[o->n_seen++] = r->state;
    snprintf(o->error, sizeof(o->error), "%s", error ? error : "");
}

static void on_defer(struct zt_relay *r, enum zt_relay_dir d)
{
    owner_of(r)->defers[d]++;
}

static const struct zt_relay_ops owner_ops = {.on_state = on_state};
static const struct zt_relay_ops batching_ops = {.on_state = on_state, .defer_flush = on_defer};

static void setup(struct owner *o, const struct zt_relay_ops *ops, struct fake *a, struct fake *b,
                  size_t cap, size_t read_sz)
{
    memset(o, 0, sizeof(*o));
    zt_relay_init(&o->r, ops, &a->ep, &b->ep, cap, read_sz);
}

/* Two fakes and an owner: the usual test set-up. */
struct rig {
    struct fake a, b;
    struct owner o;
};

static void rig_init(struct rig *t, const struct zt_relay_ops *ops, bool b_unbounded, size_t cap,
                     size_t read_sz)
{
    fake_init(&t->a, false);
    fake_init(&t->b, b_unbounded);
    setup(&t->o, ops, &t->a, &t->b, cap, read_sz);
}

static void rig_free(struct rig *t)
{
    zt_relay_cleanup(&t->o.r);
    fake_free(&t->a);
    fake_free(&t->b);
}

static void test_both_ways_and_half_close(void)
{
    struct rig t;
    rig_init(&t, &owner_ops, false, 0, 0);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_CONNECTING);
    zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
    CHECK(t.a.want_rd && t.b.want_rd && !t.a.want_wr && !t.b.want_wr);

    fake_feed(&t.a, "hello", 5);
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.b.out_len, 5);
    CHECK(memcmp(t.b.out, "hello", 5) == 0);
    fake_feed(&t.b, "world!", 6);
    zt_relay_readable(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.a.out_len, 6);
    CHECK(memcmp(t.a.out, "world!", 6) == 0);
    CHECK_EQ_INT(t.o.r.flow[ZT_RELAY_UP].bytes, 5);
    CHECK_EQ_INT(t.o.r.flow[ZT_RELAY_DOWN].bytes, 6);
    /* Nothing waits: no buffer is held. */
    CHECK(t.o.r.flow[0].buf.data == NULL && t.o.r.flow[1].buf.data == NULL);

    t.a.in_eof = true;
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.b.shut_calls, 1);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_HALF_CLOSED_UP);
    CHECK(!t.a.want_rd); /* nothing more to read from A */
    /* B -> A still moves. */
    fake_feed(&t.b, "late", 4);
    zt_relay_readable(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.a.out_len, 10);
    t.b.in_eof = true;
    zt_relay_readable(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.a.shut_calls, 1);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_CLOSED);
    CHECK_EQ_INT(t.o.n_seen, 3);
    CHECK_EQ_INT(t.o.seen[0], ZT_TUN_ESTABLISHED);
    CHECK_EQ_INT(t.o.seen[1], ZT_TUN_HALF_CLOSED_UP);
    CHECK_EQ_INT(t.o.seen[2], ZT_TUN_CLOSED);
    CHECK_EQ_STR(t.o.error, "");
    rig_free(&t);
}

static void test_half_close_down_first(void)
{
    struct rig t;
    rig_init(&t, &owner_ops, false, 0, 0);
    zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
    t.b.in_eof = true;
    zt_relay_readable(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_HALF_CLOSED_DOWN);
    CHECK_EQ_INT(t.a.shut_calls, 1);
    fake_feed(&t.a, "after", 5);
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.b.out_len, 5);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_HALF_CLOSED_DOWN);
    rig_free(&t);
}

/* A sink that takes nothing stops its source at the cap; bytes keep their
 * order through every pause. */
static void test_backpressure(void)
{
    struct rig t;
    rig_init(&t, &owner_ops, false, 1000, 300);
    zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
    fake_feed_pattern(&t.a, 5000);
    t.b.write_room = 0;
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.o.r.flow[ZT_RELAY_UP].buf.len, 1000);
    CHECK_EQ_INT(t.a.in_off, 1000);
    CHECK(!t.a.want_rd);
    CHECK(t.b.want_wr);
    /* Reading again while full reads nothing. */
    unsigned reads = t.a.reads;
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.a.reads, reads);
    for (int round = 0; round < 100 && t.b.out_len < 5000; round++) {
        t.b.write_room = 450;
        zt_relay_writable(&t.o.r, ZT_RELAY_B);
        CHECK(t.o.r.flow[ZT_RELAY_UP].buf.len <= 1000);
    }
    CHECK_EQ_INT(t.b.out_len, 5000);
    CHECK(memcmp(t.a.in, t.b.out, 5000) == 0);
    CHECK(t.a.want_rd);
    CHECK(!t.b.want_wr);
    rig_free(&t);
}

/* A stream's DATA cannot be refused: it is buffered beyond the cap, and the
 * source hears of each byte only once the sink took it. */
static void test_unbounded_source(void)
{
    struct rig t;
    rig_init(&t, &owner_ops, true, 1000, 0);
    zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
    fake_feed_pattern(&t.b, 5000);
    t.a.write_room = 1200;
    zt_relay_readable(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.b.in_off, 5000);
    CHECK_EQ_INT(t.a.out_len, 1200);
    CHECK_EQ_INT(t.b.delivered, 1200);
    CHECK_EQ_INT(t.o.r.flow[ZT_RELAY_DOWN].buf.len, 3800);
    CHECK(t.b.want_rd); /* always: its window bounds it */
    CHECK(t.a.want_wr);
    t.a.write_room = FAKE_MAX;
    zt_relay_writable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.a.out_len, 5000);
    CHECK_EQ_INT(t.b.delivered, 5000);
    CHECK(memcmp(t.a.out, t.b.in, 5000) == 0);
    rig_free(&t);
}

/* With a batching owner, a stream's bytes wait for the owner's flush and
 * the sink is not polled for them meanwhile; one flush per batch. */
static void test_deferred_flush(void)
{
    struct rig t;
    rig_init(&t, &batching_ops, true, 0, 0);
    zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
    fake_feed(&t.b, "one", 3);
    zt_relay_readable(&t.o.r, ZT_RELAY_B);
    fake_feed(&t.b, "two", 3);
    zt_relay_readable(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.a.out_len, 0);
    CHECK_EQ_INT(t.o.defers[ZT_RELAY_DOWN], 1);
    CHECK(!t.a.want_wr);
    zt_relay_flush(&t.o.r, ZT_RELAY_DOWN);
    CHECK_EQ_INT(t.a.out_len, 6);
    CHECK(memcmp(t.a.out, "onetwo", 6) == 0);
    CHECK_EQ_INT(t.b.delivered, 6);
    /* The end of the stream after the flush shuts A at once. */
    t.b.in_eof = true;
    zt_relay_readable(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.a.shut_calls, 1);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_HALF_CLOSED_DOWN);
    /* A TCP source is never batched. */
    fake_feed(&t.a, "up", 2);
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.b.out_len, 2);
    CHECK_EQ_INT(t.o.defers[ZT_RELAY_UP], 0);
    rig_free(&t);
}

/* A stream's small deliveries while earlier bytes wait for the flush go
 * into the room the buffer has: it does not grow (growing a 256 KiB buffer
 * for every few bytes copied all of it; new connections/s fell 3x). */
static void test_unbounded_small_reads_do_not_grow(void)
{
    struct rig t;
    rig_init(&t, &batching_ops, true, 0, 0);
    zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
    for (int i = 0; i < 100; i++) {
        fake_feed(&t.b, "0123456789", 10);
        zt_relay_readable(&t.o.r, ZT_RELAY_B);
    }
    t.b.in_eof = true;
    zt_relay_readable(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.o.r.flow[ZT_RELAY_DOWN].buf.len, 1000);
    CHECK_EQ_INT(t.o.r.flow[ZT_RELAY_DOWN].buf.cap, ZT_BUF_POOL_CAP);
    zt_relay_flush(&t.o.r, ZT_RELAY_DOWN);
    CHECK_EQ_INT(t.a.out_len, 1000);
    CHECK_EQ_INT(t.a.shut_calls, 1);
    rig_free(&t);
}

/* End of stream while bytes wait for the sink: the shutdown follows them. */
static void test_eof_after_pending_bytes(void)
{
    struct rig t;
    rig_init(&t, &owner_ops, false, 0, 0);
    zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
    t.b.write_room = 2;
    fake_feed(&t.a, "abcdef", 6);
    t.a.in_eof = true;
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.b.out_len, 2);
    CHECK_EQ_INT(t.b.shut_calls, 0);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_ESTABLISHED);
    t.b.write_room = 100;
    zt_relay_writable(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.b.out_len, 6);
    CHECK_EQ_INT(t.b.shut_calls, 1);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_HALF_CLOSED_UP);
    rig_free(&t);
}

static void test_errors_each_side(void)
{
    static const struct {
        int side;     /* whose call fails */
        bool reading; /* read (else write) */
        const char *want;
    } cases[] = {
        {ZT_RELAY_A, true, "read from downstream"},
        {ZT_RELAY_B, true, "read from upstream"},
        {ZT_RELAY_A, false, "write to downstream"},
        {ZT_RELAY_B, false, "write to upstream"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rig t;
        rig_init(&t, &owner_ops, false, 0, 0);
        zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
        struct fake *bad = cases[i].side == ZT_RELAY_A ? &t.a : &t.b;
        struct fake *other = bad == &t.a ? &t.b : &t.a;
        if (cases[i].reading) {
            bad->read_err = -ECONNRESET;
            zt_relay_readable(&t.o.r, cases[i].side);
        } else {
            bad->write_err = -EPIPE;
            fake_feed(other, "x", 1);
            zt_relay_readable(&t.o.r, other->ep.side);
        }
        CHECK_EQ_INT(t.o.r.state, ZT_TUN_FAILED);
        CHECK(strstr(t.o.error, cases[i].want) != NULL);
        CHECK_EQ_INT(t.o.n_seen, 2);
        /* Ended: no more endpoint calls. */
        unsigned reads = t.a.reads + t.b.reads;
        fake_feed(&t.a, "y", 1);
        zt_relay_readable(&t.o.r, ZT_RELAY_A);
        zt_relay_writable(&t.o.r, ZT_RELAY_B);
        CHECK_EQ_INT(t.a.reads + t.b.reads, reads);
        CHECK_EQ_INT(t.o.n_seen, 2);
        rig_free(&t);
    }
}

static struct zt_relay *closing_relay;
static void close_inside_write(struct fake *f)
{
    (void)f;
    zt_relay_close(closing_relay, "closed by the owner");
}

/* The tunnel ends inside an endpoint call: the relay stops there. */
static void test_close_during_callback(void)
{
    struct rig t;
    rig_init(&t, &owner_ops, false, 1000, 100);
    zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
    closing_relay = &t.o.r;
    t.b.on_write = close_inside_write;
    fake_feed_pattern(&t.a, 500);
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_FAILED);
    CHECK_EQ_STR(t.o.error, "closed by the owner");
    CHECK_EQ_INT(t.a.reads, 1); /* nothing read after the close */
    CHECK_EQ_INT(t.b.out_len, 100);
    CHECK_EQ_INT(t.o.n_seen, 2);
    zt_relay_close(&t.o.r, NULL); /* once ended, stays ended */
    CHECK_EQ_INT(t.o.n_seen, 2);
    rig_free(&t);
}

/* A sink whose shutdown completes later (a stream's END_STREAM). */
static void test_shutdown_pending(void)
{
    struct rig t;
    rig_init(&t, &owner_ops, true, 0, 0);
    t.b.shut_rc = 1;
    zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
    t.a.in_eof = true;
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.b.shut_calls, 1);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_ESTABLISHED);
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.b.shut_calls, 1); /* asked once */
    zt_relay_shutdown_done(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_HALF_CLOSED_UP);
    rig_free(&t);
}

/* Before the tunnel is up nothing is written; a bounded source is not read,
 * an unbounded one is kept; all of it goes once established. */
static void test_connecting(void)
{
    struct rig t;
    rig_init(&t, &owner_ops, true, 0, 0);
    fake_feed(&t.a, "early-a", 7);
    fake_feed(&t.b, "early-b", 7);
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    zt_relay_readable(&t.o.r, ZT_RELAY_B);
    CHECK_EQ_INT(t.a.reads, 0);
    CHECK_EQ_INT(t.a.out_len, 0);
    CHECK(!t.a.want_rd);
    zt_relay_set_state(&t.o.r, ZT_TUN_CONNECT_SENT);
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_CONNECT_SENT);
    zt_relay_set_state(&t.o.r, ZT_TUN_CONNECTING); /* never back */
    CHECK_EQ_INT(t.o.r.state, ZT_TUN_CONNECT_SENT);
    zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
    CHECK_EQ_INT(t.a.out_len, 7);
    CHECK(memcmp(t.a.out, "early-b", 7) == 0);
    CHECK(t.a.want_rd);
    zt_relay_readable(&t.o.r, ZT_RELAY_A);
    CHECK_EQ_INT(t.b.out_len, 7);
    rig_free(&t);
}

/* A peer that breaks off: what already waits toward the other side is
 * written, then the tunnel ends with the error (or cleanly without one). */
static void test_abort(void)
{
    for (int with_error = 0; with_error < 2; with_error++) {
        struct rig t;
        rig_init(&t, &batching_ops, true, 0, 0);
        zt_relay_set_state(&t.o.r, ZT_TUN_ESTABLISHED);
        fake_feed_pattern(&t.b, 100);
        zt_relay_readable(&t.o.r, ZT_RELAY_B);
        CHECK_EQ_INT(t.a.out_len, 0); /* batched */
        zt_relay_abort(&t.o.r, ZT_RELAY_B, with_error ? "tunnel reset by peer" : NULL);
        CHECK_EQ_INT(t.a.out_len, 100);
        CHECK_EQ_INT(t.o.r.state, with_error ? ZT_TUN_FAILED : ZT_TUN_CLOSED);
        CHECK_EQ_STR(t.o.error, with_error ? "tunnel reset by peer" : "");
        rig_free(&t);
    }
}

static void test_state_names(void)
{
    CHECK_EQ_STR(zt_tunnel_state_str(ZT_TUN_CONNECTING), "connecting");
    CHECK_EQ_STR(zt_tunnel_state_str(ZT_TUN_CONNECT_SENT), "connect-sent");
    CHECK_EQ_STR(zt_tunnel_state_str(ZT_TUN_HALF_CLOSED_DOWN), "half-closed-down");
    CHECK_EQ_STR(zt_tunnel_state_str(ZT_TUN_FAILED), "failed");
    CHECK_EQ_STR(zt_tunnel_state_str(ZT_TUN_STATE_COUNT), "?");
}

int main(void)
{
    RUN(test_both_ways_and_half_close);
    RUN(test_half_close_down_first);
    RUN(test_backpressure);
    RUN(test_unbounded_source);
    RUN(test_deferred_flush);
    RUN(test_unbounded_small_reads_do_not_grow);
    RUN(test_eof_after_pending_bytes);
    RUN(test_errors_each_side);
    RUN(test_close_during_callback);
    RUN(test_shutdown_pending);
    RUN(test_connecting);
    RUN(test_abort);
    RUN(test_state_names);
    return TEST_REPORT();
}
