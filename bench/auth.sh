#!/bin/bash
# Who-may-submit costs, as ratios in the same run (docs/BENCHMARKS.md):
#  1. pipelined, 1 worker, 100 connections, window 64, 20 B payloads:
#     auth = token (each connection's Conn carries its token, submit-bench
#     --token) against auth = none;
#  2. the same with max_connections_per_ip = 65535 (counted, never reached)
#     against off;
#  3. the same with rate_limit = rate_burst = 10000000 (checked on every
#     Submit, never reached: the load stays below it) against off;
#  4. once, after the rounds: 50,000 idle connections from 4 source
#     addresses (4 submit-bench processes: 20,000 descriptors a process)
#     with max_connections_per_ip = 20000 on 4 workers: the RSS of the
#     shared per-address table in each worker (smaps), against its size.
# Every round runs every case once, in a rotating order, each on a fresh
# submitd; each ratio is taken within its round against the round's none
# run; the table shows the medians over the rounds. Prints a markdown table
# and writes it to bench/results/<date>-<commit>-auth.md (BENCH_AUTH_OUT).
# Environment: BENCH_ROUNDS (5), BENCH_SECONDS (2).
#
# $(rotate ...) is a word list, unquoted on purpose:
# shellcheck disable=SC2046
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
trap 'bench_cleanup' EXIT
trap 'exit 130' INT TERM

ROUNDS=${BENCH_ROUNDS:-5}
SECS=${BENCH_SECONDS:-2}
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
OUT=${BENCH_AUTH_OUT:-bench/results/$(date -u +%Y-%m-%d)-$COMMIT-auth.md}
BENCH="$BUILD/submit-bench"
for b in "$BUILD/submitd" "$BENCH"; do
	[ -x "$b" ] || die "$b is not built (make all)"
done
head -c 32 /dev/urandom | base64 -w0 >"$BENCH_TMP/secret"
"$BUILD/submitd" --hash-token bench-device <"$BENCH_TMP/secret" >"$BENCH_TMP/tokens.list" ||
	die "submitd --hash-token failed"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# run CASE: a fresh submitd for CASE, one measured run, its JSON line into $BENCH_TMP/CASE.
run() {
	local extra=() args=()
	case $1 in
	token)
		extra=('auth = token' "auth_tokens_file = \"$BENCH_TMP/tokens.list\"")
		args=(--token "$BENCH_TMP/secret")
		;;
	iplimit) extra=('max_connections_per_ip = 65535') ;;
	rate) extra=('rate_limit = 10000000' 'rate_burst = 10000000') ;;
	esac
	sd_start 'workers = 1' "${BENCH_CONF[@]}" "${extra[@]}" || die "submitd did not start ($1)"
	timeout 60 "$BENCH" --json --warmup 0.5 -d "$SECS" -c 100 -w 64 -s 20 "${args[@]}" \
		"127.0.0.1:$SD_PORT" 2>>"$BENCH_TMP/bench.err" | tail -1 >>"$BENCH_TMP/$1" ||
		echo '{"rate":0,"errors":1,"connect_errors":0}' >>"$BENCH_TMP/$1"
	sd_stop
}



T0=$SECONDS
for r in $(seq "$ROUNDS"); do
	echo "bench: round $r of $ROUNDS" >&2
	for c in $(rotate "$r" none token iplimit rate); do
		run "$c"
	done
done

rate() { jq -r '.rate // 0' "$BENCH_TMP/$1"; }
ratio() { paste <(rate "$1") <(rate none) | awk '$2 > 0 { print $1 / $2 }' | median | xargs printf '%.3f'; }
errors=$(cat "$BENCH_TMP"/{none,token,iplimit,rate} | jq -s 'map(.errors + .connect_errors) | add')

# table_rss: "KIB_MAX KIB_SUM" of the per-address table's mapping (516 KiB,
# the only one of that size) over the workers' smaps.
table_rss() {
	local w
	for w in $(sd_workers); do
		awk '/^[0-9a-f]+-[0-9a-f]+ / { m = 0 } /^Size: +516 kB/ { m = 1 } m && /^Rss:/ { print $2; m = 0 }' \
			"/proc/$w/smaps" 2>/dev/null
	done | awk '{ if ($1 > mx) mx = $1; s += $1 } END { printf "%d %d\n", mx, s }'
}
echo "bench: 50,000 connections from 4 addresses" >&2
sd_start 'workers = 4' "${BENCH_CONF[@]}" 'max_connections_per_ip = 20000' 'backlog = 4096' ||
	die "submitd did not start (50,000 connections)"
for i in 0 1 2 3; do
	timeout 120 "$BENCH" --json --idle --conn -c 12500 -d 60s --source "127.0.0.$((i + 2))" \
		"127.0.0.1:$SD_PORT" >"$BENCH_TMP/idle.$i" 2>>"$BENCH_TMP/bench.err" &
	BENCH_PIDS+=($!)
done
n=0 open=0
while [ $n -lt 1200 ]; do
	open=$(metric submitd_client_connected)
	[ "$open" -ge 50000 ] && break
	sleep 0.1
	n=$((n + 1))
done
read -r rss_max rss_sum < <(table_rss)
for p in "${BENCH_PIDS[@]}"; do
	kill -TERM "$p" 2>/dev/null
done
sd_stop
{
	echo "# submitd auth benchmark, $(date -u +%Y-%m-%d), commit $COMMIT"
	echo
	echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), load average at start $load_start"
	echo "- command: \`bench/auth.sh\` (BENCH_ROUNDS=$ROUNDS BENCH_SECONDS=$SECS), $((SECONDS - T0)) s; 1 worker, submit-bench -c 100 -w 64 -s 20 on the same CPUs; medians of $ROUNDS rounds, ratios within each round"
	echo
	echo "| case | msgs/s | vs auth = none | target |"
	echo "|---|---|---|---|"
	echo "| auth = none | $(rate none | median | xargs printf '%.0f') | 1 | |"
	echo "| auth = token (a Conn with the token per connection) | $(rate token | median | xargs printf '%.0f') | $(ratio token) | >= 0.95 |"
	echo "| max_connections_per_ip = 65535 | $(rate iplimit | median | xargs printf '%.0f') | $(ratio iplimit) | >= 0.95 |"
	echo "| rate_limit = rate_burst = 10000000 | $(rate rate | median | xargs printf '%.0f') | $(ratio rate) | >= 0.95 |"
	echo
	echo "Per-address table with $open connections open from 4 addresses (max_connections_per_ip = 20000, 4 workers): RSS of its 516 KiB mapping $rss_max KiB in the worker that touched most, $rss_sum KiB over the 4 workers (each maps only the pages it touched, with those the kernel maps around them)."
	echo
	echo "- errors reported by submit-bench over all runs: $errors"
} >"$BENCH_TMP/table.md"
mkdir -p "$(dirname "$OUT")"
cp "$BENCH_TMP/table.md" "$OUT"
cat "$BENCH_TMP/table.md"
echo "bench: written to $OUT" >&2
if [ -s "$BENCH_TMP/bench.err" ]; then
	echo "bench: submit-bench reported:" >&2
	head -5 "$BENCH_TMP/bench.err" >&2
fi
[ "$errors" -eq 0 ]
