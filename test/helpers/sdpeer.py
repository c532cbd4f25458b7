#!/usr/bin/env python3
"""Clients that misbehave on purpose, for the shutdown, limits and
backpressure suites. They use sdclient's codec and print one line per event,
so a test can wait for a line (wait_for grep) and then check the server.

  partial   a Submit stopped in the middle; SIGUSR1 sends the rest
  stall     pipelines without reading its acks; SIGUSR1 makes it read them
  fill      opens connections until N are served; SIGUSR1: a round trip on each
"""
import argparse
import os
import select
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ next to the tests
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sdclient import ACK_LEN, SUBMIT, SUBMITACK, Fail, ack, ident, request  # noqa: E402

asked = []


def on_usr1(*_):
    asked.append(1)


def connect(args, rcvbuf=0):
    s = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    if rcvbuf:
        # Before connect(): a small window, so that few acks hide in the kernel.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(args.timeout)
    s.connect((args.host, args.port))
    return s


def closed_line(s, data=b""):
    """Wait (up to --timeout) for the server to close s; "closed at T how n"
    with T the Unix time and n the bytes that came before the close."""
    how = "timeout"
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                how = "eof"
                break
            data += chunk
    except ConnectionResetError:
        how = "reset"
    except socket.timeout:
        pass
    return "closed at %.6f %s %d" % (time.time(), how, len(data))


def cmd_partial(args):
    """Send the first --first bytes of a 13-byte Submit, print "held", then
    wait. If the server closes first: print the "closed" line. On SIGUSR1:
    send the rest, expect exactly its ack ("acked"), then the close."""
    s = connect(args)
    id8 = args.id.encode()
    frame = request(SUBMIT, id8)
    s.sendall(frame[:args.first])
    print("held", flush=True)
    deadline = time.monotonic() + args.timeout
    while not asked:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Fail("neither closed nor asked to finish within %.0f s" % args.timeout)
        r, _, _ = select.select([s], [], [], min(left, 0.05))
        if r:
            print(closed_line(s), flush=True)
            return
    s.sendall(frame[args.first:])
    got = b""
    while len(got) < ACK_LEN:
        try:
            chunk = s.recv(ACK_LEN - len(got))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            print(closed_line(s, got), flush=True)
            raise Fail("closed after %d bytes of the ack" % len(got))
        got += chunk
    if got != ack(SUBMITACK, id8):
        raise Fail("ack %s, want %s" % (got.hex(), ack(SUBMITACK, id8).hex()))
    print("acked", flush=True)
    print(closed_line(s), flush=True)


def cmd_stall(args):
    """Pipeline Submits without reading a byte; print "stalled SENT" each time
    the socket takes nothing for --stall s (SENT: bytes sent so far), "sent
    all" if --max bytes went through. On SIGUSR1: finish the frame in
    progress, read and check every ack, print "acked N", close."""
    s = connect(args, rcvbuf=65536)
    s.setblocking(False)
    batch = 4096
    frames, sent, pending = 0, 0, b""
    last_progress, reported = time.monotonic(), False
    while not asked:
        if not pending:
            if sent >= args.max:
                print("sent all %d" % sent, flush=True)
                break
            pending = b"".join(request(SUBMIT, ident(frames + k)) for k in range(batch))
            frames += batch
        _, w, _ = select.select([], [s], [], 0.05)
        if w:
            try:
                n = s.send(pending)
            except BlockingIOError:
                n = 0
            if n:
                pending = pending[n:]
                sent += n
                last_progress, reported = time.monotonic(), False
        if not reported and time.monotonic() - last_progress >= args.stall:
            print("stalled %d" % sent, flush=True)
            reported = True
    while not asked:
        time.sleep(0.05)  # the client's pace: it has nothing to do until asked
    # Complete the frame in progress (the rest of the batch is dropped), then read.
    tail = (-sent) % 13
    pending = pending[:tail]
    total = (sent + tail) // 13
    got = bytearray()
    deadline = time.monotonic() + args.timeout
    while len(got) < total * ACK_LEN or pending:
        if time.monotonic() > deadline:
            raise Fail("%d of %d acks after %.0f s" % (len(got) // ACK_LEN, total, args.timeout))
        r, w, _ = select.select([s], [s] if pending else [], [], 0.5)
        if w:
            try:
                n = s.send(pending)
                pending = pending[n:]
            except BlockingIOError:
                pass
        if r:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise Fail("EOF after %d of %d acks" % (len(got) // ACK_LEN, total))
            got += chunk
    if len(got) != total * ACK_LEN:
        raise Fail("%d bytes of acks, want %d" % (len(got), total * ACK_LEN))
    for i in range(total):
        if got[i * ACK_LEN:(i + 1) * ACK_LEN] != ack(SUBMITACK, ident(i)):
            raise Fail("ack %d: %s" % (i, bytes(got[i * ACK_LEN:(i + 1) * ACK_LEN]).hex()))
    print("acked %d" % total, flush=True)


def cmd_fill(args):
    """Open connections one at a time, each with a round trip, until --n are
    served or --attempts were made; a refused one must be closed with no
    byte. Prints "served S refused R"; keeps the served ones open until
    SIGTERM; on SIGUSR1 a round trip on each, then "again S"."""
    served, refused = [], 0
    for i in range(args.attempts):
        if len(served) >= args.n:
            break
        s = connect(args)
        s.sendall(request(SUBMIT, ident(i)))
        got = b""
        try:
            while len(got) < ACK_LEN:
                chunk = s.recv(ACK_LEN - len(got))
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        if got == ack(SUBMITACK, ident(i)):
            served.append(s)
        elif got == b"":
            refused += 1
            s.close()
        else:
            raise Fail("attempt %d: %d bytes, neither an ack nor a refusal: %s" % (i, len(got), got.hex()))
    print("served %d refused %d" % (len(served), refused), flush=True)
    rounds = 0
    while True:
        if asked:
            asked.clear()
            rounds += 1
            for k, s in enumerate(served):
                id8 = ident(100000 * rounds + k)
                s.sendall(request(SUBMIT, id8))
                got = b""
                while len(got) < ACK_LEN:
                    chunk = s.recv(ACK_LEN - len(got))
                    if not chunk:
                        raise Fail("round %d: connection %d closed" % (rounds, k))
                    got += chunk
                if got != ack(SUBMITACK, id8):
                    raise Fail("round %d: connection %d: %s" % (rounds, k, got.hex()))
            print("again %d" % len(served), flush=True)
        time.sleep(0.05)  # idle until a signal


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("SD_PORT", "0")))
    p.add_argument("--timeout", type=float, default=60.0)
    sub = p.add_subparsers(dest="sub", required=True)

    a = sub.add_parser("partial")
    a.add_argument("--first", type=int, default=7, help="bytes of the frame sent at first")
    a.add_argument("--id", default="PARTIAL0")
    a.set_defaults(fn=cmd_partial)

    a = sub.add_parser("stall")
    a.add_argument("--stall", type=float, default=2.0)
    a.add_argument("--max", type=int, default=256 << 20)
    a.set_defaults(fn=cmd_stall)

    a = sub.add_parser("fill")
    a.add_argument("n", type=int)
    a.add_argument("--attempts", type=int, default=40)
    a.set_defaults(fn=cmd_fill)

    args = p.parse_args()
    if not args.port:
        p.error("--port (or SD_PORT) is required")
    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        args.fn(args)
    except (Fail, OSError) as e:
        print("sdpeer %s: %s" % (args.sub, e), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
