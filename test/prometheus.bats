#!/usr/bin/env bats
# The monitoring kit against the real thing: submitd under load, Debian's
# Prometheus scraping it (and node_exporter) with contrib/prometheus/ at a
# 1 s interval, and every expression of the Grafana dashboard and of the
# recording rules evaluated through Prometheus' HTTP API. A TLS listener
# (a self-signed certificate) serves a short TLS load first, so that the
# TLS panels have data too. The expressions
# are read out of contrib/, so what is tested is what operators run.

load helpers/common

LOAD_SECONDS=${PROM_TEST_LOAD_SECONDS:-25}
# Open loop at a fixed rate: unbounded, the load would put hundreds of MB
# into the spool (spool_sync = always) in a few seconds.
LOAD_RATE_TARGET=${PROM_TEST_LOAD_RATE:-20000}
DASH=contrib/grafana/dashboards/submitd.json

# bats 1.8 cannot skip from setup_file: it records why, and setup skips.
setup_file() {
	cd "$BATS_TEST_DIRNAME/.." || return 1
	export PROM_SKIP=
	if ! command -v prometheus >/dev/null; then
		PROM_SKIP="prometheus not installed (Debian package prometheus)"
	elif ! NODE_EXPORTER=$(command -v prometheus-node-exporter || command -v node_exporter); then
		PROM_SKIP="node_exporter not installed (Debian package prometheus-node-exporter)"
	elif [ ! -x "$SD_BIN" ]; then
		PROM_SKIP="$SD_BIN not built"
	fi
	[ -z "$PROM_SKIP" ] || return 0

	# The helpers keep the daemon's files in the test's temporary directory;
	# here one daemon serves the whole file.
	export BATS_TEST_TMPDIR=$BATS_FILE_TMPDIR
	local dir=$BATS_FILE_TMPDIR
	# The spool on, as the package runs it (sync always), so that its panels
	# show real records and fdatasyncs; the bound is far above what the load
	# writes, as on a healthy host. On tmpfs where there is one: the fsync
	# tail of a disk shared with other work would decide whether
	# SubmitdSpoolFsyncSlow goes pending, and the disk is not under test here.
	SPOOL_DIR=$dir/spool
	if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
		SPOOL_DIR=$(mktemp -d /dev/shm/submitd-prom.XXXXXX) || return 1
	fi
	export SPOOL_DIR
	# A certificate for a year: far from SubmitdTLSCertificateExpiresSoon.
	TLS_CERT=$dir/cert.pem
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
		-subj /CN=localhost -addext subjectAltName=DNS:localhost \
		-keyout "$dir/key.pem" -out "$TLS_CERT" 2>"$dir/openssl.log" || { cat "$dir/openssl.log" >&2; return 1; }
	TLS_PORT=$(free_port)
	export TLS_CERT TLS_PORT
	# The plaintext address first: sd_start reads SD_PORT from the first "listening on".
	sd_start 'workers = 2' "spool_dir = \"$SPOOL_DIR\"" 'spool_sync = always' \
		'spool_max_size = 4294967296' "listen = {\"127.0.0.1:0\", \"tls://127.0.0.1:$TLS_PORT\"}" \
		"tls_certificate = \"$TLS_CERT\"" "tls_key = \"$dir/key.pem\""
	[ "$SD_PORT" != "$TLS_PORT" ] || return 1

	NODE_PORT=$(free_port)
	timeout 300 "$NODE_EXPORTER" --web.listen-address="127.0.0.1:$NODE_PORT" \
		--collector.disable-defaults --collector.cpu --collector.meminfo --collector.uname \
		>"$dir/node.log" 2>&1 3>&- 4>&- &
	NODE_PID=$!

	# contrib's configuration with the real ports and a 1 s interval; the
	# rules file is contrib's own, unchanged.
	cp contrib/prometheus/submitd.rules.yml "$dir/"
	sed -e 's/^\(  *\)scrape_interval: 5s$/\1scrape_interval: 1s/' \
		-e 's/^\(  *\)scrape_timeout: 4s$/\1scrape_timeout: 1s/' \
		-e 's/^\(  *\)evaluation_interval: 5s$/\1evaluation_interval: 1s/' \
		-e "s/127\\.0\\.0\\.1:8889/127.0.0.1:$SD_METRICS_PORT/" \
		-e "s/127\\.0\\.0\\.1:9100/127.0.0.1:$NODE_PORT/" \
		contrib/prometheus/prometheus.yml >"$dir/prometheus.yml"
	[ "$(grep -cE "scrape_interval: 1s|scrape_timeout: 1s|evaluation_interval: 1s|:$SD_METRICS_PORT\"|:$NODE_PORT\"" "$dir/prometheus.yml")" -eq 5 ] || {
		echo "contrib/prometheus/prometheus.yml changed shape; adapt the test" >&2
		return 1
	}
	promtool check config "$dir/prometheus.yml" >&2 || return 1

	PROM_PORT=$(free_port)
	PROM="http://127.0.0.1:$PROM_PORT"
	timeout 300 prometheus --config.file="$dir/prometheus.yml" \
		--storage.tsdb.path="$dir/tsdb" --web.listen-address="127.0.0.1:$PROM_PORT" \
		--log.level=warn >"$dir/prometheus.log" 2>&1 3>&- 4>&- &
	PROM_PID=$!
	export NODE_PORT NODE_PID PROM_PORT PROM PROM_PID
	wait_for -t 20 curl -sf --max-time 1 "$PROM/-/ready" || { cat "$dir/prometheus.log" >&2; return 1; }
	wait_for -t 20 targets_up 2 || { curl -s "$PROM/api/v1/targets" >&2; return 1; }

	# The TLS load, before the one the request counts are checked against;
	# the TLS panels are checked at TLS_EVAL_TIME, inside it. One plaintext
	# Submit to the TLS port: a handshake that fails as not_tls.
	tls_load 6 >"$dir/tls.out" || { cat "$dir/tls.out" >&2; return 1; }
	TLS_EVAL_TIME=$(awk -v t="$EPOCHREALTIME" 'BEGIN { printf "%.3f", t - 1 }')
	TLS_RESUMED=$(sed -n 's/^resumed \([0-9]*\)$/\1/p' "$dir/tls.out")
	export TLS_EVAL_TIME TLS_RESUMED
	python3 -c 'import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(struct.pack(">IB", 13, 2) + b"00000001")
try:
    got = s.recv(64)
except ConnectionResetError:  # closed with the frame unread
    got = b""
assert got == b"", got' "$TLS_PORT" || return 1

	# One of each protocol error, so those panels show data and the reason
	# labels can be checked.
	local k
	for k in short large unknown body; do
		sd_client bad "$k" >&2 || return 1
	done

	local before t0 t1
	before=$(sd_metric submitd_req_recv_total)
	t0=$EPOCHREALTIME
	run_load "$LOAD_SECONDS" >"$dir/load.out" || { cat "$dir/load.out" >&2; return 1; }
	t1=$EPOCHREALTIME
	LOAD_START=$t0 LOAD_END=$t1
	LOAD_REQUESTS=$(sed -n 's/^requests \([0-9]*\)$/\1/p' "$dir/load.out")
	LOAD_RATE=$(sed -n 's/^rate \([0-9.]*\)$/\1/p' "$dir/load.out")
	[ -n "$LOAD_RATE" ] || LOAD_RATE=$(awk -v n="$LOAD_REQUESTS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
	LOAD_COUNTED=$(($(printf '%.0f' "$(sd_metric submitd_req_recv_total)") - $(printf '%.0f' "$before")))
	export LOAD_START LOAD_END LOAD_REQUESTS LOAD_RATE LOAD_COUNTED
	# Every expression is evaluated at one instant inside the load.
	EVAL_TIME=$(awk -v t="$t1" 'BEGIN { printf "%.3f", t - 1 }')
	export EVAL_TIME
	echo "load: $LOAD_REQUESTS requests ($LOAD_RATE/s) in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s; submitd counted $LOAD_COUNTED" >&2
}

setup() {
	[ -z "$PROM_SKIP" ] || skip "$PROM_SKIP"
	cd "$BATS_TEST_DIRNAME/.." || return 1
}

teardown_file() {
	[ -n "${PROM_PID:-}" ] && kill -TERM "$PROM_PID" 2>/dev/null
	[ -n "${NODE_PID:-}" ] && kill -TERM "$NODE_PID" 2>/dev/null
	sd_stop
	case ${SPOOL_DIR:-} in /dev/shm/submitd-prom.*) rm -rf -- "$SPOOL_DIR" ;; esac
	local p
	for p in ${PROM_PID:-} ${NODE_PID:-}; do
		wait_for -t 10 _sd_all_gone "$p" || kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	return 0
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# targets_up N: N targets, all healthy.
targets_up() {
	local n
	n=$(curl -sf --max-time 2 "$PROM/api/v1/targets" | jq '[.data.activeTargets[] | select(.health == "up")] | length')
	[ "$n" = "$1" ]
}

# query EXPR [TIME]: the JSON answer of an instant query.
query() {
	curl -sf --max-time 10 "$PROM/api/v1/query" --data-urlencode "query=$1" \
		${2:+--data-urlencode "time=$2"}
}

# run_load SECONDS: drive submitd; print "requests N" (requests acked) and
# possibly "rate R" (the load generator's own rate).
run_load() {
	local bench=$SD_ROOT/build/submit-bench
	if [ -x "$bench" ]; then
		bench_load "$bench" "$1"
	else
		python_load "$1"
	fi
}

# submit-bench, open loop at LOAD_RATE_TARGET, Conn first on each
# connection: "requests" is every ack it received and checked, "rate" its
# own count per second of measured time.
bench_load() {
	local out
	out=$(timeout $(($2 + 30)) "$1" -c 8 -d "${2}s" -r "$LOAD_RATE_TARGET" --conn --json "127.0.0.1:$SD_PORT") || {
		echo "submit-bench failed: $out"
		return 1
	}
	echo "$out"
	jq -r '"requests \(.acked + .conn_acked)", "rate \(.rate)"' <<<"$out"
}

python_load() {
	timeout $(($1 + 30)) python3 - "$SD_PORT" "$1" <<-'PY'
		import socket, struct, sys, threading, time
		port, secs = int(sys.argv[1]), float(sys.argv[2])
		batch, conns = 64, 4
		frame = lambda i, c: struct.pack(">IB", 13, c) + b"%08d" % i
		data = b"".join(frame(i, 0x01 if i % 16 == 0 else 0x02) for i in range(batch))
		counts = [0] * conns
		deadline = time.monotonic() + secs
		def run(k):
		    s = socket.create_connection(("127.0.0.1", port), timeout=10)
		    while time.monotonic() < deadline:
		        s.sendall(data)
		        want = batch * 14
		        while want:
		            got = s.recv(want)
		            if not got:
		                raise SystemExit("closed by server")
		            want -= len(got)
		        counts[k] += batch
		    s.close()
		ts = [threading.Thread(target=run, args=(k,)) for k in range(conns)]
		for t in ts: t.start()
		for t in ts: t.join()
		print("requests %d" % sum(counts))
	PY
}

# tls_load SECONDS: TLS clients on TLS_PORT, verifying the certificate:
# one connection with TLS 1.2 and one with TLS 1.3 for the whole time, a
# Submit every 10 ms each, and one that reconnects for every Submit,
# resuming its last session; every ack checked. Prints "acked N", "resumed N".
tls_load() {
	timeout $(($1 + 30)) python3 - "$TLS_PORT" "$1" "$TLS_CERT" <<-'PY'
		import socket, ssl, struct, sys, threading, time
		port, secs, ca = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
		deadline = time.monotonic() + secs
		counts = {"acked": 0, "resumed": 0}
		lock = threading.Lock()
		def context(version=None):
		    c = ssl.create_default_context(cafile=ca)
		    if version is not None:
		        c.minimum_version = c.maximum_version = version
		    return c
		def connect(c, session=None):
		    s = socket.create_connection(("127.0.0.1", port), timeout=10)
		    return c.wrap_socket(s, server_hostname="localhost", session=session)
		def submit(s, i):
		    s.sendall(struct.pack(">IB", 13, 2) + b"%08d" % i)
		    a = b""
		    while len(a) < 14:
		        got = s.recv(14 - len(a))
		        if not got:
		            raise SystemExit("closed by server")
		        a += got
		    if a != struct.pack(">IB", 14, 0x81) + b"%08d" % i + b"\0":
		        raise SystemExit("bad ack %r" % a)
		    with lock:
		        counts["acked"] += 1
		def steady(version):
		    with connect(context(version)) as s:
		        i = 0
		        while time.monotonic() < deadline:
		            submit(s, i)
		            i += 1
		            time.sleep(0.01)
		def reconnects():
		    c, session, i = context(), None, 0
		    while time.monotonic() < deadline:
		        with connect(c, session) as s:
		            submit(s, i)
		            with lock:
		                counts["resumed"] += s.session_reused
		            session = s.session
		        i += 1
		        time.sleep(0.02)
		errors = []
		def run(f, *a):
		    try:
		        f(*a)
		    except BaseException as e:
		        errors.append(repr(e))
		ts = [threading.Thread(target=run, args=a) for a in
		      ((steady, ssl.TLSVersion.TLSv1_2), (steady, ssl.TLSVersion.TLSv1_3), (reconnects,))]
		for t in ts: t.start()
		for t in ts: t.join()
		print("acked %d" % counts["acked"])
		print("resumed %d" % counts["resumed"])
		if errors:
		    raise SystemExit("; ".join(errors))
	PY
}

# Dashboard expressions with Grafana's variables set the way Grafana would
# for this Prometheus: $__rate_interval = 4 scrape intervals, the template
# variables to what their label_values() queries return.
dashboard_exprs() {
	local ri=${1:-4s} job inst node
	job=$(label_values job submitd_build_info | paste -sd '|')
	inst=$(label_values instance submitd_build_info | paste -sd '|')
	node=$(label_values instance node_uname_info | paste -sd '|')
	jq -r '[.. | objects | select(has("expr")) | .expr] | .[]' "$DASH" |
		sed -e "s/\\\${\\{0,1\\}__rate_interval}\\{0,1\\}/$ri/g" \
			-e "s/\\\${\\{0,1\\}job}\\{0,1\\}/$job/g" \
			-e "s/\\\${\\{0,1\\}instance}\\{0,1\\}/$inst/g" \
			-e "s/\\\${\\{0,1\\}node}\\{0,1\\}/$node/g"
}

# label_values LABEL METRIC: what Grafana's label_values(METRIC, LABEL) lists.
label_values() {
	curl -sf --max-time 5 "$PROM/api/v1/label/$1/values" --data-urlencode "match[]=$2" -G |
		jq -r '.data[]'
}

@test "prometheus: both targets are scraped and up" {
	run query 'up'
	assert_success
	run jq -r '.data.result[] | "\(.metric.job) \(.value[1])"' <<<"$output"
	assert_line "submitd 1"
	assert_line "node 1"
}

@test "prometheus: the dashboard's variable queries find this submitd and host" {
	run label_values job submitd_build_info
	assert_output "submitd"
	run label_values instance submitd_build_info
	assert_output "127.0.0.1:$SD_METRICS_PORT"
	run label_values instance node_uname_info
	assert_output "127.0.0.1:$NODE_PORT"
}

@test "prometheus: every dashboard expression returns data under load" {
	local e n=0 empty=()
	while IFS= read -r e; do
		n=$((n + 1))
		[[ $e != *'$'* ]] || fail "unsubstituted variable in: $e"
		run query "$e" "$EVAL_TIME"
		assert_success
		[ "$(jq -r .status <<<"$output")" = success ] || fail "$e: $output"
		[ "$(jq '.data.result | length' <<<"$output")" -gt 0 ] || empty+=("$e")
	done < <(dashboard_exprs)
	[ "$n" -ge 30 ]
	[ ${#empty[@]} -eq 0 ] || fail "$(printf 'no data: %s\n' "${empty[@]}")"
}

@test "prometheus: the traffic panels show the load, with a series per worker" {
	local e
	# One series per worker slot; how the kernel spreads the connections
	# decides which of them carry load, together they carry all of it.
	e=$(dashboard_exprs | grep -m1 '^sum by (worker) (rate(submitd_req_recv_total')
	run query "$e" "$EVAL_TIME"
	run jq -r '[.data.result[].metric.worker] | sort | join(" ")' <<<"$output"
	assert_output "0 1"
	e=$(dashboard_exprs | grep -m1 '^sum(rate(submitd_req_recv_total')
	run query "$e" "$EVAL_TIME"
	run jq -r '.data.result[0].value[1] | tonumber > 0' <<<"$output"
	assert_output true
	e=$(dashboard_exprs | grep -m1 '^sum(rate(submitd_rsp_send_total')
	run query "$e" "$EVAL_TIME"
	run jq -r '.data.result[0].value[1] | tonumber > 0' <<<"$output"
	assert_output true
	e=$(dashboard_exprs | grep -m1 '^sum(rate(submitd_received_bytes_total')
	run query "$e" "$EVAL_TIME"
	run jq -r '.data.result[0].value[1] | tonumber > 0' <<<"$output"
	assert_output true
}

# dash_value REGEX [TIME]: the value of the first series of the first
# dashboard expression that matches REGEX, evaluated at TIME (default now).
dash_value() {
	local e
	e=$(dashboard_exprs | grep -m1 -E -- "$1")
	[ -n "$e" ] || {
		echo "no dashboard expression matches $1" >&2
		return 1
	}
	query "$e" "${2:-}" | jq -r '.data.result[0].value[1]'
}

# ready_matches DIR: the dashboard's ready segments equal the files in DIR.
ready_matches() {
	[ "$(dash_value '^sum by \(instance\) \(submitd_spool_ready_segments')" = "$(find "$1" -name '*.seg' | wc -l)" ]
}

@test "prometheus: the spool panels show what the load stored" {
	local records acked fsyncs per p50 p99 used bound
	records=$(dash_value '^sum\(rate\(submitd_spool_records_total' "$EVAL_TIME")
	run query "$(dashboard_exprs | grep -m1 '^sum by (result) (rate(submitd_submit_acks_total')" "$EVAL_TIME"
	acked=$(jq -r '.data.result[] | select(.metric.result == "0") | .value[1]' <<<"$output")
	run jq -r '.data.result[] | "\(.metric.result) \(.value[1] | tonumber > 0)"' <<<"$output"
	assert_line "0 true"
	assert_line "1 false"
	assert_line "2 false"
	fsyncs=$(dash_value '^sum\(rate\(submitd_spool_fsyncs_total' "$EVAL_TIME")
	per=$(dash_value '^sum\(rate\(submitd_spool_records_per_fsync_sum' "$EVAL_TIME")
	p50=$(dash_value '^histogram_quantile\(0\.5, sum by \(le\) \(rate\(submitd_spool_fsync_seconds_bucket' "$EVAL_TIME")
	p99=$(dash_value '^histogram_quantile\(0\.99, sum by \(le\) \(rate\(submitd_spool_fsync_seconds_bucket' "$EVAL_TIME")
	used=$(dash_value '^sum by \(instance\) \(submitd_spool_used_bytes' "$EVAL_TIME")
	bound=$(dash_value '^sum by \(instance\) \(submitd_spool_max_bytes' "$EVAL_TIME")
	echo "spool: $records records/s, $fsyncs fsyncs/s, $per records per fsync, fsync p50 $p50 s p99 $p99 s, $used bytes used" >&3
	# Every record stored with sync always is acked with result 0 after its
	# fdatasync: the two rates agree (a round in flight at either end aside).
	awk -v r="$records" -v a="$acked" 'BEGIN { exit !(r > 0 && r >= 0.9 * a && r <= 1.1 * a) }' ||
		fail "records/s $records, result-0 acks/s $acked"
	# Group commit: one fdatasync covers a whole round, never less than a record.
	awk -v f="$fsyncs" -v p="$per" -v r="$records" 'BEGIN { exit !(f > 0 && p >= 1 && p * f >= 0.9 * r && p * f <= 1.1 * r) }' ||
		fail "fsyncs/s $fsyncs, records per fsync $per, records/s $records"
	# The quantiles are numbers inside the histogram's buckets (100 us ... 1 s).
	awk -v a="$p50" -v b="$p99" 'BEGIN { exit !(a > 0 && a <= b && b <= 1) }' || fail "p50 $p50, p99 $p99"
	assert_equal "$bound" 4294967296
	awk -v u="$used" 'BEGIN { exit !(u > 0 && u < 4294967296 * 0.8) }' || fail "used $used"
	# Nothing failed, nothing was lost or set aside.
	run query "$(dashboard_exprs | grep -m1 '^sum by (reason) (increase(submitd_spool_failures_total')" "$EVAL_TIME"
	run jq -r '[.data.result[] | select(.value[1] != "0")] | length' <<<"$output"
	assert_output 0
	# The ready gauge follows the directory (sealed by age while the load ran).
	wait_for -t 15 ready_matches "$SPOOL_DIR/ready"
}

# dash_series REGEX TIME: "LEGEND-LABELS VALUE" per series of the first
# dashboard expression that matches REGEX, labels as label=value.
dash_series() {
	local e
	e=$(dashboard_exprs | grep -m1 -E -- "$1")
	[ -n "$e" ] || {
		echo "no dashboard expression matches $1" >&2
		return 1
	}
	query "$e" "$2" | jq -r '.data.result[] | "\(.metric | to_entries | map("\(.key)=\(.value)") | join(",")) \(.value[1])"'
}

@test "prometheus: the TLS panels show the TLS load" {
	[ "$TLS_RESUMED" -gt 0 ]
	local ok p50 p99 resumed failed days
	run dash_series '^sum by \(result\) \(rate\(submitd_tls_handshakes_total' "$TLS_EVAL_TIME"
	assert_success
	ok=$(sed -n 's/^result=ok //p' <<<"$output")
	# Every result has its series; only ok has handshakes inside the load.
	[ "$(wc -l <<<"$output")" -eq 7 ]
	awk -v v="$ok" 'BEGIN { exit !(v > 0) }' || fail "ok handshakes/s: $ok"
	run bash -c "grep -v '^result=ok ' <<<'$output' | awk '\$2 != 0'"
	assert_output ""
	p50=$(dash_value '^histogram_quantile\(0\.5, sum by \(le\) \(rate\(submitd_tls_handshake_duration_seconds_bucket' "$TLS_EVAL_TIME")
	p99=$(dash_value '^histogram_quantile\(0\.99, sum by \(le\) \(rate\(submitd_tls_handshake_duration_seconds_bucket' "$TLS_EVAL_TIME")
	awk -v a="$p50" -v b="$p99" 'BEGIN { exit !(a > 0 && a <= b && b <= 2.5) }' || fail "p50 $p50, p99 $p99"
	# The two steady connections, one per version.
	run dash_series '^sum by \(version\) \(submitd_tls_connections' "$TLS_EVAL_TIME"
	assert_line 'version=TLSv1.2 1'
	assert_line 'version=TLSv1.3 1'
	resumed=$(dash_value '^sum\(rate\(submitd_tls_resumed_handshakes_total' "$TLS_EVAL_TIME")
	awk -v r="$resumed" 'BEGIN { exit !(r > 0 && r <= 1) }' || fail "resumed share $resumed"
	failed=$(dash_value '^sum\(rate\(submitd_tls_handshakes_total\{[^}]*result!="ok"' "$TLS_EVAL_TIME")
	assert_equal "$failed" 0
	# The certificate was made for 365 days.
	days=$(dash_value 'submitd_tls_certificate_expiry_timestamp_seconds')
	awk -v d="$days" 'BEGIN { exit !(d > 364 && d <= 365) }' || fail "days until expiry: $days"
	# The plaintext Submit to the TLS port, once, and nothing else failed.
	run query 'sum by (result) (submitd_tls_handshakes_total{result!="ok"}) > 0'
	run jq -r '.data.result[] | "\(.metric.result) \(.value[1])"' <<<"$output"
	assert_output 'not_tls 1'
	run query 'sum(submitd_connections_closed_total{reason="handshake"})'
	run jq -r '.data.result[0].value[1]' <<<"$output"
	assert_output 1
}

@test "prometheus: every recording rule returns data and every rule evaluates cleanly" {
	local r empty=()
	run curl -sf --max-time 5 "$PROM/api/v1/rules"
	assert_success
	local rules=$output
	# Every rule of contrib's file is loaded, and none has an evaluation error.
	run jq -r '[.data.groups[].rules[]] | length' <<<"$rules"
	assert_output "$(grep -cE '^ *- (record|alert):' contrib/prometheus/submitd.rules.yml)"
	run jq -r '.data.groups[].rules[] | select(.health != "ok") | "\(.name): \(.lastError)"' <<<"$rules"
	assert_output ""
	for r in $(jq -r '.data.groups[].rules[] | select(.type == "recording") | .name' <<<"$rules"); do
		run query "$r" "$EVAL_TIME"
		assert_success
		[ "$(jq '.data.result | length' <<<"$output")" -gt 0 ] || empty+=("$r")
	done
	[ ${#empty[@]} -eq 0 ] || fail "no data: ${empty[*]}"
}

@test "prometheus: a healthy submitd raises no alert" {
	# The setup's 4 protocol errors are far below the alert's 0.1/s over 5 min.
	run curl -sf --max-time 5 "$PROM/api/v1/rules?type=alert"
	assert_success
	local rules=$output
	run jq -r '[.data.groups[].rules[]] | length' <<<"$rules"
	[ "$output" -ge 5 ]
	run jq -r '.data.groups[].rules[] | select(.state != "inactive") | .name' <<<"$rules"
	assert_output ""
}

@test "prometheus: protocol errors are counted once per reason" {
	run query 'sum by (reason) (submitd_protocol_errors_total)'
	run jq -r '.data.result[] | "\(.metric.reason) \(.value[1])"' <<<"$output"
	assert_line "frame_too_short 1"
	assert_line "frame_too_large 1"
	assert_line "unknown_command 1"
	assert_line "body_too_short 1"
	run query 'sum(submitd_connections_closed_total{reason="protocol"})'
	run jq -r '.data.result[0].value[1]' <<<"$output"
	assert_output 4
}

@test "prometheus: its request rate agrees with the load generator's count within 20%" {
	[ -n "$LOAD_REQUESTS" ]
	[ "$LOAD_REQUESTS" -gt 0 ]
	# The dashboard's own request rate, over a window that lies inside the load.
	local win e got want
	win=$(awk -v a="$LOAD_START" -v b="$EVAL_TIME" 'BEGIN { printf "%d", b - a - 2 }')
	[ "$win" -ge 10 ]
	e=$(dashboard_exprs "${win}s" | grep -m1 '^sum(rate(submitd_req_recv_total{[^}]*}\['"$win"'s\]))$')
	[ -n "$e" ]
	run query "$e" "$EVAL_TIME"
	assert_success
	got=$(jq -r '.data.result[0].value[1]' <<<"$output")
	want=$LOAD_RATE
	echo "prometheus: $got req/s over ${win}s; load generator: $want req/s" >&3
	awk -v g="$got" -v w="$want" 'BEGIN { exit !(g >= 0.8 * w && g <= 1.2 * w) }' ||
		fail "prometheus $got req/s, load generator $want req/s"
}

@test "prometheus: the last scrape matches /metrics and the load generator's count" {
	# After the load the counters stand still; wait for a scrape of the final value.
	local direct
	direct=$(sd_metric submitd_req_recv_total)
	wait_for -t 10 prom_equals 'sum(submitd_req_recv_total)' "$direct"
	# The load generator waited for every ack, so submitd counted exactly
	# the requests it acked.
	assert_equal "$LOAD_COUNTED" "$LOAD_REQUESTS"
}

prom_equals() {
	local v
	v=$(query "$1" | jq -r '.data.result[0].value[1]')
	awk -v a="$v" -v b="$2" 'BEGIN { exit !(a + 0 == b + 0) }'
}

# alert_state NAME STATE: Prometheus lists alert NAME in STATE (pending, firing).
alert_state() {
	curl -sf --max-time 5 "$PROM/api/v1/alerts" |
		jq -e --arg a "$1" --arg s "$2" 'any(.data.alerts[]; .labels.alertname == $a and .state == $s)'
}

@test "prometheus: a burst of protocol errors raises SubmitdProtocolErrorsRising (pending for its 5 min)" {
	local i
	run alert_state SubmitdProtocolErrorsRising pending
	assert_failure
	# 40 errors within the 5 min window: above 0.1/s whatever the series' age.
	for ((i = 0; i < 40; i++)); do
		sd_client bad unknown >/dev/null
	done
	wait_for -t 10 prom_equals 'sum(submitd_protocol_errors_total)' 44
	wait_for -t 15 alert_state SubmitdProtocolErrorsRising pending
	# Its expression, as contrib has it, holds for this instance.
	local e
	e=$(sed -n '/alert: SubmitdProtocolErrorsRising$/,/expr:/s/^ *expr: //p' contrib/prometheus/submitd.rules.yml)
	[ -n "$e" ]
	run query "$e"
	run jq -r '[.data.result[].metric.instance] | join(" ")' <<<"$output"
	assert_output "127.0.0.1:$SD_METRICS_PORT"
}

# Last: it changes the daemon's state. The counters must stay monotonic
# through a worker's death (docs/METRICS.md), or rate() on the dashboard
# would show a spurious burst.
@test "prometheus: kill -9 of a worker resets no counter and raises SubmitdWorkerRestarts" {
	local w fam bad=()
	w=$(sd_workers | head -1)
	[ -n "$w" ]
	kill -KILL "$w"
	wait_for -t 10 sd_metric_is submitd_worker_restarts_total '{reason="signal"}' 1
	wait_for -t 10 sd_metric_is submitd_workers '{state="running"}' 2
	wait_for -t 10 prom_equals 'sum(submitd_worker_restarts_total{reason="signal"})' 1
	# A scrape after the respawn, so the replacement's counters are in.
	wait_for -t 10 prom_equals 'sum(submitd_workers{state="running"})' 2
	local families
	families=$(curl -sf --max-time 5 "$PROM/api/v1/label/__name__/values" | jq -r '.data[]' |
		grep -E '^(submitd_.*_total|process_cpu_seconds_total|submitd_write_batch_size_(bucket|sum|count))$')
	[ "$(wc -l <<<"$families")" -ge 10 ]
	for fam in $families; do
		run query "sum(resets(${fam}[5m]))"
		[ "$(jq -r '.data.result[0].value[1]' <<<"$output")" = 0 ] || bad+=("$fam")
	done
	[ ${#bad[@]} -eq 0 ] || fail "counters that went down: ${bad[*]}"
	wait_for -t 10 alert_firing SubmitdWorkerRestarts
}

alert_firing() {
	curl -sf --max-time 5 "$PROM/api/v1/alerts" |
		jq -e --arg a "$1" 'any(.data.alerts[]; .labels.alertname == $a and .state == "firing")'
}
