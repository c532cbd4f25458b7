# Shared by the bats suites: start submitd on free ports, stop it, read its
# metrics, poll for conditions. Load with `load helpers/common`.

bats_require_minimum_version 1.5.0
bats_load_library bats-support
bats_load_library bats-assert

SD_ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
SD_BIN=${SD_BIN:-$SD_ROOT/build/submitd}
SD_CLIENT="python3 $SD_ROOT/test/helpers/sdclient.py"

# wait_for [-t SECONDS] CMD...: run CMD every 20 ms until it succeeds; 1 on
# timeout, or at once if CMD returns 255 (the condition can no longer become true).
wait_for() {
	local limit=5
	if [ "$1" = -t ]; then
		limit=$2
		shift 2
	fi
	local deadline=$((SECONDS + limit + 1)) start=$EPOCHREALTIME
	while :; do
		local rc=0
		"$@" >/dev/null 2>&1 || rc=$?
		case $rc in
		0) return 0 ;;
		255) return 1 ;;
		esac
		# Bounded by wall time (SECONDS is whole seconds; EPOCHREALTIME is exact).
		if (($(_sd_elapsed_ms "$start") >= limit * 1000)) || ((SECONDS > deadline)); then
			echo "wait_for: timed out after ${limit}s: $*" >&2
			return 1
		fi
		sleep 0.02
	done
}

_sd_elapsed_ms() {
	local now=$EPOCHREALTIME
	echo $(((${now/./} - ${1/./}) / 1000))
}

# sd_config [LINES...]: the config file path; LINES override the defaults by option name.
sd_config() {
	local conf=$BATS_TEST_TMPDIR/submitd.conf
	local -A over=()
	local l k
	for l in "$@"; do
		k=${l%%=*}
		k=${k//[[:space:]]/}
		over[$k]=1
	done
	{
		[ -n "${over[listen]:-}" ] || echo 'listen = {"127.0.0.1:0"}'
		[ -n "${over[metrics_listen]:-}" ] || echo 'metrics_listen = "127.0.0.1:0"'
		[ -n "${over[workers]:-}" ] || echo 'workers = 2'
		[ -n "${over[log_file]:-}" ] || echo "log_file = \"$BATS_TEST_TMPDIR/submitd.log\""
		[ -n "${over[log_level]:-}" ] || echo 'log_level = info'
		[ -n "${over[shutdown_timeout]:-}" ] || echo 'shutdown_timeout = 5'
		for l in "$@"; do
			echo "$l"
		done
	} >"$conf"
	echo "$conf"
}

# The daemon's log: its log_file plus whatever went to stdout/stderr.
sd_log() {
	cat "$BATS_TEST_TMPDIR/submitd.log" "$BATS_TEST_TMPDIR/submitd.out" 2>/dev/null
}

sd_log_count() {
	sd_log | grep -cE -- "$1"
}

# sd_start [CONFIG LINES...]: start submitd in the foreground under timeout,
# wait until all workers are ready, set SD_PID (master), SD_JOB (the
# background job, for `wait`), SD_PORT, SD_METRICS_PORT, SD_CONF.
sd_start() {
	SD_CONF=$(sd_config "$@")
	sd_start_conf "$SD_CONF"
}

sd_start_conf() {
	SD_CONF=$1
	[ -x "$SD_BIN" ] || {
		echo "sd_start: $SD_BIN not built" >&2
		return 1
	}
	: >"$BATS_TEST_TMPDIR/submitd.log"
	timeout 300 "$SD_BIN" -f -c "$SD_CONF" >"$BATS_TEST_TMPDIR/submitd.out" 2>&1 3>&- 4>&- &
	SD_JOB=$!
	SD_PID=
	if ! wait_for -t 10 _sd_ready; then
		echo "sd_start: submitd did not become ready; config and log:" >&2
		cat "$SD_CONF" >&2
		sd_log >&2
		return 1
	fi
	SD_PID=$(pgrep -P "$SD_JOB" | head -1)
	SD_PORT=$(sd_log | sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' | head -1)
	SD_METRICS_PORT=$(sd_log | sed -n 's/.*metrics on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' | head -1)
	export SD_PORT SD_METRICS_PORT SD_PID SD_JOB SD_CONF
	[ -n "$SD_PID" ] && [ -n "$SD_PORT" ] || {
		echo "sd_start: no master pid or port (pid '$SD_PID', port '$SD_PORT')" >&2
		sd_log >&2
		return 1
	}
}

_sd_ready() {
	kill -0 "$SD_JOB" 2>/dev/null || {
		return 255
	}
	sd_log | grep -qE "ready: [0-9]+ workers running"
}

# sd_spawn OUT CMD...: run a client in the background, output to OUT; its pid
# in SD_SPAWNED. sd_stop ends every one still running.
SD_BG_PIDS=()
sd_spawn() {
	local out=$1
	shift
	"$@" >"$out" 2>&1 </dev/null 3>&- 4>&- &
	SD_SPAWNED=$!
	SD_BG_PIDS+=("$SD_SPAWNED")
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

sd_kill_spawned() {
	local p
	for p in "${SD_BG_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	SD_BG_PIDS=()
}

# sd_stop: SIGTERM, a bounded wait, then SIGKILL for the master and every
# worker, by pid. Safe to call twice and when nothing was started.
sd_stop() {
	sd_kill_spawned
	[ -n "${SD_JOB:-}" ] || return 0
	local pids p
	pids="${SD_PID:-} $(sd_workers 2>/dev/null || true)"
	if [ -n "${SD_PID:-}" ]; then
		kill -TERM "$SD_PID" 2>/dev/null || true
	else
		kill -TERM "$SD_JOB" 2>/dev/null || true
	fi
	if ! wait_for -t 10 _sd_all_gone $pids "$SD_JOB"; then
		echo "sd_stop: still running after SIGTERM, sending SIGKILL" >&2
		for p in $pids "$SD_JOB"; do
			kill -KILL "$p" 2>/dev/null || true
		done
	fi
	wait "$SD_JOB" 2>/dev/null || true
	SD_JOB= SD_PID=
}

_sd_all_gone() {
	local p
	for p in "$@"; do
		[ -n "$p" ] || continue
		# A zombie still answers kill -0; the job is reaped by wait later.
		[ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && return 1
	done
	return 0
}

# sd_workers: the master's child pids, one per line.
sd_workers() {
	[ -n "${SD_PID:-}" ] || return 1
	pgrep -P "$SD_PID" | sort -n
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
