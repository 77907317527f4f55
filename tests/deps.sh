#!/bin/sh
# Install what building and testing runstate needs, on Debian 12, if missing.
set -eu
pkgs="meson ninja-build pkg-config gcc g++ binutils python3 spin"
# Later tiers: liburcu (registry), Concurrency Kit and Google Benchmark
# (runstate-bench), clang (libFuzzer).
pkgs="$pkgs liburcu-dev libck-dev libbenchmark-dev clang"
# The arm64 code-generation check (tests/check-arm64.sh).
pkgs="$pkgs gcc-aarch64-linux-gnu"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
