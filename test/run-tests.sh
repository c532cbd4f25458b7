#!/bin/bash
# Run the unit tests (plain and sanitizer builds) and the bats suites, print
# one TAP stream numbered across all of them, and end with the line
# "N passed, N failed[, N skipped]". Exit 1 if anything failed or crashed.
#
#   test/run-tests.sh [--unit] [--asan] [--bats]   (default: all three)
set -u
cd "$(dirname "$0")/.." || exit 1

BUILD=${BUILD:-build}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
BATS_TIMEOUT=${BATS_TIMEOUT:-1800}

do_unit=0 do_asan=0 do_bats=0
for a in "$@"; do
	case $a in
	--unit) do_unit=1 ;;
	--asan) do_asan=1 ;;
	--bats) do_bats=1 ;;
	*) echo "usage: $0 [--unit] [--asan] [--bats]" >&2; exit 2 ;;
	esac
done
[ $# -eq 0 ] && do_unit=1 do_asan=1 do_bats=1

state=$(mktemp)
trap 'rm -f "$state"' EXIT
echo "0 0 0 0" >"$state" # tests passed failed skipped

# Renumber one TAP stream into the global one. Lines that are not TAP
# (sanitizer reports, stray output) become comments so they stay visible.
# A source that exits non-zero without a failing test, or whose plan does not
# match its tests, is a failure of its own.
tap_filter() {
	local name=$1 rc_file=$2
	awk -v name="$name" -v state="$state" -v rc_file="$rc_file" '
	BEGIN { getline s < state; split(s, c, " "); n = c[1]; pass = c[2]; fail = c[3]; skip = c[4]
		plan = -1; seen = 0; failed_here = 0 }
	/^(not )?ok( |$)/ {
		bad = ($0 ~ /^not ok/)
		line = $0
		sub(/^(not )?ok *[0-9]* *(- )?/, "", line)
		n++; seen++
		directive = (line ~ /# *[Ss][Kk][Ii][Pp]/) ? "skip" : (line ~ /# *[Tt][Oo][Dd][Oo]/) ? "todo" : ""
		if (directive == "skip") skip++
		else if (bad && directive != "todo") { fail++; failed_here++ }
		else pass++
		printf "%s %d - %s: %s\n", bad ? "not ok" : "ok", n, name, line
		fflush(); next
	}
	/^1\.\.[0-9]+/ { plan = substr($1, 4) + 0; next }
	/^#/ { print; fflush(); next }
	/^[ \t]*$/ { next }
	{ print "# " $0; fflush() }
	END {
		getline rc < rc_file
		why = ""
		if (rc != 0 && failed_here == 0) why = "exited with status " rc
		else if (plan < 0) why = "no plan printed"
		else if (plan != seen) why = "planned " plan " tests, ran " seen
		if (why != "") { n++; fail++; printf "not ok %d - %s: %s\n", n, name, why }
		print n, pass, fail, skip > state
	}'
}

run_tap() {
	local name=$1
	shift
	local rc_file
	rc_file=$(mktemp)
	echo 0 >"$rc_file"
	{ "$@" 2>&1; echo $? >"$rc_file"; } | tap_filter "$name" "$rc_file"
	rm -f "$rc_file"
}

run_units() {
	local dir=$1 label=$2 b found=0
	for b in "$dir"/test_*; do
		[ -x "$b" ] || continue
		found=1
		run_tap "$label$(basename "$b")" timeout "$UNIT_TIMEOUT" "$b"
	done
	if [ $found -eq 0 ]; then
		run_tap "$label" sh -c 'echo "not ok 1 - no unit test binaries in '"$dir"' (make unit-build unit-asan-build)"; echo 1..1'
	fi
}

[ $do_unit -eq 1 ] && run_units "$BUILD/test" ""
if [ $do_asan -eq 1 ]; then
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
	run_units "$BUILD/asan/test" "asan/"
fi
if [ $do_bats -eq 1 ]; then
	# timeout signals its whole process group: a hung suite goes with what it started.
	run_tap bats timeout -k 10 "$BATS_TIMEOUT" bats --tap test/
	# The core suites again, against the ASan+UBSan build of the daemon.
	run_tap asan-bats timeout -k 10 "$BATS_TIMEOUT" test/fuzz/run-asan.sh \
		test/protocol.bats test/limits.bats test/workers.bats test/tls.bats test/proxy.bats test/auth.bats \
		test/ratelimit.bats
fi

read -r n pass fail skip <"$state"
echo "1..$n"
if [ "$skip" -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ] && [ "$n" -gt 0 ]
