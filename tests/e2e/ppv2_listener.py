#!/usr/bin/env python3
"""A stand-in for a sandwiched waypoint behind ztunnel's application tunnel:
listens on ADDR:PORT, reads the PROXY protocol v2 header every connection
must start with (haproxy's proxy-protocol.txt, section 2.2, parsed here from
the specification alone), appends what it says to RECORD as one line

    peer=<ip:port> cmd=<n> fam=<hex> src=<ip:port> dst=<ip:port> tlvs=<t:value,...>

(values of TLVs as text; "bad=<reason>" instead for a malformed header, and
the connection is closed), then echoes the rest of the stream back.

usage: ppv2_listener.py ADDR PORT RECORD"""
import ipaddress
import socket
import socketserver
import struct
import sys

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def read_exact(f, n):
    data = b""
    while len(data) < n:
        chunk = f.read(n - len(data))
        if not chunk:
            raise ValueError("short header (%d of %d bytes)" % (len(data), n))
        data += chunk
    return data


def parse(f):
    head = read_exact(f, 16)
    if head[:12] != SIG:
        raise ValueError("no v2 signature")
    ver, cmd = head[12] >> 4, head[12] & 0xF
    if ver != 2:
        raise ValueError("version %d" % ver)
    fam = head[13]
    (length,) = struct.unpack("!H", head[14:16])
    body = read_exact(f, length)
    if fam == 0x11:
        alen = 12
        src = "%s:%d" % (ipaddress.IPv4Address(body[0:4]), struct.unpack("!H", body[8:10])[0])
        dst = "%s:%d" % (ipaddress.IPv4Address(body[4:8]), struct.unpack("!H", body[10:12])[0])
    elif fam == 0x21:
        alen = 36
        src = "[%s]:%d" % (ipaddress.IPv6Address(body[0:16]), struct.unpack("!H", body[32:34])[0])
        dst = "[%s]:%d" % (ipaddress.IPv6Address(body[16:32]), struct.unpack("!H", body[34:36])[0])
    elif fam in (0x00, 0x01):
        alen, src, dst = 0, "-", "-"
    else:
        raise ValueError("family/transport 0x%02x" % fam)
    if alen > length:
        raise ValueError("length %d below the address block" % length)
    tlvs, rest = [], body[alen:]
    while rest:
        if len(rest) < 3:
            raise ValueError("truncated TLV header")
        t, (n,) = rest[0], struct.unpack("!H", rest[1:3])
        if len(rest) < 3 + n:
            raise ValueError("TLV 0x%02x longer than the header" % t)
        tlvs.append("%02x:%s" % (t, rest[3 : 3 + n].decode("ascii", "replace")))
        rest = rest[3 + n :]
    return "cmd=%d fam=%02x src=%s dst=%s tlvs=%s" % (cmd, fam, src, dst, ",".join(tlvs))


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        peer = "%s:%d" % self.client_address[:2]
        try:
            line = parse(self.rfile)
        except ValueError as e:
            line = "bad=%s" % e
        with open(sys.argv[3], "a") as rec:
            rec.write("peer=%s %s\n" % (peer, line))
        if line.startswith("bad="):
            return
        while True:
            data = self.rfile.read1(65536)
            if not data:
                break
            self.wfile.write(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    addr = sys.argv[1]
    Server.address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with Server((addr, int(sys.argv[2])), Handler) as srv:
        srv.serve_forever()
