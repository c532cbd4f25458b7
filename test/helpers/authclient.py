#!/usr/bin/env python3
"""authclient.py: a client of a server that requires authentication, for tests.

  authclient.py --port P [--tls CA [--cert C --key K]] [--token-file F | --no-conn]
                [--submits K] [--pipeline] [--expect ok|refused|closed|results]
                [--bind ADDR] [--hold S]

Sends a Conn whose client data is the token (the bytes of --token-file, one
trailing newline off; an empty Conn with --token-file /dev/null), or with
--no-conn no Conn at all, then K Submits (each waiting for its ack, or with
--pipeline all in the same write as the Conn).
--expect ok: every ack has result 0; prints "ok K".
--expect refused: the first ack has result 3 and the server then closes
without another byte; prints "refused CMD" (connack or submitack).
--expect closed: the server closes without an ack byte (auth_timeout: send
nothing with --no-conn --submits 0); prints "closed".
--expect results: every ack arrives, in order; prints "results " and each
ack's result digit, the ConnAck's first (rate_limit: 0 stored, 1 refused).
--bind: the source address (127.0.0.2: another client).
--hold S: with --expect ok, keep the connection open S seconds after
printing (until killed), then close it.
Exit 1, with the reason, if the server did otherwise.
"""
import argparse
import socket
import ssl
import struct
import sys
import time

CONN, SUBMIT, CONNACK, SUBMITACK = 0x01, 0x02, 0x80, 0x81


def frame(cmd, id8, body=b""):
    return struct.pack("!I", 4 + 1 + 8 + len(body)) + bytes([cmd]) + id8 + body


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        try:
            chunk = s.recv(n - len(data))
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    return data


def fail(msg):
    print("authclient: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", metavar="CA")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--token-file")
    p.add_argument("--no-conn", action="store_true")
    p.add_argument("--submits", type=int, default=3)
    p.add_argument("--pipeline", action="store_true")
    p.add_argument("--expect", choices=["ok", "refused", "closed", "results"], default="ok")
    p.add_argument("--bind")
    p.add_argument("--hold", type=float, default=0)
    p.add_argument("--timeout", type=float, default=10)
    a = p.parse_args()

    s = socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout,
                                 source_address=(a.bind, 0) if a.bind else None)
    if a.tls:
        ctx = ssl.create_default_context(cafile=a.tls)
        if a.cert:
            ctx.load_cert_chain(a.cert, a.key)
        try:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        except (ssl.SSLError, OSError) as e:
            if a.expect != "closed":
                fail("TLS handshake: %s" % e)
            print("closed")
            return 0
    reqs = []
    if not a.no_conn:
        tok = b""
        if a.token_file:
            tok = open(a.token_file, "rb").read()
            if tok.endswith(b"\n"):
                tok = tok[:-1]
        reqs.append((CONN, b"C%07d" % 0, tok))
    for i in range(a.submits):
        reqs.append((SUBMIT, b"%08d" % i, b"auth-%d" % i))
    if a.pipeline:
        s.sendall(b"".join(frame(*r) for r in reqs))
    if a.expect == "closed":
        try:
            if reqs and not a.pipeline:
                s.sendall(frame(*reqs[0]))
            got = recv_exact(s, 1)
        except (ssl.SSLError, OSError):
            got = b""  # a TLS alert (no client certificate) or a reset: closed all the same
        if got:
            fail("expected a close without an ack, got %r" % got)
        print("closed")
        return 0
    results = ""
    for k, (cmd, id8, body) in enumerate(reqs):
        if not a.pipeline:
            s.sendall(frame(cmd, id8, body))
        got = recv_exact(s, 14)
        want_cmd = CONNACK if cmd == CONN else SUBMITACK
        if len(got) != 14 or got[:4] != struct.pack("!I", 14) or got[4] != want_cmd or got[5:13] != id8:
            fail("request %d: got %r" % (k, got))
        result = got[13]
        results += str(result)
        if a.expect == "results":
            continue
        if a.expect == "refused":
            if result != 3:
                fail("request %d: result %d, want 3" % (k, result))
            rest = recv_exact(s, 1)
            if rest:
                fail("after result 3: %r, want the close" % rest)
            print("refused %s" % ("connack" if cmd == CONN else "submitack"))
            return 0
        if result != 0:
            fail("request %d: result %d, want 0" % (k, result))
    if a.expect == "refused":
        fail("no result 3")
    if a.expect == "results":
        print("results " + results)
        s.close()
        return 0
    print("ok %d" % len(reqs), flush=True)
    if a.hold > 0:
        time.sleep(a.hold)  # a connected client, not synchronisation: the test kills it
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
