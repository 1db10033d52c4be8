/* Delta ADS protocol engine (section 3.1 of istio-wire-facts), sans-I/O.
 *
 * The engine speaks DeltaAggregatedResources in terms of the plain C structs
 * below; the gRPC transport maps them to and from DeltaDiscoveryRequest /
 * DeltaDiscoveryResponse and owns the stream, the node and the timers. The
 * owner (the xDS client) turns resource bytes into state objects through
 * struct zt_ads_ops; the engine decides what to ACK or NACK, builds the next
 * snapshot, and tells the transport what to send and how long to back off.
 *
 * Typical use by the transport:
 *
 *   a = zt_ads_new(&ops, ud, current_state);
 *   on connect:      zt_ads_stream_started(a); drain();
 *   on a response:   zt_ads_on_response(a, &resp); drain();
 *   on stream end:   zt_ads_stream_ended(a, status, msg, &ms); reconnect in ms
 *   drain():         while (zt_ads_next_request(a, &req)) encode_and_send(&req);
 *
 * Semantics:
 * - Address and Authorization are subscribed at stream start, Address
 *   first, as wildcard (no names); then our own types (Route, xds/routes.h;
 *   AuthorizationPolicy, RequestAuthentication and RateLimit,
 *   xds/policies.h), the
 *   "kept" types, each when the owner takes it (ops->wants_kept: a
 *   waypoint). The first request of each type on a stream carries the
 *   node.
 * - Every response is answered by exactly one request of its type carrying
 *   its nonce: an ACK, or a NACK whose error_message is
 *   "<name>: <reason>; <name>: <reason>" (capped at ZT_ADS_MAX_ERROR bytes,
 *   then "; ... (N more)").
 * - Resources are applied one by one into ONE builder started from the
 *   current snapshot; a rejected resource is left out (NACKed) while the
 *   others and every removal are applied and published (partial acceptance).
 *   A resource rejected after an earlier version was accepted keeps that
 *   earlier version, in state and in the engine's name->version map.
 * - A name appearing twice in one response: the first occurrence is applied,
 *   later ones are rejected ("duplicate resource in response"). A name both
 *   updated and removed in one response ends up removed (updates are applied
 *   before removals).
 * - On reconnect, initial_resource_versions lists every resource accepted so
 *   far (name -> version); resources never accepted are absent so that istiod
 *   sends them again; removed names drop out.
 * - A response whose type_url is not one of ours is ACKed and changes
 *   nothing (zt_ads_on_response returns ZT_E_PROTO so the transport can log
 *   it): what Istio's ztunnel does, so that an istiod sending a type we do
 *   not know yet is not told the configuration was refused.
 * - Readiness: ops->ready fires once, when Address and Authorization have
 *   each had an ACKed response (a NACKed response does not count, even if
 *   parts applied). Kept types never gate it: istiod does not serve them.
 * - Resources of a kept type are not state objects: they go to
 *   ops->apply_kept / remove_kept one by one with the same checks, NACKs,
 *   partial acceptance and name->version bookkeeping, then ops->kept_done
 *   once per response that changed anything; nothing is published.
 *
 * Threading: one engine belongs to one loop; nothing here is thread-safe. */
#ifndef ZT_XDS_ADS_H
#define ZT_XDS_ADS_H

#include "state/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps on peer input. */
#define ZT_ADS_MAX_RESOURCES 1000000 /* per type, and per response */
#define ZT_ADS_MAX_NAME 4096         /* bytes in a resource name */
#define ZT_ADS_MAX_VERSION 1024      /* bytes in a resource version */
#define ZT_ADS_MAX_ERROR 4096        /* bytes in a NACK message, NUL included */
#define ZT_ADS_MAX_PENDING 1024      /* queued, unsent requests */

/* Backoff (milliseconds). */
#define ZT_ADS_BACKOFF_INITIAL_MS 10
#define ZT_ADS_BACKOFF_MAX_MS 15000

/* gRPC status codes stream_ended distinguishes; ZT_ADS_CONNECT_FAILED stands
 * for "no gRPC status at all" (connect, TLS or HTTP/2 failure). */
#define ZT_ADS_CONNECT_FAILED (-1)
#define ZT_ADS_GRPC_OK 0
#define ZT_ADS_GRPC_CANCELLED 1
#define ZT_ADS_GRPC_UNKNOWN 2
#define ZT_ADS_GRPC_DEADLINE_EXCEEDED 4
#define ZT_ADS_GRPC_UNAVAILABLE 14

/* Resource types, in subscription order. Those after ZT_ADS_AUTHORIZATION
 * are ours, "kept" by the owner rather than put into the state. */
enum zt_ads_type {
    ZT_ADS_ADDRESS,
    ZT_ADS_AUTHORIZATION,
    ZT_ADS_ROUTE,
    ZT_ADS_AUTHZ_POLICY,
    ZT_ADS_AUTHN_POLICY,
    ZT_ADS_RATELIMIT,
    ZT_ADS_NTYPES
};
#define ZT_ADS_FIRST_KEPT ZT_ADS_ROUTE

/* "type.googleapis.com/istio.workload.Address",
 * "type.googleapis.com/istio.security.Authorization",
 * "type.googleapis.com/ztunnel.routes.v1.Route",
 * "type.googleapis.com/ztunnel.policy.v1.AuthorizationPolicy",
 * "type.googleapis.com/ztunnel.policy.v1.RequestAuthentication" or
 * "type.googleapis.com/ztunnel.policy.v1.RateLimit"; "" for anything
 * else. */
const char *zt_ads_type_url(enum zt_ads_type t);
/* The type for a type_url, or ZT_ADS_NTYPES if unknown (NULL included). */
enum zt_ads_type zt_ads_type_from_url(const char *type_url);

/* One Resource of a response. Everything is borrowed from the transport for
 * the duration of zt_ads_on_response(). version may be NULL (""). */
struct zt_ads_resource {
    const char *name;
    const char *version;
    const uint8_t *value; /* the Any's value bytes (type already checked) */
    size_t value_len;
};

/* A DeltaDiscoveryResponse. Borrowed for the duration of the call; NULL
 * strings are treated as "". */
struct zt_ads_response {
    const char *type_url;
    const char *nonce;
    const char *system_version_info;
    const struct zt_ads_resource *resources;
    size_t n_resources;
    const char *const *removed;
    size_t n_removed;
};

/* A DeltaDiscoveryRequest to send. Every pointer is owned by the engine and
 * stays valid until the next call of any zt_ads_* function on that engine:
 * encode it before calling back in. */
struct zt_ads_request {
    enum zt_ads_type type;      /* ZT_ADS_NTYPES for the NACK of an unknown type */
    const char *type_url;       /* always set; the response's type_url if unknown */
    bool include_node;          /* first request of this type on this stream */
    const char *response_nonce; /* NULL: initial (subscribe) request */
    const char *error_message;  /* NULL: ACK (or initial); else NACK */
    /* initial_resource_versions, sorted by name; only on initial requests. */
    const char *const *initial_names;
    const char *const *initial_versions;
    size_t n_initial;
};

/* Callbacks into the owner. */
struct zt_ads_ops {
    /* Decodes r->value and puts the object into b (b takes ownership as
     * usual). Returns 0, or a negative error with a short reason in err
     * (errlen bytes, NUL-terminated); on error b must be left unchanged. */
    int (*apply)(void *ud, enum zt_ads_type t, struct zt_state_builder *b,
                 const struct zt_ads_resource *r, char *err, size_t errlen);
    /* Removes the object called name (borrowed) from b; unknown names are
     * fine. During apply and remove, zt_ads_snapshot() is the snapshot b
     * started from (e.g. for zt_xds_remove_address's base). */
    void (*remove)(void *ud, enum zt_ads_type t, struct zt_state_builder *b, const char *name);
    /* A new snapshot; the owner takes one reference (the engine keeps its
     * own as the base of the next builder). */
    void (*publish)(void *ud, struct zt_state *state);
    /* Address and Authorization have had an ACKed response. Called once
     * per engine. May be NULL. */
    void (*ready)(void *ud);
    /* Kept types (t >= ZT_ADS_FIRST_KEPT). wants_kept NULL, or false for
     * t: not subscribed (then the others may be NULL too). apply_kept
     * decodes r and keeps it, replacing the owner's resource of that type
     * and name only on success (0, or a negative error with a short reason
     * in err); remove_kept forgets name (borrowed; unknown names are fine);
     * kept_done runs once after a response that applied or removed any. */
    bool (*wants_kept)(void *ud, enum zt_ads_type t);
    int (*apply_kept)(void *ud, enum zt_ads_type t, const struct zt_ads_resource *r, char *err,
                      size_t errlen);
    void (*remove_kept)(void *ud, enum zt_ads_type t, const char *name);
    void (*kept_done)(void *ud, enum zt_ads_type t);
};

enum zt_ads_stream_state {
    ZT_ADS_ST_IDLE = 0,  /* no stream: before the first, or between streams */
    ZT_ADS_ST_STREAMING, /* stream_started called, stream_ended not yet */
};
const char *zt_ads_stream_state_str(enum zt_ads_stream_state s);

struct zt_ads;

/* Creates an engine. ops is borrowed and must outlive the engine; ud is
 * passed back verbatim. initial (borrowed, may be NULL = empty) is the base
 * of the first builder; the engine takes its own reference. Never NULL. */
struct zt_ads *zt_ads_new(const struct zt_ads_ops *ops, void *ud, const struct zt_state *initial);
/* Frees the engine, its maps and queued requests. NULL is a no-op. */
void zt_ads_free(struct zt_ads *a);

/* A new stream is open: drops anything still queued from an earlier stream
 * and queues the initial request of each type, in subscription order, each
 * with the node and the accepted name->version map of its type. */
void zt_ads_stream_started(struct zt_ads *a);

/* Pops the next request to send into *out (see the struct for lifetimes).
 * Returns false when nothing is queued or no stream is open. */
bool zt_ads_next_request(struct zt_ads *a, struct zt_ads_request *out);

/* Handles one response: applies it, publishes the new snapshot through
 * ops->publish when anything was applied or removed, queues its ACK or NACK,
 * and may call ops->ready. Callbacks run inside this call and may only use
 * the const queries (no free, no stream_ended: defer those). Returns 0 when the
 * response was handled (an ACK or NACK is queued), ZT_E_PROTO for an unknown
 * type_url (NACK queued, nothing applied), ZT_E_TOO_BIG when the response
 * holds more than ZT_ADS_MAX_RESOURCES resources or removals (NACK queued,
 * nothing applied) or when ZT_ADS_MAX_PENDING requests are already queued
 * (nothing queued: the transport did not drain; end the stream), ZT_E_CLOSED
 * when no stream is open. */
int zt_ads_on_response(struct zt_ads *a, const struct zt_ads_response *r);

/* The stream ended with grpc_status (ZT_ADS_GRPC_* or any gRPC code, or
 * ZT_ADS_CONNECT_FAILED) and message (borrowed, may be NULL). Drops queued
 * requests and writes the delay before reconnecting to *retry_after_ms:
 * 10 ms after a benign termination (OK, CANCELLED, UNKNOWN,
 * DEADLINE_EXCEEDED, UNAVAILABLE containing "transport is closing" or
 * "received prior goaway"), otherwise 10 ms doubling on each consecutive
 * failure up to 15 s. A stream that handled a response of a known type resets
 * the doubling. Accepted resources, the snapshot and readiness persist. */
void zt_ads_stream_ended(struct zt_ads *a, int grpc_status, const char *message,
                         uint64_t *retry_after_ms);

/* How an attempt ended, in the terms of Istio's ztunnel's
 * istio_xds_connection_terminations_total reasons. */
enum zt_ads_end {
    ZT_ADS_END_CONNECTION_ERROR, /* ZT_ADS_CONNECT_FAILED: no stream */
    ZT_ADS_END_ERROR,            /* any other status stream_ended backs off for */
    ZT_ADS_END_RECONNECT,        /* a benign status other than OK (see above) */
    ZT_ADS_END_COMPLETE          /* OK */
};
/* The reason for what stream_ended is told (same arguments; pure). */
enum zt_ads_end zt_ads_end_reason(int grpc_status, const char *message);
/* "ConnectionError", "Error", "Reconnect", "Complete"; "?" otherwise. */
const char *zt_ads_end_str(enum zt_ads_end e);

/* The bytes istio_xds_message_bytes_total counts for a response: the sum of
 * its resources' Any payload sizes, as Istio's ztunnel. */
uint64_t zt_ads_response_bytes(const struct zt_ads_response *r);

enum zt_ads_stream_state zt_ads_state(const struct zt_ads *a);
bool zt_ads_is_ready(const struct zt_ads *a);
/* Resources of type t currently accepted (the name->version map's size). */
size_t zt_ads_resource_count(const struct zt_ads *a, enum zt_ads_type t);
/* The accepted version of name, or NULL. Borrowed until the next call. */
const char *zt_ads_resource_version(const struct zt_ads *a, enum zt_ads_type t, const char *name);
/* The engine's current snapshot (borrowed; zt_state_ref() to keep it). */
const struct zt_state *zt_ads_snapshot(const struct zt_ads *a);

#endif
