#!/usr/bin/env bats
# Workers that die or are killed: the crash-loop back-off and the restart
# counter by reason; counters that never go down across the watchdog's kill
# and the kills of max_draining.

load helpers/common

SD_PEER="python3 $SD_ROOT/test/helpers/sdpeer.py"

teardown() {
	sd_stop
}

# start_times LABEL: the times (Unix ms) of the master's "worker LABEL
# started" lines, one per line.
start_times() {
	local ts
	for ts in $(sd_log | sed -n "s/^\([^ ]*Z\) .*: worker $1 started, pid [0-9]*\$/\1/p"); do
		date -d "$ts" +%s%3N
	done
}

@test "crash loop: a worker that dies at start-up is respawned with doubling delays, counted in restarts{reason=\"exit\"}" {
	sd_start 'workers = 1'
	local soft
	soft=$(awk '/^Max open files/ { print $4 }' "/proc/$SD_PID/limits")
	# Workers forked from now on cannot open a descriptor: the signalfd of
	# their set-up fails and they exit with status 1. The running worker
	# keeps its own limit and serves on.
	prlimit --pid "$SD_PID" --nofile=3:
	kill -TTIN "$SD_PID"
	wait_for -t 30 eval '[ "$(sd_log_count "worker 1 \\(pid [0-9]*\\) exited with status 1")" -ge 5 ]'
	run sd_client roundtrip
	assert_success
	prlimit --pid "$SD_PID" --nofile="$soft":
	wait_for -t 30 sd_metric_is submitd_workers '{state="running"}' 2
	local times failed
	times=$(start_times 1)
	failed=$(sd_log_count "worker 1 \\(pid [0-9]*\\) exited with status 1")
	echo "worker 1 started at (ms):" $times "; $failed failed"
	# One start per failure, and the one that stayed.
	assert_equal "$(wc -l <<<"$times")" $((failed + 1))
	# 100 ms after the first quick death, then twice as long each time (up
	# to 5 s): never a tight loop. A start is logged after its fork, which
	# may take a while on a busy machine: each interval is at least half its
	# back-off, and all of them together at least the sum less 100 ms.
	run awk 'NR == 1 { first = $1 }
		NR > 1 { d = $1 - prev; want = 100 * 2 ^ (NR - 2); if (want > 5000) want = 5000
		printf "interval %d: %d ms, back-off %d ms\n", NR - 1, d, want
		sum += want; if (d < want / 2) bad = 1 }
		{ prev = $1 }
		END { printf "in all %d ms, back-offs %d ms\n", prev - first, sum
		      exit bad || NR < 3 || prev - first < sum - 100 }' <<<"$times"
	echo "$output"
	assert_success
	run sd_metric submitd_worker_restarts_total '{reason="exit"}'
	assert_output "$failed"
	run sd_metric submitd_worker_restarts_total '{reason="signal"}'
	assert_output 0
	run sd_metric submitd_workers '{state="configured"}'
	assert_output 2
	run sd_client pipeline 100
	assert_success
}

@test "counters never go down across the watchdog's kill of a hung worker" {
	[ -x "$SD_ROOT/build/submitd-hooks" ] || skip "build/submitd-hooks not built (make build/submitd-hooks)"
	SD_BIN=$SD_ROOT/build/submitd-hooks
	sd_start 'workers = 2' 'worker_timeout = 1'
	sd_sample_metrics "$BATS_TEST_TMPDIR/scrapes" 0.1
	local out=$BATS_TEST_TMPDIR/bench.json victim label before after
	sd_bench "$out" -c 20 --reconnect -d 6 --drain 1
	local bench=$SD_BENCH_PID
	wait_for -t 10 eval '[ "$(sd_metric submitd_client_connected)" -ge 20 ]'
	victim=$(sd_workers | head -1)
	label=$(sd_log | sed -n "s/.*worker \([0-9]*\) started, pid $victim\$/\1/p")
	wait_for eval '[ "$(sd_metric submitd_req_recv_total "{worker=\"$label\"}")" -gt 0 ]'
	kill -USR2 "$victim"
	wait_for sd_log_count "\\[$victim\\] worker $label: test hook: hanging"
	# Read after the hang: these counts can only be kept or lost.
	before=$(sd_metric submitd_req_recv_total "{worker=\"$label\"}")
	wait_for -t 15 _sd_all_gone "$victim"
	wait_for -t 10 sd_metric_is submitd_workers '{state="running"}' 2
	wait_for sd_metric_is submitd_worker_restarts_total '{reason="signal"}' 1
	after=$(sd_metric submitd_req_recv_total "{worker=\"$label\"}")
	echo "worker $label: $before requests before the kill, $after after"
	[ "$after" -ge "$before" ]
	sd_bench_wait "$bench" "$out" 30 || true
	sd_kill_spawned
	run sd_check_monotonic "$BATS_TEST_TMPDIR/scrapes"
	echo "$output"
	assert_success
}

@test "counters never go down across max_draining's kills of old generations" {
	sd_start 'workers = 1' 'max_draining = 1' 'shutdown_timeout = 60' 'idle_timeout = 0'
	sd_sample_metrics "$BATS_TEST_TMPDIR/scrapes" 0.1
	local g
	for g in 1 2 3 4; do
		# A client inside a frame keeps this generation draining after the reload.
		sd_spawn "$BATS_TEST_TMPDIR/partial.$g" $SD_PEER --port "$SD_PORT" partial
		wait_for grep -q '^held' "$BATS_TEST_TMPDIR/partial.$g"
		run sd_client pipeline 100
		assert_success
		assert_equal "$(sd_metric submitd_req_recv_total)" $((g * 100))
		kill -HUP "$SD_PID"
		wait_for -t 15 eval '[ "$(sd_log_count "ready: 1 workers running")" -eq $((g + 1)) ]'
		if [ "$g" -gt 1 ]; then
			# Generation g-1 was stopped hard; its client saw the close.
			wait_for -t 15 grep -q '^closed' "$BATS_TEST_TMPDIR/partial.$((g - 1))"
		fi
		wait_for -t 15 sd_metric_is submitd_generations '' 2
		assert_equal "$(sd_metric submitd_req_recv_total)" $((g * 100))
	done
	run sd_log_count "more than 1 generations draining: stopping generation"
	assert_output 3
	run sd_metric submitd_rsp_send_total
	assert_output 400
	run sd_metric submitd_worker_restarts_total
	assert_output 0
	sd_kill_spawned
	run sd_check_monotonic "$BATS_TEST_TMPDIR/scrapes"
	echo "$output"
	assert_success
}
