#!/usr/bin/env bats
# The /metrics endpoint: the exposition format checked by promtool, the
# HTTP surface (methods, paths), and every contract family present.

load helpers/common

teardown() {
	sd_stop
}

url() {
	echo "http://127.0.0.1:$SD_METRICS_PORT$1"
}

# Load on both workers, a protocol error and a closed connection, so that
# every family has non-trivial samples.
some_traffic() {
	run "$SD_ROOT/build/submit-bench" -c 8 -n 20000 --conn --json "127.0.0.1:$SD_PORT"
	assert_success
	run sd_client bad unknown --before 2
	assert_success
}

@test "metrics: promtool check metrics finds nothing on the real output" {
	command -v promtool >/dev/null || skip "promtool not installed (Debian package prometheus)"
	sd_start
	some_traffic
	curl -sf "$(url /metrics)" >"$BATS_TEST_TMPDIR/m.txt"
	run promtool check metrics <"$BATS_TEST_TMPDIR/m.txt"
	assert_success
	assert_output ""
}

@test "metrics: every family has HELP and TYPE once, and no sample is duplicated" {
	sd_start
	some_traffic
	curl -sf "$(url /metrics)" >"$BATS_TEST_TMPDIR/m.txt"
	run awk '$1 == "#" && $2 == "HELP" { h[$3]++ } $1 == "#" && $2 == "TYPE" { t[$3]++ }
		END { for (f in h) if (h[f] != 1 || t[f] != 1) print "family", f, h[f], t[f]
		      for (f in t) if (!(f in h)) print "no HELP", f }' "$BATS_TEST_TMPDIR/m.txt"
	assert_output ""
	run bash -c "grep -v '^#' '$BATS_TEST_TMPDIR/m.txt' | awk '{print \$1}' | sort | uniq -d"
	assert_output ""
	local f
	for f in submitd_client_connected submitd_req_recv_total submitd_rsp_send_total \
		submitd_connections_accepted_total submitd_connections_closed_total \
		submitd_protocol_errors_total submitd_received_bytes_total submitd_sent_bytes_total \
		submitd_write_batch_size submitd_workers submitd_worker_restarts_total \
		submitd_config_last_reload_successful \
		submitd_config_last_reload_success_timestamp_seconds submitd_build_info \
		process_start_time_seconds process_cpu_seconds_total \
		process_resident_memory_bytes process_open_fds submitd_worker_allocated_bytes \
		submitd_draining_connections submitd_generations; do
		grep -q "^# TYPE $f " "$BATS_TEST_TMPDIR/m.txt" || {
			echo "missing family $f"
			return 1
		}
	done
}

@test "metrics: the counters match what was sent, per command, over both workers" {
	sd_start
	some_traffic
	# 20000 Submits and 8 Conns from the bench, 2 Submits before the bad frame.
	run sd_metric submitd_req_recv_total '{cmd="submit"}'
	assert_output 20002
	run sd_metric submitd_rsp_send_total '{cmd="conn"}'
	assert_output 8
	run sd_metric submitd_protocol_errors_total '{reason="unknown_command"}'
	assert_output 1
	run sd_metric submitd_write_batch_size_count
	[ "$output" -gt 0 ]
	# Buffered I/O at work: far fewer writes than acks.
	local acks writes
	acks=$(sd_metric submitd_write_batch_size_sum)
	writes=$(sd_metric submitd_write_batch_size_count)
	[ "$acks" -ge 20010 ]
	[ "$writes" -lt $((acks / 4)) ]
}

@test "metrics: GET and HEAD /metrics; other paths 404, other methods 405" {
	sd_start
	run curl -s -o /dev/null -w '%{http_code} %{content_type}' "$(url /metrics)"
	assert_output "200 text/plain; version=0.0.4; charset=utf-8"
	run curl -s -I -o /dev/null -w '%{http_code}' "$(url /metrics)"
	assert_output 200
	run curl -s -o /dev/null -w '%{http_code}' "$(url /nope)"
	assert_output 404
	run curl -s -o /dev/null -w '%{http_code}' -X POST -d x=1 "$(url /metrics)"
	assert_output 405
	run curl -s -D - -o /dev/null -X DELETE "$(url /metrics)"
	assert_output --partial "Allow: GET, HEAD"
}

@test "metrics: build_info carries the changelog's version; metrics_listen \"\" disables the endpoint" {
	sd_start
	local v
	v=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$SD_ROOT/debian/changelog")
	run curl -sf "$(url /metrics)"
	assert_output --partial "submitd_build_info{version=\"$v\","
	sd_stop
	sd_start 'metrics_listen = ""'
	run sd_log_count "metrics on"
	assert_output 0
	run sd_client roundtrip
	assert_success
}
