#!/usr/bin/env bats
# Several listen addresses, IPv6 among them: every one is served by the
# workers. Listener churn: reloads that add and remove addresses faster than
# the new generations become ready, and while one cannot become ready.

load helpers/common
load helpers/forks

teardown() {
	sd_stop
	forks_release
}

# listen_port HOST: the port the log says HOST listens on ("[::1]" for IPv6).
listen_port() {
	sd_log | sed -n "s/.*listening on $1:\([0-9][0-9]*\)\$/\1/p" | head -1
}

@test "three listeners, 127.0.0.1, 127.0.0.2 and [::1]: each accepts, and both workers serve them" {
	python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null ||
		skip "no IPv6 loopback (::1) here"
	sd_start 'listen = {"127.0.0.1:0", "127.0.0.2:0", "[::1]:0"}' 'workers = 2'
	local p2 p6 host port t=$BATS_TEST_TMPDIR
	p2=$(listen_port '127\.0\.0\.2')
	p6=$(listen_port '\[::1\]')
	echo "ports: 127.0.0.1:$SD_PORT 127.0.0.2:$p2 [::1]:$p6"
	[ -n "$p2" ]
	[ -n "$p6" ]
	# Listening where the log says, as TCP over IPv6 for ::1.
	run ss -Hltn "sport = :$p6"
	assert_output --partial "[::1]:$p6"
	for host in 127.0.0.1:$SD_PORT 127.0.0.2:$p2 ::1:$p6; do
		port=${host##*:}
		host=${host%:*}
		run $SD_CLIENT --host "$host" --port "$port" pipeline 1000 --mixed
		assert_success
		# 20 connections held open on each address at once.
		sd_spawn "$t/hold.$port" $SD_CLIENT --host "$host" --port "$port" hold 20 --verify --hold 120
	done
	for port in "$SD_PORT" "$p2" "$p6"; do
		wait_for -t 15 grep -q "connected 20" "$t/hold.$port"
	done
	wait_for sd_metric_is submitd_client_connected '' 60
	run sd_metric submitd_req_recv_total
	assert_output $((3 * 1000 + 60))
	run sd_metric submitd_rsp_send_total
	assert_output $((3 * 1000 + 60))
	local w c
	for w in 0 1; do
		c=$(sd_metric submitd_client_connected "{worker=\"$w\"}")
		echo "worker $w holds $c"
		[ "$c" -gt 0 ]
	done
	# IPv6 only on [::1]: the IPv4 loopback on that port is not served.
	run $SD_CLIENT --port "$p6" roundtrip
	assert_failure
}

# --- listener changes faster than generations become ready ---

# free_ports N: N ports nothing listens on now (the kernel's picks, released).
free_ports() {
	python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$1"
}

# listen_line PORT...: a listen option with these ports on 127.0.0.1.
listen_line() {
	local p out=""
	for p in "$@"; do
		out+="${out:+, }\"127.0.0.1:$p\""
	done
	echo "listen = {$out}"
}

# accepts PORT: a round trip on PORT works.
accepts() {
	$SD_CLIENT --port "$1" --timeout 2 roundtrip >/dev/null 2>&1
}

# churn_setup NSETS: config files set0..set(NSETS-1).conf of 16 addresses
# each that share one stable port (SD_PORT); submitd started on set 0 with
# live.conf, and 20 connections of load on the stable port (SD_BENCH_PID).
churn_setup() {
	local nsets=$1 s
	read -ra CHURN_PORTS <<<"$(free_ports $((1 + 15 * nsets)))"
	CHURN_SETS=$nsets
	for ((s = 0; s < nsets; s++)); do
		{
			listen_line "${CHURN_PORTS[0]}" "${CHURN_PORTS[@]:$((1 + 15 * s)):15}"
			grep -v '^listen' "$(sd_config 'workers = 2' 'shutdown_timeout = 2')"
		} >"$BATS_TEST_TMPDIR/set$s.conf"
	done
	cp "$BATS_TEST_TMPDIR/set0.conf" "$BATS_TEST_TMPDIR/live.conf"
	sd_start_conf "$BATS_TEST_TMPDIR/live.conf"
	assert_equal "$SD_PORT" "${CHURN_PORTS[0]}"
	CHURN_OUT=$BATS_TEST_TMPDIR/bench.json
	sd_bench "$CHURN_OUT" -c 20 --reconnect -d 8
	wait_for eval '[ "$(sd_metric submitd_client_connected)" -ge 20 ]'
	CHURN_FDS0=$(ls "/proc/$SD_PID/fd" | wc -l)
}

# use_set N: make set N the file's content (atomically: the master may read it any time).
use_set() {
	cp "$BATS_TEST_TMPDIR/set$1.conf" "$SD_CONF.new"
	mv "$SD_CONF.new" "$SD_CONF"
}

# our_ports: the ports the master and its workers listen on, sorted, metrics excluded.
our_ports() {
	local pids
	pids=$(echo "$SD_PID" $(sd_workers) | tr ' ' '|')
	ss -Hltnp | grep -E "pid=($pids)," | awk '{ n = split($4, a, ":"); print a[n] }' |
		grep -vx "$SD_METRICS_PORT" | sort -u
}

# same_ports WANT: our_ports is exactly the newline-separated, sorted WANT.
same_ports() {
	[ "$(our_ports)" = "$1" ]
}

# serves_only N: the master and its workers listen on the ports of set N (and
# the stable one) and on nothing else of ours; every one of them answers. Ports
# of the other sets are not probed by connecting: once released, another
# program on the machine may bind them.
serves_only() {
	local want p
	want=$(printf '%s\n' "${CHURN_PORTS[0]}" "${CHURN_PORTS[@]:$((1 + 15 * $1)):15}" | sort -u)
	wait_for same_ports "$want" || {
		echo "listening: $(our_ports | tr '\n' ' ')"
		echo "want:      $(echo $want)"
		return 1
	}
	for p in $want; do
		accepts "$p" || {
			echo "port $p of set $1 does not serve"
			return 1
		}
	done
}

# churn_end: the load saw no error on the stable port, the master holds no
# more descriptors than before, the sanitizer (if any) found nothing.
churn_end() {
	sd_bench_wait "$SD_BENCH_PID" "$CHURN_OUT" 40
	assert_equal "$(sd_bench_field errors)" 0
	assert_equal "$(sd_bench_field connect_errors)" 0
	[ "$(sd_bench_field acked)" -gt 0 ]
	[ "$(ls "/proc/$SD_PID/fd" | wc -l)" -le "$((CHURN_FDS0 + 2))" ]
	run grep -c "AddressSanitizer\|runtime error" "$BATS_TEST_TMPDIR/submitd.out"
	assert_output 0
}

# listener_churn NSETS RELOADS: RELOADS SIGHUPs 50 ms apart, cycling through
# NSETS sets, under load on the stable address.
listener_churn() {
	local nsets=$1 reloads=$2 i fds maxfds=0
	churn_setup "$nsets"
	for ((i = 1; i <= reloads; i++)); do
		use_set $((i % nsets))
		kill -HUP "$SD_PID"
		sleep 0.05
		fds=$(ls "/proc/$SD_PID/fd" | wc -l)
		((fds > maxfds)) && maxfds=$fds
	done
	kill -0 "$SD_PID"
	echo "# master fds: $CHURN_FDS0 before, at most $maxfds during the reloads" >&3
	echo "# applied $(sd_log_count 'reload: configuration .* applied'), failed $(sd_log_count 'reload failed' || true), pending refusals $(sd_log_count "change is still pending" || true)" >&3
	# Every set is 16 sockets; bound what the master holds at any time: its
	# own few, the current set and at most one set waiting to close.
	((maxfds <= CHURN_FDS0 + 16 + 4))
	# A reload refused while a change was pending, or a port an old worker
	# still held, leaves the file ahead of the master: one more settles it.
	wait_for -t 20 sd_metric_is submitd_generations '' 1
	if ! sd_metric_is submitd_config_last_reload_successful '' 1; then
		kill -HUP "$SD_PID"
		wait_for -t 20 sd_metric_is submitd_config_last_reload_successful '' 1
	fi
	wait_for -t 20 sd_metric_is submitd_generations '' 1
	serves_only $((reloads % nsets))
	churn_end
}

@test "30 reloads 50 ms apart alternating two sets of 16 listen addresses, under load" {
	listener_churn 2 30
	# Alternating sets reuse the sockets still waiting to close: none refused.
	run sd_log_count "change is still pending"
	assert_output 0
}

@test "30 reloads 50 ms apart cycling three sets of 16 listen addresses, under load" {
	listener_churn 3 30
}

@test "the listener churn under the ASan build" {
	[ -x "$SD_ROOT/build/asan/submitd" ] || skip "build/asan/submitd not built (make build/asan/submitd)"
	SD_BIN=$SD_ROOT/build/asan/submitd
	# Workers leave with exit() and keep their pools: leak reports would be noise.
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
	listener_churn 2 30
	sd_stop
	SD_BIN=$SD_ROOT/build/asan/submitd
	listener_churn 3 30
}

@test "listener changes while a generation cannot become ready: past the bound refused, a change back reuses the waiting sockets" {
	churn_setup 3
	hold_forks "$SD_PID" || skip "no writable pids cgroup (v1) to hold the workers back"
	# Set 1: bound, but its workers cannot fork; set 0's sockets wait to close.
	use_set 1
	kill -HUP "$SD_PID"
	wait_for sd_log_count "generation 2 starting"
	wait_for sd_log_count "fork worker"
	# Set 2 would leave sets 0 and 1 (30 sockets) waiting: refused, gauge 0.
	use_set 2
	kill -HUP "$SD_PID"
	wait_for sd_log_count "change is still pending"
	wait_for sd_metric_is submitd_config_last_reload_successful '' 0
	kill -0 "$SD_PID"
	run sd_log_count "generation 3 starting"
	assert_output 0
	# Back to set 0: its sockets are taken back, not bound again.
	use_set 0
	kill -HUP "$SD_PID"
	wait_for sd_log_count "generation 3 starting"
	echo max >"$PIDS_CG/pids.max"
	# The failed forks are retried after at most 5 s.
	wait_for -t 20 sd_metric_is submitd_generations '' 1
	wait_for sd_metric_is submitd_config_last_reload_successful '' 1
	serves_only 0
	churn_end
}
