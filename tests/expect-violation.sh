#!/bin/sh
# Run an rsctl built with a planted bug; registered with should_fail, so the
# test passes only when rsctl reports the violation (exit status 3).
# Exit 1 = caught (the expected failure); anything else = not caught.
"$@" >/dev/null 2>"${TMPDIR:-/tmp}/expect-violation.$$"
rc=$?
cat "${TMPDIR:-/tmp}/expect-violation.$$" >&2
rm -f "${TMPDIR:-/tmp}/expect-violation.$$"
if [ "$rc" -eq 3 ]; then
	echo "caught: rsctl exited 3"
	exit 1
fi
echo "NOT caught: rsctl exited $rc"
exit 0
