#!/usr/bin/env bats
# Process lifecycle under load: kill -9 and respawn, graceful and fast stop,
# the watchdog, SIGTTIN/SIGTTOU, SIGUSR1 log reopening. The pid file is in
# pidfile.bats.

load helpers/common
load helpers/lifecycle

teardown() {
	sd_stop
}

@test "kill -9 of a worker every second under load: only its connections fail; respawned each time" {
	sd_start 'workers = 2'
	local out=$BATS_TEST_TMPDIR/bench.json
	respawn_under_load "$out" 10
	local worst victims_conns
	worst=$(sed -n 's/^worst_ms //p' <<<"$output")
	victims_conns=$(awk '/^kill / { s += $8 } END { print s + 0 }' <<<"$output")
	local errors connect_errors runs acked
	runs=$(wc -l <"$out")
	errors=$(jq -s 'map(.errors) | add' "$out")
	connect_errors=$(jq -s 'map(.connect_errors) | add' "$out")
	acked=$(jq -s 'map(.acked) | add' "$out")
	head -5 "$out.err"
	echo "worst respawn ${worst} ms; connections held by the killed workers $victims_conns;" \
		"$runs bench runs: $acked acked, $errors errors, $connect_errors connect errors"
	# Load went on through the kills.
	[ "$runs" -ge 8 ]
	# A killed worker's clients see a reset or a close; nobody else sees anything.
	[ "$errors" -le "$victims_conns" ]
	assert_equal "$connect_errors" 0
	run sd_metric submitd_worker_restarts_total '{reason="signal"}'
	assert_output 10
	# Respawned every time, within a bound no busy machine misses (make bench
	# measures the time itself: bench/thresholds.sh).
	awk -v w="$worst" 'BEGIN { exit !(w < 2000) }'
}

# wait_exit SECONDS: wait for the master (SD_JOB) to end; its status in SD_RC,
# the time it took in SD_EXIT_MS.
wait_exit() {
	local start=$EPOCHREALTIME
	SD_RC=0
	wait_for -t "$1" _sd_all_gone "$SD_JOB" || return 1
	SD_EXIT_MS=$(_sd_elapsed_ms "$start")
	wait "$SD_JOB" || SD_RC=$?
	SD_JOB=
}

# stuck_closed_ms OUT START: when the sd_stuck_client of OUT saw its close, in
# ms after START (an EPOCHREALTIME); fails if it saw none or not a clean one.
stuck_closed_ms() {
	awk -v s="$2" '$1 == "closed" && $4 == "eof" { printf "%d\n", ($3 - s) * 1000; f = 1 }
		END { exit !f }' "$1"
}

@test "SIGTERM under load: exit 0 within shutdown_timeout, every request read was acked" {
	sd_start 'workers = 2' 'shutdown_timeout = 5'
	local out=$BATS_TEST_TMPDIR/bench.json pids
	sd_bench "$out" -c 50 --reconnect -d 4 --drain 2
	local bench=$SD_BENCH_PID
	# A client inside a frame: the drain has to wait the timeout for it.
	sd_stuck_client "$BATS_TEST_TMPDIR/stuck" keep
	wait_for eval '[ "$(sd_metric submitd_client_connected)" -ge 51 ]'
	local before start closed_ms
	before=$(sd_metric submitd_req_recv_total)
	wait_for eval '[ "$(sd_metric submitd_req_recv_total)" -gt "$before" ]'
	pids="$SD_PID $(sd_workers)"
	start=$EPOCHREALTIME
	kill -TERM "$SD_PID"
	wait_exit 20
	closed_ms=$(stuck_closed_ms "$BATS_TEST_TMPDIR/stuck" "$start")
	echo "exit status $SD_RC after $SD_EXIT_MS ms; the stuck client closed after $closed_ms ms"
	assert_equal "$SD_RC" 0
	# The stuck client held on until the timeout, and the exit followed it
	# (plus the 2 s a worker gives a closed client to close its end).
	[ "$closed_ms" -ge 4900 ]
	[ "$SD_EXIT_MS" -ge 5000 ]
	[ "$SD_EXIT_MS" -le 12000 ]
	run _sd_all_gone $pids
	assert_success
	# With the server gone the clients' reconnects fail and submit-bench ends.
	sd_bench_wait "$bench" "$out" 40 || true
	local totals
	totals=$(stopped_totals)
	echo "server: $totals (received, acked); bench acked $(sd_bench_field acked), lost $(sd_bench_field lost)"
	set -- $totals
	assert_equal "$#" 2
	assert_equal "$1" "$2"
	assert_equal "$(sd_bench_field acked)" "$1"
	# Every connection was closed between two acks (none reset, none inside an
	# ack); the reconnect after it was refused, as the listeners are closed.
	[ "$(sd_bench_field reconnects)" -ge 50 ]
	assert_equal "$(sd_bench_field errors)" "$(sd_bench_field connect_errors)"
}

@test "SIGINT under load: fast exit, status 0" {
	sd_start_busy_stuck
	local pids="$SD_PID $(sd_workers)"
	kill -INT "$SD_PID"
	wait_exit 25
	echo "exit status $SD_RC after $SD_EXIT_MS ms"
	assert_equal "$SD_RC" 0
	# Not bound by shutdown_timeout (30 s): no waiting for clients at all.
	# The time itself is measured by make bench (bench/thresholds.sh).
	[ "$SD_EXIT_MS" -lt 15000 ]
	run grep -c "^closed at" "$BATS_TEST_TMPDIR/stuck"
	assert_output 1
	run _sd_all_gone $pids
	assert_success
	local totals
	totals=$(stopped_totals)
	set -- $totals
	assert_equal "$#" 2
	assert_equal "$1" "$2"
}

@test "watchdog: a hung worker is killed and replaced, restarts_total{reason=\"signal\"} counts it" {
	[ -x "$SD_ROOT/build/submitd-hooks" ] || skip "build/submitd-hooks not built (make build/submitd-hooks)"
	SD_BIN=$SD_ROOT/build/submitd-hooks
	sd_start 'workers = 2' 'worker_timeout = 1'
	local out=$BATS_TEST_TMPDIR/bench.json victim label held
	sd_bench "$out" -c 50 --reconnect -d 6 --drain 1
	local bench=$SD_BENCH_PID
	wait_for sd_metric_is submitd_client_connected '' 50
	victim=$(sd_workers | head -1)
	label=$(sd_worker_label "$victim")
	# Nothing closes cleanly before the kill, so the victim's clients stay its own.
	held=$(sd_metric submitd_client_connected "{worker=\"$label\"}")
	[ "$held" -gt 0 ]
	local start=$EPOCHREALTIME
	kill -USR2 "$victim"
	wait_for -t 10 sd_log_count "pid $victim\\) unresponsive"
	wait_for -t 10 eval '! sd_workers | grep -qx "$victim" && [ "$(sd_workers | wc -l)" -eq 2 ]'
	echo "hung worker replaced after $(_sd_elapsed_ms "$start") ms"
	wait_for sd_metric_is submitd_worker_restarts_total '{reason="signal"}' 1
	wait_for sd_metric_is submitd_workers '{state="running"}' 2
	run sd_metric submitd_worker_restarts_total '{reason="exit"}'
	assert_output 0
	run sd_log_count "killed by signal 9"
	assert_output 1
	sd_bench_wait "$bench" "$out" 30 || true
	# Only the hung worker's clients were cut (a failed connection is not
	# reopened, so each counts once): the others kept going.
	echo "the hung worker held $held of 50 connections; bench errors $(sd_bench_field errors)"
	[ "$(sd_bench_field acked)" -gt 0 ]
	[ "$(sd_bench_field errors)" -le "$held" ]
	run sd_client roundtrip
	assert_success
}

@test "SIGTTIN adds a worker, SIGTTOU removes one, no reload" {
	sd_start 'workers = 2'
	local out=$BATS_TEST_TMPDIR/bench.json
	sd_bench "$out" -c 50 --reconnect -d 5 --drain 1
	local bench=$SD_BENCH_PID
	kill -TTIN "$SD_PID"
	wait_for -t 10 eval '[ "$(sd_workers | wc -l)" -eq 3 ] && sd_metric_is submitd_workers "{state=\"running\"}" 3'
	run sd_metric submitd_workers '{state="configured"}'
	assert_output 3
	kill -TTIN "$SD_PID"
	wait_for -t 10 sd_metric_is submitd_workers '{state="running"}' 4
	# One at a time: signals of one kind sent together may arrive as one.
	local n
	for n in 3 2 1; do
		kill -TTOU "$SD_PID"
		wait_for -t 15 eval '[ "$(sd_workers | wc -l)" -eq $n ] && sd_metric_is submitd_workers "{state=\"running\"}" $n'
	done
	run sd_metric submitd_workers '{state="configured"}'
	assert_output 1
	# Never below one worker.
	kill -TTOU "$SD_PID"
	wait_for sd_log_count "workers stays 1"
	run sd_workers
	assert_equal "${#lines[@]}" 1
	run sd_log_count "reload: "
	assert_output 0
	run sd_metric submitd_worker_restarts_total
	assert_output 0
	sd_bench_wait "$bench" "$out" 30
	assert_equal "$(sd_bench_field errors)" 0
	assert_equal "$(sd_bench_field connect_errors)" 0
}

@test "SIGUSR1 reopens the log: after mv log log.1, new lines go to a new log file" {
	sd_start 'workers = 2'
	local log=$BATS_TEST_TMPDIR/submitd.log
	mv "$log" "$log.1"
	sd_log_moved_check "$log"
	# The old file got the earlier lines and nothing else.
	grep -q "ready: 2 workers running" "$log.1"
}

# usr2_pending PID: SIGUSR2 is pending for PID (SigPnd or ShdPnd, bit 12),
# or PID ignores it (SigIgn: the kernel drops it when sent).
usr2_pending() {
	local k m
	while read -r k m; do
		case $k in
		SigPnd: | ShdPnd: | SigIgn:) (((0x$m & 0x800) != 0)) && return 0 ;;
		esac
	done <"/proc/$1/status"
	return 1
}

@test "SIGUSR2 (nginx's binary upgrade) is ignored by the master and the workers" {
	sd_start 'workers = 2'
	local workers
	workers=$(sd_workers | tr '\n' ' ')
	kill -USR2 "$SD_PID"
	wait_for sd_log_count "SIGUSR2 ignored"
	kill -USR2 $workers
	# Arrived and left pending (blocked, outside the workers' signalfd), not
	# acted on, or dropped: nothing can still happen to them because of it.
	local w
	for w in $workers; do
		wait_for usr2_pending "$w"
	done
	run sd_client roundtrip
	assert_success
	kill -0 "$SD_PID"
	assert_equal "$(sd_workers | tr '\n' ' ')" "$workers"
	run sd_metric submitd_worker_restarts_total
	assert_output 0
}
