#!/usr/bin/env bats
# Who may submit: auth = token (a Conn's client data against
# auth_tokens_file), certificate (the verified client certificate's
# identity), certificate_or_token; result 3 and the close after it on every
# refusal path, auth_timeout, the tokens file at start, on reload and with
# -t, submitd --hash-token, and nothing stored for a refused client.
# Clients: helpers/authclient.py; certificates: helpers/tls-certs.sh.

load helpers/common
load helpers/tls

AC="python3 $SD_ROOT/test/helpers/authclient.py"

setup_file() {
	export CERTS=$BATS_FILE_TMPDIR/certs
	sh "$SD_ROOT/test/helpers/tls-certs.sh" "$CERTS"
}

setup() {
	SPOOL=$BATS_TEST_TMPDIR/spool
	mkdir -p "$SPOOL"
	TOKENS=$BATS_TEST_TMPDIR/tokens
	# Two devices; device-1 has a second token (rotation).
	head -c 32 /dev/urandom | base64 -w0 >"$BATS_TEST_TMPDIR/t1"
	head -c 32 /dev/urandom | base64 -w0 >"$BATS_TEST_TMPDIR/t1b"
	head -c 48 /dev/urandom | base64 -w0 >"$BATS_TEST_TMPDIR/t2"
	head -c 32 /dev/urandom | base64 -w0 >"$BATS_TEST_TMPDIR/wrong"
	{
		echo "# device tokens"
		"$SD_BIN" --hash-token device-1 <"$BATS_TEST_TMPDIR/t1"
		"$SD_BIN" --hash-token device-1 <"$BATS_TEST_TMPDIR/t1b"
		echo
		"$SD_BIN" --hash-token device-2@fleet <"$BATS_TEST_TMPDIR/t2"
	} >"$TOKENS"
}

teardown() {
	sd_stop
}

token_start() {
	tls_start 'workers = 1' "spool_dir = \"$SPOOL\"" 'auth = token' \
		"auth_tokens_file = \"$TOKENS\"" "$@"
}

# reload_ok, reload_fails: SIGHUP, then wait for the log to say it was applied, or failed.
reload_ok() {
	local n
	n=$(sd_log_count 'reload: configuration .* applied' || true)
	kill -HUP "$SD_PID"
	wait_for -t 15 eval '[ "$(sd_log_count "reload: configuration .* applied")" -gt '"$n"' ]'
}
reload_fails() {
	local n
	n=$(sd_log_count 'reload failed' || true)
	kill -HUP "$SD_PID"
	wait_for -t 15 eval '[ "$(sd_log_count "reload failed")" -gt '"$n"' ]'
}

records() {
	"$SD_ROOT/build/submit-spool" cat "$SPOOL" | wc -l
}

@test "--hash-token: IDENTITY and the token's SHA-256; short tokens and bad identities refused" {
	run "$SD_BIN" --hash-token device-1 <"$BATS_TEST_TMPDIR/t1"
	assert_success
	assert_output "device-1 $(tr -d '\n' <"$BATS_TEST_TMPDIR/t1" | sha256sum | cut -d' ' -f1)"
	run "$SD_BIN" --hash-token device-1 < <(printf 'only 31 bytes of token here....')
	assert_failure 1
	assert_output --partial "the token is 31 bytes, at least 32 are needed"
	run "$SD_BIN" --hash-token 'two words' <"$BATS_TEST_TMPDIR/t1"
	assert_failure 2
	assert_output --partial 'an identity is 1 to 128 of'
}

@test "auth = token: a good token's Conn gets 0 and its Submits are stored; on TLS too; pipelined with its Submits" {
	token_start
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t1" --submits 3
	assert_success
	assert_output "ok 4"
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t1b" --submits 2 --pipeline
	assert_success
	run $AC --port "$TLS_PORT" --tls "$CERTS/ca.pem" --token-file "$BATS_TEST_TMPDIR/t2" --submits 4
	assert_success
	run sd_metric submitd_authenticated_connections_total '{method="token"}'
	assert_output 3
	run sd_metric submitd_auth_failures_total
	assert_output 0
	wait_for eval '[ "$(records)" -eq 9 ]'
}

@test "auth = token: a wrong token, an empty Conn, a Submit before the Conn: result 3, then the close; nothing stored; counted and logged without the token" {
	token_start
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/wrong" --expect refused
	assert_success
	assert_output "refused connack"
	run $AC --port "$TLS_PORT" --tls "$CERTS/ca.pem" --token-file /dev/null --expect refused
	assert_success
	assert_output "refused connack"
	run $AC --port "$SD_PORT" --no-conn --submits 2 --expect refused
	assert_success
	assert_output "refused submitack"
	# A Conn with a good token after a refused Submit in the same write: never read.
	run $AC --port "$SD_PORT" --no-conn --submits 1 --pipeline --expect refused
	assert_success
	run sd_metric submitd_auth_failures_total '{reason="bad_token"}'
	assert_output 2
	run sd_metric submitd_auth_failures_total '{reason="no_conn"}'
	assert_output 2
	run sd_metric submitd_submit_acks_total '{result="3"}'
	assert_output 2
	wait_for sd_metric_is submitd_connections_closed_total '{reason="auth"}' 4
	run records
	assert_output 0
	sd_log | grep -q '127.0.0.1:[0-9]*: not authorized: a Conn with a wrong or no token'
	sd_log | grep -q '127.0.0.1:[0-9]*: not authorized: a Submit before a Conn that authenticated'
	sd_log >"$BATS_TEST_TMPDIR/log"
	run grep -cF "$(cat "$BATS_TEST_TMPDIR/wrong")" "$BATS_TEST_TMPDIR/log"
	assert_output 0
}

@test "every stored record says who: the token's or the certificate's identity, read by submit-spool cat and by a second reader; auth = none stores none" {
	token_start
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t1" --submits 3
	assert_success
	run $AC --port "$TLS_PORT" --tls "$CERTS/ca.pem" --token-file "$BATS_TEST_TMPDIR/t2" --submits 2
	assert_success
	sd_stop
	"$SD_ROOT/build/submit-spool" cat "$SPOOL" >"$BATS_TEST_TMPDIR/cat"
	run jq -r '.identity // "-"' "$BATS_TEST_TMPDIR/cat"
	assert_equal "$(sort <<<"$output" | uniq -c | awk '{print $2 "=" $1}' | paste -sd' ')" \
		'device-1=3 device-2@fleet=2'
	# The same from the format as docs/SPOOL.md gives it (test/helpers/spoolcheck.py).
	run python3 "$SD_ROOT/test/helpers/spoolcheck.py" read "$SPOOL"
	assert_success
	assert_equal "$(awk '{print $4}' <<<"$output" | sort | uniq -c | awk '{print $2 "=" $1}' | paste -sd' ')" \
		'device-1=3 device-2@fleet=2'
	# A certificate's identity, and none without auth.
	rm -rf "$SPOOL"
	cert_start san_uri
	run $AC --port "$SD_PORT" --tls "$CERTS/ca.pem" --cert "$CERTS/device.pem" \
		--key "$CERTS/device.key" --no-conn --submits 2
	assert_success
	sd_stop
	run jq -r .identity <("$SD_ROOT/build/submit-spool" cat "$SPOOL")
	assert_output "$(printf 'spiffe://fleet/device-7\nspiffe://fleet/device-7')"
	rm -rf "$SPOOL"
	tls_start 'workers = 1' "spool_dir = \"$SPOOL\""
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t1" --submits 2
	assert_success
	sd_stop
	run jq -r '.identity // "none"' <("$SD_ROOT/build/submit-spool" cat "$SPOOL")
	assert_output "$(printf 'none\nnone')"
}

# idents_row W: worker W's row of /status's identities table.
idents_row() {
	curl -sf --max-time 5 "http://127.0.0.1:$SD_METRICS_PORT/status" |
		awk -v w="$1" 'seen && $1 == w { print } /^worker +authenticated +identities/ { seen = 1 }'
}

@test "/status: per worker the connections that authenticated, their identities, the most connected first" {
	token_start
	local i
	for i in 1 2 3; do
		sd_spawn "$BATS_TEST_TMPDIR/h1.$i" $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t1" \
			--submits 1 --hold 60
	done
	sd_spawn "$BATS_TEST_TMPDIR/h2" $AC --port "$TLS_PORT" --tls "$CERTS/ca.pem" \
		--token-file "$BATS_TEST_TMPDIR/t2" --submits 1 --hold 60
	# And one that has not authenticated: counted nowhere here.
	sd_spawn "$BATS_TEST_TMPDIR/h3" $AC --port "$SD_PORT" --no-conn --submits 0 --expect closed
	wait_for -t 10 eval '[ "$(cat "$BATS_TEST_TMPDIR"/h1.* "$BATS_TEST_TMPDIR/h2" | grep -c "^ok 2$")" -eq 4 ]'
	# Published once a second by the worker.
	wait_for -t 10 eval '[ "$(idents_row 0 | awk "{print \$2}")" = 4 ]'
	run idents_row 0
	assert_output --regexp '^0 +4 +2 +device-1=3 device-2@fleet=1$'
	sd_kill_spawned
	wait_for -t 10 eval '[ "$(idents_row 0 | awk "{print \$2}")" = 0 ]'
	run idents_row 0
	assert_output --regexp '^0 +0 +0 +-$'
}

@test "auth_timeout = 1: a connection that sends no Conn is closed without an ack (timeout), plaintext and TLS" {
	token_start 'auth_timeout = 1'
	run $AC --port "$SD_PORT" --no-conn --submits 0 --expect closed
	assert_success
	run $AC --port "$TLS_PORT" --tls "$CERTS/ca.pem" --no-conn --submits 0 --expect closed
	assert_success
	wait_for sd_metric_is submitd_auth_failures_total '{reason="timeout"}' 2
	sd_log | grep -q 'not authorized: no Conn within auth_timeout'
}

@test "auth = none (the default): Submits without a Conn are stored, a Conn's data is ignored" {
	tls_start 'workers = 1' "spool_dir = \"$SPOOL\""
	run $AC --port "$SD_PORT" --no-conn --submits 2
	assert_success
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/wrong" --submits 1
	assert_success
	run sd_metric submitd_authenticated_connections_total
	assert_output 0
}

@test "tokens file reload: a removed token stops new connections, an added one works; a bad file fails the reload and the old tokens stay" {
	token_start
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t2" --submits 1
	assert_success
	"$SD_BIN" --hash-token device-3 <"$BATS_TEST_TMPDIR/wrong" >"$TOKENS"
	reload_ok
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t2" --expect refused
	assert_success
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/wrong" --submits 1
	assert_success
	echo "device-4 not-a-hash" >>"$TOKENS"
	reload_fails
	run sd_metric submitd_config_last_reload_successful
	assert_output 0
	sd_log | grep -q "$TOKENS:2: the hash is not 64 hex digits"
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/wrong" --submits 1
	assert_success
}

@test "tokens file errors at start and with -t: FILE:LINE for each, and the options that need each other" {
	local conf=$BATS_TEST_TMPDIR/c.conf bad
	for bad in 'device-1|expected IDENTITY SHA256HEX' \
		"device 1 $(printf '%064d' 0)|more than IDENTITY SHA256HEX on the line" \
		"dev!ce $(printf '%064d' 0)|the identity is not 1 to 128 of" \
		"device-1 $(printf '%063dg' 0)|the hash is not 64 hex digits"; do
		printf '# tokens\n%s\n' "${bad%%|*}" >"$TOKENS"
		cp "$(sd_config 'auth = token' "auth_tokens_file = \"$TOKENS\"")" "$conf"
		run "$SD_BIN" -t -c "$conf"
		assert_failure
		assert_output --partial "$TOKENS:2: ${bad#*|}"
	done
	printf 'a %064d\nb %064d\n' 0 0 >"$TOKENS"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "$TOKENS: a hash is listed twice (identities a and b)"
	rm "$TOKENS"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "$TOKENS: No such file or directory"
	cp "$(sd_config 'auth = token')" "$conf"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "$conf:$(grep -n '^auth =' "$conf" | cut -d: -f1): auth = token: needs auth_tokens_file"
	cp "$(sd_config 'auth = certificate')" "$conf"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "auth = certificate: listen \"127.0.0.1:0\" is not tls://"
	cp "$(sd_config 'auth = tokens')" "$conf"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial 'auth = "tokens": expected none, token, certificate or certificate_or_token'
}

# cert_start IDENTITY: auth = certificate on a tls:// listener only, client certificates required.
cert_start() {
	sd_start 'workers = 1' "spool_dir = \"$SPOOL\"" 'listen = {"tls://127.0.0.1:0"}' \
		"tls_certificate = \"$CERTS/server.pem\"" "tls_key = \"$CERTS/server.key\"" \
		"tls_ca = \"$CERTS/ca.pem\"" 'tls_verify_client = required' 'auth = certificate' \
		"tls_identity = $1"
}

@test "auth = certificate: the verified certificate's CN, DNS, URI or email SAN authenticates without a Conn" {
	local id
	for id in cn san_dns san_uri san_email; do
		cert_start "$id"
		run $AC --port "$SD_PORT" --tls "$CERTS/ca.pem" --cert "$CERTS/device.pem" \
			--key "$CERTS/device.key" --no-conn --submits 2
		assert_success
		run sd_metric submitd_authenticated_connections_total '{method="certificate"}'
		assert_output 1
		sd_stop
	done
}

@test "auth = certificate: a certificate without the identity (CN with spaces, no URI SAN) gets result 3; without a certificate no handshake" {
	cert_start cn
	# client.pem's CN is "submitd test client": not an identity.
	run $AC --port "$SD_PORT" --tls "$CERTS/ca.pem" --cert "$CERTS/client.pem" \
		--key "$CERTS/client.key" --no-conn --submits 1 --expect refused
	assert_success
	run $AC --port "$SD_PORT" --tls "$CERTS/ca.pem" --cert "$CERTS/client.pem" \
		--key "$CERTS/client.key" --token-file "$BATS_TEST_TMPDIR/t1" --expect refused
	assert_success
	assert_output "refused connack"
	run sd_metric submitd_auth_failures_total '{reason="no_identity"}'
	assert_output 2
	run $AC --port "$SD_PORT" --tls "$CERTS/ca.pem" --no-conn --submits 1 --expect closed
	assert_success
	wait_for sd_metric_is submitd_tls_handshakes_total '{result="no_certificate"}' 1
	run records
	assert_output 0
	sd_stop
	cert_start san_uri
	run $AC --port "$SD_PORT" --tls "$CERTS/ca.pem" --cert "$CERTS/client.pem" \
		--key "$CERTS/client.key" --no-conn --submits 1 --expect refused
	assert_success
}

@test "auth = certificate_or_token: a certificate, or a token without one; neither gets result 3" {
	tls_start 'workers = 1' "spool_dir = \"$SPOOL\"" 'auth = certificate_or_token' \
		"auth_tokens_file = \"$TOKENS\"" "tls_ca = \"$CERTS/ca.pem\"" 'tls_verify_client = optional'
	run $AC --port "$TLS_PORT" --tls "$CERTS/ca.pem" --cert "$CERTS/device.pem" \
		--key "$CERTS/device.key" --no-conn --submits 2
	assert_success
	run $AC --port "$TLS_PORT" --tls "$CERTS/ca.pem" --token-file "$BATS_TEST_TMPDIR/t1" --submits 1
	assert_success
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t2" --submits 1
	assert_success
	run $AC --port "$SD_PORT" --no-conn --submits 1 --expect refused
	assert_success
	run sd_metric submitd_authenticated_connections_total '{method="certificate"}'
	assert_output 1
	run sd_metric submitd_authenticated_connections_total '{method="token"}'
	assert_output 2
}

@test "submit-bench --token: every connection authenticates with its Conn and gets every ack; a wrong token is an error" {
	token_start
	run --separate-stderr "$SD_ROOT/build/submit-bench" --json -c 4 -n 2000 --token "$BATS_TEST_TMPDIR/t1" "127.0.0.1:$SD_PORT"
	assert_success
	jq -e '.acked == 2000 and .conn_acked == 4 and .errors == 0 and .conn == true' <<<"$output"
	run sd_metric submitd_authenticated_connections_total '{method="token"}'
	assert_output 4
	run --separate-stderr "$SD_ROOT/build/submit-bench" --json -c 1 -n 10 --token "$BATS_TEST_TMPDIR/wrong" "127.0.0.1:$SD_PORT"
	assert_failure 1
	jq -e '.acked == 0 and .ok == false' <<<"$output"
}
