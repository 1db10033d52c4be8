/* Local config YAML loader. See local.h.
 *
 * libyaml's document API gives a node tree with source marks, which is what
 * the error messages need. Each object parser first checks its mapping's keys
 * against an allow-list (unknown and duplicate keys are errors, as in
 * Istio's deny_unknown_fields), then reads the keys it knows. */
#include "config/local.h"

#include "base/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* Bounds the work an alias-heavy document can cause (aliases share nodes,
 * so a small file could otherwise describe an enormous tree). */
#define MAX_VISITS 10000000u
#define PATH_MAX_LEN 256

struct ctx {
    const char *file;
    yaml_document_t *doc;
    char *err;
    size_t errlen;
    unsigned visits;
};

__attribute__((format(printf, 4, 5))) static int fail(struct ctx *c, const yaml_node_t *n,
                                                      const char *path, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s:%lu: %s: %s", c->file,
             n ? (unsigned long)n->start_mark.line + 1 : 1ul, path, reason);
    return ZT_E_CONFIG;
}

static yaml_node_t *node_get(struct ctx *c, int id)
{
    return yaml_document_get_node(c->doc, id);
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain "~", "null" or empty scalar stands for "not set". */
static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return n->data.scalar.length == 0 || strcmp(scalar(n), "~") == 0 ||
           strcmp(scalar(n), "null") == 0 || strcmp(scalar(n), "Null") == 0 ||
           strcmp(scalar(n), "NULL") == 0;
}

static const char *type_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "nothing";
    }
}

static int visit(struct ctx *c, const yaml_node_t *n, const char *path)
{
    if (++c->visits > MAX_VISITS)
        return fail(c, n, path, "document too large (over %u nodes visited)", MAX_VISITS);
    return 0;
}

/* Paths are for messages only: they are silently truncated when long. */
static void path_join(char *buf, const char *a, const char *b, const char *c2, const char *d)
{
    const char *parts[] = {a, b, c2, d};
    size_t len = 0;
    for (size_t i = 0; i < 4; i++)
        for (const char *p = parts[i]; p && *p && len + 1 < PATH_MAX_LEN; p++)
            buf[len++] = *p;
    buf[len] = '\0';
}

static void path_key(char *buf, const char *parent, const char *key)
{
    path_join(buf, parent, *parent ? "." : "", key, NULL);
}

static void path_index(char *buf, const char *parent, size_t i)
{
    char idx[32];
    snprintf(idx, sizeof(idx), "[%zu]", i);
    path_join(buf, parent, idx, NULL, NULL);
}

static int expect_type(struct ctx *c, const yaml_node_t *n, const char *path, yaml_node_type_t t)
{
    static const char *const names[] = {"", "a string", "a list", "a mapping"};
    if (n->type != t)
        return fail(c, n, path, "expected %s, got %s", names[t], type_name(n));
    return 0;
}

/* Checks that every key of a mapping is a known, unique scalar. */
static int check_keys(struct ctx *c, yaml_node_t *map, const char *path, const char *const *allowed)
{
    int rc = expect_type(c, map, path, YAML_MAPPING_NODE);
    if (rc)
        return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_get(c, p->key);
        bool known = false;
        char sub[PATH_MAX_LEN];
        if (!k || k->type != YAML_SCALAR_NODE)
            return fail(c, k ? k : map, path, "mapping keys must be strings");
        path_key(sub, path, scalar(k));
        for (const char *const *a = allowed; *a && !known; a++)
            known = strcmp(*a, scalar(k)) == 0;
        if (!known)
            return fail(c, k, sub, "unknown key");
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = node_get(c, q->key);
            if (strcmp(scalar(k2), scalar(k)) == 0)
                return fail(c, k, sub, "duplicate key");
        }
    }
    return 0;
}

/* Looks a key up in a mapping already checked by check_keys. */
static yaml_node_t *map_get(struct ctx *c, yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        if (strcmp(scalar(node_get(c, p->key)), key) == 0)
            return node_get(c, p->value);
    return NULL;
}

static int get_str(struct ctx *c, yaml_node_t *n, const char *path, char **out)
{
    int rc;
    if (is_null(n)) {
        free(*out);
        *out = zt_state_xstrdup("");
        return 0;
    }
    rc = expect_type(c, n, path, YAML_SCALAR_NODE);
    if (rc)
        return rc;
    free(*out);
    *out = zt_state_xstrdup(scalar(n));
    return 0;
}

static int get_bool(struct ctx *c, yaml_node_t *n, const char *path, bool *out)
{
    if (n->type == YAML_SCALAR_NODE && strcasecmp(scalar(n), "true") == 0)
        *out = true;
    else if (n->type == YAML_SCALAR_NODE && strcasecmp(scalar(n), "false") == 0)
        *out = false;
    else
        return fail(c, n, path, "expected true or false");
    return 0;
}

static int parse_uint(struct ctx *c, yaml_node_t *n, const char *path, unsigned long max,
                      const char *what, unsigned long *out)
{
    const char *s;
    char *end;
    unsigned long v;
    if (n->type != YAML_SCALAR_NODE)
        return fail(c, n, path, "expected %s, got %s", what, type_name(n));
    s = scalar(n);
    if (*s < '0' || *s > '9')
        return fail(c, n, path, "expected %s, got \"%s\"", what, s);
    errno = 0;
    v = strtoul(s, &end, 10);
    if (*end != '\0')
        return fail(c, n, path, "expected %s, got \"%s\"", what, s);
    if (errno || v > max)
        return fail(c, n, path, "%s %s out of range (0-%lu)", what, s, max);
    *out = v;
    return 0;
}

static int get_port(struct ctx *c, yaml_node_t *n, const char *path, uint16_t *out)
{
    unsigned long v;
    int rc = parse_uint(c, n, path, 65535, "port", &v);
    if (!rc)
        *out = (uint16_t)v;
    return rc;
}

static int get_u32(struct ctx *c, yaml_node_t *n, const char *path, uint32_t *out)
{
    unsigned long v;
    int rc = parse_uint(c, n, path, 4294967295ul, "integer", &v);
    if (!rc)
        *out = (uint32_t)v;
    return rc;
}

/* Maps a scalar onto one of names (exact spelling); expect is the text
 * after "expected" in the error. */
static int get_enum(struct ctx *c, yaml_node_t *n, const char *path, const char *const *names,
                    const char *expect, int *out)
{
    if (n->type == YAML_SCALAR_NODE)
        for (int i = 0; names[i]; i++)
            if (strcmp(names[i], scalar(n)) == 0) {
                *out = i;
                return 0;
            }
    if (n->type != YAML_SCALAR_NODE)
        return fail(c, n, path, "expected %s, got %s", expect, type_name(n));
    return fail(c, n, path, "bad value \"%s\": expected %s", scalar(n), expect);
}

/* Iterates a list (null = empty). */
typedef int item_fn(struct ctx *c, yaml_node_t *item, const char *path, void *ud);

static int each_item(struct ctx *c, yaml_node_t *seq, const char *path, item_fn *fn, void *ud)
{
    size_t i = 0;
    int rc;
    if (is_null(seq))
        return 0;
    rc = expect_type(c, seq, path, YAML_SEQUENCE_NODE);
    if (rc)
        return rc;
    if ((size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start) >
        ZT_STATE_MAX_OBJECTS)
        return fail(c, seq, path, "too many items (over %d)", ZT_STATE_MAX_OBJECTS);
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++, i++) {
        char sub[PATH_MAX_LEN];
        yaml_node_t *item = node_get(c, *it);
        path_index(sub, path, i);
        rc = visit(c, item, sub);
        if (!rc)
            rc = fn(c, item, sub, ud);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- lists */

static int item_string(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    struct {
        char ***v;
        size_t *n;
    } *l = ud;
    char **slot = zt_state_array_push(l->v, l->n, sizeof(char *));
    return get_str(c, n, path, slot);
}

static int get_str_list(struct ctx *c, yaml_node_t *n, const char *path, char ***v, size_t *cnt)
{
    struct {
        char ***v;
        size_t *n;
    } l = {v, cnt};
    return each_item(c, n, path, item_string, &l);
}

/* "network/ip": the network may be empty ("/10.0.0.1"). */
static int split_network(struct ctx *c, yaml_node_t *n, const char *path, const char *what,
                         char **network, const char **rest)
{
    const char *s, *slash;
    int rc = expect_type(c, n, path, YAML_SCALAR_NODE);
    if (rc)
        return rc;
    s = scalar(n);
    slash = strchr(s, '/');
    if (!slash)
        return fail(c, n, path, "bad %s \"%s\": expected \"network/%s\"", what, s, what);
    *network = zt_state_xcalloc((size_t)(slash - s) + 1, 1);
    memcpy(*network, s, (size_t)(slash - s));
    *rest = slash + 1;
    return 0;
}

static int item_vip(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    struct zt_service *svc = ud;
    struct zt_vip *v = zt_state_array_push(&svc->vips, &svc->n_vips, sizeof(*v));
    const char *ip;
    int rc = split_network(c, n, path, "ip", &v->network, &ip);
    if (rc)
        return rc;
    if (zt_ip_parse(ip, &v->ip))
        return fail(c, n, path, "bad IP address \"%s\"", ip);
    return 0;
}

static int item_cidr_vip(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    struct zt_service *svc = ud;
    struct zt_cidr_vip *v = zt_state_array_push(&svc->cidr_vips, &svc->n_cidr_vips, sizeof(*v));
    const char *cidr;
    int rc = split_network(c, n, path, "cidr", &v->network, &cidr);
    if (rc)
        return rc;
    if (zt_cidr_parse(cidr, &v->cidr))
        return fail(c, n, path, "bad CIDR \"%s\"", cidr);
    return 0;
}

static int item_ip(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    struct zt_workload *wl = ud;
    struct zt_ip *ip = zt_state_array_push(&wl->addresses, &wl->n_addresses, sizeof(*ip));
    int rc = expect_type(c, n, path, YAML_SCALAR_NODE);
    if (rc)
        return rc;
    if (zt_ip_parse(scalar(n), ip))
        return fail(c, n, path, "bad IP address \"%s\"", scalar(n));
    return 0;
}

/* {svcPort: targetPort, ...} */
static int get_port_map(struct ctx *c, yaml_node_t *map, const char *path, struct zt_port_map **v,
                        size_t *cnt)
{
    int rc;
    if (is_null(map))
        return 0;
    rc = expect_type(c, map, path, YAML_MAPPING_NODE);
    if (rc)
        return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_get(c, p->key), *val = node_get(c, p->value);
        struct zt_port_map *pm;
        char sub[PATH_MAX_LEN];
        uint16_t sp;
        path_key(sub, path, k->type == YAML_SCALAR_NODE ? scalar(k) : "?");
        rc = visit(c, k, sub);
        if (!rc)
            rc = get_port(c, k, sub, &sp);
        if (rc)
            return rc;
        for (size_t i = 0; i < *cnt; i++)
            if ((*v)[i].service_port == sp)
                return fail(c, k, sub, "duplicate port");
        pm = zt_state_array_push(v, cnt, sizeof(*pm));
        pm->service_port = sp;
        rc = get_port(c, val, sub, &pm->target_port);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- shared */

static int get_gateway(struct ctx *c, yaml_node_t *n, const char *path, struct zt_gateway *g)
{
    static const char *const keys[] = {"destination", "hboneMtlsPort", NULL};
    static const char *const nh_keys[] = {"namespace", "hostname", NULL};
    char sub[PATH_MAX_LEN];
    yaml_node_t *d, *v;
    int rc = check_keys(c, n, path, keys);
    if (rc)
        return rc;
    path_key(sub, path, "destination");
    d = map_get(c, n, "destination");
    if (!d)
        return fail(c, n, path, "missing required key destination");
    if (d->type == YAML_SCALAR_NODE) {
        const char *ip;
        g->kind = ZT_GATEWAY_ADDRESS;
        rc = split_network(c, d, sub, "ip", &g->network, &ip);
        if (rc)
            return rc;
        if (zt_ip_parse(ip, &g->ip))
            return fail(c, d, sub, "bad IP address \"%s\"", ip);
    } else {
        char sub2[PATH_MAX_LEN];
        g->kind = ZT_GATEWAY_HOSTNAME;
        rc = check_keys(c, d, sub, nh_keys);
        if (rc)
            return rc;
        if ((v = map_get(c, d, "namespace"))) {
            path_key(sub2, sub, "namespace");
            if ((rc = get_str(c, v, sub2, &g->namespace)))
                return rc;
        }
        if ((v = map_get(c, d, "hostname"))) {
            path_key(sub2, sub, "hostname");
            if ((rc = get_str(c, v, sub2, &g->hostname)))
                return rc;
        }
    }
    if ((v = map_get(c, n, "hboneMtlsPort"))) {
        path_key(sub, path, "hboneMtlsPort");
        return get_port(c, v, sub, &g->hbone_mtls_port);
    }
    return 0;
}

/* ---------------------------------------------------------------- workload */

static int get_wl_services(struct ctx *c, yaml_node_t *map, const char *path,
                           struct zt_workload *wl)
{
    int rc;
    if (is_null(map))
        return 0;
    rc = expect_type(c, map, path, YAML_MAPPING_NODE);
    if (rc)
        return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_get(c, p->key), *val = node_get(c, p->value);
        struct zt_workload_service *ws;
        char sub[PATH_MAX_LEN];
        const char *slash;
        if (k->type != YAML_SCALAR_NODE)
            return fail(c, k, path, "mapping keys must be strings");
        path_join(sub, path, "[\"", scalar(k), "\"]");
        rc = visit(c, k, sub);
        if (rc)
            return rc;
        slash = strchr(scalar(k), '/');
        if (!slash || slash == scalar(k) || !slash[1])
            return fail(c, k, sub, "expected a \"namespace/hostname\" key");
        if (zt_workload_find_service(wl, scalar(k)))
            return fail(c, k, sub, "duplicate key");
        ws = zt_state_array_push(&wl->services, &wl->n_services, sizeof(*ws));
        ws->key = zt_state_xstrdup(scalar(k));
        rc = get_port_map(c, val, sub, &ws->ports, &ws->n_ports);
        if (rc)
            return rc;
    }
    return 0;
}

static int get_locality(struct ctx *c, yaml_node_t *n, const char *path, struct zt_locality *l)
{
    static const char *const keys[] = {"region", "zone", "subzone", NULL};
    char **fields[] = {&l->region, &l->zone, &l->subzone};
    int rc = check_keys(c, n, path, keys);
    for (int i = 0; i < 3 && !rc; i++) {
        yaml_node_t *v = map_get(c, n, keys[i]);
        char sub[PATH_MAX_LEN];
        if (!v)
            continue;
        path_key(sub, path, keys[i]);
        rc = get_str(c, v, sub, fields[i]);
    }
    return rc;
}

static int get_app_tunnel(struct ctx *c, yaml_node_t *n, const char *path, struct zt_workload *wl)
{
    static const char *const keys[] = {"protocol", "port", NULL};
    static const char *const protos[] = {"NONE", "PROXY", NULL};
    char sub[PATH_MAX_LEN];
    yaml_node_t *v;
    int rc = check_keys(c, n, path, keys);
    if (rc)
        return rc;
    wl->has_application_tunnel = true;
    if ((v = map_get(c, n, "protocol"))) {
        int e;
        path_key(sub, path, "protocol");
        if ((rc = get_enum(c, v, sub, protos, "NONE or PROXY", &e)))
            return rc;
        wl->application_tunnel_protocol = (enum zt_app_tunnel_protocol)e;
    } else {
        return fail(c, n, path, "missing required key protocol");
    }
    if ((v = map_get(c, n, "port"))) {
        path_key(sub, path, "port");
        rc = get_port(c, v, sub, &wl->application_tunnel_port);
    }
    return rc;
}

static int parse_workload(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    static const char *const keys[] = {"uid",
                                       "name",
                                       "namespace",
                                       "serviceAccount",
                                       "trustDomain",
                                       "workloadIps",
                                       "protocol",
                                       "networkMode",
                                       "network",
                                       "node",
                                       "hostname",
                                       "workloadName",
                                       "workloadType",
                                       "canonicalName",
                                       "canonicalRevision",
                                       "nativeTunnel",
                                       "applicationTunnel",
                                       "waypoint",
                                       "networkGateway",
                                       "authorizationPolicies",
                                       "status",
                                       "clusterId",
                                       "locality",
                                       "capacity",
                                       "services",
                                       NULL};
    static const char *const protos[] = {"TCP", "HBONE", NULL};
    static const char *const modes[] = {"Standard", "HostNetwork", NULL};
    static const char *const statuses[] = {"Healthy", "Unhealthy", NULL};
    static const char *const types[] = {"deployment", "cronjob", "pod", "job", NULL};
    struct zt_state_builder *b = ud;
    struct zt_workload *wl;
    int rc = check_keys(c, n, path, keys);
    if (rc)
        return rc;
    if (!map_get(c, n, "uid"))
        return fail(c, n, path, "missing required key uid");
    if (!map_get(c, n, "namespace"))
        return fail(c, n, path, "missing required key namespace");

    wl = zt_workload_new();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top && !rc;
         p++) {
        const char *k = scalar(node_get(c, p->key));
        yaml_node_t *v = node_get(c, p->value);
        char sub[PATH_MAX_LEN];
        int e = 0;
        path_key(sub, path, k);
        if (!strcmp(k, "uid"))
            rc = get_str(c, v, sub, &wl->uid);
        else if (!strcmp(k, "name"))
            rc = get_str(c, v, sub, &wl->name);
        else if (!strcmp(k, "namespace"))
            rc = get_str(c, v, sub, &wl->namespace);
        else if (!strcmp(k, "serviceAccount"))
            rc = get_str(c, v, sub, &wl->service_account);
        else if (!strcmp(k, "trustDomain"))
            rc = get_str(c, v, sub, &wl->trust_domain);
        else if (!strcmp(k, "workloadIps"))
            rc = each_item(c, v, sub, item_ip, wl);
        else if (!strcmp(k, "protocol")) {
            rc = get_enum(c, v, sub, protos, "TCP or HBONE", &e);
            wl->protocol = (enum zt_workload_protocol)e;
        } else if (!strcmp(k, "networkMode")) {
            rc = get_enum(c, v, sub, modes, "Standard or HostNetwork", &e);
            wl->network_mode = (enum zt_network_mode)e;
        } else if (!strcmp(k, "network"))
            rc = get_str(c, v, sub, &wl->network);
        else if (!strcmp(k, "node"))
            rc = get_str(c, v, sub, &wl->node);
        else if (!strcmp(k, "hostname"))
            rc = get_str(c, v, sub, &wl->hostname);
        else if (!strcmp(k, "workloadName"))
            rc = get_str(c, v, sub, &wl->workload_name);
        else if (!strcmp(k, "workloadType")) {
            rc = get_enum(c, v, sub, types, "deployment, cronjob, pod or job", &e);
            wl->workload_type = (enum zt_workload_type)e;
        } else if (!strcmp(k, "canonicalName"))
            rc = get_str(c, v, sub, &wl->canonical_name);
        else if (!strcmp(k, "canonicalRevision"))
            rc = get_str(c, v, sub, &wl->canonical_revision);
        else if (!strcmp(k, "nativeTunnel"))
            rc = get_bool(c, v, sub, &wl->native_tunnel);
        else if (!strcmp(k, "applicationTunnel"))
            rc = get_app_tunnel(c, v, sub, wl);
        else if (!strcmp(k, "waypoint"))
            rc = get_gateway(c, v, sub, &wl->waypoint);
        else if (!strcmp(k, "networkGateway"))
            rc = get_gateway(c, v, sub, &wl->network_gateway);
        else if (!strcmp(k, "authorizationPolicies"))
            rc =
                get_str_list(c, v, sub, &wl->authorization_policies, &wl->n_authorization_policies);
        else if (!strcmp(k, "status")) {
            rc = get_enum(c, v, sub, statuses, "Healthy or Unhealthy", &e);
            wl->status = (enum zt_workload_status)e;
        } else if (!strcmp(k, "clusterId"))
            rc = get_str(c, v, sub, &wl->cluster_id);
        else if (!strcmp(k, "locality"))
            rc = get_locality(c, v, sub, &wl->locality);
        else if (!strcmp(k, "capacity"))
            rc = get_u32(c, v, sub, &wl->capacity);
        else if (!strcmp(k, "services"))
            rc = get_wl_services(c, v, sub, wl);
    }
    if (!rc && !*wl->uid)
        rc = fail(c, n, path, "uid must not be empty");
    if (rc) {
        zt_workload_unref(wl);
        return rc;
    }
    zt_state_builder_add_workload(b, wl);
    return 0;
}

/* ---------------------------------------------------------------- service */

static int item_weighted_waypoint(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    static const char *const keys[] = {"destination", "weight", NULL};
    struct zt_service *svc = ud;
    struct zt_weighted_waypoint *w =
        zt_state_array_push(&svc->weighted_waypoints, &svc->n_weighted_waypoints, sizeof(*w));
    char sub[PATH_MAX_LEN];
    yaml_node_t *v;
    int rc = check_keys(c, n, path, keys);
    if (rc)
        return rc;
    if (!(v = map_get(c, n, "destination")))
        return fail(c, n, path, "missing required key destination");
    path_key(sub, path, "destination");
    if ((rc = get_gateway(c, v, sub, &w->destination)))
        return rc;
    if ((v = map_get(c, n, "weight"))) {
        path_key(sub, path, "weight");
        rc = get_u32(c, v, sub, &w->weight);
    }
    return rc;
}

static int item_scope(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    static const char *const scopes[] = {"Region",  "Zone",    "Subzone", "Node",
                                         "Cluster", "Network", NULL};
    struct zt_service *svc = ud;
    int e, rc;
    if (svc->n_lb_routing >= ZT_LB_MAX_SCOPES)
        return fail(c, n, path, "too many routing preferences (max %d)", ZT_LB_MAX_SCOPES);
    rc = get_enum(c, n, path, scopes, "Region, Zone, Subzone, Node, Cluster or Network", &e);
    if (!rc)
        svc->lb_routing[svc->n_lb_routing++] = (enum zt_lb_scope)(e + 1);
    return rc;
}

static int get_load_balancer(struct ctx *c, yaml_node_t *n, const char *path,
                             struct zt_service *svc)
{
    static const char *const keys[] = {"routingPreferences", "mode", "healthPolicy", NULL};
    static const char *const modes[] = {"Standard", "Strict", "Failover", "Passthrough", NULL};
    static const char *const health[] = {"OnlyHealthy", "AllowAll", NULL};
    char sub[PATH_MAX_LEN];
    yaml_node_t *v;
    int e, rc = check_keys(c, n, path, keys);
    if (rc)
        return rc;
    svc->has_load_balancing = true;
    if ((v = map_get(c, n, "routingPreferences"))) {
        path_key(sub, path, "routingPreferences");
        if ((rc = each_item(c, v, sub, item_scope, svc)))
            return rc;
    }
    if ((v = map_get(c, n, "mode"))) {
        path_key(sub, path, "mode");
        if ((rc = get_enum(c, v, sub, modes, "Standard, Strict, Failover or Passthrough", &e)))
            return rc;
        svc->lb_mode = (enum zt_lb_mode)e;
    }
    if ((v = map_get(c, n, "healthPolicy"))) {
        path_key(sub, path, "healthPolicy");
        if ((rc = get_enum(c, v, sub, health, "OnlyHealthy or AllowAll", &e)))
            return rc;
        svc->lb_health = (enum zt_lb_health)e;
    }
    return 0;
}

static int parse_service(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    static const char *const keys[] = {"name",
                                       "namespace",
                                       "hostname",
                                       "vips",
                                       "cidrVips",
                                       "ports",
                                       "subjectAltNames",
                                       "waypoint",
                                       "weightedWaypoints",
                                       "loadBalancer",
                                       "ipFamilies",
                                       "canonical",
                                       "visibility",
                                       NULL};
    static const char *const families[] = {"Automatic", "IPv4", "IPv6", "Dual", NULL};
    static const char *const vis[] = {"Public", "Namespace", NULL};
    struct zt_state_builder *b = ud;
    struct zt_service *svc;
    int rc = check_keys(c, n, path, keys);
    if (rc)
        return rc;
    if (!map_get(c, n, "namespace"))
        return fail(c, n, path, "missing required key namespace");
    if (!map_get(c, n, "hostname"))
        return fail(c, n, path, "missing required key hostname");

    svc = zt_service_new();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top && !rc;
         p++) {
        const char *k = scalar(node_get(c, p->key));
        yaml_node_t *v = node_get(c, p->value);
        char sub[PATH_MAX_LEN];
        int e = 0;
        path_key(sub, path, k);
        if (!strcmp(k, "name"))
            rc = get_str(c, v, sub, &svc->name);
        else if (!strcmp(k, "namespace"))
            rc = get_str(c, v, sub, &svc->namespace);
        else if (!strcmp(k, "hostname"))
            rc = get_str(c, v, sub, &svc->hostname);
        else if (!strcmp(k, "vips"))
            rc = each_item(c, v, sub, item_vip, svc);
        else if (!strcmp(k, "cidrVips"))
            rc = each_item(c, v, sub, item_cidr_vip, svc);
        else if (!strcmp(k, "ports"))
            rc = get_port_map(c, v, sub, &svc->ports, &svc->n_ports);
        else if (!strcmp(k, "subjectAltNames"))
            rc = get_str_list(c, v, sub, &svc->subject_alt_names, &svc->n_subject_alt_names);
        else if (!strcmp(k, "waypoint"))
            rc = get_gateway(c, v, sub, &svc->waypoint);
        else if (!strcmp(k, "weightedWaypoints"))
            rc = each_item(c, v, sub, item_weighted_waypoint, svc);
        else if (!strcmp(k, "loadBalancer"))
            rc = get_load_balancer(c, v, sub, svc);
        else if (!strcmp(k, "ipFamilies")) {
            rc = get_enum(c, v, sub, families, "Automatic, IPv4, IPv6 or Dual", &e);
            svc->ip_families = (enum zt_ip_families)e;
        } else if (!strcmp(k, "canonical"))
            rc = get_bool(c, v, sub, &svc->canonical);
        else if (!strcmp(k, "visibility")) {
            rc = get_enum(c, v, sub, vis, "Public or Namespace", &e);
            svc->visibility = (enum zt_visibility)e;
        }
    }
    if (!rc && (!*svc->hostname || !*svc->namespace))
        rc = fail(c, n, path, "namespace and hostname must not be empty");
    if (rc) {
        zt_service_unref(svc);
        return rc;
    }
    zt_state_builder_add_service(b, svc);
    return 0;
}

/* ---------------------------------------------------------------- policy */

static int item_strmatch(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    static const char *const kinds[] = {"Exact", "Prefix", "Suffix", "Presence", NULL};
    static const char *const expect = "expected {Exact|Prefix|Suffix: value} or Presence";
    struct zt_strmatch_list *l = ud;
    struct zt_strmatch *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    yaml_node_t *k, *v;
    char sub[PATH_MAX_LEN];
    int rc;

    if (n->type == YAML_SCALAR_NODE) {
        if (strcmp(scalar(n), "Presence") != 0)
            return fail(c, n, path, "bad string match \"%s\": %s", scalar(n), expect);
        m->kind = ZT_STRMATCH_PRESENCE;
        return 0;
    }
    if (n->type != YAML_MAPPING_NODE ||
        n->data.mapping.pairs.top - n->data.mapping.pairs.start != 1)
        return fail(c, n, path, "%s", expect);
    if ((rc = check_keys(c, n, path, kinds)))
        return rc;
    k = node_get(c, n->data.mapping.pairs.start->key);
    v = node_get(c, n->data.mapping.pairs.start->value);
    path_key(sub, path, scalar(k));
    for (int i = 0; kinds[i]; i++)
        if (!strcmp(kinds[i], scalar(k)))
            m->kind = (enum zt_strmatch_kind)i;
    if (m->kind == ZT_STRMATCH_PRESENCE) {
        if (!is_null(v) && !(v->type == YAML_MAPPING_NODE &&
                             v->data.mapping.pairs.top == v->data.mapping.pairs.start))
            return fail(c, v, sub, "Presence takes no value");
        return 0;
    }
    return get_str(c, v, sub, &m->value);
}

static int item_sa(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    static const char *const keys[] = {"namespace", "serviceAccount", NULL};
    struct zt_sa_list *l = ud;
    struct zt_sa_match *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    char sub[PATH_MAX_LEN];
    yaml_node_t *v;
    int rc = check_keys(c, n, path, keys);
    if (rc)
        return rc;
    if (!(v = map_get(c, n, "namespace")))
        return fail(c, n, path, "missing required key namespace");
    path_key(sub, path, "namespace");
    if ((rc = get_str(c, v, sub, &m->namespace)))
        return rc;
    if (!(v = map_get(c, n, "serviceAccount")))
        return fail(c, n, path, "missing required key serviceAccount");
    path_key(sub, path, "serviceAccount");
    return get_str(c, v, sub, &m->service_account);
}

static int item_cidr(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    struct zt_cidr_list *l = ud;
    struct zt_cidr *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    int rc = expect_type(c, n, path, YAML_SCALAR_NODE);
    if (rc)
        return rc;
    if (zt_cidr_parse(scalar(n), m))
        return fail(c, n, path, "bad CIDR \"%s\"", scalar(n));
    return 0;
}

static int item_dport(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    struct zt_port_list *l = ud;
    uint16_t port;
    int rc = get_port(c, n, path, &port);
    if (!rc)
        *(uint32_t *)zt_state_array_push(&l->v, &l->n, sizeof(uint32_t)) = port;
    return rc;
}

static int item_match(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    static const char *const keys[] = {"namespaces",
                                       "notNamespaces",
                                       "serviceAccounts",
                                       "notServiceAccounts",
                                       "principals",
                                       "notPrincipals",
                                       "sourceIps",
                                       "notSourceIps",
                                       "destinationIps",
                                       "notDestinationIps",
                                       "destinationPorts",
                                       "notDestinationPorts",
                                       NULL};
    struct zt_policy_clause *cl = ud;
    struct zt_policy_match *m = zt_state_array_push(&cl->matches, &cl->n_matches, sizeof(*m));
    int rc = check_keys(c, n, path, keys);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; !rc && p < n->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(node_get(c, p->key));
        yaml_node_t *v = node_get(c, p->value);
        char sub[PATH_MAX_LEN];
        path_key(sub, path, k);
        if (!strcmp(k, "namespaces"))
            rc = each_item(c, v, sub, item_strmatch, &m->namespaces);
        else if (!strcmp(k, "notNamespaces"))
            rc = each_item(c, v, sub, item_strmatch, &m->not_namespaces);
        else if (!strcmp(k, "serviceAccounts"))
            rc = each_item(c, v, sub, item_sa, &m->service_accounts);
        else if (!strcmp(k, "notServiceAccounts"))
            rc = each_item(c, v, sub, item_sa, &m->not_service_accounts);
        else if (!strcmp(k, "principals"))
            rc = each_item(c, v, sub, item_strmatch, &m->principals);
        else if (!strcmp(k, "notPrincipals"))
            rc = each_item(c, v, sub, item_strmatch, &m->not_principals);
        else if (!strcmp(k, "sourceIps"))
            rc = each_item(c, v, sub, item_cidr, &m->source_ips);
        else if (!strcmp(k, "notSourceIps"))
            rc = each_item(c, v, sub, item_cidr, &m->not_source_ips);
        else if (!strcmp(k, "destinationIps"))
            rc = each_item(c, v, sub, item_cidr, &m->destination_ips);
        else if (!strcmp(k, "notDestinationIps"))
            rc = each_item(c, v, sub, item_cidr, &m->not_destination_ips);
        else if (!strcmp(k, "destinationPorts"))
            rc = each_item(c, v, sub, item_dport, &m->destination_ports);
        else if (!strcmp(k, "notDestinationPorts"))
            rc = each_item(c, v, sub, item_dport, &m->not_destination_ports);
    }
    return rc;
}

static int item_clause(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    struct zt_policy_rule *r = ud;
    struct zt_policy_clause *cl = zt_state_array_push(&r->clauses, &r->n_clauses, sizeof(*cl));
    return each_item(c, n, path, item_match, cl);
}

static int item_rule(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    struct zt_policy *p = ud;
    struct zt_policy_rule *r = zt_state_array_push(&p->rules, &p->n_rules, sizeof(*r));
    return each_item(c, n, path, item_clause, r);
}

static int parse_policy(struct ctx *c, yaml_node_t *n, const char *path, void *ud)
{
    static const char *const keys[] = {"name",   "namespace", "scope", "action",
                                       "dryRun", "rules",     NULL};
    static const char *const scopes[] = {"Global", "Namespace", "WorkloadSelector", NULL};
    static const char *const actions[] = {"Allow", "Deny", NULL};
    struct zt_state_builder *b = ud;
    struct zt_policy *pol;
    int rc = check_keys(c, n, path, keys);
    if (rc)
        return rc;
    if (!map_get(c, n, "name"))
        return fail(c, n, path, "missing required key name");
    if (!map_get(c, n, "namespace"))
        return fail(c, n, path, "missing required key namespace");

    pol = zt_policy_new();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top && !rc;
         p++) {
        const char *k = scalar(node_get(c, p->key));
        yaml_node_t *v = node_get(c, p->value);
        char sub[PATH_MAX_LEN];
        int e = 0;
        path_key(sub, path, k);
        if (!strcmp(k, "name"))
            rc = get_str(c, v, sub, &pol->name);
        else if (!strcmp(k, "namespace"))
            rc = get_str(c, v, sub, &pol->namespace);
        else if (!strcmp(k, "scope")) {
            rc = get_enum(c, v, sub, scopes, "Global, Namespace or WorkloadSelector", &e);
            pol->scope = (enum zt_policy_scope)e;
        } else if (!strcmp(k, "action")) {
            rc = get_enum(c, v, sub, actions, "Allow or Deny", &e);
            pol->action = (enum zt_policy_action)e;
        } else if (!strcmp(k, "dryRun"))
            rc = get_bool(c, v, sub, &pol->dry_run);
        else if (!strcmp(k, "rules"))
            rc = each_item(c, v, sub, item_rule, pol);
    }
    if (!rc && (!*pol->name || !*pol->namespace))
        rc = fail(c, n, path, "name and namespace must not be empty");
    if (rc) {
        zt_policy_unref(pol);
        return rc;
    }
    zt_state_builder_add_policy(b, pol);
    return 0;
}

/* ---------------------------------------------------------------- top */

/* Reports a duplicate key among items of a top-level list with the line of
 * the second occurrence; the builder would only know the key. */
/* One item of a list, keyed for duplicate detection. */
struct dup_item {
    const char *a, *b;
    size_t idx;
    yaml_node_t *item, *xa;
};

static const char *scalar_or_empty(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? scalar(n) : "";
}

static bool same_key(const struct dup_item *x, const struct dup_item *y)
{
    return strcmp(x->a, y->a) == 0 && strcmp(x->b, y->b) == 0;
}

static int cmp_dup_item(const void *pa, const void *pb)
{
    const struct dup_item *x = pa, *y = pb;
    int r = strcmp(x->a, y->a);
    if (r == 0)
        r = strcmp(x->b, y->b);
    if (r == 0)
        r = x->idx < y->idx ? -1 : x->idx > y->idx;
    return r;
}

/* Refuses two items of seq with the same key (a, or a and b). Sorting makes
 * it O(n log n) for the large files a control plane serves; the error is
 * the one a front-to-back scan meets first: the earliest item that repeats
 * an earlier one, pointing at that first occurrence. */
static int check_duplicates(struct ctx *c, yaml_node_t *seq, const char *list, const char *a,
                            const char *b, const char *what)
{
    if (!seq || is_null(seq) || seq->type != YAML_SEQUENCE_NODE)
        return 0;
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n < 2)
        return 0;
    struct dup_item *v = zt_state_xcalloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *x = node_get(c, seq->data.sequence.items.start[i]);
        v[i].item = x;
        v[i].xa = map_get(c, x, a);
        v[i].a = scalar_or_empty(v[i].xa);
        v[i].b = b ? scalar_or_empty(map_get(c, x, b)) : "";
        v[i].idx = i;
    }
    qsort(v, n, sizeof(*v), cmp_dup_item);
    const struct dup_item *first = NULL, *dup = NULL;
    for (size_t i = 1; i < n; i++) {
        /* v[i] repeats the earliest item of its group when the group starts
         * at or before i - 1; only the second of a group can be earliest. */
        if (!same_key(&v[i - 1], &v[i]) || (i >= 2 && same_key(&v[i - 2], &v[i])))
            continue;
        if (!dup || v[i].idx < dup->idx) {
            dup = &v[i];
            first = &v[i - 1];
        }
    }
    int rc = 0;
    if (dup) {
        char path[PATH_MAX_LEN], sub[PATH_MAX_LEN];
        const yaml_node_t *at = first->xa ? first->xa : first->item;
        unsigned long line = (unsigned long)at->start_mark.line + 1;
        yaml_node_t *where = dup->xa ? dup->xa : dup->item;
        path_index(path, list, dup->idx);
        path_key(sub, path, a);
        if (b)
            rc = fail(c, where, path, "duplicate %s \"%s/%s\" (first at line %lu)", what, dup->a,
                      dup->b, line);
        else
            rc = fail(c, where, sub, "duplicate %s \"%s\" (first at line %lu)", what, dup->a, line);
    }
    free(v);
    return rc;
}

static int load_document(struct ctx *c, struct zt_state **out)
{
    static const char *const keys[] = {"workloads", "services", "policies", NULL};
    yaml_node_t *root = yaml_document_get_root_node(c->doc), *v;
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    char berr[256];
    int rc = 0;

    if (root && !is_null(root)) {
        rc = check_keys(c, root, "", keys);
        if (!rc && (v = map_get(c, root, "workloads")))
            rc = each_item(c, v, "workloads", parse_workload, b);
        if (!rc && (v = map_get(c, root, "services")))
            rc = each_item(c, v, "services", parse_service, b);
        if (!rc && (v = map_get(c, root, "policies")))
            rc = each_item(c, v, "policies", parse_policy, b);
        /* Items were validated as mappings with scalar keys above. */
        if (!rc)
            rc =
                check_duplicates(c, map_get(c, root, "workloads"), "workloads", "uid", NULL, "uid");
        if (!rc)
            rc = check_duplicates(c, map_get(c, root, "services"), "services", "namespace",
                                  "hostname", "service");
        if (!rc)
            rc = check_duplicates(c, map_get(c, root, "policies"), "policies", "namespace", "name",
                                  "policy");
    }
    if (rc) {
        zt_state_builder_free(b);
        return rc;
    }
    rc = zt_state_builder_finish(b, out, berr, sizeof(berr));
    if (rc)
        snprintf(c->err, c->errlen, "%s: %s", c->file, berr);
    return rc;
}

int zt_config_local_load_string(const char *name, const char *yaml, size_t len,
                                struct zt_state **out, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct ctx c = {.file = name, .doc = &doc, .err = err, .errlen = errlen};
    int rc;

    *out = NULL;
    if (errlen)
        err[0] = '\0';
    if (len > ZT_CONFIG_LOCAL_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %u bytes", name, ZT_CONFIG_LOCAL_MAX_BYTES);
        return ZT_E_TOO_BIG;
    }
    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%lu: YAML syntax error: %s%s%s", name,
                 (unsigned long)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "unknown", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return ZT_E_CONFIG;
    }
    rc = load_document(&c, out);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int zt_config_local_load(const char *path, struct zt_state **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, got;
    int rc;

    *out = NULL;
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    /* Read in chunks until EOF or just past the cap, so an oversized file
     * is detected without trusting its reported size. */
    for (;;) {
        size_t want = 65536;
        buf = zt_state_xrealloc(buf, len + want);
        got = fread(buf + len, 1, want, f);
        len += got;
        if (got < want || len > ZT_CONFIG_LOCAL_MAX_BYTES)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = -EIO;
        goto out;
    }
    rc = zt_config_local_load_string(path, buf, len, out, err, errlen);
out:
    free(buf);
    fclose(f);
    return rc;
}
