#!/usr/bin/env python3
"""conn_loop.py HOST PORT STOPFILE OUT [N]: tight loops of new connections.

N threads (default 1) each open connections to HOST:PORT (an echo server)
one after another, as fast as they complete, until STOPFILE exists; with
several, connections are always being set up, so some sit in the server's
accept queue at any instant. Each sends a token, half-closes and
must read back exactly that token; anything else (refused, reset, timeout,
short or wrong reply) is a failure. After every attempt OUT holds
"ATTEMPTS FAILURES" (replaced atomically); OUT.err gets one line per failure.
The 10 s socket timeout only guards against a hang.
"""
import os
import socket
import sys
import threading
import time


def main():
    host, port, stop, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    nthreads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    lock = threading.Lock()
    counts = {"attempts": 0, "failures": 0}
    errs = open(out + ".err", "w")

    def publish():
        tmp = out + f".tmp{threading.get_ident()}"
        with open(tmp, "w") as f:
            f.write(f"{counts['attempts']} {counts['failures']}\n")
        os.replace(tmp, out)

    def one(n):
        token = f"token-{n}\n".encode()
        s = socket.create_connection((host, port), timeout=10)
        try:
            s.settimeout(10)
            s.sendall(token)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        finally:
            s.close()
        if got != token:
            raise RuntimeError(f"reply {got!r}")

    def loop():
        while not os.path.exists(stop):
            with lock:
                counts["attempts"] += 1
                n = counts["attempts"]
            try:
                one(n)
                failed = None
            except Exception as e:  # every kind of failure counts
                failed = e
            with lock:
                if failed is not None:
                    counts["failures"] += 1
                    errs.write(f"{n} {time.time():.3f} {type(failed).__name__}: {failed}\n")
                    errs.flush()
                publish()

    with lock:
        publish()
    threads = [threading.Thread(target=loop) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with lock:
        publish()


if __name__ == "__main__":
    main()
