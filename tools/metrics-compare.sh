#!/bin/bash
# tools/metrics-compare.sh: is /metrics the same for the same traffic?
#
#   tools/metrics-compare.sh [-k DIR] BUILD_A BUILD_B
#   e.g. tools/metrics-compare.sh /work/wt-base/build build
#
# For each build directory in turn: start BUILD/submitd (master and 2
# workers, 127.0.0.1, ephemeral ports, the spool on in a temporary
# directory), drive a fixed amount of traffic at it with BUILD/submit-bench
# and a few hand-made bad frames, fetch /metrics once the counters have
# settled (after each of three phases), stop it. Then mask what no two runs
# share (see MASKED below), and diff the rest: metric names, HELP/TYPE lines,
# label sets, series order and the values the traffic determines.
#
# The phases (cumulative; /metrics is fetched after each):
#   1 rr    request/response: -n MC_RR over MC_CONNS connections, -w 1,
#           --conn. One ack per write, so even the write batch histogram
#           is exact.
#   2 pipe  pipelined: -n MC_PIPE over MC_CONNS connections, -w 64.
#           Batching depends on timing: write_batch_size keeps only _sum.
#   3 bad   four connections, each a valid Submit then a bad frame (one per
#           protocol error reason), read until the server closes.
#
# Exit status: 0 identical, 1 different (the diff on stdout), 2 a run failed
# (usage, a daemon that did not start or stop, traffic not acked, counters
# that did not settle in time).
#
# Environment:
#   MC_RR (50000) MC_PIPE (100000)  requests in phases 1 and 2
#   MC_CONNS (4)                    connections per bench phase
#   MC_SYNC (always)                spool_sync: always, interval or none
#   MC_BENCH                        one submit-bench for both runs (default:
#                                   each build's own BUILD/submit-bench)
#   MC_SETTLE_S (30)                bound on each wait for the counters
#   MC_STRICT (0)                   1: also compare process_open_fds (the
#                                   same in base-vs-base runs here, but a
#                                   worker that got no connection may hold
#                                   no segment open: off by default)
# -k DIR keeps, per run, the config, the daemon's log, the raw /metrics of
# each phase and the normalised text in DIR/a and DIR/b.
#
# MASKED (the value, or labels, replaced; the line itself, its name, labels
# and position are still compared):
#   worker="N" series   how the kernel spreads connections over the workers
#                       is not ours to fix: the per-worker values are masked
#                       and a "#sum-over-workers" line after the family
#                       compares their sum per remaining label set.
#                       submitd_worker_allocated_bytes' sum is masked too:
#                       arena bytes, memory with a 1 s decay (two base runs
#                       differed by 1536 bytes).
#   submitd_spool_used_bytes  the segments' st_size: each worker writes
#                       zeros ahead of its records in chunks, so the total
#                       depends on the per-worker split; and the master
#                       rescans only once a second. (submitd_spool_written_
#                       bytes_total's sum is the exact, compared figure.)
#   process_*           start time, CPU, RSS, open fds (fds: compared with
#                       MC_STRICT=1).
#   *_timestamp_seconds, *_age_seconds    wall clock.
#   submitd_build_info  the version and commit labels.
#   submitd_spool_fsync_seconds           latency: buckets, _sum, _count.
#   submitd_spool_fsyncs_total, submitd_spool_records_per_fsync buckets and
#                       _count: how many records one fdatasync covers is
#                       timing (group commit); _sum (every record once) is
#                       kept with MC_SYNC=always, masked otherwise.
#   submitd_nats_forward_latency_seconds  buckets and _sum (latency); _count
#                       kept (0 here: no NATS).
#   submitd_write_batch_size              after phase 2 on: buckets and
#                       _count (writes per ack batch are timing); _sum kept.
set -u
export LC_ALL=C

usage() {
	sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
KEEP=
while getopts k:h o; do
	case $o in
	k) KEEP=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || usage

MC_RR=${MC_RR:-50000}
MC_PIPE=${MC_PIPE:-100000}
MC_CONNS=${MC_CONNS:-4}
MC_SYNC=${MC_SYNC:-always}
MC_SETTLE_S=${MC_SETTLE_S:-30}
MC_STRICT=${MC_STRICT:-0}
case $MC_STRICT in 0 | 1) ;; *) echo "MC_STRICT: 0 or 1" >&2; exit 2 ;; esac
case $MC_SYNC in always | interval | none) ;; *) echo "MC_SYNC: always, interval or none" >&2; exit 2 ;; esac
for v in "$MC_RR" "$MC_PIPE" "$MC_CONNS" "$MC_SETTLE_S"; do
	case $v in '' | *[!0-9]* | 0) echo "MC_RR, MC_PIPE, MC_CONNS, MC_SETTLE_S: positive integers" >&2; exit 2 ;; esac
done
for t in curl timeout diff awk; do
	command -v $t >/dev/null || { echo "metrics-compare: $t is missing" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/metrics-compare.XXXXXX) || exit 2
SD_PID= WORKER_PIDS= SD_BIN=

# Stop the daemon this script started: SIGTERM to the master, a bounded wait,
# then SIGKILL; workers it left behind are killed by their recorded pids.
gone() { # PID: exited or a zombie
	[ -e "/proc/$1" ] || return 0
	[ "$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)" = Z ]
}
wait_gone() { # SECONDS PID
	local n=$(($1 * 20))
	while [ $n -gt 0 ]; do
		gone "$2" && return 0
		sleep 0.05
		n=$((n - 1))
	done
	return 1
}
ours() { # PID: still a process of our binary (not a reused pid)
	[ "$(readlink "/proc/$1/exe" 2>/dev/null)" = "$SD_BIN" ]
}
sd_stop() {
	local rc=0 p
	[ -n "$SD_PID" ] || return 0
	kill -TERM "$SD_PID" 2>/dev/null
	if ! wait_gone 20 "$SD_PID"; then
		echo "metrics-compare: the master $SD_PID did not exit in 20 s; SIGKILL" >&2
		kill -KILL "$SD_PID" 2>/dev/null
		rc=1
	fi
	wait "$SD_PID" 2>/dev/null
	for p in $WORKER_PIDS; do
		if ! wait_gone 10 "$p" && ours "$p"; then
			echo "metrics-compare: worker $p outlived the master; SIGKILL" >&2
			kill -KILL "$p" 2>/dev/null
			rc=1
		fi
	done
	SD_PID= WORKER_PIDS=
	return $rc
}
cleanup() {
	sd_stop
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "metrics-compare: $*" >&2
	exit 2
}

# fetch PORT FILE: /metrics into FILE.
fetch() {
	curl -sf --max-time 5 -o "$2" "http://127.0.0.1:$1/metrics"
}

# sum FILE NAME [LABEL]: the sum of NAME's samples (with LABEL, e.g.
# cmd="submit", only those that have it).
sum() {
	awk -v n="$2" -v l="${3:-}" '
	{ name = $1; sub(/\{.*/, "", name) }
	name == n && (l == "" || index($1, l) > 0) { s += $NF }
	END { printf "%.0f\n", s }' "$1"
}

# settled FILE SUBMITS CONNS: every request answered, spooled, every
# connection closed and counted.
settled() {
	local f=$1 closed accepted
	[ "$(sum "$f" submitd_req_recv_total 'cmd="submit"')" = "$2" ] || return 1
	[ "$(sum "$f" submitd_rsp_send_total 'cmd="submit"')" = "$2" ] || return 1
	[ "$(sum "$f" submitd_req_recv_total 'cmd="conn"')" = "$3" ] || return 1
	[ "$(sum "$f" submitd_rsp_send_total 'cmd="conn"')" = "$3" ] || return 1
	[ "$(sum "$f" submitd_spool_records_total)" = "$2" ] || return 1
	[ "$(sum "$f" submitd_client_connected)" = 0 ] || return 1
	accepted=$(sum "$f" submitd_connections_accepted_total)
	closed=$(sum "$f" submitd_connections_closed_total)
	[ "$accepted" = "$closed" ]
}

# normalise PHASE < raw > normalised (see MASKED above).
normalise() {
	awk -v phase="$1" -v sync="$MC_SYNC" -v strict="$MC_STRICT" '
	function flush_sums(   i) {
		for (i = 1; i <= nsum; i++)
			print "#sum-over-workers " sumkey[i] " " (summask[sumkey[i]] ? "<masked>" : sumval[sumkey[i]])
		nsum = 0
		delete sumval
		delete summask
	}
	function masked(name) {
		if (name == "process_open_fds") return !strict
		if (name ~ /^process_/) return 1
		if (name ~ /_timestamp_seconds$/ || name ~ /_age_seconds$/) return 1
		if (name == "submitd_worker_allocated_bytes") return 1
		if (name == "submitd_spool_used_bytes") return 1
		if (name ~ /^submitd_spool_fsync_seconds_/) return 1
		if (name == "submitd_spool_fsyncs_total") return 1
		if (name == "submitd_spool_records_per_fsync_bucket" || name == "submitd_spool_records_per_fsync_count") return 1
		if (name == "submitd_spool_records_per_fsync_sum" && sync != "always") return 1
		if (name == "submitd_nats_forward_latency_seconds_bucket" || name == "submitd_nats_forward_latency_seconds_sum") return 1
		if (phase != "rr" && (name == "submitd_write_batch_size_bucket" || name == "submitd_write_batch_size_count")) return 1
		return 0
	}
	/^# HELP / { if ($3 != family) flush_sums(); family = $3; print; next }
	/^#/ { print; next }
	/^[ \t]*$/ { next }
	{
		series = $0; sub(/[ \t]+[^ \t]+$/, "", series)
		value = $NF
		name = series; sub(/\{.*/, "", name)
		labels = ""
		if (index(series, "{")) { labels = series; sub(/^[^{]*\{/, "", labels); sub(/\}$/, "", labels) }
		if (name == "submitd_build_info") {
			gsub(/version="[^"]*"/, "version=\"<masked>\"", series)
			gsub(/commit="[^"]*"/, "commit=\"<masked>\"", series)
		}
		m = masked(name)
		if (labels ~ /(^|,)worker="[0-9]+"/) {
			rest = labels; sub(/(^|,)worker="[0-9]+",?/, "", rest)
			key = name (rest != "" ? "{" rest "}" : "")
			if (!(key in sumval)) { sumkey[++nsum] = key; sumval[key] = 0 }
			sumval[key] += value
			if (m) summask[key] = 1
			print series " <per-worker>"
			next
		}
		print series " " (m ? "<masked>" : value)
	}
	END { flush_sums() }'
}

# bad_frames PORT: per protocol error reason, one connection with a valid
# Submit (an ack owed) and then the bad frame; read until the server closes.
BAD_SUBMITS=4
bad_frames() {
	local port=$1 bad
	# frame_too_short (total_len 3), frame_too_large (2^31), unknown_command
	# (0x07), body_too_short (a Submit with a 3-byte body).
	for bad in '\x00\x00\x00\x03' '\x80\x00\x00\x00' '\x00\x00\x00\x05\x07' '\x00\x00\x00\x08\x02abc'; do
		timeout 10 bash -c '
			exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
			printf "\x00\x00\x00\x12\x02bad00001hello$2" >&3
			cat <&3 >"$3"' _ "$port" "$bad" "$TMP/bad.out" ||
			fail "a bad frame connection failed or was not closed by the server"
		# The server sends the one ack (14 bytes) it owes, then closes.
		[ "$(wc -c <"$TMP/bad.out")" = 14 ] || fail "bad frame $bad: $(wc -c <"$TMP/bad.out") bytes back, not one ack"
	done
}

# run TAG BUILD: one daemon, the three phases; leaves $TMP/TAG.norm.
run() {
	local tag=$1 build=$2 dir="$TMP/$1" bench log port mport n i submits conns phase
	mkdir -p "$dir/spool"
	SD_BIN=$(readlink -f "$build/submitd")
	bench=${MC_BENCH:-$build/submit-bench}
	[ -x "$SD_BIN" ] || fail "$build/submitd: not an executable"
	[ -x "$bench" ] || fail "$bench: not an executable"
	cat >"$dir/submitd.conf" <<-CONF
		listen = {"127.0.0.1:0"}
		metrics_listen = "127.0.0.1:0"
		workers = 2
		log_level = info
		idle_timeout = 0
		spool_dir = "$dir/spool"
		spool_sync = $MC_SYNC
		spool_segment_age = 0
		spool_max_size = 0
	CONF
	log="$dir/submitd.log"
	"$SD_BIN" -f -c "$dir/submitd.conf" >"$log" 2>&1 </dev/null &
	SD_PID=$!
	n=300
	until grep -qE 'ready: [0-9]+ workers running' "$log" 2>/dev/null; do
		gone "$SD_PID" && { cat "$log" >&2; fail "$tag: submitd exited before ready"; }
		n=$((n - 1))
		[ $n -gt 0 ] || { cat "$log" >&2; fail "$tag: submitd not ready in 15 s"; }
		sleep 0.05
	done
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -1)
	mport=$(sed -n 's/.*metrics on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -1)
	[ -n "$port" ] && [ -n "$mport" ] || { cat "$log" >&2; fail "$tag: no ports in the log"; }
	WORKER_PIDS=$(pgrep -P "$SD_PID")
	echo "$tag: $SD_BIN (pid $SD_PID, workers" $WORKER_PIDS"), port $port, metrics $mport" >&2

	submits=0 conns=0
	: >"$TMP/$tag.norm"
	for phase in rr pipe bad; do
		case $phase in
		rr)
			timeout 150 "$bench" -n "$MC_RR" -d 120 -c "$MC_CONNS" -w 1 -s 20 --conn \
				"127.0.0.1:$port" >"$dir/bench-$phase.out" 2>&1 ||
				{ cat "$dir/bench-$phase.out" >&2; fail "$tag: submit-bench ($phase) failed"; }
			submits=$((submits + MC_RR)) conns=$((conns + MC_CONNS))
			;;
		pipe)
			timeout 150 "$bench" -n "$MC_PIPE" -d 120 -c "$MC_CONNS" -w 64 -s 20 \
				"127.0.0.1:$port" >"$dir/bench-$phase.out" 2>&1 ||
				{ cat "$dir/bench-$phase.out" >&2; fail "$tag: submit-bench ($phase) failed"; }
			submits=$((submits + MC_PIPE))
			;;
		bad)
			bad_frames "$port"
			submits=$((submits + BAD_SUBMITS))
			;;
		esac
		# Bounded poll: until the counters show all of it, and the
		# normalised text is the same twice in a row.
		n=$((MC_SETTLE_S * 10))
		: >"$dir/prev.norm"
		while :; do
			if fetch "$mport" "$dir/metrics-$phase.txt" && settled "$dir/metrics-$phase.txt" $submits $conns; then
				normalise $phase <"$dir/metrics-$phase.txt" >"$dir/$phase.norm"
				cmp -s "$dir/$phase.norm" "$dir/prev.norm" && break
				cp "$dir/$phase.norm" "$dir/prev.norm"
			fi
			n=$((n - 1))
			[ $n -gt 0 ] || fail "$tag: /metrics did not settle after phase $phase in $MC_SETTLE_S s ($submits submits, $conns conns expected; last fetch in $dir/metrics-$phase.txt)"
			sleep 0.1
		done
		{
			echo "=== after phase $phase"
			cat "$dir/$phase.norm"
		} >>"$TMP/$tag.norm"
	done
	sd_stop || fail "$tag: submitd did not stop cleanly"
	cp "$TMP/$tag.norm" "$dir/normalised.txt"
	if [ -n "$KEEP" ]; then
		mkdir -p "$KEEP" && rm -rf "${KEEP:?}/$tag" && cp -r "$dir" "$KEEP/$tag" && rm -rf "$KEEP/$tag/spool" "$KEEP/$tag/prev.norm"
	fi
}

run a "$1"
run b "$2"
if diff -u --label "$1" --label "$2" "$TMP/a.norm" "$TMP/b.norm" >"$TMP/diff"; then
	echo "identical: /metrics of $1 and $2 after the same traffic" \
		"($MC_RR request/response with Conn, $MC_PIPE pipelined, $BAD_SUBMITS + 4 bad frames; spool_sync $MC_SYNC)"
	exit 0
fi
cat "$TMP/diff"
exit 1
