/* An intrusive doubly-linked list: the links live inside the listed objects
 * (a struct zt_list_node member), so linking never allocates and an object
 * leaves its list in O(1) without being told which list it is on.
 *
 * The list is circular through its head, a sentinel node. zt_list_init()
 * must run before first use: a zeroed head is not an empty list. A head
 * must not be copied or moved while it holds nodes (they point at it).
 *
 * A node is unlinked when zeroed (calloc, `= {0}`) and again after
 * zt_list_remove(). Removing an unlinked node is a no-op, so an owner may
 * unlink unconditionally when it closes; inserting a node that is already
 * linked is a bug (asserted). A node is on at most one list at a time.
 *
 * Ownership: a list borrows its nodes and never frees them; each object's
 * owner removes it before freeing it. Not thread-safe: whoever owns the list
 * serializes access (one thread, or a mutex).
 *
 * Walking while removing the current node: read the next one first.
 *
 *   for (struct zt_list_node *n = zt_list_first(&l), *nx; n != NULL; n = nx) {
 *       nx = zt_list_next(&l, n);
 *       struct item *it = zt_list_entry(n, struct item, link);
 *       ...  // may zt_list_remove(n), not nx
 *   }
 */
#ifndef ZT_BASE_LIST_H
#define ZT_BASE_LIST_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>

struct zt_list_node {
    struct zt_list_node *prev, *next; /* both NULL while unlinked */
};

struct zt_list {
    struct zt_list_node head; /* sentinel: head.next is the first node, head.prev the last */
};

/* The object of type `type` whose member `member` is the node `node`
 * (container_of); NULL for a NULL node, so it composes with zt_list_first()
 * and zt_list_next(). `node` is evaluated once. */
#define zt_list_entry(node, type, member) ((type *)zt_list_entry_((node), offsetof(type, member)))

static inline void *zt_list_entry_(const struct zt_list_node *node, size_t offset)
{
    return node != NULL ? (void *)((char *)node - offset) : NULL;
}

static inline void zt_list_init(struct zt_list *l)
{
    l->head.prev = l->head.next = &l->head;
}

static inline bool zt_list_empty(const struct zt_list *l)
{
    return l->head.next == &l->head;
}

static inline bool zt_list_is_linked(const struct zt_list_node *n)
{
    return n->next != NULL;
}

/* Links n (unlinked) in front of `at`, a node on a list or a list's head
 * (in front of the head is at the tail). */
static inline void zt_list_insert_before(struct zt_list_node *at, struct zt_list_node *n)
{
    assert(n->next == NULL && n->prev == NULL);
    n->prev = at->prev;
    n->next = at;
    at->prev->next = n;
    at->prev = n;
}

static inline void zt_list_insert_tail(struct zt_list *l, struct zt_list_node *n)
{
    zt_list_insert_before(&l->head, n);
}

static inline void zt_list_insert_head(struct zt_list *l, struct zt_list_node *n)
{
    zt_list_insert_before(l->head.next, n);
}

/* Unlinks n from whatever list holds it; a no-op for an unlinked node. */
static inline void zt_list_remove(struct zt_list_node *n)
{
    if (n->next == NULL)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

/* The first node of l, NULL if empty. */
static inline struct zt_list_node *zt_list_first(const struct zt_list *l)
{
    return l->head.next != &l->head ? l->head.next : NULL;
}

/* The node after n (on l), NULL after the last. */
static inline struct zt_list_node *zt_list_next(const struct zt_list *l,
                                                const struct zt_list_node *n)
{
    return n->next != &l->head ? n->next : NULL;
}

#endif
