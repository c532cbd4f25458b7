#!/bin/bash
# TLS costs, as ratios in the same run (make bench, or make bench-tls):
#  a. pipelined, 100 connections, window 64, 20 B payloads, one submitd
#     worker: native TLS 1.3 (TLS_AES_128_GCM_SHA256) vs plaintext on the
#     same worker vs HAProxy (one process, nbthread 1) terminating the same
#     TLS in front of the plaintext port;
#  b. request/response (1 connection, window 1): p99 over TLS vs plaintext;
#  c. full handshakes/s (ECDSA P-256 chain, submit-bench --handshakes, a new
#     connection per Submit) native vs HAProxy on the same certificate, and
#     resumed ones (--tls-resume, TLS 1.3 tickets), with the server process'
#     CPU time per handshake (utime + stime of the submitd worker or of
#     haproxy); plaintext TCP connects/s beside them;
#  d. a flood: TLS_FLOOD_CONNS (2000) connections stalled in the handshake
#     (bench/tls-stall.py: nothing, or half a ClientHello) plus a stream of
#     full handshakes, while a window-1 client connected before the flood
#     measures p99: against the same client's p99 without the flood.
# Every round runs every case once, in a rotating order, and each ratio is
# taken within its round; the table shows the medians over the rounds.
#
# The native parts need submitd's `listen = {"tls://..."}` (docs: the TLS
# contract). This script starts submitd with a tls:// listener and probes it
# with one TLS run; if submitd does not start with it, or the port does not
# speak TLS, the native cells say "not measured" and the rest still runs.
#
# Prints a markdown table and writes it to bench/results/<date>-<commit>-tls.md
# (BENCH_TLS_OUT). Environment: BENCH_ROUNDS (3), BENCH_SECONDS (2, per run),
# TLS_FLOOD_CONNS (2000). Exit status 1 if a submit-bench run reported errors.
#
# $W, $(targets) and $(tls_args) are word lists, unquoted on purpose:
# shellcheck disable=SC2046,SC2086
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
. test/helpers/haproxy.bash
trap 'hap_stop; bench_cleanup' EXIT
trap 'exit 130' INT TERM

ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-2}
FLOOD=${TLS_FLOOD_CONNS:-2000}
WARM=6 # (d): the flood is set up while the window-1 client warms up (2 to 5 s for 2,000 here)
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
DATE=$(date -u +%Y-%m-%d)
OUT=${BENCH_TLS_OUT:-bench/results/$DATE-$COMMIT-tls.md}
BENCH="$BUILD/submit-bench"
CERTS=$BENCH_TMP/certs
SUITE=TLS_AES_128_GCM_SHA256

for b in "$BUILD/submitd" "$BENCH"; do
	[ -x "$b" ] || die "$b is not built (make all)"
done
command -v haproxy >/dev/null || die "haproxy is not installed (tools/deps.sh)"
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((FLOOD * 3 + 500)) ] || die "open files limit $(ulimit -n) is too low for a flood of $FLOOD"
sh test/helpers/tls-certs.sh "$CERTS" || die "test/helpers/tls-certs.sh failed"
T0=$SECONDS

# --- The servers ---

# sd_start_tls: submitd with one worker, a plaintext and a tls:// listener on
# the same worker (TLS_PORT, a free port: the log does not say which line is
# which listener). NATIVE=1 if the TLS port completes a handshake; else
# NATIVE_WHY says why not, and submitd runs with the plaintext listener alone.
sd_start_tls() {
	local line
	NATIVE='' NATIVE_WHY=''
	for _ in 1 2 3; do
		TLS_PORT=$(_hap_free_port)
		if sd_start 'workers = 1' "${BENCH_CONF[@]}" \
			"listen = {\"127.0.0.1:0\", \"tls://127.0.0.1:$TLS_PORT\"}" \
			"tls_certificate = \"$CERTS/server.pem\"" "tls_key = \"$CERTS/server.key\"" \
			"tls_ciphersuites = \"$SUITE\"" 'tls_min_version = "TLSv1.3"' 2>"$BENCH_TMP/sd-start.err"; then
			[ "$SD_PORT" != "$TLS_PORT" ] || die "submitd logged its tls:// listener first"
			line=$(timeout 30 "$BENCH" --json --tls -n 100 -c 1 -w 1 "127.0.0.1:$TLS_PORT" 2>"$BENCH_TMP/probe.err" | tail -1)
			if jq -e '.ok and .tls_version == "TLSv1.3"' <<<"$line" >/dev/null 2>&1; then
				NATIVE=1
				return 0
			fi
			NATIVE_WHY="the tls:// port does not speak TLS ($(head -1 "$BENCH_TMP/probe.err" | sed 's/^submit-bench: error: //'))"
			return 0
		fi
		grep -q 'Address already in use' "$BENCH_TMP/sd-start.err" || break
	done
	NATIVE_WHY="submitd does not start with a tls:// listener: $(grep -m1 -iE 'error|tls' "$BENCH_TMP/sd-start.err")"
	sd_start 'workers = 1' "${BENCH_CONF[@]}" || die "submitd did not become ready"
}

echo "bench: starting submitd (1 worker, plaintext and tls://) and haproxy (nbthread 1)" >&2
sd_start_tls
SD_WORKER=$(sd_workers | head -1)
HAP_GLOBAL="ssl-default-bind-ciphersuites $SUITE" \
	hap_start "$BENCH_TMP" "$SD_PORT" "ssl crt $CERTS/haproxy.pem ssl-min-ver TLSv1.3" ||
	die "haproxy did not start"
HAP_PORT=${HAP_PORTS[0]}
HAP_PROC=$(hap_pid)
[ -n "$NATIVE" ] || echo "bench: native TLS not measured: $NATIVE_WHY" >&2
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Helpers ---


# ticks PID: the CPU time PID has used, in clock ticks (utime + stime).
ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# run LABEL PORT ARGS...: one submit-bench --json run; its JSON line goes to
# $BENCH_TMP/LABEL (one line per round), its errors to bench.err. With CPU_PID
# set, "ticks handshakes" of that process go to LABEL.cpu.
run() {
	local label=$1 port=$2 line c0 c1
	shift 2
	[ -z "${CPU_PID:-}" ] || c0=$(ticks "$CPU_PID")
	line=$(timeout 60 "$BENCH" --json "$@" "127.0.0.1:$port" 2>>"$BENCH_TMP/bench.err" | tail -1)
	[ -n "$line" ] || line='{"ok":false,"errors":-1,"rate":0,"handshake_rate":0,"latency_us":{}}'
	echo "$line" >>"$BENCH_TMP/$label"
	if [ -n "${CPU_PID:-}" ]; then
		c1=$(ticks "$CPU_PID")
		echo "$((c1 - c0)) $(jq -r '.handshakes // 0' <<<"$line")" >>"$BENCH_TMP/$label.cpu"
	fi
}

# targets: the TLS cases measured in this run: haproxy, and native if it works.
targets() {
	echo haproxy
	[ -z "$NATIVE" ] || echo native
}
port_of() {
	case $1 in
	plain) echo "$SD_PORT" ;;
	native) echo "$TLS_PORT" ;;
	haproxy) echo "$HAP_PORT" ;;
	esac
}
pid_of() {
	case $1 in
	native) echo "$SD_WORKER" ;;
	haproxy) echo "$HAP_PROC" ;;
	esac
}


# col LABEL JQ: the field of each round, one per line.
col() {
	[ -s "$BENCH_TMP/$1" ] || return 0
	jq -r ".$2 // 0" "$BENCH_TMP/$1"
}
med() {
	col "$1" "$2" | median
}
# rmed A B JQ: the median over the rounds of A's field / B's field, within each round.
rmed() {
	[ -s "$BENCH_TMP/$1" ] && [ -s "$BENCH_TMP/$2" ] || {
		echo -
		return 0
	}
	paste <(col "$1" "$3") <(col "$2" "$3") | awk '$2 > 0 { print $1 / $2 }' | median |
		xargs printf '%.2f'
}
# cpu_us LABEL: the median CPU time per handshake of the server, in us.
cpu_us() {
	[ -s "$BENCH_TMP/$1.cpu" ] || {
		echo -
		return 0
	}
	awk -v hz="$(getconf CLK_TCK)" '$2 > 0 { print $1 * 1e6 / hz / $2 }' "$BENCH_TMP/$1.cpu" |
		median | xargs printf '%.0f us'
}
si() {
	awk -v v="$1" 'BEGIN { if (v >= 1e6) printf "%.2f M", v / 1e6; else if (v >= 1e3) printf "%.1f k", v / 1e3; else printf "%.0f", v }'
}
us() {
	awk -v v="$1" 'BEGIN { if (v >= 1000) printf "%.2f ms", v / 1000; else printf "%.0f us", v }'
}
# share LABEL: the median share of resumed handshakes.
share() {
	[ -s "$BENCH_TMP/$1" ] || {
		echo -
		return 0
	}
	jq -r 'if .handshakes > 0 then .resumed / .handshakes else 0 end' "$BENCH_TMP/$1" | median |
		xargs printf '%.2f'
}
tls_args() {
	[ "$1" = plain ] || echo --tls
}

# --- (a), (b), (c): every case once per round ---

W="--warmup 0.5 -d $SECS"
for r in $(seq "$ROUNDS"); do
	echo "bench: round $r of $ROUNDS: pipelined, request/response, handshakes" >&2
	for t in $(rotate "$r" plain $(targets)); do
		run "pipe.$t" "$(port_of "$t")" $W -c 100 -w 64 -s 20 $(tls_args "$t")
	done
	for t in $(rotate "$r" plain $(targets)); do
		run "rr.$t" "$(port_of "$t")" $W -c 1 -w 1 -s 20 $(tls_args "$t")
	done
	run hs.plain "$SD_PORT" --handshakes -d "$SECS" -c 32 -t 2
	for t in $(rotate "$r" $(targets)); do
		CPU_PID=$(pid_of "$t") run "hs.$t" "$(port_of "$t")" --handshakes --tls -d "$SECS" -c 32 -t 2
		CPU_PID=$(pid_of "$t") run "hsr.$t" "$(port_of "$t")" --handshakes --tls --tls-resume -d "$SECS" -c 32 -t 2
	done
done

# --- (d): the flood, per target ---

# flood_round TARGET: the established client's p99 alone, then under the flood.
flood_round() {
	local t=$1 port w1 stall hs ready
	port=$(port_of "$t")
	run "quiet.$t" "$port" $W -c 1 -w 1 -s 20 --tls
	# The client connects first, the flood comes during its warm-up.
	timeout 60 "$BENCH" --json --warmup "$WARM" -d "$SECS" -c 1 -w 1 -s 20 --tls "127.0.0.1:$port" \
		>"$BENCH_TMP/w1.out" 2>>"$BENCH_TMP/bench.err" &
	w1=$!
	BENCH_PIDS+=("$w1")
	: >"$BENCH_TMP/stall.out" # before the job starts: the last round's "open" is gone
	timeout 60 python3 bench/tls-stall.py "$port" "$FLOOD" "$(awk -v a="$SECS" -v b="$WARM" 'BEGIN { print a + b + 1 }')" \
		>>"$BENCH_TMP/stall.out" 2>>"$BENCH_TMP/bench.err" &
	stall=$!
	BENCH_PIDS+=("$stall")
	ready=$EPOCHREALTIME
	wait_for -t 10 grep -q '^open' "$BENCH_TMP/stall.out" ||
		echo "bench: flood of $FLOOD not all open after 10 s ($t)" >&2
	ready=$(awk -v a="$ready" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
	timeout 60 "$BENCH" --json --handshakes --tls -c 4 -d "$SECS" "127.0.0.1:$port" \
		>"$BENCH_TMP/hsflood.out" 2>>"$BENCH_TMP/bench.err" &
	hs=$!
	BENCH_PIDS+=("$hs")
	wait "$w1" "$hs"
	kill -TERM "$stall" 2>/dev/null
	wait "$stall"
	tail -1 "$BENCH_TMP/w1.out" >>"$BENCH_TMP/flood.$t"
	tail -1 "$BENCH_TMP/hsflood.out" >>"$BENCH_TMP/hsflood.$t"
	tail -1 "$BENCH_TMP/stall.out" >>"$BENCH_TMP/stall.$t"
	echo "$ready" >>"$BENCH_TMP/ready.$t"
}
for r in $(seq "$ROUNDS"); do
	echo "bench: round $r of $ROUNDS: $FLOOD stalled handshakes and a handshake stream" >&2
	for t in $(rotate "$r" $(targets)); do
		flood_round "$t"
	done
done
elapsed=$((SECONDS - T0))

# --- The table ---

errors=0
for f in "$BENCH_TMP"/{pipe,rr,hs,hsr,quiet,flood,hsflood}.*; do
	[ -f "$f" ] && [ "${f##*.}" != cpu ] || continue
	errors=$((errors + $(jq -s 'map(if .errors < 0 then 1 else .errors end) | add' "$f")))
done
cell() { # cell LABEL TEXT: TEXT, or "not measured" without the label's runs
	if [ -s "$BENCH_TMP/$1" ]; then echo "$2"; else echo "not measured"; fi
}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
	echo "# submitd TLS benchmark, $DATE, commit $COMMIT"
	echo
	echo "- machine: $(nproc) CPUs, $cpu, kernel $(uname -r); load average at start $load_start"
	echo "- command: \`bench/tls.sh\` (BENCH_ROUNDS=$ROUNDS BENCH_SECONDS=$SECS TLS_FLOOD_CONNS=$FLOOD), $elapsed s"
	echo "- $(openssl version); $(haproxy -v | head -1 | cut -d' ' -f1-3); submitd: 1 worker; haproxy: 1 process, nbthread 1, TCP mode, in front of the same worker's plaintext port"
	echo "- TLS 1.3, $SUITE, ECDSA P-256 server chain (leaf + CA, test/helpers/tls-certs.sh); submit-bench on the same CPUs. Medians of $ROUNDS rounds; ratios within each round."
	[ -n "$NATIVE" ] || echo "- native TLS: not measured: $NATIVE_WHY"
	echo
	echo "| case | plaintext | native TLS | HAProxy TLS | native/plain | HAProxy/plain | native/HAProxy |"
	echo "|---|---|---|---|---|---|---|"
	p=$(med pipe.plain rate) n=$(med pipe.native rate) h=$(med pipe.haproxy rate)
	echo "| a. pipelined, 100 conns, window 64, 20 B | $(si "$p") msgs/s | $(cell pipe.native "$(si "$n") msgs/s") | $(si "$h") msgs/s | $(rmed pipe.native pipe.plain rate) | $(rmed pipe.haproxy pipe.plain rate) | $(rmed pipe.native pipe.haproxy rate) |"
	p=$(med rr.plain latency_us.p99) n=$(med rr.native latency_us.p99) h=$(med rr.haproxy latency_us.p99)
	echo "| b. request/response, 1 conn, window 1: p99 (p50) | $(us "$p") ($(us "$(med rr.plain latency_us.p50)")) | $(cell rr.native "$(us "$n") ($(us "$(med rr.native latency_us.p50)"))") | $(us "$h") ($(us "$(med rr.haproxy latency_us.p50)")) | $(rmed rr.native rr.plain latency_us.p99) | $(rmed rr.haproxy rr.plain latency_us.p99) | $(rmed rr.native rr.haproxy latency_us.p99) |"
	hp=$(med hs.plain handshake_rate)
	for k in hs hsr; do
		case $k in
		hs) label="c. full handshakes/s, 32 slots, 2 client threads (server CPU per handshake)" ;;
		hsr) label="c. resumed handshakes/s, --tls-resume (server CPU per handshake)" ;;
		esac
		n=$(med $k.native handshake_rate) h=$(med $k.haproxy handshake_rate)
		echo "| $label | $(si "$hp") TCP connects/s | $(cell $k.native "$(si "$n")/s ($(cpu_us $k.native))") | $(si "$h")/s ($(cpu_us $k.haproxy)) | $(rmed $k.native hs.plain handshake_rate) | $(rmed $k.haproxy hs.plain handshake_rate) | $(rmed $k.native $k.haproxy handshake_rate) |"
	done
	echo
	echo "Share of the handshakes resumed with --tls-resume: native $(cell hsr.native "$(share hsr.native)"), HAProxy $(share hsr.haproxy); resumed vs full handshakes/s: native $(rmed hsr.native hs.native handshake_rate), HAProxy $(rmed hsr.haproxy hs.haproxy handshake_rate)."
	echo
	echo "d. $FLOOD connections stalled in the handshake (half send nothing, half half a ClientHello) plus a stream of full handshakes (4 slots), while a window-1 client connected before the flood runs:"
	echo
	echo "| target | p99 without flood | p99 under flood | flood/quiet p99 | p50 under flood | stream handshakes/s under flood | stalled closed by the server | flood ready after (rounds late) |"
	echo "|---|---|---|---|---|---|---|---|"
	for t in native haproxy; do
		if [ ! -s "$BENCH_TMP/flood.$t" ]; then
			echo "| $t | not measured | | | | | | |"
			continue
		fi
		echo "| $t | $(us "$(med quiet.$t latency_us.p99)") | $(us "$(med flood.$t latency_us.p99)") | $(rmed flood.$t quiet.$t latency_us.p99) | $(us "$(med flood.$t latency_us.p50)") | $(si "$(med hsflood.$t handshake_rate)")/s | $(med stall.$t closed_by_server) | $(median <"$BENCH_TMP/ready.$t") s ($(awk -v w="$WARM" '$1 > w' "$BENCH_TMP/ready.$t" | wc -l)) |"
	done
	echo
	echo "A round is late when the flood was not all open by the end of the client's ${WARM} s warm-up: its measurement then began before the flood did."
	echo
	echo "- errors reported by submit-bench over all runs: $errors"
} >"$BENCH_TMP/table.md"

mkdir -p "$(dirname "$OUT")"
cp "$BENCH_TMP/table.md" "$OUT"
cat "$BENCH_TMP/table.md"
echo
echo "bench: written to $OUT" >&2
if [ -s "$BENCH_TMP/bench.err" ]; then
	echo "bench: submit-bench reported:" >&2
	head -20 "$BENCH_TMP/bench.err" >&2
fi
[ "$errors" -eq 0 ]
