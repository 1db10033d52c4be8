/* The proxy's side of an L7 layer (l7.h): what a waypoint needs of the pod
 * it runs as, on the pod's worker. */
#include "proxy/l7.h"

#include "base/err.h"
#include "proxy/proxy_int.h"
#include "state/ip.h"

#include <stdio.h>
#include <string.h>

const struct zt_state *zt_l7_state(struct zt_pod_inst *pod)
{
    return pod->pw->state;
}

const struct zt_workload *zt_l7_self(struct zt_pod_inst *pod)
{
    return zt_pod_self(pod);
}

const char *zt_l7_network(struct zt_pod_inst *pod)
{
    return pod->pw->proxy->network ? pod->pw->proxy->network : "";
}

uv_loop_t *zt_l7_loop(struct zt_pod_inst *pod)
{
    return &pod->pw->worker.loop;
}

void zt_l7_hold(struct zt_pod_inst *pod)
{
    atomic_fetch_add_explicit(&pod->pw->live, 1, memory_order_relaxed);
}

void zt_l7_release(struct zt_pod_inst *pod)
{
    atomic_fetch_sub_explicit(&pod->pw->live, 1, memory_order_relaxed);
}

/* The endpoint's address on the pod's network, in the family of the
 * pod's own first address when it has one of each. */
static const struct zt_ip *endpoint_ip(const struct zt_workload *wl, const struct zt_workload *self)
{
    if (wl->n_addresses == 0)
        return NULL;
    int fam = self && self->n_addresses ? self->addresses[0].family : 0;
    for (size_t i = 0; i < wl->n_addresses; i++)
        if (!fam || wl->addresses[i].family == fam)
            return &wl->addresses[i];
    return &wl->addresses[0];
}

int zt_l7_upstream(struct zt_pod_inst *pod, const struct zt_workload *wl,
                   const struct zt_service *svc, struct zt_hbone_waiter *w,
                   struct zt_h2conn **ready, struct sockaddr_storage *dst)
{
    *ready = NULL;
    if (pod->closing || !pod->pool)
        return ZT_E_CLOSED;
    const struct zt_workload *self = zt_pod_self(pod);
    if (!self)
        return ZT_E_IDENTITY;
    /* An endpoint on another network would take double HBONE through its
     * gateway, which this path does not do: refused, never tried direct. */
    const char *net = wl->network ? wl->network : "", *own = self->network ? self->network : "";
    const struct zt_ip *ip = endpoint_ip(wl, self);
    if (!ip || strcmp(net, own) != 0)
        return ZT_E_NOT_FOUND;
    struct zt_hbone_key key;
    memset(&key, 0, sizeof(key));
    if (zt_workload_identity(self, key.src_id, sizeof(key.src_id)) < 0 ||
        zt_outbound_dst_ids(wl, svc ? svc->subject_alt_names : NULL,
                            svc ? svc->n_subject_alt_names : 0, key.dst_ids,
                            sizeof(key.dst_ids)) < 0)
        return ZT_E_IDENTITY;
    zt_ip_to_sockaddr(ip, 15008, &key.dst);
    const struct zt_ip *src = endpoint_ip(self, NULL);
    if (src)
        zt_ip_to_sockaddr(src, 0, &key.src);
    *dst = key.dst;
    return zt_hbone_pool_get(pod->pool, &key, w, ready);
}
