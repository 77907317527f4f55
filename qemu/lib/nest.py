# SPDX-License-Identifier: GPL-2.0-only
"""A command in a nested KVM host, for machines without a usable /dev/kvm.

Debian's QEMU boots the test guest's Debian kernel (guest/build-guest.sh)
under TCG with an AMD CPU whose SVM and nested paging TCG emulates
(-cpu EPYC,+svm,+npt); kvm-amd loads there and gives a /dev/kvm, and
guest/nest-init.sh mounts this machine's root through virtio-9p, chroots
into it and runs a script: a tmpfs on $TMPDIR (9p has no unix sockets),
the caller's working directory, the command with its output to a file on
this machine.  What runs there is the machine's own binaries; only the CPU
under them is emulated, so every VM exit and interrupt costs what TCG
makes it cost (docs/qemu.md, "KVM without /dev/kvm").

Used by run-tests --nested-kvm and by qemu/nest.  $RS_NEST_APPEND adds
to the nest's kernel command line (loglevel=7 puts the stack of a soft
lockup on the console).
"""

import os
import re
import subprocess
import time

import stacks

MEM_MB = 2048
BOOT_S = 180            # boot, module loading, the command's start
AFTER_S = 60            # the inner timeout's grace, "after", the poweroff
# A busy nest still prints its heartbeat (run.sh): nothing on its console
# for FROZEN_S means that no nest CPU schedules any more, the freeze of
# TCG's SVM described in docs/qemu.md ("KVM without /dev/kvm").
HEARTBEAT_S = 10
FROZEN_S = 90
# The nest kernel's reports of a CPU or task stuck.
STALL = re.compile(r"^\s*\[\s*\d+\.\d+\].*(soft lockup|detected stalls?|"
                   r"self-detected stall|blocked for more than)")
CPU = "EPYC,+svm,+npt"
FIRMWARE = ["-L", "/usr/share/seabios", "-L", "/usr/share/qemu",
            "-L", "/usr/lib/ipxe/qemu"]


def sh(s):
    """s quoted for /bin/sh."""
    return "'" + s.replace("'", "'\\''") + "'"


def smp():
    """The nest's CPUs.  Not more than the machine's cores: a third CPU
    on the 2-core VM (so that one would be left when a nested guest's
    CPUs are stuck) froze the nest on its first run, every CPU reporting
    a soft lockup (docs/qemu.md, "KVM without /dev/kvm")."""
    return max(2, min(4, os.cpu_count() or 2))


class Result:
    """What came back: booted (the nest reached its command), rc (the
    command's exit status, None if none came back), timed_out, why (for a
    nest that did not boot or gave no /dev/kvm), output (the command's
    stdout and stderr), stalls (the nest kernel's soft lockup, RCU stall
    and hung task reports: a nest CPU or task stuck, docs/qemu.md), frozen
    (nothing on the nest's console, not even its heartbeat, for FROZEN_S
    after it booted: killed), and the files: workdir/console.log,
    outer.log, output.log, and outer.stacks.txt when the nest had to be
    killed."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.booted = False
        self.rc = None
        self.timed_out = False
        self.why = ""
        self.output = ""
        self.seconds = 0.0
        self.stalls = []
        self.frozen = False

    def broke_down(self):
        """The nest itself failed under the command: frozen, or its kernel
        reported a CPU or task stuck.  The QEMU under test runs in the
        nest's user space and cannot do either; TCG's emulation of SVM
        can (docs/qemu.md, "KVM without /dev/kvm")."""
        return self.frozen or bool(self.stalls)


def run(argv, guest, outer, workdir, timeout, after=None):
    """Run argv in the nested KVM host, from the current directory, with
    its output to workdir/output.log; after: shell lines run in the nest
    after it ($T is its tmpfs, $rc its status).  guest: guest.json's
    dict (its "nest" entry); outer: a QEMU with virtfs (Debian's)."""
    res = Result(workdir)
    g = guest.get("nest")
    if not g:
        res.why = "the guest has no nested host (guest/build-guest.sh)"
        return res
    os.makedirs(os.path.join(workdir, "tmp"), exist_ok=True)
    out = os.path.join(workdir, "output.log")
    script = os.path.join(workdir, "run.sh")
    with open(script, "w") as f:
        f.write("T=%s\n" % sh(os.path.join(workdir, "tmp")))
        f.write('mount -t tmpfs tmpfs "$T" || exit 125\n')
        f.write('export TMPDIR="$T"\n')
        f.write("cd %s || exit 125\n" % sh(os.getcwd()))
        # The command's output goes to output.log and, through the
        # script's stdout, to the console as well: 9p's cache=loose keeps
        # output.log's pages in the nest until the file is closed, so a
        # nest killed from outside leaves only the console.  An inner
        # timeout ends a hung command first, so that "after" still runs
        # (copies back what it left) and the status still comes back.
        # The heartbeat: a line on the console every HEARTBEAT_S while
        # any nest CPU still schedules (the outer side's frozen check).
        f.write("( while sleep %d; do echo RS-NEST-ALIVE; done ) &\n"
                "hb=$!\n" % HEARTBEAT_S)
        f.write("s=$(date +%s)\n")
        f.write("( timeout -k 10 %d %s </dev/null; echo $? >\"$T/rc\" ) "
                "2>&1 | tee %s\n"
                % (timeout, " ".join(sh(a) for a in argv), sh(out)))
        f.write('rc=$(cat "$T/rc" 2>/dev/null)\n[ -n "$rc" ] || rc=125\n')
        f.write('case $rc in 124|137) [ $(($(date +%%s) - s)) -lt %d ] || '
                'echo RS-NEST-TIMEOUT;; esac\n' % timeout)
        if after:
            f.write(after + "\n")
        # The heartbeat goes on through "after" (a slow copy is not a
        # freeze); the outer side stops looking once RS-NEST-DONE is out.
        f.write('kill "$hb" 2>/dev/null\n')
        f.write("exit $rc\n")
    console = os.path.join(workdir, "console.log")
    # A reused workdir's old console must not count as this nest's boot.
    for f in (console, out):
        if os.path.exists(f):
            os.unlink(f)
    cmd = [outer, "-nodefaults", "-no-user-config", "-display", "none",
           "-accel", "tcg,thread=multi", "-cpu", CPU,
           "-smp", str(smp()), "-m", str(MEM_MB), "-no-reboot",
           "-kernel", g["kernel"], "-initrd", g["initrd"],
           "-append", " ".join(filter(None, (
               g["append"], os.environ.get("RS_NEST_APPEND"),
               "rs.nest=" + script))),
           "-serial", "file:" + console,
           "-virtfs", "local,path=/,mount_tag=host,security_model=none,"
           "multidevs=remap"] + FIRMWARE
    t0 = time.monotonic()
    with open(os.path.join(workdir, "outer.log"), "w") as log:
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)
        except OSError as e:
            res.why = "cannot run %s: %s" % (outer, e)
            return res
        try:
            outer_rc = _wait(p, console, t0 + BOOT_S + timeout + AFTER_S, res)
            if outer_rc is None:
                # The inner timeout did not end it, or the nest went
                # silent: the nest itself is stuck.  Its threads say
                # where (outer.stacks.txt), then it goes.
                try:
                    stacks.dump(p.pid,
                                os.path.join(workdir, "outer.stacks.txt"))
                except OSError:
                    pass
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    res.seconds = time.monotonic() - t0
    text = _read(console)
    res.booted = "RS-NEST-READY" in text
    # The kernel's own lines ("[  12.345678] ..."), not the command's.
    res.stalls = [ln.strip() for ln in text.splitlines()
                  if STALL.search(ln)]
    done = re.search(r"RS-NEST-DONE rc=(\d+)", text)
    if res.booted and done:
        res.rc = int(done.group(1))
    res.output = _read(out) if res.booted else ""
    if res.booted and not done:
        # Killed from outside: output.log may not have reached this
        # machine; the console has what the command wrote.
        res.output = text.split("RS-NEST-READY", 1)[1]
    res.timed_out = res.timed_out or "RS-NEST-TIMEOUT" in text
    if not res.booted:
        tail = (text.strip().splitlines()
                or _read(os.path.join(workdir, "outer.log")).strip()
                .splitlines() or ["(no output)"])[-1]
        res.why = "the nested KVM host gave no KVM (%s, outer QEMU exit " \
                  "%s): %s" % ("timed out" if res.timed_out
                               else "no RS-NEST-READY", outer_rc,
                               tail.strip())
    return res


def _wait(p, console, deadline, res):
    """The outer QEMU's exit status, or None once the deadline passed or
    the nest did not reach its command within BOOT_S (res.timed_out), or
    the booted nest's console stayed silent for FROZEN_S before its
    command's status came (res.frozen)."""
    t0 = grew = time.monotonic()
    size, ready, done = -1, False, False
    while True:
        try:
            return p.wait(2)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        try:
            n = os.path.getsize(console)
        except OSError:
            n = 0
        if n != size:
            size, grew = n, now
            text = _read(console)
            ready = ready or "RS-NEST-READY" in text
            done = done or "RS-NEST-DONE" in text
        if now > deadline or (not ready and now - t0 > BOOT_S):
            res.timed_out = True
            return None
        if ready and not done and now - grew > FROZEN_S:
            res.frozen = True
            return None


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""
