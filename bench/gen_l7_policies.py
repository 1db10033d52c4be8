#!/usr/bin/env python3
"""bench/gen_l7_policies.py N: writes N Istio AuthorizationPolicy documents
(Kubernetes YAML, `---` separated) for the waypoint of bench/run.sh's
ours-l7-pol* rows (bench/ours.sh), to stdout.

The first 10 are the benchmarked service's, as a namespace's operators write
them; every request of the bench load (GET / from the client pod's identity,
cluster.local/ns/bench/sa/client) is checked against all 10 and allowed:
  on the waypoint (targetRefs kind Gateway, NAME in NS):
    gw-deny-blocked-ips    DENY  remoteIpBlocks of two documentation ranges
    gw-deny-foreign-ns     DENY  notNamespaces [NS, istio-system, monitoring]
    gw-allow-monitoring    ALLOW namespace monitoring, GET /metrics, /stats/*
  on the service (targetRefs kind Service, SERVICE in NS):
    deny-admin             DENY  paths /admin*, /debug/*, /internal/*
    deny-debug-headers     DENY  request.headers[x-block] yes, or any
                                 x-debug-token
    deny-static-writes     DENY  PUT/DELETE/PATCH on /static/*, /*.html
    deny-bad-hosts         DENY  hosts evil.example, *.evil.example
    allow-batch            ALLOW principals cluster.local/ns/batch/*, POST
                                 /api/jobs/*
    allow-ops              ALLOW namespace ops, any method
    allow-readers          ALLOW the client's principal or NS, GET/HEAD on
                                 /, /index.html, /api/*, /static/*: the one
                                 that matches, last of the ALLOWs checked
The waypoint checks the Gateway's policies before the service's and, among
one target's, goes by name, so the DENYs all fail to match and the ALLOW
pass reaches allow-readers after the other three. A request for /admin/x
is denied by deny-admin (run.sh's positive control).
The rest (N - 10) go 10 per service to other services of NS (app-0, app-1,
...), in the same shapes, as in a mesh where one waypoint serves many
services: the waypoint holds them, the bench load never reaches them.
N is 10 or more; N < 10 writes the first N. Deterministic: same N, same
bytes. Options: --namespace NS (bench), --service SERVICE (l7), --gateway
NAME (waypoint), --principal ID (cluster.local/ns/bench/sa/client)."""
import sys

OPTS = {"--namespace": "bench", "--service": "l7", "--gateway": "waypoint",
        "--principal": "cluster.local/ns/bench/sa/client"}

# Service-attached shapes: (name, action, rules as YAML lines under "rules:").
# {ns} and {principal} are filled in; none matches the bench load but
# allow-readers, which must stay the last ALLOW by name.
SERVICE_SHAPES = [
    ("deny-admin", "DENY", [
        '  - to: [{operation: {paths: ["/admin*", "/debug/*", "/internal/*"]}}]']),
    ("deny-debug-headers", "DENY", [
        '  - when: [{key: "request.headers[x-block]", values: ["yes"]}]',
        '  - when: [{key: "request.headers[x-debug-token]", values: ["*"]}]']),
    ("deny-static-writes", "DENY", [
        '  - to: [{operation: {methods: [PUT, DELETE, PATCH], paths: ["/static/*", "*.html"]}}]']),
    ("deny-bad-hosts", "DENY", [
        '  - to: [{operation: {hosts: ["evil.example", "*.evil.example"]}}]']),
    ("allow-batch", "ALLOW", [
        '  - from: [{source: {principals: ["cluster.local/ns/batch/*"]}}]',
        '    to: [{operation: {methods: [POST], paths: ["/api/jobs/*"]}}]']),
    ("allow-ops", "ALLOW", [
        '  - from: [{source: {namespaces: [ops]}}]']),
    ("allow-readers", "ALLOW", [
        '  - from: [{source: {principals: ["{principal}"]}}, {source: {namespaces: [{ns}]}}]',
        '    to: [{operation: {methods: [GET, HEAD], paths: ["/", "/index.html", "/api/*", "/static/*"]}}]']),
]

GATEWAY_SHAPES = [
    ("gw-deny-blocked-ips", "DENY", [
        '  - from: [{source: {remoteIpBlocks: ["203.0.113.0/24", "198.51.100.0/24"]}}]']),
    ("gw-deny-foreign-ns", "DENY", [
        '  - from: [{source: {notNamespaces: [{ns}, istio-system, monitoring]}}]']),
    ("gw-allow-monitoring", "ALLOW", [
        '  - from: [{source: {namespaces: [monitoring]}}]',
        '    to: [{operation: {methods: [GET], paths: ["/metrics", "/stats/*"]}}]']),
]


def doc(name, ns, ref, action, rules, o):
    out = ["---",
           "apiVersion: security.istio.io/v1",
           "kind: AuthorizationPolicy",
           "metadata: {name: %s, namespace: %s}" % (name, ns),
           "spec:",
           "  targetRefs: [%s]" % ref,
           "  action: %s" % action,
           "  rules:"]
    for r in rules:
        out.append(r.replace("{ns}", ns).replace("{principal}", o["--principal"]))
    return "\n".join(out) + "\n"


def main():
    argv = sys.argv[1:]
    o = dict(OPTS)
    args = []
    i = 0
    while i < len(argv):
        if argv[i] in o and i + 1 < len(argv):
            o[argv[i]] = argv[i + 1]
            i += 2
            continue
        args.append(argv[i])
        i += 1
    if len(args) != 1 or not args[0].isdigit():
        sys.stderr.write("usage: gen_l7_policies.py N [--namespace NS] [--service S] "
                         "[--gateway G] [--principal ID]\n")
        return 2
    n = int(args[0])
    ns = o["--namespace"]
    gw = '{group: gateway.networking.k8s.io, kind: Gateway, name: %s}' % o["--gateway"]
    svc = '{group: "", kind: Service, name: %s}' % o["--service"]
    docs = [doc(name, ns, gw, action, rules, o) for name, action, rules in GATEWAY_SHAPES]
    docs += [doc(name, ns, svc, action, rules, o) for name, action, rules in SERVICE_SHAPES]
    k = 0
    while len(docs) < n:
        other = '{group: "", kind: Service, name: app-%d}' % (k // 10)
        name, action, rules = SERVICE_SHAPES[k % len(SERVICE_SHAPES)]
        docs.append(doc("%s-app-%d-%d" % (name, k // 10, k % 10), ns, other, action, rules, o))
        k += 1
    sys.stdout.write("".join(docs[:n]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
