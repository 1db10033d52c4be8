/* The route table as the waypoint's /config_dump shows it: every route
 * object in force in Gateway API terms (kind, namespace/name, parentRefs,
 * hostnames, rules with matches, filters, backendRefs with weights,
 * timeouts, retry) and how many objects the loader left out:
 *
 *   {"routes": [{"kind": "HTTPRoute", "namespace": ..., "name": ...,
 *                "parentRefs": [...], "hostnames": [...], "rules": [...]}],
 *    "leftOut": 0}
 *
 * Every string is escaped by jansson; bytes that are not UTF-8 are shown
 * as \xNN text, so the document stays valid JSON whatever a route holds. */
#ifndef ZT_ROUTE_DUMP_H
#define ZT_ROUTE_DUMP_H

#include "route/route.h"

#include <jansson.h>

/* A JSON string for s (NULL: ""); bytes that are not valid UTF-8 become
 * "\xNN" text (all non-ASCII bytes then, to keep it simple and lossless
 * to the eye). A new reference; out of memory aborts. */
json_t *zt_json_str(const char *s);

/* t borrowed (NULL: no routes). A new reference; out of memory aborts. */
json_t *zt_route_table_dump(const struct zt_route_table *t);

#endif
