/* Small pieces shared by the commands in src/cmd/. */
#ifndef ZT_CMD_COMMON_H
#define ZT_CMD_COMMON_H

#include <stdbool.h>

/* The value of environment variable `name`, or `def` when unset or empty. */
const char *zt_cmd_env_or(const char *name, const char *def);

/* A boolean environment variable as the proxy's settings read them: true/1
 * or false/0 (case-insensitive), `def` when unset or empty. Returns 0, or 2
 * after printing "ztunnel <prog>: NAME=...: expected true or false". */
int zt_cmd_env_bool(const char *prog, const char *name, bool def, bool *out);

/* Logging as the proxy's: LOG_FORMAT=json, level from RUST_LOG (its bare
 * level; "info,target=debug" reads as info) or LOG_LEVEL. Returns 0, or 2
 * after printing "ztunnel <prog>: ..." to stderr for a bad level. */
int zt_cmd_setup_logging(const char *prog);

/* Raises the soft open-file limit (RLIMIT_NOFILE) to the hard limit, as
 * Istio's ztunnel does at start: a proxy holds two or more descriptors per
 * connection, and the usual soft default (1024) runs out long before memory
 * or CPU. Logs the change under `scope`, or why it failed (start-up goes
 * on with the old limit). Returns 0 or -errno. */
int zt_cmd_raise_nofile(const char *scope);

#endif
