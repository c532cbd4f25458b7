#!/usr/bin/env python3
"""Spool tests' client, reader and checker (docs/SPOOL.md, docs/PROTOCOL.md).

  load     pipeline Submits with unique ids and payloads derived from the id
           over several connections; write one line per ack to --ack-log:
           "<conn> <id hex> <result>"
  read     print every record of the spool's segments: "<dir>/<segment> <offset> <id hex>"
  check    every id acked with result 0 is in the spool exactly once, with
           its payload byte for byte; prints counts, exit 1 if not
  consume  take ready segments while the server writes (rename into taken/,
           read, check whole, delete); write the records to --out
  torn     per segment file: "<name> <size> <end of the whole records> <records>
           <zeros>", what recovery must keep of a dead writer's segment; zeros:
           the zero bytes right after the records, 8 or more, where the file
           header says zeros are written ahead (cut by recovery, not counted
           as torn), else 0
  bench    the same check against a submit-bench --ack-log, for a run with
           --tag-payload: each record's payload names the bench connection
           and id ("conn:id:size:"), so records are matched by (connection,
           id) and every payload byte is predicted; reports missing,
           duplicated and unexpected records and payload mismatches
Exit status: 0 good, 1 a check failed, 2 usage.
"""
import argparse
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time

SUBMIT, CONN, SUBMITACK, CONNACK = 0x02, 0x01, 0x81, 0x80
ACK_LEN = 14
DIRS = ["active", "ready", "taken", "quarantine", "suspect"]

# ---- CRC-32C (Castagnoli, reflected 0x82F63B78) ----
_T = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _T.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    t = _T
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def payload_for(id8, maxlen):
    """The payload a load client sends with id8: derived from it, so a checker needs no copy."""
    h = hashlib.sha256(id8).digest()
    n = int.from_bytes(h[:2], "big") % (maxlen + 1)
    return (h * (n // 32 + 1))[:n]


class Bad(Exception):
    pass


IDENTITIES = {}  # (path, offset) -> the record's identity (format version 2), if it has one


def read_segment(path, allow_torn=False):
    """Records of one segment: list of (offset, id, conn_id, flags, payload). Bad: raises.

    Format versions 1 and 2 (docs/SPOOL.md); a version 2 record's identity
    goes into IDENTITIES."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 64 or data[:8] != b"SUBSPOOL":
        raise Bad("%s: bad file header" % path)
    if crc32c(data[:60]) != struct.unpack_from("<I", data, 60)[0]:
        raise Bad("%s: file header CRC" % path)
    version = struct.unpack_from("<H", data, 8)[0]
    if version not in (1, 2):
        raise Bad("%s: format version %d" % (path, version))
    # flags (offset 32) bit 0: zeros written ahead may follow the last record
    # of an active/ segment; there a record header reads as rec_len 0, the
    # end of what is written (allow_torn). Sealed segments end at their last record.
    off, out = 64, []
    while off < len(data):
        if off + 64 > len(data):
            if allow_torn:
                break
            raise Bad("%s: torn header at %d" % (path, off))
        crc, rec_len = struct.unpack_from("<II", data, off)
        if rec_len < 64 or off + rec_len > len(data):
            if allow_torn:
                break
            raise Bad("%s: record at %d: rec_len %d, file %d" % (path, off, rec_len, len(data)))
        if crc32c(data[off + 4:off + rec_len]) != crc:
            raise Bad("%s: CRC at %d" % (path, off))
        sid = data[off + 24:off + 32]
        cid = data[off + 32:off + 40]
        flags = data[off + 61]
        if data[off + 60] != 1:
            raise Bad("%s: type %d at %d" % (path, data[off + 60], off))
        ilen = data[off + 62]
        if ilen > 128 or 64 + ilen > rec_len or data[off + 63] != 0 or (version == 1 and ilen):
            raise Bad("%s: identity length %d at %d (version %d)" % (path, ilen, off, version))
        if ilen:
            IDENTITIES[(path, off)] = data[off + 64:off + 64 + ilen].decode("ascii")
        out.append((off, sid, cid, flags, data[off + 64 + ilen:off + rec_len]))
        off += rec_len
    return out


def spool_records(spool, dirs=DIRS):
    for d in dirs:
        p = os.path.join(spool, d)
        if not os.path.isdir(p):
            continue
        for name in sorted(os.listdir(p)):
            if not name.endswith(".seg"):
                continue
            for r in read_segment(os.path.join(p, name), allow_torn=(d == "active")):
                yield d + "/" + name, r


# ---- load ----

def run_conn(args, k, lines, lock, stop):
    """One connection (reconnecting if asked): Submits with ids <tag:2><k:2><seq:4>."""
    seq = 0
    tag = args.tag
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        except OSError:
            if not args.reconnect:
                return
            time.sleep(0.05)  # the server restarting: the client's pace, not synchronisation
            continue
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = []  # ids in flight, in order
        buf = b""
        try:
            # A Conn first: its id goes into every record of the connection.
            cid = struct.pack(">HH", tag, k) + b"CONN"
            s.sendall(struct.pack(">IB", 13, CONN) + cid)
            sent.append((CONN, cid))
            while not stop.is_set() and (args.count == 0 or seq < args.count or sent):
                out = []
                while len(sent) < args.window and (args.count == 0 or seq < args.count):
                    id8 = struct.pack(">HHI", tag, k, seq)
                    seq += 1
                    p = payload_for(id8, args.payload_max)
                    out.append(struct.pack(">IB", 13 + len(p), SUBMIT) + id8 + p)
                    sent.append((SUBMIT, id8))
                if out:
                    s.sendall(b"".join(out))
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("EOF")
                buf += chunk
                done = []
                while len(buf) >= ACK_LEN:
                    a, buf = buf[:ACK_LEN], buf[ACK_LEN:]
                    cmd, id8 = sent.pop(0)
                    if a[4] != (CONNACK if cmd == CONN else SUBMITACK) or a[5:13] != id8:
                        raise Bad("connection %d: ack %s for %s" % (k, a.hex(), id8.hex()))
                    if cmd == SUBMIT:
                        done.append("%d %s %d\n" % (k, id8.hex(), a[13]))
                with lock:
                    lines.extend(done)
            s.close()
            if not sent:
                return
        except (OSError, socket.timeout):
            s.close()
            if not args.reconnect:
                return
        # Unacked ids are simply not in the log: nothing was promised for them.


def cmd_load(args):
    lines, lock, stop = [], threading.Lock(), threading.Event()
    ts = [threading.Thread(target=run_conn, args=(args, k, lines, lock, stop), daemon=True)
          for k in range(args.conns)]
    for t in ts:
        t.start()
    t0 = time.monotonic()
    with open(args.ack_log, "w") as f:
        def drain():
            with lock:
                f.writelines(lines)
                lines.clear()
            f.flush()
        while any(t.is_alive() for t in ts):
            if args.duration and time.monotonic() - t0 >= args.duration:
                stop.set()
            if args.stop_file and os.path.exists(args.stop_file):
                stop.set()
            drain()
            time.sleep(0.05)  # how often the log is written, not synchronisation
        drain()
    n = sum(1 for _ in open(args.ack_log))
    print("acks %d" % n, flush=True)


def read_acks(path):
    acks = {}
    for line in open(path):
        k, idh, r = line.split()
        acks[bytes.fromhex(idh)] = int(r)
    return acks


def cmd_check(args):
    acks = read_acks(args.ack_log)
    seen = {}
    extra = []
    for path in args.records or []:
        for line in open(path):
            where, off, idh, ph = line.split()
            seen.setdefault(bytes.fromhex(idh), []).append(
                (where, int(off), b"" if ph == "-" else bytes.fromhex(ph)))
    found = [] if args.cat_only else list(spool_records(args.spool))
    for path in args.cat or []:
        # submit-spool cat / take output: one JSON object per record.
        for line in open(path):
            j = json.loads(line)
            p = j["payload"]
            p = base64.b64decode(p) if j["payload_encoding"] == "base64" else p.encode("utf-8")
            cid = bytes.fromhex(j["conn_id"]) if "conn_id" in j else bytes(8)
            found.append((j["segment"], (j["offset"], bytes.fromhex(j["submit_id"]), cid,
                                         1 if "conn_id" in j else 0, p)))
    for d in args.also or []:
        for name in sorted(os.listdir(d)):
            if name.endswith(".seg"):
                found += [(os.path.join(d, name), r) for r in read_segment(os.path.join(d, name))]
    for where, (off, sid, cid, flags, payload) in found:
        seen.setdefault(sid, []).append((where, off, payload))
        if not (flags & 1) or cid[4:] != b"CONN" or cid[:4] != sid[:4]:
            extra.append("%s@%d: conn_id %s flags %d" % (where, off, cid.hex(), flags))
    ok = [i for i, r in acks.items() if r == 0]
    bad = []
    for i in ok:
        got = seen.get(i, [])
        if len(got) != 1:
            bad.append("%s: %d times in the spool" % (i.hex(), len(got)))
        elif got[0][2] != payload_for(i, args.payload_max):
            bad.append("%s: payload differs at %s@%d" % (i.hex(), got[0][0], got[0][1]))
    dups = [i for i, g in seen.items() if len(g) > 1]
    results = {r: sum(1 for v in acks.values() if v == r) for r in (0, 1, 2)}
    print("acked %d: result 0 %d, result 1 %d, result 2 %d; spool records %d, ids %d"
          % (len(acks), results[0], results[1], results[2],
             sum(len(g) for g in seen.values()), len(seen)))
    for b in (bad + extra)[:10]:
        print("bad:", b)
    if dups:
        print("ids more than once: %d" % len(dups))
    sys.exit(1 if bad or extra or dups else 0)


# ---- bench: submit-bench --ack-log against the spool ----

def bench_payload(conn, idtext, size):
    """What submit-bench --tag-payload sends (submit-bench(1))."""
    tag = b"%d:%s:%d:" % (conn, idtext, size)
    pat = bytes(0x61 + i % 26 for i in range(size))
    return (tag + pat[len(tag):])[:size]


def bench_records(args):
    """Every record of the sources given: (where, offset, submit id, conn id or None, payload)."""
    out = []
    cats = [(p, "") for p in args.cat or []] + [(p, "suspect/") for p in args.cat_suspect or []]
    for path, label in cats:
        for line in open(path):
            j = json.loads(line)
            p = j["payload"]
            p = base64.b64decode(p) if j["payload_encoding"] == "base64" else p.encode("utf-8")
            if j["len"] != len(p):
                raise Bad("%s: record at %s@%d: len %d, payload %d bytes"
                          % (path, j["segment"], j["offset"], j["len"], len(p)))
            cid = bytes.fromhex(j["conn_id"]) if "conn_id" in j else None
            out.append((label + j["segment"], j["offset"], bytes.fromhex(j["submit_id"]), cid, p))
    segs = []
    if args.spool:
        segs += [(d, os.path.join(args.spool, d)) for d in DIRS]
    segs += [(d, d) for d in args.also or []]
    for label, d in segs:
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".seg"):
                for off, sid, cid, flags, payload in read_segment(
                        os.path.join(d, name), allow_torn=(label == "active")):
                    out.append((label + "/" + name, off, sid, cid if flags & 1 else None, payload))
    for path in args.records or []:
        for line in open(path):
            where, off, idh, ph = line.split()
            out.append((where, int(off), bytes.fromhex(idh), None,
                        b"" if ph == "-" else bytes.fromhex(ph)))
    return out


def cmd_bench(args):
    acks = {}  # (conn, id) -> result
    last = {}  # conn -> highest id acked
    for n, line in enumerate(open(args.ack_log), 1):
        f = line.split()
        if len(f) != 3:
            raise Bad("%s:%d: not \"conn id result\": %r" % (args.ack_log, n, line))
        key = (int(f[0]), bytes.fromhex(f[1]))
        if key in acks:
            raise Bad("%s:%d: connection %s id %s acked twice" % (args.ack_log, n, f[0], f[1]))
        acks[key] = int(f[2])
        last[key[0]] = max(last.get(key[0], b""), key[1])
    seen = {}  # (conn, id) -> [where@offset]
    bad, unexpected, refused_in, unacked, conn_ids = [], [], [], [], {}
    refused_suspect = 0
    records = bench_records(args)
    for where, off, sid, cid, payload in records:
        at = "%s@%d" % (where, off)
        f = payload.split(b":", 3)
        if len(f) < 4 or not f[0].isdigit() or not f[2].isdigit():
            bad.append("%s: id %s: payload not tagged by submit-bench: %r" % (at, sid.hex(), payload[:40]))
            continue
        conn, size = int(f[0]), int(f[2])
        if f[1] != sid:
            bad.append("%s: id %s, payload names id %r" % (at, sid.hex(), f[1]))
            continue
        if size != len(payload):
            bad.append("%s: conn %d id %s: %d payload bytes, the bench sent %d"
                       % (at, conn, sid.decode(), len(payload), size))
        elif payload != bench_payload(conn, sid, size):
            want = bench_payload(conn, sid, size)
            i = next(k for k in range(size) if payload[k] != want[k])
            bad.append("%s: conn %d id %s: payload differs at byte %d" % (at, conn, sid.decode(), i))
        conn_ids.setdefault(conn, set()).add(cid)
        seen.setdefault((conn, sid), []).append(at)
    for key, where in seen.items():
        r = acks.get(key)
        what = "conn %d id %s (%s)" % (key[0], key[1].decode("ascii", "replace"), ", ".join(where))
        if r == 2 and all(w.startswith("suspect/") for w in where):
            # The batch whose fdatasync failed: written, answered result 2, and
            # set aside with its segment in suspect/ (docs/SPOOL.md).
            refused_suspect += 1
        elif r == 2:
            refused_in.append(what)  # answered "not stored" but stored: never allowed
        elif r is None:
            # Sent and stored, the ack lost to a crash: at least once allows it, but
            # only after the connection's last ack (ids go up along a connection).
            if args.allow_unacked and key[1] > last.get(key[0], b""):
                unacked.append(what)
            else:
                unexpected.append(what)
        elif r != 0:
            unexpected.append(what + " result %d" % r)
    missing = ["conn %d id %s" % (k[0], k[1].decode("ascii", "replace"))
               for k, r in acks.items() if r == 0 and k not in seen]
    dups = ["conn %d id %s: %d times (%s)" % (k[0], k[1].decode("ascii", "replace"), len(w), ", ".join(w))
            for k, w in seen.items() if len(w) > 1]
    for conn, cids in conn_ids.items():
        if len(cids) > 1:
            bad.append("conn %d: records with different Conn ids %s"
                       % (conn, sorted(c.hex() if c else "-" for c in cids)))
    results = {r: sum(1 for v in acks.values() if v == r) for r in (0, 1, 2)}
    print("acked %d: result 0 %d, result 1 %d, result 2 %d; records %d; missing %d, "
          "duplicated %d, unexpected %d, result 2 stored %d (in suspect/ %d), unacked stored %d, "
          "bad %d"
          % (len(acks), results[0], results[1], results[2], len(records), len(missing),
             len(dups), len(unexpected), len(refused_in), refused_suspect, len(unacked), len(bad)))
    for name, lst in (("missing", missing), ("duplicated", dups), ("unexpected", unexpected),
                      ("result 2 but stored", refused_in), ("bad", bad)):
        for x in lst[:10]:
            print("%s: %s" % (name, x))
    if args.min_ok and results[0] < args.min_ok:
        print("fewer than %d result-0 acks" % args.min_ok)
        sys.exit(1)
    sys.exit(1 if missing or dups or unexpected or refused_in or bad else 0)


def cmd_torn(args):
    for path in args.segments:
        with open(path, "rb") as f:
            data = f.read()
        end, n = 0, 0
        if len(data) >= 64 and data[:8] == b"SUBSPOOL":
            end = 64
            while end + 64 <= len(data):
                crc, rec_len = struct.unpack_from("<II", data, end)
                if rec_len < 64 or end + rec_len > len(data) or \
                        crc32c(data[end + 4:end + rec_len]) != crc:
                    break
                end += rec_len
                n += 1
        zeros = 0
        if end > 0 and struct.unpack_from("<I", data, 32)[0] & 1:
            zeros = len(data) - end - len(data[end:].lstrip(b"\0"))
            if zeros < 8:
                zeros = 0
        print(os.path.basename(path), len(data), end, n, zeros)


def cmd_read(args):
    """A line per record: where, offset, id (hex), identity or "-", payload (hex) or "-"."""
    for where, (off, sid, cid, flags, payload) in spool_records(args.spool, args.dirs or DIRS):
        ident = IDENTITIES.get((os.path.join(args.spool, where), off), "-")
        print(where, off, sid.hex(), ident, payload.hex() or "-")


def cmd_consume(args):
    """Take ready segments until the stop file exists and ready/ is empty."""
    ready = os.path.join(args.spool, "ready")
    taken = os.path.join(args.spool, "taken")
    nseg = nrec = 0
    names = set()
    with open(args.out, "w") as out:
        while True:
            todo = sorted(n for n in os.listdir(ready) if n.endswith(".seg"))
            if not todo:
                if args.stop_file and os.path.exists(args.stop_file):
                    break
                time.sleep(0.01)  # polling the directory: the consumer's pace
                continue
            for name in todo:
                try:
                    os.rename(os.path.join(ready, name), os.path.join(taken, name))
                except FileNotFoundError:
                    continue
                if name in names:
                    print("taken twice: %s" % name)
                    sys.exit(1)
                names.add(name)
                try:
                    recs = read_segment(os.path.join(taken, name))  # whole, or Bad
                except Bad as e:
                    print("partial segment: %s" % e)
                    sys.exit(1)
                for off, sid, cid, flags, payload in recs:
                    out.write("taken/%s %d %s %s\n" % (name, off, sid.hex(), payload.hex() or "-"))
                os.unlink(os.path.join(taken, name))
                nseg += 1
                nrec += len(recs)
    print("consumed %d segments, %d records" % (nseg, nrec))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="sub", required=True)
    a = sub.add_parser("load")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--conns", type=int, default=4)
    a.add_argument("--count", type=int, default=0, help="Submits per connection; 0 until stopped")
    a.add_argument("--duration", type=float, default=0)
    a.add_argument("--stop-file")
    a.add_argument("--window", type=int, default=64)
    a.add_argument("--payload-max", type=int, default=100)
    a.add_argument("--tag", type=int, default=os.getpid() & 0xFFFF)
    a.add_argument("--reconnect", action="store_true")
    a.add_argument("--ack-log", required=True)
    a.set_defaults(fn=cmd_load)
    a = sub.add_parser("check")
    a.add_argument("spool")
    a.add_argument("--ack-log", required=True)
    a.add_argument("--payload-max", type=int, default=100)
    a.add_argument("--records", action="append", help="records a consumer took (consume --out)")
    a.add_argument("--also", action="append", help="a directory of segments taken out of the spool")
    a.add_argument("--cat", action="append", help="records as submit-spool cat or take prints them")
    a.add_argument("--cat-only", action="store_true", help="only --cat: do not read the spool here")
    a.set_defaults(fn=cmd_check)
    a = sub.add_parser("bench")
    a.add_argument("--ack-log", required=True, help="submit-bench --ack-log of a --tag-payload run")
    a.add_argument("--spool", help="read every segment of this spool with the reader here")
    a.add_argument("--cat", action="append", help="records as submit-spool cat or take prints them")
    a.add_argument("--cat-suspect", action="append",
                   help="submit-spool cat of suspect/ segments: result-2 records may be there")
    a.add_argument("--also", action="append", help="a directory of segments taken out of the spool")
    a.add_argument("--records", action="append", help="records a consumer took (consume --out)")
    a.add_argument("--allow-unacked", action="store_true",
                   help="records never acked may be stored (a crash): after their connection's last ack")
    a.add_argument("--min-ok", type=int, default=1, help="at least this many result-0 acks")
    a.set_defaults(fn=cmd_bench)
    a = sub.add_parser("torn")
    a.add_argument("segments", nargs="*")
    a.set_defaults(fn=cmd_torn)
    a = sub.add_parser("read")
    a.add_argument("spool")
    a.add_argument("dirs", nargs="*")
    a.set_defaults(fn=cmd_read)
    a = sub.add_parser("consume")
    a.add_argument("spool")
    a.add_argument("--out", required=True)
    a.add_argument("--stop-file")
    a.set_defaults(fn=cmd_consume)
    args = p.parse_args()
    try:
        args.fn(args)
    except Bad as e:
        print("spoolcheck: %s" % e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
