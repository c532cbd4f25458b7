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

@test "workers = 1 and every worker answers" {
	sd_start 'workers = 1'
	run sd_workers
	assert_equal "${#lines[@]}" 1
	run sd_client roundtrip
	assert_success
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
	[ "$((w0 + w1))" -eq 100 ] && [ "$w0" -le 60 ] && [ "$w1" -le 60 ]
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
	sd_start 'workers = 2' 'shutdown_timeout = 3'
	sd_spawn "$BATS_TEST_TMPDIR/hold.out" $SD_CLIENT --port "$SD_PORT" hold 10 --verify --hold 60
	wait_for grep -q "connected 10" "$BATS_TEST_TMPDIR/hold.out"
	local pids rc=0 start=$SECONDS
	pids=$(sd_workers)
	kill -TERM "$SD_PID"
	wait_for -t 15 _sd_all_gone "$SD_JOB"
	wait "$SD_JOB" || rc=$?
	SD_JOB=
	assert_equal "$rc" 0
	[ $((SECONDS - start)) -le 6 ]
	for p in $SD_PID $pids; do
		run kill -0 "$p"
		assert_failure
	done
}
