#!/usr/bin/env bats
# Configured limits: idle timeout, connections per worker, frame size.

load helpers/common

teardown() {
	sd_stop
}

@test "idle_timeout = 1 closes an idle connection after about a second" {
	sd_start 'idle_timeout = 1'
	run sd_client idle --min 0.5 --max 5
	assert_success
	assert_output --partial "closed after"
	# Also after a request: the clock restarts with each complete frame.
	run sd_client idle --send-first --min 0.5 --max 5
	assert_success
	wait_for sd_metric_is submitd_connections_closed_total '{reason="idle"}' 2
	wait_for sd_metric_is submitd_client_connected '' 0
}

@test "idle_timeout = 1 leaves a connection that keeps sending open" {
	sd_start 'idle_timeout = 1'
	run sd_client keepalive --every 0.3 --for 3
	assert_success
	run sd_metric submitd_connections_closed_total '{reason="idle"}'
	assert_output 0
}

@test "max_connections = 5, workers = 1: the 6th is closed at once, the 5 keep working" {
	sd_start 'max_connections = 5' 'workers = 1'
	run sd_client maxconn 5 --within 3
	assert_success
	wait_for sd_metric_is submitd_connections_closed_total '{reason="limit"}' 1
	# The 5 are gone now: there is room again.
	wait_for sd_metric_is submitd_client_connected '' 0
	run sd_client roundtrip
	assert_success
}

@test "max_connections = 5 holds with 5 connections kept open by another client" {
	sd_start 'max_connections = 5' 'workers = 1'
	sd_spawn "$BATS_TEST_TMPDIR/hold.out" $SD_CLIENT --port "$SD_PORT" hold 5 --verify --hold 60
	wait_for grep -q "connected 5" "$BATS_TEST_TMPDIR/hold.out"
	local i
	for i in 1 2 3; do
		run sd_client idle --max 3
		assert_success
	done
	wait_for sd_metric_is submitd_connections_closed_total '{reason="limit"}' 3
	run sd_metric submitd_client_connected
	assert_output 5
}

@test "max_frame_size = 100: total_len 100 is accepted, 101 rejected" {
	sd_start 'max_frame_size = 100'
	run sd_client frame --len 100
	assert_success
	assert_output ack
	run sd_client frame --len 101
	assert_success
	assert_output closed
	run sd_client bad large --len 101 --before 2
	assert_success
	assert_output --regexp '^acks 2 (eof|reset)$'
	wait_for sd_metric_is submitd_protocol_errors_total '{reason="frame_too_large"}' 2
	run sd_client frame --len 13
	assert_output ack
}

@test "the default max_frame_size is 65536" {
	sd_start
	run sd_client frame --len 65536
	assert_output ack
	run sd_client frame --len 65537
	assert_output closed
}
