#!/bin/sh
# Install the Debian packages the build and the tests need, if any is missing.
# Does nothing when all are present. Uses apt-get (as root, or through sudo).
set -eu
pkgs="build-essential pkg-config libconfuse-dev libmicrohttpd-dev libjemalloc-dev
      bats bats-support bats-assert jq python3 python3-yaml curl procps iproute2 bc
      prometheus prometheus-node-exporter clang clang-format libclang-rt-14-dev valgrind linux-perf
      debhelper dpkg-dev fakeroot lintian mandoc groff-base strace git
      systemd systemd-container debootstrap gnuplot-nox libnats-dev nats-server util-linux-extra
      libssl-dev openssl haproxy"
missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $missing
