#!/usr/bin/env bats
# The Debian package: build it from a clean clone of HEAD (make deb), lint it,
# install it, run the installed daemon as the packaged config and unit say,
# then purge it. Installs and removes a system package, so it needs root.

bats_require_minimum_version 1.5.0
load helpers/common

DEB_TOP=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

setup_file() {
	DEB_SKIP=
	if [ "$(id -u)" -ne 0 ]; then
		DEB_SKIP="installs a package: needs root"
	elif dpkg-query -W -f='${Status}' submitd 2>/dev/null | grep -q 'ok installed'; then
		DEB_SKIP="a submitd package is installed already; this test would replace and purge it"
	fi
	export DEB_SKIP
	[ -z "$DEB_SKIP" ] || return 0
	DEB_VERSION=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$DEB_TOP/debian/changelog")
	DEB_ARCH=$(dpkg --print-architecture)
	DEB_OUT=$BATS_FILE_TMPDIR/out
	DEB_COMMIT=$(git -C "$DEB_TOP" rev-parse --short=12 HEAD)
	# On a machine run by systemd, keep postinst from starting the service on
	# the default port while the test runs its own instance.
	DEB_POLICY=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		DEB_POLICY=/usr/sbin/policy-rc.d
	fi
	export DEB_VERSION DEB_ARCH DEB_OUT DEB_COMMIT DEB_POLICY
}

teardown_file() {
	[ -z "${DEB_SKIP:-}" ] || return 0
	if dpkg-query -W -f='${Status}' submitd 2>/dev/null | grep -q 'ok installed'; then
		dpkg --purge submitd >/dev/null 2>&1
	fi
	[ -z "${DEB_POLICY:-}" ] || rm -f "$DEB_POLICY"
	return 0
}

setup() {
	[ -z "${DEB_SKIP:-}" ] || skip "$DEB_SKIP"
}

teardown() {
	sd_stop
	# The forwarder's trace test: its daemon, NATS server and spool.
	if [ -n "${DEB_TRACE_PID:-}" ]; then
		kill -TERM "$DEB_TRACE_PID" 2>/dev/null || true
		wait_for -t 20 _sd_all_gone "$DEB_TRACE_PID" || kill -KILL "$DEB_TRACE_PID" 2>/dev/null || true
	fi
	if [ -n "${DEB_NATS_PID:-}" ]; then
		kill -TERM "$DEB_NATS_PID" 2>/dev/null || true
		wait "$DEB_NATS_PID" 2>/dev/null || true
	fi
	[ -z "${DEB_NATS_SPOOL:-}" ] || rm -rf "$DEB_NATS_SPOOL"
	return 0
}

deb_file() {
	echo "$DEB_OUT/submitd_${DEB_VERSION}_$DEB_ARCH.deb"
}

# conf_set FILE NAME VALUE: replace NAME's line (the config rejects duplicates).
conf_set() {
	if grep -Eq "^[[:space:]]*$2[[:space:]]*=" "$1"; then
		sed -E -i "s|^[[:space:]]*$2[[:space:]]*=.*|$2 = $3|" "$1"
	else
		echo "$2 = $3" >>"$1"
	fi
}

@test "deb: man pages are clean under mandoc -T lint and groff -ww" {
	local m
	for m in "$DEB_TOP"/man/*.[158]; do
		run --separate-stderr mandoc -T lint "$m"
		[ -z "$output$stderr" ] || fail "mandoc $m: $output$stderr"
		run --separate-stderr env LC_ALL=C.UTF-8 groff -ww -z -man -Tutf8 "$m"
		[ -z "$output$stderr" ] || fail "groff $m: $output$stderr"
	done
	[ "$(ls "$DEB_TOP"/man/*.[158] | wc -l)" -eq 4 ]
}

@test "deb: make deb builds the package from a clean clone of HEAD" {
	cd "$DEB_TOP"
	run timeout 600 make -s deb DEB_OUTDIR="$DEB_OUT"
	assert_success
	[ -f "$(deb_file)" ]
	[ -f "$DEB_OUT/submitd_${DEB_VERSION}_$DEB_ARCH.changes" ]
	# Nothing of the package build is left in the clone's place.
	[ ! -e "$DEB_OUT/deb" ]
	local f
	for f in debian/tmp debian/submitd debian/.debhelper debian/files; do
		[ ! -e "$DEB_TOP/$f" ]
	done
}

@test "deb: lintian reports no errors and no warnings" {
	[ -f "$(deb_file)" ]
	run timeout 300 lintian --fail-on error,warning "$DEB_OUT/submitd_${DEB_VERSION}_$DEB_ARCH.changes"
	assert_success
	refute_output --regexp '^[EW]: '
}

# The daemon links libssl: ${shlibs:Depends} must carry it into Depends.
@test "deb: the package depends on libssl3" {
	[ -f "$(deb_file)" ]
	run dpkg-deb -f "$(deb_file)" Depends
	assert_success
	assert_output --regexp '(^|, )libssl3( \(>= 3[^)]*\))?(,|$)'
	grep -Eq '^ +libssl-dev,$' "$DEB_TOP/debian/control"
}

@test "deb: dpkg -i installs binaries, unit, man pages, docs/*.md, conffile and the system user" {
	run dpkg -i "$(deb_file)"
	assert_success
	[ -x /usr/sbin/submitd ]
	[ -x /usr/bin/submit-bench ]
	[ -x /usr/bin/submit-spool ]
	[ -f /lib/systemd/system/submitd.service ]
	[ -f /usr/share/man/man8/submitd.8.gz ]
	[ -f /usr/share/man/man5/submitd.conf.5.gz ]
	[ -f /usr/share/man/man1/submit-bench.1.gz ]
	[ -f /usr/share/man/man1/submit-spool.1.gz ]
	[ -d /usr/share/doc/submitd/examples ]
	compgen -G "/usr/share/doc/submitd/README.md*"
	# Every document of docs/, compressed or not.
	local d
	for d in "$DEB_TOP"/docs/*.md; do
		compgen -G "/usr/share/doc/submitd/$(basename "$d")*" >/dev/null || fail "not installed: $d"
	done
	[ -d /run/submitd ]
	run dpkg-query -W -f='${Conffiles}' submitd
	assert_output --partial '/etc/submitd/submitd.conf '
	getent passwd _submitd
	getent group _submitd
	run grep -Ex '[[:space:]]*user[[:space:]]*=.*' /etc/submitd/submitd.conf
	assert_output 'user = "_submitd"'
	# The spool: its directory made by the package (tmpfiles), empty, the
	# workers' user's, where the conffile and the unit's StateDirectory= say.
	run grep -Ex '[[:space:]]*spool_dir[[:space:]]*=.*' /etc/submitd/submitd.conf
	assert_output 'spool_dir = "/var/lib/submitd/spool"'
	grep -qx 'StateDirectory=submitd' /lib/systemd/system/submitd.service
	run stat -c '%U:%G %a' /var/lib/submitd /var/lib/submitd/spool
	assert_output $'root:root 755\n_submitd:_submitd 750'
	run ls -lAR --time-style=full-iso /var/lib/submitd/spool
	[ "${#lines[@]}" -eq 2 ] || fail "the new spool is not empty: $output"
}

@test "deb: the installed config passes submitd -t" {
	run /usr/sbin/submitd -t -c /etc/submitd/submitd.conf
	assert_success
	assert_output --partial 'configuration file /etc/submitd/submitd.conf test is successful'
}

@test "deb: binaries print the debian/changelog version" {
	run /usr/sbin/submitd -v
	assert_success
	assert_output "submitd $DEB_VERSION (commit $DEB_COMMIT)"
	run /usr/bin/submit-bench --version
	assert_success
	assert_output --partial "$DEB_VERSION"
	run /usr/bin/submit-spool --version
	assert_success
	assert_output --partial "$DEB_VERSION"
}

@test "deb: the unit passes systemd-analyze verify with nothing on stderr" {
	run --separate-stderr systemd-analyze verify /lib/systemd/system/submitd.service
	assert_success
	[ -z "$stderr" ] || {
		echo "$stderr"
		false
	}
	run systemd-analyze security --offline=true /lib/systemd/system/submitd.service
	echo "# ${lines[-1]}" >&3
	assert_output --regexp 'Overall exposure level for submitd.service: [0-2]\.[0-9] '
}

@test "deb: a local edit of the conffile survives reinstalling the package" {
	echo '# local edit' >>/etc/submitd/submitd.conf
	run dpkg -i "$(deb_file)"
	assert_success
	run tail -1 /etc/submitd/submitd.conf
	assert_output '# local edit'
}

# unit_wrapper FILE: a script that runs the installed submitd under the
# unit's capability bounding set and no_new_privs (the unit itself runs in
# the nspawn test below).
unit_wrapper() {
	local caps
	caps=$(sed -n 's/^CapabilityBoundingSet=//p' /lib/systemd/system/submitd.service)
	[ -n "$caps" ]
	caps=$(echo "$caps" | tr 'A-Z' 'a-z' | sed -E 's/cap_/+/g; s/ +/,/g; s/^,//')
	grep -qx 'NoNewPrivileges=yes' /lib/systemd/system/submitd.service
	printf '#!/bin/sh\nexec setpriv --bounding-set=-all,%s --inh-caps=-all --no-new-privs /usr/sbin/submitd "$@"\n' \
		"$caps" >"$1"
	chmod 755 "$1"
}

# installed_conf FILE: the installed config, changed only to bind free
# loopback ports and to run 2 workers.
installed_conf() {
	cp /etc/submitd/submitd.conf "$1"
	conf_set "$1" listen '{"127.0.0.1:0"}'
	conf_set "$1" metrics_listen '"127.0.0.1:0"'
	conf_set "$1" workers 2
	grep -qx 'user = "_submitd"' "$1"
}

# Run the installed binary with the installed config under the unit's
# capabilities.
@test "deb: installed submitd serves a round trip with workers running as _submitd" {
	local conf=$BATS_TEST_TMPDIR/installed.conf wrapper=$BATS_TEST_TMPDIR/submitd-unit
	installed_conf "$conf"
	grep -qx 'pid_file = "/run/submitd/submitd.pid"' "$conf"
	unit_wrapper "$wrapper"

	SD_BIN=$wrapper sd_start_conf "$conf"
	[ "$(ps -o uid= -p "$SD_PID" | tr -d ' ')" = 0 ]
	[ "$(cat /run/submitd/submitd.pid)" = "$SD_PID" ]

	run sd_client pipeline 200 --mixed --payload-max 64
	assert_success

	local uid w n=0
	uid=$(id -u _submitd)
	for w in $(sd_workers); do
		[ "$(ps -o uid= -p "$w" | tr -d ' ')" = "$uid" ]
		[ "$(ps -o user= -p "$w" | tr -d ' ')" = _submitd ]
		n=$((n + 1))
	done
	[ "$n" -eq 2 ]

	run sd_metric submitd_build_info "{version=\"$DEB_VERSION\",commit=\"$DEB_COMMIT\"}"
	assert_output 1
	wait_for sd_metric_is submitd_req_recv_total '' 200

	local pid=$SD_PID
	sd_stop
	[ ! -e "/proc/$pid" ]
	[ ! -e /run/submitd/submitd.pid ]
}

# The packaged spool, as the unit's master (no CAP_DAC_OVERRIDE, no
# CAP_CHOWN) and its workers (_submitd) use it: every Submit that
# submit-bench saw acked is read back by the installed submit-spool, once,
# byte for byte (debian/tests/spool-check, also run under systemd by
# debian/tests/service).
@test "deb: Submits acked by the installed submitd are read back from /var/lib/submitd/spool" {
	local conf=$BATS_TEST_TMPDIR/installed.conf wrapper=$BATS_TEST_TMPDIR/submitd-unit
	local acks=$BATS_TEST_TMPDIR/acks cat=$BATS_TEST_TMPDIR/cat.json since
	installed_conf "$conf"
	grep -qx 'spool_dir = "/var/lib/submitd/spool"' "$conf"
	grep -qx 'spool_sync = always' "$conf"
	unit_wrapper "$wrapper"

	since=$(date +%s%N)
	SD_BIN=$wrapper sd_start_conf "$conf"
	run timeout 120 /usr/bin/submit-bench -n 4000 -c 4 --conn -s 100 --ack-log "$acks" "127.0.0.1:$SD_PORT"
	assert_success
	[ "$(wc -l <"$acks")" -eq 4000 ]
	# Read while the workers still write into active/, and after the stop
	# sealed their segments into ready/.
	run --separate-stderr /usr/bin/submit-spool cat
	assert_success
	printf '%s\n' "$output" >"$cat"
	run "$DEB_TOP/debian/tests/spool-check" "$acks" "$cat" 100 --since "$since" --conn-id 3030303030303031
	assert_success
	sd_stop
	compgen -G '/var/lib/submitd/spool/ready/*.seg'
	[ -z "$(ls -A /var/lib/submitd/spool/active)" ]
	run --separate-stderr /usr/bin/submit-spool cat
	assert_success
	printf '%s\n' "$output" >"$cat"
	run "$DEB_TOP/debian/tests/spool-check" "$acks" "$cat" 100 --since "$since" --conn-id 3030303030303031
	assert_success
	run /usr/bin/submit-spool verify
	assert_success
	# Everything in the spool belongs to the workers' user.
	[ -z "$(find /var/lib/submitd/spool ! -user _submitd -o ! -group _submitd)" ]
}

# syscall_set FILTER...: the system calls that systemd's filter groups and
# names expand to, one per line.
syscall_set() {
	local x
	for x in "$@"; do
		case $x in
		@*) systemd-analyze syscall-filter "$x" | awk 'NR > 1 && $1 !~ /^#/ { print $1 }' |
			while read -r y; do syscall_set "$y"; done ;;
		*) echo "$x" ;;
		esac
	done
}

# unit_filter: the unit's SystemCallFilter= lines into the caller's arrays
# allow and deny (the ~ lines); fails if there is none.
unit_filter() {
	local l
	while read -r l; do
		case $l in
		'~'*) deny+=(${l#\~}) ;;
		*) allow+=($l) ;;
		esac
	done < <(sed -n 's/^SystemCallFilter=//p' /lib/systemd/system/submitd.service)
	[ ${#allow[@]} -gt 0 ]
}

# forbidden USED: the calls of USED (one a line) outside allow or inside deny.
forbidden() {
	comm -23 <(echo "$1") <(syscall_set "${allow[@]}" | sort -u)
	comm -12 <(echo "$1") <(syscall_set "${deny[@]}" | sort -u)
}

# traced_start SECONDS: the installed daemon on the caller's $conf under
# strace -f into $trace, its output in $log, for at most SECONDS; sets the
# caller's job and port, and SD_METRICS_PORT, once it is ready.
traced_start() {
	timeout "$1" strace -f -qq -o "$trace" /usr/sbin/submitd -f -c "$conf" >"$log" 2>&1 3>&- 4>&- &
	job=$!
	wait_for -t 10 grep -q 'ready: ' "$log"
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -1)
	SD_METRICS_PORT=$(sed -n 's/.*metrics on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -1)
}

# The unit's SystemCallFilter= cannot be applied without systemd as PID 1:
# trace the installed daemon through start (with the spool's recovery),
# traffic spooled with spool_sync = always and, after the reload (by the
# unit's ExecReload= command), interval, segments sealed by size and age,
# metrics, log reopen and stop, and check every system call both made
# against the filter.
@test "deb: the daemon makes only system calls the unit's SystemCallFilter allows" {
	command -v strace >/dev/null || fail "strace is not installed (tools/deps.sh installs it)"
	local conf=$BATS_TEST_TMPDIR/installed.conf trace=$BATS_TEST_TMPDIR/strace log=$BATS_TEST_TMPDIR/submitd.out
	local allow=() deny=() l pid job port mport
	cp /etc/submitd/submitd.conf "$conf"
	conf_set "$conf" listen '{"127.0.0.1:0"}'
	conf_set "$conf" metrics_listen '"127.0.0.1:0"'
	conf_set "$conf" workers 2
	conf_set "$conf" pid_file "\"$BATS_TEST_TMPDIR/submitd.pid\""
	grep -qx 'spool_dir = "/var/lib/submitd/spool"' "$conf"
	conf_set "$conf" spool_sync always
	conf_set "$conf" spool_segment_size 4096
	conf_set "$conf" spool_segment_age 1
	unit_filter

	traced_start 60
	pid=$(cat "$BATS_TEST_TMPDIR/submitd.pid")
	mport=$SD_METRICS_PORT
	run $SD_CLIENT --port "$port" pipeline 200 --mixed --payload-max 64
	assert_success
	# More than a segment's 4096 bytes: sealed by size into ready/.
	run timeout 60 /usr/bin/submit-bench -n 400 -c 2 -s 100 --ack-log "$BATS_TEST_TMPDIR/acks" "127.0.0.1:$port"
	assert_success
	wait_for -t 10 compgen -G '/var/lib/submitd/spool/ready/*.seg'
	curl -sf --max-time 5 "http://127.0.0.1:$mport/metrics" >/dev/null
	kill -USR1 "$pid"
	conf_set "$conf" spool_sync interval
	conf_set "$conf" spool_sync_interval 50
	# The reload as the unit's ExecReload= does it, under the same filter.
	run timeout 60 strace -f -qq -o "$trace.reload" /usr/sbin/submitd -c "$conf" -s reload
	assert_success
	assert_output 'reload: new configuration serving'
	wait_for -t 10 sh -c "[ \$(grep -c 'ready: ' '$log') -ge 2 ]"
	run $SD_CLIENT --port "$port" pipeline 20
	assert_success
	# A segment sealed by age (1 s) while the worker waits for traffic.
	local ready
	ready=$(ls /var/lib/submitd/spool/ready | wc -l)
	run $SD_CLIENT --port "$port" pipeline 20
	assert_success
	wait_for -t 10 sh -c "[ \$(ls /var/lib/submitd/spool/ready | wc -l) -gt $ready ]"
	kill -TERM "$pid"
	wait_for -t 20 _sd_all_gone "$pid"
	wait "$job"
	run /usr/bin/submit-spool verify
	assert_success

	local used bad
	used=$(awk '{ s = ($2 ~ /^[0-9]/) ? $3 : $2; sub(/\(.*/, "", s); if (s ~ /^[a-z_0-9]+$/) print s }' \
		"$trace" "$trace.reload" | sort -u)
	[ "$(echo "$used" | wc -l)" -gt 20 ]
	# The spool's calls were traced: the workers' writes, syncs and hand-over
	# and the master's recovery.
	for l in pwritev fdatasync fsync flock rename; do
		grep -qE "^$l(at2?)?\$" <<<"$used" || fail "no $l in the trace: did the daemon spool?"
	done
	bad=$(forbidden "$used")
	[ -z "$bad" ] || fail "system calls the unit forbids: $bad"
}

# The forwarder is the only process with threads (libnats'), and the test
# above runs none: trace the installed daemon forwarding to a JetStream
# server with ack_after = stream (every result-0 ack waited for its PubAck)
# and check every call the forwarder and its threads made against the
# unit's filter too. Its own spool, so that /var/lib/submitd/spool keeps
# the segments the tests after this one look for.
@test "deb: the NATS forwarder and libnats' threads make only system calls the unit's SystemCallFilter allows" {
	command -v strace >/dev/null || fail "strace is not installed (tools/deps.sh installs it)"
	command -v nats-server >/dev/null || fail "nats-server is not installed (tools/deps.sh installs it)"
	local conf=$BATS_TEST_TMPDIR/installed.conf trace=$BATS_TEST_TMPDIR/strace log=$BATS_TEST_TMPDIR/submitd.out
	local allow=() deny=() l job port nport fwd
	DEB_NATS_SPOOL=$(mktemp -d /var/lib/submitd/trace-spool.XXXXXX)
	chown _submitd:_submitd "$DEB_NATS_SPOOL"
	chmod 750 "$DEB_NATS_SPOOL"
	nport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	timeout 300 nats-server -js -sd "$BATS_TEST_TMPDIR/js" -a 127.0.0.1 -p "$nport" \
		>"$BATS_TEST_TMPDIR/nats.log" 2>&1 3>&- 4>&- &
	DEB_NATS_PID=$!
	wait_for -t 20 grep -q 'Server is ready' "$BATS_TEST_TMPDIR/nats.log"
	installed_conf "$conf"
	conf_set "$conf" pid_file "\"$BATS_TEST_TMPDIR/submitd.pid\""
	conf_set "$conf" spool_dir "\"$DEB_NATS_SPOOL\""
	# A name: the forwarder resolves it (nsswitch, /etc/hosts) as a real one.
	conf_set "$conf" nats_servers "{\"nats://localhost:$nport\"}"
	conf_set "$conf" nats_stream '"TRACE"'
	conf_set "$conf" nats_create_stream 1
	conf_set "$conf" ack_after stream
	unit_filter

	traced_start 120
	DEB_TRACE_PID=$(cat "$BATS_TEST_TMPDIR/submitd.pid")
	wait_for -t 30 sd_metric_is submitd_nats_state '{state="connected"}' 1
	fwd=$(pgrep -P "$DEB_TRACE_PID" -x submitd-fwd)
	[ "$(ps -o user= -p "$fwd" | tr -d ' ')" = _submitd ]
	run timeout 60 /usr/bin/submit-bench -n 500 -c 2 -s 100 --ack-log "$BATS_TEST_TMPDIR/acks" "127.0.0.1:$port"
	assert_success
	[ "$(awk '$3 == 0' "$BATS_TEST_TMPDIR/acks" | wc -l)" -eq 500 ]
	run sd_metric submitd_nats_acked_total
	[ "$output" -ge 500 ]
	kill -TERM "$DEB_TRACE_PID"
	wait_for -t 20 _sd_all_gone "$DEB_TRACE_PID"
	DEB_TRACE_PID=
	wait "$job"

	# The forwarder's calls: its threads started, it connected to NATS.
	local ftrace=$BATS_TEST_TMPDIR/strace.fwd tids used bad
	tids=$(awk -v p="$fwd" '$1 == p && /clone3?(\(| resumed)/ && $NF ~ /^[0-9]+$/ { print $NF }' "$trace" | sort -u)
	[ -n "$tids" ] || fail "no thread started by the forwarder $fwd"
	awk -v p="$fwd $tids" 'BEGIN { n = split(p, a, " "); for (i = 1; i <= n; i++) t[a[i]] = 1 } t[$1]' \
		"$trace" >"$ftrace"
	grep -q "connect(.*htons($nport)" "$ftrace" || fail "the forwarder did not connect to NATS in the trace"
	used=$(awk '{ s = ($2 ~ /^[0-9]/) ? $3 : $2; sub(/\(.*/, "", s); if (s ~ /^[a-z_0-9]+$/) print s }' \
		"$trace" | sort -u)
	bad=$(forbidden "$used")
	[ -z "$bad" ] || fail "system calls the unit forbids: $bad"
}

# systemd is not PID 1 here: boot a Debian 12 container with systemd and run
# debian/tests/service there (the first run caches a debootstrap base).
@test "deb: the unit starts, notifies, reloads and stops under systemd (nspawn)" {
	# systemd-nspawn cannot boot a container from inside a chroot.
	! ischroot 2>/dev/null || skip "running inside a chroot: systemd-nspawn needs the real root"
	run timeout 600 "$DEB_TOP/debian/tests/nspawn-run" "$(deb_file)"
	assert_success
	assert_output --partial 'PASS: submitd.service'
	# The spool was checked under the unit, while serving and after a restart.
	[ "$(grep -c '^spool-check: 4000 acked Submits on 4 connections' <<<"$output")" -eq 2 ]
	# The forwarder under the unit: every ack (ack_after = stream) in the
	# stream, once, byte for byte, and the spool drained into it.
	grep -Eq '^nats-check: 2000 acked Submits and [0-9]+ earlier records forwarded by submitd.service into stream SUB' <<<"$output"
}

# The spool's records are state: dpkg --remove keeps them (with the config),
# only --purge deletes /var/lib/submitd (debian/submitd.postrm).
@test "deb: dpkg --remove keeps the spool; dpkg --purge removes binaries, unit, man pages, config and spool" {
	local segs
	segs=$(find /var/lib/submitd/spool -name '*.seg' | sort)
	[ -n "$segs" ]
	run dpkg --remove submitd
	assert_success
	[ ! -e /usr/sbin/submitd ]
	[ "$(find /var/lib/submitd/spool -name '*.seg' | sort)" = "$segs" ]
	run dpkg-query -W -f='${Status}' submitd
	assert_output --regexp ' config-files$'
	run dpkg --purge submitd
	assert_success
	local f
	for f in /usr/sbin/submitd /usr/bin/submit-bench /usr/bin/submit-spool /lib/systemd/system/submitd.service \
		/etc/systemd/system/multi-user.target.wants/submitd.service \
		/usr/share/man/man8/submitd.8.gz /usr/share/man/man5/submitd.conf.5.gz \
		/usr/share/man/man1/submit-bench.1.gz /usr/share/man/man1/submit-spool.1.gz \
		/usr/share/doc/submitd /etc/submitd \
		/var/log/submitd /run/submitd /var/lib/submitd /usr/lib/tmpfiles.d/submitd.conf; do
		[ ! -e "$f" ] || {
			echo "left after purge: $f"
			false
		}
	done
	run dpkg-query -W -f='${Status}' submitd
	refute_output --regexp ' (installed|config-files)$'
}
