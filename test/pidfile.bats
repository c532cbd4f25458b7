#!/usr/bin/env bats
# The pid file: written at start and removed at exit, a stale one replaced, a
# live one refused, locked by the master for its life, never written through
# a symbolic link; what -t and start-up refuse for pid_file; -s finding the
# master through it; a pid file that cannot be written when detaching.

load helpers/common
load helpers/configcheck

teardown() {
	sd_stop
}

# try_lock FILE: take (and drop) a write lock on FILE; fails while another process holds one.
try_lock() {
	python3 -c '
import fcntl, sys
fcntl.lockf(open(sys.argv[1], "r+"), fcntl.LOCK_EX | fcntl.LOCK_NB)' "$1"
}

# stopped_clean PID: the master (PID, or its job) goes with all its workers and exits 0.
stopped_clean() {
	local rc=0
	wait_for -t 15 _sd_all_gone "$1"
	wait "$SD_JOB" || rc=$?
	SD_JOB=
	assert_equal "$rc" 0
}

# --- the running master and -s ---

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
	stopped_clean "$SD_PID"
	[ ! -e "$pidf" ]
}

@test "-s with no running master fails" {
	local pidf=$BATS_TEST_TMPDIR/none.pid
	printf 'pid_file = "%s"\n' "$pidf" >"$BATS_TEST_TMPDIR/c.conf"
	run timeout 20 "$SD_BIN" -c "$BATS_TEST_TMPDIR/c.conf" -s reload
	assert_failure
}

@test "pid_file: written at start, removed at exit; a stale one replaced; a live one refused with exit 1" {
	local pidf=$BATS_TEST_TMPDIR/submitd.pid
	# A stale file: a pid that is not running.
	python3 -c 'import os; print(os.getpid())' >"$pidf"
	local dead
	dead=$(cat "$pidf")
	run ! kill -0 "$dead"
	sd_start "pid_file = \"$pidf\""
	assert_equal "$(cat "$pidf")" "$SD_PID"
	# A second instance with the same pid_file: refused, exit 1, the first untouched.
	local conf2=$BATS_TEST_TMPDIR/second.conf
	sed "s|$BATS_TEST_TMPDIR/submitd.log|$BATS_TEST_TMPDIR/second.log|" "$SD_CONF" >"$conf2"
	run --separate-stderr timeout 20 "$SD_BIN" -f -c "$conf2"
	echo "second instance: status $status, log: $(cat "$BATS_TEST_TMPDIR/second.log")"
	assert_equal "$status" 1
	grep -q "another submitd is running (pid $SD_PID" "$BATS_TEST_TMPDIR/second.log"
	assert_equal "$(cat "$pidf")" "$SD_PID"
	run sd_client roundtrip
	assert_success
	# Stop: the file goes with the master.
	kill -TERM "$SD_PID"
	stopped_clean "$SD_JOB"
	[ ! -e "$pidf" ]
}

@test "pid file: a stale one naming a live process neither blocks start nor gets -s signals" {
	local pidf=$BATS_TEST_TMPDIR/submitd.pid
	sd_spawn /dev/null sleep 300
	local sleeper=$SD_SPAWNED
	echo "$sleeper" >"$pidf"
	SD_CONF=$(sd_config "pid_file = \"$pidf\"")
	# No master holds the file: -s refuses, the sleeper gets nothing.
	for sig in stop quit reload; do
		run --separate-stderr timeout 20 "$SD_BIN" -c "$SD_CONF" -s $sig
		assert_failure
		[[ $stderr == *"no submitd is running"* ]]
	done
	kill -0 "$sleeper"
	assert_equal "$(awk '{ print $3 }' "/proc/$sleeper/stat")" S

	sd_start_conf "$SD_CONF"
	assert_equal "$(cat "$pidf")" "$SD_PID"
	# The master holds a lock on it for its life, across the forks of a reload.
	run try_lock "$pidf"
	assert_failure
	run timeout 30 "$SD_BIN" -c "$SD_CONF" -s reload
	assert_success
	run try_lock "$pidf"
	assert_failure
	run timeout 20 "$SD_BIN" -c "$SD_CONF" -s stop
	assert_success
	stopped_clean "$SD_PID"
	kill -0 "$sleeper"
	[ ! -e "$pidf" ]
}

@test "pid file: a symlink at the temporary name, old or current, is not written through" {
	local pidf=$BATS_TEST_TMPDIR/submitd.pid victim=$BATS_TEST_TMPDIR/victim
	echo precious >"$victim"
	ln -s "$victim" "$pidf.tmp"
	sd_start "pid_file = \"$pidf\""
	assert_equal "$(cat "$pidf")" "$SD_PID"
	[ ! -L "$pidf" ]
	assert_equal "$(cat "$victim")" precious
	sd_stop
	# At the name the master uses now, FILE.PID.tmp: a shell that puts the
	# link there and becomes the master keeps its pid.
	rm -f "$pidf.tmp"
	SD_CONF=$(sd_config "pid_file = \"$pidf\"")
	: >"$BATS_TEST_TMPDIR/submitd.log"
	bash -c 'ln -s "$1" "$2.$$.tmp" && exec "$3" -f -c "$4"' sh "$victim" "$pidf" "$SD_BIN" "$SD_CONF" \
		>"$BATS_TEST_TMPDIR/submitd.out" 2>&1 3>&- 4>&- &
	SD_JOB=$!
	SD_PID=$SD_JOB
	wait_for -t 10 _sd_ready
	assert_equal "$(cat "$pidf")" "$SD_PID"
	[ ! -L "$pidf" ]
	[ ! -e "$pidf.$SD_PID.tmp" ]
	assert_equal "$(cat "$victim")" precious
}

@test "without -f: a pid file that cannot be written exits non-zero, before binding or after detaching" {
	local conf
	# A missing directory for the pid file: refused before binding, as -t refuses it.
	conf=$(sd_config "pid_file = \"$BATS_TEST_TMPDIR/no/such/dir/submitd.pid\"")
	: >"$BATS_TEST_TMPDIR/submitd.log"
	run --separate-stderr timeout 20 "$SD_BIN" -c "$conf"
	echo "status $status, stderr: $stderr"
	assert_equal "$status" 1
	[[ $stderr == *"no/such/dir/submitd.pid"*"No such file or directory"* ]]
	run sd_log_count "listening on"
	assert_output 0

	# Fails in the detached child, after binding: a file system with no
	# inode left for the pid file, which -t cannot foresee. Told through the pipe.
	needs_root
	command -v unshare >/dev/null || skip "no unshare"
	unshare -m true 2>/dev/null || skip "no mount namespace here (a chroot)"
	mkdir "$BATS_TEST_TMPDIR/full"
	conf=$(sd_config "pid_file = \"$BATS_TEST_TMPDIR/full/submitd.pid\"")
	: >"$BATS_TEST_TMPDIR/submitd.log"
	run --separate-stderr timeout 20 unshare -m sh -c '
		mount -t tmpfs -o size=64k,nr_inodes=4 none "$1" || exit 99
		i=0
		while [ $i -lt 10 ] && touch "$1/fill$i" 2>/dev/null; do i=$((i + 1)); done
		[ $i -lt 10 ] || exit 98
		"$2" -t -q -c "$3" || exit 97
		exec "$2" -c "$3"' sh "$BATS_TEST_TMPDIR/full" "$SD_BIN" "$conf"
	echo "status $status, stderr: $stderr"
	[ "$status" -ne 99 ] || skip "cannot mount a tmpfs here"
	assert_equal "$status" 1
	[[ $stderr == *"pid file $BATS_TEST_TMPDIR/full/submitd.pid."*".tmp: No space left on device"* ]]
	# It had bound its ports; nothing is left serving.
	read_ports
	wait_for port_free "$SD_PORT"
	wait_for port_free "$SD_METRICS_PORT"
}

# --- what -t and start-up refuse ---

@test "pid_file in a directory that is not there yet (/run/submitd while stopped): -t exit 0 and creates nothing, start-up makes it 0755" {
	local run=$BATS_TEST_TMPDIR/run/submitd
	mkdir "$BATS_TEST_TMPDIR/run"
	conf 'listen = {"127.0.0.1:0"}' 'metrics_listen = ""' 'workers = 1' "pid_file = \"$run/submitd.pid\""
	run --separate-stderr "$SD_BIN" -t -c "$CONF"
	echo "stderr: $stderr"
	assert_success
	[[ $output == *"test is successful"* ]]
	[ ! -e "$run" ]
	# A start by hand: the master makes the directory and writes the pid file.
	sd_start_conf "$CONF"
	wait_for test -s "$run/submitd.pid"
	assert_equal "$(cat "$run/submitd.pid")" "$SD_PID"
	assert_equal "$(stat -c %a "$run")" 755
	run sd_client roundtrip
	assert_success
	sd_stop
	[ ! -e "$run/submitd.pid" ]
}

@test "pid_file start-up still refuses: two missing components, a parent that is a file (exit 1, nothing left running)" {
	: >"$BATS_TEST_TMPDIR/afile"
	local p
	for p in "$BATS_TEST_TMPDIR/no/such/submitd.pid" "$BATS_TEST_TMPDIR/afile/d/submitd.pid"; do
		conf 'listen = {"127.0.0.1:0"}' 'metrics_listen = ""' 'workers = 1' "pid_file = \"$p\""
		run --separate-stderr timeout 20 "$SD_BIN" -f -c "$CONF"
		echo "status $status, stderr: $stderr"
		assert_equal "$status" 1
		[[ $stderr == *"pid_file \"$p\": "* ]]
		[ ! -e "${p%/submitd.pid}" ]
	done
	# Past -t: the directory is made, the pid file cannot be written there.
	run --separate-stderr timeout 20 unshare -m true
	[ "$status" -eq 0 ] || skip "no mount namespace here (a chroot)"
	mkdir "$BATS_TEST_TMPDIR/ro"
	conf 'listen = {"127.0.0.1:0"}' 'metrics_listen = ""' 'workers = 1' "pid_file = \"$BATS_TEST_TMPDIR/ro/d/submitd.pid\""
	run --separate-stderr timeout 20 unshare -m sh -c 'mount -t tmpfs -o size=64k,nr_inodes=2 none "$1" || exit 99; exec "$2" -f -c "$3"' sh "$BATS_TEST_TMPDIR/ro" "$SD_BIN" "$CONF"
	echo "status $status, stderr: $stderr"
	assert_equal "$status" 1
	[[ $stderr == *"pid file $BATS_TEST_TMPDIR/ro/d/submitd.pid"* ]]
}

@test "-t: pid_file in a missing directory, or under a file" {
	# pid_file's directory may lack its last component (start-up makes it), not more.
	conf "pid_file = \"$BATS_TEST_TMPDIR/missing/deeper/submitd.pid\""
	check_fails "$CONF: pid_file \"$BATS_TEST_TMPDIR/missing/deeper/submitd.pid\": directory $BATS_TEST_TMPDIR/missing/deeper: No such file or directory"
	: >"$BATS_TEST_TMPDIR/afile"
	conf "pid_file = \"$BATS_TEST_TMPDIR/afile/submitd.pid\""
	check_fails "$CONF: pid_file \"$BATS_TEST_TMPDIR/afile/submitd.pid\": "
	# The same file is fine where it can be written.
	conf "log_file = \"$BATS_TEST_TMPDIR/submitd.log\"" "pid_file = \"$BATS_TEST_TMPDIR/submitd.pid\""
	run "$SD_BIN" -t -c "$CONF"
	assert_success
}

@test "-t: a pid_file that is a directory, or a symbolic link; start-up refuses a directory too" {
	mkdir "$BATS_TEST_TMPDIR/d"
	conf "pid_file = \"$BATS_TEST_TMPDIR/d\""
	check_fails "$CONF: pid_file \"$BATS_TEST_TMPDIR/d\": is a directory"
	# Start-up refuses it as well, with nothing left running.
	conf 'listen = {"127.0.0.1:0"}' 'metrics_listen = ""' 'workers = 1' "pid_file = \"$BATS_TEST_TMPDIR/d\""
	run --separate-stderr timeout 10 "$SD_BIN" -f -c "$CONF"
	assert_equal "$status" 1
	[[ $stderr == *"pid_file \"$BATS_TEST_TMPDIR/d\": is a directory"* ]]
	# A link, dangling or not: the pid file is never written through one.
	echo precious >"$BATS_TEST_TMPDIR/victim"
	local target
	for target in "$BATS_TEST_TMPDIR/victim" "$BATS_TEST_TMPDIR/nowhere"; do
		ln -sfn "$target" "$BATS_TEST_TMPDIR/link.pid"
		conf "pid_file = \"$BATS_TEST_TMPDIR/link.pid\""
		check_fails "$CONF: pid_file \"$BATS_TEST_TMPDIR/link.pid\": is a symbolic link"
	done
	assert_equal "$(cat "$BATS_TEST_TMPDIR/victim")" precious
}

@test "-t: a pid_file directory that cannot be written (not root)" {
	[ "$(id -u)" != 0 ] || skip "root writes anywhere"
	mkdir -m 0555 "$BATS_TEST_TMPDIR/ro"
	conf "pid_file = \"$BATS_TEST_TMPDIR/ro/submitd.pid\""
	check_fails "directory $BATS_TEST_TMPDIR/ro: Permission denied"
}
