#!/usr/bin/env bats
# submit-spool: ls, cat (and --follow), verify, take, on segments written by
# the spool writer (build/test/spool-gen, `make tools`). Record g of
# spool-gen is 64 header bytes plus: "rec-g" (g % 4 = 0 or 1), `say "hi"\n\tg`
# (g % 4 = 2), or 6 binary bytes (g % 4 = 3); so records 0..3 sit at offsets
# 64, 133, 202, 277 and the segment ends at 347.

load helpers/common

SPOOL_TOOL=$SD_ROOT/build/submit-spool
SPOOL_GEN=$SD_ROOT/build/test/spool-gen

setup() {
	[ -x "$SPOOL_TOOL" ] || fail "build/submit-spool is missing: make all"
	[ -x "$SPOOL_GEN" ] || fail "build/test/spool-gen is missing: make unit-build"
	SP=$BATS_TEST_TMPDIR/spool
	PIDS=()
}

teardown() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}

spool() {
	"$SPOOL_TOOL" -d "$SP" "$@"
}

# poke FILE OFFSET HEXBYTE: overwrite one byte.
poke() {
	printf "\\x$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# has_lines FILE N: FILE has N lines (for wait_for).
has_lines() {
	[ -e "$1" ] || return 1
	[ "$(wc -l <"$1")" -eq "$2" ]
}

is_locked() {
	if flock -n "$1" true; then return 1; fi
}

# One sealed segment of 4 records in ready/; sets SEG (its path) and NAME.
one_segment() {
	NAME=$("$SPOOL_GEN" -n 4 "$SP")
	SEG=$SP/ready/$NAME
	[ -f "$SEG" ]
	[ "$(stat -c %s "$SEG")" -eq 347 ]
}

@test "verify: a clean spool exits 0" {
	"$SPOOL_GEN" -n 5 -s 3 "$SP" >/dev/null
	"$SPOOL_GEN" -w 2 -n 2 -a "$SP" >/dev/null
	run spool verify
	assert_success
	# 4 file headers, 17 record headers, payloads of g 0..14 (106 bytes) and 0..1 (10).
	assert_output "4 segments, 17 records, $((4 * 64 + 17 * 64 + 106 + 10)) bytes: ok"
}

@test "verify: a bad CRC exits 1 naming file and offset" {
	one_segment
	poke "$SEG" 150 7f # conn_seq of record 1
	run spool verify
	assert_failure 1
	assert_line "$SEG: offset 133: bad CRC"
	cp "$SEG" "$BATS_TEST_TMPDIR/x.seg"
	"$SPOOL_GEN" -n 1 "$SP" >/dev/null
	run spool verify
	assert_failure 1
	assert_output --partial "2 segments, 2 records"
	assert_output --partial "1 corrupt"
}

@test "verify: a bad payload byte exits 1 at its record" {
	one_segment
	poke "$SEG" 270 00 # inside the payload of record 2
	run spool verify
	assert_failure 1
	assert_line "$SEG: offset 202: bad CRC"
}

@test "verify: a bad length exits 1 (too small, too large, past the end)" {
	one_segment
	cp "$SEG" "$BATS_TEST_TMPDIR/orig"
	poke "$SEG" 137 20 # rec_len 32 < 64
	run spool verify
	assert_failure 1
	assert_line "$SEG: offset 133: bad record length"
	cp "$BATS_TEST_TMPDIR/orig" "$SEG"
	poke "$SEG" 140 7f # rec_len > 64 MiB + 64
	run spool verify
	assert_failure 1
	assert_line "$SEG: offset 133: bad record length"
	cp "$BATS_TEST_TMPDIR/orig" "$SEG"
	poke "$SEG" 139 01 # in range, past the end of the file, whole records after it
	run spool verify
	assert_failure 1
	assert_line --regexp "^$SEG: offset 133: bad record length"
}

@test "verify: a truncated record in a sealed segment exits 1" {
	one_segment
	truncate -s 300 "$SEG"
	run spool verify
	assert_failure 1
	assert_line "$SEG: offset 277: truncated record"
	truncate -s 100 "$SEG"
	run spool verify
	assert_failure 1
	assert_line "$SEG: offset 64: truncated record"
}

@test "verify: a bad file header exits 1 at offset 0" {
	one_segment
	cp "$SEG" "$BATS_TEST_TMPDIR/orig"
	poke "$SEG" 20 09 # generation: the header CRC no longer matches
	run spool verify
	assert_failure 1
	assert_line "$SEG: offset 0: bad file header"
	cp "$BATS_TEST_TMPDIR/orig" "$SEG"
	poke "$SEG" 0 58
	run spool verify
	assert_failure 1
	assert_line "$SEG: offset 0: bad magic"
	truncate -s 10 "$SEG"
	run spool verify
	assert_failure 1
	assert_line "$SEG: offset 0: shorter than the file header"
}

@test "verify: a torn tail in active/ is a write in progress, not corruption" {
	NAME=$("$SPOOL_GEN" -n 4 -a "$SP")
	truncate -s 300 "$SP/active/$NAME"
	run spool verify
	assert_success
	assert_output "1 segments, 3 records, 300 bytes: ok"
	run spool ls
	assert_success
	assert_line --regexp "^active +3 +300 .* $NAME  incomplete tail at offset 277$"
	# The same file sealed is corrupt: verify of the file itself says so.
	mv "$SP/active/$NAME" "$SP/ready/$NAME"
	run spool verify "$SP/ready/$NAME"
	assert_failure 1
	assert_line "$SP/ready/$NAME: offset 277: truncated record"
}

@test "verify: quarantine/ is counted, not checked; a quarantined file is checked by name" {
	one_segment
	poke "$SEG" 270 00
	mv "$SEG" "$SP/quarantine/$NAME"
	run spool verify
	assert_success
	assert_output "0 segments, 0 records, 0 bytes: ok (1 in quarantine/, not checked)"
	run spool verify "$SP/quarantine/$NAME"
	assert_failure 1
	assert_line "$SP/quarantine/$NAME: offset 202: bad CRC"
}

@test "verify, ls and cat on a spool being written: no false corruption" {
	"$SPOOL_GEN" -n 60000 -s 8 "$SP" >/dev/null &
	local gen=$! runs=0
	PIDS+=("$gen")
	# suspect/ is the last of the five directories the writer makes.
	wait_for test -d "$SP/suspect"
	while kill -0 "$gen" 2>/dev/null; do
		run spool verify
		assert_success
		spool ls >/dev/null
		if [ $((runs % 8)) -eq 0 ]; then
			spool cat "$SP/active" >/dev/null 2>"$BATS_TEST_TMPDIR/cat.err"
			[ ! -s "$BATS_TEST_TMPDIR/cat.err" ]
		fi
		runs=$((runs + 1))
	done
	wait "$gen"
	run spool verify
	assert_success
	assert_output --regexp '^8 segments, 480000 records, [0-9]+ bytes: ok$'
	echo "# $runs rounds while writing" >&3
}

@test "ls: state, records, bytes and time range of each segment" {
	one_segment
	local active
	active=$("$SPOOL_GEN" -g 4 -n 2 -a "$SP")
	run spool ls
	assert_success
	assert_line --index 0 --regexp '^STATE +RECORDS +BYTES +FIRST +LAST +SEGMENT$'
	assert_line --index 1 "ready             4          347 2026-12-04T16:00:00.000Z 2026-12-04T16:00:00.000Z $NAME"
	assert_line --index 2 "active            2          202 2026-12-04T16:00:00.000Z 2026-12-04T16:00:00.000Z $active"
	[ "${#lines[@]}" -eq 3 ]
	mkdir -p "$SP/taken" && mv "$SEG" "$SP/taken/"
	run spool ls
	assert_line --index 1 --regexp "^taken +4 +347 .* $NAME$"
}

@test "cat: records of a known segment as JSON lines" {
	one_segment
	run spool cat "$SEG"
	assert_success
	local p="{\"segment\":\"$NAME\",\"offset\""
	assert_line --index 0 "$p:64,\"ts\":\"2026-12-04T16:00:00.000000000Z\",\"ts_ns\":1796400000000000000,\"worker\":1,\"conn_seq\":1,\"addr\":\"127.0.0.1\",\"port\":40000,\"submit_id\":\"0000000000000000\",\"len\":5,\"payload_encoding\":\"text\",\"payload\":\"rec-0\"}"
	assert_line --index 1 "$p:133,\"ts\":\"2026-12-04T16:00:00.000001000Z\",\"ts_ns\":1796400000000001000,\"worker\":1,\"conn_seq\":1,\"addr\":\"127.0.0.1\",\"port\":40001,\"conn_id\":\"63306e6e00000001\",\"submit_id\":\"0000000000000001\",\"len\":5,\"payload_encoding\":\"text\",\"payload\":\"rec-1\"}"
	assert_line --index 2 "$p:202,\"ts\":\"2026-12-04T16:00:00.000002000Z\",\"ts_ns\":1796400000000002000,\"worker\":1,\"conn_seq\":1,\"addr\":\"::1\",\"port\":40002,\"submit_id\":\"0000000000000002\",\"len\":11,\"payload_encoding\":\"text\",\"payload\":\"say \\\"hi\\\"\\n\\t2\"}"
	assert_line --index 3 "$p:277,\"ts\":\"2026-12-04T16:00:00.000003000Z\",\"ts_ns\":1796400000000003000,\"worker\":1,\"conn_seq\":1,\"addr\":\"127.0.0.1\",\"port\":40003,\"conn_id\":\"63306e6e00000003\",\"submit_id\":\"0000000000000003\",\"len\":6,\"payload_encoding\":\"base64\",\"payload\":\"AAEC//4D\"}"
	[ "${#lines[@]}" -eq 4 ]
	# Valid JSON, and the payloads decode to the bytes written.
	spool cat "$SEG" | jq -e . >/dev/null
	[ "$(spool cat "$SEG" | jq -r 'select(.offset == 202) | .payload')" = "$(printf 'say "hi"\n\t2')" ]
	[ "$(spool cat "$SEG" | jq -r 'select(.offset == 277) | .payload' | base64 -d | od -An -tx1 | tr -d ' ')" = 000102fffe03 ]
	# The spool and the segment's directory give the same records.
	diff <(spool cat) <(spool cat "$SEG")
	diff <(spool cat "$SP/ready") <(spool cat "$SEG")
}

@test "format versions: version 1 segments (before identities) and version 2 ones with an identity, side by side: ls, verify, cat, take" {
	local v1 v2 v1a
	v1=$("$SPOOL_GEN" -1 -n 4 "$SP")
	v2=$("$SPOOL_GEN" -I device-7@fleet -g 4 -n 4 "$SP")
	v1a=$("$SPOOL_GEN" -1 -g 8 -n 2 -a "$SP")
	# Version 1 records are as before (the segment ends at 347); each of version 2 has 14 identity bytes more.
	[ "$(od -An -tu2 -j8 -N2 "$SP/ready/$v1" | tr -d ' ')" = 1 ]
	[ "$(od -An -tu2 -j8 -N2 "$SP/ready/$v2" | tr -d ' ')" = 2 ]
	[ "$(stat -c %s "$SP/ready/$v1")" -eq 347 ]
	[ "$(stat -c %s "$SP/ready/$v2")" -eq $((347 + 4 * 14)) ]
	run spool verify
	assert_success
	assert_output "3 segments, 10 records, $((3 * 64 + 10 * 64 + 4 * 14 + 27 + 27 + 10)) bytes: ok"
	run spool ls
	assert_success
	assert_line --partial "ready             4          347"
	assert_line --partial "ready             4          403"
	assert_line --partial "active            2"
	run spool cat
	assert_success
	[ "${#lines[@]}" -eq 10 ]
	assert_equal "$(spool cat | jq -r '.identity // "-"' | paste -sd' ')" '- - - - device-7@fleet device-7@fleet device-7@fleet device-7@fleet - -'
	# The version 2 record is the version 1 record with the identity after the conn_id.
	assert_line --index 5 "{\"segment\":\"$v2\",\"offset\":147,\"ts\":\"2026-12-04T16:00:00.000005000Z\",\"ts_ns\":1796400000000005000,\"worker\":1,\"conn_seq\":2,\"addr\":\"::1\",\"port\":40005,\"conn_id\":\"63306e6e00000005\",\"identity\":\"device-7@fleet\",\"submit_id\":\"0000000000000005\",\"len\":5,\"payload_encoding\":\"text\",\"payload\":\"rec-5\"}"
	run spool take
	assert_success
	[ "${#lines[@]}" -eq 4 ]
	refute_output --partial identity
	run spool take
	assert_success
	[ "$(grep -c '"identity":"device-7@fleet"' <<<"$output")" -eq 4 ]
	[ ! -e "$SP/ready/$v1" ]
	[ ! -e "$SP/ready/$v2" ]
	[ -e "$SP/active/$v1a" ]
}

@test "cat: a spool in creation order across states; a corrupt sealed segment exits 1 after its prefix" {
	"$SPOOL_GEN" -n 2 -s 3 "$SP" >/dev/null
	"$SPOOL_GEN" -g 6 -n 2 -a "$SP" >/dev/null
	mv "$(ls -d "$SP"/ready/* | head -1)" "$SP/taken/"
	run spool cat
	assert_success
	[ "$(printf '%s\n' "$output" | jq -r .submit_id | paste -sd,)" = 0000000000000000,0000000000000001,0000000000000002,0000000000000003,0000000000000004,0000000000000005,0000000000000006,0000000000000007 ]
	local second
	second=$(ls "$SP"/ready/* | head -1)
	poke "$second" 150 7f
	run --separate-stderr spool cat
	assert_failure 1
	[ "${#lines[@]}" -eq 7 ]
	[[ $stderr == *"$second: offset 139: bad CRC"* ]] || fail "stderr: $stderr"
}

@test "cat --follow: tails the active segment through sealing and into new segments, stops on SIGTERM" {
	local out=$BATS_TEST_TMPDIR/follow.out
	coproc GEN { exec "$SPOOL_GEN" -i "$SP"; }
	PIDS+=("$GEN_PID")
	read -r -u "${GEN[0]}" ok first
	[ "$ok" = ok ]
	"$SPOOL_TOOL" -d "$SP" cat --follow >"$out" 2>"$BATS_TEST_TMPDIR/follow.err" &
	local fpid=$!
	PIDS+=("$fpid")
	echo "w 3" >&"${GEN[1]}"
	read -r -u "${GEN[0]}" ok _
	wait_for -t 10 has_lines "$out" 3
	echo s >&"${GEN[1]}"
	read -r -u "${GEN[0]}" ok second
	echo "w 2" >&"${GEN[1]}"
	read -r -u "${GEN[0]}" ok _
	wait_for -t 10 has_lines "$out" 5
	echo s >&"${GEN[1]}"
	read -r -u "${GEN[0]}" ok third
	echo "w 4" >&"${GEN[1]}"
	read -r -u "${GEN[0]}" ok _
	wait_for -t 10 has_lines "$out" 9
	kill -TERM "$fpid"
	local rc=0
	wait "$fpid" || rc=$?
	[ "$rc" -eq 0 ] || fail "follow exited $rc: $(cat "$BATS_TEST_TMPDIR/follow.err")"
	[ ! -s "$BATS_TEST_TMPDIR/follow.err" ]
	# Each record once, in order, under the segment it is in.
	[ "$(jq -r .submit_id "$out" | paste -sd,)" = "$(for i in 0 1 2 3 4 5 6 7 8; do printf '%016x\n' "$i"; done | paste -sd,)" ]
	[ "$(jq -r .segment "$out" | uniq -c | awk '{print $1 "-" $2}' | paste -sd,)" = "3-$first,2-$second,4-$third" ]
	echo q >&"${GEN[1]}"
}

@test "take: nothing ready exits 3; a segment is printed, then deleted" {
	mkdir -p "$SP"/{active,ready,taken,quarantine,suspect}
	run spool take
	assert_failure 3
	[ -z "$output" ]
	one_segment
	local want
	want=$(spool cat "$SEG")
	run spool take
	assert_success
	assert_output "$want"
	[ ! -e "$SEG" ]
	[ ! -e "$SP/taken/$NAME" ]
	run spool take
	assert_failure 3
}

@test "take --output: the oldest ready segment goes to the file; an active one is never taken" {
	local a b
	a=$("$SPOOL_GEN" -n 3 "$SP")
	b=$("$SPOOL_GEN" -g 3 -n 2 "$SP")
	"$SPOOL_GEN" -g 5 -n 2 -a "$SP" >/dev/null
	run spool take --output "$BATS_TEST_TMPDIR/t1"
	assert_success
	[ -z "$output" ]
	[ "$(jq -r .segment "$BATS_TEST_TMPDIR/t1" | sort -u)" = "$a" ]
	[ "$(wc -l <"$BATS_TEST_TMPDIR/t1")" -eq 3 ]
	run spool take -o "$BATS_TEST_TMPDIR/t2"
	assert_success
	[ "$(jq -r .segment "$BATS_TEST_TMPDIR/t2" | sort -u)" = "$b" ]
	run spool take -o "$BATS_TEST_TMPDIR/t3"
	assert_failure 3
	[ "$(ls "$SP/active" | wc -l)" -eq 1 ]
}

@test "take: a segment left in taken/ by a take that died is taken over first" {
	local a b
	a=$("$SPOOL_GEN" -n 3 "$SP")
	b=$("$SPOOL_GEN" -g 3 -n 2 "$SP")
	mv "$SP/ready/$b" "$SP/taken/$b" # as a take that died after its rename
	run spool take
	assert_success
	[ "$(printf '%s\n' "$output" | jq -r .segment | sort -u)" = "$b" ]
	[ ! -e "$SP/taken/$b" ]
	run spool take
	assert_success
	[ "$(printf '%s\n' "$output" | jq -r .segment | sort -u)" = "$a" ]
}

@test "take: an output that cannot be written leaves the segment in taken/ for the next take" {
	one_segment
	run --separate-stderr spool take -o "$BATS_TEST_TMPDIR/no/such/dir/out"
	assert_failure 1
	[ -e "$SP/taken/$NAME" ]
	[ ! -e "$SEG" ]
	run spool take -o "$BATS_TEST_TMPDIR/out"
	assert_success
	[ ! -e "$SP/taken/$NAME" ]
	[ "$(jq -r .segment "$BATS_TEST_TMPDIR/out" | sort -u)" = "$NAME" ]
	[ "$(wc -l <"$BATS_TEST_TMPDIR/out")" -eq 4 ]
}

@test "take: a segment in taken/ under a live take's lock is left alone" {
	local a
	a=$("$SPOOL_GEN" -n 3 "$SP")
	mv "$SP/ready/$a" "$SP/taken/$a"
	# flock(1) holds the lock as a take in progress would.
	flock "$SP/taken/$a" sleep 30 &
	PIDS+=($!)
	wait_for is_locked "$SP/taken/$a"
	run spool take
	assert_failure 3
	[ -e "$SP/taken/$a" ]
}

@test "take: a corrupt segment exits 1 and goes into quarantine/" {
	one_segment
	poke "$SEG" 270 00
	run --separate-stderr spool take
	assert_failure 1
	[ "${#lines[@]}" -eq 2 ]
	[[ $stderr == *"offset 202: bad CRC"* ]]
	[ -e "$SP/quarantine/$NAME" ]
	[ ! -e "$SP/taken/$NAME" ]
}

@test "take: two concurrent takers take every segment exactly once, none partial" {
	local n=60 per=5 i
	"$SPOOL_GEN" -n "$per" -s "$n" "$SP" >/dev/null
	mkdir "$BATS_TEST_TMPDIR/out"
	taker() {
		local k=0 rc
		while :; do
			k=$((k + 1))
			rc=0
			"$SPOOL_TOOL" -d "$SP" take -o "$BATS_TEST_TMPDIR/out/$1-$k" || rc=$?
			[ "$rc" -eq 0 ] || break
		done
		[ "$rc" -eq 3 ] && rm -f "$BATS_TEST_TMPDIR/out/$1-$k"
		return $((rc == 3 ? 0 : rc))
	}
	taker a &
	local pa=$!
	taker b &
	local pb=$!
	PIDS+=("$pa" "$pb")
	wait "$pa"
	wait "$pb"
	[ "$(ls "$BATS_TEST_TMPDIR/out" | wc -l)" -eq "$n" ]
	# Every output holds one whole segment: all its records, in file order.
	for i in "$BATS_TEST_TMPDIR"/out/*; do
		[ "$(jq -r .segment "$i" | sort -u | wc -l)" -eq 1 ]
		[ "$(jq -r .offset "$i" | wc -l)" -eq "$per" ]
		[ "$(jq -r .offset "$i" | head -1)" -eq 64 ]
		jq -r .offset "$i" | sort -nc
	done
	[ "$(cat "$BATS_TEST_TMPDIR"/out/* | jq -r .segment | sort | uniq -c | awk '{print $1}' | sort -u)" = "$per" ]
	[ "$(cat "$BATS_TEST_TMPDIR"/out/* | jq -r .submit_id | sort -u | wc -l)" -eq $((n * per)) ]
	[ "$(cat "$BATS_TEST_TMPDIR"/out/* | wc -l)" -eq $((n * per)) ]
	[ -z "$(ls "$SP/ready" "$SP/taken" | grep seg)" ]
}

@test "usage errors exit 2; -v prints the version" {
	run "$SPOOL_TOOL"
	assert_failure 2
	run "$SPOOL_TOOL" frobnicate
	assert_failure 2
	run "$SPOOL_TOOL" cat --bogus
	assert_failure 2
	run "$SPOOL_TOOL" -v
	assert_success
	assert_output --regexp '^submit-spool [0-9][^ ]* \(commit [0-9a-f]+\)$'
}
