/* The proxy's side of an L7 layer (l7.h): what a waypoint needs of the pod
 * it runs as, on the pod's worker. */
#include "proxy/l7.h"

#include "base/random.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "ca/manager.h"
#include "proxy/proxy_int.h"
#include "state/ip.h"
#include "tls/ctx.h"
#include "tls/spiffe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct zt_state *zt_l7_state(struct zt_pod_inst *pod)
{
    return pod->pw->state;
}

const struct zt_workload *zt_l7_self(struct zt_pod_inst *pod)
{
    return zt_pod_self(pod);
}

const char *zt_l7_network(struct zt_pod_inst *pod)
{
    return pod->pw->proxy->network ? pod->pw->proxy->network : "";
}

uv_loop_t *zt_l7_loop(struct zt_pod_inst *pod)
{
    return &pod->pw->worker.loop;
}

void zt_l7_hold(struct zt_pod_inst *pod)
{
    atomic_fetch_add_explicit(&pod->pw->live, 1, memory_order_relaxed);
}

void zt_l7_release(struct zt_pod_inst *pod)
{
    atomic_fetch_sub_explicit(&pod->pw->live, 1, memory_order_relaxed);
}

/* The endpoint's address on the pod's network, in the family of the
 * pod's own first address when it has one of each. */
static const struct zt_ip *endpoint_ip(const struct zt_workload *wl, const struct zt_workload *self)
{
    if (wl->n_addresses == 0)
        return NULL;
    int fam = self && self->n_addresses ? self->addresses[0].family : 0;
    for (size_t i = 0; i < wl->n_addresses; i++)
        if (!fam || wl->addresses[i].family == fam)
            return &wl->addresses[i];
    return &wl->addresses[0];
}

/* ---- double HBONE (docs/multinetwork.md) ----
 *
 * The struct is the inner connection's user pointer. It is freed when the
 * inner connection closes, or at once when the outer one fails first. */
struct l7_dh {
    struct zt_pod_inst *pod;
    struct zt_hbone_waiter outer_w; /* ours, in the pod's pool */
    struct zt_hbone_waiter *user;   /* NULL once handed over or cancelled */
    struct zt_h2conn *inner;        /* NULL until started */
    char authority[300];            /* "<service hostname>:<port>" */
    struct zt_spiffe_id sans[ZT_HBONE_KEY_MAX_IDS];
    size_t n_sans;
};

/* The inner connection being handed to its user (during w->cb only). */
static _Thread_local const struct l7_dh *handing;

static void dh_give(struct l7_dh *dh, struct zt_h2conn *h2, int err)
{
    struct zt_hbone_waiter *w = dh->user;
    if (!w)
        return;
    dh->user = NULL;
    w->tunnel = NULL;
    handing = dh;
    w->cb(w, h2, err);
    handing = NULL;
}

/* The remote server must be one of the service's identities (the gateway
 * was checked on the outer tunnel); then the user opens its streams, and
 * the connection closes once they have ended (GOAWAY now). */
static int dh_on_ready(struct zt_h2conn *h2, void *ud)
{
    struct l7_dh *dh = ud;
    if (!dh->user)
        return ZT_E_CLOSED;
    if (zt_tls_verify_server_identity(zt_h2conn_ssl(h2), dh->sans, dh->n_sans) < 0) {
        ZT_WARN("proxy",
                "double HBONE to %s: the remote server is not one of the service's "
                "identities",
                dh->authority);
        return ZT_E_IDENTITY;
    }
    dh_give(dh, h2, 0);
    zt_h2conn_close_when_idle(h2);
    return 0;
}

static void dh_on_closed(struct zt_h2conn *h2, void *ud, int error)
{
    struct l7_dh *dh = ud;
    dh->inner = NULL;
    dh_give(dh, NULL, error ? error : ZT_E_CLOSED);
    free(dh);
}

static const struct zt_h2conn_ops dh_inner_ops = {
    .on_ready = dh_on_ready,
    .on_closed = dh_on_closed,
};

/* Never runs: a wait is cancelled as soon as it is made. */
static void dh_ident_unused(void *ud, struct zt_ca_identity *ident, int err)
{
    zt_ca_identity_unref(ident);
}

/* The outer tunnel is up: the inner connection inside it, presenting the
 * pod's certificate (cached: the outer connection was just set up with
 * it; one being renewed right now fails this try). */
static int dh_start(struct l7_dh *dh, struct zt_h2conn *outer)
{
    struct zt_pod_inst *pod = dh->pod;
    struct zt_pw *pw = pod->pw;
    const struct zt_workload *self = zt_pod_self(pod);
    char idstr[ZT_SPIFFE_ID_MAX + 1];
    struct zt_spiffe_id id;
    struct zt_ca_identity *ident = NULL;
    struct zt_ca_wait *wait = NULL;
    int rc = ZT_E_IDENTITY;
    if (self && zt_workload_identity(self, idstr, sizeof(idstr)) >= 0 &&
        zt_spiffe_parse(idstr, strlen(idstr), &id) == 0)
        rc = zt_ca_mgr_acquire_async(pw->proxy->ca, &id, &pw->worker, dh_ident_unused, NULL, &ident,
                                     &wait);
    if (rc == -EAGAIN) {
        zt_ca_wait_cancel(wait);
        rc = ZT_E_TLS;
    }
    if (rc < 0)
        return rc;
    dh->inner = zt_h2conn_new_tunneled(outer, dh->authority, NULL, 0, ident->client_ctx,
                                       &pw->proxy->opts.client_h2, &dh_inner_ops, dh);
    zt_ca_identity_unref(ident); /* the inner SSL objects keep the context */
    if (!dh->inner)
        return ZT_E_CLOSED;
    zt_h2conn_flush(outer);
    return 0;
}

static void dh_on_outer(struct zt_hbone_waiter *w, struct zt_h2conn *h2, int err)
{
    struct l7_dh *dh = (struct l7_dh *)((char *)w - offsetof(struct l7_dh, outer_w));
    int rc = err < 0 || !h2 ? (err < 0 ? err : ZT_E_CLOSED) : !dh->user ? ZT_E_CLOSED : 0;
    if (rc == 0)
        rc = dh_start(dh, h2);
    if (rc < 0) {
        dh_give(dh, NULL, rc);
        free(dh);
    }
}

static int upstream_through_gateway(struct zt_pod_inst *pod, const struct zt_workload *self,
                                    const struct zt_workload *wl, const struct zt_service *svc,
                                    uint16_t svc_port, struct zt_hbone_waiter *w)
{
    struct zt_upstream up;
    if (!svc || zt_state_plan_through_gateway(pod->pw->state, self, svc, svc_port, wl, 0,
                                              zt_random_u32(), &up) < 0)
        return ZT_E_NOT_FOUND;
    struct l7_dh *dh = zt_xcalloc(1, sizeof(*dh));
    int n =
        snprintf(dh->authority, sizeof(dh->authority), "%s:%u", svc->hostname, (unsigned)svc_port);
    for (size_t i = 0; i < up.n_final_sans && dh->n_sans < ZT_HBONE_KEY_MAX_IDS; i++)
        if (zt_spiffe_parse(up.final_sans[i], strlen(up.final_sans[i]), &dh->sans[dh->n_sans]) == 0)
            dh->n_sans++;
    struct zt_hbone_key key;
    memset(&key, 0, sizeof(key));
    if (n < 0 || (size_t)n >= sizeof(dh->authority) || dh->n_sans == 0 ||
        zt_workload_identity(self, key.src_id, sizeof(key.src_id)) < 0 ||
        zt_outbound_dst_ids(up.wl, up.sans, up.n_sans, key.dst_ids, sizeof(key.dst_ids)) < 0) {
        free(dh);
        return ZT_E_IDENTITY;
    }
    zt_ip_to_sockaddr(&up.ip, up.port, &key.dst);
    const struct zt_ip *src = endpoint_ip(self, NULL);
    if (src)
        zt_ip_to_sockaddr(src, 0, &key.src);
    dh->pod = pod;
    dh->user = w;
    w->tunnel = dh;
    dh->outer_w.cb = dh_on_outer;
    struct zt_h2conn *outer = NULL;
    int rc = zt_hbone_pool_get(pod->pool, &key, &dh->outer_w, &outer);
    /* w->cb runs later either way: the inner handshake is ahead. */
    if (rc == 0 && outer)
        rc = dh_start(dh, outer);
    if (rc < 0) {
        w->tunnel = NULL;
        free(dh);
    }
    return rc;
}

int zt_l7_upstream(struct zt_pod_inst *pod, const struct zt_workload *wl,
                   const struct zt_service *svc, uint16_t svc_port, struct zt_hbone_waiter *w,
                   struct zt_h2conn **ready, struct sockaddr_storage *dst)
{
    *ready = NULL;
    w->tunnel = NULL;
    if (pod->closing || !pod->pool)
        return ZT_E_CLOSED;
    const struct zt_workload *self = zt_pod_self(pod);
    if (!self)
        return ZT_E_IDENTITY;
    const char *net = wl->network ? wl->network : "", *own = self->network ? self->network : "";
    const struct zt_ip *ip = endpoint_ip(wl, self);
    if (ip)
        zt_ip_to_sockaddr(ip, 15008, dst);
    if (strcmp(net, own) != 0)
        return upstream_through_gateway(pod, self, wl, svc, svc_port, w);
    if (!ip)
        return ZT_E_NOT_FOUND;
    struct zt_hbone_key key;
    memset(&key, 0, sizeof(key));
    if (zt_workload_identity(self, key.src_id, sizeof(key.src_id)) < 0 ||
        zt_outbound_dst_ids(wl, svc ? svc->subject_alt_names : NULL,
                            svc ? svc->n_subject_alt_names : 0, key.dst_ids,
                            sizeof(key.dst_ids)) < 0)
        return ZT_E_IDENTITY;
    zt_ip_to_sockaddr(ip, 15008, &key.dst);
    const struct zt_ip *src = endpoint_ip(self, NULL);
    if (src)
        zt_ip_to_sockaddr(src, 0, &key.src);
    return zt_hbone_pool_get(pod->pool, &key, w, ready);
}

void zt_l7_upstream_cancel(struct zt_hbone_waiter *w)
{
    struct l7_dh *dh = w->tunnel;
    if (!dh) {
        zt_hbone_pool_cancel(w);
        return;
    }
    /* The wait goes on without a user: the inner connection, if it comes,
     * closes unused. */
    w->tunnel = NULL;
    dh->user = NULL;
}

bool zt_l7_stream_target(const struct zt_h2conn *h2, char *authority, size_t len,
                         const char **headers, size_t *n_headers)
{
    const struct l7_dh *dh = handing;
    if (!dh || dh->inner != h2)
        return false;
    snprintf(authority, len, "%s", dh->authority);
    const char *network = dh->pod->pw->proxy->network;
    headers[0] = "x-forwarded-network";
    headers[1] = network ? network : "";
    *n_headers = 1;
    return true;
}
