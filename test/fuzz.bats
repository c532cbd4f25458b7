#!/usr/bin/env bats
# The libFuzzer targets: the seed corpus replays cleanly, and each target
# runs 30 s of fresh fuzzing without a crash (make fuzz-smoke).

load helpers/common

setup_file() {
	cd "$SD_ROOT" || return 1
	make -s fuzz-build >"$BATS_FILE_TMPDIR/build.log" 2>&1 || {
		cat "$BATS_FILE_TMPDIR/build.log" >&2
		return 1
	}
}

@test "fuzz: the seed corpus replays without a finding" {
	local t
	for t in proto conn; do
		run -0 "$SD_ROOT/build/fuzz/fuzz_$t" "$SD_ROOT"/test/fuzz/corpus/$t/*
		refute_output --partial "ERROR:"
	done
}

@test "fuzz: make fuzz-smoke runs every target 30 s without a crash" {
	cd "$SD_ROOT"
	run -0 timeout 180 make -s fuzz-smoke
	refute_output --partial "ERROR:"
	refute_output --partial "runtime error"
	# One "Done N runs" per target: each really ran.
	[ "$(grep -c '^Done [0-9]* runs' <<<"$output")" -eq 3 ]
}
