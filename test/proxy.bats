#!/usr/bin/env bats
# The PROXY protocol (v1 and v2) from proxy_protocol_from: HAProxy from
# Debian with send-proxy and send-proxy-v2 in front of the plaintext and the
# TLS port, the client's address in every spool record, and each refusal
# path with helpers/proxyclient.py: a malformed header (v1 and v2), none at
# all, a header from outside the trusted networks, one split over many
# reads, a stalled one (tls_handshake_timeout) and one cut short. The trusted
# peer is 127.0.0.3 (proxy_protocol_from = {"127.0.0.3/32"}); clients that
# connect from 127.0.0.1 are direct ones.

load helpers/common
load helpers/tls
source "$SD_ROOT/test/helpers/haproxy.bash"

PC="python3 $SD_ROOT/test/helpers/proxyclient.py"
TRUSTED=127.0.0.3

setup_file() {
	export CERTS=$BATS_FILE_TMPDIR/certs
	sh "$SD_ROOT/test/helpers/tls-certs.sh" "$CERTS"
}

setup() {
	SPOOL=$BATS_TEST_TMPDIR/spool
	mkdir -p "$SPOOL"
}

teardown() {
	hap_stop
	sd_stop
}

# proxy_start [LINES...]: submitd with a plaintext (SD_PORT) and a tls://
# listener (TLS_PORT), the spool, and 127.0.0.3 trusted for PROXY headers.
proxy_start() {
	tls_start 'workers = 1' "spool_dir = \"$SPOOL\"" "proxy_protocol_from = {\"$TRUSTED/32\"}" "$@"
}

# records: "ADDR PORT" of every record in the spool, one a line.
records() {
	"$SD_ROOT/build/submit-spool" cat "$SPOOL" | jq -r '"\(.addr) \(.port)"'
}

# local_port OUT: the client's port, from proxyclient's first line.
local_port() {
	sed -n 's/^local [^ ]* \([0-9]*\)$/\1/p' "$1"
}

@test "haproxy send-proxy (v1) to the plaintext port: every record has the client's address and port, not haproxy's" {
	command -v haproxy >/dev/null || skip "haproxy is not installed"
	proxy_start
	HAP_SERVER_OPTS="send-proxy source $TRUSTED" hap_start "$BATS_TEST_TMPDIR" "$SD_PORT" ""
	run $PC --port "${HAP_PORTS[0]}" --bind 127.0.0.5 --submits 5 none
	echo "$output"
	assert_success
	assert_line "acked 5"
	local port
	port=$(sed -n 's/^local 127.0.0.5 //p' <<<"$output")
	# hap_start's probes of the frontend may have been passed on too.
	[ "$(sd_metric submitd_proxy_headers_total '{version="1"}')" -ge 1 ]
	run sd_metric submitd_proxy_header_failures_total
	assert_output 0
	run records
	assert_output "$(printf '127.0.0.5 %s\n' "$port" "$port" "$port" "$port" "$port")"
}

@test "haproxy send-proxy-v2 in front of the TLS port (TLS passed through): the header before the handshake, the client's address stored" {
	command -v haproxy >/dev/null || skip "haproxy is not installed"
	proxy_start
	HAP_SERVER_OPTS="send-proxy-v2 source $TRUSTED" hap_start "$BATS_TEST_TMPDIR" "$TLS_PORT" ""
	run $PC --port "${HAP_PORTS[0]}" --bind 127.0.0.6 --tls "$CERTS/ca.pem" --submits 3 none
	echo "$output"
	assert_success
	assert_line "acked 3"
	local port
	port=$(sed -n 's/^local 127.0.0.6 //p' <<<"$output")
	# hap_start's probes of the frontend may have been passed on too.
	[ "$(sd_metric submitd_proxy_headers_total '{version="2"}')" -ge 1 ]
	run sd_metric submitd_proxy_header_failures_total
	assert_output 0
	run sd_metric submitd_tls_handshakes_total '{result="ok"}'
	assert_output 1
	run records
	assert_output "$(printf '127.0.0.6 %s\n' "$port" "$port" "$port")"
}

@test "trusted headers: v1 TCP4 and TCP6, v2 IPv4 and IPv6, each also split into 1-byte reads; v1 UNKNOWN and v2 LOCAL keep the peer's address" {
	proxy_start
	local h out=$BATS_TEST_TMPDIR/out
	for h in v1:192.0.2.1:5001 v1:2001:db8::1:5002 v2:198.51.100.7:5003 v2:2001:db8::2:5004; do
		run $PC --port "$SD_PORT" --bind "$TRUSTED" --submits 1 "$h"
		assert_success
		run $PC --port "$SD_PORT" --bind "$TRUSTED" --submits 1 --split 1 "$h"
		assert_success
	done
	$PC --port "$SD_PORT" --bind "$TRUSTED" --submits 1 v1-unknown >"$out"
	local p1 p2
	p1=$(local_port "$out")
	$PC --port "$SD_PORT" --bind "$TRUSTED" --submits 1 --split 3 v2-local >"$out"
	p2=$(local_port "$out")
	run sd_metric submitd_proxy_headers_total '{version="1"}'
	assert_output 5
	run sd_metric submitd_proxy_headers_total '{version="2"}'
	assert_output 5
	run records
	assert_output "$(printf '%s\n' '192.0.2.1 5001' '192.0.2.1 5001' '2001:db8::1 5002' \
		'2001:db8::1 5002' '198.51.100.7 5003' '198.51.100.7 5003' '2001:db8::2 5004' \
		'2001:db8::2 5004' "$TRUSTED $p1" "$TRUSTED $p2")"
	run sd_metric submitd_proxy_header_failures_total
	assert_output 0
}

@test "trusted, TLS port: a v1 header split into 1-byte reads, then the handshake" {
	proxy_start
	run $PC --port "$TLS_PORT" --bind "$TRUSTED" --tls "$CERTS/ca.pem" --split 1 --submits 2 v1:192.0.2.9:4444
	echo "$output"
	assert_success
	run records
	assert_output "$(printf '%s\n' '192.0.2.9 4444' '192.0.2.9 4444')"
}

@test "malformed headers from the trusted peer (v1 and v2, and none at all): closed without an ack, counted, logged with the address" {
	proxy_start
	local h n=0
	for h in \
		hex:"$(printf 'PROXY TCP4 192.0.2.1 198.51.100.7 99999 443\r\n' | od -An -v -tx1 | tr -d ' \n')" \
		hex:"$(printf 'PROXY TCP4 2001:db8::1 198.51.100.7 1 443\r\n' | od -An -v -tx1 | tr -d ' \n')" \
		hex:"$(printf 'PROXY TCP4 192.0.2.1 198.51.100.7 1 443\n' | od -An -v -tx1 | tr -d ' \n')" \
		hex:"$(printf 'PROXY %0110d\r\n' 0 | od -An -v -tx1 | tr -d ' \n')" \
		hex:0d0a0d0a000d0a515549540a1111000c \
		hex:0d0a0d0a000d0a515549540a2111000bc000020100000000000000 \
		hex:0d0a0d0a000d0a515549540a21110401 \
		hex:0d0a0d0a000d0a515549540b \
		none; do
		run $PC --port "$SD_PORT" --bind "$TRUSTED" --expect close "$h"
		echo "$h: $output"
		assert_success
		assert_line closed
		n=$((n + 1))
	done
	run $PC --port "$TLS_PORT" --bind "$TRUSTED" --tls "$CERTS/ca.pem" --expect close none
	assert_success
	n=$((n + 1))
	wait_for sd_metric_is submitd_proxy_header_failures_total '{reason="malformed"}' "$n"
	run sd_metric submitd_connections_closed_total '{reason="proxy"}'
	assert_output "$n"
	run sd_metric submitd_rsp_send_total
	assert_output 0
	# At most one line a second: at least the first.
	sd_log | grep -q "$TRUSTED:[0-9]*: PROXY header refused: v1: a port that is not 0 to 65535"
}

@test "a PROXY header from outside proxy_protocol_from: a protocol error on the plaintext port, refused on the TLS port; direct clients work" {
	proxy_start
	run $PC --port "$SD_PORT" --expect close v1:192.0.2.1:5000
	assert_success
	run $PC --port "$SD_PORT" --expect close v2:192.0.2.1:5000
	assert_success
	run $PC --port "$TLS_PORT" --tls "$CERTS/ca.pem" --expect close v2:192.0.2.1:5000
	assert_success
	wait_for sd_metric_is submitd_proxy_header_failures_total '{reason="untrusted"}' 3
	run sd_metric submitd_connections_closed_total '{reason="protocol"}'
	assert_output 2
	run sd_metric submitd_proxy_headers_total
	assert_output 0
	# A direct client (no header) from 127.0.0.1 on both ports.
	run $PC --port "$SD_PORT" --submits 2 none
	assert_success
	run $PC --port "$TLS_PORT" --tls "$CERTS/ca.pem" --submits 2 none
	assert_success
	run sh -c "'$SD_ROOT/build/submit-spool' cat '$SPOOL' | jq -r .addr | sort | uniq -c | tr -s ' '"
	assert_output " 4 127.0.0.1"
}

@test "without proxy_protocol_from no one is trusted: the same header from 127.0.0.3 is a protocol error" {
	tls_start 'workers = 1'
	run $PC --port "$SD_PORT" --bind "$TRUSTED" --expect close v1:192.0.2.1:5000
	assert_success
	wait_for sd_metric_is submitd_proxy_header_failures_total '{reason="untrusted"}' 1
}

@test "tls_handshake_timeout = 1: a trusted peer that sends nothing, or half a header, is closed (timeout); one that closes midway counts as closed" {
	proxy_start 'tls_handshake_timeout = 1'
	local out=$BATS_TEST_TMPDIR/out
	run $PC --port "$SD_PORT" --bind "$TRUSTED" --expect close --timeout 20 hex:50524f585920544350
	assert_success
	run $PC --port "$TLS_PORT" --bind "$TRUSTED" --expect close --timeout 20 hex:0d0a0d0a000d
	assert_success
	wait_for sd_metric_is submitd_proxy_header_failures_total '{reason="timeout"}' 2
	run $PC --port "$SD_PORT" --bind "$TRUSTED" --expect nothing hex:50524f585920
	assert_success
	wait_for sd_metric_is submitd_proxy_header_failures_total '{reason="closed"}' 1
	run sd_metric submitd_connections_closed_total '{reason="proxy"}'
	assert_output 3
}

@test "proxy_protocol_from is checked: FILE:LINE for a bad network, host bits, a bad prefix; accepted lists print back" {
	local conf=$BATS_TEST_TMPDIR/c.conf
	local bad
	for bad in '"10.1.0.0/8": bits set past the prefix length' \
		'"10.0.0.0/33": the prefix length is not 0 to 32' \
		'"lb.example": not an IPv4 or IPv6 address' \
		'"::/129": the prefix length is not 0 to 128'; do
		cp "$(sd_config 'workers = 1' "proxy_protocol_from = {\"127.0.0.1\", ${bad%%: *}}")" "$conf"
		run "$SD_BIN" -t -c "$conf"
		assert_failure
		assert_output --partial "$conf:$(grep -n '^proxy_protocol_from' "$conf" | cut -d: -f1): proxy_protocol_from: $bad"
	done
	cp "$(sd_config 'workers = 1' 'proxy_protocol_from = {"10.0.0.0/8", "2001:db8::/32", "127.0.0.1"}')" "$conf"
	run "$SD_BIN" -T -c "$conf"
	assert_success
	assert_line 'proxy_protocol_from = {"10.0.0.0/8", "2001:db8::/32", "127.0.0.1"}'
}
