/* Private to config/: the HTTPRoute / GRPCRoute YAML walkers shared by
 * routes_yaml.c (objects, rules, matches, documents) and routes_filters.c
 * (filters, backends, retry). See routes.h for the contract. */
#ifndef ZT_CONFIG_ROUTES_INT_H
#define ZT_CONFIG_ROUTES_INT_H

#include "config/local_int.h"
#include "route/route.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PATH_LEN 256
#define MAX_RULES 16
#define MAX_MATCHES 64
#define MAX_FILTERS 16
#define MAX_BACKENDS 16
#define MAX_PARENTS 32
#define MAX_HOSTNAMES 16
#define MAX_MODS 16
#define MAX_NAME 253
#define MAX_VALUE 4096
#define MAX_WEIGHT 1000000
#define MAX_FIELDS 64 /* keys in one mapping */
/* Work units one document may cost (a key or list item is one, a regex
 * compile 50): aliases can repeat a large subtree many times. */
#define WORK_BUDGET 200000u

struct zt_config_routes_ctx {
    const char *file;
    struct zt_route_errors *errs;
    char obj[320]; /* "HTTPRoute ns/name" */
    enum zt_route_kind kind;
    const char *ns; /* the route's namespace, the default of references */
    unsigned work;
};

/* Diagnostics: "<file>:<line>: <object>: <path>: <why>"; fail returns
 * ZT_E_CONFIG. */
int zt_config_routes_fail(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void zt_config_routes_warn(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The Kubernetes frame of object doc: top-level and metadata keys, the
 * name (required) and namespace ("default" if absent) into heap strings,
 * c->obj set to "<kind> <ns>/<name>". */
int zt_config_routes_object(struct zt_config_routes_ctx *c, const struct ynode *doc,
                            const char *kind, char **name, char **ns);
/* Whether doc is an object of this kind: 0 with *is false when not (not a
 * mapping, another kind); else c->obj is set to kind and the apiVersion
 * must be one of versions (NULL-terminated), or ZT_E_CONFIG. */
int zt_config_routes_kind(struct zt_config_routes_ctx *c, const struct ynode *doc, const char *kind,
                          const char *const *versions, bool *is);
/* Field paths: dst (PATH_LEN bytes) = parent.key / parent[i]. */
void zt_config_routes_key(char *dst, const char *parent, const char *key);
void zt_config_routes_idx(char *dst, const char *parent, size_t i);
/* The value of key in mapping m; NULL if absent or null. */
const struct ynode *zt_config_routes_get(const struct ynode *m, const char *key);
int zt_config_routes_want(struct zt_config_routes_ctx *c, const struct ynode *n, yaml_node_type_t t,
                          const char *path);
/* m is a mapping of unique string keys; keys outside known (and quiet) are
 * warnings. */
int zt_config_routes_check_keys(struct zt_config_routes_ctx *c, const struct ynode *m,
                                const char *path, const char *const *known,
                                const char *const *quiet);
/* Typed fields of m (absent: *out NULL / *present false, an error only
 * when required). */
int zt_config_routes_str(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                         const char *path, bool required, size_t max, char **out);
int zt_config_routes_group(struct zt_config_routes_ctx *c, const struct ynode *m, const char *path,
                           char **out);
bool zt_config_routes_core_group(const char *g);
int zt_config_routes_uint(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                          const char *path, unsigned long min, unsigned long max, bool *present,
                          unsigned long *out);
int zt_config_routes_list(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                          const char *path, size_t max, const struct ynode **out);
int zt_config_routes_map(struct zt_config_routes_ctx *c, const struct ynode *m, const char *key,
                         const char *path, const char *const *known, const struct ynode **out,
                         char *sub);
bool zt_config_routes_one_of(const char *v, const char *const *set);
int zt_config_routes_duration(struct zt_config_routes_ctx *c, const struct ynode *m,
                              const char *key, const char *path, uint32_t *ms);
/* Why a path value is not allowed, or NULL. */
const char *zt_config_routes_bad_path(const char *v);

/* routes_filters.c: a rule's filters (rn is the rule), one backendRef (or a
 * mirror's), a retry stanza. */
int zt_config_routes_filters(struct zt_config_routes_ctx *c, const struct ynode *rn,
                             const char *path, struct zt_route_rule *r);
int zt_config_routes_backend(struct zt_config_routes_ctx *c, const struct ynode *n,
                             const char *path, bool mirror, struct zt_route_backend *b);
int zt_config_routes_retry(struct zt_config_routes_ctx *c, const struct ynode *n, const char *path,
                           struct zt_route_retry *rt);

#endif
