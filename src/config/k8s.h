/* Private to config/: waypoints declared the Kubernetes way.
 *
 * A config file (LOCAL_XDS_PATH, or one file of `ztunnel control`'s
 * directory) may hold, besides our own schema, Kubernetes objects pasted
 * from a cluster. What they say about waypoints is gathered per file into a
 * struct zt_k8s_facts by the loader (local.c):
 * - a Gateway of class istio-waypoint declares a waypoint;
 * - a Namespace's labels, and the `labels:` of our own services and
 *   workloads, say which waypoint they use (istio.io/use-waypoint,
 *   istio.io/use-waypoint-namespace).
 * zt_k8s_resolve then turns the facts of every file into the `waypoint`
 * fields the node proxies already understand, on the merged snapshot. It
 * runs on every load, because a label in one file can change objects of
 * another file (see dir.c).
 *
 * Rules, as istiod derives them (pilot/pkg/serviceregistry/ambient/
 * waypoints.go):
 * - The waypoint's address is the hostname of its Service: the service of
 *   our schema named after the Gateway in the Gateway's namespace; without
 *   one, the Gateway's spec.addresses, then status.addresses (a Hostname
 *   before an IPAddress). HBONE port 15008.
 * - A service's waypoint comes from its own label, else its namespace's; a
 *   workload's from its own label, else its namespace's. `none` opts out.
 *   A service's label does not reach the workloads behind it (as in
 *   Istio: traffic to a pod IP uses the pod's waypoint).
 * - istio.io/waypoint-for on the Gateway (service, the default; workload;
 *   all; none) says who may use it. A label naming a waypoint that does not
 *   take that kind of traffic is an error on the object itself and ignored
 *   when inherited from the namespace.
 * - A waypoint serves its own namespace unless its HBONE listener's
 *   allowedRoutes.namespaces.from is All.
 * - The waypoint's own service and workloads (endpoints of that service,
 *   or labelled gateway.networking.k8s.io/gateway-name) never get one.
 * - An explicit `waypoint:` in our schema beats a namespace label; with a
 *   label on the object itself it is an error (parse time, local.c). */
#ifndef ZT_CONFIG_K8S_H
#define ZT_CONFIG_K8S_H

#include "authz/l7.h"
#include "jwt/authn.h"
#include "ratelimit/ratelimit.h"
#include "route/route.h"
#include "state/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZT_K8S_LABEL_USE_WAYPOINT "istio.io/use-waypoint"
#define ZT_K8S_LABEL_USE_WAYPOINT_NS "istio.io/use-waypoint-namespace"
#define ZT_K8S_LABEL_WAYPOINT_FOR "istio.io/waypoint-for"
#define ZT_K8S_LABEL_GATEWAY_NAME "gateway.networking.k8s.io/gateway-name"

enum zt_k8s_traffic {
    ZT_K8S_TRAFFIC_SERVICE = 0,
    ZT_K8S_TRAFFIC_WORKLOAD = 1,
    ZT_K8S_TRAFFIC_ALL = 2,
    ZT_K8S_TRAFFIC_NONE = 3,
};

const char *zt_k8s_traffic_str(enum zt_k8s_traffic t);

/* An istio.io/use-waypoint label (with its -namespace companion). */
struct zt_k8s_use {
    bool is_set;
    bool is_none;    /* "none": opt out */
    char *name;      /* the Gateway's name */
    char *namespace; /* NULL: the labelled object's namespace */
    uint32_t line;   /* 0-based, of the use-waypoint label */
};

struct zt_k8s_gateway {
    char *name, *namespace;
    uint32_t line; /* of the document's kind */
    enum zt_k8s_traffic traffic;
    bool from_all; /* the HBONE listener admits every namespace */
    /* From spec.addresses / status.addresses: kind NONE without one. */
    struct zt_gateway address;
};

struct zt_k8s_namespace {
    char *name;
    uint32_t line;
    struct zt_k8s_use use;
};

enum zt_k8s_object { ZT_K8S_SERVICE, ZT_K8S_WORKLOAD };

/* One of our services or workloads with labels that matter here. */
struct zt_k8s_labelled {
    enum zt_k8s_object kind;
    char *key; /* uid, or "ns/hostname" */
    uint32_t line;
    struct zt_k8s_use use;
    char *gateway_name; /* gateway.networking.k8s.io/gateway-name, or NULL */
};

/* What one file says (owned; strings are heap copies). */
struct zt_k8s_facts {
    char *file;
    struct zt_k8s_gateway *gateways;
    size_t n_gateways;
    struct zt_k8s_namespace *namespaces;
    size_t n_namespaces;
    struct zt_k8s_labelled *labelled;
    size_t n_labelled;
    char *notes; /* "file:line: ...\n" lines worth a warning, or NULL */
    /* HTTPRoute and GRPCRoute objects that read without error (the control
     * plane serves them to waypoints; see dir.h). Rejected ones are notes. */
    struct zt_route_def *routes;
    size_t n_routes;
    /* AuthorizationPolicy and RequestAuthentication objects that attach to
     * waypoints (config/authz.h, authn.h) and read without error, for the
     * same purpose; rejected ones are notes. */
    struct zt_authz_l7_policy **authz;
    size_t n_authz;
    struct zt_jwt_authn_policy **authn;
    size_t n_authn;
    /* RateLimit objects (config/ratelimit.h) that read without error, for
     * the same purpose; rejected ones are notes. */
    struct zt_ratelimit_policy **ratelimits;
    size_t n_ratelimits;
};

struct zt_k8s_facts *zt_k8s_facts_new(const char *file);
/* NULL is a no-op. */
void zt_k8s_facts_free(struct zt_k8s_facts *f);
/* True if the file declared nothing of the above (routes and policies do not count:
 * they take no part in deriving waypoints). */
bool zt_k8s_facts_empty(const struct zt_k8s_facts *f);
void zt_k8s_facts_note(struct zt_k8s_facts *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The same line ("...\n", at most 511 bytes) appended to *notes (heap, or
 * NULL for none yet). */
void zt_k8s_note(char **notes, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void zt_k8s_use_cleanup(struct zt_k8s_use *u);

/* ---- reading (local.c calls these while it walks a file) ---- */

struct ynode;
struct zt_yreader;

/* The labels of one object that matter here (nodes borrowed from the
 * tree), NULL when absent. */
struct zt_k8s_label_view {
    const struct ynode *use, *use_ns, *waypoint_for, *gateway_name;
};

/* Value of key in a mapping node (NULL: absent, or map is no mapping). */
struct ynode *zt_k8s_get(const struct ynode *map, const char *key);
/* Reads a labels mapping (NULL or empty: none). what and path name the
 * object and the key path in messages ("<file>:<line>: <what>: <path>:
 * ..."). Returns 0 or ZT_E_CONFIG with the message in r->err. */
int zt_k8s_labels(struct zt_yreader *r, const struct ynode *map, const char *what, const char *path,
                  struct zt_k8s_label_view *v);
/* The use-waypoint label of v into *u (zeroed first; owned by the caller,
 * see zt_k8s_use_cleanup). */
int zt_k8s_use_read(struct zt_yreader *r, const struct zt_k8s_label_view *v, const char *what,
                    const char *path, struct zt_k8s_use *u);
/* One document of kind Gateway (gateway.networking.k8s.io) or Namespace
 * (v1) into f. A Gateway of another class is skipped with a note. */
int zt_k8s_read_gateway(struct zt_yreader *r, const struct ynode *doc, struct zt_k8s_facts *f);
int zt_k8s_read_namespace(struct zt_yreader *r, const struct ynode *doc, struct zt_k8s_facts *f);

/* ---- resolving ---- */

/* Derives the waypoint fields of raw (borrowed: the merged objects as the
 * files declare them) from facts[0..n) (borrowed). On success returns 0
 * and *out is a new reference: raw itself when nothing is derived, else a
 * snapshot built on raw with the derived services and workloads replaced.
 * prev_raw and prev_out (both NULL, or the raw and out of the last
 * successful call) let an unchanged object keep the derived record of the
 * last call, so the xDS catalog does not see it change. On failure returns
 * ZT_E_CONFIG with "<file>:<line>: <what>" in err. */
int zt_k8s_resolve(const struct zt_k8s_facts *const *facts, size_t n, const struct zt_state *raw,
                   const struct zt_state *prev_raw, const struct zt_state *prev_out,
                   struct zt_state **out, char *err, size_t errlen);

#endif
