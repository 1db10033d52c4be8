/* Watching a directory for changes to its files, on a libuv loop.
 *
 * Unlike uv_fs_event, which asks inotify for IN_MODIFY, this reports a file
 * when it is closed after writing, not at each write: a log file growing in
 * the same directory as a watched configuration would otherwise wake the
 * loop once per line. Reported: a file closed after writing, created,
 * deleted, renamed into or out of the directory, or its attributes changed
 * (a Kubernetes ConfigMap swaps its "..data" link by rename), and the
 * directory itself deleted or moved. A configuration writer that never
 * closes its file is not seen until it does. */
#ifndef ZT_LOOP_DIRWATCH_H
#define ZT_LOOP_DIRWATCH_H

#include <uv.h>

struct zt_dirwatch;

/* `name`: the entry that changed; "" for the directory itself; NULL when
 * events were lost (the kernel's queue overflowed, or reading it failed):
 * anything may have changed. */
typedef void zt_dirwatch_fn(void *ud, const char *name);

/* Starts watching `dir` on `loop`. Returns 0 and the watch in *out, or a
 * negative errno (ENOENT, ENOTDIR, EMFILE, ENOSPC for the inotify limits). */
int zt_dirwatch_start(uv_loop_t *loop, const char *dir, zt_dirwatch_fn *fn, void *ud,
                      struct zt_dirwatch **out);

/* Stops the watch; no callback runs after it returns. The memory is freed
 * once the loop has closed the handle. NULL is ignored. */
void zt_dirwatch_stop(struct zt_dirwatch *w);

#endif
