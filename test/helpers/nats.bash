# A nats-server of the test's own and submitd forwarding to it, for nats.bats
# and spool-crash.bats: each test starts its server on a free loopback port
# and stops it by pid (nats_stop in teardown). The stream is read back with
# build/test/nats-verify and compared with submit-bench's ack log ($ACKS).
# Load after helpers/common; the suite's setup sets SPOOL, ACKS and NATS_PID=.

VERIFY=$SD_ROOT/build/test/nats-verify

# nats_needed: skip the test unless nats-server and nats-verify are there.
nats_needed() {
	command -v nats-server >/dev/null || skip "nats-server is not installed"
	[ -x "$VERIFY" ] || skip "$VERIFY not built (make tools)"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_nats_ready() {
	kill -0 "$NATS_PID" 2>/dev/null || return 255
	grep -q "Server is ready" "$BATS_TEST_TMPDIR/nats.log"
}

# nats_start [ARGS...]: a JetStream server on NATS_PORT (picked once per test),
# its store in $BATS_TEST_TMPDIR/js; pid in NATS_PID.
nats_start() {
	: "${NATS_PORT:=$(free_port)}"
	export NATS_PORT
	: >"$BATS_TEST_TMPDIR/nats.log"
	timeout 300 nats-server -js -sd "$BATS_TEST_TMPDIR/js" -a 127.0.0.1 -p "$NATS_PORT" "$@" \
		>>"$BATS_TEST_TMPDIR/nats.log" 2>&1 3>&- 4>&- &
	NATS_PID=$!
	wait_for -t 20 _nats_ready || {
		cat "$BATS_TEST_TMPDIR/nats.log" >&2
		return 1
	}
}

nats_stop() {
	[ -n "${NATS_PID:-}" ] || return 0
	kill -TERM "$NATS_PID" 2>/dev/null || true
	pkill -CONT -P "$NATS_PID" 2>/dev/null || true # a test may have stopped it
	wait_for -t 10 _sd_all_gone "$NATS_PID" || kill -KILL "$NATS_PID" 2>/dev/null || true
	wait "$NATS_PID" 2>/dev/null || true
	NATS_PID=
}

# sd_nats [LINES...]: submitd with a spool forwarding to the test's server.
sd_nats() {
	sd_start "spool_dir = \"$SPOOL\"" 'spool_segment_size = 65536' \
		"nats_servers = {\"nats://127.0.0.1:$NATS_PORT\"}" 'nats_stream = "SUB"' "$@"
}

forwarder_pid() {
	pgrep -P "$SD_PID" -x submitd-fwd
}

# Every record of the spool is in the stream: nothing left to forward.
drained() {
	[ "$(sd_metric submitd_nats_lag_bytes)" = 0 ] &&
		[ "$(sd_metric submitd_nats_inflight)" = 0 ] &&
		[ -z "$(find "$SPOOL/ready" "$SPOOL/taken" -name '*.seg')" ]
}

verify() {
	run "$VERIFY" -s "nats://127.0.0.1:$NATS_PORT" -S SUB -a "$ACKS" "$@"
	echo "$output"
}

metric_ge() {
	local v
	v=$(sd_metric "$1" "${3:-}")
	[ "${v%.*}" -ge "$2" ]
}
