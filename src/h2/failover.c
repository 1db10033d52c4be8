/* Control-plane failover policy: see failover.h. */
#include "h2/failover.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

void zt_failover_init(struct zt_failover *f)
{
    memset(f, 0, sizeof(*f));
    f->need_resolve = true;
}

void zt_failover_begin_round(struct zt_failover *f)
{
    f->n = 0;
}

/* "ip:port" or "[ip6]:port". */
static void format_addr(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, ntohs(s->sin_port));
    } else {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(s->sin6_port));
    }
}

/* Only within one entry: two entries naming one address are two attempts,
 * each verifying the certificate against its own entry's name. */
static bool is_listed(const struct zt_failover *f, unsigned target, const struct sockaddr *sa,
                      socklen_t len)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->eps[i].target == target && memcmp(&f->eps[i].sa, sa, len) == 0)
            return true;
    return false;
}

size_t zt_failover_add(struct zt_failover *f, unsigned target, const struct zt_grpc_target *t,
                       const struct addrinfo *res)
{
    size_t added = 0;
    for (const struct addrinfo *ai = res; ai && added < ZT_FAILOVER_PER_TARGET; ai = ai->ai_next) {
        if (f->n >= ZT_FAILOVER_MAX)
            break;
        if (!ai->ai_addr || (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(struct sockaddr_storage) ||
            ai->ai_addrlen < (ai->ai_family == AF_INET ? sizeof(struct sockaddr_in)
                                                       : sizeof(struct sockaddr_in6)))
            continue;
        if (is_listed(f, target, ai->ai_addr, ai->ai_addrlen))
            continue;
        struct zt_failover_endpoint *ep = &f->eps[f->n++];
        memset(ep, 0, sizeof(*ep));
        memcpy(&ep->sa, ai->ai_addr, ai->ai_addrlen);
        ep->target = target;
        char ip[INET6_ADDRSTRLEN + 10];
        format_addr(ai->ai_addr, ip, sizeof(ip));
        if (strcmp(ip, t->authority) == 0)
            snprintf(ep->name, sizeof(ep->name), "%s", t->authority);
        else
            snprintf(ep->name, sizeof(ep->name), "%s (%s)", t->authority, ip);
        added++;
    }
    return added;
}

bool zt_failover_resolved(struct zt_failover *f)
{
    if (f->n == 0) {
        f->need_resolve = true;
        return false;
    }
    f->need_resolve = false;
    f->next %= f->n;
    return true;
}

const struct zt_failover_endpoint *zt_failover_pick(struct zt_failover *f)
{
    f->cur = f->next % f->n;
    f->next = (f->cur + 1) % f->n;
    return &f->eps[f->cur];
}

const struct zt_failover_endpoint *zt_failover_pick_target(struct zt_failover *f,
                                                           const struct zt_grpc_target *targets,
                                                           const char *alt_host, char *authority,
                                                           size_t authority_len, char *verify_host,
                                                           size_t verify_host_len)
{
    const struct zt_failover_endpoint *ep = zt_failover_pick(f);
    const struct zt_grpc_target *t = &targets[ep->target];
    snprintf(authority, authority_len, "%s", t->authority);
    snprintf(verify_host, verify_host_len, "%s", alt_host[0] ? alt_host : t->host);
    return ep;
}

void zt_failover_succeeded(struct zt_failover *f)
{
    f->failures = 0;
}

bool zt_failover_failed(struct zt_failover *f)
{
    if (++f->failures < f->n && !f->need_resolve)
        return true;
    f->failures = 0;
    f->need_resolve = true;
    return false;
}

uint64_t zt_failover_backoff(uint64_t engine_ms, uint32_t rnd)
{
    uint64_t d = engine_ms < ZT_FAILOVER_RETRY_MAX_MS ? engine_ms : ZT_FAILOVER_RETRY_MAX_MS;
    uint64_t span = d - d / 2 + 1; /* [d/2, d] */
    return d / 2 + rnd % span;
}
