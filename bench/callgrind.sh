#!/bin/bash
# make callgrind: user-space instructions per request in a submitd worker,
# counted by valgrind --tool=callgrind. Repeatable on a noisy machine, so it
# is the number to track from change to change.
#
# One worker runs under callgrind. After a warm-up run its counters are
# zeroed, submit-bench sends exactly N requests, the counters are dumped:
# Ir of the dump / N. Two cases: pipelined (window 64, batches of acks per
# write) and request/response (window 1, a read and a write per request).
# Environment: CALLGRIND_N (200000), CALLGRIND_OUT (keep the dumps there),
# CALLGRIND_SPOOL (none, interval or always: the spool on, in a temporary
# directory, with that spool_sync; default off).
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

N=${CALLGRIND_N:-200000}
BENCH="$BUILD/submit-bench"
command -v valgrind >/dev/null || die "valgrind is not installed"

spool=()
if [ -n "${CALLGRIND_SPOOL:-}" ]; then
	spool=("spool_dir = \"$BENCH_TMP/spool\"" "spool_sync = $CALLGRIND_SPOOL" 'spool_max_size = 0')
fi
SD_PREFIX=(valgrind --tool=callgrind --trace-children=yes
	--callgrind-out-file="$BENCH_TMP/callgrind.out.%p" --dump-instr=no --collect-jumps=no
	--compress-strings=no --compress-pos=no)
SD_READY_S=120 sd_start 'workers = 1' "${BENCH_CONF[@]}" ${spool[@]+"${spool[@]}"} ||
	die "submitd did not become ready under callgrind"
worker=$(sd_workers | head -1)
[ -n "$worker" ] || die "no worker"

# measure NAME ARGS...: zero, run, dump; prints Ir per request.
measure() {
	local name=$1 before ir n
	shift
	"$BENCH" -n 20000 "$@" "127.0.0.1:$SD_PORT" >/dev/null 2>&1 || die "$name: warm-up run failed"
	callgrind_control -z "$worker" >/dev/null 2>&1 || die "callgrind_control -z failed"
	n=$("$BENCH" --json -n "$N" -d 300 "$@" "127.0.0.1:$SD_PORT" 2>"$BENCH_TMP/bench.err" | jq -r .acked)
	[ "$n" = "$N" ] || { cat "$BENCH_TMP/bench.err" >&2; die "$name: $n of $N acked"; }
	before=$(ls "$BENCH_TMP"/callgrind.out."$worker"* 2>/dev/null | wc -l)
	callgrind_control -d "$name" "$worker" >/dev/null 2>&1 || die "callgrind_control -d failed"
	dump=$(ls -t "$BENCH_TMP"/callgrind.out."$worker".* | head -1)
	ir=$(awk '/^summary:/ { print $2 }' "$dump")
	[ -n "$ir" ] || die "no summary in $dump"
	printf '%-34s %12s Ir / %s requests = %s Ir per request\n' "$name ($*)" "$ir" "$N" \
		"$(awk -v a="$ir" -v b="$N" 'BEGIN { printf "%.0f", a / b }')"
	echo "  top functions, self Ir per request:"
	# Self cost: every cost line except the one after calls= (a callee's
	# inclusive cost).
	awk -v n="$N" '
	/^fn=/ { fn = substr($0, 4); next }
	/^calls=/ { skip = 1; next }
	/^[0-9+-]/ { if (skip) { skip = 0; next } self[fn] += $2; next }
	END { for (f in self) printf "%12.1f  %s\n", self[f] / n, f }' "$dump" |
		sort -rn | head -"${CALLGRIND_TOP:-12}"
	if [ -n "${CALLGRIND_OUT:-}" ]; then
		mkdir -p "$CALLGRIND_OUT" && cp "$dump" "$CALLGRIND_OUT/"
	fi
}

echo "submitd worker under callgrind, commit $(git rev-parse --short=12 HEAD 2>/dev/null), spool ${CALLGRIND_SPOOL:-off}"
measure pipelined -c 10 -w 64 -s 20
measure request-response -c 10 -w 1 -s 20
