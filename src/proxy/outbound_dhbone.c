/* Double HBONE (wire facts 2.7): an outbound connection to a service
 * endpoint or waypoint on another network goes through that network's
 * gateway. The outer tunnel is an ordinary pooled HBONE connection to the
 * gateway (outbound.c dials it, expecting the gateway's identities); this
 * file runs the inner one: a CONNECT for "<service hostname>:<port>" on the
 * outer connection, then inside that stream a TLS handshake with the
 * source workload's own certificate, verified against the service's SANs
 * only, an HTTP/2 session (h2conn's tunneled transport) and the inner
 * CONNECT, which also names our network (x-forwarded-network). The gateway
 * forwards the inner bytes without reading them: the inner mTLS is end to
 * end. Inner connections are never pooled: one per app connection.
 *
 * Ownership: the struct zt_dhbone is the inner connection's user pointer.
 * While the app connection lives, it points back at it; when the app
 * connection finishes (zt_outbound_dhbone_end) the inner connection is shut
 * down and the struct is freed with it, or at once if it is already gone. */
#include "proxy/proxy_int.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "ca/manager.h"
#include "hbone/pool.h"
#include "state/state.h"
#include "tls/ctx.h"
#include "tls/spiffe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct zt_dhbone {
    struct zt_conn *conn;    /* NULL once the app connection finished */
    struct zt_h2conn *inner; /* NULL until started, and once closed */
    char authority[300];     /* "<service hostname>:<port>" */
    struct zt_spiffe_id sans[ZT_HBONE_KEY_MAX_IDS];
    size_t n_sans;
};

int zt_outbound_dhbone_prepare(struct zt_conn *c, const struct zt_upstream *up)
{
    struct zt_dhbone *dh = zt_xcalloc(1, sizeof(*dh));
    int n = snprintf(dh->authority, sizeof(dh->authority), "%s:%u", up->svc->hostname,
                     (unsigned)up->svc_port);
    if (n < 0 || (size_t)n >= sizeof(dh->authority)) {
        free(dh);
        return ZT_E_TOO_BIG;
    }
    for (size_t i = 0; i < up->n_final_sans && dh->n_sans < ZT_HBONE_KEY_MAX_IDS; i++) {
        const char *san = up->final_sans[i];
        if (zt_spiffe_parse(san, strlen(san), &dh->sans[dh->n_sans]) == 0)
            dh->n_sans++;
    }
    if (dh->n_sans == 0) {
        /* Istio would fail the inner handshake: no identity can match. */
        free(dh);
        return ZT_E_IDENTITY;
    }
    dh->conn = c;
    c->dh = dh;
    return 0;
}

/* The inner handshake is done: the remote server must be one of the
 * service's identities (the gateway was checked on the outer tunnel).
 * Then the inner CONNECT goes out; its answer reaches the app connection
 * as for any HBONE stream. */
static int on_inner_ready(struct zt_h2conn *h2, void *ud)
{
    struct zt_dhbone *dh = ud;
    struct zt_conn *c = dh->conn;
    struct zt_spiffe_id got;
    char gots[ZT_SPIFFE_ID_MAX + 1] = "none";
    if (!c)
        return ZT_E_CLOSED;
    bool has_id = zt_tls_peer_identity(zt_h2conn_ssl(h2), &got) == 0 &&
                  zt_spiffe_format(&got, gots, sizeof(gots)) >= 0;
    if (zt_tls_verify_server_identity(zt_h2conn_ssl(h2), dh->sans, dh->n_sans) < 0) {
        ZT_WARN("proxy",
                "conn %llu: double HBONE: remote server identity %s is not one of the "
                "service's",
                (unsigned long long)c->id, gots);
        return ZT_E_IDENTITY;
    }
    if (has_id)
        zt_conn_set_identity(c, &c->dst_identity, gots);
    const char *network = c->pod->pw->proxy->opts.network;
    zt_outbound_open_stream(c, h2, dh->authority, network ? network : "");
    return zt_conn_closed(c) ? ZT_E_CLOSED : 0;
}

static void on_inner_closed(struct zt_h2conn *h2, void *ud, int error)
{
    struct zt_dhbone *dh = ud;
    struct zt_conn *c = dh->conn;
    dh->inner = NULL;
    if (!c) {
        free(dh); /* the app connection finished first */
        return;
    }
    if (zt_conn_closed(c))
        return;
    /* Closed before the inner stream could carry the app's bytes (once it
     * does, the stream's own close ends the app connection first). */
    enum zt_close_reason why = error == ZT_E_IDENTITY ? ZT_CLOSE_IDENTITY
                               : error == ZT_E_DENIED ? ZT_CLOSE_DENY
                               : error == ZT_E_TLS    ? ZT_CLOSE_TLS
                                                      : ZT_CLOSE_CONNECT;
    const char *what = error == ZT_E_IDENTITY   ? "remote server identity not accepted"
                       : error == ZT_E_DENIED   ? "the gateway refused the tunnel (401)"
                       : error == ZT_E_UPSTREAM ? "the gateway could not reach the service"
                                                : zt_strerror(error ? error : ZT_E_CLOSED);
    char authority[sizeof(dh->authority)];
    memcpy(authority, dh->authority, sizeof(authority)); /* closing c frees dh */
    zt_conn_fail(c, why, "double HBONE to %s through the network gateway failed: %s", authority,
                 what);
}

static const struct zt_h2conn_ops inner_ops = {
    .on_ready = on_inner_ready,
    .on_closed = on_inner_closed,
};

/* Never runs: a wait is cancelled as soon as it is made. */
static void on_ident_unused(void *ud, struct zt_ca_identity *ident, int err)
{
    zt_ca_identity_unref(ident);
}

void zt_outbound_dhbone_start(struct zt_conn *c, struct zt_h2conn *outer)
{
    struct zt_dhbone *dh = c->dh;
    struct zt_pw *pw = c->pod->pw;
    struct zt_spiffe_id id;
    struct zt_ca_identity *ident = NULL;
    struct zt_ca_wait *wait = NULL;
    if (!c->src_identity || zt_spiffe_parse(c->src_identity, strlen(c->src_identity), &id) < 0) {
        zt_conn_fail(c, ZT_CLOSE_IDENTITY, "double HBONE: no source identity to present");
        return;
    }
    /* The outer connection was just set up with this identity's certificate,
     * so it is cached; should it be renewing right now, the connection is
     * refused rather than held (the app retries). */
    int rc = zt_ca_mgr_acquire_async(pw->proxy->ca, &id, &pw->worker, on_ident_unused, NULL, &ident,
                                     &wait);
    if (rc == -EAGAIN) {
        zt_ca_wait_cancel(wait);
        rc = ZT_E_TLS;
    }
    if (rc < 0) {
        zt_conn_fail(c, ZT_CLOSE_TLS, "double HBONE: no certificate for %s: %s", c->src_identity,
                     zt_strerror(rc));
        return;
    }
    struct zt_connect_headers h;
    zt_outbound_connect_headers(c, NULL, &h);
    dh->inner = zt_h2conn_new_tunneled(outer, dh->authority, h.kv, h.n, ident->client_ctx,
                                       &pw->proxy->opts.client_h2, &inner_ops, dh);
    zt_ca_identity_unref(ident); /* the inner SSL objects keep the context */
    if (!dh->inner) {
        zt_conn_fail(c, ZT_CLOSE_CONNECT, "double HBONE: cannot open the tunnel to the gateway");
        return;
    }
    zt_h2conn_flush(outer);
}

const char *zt_outbound_dhbone_authority(const struct zt_conn *c)
{
    return c->dh ? c->dh->authority : NULL;
}

void zt_outbound_dhbone_end(struct zt_conn *c)
{
    struct zt_dhbone *dh = c->dh;
    if (!dh)
        return;
    c->dh = NULL;
    dh->conn = NULL;
    if (!dh->inner) {
        free(dh);
        return;
    }
    /* GOAWAY; the session closes once its last stream ended and its bytes
     * went out, and then frees dh (on_inner_closed). */
    zt_h2conn_shutdown(dh->inner);
}
