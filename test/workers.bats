#!/usr/bin/env bats
# The process model: a master and N workers, load spread, respawn, stop.

load helpers/common

teardown() {
	sd_stop
}

@test "workers = 3: the master has exactly 3 worker children" {
	sd_start 'workers = 3'
	run sd_workers
	assert_success
	assert_equal "${#lines[@]}" 3
	local p
	for p in "${lines[@]}"; do
		assert_equal "$(readlink "/proc/$p/exe")" "$(readlink "/proc/$SD_PID/exe")"
		run grep -cE "worker [0-2] started, pid $p\$" "$BATS_TEST_TMPDIR/submitd.log"
		assert_output 1
	done
	run sd_metric submitd_workers '{state="running"}'
	assert_output 3
	run sd_metric submitd_workers '{state="configured"}'
	assert_output 3
	run sd_log_count "ready: 3 workers running"
	assert_output 1
}

@test "workers = 1: one worker, and it answers" {
	sd_start 'workers = 1'
	run sd_workers
	assert_equal "${#lines[@]}" 1
	run sd_client roundtrip
	assert_success
	run sd_metric submitd_req_recv_total '{worker="0"}'
	assert_output 1
}

@test "workers = 3: every worker answers" {
	sd_start 'workers = 3'
	# 60 connections, a round trip on each, all open together: the kernel
	# spreads them, so each worker gets some (workers.bats checks the spread).
	local out=$BATS_TEST_TMPDIR/hold.out
	sd_spawn "$out" $SD_CLIENT --port "$SD_PORT" hold 60 --verify --hold 60
	wait_for -t 15 grep -q "connected 60" "$out"
	local w n total=0
	for w in 0 1 2; do
		n=$(sd_metric submitd_rsp_send_total "{worker=\"$w\"}")
		echo "worker $w acked $n"
		[ "$n" -gt 0 ]
		total=$((total + n))
	done
	assert_equal "$total" 60
	run sd_metric submitd_client_connected
	assert_output 60
}

# One trial: 100 connections opened at once, none above 60 on a worker.
spread_trial() {
	local out=$BATS_TEST_TMPDIR/hold.$1.out w0 w1
	sd_spawn "$out" $SD_CLIENT --port "$SD_PORT" hold 100 --hold 60
	local holder=$SD_SPAWNED
	wait_for grep -q "connected 100" "$out"
	wait_for sd_metric_is submitd_client_connected '' 100
	w0=$(sd_metric submitd_client_connected '{worker="0"}')
	w1=$(sd_metric submitd_client_connected '{worker="1"}')
	echo "trial $1: worker 0 has $w0, worker 1 has $w1"
	kill -TERM "$holder"
	wait "$holder" || true
	wait_for sd_metric_is submitd_client_connected '' 0
	[ "$((w0 + w1))" -eq 100 ]
	[ "$w0" -le 60 ]
	[ "$w1" -le 60 ]
}

@test "100 connections opened at once spread over 2 workers, neither above 60" {
	sd_start 'workers = 2'
	local t
	for t in 1 2 3 4 5; do
		spread_trial "$t"
	done
}

@test "a worker killed with SIGKILL is replaced and the server keeps answering" {
	sd_start 'workers = 2'
	local before victim
	before=$(sd_workers | tr '\n' ' ')
	victim=$(sd_workers | head -1)
	kill -KILL "$victim"
	# A new pid in place of the victim, and two workers again.
	wait_for -t 10 eval '[ "$(sd_workers | wc -l)" -eq 2 ] && ! sd_workers | grep -qx "$victim"'
	local after
	after=$(sd_workers | tr '\n' ' ')
	[ "$before" != "$after" ]
	wait_for sd_metric_is submitd_worker_restarts_total '{reason="signal"}' 1
	wait_for sd_metric_is submitd_workers '{state="running"}' 2
	local i
	for i in 1 2 3 4 5 6; do
		run sd_client roundtrip
		assert_success
	done
	run sd_client pipeline 1000
	assert_success
}

@test "SIGTERM: master and all workers exit, status 0" {
	sd_start 'workers = 3'
	local pids rc=0
	pids=$(sd_workers)
	kill -TERM "$SD_PID"
	wait_for -t 15 _sd_all_gone "$SD_JOB"
	wait "$SD_JOB" || rc=$?
	SD_JOB=
	assert_equal "$rc" 0
	local p
	for p in $SD_PID $pids; do
		run kill -0 "$p"
		assert_failure
	done
}

@test "SIGTERM with clients connected still exits 0 within shutdown_timeout" {
	sd_start 'workers = 2' 'shutdown_timeout = 6'
	local t=$BATS_TEST_TMPDIR
	sd_spawn "$t/hold.out" $SD_CLIENT --port "$SD_PORT" hold 10 --verify --hold 60
	wait_for grep -q "connected 10" "$t/hold.out"
	# Clients between frames are closed at once; two stuck inside a frame
	# hold their workers until shutdown_timeout. One closes its end as soon
	# as it is closed, the other not: its worker (and /metrics) stay up the
	# 2 s a worker gives a client to close its end, long enough to read the
	# first one's close reason.
	sd_stuck_client "$t/stuck1" close
	sd_stuck_client "$t/stuck2" keep
	wait_for sd_metric_is submitd_client_connected '' 12
	local pids rc=0 start=$EPOCHREALTIME c0 exit_ms closed_ms
	pids=$(sd_workers)
	kill -TERM "$SD_PID"
	# Only the two stuck ones left, the others counted. The idle ones can
	# take 3 s (2 s for their FIN, then the 1 s tick): shutdown_timeout is
	# well above that, or the stuck ones would go first.
	wait_for -t 10 sd_metric_is submitd_client_connected '' 2
	c0=$(sd_metric submitd_connections_closed_total '{reason="shutdown"}')
	wait_for -t 10 grep -q "^closed at" "$t/stuck1"
	wait_for -t 3 eval '[ "$(sd_metric submitd_connections_closed_total "{reason=\"shutdown\"}")" -gt "$c0" ]'
	wait_for -t 15 _sd_all_gone "$SD_JOB"
	exit_ms=$(_sd_elapsed_ms "$start")
	wait "$SD_JOB" || rc=$?
	SD_JOB=
	assert_equal "$rc" 0
	closed_ms=$(awk -v s="$start" '$1 == "closed" { printf "%d", ($3 - s) * 1000 }' "$t/stuck1")
	echo "shutdown closes before the deadline: $c0; stuck client closed after $closed_ms ms" \
		"($(sed -n 's/^closed at [^ ]* //p' "$t/stuck1")); exit after $exit_ms ms"
	# Closed cleanly at the timeout, not before it; the exit bounded by it.
	grep -q " eof$" "$t/stuck1"
	[ "$c0" -ge 10 ]
	[ "$closed_ms" -ge 5900 ]
	[ "$closed_ms" -le 11000 ]
	[ "$exit_ms" -ge 6000 ]
	[ "$exit_ms" -le 13000 ]
	for p in $SD_PID $pids; do
		run kill -0 "$p"
		assert_failure
	done
}
