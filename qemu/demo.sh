#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# The seed's story in real QEMU 7.2 on the library, through QMP: a user's
# stop during a migration, an I/O error with a retry, a panicked guest and
# start -f.  Builds (or finds in the cache) the patched QEMU and the test
# guests first; see qemu/README.md.
set -eu
cd "$(dirname "$0")/.."
bin=$(bash qemu/build.sh | tail -n 1)
guest=$(bash qemu/guest/build-guest.sh | tail -n 1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exec python3 qemu/lib/demo.py "$bin" "$guest" "$work"
