/* Inbound HBONE routing (zt_inbound_route): hostname authorities, ports,
 * application tunnels and the PROXY header's destination, on snapshots
 * loaded from local YAML. Cases after Istio's inbound.rs tests where they
 * exist (pod 10.0.0.2, service 10.10.0.1, waypoint 10.0.0.3). */
#include "test.h"

#include "base/err.h"
#include "config/local.h"
#include "proxy/inbound_route.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static const char yaml[] =
    "workloads:\n"
    "- uid: server\n"
    "  name: server\n"
    "  namespace: default\n"
    "  workloadIps: ['10.0.0.2', 'fd00::2']\n"
    "  protocol: HBONE\n"
    "  services:\n"
    "    default/server.default.svc.cluster.local: {80: 8080, 81: 0, 83: 9090, 84: 0, 90: 15008}\n"
    "- uid: wp\n"
    "  name: wp\n"
    "  namespace: default\n"
    "  workloadIps: ['10.0.0.3', 'fd00::3']\n"
    "  protocol: HBONE\n"
    "  applicationTunnel: {protocol: PROXY, port: 15088}\n"
    "- uid: wp0\n"
    "  name: wp0\n"
    "  namespace: default\n"
    "  workloadIps: ['10.0.0.4']\n"
    "  protocol: HBONE\n"
    "  applicationTunnel: {protocol: PROXY}\n"
    "- uid: none\n"
    "  name: none\n"
    "  namespace: default\n"
    "  workloadIps: ['10.0.0.5']\n"
    "  protocol: HBONE\n"
    "  applicationTunnel: {protocol: NONE, port: 7000}\n"
    "- {uid: z, name: z, namespace: zns, workloadIps: ['10.0.0.6'], protocol: HBONE}\n"
    "- {uid: wpt, name: wpt, namespace: default, workloadIps: ['10.0.0.7'], protocol: HBONE}\n"
    "- {uid: wsvc-0, name: wsvc-0, namespace: default, workloadIps: ['10.0.0.8'], protocol: "
    "HBONE, services: {default/waypoint.default.svc.cluster.local: {15008: 15008}}}\n"
    "- {uid: srv2, name: srv2, namespace: default, workloadIps: ['10.0.0.9'], protocol: HBONE, "
    "waypoint: {destination: '/10.0.0.7', hboneMtlsPort: 15008}}\n"
    "- {uid: srv3, name: srv3, namespace: default, workloadIps: ['10.0.0.11'], protocol: HBONE, "
    "waypoint: {destination: '/10.10.0.50', hboneMtlsPort: 15008}}\n"
    "services:\n"
    "- {name: waypoint, namespace: default, hostname: waypoint.default.svc.cluster.local, "
    "vips: ['/10.10.0.50'], ports: {15008: 15008}}\n"
    "- {name: s2, namespace: default, hostname: s2.default.svc.cluster.local, vips: "
    "['/10.10.0.60'], ports: {80: 80}, waypoint: {destination: '/10.0.0.7', hboneMtlsPort: "
    "15008}}\n"
    "- name: server\n"
    "  namespace: default\n"
    "  hostname: server.default.svc.cluster.local\n"
    "  vips: ['/fd10::1', '/10.10.0.1', '/10.10.0.9', 'net2/10.20.0.1']\n"
    "  ports: {80: 8080, 81: 0, 83: 7070, 84: 6060, 90: 15008, 91: 15080, 92: 15006}\n"
    "- {name: other, namespace: default, hostname: other.default.svc.cluster.local, "
    "ports: {80: 5000}}\n"
    "- {name: v6, namespace: default, hostname: v6.example.com, vips: ['net2/10.20.0.2', "
    "'/fd10::5'], ports: {80: 80}}\n"
    "- {name: multi, namespace: a, hostname: multi.example.com, canonical: true, ports: {80: "
    "1001}}\n"
    "- {name: multi, namespace: b, hostname: multi.example.com, ports: {80: 1002}}\n"
    "- {name: multi, namespace: c, hostname: multi.example.com, canonical: true, ports: {80: "
    "1003}}\n"
    "- {name: multi, namespace: default, hostname: multi.example.com, ports: {80: 1004}}\n"
    "- {name: first, namespace: a, hostname: first.example.com, ports: {80: 2001}}\n"
    "- {name: first, namespace: b, hostname: first.example.com, ports: {80: 2002}}\n"
    "- {name: hidden, namespace: x, hostname: hidden.example.com, visibility: Namespace, "
    "ports: {80: 3001}}\n";

static struct zt_state *st;

static const struct zt_workload *wl(const char *uid)
{
    return zt_state_workload_by_uid(st, uid);
}

static struct sockaddr_storage sa(const char *s)
{
    struct sockaddr_storage ss;
    if (zt_hbone_parse_authority(s, &ss) != 0)
        abort();
    return ss;
}

static const char *str(const struct sockaddr_storage *ss, char *buf)
{
    zt_hbone_format_authority((const struct sockaddr *)ss, buf, 64);
    return buf;
}

/* Routes authority for uid on accepted; returns the status. */
static bool localhost_tunnel = true;

static int route(const char *uid, const char *accepted, const char *authority,
                 struct zt_inbound_route *r)
{
    struct zt_hbone_target t;
    if (zt_hbone_parse_target(authority, &t) != 0)
        return -1;
    struct sockaddr_storage on = sa(accepted);
    const char *why = NULL;
    int status =
        zt_inbound_route(st, "", wl(uid), &t, (struct sockaddr *)&on, localhost_tunnel, r, &why);
    if ((status == 200) != (why == NULL))
        return -2;
    return status;
}

static void test_address_targets(void)
{
    struct zt_inbound_route r;
    char b1[64], b2[64];
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "10.0.0.2:8080", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b1), "10.0.0.2:8080");
    CHECK_EQ_STR(str(&r.dial, b2), "10.0.0.2:8080");
    CHECK(!r.is_loopback && !r.want_proxy_header && r.svc == NULL);
    /* "to server ip mismatch": no tunnel, so a foreign address is a 400. */
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "10.0.0.1:8080", &r), 400);
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "10.10.0.1:80", &r), 400);
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "10.0.0.2:15008", &r), 503);
    CHECK_EQ_INT(route("server", "[fd00::2]:15008", "[fd00::2]:8080", &r), 200);
    CHECK_EQ_STR(str(&r.dial, b1), "[fd00::2]:8080");
}

static void test_hostname_targets(void)
{
    struct zt_inbound_route r;
    char b[64];
    /* "svc hostname to workload no waypoint". */
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "server.default.svc.cluster.local:80", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b), "10.0.0.2:8080");
    CHECK_EQ_STR(str(&r.dial, b), "10.0.0.2:8080");
    CHECK(r.svc == zt_state_service_by_key(st, "default/server.default.svc.cluster.local"));
    CHECK(!r.want_proxy_header);
    /* The endpoint's own mapping wins over the service's. */
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "server.default.svc.cluster.local:83", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b), "10.0.0.2:9090");
    /* A named (0) endpoint port falls back to the service's number... */
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "server.default.svc.cluster.local:84", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b), "10.0.0.2:6060");
    /* ... and with none anywhere, or no such service port, 503. */
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "server.default.svc.cluster.local:81", &r), 503);
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "server.default.svc.cluster.local:82", &r), 503);
    /* Resolving to a proxy port (or SOCKS5's) is refused. */
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "server.default.svc.cluster.local:90", &r), 503);
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "server.default.svc.cluster.local:91", &r), 503);
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "server.default.svc.cluster.local:92", &r), 503);
    /* Unknown hostname; exact comparison, as Istio's. */
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "nope.default.svc.cluster.local:80", &r), 503);
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "Server.default.svc.cluster.local:80", &r), 503);
    /* Not an endpoint of it: still the accepted pod, on the service's
     * target port (Istio's ztunnel does not require membership). */
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "other.default.svc.cluster.local:80", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b), "10.0.0.2:5000");
    /* Always the address the connection was accepted on. */
    CHECK_EQ_INT(route("server", "[fd00::2]:15008", "server.default.svc.cluster.local:80", &r),
                 200);
    CHECK_EQ_STR(str(&r.upstream, b), "[fd00::2]:8080");
}

/* Several services with one hostname: the workload's namespace, else the
 * last canonical, else the first; NAMESPACE-visible ones only at home. */
static void test_hostname_choice(void)
{
    struct zt_inbound_route r;
    char b[64];
    CHECK_EQ_INT(route("server", "10.0.0.2:15008", "multi.example.com:80", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b), "10.0.0.2:1004");
    CHECK_EQ_INT(route("z", "10.0.0.6:15008", "multi.example.com:80", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b), "10.0.0.6:1003");
    CHECK_EQ_INT(route("z", "10.0.0.6:15008", "first.example.com:80", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b), "10.0.0.6:2001");
    CHECK_EQ_INT(route("z", "10.0.0.6:15008", "hidden.example.com:80", &r), 503);
}

static void test_proxy_tunnel(void)
{
    struct zt_inbound_route r;
    char b[64];
    /* "to workload with app tunnel": the foreign target is accepted and
     * passed on; the app is dialed on loopback at the tunnel port. */
    CHECK_EQ_INT(route("wp", "10.0.0.3:15008", "10.0.0.2:8080", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b), "10.0.0.3:15088");
    CHECK_EQ_STR(str(&r.dial, b), "127.0.0.1:15088");
    CHECK(r.is_loopback && r.want_proxy_header);
    CHECK_EQ_STR(str(&r.tunnel_dst, b), "10.0.0.2:8080");
    /* "to service with app tunnel". */
    CHECK_EQ_INT(route("wp", "10.0.0.3:15008", "10.10.0.1:80", &r), 200);
    CHECK_EQ_STR(str(&r.tunnel_dst, b), "10.10.0.1:80");
    /* Any family of target; the dial follows the accepted address's. */
    CHECK_EQ_INT(route("wp", "[fd00::3]:15008", "10.10.0.1:80", &r), 200);
    CHECK_EQ_STR(str(&r.dial, b), "[::1]:15088");
    CHECK_EQ_STR(str(&r.tunnel_dst, b), "10.10.0.1:80");
    /* Still never a proxy port. */
    CHECK_EQ_INT(route("wp", "10.0.0.3:15008", "10.0.0.2:15006", &r), 503);
    /* Hostname: a VIP on our network, IPv4 first (the last of equals),
     * with the service port asked for; the port the tunnel's. */
    CHECK_EQ_INT(route("wp", "10.0.0.3:15008", "server.default.svc.cluster.local:80", &r), 200);
    CHECK_EQ_STR(str(&r.tunnel_dst, b), "10.10.0.9:80");
    CHECK_EQ_STR(str(&r.dial, b), "127.0.0.1:15088");
    CHECK_EQ_INT(route("wp", "10.0.0.3:15008", "v6.example.com:80", &r), 200);
    CHECK_EQ_STR(str(&r.tunnel_dst, b), "[fd10::5]:80");
    /* A service without VIPs cannot be named in the header. */
    CHECK_EQ_INT(route("wp", "10.0.0.3:15008", "other.default.svc.cluster.local:80", &r), 503);
    /* Tunnel without a port: the resolved one. */
    CHECK_EQ_INT(route("wp0", "10.0.0.4:15008", "10.0.0.2:8080", &r), 200);
    CHECK_EQ_STR(str(&r.dial, b), "127.0.0.1:8080");
    CHECK_EQ_INT(route("wp0", "10.0.0.4:15008", "server.default.svc.cluster.local:80", &r), 200);
    CHECK_EQ_STR(str(&r.dial, b), "127.0.0.1:8080");
    CHECK_EQ_STR(str(&r.tunnel_dst, b), "10.10.0.9:80");
    /* LOCALHOST_APP_TUNNEL=false: the tunnel port on the pod's address,
     * the header as before. */
    localhost_tunnel = false;
    int rc = route("wp", "10.0.0.3:15008", "10.0.0.2:8080", &r);
    localhost_tunnel = true;
    CHECK_EQ_INT(rc, 200);
    CHECK_EQ_STR(str(&r.dial, b), "10.0.0.3:15088");
    CHECK(!r.is_loopback && r.want_proxy_header);
    CHECK_EQ_STR(str(&r.tunnel_dst, b), "10.0.0.2:8080");
}

/* A tunnel of protocol NONE skips the address check and overrides the
 * port, but writes no header and dials the pod address. */
static void test_none_tunnel(void)
{
    struct zt_inbound_route r;
    char b[64];
    CHECK_EQ_INT(route("none", "10.0.0.5:15008", "10.0.0.2:8080", &r), 200);
    CHECK_EQ_STR(str(&r.dial, b), "10.0.0.5:7000");
    CHECK(!r.want_proxy_header && !r.is_loopback);
}

/* A sandwiched waypoint without an application tunnel (Istio's
 * validate_destination): a foreign target is admitted only when the
 * target names this pod as its waypoint, directly or through the
 * waypoint's service; the app is reached on the pod's own address. */
static void test_waypoint_sandwich_plain(void)
{
    struct zt_inbound_route r;
    char b[64];
    /* "to workload with waypoint referenced by pod" */
    CHECK_EQ_INT(route("wpt", "10.0.0.7:15008", "10.0.0.9:8080", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b), "10.0.0.7:8080");
    CHECK(!r.want_proxy_header && !r.is_loopback);
    /* "to workload with waypoint referenced by vip" */
    CHECK_EQ_INT(route("wsvc-0", "10.0.0.8:15008", "10.0.0.11:8080", &r), 200);
    /* "to service with waypoint referenced by pod" */
    CHECK_EQ_INT(route("wpt", "10.0.0.7:15008", "10.10.0.60:80", &r), 200);
    CHECK_EQ_STR(str(&r.upstream, b), "10.0.0.7:80");
    /* "to waypoint without attachment", and wrong attachments. */
    CHECK_EQ_INT(route("wpt", "10.0.0.7:15008", "10.0.0.2:8080", &r), 400);
    CHECK_EQ_INT(route("wsvc-0", "10.0.0.8:15008", "10.0.0.9:8080", &r), 400);
    CHECK_EQ_INT(route("wpt", "10.0.0.7:15008", "10.0.0.11:8080", &r), 400);
    CHECK_EQ_INT(route("wsvc-0", "10.0.0.8:15008", "10.10.0.60:80", &r), 400);
    /* Still never a proxy port. */
    CHECK_EQ_INT(route("wpt", "10.0.0.7:15008", "10.0.0.9:15006", &r), 503);
}

int main(void)
{
    char err[256];
    if (zt_config_local_load_string("test", yaml, strlen(yaml), &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "config: %s\n", err);
        return 1;
    }
    RUN(test_address_targets);
    RUN(test_hostname_targets);
    RUN(test_hostname_choice);
    RUN(test_proxy_tunnel);
    RUN(test_none_tunnel);
    RUN(test_waypoint_sandwich_plain);
    zt_state_unref(st);
    return TEST_REPORT();
}
