#!/bin/bash
# The forwarder against a minimal libnats publisher (build/nats-ref), same
# server, same message size, in the same run (make bench; docs/BENCHMARKS.md):
#  1. end-to-end rate (submit-bench to the stream's last PubAck) with
#     ack_after = spool, and nats-ref's rate, alternating over ROUNDS rounds
#     (the order swapped each round); the ratio per round, target: their
#     median >= 0.8;
#  2. ack_after = stream pipelined and request/response next to spool;
#  3. forwarding lag under a steady open-loop load (submit-bench -r): p99 of
#     spool write to PubAck from submitd_nats_forward_latency_seconds (the
#     upper bound of the bucket it falls in), over the run.
# One local nats-server on a free port, stopped by pid at the end. Exit
# status 1 if the rate target is missed.
#
#   bench/nats.sh [N] [SIZE]      (defaults 100000 and 1024)
# Environment: NATS_ROUNDS (5), NATS_LAG_RATE (50000 msgs/s), NATS_LAG_SECONDS
# (10), NATS_LAG_SIZE (100 bytes), NATS_TARGET (0.8).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-100000}
SIZE=${2:-1024}
ROUNDS=${NATS_ROUNDS:-5}
LAG_RATE=${NATS_LAG_RATE:-50000}
LAG_SECS=${NATS_LAG_SECONDS:-10}
LAG_SIZE=${NATS_LAG_SIZE:-100}
TARGET=${NATS_TARGET:-0.8}
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
until_true() { # SECONDS CMD...
	local limit=$1
	shift
	local end=$((SECONDS + limit))
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.05
	done
}
now() { date +%s.%N; }

port=$(free_port)
nats-server -js -sd "$tmp/js" -a 127.0.0.1 -p "$port" >"$tmp/nats.log" 2>&1 &
pids+=($!)
until_true 20 grep -q "Server is ready" "$tmp/nats.log"

median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# ref_round: nats-ref's rate; a failed run (a timeout on a loaded machine) is
# said and run again, up to three times.
ref_round() {
	local out
	for _ in 1 2 3; do
		out=$("$root/build/nats-ref" -s "nats://127.0.0.1:$port" -S REF -j ref.0 -n "$N" -z "$SIZE") &&
			awk '{print $8}' <<<"$out" && return 0
		echo "nats-ref failed, again" >&2
	done
	return 1
}

# run ACK_AFTER: submitd with a spool (sync none) forwarding to the server.
run() {
	local ack=$1
	rm -rf "$tmp/spool"
	cat >"$tmp/c.conf" <<-EOF
		listen = {"127.0.0.1:0"}
		metrics_listen = "127.0.0.1:0"
		workers = 2
		log_file = "$tmp/sd.log"
		spool_dir = "$tmp/spool"
		spool_sync = none
		nats_servers = {"nats://127.0.0.1:$port"}
		nats_stream = "SUB$ack"
		nats_subject = "sub$ack.%h.%w"
		nats_create_stream = 1
		ack_after = $ack
	EOF
	: >"$tmp/sd.log"
	"$root/build/submitd" -f -c "$tmp/c.conf" >/dev/null 2>&1 &
	sd=$!
	pids+=("$sd")
	until_true 20 grep -q "stream SUB$ack ready" "$tmp/sd.log"
	sp=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/sd.log" | head -1)
	mp=$(sed -n 's/.*metrics on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/sd.log" | head -1)
}
stop() {
	kill "$sd"
	wait "$sd" 2>/dev/null || true
}
metric() { curl -sf "http://127.0.0.1:$mp/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
forwarded() { [ "$(metric submitd_nats_acked_total)" -ge "$N" ]; }
bench() { "$root/build/submit-bench" --json "$@" "127.0.0.1:$sp"; }
field() { jq -r ".$1" <<<"$2"; }

# The forwarder's end-to-end rate: N Submits from submit-bench until the
# stream has acknowledged them all (counted from the PubAcks).
e2e_round() {
	local base t0 t1
	base=$(metric submitd_nats_acked_total)
	t0=$(now)
	bench -c 8 -n "$N" -s "$SIZE" >/dev/null
	until_true 300 acked_ge $((base + N))
	t1=$(now)
	echo "$N / ($t1 - $t0)" | bc -l
}
# spooled: records written to the spool, summed over the workers.
spooled() {
	curl -sf "http://127.0.0.1:$mp/metrics" |
		awk '$1 ~ /^submitd_spool_records_total({|$)/ {n += $2} END {printf "%d\n", n}'
}
acked_ge() { [ "$(metric submitd_nats_acked_total)" -ge "$1" ]; }
# buckets: "le cumulative" lines of the forward latency histogram.
buckets() {
	curl -sf "http://127.0.0.1:$mp/metrics" |
		sed -n 's/^submitd_nats_forward_latency_seconds_bucket{le="\([^"]*\)"} \([0-9]*\)$/\1 \2/p'
}

run spool
: >"$tmp/ref" && : >"$tmp/e2e" && : >"$tmp/ratio"
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then
		a=$(ref_round) && b=$(e2e_round)
	else
		b=$(e2e_round) && a=$(ref_round)
	fi
	echo "$a" >>"$tmp/ref"
	echo "$b" >>"$tmp/e2e"
	echo "$b / $a" | bc -l >>"$tmp/ratio"
	printf 'round %d: nats-ref %.0f msgs/s, forwarder %.0f msgs/s, ratio %.2f\n' "$r" "$a" "$b" \
		"$(echo "$b / $a" | bc -l)" >&2
done
ref_rate=$(median <"$tmp/ref")
e2e=$(median <"$tmp/e2e")
spool_pipe=$(bench -c 8 -n "$N" -s "$SIZE")
spool_rr=$(bench -c 1 -w 1 -d 5 -s "$SIZE")

# The lag: an open-loop load at LAG_RATE, then until all is forwarded.
until_true 300 acked_ge "$(spooled)"
buckets >"$tmp/h0"
base=$(metric submitd_nats_acked_total)
lag=$(bench -c 8 -r "$LAG_RATE" -d "$LAG_SECS" -s "$LAG_SIZE")
until_true 300 acked_ge "$(spooled)"
buckets >"$tmp/h1"
# p99: the first bucket whose count since h0 reaches 99 % of the run's.
read -r lag_n lag_p99 lag_p50 < <(join "$tmp/h0" "$tmp/h1" | awk '
	{le[NR] = $1; c[NR] = $3 - $2}
	END {
		t = c[NR]; p99 = p50 = "";
		for (i = 1; i <= NR; i++) {
			if (p50 == "" && c[i] >= 0.50 * t) p50 = le[i];
			if (p99 == "" && c[i] >= 0.99 * t) p99 = le[i];
		}
		print t, p99, p50
	}')
stop

run stream
stream_pipe=$(bench -c 8 -n "$N" -s "$SIZE")
stream_rr=$(bench -c 1 -w 1 -d 5 -s "$SIZE")
stop

ratio=$(echo "$e2e / $ref_rate" | bc -l)
printf '| case | rate msgs/s | p50 ms | p99 ms |\n|---|---:|---:|---:|\n'
printf '| nats-ref (libnats async publisher, %s B), median of %s | %.0f | | |\n' "$SIZE" "$ROUNDS" "$ref_rate"
printf '| forwarder end to end (submit-bench to last PubAck), median of %s | %.0f | | |\n' "$ROUNDS" "$e2e"
for c in spool_pipe spool_rr stream_pipe stream_rr; do
	j=${!c}
	printf '| ack_after = %s, %s | %.0f | %.3f | %.3f |\n' "${c%_*}" \
		"$([ "${c#*_}" = pipe ] && echo "8 conns, window 64" || echo "1 conn, window 1")" \
		"$(field rate "$j")" "$(echo "$(field latency_us.p50 "$j") / 1000" | bc -l)" \
		"$(echo "$(field latency_us.p99 "$j") / 1000" | bc -l)"
done
printf '\nratios forwarder / nats-ref by round: %s\n' "$(xargs printf '%.2f ' <"$tmp/ratio")"
# The verdict: the median of the rounds' ratios. Each ratio compares two
# runs seconds apart on the same server; a neighbour's burst that slows one
# side of one round moves that round only, where it can move a median rate
# of one side alone (a first round of nats-ref at twice the others' rate
# made the ratio of the medians 0.75 with round ratios 0.39 0.97 0.74 0.97 0.99).
round_ratio=$(median <"$tmp/ratio")
printf 'ratio of the medians: %.2f\n' "$ratio"
printf 'median of the round ratios: %.2f (target >= %s: %s)\n' "$round_ratio" "$TARGET" \
	"$(echo "$round_ratio >= $TARGET" | bc -l | sed 's/1/met/;s/0/NOT met/')"
printf 'lag at %s msgs/s open loop, %s s, %s B: achieved %.0f msgs/s, %s records forwarded; spool write to PubAck p50 <= %s s, p99 <= %s s (bucket bounds)\n' \
	"$LAG_RATE" "$LAG_SECS" "$LAG_SIZE" "$(field rate "$lag")" "$lag_n" "$lag_p50" "$lag_p99"
[ "$(echo "$round_ratio >= $TARGET" | bc -l)" = 1 ]
