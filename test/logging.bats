#!/usr/bin/env bats
# log_level: which lines reach the log. The lines themselves are the
# contract here.

load helpers/common

teardown() {
	sd_stop
}

# reload_to LEVEL: set log_level and reload; -s reload returns once the new
# generation serves. Then wait for the old workers (they keep the level they
# were started with) to be gone.
reload_to() {
	sed -i "s/^log_level = .*/log_level = $1/" "$SD_CONF"
	run timeout 30 "$SD_BIN" -c "$SD_CONF" -s reload
	assert_success
	wait_for -t 15 sd_metric_is submitd_generations '' 1
}

# lines_since N LEVEL: the number of LEVEL lines after line N of the log.
lines_since() {
	tail -n +"$(($1 + 1))" "$BATS_TEST_TMPDIR/submitd.log" | grep -cE "^[^ ]*Z $2\[" || true
}

@test "log_level: debug lines at debug only; at warn no info line, warnings still logged" {
	local pidf=$BATS_TEST_TMPDIR/submitd.pid mark accepted
	sd_start 'log_level = debug' "pid_file = \"$pidf\"" 'workers = 2'
	# At debug: a line per accepted connection.
	run sd_client roundtrip
	assert_success
	wait_for sd_log_count "debug\\[[0-9]+\\] worker [0-9]+: fd [0-9]+: accepted on listener 0\$"
	# At info: connections are accepted, without a debug line.
	reload_to info
	mark=$(wc -l <"$BATS_TEST_TMPDIR/submitd.log")
	accepted=$(sd_metric submitd_connections_accepted_total)
	run sd_client pipeline 10
	assert_success
	run sd_client roundtrip
	assert_success
	kill -TTIN "$SD_PID"
	wait_for -t 15 sd_metric_is submitd_workers '{state="running"}' 3
	assert_equal "$(sd_metric submitd_connections_accepted_total)" $((accepted + 2))
	run lines_since "$mark" debug
	assert_output 0
	run sd_log_count "workers: 3\$"
	assert_output 1
	# At warn: nothing at info or debug, from the master or the workers.
	reload_to warn
	mark=$(wc -l <"$BATS_TEST_TMPDIR/submitd.log")
	run sd_client pipeline 10
	assert_success
	# The reload went back to the file's workers = 2.
	kill -TTIN "$SD_PID"
	wait_for -t 15 sd_metric_is submitd_workers '{state="running"}' 3
	kill -USR2 "$SD_PID"
	wait_for sd_log_count "warn\\[$SD_PID\\]: SIGUSR2 ignored"
	tail -n +"$((mark + 1))" "$BATS_TEST_TMPDIR/submitd.log"
	run lines_since "$mark" info
	assert_output 0
	run lines_since "$mark" debug
	assert_output 0
	run lines_since "$mark" warn
	assert_output 1
}
