#!/usr/bin/env python3
"""Byte-level client for the submit protocol (docs/PROTOCOL.md), for tests.

Every subcommand checks what the server sends byte for byte, prints a short
result line, and exits 0 if the server behaved as the protocol says, 1 if
not (with the reason on stderr), 2 on a usage error.
"""
import argparse
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

CONN, SUBMIT, CONNACK, SUBMITACK = 0x01, 0x02, 0x80, 0x81
ACK_LEN = 14


class Fail(Exception):
    pass


def ident(i):
    return b"%08d" % (i % 100000000)


def request(cmd, id8, payload=b""):
    return struct.pack(">IB", 13 + len(payload), cmd) + id8 + payload


def ack(cmd, id8, result=0):
    return struct.pack(">IB", ACK_LEN, cmd) + id8 + bytes([result])


def connect(args):
    src = (args.bind, 0) if getattr(args, "bind", None) else None
    s = socket.create_connection((args.host, args.port), timeout=args.timeout, source_address=src)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n, what):
    """n bytes, or Fail naming what came instead."""
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = s.recv(n - len(buf))
        except socket.timeout:
            raise Fail("%s: timed out after %d of %d bytes" % (what, len(buf), n))
        except ConnectionResetError:
            raise Fail("%s: connection reset after %d of %d bytes" % (what, len(buf), n))
        if not chunk:
            raise Fail("%s: EOF after %d of %d bytes" % (what, len(buf), n))
        buf += chunk
    return bytes(buf)


def expect_eof(s, what):
    """The server closes: EOF (or a reset) with no further bytes."""
    try:
        extra = s.recv(4096)
    except socket.timeout:
        raise Fail("%s: connection still open after %.1f s" % (what, s.gettimeout()))
    except ConnectionResetError:
        return "reset"
    if extra:
        raise Fail("%s: %d unexpected bytes instead of EOF: %s" % (what, len(extra), extra[:32].hex()))
    # A TLS connection (tlsclient.py) says how: close_notify, or a FIN alone.
    return s.close_kind() if hasattr(s, "close_kind") else "eof"


def check_acks(data, ids, cmd=SUBMITACK, first=0):
    for k, id8 in enumerate(ids):
        got = data[k * ACK_LEN:(k + 1) * ACK_LEN]
        want = ack(cmd, id8)
        if got != want:
            raise Fail("ack %d: got %s, want %s" % (first + k, got.hex(), want.hex()))


def sender(s, data, errors, step):
    try:
        if step:
            for i in range(0, len(data), step):
                s.sendall(data[i:i + step])
        else:
            s.sendall(data)
    except OSError as e:
        errors.append(e)


def send_async(s, data, step=0):
    """Send in a thread so a large pipeline never deadlocks against our own reads."""
    errors = []
    t = threading.Thread(target=sender, args=(s, data, errors, step), daemon=True)
    t.start()
    return t, errors


def roundtrip_on(s, cmd, id8, payload=b""):
    s.sendall(request(cmd, id8, payload))
    got = recv_exact(s, ACK_LEN, "ack")
    want = ack(CONNACK if cmd == CONN else SUBMITACK, id8)
    if got != want:
        raise Fail("got %s, want %s" % (got.hex(), want.hex()))
    return got


def cmd_roundtrip(args):
    cmd = CONN if args.cmd == "conn" else SUBMIT
    id8 = args.id.encode() if args.id else b"00000042"
    if len(id8) != 8:
        raise Fail("--id must be 8 bytes")
    s = connect(args)
    got = roundtrip_on(s, cmd, id8, b"x" * args.payload)
    print(got.hex())


def cmd_pipeline(args):
    n = args.n
    ids = [ident(i) for i in range(n)]
    s = connect(args)
    cmds = [CONN if args.mixed and i % 5 == 0 else SUBMIT for i in range(n)]
    data = b"".join(request(c, ids[i], b"p" * (i % args.payload_max)) for i, c in enumerate(cmds))
    t, errors = send_async(s, data)
    got = recv_exact(s, n * ACK_LEN, "%d acks" % n)
    t.join(args.timeout)
    if errors:
        raise Fail("send: %s" % errors[0])
    for i in range(n):
        want = ack(CONNACK if cmds[i] == CONN else SUBMITACK, ids[i])
        if got[i * ACK_LEN:(i + 1) * ACK_LEN] != want:
            raise Fail("ack %d: got %s, want %s" % (i, got[i * ACK_LEN:(i + 1) * ACK_LEN].hex(), want.hex()))
    # Nothing beyond the n acks.
    s.settimeout(0.2)
    try:
        extra = s.recv(1)
        if extra:
            raise Fail("extra bytes after %d acks" % n)
    except socket.timeout:
        pass
    print("acked %d in order" % n)


BAD = {
    # total_len 4: shorter than a header and a command byte.
    "short": lambda a: struct.pack(">I", 4),
    # Only the header: the server must decide from it alone.
    "large": lambda a: struct.pack(">I", a.len),
    # A complete 13-byte frame with command 0x03.
    "unknown": lambda a: struct.pack(">IB", 13, a.command) + b"BADCMD01",
    # A Submit of total_len 8: 3 bytes of id, no room for 8.
    "body": lambda a: struct.pack(">IB", 8, SUBMIT) + b"abc",
}


def cmd_bad(args):
    other = None
    if args.other:
        other = connect(args)
        roundtrip_on(other, SUBMIT, b"OTHER000")
    s = connect(args)
    k = args.before
    ids = [ident(i) for i in range(k)]
    data = b"".join(request(SUBMIT, i) for i in ids) + BAD[args.kind](args)
    if args.split:
        # The good frames first, the bad one in a later segment.
        s.sendall(data[:-len(BAD[args.kind](args))])
        s.sendall(BAD[args.kind](args))
    else:
        s.sendall(data)
    got = recv_exact(s, k * ACK_LEN, "%d acks before the bad frame" % k)
    check_acks(got, ids)
    how = expect_eof(s, "after the bad frame")
    if other is not None:
        # The other connection is unaffected, before and after.
        roundtrip_on(other, SUBMIT, b"OTHER001")
        roundtrip_on(other, CONN, b"OTHER002")
    print("acks %d %s" % (k, how))


def cmd_halfclose(args):
    n = args.n
    ids = [ident(i) for i in range(n)]
    s = connect(args)
    s.sendall(b"".join(request(SUBMIT, i) for i in ids))
    s.shutdown(socket.SHUT_WR)
    got = recv_exact(s, n * ACK_LEN, "%d acks after half-close" % n)
    check_acks(got, ids)
    how = expect_eof(s, "after the acks")
    print("acks %d %s" % (n, how))


def cmd_hold(args):
    """Open n connections, print "connected n", keep them for --hold s, until
    SIGTERM, or with --stdin until stdin closes. With --again, each SIGUSR1
    does one more round trip on every connection and prints "again n"; a
    failure ends the client with status 1."""
    socks = []
    for i in range(args.n):
        socks.append(connect(args))
        if args.verify:
            roundtrip_on(socks[-1], SUBMIT, ident(i))
    asked = []
    if args.again:
        signal.signal(signal.SIGUSR1, lambda *_: asked.append(1))
    print("connected %d" % len(socks), flush=True)
    deadline = time.monotonic() + args.hold
    rounds = 0
    while time.monotonic() < deadline:
        if asked:
            asked.clear()
            rounds += 1
            for i, s in enumerate(socks):
                roundtrip_on(s, SUBMIT, ident(rounds * args.n + i))
            print("again %d" % len(socks), flush=True)
        wait = [sys.stdin] if args.stdin else []
        # Short waits when SIGUSR1 may ask for a round (select resumes after a handler).
        left = max(0.0, deadline - time.monotonic())
        r, _, _ = select.select(wait, [], [], min(left, 0.05) if args.again else left)
        if r and not os.read(sys.stdin.fileno(), 4096):
            break
    for s in socks:
        s.close()


def cmd_idle(args):
    """The server closes an idle connection within [min, max] seconds."""
    s = connect(args)
    s.settimeout(args.max)
    if args.send_first:
        roundtrip_on(s, SUBMIT, b"IDLE0000")
    t0 = time.monotonic()
    how = expect_eof(s, "idle connection")
    dt = time.monotonic() - t0
    if dt < args.min:
        raise Fail("closed after %.2f s, before %.2f s" % (dt, args.min))
    print("closed after %.2f s (%s)" % (dt, how))


def cmd_maxconn(args):
    """n connections work, connection n+1 is closed at once, the n still work."""
    socks = []
    for i in range(args.n):
        socks.append(connect(args))
        roundtrip_on(socks[-1], SUBMIT, ident(i))
    extra = connect(args)
    extra.settimeout(args.within)
    how = expect_eof(extra, "connection %d" % (args.n + 1))
    for i, s in enumerate(socks):
        roundtrip_on(s, SUBMIT, ident(100 + i))
    print("%d served, extra closed (%s)" % (args.n, how))


def cmd_frame(args):
    """Send one Submit of total_len len: print "ack" or "closed"."""
    if args.len < 13:
        raise Fail("--len must be at least 13")
    s = connect(args)
    id8 = b"SIZE%04d" % (args.len % 10000)
    s.sendall(request(SUBMIT, id8, b"z" * (args.len - 13)))
    try:
        first = s.recv(ACK_LEN)
    except ConnectionResetError:
        first = b""
    if not first:
        print("closed")
        return
    got = first + recv_exact(s, ACK_LEN - len(first), "ack")
    if got != ack(SUBMITACK, id8):
        raise Fail("got %s" % got.hex())
    print("ack")


def cmd_raw(args):
    """Send hex bytes, print the hex of what comes back: --bytes N of it, or all until EOF.
    With --eof, the server must then close (EOF or reset) within --timeout: the
    output is the hex and "eof" or "reset", and a connection left open fails."""
    s = connect(args)
    s.sendall(bytes.fromhex(args.hex))
    out = bytearray()
    how = None
    try:
        while args.bytes is None or len(out) < args.bytes:
            chunk = s.recv(65536 if args.bytes is None else args.bytes - len(out))
            if not chunk:
                how = "eof"
                break
            out += chunk
    except ConnectionResetError:
        how = "reset"
    except socket.timeout:
        if args.eof:
            raise Fail("no close within %.1f s, after %d bytes: %s" % (args.timeout, len(out), out.hex()))
    if args.eof:
        if how is None:
            how = expect_eof(s, "after %d bytes" % len(out))
        print(("%s %s" % (out.hex(), how)).strip())
        return
    print(out.hex())


def cmd_trickle(args):
    """n frames of varied sizes, sent one byte per send(): frames must be reassembled."""
    s = connect(args)
    ids = [ident(i) for i in range(args.n)]
    cmds = [CONN if i % 2 else SUBMIT for i in range(args.n)]
    data = b"".join(request(c, ids[i], b"t" * (i * 7)) for i, c in enumerate(cmds))
    t, errors = send_async(s, data, step=1)
    got = recv_exact(s, args.n * ACK_LEN, "%d acks" % args.n)
    t.join(args.timeout)
    if errors:
        raise Fail("send: %s" % errors[0])
    for i in range(args.n):
        want = ack(CONNACK if cmds[i] == CONN else SUBMITACK, ids[i])
        if got[i * ACK_LEN:(i + 1) * ACK_LEN] != want:
            raise Fail("ack %d: got %s" % (i, got[i * ACK_LEN:(i + 1) * ACK_LEN].hex()))
    print("acked %d frames sent in %d single-byte writes" % (args.n, len(data)))


def cmd_keepalive(args):
    """A connection that sends a Submit every --every s for --for s is never closed as idle."""
    s = connect(args)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < args.duration:
        roundtrip_on(s, SUBMIT, ident(i))
        i += 1
        time.sleep(args.every)  # the client's pace, not synchronisation
    roundtrip_on(s, SUBMIT, ident(i))
    print("alive after %d requests over %.1f s" % (i + 1, time.monotonic() - t0))


def parser(description=__doc__):
    """The command line: (parser, subparsers; sub.choices maps a name to its
    parser), so that tlsclient.py serves the same subcommands over TLS and
    adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("SD_PORT", "0")))
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--bind", help="the source address (127.0.0.2: another client address)")
    sub = p.add_subparsers(dest="sub", required=True)

    a = sub.add_parser("roundtrip")
    a.add_argument("--cmd", choices=["submit", "conn"], default="submit")
    a.add_argument("--id")
    a.add_argument("--payload", type=int, default=0)
    a.set_defaults(fn=cmd_roundtrip)

    a = sub.add_parser("pipeline")
    a.add_argument("n", type=int)
    a.add_argument("--mixed", action="store_true", help="every fifth request a Conn")
    a.add_argument("--payload-max", type=int, default=1)
    a.set_defaults(fn=cmd_pipeline)

    a = sub.add_parser("bad")
    a.add_argument("kind", choices=sorted(BAD))
    a.add_argument("--before", type=int, default=0)
    a.add_argument("--len", type=lambda v: int(v, 0), default=0x7FFFFFFF)
    a.add_argument("--command", type=lambda v: int(v, 0), default=0x03)
    a.add_argument("--other", action="store_true", help="check another connection keeps working")
    a.add_argument("--split", action="store_true")
    a.set_defaults(fn=cmd_bad)

    a = sub.add_parser("halfclose")
    a.add_argument("n", type=int)
    a.set_defaults(fn=cmd_halfclose)

    a = sub.add_parser("hold")
    a.add_argument("n", type=int)
    a.add_argument("--hold", type=float, default=60.0)
    a.add_argument("--verify", action="store_true", help="one roundtrip on each")
    a.add_argument("--stdin", action="store_true", help="also stop when stdin closes")
    a.add_argument("--again", action="store_true", help="a round trip on each at SIGUSR1")
    a.set_defaults(fn=cmd_hold)

    a = sub.add_parser("idle")
    a.add_argument("--min", type=float, default=0.0)
    a.add_argument("--max", type=float, default=5.0)
    a.add_argument("--send-first", action="store_true")
    a.set_defaults(fn=cmd_idle)

    a = sub.add_parser("maxconn")
    a.add_argument("n", type=int)
    a.add_argument("--within", type=float, default=3.0)
    a.set_defaults(fn=cmd_maxconn)

    a = sub.add_parser("frame")
    a.add_argument("--len", type=int, required=True)
    a.set_defaults(fn=cmd_frame)

    a = sub.add_parser("raw")
    a.add_argument("hex")
    a.add_argument("--bytes", type=int)
    a.add_argument("--eof", action="store_true", help="then expect the server to close")
    a.set_defaults(fn=cmd_raw)

    a = sub.add_parser("trickle")
    a.add_argument("n", type=int)
    a.set_defaults(fn=cmd_trickle)

    a = sub.add_parser("keepalive")
    a.add_argument("--every", type=float, default=0.3)
    a.add_argument("--for", dest="duration", type=float, default=2.5)
    a.set_defaults(fn=cmd_keepalive)
    return p, sub


def run(p, args, name="sdclient"):
    if not args.port:
        p.error("--port (or SD_PORT) is required")
    try:
        args.fn(args)
    except (Fail, OSError) as e:
        print("%s %s: %s" % (name, args.sub, e), file=sys.stderr)
        sys.exit(1)


def main():
    p, _ = parser()
    run(p, p.parse_args())


if __name__ == "__main__":
    main()
