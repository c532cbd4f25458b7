#!/bin/bash
# make profile: a CPU profile of the submitd workers under load from
# submit-bench (perf record -e cpu-clock -g: these VMs have no hardware
# counters), then the top functions. The recording stays in PROFILE_OUT
# ($(BUILD)/perf.data) for a flame graph, see docs/BENCHMARKS.md.
# Environment: PROFILE_SECONDS (5), PROFILE_ARGS (submit-bench options,
# "-c 100 -w 64 -s 20"), BENCH_WORKERS (2).
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

SECS=${PROFILE_SECONDS:-5}
ARGS=${PROFILE_ARGS:--c 100 -w 64 -s 20}
OUTF=${PROFILE_OUT:-$BUILD/perf.data}
command -v perf >/dev/null || die "perf is not installed (apt-get install linux-perf)"

sd_start "workers = ${BENCH_WORKERS:-2}" "${BENCH_CONF[@]}" || die "submitd did not become ready"
pids=$(sd_workers | paste -sd,)
# shellcheck disable=SC2086
"$BUILD/submit-bench" $ARGS -d $((SECS + 2)) "127.0.0.1:$SD_PORT" >"$BENCH_TMP/bench.out" 2>&1 &
BENCH_PIDS+=("$!")
sleep 1
perf record -q -e cpu-clock -g -p "$pids" -o "$OUTF" -- sleep "$SECS" 2>"$BENCH_TMP/perf.err" ||
	{ cat "$BENCH_TMP/perf.err" >&2; die "perf record failed"; }
wait "${BENCH_PIDS[@]}"
grep -E '^(rate|errors)' "$BENCH_TMP/bench.out"
echo "top functions in the workers (self time):"
perf report -i "$OUTF" --stdio --no-children --sort symbol --percent-limit 1 2>/dev/null |
	grep -E '^ +[0-9.]+%' | sed 's/[[:space:]-]*$//' | head -30
echo "recording: $OUTF (perf report -i $OUTF; flame graph: docs/BENCHMARKS.md)"
