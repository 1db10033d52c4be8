/* The upstream resolvers of the DNS proxy, read from a resolv.conf as the
 * C library reads it: "nameserver" lines (the first three) and the
 * "timeout:" and "attempts:" options; everything else (search, domain,
 * ndots, ...) concerns how names are built, which the pod's own resolver
 * already did. */
#include "dns/server.h"

#include "base/err.h"
#include "state/ip.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_S 5
#define MAX_TIMEOUT_S 30
#define DEFAULT_ATTEMPTS 2
#define MAX_ATTEMPTS 5

static unsigned option_value(const char *v, unsigned max)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (end == v)
        return 0;
    return n > max ? max : (unsigned)n;
}

int zt_dns_upstreams_load(const char *path, struct zt_dns_upstreams *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->timeout_ms = DEFAULT_TIMEOUT_S * 1000;
    out->attempts = DEFAULT_ATTEMPTS;
    FILE *f = fopen(path, "re");
    if (!f)
        return zt_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
    char line[1024];
    unsigned lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *save = NULL;
        char *key = strtok_r(line, " \t\r\n", &save);
        if (!key || key[0] == '#' || key[0] == ';')
            continue;
        if (strcmp(key, "nameserver") == 0) {
            char *v = strtok_r(NULL, " \t\r\n", &save);
            struct zt_ip ip;
            /* A scoped IPv6 address (fe80::1%eth0) names an interface of
             * the node, which does not exist in a pod: not usable here. */
            if (!v || zt_ip_parse(v, &ip) < 0) {
                rc = zt_errf(err, errlen, ZT_E_CONFIG, "%s:%u: nameserver: not an IP address: %s",
                             path, lineno, v ? v : "(none)");
                break;
            }
            if (out->n < ZT_DNS_MAX_UPSTREAMS)
                zt_ip_to_sockaddr(&ip, 53, &out->addr[out->n++]);
        } else if (strcmp(key, "options") == 0) {
            for (char *o; (o = strtok_r(NULL, " \t\r\n", &save));) {
                unsigned v;
                if (strncmp(o, "timeout:", 8) == 0 && (v = option_value(o + 8, MAX_TIMEOUT_S)))
                    out->timeout_ms = v * 1000;
                else if (strncmp(o, "attempts:", 9) == 0 && (v = option_value(o + 9, MAX_ATTEMPTS)))
                    out->attempts = v;
            }
        }
    }
    fclose(f);
    return rc;
}
