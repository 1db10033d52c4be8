/* RequestMirror (mirror.c), private to src/waypoint: what a session calls
 * per request (from http.c; the same for any protocol that has a decoded
 * head and body bytes) and what the worker calls (waypoint.c). */
#ifndef ZT_WAYPOINT_MIRROR_H
#define ZT_WAYPOINT_MIRROR_H

#include "waypoint/waypoint_int.h"

/* Fire and forget. Protocol-neutral: a request
 * head as forwarded (req, borrowed for the call, after the request
 * filters) and its body's payload bytes; the copies go with the
 * authority's "-shadow" suffix, as HTTP/1.1 with a Content-Length
 * (wp_mirror_begin) or as HTTP/2 cleartext with the request's trailers
 * (wp_mirror_begin_h2: for h2c and gRPC, whose mirror service speaks
 * what the primary speaks). A body past
 * WP_MIRROR_BODY_MAX abandons the mirror. The handle is the caller's until
 * wp_mirror_end or wp_mirror_abandon, which set it to NULL; body and end
 * take a NULL handle (no mirror) too.
 *
 * wp_mirror_begin: the mirror of the rule's filters f that hit, with an
 * endpoint of each backend (svc_port: the port when the backendRef names
 * none) in snap (referenced), or NULL (none hit, no endpoint, over the
 * worker's cap, draining). */
#define WP_MIRROR_BODY_MAX (64 * 1024)
struct wp_mirror;
struct wp_mirror *wp_mirror_begin(struct wp_worker *w, struct zt_pod_inst *pod,
                                  const struct zt_state *snap, const struct zt_route_filters *f,
                                  uint16_t svc_port, const struct zt_http_head *req);
struct wp_mirror *wp_mirror_begin_h2(struct wp_worker *w, struct zt_pod_inst *pod,
                                     const struct zt_state *snap, const struct zt_route_filters *f,
                                     uint16_t svc_port, const struct zt_http_head *req);
void wp_mirror_body(struct wp_mirror **m, const void *data, size_t len);
/* The request's trailers (t borrowed), before wp_mirror_end; HTTP/1.1
 * copies carry none. Past the head's caps the mirror is abandoned. */
void wp_mirror_trailers(struct wp_mirror **m, const struct zt_http_head *t);
/* The request is whole: a copy goes to each target now. */
void wp_mirror_end(struct wp_mirror **m);
void wp_mirror_abandon(struct wp_mirror **m);
/* Envoy's shadow host: "-shadow" before the port ("a:80" -> "a-shadow:80").
 * 0, or ZT_E_TOO_BIG if out (cap bytes) is too small. */
int wp_mirror_shadow_host(const char *host, char *out, size_t cap);
/* The worker's calls: copies of pod closed now; all closed (drain); the
 * ones past their timeout closed; ended ones freed (a safe point); all
 * freed at the worker's stop. */
void wp_mirrors_pod_close(struct wp_worker *w, struct zt_pod_inst *pod);
void wp_mirrors_drain(struct wp_worker *w);
void wp_mirrors_tick(struct wp_worker *w, uint64_t now);
void wp_mirrors_reap(struct wp_worker *w);
void wp_mirrors_stop(struct wp_worker *w);

#endif
