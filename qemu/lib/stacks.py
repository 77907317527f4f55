# SPDX-License-Identifier: GPL-2.0-only
"""The threads of a live process, for the record of a hang: each thread's
wait channel and system call from /proc, then gdb's backtraces of every
thread where gdb is installed.  Used by run-tests (a QEMU whose QMP
reply did not come) and lib/nest.py (a nest that did not end)."""

import os
import shutil
import subprocess


def dump(pid, path, gdb_timeout=60):
    """Write pid's threads to path.  Raises OSError if pid is gone."""
    with open(path, "w") as f:
        task = "/proc/%d/task" % pid
        for tid in sorted(os.listdir(task), key=int):
            d = os.path.join(task, tid)
            parts = []
            for what in ("comm", "wchan", "syscall"):
                try:
                    with open(os.path.join(d, what)) as g:
                        parts.append(g.read().strip())
                except OSError as e:
                    parts.append("(%s)" % e.strerror)
            f.write("tid %s: %s\n" % (tid, " | ".join(parts)))
        f.flush()
        if shutil.which("gdb"):
            try:
                subprocess.run(["gdb", "-batch", "-nx", "-p", str(pid),
                                "-ex", "thread apply all bt"],
                               stdin=subprocess.DEVNULL, stdout=f,
                               stderr=subprocess.STDOUT, timeout=gdb_timeout)
            except subprocess.TimeoutExpired:
                f.write("gdb timed out\n")
