#!/usr/bin/env bats
# Connection accounting: every accepted connection is either open or counted
# closed under one reason; closes for a socket or memory error; the
# per-worker max_connections with several workers; idle_timeout = 0.

load helpers/common

SD_PEER="python3 $SD_ROOT/test/helpers/sdpeer.py"

teardown() {
	sd_stop
}

# limit_as: the workers can map at most 16 MiB more than they have now.
limit_as() {
	local w vs
	for w in $(sd_workers); do
		vs=$(awk '/^VmSize:/ { print $2 }' "/proc/$w/status")
		prlimit --pid "$w" --as=$(((vs + 16384) * 1024)):
	done
}

unlimit_as() {
	local w
	for w in $(sd_workers); do
		prlimit --pid "$w" --as=unlimited:
	done
}

# A frame header announcing 64 MiB: the worker reserves the whole frame's
# buffer at once, which fails under limit_as.
HUGE_FRAME=04000000

@test "memory exhaustion closes only that connection, counted as closed{reason=\"error\"}; the worker serves on" {
	sd_start 'workers = 1' 'max_frame_size = 67108864'
	sd_spawn "$BATS_TEST_TMPDIR/hold.out" $SD_CLIENT --port "$SD_PORT" hold 3 --verify --hold 120
	wait_for grep -q "connected 3" "$BATS_TEST_TMPDIR/hold.out"
	local worker
	worker=$(sd_workers)
	limit_as
	run sd_client raw "$HUGE_FRAME"
	assert_success
	assert_output ""
	wait_for sd_metric_is submitd_connections_closed_total '{reason="error"}' 1
	run sd_metric submitd_client_connected
	assert_output 3
	unlimit_as
	run sd_client frame --len 60000
	assert_output ack
	assert_equal "$(sd_workers)" "$worker"
	run sd_metric submitd_worker_restarts_total
	assert_output 0
	run sd_metric submitd_protocol_errors_total
	assert_output 0
}

# balanced: per worker and in total, accepted = closed (all reasons) + open.
balanced() {
	local text
	text=$(sd_metrics) || return 1
	awk '
	/^#/ { next }
	{
		split($1, a, "{"); name = a[1]
		w = ""
		if (match($1, /worker="[0-9]+"/)) w = substr($1, RSTART + 8, RLENGTH - 9)
	}
	name == "submitd_connections_accepted_total" { acc[w] += $2; seen[w] = 1 }
	name == "submitd_connections_closed_total" { out[w] += $2 }
	name == "submitd_client_connected" { out[w] += $2 }
	END {
		bad = 0
		for (w in seen) {
			printf "worker %s: accepted %d, closed + open %d\n", w, acc[w], out[w]
			if (acc[w] != out[w]) bad = 1
		}
		exit bad || length(seen) == 0
	}' <<<"$text"
}

@test "after a run with every close reason: accepted = closed + connected, per worker and in total" {
	sd_start 'workers = 2' 'max_connections = 5' 'idle_timeout = 1' 'max_frame_size = 67108864'
	# idle
	run sd_client idle --max 10
	assert_success
	sed -i 's/^idle_timeout = .*/idle_timeout = 0/' "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload: configuration $SD_CONF applied"
	wait_for -t 15 sd_metric_is submitd_generations '' 1
	# client: four connections that close after their requests
	run "$SD_BENCH" --json -c 4 -n 2000 "127.0.0.1:$SD_PORT"
	assert_success
	# protocol
	run sd_client bad unknown --before 1
	assert_success
	run sd_client bad short
	assert_success
	# error
	limit_as
	run sd_client raw "$HUGE_FRAME"
	unlimit_as
	# limit: fill both workers; the refused ones are closed at once
	local fill=$BATS_TEST_TMPDIR/fill.out served refused
	sd_spawn "$fill" $SD_PEER --port "$SD_PORT" fill 10 --attempts 30
	wait_for -t 30 grep -qE '^(served|sdpeer)' "$fill"
	read -r _ served _ refused <"$fill"
	echo "fill: served $served, refused $refused"
	# shutdown: a reload drains the held ones
	kill -HUP "$SD_PID"
	wait_for -t 15 eval '[ "$(sd_log_count "reload: configuration $SD_CONF applied")" -eq 2 ]'
	wait_for -t 15 sd_metric_is submitd_connections_closed_total '{reason="shutdown"}' "$served"
	wait_for -t 15 sd_metric_is submitd_generations '' 1
	# and three left open
	sd_spawn "$BATS_TEST_TMPDIR/hold.out" $SD_CLIENT --port "$SD_PORT" hold 3 --verify --hold 120
	wait_for grep -q "connected 3" "$BATS_TEST_TMPDIR/hold.out"
	wait_for -t 10 balanced
	run balanced
	echo "$output"
	assert_success
	local r
	for r in idle:1 client:4 protocol:2 error:1 limit:$refused shutdown:$served; do
		run sd_metric submitd_connections_closed_total "{reason=\"${r%:*}\"}"
		echo "closed ${r%:*}: $output"
		assert_output "${r#*:}"
	done
	run sd_metric submitd_client_connected
	assert_output 3
	run sd_metric submitd_connections_accepted_total
	assert_output $((1 + 4 + 2 + 1 + served + refused + 3))
}

@test "max_connections = 3 with 2 workers: each worker holds at most 3, more than 3 are served, the rest refused at once" {
	sd_start 'workers = 2' 'max_connections = 3'
	local fill=$BATS_TEST_TMPDIR/fill.out served refused w n total=0
	sd_spawn "$fill" $SD_PEER --port "$SD_PORT" fill 6 --attempts 40
	local client=$SD_SPAWNED
	wait_for -t 30 grep -qE '^(served|sdpeer)' "$fill"
	cat "$fill"
	read -r _ served _ refused <"$fill"
	# The limit is per worker: the second worker serves past the first's 3.
	[ "$served" -ge 4 ]
	[ "$served" -le 6 ]
	for w in 0 1; do
		n=$(sd_metric submitd_client_connected "{worker=\"$w\"}")
		echo "worker $w holds $n"
		[ "$n" -le 3 ]
		total=$((total + n))
	done
	assert_equal "$total" "$served"
	wait_for sd_metric_is submitd_connections_closed_total '{reason="limit"}' "$refused"
	# The held ones still work.
	kill -USR1 "$client"
	wait_for -t 15 grep -qE '^(again|sdpeer)' "$fill"
	run grep -c "^again $served\$" "$fill"
	assert_output 1
	# Room again once they go.
	kill -TERM "$client"
	wait_for sd_metric_is submitd_client_connected '' 0
	run sd_client pipeline 10
	assert_success
}

@test "idle_timeout = 0: connections are never closed as idle, before or after a frame" {
	sd_start 'idle_timeout = 0'
	# Three seconds are three ticks of the workers' timeout clock.
	run sd_client idle --max 3
	assert_failure
	assert_output --partial "connection still open after 3.0 s"
	run sd_client idle --send-first --max 3
	assert_failure
	assert_output --partial "connection still open after 3.0 s"
	run sd_metric submitd_connections_closed_total '{reason="idle"}'
	assert_output 0
}
