#!/usr/bin/env bats
# The spool (docs/SPOOL.md): what an ack with result 0 promises, failures
# (ENOSPC, EIO on fdatasync, the size bound) and the hand-over to a consumer;
# kill -9 and recovery after crashes are in spool-crash.bats. The load comes from submit-bench --tag-payload
# --ack-log: its ack log says what was acked, and each payload names its
# connection and id, so `spoolcheck.py bench` matches the records that
# `submit-spool cat` prints (or that the independent reader of the format
# in test/helpers/spoolcheck.py reads) against the acks and predicts every
# payload byte. The python client (spoolcheck.py load) is kept where the
# bench cannot go: a Conn id per connection.

load helpers/common
load helpers/spool

setup() {
	SPOOL=$BATS_TEST_TMPDIR/spool
	ACKS=$BATS_TEST_TMPDIR/acks
}

teardown() {
	sd_stop
	if [ -n "${TMPFS:-}" ]; then
		umount "$TMPFS" 2>/dev/null || umount -l "$TMPFS" 2>/dev/null || true
		TMPFS=
	fi
}

# spool_load ARGS...: the python load client against SD_PORT (foreground).
spool_load() {
	$SC load --port "$SD_PORT" --ack-log "$ACKS" "$@"
}

acks_with() {
	awk -v r="$1" '$3 == r' "$ACKS" | wc -l
}

@test "spool options: -T shows the defaults, -t rejects bad values with file:line" {
	local conf=$BATS_TEST_TMPDIR/c.conf
	printf 'listen = {"127.0.0.1:0"}\n' >"$conf"
	run "$SD_BIN" -T -c "$conf"
	assert_success
	assert_line 'spool_dir = ""'
	assert_line 'spool_sync = always'
	assert_line 'spool_full = refuse'
	assert_line 'spool_sync_interval = 1000'
	assert_line 'spool_segment_size = 67108864'
	assert_line 'spool_segment_age = 10'
	assert_line 'spool_max_size = 1073741824'
	local bad
	for bad in 'spool_sync = sometimes' 'spool_full = drop' 'spool_dir = "relative/dir"' \
		'spool_segment_size = 100' 'spool_sync_interval = 0' 'spool_max_size = 8192' \
		'spool_segment_age = -1'; do
		printf 'listen = {"127.0.0.1:0"}\n%s\n' "$bad" >"$conf"
		run "$SD_BIN" -t -c "$conf"
		assert_failure
		assert_output --partial "$conf:2: ${bad%% *}"
	done
	# The shipped file spools to the package's directory.
	run "$SD_BIN" -T -c "$SD_ROOT/etc/submitd.conf"
	assert_success
	assert_line 'spool_dir = "/var/lib/submitd/spool"'
}

# The same check for each policy: every result-0 ack stored once, byte for byte.
policy_roundtrip() {
	local policy=$1
	sd_start "spool_dir = \"$SPOOL\"" "spool_sync = $policy" 'spool_sync_interval = 50' \
		'spool_segment_size = 65536'
	spool_bench -n 12000 -c 4 -w 100 -s 20-200 --conn
	assert_equal "$(jq -c '[.results."0", .errors]' <<<"$SD_BENCH_JSON")" '[12000,0]'
	assert_equal "$(wc -l <"$ACKS")" 12000
	run sd_metric submitd_submit_acks_total '{result="0"}'
	assert_output 12000
	run sd_metric submitd_spool_records_total
	assert_output 12000
	# interval: the load can end inside one interval; the next fdatasync
	# comes from the worker's timer, not from a round.
	[ "$policy" != interval ] ||
		wait_for eval '[ "$(sd_metric submitd_spool_fsyncs_total)" -ge 1 ]'
	FSYNCS=$(sd_metric submitd_spool_fsyncs_total)
	PER_FSYNC_COUNT=$(sd_metric submitd_spool_records_per_fsync_count)
	PER_FSYNC_SUM=$(sd_metric submitd_spool_records_per_fsync_sum)
	# Sealed segments are in ready/ while the server runs.
	wait_for sd_metric_is submitd_spool_ready_segments '' "$(ls "$SPOOL/ready" | wc -l)"
	[ "$(ls "$SPOOL/ready" | wc -l)" -ge 2 ]
	sd_stop
	# Read back twice: with submit-spool cat, and with the independent reader here.
	run spool_check
	echo "$output"
	assert_success
	assert_output --partial "result 0 12000, result 1 0, result 2 0; records 12000; missing 0"
	run $SC bench --ack-log "$ACKS" --spool "$SPOOL"
	echo "$output"
	assert_success
	assert_output --partial "result 0 12000, result 1 0, result 2 0; records 12000; missing 0"
	run "$SD_ROOT/build/submit-spool" verify "$SPOOL"
	assert_success
	# A clean stop sealed every segment.
	run ls "$SPOOL/active"
	assert_output ""
}

@test "spool_sync = always: every result-0 ack is in the spool once, one fdatasync covers a round" {
	policy_roundtrip always
	echo "fsyncs $FSYNCS, records per fsync: $PER_FSYNC_SUM / $PER_FSYNC_COUNT"
	[ "$FSYNCS" -ge 1 ]
	[ "$PER_FSYNC_COUNT" = "$FSYNCS" ]
	[ "$PER_FSYNC_SUM" = 12000 ]
	# Group commit: fewer fdatasyncs than records.
	[ "$FSYNCS" -lt 12000 ]
}

@test "spool_sync = interval: every result-0 ack is in the spool once" {
	policy_roundtrip interval
	echo "fsyncs $FSYNCS"
	[ "$FSYNCS" -ge 1 ]
}

@test "spool_sync = none: every result-0 ack is in the spool once, no fdatasync for acks" {
	policy_roundtrip none
	[ "$FSYNCS" = 0 ]
}

@test "records carry the Conn id, the client's address and port, and the worker" {
	sd_start "spool_dir = \"$SPOOL\"" 'workers = 1'
	run sd_client roundtrip --cmd conn --id CONNID01
	assert_success
	run sd_client roundtrip --id SUBMIT01 --payload 5
	assert_success
	sd_stop
	run python3 - "$SPOOL" <<'PY'
import glob, struct, sys, time
segs = sorted(glob.glob(sys.argv[1] + "/ready/*.seg"))
r = open(segs[0], "rb").read()[64:]
crc, n, ts, seq = struct.unpack_from("<IIQQ", r, 0)
port, worker = struct.unpack_from("<HH", r, 56)
age = time.time() - ts / 1e9
print(len(segs), n, r[24:32].decode(), r[32:40].hex(), r[40:56].hex(), port > 0,
      worker, r[60], r[61], r[64:n].decode(), seq, 0 <= age < 60)
PY
	echo "$output"
	# One record: the Submit came on the second connection, which sent no Conn.
	assert_output "1 69 SUBMIT01 0000000000000000 00000000000000000000ffff7f000001 True 0 1 0 xxxxx 2 True"
}

@test "spool_segment_age = 1: a quiet worker's segment is sealed into ready/ within seconds" {
	sd_start "spool_dir = \"$SPOOL\"" 'workers = 1' 'spool_segment_age = 1'
	run sd_client pipeline 10
	assert_success
	wait_for -t 5 sd_metric_is submitd_spool_segments_sealed_total '' 1
	run ls "$SPOOL/active"
	assert_output ""
	run ls "$SPOOL/ready"
	assert_equal "${#lines[@]}" 1
	wait_for -t 5 sd_metric_is submitd_spool_ready_segments '' 1
}

@test "reload: spool_sync and the bound change for the new workers, spool_dir only at restart" {
	sd_start "spool_dir = \"$SPOOL\"" 'workers = 1' 'spool_sync = none'
	run sd_client pipeline 10
	assert_success
	run sd_metric submitd_spool_fsyncs_total
	assert_output 0
	sed -i -e 's/^spool_sync = none/spool_sync = always/' "$SD_CONF"
	sed -i -e "s|^spool_dir = .*|spool_dir = \"$BATS_TEST_TMPDIR/other\"|" "$SD_CONF"
	echo 'spool_max_size = 134217728' >>"$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for -t 10 grep -q "generation 2 starting" "$BATS_TEST_TMPDIR/submitd.log"
	wait_for -t 10 eval '[ "$(grep -c "ready: 1 workers running" "$BATS_TEST_TMPDIR/submitd.log")" -ge 2 ]'
	grep -q "reload: spool_dir takes effect only after a restart" "$BATS_TEST_TMPDIR/submitd.log"
	run sd_client pipeline 10
	assert_success
	wait_for sd_metric_is submitd_spool_fsyncs_total '' 1
	run sd_metric submitd_spool_max_bytes
	assert_output 134217728
	[ ! -e "$BATS_TEST_TMPDIR/other" ]
	sd_stop
	run $SC read "$SPOOL"
	assert_equal "${#lines[@]}" 20
}

@test "Conn id of the connection goes into its records" {
	sd_start "spool_dir = \"$SPOOL\"" 'workers = 1'
	run spool_load --conns 2 --count 100
	assert_success
	sd_stop
	# check verifies flags bit 0 and the Conn id each connection sent first.
	run $SC check "$SPOOL" --ack-log "$ACKS"
	assert_success
}

# cached FILE: bytes of FILE in the page cache.
cached() {
	fincore -b -n -o RES "$1"
}

@test "a writer keeps only the newest 16 MiB of its open segment in the page cache, 1 MiB of a sealed one" {
	# always: every round is synced, so every page behind is clean and dropped.
	sd_start "spool_dir = \"$SPOOL\"" 'workers = 1' 'spool_sync = always' \
		'spool_segment_size = 268435456'
	run spool_bench -c 4 -w 8 -s 16384 -n 6000
	assert_success
	local seg size res
	seg=$(ls "$SPOOL"/active/*.seg)
	size=$(stat -c %s "$seg")
	res=$(cached "$seg")
	echo "open segment: $size bytes, $res in the page cache"
	[ "$size" -ge $((90 << 20)) ]
	# 16 MiB behind the end, the 1 MiB step at which pages are dropped, the
	# zeros written ahead of a writer with small commits (at most 4 MiB) and
	# a large folio across the boundary (up to 2 MiB).
	[ "$res" -le $((24 << 20)) ]
	[ "$res" -ge $((1 << 20)) ]
	sd_stop
	seg=$(ls "$SPOOL"/ready/*.seg)
	res=$(cached "$seg")
	echo "sealed: $res in the page cache"
	# Sealing keeps the last MiB (and the kernel the whole of a large folio
	# across the boundary: up to 2 MiB).
	[ "$res" -le $((3 << 20)) ]
	run spool_check
	assert_success
}

@test "no allocation per message with the spool on (allocated bytes flat under load)" {
	sd_start "spool_dir = \"$SPOOL\"" 'workers = 1' 'spool_sync = none' \
		'spool_max_size = 268435456' 'spool_segment_size = 16777216' 'spool_full = drop_oldest'
	sd_sample_metrics "$BATS_TEST_TMPDIR/scrapes" 0.2
	sd_bench "$BATS_TEST_TMPDIR/bench.json" -c 8 -d 8
	sd_bench_wait "$SD_BENCH_PID" "$BATS_TEST_TMPDIR/bench.json" 30
	sd_kill_spawned
	# Past the first half of the load the gauge must not move.
	run python3 "$SD_ROOT/test/helpers/allocflat.py" "$BATS_TEST_TMPDIR/scrapes" submitd_spool_records_total
	echo "$output"
	assert_success
}

@test "submit-spool ls and verify on a live spool with zeros ahead: records written meanwhile are no damage" {
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = always' 'workers = 1'
	spool_bench_bg -c 4 -w 50 -s 20-200 --conn -r 20000
	wait_for -t 30 eval '"$SD_ROOT/build/submit-spool" ls "$SPOOL" | grep -q "zeros written ahead"'
	# Each look reads the records, then the zeros after them, while the
	# writer appends over those zeros: a look must tell that from damage.
	local i
	for i in $(seq 20); do
		run "$SD_ROOT/build/submit-spool" verify "$SPOOL"
		[ "$status" = 0 ] || {
			echo "verify $i: $output"
			return 1
		}
		# Damage reads "offset N: why"; a tail being written, "records end
		# at offset N, zeros written ahead" or "incomplete tail at offset N".
		run "$SD_ROOT/build/submit-spool" ls "$SPOOL"
		refute_output --regexp ' offset [0-9]+: '
	done
	spool_bench_stop
	assert_equal "$(sd_bench_field errors)" 0
	sd_stop
	run spool_check
	echo "$output"
	assert_success
}

@test "ENOSPC on a full tmpfs: result 2, no crash, acked data intact, storing resumes when space returns" {
	[ "$(id -u)" = 0 ] || skip "mounting a tmpfs needs root"
	TMPFS=$BATS_TEST_TMPDIR/tmpfs
	mkdir -p "$TMPFS"
	mount -t tmpfs -o size=8m tmpfs "$TMPFS" || skip "cannot mount a tmpfs here"
	SPOOL=$TMPFS/spool
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = always' 'workers = 1' \
		'spool_max_size = 0' 'spool_segment_size = 1048576'
	local workers
	workers=$(sd_workers)
	spool_bench_bg -c 2 -w 50 -s 1000-2000 --allow-refused
	wait_for -t 30 eval '[ "$(sd_metric submitd_submit_acks_total "{result=\"2\"}")" -ge 100 ]'
	run sd_metric submitd_spool_failures_total '{reason="nospace"}'
	[ "$output" -ge 1 ]
	# The worker still serves (same pid) and Conn still works.
	assert_equal "$(sd_workers)" "$workers"
	run sd_client roundtrip --cmd conn
	assert_success
	# A consumer takes segments away (submit-spool take): storing resumes by itself.
	local before i
	before=$(sd_metric submitd_submit_acks_total '{result="0"}')
	# Four of the (about seven) ready segments: room for more, while the server goes on.
	for i in 1 2 3 4; do
		run "$SD_ROOT/build/submit-spool" take -o "$BATS_TEST_TMPDIR/take.$i.json" "$SPOOL"
		assert_success
	done
	wait_for -t 30 acked_ge $((before + 500))
	spool_bench_stop
	assert_equal "$(sd_bench_field errors)" 0
	[ "$(sd_bench_field 'results."2"')" -ge 100 ]
	assert_equal "$(sd_workers)" "$workers"
	sd_stop
	# The result-2 ids are exactly the ones not stored, the result-0 ones are
	# stored once: in the spool or in what the consumer took.
	local cats=()
	for f in "$BATS_TEST_TMPDIR"/take.*.json; do cats+=(--cat "$f"); done
	run spool_check "${cats[@]}"
	echo "$output"
	assert_success
}

@test "EIO from fdatasync (test hook): that batch gets result 2, the segment goes to suspect/, a new one follows" {
	SD_BIN=$SD_ROOT/build/submitd-hooks
	[ -x "$SD_BIN" ] || skip "build/submitd-hooks not built"
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = always' 'workers = 1' 'spool_segment_age = 0'
	spool_bench_bg -c 2 -w 20 -s 20-200 --allow-refused
	wait_for -t 30 acked_ge 2000
	local active_before
	active_before=$(ls "$SPOOL/active")
	touch "$SPOOL/.fail-fsync"
	wait_for -t 10 sd_metric_is submitd_spool_failures_total '{reason="fsync"}' 1
	run sd_metric submitd_spool_segments_suspect_total
	assert_output 1
	run ls "$SPOOL/suspect"
	assert_output "$active_before"
	acked_more 2000
	spool_bench_stop
	assert_equal "$(sd_bench_field errors)" 0
	# The failed batch was answered with result 2; the next ones with 0, in a new segment.
	[ "$(acks_with 2)" -ge 1 ]
	assert_equal "$(sd_bench_field 'results."2"')" "$(acks_with 2)"
	run sd_metric submitd_submit_acks_total '{result="2"}'
	assert_output "$(acks_with 2)"
	run ls "$SPOOL/active"
	refute_output "$active_before"
	[ -n "$output" ]
	sd_stop
	# The batch that got result 2 is in suspect/ and nowhere else; every
	# result-0 ack is stored once (the ones before the failure in suspect/ too).
	local f
	for f in "$SPOOL"/ready/*.seg "$SPOOL"/active/*.seg; do
		[ ! -e "$f" ] || "$SD_ROOT/build/submit-spool" cat "$f"
	done >"$BATS_TEST_TMPDIR/cat.json"
	"$SD_ROOT/build/submit-spool" cat "$SPOOL/suspect/$active_before" >"$BATS_TEST_TMPDIR/suspect.json"
	run $SC bench --ack-log "$ACKS" --cat "$BATS_TEST_TMPDIR/cat.json" \
		--cat-suspect "$BATS_TEST_TMPDIR/suspect.json"
	echo "$output"
	assert_success
	assert_output --partial "(in suspect/ $(acks_with 2))"
	run grep -c "spool: fdatasync .*Input/output error" "$BATS_TEST_TMPDIR/submitd.log"
	assert_output 1
}

@test "spool_max_size with refuse: result 2 at the bound, none lost, accepted again after a consumer took segments" {
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = none' 'workers = 2' \
		'spool_segment_size = 65536' 'spool_max_size = 262144'
	spool_bench_bg -c 2 -w 20 -s 20-200 --allow-refused
	wait_for -t 30 eval '[ "$(sd_metric submitd_submit_acks_total "{result=\"2\"}")" -ge 50 ]'
	run sd_metric submitd_spool_failures_total '{reason="full"}'
	[ "$output" -ge 1 ]
	run sd_metric submitd_spool_max_bytes
	assert_output 262144
	# Used stays near the bound: at most the bound plus one batch per worker.
	local used
	used=$(du -sb "$SPOOL" | cut -f1)
	echo "spool holds $used bytes"
	[ "$used" -le $((262144 + 2 * 65536 + 65536)) ]
	local ok
	ok=$(sd_metric submitd_submit_acks_total '{result="0"}')
	mkdir -p "$BATS_TEST_TMPDIR/taken"
	mv "$SPOOL"/ready/*.seg "$BATS_TEST_TMPDIR/taken/"
	wait_for -t 30 acked_ge $((ok + 200))
	spool_bench_stop
	assert_equal "$(sd_bench_field errors)" 0
	[ "$(sd_bench_field 'results."2"')" -ge 50 ]
	sd_stop
	local f
	for f in "$BATS_TEST_TMPDIR"/taken/*.seg; do
		"$SD_ROOT/build/submit-spool" cat "$f"
	done >"$BATS_TEST_TMPDIR/taken.json"
	run spool_check --cat "$BATS_TEST_TMPDIR/taken.json"
	echo "$output"
	assert_success
}

@test "spool_max_size with drop_oldest: no result 2, the oldest ready segments dropped and counted" {
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = none' 'workers = 1' \
		'spool_segment_size = 65536' 'spool_max_size = 262144' 'spool_full = drop_oldest'
	spool_bench -n 6000 -c 2 -w 20 -s 20-200
	assert_equal "$(jq -c '[.results."0", .results."2", .errors]' <<<"$SD_BENCH_JSON")" '[6000,0,0]'
	assert_equal "$(acks_with 2)" 0
	run sd_metric submitd_spool_dropped_segments_total
	echo "dropped $output"
	[ "$output" -ge 1 ]
	local used
	used=$(du -sb "$SPOOL" | cut -f1)
	[ "$used" -le $((262144 + 2 * 65536)) ]
}

@test "hand-over: a consumer taking ready segments never sees a partial one, none taken twice" {
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = none' 'workers = 2' \
		'spool_segment_size = 4096'
	rm -f "$BATS_TEST_TMPDIR/cstop"
	sd_spawn "$BATS_TEST_TMPDIR/consume.out" $SC consume "$SPOOL" \
		--out "$BATS_TEST_TMPDIR/taken.txt" --stop-file "$BATS_TEST_TMPDIR/cstop"
	local consumer=$SD_SPAWNED
	spool_bench -n 8000 -c 4 -w 20 -s 20-200
	sd_stop_keep_spawned
	touch "$BATS_TEST_TMPDIR/cstop"
	wait_for -t 30 _sd_all_gone "$consumer"
	wait "$consumer" || {
		cat "$BATS_TEST_TMPDIR/consume.out"
		false
	}
	cat "$BATS_TEST_TMPDIR/consume.out"
	run grep -c . "$BATS_TEST_TMPDIR/taken.txt"
	[ "$output" -ge 1000 ]
	# What the consumer took and what is left: each result-0 ack exactly once.
	run $SC bench --ack-log "$ACKS" --records "$BATS_TEST_TMPDIR/taken.txt" --spool "$SPOOL"
	echo "$output"
	assert_success
	assert_output --partial "result 0 8000, result 1 0, result 2 0; records 8000; missing 0"
}

# sd_stop without ending the background clients (a consumer must see the last seal).
sd_stop_keep_spawned() {
	local keep=("${SD_BG_PIDS[@]}")
	SD_BG_PIDS=()
	sd_stop
	SD_BG_PIDS=("${keep[@]}")
}

@test "spool off (spool_dir empty): acks are result 0 and nothing is written" {
	sd_start
	run sd_client pipeline 100
	assert_success
	run sd_metric submitd_submit_acks_total '{result="0"}'
	assert_output 100
	run sd_metric submitd_spool_records_total
	assert_output 0
}
