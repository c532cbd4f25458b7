#!/bin/bash
# The spool's costs, as ratios in the same run (docs/BENCHMARKS.md, issue 12):
#  1. pipelined, 1 worker, 20 B payloads: spool off / none / interval / always
#  2. 16 KiB payloads with none (and always) against the disk's sequential
#     write bandwidth measured by fio on the same file system
#  3. request/response (window 1), always vs off: p99 against off's p99 plus
#     3x the median fdatasync latency (fio, 4 KiB writes + fdatasync)
# Also fdatasyncs per second and records per fdatasync for each case.
#
# Environment: BENCH_ROUNDS (3), BENCH_SECONDS (2), SPOOL_BENCH_DIR (a
# directory on the disk to measure; default a fresh one under build/).
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
trap 'spool_cleanup' EXIT
trap 'exit 130' INT TERM

ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-2}
BASE=${SPOOL_BENCH_DIR:-$PWD/$BUILD/spool-bench}
BENCH="$BUILD/submit-bench"
command -v fio >/dev/null || die "fio is not installed (tools/deps.sh)"
for b in "$BUILD/submitd" "$BENCH"; do
	[ -x "$b" ] || die "$b is not built (make all)"
done
mkdir -p "$BASE"

spool_cleanup() {
	bench_cleanup
	rm -rf "$BASE/spool" "$BASE/fio"
}

# start POLICY: submitd with 1 worker; POLICY off for no spool.
start() {
	local spool=""
	rm -rf "$BASE/spool"
	[ "$1" = off ] || spool="$BASE/spool"
	cat >"$BENCH_TMP/submitd.conf" <<-CONF
		listen = {"127.0.0.1:0"}
		metrics_listen = "127.0.0.1:0"
		workers = 1
		idle_timeout = 0
		max_frame_size = 1048576
		spool_dir = "$spool"
		spool_sync = ${1/off/none}
		spool_sync_interval = 1000
		spool_max_size = 0
		spool_segment_size = 268435456
	CONF
	timeout 1800 "$BUILD/submitd" -f -c "$BENCH_TMP/submitd.conf" >"$BENCH_TMP/submitd.log" 2>&1 </dev/null &
	SD_JOB=$!
	wait_log 15 "$BENCH_TMP/submitd.log" 'ready: [0-9]+ workers running' || {
		cat "$BENCH_TMP/submitd.log" >&2
		die "submitd did not become ready"
	}
	SD_PID=$(pgrep -P "$SD_JOB" | head -1)
	SD_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$BENCH_TMP/submitd.log" | head -1)
	SD_METRICS_PORT=$(sed -n 's/.*metrics on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$BENCH_TMP/submitd.log" | head -1)
}

median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# run NAME POLICY ARGS...: ROUNDS bench runs against a fresh server; JSON lines
# in $BENCH_TMP/NAME, fsyncs/s and records per fsync in $BENCH_TMP/NAME.fs.
run() {
	local name=$1 policy=$2 r f0 f1 n0 n1 t0 t1
	shift 2
	start "$policy"
	: >"$BENCH_TMP/$name"
	f0=$(metric submitd_spool_fsyncs_total) n0=$(metric submitd_spool_records_per_fsync_sum)
	t0=$EPOCHREALTIME
	for r in $(seq "$ROUNDS"); do
		timeout 120 "$BENCH" --json -d "${SECS}s" "$@" "127.0.0.1:$SD_PORT" 2>>"$BENCH_TMP/bench.err" |
			tail -1 >>"$BENCH_TMP/$name"
	done
	t1=$EPOCHREALTIME
	f1=$(metric submitd_spool_fsyncs_total) n1=$(metric submitd_spool_records_per_fsync_sum)
	awk -v f=$((f1 - f0)) -v n=$((n1 - n0)) -v t0="$t0" -v t1="$t1" \
		'BEGIN { printf "%.0f %.1f\n", f / (t1 - t0), f ? n / f : 0 }' >"$BENCH_TMP/$name.fs"
	sd_stop
	echo "  $name: $(field "$name" rate) msgs/s, fsyncs/s and records/fsync: $(cat "$BENCH_TMP/$name.fs")" >&2
}

field() {
	jq -r ".$2 // 0" "$BENCH_TMP/$1" | median
}

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
}

echo "spool bench: $ROUNDS rounds of ${SECS}s per case, spool in $BASE" >&2

# 1. Pipelined, 20 B.
for p in off none interval always; do
	run "pipe_$p" "$p" -c 50 -w 64 -s 20
done

# 2. 16 KiB payloads, and the disk's sequential write bandwidth (fio, same directory).
for p in none always; do
	run "big_$p" "$p" -c 16 -w 8 -s 16384
done
mkdir -p "$BASE/fio"
fio --name=seq --directory="$BASE/fio" --rw=write --bs=1M --size=1G --ioengine=psync \
	--end_fsync=1 --output-format=json >"$BENCH_TMP/fio-seq.json" 2>>"$BENCH_TMP/bench.err" ||
	die "fio failed"
FIO_BW=$(jq '.jobs[0].write.bw_bytes' "$BENCH_TMP/fio-seq.json")
# 3. Window 1, and the median fdatasync of a 4 KiB write (fio).
fio --name=sync --directory="$BASE/fio" --rw=write --bs=4k --size=16M --ioengine=psync \
	--fdatasync=1 --output-format=json >"$BENCH_TMP/fio-sync.json" 2>>"$BENCH_TMP/bench.err" ||
	die "fio failed"
FSYNC_P50_US=$(jq '.jobs[0].sync.lat_ns.percentile["50.000000"] / 1000' "$BENCH_TMP/fio-sync.json")
rm -rf "$BASE/fio"
for p in off always; do
	run "rr_$p" "$p" -c 1 -w 1 -s 20
done

off=$(field pipe_off rate)
echo
echo "| case | msgs/s | vs off | fsyncs/s | records/fsync | target |"
echo "|---|---|---|---|---|---|"
for p in off none interval always; do
	read -r fs rpf <"$BENCH_TMP/pipe_$p.fs"
	case $p in none) t=">= 0.8" ;; interval) t=">= 0.75" ;; always) t=">= 0.5" ;; *) t="" ;; esac
	echo "| pipelined 20 B, $p | $(field "pipe_$p" rate) | $(ratio "$(field "pipe_$p" rate)" "$off") | $fs | $rpf | $t |"
done
for p in none always; do
	read -r fs rpf <"$BENCH_TMP/big_$p.fs"
	bw=$(awk -v r="$(field "big_$p" rate)" 'BEGIN { printf "%.0f", r * (16384 + 64) }')
	echo "| 16 KiB, $p: $((bw / 1000000)) MB/s of records | $(field "big_$p" rate) | $(ratio "$bw" "$FIO_BW") of fio's $((FIO_BW / 1000000)) MB/s | $fs | $rpf | $([ $p = none ] && echo '>= 0.8 of fio') |"
done
p99_off=$(field rr_off latency_us.p99) p99_always=$(field rr_always latency_us.p99)
bound=$(awk -v a="$p99_off" -v f="$FSYNC_P50_US" 'BEGIN { printf "%.0f", a + 3 * f }')
read -r fs rpf <"$BENCH_TMP/rr_always.fs"
echo "| window 1, always: p99 ${p99_always} us | $(field rr_always rate) | off p99 ${p99_off} us + 3 x fdatasync p50 ${FSYNC_P50_US} us = ${bound} us | $fs | $rpf | p99 <= ${bound} us |"
