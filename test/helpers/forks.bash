# A pids cgroup (v1) to hold a master's forks back: a new generation cannot
# become ready, and a reload stays pending, until the limit is lifted. Load
# after helpers/common; call forks_release in teardown, after sd_stop.

# hold_forks PID: put PID alone into a new pids cgroup with pids.max 1, its
# path in PIDS_CG (`echo max >"$PIDS_CG/pids.max"` lets the forks through).
# Fails unless root with a writable pids hierarchy (v1).
PIDS_CG=
hold_forks() {
	[ "$(id -u)" = 0 ] || return 1
	[ -w /sys/fs/cgroup/pids/cgroup.procs ] || return 1
	PIDS_CG=/sys/fs/cgroup/pids/submitd-test-$$-$BATS_TEST_NUMBER
	mkdir "$PIDS_CG" && echo 1 >"$PIDS_CG/pids.max" && echo "$1" >"$PIDS_CG/cgroup.procs"
}

# forks_release: lift the limit and remove the cgroup, if a test made one.
forks_release() {
	if [ -n "${PIDS_CG:-}" ] && [ -d "$PIDS_CG" ]; then
		echo max >"$PIDS_CG/pids.max" 2>/dev/null || true
		rmdir "$PIDS_CG" || true
	fi
}
