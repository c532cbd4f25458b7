# Shared by the bats suites: start submitd on free ports and stop it
# (helpers/daemon.bash, which the bench shares), read its metrics, poll for
# conditions. Load with `load helpers/common`.

bats_require_minimum_version 1.5.0
bats_load_library bats-support
bats_load_library bats-assert

SD_ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
SD_CLIENT="python3 $SD_ROOT/test/helpers/sdclient.py"
# sd_start, sd_stop and what they use: wait_for, sd_config, sd_log, sd_workers.
source "$SD_ROOT/test/helpers/daemon.bash"

needs_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
}

# read_ports: SD_PORT and SD_METRICS_PORT from the log, as sd_start reads
# them, for a daemon that sd_start did not start; fails unless both are there.
read_ports() {
	sd_read_ports && [ -n "$SD_METRICS_PORT" ]
}

# port_free PORT: a new listener can bind 127.0.0.1:PORT.
port_free() {
	python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)' "$1"
}

# sd_stuck_client OUT [close|keep]: a client in the middle of a frame (2 bytes
# of a header sent), so its connection never reaches a frame boundary and a
# drain must wait for shutdown_timeout. Prints "held" into OUT once
# connected (sd_stuck_client returns then), and when the server closes it
# "closed at T eof|reset" (T: Unix time, comparable with EPOCHREALTIME).
# Then `close` closes at once; `keep` (the default) holds the socket until
# killed or 60 s, so the server has to give up on it. Pid in SD_SPAWNED.
sd_stuck_client() {
	sd_spawn "$1" python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"\x00\x00")
print("held", flush=True)
s.settimeout(120)
try:
    how = "data" if s.recv(1) else "eof"
except ConnectionResetError:
    how = "reset"
except socket.timeout:
    how = "timeout"
print("closed at %.6f %s" % (time.time(), how), flush=True)
if sys.argv[2] != "close":
    time.sleep(60)
' "${SD_PORT:?}" "${2:-keep}"
	wait_for grep -q held "$1"
}

# sd_doc_families [--types]: the metric families of the /metrics contract,
# one per line ("NAME TYPE" with --types), read from the tables of
# docs/METRICS.md ("| `NAME` | TYPE |" rows), so that checks follow the
# document; fails if it finds none.
sd_doc_families() {
	local out='\1'
	[ "${1:-}" != --types ] || out='\1 \2'
	sed -n '/^## Families/,/^## /p' "$SD_ROOT/docs/METRICS.md" |
		sed -n "s/^| \`\([a-z_:]*\)\` | \(counter\|gauge\|histogram\|summary\) |.*/$out/p" | grep .
}

# _sd_log_last WHO SCRIPT MISSING: what the sed -n SCRIPT prints for the
# log's last line it matches; fails with "WHO: MISSING in the log" if none.
_sd_log_last() {
	local v
	v=$(sd_log | sed -n "$2" | tail -1)
	[ -n "$v" ] || {
		echo "$1: $3 in the log" >&2
		return 1
	}
	echo "$v"
}

# sd_worker_label PID: the slot label of worker PID (the worker="I" of the
# metrics), from the master's "worker I started, pid P" line; fails if none.
sd_worker_label() {
	_sd_log_last sd_worker_label "s/.*worker \([0-9][0-9]*\) started, pid $1\$/\1/p" \
		"no worker with pid $1"
}

# stopped_totals: the master's totals from its last log line, "stopped: N
# requests received, M acks sent", as "N M"; fails when it logged no such line.
stopped_totals() {
	_sd_log_last stopped_totals \
		's/.*stopped: \([0-9]*\) requests received, \([0-9]*\) acks sent.*/\1 \2/p' \
		'no "stopped:" line'
}

sd_metrics() {
	curl -sf --max-time 5 "http://127.0.0.1:$SD_METRICS_PORT/metrics"
}

# sd_metric NAME ['{label="v",...}']: the sum of NAME's samples whose labels
# include all the given ones. Fails, with the reason on stderr and nothing on
# stdout, when the scrape fails, when NAME's family has no "# TYPE" line
# (for NAME_bucket, _sum and _count: the histogram NAME), or when no sample
# matches: a check such as `sd_metric_is NAME '' 0` must not pass because
# the endpoint is closed or the name is misspelt.
sd_metric() {
	local name=$1 filter=${2:-} text
	text=$(sd_metrics) || {
		echo "sd_metric $name: scrape of 127.0.0.1:${SD_METRICS_PORT:-}/metrics failed" >&2
		return 1
	}
	awk -v name="$name" -v filter="$filter" '
	BEGIN {
		gsub(/^\{|\}$/, "", filter)
		nf = filter == "" ? 0 : split(filter, want, ",")
		sum = 0
		fam = name
		sub(/_(bucket|sum|count)$/, "", fam)
	}
	$1 == "#" && $2 == "TYPE" {
		if ($3 == name || ($3 == fam && $4 == "histogram"))
			typed = 1
		next
	}
	/^#/ { next }
	{
		sample = $1
		i = index(sample, "{")
		metric = i ? substr(sample, 1, i - 1) : sample
		if (metric != name) next
		labels = i ? substr(sample, i) : ""
		for (k = 1; k <= nf; k++) {
			w = want[k]
			if (!index(labels, "{" w ",") && !index(labels, "{" w "}") &&
			    !index(labels, "," w ",") && !index(labels, "," w "}"))
				next
		}
		sum += $2
		matched++
	}
	END {
		if (!typed) {
			printf "sd_metric %s: no such family in the scrape (no # TYPE line)\n", name > "/dev/stderr"
			exit 1
		}
		if (!matched) {
			printf "sd_metric %s: no sample matches %s\n", name, filter > "/dev/stderr"
			exit 1
		}
		printf "%.17g\n", sum
	}' <<<"$text"
}

# sd_metric_is NAME LABELS VALUE: for wait_for; false also when sd_metric fails.
sd_metric_is() {
	local v
	v=$(sd_metric "$1" "$2") || return 1
	[ "$v" = "$3" ]
}

sd_client() {
	$SD_CLIENT --port "${SD_PORT:?}" "$@"
}

# --- Load and sampling, for the lifecycle suites ---

SD_BENCH=${SD_BENCH:-$SD_ROOT/build/submit-bench}

# sd_bench OUT ARGS...: submit-bench against SD_PORT in the background, its
# JSON line in OUT and its error lines in OUT.err; pid in SD_BENCH_PID.
sd_bench() {
	local out=$1
	shift
	"$SD_BENCH" --json "$@" "127.0.0.1:${SD_PORT:?}" >"$out" 2>"$out.err" </dev/null 3>&- 4>&- &
	SD_BENCH_PID=$!
	SD_BG_PIDS+=("$SD_BENCH_PID")
}

# sd_bench_wait PID OUT [SECONDS]: wait (bounded) for a bench to end; its
# JSON line in SD_BENCH_JSON. Its first error lines go to stderr.
sd_bench_wait() {
	local pid=$1 out=$2 limit=${3:-60}
	SD_BENCH_JSON=
	wait_for -t "$limit" _sd_all_gone "$pid" || {
		echo "sd_bench_wait: bench $pid still running after ${limit}s" >&2
		return 1
	}
	wait "$pid" 2>/dev/null || true
	SD_BENCH_JSON=$(tail -1 "$out")
	echo "bench: $SD_BENCH_JSON" >&2
	head -5 "$out.err" >&2
	[ -n "$SD_BENCH_JSON" ]
}

# sd_bench_field NAME: a field of the last sd_bench_wait's JSON line.
sd_bench_field() {
	jq -r ".$1" <<<"$SD_BENCH_JSON"
}

# sd_sample_metrics DIR [INTERVAL]: scrape /metrics into DIR/NNNNN every
# INTERVAL seconds (0.2) in the background until sd_kill_spawned.
sd_sample_metrics() {
	local dir=$1 every=${2:-0.2}
	mkdir -p "$dir"
	(
		trap 'exit 0' TERM
		i=0
		while :; do
			curl -sf --max-time 2 "http://127.0.0.1:$SD_METRICS_PORT/metrics" \
				>"$dir/$(printf %06d $i)" 2>/dev/null || rm -f "$dir/$(printf %06d $i)"
			i=$((i + 1))
			sleep "$every"
		done
	) </dev/null >/dev/null 2>&1 3>&- 4>&- &
	SD_BG_PIDS+=("$!")
}

# sd_check_monotonic DIR: every counter sample (*_total, histogram _bucket,
# _sum, _count) never goes down from one scrape to the next, per series.
# Prints the number of scrapes and series checked; fails naming the first drop.
sd_check_monotonic() {
	python3 - "$1" <<'PY'
import os, sys
d = sys.argv[1]
last, bad, n = {}, [], 0
for f in sorted(os.listdir(d)):
    text = open(os.path.join(d, f)).read()
    if not text.endswith("\n"):
        continue  # a scrape cut short
    n += 1
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{", 1)[0]
        if not name.endswith(("_total", "_bucket", "_sum", "_count")):
            continue
        v = float(value)
        if series in last and v < last[series][0]:
            bad.append("%s: %s in scrape %s, %s in scrape %s" % (series, last[series][0], last[series][1], v, f))
        last[series] = (v, f)
print("%d scrapes, %d counter series" % (n, len(last)))
for b in bad[:10]:
    print("went down:", b)
sys.exit(1 if bad or n < 2 else 0)
PY
}

# sd_log_moved_check LOG: after `mv LOG LOG.1`, SIGUSR1 makes the master and
# every worker running at the move write to a new LOG, and nothing more to
# LOG.1. A reload then makes each of those workers log its drain and exit
# (log lines carry the pid), which shows that each one reopened.
sd_log_moved_check() {
	local log=$1 old p n=0
	old=$(sd_workers)
	kill -USR1 "$SD_PID"
	wait_for test -e "$log"
	kill -HUP "$SD_PID"
	for p in $old; do
		wait_for -t 15 grep -q "\[$p\] worker [0-9]*: exiting" "$log"
		grep -q "\[$p\] worker [0-9]*: draining" "$log"
		run grep -c "\[$p\] worker [0-9]*: \(draining\|exiting\)" "$log.1"
		assert_output 0
		n=$((n + 1))
	done
	echo "$n workers wrote to the new log after SIGUSR1"
	[ "$n" -ge 2 ]
	grep -q "reload: configuration .* applied" "$log"
	run grep -c "reload: " "$log.1"
	assert_output 0
	run grep -E "reopen|error" "$log" "$log.1"
	assert_output ""
}
