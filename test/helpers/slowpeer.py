#!/usr/bin/env python3
"""Clients that read their acks slowly or not at all, for the timeout tests.

  stall N: pipeline N Submits with a small receive buffer, then half-close,
      send a bad frame, or nothing (--then), and never read. Prints "sent"
      once every byte is in the kernel, then waits to be killed (--hold).
  slowread N: pipeline N Submits, read --chunk bytes every --every seconds
      for --slow-for seconds, then send one more Submit and read the rest at
      full speed; check every ack, then one more roundtrip on the same
      connection. Exits 0 when all of that worked.
"""
import argparse
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sdclient import ACK_LEN, SUBMIT, Fail, check_acks, ident, request, roundtrip_on  # noqa: E402


def connect(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connect(), so the window is small from the handshake on.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(args.timeout)
    s.connect((args.host, args.port))
    return s


def payload(n):
    return b"".join(request(SUBMIT, ident(i)) for i in range(n))


def cmd_stall(args):
    s = connect(args)
    data = payload(args.n)
    if args.then == "bad":
        data += bytes.fromhex("0000000d03") + b"BADCMD01"

    def send():
        try:
            s.sendall(data)
            if args.then == "halfclose":
                s.shutdown(socket.SHUT_WR)
            print("sent %d bytes" % len(data), flush=True)
        except OSError as e:
            print("send stopped: %s" % e, flush=True)

    threading.Thread(target=send, daemon=True).start()
    # Never read; stay until killed, at most --hold seconds.
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:
        time.sleep(0.2)


def cmd_slowread(args):
    n = args.n
    # Built before connecting: on a loaded machine building it can take
    # longer than the idle_timeout the test sets.
    data = payload(n)
    s = connect(args)
    ids = [ident(i) for i in range(n)] + [b"LAST0000"]
    errors = []
    slow_over = threading.Event()

    def send():
        try:
            s.sendall(data)
            # One more request once the slow phase is over: the connection
            # went without a new frame for all of it.
            slow_over.wait()
            s.sendall(request(SUBMIT, ids[-1]))
        except OSError as e:
            errors.append(e)

    threading.Thread(target=send, daemon=True).start()
    want = len(ids) * ACK_LEN
    got = bytearray()
    slow_reads = 0
    t0 = time.monotonic()
    while len(got) < want:
        slow = time.monotonic() - t0 < args.slow_for
        if slow:
            time.sleep(args.every)  # the reader's pace, not synchronisation
            slow_reads += 1
        else:
            slow_over.set()
        try:
            chunk = s.recv(min(args.chunk if slow else 1 << 20, want - len(got)))
        except socket.timeout:
            raise Fail("timed out after %d of %d ack bytes" % (len(got), want))
        except ConnectionResetError:
            raise Fail("reset after %d of %d ack bytes (%.1f s)" % (len(got), want, time.monotonic() - t0))
        if not chunk:
            raise Fail("EOF after %d of %d ack bytes (%.1f s)" % (len(got), want, time.monotonic() - t0))
        got += chunk
    # The connection still serves. At once: with nothing owed and no frame
    # for a while it is idle from here on.
    roundtrip_on(s, SUBMIT, b"AFTER000")
    s.close()
    if errors:
        raise Fail("send: %s" % errors[0])
    if slow_reads * args.chunk >= n * ACK_LEN:
        raise Fail("every ack was read in the slow phase: make n larger")
    check_acks(bytes(got), ids)
    print("acked %d: %d slow reads, then the rest, in %.1f s" % (n + 1, slow_reads, time.monotonic() - t0))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("SD_PORT", "0")))
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--rcvbuf", type=int, default=4096)
    sub = p.add_subparsers(dest="sub", required=True)

    a = sub.add_parser("stall")
    a.add_argument("n", type=int)
    a.add_argument("--then", choices=["halfclose", "bad", "nothing"], default="halfclose")
    a.add_argument("--hold", type=float, default=60.0)
    a.set_defaults(fn=cmd_stall)

    a = sub.add_parser("slowread")
    a.add_argument("n", type=int)
    a.add_argument("--chunk", type=int, default=4096)
    a.add_argument("--every", type=float, default=0.2)
    a.add_argument("--slow-for", type=float, default=3.0)
    a.set_defaults(fn=cmd_slowread)

    args = p.parse_args()
    if not args.port:
        p.error("--port (or SD_PORT) is required")
    try:
        args.fn(args)
    except (Fail, OSError) as e:
        print("slowpeer %s: %s" % (args.sub, e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
