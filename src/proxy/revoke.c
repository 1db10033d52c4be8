/* CRL_PATH changed: each worker re-checks the peers of its HBONE
 * connections, both directions, and closes those whose certificate chain
 * the new CRLs revoke, as Istio's ztunnel does. A revocation is a security
 * event: the connections close at once (no GOAWAY drain), their proxied
 * connections first so the access log says why. */
#include "proxy/proxy_int.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "tls/crl.h"
#include "tls/ctx.h"

#include <stdio.h>
#include <stdlib.h>

struct crl_task {
    struct zt_pw *pw;
    struct zt_tls_crl *crl; /* a reference */
};

/* The revoked HBONE connections of one pod. */
struct revoked {
    struct zt_tls_crl *crl;
    struct zt_h2conn **v;
    size_t n, cap;
};

static void collect(void *ud, struct zt_h2conn *h2)
{
    struct revoked *r = ud;
    if (zt_tls_crl_peer_revoked(r->crl, zt_h2conn_ssl(h2)) != 1)
        return;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 8;
        r->v = zt_xrealloc(r->v, r->cap * sizeof(*r->v));
    }
    r->v[r->n++] = h2;
}

static bool listed(const struct revoked *r, const struct zt_h2conn *h2)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i] == h2)
            return true;
    return false;
}

static void peer_name(struct zt_h2conn *h2, char *buf, size_t cap)
{
    struct zt_spiffe_id id;
    if (zt_tls_peer_identity(zt_h2conn_ssl(h2), &id) != 0 || zt_spiffe_format(&id, buf, cap) < 0)
        snprintf(buf, cap, "(no identity)");
}

static void check_pod(struct zt_pod_inst *pod, struct zt_tls_crl *crl)
{
    struct zt_metrics *m = pod->pw->proxy->opts.metrics;
    struct revoked r = {.crl = crl};
    for (struct zt_list_node *n = zt_list_first(&pod->inbounds); n;
         n = zt_list_next(&pod->inbounds, n)) {
        struct zt_inbound *in = zt_list_entry(n, struct zt_inbound, link);
        if (in->h2 != NULL)
            collect(&r, in->h2);
    }
    size_t n_inbound = r.n;
    /* Double HBONE's inner connections are not pooled: each belongs to one
     * outbound connection, and its peer is the remote service's server. */
    for (struct zt_list_node *n = zt_list_first(&pod->conns); n; n = zt_list_next(&pod->conns, n)) {
        struct zt_conn *c = zt_list_entry(n, struct zt_conn, link);
        if (c->dh != NULL && zt_conn_h2(c) != NULL)
            collect(&r, zt_conn_h2(c));
    }
    zt_hbone_pool_foreach(pod->pool, collect, &r);
    if (r.n == 0)
        return;
    for (struct zt_list_node *n = zt_list_first(&pod->conns), *next; n; n = next) {
        next = zt_list_next(&pod->conns, n);
        struct zt_conn *c = zt_list_entry(n, struct zt_conn, link);
        if (zt_conn_h2(c) != NULL && listed(&r, zt_conn_h2(c))) {
            zt_conn_fail(c, ZT_CLOSE_CERT_REVOKED, "peer certificate revoked by a CRL update");
        }
    }
    for (size_t i = 0; i < r.n; i++) {
        char who[ZT_SPIFFE_ID_MAX + 1];
        bool inbound = i < n_inbound;
        peer_name(r.v[i], who, sizeof(who));
        ZT_WARN("proxy",
                "pod %s: closing %s HBONE connection of %s: peer certificate revoked by CRL",
                pod->shared->uid, inbound ? "inbound" : "outbound", who);
        if (m != NULL)
            zt_metrics_counter_inc(m, inbound ? ZT_C_CRL_POLICY_REJECTIONS_DESTINATION
                                              : ZT_C_CRL_POLICY_REJECTIONS_SOURCE);
        zt_h2conn_close(r.v[i], ZT_E_REVOKED);
    }
    free(r.v);
}

static void task_crl(void *arg)
{
    struct crl_task *t = arg;
    for (struct zt_pod_inst *pod = t->pw->pods; pod; pod = pod->next)
        check_pod(pod, t->crl);
    zt_tls_crl_unref(t->crl);
    free(t);
}

void zt_proxy_crl_changed(struct zt_proxy *p, struct zt_tls_crl *crl)
{
    for (unsigned i = 0; i < p->nworkers; i++) {
        struct crl_task *t = zt_xmalloc(sizeof(*t));
        t->pw = &p->pws[i];
        t->crl = zt_tls_crl_ref(crl);
        if (zt_worker_post(&p->pws[i].worker, task_crl, t) < 0) {
            zt_tls_crl_unref(t->crl);
            free(t);
        }
    }
}
