/* Fuzzes the HBONE server side of the HTTP/2 session with raw frames. The
 * session runs in its plaintext mode (no TLS: the bytes reach nghttp2 and
 * our callbacks directly), with an owner that behaves like the inbound
 * proxy: each CONNECT is checked (zt_hbone_check_request), refused with its
 * status or attached and answered 200 (at once or a step later, as after an
 * upstream connect), its data echoed back and consumed only once echoed
 * (or held, or the stream reset or detached), and the session shut down
 * half-way through some inputs.
 *
 * Input: one mode byte, then the bytes a client sends after the connection
 * preface (which is added unless the mode says raw), fed in chunks whose
 * size the mode picks (1 to 556 bytes); between chunks the output is drained
 * and the fake clock moves 100 ms (so after 100 chunks the keepalive PING
 * goes out, and 200 chunks later, unless the input ACKed it, the timeout
 * closes the session).
 * Invariants: every attached stream gets on_close exactly once (owner
 * objects are heap-allocated and freed there: a miss leaks, a repeat is a
 * double free), no stream callback after it, no callback at all after the
 * session's on_closed, and freeing the session leaves nothing behind. */
#include "base/err.h"
#include "base/log.h"
#include "h2/session.h"
#include "hbone/hbone.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    MODE_RAW = 1,          /* no preface added */
    MODE_SMALL_WINDOW = 2, /* 16 KiB stream window, 64 KiB connection window */
    MODE_DEFER = 4,        /* answer 200 only after the next chunk */
    MODE_SHUTDOWN = 8,     /* GOAWAY half-way through */
};
#define MAX_DEFERRED 16
#define ECHO_CAP (64 * 1024)

static struct sockaddr_in accepted;
static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct owner;

/* A stream's owner, as the relay would be: what it received and has not yet
 * written back is echoed through read() and consumed once echoed. */
struct stream_owner {
    struct owner *o;
    int32_t id;
    int behaviour; /* 0 echo, 1 hold until the peer ends, 2 reset, 3 detach */
    size_t echo;   /* received, not yet echoed (and so not consumed) */
    size_t held;   /* behaviour 1: received, not consumed */
    bool peer_ended, eof_sent;
};

struct owner {
    struct zt_h2_session *s;
    int mode;
    bool closed;
    unsigned live; /* attached streams without on_close yet */
    int32_t deferred[MAX_DEFERRED];
    unsigned ndeferred;
};

static void must(bool cond)
{
    if (!cond)
        __builtin_trap();
}

static void st_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct stream_owner *so = sud;
    must(!so->o->closed && len > 0);
    switch (so->behaviour) {
    case 0:
        if (so->echo + len > ECHO_CAP) {
            /* As the relay with a full buffer: never more than the window,
             * so this cannot happen with windows below the cap. */
            zt_h2_session_consume(so->o->s, so->id, len);
            return;
        }
        so->echo += len;
        zt_h2_session_resume(so->o->s, so->id);
        return;
    case 1:
        so->held += len;
        return;
    case 2:
        zt_h2_session_consume(so->o->s, so->id, len);
        zt_h2_session_reset(so->o->s, so->id);
        return;
    default:
        /* The owner goes away: no callback for this stream after this. */
        so->o->live--;
        zt_h2_session_detach(so->o->s, so->id);
        free(so);
        return;
    }
}

static void st_on_end(void *sud)
{
    struct stream_owner *so = sud;
    must(!so->o->closed);
    so->peer_ended = true;
    if (so->behaviour == 1 && so->held) {
        zt_h2_session_consume(so->o->s, so->id, so->held);
        so->held = 0;
    }
    zt_h2_session_resume(so->o->s, so->id);
}

static void st_on_close(void *sud, int error)
{
    struct stream_owner *so = sud;
    must(so->o->live > 0);
    so->o->live--;
    free(so);
}

static ssize_t st_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct stream_owner *so = sud;
    must(!so->o->closed && !so->eof_sent);
    if (so->echo) {
        size_t n = so->echo < len ? so->echo : len;
        memset(buf, 'e', n);
        so->echo -= n;
        /* Written to the "app": now the window may move. */
        zt_h2_session_consume(so->o->s, so->id, n);
        return (ssize_t)n;
    }
    if (so->peer_ended) {
        so->eof_sent = true;
        *eof = true;
        return 0;
    }
    return -EAGAIN;
}

static const struct zt_h2_stream_ops stream_ops = {
    .on_data = st_on_data,
    .on_end = st_on_end,
    .on_close = st_on_close,
    .read = st_read,
};

static int on_ready(struct zt_h2_session *s, void *ud)
{
    struct owner *o = ud;
    must(!o->closed);
    return 0;
}

static void on_request(struct zt_h2_session *s, void *ud, int32_t sid,
                       const struct zt_h2_request *req)
{
    struct owner *o = ud;
    must(!o->closed && req->method && req->authority);
    struct zt_hbone_target target;
    const char *why = NULL;
    int status = zt_hbone_check_request(req->method, req->authority, &target, &why);
    if (status == 200)
        status = zt_hbone_check_target(&target, (const struct sockaddr *)&accepted, false, &why);
    if (status != 200) {
        zt_h2_session_respond(s, sid, status, NULL, 0);
        return;
    }
    struct stream_owner *so = calloc(1, sizeof(*so));
    if (!so)
        abort();
    so->o = o;
    so->id = sid;
    so->behaviour = (int)((uint32_t)sid >> 1) & 3;
    o->live++;
    zt_h2_session_attach(s, sid, &stream_ops, so);
    if ((sid & 0x1f) == 0x1f) {
        /* The upstream refused: 503, then the owner lets go. */
        zt_h2_session_respond(s, sid, 503, NULL, 0);
        o->live--;
        zt_h2_session_detach(s, sid);
        free(so);
        return;
    }
    if ((o->mode & MODE_DEFER) && o->ndeferred < MAX_DEFERRED) {
        o->deferred[o->ndeferred++] = sid;
        return;
    }
    static const char *const hdrs[] = {"baggage", "k8s.namespace.name=server-ns"};
    zt_h2_session_respond(s, sid, 200, hdrs, 1);
}

static void on_draining(struct zt_h2_session *s, void *ud)
{
    struct owner *o = ud;
    must(!o->closed);
}

static void on_closed(struct zt_h2_session *s, void *ud, int error)
{
    struct owner *o = ud;
    must(!o->closed && o->live == 0);
    o->closed = true;
}

static const struct zt_h2_session_ops session_ops = {
    .on_ready = on_ready,
    .on_request = on_request,
    .on_draining = on_draining,
    .on_closed = on_closed,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    accepted.sin_family = AF_INET;
    accepted.sin_port = htons(15008);
    inet_pton(AF_INET, "10.0.0.1", &accepted.sin_addr);
    return 0;
}

/* Takes everything the session has to say (and, through body sources,
 * the echoes); the peer here never answers. */
static void drain(struct owner *o)
{
    for (int i = 0; i < 1000; i++) {
        const uint8_t *p;
        size_t n;
        zt_h2_session_out(o->s, &p, &n);
        if (n == 0)
            return;
        zt_h2_session_out_done(o->s, n);
    }
    __builtin_trap(); /* output without end: a bug */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct owner o = {.mode = data[0]};
    size_t chunk = 1 + (size_t)(data[0] >> 4) * 37;
    data++;
    size--;
    struct zt_h2_settings settings = {4u << 20, 16u << 20, 16384, 64 * 1024, 100, 0, 0};
    if (o.mode & MODE_SMALL_WINDOW) {
        settings.stream_window = 16384;
        settings.connection_window = 65535;
    }
    uint64_t now = 1000;
    o.s = zt_h2_session_new(NULL, ZT_H2_SERVER, &settings, &session_ops, &o, now);
    if (!(o.mode & MODE_RAW))
        zt_h2_session_feed(o.s, (const uint8_t *)preface, sizeof(preface) - 1);
    size_t total = size;
    bool shut = false;
    while (size > 0 && !o.closed) {
        size_t n = size < chunk ? size : chunk;
        zt_h2_session_feed(o.s, data, n);
        data += n;
        size -= n;
        if (o.closed)
            break;
        drain(&o);
        for (unsigned i = 0; i < o.ndeferred && !o.closed; i++)
            zt_h2_session_respond(o.s, o.deferred[i], 200, NULL, 0);
        o.ndeferred = 0;
        if ((o.mode & MODE_SHUTDOWN) && !shut && size <= total / 2) {
            shut = true;
            zt_h2_session_shutdown(o.s);
        }
        now += 100;
        zt_h2_session_tick(o.s, now);
        if (!o.closed)
            drain(&o);
    }
    if (!o.closed)
        drain(&o);
    zt_h2_session_free(o.s);
    must(o.closed && o.live == 0);
    return 0;
}
