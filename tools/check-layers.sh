#!/bin/sh
# The layering of src/ as docs/DESIGN.md's module table states it: every
# src/*.c and src/*.h may include (with #include "...") only its own header
# and the headers of modules on lower levels, and the include graph between
# modules has no cycle. Exits 1 and names the offenders otherwise.
set -eu
cd "$(dirname "$0")/.."
table=docs/DESIGN.md
levels=$(awk -F'|' '/^## Modules/ {on = 1} /^## / && !/^## Modules/ {on = 0}
	on && $2 ~ /^ *[0-9]+ *$/ { gsub(/ /, "", $2); gsub(/ /, "", $3); print $3, $2 }' "$table")
[ -n "$levels" ] || { echo "check-layers: no module table in $table" >&2; exit 1; }

level() { printf '%s\n' "$levels" | awk -v m="$1" '$1 == m { print $2; exit }'; }

fail=0
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
for f in src/*.c src/*.h; do
	m=$(basename "$f"); m=${m%.*}
	lm=$(level "$m")
	if [ -z "$lm" ]; then
		echo "check-layers: $f: module $m is not in $table" >&2
		fail=1
		continue
	fi
	for inc in $(sed -n 's/^#include "\([^"]*\)\.h".*/\1/p' "$f"); do
		[ "$inc" = "$m" ] && continue
		echo "$m $inc" >>"$edges"
		li=$(level "$inc")
		if [ -z "$li" ]; then
			echo "check-layers: $f includes $inc.h, not in $table" >&2
			fail=1
		elif [ "$li" -ge "$lm" ]; then
			echo "check-layers: $f (level $lm) includes $inc.h (level $li): not below it" >&2
			fail=1
		fi
	done
done
# A call that bypasses the headers: an extern declaration in a .c file
# (environ, which libc declares nowhere in a header we use, aside).
if grep -n '^[[:space:]]*extern' src/*.c | grep -v 'char \*\*environ;'; then
	echo "check-layers: extern declarations in src/*.c: declare them in the owner's header" >&2
	fail=1
fi
# tsort fails on a cycle, and names the modules in it.
if ! tsort "$edges" >/dev/null 2>"$edges.err"; then
	echo "check-layers: include cycle between modules:" >&2
	cat "$edges.err" >&2
	fail=1
fi
rm -f "$edges.err"
[ "$fail" -eq 0 ] && echo "check-layers: $(ls src/*.c src/*.h | wc -l) files, no upward include, no cycle"
exit "$fail"
