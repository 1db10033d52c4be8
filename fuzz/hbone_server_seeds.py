#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/hbone_server.c into fuzz/corpus/hbone_server/.

Each seed is one mode byte (see MODE_* in hbone_server.c; the high nibble
picks the feed chunk size) and the frames a client sends after the preface:
SETTINGS, CONNECT requests (HPACK literals, no Huffman), DATA, END_STREAM,
RST_STREAM, WINDOW_UPDATE, PING, GOAWAY. Run from the repository root:
    python3 fuzz/hbone_server_seeds.py
"""
import os
import struct

OUT = "fuzz/corpus/hbone_server"

DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINUPD, CONT = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 1, 4, 1


def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def lit(name_or_index, value):
    """Literal header field without indexing (RFC 7541 6.2.2)."""
    v = value.encode()
    if isinstance(name_or_index, int):
        return bytes([name_or_index]) + bytes([len(v)]) + v
    nm = name_or_index.encode()
    return b"\x00" + bytes([len(nm)]) + nm + bytes([len(v)]) + v


def connect(sid, authority, extra=(), end_stream=False):
    block = lit(2, "CONNECT") + lit(1, authority)
    for k, v in extra:
        block += lit(k, v)
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block)


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


S0 = settings((3, 100), (4, 65535)) + frame(SETTINGS, ACK, 0)
BAG = (("baggage", "k8s.namespace.name=client-ns"),
       ("traceparent", "00-0123456789abcdef0123456789abcdef-0123456789abcdef-00"))

seeds = {
    "connect-data-end": (0x30, S0 + connect(1, "10.0.0.1:8080", BAG)
                         + frame(DATA, 0, 1, b"hello") + frame(DATA, END_STREAM, 1, b"bye")),
    "connect-bad-authority": (0x10, S0 + connect(1, "not-an-address") + connect(3, "10.0.0.1:15008")),
    "connect-get": (0x20, S0 + frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                     lit(2, "GET") + lit(4, "/") + lit(6, "http") + lit(1, "x"))),
    "many-streams-rst": (0x14, S0 + b"".join(connect(i, "10.0.0.1:80") for i in range(1, 40, 2))
                         + b"".join(frame(DATA, 0, i, b"x" * 100) for i in range(1, 40, 2))
                         + frame(RST, 0, 5, struct.pack(">I", 8))),
    "window-ping-goaway": (0x32, S0 + connect(1, "10.0.0.1:80") + frame(DATA, 0, 1, b"y" * 16000)
                           + frame(WINUPD, 0, 1, struct.pack(">I", 100000))
                           + frame(WINUPD, 0, 0, struct.pack(">I", 100000))
                           + frame(PING, 0, 0, b"12345678") + frame(PING, ACK, 0, b"\0" * 8)
                           + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0))),
    "deferred-shutdown": (0x4C, S0 + connect(1, "10.0.0.1:80") + connect(3, "10.0.0.1:81")
                          + frame(DATA, 0, 1, b"z" * 3000) + frame(DATA, END_STREAM, 3, b"w" * 10)
                          + connect(5, "[fd00::1]:80")),
    "continuation": (0x10, S0 + frame(HEADERS, 0, 1, lit(2, "CONNECT"))
                     + frame(CONT, END_HEADERS, 1, lit(1, "10.0.0.1:80"))),
    "goaway-bad-last-stream": (0x30, S0 + connect(1, "10.0.0.1:80")
                               + frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0))),
    "ping-acked-keepalive": (0x00, S0 + frame(PING, 0, 0, b"abcdefgh") + frame(PING, ACK, 0, b"\0" * 8)),
    "raw-no-preface": (0x01, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + S0 + connect(1, "10.0.0.1:80")),
    "hold-then-end": (0x62, S0 + connect(3, "10.0.0.1:80")
                      + b"".join(frame(DATA, 0, 3, b"h" * 8000) for _ in range(3))
                      + frame(DATA, END_STREAM, 3, b"")),
}

os.makedirs(OUT, exist_ok=True)
for name, (mode, body) in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([mode]) + body)
