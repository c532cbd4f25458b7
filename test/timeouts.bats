#!/usr/bin/env bats
# send_timeout: a client that stops reading its acks is closed; one that
# reads slowly is not, neither by send_timeout nor by idle_timeout.

load helpers/common

SLOWPEER="python3 $BATS_TEST_DIRNAME/helpers/slowpeer.py"

teardown() {
	sd_stop
}

# Requests whose acks outgrow what the kernel takes for a client that does
# not read (the socket's send buffer autotunes up to tcp_wmem's maximum),
# so the rest waits in the worker.
stall_requests() {
	local wmem_max
	wmem_max=$(awk '{print $3}' /proc/sys/net/ipv4/tcp_wmem)
	((wmem_max <= 16 * 1024 * 1024)) || skip "tcp_wmem maximum $wmem_max: too many requests to fill it"
	N=$(((wmem_max + 1024 * 1024) / 14))
}

# stall_check HOW: a client pipelines N Submits, does HOW (halfclose, bad,
# nothing) and never reads; it is closed for send_timeout, with acks owed.
stall_check() {
	local how=$1
	sd_spawn "$BATS_TEST_TMPDIR/stall.out" $SLOWPEER --port "$SD_PORT" stall "$N" --then "$how"
	wait_for -t 15 sd_metric_is submitd_connections_closed_total '{reason="send_timeout"}' 1
	wait_for sd_metric_is submitd_client_connected '' 0
	# Acks were owed when it was closed: the test filled the socket.
	run sd_metric submitd_sent_bytes_total
	(($output < N * 14)) || fail "all $((N * 14)) ack bytes were sent ($output): nothing was owed"
	# Counted once, as send_timeout only.
	run sd_metric submitd_connections_closed_total
	assert_output 1
}

@test "send_timeout = 1 closes a half-closed client that never reads its acks" {
	stall_requests
	# Room for every ack in the worker: it reads everything, then only flushes.
	sd_start 'send_timeout = 1' 'max_output_buffer = 67108864'
	stall_check halfclose
	grep -q "^sent" "$BATS_TEST_TMPDIR/stall.out"
	run sd_metric submitd_received_bytes_total
	assert_output $((N * 13))
}

@test "send_timeout = 1 closes a client that sent a bad frame and never reads" {
	stall_requests
	sd_start 'send_timeout = 1' 'max_output_buffer = 67108864'
	stall_check bad
	run sd_metric submitd_protocol_errors_total '{reason="unknown_command"}'
	assert_output 1
	run sd_metric submitd_received_bytes_total
	assert_output $((N * 13 + 13))
}

@test "send_timeout = 1 closes an active client blocked on output" {
	stall_requests
	# The default max_output_buffer: the worker stops reading it and waits.
	sd_start 'send_timeout = 1'
	stall_check nothing
	run sd_metric submitd_received_bytes_total
	(($output < N * 13)) || fail "everything was read ($output): the client was not blocked"
}

@test "send_timeout = 0 leaves a client that never reads open" {
	stall_requests
	sd_start 'send_timeout = 0' 'max_output_buffer = 67108864'
	sd_spawn "$BATS_TEST_TMPDIR/stall.out" $SLOWPEER --port "$SD_PORT" stall "$N" --then halfclose
	wait_for -t 15 grep -q "^sent" "$BATS_TEST_TMPDIR/stall.out"
	wait_for -t 10 sd_metric_is submitd_received_bytes_total '' $((N * 13))
	# Watch it over several worker ticks (one a second): it stays open.
	local t0=$SECONDS
	while ((SECONDS - t0 < 4)); do
		run sd_metric submitd_connections_closed_total
		assert_output 0
		sleep 0.5
	done
	run sd_metric submitd_client_connected
	assert_output 1
	run sd_metric submitd_sent_bytes_total
	(($output < N * 14)) || fail "all acks were sent: nothing was owed"
}

@test "idle_timeout = 1: a slow reader of acks the kernel holds keeps its connection" {
	sd_start 'idle_timeout = 1' 'send_timeout = 1'
	# About 110 KB of acks: all in the kernel at once, read at 20 KB/s for
	# 3 s with no new request, then the rest.
	run $SLOWPEER --port "$SD_PORT" slowread 7876 --chunk 4096 --every 0.2 --slow-for 3
	assert_success
	assert_output --partial "acked 7877"
	run sd_metric submitd_connections_closed_total '{reason="idle"}'
	assert_output 0
	run sd_metric submitd_connections_closed_total '{reason="send_timeout"}'
	assert_output 0
}

@test "send_timeout = 1, idle_timeout = 1: a slow reader blocking the worker's output keeps its connection" {
	stall_requests
	sd_start 'idle_timeout = 1' 'send_timeout = 1'
	# More acks than the kernel takes: the worker's writes stall for the
	# whole slow phase while the client reads 20 KB/s, then it reads the rest.
	run $SLOWPEER --port "$SD_PORT" --timeout 30 slowread "$N" --chunk 4096 --every 0.2 --slow-for 3
	assert_success
	assert_output --partial "acked $((N + 1))"
	run sd_metric submitd_connections_closed_total '{reason="idle"}'
	assert_output 0
	run sd_metric submitd_connections_closed_total '{reason="send_timeout"}'
	assert_output 0
	run sd_metric submitd_received_bytes_total
	assert_output $((N * 13 + 26))
}
