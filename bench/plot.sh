#!/bin/bash
# bench/plot.sh OUT.svg TITLE LABEL FILE.hgrm [LABEL FILE.hgrm ...]: draw the
# latency percentile curves of submit-bench --hgrm files (HdrHistogram's
# percentile distribution text, values in ms) into one SVG with gnuplot, the
# way HdrHistogram's plotters draw them: x is the percentile on a
# 1/(1-p) log scale, y the latency. make bench (bench/run.sh) calls it.
set -eu

if [ $# -lt 4 ] || [ $(($# % 2)) -ne 0 ]; then
	echo "usage: bench/plot.sh OUT.svg TITLE LABEL FILE.hgrm [LABEL FILE.hgrm ...]" >&2
	exit 2
fi
command -v gnuplot >/dev/null || {
	echo "bench/plot.sh: gnuplot is not installed (Debian: gnuplot-nox)" >&2
	exit 1
}
out=$1 title=$2
shift 2
tmp=$(mktemp -d /tmp/submitd-plot.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Only the rows with all four columns: the header, the last row (percentile
# 1, no finite 1/(1-p)) and the #[...] footer are left out.
plots=() n=0 maxx=10
while [ $# -gt 0 ]; do
	label=$1 file=$2
	shift 2
	[ -r "$file" ] || {
		echo "bench/plot.sh: $file: not readable" >&2
		exit 1
	}
	n=$((n + 1))
	awk 'NF == 4 && $1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9.]+$/ { print $4, $1 }' "$file" >"$tmp/$n.dat"
	[ -s "$tmp/$n.dat" ] || {
		echo "bench/plot.sh: $file: no percentile rows" >&2
		exit 1
	}
	m=$(awk 'END { print $1 }' "$tmp/$n.dat")
	maxx=$(awk -v a="$maxx" -v b="$m" 'BEGIN { print (b > a ? b : a) }')
	# gnuplot strings are single-quoted: double any quote in the label.
	plots+=("'$tmp/$n.dat' using 1:2 with lines lw 2 title '${label//\'/\'\'}'")
done

ticks='"0%%" 1, "90%%" 10, "99%%" 100, "99.9%%" 1000, "99.99%%" 10000, "99.999%%" 100000, "99.9999%%" 1000000'
{
	echo "set terminal svg size 900,520 dynamic font 'sans,11' background '#ffffff'"
	echo "set output '${out//\'/\'\'}'"
	echo "set title '${title//\'/\'\'}'"
	echo "set logscale x"
	echo "set logscale y"
	echo "set xrange [1:$maxx]"
	echo "set xtics ($ticks)"
	echo "set xlabel 'percentile'"
	echo "set ylabel 'latency (ms)'"
	echo "set grid"
	echo "set key top left"
	printf 'plot '
	sep=
	for p in "${plots[@]}"; do
		printf '%s%s' "$sep" "$p"
		sep=', '
	done
	echo
} >"$tmp/plot.gp"
gnuplot "$tmp/plot.gp"
