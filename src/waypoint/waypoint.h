/* `ztunnel waypoint`: the L7 layer of the mesh, run as an L7 layer of the
 * proxy (proxy/l7.h) in the waypoint's own network namespace.
 *
 * Each CONNECT from a node proxy names what its client dialed (a service
 * VIP:port, a service hostname:port, or a workload address:port when the
 * workload itself uses the waypoint). The waypoint picks an endpoint of
 * that destination from the same state the node proxies use and opens an
 * HBONE stream to it, presenting the waypoint's own identity; the client's
 * identity (the incoming tunnel's peer certificate) is what policy and
 * telemetry see. Traffic is relayed as a TCP stream.
 *
 * Threading: zt_waypoint_new/free on the control thread; everything else
 * runs on the proxy's workers through the l7 ops. */
#ifndef ZT_WAYPOINT_WAYPOINT_H
#define ZT_WAYPOINT_WAYPOINT_H

#include "proxy/l7.h"
#include "route/route.h"
#include "telemetry/metrics.h"

struct zt_waypoint_opts {
    struct zt_metrics *metrics; /* borrowed; may be NULL */
    /* The cluster's DNS domain ("cluster.local"): a route's backendRef
     * names a Service, found as <name>.<namespace>.svc.<domain>. */
    const char *cluster_domain;
    /* The waypoint's own Gateway (namespace, name): AuthorizationPolicies
     * targeting it apply to all its traffic. Copied. */
    const char *gateway_ns, *gateway_name;
};

struct zt_waypoint;

struct zt_waypoint *zt_waypoint_new(const struct zt_waypoint_opts *opts);
/* After the proxy that used it was freed. */
void zt_waypoint_free(struct zt_waypoint *wp);

/* The routes in force from now on (a reference is taken; NULL: none, every
 * service gets its default route). Any thread; each worker picks the new
 * table up at its next request. */
void zt_waypoint_set_routes(struct zt_waypoint *wp, struct zt_route_table *t);
/* The L7 AuthorizationPolicies in force from now on (a reference is taken;
 * NULL: none, everything allowed), as zt_waypoint_set_routes. */
struct zt_authz_l7_set;
void zt_waypoint_set_policies(struct zt_waypoint *wp, struct zt_authz_l7_set *p);
/* The RequestAuthentication rules in force (NULL: none), as the policies:
 * a reference is taken, workers pick it up at their next request. */
struct zt_jwt_authn_set;
void zt_waypoint_set_authn(struct zt_waypoint *wp, struct zt_jwt_authn_set *a);
/* The RateLimit policies in force (NULL: none), as the policies; and a
 * reference to them (NULL: none), for a reload to inherit their buckets. */
struct zt_ratelimit_set;
void zt_waypoint_set_ratelimits(struct zt_waypoint *wp, struct zt_ratelimit_set *r);
struct zt_ratelimit_set *zt_waypoint_ratelimits(struct zt_waypoint *wp);
/* The routes in force: a new reference (unref it), NULL for none. Any thread. */
struct zt_route_table *zt_waypoint_routes(struct zt_waypoint *wp);

/* The policies in force as JSON for /config_dump: an object with
 * "authorizationPolicies", "requestAuthentications" (from authn, the
 * policies as read; NULL: none) and "rateLimits" (with their counters),
 * each in the shape users write them. Any thread. */
struct zt_jwt_authn_policies;
typedef struct json_t json_t;
json_t *zt_waypoint_policies_dump(struct zt_waypoint *wp,
                                  const struct zt_jwt_authn_policies *authn);

/* The ops to put in zt_proxy_opts.l7, with l7_ud = the waypoint. */
extern const struct zt_proxy_l7_ops zt_waypoint_l7_ops;

#endif
