#!/usr/bin/env bats
# GET /status on the metrics listener and `submitd -s status`: the master's
# and every worker's state, checked against the processes and the traffic.

load helpers/common

teardown() {
	sd_stop
}

sd_status() {
	curl -sf --max-time 5 "http://127.0.0.1:$SD_METRICS_PORT/status"
}

# status_field NAME: the value of the "NAME: value" line.
status_field() {
	sd_status | sed -n "s/^$1: //p"
}

# status_rows: the worker table without its header, one worker a line.
status_rows() {
	sd_status | awk 'seen && /^$/ { exit } seen { print } /^worker +slot +pid/ { seen = 1 }'
}

status_field_is() {
	[ "$(status_field "$1")" = "$2" ]
}

# Column N of the worker table, sorted.
status_column() {
	status_rows | awk -v n="$1" '{ print $n }' | sort -n
}

fnv1a64() {
	python3 -c '
import sys
h = 0xcbf29ce484222325
for b in open(sys.argv[1], "rb").read():
    h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
print("%016x" % h)' "$1"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Every worker row is of generation G and running, and names the live workers.
workers_are_generation() {
	local g=$1
	[ "$(status_column 4 | sort -u)" = "$g" ] || return 1
	[ "$(status_rows | awk '{ print $5 }' | sort -u)" = running ] || return 1
	[ "$(status_column 3)" = "$(sd_workers)" ]
}

@test "/status: the master's pid, the config's path and hash, the workers' pids" {
	sd_start 'workers = 3'
	run curl -sf --max-time 5 -o /dev/null -w '%{http_code} %{content_type}' \
		"http://127.0.0.1:$SD_METRICS_PORT/status"
	assert_output "200 text/plain; charset=utf-8"
	run status_field pid
	assert_output "$SD_PID"
	run status_field config
	assert_output "$SD_CONF"
	run status_field config_fnv1a64
	assert_output "$(fnv1a64 "$SD_CONF")"
	run status_field generation
	assert_output 1
	run status_field last_reload
	assert_output never
	run status_field workers_running
	assert_output 3
	run status_field uptime_seconds
	assert_output --regexp '^[0-9]+$'
	((output < 60))
	# It counts: not a constant.
	wait_for -t 5 eval '[ "$(status_field uptime_seconds)" -gt '"$output"' ]'
	wait_for workers_are_generation 1
	run status_column 3
	assert_output "$(sd_workers)"
	run status_column 1
	assert_output "$(printf '0\n1\n2')"
	# The heartbeat is stamped twice a second by an idle worker.
	local age
	for age in $(status_column 8); do
		((age < 3000)) || fail "heartbeat age $age ms"
	done
}

@test "HEAD /status: 200 with the headers of GET and no body" {
	sd_start
	run curl -sfI --max-time 5 "http://127.0.0.1:$SD_METRICS_PORT/status"
	assert_success
	assert_line --regexp '^HTTP/1\.[01] 200'
	assert_line --regexp '^Content-Type: text/plain; charset=utf-8'
	refute_line --regexp '^pid:'
	# On the wire: the headers and nothing after them.
	run python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"HEAD /status HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, sep, body = data.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode(), "body", len(body) if sep else "none")' "$SD_METRICS_PORT"
	assert_output --regexp '^HTTP/1\.[01] 200 OK body 0$'
}

@test "/status: connections per worker add up to the connections held" {
	sd_start 'workers = 2'
	sd_spawn "$BATS_TEST_TMPDIR/hold.out" $SD_CLIENT --port "$SD_PORT" hold 7 --verify --hold 60
	wait_for grep -q "connected 7" "$BATS_TEST_TMPDIR/hold.out"
	wait_for status_field_is connections 7
	run status_rows
	[ "$(awk '{ s += $6 } END { print s }' <<<"$output")" = 7 ]
	# Each row agrees with the worker's gauge.
	local label conns
	while read -r label conns; do
		[ "$(sd_metric submitd_client_connected "{worker=\"$label\"}")" = "$conns" ]
	done < <(status_rows | awk '{ print $1, $6 }')
	sd_kill_spawned
	wait_for status_field_is connections 0
}

# Every worker's requests per second is above 0 (or, with "zero", all are 0).
rates_are() {
	local r
	for r in $(status_column 7); do
		if [ "$1" = zero ]; then
			[ "$r" = 0.0 ] || return 1
		else
			awk -v r="$r" 'BEGIN { exit !(r > 0) }' || return 1
		fi
	done
	[ -n "$r" ]
}

@test "/status: requests per second is above 0 under load and falls back to 0 after it" {
	sd_start 'workers = 2'
	run rates_are zero
	assert_success
	local out=$BATS_TEST_TMPDIR/bench.json
	sd_bench "$out" -c 8 -d 5 --drain 1
	wait_for -t 10 rates_are positive
	sd_bench_wait "$SD_BENCH_PID" "$out" 30
	assert_equal "$(sd_bench_field errors)" 0
	# A rate over the last few seconds, not an average since the start.
	wait_for -t 20 rates_are zero
}

@test "/status: generation and last reload after a good and a bad SIGHUP" {
	sd_start 'workers = 2'
	local hash1 t0
	hash1=$(status_field config_fnv1a64)
	echo 'idle_timeout = 120' >>"$SD_CONF"
	t0=$(date +%s)
	kill -HUP "$SD_PID"
	wait_for -t 10 status_field_is generation 2
	wait_for -t 10 workers_are_generation 2
	run status_field last_reload_successful
	assert_output 1
	run status_field config_fnv1a64
	assert_output "$(fnv1a64 "$SD_CONF")"
	refute_output "$hash1"
	local hash2=$output when
	when=$(status_field last_reload)
	(($(date -u -d "$when" +%s) >= t0 - 1)) || fail "last_reload $when before $t0"

	# A bad file: the reload fails, generation 2 and its config keep running.
	echo 'no_such_option = 1' >>"$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for -t 10 status_field_is last_reload_successful 0
	run status_field generation
	assert_output 2
	run status_field config_fnv1a64
	assert_output "$hash2"
	wait_for workers_are_generation 2
}

# The lines of a status page that do not change from one second to the next.
stable_part() {
	grep -vE '^uptime_seconds:' | awk '/^worker +slot/ { t = 1; print; next } t { print $1, $2, $3, $4, $5, $6; next } { print }'
}

@test "submitd -s status prints the page of the metrics endpoint in the config" {
	local port
	port=$(free_port)
	sd_start 'workers = 2' "metrics_listen = \"127.0.0.1:$port\""
	[ "$SD_METRICS_PORT" = "$port" ]
	run "$SD_BIN" -s status -c "$SD_CONF"
	assert_success
	assert_line "pid: $SD_PID"
	local cli=$output
	run sd_status
	assert_success
	[ "$(stable_part <<<"$cli")" = "$(stable_part <<<"$output")" ]
}

@test "submitd -s status fails clearly when the endpoint is disabled or unreachable" {
	sd_start 'metrics_listen = ""'
	run "$SD_BIN" -s status -c "$SD_CONF"
	assert_failure 1
	assert_output --partial 'metrics_listen is "" in'
	assert_output --partial "disabled"
	sd_stop
	# Configured, but nobody listens there.
	local port
	port=$(free_port)
	run "$SD_BIN" -s status -c "$(sd_config "metrics_listen = \"127.0.0.1:$port\"")"
	assert_failure 1
	assert_output --partial "cannot connect to the metrics endpoint 127.0.0.1:$port"
	assert_output --partial "Connection refused"
}

@test "/status: a worker of the old generation still draining is shown as draining" {
	sd_start 'workers = 2' 'shutdown_timeout = 60'
	# Half a frame keeps its worker draining after the reload.
	sd_stuck_client "$BATS_TEST_TMPDIR/held"
	wait_for sd_metric_is submitd_client_connected '' 1
	local old draining
	old=$(sd_workers)
	kill -HUP "$SD_PID"
	wait_for -t 15 status_field_is generation 2
	# The idle old worker exits; the one holding the client stays.
	wait_for -t 15 eval '[ "$(status_rows | wc -l)" -eq 3 ]'
	run status_rows
	echo "$output"
	draining=$(awk '$4 == 1 { print $3 }' <<<"$output")
	[ -n "$draining" ]
	grep -qx "$draining" <<<"$old"
	assert_line --regexp "^[01] +[0-9]+ +$draining +1 +draining +1 +"
	# The new generation: two running workers with no connection.
	assert_equal "$(awk '$4 == 2 && $5 == "running" && $6 == 0' <<<"$output" | wc -l)" 2
	run status_field workers_running
	assert_output 2
	run status_field connections
	assert_output 1
}

# heartbeat_of PID: the heartbeat_age_ms column of worker PID's row.
heartbeat_of() {
	status_rows | awk -v p="$1" '$3 == p { print $8 }' | grep .
}

@test "/status: a hung worker's heartbeat age grows; the others' stays small" {
	[ -x "$SD_ROOT/build/submitd-hooks" ] || skip "build/submitd-hooks not built (make build/submitd-hooks)"
	SD_BIN=$SD_ROOT/build/submitd-hooks
	# The watchdog off: the hung worker stays for the page to show it.
	sd_start 'workers = 2' 'worker_timeout = 0'
	local hung other
	hung=$(sd_workers | head -1)
	other=$(sd_workers | tail -1)
	kill -USR2 "$hung"
	wait_for sd_log_count "test hook: hanging"
	wait_for -t 15 eval '[ "$(heartbeat_of "$hung")" -ge 3000 ]'
	run heartbeat_of "$other"
	assert_success
	((output < 3000)) || fail "the running worker's heartbeat age is $output ms"
	run heartbeat_of "$hung"
	echo "hung worker: $output ms"
	((output >= 3000))
}
