#!/usr/bin/env bats
# Native TLS on tls:// listeners: the protocol suite's guarantees over TLS
# (pipelining, half-close, protocol errors, timeouts, backpressure, the
# spool), what a TLS port does with other bytes, handshake failures and
# timeouts, client certificates, certificate checks at start and on reload,
# and the TLS metrics. The certificates come from helpers/tls-certs.sh; the
# client is helpers/tlsclient.py (sdclient.py's subcommands over TLS).

load helpers/common
load helpers/spool
load helpers/backpressure
load helpers/tls

TLSC="python3 $SD_ROOT/test/helpers/tlsclient.py"

setup_file() {
	export CERTS=$BATS_FILE_TMPDIR/certs
	sh "$SD_ROOT/test/helpers/tls-certs.sh" "$CERTS"
}

setup() {
	SPOOL=$BATS_TEST_TMPDIR/spool
	ACKS=$BATS_TEST_TMPDIR/acks
	GOOD_CLIENT=(--cert "$CERTS/client.pem" --key "$CERTS/client.key")
	BAD_CLIENT=(--cert "$CERTS/badclient.pem" --key "$CERTS/badclient.key")
	EXPIRED_CLIENT=(--cert "$CERTS/expired-client.pem" --key "$CERTS/expired-client.key")
}

teardown() {
	sd_stop
	if [ -n "${NOBODY_DIR:-}" ]; then
		rm -rf "$NOBODY_DIR"
		NOBODY_DIR=
	fi
}

# tlsc ARGS...: tlsclient.py against TLS_PORT (the options before the subcommand).
tlsc() {
	$TLSC --port "${TLS_PORT:?}" "$@"
}

# fingerprint FILE: the SHA-256 fingerprint of FILE's first certificate, as tlsclient prints it.
fingerprint() {
	openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//'
}

# not_after FILE: the certificate's notAfter, Unix seconds.
not_after() {
	date -u -d "$(openssl x509 -in "$1" -noout -enddate | sed 's/^notAfter=//')" +%s
}

# tls_conf FILE [LINES...]: a config file of tls_lines and sd_config's defaults.
tls_conf() {
	local lines
	mapfile -t lines < <(tls_lines "${@:2}")
	cp "$(sd_config "${lines[@]}")" "$1"
}

# line_of FILE OPTION: the number of the line that sets OPTION.
line_of() {
	grep -n "^$2 *=" "$1" | head -1 | cut -d: -f1
}

# start_fails CONF MESSAGE: submitd with CONF (written by tls_conf, so
# logging to sd_log's file) exits 1 at start and says MESSAGE, on stderr (a
# config error, before the log opens) or in its log (a certificate's).
start_fails() {
	: >"$BATS_TEST_TMPDIR/submitd.log"
	run timeout 20 "$SD_BIN" -f -c "$1"
	assert_equal "$status" 1
	local log
	log=$(sd_log || true) # no submitd.out here: cat fails for it
	output=$output$'\n'$log
	echo "$output"
	assert_output --partial "$2"
}

# --- the protocol over TLS ---

@test "TLS: 10,000 pipelined Submits acked in order (TLS 1.3), and mixed ones with payloads over TLS 1.2" {
	tls_start
	run tlsc pipeline 10000
	assert_success
	assert_output "acked 10000 in order"
	wait_for sd_metric_is submitd_rsp_send_total '{cmd="submit"}' 10000
	# The bytes counted are the protocol's, not the records'.
	wait_for sd_metric_is submitd_received_bytes_total '' $((10000 * 13))
	wait_for sd_metric_is submitd_sent_bytes_total '' $((10000 * 14))
	run tlsc --max-version TLSv1.2 pipeline 3000 --mixed --payload-max 300
	assert_success
	wait_for sd_metric_is submitd_req_recv_total '{cmd="conn"}' 600
	wait_for sd_metric_is submitd_rsp_send_total '{cmd="submit"}' 12400
	run tlsc trickle 30
	assert_success
	run sd_metric submitd_tls_handshakes_total '{result="ok"}'
	assert_output 3
	run sd_metric submitd_protocol_errors_total
	assert_output 0
}

@test "TLS with the spool on: every Submit acked over TLS is in the spool once, byte for byte" {
	tls_start "spool_dir = \"$SPOOL\"" 'spool_sync = always' 'spool_segment_size = 65536'
	run tlsc spoolpipe 4000 --conn 0 --ack-log "$ACKS"
	assert_success
	assert_output "acked 4000 in order"
	run tlsc --max-version TLSv1.2 spoolpipe 3000 --conn 1 --ack-log "$ACKS"
	assert_success
	run sd_metric submitd_spool_records_total
	assert_output 7000
	sd_stop
	run spool_check
	echo "$output"
	assert_success
	assert_output --partial "result 0 7000, result 1 0, result 2 0; records 7000; missing 0"
}

@test "TLS half-close (TCP shutdown or close_notify, TLS 1.3 and 1.2): every ack, then close_notify and FIN" {
	tls_start
	run tlsc halfclose 500
	echo "$output"
	assert_success
	assert_output "acks 500 close_notify"
	run tlsc --half-close close_notify halfclose 500
	echo "$output"
	assert_success
	assert_output "acks 500 close_notify"
	run tlsc --max-version TLSv1.2 --half-close close_notify halfclose 50
	echo "$output"
	assert_success
	assert_output "acks 50 close_notify"
	wait_for sd_metric_is submitd_connections_closed_total '{reason="client"}' 3
	run sd_metric submitd_rsp_send_total
	assert_output 1050
}

# tls_protocol_error KIND REASON ARGS...: 3 good Submits then a bad frame
# over TLS: the 3 acks, then the close; another TLS connection works on.
tls_protocol_error() {
	local kind=$1 reason=$2
	shift 2
	run tlsc bad "$kind" --before 3 --other "$@"
	echo "$output"
	assert_success
	assert_output --regexp '^acks 3 (close_notify|eof|reset)$'
	wait_for sd_metric_is submitd_protocol_errors_total "{reason=\"$reason\"}" 1
}

@test "TLS protocol errors: earlier acks arrive, then the connection closes; counted by reason" {
	tls_start
	tls_protocol_error unknown unknown_command --command 0x03
	tls_protocol_error large frame_too_large --len 65537
	tls_protocol_error body body_too_short
	wait_for sd_metric_is submitd_connections_closed_total '{reason="protocol"}' 3
	run sd_metric submitd_protocol_errors_total
	assert_output 3
	run tlsc roundtrip
	assert_success
}

@test "TLS idle_timeout = 1: closed as idle after the handshake and after a frame" {
	tls_start 'idle_timeout = 1'
	run tlsc idle --min 0.5 --max 5
	echo "$output"
	assert_success
	run tlsc idle --send-first --min 0.5 --max 5
	echo "$output"
	assert_success
	wait_for sd_metric_is submitd_connections_closed_total '{reason="idle"}' 2
	run sd_metric submitd_connections_closed_total '{reason="handshake"}'
	assert_output 0
}

@test "TLS send_timeout = 1: a client blocked on output that never reads is closed, with acks owed" {
	tls_start 'send_timeout = 1'
	sd_spawn "$BATS_TEST_TMPDIR/stall.out" $TLSC --port "$TLS_PORT" --timeout 60 stall --stall 2
	wait_for -t 30 sd_metric_is submitd_connections_closed_total '{reason="send_timeout"}' 1
	wait_for sd_metric_is submitd_client_connected '' 0
	local acks sent
	acks=$(sd_metric submitd_rsp_send_total)
	sent=$(sd_metric submitd_sent_bytes_total)
	echo "acks $acks, ack bytes sent $sent"
	((sent < acks * 14)) || fail "all $((acks * 14)) ack bytes were sent: nothing was owed"
	run sd_metric submitd_connections_closed_total
	assert_output 1
}

@test "TLS max_output_buffer: a client that stops reading is not read further; reading resumes when it reads" {
	tls_start 'workers = 1' 'max_output_buffer = 65536' 'read_buffer_size = 4096'
	STALL_PEER=($TLSC --port "$TLS_PORT")
	stall_and_resume 65536
	run sd_metric submitd_connections_closed_total
	assert_output 1
}

# --- other bytes, truncated and stalled handshakes ---

@test "plaintext Submits to the TLS port: closed, no ack byte, result=\"not_tls\"" {
	tls_start
	run $SD_CLIENT --port "$TLS_PORT" raw 0000000d0230303030303030310000000d023030303030303032 --eof
	echo "$output"
	assert_success
	assert_output --regexp '^(eof|reset)$'
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="not_tls"}' 1
	wait_for sd_metric_is submitd_connections_closed_total '{reason="handshake"}' 1
	run sd_metric submitd_req_recv_total
	assert_output 0
	run sd_metric submitd_sent_bytes_total
	assert_output 0
	# The plaintext port is not affected.
	run sd_client roundtrip
	assert_success
}

@test "a TLS client on the plaintext port: a protocol error (frame_too_large), no handshake" {
	tls_start
	run tlsc --port "$SD_PORT" roundtrip
	echo "$output"
	assert_failure
	wait_for sd_metric_is submitd_protocol_errors_total '{reason="frame_too_large"}' 1
	run timeout 10 openssl s_client -connect "127.0.0.1:$SD_PORT" </dev/null
	assert_failure
	wait_for sd_metric_is submitd_protocol_errors_total '{reason="frame_too_large"}' 2
	wait_for sd_metric_is submitd_connections_closed_total '{reason="protocol"}' 2
	run sd_metric submitd_tls_handshakes_total
	assert_output 0
}

@test "a truncated handshake (half a ClientHello, then close): result=\"closed\"" {
	tls_start
	run tlsc hello --part half --then close
	assert_success
	assert_output --regexp '^sent [0-9]+ of [0-9]+ bytes$'
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="closed"}' 1
	wait_for sd_metric_is submitd_connections_closed_total '{reason="handshake"}' 1
	run sd_metric submitd_tls_handshakes_total
	assert_output 1
}

# closed_after OUT MIN MAX: the hello client in OUT saw the close within [MIN, MAX] s.
closed_after() {
	local t
	t=$(sed -n 's/^closed after \([0-9.]*\) s .*/\1/p' "$1")
	[ -n "$t" ] || fail "no close in $1: $(cat "$1")"
	echo "closed after $t s"
	awk -v t="$t" -v lo="$2" -v hi="$3" 'BEGIN { exit !(t >= lo && t <= hi) }' ||
		fail "closed after $t s, not within [$2, $3]"
}

@test "tls_handshake_timeout = 1: a stalled handshake (nothing, or half a ClientHello) is closed, result=\"timeout\"" {
	tls_start 'tls_handshake_timeout = 1'
	sd_spawn "$BATS_TEST_TMPDIR/none.out" $TLSC --port "$TLS_PORT" --timeout 20 hello --part none --then wait
	sd_spawn "$BATS_TEST_TMPDIR/half.out" $TLSC --port "$TLS_PORT" --timeout 20 hello --part half --then wait
	wait_for -t 10 sd_metric_is submitd_tls_handshakes_total '{result="timeout"}' 2
	wait_for -t 10 grep -q '^closed after' "$BATS_TEST_TMPDIR/none.out"
	wait_for -t 10 grep -q '^closed after' "$BATS_TEST_TMPDIR/half.out"
	cat "$BATS_TEST_TMPDIR/none.out" "$BATS_TEST_TMPDIR/half.out"
	# Checked once a second: between 1 and 2 s, and some slack for a loaded machine.
	closed_after "$BATS_TEST_TMPDIR/none.out" 1 4
	closed_after "$BATS_TEST_TMPDIR/half.out" 1 4
	wait_for sd_metric_is submitd_connections_closed_total '{reason="handshake"}' 2
	run sd_metric submitd_tls_handshakes_total
	assert_output 2
}

@test "tls_handshake_timeout is range-checked: 0 and 3601 refused with FILE:LINE, 1 and 3600 accepted" {
	local conf=$BATS_TEST_TMPDIR/t.conf v
	for v in 0 3601; do
		tls_conf "$conf" "tls_handshake_timeout = $v"
		run "$SD_BIN" -t -c "$conf"
		assert_failure
		assert_output --partial "$conf:$(line_of "$conf" tls_handshake_timeout): tls_handshake_timeout"
	done
	for v in 1 3600; do
		tls_conf "$conf" "tls_handshake_timeout = $v"
		run "$SD_BIN" -t -c "$conf"
		assert_success
	done
}

# --- client certificates ---

# as_client WHAT ARGS...: a TLS round trip with the client options ARGS;
# WHAT is ok or fail.
as_client() {
	local want=$1
	shift
	run tlsc --ca "$CERTS/ca.pem" "$@" roundtrip
	echo "client $*: $output"
	if [ "$want" = ok ]; then
		assert_success
		assert_output "0000000e81303030303030343200"
	else
		assert_failure
	fi
}

@test "tls_verify_client = required: no certificate fails (no_certificate), another CA's or an expired one fails (bad_certificate), a good one works" {
	tls_start "tls_ca = \"$CERTS/ca.pem\"" 'tls_verify_client = required'
	as_client fail
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="no_certificate"}' 1
	as_client fail --max-version TLSv1.2
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="no_certificate"}' 2
	as_client fail "${BAD_CLIENT[@]}"
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="bad_certificate"}' 1
	as_client fail "${EXPIRED_CLIENT[@]}"
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="bad_certificate"}' 2
	as_client ok "${GOOD_CLIENT[@]}"
	as_client ok "${GOOD_CLIENT[@]}" --max-version TLSv1.2
	run sd_metric submitd_tls_handshakes_total '{result="ok"}'
	assert_output 2
	wait_for sd_metric_is submitd_connections_closed_total '{reason="handshake"}' 4
	run sd_metric submitd_req_recv_total
	assert_output 2
}

@test "tls_verify_client = optional: no certificate works, a good one works, another CA's fails (bad_certificate)" {
	tls_start "tls_ca = \"$CERTS/ca.pem\"" 'tls_verify_client = optional'
	as_client ok
	as_client ok "${GOOD_CLIENT[@]}"
	as_client fail "${BAD_CLIENT[@]}"
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="bad_certificate"}' 1
	as_client fail "${BAD_CLIENT[@]}" --max-version TLSv1.2
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="bad_certificate"}' 2
	run sd_metric submitd_tls_handshakes_total '{result="ok"}'
	assert_output 2
}

@test "tls_verify_client = none: clients without a certificate work; the server's name and CA check out" {
	tls_start
	as_client ok
	as_client ok --servername localhost
	as_client ok "${GOOD_CLIENT[@]}"
	# The client checks the server's name: a name the certificate lacks fails.
	as_client fail --servername not-this-host.example
	run tlsc --ca "$CERTS/other-ca.pem" roundtrip
	assert_failure
	run sd_metric submitd_tls_handshakes_total '{result="ok"}'
	assert_output 3
}

@test "tls_verify_client optional or required without tls_ca: FILE:LINE: tls_verify_client ... needs tls_ca" {
	local conf=$BATS_TEST_TMPDIR/t.conf v
	for v in optional required; do
		tls_conf "$conf" "tls_verify_client = $v"
		run "$SD_BIN" -t -c "$conf"
		assert_failure
		assert_output --partial "$conf:$(line_of "$conf" tls_verify_client): tls_verify_client"
		assert_output --partial "needs tls_ca"
	done
}

# --- the certificate and key at start ---

@test "start with an expired certificate: exit 1, FILE: certificate expired (at start and with -t)" {
	local conf=$BATS_TEST_TMPDIR/t.conf
	tls_conf "$conf" "tls_certificate = \"$CERTS/expired.pem\"" "tls_key = \"$CERTS/expired.key\""
	start_fails "$conf" "$CERTS/expired.pem: certificate expired on 2021-01-01 00:00:00 UTC"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "$CERTS/expired.pem: certificate expired"
}

@test "start with a key that does not match the certificate: exit 1, KEY: key does not match certificate CERT" {
	local conf=$BATS_TEST_TMPDIR/t.conf
	tls_conf "$conf" "tls_key = \"$CERTS/server2.key\""
	start_fails "$conf" "$CERTS/server2.key: key does not match certificate $CERTS/server.pem"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "key does not match"
}

@test "start with a missing certificate, key or CA file: exit 1, FILE: cannot read" {
	local conf=$BATS_TEST_TMPDIR/t.conf f
	for f in tls_certificate tls_key; do
		tls_conf "$conf" "$f = \"$CERTS/missing.pem\""
		start_fails "$conf" "$CERTS/missing.pem: cannot read: No such file or directory"
	done
	tls_conf "$conf" "tls_ca = \"$CERTS/missing.pem\"" 'tls_verify_client = required'
	start_fails "$conf" "$CERTS/missing.pem: cannot read"
	# A file that is not PEM.
	head -c 100 /dev/urandom >"$BATS_TEST_TMPDIR/junk.pem"
	tls_conf "$conf" "tls_certificate = \"$BATS_TEST_TMPDIR/junk.pem\""
	start_fails "$conf" "$BATS_TEST_TMPDIR/junk.pem: no certificate found"
}

@test "-t warns for a certificate that expires within 30 days (expires in N days) and exits 0" {
	local conf=$BATS_TEST_TMPDIR/t.conf
	tls_conf "$conf" "tls_certificate = \"$CERTS/soon.pem\"" "tls_key = \"$CERTS/soon.key\""
	run "$SD_BIN" -t -c "$conf"
	echo "$output"
	assert_success
	assert_output --regexp "$CERTS/soon.pem: certificate expires in (9|10) days \("
	# A certificate with years left: no warning.
	tls_conf "$conf"
	run "$SD_BIN" -t -c "$conf"
	assert_success
	refute_output --partial "expires in"
}

@test "a tls:// listener without tls_certificate or tls_key: FILE:LINE: listen: \"tls://...\" needs tls_certificate and tls_key" {
	local conf=$BATS_TEST_TMPDIR/t.conf
	tls_conf "$conf" 'tls_certificate = ""'
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "$conf:$(line_of "$conf" listen): listen: \"tls://127.0.0.1:0\" needs tls_certificate and tls_key"
	tls_conf "$conf" 'tls_key = ""'
	start_fails "$conf" "$conf:$(line_of "$conf" listen): listen: \"tls://127.0.0.1:0\" needs tls_certificate and tls_key"
}

@test "-t with user = nobody and the key root's, mode 0600: fails naming the key" {
	needs_root
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	# A directory nobody can search, so only the key's own mode is in the way.
	NOBODY_DIR=$(mktemp -d /tmp/submitd-tls.XXXXXX)
	chmod 755 "$NOBODY_DIR"
	cp "$CERTS/server.pem" "$CERTS/server.key" "$NOBODY_DIR/"
	chmod 644 "$NOBODY_DIR/server.pem"
	chmod 600 "$NOBODY_DIR/server.key"
	local conf=$BATS_TEST_TMPDIR/t.conf
	tls_conf "$conf" 'user = "nobody"' "tls_certificate = \"$NOBODY_DIR/server.pem\"" \
		"tls_key = \"$NOBODY_DIR/server.key\""
	run "$SD_BIN" -t -c "$conf"
	echo "$output"
	assert_failure
	assert_output --partial "$NOBODY_DIR/server.key: not readable by user nobody: Permission denied"
	# Readable by nobody: -t passes.
	chmod 644 "$NOBODY_DIR/server.key"
	run "$SD_BIN" -t -c "$conf"
	assert_success
}

# --- reload ---

# set_cert NAME: the config serves NAME.pem with NAME.key (either may be given as NAME:KEYNAME).
set_cert() {
	local cert=${1%%:*} key=${1#*:}
	sed -i -e "s|^tls_certificate = .*|tls_certificate = \"$CERTS/$cert.pem\"|" \
		-e "s|^tls_key = .*|tls_key = \"$CERTS/$key.key\"|" "$SD_CONF"
}

@test "reload to server2.pem under TLS load: no client error, every request acked, new connections get server2" {
	tls_start 'workers = 2'
	local fp1 fp2 out=$BATS_TEST_TMPDIR/load.out load n json
	fp1=$(fingerprint "$CERTS/server.pem")
	fp2=$(fingerprint "$CERTS/server2.pem")
	run tlsc --ca "$CERTS/ca.pem" fingerprint
	assert_output "$fp1 TLSv1.3"
	sd_spawn "$out" $TLSC --port "$TLS_PORT" --ca "$CERTS/ca.pem" load --conns 8 --duration 60
	load=$SD_SPAWNED
	wait_for grep -q '^started' "$out"
	wait_for -t 10 eval '[ "$(sd_metric submitd_req_recv_total)" -ge 500 ]'
	set_cert server2
	kill -HUP "$SD_PID"
	wait_for -t 15 sd_log_count "reload: configuration $SD_CONF applied"
	wait_for -t 20 sd_metric_is submitd_generations '' 1
	run tlsc --ca "$CERTS/ca.pem" fingerprint
	assert_output "$fp2 TLSv1.3"
	# Acks keep coming after the switch.
	n=$(sd_metric submitd_req_recv_total)
	wait_for -t 10 eval '[ "$(sd_metric submitd_req_recv_total)" -ge $((n + 500)) ]'
	kill -INT "$load"
	wait_for -t 20 grep -q '^{' "$out"
	cat "$out"
	json=$(grep '^{' "$out")
	assert_equal "$(jq .errors <<<"$json")" 0
	[ "$(jq .acked <<<"$json")" -gt 1000 ]
	# The old generation's connections were closed between two acks and came back on server2.
	[ "$(jq .reconnects <<<"$json")" -ge 1 ]
	[ "$(jq --arg f "$fp2" '.fingerprints[$f] // 0' <<<"$json")" -ge 1 ]
	[ "$(jq --arg f "$fp1" '.fingerprints[$f] // 0' <<<"$json")" -ge 8 ]
	# What the server received it acked, and the clients saw every ack (plus the two probes).
	wait_for sd_metric_is submitd_client_connected '' 0
	assert_equal "$(sd_metric submitd_req_recv_total)" "$(sd_metric submitd_rsp_send_total)"
	assert_equal "$(sd_metric submitd_req_recv_total)" $(($(jq .acked <<<"$json") + 2))
	run sd_metric submitd_tls_certificate_expiry_timestamp_seconds
	assert_output "$(not_after "$CERTS/server2.pem")"
}

@test "reload to a mismatched key or an expired certificate is refused: reload failed, gauge 0, the old certificate still served" {
	tls_start
	local fp1 fp2
	fp1=$(fingerprint "$CERTS/server.pem")
	fp2=$(fingerprint "$CERTS/server2.pem")
	run sd_metric submitd_config_last_reload_successful
	assert_output 1
	set_cert server:server2
	kill -HUP "$SD_PID"
	wait_for -t 15 sd_log_count "reload failed"
	run sd_log_count "$CERTS/server2.key: key does not match certificate $CERTS/server.pem"
	assert_output 1
	wait_for sd_metric_is submitd_config_last_reload_successful '' 0
	run tlsc --ca "$CERTS/ca.pem" fingerprint
	assert_output "$fp1 TLSv1.3"
	set_cert expired
	kill -HUP "$SD_PID"
	wait_for -t 15 eval '[ "$(sd_log_count "reload failed")" -eq 2 ]'
	run sd_log_count "$CERTS/expired.pem: certificate expired"
	assert_output 1
	run sd_metric submitd_config_last_reload_successful
	assert_output 0
	run tlsc --ca "$CERTS/ca.pem" fingerprint
	assert_output "$fp1 TLSv1.3"
	run sd_metric submitd_tls_certificate_expiry_timestamp_seconds
	assert_output "$(not_after "$CERTS/server.pem")"
	run sd_metric submitd_generations
	assert_output 1
	# A good one is applied.
	set_cert server2
	kill -HUP "$SD_PID"
	wait_for -t 15 sd_log_count "reload: configuration $SD_CONF applied"
	wait_for sd_metric_is submitd_config_last_reload_successful '' 1
	wait_for -t 20 sd_metric_is submitd_generations '' 1
	run tlsc --ca "$CERTS/ca.pem" fingerprint
	assert_output "$fp2 TLSv1.3"
}

# --- metrics ---

@test "metrics: handshakes{result=\"ok\"} counts, tls_connections{version} is 1 while a client is connected and 0 after" {
	tls_start
	local i
	for i in 1 2 3; do
		run tlsc roundtrip
		assert_success
	done
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="ok"}' 3
	sd_spawn "$BATS_TEST_TMPDIR/h13.out" $TLSC --port "$TLS_PORT" hold 1 --verify --hold 60
	local h13=$SD_SPAWNED
	wait_for grep -q "connected 1" "$BATS_TEST_TMPDIR/h13.out"
	wait_for sd_metric_is submitd_tls_connections '{version="TLSv1.3"}' 1
	run sd_metric submitd_tls_connections '{version="TLSv1.2"}'
	assert_output 0
	sd_spawn "$BATS_TEST_TMPDIR/h12.out" $TLSC --port "$TLS_PORT" --max-version TLSv1.2 hold 1 --verify --hold 60
	local h12=$SD_SPAWNED
	wait_for grep -q "connected 1" "$BATS_TEST_TMPDIR/h12.out"
	wait_for sd_metric_is submitd_tls_connections '{version="TLSv1.2"}' 1
	run sd_metric submitd_tls_connections '{version="TLSv1.3"}'
	assert_output 1
	# A plaintext client is not a TLS connection.
	sd_spawn "$BATS_TEST_TMPDIR/hp.out" $SD_CLIENT --port "$SD_PORT" hold 1 --verify --hold 60
	wait_for grep -q "connected 1" "$BATS_TEST_TMPDIR/hp.out"
	wait_for sd_metric_is submitd_client_connected '' 3
	run sd_metric submitd_tls_connections
	assert_output 2
	kill -TERM "$h13" "$h12"
	wait_for sd_metric_is submitd_tls_connections '{version="TLSv1.3"}' 0
	wait_for sd_metric_is submitd_tls_connections '{version="TLSv1.2"}' 0
	run sd_metric submitd_tls_handshakes_total '{result="ok"}'
	assert_output 5
	run sd_metric submitd_tls_handshake_duration_seconds_count
	assert_output 5
	run sd_metric submitd_tls_handshake_duration_seconds_bucket '{le="+Inf"}'
	assert_output 5
	run sd_metric submitd_connections_closed_total '{reason="handshake"}'
	assert_output 0
}

@test "tls_min_version = \"TLSv1.3\" refuses a TLS 1.2-only client (result=\"protocol\")" {
	tls_start 'tls_min_version = "TLSv1.3"'
	run tlsc --max-version TLSv1.2 roundtrip
	echo "$output"
	assert_failure
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="protocol"}' 1
	wait_for sd_metric_is submitd_connections_closed_total '{reason="handshake"}' 1
	run tlsc fingerprint
	assert_success
	assert_output --regexp ' TLSv1\.3$'
	run sd_metric submitd_tls_handshakes_total '{result="ok"}'
	assert_output 1
}

@test "session tickets: a client resumes (TLS 1.3 and 1.2), across workers, counted in tls_resumed_handshakes_total" {
	tls_start 'workers = 2'
	local i
	for i in 1 2 3 4; do
		run tlsc resume
		assert_success
		assert_output "resumed yes TLSv1.3"
	done
	run tlsc --max-version TLSv1.2 resume
	assert_success
	assert_output "resumed yes TLSv1.2"
	wait_for sd_metric_is submitd_tls_resumed_handshakes_total '' 5
	run sd_metric submitd_tls_handshakes_total '{result="ok"}'
	assert_output 10
	# Four resumptions on two workers: count which workers did them (told, not asserted:
	# the kernel picks the worker).
	sd_metrics | grep '^submitd_tls_resumed_handshakes_total'
}

@test "submitd_tls_certificate_expiry_timestamp_seconds is the certificate's notAfter; absent without a TLS listener" {
	tls_start
	run sd_metric submitd_tls_certificate_expiry_timestamp_seconds
	assert_output "$(not_after "$CERTS/server.pem")"
	sd_stop
	sd_start
	run sd_metric submitd_tls_certificate_expiry_timestamp_seconds
	assert_failure
	run sd_metric submitd_req_recv_total
	assert_success
}

# --- a handshake flood ---

@test "500 connections stalled in the handshake: established TLS clients keep being served" {
	tls_start 'workers = 1' 'tls_handshake_timeout = 60'
	local hold=$BATS_TEST_TMPDIR/hold.out flood=$BATS_TEST_TMPDIR/flood.out holder flooder i
	sd_spawn "$hold" $TLSC --port "$TLS_PORT" hold 3 --verify --again --hold 120
	holder=$SD_SPAWNED
	wait_for grep -q "connected 3" "$hold"
	sd_spawn "$flood" $TLSC --port "$TLS_PORT" --timeout 60 flood 500 --part half --hold 120
	flooder=$SD_SPAWNED
	wait_for -t 30 grep -qE '^(stalled|tlsclient)' "$flood"
	cat "$flood"
	grep -q '^stalled 500$' "$flood"
	wait_for -t 30 eval '[ "$(sd_metric submitd_connections_accepted_total)" -ge 503 ]'
	for i in 1 2 3; do
		kill -USR1 "$holder"
		wait_for -t 30 eval '[ "$(grep -c "^again 3$" "$hold")" -ge '"$i"' ]'
	done
	run sd_metric submitd_tls_handshakes_total '{result="ok"}'
	assert_output 3
	run sd_metric submitd_tls_handshakes_total '{result="timeout"}'
	assert_output 0
	# 3 + 3 * 3 Submits served while the 500 waited.
	run sd_metric submitd_rsp_send_total
	assert_output 12
	# The flood goes: 500 handshakes closed by the peer midway.
	kill -TERM "$flooder"
	wait_for -t 30 sd_metric_is submitd_tls_handshakes_total '{result="closed"}' 500
	wait_for sd_metric_is submitd_connections_closed_total '{reason="handshake"}' 500
	run grep -c tlsclient "$hold"
	assert_output 0
}

@test "no allocation per message over TLS (allocated bytes flat under a pipelined TLS load)" {
	tls_start 'workers = 1'
	sd_sample_metrics "$BATS_TEST_TMPDIR/scrapes" 0.2
	SD_PORT=$TLS_PORT sd_bench "$BATS_TEST_TMPDIR/bench.json" -c 8 -d 8 --tls --tls-ca "$CERTS/ca.pem"
	sd_bench_wait "$SD_BENCH_PID" "$BATS_TEST_TMPDIR/bench.json" 30
	sd_kill_spawned
	jq -e '.ok and .errors == 0 and .acked > 0 and .tls_version == "TLSv1.3"' <<<"$SD_BENCH_JSON"
	# Past the first half of the load the gauge must not move: TLS records
	# are sealed into and opened from the connection's own buffers.
	run python3 "$SD_ROOT/test/helpers/allocflat.py" "$BATS_TEST_TMPDIR/scrapes" submitd_rsp_send_total
	echo "$output"
	assert_success
}
