#!/usr/bin/env bats
# The NATS forwarder (docs/NATS.md): the spool forwarded into a JetStream
# stream exactly once, acks after the stream (ack_after = stream), NATS down
# and back, NATS refusing, a stream leader killed (the forwarder killed is in
# spool-crash.bats). Each test starts its own
# nats-server on a free loopback port and stops it by pid. The stream is read
# back with build/test/nats-verify and compared with submit-bench's ack log.

load helpers/common
load helpers/nats

setup() {
	nats_needed
	SPOOL=$BATS_TEST_TMPDIR/spool
	ACKS=$BATS_TEST_TMPDIR/acks
	NATS_PID=
}

teardown() {
	sd_stop
	nats_stop
	cluster_stop
}

@test "nats options: -T shows them, -t rejects bad values and reports a missing stream" {
	local conf=$BATS_TEST_TMPDIR/c.conf
	printf 'listen = {"127.0.0.1:0"}\n' >"$conf"
	run "$SD_BIN" -T -c "$conf"
	assert_success
	assert_line 'nats_servers = {}'
	assert_line 'ack_after = spool'
	assert_line 'nats_subject = "submit.%h.%w"'
	assert_line 'nats_max_inflight = 4096'
	local bad
	for bad in 'ack_after = later' 'nats_servers = {"http://x:1"}' 'nats_stream = "a.b"' \
		'nats_subject = "submit.>"' 'nats_max_inflight = 0' 'nats_stream_retention = forever'; do
		printf 'listen = {"127.0.0.1:0"}\n%s\n' "$bad" >"$conf"
		run "$SD_BIN" -t -c "$conf"
		assert_failure
		assert_output --partial "$conf:2: ${bad%% *}"
	done
	# Forwarding needs a spool; ack_after = stream needs a forwarder.
	printf 'listen = {"127.0.0.1:0"}\nnats_servers = {"nats://127.0.0.1:4"}\n' >"$conf"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "$conf:2: nats_servers: the forwarder needs spool_dir"
	printf 'listen = {"127.0.0.1:0"}\nack_after = stream\n' >"$conf"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "$conf:2: ack_after = stream: needs nats_servers"

	nats_start
	printf 'listen = {"127.0.0.1:0"}\nspool_dir = "%s"\nnats_servers = {"nats://127.0.0.1:%s"}\nnats_stream = "NOPE"\n' \
		"$SPOOL" "$NATS_PORT" >"$conf"
	run "$SD_BIN" -t -c "$conf"
	assert_failure
	assert_output --partial "stream NOPE not found"
	echo 'nats_create_stream = 1' >>"$conf"
	run "$SD_BIN" -t -c "$conf"
	assert_success
}

@test "the forwarder: its own process titled submitd: forwarder, without the clients' listener" {
	nats_start
	sd_nats 'nats_create_stream = 1'
	wait_for -t 30 sd_metric_is submitd_nats_state '{state="connected"}' 1
	local fpid
	fpid=$(forwarder_pid)
	[ -n "$fpid" ]
	run ps -o args= -p "$fpid"
	assert_output "submitd: forwarder"
	# Only the workers hold the listening socket.
	run ss -Hltnp "sport = :$SD_PORT"
	echo "$output"
	assert_output --partial "pid=$(sd_workers | grep -vx "$fpid" | head -1),"
	refute_output --partial "pid=$fpid,"
	# Threads: libnats' own, in the forwarder only.
	[ "$(ls "/proc/$fpid/task" | wc -l)" -gt 1 ]
	local w
	for w in $(sd_workers | grep -vx "$fpid"); do
		[ "$(ls "/proc/$w/task" | wc -l)" = 1 ]
	done
	[ "$(ls "/proc/$SD_PID/task" | wc -l)" = 1 ]
}

# vcsw PID: the voluntary context switches of PID's main thread so far.
vcsw() {
	awk '/^voluntary_ctxt_switches/ { print $2 }' "/proc/$1/status"
}

@test "an idle forwarder tailing an open segment sleeps until a worker wakes it; records still go at once" {
	nats_start
	sd_nats 'nats_create_stream = 1' 'ack_after = stream' 'spool_segment_age = 600' 'workers = 1'
	wait_for -t 30 sd_metric_is submitd_nats_state '{state="connected"}' 1
	run "$SD_BENCH" -c 1 -w 1 -n 200 -s 100 --ack-log "$ACKS" "127.0.0.1:$SD_PORT"
	assert_success
	wait_for -t 30 sd_metric_is submitd_nats_acked_total '' 200
	# The segment stays open (no traffic, sealed only by size or after
	# 600 s) and the forwarder tails it. Counted over 2 s: it sleeps up to
	# 50 ms at a time, where it looked every 2 ms before.
	[ -n "$(find "$SPOOL/active" -name '*.seg')" ]
	local f v1 v2
	f=$(forwarder_pid)
	v1=$(vcsw "$f")
	sleep 2
	v2=$(vcsw "$f")
	echo "forwarder's voluntary context switches in 2 s: $((v2 - v1))"
	[ $((v2 - v1)) -lt 250 ]
	# Woken by the worker: request/response with ack_after = stream goes
	# through the stream 200 times more, in order and exactly once.
	run "$SD_BENCH" -c 1 -w 1 -n 200 -s 100 --ack-log "$BATS_TEST_TMPDIR/acks2" "127.0.0.1:$SD_PORT"
	assert_success
	cat "$BATS_TEST_TMPDIR/acks2" >>"$ACKS"
	wait_for -t 30 drained
	verify -p 100
	assert_success
	assert_output --partial "acked0 400 other 0 stream 400 read 400 missing 0 unexpected 0 duplicated 0"
}

@test "zeros written ahead of a busy always writer are neither lag nor an unreadable record" {
	nats_start
	sd_start "spool_dir = \"$SPOOL\"" 'spool_sync = always' 'workers = 1' \
		"nats_servers = {\"nats://127.0.0.1:$NATS_PORT\"}" 'nats_stream = "SUB"' \
		'nats_create_stream = 1' 'spool_segment_age = 600'
	wait_for -t 30 sd_metric_is submitd_nats_state '{state="connected"}' 1
	# Request/response, one commit per record: over 100 commits a second
	# (a second after its first record), so the worker keeps zeros synced
	# ahead of its records. A slow disk gets up to 5 runs of 2 s for that.
	local i seg size written
	for i in 1 2 3 4 5; do
		run "$SD_BENCH" -c 1 -w 1 -d 2s -s 100 --ack-log "$BATS_TEST_TMPDIR/acks$i" \
			"127.0.0.1:$SD_PORT"
		assert_success
		cat "$BATS_TEST_TMPDIR/acks$i" >>"$ACKS"
		seg=$(find "$SPOOL/active" -name '*.seg')
		[ -n "$seg" ]
		size=$(stat -c %s "$seg")
		written=$(sd_metric submitd_spool_written_bytes_total '{worker="0"}')
		echo "run $i: segment: $size bytes; records: $written bytes"
		[ "$size" -le $((written + 64)) ] || break
	done
	[ "$size" -gt $((written + 64)) ]
	# The forwarder tails the open segment (sealed by size or after 600 s)
	# up to the worker's end: all of it forwarded, no lag left, and the
	# zeros were never read as a record.
	wait_for -t 30 drained
	[ "$(find "$SPOOL/active" -name '*.seg')" = "$seg" ]
	run grep -c unreadable "$BATS_TEST_TMPDIR/submitd.log"
	assert_output 0
	verify -p 100
	assert_success
	local n
	n=$(wc -l <"$ACKS")
	assert_output --partial "acked0 $n other 0 stream $n read $n missing 0 unexpected 0 duplicated 0"
}

# One run per ack_after value: every result-0 ack in the stream once, byte for byte.
roundtrip() {
	nats_start
	sd_nats 'nats_create_stream = 1' 'spool_sync = always' "ack_after = $1"
	run "$SD_BENCH" -c 8 -n 20000 -s 100 --ack-log "$ACKS" "127.0.0.1:$SD_PORT"
	echo "$output"
	assert_success
	run sd_metric submitd_submit_acks_total '{result="0"}'
	assert_output 20000
	wait_for -t 60 drained
	verify -p 100
	assert_success
	assert_output --partial "acked0 20000 other 0 stream 20000 read 20000 missing 0 unexpected 0 duplicated 0 bad_payload 0"
	run sd_metric submitd_nats_acked_total
	assert_output 20000
	run sd_metric submitd_nats_forward_latency_seconds_count
	assert_output 20000
	run sd_metric submitd_nats_state '{state="connected"}'
	assert_output 1
	[ "$(sd_metric submitd_nats_segments_forwarded_total)" -ge 1 ]
}

@test "one node, ack_after = spool: every result-0 ack is in the stream exactly once, byte for byte" {
	roundtrip spool
}

@test "one node, ack_after = stream: every result-0 ack is in the stream exactly once, byte for byte" {
	roundtrip stream
}

@test "records carry their headers: Submit id, Conn id, client, worker, time; Nats-Msg-Id from the spool place" {
	nats_start
	sd_nats 'nats_create_stream = 1' 'workers = 1'
	run "$SD_BENCH" -c 1 -n 3 -s 5 --conn --ack-log "$ACKS" "127.0.0.1:$SD_PORT"
	assert_success
	wait_for -t 30 drained
	verify -p 5 -d 3
	assert_success
	local first=${lines[0]}
	[[ "$first" == submit.*.0\ * ]]
	[[ "$first" =~ " Submit-Id: 30303030303030"[0-9a-f]{2} ]]
	[[ "$first" =~ " Submit-Conn-Id: 30303030303030"[0-9a-f]{2} ]]
	[[ "$first" =~ " Submit-Client: 127.0.0.1:"[0-9]+ ]]
	[[ "$first" == *" Submit-Worker: 0"* ]]
	[[ "$first" =~ " Submit-Time: 1"[0-9]{18} ]]
	[[ "$first" =~ " Nats-Msg-Id: "[0-9]{20}-w000-p[0-9]+:64: ]]
	[[ "${lines[1]}" =~ " Nats-Msg-Id: "[0-9]{20}-w000-p[0-9]+:133: ]]
}

@test "Submit-Identity byte for byte; version 1 segments left from before the upgrade are recovered and forwarded as they are" {
	nats_start
	# A spool from before identities: 3 sealed records, and 2 in active/ of a writer that died.
	"$SD_ROOT/build/test/spool-gen" -1 -n 3 "$SPOOL" >/dev/null
	"$SD_ROOT/build/test/spool-gen" -1 -g 3 -n 2 -a "$SPOOL" >/dev/null
	head -c 32 /dev/urandom | base64 -w0 >"$BATS_TEST_TMPDIR/token"
	"$SD_BIN" --hash-token 'spiffe://fleet/device-7' <"$BATS_TEST_TMPDIR/token" >"$BATS_TEST_TMPDIR/tokens"
	sd_nats 'nats_create_stream = 1' 'workers = 1' 'auth = token' \
		"auth_tokens_file = \"$BATS_TEST_TMPDIR/tokens\""
	run "$SD_BENCH" -c 1 -n 3 -s 5 --token "$BATS_TEST_TMPDIR/token" --ack-log "$ACKS" \
		"127.0.0.1:$SD_PORT"
	assert_success
	wait_for -t 30 drained
	# spool-gen's record g has the Submit id g.
	local g
	for g in 0 1 2 3 4; do
		printf '99 %016x 0\n' "$g" >>"$ACKS"
	done
	verify -d 8
	assert_success
	assert_output --partial 'acked0 8 other 0 stream 8 read 8 missing 0 unexpected 0 duplicated 0'
	local old new
	old=$(grep -c ' Submit-Id: 000000000000000[0-4]' <<<"$output")
	new=$(grep -Ec ' Submit-Id: 30303030303030[0-9a-f]{2}( .*)? Submit-Identity: spiffe://fleet/device-7( |$)|Submit-Identity: spiffe://fleet/device-7( .*)? Submit-Id: 30303030303030' <<<"$output")
	assert_equal "$old" 5
	assert_equal "$new" 3
	# The old records carry no identity; nothing else carries one.
	assert_equal "$(grep -c 'Submit-Identity' <<<"$output")" 3
	assert_equal "$(grep -o 'Submit-Identity: [^ ]*' <<<"$output" | sort -u)" \
		'Submit-Identity: spiffe://fleet/device-7'
}

@test "NATS stopped under load, then started again: the spool grows, then drains; exactly once" {
	nats_start
	sd_nats 'nats_create_stream = 1' 'spool_sync = interval' 'spool_sync_interval = 20'
	sd_bench "$BATS_TEST_TMPDIR/bench.json" -c 4 -r 4000 -n 40000 -s 100 --ack-log "$ACKS"
	local bench=$SD_BENCH_PID
	wait_for -t 30 metric_ge submitd_nats_acked_total 2000
	nats_stop
	wait_for -t 30 sd_metric_is submitd_nats_state '{state="disconnected"}' 1
	# Acks keep coming (ack_after = spool) while the spool holds what NATS cannot take.
	local lag0
	lag0=$(sd_metric submitd_nats_lag_bytes)
	wait_for -t 60 metric_ge submitd_nats_lag_bytes $((lag0 + 500000))
	wait_for -t 30 metric_ge submitd_spool_ready_segments 2
	# Lag in records agrees with lag in bytes: 100-byte payloads plus a record header.
	local lrec lbytes
	lrec=$(sd_metric submitd_nats_lag_records)
	lbytes=$(sd_metric submitd_nats_lag_bytes)
	echo "lag while NATS is down: $lrec records, $lbytes bytes" >&3
	[ "$lrec" -ge 1000 ]
	[ "$lrec" -ge $((lbytes / (100 + 64) / 2)) ]
	[ "$lrec" -le $((lbytes / 100 * 2)) ]
	nats_start
	wait_for -t 30 sd_metric_is submitd_nats_state '{state="connected"}' 1
	sd_bench_wait "$bench" "$BATS_TEST_TMPDIR/bench.json" 120
	[ "$(sd_bench_field errors)" = 0 ]
	wait_for -t 120 drained
	[ "$(sd_metric submitd_nats_lag_records)" = 0 ]
	verify -p 100
	assert_success
	assert_output --partial "acked0 40000 other 0 stream 40000 read 40000 missing 0 unexpected 0 duplicated 0"
	[ "$(sd_metric submitd_nats_connects_total)" -ge 2 ]
}

# Whether the forwarder holds segments in taken/ with records in flight,
# the same ones and as many records acknowledged as at the last look.
fwd_holds() {
	local now
	now="$(find "$SPOOL/taken" -name '*.seg' | sort) $(sd_metric submitd_nats_acked_total)"
	metric_ge submitd_nats_inflight 1 || return 1
	[ -n "$(find "$SPOOL/taken" -name '*.seg')" ] || return 1
	[ "$now" = "$(cat "$BATS_TEST_TMPDIR/held" 2>/dev/null)" ] && return 0
	echo "$now" >"$BATS_TEST_TMPDIR/held"
	return 1
}

@test "submit-spool take beside the forwarder: it never gets a segment the forwarder holds; each record in the stream or printed, once" {
	# The forwarder connects, then NATS hangs (SIGSTOP): what it publishes
	# is never acknowledged, so it holds each segment it took.
	nats_start
	sd_nats 'nats_create_stream = 1' 'spool_sync = none' 'workers = 2' \
		'nats_max_inflight = 256' 'spool_segment_age = 1'
	wait_for -t 30 sd_metric_is submitd_nats_state '{state="connected"}' 1
	local srv
	srv=$(pgrep -P "$NATS_PID" -x nats-server)
	[ -n "$srv" ]
	kill -STOP "$srv"
	run "$SD_BENCH" -c 4 -n 20000 -s 100 --ack-log "$ACKS" "127.0.0.1:$SD_PORT"
	assert_success
	# Everything sealed (segment_age 1 s): ready/ holds a backlog, the
	# forwarder its segments in taken/.
	wait_for -t 30 eval '[ -z "$(find "$SPOOL/active" -name "*.seg" -size +1k)" ]'
	wait_for -t 30 fwd_holds || {
		sd_metrics | grep -E '^submitd_nats_(inflight|acked_total|published_total)'
		find "$SPOOL" -name '*.seg' | sort
		return 1
	}
	[ "$(find "$SPOOL/ready" -name '*.seg' | wc -l)" -ge 10 ]
	local held
	held=$(cd "$SPOOL/taken" && find . -name '*.seg' | sed 's|^\./||')
	echo "the forwarder holds: $held"
	[ -n "$(find "$SPOOL/ready" -name '*.seg')" ]
	# take until nothing is left to take (exit 3), bounded.
	local i rc=0
	for ((i = 0; i < 500; i++)); do
		"$SD_ROOT/build/submit-spool" take -o "$BATS_TEST_TMPDIR/take.$i" "$SPOOL" || {
			rc=$?
			break
		}
	done
	echo "takes: $i, last exit $rc"
	assert_equal "$rc" 3
	[ "$i" -ge 1 ]
	# What the forwarder held is still its own.
	local seg
	for seg in $held; do
		[ -e "$SPOOL/taken/$seg" ]
		run grep -qF "\"segment\":\"$seg\"" "$BATS_TEST_TMPDIR"/take.*
		assert_failure 1
	done
	kill -CONT "$srv"
	wait_for -t 120 drained
	run "$VERIFY" -s "nats://127.0.0.1:$NATS_PORT" -S SUB -a "$ACKS" -d 1000000
	cat "$BATS_TEST_TMPDIR"/take.* >"$BATS_TEST_TMPDIR/printed"
	printf '%s\n' "$output" >"$BATS_TEST_TMPDIR/stream"
	run python3 - "$BATS_TEST_TMPDIR/stream" "$BATS_TEST_TMPDIR/printed" "$ACKS" <<'PY'
import json, re, sys
stream = [m.group(1) for m in (re.search(r"Nats-Msg-Id: (\S+?-w\d+-p\d+:\d+):", l)
                               for l in open(sys.argv[1])) if m]
printed = []
for l in open(sys.argv[2]):
    r = json.loads(l)
    printed.append("%s:%d" % (r["segment"].removesuffix(".seg"), r["offset"]))
acked = sum(1 for l in open(sys.argv[3]) if l.split()[-1] == "0")
s, p = set(stream), set(printed)
print("stream %d (%d distinct), printed %d (%d distinct), both %d, acked %d"
      % (len(stream), len(s), len(printed), len(p), len(s & p), acked))
ok = len(s) == len(stream) and len(p) == len(printed) and not (s & p) and len(s) + len(p) == acked
sys.exit(0 if ok and stream and printed else 1)
PY
	echo "$output"
	assert_success
}

@test "wrong credentials: a clear error in the log and /metrics; the service serves and spools" {
	nats_start --user good --pass secret
	sd_nats 'nats_create_stream = 1' 'nats_user = "good"' 'nats_password = "wrong"'
	wait_for -t 30 sd_metric_is submitd_nats_state '{state="refused"}' 1
	run "$SD_BENCH" -c 2 -n 4000 -s 100 --ack-log "$ACKS" "127.0.0.1:$SD_PORT"
	assert_success
	run sd_metric submitd_submit_acks_total '{result="0"}'
	assert_output 4000
	wait_for -t 10 grep -qE "cannot connect to NATS .*[Aa]uthorization" "$BATS_TEST_TMPDIR/submitd.log"
	[ "$(sd_metric submitd_nats_connect_errors_total)" -ge 1 ]
	[ "$(sd_metric submitd_nats_published_total)" = 0 ]
	[ -n "$(find "$SPOOL/ready" "$SPOOL/active" -name '*.seg')" ]
	# Right credentials on reload: the spool drains into the stream.
	sed -i 's/^nats_password = .*/nats_password = "secret"/' "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for -t 60 sd_metric_is submitd_nats_acked_total '' 4000
	wait_for -t 60 drained
	nats_stop
	nats_start
	verify -p 100
	assert_success
}

@test "missing stream: a clear error in the log and /metrics; the spool fills, and drains once the stream exists" {
	nats_start
	sd_nats 'nats_create_stream = 0'
	wait_for -t 30 sd_metric_is submitd_nats_state '{state="no_stream"}' 1
	wait_for -t 10 grep -q "stream SUB: not found" "$BATS_TEST_TMPDIR/submitd.log"
	run "$SD_BENCH" -c 2 -n 4000 -s 100 --ack-log "$ACKS" "127.0.0.1:$SD_PORT"
	assert_success
	run sd_metric submitd_submit_acks_total '{result="0"}'
	assert_output 4000
	[ "$(sd_metric submitd_nats_published_total)" = 0 ]
	# Allowed to create it now: a reload restarts the forwarder with the new setting.
	sed -i 's/^nats_create_stream = .*/nats_create_stream = 1/' "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for -t 60 sd_metric_is submitd_nats_acked_total '' 4000
	wait_for -t 60 drained
	verify -p 100
	assert_success
}

@test "ack_after = stream: acks wait while NATS is down and resume when it is back; none wrong" {
	nats_start
	# send_timeout below the outage: acks held for the stream are no peer's fault.
	sd_nats 'nats_create_stream = 1' 'ack_after = stream' 'spool_sync = none' 'send_timeout = 2'
	sd_bench "$BATS_TEST_TMPDIR/bench.json" -c 4 -w 16 -d 20 -s 100 --ack-log "$ACKS"
	local bench=$SD_BENCH_PID
	wait_for -t 30 metric_ge submitd_submit_acks_total 2000 '{result="0"}'
	nats_stop
	wait_for -t 30 sd_metric_is submitd_nats_state '{state="disconnected"}' 1
	# No result-0 ack before the stream's PubAck: in one scrape, acks (rendered
	# first) never exceed the PubAcks received.
	local m acks acked
	m=$(sd_metrics)
	acks=$(awk '/^submitd_submit_acks_total\{.*result="0"/ {s += $2} END {print s + 0}' <<<"$m")
	acked=$(awk '/^submitd_nats_acked_total / {print $2}' <<<"$m")
	[ "$acks" -le "$acked" ]
	# The acks stop: measured over one second, bounded to five tries.
	local a1 a2
	for _ in 1 2 3 4 5; do
		a1=$(sd_metric submitd_submit_acks_total '{result="0"}')
		sleep 1
		a2=$(sd_metric submitd_submit_acks_total '{result="0"}')
		[ "$a1" = "$a2" ] && break
	done
	[ "$a1" = "$a2" ]
	[ "$(sd_metric submitd_nats_acked_total)" -ge "$a2" ]
	# Waiting is sleeping: the forwarder wakes the workers when the stream
	# moves, so they do not poll it (every 1 ms, a thousand wake-ups a
	# second, before). Counted over 2 s: at most 20 ms sleeps, and the
	# heartbeat.
	local w s1 s2
	for w in $(pgrep -P "$SD_PID" "^submitd-w"); do
		s1+=" $(awk '/^voluntary_ctxt_switches/ { print $2 }' "/proc/$w/status")"
	done
	sleep 2
	for w in $(pgrep -P "$SD_PID" "^submitd-w"); do
		s2+=" $(awk '/^voluntary_ctxt_switches/ { print $2 }' "/proc/$w/status")"
	done
	echo "workers' voluntary context switches: before$s1, 2 s later$s2"
	paste <(tr ' ' '\n' <<<"${s1# }") <(tr ' ' '\n' <<<"${s2# }") |
		awk '{ if ($2 - $1 > 400) bad = 1 } END { exit bad }'
	nats_start
	wait_for -t 60 metric_ge submitd_submit_acks_total $((a2 + 2000)) '{result="0"}'
	sd_bench_wait "$bench" "$BATS_TEST_TMPDIR/bench.json" 90
	[ "$(sd_bench_field errors)" = 0 ]
	wait_for -t 60 drained
	verify -p 100
	assert_success
	assert_output --partial " missing 0 unexpected 0 duplicated 0 bad_payload 0"
	run sd_metric submitd_connections_closed_total '{reason="send_timeout"}'
	assert_output 0
}

# A three-node cluster on free loopback ports; the nats-server pids in
# NODE_PID[1..3] (their timeout wrappers in NODE_TO), client ports in NODE_PORT[1..3].
cluster_start() {
	local i j routes=""
	declare -gA NODE_PID NODE_TO NODE_PORT NODE_ROUTE
	for i in 1 2 3; do
		NODE_PORT[$i]=$(free_port)
		NODE_ROUTE[$i]=$(free_port)
		routes="$routes${routes:+, }nats-route://127.0.0.1:${NODE_ROUTE[$i]}"
	done
	for i in 1 2 3; do
		cat >"$BATS_TEST_TMPDIR/n$i.conf" <<-EOC
			server_name: n$i
			listen: 127.0.0.1:${NODE_PORT[$i]}
			jetstream { store_dir: "$BATS_TEST_TMPDIR/n$i" }
			cluster { name: c1, listen: 127.0.0.1:${NODE_ROUTE[$i]}, routes: [$routes] }
		EOC
		node_start "$i"
	done
	for i in 1 2 3; do
		wait_for -t 30 grep -q "Server is ready" "$BATS_TEST_TMPDIR/n$i.log"
	done
	# JetStream answers once the cluster elected its meta leader.
	for j in 1 2 3; do
		wait_for -t 60 grep -qE "JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader" \
			"$BATS_TEST_TMPDIR/n$j.log" && break
	done
}

# node_start I: node I under timeout; NODE_PID is the server itself, so that
# a SIGKILL reaches it (timeout does not pass SIGKILL on to its child).
node_start() {
	timeout 300 nats-server -c "$BATS_TEST_TMPDIR/n$1.conf" >>"$BATS_TEST_TMPDIR/n$1.log" 2>&1 3>&- 4>&- &
	NODE_TO[$1]=$!
	wait_for -t 10 pgrep -P "${NODE_TO[$1]}" -x nats-server
	NODE_PID[$1]=$(pgrep -P "${NODE_TO[$1]}" -x nats-server)
}

cluster_stop() {
	local i
	[ "$(declare -p NODE_PID 2>/dev/null)" ] || return 0
	for i in 1 2 3; do
		[ -n "${NODE_PID[$i]:-}" ] || continue
		kill -KILL "${NODE_PID[$i]}" 2>/dev/null || true
		wait "${NODE_TO[$i]}" 2>/dev/null || true
		NODE_PID[$i]=
	done
}

@test "three nodes, R3 stream: kill -9 of the stream leader under load; nothing acked lost, nothing duplicated" {
	cluster_start
	sd_start "spool_dir = \"$SPOOL\"" 'spool_segment_size = 65536' 'nats_stream = "SUB"' \
		"nats_servers = {\"nats://127.0.0.1:${NODE_PORT[1]}\", \"nats://127.0.0.1:${NODE_PORT[2]}\", \"nats://127.0.0.1:${NODE_PORT[3]}\"}" \
		'nats_create_stream = 1' 'nats_stream_replicas = 3' 'ack_after = stream' 'spool_sync = none'
	wait_for -t 60 sd_metric_is submitd_nats_state '{state="connected"}' 1
	sd_bench "$BATS_TEST_TMPDIR/bench.json" -c 4 -r 3000 -n 30000 -s 100 --ack-log "$ACKS"
	local bench=$SD_BENCH_PID leader i survivor
	wait_for -t 60 metric_ge submitd_nats_acked_total 3000
	leader=$("$VERIFY" -s "nats://127.0.0.1:${NODE_PORT[1]}" -S SUB -L)
	i=${leader#n}
	[ -n "${NODE_PID[$i]:-}" ]
	kill -KILL "${NODE_PID[$i]}"
	wait "${NODE_TO[$i]}" 2>/dev/null || true
	run kill -0 "${NODE_PID[$i]}"
	assert_failure
	NODE_PID[$i]=
	survivor=$((i % 3 + 1))
	local before
	before=$(sd_metric submitd_nats_acked_total)
	wait_for -t 90 metric_ge submitd_nats_acked_total $((before + 3000))
	sd_bench_wait "$bench" "$BATS_TEST_TMPDIR/bench.json" 120
	[ "$(sd_bench_field errors)" = 0 ]
	wait_for -t 120 drained
	# After the kill the cluster elects a new meta leader; until it has one
	# the checker's consumer times out (exit 2, a tool error, not a result).
	verify_survivor() {
		local rc=0
		"$VERIFY" -s "nats://127.0.0.1:${NODE_PORT[$survivor]}" -S SUB -a "$ACKS" -p 100 \
			>"$BATS_TEST_TMPDIR/verify.out" 2>&1 || rc=$?
		echo "$rc" >"$BATS_TEST_TMPDIR/verify.rc"
		[ "$rc" -ne 2 ]
	}
	wait_for -t 90 verify_survivor
	run cat "$BATS_TEST_TMPDIR/verify.out"
	echo "$output"
	assert_equal "$(cat "$BATS_TEST_TMPDIR/verify.rc")" 0
	assert_output --partial "acked0 30000 other 0 stream 30000 read 30000 missing 0 unexpected 0 duplicated 0"
	echo "leader $leader killed; failed $(sd_metric submitd_nats_failed_total), duplicates $(sd_metric submitd_nats_duplicates_total)" >&3
}
