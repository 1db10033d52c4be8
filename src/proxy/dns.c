/* A pod's DNS proxy: its listeners, opened in the pod's namespace on the
 * control thread like the others, and the server (src/dns) that one
 * worker runs for the pod, answering from that worker's snapshot. */
#include "proxy/proxy_int.h"

#include "base/err.h"
#include "base/log.h"
#include "loop/sock.h"

#include <errno.h>
#include <unistd.h>

int zt_pod_dns_open(const struct zt_proxy_opts *opts, int netns_fd, int *fds, size_t *n_udp,
                    size_t *n_tcp)
{
    struct zt_sock_opts o = {
        .netns_fd = netns_fd, .mark = opts->mark, .reuseport = opts->reuseport};
    int udp[2], tcp[2];
    size_t n = 0;
    for (size_t i = 0; i < opts->n_dns_addr; i++) {
        const struct sockaddr *a = (const struct sockaddr *)&opts->dns_addr[i];
        socklen_t len = zt_sockaddr_len(a);
        int u = zt_sock_udp_bind(a, len, &o);
        int t = u < 0 ? u : zt_sock_listen(a, len, &o);
        if (t < 0) {
            if (u >= 0)
                close(u);
            /* A pod without IPv6 has no ::1: that listener is not wanted. */
            if (a->sa_family == AF_INET6 && (t == -EADDRNOTAVAIL || t == -EAFNOSUPPORT))
                continue;
            for (size_t k = 0; k < n; k++) {
                close(udp[k]);
                close(tcp[k]);
            }
            return t;
        }
        udp[n] = u;
        tcp[n] = t;
        n++;
    }
    for (size_t k = 0; k < n; k++) {
        fds[k] = udp[k];
        fds[n + k] = tcp[k];
    }
    *n_udp = *n_tcp = n;
    return 0;
}

static const struct zt_state *dns_state(void *ud)
{
    struct zt_pod_inst *pod = ud;
    return pod->pw->state;
}

static const struct zt_workload *dns_client(void *ud)
{
    return zt_pod_self(ud);
}

static int dns_socket(void *ud, int family, int type)
{
    struct zt_sock_opts o;
    zt_pod_sock_opts(ud, &o);
    return type == SOCK_STREAM ? zt_sock_tcp(family, &o) : zt_sock_udp(family, &o);
}

static void dns_observe(void *ud, const struct zt_dns_event *ev)
{
    struct zt_pod_inst *pod = ud;
    char type[32];
    zt_dns_type_str(ev->q->qtype, type, sizeof(type));
    ZT_DEBUG("dns", "pod %s: %s %s over %s: %s, %u records", pod->shared->uid, type,
             ev->q->name[0] ? ev->q->name : "-", ev->tcp ? "tcp" : "udp", ev->q->result,
             ev->q->n_answers);
    zt_pod_dns_metrics(pod, ev);
}

static const struct zt_dns_server_ops dns_ops = {
    .state = dns_state, .client = dns_client, .socket = dns_socket, .observe = dns_observe};

void zt_pod_dns_start(struct zt_pod_inst *pod, const int *fds, size_t n_udp, size_t n_tcp)
{
    const struct zt_proxy_opts *opts = &pod->pw->proxy->opts;
    int err = 0;
    pod->dns = zt_dns_server_new(&pod->pw->worker.loop, fds, n_udp, fds + n_udp, n_tcp, &opts->dns,
                                 &opts->dns_upstreams, &dns_ops, pod, &err);
    if (!pod->dns)
        ZT_WARN("dns", "pod %s: DNS proxy not started: %s", pod->shared->uid, zt_strerror(err));
}

static void on_dns_closed(void *arg)
{
    zt_pod_handle_gone(arg);
}

void zt_pod_dns_stop(struct zt_pod_inst *pod)
{
    if (!pod->dns)
        return;
    pod->handles_open++;
    zt_dns_server_close(pod->dns, on_dns_closed, pod);
    pod->dns = NULL;
}
