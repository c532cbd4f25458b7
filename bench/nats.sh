#!/bin/bash
# The forwarder against a minimal libnats publisher (build/nats-ref), same
# server, same message size, in the same run: end-to-end rate (submit-bench
# to the stream's last PubAck) with ack_after = spool, then ack_after = stream
# pipelined and request/response next to spool. One local nats-server on a
# free port, stopped by pid at the end.
#
#   bench/nats.sh [N] [SIZE]      (defaults 100000 and 1024)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-100000}
SIZE=${2:-1024}
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

ref=$("$root/build/nats-ref" -s "nats://127.0.0.1:$port" -S REF -j ref.0 -n "$N" -z "$SIZE")
ref_rate=$(awk '{print $8}' <<<"$ref")

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

run spool
t0=$(now)
b=$(bench -c 8 -n "$N" -s "$SIZE")
until_true 300 forwarded
t1=$(now)
e2e=$(echo "$N / ($t1 - $t0)" | bc -l)
spool_pipe=$b
spool_rr=$(bench -c 1 -w 1 -d 5 -s "$SIZE")
stop

run stream
stream_pipe=$(bench -c 8 -n "$N" -s "$SIZE")
stream_rr=$(bench -c 1 -w 1 -d 5 -s "$SIZE")
stop

printf '| case | rate msgs/s | p50 ms | p99 ms |\n|---|---:|---:|---:|\n'
printf '| nats-ref (libnats async publisher, %s B) | %.0f | | |\n' "$SIZE" "$ref_rate"
printf '| forwarder end to end (submit-bench to last PubAck) | %.0f | | |\n' "$e2e"
for c in spool_pipe spool_rr stream_pipe stream_rr; do
	j=${!c}
	printf '| ack_after = %s, %s | %.0f | %.3f | %.3f |\n' "${c%_*}" \
		"$([ "${c#*_}" = pipe ] && echo "8 conns, window 64" || echo "1 conn, window 1")" \
		"$(field rate "$j")" "$(echo "$(field latency_us.p50 "$j") / 1000" | bc -l)" \
		"$(echo "$(field latency_us.p99 "$j") / 1000" | bc -l)"
done
printf '\nratio forwarder / nats-ref: %.2f\n' "$(echo "$e2e / $ref_rate" | bc -l)"
