/* In-pod rules. The constants are wire facts: ztunnel marks its own sockets
 * 0x539 (excluded from capture); the connmark 0x111 remembers connections
 * that ztunnel spoofed so replies route back to it through table 100. */
#include "cni/rules.h"

#include "base/err.h"
#include "cni/netns.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAVE_MAX (256 * 1024)
#define OUT_MAX 2048
#define NFT_TEXT_MAX 8192

const char *zt_cni_backend_str(enum zt_cni_backend b)
{
    switch (b) {
    case ZT_CNI_NFTABLES:
        return "nftables";
    case ZT_CNI_EBPF:
        return "ebpf";
    case ZT_CNI_IPTABLES:
        break;
    }
    return "iptables";
}

int zt_cni_backend_parse(const char *s, enum zt_cni_backend *out)
{
    if (strcmp(s, "iptables") == 0)
        *out = ZT_CNI_IPTABLES;
    else if (strcmp(s, "nftables") == 0)
        *out = ZT_CNI_NFTABLES;
    else if (strcmp(s, "ebpf") == 0)
        *out = ZT_CNI_EBPF;
    else
        return ZT_E_CONFIG;
    return 0;
}

struct table_state {
    bool has_prert, has_output;
    int jumps_prert, jumps_output;
};

struct writer {
    char *buf;
    size_t cap, len;
    bool is_full;
};

static void put(struct writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct writer *w, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (w->is_full)
        return;
    va_start(ap, fmt);
    n = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= w->cap - w->len) {
        w->is_full = true;
        return;
    }
    w->len += (size_t)n;
}

/* The tables we touch, in the order their text is written. raw only holds
 * the DNS capture rules. */
enum table { T_MANGLE, T_NAT, T_RAW, T_COUNT };
static const char *const table_names[T_COUNT] = {"mangle", "nat", "raw"};

/* Reads the state of our tables from iptables-save text. */
static void parse_save(const char *text, struct table_state t[T_COUNT])
{
    struct table_state *cur = NULL;
    const char *p = text;

    memset(t, 0, T_COUNT * sizeof(*t));
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        if (n < sizeof(line)) {
            memcpy(line, p, n);
            line[n] = '\0';
            while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\r'))
                line[--n] = '\0';
            if (line[0] == '*') {
                cur = NULL;
                for (int i = 0; i < T_COUNT; i++)
                    if (strcmp(line + 1, table_names[i]) == 0)
                        cur = &t[i];
            } else if (cur && strncmp(line, ":ISTIO_PRERT ", 13) == 0)
                cur->has_prert = true;
            else if (cur && strncmp(line, ":ISTIO_OUTPUT ", 14) == 0)
                cur->has_output = true;
            else if (cur && strcmp(line, "-A PREROUTING -j ISTIO_PRERT") == 0)
                cur->jumps_prert++;
            else if (cur && strcmp(line, "-A OUTPUT -j ISTIO_OUTPUT") == 0)
                cur->jumps_output++;
        }
        p = nl ? nl + 1 : NULL;
    }
}

static void put_jump(struct writer *w, const char *hook, const char *chain, int existing)
{
    if (existing == 0)
        put(w, "-A %s -j %s\n", hook, chain);
    for (int i = 1; i < existing; i++)
        put(w, "-D %s -j %s\n", hook, chain);
}

/* Deletes our jumps and chains from one table, as far as `t` shows them. */
static void put_table_removal(struct writer *w, enum table i, const struct table_state *t)
{
    if (!t->has_prert && !t->has_output && !t->jumps_prert && !t->jumps_output)
        return;
    put(w, "*%s\n", table_names[i]);
    for (int k = 0; k < t->jumps_prert; k++)
        put(w, "-D PREROUTING -j ISTIO_PRERT\n");
    for (int k = 0; k < t->jumps_output; k++)
        put(w, "-D OUTPUT -j ISTIO_OUTPUT\n");
    if (t->has_prert)
        put(w, "-F ISTIO_PRERT\n-X ISTIO_PRERT\n");
    if (t->has_output)
        put(w, "-F ISTIO_OUTPUT\n-X ISTIO_OUTPUT\n");
    put(w, "COMMIT\n");
}

/* The rules of one table, in Istio's order (its AppendInpodRules). */
static void put_rules(struct writer *w, enum table i, enum zt_cni_family fam,
                      const struct zt_cni_rules_opts *opts)
{
    const char *lo = fam == ZT_CNI_IPV6 ? "::1/128" : "127.0.0.1/32";
    const char *probe =
        fam == ZT_CNI_IPV6 ? "fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128" : "169.254.7.127/32";

    switch (i) {
    case T_MANGLE:
        /* Packets ztunnel sent (mark 0x539) tag their connection... */
        put(w, "-A ISTIO_PRERT -m mark --mark 0x539/0xfff "
               "-j CONNMARK --set-xmark 0x111/0xfff\n");
        /* ...and the app's replies on it carry the tag as packet mark. */
        put(w, "-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff "
               "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff\n");
        break;
    case T_NAT:
        put(w, "-A ISTIO_PRERT -s %s -p tcp -j ACCEPT\n", probe);
        put(w,
            "-A ISTIO_PRERT ! -d %s -p tcp -m tcp ! --dport 15008 "
            "-m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006\n",
            lo);
        put(w, "-A ISTIO_OUTPUT -d %s -p tcp -j ACCEPT\n", probe);
        if (opts->want_dns_capture) {
            /* The app's DNS goes to the proxy's resolver, except queries
             * the proxy itself sends upstream (mark 0x539). UDP to a
             * resolver on lo (e.g. a local cache) is left alone. */
            put(w, "-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff "
                   "-m udp --dport 53 -j REDIRECT --to-ports 15053\n");
            put(w,
                "-A ISTIO_OUTPUT ! -d %s -p tcp -m tcp --dport 53 "
                "-m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053\n",
                lo);
        }
        put(w, "-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT\n");
        put(w, "-A ISTIO_OUTPUT ! -d %s -o lo -j ACCEPT\n", lo);
        put(w,
            "-A ISTIO_OUTPUT ! -d %s -p tcp -m mark ! --mark 0x539/0xfff "
            "-j REDIRECT --to-ports 15001\n",
            lo);
        break;
    case T_RAW:
        /* The proxy's upstream queries and their answers get conntrack
         * zone 1. In one zone, the proxy's query to a resolver from the
         * same source port as an app query that was redirected would find
         * the app's entry, and the answer would be un-NATed back to the
         * app instead of reaching the proxy (istio/istio#33469). */
        put(w, "-A ISTIO_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 "
               "-j CT --zone 1\n");
        put(w, "-A ISTIO_PRERT -p udp -m mark ! --mark 0x539/0xfff -m udp --sport 53 "
               "-j CT --zone 1\n");
        break;
    case T_COUNT:
        break;
    }
}

int zt_cni_rules_install_text(enum zt_cni_family fam, const struct zt_cni_rules_opts *opts,
                              const char *current, char *buf, size_t cap, size_t *len)
{
    struct writer w = {.buf = buf, .cap = cap};
    struct table_state t[T_COUNT];

    if (cap == 0)
        return ZT_E_TOO_BIG;
    buf[0] = '\0';
    parse_save(current, t);
    for (int i = 0; i < T_COUNT; i++) {
        /* Without DNS capture raw has nothing of ours: rules left there by
         * an install with capture on are removed. With eBPF only mangle is
         * ours (the programs redirect; nothing is NATed, so the DNS zones
         * have no conntrack entries to keep apart). */
        if ((i == T_RAW && !opts->want_dns_capture) ||
            (i != T_MANGLE && opts->backend == ZT_CNI_EBPF)) {
            put_table_removal(&w, (enum table)i, &t[i]);
            continue;
        }
        put(&w, "*%s\n:ISTIO_PRERT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n", table_names[i]);
        if (t[i].has_prert)
            put(&w, "-F ISTIO_PRERT\n");
        if (t[i].has_output)
            put(&w, "-F ISTIO_OUTPUT\n");
        put_rules(&w, (enum table)i, fam, opts);
        put_jump(&w, "PREROUTING", "ISTIO_PRERT", t[i].jumps_prert);
        put_jump(&w, "OUTPUT", "ISTIO_OUTPUT", t[i].jumps_output);
        put(&w, "COMMIT\n");
    }
    if (w.is_full) {
        buf[0] = '\0';
        return ZT_E_TOO_BIG;
    }
    *len = w.len;
    return 0;
}

int zt_cni_rules_remove_text(enum zt_cni_family fam, const char *current, char *buf, size_t cap,
                             size_t *len)
{
    struct writer w = {.buf = buf, .cap = cap};
    struct table_state t[T_COUNT];

    (void)fam; /* the same chain names in both families */
    if (cap == 0)
        return ZT_E_TOO_BIG;
    buf[0] = '\0';
    parse_save(current, t);
    for (int i = 0; i < T_COUNT; i++)
        put_table_removal(&w, (enum table)i, &t[i]);
    if (w.is_full) {
        buf[0] = '\0';
        return ZT_E_TOO_BIG;
    }
    *len = w.len;
    return 0;
}

/* Runs a helper; on failure describes it in err. */
static int run(int netns_fd, char *const argv[], const char *input, char *out, size_t outcap,
               char *err, size_t errcap)
{
    char local[OUT_MAX];
    int rc;
    if (!out) {
        out = local;
        outcap = sizeof(local);
    }
    rc = zt_cni_netns_run(netns_fd, argv, input, out, outcap);
    if (rc == 0)
        return 0;
    if (rc < 0)
        snprintf(err, errcap, "%s: %s", argv[0], zt_strerror(rc));
    else {
        size_t n = strlen(out);
        while (n > 0 && out[n - 1] == '\n')
            out[--n] = '\0';
        snprintf(err, errcap, "%s %s %s failed (exit %d): %.300s", argv[0], argv[1] ? argv[1] : "",
                 argv[1] && argv[2] ? argv[2] : "", rc, out);
    }
    return rc < 0 ? rc : ZT_E_CONFIG;
}

/* Installs (`install` non-NULL) or removes the iptables part for one
 * family. */
static int iptables_step(int netns_fd, enum zt_cni_family fam,
                         const struct zt_cni_rules_opts *install, char *err, size_t errcap)
{
    char *const save_argv[] = {fam == ZT_CNI_IPV6 ? "ip6tables-save" : "iptables-save", NULL};
    char *const restore_argv[] = {fam == ZT_CNI_IPV6 ? "ip6tables-restore" : "iptables-restore",
                                  "--noflush", NULL};
    char *save = malloc(SAVE_MAX);
    char text[4096];
    size_t len = 0;
    int rc;

    if (!save)
        abort();
    if ((rc = run(netns_fd, save_argv, NULL, save, SAVE_MAX, err, errcap)) < 0)
        goto out;
    if (strlen(save) >= SAVE_MAX - 1) {
        snprintf(err, errcap, "%s output too large", save_argv[0]);
        rc = ZT_E_TOO_BIG;
        goto out;
    }
    rc = install ? zt_cni_rules_install_text(fam, install, save, text, sizeof(text), &len)
                 : zt_cni_rules_remove_text(fam, save, text, sizeof(text), &len);
    if (rc < 0 || len == 0)
        goto out;
    rc = run(netns_fd, restore_argv, text, NULL, 0, err, errcap);
out:
    free(save);
    return rc;
}

/* Installs (`install` non-NULL, with the IPv6 rules if `want_ipv6`) or
 * removes our nftables tables, in one transaction. */
static int nft_step(int netns_fd, const struct zt_cni_rules_opts *install, bool want_ipv6,
                    char *err, size_t errcap)
{
    char *const argv[] = {"nft", "-f", "-", NULL};
    char text[NFT_TEXT_MAX];
    size_t len = 0;
    int rc;

    rc = install ? zt_cni_nft_install_text(install, want_ipv6, text, sizeof(text), &len)
                 : zt_cni_nft_remove_text(text, sizeof(text), &len);
    if (rc < 0)
        return rc;
    return run(netns_fd, argv, text, NULL, 0, err, errcap);
}

/* Removes what the backend other than `used` may have left (an agent that
 * ran with the other ZTUNNEL_REDIRECT): best effort, since its tool may
 * well not be installed, and there is then nothing of it to remove. */
static void remove_other_backend(int netns_fd, const struct zt_cni_rules_opts *opts)
{
    char scratch[384];
    if (opts->backend == ZT_CNI_NFTABLES) {
        (void)iptables_step(netns_fd, ZT_CNI_IPV4, NULL, scratch, sizeof(scratch));
        (void)iptables_step(netns_fd, ZT_CNI_IPV6, NULL, scratch, sizeof(scratch));
    } else if (zt_cni_netns_has_program("nft")) {
        (void)nft_step(netns_fd, NULL, false, scratch, sizeof(scratch));
    }
    if (opts->backend != ZT_CNI_EBPF && zt_cni_ebpf_dir_exists(opts->bpf_dir))
        (void)zt_cni_ebpf_pod_remove(opts->bpf_dir, netns_fd, scratch, sizeof(scratch));
}

static size_t count_lines_with(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* ip rule/route for one family; `is_install` false only deletes. */
static int route_step(int netns_fd, enum zt_cni_family fam, bool is_install, char *err,
                      size_t errcap)
{
    const char *f = fam == ZT_CNI_IPV6 ? "-6" : "-4";
    char *const rule_del[] = {"ip",   (char *)f, "rule",   "del", "fwmark", "0x111/0xfff",
                              "pref", "32764",   "lookup", "100", NULL};
    char *const rule_add[] = {"ip",   (char *)f, "rule",   "add", "fwmark", "0x111/0xfff",
                              "pref", "32764",   "lookup", "100", NULL};
    char *dst = fam == ZT_CNI_IPV6 ? "::/0" : "0.0.0.0/0";
    char *const route_replace[] = {"ip",  (char *)f, "route", "replace", "local", dst,
                                   "dev", "lo",      "table", "100",     NULL};
    char *const route_del[] = {"ip",  (char *)f, "route", "del", "local", dst,
                               "dev", "lo",      "table", "100", NULL};
    char *const rule_show[] = {"ip", (char *)f, "rule", "show", "pref", "32764", NULL};
    char scratch[256], shown[1024];
    int rc;

    /* Already there exactly once (a re-install, as at every agent start):
     * left alone. Deleting and adding it again would leave a moment in
     * which the replies to the proxy's spoofed-source connections are
     * routed out of the pod and those connections reset. */
    if (is_install &&
        run(netns_fd, rule_show, NULL, shown, sizeof(shown), scratch, sizeof(scratch)) == 0 &&
        count_lines_with(shown, "fwmark 0x111/0xfff lookup 100") == 1 &&
        strstr(shown, "\n32764:") == NULL)
        return run(netns_fd, route_replace, NULL, NULL, 0, err, errcap);
    /* Delete every copy first, so an install never stacks duplicates. */
    for (int i = 0; i < 8; i++)
        if (run(netns_fd, rule_del, NULL, NULL, 0, scratch, sizeof(scratch)) != 0)
            break;
    if (!is_install) {
        (void)run(netns_fd, route_del, NULL, NULL, 0, scratch, sizeof(scratch));
        return 0;
    }
    if ((rc = run(netns_fd, rule_add, NULL, NULL, 0, err, errcap)) < 0)
        return rc;
    return run(netns_fd, route_replace, NULL, NULL, 0, err, errcap);
}

int zt_cni_rules_apply(int netns_fd, const struct zt_cni_rules_opts *opts, char *err, size_t errcap)
{
    bool is_nft = opts->backend == ZT_CNI_NFTABLES, want_v6;
    const char *what;
    struct zt_cni_ipv6 v6;
    char v6err[384] = "";
    int rc;

    err[0] = '\0';
    if ((rc = zt_cni_netns_ipv6(netns_fd, &v6)) < 0) {
        snprintf(err, errcap,
                 "cannot read the IPv6 addresses of the netns (/proc/net/if_inet6 through a "
                 "helper): %s",
                 zt_strerror(rc));
        return rc;
    }
    want_v6 = v6.has_loopback || v6.has_routable;
    if (is_nft)
        rc = nft_step(netns_fd, opts, want_v6, err, errcap);
    else
        rc = iptables_step(netns_fd, ZT_CNI_IPV4, opts, err, errcap);
    if (rc < 0 || (rc = route_step(netns_fd, ZT_CNI_IPV4, true, err, errcap)) < 0)
        return rc;
    /* The programs after the rules: once the pod is in zt_pods its traffic
     * goes to the proxy, whose replies need the mangle rules. */
    if (opts->backend == ZT_CNI_EBPF &&
        (rc = opts->bpf_dir ? zt_cni_ebpf_pod_install(opts->bpf_dir, netns_fd,
                                                      opts->want_dns_capture, err, errcap)
                            : ZT_E_CONFIG) < 0) {
        if (!opts->bpf_dir)
            snprintf(err, errcap, "eBPF backend without a pin directory");
        return rc;
    }
    remove_other_backend(netns_fd, opts);
    if (!want_v6)
        return 0;
    if ((is_nft || (rc = iptables_step(netns_fd, ZT_CNI_IPV6, opts, v6err, sizeof(v6err))) == 0) &&
        (rc = route_step(netns_fd, ZT_CNI_IPV6, true, v6err, sizeof(v6err))) == 0)
        return 0;
    /* Traffic from a routable address would leave the pod uncaptured: that
     * is a failed enrollment, not a warning. (With nftables the IPv6 rules
     * are in, but replies to spoofed connections could not come back.) */
    what = is_nft ? "IPv6 ip rule/route not installed" : "IPv6 rules not installed";
    if (v6.has_routable) {
        snprintf(err, errcap,
                 "%s, and the netns has the routable IPv6 address %s whose traffic would "
                 "bypass the mesh: %s",
                 what, v6.routable, v6err);
        return rc;
    }
    snprintf(err, errcap, "%s (no routable IPv6 address): %s", what, v6err);
    return 0;
}

int zt_cni_rules_remove(int netns_fd, const struct zt_cni_rules_opts *opts, char *err,
                        size_t errcap)
{
    char scratch[384];
    int first = 0, rc;

    err[0] = '\0';
    /* eBPF first: the pod's traffic stops going to the proxy before the
     * mangle rules its replies need go away. */
    if (opts->backend == ZT_CNI_EBPF && opts->bpf_dir &&
        (rc = zt_cni_ebpf_pod_remove(opts->bpf_dir, netns_fd, err, errcap)) < 0)
        first = rc;
    if (opts->backend == ZT_CNI_NFTABLES)
        rc = nft_step(netns_fd, NULL, false, first ? scratch : err,
                      first ? sizeof(scratch) : errcap);
    else
        rc = iptables_step(netns_fd, ZT_CNI_IPV4, NULL, first ? scratch : err,
                           first ? sizeof(scratch) : errcap);
    if (rc < 0 && first == 0)
        first = rc;
    route_step(netns_fd, ZT_CNI_IPV4, false, scratch, sizeof(scratch));
    /* IPv6 always: the addresses that made us install may be gone, the
     * rules are not. Failures here mean there was nothing to remove. */
    if (opts->backend != ZT_CNI_NFTABLES)
        (void)iptables_step(netns_fd, ZT_CNI_IPV6, NULL, scratch, sizeof(scratch));
    route_step(netns_fd, ZT_CNI_IPV6, false, scratch, sizeof(scratch));
    remove_other_backend(netns_fd, opts);
    return first;
}
