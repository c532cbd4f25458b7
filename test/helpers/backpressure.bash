# The backpressure check that backpressure.bats runs on plaintext and
# tls.bats over TLS. Load after helpers/common.

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
# everything the client had sent, so reading resumed. The
# client is sdpeer.py stall on SD_PORT, or the command in the array
# STALL_PEER (tlsclient.py stall, with its --port), which takes the same
# arguments and prints the same lines.
stall_and_resume() {
	local max=$1 out=$BATS_TEST_TMPDIR/stall.$1 client o recv0 sent acked
	local acks0 bytes0
	acks0=$(sd_metric submitd_rsp_send_total)
	bytes0=$(sd_metric submitd_received_bytes_total)
	local peer=(python3 "$SD_ROOT/test/helpers/sdpeer.py" --port "$SD_PORT")
	[ -z "${STALL_PEER+x}" ] || peer=("${STALL_PEER[@]}")
	sd_spawn "$out" "${peer[@]}" --timeout 120 stall --stall 2
	client=$SD_SPAWNED
	wait_for -t 90 grep -qE '^(stalled|sent all|sdpeer|tlsclient)' "$out"
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
	wait_for -t 120 grep -qE '^(acked|sdpeer|tlsclient)' "$out"
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
