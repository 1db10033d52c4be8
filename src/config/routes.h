/* Kubernetes HTTPRoute and GRPCRoute documents into a route table builder
 * (route/route.h).
 *
 * Accepted: kind HTTPRoute with apiVersion gateway.networking.k8s.io/v1 or
 * v1beta1, kind GRPCRoute with v1 or v1alpha2, as users write them (one
 * file may hold many documents separated by "---", or a kind: List). Other
 * kinds are skipped silently: the config dir loader hands every document
 * here and handles the kinds it knows itself.
 *
 * Errors never take a configuration down: an invalid route is left out and
 * one entry is appended to errs, "<file>:<line>: <kind> <ns>/<name>: <field
 * path>: <why>" (field path like spec.rules[0].matches[1].path.type; the
 * first problem of an object is reported). Unknown fields, unsupported
 * parentRef or backendRef kinds and ignored values are warnings in the same
 * list; the route still loads. The caller logs the list.
 *
 * Ownership: b and errs are borrowed for the call (errs' entries stay in it
 * for the caller to free with zt_route_errors_cleanup); strings are copied. */
#ifndef ZT_CONFIG_ROUTES_H
#define ZT_CONFIG_ROUTES_H

#include "route/route.h"

#include <stddef.h>

/* One document's root node of config/'s YAML trees (local_int.h). */
struct ynode;

/* Reads the route object in doc (a mapping; anything else is skipped) into
 * *out (zeroed first; owned by the caller on success). Returns 0 with
 * out->name set for a route, 0 with *out zeroed for a document that is not
 * a route, or ZT_E_CONFIG when it was rejected (the reason appended to
 * errs, *out zeroed). */
int zt_config_routes_parse_doc(const char *file, const struct ynode *doc,
                               struct zt_route_errors *errs, struct zt_route_def *out);

/* Adds the route object in doc (a mapping; anything else is skipped) to b.
 * Returns 0 when it was added or is not a route, ZT_E_CONFIG when it was
 * rejected (the reason appended to errs). */
int zt_config_routes_add_doc(struct zt_route_builder *b, const char *file, const struct ynode *doc,
                             struct zt_route_errors *errs);

/* Calls fn(ud, file, doc, errs) for every object of yaml[0..len): each
 * document's root, or each item of a kind: List (doc borrowed for the
 * call; anything may be passed, fn skips what is not a route). Returns
 * as zt_config_routes_load_string. */
typedef void zt_config_routes_doc_fn(void *ud, const char *file, const struct ynode *doc,
                                     struct zt_route_errors *errs);
int zt_config_routes_each(const char *file, const char *yaml, size_t len,
                          struct zt_route_errors *errs, zt_config_routes_doc_fn *fn, void *ud);

/* Every document of yaml[0..len) (file names it in messages). Returns 0, or
 * ZT_E_CONFIG for a YAML syntax error (documents before it are added, the
 * message is appended to errs), or ZT_E_TOO_BIG past
 * ZT_CONFIG_LOCAL_MAX_BYTES. Invalid objects do not make it fail. */
int zt_config_routes_load_string(struct zt_route_builder *b, const char *file, const char *yaml,
                                 size_t len, struct zt_route_errors *errs);
/* The same for a file; -errno if it cannot be read (message in errs). */
int zt_config_routes_load_file(struct zt_route_builder *b, const char *path,
                               struct zt_route_errors *errs);

#endif
