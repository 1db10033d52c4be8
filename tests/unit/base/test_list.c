/* The intrusive list: insertion and removal at the head, in the middle and
 * at the tail, removing while walking, the empty list, and removal of an
 * unlinked node (a no-op). */
#include "test.h"

#include "base/list.h"

struct item {
    int v;
    struct zt_list_node link;
};

/* Writes the values of l, in order, as "1 2 3" into buf. */
static const char *values(const struct zt_list *l, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (struct zt_list_node *n = zt_list_first(l); n != NULL; n = zt_list_next(l, n)) {
        const struct item *it = zt_list_entry(n, struct item, link);
        off += (size_t)snprintf(buf + off, cap - off, "%s%d", off ? " " : "", it->v);
    }
    return buf;
}

/* The same walk backwards through prev, so both directions stay consistent. */
static const char *values_backwards(const struct zt_list *l, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (const struct zt_list_node *n = l->head.prev; n != &l->head; n = n->prev) {
        const struct item *it = zt_list_entry(n, struct item, link);
        off += (size_t)snprintf(buf + off, cap - off, "%s%d", off ? " " : "", it->v);
    }
    return buf;
}

/* l becomes the list of it[0..n-1], valued 0..n-1, in order. */
static void fill(struct zt_list *l, struct item *it, int n)
{
    zt_list_init(l);
    for (int i = 0; i < n; i++) {
        it[i] = (struct item){.v = i};
        zt_list_insert_tail(l, &it[i].link);
    }
}

static void test_empty(void)
{
    struct zt_list l;
    zt_list_init(&l);
    CHECK(zt_list_empty(&l));
    CHECK(zt_list_first(&l) == NULL);
    CHECK(zt_list_entry(zt_list_first(&l), struct item, link) == NULL);
    struct item a = {.v = 1};
    CHECK(!zt_list_is_linked(&a.link));
    zt_list_insert_tail(&l, &a.link);
    CHECK(!zt_list_empty(&l));
    CHECK(zt_list_is_linked(&a.link));
    CHECK(zt_list_entry(zt_list_first(&l), struct item, link) == &a);
    CHECK(zt_list_next(&l, &a.link) == NULL);
    zt_list_remove(&a.link);
    CHECK(zt_list_empty(&l));
    CHECK(!zt_list_is_linked(&a.link));
    CHECK(l.head.next == &l.head && l.head.prev == &l.head);
}

static void test_insert(void)
{
    struct zt_list l;
    struct item it[5] = {{.v = 0}, {.v = 1}, {.v = 2}, {.v = 3}, {.v = 4}};
    char buf[64];
    zt_list_init(&l);
    zt_list_insert_tail(&l, &it[2].link);            /* 2 */
    zt_list_insert_head(&l, &it[0].link);            /* head: 0 2 */
    zt_list_insert_tail(&l, &it[4].link);            /* tail: 0 2 4 */
    zt_list_insert_before(&it[2].link, &it[1].link); /* middle: 0 1 2 4 */
    zt_list_insert_before(&l.head, &it[3].link);     /* before the head is the tail */
    CHECK_EQ_STR(values(&l, buf, sizeof(buf)), "0 1 2 4 3");
    CHECK_EQ_STR(values_backwards(&l, buf, sizeof(buf)), "3 4 2 1 0");
}

static void test_remove(void)
{
    struct zt_list l;
    struct item it[5];
    char buf[64];
    fill(&l, it, 5);
    zt_list_remove(&it[2].link); /* middle */
    CHECK_EQ_STR(values(&l, buf, sizeof(buf)), "0 1 3 4");
    zt_list_remove(&it[0].link); /* head */
    CHECK_EQ_STR(values(&l, buf, sizeof(buf)), "1 3 4");
    zt_list_remove(&it[4].link); /* tail */
    CHECK_EQ_STR(values(&l, buf, sizeof(buf)), "1 3");
    CHECK_EQ_STR(values_backwards(&l, buf, sizeof(buf)), "3 1");
    /* A removed node goes back in anywhere. */
    zt_list_insert_before(&it[3].link, &it[2].link);
    zt_list_insert_head(&l, &it[0].link);
    CHECK_EQ_STR(values(&l, buf, sizeof(buf)), "0 1 2 3");
    CHECK_EQ_STR(values_backwards(&l, buf, sizeof(buf)), "3 2 1 0");
}

/* The contract: removing an unlinked node (never linked, or removed
 * already) changes nothing. */
static void test_remove_unlinked_is_noop(void)
{
    struct zt_list l;
    struct item a = {.v = 1}, b = {.v = 2}, never = {.v = 9};
    char buf[64];
    zt_list_init(&l);
    zt_list_insert_tail(&l, &a.link);
    zt_list_insert_tail(&l, &b.link);
    zt_list_remove(&never.link);
    CHECK(!zt_list_is_linked(&never.link));
    CHECK_EQ_STR(values(&l, buf, sizeof(buf)), "1 2");
    zt_list_remove(&a.link);
    zt_list_remove(&a.link); /* twice */
    CHECK_EQ_STR(values(&l, buf, sizeof(buf)), "2");
    CHECK_EQ_STR(values_backwards(&l, buf, sizeof(buf)), "2");
    zt_list_remove(&b.link);
    zt_list_remove(&b.link);
    CHECK(zt_list_empty(&l));
}

/* Walking with the next node read first: removing the current node (even
 * every node) leaves the walk intact. */
static void test_remove_while_walking(void)
{
    struct zt_list l;
    struct item it[6];
    char buf[64];
    fill(&l, it, 6);
    int seen = 0;
    for (struct zt_list_node *n = zt_list_first(&l), *nx; n != NULL; n = nx) {
        nx = zt_list_next(&l, n);
        struct item *x = zt_list_entry(n, struct item, link);
        seen++;
        if (x->v % 2 == 0)
            zt_list_remove(n);
    }
    CHECK_EQ_INT(seen, 6);
    CHECK_EQ_STR(values(&l, buf, sizeof(buf)), "1 3 5");
    for (struct zt_list_node *n = zt_list_first(&l), *nx; n != NULL; n = nx) {
        nx = zt_list_next(&l, n);
        zt_list_remove(n);
    }
    CHECK(zt_list_empty(&l));
    for (int i = 0; i < 6; i++)
        CHECK(!zt_list_is_linked(&it[i].link));
}

/* Draining from the head, the other common shape. */
static void test_drain(void)
{
    struct zt_list l;
    struct item it[3];
    fill(&l, it, 3);
    int want = 0;
    struct item *x;
    while ((x = zt_list_entry(zt_list_first(&l), struct item, link)) != NULL) {
        CHECK_EQ_INT(x->v, want++);
        zt_list_remove(&x->link);
    }
    CHECK_EQ_INT(want, 3);
    CHECK(zt_list_empty(&l));
}

int main(void)
{
    RUN(test_empty);
    RUN(test_insert);
    RUN(test_remove);
    RUN(test_remove_unlinked_is_noop);
    RUN(test_remove_while_walking);
    RUN(test_drain);
    return TEST_REPORT();
}
