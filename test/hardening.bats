#!/usr/bin/env bats
# Hostile clients and resource exhaustion (docs/SECURITY.md): slow clients,
# a client that never reads, descriptor exhaustion, abuse of the metrics
# endpoint, and 50,000 concurrent connections.
#
# Performance thresholds (rate ratios, CPU share) are make bench's:
# bench/thresholds.bats. Here the behaviour is checked.

load helpers/common
load helpers/rates

HOSTILE="python3 $SD_ROOT/test/fuzz/hostile.py"
BENCH=$SD_BENCH

teardown() {
	sd_stop
}

@test "hardening: 1,000 trickling connections: the others are served meanwhile, and idle_timeout closes them" {
	sd_start 'idle_timeout = 3'
	local out=$BATS_TEST_TMPDIR/trickle
	# A byte a second of a frame that never completes: more than the 5 s
	# the idle rule was written for, and still no complete frame.
	sd_spawn "$out" $HOSTILE --port "$SD_PORT" --max 30 trickle -n 1000 --every 1
	wait_for -t 15 grep -q '^connected 1000' "$out"
	# Connected on the client's side may still sit in the accept queue.
	wait_for -t 10 metric_above submitd_client_connected '' 999
	# Served while they trickle: acks and no error (bench/thresholds.bats
	# compares the rate with and without them).
	run -0 bench_rate
	[ "$output" -gt 0 ]
	wait_for -t 15 grep -q '^all 1000 closed' "$out"
	cat "$out" >&3
	# The client saw each close (EOF) before the worker counts it: the
	# worker does once it reads the client's own close.
	wait_for -t 10 metric_above submitd_connections_closed_total '{reason="idle"}' 999
	run sd_metric submitd_protocol_errors_total
	assert_output 0
}

@test "hardening: a client that sends without reading is not read further; memory stays bounded" {
	sd_start
	local rss=$BATS_TEST_TMPDIR/rss flood=$BATS_TEST_TMPDIR/flood
	sd_spawn "$rss" $HOSTILE --max 90 rss --pid "$SD_PID" --every 0.2
	sd_spawn "$flood" $HOSTILE --port "$SD_PORT" --max 90 flood --bytes $((1 << 30)) --stall 3
	# Either the server stops reading (it should) or 1 GiB went through.
	wait_for -t 70 grep -qE '^(stalled|done)' "$flood"
	run grep -c '^stalled' "$flood"
	assert_output 1
	# Held, not closed, and not read: the input counter stands still.
	run sd_metric submitd_client_connected
	assert_output 1
	local r0 r1
	r0=$(sd_metric submitd_received_bytes_total)
	sleep 1 # a measurement window: nothing may be read from the flood in it
	r1=$(sd_metric submitd_received_bytes_total)
	[ "$r0" = "$r1" ]
	# Other clients are served as usual meanwhile.
	run -0 bench_rate
	local peak
	peak=$(awk '$1 == "rss" && $2 > m {m = $2} END {print m + 0}' "$rss")
	echo "flood: $(grep -E '^(stalled|done)' "$flood"); peak RSS of master+workers: ${peak} KiB; bench rate $output" >&3
	[ "$peak" -gt 0 ]
	[ "$peak" -lt $((64 * 1024)) ]
	[ "$(sd_metric submitd_client_connected)" -eq 1 ]
}

@test "hardening: descriptor exhaustion: accept errors do not spin, are logged once a second, counted, and service resumes" {
	sd_start_at_fd_limit "$BATS_TEST_TMPDIR/hold"
	local holder=$SD_SPAWNED
	local w t0 t1 e0 e1 l0 l1 hz
	w=$(sd_workers)
	hz=$(getconf CLK_TCK)
	t0=$(ticks "$w")
	e0=$(sd_metric submitd_accept_errors_total)
	l0=$(sd_log_count 'accept on')
	sleep 3 # the measurement window, not a wait for a condition
	t1=$(ticks "$w")
	e1=$(sd_metric submitd_accept_errors_total)
	l1=$(sd_log_count 'accept on')
	echo "at the limit for 3 s: worker CPU $((t1 - t0)) ticks (${hz}/s), accept errors +$((e1 - e0)), log lines +$((l1 - l0)), connected $(sd_metric submitd_client_connected)" >&3
	# Still at the limit, and not spinning: each failed accept pauses
	# accepting for 100 ms, so at most about 30 in 3 s, where a loop that
	# polled the listener again would fail thousands of times (the CPU share
	# is bench/thresholds.bats').
	[ "$((e1 - e0))" -gt 0 ]
	[ "$((e1 - e0))" -le 60 ]
	# At most about once a second.
	[ "$((l1 - l0))" -le 4 ]
	[ "$(sd_log_count 'accept on')" -ge 1 ]
	kill -TERM "$holder"
	wait "$holder" 2>/dev/null || true
	wait_for -t 10 sd_client roundtrip
	wait_for -t 10 sd_metric_is submitd_client_connected '' 0
}

@test "hardening: under metrics endpoint abuse the workers serve and the master reaps and reloads" {
	sd_start
	local out=$BATS_TEST_TMPDIR/abuse
	sd_spawn "$out" $HOSTILE --port "$SD_METRICS_PORT" --max 60 metrics -n 1000
	local abuser=$SD_SPAWNED
	wait_for -t 10 grep -q '^open' "$out"
	# Served meanwhile (bench/thresholds.bats compares the rates).
	run -0 bench_rate
	[ "$output" -gt 0 ]
	# Still under abuse: a worker dies, and a reload is asked for.
	local old
	old=$(sd_workers | head -1)
	kill -KILL "$old"
	wait_for -t 10 eval '[ "$(sd_workers | wc -l)" -eq 2 ] && ! sd_workers | grep -qx '"$old"
	kill -HUP "$SD_PID"
	wait_for -t 15 grep -q 'reload: configuration .* applied' "$BATS_TEST_TMPDIR/submitd.log"
	wait_for -t 10 sd_client roundtrip
	kill -TERM "$abuser"
	wait "$abuser" 2>/dev/null || true
	grep '^metrics abuse' "$out" >&3
	# The endpoint serves again once the abuse stops.
	wait_for -t 15 sd_metrics
	run sd_metric submitd_worker_restarts_total '{reason="signal"}'
	assert_output 1
}

@test "hardening: 50,000 concurrent connections, one round trip each" {
	local n=50000 procs=4
	local per=$((n / procs))
	sd_start 'workers = 4' 'max_connections = 19000' 'idle_timeout = 0' "backlog = ${SUBMITD_BACKLOG:-4096}"
	local rss0 rss1 t0 t1 i benches=()
	rss0=$($HOSTILE --max 0.1 rss --pid "$SD_PID" | awk '$1 == "rss" {print $2; exit}')
	t0=$EPOCHREALTIME
	for ((i = 0; i < procs; i++)); do
		sd_spawn "$BATS_TEST_TMPDIR/bench.$i" "$BENCH" --json --idle --conn -c "$per" -d 60s \
			--source "127.0.0.$((i + 2))" "127.0.0.1:$SD_PORT"
		benches+=("$SD_SPAWNED")
	done
	wait_for -t 120 sd_metric_is submitd_client_connected '' "$n"
	t1=$EPOCHREALTIME
	rss1=$($HOSTILE --max 0.1 rss --pid "$SD_PID" | awk '$1 == "rss" {print $2; exit}')
	local conn_acked
	conn_acked=$(sd_metric submitd_rsp_send_total '{cmd="conn"}')
	echo "$n connections in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') s;" \
		"RSS master+workers $rss0 -> $rss1 KiB:" \
		"$(awk -v a="$rss0" -v b="$rss1" -v n="$n" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}') bytes per connection;" \
		"ConnAcks sent $conn_acked; $(grep '^TCP:' /proc/net/sockstat)" >&3
	sd_metric submitd_client_connected '{worker="0"}' >&3
	[ "$conn_acked" -ge "$n" ]
	[ "$(sd_metric submitd_connections_closed_total)" -eq 0 ]
	# Stopped, each bench reports: every connection ConnAcked and still
	# open, no error of any kind.
	for i in "${!benches[@]}"; do
		kill -TERM "${benches[$i]}"
	done
	local rc json
	for i in "${!benches[@]}"; do
		wait_for -t 60 _sd_all_gone "${benches[$i]}"
		rc=0
		wait "${benches[$i]}" || rc=$?
		json=$(tail -1 "$BATS_TEST_TMPDIR/bench.$i")
		echo "bench $i: status $rc, $(jq -c '{conn_acked, open_at_end, errors, connect_errors}' <<<"$json")" >&3
		assert_equal "$rc" 0
		jq -e --argjson n "$per" '.conn_acked == $n and .open_at_end == $n and .errors == 0 and
			.connect_errors == 0 and .ok' <<<"$json"
	done
}
