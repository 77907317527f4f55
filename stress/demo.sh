#!/bin/sh
# The main job, from a fresh clone on Debian 12: install what is missing,
# build, and run a short scripted rsctl session that shows the contract at
# work with 4 simulated vCPUs (two of them in guest code only a signal kick
# ends).  Each command is echoed before rsctl's answer.
set -eu
cd "$(dirname "$0")/.."
sh tests/deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

script='# the seed bug: a stop issued while savevm holds the VM survives savevm
lock savevm
stop
unlock savevm
status
cont
status
# management retry after an I/O error must not resume a user-paused VM
stop
io-error
retry
status
cont
# a panicked guest needs a forced start
pause panicked
start
start -f
vcpus
# a vCPU hot-plugged during a stop runs nothing until the start
stop
hotplug
vcpus
start
vcpus
events
quit'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' "$script" >"$tmp/script"
grep -v '^#' "$tmp/script" | ./build/rsctl --vcpus 4 >"$tmp/out"
# Interleave: each command, then rsctl's answer to it.
awk -v out="$tmp/out" '
	/^#/ { printf "\n%s\n", $0; next }
	{ getline answer < out; printf "rsctl> %-16s %s\n", $0, answer }
' "$tmp/script"

# Then the stress harness, briefly: every kind of thread at once, with its
# invariants checked live (see docs/stress.md).
echo
echo "runstate-stress --duration 3 (vCPUs, management, lock holders, devices, hot-plug):"
./build/stress/runstate-stress --duration 3 --seed 1
