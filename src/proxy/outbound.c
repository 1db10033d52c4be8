/* Outbound (15001): an app's connection, redirected inside its pod, is sent
 * to its original destination through HBONE, plain TCP or passthrough. */
#include "proxy/proxy_int.h"

#include "base/random.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "hbone/hbone.h"
#include "loop/sock.h"
#include "telemetry/accesslog.h"
#include "telemetry/headers.h"
#include "tls/spiffe.h"

#include <stddef.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    return false;
}

/* A connection to one of the proxy's own ports at an address of the pod
 * itself (loopback, the address it connects from, or one of its workload's
 * addresses) would come back to the proxy: refused. 15080 is Istio's SOCKS5
 * port, reserved even though we do not serve it. */
static bool is_self_call(const struct zt_workload *self, const struct sockaddr_storage *peer,
                         const struct sockaddr_storage *dst)
{
    uint16_t port = zt_sockaddr_port((const struct sockaddr *)dst);
    if (!zt_hbone_port_is_illegal(port) && port != 15080)
        return false;
    if (is_loopback(dst))
        return true;
    struct zt_ip dip, pip;
    uint16_t unused;
    if (zt_ip_from_sockaddr((const struct sockaddr *)dst, &dip, &unused) < 0)
        return true; /* not an address we can reason about: fail closed */
    if (zt_ip_from_sockaddr((const struct sockaddr *)peer, &pip, &unused) == 0 &&
        zt_ip_eq(&dip, &pip))
        return true;
    return self && zt_workload_has_ip(self, &dip);
}

static void ip_to_sockaddr(const struct zt_ip *ip, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (ip->family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)out;
        s->sin_family = AF_INET;
        s->sin_port = htons(port);
        memcpy(&s->sin_addr, ip->addr, 4);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)out;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(port);
        memcpy(&s->sin6_addr, ip->addr, 16);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, de-duplicated, comma-joined expected server identities: the
 * workload's own and the SPIFFE ids among the service's SANs, at most
 * ZT_HBONE_KEY_MAX_IDS in all (the rest are not accepted). Returns 0, or
 * ZT_E_IDENTITY when the workload's identity is not a valid SPIFFE id (the
 * connection must fail: the server could not be verified). */
int zt_outbound_dst_ids(const struct zt_workload *wl, char *const *sans, size_t n_sans, char *out,
                        size_t cap)
{
    char ids[ZT_HBONE_KEY_MAX_IDS][ZT_SPIFFE_ID_MAX + 1];
    char *ptrs[ZT_HBONE_KEY_MAX_IDS];
    size_t n = 0;
    struct zt_spiffe_id id;
    if (zt_workload_identity(wl, ids[0], sizeof(ids[0])) < 0 ||
        zt_spiffe_parse(ids[0], strlen(ids[0]), &id) < 0)
        return ZT_E_IDENTITY;
    n++;
    for (size_t i = 0; i < n_sans && n < ZT_HBONE_KEY_MAX_IDS; i++) {
        const char *san = sans[i];
        if (zt_spiffe_parse(san, strlen(san), &id) == 0 &&
            zt_spiffe_format(&id, ids[n], sizeof(ids[n])) >= 0)
            n++;
    }
    for (size_t i = 0; i < n; i++)
        ptrs[i] = ids[i];
    qsort(ptrs, n, sizeof(ptrs[0]), cmp_str);
    size_t len = 0;
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(ptrs[i], ptrs[i - 1]) == 0)
            continue;
        int w = snprintf(out + len, cap - len, "%s%s", len ? "," : "", ptrs[i]);
        if (w < 0 || (size_t)w >= cap - len)
            return ZT_E_TOO_BIG; /* cap is sized for every id at full length */
        len += (size_t)w;
    }
    return 0;
}

void zt_outbound_connect_headers(struct zt_conn *c, const char *network,
                                 struct zt_connect_headers *h)
{
    /* The source workload travels in baggage; forwarded names the client
     * and the service it dialed; traceparent is new for each connection. */
    zt_workload_baggage(zt_pod_self(c->pod), h->baggage, sizeof(h->baggage));
    char src[ZT_CONN_ADDR_STR_MAX];
    zt_conn_addr_str(&c->src_addr, src, sizeof(src));
    if (zt_telemetry_forwarded_format(src, c->dst_svc ? c->dst_svc->hostname : NULL, h->forwarded,
                                      sizeof(h->forwarded)) < 0)
        h->forwarded[0] = 0;
    struct zt_telemetry_traceparent tp;
    zt_telemetry_traceparent_new(&tp);
    if (zt_telemetry_traceparent_format(&tp, h->traceparent, sizeof(h->traceparent)) < 0)
        h->traceparent[0] = 0;
    const char *kv[] = {"baggage",     h->baggage,     "forwarded",           h->forwarded,
                        "traceparent", h->traceparent, "x-forwarded-network", network};
    h->n = network ? 4 : 3;
    memcpy(h->kv, kv, sizeof(kv));
}

void zt_outbound_open_stream(struct zt_conn *c, struct zt_h2conn *h2, const char *authority,
                             const char *network)
{
    struct zt_connect_headers h;
    char buf[ZT_CONN_ADDR_STR_MAX];
    zt_outbound_connect_headers(c, network, &h);
    if (!authority) {
        zt_hbone_format_authority(&c->hbone_addr.sa, buf, sizeof(buf));
        authority = buf;
    }
    int32_t sid = zt_h2conn_connect(h2, authority, h.kv, h.n, &zt_conn_stream_ops, c);
    if (sid < 0) {
        zt_conn_close(c, "cannot open HBONE stream");
        return;
    }
    zt_conn_set_stream(c, h2, sid);
    zt_conn_connect_sent(c);
    zt_h2conn_flush(h2);
}

static void on_pool_ready(struct zt_hbone_waiter *w, struct zt_h2conn *h2, int err)
{
    struct zt_conn *c = (struct zt_conn *)((char *)w - offsetof(struct zt_conn, waiter));
    if (zt_conn_closed(c))
        return;
    if (err < 0 || !h2) {
        enum zt_close_reason why = err == ZT_E_IDENTITY  ? ZT_CLOSE_IDENTITY
                                   : err == ZT_E_TLS     ? ZT_CLOSE_TLS
                                   : err == ZT_E_TIMEOUT ? ZT_CLOSE_NETWORK_POLICY
                                                         : ZT_CLOSE_CONNECT;
        char to[ZT_CONN_ADDR_STR_MAX];
        zt_conn_fail(c, why, "HBONE connection to %s failed: %s",
                     zt_conn_addr_str(&c->dst_addr, to, sizeof(to)),
                     err == ZT_E_IDENTITY ? "server identity not accepted" : zt_strerror(err));
        return;
    }
    if (c->dh)
        zt_outbound_dhbone_start(c, h2);
    else
        zt_outbound_open_stream(c, h2, NULL, NULL);
}

void zt_outbound_upstream_ready(struct zt_conn *c, int status)
{
    if (zt_conn_closed(c))
        return;
    if (status == 200) {
        zt_conn_start_relay(c);
        return;
    }
    zt_conn_fail(c, status == 401 ? ZT_CLOSE_DENY : ZT_CLOSE_CONNECT,
                 "upstream returned HTTP status %d", status);
}

/* The source identity stays empty when the workload's is not a valid SPIFFE
 * id; HBONE then refuses to go on (there is nothing right to present). */
static void fill_src(struct zt_conn *c, const struct zt_workload *self)
{
    struct zt_spiffe_id id;
    char s[ZT_SPIFFE_ID_MAX + 1];
    zt_conn_set_peers(c, self, NULL, NULL);
    if (zt_workload_identity(self, s, sizeof(s)) == 0 && zt_spiffe_parse(s, strlen(s), &id) == 0)
        zt_conn_set_identity(c, &c->src_identity, s);
}

/* ---- waiting for the pod's own workload ---- */

static void outbound_accept(struct zt_pod_inst *pod, int fd, bool may_wait);

static void on_park_timer(uv_timer_t *t)
{
    zt_outbound_park_retry(t->data, false);
    zt_inbound_park_retry(t->data, false);
}

static int resolver_socket(void *ud, int family, int type)
{
    struct zt_sock_opts o = {.netns_fd = -1};
    return type == SOCK_STREAM ? zt_sock_tcp(family, &o) : zt_sock_udp(family, &o);
}

void zt_outbound_worker_init(struct zt_pw *pw)
{
    const struct zt_proxy_opts *o = &pw->proxy->opts;
    uv_timer_init(&pw->worker.loop, &pw->park_timer);
    pw->park_timer.data = pw;
    pw->resolver = zt_dns_resolver_new(&pw->worker.loop, &o->dns_upstreams, !o->ipv4_only,
                                       resolver_socket, NULL);
}

void zt_outbound_worker_cleanup(struct zt_pw *pw)
{
    zt_dns_resolver_free(pw->resolver);
    pw->resolver = NULL;
}

void zt_pw_park_hold(struct zt_pw *pw)
{
    if (pw->n_parked++ == 0)
        uv_timer_start(&pw->park_timer, on_park_timer, 100, 100);
}

void zt_pw_park_release(struct zt_pw *pw)
{
    if (--pw->n_parked == 0)
        uv_timer_stop(&pw->park_timer);
}

static void park(struct zt_pod_inst *pod, int fd)
{
    struct zt_pw *pw = pod->pw;
    struct zt_parked *p = zt_xcalloc(1, sizeof(*p));
    p->fd = fd;
    p->deadline = uv_now(&pw->worker.loop) + ZT_SELF_WAIT_MS;
    p->next = pod->parked;
    pod->parked = p;
    pod->n_parked++;
    zt_pw_park_hold(pw);
    ZT_DEBUG("proxy", "pod %s: outbound connection waits for the pod's workload", pod->shared->uid);
}

/* Takes p off its pod's list (prev: the entry before it, or NULL). */
static void unpark(struct zt_pod_inst *pod, struct zt_parked *prev, struct zt_parked *p)
{
    if (prev)
        prev->next = p->next;
    else
        pod->parked = p->next;
    pod->n_parked--;
    zt_pw_park_release(pod->pw);
    free(p);
}

void zt_outbound_park_retry(struct zt_pw *pw, bool all)
{
    uint64_t now = uv_now(&pw->worker.loop);
    for (struct zt_pod_inst *pod = pw->pods; pod; pod = pod->next) {
        if (!pod->parked)
            continue;
        bool known = zt_pod_self(pod) != NULL;
        struct zt_parked *prev = NULL, *p = pod->parked;
        while (p) {
            struct zt_parked *next = p->next;
            if (known || all || now >= p->deadline) {
                int fd = p->fd;
                unpark(pod, prev, p);
                outbound_accept(pod, fd, false);
            } else {
                prev = p;
            }
            p = next;
        }
    }
}

void zt_outbound_park_drop(struct zt_pod_inst *pod)
{
    while (pod->parked) {
        close(pod->parked->fd);
        unpark(pod, NULL, pod->parked);
    }
}

void zt_outbound_accept(struct zt_pod_inst *pod, int fd)
{
    outbound_accept(pod, fd, true);
}

/* Connects c to its upstream: plain TCP, passthrough, or HBONE (to the
 * endpoint's 15008 or the waypoint's port). ip:port is the destination as
 * dialed; peer the app's address. */
static void dial(struct zt_conn *c, const struct zt_upstream *up,
                 const struct sockaddr_storage *peer, const struct sockaddr_storage *dstp,
                 const struct zt_ip *ipp, uint16_t port)
{
    struct zt_pod_inst *pod = c->pod;
    bool to_waypoint = up->kind == ZT_UPSTREAM_WAYPOINT;
    int rc;
    if (up->kind != ZT_UPSTREAM_PASSTHROUGH && !up->has_ip) {
        zt_conn_close(c, "upstream has no address");
        return;
    }
    /* target: what the app reaches, the CONNECT's :authority over HBONE. A
     * waypoint is asked for the original destination as dialed. */
    struct sockaddr_storage target;
    if (up->kind == ZT_UPSTREAM_PASSTHROUGH)
        target = *dstp;
    else if (to_waypoint)
        ip_to_sockaddr(ipp, port, &target); /* ip: canonical, never v4-mapped */
    else
        ip_to_sockaddr(&up->ip, up->port, &target);
    if (up->kind == ZT_UPSTREAM_PASSTHROUGH || !up->is_hbone) {
        /* Identities are logged only when mTLS proves them. */
        zt_conn_set_identity(c, &c->src_identity, NULL);
        struct zt_sock_opts o;
        zt_pod_sock_opts(pod, &o);
        zt_conn_addr_set(&c->dst_addr, (struct sockaddr *)&target);
        int ufd = zt_sock_connect((struct sockaddr *)&target, NULL, &o, NULL);
        if (ufd < 0) {
            zt_conn_fail_connect(c, &c->dst_addr, ufd);
            return;
        }
        zt_conn_set_tcp_b(c, ufd, true);
        return;
    }
    /* HBONE to the endpoint's 15008, or to the waypoint's HBONE port. The
     * pool copies the key. */
    struct zt_hbone_key key, *k = &key;
    memset(k, 0, sizeof(*k));
    if (!c->src_identity) {
        zt_conn_fail(c, ZT_CLOSE_IDENTITY,
                     "source workload has no valid SPIFFE identity to present");
        return;
    }
    snprintf(k->src_id, sizeof(k->src_id), "%s", c->src_identity);
    if (zt_outbound_dst_ids(up->wl, up->sans, up->n_sans, k->dst_ids, sizeof(k->dst_ids)) < 0) {
        zt_conn_fail(c, ZT_CLOSE_IDENTITY,
                     "destination workload has no valid SPIFFE identity to expect");
        return;
    }
    if (up->is_double_hbone) {
        rc = zt_outbound_dhbone_prepare(c, up);
        if (rc < 0) {
            zt_conn_fail(c, ZT_CLOSE_IDENTITY,
                         "double HBONE: the service has no SPIFFE identity to expect from the "
                         "remote network");
            return;
        }
    }
    /* The gateway of double HBONE listens on the port the plan gives. */
    ip_to_sockaddr(&up->ip, to_waypoint || up->is_double_hbone ? up->port : 15008, &k->dst);
    k->src = *peer;
    if (k->src.ss_family == AF_INET)
        ((struct sockaddr_in *)&k->src)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&k->src)->sin6_port = 0;
    zt_conn_addr_set(&c->hbone_addr, (struct sockaddr *)&target);
    zt_conn_addr_set(&c->dst_addr, (struct sockaddr *)&k->dst);
    c->waiter.cb = on_pool_ready;
    struct zt_h2conn *h2 = NULL;
    rc = zt_hbone_pool_get(pod->pool, k, &c->waiter, &h2);
    if (rc < 0) {
        zt_conn_fail_connect(c, &c->dst_addr, rc);
        return;
    }
    if (h2 && c->dh)
        zt_outbound_dhbone_start(c, h2);
    else if (h2)
        zt_outbound_open_stream(c, h2, NULL, NULL);
}
/* ---- endpoints known by hostname only ---- */

/* A connection waiting for its endpoint's addresses. The upstream's
 * pointers stay valid: the connection holds the snapshot they are from. */
struct zt_outbound_dns {
    struct zt_conn *c;
    struct zt_upstream up;
    struct sockaddr_storage peer, dst;
    struct zt_ip ip;
    uint16_t port;
    struct zt_dns_lookup *lookup;
};

void zt_outbound_dns_cancel(struct zt_conn *c)
{
    struct zt_outbound_dns *w = c->dns_wait;
    if (!w)
        return;
    c->dns_wait = NULL;
    zt_dns_lookup_cancel(w->lookup);
    free(w);
}

/* As Istio's ztunnel: an address of the dialed family, at random, else
 * one of the other family. */
static void on_resolved(void *ud, int err, const struct zt_ip *addrs, size_t n)
{
    struct zt_outbound_dns *w = ud;
    struct zt_conn *c = w->c;
    c->dns_wait = NULL;
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += addrs[i].family == w->ip.family;
    if (err < 0 || n == 0) {
        zt_conn_fail(c, ZT_CLOSE_CONNECT, "DNS lookup of %s failed: %s", w->up.wl->hostname,
                     err == ZT_E_NOT_FOUND ? "the name has no address" : zt_strerror(err));
        free(w);
        return;
    }
    size_t pick = zt_random_below((uint32_t)(same ? same : n));
    for (size_t i = 0; i < n; i++) {
        if (same && addrs[i].family != w->ip.family)
            continue;
        if (pick-- == 0) {
            w->up.ip = addrs[i];
            break;
        }
    }
    w->up.has_ip = true;
    w->up.needs_dns = false;
    dial(c, &w->up, &w->peer, &w->dst, &w->ip, w->port);
    free(w);
}

static void resolve_then_dial(struct zt_conn *c, const struct zt_upstream *up,
                              const struct sockaddr_storage *peer,
                              const struct sockaddr_storage *dst, const struct zt_ip *ip,
                              uint16_t port)
{
    struct zt_pw *pw = c->pod->pw;
    struct zt_outbound_dns *w = zt_xcalloc(1, sizeof(*w));
    w->c = c;
    w->up = *up;
    w->peer = *peer;
    w->dst = *dst;
    w->ip = *ip;
    w->port = port;
    zt_pod_on_demand_dns(c->pod, up->wl);
    struct zt_ip addrs[ZT_DNS_RESOLVE_MAX];
    size_t n = 0;
    int rc = zt_dns_resolver_lookup(pw->resolver, up->wl->hostname, addrs, ZT_DNS_RESOLVE_MAX, &n,
                                    on_resolved, w, &w->lookup);
    if (rc == -EAGAIN) {
        c->dns_wait = w;
        return;
    }
    c->dns_wait = w;
    on_resolved(w, rc, addrs, n);
}

static void outbound_accept(struct zt_pod_inst *pod, int fd, bool may_wait)
{
    struct sockaddr_storage peer, dst;
    socklen_t len = sizeof(peer);
    char src_s[64], dst_s[64];
    if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0 || zt_sock_original_dst(fd, &dst) < 0) {
        close(fd);
        return;
    }
    zt_sockaddr_unmap(&peer);
    zt_sockaddr_str((struct sockaddr *)&peer, src_s, sizeof(src_s));
    zt_sockaddr_str((struct sockaddr *)&dst, dst_s, sizeof(dst_s));
    const struct zt_workload *self = zt_pod_self(pod);
    if (is_self_call(self, &peer, &dst)) {
        zt_accesslog_emit_failed(src_s, dst_s, "outbound", "self-call to a proxy port refused");
        close(fd);
        return;
    }
    if (!self && may_wait && !pod->pw->draining && pod->n_parked < ZT_SELF_WAIT_MAX) {
        park(pod, fd);
        return;
    }
    struct zt_conn *c = zt_conn_new(pod, ZT_CONN_OUTBOUND, fd);
    zt_conn_addr_set(&c->src_addr, (struct sockaddr *)&peer);
    zt_conn_addr_set(&c->dst_addr, (struct sockaddr *)&dst);
    if (!self) {
        zt_conn_close(c, "source workload unknown: not in the proxy's configuration");
        return;
    }
    fill_src(c, self);
    struct zt_ip ip, src_ip;
    uint16_t port, src_port;
    struct zt_upstream up;
    zt_ip_from_sockaddr((struct sockaddr *)&dst, &ip, &port);
    bool has_src = zt_ip_from_sockaddr((struct sockaddr *)&peer, &src_ip, &src_port) == 0;
    int rc = zt_state_resolve_outbound(pod->pw->state, self, has_src ? &src_ip : NULL, &ip, port,
                                       zt_random_u32(), &up);
    if (rc < 0) {
        /* Never direct instead: a service or pod behind a waypoint must not
         * be reached without it (its L7 policy would be skipped). The
         * access log names the service dialed, if any. */
        zt_conn_set_peers(c, self, NULL, up.svc);
        zt_conn_close(c, zt_upstream_fail_str(up.fail));
        return;
    }
    zt_conn_set_peers(c, self, up.wl, up.svc);
    c->mtls = up.kind != ZT_UPSTREAM_PASSTHROUGH && up.is_hbone;
    if (c->mtls) {
        char d[ZT_SPIFFE_ID_MAX + 1];
        if (zt_workload_identity(up.wl, d, sizeof(d)) == 0)
            zt_conn_set_identity(c, &c->dst_identity, d);
    }
    zt_conn_metrics_open(c);
    if (up.needs_dns) {
        resolve_then_dial(c, &up, &peer, &dst, &ip, port);
        return;
    }
    dial(c, &up, &peer, &dst, &ip, port);
}
