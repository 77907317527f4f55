#!/bin/sh
# rsctl reads each input line whole or not at all: a line longer than its
# buffer (4095 bytes) or with a NUL byte in it is rejected whole with
# `error: invalid`, and no part of it runs (earlier versions split a long
# line and ran its first part: `unlock savevm`, 4,096 spaces, `paused`
# released savevm).  Command-line values are checked the same way: a number
# with trailing junk is a usage error, not its leading digits.
# Usage: check-rsctl-input.sh RSCTL
set -eu
rsctl=${1:?usage: check-rsctl-input.sh RSCTL}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

pad() {  # pad N: N spaces
	printf "%$1s" ""
}

{
	echo "lock savevm"
	printf 'unlock savevm%spaused\n' "$(pad 4096)"
	echo "status"
	# The longest line read whole: 4095 bytes (`status` and spaces).
	printf 'status%s\n' "$(pad 4089)"
	# One byte more: rejected, even though trimming would leave `status`.
	printf 'status%s\n' "$(pad 4090)"
	# A NUL byte: `unlock savevm` must not run.
	printf 'unlock savevm\000 paused\n'
	# A comment that is too long is not read whole either.
	printf '#%s\n' "$(pad 5000)"
	echo "status"
	echo "unlock savevm"
	# The last line without its newline still counts.
	printf 'status'
} >"$tmp/in"

cat >"$tmp/want" <<'OUT'
ok
error: invalid
stopped locks=savevm pause=none legacy=save-vm
stopped locks=savevm pause=none legacy=save-vm
error: invalid
error: invalid
error: invalid
stopped locks=savevm pause=none legacy=save-vm
ok
running locks=- pause=none legacy=running
OUT

"$rsctl" --vcpus 2 <"$tmp/in" >"$tmp/got" 2>"$tmp/err" || { echo "rsctl exited $?"; cat "$tmp/err"; fail=1; }
if ! diff -u "$tmp/want" "$tmp/got"; then
	echo "FAIL: rsctl input lines"
	fail=1
fi

# Command-line values: the whole value or a usage error (status 2).
for args in "--vcpus 4x" "--vcpus ''" "--check-ms 10ms" "--wait-ms -1" "--vcpus 4097" \
	    "--wait-ms 0" "--vcpus"; do
	rc=0
	eval "\"\$rsctl\" $args </dev/null >/dev/null 2>&1" || rc=$?
	if [ "$rc" -ne 2 ]; then
		echo "FAIL: rsctl $args exited $rc, not 2 (usage)"
		fail=1
	fi
done
[ "$fail" -eq 0 ] && echo "ok: rsctl input lines and option values"
exit "$fail"
