#!/usr/bin/env python3
"""xfer.py: a long one-connection transfer whose end the test controls.

  xfer.py recv PORT OUT
      Accepts one connection on PORT, reads it to the end, writes
      "SHA256 BYTES" to OUT, closes.
  xfer.py send HOST PORT DATA CTL
      Connects to HOST:PORT, sends the first half of file DATA, then creates
      CTL.half; waits for a line on the FIFO CTL, sends the rest,
      half-closes and reads until the receiver closes. Exit 0 when all of
      that worked, 1 (with the error on stderr) otherwise.

The test holds no descriptor of its own on the connection or the FIFO, so
no other process it starts can keep either open.
"""
import hashlib
import os
import socket
import sys


def recv(port, out):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1)
    s, _ = ls.accept()
    ls.close()
    h = hashlib.sha256()
    n = 0
    while True:
        d = s.recv(1 << 16)
        if not d:
            break
        h.update(d)
        n += len(d)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{h.hexdigest()} {n}\n")
    os.replace(tmp, out)
    s.close()


def send(host, port, data, ctl):
    with open(data, "rb") as f:
        body = f.read()
    half = len(body) // 2
    s = socket.create_connection((host, port), timeout=60)
    s.sendall(body[:half])
    open(ctl + ".half", "w").close()
    with open(ctl) as c:
        c.readline()
    s.sendall(body[half:])
    s.shutdown(socket.SHUT_WR)
    while s.recv(1 << 16):
        pass
    s.close()


def main():
    if sys.argv[1] == "recv":
        recv(int(sys.argv[2]), sys.argv[3])
    else:
        try:
            send(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        except Exception as e:
            print(f"xfer send: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
