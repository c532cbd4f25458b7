#!/usr/bin/env bats
# What -t promises: files that are not readable text, what start-up would
# refuse (user, log_file, addresses), -q, option-name suggestions,
# -T round trips, leading zeros, comments in lists. What a reload survives is
# in reload.bats, listener churn on reload in listeners.bats, pid_file's
# checks in pidfile.bats.

load helpers/common
load helpers/configcheck

# --- the file itself ---

@test "-t on a directory, a FIFO, a dangling link, a 100 MiB file, a NUL byte: FILE: message, exit 1" {
	run --separate-stderr "$SD_BIN" -t -c /etc
	assert_equal "$status" 1
	[[ $stderr == *"submitd: /etc: not a regular file"* ]]
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	run --separate-stderr timeout 10 "$SD_BIN" -t -c "$BATS_TEST_TMPDIR/fifo"
	assert_equal "$status" 1
	[[ $stderr == *"$BATS_TEST_TMPDIR/fifo: not a regular file"* ]]
	ln -s "$BATS_TEST_TMPDIR/nowhere" "$BATS_TEST_TMPDIR/dangling"
	run --separate-stderr "$SD_BIN" -t -c "$BATS_TEST_TMPDIR/dangling"
	assert_equal "$status" 1
	[[ $stderr == *"$BATS_TEST_TMPDIR/dangling: No such file or directory"* ]]
	truncate -s 100M "$BATS_TEST_TMPDIR/big"
	run --separate-stderr "$SD_BIN" -t -c "$BATS_TEST_TMPDIR/big"
	assert_equal "$status" 1
	[[ $stderr == *"$BATS_TEST_TMPDIR/big: too large (104857600 bytes, at most 1048576)"* ]]
	printf 'workers = 2\n\0\n' >"$BATS_TEST_TMPDIR/nul"
	run --separate-stderr "$SD_BIN" -t -c "$BATS_TEST_TMPDIR/nul"
	assert_equal "$status" 1
	[[ $stderr == *"$BATS_TEST_TMPDIR/nul:2: a NUL byte"* ]]
	# A file whose read fails (root reads anything chmod 000, not this).
	run --separate-stderr "$SD_BIN" -t -c /proc/self/mem
	assert_equal "$status" 1
	[[ $stderr == *"/proc/self/mem: read: "* ]]
}

# --- what start-up would refuse ---

@test "-t: a user that does not exist" {
	conf 'user = "nosuchuser-submitd"'
	check_fails "$CONF: user \"nosuchuser-submitd\": no such user"
	conf 'user = "root"'
	run "$SD_BIN" -t -c "$CONF"
	assert_success
}

@test "-t: log_file in a missing directory" {
	conf "log_file = \"$BATS_TEST_TMPDIR/missing/submitd.log\""
	check_fails "$CONF: log_file \"$BATS_TEST_TMPDIR/missing/submitd.log\": directory $BATS_TEST_TMPDIR/missing: No such file or directory"
	# The same file is fine where it can be written.
	conf "log_file = \"$BATS_TEST_TMPDIR/submitd.log\""
	run "$SD_BIN" -t -c "$CONF"
	assert_success
}

@test "-t: a log_file that is a directory is refused, a link to a file is not" {
	mkdir "$BATS_TEST_TMPDIR/d"
	conf "log_file = \"$BATS_TEST_TMPDIR/d\""
	check_fails "$CONF: log_file \"$BATS_TEST_TMPDIR/d\": is a directory"
	# A log_file may be a link to a file (the privileges suite logs through one).
	echo precious >"$BATS_TEST_TMPDIR/victim"
	ln -s "$BATS_TEST_TMPDIR/victim" "$BATS_TEST_TMPDIR/link.log"
	conf "log_file = \"$BATS_TEST_TMPDIR/link.log\""
	run "$SD_BIN" -t -c "$CONF"
	assert_success
}

@test "-t: a log_file directory the user cannot search (started as root): a warning" {
	[ "$(id -u)" = 0 ] || skip "needs root"
	getent passwd nobody >/dev/null || skip "no user nobody"
	mkdir -m 0700 "$BATS_TEST_TMPDIR/private"
	conf 'user = "nobody"' "log_file = \"$BATS_TEST_TMPDIR/private/submitd.log\""
	# Serving works (the workers inherit the open log); reopening it after
	# SIGUSR1 would not: warned, not refused.
	run --separate-stderr "$SD_BIN" -t -c "$CONF"
	assert_success
	[[ $stderr == *"warning: $CONF: log_file \"$BATS_TEST_TMPDIR/private/submitd.log\": directory $BATS_TEST_TMPDIR/private: not searchable by user nobody"* ]]
	chmod 0755 "$BATS_TEST_TMPDIR/private"
	run --separate-stderr "$SD_BIN" -t -c "$CONF"
	assert_success
	assert_equal "$stderr" ""
}

@test "a failed -t for the user also stops the start: exit 1, nothing left running" {
	conf 'listen = {"127.0.0.1:0"}' 'metrics_listen = ""' 'workers = 1' 'user = "nosuchuser-submitd"'
	run --separate-stderr timeout 10 "$SD_BIN" -f -c "$CONF"
	assert_equal "$status" 1
	[[ $stderr == *"user \"nosuchuser-submitd\": no such user"* ]]
}

@test "-t: the same listen address twice, overlapping ones, metrics_listen on a listen address" {
	conf 'workers = 1' 'listen = {"127.0.0.1:7001", "127.0.0.1:7001"}'
	check_fails "$CONF:2: listen: \"127.0.0.1:7001\" is listed twice"
	conf 'listen = {"127.0.0.1:0", "127.0.0.1:0"}'
	check_fails "$CONF:1: listen: \"127.0.0.1:0\" is listed twice"
	conf 'listen = {"localhost:7001", "127.0.0.1:7001"}'
	check_fails "$CONF:1: listen: \"127.0.0.1:7001\" overlaps \"localhost:7001\""
	conf 'listen = {"127.0.0.2:7001", "*:7001"}'
	check_fails "$CONF:1: listen: \"\\*:7001\" overlaps \"127.0.0.2:7001\""
	conf 'listen = {"[::1]:7001", "[::]:7001"}'
	check_fails "$CONF:1: listen: \"\\[::\\]:7001\" overlaps \"\\[::1\\]:7001\""
	conf 'listen = {"127.0.0.1:7001"}' '' 'metrics_listen = "127.0.0.1:7001"'
	check_fails "$CONF:3: metrics_listen: \"127.0.0.1:7001\" overlaps listen \"127.0.0.1:7001\""
	conf 'listen = {"127.0.0.1:7001"}' 'metrics_listen = "0.0.0.0:7001"'
	check_fails "$CONF:2: metrics_listen: "
	# Different ports, or an IPv4 and an IPv6 wildcard (IPv6 sockets are v6-only): fine.
	conf 'listen = {"*:7001", "[::]:7001", "127.0.0.1:7002"}' 'metrics_listen = "127.0.0.1:7003"'
	run "$SD_BIN" -t -c "$CONF"
	assert_success
}

@test "-q: nothing on success, errors still printed" {
	conf 'workers = 2'
	run --separate-stderr "$SD_BIN" -t -q -c "$CONF"
	assert_success
	assert_equal "$output" ""
	assert_equal "$stderr" ""
	run --separate-stderr "$SD_BIN" -T --quiet -c "$CONF"
	assert_success
	assert_line "workers = 2"
	refute_output --partial "successful"
	conf 'workers = 0'
	run --separate-stderr "$SD_BIN" -t -q -c "$CONF"
	assert_equal "$status" 1
	[[ $stderr == *"$CONF:1: workers"* ]]
}

@test "an unknown option close to a known one: did you mean" {
	conf 'workers = 2' 'idle_timout = 5'
	check_fails "$CONF:2: no such option 'idle_timout' \\(did you mean \"idle_timeout\"\\?\\)"
	conf 'worker = 2'
	check_fails "$CONF:1: no such option 'worker' \\(did you mean \"workers\"\\?\\)"
	conf 'max_conections = 5'
	check_fails "did you mean \"max_connections\""
	# Nothing close: no guess.
	conf 'foo = 1'
	check_fails "$CONF:1: no such option 'foo'"
	[[ $stderr != *"did you mean"* ]]
	# The command line too.
	run --separate-stderr "$SD_BIN" --tset
	assert_equal "$status" 2
	[[ $stderr == *"did you mean --test?"* ]]
	run --separate-stderr "$SD_BIN" --foregrund
	[[ $stderr == *"did you mean --foreground?"* ]]
	run --separate-stderr "$SD_BIN" --zzzzzz
	[[ $stderr != *"did you mean"* ]]
}

@test "-h: -T prints the configuration as well as checking it; -q is listed" {
	run --separate-stderr "$SD_BIN" -h
	assert_success
	assert_line --regexp '^  -T, --dump +like -t, and print the effective configuration'
	assert_line --regexp '^  -q, --quiet '
	assert_line --partial 'usage: submitd [-tTqfvh]'
}

# --- the file's syntax ---

@test "-T output with quotes and backslashes in strings parses back to the same -T" {
	mkdir -p "$BATS_TEST_TMPDIR/a\"b\\c"
	conf "log_file = \"$BATS_TEST_TMPDIR/a\\\"b\\\\c/x.log\"" 'workers = 3' "pid_file = '$BATS_TEST_TMPDIR/p\"q.pid'"
	run --separate-stderr "$SD_BIN" -T -q -c "$CONF"
	assert_success
	assert_line "log_file = \"$BATS_TEST_TMPDIR/a\\\"b\\\\c/x.log\""
	assert_line "pid_file = \"$BATS_TEST_TMPDIR/p\\\"q.pid\""
	printf '%s\n' "${lines[@]}" >"$BATS_TEST_TMPDIR/dump1.conf"
	run --separate-stderr "$SD_BIN" -T -q -c "$BATS_TEST_TMPDIR/dump1.conf"
	assert_success
	printf '%s\n' "${lines[@]}" >"$BATS_TEST_TMPDIR/dump2.conf"
	# Everything but the first line (it names the file) is the same.
	diff <(tail -n +2 "$BATS_TEST_TMPDIR/dump1.conf") <(tail -n +2 "$BATS_TEST_TMPDIR/dump2.conf")
}

@test "a number with a leading zero is refused with FILE:LINE; 0, 0x10 and -1 are still read" {
	conf 'workers = 2' 'idle_timeout = 010'
	check_fails "$CONF:2: idle_timeout = 010: a number with a leading zero"
	conf 'max_connections = 00'
	check_fails "$CONF:1: max_connections = 00: a number with a leading zero"
	conf 'mem_decay_ms = -01'
	check_fails "$CONF:1: mem_decay_ms = -01: a number with a leading zero"
	conf 'workers = "02"'
	check_fails "$CONF:1: workers"
	conf 'idle_timeout = 0' 'shutdown_timeout = 0x10' 'mem_decay_ms = -1'
	run --separate-stderr "$SD_BIN" -T -c "$CONF"
	assert_success
	assert_line "idle_timeout = 0"
	assert_line "shutdown_timeout = 16"
	assert_line "mem_decay_ms = -1"
}

@test "on/off options: true/false, yes/no, on/off and 1/0 are read, -T prints true/false, anything else is FILE:LINE" {
	local v
	for v in true yes on ON 1 '"on"'; do
		conf 'workers = 1' "nats_create_stream = $v"
		run --separate-stderr "$SD_BIN" -T -c "$CONF"
		assert_success
		assert_line "nats_create_stream = true"
	done
	for v in false no off Off 0; do
		conf "nats_create_stream = $v"
		run --separate-stderr "$SD_BIN" -T -c "$CONF"
		assert_success
		assert_line "nats_create_stream = false"
	done
	for v in maybe 2 -1 tru; do
		conf 'workers = 1' "nats_create_stream = $v"
		check_fails "submitd: $CONF:2: nats_create_stream: \"$v\" is not a boolean \(true/false, yes/no, on/off or 1/0\)"
	done
	# -T's own output reads back to the same -T.
	conf 'nats_create_stream = yes'
	"$SD_BIN" -T -q -c "$CONF" >"$BATS_TEST_TMPDIR/dump1.conf"
	grep -qx 'nats_create_stream = true' "$BATS_TEST_TMPDIR/dump1.conf"
	"$SD_BIN" -T -q -c "$BATS_TEST_TMPDIR/dump1.conf" >"$BATS_TEST_TMPDIR/dump2.conf"
	diff <(tail -n +2 "$BATS_TEST_TMPDIR/dump1.conf") <(tail -n +2 "$BATS_TEST_TMPDIR/dump2.conf")
}

@test "comments inside a list over several lines; line numbers stay right after them" {
	conf 'listen = {' '  # the public one' '  "127.0.0.1:7001",  # trailing' '  // another style' \
		'  "127.0.0.1:7002" /* block */' '}' '# after' 'workers = 0'
	check_fails "$CONF:8: workers"
	conf 'listen = {' '  # the public one' '  "127.0.0.1:7001",  # trailing' '  "127.0.0.1:7002"' '}' \
		'log_file = "/tmp/#not-a-comment"' "pid_file = 'x#y'"
	run --separate-stderr "$SD_BIN" -T -c "$CONF"
	assert_success
	assert_line 'listen = {"127.0.0.1:7001", "127.0.0.1:7002"}'
	assert_line 'log_file = "/tmp/#not-a-comment"'
	assert_line 'pid_file = "x#y"'
}

teardown() {
	sd_stop
}
