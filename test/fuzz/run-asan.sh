#!/bin/bash
# Run bats suites against the ASan+UBSan build of submitd and fail if any
# process of it reported an error, even one the suites did not notice (a
# worker that aborts is respawned, so a test may pass over it).
#
#   test/fuzz/run-asan.sh SUITE.bats...
set -u
cd "$(dirname "$0")/../.." || exit 1

BUILD=${BUILD:-build}
bin=$PWD/$BUILD/asan/submitd
[ -x "$bin" ] || {
	echo "run-asan: $bin not built (make $BUILD/asan/submitd)" >&2
	exit 1
}
logs=$PWD/$BUILD/asan/logs
rm -rf "$logs"
mkdir -p "$logs"

# Workers leave with exit() and keep their pools: leak reports would be noise.
export SD_BIN=$bin SUBMITD_BIN=$bin
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=0:log_path=$logs/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"

echo "# submitd under test: $bin"
bats --tap "$@"
rc=$?

reports=$(grep -l -E 'ERROR: AddressSanitizer|runtime error|ERROR: LeakSanitizer' "$logs"/* 2>/dev/null)
if [ -n "$reports" ]; then
	for f in $reports; do
		echo "# sanitizer report $f:"
		sed 's/^/#   /' "$f" | head -60
	done
	echo "not ok - sanitizer reports in $logs"
	rc=1
fi
exit $rc
