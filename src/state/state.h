/* Workloads, services and authorization policies: immutable snapshots.
 *
 * A struct zt_state is built once by a struct zt_state_builder, then never
 * changes. It is shared between threads by reference counting: the control
 * loop publishes a new snapshot and workers swap their pointer; a reader keeps
 * its snapshot alive with zt_state_ref() for as long as it uses any pointer
 * obtained from it (workloads, services, policies and their strings are all
 * owned by the snapshot, or shared with later snapshots by their own
 * reference counts).
 *
 * Objects (zt_workload, zt_service, zt_policy) are plain structs. Producers
 * (config/local.c, xds) allocate them with the _new() functions, fill every
 * field with heap memory (strings from zt_state_xstrdup, arrays grown with
 * zt_state_array_push) and hand them to the builder, which takes ownership.
 * From then on they are read-only: the builder swaps the strings of
 * workloads and services for shared copies (one per distinct text in a
 * snapshot), so a string must never be freed or replaced by hand.
 *
 * Out of memory aborts the process (see STYLE.md). */
#ifndef ZT_STATE_STATE_H
#define ZT_STATE_STATE_H

#include "state/ip.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps applied to every producer (YAML and xDS) by the builder. */
#define ZT_STATE_MAX_OBJECTS 1000000

/* ---------------------------------------------------------------- helpers */

void *zt_state_xcalloc(size_t n, size_t size);
void *zt_state_xrealloc(void *p, size_t size);
/* Returns a heap copy of s, or NULL if s is NULL. */
char *zt_state_xstrdup(const char *s);
/* Grows *arr (elements of `size` bytes, *n used) by one zeroed element and
 * returns a pointer to it. An array must only ever be grown by this
 * function (its capacity is implied by *n). */
void *zt_state_array_push(void *arr_ptr, size_t *n, size_t size);

/* ---------------------------------------------------------------- common */

enum zt_gateway_kind {
    ZT_GATEWAY_NONE = 0,     /* field absent */
    ZT_GATEWAY_ADDRESS = 1,  /* network + ip */
    ZT_GATEWAY_HOSTNAME = 2, /* namespace + hostname of a service */
};

/* GatewayAddress: a waypoint or a network gateway. */
struct zt_gateway {
    enum zt_gateway_kind kind;
    char *network; /* ADDRESS */
    struct zt_ip ip;
    char *namespace; /* HOSTNAME */
    char *hostname;
    uint16_t hbone_mtls_port;
};

/* A port's application protocol, as Istio's WDS Port.app_protocol says it
 * (the waypoint serves HTTP/1.1, HTTP/2 and gRPC ports as HTTP, TCP and
 * TLS ports as a byte stream, and sniffs UNKNOWN ones). */
enum zt_app_protocol {
    ZT_APP_UNKNOWN = 0,
    ZT_APP_HTTP11 = 1,
    ZT_APP_HTTP2 = 2,
    ZT_APP_GRPC = 3,
    ZT_APP_TCP = 4,
    ZT_APP_TLS = 5,
};
const char *zt_app_protocol_str(enum zt_app_protocol p);

struct zt_port_map {
    uint16_t service_port;
    uint16_t target_port; /* 0: none (named port) */
    uint8_t app_protocol; /* enum zt_app_protocol */
};

/* ---------------------------------------------------------------- workload */

enum zt_workload_protocol { ZT_WL_PROTO_TCP = 0, ZT_WL_PROTO_HBONE = 1 };
enum zt_network_mode { ZT_NETMODE_STANDARD = 0, ZT_NETMODE_HOST_NETWORK = 1 };
enum zt_workload_status { ZT_WL_HEALTHY = 0, ZT_WL_UNHEALTHY = 1 };
enum zt_workload_type {
    ZT_WL_TYPE_DEPLOYMENT = 0,
    ZT_WL_TYPE_CRONJOB = 1,
    ZT_WL_TYPE_POD = 2,
    ZT_WL_TYPE_JOB = 3,
};
enum zt_app_tunnel_protocol { ZT_APP_TUNNEL_NONE = 0, ZT_APP_TUNNEL_PROXY = 1 };

const char *zt_workload_protocol_str(enum zt_workload_protocol p);
const char *zt_workload_status_str(enum zt_workload_status s);
const char *zt_workload_type_str(enum zt_workload_type t);

struct zt_locality {
    char *region, *zone, *subzone;
};

struct zt_workload_service {
    char *key; /* "ns/hostname" */
    struct zt_port_map *ports;
    size_t n_ports;
};

struct zt_workload {
    atomic_uint refs;
    bool interned; /* private: strings are the builder's shared ones */
    bool packed;   /* private: addresses, services and ports in one block */
    char *uid;     /* primary key */
    char *name;
    char *namespace;
    char *service_account; /* "" => "default" at finish */
    char *trust_domain;    /* "" => "cluster.local" */
    struct zt_ip *addresses;
    size_t n_addresses;
    char *network;
    char *node;
    char *hostname;
    enum zt_workload_protocol protocol;
    enum zt_network_mode network_mode;
    enum zt_workload_status status;
    char *cluster_id; /* "" => "Kubernetes" */
    char *canonical_name;
    char *canonical_revision;
    char *workload_name;
    enum zt_workload_type workload_type;
    bool native_tunnel;
    struct zt_workload_service *services;
    size_t n_services;
    char **authorization_policies; /* "ns/name" keys */
    size_t n_authorization_policies;
    struct zt_locality locality;
    uint32_t capacity; /* LB weight; zt_workload_new() sets 1 */
    bool has_application_tunnel;
    enum zt_app_tunnel_protocol application_tunnel_protocol;
    uint16_t application_tunnel_port; /* 0: unset */
    struct zt_gateway waypoint;       /* for pod-IP traffic (zt_state_resolve_outbound) */
    /* How clients on other networks reach it: double HBONE through this
     * gateway (zt_state_resolve_outbound). */
    struct zt_gateway network_gateway;
};

/* Returns a zeroed workload with refs = 1 and capacity = 1. */
struct zt_workload *zt_workload_new(void);
struct zt_workload *zt_workload_ref(struct zt_workload *wl);
/* Drops one reference; frees everything it owns at zero. NULL is a no-op. */
void zt_workload_unref(struct zt_workload *wl);

/* A new workload (refs = 1, not yet in any snapshot) equal to wl (borrowed),
 * every string and array copied: how a producer derives a record with one
 * field changed from a record of a snapshot, which is immutable. */
struct zt_workload *zt_workload_clone(const struct zt_workload *wl);

/* Finds the services-map entry for a "ns/hostname" key, or NULL. */
const struct zt_workload_service *zt_workload_find_service(const struct zt_workload *wl,
                                                           const char *key);
/* True if ip is one of the workload's addresses. */
bool zt_workload_has_ip(const struct zt_workload *wl, const struct zt_ip *ip);
/* Writes "spiffe://<td>/ns/<ns>/sa/<sa>". Returns 0 or ZT_E_TOO_BIG. */
int zt_workload_identity(const struct zt_workload *wl, char *buf, size_t len);

/* ---------------------------------------------------------------- service */

enum zt_lb_mode {
    ZT_LB_STANDARD = 0,
    ZT_LB_STRICT = 1,
    ZT_LB_FAILOVER = 2,
    ZT_LB_PASSTHROUGH = 3,
};
enum zt_lb_scope {
    ZT_LB_SCOPE_REGION = 1,
    ZT_LB_SCOPE_ZONE = 2,
    ZT_LB_SCOPE_SUBZONE = 3,
    ZT_LB_SCOPE_NODE = 4,
    ZT_LB_SCOPE_CLUSTER = 5,
    ZT_LB_SCOPE_NETWORK = 6,
};
enum zt_lb_health { ZT_LB_ONLY_HEALTHY = 0, ZT_LB_ALLOW_ALL = 1 };
enum zt_ip_families {
    ZT_IPF_AUTOMATIC = 0,
    ZT_IPF_IPV4_ONLY = 1,
    ZT_IPF_IPV6_ONLY = 2,
    ZT_IPF_DUAL = 3,
};
enum zt_visibility { ZT_VIS_PUBLIC = 0, ZT_VIS_NAMESPACE = 1 };

const char *zt_lb_mode_str(enum zt_lb_mode m);
const char *zt_lb_scope_str(enum zt_lb_scope s);

#define ZT_LB_MAX_SCOPES 6

struct zt_vip {
    char *network;
    struct zt_ip ip;
};

struct zt_cidr_vip {
    char *network;
    struct zt_cidr cidr;
};

struct zt_weighted_waypoint {
    struct zt_gateway destination;
    uint32_t weight;
};

struct zt_service {
    atomic_uint refs;
    bool interned; /* private: strings are the builder's shared ones */
    char *name;
    char *namespace;
    char *hostname;
    char *key; /* "ns/hostname", set by the builder */
    struct zt_vip *vips;
    size_t n_vips;
    struct zt_cidr_vip *cidr_vips;
    size_t n_cidr_vips;
    struct zt_port_map *ports;
    size_t n_ports;
    char **subject_alt_names;
    size_t n_subject_alt_names;
    bool has_load_balancing;
    enum zt_lb_mode lb_mode;
    enum zt_lb_scope lb_routing[ZT_LB_MAX_SCOPES];
    size_t n_lb_routing;
    enum zt_lb_health lb_health;
    enum zt_ip_families ip_families;
    bool canonical;
    enum zt_visibility visibility;
    /* For traffic to the service's VIPs (zt_state_resolve_outbound): one of
     * weighted_waypoints in proportion to weight, else waypoint. */
    struct zt_gateway waypoint;
    struct zt_weighted_waypoint *weighted_waypoints;
    size_t n_weighted_waypoints;
};

struct zt_service *zt_service_new(void);
struct zt_service *zt_service_ref(struct zt_service *svc);
void zt_service_unref(struct zt_service *svc);
/* As zt_workload_clone, for a service. */
struct zt_service *zt_service_clone(const struct zt_service *svc);
/* Finds the port entry for service_port, or NULL. */
const struct zt_port_map *zt_service_find_port(const struct zt_service *svc, uint16_t port);

/* ---------------------------------------------------------------- policy */

enum zt_policy_scope {
    ZT_POLICY_GLOBAL = 0,
    ZT_POLICY_NAMESPACE = 1,
    ZT_POLICY_WORKLOAD_SELECTOR = 2,
};
enum zt_policy_action { ZT_POLICY_ALLOW = 0, ZT_POLICY_DENY = 1 };
enum zt_strmatch_kind {
    ZT_STRMATCH_EXACT = 0,
    ZT_STRMATCH_PREFIX = 1,
    ZT_STRMATCH_SUFFIX = 2,
    ZT_STRMATCH_PRESENCE = 3,
};

const char *zt_policy_scope_str(enum zt_policy_scope s);
const char *zt_policy_action_str(enum zt_policy_action a);

struct zt_strmatch {
    enum zt_strmatch_kind kind;
    char *value; /* NULL for PRESENCE */
};
struct zt_strmatch_list {
    struct zt_strmatch *v;
    size_t n;
};
struct zt_sa_match {
    char *namespace;
    char *service_account;
};
struct zt_sa_list {
    struct zt_sa_match *v;
    size_t n;
};
struct zt_cidr_list {
    struct zt_cidr *v;
    size_t n;
};
struct zt_port_list {
    uint32_t *v; /* wire is uint32; values > 65535 simply never match */
    size_t n;
};

/* One Match: every non-empty field group must pass. */
struct zt_policy_match {
    struct zt_strmatch_list namespaces, not_namespaces;
    struct zt_sa_list service_accounts, not_service_accounts;
    struct zt_strmatch_list principals, not_principals;
    struct zt_cidr_list source_ips, not_source_ips;
    struct zt_cidr_list destination_ips, not_destination_ips;
    struct zt_port_list destination_ports, not_destination_ports;
};

/* Clause: any match (OR). */
struct zt_policy_clause {
    struct zt_policy_match *matches;
    size_t n_matches;
};

/* Rule: all clauses (AND). */
struct zt_policy_rule {
    struct zt_policy_clause *clauses;
    size_t n_clauses;
};

struct zt_policy {
    atomic_uint refs;
    char *name;
    char *namespace;
    char *key; /* "ns/name", set by the builder */
    enum zt_policy_scope scope;
    enum zt_policy_action action;
    bool dry_run;
    struct zt_policy_rule *rules; /* policy: any rule (OR) */
    size_t n_rules;
};

struct zt_policy *zt_policy_new(void);
struct zt_policy *zt_policy_ref(struct zt_policy *p);
void zt_policy_unref(struct zt_policy *p);

/* ---------------------------------------------------------------- snapshot */

struct zt_state;
struct zt_state_builder;

/* Returns an empty snapshot (refs = 1). */
struct zt_state *zt_state_new_empty(void);
struct zt_state *zt_state_ref(const struct zt_state *s);
/* Drops one reference; the last one frees the snapshot. NULL is a no-op. */
void zt_state_unref(const struct zt_state *s);

/* Starts a builder. With base != NULL the builder starts from every object
 * of base (sharing them by reference; base is only borrowed); put/remove then
 * express a delta, which is how the xDS client makes the next snapshot. */
struct zt_state_builder *zt_state_builder_new(const struct zt_state *base);
/* Frees an unfinished builder and every object it holds. NULL is a no-op. */
void zt_state_builder_free(struct zt_state_builder *b);

/* add_* take ownership of the object (one reference). A key added twice is
 * an error reported by finish. put_* also take ownership but replace any
 * object with the same key (last one wins). remove_* delete by key ("uid",
 * "ns/hostname", "ns/name"); removing an unknown key is not an error. */
void zt_state_builder_add_workload(struct zt_state_builder *b, struct zt_workload *wl);
void zt_state_builder_add_service(struct zt_state_builder *b, struct zt_service *svc);
void zt_state_builder_add_policy(struct zt_state_builder *b, struct zt_policy *p);
void zt_state_builder_put_workload(struct zt_state_builder *b, struct zt_workload *wl);
void zt_state_builder_put_service(struct zt_state_builder *b, struct zt_service *svc);
void zt_state_builder_put_policy(struct zt_state_builder *b, struct zt_policy *p);
void zt_state_builder_remove_workload(struct zt_state_builder *b, const char *uid);
void zt_state_builder_remove_service(struct zt_state_builder *b, const char *key);
void zt_state_builder_remove_policy(struct zt_state_builder *b, const char *key);

/* Validates (defaults such as service_account, trust_domain, cluster_id and
 * NULL strings -> "" were applied by add/put), builds indexes and returns the snapshot in *out.
 * Always consumes the builder. Returns 0, or ZT_E_CONFIG with a reason in err
 * (e.g. "duplicate workload uid \"x\"", "workload with empty uid"). */
int zt_state_builder_finish(struct zt_state_builder *b, struct zt_state **out, char *err,
                            size_t errlen);

/* Lookups. Returned pointers are borrowed from the snapshot. */
const struct zt_workload *zt_state_workload_by_uid(const struct zt_state *s, const char *uid);
/* Workload owning (network, ip); HOST_NETWORK workloads are not indexed; on
 * collisions HBONE workloads win, then pods, then the lowest uid. */
const struct zt_workload *zt_state_workload_by_ip(const struct zt_state *s, const char *network,
                                                  const struct zt_ip *ip);
/* Service whose exact VIP is (network, ip). */
const struct zt_service *zt_state_service_by_vip(const struct zt_state *s, const char *network,
                                                 const struct zt_ip *ip);
/* Full VIP resolution of 9.3 for a client in namespace client_ns (NULL:
 * unknown client, no visibility filter): exact VIP (visible; client ns, then
 * canonical, then first), then CIDR VIPs (client ns, longer prefix,
 * canonical). */
const struct zt_service *zt_state_service_lookup(const struct zt_state *s, const char *network,
                                                 const struct zt_ip *ip, const char *client_ns);
/* The workload named name/namespace with that service account (NULL: any).
 * With node != NULL a workload on that node is preferred. */
const struct zt_workload *zt_state_workload_by_info(const struct zt_state *s, const char *name,
                                                    const char *namespace,
                                                    const char *service_account, const char *node);
const struct zt_service *zt_state_service_by_key(const struct zt_state *s, const char *key);
/* Every service whose hostname is `hostname` (ASCII case-insensitive, as
 * DNS names compare), in key order (so by namespace). Returns the count;
 * *out is borrowed from the snapshot. The first call on a snapshot sorts
 * its services (O(n log n), once; thread-safe), later ones are O(log n). */
size_t zt_state_services_by_hostname(const struct zt_state *s, const char *hostname,
                                     const struct zt_service *const **out);
const struct zt_policy *zt_state_policy_by_key(const struct zt_state *s, const char *key);

/* Iteration in key order; index < count. */
size_t zt_state_workload_count(const struct zt_state *s);
const struct zt_workload *zt_state_workload_at(const struct zt_state *s, size_t i);
size_t zt_state_service_count(const struct zt_state *s);
const struct zt_service *zt_state_service_at(const struct zt_state *s, size_t i);
size_t zt_state_policy_count(const struct zt_state *s);
const struct zt_policy *zt_state_policy_at(const struct zt_state *s, size_t i);

/* Endpoints of a service (workloads whose services map names it), in uid
 * order. Returns the count; *out borrowed from the snapshot. */
size_t zt_state_service_endpoints(const struct zt_state *s, const struct zt_service *svc,
                                  const struct zt_workload *const **out);

/* ---------------------------------------------------------------- derived */

/* A module above this one may attach a derived index to a snapshot (authz:
 * its policy index). The index is built from the snapshot by the first
 * caller of zt_state_derived() for its slot, exactly once (concurrent callers
 * wait for that build), is read-only from then on and is freed with the
 * snapshot. So it costs nothing for a snapshot nobody asks about, and a
 * module can keep its index without this module knowing its layout.
 *
 * An index may depend only on the snapshot's policies (their records and
 * order), never on its workloads or services: a snapshot finished from a
 * base with exactly the base's policy records (the same pointers, in the
 * same order) shares the base's indexes, already built or not, and the
 * last snapshot sharing them frees them. A one-workload change therefore
 * does not rebuild the policy index. The build function may keep pointers
 * into the policy records, which every sharing snapshot holds. */
enum zt_state_derived_slot {
    ZT_STATE_DERIVED_AUTHZ = 0,
    ZT_STATE_DERIVED_MAX,
};
/* Builds the index from s (borrowed); must not return NULL. */
typedef void *zt_state_derived_build_fn(const struct zt_state *s);
typedef void zt_state_derived_free_fn(void *index);

/* Returns the index in slot, calling build (then remembering free_fn, which
 * the last zt_state_unref() calls on it) if nobody built it yet. Every
 * caller of a slot must pass the same functions. The index is borrowed from
 * the snapshot. Thread-safe. */
const void *zt_state_derived(const struct zt_state *s, enum zt_state_derived_slot slot,
                             zt_state_derived_build_fn *build, zt_state_derived_free_fn *free_fn);

/* ---------------------------------------------------------------- LB */

/* Picks an endpoint of svc for a connection dialed to svc_port (section
 * 9.3): the service must define svc_port; an endpoint's target port is its
 * own mapping, else the service's target port, else (application tunnel) the
 * service port; unhealthy endpoints are skipped unless ALLOW_ALL; an
 * endpoint on another network than client's takes part only if it has a
 * network gateway (it is reached by double HBONE through it, with or
 * without an address of its own); one on client's network needs an address
 * of a family the service allows, or else a hostname (resolved when dialed);
 * STRICT/FAILOVER rank by routing preferences against client (NULL client:
 * every rank is 0, every network is the client's), so a leading NETWORK
 * preference keeps the local endpoints while one is healthy and fails over
 * to the other networks' when none is; the final choice is weighted by
 * capacity using random_value. Returns 0, or ZT_E_NOT_FOUND. */
int zt_state_pick_endpoint(const struct zt_state *s, const struct zt_service *svc,
                           uint16_t svc_port, const struct zt_workload *client,
                           uint32_t random_value, const struct zt_workload **out_wl,
                           uint16_t *out_target_port);

enum zt_upstream_kind {
    ZT_UPSTREAM_SERVICE = 0,     /* dst was a service VIP; endpoint picked */
    ZT_UPSTREAM_WORKLOAD = 1,    /* dst was a known workload IP */
    ZT_UPSTREAM_PASSTHROUGH = 2, /* unknown dst, or LB mode PASSTHROUGH */
    ZT_UPSTREAM_WAYPOINT = 3,    /* HBONE to the waypoint in front of dst */
};
const char *zt_upstream_kind_str(enum zt_upstream_kind k);

/* Why zt_state_resolve_outbound() found no upstream. */
enum zt_upstream_fail {
    ZT_UPSTREAM_FAIL_NONE = 0,
    ZT_UPSTREAM_FAIL_NO_ENDPOINT = 1,      /* service without a usable endpoint */
    ZT_UPSTREAM_FAIL_WAYPOINT_UNKNOWN = 2, /* the waypoint resolves to nothing dialable */
    ZT_UPSTREAM_FAIL_WAYPOINT_NETWORK = 3, /* waypoint on another network, unreachable */
    ZT_UPSTREAM_FAIL_NOT_SERVICE = 4,      /* upstream on another network, dst not a service */
    ZT_UPSTREAM_FAIL_GATEWAY_UNKNOWN = 5,  /* the network gateway resolves to nothing dialable */
};
/* A sentence for the access log, e.g. "no healthy upstream for the service". */
const char *zt_upstream_fail_str(enum zt_upstream_fail f);

/* Where an outbound connection goes. Pointers borrowed from the snapshot.
 *
 * WAYPOINT: wl is the waypoint's workload, ip:port its HBONE listener
 * (the GatewayAddress's hbone_mtls_port, or the waypoint service's target
 * port for it), and the CONNECT's :authority is the original destination
 * as dialed. svc is the service the client dialed (NULL when the
 * destination workload's own waypoint serves traffic to its pod IP); the
 * waypoint's own service only contributes its SANs. */
struct zt_upstream {
    enum zt_upstream_kind kind;
    const struct zt_service *svc; /* SERVICE, WAYPOINT (see above), PASSTHROUGH via a service */
    const struct zt_workload *wl; /* SERVICE, WORKLOAD and WAYPOINT */
    bool has_ip;                  /* unless needs_dns */
    /* SERVICE or WAYPOINT: the endpoint (the waypoint) has no address the
     * service allows, only a hostname (wl->hostname): resolve it and dial
     * what it resolves to (ip unset until then). */
    bool needs_dns;
    struct zt_ip ip; /* address to dial (PASSTHROUGH: the original dst) */
    uint16_t port;   /* target port (HBONE: port for :authority); WAYPOINT: see above */
    bool is_hbone;   /* HBONE to ip:15008 (WAYPOINT: ip:port), else plain TCP */
    /* Expected peer identities for HBONE: wl's identity
     * (zt_workload_identity) plus every SPIFFE string among these SANs. */
    char *const *sans;
    size_t n_sans;
    /* Double HBONE (wire facts 2.7): the upstream picked (final_wl, a
     * service endpoint or a service's waypoint) is on another network than
     * the client, and is reached through its network gateway. wl, ip, port
     * and sans above are then the gateway's: the outer HBONE tunnel (pooled)
     * goes to ip:port expecting the gateway's identity or one of sans (its
     * service's SANs); inside that CONNECT stream an inner HBONE tunnel
     * (never pooled) ends at final_wl, whose TLS server must present one of
     * final_sans and nothing else (no workload identity is added: for a
     * service endpoint they are svc's SANs, for a waypoint its own
     * service's, as Istio's ztunnel expects). Both CONNECTs ask for
     * svc->hostname:svc_port, svc_port being the port as dialed. */
    bool is_double_hbone;
    const struct zt_workload *final_wl;
    char *const *final_sans;
    size_t n_final_sans;
    uint16_t svc_port;
    enum zt_upstream_fail fail; /* set when the call fails */
};

/* Resolves (dst, dst_port) for client (borrowed, may be NULL; its network
 * and namespace scope the lookup) connecting from src_ip (may be NULL:
 * unknown), as Istio's ztunnel builds an outbound request (wire facts 8 and
 * 9.3):
 *  1. dst is a service VIP (visible to the client's namespace, and no
 *     workload's IP) whose service has a waypoint: WAYPOINT to it;
 *  2. else the upstream is picked (service endpoint, workload by IP or
 *     passthrough); if that is a workload with a waypoint, dst was not a
 *     service's VIP and the client is not one of that waypoint's own
 *     workloads (same identity and src_ip one of its addresses): WAYPOINT;
 *  3. else the upstream itself.
 * An upstream (endpoint or waypoint) on another network than the client's
 * is reached by double HBONE through its network gateway (is_double_hbone,
 * above), which needs service-addressed traffic and a gateway that
 * resolves: by IP, the service with that VIP on the gateway's network
 * (load-balanced on port hbone_mtls_port) or the workload with that IP,
 * dialed at ip:hbone_mtls_port; by hostname, the service (the same way) or
 * else a workload with that hostname, at hbone_mtls_port. Anything less
 * fails the call, never falling back to a direct connection.
 * A waypoint is never bypassed: one that resolves to nothing dialable, or
 * to a workload on another network that double HBONE cannot reach, fails
 * the call. random_value drives every random choice (weighted waypoint,
 * endpoints, gateway). Returns 0, or ZT_E_NOT_FOUND with out->fail saying
 * why (out->svc is then still the dialed service, if any). */
/* For an endpoint wl of svc (the port dialed svc_port, wl's target port
 * port) picked by zt_state_pick_endpoint on another network than client:
 * the double HBONE plan through wl's network gateway, as
 * zt_state_resolve_outbound makes it (is_double_hbone, gateway in wl, ip,
 * port and sans, final_wl = wl, final_sans = svc's SANs). Only
 * service-addressed traffic crosses networks: svc NULL fails. The gateway
 * address prefers client's first address's family. Returns 0, or
 * ZT_E_NOT_FOUND with out->fail set. */
int zt_state_plan_through_gateway(const struct zt_state *s, const struct zt_workload *client,
                                  const struct zt_service *svc, uint16_t svc_port,
                                  const struct zt_workload *wl, uint16_t port,
                                  uint32_t random_value, struct zt_upstream *out);

/* Whether self, which accepted an HBONE connection on `accepted`, is the
 * waypoint of the connection's target (network, target): the workload
 * with that IP, else the service with that VIP, names a waypoint that is
 * self (a workload owning `accepted`, or a service self is an endpoint
 * of). Istio's ztunnel then admits the foreign target: a sandwiched
 * waypoint without an application tunnel. */
bool zt_state_is_waypoint_for(const struct zt_state *s, const char *network,
                              const struct zt_ip *target, const struct zt_workload *self,
                              const struct zt_ip *accepted);
/* Whether waypoint reference gw (may be NULL or NONE: false) names self,
 * which accepted a connection on `accepted`: the workload gw names owns
 * that address, or self is an endpoint of the service gw names. */
bool zt_state_gateway_is_self(const struct zt_state *s, const struct zt_gateway *gw,
                              const struct zt_workload *self, const struct zt_ip *accepted);

int zt_state_resolve_outbound(const struct zt_state *s, const struct zt_workload *client,
                              const struct zt_ip *src_ip, const struct zt_ip *dst,
                              uint16_t dst_port, uint32_t random_value, struct zt_upstream *out);

#endif
