#!/usr/bin/env bats
# max_connections_per_ip: connections per client address across all
# workers (a table in shared memory), the address after a PROXY header
# behind a balancer, refusals counted as reason="limit_ip".

load helpers/common

SDC="python3 $SD_ROOT/test/helpers/sdclient.py"

teardown() {
	sd_stop
}

@test "max_connections_per_ip = 8 with 2 workers: 8 from one address work, the 9th is closed; another address has its own 8" {
	sd_start 'workers = 2' 'max_connections_per_ip = 8' 'idle_timeout = 0'
	local hold=$BATS_TEST_TMPDIR/hold.out
	# 8 held from 127.0.0.1, spread over both workers.
	sd_spawn "$hold" $SDC --port "$SD_PORT" hold 8 --verify --hold 60
	wait_for grep -q "connected 8" "$hold"
	wait_for eval '[ "$(sd_metric submitd_client_connected)" -eq 8 ]'
	local w0 w1
	w0=$(sd_metric submitd_client_connected '{worker="0"}')
	w1=$(sd_metric submitd_client_connected '{worker="1"}')
	echo "per worker: $w0 + $w1"
	[ "$w0" -gt 0 ]
	[ "$w1" -gt 0 ]
	# The 9th and 10th from 127.0.0.1: closed at once, whichever worker takes them.
	run $SDC --port "$SD_PORT" maxconn 0
	assert_success
	run $SDC --port "$SD_PORT" maxconn 0
	assert_success
	run sd_metric submitd_connections_closed_total '{reason="limit_ip"}'
	assert_output 2
	# 127.0.0.2 is another address: its own 8, then refused.
	run $SDC --port "$SD_PORT" --bind 127.0.0.2 maxconn 8
	assert_success
	run sd_metric submitd_connections_closed_total '{reason="limit_ip"}'
	assert_output 3
	sd_log | grep -q '127.0.0.1:[0-9]*: max_connections_per_ip (8) reached'
	# Once the 8 go, 127.0.0.1 may connect again.
	sd_kill_spawned
	wait_for eval '[ "$(sd_metric submitd_client_connected)" -eq 0 ]'
	run $SDC --port "$SD_PORT" maxconn 8
	assert_success
	run sd_metric submitd_connections_ip_untracked_total
	assert_output 0
}

@test "max_connections_per_ip behind a balancer: the PROXY header's address is counted, not the balancer's" {
	sd_start 'workers = 1' 'max_connections_per_ip = 2' 'proxy_protocol_from = {"127.0.0.3/32"}'
	local PC="python3 $SD_ROOT/test/helpers/proxyclient.py" out=$BATS_TEST_TMPDIR/p
	# Two held connections for 192.0.2.1, then a third is refused; 192.0.2.2 is not.
	sd_spawn "$out.1" $PC --port "$SD_PORT" --bind 127.0.0.3 --expect close --timeout 60 v1:192.0.2.1:1001
	sd_spawn "$out.2" $PC --port "$SD_PORT" --bind 127.0.0.3 --expect close --timeout 60 v1:192.0.2.1:1002
	wait_for sd_metric_is submitd_proxy_headers_total '' 2
	run $PC --port "$SD_PORT" --bind 127.0.0.3 --expect close v1:192.0.2.1:1003
	assert_success
	wait_for sd_metric_is submitd_connections_closed_total '{reason="limit_ip"}' 1
	run $PC --port "$SD_PORT" --bind 127.0.0.3 --submits 2 v1:192.0.2.2:1004
	assert_success
	assert_line "acked 2"
}

@test "max_connections_per_ip is range-checked: 65536 refused with FILE:LINE, 0 (off) and 65535 accepted" {
	local conf=$BATS_TEST_TMPDIR/c.conf
	cp "$(sd_config 'max_connections_per_ip = 65536')" "$conf"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "$conf:$(grep -n '^max_connections_per_ip' "$conf" | cut -d: -f1): max_connections_per_ip = 65536: out of range 0..65535"
	cp "$(sd_config 'max_connections_per_ip = 65535')" "$conf"
	run "$SD_BIN" -t -c "$conf"
	assert_success
}
