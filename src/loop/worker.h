/* Worker threads: each runs its own libuv loop and owns everything created on
 * it (listeners, connections, pools). Other threads talk to a worker only by
 * posting tasks, which run on the worker's loop in posting order.
 *
 * Every worker also remembers the network namespace it started in, so code
 * running on it can enter a pod's namespace to create a socket and return. */
#ifndef ZT_LOOP_WORKER_H
#define ZT_LOOP_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

typedef void zt_task_fn(void *arg);

struct zt_task;

struct zt_worker {
    int id;
    uv_loop_t loop;
    uv_async_t wakeup;
    pthread_t thread;
    pthread_mutex_t lock;
    struct zt_task *head, *tail; /* guarded by lock */
    bool stopping;
    void *ud; /* owner data (the proxy's per-worker state) */
};

/* Initializes `w` and starts its thread. `ud` is stored in w->ud. Returns 0 or
 * a negative errno. */
int zt_worker_start(struct zt_worker *w, int id, void *ud);

/* Runs fn(arg) on the worker's loop. Thread-safe. Returns 0, or -ESHUTDOWN if
 * the worker is stopping (fn is then not run; the caller keeps arg). */
int zt_worker_post(struct zt_worker *w, zt_task_fn *fn, void *arg);

/* Asks the loop to stop after pending tasks and joins the thread. Handles
 * still open on the loop are closed first. Call from another thread. */
void zt_worker_stop(struct zt_worker *w);

/* Runs `fn(arg)` on the current loop-owning thread after closing every handle
 * of `loop` (used at shutdown). */
void zt_loop_close_all(uv_loop_t *loop);

#endif
