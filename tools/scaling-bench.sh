#!/usr/bin/env bash
# Scaling benchmark: submitd with 1, 2, 4, 8 workers against submit-bench,
# server and load generator pinned to separate halves of the CPUs.
#   tools/scaling-bench.sh [WORKERS...]      (default: 1 2 4 8)
# Environment: RUN (a prefix for the binaries, e.g. a carried dynamic
# loader), THREADS (bench threads, default: half the CPUs), CONNS (400),
# DURATION (8s), ROUNDS (3: the median is reported).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-}
command -v taskset >/dev/null || taskset() { shift 2; "$@"; }
ncpu=$(nproc)
half=$((ncpu / 2))
[ "$half" -ge 1 ] || half=1
THREADS=${THREADS:-$half}
CONNS=${CONNS:-400}
DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}
workers=("$@")
[ ${#workers[@]} -gt 0 ] || workers=(1 2 4 8)
srv_cpus="0-$((half - 1))"
cli_cpus="$half-$((ncpu - 1))"
[ "$ncpu" -ge 2 ] || cli_cpus=0
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

start() { # WORKERS
	cat >"$tmp/c.conf" <<EOC
listen = {"127.0.0.1:0"}
metrics_listen = "127.0.0.1:0"
workers = $1
log_file = "$tmp/log"
EOC
	: >"$tmp/log"
	taskset -c "$srv_cpus" $RUN build/submitd -f -c "$tmp/c.conf" >/dev/null 2>&1 &
	pid=$!
	for _ in $(seq 500); do
		grep -q "ready: " "$tmp/log" && break
		sleep 0.02
	done
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/log" | head -1)
	[ -n "$port" ] || { cat "$tmp/log"; exit 1; }
}

stop() {
	kill "$pid"
	wait "$pid" || true
	pid=
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() { # WINDOW -> median msgs/s
	local w=$1 i
	for i in $(seq "$ROUNDS"); do
		taskset -c "$cli_cpus" $RUN build/submit-bench -t "$THREADS" -c "$CONNS" -w "$w" \
			-d "$DURATION" --warmup 1s --json "127.0.0.1:$port" |
			sed -n 's/.*"rate":\([0-9.]*\).*/\1/p'
	done | median
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "# kernel $(uname -r); server on CPUs $srv_cpus, submit-bench -t $THREADS -c $CONNS on $cli_cpus, $DURATION x $ROUNDS (median)"
printf "| workers | pipelined (w=64) msgs/s | speed-up | request/response (w=1) msgs/s | speed-up |\n|---|---|---|---|---|\n"
base_p= base_r=
for w in "${workers[@]}"; do
	start "$w"
	p=$(run 64)
	r=$(run 1)
	stop
	[ -n "$base_p" ] || { base_p=$p; base_r=$r; }
	awk -v w="$w" -v p="$p" -v r="$r" -v bp="$base_p" -v br="$base_r" \
		'BEGIN { printf "| %s | %.0f | %.2fx | %.0f | %.2fx |\n", w, p, p / bp, r, r / br }'
done
