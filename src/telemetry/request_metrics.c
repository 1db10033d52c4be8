/* The waypoint's HTTP request families (metrics.h, waypoint facts 2.5).
 *
 * The layout follows the istio_tcp_* series of metrics.c: per shard, a hash
 * table of series keyed by their rendered label block, found or added under
 * the shard's mutex by the shard's one writer, counted with relaxed atomics,
 * and summed by label block at the scrape. Each shard has its own mutex,
 * apart from the TCP series', so a scrape of one kind never waits on the
 * other. Unlike the TCP series every request label set counts against the
 * cap, since the response code and the workloads come from traffic. */
#include "telemetry/metrics.h"

#include "base/alloc.h"
#include "base/list.h"
#include "telemetry/metrics_int.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const rl_names[ZT_RL_COUNT] = {
    [ZT_RL_REPORTER] = "reporter",
    [ZT_RL_SOURCE_WORKLOAD] = "source_workload",
    [ZT_RL_SOURCE_CANONICAL_SERVICE] = "source_canonical_service",
    [ZT_RL_SOURCE_CANONICAL_REVISION] = "source_canonical_revision",
    [ZT_RL_SOURCE_WORKLOAD_NAMESPACE] = "source_workload_namespace",
    [ZT_RL_SOURCE_PRINCIPAL] = "source_principal",
    [ZT_RL_SOURCE_APP] = "source_app",
    [ZT_RL_SOURCE_VERSION] = "source_version",
    [ZT_RL_SOURCE_CLUSTER] = "source_cluster",
    [ZT_RL_DESTINATION_WORKLOAD] = "destination_workload",
    [ZT_RL_DESTINATION_WORKLOAD_NAMESPACE] = "destination_workload_namespace",
    [ZT_RL_DESTINATION_PRINCIPAL] = "destination_principal",
    [ZT_RL_DESTINATION_APP] = "destination_app",
    [ZT_RL_DESTINATION_VERSION] = "destination_version",
    [ZT_RL_DESTINATION_SERVICE] = "destination_service",
    [ZT_RL_DESTINATION_CANONICAL_SERVICE] = "destination_canonical_service",
    [ZT_RL_DESTINATION_CANONICAL_REVISION] = "destination_canonical_revision",
    [ZT_RL_DESTINATION_SERVICE_NAME] = "destination_service_name",
    [ZT_RL_DESTINATION_SERVICE_NAMESPACE] = "destination_service_namespace",
    [ZT_RL_DESTINATION_CLUSTER] = "destination_cluster",
    [ZT_RL_REQUEST_PROTOCOL] = "request_protocol",
    [ZT_RL_RESPONSE_CODE] = "response_code",
    [ZT_RL_GRPC_RESPONSE_STATUS] = "grpc_response_status",
    [ZT_RL_RESPONSE_FLAGS] = "response_flags",
    [ZT_RL_CONNECTION_SECURITY_POLICY] = "connection_security_policy",
};

/* What Istio renders for a missing value; NULL means "unknown". */
static const char *const rl_missing[ZT_RL_COUNT] = {
    [ZT_RL_SOURCE_CANONICAL_REVISION] = "latest",
    [ZT_RL_DESTINATION_CANONICAL_REVISION] = "latest",
    [ZT_RL_RESPONSE_CODE] = "0",
    [ZT_RL_GRPC_RESPONSE_STATUS] = "",
    [ZT_RL_RESPONSE_FLAGS] = "-",
};

/* Envoy's default histogram bounds, in thousandths of the unit (so 0.5 is
 * exact): a duration in microseconds, or bytes times 1000, compares
 * directly. Past the last bound is the +Inf-only bucket NBOUNDS. */
#define NBOUNDS 19
static const uint64_t bounds_milli[NBOUNDS] = {
    500,      1000,      5000,      10000,      25000,        50000,    100000,
    250000,   500000,    1000000,   2500000,    5000000,      10000000, 30000000,
    60000000, 300000000, 600000000, 1800000000, 3600000000ull};
static const char *const bound_strs[NBOUNDS] = {
    "0.5",  "1",    "5",     "10",    "25",    "50",     "100",    "250",     "500",    "1000",
    "2500", "5000", "10000", "30000", "60000", "300000", "600000", "1800000", "3600000"};

enum req_hist { H_DURATION, H_REQUEST_BYTES, H_RESPONSE_BYTES, H_COUNT };

static const struct {
    const char *name, *help;
} hist_families[H_COUNT] = {
    [H_DURATION] = {"istio_request_duration_milliseconds",
                    "Time from a request's first byte to its response's last byte, in "
                    "milliseconds."},
    [H_REQUEST_BYTES] = {"istio_request_bytes", "Request sizes in bytes, headers included."},
    [H_RESPONSE_BYTES] = {"istio_response_bytes", "Response sizes in bytes, headers included."},
};

/* Per-bucket (not cumulative) counts, the last one past every bound; the
 * count is their sum, so a scrape racing a writer still sees each
 * cumulative bucket at most the +Inf one. */
struct hist {
    _Atomic uint64_t b[NBOUNDS + 1];
    _Atomic uint64_t sum; /* microseconds or bytes */
};

struct zt_request_series {
    struct zt_request_series *next; /* hash chain in the shard */
    /* The shard's idle capped series, least recently released first;
     * linked only while is_capped and holds == 0. */
    struct zt_list_node idle_link;
    uint64_t hash;
    size_t labels_len;
    unsigned holds; /* under the shard's mu */
    bool is_capped; /* false for an overflow series */
    _Atomic uint64_t requests;
    struct hist h[H_COUNT];
    char labels[]; /* rendered block, NUL-terminated */
};

/* The last label sets a shard's writer observed, by value, and their
 * series: a request labelled as a recent one (the common case: the same
 * client workload, endpoint and response code) finds its series without
 * rendering and hashing the label block (some 700 bytes, escaped per
 * byte). An entry holds no reference: evict() empties the entries of the
 * series it frees. Only series under the cap are remembered, so a label
 * set counted in the overflow series gets its own once there is room. */
#define CACHE_SLOTS 4
struct cache_entry {
    struct zt_request_series *s; /* NULL: empty */
    char *values;                /* each label's value (NULL as ""), NUL-ended, in label order */
    size_t cap;
};

struct req_shard {
    pthread_mutex_t mu;
    struct cache_entry cache[CACHE_SLOTS]; /* under mu */
    unsigned cache_next;                   /* the slot replaced next */
    struct zt_request_series **buckets;    /* nbuckets is a power of two */
    size_t nbuckets, count;
    size_t n_capped, cap;  /* series under the cap, and the shard's share */
    struct zt_list idle;   /* of zt_request_series, through idle_link */
    struct zt_buf scratch; /* the key being looked up, under mu */
};

struct zt_request_metrics {
    unsigned nshards;
    struct req_shard *shards;
    _Atomic uint64_t evicted, dropped;
};

const char *zt_rl_name(enum zt_rl l)
{
    if ((unsigned)l >= ZT_RL_COUNT)
        return "unknown";
    return rl_names[l];
}

struct zt_request_metrics *zt_request_metrics_new(unsigned nshards)
{
    struct zt_request_metrics *r = zt_xcalloc(1, sizeof(*r));
    r->nshards = nshards ? nshards : 1;
    r->shards = zt_xcalloc(r->nshards, sizeof(*r->shards));
    for (unsigned i = 0; i < r->nshards; i++) {
        struct req_shard *sh = &r->shards[i];
        pthread_mutex_init(&sh->mu, NULL);
        zt_list_init(&sh->idle);
        sh->nbuckets = 64;
        sh->buckets = zt_xcalloc(sh->nbuckets, sizeof(*sh->buckets));
        /* Rounded down so the total never exceeds the cap, at least one. */
        sh->cap = ZT_METRICS_REQUEST_SERIES_MAX / r->nshards;
        if (sh->cap == 0)
            sh->cap = 1;
    }
    atomic_init(&r->evicted, 0);
    atomic_init(&r->dropped, 0);
    return r;
}

void zt_request_metrics_free(struct zt_request_metrics *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->nshards; i++) {
        struct req_shard *sh = &r->shards[i];
        for (size_t j = 0; j < sh->nbuckets; j++) {
            struct zt_request_series *s = sh->buckets[j];
            while (s) {
                struct zt_request_series *next = s->next;
                free(s);
                s = next;
            }
        }
        free(sh->buckets);
        for (unsigned k = 0; k < CACHE_SLOTS; k++)
            free(sh->cache[k].values);
        zt_buf_release(&sh->scratch);
        pthread_mutex_destroy(&sh->mu);
    }
    free(r->shards);
    free(r);
}

/* Renders the label block into `b` (emptied first). With is_overflow, every
 * label but the reporter is "unknown". */
static void render_labels(struct zt_buf *b, const struct zt_request_labels *l, bool is_overflow)
{
    zt_buf_consume(b, b->len);
    zt_buf_append(b, "{", 1);
    for (unsigned i = 0; i < ZT_RL_COUNT; i++) {
        const char *v = l->v[i];
        if (i)
            zt_buf_append(b, ",", 1);
        zt_buf_append(b, rl_names[i], strlen(rl_names[i]));
        zt_buf_append(b, "=", 1);
        if (is_overflow && i != ZT_RL_REPORTER)
            v = NULL; /* "unknown" */
        else if (!v || !*v)
            v = rl_missing[i]; /* NULL (so "unknown") where Istio has no other */
        if (v && !*v)
            zt_buf_append(b, "\"\"", 2); /* a value Istio leaves empty */
        else
            zt_metrics_put_label_value(b, v);
    }
    zt_buf_append(b, "}", 1);
}

static void shard_grow(struct req_shard *sh)
{
    size_t nb = sh->nbuckets * 2;
    struct zt_request_series **b = zt_xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < sh->nbuckets; i++) {
        struct zt_request_series *s = sh->buckets[i];
        while (s) {
            struct zt_request_series *next = s->next;
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

/* Removes an idle capped series from the shard and frees it. */
static void evict(struct req_shard *sh, struct zt_request_series *s)
{
    struct zt_request_series **pp = &sh->buckets[s->hash & (sh->nbuckets - 1)];
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    zt_list_remove(&s->idle_link);
    sh->count--;
    sh->n_capped--;
    for (unsigned k = 0; k < CACHE_SLOTS; k++)
        if (sh->cache[k].s == s)
            sh->cache[k].s = NULL;
    free(s);
}

/* The remembered series labelled l, or NULL. */
static struct zt_request_series *cache_find(const struct req_shard *sh,
                                            const struct zt_request_labels *l)
{
    for (unsigned k = 0; k < CACHE_SLOTS; k++) {
        const struct cache_entry *e = &sh->cache[k];
        if (!e->s)
            continue;
        const char *p = e->values;
        unsigned i = 0;
        for (; i < ZT_RL_COUNT; i++) {
            const char *v = l->v[i] ? l->v[i] : "";
            while (*v && *v == *p)
                v++, p++;
            if (*v != *p)
                break;
            p++;
        }
        if (i == ZT_RL_COUNT)
            return e->s;
    }
    return NULL;
}

static void cache_put(struct req_shard *sh, const struct zt_request_labels *l,
                      struct zt_request_series *s)
{
    struct cache_entry *e = &sh->cache[sh->cache_next];
    sh->cache_next = (sh->cache_next + 1) % CACHE_SLOTS;
    size_t len = 0, n[ZT_RL_COUNT];
    for (unsigned i = 0; i < ZT_RL_COUNT; i++) {
        n[i] = l->v[i] ? strlen(l->v[i]) : 0;
        len += n[i] + 1;
    }
    if (len > e->cap) {
        e->cap = len;
        e->values = zt_xrealloc(e->values, len);
    }
    char *p = e->values;
    for (unsigned i = 0; i < ZT_RL_COUNT; i++) {
        if (n[i])
            memcpy(p, l->v[i], n[i]);
        p[n[i]] = '\0';
        p += n[i] + 1;
    }
    e->s = s;
}

static struct zt_request_series *find(struct req_shard *sh, uint64_t h)
{
    const uint8_t *key = zt_buf_head(&sh->scratch);
    size_t key_len = sh->scratch.len;
    for (struct zt_request_series *s = sh->buckets[h & (sh->nbuckets - 1)]; s; s = s->next)
        if (s->hash == h && s->labels_len == key_len && memcmp(s->labels, key, key_len) == 0)
            return s;
    return NULL;
}

/* Finds (by its rendered labels) or adds the series for `l` in sh and
 * holds it; sh->mu is held. */
static struct zt_request_series *hold_series_rendered(struct zt_request_metrics *r,
                                                      struct req_shard *sh,
                                                      const struct zt_request_labels *l)
{
    bool is_capped = true;
    render_labels(&sh->scratch, l, false);
    uint64_t h = zt_metrics_hash(zt_buf_head(&sh->scratch), sh->scratch.len);
    struct zt_request_series *s = find(sh, h);
    if (!s && sh->n_capped >= sh->cap) {
        if (!zt_list_empty(&sh->idle)) {
            evict(sh, zt_list_entry(zt_list_first(&sh->idle), struct zt_request_series, idle_link));
            atomic_fetch_add_explicit(&r->evicted, 1, memory_order_relaxed);
        } else {
            /* Every series of the shard is held: count the request in the
             * overflow series, whose labels the configuration bounds. */
            is_capped = false;
            atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
            render_labels(&sh->scratch, l, true);
            h = zt_metrics_hash(zt_buf_head(&sh->scratch), sh->scratch.len);
            s = find(sh, h);
        }
    }
    if (s) {
        if (s->holds++ == 0 && s->is_capped)
            zt_list_remove(&s->idle_link);
        return s;
    }

    size_t key_len = sh->scratch.len;
    s = zt_xcalloc(1, sizeof(*s) + key_len + 1);
    s->hash = h;
    s->labels_len = key_len;
    s->holds = 1;
    s->is_capped = is_capped;
    atomic_init(&s->requests, 0);
    for (int k = 0; k < H_COUNT; k++) {
        for (int i = 0; i <= NBOUNDS; i++)
            atomic_init(&s->h[k].b[i], 0);
        atomic_init(&s->h[k].sum, 0);
    }
    memcpy(s->labels, zt_buf_head(&sh->scratch), key_len);
    s->labels[key_len] = 0;
    if (sh->count >= sh->nbuckets)
        shard_grow(sh);
    size_t j = h & (sh->nbuckets - 1);
    s->next = sh->buckets[j];
    sh->buckets[j] = s;
    sh->count++;
    if (is_capped)
        sh->n_capped++;
    return s;
}

/* Finds or adds the series for `l` in sh and holds it; sh->mu is held. */
static struct zt_request_series *hold_series(struct zt_request_metrics *r, struct req_shard *sh,
                                             const struct zt_request_labels *l)
{
    struct zt_request_series *s = cache_find(sh, l);
    if (!s) {
        s = hold_series_rendered(r, sh, l);
        if (s->is_capped)
            cache_put(sh, l, s);
        return s;
    }
    if (s->holds++ == 0)
        zt_list_remove(&s->idle_link); /* capped: it was idle */
    return s;
}

/* Drops one hold; sh->mu is held. */
static void unhold_series(struct req_shard *sh, struct zt_request_series *s)
{
    assert(s->holds > 0);
    if (--s->holds == 0 && s->is_capped)
        zt_list_insert_tail(&sh->idle, &s->idle_link);
}

struct zt_request_series *zt_metrics_request_series(struct zt_metrics *m, unsigned shard,
                                                    const struct zt_request_labels *labels)
{
    struct zt_request_metrics *r = zt_metrics_requests(m);
    assert(shard < r->nshards);
    struct req_shard *sh = &r->shards[shard];
    pthread_mutex_lock(&sh->mu);
    struct zt_request_series *s = hold_series(r, sh, labels);
    pthread_mutex_unlock(&sh->mu);
    return s;
}

void zt_metrics_request_series_release(struct zt_metrics *m, unsigned shard,
                                       struct zt_request_series *s)
{
    if (!s)
        return;
    struct zt_request_metrics *r = zt_metrics_requests(m);
    assert(shard < r->nshards);
    struct req_shard *sh = &r->shards[shard];
    pthread_mutex_lock(&sh->mu);
    unhold_series(sh, s);
    pthread_mutex_unlock(&sh->mu);
}

/* The bucket of a value in thousandths of the unit. */
static unsigned bucket_of(uint64_t milli)
{
    unsigned i = 0;
    while (i < NBOUNDS && milli > bounds_milli[i])
        i++;
    return i;
}

static void observe(struct hist *h, uint64_t milli, uint64_t sum_add)
{
    atomic_fetch_add_explicit(&h->b[bucket_of(milli)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, sum_add, memory_order_relaxed);
}

/* Bytes in thousandths; anything past the last bound is just past it. */
static uint64_t bytes_milli(uint64_t bytes)
{
    return bytes > bounds_milli[NBOUNDS - 1] / 1000 ? bounds_milli[NBOUNDS - 1] + 1 : bytes * 1000;
}

void zt_request_series_observe(struct zt_request_series *s, uint64_t duration_us,
                               uint64_t request_bytes, uint64_t response_bytes)
{
    atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
    observe(&s->h[H_DURATION], duration_us, duration_us);
    observe(&s->h[H_REQUEST_BYTES], bytes_milli(request_bytes), request_bytes);
    observe(&s->h[H_RESPONSE_BYTES], bytes_milli(response_bytes), response_bytes);
}

void zt_metrics_request_observe(struct zt_metrics *m, unsigned shard,
                                const struct zt_request_labels *labels, uint64_t duration_us,
                                uint64_t request_bytes, uint64_t response_bytes)
{
    struct zt_request_metrics *r = zt_metrics_requests(m);
    assert(shard < r->nshards);
    struct req_shard *sh = &r->shards[shard];
    pthread_mutex_lock(&sh->mu);
    struct zt_request_series *s = hold_series(r, sh, labels);
    zt_request_series_observe(s, duration_us, request_bytes, response_bytes);
    unhold_series(sh, s);
    pthread_mutex_unlock(&sh->mu);
}

/* One row of the merged scrape. */
struct req_row {
    char *labels; /* a copy: the series may be evicted once its shard is unlocked */
    uint64_t requests;
    uint64_t b[H_COUNT][NBOUNDS + 1], sum[H_COUNT];
};

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const struct req_row *)a)->labels, ((const struct req_row *)b)->labels);
}

/* Every shard's series, sorted by label block, equal blocks summed. Returns
 * the row count; *out is malloc'd (NULL when none). */
static size_t collect_rows(struct zt_request_metrics *r, struct req_row **out)
{
    struct req_row *rows = NULL;
    size_t n = 0, cap = 0;

    for (unsigned i = 0; i < r->nshards; i++) {
        struct req_shard *sh = &r->shards[i];
        pthread_mutex_lock(&sh->mu);
        if (n + sh->count > cap) {
            cap = (n + sh->count) * 2;
            rows = zt_xrealloc(rows, cap * sizeof(*rows));
        }
        for (size_t j = 0; j < sh->nbuckets; j++) {
            for (struct zt_request_series *s = sh->buckets[j]; s; s = s->next) {
                struct req_row *w = &rows[n++];
                w->labels = zt_xmalloc(s->labels_len + 1);
                memcpy(w->labels, s->labels, s->labels_len + 1);
                w->requests = atomic_load_explicit(&s->requests, memory_order_relaxed);
                for (int k = 0; k < H_COUNT; k++) {
                    for (int b = 0; b <= NBOUNDS; b++)
                        w->b[k][b] = atomic_load_explicit(&s->h[k].b[b], memory_order_relaxed);
                    w->sum[k] = atomic_load_explicit(&s->h[k].sum, memory_order_relaxed);
                }
            }
        }
        pthread_mutex_unlock(&sh->mu);
    }
    if (n > 1)
        qsort(rows, n, sizeof(*rows), row_cmp);

    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w > 0 && strcmp(rows[w - 1].labels, rows[i].labels) == 0) {
            struct req_row *d = &rows[w - 1];
            d->requests += rows[i].requests;
            for (int k = 0; k < H_COUNT; k++) {
                for (int b = 0; b <= NBOUNDS; b++)
                    d->b[k][b] += rows[i].b[k][b];
                d->sum[k] += rows[i].sum[k];
            }
            free(rows[i].labels);
        } else {
            rows[w++] = rows[i];
        }
    }
    *out = rows;
    return w;
}

/* One histogram of one row: the buckets with le appended to the labels,
 * then _sum and _count. */
static void put_histogram(struct zt_buf *out, struct zt_buf *lb, const char *name,
                          const struct req_row *row, int k)
{
    char bucket_name[64], sum_name[64], count_name[64], num[48];
    snprintf(bucket_name, sizeof(bucket_name), "%s_bucket", name);
    snprintf(sum_name, sizeof(sum_name), "%s_sum", name);
    snprintf(count_name, sizeof(count_name), "%s_count", name);
    size_t ll = strlen(row->labels);
    uint64_t cum = 0;
    for (int b = 0; b <= NBOUNDS; b++) {
        cum += row->b[k][b];
        zt_buf_consume(lb, lb->len);
        zt_buf_append(lb, row->labels, ll - 1); /* without the closing brace */
        zt_buf_append(lb, ",le=\"", 5);
        const char *le = b < NBOUNDS ? bound_strs[b] : "+Inf";
        zt_buf_append(lb, le, strlen(le));
        zt_buf_append(lb, "\"}", 3); /* with the terminator */
        zt_metrics_put_u64(out, bucket_name, (const char *)zt_buf_head(lb), cum);
    }
    if (k == H_DURATION)
        snprintf(num, sizeof(num), "%" PRIu64 ".%03" PRIu64, row->sum[k] / 1000,
                 row->sum[k] % 1000);
    else
        snprintf(num, sizeof(num), "%" PRIu64, row->sum[k]);
    zt_metrics_put_sample(out, sum_name, row->labels, num);
    zt_metrics_put_u64(out, count_name, row->labels, cum);
}

void zt_request_metrics_render(struct zt_request_metrics *r, struct zt_buf *out)
{
    struct req_row *rows;
    size_t nrows = collect_rows(r, &rows);
    if (nrows == 0)
        return;

    zt_metrics_put_family_header(out, "istio_requests_total", "Requests handled.", "counter");
    for (size_t i = 0; i < nrows; i++)
        zt_metrics_put_u64(out, "istio_requests_total", rows[i].labels, rows[i].requests);
    struct zt_buf lb = {0};
    for (int k = 0; k < H_COUNT; k++) {
        zt_metrics_put_family_header(out, hist_families[k].name, hist_families[k].help,
                                     "histogram");
        for (size_t i = 0; i < nrows; i++)
            put_histogram(out, &lb, hist_families[k].name, &rows[i], k);
    }
    zt_buf_release(&lb);
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].labels);
    free(rows);
}

void zt_request_metrics_render_cap(struct zt_request_metrics *r, struct zt_buf *out)
{
    size_t n_capped = 0;
    for (unsigned i = 0; i < r->nshards; i++) {
        pthread_mutex_lock(&r->shards[i].mu);
        n_capped += r->shards[i].n_capped;
        pthread_mutex_unlock(&r->shards[i].mu);
    }
    zt_metrics_put_family_header(out, "ztunnel_metrics_request_series",
                                 "Label sets of istio_requests_total and the request histograms "
                                 "kept now.",
                                 "gauge");
    zt_metrics_put_u64(out, "ztunnel_metrics_request_series", NULL, (uint64_t)n_capped);
    zt_metrics_put_family_header(out, "ztunnel_metrics_request_series_evicted_total",
                                 "Idle request label sets dropped to stay under the cap.",
                                 "counter");
    zt_metrics_put_u64(out, "ztunnel_metrics_request_series_evicted_total", NULL,
                       atomic_load_explicit(&r->evicted, memory_order_relaxed));
    zt_metrics_put_family_header(out, "ztunnel_metrics_request_labels_dropped_total",
                                 "Requests counted without their labels because every allowed "
                                 "request label set was in use.",
                                 "counter");
    zt_metrics_put_u64(out, "ztunnel_metrics_request_labels_dropped_total", NULL,
                       atomic_load_explicit(&r->dropped, memory_order_relaxed));
}
