# Load under kill -9, for the lifecycle suite and the respawn threshold that
# make bench checks (bench/thresholds.bats). Load after helpers/common.

# respawn_watch METRICS_PORT MASTER_PID KILLS: kill -9 one worker a second,
# KILLS times, alternating between the two oldest so none is killed young
# (a worker dying within a second of its start is respawned with backoff).
# After each kill, poll /metrics every ~5 ms until the victim is reaped and
# submitd_workers{state="running"} is back at the configured count. Prints
# per kill "kill I victim PID label L connections C respawn_ms T", then "worst_ms T".
respawn_watch() {
	python3 - "$@" <<'PY'
import os, signal, sys, time, urllib.request
port, master, kills = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
url = "http://127.0.0.1:%d/metrics" % port

def metrics():
    with urllib.request.urlopen(url, timeout=2) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and line[0] != "#":
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

def children():
    with open("/proc/%d/task/%d/children" % (master, master)) as f:
        return [int(p) for p in f.read().split()]

def label_of(pid):
    # "worker I started, pid P" is the master's contract line; the slot label is I.
    for line in open(os.environ["SD_LOGFILE"]):
        if line.rstrip().endswith("started, pid %d" % pid):
            label = int(line.split("worker ")[1].split(" ")[0])
    return label

m = metrics()
want = int(m['submitd_workers{state="configured"}'])
worst = 0.0
born = {}
for i in range(kills):
    now = time.monotonic()
    kids = children()
    for k in kids:
        born.setdefault(k, now)
    victim = min(kids, key=lambda k: born[k])  # the oldest
    label = label_of(victim)
    conns = int(metrics().get('submitd_client_connected{worker="%d"}' % label, 0))
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    while True:
        m = metrics()
        if victim not in children() and int(m['submitd_workers{state="running"}']) == want:
            break
        if time.monotonic() - t0 > 10:
            print("kill %d: no recovery in 10 s" % i)
            sys.exit(1)
        time.sleep(0.005)
    dt = (time.monotonic() - t0) * 1000
    worst = max(worst, dt)
    print("kill %d victim %d label %d connections %d respawn_ms %.1f" % (i, victim, label, conns, dt), flush=True)
    time.sleep(max(0, 1 - (time.monotonic() - t0)))
print("worst_ms %.1f" % worst)
PY
}

# workers_older_than S: every worker has run for at least S seconds.
workers_older_than() {
	local w n=0
	for w in $(sd_workers); do
		[ "$(ps -o etimes= -p "$w" | tr -d ' ')" -ge "$1" ] || return 1
		n=$((n + 1))
	done
	[ "$n" -gt 0 ]
}

# respawn_under_load OUT KILLS: respawn_watch KILLS kills (its lines in
# $output) under bench_loop's load (its JSON lines in OUT), once 50 clients
# are connected and every worker is past the crash-loop age (1 s; ps counts
# whole seconds, so 2 means at least 2) so that each kill is a plain
# respawn. The load is stopped before it returns; fails if respawn_watch did.
respawn_under_load() {
	local out=$1 loop
	bench_loop "$out" </dev/null >/dev/null 2>&1 3>&- 4>&- &
	loop=$!
	SD_BG_PIDS+=("$loop")
	wait_for eval '[ "$(sd_metric submitd_client_connected)" -ge 50 ]'
	wait_for -t 10 workers_older_than 2
	SD_LOGFILE=$BATS_TEST_TMPDIR/submitd.log run respawn_watch "$SD_METRICS_PORT" "$SD_PID" "$2"
	echo "$output"
	touch "$out.stop"
	wait_for -t 20 _sd_all_gone "$loop"
	assert_success
}

# sd_start_busy_stuck: two workers (shutdown_timeout 30) under a 4 s
# submit-bench load (-c 50 --reconnect, in $BATS_TEST_TMPDIR/bench.json) and
# a client inside a frame, which a SIGTERM would wait 30 s for (its lines in
# $BATS_TEST_TMPDIR/stuck); returns once all 51 are connected.
sd_start_busy_stuck() {
	sd_start 'workers = 2' 'shutdown_timeout = 30'
	sd_bench "$BATS_TEST_TMPDIR/bench.json" -c 50 --reconnect -d 4 --drain 1
	sd_stuck_client "$BATS_TEST_TMPDIR/stuck" keep
	wait_for eval '[ "$(sd_metric submitd_client_connected)" -ge 51 ]'
}

# bench_loop OUT: one-second submit-bench runs (-c 50 --reconnect) back to
# back until OUT.stop exists, one JSON line each in OUT. A reset ends a
# connection for submit-bench, so fresh runs keep the load on across kills.
bench_loop() {
	local out=$1 b=
	trap 'kill -TERM $b 2>/dev/null; exit 0' TERM
	while [ ! -e "$out.stop" ]; do
		"$SD_BENCH" --json -c 50 --reconnect -d 1 --drain 2 "127.0.0.1:$SD_PORT" >>"$out" 2>>"$out.err" &
		b=$!
		wait "$b" || true
	done
}
