#!/usr/bin/env python3
"""proxyclient.py: a client that begins with a PROXY protocol header, for tests.

  proxyclient.py --port P [--bind ADDR] [--tls CA] HEADER [--split N] [--submits K]
                 [--expect acks|close]

HEADER is one of
  v1:SRC:SPORT        "PROXY TCP4 SRC 127.0.0.1 SPORT PORT\\r\\n" (TCP6 for an IPv6 SRC)
  v1-unknown          "PROXY UNKNOWN\\r\\n"
  v2:SRC:SPORT        the binary header, PROXY over TCP, IPv4 or IPv6
  v2-local            the binary header, LOCAL (a balancer's health check)
  hex:HEX             these bytes as they are
  none                no header at all
The header is sent in pieces of --split bytes (each its own send, with
TCP_NODELAY, 20 ms apart: the server reads it over many reads), the first
Submit in the same send as the header's last piece. Then --submits K
Submits, each acked in order (over TLS with --tls CA: the handshake comes
after the header). Prints "acked K" and exits 0; with --expect close, the
server must close the connection without an ack byte: prints "closed" and
exits 0; --expect nothing sends the header and closes. The first line
printed is "local ADDR PORT", the client's end. --bind picks the source address (127.0.0.2 is outside
127.0.0.1/32). Exit 1 if the server did otherwise, with the reason.
"""
import argparse
import ipaddress
import socket
import ssl
import struct
import sys
import time

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def header(spec, dst_port):
    if spec == "none":
        return b""
    if spec == "v1-unknown":
        return b"PROXY UNKNOWN\r\n"
    if spec == "v2-local":
        return SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    if spec.startswith("hex:"):
        return bytes.fromhex(spec[4:])
    kind, rest = spec.split(":", 1)
    src, sport = rest.rsplit(":", 1)
    ip = ipaddress.ip_address(src.strip("[]"))
    if kind == "v1":
        fam, dst = ("TCP4", "127.0.0.1") if ip.version == 4 else ("TCP6", "::1")
        return ("PROXY %s %s %s %s %d\r\n" % (fam, ip, dst, sport, dst_port)).encode()
    if kind == "v2":
        if ip.version == 4:
            body = ip.packed + ipaddress.ip_address("127.0.0.1").packed
            fam = 0x11
        else:
            body = ip.packed + ipaddress.ip_address("::1").packed
            fam = 0x21
        body += struct.pack("!HH", int(sport), dst_port)
        return SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body
    raise SystemExit("proxyclient: bad header %r" % spec)


def submit(i):
    id8 = b"%08d" % i
    payload = b"proxy-%d" % i
    return struct.pack("!I", 4 + 1 + 8 + len(payload)) + b"\x02" + id8 + payload, id8


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def fail(msg):
    print("proxyclient: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default=None)
    p.add_argument("--tls", metavar="CA", default=None)
    p.add_argument("--split", type=int, default=0)
    p.add_argument("--submits", type=int, default=3)
    p.add_argument("--expect", choices=["acks", "close", "nothing"], default="acks")
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("header")
    a = p.parse_args()

    s = socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET)
    s.settimeout(a.timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if a.bind:
        s.bind((a.bind, 0))
    s.connect((a.host, a.port))
    print("local %s %d" % s.getsockname()[:2], flush=True)
    hdr = header(a.header, a.port)
    first, first_id = submit(0)
    pieces = [hdr]
    if a.split > 0 and hdr:
        pieces = [hdr[i:i + a.split] for i in range(0, len(hdr), a.split)]
    # The first Submit rides with the header when acks are expected, or
    # alone (no header): refusals of a header get the header only.
    if a.tls is None and (a.expect == "acks" or not hdr):
        pieces[-1] = pieces[-1] + first
    try:
        for k, piece in enumerate(pieces):
            if piece:
                s.sendall(piece)
            if k + 1 < len(pieces):
                time.sleep(0.02)
    except OSError as e:
        if a.expect == "close":
            print("closed")
            return 0
        fail("send: %s" % e)
    if a.expect == "nothing":
        s.close()
        print("sent")
        return 0
    conn = s
    if a.tls is not None:
        ctx = ssl.create_default_context(cafile=a.tls)
        try:
            conn = ctx.wrap_socket(s, server_hostname="localhost")
        except (ssl.SSLError, OSError) as e:
            if a.expect == "close":
                print("closed")
                return 0
            fail("TLS handshake: %s" % e)
        conn.sendall(first)
    got = b""
    try:
        got = recv_exact(conn, 14)
    except (ConnectionResetError, ssl.SSLError):
        got = b""
    if a.expect == "close":
        if got:
            fail("expected a close without an ack, got %r" % got)
        print("closed")
        return 0
    want = struct.pack("!I", 14) + b"\x81" + first_id + b"\x00"
    if got != want:
        fail("first ack: got %r, want %r" % (got, want))
    for i in range(1, a.submits):
        req, id8 = submit(i)
        conn.sendall(req)
        got = recv_exact(conn, 14)
        if got != struct.pack("!I", 14) + b"\x81" + id8 + b"\x00":
            fail("ack %d: got %r" % (i, got))
    print("acked %d" % max(a.submits, 1))
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
