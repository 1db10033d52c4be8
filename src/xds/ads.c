/* Delta ADS protocol engine: see ads.h for the contract.
 *
 * The engine keeps, per type, a map from resource name to the version it
 * accepted. That map is what a reconnect reports in
 * initial_resource_versions, so it must only ever hold what the current
 * snapshot really reflects: a response's changes go into the map only after
 * its snapshot was built successfully. */
#include "xds/ads.h"

#include "base/err.h"
#include "base/strmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADS_REASON_LEN 256
/* Room kept at the end of a NACK message for "; ... (N more)". */
#define ADS_ERROR_TAIL 40

static const char *const type_urls[ZT_ADS_NTYPES] = {
    [ZT_ADS_ADDRESS] = "type.googleapis.com/istio.workload.Address",
    [ZT_ADS_AUTHORIZATION] = "type.googleapis.com/istio.security.Authorization",
    [ZT_ADS_ROUTE] = "type.googleapis.com/ztunnel.routes.v1.Route",
    [ZT_ADS_AUTHZ_POLICY] = "type.googleapis.com/ztunnel.policy.v1.AuthorizationPolicy",
    [ZT_ADS_AUTHN_POLICY] = "type.googleapis.com/ztunnel.policy.v1.RequestAuthentication",
    [ZT_ADS_RATELIMIT] = "type.googleapis.com/ztunnel.policy.v1.RateLimit",
};

/* Types whose resources are state objects (and gate readiness). */
static bool is_state_type(enum zt_ads_type t)
{
    return t == ZT_ADS_ADDRESS || t == ZT_ADS_AUTHORIZATION;
}

/* ---------------------------------------------------------------- engine */

struct pending {
    enum zt_ads_type type;
    bool is_initial;
    char *type_url; /* only for an unknown type's NACK */
    char *nonce;
    char *error;
};

struct zt_ads {
    const struct zt_ads_ops *ops;
    void *ud;
    enum zt_ads_stream_state state;
    struct zt_state *snapshot; /* base of the next builder; one reference */
    struct zt_strmap accepted[ZT_ADS_NTYPES];
    bool acked[ZT_ADS_NTYPES];
    bool is_ready;

    /* Per stream. */
    bool node_sent[ZT_ADS_NTYPES];
    bool had_response;
    struct pending *queue;
    size_t q_head, q_len; /* queue[q_head .. q_len) are unsent */

    /* What the last zt_ads_next_request() handed out. */
    struct pending out;
    const char **out_names, **out_versions;

    uint64_t next_backoff_ms;
};

static bool is_subscribed(const struct zt_ads *a, enum zt_ads_type t)
{
    return is_state_type(t) || (t >= ZT_ADS_FIRST_KEPT && t < ZT_ADS_NTYPES && a->ops->wants_kept &&
                                a->ops->wants_kept(a->ud, t));
}

const char *zt_ads_type_url(enum zt_ads_type t)
{
    if ((unsigned)t >= ZT_ADS_NTYPES)
        return "";
    return type_urls[t];
}

enum zt_ads_type zt_ads_type_from_url(const char *type_url)
{
    if (!type_url)
        return ZT_ADS_NTYPES;
    for (int t = 0; t < ZT_ADS_NTYPES; t++)
        if (strcmp(type_url, type_urls[t]) == 0)
            return (enum zt_ads_type)t;
    return ZT_ADS_NTYPES;
}

const char *zt_ads_stream_state_str(enum zt_ads_stream_state s)
{
    switch (s) {
    case ZT_ADS_ST_IDLE:
        return "idle";
    case ZT_ADS_ST_STREAMING:
        return "streaming";
    }
    return "?";
}

static void set_state(struct zt_ads *a, enum zt_ads_stream_state s)
{
    a->state = s;
}

static void pending_cleanup(struct pending *p)
{
    free(p->type_url);
    free(p->nonce);
    free(p->error);
    memset(p, 0, sizeof(*p));
}

/* Ends the lifetime of the request last handed out. */
static void release_out(struct zt_ads *a)
{
    pending_cleanup(&a->out);
    free(a->out_names);
    free(a->out_versions);
    a->out_names = a->out_versions = NULL;
}

static void clear_queue(struct zt_ads *a)
{
    for (size_t i = a->q_head; i < a->q_len; i++)
        pending_cleanup(&a->queue[i]);
    free(a->queue);
    a->queue = NULL;
    a->q_head = a->q_len = 0;
}

static bool queue_full(const struct zt_ads *a)
{
    return a->q_len - a->q_head >= ZT_ADS_MAX_PENDING;
}

/* Takes ownership of p's strings. */
static void enqueue(struct zt_ads *a, const struct pending *p)
{
    if (a->q_head == a->q_len) {
        a->q_head = a->q_len = 0;
    } else if (a->q_head > 0 && a->q_head * 2 >= a->q_len) {
        /* Slide the unsent tail down so the array stays bounded. */
        memmove(a->queue, a->queue + a->q_head, (a->q_len - a->q_head) * sizeof(*a->queue));
        a->q_len -= a->q_head;
        a->q_head = 0;
    }
    size_t n = a->q_len;
    struct pending *slot = zt_state_array_push(&a->queue, &n, sizeof(*a->queue));
    *slot = *p;
    a->q_len = n;
}

struct zt_ads *zt_ads_new(const struct zt_ads_ops *ops, void *ud, const struct zt_state *initial)
{
    struct zt_ads *a = zt_state_xcalloc(1, sizeof(*a));
    a->ops = ops;
    a->ud = ud;
    a->snapshot = initial ? zt_state_ref(initial) : zt_state_new_empty();
    for (int t = 0; t < ZT_ADS_NTYPES; t++)
        zt_strmap_init(&a->accepted[t], true);
    a->next_backoff_ms = ZT_ADS_BACKOFF_INITIAL_MS;
    set_state(a, ZT_ADS_ST_IDLE);
    return a;
}

void zt_ads_free(struct zt_ads *a)
{
    if (!a)
        return;
    release_out(a);
    clear_queue(a);
    for (int t = 0; t < ZT_ADS_NTYPES; t++)
        zt_strmap_clear(&a->accepted[t]);
    zt_state_unref(a->snapshot);
    free(a);
}

void zt_ads_stream_started(struct zt_ads *a)
{
    release_out(a);
    clear_queue(a);
    memset(a->node_sent, 0, sizeof(a->node_sent));
    a->had_response = false;
    set_state(a, ZT_ADS_ST_STREAMING);
    for (int t = 0; t < ZT_ADS_NTYPES; t++) {
        struct pending p = {.type = (enum zt_ads_type)t, .is_initial = true};
        if (is_subscribed(a, (enum zt_ads_type)t))
            enqueue(a, &p);
    }
}

static int cmp_entry_name(const void *x, const void *y)
{
    const struct zt_strmap_entry *const *a = x, *const *b = y;
    return strcmp((*a)->key, (*b)->key);
}

/* Fills the initial_resource_versions arrays from the accepted map, sorted
 * by name so that requests are reproducible. The strings stay borrowed from
 * the map, which does not change before the next public call. */
static void fill_initial_versions(struct zt_ads *a, enum zt_ads_type t, struct zt_ads_request *out)
{
    const struct zt_strmap *m = &a->accepted[t];
    if (!m->n)
        return;
    const struct zt_strmap_entry **es = zt_state_xcalloc(m->n, sizeof(*es));
    size_t n = 0, pos = 0;
    for (const struct zt_strmap_entry *e; (e = zt_strmap_next(m, &pos)) != NULL;)
        es[n++] = e;
    qsort(es, n, sizeof(*es), cmp_entry_name);
    a->out_names = zt_state_xcalloc(n, sizeof(*a->out_names));
    a->out_versions = zt_state_xcalloc(n, sizeof(*a->out_versions));
    for (size_t i = 0; i < n; i++) {
        a->out_names[i] = es[i]->key;
        a->out_versions[i] = es[i]->value;
    }
    free(es);
    out->initial_names = a->out_names;
    out->initial_versions = a->out_versions;
    out->n_initial = n;
}

bool zt_ads_next_request(struct zt_ads *a, struct zt_ads_request *out)
{
    release_out(a);
    memset(out, 0, sizeof(*out));
    if (a->state != ZT_ADS_ST_STREAMING || a->q_head == a->q_len)
        return false;
    a->out = a->queue[a->q_head++];

    enum zt_ads_type t = a->out.type;
    out->type = t;
    out->type_url = a->out.type_url ? a->out.type_url : zt_ads_type_url(t);
    out->response_nonce = a->out.nonce;
    out->error_message = a->out.error;
    if (t < ZT_ADS_NTYPES) {
        out->include_node = !a->node_sent[t];
        a->node_sent[t] = true;
        if (a->out.is_initial)
            fill_initial_versions(a, t, out);
    }
    return true;
}

/* ---------------------------------------------------------------- responses */

/* The NACK message: "<name>: <reason>; ..." capped at ZT_ADS_MAX_ERROR. Once
 * one piece does not fit, later ones are only counted, so the message never
 * skips an error and then lists a later one. */
struct nack {
    char buf[ZT_ADS_MAX_ERROR];
    size_t len;
    size_t n_listed, n_omitted;
};

static void nack_add(struct nack *k, const char *name, const char *reason)
{
    const char *sep = k->n_listed ? "; " : "";
    size_t need = strlen(sep) + strlen(name) + 2 + strlen(reason);
    if (k->n_omitted || k->len + need >= sizeof(k->buf) - ADS_ERROR_TAIL) {
        k->n_omitted++;
        return;
    }
    k->len +=
        (size_t)snprintf(k->buf + k->len, sizeof(k->buf) - k->len, "%s%s: %s", sep, name, reason);
    k->n_listed++;
}

static bool nack_empty(const struct nack *k)
{
    return k->n_listed == 0 && k->n_omitted == 0;
}

static char *nack_finish(struct nack *k)
{
    if (k->n_omitted)
        snprintf(k->buf + k->len, sizeof(k->buf) - k->len, "%s... (%zu more)",
                 k->n_listed ? "; " : "", k->n_omitted);
    return zt_state_xstrdup(k->buf);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

static void queue_reply(struct zt_ads *a, enum zt_ads_type t, const char *type_url,
                        const char *nonce, struct nack *k)
{
    struct pending p = {
        .type = t,
        .type_url = t < ZT_ADS_NTYPES ? NULL : zt_state_xstrdup(nz(type_url)),
        .nonce = zt_state_xstrdup(nz(nonce)),
        .error = nack_empty(k) ? NULL : nack_finish(k),
    };
    enqueue(a, &p);
}

/* Checks one resource before the owner sees it. Returns NULL or a reason. */
static const char *check_resource(const struct zt_ads *a, enum zt_ads_type t,
                                  const struct zt_ads_resource *r, const struct zt_strmap *seen,
                                  size_t n_new)
{
    if (!r->name || !r->name[0])
        return "resource without name";
    if (strnlen(r->name, ZT_ADS_MAX_NAME + 1) > ZT_ADS_MAX_NAME)
        return "name too long";
    if (r->version && strnlen(r->version, ZT_ADS_MAX_VERSION + 1) > ZT_ADS_MAX_VERSION)
        return "version too long";
    if (zt_strmap_find(seen, r->name) != NULL)
        return "duplicate resource in response";
    if (zt_strmap_find(&a->accepted[t], r->name) == NULL &&
        a->accepted[t].n + n_new >= ZT_ADS_MAX_RESOURCES)
        return "too many resources";
    return NULL;
}

/* Checks and applies each resource of r: into b (state types) or to the
 * owner (kept types, b NULL). The indexes of those applied are appended to
 * *good; the rest are NACKed in k. */
static void apply_each(struct zt_ads *a, enum zt_ads_type t, const struct zt_ads_response *r,
                       struct zt_state_builder *b, struct nack *k, size_t **good, size_t *n_good)
{
    struct zt_strmap seen;
    size_t n_new = 0;
    char reason[ADS_REASON_LEN];

    zt_strmap_init(&seen, false);
    for (size_t i = 0; i < r->n_resources; i++) {
        const struct zt_ads_resource *res = &r->resources[i];
        const char *name = res->name && res->name[0] ? res->name : "<unnamed>";
        const char *bad = check_resource(a, t, res, &seen, n_new);
        if (bad) {
            /* A name over the cap is not repeated in full. */
            nack_add(k, strlen(name) > 256 ? "<long name>" : name, bad);
            continue;
        }
        zt_strmap_put(&seen, res->name, NULL);
        reason[0] = '\0';
        int rc = b ? a->ops->apply(a->ud, t, b, res, reason, sizeof(reason))
                   : a->ops->apply_kept(a->ud, t, res, reason, sizeof(reason));
        if (rc < 0) {
            reason[sizeof(reason) - 1] = '\0';
            nack_add(k, name, reason[0] ? reason : zt_strerror(rc));
            continue;
        }
        if (zt_strmap_find(&a->accepted[t], res->name) == NULL)
            n_new++;
        *(size_t *)zt_state_array_push(good, n_good, sizeof(**good)) = i;
    }
    zt_strmap_clear(&seen);
}

/* Removes each well-formed name of r->removed (from b, or from the
 * owner's kept resources when b is NULL). Returns how many. */
static size_t remove_each(struct zt_ads *a, enum zt_ads_type t, const struct zt_ads_response *r,
                          struct zt_state_builder *b)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_removed; i++) {
        const char *name = r->removed[i];
        if (!name || !name[0] || strnlen(name, ZT_ADS_MAX_NAME + 1) > ZT_ADS_MAX_NAME)
            continue;
        if (b)
            a->ops->remove(a->ud, t, b, name);
        else
            a->ops->remove_kept(a->ud, t, name);
        n++;
    }
    return n;
}

/* The accepted map after a response took effect. */
static void commit_accepted(struct zt_ads *a, enum zt_ads_type t, const struct zt_ads_response *r,
                            const size_t *good, size_t n_good)
{
    for (size_t i = 0; i < n_good; i++) {
        const struct zt_ads_resource *res = &r->resources[good[i]];
        zt_strmap_put(&a->accepted[t], res->name, nz(res->version));
    }
    for (size_t i = 0; i < r->n_removed; i++)
        if (r->removed[i])
            zt_strmap_del(&a->accepted[t], r->removed[i]);
}

/* Applies one response of a kept type: no builder, the owner keeps the
 * resources, so what it took is in effect at once. */
static void apply_kept(struct zt_ads *a, enum zt_ads_type t, const struct zt_ads_response *r,
                       struct nack *k)
{
    size_t *good = NULL, n_good = 0;
    apply_each(a, t, r, NULL, k, &good, &n_good);
    size_t n_removed = remove_each(a, t, r, NULL);
    commit_accepted(a, t, r, good, n_good);
    if (n_good + n_removed)
        a->ops->kept_done(a->ud, t);
    free(good);
}

/* Applies one response of a known type. Map changes are collected in
 * `good` and committed only once the snapshot is built. */
static void apply_response(struct zt_ads *a, enum zt_ads_type t, const struct zt_ads_response *r,
                           struct nack *k)
{
    struct zt_state_builder *b = zt_state_builder_new(a->snapshot);
    struct zt_state *next = NULL;
    size_t *good = NULL, n_good = 0, n_removed;
    char reason[ADS_REASON_LEN];

    apply_each(a, t, r, b, k, &good, &n_good);
    n_removed = remove_each(a, t, r, b);

    if (n_good + n_removed == 0) {
        zt_state_builder_free(b);
        goto out;
    }
    if (zt_state_builder_finish(b, &next, reason, sizeof(reason)) < 0) {
        /* Nothing of this response took effect: NACK it as a whole. */
        nack_add(k, "snapshot", reason);
        goto out;
    }
    commit_accepted(a, t, r, good, n_good);
    zt_state_unref(a->snapshot);
    a->snapshot = zt_state_ref(next);
    a->ops->publish(a->ud, next);
out:
    free(good);
}

int zt_ads_on_response(struct zt_ads *a, const struct zt_ads_response *r)
{
    struct nack *k = NULL;
    int rc = 0;

    release_out(a);
    if (a->state != ZT_ADS_ST_STREAMING) {
        rc = ZT_E_CLOSED;
        goto out;
    }
    if (queue_full(a)) {
        rc = ZT_E_TOO_BIG;
        goto out;
    }
    k = zt_state_xcalloc(1, sizeof(*k));
    enum zt_ads_type t = zt_ads_type_from_url(r->type_url);
    if (t == ZT_ADS_NTYPES || !is_subscribed(a, t)) {
        t = ZT_ADS_NTYPES;
        queue_reply(a, t, r->type_url, r->nonce, k); /* an ACK */
        rc = ZT_E_PROTO;
        goto out;
    }
    a->had_response = true;
    if ((r->n_resources && !r->resources) || (r->n_removed && !r->removed)) {
        /* The transport's bug, not istiod's; still answer the nonce. */
        nack_add(k, "response", "malformed");
        queue_reply(a, t, r->type_url, r->nonce, k);
        rc = ZT_E_PROTO;
        goto out;
    }
    if (r->n_resources > ZT_ADS_MAX_RESOURCES || r->n_removed > ZT_ADS_MAX_RESOURCES) {
        nack_add(k, "response", "too many resources");
        queue_reply(a, t, r->type_url, r->nonce, k);
        rc = ZT_E_TOO_BIG;
        goto out;
    }
    if (is_state_type(t))
        apply_response(a, t, r, k);
    else
        apply_kept(a, t, r, k);
    bool is_ack = nack_empty(k);
    queue_reply(a, t, r->type_url, r->nonce, k);
    if (is_ack && !a->acked[t] && is_state_type(t)) {
        a->acked[t] = true;
        bool all = true;
        for (int i = 0; i < ZT_ADS_NTYPES; i++)
            all = all && (a->acked[i] || !is_state_type((enum zt_ads_type)i));
        if (all && !a->is_ready) {
            a->is_ready = true;
            if (a->ops->ready)
                a->ops->ready(a->ud);
        }
    }
out:
    free(k);
    return rc;
}

/* ---------------------------------------------------------------- stream end */

static bool is_benign(int status, const char *message)
{
    const char *m = nz(message);
    switch (status) {
    case ZT_ADS_GRPC_OK:
    case ZT_ADS_GRPC_CANCELLED:
    case ZT_ADS_GRPC_UNKNOWN:
    case ZT_ADS_GRPC_DEADLINE_EXCEEDED:
        return true;
    case ZT_ADS_GRPC_UNAVAILABLE:
        return strstr(m, "transport is closing") || strstr(m, "received prior goaway");
    default:
        return false;
    }
}

void zt_ads_stream_ended(struct zt_ads *a, int grpc_status, const char *message,
                         uint64_t *retry_after_ms)
{
    release_out(a);
    clear_queue(a);
    if (a->had_response)
        a->next_backoff_ms = ZT_ADS_BACKOFF_INITIAL_MS;
    a->had_response = false;
    set_state(a, ZT_ADS_ST_IDLE);

    if (is_benign(grpc_status, message)) {
        a->next_backoff_ms = ZT_ADS_BACKOFF_INITIAL_MS;
        *retry_after_ms = ZT_ADS_BACKOFF_INITIAL_MS;
        return;
    }
    *retry_after_ms = a->next_backoff_ms;
    a->next_backoff_ms *= 2;
    if (a->next_backoff_ms > ZT_ADS_BACKOFF_MAX_MS)
        a->next_backoff_ms = ZT_ADS_BACKOFF_MAX_MS;
}

enum zt_ads_end zt_ads_end_reason(int grpc_status, const char *message)
{
    if (grpc_status == ZT_ADS_CONNECT_FAILED)
        return ZT_ADS_END_CONNECTION_ERROR;
    if (grpc_status == ZT_ADS_GRPC_OK)
        return ZT_ADS_END_COMPLETE;
    return is_benign(grpc_status, message) ? ZT_ADS_END_RECONNECT : ZT_ADS_END_ERROR;
}

const char *zt_ads_end_str(enum zt_ads_end e)
{
    static const char *const names[] = {"ConnectionError", "Error", "Reconnect", "Complete"};
    return (unsigned)e < sizeof(names) / sizeof(names[0]) ? names[e] : "?";
}

uint64_t zt_ads_response_bytes(const struct zt_ads_response *r)
{
    uint64_t n = 0;
    for (size_t i = 0; i < r->n_resources; i++)
        n += r->resources[i].value_len;
    return n;
}

/* ---------------------------------------------------------------- queries */

enum zt_ads_stream_state zt_ads_state(const struct zt_ads *a)
{
    return a->state;
}

bool zt_ads_is_ready(const struct zt_ads *a)
{
    return a->is_ready;
}

size_t zt_ads_resource_count(const struct zt_ads *a, enum zt_ads_type t)
{
    if ((unsigned)t >= ZT_ADS_NTYPES)
        return 0;
    return a->accepted[t].n;
}

const char *zt_ads_resource_version(const struct zt_ads *a, enum zt_ads_type t, const char *name)
{
    if ((unsigned)t >= ZT_ADS_NTYPES || !name)
        return NULL;
    const struct zt_strmap_entry *e = zt_strmap_find(&a->accepted[t], name);
    return e ? e->value : NULL;
}

const struct zt_state *zt_ads_snapshot(const struct zt_ads *a)
{
    return a->snapshot;
}
