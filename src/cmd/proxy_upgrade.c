/* Upgrade in place of `ztunnel proxy` on a host (docs/upgrade.md).
 *
 * SIGHUP makes the running proxy (the old one) start the binary found at its
 * own path (after a package upgrade, the new binary) as a second proxy with
 * the same environment plus ZTUNNEL_HANDOVER_FD, the write end of a pipe.
 * The new proxy connects to the node agent, which, as istio-cni does, gives
 * the newest connection the snapshot and every later add; it opens each
 * pod's listeners beside the old ones (SO_REUSEPORT). Once it serves every
 * pod and has its state, it tells systemd it is the main process now
 * (MAINPID=, for Type=notify units) and writes one byte into the pipe. The
 * old proxy then drains as on SIGTERM: it leaves the node agent, releases
 * the admin ports (which the new one was waiting for), closes its
 * listeners (the kernel moves their queued connections to the new ones,
 * tcp_migrate_req) and lets its connections finish up to
 * CONNECTION_TERMINATION_DEADLINE. If the new proxy exits or closes the
 * pipe before that, the old one logs it and keeps serving.
 *
 * Both proxies log to the same stdout/stderr; each logs its pid at the
 * steps of the hand-over. */
#include "cmd/proxy_app.h"

#include "base/alloc.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SCOPE "upgrade"
#define HANDOVER_ENV "ZTUNNEL_HANDOVER_FD"
/* The descriptor number the new proxy finds the pipe at. */
#define HANDOVER_CHILD_FD 3

extern char **environ;

void zt_proxy_upgrade_notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n;
    if (!path || (path[0] != '/' && path[0] != '@') || (n = strlen(path)) >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
        ZT_WARN(SCOPE, "systemd notification not sent to %s: %s", path, strerror(errno));
    close(fd);
}

void zt_proxy_upgrade_check(struct proxy_app *app)
{
    if (!app->has_handover_fd || atomic_load(&app->draining) || !atomic_load(&app->inpod_ready) ||
        atomic_load(&app->xds_pending))
        return;
    char msg[64];
    /* systemd must follow this process before the old one exits, or it
     * would take the service for stopped. */
    snprintf(msg, sizeof(msg), "MAINPID=%d\nREADY=1", (int)getpid());
    zt_proxy_upgrade_notify(msg);
    if (write(app->handover_fd, "R", 1) != 1)
        ZT_WARN(SCOPE, "cannot tell the previous proxy to drain: %s", strerror(errno));
    else
        ZT_INFO(SCOPE, "pid %d serves every pod: the previous proxy (pid %d) drains now",
                (int)getpid(), (int)getppid());
    close(app->handover_fd);
    app->has_handover_fd = false;
}

static void on_handover_poll_closed(uv_handle_t *h)
{
    struct proxy_app *app = h->data;
    close(app->handover_rfd);
    app->handover_rfd = -1;
}

static void on_successor_closed(uv_handle_t *h)
{
    struct proxy_app *app = h->data;
    app->has_successor = false;
}

static void stop_handover_poll(struct proxy_app *app)
{
    if (!app->has_handover_poll)
        return;
    app->has_handover_poll = false;
    uv_close((uv_handle_t *)&app->handover_poll, on_handover_poll_closed);
}

/* The new proxy wrote its byte (it serves every pod) or closed the pipe
 * (it exited, or failed before that). */
static void on_handover(uv_poll_t *h, int status, int events)
{
    struct proxy_app *app = h->data;
    char c = 0;
    ssize_t n = status < 0 ? -1 : read(app->handover_rfd, &c, 1);
    if (n < 0 && status >= 0 && (errno == EAGAIN || errno == EINTR))
        return;
    int pid = app->has_successor ? app->successor.pid : 0;
    stop_handover_poll(app);
    if (n == 1) {
        char why[80];
        snprintf(why, sizeof(why), "replaced by the new proxy (pid %d)", pid);
        zt_proxy_begin_drain(app, why);
        return;
    }
    ZT_ERROR(SCOPE,
             "the new proxy (pid %d) went away before serving every pod; pid %d keeps serving", pid,
             (int)getpid());
}

static void on_successor_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
    if (term_signal)
        ZT_WARN(SCOPE, "the new proxy (pid %d) was killed by signal %d", p->pid, term_signal);
    else
        ZT_INFO(SCOPE, "the new proxy (pid %d) exited with status %lld", p->pid,
                (long long)exit_status);
    uv_close((uv_handle_t *)p, on_successor_closed);
}

/* The binary at this process's path: after a package upgrade replaced the
 * file, /proc/self/exe reads "<path> (deleted)" and the path is the new
 * binary's. */
static int exe_path(char *buf, size_t cap)
{
    static const char deleted[] = " (deleted)";
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    size_t dl = sizeof(deleted) - 1;
    if ((size_t)n > dl && strcmp(buf + n - dl, deleted) == 0)
        buf[(size_t)n - dl] = '\0';
    return 0;
}

static void start_successor(struct proxy_app *app)
{
    char exe[4096], fdvar[32];
    int p[2];
    if (exe_path(exe, sizeof(exe)) < 0 || pipe2(p, O_CLOEXEC) < 0) {
        ZT_ERROR(SCOPE, "cannot start a new proxy: %s; this one keeps serving", strerror(errno));
        return;
    }
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = zt_xcalloc(n + 2, sizeof(*env));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], HANDOVER_ENV "=", sizeof(HANDOVER_ENV)) != 0)
            env[k++] = environ[i];
    snprintf(fdvar, sizeof(fdvar), HANDOVER_ENV "=%d", HANDOVER_CHILD_FD);
    env[k] = fdvar;
    char *args[] = {exe, "proxy", NULL};
    uv_stdio_container_t stdio[HANDOVER_CHILD_FD + 1] = {
        {.flags = UV_INHERIT_FD, .data.fd = 0},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = UV_INHERIT_FD, .data.fd = p[1]},
    };
    uv_process_options_t o = {
        .exit_cb = on_successor_exit,
        .file = exe,
        .args = args,
        .env = env,
        .stdio_count = HANDOVER_CHILD_FD + 1,
        .stdio = stdio,
    };
    int rc = uv_spawn(app->loop, &app->successor, &o);
    free(env);
    close(p[1]);
    app->successor.data = app;
    app->has_successor = true;
    if (rc < 0) {
        ZT_ERROR(SCOPE, "cannot start %s: %s; this proxy keeps serving", exe, uv_strerror(rc));
        uv_close((uv_handle_t *)&app->successor, on_successor_closed);
        close(p[0]);
        return;
    }
    app->handover_rfd = p[0];
    uv_poll_init(app->loop, &app->handover_poll, p[0]);
    app->handover_poll.data = app;
    app->has_handover_poll = true;
    uv_poll_start(&app->handover_poll, UV_READABLE | UV_DISCONNECT, on_handover);
    ZT_INFO(SCOPE,
            "pid %d started the new proxy %s as pid %d; it takes over once it serves every pod",
            (int)getpid(), exe, app->successor.pid);
}

static void on_sighup(uv_signal_t *s, int signum)
{
    struct proxy_app *app = s->data;
    if (atomic_load(&app->draining))
        ZT_WARN(SCOPE, "SIGHUP ignored: this proxy is draining");
    else if (app->has_handover_fd)
        ZT_WARN(SCOPE, "SIGHUP ignored: this proxy is still taking over from pid %d",
                (int)getppid());
    else if (app->has_successor || app->has_handover_poll)
        ZT_WARN(SCOPE, "SIGHUP ignored: an upgrade is under way (new proxy pid %d)",
                app->has_successor ? app->successor.pid : 0);
    else
        start_successor(app);
}

void zt_proxy_upgrade_init(struct proxy_app *app)
{
    app->handover_rfd = -1;
    const char *v = getenv(HANDOVER_ENV);
    if (v) {
        char *end;
        long fd = strtol(v, &end, 10);
        if (*end == '\0' && fd > 2 && fd < 1024 && fcntl((int)fd, F_SETFD, FD_CLOEXEC) == 0) {
            app->handover_fd = (int)fd;
            app->has_handover_fd = true;
            ZT_INFO(SCOPE,
                    "pid %d replaces pid %d: it drains once this one serves every pod "
                    "(admin ports once it releases them)",
                    (int)getpid(), (int)getppid());
        } else {
            ZT_WARN(SCOPE, "%s=%s is not an open descriptor: ignored", HANDOVER_ENV, v);
        }
        /* Not for the proxies this one may start. */
        unsetenv(HANDOVER_ENV);
    }
    if (app->is_waypoint)
        return;
    uv_signal_init(app->loop, &app->sighup);
    app->sighup.data = app;
    app->has_sighup = true;
    uv_signal_start(&app->sighup, on_sighup, SIGHUP);
}

void zt_proxy_upgrade_stop(struct proxy_app *app)
{
    if (app->has_handover_fd) {
        close(app->handover_fd);
        app->has_handover_fd = false;
    }
    stop_handover_poll(app);
    /* Closing the handle leaves the new proxy running. */
    if (app->has_successor && !uv_is_closing((uv_handle_t *)&app->successor))
        uv_close((uv_handle_t *)&app->successor, on_successor_closed);
    if (app->has_sighup) {
        uv_close((uv_handle_t *)&app->sighup, NULL);
        app->has_sighup = false;
    }
}
