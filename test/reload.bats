#!/usr/bin/env bats
# Reload (SIGHUP, `submitd -s reload`): under load, generations, listen and
# worker changes, a bad config (a syntax error, a file that is not readable
# text), the asker of -s reload held by pidfd, the descriptors the new
# workers hold. Load comes from submit-bench --reconnect, which reconnects
# after a close between two acks and counts as an error anything else: a
# refused connect, a reset, a wrong or half ack. Listener churn is in
# listeners.bats.

load helpers/common
load helpers/forks

teardown() {
	sd_stop
	forks_release
}

# reload_ts: the time of the last successful reload, as /metrics has it (ms).
reload_ts() {
	sd_metric submitd_config_last_reload_success_timestamp_seconds
}

@test "20 SIGHUPs in a row under load: each applied, no client error, counters monotonic, every request acked" {
	sd_start 'workers = 2' 'shutdown_timeout = 5'
	sd_sample_metrics "$BATS_TEST_TMPDIR/scrapes"
	local out=$BATS_TEST_TMPDIR/bench.json
	sd_bench "$out" -c 50 --reconnect -d 20
	local bench=$SD_BENCH_PID i ts start=$EPOCHREALTIME
	# Load is flowing before the first reload.
	wait_for eval '[ "$(sd_metric submitd_client_connected)" -ge 50 ]'
	# Each SIGHUP once the previous one was applied: signals sent closer
	# together may merge into one (bench/thresholds.bats sends them 0.5 s
	# apart and counts).
	for i in $(seq 1 20); do
		ts=$(reload_ts)
		kill -HUP "$SD_PID"
		wait_for -t 15 eval '[ "$(reload_ts)" != "$ts" ]'
	done
	echo "20 reloads applied in $(_sd_elapsed_ms "$start") ms"
	# Still under load when the last one was applied.
	run _sd_all_gone "$bench"
	assert_failure
	sd_bench_wait "$bench" "$out" 40
	assert_equal "$(sd_bench_field errors)" 0
	assert_equal "$(sd_bench_field connect_errors)" 0
	assert_equal "$(sd_bench_field unacked)" 0
	[ "$(sd_bench_field acked)" -gt 0 ]
	# Every reload drained an old generation: the clients saw closes and came back.
	echo "reconnects $(sd_bench_field reconnects), lost $(sd_bench_field lost)"
	[ "$(sd_bench_field reconnects)" -gt 0 ]
	run sd_log_count "reload: configuration $SD_CONF applied"
	assert_output 20
	# The last generation serves alone once the old ones drained.
	wait_for -t 20 sd_metric_is submitd_generations '' 1
	wait_for sd_metric_is submitd_draining_connections '' 0
	sd_kill_spawned
	run sd_check_monotonic "$BATS_TEST_TMPDIR/scrapes"
	echo "$output"
	assert_success
	local recv sent
	recv=$(sd_metric submitd_req_recv_total)
	sent=$(sd_metric submitd_rsp_send_total)
	echo "req_recv_total $recv, rsp_send_total $sent, bench acked $(sd_bench_field acked)"
	assert_equal "$recv" "$sent"
	# The server acked exactly what the clients saw acked: nothing read was dropped.
	assert_equal "$recv" "$(sd_bench_field acked)"
}

# free_port: a port nothing listens on now (the kernel's pick, released).
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# running_workers N: the master has N children and all of them serve.
running_workers() {
	[ "$(sd_workers | wc -l)" -eq "$1" ] && sd_metric_is submitd_workers '{state="running"}' "$1" &&
		sd_metric_is submitd_workers '{state="configured"}' "$1" &&
		sd_metric_is submitd_generations '' 1
}

@test "reload changes workers 2 -> 4 -> 1 under load: no client error" {
	sd_start 'workers = 2'
	local out=$BATS_TEST_TMPDIR/bench.json
	sd_bench "$out" -c 50 --reconnect -d 8
	local bench=$SD_BENCH_PID
	wait_for eval '[ "$(sd_metric submitd_client_connected)" -ge 50 ]'
	sed -i 's/^workers = 2$/workers = 4/' "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for -t 15 running_workers 4
	# The clients came back and spread over the new generation.
	wait_for -t 10 eval '[ "$(sd_metric submitd_client_connected "{worker=\"3\"}")" -gt 0 ]'
	sed -i 's/^workers = 4$/workers = 1/' "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for -t 15 running_workers 1
	wait_for -t 10 eval '[ "$(sd_metric submitd_client_connected "{worker=\"0\"}")" -ge 50 ]'
	sd_bench_wait "$bench" "$out" 40
	assert_equal "$(sd_bench_field errors)" 0
	assert_equal "$(sd_bench_field connect_errors)" 0
	assert_equal "$(sd_bench_field open_at_end)" 50
	run sd_log_count "ready: 4 workers running"
	assert_output 1
	run sd_log_count "ready: 1 workers running"
	assert_output 1
	assert_equal "$(sd_metric submitd_req_recv_total)" "$(sd_bench_field acked)"
}

# probe PORT...: every 10 ms, one request and its ack on each port in turn,
# until killed (at most 120 s); a line "US PORT ok|fail" per try (US:
# monotonic microseconds at the try's start; the tries of a round follow
# one another, so their times differ). exec: the pid sd_spawn keeps is the
# probe's own (through timeout, which passes SIGTERM on), so killing it
# leaves nothing behind.
probe() {
	exec timeout 120 python3 - "$@" <<'PY'
import socket, struct, sys, time
ports = [int(p) for p in sys.argv[1:]]
req = struct.pack(">IB", 13, 2) + b"00000001"
want = struct.pack(">IB", 14, 0x81) + b"00000001" + b"\0"
while True:
    for p in ports:
        t = time.monotonic()
        ok = "fail"
        try:
            s = socket.create_connection(("127.0.0.1", p), timeout=1)
            s.sendall(req)
            got = b""
            while len(got) < 14:
                chunk = s.recv(14 - len(got))
                if not chunk:
                    break
                got += chunk
            ok = "ok" if got == want else "fail"
            s.close()
        except OSError:
            pass
        print("%d %d %s" % (t * 1000000, p, ok), flush=True)
    time.sleep(0.01)
PY
}

@test "reload moves the listen port: the old port stops accepting only after the new one accepts" {
	local old new
	old=$(free_port)
	sd_start "listen = {\"127.0.0.1:$old\"}"
	assert_equal "$SD_PORT" "$old"
	new=$(free_port)
	[ "$new" != "$old" ]
	local log=$BATS_TEST_TMPDIR/probe.log
	# The new port first in each round: when the switch falls between two
	# rounds, the round after it tries the new port before the old one,
	# and its times say so; a gap with neither port open is a round (or
	# more) with both failing.
	sd_spawn "$log" probe "$new" "$old"
	wait_for grep -q "$old ok" "$log"
	sed -i "s/127\.0\.0\.1:$old/127.0.0.1:$new/" "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for -t 15 running_workers 2
	wait_for sd_log_count "closing listener 127.0.0.1:$old"
	# Both ports seen by the probe after the switch.
	wait_for -t 10 eval "awk '\$2 == $new && \$3 == \"ok\"' '$log' | grep -q . && [ \$(awk '\$2 == $old && \$3 == \"fail\"' '$log' | wc -l) -ge 3 ]"
	sd_kill_spawned
	local first_new_ok first_old_fail last_old_ok
	first_new_ok=$(awk -v p="$new" '$2 == p && $3 == "ok" { print $1; exit }' "$log")
	first_old_fail=$(awk -v p="$old" '$2 == p && $3 == "fail" { print $1; exit }' "$log")
	last_old_ok=$(awk -v p="$old" '$2 == p && $3 == "ok" { t = $1 } END { print t }' "$log")
	echo "new port first ok at $first_new_ok, old port first failure at $first_old_fail, last ok at $last_old_ok"
	[ "$first_new_ok" -lt "$first_old_fail" ]
	# Once closed, the old port stays closed.
	[ "$last_old_ok" -lt "$first_old_fail" ]
	# The new port keeps answering.
	run awk -v p="$new" -v t="$first_new_ok" '$2 == p && $1 > t && $3 == "fail"' "$log"
	assert_output ""
	SD_PORT=$new
	run sd_client roundtrip
	assert_success
}

@test "bad config on SIGHUP under load: serving goes on, gauge 0, FILE:LINE logged; a good reload sets it back to 1" {
	sd_start 'workers = 2'
	local out=$BATS_TEST_TMPDIR/bench.json workers line
	sd_bench "$out" -c 50 --reconnect -d 6
	local bench=$SD_BENCH_PID
	wait_for eval '[ "$(sd_metric submitd_client_connected)" -ge 50 ]'
	workers=$(sd_workers | tr '\n' ' ')
	cp "$SD_CONF" "$BATS_TEST_TMPDIR/good.conf"
	printf 'idle_timeout = 30\nworkers = -3\n' >>"$SD_CONF"
	line=$(wc -l <"$SD_CONF")
	kill -HUP "$SD_PID"
	wait_for sd_metric_is submitd_config_last_reload_successful '' 0
	wait_for sd_log_count "reload failed, keeping the running configuration"
	run sd_log_count "$SD_CONF:$line: "
	assert_output 1
	# The same workers go on serving the same clients.
	assert_equal "$(sd_workers | tr '\n' ' ')" "$workers"
	run sd_metric submitd_generations
	assert_output 1
	local before
	before=$(sd_metric submitd_req_recv_total)
	wait_for eval '[ "$(sd_metric submitd_req_recv_total)" -gt "$before" ]'
	# A good file again: applied, gauge back to 1.
	cp "$BATS_TEST_TMPDIR/good.conf" "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload: configuration $SD_CONF applied"
	wait_for sd_metric_is submitd_config_last_reload_successful '' 1
	wait_for -t 15 running_workers 2
	sd_bench_wait "$bench" "$out" 40
	assert_equal "$(sd_bench_field errors)" 0
	assert_equal "$(sd_bench_field connect_errors)" 0
	# The bad reload closed nothing: only the good one made clients reconnect.
	[ "$(sd_bench_field reconnects)" -le 50 ]
}

@test "submitd -s reload waits for the result: exit 0 when applied, 1 when the file is bad" {
	local pidf=$BATS_TEST_TMPDIR/submitd.pid
	sd_start "pid_file = \"$pidf\"" 'workers = 2'
	local out=$BATS_TEST_TMPDIR/bench.json
	sd_bench "$out" -c 50 --reconnect -d 6
	local bench=$SD_BENCH_PID
	sed -i 's/^workers = 2$/workers = 3/' "$SD_CONF"
	run --separate-stderr timeout 30 "$SD_BIN" -c "$SD_CONF" -s reload
	assert_success
	assert_output --partial "new configuration serving"
	# When it returns, the new generation serves.
	run sd_metric submitd_workers '{state="running"}'
	assert_output 3
	run sd_log_count "ready: 3 workers running"
	assert_output 1
	# A file the checker rejects: exit 1 before anything is signalled.
	echo 'max_frame_size = 1' >>"$SD_CONF"
	run --separate-stderr timeout 30 "$SD_BIN" -c "$SD_CONF" -s reload
	assert_failure
	assert_equal "$(sd_metric submitd_config_last_reload_successful)" 1
	# A file only the master can find bad (its new port is taken): exit 1 from its answer.
	sed -i '$d' "$SD_CONF"
	sd_spawn "$BATS_TEST_TMPDIR/busy.port" python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); time.sleep(60)'
	wait_for test -s "$BATS_TEST_TMPDIR/busy.port"
	local busy
	busy=$(cat "$BATS_TEST_TMPDIR/busy.port")
	sed -i "s/^listen = .*/listen = {\"127.0.0.1:0\", \"127.0.0.1:$busy\"}/" "$SD_CONF"
	run --separate-stderr timeout 30 "$SD_BIN" -c "$SD_CONF" -s reload
	assert_failure
	[[ $stderr == *"reload failed"* ]]
	assert_equal "$(sd_metric submitd_config_last_reload_successful)" 0
	run sd_metric submitd_workers '{state="running"}'
	assert_output 3
	sd_bench_wait "$bench" "$out" 40
	assert_equal "$(sd_bench_field errors)" 0
	assert_equal "$(sd_bench_field connect_errors)" 0
}

@test "sd_notify: READY=1 at start, RELOADING=1 with MONOTONIC_USEC then READY=1 per reload, STOPPING=1" {
	local sock=$BATS_TEST_TMPDIR/notify.sock msgs=$BATS_TEST_TMPDIR/notify.log
	sd_spawn "$msgs" python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    print(s.recv(4096).decode().replace("\n", " "), flush=True)' "$sock"
	wait_for grep -q bound "$msgs"
	NOTIFY_SOCKET=$sock sd_start 'workers = 2'
	wait_for grep -q "^READY=1" "$msgs"
	kill -HUP "$SD_PID"
	wait_for -t 10 eval '[ "$(grep -c "^READY=1" "$msgs")" -ge 2 ]'
	echo 'workers = x' >>"$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for -t 10 grep -q "STATUS=reload failed" "$msgs"
	kill -TERM "$SD_PID"
	wait_for -t 15 grep -q "^STOPPING=1" "$msgs"
	cat "$msgs"
	run grep -c "^RELOADING=1 MONOTONIC_USEC=[0-9][0-9]* *$" "$msgs"
	assert_output 2
	# In order: ready, reloading, ready, reloading, ready (failed), stopping.
	run sed -n 's/^\([A-Z]*\)=.*/\1/p' "$msgs"
	assert_equal "$(echo $output)" "READY RELOADING READY RELOADING READY STOPPING"
}

@test "a reload that fails on a taken listen port changes nothing, metrics_listen included" {
	sd_start 'workers = 2'
	local mport=$SD_METRICS_PORT newm
	sd_spawn "$BATS_TEST_TMPDIR/busy.port" python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); time.sleep(60)'
	wait_for test -s "$BATS_TEST_TMPDIR/busy.port"
	newm=$(free_port)
	cp "$SD_CONF" "$BATS_TEST_TMPDIR/good.conf"
	sed -i "s/^listen = .*/listen = {\"127.0.0.1:0\", \"127.0.0.1:$(cat "$BATS_TEST_TMPDIR/busy.port")\"}/" "$SD_CONF"
	sed -i "s/^metrics_listen = .*/metrics_listen = \"127.0.0.1:$newm\"/" "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload failed, keeping the running configuration"
	# The endpoint stays where it was, and nothing listens on the new address.
	sd_metrics >/dev/null
	run sd_metric submitd_config_last_reload_successful
	assert_output 0
	run curl -s --max-time 2 "http://127.0.0.1:$newm/metrics"
	assert_failure
	# The same move without the taken port now succeeds.
	cp "$BATS_TEST_TMPDIR/good.conf" "$SD_CONF"
	sed -i "s/^metrics_listen = .*/metrics_listen = \"127.0.0.1:$newm\"/" "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload: configuration $SD_CONF applied"
	SD_METRICS_PORT=$newm
	wait_for sd_metric_is submitd_config_last_reload_successful '' 1
	sd_metrics >/dev/null
	run curl -s --max-time 2 "http://127.0.0.1:$mport/metrics"
	assert_failure
	run sd_client roundtrip
	assert_success
}

# A connection in the middle of a frame never reaches a frame boundary, so
# its worker drains until shutdown_timeout: it holds a generation open.
hold_partial() { # OUT
	sd_spawn "$1" python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"\x00\x00")
print("held", flush=True)
t = time.monotonic()
s.settimeout(60)
try:
    s.recv(1)
except OSError:
    pass
print("closed after %.1f s" % (time.monotonic() - t), flush=True)
' "$SD_PORT"
	wait_for grep -q held "$1"
}

@test "draining is bounded: past max_draining old generations the oldest is stopped hard" {
	sd_start 'workers = 1' 'max_draining = 1' 'shutdown_timeout = 60' 'idle_timeout = 0'
	hold_partial "$BATS_TEST_TMPDIR/h1"
	wait_for sd_metric_is submitd_client_connected '' 1
	kill -HUP "$SD_PID"
	wait_for sd_metric_is submitd_generations '' 2
	# The old generation counts as draining once the new one is ready.
	wait_for sd_metric_is submitd_draining_connections '' 1
	hold_partial "$BATS_TEST_TMPDIR/h2"
	wait_for sd_metric_is submitd_draining_connections '' 1
	wait_for sd_metric_is submitd_client_connected '' 2
	kill -HUP "$SD_PID"
	# Generation 1 goes (its connection with it); 2 drains, 3 serves.
	wait_for -t 10 grep -q "closed after" "$BATS_TEST_TMPDIR/h1"
	wait_for sd_metric_is submitd_generations '' 2
	run sd_metric submitd_draining_connections
	assert_output 1
	run grep -c "closed after" "$BATS_TEST_TMPDIR/h2"
	assert_output 0
	run sd_log_count "more than 1 generations draining: stopping generation 1"
	assert_output 1
	run sd_client roundtrip
	assert_success
}

# --- SIGHUP and a bad or a good file ---

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

# bad_reload KIND: replace $SD_CONF by a bad KIND of file, SIGHUP, check the
# master logged "$SD_CONF: ..." and kept everything, then put the good file
# back and reload it so that the next kind starts from the gauge at 1.
bad_reload() {
	local kind=$1 want workers gens applied
	rm -rf "$SD_CONF"
	case $kind in
	dir)
		mkdir "$SD_CONF"
		want="$SD_CONF: not a regular file"
		;;
	fifo)
		mkfifo "$SD_CONF"
		want="$SD_CONF: not a regular file"
		;;
	dangling)
		# chmod 000 does not stop root; a link to nothing fails for everyone.
		ln -s "$BATS_TEST_TMPDIR/nowhere" "$SD_CONF"
		want="$SD_CONF: No such file or directory"
		;;
	unreadable)
		# A regular file whose read() fails, root or not.
		ln -s /proc/self/mem "$SD_CONF"
		want="$SD_CONF: read: "
		;;
	big)
		cp "$BATS_TEST_TMPDIR/good.conf" "$SD_CONF"
		truncate -s 100M "$SD_CONF"
		want="$SD_CONF: too large"
		;;
	nul)
		{
			cat "$BATS_TEST_TMPDIR/good.conf"
			printf 'workers = 3\0\n'
		} >"$SD_CONF"
		want="$SD_CONF:$(($(wc -l <"$BATS_TEST_TMPDIR/good.conf") + 1)): a NUL byte"
		;;
	esac
	workers=$(sd_workers | tr '\n' ' ')
	gens=$(sd_log_count "generation [0-9]+ starting" || true)
	local failed
	failed=$(sd_log_count "reload failed, keeping the running configuration" || true)
	kill -HUP "$SD_PID"
	wait_for eval '[ "$(sd_log_count "reload failed, keeping the running configuration")" -gt '"$failed"' ]'
	echo "$kind: $(sd_log | grep -F "$SD_CONF" | tail -1)"
	sd_log | grep -qF -- "$want"
	wait_for sd_metric_is submitd_config_last_reload_successful '' 0
	# The service did not change: same workers, no new generation, still serving.
	kill -0 "$SD_PID"
	assert_equal "$(sd_workers | tr '\n' ' ')" "$workers"
	assert_equal "$(sd_log_count "generation [0-9]+ starting" || true)" "$gens"
	run sd_client roundtrip
	assert_success
	rm -rf "$SD_CONF"
	cp "$BATS_TEST_TMPDIR/good.conf" "$SD_CONF"
	applied=$(sd_log_count "reload: configuration $SD_CONF applied" || true)
	kill -HUP "$SD_PID"
	wait_for eval '[ "$(sd_log_count "reload: configuration $SD_CONF applied")" -gt '"$applied"' ]'
	wait_for sd_metric_is submitd_config_last_reload_successful '' 1
	wait_for -t 10 sd_metric_is submitd_generations '' 1
}

@test "SIGHUP with a directory, FIFO, dangling link, unreadable, 100 MiB or NUL-byte config: FILE: message, gauge 0, service unchanged" {
	sd_start 'workers = 2'
	cp "$SD_CONF" "$BATS_TEST_TMPDIR/good.conf"
	local kind
	for kind in dir fifo dangling unreadable big nul; do
		bad_reload "$kind"
	done
	run sd_log_count "input in flex scanner failed"
	assert_output 0
}

@test "SIGHUP: a flag spelled on is applied, one spelled maybe is refused with FILE:LINE and the service stays" {
	sd_start 'workers = 1'
	local failed applied lines
	failed=$(sd_log_count "reload failed, keeping the running configuration" || true)
	echo 'nats_create_stream = maybe' >>"$SD_CONF"
	lines=$(wc -l <"$SD_CONF")
	kill -HUP "$SD_PID"
	wait_for eval '[ "$(sd_log_count "reload failed, keeping the running configuration")" -gt '"$failed"' ]'
	sd_log | grep -qF -- "$SD_CONF:$lines: nats_create_stream: \"maybe\" is not a boolean"
	wait_for sd_metric_is submitd_config_last_reload_successful '' 0
	run sd_client roundtrip
	assert_success
	sed -i 's/^nats_create_stream = maybe$/nats_create_stream = on/' "$SD_CONF"
	applied=$(sd_log_count "reload: configuration $SD_CONF applied" || true)
	kill -HUP "$SD_PID"
	wait_for eval '[ "$(sd_log_count "reload: configuration $SD_CONF applied")" -gt '"$applied"' ]'
	wait_for sd_metric_is submitd_config_last_reload_successful '' 1
	run sd_client roundtrip
	assert_success
}

# --- the asker of -s reload, held by pidfd ---

# reuse_pid PID OUT: a process with pid PID (ns_last_pid) that reports into
# OUT "reused PID", then, on SIGUSR1, whether a SIGUSR2 reached it:
# "SIGUSR2 from PID" or "no SIGUSR2". Fails if PID could not be had.
reuse_pid() {
	python3 - "$1" >"$2" 2>&1 3>&- 4>&- <<-'PY' &
		import os, signal, sys
		target = int(sys.argv[1])
		signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
		for attempt in range(20):
		    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
		        f.write(str(target - 1))
		    pid = os.fork()
		    if pid == 0:
		        if os.getpid() != target:
		            os._exit(3)
		        print("reused", target, flush=True)
		        got = None
		        while True:
		            si = signal.sigtimedwait({signal.SIGUSR1, signal.SIGUSR2}, 120)
		            if si is None:
		                print("no SIGUSR1 within 120 s", flush=True)
		                os._exit(1)
		            if si.si_signo == signal.SIGUSR2:
		                got = si.si_pid
		            elif signal.SIGUSR2 in signal.sigpending():
		                got = signal.sigwaitinfo({signal.SIGUSR2}).si_pid
		            if si.si_signo == signal.SIGUSR1:
		                break
		        print("SIGUSR2 from %d" % got if got else "no SIGUSR2", flush=True)
		        os._exit(0)
		    _, status = os.waitpid(pid, 0)
		    if os.WEXITSTATUS(status) != 3:
		        sys.exit(os.WEXITSTATUS(status))
		    if os.path.exists("/proc/%d" % target):
		        break  # taken by some other process: give up
		print("pid", target, "not had", flush=True)
		sys.exit(1)
	PY
	REUSER=$!
	SD_BG_PIDS+=("$REUSER")
}

@test "-s reload: an asker killed while the reload is pending; its pid reused meanwhile gets no SIGUSR2" {
	needs_root
	[ -w /proc/sys/kernel/ns_last_pid ] || skip "cannot choose pids here (ns_last_pid)"
	sd_start 'workers = 1' "pid_file = \"$BATS_TEST_TMPDIR/submitd.pid\""
	hold_forks "$SD_PID" || skip "no writable pids cgroup (v1) to hold a reload pending"
	local asker
	sd_spawn "$BATS_TEST_TMPDIR/asker.out" "$SD_BIN" -c "$SD_CONF" -s reload
	asker=$SD_SPAWNED
	# The master took the asker's pidfd; the new worker cannot fork.
	wait_for sd_log_count "generation 2 starting"
	wait_for -t 10 eval '[ "$(find /proc/$SD_PID/fd -lname "*pidfd*" | wc -l)" -eq 1 ]'
	{
		kill -KILL "$asker"
		wait "$asker" || true
	} 2>/dev/null
	# Another process gets the asker's pid, as a busy machine would give it.
	reuse_pid "$asker" "$BATS_TEST_TMPDIR/reuser.out"
	wait_for eval 'grep -q "^reused $asker\$\|not had" "$BATS_TEST_TMPDIR/reuser.out"'
	grep -q "^reused $asker\$" "$BATS_TEST_TMPDIR/reuser.out" || skip "pid $asker was taken by another process ($(cat "/proc/$asker/cmdline" 2>/dev/null | tr "\0" " "))"
	# The reload completes: the master answers whoever asked, by pidfd.
	echo max >"$PIDS_CG/pids.max"
	wait_for -t 20 eval '[ "$(sd_log_count "ready: 1 workers running")" -eq 2 ]'
	# A live asker after it still gets its answer.
	run timeout 30 "$SD_BIN" -c "$SD_CONF" -s reload
	assert_success
	assert_output "reload: new configuration serving"
	local reuser
	reuser=$(pgrep -P "$REUSER")
	assert_equal "$reuser" "$asker"
	kill -USR1 "$reuser"
	wait_for grep -q SIGUSR2 "$BATS_TEST_TMPDIR/reuser.out"
	run cat "$BATS_TEST_TMPDIR/reuser.out"
	assert_output "$(printf 'reused %s\nno SIGUSR2' "$asker")"
	# The master keeps no pidfd once it answered.
	run find "/proc/$SD_PID/fd" -lname "*pidfd*"
	assert_output ""
}

@test "-s reload: the master forgets an asker past the wait (hooks build: 3 s), the reload still pending" {
	[ -x "$SD_ROOT/build/submitd-hooks" ] || skip "build/submitd-hooks not built (make build/submitd-hooks)"
	needs_root
	SD_BIN=$SD_ROOT/build/submitd-hooks
	sd_start 'workers = 1' "pid_file = \"$BATS_TEST_TMPDIR/submitd.pid\""
	hold_forks "$SD_PID" || skip "no writable pids cgroup (v1) to hold a reload pending"
	local start=$EPOCHREALTIME
	run timeout 30 "$SD_BIN" -c "$SD_CONF" -s reload
	echo "asker: status $status after $(_sd_elapsed_ms "$start") ms: $output"
	assert_failure 1
	assert_output --partial "no answer from pid $SD_PID to the reload"
	# The master drops the asker's pidfd at the same deadline, the reload still pending.
	wait_for -t 5 eval '[ -z "$(find /proc/$SD_PID/fd -lname "*pidfd*")" ]'
	run sd_log_count "ready: 1 workers running"
	assert_output 1
	echo max >"$PIDS_CG/pids.max"
	wait_for -t 20 eval '[ "$(sd_log_count "ready: 1 workers running")" -eq 2 ]'
	run sd_client roundtrip
	assert_success
}

# --- what the new workers inherit ---

# listener_inode PORT: the socket inode of the TCP listener on 127.0.0.1:PORT.
listener_inode() {
	awk -v want="$(printf '0100007F:%04X' "$1")" '$2 == want && $4 == "0A" { print $10 }' /proc/net/tcp
}

@test "SIGHUP with 20 /metrics connections open: the new workers hold stdio, the log, the listener, a signalfd and an epoll fd" {
	sd_start 'workers = 2'
	local held=$BATS_TEST_TMPDIR/scrapes
	# Half-sent requests: libmicrohttpd keeps them open (10 s); 16 per address at most.
	sd_spawn "$held" python3 -c '
import socket, sys, time
socks = []
for i in range(20):
    s = socket.socket()
    s.bind(("127.0.0.%d" % (1 + i % 2), 0))
    s.connect(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    socks.append(s)
print("open", len(socks), flush=True)
time.sleep(120)' "$SD_METRICS_PORT"
	wait_for grep -q "open 20" "$held"
	# The master has accepted all 20 when the fork happens.
	wait_for eval '[ "$(find /proc/$SD_PID/fd -lname "socket:*" | wc -l)" -ge 22 ]'
	local old new w listener
	old=$(sd_workers | paste -sd' ')
	kill -HUP "$SD_PID"
	wait_for -t 15 eval '[ "$(grep -c "ready: 2 workers running" "$BATS_TEST_TMPDIR/submitd.log")" -eq 2 ]'
	new=$(sd_workers | grep -vxF -f <(tr ' ' '\n' <<<"$old"))
	assert_equal "$(echo "$new" | wc -l)" 2
	listener=$(listener_inode "$SD_PORT")
	[ -n "$listener" ]
	for w in $new; do
		ls -l "/proc/$w/fd" >&2
		# Past stdio: exactly the log file, the listener, the signalfd and the epoll fd.
		run bash -c "find /proc/$w/fd -mindepth 1 ! -name 0 ! -name 1 ! -name 2 -printf '%l\n' | sort"
		assert_output "$(printf '%s\n' "$BATS_TEST_TMPDIR/submitd.log" anon_inode:\[eventpoll\] \
			anon_inode:\[signalfd\] "socket:[$listener]" | sort)"
	done
	# The scrapes still get their answers from the master.
	run sd_metrics
	assert_success
}
