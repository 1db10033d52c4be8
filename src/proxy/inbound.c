/* Inbound: HBONE on 15008 (mTLS + HTTP/2 CONNECT) and plaintext on 15006,
 * both ending at the app in the same pod, with the client's source address
 * preserved when the kernel allows it. */
#include "proxy/proxy_int.h"
#include "proxy/l7.h"

#include "authz/authz.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "hbone/hbone.h"
#include "loop/sock.h"
#include "proxy/inbound_route.h"
#include "proxyproto/proxyproto.h"
#include "telemetry/accesslog.h"
#include "tls/ctx.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Telemetry only: an identity that does not fit a SPIFFE id is left out. */
static void fill_dst(struct zt_conn *c, const struct zt_workload *self)
{
    char id[ZT_SPIFFE_ID_MAX + 1];
    if (zt_workload_identity(self, id, sizeof(id)) == 0)
        zt_conn_set_identity(c, &c->dst_identity, id);
}

static const struct zt_workload *src_by_ip(struct zt_pod_inst *pod,
                                           const struct sockaddr_storage *peer)
{
    struct zt_ip ip;
    uint16_t port;
    if (zt_ip_from_sockaddr((const struct sockaddr *)peer, &ip, &port) < 0)
        return NULL;
    /* Not through a gateway, so from our own network (as Istio's ztunnel). */
    return zt_state_workload_by_ip(pod->pw->state, pod->pw->proxy->opts.network, &ip);
}

/* The source of an HBONE request: looked up by IP on our network, unless
 * the request came through a network gateway, which its x-forwarded-network
 * says (another network than ours, ASCII case aside, as Istio's ztunnel
 * compares): the peer's address is then the gateway's or meaningless here,
 * and telemetry takes the source from the request's baggage instead. */
static const struct zt_workload *request_src(struct zt_pod_inst *pod,
                                             const struct sockaddr_storage *peer,
                                             const struct zt_h2_request *req)
{
    const char *network = pod->pw->proxy->opts.network;
    if (req->forwarded_network && strcasecmp(req->forwarded_network, network ? network : "") != 0)
        return NULL;
    return src_by_ip(pod, peer);
}

/* The service the client dialed, from the forwarded header's host= (wire
 * facts §2.3): one of `self`'s services with that hostname, else NULL. */
static const struct zt_service *
service_for_host(struct zt_pod_inst *pod, const struct zt_workload *self, const char *forwarded)
{
    char host[256];
    if (!forwarded ||
        zt_telemetry_forwarded_parse(forwarded, strlen(forwarded), host, sizeof(host), NULL, 0) <
            0 ||
        !host[0])
        return NULL;
    size_t hl = strlen(host);
    for (size_t i = 0; i < self->n_services; i++) {
        const char *key = self->services[i].key;
        size_t kl = strlen(key);
        if (kl > hl && key[kl - hl - 1] == '/' && strcmp(key + kl - hl, host) == 0)
            return zt_state_service_by_key(pod->pw->state, key);
    }
    return NULL;
}

/* Authorizes a connection to `self`; returns 0 or ZT_E_DENIED with a reason. */
static int authorize(struct zt_pod_inst *pod, const struct zt_workload *self, const char *identity,
                     const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                     struct zt_authz_conn *ac, char *why, size_t cap)
{
    *ac = (struct zt_authz_conn){.src_identity = identity && identity[0] ? identity : NULL};
    zt_ip_from_sockaddr((const struct sockaddr *)src, &ac->src_ip, &ac->src_port);
    zt_ip_from_sockaddr((const struct sockaddr *)dst, &ac->dst_ip, &ac->dst_port);
    struct zt_authz_result res;
    int rc = zt_authz_check_ex(pod->pw->state, self, ac, &res, why, cap);
    /* Decisions, including what dry-run policies would have done, are
     * logged at debug, or info with AUTHZ_POLICY_INFO_LOGGING=true. */
    enum zt_log_level lvl = pod->pw->proxy->opts.authz_info_logging ? ZT_LOG_INFO : ZT_LOG_DEBUG;
    if (zt_log_enabled(lvl)) {
        char src_s[64], dst_s[64];
        zt_sockaddr_str((const struct sockaddr *)src, src_s, sizeof(src_s));
        zt_sockaddr_str((const struct sockaddr *)dst, dst_s, sizeof(dst_s));
        const char *dry = res.dry_run_denied_by ? res.dry_run_denied_by->key
                          : res.has_dry_run_allow && !res.dry_run_allow_matched ? "allow-list"
                                                                                : NULL;
        zt_log(lvl, "authz", "%s -> %s (%s): %s%s%s%s", src_s, dst_s, identity ? identity : "-",
               rc == 0 ? "allowed" : "denied: ", rc == 0 ? "" : why,
               dry ? "; dry-run would deny: " : "", dry ? dry : "");
    }
    return rc;
}

/* Starts the upstream connect to the app for `c`; side `a_side` selects
 * which TCP side of the conn carries it. A loopback target is dialed from
 * loopback (an application tunnel: the client's address travels in the
 * PROXY header instead, and a foreign source on loopback would be dropped
 * by the kernel's routing and the pod's rules). */
static int connect_app(struct zt_conn *c, const struct sockaddr_storage *target,
                       const struct sockaddr_storage *client, bool a_side, bool from_loopback)
{
    struct zt_pod_inst *pod = c->pod;
    struct zt_sock_opts o;
    zt_pod_sock_opts(pod, &o);
    struct sockaddr_storage bind_src = *client;
    const struct sockaddr *bsrc = NULL;
    struct zt_ip cip, tip;
    uint16_t port;
    zt_ip_from_sockaddr((const struct sockaddr *)client, &cip, &port);
    zt_ip_from_sockaddr((const struct sockaddr *)target, &tip, &port);
    if (from_loopback) {
        bind_src = *target;
        if (bind_src.ss_family == AF_INET)
            ((struct sockaddr_in *)&bind_src)->sin_port = 0;
        else
            ((struct sockaddr_in6 *)&bind_src)->sin6_port = 0;
        bsrc = (const struct sockaddr *)&bind_src;
    } else if (pod->pw->proxy->opts.orig_src && !zt_ip_eq(&cip, &tip) &&
               client->ss_family == target->ss_family) {
        o.transparent = true;
        if (bind_src.ss_family == AF_INET)
            ((struct sockaddr_in *)&bind_src)->sin_port = 0;
        else
            ((struct sockaddr_in6 *)&bind_src)->sin6_port = 0;
        bsrc = (const struct sockaddr *)&bind_src;
    }
    bool bind_failed = false;
    int fd = zt_sock_connect((const struct sockaddr *)target, bsrc, &o, &bind_failed);
    if (fd < 0)
        return fd;
    if (bind_failed)
        ZT_DEBUG("proxy", "conn %llu: source address not preserved", (unsigned long long)c->id);
    if (a_side)
        zt_conn_set_tcp_a(c, fd, true);
    else
        zt_conn_set_tcp_b(c, fd, true);
    return 0;
}

/* ---- plaintext (15006) ---- */

static void inbound_plain_accept(struct zt_pod_inst *pod, int fd, bool may_wait);

static void park_plain(struct zt_pod_inst *pod, int fd);

void zt_inbound_plain_accept(struct zt_pod_inst *pod, int fd)
{
    inbound_plain_accept(pod, fd, true);
}

static void inbound_plain_accept(struct zt_pod_inst *pod, int fd, bool may_wait)
{
    struct sockaddr_storage peer, dst;
    socklen_t len = sizeof(peer);
    char src_s[64], dst_s[64], why[256];
    if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0 || zt_sock_original_dst(fd, &dst) < 0) {
        close(fd);
        return;
    }
    zt_sockaddr_unmap(&peer);
    zt_sockaddr_str((struct sockaddr *)&peer, src_s, sizeof(src_s));
    zt_sockaddr_str((struct sockaddr *)&dst, dst_s, sizeof(dst_s));
    if (zt_hbone_port_is_illegal(zt_sockaddr_port((struct sockaddr *)&dst))) {
        zt_accesslog_emit_failed(src_s, dst_s, "inbound", "destination port is reserved");
        close(fd);
        return;
    }
    const struct zt_workload *self = zt_pod_self(pod);
    if (!self && may_wait && !pod->pw->draining && pod->n_parked < ZT_SELF_WAIT_MAX) {
        park_plain(pod, fd);
        return;
    }
    if (!self) {
        zt_accesslog_emit_failed(src_s, dst_s, "inbound", "unknown local workload");
        close(fd);
        return;
    }
    /* Only the pod itself is served here: relaying to any other original
     * destination would dial it from inside the pod with the proxy's mark,
     * around the pod's own network policy. */
    struct zt_ip dip;
    uint16_t dport;
    if (zt_ip_from_sockaddr((struct sockaddr *)&dst, &dip, &dport) < 0 ||
        !zt_workload_has_ip(self, &dip)) {
        zt_pod_metrics_failed(pod, ZT_CONN_INBOUND_PLAIN, src_by_ip(pod, &peer), NULL, self,
                              ZT_CLOSE_CONNECT);
        zt_accesslog_emit_failed(src_s, dst_s, "inbound",
                                 "original destination is not one of the pod's addresses");
        close(fd);
        return;
    }
    struct zt_authz_conn ac;
    if (authorize(pod, self, NULL, &peer, &dst, &ac, why, sizeof(why)) < 0) {
        zt_pod_metrics_failed(pod, ZT_CONN_INBOUND_PLAIN, src_by_ip(pod, &peer), NULL, self,
                              ZT_CLOSE_DENY);
        char msg[320];
        snprintf(msg, sizeof(msg), "policy rejection: %s", why);
        zt_accesslog_emit_failed(src_s, dst_s, "inbound", msg);
        close(fd);
        return;
    }
    struct zt_conn *c = zt_conn_new(pod, ZT_CONN_INBOUND_PLAIN, fd);
    zt_conn_addr_set(&c->src_addr, (struct sockaddr *)&peer);
    zt_conn_addr_set(&c->dst_addr, (struct sockaddr *)&dst);
    /* No mTLS: identities are logged only when proven (none here). */
    zt_conn_set_peers(c, src_by_ip(pod, &peer), self, NULL);
    zt_conn_metrics_open(c);
    int rc = connect_app(c, &dst, &peer, false, false);
    if (rc < 0)
        zt_conn_fail_connect(c, &c->dst_addr, rc);
}

/* ---- HBONE (15008) ---- */

static void inbound_unlink(struct zt_inbound *in)
{
    struct zt_pod_inst *pod = in->pod;
    atomic_fetch_sub_explicit(&pod->pw->live, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&pod->pw->conns_in[ZT_SPREAD_HBONE], 1, memory_order_relaxed);
    zt_list_remove(&in->link);
}

static int in_on_ready(struct zt_h2conn *h2, void *ud)
{
    struct zt_inbound *in = ud;
    struct zt_spiffe_id id;
    /* Policy is checked against this string: it must be the whole identity
     * (fail closed, never "no identity" or a truncated other one). */
    if (zt_tls_peer_identity(zt_h2conn_ssl(h2), &id) < 0 ||
        zt_spiffe_format(&id, in->peer_identity, sizeof(in->peer_identity)) < 0)
        return ZT_E_IDENTITY;
    in->established = true;
    return 0;
}

static void respond_fail(struct zt_inbound *in, int32_t sid, int status, const char *authority,
                         const char *why)
{
    char src_s[64], dst_s[64], msg[1536];
    zt_h2conn_respond(in->h2, sid, status, NULL, 0);
    zt_sockaddr_str((struct sockaddr *)&in->peer, src_s, sizeof(src_s));
    zt_sockaddr_str((struct sockaddr *)&in->local, dst_s, sizeof(dst_s));
    snprintf(msg, sizeof(msg), "%d: %s (authority %s, peer %s)", status, why,
             authority && *authority ? authority : "-", in->peer_identity);
    zt_accesslog_emit_failed(src_s, dst_s, "inbound", msg);
}

static int park_request(struct zt_inbound *in, int32_t sid, const struct zt_h2_request *req);
static void drop_waits(struct zt_inbound *in);

/* Serves one CONNECT; returns the connection it started (NULL if refused
 * or waiting; the connection may already be closing). */
static struct zt_conn *serve_request(struct zt_inbound *in, int32_t sid,
                                     const struct zt_h2_request *req, bool may_wait)
{
    struct zt_h2conn *h2 = in->h2;
    struct zt_pod_inst *pod = in->pod;
    struct zt_hbone_target target;
    const char *why = NULL;
    char reason[256];
    int status = zt_hbone_check_request(req->method, req->authority, &target, &why);
    if (status != 200) {
        respond_fail(in, sid, status, req->authority, why);
        return NULL;
    }
    const struct zt_workload *self = zt_pod_self(pod);
    if (!self && may_wait && park_request(in, sid, req) == 0)
        return NULL;
    if (!self) {
        respond_fail(in, sid, 503, req->authority, "unknown local workload");
        return NULL;
    }
    if (pod->pw->l7) {
        /* A waypoint: the L7 layer takes the stream, whatever it names. */
        struct zt_l7_connect lc = {.pod = pod,
                                   .h2 = h2,
                                   .sid = sid,
                                   .req = req,
                                   .target = &target,
                                   .peer_identity = in->peer_identity,
                                   .peer = &in->peer,
                                   .local = &in->local};
        pod->pw->proxy->opts.l7->on_connect(pod->pw->l7, &lc);
        return NULL;
    }
    struct zt_inbound_route route;
    status = zt_inbound_route(pod->pw->state, pod->pw->proxy->opts.network, self, &target,
                              (struct sockaddr *)&in->local,
                              pod->pw->proxy->opts.localhost_app_tunnel, &route, &why);
    if (status != 200) {
        respond_fail(in, sid, status, req->authority, why);
        return NULL;
    }
    struct zt_authz_conn ac;
    if (authorize(pod, self, in->peer_identity, &in->peer, &route.upstream, &ac, reason,
                  sizeof(reason)) < 0) {
        zt_pod_metrics_failed(pod, ZT_CONN_INBOUND_HBONE, request_src(pod, &in->peer, req),
                              in->peer_identity, self, ZT_CLOSE_DENY);
        char msg[320];
        snprintf(msg, sizeof(msg), "policy rejection: %s", reason);
        respond_fail(in, sid, 401, req->authority, msg);
        return NULL;
    }
    struct zt_conn *c = zt_conn_new(pod, ZT_CONN_INBOUND_HBONE, -1);
    zt_conn_addr_set(&c->src_addr, (struct sockaddr *)&in->peer);
    zt_conn_addr_set(&c->dst_addr, (struct sockaddr *)&in->local);
    /* A hostname target is logged as the address it resolved to. */
    zt_conn_addr_set(&c->hbone_addr,
                     (struct sockaddr *)(target.is_host ? &route.upstream : &target.addr));
    zt_conn_addr_set(&c->upstream_addr, (struct sockaddr *)&route.upstream);
    if (route.want_proxy_header)
        zt_conn_addr_set(&c->tunnel_dst, (struct sockaddr *)&route.tunnel_dst);
    zt_conn_set_identity(c, &c->src_identity, in->peer_identity);
    fill_dst(c, self);
    const struct zt_workload *src = request_src(pod, &in->peer, req);
    zt_conn_set_peers(c, src, self,
                      route.svc ? route.svc : service_for_host(pod, self, req->forwarded));
    if (!src && req->baggage) {
        /* Malformed baggage is ignored: telemetry never fails a connection. */
        struct zt_telemetry_baggage b;
        if (zt_telemetry_baggage_parse(req->baggage, strlen(req->baggage), &b) == 0 && b.any) {
            c->src_bag = zt_xmalloc(sizeof(b));
            *c->src_bag = b;
        }
    }
    zt_conn_metrics_open(c);
    zt_conn_set_stream(c, h2, sid);
    zt_h2conn_attach(h2, sid, &zt_conn_stream_ops, c);
    int rc = connect_app(c, &route.dial, &in->peer, true, route.is_loopback);
    if (rc < 0) {
        zt_h2conn_respond(h2, sid, 503, NULL, 0);
        c->b.st.is_final_status = true;
        zt_conn_fail_connect(c, &c->hbone_addr, rc);
    }
    return c;
}

static void in_on_request(struct zt_h2conn *h2, void *ud, int32_t sid,
                          const struct zt_h2_request *req)
{
    serve_request(ud, sid, req, true);
}

/* Writes the PROXY v2 header of an application tunnel on the just
 * connected socket, before any relayed byte. Its send buffer is empty, so
 * the header (a few hundred bytes at most) goes in one call; anything less
 * fails the connection rather than let the app read a partial header. */
static int write_proxy_header(struct zt_conn *c)
{
    uint8_t hdr[ZT_PROXYPROTO_V2_MAX];
    size_t len = 0;
    int rc = zt_proxyproto_v2_encode(&c->src_addr.sa, &c->tunnel_dst.sa, c->src_identity, hdr,
                                     sizeof(hdr), &len);
    if (rc < 0)
        return rc;
    ssize_t n = send(c->a.fd, hdr, len, MSG_NOSIGNAL);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EAGAIN;
}

void zt_inbound_upstream_ready(struct zt_conn *c, int err)
{
    if (zt_conn_closed(c) || !zt_conn_h2(c))
        return;
    struct zt_h2conn *h2 = zt_conn_h2(c);
    if (err == 0 && c->tunnel_dst.sa.sa_family != 0)
        err = write_proxy_header(c);
    if (err < 0) {
        zt_h2conn_respond(h2, c->b.st.sid, 503, NULL, 0);
        c->b.st.is_final_status = true;
        zt_conn_fail_connect(c, &c->hbone_addr, err);
        zt_h2conn_flush(h2);
        return;
    }
    /* Response baggage describes the destination (ENABLE_RESPONSE_BAGGAGE). */
    char baggage[1024];
    zt_workload_baggage(c->dst_wl, baggage, sizeof(baggage));
    const char *headers[] = {"baggage", baggage};
    if (zt_h2conn_respond(h2, c->b.st.sid, 200, headers, 1) < 0) {
        zt_conn_close(c, "stream gone before the upstream connected");
        return;
    }
    zt_conn_start_relay(c);
    zt_h2conn_flush(h2);
}

void zt_conn_on_connected(struct zt_conn *c, int err)
{
    if (c->kind == ZT_CONN_INBOUND_HBONE) {
        zt_inbound_upstream_ready(c, err);
        return;
    }
    if (err < 0) {
        zt_conn_fail_connect(c, &c->dst_addr, err);
        return;
    }
    zt_conn_start_relay(c);
}

static void in_on_closed(struct zt_h2conn *h2, void *ud, int error)
{
    struct zt_inbound *in = ud;
    if (!in->established && error < 0 && error != ZT_E_CLOSED) {
        zt_pod_metrics_failed(in->pod, ZT_CONN_INBOUND_HBONE, src_by_ip(in->pod, &in->peer), NULL,
                              zt_pod_self(in->pod), ZT_CLOSE_TLS);
        char src_s[64], dst_s[64];
        zt_sockaddr_str((struct sockaddr *)&in->peer, src_s, sizeof(src_s));
        zt_sockaddr_str((struct sockaddr *)&in->local, dst_s, sizeof(dst_s));
        zt_accesslog_emit_failed(src_s, dst_s, "inbound",
                                 error == ZT_E_TLS        ? "TLS handshake failed"
                                 : error == ZT_E_IDENTITY ? "no peer identity"
                                                          : zt_strerror(error));
    }
    drop_waits(in);
    inbound_unlink(in);
    free(in);
}

static const struct zt_h2conn_ops inbound_ops = {
    .on_ready = in_on_ready,
    .on_request = in_on_request,
    .on_closed = in_on_closed,
};

/* Hands the accepted socket to a TLS + HTTP/2 server session presenting
 * ident (borrowed). Frees in if the session cannot be created. */
static void start_session(struct zt_inbound *in, int fd, struct zt_ca_identity *ident)
{
    struct zt_pod_inst *pod = in->pod;
    in->h2 = zt_h2conn_new(&pod->pw->worker.loop, fd, ident->server_ctx, ZT_H2_SERVER,
                           &pod->pw->proxy->opts.server_h2, &inbound_ops, in);
    if (!in->h2) {
        inbound_unlink(in);
        free(in);
    }
}

static void warn_no_cert(struct zt_pod_inst *pod, int err)
{
    ZT_WARN("proxy", "pod %s: no certificate for inbound HBONE: %s", pod->shared->uid,
            zt_strerror(err));
}

/* The pod's certificate arrived (or cannot be had) for a held socket. */
static void on_cert(void *ud, struct zt_ca_identity *ident, int err)
{
    struct zt_inbound *in = ud;
    int fd = in->fd;
    in->cert_wait = NULL;
    in->fd = -1;
    in->pod->n_cert_waits--;
    if (err < 0) {
        warn_no_cert(in->pod, err);
        close(fd);
        inbound_unlink(in);
        free(in);
        return;
    }
    start_session(in, fd, ident);
    zt_ca_identity_unref(ident);
}

void zt_inbound_hbone_accept(struct zt_pod_inst *pod, int fd)
{
    struct zt_inbound *in = zt_xcalloc(1, sizeof(*in));
    in->pod = pod;
    in->fd = -1;
    socklen_t len = sizeof(in->local);
    getsockname(fd, (struct sockaddr *)&in->local, &len);
    len = sizeof(in->peer);
    getpeername(fd, (struct sockaddr *)&in->peer, &len);
    zt_sockaddr_unmap(&in->local);
    zt_sockaddr_unmap(&in->peer);
    struct zt_spiffe_id id;
    struct zt_ca_identity *ident = NULL;
    int rc = zt_pod_identity(pod, &id);
    if (rc == 0)
        rc = zt_ca_mgr_acquire_async(pod->pw->proxy->ca, &id, &pod->pw->worker, on_cert, in, &ident,
                                     &in->cert_wait);
    if (rc < 0 && rc != -EAGAIN) {
        warn_no_cert(pod, rc);
        close(fd);
        free(in);
        atomic_fetch_sub_explicit(&pod->pw->conns_in[ZT_SPREAD_HBONE], 1, memory_order_relaxed);
        return;
    }
    zt_list_insert_head(&pod->inbounds, &in->link);
    atomic_fetch_add_explicit(&pod->pw->live, 1, memory_order_relaxed);
    if (rc == -EAGAIN) {
        /* Hold the socket (the client's handshake waits in its buffer)
         * until the certificate is here; the worker goes on meanwhile. */
        in->fd = fd;
        if (++pod->n_cert_waits > ZT_INBOUND_CERT_WAIT_MAX) {
            char src_s[64], dst_s[64];
            zt_sockaddr_str((struct sockaddr *)&in->peer, src_s, sizeof(src_s));
            zt_sockaddr_str((struct sockaddr *)&in->local, dst_s, sizeof(dst_s));
            zt_accesslog_emit_failed(src_s, dst_s, "inbound",
                                     "too many connections waiting for the pod's certificate");
            zt_inbound_close(in);
        }
        return;
    }
    start_session(in, fd, ident);
    zt_ca_identity_unref(ident);
}

void zt_inbound_close(struct zt_inbound *in)
{
    if (!in->h2) {
        zt_ca_wait_cancel(in->cert_wait);
        in->pod->n_cert_waits--;
        close(in->fd);
        inbound_unlink(in);
        free(in);
        return;
    }
    zt_h2conn_close(in->h2, ZT_E_CLOSED);
}

/* ---- waiting for the pod's own workload (ZT_SELF_WAIT_MS) ---- */

/* Bytes of a waiting request's stream kept until it is served (a client
 * may send before the response); more fails the request. */
#define IN_WAIT_DATA_MAX (256 * 1024)

/* An HBONE request waiting, unanswered, on its stream: the request's
 * headers are copied, and the stream's events are recorded until it is
 * served (then replayed to the connection) or refused. */
struct zt_in_wait {
    struct zt_in_wait *next;
    struct zt_inbound *in;
    int32_t sid;
    uint64_t deadline;
    char *authority, *baggage, *forwarded, *forwarded_network;
    struct zt_buf data; /* charged to the stream until the connection consumes it */
    bool eof;           /* the client ended its side */
    bool gone;          /* the stream closed: nothing to answer */
    bool too_much;      /* over IN_WAIT_DATA_MAX */
};

static void w_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct zt_in_wait *w = sud;
    if (w->too_much || w->data.len + len > IN_WAIT_DATA_MAX) {
        w->too_much = true;
        return;
    }
    zt_buf_append(&w->data, data, len);
}

static void w_on_end(void *sud)
{
    ((struct zt_in_wait *)sud)->eof = true;
}

static void w_on_close(void *sud, int error)
{
    ((struct zt_in_wait *)sud)->gone = true;
}

static ssize_t w_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    return -EAGAIN; /* no response yet, so no body */
}

static const struct zt_h2_stream_ops wait_stream_ops = {
    .on_data = w_on_data,
    .on_end = w_on_end,
    .on_close = w_on_close,
    .read = w_read,
};

static char *dup_or_null(const char *s)
{
    if (!s)
        return NULL;
    char *d = zt_xstrdup(s);
    return d;
}

static int park_request(struct zt_inbound *in, int32_t sid, const struct zt_h2_request *req)
{
    struct zt_pod_inst *pod = in->pod;
    struct zt_pw *pw = pod->pw;
    if (pw->draining || pod->n_parked >= ZT_SELF_WAIT_MAX)
        return -ENOSPC;
    struct zt_in_wait *w = zt_xcalloc(1, sizeof(*w));
    w->in = in;
    w->sid = sid;
    w->deadline = uv_now(&pw->worker.loop) + ZT_SELF_WAIT_MS;
    w->authority = dup_or_null(req->authority);
    w->baggage = dup_or_null(req->baggage);
    w->forwarded = dup_or_null(req->forwarded);
    w->forwarded_network = dup_or_null(req->forwarded_network);
    w->next = in->waits;
    in->waits = w;
    pod->n_parked++;
    zt_pw_park_hold(pw);
    zt_h2conn_attach(in->h2, sid, &wait_stream_ops, w);
    ZT_DEBUG("proxy", "pod %s: inbound request for %s waits for the pod's workload",
             pod->shared->uid, w->authority);
    return 0;
}

static void wait_free(struct zt_in_wait *w)
{
    struct zt_pod_inst *pod = w->in->pod;
    pod->n_parked--;
    zt_pw_park_release(pod->pw);
    free(w->authority);
    free(w->baggage);
    free(w->forwarded);
    free(w->forwarded_network);
    zt_buf_release(&w->data);
    free(w);
}

/* The connection is gone: so are its waiting requests (their streams
 * already got on_close). */
static void drop_waits(struct zt_inbound *in)
{
    while (in->waits) {
        struct zt_in_wait *w = in->waits;
        in->waits = w->next;
        wait_free(w);
    }
}

/* Serves (or, with the workload still unknown, refuses) a waiting request
 * and replays what its stream received meanwhile to the connection. */
static void resume_request(struct zt_in_wait *w)
{
    struct zt_inbound *in = w->in;
    if (w->gone)
        return;
    if (w->too_much) {
        zt_h2conn_attach(in->h2, w->sid, NULL, NULL);
        respond_fail(in, w->sid, 503, w->authority,
                     "client sent too much before the pod's workload was known");
        return;
    }
    const struct zt_h2_request req = {
        .method = "CONNECT",
        .authority = w->authority,
        .baggage = w->baggage,
        .forwarded = w->forwarded,
        .forwarded_network = w->forwarded_network,
    };
    /* Detached first: a refusal must not report into w, which goes next. */
    zt_h2conn_attach(in->h2, w->sid, NULL, NULL);
    struct zt_conn *c = serve_request(in, w->sid, &req, false);
    if (!c || zt_conn_closed(c))
        return;
    if (w->data.len)
        zt_conn_stream_ops.on_data(c, zt_buf_head(&w->data), w->data.len);
    if (w->eof && !zt_conn_closed(c))
        zt_conn_stream_ops.on_end(c);
}

static void park_plain(struct zt_pod_inst *pod, int fd)
{
    struct zt_parked *p = zt_xcalloc(1, sizeof(*p));
    p->fd = fd;
    p->deadline = uv_now(&pod->pw->worker.loop) + ZT_SELF_WAIT_MS;
    p->next = pod->in_parked;
    pod->in_parked = p;
    pod->n_parked++;
    zt_pw_park_hold(pod->pw);
    ZT_DEBUG("proxy", "pod %s: plaintext inbound connection waits for the pod's workload",
             pod->shared->uid);
}

static int unpark_plain(struct zt_pod_inst *pod, struct zt_parked **link)
{
    struct zt_parked *p = *link;
    int fd = p->fd;
    *link = p->next;
    pod->n_parked--;
    zt_pw_park_release(pod->pw);
    free(p);
    return fd;
}

void zt_inbound_park_retry(struct zt_pw *pw, bool all)
{
    uint64_t now = uv_now(&pw->worker.loop);
    struct zt_pod_inst *pod = pw->pods;
    while (pod) {
        struct zt_pod_inst *next_pod = pod->next;
        bool known = zt_pod_self(pod) != NULL;
        struct zt_parked **pl = &pod->in_parked;
        while (*pl) {
            if (known || all || now >= (*pl)->deadline)
                inbound_plain_accept(pod, unpark_plain(pod, pl), false);
            else
                pl = &(*pl)->next;
        }
        for (struct zt_list_node *n = zt_list_first(&pod->inbounds), *next_in; n; n = next_in) {
            next_in = zt_list_next(&pod->inbounds, n);
            struct zt_inbound *in = zt_list_entry(n, struct zt_inbound, link);
            /* Take the ready ones off first: serving one may not touch the
             * list, and the connection is flushed once, after all of them. */
            struct zt_in_wait *ready = NULL, **wl = &in->waits;
            while (*wl) {
                struct zt_in_wait *w = *wl;
                if (known || all || w->gone || w->too_much || now >= w->deadline) {
                    *wl = w->next;
                    w->next = ready;
                    ready = w;
                } else {
                    wl = &w->next;
                }
            }
            if (ready) {
                while (ready) {
                    struct zt_in_wait *w = ready;
                    ready = w->next;
                    resume_request(w);
                    wait_free(w);
                }
                zt_h2conn_flush(in->h2); /* may close and free in */
            }
        }
        pod = next_pod;
    }
}

void zt_inbound_park_drop(struct zt_pod_inst *pod)
{
    while (pod->in_parked)
        close(unpark_plain(pod, &pod->in_parked));
}
