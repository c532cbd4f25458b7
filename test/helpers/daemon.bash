# Start and stop submitd on free ports, by pid: shared by the bats suites
# (through helpers/common) and the bench scripts (through bench/lib.sh).
# Plain bash, nothing of bats. The files of one daemon go into SD_DIR
# (default BATS_TEST_TMPDIR): submitd.conf, submitd.log (its log_file),
# submitd.out (its stdout and stderr).
#
# Settings, each with its default: SD_BIN (build/submitd), SD_PREFIX (an
# array run in front of the binary, e.g. valgrind; empty), SD_READY_S (10,
# seconds to become ready), SD_STOP_S (10, seconds from SIGTERM to SIGKILL),
# SD_TIMEOUT_S (300, the timeout(1) around the daemon).

SD_ROOT=${SD_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SD_BIN=${SD_BIN:-$SD_ROOT/build/submitd}

_sd_dir() {
	echo "${SD_DIR:-${BATS_TEST_TMPDIR:?SD_DIR or BATS_TEST_TMPDIR must be set}}"
}

# wait_for [-t SECONDS] CMD...: run CMD every 20 ms until it succeeds; 1 on
# timeout, or at once if CMD returns 255 (the condition can no longer become true).
wait_for() {
	local limit=5
	if [ "$1" = -t ]; then
		limit=$2
		shift 2
	fi
	local deadline=$((SECONDS + limit + 1)) start=$EPOCHREALTIME
	while :; do
		local rc=0
		"$@" >/dev/null 2>&1 || rc=$?
		case $rc in
		0) return 0 ;;
		255) return 1 ;;
		esac
		# Bounded by wall time (SECONDS is whole seconds; EPOCHREALTIME is exact).
		if (($(_sd_elapsed_ms "$start") >= limit * 1000)) || ((SECONDS > deadline)); then
			echo "wait_for: timed out after ${limit}s: $*" >&2
			return 1
		fi
		sleep 0.02
	done
}

_sd_elapsed_ms() {
	local now=$EPOCHREALTIME
	echo $(((${now/./} - ${1/./}) / 1000))
}

# sd_config [LINES...]: the config file path; LINES override the defaults by option name.
sd_config() {
	local dir
	dir=$(_sd_dir) || return 1
	local conf=$dir/submitd.conf
	local -A over=()
	local l k
	for l in "$@"; do
		k=${l%%=*}
		k=${k//[[:space:]]/}
		over[$k]=1
	done
	{
		[ -n "${over[listen]:-}" ] || echo 'listen = {"127.0.0.1:0"}'
		[ -n "${over[metrics_listen]:-}" ] || echo 'metrics_listen = "127.0.0.1:0"'
		[ -n "${over[workers]:-}" ] || echo 'workers = 2'
		[ -n "${over[log_file]:-}" ] || echo "log_file = \"$dir/submitd.log\""
		[ -n "${over[log_level]:-}" ] || echo 'log_level = info'
		[ -n "${over[shutdown_timeout]:-}" ] || echo 'shutdown_timeout = 5'
		for l in "$@"; do
			echo "$l"
		done
	} >"$conf"
	echo "$conf"
}

# The daemon's log: its log_file plus whatever went to stdout/stderr.
sd_log() {
	local dir
	dir=$(_sd_dir) || return 1
	cat "$dir/submitd.log" "$dir/submitd.out" 2>/dev/null
}

sd_log_count() {
	sd_log | grep -cE -- "$1"
}

# sd_read_ports: SD_PORT and SD_METRICS_PORT (empty without an endpoint) from
# the log's first "listening on" and "metrics on" lines; fails without SD_PORT.
sd_read_ports() {
	SD_PORT=$(sd_log | sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' | head -1)
	SD_METRICS_PORT=$(sd_log | sed -n 's/.*metrics on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' | head -1)
	[ -n "$SD_PORT" ]
}

# sd_start [CONFIG LINES...]: start submitd in the foreground under timeout,
# wait until all workers are ready, set SD_PID (master), SD_JOB (the
# background job, for `wait`), SD_PORT, SD_METRICS_PORT, SD_CONF. On failure
# the config and the log go to stderr and it returns 1.
sd_start() {
	SD_CONF=$(sd_config "$@") || return 1
	sd_start_conf "$SD_CONF"
}

# sd_start_conf FILE: the same with a config file of the caller's.
sd_start_conf() {
	SD_CONF=$1
	local dir
	dir=$(_sd_dir) || return 1
	[ -x "$SD_BIN" ] || {
		echo "sd_start: $SD_BIN not built" >&2
		return 1
	}
	: >"$dir/submitd.log"
	timeout "${SD_TIMEOUT_S:-300}" ${SD_PREFIX[@]+"${SD_PREFIX[@]}"} "$SD_BIN" -f -c "$SD_CONF" \
		>"$dir/submitd.out" 2>&1 </dev/null 3>&- 4>&- &
	SD_JOB=$!
	SD_PID=
	if ! wait_for -t "${SD_READY_S:-10}" _sd_ready; then
		echo "sd_start: submitd did not become ready; config and log:" >&2
		cat "$SD_CONF" >&2
		sd_log >&2
		return 1
	fi
	SD_PID=$(pgrep -P "$SD_JOB" | head -1)
	sd_read_ports
	export SD_PORT SD_METRICS_PORT SD_PID SD_JOB SD_CONF
	[ -n "$SD_PID" ] && [ -n "$SD_PORT" ] || {
		echo "sd_start: no master pid or port (pid '$SD_PID', port '$SD_PORT')" >&2
		sd_log >&2
		return 1
	}
}

_sd_ready() {
	kill -0 "$SD_JOB" 2>/dev/null || {
		return 255
	}
	sd_log | grep -qE "ready: [0-9]+ workers running"
}

# sd_spawn OUT CMD...: run a client in the background, output to OUT; its pid
# in SD_SPAWNED. sd_stop ends every one still running.
SD_BG_PIDS=()
sd_spawn() {
	local out=$1
	shift
	"$@" >"$out" 2>&1 </dev/null 3>&- 4>&- &
	SD_SPAWNED=$!
	SD_BG_PIDS+=("$SD_SPAWNED")
}

sd_kill_spawned() {
	local p
	for p in "${SD_BG_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	SD_BG_PIDS=()
}

# sd_stop: SIGTERM, a bounded wait (SD_STOP_S), then SIGKILL for the master
# and every worker, by pid. Safe to call twice and when nothing was started.
sd_stop() {
	sd_kill_spawned
	[ -n "${SD_JOB:-}" ] || return 0
	local pids p
	pids="${SD_PID:-} $(sd_workers 2>/dev/null || true)"
	if [ -n "${SD_PID:-}" ]; then
		kill -TERM "$SD_PID" 2>/dev/null || true
	else
		kill -TERM "$SD_JOB" 2>/dev/null || true
	fi
	if ! wait_for -t "${SD_STOP_S:-10}" _sd_all_gone $pids "$SD_JOB"; then
		echo "sd_stop: still running after SIGTERM, sending SIGKILL" >&2
		for p in $pids "$SD_JOB"; do
			kill -KILL "$p" 2>/dev/null || true
		done
	fi
	wait "$SD_JOB" 2>/dev/null || true
	SD_JOB= SD_PID=
}

_sd_all_gone() {
	local p
	for p in "$@"; do
		[ -n "$p" ] || continue
		# A zombie still answers kill -0; the job is reaped by wait later.
		[ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && return 1
	done
	return 0
}

# sd_workers: the master's child pids, one per line.
sd_workers() {
	[ -n "${SD_PID:-}" ] || return 1
	pgrep -P "$SD_PID" | sort -n
}
