#include "telemetry/metrics.h"

#include "telemetry/metrics_int.h"

#include "base/alloc.h"
#include "base/list.h"

#include <assert.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* The five istio_tcp_* counters of a series, in rendering order. */
enum tcp_counter {
    TCP_OPENED,
    TCP_CLOSED,
    TCP_FAILED,
    TCP_RECEIVED_BYTES,
    TCP_SENT_BYTES,
    TCP_COUNT
};

static const struct {
    const char *name;
    const char *help;
} tcp_families[TCP_COUNT] = {
    [TCP_OPENED] = {"istio_tcp_connections_opened_total", "TCP connections opened."},
    [TCP_CLOSED] = {"istio_tcp_connections_closed_total", "TCP connections closed."},
    [TCP_FAILED] = {"istio_tcp_connections_failed_total",
                    "TCP connections that failed (denied, unreachable, TLS or identity "
                    "errors)."},
    [TCP_RECEIVED_BYTES] = {"istio_tcp_received_bytes_total",
                            "Bytes sent from client to server over TCP connections."},
    [TCP_SENT_BYTES] = {"istio_tcp_sent_bytes_total",
                        "Bytes sent from server to client over TCP connections."},
};

static const char *const tl_names[ZT_TL_COUNT] = {
    [ZT_TL_REPORTER] = "reporter",
    [ZT_TL_SOURCE_WORKLOAD] = "source_workload",
    [ZT_TL_SOURCE_CANONICAL_SERVICE] = "source_canonical_service",
    [ZT_TL_SOURCE_CANONICAL_REVISION] = "source_canonical_revision",
    [ZT_TL_SOURCE_WORKLOAD_NAMESPACE] = "source_workload_namespace",
    [ZT_TL_SOURCE_PRINCIPAL] = "source_principal",
    [ZT_TL_SOURCE_APP] = "source_app",
    [ZT_TL_SOURCE_VERSION] = "source_version",
    [ZT_TL_SOURCE_CLUSTER] = "source_cluster",
    [ZT_TL_DESTINATION_SERVICE] = "destination_service",
    [ZT_TL_DESTINATION_SERVICE_NAMESPACE] = "destination_service_namespace",
    [ZT_TL_DESTINATION_SERVICE_NAME] = "destination_service_name",
    [ZT_TL_DESTINATION_WORKLOAD] = "destination_workload",
    [ZT_TL_DESTINATION_CANONICAL_SERVICE] = "destination_canonical_service",
    [ZT_TL_DESTINATION_CANONICAL_REVISION] = "destination_canonical_revision",
    [ZT_TL_DESTINATION_WORKLOAD_NAMESPACE] = "destination_workload_namespace",
    [ZT_TL_DESTINATION_PRINCIPAL] = "destination_principal",
    [ZT_TL_DESTINATION_APP] = "destination_app",
    [ZT_TL_DESTINATION_VERSION] = "destination_version",
    [ZT_TL_DESTINATION_CLUSTER] = "destination_cluster",
    [ZT_TL_REQUEST_PROTOCOL] = "request_protocol",
    [ZT_TL_RESPONSE_FLAGS] = "response_flags",
    [ZT_TL_CONNECTION_SECURITY_POLICY] = "connection_security_policy",
    [ZT_TL_SOURCE_REGION] = "source_region",
    [ZT_TL_SOURCE_ZONE] = "source_zone",
    [ZT_TL_DESTINATION_REGION] = "destination_region",
    [ZT_TL_DESTINATION_ZONE] = "destination_zone",
};

/* A series is keyed by its rendered label block ("{reporter=\"source\",...}"):
 * two label sets that render the same are the same series, which is exactly
 * the rule the scrape merges by, and the string is ready to print. */
struct zt_tcp_series {
    struct zt_tcp_series *next; /* hash chain in the shard */
    /* The shard's idle peer series, least recently released first; linked
     * only while is_peer and holds == 0. */
    struct zt_list_node idle_link;
    uint64_t hash;
    size_t labels_len;
    unsigned holds; /* connections counting into it; under the shard's mu */
    bool is_peer;
    _Atomic uint64_t v[TCP_COUNT];
    char labels[]; /* NUL-terminated */
};

struct shard {
    pthread_mutex_t mu;
    struct zt_tcp_series **buckets; /* nbuckets is a power of two */
    size_t nbuckets;
    size_t count;
    size_t n_peer, peer_max; /* peer series kept, and the shard's share */
    struct zt_list idle;     /* of zt_tcp_series, through idle_link */
    struct zt_buf scratch;   /* the key being looked up, under mu */
};

/* The DNS proxy's series (zt_metrics_dns): few, so a short array. */
#define DNS_NBUCKETS 6
static const double dns_bounds[DNS_NBUCKETS] = {0.0005, 0.001, 0.01, 0.1, 1.0, 5.0};
static const char *const dns_bound_strs[DNS_NBUCKETS] = {"0.0005", "0.001", "0.01",
                                                         "0.1",    "1",     "5"};
struct dns_series {
    char *labels; /* rendered block, without the histogram's le */
    uint64_t requests, upstream, failures;
    uint64_t buckets[DNS_NBUCKETS], count;
    double sum;
};

/* The xDS message counters of one type URL. */
struct xds_url {
    char *url;    /* as received, to find it again */
    char *labels; /* rendered {url="..."} block */
    uint64_t messages, bytes;
};

/* istio_on_demand_dns_total: a label block and its count. */
struct odd_series {
    char *labels;
    uint64_t n;
};

struct zt_metrics {
    pthread_mutex_t dns_mu; /* also for odd */
    struct dns_series *dns;
    size_t n_dns;
    struct odd_series *odd;
    size_t n_odd;
    unsigned nshards;
    struct shard *shards;
    char *build_labels; /* rendered istio_build label block */
    _Atomic int64_t gauges[ZT_G_COUNT];
    _Atomic uint64_t counters[ZT_C_COUNT];
    _Atomic uint64_t peer_evicted, peer_dropped;
    /* istio_xds_message*: one response per push, so a mutex is cheap. */
    pthread_mutex_t xds_mu;
    struct xds_url xds_urls[ZT_METRICS_XDS_URLS_MAX];
    size_t n_xds_urls;
    struct xds_url xds_other;            /* URLs past the cap; url and labels unused */
    struct zt_request_metrics *requests; /* request_metrics.c */
};

const char *zt_tl_name(enum zt_tl l)
{
    if ((unsigned)l >= ZT_TL_COUNT)
        return "unknown";
    return tl_names[l];
}

static void *xmalloc(size_t n)
{
    void *p = zt_xmalloc(n);
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = zt_xcalloc(n, size);
    return p;
}

static void put_str(struct zt_buf *b, const char *s)
{
    zt_buf_append(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at p (at most n bytes available), or 0
 * if the bytes there are not one (overlong forms, surrogates and values past
 * U+10FFFF are rejected, as the UTF-8 RFC requires). */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* Appends `v` as a quoted label value: NULL or "" becomes "unknown", at most
 * ZT_METRICS_LABEL_VALUE_MAX input bytes are used (never half a character),
 * backslash, double quote and newline are escaped as the text format asks,
 * and invalid UTF-8 bytes become U+FFFD. */
static void put_label_value(struct zt_buf *b, const char *v)
{
    zt_buf_append(b, "\"", 1);
    if (!v || !*v) {
        put_str(b, "unknown");
        zt_buf_append(b, "\"", 1);
        return;
    }
    const unsigned char *p = (const unsigned char *)v;
    size_t n = strnlen(v, ZT_METRICS_LABEL_VALUE_MAX);
    /* When the cap cuts a character (the next byte continues it), back off
     * to its start; v[n] is readable, it is at worst the terminator. */
    for (int k = 0; k < 3 && n > 0 && (p[n] & 0xc0) == 0x80; k++)
        n--;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '\\') {
            put_str(b, "\\\\");
            i++;
        } else if (c == '"') {
            put_str(b, "\\\"");
            i++;
        } else if (c == '\n') {
            put_str(b, "\\n");
            i++;
        } else {
            size_t len = utf8_seq_len(p + i, n - i);
            if (len == 0) {
                put_str(b, "\xef\xbf\xbd");
                i++;
            } else {
                zt_buf_append(b, p + i, len);
                i += len;
            }
        }
    }
    zt_buf_append(b, "\"", 1);
}

/* Renders the label block of `l` into `b` (emptied first). */
static void render_labels(struct zt_buf *b, const struct zt_traffic_labels *l)
{
    zt_buf_consume(b, b->len);
    unsigned n = l->has_locality ? ZT_TL_COUNT : ZT_TL_SOURCE_REGION;
    zt_buf_append(b, "{", 1);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            zt_buf_append(b, ",", 1);
        put_str(b, tl_names[i]);
        zt_buf_append(b, "=", 1);
        put_label_value(b, l->v[i]);
    }
    zt_buf_append(b, "}", 1);
}

/* FNV-1a, 64 bit. */
static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void shard_grow(struct shard *sh)
{
    size_t nb = sh->nbuckets * 2;
    struct zt_tcp_series **b = xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < sh->nbuckets; i++) {
        struct zt_tcp_series *s = sh->buckets[i];
        while (s) {
            struct zt_tcp_series *next = s->next;
            size_t j = s->hash & (nb - 1);
            s->next = b[j];
            b[j] = s;
            s = next;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->nbuckets = nb;
}

/* Removes an idle peer series from the shard and frees it. */
static void evict(struct shard *sh, struct zt_tcp_series *s)
{
    struct zt_tcp_series **pp = &sh->buckets[s->hash & (sh->nbuckets - 1)];
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    zt_list_remove(&s->idle_link);
    sh->count--;
    sh->n_peer--;
    free(s);
}

static struct zt_tcp_series *find(struct shard *sh, const uint8_t *key, size_t key_len, uint64_t h)
{
    for (struct zt_tcp_series *s = sh->buckets[h & (sh->nbuckets - 1)]; s; s = s->next)
        if (s->hash == h && s->labels_len == key_len && memcmp(s->labels, key, key_len) == 0)
            return s;
    return NULL;
}

/* True when some label marked from_peer has a value: only then does the
 * peer's choice make the label set differ from one the config gives. */
static bool has_peer_value(const struct zt_traffic_labels *l)
{
    for (unsigned i = 0; i < ZT_TL_COUNT; i++)
        if ((l->from_peer & ZT_TL_BIT(i)) && l->v[i] && l->v[i][0])
            return true;
    return false;
}

struct zt_tcp_series *zt_metrics_tcp_series(struct zt_metrics *m, unsigned shard,
                                            const struct zt_traffic_labels *labels)
{
    assert(shard < m->nshards);
    struct shard *sh = &m->shards[shard];
    struct zt_traffic_labels without_peer;
    bool is_peer = has_peer_value(labels);
    struct zt_tcp_series *s;

    pthread_mutex_lock(&sh->mu);
    render_labels(&sh->scratch, labels);
    uint64_t h = hash_bytes(zt_buf_head(&sh->scratch), sh->scratch.len);
    s = find(sh, zt_buf_head(&sh->scratch), sh->scratch.len, h);
    if (!s && is_peer && sh->n_peer >= sh->peer_max) {
        if (!zt_list_empty(&sh->idle)) {
            evict(sh, zt_list_entry(zt_list_first(&sh->idle), struct zt_tcp_series, idle_link));
            atomic_fetch_add_explicit(&m->peer_evicted, 1, memory_order_relaxed);
        } else {
            /* Every peer series is in use: count this connection under the
             * same labels without the peer's values, a set the config bounds. */
            without_peer = *labels;
            for (unsigned i = 0; i < ZT_TL_COUNT; i++)
                if (without_peer.from_peer & ZT_TL_BIT(i))
                    without_peer.v[i] = NULL;
            without_peer.from_peer = 0;
            is_peer = false;
            atomic_fetch_add_explicit(&m->peer_dropped, 1, memory_order_relaxed);
            render_labels(&sh->scratch, &without_peer);
            h = hash_bytes(zt_buf_head(&sh->scratch), sh->scratch.len);
            s = find(sh, zt_buf_head(&sh->scratch), sh->scratch.len, h);
        }
    }
    if (s) {
        if (s->holds++ == 0 && s->is_peer)
            zt_list_remove(&s->idle_link);
        goto out;
    }

    size_t key_len = sh->scratch.len;
    s = xmalloc(sizeof(*s) + key_len + 1);
    s->hash = h;
    s->labels_len = key_len;
    s->idle_link = (struct zt_list_node){0};
    s->holds = 1;
    s->is_peer = is_peer;
    for (int i = 0; i < TCP_COUNT; i++)
        atomic_init(&s->v[i], 0);
    memcpy(s->labels, zt_buf_head(&sh->scratch), key_len);
    s->labels[key_len] = 0;
    if (sh->count >= sh->nbuckets)
        shard_grow(sh);
    size_t j = h & (sh->nbuckets - 1);
    s->next = sh->buckets[j];
    sh->buckets[j] = s;
    sh->count++;
    if (is_peer)
        sh->n_peer++;
out:
    pthread_mutex_unlock(&sh->mu);
    return s;
}

void zt_metrics_tcp_series_release(struct zt_metrics *m, unsigned shard, struct zt_tcp_series *s)
{
    if (!s)
        return;
    assert(shard < m->nshards);
    struct shard *sh = &m->shards[shard];
    pthread_mutex_lock(&sh->mu);
    assert(s->holds > 0);
    if (--s->holds == 0 && s->is_peer)
        zt_list_insert_tail(&sh->idle, &s->idle_link);
    pthread_mutex_unlock(&sh->mu);
}

void zt_tcp_series_opened(struct zt_tcp_series *s)
{
    atomic_fetch_add_explicit(&s->v[TCP_OPENED], 1, memory_order_relaxed);
}

void zt_tcp_series_closed(struct zt_tcp_series *s)
{
    atomic_fetch_add_explicit(&s->v[TCP_CLOSED], 1, memory_order_relaxed);
}

void zt_tcp_series_failed(struct zt_tcp_series *s)
{
    atomic_fetch_add_explicit(&s->v[TCP_FAILED], 1, memory_order_relaxed);
}

void zt_tcp_series_add_bytes(struct zt_tcp_series *s, uint64_t received, uint64_t sent)
{
    if (received)
        atomic_fetch_add_explicit(&s->v[TCP_RECEIVED_BYTES], received, memory_order_relaxed);
    if (sent)
        atomic_fetch_add_explicit(&s->v[TCP_SENT_BYTES], sent, memory_order_relaxed);
}

void zt_metrics_gauge_add(struct zt_metrics *m, enum zt_gauge g, int64_t delta)
{
    assert((unsigned)g < ZT_G_COUNT);
    atomic_fetch_add_explicit(&m->gauges[g], delta, memory_order_relaxed);
}

void zt_metrics_gauge_set(struct zt_metrics *m, enum zt_gauge g, int64_t value)
{
    assert((unsigned)g < ZT_G_COUNT);
    atomic_store_explicit(&m->gauges[g], value, memory_order_relaxed);
}

void zt_metrics_counter_inc(struct zt_metrics *m, enum zt_counter c)
{
    assert((unsigned)c < ZT_C_COUNT);
    atomic_fetch_add_explicit(&m->counters[c], 1, memory_order_relaxed);
}

static char *dns_labels(const struct zt_metrics_dns_sample *s, const char *qtype)
{
    struct zt_buf b = {0};
    put_str(&b, "{request_query_type=");
    put_label_value(&b, qtype);
    put_str(&b, ",request_protocol=");
    put_label_value(&b, s->protocol);
    put_str(&b, ",source_canonical_service=");
    put_label_value(&b, s->canonical_service);
    put_str(&b, ",source_canonical_revision=");
    put_label_value(&b, s->canonical_revision);
    zt_buf_append(&b, "}", 2); /* with the terminator */
    return (char *)b.data;
}

static struct dns_series *dns_find(struct zt_metrics *m, const char *labels)
{
    for (size_t i = 0; i < m->n_dns; i++)
        if (strcmp(m->dns[i].labels, labels) == 0)
            return &m->dns[i];
    return NULL;
}

void zt_metrics_dns(struct zt_metrics *m, const struct zt_metrics_dns_sample *s)
{
    char *labels = dns_labels(s, s->query_type);
    pthread_mutex_lock(&m->dns_mu);
    struct dns_series *d = dns_find(m, labels);
    if (!d && m->n_dns >= ZT_METRICS_DNS_SERIES_MAX) {
        free(labels);
        labels = dns_labels(s, "other");
        d = dns_find(m, labels);
    }
    if (!d) {
        /* One spare slot past the cap holds the "other" series. */
        m->dns = zt_xrealloc(m->dns, sizeof(*m->dns) * (m->n_dns + 1));
        d = &m->dns[m->n_dns++];
        memset(d, 0, sizeof(*d));
        d->labels = labels;
        labels = NULL;
    }
    d->requests++;
    if (s->forwarded) {
        double sec = (double)s->upstream_us / 1e6;
        d->upstream++;
        d->failures += s->failed;
        d->count++;
        d->sum += sec;
        for (int i = 0; i < DNS_NBUCKETS; i++)
            d->buckets[i] += sec <= dns_bounds[i];
    }
    pthread_mutex_unlock(&m->dns_mu);
    free(labels);
}

void zt_metrics_xds_message(struct zt_metrics *m, const char *type_url, uint64_t bytes)
{
    const char *url = type_url ? type_url : "";
    struct xds_url *u = NULL;

    pthread_mutex_lock(&m->xds_mu);
    for (size_t i = 0; i < m->n_xds_urls && !u; i++)
        if (strcmp(m->xds_urls[i].url, url) == 0)
            u = &m->xds_urls[i];
    if (!u && m->n_xds_urls < ZT_METRICS_XDS_URLS_MAX) {
        struct zt_buf b = {0};
        u = &m->xds_urls[m->n_xds_urls++];
        u->url = zt_xstrdup(url);
        put_str(&b, "{url=");
        put_label_value(&b, url);
        zt_buf_append(&b, "}", 2); /* with the terminator */
        u->labels = (char *)b.data;
    }
    if (!u)
        u = &m->xds_other;
    u->messages++;
    u->bytes += bytes;
    pthread_mutex_unlock(&m->xds_mu);
}

static char *odd_labels(const struct zt_metrics_on_demand_dns_sample *s, const char *host)
{
    const char *names[9] = {"source_workload",
                            "source_canonical_service",
                            "source_canonical_revision",
                            "source_workload_namespace",
                            "source_principal",
                            "source_app",
                            "source_version",
                            "source_cluster",
                            "hostname"};
    const char *values[9] = {s->source_workload,
                             s->source_canonical_service,
                             s->source_canonical_revision,
                             s->source_workload_namespace,
                             s->source_principal,
                             s->source_app,
                             s->source_version,
                             s->source_cluster,
                             host};
    struct zt_buf b = {0};
    for (int i = 0; i < 9; i++) {
        put_str(&b, i ? "," : "{");
        put_str(&b, names[i]);
        put_str(&b, "=");
        put_label_value(&b, values[i]);
    }
    zt_buf_append(&b, "}", 2); /* with the terminator */
    return (char *)b.data;
}

void zt_metrics_on_demand_dns(struct zt_metrics *m, const struct zt_metrics_on_demand_dns_sample *s)
{
    char *labels = odd_labels(s, s->hostname);
    pthread_mutex_lock(&m->dns_mu);
    struct odd_series *d = NULL;
    for (int round = 0; round < 2 && !d; round++) {
        for (size_t i = 0; i < m->n_odd && !d; i++)
            if (strcmp(m->odd[i].labels, labels) == 0)
                d = &m->odd[i];
        if (!d && m->n_odd >= ZT_METRICS_DNS_SERIES_MAX && round == 0) {
            free(labels);
            labels = odd_labels(s, "other");
            continue;
        }
        break;
    }
    if (!d) {
        m->odd = zt_xrealloc(m->odd, sizeof(*m->odd) * (m->n_odd + 1));
        d = &m->odd[m->n_odd++];
        d->labels = labels;
        d->n = 0;
        labels = NULL;
    }
    d->n++;
    pthread_mutex_unlock(&m->dns_mu);
    free(labels);
}

struct zt_metrics *zt_metrics_new(unsigned nshards, const char *build_tag)
{
    struct zt_metrics *m = xcalloc(1, sizeof(*m));
    pthread_mutex_init(&m->dns_mu, NULL);
    m->nshards = nshards ? nshards : 1;
    m->shards = xcalloc(m->nshards, sizeof(*m->shards));
    for (unsigned i = 0; i < m->nshards; i++) {
        struct shard *sh = &m->shards[i];
        pthread_mutex_init(&sh->mu, NULL);
        zt_list_init(&sh->idle);
        sh->nbuckets = 64;
        sh->buckets = xcalloc(sh->nbuckets, sizeof(*sh->buckets));
        /* An even share of the cap, rounded down so the total never
         * exceeds it, and at least one. */
        sh->peer_max = ZT_METRICS_PEER_SERIES_MAX / m->nshards;
        if (sh->peer_max == 0)
            sh->peer_max = 1;
    }
    for (int i = 0; i < ZT_G_COUNT; i++)
        atomic_init(&m->gauges[i], 0);
    for (int i = 0; i < ZT_C_COUNT; i++)
        atomic_init(&m->counters[i], 0);
    atomic_init(&m->peer_evicted, 0);
    atomic_init(&m->peer_dropped, 0);
    pthread_mutex_init(&m->xds_mu, NULL);
    m->requests = zt_request_metrics_new(m->nshards);

    struct zt_buf b = {0};
    put_str(&b, "{component=\"ztunnel\",tag=");
    put_label_value(&b, build_tag);
    zt_buf_append(&b, "}", 2);        /* with the terminator */
    m->build_labels = (char *)b.data; /* off is 0: nothing was consumed */
    return m;
}

void zt_metrics_free(struct zt_metrics *m)
{
    if (!m)
        return;
    for (unsigned i = 0; i < m->nshards; i++) {
        struct shard *sh = &m->shards[i];
        for (size_t j = 0; j < sh->nbuckets; j++) {
            struct zt_tcp_series *s = sh->buckets[j];
            while (s) {
                struct zt_tcp_series *next = s->next;
                free(s);
                s = next;
            }
        }
        free(sh->buckets);
        zt_buf_release(&sh->scratch);
        pthread_mutex_destroy(&sh->mu);
    }
    free(m->shards);
    free(m->build_labels);
    for (size_t i = 0; i < m->n_dns; i++)
        free(m->dns[i].labels);
    free(m->dns);
    for (size_t i = 0; i < m->n_odd; i++)
        free(m->odd[i].labels);
    free(m->odd);
    pthread_mutex_destroy(&m->dns_mu);
    for (size_t i = 0; i < m->n_xds_urls; i++) {
        free(m->xds_urls[i].url);
        free(m->xds_urls[i].labels);
    }
    pthread_mutex_destroy(&m->xds_mu);
    zt_request_metrics_free(m->requests);
    free(m);
}

/* One row of the merged scrape: a label block and its summed counters. */
struct row {
    char *labels; /* a copy: the series may be evicted once its shard is unlocked */
    uint64_t v[TCP_COUNT];
};

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const struct row *)a)->labels, ((const struct row *)b)->labels);
}

/* Snapshots every shard's series into one array sorted by label block, with
 * equal blocks (the same label set seen by several writers) summed into one
 * row, and counts the peer series kept. Returns the row count; *out is
 * malloc'd (NULL when there are none), free it with free_rows. */
static size_t collect_rows(struct zt_metrics *m, struct row **out, size_t *n_peer)
{
    struct row *rows = NULL;
    size_t n = 0, cap = 0;

    *n_peer = 0;
    for (unsigned i = 0; i < m->nshards; i++) {
        struct shard *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        *n_peer += sh->n_peer;
        if (n + sh->count > cap) {
            cap = (n + sh->count) * 2;
            rows = zt_xrealloc(rows, cap * sizeof(*rows));
        }
        for (size_t j = 0; j < sh->nbuckets; j++) {
            for (struct zt_tcp_series *s = sh->buckets[j]; s; s = s->next) {
                struct row *r = &rows[n++];
                r->labels = xmalloc(s->labels_len + 1);
                memcpy(r->labels, s->labels, s->labels_len + 1);
                for (int k = 0; k < TCP_COUNT; k++)
                    r->v[k] = atomic_load_explicit(&s->v[k], memory_order_relaxed);
            }
        }
        pthread_mutex_unlock(&sh->mu);
    }
    if (n > 1)
        qsort(rows, n, sizeof(*rows), row_cmp);

    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        if (w > 0 && strcmp(rows[w - 1].labels, rows[r].labels) == 0) {
            for (int k = 0; k < TCP_COUNT; k++)
                rows[w - 1].v[k] += rows[r].v[k];
            free(rows[r].labels);
        } else {
            rows[w++] = rows[r];
        }
    }
    *out = rows;
    return w;
}

static void free_rows(struct row *rows, size_t n)
{
    for (size_t r = 0; r < n; r++)
        free(rows[r].labels);
    free(rows);
}

static void put_family_header(struct zt_buf *b, const char *name, const char *help,
                              const char *type)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    zt_buf_append(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void put_sample(struct zt_buf *b, const char *name, const char *labels, const char *value)
{
    put_str(b, name);
    if (labels)
        put_str(b, labels);
    zt_buf_append(b, " ", 1);
    put_str(b, value);
    zt_buf_append(b, "\n", 1);
}

static void put_u64(struct zt_buf *b, const char *name, const char *labels, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%" PRIu64, v);
    put_sample(b, name, labels, num);
}

static void put_i64(struct zt_buf *b, const char *name, const char *labels, int64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%" PRId64, v);
    put_sample(b, name, labels, num);
}

/* Open descriptors, counted from /proc/self/fd without the one used to
 * read it; -1 if it cannot be read. */
static int64_t count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

/* The DNS families appear once a query has been counted, as in Istio. */
static void render_dns(struct zt_metrics *m, struct zt_buf *out)
{
    static const char *const names[3] = {"istio_dns_requests_total",
                                         "istio_dns_upstream_requests_total",
                                         "istio_dns_upstream_failures_total"};
    static const char *const helps[3] = {
        "DNS requests answered or forwarded by the DNS proxy.",
        "DNS requests the DNS proxy forwarded to an upstream resolver.",
        "DNS requests forwarded upstream that no upstream resolver answered."};
    const char *h = "istio_dns_upstream_request_duration_seconds";
    pthread_mutex_lock(&m->dns_mu);
    if (m->n_odd)
        put_family_header(out, "istio_on_demand_dns_total",
                          "Lookups of an endpoint's hostname made for a connection.", "counter");
    for (size_t i = 0; i < m->n_odd; i++)
        put_u64(out, "istio_on_demand_dns_total", m->odd[i].labels, m->odd[i].n);
    for (int k = 0; k < 3 && m->n_dns; k++) {
        put_family_header(out, names[k], helps[k], "counter");
        for (size_t i = 0; i < m->n_dns; i++) {
            const struct dns_series *d = &m->dns[i];
            put_u64(out, names[k], d->labels,
                    k == 0   ? d->requests
                    : k == 1 ? d->upstream
                             : d->failures);
        }
    }
    if (m->n_dns)
        put_family_header(out, h,
                          "Time an upstream resolver took to answer a forwarded DNS request.",
                          "histogram");
    for (size_t i = 0; i < m->n_dns; i++) {
        const struct dns_series *d = &m->dns[i];
        char name[96], num[64];
        size_t ll = strlen(d->labels), cap = ll + 32;
        char *lb = xmalloc(cap);
        for (int b = 0; b <= DNS_NBUCKETS; b++) {
            /* The label block with le added before its closing brace. */
            snprintf(lb, cap, "%.*s,le=\"%s\"}", (int)(ll - 1), d->labels,
                     b < DNS_NBUCKETS ? dns_bound_strs[b] : "+Inf");
            snprintf(name, sizeof(name), "%s_bucket", h);
            put_u64(out, name, lb, b < DNS_NBUCKETS ? d->buckets[b] : d->count);
        }
        free(lb);
        snprintf(name, sizeof(name), "%s_sum", h);
        snprintf(num, sizeof(num), "%.6f", d->sum);
        put_sample(out, name, d->labels, num);
        snprintf(name, sizeof(name), "%s_count", h);
        put_u64(out, name, d->labels, d->count);
    }
    pthread_mutex_unlock(&m->dns_mu);
}

/* One counter family of labelled series, like Istio's label families: a
 * series appears once it has counted something, the family once it has a
 * series. */
struct labelled {
    const char *label;
    enum zt_counter c;
};
static void render_labelled(struct zt_metrics *m, struct zt_buf *out, const char *name,
                            const char *help, const struct labelled *v, size_t n)
{
    bool has_header = false;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = atomic_load_explicit(&m->counters[v[i].c], memory_order_relaxed);
        if (x == 0)
            continue;
        if (!has_header)
            put_family_header(out, name, help, "counter");
        has_header = true;
        put_u64(out, name, v[i].label, x);
    }
}

static void render_waypoint(struct zt_metrics *m, struct zt_buf *out)
{
    static const struct labelled jwt[] = {{"{result=\"allowed\"}", ZT_C_WP_JWT_ALLOWED},
                                          {"{result=\"denied\"}", ZT_C_WP_JWT_DENIED}};
    static const struct labelled rbac[] = {{"{result=\"allowed\"}", ZT_C_WP_RBAC_ALLOWED},
                                           {"{result=\"denied\"}", ZT_C_WP_RBAC_DENIED}};
    static const struct labelled shadow[] = {{"{result=\"allowed\"}", ZT_C_WP_RBAC_SHADOW_ALLOWED},
                                             {"{result=\"denied\"}", ZT_C_WP_RBAC_SHADOW_DENIED}};
    static const struct labelled limited[] = {{NULL, ZT_C_WP_RATE_LIMITED}};
    render_labelled(m, out, "ztunnel_waypoint_jwt_authn_total",
                    "Waypoint requests by JWT authentication result (RequestAuthentication).", jwt,
                    2);
    render_labelled(m, out, "ztunnel_waypoint_rbac_total",
                    "Waypoint requests by the enforced AuthorizationPolicies' verdict.", rbac, 2);
    render_labelled(m, out, "ztunnel_waypoint_rbac_shadow_total",
                    "Waypoint requests by the dry-run AuthorizationPolicies' verdict (not "
                    "enforced).",
                    shadow, 2);
    render_labelled(m, out, "ztunnel_waypoint_rate_limited_total",
                    "Waypoint requests answered 429 by a local rate limit.", limited, 1);
}

/* istio_xds_* */
static void render_xds(struct zt_metrics *m, struct zt_buf *out)
{
    static const struct labelled reasons[] = {
        {"{reason=\"ConnectionError\"}", ZT_C_XDS_TERMINATIONS_CONNECTION_ERROR},
        {"{reason=\"Error\"}", ZT_C_XDS_TERMINATIONS_ERROR},
        {"{reason=\"Reconnect\"}", ZT_C_XDS_TERMINATIONS_RECONNECT},
        {"{reason=\"Complete\"}", ZT_C_XDS_TERMINATIONS_COMPLETE},
    };
    render_labelled(m, out, "istio_xds_connection_terminations_total",
                    "The total number of completed connections to xds server (unstable).", reasons,
                    sizeof(reasons) / sizeof(reasons[0]));

    pthread_mutex_lock(&m->xds_mu);
    if (m->n_xds_urls > 0) {
        const struct xds_url *other = m->xds_other.messages ? &m->xds_other : NULL;
        put_family_header(out, "istio_xds_message_total",
                          "Total number of messages received (unstable).", "counter");
        for (size_t i = 0; i < m->n_xds_urls; i++)
            put_u64(out, "istio_xds_message_total", m->xds_urls[i].labels, m->xds_urls[i].messages);
        if (other)
            put_u64(out, "istio_xds_message_total", "{url=\"other\"}", other->messages);
        put_family_header(out, "istio_xds_message_bytes_total",
                          "Total number of bytes received (unstable).", "counter");
        for (size_t i = 0; i < m->n_xds_urls; i++)
            put_u64(out, "istio_xds_message_bytes_total", m->xds_urls[i].labels,
                    m->xds_urls[i].bytes);
        if (other)
            put_u64(out, "istio_xds_message_bytes_total", "{url=\"other\"}", other->bytes);
    }
    pthread_mutex_unlock(&m->xds_mu);
}

void zt_metrics_render(struct zt_metrics *m, struct zt_buf *out)
{
    struct row *rows;
    size_t n_peer;
    size_t nrows = collect_rows(m, &rows, &n_peer);

    /* The traffic families appear once some connection has been counted,
     * as in Istio, so an idle node does not export empty families. */
    for (int k = 0; k < TCP_COUNT && nrows > 0; k++) {
        put_family_header(out, tcp_families[k].name, tcp_families[k].help, "counter");
        for (size_t r = 0; r < nrows; r++)
            put_u64(out, tcp_families[k].name, rows[r].labels, rows[r].v[k]);
    }
    free_rows(rows, nrows);

    zt_request_metrics_render(m->requests, out);

    render_dns(m, out);

    put_family_header(out, "istio_build", "Build of this proxy (always 1).", "gauge");
    put_sample(out, "istio_build", m->build_labels, "1");

    static const struct {
        const char *name, *help;
        enum zt_gauge g;
    } wm_gauges[] = {
        {"workload_manager_active_proxy_count", "Pod proxies running.",
         ZT_G_WORKLOAD_MANAGER_ACTIVE_PROXIES},
        {"workload_manager_pending_proxy_count", "Pod proxies waiting to start.",
         ZT_G_WORKLOAD_MANAGER_PENDING_PROXIES},
    };
    for (size_t i = 0; i < sizeof(wm_gauges) / sizeof(wm_gauges[0]); i++) {
        put_family_header(out, wm_gauges[i].name, wm_gauges[i].help, "gauge");
        put_i64(out, wm_gauges[i].name, NULL,
                atomic_load_explicit(&m->gauges[wm_gauges[i].g], memory_order_relaxed));
    }

    static const struct {
        const char *name, *help;
        enum zt_counter c;
    } wm_counters[] = {
        {"workload_manager_proxies_started_total", "Pod proxies started.",
         ZT_C_WORKLOAD_MANAGER_PROXIES_STARTED},
        {"workload_manager_proxies_stopped_total", "Pod proxies stopped.",
         ZT_C_WORKLOAD_MANAGER_PROXIES_STOPPED},
    };
    for (size_t i = 0; i < sizeof(wm_counters) / sizeof(wm_counters[0]); i++) {
        put_family_header(out, wm_counters[i].name, wm_counters[i].help, "counter");
        put_u64(out, wm_counters[i].name, NULL,
                atomic_load_explicit(&m->counters[wm_counters[i].c], memory_order_relaxed));
    }

    put_family_header(out, "istio_tcp_sockets_open", "TCP sockets open, by reporter.", "gauge");
    put_i64(out, "istio_tcp_sockets_open", "{reporter=\"source\"}",
            atomic_load_explicit(&m->gauges[ZT_G_TCP_SOCKETS_OPEN_SOURCE], memory_order_relaxed));
    put_i64(
        out, "istio_tcp_sockets_open", "{reporter=\"destination\"}",
        atomic_load_explicit(&m->gauges[ZT_G_TCP_SOCKETS_OPEN_DESTINATION], memory_order_relaxed));

    put_family_header(out, "ztunnel_metrics_peer_series",
                      "Label sets of istio_tcp_* series with values from a peer's baggage, "
                      "kept now.",
                      "gauge");
    put_u64(out, "ztunnel_metrics_peer_series", NULL, (uint64_t)n_peer);
    put_family_header(out, "ztunnel_metrics_peer_series_evicted_total",
                      "Idle label sets with values from a peer's baggage dropped to stay "
                      "under the cap.",
                      "counter");
    put_u64(out, "ztunnel_metrics_peer_series_evicted_total", NULL,
            atomic_load_explicit(&m->peer_evicted, memory_order_relaxed));
    put_family_header(out, "ztunnel_metrics_peer_labels_dropped_total",
                      "Connections counted without their peer's baggage labels because every "
                      "allowed label set was in use.",
                      "counter");
    put_u64(out, "ztunnel_metrics_peer_labels_dropped_total", NULL,
            atomic_load_explicit(&m->peer_dropped, memory_order_relaxed));
    zt_request_metrics_render_cap(m->requests, out);
    static const struct {
        const char *name, *help;
        enum zt_counter source, destination;
    } crl_counters[] = {
        {"istio_crl_policy_rejections_total",
         "HBONE connections refused or closed because a CRL revokes the peer's certificate.",
         ZT_C_CRL_POLICY_REJECTIONS_SOURCE, ZT_C_CRL_POLICY_REJECTIONS_DESTINATION},
        {"istio_crl_untracked_connections_total",
         "HBONE connections whose peer cannot be re-checked when the CRLs change.",
         ZT_C_CRL_UNTRACKED_SOURCE, ZT_C_CRL_UNTRACKED_DESTINATION},
    };
    for (size_t i = 0; i < sizeof(crl_counters) / sizeof(crl_counters[0]); i++) {
        put_family_header(out, crl_counters[i].name, crl_counters[i].help, "counter");
        put_u64(out, crl_counters[i].name, "{reporter=\"source\"}",
                atomic_load_explicit(&m->counters[crl_counters[i].source], memory_order_relaxed));
        put_u64(
            out, crl_counters[i].name, "{reporter=\"destination\"}",
            atomic_load_explicit(&m->counters[crl_counters[i].destination], memory_order_relaxed));
    }

    render_xds(m, out);
    render_waypoint(m, out);

    put_family_header(out, "process_open_fds", "Open file descriptors.", "gauge");
    put_i64(out, "process_open_fds", NULL, count_open_fds());

    struct rlimit rl;
    int64_t max_fds = -1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        max_fds = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT64_MAX ? INT64_MAX
                                                                          : (int64_t)rl.rlim_cur;
    put_family_header(out, "process_max_fds", "Limit on open file descriptors.", "gauge");
    put_i64(out, "process_max_fds", NULL, max_fds);
}

struct zt_request_metrics *zt_metrics_requests(struct zt_metrics *m)
{
    return m->requests;
}

/* The helpers above, for request_metrics.c. */
void zt_metrics_put_label_value(struct zt_buf *b, const char *v)
{
    put_label_value(b, v);
}

void zt_metrics_put_family_header(struct zt_buf *b, const char *name, const char *help,
                                  const char *type)
{
    put_family_header(b, name, help, type);
}

void zt_metrics_put_sample(struct zt_buf *b, const char *name, const char *labels,
                           const char *value)
{
    put_sample(b, name, labels, value);
}

void zt_metrics_put_u64(struct zt_buf *b, const char *name, const char *labels, uint64_t v)
{
    put_u64(b, name, labels, v);
}

uint64_t zt_metrics_hash(const uint8_t *p, size_t n)
{
    return hash_bytes(p, n);
}
