#!/usr/bin/env python3
"""conn_loop.py HOST PORT STOPFILE OUT: a tight loop of new connections.

Opens connections to HOST:PORT (an echo server) one after another, as fast
as they complete, until STOPFILE exists. Each sends a token, half-closes and
must read back exactly that token; anything else (refused, reset, timeout,
short or wrong reply) is a failure. After every attempt OUT holds
"ATTEMPTS FAILURES" (replaced atomically); OUT.err gets one line per failure.
The 10 s socket timeout only guards against a hang.
"""
import os
import socket
import sys
import time


def main():
    host, port, stop, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    attempts = failures = 0
    errs = open(out + ".err", "w")

    def publish():
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{attempts} {failures}\n")
        os.replace(tmp, out)

    publish()
    while not os.path.exists(stop):
        attempts += 1
        token = f"token-{attempts}\n".encode()
        try:
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
        except Exception as e:  # every kind of failure counts
            failures += 1
            errs.write(f"{attempts} {time.time():.3f} {type(e).__name__}: {e}\n")
            errs.flush()
        publish()
    publish()


if __name__ == "__main__":
    main()
