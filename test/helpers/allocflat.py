"""allocflat.py DIR COUNTER: is submitd_worker_allocated_bytes flat under load?

DIR holds the /metrics scrapes of sd_sample_metrics, in order; COUNTER is
the metric that counts the load (its samples summed). The scrapes taken
while COUNTER moved are the load; the gauge, refreshed once a second, must
be one value over the second half of them (the buffer pool fills in the
first rounds). Exit 0 if it is, with at least 5 such scrapes; 1 if not.
"""
import os
import sys

GAUGE = "submitd_worker_allocated_bytes"


def main():
    d, counter = sys.argv[1], sys.argv[2]
    rows = []
    for f in sorted(os.listdir(d)):
        text = open(os.path.join(d, f)).read()
        if not text.endswith("\n"):
            continue
        v = {GAUGE: 0.0, counter: 0.0}
        for line in text.splitlines():
            k = line.split("{")[0].split(" ")[0]
            if k in v:
                v[k] += float(line.rsplit(" ", 1)[1])
        rows.append((v[counter], v[GAUGE]))
    if not rows:
        print("no complete scrapes in %s" % d)
        return 1
    final = rows[-1][0]
    load = [r for r in rows if 0 < r[0] < final]
    late = load[len(load) // 2:]
    if not late:
        print("no scrapes under load (%s stayed 0 or %d)" % (counter, final))
        return 1
    print("%d scrapes under load, allocated in the second half: %s, %s %d .. %d"
          % (len(load), sorted(set(a for _, a in late)), counter, late[0][0], late[-1][0]))
    return 0 if len(late) >= 5 and len(set(a for _, a in late)) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
