#!/usr/bin/env bats
# submit-bench --tls against what exists today: HAProxy terminating TLS in
# front of a plaintext submitd (test/helpers/haproxy.bash), with the test
# certificates of helpers/tls-certs.sh. One submitd and one haproxy for the
# file, with two TLS frontends: f0 asks for no client certificate, f1
# requires one from the test CA (verify required). Every run is bounded
# (timeout, -d or -n).

load helpers/common
source "$SD_ROOT/test/helpers/haproxy.bash"

BENCH=$SD_ROOT/build/submit-bench

setup_file() {
	command -v haproxy >/dev/null || skip "haproxy is not installed"
	export CERTS=$BATS_FILE_TMPDIR/certs
	sh "$SD_ROOT/test/helpers/tls-certs.sh" "$CERTS"
	SD_DIR=$BATS_FILE_TMPDIR sd_start 'workers = 1' 'idle_timeout = 0'
	export SD_DIR=$BATS_FILE_TMPDIR
	HAP_GLOBAL='ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256' \
		hap_start "$BATS_FILE_TMPDIR" "$SD_PORT" "ssl crt $CERTS/haproxy.pem" \
		"ssl crt $CERTS/haproxy.pem ca-file $CERTS/ca.pem verify required"
	export HAP_PID TLS_PORT=${HAP_PORTS[0]} MTLS_PORT=${HAP_PORTS[1]}
}

teardown_file() {
	hap_stop
	SD_DIR=$BATS_FILE_TMPDIR sd_stop
}

# bench_json ARGS...: submit-bench --json, bounded; JSON in $output, errors in $stderr.
bench_json() {
	run --separate-stderr timeout 60 "$BENCH" --json "$@"
}

@test "--tls through haproxy: a pipelined run gets every ack, and submitd counted them" {
	before=$(sd_metric submitd_req_recv_total '{cmd="submit"}')
	bench_json -d 1 -c 10 -w 64 --tls --tls-ca "$CERTS/ca.pem" "127.0.0.1:$TLS_PORT"
	assert_success
	echo "$output"
	jq -e '.ok and .errors == 0 and .acked > 10000 and .acked == .sent and .tls
		and .tls_version == "TLSv1.3" and .tls_cipher == "TLS_AES_128_GCM_SHA256"
		and .handshakes == 10 and .resumed == 0 and .open_at_end == 10' <<<"$output"
	acked=$(jq -r .acked <<<"$output")
	wait_for sd_metric_is submitd_req_recv_total '{cmd="submit"}' $((before + acked))
}

@test "--tls: -n with Conn first, 2 threads and 16 KiB payloads unbounded: exactly N acks" {
	bench_json -n 3000 -c 6 -t 2 -w 0 -s 1-16384 --conn --tls "127.0.0.1:$TLS_PORT"
	assert_success
	jq -e '.sent == 3000 and .acked == 3000 and .conn_acked == 6 and .errors == 0' <<<"$output"
}

@test "--tls-ca with another CA: the handshake fails with the reason, exit 1" {
	bench_json -d 0.5 -c 2 --tls --tls-ca "$CERTS/other-ca.pem" "127.0.0.1:$TLS_PORT"
	assert_failure 1
	jq -e '.acked == 0 and .connect_errors == 2 and .ok == false' <<<"$output"
	[[ $stderr == *"connection 0: TLS handshake with 127.0.0.1:$TLS_PORT: certificate verify failed: self-signed certificate in certificate chain"* ]]
}

@test "--tls-ca checks the name: the target's address, or --tls-servername" {
	bench_json -n 10 -c 1 --tls --tls-ca "$CERTS/ca.pem" --tls-servername localhost "127.0.0.1:$TLS_PORT"
	assert_success
	bench_json -n 10 -c 1 --tls --tls-ca "$CERTS/ca.pem" --tls-servername example.com "127.0.0.1:$TLS_PORT"
	assert_failure 1
	[[ $stderr == *"certificate verify failed: hostname mismatch"* ]]
	# Without --tls-ca nothing is checked.
	bench_json -n 10 -c 1 --tls --tls-servername example.com "127.0.0.1:$TLS_PORT"
	assert_success
}

@test "bad certificate and key files: exit 2, naming the option, the file and the reason" {
	run --separate-stderr "$BENCH" --tls --tls-ca "$BATS_TEST_TMPDIR/none.pem" "127.0.0.1:$TLS_PORT"
	assert_failure 2
	[ "$stderr" = "submit-bench: --tls-ca $BATS_TEST_TMPDIR/none.pem: cannot read: No such file or directory" ]
	run --separate-stderr "$BENCH" --tls --tls-ca "$CERTS/client.key" "127.0.0.1:$TLS_PORT"
	assert_failure 2
	[ "$stderr" = "submit-bench: --tls-ca $CERTS/client.key: no certificate found (not PEM?)" ]
	run --separate-stderr "$BENCH" --tls --tls-cert "$CERTS/client.pem" --tls-key "$CERTS/badclient.key" "127.0.0.1:$TLS_PORT"
	assert_failure 2
	[ "$stderr" = "submit-bench: --tls-key $CERTS/badclient.key: key does not match certificate $CERTS/client.pem" ]
	run --separate-stderr "$BENCH" --tls --tls-cert "$CERTS/client.pem" --tls-key "$CERTS/ca.pem" "127.0.0.1:$TLS_PORT"
	assert_failure 2
	[[ $stderr == *"--tls-key $CERTS/ca.pem: no private key found"* ]]
	run --separate-stderr "$BENCH" --tls-ca "$CERTS/ca.pem" "127.0.0.1:$TLS_PORT"
	assert_failure 2
	[[ $stderr == *"work with --tls"* ]]
	run --separate-stderr "$BENCH" --tls --tls-cert "$CERTS/client.pem" "127.0.0.1:$TLS_PORT"
	assert_failure 2
	[[ $stderr == *"--tls-cert and --tls-key go together"* ]]
}

@test "verify required: a client certificate from the CA works; none, or another CA's, fails" {
	bench_json -d 0.5 -c 3 --tls --tls-ca "$CERTS/ca.pem" --tls-cert "$CERTS/client.pem" \
		--tls-key "$CERTS/client.key" "127.0.0.1:$MTLS_PORT"
	assert_success
	jq -e '.errors == 0 and .acked > 0 and .handshakes == 3' <<<"$output"
	# TLS 1.3: the client's side of the handshake is done before the server
	# checks the certificate, so the server's alert comes with the first read.
	bench_json -d 0.5 -c 3 --tls --tls-ca "$CERTS/ca.pem" "127.0.0.1:$MTLS_PORT"
	assert_failure 1
	jq -e '.acked == 0 and .errors == 3' <<<"$output"
	[[ $stderr == *"TLS: tlsv13 alert certificate required"* ]]
	bench_json -d 0.5 -c 3 --tls --tls-cert "$CERTS/badclient.pem" --tls-key "$CERTS/badclient.key" \
		"127.0.0.1:$MTLS_PORT"
	assert_failure 1
	jq -e '.acked == 0' <<<"$output"
	[[ $stderr == *"TLS: tlsv1 alert unknown ca"* ]]
}

@test "--handshakes: a new connection (and TLS handshake) per request, handshakes/s > 0" {
	before=$(sd_metric submitd_connections_accepted_total)
	bench_json -n 200 -c 4 --handshakes --tls --tls-ca "$CERTS/ca.pem" "127.0.0.1:$TLS_PORT"
	assert_success
	echo "$output"
	jq -e '.handshake_mode and .window == 1 and .sent == 200 and .acked == 200
		and .handshakes == 200 and .resumed == 0 and .handshake_rate > 0 and .errors == 0
		and .latency_us.count == 200' <<<"$output"
	# haproxy opens one backend connection per client connection.
	after=$(sd_metric submitd_connections_accepted_total)
	[ $((after - before)) -ge 200 ]
	bench_json -d 0.5 -c 4 --handshakes --tls "127.0.0.1:$TLS_PORT"
	assert_success
	jq -e '.handshake_rate > 0 and .errors == 0 and .acked > 0' <<<"$output"
}

@test "--handshakes without --tls: TCP connects/s, one per request, each one seen by submitd" {
	before=$(sd_metric submitd_connections_accepted_total)
	bench_json -n 300 -c 3 --handshakes --conn "127.0.0.1:$SD_PORT"
	assert_success
	jq -e '.tls == false and .handshakes == 300 and .acked == 300 and .conn_acked == 300
		and .handshake_rate > 0' <<<"$output"
	wait_for sd_metric_is submitd_connections_accepted_total '' $((before + 300))
	run "$BENCH" --handshakes --idle "127.0.0.1:$SD_PORT"
	assert_failure 2
}

@test "--tls-resume: the slots' later handshakes resume by ticket" {
	bench_json -d 1 -c 4 --handshakes --tls --tls-resume --tls-ca "$CERTS/ca.pem" "127.0.0.1:$TLS_PORT"
	assert_success
	echo "$output"
	# Each slot's first handshake is a full one; the others offer a ticket.
	jq -e '.errors == 0 and .resumed > 0 and .resumed >= .handshakes - 4 - 4' <<<"$output"
	bench_json -d 0.5 -c 4 --handshakes --tls "127.0.0.1:$TLS_PORT"
	assert_success
	jq -e '.resumed == 0 and .handshakes > 0' <<<"$output"
}

@test "--tls against a plaintext port: the handshake fails in bounded time, exit 1" {
	start=$SECONDS
	bench_json -d 0.5 -c 2 --tls "127.0.0.1:$SD_PORT"
	assert_failure 1
	[ $((SECONDS - start)) -le 15 ]
	jq -e '.acked == 0 and .connect_errors == 2' <<<"$output"
	# submitd takes the ClientHello for a frame too large and closes.
	[[ $stderr == *"connection 0: TLS handshake with 127.0.0.1:$SD_PORT: closed by the server"* ]]
}
