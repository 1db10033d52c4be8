/* Derived indexes attached to a snapshot. See zt_state_derived() in
 * state.h.
 *
 * The fast path is one acquire load: once a slot is set it never changes
 * until the snapshot is freed. Building takes the snapshot's lock so that two
 * workers asking at the same moment do not both build a large index; the
 * second one waits and then reads the first one's result. */
#include "state/state_int.h"

#include <assert.h>

const void *zt_state_derived(const struct zt_state *cs, enum zt_state_derived_slot slot,
                             zt_state_derived_build_fn *build, zt_state_derived_free_fn *free_fn)
{
    /* Like the reference count, the slots are the mutable part of a
     * snapshot; what they point to is immutable once published. */
    struct zt_state *s = (struct zt_state *)cs;
    void *idx;

    assert(slot < ZT_STATE_DERIVED_MAX);
    idx = atomic_load_explicit(&s->derived[slot], memory_order_acquire);
    if (idx)
        return idx;
    pthread_mutex_lock(&s->derived_lock);
    idx = atomic_load_explicit(&s->derived[slot], memory_order_relaxed);
    if (!idx) {
        idx = build(s);
        assert(idx);
        s->derived_free[slot] = free_fn;
        atomic_store_explicit(&s->derived[slot], idx, memory_order_release);
    }
    pthread_mutex_unlock(&s->derived_lock);
    return idx;
}

void zt_state_derived_cleanup(struct zt_state *s)
{
    for (int i = 0; i < ZT_STATE_DERIVED_MAX; i++) {
        void *idx = atomic_load_explicit(&s->derived[i], memory_order_acquire);
        if (idx)
            s->derived_free[i](idx);
    }
    pthread_mutex_destroy(&s->derived_lock);
}
