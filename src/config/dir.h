/* A directory of local config files merged into one snapshot.
 *
 * `ztunnel control` serves the workloads, services and policies described by
 * a directory of YAML files, each in the schema of config/local.h (the
 * LOCAL_XDS_PATH schema). This module reads them all and merges them into
 * one struct zt_state. It does no logging.
 *
 * zt_config_dir_load reads a directory once. A struct zt_config_dir is a
 * directory read again and again (the control plane's watched directory):
 * it remembers each file's objects and identity (device, inode, size,
 * modification and change times), so a reload reads and parses only the
 * files that changed, and the new snapshot is the previous one with the
 * objects of those files replaced (every other record shared, see
 * state.h's builder). A one-workload edit in one file of a large directory
 * costs that file, not the directory.
 *
 * Which files: every entry directly in dir whose name ends in ".yaml" or
 * ".yml" and that is (or is a symlink to) a regular file. Dotfiles
 * (".a.yaml", ".#a.yaml", Kubernetes' "..data"), editor leftovers
 * ("a.yaml~", ".a.yaml.swp", "#a.yaml#"), subdirectories and other entries
 * are skipped. Files are loaded in byte-wise sorted name order.
 *
 * Merging: a key defined in two files (workload uid, service
 * "ns/hostname", policy "ns/name") is an error; objects are otherwise taken
 * as they are. Cross-file references (a workload naming a service or policy
 * of another file) are fine.
 *
 * Waypoints from Kubernetes objects (config/k8s.h): a Gateway, a Namespace
 * label or an object's label in one file may set the waypoint of objects of
 * another, so those fields are derived on the merged directory at every
 * reload, from every file's Kubernetes facts; their errors name the file
 * and line of the label ("<dir>/a.yaml:7: service \"ns/h\":
 * istio.io/use-waypoint: no Gateway ns/wp ..."), and a Gateway or Namespace
 * declared in two files is an error naming both.
 *
 * Error messages (written to err, errlen bytes, NUL-terminated) name the
 * file as "<dir>/<name>":
 * - a file's own error, as config/local.h reports it:
 *   "<dir>/a.yaml:7: workloads[1].protocol: bad value ..." (ZT_E_CONFIG or
 *   ZT_E_TOO_BIG);
 * - a duplicate key across files (ZT_E_CONFIG):
 *   "<dir>/b.yaml: workloads: uid \"x\" already defined in <dir>/a.yaml"
 *   (likewise "services: service \"ns/host\"", "policies: policy \"ns/n\"");
 * - the merged snapshot rejected by the state builder (ZT_E_CONFIG or
 *   ZT_E_TOO_BIG): "<dir>: merged directory: <reason>";
 * - the directory itself missing or unreadable (-errno): "<dir>: <reason>";
 * - one file unreadable (-errno): "<dir>/<name>: <reason>";
 * - more than ZT_CONFIG_DIR_MAX_FILES files, or more than
 *   ZT_CONFIG_LOCAL_MAX_BYTES bytes in all files together (ZT_E_TOO_BIG):
 *   "<dir>: ...". */
#ifndef ZT_CONFIG_DIR_H
#define ZT_CONFIG_DIR_H

#include "authz/l7.h"
#include "jwt/authn.h"
#include "ratelimit/ratelimit.h"
#include "route/route.h"
#include "state/state.h"

#include <stddef.h>

/* Most config files read from one directory. */
#define ZT_CONFIG_DIR_MAX_FILES 10000

/* Loads and merges the config files of dir (borrowed). On success returns 0
 * and *out is a new snapshot (one reference, owned by the caller); an empty
 * directory (or one with no config file) gives an empty snapshot. On
 * failure *out is NULL and the error (see above) is returned with its
 * message in err. */
int zt_config_dir_load(const char *dir, struct zt_state **out, char *err, size_t errlen);

struct zt_config_dir;

/* A directory to load repeatedly; nothing is read yet. dir is copied.
 * Never NULL. */
struct zt_config_dir *zt_config_dir_new(const char *dir);
/* NULL is a no-op. */
void zt_config_dir_free(struct zt_config_dir *d);

/* Loads the directory again, with the result and errors of
 * zt_config_dir_load. A file whose name and identity are those of the last
 * successful reload is not read: its objects are taken as they were. On
 * success *out is a new snapshot (one reference, owned by the caller),
 * built on the last successful one. On failure *out is NULL and d is as
 * before the call (the next reload compares with the last good files). */
int zt_config_dir_reload(struct zt_config_dir *d, struct zt_state **out, char *err, size_t errlen);

/* Files the last reload read and parsed (0 when nothing changed). */
size_t zt_config_dir_files_read(const struct zt_config_dir *d);

/* Remarks of the last successful reload worth a warning, one per line
 * ("<dir>/<name>:<line>: ..."), e.g. a Gateway of a class other than
 * istio-waypoint skipped; "" when none. Valid until the next reload. */
const char *zt_config_dir_notes(const struct zt_config_dir *d);

/* The HTTPRoute and GRPCRoute objects of the last successful reload
 * (config/routes.h reads them), in file order, into *out; returns how many.
 * A route that does not read is left out and is one line of the notes
 * ("<dir>/<name>:<line>: HTTPRoute ns/name: spec.rules[0]...: why (route
 * left out)"); so is a second route of one kind, namespace and name (the
 * first file in name order keeps it). Borrowed from d until the next
 * reload. */
size_t zt_config_dir_routes(const struct zt_config_dir *d, const struct zt_route_def *const **out);

/* The same for the AuthorizationPolicy and RequestAuthentication objects
 * that attach to waypoints (config/authz.h, authn.h read them; selector
 * and namespace-wide ones are not for waypoints and are not here): one
 * that does not read is a note ("<dir>/<name>:<line>: AuthorizationPolicy
 * ns/name: spec.rules[0]...: why (policy left out)"), and so is a second
 * one of the same kind, namespace and name. Borrowed from d until the next
 * reload. */
size_t zt_config_dir_authz(const struct zt_config_dir *d,
                           const struct zt_authz_l7_policy *const **out);
size_t zt_config_dir_authn(const struct zt_config_dir *d,
                           const struct zt_jwt_authn_policy *const **out);
/* The same for RateLimit objects (config/ratelimit.h; our own kind,
 * ratelimit.ztunnel-c.io/v1alpha1): "... RateLimit ns/name: spec.limit...:
 * why (policy left out)", a duplicate noted as the others. */
size_t zt_config_dir_ratelimits(const struct zt_config_dir *d,
                                const struct zt_ratelimit_policy *const **out);

#endif
