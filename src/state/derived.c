/* Derived indexes attached to a snapshot. See zt_state_derived() in
 * state.h.
 *
 * The indexes live in a refcounted set that snapshots with the same policy
 * records share: a snapshot built from a base whose policies it keeps
 * unchanged (the same records, pointer for pointer, in the same order)
 * takes a reference on the base's set instead of starting an empty one. A
 * one-workload change thus reuses the base's policy index, built or still to
 * be built, instead of rebuilding it. Every slot must therefore depend only
 * on the snapshot's policies; the set is freed by the last snapshot sharing
 * it, before that snapshot drops its policies, so the pointers an index
 * keeps into them stay valid.
 *
 * The fast path is one acquire load: once a slot is set it never changes
 * until the set is freed. Building takes the set's lock so that two workers
 * asking at the same moment do not both build a large index; the second one
 * waits and then reads the first one's result. */
#include "state/state_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct zt_state_derived_set {
    atomic_uint refs;
    pthread_mutex_t lock;
    void *_Atomic slots[ZT_STATE_DERIVED_MAX];
    zt_state_derived_free_fn *free_fns[ZT_STATE_DERIVED_MAX];
};

static bool same_policies(const struct zt_state *a, const struct zt_state *b)
{
    return a->n_pols == b->n_pols &&
           (a->n_pols == 0 || memcmp(a->pols, b->pols, a->n_pols * sizeof(*a->pols)) == 0);
}

void zt_state_derived_init(struct zt_state *s, const struct zt_state *base)
{
    struct zt_state_derived_set *set;

    if (base && same_policies(s, base)) {
        set = base->derived;
        atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
    } else {
        set = zt_state_xcalloc(1, sizeof(*set));
        atomic_init(&set->refs, 1);
        pthread_mutex_init(&set->lock, NULL);
    }
    s->derived = set;
}

const void *zt_state_derived(const struct zt_state *s, enum zt_state_derived_slot slot,
                             zt_state_derived_build_fn *build, zt_state_derived_free_fn *free_fn)
{
    /* Like the reference count, the set is the mutable part of a
     * snapshot, reached through a const one; what its slots point to is
     * immutable once published. */
    struct zt_state_derived_set *set = s->derived;
    void *idx;

    assert(slot < ZT_STATE_DERIVED_MAX);
    idx = atomic_load_explicit(&set->slots[slot], memory_order_acquire);
    if (idx)
        return idx;
    pthread_mutex_lock(&set->lock);
    idx = atomic_load_explicit(&set->slots[slot], memory_order_relaxed);
    if (!idx) {
        idx = build(s);
        assert(idx);
        set->free_fns[slot] = free_fn;
        atomic_store_explicit(&set->slots[slot], idx, memory_order_release);
    }
    pthread_mutex_unlock(&set->lock);
    return idx;
}

void zt_state_derived_cleanup(struct zt_state *s)
{
    struct zt_state_derived_set *set = s->derived;

    s->derived = NULL;
    if (!set || atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int i = 0; i < ZT_STATE_DERIVED_MAX; i++) {
        void *idx = atomic_load_explicit(&set->slots[i], memory_order_acquire);
        if (idx)
            set->free_fns[i](idx);
    }
    pthread_mutex_destroy(&set->lock);
    free(set);
}
