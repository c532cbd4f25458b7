#!/usr/bin/env bats
# Stopping: SIGQUIT and `-s quit` drain (a frame in flight is finished and
# acked), `-s stop` does not wait; shutdown_timeout bounds a client stuck
# inside a frame, on a reload's drain too; a worker that does not exit is
# killed past the timeout; closes are counted with reason shutdown.

load helpers/common

SD_PEER="python3 $SD_ROOT/test/helpers/sdpeer.py"

teardown() {
	sd_stop
}

# partial_client OUT: a client that sent 7 of the 13 bytes of a Submit;
# SIGUSR1 makes it send the rest (sdpeer.py partial). Pid in SD_SPAWNED.
partial_client() {
	sd_spawn "$1" $SD_PEER --port "$SD_PORT" partial
	wait_for grep -q '^held' "$1"
}

# closed_ms OUT START: ms from START (an EPOCHREALTIME) to the close the
# client of OUT saw; fails if it saw none.
closed_ms() {
	awk -v s="$2" '$1 == "closed" && $3 != "" { printf "%d\n", ($3 - s) * 1000; f = 1 } END { exit !f }' "$1"
}

# wait_exit SECONDS: wait for the master to end; status in SD_RC.
wait_exit() {
	SD_RC=0
	wait_for -t "$1" _sd_all_gone "$SD_JOB" || return 1
	wait "$SD_JOB" || SD_RC=$?
	SD_JOB=
}

# graceful_stop CMD SIG: CMD (evaluated once submitd runs) asks for a graceful stop
# by sending SIG, which the master's log names. Ten clients between
# frames are closed at once (reason shutdown); one in the middle of a frame
# keeps its worker draining, finishes its frame after the stop began, gets
# its ack, then the close; the master exits 0 as soon as that connection is
# gone, long before shutdown_timeout.
graceful_stop() {
	local t=$BATS_TEST_TMPDIR
	sd_start "pid_file = \"$t/submitd.pid\"" 'workers = 2' 'shutdown_timeout = 30'
	sd_spawn "$t/hold.out" $SD_CLIENT --port "$SD_PORT" hold 10 --verify --hold 120
	wait_for grep -q "connected 10" "$t/hold.out"
	partial_client "$t/partial"
	local partial=$SD_SPAWNED
	wait_for sd_metric_is submitd_client_connected '' 11
	local pids start=$EPOCHREALTIME
	pids="$SD_PID $(sd_workers)"
	eval "$1"
	# The ten are closed once their linger ends; the worker of the eleventh
	# goes on draining, and the master with it.
	wait_for -t 20 sd_metric_is submitd_connections_closed_total '{reason="shutdown"}' 10
	run sd_metric submitd_client_connected
	assert_output 1
	run sd_metric submitd_draining_connections
	assert_output 1
	run grep -c "^closed" "$t/partial"
	assert_output 0
	# The rest of the frame, sent after the stop began: acked, then closed.
	kill -USR1 "$partial"
	wait_for -t 20 grep -q "^closed" "$t/partial"
	cat "$t/partial"
	run sed -n 2p "$t/partial"
	assert_output acked
	run awk '$1 == "closed" { print $4, $5 }' "$t/partial"
	assert_output "eof 0"
	wait_exit 30
	local exit_ms
	exit_ms=$(_sd_elapsed_ms "$start")
	echo "exit status $SD_RC after $exit_ms ms (shutdown_timeout 30 s)"
	assert_equal "$SD_RC" 0
	# Done when drained, not when the timeout ran out.
	[ "$exit_ms" -lt 30000 ]
	run _sd_all_gone $pids
	assert_success
	local totals
	totals=$(stopped_totals)
	assert_equal "$totals" "11 11"
	run grep -c "still running past the shutdown timeout" "$t/submitd.log"
	assert_output 0
	run sd_log_count "\]: $2: stopping$"
	assert_output 1
	run sd_log_count "SIG[A-Z]+: stopping"
	assert_output 1
}

@test "SIGQUIT is graceful: a frame in flight is finished and acked, idle clients closed, exit 0 once drained" {
	graceful_stop 'kill -QUIT "$SD_PID"' SIGQUIT
}

@test "submitd -s quit is graceful: a frame in flight is finished and acked, exit 0 once drained" {
	graceful_stop 'timeout 20 "$SD_BIN" -c "$SD_CONF" -s quit' SIGTERM
}

@test "submitd -s stop is fast: a client inside a frame is closed without waiting for shutdown_timeout" {
	local t=$BATS_TEST_TMPDIR
	sd_start "pid_file = \"$t/submitd.pid\"" 'workers = 2' 'shutdown_timeout = 30'
	sd_spawn "$t/hold.out" $SD_CLIENT --port "$SD_PORT" hold 10 --verify --hold 120
	wait_for grep -q "connected 10" "$t/hold.out"
	partial_client "$t/partial"
	wait_for sd_metric_is submitd_client_connected '' 11
	local pids start=$EPOCHREALTIME ms
	pids="$SD_PID $(sd_workers)"
	run timeout 20 "$SD_BIN" -c "$SD_CONF" -s stop
	assert_success
	wait_for -t 20 grep -q "^closed" "$t/partial"
	ms=$(closed_ms "$t/partial" "$start")
	wait_exit 30
	local exit_ms
	exit_ms=$(_sd_elapsed_ms "$start")
	echo "client inside a frame closed after $ms ms: $(cat "$t/partial"); exit $SD_RC after $exit_ms ms"
	assert_equal "$SD_RC" 0
	# Closed with nothing sent to it, and not after a wait for the 30 s timeout.
	run awk '$1 == "closed" { print $4, $5 }' "$t/partial"
	assert_output --regexp '^(eof|reset) 0$'
	[ "$ms" -lt 15000 ]
	[ "$exit_ms" -lt 15000 ]
	run _sd_all_gone $pids
	assert_success
	assert_equal "$(stopped_totals)" "10 10"
	# Each worker closes at once: no drain bounded by shutdown_timeout is announced.
	run sd_log_count "worker [0-9]+: stopping: closing [0-9]+ connections"
	assert_output 2
	run sd_log_count "draining [0-9]+ connections"
	assert_output 0
}

@test "shutdown_timeout on a reload: a client stuck inside a frame holds the old generation until the timeout, then is closed (reason shutdown)" {
	local t=$BATS_TEST_TMPDIR
	# Past the 2 s that the drain's closes wait for each client's FIN (the
	# holder sends none) and the 1 s tick that ends that wait.
	sd_start 'workers = 1' 'shutdown_timeout = 6'
	sd_spawn "$t/hold.out" $SD_CLIENT --port "$SD_PORT" hold 5 --verify --hold 120
	wait_for grep -q "connected 5" "$t/hold.out"
	partial_client "$t/partial"
	wait_for sd_metric_is submitd_client_connected '' 6
	local old ms
	old=$(sd_workers)
	kill -HUP "$SD_PID"
	wait_for -t 15 sd_metric_is submitd_workers '{state="running"}' 1
	# The five between frames are closed by the drain; the stuck one holds on.
	wait_for -t 15 sd_metric_is submitd_connections_closed_total '{reason="shutdown"}' 5
	run sd_metric submitd_generations
	assert_output 2
	run sd_metric submitd_draining_connections
	assert_output 1
	wait_for -t 30 grep -q "^closed" "$t/partial"
	# From the old worker's start of the drain (its log line's time).
	local drained_at
	drained_at=$(sd_log | sed -n "s/^\([^ ]*\) info\[$old\] worker 0: draining .*/\1/p")
	[ -n "$drained_at" ]
	ms=$(closed_ms "$t/partial" "$(date -d "$drained_at" +%s.%N)")
	echo "stuck client: $(cat "$t/partial"), $ms ms after the drain began ($drained_at; shutdown_timeout 6 s)"
	run awk '$1 == "closed" { print $4, $5 }' "$t/partial"
	assert_output "eof 0"
	# At the timeout: not before, and not at the worker's exit 3 s later.
	[ "$ms" -ge 5900 ]
	[ "$ms" -le 7500 ]
	# The old worker closed it itself (counted), then exited: not killed.
	wait_for -t 15 sd_metric_is submitd_generations '' 1
	wait_for sd_metric_is submitd_connections_closed_total '{reason="shutdown"}' 6
	run sd_metric submitd_draining_connections
	assert_output 0
	run _sd_all_gone $old
	assert_success
	run sd_log_count "still draining: killing"
	assert_output 0
	run sd_metric submitd_worker_restarts_total
	assert_output 0
	run sd_client roundtrip
	assert_success
}

# hang_worker PID: the hooks build's worker hangs on SIGUSR2 (worker.c),
# with every signal but SIGKILL blocked.
hang_worker() {
	kill -USR2 "$1"
	wait_for sd_log_count "\\[$1\\] worker [0-9]*: test hook: hanging"
}

@test "stop: a worker that does not exit is killed past shutdown_timeout, and the master exits 0" {
	[ -x "$SD_ROOT/build/submitd-hooks" ] || skip "build/submitd-hooks not built (make build/submitd-hooks)"
	SD_BIN=$SD_ROOT/build/submitd-hooks
	sd_start 'workers = 2' 'shutdown_timeout = 1' 'worker_timeout = 0'
	local victim pids start exit_ms
	victim=$(sd_workers | head -1)
	pids="$SD_PID $(sd_workers)"
	hang_worker "$victim"
	start=$EPOCHREALTIME
	kill -TERM "$SD_PID"
	wait_exit 40
	exit_ms=$(_sd_elapsed_ms "$start")
	echo "exit status $SD_RC after $exit_ms ms"
	assert_equal "$SD_RC" 0
	run _sd_all_gone $pids
	assert_success
	# shutdown_timeout (1 s) and the master's grace (3 s) first.
	[ "$exit_ms" -ge 3900 ]
	run sd_log_count "1 workers still running past the shutdown timeout: killing"
	assert_output 1
	run sd_log_count "\\(pid $victim\\) killed by signal 9"
	assert_output 1
}

@test "reload: an old-generation worker that does not exit is killed past shutdown_timeout; its counts are kept" {
	[ -x "$SD_ROOT/build/submitd-hooks" ] || skip "build/submitd-hooks not built (make build/submitd-hooks)"
	SD_BIN=$SD_ROOT/build/submitd-hooks
	sd_start 'workers = 1' 'shutdown_timeout = 1' 'worker_timeout = 0'
	run sd_client pipeline 100
	assert_success
	local victim start ms
	victim=$(sd_workers)
	hang_worker "$victim"
	start=$EPOCHREALTIME
	kill -HUP "$SD_PID"
	wait_for -t 30 _sd_all_gone "$victim"
	ms=$(_sd_elapsed_ms "$start")
	echo "hung old worker gone $ms ms after SIGHUP"
	[ "$ms" -ge 3900 ]
	run sd_log_count "worker 0 \\(pid $victim\\) still draining: killing"
	assert_output 1
	wait_for sd_metric_is submitd_generations '' 1
	# Stopped on purpose: not a restart. Its 100 requests still count.
	run sd_metric submitd_worker_restarts_total
	assert_output 0
	run sd_metric submitd_req_recv_total
	assert_output 100
	run sd_client roundtrip
	assert_success
	run sd_metric submitd_req_recv_total
	assert_output 101
}
