/* Directory watch on inotify without IN_MODIFY (see dirwatch.h). */
#include "loop/dirwatch.h"

#include "base/alloc.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

#define DIRWATCH_MASK                                                                              \
    (IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB |            \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct zt_dirwatch {
    uv_poll_t poll;
    int fd;
    bool stopped;
    zt_dirwatch_fn *fn;
    void *ud;
};

static void on_closed(uv_handle_t *h)
{
    struct zt_dirwatch *w = h->data;
    close(w->fd);
    free(w);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    struct zt_dirwatch *w = p->data;
    /* Room for at least one event with the longest name. */
    char buf[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
        __attribute__((aligned(__alignof__(struct inotify_event))));

    if (status < 0) {
        w->fn(w->ud, NULL);
        return;
    }
    while (!w->stopped) {
        ssize_t n = read(w->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            w->fn(w->ud, NULL);
            return;
        }
        for (ssize_t off = 0; off < n && !w->stopped;) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
            if ((size_t)(n - off) < sizeof(*ev) || (size_t)(n - off) - sizeof(*ev) < ev->len) {
                w->fn(w->ud, NULL); /* a short record: the kernel never makes one */
                return;
            }
            off += (ssize_t)(sizeof(*ev) + ev->len);
            if (ev->mask & IN_Q_OVERFLOW)
                w->fn(w->ud, NULL);
            else if (ev->mask & IN_IGNORED)
                continue; /* the watch went with its directory, reported already */
            else
                w->fn(w->ud, ev->len ? ev->name : "");
        }
    }
}

int zt_dirwatch_start(uv_loop_t *loop, const char *dir, zt_dirwatch_fn *fn, void *ud,
                      struct zt_dirwatch **out)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (inotify_add_watch(fd, dir, DIRWATCH_MASK) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    struct zt_dirwatch *w = zt_xcalloc(1, sizeof(*w));
    w->fd = fd;
    w->fn = fn;
    w->ud = ud;
    int rc = uv_poll_init(loop, &w->poll, fd);
    if (rc < 0) {
        close(fd);
        free(w);
        return rc;
    }
    w->poll.data = w;
    if ((rc = uv_poll_start(&w->poll, UV_READABLE, on_readable)) < 0) {
        uv_close((uv_handle_t *)&w->poll, on_closed);
        return rc;
    }
    *out = w;
    return 0;
}

void zt_dirwatch_stop(struct zt_dirwatch *w)
{
    if (w == NULL || w->stopped)
        return;
    w->stopped = true;
    uv_close((uv_handle_t *)&w->poll, on_closed);
}
