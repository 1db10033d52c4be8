/* ZDS client: one SOCK_SEQPACKET session at a time to the node agent.
 *
 * The agent sends one request and waits for its Ack before the next, so the
 * client handles each datagram to completion (proxy callback, then Ack)
 * before reading another. The pod table lives in the client rather than the
 * proxy because reconciliation (snapshot, keep, same-netns re-add) is part
 * of the protocol, not of serving a pod. */
#include "inpod/zds_client.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SCOPE "inpod"
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 15000
#define RETRY_MS 5000
/* Bounded work per poll callback (STYLE: bounded work per iteration). */
#define MAX_MSGS_PER_WAKEUP 32
/* A node runs at most a few hundred pods; refuse to grow without bound. */
#define MAX_PODS 8192

struct pod {
    char uid[ZT_ZDS_UID_MAX + 1];
    uint64_t dev, ino;
    struct zt_zds_workload_info info;
    bool is_pending;       /* add() failed; pending_fd held for retries */
    int pending_fd;        /* owned while is_pending, else -1 */
    unsigned seen_session; /* session in which add/keep last named it */
};

struct conn_poll {
    uv_poll_t h;
    struct zt_inpod_client *c;
};

struct zt_inpod_client {
    uv_loop_t *loop;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const struct zt_inpod_client_ops *ops;
    void *ud;
    enum zt_inpod_client_state st;
    int fd;
    struct conn_poll *poll; /* NULL when not connected */
    uv_timer_t backoff_timer;
    uv_timer_t retry_timer;
    unsigned backoff_ms, backoff_max_ms, retry_ms;
    uint32_t trusted_uid; /* besides root; 0 = root only */
    unsigned session;
    bool snapshot_received; /* sticky across sessions (readiness) */
    bool got_message;       /* this session received something */
    struct pod *pods;
    size_t npods, cap;
    int handles_open;
    bool reported, rep_connected, rep_snapshot;
    unsigned rep_pending;
};

const char *zt_inpod_client_state_str(enum zt_inpod_client_state st)
{
    switch (st) {
    case ZT_INPOD_CLIENT_ST_BACKOFF:
        return "backoff";
    case ZT_INPOD_CLIENT_ST_SNAPSHOT:
        return "snapshot";
    case ZT_INPOD_CLIENT_ST_READY:
        return "ready";
    case ZT_INPOD_CLIENT_ST_STOPPED:
        return "stopped";
    }
    return "unknown";
}

static bool is_stopped(const struct zt_inpod_client *c)
{
    return c->st == ZT_INPOD_CLIENT_ST_STOPPED;
}

static void set_state(struct zt_inpod_client *c, enum zt_inpod_client_state st)
{
    if (c->st == st)
        return;
    ZT_DEBUG(SCOPE, "zds client %s -> %s", zt_inpod_client_state_str(c->st),
             zt_inpod_client_state_str(st));
    c->st = st;
}

static unsigned count_pending(const struct zt_inpod_client *c)
{
    unsigned n = 0;
    for (size_t i = 0; i < c->npods; i++)
        n += c->pods[i].is_pending;
    return n;
}

/* Tells the proxy about readiness inputs if any changed. */
static void report(struct zt_inpod_client *c)
{
    bool connected = c->st == ZT_INPOD_CLIENT_ST_SNAPSHOT || c->st == ZT_INPOD_CLIENT_ST_READY;
    unsigned pending = count_pending(c);
    if (is_stopped(c) || !c->ops->state)
        return;
    if (c->reported && c->rep_connected == connected && c->rep_snapshot == c->snapshot_received &&
        c->rep_pending == pending)
        return;
    c->reported = true;
    c->rep_connected = connected;
    c->rep_snapshot = c->snapshot_received;
    c->rep_pending = pending;
    c->ops->state(c->ud, connected, c->snapshot_received, pending);
}

static struct pod *find_pod(struct zt_inpod_client *c, const char *uid)
{
    for (size_t i = 0; i < c->npods; i++)
        if (strcmp(c->pods[i].uid, uid) == 0)
            return &c->pods[i];
    return NULL;
}

/* Removes the entry (swap with last); closes a pending fd. No callbacks. */
static void remove_pod(struct zt_inpod_client *c, struct pod *p)
{
    size_t i = (size_t)(p - c->pods);
    if (p->is_pending && p->pending_fd >= 0)
        close(p->pending_fd);
    c->pods[i] = c->pods[c->npods - 1];
    c->npods--;
}

/* Deletes a pod: the proxy hears of it only if it was serving it. */
static void drop_pod(struct zt_inpod_client *c, struct pod *p)
{
    char uid[ZT_ZDS_UID_MAX + 1];
    bool was_served = !p->is_pending;
    memcpy(uid, p->uid, sizeof(uid));
    remove_pod(c, p);
    if (was_served)
        c->ops->del(c->ud, uid);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct zt_inpod_client *c = h->data;
    if (h->type == UV_POLL)
        free(h);
    c->handles_open--;
    if (is_stopped(c) && c->handles_open == 0) {
        free(c->pods);
        free(c);
    }
}

static void close_conn(struct zt_inpod_client *c)
{
    if (c->poll) {
        uv_close((uv_handle_t *)&c->poll->h, on_handle_closed);
        c->poll = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static void on_backoff_timer(uv_timer_t *t);

static void schedule_reconnect(struct zt_inpod_client *c)
{
    if (c->backoff_ms == 0)
        c->backoff_ms = BACKOFF_MIN_MS;
    else if (c->backoff_ms < c->backoff_max_ms)
        c->backoff_ms =
            c->backoff_ms * 2 > c->backoff_max_ms ? c->backoff_max_ms : c->backoff_ms * 2;
    set_state(c, ZT_INPOD_CLIENT_ST_BACKOFF);
    uv_timer_start(&c->backoff_timer, on_backoff_timer, c->backoff_ms, 0);
}

static void disconnect(struct zt_inpod_client *c, int err)
{
    ZT_WARN(SCOPE, "zds connection to %s lost: %s; reconnecting", c->path, zt_strerror(err));
    close_conn(c);
    schedule_reconnect(c);
    report(c);
}

/* Tries to add a pod that is pending; returns the proxy's result. */
static int try_add(struct zt_inpod_client *c, struct pod *p)
{
    char uid[ZT_ZDS_UID_MAX + 1];
    struct zt_zds_workload_info info = p->info;
    int fd = p->pending_fd;
    int rc;

    memcpy(uid, p->uid, sizeof(uid));
    /* The fd is in flight: a stop() from inside add() must not close it. */
    p->pending_fd = -1;
    rc = c->ops->add(c->ud, uid, fd, &info);
    if (rc == 0) {
        p->is_pending = false;
        return 0;
    }
    if (is_stopped(c)) {
        close(fd);
        return rc;
    }
    /* Callbacks may only stop the client, so `p` is still our entry. */
    p->pending_fd = fd;
    return rc;
}

static void on_retry_timer(uv_timer_t *t)
{
    struct zt_inpod_client *c = t->data;
    for (size_t i = 0; i < c->npods && !is_stopped(c); i++) {
        struct pod *p = &c->pods[i];
        if (!p->is_pending)
            continue;
        int rc = try_add(c, p);
        if (rc < 0)
            ZT_WARN(SCOPE, "retry of pod %s failed: %s", p->uid, zt_strerror(rc));
        else
            ZT_INFO(SCOPE, "pod %s started after retry", p->uid);
    }
    if (is_stopped(c))
        return;
    if (count_pending(c) == 0)
        uv_timer_stop(&c->retry_timer);
    report(c);
}

static void arm_retry(struct zt_inpod_client *c)
{
    if (!uv_is_active((uv_handle_t *)&c->retry_timer))
        uv_timer_start(&c->retry_timer, on_retry_timer, c->retry_ms, c->retry_ms);
}

/* Handles an add; returns 0 or writes a NACK text into `err`. Owns `fd`. */
static void handle_add(struct zt_inpod_client *c, const struct zt_zds_request *req, int fd,
                       char *err, size_t errcap)
{
    uint64_t dev, ino;
    struct pod *p;
    int rc;

    if (!req->has_info) {
        snprintf(err, errcap, "protocol error: add for %s without workload_info", req->uid);
        goto fail;
    }
    if (fd < 0) {
        snprintf(err, errcap, "protocol error: add for %s without netns fd", req->uid);
        goto fail;
    }
    if ((rc = zt_zds_netns_check(fd)) < 0 || (rc = zt_zds_netns_id(fd, &dev, &ino)) < 0) {
        snprintf(err, errcap, "add for %s: fd is not a network namespace", req->uid);
        goto fail;
    }
    p = find_pod(c, req->uid);
    if (p && p->dev == dev && p->ino == ino) {
        p->seen_session = c->session;
        p->info = req->info;
        if (!p->is_pending) {
            close(fd);
            return; /* already served in this netns: no-op */
        }
        close(p->pending_fd); /* same netns: use the newest fd */
        p->pending_fd = fd;
        rc = try_add(c, p);
        if (rc < 0 && !is_stopped(c))
            snprintf(err, errcap, "failed to start proxy for %s: %s", req->uid, zt_strerror(rc));
        return;
    }
    if (p) {
        ZT_INFO(SCOPE, "pod %s moved to a new netns: replacing its proxy", req->uid);
        drop_pod(c, p);
        if (is_stopped(c)) {
            close(fd);
            return;
        }
    }
    if (c->npods >= MAX_PODS) {
        snprintf(err, errcap, "add for %s: too many pods (%d)", req->uid, MAX_PODS);
        goto fail;
    }
    if (c->npods == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->pods = zt_xrealloc(c->pods, c->cap * sizeof(*c->pods));
    }
    p = &c->pods[c->npods++];
    memset(p, 0, sizeof(*p));
    memcpy(p->uid, req->uid, sizeof(p->uid));
    p->dev = dev;
    p->ino = ino;
    p->info = req->info;
    p->seen_session = c->session;
    p->is_pending = true;
    p->pending_fd = fd;
    rc = try_add(c, p);
    if (is_stopped(c))
        return;
    if (rc < 0) {
        snprintf(err, errcap, "failed to start proxy for %s: %s", req->uid, zt_strerror(rc));
        arm_retry(c);
    }
    return;
fail:
    if (fd >= 0)
        close(fd);
}

static void handle_snapshot_sent(struct zt_inpod_client *c)
{
    size_t i = 0;
    while (i < c->npods) {
        struct pod *p = &c->pods[i];
        if (p->seen_session == c->session) {
            i++;
            continue;
        }
        ZT_INFO(SCOPE, "pod %s not in the agent's snapshot: removing", p->uid);
        drop_pod(c, p); /* swaps the last entry into slot i */
        if (is_stopped(c))
            return;
    }
    c->snapshot_received = true;
    set_state(c, ZT_INPOD_CLIENT_ST_READY);
}

/* Processes one datagram; fills `err` with a NACK text or leaves it "". */
static void handle_datagram(struct zt_inpod_client *c, const uint8_t *buf, size_t len, int fd,
                            char *err, size_t errcap)
{
    struct zt_zds_request req;
    int rc = zt_zds_request_decode(buf, len, &req);

    if (rc < 0) {
        snprintf(err, errcap, "bad message: %s", zt_strerror(rc));
        goto close_fd;
    }
    ZT_DEBUG(SCOPE, "zds request %s uid=%s", zt_zds_req_kind_str(req.kind), req.uid);
    if (req.kind != ZT_ZDS_REQ_ADD && fd >= 0) {
        snprintf(err, errcap, "protocol error: fd passed with %s", zt_zds_req_kind_str(req.kind));
        goto close_fd;
    }
    switch (req.kind) {
    case ZT_ZDS_REQ_ADD:
        handle_add(c, &req, fd, err, errcap);
        return;
    case ZT_ZDS_REQ_KEEP: {
        struct pod *p;
        if (c->st != ZT_INPOD_CLIENT_ST_SNAPSHOT) {
            snprintf(err, errcap, "protocol error: keep for %s after snapshot", req.uid);
            return;
        }
        if ((p = find_pod(c, req.uid)) != NULL)
            p->seen_session = c->session;
        return;
    }
    case ZT_ZDS_REQ_DEL: {
        struct pod *p = find_pod(c, req.uid);
        if (p)
            drop_pod(c, p); /* deletes go to every connection: unknown is fine */
        return;
    }
    case ZT_ZDS_REQ_SNAPSHOT_SENT:
        if (c->st != ZT_INPOD_CLIENT_ST_SNAPSHOT) {
            snprintf(err, errcap, "protocol error: second snapshot_sent");
            return;
        }
        handle_snapshot_sent(c);
        return;
    }
    snprintf(err, errcap, "bad message: unknown request");
close_fd:
    if (fd >= 0)
        close(fd);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct conn_poll *cp = (struct conn_poll *)h;
    struct zt_inpod_client *c = cp->c;
    uint8_t buf[ZT_ZDS_MSG_MAX];

    if (status < 0) {
        disconnect(c, -ECONNRESET);
        return;
    }
    for (int i = 0; i < MAX_MSGS_PER_WAKEUP; i++) {
        char err[ZT_ZDS_ERROR_MAX + 1] = "";
        uint8_t out[ZT_ZDS_MSG_MAX];
        size_t len = 0, olen;
        int fd = -1;
        int rc = zt_zds_recv(c->fd, buf, &len, &fd);

        if (rc == -EAGAIN)
            break;
        if (rc == ZT_E_TOO_BIG || rc == ZT_E_PROTO)
            snprintf(err, sizeof(err), "bad message: %s", zt_strerror(rc));
        else if (rc < 0) {
            disconnect(c, rc);
            return;
        } else {
            if (!c->got_message) {
                c->got_message = true;
                c->backoff_ms = 0; /* the agent is talking to us: healthy */
            }
            handle_datagram(c, buf, len, fd, err, sizeof(err));
            if (is_stopped(c))
                return;
        }
        if (err[0])
            ZT_WARN(SCOPE, "zds: NACK: %s", err);
        if ((rc = zt_zds_ack_encode(err, out, sizeof(out), &olen)) < 0 ||
            (rc = zt_zds_send(c->fd, out, olen, -1)) < 0) {
            disconnect(c, rc);
            return;
        }
        report(c);
        if (count_pending(c))
            arm_retry(c);
    }
}

static void on_backoff_timer(uv_timer_t *t)
{
    struct zt_inpod_client *c = t->data;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    uint8_t hello[16];
    uint32_t uid = 0;
    size_t hlen;
    int rc;

    memcpy(sa.sun_path, c->path, sizeof(sa.sun_path));
    c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        rc = -errno;
        goto fail;
    }
    /* A unix connect completes or fails at once (EAGAIN: backlog full). */
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        goto fail;
    }
    /* Whoever listens there hands us namespaces to serve: it must be the
     * node agent, not a process that grabbed the path. */
    if ((rc = zt_zds_peer_check(c->fd, c->trusted_uid, &uid)) < 0) {
        if (rc == ZT_E_DENIED)
            ZT_ERROR(SCOPE,
                     "refusing the node agent at %s: it runs as uid %u, not root or the trusted "
                     "uid (ZTUNNEL_TRUSTED_UID)",
                     c->path, uid);
        else
            ZT_ERROR(SCOPE, "refusing the node agent at %s: cannot read its credentials: %s",
                     c->path, zt_strerror(rc));
        goto fail;
    }
    if ((rc = zt_zds_hello_encode(hello, sizeof(hello), &hlen)) < 0 ||
        (rc = zt_zds_send(c->fd, hello, hlen, -1)) < 0)
        goto fail;
    c->poll = zt_xcalloc(1, sizeof(*c->poll));
    c->poll->c = c;
    uv_poll_init(c->loop, &c->poll->h, c->fd);
    c->poll->h.data = c;
    c->handles_open++;
    uv_poll_start(&c->poll->h, UV_READABLE | UV_DISCONNECT, on_poll);
    c->session++;
    c->got_message = false;
    ZT_INFO(SCOPE, "connected to node agent at %s", c->path);
    set_state(c, ZT_INPOD_CLIENT_ST_SNAPSHOT);
    report(c);
    return;
fail:
    ZT_DEBUG(SCOPE, "zds connect to %s failed: %s", c->path, zt_strerror(rc));
    close_conn(c);
    schedule_reconnect(c);
}

int zt_inpod_client_start(uv_loop_t *loop, const char *uds_path,
                          const struct zt_inpod_client_ops *ops, void *ud,
                          struct zt_inpod_client **out)
{
    struct zt_inpod_client *c;
    size_t n;

    if (!uds_path || !ops || !ops->add || !ops->del)
        return ZT_E_CONFIG;
    n = strlen(uds_path);
    if (n == 0 || n >= sizeof(c->path))
        return ZT_E_CONFIG;
    c = zt_xcalloc(1, sizeof(*c));
    c->loop = loop;
    memcpy(c->path, uds_path, n + 1);
    c->ops = ops;
    c->ud = ud;
    c->fd = -1;
    c->backoff_max_ms = BACKOFF_MAX_MS;
    c->retry_ms = RETRY_MS;
    c->st = ZT_INPOD_CLIENT_ST_BACKOFF;
    uv_timer_init(loop, &c->backoff_timer);
    uv_timer_init(loop, &c->retry_timer);
    c->backoff_timer.data = c;
    c->retry_timer.data = c;
    c->handles_open = 2;
    uv_timer_start(&c->backoff_timer, on_backoff_timer, 0, 0);
    *out = c;
    return 0;
}

void zt_inpod_client_set_trusted_uid(struct zt_inpod_client *c, uint32_t uid)
{
    c->trusted_uid = uid;
}

void zt_inpod_client_set_timing(struct zt_inpod_client *c, unsigned retry_ms,
                                unsigned backoff_max_ms)
{
    c->retry_ms = retry_ms ? retry_ms : RETRY_MS;
    c->backoff_max_ms = backoff_max_ms ? backoff_max_ms : BACKOFF_MAX_MS;
}

enum zt_inpod_client_state zt_inpod_client_state(const struct zt_inpod_client *c)
{
    return c->st;
}

unsigned zt_inpod_client_count(const struct zt_inpod_client *c)
{
    return (unsigned)c->npods;
}

void zt_inpod_client_stop(struct zt_inpod_client *c)
{
    if (!c || is_stopped(c))
        return;
    close_conn(c);
    for (size_t i = 0; i < c->npods; i++)
        if (c->pods[i].is_pending && c->pods[i].pending_fd >= 0) {
            close(c->pods[i].pending_fd);
            c->pods[i].pending_fd = -1;
        }
    c->st = ZT_INPOD_CLIENT_ST_STOPPED;
    uv_close((uv_handle_t *)&c->backoff_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->retry_timer, on_handle_closed);
}
