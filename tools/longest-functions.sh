#!/bin/sh
# Prints, for each C file of the project (src/, src/bench/, bench/, test/nats/,
# or the files named as arguments), its longest function and that function's
# length in lines: "file function lines", longest files first.
#
# A function is what the project's format (.clang-format, Linux braces) makes
# of one: its name line starts at column 0 with "name(" (the return type on the
# line above it or on the same line), its body opens with "{" at column 0 and
# closes with "}" at column 0. The length counts from the name line to the
# closing brace, both included.
#
# With -a N: every function of N lines or more instead, longest first.
set -eu
cd "$(dirname "$0")/.."
min=0
if [ "${1:-}" = "-a" ]; then
	min=${2:?"usage: $0 [-a LINES] [FILE.c...]"}
	shift 2
fi
[ "$#" -gt 0 ] || set -- src/*.c src/bench/*.c bench/*.c test/nats/*.c
for f in "$@"; do
	[ -f "$f" ] || continue
	awk -v file="$f" -v min="$min" '
	# A name line: "name(" or "type name(" / "type *name(" at column 0.
	/^[A-Za-z_][A-Za-z0-9_ \t\*]*\(/ && !/^(if|for|while|switch|return)[ \t(]/ && !/;[ \t]*$/ {
		s = $0; sub(/\(.*/, "", s); n = split(s, w, /[ \t\*]+/)
		name = w[n]; start = NR; next
	}
	/^\{/ { if (name != "") { open = 1 }; next }
	/^\}/ {
		if (open && min > 0 && NR - start + 1 >= min)
			printf "%s %s %d\n", file, name, NR - start + 1
		if (open && NR - start + 1 > best) { best = NR - start + 1; bname = name }
		open = 0; name = ""; next
	}
	END { if (min == 0 && bname != "") printf "%s %s %d\n", file, bname, best }
	' "$f"
done | sort -k3,3nr -k1,1
