#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets (test/fuzz/corpus/{proto,conn}/).

Seeds are small valid and invalid frames; see the input layout at the top of
fuzz_proto.c and fuzz_conn.c. Run again after changing a layout.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def frame(cmd, ident=b"00000042", payload=b""):
    body = bytes([cmd]) + ident + payload
    return struct.pack(">I", 4 + len(body)) + body


def raw(total_len, rest):
    return struct.pack(">I", total_len) + rest


def ack(cmd, ident=b"00000042", result=0):
    return struct.pack(">I", 14) + bytes([cmd]) + ident + bytes([result])


# name -> bytes of the stream
streams = {
    "submit": frame(2, payload=b"hello"),
    "submit-empty": frame(2),
    "conn": frame(1, payload=b"client"),
    "conn-then-submits": frame(1) + b"".join(frame(2, b"%08d" % i, b"x" * i) for i in range(5)),
    "binary-id": frame(2, bytes([0, 255, 1, 254, 128, 127, 0, 0]), b"\0" * 3),
    "pipelined-20": b"".join(frame(2, b"%08d" % i, b"p") for i in range(20)),
    "partial-tail": frame(2, payload=b"a") + frame(2, payload=b"bcdef")[:9],
    "header-only": struct.pack(">I", 30),
    "three-bytes": b"\0\0\0",
    "len-0": raw(0, b"\x02"),
    "len-4": raw(4, b""),
    "len-5-submit": raw(5, b"\x02"),
    "len-12-body-short": raw(12, b"\x02" + b"1234567"),
    "len-13-exact": raw(13, b"\x01" + b"12345678"),
    "len-max": raw(0xFFFFFFFF, b"\x02"),
    "len-too-large": raw(65537, b"\x02"),
    "cmd-0": raw(13, b"\x00" + b"12345678"),
    "cmd-3": raw(13, b"\x03" + b"12345678"),
    "cmd-connack": raw(14, b"\x80" + b"12345678\0"),
    "cmd-submitack": raw(14, b"\x81" + b"12345678\0"),
    "valid-then-bad": frame(2) + frame(1) + raw(9, b"\x02abcd") + frame(2),
    "valid-then-too-large": frame(2) + raw(1 << 20, b"\x02") + b"x" * 20,
    "big-payload": frame(2, payload=bytes(range(256)) * 6),
    "ack-submit": ack(0x81),
    "ack-conn-refused": ack(0x80, result=1),
    "ack-bad-len": struct.pack(">I", 15) + bytes([0x81]) + b"12345678\0\0",
}

proto_max = {
    "": 65536,
    "-max13": 13,
    "-max4": 4,
    "-max0": 0,
}


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    pdir = os.path.join(HERE, "corpus", "proto")
    cdir = os.path.join(HERE, "corpus", "conn")
    for name, s in streams.items():
        write(pdir, name, struct.pack(">I", 65536) + s)
    for suffix, m in proto_max.items():
        if suffix:
            write(pdir, "submit" + suffix, struct.pack(">I", m) + streams["submit"])
    # conn: max_frame - 13 (2 bytes), read_size/16 - 1, flags, k chunk lengths at the end.
    conn_cases = [
        ("submit", 65536, 0, 0, []),
        ("conn-then-submits", 65536, 0, 0, [0, 1, 2, 3, 4, 5, 6, 7]),
        ("pipelined-20", 65536, 0, 1, []),
        ("pipelined-20", 65536, 0, 2, [12, 0, 200]),
        ("partial-tail", 65536, 0, 0, [3]),
        ("valid-then-bad", 65536, 0, 0, [0] * 30),
        ("valid-then-bad", 65536, 0, 2, []),
        ("valid-then-too-large", 65536, 0, 0, [5]),
        ("big-payload", 65536, 0, 0, [16, 255]),
        ("big-payload", 65536, 0, 2, [100, 255, 255]),
        ("big-payload", 100, 0, 0, []),
        ("len-13-exact", 13, 0, 0, []),
        ("len-12-body-short", 65536, 0, 0, [4, 0]),
        ("cmd-connack", 65536, 0, 0, []),
        ("len-max", 65536, 0, 2, []),
        ("three-bytes", 65536, 0, 0, []),
        # TLS (flags bit 2): one client record per chunk; read_size 16 (rs 0)
        # leaves most of a record pending in the transport.
        ("submit", 65536, 0, 4, []),
        ("pipelined-20", 65536, 0, 4, [12, 0, 200]),
        ("conn-then-submits", 65536, 0, 4, []),
        ("big-payload", 65536, 0, 4, [255, 255, 255]),
        ("big-payload", 65536, 15, 4, [100]),
        ("valid-then-bad", 65536, 0, 4, [0, 20]),
        ("valid-then-too-large", 65536, 0, 4, []),
        ("partial-tail", 65536, 0, 12, [3]),
        ("pipelined-20", 65536, 2, 12, []),
    ]
    for i, (name, mx, rs, flags, chunks) in enumerate(conn_cases):
        mx = min(max(mx - 13, 0), 0xFFFF)
        data = struct.pack(">HBBB", mx, rs, flags, len(chunks)) + streams[name]
        data += bytes(reversed(chunks))
        write(cdir, "%02d-%s" % (i, name), data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
