#!/usr/bin/env bats
# The process around the server: PID 1 in a container, workers that must
# not outlive the master, detaching with a true exit status, the connection
# table's size, process titles. The pid file is in pidfile.bats; the reload
# asker held by pidfd and the descriptors a new worker inherits in reload.bats.

load helpers/common

# DAEMON_PID: processes of ours that sd_stop does not know (a detached
# daemon, orphaned workers), killed if still running this binary.
teardown() {
	sd_stop
	local p
	for p in ${DAEMON_PID:-}; do
		[ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$SD_BIN")" ] &&
			kill -KILL "$p" 2>/dev/null || true
	done
	[ -z "${DAEMON_PID:-}" ] || wait_for -t 10 _sd_all_gone $DAEMON_PID || true
}

# cmdline PID: /proc/PID/cmdline, NULs as spaces, trailing ones dropped.
cmdline() {
	tr '\0' ' ' <"/proc/$1/cmdline" | sed 's/ *$//'
}

# the_orphan MASTER: the pid of the master's child named sleep.
the_orphan() {
	local p
	for p in $(pgrep -P "$1"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = sleep ] && echo "$p" && return 0
	done
	return 1
}

@test "as PID 1 (unshare -pf): ready, answers, and reaps an orphan re-parented to it" {
	needs_root
	command -v unshare >/dev/null && command -v nsenter >/dev/null || skip "no unshare/nsenter"
	timeout 10 unshare -pf --mount-proc true 2>/dev/null || skip "cannot create a PID namespace here"
	SD_CONF=$(sd_config 'workers = 2')
	: >"$BATS_TEST_TMPDIR/submitd.log"
	timeout 120 unshare -pf --mount-proc "$SD_BIN" -f -c "$SD_CONF" \
		>"$BATS_TEST_TMPDIR/submitd.out" 2>&1 3>&- 4>&- &
	SD_JOB=$!
	wait_for -t 10 _sd_ready || {
		sd_log
		false
	}
	# timeout, then unshare, then submitd: PID 1 of its namespace.
	SD_PID=$(pgrep -P "$(pgrep -P "$SD_JOB")")
	assert_equal "$(awk '/^NSpid:/ { print $NF }' "/proc/$SD_PID/status")" 1
	read_ports
	run sd_client roundtrip
	assert_success
	assert_equal "$(sd_workers | wc -l)" 2
	run sd_metric submitd_worker_restarts_total
	assert_output 0

	# sh exits at once: its sleep is re-parented to the namespace's init, the master.
	nsenter -t "$SD_PID" -p sh -c 'sleep 300 </dev/null >/dev/null 2>&1 & exit 0'
	wait_for the_orphan "$SD_PID"
	local orphan
	orphan=$(the_orphan "$SD_PID")
	kill -TERM "$orphan"
	# Reaped, not left a zombie: /proc/PID goes only with the wait.
	wait_for -t 10 test ! -e "/proc/$orphan"
	run sd_client roundtrip
	assert_success
	assert_equal "$(sd_workers | wc -l)" 2
	run sd_metric submitd_worker_restarts_total
	assert_output 0
}

@test "user = nobody: after kill -9 of the master every worker is gone within 5 s and the port is free" {
	needs_root
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	sd_start 'user = "nobody"' 'workers = 3'
	local workers
	workers=$(sd_workers)
	assert_equal "$(echo "$workers" | wc -l)" 3
	[ "$(ps -o user= -p "$(echo "$workers" | head -1)")" = nobody ]
	DAEMON_PID=$workers
	kill -KILL "$SD_PID"
	wait_for -t 5 _sd_all_gone $workers
	port_free "$SD_PORT"
	port_free "$SD_METRICS_PORT"
	wait "$SD_JOB" 2>/dev/null || true
	SD_JOB= SD_PID=
}

@test "without -f: a port in use exits non-zero with the bind message, no pid file left" {
	local held=$BATS_TEST_TMPDIR/held
	sd_spawn "$held" python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
time.sleep(120)'
	wait_for test -s "$held"
	local port pidf=$BATS_TEST_TMPDIR/submitd.pid
	port=$(cat "$held")
	local conf
	conf=$(sd_config "listen = {\"127.0.0.1:$port\"}" "pid_file = \"$pidf\"")
	run --separate-stderr timeout 20 "$SD_BIN" -c "$conf"
	echo "status $status, stderr: $stderr"
	assert_equal "$status" 1
	[[ $stderr == *"bind 127.0.0.1:$port: Address already in use"* ]]
	[ ! -e "$pidf" ]
}

@test "without -f: exit 0 once serving; the daemon works from /, in its own session; -s stop ends it" {
	local pidf=$BATS_TEST_TMPDIR/submitd.pid conf
	conf=$(sd_config "pid_file = \"$pidf\"" 'workers = 2')
	: >"$BATS_TEST_TMPDIR/submitd.log"
	run --separate-stderr timeout 20 "$SD_BIN" -c "$conf"
	echo "status $status, stderr: $stderr"
	assert_success
	# The pid file is there when the parent exits.
	DAEMON_PID=$(cat "$pidf")
	kill -0 "$DAEMON_PID"
	assert_equal "$(readlink "/proc/$DAEMON_PID/cwd")" /
	assert_equal "$(readlink "/proc/$DAEMON_PID/fd/0")" /dev/null
	assert_equal "$(ps -o sid= -p "$DAEMON_PID" | tr -d ' ')" "$DAEMON_PID"
	read_ports
	run sd_client roundtrip
	assert_success
	run timeout 20 "$SD_BIN" -c "$conf" -s stop
	assert_success
	wait_for -t 15 _sd_all_gone "$DAEMON_PID"
	[ ! -e "$pidf" ]
	wait_for port_free "$SD_PORT"
}

@test "the connection table is sized by max_connections, not by the open files limit" {
	local hard
	hard=$(ulimit -Hn)
	[ "$hard" != unlimited ] || hard=1048576
	[ "$hard" -ge 16384 ] || skip "open files hard limit $hard: too small to tell"
	# The master raises its soft limit to the hard one; the table was 8 bytes per file.
	sd_start 'workers = 1' 'max_connections = 100'
	local w small
	w=$(sd_workers)
	awk '/^Max open files/ { print; exit ($4 < 16384) }' "/proc/$w/limits"
	small=$(sd_metric submitd_worker_allocated_bytes)
	echo "allocated with max_connections = 100: $small bytes"
	[ "$small" -lt 16384 ]
	run sd_client roundtrip
	assert_success
	sd_stop
	# Proportional to max_connections: 10000 slots are about 80 KB.
	sd_start 'workers = 1' 'max_connections = 10000'
	local big
	big=$(sd_metric submitd_worker_allocated_bytes)
	echo "allocated with max_connections = 10000: $big bytes"
	[ "$big" -ge $((small + 9900 * 8)) ]
}

@test "process titles: master, workers with their generation, a draining worker" {
	sd_start 'workers = 2' 'shutdown_timeout = 60'
	assert_equal "$(cmdline "$SD_PID")" "submitd: master"
	local w labels=
	for w in $(sd_workers); do
		run cmdline "$w"
		assert_output --regexp '^submitd: worker [01] \(generation 1\)$'
		labels+="${output:16:1}"
		assert_equal "$(cat "/proc/$w/comm")" "submitd-w${output:16:1}"
	done
	[[ $labels == 01 || $labels == 10 ]]
	run ps -o args= -p "$SD_PID"
	assert_output "submitd: master"

	# A connection with half a frame keeps its worker draining after the reload.
	sd_stuck_client "$BATS_TEST_TMPDIR/held"
	wait_for sd_metric_is submitd_client_connected '' 1
	local old
	old=$(sd_workers | paste -sd' ')
	kill -HUP "$SD_PID"
	wait_for -t 15 eval '[ "$(grep -c "ready: 2 workers running" "$BATS_TEST_TMPDIR/submitd.log")" -eq 2 ]'
	# The worker without a connection exits; the other one drains, and says so.
	wait_for -t 10 eval '[ "$(for p in '"$old"'; do [ -e /proc/$p ] && echo $p; done | wc -l)" -eq 1 ]'
	local draining
	draining=$(for p in $old; do if [ -e "/proc/$p" ]; then echo "$p"; fi; done)
	run cmdline "$draining"
	assert_output --regexp '^submitd: worker [01] \(generation 1, draining\)$'
	for w in $(sd_workers); do
		[ "$w" = "$draining" ] && continue
		run cmdline "$w"
		assert_output --regexp '^submitd: worker [01] \(generation 2\)$'
	done
}
