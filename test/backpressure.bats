#!/usr/bin/env bats
# Backpressure: a connection whose client stops reading its acks is not read
# further once max_output_buffer bytes of acks wait for it; reading resumes
# when the client reads again. A reload changes the bound.

load helpers/common

SD_PEER="python3 $SD_ROOT/test/helpers/sdpeer.py"

teardown() {
	sd_stop
}

# owed: bytes of acks produced but not yet written to the sockets, over
# all connections (one here): the worker's output buffers.
owed() {
	local acks sent
	acks=$(sd_metric submitd_rsp_send_total) || return 1
	sent=$(sd_metric submitd_sent_bytes_total) || return 1
	echo $((acks * 14 - sent))
}

owed_at_least() {
	local o
	o=$(owed) || return 1
	[ "$o" -ge "$1" ]
}

# stall_and_resume MAX: a client pipelines Submits without reading. Once
# its socket takes nothing more, the acks owed to it are at least MAX (the
# worker filled its buffer) and at most MAX plus the acks of one read
# (read_buffer_size 4096: 315 frames of 13 bytes, 4410 bytes of acks).
# Then the client reads: every ack arrives, in order, and the server read
# everything the client had sent, so reading resumed.
stall_and_resume() {
	local max=$1 out=$BATS_TEST_TMPDIR/stall.$1 client o recv0 sent acked
	local acks0 bytes0
	acks0=$(sd_metric submitd_rsp_send_total)
	bytes0=$(sd_metric submitd_received_bytes_total)
	sd_spawn "$out" $SD_PEER --port "$SD_PORT" --timeout 120 stall --stall 2
	client=$SD_SPAWNED
	wait_for -t 90 grep -qE '^(stalled|sent all|sdpeer)' "$out"
	cat "$out"
	run grep -c '^stalled' "$out"
	assert_output 1
	wait_for -t 30 owed_at_least "$max"
	o=$(owed)
	recv0=$(($(sd_metric submitd_received_bytes_total) - bytes0))
	sent=$(sed -n 's/^stalled //p' "$out")
	echo "max_output_buffer $max: $o bytes of acks owed; client sent $sent bytes, server read $recv0"
	[ "$o" -ge "$max" ]
	[ "$o" -le $((max + 4410)) ]
	# Not read: the rest waits in the sockets.
	[ "$recv0" -lt "$sent" ]
	kill -USR1 "$client"
	wait_for -t 120 grep -qE '^(acked|sdpeer)' "$out"
	cat "$out"
	acked=$(sed -n 's/^acked //p' "$out")
	[ -n "$acked" ]
	[ "$acked" -ge $((sent / 13)) ]
	# Everything sent was read and acked, and nothing is owed any more.
	assert_equal "$(($(sd_metric submitd_received_bytes_total) - bytes0))" $((acked * 13))
	assert_equal "$(($(sd_metric submitd_rsp_send_total) - acks0))" "$acked"
	wait_for sd_metric_is submitd_client_connected '' 0
	assert_equal "$(owed)" 0
}

@test "max_output_buffer: a client that stops reading is not read further; reading resumes when it reads" {
	sd_start 'workers = 1' 'max_output_buffer = 65536' 'read_buffer_size = 4096'
	stall_and_resume 65536
	run sd_metric submitd_connections_closed_total
	assert_output 1
}

@test "max_output_buffer changed by a reload: the new bound holds for new connections" {
	sd_start 'workers = 1' 'max_output_buffer = 262144' 'read_buffer_size = 4096'
	stall_and_resume 262144
	sed -i 's/^max_output_buffer = .*/max_output_buffer = 16384/' "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload: configuration $SD_CONF applied"
	wait_for -t 15 sd_metric_is submitd_generations '' 1
	stall_and_resume 16384
}
