#!/bin/sh
# The README's two commands on a fresh, minimal Debian 12.
#
# Usage: sh tests/fresh-debian.sh [--fresh] [--worktree] [WORK-DIR]
#
# Builds a minimal Debian 12 (bookworm) root with debootstrap
# --variant=minbase from the Debian mirror this machine's apt uses, puts a
# clean copy of the project in it (/root/runstate), and runs there, with
# chroot, exactly what the README tells a new user to run:
#
#     sh stress/demo.sh
#     sh tests/run-all
#
# It prints each command's exit status and time, and run-all's closing line
# ("N passed, N failed, N skipped"), and exits non-zero if either command
# failed.  It takes long (tens of minutes: the packages, the builds, the
# whole suite), so it is not part of .ci/run; run it before resolving an
# issue that changes what gets installed (README.md, "For contributors").
#
#   WORK-DIR    where the root, the cached base root and the logs live
#               (default /var/tmp/runstate-fresh-debian); no white space
#   --fresh     run debootstrap again instead of unpacking the cached base
#               root, WORK-DIR/bookworm-minbase-ARCH.tar (made by the first
#               run; a rerun with it skips debootstrap's minutes)
#   --worktree  copy the working tree as it is now (tracked files, and
#               untracked ones that git does not ignore: git ls-files -co
#               --exclude-standard) instead of cloning the committed HEAD:
#               to try uncommitted changes
#
# Environment: MIRROR, the Debian mirror to use (default: the one that
# /etc/apt/sources.list or /etc/apt/sources.list.d/ names for bookworm).
#
# Needs root (debootstrap, mount, chroot), git, and the mirror; installs
# debootstrap with apt-get if it is missing.  The root gets /proc, /sys,
# /dev and /dev/pts bind-mounted (so /dev/kvm too, where the host has it),
# in a private mount namespace (unshare), so that no mount can outlive the
# script or show on the host; a trap unmounts them on exit as well.  The
# root is kept after the run, for inspection, and replaced by the next run.
set -u

die() {
	echo "fresh-debian: $*" >&2
	exit 1
}

# mounts_under DIR: the mount points at or below DIR, deepest first.
mounts_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
		sort -r
}

# unmount_under DIR: unmount everything at or below DIR; false if
# something stays mounted.
unmount_under() {
	for m in $(mounts_under "$1"); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
			echo "fresh-debian: cannot unmount $m" >&2
	done
	[ -z "$(mounts_under "$1")" ]
}

# remove_tree DIR: rm -rf, but never through a mount (a bind-mounted /dev
# left by a killed run would otherwise lose the host's device nodes).
remove_tree() {
	[ -e "$1" ] || return 0
	unmount_under "$1" || die "something is still mounted below $1: not removing it"
	rm -rf --one-file-system "$1" || die "cannot remove $1"
}

# ---------------------------------------------------------------------------
# The part that runs in the private mount namespace: mount, chroot, run.
# Usage (internal): fresh-debian.sh --inner WORK-DIR DESCRIPTION
inner() {
	work=$1 what=$2
	root=$work/root
	trap 'unmount_under "$root"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	# /dev is bound without its submounts; /dev/pts is bound on its own
	# (ptys for the tools that want one) and /dev/shm gets its own tmpfs.
	for d in proc sys dev dev/pts; do
		mount --bind "/$d" "$root/$d" || die "cannot bind-mount /$d into $root"
	done
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm" ||
		die "cannot mount a tmpfs on $root/dev/shm"
	if [ -c "$root/dev/kvm" ]; then
		kvm="/dev/kvm available in the root"
	else
		kvm="no /dev/kvm on this host: the KVM tests will skip"
	fi

	echo
	echo "== in the fresh root: $what; $kvm"
	rcs=""
	for cmd in "sh stress/demo.sh" "sh tests/run-all"; do
		log=$work/$(echo "$cmd" | sed 's|.*/||; s|\.sh$||').log
		echo
		echo "== $cmd (log: $log)"
		t0=$(date +%s)
		# A login's environment, not this script's: no CC, no
		# RS_REQUIRE_TOOLCHAINS, no PATH of the host.
		{
			chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
				PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
				/bin/sh -c "cd /root/runstate && $cmd" </dev/null 2>&1
			echo $? >"$log.rc"
		} | tee "$log"
		t1=$(date +%s)
		rc=$(cat "$log.rc" 2>/dev/null || echo '?')
		rcs="$rcs$cmd: exit $rc ($((t1 - t0)) s)
"
	done

	# run-all's last line must be its closing line.
	closing=$(tail -n 1 "$work/run-all.log")
	if ! echo "$closing" | grep -Eq '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$'; then
		closing="(none: its last line is: $closing)"
	fi
	echo
	echo "== fresh Debian 12 summary ($what)"
	printf '%s' "$rcs"
	echo "sh tests/run-all closing line: $closing"
	demo_rc=$(cat "$work/demo.log.rc" 2>/dev/null || echo 1)
	all_rc=$(cat "$work/run-all.log.rc" 2>/dev/null || echo 1)
	case $closing in "(none"*) all_rc=1 ;; esac
	[ "$demo_rc" = 0 ] && [ "$all_rc" = 0 ]
}

if [ "${1:-}" = --inner ]; then
	shift
	inner "$@"
	exit $?
fi

# ---------------------------------------------------------------------------
fresh=0 worktree=0 work=
for a in "$@"; do
	case $a in
	--fresh) fresh=1 ;;
	--worktree) worktree=1 ;;
	-h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown option $a (see --help)" ;;
	*) [ -z "$work" ] || die "one work directory only"; work=$a ;;
	esac
done
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, mount, chroot)"
for t in git tar unshare chroot mount umount apt-get; do
	command -v "$t" >/dev/null 2>&1 || die "$t not found"
done
src=$(cd "$(dirname "$0")/.." && pwd -P) || die "cannot find the source tree"
self=$src/tests/$(basename "$0")
work=${work:-/var/tmp/runstate-fresh-debian}
mkdir -p "$work" || die "cannot create $work"
work=$(cd "$work" && pwd -P)
case $work in *[[:space:]]*) die "the work directory must not contain white space: $work" ;; esac
case $src/ in "$work"/*) die "the work directory must not contain the source tree" ;; esac
root=$work/root
arch=$(dpkg --print-architecture)
base=$work/bookworm-minbase-$arch.tar
# Whatever happens, nothing stays mounted below the work directory (the
# mounts live in a private namespace; this is the second line of defence).
trap 'unmount_under "$work" >/dev/null 2>&1' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
# The host's mount namespace must not see the root's mounts.
unshare --mount --propagation private true 2>/dev/null ||
	die "cannot create a private mount namespace (unshare --mount): needs root with CAP_SYS_ADMIN"

# --- The mirror -------------------------------------------------------------
# apt_sources: the files apt reads (not *.disabled and the like).
apt_sources() {
	[ -f /etc/apt/sources.list ] && echo /etc/apt/sources.list
	for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && echo "$f"
	done
}
# find_mirror: the first http(s) URI of a "deb" entry for bookworm, in the
# one-line format (sources.list, *.list) or deb822 (*.sources).
find_mirror() {
	# shellcheck disable=SC2046
	awk '
	function flush() {
		if (types ~ /(^| )deb( |$)/ && enabled != "no" && suites ~ /(^| )bookworm( |$)/ &&
		    uri ~ /^https?:\/\// && !found) { print uri; found = 1 }
		types = suites = uri = enabled = ""
	}
	FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
	/^[ \t]*#/ { next }
	deb822 && /^[ \t]*$/ { flush(); next }
	deb822 {
		key = tolower($1); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
		if (key == "types:") types = val
		else if (key == "suites:") suites = val
		else if (key == "enabled:") enabled = tolower(val)
		else if (key == "uris:") { split(val, u, /[ \t]+/); uri = u[1] }
		next
	}
	$1 == "deb" {
		line = $0; sub(/\[[^]]*\]/, "", line); split(line, f)
		if (f[3] == "bookworm" && f[2] ~ /^https?:\/\// && !found) { print f[2]; found = 1 }
	}
	END { flush() }' $(apt_sources) /dev/null
}
mirror=${MIRROR:-$(find_mirror)}
if [ -z "$mirror" ]; then
	mirror=http://deb.debian.org/debian
	echo "fresh-debian: no bookworm mirror in the apt sources; using $mirror"
fi
mirror=${mirror%/}
echo "== mirror: $mirror"

# --- The base root (cached) -------------------------------------------------
if [ "$fresh" = 1 ] || [ ! -s "$base" ]; then
	if ! command -v debootstrap >/dev/null 2>&1; then
		echo "== installing debootstrap"
		apt-get update -qq >/dev/null 2>&1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			debootstrap debian-archive-keyring >/dev/null ||
			die "cannot install debootstrap"
	fi
	echo "== debootstrap --variant=minbase bookworm ($mirror)"
	t0=$(date +%s)
	remove_tree "$work/base.tmp"
	# In a private mount namespace too: debootstrap mounts /proc and /sys
	# in the target, and a failed run would leave them there.
	if ! unshare --mount --propagation private \
		debootstrap --variant=minbase bookworm "$work/base.tmp" "$mirror" \
		>"$work/debootstrap.log" 2>&1; then
		tail -n 30 "$work/debootstrap.log"
		die "debootstrap failed (log: $work/debootstrap.log)"
	fi
	tar -C "$work/base.tmp" --numeric-owner -cpf "$base.tmp" . || die "cannot write $base"
	mv "$base.tmp" "$base"
	remove_tree "$work/base.tmp"
	echo "   $(($(date +%s) - t0)) s; cached as $base"
else
	echo "== base root: cached $base (--fresh runs debootstrap again)"
fi

# --- The root: a new one from the base, every run ---------------------------
remove_tree "$root"
mkdir -p "$root"
tar -C "$root" --numeric-owner -xpf "$base" || die "cannot unpack $base"
# Name resolution and the package sources, as on this machine: the host's
# source files that name the mirror (a third-party repository's would need
# its key, which the root lacks).  Otherwise the mirror alone.
cp -L /etc/resolv.conf "$root/etc/resolv.conf" || die "cannot copy /etc/resolv.conf"
copied=0
for f in $(apt_sources); do
	if grep -qF "$mirror" "$f"; then
		[ "$copied" = 1 ] || rm -f "$root/etc/apt/sources.list"
		mkdir -p "$root$(dirname "$f")"
		cp "$f" "$root$f"
		copied=1
		echo "== apt sources: $f"
	else
		echo "== apt sources: $f skipped (does not name $mirror)"
	fi
done
if [ "$copied" = 0 ]; then
	printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" \
		>"$root/etc/apt/sources.list"
	echo "== apt sources: $mirror bookworm, bookworm-updates"
fi

# --- The project --------------------------------------------------------------
dst=$root/root/runstate
# safe.directory: the checkout may belong to the user who ran sudo.
g() { git -c safe.directory="$src" -C "$src" "$@"; }
head=$(g rev-parse --short HEAD) || die "$src is not a git checkout"
if [ "$worktree" = 1 ]; then
	what="the working tree of $src (HEAD $head and uncommitted changes)"
	mkdir -p "$dst"
	# Tracked files deleted in the working tree are listed too: skip them.
	g ls-files -co --exclude-standard |
		(cd "$src" && while IFS= read -r f; do
			if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\n' "$f"; fi
		done) |
		(cd "$src" && tar -cf - -T -) | tar -C "$dst" -xpf - ||
		die "cannot copy the working tree"
else
	what="a clone of $src at HEAD $head"
	commit=$(g rev-parse HEAD)
	if ! git -c safe.directory="$src" clone --quiet --no-hardlinks --no-checkout "$src" "$dst" ||
	   ! git -C "$dst" checkout --quiet --detach "$commit"; then
		die "cannot clone $src"
	fi
fi
echo "== project: $what"

# --- Run, in a private mount namespace ---------------------------------------
unshare --mount --propagation private sh "$self" --inner "$work" "$what"
rc=$?
echo "(root kept in $root; logs $work/demo.log, $work/run-all.log)"
exit $rc
