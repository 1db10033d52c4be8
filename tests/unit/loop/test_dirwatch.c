/* The directory watch: files reported when closed after writing, renamed in,
 * deleted; a file growing without being closed (a log beside the config)
 * reported not at all, however often it is written. */
#include "test.h"

#include "loop/dirwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uv_loop_t loop;
static char dir[] = "/tmp/zt-dirwatch-XXXXXX";
static char seen[16][64];
static int n_seen;
static struct zt_dirwatch *stop_in_cb;

static void on_change(void *ud, const char *name)
{
    (void)ud;
    if (n_seen < 16)
        snprintf(seen[n_seen], sizeof(seen[0]), "%s", name ? name : "(lost)");
    n_seen++;
    if (stop_in_cb) {
        zt_dirwatch_stop(stop_in_cb);
        stop_in_cb = NULL;
    }
}

/* Runs the loop until nothing is pending (events already queued by the
 * kernel are delivered: inotify queues them synchronously with the call
 * that caused them). */
static void pump(void)
{
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
}

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static bool was_seen(const char *name)
{
    for (int i = 0; i < n_seen && i < 16; i++)
        if (strcmp(seen[i], name) == 0)
            return true;
    return false;
}

static void test_write_close_rename_delete(void)
{
    struct zt_dirwatch *w = NULL;
    char p[256], q[256];
    n_seen = 0;
    CHECK_EQ_INT(zt_dirwatch_start(&loop, dir, on_change, NULL, &w), 0);
    path_of(p, sizeof(p), "mesh.yaml");
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    fputs("workloads: []\n", f);
    fclose(f);
    pump();
    CHECK(was_seen("mesh.yaml"));

    /* Written elsewhere, renamed over: reported under the new name. */
    n_seen = 0;
    path_of(q, sizeof(q), ".mesh.yaml.tmp");
    f = fopen(q, "w");
    CHECK(f != NULL);
    fputs("workloads: []\n", f);
    fclose(f);
    CHECK_EQ_INT(rename(q, p), 0);
    pump();
    CHECK(was_seen("mesh.yaml"));

    n_seen = 0;
    CHECK_EQ_INT(unlink(p), 0);
    pump();
    CHECK(was_seen("mesh.yaml"));
    zt_dirwatch_stop(w);
    pump();
}

/* The bug this watch fixes: uv_fs_event reported every write. */
static void test_growing_file_not_reported_until_closed(void)
{
    struct zt_dirwatch *w = NULL;
    char p[256];
    path_of(p, sizeof(p), "access.log");
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK_EQ_INT(zt_dirwatch_start(&loop, dir, on_change, NULL, &w), 0);
    n_seen = 0;
    for (int i = 0; i < 200; i++) {
        CHECK_EQ_INT((int)write(fd, "a line\n", 7), 7);
        pump();
    }
    CHECK_EQ_INT(n_seen, 0);
    /* Positive control: the same file closed is reported once. */
    close(fd);
    pump();
    CHECK_EQ_INT(n_seen, 1);
    CHECK_EQ_STR(seen[0], "access.log");
    unlink(p);
    pump();
    zt_dirwatch_stop(w);
    pump();
}

static void test_stop_inside_callback(void)
{
    struct zt_dirwatch *w = NULL;
    char p[256];
    CHECK_EQ_INT(zt_dirwatch_start(&loop, dir, on_change, NULL, &w), 0);
    stop_in_cb = w;
    n_seen = 0;
    /* Several events queued at once: none is delivered after the stop. */
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%d", i);
        path_of(p, sizeof(p), name);
        FILE *f = fopen(p, "w");
        CHECK(f != NULL);
        fclose(f);
    }
    pump();
    CHECK_EQ_INT(n_seen, 1);
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%d", i);
        path_of(p, sizeof(p), name);
        unlink(p);
    }
}

static void test_errors(void)
{
    struct zt_dirwatch *w = NULL;
    char p[256];
    path_of(p, sizeof(p), "missing");
    CHECK_EQ_INT(zt_dirwatch_start(&loop, p, on_change, NULL, &w), -ENOENT);
    path_of(p, sizeof(p), "plain");
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    fclose(f);
    CHECK_EQ_INT(zt_dirwatch_start(&loop, p, on_change, NULL, &w), -ENOTDIR);
    unlink(p);
    zt_dirwatch_stop(NULL);
}

int main(void)
{
    uv_loop_init(&loop);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_write_close_rename_delete);
    RUN(test_growing_file_not_reported_until_closed);
    RUN(test_stop_inside_callback);
    RUN(test_errors);
    rmdir(dir);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    return TEST_REPORT();
}
