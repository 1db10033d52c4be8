/* A directory of local config files merged into one snapshot.
 *
 * `ztunnel control` serves the workloads, services and policies described by
 * a directory of YAML files, each in the schema of config/local.h (the
 * LOCAL_XDS_PATH schema). This module reads them all and merges them into
 * one struct zt_state. It does no logging and keeps no state.
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

#endif
