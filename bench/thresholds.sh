#!/bin/bash
# make bench, second part: the performance thresholds that make test leaves
# out (bench/thresholds.bats), each printed as "threshold: WHAT: VALUE (need
# BOUND)" with its TAP line. Exit status 1 if any is missed.
#
# Usage: bench/thresholds.sh [BATS OPTIONS], e.g. -f 'respawn' for one.
set -u
cd "$(dirname "$0")/.." || exit 1
for b in build/submitd build/submit-bench; do
	[ -x "$b" ] || {
		echo "bench/thresholds.sh: $b is not built (make all tools)" >&2
		exit 1
	}
done
ulimit -n "$(ulimit -Hn)"
exec bats --tap "$@" bench/thresholds.bats
