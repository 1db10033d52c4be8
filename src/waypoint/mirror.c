/* RequestMirror: a copy of a request sent to another service, fire and
 * forget, as Envoy's request_mirror_policies do for Istio's waypoint.
 *
 * A mirror starts at the request's head with the rule's mirror filters
 * that hit (zt_route_mirror_hit) and an endpoint of each backend. The
 * head is copied at once (authority with Envoy's "-shadow" suffix,
 * framing and hop-by-hop fields out, `connection: close` in) and the body
 * is buffered up to WP_MIRROR_BODY_MAX; a longer body abandons the mirror
 * before anything was sent, so the client's exchange never waits for it.
 * At the request's end each target gets its own copy: an HBONE stream to
 * the endpoint (the pod's pool, as the main request), the request with a
 * Content-Length, its response parsed to its end and discarded. A request
 * that came as HTTP/2 (h2c, gRPC) goes as HTTP/2 cleartext instead, the
 * protocol of the service's port: one request of an nghttp2 client
 * session inside the stream (mirror_h2.c), trailers included. A copy
 * that fails, or has not finished after WP_MIRROR_TIMEOUT_MS, is dropped;
 * nothing of it reaches the client, the metrics or the access log (a
 * debug line only).
 *
 * Bounds per worker: WP_MIRROR_MAX slots (a buffering mirror takes one
 * per target, a copy in flight keeps one), so at most that many bodies of
 * WP_MIRROR_BODY_MAX are held; a request whose mirrors do not fit is not
 * mirrored (counted, logged at debug). Copies hold no drain count: a
 * drain or the pod's end closes them. */
#include "waypoint/waypoint_int.h"
#include "waypoint/mirror.h"
#include "waypoint/mirror_h2.h"
#include "waypoint/stream.h"

#include "base/random.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "http/http1.h"
#include "state/ip.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WP_MIRROR_MAX 64
#define WP_MIRROR_TIMEOUT_MS 10000
#define WP_MIRROR_TARGETS 16 /* mirror filters of one rule (the CRD's cap) */

/* Per worker (w->mirrors, made on first use). */
struct wp_mirrors {
    struct zt_list live; /* of wp_mirror_copy */
    struct zt_list dead; /* ended, freed by wp_mirrors_reap */
    unsigned used;       /* slots taken */
    uint64_t skipped;    /* requests not mirrored for want of a slot */
};

struct wp_mirror_target {
    const struct zt_service *svc;
    const struct zt_workload *wl;
    uint16_t port;     /* the endpoint's target port */
    uint16_t svc_port; /* the service's, as dialed */
};

/* One request's mirror while its body arrives. */
struct wp_mirror {
    struct wp_worker *w;
    struct zt_pod_inst *pod;
    const struct zt_state *snap; /* referenced: the targets point into it */
    struct zt_buf head;          /* HTTP/1.1: encoded, without the framing and the empty line */
    struct zt_http_head h2req;   /* HTTP/2: the head to send */
    struct zt_http_head trailers;
    struct zt_buf body;
    struct wp_mirror_target t[WP_MIRROR_TARGETS];
    size_t n;
    char path[128]; /* for the debug line */
    bool is_head;   /* a response to HEAD has no body */
    bool is_h2;
};

/* One copy on its way to one endpoint. */
struct wp_mirror_copy {
    struct wp_worker *w;
    struct zt_pod_inst *pod;
    struct zt_list_node link; /* in live, then dead */
    struct wp_stream up;
    struct zt_hbone_waiter waiter;
    bool is_waiting, is_ended;
    const struct zt_state *snap;
    const struct zt_service *svc;
    const struct zt_workload *wl;
    uint16_t port, svc_port;
    struct sockaddr_storage hbone;
    char status[4]; /* of the discarded response, "" until seen */
    char path[128];
    /* The response is parsed only to know where it ends (a server that
     * keeps the connection open despite `connection: close`). */
    struct zt_http1_parser *resp_p;
    bool is_resp_done;
    struct wp_mirror_h2 *h2; /* instead of resp_p for an HTTP/2 copy */
    uint64_t start_ms;
};

static struct wp_mirrors *mirrors(struct wp_worker *w)
{
    if (!w->mirrors) {
        w->mirrors = zt_xcalloc(1, sizeof(*w->mirrors));
        zt_list_init(&w->mirrors->live);
        zt_list_init(&w->mirrors->dead);
    }
    return w->mirrors;
}

int wp_mirror_shadow_host(const char *host, char *out, size_t cap)
{
    /* Envoy's shadowAppendedHost: before the port, if any ("a:80" gives
     * "a-shadow:80"); an IPv6 literal's port follows its ']'. */
    const char *end = host[0] == '[' ? strchr(host, ']') : host;
    const char *colon = end ? strrchr(end, ':') : NULL;
    size_t name = colon ? (size_t)(colon - host) : strlen(host);
    int n = snprintf(out, cap, "%.*s-shadow%s", (int)name, host, colon ? colon : "");
    return n < 0 || (size_t)n >= cap ? ZT_E_TOO_BIG : 0;
}

/* The head of the copy (h, initialized): req as forwarded, with the
 * shadow authority and neither framing nor connection fields. */
static int shadow_head(const struct zt_http_head *req, struct zt_http_head *h)
{
    char host[512];
    int rc = 0;
    if (req->authority) {
        rc = wp_mirror_shadow_host(req->authority, host, sizeof(host));
        if (rc == 0)
            rc = zt_http_head_set_part(h, &h->authority, host, strlen(host));
    }
    if (rc == 0)
        rc = zt_http_head_set_part(h, &h->method, req->method, strlen(req->method));
    if (rc == 0)
        rc = zt_http_head_set_part(h, &h->path, req->path, strlen(req->path));
    if (rc == 0 && req->scheme)
        rc = zt_http_head_set_part(h, &h->scheme, req->scheme, strlen(req->scheme));
    for (size_t i = 0; rc == 0 && i < req->n_fields; i++) {
        const struct zt_http_field *f = &req->fields[i];
        if (strcmp(f->name, "content-length") && strcmp(f->name, "transfer-encoding") &&
            strcmp(f->name, "connection"))
            rc = zt_http_head_add(h, f->name, strlen(f->name), f->value, strlen(f->value));
    }
    return rc;
}

/* HTTP/1.1: the shadow head encoded; `connection: close` ends the
 * exchange with the response, so the stream ends with it. */
static int encode_head(const struct zt_http_head *req, struct zt_buf *out)
{
    struct zt_http_head h;
    zt_http_head_init(&h, false);
    int rc = shadow_head(req, &h);
    if (rc == 0)
        rc = zt_http_head_add(&h, "connection", 10, "close", 5);
    if (rc == 0)
        rc = zt_http1_encode_head(&h, out);
    if (rc == 0)
        out->len -= 2; /* the empty line: Content-Length goes before it */
    zt_http_head_cleanup(&h);
    return rc;
}

static struct wp_mirror *begin(struct wp_worker *w, struct zt_pod_inst *pod,
                               const struct zt_state *snap, const struct zt_route_filters *f,
                               uint16_t svc_port, const struct zt_http_head *req, bool is_h2)
{
    struct wp_mirror_target t[WP_MIRROR_TARGETS];
    size_t n = 0;
    if (!f || w->draining)
        return NULL;
    for (size_t i = 0; i < f->n_mirrors && n < WP_MIRROR_TARGETS; i++) {
        const struct zt_route_mirror *m = &f->mirrors[i];
        if (m->backend.invalid || !zt_route_mirror_hit(m, zt_random_u32()))
            continue;
        const struct zt_service *svc = wp_backend_service(w, snap, m->backend.ns, m->backend.name);
        uint16_t port = m->backend.port ? m->backend.port : svc_port;
        if (!svc || zt_state_pick_endpoint(snap, svc, port, zt_l7_self(pod), zt_random_u32(),
                                           &t[n].wl, &t[n].port) < 0) {
            ZT_DEBUG("waypoint", "mirror to %s/%s skipped: no endpoint", m->backend.ns,
                     m->backend.name);
            continue;
        }
        t[n].svc_port = port;
        t[n++].svc = svc;
    }
    if (n == 0)
        return NULL;
    struct wp_mirrors *ms = mirrors(w);
    if (ms->used + n > WP_MIRROR_MAX) {
        ms->skipped++;
        ZT_DEBUG("waypoint", "mirror skipped: %u in flight (%" PRIu64 " skipped so far)", ms->used,
                 ms->skipped);
        return NULL;
    }
    struct wp_mirror *m = zt_xcalloc(1, sizeof(*m));
    zt_http_head_init(&m->h2req, false);
    zt_http_head_init(&m->trailers, false);
    if ((is_h2 ? shadow_head(req, &m->h2req) : encode_head(req, &m->head)) < 0) {
        ZT_DEBUG("waypoint", "mirror skipped: the shadow head cannot be encoded");
        zt_buf_release(&m->head);
        zt_http_head_cleanup(&m->h2req);
        free(m);
        return NULL;
    }
    m->is_h2 = is_h2;
    snprintf(m->path, sizeof(m->path), "%s", req->path);
    m->is_head = strcmp(req->method, "HEAD") == 0;
    m->w = w;
    m->pod = pod;
    m->snap = snap;
    zt_state_ref(snap);
    memcpy(m->t, t, n * sizeof(t[0]));
    m->n = n;
    ms->used += (unsigned)n;
    return m;
}

struct wp_mirror *wp_mirror_begin(struct wp_worker *w, struct zt_pod_inst *pod,
                                  const struct zt_state *snap, const struct zt_route_filters *f,
                                  uint16_t svc_port, const struct zt_http_head *req)
{
    return begin(w, pod, snap, f, svc_port, req, false);
}

struct wp_mirror *wp_mirror_begin_h2(struct wp_worker *w, struct zt_pod_inst *pod,
                                     const struct zt_state *snap, const struct zt_route_filters *f,
                                     uint16_t svc_port, const struct zt_http_head *req)
{
    return begin(w, pod, snap, f, svc_port, req, true);
}

void wp_mirror_abandon(struct wp_mirror **mp)
{
    struct wp_mirror *m = *mp;
    if (!m)
        return;
    *mp = NULL;
    m->w->mirrors->used -= (unsigned)m->n;
    zt_buf_release(&m->head);
    zt_http_head_cleanup(&m->h2req);
    zt_http_head_cleanup(&m->trailers);
    zt_buf_release(&m->body);
    zt_state_unref(m->snap);
    free(m);
}

void wp_mirror_body(struct wp_mirror **mp, const void *data, size_t len)
{
    struct wp_mirror *m = *mp;
    if (!m)
        return;
    if (m->body.len + len > WP_MIRROR_BODY_MAX) {
        ZT_DEBUG("waypoint", "mirror abandoned: the body passes %d bytes", WP_MIRROR_BODY_MAX);
        wp_mirror_abandon(mp);
        return;
    }
    zt_buf_append(&m->body, data, len);
}

void wp_mirror_trailers(struct wp_mirror **mp, const struct zt_http_head *t)
{
    struct wp_mirror *m = *mp;
    for (size_t i = 0; m && m->is_h2 && i < t->n_fields; i++) {
        const struct zt_http_field *f = &t->fields[i];
        if (zt_http_head_add(&m->trailers, f->name, strlen(f->name), f->value, strlen(f->value)) <
            0) {
            ZT_DEBUG("waypoint", "mirror abandoned: the trailers pass the head's caps");
            wp_mirror_abandon(mp);
            return;
        }
    }
}

/* ---- copies ---- */

/* "ip:port" of the copy's endpoint (its HBONE address, its target port). */
static void endpoint_authority(const struct wp_mirror_copy *c, char *out, size_t cap)
{
    struct zt_ip ip;
    uint16_t p;
    struct sockaddr_storage ss;
    out[0] = '\0';
    if (zt_ip_from_sockaddr((const struct sockaddr *)&c->hbone, &ip, &p) == 0) {
        zt_ip_to_sockaddr(&ip, c->port, &ss);
        zt_hbone_format_authority((struct sockaddr *)&ss, out, cap);
    }
}

/* The copy is done (error NULL: its response ended): a debug line, and
 * the reaper frees it. Once only: later calls do nothing. */
static void copy_end(struct wp_mirror_copy *c, const char *error)
{
    if (c->is_ended)
        return;
    c->is_ended = true;
    if (c->is_waiting)
        zt_l7_upstream_cancel(&c->waiter);
    c->is_waiting = false;
    wp_stream_detach(&c->up);
    if (c->h2 && wp_mirror_h2_status(c->h2))
        snprintf(c->status, sizeof(c->status), "%d", wp_mirror_h2_status(c->h2));
    if (zt_log_enabled(ZT_LOG_DEBUG)) {
        char up[64], dur[32], rb[32];
        endpoint_authority(c, up, sizeof(up));
        snprintf(dur, sizeof(dur), "%" PRIu64 "ms", uv_now(c->w->loop) - c->start_ms);
        snprintf(rb, sizeof(rb), "%" PRIu64, c->up.rx);
        const char *kv[] = {
            "dst.service",  c->svc->hostname,
            "dst.workload", c->wl->name,
            "upstream",     up,
            "path",         c->path,
            "status",       c->status,
            "resp_bytes",   rb,
            "duration",     dur,
            "error",        error,
        };
        zt_log_kv(ZT_LOG_DEBUG, "waypoint", "mirror complete", kv, sizeof(kv) / sizeof(kv[0]) / 2);
    }
    c->w->mirrors->used--;
    zt_list_remove(&c->link);
    zt_list_insert_head(&c->w->mirrors->dead, &c->link);
}

static void copy_on_response(struct wp_stream *s, int status)
{
    if (status != 200)
        copy_end(s->owner, "upstream HBONE refused the stream");
}

static void resp_on_head(void *ud, struct zt_http_head *resp, const struct zt_http1_framing *f)
{
    struct wp_mirror_copy *c = ud;
    if (!f->is_interim)
        snprintf(c->status, sizeof(c->status), "%d", resp->status);
}

static void resp_on_body(void *ud, const uint8_t *data, size_t len)
{
}

static void resp_on_message_end(void *ud, struct zt_http_head *trailers)
{
    struct wp_mirror_copy *c = ud;
    c->is_resp_done = true;
}

static const struct zt_http1_ops resp_ops = {
    .on_head = resp_on_head,
    .on_body = resp_on_body,
    .on_message_end = resp_on_message_end,
};

/* HTTP/2: the session's output into the stream; the copy ends with the
 * response's end or the session's failure. */
static void copy_h2_pump(struct wp_mirror_copy *c)
{
    const uint8_t *p;
    ssize_t n;
    while ((n = wp_mirror_h2_send(c->h2, &p)) > 0)
        wp_stream_queue(&c->up, p, (size_t)n);
    enum wp_mirror_h2_state st = wp_mirror_h2_state(c->h2);
    if (st == WP_MIRROR_H2_ST_DONE)
        copy_end(c, NULL);
    else if (st == WP_MIRROR_H2_ST_FAILED)
        copy_end(c, wp_mirror_h2_error(c->h2));
    else
        wp_stream_flush(&c->up);
}

/* The response is parsed and dropped; the copy ends with it. */
static void copy_on_data(struct wp_stream *s, const uint8_t *data, size_t len)
{
    struct wp_mirror_copy *c = s->owner;
    if (c->h2) {
        wp_mirror_h2_recv(c->h2, data, len);
        wp_stream_consume(s, len);
        if (!c->is_ended)
            copy_h2_pump(c);
        return;
    }
    size_t used = 0;
    int rc = zt_http1_parse(c->resp_p, data, len, &used);
    wp_stream_consume(s, len);
    if (rc < 0)
        copy_end(c, "bad response");
    else if (c->is_resp_done)
        copy_end(c, NULL);
}

static void copy_on_end(struct wp_stream *s)
{
    struct wp_mirror_copy *c = s->owner;
    if (c->h2)
        copy_end(c, wp_mirror_h2_state(c->h2) == WP_MIRROR_H2_ST_DONE
                        ? NULL
                        : "upstream closed before its response ended");
    else if (!c->is_resp_done && (zt_http1_parse_eof(c->resp_p) < 0 || !c->is_resp_done))
        copy_end(c, "upstream closed before its response ended");
    else
        copy_end(c, NULL);
}

static void copy_on_close(struct wp_stream *s, int error)
{
    copy_end(s->owner, error ? zt_strerror(error) : NULL);
}

static const struct wp_stream_ops copy_ops = {
    .on_response = copy_on_response,
    .on_data = copy_on_data,
    .on_end = copy_on_end,
    .on_close = copy_on_close,
};

static void copy_open(struct wp_mirror_copy *c, struct zt_h2conn *h2)
{
    char authority[WP_AUTHORITY_MAX];
    if (wp_connect_endpoint(&c->up, h2, &c->hbone, c->port, NULL, 0, authority, sizeof(authority)) <
        0)
        copy_end(c, "cannot open an HBONE stream");
}

static void copy_on_pool(struct zt_hbone_waiter *wt, struct zt_h2conn *h2, int err)
{
    struct wp_mirror_copy *c =
        (struct wp_mirror_copy *)((char *)wt - offsetof(struct wp_mirror_copy, waiter));
    c->is_waiting = false;
    if (err < 0 || !h2) {
        copy_end(c, zt_strerror(err < 0 ? err : ZT_E_NOT_FOUND));
        return;
    }
    copy_open(c, h2);
}

/* A copy of the whole request to t: req (HTTP/1.1: head and body,
 * encoded), or an HTTP/2 session of m's head, body and trailers. */
static void copy_start(struct wp_mirror *m, const struct wp_mirror_target *t,
                       const struct zt_buf *req)
{
    struct wp_mirror_copy *c = zt_xcalloc(1, sizeof(*c));
    c->w = m->w;
    c->pod = m->pod;
    c->snap = m->snap;
    zt_state_ref(c->snap);
    c->svc = t->svc;
    c->wl = t->wl;
    c->port = t->port;
    c->svc_port = t->svc_port;
    memcpy(c->path, m->path, sizeof(c->path));
    c->start_ms = uv_now(m->w->loop);
    wp_stream_init(&c->up, &copy_ops, c);
    zt_list_insert_head(&m->w->mirrors->live, &c->link);
    m->w->mirrors->used++;
    if (m->is_h2) {
        if (wp_mirror_h2_new(&m->h2req, zt_buf_head(&m->body), m->body.len, &m->trailers, &c->h2) <
            0) {
            copy_end(c, "HTTP/2 request refused by nghttp2");
            return;
        }
        /* Queued until the stream opens; the session stays open for
         * acks and window updates until the response ends. */
        copy_h2_pump(c);
    } else {
        c->resp_p = zt_http1_parser_new(true, &resp_ops, c);
        zt_http1_parser_expect(c->resp_p, m->is_head ? "HEAD" : "GET", false);
        wp_stream_write(&c->up, zt_buf_head(req), req->len);
        wp_stream_end(&c->up);
    }
    c->waiter.cb = copy_on_pool;
    struct zt_h2conn *ready = NULL;
    int rc = zt_l7_upstream(c->pod, c->wl, c->svc, c->svc_port, &c->waiter, &ready, &c->hbone);
    if (rc < 0)
        copy_end(c, zt_strerror(rc));
    else if (ready)
        copy_open(c, ready);
    else
        c->is_waiting = true;
}

void wp_mirror_end(struct wp_mirror **mp)
{
    struct wp_mirror *m = *mp;
    if (!m)
        return;
    struct zt_buf req = {0};
    if (!m->is_h2) {
        char len[48];
        int n = snprintf(len, sizeof(len), "content-length: %zu\r\n\r\n", m->body.len);
        zt_buf_append(&req, zt_buf_head(&m->head), m->head.len);
        zt_buf_append(&req, len, (size_t)n);
        zt_buf_append(&req, zt_buf_head(&m->body), m->body.len);
    }
    /* The copies take over the slots one by one. */
    size_t k = m->n;
    m->w->mirrors->used -= (unsigned)k;
    m->n = 0;
    for (size_t i = 0; i < k && !m->w->draining; i++)
        copy_start(m, &m->t[i], &req);
    zt_buf_release(&req);
    wp_mirror_abandon(mp);
}

/* ---- the worker's calls ---- */

/* Ends the live copies of pod (NULL: any pod) started at or before
 * `before` (loop time; UINT64_MAX: any), with why. */
static void end_copies(struct wp_worker *w, const struct zt_pod_inst *pod, uint64_t before,
                       const char *why)
{
    if (!w->mirrors)
        return;
    struct zt_list *l = &w->mirrors->live;
    for (struct zt_list_node *n = zt_list_first(l), *next; n; n = next) {
        next = zt_list_next(l, n);
        struct wp_mirror_copy *c = zt_list_entry(n, struct wp_mirror_copy, link);
        if ((!pod || c->pod == pod) && c->start_ms <= before)
            copy_end(c, why);
    }
}

void wp_mirrors_pod_close(struct wp_worker *w, struct zt_pod_inst *pod)
{
    end_copies(w, pod, UINT64_MAX, "waypoint stopped");
}

void wp_mirrors_drain(struct wp_worker *w)
{
    end_copies(w, NULL, UINT64_MAX, "waypoint draining");
}

void wp_mirrors_tick(struct wp_worker *w, uint64_t now)
{
    if (now >= WP_MIRROR_TIMEOUT_MS)
        end_copies(w, NULL, now - WP_MIRROR_TIMEOUT_MS, "mirror timeout");
}

void wp_mirrors_reap(struct wp_worker *w)
{
    if (!w->mirrors)
        return;
    struct zt_list *l = &w->mirrors->dead;
    while (!zt_list_empty(l)) {
        struct wp_mirror_copy *c = zt_list_entry(zt_list_first(l), struct wp_mirror_copy, link);
        zt_list_remove(&c->link);
        wp_stream_cleanup(&c->up);
        zt_http1_parser_free(c->resp_p);
        wp_mirror_h2_free(c->h2);
        zt_state_unref(c->snap);
        free(c);
    }
}

void wp_mirrors_stop(struct wp_worker *w)
{
    if (!w->mirrors)
        return;
    wp_mirrors_drain(w);
    wp_mirrors_reap(w);
    free(w->mirrors);
    w->mirrors = NULL;
}
