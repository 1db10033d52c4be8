/* The xDS side of `ztunnel control`: DeltaAggregatedResources streams
 * (wire facts §3.1), wildcard subscriptions to istio.workload.Address and
 * istio.security.Authorization, and from waypoints to our
 * ztunnel.routes.v1.Route and ztunnel.policy.v1.AuthorizationPolicy /
 * RequestAuthentication / RateLimit.
 *
 * Per stream and type we remember what the client holds (name -> version):
 * seeded from initial_resource_versions when it subscribes, updated with
 * every response we send. The first request of a type is always answered,
 * even with no resources, so the client can ACK and become ready; after that
 * a response goes out only when the catalog differs from what the client
 * holds. ACKs and NACKs are counted and NACKs logged with their reasons;
 * a NACKed resource is not sent again until it changes (as istiod). */
#include "control/control_int.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "proto/discovery.pb-c.h"
#include "xds/ads.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Requests are small; the largest lists what a reconnecting proxy holds
 * (control.h). */
#define MAX_REQUEST ZT_CONTROL_ADS_REQUEST_MAX
#define NODE_ID_MAX 256

struct zt_control_ads {
    struct zt_list_node link; /* in cp->streams */
    struct zt_control *cp;
    struct zt_grpc_scall *call;
    char node[ZT_CONTROL_NODE_MAX + 1];
    unsigned char token[ZT_CONTROL_TOKEN_DIGEST]; /* digest of the token it came with */
    char peer[64];
    char node_id[NODE_ID_MAX];
    struct zt_xds_known *known;
    /* The catalog `known` last matched, per type: the next delta from a
     * catalog updated from it looks at the changed names only. */
    uint64_t known_gen[ZT_ADS_NTYPES];
    bool subscribed[ZT_ADS_NTYPES];
    bool warned_unknown_type;
    uint64_t nonce_seq;
    bool ended;
};

static void send_delta(struct zt_control_ads *s, enum zt_ads_type t, bool always)
{
    struct zt_control *cp = s->cp;
    struct zt_xds_delta d;
    zt_xds_catalog_delta_since(cp->cat, t, s->known, s->known_gen[t], &d);
    /* Sent or empty, known now holds exactly the catalog's entries. */
    s->known_gen[t] = zt_xds_catalog_gen(cp->cat);
    if (!always && zt_xds_delta_is_empty(&d)) {
        zt_xds_delta_cleanup(&d);
        return;
    }
    const char *type_url = zt_ads_type_url(t);
    Envoy__Service__Discovery__V3__Resource *res = calloc(d.n_updates + 1, sizeof(*res));
    Envoy__Service__Discovery__V3__Resource **res_p = calloc(d.n_updates + 1, sizeof(*res_p));
    Google__Protobuf__Any *any = calloc(d.n_updates + 1, sizeof(*any));
    if (!res || !res_p || !any)
        abort();
    for (size_t i = 0; i < d.n_updates; i++) {
        const struct zt_xds_entry *e = d.updates[i];
        envoy__service__discovery__v3__resource__init(&res[i]);
        google__protobuf__any__init(&any[i]);
        any[i].type_url = (char *)type_url;
        any[i].value.data = e->value;
        any[i].value.len = e->len;
        res[i].name = (char *)e->name;
        res[i].version = (char *)e->version;
        res[i].resource = &any[i];
        res_p[i] = &res[i];
    }
    char nonce[24], version[24];
    snprintf(nonce, sizeof(nonce), "%" PRIx64, ++s->nonce_seq);
    snprintf(version, sizeof(version), "%" PRIu64, (uint64_t)ZT_CONTROL_GET(cp->n.config_version));
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse resp =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_RESPONSE__INIT;
    resp.system_version_info = version;
    resp.type_url = (char *)type_url;
    resp.nonce = nonce;
    resp.n_resources = d.n_updates;
    resp.resources = res_p;
    resp.n_removed_resources = d.n_removed;
    resp.removed_resources = (char **)d.removed;
    size_t len = envoy__service__discovery__v3__delta_discovery_response__get_packed_size(&resp);
    uint8_t *buf = zt_xmalloc(len ? len : 1);
    envoy__service__discovery__v3__delta_discovery_response__pack(&resp, buf);
    zt_grpc_scall_send(s->call, buf, len);
    ZT_DEBUG("control", "node %s: sent %s: %zu resource(s), %zu removal(s), nonce %s", s->node,
             type_url, d.n_updates, d.n_removed, nonce);
    ZT_CONTROL_INC(cp->n.pushes[t]);
    zt_xds_known_apply(s->known, t, cp->cat, &d);
    free(buf);
    free(res);
    free(res_p);
    free(any);
    zt_xds_delta_cleanup(&d);
}

static void end_stream(struct zt_control_ads *s, int status, const char *message)
{
    if (s->ended)
        return;
    s->ended = true;
    zt_grpc_scall_finish(s->call, status, message);
}

static void note_node(struct zt_control_ads *s,
                      const Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *req)
{
    if (s->node_id[0] || !req->node)
        return;
    snprintf(s->node_id, sizeof(s->node_id), "%s",
             req->node->id && req->node->id[0] ? req->node->id : "(no id)");
    ZT_INFO("control", "xDS stream from node %s (%s), proxy %s", s->node, s->peer, s->node_id);
}

static void on_request(struct zt_control_ads *s,
                       const Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *req)
{
    struct zt_control *cp = s->cp;
    note_node(s, req);
    enum zt_ads_type t = zt_ads_type_from_url(req->type_url);
    if (t == ZT_ADS_NTYPES) {
        if (!s->warned_unknown_type)
            ZT_WARN("control", "node %s asked for type %.200s, which is not served", s->node,
                    req->type_url ? req->type_url : "");
        s->warned_unknown_type = true;
        return;
    }
    if (!s->subscribed[t]) {
        s->subscribed[t] = true;
        for (size_t i = 0; i < req->n_initial_resource_versions; i++) {
            const Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry
                *e = req->initial_resource_versions[i];
            if (e->key && zt_xds_known_set(s->known, t, e->key, e->value) < 0) {
                ZT_WARN("control",
                        "node %s: bad initial_resource_versions entry: ending the stream", s->node);
                end_stream(s, ZT_GRPC_INVALID_ARGUMENT, "bad initial_resource_versions entry");
                return;
            }
        }
        ZT_DEBUG("control", "node %s subscribed to %s (%zu initial version(s))", s->node,
                 req->type_url, req->n_initial_resource_versions);
        send_delta(s, t, true);
        return;
    }
    if (!req->response_nonce || !req->response_nonce[0]) {
        send_delta(s, t, false);
        return;
    }
    if (req->error_detail) {
        ZT_CONTROL_INC(cp->n.nacks[t]);
        ZT_WARN("control", "node %s rejected %s (nonce %.32s): %.2000s", s->node, req->type_url,
                req->response_nonce,
                req->error_detail->message ? req->error_detail->message : "(no message)");
    } else {
        ZT_CONTROL_INC(cp->n.acks[t]);
    }
}

static void on_message(void *ud, struct zt_grpc_scall *call, const uint8_t *msg, size_t len)
{
    struct zt_control_ads *s = ud;
    if (s->ended)
        return;
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *req =
        envoy__service__discovery__v3__delta_discovery_request__unpack(NULL, len, msg);
    if (!req) {
        ZT_WARN("control", "node %s (%s): undecodable DeltaDiscoveryRequest: ending the stream",
                s->node, s->peer);
        end_stream(s, ZT_GRPC_INVALID_ARGUMENT, "undecodable DeltaDiscoveryRequest");
        return;
    }
    on_request(s, req);
    envoy__service__discovery__v3__delta_discovery_request__free_unpacked(req, NULL);
}

static void on_half_close(void *ud, struct zt_grpc_scall *call)
{
    end_stream(ud, ZT_GRPC_OK, NULL);
}

static void on_close(void *ud, struct zt_grpc_scall *call)
{
    struct zt_control_ads *s = ud;
    struct zt_control *cp = s->cp;
    zt_list_remove(&s->link);
    ZT_CONTROL_DEC(cp->n.ads_streams);
    ZT_INFO("control", "xDS stream of node %s (%s) ended", s->node, s->peer);
    zt_xds_known_free(s->known);
    free(s);
}

static const struct zt_grpc_scall_ops ads_ops = {
    .on_message = on_message,
    .on_half_close = on_half_close,
    .on_close = on_close,
};

void zt_control_ads_accept(struct zt_control *cp, struct zt_control_conn *conn, int32_t sid,
                           const char *node, const unsigned char token[ZT_CONTROL_TOKEN_DIGEST])
{
    struct zt_control_ads *s = zt_xcalloc(1, sizeof(*s));
    s->cp = cp;
    snprintf(s->node, sizeof(s->node), "%s", node);
    memcpy(s->token, token, sizeof(s->token));
    snprintf(s->peer, sizeof(s->peer), "%s", conn->peer);
    s->known = zt_xds_known_new();
    s->call = zt_grpc_scall_accept(conn->h2, sid, MAX_REQUEST, &ads_ops, s);
    if (!s->call) {
        zt_xds_known_free(s->known);
        free(s);
        return;
    }
    zt_list_insert_head(&cp->streams, &s->link);
    ZT_CONTROL_INC(cp->n.ads_streams);
}

void zt_control_ads_push_all(struct zt_control *cp)
{
    for (struct zt_list_node *n = zt_list_first(&cp->streams), *nx; n; n = nx) {
        nx = zt_list_next(&cp->streams, n);
        struct zt_control_ads *s = zt_list_entry(n, struct zt_control_ads, link);
        for (int t = 0; t < ZT_ADS_NTYPES; t++)
            if (s->subscribed[t] && !s->ended)
                send_delta(s, (enum zt_ads_type)t, false);
    }
}

void zt_control_ads_end_all(struct zt_control *cp, int status, const char *message)
{
    for (struct zt_list_node *n = zt_list_first(&cp->streams), *nx; n; n = nx) {
        nx = zt_list_next(&cp->streams, n);
        end_stream(zt_list_entry(n, struct zt_control_ads, link), status, message);
    }
}

void zt_control_ads_revalidate(struct zt_control *cp)
{
    for (struct zt_list_node *n = zt_list_first(&cp->streams), *nx; n; n = nx) {
        nx = zt_list_next(&cp->streams, n);
        struct zt_control_ads *s = zt_list_entry(n, struct zt_control_ads, link);
        if (s->ended)
            continue;
        const char *node = zt_control_tokens_node_by_digest(cp->tokens, s->token);
        if (node && strcmp(node, s->node) == 0)
            continue;
        ZT_WARN("control", "node %s (%s): its token was revoked: ending the xDS stream", s->node,
                s->peer);
        end_stream(s, ZT_GRPC_UNAUTHENTICATED, "node token revoked");
    }
}
