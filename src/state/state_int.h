/* Private layout of a snapshot, shared by state.c and lb.c. */
#ifndef ZT_STATE_STATE_INT_H
#define ZT_STATE_STATE_INT_H

#include "state/state.h"

#include <pthread.h>
#include <sys/types.h>

/* Freeing a snapshot that takes at least this many workloads with it
 * returns free memory to the system (malloc_trim). */
#define ZT_STATE_TRIM_OBJECTS 10000

struct ip_entry {
    const char *network;
    struct zt_ip ip;
    const void *obj; /* workload or service */
};

struct cidr_entry {
    const char *network;
    struct zt_cidr cidr;
    const struct zt_service *svc;
};

struct ep_list {
    const struct zt_workload **v;
    size_t n;
};

struct zt_state {
    atomic_uint refs;
    struct zt_workload **wls; /* sorted by uid */
    size_t n_wls;
    struct zt_service **svcs; /* sorted by key */
    size_t n_svcs;
    struct zt_policy **pols; /* sorted by key */
    size_t n_pols;
    struct ip_entry *wl_ips; /* sorted by (network, ip), unique */
    size_t n_wl_ips;
    struct ip_entry *vips; /* sorted by (network, ip, key) */
    size_t n_vips;
    struct cidr_entry *cidrs;
    size_t n_cidrs;
    struct ep_list *eps; /* parallel to svcs */
    /* zt_state_derived(): shared with the base when the policies are
     * (derived.c). */
    struct zt_state_derived_set *derived;
    /* zt_state_services_by_hostname(): services sorted by (hostname, key),
     * built by the first caller (most snapshots are never asked). */
    const struct zt_service **_Atomic by_host;
    pthread_mutex_t by_host_lock;
};

/* Interned strings (strtab.c): a builder's table of refcounted strings.
 * Record strings of a snapshot are interned (zt_workload.interned): each is
 * shared by every record that has the same text, and freed by its last
 * zt_state_str_unref. The table holds one reference per string until
 * cleanup. Not thread-safe; reference counts are atomic, so records built
 * from a table may be freed on any thread. */
struct zt_state_strslot {
    char *s; /* NULL = empty */
    uint64_t hash;
};

struct zt_state_strtab {
    struct zt_state_strslot *slots; /* open addressing */
    size_t cap, n;
};

void zt_state_strtab_init(struct zt_state_strtab *t);
void zt_state_strtab_cleanup(struct zt_state_strtab *t);
/* Returns the interned copy of s with one new reference (s is borrowed). */
char *zt_state_strtab_intern(struct zt_state_strtab *t, const char *s);
char *zt_state_str_ref(char *s);
/* Drops one reference of an interned string. NULL is a no-op. */
void zt_state_str_unref(char *s);

/* Index of the service with that key, or -1. */
ssize_t zt_state_service_index(const struct zt_state *s, const char *key);

/* Gives s (whose policies are final) its derived indexes: the set of base
 * (borrowed, may be NULL) when s has exactly base's policy records in the
 * same order, else a new empty set (derived.c). */
void zt_state_derived_init(struct zt_state *s, const struct zt_state *base);
/* Drops s's reference on its derived indexes, freeing them with the last
 * snapshot that shares them; called before s drops its policies. */
void zt_state_derived_cleanup(struct zt_state *s);

#endif
