/* Private layout of a snapshot, shared by state.c and lb.c. */
#ifndef ZT_STATE_STATE_INT_H
#define ZT_STATE_STATE_INT_H

#include "state/state.h"

#include <pthread.h>
#include <sys/types.h>

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
    /* zt_state_derived(): each slot built once, under derived_lock. */
    pthread_mutex_t derived_lock;
    void *_Atomic derived[ZT_STATE_DERIVED_MAX];
    zt_state_derived_free_fn *derived_free[ZT_STATE_DERIVED_MAX];
};

/* Index of the service with that key, or -1. */
ssize_t zt_state_service_index(const struct zt_state *s, const char *key);

/* Frees the derived indexes of a snapshot being freed (derived.c). */
void zt_state_derived_cleanup(struct zt_state *s);

#endif
