/* Node agent. Everything runs on one loop; helper programs (iptables-restore,
 * ip) run synchronously, as they take milliseconds and enrollments are rare.
 *
 * Each proxy connection has a FIFO of outgoing ZDS operations with at most
 * one in flight, because Acks correlate with requests only by order. An
 * operation started by a control client remembers that client by id, not by
 * pointer, so either side may go away first. */
#include "cni/agent.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "cni/ctl.h"
#include "cni/netns.h"
#include "cni/rules.h"
#include "cni/store.h"
#include "zds/zds.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SCOPE "cni"
#define ACK_TIMEOUT_MS 5000
#define MAX_PODS 8192
#define MAX_CONNS 64

struct apod {
    struct zt_cni_pod pod;
    int fd; /* the pod netns, or -1 if it could not be opened at load */
};

struct op {
    struct op *next;
    enum zt_zds_req_kind kind;
    char uid[ZT_ZDS_UID_MAX + 1];
    struct zt_zds_workload_info info;
    int fd;          /* owned dup of the netns fd (add only), else -1 */
    uint64_t ctl_id; /* control client waiting for the Ack, or 0 */
};

enum zconn_state {
    ZCONN_ST_HELLO = 0,    /* waiting for ZdsHello */
    ZCONN_ST_SNAPSHOT = 1, /* sending the snapshot */
    ZCONN_ST_READY = 2,    /* snapshot acked: live updates */
    ZCONN_ST_CLOSING = 3
};

struct zconn {
    struct zconn *next;
    struct zt_cni_agent *a;
    uint64_t id;
    int fd;
    enum zconn_state st;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;
    struct op *head, *tail, *inflight;
};

enum ctl_state { CTL_ST_READING = 0, CTL_ST_WAITING = 1, CTL_ST_WRITING = 2, CTL_ST_CLOSING = 3 };

struct ctlconn {
    struct ctlconn *next;
    struct zt_cni_agent *a;
    uint64_t id;
    int fd;
    int peer_rc;       /* zt_zds_peer_check at accept: 0 = may use the agent */
    uint32_t peer_uid; /* valid unless peer_rc is -errno */
    enum ctl_state st;
    uv_poll_t poll;
    char in[ZT_CNI_CTL_LINE_MAX + 1];
    size_t in_used;
    struct zt_cni_ctl_reply rep;
    char *out;
    size_t out_len, out_off;
};

struct zt_cni_agent {
    uv_loop_t *loop;
    char uds_path[108], ctl_path[108], pods_dir[PATH_MAX], bpf_dir[PATH_MAX];
    zt_cni_rules_apply_fn *rules_apply;
    zt_cni_rules_fn *rules_remove;
    struct zt_cni_rules_opts rules_opts;
    uint32_t trusted_uid;
    uint64_t self_dev, self_ino; /* the agent's own netns */
    struct apod *pods;
    size_t npods, cap;
    int zds_fd, ctl_fd;
    uv_poll_t zds_poll, ctl_poll;
    struct zconn *conns; /* newest first */
    struct ctlconn *ctls;
    uint64_t next_id;
    bool is_stopped;
    int handles_open;
};

static const char *zconn_state_str(enum zconn_state st)
{
    switch (st) {
    case ZCONN_ST_HELLO:
        return "hello";
    case ZCONN_ST_SNAPSHOT:
        return "snapshot";
    case ZCONN_ST_READY:
        return "ready";
    case ZCONN_ST_CLOSING:
        return "closing";
    }
    return "unknown";
}

static void zconn_set_state(struct zconn *z, enum zconn_state st)
{
    ZT_DEBUG(SCOPE, "proxy conn %llu: %s -> %s", (unsigned long long)z->id, zconn_state_str(z->st),
             zconn_state_str(st));
    z->st = st;
}

static void maybe_free_agent(struct zt_cni_agent *a)
{
    if (a->is_stopped && a->handles_open == 0 && !a->conns && !a->ctls) {
        free(a->pods);
        free(a);
    }
}

static struct apod *find_pod(struct zt_cni_agent *a, const char *uid)
{
    for (size_t i = 0; i < a->npods; i++)
        if (strcmp(a->pods[i].pod.uid, uid) == 0)
            return &a->pods[i];
    return NULL;
}

/* The pod holding this netns open, or NULL. Only held namespaces count:
 * the identity of one the agent could not reopen may since have been
 * reused by another. */
static struct apod *find_pod_by_netns(struct zt_cni_agent *a, uint64_t dev, uint64_t ino)
{
    for (size_t i = 0; i < a->npods; i++)
        if (a->pods[i].fd >= 0 && a->pods[i].pod.netns_dev == dev &&
            a->pods[i].pod.netns_ino == ino)
            return &a->pods[i];
    return NULL;
}

/* ---- control connections ---- */

static void ctl_on_closed(uv_handle_t *h)
{
    struct ctlconn *c = h->data;
    struct zt_cni_agent *a = c->a;
    struct ctlconn **pp;
    for (pp = &a->ctls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    free(c->out);
    free(c);
    maybe_free_agent(a);
}

static void ctl_close(struct ctlconn *c)
{
    if (c->st == CTL_ST_CLOSING)
        return;
    c->st = CTL_ST_CLOSING;
    uv_close((uv_handle_t *)&c->poll, ctl_on_closed);
    close(c->fd);
    c->fd = -1;
}

static void ctl_on_poll(uv_poll_t *h, int status, int events);

/* Sends what is left of the reply; closes when done. */
static void ctl_flush(struct ctlconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            uv_poll_start(&c->poll, UV_WRITABLE, ctl_on_poll);
            return;
        }
        if (w < 0)
            break;
        c->out_off += (size_t)w;
    }
    ctl_close(c);
}

static void ctl_reply(struct ctlconn *c)
{
    if (c->st == CTL_ST_CLOSING)
        return;
    c->out = zt_cni_ctl_reply_encode(&c->rep);
    c->out_len = strlen(c->out);
    c->st = CTL_ST_WRITING;
    ctl_flush(c);
}

static struct ctlconn *find_ctl(struct zt_cni_agent *a, uint64_t id)
{
    for (struct ctlconn *c = a->ctls; c; c = c->next)
        if (c->id == id && c->st == CTL_ST_WAITING)
            return c;
    return NULL;
}

/* ---- proxy (ZDS) connections ---- */

static void op_free(struct op *o)
{
    if (o->fd >= 0)
        close(o->fd);
    free(o);
}

/* Finishes an operation: reports the proxy's answer to a waiting client. */
static void op_complete(struct zt_cni_agent *a, struct op *o, const char *proxy_error)
{
    struct ctlconn *c = o->ctl_id ? find_ctl(a, o->ctl_id) : NULL;
    if (proxy_error[0])
        ZT_WARN(SCOPE, "proxy answered %s %s with error: %s", zt_zds_req_kind_str(o->kind), o->uid,
                proxy_error);
    if (c) {
        snprintf(c->rep.proxy_error, sizeof(c->rep.proxy_error), "%s", proxy_error);
        if (!proxy_error[0])
            snprintf(c->rep.message + strlen(c->rep.message),
                     sizeof(c->rep.message) - strlen(c->rep.message), "; proxy acknowledged");
        ctl_reply(c);
    }
    op_free(o);
}

static void zconn_on_closed(uv_handle_t *h)
{
    struct zconn *z = h->data;
    struct zt_cni_agent *a = z->a;
    if (--z->handles_open > 0)
        return;
    for (struct zconn **pp = &a->conns; *pp; pp = &(*pp)->next)
        if (*pp == z) {
            *pp = z->next;
            break;
        }
    free(z);
    maybe_free_agent(a);
}

static struct zconn *newest_live(struct zt_cni_agent *a, bool *any_hello);
static void zconn_enqueue(struct zconn *z, enum zt_zds_req_kind kind, const struct apod *p,
                          uint64_t ctl_id);

/* The newest proxy left while an older one is still connected (an upgrade
 * given up, or the old proxy reconnected last after an agent restart and
 * then drained): the one left serves every pod from now on, including those
 * enrolled since its snapshot, which only the one that left was told of.
 * An add of a pod it already serves is a no-op for it (same netns). */
static void reoffer_pods(struct zt_cni_agent *a)
{
    bool any_hello;
    struct zconn *z = newest_live(a, &any_hello);
    if (!z || a->is_stopped)
        return;
    ZT_INFO(SCOPE, "the newest proxy left: offering all %zu pods to proxy connection %llu",
            a->npods, (unsigned long long)z->id);
    for (size_t i = 0; i < a->npods; i++)
        if (a->pods[i].fd >= 0)
            zconn_enqueue(z, ZT_ZDS_REQ_ADD, &a->pods[i], 0);
}

static void zconn_close(struct zconn *z, const char *why)
{
    struct op *o;
    bool any_hello, was_newest;
    if (z->st == ZCONN_ST_CLOSING)
        return;
    was_newest = newest_live(z->a, &any_hello) == z;
    ZT_INFO(SCOPE, "proxy connection %llu closed: %s", (unsigned long long)z->id, why);
    zconn_set_state(z, ZCONN_ST_CLOSING);
    if (z->inflight) {
        o = z->inflight;
        z->inflight = NULL;
        op_complete(z->a, o, "proxy disconnected before acknowledging");
    }
    while ((o = z->head) != NULL) {
        z->head = o->next;
        op_complete(z->a, o, "proxy disconnected before acknowledging");
    }
    z->tail = NULL;
    uv_close((uv_handle_t *)&z->poll, zconn_on_closed);
    uv_close((uv_handle_t *)&z->timer, zconn_on_closed);
    close(z->fd);
    z->fd = -1;
    if (was_newest)
        reoffer_pods(z->a);
}

static bool zconn_is_live(const struct zconn *z)
{
    return z->st == ZCONN_ST_SNAPSHOT || z->st == ZCONN_ST_READY;
}

static void on_ack_timeout(uv_timer_t *t)
{
    struct zconn *z = t->data;
    /* A late Ack would pair with the next request: start over instead. */
    zconn_close(z, "timed out waiting for an ack");
}

/* Sends the next queued operation if none is in flight. */
static void zconn_kick(struct zconn *z)
{
    uint8_t buf[ZT_ZDS_MSG_MAX];
    struct zt_zds_request req;
    struct op *o;
    size_t len;
    int rc;

    if (z->st == ZCONN_ST_CLOSING || z->inflight || !z->head)
        return;
    o = z->head;
    z->head = o->next;
    if (!z->head)
        z->tail = NULL;
    memset(&req, 0, sizeof(req));
    req.kind = o->kind;
    memcpy(req.uid, o->uid, sizeof(req.uid));
    req.has_info = o->kind == ZT_ZDS_REQ_ADD;
    req.info = o->info;
    if ((rc = zt_zds_request_encode(&req, buf, sizeof(buf), &len)) < 0) {
        char e[128];
        snprintf(e, sizeof(e), "cannot encode request: %s", zt_strerror(rc));
        op_complete(z->a, o, e);
        zconn_kick(z);
        return;
    }
    /* The socket buffer holds far more than one small datagram and only one
     * is ever unacknowledged, so EAGAIN here means a broken peer. */
    if ((rc = zt_zds_send(z->fd, buf, len, o->fd)) < 0) {
        op_complete(z->a, o, "cannot send to proxy");
        zconn_close(z, zt_strerror(rc));
        return;
    }
    ZT_DEBUG(SCOPE, "sent %s %s to proxy %llu", zt_zds_req_kind_str(o->kind), o->uid,
             (unsigned long long)z->id);
    /* The kernel has its own reference to the passed fd now. */
    if (o->fd >= 0) {
        close(o->fd);
        o->fd = -1;
    }
    z->inflight = o;
    uv_timer_start(&z->timer, on_ack_timeout, ACK_TIMEOUT_MS, 0);
}

static void zconn_enqueue(struct zconn *z, enum zt_zds_req_kind kind, const struct apod *p,
                          uint64_t ctl_id)
{
    struct op *o = zt_xcalloc(1, sizeof(*o));
    o->kind = kind;
    o->fd = -1;
    o->ctl_id = ctl_id;
    if (p) {
        memcpy(o->uid, p->pod.uid, sizeof(o->uid));
        o->info = p->pod.info;
        /* Out of fds: the add goes without one and the proxy NACKs it. */
        if (kind == ZT_ZDS_REQ_ADD)
            o->fd = fcntl(p->fd, F_DUPFD_CLOEXEC, 0);
    }
    if (z->tail)
        z->tail->next = o;
    else
        z->head = o;
    z->tail = o;
    zconn_kick(z);
}

static void zconn_send_snapshot(struct zconn *z)
{
    struct zt_cni_agent *a = z->a;
    for (size_t i = 0; i < a->npods; i++)
        zconn_enqueue(z, a->pods[i].fd >= 0 ? ZT_ZDS_REQ_ADD : ZT_ZDS_REQ_KEEP, &a->pods[i], 0);
    zconn_enqueue(z, ZT_ZDS_REQ_SNAPSHOT_SENT, NULL, 0);
}

/* eBPF backend: the proxy acknowledged an add, so its listeners in the pod
 * exist; its plaintext inbound one goes to the pod's sk_lookup program. On
 * failure `err` says why, as if the proxy had refused (the pod's inbound
 * connections are refused meanwhile, never let through). */
static void capture_listener(struct zconn *z, const char *uid, char *err, size_t errcap)
{
    struct apod *p = find_pod(z->a, uid);
    struct ucred cred;
    socklen_t len = sizeof(cred);
    char why[384];
    int rc;

    if (!p || p->fd < 0)
        return;
    if (getsockopt(z->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        snprintf(err, errcap, "inbound capture: cannot identify the proxy process: %s",
                 strerror(errno));
        return;
    }
    rc = zt_cni_ebpf_capture_listener(z->a->bpf_dir, p->fd, cred.pid, why, sizeof(why));
    if (rc < 0) {
        ZT_ERROR(SCOPE, "pod %s: handing the proxy's inbound listener to sk_lookup: %s", uid, why);
        snprintf(err, errcap, "inbound capture (sk_lookup) not ready: %s", why);
        return;
    }
    ZT_INFO(SCOPE, "pod %s: inbound connections go to the listener of proxy pid %d", uid,
            (int)cred.pid);
}

static void zconn_on_poll(uv_poll_t *h, int status, int events)
{
    struct zconn *z = h->data;
    uint8_t buf[ZT_ZDS_MSG_MAX];
    char err[ZT_ZDS_ERROR_MAX + 1];
    size_t len = 0;
    int fd = -1, rc, version;

    if (status < 0) {
        zconn_close(z, uv_strerror(status));
        return;
    }
    rc = zt_zds_recv(z->fd, buf, &len, &fd);
    if (rc == -EAGAIN)
        return;
    if (rc < 0) {
        zconn_close(z, rc == ZT_E_CLOSED ? "proxy closed the connection" : zt_strerror(rc));
        return;
    }
    if (fd >= 0) {
        close(fd);
        zconn_close(z, "proxy sent a file descriptor");
        return;
    }
    if (z->st == ZCONN_ST_HELLO) {
        if ((rc = zt_zds_hello_decode(buf, len, &version)) < 0) {
            zconn_close(z, "bad hello");
            return;
        }
        ZT_INFO(SCOPE, "proxy %llu said hello (version %d); sending snapshot of %zu pods",
                (unsigned long long)z->id, version, z->a->npods);
        zconn_set_state(z, ZCONN_ST_SNAPSHOT);
        zconn_send_snapshot(z);
        return;
    }
    if (!z->inflight) {
        zconn_close(z, "unsolicited message from proxy");
        return;
    }
    if ((rc = zt_zds_ack_decode(buf, len, err, sizeof(err))) < 0) {
        zconn_close(z, "undecodable response from proxy");
        return;
    }
    uv_timer_stop(&z->timer);
    struct op *o = z->inflight;
    z->inflight = NULL;
    if (o->kind == ZT_ZDS_REQ_ADD && !err[0] && z->a->rules_opts.backend == ZT_CNI_EBPF)
        capture_listener(z, o->uid, err, sizeof(err));
    if (o->kind == ZT_ZDS_REQ_SNAPSHOT_SENT) {
        ZT_INFO(SCOPE, "proxy %llu acknowledged the snapshot", (unsigned long long)z->id);
        zconn_set_state(z, ZCONN_ST_READY);
    }
    op_complete(z->a, o, err);
    zconn_kick(z);
}

static unsigned count_conns(const struct zt_cni_agent *a)
{
    unsigned n = 0;
    for (const struct zconn *z = a->conns; z; z = z->next)
        n += z->st != ZCONN_ST_CLOSING;
    return n;
}

static void on_zds_accept(uv_poll_t *h, int status, int events)
{
    struct zt_cni_agent *a = h->data;
    struct zconn *z;
    uint32_t uid = 0;
    int fd, rc;

    if (status < 0)
        return;
    fd = accept4(a->zds_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if ((rc = zt_zds_peer_check(fd, a->trusted_uid, &uid)) < 0) {
        if (rc == ZT_E_DENIED)
            ZT_WARN(SCOPE,
                    "refusing a proxy connection on %s from uid %u: only root or the "
                    "trusted uid (ZTUNNEL_TRUSTED_UID) may connect",
                    a->uds_path, uid);
        else
            ZT_WARN(SCOPE, "refusing a proxy connection on %s: cannot read its credentials: %s",
                    a->uds_path, zt_strerror(rc));
        close(fd);
        return;
    }
    if (count_conns(a) >= MAX_CONNS) {
        ZT_WARN(SCOPE, "too many proxy connections; refusing one");
        close(fd);
        return;
    }
    z = zt_xcalloc(1, sizeof(*z));
    z->a = a;
    z->id = ++a->next_id;
    z->fd = fd;
    z->st = ZCONN_ST_HELLO;
    uv_poll_init(a->loop, &z->poll, fd);
    uv_timer_init(a->loop, &z->timer);
    z->poll.data = z;
    z->timer.data = z;
    z->handles_open = 2;
    z->next = a->conns; /* newest first: adds go to the head */
    a->conns = z;
    uv_poll_start(&z->poll, UV_READABLE | UV_DISCONNECT, zconn_on_poll);
    /* The hello must arrive in time too. */
    uv_timer_start(&z->timer, on_ack_timeout, ACK_TIMEOUT_MS, 0);
    ZT_INFO(SCOPE, "proxy connection %llu accepted", (unsigned long long)z->id);
}

/* Newest connection that may receive an add now, or NULL. */
static struct zconn *newest_live(struct zt_cni_agent *a, bool *any_hello)
{
    *any_hello = false;
    for (struct zconn *z = a->conns; z; z = z->next) {
        if (z->st == ZCONN_ST_HELLO)
            *any_hello = true;
        if (zconn_is_live(z))
            return z;
    }
    return NULL;
}

/* ---- enroll / unenroll ---- */

static void set_error(struct ctlconn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_error(struct ctlconn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->rep.error, sizeof(c->rep.error), fmt, ap);
    va_end(ap);
    c->rep.ok = false;
}

/* Returns true if the reply waits for a proxy Ack. */
static bool do_enroll(struct zt_cni_agent *a, struct ctlconn *c, struct zt_cni_pod *req)
{
    struct zt_cni_pod pod = *req;
    char err[512];
    struct apod *p, *other;
    struct zconn *z;
    bool any_hello, is_new_netns, want_rollback = false;
    int fd, rc;

    if (zt_cni_netns_resolve(req->netns, pod.netns, sizeof(pod.netns)) < 0) {
        set_error(c, "invalid netns '%s' (a name under /var/run/netns or an absolute path)",
                  req->netns);
        return false;
    }
    if (zt_cni_pod_validate(&pod, err, sizeof(err)) < 0) {
        set_error(c, "%s", err);
        return false;
    }
    fd = zt_cni_netns_open(pod.netns);
    if (fd == -ENOENT) {
        set_error(c, "network namespace %s does not exist", pod.netns);
        return false;
    }
    if (fd < 0) {
        set_error(c, "cannot use %s as a network namespace: %s", pod.netns,
                  fd == ZT_E_CONFIG ? "not a network namespace" : zt_strerror(fd));
        return false;
    }
    if ((rc = zt_zds_netns_id(fd, &pod.netns_dev, &pod.netns_ino)) < 0) {
        set_error(c, "cannot stat %s: %s", pod.netns, zt_strerror(rc));
        goto fail;
    }
    /* Capturing the node's own traffic would cut the node off. */
    if (pod.netns_dev == a->self_dev && pod.netns_ino == a->self_ino) {
        set_error(c,
                  "%s is the node agent's own network namespace; only pod namespaces can be "
                  "enrolled",
                  pod.netns);
        goto fail;
    }
    if ((other = find_pod_by_netns(a, pod.netns_dev, pod.netns_ino)) &&
        strcmp(other->pod.uid, pod.uid) != 0) {
        set_error(c, "network namespace %s is already enrolled as uid %s (unenroll it first)",
                  pod.netns, other->pod.uid);
        goto fail;
    }
    p = find_pod(a, pod.uid);
    if (!p && a->npods >= MAX_PODS) {
        set_error(c, "too many enrolled pods (%d)", MAX_PODS);
        goto fail;
    }
    /* Rules already in this netns for this pod stay if a re-enroll fails;
     * anything else a failed enroll installed is rolled back. */
    is_new_netns = !p || p->pod.netns_dev != pod.netns_dev || p->pod.netns_ino != pod.netns_ino;
    if ((rc = a->rules_apply(fd, &a->rules_opts, err, sizeof(err))) < 0) {
        set_error(c, "installing redirection rules in %s failed%s: %s", pod.netns,
                  is_new_netns ? " (rules removed again)" : "", err);
        want_rollback = is_new_netns;
        goto fail;
    }
    if (err[0])
        ZT_WARN(SCOPE, "pod %s: %s", pod.uid, err);
    if ((rc = zt_cni_store_write(a->pods_dir, &pod)) < 0) {
        set_error(c, "cannot save enrollment in %s: %s", a->pods_dir, zt_strerror(rc));
        want_rollback = is_new_netns;
        goto fail;
    }
    if (p) {
        if (p->fd >= 0)
            close(p->fd);
    } else {
        if (a->npods == a->cap) {
            a->cap = a->cap ? a->cap * 2 : 16;
            a->pods = zt_xrealloc(a->pods, a->cap * sizeof(*a->pods));
        }
        p = &a->pods[a->npods++];
    }
    p->pod = pod;
    p->fd = fd;
    ZT_INFO(SCOPE, "enrolled pod %s (%s/%s, sa %s) netns %s", pod.uid, pod.info.namespace,
            pod.info.name, pod.info.service_account, pod.netns);
    c->rep.ok = true;
    snprintf(c->rep.message, sizeof(c->rep.message), "enrolled %.63s/%.100s (uid %s) in %.150s",
             pod.info.namespace, pod.info.name, pod.uid, pod.netns);
    z = newest_live(a, &any_hello);
    if (!z) {
        snprintf(c->rep.message + strlen(c->rep.message),
                 sizeof(c->rep.message) - strlen(c->rep.message), "; %s",
                 any_hello ? "the connecting proxy will receive it in its snapshot"
                           : "no proxy connected yet");
        return false;
    }
    zconn_enqueue(z, ZT_ZDS_REQ_ADD, p, c->id);
    return true;
fail:
    if (want_rollback && a->rules_remove(fd, &a->rules_opts, err, sizeof(err)) < 0)
        ZT_ERROR(SCOPE, "pod %s: removing the rules of a failed enroll from %s: %s", pod.uid,
                 pod.netns, err);
    close(fd);
    return false;
}

static bool do_unenroll(struct zt_cni_agent *a, struct ctlconn *c, const char *uid)
{
    struct apod *p = find_pod(a, uid);
    struct apod gone;
    bool is_waiting = false, is_first = true;
    char err[512] = "";
    int rc;

    if (!p) {
        set_error(c, "unknown uid '%s'", uid);
        return false;
    }
    gone = *p;
    *p = a->pods[--a->npods];
    /* Deletes go to every connection; the newest one answers the client. */
    for (struct zconn *z = a->conns; z; z = z->next) {
        if (!zconn_is_live(z))
            continue;
        zconn_enqueue(z, ZT_ZDS_REQ_DEL, &gone, is_first ? c->id : 0);
        is_waiting = is_waiting || is_first;
        is_first = false;
    }
    if (gone.fd >= 0 && a->rules_remove(gone.fd, &a->rules_opts, err, sizeof(err)) < 0)
        ZT_WARN(SCOPE, "pod %s: removing rules: %s", uid, err);
    if ((rc = zt_cni_store_remove(a->pods_dir, uid)) < 0 && rc != -ENOENT)
        ZT_WARN(SCOPE, "pod %s: removing record: %s", uid, zt_strerror(rc));
    if (gone.fd >= 0)
        close(gone.fd);
    ZT_INFO(SCOPE, "unenrolled pod %s", uid);
    c->rep.ok = true;
    snprintf(c->rep.message, sizeof(c->rep.message), "unenrolled %s%s", uid,
             err[0] ? " (some rules could not be removed)" : "");
    if (!is_waiting)
        snprintf(c->rep.message + strlen(c->rep.message),
                 sizeof(c->rep.message) - strlen(c->rep.message), "; no proxy connected");
    return is_waiting;
}

static void ctl_handle(struct ctlconn *c, const char *line, size_t len)
{
    struct zt_cni_ctl_request req = {0};
    bool is_waiting = false;

    if (c->peer_rc == ZT_E_DENIED)
        set_error(c,
                  "uid %u may not use the node agent: only root or the trusted uid "
                  "(ZTUNNEL_TRUSTED_UID) may",
                  c->peer_uid);
    else if (c->peer_rc < 0)
        set_error(c, "cannot read the credentials of this connection: %s", zt_strerror(c->peer_rc));
    else if (zt_cni_ctl_request_decode(line, len, &req) < 0)
        set_error(c, "malformed request");
    else if (req.op == ZT_CNI_CTL_ENROLL)
        is_waiting = do_enroll(c->a, c, &req.pod);
    else if (!zt_cni_uid_is_valid(req.pod.uid))
        set_error(c, "invalid uid");
    else
        is_waiting = do_unenroll(c->a, c, req.pod.uid);
    if (!c->rep.ok)
        ZT_WARN(SCOPE, "%s request failed: %s",
                c->peer_rc < 0 ? "control" : zt_cni_ctl_op_str(req.op), c->rep.error);
    if (is_waiting) {
        c->st = CTL_ST_WAITING;
        uv_poll_stop(&c->poll);
        return;
    }
    ctl_reply(c);
}

static void ctl_on_poll(uv_poll_t *h, int status, int events)
{
    struct ctlconn *c = h->data;
    char *nl;
    ssize_t r;

    if (status < 0) {
        ctl_close(c);
        return;
    }
    if (c->st == CTL_ST_WRITING) {
        ctl_flush(c);
        return;
    }
    if (c->st != CTL_ST_READING)
        return;
    r = read(c->fd, c->in + c->in_used, sizeof(c->in) - 1 - c->in_used);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        ctl_close(c);
        return;
    }
    c->in_used += (size_t)r;
    c->in[c->in_used] = '\0';
    nl = memchr(c->in, '\n', c->in_used);
    if (nl) {
        ctl_handle(c, c->in, (size_t)(nl - c->in));
        return;
    }
    if (c->in_used == sizeof(c->in) - 1) {
        set_error(c, "request too long");
        ctl_reply(c);
    }
}

static void on_ctl_accept(uv_poll_t *h, int status, int events)
{
    struct zt_cni_agent *a = h->data;
    struct ctlconn *c;
    int fd;

    if (status < 0)
        return;
    fd = accept4(a->ctl_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    c = zt_xcalloc(1, sizeof(*c));
    c->a = a;
    c->id = ++a->next_id;
    c->fd = fd;
    /* Refused only once its request is read, so that it reads the reply. */
    c->peer_rc = zt_zds_peer_check(fd, a->trusted_uid, &c->peer_uid);
    c->st = CTL_ST_READING;
    uv_poll_init(a->loop, &c->poll, fd);
    c->poll.data = c;
    c->next = a->ctls;
    a->ctls = c;
    uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, ctl_on_poll);
}

/* ---- start / stop ---- */

static void on_load(void *ud, const char *file, const struct zt_cni_pod *pod, int err)
{
    struct zt_cni_agent *a = ud;
    char why[512];
    uint64_t dev, ino;
    struct apod *p;
    int fd;

    if (!pod) {
        ZT_ERROR(SCOPE, "skipping corrupt enrollment %s/%s: %s", a->pods_dir, file,
                 zt_strerror(err));
        return;
    }
    if (find_pod(a, pod->uid) || a->npods >= MAX_PODS) {
        ZT_ERROR(SCOPE, "skipping enrollment %s/%s: duplicate or too many", a->pods_dir, file);
        return;
    }
    fd = zt_cni_netns_open(pod->netns);
    if (fd >= 0 && (zt_zds_netns_id(fd, &dev, &ino) < 0 ||
                    ((pod->netns_ino || pod->netns_dev) &&
                     (dev != pod->netns_dev || ino != pod->netns_ino)))) {
        ZT_WARN(SCOPE, "pod %s: %s is now another network namespace; not touching it", pod->uid,
                pod->netns);
        close(fd);
        fd = -1;
    } else if (fd < 0) {
        ZT_WARN(SCOPE, "pod %s: cannot open %s (%s); proxies will be told to keep it", pod->uid,
                pod->netns, zt_strerror(fd));
    }
    if (fd >= 0) {
        if (a->rules_apply(fd, &a->rules_opts, why, sizeof(why)) < 0)
            ZT_ERROR(SCOPE, "pod %s: re-installing rules failed: %s", pod->uid, why);
        else if (why[0])
            ZT_WARN(SCOPE, "pod %s: %s", pod->uid, why);
    }
    if (a->npods == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->pods = zt_xrealloc(a->pods, a->cap * sizeof(*a->pods));
    }
    p = &a->pods[a->npods++];
    p->pod = *pod;
    p->fd = fd;
    ZT_INFO(SCOPE, "restored pod %s (%s/%s)", pod->uid, pod->info.namespace, pod->info.name);
}

/* mkdir with exactly `mode`: the process umask may have cut it (a unit's
 * UMask=0077 would leave a trusted uid's 0711 at 0700). An existing
 * directory keeps its mode. */
static int mkdir_mode(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0)
        return errno == EEXIST ? 0 : -errno;
    return chmod(path, mode) < 0 ? -errno : 0;
}

/* Creates `dir` with `mode` and missing parents with 0755 (a private mode
 * on a parent would lock out the trusted uid). Existing ones are left. */
static int mkdir_p(const char *dir, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t n = strlen(dir);
    int rc;
    if (n == 0 || n >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, dir, n + 1);
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if ((rc = mkdir_mode(tmp, 0755)) < 0)
            return rc;
        *s = '/';
    }
    return mkdir_mode(tmp, mode);
}

/* A directory holding our sockets or records must be ours: owned by root
 * (or by the agent's own user) and not writable by group or others, who
 * could otherwise replace a socket or plant a record. Logs why not. */
static int check_private_dir(const char *dir)
{
    struct stat st;
    int rc;

    if (stat(dir, &st) < 0) {
        rc = -errno;
        ZT_ERROR(SCOPE, "cannot check directory %s: %s", dir, zt_strerror(rc));
        return rc;
    }
    if (!S_ISDIR(st.st_mode)) {
        ZT_ERROR(SCOPE, "%s is not a directory", dir);
        return ZT_E_CONFIG;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        ZT_ERROR(SCOPE,
                 "refusing to use %s: it is owned by uid %u, not root; another user could "
                 "replace the node agent's sockets or records (chown root, or choose another "
                 "path)",
                 dir, (unsigned)st.st_uid);
        return ZT_E_CONFIG;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        ZT_ERROR(SCOPE,
                 "refusing to use %s: its mode %04o lets group or others write in it, so they "
                 "could replace the node agent's sockets or records (chmod go-w, or choose "
                 "another path)",
                 dir, (unsigned)(st.st_mode & 07777));
        return ZT_E_CONFIG;
    }
    return 0;
}

/* The identity of the agent's own netns, to refuse enrolling it. */
static int self_netns_id(uint64_t *dev, uint64_t *ino)
{
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC), rc;
    if (fd < 0)
        return -errno;
    rc = zt_zds_netns_id(fd, dev, ino);
    close(fd);
    return rc;
}

static int listen_unix(const char *path, int type, mode_t mode, uint32_t owner)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    mode_t old;
    int fd, rc;

    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (unlink(path) < 0 && errno != ENOENT) {
        rc = -errno;
        goto fail;
    }
    /* Create the socket file with its final mode: no window for others. */
    old = umask(0777 & ~mode);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    /* Connecting needs write permission on the file. With a trusted uid the
     * file is that uid's and group root's, writable by both: root without
     * CAP_DAC_OVERRIDE (a hardened proxy unit) still connects through the
     * group. Group root holds no one else; SO_PEERCRED checks every peer. */
    if (owner)
        mode |= 0060;
    if (rc < 0 || chmod(path, mode) < 0 || (owner && chown(path, owner, 0) < 0) ||
        listen(fd, 64) < 0) {
        rc = -errno;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}

/* True if something accepts connections on `path` (a running agent). */
static bool is_answering(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool yes;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    yes = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return yes;
}

static void agent_on_closed(uv_handle_t *h)
{
    struct zt_cni_agent *a = h->data;
    a->handles_open--;
    maybe_free_agent(a);
}

int zt_cni_agent_start(uv_loop_t *loop, const struct zt_cni_agent_config *cfg,
                       struct zt_cni_agent **out)
{
    struct zt_cni_agent *a;
    char parent[108], *slash;
    int rc;

    a = zt_xcalloc(1, sizeof(*a));
    a->loop = loop;
    a->zds_fd = a->ctl_fd = -1;
    a->rules_apply = cfg->rules_apply ? cfg->rules_apply : zt_cni_rules_apply;
    a->rules_remove = cfg->rules_remove ? cfg->rules_remove : zt_cni_rules_remove;
    a->rules_opts.want_dns_capture = !cfg->is_dns_capture_off;
    a->rules_opts.backend = cfg->backend;
    a->rules_opts.bpf_dir = a->bpf_dir;
    a->trusted_uid = cfg->trusted_uid;
    if (snprintf(a->uds_path, sizeof(a->uds_path), "%s", cfg->uds_path) >=
            (int)sizeof(a->uds_path) ||
        snprintf(a->ctl_path, sizeof(a->ctl_path), "%s/agent.sock", cfg->cni_dir) >=
            (int)sizeof(a->ctl_path) ||
        snprintf(a->pods_dir, sizeof(a->pods_dir), "%s/pods", cfg->cni_dir) >=
            (int)sizeof(a->pods_dir)) {
        ZT_ERROR(SCOPE, "socket path too long (max 107 bytes)");
        rc = ZT_E_CONFIG;
        goto fail;
    }
    if (cfg->bpf_dir ? snprintf(a->bpf_dir, sizeof(a->bpf_dir), "%s", cfg->bpf_dir) >=
                           (int)sizeof(a->bpf_dir)
                     : zt_cni_ebpf_default_dir(cfg->cni_dir, a->bpf_dir, sizeof(a->bpf_dir)) < 0) {
        ZT_ERROR(SCOPE, "no usable eBPF pin directory for %s (set ZTUNNEL_BPF_DIR)", cfg->cni_dir);
        rc = ZT_E_CONFIG;
        goto fail;
    }
    if ((rc = self_netns_id(&a->self_dev, &a->self_ino)) < 0) {
        ZT_ERROR(SCOPE, "cannot identify the agent's own network namespace: %s", zt_strerror(rc));
        goto fail;
    }
    memcpy(parent, a->uds_path, sizeof(parent));
    slash = strrchr(parent, '/');
    if (!slash)
        strcpy(parent, ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    if ((rc = mkdir_p(parent, 0755)) < 0) {
        ZT_ERROR(SCOPE, "cannot create %s: %s", parent, zt_strerror(rc));
        goto fail;
    }
    if ((rc = mkdir_p(cfg->cni_dir, a->trusted_uid ? 0711 : 0700)) < 0 ||
        (rc = zt_cni_store_init(a->pods_dir)) < 0) {
        ZT_ERROR(SCOPE, "cannot create %s: %s", a->pods_dir, zt_strerror(rc));
        goto fail;
    }
    if ((rc = check_private_dir(parent)) < 0 || (rc = check_private_dir(cfg->cni_dir)) < 0 ||
        (rc = check_private_dir(a->pods_dir)) < 0)
        goto fail;
    if (is_answering(a->ctl_path)) {
        ZT_ERROR(SCOPE, "another node agent is running (%s answers)", a->ctl_path);
        rc = -EADDRINUSE;
        goto fail;
    }
    if (a->rules_opts.backend == ZT_CNI_EBPF) {
        char why[512];
        if ((rc = zt_cni_ebpf_setup(a->bpf_dir, why, sizeof(why))) < 0) {
            ZT_ERROR(SCOPE, "eBPF redirection (ZTUNNEL_REDIRECT=ebpf) not set up in %s: %s",
                     a->bpf_dir, why);
            goto fail;
        }
        ZT_INFO(SCOPE, "eBPF programs attached to the cgroup2 root, pinned in %s", a->bpf_dir);
    }
    if ((rc = zt_cni_store_load(a->pods_dir, on_load, a)) < 0) {
        ZT_ERROR(SCOPE, "cannot read %s: %s", a->pods_dir, zt_strerror(rc));
        goto fail;
    }
    /* The pods are on the other backend now (their re-install removed
     * their eBPF state): the programs of an earlier ebpf run can go. */
    if (a->rules_opts.backend != ZT_CNI_EBPF && !cfg->rules_apply &&
        zt_cni_ebpf_dir_exists(a->bpf_dir)) {
        char why[512];
        if (zt_cni_ebpf_cleanup(a->bpf_dir, why, sizeof(why)) < 0)
            ZT_WARN(SCOPE, "removing the eBPF programs of an earlier run from %s: %s", a->bpf_dir,
                    why);
        else
            ZT_INFO(SCOPE, "removed the eBPF programs of an earlier run (%s)", a->bpf_dir);
    }
    if ((a->zds_fd = listen_unix(a->uds_path, SOCK_SEQPACKET, 0755, a->trusted_uid)) < 0) {
        rc = a->zds_fd;
        ZT_ERROR(SCOPE, "cannot listen on %s: %s", a->uds_path, zt_strerror(rc));
        goto fail;
    }
    if ((a->ctl_fd = listen_unix(a->ctl_path, SOCK_STREAM, 0600, a->trusted_uid)) < 0) {
        rc = a->ctl_fd;
        ZT_ERROR(SCOPE, "cannot listen on %s: %s", a->ctl_path, zt_strerror(rc));
        unlink(a->uds_path);
        goto fail;
    }
    uv_poll_init(loop, &a->zds_poll, a->zds_fd);
    uv_poll_init(loop, &a->ctl_poll, a->ctl_fd);
    a->zds_poll.data = a->ctl_poll.data = a;
    a->handles_open = 2;
    uv_poll_start(&a->zds_poll, UV_READABLE, on_zds_accept);
    uv_poll_start(&a->ctl_poll, UV_READABLE, on_ctl_accept);
    ZT_INFO(SCOPE,
            "node agent serving ZDS on %s, control on %s, %zu pods enrolled, rules by %s, DNS "
            "capture %s",
            a->uds_path, a->ctl_path, a->npods, zt_cni_backend_str(a->rules_opts.backend),
            a->rules_opts.want_dns_capture ? "on" : "off");
    *out = a;
    return 0;
fail:
    if (a->zds_fd >= 0)
        close(a->zds_fd);
    if (a->ctl_fd >= 0)
        close(a->ctl_fd);
    for (size_t i = 0; i < a->npods; i++)
        if (a->pods[i].fd >= 0)
            close(a->pods[i].fd);
    free(a->pods);
    free(a);
    return rc;
}

unsigned zt_cni_agent_pod_count(const struct zt_cni_agent *a)
{
    return (unsigned)a->npods;
}

void zt_cni_agent_stop(struct zt_cni_agent *a)
{
    if (!a || a->is_stopped)
        return;
    a->is_stopped = true;
    for (struct zconn *z = a->conns; z; z = z->next)
        zconn_close(z, "agent stopping");
    for (struct ctlconn *c = a->ctls; c; c = c->next)
        ctl_close(c);
    uv_close((uv_handle_t *)&a->zds_poll, agent_on_closed);
    uv_close((uv_handle_t *)&a->ctl_poll, agent_on_closed);
    close(a->zds_fd);
    close(a->ctl_fd);
    unlink(a->uds_path);
    unlink(a->ctl_path);
    for (size_t i = 0; i < a->npods; i++)
        if (a->pods[i].fd >= 0)
            close(a->pods[i].fd);
    a->npods = 0;
    ZT_INFO(SCOPE, "node agent stopped; enrollments and rules left in place");
}
