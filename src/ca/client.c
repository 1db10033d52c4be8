/* Istio CA client: CreateCertificate calls from a dedicated thread. The
 * thread owns the connection, the queue, the in-flight list and every
 * request; callers only post new requests and get answers through their
 * callback (the blocking form waits on a condition variable of its own). */
#include "ca/client.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/list.h"
#include "base/log.h"
#include "h2/failover.h"
#include "h2/grpc.h"
#include "loop/sock.h"
#include "loop/worker.h"
#include "proto/ca.pb-c.h"
#include "tls/csr.h"
#include "tls/ctx.h"
#include "tls/roots.h"

#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CA_PATH "/istio.v1.auth.IstioCertificateService/CreateCertificate"
#define MAX_RESPONSE (1u << 20)
/* How often queued and in-flight requests are checked against their deadline. */
#define SWEEP_MS 250

/* One request; belongs to the client thread from task_submit on. */
struct req {
    struct zt_ca_client *c;
    struct zt_spiffe_id id;
    unsigned ttl;
    enum zt_ca_priority prio;
    zt_ca_mint_done_fn *done;
    void *done_ud;
    char *csr;
    EVP_PKEY *key;
    struct zt_grpc_call *call; /* while on the wire */
    uint64_t deadline;         /* uv_now() of the client loop */
    struct zt_buf resp;
    bool got_msg;
    struct zt_list_node link; /* in the queue or the in-flight list */
};

struct zt_ca_client {
    struct zt_worker w;
    struct zt_grpc_target targets[ZT_GRPC_TARGETS_MAX];
    size_t n_targets;
    char alt_hostname[sizeof(((struct zt_grpc_target *)0)->host)]; /* "" = each entry's host */
    char *token_path, *cluster_id;
    bool impersonate;
    unsigned timeout_ms;
    uint32_t ping_interval_ms, ping_timeout_ms;
    struct zt_tls_roots *roots; /* CA_ROOT_CA; the client thread re-reads it */
    /* The client thread's own: */
    struct zt_failover fo; /* which address next (h2/failover.h) */
    char authority[sizeof(((struct zt_grpc_target *)0)->authority)]; /* of the connection */
    char verify_host[sizeof(((struct zt_grpc_target *)0)->host)];
    struct zt_h2conn *h2;
    bool h2_ready;
    struct zt_list queue;  /* of req, waiting for a connection or a free slot, by priority */
    struct zt_list flight; /* of req, on the wire */
    unsigned inflight;
    uv_timer_t sweep;
    bool has_sweep;
    bool stopping;
    /* Set by zt_ca_client_free before it posts task_stop: later requests
     * are refused at once, so none is left behind the stop unanswered. */
    atomic_bool closed;
};

/* The first request of l, NULL if none. */
static struct req *first_req(const struct zt_list *l)
{
    return zt_list_entry(zt_list_first(l), struct req, link);
}

/* Queues r behind every request of its priority or higher. */
static void queue_insert(struct zt_ca_client *c, struct req *r)
{
    struct zt_list_node *at = zt_list_first(&c->queue);
    while (at && zt_list_entry(at, struct req, link)->prio >= r->prio)
        at = zt_list_next(&c->queue, at);
    zt_list_insert_before(at ? at : &c->queue.head, &r->link);
}

static void req_free(struct req *r)
{
    EVP_PKEY_free(r->key);
    free(r->csr);
    zt_buf_release(&r->resp);
    free(r);
}

/* Client thread: answers the caller and frees r (already unlinked). */
static void complete(struct req *r, int rc, struct zt_tls_cert *cert)
{
    r->done(r->done_ud, rc, cert);
    req_free(r);
}

static void fail_queue(struct zt_ca_client *c, int rc)
{
    struct req *r;
    while ((r = first_req(&c->queue)) != NULL) {
        zt_list_remove(&r->link);
        complete(r, rc, NULL);
    }
}

static void kick(struct zt_ca_client *c);

/* ---- one CreateCertificate call ---- */

static void on_message(void *ud, const uint8_t *msg, size_t len)
{
    struct req *r = ud;
    if (r->got_msg)
        return; /* unary: the first answer counts */
    r->got_msg = true;
    zt_buf_append(&r->resp, msg, len);
}

static void on_call_close(void *ud, int status, const char *message)
{
    struct req *r = ud;
    struct zt_ca_client *c = r->c;
    char name[ZT_SPIFFE_ID_MAX + 1], err[256] = "";
    zt_spiffe_format(&r->id, name, sizeof(name));
    c->inflight--;
    r->call = NULL; /* freed after this callback */
    zt_list_remove(&r->link);
    int rc;
    struct zt_tls_cert *cert = NULL;
    if (status != ZT_GRPC_OK) {
        ZT_WARN("ca", "certificate for %s refused by %s: gRPC status %d (%s)", name, c->authority,
                status, message ? message : "");
        rc = status == ZT_GRPC_UNAUTHENTICATED || status == ZT_GRPC_PERMISSION_DENIED
                 ? ZT_E_DENIED
                 : ZT_E_UPSTREAM;
        goto out;
    }
    Istio__V1__Auth__IstioCertificateResponse *resp =
        r->got_msg ? istio__v1__auth__istio_certificate_response__unpack(NULL, r->resp.len,
                                                                         zt_buf_head(&r->resp))
                   : NULL;
    if (!resp) {
        ZT_WARN("ca", "certificate for %s: no or undecodable response from %s", name, c->authority);
        rc = ZT_E_PROTO;
        goto out;
    }
    rc = zt_tls_cert_from_ca_response((const char *const *)resp->cert_chain, resp->n_cert_chain,
                                      r->key, &r->id, &cert, err, sizeof(err));
    istio__v1__auth__istio_certificate_response__free_unpacked(resp, NULL);
    if (rc < 0)
        ZT_WARN("ca", "certificate for %s from %s not accepted: %s", name, c->authority, err);
    else
        ZT_INFO("ca", "certificate for %s issued by %s", name, c->authority);
out:
    complete(r, rc, cert);
    kick(c);
}

static const struct zt_grpc_call_ops call_ops = {
    .on_message = on_message,
    .on_close = on_call_close,
};

static void start_call(struct zt_ca_client *c, struct req *r)
{
    char name[ZT_SPIFFE_ID_MAX + 1];
    zt_spiffe_format(&r->id, name, sizeof(name));
    struct zt_grpc_metadata md;
    zt_grpc_metadata_init(&md, c->token_path, c->cluster_id);
    struct zt_grpc_call *call =
        zt_grpc_call_start(c->h2, c->authority, CA_PATH, md.kv, md.n, MAX_RESPONSE, &call_ops, r);
    zt_grpc_metadata_cleanup(&md);
    if (!call) {
        complete(r, ZT_E_UPSTREAM, NULL);
        return;
    }
    c->inflight++;
    r->call = call;
    zt_list_insert_tail(&c->flight, &r->link);
    /* {"ImpersonatedIdentity": "<spiffe id>"} in shared mode. */
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v.string_value = name;
    Google__Protobuf__Struct__FieldsEntry fe = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    fe.key = (char *)"ImpersonatedIdentity";
    fe.value = &v;
    Google__Protobuf__Struct__FieldsEntry *fields[] = {&fe};
    Google__Protobuf__Struct meta = GOOGLE__PROTOBUF__STRUCT__INIT;
    meta.n_fields = 1;
    meta.fields = fields;
    Istio__V1__Auth__IstioCertificateRequest msg = ISTIO__V1__AUTH__ISTIO_CERTIFICATE_REQUEST__INIT;
    msg.csr = r->csr;
    msg.validity_duration = r->ttl;
    if (c->impersonate)
        msg.metadata = &meta;
    size_t len = istio__v1__auth__istio_certificate_request__get_packed_size(&msg);
    uint8_t *buf = zt_xmalloc(len ? len : 1);
    istio__v1__auth__istio_certificate_request__pack(&msg, buf);
    zt_grpc_call_send(call, buf, len);
    zt_grpc_call_close_send(call);
    free(buf);
}

/* ---- the connection ---- */

static int on_conn_ready(struct zt_h2conn *h2, void *ud)
{
    struct zt_ca_client *c = ud;
    c->h2_ready = true;
    zt_failover_succeeded(&c->fo);
    ZT_INFO("ca", "connected to the CA at %s", c->fo.eps[c->fo.cur].name);
    kick(c);
    return 0;
}

static void connect_ca(struct zt_ca_client *c);

/* The connection to the current address failed before it was ready: the next
 * address of the round at once, or, when every address failed in a row,
 * the waiting requests fail (the identity manager retries them with its
 * backoff) and the next connection resolves the names again. */
static void connect_failed(struct zt_ca_client *c, const char *why)
{
    const char *from = c->fo.eps[c->fo.cur].name;
    if (zt_failover_failed(&c->fo)) {
        ZT_WARN("ca", "cannot reach the CA at %s: %s; moving to %s", from, why,
                c->fo.eps[c->fo.next].name);
        /* Nothing waiting (every request timed out meanwhile): the next
         * request connects. */
        if (!zt_list_empty(&c->queue))
            connect_ca(c);
        return;
    }
    ZT_WARN("ca", "cannot reach the CA at %s: %s%s", from, why,
            c->fo.n > 1 ? " (no CA_ADDRESS address left to try)" : "");
    fail_queue(c, ZT_E_UPSTREAM);
}

static void on_conn_closed(struct zt_h2conn *h2, void *ud, int error)
{
    struct zt_ca_client *c = ud;
    bool was_ready = c->h2_ready;
    c->h2 = NULL;
    c->h2_ready = false;
    if (c->stopping)
        return;
    if (!was_ready) {
        connect_failed(c, error == ZT_E_TLS
                              ? "TLS handshake failed (check CA_ROOT_CA and the host name)"
                              : zt_strerror(error));
        return;
    }
    /* A connection that worked is gone (the instance stopped, or did not
     * answer the keepalive PING): the next request opens one to the next
     * address. */
    ZT_WARN("ca", "connection to the CA at %s closed: %s%s%s", c->fo.eps[c->fo.cur].name,
            error ? zt_strerror(error) : "by the server",
            c->fo.n > 1 ? "; next connection to " : "",
            c->fo.n > 1 ? c->fo.eps[c->fo.next].name : "");
    if (!zt_list_empty(&c->queue))
        kick(c);
}

static const struct zt_h2conn_ops conn_ops = {
    .on_ready = on_conn_ready,
    .on_closed = on_conn_closed,
};

/* Resolves every CA_ADDRESS entry (this thread does nothing else: a
 * blocking lookup is fine here). Returns false when no address was
 * found, each reason logged. */
static bool resolve_all(struct zt_ca_client *c)
{
    zt_failover_begin_round(&c->fo);
    for (size_t i = 0; i < c->n_targets; i++) {
        const struct zt_grpc_target *t = &c->targets[i];
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(t->host, t->port, &hints, &res);
        if (rc != 0 || !res) {
            ZT_WARN("ca", "cannot resolve %s: %s", t->host, gai_strerror(rc));
            continue;
        }
        zt_failover_add(&c->fo, (unsigned)i, t, res);
        freeaddrinfo(res);
    }
    return zt_failover_resolved(&c->fo);
}

static void connect_ca(struct zt_ca_client *c)
{
    if (c->fo.need_resolve && !resolve_all(c)) {
        fail_queue(c, ZT_E_UPSTREAM);
        return;
    }
    const struct zt_failover_endpoint *ep =
        zt_failover_pick_target(&c->fo, c->targets, c->alt_hostname, c->authority,
                                sizeof(c->authority), c->verify_host, sizeof(c->verify_host));
    struct zt_sock_opts o = {.netns_fd = -1,
                             .keepalive = &zt_sock_keepalive_control_plane,
                             .connect_timeout_ms = ZT_FAILOVER_CONNECT_TIMEOUT_MS};
    int fd = zt_sock_connect((const struct sockaddr *)&ep->sa, NULL, &o, NULL);
    if (fd < 0) {
        connect_failed(c, zt_strerror(fd));
        return;
    }
    struct zt_h2_settings settings = {.stream_window = 1u << 20,
                                      .connection_window = 4u << 20,
                                      .max_frame_size = 1u << 14,
                                      .max_header_list = 16 * 1024,
                                      .ping_interval_ms = c->ping_interval_ms,
                                      .ping_timeout_ms = c->ping_timeout_ms};
    /* Each new connection takes the roots as the file has them now. */
    char why[400];
    int rrc = zt_tls_roots_refresh(c->roots, why, sizeof(why));
    if (rrc > 0)
        ZT_INFO("ca", "root certificates reloaded from %s", zt_tls_roots_path(c->roots));
    else if (rrc < 0)
        ZT_WARN("ca", "CA_ROOT_CA: %s; the roots loaded before stay in use", why);
    c->h2 = zt_h2conn_new(&c->w.loop, fd, zt_tls_roots_ctx(c->roots), ZT_H2_CLIENT, &settings,
                          &conn_ops, c);
    if (!c->h2) {
        connect_failed(c, "cannot create the connection");
        return;
    }
    if (zt_tls_expect_host(zt_h2conn_ssl(c->h2), c->verify_host) < 0)
        zt_h2conn_close(c->h2, ZT_E_TLS);
}

/* Starts what the connection and the in-flight cap allow. */
static void kick(struct zt_ca_client *c)
{
    if (c->stopping || zt_list_empty(&c->queue))
        return;
    if (!c->h2) {
        connect_ca(c);
        return;
    }
    if (!c->h2_ready || zt_h2conn_state(c->h2) != ZT_H2_ST_OPEN)
        return;
    while (!zt_list_empty(&c->queue) && c->inflight < ZT_CA_CLIENT_MAX_INFLIGHT) {
        struct req *r = first_req(&c->queue);
        zt_list_remove(&r->link);
        start_call(c, r);
    }
}

/* Answers every request whose deadline passed; one on the wire is
 * cancelled (its stream reset), which frees a slot for the next. */
static void on_sweep(uv_timer_t *t)
{
    struct zt_ca_client *c = t->data;
    uint64_t now = uv_now(&c->w.loop);
    bool freed = false;
    for (int pass = 0; pass < 2; pass++) {
        struct zt_list *l = pass == 0 ? &c->flight : &c->queue;
        for (struct zt_list_node *n = zt_list_first(l), *nx; n; n = nx) {
            nx = zt_list_next(l, n);
            struct req *r = zt_list_entry(n, struct req, link);
            if (now >= r->deadline) {
                char name[ZT_SPIFFE_ID_MAX + 1];
                zt_spiffe_format(&r->id, name, sizeof(name));
                ZT_WARN("ca", "certificate for %s: no answer from %s within %u ms%s", name,
                        c->authority, c->timeout_ms, pass == 0 ? "" : " (never sent)");
                zt_list_remove(&r->link);
                if (r->call) {
                    zt_grpc_call_cancel(r->call);
                    r->call = NULL;
                    c->inflight--;
                    freed = true;
                }
                complete(r, ZT_E_TIMEOUT, NULL);
            }
        }
    }
    /* An instance that takes a request and never answers may hang: the
     * next requests go to the next address rather than wait behind it. */
    if (freed && c->h2) {
        ZT_WARN("ca", "leaving the CA at %s, which did not answer in time",
                c->fo.eps[c->fo.cur].name);
        zt_h2conn_close(c->h2, ZT_E_TIMEOUT);
    }
    if (freed)
        kick(c);
}

static void task_submit(void *arg)
{
    struct req *r = arg;
    struct zt_ca_client *c = r->c;
    if (c->stopping) {
        complete(r, ZT_E_CLOSED, NULL);
        return;
    }
    /* Key and CSR here, off the caller's loop. */
    int rc = zt_tls_csr_new(&r->id, &r->key, &r->csr);
    if (rc < 0) {
        complete(r, rc, NULL);
        return;
    }
    if (!c->has_sweep) {
        uv_timer_init(&c->w.loop, &c->sweep);
        c->sweep.data = c;
        uv_timer_start(&c->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
        c->has_sweep = true;
    }
    r->deadline = uv_now(&c->w.loop) + c->timeout_ms;
    queue_insert(c, r);
    kick(c);
}

static void task_stop(void *arg)
{
    struct zt_ca_client *c = arg;
    c->stopping = true;
    fail_queue(c, ZT_E_CLOSED);
    if (c->h2)
        zt_h2conn_close(c->h2, ZT_E_CLOSED); /* in-flight calls end as UNAVAILABLE */
    /* Whatever is still listed (a connection that closes later) ends now. */
    struct req *r;
    while ((r = first_req(&c->flight)) != NULL) {
        zt_list_remove(&r->link);
        if (r->call)
            zt_grpc_call_cancel(r->call);
        r->call = NULL;
        c->inflight--;
        complete(r, ZT_E_CLOSED, NULL);
    }
}

/* ---- public API ---- */

int zt_ca_client_mint_async(void *client, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                            enum zt_ca_priority prio, zt_ca_mint_done_fn *done, void *done_ud)
{
    struct zt_ca_client *c = client;
    if (atomic_load(&c->closed))
        return ZT_E_CLOSED;
    struct req *r = zt_xcalloc(1, sizeof(*r));
    r->c = c;
    r->id = *id;
    r->ttl = ttl_seconds;
    r->prio = prio;
    r->done = done;
    r->done_ud = done_ud;
    if (zt_worker_post(&c->w, task_submit, r) < 0) {
        req_free(r);
        return ZT_E_CLOSED;
    }
    return 0;
}

/* The blocking form: a private rendezvous on the caller's stack. The
 * client answers every request (timeout, stop), so the wait ends. */
struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    struct zt_tls_cert *cert;
};

static void on_sync_done(void *ud, int rc, struct zt_tls_cert *cert)
{
    struct sync_wait *s = ud;
    pthread_mutex_lock(&s->mu);
    s->rc = rc;
    s->cert = cert;
    s->done = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int zt_ca_client_mint(void *client, const struct zt_spiffe_id *id, unsigned ttl_seconds,
                      struct zt_tls_cert **out)
{
    struct sync_wait s = {.done = false};
    *out = NULL;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    int rc = zt_ca_client_mint_async(client, id, ttl_seconds, ZT_CA_PRIO_LIVE, on_sync_done, &s);
    if (rc == 0) {
        pthread_mutex_lock(&s.mu);
        while (!s.done)
            pthread_cond_wait(&s.cv, &s.mu);
        pthread_mutex_unlock(&s.mu);
        rc = s.rc;
        *out = s.cert;
    }
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    return rc;
}

static int parse_address(struct zt_ca_client *c, const char *address, char *err, size_t errlen)
{
    return zt_grpc_parse_targets("CA_ADDRESS", address, c->targets, &c->n_targets, err, errlen);
}

int zt_ca_client_new(const struct zt_ca_client_opts *opts, struct zt_ca_client **out, char *err,
                     size_t errlen)
{
    struct zt_ca_client *c = zt_xcalloc(1, sizeof(*c));
    atomic_init(&c->closed, false);
    zt_list_init(&c->queue);
    zt_list_init(&c->flight);
    if (parse_address(c, opts->address, err, errlen) < 0) {
        free(c);
        return ZT_E_CONFIG;
    }
    if (zt_tls_roots_new(opts->root_ca, &c->roots, err, errlen) < 0) {
        free(c);
        return ZT_E_CONFIG;
    }
    snprintf(c->alt_hostname, sizeof(c->alt_hostname), "%s",
             opts->alt_hostname ? opts->alt_hostname : "");
    c->ping_interval_ms = opts->ping_interval_ms ? opts->ping_interval_ms : 30000;
    c->ping_timeout_ms = opts->ping_timeout_ms ? opts->ping_timeout_ms : 10000;
    zt_failover_init(&c->fo);
    c->token_path = opts->token_path ? strdup(opts->token_path) : NULL;
    c->cluster_id = strdup(opts->cluster_id ? opts->cluster_id : "Kubernetes");
    c->impersonate = opts->impersonate;
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 10000;
    int rc = zt_worker_start(&c->w, -1, c);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start the CA client thread: %s", zt_strerror(rc));
        zt_tls_roots_free(c->roots);
        free(c->token_path);
        free(c->cluster_id);
        free(c);
        return ZT_E_CONFIG;
    }
    *out = c;
    return 0;
}

void zt_ca_client_free(struct zt_ca_client *c)
{
    if (!c)
        return;
    atomic_store(&c->closed, true);
    zt_worker_post(&c->w, task_stop, c);
    zt_worker_stop(&c->w);
    /* task_stop answered every request; tasks posted after it found the
     * worker stopping and were refused. */
    zt_tls_roots_free(c->roots);
    free(c->token_path);
    free(c->cluster_id);
    free(c);
}
