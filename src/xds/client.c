/* Delta ADS transport: TLS + HTTP/2 + gRPC around the sans-I/O engine in
 * ads.c, with protobuf encoding of requests and decoding of responses. */
#include "xds/client.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "base/random.h"
#include "h2/failover.h"
#include "h2/grpc.h"
#include "loop/sock.h"
#include "proto/discovery.pb-c.h"
#include "tls/ctx.h"
#include "tls/roots.h"
#include "xds/ads.h"
#include "xds/convert.h"
#include "xds/policies.h"
#include "xds/routes.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADS_PATH "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#define MAX_MESSAGE (200u << 20) /* istiod's client accepts 200 MiB */

struct zt_xds_client {
    uv_loop_t *loop;
    enum zt_xds_client_state state;
    const struct zt_xds_client_ops *ops;
    void *ud;
    /* XDS_ADDRESS's entries and which address to try (h2/failover.h). */
    struct zt_grpc_target targets[ZT_GRPC_TARGETS_MAX];
    size_t n_targets;
    struct zt_failover fo;
    size_t resolving;  /* the entry being looked up */
    bool had_response; /* the current attempt handled a response */
    char resolve_error[300];
    /* Of the current attempt: */
    char authority[sizeof(((struct zt_grpc_target *)0)->authority)];
    char verify_host[sizeof(((struct zt_grpc_target *)0)->host)];
    char alt_hostname[sizeof(((struct zt_grpc_target *)0)->host)]; /* "" = each entry's host */
    uint32_t ping_interval_ms, ping_timeout_ms;
    char *token_path, *cluster_id;
    struct zt_tls_roots *roots; /* XDS_ROOT_CA, re-read when it changes */
    struct zt_ads *ads;
    struct zt_metrics *metrics; /* borrowed; may be NULL */
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    int holds; /* the timer handle and a pending lookup keep the object alive */
    struct zt_h2conn *h2;
    struct zt_grpc_call *call;
    bool attempt_ended; /* the engine already heard how this attempt ended */
    /* The Node sent on the first request of each type. */
    Envoy__Config__Core__V3__Node node;
    Google__Protobuf__Struct meta;
    Google__Protobuf__Struct__FieldsEntry *entries;
    Google__Protobuf__Value *values;
    Google__Protobuf__Struct__FieldsEntry **entry_ptrs;
    char **meta_strings;
    size_t n_meta;
    /* Accepted resources of each kept type (routes, policies) by name, when
     * the owner takes that type; owned copies. */
    struct kept {
        struct zt_ads_resource *v;
        size_t n;
    } kept[ZT_ADS_NTYPES];
};

static const char *const state_names[] = {"backoff", "resolving", "connecting", "streaming",
                                          "stopped"};

const char *zt_xds_client_state_str(enum zt_xds_client_state st)
{
    return (unsigned)st < 5 ? state_names[st] : "?";
}

static void set_state(struct zt_xds_client *c, enum zt_xds_client_state st)
{
    ZT_DEBUG("xds", "%s -> %s", zt_xds_client_state_str(c->state), zt_xds_client_state_str(st));
    c->state = st;
}

enum zt_xds_client_state zt_xds_client_state(const struct zt_xds_client *c)
{
    return c->state;
}

static void start_connect(struct zt_xds_client *c);

/* How long to wait before the next attempt, given the engine's backoff:
 * 0 to try the round's next address at once, else the wait before a new
 * round (h2/failover.h). */
static uint64_t retry_delay(struct zt_xds_client *c, uint64_t engine_ms)
{
    if (c->had_response)
        zt_failover_succeeded(&c->fo);
    c->had_response = false;
    if (zt_failover_failed(&c->fo))
        return 0;
    return zt_failover_backoff(engine_ms, zt_random_u32());
}

static void on_timer(uv_timer_t *t)
{
    struct zt_xds_client *c = t->data;
    if (c->state == ZT_XDS_ST_BACKOFF)
        start_connect(c);
}

/* The attempt is over: tell the engine once and wait its backoff. */
static void attempt_ended(struct zt_xds_client *c, int status, const char *message)
{
    if (c->attempt_ended || c->state == ZT_XDS_ST_STOPPED)
        return;
    c->attempt_ended = true;
    uint64_t retry = 0;
    zt_ads_stream_ended(c->ads, status, message, &retry);
    if (c->metrics) {
        static const enum zt_counter counters[] = {
            [ZT_ADS_END_CONNECTION_ERROR] = ZT_C_XDS_TERMINATIONS_CONNECTION_ERROR,
            [ZT_ADS_END_ERROR] = ZT_C_XDS_TERMINATIONS_ERROR,
            [ZT_ADS_END_RECONNECT] = ZT_C_XDS_TERMINATIONS_RECONNECT,
            [ZT_ADS_END_COMPLETE] = ZT_C_XDS_TERMINATIONS_COMPLETE,
        };
        zt_metrics_counter_inc(c->metrics, counters[zt_ads_end_reason(status, message)]);
    }
    char why[600];
    if (status == ZT_ADS_CONNECT_FAILED)
        snprintf(why, sizeof(why), "%s", message ? message : "no connection");
    else
        snprintf(why, sizeof(why), "stream to %s ended with gRPC status %d (%s)",
                 c->fo.n ? c->fo.eps[c->fo.cur].name : c->authority, status,
                 message ? message : "");
    uint64_t delay = retry_delay(c, retry);
    if (delay == 0)
        ZT_WARN("xds", "%s; moving from %s to %s", why, c->fo.eps[c->fo.cur].name,
                c->fo.eps[c->fo.next].name);
    else
        ZT_WARN("xds", "%s; %sreconnecting in %llu ms", why,
                c->n_targets > 1 || c->fo.n > 1 ? "no XDS_ADDRESS address left to try; " : "",
                (unsigned long long)delay);
    set_state(c, ZT_XDS_ST_BACKOFF);
    uv_timer_start(&c->timer, on_timer, delay, 0);
}

/* ---- requests ---- */

static void send_request(struct zt_xds_client *c, const struct zt_ads_request *r)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest req =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
    req.type_url = (char *)r->type_url;
    if (r->include_node)
        req.node = &c->node;
    req.response_nonce = (char *)(r->response_nonce ? r->response_nonce : "");
    if (r->error_message) {
        status.code = ZT_GRPC_INVALID_ARGUMENT;
        status.message = (char *)r->error_message;
        req.error_detail = &status;
        ZT_WARN("xds", "rejecting part of %s: %s", r->type_url, r->error_message);
    }
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry *entries =
                                                                                           NULL,
                                                                                       **ptrs =
                                                                                           NULL;
    if (r->n_initial) {
        entries = calloc(r->n_initial, sizeof(*entries));
        ptrs = calloc(r->n_initial, sizeof(*ptrs));
        if (!entries || !ptrs)
            abort();
        for (size_t i = 0; i < r->n_initial; i++) {
            envoy__service__discovery__v3__delta_discovery_request__initial_resource_versions_entry__init(
                &entries[i]);
            entries[i].key = (char *)r->initial_names[i];
            entries[i].value = (char *)r->initial_versions[i];
            ptrs[i] = &entries[i];
        }
        req.n_initial_resource_versions = r->n_initial;
        req.initial_resource_versions = ptrs;
    }
    size_t len = envoy__service__discovery__v3__delta_discovery_request__get_packed_size(&req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        abort();
    envoy__service__discovery__v3__delta_discovery_request__pack(&req, buf);
    zt_grpc_call_send(c->call, buf, len);
    free(buf);
    free(entries);
    free(ptrs);
}

static void pump(struct zt_xds_client *c)
{
    struct zt_ads_request r;
    while (c->call && zt_ads_next_request(c->ads, &r))
        send_request(c, &r);
}

/* ---- the ADS call ---- */

/* For the "applied" log line; "?" for a type we do not know. */
static const char *const type_names[ZT_ADS_NTYPES + 1] = {
    [ZT_ADS_ADDRESS] = "Address",
    [ZT_ADS_AUTHORIZATION] = "Authorization",
    [ZT_ADS_ROUTE] = "Route",
    [ZT_ADS_AUTHZ_POLICY] = "AuthorizationPolicy",
    [ZT_ADS_AUTHN_POLICY] = "RequestAuthentication",
    [ZT_ADS_RATELIMIT] = "RateLimit",
    [ZT_ADS_NTYPES] = "?",
};

static void on_message(void *ud, const uint8_t *msg, size_t len)
{
    struct zt_xds_client *c = ud;
    uint64_t t0 = uv_hrtime();
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *resp =
        envoy__service__discovery__v3__delta_discovery_response__unpack(NULL, len, msg);
    if (!resp) {
        /* Without a nonce there is nothing to NACK: start over. */
        ZT_WARN("xds", "undecodable DeltaDiscoveryResponse (%zu bytes): reconnecting", len);
        zt_grpc_call_cancel(c->call);
        c->call = NULL;
        attempt_ended(c, ZT_GRPC_INTERNAL, "undecodable response");
        if (c->h2)
            zt_h2conn_close(c->h2, ZT_E_PROTO);
        return;
    }
    struct zt_ads_resource *res = calloc(resp->n_resources ? resp->n_resources : 1, sizeof(*res));
    if (!res)
        abort();
    for (size_t i = 0; i < resp->n_resources; i++) {
        const Envoy__Service__Discovery__V3__Resource *r = resp->resources[i];
        res[i] = (struct zt_ads_resource){
            .name = r->name,
            .version = r->version,
            .value = r->resource ? r->resource->value.data : NULL,
            .value_len = r->resource ? r->resource->value.len : 0,
        };
    }
    struct zt_ads_response ar = {
        .type_url = resp->type_url,
        .nonce = resp->nonce,
        .system_version_info = resp->system_version_info,
        .resources = res,
        .n_resources = resp->n_resources,
        .removed = (const char *const *)resp->removed_resources,
        .n_removed = resp->n_removed_resources,
    };
    ZT_DEBUG("xds", "%s: %zu resource(s), %zu removal(s), nonce %s", resp->type_url,
             resp->n_resources, resp->n_removed_resources, resp->nonce);
    if (c->metrics)
        zt_metrics_xds_message(c->metrics, resp->type_url, zt_ads_response_bytes(&ar));
    enum zt_ads_type t = zt_ads_type_from_url(resp->type_url);
    if (t == ZT_ADS_NTYPES)
        ZT_WARN("xds", "response of unknown type %.200s ignored (ACKed)", resp->type_url);
    zt_ads_on_response(c->ads, &ar);
    if (t != ZT_ADS_NTYPES)
        c->had_response = true;
    /* One line per response: how long decoding, applying and publishing a
     * push took is what a large mesh wants to know first. */
    ZT_INFO("xds", "applied %s: %zu resource(s), %zu removal(s) in %.1f ms", type_names[t],
            resp->n_resources, resp->n_removed_resources, (double)(uv_hrtime() - t0) / 1e6);
    free(res);
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(resp, NULL);
    pump(c);
}

static void on_call_close(void *ud, int status, const char *message)
{
    struct zt_xds_client *c = ud;
    c->call = NULL;
    attempt_ended(c, status, message);
    /* A fresh connection for the next attempt. */
    if (c->h2)
        zt_h2conn_shutdown(c->h2);
}

static const struct zt_grpc_call_ops call_ops = {
    .on_message = on_message,
    .on_close = on_call_close,
};

static int on_conn_ready(struct zt_h2conn *h2, void *ud)
{
    struct zt_xds_client *c = ud;
    struct zt_grpc_metadata md;
    zt_grpc_metadata_init(&md, c->token_path, c->cluster_id);
    c->call =
        zt_grpc_call_start(h2, c->authority, ADS_PATH, md.kv, md.n, MAX_MESSAGE, &call_ops, c);
    zt_grpc_metadata_cleanup(&md);
    if (!c->call)
        return ZT_E_PROTO;
    ZT_INFO("xds", "connected to %s", c->fo.eps[c->fo.cur].name);
    set_state(c, ZT_XDS_ST_STREAMING);
    zt_ads_stream_started(c->ads);
    pump(c);
    return 0;
}

static void on_conn_closed(struct zt_h2conn *h2, void *ud, int error)
{
    struct zt_xds_client *c = ud;
    c->h2 = NULL;
    if (c->state == ZT_XDS_ST_STOPPED)
        return;
    char msg[400];
    snprintf(msg, sizeof(msg), "connection to %s: %s", c->fo.eps[c->fo.cur].name,
             error == ZT_E_TLS ? "TLS handshake failed (check XDS_ROOT_CA and the host name)"
                               : zt_strerror(error));
    attempt_ended(c, ZT_ADS_CONNECT_FAILED, msg);
}

static const struct zt_h2conn_ops conn_ops = {
    .on_ready = on_conn_ready,
    .on_closed = on_conn_closed,
};

static void release(struct zt_xds_client *c);

/* Opens the connection to the round's next address. */
static void connect_endpoint(struct zt_xds_client *c)
{
    const struct zt_failover_endpoint *ep =
        zt_failover_pick_target(&c->fo, c->targets, c->alt_hostname, c->authority,
                                sizeof(c->authority), c->verify_host, sizeof(c->verify_host));
    struct zt_sock_opts o = {.netns_fd = -1,
                             .keepalive = &zt_sock_keepalive_control_plane,
                             .connect_timeout_ms = ZT_FAILOVER_CONNECT_TIMEOUT_MS};
    int fd = zt_sock_connect((const struct sockaddr *)&ep->sa, NULL, &o, NULL);
    if (fd < 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "connection to %s: %s", ep->name, zt_strerror(fd));
        attempt_ended(c, ZT_ADS_CONNECT_FAILED, msg);
        return;
    }
    struct zt_h2_settings settings = {.stream_window = 4u << 20,
                                      .connection_window = 16u << 20,
                                      .max_frame_size = 1u << 20,
                                      .max_header_list = 16 * 1024,
                                      .ping_interval_ms = c->ping_interval_ms,
                                      .ping_timeout_ms = c->ping_timeout_ms};
    /* Each new connection takes the roots as the file has them now. */
    char why[400];
    int rrc = zt_tls_roots_refresh(c->roots, why, sizeof(why));
    if (rrc > 0)
        ZT_INFO("xds", "root certificates reloaded from %s", zt_tls_roots_path(c->roots));
    else if (rrc < 0)
        ZT_WARN("xds", "XDS_ROOT_CA: %s; the roots loaded before stay in use", why);
    c->h2 = zt_h2conn_new(c->loop, fd, zt_tls_roots_ctx(c->roots), ZT_H2_CLIENT, &settings,
                          &conn_ops, c);
    if (!c->h2 || zt_tls_expect_host(zt_h2conn_ssl(c->h2), c->verify_host) < 0) {
        if (c->h2)
            zt_h2conn_close(c->h2, ZT_E_TLS);
        else
            attempt_ended(c, ZT_ADS_CONNECT_FAILED, "cannot create the connection");
        return;
    }
    set_state(c, ZT_XDS_ST_CONNECTING);
}

static void resolve_next(struct zt_xds_client *c);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct zt_xds_client *c = req->data;
    c->gai_pending = false;
    if (c->state == ZT_XDS_ST_STOPPED) {
        uv_freeaddrinfo(res);
        release(c);
        return;
    }
    c->holds--;
    if (status < 0 || !res) {
        snprintf(c->resolve_error, sizeof(c->resolve_error), "cannot resolve %s: %s",
                 c->targets[c->resolving].host, uv_strerror(status));
        if (c->n_targets > 1)
            ZT_WARN("xds", "XDS_ADDRESS: %s", c->resolve_error);
    } else {
        zt_failover_add(&c->fo, (unsigned)c->resolving, &c->targets[c->resolving], res);
    }
    uv_freeaddrinfo(res);
    c->resolving++;
    resolve_next(c);
}

/* Looks up targets[resolving..) one after the other, then connects to the
 * round's first address. */
static void resolve_next(struct zt_xds_client *c)
{
    if (c->resolving < c->n_targets) {
        set_state(c, ZT_XDS_ST_RESOLVING);
        const struct zt_grpc_target *t = &c->targets[c->resolving];
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        c->gai.data = c;
        int rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, t->host, t->port, &hints);
        if (rc == 0) {
            c->gai_pending = true;
            c->holds++;
            return;
        }
        snprintf(c->resolve_error, sizeof(c->resolve_error), "cannot resolve %s: %s", t->host,
                 uv_strerror(rc));
        c->resolving++;
        resolve_next(c);
        return;
    }
    if (!zt_failover_resolved(&c->fo)) {
        attempt_ended(c, ZT_ADS_CONNECT_FAILED, c->resolve_error);
        return;
    }
    connect_endpoint(c);
}

static void start_connect(struct zt_xds_client *c)
{
    c->attempt_ended = false;
    c->had_response = false;
    if (!c->fo.need_resolve) {
        connect_endpoint(c);
        return;
    }
    zt_failover_begin_round(&c->fo);
    c->resolving = 0;
    c->resolve_error[0] = 0;
    resolve_next(c);
}

/* ---- engine callbacks ---- */

static int op_apply(void *ud, enum zt_ads_type t, struct zt_state_builder *b,
                    const struct zt_ads_resource *r, char *err, size_t errlen)
{
    char *name = NULL;
    int rc = t == ZT_ADS_ADDRESS
                 ? zt_xds_apply_address(b, r->value, r->value_len, &name, err, errlen)
                 : zt_xds_apply_authorization(b, r->value, r->value_len, &name, err, errlen);
    if (rc == 0 && name && strcmp(name, r->name) != 0)
        ZT_DEBUG("xds", "resource %s holds object %s", r->name, name);
    free(name);
    return rc;
}

static void op_remove(void *ud, enum zt_ads_type t, struct zt_state_builder *b, const char *name)
{
    struct zt_xds_client *c = ud;
    if (t == ZT_ADS_ADDRESS)
        zt_xds_remove_address(b, zt_ads_snapshot(c->ads), name);
    else
        zt_xds_remove_authorization(b, name);
}

static void op_publish(void *ud, struct zt_state *state)
{
    struct zt_xds_client *c = ud;
    c->ops->publish(c->ud, state);
}

static void op_ready(void *ud)
{
    struct zt_xds_client *c = ud;
    ZT_INFO("xds", "first configuration of every type accepted");
    if (c->ops->ready)
        c->ops->ready(c->ud);
}

/* ---- kept types: routes and policies (a waypoint's client) ---- */

static int cmp_kept(const void *k, const void *e)
{
    return strcmp(k, ((const struct zt_ads_resource *)e)->name);
}

static struct zt_ads_resource *find_kept(struct kept *l, const char *name)
{
    return l->n ? bsearch(name, l->v, l->n, sizeof(*l->v), cmp_kept) : NULL;
}

static void kept_cleanup(struct zt_ads_resource *r)
{
    free((char *)r->name);
    free((char *)r->version);
    free((uint8_t *)r->value);
}

/* Decodes r as a resource of type t; *name (heap) is the name its contents
 * give it. */
static int kept_decode(enum zt_ads_type t, const struct zt_ads_resource *r, char **name, char *err,
                       size_t errlen)
{
    int rc;
    *name = NULL;
    if (t == ZT_ADS_ROUTE) {
        struct zt_route_def d;
        if ((rc = zt_xds_route_decode(r->value, r->value_len, &d, err, errlen)) == 0)
            *name = zt_xds_route_name(&d);
        zt_route_def_cleanup(&d);
    } else if (t == ZT_ADS_AUTHZ_POLICY) {
        struct zt_authz_l7_policy *p;
        if ((rc = zt_xds_authz_decode(r->value, r->value_len, &p, err, errlen)) == 0)
            *name = zt_xds_waypoint_policy_name(p->ns, p->name);
        zt_authz_l7_policy_free(p);
    } else if (t == ZT_ADS_AUTHN_POLICY) {
        struct zt_jwt_authn_policy *p;
        if ((rc = zt_xds_authn_decode(r->value, r->value_len, &p, err, errlen)) == 0)
            *name = zt_xds_waypoint_policy_name(p->ns, p->name);
        zt_jwt_authn_policy_free(p);
    } else {
        struct zt_ratelimit_policy *p;
        if ((rc = zt_xds_ratelimit_decode(r->value, r->value_len, &p, err, errlen)) == 0)
            *name = zt_xds_waypoint_policy_name(p->ns, p->name);
        zt_ratelimit_policy_free(p);
    }
    return rc;
}

static bool op_wants_kept(void *ud, enum zt_ads_type t)
{
    struct zt_xds_client *c = ud;
    return t == ZT_ADS_ROUTE ? c->ops->routes != NULL : c->ops->policies != NULL;
}

/* Checked by decoding (the owner decodes again to build its table), then
 * kept as bytes: a rejected resource leaves the one accepted before. */
static int op_apply_kept(void *ud, enum zt_ads_type t, const struct zt_ads_resource *r, char *err,
                         size_t errlen)
{
    struct zt_xds_client *c = ud;
    struct kept *l = &c->kept[t];
    char *want;
    int rc = kept_decode(t, r, &want, err, errlen);
    if (rc < 0)
        return rc;
    if (strcmp(want, r->name) != 0) {
        rc = zt_errf(err, errlen, ZT_E_PROTO, "the resource holds %s", want);
        free(want);
        return rc;
    }
    free(want);
    uint8_t *v = zt_xmalloc(r->value_len ? r->value_len : 1);
    memcpy(v, r->value, r->value_len);
    struct zt_ads_resource *slot = find_kept(l, r->name);
    if (slot) {
        free((char *)slot->version);
        free((uint8_t *)slot->value);
    } else {
        size_t at = 0;
        while (at < l->n && strcmp(l->v[at].name, r->name) < 0)
            at++;
        l->v = zt_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
        memmove(l->v + at + 1, l->v + at, (l->n - at) * sizeof(*l->v));
        l->n++;
        slot = &l->v[at];
        slot->name = zt_xstrdup(r->name);
    }
    slot->version = zt_xstrdup(r->version ? r->version : "");
    slot->value = v;
    slot->value_len = r->value_len;
    return 0;
}

static void op_remove_kept(void *ud, enum zt_ads_type t, const char *name)
{
    struct zt_xds_client *c = ud;
    struct kept *l = &c->kept[t];
    struct zt_ads_resource *slot = find_kept(l, name);
    if (!slot)
        return;
    kept_cleanup(slot);
    size_t at = (size_t)(slot - l->v);
    memmove(slot, slot + 1, (l->n - at - 1) * sizeof(*l->v));
    l->n--;
}

static void op_kept_done(void *ud, enum zt_ads_type t)
{
    struct zt_xds_client *c = ud;
    if (t == ZT_ADS_ROUTE)
        c->ops->routes(c->ud, c->kept[t].v, c->kept[t].n);
    else
        c->ops->policies(c->ud, t, c->kept[t].v, c->kept[t].n);
}

static const struct zt_ads_ops ads_ops = {
    .apply = op_apply,
    .remove = op_remove,
    .publish = op_publish,
    .ready = op_ready,
    .wants_kept = op_wants_kept,
    .apply_kept = op_apply_kept,
    .remove_kept = op_remove_kept,
    .kept_done = op_kept_done,
};

/* ---- lifecycle ---- */

static int parse_address(struct zt_xds_client *c, const char *address, char *err, size_t errlen)
{
    return zt_grpc_parse_targets("XDS_ADDRESS", address, c->targets, &c->n_targets, err, errlen);
}

static void build_node(struct zt_xds_client *c, const struct zt_xds_client_opts *o)
{
    envoy__config__core__v3__node__init(&c->node);
    google__protobuf__struct__init(&c->meta);
    c->n_meta = o->n_node_meta;
    c->entries = calloc(c->n_meta + 1, sizeof(*c->entries));
    c->values = calloc(c->n_meta + 1, sizeof(*c->values));
    c->entry_ptrs = calloc(c->n_meta + 1, sizeof(*c->entry_ptrs));
    c->meta_strings = calloc(2 * c->n_meta + 2, sizeof(char *));
    if (!c->entries || !c->values || !c->entry_ptrs || !c->meta_strings)
        abort();
    for (size_t i = 0; i < c->n_meta; i++) {
        c->meta_strings[2 * i] = strdup(o->node_meta[2 * i]);
        c->meta_strings[2 * i + 1] = strdup(o->node_meta[2 * i + 1] ? o->node_meta[2 * i + 1] : "");
        if (!c->meta_strings[2 * i] || !c->meta_strings[2 * i + 1])
            abort();
        google__protobuf__struct__fields_entry__init(&c->entries[i]);
        google__protobuf__value__init(&c->values[i]);
        c->values[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        c->values[i].string_value = c->meta_strings[2 * i + 1];
        c->entries[i].key = c->meta_strings[2 * i];
        c->entries[i].value = &c->values[i];
        c->entry_ptrs[i] = &c->entries[i];
    }
    c->meta.n_fields = c->n_meta;
    c->meta.fields = c->entry_ptrs;
    c->meta_strings[2 * c->n_meta] = strdup(o->node_id ? o->node_id : "ztunnel~1.1.1.1~ztunnel");
    if (!c->meta_strings[2 * c->n_meta])
        abort();
    c->node.id = c->meta_strings[2 * c->n_meta];
    c->node.metadata = &c->meta;
    c->node.user_agent_name = (char *)"ztunnel-c";
}

int zt_xds_client_start(uv_loop_t *loop, const struct zt_xds_client_opts *opts,
                        const struct zt_state *initial, const struct zt_xds_client_ops *ops,
                        void *ud, struct zt_xds_client **out, char *err, size_t errlen)
{
    struct zt_xds_client *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    if (parse_address(c, opts->address, err, errlen) < 0) {
        free(c);
        return ZT_E_CONFIG;
    }
    if (zt_tls_roots_new(opts->root_ca, &c->roots, err, errlen) < 0) {
        free(c);
        return ZT_E_CONFIG;
    }
    c->loop = loop;
    c->ops = ops;
    c->ud = ud;
    c->metrics = opts->metrics;
    snprintf(c->alt_hostname, sizeof(c->alt_hostname), "%s",
             opts->alt_hostname ? opts->alt_hostname : "");
    c->ping_interval_ms = opts->ping_interval_ms ? opts->ping_interval_ms : 30000;
    c->ping_timeout_ms = opts->ping_timeout_ms ? opts->ping_timeout_ms : 10000;
    zt_failover_init(&c->fo);
    c->token_path = opts->token_path ? strdup(opts->token_path) : NULL;
    c->cluster_id = strdup(opts->cluster_id ? opts->cluster_id : "Kubernetes");
    build_node(c, opts);
    c->ads = zt_ads_new(&ads_ops, c, initial);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->holds = 1;
    c->state = ZT_XDS_ST_BACKOFF;
    start_connect(c);
    *out = c;
    return 0;
}

static void release(struct zt_xds_client *c)
{
    if (--c->holds > 0)
        return;
    for (size_t i = 0; i < 2 * c->n_meta + 1; i++)
        free(c->meta_strings[i]);
    free(c->meta_strings);
    free(c->entries);
    free(c->values);
    free(c->entry_ptrs);
    zt_ads_free(c->ads);
    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        for (size_t i = 0; i < c->kept[t].n; i++)
            kept_cleanup(&c->kept[t].v[i]);
        free(c->kept[t].v);
    }
    zt_tls_roots_free(c->roots);
    free(c->token_path);
    free(c->cluster_id);
    free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    release(h->data);
}

void zt_xds_client_stop(struct zt_xds_client *c)
{
    if (!c || c->state == ZT_XDS_ST_STOPPED)
        return;
    set_state(c, ZT_XDS_ST_STOPPED);
    if (c->call) {
        zt_grpc_call_cancel(c->call);
        c->call = NULL;
    }
    if (c->h2)
        zt_h2conn_close(c->h2, ZT_E_CLOSED);
    if (c->gai_pending)
        uv_cancel((uv_req_t *)&c->gai);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
