# HAProxy (Debian haproxy 2.6) terminating TLS in front of a plaintext
# server, on free ports, by pid: shared by test/bench-tls.bats and
# bench/tls.sh. Plain bash, nothing of bats; needs wait_for from
# helpers/daemon.bash. One haproxy at a time per shell.
#
#   hap_start DIR BACKEND_PORT BIND_OPTIONS [BIND_OPTIONS...]
#
# writes DIR/haproxy.cfg with one TCP frontend per BIND_OPTIONS (what follows
# "bind 127.0.0.1:PORT" in haproxy's syntax, e.g. "ssl crt DIR/haproxy.pem"),
# each on a free port and forwarding to 127.0.0.1:BACKEND_PORT, one process
# with one thread (nbthread 1); starts haproxy in the foreground under
# timeout(1), waits until every frontend accepts, and sets HAP_PID (the
# timeout process, which forwards SIGTERM) and HAP_PORTS (an array, in the
# order of the BIND_OPTIONS). Lines in HAP_GLOBAL (a newline-separated string)
# go into the global section, e.g. "ssl-default-bind-ciphersuites ...".
# HAP_SERVER_OPTS goes after the server line's address (e.g. "send-proxy-v2
# source 127.0.0.3"). HAP_TIMEOUT_S (300) bounds its life, HAP_CLIENT_TIMEOUT (30s) is haproxy's
# timeout client (which also ends a stalled handshake). A port that another
# process took between the pick and haproxy's bind is retried (5 tries).
# Returns 1 with the config and haproxy's output on stderr.
#
#   hap_stop      SIGTERM, a bounded wait, then SIGKILL; safe when none runs.
#   hap_pid       the haproxy process itself (the timeout process' child).

HAP_PID=
HAP_PORTS=()

# _hap_free_port: a port nothing listens on now (the kernel's pick for port 0).
_hap_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# _hap_accepts PORT: a TCP connect to 127.0.0.1:PORT succeeds.
_hap_accepts() {
	kill -0 "$HAP_PID" 2>/dev/null || return 255
	python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1"
}

_hap_config() {
	local dir=$1 backend=$2 i maxconn
	shift 2
	local opts=("$@")
	# Two descriptors per proxied connection; stay under the limit haproxy inherits.
	maxconn=$((($(ulimit -n) - 100) / 2))
	[ "$maxconn" -le 10000 ] || maxconn=10000
	{
		echo "global"
		echo "  nbthread 1"
		echo "  maxconn $maxconn"
		[ -z "${HAP_GLOBAL:-}" ] || printf '%s\n' "$HAP_GLOBAL" | sed 's/^/  /'
		echo "defaults"
		echo "  mode tcp"
		echo "  timeout connect 5s"
		echo "  timeout client ${HAP_CLIENT_TIMEOUT:-30s}"
		echo "  timeout server 30s"
		for i in "${!opts[@]}"; do
			echo "frontend f$i"
			echo "  bind 127.0.0.1:${HAP_PORTS[$i]} ${opts[$i]}"
			echo "  default_backend b"
		done
		echo "backend b"
		echo "  server s 127.0.0.1:$backend ${HAP_SERVER_OPTS:-}"
	} >"$dir/haproxy.cfg"
}

hap_start() {
	local dir=$1 backend=$2 p ok
	shift 2
	for _ in 1 2 3 4 5; do
		HAP_PORTS=()
		for p in "$@"; do
			HAP_PORTS+=("$(_hap_free_port)")
		done
		_hap_config "$dir" "$backend" "$@"
		timeout "${HAP_TIMEOUT_S:-300}" haproxy -db -f "$dir/haproxy.cfg" \
			>"$dir/haproxy.out" 2>&1 </dev/null 3>&- 4>&- &
		HAP_PID=$!
		ok=1
		for p in "${HAP_PORTS[@]}"; do
			wait_for -t 5 _hap_accepts "$p" || {
				ok=
				break
			}
		done
		if [ -n "$ok" ]; then
			export HAP_PID
			return 0
		fi
		hap_stop
		# A port taken since the pick: try others. Anything else is fatal.
		grep -q 'cannot bind socket\|Address already in use' "$dir/haproxy.out" || break
	done
	echo "hap_start: haproxy did not start; config and output:" >&2
	cat "$dir/haproxy.cfg" "$dir/haproxy.out" >&2
	return 1
}

hap_pid() {
	[ -n "$HAP_PID" ] && pgrep -P "$HAP_PID" | head -1
}

hap_stop() {
	[ -n "${HAP_PID:-}" ] || return 0
	local child
	child=$(hap_pid)
	kill -TERM "$HAP_PID" 2>/dev/null || true
	if ! wait_for -t 10 _sd_all_gone "$HAP_PID" $child; then
		kill -KILL "$HAP_PID" $child 2>/dev/null || true
	fi
	wait "$HAP_PID" 2>/dev/null || true
	HAP_PID=
}
