/* Local config YAML loader. See local.h.
 *
 * The file is read as a stream of libyaml events, not as one document tree:
 * at 200k workloads a whole tree costs several times the file in memory and
 * most of the load time. The top-level mapping and its three lists are
 * walked event by event; each list item (one workload, service or policy)
 * is built into a small node tree with source marks, which is what the
 * error messages need, parsed into its record, and dropped before the next
 * item. Each object parser first checks its mapping's keys against an
 * allow-list (unknown and duplicate keys are errors, as in Istio's
 * deny_unknown_fields), then reads the keys it knows. */
#include "config/local.h"
#include "config/authn.h"
#include "config/authz.h"
#include "config/ratelimit.h"
#include "config/k8s.h"
#include "config/local_int.h"
#include "config/routes.h"

#include "base/err.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

/* Bounds the work an alias-heavy document can cause (aliases share nodes,
 * so a small file could otherwise describe an enormous tree). */
#define MAX_VISITS 10000000u
#define PATH_MAX_LEN 256
/* After reading a file at least this large, free memory goes back to the
 * system (malloc_trim). */
#define ZT_CONFIG_LOCAL_TRIM_BYTES (1u << 20)

struct ctx {
    struct zt_yreader y;
    unsigned visits;
    void *last; /* the record the last item parser added to the builder */
    struct zt_k8s_facts *facts;
    bool in_list; /* reading the items of a Kubernetes List */
};

__attribute__((format(printf, 4, 5))) static int fail(struct ctx *c, const struct ynode *n,
                                                      const char *path, const char *fmt, ...)
{
    char where[PATH_MAX + 256]; /* the file's name and a field path */
    snprintf(where, sizeof(where), "%s:%lu: %s", c->y.file, n ? (unsigned long)n->line + 1 : 1ul,
             path);
    va_list ap;
    va_start(ap, fmt);
    int rc = zt_verrf_at(c->y.err, c->y.errlen, ZT_E_CONFIG, where, fmt, ap);
    va_end(ap);
    return rc;
}

static const char *scalar(const struct ynode *n)
{
    return (const char *)n->value;
}

/* A plain "~", "null" or empty scalar stands for "not set". */
static bool is_null(const struct ynode *n)
{
    if (n->type != YAML_SCALAR_NODE || !n->plain)
        return false;
    return n->len == 0 || strcmp(scalar(n), "~") == 0 || strcmp(scalar(n), "null") == 0 ||
           strcmp(scalar(n), "Null") == 0 || strcmp(scalar(n), "NULL") == 0;
}

static const char *type_name(const struct ynode *n)
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

static int visit(struct ctx *c, const struct ynode *n, const char *path)
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

static int expect_type(struct ctx *c, const struct ynode *n, const char *path, yaml_node_type_t t)
{
    static const char *const names[] = {"", "a string", "a list", "a mapping"};
    if (n->type != t)
        return fail(c, n, path, "expected %s, got %s", names[t], type_name(n));
    return 0;
}

/* Checks that every key of a mapping is a known, unique scalar. */
static int check_keys(struct ctx *c, struct ynode *map, const char *path,
                      const char *const *allowed)
{
    uint64_t seen = 0; /* allow-lists are short: one bit per allowed key */
    int rc = expect_type(c, map, path, YAML_MAPPING_NODE);
    if (rc)
        return rc;
    for (struct ypair *p = map->pairs; p < map->pairs + map->n_pairs; p++) {
        struct ynode *k = p->key;
        char sub[PATH_MAX_LEN];
        size_t a = 0;
        if (!k || k->type != YAML_SCALAR_NODE)
            return fail(c, k ? k : map, path, "mapping keys must be strings");
        while (allowed[a] && strcmp(allowed[a], scalar(k)) != 0)
            a++;
        if (allowed[a] && !(seen & (1ull << a))) {
            seen |= 1ull << a;
            continue;
        }
        path_key(sub, path, scalar(k));
        return fail(c, k, sub, allowed[a] ? "duplicate key" : "unknown key");
    }
    return 0;
}

/* Looks a key up in a mapping already checked by check_keys. */
static struct ynode *map_get(struct ctx *c, struct ynode *map, const char *key)
{
    for (struct ypair *p = map->pairs; p < (map->pairs + map->n_pairs); p++)
        if (strcmp(scalar(p->key), key) == 0)
            return p->value;
    return NULL;
}

static int get_str(struct ctx *c, struct ynode *n, const char *path, char **out)
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

static int get_bool(struct ctx *c, struct ynode *n, const char *path, bool *out)
{
    if (n->type == YAML_SCALAR_NODE && strcasecmp(scalar(n), "true") == 0)
        *out = true;
    else if (n->type == YAML_SCALAR_NODE && strcasecmp(scalar(n), "false") == 0)
        *out = false;
    else
        return fail(c, n, path, "expected true or false");
    return 0;
}

static int parse_uint(struct ctx *c, struct ynode *n, const char *path, unsigned long max,
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

static int get_port(struct ctx *c, struct ynode *n, const char *path, uint16_t *out)
{
    unsigned long v;
    int rc = parse_uint(c, n, path, 65535, "port", &v);
    if (!rc)
        *out = (uint16_t)v;
    return rc;
}

static int get_u32(struct ctx *c, struct ynode *n, const char *path, uint32_t *out)
{
    unsigned long v;
    int rc = parse_uint(c, n, path, 4294967295ul, "integer", &v);
    if (!rc)
        *out = (uint32_t)v;
    return rc;
}

/* Maps a scalar onto one of names (exact spelling); expect is the text
 * after "expected" in the error. */
static int get_enum(struct ctx *c, struct ynode *n, const char *path, const char *const *names,
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
typedef int item_fn(struct ctx *c, struct ynode *item, const char *path, void *ud);

static int each_item(struct ctx *c, struct ynode *seq, const char *path, item_fn *fn, void *ud)
{
    size_t i = 0;
    int rc;
    if (is_null(seq))
        return 0;
    rc = expect_type(c, seq, path, YAML_SEQUENCE_NODE);
    if (rc)
        return rc;
    if ((size_t)((seq->items + seq->n_items) - seq->items) > ZT_STATE_MAX_OBJECTS)
        return fail(c, seq, path, "too many items (over %d)", ZT_STATE_MAX_OBJECTS);
    for (struct ynode **it = seq->items; it < (seq->items + seq->n_items); it++, i++) {
        char sub[PATH_MAX_LEN];
        struct ynode *item = *it;
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

static int item_string(struct ctx *c, struct ynode *n, const char *path, void *ud)
{
    struct {
        char ***v;
        size_t *n;
    } *l = ud;
    char **slot = zt_state_array_push(l->v, l->n, sizeof(char *));
    return get_str(c, n, path, slot);
}

static int get_str_list(struct ctx *c, struct ynode *n, const char *path, char ***v, size_t *cnt)
{
    struct {
        char ***v;
        size_t *n;
    } l = {v, cnt};
    return each_item(c, n, path, item_string, &l);
}

/* "network/ip": the network may be empty ("/10.0.0.1"). */
static int split_network(struct ctx *c, struct ynode *n, const char *path, const char *what,
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

static int item_vip(struct ctx *c, struct ynode *n, const char *path, void *ud)
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

static int item_cidr_vip(struct ctx *c, struct ynode *n, const char *path, void *ud)
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

static int item_ip(struct ctx *c, struct ynode *n, const char *path, void *ud)
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

/* {targetPort: N, appProtocol: http|http2|grpc|tcp|tls}: a port's long
 * form, the protocol as a Kubernetes Service's appProtocol names it
 * (kubernetes.io/h2c is http2). */
static int get_port_detail(struct ctx *c, struct ynode *n, const char *path, struct zt_port_map *pm)
{
    static const char *const keys[] = {"targetPort", "appProtocol", NULL};
    static const char *const protos[] = {
        "", "http", "http2", "grpc", "tcp", "tls", "kubernetes.io/h2c", NULL};
    char sub[PATH_MAX_LEN];
    int rc = check_keys(c, n, path, keys);
    struct ynode *tp = rc ? NULL : map_get(c, n, "targetPort");
    struct ynode *ap = rc ? NULL : map_get(c, n, "appProtocol");
    if (!rc && tp) {
        path_key(sub, path, "targetPort");
        rc = get_port(c, tp, sub, &pm->target_port);
    }
    if (!rc && ap) {
        int i;
        path_key(sub, path, "appProtocol");
        rc = get_enum(c, ap, sub, protos, "http, http2, grpc, tcp, tls or kubernetes.io/h2c", &i);
        if (!rc)
            pm->app_protocol = i == 6 ? ZT_APP_HTTP2 : (uint8_t)i;
    }
    return rc;
}

/* {svcPort: targetPort, ...}, each target port also in the long form
 * above. */
static int get_port_map(struct ctx *c, struct ynode *map, const char *path, struct zt_port_map **v,
                        size_t *cnt)
{
    int rc;
    if (is_null(map))
        return 0;
    rc = expect_type(c, map, path, YAML_MAPPING_NODE);
    if (rc)
        return rc;
    for (struct ypair *p = map->pairs; p < (map->pairs + map->n_pairs); p++) {
        struct ynode *k = p->key, *val = p->value;
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
        if (val && val->type == YAML_MAPPING_NODE) {
            rc = get_port_detail(c, val, sub, pm);
        } else {
            rc = get_port(c, val, sub, &pm->target_port);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- shared */

static int get_gateway(struct ctx *c, struct ynode *n, const char *path, struct zt_gateway *g)
{
    static const char *const keys[] = {"destination", "hboneMtlsPort", NULL};
    static const char *const nh_keys[] = {"namespace", "hostname", NULL};
    char sub[PATH_MAX_LEN];
    struct ynode *d, *v;
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

/* ---------------------------------------------------------------- labels */

/* The `labels:` of a workload or service: any string map, as in
 * Kubernetes; istio.io/use-waypoint (and -namespace) and
 * gateway.networking.k8s.io/gateway-name are recorded in the file's facts
 * for k8s.c. A use-waypoint label next to an explicit waypoint is refused:
 * which of the two should win cannot be told. */
static int read_labels(struct ctx *c, struct ynode *item, const char *path, enum zt_k8s_object kind,
                       const char *key, bool has_explicit)
{
    struct ynode *v = map_get(c, item, "labels");
    struct zt_k8s_label_view lv;
    struct zt_k8s_use use;
    struct zt_k8s_labelled *l;
    int rc;
    if (!v)
        return 0;
    if ((rc = zt_k8s_labels(&c->y, v, path, "labels", &lv)))
        return rc;
    if ((rc = zt_k8s_use_read(&c->y, &lv, path, "labels", &use)))
        return rc;
    if (use.is_set && has_explicit) {
        char sub[PATH_MAX_LEN];
        zt_k8s_use_cleanup(&use);
        path_join(sub, path, ".labels.", ZT_K8S_LABEL_USE_WAYPOINT, NULL);
        return fail(c, lv.use, sub,
                    "set together with an explicit waypoint: which one wins is ambiguous "
                    "(keep one of the two)");
    }
    if (!use.is_set && !lv.gateway_name)
        return 0;
    l = zt_state_array_push(&c->facts->labelled, &c->facts->n_labelled,
                            sizeof(*c->facts->labelled));
    l->kind = kind;
    l->key = zt_state_xstrdup(key);
    l->line = item->line;
    l->use = use;
    l->gateway_name = lv.gateway_name ? zt_state_xstrdup(lv.gateway_name->value) : NULL;
    return 0;
}

/* ---------------------------------------------------------------- workload */

static int get_wl_services(struct ctx *c, struct ynode *map, const char *path,
                           struct zt_workload *wl)
{
    int rc;
    if (is_null(map))
        return 0;
    rc = expect_type(c, map, path, YAML_MAPPING_NODE);
    if (rc)
        return rc;
    for (struct ypair *p = map->pairs; p < (map->pairs + map->n_pairs); p++) {
        struct ynode *k = p->key, *val = p->value;
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

static int get_locality(struct ctx *c, struct ynode *n, const char *path, struct zt_locality *l)
{
    static const char *const keys[] = {"region", "zone", "subzone", NULL};
    char **fields[] = {&l->region, &l->zone, &l->subzone};
    int rc = check_keys(c, n, path, keys);
    for (int i = 0; i < 3 && !rc; i++) {
        struct ynode *v = map_get(c, n, keys[i]);
        char sub[PATH_MAX_LEN];
        if (!v)
            continue;
        path_key(sub, path, keys[i]);
        rc = get_str(c, v, sub, fields[i]);
    }
    return rc;
}

static int get_app_tunnel(struct ctx *c, struct ynode *n, const char *path, struct zt_workload *wl)
{
    static const char *const keys[] = {"protocol", "port", NULL};
    static const char *const protos[] = {"NONE", "PROXY", NULL};
    char sub[PATH_MAX_LEN];
    struct ynode *v;
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

static int parse_workload(struct ctx *c, struct ynode *n, const char *path, void *ud)
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
                                       "labels",
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
    for (struct ypair *p = n->pairs; p < (n->pairs + n->n_pairs) && !rc; p++) {
        const char *k = scalar(p->key);
        struct ynode *v = p->value;
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
    if (!rc)
        rc =
            read_labels(c, n, path, ZT_K8S_WORKLOAD, wl->uid, wl->waypoint.kind != ZT_GATEWAY_NONE);
    if (rc) {
        zt_workload_unref(wl);
        return rc;
    }
    c->last = wl;
    zt_state_builder_add_workload(b, wl);
    return 0;
}

/* ---------------------------------------------------------------- service */

static int item_weighted_waypoint(struct ctx *c, struct ynode *n, const char *path, void *ud)
{
    static const char *const keys[] = {"destination", "weight", NULL};
    struct zt_service *svc = ud;
    struct zt_weighted_waypoint *w =
        zt_state_array_push(&svc->weighted_waypoints, &svc->n_weighted_waypoints, sizeof(*w));
    char sub[PATH_MAX_LEN];
    struct ynode *v;
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

static int item_scope(struct ctx *c, struct ynode *n, const char *path, void *ud)
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

static int get_load_balancer(struct ctx *c, struct ynode *n, const char *path,
                             struct zt_service *svc)
{
    static const char *const keys[] = {"routingPreferences", "mode", "healthPolicy", NULL};
    static const char *const modes[] = {"Standard", "Strict", "Failover", "Passthrough", NULL};
    static const char *const health[] = {"OnlyHealthy", "AllowAll", NULL};
    char sub[PATH_MAX_LEN];
    struct ynode *v;
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

static int parse_service(struct ctx *c, struct ynode *n, const char *path, void *ud)
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
                                       "labels",
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
    for (struct ypair *p = n->pairs; p < (n->pairs + n->n_pairs) && !rc; p++) {
        const char *k = scalar(p->key);
        struct ynode *v = p->value;
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
    if (!rc) {
        size_t kl = strlen(svc->namespace) + 1 + strlen(svc->hostname) + 1;
        char *key = zt_state_xcalloc(kl, 1);
        snprintf(key, kl, "%s/%s", svc->namespace, svc->hostname);
        rc = read_labels(c, n, path, ZT_K8S_SERVICE, key,
                         svc->waypoint.kind != ZT_GATEWAY_NONE || svc->n_weighted_waypoints);
        free(key);
    }
    if (rc) {
        zt_service_unref(svc);
        return rc;
    }
    c->last = svc;
    zt_state_builder_add_service(b, svc);
    return 0;
}

/* ---------------------------------------------------------------- policy */

static int item_strmatch(struct ctx *c, struct ynode *n, const char *path, void *ud)
{
    static const char *const kinds[] = {"Exact", "Prefix", "Suffix", "Presence", NULL};
    static const char *const expect = "expected {Exact|Prefix|Suffix: value} or Presence";
    struct zt_strmatch_list *l = ud;
    struct zt_strmatch *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    struct ynode *k, *v;
    char sub[PATH_MAX_LEN];
    int rc;

    if (n->type == YAML_SCALAR_NODE) {
        if (strcmp(scalar(n), "Presence") != 0)
            return fail(c, n, path, "bad string match \"%s\": %s", scalar(n), expect);
        m->kind = ZT_STRMATCH_PRESENCE;
        return 0;
    }
    if (n->type != YAML_MAPPING_NODE || (n->pairs + n->n_pairs) - n->pairs != 1)
        return fail(c, n, path, "%s", expect);
    if ((rc = check_keys(c, n, path, kinds)))
        return rc;
    k = n->pairs->key;
    v = n->pairs->value;
    path_key(sub, path, scalar(k));
    for (int i = 0; kinds[i]; i++)
        if (!strcmp(kinds[i], scalar(k)))
            m->kind = (enum zt_strmatch_kind)i;
    if (m->kind == ZT_STRMATCH_PRESENCE) {
        if (!is_null(v) && !(v->type == YAML_MAPPING_NODE && (v->pairs + v->n_pairs) == v->pairs))
            return fail(c, v, sub, "Presence takes no value");
        return 0;
    }
    return get_str(c, v, sub, &m->value);
}

static int item_sa(struct ctx *c, struct ynode *n, const char *path, void *ud)
{
    static const char *const keys[] = {"namespace", "serviceAccount", NULL};
    struct zt_sa_list *l = ud;
    struct zt_sa_match *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    char sub[PATH_MAX_LEN];
    struct ynode *v;
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

static int item_cidr(struct ctx *c, struct ynode *n, const char *path, void *ud)
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

static int item_dport(struct ctx *c, struct ynode *n, const char *path, void *ud)
{
    struct zt_port_list *l = ud;
    uint16_t port;
    int rc = get_port(c, n, path, &port);
    if (!rc)
        *(uint32_t *)zt_state_array_push(&l->v, &l->n, sizeof(uint32_t)) = port;
    return rc;
}

static int item_match(struct ctx *c, struct ynode *n, const char *path, void *ud)
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
    for (struct ypair *p = n->pairs; !rc && p < (n->pairs + n->n_pairs); p++) {
        const char *k = scalar(p->key);
        struct ynode *v = p->value;
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

static int item_clause(struct ctx *c, struct ynode *n, const char *path, void *ud)
{
    struct zt_policy_rule *r = ud;
    struct zt_policy_clause *cl = zt_state_array_push(&r->clauses, &r->n_clauses, sizeof(*cl));
    return each_item(c, n, path, item_match, cl);
}

static int item_rule(struct ctx *c, struct ynode *n, const char *path, void *ud)
{
    struct zt_policy *p = ud;
    struct zt_policy_rule *r = zt_state_array_push(&p->rules, &p->n_rules, sizeof(*r));
    return each_item(c, n, path, item_clause, r);
}

static int parse_policy(struct ctx *c, struct ynode *n, const char *path, void *ud)
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
    for (struct ypair *p = n->pairs; p < (n->pairs + n->n_pairs) && !rc; p++) {
        const char *k = scalar(p->key);
        struct ynode *v = p->value;
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
    c->last = pol;
    zt_state_builder_add_policy(b, pol);
    return 0;
}

/* ---------------------------------------------------------------- top */

/* One item of a top-level list, keyed for duplicate detection: the builder
 * would only know the key, the message names both lines. Strings are the
 * parsed record's (alive in the builder until it finishes). */
struct dup_item {
    const char *a, *b;
    uint32_t line; /* of the item's key a */
};

/* The three top-level lists: their item parser and the key that must be
 * unique among their items (a, or a and b). */
struct list_kind {
    const char *name;
    item_fn *parse;
    const char *a, *b, *what;
};

static const struct list_kind kinds[] = {
    {"workloads", parse_workload, "uid", NULL, "uid"},
    {"services", parse_service, "namespace", "hostname", "service"},
    {"policies", parse_policy, "namespace", "name", "policy"},
};

struct dup_list {
    struct dup_item *v;
    size_t n, cap;
};

static void record_item(struct ctx *c, const struct list_kind *k, struct ynode *item,
                        struct dup_list *l)
{
    struct dup_item *d = zt_config_vec_slot(&l->v, &l->n, &l->cap, sizeof(*l->v));
    struct ynode *xa = map_get(c, item, k->a);
    if (k == &kinds[0]) {
        d->a = ((const struct zt_workload *)c->last)->uid;
        d->b = "";
    } else if (k == &kinds[1]) {
        d->a = ((const struct zt_service *)c->last)->namespace;
        d->b = ((const struct zt_service *)c->last)->hostname;
    } else {
        d->a = ((const struct zt_policy *)c->last)->namespace;
        d->b = ((const struct zt_policy *)c->last)->name;
    }
    d->line = xa ? xa->line : item->line;
}

static uint64_t dup_hash(const struct dup_item *d)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = d->a; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = d->b; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/* Refuses two items with the same key. A hash set makes it O(n) for the
 * large files a control plane serves; the error is the one a front-to-back
 * scan meets first: the earliest item that repeats an earlier one, pointing
 * at that first occurrence. */
static int check_duplicates(struct ctx *c, const struct list_kind *k, const struct dup_list *l)
{
    size_t cap = 16, mask;
    size_t *set; /* index + 1, 0 = empty */
    int rc = 0;
    while (cap < 2 * l->n)
        cap *= 2;
    mask = cap - 1;
    set = zt_state_xcalloc(cap, sizeof(*set));
    for (size_t i = 0; i < l->n && !rc; i++) {
        const struct dup_item *d = &l->v[i];
        for (size_t h = (size_t)dup_hash(d) & mask;; h = (h + 1) & mask) {
            const struct dup_item *first;
            char path[PATH_MAX_LEN], sub[PATH_MAX_LEN];
            struct ynode where = {.line = d->line};
            if (!set[h]) {
                set[h] = i + 1;
                break;
            }
            first = &l->v[set[h] - 1];
            if (strcmp(first->a, d->a) != 0 || strcmp(first->b, d->b) != 0)
                continue;
            path_index(path, k->name, i);
            path_key(sub, path, k->a);
            if (k->b)
                rc = fail(c, &where, path, "duplicate %s \"%s/%s\" (first at line %lu)", k->what,
                          d->a, d->b, (unsigned long)first->line + 1);
            else
                rc = fail(c, &where, sub, "duplicate %s \"%s\" (first at line %lu)", k->what, d->a,
                          (unsigned long)first->line + 1);
            break;
        }
    }
    free(set);
    return rc;
}

/* Reads the items of a top-level list one by one, from the event after its
 * SEQUENCE-START. */
static int stream_list(struct ctx *c, const struct list_kind *k, const yaml_event_t *start,
                       struct zt_state_builder *b, struct dup_list *dups)
{
    struct ynode at = {.line = (uint32_t)start->start_mark.line};
    size_t i = 0;
    int rc = 0;
    for (;; i++) {
        yaml_event_t ev;
        struct ynode *item;
        char sub[PATH_MAX_LEN];
        if ((rc = zt_yreader_next(&c->y, &ev)))
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (i >= ZT_STATE_MAX_OBJECTS) {
            yaml_event_delete(&ev);
            return fail(c, &at, k->name, "too many items (over %d)", ZT_STATE_MAX_OBJECTS);
        }
        rc = zt_yreader_node(&c->y, &ev, &item);
        yaml_event_delete(&ev);
        if (rc)
            return rc;
        path_index(sub, k->name, i);
        c->last = NULL;
        rc = visit(c, item, sub);
        if (!rc)
            rc = k->parse(c, item, sub, b);
        if (rc)
            return rc;
        record_item(c, k, item, dups);
        zt_yreader_reset(&c->y);
    }
}

/* ---------------------------------------------------------------- kinds */

/* Kubernetes documents, dispatched by kind. A file may mix them with our
 * own schema (one YAML document each, "---" between them), so a user can
 * paste objects from a cluster. The apiVersion's group tells APIs apart
 * (networking.istio.io has a Gateway too: not this one). A kind that is not
 * listed, or listed without a reader, is skipped without a word.
 *
 * HTTPRoute and GRPCRoute documents reach read_route, which hands the
 * document tree to config/routes.h with the file's name and the line marks
 * and keeps the result in the file's facts (the readers get the tree, the
 * reader state for messages, and the file's facts). */
typedef int k8s_read_fn(struct ctx *c, struct ynode *doc);

static int dispatch_k8s_object(struct ctx *c, struct ynode *doc);

static int read_gateway(struct ctx *c, struct ynode *doc)
{
    return zt_k8s_read_gateway(&c->y, doc, c->facts);
}

static int read_namespace(struct ctx *c, struct ynode *doc)
{
    return zt_k8s_read_namespace(&c->y, doc, c->facts);
}

/* A reader's messages as notes of the file's facts, errors marked with
 * what was left out. */
static void note_errors(struct ctx *c, struct zt_route_errors *errs, const char *left_out)
{
    for (size_t i = 0; i < errs->n; i++)
        zt_k8s_facts_note(c->facts, "%s%s", errs->v[i].msg, errs->v[i].is_warning ? "" : left_out);
    zt_route_errors_cleanup(errs);
}

/* An HTTPRoute or GRPCRoute (config/routes.h) joins the file's facts; one
 * that does not read is a note naming file, line, object and field, and
 * never fails the file: other routes and the rest of the configuration
 * stay good. */
static int read_route(struct ctx *c, struct ynode *doc)
{
    struct zt_route_errors errs = {0};
    struct zt_route_def d;
    if (zt_config_routes_parse_doc(c->y.file, doc, &errs, &d) == 0 && d.name) {
        size_t n = c->facts->n_routes;
        *(struct zt_route_def *)zt_state_array_push(&c->facts->routes, &n, sizeof(d)) = d;
        c->facts->n_routes = n;
    }
    note_errors(c, &errs, " (route left out)");
    return 0;
}

/* An AuthorizationPolicy or RequestAuthentication that attaches to
 * waypoints (config/authz.h, authn.h) joins the file's facts, for the
 * control plane to serve; as with routes, one that does not read is a note
 * and never fails the file. Selector and namespace-wide policies are for
 * node proxies and sidecars: skipped here, without a word. */
static int read_authz(struct ctx *c, struct ynode *doc)
{
    struct zt_route_errors errs = {0};
    struct zt_authz_l7_policy *p;
    if (zt_config_authz_parse_doc(c->y.file, doc, &errs, &p) == 0 && p)
        *(struct zt_authz_l7_policy **)zt_state_array_push(&c->facts->authz, &c->facts->n_authz,
                                                           sizeof(p)) = p;
    note_errors(c, &errs, " (policy left out)");
    return 0;
}

static int read_authn(struct ctx *c, struct ynode *doc)
{
    struct zt_route_errors errs = {0};
    struct zt_jwt_authn_policy *p;
    if (zt_config_authn_parse_doc(c->y.file, doc, &errs, &p) == 0 && p)
        *(struct zt_jwt_authn_policy **)zt_state_array_push(&c->facts->authn, &c->facts->n_authn,
                                                            sizeof(p)) = p;
    note_errors(c, &errs, " (policy left out)");
    return 0;
}

/* A RateLimit (our own kind, config/ratelimit.h) joins the file's facts
 * the same way, for the control plane to serve to waypoints. */
static int read_ratelimit(struct ctx *c, struct ynode *doc)
{
    struct zt_route_errors errs = {0};
    struct zt_ratelimit_policy *p;
    if (zt_config_ratelimit_parse_doc(c->y.file, doc, &errs, &p) == 0 && p)
        *(struct zt_ratelimit_policy **)zt_state_array_push(&c->facts->ratelimits,
                                                            &c->facts->n_ratelimits, sizeof(p)) = p;
    note_errors(c, &errs, " (policy left out)");
    return 0;
}

/* `kubectl get -o yaml` of several objects: a v1 List of them. A List in
 * a List is refused: kubectl never writes one, and an alias could make the
 * nesting endless. */
static int read_list(struct ctx *c, struct ynode *doc)
{
    struct ynode *items = zt_k8s_get(doc, "items");
    int rc = 0;
    if (c->in_list)
        return fail(c, doc, "items", "a List inside a List");
    if (!items || is_null(items))
        return 0;
    if ((rc = expect_type(c, items, "items", YAML_SEQUENCE_NODE)))
        return rc;
    for (size_t i = 0; i < items->n_items && !rc; i++) {
        char sub[PATH_MAX_LEN];
        path_index(sub, "items", i);
        if (!(rc = visit(c, items->items[i], sub)) &&
            !(rc = expect_type(c, items->items[i], sub, YAML_MAPPING_NODE))) {
            c->in_list = true;
            rc = dispatch_k8s_object(c, items->items[i]);
            c->in_list = false;
        }
    }
    return rc;
}

static const struct k8s_kind {
    const char *kind;
    const char *group; /* "" for the core API */
    k8s_read_fn *read;
} k8s_kinds[] = {
    {"Gateway", "gateway.networking.k8s.io", read_gateway},
    {"Namespace", "", read_namespace},
    {"List", "", read_list},
    {"HTTPRoute", "gateway.networking.k8s.io", read_route},
    {"GRPCRoute", "gateway.networking.k8s.io", read_route},
    {"AuthorizationPolicy", "security.istio.io", read_authz},
    {"RequestAuthentication", "security.istio.io", read_authn},
    {"RateLimit", "ratelimit.ztunnel-c.io", read_ratelimit},
};

/* One Kubernetes object (a document, or an item of a List). */
static int dispatch_k8s_object(struct ctx *c, struct ynode *doc)
{
    struct ynode *kind = zt_k8s_get(doc, "kind"), *api = zt_k8s_get(doc, "apiVersion");
    const char *slash;
    size_t glen;
    if (!kind || kind->type != YAML_SCALAR_NODE)
        return fail(c, kind ? kind : doc, "kind", "expected the object's kind, a string");
    if (!api || api->type != YAML_SCALAR_NODE)
        return fail(c, api ? api : doc, "apiVersion", "expected a string (e.g. \"v1\")");
    slash = strchr(scalar(api), '/');
    glen = slash ? (size_t)(slash - scalar(api)) : 0;
    for (size_t i = 0; i < sizeof(k8s_kinds) / sizeof(k8s_kinds[0]); i++) {
        const struct k8s_kind *k = &k8s_kinds[i];
        if (strcmp(k->kind, scalar(kind)) != 0 || strlen(k->group) != glen ||
            strncmp(k->group, scalar(api), glen) != 0)
            continue;
        return k->read ? k->read(c, doc) : 0;
    }
    return 0;
}

/* ---------------------------------------------------------------- documents */

static bool is_k8s_key(const char *k)
{
    return !strcmp(k, "apiVersion") || !strcmp(k, "kind") || !strcmp(k, "metadata");
}

/* The rest of a document that turned out to be a Kubernetes object (its
 * first key is apiVersion, kind or metadata), from its value on: built as
 * one tree (objects are small), then dispatched by kind. */
static int read_k8s_document(struct ctx *c, struct ynode *first_key, const yaml_event_t *start)
{
    struct ypair *pairs = NULL;
    size_t n = 0, cap = 0;
    struct ynode *key = first_key, *doc;
    int rc = 0;
    for (;;) {
        yaml_event_t ev;
        struct ypair *p;
        if ((rc = zt_yreader_next(&c->y, &ev)))
            break;
        p = zt_config_vec_slot(&pairs, &n, &cap, sizeof(*pairs));
        p->key = key;
        rc = zt_yreader_node(&c->y, &ev, &p->value);
        yaml_event_delete(&ev);
        if (rc)
            break;
        if ((rc = zt_yreader_next(&c->y, &ev)))
            break;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        rc = zt_yreader_node(&c->y, &ev, &key);
        yaml_event_delete(&ev);
        if (rc)
            break;
        if (key->type != YAML_SCALAR_NODE) {
            rc = fail(c, key, "", "mapping keys must be strings");
            break;
        }
    }
    if (!rc) {
        doc = zt_yreader_alloc(&c->y, sizeof(*doc));
        memset(doc, 0, sizeof(*doc));
        doc->type = YAML_MAPPING_NODE;
        doc->line = (uint32_t)start->start_mark.line;
        doc->pairs = zt_yreader_alloc(&c->y, (n ? n : 1) * sizeof(*doc->pairs));
        memcpy(doc->pairs, pairs, n * sizeof(*pairs));
        doc->n_pairs = n;
        rc = visit(c, doc, "");
        if (!rc)
            rc = dispatch_k8s_object(c, doc);
    }
    free(pairs);
    return rc;
}

/* Reads the top-level mapping from the event after its MAPPING-START
 * (start). Its lists are streamed; anything else under a known key is built
 * as a tree and refused (or taken as an empty list) by each_item. A first
 * key apiVersion, kind or metadata makes it a Kubernetes object. */
static int stream_root(struct ctx *c, struct zt_state_builder *b, struct dup_list *dups,
                       const yaml_event_t *start)
{
    bool seen[3] = {false, false, false}, first = true;
    int rc;
    for (;; first = false) {
        yaml_event_t ev;
        struct ynode *key, *val;
        const struct list_kind *k = NULL;
        char sub[PATH_MAX_LEN];
        if ((rc = zt_yreader_next(&c->y, &ev)))
            return rc;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        rc = zt_yreader_node(&c->y, &ev, &key);
        yaml_event_delete(&ev);
        if (rc)
            return rc;
        if (key->type != YAML_SCALAR_NODE)
            return fail(c, key, "", "mapping keys must be strings");
        if (first && is_k8s_key(scalar(key)))
            return read_k8s_document(c, key, start);
        for (size_t i = 0; i < 3 && !k; i++)
            if (strcmp(kinds[i].name, scalar(key)) == 0)
                k = &kinds[i];
        path_key(sub, "", scalar(key));
        if (!k)
            return fail(c, key, sub, "unknown key");
        if (seen[k - kinds])
            return fail(c, key, sub, "duplicate key");
        seen[k - kinds] = true;
        if ((rc = zt_yreader_next(&c->y, &ev)))
            return rc;
        if (ev.type == YAML_SEQUENCE_START_EVENT && !ev.data.sequence_start.anchor) {
            yaml_event_delete(&ev);
            rc = stream_list(c, k, &ev, b, &dups[k - kinds]);
        } else {
            rc = zt_yreader_node(&c->y, &ev, &val);
            yaml_event_delete(&ev);
            if (!rc)
                rc = each_item(c, val, k->name, k->parse, b);
        }
        if (rc)
            return rc;
        zt_yreader_reset(&c->y);
    }
}

/* Reads every document of the stream: each is our schema or one
 * Kubernetes object (see dispatch_k8s_object); empty documents are fine. */
static int read_documents(struct ctx *c, struct zt_state_builder *b, struct dup_list *dups)
{
    yaml_event_t ev;
    int rc = zt_yreader_next(&c->y, &ev); /* STREAM-START */
    if (rc)
        return rc;
    yaml_event_delete(&ev);
    for (;;) {
        if ((rc = zt_yreader_next(&c->y, &ev))) /* DOCUMENT-START or STREAM-END */
            return rc;
        if (ev.type != YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        yaml_event_delete(&ev);
        if ((rc = zt_yreader_next(&c->y, &ev))) /* the root node */
            return rc;
        if (ev.type == YAML_MAPPING_START_EVENT) {
            /* An anchor on the root could only be aliased from inside it. */
            rc = stream_root(c, b, dups, &ev);
            yaml_event_delete(&ev);
        } else {
            static const char *const keys[] = {"workloads", "services", "policies", NULL};
            struct ynode *root;
            rc = zt_yreader_node(&c->y, &ev, &root);
            yaml_event_delete(&ev);
            if (!rc && !is_null(root))
                rc = check_keys(c, root, "", keys);
        }
        if (rc)
            return rc;
        if ((rc = zt_yreader_next(&c->y, &ev))) /* DOCUMENT-END */
            return rc;
        yaml_event_delete(&ev);
        zt_yreader_end_document(&c->y);
    }
}

static int load_stream(struct ctx *c, struct zt_state **out)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct dup_list dups[3] = {{0}};
    char berr[256];
    int rc = read_documents(c, b, dups);
    for (size_t i = 0; i < 3 && !rc; i++)
        rc = check_duplicates(c, &kinds[i], &dups[i]);
    for (size_t i = 0; i < 3; i++)
        free(dups[i].v);
    if (rc) {
        zt_state_builder_free(b);
        return rc;
    }
    rc = zt_state_builder_finish(b, out, berr, sizeof(berr));
    if (rc)
        snprintf(c->y.err, c->y.errlen, "%s: %s", c->y.file, berr);
    return rc;
}

int zt_config_local_parse(const char *name, const char *yaml, size_t len, struct zt_state **raw,
                          struct zt_k8s_facts **facts, char *err, size_t errlen)
{
    yaml_parser_t parser;
    struct ctx c = {.y = {.file = name, .parser = &parser, .err = err, .errlen = errlen}};
    int rc;

    *raw = NULL;
    *facts = NULL;
    if (errlen)
        err[0] = '\0';
    if (len > ZT_CONFIG_LOCAL_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %u bytes", name, ZT_CONFIG_LOCAL_MAX_BYTES);
        return ZT_E_TOO_BIG;
    }
    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    c.facts = zt_k8s_facts_new(name);
    rc = load_stream(&c, raw);
    zt_yreader_cleanup(&c.y);
    yaml_parser_delete(&parser);
    if (rc)
        zt_k8s_facts_free(c.facts);
    else
        *facts = c.facts;
    return rc;
}

/* One file alone: its labels and Gateways resolved among themselves. */
int zt_config_local_load_string(const char *name, const char *yaml, size_t len,
                                struct zt_state **out, char *err, size_t errlen)
{
    struct zt_k8s_facts *facts;
    struct zt_state *raw;
    int rc = zt_config_local_parse(name, yaml, len, &raw, &facts, err, errlen);
    *out = NULL;
    if (rc)
        return rc;
    if (zt_k8s_facts_empty(facts)) {
        *out = raw;
    } else {
        const struct zt_k8s_facts *const f[] = {facts};
        rc = zt_k8s_resolve(f, 1, raw, NULL, NULL, out, err, errlen);
        zt_state_unref(raw);
    }
    zt_k8s_facts_free(facts);
    return rc;
}

int zt_config_local_load(const char *path, struct zt_state **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    struct stat st;
    int rc;

    *out = NULL;
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    /* Read in chunks until EOF or just past the cap, so an oversized file
     * is detected without trusting its reported size; the size only sets
     * the first allocation (growing by a chunk at a time copies a large
     * file over and over). */
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0 &&
        (uint64_t)st.st_size <= ZT_CONFIG_LOCAL_MAX_BYTES)
        cap = (size_t)st.st_size + 1;
    for (;;) {
        size_t want;
        if (cap - len < 4096) {
            cap = cap < 65536 ? 65536 : cap * 2;
            buf = zt_state_xrealloc(buf, cap);
        } else if (!buf) {
            buf = zt_state_xrealloc(buf, cap);
        }
        want = cap - len;
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
    /* The file and the parser's buffers are gone: return what a large
     * file took to the system. */
    if (len >= ZT_CONFIG_LOCAL_TRIM_BYTES)
        malloc_trim(0);
    return rc;
}
