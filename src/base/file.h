/* Reading a small file (certificates, CRLs, keys) whole. */
#ifndef ZT_BASE_FILE_H
#define ZT_BASE_FILE_H

#include <stddef.h>
#include <sys/stat.h>

/* Reads the file at `path` into a malloc'd buffer (the caller frees it)
 * with a NUL after the last byte, refusing one larger than `max` bytes
 * before reading it. *st (optional) gets the file's stat. A file that
 * shrinks while read yields what was there. Returns 0, or -errno (-ENOENT
 * when missing) or ZT_E_TOO_BIG; *buf is then NULL. Out of memory aborts. */
int zt_read_file(const char *path, size_t max, struct stat *st, char **buf, size_t *len);

#endif
