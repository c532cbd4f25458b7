#!/usr/bin/env bats
# The shared helpers themselves: a helper that cannot fail makes every
# check built on it vacuous, so each must be shown to fail when it should.

load helpers/common

teardown() {
	sd_stop
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

@test "sd_metric sums a family's samples, by label, and reads a histogram's _sum and _count" {
	sd_start 'workers = 2'
	run sd_client pipeline 3
	assert_success
	run sd_client roundtrip --cmd conn
	assert_success
	wait_for sd_metric_is submitd_req_recv_total '' 4
	run sd_metric submitd_req_recv_total '{cmd="submit"}'
	assert_success
	assert_output 3
	run sd_metric submitd_rsp_send_total '{cmd="conn"}'
	assert_output 1
	run sd_metric submitd_workers '{state="configured"}'
	assert_output 2
	run sd_metric submitd_write_batch_size_sum
	assert_output 4
	run sd_metric submitd_write_batch_size_count
	assert_success
	[ "$output" -ge 1 ]
	run sd_metric_is submitd_req_recv_total '{cmd="submit"}' 3
	assert_success
	run sd_metric_is submitd_req_recv_total '{cmd="submit"}' 4
	assert_failure
}

@test "sd_metric fails loudly when the metrics endpoint is closed: a zero is never read from nothing" {
	# The daemon runs and serves, but has no endpoint.
	sd_start 'metrics_listen = ""'
	run sd_client roundtrip
	assert_success
	run --separate-stderr sd_metric submitd_protocol_errors_total
	assert_failure
	assert_output ""
	[[ $stderr == *"scrape of 127.0.0.1:"*"/metrics failed"* ]]
	run sd_metric_is submitd_protocol_errors_total '' 0
	assert_failure
	run wait_for -t 1 sd_metric_is submitd_protocol_errors_total '' 0
	assert_failure
	sd_stop
	# An endpoint that served, then went away with its daemon.
	sd_start
	run sd_metric_is submitd_protocol_errors_total '' 0
	assert_success
	sd_stop
	run --separate-stderr sd_metric submitd_protocol_errors_total
	assert_failure
	assert_output ""
	run sd_metric_is submitd_protocol_errors_total '' 0
	assert_failure
	# A port nothing listens on.
	SD_METRICS_PORT=$(free_port)
	run sd_metric_is submitd_client_connected '' 0
	assert_failure
}

@test "sd_metric fails for a family the scrape lacks and for labels no sample has" {
	sd_start
	run --separate-stderr sd_metric submitd_no_such_metric
	assert_failure
	assert_output ""
	[[ $stderr == *"no such family"* ]]
	# A misspelt name is no zero either.
	run sd_metric_is submitd_protocol_error_total '' 0
	assert_failure
	run sd_metric_is submitd_write_batch_size_total '' 0
	assert_failure
	# A family that exists, with a label value that no sample carries.
	run --separate-stderr sd_metric submitd_connections_closed_total '{reason="idel"}'
	assert_failure
	[[ $stderr == *"no sample matches"* ]]
	run sd_metric_is submitd_client_connected '{worker="7"}' 0
	assert_failure
	# The same checks with real names and labels hold.
	run sd_metric_is submitd_connections_closed_total '{reason="idle"}' 0
	assert_success
	run sd_metric_is submitd_client_connected '{worker="1"}' 0
	assert_success
}

@test "the suites hold no check that errexit ignores: a '! cmd' or a '[ ] && [ ]' statement" {
	# bash's set -e ignores a negated command and every command of an && list
	# but the last, so in a bats test neither form can fail. `run !`, and one
	# test per line, can.
	cd "$BATS_TEST_DIRNAME" || return 1
	run grep -nE '^[[:space:]]*! [^|]*$' ./*.bats helpers/*.bash
	assert_output ""
	run grep -nE '^[[:space:]]*(\[\[? [^|&]*\]\]? *&& *)+\[\[? [^|&]*\]\]? *$' ./*.bats helpers/*.bash
	assert_output ""
}
