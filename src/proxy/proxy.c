/* Workers, pods and listeners. The control thread opens each pod's listeners
 * inside the pod's network namespace (one SO_REUSEPORT socket per worker and
 * port) and posts them to the workers; from then on each worker serves its
 * sockets alone. */
#include "proxy/proxy_int.h"
#include "proxy/l7.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "loop/sock.h"
#include "tls/ctx.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const uint16_t listener_ports[ZT_LS_COUNT] = {15001, 15006, 15008};

static void pod_shared_unref(struct zt_pod_shared *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1) {
        close(s->netns_fd);
        free(s);
    }
}

/* ---- helpers used by the connection code ---- */

const struct zt_workload *zt_pod_self(struct zt_pod_inst *pod)
{
    const struct zt_zds_workload_info *info = &pod->shared->info;
    const char *node = pod->pw->proxy->node[0] ? pod->pw->proxy->node : NULL;
    return zt_state_workload_by_info(pod->pw->state, info->name, info->namespace,
                                     info->service_account[0] ? info->service_account : NULL, node);
}

int zt_pod_identity(struct zt_pod_inst *pod, struct zt_spiffe_id *out)
{
    const struct zt_workload *self = zt_pod_self(pod);
    if (self)
        return zt_spiffe_make(self->trust_domain, self->namespace, self->service_account, out);
    const struct zt_zds_workload_info *info = &pod->shared->info;
    return zt_spiffe_make(pod->pw->proxy->trust_domain, info->namespace,
                          info->service_account[0] ? info->service_account : "default", out);
}

void zt_pod_sock_opts(struct zt_pod_inst *pod, struct zt_sock_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->netns_fd = pod->shared->netns_fd;
    o->mark = pod->pw->proxy->opts.mark;
    o->keepalive = &pod->pw->proxy->opts.keepalive;
    o->connect_timeout_ms = ZT_SOCK_CONNECT_TIMEOUT_MS;
}

/* ---- HBONE pool callbacks (per pod) ---- */

static int pool_dial(void *ud, const struct zt_hbone_key *key)
{
    struct zt_pod_inst *pod = ud;
    struct zt_sock_opts o;
    zt_pod_sock_opts(pod, &o);
    o.connect_timeout_ms = 0; /* the HTTP/2 connection has its own handshake deadline */
    return zt_sock_connect((const struct sockaddr *)&key->dst, NULL, &o, NULL);
}

/* The certificate for a dial arrived (or could not be had): the pool
 * dials now, or fails the streams waiting for it. */
static void on_dial_ident(void *ud, struct zt_ca_identity *ident, int err)
{
    struct zt_hbone_ctx_req *req = ud;
    req->owner_data = NULL;
    zt_hbone_pool_ctx_ready(req, ident ? ident->client_ctx : NULL, err);
    zt_ca_identity_unref(ident);
}

/* The client context presenting key->src_id: at once when its certificate
 * is cached, else the pool waits while the CA is asked (this worker's
 * other connections go on meanwhile). */
static int pool_client_ctx(void *ud, const struct zt_hbone_key *key, struct zt_hbone_ctx_req *req,
                           SSL_CTX **ctx)
{
    struct zt_pod_inst *pod = ud;
    struct zt_spiffe_id id;
    struct zt_ca_identity *ident = NULL;
    struct zt_ca_wait *wait = NULL;
    if (zt_spiffe_parse(key->src_id, strlen(key->src_id), &id) < 0)
        return ZT_E_IDENTITY;
    int rc = zt_ca_mgr_acquire_async(pod->pw->proxy->ca, &id, &pod->pw->worker, on_dial_ident, req,
                                     &ident, &wait);
    if (rc == -EAGAIN) {
        req->owner_data = wait;
        return rc;
    }
    if (rc < 0) {
        ZT_WARN("proxy", "pod %s: no certificate for %s: %s", pod->shared->uid, key->src_id,
                zt_strerror(rc));
        return rc;
    }
    /* The pool borrows the context for the dial: keep it alive. */
    zt_ca_identity_unref(pod->dial_ident);
    pod->dial_ident = ident;
    *ctx = ident->client_ctx;
    return 0;
}

static void pool_ctx_cancel(void *ud, struct zt_hbone_ctx_req *req)
{
    zt_ca_wait_cancel(req->owner_data);
    req->owner_data = NULL;
}

static int pool_verify(void *ud, SSL *ssl, const struct zt_hbone_key *key)
{
    struct zt_spiffe_id expected[ZT_HBONE_KEY_MAX_IDS];
    size_t n = 0;
    const char *p = key->dst_ids;
    while (*p && n < ZT_HBONE_KEY_MAX_IDS) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (zt_spiffe_parse(p, len, &expected[n]) == 0)
            n++;
        p += len + (end ? 1 : 0);
    }
    int rc = zt_tls_verify_server_identity(ssl, expected, n);
    if (rc < 0) {
        struct zt_spiffe_id got;
        char gots[ZT_SPIFFE_ID_MAX + 1] = "none";
        if (zt_tls_peer_identity(ssl, &got) == 0)
            zt_spiffe_format(&got, gots, sizeof(gots));
        ZT_WARN("proxy", "HBONE server identity %s is not one of [%s]", gots, key->dst_ids);
    }
    return rc;
}

static const struct zt_hbone_pool_ops pool_ops = {
    .dial = pool_dial,
    .client_ctx = pool_client_ctx,
    .ctx_cancel = pool_ctx_cancel,
    .verify = pool_verify,
};

/* ---- listeners ---- */

/* Out of descriptors (or memory), a listener stops polling for this long,
 * doubling up to the maximum while accept keeps failing: the connection
 * stays queued and the socket readable, so polling on would spin. */
#define ACCEPT_BACKOFF_MIN_MS 50
#define ACCEPT_BACKOFF_MAX_MS 1000
/* At most one warning per listener this often: near the limit, episodes
 * can start and end with every connection. */
#define ACCEPT_WARN_INTERVAL_MS 10000

static void on_accept(uv_poll_t *h, int status, int events);

static void on_accept_backoff(uv_timer_t *t)
{
    struct zt_listener *l = t->data;
    if (!l->pod->closing && !l->pod->listeners_closed)
        uv_poll_start(&l->poll, UV_READABLE, on_accept);
}

/* Logged once per episode (the episode ends at the next accepted socket),
 * and not again within ACCEPT_WARN_INTERVAL_MS. */
static void pause_accepting(struct zt_listener *l, int err)
{
    uv_poll_stop(&l->poll);
    if (l->backoff_ms == 0) {
        uint64_t now = uv_now(l->backoff.loop);
        l->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
        l->backoff_logged = l->warned_at == 0 || now - l->warned_at >= ACCEPT_WARN_INTERVAL_MS;
        if (l->backoff_logged) {
            l->warned_at = now ? now : 1;
            ZT_WARN("proxy", "pod %s: accept on %u: %s: pausing, retrying every %u to %u ms",
                    l->pod->shared->uid, listener_ports[l->kind], strerror(err),
                    ACCEPT_BACKOFF_MIN_MS, ACCEPT_BACKOFF_MAX_MS);
        }
    } else if (l->backoff_ms < ACCEPT_BACKOFF_MAX_MS) {
        l->backoff_ms =
            2 * l->backoff_ms < ACCEPT_BACKOFF_MAX_MS ? 2 * l->backoff_ms : ACCEPT_BACKOFF_MAX_MS;
    }
    uv_timer_start(&l->backoff, on_accept_backoff, l->backoff_ms, 0);
}

/* ---- spreading accepted connections over the workers ---- */

/* A worker serves what it accepts unless another has fewer of its kind,
 * and then hands the socket over before reading from it. SO_REUSEPORT
 * picks a listener by a hash of the addresses, which spreads many short
 * connections well and a few long ones badly: two share a worker half the
 * time, and that worker carries all their traffic while the other idles
 * (a burst of requests then waits in one queue). HBONE peers are the
 * extreme case: a peer keeps one pooled connection per worker and
 * destination and sends every stream there. An application's few
 * keep-alive or gRPC connections are the other.
 *
 * HBONE connections are counted from the choice (conns_in), so that the
 * connections of one accept burst spread too; application connections
 * from their zt_conn's creation, plus those posted and not yet taken
 * (app_posted). Ties stay where they were accepted. */
struct move {
    struct zt_pw *to;
    struct zt_pod_shared *shared; /* a reference */
    int fd;
    enum zt_listener_kind kind;
};

static enum zt_spread spread_of(enum zt_listener_kind kind)
{
    return kind == ZT_LS_INBOUND_HBONE ? ZT_SPREAD_HBONE : ZT_SPREAD_APP;
}

static unsigned load_of(struct zt_pw *pw, enum zt_spread sp)
{
    unsigned n = atomic_load_explicit(&pw->conns_in[sp], memory_order_relaxed);
    if (sp == ZT_SPREAD_APP)
        n += atomic_load_explicit(&pw->app_posted, memory_order_relaxed);
    return n;
}

static struct zt_pw *place(struct zt_pw *self, enum zt_spread sp)
{
    struct zt_proxy *p = self->proxy;
    struct zt_pw *best = self;
    unsigned best_n = load_of(self, sp);
    for (unsigned i = 0; i < p->nworkers && best_n > 0; i++) {
        unsigned n = load_of(&p->pws[i], sp);
        if (n < best_n) {
            best = &p->pws[i];
            best_n = n;
        }
    }
    return best;
}

/* Counts a socket of kind on pw until it is served or closed. */
static void count_placed(struct zt_pw *pw, enum zt_listener_kind kind, int delta)
{
    if (kind == ZT_LS_INBOUND_HBONE)
        atomic_fetch_add_explicit(&pw->conns_in[ZT_SPREAD_HBONE], (unsigned)delta,
                                  memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&pw->app_posted, (unsigned)delta, memory_order_relaxed);
}

static void serve(struct zt_pod_inst *pod, int fd, enum zt_listener_kind kind)
{
    switch (kind) {
    case ZT_LS_OUTBOUND:
        zt_outbound_accept(pod, fd);
        break;
    case ZT_LS_INBOUND_PLAIN:
        zt_inbound_plain_accept(pod, fd);
        break;
    default:
        zt_inbound_hbone_accept(pod, fd);
        break;
    }
}

/* On the chosen worker: its instance of the pod serves the socket. A pod
 * removed meanwhile has none, and the socket closes as its listener's
 * queue would have. */
static void task_move(void *arg)
{
    struct move *m = arg;
    struct zt_pod_inst *pod = m->to->pods;
    while (pod && (pod->shared != m->shared || pod->closing))
        pod = pod->next;
    if (m->kind != ZT_LS_INBOUND_HBONE)
        count_placed(m->to, m->kind, -1); /* its zt_conn counts it now */
    if (pod) {
        serve(pod, m->fd, m->kind);
    } else {
        close(m->fd);
        if (m->kind == ZT_LS_INBOUND_HBONE)
            count_placed(m->to, m->kind, -1);
    }
    pod_shared_unref(m->shared);
    free(m);
}

static void accepted(struct zt_pod_inst *pod, int fd, enum zt_listener_kind kind)
{
    struct zt_pw *self = pod->pw, *to = place(self, spread_of(kind));
    if (to != self) {
        struct move *m = zt_xmalloc(sizeof(*m));
        *m = (struct move){.to = to, .shared = pod->shared, .fd = fd, .kind = kind};
        atomic_fetch_add(&pod->shared->refs, 1);
        count_placed(to, kind, 1);
        if (zt_worker_post(&to->worker, task_move, m) == 0) {
            atomic_fetch_add_explicit(&self->proxy->moved[spread_of(kind)], 1,
                                      memory_order_relaxed);
            return;
        }
        /* That worker is stopping: serve it here. */
        count_placed(to, kind, -1);
        pod_shared_unref(m->shared);
        free(m);
    }
    if (kind == ZT_LS_INBOUND_HBONE)
        count_placed(self, kind, 1);
    serve(pod, fd, kind);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    struct zt_listener *l = h->data;
    struct zt_pod_inst *pod = l->pod;
    if (status < 0 || pod->closing || pod->listeners_closed)
        return;
    /* Bounded work per iteration: at most 64 accepts, then yield. */
    for (int i = 0; i < 64 && !pod->closing; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
                pause_accepting(l, err);
            else if (err != EAGAIN && err != EINTR && err != ECONNABORTED)
                ZT_WARN("proxy", "pod %s: accept on %u: %s", pod->shared->uid,
                        listener_ports[l->kind], strerror(err));
            return;
        }
        if (l->backoff_ms) {
            if (l->backoff_logged)
                ZT_INFO("proxy", "pod %s: accepting on %u again", pod->shared->uid,
                        listener_ports[l->kind]);
            l->backoff_ms = 0;
        }
        /* Istio's ztunnel applies KEEPALIVE_* to accepted outbound and
         * plaintext sockets only; HBONE peers have HTTP/2 PINGs. */
        int rc = zt_sock_tune(fd, l->kind == ZT_LS_INBOUND_HBONE ? NULL
                                                                 : &pod->pw->proxy->opts.keepalive);
        if (rc < 0) {
            ZT_WARN("proxy", "pod %s: socket options on %u: %s", pod->shared->uid,
                    listener_ports[l->kind], zt_strerror(rc));
            close(fd);
            continue;
        }
        accepted(pod, fd, l->kind);
    }
}

static int open_listener(int netns_fd, uint16_t port, const struct zt_proxy_opts *opts)
{
    struct zt_sock_opts o = {
        .netns_fd = netns_fd, .mark = opts->mark, .reuseport = opts->reuseport};
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (opts->ipv4_only)
        return zt_sock_listen((struct sockaddr *)&a4, sizeof(a4), &o);
    struct sockaddr_in6 a6 = {
        .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT};
    int fd = zt_sock_listen((struct sockaddr *)&a6, sizeof(a6), &o);
    if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL) {
        /* IPv6 disabled in the pod: IPv4 only. */
        fd = zt_sock_listen((struct sockaddr *)&a4, sizeof(a4), &o);
    }
    return fd;
}

/* ---- pod instances (worker side) ---- */

struct pod_task {
    struct zt_pw *pw;
    struct zt_pod_shared *shared;
    int fds[ZT_LS_COUNT];
    int dns_fds[4]; /* UDP then TCP; this worker serves the pod's DNS if n_dns_udp */
    size_t n_dns_udp, n_dns_tcp;
};

static void pod_inst_free(struct zt_pod_inst *pod)
{
    zt_pod_idents_release(pod);
    pod_shared_unref(pod->shared);
    free(pod);
}

void zt_pod_handle_gone(struct zt_pod_inst *pod)
{
    if (--pod->handles_open == 0 && pod->closing)
        pod_inst_free(pod);
}

static void on_pod_handle_closed(uv_handle_t *h)
{
    struct zt_listener *l = h->data;
    close(l->fd);
    zt_pod_handle_gone(l->pod);
}

static void on_backoff_closed(uv_handle_t *h)
{
    struct zt_listener *l = h->data;
    zt_pod_handle_gone(l->pod);
}

/* Stops accepting: the listeners close, connections stay. What the kernel
 * queued on a listener and we did not accept yet is reset, or handed to a
 * sibling SO_REUSEPORT listener of the proxy replacing this one
 * (tcp_migrate_req, see enable_migration). */
static void close_listeners(struct zt_pod_inst *pod)
{
    if (pod->listeners_closed)
        return;
    pod->listeners_closed = true;
    zt_pod_dns_stop(pod);
    for (int k = 0; k < ZT_LS_COUNT; k++) {
        if (pod->ls[k].fd < 0)
            continue;
        uv_close((uv_handle_t *)&pod->ls[k].poll, on_pod_handle_closed);
        uv_close((uv_handle_t *)&pod->ls[k].backoff, on_backoff_closed);
    }
}

static void pod_inst_close(struct zt_pod_inst *pod)
{
    struct zt_pw *pw = pod->pw;
    pod->closing = true;
    if (pod->prev)
        pod->prev->next = pod->next;
    else
        pw->pods = pod->next;
    if (pod->next)
        pod->next->prev = pod->prev;
    const char *why = pw->draining ? "closed at the end of the drain period" : "pod removed";
    if (pw->l7)
        pw->proxy->opts.l7->pod_close(pw->l7, pod);
    while (!zt_list_empty(&pod->conns))
        zt_conn_close(zt_list_entry(zt_list_first(&pod->conns), struct zt_conn, link), why);
    while (!zt_list_empty(&pod->inbounds))
        zt_inbound_close(zt_list_entry(zt_list_first(&pod->inbounds), struct zt_inbound, link));
    zt_outbound_park_drop(pod);
    zt_inbound_park_drop(pod);
    zt_hbone_pool_free(pod->pool);
    pod->pool = NULL;
    zt_ca_identity_unref(pod->dial_ident);
    pod->dial_ident = NULL;
    if (pod->listeners_closed && pod->handles_open == 0)
        pod_inst_free(pod);
    else
        close_listeners(pod);
}

static void task_pod_start(void *arg)
{
    struct pod_task *t = arg;
    struct zt_pw *pw = t->pw;
    const struct zt_proxy_opts *opts = &pw->proxy->opts;
    struct zt_pod_inst *pod = zt_xcalloc(1, sizeof(*pod));
    pod->pw = pw;
    pod->shared = t->shared;
    zt_list_init(&pod->conns);
    zt_list_init(&pod->inbounds);
    for (int k = 0; k < ZT_LS_COUNT; k++) {
        struct zt_listener *l = &pod->ls[k];
        l->pod = pod;
        l->kind = (enum zt_listener_kind)k;
        l->fd = t->fds[k];
        if (l->fd < 0)
            continue;
        uv_poll_init(&pw->worker.loop, &l->poll, l->fd);
        l->poll.data = l;
        uv_poll_start(&l->poll, UV_READABLE, on_accept);
        uv_timer_init(&pw->worker.loop, &l->backoff);
        l->backoff.data = l;
        pod->handles_open += 2;
    }
    pod->pool = zt_hbone_pool_new(&pw->worker.loop, &pool_ops, pod, &opts->client_h2,
                                  opts->pool_max_streams, opts->pool_idle_ms);
    if (t->n_dns_udp + t->n_dns_tcp)
        zt_pod_dns_start(pod, t->dns_fds, t->n_dns_udp, t->n_dns_tcp);
    pod->next = pw->pods;
    if (pw->pods)
        pw->pods->prev = pod;
    pw->pods = pod;
    free(t);
}

static void task_pod_stop(void *arg)
{
    struct pod_task *t = arg;
    for (struct zt_pod_inst *pod = t->pw->pods; pod; pod = pod->next) {
        if (pod->shared == t->shared) {
            pod_inst_close(pod);
            break;
        }
    }
    pod_shared_unref(t->shared); /* the reference carried by the task */
    free(t);
}

struct state_task {
    struct zt_pw *pw;
    const struct zt_state *state;
};

/* Policies may have changed: inbound connections that the new state would
 * refuse are closed now, as Istio's ztunnel does. */
static void reevaluate(struct zt_pw *pw)
{
    for (struct zt_pod_inst *pod = pw->pods; pod; pod = pod->next) {
        const struct zt_workload *self = zt_pod_self(pod);
        if (!self)
            continue;
        for (struct zt_list_node *n = zt_list_first(&pod->conns), *next; n; n = next) {
            next = zt_list_next(&pod->conns, n);
            struct zt_conn *c = zt_list_entry(n, struct zt_conn, link);
            if (c->kind != ZT_CONN_OUTBOUND) {
                char why[256];
                struct zt_authz_conn ac;
                zt_conn_authz(c, &ac);
                if (zt_authz_check(pw->state, self, &ac, why, sizeof(why)) < 0)
                    zt_conn_fail(c, ZT_CLOSE_DENY, "connection closed due to policy change: %s",
                                 why);
            }
        }
    }
}

static void task_set_state(void *arg)
{
    struct state_task *t = arg;
    zt_state_unref(t->pw->state);
    t->pw->state = t->state;
    reevaluate(t->pw);
    zt_outbound_park_retry(t->pw, false);
    zt_inbound_park_retry(t->pw, false);
    free(t);
}

static void task_worker_init(void *arg)
{
    struct zt_pw *pw = arg;
    zt_conn_worker_init(pw);
    zt_outbound_worker_init(pw);
    const struct zt_proxy_opts *o = &pw->proxy->opts;
    if (o->l7)
        pw->l7 = o->l7->worker_start(o->l7_ud, (unsigned)pw->worker.id, &pw->worker.loop);
}

/* Graceful stop on one worker: no new connections, GOAWAY to HBONE
 * clients and servers (streams finish, no new ones open), everything in
 * flight goes on until it ends or the drain deadline passes. */
static void task_drain(void *arg)
{
    struct zt_pw *pw = arg;
    pw->draining = true;
    zt_outbound_park_retry(pw, true);
    zt_inbound_park_retry(pw, true);
    if (pw->l7 && pw->proxy->opts.l7->drain)
        pw->proxy->opts.l7->drain(pw->l7);
    for (struct zt_pod_inst *pod = pw->pods; pod; pod = pod->next) {
        close_listeners(pod);
        /* Outbound HBONE connections say goodbye too (GOAWAY). */
        zt_hbone_pool_drain(pod->pool);
        /* An idle connection closes inside shutdown and frees its entry;
         * one still waiting for its certificate never started: closed. */
        for (struct zt_list_node *n = zt_list_first(&pod->inbounds), *next; n; n = next) {
            next = zt_list_next(&pod->inbounds, n);
            struct zt_inbound *in = zt_list_entry(n, struct zt_inbound, link);
            if (in->h2)
                zt_h2conn_shutdown(in->h2);
            else
                zt_inbound_close(in);
        }
    }
}

static void task_shutdown(void *arg)
{
    struct zt_pw *pw = arg;
    while (pw->pods)
        pod_inst_close(pw->pods);
    if (pw->l7)
        pw->proxy->opts.l7->worker_stop(pw->l7);
    pw->l7 = NULL;
    zt_conn_worker_cleanup(pw);
    zt_outbound_worker_cleanup(pw);
}

/* ---- control-thread API ---- */

struct zt_proxy *zt_proxy_new(uv_loop_t *control, const struct zt_proxy_opts *opts,
                              struct zt_ca_mgr *ca)
{
    struct zt_proxy *p = zt_xcalloc(1, sizeof(*p));
    p->control = control;
    p->opts = *opts;
    p->ca = ca;
    snprintf(p->trust_domain, sizeof(p->trust_domain), "%s",
             opts->trust_domain ? opts->trust_domain : "cluster.local");
    snprintf(p->node, sizeof(p->node), "%s", opts->node ? opts->node : "");
    p->opts.trust_domain = p->trust_domain;
    p->opts.node = p->node;
    p->network = zt_xstrdup(opts->network ? opts->network : "");
    p->opts.network = p->network;
    p->nworkers = opts->workers ? opts->workers : 2;
    p->pws = zt_xcalloc(p->nworkers, sizeof(*p->pws));
    return p;
}

int zt_proxy_start(struct zt_proxy *p)
{
    for (unsigned i = 0; i < p->nworkers; i++) {
        p->pws[i].proxy = p;
        p->pws[i].state = zt_state_new_empty();
        int rc = zt_worker_start(&p->pws[i].worker, (int)i, &p->pws[i]);
        if (rc < 0)
            return rc;
        zt_worker_post(&p->pws[i].worker, task_worker_init, &p->pws[i]);
    }
    return 0;
}

void zt_proxy_set_state(struct zt_proxy *p, const struct zt_state *state)
{
    /* The policy index is built here, on the control thread, rather than
     * by the first connection a worker checks against the new snapshot
     * (with 10 000 policies that is a fraction of a second). */
    zt_authz_prepare(state);
    for (unsigned i = 0; i < p->nworkers; i++) {
        struct state_task *t = zt_xmalloc(sizeof(*t));
        t->pw = &p->pws[i];
        t->state = zt_state_ref(state);
        if (zt_worker_post(&p->pws[i].worker, task_set_state, t) < 0) {
            zt_state_unref(t->state);
            free(t);
        }
    }
}

static int find_pod(const struct zt_proxy *p, const char *uid)
{
    for (unsigned i = 0; i < p->npods; i++)
        if (strcmp(p->pods[i]->uid, uid) == 0)
            return (int)i;
    return -1;
}

/* With SO_REUSEPORT, a proxy replacing this one (an upgrade) listens on the
 * same ports of the pod. When this one then closes its listeners, Linux
 * resets the connections queued on them (handshake done, not yet accepted)
 * unless net.ipv4.tcp_migrate_req (5.14+) is on in the pod's namespace: then
 * it moves them to a listener left in the group. Only SO_REUSEPORT groups
 * are affected, so the pod's own sockets keep their behaviour unless the
 * application shares ports that way itself, where migrating is the better
 * behaviour too. Best effort: without it, an upgrade may reset the few
 * connections that arrive in the instant a listener closes. */
static void enable_migration(struct zt_proxy *p, const char *uid, int netns_fd)
{
    int rc = zt_sock_netns_sysctl_set(netns_fd, "/proc/sys/net/ipv4/tcp_migrate_req", "1");
    if (rc < 0 && !p->is_migrate_warned) {
        p->is_migrate_warned = true;
        ZT_WARN("proxy",
                "pod %s: cannot turn on net.ipv4.tcp_migrate_req in the pod: %s; during an "
                "upgrade, connections queued on the old proxy's listeners may be reset "
                "(logged once)",
                uid, zt_strerror(rc));
    }
}

int zt_proxy_pod_add(struct zt_proxy *p, const char *uid, int netns_fd,
                     const struct zt_zds_workload_info *info)
{
    if (strlen(uid) >= sizeof(((struct zt_pod_shared *)0)->uid))
        return ZT_E_TOO_BIG;
    if (find_pod(p, uid) >= 0)
        zt_proxy_pod_del(p, uid);
    /* A waypoint (l7) serves its own namespace and is replaced by its
     * deployment, never beside itself. */
    if (p->opts.reuseport && !p->opts.l7)
        enable_migration(p, uid, netns_fd);
    int *fds = zt_xmalloc(sizeof(int) * ZT_LS_COUNT * p->nworkers);
    int rc = 0;
    unsigned made = 0;
    for (unsigned w = 0; w < p->nworkers; w++) {
        for (int k = 0; k < ZT_LS_COUNT; k++) {
            if (p->opts.l7 && k != ZT_LS_INBOUND_HBONE) {
                fds[made++] = -1;
                continue;
            }
            int fd = open_listener(netns_fd, listener_ports[k], &p->opts);
            if (fd < 0) {
                rc = fd;
                ZT_WARN("proxy", "pod %s: cannot listen on %u: %s", uid, listener_ports[k],
                        zt_strerror(fd));
                goto fail;
            }
            fds[made++] = fd;
        }
    }
    int dns_fds[4];
    size_t n_dns_udp = 0, n_dns_tcp = 0;
    if (p->opts.dns_enabled &&
        (rc = zt_pod_dns_open(&p->opts, netns_fd, dns_fds, &n_dns_udp, &n_dns_tcp)) < 0) {
        ZT_WARN("proxy", "pod %s: cannot listen for DNS on 15053: %s", uid, zt_strerror(rc));
        goto fail;
    }
    /* One worker serves a pod's DNS: queries are few and light, and one
     * set of sockets per pod instead of one per worker saves descriptors. */
    unsigned dns_worker = p->next_dns_worker++ % p->nworkers;
    struct zt_pod_shared *s = zt_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, p->nworkers + 1); /* workers + registry */
    s->netns_fd = netns_fd;
    snprintf(s->uid, sizeof(s->uid), "%s", uid);
    s->info = *info;
    for (unsigned w = 0; w < p->nworkers; w++) {
        struct pod_task *t = zt_xcalloc(1, sizeof(*t));
        t->pw = &p->pws[w];
        t->shared = s;
        memcpy(t->fds, fds + w * ZT_LS_COUNT, sizeof(t->fds));
        if (w == dns_worker) {
            memcpy(t->dns_fds, dns_fds, sizeof(dns_fds));
            t->n_dns_udp = n_dns_udp;
            t->n_dns_tcp = n_dns_tcp;
        }
        if (zt_worker_post(&p->pws[w].worker, task_pod_start, t) < 0) {
            for (int k = 0; k < ZT_LS_COUNT; k++)
                if (t->fds[k] >= 0)
                    close(t->fds[k]);
            for (size_t k = 0; k < t->n_dns_udp + t->n_dns_tcp; k++)
                close(t->dns_fds[k]);
            pod_shared_unref(s);
            free(t);
        }
    }
    if (p->npods == p->cap_pods) {
        p->cap_pods = p->cap_pods ? p->cap_pods * 2 : 16;
        p->pods = zt_xrealloc(p->pods, sizeof(*p->pods) * p->cap_pods);
    }
    p->pods[p->npods++] = s;
    free(fds);
    ZT_INFO("proxy", "pod %s (%s/%s) added: listening on %s%s", uid, info->namespace, info->name,
            p->opts.l7 ? "15008" : "15001, 15006, 15008", n_dns_udp ? ", DNS on 15053" : "");
    return 0;
fail:
    for (unsigned i = 0; i < made; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    return rc;
}

void zt_proxy_pod_del(struct zt_proxy *p, const char *uid)
{
    int i = find_pod(p, uid);
    if (i < 0)
        return;
    struct zt_pod_shared *s = p->pods[i];
    p->pods[i] = p->pods[--p->npods];
    for (unsigned w = 0; w < p->nworkers; w++) {
        struct pod_task *t = zt_xcalloc(1, sizeof(*t));
        t->pw = &p->pws[w];
        t->shared = s;
        atomic_fetch_add(&s->refs, 1);
        if (zt_worker_post(&p->pws[w].worker, task_pod_stop, t) < 0) {
            pod_shared_unref(s);
            free(t);
        }
    }
    pod_shared_unref(s); /* the registry's reference */
    ZT_INFO("proxy", "pod %s removed", uid);
}

void zt_proxy_render_metrics(struct zt_proxy *p, struct zt_buf *out)
{
    static const char *const names[ZT_SPREAD_COUNT] = {"app", "hbone"};
    zt_metrics_put_family_header(out, "ztunnel_worker_connections",
                                 "Connections each worker thread serves, by listener: hbone "
                                 "(15008), app (15001 and 15006).",
                                 "gauge");
    for (unsigned i = 0; i < p->nworkers; i++) {
        for (int k = 0; k < ZT_SPREAD_COUNT; k++) {
            char labels[64];
            snprintf(labels, sizeof(labels), "{worker=\"%u\",listener=\"%s\"}", i, names[k]);
            zt_metrics_put_u64(out, "ztunnel_worker_connections", labels,
                               atomic_load_explicit(&p->pws[i].conns_in[k], memory_order_relaxed));
        }
    }
    zt_metrics_put_family_header(out, "ztunnel_worker_connections_moved_total",
                                 "Connections accepted by one worker thread and served by "
                                 "another, which had fewer.",
                                 "counter");
    for (int k = 0; k < ZT_SPREAD_COUNT; k++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "{listener=\"%s\"}", names[k]);
        zt_metrics_put_u64(out, "ztunnel_worker_connections_moved_total", labels,
                           atomic_load_explicit(&p->moved[k], memory_order_relaxed));
    }
}

static void on_drain_check(uv_timer_t *t)
{
    struct zt_proxy *p = t->data;
    unsigned live = 0;
    for (unsigned i = 0; i < p->nworkers; i++)
        live += atomic_load_explicit(&p->pws[i].live, memory_order_relaxed);
    bool expired = uv_now(p->control) >= p->drain_deadline;
    if (live > 0 && !expired)
        return;
    uv_timer_stop(t);
    if (live > 0)
        ZT_WARN("proxy", "drain deadline reached with %u connection(s) open: closing them", live);
    else
        ZT_INFO("proxy", "drained: every connection finished");
    if (p->drain_done)
        p->drain_done(p->drain_ud);
}

void zt_proxy_drain(struct zt_proxy *p, uint64_t deadline_ms, void (*done)(void *ud), void *ud)
{
    if (p->drain_timer_init)
        return;
    p->drain_done = done;
    p->drain_ud = ud;
    p->drain_deadline = uv_now(p->control) + deadline_ms;
    for (unsigned i = 0; i < p->nworkers; i++)
        zt_worker_post(&p->pws[i].worker, task_drain, &p->pws[i]);
    uv_timer_init(p->control, &p->drain_timer);
    p->drain_timer.data = p;
    p->drain_timer_init = true;
    uv_timer_start(&p->drain_timer, on_drain_check, 50, 50);
    ZT_INFO("proxy", "draining: listeners closed, waiting up to %llu ms for %u pod(s)",
            (unsigned long long)deadline_ms, p->npods);
}

unsigned zt_proxy_pod_count(const struct zt_proxy *p)
{
    return p->npods;
}

static void on_drain_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void zt_proxy_free(struct zt_proxy *p)
{
    if (!p)
        return;
    for (unsigned i = 0; i < p->nworkers; i++) {
        if (!p->pws[i].proxy)
            continue;
        zt_worker_post(&p->pws[i].worker, task_shutdown, &p->pws[i]);
        zt_worker_stop(&p->pws[i].worker);
        zt_state_unref(p->pws[i].state);
    }
    for (unsigned i = 0; i < p->npods; i++)
        pod_shared_unref(p->pods[i]);
    free(p->pods);
    free(p->pws);
    free(p->network); /* the workers that read it are gone */
    p->network = NULL;
    p->opts.network = NULL;
    if (p->drain_timer_init) {
        /* The handle is freed with p: close it and let the loop finish it. */
        uv_timer_stop(&p->drain_timer);
        p->drain_done = NULL;
        uv_close((uv_handle_t *)&p->drain_timer, on_drain_timer_closed);
        return;
    }
    free(p);
}
