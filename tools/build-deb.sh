#!/bin/sh
# Build the Debian package from a clean clone of HEAD, so that neither the
# working tree's uncommitted changes nor its build/ leak into the package and
# the package build leaves no files in the tree. The .deb, .changes and
# .buildinfo land in build/.
#
#   tools/build-deb.sh [OUTDIR]     (default: build)
set -eu
top=$(git rev-parse --show-toplevel)
cd "$top"
out=${1:-build}
version=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
work=$out/deb
src=$work/submitd-$version

if ! git diff --quiet HEAD -- 2>/dev/null; then
	echo "build-deb: note: uncommitted changes are not part of the package" >&2
fi
rm -rf "$work"
mkdir -p "$work"
git clone -q --no-hardlinks "$top" "$src"
# Variables given to an outer make (BUILD=..., -j) must not reach the
# package build: debian/rules clean would remove the wrong directory.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
echo "build-deb: building submitd $version from $(git -C "$src" rev-parse --short=12 HEAD)"
(cd "$src" && dpkg-buildpackage -us -uc -b)
arch=$(dpkg --print-architecture)
for f in "$work"/*_"$version"_*.deb "$work/submitd_${version}_$arch.changes" \
	"$work/submitd_${version}_$arch.buildinfo"; do
	[ -e "$f" ] && mv -f "$f" "$out/"
done
rm -rf "$work"
ls -1 "$out"/submitd*_"$version"_*
