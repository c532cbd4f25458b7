#!/usr/bin/env bats
# The command line and signals: version, help, bad flags, reload on SIGHUP
# and through -s with the pid file.

load helpers/common

teardown() {
	sd_stop
}

@test "-v and --version print \"submitd VERSION (commit C)\", exit 0" {
	run --separate-stderr "$SD_BIN" -v
	assert_success
	assert_output --regexp '^submitd [0-9][^ ]* \(commit [0-9a-f]+\)$'
	local v=$output
	run --separate-stderr "$SD_BIN" --version
	assert_success
	assert_output "$v"
}

@test "-h and --help print the usage on stdout, exit 0" {
	run --separate-stderr "$SD_BIN" -h
	assert_success
	assert_output --partial "usage: submitd"
	assert_output --partial "--config"
	assert_equal "$stderr" ""
	run --separate-stderr "$SD_BIN" --help
	assert_success
	assert_output --partial "usage: submitd"
}

@test "a bad flag: usage on stderr, nothing on stdout, exit 2" {
	local args
	for args in "-Z" "--no-such-flag" "-c" "-s" "-s bogus" "extra-argument"; do
		# shellcheck disable=SC2086
		run --separate-stderr "$SD_BIN" $args
		echo "args: $args -> $status"
		assert_equal "$status" 2
		assert_equal "$output" ""
		[[ $stderr == *usage:* ]] || [[ $stderr == *"$args"* ]] || [[ $stderr == *bogus* ]]
	done
	run --separate-stderr "$SD_BIN" -Z
	[[ $stderr == *"usage: submitd"* ]]
}

@test "SIGHUP with a bad config: keeps serving, logs FILE:LINE, reload gauge 0" {
	sd_start 'max_frame_size = 1000'
	run sd_metric submitd_config_last_reload_successful
	assert_output 1
	local workers line
	workers=$(sd_workers | tr '\n' ' ')
	echo 'max_frame_size = 0' >>"$SD_CONF"
	line=$(wc -l <"$SD_CONF")
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload failed, keeping the running configuration"
	run sd_log_count "$SD_CONF:$line: "
	[ "$output" -ge 1 ]
	wait_for sd_metric_is submitd_config_last_reload_successful '' 0
	# Same workers, same limits, still answering.
	assert_equal "$(sd_workers | tr '\n' ' ')" "$workers"
	run sd_client roundtrip
	assert_success
	run sd_client frame --len 1000
	assert_output ack
	run sd_client frame --len 1001
	assert_output closed
}

@test "SIGHUP with a syntax error: keeps serving" {
	sd_start
	printf 'workers = "2\n' >>"$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload failed, keeping the running configuration"
	run sd_log_count "$SD_CONF:[0-9]+: "
	[ "$output" -ge 1 ]
	run sd_client pipeline 100
	assert_success
}

@test "SIGHUP with a good config: \"reload: configuration FILE applied\", new limits used" {
	sd_start 'max_frame_size = 1000'
	local t0
	t0=$(sd_metric submitd_config_last_reload_success_timestamp_seconds)
	run sd_client frame --len 1001
	assert_output closed
	sed -i 's/^max_frame_size = 1000$/max_frame_size = 2000/' "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload: configuration $SD_CONF applied"
	wait_for eval '[ "$(sd_log_count "ready: 2 workers running")" -ge 2 ]'
	wait_for sd_metric_is submitd_config_last_reload_successful '' 1
	run sd_client frame --len 1001
	assert_output ack
	run sd_client frame --len 2001
	assert_output closed
	run sd_metric submitd_config_last_reload_success_timestamp_seconds
	awk -v a="$t0" -v b="$output" 'BEGIN { exit !(b >= a && b > 0) }'
}

@test "a failed reload followed by a good one applies the good one" {
	sd_start
	cp "$SD_CONF" "$BATS_TEST_TMPDIR/good.conf"
	echo 'no_such_option = 1' >>"$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload failed"
	cp "$BATS_TEST_TMPDIR/good.conf" "$SD_CONF"
	sed -i 's/^workers = 2$/workers = 3/' "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload: configuration $SD_CONF applied"
	wait_for sd_log_count "ready: 3 workers running"
	wait_for eval '[ "$(sd_workers | wc -l)" -eq 3 ]'
	wait_for sd_metric_is submitd_config_last_reload_successful '' 1
	run sd_client roundtrip
	assert_success
}

@test "-s reload and -s stop signal the master named in pid_file" {
	local pidf=$BATS_TEST_TMPDIR/submitd.pid
	sd_start "pid_file = \"$pidf\""
	wait_for test -s "$pidf"
	assert_equal "$(cat "$pidf")" "$SD_PID"
	run timeout 20 "$SD_BIN" -c "$SD_CONF" -s reload
	assert_success
	wait_for sd_log_count "reload: configuration $SD_CONF applied"
	run timeout 20 "$SD_BIN" -c "$SD_CONF" -s stop
	assert_success
	local rc=0
	wait_for -t 15 _sd_all_gone "$SD_PID"
	wait "$SD_JOB" || rc=$?
	SD_JOB=
	assert_equal "$rc" 0
	[ ! -e "$pidf" ]
}

@test "-s with no running master fails" {
	local pidf=$BATS_TEST_TMPDIR/none.pid
	printf 'pid_file = "%s"\n' "$pidf" >"$BATS_TEST_TMPDIR/c.conf"
	run timeout 20 "$SD_BIN" -c "$BATS_TEST_TMPDIR/c.conf" -s reload
	assert_failure
}
