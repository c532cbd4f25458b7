#!/usr/bin/env python3
"""TLS client for the submit protocol (docs/PROTOCOL.md on a tls:// listener),
for tests and benchmarks.

Every sdclient.py subcommand (roundtrip, pipeline, bad, halfclose, hold,
idle, trickle, keepalive, ...) runs here over TLS: the same code, with
sdclient's connect() replaced by a TLS one. A half-close (halfclose, and
stall --then halfclose) is shutdown(SHUT_WR) of the TCP socket, or with
--half-close close_notify the TLS close_notify alone; where sdclient prints
how the server closed ("eof" or "reset"), it prints here "close_notify" (a
close_notify, then the FIN), "eof" (a FIN without close_notify) or "reset".
Added:

  fingerprint   a round trip; prints the server certificate's SHA-256
                fingerprint (as `openssl x509 -fingerprint -sha256` writes
                it) and the protocol version
  resume        a round trip, then a new connection with the session (its
                ticket): prints "resumed yes|no VERSION"
  spoolpipe N   N pipelined Submits with submit-bench's --tag-payload
                payloads; one "conn id result" line per ack appended to
                --ack-log, for `spoolcheck.py bench`
  hello         a part of a ClientHello, then close, or wait for the server
                to close ("closed after T s eof|reset")
  flood N       N TCP connections stalled in the handshake (nothing or half
                a ClientHello sent); "stalled N", then held until SIGTERM
  stall         pipelines without reading its acks, as sdpeer.py stall:
                "stalled SENT" when the socket takes nothing for --stall s;
                SIGUSR1: read and check every ack, "acked N"
  load          C connections doing round trips until SIGINT, SIGTERM or
                --duration, reconnecting after a close between two acks;
                prints one JSON line: acked, lost (closed with a request
                unacked), reconnects, errors, the fingerprints seen

Without --ca the server is not verified. Exit status: 0 when the server
behaved as the protocol says, 1 if not (the reason on stderr), 2 usage.
"""
import hashlib
import json
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ next to the tests
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sdclient  # noqa: E402
from sdclient import ACK_LEN, SUBMIT, SUBMITACK, Fail, ack, check_acks, ident, recv_exact, request  # noqa: E402
from spoolcheck import bench_payload  # noqa: E402

RECORD = 16384  # the largest TLS record's plaintext


class TLSSocket:
    """A TLS client connection over a TCP socket, through memory BIOs, so that
    the test sees each record leave: it can half-close the TCP side or send
    close_notify alone and go on reading (SSLSocket.unwrap() waits for the
    peer's close_notify and fails on the acks that come before it). The
    socket methods sdclient uses are here; .raw is the TCP socket."""

    def __init__(self, raw, ctx, hostname=None, session=None, half_close="tcp"):
        self.raw = raw
        self.half_close = half_close
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=hostname, session=session)
        self.lock = threading.Lock()  # the SSL object: one thread at a time
        self.wlock = threading.Lock()  # records go out in the order they were made
        self.how = None  # how the server closed: close_notify, eof (FIN alone), reset
        self._handshake()

    def _handshake(self):
        while True:
            try:
                with self.lock:
                    self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        self._flush()

    def _fill(self):
        """One read from the TCP socket into the TLS engine."""
        if self.inc.eof:
            raise Fail("read past the server's EOF")
        try:
            data = self.raw.recv(65536)
        except ConnectionResetError:
            self.how = "reset"
            raise
        with self.lock:
            if data:
                self.inc.write(data)
            else:
                self.inc.write_eof()

    def _flush(self, wait=True):
        """Send what the engine has made; without wait, only if no sender holds the socket."""
        if not self.wlock.acquire(blocking=wait):
            return
        try:
            with self.lock:
                data = self.out.read()
            if data:
                self.raw.sendall(data)
        finally:
            self.wlock.release()

    def encrypt(self, data):
        """The records of data, to be sent in this order."""
        with self.lock:
            self.obj.write(data)
            return self.out.read()

    def feed(self, data):
        with self.lock:
            if data:
                self.inc.write(data)
            else:
                self.inc.write_eof()

    def read_ready(self, n=1 << 20):
        """What the engine can decrypt now, without reading the socket; None
        once the server closed (self.how says how)."""
        out = bytearray()
        while len(out) < n:
            try:
                with self.lock:
                    chunk = self.obj.read(n - len(out))
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # after our own close_notify (Python returns b"" only before)
                chunk = b""
            except ssl.SSLEOFError:
                self.how = "eof"
                chunk = b""
            if not chunk:
                self.how = self.how or "close_notify"
                return bytes(out) if out else None
            out += chunk
        return bytes(out)

    def recv(self, n):
        """Up to n bytes; b"" once the server closed (self.how says how)."""
        while True:
            try:
                with self.lock:
                    data = self.obj.read(n)
                if not data:
                    self.how = self.how or "close_notify"
                return data
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:  # after our own close_notify (Python returns b"" only before)
                self.how = self.how or "close_notify"
                return b""
            except ssl.SSLEOFError:
                self.how = "eof"
                return b""
            self._flush(wait=False)
            self._fill()

    def sendall(self, data):
        with self.wlock:
            for i in range(0, len(data), RECORD):
                self.raw.sendall(self.encrypt(data[i:i + RECORD]))

    def close_notify(self):
        """Send close_notify and nothing else; reading goes on."""
        with self.wlock:
            with self.lock:
                try:
                    self.obj.unwrap()
                except ssl.SSLWantReadError:
                    pass  # the peer's close_notify, not waited for
                data = self.out.read()
            if not data:
                raise Fail("close_notify: the TLS engine made no record")
            self.raw.sendall(data)

    def shutdown(self, how):
        if how == socket.SHUT_WR and self.half_close == "close_notify":
            self.close_notify()
            return
        self._flush()
        self.raw.shutdown(how)

    def close_kind(self):
        """After recv() returned b"": "close_notify" (then the FIN, checked) or "eof"."""
        if self.how != "close_notify":
            return self.how or "eof"
        try:
            rest = self.raw.recv(4096)
        except ConnectionResetError:
            return "close_notify reset"
        except socket.timeout:
            raise Fail("close_notify but no FIN after %.1f s" % self.raw.gettimeout())
        if rest:
            raise Fail("%d bytes on the TCP stream after close_notify" % len(rest))
        return "close_notify"

    def fingerprint(self):
        d = hashlib.sha256(self.obj.getpeercert(binary_form=True)).hexdigest().upper()
        return ":".join(d[i:i + 2] for i in range(0, len(d), 2))

    def version(self):
        return self.obj.version()

    def settimeout(self, t):
        self.raw.settimeout(t)

    def gettimeout(self):
        return self.raw.gettimeout()

    def setsockopt(self, *a):
        self.raw.setsockopt(*a)

    def fileno(self):
        return self.raw.fileno()

    def close(self):
        self.raw.close()


CTX = None
VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if args.ca:
        ctx.load_verify_locations(args.ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    if args.min_version:
        ctx.minimum_version = VERSIONS[args.min_version]
    if args.max_version:
        ctx.maximum_version = VERSIONS[args.max_version]
    # A FIN without close_notify must show as such (OpenSSL 3 can hide it).
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return ctx


def connect(args, session=None, rcvbuf=0):
    raw = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    try:
        if rcvbuf:
            # Before connect(): a small window, so that few acks hide in the kernel.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(args.timeout)
        raw.connect((args.host, args.port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hostname = args.servername or (args.host if args.ca else None)
        return TLSSocket(raw, CTX, hostname, session, args.half_close)
    except BaseException:
        raw.close()
        raise


def cmd_fingerprint(args):
    s = connect(args)
    sdclient.roundtrip_on(s, SUBMIT, b"FPRINT00")
    print(s.fingerprint(), s.version())


def cmd_resume(args):
    s = connect(args)
    # The round trip reads the session tickets the server sends after the handshake.
    sdclient.roundtrip_on(s, SUBMIT, b"RESUME00")
    session = s.obj.session
    s.close()
    s = connect(args, session=session)
    sdclient.roundtrip_on(s, SUBMIT, b"RESUME01")
    print("resumed %s %s" % ("yes" if s.obj.session_reused else "no", s.version()))


def cmd_spoolpipe(args):
    n = args.n
    ids = [ident(i) for i in range(n)]
    sizes = [args.size_min + i % (args.size_max - args.size_min + 1) for i in range(n)]
    data = b"".join(request(SUBMIT, ids[i], bench_payload(args.conn, ids[i], sizes[i])) for i in range(n))
    s = connect(args)
    t, errors = sdclient.send_async(s, data)
    got = recv_exact(s, n * ACK_LEN, "%d acks" % n)
    t.join(args.timeout)
    if errors:
        raise Fail("send: %s" % errors[0])
    with open(args.ack_log, "a") as f:
        for i in range(n):
            a = got[i * ACK_LEN:(i + 1) * ACK_LEN]
            if a[:13] != ack(SUBMITACK, ids[i])[:13]:
                raise Fail("ack %d: got %s, want %s" % (i, a.hex(), ack(SUBMITACK, ids[i]).hex()))
            f.write("%d %s %d\n" % (args.conn, ids[i].hex(), a[13]))
    bad = sum(1 for i in range(n) if got[i * ACK_LEN + 13] != 0)
    if bad:
        raise Fail("%d acks with a result other than 0" % bad)
    print("acked %d in order" % n)


def cmd_hello(args):
    hello = first_flight()
    k = {"none": 0, "half": len(hello) // 2, "all": len(hello)}[args.part]
    # From before the connect: the time printed is at least the server's since its accept.
    t0 = time.monotonic()
    s = socket.create_connection((args.host, args.port), timeout=args.timeout)
    if k:
        s.sendall(hello[:k])
    print("sent %d of %d bytes" % (k, len(hello)), flush=True)
    if args.then == "close":
        s.close()
        return
    got = b""
    how = None
    try:
        while how is None:
            chunk = s.recv(4096)
            if chunk:
                got += chunk
            else:
                how = "eof"
    except ConnectionResetError:
        how = "reset"
    except socket.timeout:
        raise Fail("still open after %.1f s" % args.timeout)
    print("closed after %.2f s %s, %d bytes" % (time.monotonic() - t0, how, len(got)))


def first_flight():
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = CTX.wrap_bio(inc, out, server_hostname=None)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    if not hello or hello[0] != 0x16:
        raise Fail("no ClientHello record: %s" % hello[:8].hex())
    return hello


def cmd_flood(args):
    hello = first_flight()
    k = len(hello) // 2 if args.part == "half" else 0
    socks = []
    for _ in range(args.n):
        s = socket.create_connection((args.host, args.port), timeout=args.timeout)
        if k:
            s.sendall(hello[:k])
        socks.append(s)
    print("stalled %d" % len(socks), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:
        time.sleep(0.2)  # held until killed: nothing to do


asked = []


def cmd_stall(args):
    """sdpeer.py stall over TLS. Each chunk of frames is one record, sent
    without blocking; SENT counts the frames of the records the kernel took
    whole (a record the kernel took part of is finished before reading)."""
    signal.signal(signal.SIGUSR1, lambda *_: asked.append(1))
    s = connect(args, rcvbuf=65536)
    raw = s.raw
    raw.setblocking(False)
    per = 315  # 4095 bytes of frames: one record
    made, sent, pending, pending_frames = 0, 0, b"", 0
    last_progress, reported = time.monotonic(), False
    while not asked:
        if not pending:
            if sent * 13 >= args.max:
                print("sent all %d" % (sent * 13), flush=True)
                break
            pending = s.encrypt(b"".join(request(SUBMIT, ident(made + k)) for k in range(per)))
            pending_frames = per
            made += per
        _, w, _ = select.select([], [raw], [], 0.05)
        if w:
            try:
                n = raw.send(pending)
            except BlockingIOError:
                n = 0
            if n:
                pending = pending[n:]
                if not pending:
                    sent += pending_frames
                last_progress, reported = time.monotonic(), False
        if not reported and time.monotonic() - last_progress >= args.stall:
            print("stalled %d" % (sent * 13), flush=True)
            reported = True
    while not asked:
        time.sleep(0.05)  # the client's pace: it has nothing to do until asked
    total = sent + (pending_frames if pending else 0)
    got = bytearray()
    deadline = time.monotonic() + args.timeout
    while len(got) < total * ACK_LEN or pending:
        if time.monotonic() > deadline:
            raise Fail("%d of %d acks after %.0f s" % (len(got) // ACK_LEN, total, args.timeout))
        r, w, _ = select.select([raw], [raw] if pending else [], [], 0.5)
        if w:
            try:
                pending = pending[raw.send(pending):]
            except BlockingIOError:
                pass
        if r:
            s.feed(raw.recv(1 << 20))
            more = s.read_ready()
            if more is None:
                raise Fail("closed (%s) after %d of %d acks" % (s.how, len(got) // ACK_LEN, total))
            got += more
    if len(got) != total * ACK_LEN:
        raise Fail("%d bytes of acks, want %d" % (len(got), total * ACK_LEN))
    check_acks(bytes(got), [ident(i) for i in range(total)])
    print("acked %d" % total, flush=True)


def cmd_load(args):
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    lock = threading.Lock()
    tot = {"acked": 0, "lost": 0, "reconnects": 0, "errors": 0, "connects": 0}
    fps, errors = {}, []

    def count(k, v=1):
        with lock:
            tot[k] += v

    def error(what):
        with lock:
            tot["errors"] += 1
            errors.append(what)

    def one(k):
        seq = 0
        while not stop.is_set():
            try:
                s = connect(args)
            except (OSError, Fail) as e:
                error("connect: %s" % e)
                time.sleep(0.05)  # the client's pace before it tries again
                continue
            with lock:
                tot["connects"] += 1
                fps[s.fingerprint()] = fps.get(s.fingerprint(), 0) + 1
            try:
                while not stop.is_set():
                    id8 = b"L%03d%04d" % (k % 1000, seq % 10000)
                    seq += 1
                    s.sendall(request(SUBMIT, id8))
                    got = b""
                    while len(got) < ACK_LEN:
                        chunk = s.recv(ACK_LEN - len(got))
                        if not chunk:
                            break
                        got += chunk
                    if got == ack(SUBMITACK, id8):
                        count("acked")
                    elif not got and s.how in ("close_notify", "eof"):
                        # Closed between two acks (a worker draining): the
                        # request was not read; the client may send it again.
                        count("lost")
                        count("reconnects")
                        break
                    else:
                        error("ack %s for %s (%s)" % (got.hex(), id8, s.how))
                        break
            except (OSError, Fail) as e:
                error("connection %d: %s" % (k, e))
            s.close()

    ts = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(args.conns)]
    for t in ts:
        t.start()
    print("started %d" % args.conns, flush=True)
    stop.wait(args.duration)
    stop.set()
    for t in ts:
        t.join(args.timeout + 5)
    tot["fingerprints"] = fps
    tot["first_errors"] = errors[:5]
    print(json.dumps(tot, sort_keys=True), flush=True)


def main():
    global CTX
    p, sub = sdclient.parser(__doc__)
    p.add_argument("--ca", help="verify the server with these CAs (and its name: --servername, else --host)")
    p.add_argument("--cert", help="client certificate")
    p.add_argument("--key", help="client key")
    p.add_argument("--servername", help="SNI and the name checked with --ca")
    p.add_argument("--min-version", choices=sorted(VERSIONS))
    p.add_argument("--max-version", choices=sorted(VERSIONS))
    p.add_argument("--half-close", choices=["tcp", "close_notify"], default="tcp")

    a = sub.add_parser("fingerprint")
    a.set_defaults(fn=cmd_fingerprint)

    a = sub.add_parser("resume")
    a.set_defaults(fn=cmd_resume)

    a = sub.add_parser("spoolpipe")
    a.add_argument("n", type=int)
    a.add_argument("--conn", type=int, default=0, help="the connection number in the payload tags")
    a.add_argument("--ack-log", required=True)
    a.add_argument("--size-min", type=int, default=20)
    a.add_argument("--size-max", type=int, default=200)
    a.set_defaults(fn=cmd_spoolpipe)

    a = sub.add_parser("hello")
    a.add_argument("--part", choices=["none", "half", "all"], default="half")
    a.add_argument("--then", choices=["close", "wait"], default="close")
    a.set_defaults(fn=cmd_hello)

    a = sub.add_parser("flood")
    a.add_argument("n", type=int)
    a.add_argument("--part", choices=["none", "half"], default="half")
    a.add_argument("--hold", type=float, default=120.0)
    a.set_defaults(fn=cmd_flood)

    a = sub.add_parser("stall")
    a.add_argument("--stall", type=float, default=2.0)
    a.add_argument("--max", type=int, default=256 << 20)
    a.set_defaults(fn=cmd_stall)

    a = sub.add_parser("load")
    a.add_argument("--conns", type=int, default=4)
    a.add_argument("--duration", type=float, default=60.0)
    a.set_defaults(fn=cmd_load)

    args = p.parse_args()
    if args.cert and not args.key:
        p.error("--cert needs --key")
    CTX = context(args)
    sdclient.connect = connect
    sdclient.run(p, args, "tlsclient")


if __name__ == "__main__":
    main()
