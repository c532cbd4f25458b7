#!/bin/bash
# The spool's costs, as ratios in the same run (docs/BENCHMARKS.md, issue 12):
#  1. pipelined, 1 worker, 20 B payloads: spool off / none / interval / always
#  2. 16 KiB payloads with none (and always, and off: what the bench and
#     server reach on this machine without a disk) against the disk's
#     sequential write bandwidth measured by fio on the same file system
#  3. request/response (window 1), always vs off: p99 against off's p99 plus
#     3x the median fdatasync latency (fio, 4 KiB writes + fdatasync)
#  4. sustained (reported, no target): pipelined none against off for
#     BENCH_LONG_SECONDS (12), the median of the per-second rates after the
#     first 4 s, when gigabytes have gone through the page cache
# Also fdatasyncs per second and records per fdatasync for each case.
#
# The machine may be shared and loaded: every round runs every case once
# (and fio once), alternating, and each ratio is taken within its round
# (the pipelined cases against the mean of an off run before and after them);
# the table shows the medians over the rounds. Prints a markdown table and
# writes it to bench/results/<date>-<commit>-spool.md (BENCH_SPOOL_OUT).
#
# Environment: BENCH_ROUNDS (5), BENCH_SECONDS (2), SPOOL_BENCH_DIR (a
# directory on the disk to measure; default a fresh one under build/),
# BENCH_SPOOL_CASES (all: pipe rr big long, a subset to run less).
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
trap 'spool_cleanup' EXIT
trap 'exit 130' INT TERM

ROUNDS=${BENCH_ROUNDS:-5}
SECS=${BENCH_SECONDS:-2}
BASE=${SPOOL_BENCH_DIR:-$PWD/$BUILD/spool-bench}
CASES=${BENCH_SPOOL_CASES:-pipe rr big long}
LONG_SECS=${BENCH_LONG_SECONDS:-12}
PIPE_LOAD=${BENCH_SPOOL_PIPE:--c 50 -w 64}
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
OUT=${BENCH_SPOOL_OUT:-bench/results/$(date -u +%Y-%m-%d)-$COMMIT-spool.md}
BENCH="$BUILD/submit-bench"
command -v fio >/dev/null || die "fio is not installed (tools/deps.sh)"
for b in "$BUILD/submitd" "$BENCH"; do
	[ -x "$b" ] || die "$b is not built (make all tools)"
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
	# The master's pid (from its log: pgrep -P came back empty under load) and ports.
	local n=100
	while [ $n -gt 0 ]; do
		SD_PID=$(sed -n 's/.*\[\([0-9]*\)\]: ready: .*/\1/p' "$BENCH_TMP/submitd.log" | head -1)
		SD_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$BENCH_TMP/submitd.log" | head -1)
		SD_METRICS_PORT=$(sed -n 's/.*metrics on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$BENCH_TMP/submitd.log" | head -1)
		[ -n "$SD_PID" ] && [ -n "$SD_PORT" ] && [ -n "$SD_METRICS_PORT" ] && break
		sleep 0.05
		n=$((n - 1))
	done
	[ -n "$SD_PID" ] && [ -n "$SD_PORT" ] && [ -n "$SD_METRICS_PORT" ] || {
		cat "$BENCH_TMP/submitd.log" >&2
		die "no pid or port in the submitd log (pid '$SD_PID' port '$SD_PORT' metrics '$SD_METRICS_PORT')"
	}
}


# run NAME POLICY ARGS...: one bench run against a fresh server. Appends
# "rate p99_us fsyncs_per_s records_per_fsync" to $BENCH_TMP/NAME.
run() {
	local name=$1 policy=$2 f0 f1 n0 n1 t0 t1 j
	shift 2
	start "$policy"
	f0=$(metric submitd_spool_fsyncs_total) n0=$(metric submitd_spool_records_per_fsync_sum)
	t0=$EPOCHREALTIME
	j=$(timeout 120 "$BENCH" --json -d "${SECS}s" "$@" "127.0.0.1:$SD_PORT" 2>>"$BENCH_TMP/bench.err" | tail -1)
	t1=$EPOCHREALTIME
	f1=$(metric submitd_spool_fsyncs_total) n1=$(metric submitd_spool_records_per_fsync_sum)
	sd_stop
	[ -n "$j" ] || die "submit-bench failed ($name): $(tail -3 "$BENCH_TMP/bench.err")"
	echo "$(jq -r '"\(.rate // 0) \(.latency_us.p99 // 0)"' <<<"$j")" \
		"$(awk -v f=$((f1 - f0)) -v n=$((n1 - n0)) -v t0="$t0" -v t1="$t1" \
			'BEGIN { printf "%.0f %.1f", f / (t1 - t0), f ? n / f : 0 }')" >>"$BENCH_TMP/$name"
}

# run_long NAME POLICY: a sustained pipelined run; appends the median of its
# per-second rates after the first 4 s to $BENCH_TMP/NAME.
run_long() {
	start "$2"
	# shellcheck disable=SC2086
	timeout 120 "$BENCH" -d "${LONG_SECS}s" $PIPE_LOAD -s 20 --csv "$BENCH_TMP/$1.csv" \
		"127.0.0.1:$SD_PORT" >/dev/null 2>>"$BENCH_TMP/bench.err" ||
		die "submit-bench failed ($1): $(tail -3 "$BENCH_TMP/bench.err")"
	sd_stop
	awk -F, 'NR > 5 { print $4 }' "$BENCH_TMP/$1.csv" | median >>"$BENCH_TMP/$1"
}

# col NAME N: the Nth column of the last line of NAME (this round).
col() {
	tail -1 "$BENCH_TMP/$1" | awk -v n="$2" '{ print $n }'
}

# med NAME N: the median of column N of NAME over the rounds.
med() {
	awk -v n="$2" '{ print $n }' "$BENCH_TMP/$1" | median
}

div() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print 0 }'
}

# fio_round: the disk's sequential write bandwidth (bytes/s, 1 MiB writes
# and the final fsync) and the median latency of an fdatasync after a 4 KiB
# write, appending to a growing file and overwriting a written one (us).
fio_round() {
	local bw app ovw
	rm -rf "$BASE/fio"
	mkdir -p "$BASE/fio"
	fio --name=seq --directory="$BASE/fio" --rw=write --bs=1M --size=512M --ioengine=psync \
		--end_fsync=1 --output-format=json >"$BENCH_TMP/fio-seq.json" 2>>"$BENCH_TMP/bench.err" ||
		die "fio failed"
	bw=$(jq '.jobs[0].write.bw_bytes' "$BENCH_TMP/fio-seq.json")
	fio --name=app --directory="$BASE/fio" --rw=write --bs=4k --size=2M --ioengine=psync \
		--fallocate=none --fdatasync=1 --output-format=json >"$BENCH_TMP/fio-app.json" \
		2>>"$BENCH_TMP/bench.err" || die "fio failed"
	app=$(jq '.jobs[0].sync.lat_ns.percentile["50.000000"] / 1000' "$BENCH_TMP/fio-app.json")
	fio --name=ovw --directory="$BASE/fio" --rw=write --bs=4k --size=2M --ioengine=psync \
		--overwrite=1 --fdatasync=1 --output-format=json >"$BENCH_TMP/fio-ovw.json" \
		2>>"$BENCH_TMP/bench.err" || die "fio failed"
	ovw=$(jq '.jobs[0].sync.lat_ns.percentile["50.000000"] / 1000' "$BENCH_TMP/fio-ovw.json")
	rm -rf "$BASE/fio"
	echo "$bw $app $ovw" >>"$BENCH_TMP/fio"
}

has() {
	case " $CASES " in *" $1 "*) return 0 ;; esac
	return 1
}

echo "spool bench: $ROUNDS alternating rounds of ${SECS}s per case ($CASES), spool in $BASE" >&2
: >"$BENCH_TMP/ratios"
for r in $(seq "$ROUNDS"); do
	fio_round
	read -r bw app ovw < <(tail -1 "$BENCH_TMP/fio")
	line="round $r: fio ${bw} B/s, fdatasync p50 append ${app} us, overwrite ${ovw} us;"
	if has pipe; then
		# off before and after, its mean the reference: load that changes
		# during the round weighs on both sides.
		for p in off none interval always off2; do
			# shellcheck disable=SC2086
			run "pipe_$p" "${p%2}" $PIPE_LOAD -s 20
		done
		off=$(awk -v a="$(col pipe_off 1)" -v b="$(col pipe_off2 1)" 'BEGIN { print (a + b) / 2 }')
		for p in none interval always; do
			echo "pipe_$p $(div "$(col "pipe_$p" 1)" "$off")" >>"$BENCH_TMP/ratios"
			line="$line $p $(div "$(col "pipe_$p" 1)" "$off")x"
		done
	fi
	if has rr; then
		for p in off always; do
			run "rr_$p" "$p" -c 1 -w 1 -s 20
		done
		# The bound of this round: off's p99 + 3 x the append fdatasync median.
		echo "rr_bound $(awk -v a="$(col rr_off 2)" -v f="$app" 'BEGIN { print a + 3 * f }')" \
			>>"$BENCH_TMP/ratios"
		echo "rr_bound_ovw $(awk -v a="$(col rr_off 2)" -v f="$ovw" 'BEGIN { print a + 3 * f }')" \
			>>"$BENCH_TMP/ratios"
		echo "rr_always $(col rr_always 2)" >>"$BENCH_TMP/ratios"
		line="$line rr p99 off $(col rr_off 2) us always $(col rr_always 2) us"
	fi
	if has big; then
		for p in off none always; do
			run "big_$p" "$p" -c 16 -w 8 -s 16384
			echo "big_$p $(div "$(awk -v r="$(col "big_$p" 1)" 'BEGIN { print r * (16384 + 64) }')" "$bw")" \
				>>"$BENCH_TMP/ratios"
		done
		line="$line 16 KiB none $(div "$(col big_none 1)" 1)/s"
	fi
	if has long; then
		run_long long_off off
		run_long long_none none
		echo "long_none $(div "$(col long_none 1)" "$(col long_off 1)")" >>"$BENCH_TMP/ratios"
		line="$line sustained none $(div "$(col long_none 1)" "$(col long_off 1)")x"
	fi
	echo "  $line" >&2
done

# rmed KEY: the median over the rounds of a per-round value.
rmed() {
	awk -v k="$1" '$1 == k { print $2 }' "$BENCH_TMP/ratios" | median
}
met() {
	awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN { ok = op == ">=" ? a >= b : a <= b; print ok ? "met" : "not met" }'
}

{
	echo "spool bench $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT, $(nproc) CPUs," \
		"load $(cut -d' ' -f1-3 /proc/loadavg), $ROUNDS rounds x ${SECS}s, spool on" \
		"$(df -T "$BASE" | awk 'NR == 2 { print $2 " " $1 }')"
	echo
	FIO_BW=$(awk '{ print $1 }' "$BENCH_TMP/fio" | median)
	APP=$(awk '{ print $2 }' "$BENCH_TMP/fio" | median)
	OVW=$(awk '{ print $3 }' "$BENCH_TMP/fio" | median)
	echo "fio (medians): sequential write $((${FIO_BW%.*} / 1000000)) MB/s;" \
		"fdatasync after a 4 KiB write: ${APP} us appending, ${OVW} us overwriting"
	echo
	echo "| case | msgs/s | fsyncs/s | records/fsync | result (median of the rounds' ratios) | target | |"
	echo "|---|---|---|---|---|---|---|"
	if has pipe; then
		echo "| pipelined 20 B, off | $(cat "$BENCH_TMP/pipe_off" "$BENCH_TMP/pipe_off2" | awk '{ print $1 }' | median) | - | - | 1 | | |"
		for p in none interval always; do
			case $p in none) t=0.8 ;; interval) t=0.75 ;; always) t=0.5 ;; esac
			v=$(rmed "pipe_$p")
			echo "| pipelined 20 B, $p | $(med "pipe_$p" 1) | $(med "pipe_$p" 3) | $(med "pipe_$p" 4) | ${v}x of off | >= ${t}x | $(met "$v" ">=" "$t") |"
		done
	fi
	if has rr; then
		echo "| window 1, off | $(med rr_off 1) | - | - | p99 $(med rr_off 2) us | | |"
		v=$(rmed rr_always) b=$(rmed rr_bound) bo=$(rmed rr_bound_ovw)
		echo "| window 1, always | $(med rr_always 1) | $(med rr_always 3) | $(med rr_always 4) | p99 $v us | <= off p99 + 3 x fdatasync p50 = $b us (appending), $bo us (overwriting) | $(met "$v" "<=" "$b") (appending), $(met "$v" "<=" "$bo") (overwriting) |"
	fi
	if has big; then
		for p in off none always; do
			v=$(rmed "big_$p")
			echo "| 16 KiB, $p | $(med "big_$p" 1) ($(awk -v r="$(med "big_$p" 1)" 'BEGIN { printf "%.0f", r * 16448 / 1e6 }') MB/s) | $(med "big_$p" 3) | $(med "big_$p" 4) | ${v}x of fio | $([ $p = none ] && echo '>= 0.8x') | $([ $p = none ] && met "$v" ">=" 0.8) |"
		done
	fi
	if has long; then
		echo "| sustained ${LONG_SECS} s, off (after 4 s) | $(med long_off 1) | - | - | 1 | | |"
		echo "| sustained ${LONG_SECS} s, none (after 4 s) | $(med long_none 1) | - | - | $(rmed long_none)x of off | reported | |"
	fi
} | tee "$BENCH_TMP/table"
mkdir -p "$(dirname "$OUT")"
cp "$BENCH_TMP/table" "$OUT"
echo "bench: written to $OUT" >&2
