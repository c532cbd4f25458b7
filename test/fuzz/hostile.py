#!/usr/bin/env python3
"""Hostile clients for test/hardening.bats: they misbehave on purpose.

  trickle   N connections that each send one byte of a frame that never
            completes, every --every seconds
  flood     one connection that sends Submits and never reads an ack
  metrics   abuse of the HTTP metrics endpoint: garbage, huge header lines,
            slow senders and slow readers, N connections at once
  hold      N connections opened and held, sending nothing
  rss       sample the resident memory of a process and its children

Each prints short progress lines on stdout (flushed), runs until its time
limit or SIGTERM, and prints a summary line last.
"""
import argparse
import errno
import os
import select
import selectors
import signal
import socket
import struct
import sys
import time

stop = False


def on_term(_sig, _frm):
    global stop
    stop = True


def say(*a):
    print(*a, flush=True)


def nb_connect(host, port, rcvbuf=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setblocking(False)
    err = s.connect_ex((host, port))
    if err not in (0, errno.EINPROGRESS):
        s.close()
        raise OSError(err, os.strerror(err))
    return s


def submit(i, payload=b""):
    return struct.pack(">IB", 13 + len(payload), 2) + b"%08d" % (i % 100000000) + payload


def cmd_trickle(a):
    """Connections that are never idle on the wire yet never complete a frame."""
    sel = selectors.DefaultSelector()
    # total_len within max_frame_size but far above what is ever sent.
    frame = struct.pack(">IB", 60000, 2) + b"t" * 64
    socks = {}
    t0 = time.monotonic()
    started = 0
    connected = 0
    closed = 0
    step = a.every / max(a.n, 1)
    next_send = {}
    while not stop and time.monotonic() - t0 < a.max:
        # At most 64 handshakes in flight: a burst past the listen backlog
        # would cost SYN retransmits, a second each.
        while started < a.n and started - connected - closed < 64:
            s = nb_connect(a.host, a.port)
            socks[s] = 0
            sel.register(s, selectors.EVENT_WRITE, started)
            started += 1
        now = time.monotonic()
        wait = min([t for t in next_send.values()] + [now + 0.2]) - now
        for key, ev in sel.select(max(wait, 0)):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE and s not in next_send:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    sel.unregister(s)
                    s.close()
                    del socks[s]
                    closed += 1
                    continue
                connected += 1
                # First byte now, then one every --every s, spread over the period.
                next_send[s] = now + (key.data * step) % a.every
                sel.modify(s, selectors.EVENT_READ, key.data)
                if connected == a.n:
                    say("connected %d in %.2f s" % (connected, now - t0))
            elif ev & selectors.EVENT_READ:
                try:
                    got = s.recv(4096)
                except OSError:
                    got = b""
                if got:
                    say("unexpected %d bytes from the server" % len(got))
                    continue
                sel.unregister(s)
                s.close()
                del socks[s]
                next_send.pop(s, None)
                closed += 1
                if closed == a.n:
                    say("all %d closed after %.2f s" % (closed, time.monotonic() - t0))
                    return 0
        now = time.monotonic()
        for s, t in list(next_send.items()):
            if t <= now:
                off = socks[s]
                if off < len(frame):
                    try:
                        s.send(frame[off:off + 1])
                        socks[s] = off + 1
                    except OSError:
                        pass
                next_send[s] = t + a.every
    say("stopped: %d connected, %d closed, %d open" % (connected, closed, len(socks)))
    return 0


def cmd_flood(a):
    """Send Submits without ever reading; report how far it got before the server stopped reading."""
    s = socket.create_connection((a.host, a.port))
    s.setblocking(False)
    block = b"".join(submit(i) for i in range(a.block // 13))
    sent = 0
    t0 = last_progress = last_report = time.monotonic()
    stalled = False
    off = 0
    while not stop and sent < a.bytes and time.monotonic() - t0 < a.max:
        now = time.monotonic()
        try:
            n = s.send(block[off:])
            sent += n
            off = (off + n) % len(block)
            last_progress = now
            stalled = False
        except BlockingIOError:
            if not stalled and now - last_progress >= a.stall:
                stalled = True
                say("stalled after %d bytes (%.1f s)" % (sent, now - t0))
            # The server owes us acks we never read: wait for room, bounded.
            select.select([], [s], [], 0.1)
        except OSError as e:
            say("send failed after %d bytes: %s" % (sent, e))
            return 1
        if now - last_report >= 1:
            say("sent %d" % sent)
            last_report = now
    say("done: sent %d bytes in %.1f s%s" % (sent, time.monotonic() - t0,
                                              " (stalled)" if stalled else ""))
    # Keep the connection (and its unread acks) until told to stop.
    while not stop and time.monotonic() - t0 < a.max:
        time.sleep(0.1)
    return 0


def cmd_metrics(a):
    """Keep --n connections to the metrics endpoint busy with bad behaviour."""
    kinds = ["slowloris", "garbage", "bigheader", "slowreader", "halfline", "binary"]
    sel = selectors.DefaultSelector()
    state = {}  # sock -> [kind, pending bytes, next drip time]
    big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    stats = {k: 0 for k in kinds}
    answers = {}
    t0 = time.monotonic()
    opened = 0
    i = 0
    drip = {}  # slowloris and slowreader sock -> time of its next byte
    next_report = t0 + 1
    budget = float(a.n)  # the first --n at once, then --rate a second
    last = t0

    def open_one(kind):
        nonlocal opened
        rcv = 2048 if kind == "slowreader" else 0
        try:
            s = nb_connect(a.host, a.port, rcv)
        except OSError:
            return
        opened += 1
        stats[kind] += 1
        if kind == "slowloris":
            data = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
        elif kind == "garbage":
            data = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200) + b"\r\n\r\n"
        elif kind == "bigheader":
            data = big
        elif kind == "slowreader":
            data = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50
        elif kind == "halfline":
            data = b"GET /" + b"A" * 60000
        else:
            data = b"BREW /metrics HTCPCP/1.0\r\n\x00\xff\xfe\r\n\r\n"
        state[s] = [kind, data, 0.0]
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)

    while not stop and time.monotonic() - t0 < a.max:
        now = time.monotonic()
        # Open (and reopen) at most --rate connections a second, up to --n at once.
        budget = min(budget + (now - last) * a.rate, a.n)
        last = now
        while len(state) < a.n and budget >= 1:
            open_one(kinds[i % len(kinds)])
            i += 1
            budget -= 1
        for key, ev in sel.select(0.05):
            s = key.fileobj
            st = state.get(s)
            if st is None:
                continue
            kind = st[0]
            if ev & selectors.EVENT_READ and kind == "slowreader":
                # Its answer is waiting: from now on 16 bytes a second (drip()).
                sel.unregister(s)
                drip[s] = now
                continue
            if ev & selectors.EVENT_READ:
                try:
                    got = s.recv(65536)
                except OSError:
                    got = b""
                if got:
                    if got.startswith(b"HTTP/"):
                        code = got.split(b" ", 2)[1].decode(errors="replace")
                        answers[code] = answers.get(code, 0) + 1
                    continue
                sel.unregister(s)
                s.close()
                del state[s]
                continue
            if ev & selectors.EVENT_WRITE:
                if kind == "slowloris":
                    # Connected: from now on one header byte a second (drip()).
                    drip[s] = now
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                if st[1]:
                    try:
                        n = s.send(st[1])
                        st[1] = st[1][n:]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        st[1] = b""
                if not st[1]:
                    sel.modify(s, selectors.EVENT_READ)
        for s, t in list(drip.items()):
            if s not in state:
                del drip[s]
            elif t <= now and state[s][0] == "slowreader":
                try:
                    got = s.recv(16)
                except BlockingIOError:
                    got = b"-"
                except OSError:
                    got = b""
                if not got:
                    s.close()
                    del state[s], drip[s]
                    continue
                drip[s] = now + 1.0
            elif t <= now:
                st = state[s]
                # Never the blank line that would end the header.
                try:
                    s.send(st[1][:1] if st[1] else b"X")
                except OSError:
                    pass
                st[1] = st[1][1:] if st[1] else b"-a: b\r\n"
                drip[s] = now + 1.0
        if now >= next_report:
            say("open %d opened %d" % (len(state), opened))
            next_report = now + 1
    say("metrics abuse: opened %d, open at end %d, by kind %s, HTTP answers %s" %
        (opened, len(state), stats, dict(sorted(answers.items()))))
    return 0


def cmd_hold(a):
    """N plain connections, held open without a byte; for descriptor exhaustion."""
    socks = []
    failed = 0
    for _ in range(a.n):
        try:
            socks.append(socket.create_connection((a.host, a.port), timeout=5))
        except OSError:
            failed += 1
    say("opened %d failed %d" % (len(socks), failed))
    t0 = time.monotonic()
    while not stop and time.monotonic() - t0 < a.max:
        time.sleep(0.1)
    for s in socks:
        s.close()
    say("closed %d" % len(socks))
    return 0


def tree_rss_kb(pid):
    """VmRSS of pid and its children, in KiB."""
    pids = [pid]
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        return None
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cmd_rss(a):
    """Print 'rss KIB' every --every s; the maximum on exit."""
    peak = 0
    t0 = time.monotonic()
    while not stop and time.monotonic() - t0 < a.max:
        v = tree_rss_kb(a.pid)
        if v is None:
            break
        peak = max(peak, v)
        say("rss %d" % v)
        time.sleep(a.every)
    say("peak %d" % peak)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--max", type=float, default=60, help="time limit, seconds")
    sub = p.add_subparsers(dest="cmd", required=True)
    x = sub.add_parser("trickle")
    x.add_argument("-n", type=int, default=1000)
    x.add_argument("--every", type=float, default=5)
    x = sub.add_parser("flood")
    x.add_argument("--bytes", type=int, default=1 << 30)
    x.add_argument("--block", type=int, default=65536)
    x.add_argument("--stall", type=float, default=2)
    x = sub.add_parser("metrics")
    x.add_argument("-n", type=int, default=1000)
    x.add_argument("--rate", type=float, default=200, help="connections reopened per second")
    x = sub.add_parser("hold")
    x.add_argument("-n", type=int, default=200)
    x = sub.add_parser("rss")
    x.add_argument("--pid", type=int, required=True)
    x.add_argument("--every", type=float, default=0.2)
    a = p.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    return {"trickle": cmd_trickle, "flood": cmd_flood, "metrics": cmd_metrics,
            "hold": cmd_hold, "rss": cmd_rss}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
