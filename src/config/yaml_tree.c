/* YAML events into node trees for the local config loader. See
 * local_int.h. */
#include "config/local_int.h"

#include "base/err.h"
#include "state/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 65536

void *zt_yreader_alloc(struct zt_yreader *r, size_t n)
{
    struct arena_blk *b = r->arena;
    void *p;
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = zt_state_xcalloc(1, sizeof(*b) + cap);
        b->cap = cap;
        b->next = r->arena;
        r->arena = b;
    }
    p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

/* Drops every tree built so far, keeping one block for the next item.
 * Trees are kept while the document has anchors: a later alias may point
 * into any of them. */
void zt_yreader_reset(struct zt_yreader *r)
{
    struct arena_blk *b = r->arena;
    if (!b || r->n_anchors)
        return;
    while (b->next) {
        struct arena_blk *next = b->next;
        free(b);
        b = next;
    }
    b->used = 0;
    r->arena = b;
}

/* Anchors name nodes of one document only: the next may reuse the names. */
void zt_yreader_end_document(struct zt_yreader *r)
{
    for (size_t i = 0; i < r->n_anchors; i++)
        free(r->anchors[i].name);
    free(r->anchors);
    r->anchors = NULL;
    r->n_anchors = 0;
    zt_yreader_reset(r);
}

void zt_yreader_cleanup(struct zt_yreader *r)
{
    while (r->arena) {
        struct arena_blk *next = r->arena->next;
        free(r->arena);
        r->arena = next;
    }
    for (size_t i = 0; i < r->n_anchors; i++)
        free(r->anchors[i].name);
    free(r->anchors);
    free(r->scratch);
    free(r->stack);
}

/* Makes room for one more element in a vector that also shrinks (unlike
 * zt_state_array_push's, its capacity is explicit). */
void *zt_config_vec_slot(void *v_ptr, size_t *n, size_t *cap, size_t size)
{
    void **v = v_ptr;
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = zt_state_xrealloc(*v, *cap * size);
    }
    return (char *)*v + (*n)++ * size;
}

/* libyaml's own words, as its document loader reported them. */
static int syntax_error(struct zt_yreader *r, unsigned long line, const char *problem,
                        const char *context)
{
    snprintf(r->err, r->errlen, "%s:%lu: YAML syntax error: %s%s%s", r->file, line + 1,
             problem ? problem : "unknown", context ? " " : "", context ? context : "");
    return ZT_E_CONFIG;
}

int zt_yreader_next(struct zt_yreader *r, yaml_event_t *ev)
{
    if (!yaml_parser_parse(r->parser, ev))
        return syntax_error(r, (unsigned long)r->parser->problem_mark.line, r->parser->problem,
                            r->parser->context);
    return 0;
}

static int add_anchor(struct zt_yreader *r, const yaml_char_t *name, struct ynode *n)
{
    struct anchor *a;
    if (!name)
        return 0;
    for (size_t i = 0; i < r->n_anchors; i++)
        if (strcmp(r->anchors[i].name, (const char *)name) == 0)
            return syntax_error(r, n->line, "second occurrence",
                                "found duplicate anchor; first occurrence");
    a = zt_state_array_push(&r->anchors, &r->n_anchors, sizeof(*a));
    a->name = zt_state_xstrdup((const char *)name);
    a->node = n;
    return 0;
}

static struct ynode *new_node(struct zt_yreader *r, yaml_node_type_t type, const yaml_event_t *ev)
{
    struct ynode *n = zt_yreader_alloc(r, sizeof(*n));
    memset(n, 0, sizeof(*n));
    n->type = type;
    n->line = (uint32_t)ev->start_mark.line;
    return n;
}

/* Builds the node that starts with event first (consumed by the caller's
 * yaml_event_delete, never here) and every event up to its end. The nesting
 * depth is bounded by libyaml; the build itself uses no recursion. */
int zt_yreader_node(struct zt_yreader *r, yaml_event_t *first, struct ynode **out)
{
    size_t base = r->depth;
    yaml_event_t ev = *first;
    bool own = false; /* ev must be deleted here */
    int rc = 0;

    *out = NULL;
    for (;;) {
        struct ynode *n = NULL;
        const yaml_char_t *anchor = NULL;
        switch (ev.type) {
        case YAML_SCALAR_EVENT:
            n = new_node(r, YAML_SCALAR_NODE, &ev);
            n->len = ev.data.scalar.length;
            n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            n->value = zt_yreader_alloc(r, n->len + 1);
            memcpy((char *)n->value, ev.data.scalar.value, n->len);
            ((char *)n->value)[n->len] = '\0';
            anchor = ev.data.scalar.anchor;
            break;
        case YAML_ALIAS_EVENT:
            for (size_t i = r->n_anchors; i-- > 0 && !n;)
                if (strcmp(r->anchors[i].name, (const char *)ev.data.alias.anchor) == 0)
                    n = r->anchors[i].node;
            if (!n)
                rc = syntax_error(r, (unsigned long)ev.start_mark.line, "found undefined alias",
                                  NULL);
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            struct frame *f;
            n = new_node(
                r, ev.type == YAML_SEQUENCE_START_EVENT ? YAML_SEQUENCE_NODE : YAML_MAPPING_NODE,
                &ev);
            rc = add_anchor(r,
                            ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.anchor
                                                                 : ev.data.mapping_start.anchor,
                            n);
            f = zt_config_vec_slot(&r->stack, &r->depth, &r->cap_stack, sizeof(*f));
            f->node = n;
            f->start = r->n_scratch;
            n = NULL; /* complete at its end event */
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
            struct frame *f = &r->stack[--r->depth];
            size_t k = r->n_scratch - f->start;
            n = f->node;
            if (n->type == YAML_SEQUENCE_NODE) {
                n->items = zt_yreader_alloc(r, k * sizeof(*n->items));
                if (k)
                    memcpy(n->items, r->scratch + f->start, k * sizeof(*n->items));
                n->n_items = k;
            } else {
                n->pairs = zt_yreader_alloc(r, k / 2 * sizeof(*n->pairs));
                for (size_t i = 0; i < k / 2; i++) {
                    n->pairs[i].key = r->scratch[f->start + 2 * i];
                    n->pairs[i].value = r->scratch[f->start + 2 * i + 1];
                }
                n->n_pairs = k / 2;
            }
            r->n_scratch = f->start;
            break;
        }
        default:
            /* The parser only yields node events inside a document. */
            rc = syntax_error(r, (unsigned long)ev.start_mark.line, "unexpected event", NULL);
            break;
        }
        if (!rc && anchor)
            rc = add_anchor(r, anchor, n);
        if (own)
            yaml_event_delete(&ev);
        if (rc)
            break;
        if (n) {
            if (r->depth == base) {
                *out = n;
                break;
            }
            *(struct ynode **)zt_config_vec_slot(&r->scratch, &r->n_scratch, &r->cap_scratch,
                                                 sizeof(*r->scratch)) = n;
        }
        rc = zt_yreader_next(r, &ev);
        if (rc)
            break;
        own = true;
    }
    return rc;
}
