/* Waypoints declared the Kubernetes way. See k8s.h.
 *
 * Two halves: reading a Gateway or Namespace document (and the labels of
 * our own objects) into a file's facts, which local.c calls while it walks
 * a file; and zt_k8s_resolve, which sees every file's facts at once and
 * writes the derived waypoint fields on the merged snapshot.
 *
 * Kubernetes documents are read leniently (a pasted object carries status,
 * managedFields, annotations and fields we have no use for: unknown keys
 * are not errors); what we do read is checked. */
#include "config/k8s.h"
#include "config/local_int.h"

#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HBONE_PORT 15008
#define WAYPOINT_CLASS "istio-waypoint"

const char *zt_k8s_traffic_str(enum zt_k8s_traffic t)
{
    switch (t) {
    case ZT_K8S_TRAFFIC_SERVICE:
        return "service";
    case ZT_K8S_TRAFFIC_WORKLOAD:
        return "workload";
    case ZT_K8S_TRAFFIC_ALL:
        return "all";
    case ZT_K8S_TRAFFIC_NONE:
        return "none";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- facts */

struct zt_k8s_facts *zt_k8s_facts_new(const char *file)
{
    struct zt_k8s_facts *f = zt_state_xcalloc(1, sizeof(*f));
    f->file = zt_state_xstrdup(file);
    return f;
}

void zt_k8s_use_cleanup(struct zt_k8s_use *u)
{
    free(u->name);
    free(u->namespace);
    memset(u, 0, sizeof(*u));
}

void zt_k8s_facts_free(struct zt_k8s_facts *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_gateways; i++) {
        struct zt_k8s_gateway *g = &f->gateways[i];
        free(g->name);
        free(g->namespace);
        free(g->address.network);
        free(g->address.namespace);
        free(g->address.hostname);
    }
    for (size_t i = 0; i < f->n_namespaces; i++) {
        free(f->namespaces[i].name);
        zt_k8s_use_cleanup(&f->namespaces[i].use);
    }
    for (size_t i = 0; i < f->n_labelled; i++) {
        free(f->labelled[i].key);
        free(f->labelled[i].gateway_name);
        zt_k8s_use_cleanup(&f->labelled[i].use);
    }
    free(f->gateways);
    free(f->namespaces);
    free(f->labelled);
    for (size_t i = 0; i < f->n_routes; i++)
        zt_route_def_cleanup(&f->routes[i]);
    free(f->routes);
    for (size_t i = 0; i < f->n_authz; i++)
        zt_authz_l7_policy_free(f->authz[i]);
    free(f->authz);
    for (size_t i = 0; i < f->n_authn; i++)
        zt_jwt_authn_policy_free(f->authn[i]);
    free(f->authn);
    for (size_t i = 0; i < f->n_ratelimits; i++)
        zt_ratelimit_policy_free(f->ratelimits[i]);
    free(f->ratelimits);
    free(f->notes);
    free(f->file);
    free(f);
}

bool zt_k8s_facts_empty(const struct zt_k8s_facts *f)
{
    return !f->n_gateways && !f->n_namespaces && !f->n_labelled;
}

static void vnote(char **notes, const char *fmt, va_list ap)
{
    char line[512];
    size_t have = *notes ? strlen(*notes) : 0, add;
    vsnprintf(line, sizeof(line), fmt, ap);
    add = strlen(line);
    *notes = zt_state_xrealloc(*notes, have + add + 2);
    memcpy(*notes + have, line, add);
    (*notes)[have + add] = '\n';
    (*notes)[have + add + 1] = '\0';
}

void zt_k8s_facts_note(struct zt_k8s_facts *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(&f->notes, fmt, ap);
    va_end(ap);
}

void zt_k8s_note(char **notes, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(notes, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- reading */

__attribute__((format(printf, 4, 5))) static int fail(struct zt_yreader *r, const struct ynode *n,
                                                      const char *what, const char *fmt, ...)
{
    char where[1024];
    snprintf(where, sizeof(where), "%s:%lu: %s", r->file, n ? (unsigned long)n->line + 1 : 1ul,
             what);
    va_list ap;
    va_start(ap, fmt);
    int rc = zt_verrf_at(r->err, r->errlen, ZT_E_CONFIG, where, fmt, ap);
    va_end(ap);
    return rc;
}

struct ynode *zt_k8s_get(const struct ynode *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (size_t i = 0; i < map->n_pairs; i++) {
        const struct ynode *k = map->pairs[i].key;
        if (k && k->type == YAML_SCALAR_NODE && strcmp(k->value, key) == 0)
            return map->pairs[i].value;
    }
    return NULL;
}

/* A scalar's text; NULL for anything else. */
static const char *text(const struct ynode *n)
{
    return n && n->type == YAML_SCALAR_NODE ? n->value : NULL;
}

/* A mapping's required, non-empty string. */
static int need_str(struct zt_yreader *r, const struct ynode *map, const char *key,
                    const char *what, const char *path, const char **out)
{
    const struct ynode *v = zt_k8s_get(map, key);
    *out = text(v);
    if (!v)
        return fail(r, map, what, "missing %s%s", path, key);
    if (!*out || !**out)
        return fail(r, v, what, "%s%s: expected a non-empty string", path, key);
    return 0;
}

int zt_k8s_labels(struct zt_yreader *r, const struct ynode *map, const char *what, const char *path,
                  struct zt_k8s_label_view *v)
{
    memset(v, 0, sizeof(*v));
    if (!map || (map->type == YAML_SCALAR_NODE && map->plain &&
                 (map->len == 0 || !strcmp(map->value, "~") || !strcmp(map->value, "null"))))
        return 0; /* "labels:" with nothing after it */
    if (map->type != YAML_MAPPING_NODE)
        return fail(r, map, what, "%s: expected a mapping of strings", path);
    for (size_t i = 0; i < map->n_pairs; i++) {
        const struct ynode *k = map->pairs[i].key, *val = map->pairs[i].value;
        if (!text(k) || !text(val))
            return fail(r, k ? k : map, what, "%s: expected a mapping of strings", path);
        if (!strcmp(k->value, ZT_K8S_LABEL_USE_WAYPOINT))
            v->use = val;
        else if (!strcmp(k->value, ZT_K8S_LABEL_USE_WAYPOINT_NS))
            v->use_ns = val;
        else if (!strcmp(k->value, ZT_K8S_LABEL_WAYPOINT_FOR))
            v->waypoint_for = val;
        else if (!strcmp(k->value, ZT_K8S_LABEL_GATEWAY_NAME))
            v->gateway_name = val;
    }
    return 0;
}

int zt_k8s_use_read(struct zt_yreader *r, const struct zt_k8s_label_view *v, const char *what,
                    const char *path, struct zt_k8s_use *u)
{
    memset(u, 0, sizeof(*u));
    if (!v->use)
        return 0; /* use-waypoint-namespace alone means nothing, as in Istio */
    if (!*v->use->value)
        return fail(r, v->use, what, "%s." ZT_K8S_LABEL_USE_WAYPOINT ": empty value", path);
    if (v->use_ns && !*v->use_ns->value)
        return fail(r, v->use_ns, what, "%s." ZT_K8S_LABEL_USE_WAYPOINT_NS ": empty value", path);
    u->is_set = true;
    u->line = v->use->line;
    /* Istio reserves "none": a waypoint of that name cannot be used. */
    if (!strcmp(v->use->value, "none")) {
        u->is_none = true;
        return 0;
    }
    u->name = zt_state_xstrdup(v->use->value);
    u->namespace = v->use_ns ? zt_state_xstrdup(v->use_ns->value) : NULL;
    return 0;
}

/* metadata.name and metadata.namespace ("default" when absent, as kubectl
 * applies a namespaced object). */
static int read_meta(struct zt_yreader *r, const struct ynode *doc, const char *kind,
                     bool namespaced, const struct ynode **meta, const char **name, const char **ns)
{
    const struct ynode *nsn;
    int rc;
    *meta = zt_k8s_get(doc, "metadata");
    if (!*meta || (*meta)->type != YAML_MAPPING_NODE)
        return fail(r, *meta ? *meta : doc, kind, "metadata: expected a mapping with a name");
    if ((rc = need_str(r, *meta, "name", kind, "metadata.", name)))
        return rc;
    *ns = "default";
    if (namespaced && (nsn = zt_k8s_get(*meta, "namespace"))) {
        if (!text(nsn) || !*nsn->value)
            return fail(r, nsn, kind, "metadata.namespace: expected a non-empty string");
        *ns = nsn->value;
    }
    return 0;
}

/* Reads spec.addresses or status.addresses: a Hostname is taken before an
 * IPAddress, as istiod picks the address it gives ztunnel. */
static int read_addresses(struct zt_yreader *r, const struct ynode *list, const char *what,
                          const char *path, const char *ns, struct zt_gateway *out)
{
    const struct ynode *ip_node = NULL;
    if (!list)
        return 0;
    if (list->type != YAML_SEQUENCE_NODE)
        return fail(r, list, what, "%s: expected a list", path);
    for (size_t i = 0; i < list->n_items; i++) {
        const struct ynode *a = list->items[i], *t = zt_k8s_get(a, "type"), *v;
        const char *type = t ? text(t) : "IPAddress"; /* Gateway API's default */
        v = zt_k8s_get(a, "value");
        if (!text(v) || !*v->value)
            return fail(r, a, what, "%s[%zu].value: expected a non-empty string", path, i);
        if (!type || (strcmp(type, "IPAddress") && strcmp(type, "Hostname")))
            return fail(r, t, what, "%s[%zu].type: expected IPAddress or Hostname", path, i);
        if (!strcmp(type, "Hostname") && out->kind == ZT_GATEWAY_NONE) {
            out->kind = ZT_GATEWAY_HOSTNAME;
            out->namespace = zt_state_xstrdup(ns);
            out->hostname = zt_state_xstrdup(v->value);
        } else if (!strcmp(type, "IPAddress")) {
            struct zt_ip ip;
            if (zt_ip_parse(v->value, &ip))
                return fail(r, v, what, "%s[%zu].value: bad IP address \"%s\"", path, i, v->value);
            if (!ip_node)
                ip_node = v;
        }
    }
    if (out->kind == ZT_GATEWAY_NONE && ip_node) {
        out->kind = ZT_GATEWAY_ADDRESS;
        out->network = zt_state_xstrdup("");
        zt_ip_parse(ip_node->value, &out->ip);
    }
    return 0;
}

/* The mesh listener: port 15008, protocol HBONE. Sets *from_all from its
 * allowedRoutes.namespaces.from (Same when absent). */
static int read_listeners(struct zt_yreader *r, const struct ynode *spec, const char *what,
                          bool *from_all)
{
    const struct ynode *ls = zt_k8s_get(spec, "listeners");
    if (!ls || ls->type != YAML_SEQUENCE_NODE)
        return fail(r, ls ? ls : spec, what,
                    "spec.listeners: expected a list with the HBONE listener (port %d, "
                    "protocol HBONE)",
                    HBONE_PORT);
    for (size_t i = 0; i < ls->n_items; i++) {
        const struct ynode *l = ls->items[i];
        const char *port = text(zt_k8s_get(l, "port")), *proto = text(zt_k8s_get(l, "protocol"));
        const struct ynode *from;
        if (!port || strcmp(port, "15008") || !proto || strcmp(proto, "HBONE"))
            continue;
        from = zt_k8s_get(zt_k8s_get(zt_k8s_get(l, "allowedRoutes"), "namespaces"), "from");
        *from_all = false;
        if (!from || (text(from) && !strcmp(from->value, "Same")))
            return 0;
        if (text(from) && !strcmp(from->value, "All")) {
            *from_all = true;
            return 0;
        }
        return fail(r, from, what,
                    "spec.listeners[%zu].allowedRoutes.namespaces.from: expected Same or All "
                    "(Selector is not supported here)",
                    i);
    }
    return fail(r, ls, what, "spec.listeners: no listener with port %d and protocol HBONE",
                HBONE_PORT);
}

int zt_k8s_read_gateway(struct zt_yreader *r, const struct ynode *doc, struct zt_k8s_facts *f)
{
    static const char *const traffic[] = {"service", "workload", "all", "none", NULL};
    const struct ynode *meta, *spec, *kind = zt_k8s_get(doc, "kind");
    const char *name, *ns, *cls;
    struct zt_k8s_label_view lv;
    struct zt_k8s_gateway g = {0};
    char what[300];
    int rc;

    if ((rc = read_meta(r, doc, "Gateway", true, &meta, &name, &ns)))
        return rc;
    snprintf(what, sizeof(what), "Gateway %s/%s", ns, name);
    spec = zt_k8s_get(doc, "spec");
    if (!spec || spec->type != YAML_MAPPING_NODE)
        return fail(r, spec ? spec : doc, what, "spec: expected a mapping");
    if ((rc = need_str(r, spec, "gatewayClassName", what, "spec.", &cls)))
        return rc;
    if (strcmp(cls, WAYPOINT_CLASS) != 0) {
        zt_k8s_facts_note(f, "%s:%lu: %s: skipped: gatewayClassName \"%s\" is not %s", r->file,
                          (unsigned long)kind->line + 1, what, cls, WAYPOINT_CLASS);
        return 0;
    }
    if ((rc = zt_k8s_labels(r, zt_k8s_get(meta, "labels"), what, "metadata.labels", &lv)))
        return rc;
    g.traffic = ZT_K8S_TRAFFIC_SERVICE;
    if (lv.waypoint_for) {
        int i = 0;
        while (traffic[i] && strcmp(traffic[i], lv.waypoint_for->value))
            i++;
        if (!traffic[i])
            return fail(r, lv.waypoint_for, what,
                        "metadata.labels." ZT_K8S_LABEL_WAYPOINT_FOR
                        ": bad value \"%s\": expected service, workload, all or none",
                        lv.waypoint_for->value);
        g.traffic = (enum zt_k8s_traffic)i;
    }
    if ((rc = read_listeners(r, spec, what, &g.from_all)))
        return rc;
    rc = read_addresses(r, zt_k8s_get(spec, "addresses"), what, "spec.addresses", ns, &g.address);
    if (!rc && g.address.kind == ZT_GATEWAY_NONE)
        rc = read_addresses(r, zt_k8s_get(zt_k8s_get(doc, "status"), "addresses"), what,
                            "status.addresses", ns, &g.address);
    g.address.hbone_mtls_port = HBONE_PORT;
    g.name = zt_state_xstrdup(name);
    g.namespace = zt_state_xstrdup(ns);
    g.line = kind->line;
    *(struct zt_k8s_gateway *)zt_state_array_push(&f->gateways, &f->n_gateways,
                                                  sizeof(*f->gateways)) = g;
    if (rc) /* g is owned by f now: freed with it */
        return rc;
    return 0;
}

int zt_k8s_read_namespace(struct zt_yreader *r, const struct ynode *doc, struct zt_k8s_facts *f)
{
    const struct ynode *meta, *kind = zt_k8s_get(doc, "kind");
    const char *name, *ns;
    struct zt_k8s_label_view lv;
    struct zt_k8s_namespace *n;
    char what[300];
    int rc;

    if ((rc = read_meta(r, doc, "Namespace", false, &meta, &name, &ns)))
        return rc;
    snprintf(what, sizeof(what), "Namespace %s", name);
    if ((rc = zt_k8s_labels(r, zt_k8s_get(meta, "labels"), what, "metadata.labels", &lv)))
        return rc;
    n = zt_state_array_push(&f->namespaces, &f->n_namespaces, sizeof(*f->namespaces));
    n->name = zt_state_xstrdup(name);
    n->line = kind->line;
    return zt_k8s_use_read(r, &lv, what, "metadata.labels", &n->use);
}

/* ---------------------------------------------------------------- resolve */

/* A fact and the file it came from, for lookups across files. */
struct gw_ref {
    const struct zt_k8s_gateway *g;
    const char *file;
    struct zt_gateway addr;   /* derived: borrowed strings */
    const char *own_service;  /* key of the waypoint's own service, or NULL */
    const char *own_workload; /* uid of the workload at its address, or NULL */
};
struct ns_ref {
    const struct zt_k8s_namespace *n;
    const char *file;
};
struct lab_ref {
    const struct zt_k8s_labelled *l;
    const char *file;
};

struct resolver {
    struct gw_ref *gws;
    size_t n_gws;
    struct ns_ref *nss;
    size_t n_nss;
    struct lab_ref *labs;
    size_t n_labs;
    char *err;
    size_t errlen;
};

static int cmp_gw(const void *a, const void *b)
{
    const struct zt_k8s_gateway *x = ((const struct gw_ref *)a)->g,
                                *y = ((const struct gw_ref *)b)->g;
    int c = strcmp(x->namespace, y->namespace);
    return c ? c : strcmp(x->name, y->name);
}

static int cmp_ns(const void *a, const void *b)
{
    return strcmp(((const struct ns_ref *)a)->n->name, ((const struct ns_ref *)b)->n->name);
}

static int cmp_lab(const void *a, const void *b)
{
    const struct zt_k8s_labelled *x = ((const struct lab_ref *)a)->l,
                                 *y = ((const struct lab_ref *)b)->l;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return strcmp(x->key, y->key);
}

static struct gw_ref *find_gw(const struct resolver *rs, const char *ns, const char *name)
{
    struct zt_k8s_gateway key = {.name = (char *)name, .namespace = (char *)ns};
    struct gw_ref k = {.g = &key};
    return rs->n_gws ? bsearch(&k, rs->gws, rs->n_gws, sizeof(*rs->gws), cmp_gw) : NULL;
}

static const struct ns_ref *find_ns(const struct resolver *rs, const char *name)
{
    struct zt_k8s_namespace key = {.name = (char *)name};
    struct ns_ref k = {.n = &key};
    return rs->n_nss ? bsearch(&k, rs->nss, rs->n_nss, sizeof(*rs->nss), cmp_ns) : NULL;
}

static const struct lab_ref *find_lab(const struct resolver *rs, enum zt_k8s_object kind,
                                      const char *key)
{
    struct zt_k8s_labelled l = {.kind = kind, .key = (char *)key};
    struct lab_ref k = {.l = &l};
    return rs->n_labs ? bsearch(&k, rs->labs, rs->n_labs, sizeof(*rs->labs), cmp_lab) : NULL;
}

static int collect(struct resolver *rs, const struct zt_k8s_facts *const *facts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct zt_k8s_facts *f = facts[i];
        for (size_t j = 0; j < f->n_gateways; j++) {
            struct gw_ref *g = zt_state_array_push(&rs->gws, &rs->n_gws, sizeof(*rs->gws));
            g->g = &f->gateways[j];
            g->file = f->file;
        }
        for (size_t j = 0; j < f->n_namespaces; j++) {
            struct ns_ref *s = zt_state_array_push(&rs->nss, &rs->n_nss, sizeof(*rs->nss));
            s->n = &f->namespaces[j];
            s->file = f->file;
        }
        for (size_t j = 0; j < f->n_labelled; j++) {
            struct lab_ref *l = zt_state_array_push(&rs->labs, &rs->n_labs, sizeof(*rs->labs));
            l->l = &f->labelled[j];
            l->file = f->file;
        }
    }
    /* Stable order for the messages: files in order, then position. */
    if (rs->n_gws)
        qsort(rs->gws, rs->n_gws, sizeof(*rs->gws), cmp_gw);
    if (rs->n_nss)
        qsort(rs->nss, rs->n_nss, sizeof(*rs->nss), cmp_ns);
    if (rs->n_labs)
        qsort(rs->labs, rs->n_labs, sizeof(*rs->labs), cmp_lab);
    for (size_t i = 1; i < rs->n_gws; i++)
        if (!cmp_gw(&rs->gws[i - 1], &rs->gws[i]))
            return zt_errf(rs->err, rs->errlen, ZT_E_CONFIG,
                           "%s:%lu: Gateway %s/%s: already declared at %s:%lu", rs->gws[i].file,
                           (unsigned long)rs->gws[i].g->line + 1, rs->gws[i].g->namespace,
                           rs->gws[i].g->name, rs->gws[i - 1].file,
                           (unsigned long)rs->gws[i - 1].g->line + 1);
    for (size_t i = 1; i < rs->n_nss; i++)
        if (!cmp_ns(&rs->nss[i - 1], &rs->nss[i]))
            return zt_errf(rs->err, rs->errlen, ZT_E_CONFIG,
                           "%s:%lu: Namespace %s: already declared at %s:%lu", rs->nss[i].file,
                           (unsigned long)rs->nss[i].n->line + 1, rs->nss[i].n->name,
                           rs->nss[i - 1].file, (unsigned long)rs->nss[i - 1].n->line + 1);
    return 0;
}

/* Each waypoint's address: its service (ours, named after the Gateway in
 * its namespace), else its declared addresses. */
static int find_addresses(struct resolver *rs, const struct zt_state *raw)
{
    for (size_t i = 0; i < zt_state_service_count(raw) && rs->n_gws; i++) {
        const struct zt_service *s = zt_state_service_at(raw, i);
        struct gw_ref *g = find_gw(rs, s->namespace, s->name ? s->name : "");
        if (!g || g->own_service)
            continue;
        g->own_service = s->key;
        g->addr = (struct zt_gateway){.kind = ZT_GATEWAY_HOSTNAME,
                                      .namespace = s->namespace,
                                      .hostname = s->hostname,
                                      .hbone_mtls_port = HBONE_PORT};
    }
    for (size_t i = 0; i < rs->n_gws; i++) {
        struct gw_ref *g = &rs->gws[i];
        if (g->own_service)
            continue;
        if (g->g->address.kind == ZT_GATEWAY_NONE)
            return zt_errf(rs->err, rs->errlen, ZT_E_CONFIG,
                           "%s:%lu: Gateway %s/%s: no address: declare its service (a service "
                           "named %s in namespace %s, with the waypoint's workloads as "
                           "endpoints) or give spec.addresses",
                           g->file, (unsigned long)g->g->line + 1, g->g->namespace, g->g->name,
                           g->g->name, g->g->namespace);
        g->addr = g->g->address;
        /* What the address names is the waypoint's own too. */
        if (g->addr.kind == ZT_GATEWAY_HOSTNAME) {
            size_t kl = strlen(g->addr.namespace) + strlen(g->addr.hostname) + 2;
            char *key = zt_state_xcalloc(kl, 1);
            const struct zt_service *s;
            snprintf(key, kl, "%s/%s", g->addr.namespace, g->addr.hostname);
            s = zt_state_service_by_key(raw, key);
            free(key);
            g->own_service = s ? s->key : NULL;
        } else {
            const struct zt_service *s = zt_state_service_by_vip(raw, "", &g->addr.ip);
            const struct zt_workload *w = zt_state_workload_by_ip(raw, "", &g->addr.ip);
            g->own_service = s ? s->key : NULL;
            g->own_workload = w ? w->uid : NULL;
        }
    }
    return 0;
}

static bool gateway_eq(const struct zt_gateway *a, const struct zt_gateway *b)
{
    if (a->kind != b->kind || a->hbone_mtls_port != b->hbone_mtls_port)
        return false;
    switch (a->kind) {
    case ZT_GATEWAY_ADDRESS:
        return !strcmp(a->network ? a->network : "", b->network ? b->network : "") &&
               zt_ip_eq(&a->ip, &b->ip);
    case ZT_GATEWAY_HOSTNAME:
        return !strcmp(a->namespace, b->namespace) && !strcmp(a->hostname, b->hostname);
    default:
        return true;
    }
}

static void gateway_set(struct zt_gateway *dst, const struct zt_gateway *src)
{
    free(dst->network);
    free(dst->namespace);
    free(dst->hostname);
    *dst = *src;
    dst->network = zt_state_xstrdup(src->network ? src->network : "");
    dst->namespace = zt_state_xstrdup(src->namespace ? src->namespace : "");
    dst->hostname = zt_state_xstrdup(src->hostname ? src->hostname : "");
}

/* What one object's labels (or its namespace's) make of its waypoint:
 * *wp is the waypoint's address, or NULL for none. */
static int pick(const struct resolver *rs, enum zt_k8s_object kind, const char *key, const char *ns,
                bool has_explicit, bool is_waypoint_own, const struct zt_gateway **wp)
{
    const char *what = kind == ZT_K8S_SERVICE ? "service" : "workload";
    const struct lab_ref *lab = find_lab(rs, kind, key);
    const struct ns_ref *nsr = NULL;
    const struct zt_k8s_use *use = NULL;
    const char *file;
    unsigned long line;
    struct gw_ref *g;
    bool inherited = false, fits;

    *wp = NULL;
    if (lab && lab->l->use.is_set) {
        use = &lab->l->use;
        file = lab->file;
    } else if ((nsr = find_ns(rs, ns)) && nsr->n->use.is_set && !has_explicit) {
        use = &nsr->n->use;
        file = nsr->file;
        inherited = true;
    }
    if (!use || use->is_none || is_waypoint_own)
        return 0;
    line = (unsigned long)use->line + 1;
    g = find_gw(rs, use->namespace ? use->namespace : ns, use->name);
    if (!g) {
        if (inherited)
            return zt_errf(rs->err, rs->errlen, ZT_E_CONFIG,
                           "%s:%lu: Namespace %s: " ZT_K8S_LABEL_USE_WAYPOINT
                           ": no Gateway %s/%s (of class " WAYPOINT_CLASS ") in the configuration",
                           file, line, ns, use->namespace ? use->namespace : ns, use->name);
        return zt_errf(rs->err, rs->errlen, ZT_E_CONFIG,
                       "%s:%lu: %s \"%s\": " ZT_K8S_LABEL_USE_WAYPOINT
                       ": no Gateway %s/%s (of class " WAYPOINT_CLASS ") in the configuration",
                       file, line, what, key, use->namespace ? use->namespace : ns, use->name);
    }
    if (strcmp(g->g->namespace, ns) != 0 && !g->g->from_all)
        return zt_errf(rs->err, rs->errlen, ZT_E_CONFIG,
                       "%s:%lu: %s \"%s\"%s: " ZT_K8S_LABEL_USE_WAYPOINT
                       ": Gateway %s/%s (%s:%lu) serves only its own namespace (its HBONE "
                       "listener's allowedRoutes.namespaces.from is not All)",
                       file, line, what, key, inherited ? " (label of its Namespace)" : "",
                       g->g->namespace, g->g->name, g->file, (unsigned long)g->g->line + 1);
    fits = g->g->traffic == ZT_K8S_TRAFFIC_ALL ||
           (kind == ZT_K8S_SERVICE ? g->g->traffic == ZT_K8S_TRAFFIC_SERVICE
                                   : g->g->traffic == ZT_K8S_TRAFFIC_WORKLOAD);
    if (!fits) {
        if (inherited)
            return 0; /* a service waypoint named by the namespace skips its workloads */
        return zt_errf(rs->err, rs->errlen, ZT_E_CONFIG,
                       "%s:%lu: %s \"%s\": " ZT_K8S_LABEL_USE_WAYPOINT
                       ": Gateway %s/%s (%s:%lu) is for %s traffic (" ZT_K8S_LABEL_WAYPOINT_FOR
                       "), not %s",
                       file, line, what, key, g->g->namespace, g->g->name, g->file,
                       (unsigned long)g->g->line + 1, zt_k8s_traffic_str(g->g->traffic), what);
    }
    *wp = &g->addr;
    return 0;
}

/* Whether wl is one of a waypoint's own workloads: an endpoint of its
 * service, or labelled with its name. */
static bool is_instance(const struct resolver *rs, const struct zt_workload *wl)
{
    const struct lab_ref *lab = find_lab(rs, ZT_K8S_WORKLOAD, wl->uid);
    if (lab && lab->l->gateway_name && find_gw(rs, wl->namespace, lab->l->gateway_name))
        return true;
    for (size_t i = 0; i < rs->n_gws; i++)
        if ((rs->gws[i].own_service && zt_workload_find_service(wl, rs->gws[i].own_service)) ||
            (rs->gws[i].own_workload && !strcmp(rs->gws[i].own_workload, wl->uid)))
            return true;
    return false;
}

static bool is_own_service(const struct resolver *rs, const struct zt_service *s)
{
    for (size_t i = 0; i < rs->n_gws; i++)
        if (rs->gws[i].own_service && !strcmp(rs->gws[i].own_service, s->key))
            return true;
    return false;
}

/* A derived record: the last call's when the object and its derivation
 * are unchanged, else a fresh copy. */
static struct zt_service *derive_service(const struct zt_service *s, const struct zt_gateway *wp,
                                         const struct zt_state *prev_raw,
                                         const struct zt_state *prev_out)
{
    struct zt_service *c;
    if (prev_raw && zt_state_service_by_key(prev_raw, s->key) == s) {
        const struct zt_service *p = zt_state_service_by_key(prev_out, s->key);
        if (p && p != s && gateway_eq(&p->waypoint, wp))
            return zt_service_ref((struct zt_service *)p);
    }
    c = zt_service_clone(s);
    gateway_set(&c->waypoint, wp);
    return c;
}

static struct zt_workload *derive_workload(const struct zt_workload *w, const struct zt_gateway *wp,
                                           const struct zt_state *prev_raw,
                                           const struct zt_state *prev_out)
{
    struct zt_workload *c;
    if (prev_raw && zt_state_workload_by_uid(prev_raw, w->uid) == w) {
        const struct zt_workload *p = zt_state_workload_by_uid(prev_out, w->uid);
        if (p && p != w && gateway_eq(&p->waypoint, wp))
            return zt_workload_ref((struct zt_workload *)p);
    }
    c = zt_workload_clone(w);
    gateway_set(&c->waypoint, wp);
    return c;
}

int zt_k8s_resolve(const struct zt_k8s_facts *const *facts, size_t n, const struct zt_state *raw,
                   const struct zt_state *prev_raw, const struct zt_state *prev_out,
                   struct zt_state **out, char *err, size_t errlen)
{
    struct resolver rs = {.err = err, .errlen = errlen};
    struct zt_state_builder *b = NULL;
    int rc;

    *out = NULL;
    if (!prev_raw || !prev_out)
        prev_raw = prev_out = NULL;
    rc = collect(&rs, facts, n);
    if (!rc)
        rc = find_addresses(&rs, raw);
    /* Labels naming a Gateway that is not there are errors even where no
     * object is affected (a namespace with nothing in it yet). */
    for (size_t i = 0; i < rs.n_nss && !rc; i++) {
        const struct zt_k8s_namespace *ns = rs.nss[i].n;
        if (ns->use.is_set && !ns->use.is_none &&
            !find_gw(&rs, ns->use.namespace ? ns->use.namespace : ns->name, ns->use.name))
            rc = zt_errf(err, errlen, ZT_E_CONFIG,
                         "%s:%lu: Namespace %s: " ZT_K8S_LABEL_USE_WAYPOINT
                         ": no Gateway %s/%s (of class " WAYPOINT_CLASS ") in the configuration",
                         rs.nss[i].file, (unsigned long)ns->use.line + 1, ns->name,
                         ns->use.namespace ? ns->use.namespace : ns->name, ns->use.name);
    }
    if (rc || (!rs.n_gws && !rs.n_nss && !rs.n_labs))
        goto out;

    for (size_t i = 0; i < zt_state_service_count(raw) && !rc; i++) {
        const struct zt_service *s = zt_state_service_at(raw, i);
        const struct zt_gateway *wp;
        bool explicit = s->waypoint.kind != ZT_GATEWAY_NONE || s->n_weighted_waypoints;
        rc = pick(&rs, ZT_K8S_SERVICE, s->key, s->namespace, explicit, is_own_service(&rs, s), &wp);
        if (rc || !wp || gateway_eq(&s->waypoint, wp))
            continue;
        if (!b)
            b = zt_state_builder_new(raw);
        zt_state_builder_put_service(b, derive_service(s, wp, prev_raw, prev_out));
    }
    for (size_t i = 0; i < zt_state_workload_count(raw) && !rc; i++) {
        const struct zt_workload *w = zt_state_workload_at(raw, i);
        const struct zt_gateway *wp;
        rc = pick(&rs, ZT_K8S_WORKLOAD, w->uid, w->namespace, w->waypoint.kind != ZT_GATEWAY_NONE,
                  is_instance(&rs, w), &wp);
        if (rc || !wp || gateway_eq(&w->waypoint, wp))
            continue;
        if (!b)
            b = zt_state_builder_new(raw);
        zt_state_builder_put_workload(b, derive_workload(w, wp, prev_raw, prev_out));
    }
out:
    if (!rc && b) {
        char berr[256];
        rc = zt_state_builder_finish(b, out, berr, sizeof(berr));
        b = NULL;
        if (rc)
            zt_errf(err, errlen, rc, "waypoints from labels: %s", berr);
    } else if (!rc) {
        *out = zt_state_ref(raw);
    }
    zt_state_builder_free(b);
    free(rs.gws);
    free(rs.nss);
    free(rs.labs);
    return rc;
}
