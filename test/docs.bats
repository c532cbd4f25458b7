#!/usr/bin/env bats
# The documentation against the code and the package: the signals submitd(8)
# lists, the pid file the docs name, and what the docs say a reload does to
# backlog.

load helpers/common

teardown() {
	sd_stop
}

# master_signals: the signals the master's signalfd takes (src/master.c), SIGCHLD aside.
master_signals() {
	sed -n 's/^\tsigaddset(&set, \(SIG[A-Z0-9]*\));$/\1/p' "$SD_ROOT/src/master.c" |
		grep -vx SIGCHLD | sort -u | grep .
}

# man_signals: the signals that head an entry (.TP) of submitd(8)'s SIGNALS section.
man_signals() {
	sed -n '/^\.SH SIGNALS/,/^\.SH /p' "$SD_ROOT/man/submitd.8" |
		awk 'tp { print } { tp = ($0 == ".TP") }' | grep -o 'SIG[A-Z0-9]*' | sort -u
}

@test "docs: submitd(8) SIGNALS lists every signal the master handles" {
	run master_signals
	assert_success
	local want=$output
	# HUP INT QUIT TERM TTIN TTOU USR1 USR2 at least: the parse found them.
	[ "$(wc -l <<<"$want")" -ge 8 ]
	run man_signals
	assert_output "$want"
}

@test "docs: the pid file the docs name is the one the package configures" {
	local pkg
	pkg=$(sed -n 's/.*set_opt,pid_file,"\([^"]*\)").*/\1/p' "$SD_ROOT/debian/rules")
	assert_equal "$pkg" /run/submitd/submitd.pid
	run grep -c "$pkg" "$SD_ROOT/docs/OPERATIONS.md" "$SD_ROOT/man/submitd.8" "$SD_ROOT/man/submitd.conf.5"
	refute_line --regexp ':0$'
	# No other pid file under /run anywhere in the docs.
	run bash -c "grep -rhoE '/run/[A-Za-z0-9_./-]*\\.pid' '$SD_ROOT/docs' '$SD_ROOT/man' '$SD_ROOT/README.md' '$SD_ROOT/etc' | sort -u"
	assert_output "$pkg"
}

# dump_options: the option names `submitd -T` prints for the shipped configuration.
dump_options() {
	"$SD_BIN" -T -q -c "$SD_ROOT/etc/submitd.conf" | sed -n 's/^\([a-z_0-9]*\) = .*/\1/p' | grep .
}

@test "docs: every option submitd -T prints is in etc/submitd.conf and submitd.conf(5)" {
	local opts o missing=
	opts=$(dump_options)
	[ "$(wc -l <<<"$opts")" -ge 40 ]
	for o in $opts; do
		grep -Eq "^#? *$o = " "$SD_ROOT/etc/submitd.conf" || missing="$missing etc:$o"
		sed -n '/^\.SH OPTIONS/,/^\.SH /p' "$SD_ROOT/man/submitd.conf.5" | grep -qw -- "$o" ||
			missing="$missing man:$o"
	done
	[ -z "$missing" ] || fail "options not documented:$missing"
}

# backlog_of PORT: the accept queue length of the listener on 127.0.0.1:PORT (ss: Send-Q).
backlog_of() {
	ss -Hltn "sport = :$1" | awk '$4 == "127.0.0.1:'"$1"'" { print $3 }'
}

@test "docs: a reload applies backlog only to addresses it opens, as README and OPERATIONS.md say" {
	grep -q 'backlog. only for newly bound addresses' "$SD_ROOT/README.md"
	grep -q '^| `backlog` | only for addresses opened by this reload' "$SD_ROOT/docs/OPERATIONS.md"
	local port1 port2
	read -r port1 port2 < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0))
b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
	sd_start 'backlog = 100' "pid_file = \"$BATS_TEST_TMPDIR/submitd.pid\"" "listen = {\"127.0.0.1:$port1\"}"
	assert_equal "$SD_PORT" "$port1"
	run backlog_of "$SD_PORT"
	assert_output 100
	# Same address, another backlog, one more address.
	sed -i "s/^backlog = 100\$/backlog = 200/; s/^listen = .*/listen = {\"127.0.0.1:$SD_PORT\", \"127.0.0.1:$port2\"}/" "$SD_CONF"
	run timeout 30 "$SD_BIN" -c "$SD_CONF" -s reload
	assert_success
	wait_for eval '[ -n "$(backlog_of "$port2")" ]'
	run backlog_of "$SD_PORT"
	assert_output 100
	run backlog_of "$port2"
	assert_output 200
}

# DESIGN.md's module tables, as tools/check-layers.sh reads them.
design_modules() {
	awk -F'|' '/^## Modules/ {on = 1} /^## / && !/^## Modules/ {on = 0}
		on && $2 ~ /^ *[0-9]+ *$/ { gsub(/ /, "", $3); print $3 }' "$SD_ROOT/docs/DESIGN.md"
}

@test "docs: DESIGN.md's tables list every module in src/, its diagram every kind of process the master forks" {
	local f m missing=
	local listed
	listed=$(design_modules)
	[ -n "$listed" ]
	for f in "$SD_ROOT"/src/*.[ch] "$SD_ROOT"/src/bench/*.[ch]; do
		m=${f#"$SD_ROOT"/src/}
		m=${m%.[ch]}
		grep -qxF -- "$m" <<<"$listed" || missing="$missing $m"
	done
	[ -z "$missing" ] || fail "modules missing from docs/DESIGN.md's tables:$missing"
	# Process kinds: the titles the processes give themselves (proc_title_set).
	local kinds diagram k
	kinds=$(grep -ho 'proc_title_set("[a-z]*' "$SD_ROOT"/src/*.c | sed 's/.*("//' | sort -u)
	[ "$(wc -l <<<"$kinds")" -ge 3 ]
	diagram=$(awk '/^## Processes/ {on = 1} on && /^```/ {n++; next} on && n == 1' "$SD_ROOT/docs/DESIGN.md")
	[ -n "$diagram" ]
	for k in $kinds; do
		grep -qw -- "$k" <<<"$diagram" || missing="$missing $k"
	done
	[ -z "$missing" ] || fail "process kinds missing from docs/DESIGN.md's diagram:$missing"
}
