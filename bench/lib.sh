# Shared by bench/run.sh, bench/profile.sh, bench/callgrind.sh,
# bench/spool.sh, bench/tls.sh and bench/auth.sh: start and stop submitd
# (sd_start CONFIG LINES... and sd_stop, from test/helpers/daemon.bash, as
# the tests do) and the reference server on free ports, read metrics, take
# medians. Every process started here is stopped by pid in bench_cleanup.

BUILD=${BUILD:-build}
BENCH_TMP=$(mktemp -d /tmp/submitd-bench.XXXXXX)
BENCH_PIDS=()
SD_JOB= SD_PID= SD_PORT= SD_METRICS_PORT= REF_PID= REF_PORT=

# daemon.bash's settings for a bench: its files in BENCH_TMP, longer bounds.
SD_DIR=$BENCH_TMP
SD_BIN=${SD_BIN:-$BUILD/submitd}
SD_READY_S=${SD_READY_S:-15}
SD_STOP_S=20
SD_TIMEOUT_S=1800
. test/helpers/daemon.bash
# The config lines every bench run adds to sd_start's defaults.
BENCH_CONF=('max_connections = 19000' 'idle_timeout = 0')

bench_cleanup() {
	local p
	for p in "${BENCH_PIDS[@]}" $REF_PID; do
		kill -TERM "$p" 2>/dev/null
	done
	if [ -n "$SD_PID" ]; then
		kill -TERM "$SD_PID" 2>/dev/null
	elif [ -n "$SD_JOB" ]; then
		kill -TERM "$SD_JOB" 2>/dev/null
	fi
	for p in "${BENCH_PIDS[@]}" $REF_PID $SD_JOB; do
		wait_gone 15 "$p" || kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$BENCH_TMP"
}

die() {
	echo "bench: $*" >&2
	exit 1
}

# wait_gone SECONDS PID: poll until PID has exited (or is a zombie).
wait_gone() {
	local n=$(($1 * 50)) pid=$2
	while [ $n -gt 0 ]; do
		[ -e "/proc/$pid" ] || return 0
		[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
		sleep 0.02
		n=$((n - 1))
	done
	return 1
}

# wait_log SECONDS FILE REGEX
wait_log() {
	local n=$(($1 * 50))
	while [ $n -gt 0 ]; do
		grep -qE "$3" "$2" 2>/dev/null && return 0
		sleep 0.02
		n=$((n - 1))
	done
	return 1
}

ref_start() {
	timeout 1800 "$BUILD/submit-ref" "$@" 0 >/dev/null 2>"$BENCH_TMP/ref.log" </dev/null &
	REF_PID=$!
	wait_log 5 "$BENCH_TMP/ref.log" 'listening on' || die "submit-ref did not start"
	REF_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$BENCH_TMP/ref.log")
}

# metric NAME: the sum of NAME's samples.
metric() {
	curl -sf --max-time 5 "http://127.0.0.1:$SD_METRICS_PORT/metrics" |
		awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f\n", s }'
}

# RSS of the master and its workers, in kB.
sd_rss_kb() {
	local p s=0 v
	for p in $SD_PID $(sd_workers); do
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
		s=$((s + ${v:-0}))
	done
	echo $s
}

# median: the median of the numbers on stdin, one a line (0 for none).
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# rotate R WORD...: the words rotated left by R, one a line, so that each
# case of a round leads in turn.
rotate() {
	local r=$1
	shift
	local a=("$@") i
	for i in $(seq 0 $(($# - 1))); do
		echo "${a[$(((i + r) % $#))]}"
	done
}
