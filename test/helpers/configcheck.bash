# -t on a config file of the test's own: shared by configcheck.bats and
# pidfile.bats. Load after helpers/common.

# conf LINES...: write exactly these lines to $CONF.
conf() {
	CONF=$BATS_TEST_TMPDIR/t.conf
	printf '%s\n' "$@" >"$CONF"
}

# check_fails REGEX: -t on $CONF exits 1 and stderr matches REGEX.
check_fails() {
	run --separate-stderr "$SD_BIN" -t -c "$CONF"
	echo "status $status, stderr: $stderr"
	assert_equal "$status" 1
	[[ $stderr =~ $1 ]] || {
		echo "want: $1"
		return 1
	}
	[[ $output != *successful* ]]
}
