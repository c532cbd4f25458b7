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
