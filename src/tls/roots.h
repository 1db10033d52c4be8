/* Control-plane client contexts that follow their root file.
 *
 * XDS_ROOT_CA and CA_ROOT_CA are usually a mounted ConfigMap that
 * Kubernetes replaces when the mesh roots rotate (a new directory and an
 * atomic swap of a symlink). A zt_tls_roots holds the client context of
 * zt_tls_server_auth_ctx_new() built from the file's current content. Its
 * owner calls zt_tls_roots_refresh() before each new connection, which
 * reads the file again when its inode, size or modification time changed
 * (the way the control plane follows its token file): new connections use
 * the new roots, connections already up keep theirs. A file that cannot be
 * read or holds no certificate, or a damaged one, is refused and the
 * roots last loaded stay in use. "SYSTEM" (the OS roots) is never re-read.
 *
 * One owner thread; not thread-safe. */
#ifndef ZT_TLS_ROOTS_H
#define ZT_TLS_ROOTS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* Largest root file read, and most certificates taken from it. */
#define ZT_TLS_ROOTS_FILE_MAX (1u << 20)
#define ZT_TLS_ROOTS_MAX 100

struct zt_tls_roots;

/* Loads `root_ca` (a PEM file path, or "SYSTEM"; copied). Returns 0 and
 * *out, or ZT_E_CONFIG with the reason in err (a missing or unusable file
 * is an error here: there is nothing to fall back on). */
int zt_tls_roots_new(const char *root_ca, struct zt_tls_roots **out, char *err, size_t errlen);

/* Re-reads the file if it changed since the last look. Returns 1 when a
 * context with new roots replaced the old one, 0 when nothing changed (or
 * the same failure as last time repeats: it is reported once), or a
 * negative error with the reason in err when the changed file is refused
 * (the previous context stays). */
int zt_tls_roots_refresh(struct zt_tls_roots *r, char *err, size_t errlen);

/* The current context, borrowed: valid until the next successful refresh
 * or zt_tls_roots_free. SSL objects made from it keep their own
 * reference, so a refresh never disturbs a connection. */
SSL_CTX *zt_tls_roots_ctx(const struct zt_tls_roots *r);

/* The file's path ("SYSTEM" for the OS roots). */
const char *zt_tls_roots_path(const struct zt_tls_roots *r);

void zt_tls_roots_free(struct zt_tls_roots *r); /* NULL-safe */

#endif
