/* The istio_tcp_* metrics of proxied connections, labelled as Istio's
 * ztunnel does (wire facts §7.1): reporter "source" on outbound,
 * "destination" on inbound; the peer workloads come from the state snapshot
 * the connection started under. */
#include "proxy/proxy_int.h"

#include "telemetry/headers.h"

#include <stdlib.h>
#include <string.h>

void zt_workload_baggage(const struct zt_workload *wl, char *buf, size_t cap)
{
    struct zt_telemetry_baggage b;
    memset(&b, 0, sizeof(b));
    buf[0] = 0;
    if (!wl)
        return;
#define COPY(field, v) snprintf(b.field, sizeof(b.field), "%s", (v) ? (v) : "")
    COPY(cluster, wl->cluster_id);
    COPY(namespace_, wl->namespace);
    COPY(workload, wl->workload_name && wl->workload_name[0] ? wl->workload_name : wl->name);
    COPY(workload_type, zt_workload_type_str(wl->workload_type));
    COPY(service, wl->canonical_name);
    COPY(version, wl->canonical_revision);
    COPY(region, wl->locality.region);
    COPY(zone, wl->locality.zone);
#undef COPY
    if (zt_telemetry_baggage_format(&b, buf, cap) < 0)
        buf[0] = 0;
}

static void workload_side(struct zt_traffic_labels *l, bool src, const struct zt_workload *wl,
                          const char *principal, char *principal_buf, size_t cap)
{
    int b = src ? ZT_TL_SOURCE_WORKLOAD : ZT_TL_DESTINATION_WORKLOAD;
    if (wl) {
        l->v[b] = wl->workload_name && wl->workload_name[0] ? wl->workload_name : wl->name;
        l->v[src ? ZT_TL_SOURCE_CANONICAL_SERVICE : ZT_TL_DESTINATION_CANONICAL_SERVICE] =
            wl->canonical_name;
        l->v[src ? ZT_TL_SOURCE_CANONICAL_REVISION : ZT_TL_DESTINATION_CANONICAL_REVISION] =
            wl->canonical_revision;
        l->v[src ? ZT_TL_SOURCE_WORKLOAD_NAMESPACE : ZT_TL_DESTINATION_WORKLOAD_NAMESPACE] =
            wl->namespace;
        l->v[src ? ZT_TL_SOURCE_APP : ZT_TL_DESTINATION_APP] = wl->canonical_name;
        l->v[src ? ZT_TL_SOURCE_VERSION : ZT_TL_DESTINATION_VERSION] = wl->canonical_revision;
        l->v[src ? ZT_TL_SOURCE_CLUSTER : ZT_TL_DESTINATION_CLUSTER] = wl->cluster_id;
        l->v[src ? ZT_TL_SOURCE_REGION : ZT_TL_DESTINATION_REGION] = wl->locality.region;
        l->v[src ? ZT_TL_SOURCE_ZONE : ZT_TL_DESTINATION_ZONE] = wl->locality.zone;
        l->has_locality = true;
    }
    if (principal && principal[0])
        l->v[src ? ZT_TL_SOURCE_PRINCIPAL : ZT_TL_DESTINATION_PRINCIPAL] = principal;
    else if (wl && principal_buf && zt_workload_identity(wl, principal_buf, cap) == 0)
        l->v[src ? ZT_TL_SOURCE_PRINCIPAL : ZT_TL_DESTINATION_PRINCIPAL] = principal_buf;
}

/* The first service of `wl` when none was dialed (inbound, direct). */
static const struct zt_service *guess_service(const struct zt_state *s,
                                              const struct zt_workload *wl)
{
    if (!wl || wl->n_services == 0)
        return NULL;
    return zt_state_service_by_key(s, wl->services[0].key);
}

/* A source known only by its baggage (wire facts §2.3): as Istio's ztunnel,
 * only inbound over HBONE and only when no workload has the source's IP.
 * These values are the peer's choice, so they are marked from_peer and the
 * registry caps how many such label sets it keeps. */
static void baggage_side(struct zt_traffic_labels *l, const struct zt_telemetry_baggage *b)
{
    l->from_peer = ZT_TL_BIT(ZT_TL_SOURCE_WORKLOAD) | ZT_TL_BIT(ZT_TL_SOURCE_CANONICAL_SERVICE) |
                   ZT_TL_BIT(ZT_TL_SOURCE_CANONICAL_REVISION) |
                   ZT_TL_BIT(ZT_TL_SOURCE_WORKLOAD_NAMESPACE) | ZT_TL_BIT(ZT_TL_SOURCE_APP) |
                   ZT_TL_BIT(ZT_TL_SOURCE_VERSION) | ZT_TL_BIT(ZT_TL_SOURCE_CLUSTER) |
                   ZT_TL_BIT(ZT_TL_SOURCE_REGION) | ZT_TL_BIT(ZT_TL_SOURCE_ZONE);
    l->v[ZT_TL_SOURCE_WORKLOAD] = b->workload;
    l->v[ZT_TL_SOURCE_CANONICAL_SERVICE] = b->service;
    l->v[ZT_TL_SOURCE_CANONICAL_REVISION] = b->version;
    l->v[ZT_TL_SOURCE_WORKLOAD_NAMESPACE] = b->namespace_;
    l->v[ZT_TL_SOURCE_APP] = b->service;
    l->v[ZT_TL_SOURCE_VERSION] = b->version;
    l->v[ZT_TL_SOURCE_CLUSTER] = b->cluster;
    l->v[ZT_TL_SOURCE_REGION] = b->region;
    l->v[ZT_TL_SOURCE_ZONE] = b->zone;
    l->has_locality = true;
}

static void build(struct zt_traffic_labels *l, enum zt_conn_kind kind,
                  const struct zt_workload *src_wl, const char *src_principal,
                  const struct zt_workload *dst_wl, const char *dst_principal,
                  const struct zt_service *svc, bool mtls, enum zt_close_reason why, char *pbuf,
                  size_t pcap)
{
    memset(l, 0, sizeof(*l));
    bool outbound = kind == ZT_CONN_OUTBOUND;
    l->v[ZT_TL_REPORTER] = outbound ? "source" : "destination";
    /* Principals are what mTLS proved, so only for HBONE; the reporter's own
     * principal falls back to its workload's identity. */
    workload_side(l, true, src_wl, src_principal, mtls && outbound ? pbuf : NULL, pcap);
    workload_side(l, false, dst_wl, dst_principal, mtls && !outbound ? pbuf : NULL, pcap);
    if (!mtls)
        l->v[ZT_TL_SOURCE_PRINCIPAL] = l->v[ZT_TL_DESTINATION_PRINCIPAL] = NULL;
    if (svc) {
        l->v[ZT_TL_DESTINATION_SERVICE] = svc->hostname;
        l->v[ZT_TL_DESTINATION_SERVICE_NAMESPACE] = svc->namespace;
        l->v[ZT_TL_DESTINATION_SERVICE_NAME] = svc->name;
    }
    l->v[ZT_TL_REQUEST_PROTOCOL] = "tcp";
    l->v[ZT_TL_RESPONSE_FLAGS] = zt_close_reason_flag(why);
    l->v[ZT_TL_CONNECTION_SECURITY_POLICY] = mtls ? "mutual_tls" : "unknown";
}

static void conn_labels(struct zt_conn *c, struct zt_traffic_labels *l, char *pbuf, size_t cap)
{
    bool mtls = c->kind == ZT_CONN_INBOUND_HBONE || c->mtls;
    const struct zt_service *svc = c->dst_svc;
    if (!svc && c->kind != ZT_CONN_OUTBOUND)
        svc = guess_service(c->snap, c->dst_wl);
    build(l, c->kind, c->src_wl, c->src_identity, c->dst_wl, c->dst_identity, svc, mtls, c->reason,
          pbuf, cap);
    if (!c->src_wl && c->src_bag)
        baggage_side(l, c->src_bag);
}

static enum zt_gauge sockets_gauge(enum zt_conn_kind kind)
{
    return kind == ZT_CONN_OUTBOUND ? ZT_G_TCP_SOCKETS_OPEN_SOURCE
                                    : ZT_G_TCP_SOCKETS_OPEN_DESTINATION;
}

void zt_conn_set_peers(struct zt_conn *c, const struct zt_workload *src_wl,
                       const struct zt_workload *dst_wl, const struct zt_service *svc)
{
    if (!c->snap)
        c->snap = zt_state_ref(c->pod->pw->state);
    c->src_wl = src_wl;
    c->dst_wl = dst_wl;
    c->dst_svc = svc;
}

void zt_conn_metrics_open(struct zt_conn *c)
{
    zt_conn_log_opened(c);
    struct zt_metrics *m = c->pod->pw->proxy->opts.metrics;
    if (!m || c->series || !c->snap)
        return;
    struct zt_traffic_labels l;
    char pbuf[ZT_SPIFFE_ID_MAX + 1];
    conn_labels(c, &l, pbuf, sizeof(pbuf));
    c->series = zt_metrics_tcp_series(m, (unsigned)c->pod->pw->worker.id, &l);
    zt_tcp_series_opened(c->series);
    zt_metrics_gauge_add(m, sockets_gauge(c->kind), 1);
}

void zt_conn_metrics_close(struct zt_conn *c)
{
    struct zt_metrics *m = c->pod->pw->proxy->opts.metrics;
    if (m && c->series) {
        unsigned shard = (unsigned)c->pod->pw->worker.id;
        struct zt_tcp_series *s = c->series, *failed = NULL;
        if (c->reason != ZT_CLOSE_NONE) {
            struct zt_traffic_labels l;
            char pbuf[ZT_SPIFFE_ID_MAX + 1];
            conn_labels(c, &l, pbuf, sizeof(pbuf));
            s = failed = zt_metrics_tcp_series(m, shard, &l);
            zt_tcp_series_failed(s);
        }
        /* received = client to server, sent = server to client. */
        bool a_is_client = c->kind != ZT_CONN_INBOUND_HBONE;
        uint64_t received =
            a_is_client ? c->relay.flow[ZT_RELAY_UP].bytes : c->relay.flow[ZT_RELAY_DOWN].bytes;
        uint64_t sent =
            a_is_client ? c->relay.flow[ZT_RELAY_DOWN].bytes : c->relay.flow[ZT_RELAY_UP].bytes;
        zt_tcp_series_closed(s);
        zt_tcp_series_add_bytes(s, received, sent);
        zt_metrics_gauge_add(m, sockets_gauge(c->kind), -1);
        /* Each lookup took a hold, even one that found the same series. */
        zt_metrics_tcp_series_release(m, shard, failed);
        zt_metrics_tcp_series_release(m, shard, c->series);
        c->series = NULL;
    }
    zt_state_unref(c->snap);
    c->snap = NULL;
    c->src_wl = c->dst_wl = NULL;
    c->dst_svc = NULL;
    free(c->src_bag);
    c->src_bag = NULL;
}

void zt_pod_metrics_failed(struct zt_pod_inst *pod, enum zt_conn_kind kind,
                           const struct zt_workload *src_wl, const char *src_principal,
                           const struct zt_workload *dst_wl, enum zt_close_reason why)
{
    struct zt_metrics *m = pod->pw->proxy->opts.metrics;
    if (!m)
        return;
    struct zt_traffic_labels l;
    char pbuf[ZT_SPIFFE_ID_MAX + 1];
    bool mtls = kind == ZT_CONN_INBOUND_HBONE;
    const struct zt_service *svc =
        kind != ZT_CONN_OUTBOUND ? guess_service(pod->pw->state, dst_wl) : NULL;
    build(&l, kind, src_wl, src_principal, dst_wl, NULL, svc, mtls, why, pbuf, sizeof(pbuf));
    struct zt_tcp_series *s = zt_metrics_tcp_series(m, (unsigned)pod->pw->worker.id, &l);
    zt_tcp_series_opened(s);
    zt_tcp_series_failed(s);
    zt_tcp_series_closed(s);
    zt_metrics_tcp_series_release(m, (unsigned)pod->pw->worker.id, s);
}

void zt_pod_dns_metrics(struct zt_pod_inst *pod, const struct zt_dns_event *ev)
{
    struct zt_metrics *m = pod->pw->proxy->opts.metrics;
    if (!m)
        return;
    char type[32];
    const struct zt_workload *wl = ev->client;
    struct zt_metrics_dns_sample s = {
        .query_type = ev->q->qtype ? zt_dns_type_str(ev->q->qtype, type, sizeof(type)) : NULL,
        .protocol = ev->tcp ? "tcp" : "udp",
        .canonical_service = wl ? wl->canonical_name : NULL,
        .canonical_revision = wl ? wl->canonical_revision : NULL,
        .forwarded = ev->forwarded,
        .failed = ev->upstream_failed,
        .upstream_us = ev->upstream_us,
    };
    zt_metrics_dns(m, &s);
}

void zt_pod_on_demand_dns(struct zt_pod_inst *pod, const struct zt_workload *dst)
{
    struct zt_metrics *m = pod->pw->proxy->opts.metrics;
    const struct zt_workload *src = zt_pod_self(pod);
    if (!m)
        return;
    char principal[ZT_SPIFFE_ID_MAX + 1] = "";
    if (src && zt_workload_identity(src, principal, sizeof(principal)) < 0)
        principal[0] = 0;
    struct zt_metrics_on_demand_dns_sample s = {
        .source_workload =
            src ? (src->workload_name && src->workload_name[0] ? src->workload_name : src->name)
                : NULL,
        .source_canonical_service = src ? src->canonical_name : NULL,
        .source_canonical_revision = src ? src->canonical_revision : NULL,
        .source_workload_namespace = src ? src->namespace : NULL,
        .source_principal = principal,
        .source_app = src ? src->canonical_name : NULL,
        .source_version = src ? src->canonical_revision : NULL,
        .source_cluster = src ? src->cluster_id : NULL,
        .hostname = dst->hostname,
    };
    zt_metrics_on_demand_dns(m, &s);
}
