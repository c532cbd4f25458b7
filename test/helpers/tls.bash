# A submitd with a plaintext and a tls:// listener, for test/tls.bats and
# test/proxy.bats; CERTS is helpers/tls-certs.sh's directory.

# tls_lines [LINES...]: LINES plus, unless LINES set them, a plaintext and a
# tls:// listener on free ports and server.pem / server.key; one per line.
tls_lines() {
	local -A over=()
	local l k
	for l in "$@"; do
		k=${l%%=*}
		over[${k//[[:space:]]/}]=1
	done
	[ -n "${over[listen]:-}" ] || echo 'listen = {"127.0.0.1:0", "tls://127.0.0.1:0"}'
	[ -n "${over[tls_certificate]:-}" ] || echo "tls_certificate = \"$CERTS/server.pem\""
	[ -n "${over[tls_key]:-}" ] || echo "tls_key = \"$CERTS/server.key\""
	for l in "$@"; do
		echo "$l"
	done
}

# tls_start [LINES...]: sd_start with tls_lines; SD_PORT is the plaintext
# port, TLS_PORT the tls:// one (the listeners log in the order configured).
tls_start() {
	local lines
	mapfile -t lines < <(tls_lines "$@")
	sd_start "${lines[@]}" || return 1
	TLS_PORT=$(sd_log | sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' | sed -n 2p)
	[ -n "$TLS_PORT" ] && [ "$TLS_PORT" != "$SD_PORT" ] || {
		echo "tls_start: no second listener in the log" >&2
		return 1
	}
	export TLS_PORT
}
