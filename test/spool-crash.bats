#!/usr/bin/env bats
# Crashes while spooling, and the recovery after them: kill -9 of a worker,
# of the master alone, of the master and the workers at once (the machine's
# crash); torn tails, zeros written ahead and a bad checksum left by a dead
# writer; kill -9 of the NATS forwarder, resuming from its checkpoints. The
# load and checks are those of spool.bats (helpers/spool), the NATS server
# that of nats.bats (helpers/nats).

load helpers/common
load helpers/spool
load helpers/nats

setup() {
	SPOOL=$BATS_TEST_TMPDIR/spool
	ACKS=$BATS_TEST_TMPDIR/acks
	NATS_PID=
}

teardown() {
	sd_stop
	nats_stop
}

# Start again on the same port, for the reconnecting clients.
same_port_restart() {
	sed -i "s/^listen = .*/listen = {\"127.0.0.1:$SD_PORT\"}/" "$SD_CONF"
	sd_start_conf "$SD_CONF"
}

# kill_all_hard: kill -9 the master and every worker at once, as a crash of
# the machine would end them, and wait until all are gone. The workers' pids
# in KILLED_WORKERS.
kill_all_hard() {
	local workers p
	# The master first stopped, not killed: its death would send the workers
	# SIGTERM (they would seal their segments) and a live master respawns.
	kill -STOP "$SD_PID"
	workers=$(sd_workers | tr '\n' ' ')
	KILLED_WORKERS=$workers
	for p in $workers; do kill -KILL "$p"; done
	wait_for -t 10 _sd_all_gone $workers
	kill -KILL "$SD_PID"
	wait_for -t 10 _sd_all_gone "$SD_PID"
	wait "$SD_JOB" 2>/dev/null || true
	SD_JOB=
}

# victim_with_segment: a worker that has a segment in active/.
victim_with_segment() {
	local w
	for w in $(sd_workers); do
		if compgen -G "$SPOOL/active/*-p$w.seg" >/dev/null; then
			echo "$w"
			return 0
		fi
	done
	return 1
}

# recovered_as_torn FILE: every segment that `spoolcheck.py torn` listed in
# FILE (read after its writer died, before recovery) was cut to its whole
# records and sealed into ready/, or deleted when it held none. Prints the
# bytes recovery had to cut as torn: zeros written ahead are cut too, but
# not counted.
recovered_as_torn() {
	local name size end n zeros cut=0
	while read -r name size end n zeros; do
		[ ! -e "$SPOOL/active/$name" ] || {
			echo "$name still in active/" >&2
			return 1
		}
		if [ "$n" -gt 0 ]; then
			[ "$(stat -c %s "$SPOOL/ready/$name")" = "$end" ] || {
				echo "ready/$name: $(stat -c %s "$SPOOL/ready/$name") bytes, whole records end at $end" >&2
				return 1
			}
		else
			[ ! -e "$SPOOL/ready/$name" ] || return 1
		fi
		cut=$((cut + size - end - zeros))
	done <"$1"
	echo "$cut"
}

@test "kill -9 of a worker under load (always, --reconnect): every result-0 ack is in the spool, recovery counted what it cut" {
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = always' 'workers = 2'
	spool_bench_bg -c 8 -w 50 -s 20-200 --conn --reconnect --retry 50ms
	wait_for -t 30 acked_ge 3000
	local victim cut0
	wait_for -t 10 victim_with_segment
	victim=$(victim_with_segment)
	cut0=$(sd_metric submitd_spool_truncated_bytes_total)
	# Stopped under load, read here, then killed: the file is what kill -9 leaves.
	kill -STOP "$victim"
	$SC torn "$SPOOL"/active/*-p"$victim".seg >"$BATS_TEST_TMPDIR/torn"
	kill -KILL "$victim"
	cat "$BATS_TEST_TMPDIR/torn"
	wait_for -t 10 sd_metric_is submitd_worker_restarts_total '{reason="signal"}' 1
	# The dead worker's segment was recovered into ready/.
	wait_for -t 10 eval '[ "$(sd_metric submitd_spool_recovered_segments_total)" -ge 1 ]'
	local cut
	cut=$(recovered_as_torn "$BATS_TEST_TMPDIR/torn")
	echo "recovery had to cut $cut bytes"
	run sd_metric submitd_spool_truncated_bytes_total
	assert_output "$((cut0 + cut))"
	acked_more 3000
	spool_bench_stop
	# The victim's clients reconnected (reset or closed); nothing else went wrong.
	assert_equal "$(sd_bench_field errors)" 0
	[ "$(sd_bench_field reconnects)" -ge 1 ]
	sd_stop
	run spool_check --allow-unacked
	echo "$output"
	assert_success
	run "$SD_ROOT/build/submit-spool" verify "$SPOOL"
	assert_success
}

@test "kill -9 of the master and the workers under load (always, --reconnect): recovery at restart, nothing acked lost" {
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = always' 'workers = 2'
	spool_bench_bg -c 8 -w 50 -s 20-200 --conn --reconnect --retry 50ms
	wait_for -t 30 acked_ge 3000
	kill_all_hard
	# What the workers left in active/ is recovered before the new ones start.
	local left
	left=$(ls "$SPOOL/active" | wc -l)
	echo "segments left in active/: $left"
	[ "$left" -ge 1 ]
	$SC torn "$SPOOL"/active/*.seg >"$BATS_TEST_TMPDIR/torn"
	cat "$BATS_TEST_TMPDIR/torn"
	same_port_restart
	run sd_metric submitd_spool_recovered_segments_total
	echo "recovered: $output"
	[ "$output" -ge 1 ]
	local cut
	cut=$(recovered_as_torn "$BATS_TEST_TMPDIR/torn")
	echo "recovery had to cut $cut bytes"
	run sd_metric submitd_spool_truncated_bytes_total
	assert_output "$cut"
	# No segment of a killed worker is left in active/.
	[ -n "$KILLED_WORKERS" ]
	for p in $KILLED_WORKERS; do [ -z "$(ls "$SPOOL/active" | grep -F -- "-p$p.seg")" ]; done
	# The bench's connections came back by themselves (--retry).
	wait_for -t 30 acked_ge 3000
	spool_bench_stop
	assert_equal "$(sd_bench_field errors)" 0
	[ "$(sd_bench_field reconnects)" -ge 8 ]
	# While the server was down their connects were refused and tried again.
	[ "$(sd_bench_field connect_retries)" -ge 1 ]
	sd_stop
	run spool_check --allow-unacked
	echo "$output"
	assert_success
}

@test "kill -9 of the master alone: the workers stop, seal, and nothing acked is lost" {
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = always' 'workers = 2'
	spool_bench_bg -c 8 -w 50 -s 20-200 --conn --reconnect --retry 50ms
	wait_for -t 30 acked_ge 2000
	local workers
	workers=$(sd_workers | tr '\n' ' ')
	kill -KILL "$SD_PID"
	wait_for -t 15 _sd_all_gone $workers
	wait "$SD_JOB" 2>/dev/null || true
	SD_JOB=
	same_port_restart
	wait_for -t 30 acked_ge 2000
	spool_bench_stop
	assert_equal "$(sd_bench_field errors)" 0
	[ "$(sd_bench_field reconnects)" -ge 8 ]
	sd_stop
	run spool_check --allow-unacked
	echo "$output"
	assert_success
}

@test "a torn tail left by a dead writer is truncated and counted at start" {
	sd_start "spool_dir = \"$SPOOL\"" 'workers = 1'
	spool_bench -n 200 -c 1 -s 20-200
	kill_all_hard
	local seg
	seg=$(ls "$SPOOL"/active/*.seg | head -1)
	# Half a record at the end, as a write cut by a crash leaves it.
	head -c 40 /dev/urandom >>"$seg"
	sd_start_conf "$SD_CONF"
	run sd_metric submitd_spool_recovered_segments_total '{outcome="truncated"}'
	assert_output 1
	run sd_metric submitd_spool_truncated_bytes_total
	assert_output 40
	grep -E "spool: recovered .*torn tail at offset [0-9]+, 40 bytes truncated" \
		"$BATS_TEST_TMPDIR/submitd.log"
	sd_stop
	run spool_check
	echo "$output"
	assert_success
	assert_output --partial "result 0 200, result 1 0, result 2 0; records 200; missing 0"
}

@test "spool_sync = always under load: zeros written ahead, cut by recovery without counting them torn" {
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = always' 'workers = 1'
	# A bounded rate: enough commits a second for zeros ahead, an ack log the checker reads quickly.
	spool_bench_bg -c 4 -w 50 -s 20-200 --conn -r 20000
	# A busy writer keeps zeros ahead of its records (submit-spool ls notes them).
	wait_for -t 30 eval '"$SD_ROOT/build/submit-spool" ls "$SPOOL" | grep -q "zeros written ahead"'
	kill_all_hard
	# The server died under it: the bench stops with errors, its ack log is whole.
	kill -INT "$BENCH_PID" 2>/dev/null || true
	wait "$BENCH_PID" 2>/dev/null || true
	local seg name end size
	seg=$(ls "$SPOOL"/active/*.seg | head -1)
	name=$(basename "$seg")
	size=$(stat -c %s "$seg")
	run "$SD_ROOT/build/submit-spool" ls "$SPOOL"
	echo "$output"
	end=$(sed -n "s/.*$name  records end at offset \([0-9]*\), zeros written ahead.*/\1/p" <<<"$output")
	# The writer is dead: after its last record there are only zeros (a kill in the
	# middle of a write could leave a torn record instead: then this run proves less).
	[ -n "$end" ] || skip "the kill left a torn record, not only zeros"
	[ "$size" -gt "$end" ]
	# The crash tests' reader tells the zeros from a torn tail as recovery does.
	$SC torn "$seg" >"$BATS_TEST_TMPDIR/torn"
	cat "$BATS_TEST_TMPDIR/torn"
	run awk '{ print $1, $2, $3, $5 }' "$BATS_TEST_TMPDIR/torn"
	assert_output "$name $size $end $((size - end))"
	sd_start_conf "$SD_CONF"
	run sd_metric submitd_spool_recovered_segments_total '{outcome="sealed"}'
	assert_output 1
	run sd_metric submitd_spool_truncated_bytes_total
	assert_output 0
	run recovered_as_torn "$BATS_TEST_TMPDIR/torn"
	assert_output 0
	assert_equal "$(stat -c %s "$SPOOL/ready/$name")" "$end"
	sd_stop
	run "$SD_ROOT/build/submit-spool" verify "$SPOOL"
	echo "$output"
	assert_success
	run spool_check --allow-unacked
	echo "$output"
	assert_success
}

@test "a bad checksum in the middle of a dead writer's segment: quarantined, the records before it salvaged" {
	sd_start "spool_dir = \"$SPOOL\"" 'workers = 1'
	spool_bench -n 200 -c 1 -s 20-200
	kill_all_hard
	local seg name size
	seg=$(ls "$SPOOL"/active/*.seg | head -1)
	name=$(basename "$seg")
	size=$(stat -c %s "$seg")
	# Flip one byte half-way: whole records follow it, so it is not a torn tail.
	printf '\xff' | dd of="$seg" bs=1 seek=$((size / 2)) conv=notrunc status=none
	sd_start_conf "$SD_CONF"
	run sd_metric submitd_spool_recovered_segments_total '{outcome="quarantined"}'
	assert_output 1
	[ -f "$SPOOL/quarantine/$name" ]
	assert_equal "$(stat -c %s "$SPOOL/quarantine/$name")" "$size"
	[ -f "$SPOOL/ready/$name" ]
	[ "$(stat -c %s "$SPOOL/ready/$name")" -lt $((size / 2 + 1)) ]
	grep -E "spool: $name: corrupt record at offset [0-9]+: moved into quarantine/" \
		"$BATS_TEST_TMPDIR/submitd.log"
	sd_stop
	run "$SD_ROOT/build/submit-spool" verify "$SPOOL/ready/$name"
	assert_success
}

# --- the forwarder ---

@test "kill -9 of the forwarder mid-segment: respawned, resumes from its checkpoint, exactly once" {
	nats_needed
	nats_start
	sd_nats 'nats_create_stream = 1' 'spool_sync = none' 'nats_max_inflight = 256'
	sd_bench "$BATS_TEST_TMPDIR/bench.json" -c 4 -r 5000 -n 30000 -s 100 --ack-log "$ACKS"
	local bench=$SD_BENCH_PID fpid
	wait_for -t 30 metric_ge submitd_nats_acked_total 3000
	fpid=$(forwarder_pid)
	[ -n "$fpid" ]
	# Mid-segment: a checkpoint past the first record and short of the end.
	ls "$SPOOL/forwarder"
	kill -KILL "$fpid"
	wait_for -t 30 sd_metric_is submitd_nats_forwarder_starts_total '' 2
	local npid
	npid=$(forwarder_pid)
	[ -n "$npid" ]
	[ "$npid" != "$fpid" ]
	sd_bench_wait "$bench" "$BATS_TEST_TMPDIR/bench.json" 120
	[ "$(sd_bench_field errors)" = 0 ]
	wait_for -t 120 drained
	verify -p 100
	assert_success
	assert_output --partial "acked0 30000 other 0 stream 30000 read 30000 missing 0 unexpected 0 duplicated 0"
	grep -q "forwarder (pid $fpid) killed by signal 9" "$BATS_TEST_TMPDIR/submitd.log"
	echo "duplicates after the kill: $(sd_metric submitd_nats_duplicates_total)" >&3
}

@test "resends from behind the checkpoint are dropped by the duplicate window and counted" {
	nats_needed
	nats_start
	sd_nats 'nats_create_stream = 1' 'spool_sync = none' 'workers = 1' 'spool_segment_age = 0'
	run "$SD_BENCH" -c 2 -n 5000 -s 100 --ack-log "$ACKS" "127.0.0.1:$SD_PORT"
	assert_success
	wait_for -t 60 sd_metric_is submitd_nats_acked_total '' 5000
	# The forwarder dies with its checkpoints lost: everything of the open segment goes again.
	kill -STOP "$SD_PID"
	local fpid
	fpid=$(forwarder_pid)
	kill -KILL "$fpid"
	wait_for -t 10 _sd_all_gone "$fpid"
	rm -f "$SPOOL"/forwarder/*.ckpt
	kill -CONT "$SD_PID"
	wait_for -t 30 sd_metric_is submitd_nats_forwarder_starts_total '' 2
	wait_for -t 60 metric_ge submitd_nats_duplicates_total 1
	wait_for -t 60 drained
	verify -p 100
	assert_success
	assert_output --partial "acked0 5000 other 0 stream 5000 read 5000 missing 0 unexpected 0 duplicated 0"
	echo "duplicates dropped: $(sd_metric submitd_nats_duplicates_total)" >&3
}
