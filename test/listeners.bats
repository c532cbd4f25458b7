#!/usr/bin/env bats
# Several listen addresses, IPv6 among them: every one is served by the workers.

load helpers/common

teardown() {
	sd_stop
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
