#!/usr/bin/env python3
"""An HTTP/1.1 server for the waypoint's e2e tests, on Python's own
http.server (no code of ours): it answers every request with what it
received, one "key=value" line each: its name, the method, the path, the
body's length and SHA-256, then every header ("h:<name>=<value>", names in
lower case). Keep-alive, chunked request bodies, HEAD, `Expect:
100-continue` and a WebSocket-style upgrade (101, then every byte echoed
back) are served as a real server does.

    http_echo.py NAME PORT [ADDR]

Paths with special meaning: /status/N answers status N; /close answers
with `Connection: close`; /chunked answers with a chunked body of 3 parts;
a path with /flaky/ in it answers 503 the first time it is asked for,
then as usual;
/sleep/MS waits MS milliseconds before answering; /slow-first/MS/... waits
MS milliseconds the first time that path is asked for only. GET /_seen
answers with one line per request received before it ("METHOD path host
body_len traceparent"), for tests that check what reached a backend.
"""
import hashlib
import http.server
import socketserver
import sys
import threading
import time

FLAKY_SEEN = set()
FLAKY_LOCK = threading.Lock()
SEEN = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "http-echo"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.server.name, fmt % args))

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if te.lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(n) if n else b""

    def answer(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                self.connection.sendall(chunk)
            self.close_connection = True
            return
        body = self.read_body()
        if self.path == "/_seen":
            with FLAKY_LOCK:
                out = "".join(l + "\n" for l in SEEN).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        with FLAKY_LOCK:
            SEEN.append("%s %s %s %d %s" % (self.command, self.path, self.headers.get("Host", "-"),
                                            len(body), self.headers.get("traceparent", "-")))
        lines = [
            "server=%s" % self.server.name,
            "method=%s" % self.command,
            "path=%s" % self.path,
            "body_len=%d" % len(body),
            "body_sha256=%s" % hashlib.sha256(body).hexdigest(),
        ]
        for k, v in self.headers.items():
            lines.append("h:%s=%s" % (k.lower(), v))
        out = ("\n".join(lines) + "\n").encode()
        status = 200
        if self.path.startswith("/status/"):
            status = int(self.path.split("/")[2])
        if "/flaky/" in self.path:
            with FLAKY_LOCK:
                first = self.path not in FLAKY_SEEN
                FLAKY_SEEN.add(self.path)
            if first:
                status = 503
        if self.path.startswith("/slow-first/"):
            with FLAKY_LOCK:
                first = self.path not in FLAKY_SEEN
                FLAKY_SEEN.add(self.path)
            if first:
                time.sleep(int(self.path.split("/")[2]) / 1000.0)
        if self.path.startswith("/sleep/"):
            time.sleep(int(self.path.split("/")[2]) / 1000.0)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command != "HEAD":
                third = len(out) // 3
                for part in (out[:third], out[third : 2 * third], out[2 * third :]):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = answer


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    name, port = sys.argv[1], int(sys.argv[2])
    addr = sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0"
    srv = Server((addr, port), Handler)
    srv.name = name
    sys.stderr.write("listening on %s:%d\n" % (addr, port))
    sys.stderr.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
