# The spool suites' load and checks (spool.bats, spool-crash.bats): the load
# is submit-bench with --tag-payload and --ack-log $ACKS, checked against the
# spool in $SPOOL by test/helpers/spoolcheck.py. Load after helpers/common;
# the suite's setup sets SPOOL and ACKS.

SC="python3 $SD_ROOT/test/helpers/spoolcheck.py"

# spool_bench ARGS...: submit-bench with tagged payloads and the ack log,
# in the foreground; its JSON line in SD_BENCH_JSON.
spool_bench() {
	local rc=0
	"$SD_BENCH" --json --tag-payload --ack-log "$ACKS" "$@" "127.0.0.1:$SD_PORT" \
		>"$BATS_TEST_TMPDIR/bench.json" 2>"$BATS_TEST_TMPDIR/bench.json.err" </dev/null || rc=$?
	SD_BENCH_JSON=$(tail -1 "$BATS_TEST_TMPDIR/bench.json")
	echo "bench: $SD_BENCH_JSON" >&2
	head -5 "$BATS_TEST_TMPDIR/bench.json.err" >&2
	return $rc
}

# spool_bench_bg ARGS...: the same in the background until spool_bench_stop.
spool_bench_bg() {
	sd_bench "$BATS_TEST_TMPDIR/bench.json" --tag-payload --ack-log "$ACKS" -d 300 "$@"
	BENCH_PID=$SD_BENCH_PID
}

# spool_bench_stop: SIGINT ends the sending; the bench waits for what is in flight.
spool_bench_stop() {
	kill -INT "$BENCH_PID"
	sd_bench_wait "$BENCH_PID" "$BATS_TEST_TMPDIR/bench.json" 30
}

# spool_check [ARGS...]: `submit-spool cat` of the spool against the ack log.
spool_check() {
	"$SD_ROOT/build/submit-spool" cat "$SPOOL" >"$BATS_TEST_TMPDIR/cat.json"
	$SC bench --ack-log "$ACKS" --cat "$BATS_TEST_TMPDIR/cat.json" "$@"
}

# acked_ge N: the server has sent at least N Submit acks with result 0.
acked_ge() {
	[ "$(sd_metric submitd_submit_acks_total '{result="0"}')" -ge "$1" ]
}

# acked_more N: wait until N more Submits than now are acked with result 0.
acked_more() {
	local n
	n=$(sd_metric submitd_submit_acks_total '{result="0"}')
	wait_for -t 30 acked_ge $((n + $1))
}
