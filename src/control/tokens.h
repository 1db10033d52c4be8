/* Node tokens of `ztunnel control` (--node-tokens FILE): one line per node,
 * "NODE_NAME TOKEN", separated by spaces or tabs; blank lines and lines
 * starting with '#' are ignored. A proxy proves which node it runs on by
 * sending its node's token as `authorization: Bearer TOKEN`.
 *
 * The file is read again whenever its size, mtime or inode changes (checked
 * on each lookup), so tokens can be added or revoked without a restart; a
 * file that no longer parses is refused and the last good table stays. A
 * deleted file means no tokens at all until one is back. */
#ifndef ZT_CONTROL_TOKENS_H
#define ZT_CONTROL_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Caps: a node name is a Kubernetes node name (DNS subdomain). */
#define ZT_CONTROL_NODE_MAX 253
#define ZT_CONTROL_TOKEN_MAX 4096
#define ZT_CONTROL_TOKENS_MAX_LINES 100000
#define ZT_CONTROL_TOKENS_MIN_LEN 16

struct zt_control_tokens;

/* Parses text (len bytes, borrowed); `name` is used in messages. Returns 0
 * and *out (caller frees with zt_control_tokens_free), or ZT_E_CONFIG with
 * "<name>:<line>: <reason>" in err. Refused: a line without exactly two
 * fields, a token shorter than ZT_CONTROL_TOKENS_MIN_LEN bytes or longer
 * than ZT_CONTROL_TOKEN_MAX, a node name that is not a DNS subdomain, the
 * same token given to two nodes (a token must name one node), more than
 * ZT_CONTROL_TOKENS_MAX_LINES lines, and a file without any token. */
int zt_control_tokens_parse(const char *name, const char *text, size_t len,
                            struct zt_control_tokens **out, char *err, size_t errlen);

/* Reads and parses path (kept for later reloads). Returns 0, -errno with
 * "<path>: <reason>", or the parse errors. */
int zt_control_tokens_load(const char *path, struct zt_control_tokens **out, char *err,
                           size_t errlen);

/* The node the bearer token belongs to (borrowed, valid until the next
 * call), or NULL. `token` need not be NUL-terminated. The comparison time
 * does not depend on how much of a token matches. When the table was loaded
 * from a file that has changed since, the file is read first; a read or
 * parse failure is logged and the previous table is used, but a file that
 * no longer exists empties the table. */
const char *zt_control_tokens_node(struct zt_control_tokens *t, const char *token, size_t len);

/* Size of a token digest. */
#define ZT_CONTROL_TOKEN_DIGEST 32

/* As zt_control_tokens_node, and writes the SHA-256 of the offered token
 * to digest (when not NULL) so that the caller can later check that the
 * token is still valid (zt_control_tokens_node_by_digest). */
const char *zt_control_tokens_lookup(struct zt_control_tokens *t, const char *token, size_t len,
                                     unsigned char digest[ZT_CONTROL_TOKEN_DIGEST]);

/* The node of the token with this digest in the current table (borrowed,
 * valid until the next call that may reload), or NULL. Does not reload. */
const char *zt_control_tokens_node_by_digest(const struct zt_control_tokens *t,
                                             const unsigned char digest[ZT_CONTROL_TOKEN_DIGEST]);

/* Reads the file again if it changed (as a lookup does). Returns a counter
 * that changes whenever the table does (reloaded or emptied), so a caller
 * can tell when to check the tokens it accepted earlier. */
unsigned long zt_control_tokens_refresh(struct zt_control_tokens *t);

/* Number of tokens in the table. */
size_t zt_control_tokens_count(const struct zt_control_tokens *t);

void zt_control_tokens_free(struct zt_control_tokens *t); /* NULL-safe */

#endif
