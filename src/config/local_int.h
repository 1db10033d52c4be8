/* Private to config/: the YAML event reader behind local.c.
 *
 * local.c walks the top of the document event by event and asks for one
 * node tree per list item; the trees live in an arena that is reset after
 * each item, so a file of any length is parsed in the memory of its largest
 * item. */
#ifndef ZT_CONFIG_LOCAL_INT_H
#define ZT_CONFIG_LOCAL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

/* A node of one item's tree. type is libyaml's node type; line is 0-based,
 * as in libyaml's marks. */
struct ypair;
struct ynode {
    yaml_node_type_t type;
    bool plain;        /* scalar in plain style (null may be spelled "~") */
    uint32_t line;     /* of the node's first event */
    const char *value; /* scalar, NUL-terminated */
    size_t len;
    struct ypair *pairs; /* mapping */
    size_t n_pairs;
    struct ynode **items; /* sequence */
    size_t n_items;
};

struct ypair {
    struct ynode *key, *value;
};

/* Bump allocator for item trees: reset after each item, so a file of any
 * length is parsed in the memory of its largest item. */
struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    max_align_t data[];
};

struct anchor {
    char *name;
    struct ynode *node;
};

struct frame {
    struct ynode *node;
    size_t start; /* its first child in zt_yreader.scratch */
};

/* Reads libyaml events into node trees (yaml_tree.c). Messages go to
 * err as "<file>:<line>: YAML syntax error: ...". */
struct zt_yreader {
    const char *file;
    yaml_parser_t *parser;
    char *err;
    size_t errlen;
    struct arena_blk *arena;
    struct ynode **scratch; /* children of the containers being built */
    size_t n_scratch, cap_scratch;
    struct frame *stack; /* containers being built */
    size_t depth, cap_stack;
    struct anchor *anchors; /* document-wide, as in YAML */
    size_t n_anchors;
};

/* Builds the node that starts with event first (borrowed: the caller
 * deletes it) and every event up to its end. Returns 0 or ZT_E_CONFIG with
 * the message in r->err. The tree lives until zt_yreader_reset. */
int zt_yreader_node(struct zt_yreader *r, yaml_event_t *first, struct ynode **out);
/* Next event (to be deleted by the caller), or ZT_E_CONFIG. */
int zt_yreader_next(struct zt_yreader *r, yaml_event_t *ev);
/* Drops every tree built so far, unless the document has anchors (a later
 * alias may point into any of them). */
void zt_yreader_reset(struct zt_yreader *r);
void zt_yreader_cleanup(struct zt_yreader *r);
/* At the end of a document: forgets its anchors and drops its trees. */
void zt_yreader_end_document(struct zt_yreader *r);
/* n bytes in the tree arena (max_align_t aligned), valid until reset. */
void *zt_yreader_alloc(struct zt_yreader *r, size_t n);
/* Makes room for one more element of `size` bytes in *v_ptr (*n used,
 * *cap allocated) and returns it. */
void *zt_config_vec_slot(void *v_ptr, size_t *n, size_t *cap, size_t size);

struct zt_state;
struct zt_k8s_facts;

/* zt_config_local_load_string's first half: the file's objects as written
 * (*raw, no waypoint derived from labels) and what its Kubernetes objects
 * and labels say (*facts, see k8s.h), both owned by the caller. On failure
 * both are NULL. config/dir.c keeps the two per file and derives the
 * waypoints on the merged directory. */
int zt_config_local_parse(const char *name, const char *yaml, size_t len, struct zt_state **raw,
                          struct zt_k8s_facts **facts, char *err, size_t errlen);

#endif
