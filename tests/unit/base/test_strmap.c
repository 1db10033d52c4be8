/* The string map against a plain reference: random puts, replacements and
 * removals (long probe runs, deletions inside them), iteration, clear, and
 * borrowing vs owning maps. */
#include "test.h"

#include "base/strmap.h"

#define NKEYS 600

struct ref {
    bool present[NKEYS];
    int value[NKEYS];
};

static void key_of(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "res-%d.ns-%d.svc", i, i % 7);
}

static void test_against_reference(void)
{
    struct zt_strmap m;
    zt_strmap_init(&m, true);
    struct ref r = {0};
    unsigned seed = 12345;
    char k[64], v[32];
    for (int step = 0; step < 20000; step++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % NKEYS), op = (int)((seed >> 20) % 3);
        key_of(i, k, sizeof(k));
        if (op < 2) {
            snprintf(v, sizeof(v), "v%d", step);
            zt_strmap_put(&m, k, v);
            r.present[i] = true;
            r.value[i] = step;
        } else {
            CHECK_EQ_INT(zt_strmap_del(&m, k), r.present[i]);
            r.present[i] = false;
        }
        if (step % 500 == 0 || step > 19900) {
            size_t n = 0;
            for (int j = 0; j < NKEYS; j++) {
                key_of(j, k, sizeof(k));
                const struct zt_strmap_entry *e = zt_strmap_find(&m, k);
                CHECK_EQ_INT(e != NULL, r.present[j]);
                if (e) {
                    snprintf(v, sizeof(v), "v%d", r.value[j]);
                    CHECK_EQ_STR(e->value, v);
                    n++;
                }
            }
            CHECK_EQ_INT(m.n, n);
            size_t pos = 0, walked = 0;
            while (zt_strmap_next(&m, &pos))
                walked++;
            CHECK_EQ_INT(walked, n);
            CHECK(m.n * 4 <= m.cap * 3);
        }
    }
    zt_strmap_clear(&m);
    CHECK_EQ_INT(m.n, 0);
    key_of(1, k, sizeof(k));
    CHECK(zt_strmap_find(&m, k) == NULL);
    zt_strmap_put(&m, k, "again"); /* usable after clear */
    CHECK_EQ_STR(zt_strmap_find(&m, k)->value, "again");
    zt_strmap_clear(&m);
}

/* A borrowing map keeps the caller's pointers; values may be NULL. */
static void test_borrowing(void)
{
    struct zt_strmap m;
    zt_strmap_init(&m, false);
    const char *a = "alpha", *b = "beta";
    zt_strmap_put(&m, a, NULL);
    zt_strmap_put(&m, b, a);
    CHECK(zt_strmap_find(&m, "alpha")->key == a);
    CHECK(zt_strmap_find(&m, "alpha")->value == NULL);
    CHECK(zt_strmap_find(&m, "beta")->value == a);
    CHECK(zt_strmap_find(&m, "gamma") == NULL);
    CHECK(!zt_strmap_del(&m, "gamma"));
    CHECK(zt_strmap_del(&m, "alpha"));
    CHECK_EQ_INT(m.n, 1);
    zt_strmap_clear(&m);
}

/* Two maps hash under different keys: the same names land differently. */
static void test_keys_differ(void)
{
    struct zt_strmap a, b;
    zt_strmap_init(&a, true);
    zt_strmap_init(&b, true);
    CHECK(a.sip_key[0] != b.sip_key[0] || a.sip_key[1] != b.sip_key[1]);
    zt_strmap_put(&a, "x", "1");
    zt_strmap_put(&b, "x", "1");
    CHECK(zt_strmap_find(&a, "x")->hash != zt_strmap_find(&b, "x")->hash);
    zt_strmap_clear(&a);
    zt_strmap_clear(&b);
}

int main(void)
{
    RUN(test_against_reference);
    RUN(test_borrowing);
    RUN(test_keys_differ);
    return TEST_REPORT();
}
