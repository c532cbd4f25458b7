#!/usr/bin/env bats
# submit-bench against the real submitd, and against the reference server
# built to misbehave (bench/ref-server.c --corrupt-ack, --close-after,
# --not-stored), and bench/plot.sh on small inputs.

load helpers/common

BENCH=$SD_ROOT/build/submit-bench
REF=$SD_ROOT/build/submit-ref

setup() {
	REF_PID=
	PEER_PID=
}

teardown() {
	local p
	for p in $REF_PID $PEER_PID; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	sd_stop
}

# ref_start ARGS...: the reference server on a free port; REF_PORT, REF_PID.
ref_start() {
	timeout 120 "$REF" "$@" 0 >/dev/null 2>"$BATS_TEST_TMPDIR/ref.log" </dev/null 3>&- 4>&- &
	REF_PID=$!
	wait_for grep -q 'listening on' "$BATS_TEST_TMPDIR/ref.log"
	REF_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$BATS_TEST_TMPDIR/ref.log")
	[ -n "$REF_PORT" ]
}

# bench ARGS...: submit-bench --json, bounded; JSON in $output via run.
bench_json() {
	run --separate-stderr timeout 60 "$BENCH" --json "$@"
}

@test "a short run against submitd: no errors, and every ack counted by the server" {
	sd_start
	bench_json -d 1 -c 10 "127.0.0.1:$SD_PORT"
	assert_success
	[ "$(jq -r .errors <<<"$output")" = 0 ]
	[ "$(jq -r .ok <<<"$output")" = true ]
	acked=$(jq -r .acked <<<"$output")
	# Plausible: far more than one window per connection in a second.
	[ "$acked" -gt 10000 ]
	[ "$(jq -r .sent <<<"$output")" = "$acked" ]
	wait_for sd_metric_is submitd_req_recv_total '{cmd="submit"}' "$acked"
	wait_for sd_metric_is submitd_rsp_send_total '{cmd="submit"}' "$acked"
}

@test "-n sends exactly N requests and gets exactly N acks" {
	sd_start
	bench_json -n 12345 -c 7 -w 5 "127.0.0.1:$SD_PORT"
	assert_success
	[ "$(jq -r .sent <<<"$output")" = 12345 ]
	[ "$(jq -r .acked <<<"$output")" = 12345 ]
	[ "$(jq -r .latency_us.count <<<"$output")" = 12345 ]
	[ "$(sd_metric submitd_req_recv_total '{cmd="submit"}')" = 12345 ]
}

@test "--json is one line that jq parses, with ordered percentiles" {
	sd_start
	bench_json -n 2000 -c 4 -s 10-200 "127.0.0.1:$SD_PORT"
	assert_success
	[ "${#lines[@]}" -eq 1 ]
	jq -e '.latency_us.p50 <= .latency_us.p90 and .latency_us.p90 <= .latency_us.p99
		and .latency_us.p99 <= .latency_us.p999 and .latency_us.p999 <= .latency_us.max
		and .size_min == 10 and .size_max == 200 and .connections == 4' <<<"$output"
}

@test "--conn: one ConnAck per connection, and the server saw the Conns" {
	sd_start
	bench_json --conn -n 500 -c 5 "127.0.0.1:$SD_PORT"
	assert_success
	[ "$(jq -r .conn_acked <<<"$output")" = 5 ]
	[ "$(sd_metric submitd_req_recv_total '{cmd="conn"}')" = 5 ]
}

@test "open loop: -r paces the requests" {
	sd_start
	bench_json -r 4000 -d 1 -c 4 "127.0.0.1:$SD_PORT"
	assert_success
	echo "acked $(jq -r .acked <<<"$output") of 4000 scheduled"
	# Never ahead of the schedule (a few frames of rounding aside), and not
	# stalled; how close it keeps to 4,000/s is bench/thresholds.bats' check.
	jq -e '.errors == 0 and .acked >= 1000 and .acked <= 4100' <<<"$output"
}

@test "a corrupted ack id is an error naming the connection and the id; exit 1" {
	ref_start --corrupt-ack 100
	bench_json -n 1000 -c 1 -w 8 "127.0.0.1:$REF_PORT"
	assert_failure 1
	[ "$(jq -r .errors <<<"$output")" -ge 1 ]
	[ "$(jq -r .ok <<<"$output")" = false ]
	[[ $stderr == *'connection 0: ack id "\xcf0000100", expected "00000100"'* ]]
}

@test "the reference server acks like submitd: a clean run has no errors" {
	ref_start
	bench_json -n 5000 -c 3 --conn -s 0-20000 "127.0.0.1:$REF_PORT"
	assert_success
	[ "$(jq -r .acked <<<"$output")" = 5000 ]
}

@test "a server close is an error, and with --reconnect a clean one is not" {
	ref_start --close-after 50
	bench_json -d 0.5 -c 2 "127.0.0.1:$REF_PORT"
	assert_failure 1
	[[ $stderr == *"connection "*"closed by the server"* ]]
	bench_json -d 0.5 -c 2 --conn --reconnect "127.0.0.1:$REF_PORT"
	assert_success
	jq -e '.reconnects > 0 and .errors == 0 and .acked > 0' <<<"$output"
}

@test "bounded in time against a server that never answers" {
	# Connections complete in the kernel's backlog; nothing is ever read.
	python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True); time.sleep(60)' >"$BATS_TEST_TMPDIR/peer" 3>&- 4>&- &
	PEER_PID=$!
	wait_for grep -q . "$BATS_TEST_TMPDIR/peer"
	port=$(cat "$BATS_TEST_TMPDIR/peer")
	start=$SECONDS
	bench_json -d 0.5 --drain 0.5 -c 4 "127.0.0.1:$port"
	assert_failure 1
	[ $((SECONDS - start)) -le 5 ]
	jq -e '.acked == 0 and .unacked > 0' <<<"$output"
	bench_json -n 100 -d 0.5 -c 2 "127.0.0.1:$port"
	assert_failure 1
	[ $((SECONDS - start)) -le 10 ]
}

@test "bad usage exits 2; --version and --help" {
	run "$BENCH" -c 0
	assert_failure 2
	run "$BENCH" -s 10-5
	assert_failure 2
	run "$BENCH" --idle -n 5
	assert_failure 2
	run "$BENCH" --version
	assert_success
	assert_output --regexp '^submit-bench [0-9]'
	run "$BENCH" --help
	assert_success
	assert_output --partial '--reconnect'
}

@test "zero times and counts are refused with a message; -n 1m is not a million" {
	for a in "-d 0" "-d 0s" "-d 0.0000000001" "--drain 0" "--drain 0ms"; do
		run --separate-stderr "$BENCH" $a
		assert_failure 2
		[[ $stderr == *"the time must be more than 0"* ]]
	done
	run --separate-stderr "$BENCH" -n 0
	assert_failure 2
	[[ $stderr == *"-n: at least 1 request"* ]]
	run --separate-stderr "$BENCH" -r 0
	assert_failure 2
	[[ $stderr == *"-r: at least 1 msg/s"* ]]
	# m is minutes (times), M a million (counts): each refused where it would mislead.
	run --separate-stderr "$BENCH" -n 1m
	assert_failure 2
	[[ $stderr == *'"1m": m is minutes'* ]]
	run --separate-stderr "$BENCH" -d 1M
	assert_failure 2
	[[ $stderr == *'"1M": M is a million'* ]]
	# Accepted: options are parsed in order, so -h after them exits 0.
	run "$BENCH" -n 1M -d 1m --warmup 0 -h
	assert_success
}

@test "-v, -V and --version print the same version line" {
	run "$BENCH" --version
	assert_success
	assert_output --regexp '^submit-bench [0-9][^ ]* \(commit ([0-9a-f]+|unknown)\)$'
	want=$output
	run "$BENCH" -v
	assert_success
	assert_output "$want"
	run "$BENCH" -V
	assert_success
	assert_output "$want"
}

@test "mean and standard deviation in --json and the summary, from the same histogram as --hgrm" {
	ref_start
	bench_json -n 3000 -c 3 -w 1 --hgrm "$BATS_TEST_TMPDIR/h.hgrm" "127.0.0.1:$REF_PORT"
	assert_success
	jq -e '.latency_us.min <= .latency_us.mean and .latency_us.mean <= .latency_us.max
		and .latency_us.stddev > 0' <<<"$output"
	mean=$(jq -r .latency_us.mean <<<"$output")
	sd=$(jq -r .latency_us.stddev <<<"$output")
	# The .hgrm footer is in ms with 6 decimals: the same numbers.
	read -r fmean fsd < <(sed -n 's/^#\[Mean *= *\([0-9.]*\), StdDeviation *= *\([0-9.]*\)\]$/\1 \2/p' "$BATS_TEST_TMPDIR/h.hgrm")
	awk -v a="$mean" -v b="$fmean" -v c="$sd" -v d="$fsd" 'BEGIN {
		exit !((a - b * 1000) ^ 2 < 0.01 && (c - d * 1000) ^ 2 < 0.01) }'
	run "$BENCH" -n 500 -c 2 "127.0.0.1:$REF_PORT"
	assert_success
	assert_output --regexp 'latency +mean [0-9.]+ (us|ms) +stddev [0-9.]+ (us|ms) +p50 '
}

@test "--percentiles chooses the percentiles, in any order, each in (0, 100]" {
	ref_start
	bench_json -n 2000 -c 2 --percentiles 99.99,50,90 "127.0.0.1:$REF_PORT"
	assert_success
	[ "$(jq -c '.latency_us | keys_unsorted' <<<"$output")" = '["count","min","mean","stddev","p50","p90","p9999","max"]' ]
	jq -e '.latency_us.p50 <= .latency_us.p90 and .latency_us.p90 <= .latency_us.p9999
		and .latency_us.p9999 <= .latency_us.max' <<<"$output"
	run "$BENCH" -n 500 -c 2 --percentiles 75,99.9,100 "127.0.0.1:$REF_PORT"
	assert_success
	assert_output --regexp 'p75 [0-9.]+ (us|ms) +p99\.9 [0-9.]+ (us|ms) +p100 '
	refute_output --partial 'p50 '
	for bad in 0 100.5 -1 x 50,,abc 9.99,99.9; do
		run --separate-stderr "$BENCH" --percentiles "$bad"
		assert_failure 2
		[[ $stderr == *"--percentiles"* ]]
	done
}

@test "--csv carries per-second p50 and p99 next to the max" {
	ref_start
	bench_json -r 3000 -d 2.5 -c 3 --csv "$BATS_TEST_TMPDIR/s.csv" "127.0.0.1:$REF_PORT"
	assert_success
	[ "$(head -1 "$BATS_TEST_TMPDIR/s.csv")" = elapsed_s,sent,acked,rate,errors,open,max_latency_us,p50_latency_us,p99_latency_us ]
	# At least two seconds with acks; in each, 0 < p50 <= p99 <= max.
	awk -F, 'NR > 1 && $4 > 0 { n++; if (!($8 > 0 && $8 <= $9 && $9 <= $7)) bad++ }
		END { exit !(n >= 2 && bad == 0) }' "$BATS_TEST_TMPDIR/s.csv"
}

@test "--hgrm writes HdrHistogram's percentile distribution text" {
	ref_start
	bench_json -n 5000 -c 4 -w 2 --hgrm "$BATS_TEST_TMPDIR/h.hgrm" "127.0.0.1:$REF_PORT"
	assert_success
	python3 - "$BATS_TEST_TMPDIR/h.hgrm" "$output" <<-'PY'
		import json, re, sys
		lines = open(sys.argv[1]).read().split("\n")
		js = json.loads(sys.argv[2])["latency_us"]
		assert lines[0] == "       Value     Percentile TotalCount 1/(1-Percentile)", lines[0]
		assert lines[1] == ""
		rows, i = [], 2
		while re.match(r"^ *[0-9.]+ [0-9.]{14} +[0-9]+ +[0-9.]+$", lines[i]):
		    v, p, n, inv = lines[i].split()
		    rows.append((float(v), float(p), int(n), float(inv)))
		    i += 1
		assert rows[0][1] == 0 and rows[0][2] >= 1 and rows[0][3] == 1.0, rows[0]
		for a, b in zip(rows, rows[1:]):
		    assert a[0] <= b[0] and a[1] < b[1] and a[2] <= b[2], (a, b)
		for v, p, n, inv in rows:
		    assert abs(inv - 1 / (1 - p)) < 0.01, (p, inv)
		# HdrHistogram's ticks: 10 per half of the way to 100 % at first (0.1, 0.2, ...).
		assert [r[1] for r in rows[:6]] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], rows[:6]
		last = lines[i].split()
		assert len(last) == 3 and last[1] == "1.000000000000" and last[2] == "5000", lines[i]
		m = re.match(r"^#\[Mean    = +[0-9.]+, StdDeviation   = +[0-9.]+\]$", lines[i + 1])
		assert m, lines[i + 1]
		m = re.match(r"^#\[Max     = +([0-9.]+), Total count    = +([0-9]+)\]$", lines[i + 2])
		assert m and m.group(2) == "5000", lines[i + 2]
		# Max is the top of the max's bucket: at most 1/128 above the exact max.
		mx = float(m.group(1)) * 1000
		assert js["max"] - 0.1 <= mx <= js["max"] * (1 + 1 / 128) + 0.1, (mx, js["max"])
		assert float(last[0]) * 1000 == mx
		assert lines[i + 3] == "#[Buckets =           57, SubBuckets     =          256]", lines[i + 3]
		assert lines[i + 4:] == [""]
		# The median row agrees with the summary's p50 to the bucket width.
		med = next(r[0] for r in rows if r[1] >= 0.5) * 1000
		assert abs(med - js["p50"]) <= js["p50"] / 128 + 0.1, (med, js["p50"])
	PY
}

@test "acks are counted by result; result 2 is an error unless --allow-refused" {
	ref_start --not-stored 10
	bench_json -n 1000 -c 3 --conn "127.0.0.1:$REF_PORT"
	assert_failure 1
	[ "$(jq -c .results <<<"$output")" = '{"0":900,"1":0,"2":100,"other":0}' ]
	jq -e '.not_stored == 100 and .errors == 100 and .ok == false and .conn_acked == 3' <<<"$output"
	[[ $stderr == *'result 2 (not stored)'* ]]
	bench_json -n 1000 -c 3 --conn --allow-refused "127.0.0.1:$REF_PORT"
	assert_success
	jq -e '.not_stored == 100 and .results."0" == 900 and .errors == 0 and .ok == true' <<<"$output"
	run "$BENCH" -n 1000 -c 3 --allow-refused "127.0.0.1:$REF_PORT"
	assert_success
	assert_output --partial 'results     900 stored (0), 0 refused (1), 100 not stored (2) allowed, 0 other'
}

@test "--ack-log: one line per Submit ack, connection, hex id as sent, result" {
	ref_start --not-stored 7
	bench_json -n 3000 -c 5 -w 8 -t 2 --conn --allow-refused --ack-log "$BATS_TEST_TMPDIR/acks" "127.0.0.1:$REF_PORT"
	assert_success
	python3 - "$BATS_TEST_TMPDIR/acks" "$output" <<-'PY'
		import json, re, sys
		js = json.loads(sys.argv[2])
		lines = open(sys.argv[1]).read().splitlines()
		assert len(lines) == 3000, len(lines)
		by_conn, results = {}, {}
		for l in lines:
		    assert re.match(r"^[0-9]+ [0-9a-f]{16} [0-9]+$", l), l
		    c, i, r = l.split()
		    by_conn.setdefault(int(c), []).append(bytes.fromhex(i).decode())
		    results[r] = results.get(r, 0) + 1
		assert sorted(by_conn) == [0, 1, 2, 3, 4], sorted(by_conn)
		# Each connection's ids are the 8-digit counter after its Conn (00000001), in order.
		for c, ids in by_conn.items():
		    assert ids == ["%08d" % (k + 2) for k in range(len(ids))], (c, ids[:3])
		assert results == {"0": js["results"]["0"], "2": js["not_stored"]}, results
		assert js["not_stored"] == 3000 // 7
	PY
}

@test "--ack-log with --reconnect: a new number for every connection" {
	ref_start --close-after 20
	bench_json -d 0.5 -c 2 --conn --reconnect --ack-log "$BATS_TEST_TMPDIR/acks" "127.0.0.1:$REF_PORT"
	assert_success
	reconnects=$(jq -r .reconnects <<<"$output")
	[ "$reconnects" -gt 0 ]
	[ "$(wc -l <"$BATS_TEST_TMPDIR/acks")" = "$(jq -r .acked <<<"$output")" ]
	# The server closes after 20 acks, the ConnAck and 19 Submit acks: a number
	# reused for the next connection would show more lines.
	awk '{ n[$1]++ } END { for (c in n) { conns++; if (n[c] > 19) bad++ }
		exit !(bad == 0 && conns > 2) }' "$BATS_TEST_TMPDIR/acks"
	[ "$(cut -d' ' -f1 "$BATS_TEST_TMPDIR/acks" | sort -u | wc -l)" -ge "$reconnects" ]
}

@test "--ack-log against submitd: every line result 0, as many as the server sent" {
	sd_start
	bench_json -d 1 -c 10 --ack-log "$BATS_TEST_TMPDIR/acks" "127.0.0.1:$SD_PORT"
	assert_success
	acked=$(jq -r .acked <<<"$output")
	[ "$(wc -l <"$BATS_TEST_TMPDIR/acks")" = "$acked" ]
	[ "$(awk '$3 != 0' "$BATS_TEST_TMPDIR/acks" | wc -l)" = 0 ]
	wait_for sd_metric_is submitd_rsp_send_total '{cmd="submit"}' "$acked"
}

@test "bench/plot.sh draws .hgrm files into one SVG; refuses input without rows" {
	ref_start
	run "$BENCH" -n 2000 -c 2 -w 1 --hgrm "$BATS_TEST_TMPDIR/a.hgrm" "127.0.0.1:$REF_PORT"
	assert_success
	run "$BENCH" -n 2000 -r 4000 -c 2 --hgrm "$BATS_TEST_TMPDIR/b.hgrm" "127.0.0.1:$REF_PORT"
	assert_success
	run "$SD_ROOT/bench/plot.sh" "$BATS_TEST_TMPDIR/p.svg" "a title" \
		"curve one" "$BATS_TEST_TMPDIR/a.hgrm" "the other's" "$BATS_TEST_TMPDIR/b.hgrm"
	assert_success
	python3 - "$BATS_TEST_TMPDIR/p.svg" <<-'PY'
		import sys, xml.etree.ElementTree as ET
		root = ET.parse(sys.argv[1]).getroot()
		assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
		text = " ".join(t for t in root.itertext())
		for want in ("a title", "curve one", "the other's", "99%", "latency (ms)"):
		    assert want in text, want
		# Two curves with many points each.
		paths = [p for p in root.iter("{http://www.w3.org/2000/svg}path") if p.get("d", "").count("L") > 20]
		assert len(paths) >= 2, len(paths)
	PY
	printf '       Value     Percentile TotalCount 1/(1-Percentile)\n\n#[Max     = 0.0, Total count    = 0]\n' >"$BATS_TEST_TMPDIR/empty.hgrm"
	run "$SD_ROOT/bench/plot.sh" "$BATS_TEST_TMPDIR/q.svg" t one "$BATS_TEST_TMPDIR/empty.hgrm"
	assert_failure 1
	assert_output --partial 'no percentile rows'
	run "$SD_ROOT/bench/plot.sh" "$BATS_TEST_TMPDIR/q.svg" t one
	assert_failure 2
}
