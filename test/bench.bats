#!/usr/bin/env bats
# submit-bench against the real submitd, and against the reference server
# built to misbehave (bench/ref-server.c --corrupt-ack, --close-after).

load helpers/common

BENCH=$SD_ROOT/build/submit-bench
REF=$SD_ROOT/build/submit-ref

setup() {
	REF_PID=
	PEER_PID=
}

teardown() {
	local p
	for p in $REF_PID $PEER_PID; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	sd_stop
}

# ref_start ARGS...: the reference server on a free port; REF_PORT, REF_PID.
ref_start() {
	timeout 120 "$REF" "$@" 0 >/dev/null 2>"$BATS_TEST_TMPDIR/ref.log" </dev/null 3>&- 4>&- &
	REF_PID=$!
	wait_for grep -q 'listening on' "$BATS_TEST_TMPDIR/ref.log"
	REF_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$BATS_TEST_TMPDIR/ref.log")
	[ -n "$REF_PORT" ]
}

# bench ARGS...: submit-bench --json, bounded; JSON in $output via run.
bench_json() {
	run --separate-stderr timeout 60 "$BENCH" --json "$@"
}

@test "a short run against submitd: no errors, and every ack counted by the server" {
	sd_start
	bench_json -d 1 -c 10 "127.0.0.1:$SD_PORT"
	assert_success
	[ "$(jq -r .errors <<<"$output")" = 0 ]
	[ "$(jq -r .ok <<<"$output")" = true ]
	acked=$(jq -r .acked <<<"$output")
	# Plausible: far more than one window per connection in a second.
	[ "$acked" -gt 10000 ]
	[ "$(jq -r .sent <<<"$output")" = "$acked" ]
	wait_for sd_metric_is submitd_req_recv_total '{cmd="submit"}' "$acked"
	wait_for sd_metric_is submitd_rsp_send_total '{cmd="submit"}' "$acked"
}

@test "-n sends exactly N requests and gets exactly N acks" {
	sd_start
	bench_json -n 12345 -c 7 -w 5 "127.0.0.1:$SD_PORT"
	assert_success
	[ "$(jq -r .sent <<<"$output")" = 12345 ]
	[ "$(jq -r .acked <<<"$output")" = 12345 ]
	[ "$(jq -r .latency_us.count <<<"$output")" = 12345 ]
	[ "$(sd_metric submitd_req_recv_total '{cmd="submit"}')" = 12345 ]
}

@test "--json is one line that jq parses, with ordered percentiles" {
	sd_start
	bench_json -n 2000 -c 4 -s 10-200 "127.0.0.1:$SD_PORT"
	assert_success
	[ "${#lines[@]}" -eq 1 ]
	jq -e '.latency_us.p50 <= .latency_us.p90 and .latency_us.p90 <= .latency_us.p99
		and .latency_us.p99 <= .latency_us.p999 and .latency_us.p999 <= .latency_us.max
		and .size_min == 10 and .size_max == 200 and .connections == 4' <<<"$output"
}

@test "--conn: one ConnAck per connection, and the server saw the Conns" {
	sd_start
	bench_json --conn -n 500 -c 5 "127.0.0.1:$SD_PORT"
	assert_success
	[ "$(jq -r .conn_acked <<<"$output")" = 5 ]
	[ "$(sd_metric submitd_req_recv_total '{cmd="conn"}')" = 5 ]
}

@test "open loop: -r paces the requests" {
	sd_start
	bench_json -r 4000 -d 1 -c 4 "127.0.0.1:$SD_PORT"
	assert_success
	echo "acked $(jq -r .acked <<<"$output") of 4000 scheduled"
	# Never ahead of the schedule (a few frames of rounding aside), and not
	# stalled; how close it keeps to 4,000/s is bench/thresholds.bats' check.
	jq -e '.errors == 0 and .acked >= 1000 and .acked <= 4100' <<<"$output"
}

@test "a corrupted ack id is an error naming the connection and the id; exit 1" {
	ref_start --corrupt-ack 100
	bench_json -n 1000 -c 1 -w 8 "127.0.0.1:$REF_PORT"
	assert_failure 1
	[ "$(jq -r .errors <<<"$output")" -ge 1 ]
	[ "$(jq -r .ok <<<"$output")" = false ]
	[[ $stderr == *'connection 0: ack id "\xcf0000100", expected "00000100"'* ]]
}

@test "the reference server acks like submitd: a clean run has no errors" {
	ref_start
	bench_json -n 5000 -c 3 --conn -s 0-20000 "127.0.0.1:$REF_PORT"
	assert_success
	[ "$(jq -r .acked <<<"$output")" = 5000 ]
}

@test "a server close is an error, and with --reconnect a clean one is not" {
	ref_start --close-after 50
	bench_json -d 0.5 -c 2 "127.0.0.1:$REF_PORT"
	assert_failure 1
	[[ $stderr == *"connection "*"closed by the server"* ]]
	bench_json -d 0.5 -c 2 --conn --reconnect "127.0.0.1:$REF_PORT"
	assert_success
	jq -e '.reconnects > 0 and .errors == 0 and .acked > 0' <<<"$output"
}

@test "bounded in time against a server that never answers" {
	# Connections complete in the kernel's backlog; nothing is ever read.
	python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True); time.sleep(60)' >"$BATS_TEST_TMPDIR/peer" 3>&- 4>&- &
	PEER_PID=$!
	wait_for grep -q . "$BATS_TEST_TMPDIR/peer"
	port=$(cat "$BATS_TEST_TMPDIR/peer")
	start=$SECONDS
	bench_json -d 0.5 --drain 0.5 -c 4 "127.0.0.1:$port"
	assert_failure 1
	[ $((SECONDS - start)) -le 5 ]
	jq -e '.acked == 0 and .unacked > 0' <<<"$output"
	bench_json -n 100 -d 0.5 -c 2 "127.0.0.1:$port"
	assert_failure 1
	[ $((SECONDS - start)) -le 10 ]
}

@test "bad usage exits 2; --version and --help" {
	run "$BENCH" -c 0
	assert_failure 2
	run "$BENCH" -s 10-5
	assert_failure 2
	run "$BENCH" --idle -n 5
	assert_failure 2
	run "$BENCH" --version
	assert_success
	assert_output --regexp '^submit-bench [0-9]'
	run "$BENCH" --help
	assert_success
	assert_output --partial '--reconnect'
}
