#!/usr/bin/env python3
"""bench/gen_config.py N [--edit] [--dir DIR]: writes a local config
(LOCAL_XDS_PATH schema, src/config/local.h) to stdout with N workloads, N/10 services and
N/100 policies, shaped like a real cluster: 1000 workloads per namespace,
one service account per service, 10 workloads per service, 100 workloads
per node, each policy naming a few service accounts and ports.

--edit changes one workload (the middle one gets a new IP), which
is what bench/config.sh writes over the file to time a one-workload edit.
--dir DIR writes the same objects as a `ztunnel control` config directory
instead: one file per namespace of workloads (CHUNK = 1000 each,
DIR/workloads-0000.yaml, ...), then DIR/services.yaml and
DIR/policies.yaml; with --edit only the edited workload's file differs.
The output is deterministic: same N, same bytes."""
import os
import sys

CHUNK = 1000  # one file per namespace


def main():
    argv = sys.argv[1:]
    outdir = None
    if "--dir" in argv:
        i = argv.index("--dir")
        if i + 1 >= len(argv):
            argv = []
        else:
            outdir = argv[i + 1]
            del argv[i:i + 2]
    args = [a for a in argv if not a.startswith("--")]
    edit = "--edit" in argv
    if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 100:
        sys.stderr.write("usage: gen_config.py N [--edit] [--dir DIR]   (N >= 100)\n")
        return 2
    n = int(args[0])
    n_svc = n // 10
    n_pol = n // 100
    edited = n // 2
    out = []
    w = out.append
    files = []  # (name, first line of out) when writing a directory

    def start(name, key):
        files.append((name, len(out)))
        w(key + ":\n")

    if not outdir:
        w("workloads:\n")
    for i in range(n):
        if outdir and i % CHUNK == 0:
            start("workloads-%04d.yaml" % (i // CHUNK), "workloads")
        ns = "ns-%d" % (i // 1000)
        svc = i // 10
        app = "app-%d" % svc
        ip = 10 << 24 | (1 << 20) + i + (n if edit and i == edited else 0)
        ipstr = "%d.%d.%d.%d" % (ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255)
        # One flow mapping per line, so that the edit is a one-line edit.
        w("- {uid: \"cluster1//v1/pod/%s/%s-%d\", name: %s-%d, namespace: %s, "
          "serviceAccount: sa-%d, workloadIps: [\"%s\"], protocol: HBONE, node: node-%d, "
          "services: {\"%s/%s.%s.svc.cluster.local\": {80: 8080}}}\n"
          % (ns, app, i, app, i, ns, svc, ipstr, i // 100, ns, app, ns))
    if outdir:
        start("services.yaml", "services")
    else:
        w("services:\n")
    for s in range(n_svc):
        ns = "ns-%d" % (s * 10 // 1000)
        vip = 10 << 24 | 96 << 16 | s
        w("- {name: app-%d, namespace: %s, hostname: app-%d.%s.svc.cluster.local, "
          "vips: [\"/%d.%d.%d.%d\"], ports: {80: 8080}}\n"
          % (s, ns, s, ns, vip >> 24, (vip >> 16) & 255, (vip >> 8) & 255, vip & 255))
    if outdir:
        start("policies.yaml", "policies")
    else:
        w("policies:\n")
    for p in range(n_pol):
        ns = "ns-%d" % (p * 100 // 1000)
        w("- name: allow-%d\n" % p)
        w("  namespace: %s\n" % ns)
        w("  scope: Namespace\n")
        w("  action: Allow\n")
        w("  rules:\n")
        w("  - - - principals: [{Exact: \"cluster.local/ns/%s/sa/sa-%d\"}, {Prefix: \"cluster.local/ns/%s/\"}]\n"
          % (ns, p * 10, ns))
        w("        destinationPorts: [8080, 9090]\n")
    if not outdir:
        sys.stdout.write("".join(out))
        return 0
    os.makedirs(outdir, exist_ok=True)
    for k, (name, first) in enumerate(files):
        last = files[k + 1][1] if k + 1 < len(files) else len(out)
        with open(os.path.join(outdir, name), "w") as f:
            f.write("".join(out[first:last]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
