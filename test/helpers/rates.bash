# Request rates, CPU time and descriptor exhaustion, for the hardening
# suite and the thresholds that make bench checks (bench/thresholds.bats).
# Load after helpers/common.

# bench_rate: one 2 s closed-loop run on 10 connections; prints its rate,
# fails on any error.
bench_rate() {
	local out
	out=$(timeout 30 "$SD_BENCH" --json -c 10 -d 2s "127.0.0.1:$SD_PORT" 2>/dev/null) || {
		echo "bench failed: $out" >&2
		return 1
	}
	jq -e '.errors == 0 and .acked > 0' <<<"$out" >/dev/null || {
		echo "bench reported errors: $out" >&2
		return 1
	}
	jq -r '.rate | floor' <<<"$out"
}

median() {
	printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

# at_least RATIO WITH WITHOUT: WITH >= RATIO * WITHOUT, with the numbers in the message.
at_least() {
	echo "median rate with: $2, without: $3, ratio $(awk -v a="$2" -v b="$3" 'BEGIN {printf "%.3f", a / b}') (need >= $1)" >&3
	awk -v r="$1" -v a="$2" -v b="$3" 'BEGIN {exit !(a >= r * b)}'
}

# ticks PID: user + system CPU time of PID, in clock ticks.
ticks() {
	awk '{print $14 + $15}' "/proc/$1/stat"
}

# sd_start_at_fd_limit HOLD: one worker limited to 64 descriptors and 200
# connections held open against it by hostile.py (its lines in HOLD, its
# pid in SD_SPAWNED), once accept has failed at least once.
sd_start_at_fd_limit() {
	local wrap=$BATS_TEST_TMPDIR/submitd-nofile64
	printf '#!/bin/sh\nexec prlimit --nofile=64:64 %q "$@"\n' "$SD_BIN" >"$wrap"
	chmod +x "$wrap"
	SD_BIN=$wrap sd_start 'workers = 1'
	sd_spawn "$1" python3 "$SD_ROOT/test/fuzz/hostile.py" --port "$SD_PORT" --max 60 hold -n 200
	wait_for -t 20 grep -q '^opened 200' "$1"
	wait_for -t 10 metric_above submitd_accept_errors_total '' 0
}

# metric_above NAME LABELS MIN: NAME's value is above MIN (false if it cannot be read).
metric_above() {
	local v
	v=$(sd_metric "$1" "$2") || return 1
	awk -v v="$v" -v m="$3" 'BEGIN {exit !(v > m)}'
}
