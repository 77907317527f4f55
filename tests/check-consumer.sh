#!/bin/sh
# Build the tiny consumer the two ways an emulator would: against the
# installed library through pkg-config, and with runstate as a meson
# subproject.  Usage: check-consumer.sh SOURCE-ROOT
set -eu
src=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Install into a private prefix, then pkg-config.
meson setup -Dtests=false -Dbench=disabled --prefix="$tmp/inst" --libdir=lib \
	"$tmp/build" "$src" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
meson install -C "$tmp/build" >>"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
export PKG_CONFIG_PATH="$tmp/inst/lib/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$tmp/consumer-pc" "$src/tests/consumer/consumer.c" \
	$(pkg-config --cflags --libs runstate)
LD_LIBRARY_PATH="$tmp/inst/lib" "$tmp/consumer-pc" | grep -qx 'consumer: paused'
echo "ok: pkg-config consumer ($(pkg-config --modversion runstate))"
unset PKG_CONFIG_PATH

# 2. As a subproject (a copy of the tracked tree, as a wrap would give).
mkdir -p "$tmp/proj/subprojects/runstate"
cp "$src/tests/consumer/meson.build" "$src/tests/consumer/consumer.c" "$tmp/proj/"
(cd "$src" && tar cf - --exclude='./build*' --exclude=./.git .) | (cd "$tmp/proj/subprojects/runstate" && tar xf -)
meson setup "$tmp/proj/build" "$tmp/proj" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
ninja -C "$tmp/proj/build" >>"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
"$tmp/proj/build/consumer" | grep -qx 'consumer: paused'
echo "ok: subproject consumer"
