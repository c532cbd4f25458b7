#!/usr/bin/env bats
# Configuration checking with -t/-T: a good file passes, each kind of bad file
# fails with "FILE:LINE: message" naming the line at fault, and exit status 1.

load helpers/common

# conf LINES...: write exactly these lines (line N of the file is argument N).
conf() {
	CONF=$BATS_TEST_TMPDIR/t.conf
	printf '%s\n' "$@" >"$CONF"
}

# expect_bad LINE REGEX LINES...: -t rejects the file, names it with line
# LINE, and the message matches REGEX.
expect_bad() {
	local line=$1 re=$2
	shift 2
	conf "$@"
	run --separate-stderr "$SD_BIN" -t -c "$CONF"
	echo "stderr: $stderr"
	assert_equal "$status" 1
	[[ $stderr =~ (^|[[:space:]])$CONF:$line:\ .*$re ]] || {
		echo "want $CONF:$line: ... $re"
		return 1
	}
	[[ $output != *successful* ]]
}

@test "-t on a good config: success message on stdout, exit 0" {
	conf '# a comment' 'listen = {"127.0.0.1:0", "[::1]:0"}' 'workers = 2' \
		'metrics_listen = ""' 'max_connections = 100' 'max_frame_size = 1024' \
		'idle_timeout = 0' 'log_level = debug  # trailing comment'
	run --separate-stderr "$SD_BIN" -t -c "$CONF"
	assert_success
	assert_output --regexp "configuration file $CONF test is successful$"
	assert_equal "$stderr" ""
}

@test "-t on the shipped etc/submitd.conf succeeds" {
	[ -f "$SD_ROOT/etc/submitd.conf" ] || skip "no etc/submitd.conf"
	run "$SD_BIN" -t -c "$SD_ROOT/etc/submitd.conf"
	assert_success
}

@test "an empty file is a valid config (all defaults)" {
	conf ''
	run "$SD_BIN" -t -c "$CONF"
	assert_success
}

@test "unknown option: FILE:LINE, exit 1" {
	expect_bad 3 "foo" 'workers = 2' '' 'foo = 1' 'idle_timeout = 5'
}

@test "wrong type: a string for an integer option" {
	expect_bad 2 "max_connections" 'workers = 2' 'max_connections = "abc"'
	expect_bad 1 "idle_timeout" 'idle_timeout = 5x'
}

@test "wrong type: workers = \"abc\"" {
	expect_bad 2 "workers" '' 'workers = "abc"'
	expect_bad 1 "workers" 'workers = 0'
	expect_bad 1 "workers" 'workers = -1'
	expect_bad 1 "workers" 'workers = 100000'
}

@test "out of range: max_frame_size = 0, max_connections = -3, idle_timeout = -1" {
	expect_bad 4 "max_frame_size" '' '' 'workers = 2' 'max_frame_size = 0'
	expect_bad 1 "max_frame_size" 'max_frame_size = 12'
	expect_bad 2 "max_connections" 'workers = 2' 'max_connections = -3'
	expect_bad 1 "max_connections" 'max_connections = 0'
	expect_bad 1 "idle_timeout" 'idle_timeout = -1'
	expect_bad 1 "shutdown_timeout" 'shutdown_timeout = -5'
}

@test "integers in hex are accepted and range-checked: idle_timeout = 0x10 is 16" {
	conf 'idle_timeout = 0x10'
	run --separate-stderr "$SD_BIN" -T -c "$CONF"
	assert_success
	assert_line "idle_timeout = 16"
	expect_bad 1 "max_frame_size" 'max_frame_size = 0x0c'
}

@test "-T prints the effective configuration, defaults included" {
	conf 'workers = 3' 'max_frame_size = 1000'
	run --separate-stderr "$SD_BIN" -T -c "$CONF"
	assert_success
	assert_line "workers = 3"
	assert_line "max_frame_size = 1000"
	assert_line "max_connections = 10000"
	assert_line "idle_timeout = 300"
	assert_line "send_timeout = 60"
	assert_line 'metrics_listen = "127.0.0.1:8889"'
	# What -T prints is itself a valid config file.
	printf '%s\n' "${lines[@]}" | grep -v "test is successful" >"$BATS_TEST_TMPDIR/dump.conf"
	run "$SD_BIN" -t -c "$BATS_TEST_TMPDIR/dump.conf"
	assert_success
}

@test "bad listen address: port, host, missing port, bad metrics_listen" {
	expect_bad 2 "listen" 'workers = 1' 'listen = {"127.0.0.1:99999"}'
	expect_bad 1 "listen" 'listen = {"nohost:80"}'
	expect_bad 1 "listen" 'listen = {"127.0.0.1"}'
	expect_bad 1 "metrics_listen" 'metrics_listen = "1.2.3.4.5:80"'
	expect_bad 2 "listen" 'workers = 1' 'listen = {}'
}

@test "bad log_level" {
	expect_bad 1 "log_level" 'log_level = loud'
}

@test "a duplicated option is rejected at its second line" {
	expect_bad 4 "workers" 'workers = 2' '' 'idle_timeout = 3' 'workers = 3'
}

@test "line numbers count each comment line once" {
	expect_bad 3 "foo" '# one' '# two' 'foo = 1'
	expect_bad 3 "foo" 'workers = 2 # trailing' '// slashes' 'foo = 1'
	expect_bad 4 "max_frame_size" '# a' '' '# b' 'max_frame_size = 0'
}

@test "an unterminated string is reported at the line it starts on" {
	expect_bad 2 "" 'workers = 2' 'log_file = "/tmp/x' 'workers = 3' 'idle_timeout = 3'
}

@test "an unterminated list or section fails, naming a line" {
	conf 'workers = 2' 'listen = {"127.0.0.1:0"' 'idle_timeout = 3'
	run --separate-stderr "$SD_BIN" -t -c "$CONF"
	assert_equal "$status" 1
	[[ $stderr =~ $CONF:[23]:\  ]]
	# No section is known, so an unterminated one is an unknown option.
	expect_bad 2 "metrics" 'workers = 2' 'metrics {' 'x = 1'
}

@test "missing file: exit 1, the message names the file" {
	run --separate-stderr "$SD_BIN" -t -c "$BATS_TEST_TMPDIR/nonexistent.conf"
	assert_equal "$status" 1
	[[ $stderr == *"$BATS_TEST_TMPDIR/nonexistent.conf: No such file or directory"* ]]
}

@test "a config error at start-up: exit 1 and FILE:LINE, nothing left running" {
	conf 'listen = {"127.0.0.1:0"}' 'metrics_listen = ""' 'max_frame_size = 0'
	run --separate-stderr timeout 10 "$SD_BIN" -f -c "$CONF"
	assert_equal "$status" 1
	[[ $stderr == *"$CONF:3: "* ]]
}
