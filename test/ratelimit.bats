#!/usr/bin/env bats
# rate_limit and rate_burst: Submits per second per client, by identity when
# it authenticated, else by address, over all workers. A Submit over the
# rate gets result 1 and is not stored; refusals are counted in total, never
# by client. Clients: helpers/authclient.py.

load helpers/common

AC="python3 $SD_ROOT/test/helpers/authclient.py"

setup() {
	SPOOL=$BATS_TEST_TMPDIR/spool
	TOKENS=$BATS_TEST_TMPDIR/tokens
	head -c 32 /dev/urandom | base64 -w0 >"$BATS_TEST_TMPDIR/t1"
	head -c 32 /dev/urandom | base64 -w0 >"$BATS_TEST_TMPDIR/t2"
	{
		"$SD_BIN" --hash-token device-1 <"$BATS_TEST_TMPDIR/t1"
		"$SD_BIN" --hash-token device-2 <"$BATS_TEST_TMPDIR/t2"
	} >"$TOKENS"
}

teardown() {
	sd_stop
}

# by_identity: "IDENTITY=N ..." of the spool's records, sorted.
by_identity() {
	"$SD_ROOT/build/submit-spool" cat "$SPOOL" | jq -r '.identity // "-"' | sort | uniq -c |
		awk '{print $2 "=" $1}' | paste -sd' '
}

@test "rate_limit per identity over 2 workers: Submits over the burst get result 1, are counted and not stored; another identity has its own rate" {
	sd_start 'workers = 2' "spool_dir = \"$SPOOL\"" 'auth = token' \
		"auth_tokens_file = \"$TOKENS\"" 'rate_limit = 1' 'rate_burst = 10'
	local t0 t1 zeros
	t0=$(date +%s%N)
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t1" --submits 8 --pipeline --expect results
	assert_success
	assert_output "results 000000000"
	# device-1 again, on another connection (perhaps the other worker): 2 left of its burst.
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t1" --submits 8 --pipeline --expect results
	assert_success
	t1=$(date +%s%N)
	[[ "$output" =~ ^results\ 0(0+)(1+)$ ]]
	zeros=${#BASH_REMATCH[1]}
	# 2 of the burst, and 1 a second since the first.
	echo "accepted $zeros of 8, $(((t1 - t0) / 1000000)) ms after the first"
	[ "$zeros" -ge 2 ]
	[ "$zeros" -le $((2 + (t1 - t0) / 1000000000 + 1)) ]
	run $AC --port "$SD_PORT" --token-file "$BATS_TEST_TMPDIR/t2" --submits 8 --pipeline --expect results
	assert_success
	assert_output "results 000000000"
	local refused=$((8 - zeros))
	run sd_metric submitd_rate_limited_submits_total
	assert_output "$refused"
	run sd_metric submitd_submit_acks_total '{result="1"}'
	assert_output "$refused"
	run sd_metric submitd_submit_acks_total '{result="0"}'
	assert_output $((16 + zeros))
	# Only totals: no client in a label.
	run sd_metrics
	assert_success
	refute_output --partial 'device-1'
	# Who was refused is in the log (at most once a second), never in a label.
	wait_for eval "sd_log | grep -Eq 'device-1 at 127\\.0\\.0\\.1:[0-9]+: over rate_limit \\(1 a second, rate_burst 10\\): refusing Submits \\(result 1\\)'"
	sd_stop
	assert_equal "$(by_identity)" "device-1=$((8 + zeros)) device-2=8"
}

@test "rate_limit by address without an identity: each address its own burst, refused Submits in order with the stored ones" {
	sd_start 'workers = 2' "spool_dir = \"$SPOOL\"" 'rate_limit = 1' 'rate_burst = 3'
	run $AC --port "$SD_PORT" --bind 127.0.0.2 --no-conn --submits 6 --pipeline --expect results
	assert_success
	assert_output "results 000111"
	wait_for eval 'sd_log | grep -Eq "127\.0\.0\.2:[0-9]+: over rate_limit"'
	run $AC --port "$SD_PORT" --bind 127.0.0.3 --no-conn --submits 6 --pipeline --expect results
	assert_success
	assert_output "results 000111"
	# Less than a second later (or a little more): 0 or 1 more for 127.0.0.2.
	run $AC --port "$SD_PORT" --bind 127.0.0.2 --no-conn --submits 2 --pipeline --expect results
	assert_success
	[[ "$output" =~ ^results\ ([01])1$ ]]
	local more=$((1 - BASH_REMATCH[1]))
	run sd_metric submitd_rate_limited_submits_total
	assert_output $((3 + 3 + 1 + (1 - more)))
	sd_stop
	run "$SD_ROOT/build/submit-spool" cat "$SPOOL"
	assert_equal "$(jq -r .addr <<<"$output" | sort | uniq -c | awk '{print $2 "=" $1}' | paste -sd' ')" \
		"127.0.0.2=$((3 + more)) 127.0.0.3=3"
}

@test "rate_limit and rate_burst: -T shows them (0: off), -t checks their range" {
	local conf=$BATS_TEST_TMPDIR/c.conf
	printf 'listen = {"127.0.0.1:0"}\n' >"$conf"
	run "$SD_BIN" -T -c "$conf"
	assert_success
	assert_line 'rate_limit = 0'
	assert_line 'rate_burst = 0'
	local bad
	for bad in 'rate_limit = -1' 'rate_limit = 10000001' 'rate_burst = -1'; do
		printf 'listen = {"127.0.0.1:0"}\n%s\n' "$bad" >"$conf"
		run "$SD_BIN" -t -c "$conf"
		assert_failure
		assert_output --partial "$conf:2: ${bad%% *}"
	done
}
