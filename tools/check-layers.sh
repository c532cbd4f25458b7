#!/bin/sh
# The layering of src/ as docs/DESIGN.md's module tables state it, checked
# twice:
# - includes: every src/*.[ch] and src/bench/*.[ch] may include (with
#   #include "...") only its own header and the headers of modules on lower
#   levels; the bench (modules bench/NAME) may use of the daemon's modules
#   only the leaves (levels 0 to 2), and no daemon module includes the bench's;
# - calls: in the objects make all built (build/obj/*.o, build/obj/bench/*.o),
#   every global symbol a module uses (nm: undefined) belongs to the module
#   that defines it (nm: defined), and that module must be on a lower level;
#   a leaf (levels 0 to 2, log aside) calls neither exit nor the logger.
# Either graph between modules must also be free of cycles (tsort). Exits 1
# and names the offenders otherwise.
set -eu
cd "$(dirname "$0")/.."
table=docs/DESIGN.md
obj=${BUILD:-build}/obj
leaf_max=2
levels=$(awk -F'|' '/^## Modules/ {on = 1} /^## / && !/^## Modules/ {on = 0}
	on && $2 ~ /^ *[0-9]+ *$/ { gsub(/ /, "", $2); gsub(/ /, "", $3); print $3, $2 }' "$table")
[ -n "$levels" ] || { echo "check-layers: no module table in $table" >&2; exit 1; }

level() { printf '%s\n' "$levels" | awk -v m="$1" '$1 == m { print $2; exit }'; }

# module FILE: the module a source file belongs to (bench/NAME under src/bench/).
module() {
	case $1 in
	src/bench/*) m=$(basename "$1"); echo "bench/${m%.*}" ;;
	*) m=$(basename "$1"); echo "${m%.*}" ;;
	esac
}

fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/edges"
: >"$tmp/calls"

# edge FILE FROM TO WHAT: checks that FROM may use TO (levels and the bench's
# rule); WHAT names the use in the message.
edge() {
	lm=$(level "$2")
	li=$(level "$3")
	[ -n "$lm" ] || return 0 # reported once, with its file
	if [ -z "$li" ]; then
		echo "check-layers: $1 $4 $3, not in $table" >&2
		fail=1
	elif [ "$li" -ge "$lm" ]; then
		echo "check-layers: $1 (level $lm) $4 $3 (level $li): not below it" >&2
		fail=1
	fi
	case $2:$3 in
	bench/*:bench/*) ;;
	bench/*:*)
		if [ -n "$li" ] && [ "$li" -gt "$leaf_max" ]; then
			echo "check-layers: $1 $4 $3: the bench uses only the leaves" >&2
			fail=1
		fi
		;;
	*:bench/*)
		echo "check-layers: $1 $4 $3: the daemon never uses the bench" >&2
		fail=1
		;;
	esac
}

files="src/*.c src/*.h src/bench/*.c src/bench/*.h"
for f in $files; do
	m=$(module "$f")
	if [ -z "$(level "$m")" ]; then
		echo "check-layers: $f: module $m is not in $table" >&2
		fail=1
		continue
	fi
	for inc in $(sed -n 's/^#include "\([^"]*\)\.h".*/\1/p' "$f"); do
		# "x.h" is looked up next to the file first, then in src/ (-Isrc).
		if [ -f "$(dirname "$f")/$inc.h" ]; then
			to=$(module "$(dirname "$f")/$inc.h")
		else
			to=$(module "src/$inc.h")
		fi
		[ "$to" = "$m" ] && continue
		echo "$m $to" >>"$tmp/edges"
		edge "$f" "$m" "$to" includes
	done
done
# A call that bypasses the headers: an extern declaration in a .c file
# (environ, which libc declares nowhere in a header we use, aside).
if grep -n '^[[:space:]]*extern' src/*.c src/bench/*.c | grep -v 'char \*\*environ;'; then
	echo "check-layers: extern declarations in src/*.c: declare them in the owner's header" >&2
	fail=1
fi

# Calls (and uses of global data) between the objects: who defines each
# global symbol, who uses it.
for f in src/*.c src/bench/*.c; do
	o=$obj/${f#src/}
	o=${o%.c}.o
	if [ ! -f "$o" ] || [ "$o" -ot "$f" ]; then
		echo "check-layers: $o is missing or older than $f: make all first" >&2
		exit 1
	fi
	m=$(module "$f")
	nm -P -g --defined-only "$o" | awk -v m="$m" '{ print $1, m }' >>"$tmp/defs"
	nm -P -u "$o" | awk -v m="$m" '{ print $1, m }' >>"$tmp/uses"
done
sort -o "$tmp/defs" "$tmp/defs"
sort -o "$tmp/uses" "$tmp/uses"
# "symbol user definer", a symbol defined in two modules (spool in two
# programs' objects aside: it is one module) counts for each.
join "$tmp/uses" "$tmp/defs" | awk '$2 != $3' | sort -u >"$tmp/used"
while read -r sym from to; do
	echo "$from $to" >>"$tmp/calls"
	edge "$from.o" "$from" "$to" "uses $sym of"
done <"$tmp/used"

# The leaves (log itself aside) never log or exit: they return an error.
leaf_bad='^(exit|_exit|abort|fatal|fatalx|log_(error|errorx|warn|warnx|info|debug)) '
for f in src/*.c; do
	m=$(module "$f")
	l=$(level "$m")
	[ "$m" != log ] && [ -n "$l" ] && [ "$l" -le "$leaf_max" ] || continue
	for sym in $(nm -P -u "$obj/$m.o" | grep -E "$leaf_bad" | cut -d' ' -f1); do
		echo "check-layers: $m.o (a leaf) calls $sym: a leaf returns an error instead" >&2
		fail=1
	done
done

# tsort fails on a cycle, and names the modules in it.
for g in edges calls; do
	if ! sort -u "$tmp/$g" | tsort >/dev/null 2>"$tmp/err"; then
		echo "check-layers: $( [ "$g" = edges ] && echo include || echo call) cycle between modules:" >&2
		cat "$tmp/err" >&2
		fail=1
	fi
done
[ "$fail" -eq 0 ] && echo "check-layers: $(echo $files | wc -w) files, $(sort -u "$tmp/edges" | wc -l) includes and $(sort -u "$tmp/calls" | wc -l) call edges between modules, none upward, no cycle"
exit "$fail"
