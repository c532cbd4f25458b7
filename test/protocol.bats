#!/usr/bin/env bats
# The wire protocol (docs/PROTOCOL.md) against the real daemon: bytes on the
# wire and the counters that account for them.

load helpers/common

setup() {
	sd_start
}

teardown() {
	sd_stop
}

@test "Submit gets a SubmitAck: 0x81, total_len 14, id copied, result 0" {
	run sd_client roundtrip --cmd submit --id 00000042
	assert_success
	assert_output "0000000e81303030303030343200"
}

@test "Conn gets a ConnAck: 0x80, total_len 14, id copied, result 0" {
	run sd_client roundtrip --cmd conn --id ABCDEFGH
	assert_success
	assert_output "0000000e80414243444546474800"
}

@test "binary ids and a payload are accepted; the id comes back verbatim" {
	# id 00 ff 01 fe 80 7f 00 0a, payload "hello"
	run sd_client raw 000000120200ff01fe807f000a68656c6c6f --bytes 14
	assert_success
	assert_output "0000000e8100ff01fe807f000a00"
	run sd_client roundtrip --payload 1000
	assert_success
}

@test "Conn and Submit in one write are acked in order" {
	run sd_client raw 0000000d0130303030303030310000000d0230303030303030320000000d023030303030303033 --bytes 42
	assert_success
	assert_output "0000000e80303030303030303100""0000000e81303030303030303200""0000000e81303030303030303300"
}

@test "10,000 pipelined Submits on one connection are acked in order" {
	run sd_client pipeline 10000
	assert_success
	assert_output "acked 10000 in order"
	wait_for sd_metric_is submitd_req_recv_total '{cmd="submit"}' 10000
	wait_for sd_metric_is submitd_rsp_send_total '{cmd="submit"}' 10000
	wait_for sd_metric_is submitd_received_bytes_total '' $((10000 * 13))
	wait_for sd_metric_is submitd_sent_bytes_total '' $((10000 * 14))
}

@test "pipelined Conns and Submits with payloads keep their order" {
	run sd_client pipeline 3000 --mixed --payload-max 300
	assert_success
	wait_for sd_metric_is submitd_req_recv_total '{cmd="conn"}' 600
	wait_for sd_metric_is submitd_rsp_send_total '{cmd="conn"}' 600
	wait_for sd_metric_is submitd_rsp_send_total '{cmd="submit"}' 2400
}

@test "frames sent one byte per write are reassembled" {
	run sd_client trickle 30
	assert_success
}

# bad KIND REASON: 3 good Submits then a bad frame: the 3 acks, then close;
# another open connection keeps working; the error is counted by reason.
check_protocol_error() {
	local kind=$1 reason=$2
	shift 2
	run sd_client bad "$kind" --before 3 --other "$@"
	assert_success
	assert_output --regexp '^acks 3 (eof|reset)$'
	wait_for sd_metric_is submitd_protocol_errors_total "{reason=\"$reason\"}" 1
	wait_for sd_metric_is submitd_connections_closed_total '{reason="protocol"}' 1
	run sd_metric submitd_protocol_errors_total
	assert_output 1
	run sd_client roundtrip
	assert_success
}

@test "protocol error: total_len < 5 closes only that connection, after its acks" {
	check_protocol_error short frame_too_short
}

@test "protocol error: total_len > max_frame_size closes only that connection, after its acks" {
	check_protocol_error large frame_too_large --len 65537
}

@test "protocol error: unknown command closes only that connection, after its acks" {
	check_protocol_error unknown unknown_command --command 0x03
}

@test "protocol error: body shorter than the id closes only that connection, after its acks" {
	check_protocol_error body body_too_short
}

@test "ack commands and other bytes sent as requests are unknown commands" {
	local c n=0
	for c in 0x00 0x80 0x81 0xff; do
		run sd_client bad unknown --command "$c" --before 1
		assert_success
		assert_output --regexp '^acks 1 (eof|reset)$'
		n=$((n + 1))
	done
	wait_for sd_metric_is submitd_protocol_errors_total '{reason="unknown_command"}' $n
}

@test "every total_len from 0 to 4 is frame_too_short, 5 to 12 body_too_short" {
	local l
	# Closed with no byte sent back: a connection left open fails the client.
	for l in 0 1 2 3 4; do
		run sd_client raw "$(printf '%08x' "$l")" --bytes 1 --eof
		assert_success
		assert_output --regexp '^(eof|reset)$'
	done
	for l in 5 6 7 8 9 10 11 12; do
		# A complete frame of total_len l: command 0x02, l-5 body bytes.
		run sd_client raw "$(printf '%08x02' "$l")$(head -c $((l - 5)) /dev/zero | od -An -tx1 | tr -d ' \n')" --bytes 1 --eof
		assert_success
		assert_output --regexp '^(eof|reset)$'
	done
	wait_for sd_metric_is submitd_protocol_errors_total '{reason="frame_too_short"}' 5
	wait_for sd_metric_is submitd_protocol_errors_total '{reason="body_too_short"}' 8
}

@test "an oversized header (0x7fffffff) is rejected without the body being sent" {
	run sd_client bad large --len 0x7fffffff --before 0
	assert_success
	assert_output --regexp '^acks 0 (eof|reset)$'
	run sd_client bad large --len 0xffffffff --before 2
	assert_success
	assert_output --regexp '^acks 2 (eof|reset)$'
	wait_for sd_metric_is submitd_protocol_errors_total '{reason="frame_too_large"}' 2
}

@test "a client that half-closes still gets every ack, then EOF" {
	run sd_client halfclose 500
	assert_success
	assert_output "acks 500 eof"
	wait_for sd_metric_is submitd_connections_closed_total '{reason="client"}' 1
}

@test "a protocol error on one connection leaves the worker's other connections open" {
	# One worker, so the errors and the held connections share it: 20
	# connections held open, then errors on 4 others, then a round trip on
	# each of the 20.
	sd_stop
	sd_start 'workers = 1'
	local out=$BATS_TEST_TMPDIR/hold.out
	sd_spawn "$out" $SD_CLIENT --port "$SD_PORT" hold 20 --verify --again --hold 60
	local holder=$SD_SPAWNED
	wait_for grep -q "connected 20" "$out"
	wait_for sd_metric_is submitd_client_connected '' 20
	local k
	for k in short large unknown body; do
		run sd_client bad "$k" --before 1
		assert_success
	done
	wait_for sd_metric_is submitd_protocol_errors_total '' 4
	kill -USR1 "$holder"
	wait_for -t 15 grep -q "^again 20$" "$out"
	run sd_metric submitd_client_connected
	assert_output 20
	# 20 + 20 from the holder, 4 before the bad frames.
	run sd_metric submitd_req_recv_total
	assert_output 44
}
