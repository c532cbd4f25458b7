#!/usr/bin/env python3
"""Hold N TCP connections to a TLS port stalled in the handshake (bench/tls.sh).

    bench/tls-stall.py PORT N SECONDS

Opens N connections to 127.0.0.1:PORT: the even ones send nothing, the odd
ones the first half of a real ClientHello (made by Python's ssl module), so
the server waits for the rest. A connection the server closes (its handshake
timeout) is opened again, so N stay open. Prints "open N" on stdout once all
N are connected, and at the end (after SECONDS, or at SIGTERM) one JSON line:
{"open": ..., "opened": ..., "closed_by_server": ..., "connect_errors": ...}.
"""
import errno
import json
import selectors
import signal
import socket
import ssl
import sys
import time


def client_hello():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def main():
    port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    half = client_hello()
    half = half[: len(half) // 2]
    sel = selectors.DefaultSelector()
    stats = {"open": 0, "opened": 0, "closed_by_server": 0, "connect_errors": 0}
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    pending = list(range(n))  # slots to (re)connect
    conns = {}
    announced = False
    end = time.monotonic() + secs

    def open_slot(i):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            stats["connect_errors"] += 1
            s.close()
            pending.append(i)
            return
        conns[s.fileno()] = (s, i, False)
        sel.register(s, selectors.EVENT_WRITE, i)

    while not stop[0] and time.monotonic() < end:
        # At most 200 connects a turn: stay under the server's accept backlog.
        for _ in range(min(200, len(pending))):
            open_slot(pending.pop(0))
        for key, ev in sel.select(timeout=0.05):
            s, i, up = conns[key.fd]
            if not up:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    stats["connect_errors"] += 1
                    sel.unregister(s)
                    del conns[key.fd]
                    s.close()
                    pending.append(i)
                    continue
                if i % 2:
                    s.send(half)
                conns[key.fd] = (s, i, True)
                stats["opened"] += 1
                stats["open"] += 1
                sel.modify(s, selectors.EVENT_READ, i)
                continue
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:  # closed (or reset) by the server: open another
                stats["closed_by_server"] += 1
                stats["open"] -= 1
                sel.unregister(s)
                del conns[key.fd]
                s.close()
                pending.append(i)
        if not announced and stats["open"] >= n:
            print("open %d" % n, flush=True)
            announced = True
    for s, _, _ in conns.values():
        s.close()
    print(json.dumps(stats), flush=True)


main()
