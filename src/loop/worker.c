#include "loop/worker.h"

#include "base/alloc.h"

#include <errno.h>
#include <stdlib.h>

struct zt_task {
    zt_task_fn *fn;
    void *arg;
    struct zt_task *next;
};

static void on_wakeup(uv_async_t *a)
{
    struct zt_worker *w = a->data;
    pthread_mutex_lock(&w->lock);
    struct zt_task *t = w->head;
    w->head = w->tail = NULL;
    bool stopping = w->stopping;
    pthread_mutex_unlock(&w->lock);
    while (t) {
        struct zt_task *next = t->next;
        t->fn(t->arg);
        free(t);
        t = next;
    }
    if (stopping)
        zt_loop_close_all(&w->loop);
}

static void close_one(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void zt_loop_close_all(uv_loop_t *loop)
{
    uv_walk(loop, close_one, NULL);
}

static void *run(void *arg)
{
    struct zt_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

int zt_worker_start(struct zt_worker *w, int id, void *ud)
{
    w->id = id;
    w->ud = ud;
    w->head = w->tail = NULL;
    w->stopping = false;
    int rc = uv_loop_init(&w->loop);
    if (rc < 0)
        return rc;
    pthread_mutex_init(&w->lock, NULL);
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    w->wakeup.data = w;
    rc = pthread_create(&w->thread, NULL, run, w);
    return rc ? -rc : 0;
}

int zt_worker_post(struct zt_worker *w, zt_task_fn *fn, void *arg)
{
    struct zt_task *t = zt_xmalloc(sizeof(*t));
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->stopping) {
        pthread_mutex_unlock(&w->lock);
        free(t);
        return -ESHUTDOWN;
    }
    if (w->tail)
        w->tail->next = t;
    else
        w->head = t;
    w->tail = t;
    pthread_mutex_unlock(&w->lock);
    uv_async_send(&w->wakeup);
    return 0;
}

void zt_worker_stop(struct zt_worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_mutex_unlock(&w->lock);
    uv_async_send(&w->wakeup);
    pthread_join(w->thread, NULL);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    uv_loop_close(&w->loop);
    pthread_mutex_destroy(&w->lock);
}
