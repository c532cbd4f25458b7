#!/usr/bin/env bats
# Privilege drop: started as root with user = "nobody", the master stays
# root (it binds, reloads and reopens), every worker runs as nobody with
# nobody's groups, across respawns, reloads and log reopening.

load helpers/common

setup() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	NOBODY_UID=$(id -u nobody)
	NOBODY_GID=$(id -g nobody)
	# The workers reopen the log themselves: its directory must be theirs to
	# traverse, which the bats temporary directory (mode 700) is not.
	LOG_DIR=$(mktemp -d /tmp/submitd-priv.XXXXXX)
	chmod 755 "$LOG_DIR"
}

teardown() {
	sd_stop
	[ -z "${LOG_DIR:-}" ] || rm -rf "$LOG_DIR"
}

# workers_are_nobody: every worker's real, effective, saved and file-system
# ids are nobody's, its groups nobody's only; the master is root.
workers_are_nobody() {
	local p n=0
	[ "$(ps -o uid= -p "$SD_PID" | tr -d ' ')" = 0 ] || return 1
	for p in $(sd_workers); do
		[ "$(ps -o uid= -p "$p" | tr -d ' ')" = "$NOBODY_UID" ] || return 1
		awk -v u="$NOBODY_UID" -v g="$NOBODY_GID" '
			/^Uid:/ { ok += ($2 == u && $3 == u && $4 == u && $5 == u) }
			/^Gid:/ { ok += ($2 == g && $3 == g && $4 == g && $5 == g) }
			/^Groups:/ { ok += (NF == 2 && $2 == g) }
			END { exit ok != 3 }' "/proc/$p/status" || return 1
		n=$((n + 1))
	done
	[ "$n" -gt 0 ]
}

@test "user = nobody: workers run as nobody, the master stays root; also after respawn and reload" {
	sd_start 'user = "nobody"' 'workers = 2'
	local out=$BATS_TEST_TMPDIR/bench.json
	sd_bench "$out" -c 50 --reconnect -d 5 --drain 1
	local bench=$SD_BENCH_PID
	run ps -o pid=,uid=,user= -p "$SD_PID,$(sd_workers | paste -sd,)"
	echo "$output"
	workers_are_nobody
	# A respawned worker drops its privileges too.
	local victim label held
	wait_for sd_metric_is submitd_client_connected '' 50
	victim=$(sd_workers | head -1)
	label=$(sd_worker_label "$victim")
	held=$(sd_metric submitd_client_connected "{worker=\"$label\"}")
	[ "$held" -gt 0 ]
	kill -KILL "$victim"
	wait_for -t 10 eval '! sd_workers | grep -qx "$victim" && [ "$(sd_workers | wc -l)" -eq 2 ]'
	wait_for sd_metric_is submitd_workers '{state="running"}' 2
	workers_are_nobody
	# So does a new generation, and a reload that changes user is refused for that option.
	sed -i 's/^workers = 2$/workers = 3/; s/^user = "nobody"$/user = "root"/' "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "user and pid_file take effect only after a restart"
	wait_for -t 15 eval '[ "$(sd_workers | wc -l)" -eq 3 ] && sd_metric_is submitd_generations "" 1'
	workers_are_nobody
	sd_bench_wait "$bench" "$out" 30
	[ "$(sd_bench_field acked)" -gt 0 ]
	# Only the killed worker's connections may have failed; the reload's
	# drain closes between acks, which --reconnect does not count.
	echo "the killed worker held $held of 50 connections; bench errors $(sd_bench_field errors)"
	[ "$(sd_bench_field errors)" -le "$held" ]
	assert_equal "$(sd_bench_field connect_errors)" 0
}

@test "user = nobody: SIGUSR1 after mv log log.1: master and running workers write to the new file" {
	local log=$LOG_DIR/submitd.log
	# sd_start and sd_log read the log at its usual place.
	ln -s "$log" "$BATS_TEST_TMPDIR/submitd.log"
	sd_start 'user = "nobody"' 'workers = 2' "log_file = \"$log\""
	workers_are_nobody
	mv "$log" "$log.1"
	sd_log_moved_check "$log"
}
