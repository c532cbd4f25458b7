#!/usr/bin/env bats
# The command line: version, help, bad flags. SIGHUP and -s reload are in
# reload.bats, -s and the pid file in pidfile.bats.

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
