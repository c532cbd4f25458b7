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

@test "metrics: every family has HELP and TYPE once, no sample is duplicated, the families are docs/METRICS.md's" {
	sd_start
	some_traffic
	curl -sf "$(url /metrics)" >"$BATS_TEST_TMPDIR/m.txt"
	run awk '$1 == "#" && $2 == "HELP" { h[$3]++ } $1 == "#" && $2 == "TYPE" { t[$3]++ }
		END { for (f in h) if (h[f] != 1 || t[f] != 1) print "family", f, h[f], t[f]
		      for (f in t) if (!(f in h)) print "no HELP", f }' "$BATS_TEST_TMPDIR/m.txt"
	assert_output ""
	run bash -c "grep -v '^#' '$BATS_TEST_TMPDIR/m.txt' | awk '{print \$1}' | sort | uniq -d"
	assert_output ""
	# Exactly the families docs/METRICS.md documents, of the type it gives;
	# the certificate's expiry only where a tls:// listener serves one (tls.bats).
	local doc got
	doc=$(sd_doc_families --types | grep -v '^submitd_tls_certificate_expiry_timestamp_seconds ' | sort)
	[ "$(wc -l <<<"$doc")" -ge 20 ]
	got=$(awk '$1 == "#" && $2 == "TYPE" { print $3, $4 }' "$BATS_TEST_TMPDIR/m.txt" | sort)
	assert_equal "$got" "$doc"
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

@test "metrics: build_info carries the changelog's version; metrics_listen \"\" leaves no metrics socket" {
	sd_start
	local v
	v=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$SD_ROOT/debian/changelog")
	run curl -sf "$(url /metrics)"
	assert_output --partial "submitd_build_info{version=\"$v\","
	# The master's and workers' listening sockets: the service and /metrics.
	run listening_ports
	assert_output "$(printf '%s\n' "$SD_PORT" "$SD_METRICS_PORT" | sort -n)"
	sd_stop
	sd_start 'metrics_listen = ""'
	# Nothing but the service listens.
	run listening_ports
	assert_output "$SD_PORT"
	run sd_client roundtrip
	assert_success
}

# listening_ports: the TCP ports the master and its workers listen on, sorted.
listening_ports() {
	local re
	re=$(printf 'pid=%s,|' "$SD_PID" $(sd_workers))
	ss -Hltnp | grep -E "${re%|}" | awk '{ n = split($4, a, ":"); print a[n] }' | sort -nu
}
