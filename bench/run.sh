#!/bin/bash
# make bench: submitd against the reference server (bench/ref-server.c) on
# the same machine, in the same run, alternating, several short rounds each;
# medians and the submitd/reference ratio. Prints a markdown table and writes
# it to bench/results/<date>-<commit>.md, with the latency percentile curves
# (bench/plot.sh, gnuplot) beside it in <date>-<commit>.svg.
# docs/BENCHMARKS.md explains it.
#
# Environment: BENCH_WORKERS (2), BENCH_ROUNDS (3), BENCH_SECONDS (2, per
# round), BENCH_IDLE_CONNS (10000), BENCH_OUT (the results file).
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

WORKERS=${BENCH_WORKERS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-2}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
DATE=$(date -u +%Y-%m-%d)
OUT=${BENCH_OUT:-bench/results/$DATE-$COMMIT.md}
SVG=${OUT%.md}.svg
BENCH="$BUILD/submit-bench"

for b in "$BUILD/submitd" "$BUILD/submit-bench" "$BUILD/submit-ref"; do
	[ -x "$b" ] || die "$b is not built (make all tools)"
done
ulimit -n "$(ulimit -Hn)"

# run_bench PORT ARGS...: one JSON line on stdout (an {"error":...} line if
# the bench failed to produce one); its error lines in $BENCH_TMP/bench.err.
run_bench() {
	local port=$1 line rc
	shift
	line=$(timeout 120 "$BENCH" --json "$@" "127.0.0.1:$port" 2>>"$BENCH_TMP/bench.err" | tail -1)
	rc=$?
	[ -n "$line" ] || line='{"ok":false,"rate":0,"errors":-1}'
	echo "$line"
}


# Human numbers: 1234567 -> 1.23 M
si() {
	awk -v v="$1" 'BEGIN { if (v >= 1e6) printf "%.2f M ", v / 1e6; else if (v >= 1e3) printf "%.1f k ", v / 1e3; else printf "%.0f ", v }'
}

us() {
	awk -v v="$1" 'BEGIN { if (v >= 1000) printf "%.2f ms", v / 1000; else printf "%.0f us", v }'
}

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
}

# scenario NAME ARGS...: ROUNDS rounds against both servers, alternating which
# goes first. Leaves every JSON line in $BENCH_TMP/NAME.{sd,ref}, and the
# latency distribution of round R in $BENCH_TMP/NAME.{sd,ref}.R.hgrm. A_PORT
# and B_PORT, if set, name the two servers instead of submitd and the reference.
scenario() {
	local name=$1 r SD_PORT=${A_PORT:-$SD_PORT} REF_PORT=${B_PORT:-$REF_PORT}
	shift
	: >"$BENCH_TMP/$name.sd"
	: >"$BENCH_TMP/$name.ref"
	for r in $(seq "$ROUNDS"); do
		if [ $((r % 2)) -eq 1 ]; then
			run_bench "$SD_PORT" "$@" --hgrm "$BENCH_TMP/$name.sd.$r.hgrm" >>"$BENCH_TMP/$name.sd"
			run_bench "$REF_PORT" "$@" --hgrm "$BENCH_TMP/$name.ref.$r.hgrm" >>"$BENCH_TMP/$name.ref"
		else
			run_bench "$REF_PORT" "$@" --hgrm "$BENCH_TMP/$name.ref.$r.hgrm" >>"$BENCH_TMP/$name.ref"
			run_bench "$SD_PORT" "$@" --hgrm "$BENCH_TMP/$name.sd.$r.hgrm" >>"$BENCH_TMP/$name.sd"
		fi
	done
	echo "  $name: submitd $(field "$name" sd rate) msgs/s, reference $(field "$name" ref rate) msgs/s" >&2
}

# field NAME sd|ref JQ-PATH: the median over the rounds.
field() {
	jq -r ".$3 // 0" "$BENCH_TMP/$1.$2" | median
}

# median_hgrm NAME sd|ref: the .hgrm file of the round whose p99 is the
# median (the lower middle one for an even number of rounds).
median_hgrm() {
	local r
	r=$(jq -r '.latency_us.p99 // 0' "$BENCH_TMP/$1.$2" | awk '{ print $1, NR }' | sort -g |
		awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }')
	echo "$BENCH_TMP/$1.$2.$r.hgrm"
}

# errors NAME: total errors over every round against both servers.
errors_of() {
	cat "$BENCH_TMP/$1.sd" "$BENCH_TMP/$1.ref" | jq -s 'map(if .errors < 0 then 1 else .errors end) | add'
}

echo "bench: starting submitd ($WORKERS workers) and the reference server" >&2
sd_start "workers = $WORKERS" "${BENCH_CONF[@]}" || die "submitd did not become ready"
ref_start
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS

# Idle connections first, on a fresh daemon: RSS of the master and the
# workers before and after.
echo "bench: $IDLE_CONNS idle connections" >&2
rss0=$(sd_rss_kb)
conn0=$(metric submitd_client_connected)
"$BENCH" --json --idle --conn -c "$IDLE_CONNS" -d 60 --source 127.0.0.2,127.0.0.3,127.0.0.4 \
	"127.0.0.1:$SD_PORT" >"$BENCH_TMP/idle.json" 2>>"$BENCH_TMP/bench.err" &
idle_bench=$!
BENCH_PIDS+=("$idle_bench")
n=0
while [ "$(metric submitd_client_connected)" -lt $((conn0 + IDLE_CONNS)) ] && [ $n -lt 1500 ]; do
	sleep 0.02
	n=$((n + 1))
done
idle_open=$(($(metric submitd_client_connected) - conn0))
rss1=$(sd_rss_kb)
kill -TERM "$idle_bench" 2>/dev/null
wait "$idle_bench"
idle_per_conn=$(awk -v a="$rss0" -v b="$rss1" -v n="$idle_open" 'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1024 / n; else print "-" }')

echo "bench: throughput, $ROUNDS rounds of ${SECS}s per server" >&2
W="--warmup 0.5 -d $SECS"
scenario pipelined $W -c 100 -w 64 -s 20
scenario unbounded $W -c 100 -w 0 -s 20
scenario reqresp $W -c 100 -w 1 -s 20
scenario openloop --warmup 0.5 -d $((SECS + 1)) -c 100 -w 64 -s 20 -r 50000
scenario kib1 $W -c 100 -w 64 -s 1024
scenario kib16 $W -c 100 -w 64 -s 16384

# Allocations per request in steady state: the workers' arena must not grow
# while a run is going on (buffers come from the pool, acks need no memory).
echo "bench: allocations under load" >&2
"$BENCH" --json -c 100 -w 64 -s 20 -d 4 "127.0.0.1:$SD_PORT" >"$BENCH_TMP/alloc.json" 2>>"$BENCH_TMP/bench.err" &
alloc_bench=$!
BENCH_PIDS+=("$alloc_bench")
sleep 1.5
alloc0=$(metric submitd_worker_allocated_bytes)
req0=$(metric submitd_req_recv_total)
sleep 2
alloc1=$(metric submitd_worker_allocated_bytes)
req1=$(metric submitd_req_recv_total)
wait "$alloc_bench"
alloc_delta=$((alloc1 - alloc0))
alloc_reqs=$((req1 - req0))

# What counting costs: the same daemon with the counters compiled out
# (build/submitd-nostats), beside the real one, alternating.
echo "bench: counters compiled in vs out" >&2
sd_stop
SD_BIN=$BUILD/submitd-nostats sd_start "workers = $WORKERS" "${BENCH_CONF[@]}" ||
	die "submitd-nostats did not become ready"
NOSTATS_PORT=$SD_PORT
BENCH_PIDS+=("$SD_JOB")
NOSTATS_JOB=$SD_JOB
SD_JOB= SD_PID=
sd_start "workers = $WORKERS" "${BENCH_CONF[@]}" || die "submitd did not become ready"
A_PORT=$SD_PORT B_PORT=$NOSTATS_PORT scenario counting $W -c 100 -w 64 -s 20
kill -TERM "$NOSTATS_JOB" 2>/dev/null

# Request/response with one worker: as many server processes as the reference.
echo "bench: request/response with 1 worker" >&2
sd_stop
sd_start 'workers = 1' "${BENCH_CONF[@]}" || die "submitd did not become ready"
scenario reqresp1 $W -c 100 -w 1 -s 20

elapsed=$((SECONDS - T0))
total_errors=0
for s in pipelined unbounded reqresp openloop kib1 kib16 counting reqresp1; do
	total_errors=$((total_errors + $(errors_of $s)))
done

# The percentile curves, from the rounds with the median p99 (bench/plot.sh).
echo "bench: drawing the latency percentiles" >&2
mkdir -p "$(dirname "$OUT")"
plotted=
if bench/plot.sh "$BENCH_TMP/latency.svg" "submitd vs reference, $DATE, commit $COMMIT" \
	"submitd, open loop 50,000 msgs/s" "$(median_hgrm openloop sd)" \
	"reference, open loop 50,000 msgs/s" "$(median_hgrm openloop ref)" \
	"submitd, request/response" "$(median_hgrm reqresp sd)" \
	"reference, request/response" "$(median_hgrm reqresp ref)"; then
	cp "$BENCH_TMP/latency.svg" "$SVG"
	plotted=1
else
	echo "bench: no latency plot (bench/plot.sh failed)" >&2
fi

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
	echo "# submitd benchmark, $DATE, commit $COMMIT"
	echo
	echo "- machine: $(nproc) CPUs, $cpu, kernel $(uname -r); load average at start $load_start"
	echo "- command: \`make bench\` (BENCH_WORKERS=$WORKERS BENCH_ROUNDS=$ROUNDS BENCH_SECONDS=$SECS), $elapsed s"
	echo "- submitd: $WORKERS workers, metrics on; reference: bench/ref-server.c, one thread;"
	echo "  submit-bench: 1 thread, on the same CPUs. Medians of $ROUNDS alternating rounds."
	echo
	echo "| scenario | submitd | reference | submitd/ref |"
	echo "|---|---|---|---|"
	for s in pipelined unbounded reqresp; do
		case $s in
		pipelined) label="1. pipelined: 100 conns, window 64, 20 B" ;;
		unbounded) label="2. unbounded window, 100 conns, 20 B" ;;
		reqresp) label="3. request/response: 100 conns, window 1" ;;
		esac
		a=$(field $s sd rate) b=$(field $s ref rate)
		extra_a= extra_b=
		if [ $s = reqresp ]; then
			extra_a=", p50 $(us "$(field $s sd latency_us.p50)"), p99 $(us "$(field $s sd latency_us.p99)")"
			extra_b=", p50 $(us "$(field $s ref latency_us.p50)"), p99 $(us "$(field $s ref latency_us.p99)")"
		fi
		echo "| $label | $(si "$a")msgs/s$extra_a | $(si "$b")msgs/s$extra_b | $(ratio "$a" "$b") |"
	done
	lat() {
		echo "p50 $(us "$(field openloop "$1" latency_us.p50)"), p99 $(us "$(field openloop "$1" latency_us.p99)"), p99.9 $(us "$(field openloop "$1" latency_us.p999)"), max $(us "$(field openloop "$1" latency_us.max)")"
	}
	echo "| 4. open loop, 50,000 msgs/s, 100 conns | $(lat sd) | $(lat ref) | p99 $(ratio "$(field openloop sd latency_us.p99)" "$(field openloop ref latency_us.p99)") |"
	echo "| 5. $IDLE_CONNS idle connections (after Conn/ConnAck) | $idle_per_conn B RSS per connection ($idle_open open; RSS $rss0 -> $rss1 kB) | - | - |"
	for s in kib1 kib16; do
		case $s in
		kib1) label="6. payload 1 KiB, 100 conns, window 64" ;;
		kib16) label="6. payload 16 KiB, 100 conns, window 64" ;;
		esac
		a=$(field $s sd rate) b=$(field $s ref rate)
		echo "| $label | $(si "$a")msgs/s, $(field $s sd mb_per_s | xargs printf '%.0f') MB/s | $(si "$b")msgs/s, $(field $s ref mb_per_s | xargs printf '%.0f') MB/s | $(ratio "$a" "$b") |"
	done
	a=$(field reqresp1 sd rate) b=$(field reqresp1 ref rate)
	echo "| 3b. request/response as 3, submitd with 1 worker | $(si "$a")msgs/s, p99 $(us "$(field reqresp1 sd latency_us.p99)") | $(si "$b")msgs/s, p99 $(us "$(field reqresp1 ref latency_us.p99)") | $(ratio "$a" "$b") |"
	echo
	a=$(field counting sd rate) b=$(field counting ref rate)
	echo "- counting: pipelined as 1, counters in $(si "$a")msgs/s vs compiled out (build/submitd-nostats) $(si "$b")msgs/s: $(ratio "$a" "$b")"
	echo "- allocations under load: submitd_worker_allocated_bytes changed by $alloc_delta bytes over $alloc_reqs requests (2 s in the middle of a pipelined run)"
	echo "- errors reported by submit-bench over all runs: $total_errors"
	if [ -n "$plotted" ]; then
		echo
		echo "Latency percentiles of rows 3 and 4, the round with the median p99 of each:"
		echo
		echo "![latency percentile curves]($(basename "$SVG"))"
	fi
	echo
	echo "Targets: pipelined >= 0.90x reference: $(ratio "$(field pipelined sd rate)" "$(field pipelined ref rate)");" \
		"request/response >= 0.95x: $(ratio "$(field reqresp sd rate)" "$(field reqresp ref rate)");" \
		"open-loop p99 < 1 ms: $(us "$(field openloop sd latency_us.p99)");" \
		"idle memory <= 4096 B/conn: $idle_per_conn B."
} >"$BENCH_TMP/table.md"

mkdir -p "$(dirname "$OUT")"
cp "$BENCH_TMP/table.md" "$OUT"
cat "$BENCH_TMP/table.md"
echo
echo "bench: written to $OUT${plotted:+ and $SVG}" >&2
if [ -s "$BENCH_TMP/bench.err" ]; then
	echo "bench: submit-bench reported:" >&2
	head -20 "$BENCH_TMP/bench.err" >&2
fi
[ "$total_errors" -eq 0 ]
