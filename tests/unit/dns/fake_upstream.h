/* A scripted upstream DNS resolver for the DNS module's socket tests: UDP
 * and TCP on one loopback port, in a thread of its own, answering as its
 * mode says. Header-only: each test binary includes it once. */
#ifndef ZT_TEST_FAKE_UPSTREAM_H
#define ZT_TEST_FAKE_UPSTREAM_H

#include <ldns/ldns.h>

#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int wait_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms);
}

static bool read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        if (wait_readable(fd, 5000) <= 0)
            return false;
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

static void bound_addr(int fd, struct sockaddr_in *out)
{
    socklen_t len = sizeof(*out);
    getsockname(fd, (struct sockaddr *)out, &len);
}

/* ---- a scripted upstream ---- */

enum up_mode {
    UP_ANSWER,      /* answers over UDP */
    UP_SPOOF_FIRST, /* a reply with another id first, then the right one */
    UP_TRUNCATE,    /* TC over UDP; the full answer over TCP */
    UP_SILENT,      /* never answers */
    UP_NXDOMAIN,    /* the name does not exist */
};

struct upstream {
    enum up_mode mode;
    int udp, tcp;
    uint16_t port;
    pthread_t thread;
    atomic_int udp_queries, tcp_queries;
    atomic_bool stop;
};

/* The reply to msg: its question, n A records 192.0.2.i, or TC set. */
static uint8_t *make_reply(const uint8_t *msg, size_t len, uint16_t id, int n, bool tc,
                           size_t *out_len)
{
    ldns_pkt *q = NULL;
    if (ldns_wire2pkt(&q, msg, len) != LDNS_STATUS_OK)
        return NULL;
    ldns_pkt_set_qr(q, true);
    ldns_pkt_set_id(q, id);
    ldns_pkt_set_tc(q, tc);
    for (int i = 0; i < n; i++) {
        char rr_s[128];
        ldns_rr *rr = NULL;
        snprintf(rr_s, sizeof(rr_s), "external.test. 60 IN A 192.0.2.%d", i + 1);
        ldns_rr_new_frm_str(&rr, rr_s, 0, NULL, NULL);
        ldns_pkt_push_rr(q, LDNS_SECTION_ANSWER, rr);
    }
    uint8_t *w = NULL;
    ldns_pkt2wire(&w, q, out_len);
    ldns_pkt_free(q);
    return w;
}

static void *upstream_main(void *arg)
{
    struct upstream *u = arg;
    uint8_t buf[65536];
    while (!atomic_load(&u->stop)) {
        struct pollfd p[2] = {{.fd = u->udp, .events = POLLIN}, {.fd = u->tcp, .events = POLLIN}};
        if (poll(p, 2, 50) <= 0)
            continue;
        if (p[0].revents & POLLIN) {
            struct sockaddr_storage from;
            socklen_t fl = sizeof(from);
            ssize_t n = recvfrom(u->udp, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
            if (n < 12)
                continue;
            atomic_fetch_add(&u->udp_queries, 1);
            uint16_t id = ldns_read_uint16(buf);
            size_t rl = 0;
            uint8_t *r = NULL;
            if (u->mode == UP_SILENT)
                continue;
            if (u->mode == UP_SPOOF_FIRST) {
                r = make_reply(buf, (size_t)n, (uint16_t)(id + 1), 1, false, &rl);
                sendto(u->udp, r, rl, 0, (struct sockaddr *)&from, fl);
                free(r);
            }
            bool empty = u->mode == UP_TRUNCATE || u->mode == UP_NXDOMAIN;
            r = make_reply(buf, (size_t)n, id, empty ? 0 : 1, u->mode == UP_TRUNCATE, &rl);
            if (u->mode == UP_NXDOMAIN && rl >= 4)
                r[3] = (uint8_t)((r[3] & 0xf0) | LDNS_RCODE_NXDOMAIN);
            sendto(u->udp, r, rl, 0, (struct sockaddr *)&from, fl);
            free(r);
        }
        if (p[1].revents & POLLIN) {
            int c = accept(u->tcp, NULL, NULL);
            uint8_t hdr[2];
            if (c >= 0 && read_full(c, hdr, 2)) {
                size_t len = (size_t)hdr[0] << 8 | hdr[1];
                if (read_full(c, buf, len)) {
                    atomic_fetch_add(&u->tcp_queries, 1);
                    size_t rl = 0;
                    uint8_t *r = make_reply(buf, len, ldns_read_uint16(buf), 40, false, &rl);
                    uint8_t h2[2] = {(uint8_t)(rl >> 8), (uint8_t)rl};
                    if (write(c, h2, 2) != 2 || write(c, r, rl) != (ssize_t)rl)
                        fprintf(stderr, "upstream: short write\n");
                    free(r);
                }
            }
            if (c >= 0)
                close(c);
        }
    }
    return NULL;
}

static void upstream_start(struct upstream *u, enum up_mode mode)
{
    memset(u, 0, sizeof(*u));
    u->mode = mode;
    /* UDP on a free port, then TCP on the same number, as a resolver
     * listens; a number taken for TCP is tried again with another. */
    for (int tries = 0;; tries++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        u->udp = socket(AF_INET, SOCK_DGRAM, 0);
        if (bind(u->udp, (struct sockaddr *)&a, sizeof(a)) < 0)
            abort();
        struct sockaddr_in b;
        bound_addr(u->udp, &b);
        u->port = ntohs(b.sin_port);
        u->tcp = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(u->tcp, (struct sockaddr *)&b, sizeof(b)) == 0 && listen(u->tcp, 16) == 0)
            break;
        close(u->udp);
        close(u->tcp);
        if (tries == 100)
            abort();
    }
    pthread_create(&u->thread, NULL, upstream_main, u);
}

static void upstream_stop(struct upstream *u)
{
    atomic_store(&u->stop, true);
    pthread_join(u->thread, NULL);
    close(u->udp);
    close(u->tcp);
}

#endif
