/* Snapshot objects, the builder and the lookup indexes.
 *
 * Indexes are sorted arrays searched with binary search: a snapshot is built
 * once and read by many threads, so compact arrays beat hash tables here and
 * need no locking. Load balancing lives in lb.c. */
#include "state/state_int.h"

#include "base/alloc.h"
#include "base/err.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- helpers */

/* The module's historical names for base/alloc.h (strdup of NULL is NULL). */
void *zt_state_xcalloc(size_t n, size_t size)
{
    return zt_xcalloc(n, size);
}

void *zt_state_xrealloc(void *p, size_t size)
{
    return zt_xrealloc(p, size);
}

char *zt_state_xstrdup(const char *s)
{
    return s ? zt_xstrdup(s) : NULL;
}

void *zt_state_array_push(void *arr_ptr, size_t *n, size_t size)
{
    void **arr = arr_ptr;
    char *base;
    /* Capacity is implicit: the next power of two >= n. Arrays must only
     * ever be grown through this function. */
    if (*n == 0 || (*n & (*n - 1)) == 0) {
        if (*n > ((size_t)-1 / 2) / size)
            abort();
        *arr = zt_state_xrealloc(*arr, (*n ? *n * 2 : 1) * size);
    }
    base = *arr;
    memset(base + *n * size, 0, size);
    return base + (*n)++ * size;
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* ---------------------------------------------------------------- enums */

const char *zt_workload_protocol_str(enum zt_workload_protocol p)
{
    return p == ZT_WL_PROTO_HBONE ? "HBONE" : "TCP";
}

const char *zt_workload_status_str(enum zt_workload_status s)
{
    return s == ZT_WL_UNHEALTHY ? "Unhealthy" : "Healthy";
}

const char *zt_workload_type_str(enum zt_workload_type t)
{
    switch (t) {
    case ZT_WL_TYPE_DEPLOYMENT:
        return "deployment";
    case ZT_WL_TYPE_CRONJOB:
        return "cronjob";
    case ZT_WL_TYPE_POD:
        return "pod";
    case ZT_WL_TYPE_JOB:
        return "job";
    }
    return "unknown";
}

const char *zt_lb_mode_str(enum zt_lb_mode m)
{
    switch (m) {
    case ZT_LB_STANDARD:
        return "Standard";
    case ZT_LB_STRICT:
        return "Strict";
    case ZT_LB_FAILOVER:
        return "Failover";
    case ZT_LB_PASSTHROUGH:
        return "Passthrough";
    }
    return "unknown";
}

const char *zt_lb_scope_str(enum zt_lb_scope s)
{
    switch (s) {
    case ZT_LB_SCOPE_REGION:
        return "Region";
    case ZT_LB_SCOPE_ZONE:
        return "Zone";
    case ZT_LB_SCOPE_SUBZONE:
        return "Subzone";
    case ZT_LB_SCOPE_NODE:
        return "Node";
    case ZT_LB_SCOPE_CLUSTER:
        return "Cluster";
    case ZT_LB_SCOPE_NETWORK:
        return "Network";
    }
    return "unknown";
}

const char *zt_policy_scope_str(enum zt_policy_scope s)
{
    switch (s) {
    case ZT_POLICY_GLOBAL:
        return "Global";
    case ZT_POLICY_NAMESPACE:
        return "Namespace";
    case ZT_POLICY_WORKLOAD_SELECTOR:
        return "WorkloadSelector";
    }
    return "unknown";
}

const char *zt_policy_action_str(enum zt_policy_action a)
{
    return a == ZT_POLICY_DENY ? "Deny" : "Allow";
}

const char *zt_app_protocol_str(enum zt_app_protocol p)
{
    switch (p) {
    case ZT_APP_HTTP11:
        return "http";
    case ZT_APP_HTTP2:
        return "http2";
    case ZT_APP_GRPC:
        return "grpc";
    case ZT_APP_TCP:
        return "tcp";
    case ZT_APP_TLS:
        return "tls";
    case ZT_APP_UNKNOWN:
        break;
    }
    return "unknown";
}

const char *zt_upstream_kind_str(enum zt_upstream_kind k)
{
    switch (k) {
    case ZT_UPSTREAM_SERVICE:
        return "service";
    case ZT_UPSTREAM_WORKLOAD:
        return "workload";
    case ZT_UPSTREAM_PASSTHROUGH:
        return "passthrough";
    case ZT_UPSTREAM_WAYPOINT:
        return "waypoint";
    }
    return "unknown";
}

const char *zt_upstream_fail_str(enum zt_upstream_fail f)
{
    switch (f) {
    case ZT_UPSTREAM_FAIL_NONE:
        return "no error";
    case ZT_UPSTREAM_FAIL_NO_ENDPOINT:
        return "no healthy upstream for the service";
    case ZT_UPSTREAM_FAIL_WAYPOINT_UNKNOWN:
        return "waypoint not found: no dialable waypoint workload (never bypassed)";
    case ZT_UPSTREAM_FAIL_WAYPOINT_NETWORK:
        return "waypoint on another network, not reachable through a network gateway (never "
               "bypassed)";
    case ZT_UPSTREAM_FAIL_NOT_SERVICE:
        return "upstream on another network: only a service can be reached through its network "
               "gateway";
    case ZT_UPSTREAM_FAIL_GATEWAY_UNKNOWN:
        return "network gateway not found: no dialable gateway workload";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- objects */

/* Frees a record string: an interned one loses a reference. */
static void str_free(char *s, bool interned)
{
    if (interned)
        zt_state_str_unref(s);
    else
        free(s);
}

static void gateway_cleanup(struct zt_gateway *g, bool interned)
{
    str_free(g->network, interned);
    str_free(g->namespace, interned);
    str_free(g->hostname, interned);
}

static void free_strv(char **v, size_t n, bool interned)
{
    for (size_t i = 0; i < n; i++)
        str_free(v[i], interned);
    free(v);
}

struct zt_workload *zt_workload_new(void)
{
    struct zt_workload *wl = zt_state_xcalloc(1, sizeof(*wl));
    atomic_init(&wl->refs, 1);
    wl->capacity = 1;
    return wl;
}

struct zt_workload *zt_workload_ref(struct zt_workload *wl)
{
    atomic_fetch_add_explicit(&wl->refs, 1, memory_order_relaxed);
    return wl;
}

void zt_workload_unref(struct zt_workload *wl)
{
    bool in;
    if (!wl || atomic_fetch_sub_explicit(&wl->refs, 1, memory_order_acq_rel) != 1)
        return;
    in = wl->interned;
    str_free(wl->uid, in);
    str_free(wl->name, in);
    str_free(wl->namespace, in);
    str_free(wl->service_account, in);
    str_free(wl->trust_domain, in);
    if (!wl->packed)
        free(wl->addresses);
    str_free(wl->network, in);
    str_free(wl->node, in);
    str_free(wl->hostname, in);
    str_free(wl->cluster_id, in);
    str_free(wl->canonical_name, in);
    str_free(wl->canonical_revision, in);
    str_free(wl->workload_name, in);
    for (size_t i = 0; i < wl->n_services; i++) {
        str_free(wl->services[i].key, in);
        if (!wl->packed)
            free(wl->services[i].ports);
    }
    if (!wl->packed)
        free(wl->services);
    else
        free(wl->n_addresses ? (void *)wl->addresses : (void *)wl->services);
    free_strv(wl->authorization_policies, wl->n_authorization_policies, in);
    str_free(wl->locality.region, in);
    str_free(wl->locality.zone, in);
    str_free(wl->locality.subzone, in);
    gateway_cleanup(&wl->waypoint, in);
    gateway_cleanup(&wl->network_gateway, in);
    free(wl);
}

/* Copies a record string (NULL stays NULL). */
static char *str_copy(const char *s)
{
    return zt_state_xstrdup(s);
}

static void gateway_copy(struct zt_gateway *dst, const struct zt_gateway *src)
{
    *dst = *src;
    dst->network = str_copy(src->network);
    dst->namespace = str_copy(src->namespace);
    dst->hostname = str_copy(src->hostname);
}

/* An array of n elements copied with the capacity zt_state_array_push
 * implies (the next power of two), so the copy may grow like the original. */
static void *array_copy(const void *p, size_t n, size_t size)
{
    size_t cap = 1;
    void *out;
    while (cap < n)
        cap *= 2;
    out = zt_state_xcalloc(cap, size);
    if (n)
        memcpy(out, p, n * size);
    return out;
}

static char **strv_copy(char *const *v, size_t n)
{
    char **out = array_copy(v, n, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        out[i] = str_copy(v[i]);
    return out;
}

/* Every owned field of zt_workload_unref, copied: keep the two in step. */
struct zt_workload *zt_workload_clone(const struct zt_workload *wl)
{
    struct zt_workload *c = zt_state_xcalloc(1, sizeof(*c));
    *c = *wl;
    atomic_init(&c->refs, 1);
    c->interned = false;
    c->packed = false;
    c->uid = str_copy(wl->uid);
    c->name = str_copy(wl->name);
    c->namespace = str_copy(wl->namespace);
    c->service_account = str_copy(wl->service_account);
    c->trust_domain = str_copy(wl->trust_domain);
    c->addresses = array_copy(wl->addresses, wl->n_addresses, sizeof(*wl->addresses));
    c->network = str_copy(wl->network);
    c->node = str_copy(wl->node);
    c->hostname = str_copy(wl->hostname);
    c->cluster_id = str_copy(wl->cluster_id);
    c->canonical_name = str_copy(wl->canonical_name);
    c->canonical_revision = str_copy(wl->canonical_revision);
    c->workload_name = str_copy(wl->workload_name);
    c->services = array_copy(wl->services, wl->n_services, sizeof(*wl->services));
    for (size_t i = 0; i < wl->n_services; i++) {
        c->services[i].key = str_copy(wl->services[i].key);
        c->services[i].ports = array_copy(wl->services[i].ports, wl->services[i].n_ports,
                                          sizeof(*wl->services[i].ports));
    }
    c->authorization_policies = strv_copy(wl->authorization_policies, wl->n_authorization_policies);
    c->locality.region = str_copy(wl->locality.region);
    c->locality.zone = str_copy(wl->locality.zone);
    c->locality.subzone = str_copy(wl->locality.subzone);
    gateway_copy(&c->waypoint, &wl->waypoint);
    gateway_copy(&c->network_gateway, &wl->network_gateway);
    return c;
}

const struct zt_workload_service *zt_workload_find_service(const struct zt_workload *wl,
                                                           const char *key)
{
    for (size_t i = 0; i < wl->n_services; i++)
        if (strcmp(nz(wl->services[i].key), key) == 0)
            return &wl->services[i];
    return NULL;
}

bool zt_workload_has_ip(const struct zt_workload *wl, const struct zt_ip *ip)
{
    for (size_t i = 0; i < wl->n_addresses; i++)
        if (zt_ip_eq(&wl->addresses[i], ip))
            return true;
    return false;
}

int zt_workload_identity(const struct zt_workload *wl, char *buf, size_t len)
{
    int n = snprintf(buf, len, "spiffe://%s/ns/%s/sa/%s", nz(wl->trust_domain), nz(wl->namespace),
                     nz(wl->service_account));
    return n < 0 || (size_t)n >= len ? ZT_E_TOO_BIG : 0;
}

struct zt_service *zt_service_new(void)
{
    struct zt_service *svc = zt_state_xcalloc(1, sizeof(*svc));
    atomic_init(&svc->refs, 1);
    return svc;
}

struct zt_service *zt_service_ref(struct zt_service *svc)
{
    atomic_fetch_add_explicit(&svc->refs, 1, memory_order_relaxed);
    return svc;
}

void zt_service_unref(struct zt_service *svc)
{
    bool in;
    if (!svc || atomic_fetch_sub_explicit(&svc->refs, 1, memory_order_acq_rel) != 1)
        return;
    in = svc->interned;
    str_free(svc->name, in);
    str_free(svc->namespace, in);
    str_free(svc->hostname, in);
    str_free(svc->key, in);
    for (size_t i = 0; i < svc->n_vips; i++)
        str_free(svc->vips[i].network, in);
    free(svc->vips);
    for (size_t i = 0; i < svc->n_cidr_vips; i++)
        str_free(svc->cidr_vips[i].network, in);
    free(svc->cidr_vips);
    free(svc->ports);
    free_strv(svc->subject_alt_names, svc->n_subject_alt_names, in);
    gateway_cleanup(&svc->waypoint, in);
    for (size_t i = 0; i < svc->n_weighted_waypoints; i++)
        gateway_cleanup(&svc->weighted_waypoints[i].destination, in);
    free(svc->weighted_waypoints);
    free(svc);
}

/* Every owned field of zt_service_unref, copied: keep the two in step. */
struct zt_service *zt_service_clone(const struct zt_service *svc)
{
    struct zt_service *c = zt_state_xcalloc(1, sizeof(*c));
    *c = *svc;
    atomic_init(&c->refs, 1);
    c->interned = false;
    c->name = str_copy(svc->name);
    c->namespace = str_copy(svc->namespace);
    c->hostname = str_copy(svc->hostname);
    c->key = str_copy(svc->key);
    c->vips = array_copy(svc->vips, svc->n_vips, sizeof(*svc->vips));
    for (size_t i = 0; i < svc->n_vips; i++)
        c->vips[i].network = str_copy(svc->vips[i].network);
    c->cidr_vips = array_copy(svc->cidr_vips, svc->n_cidr_vips, sizeof(*svc->cidr_vips));
    for (size_t i = 0; i < svc->n_cidr_vips; i++)
        c->cidr_vips[i].network = str_copy(svc->cidr_vips[i].network);
    c->ports = array_copy(svc->ports, svc->n_ports, sizeof(*svc->ports));
    c->subject_alt_names = strv_copy(svc->subject_alt_names, svc->n_subject_alt_names);
    gateway_copy(&c->waypoint, &svc->waypoint);
    c->weighted_waypoints = array_copy(svc->weighted_waypoints, svc->n_weighted_waypoints,
                                       sizeof(*svc->weighted_waypoints));
    for (size_t i = 0; i < svc->n_weighted_waypoints; i++)
        gateway_copy(&c->weighted_waypoints[i].destination,
                     &svc->weighted_waypoints[i].destination);
    return c;
}

const struct zt_port_map *zt_service_find_port(const struct zt_service *svc, uint16_t port)
{
    for (size_t i = 0; i < svc->n_ports; i++)
        if (svc->ports[i].service_port == port)
            return &svc->ports[i];
    return NULL;
}

struct zt_policy *zt_policy_new(void)
{
    struct zt_policy *p = zt_state_xcalloc(1, sizeof(*p));
    atomic_init(&p->refs, 1);
    return p;
}

struct zt_policy *zt_policy_ref(struct zt_policy *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

static void strmatch_list_cleanup(struct zt_strmatch_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].value);
    free(l->v);
}

static void sa_list_cleanup(struct zt_sa_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].namespace);
        free(l->v[i].service_account);
    }
    free(l->v);
}

static void match_cleanup(struct zt_policy_match *m)
{
    strmatch_list_cleanup(&m->namespaces);
    strmatch_list_cleanup(&m->not_namespaces);
    sa_list_cleanup(&m->service_accounts);
    sa_list_cleanup(&m->not_service_accounts);
    strmatch_list_cleanup(&m->principals);
    strmatch_list_cleanup(&m->not_principals);
    free(m->source_ips.v);
    free(m->not_source_ips.v);
    free(m->destination_ips.v);
    free(m->not_destination_ips.v);
    free(m->destination_ports.v);
    free(m->not_destination_ports.v);
}

void zt_policy_unref(struct zt_policy *p)
{
    if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t r = 0; r < p->n_rules; r++) {
        struct zt_policy_rule *rule = &p->rules[r];
        for (size_t c = 0; c < rule->n_clauses; c++) {
            struct zt_policy_clause *cl = &rule->clauses[c];
            for (size_t m = 0; m < cl->n_matches; m++)
                match_cleanup(&cl->matches[m]);
            free(cl->matches);
        }
        free(rule->clauses);
    }
    free(p->rules);
    free(p->name);
    free(p->namespace);
    free(p->key);
    free(p);
}

/* ---------------------------------------------------------------- builder */

enum bop { BOP_BASE, BOP_ADD, BOP_PUT, BOP_DEL };

struct bentry {
    void *obj; /* NULL for BOP_DEL */
    char *key; /* the object's own key, or a copy for BOP_DEL */
    uint32_t seq;
    enum bop op;
};

struct blist {
    struct bentry *v;
    size_t n;
};

/* The builder keeps the base snapshot whole and records only the delta:
 * finish merges the sorted delta into the base's sorted arrays, so a small
 * change to a large snapshot costs no sort and no copy of every key. */
struct zt_state_builder {
    const struct zt_state *base; /* one reference, or NULL */
    struct blist wls, svcs, pols;
    uint32_t seq;
    struct zt_state_strtab strs;
    char *empty; /* "" in strs, borrowed */
};

static void blist_push(struct zt_state_builder *b, struct blist *l, void *obj, const char *key,
                       enum bop op)
{
    struct bentry *e = zt_state_array_push(&l->v, &l->n, sizeof(*l->v));
    e->obj = obj;
    /* A held object keeps its key alive as long as the builder. */
    e->key = op == BOP_DEL ? zt_state_xstrdup(nz(key)) : (char *)key;
    e->seq = b->seq++;
    e->op = op;
}

/* Replaces a producer's string with the builder's shared copy; NULL and ""
 * become def (NULL: ""), so readers never test for NULL. */
static void intern(struct zt_state_builder *b, char **field, const char *def)
{
    const char *s = *field && **field ? *field : (def ? def : "");
    char *shared;
    /* Most optional fields are empty. */
    if (!*s) {
        if (!b->empty)
            shared = b->empty = zt_state_strtab_intern(&b->strs, "");
        else
            shared = zt_state_str_ref(b->empty);
    } else {
        shared = zt_state_strtab_intern(&b->strs, s);
    }
    free(*field);
    *field = shared;
}

static void intern_gateway(struct zt_state_builder *b, struct zt_gateway *g)
{
    intern(b, &g->network, NULL);
    intern(b, &g->namespace, NULL);
    intern(b, &g->hostname, NULL);
}

/* "a/b" as a shared string. */
static char *intern_key(struct zt_state_builder *b, const char *x, const char *y)
{
    size_t lx = strlen(x), ly = strlen(y);
    char small[256], *k = lx + ly + 2 <= sizeof(small) ? small : zt_state_xcalloc(lx + ly + 2, 1);
    char *shared;
    memcpy(k, x, lx);
    k[lx] = '/';
    memcpy(k + lx + 1, y, ly);
    k[lx + ly + 1] = '\0';
    shared = zt_state_strtab_intern(&b->strs, k);
    if (k != small)
        free(k);
    return shared;
}

/* Moves a workload's addresses, services and their ports into one block
 * (addresses first, then services, then every port map): at 200k workloads
 * three small allocations each cost more than their contents. */
static void pack_workload(struct zt_workload *wl)
{
    size_t a_len = wl->n_addresses * sizeof(*wl->addresses), s_off, s_len, p_off, size;
    size_t n_ports = 0;
    char *block;
    struct zt_workload_service *svcs;
    if (!wl->n_addresses && !wl->n_services)
        return;
    for (size_t i = 0; i < wl->n_services; i++)
        n_ports += wl->services[i].n_ports;
    s_off = (a_len + _Alignof(struct zt_workload_service) - 1) /
            _Alignof(struct zt_workload_service) * _Alignof(struct zt_workload_service);
    s_len = wl->n_services * sizeof(*wl->services);
    p_off = s_off + s_len; /* struct zt_workload_service is at least as aligned as a port map */
    size = p_off + n_ports * sizeof(struct zt_port_map);
    block = zt_state_xrealloc(NULL, size);
    if (a_len)
        memcpy(block, wl->addresses, a_len);
    svcs = (struct zt_workload_service *)(void *)(block + s_off);
    for (size_t i = 0; i < wl->n_services; i++) {
        struct zt_port_map *pm = (struct zt_port_map *)(void *)(block + p_off);
        svcs[i] = wl->services[i];
        if (svcs[i].n_ports)
            memcpy(pm, wl->services[i].ports, svcs[i].n_ports * sizeof(*pm));
        free(wl->services[i].ports);
        svcs[i].ports = svcs[i].n_ports ? pm : NULL;
        p_off += svcs[i].n_ports * sizeof(*pm);
    }
    free(wl->addresses);
    free(wl->services);
    wl->addresses = a_len ? (struct zt_ip *)(void *)block : NULL;
    wl->services = wl->n_services ? svcs : NULL;
    wl->packed = true;
}

/* Applies the defaults of the wire facts (3.2), turns every NULL string
 * into "" and shares the strings (see state.h). */
static void normalize_workload(struct zt_state_builder *b, struct zt_workload *wl)
{
    if (wl->interned)
        return;
    intern(b, &wl->uid, NULL);
    intern(b, &wl->name, NULL);
    intern(b, &wl->namespace, NULL);
    intern(b, &wl->service_account, "default");
    intern(b, &wl->trust_domain, "cluster.local");
    intern(b, &wl->cluster_id, "Kubernetes");
    intern(b, &wl->network, NULL);
    intern(b, &wl->node, NULL);
    intern(b, &wl->hostname, NULL);
    intern(b, &wl->canonical_name, NULL);
    intern(b, &wl->canonical_revision, NULL);
    intern(b, &wl->workload_name, NULL);
    intern(b, &wl->locality.region, NULL);
    intern(b, &wl->locality.zone, NULL);
    intern(b, &wl->locality.subzone, NULL);
    for (size_t i = 0; i < wl->n_services; i++)
        intern(b, &wl->services[i].key, NULL);
    for (size_t i = 0; i < wl->n_authorization_policies; i++)
        intern(b, &wl->authorization_policies[i], NULL);
    for (size_t i = 0; i < wl->n_addresses; i++)
        zt_ip_canonicalize(&wl->addresses[i]);
    intern_gateway(b, &wl->waypoint);
    intern_gateway(b, &wl->network_gateway);
    wl->interned = true;
    pack_workload(wl);
}

static void normalize_service(struct zt_state_builder *b, struct zt_service *svc)
{
    if (svc->interned)
        return;
    intern(b, &svc->name, NULL);
    intern(b, &svc->namespace, NULL);
    intern(b, &svc->hostname, NULL);
    for (size_t i = 0; i < svc->n_vips; i++) {
        intern(b, &svc->vips[i].network, NULL);
        zt_ip_canonicalize(&svc->vips[i].ip);
    }
    for (size_t i = 0; i < svc->n_cidr_vips; i++)
        intern(b, &svc->cidr_vips[i].network, NULL);
    for (size_t i = 0; i < svc->n_subject_alt_names; i++)
        intern(b, &svc->subject_alt_names[i], NULL);
    intern_gateway(b, &svc->waypoint);
    for (size_t i = 0; i < svc->n_weighted_waypoints; i++)
        intern_gateway(b, &svc->weighted_waypoints[i].destination);
    free(svc->key);
    svc->key = intern_key(b, svc->namespace, svc->hostname);
    svc->interned = true;
}

static void normalize_str(char **s)
{
    if (!*s)
        *s = zt_state_xstrdup("");
}

/* Policies keep their own strings: their layout belongs to authz. */
static void normalize_policy(struct zt_policy *p)
{
    size_t ln, lm;
    normalize_str(&p->name);
    normalize_str(&p->namespace);
    free(p->key);
    ln = strlen(p->namespace);
    lm = strlen(p->name);
    p->key = zt_state_xcalloc(ln + lm + 2, 1);
    memcpy(p->key, p->namespace, ln);
    p->key[ln] = '/';
    memcpy(p->key + ln + 1, p->name, lm);
}

struct zt_state_builder *zt_state_builder_new(const struct zt_state *base)
{
    struct zt_state_builder *b = zt_state_xcalloc(1, sizeof(*b));
    b->base = base ? zt_state_ref(base) : NULL;
    return b;
}

typedef void obj_unref_fn(void *obj);

static void unref_wl(void *o)
{
    zt_workload_unref(o);
}

static void unref_svc(void *o)
{
    zt_service_unref(o);
}

static void unref_pol(void *o)
{
    zt_policy_unref(o);
}

static void blist_free(struct blist *l, obj_unref_fn *unref)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].op == BOP_DEL)
            free(l->v[i].key);
        else
            unref(l->v[i].obj);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void zt_state_builder_free(struct zt_state_builder *b)
{
    if (!b)
        return;
    blist_free(&b->wls, unref_wl);
    blist_free(&b->svcs, unref_svc);
    blist_free(&b->pols, unref_pol);
    zt_state_strtab_cleanup(&b->strs);
    zt_state_unref(b->base);
    free(b);
}

void zt_state_builder_add_workload(struct zt_state_builder *b, struct zt_workload *wl)
{
    normalize_workload(b, wl);
    blist_push(b, &b->wls, wl, wl->uid, BOP_ADD);
}

void zt_state_builder_add_service(struct zt_state_builder *b, struct zt_service *svc)
{
    normalize_service(b, svc);
    blist_push(b, &b->svcs, svc, svc->key, BOP_ADD);
}

void zt_state_builder_add_policy(struct zt_state_builder *b, struct zt_policy *p)
{
    normalize_policy(p);
    blist_push(b, &b->pols, p, p->key, BOP_ADD);
}

void zt_state_builder_put_workload(struct zt_state_builder *b, struct zt_workload *wl)
{
    normalize_workload(b, wl);
    blist_push(b, &b->wls, wl, wl->uid, BOP_PUT);
}

void zt_state_builder_put_service(struct zt_state_builder *b, struct zt_service *svc)
{
    normalize_service(b, svc);
    blist_push(b, &b->svcs, svc, svc->key, BOP_PUT);
}

void zt_state_builder_put_policy(struct zt_state_builder *b, struct zt_policy *p)
{
    normalize_policy(p);
    blist_push(b, &b->pols, p, p->key, BOP_PUT);
}

void zt_state_builder_remove_workload(struct zt_state_builder *b, const char *uid)
{
    blist_push(b, &b->wls, NULL, uid, BOP_DEL);
}

void zt_state_builder_remove_service(struct zt_state_builder *b, const char *key)
{
    blist_push(b, &b->svcs, NULL, key, BOP_DEL);
}

void zt_state_builder_remove_policy(struct zt_state_builder *b, const char *key)
{
    blist_push(b, &b->pols, NULL, key, BOP_DEL);
}

static int cmp_bentry(const void *a, const void *b)
{
    const struct bentry *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

struct objv {
    void **v;
    size_t n;
};

static const char *obj_key(const void *obj, size_t key_off)
{
    return *(const char *const *)((const char *)obj + key_off);
}

/* Replays the operations on each key in order over the base's objects
 * (base: sorted by key, unique; key_off: where an object keeps its key) and
 * writes the surviving objects, sorted by key, to *out; those that are not
 * the base's, in the same order, to fresh (for validation and the indexes)
 * and the base's that did not survive to gone. Takes no reference. */
static int blist_resolve(struct blist *l, void *const *base, size_t n_base, size_t key_off,
                         const char *what, void ***out, size_t *n_out, struct objv *fresh,
                         struct objv *gone, char *err, size_t errlen)
{
    size_t i = 0, bi = 0, n = 0;
    void **res;

    if (l->n + n_base > ZT_STATE_MAX_OBJECTS) {
        snprintf(err, errlen, "too many %ss (%zu > %d)", what, l->n + n_base, ZT_STATE_MAX_OBJECTS);
        return ZT_E_TOO_BIG;
    }
    if (l->n)
        qsort(l->v, l->n, sizeof(*l->v), cmp_bentry);
    res = zt_state_xrealloc(NULL, (l->n + n_base) * sizeof(*res));
    while (i < l->n || bi < n_base) {
        const char *key;
        void *cur = NULL, *was = NULL;
        int c = bi >= n_base ? 1 : i >= l->n ? -1 : strcmp(obj_key(base[bi], key_off), l->v[i].key);
        if (c < 0) {
            /* Untouched base objects up to the next key of the delta: found
             * by binary search and copied as one run, so a small delta
             * costs no comparison per base object. */
            size_t lo = bi + 1, hi = n_base;
            while (i < l->n && lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(obj_key(base[mid], key_off), l->v[i].key) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (i >= l->n)
                lo = n_base;
            memcpy(res + n, base + bi, (lo - bi) * sizeof(*res));
            n += lo - bi;
            bi = lo;
            continue;
        }
        if (c == 0)
            cur = was = base[bi++];
        key = l->v[i].key;
        for (; i < l->n && strcmp(l->v[i].key, key) == 0; i++) {
            struct bentry *e = &l->v[i];
            if (e->op == BOP_ADD && cur) {
                snprintf(err, errlen, "duplicate %s \"%s\"", what, e->key);
                free(res);
                return ZT_E_CONFIG;
            }
            cur = e->op == BOP_DEL ? NULL : e->obj;
        }
        if (cur && cur != was)
            *(void **)zt_state_array_push(&fresh->v, &fresh->n, sizeof(*fresh->v)) = cur;
        if (was && cur != was)
            *(void **)zt_state_array_push(&gone->v, &gone->n, sizeof(*gone->v)) = was;
        if (cur)
            res[n++] = cur;
    }
    *out = res;
    *n_out = n;
    return 0;
}

static int validate_workload(const struct zt_workload *wl, char *err, size_t errlen)
{
    if (!*wl->uid) {
        snprintf(err, errlen, "workload \"%s/%s\" has an empty uid", wl->namespace, wl->name);
        return ZT_E_CONFIG;
    }
    for (size_t i = 0; i < wl->n_services; i++) {
        const char *k = wl->services[i].key;
        const char *slash = strchr(k, '/');
        if (!slash || slash == k || !slash[1]) {
            snprintf(err, errlen, "workload \"%s\": service key \"%s\" is not namespace/hostname",
                     wl->uid, k);
            return ZT_E_CONFIG;
        }
    }
    return 0;
}

static int validate_service(const struct zt_service *svc, char *err, size_t errlen)
{
    if (!*svc->hostname || !*svc->namespace) {
        snprintf(err, errlen, "service \"%s\" needs a namespace and a hostname", svc->key);
        return ZT_E_CONFIG;
    }
    return 0;
}

static int validate_policy(const struct zt_policy *p, char *err, size_t errlen)
{
    if (!*p->name || !*p->namespace) {
        snprintf(err, errlen, "policy \"%s\" needs a namespace and a name", p->key);
        return ZT_E_CONFIG;
    }
    return 0;
}

static int cmp_ip_entry_key(const struct ip_entry *x, const struct ip_entry *y)
{
    int c = strcmp(x->network, y->network);
    return c ? c : zt_ip_cmp(&x->ip, &y->ip);
}

/* Same key: HBONE before TCP, pods before other kinds, then uid. */
static int cmp_wl_ip_entry(const void *a, const void *b)
{
    const struct ip_entry *x = a, *y = b;
    const struct zt_workload *wx = x->obj, *wy = y->obj;
    int c = cmp_ip_entry_key(x, y);
    if (c)
        return c;
    if (wx->protocol != wy->protocol)
        return wx->protocol == ZT_WL_PROTO_HBONE ? -1 : 1;
    if ((wx->workload_type == ZT_WL_TYPE_POD) != (wy->workload_type == ZT_WL_TYPE_POD))
        return wx->workload_type == ZT_WL_TYPE_POD ? -1 : 1;
    return strcmp(wx->uid, wy->uid);
}

static int cmp_vip_entry(const void *a, const void *b)
{
    const struct ip_entry *x = a, *y = b;
    int c = cmp_ip_entry_key(x, y);
    if (c)
        return c;
    return strcmp(((const struct zt_service *)x->obj)->key,
                  ((const struct zt_service *)y->obj)->key);
}

static void build_vip_indexes(struct zt_state *s);
static void build_endpoints(struct zt_state *s);

static void build_indexes(struct zt_state *s)
{
    size_t n = 0;

    for (size_t i = 0; i < s->n_wls; i++)
        if (s->wls[i]->network_mode != ZT_NETMODE_HOST_NETWORK)
            n += s->wls[i]->n_addresses;
    s->wl_ips = zt_state_xcalloc(n, sizeof(*s->wl_ips));
    for (size_t i = 0; i < s->n_wls; i++) {
        const struct zt_workload *wl = s->wls[i];
        if (wl->network_mode == ZT_NETMODE_HOST_NETWORK)
            continue;
        for (size_t a = 0; a < wl->n_addresses; a++)
            s->wl_ips[s->n_wl_ips++] =
                (struct ip_entry){.network = wl->network, .ip = wl->addresses[a], .obj = wl};
    }
    /* Every claimant of an address stays, the preferred one first (lookups
     * take the first): when it goes, the next snapshot's merge still knows
     * the runner-up. */
    qsort(s->wl_ips, s->n_wl_ips, sizeof(*s->wl_ips), cmp_wl_ip_entry);

    build_vip_indexes(s);
    build_endpoints(s);
}

static void build_vip_indexes(struct zt_state *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_svcs; i++)
        n += s->svcs[i]->n_vips;
    s->vips = zt_state_xcalloc(n, sizeof(*s->vips));
    n = 0;
    for (size_t i = 0; i < s->n_svcs; i++)
        n += s->svcs[i]->n_cidr_vips;
    s->cidrs = zt_state_xcalloc(n, sizeof(*s->cidrs));
    for (size_t i = 0; i < s->n_svcs; i++) {
        const struct zt_service *svc = s->svcs[i];
        for (size_t v = 0; v < svc->n_vips; v++)
            s->vips[s->n_vips++] = (struct ip_entry){
                .network = svc->vips[v].network, .ip = svc->vips[v].ip, .obj = svc};
        for (size_t v = 0; v < svc->n_cidr_vips; v++)
            s->cidrs[s->n_cidrs++] = (struct cidr_entry){
                .network = svc->cidr_vips[v].network, .cidr = svc->cidr_vips[v].cidr, .svc = svc};
    }
    qsort(s->vips, s->n_vips, sizeof(*s->vips), cmp_vip_entry);
}

static void build_endpoints(struct zt_state *s)
{
    /* Endpoint lists: workloads are visited in uid order, so each list is
     * sorted by uid. */
    s->eps = zt_state_xcalloc(s->n_svcs, sizeof(*s->eps));
    for (size_t i = 0; i < s->n_wls; i++) {
        const struct zt_workload *wl = s->wls[i];
        for (size_t k = 0; k < wl->n_services; k++) {
            ssize_t idx = zt_state_service_index(s, wl->services[k].key);
            struct ep_list *l;
            if (idx < 0)
                continue;
            l = &s->eps[idx];
            /* A workload naming the same service twice counts once. */
            if (l->n && l->v[l->n - 1] == wl)
                continue;
            *(const struct zt_workload **)zt_state_array_push(&l->v, &l->n, sizeof(*l->v)) = wl;
        }
    }
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* gone sorted by pointer. */
static bool is_gone(const struct objv *gone, const void *obj)
{
    return gone->n && bsearch(&obj, gone->v, gone->n, sizeof(*gone->v), cmp_ptr);
}

/* The endpoints of a service the base had under the same key: the base's
 * list without the workloads that went, merged (by uid) with the fresh
 * workloads that name it. */
static void merge_endpoints(struct ep_list *l, const struct ep_list *bl, const struct objv *gone,
                            const struct objv *fresh, const char *key)
{
    size_t i = 0, j = 0;
    l->v = zt_state_xcalloc(bl->n + fresh->n, sizeof(*l->v));
    while (i < bl->n || j < fresh->n) {
        const struct zt_workload *f = j < fresh->n ? fresh->v[j] : NULL;
        if (f && !zt_workload_find_service(f, key)) {
            j++;
            continue;
        }
        if (i < bl->n && is_gone(gone, bl->v[i])) {
            i++;
            continue;
        }
        if (!f || (i < bl->n && strcmp(bl->v[i]->uid, f->uid) < 0)) {
            l->v[l->n++] = bl->v[i++];
        } else {
            l->v[l->n++] = f;
            j++;
        }
    }
}

/* The indexes of s, built from those of base when s is base plus a delta:
 * gone are the base's workloads s no longer has, fresh the workloads s has
 * that base had not (in uid order). The address index is a merge of two
 * sorted arrays; endpoint lists are copied from the base except for the
 * services a changed workload names; only services new to s cost a scan
 * of every workload. Results are those of build_indexes. */
static void build_indexes_delta(struct zt_state *s, const struct zt_state *base, struct objv *gone,
                                const struct objv *fresh)
{
    struct ip_entry *add = NULL;
    size_t n_add = 0, i = 0, j = 0, n = 0, bj = 0;
    char **dirty = NULL; /* service keys named by a gone or fresh workload */
    size_t n_dirty = 0;
    size_t *new_svcs = NULL, n_new = 0;

    if (gone->n)
        qsort(gone->v, gone->n, sizeof(*gone->v), cmp_ptr);
    for (size_t f = 0; f < fresh->n; f++) {
        const struct zt_workload *wl = fresh->v[f];
        for (size_t k = 0; k < wl->n_services; k++)
            *(char **)zt_state_array_push(&dirty, &n_dirty, sizeof(*dirty)) = wl->services[k].key;
        if (wl->network_mode == ZT_NETMODE_HOST_NETWORK)
            continue;
        for (size_t a = 0; a < wl->n_addresses; a++)
            *(struct ip_entry *)zt_state_array_push(&add, &n_add, sizeof(*add)) =
                (struct ip_entry){.network = wl->network, .ip = wl->addresses[a], .obj = wl};
    }
    for (size_t g = 0; g < gone->n; g++) {
        const struct zt_workload *wl = gone->v[g];
        for (size_t k = 0; k < wl->n_services; k++)
            *(char **)zt_state_array_push(&dirty, &n_dirty, sizeof(*dirty)) = wl->services[k].key;
    }
    if (n_add)
        qsort(add, n_add, sizeof(*add), cmp_wl_ip_entry);
    if (n_dirty)
        qsort(dirty, n_dirty, sizeof(*dirty), cmp_strp);

    /* Filled below: no need to zero megabytes. */
    s->wl_ips = zt_state_xrealloc(NULL, (base->n_wl_ips + n_add) * sizeof(*s->wl_ips));
    while (i < base->n_wl_ips || j < n_add) {
        if (i < base->n_wl_ips && is_gone(gone, base->wl_ips[i].obj))
            i++;
        else if (j >= n_add ||
                 (i < base->n_wl_ips && cmp_wl_ip_entry(&base->wl_ips[i], &add[j]) <= 0))
            s->wl_ips[n++] = base->wl_ips[i++];
        else
            s->wl_ips[n++] = add[j++];
    }
    s->n_wl_ips = n;
    free(add);

    build_vip_indexes(s);

    s->eps = zt_state_xcalloc(s->n_svcs, sizeof(*s->eps));
    for (i = 0; i < s->n_svcs; i++) {
        const char *key = s->svcs[i]->key;
        const struct ep_list *bl;
        while (bj < base->n_svcs && strcmp(base->svcs[bj]->key, key) < 0)
            bj++;
        if (bj == base->n_svcs || strcmp(base->svcs[bj]->key, key) != 0) {
            *(size_t *)zt_state_array_push(&new_svcs, &n_new, sizeof(*new_svcs)) = i;
            continue;
        }
        bl = &base->eps[bj];
        if (n_dirty && bsearch(&key, dirty, n_dirty, sizeof(*dirty), cmp_strp)) {
            merge_endpoints(&s->eps[i], bl, gone, fresh, key);
        } else if (bl->n) {
            s->eps[i].v = zt_state_xcalloc(bl->n, sizeof(*bl->v));
            memcpy(s->eps[i].v, bl->v, bl->n * sizeof(*bl->v));
            s->eps[i].n = bl->n;
        }
    }
    /* Services new under their key: any workload may already name them. */
    for (i = 0; n_new && i < s->n_wls; i++) {
        const struct zt_workload *wl = s->wls[i];
        for (size_t k = 0; k < wl->n_services; k++) {
            size_t lo = 0, hi = n_new;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(wl->services[k].key, s->svcs[new_svcs[mid]]->key);
                if (c == 0) {
                    struct ep_list *l = &s->eps[new_svcs[mid]];
                    if (!l->n || l->v[l->n - 1] != wl)
                        *(const struct zt_workload **)zt_state_array_push(&l->v, &l->n,
                                                                          sizeof(*l->v)) = wl;
                    break;
                }
                if (c < 0)
                    hi = mid;
                else
                    lo = mid + 1;
            }
        }
    }
    free(new_svcs);
    free(dirty);
}

int zt_state_builder_finish(struct zt_state_builder *b, struct zt_state **out, char *err,
                            size_t errlen)
{
    struct zt_state *s = zt_state_xcalloc(1, sizeof(*s));
    const struct zt_state *base = b->base;
    struct objv fresh[3] = {{0}}, gone[3] = {{0}};
    void **objs = NULL;
    size_t n = 0;
    int rc;

    atomic_init(&s->refs, 1);
    if (errlen)
        err[0] = '\0';

    rc = blist_resolve(&b->wls, base ? (void *const *)base->wls : NULL, base ? base->n_wls : 0,
                       offsetof(struct zt_workload, uid), "workload uid", &objs, &n, &fresh[0],
                       &gone[0], err, errlen);
    if (rc)
        goto fail;
    s->wls = (struct zt_workload **)objs;
    s->n_wls = n;
    rc = blist_resolve(&b->svcs, base ? (void *const *)base->svcs : NULL, base ? base->n_svcs : 0,
                       offsetof(struct zt_service, key), "service", &objs, &n, &fresh[1], &gone[1],
                       err, errlen);
    if (rc)
        goto fail;
    s->svcs = (struct zt_service **)objs;
    s->n_svcs = n;
    rc = blist_resolve(&b->pols, base ? (void *const *)base->pols : NULL, base ? base->n_pols : 0,
                       offsetof(struct zt_policy, key), "policy", &objs, &n, &fresh[2], &gone[2],
                       err, errlen);
    if (rc)
        goto fail;
    s->pols = (struct zt_policy **)objs;
    s->n_pols = n;

    /* The base's objects were validated when it was built. */
    for (size_t i = 0; i < fresh[0].n && !rc; i++)
        rc = validate_workload(fresh[0].v[i], err, errlen);
    for (size_t i = 0; i < fresh[1].n && !rc; i++)
        rc = validate_service(fresh[1].v[i], err, errlen);
    for (size_t i = 0; i < fresh[2].n && !rc; i++)
        rc = validate_policy(fresh[2].v[i], err, errlen);
    if (rc)
        goto fail;

    /* The snapshot takes its own reference on every object it keeps; the
     * builder then drops its references (and the base). */
    for (size_t i = 0; i < s->n_wls; i++)
        zt_workload_ref(s->wls[i]);
    for (size_t i = 0; i < s->n_svcs; i++)
        zt_service_ref(s->svcs[i]);
    for (size_t i = 0; i < s->n_pols; i++)
        zt_policy_ref(s->pols[i]);
    if (base)
        build_indexes_delta(s, base, &gone[0], &fresh[0]);
    else
        build_indexes(s);
    zt_state_derived_init(s, base);
    pthread_mutex_init(&s->by_host_lock, NULL);
    *out = s;
    goto out;

fail:
    free(s->wls);
    free(s->svcs);
    free(s->pols);
    free(s);
    *out = NULL;
out:
    for (size_t i = 0; i < 3; i++) {
        free(fresh[i].v);
        free(gone[i].v);
    }
    zt_state_builder_free(b);
    return rc;
}

/* ---------------------------------------------------------------- snapshot */

struct zt_state *zt_state_new_empty(void)
{
    struct zt_state *s = NULL;
    char err[8];
    zt_state_builder_finish(zt_state_builder_new(NULL), &s, err, sizeof(err));
    return s;
}

struct zt_state *zt_state_ref(const struct zt_state *cs)
{
    /* The reference count is the one mutable part of a snapshot. */
    struct zt_state *s = (struct zt_state *)cs;
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void zt_state_unref(const struct zt_state *cs)
{
    struct zt_state *s = (struct zt_state *)cs;
    bool large = false;
    size_t n_last = 0;
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    zt_state_derived_cleanup(s);
    /* Worth a trim when many records go with the snapshot, not when the
     * next snapshot shares them (a delta). The count is a hint: another
     * thread may drop a shared record at the same time. */
    for (size_t i = 0; i < s->n_wls && n_last < ZT_STATE_TRIM_OBJECTS; i++)
        n_last += atomic_load_explicit(&s->wls[i]->refs, memory_order_relaxed) == 1;
    large = n_last >= ZT_STATE_TRIM_OBJECTS;
    for (size_t i = 0; i < s->n_wls; i++)
        zt_workload_unref(s->wls[i]);
    for (size_t i = 0; i < s->n_svcs; i++) {
        zt_service_unref(s->svcs[i]);
        free(s->eps[i].v);
    }
    for (size_t i = 0; i < s->n_pols; i++)
        zt_policy_unref(s->pols[i]);
    free(s->wls);
    free(s->svcs);
    free(s->pols);
    free(s->eps);
    free(s->wl_ips);
    free(s->vips);
    free(s->cidrs);
    free((void *)atomic_load_explicit(&s->by_host, memory_order_relaxed));
    pthread_mutex_destroy(&s->by_host_lock);
    free(s);
    /* A large snapshot leaves its memory in malloc's free lists, where the
     * next one does not fit exactly: give it back to the system, so that
     * RSS after a reload is what the new snapshot needs. */
    if (large)
        malloc_trim(0);
}

/* ---------------------------------------------------------------- lookups */

static ssize_t find_key(void *const *arr, size_t n, size_t key_off, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *k = *(const char *const *)((const char *)arr[mid] + key_off);
        int c = strcmp(key, k);
        if (c == 0)
            return (ssize_t)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

ssize_t zt_state_service_index(const struct zt_state *s, const char *key)
{
    return find_key((void *const *)s->svcs, s->n_svcs, offsetof(struct zt_service, key), key);
}

const struct zt_workload *zt_state_workload_by_uid(const struct zt_state *s, const char *uid)
{
    ssize_t i = find_key((void *const *)s->wls, s->n_wls, offsetof(struct zt_workload, uid), uid);
    return i < 0 ? NULL : s->wls[i];
}

const struct zt_service *zt_state_service_by_key(const struct zt_state *s, const char *key)
{
    ssize_t i = zt_state_service_index(s, key);
    return i < 0 ? NULL : s->svcs[i];
}

const struct zt_policy *zt_state_policy_by_key(const struct zt_state *s, const char *key)
{
    ssize_t i = find_key((void *const *)s->pols, s->n_pols, offsetof(struct zt_policy, key), key);
    return i < 0 ? NULL : s->pols[i];
}

/* ---------------------------------------------------------------- by hostname */

static int cmp_by_host(const void *a, const void *b)
{
    const struct zt_service *x = *(const struct zt_service *const *)a;
    const struct zt_service *y = *(const struct zt_service *const *)b;
    int c = strcasecmp(x->hostname, y->hostname);
    return c ? c : strcmp(x->key, y->key);
}

/* The services in hostname order, built once per snapshot under its lock
 * (two workers asking at once build it once). */
static const struct zt_service *const *by_host(const struct zt_state *cs)
{
    struct zt_state *s = (struct zt_state *)cs; /* the index is the mutable part */
    const struct zt_service **v = atomic_load_explicit(&s->by_host, memory_order_acquire);
    if (v)
        return v;
    pthread_mutex_lock(&s->by_host_lock);
    v = atomic_load_explicit(&s->by_host, memory_order_relaxed);
    if (!v) {
        v = zt_state_xcalloc(s->n_svcs + 1, sizeof(*v));
        memcpy(v, s->svcs, s->n_svcs * sizeof(*v));
        qsort(v, s->n_svcs, sizeof(*v), cmp_by_host);
        atomic_store_explicit(&s->by_host, v, memory_order_release);
    }
    pthread_mutex_unlock(&s->by_host_lock);
    return v;
}

size_t zt_state_services_by_hostname(const struct zt_state *s, const char *hostname,
                                     const struct zt_service *const **out)
{
    const struct zt_service *const *v = by_host(s);
    size_t lo = 0, hi = s->n_svcs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcasecmp(v[mid]->hostname, hostname) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < s->n_svcs && strcasecmp(v[end]->hostname, hostname) == 0)
        end++;
    *out = v + lo;
    return end - lo;
}

/* First index whose (network, ip) is >= the probe. */
static size_t ip_lower_bound(const struct ip_entry *v, size_t n, const struct ip_entry *probe)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_ip_entry_key(&v[mid], probe) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const struct zt_workload *zt_state_workload_by_ip(const struct zt_state *s, const char *network,
                                                  const struct zt_ip *ip)
{
    struct ip_entry probe = {.network = nz(network), .ip = *ip};
    size_t i;
    zt_ip_canonicalize(&probe.ip);
    i = ip_lower_bound(s->wl_ips, s->n_wl_ips, &probe);
    if (i < s->n_wl_ips && cmp_ip_entry_key(&s->wl_ips[i], &probe) == 0)
        return s->wl_ips[i].obj;
    return NULL;
}

static bool visible_to(const struct zt_service *svc, const char *client_ns)
{
    return !client_ns || svc->visibility != ZT_VIS_NAMESPACE ||
           strcmp(svc->namespace, client_ns) == 0;
}

/* Ranks an exact-VIP candidate: client namespace, then canonical. */
static int vip_rank(const struct zt_service *svc, const char *client_ns)
{
    int r = 0;
    if (client_ns && strcmp(svc->namespace, client_ns) == 0)
        r += 2;
    if (svc->canonical)
        r += 1;
    return r;
}

static const struct zt_service *lookup_exact_vip(const struct zt_state *s, const char *network,
                                                 const struct zt_ip *ip, const char *client_ns)
{
    struct ip_entry probe = {.network = nz(network), .ip = *ip};
    const struct zt_service *best = NULL;
    int best_rank = -1;
    zt_ip_canonicalize(&probe.ip);
    for (size_t i = ip_lower_bound(s->vips, s->n_vips, &probe);
         i < s->n_vips && cmp_ip_entry_key(&s->vips[i], &probe) == 0; i++) {
        const struct zt_service *svc = s->vips[i].obj;
        int r;
        if (!visible_to(svc, client_ns))
            continue;
        r = vip_rank(svc, client_ns);
        if (r > best_rank) {
            best = svc;
            best_rank = r;
        }
    }
    return best;
}

const struct zt_service *zt_state_service_by_vip(const struct zt_state *s, const char *network,
                                                 const struct zt_ip *ip)
{
    return lookup_exact_vip(s, network, ip, NULL);
}

const struct zt_service *zt_state_service_lookup(const struct zt_state *s, const char *network,
                                                 const struct zt_ip *ip, const char *client_ns)
{
    const struct zt_service *best = lookup_exact_vip(s, network, ip, client_ns);
    long best_rank = -1;
    if (best)
        return best;
    /* CIDR VIPs: in-namespace beats longer prefix beats canonical. */
    for (size_t i = 0; i < s->n_cidrs; i++) {
        const struct cidr_entry *c = &s->cidrs[i];
        long r;
        if (strcmp(c->network, nz(network)) != 0 || !zt_cidr_contains(&c->cidr, ip) ||
            !visible_to(c->svc, client_ns))
            continue;
        r = (client_ns && strcmp(c->svc->namespace, client_ns) == 0) ? 1000 : 0;
        r += c->cidr.prefix * 2 + (c->svc->canonical ? 1 : 0);
        if (r > best_rank) {
            best = c->svc;
            best_rank = r;
        }
    }
    return best;
}

const struct zt_workload *zt_state_workload_by_info(const struct zt_state *s, const char *name,
                                                    const char *namespace,
                                                    const char *service_account, const char *node)
{
    const struct zt_workload *first = NULL;
    for (size_t i = 0; i < s->n_wls; i++) {
        const struct zt_workload *wl = s->wls[i];
        if (strcmp(wl->name, nz(name)) != 0 || strcmp(wl->namespace, nz(namespace)) != 0)
            continue;
        if (service_account && strcmp(wl->service_account, service_account) != 0)
            continue;
        if (!node || strcmp(wl->node, node) == 0)
            return wl;
        if (!first)
            first = wl;
    }
    return first;
}

size_t zt_state_workload_count(const struct zt_state *s)
{
    return s->n_wls;
}

const struct zt_workload *zt_state_workload_at(const struct zt_state *s, size_t i)
{
    return i < s->n_wls ? s->wls[i] : NULL;
}

size_t zt_state_service_count(const struct zt_state *s)
{
    return s->n_svcs;
}

const struct zt_service *zt_state_service_at(const struct zt_state *s, size_t i)
{
    return i < s->n_svcs ? s->svcs[i] : NULL;
}

size_t zt_state_policy_count(const struct zt_state *s)
{
    return s->n_pols;
}

const struct zt_policy *zt_state_policy_at(const struct zt_state *s, size_t i)
{
    return i < s->n_pols ? s->pols[i] : NULL;
}

size_t zt_state_service_endpoints(const struct zt_state *s, const struct zt_service *svc,
                                  const struct zt_workload *const **out)
{
    ssize_t i = zt_state_service_index(s, svc->key);
    if (i < 0 || s->svcs[i] != svc) {
        *out = NULL;
        return 0;
    }
    *out = s->eps[i].v;
    return s->eps[i].n;
}
