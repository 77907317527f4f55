# SPDX-License-Identifier: GPL-2.0-only
"""A small QMP client and QEMU launcher for qemu/run-tests (stdlib only).

Written for this project; it does not derive from QEMU's python/qemu.

    m = Machine("/usr/bin/qemu-system-x86_64", ["-S", ...], workdir, "vm1")
    m.launch()                      # QMP negotiated, serial connected
    m.cmd("cont")                   # return value, or raises QMPError
    r = m.cmd_raw("start")          # the whole reply dict
    m.wait_event("RESUME", since=mark)
    m.hmp("xp /1wx 0x500")
    m.close()                       # quit, then SIGTERM, then SIGKILL

Every wait has a timeout.  Every message in both directions goes to
WORKDIR/NAME.qmp.jsonl with a timestamp (seconds since launch), QEMU's
stdout and stderr to WORKDIR/NAME.log, the serial console to
WORKDIR/NAME.serial.log.  Machines still alive at interpreter exit are
killed.
"""

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

__all__ = ["QMPError", "QMPTimeout", "MachineDied", "Machine", "Serial",
           "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 20.0

_live = set()
_live_lock = threading.Lock()


def _kill_all():
    with _live_lock:
        machines = list(_live)
    for m in machines:
        try:
            m.kill()
        except Exception:
            pass


atexit.register(_kill_all)


class QMPError(Exception):
    """An error reply: .cls is error.class, .desc is error.desc."""

    def __init__(self, command, reply):
        self.command = command
        self.reply = reply
        err = reply.get("error", {})
        self.cls = err.get("class")
        self.desc = err.get("desc")
        super().__init__("%s: %s: %s" % (command, self.cls, self.desc))


class QMPTimeout(Exception):
    pass


class MachineDied(Exception):
    pass


def _connect_unix(path, deadline, alive):
    """Connect to a unix socket that a child is about to create."""
    last = None
    while time.monotonic() < deadline:
        if not alive():
            raise MachineDied("QEMU exited before %s accepted" % path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError as e:
            last = e
            s.close()
            time.sleep(0.02)
    raise QMPTimeout("no connection to %s: %s" % (path, last))


class Serial:
    """The guest's serial console through a chardev socket: a reader
    thread keeps every line with its arrival time."""

    def __init__(self, path, logpath, t0, deadline, alive):
        self.sock = _connect_unix(path, deadline, alive)
        self.lines = []          # (t, text)
        self.cond = threading.Condition()
        self.closed = False
        self.t0 = t0
        self.log = open(logpath, "a", buffering=1, encoding="utf-8")
        self._partial = b""
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _reader(self):
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self._partial += data
                while b"\n" in self._partial:
                    line, self._partial = self._partial.split(b"\n", 1)
                    text = line.decode("utf-8", "replace").rstrip("\r")
                    t = time.monotonic() - self.t0
                    self.log.write("%9.3f %s\n" % (t, text))
                    with self.cond:
                        self.lines.append((t, text))
                        self.cond.notify_all()
        except OSError:
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait(self, pattern, timeout=DEFAULT_TIMEOUT, since=0):
        """Wait for a line matching the regex PATTERN among the lines from
        index SINCE on; return the re.Match.  Raises QMPTimeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = since
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i][1])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise QMPTimeout("serial: no line matching %r in %.1f s"
                                     % (pattern, timeout))
                if self.closed:
                    raise MachineDied("serial closed while waiting for %r"
                                      % pattern)
                self.cond.wait(min(left, 0.5))

    def find(self, pattern, since=0):
        rx = re.compile(pattern)
        with self.cond:
            return [t for _, t in self.lines[since:] if rx.search(t)]

    def send(self, line):
        self.log.write("%9.3f >>> %s\n" % (time.monotonic() - self.t0, line))
        self.sock.sendall(line.encode() + b"\n")

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(2)
        self.log.close()


class Machine:
    """One QEMU process with a QMP monitor on a unix socket and,
    optionally, its first serial port on another."""

    def __init__(self, binary, args, workdir, name, serial=True,
                 timeout=DEFAULT_TIMEOUT, env=None):
        self.binary = binary
        self.env = env            # added to the environment, or None
        self.args = list(args)
        self.workdir = workdir
        self.name = name
        self.want_serial = serial
        self.timeout = timeout
        self.proc = None
        self.sock = None
        self.serial = None
        self.greeting = None
        self.events = []          # dicts, plus "_t" (arrival time) and "_seq"
        self.replies = {}
        self.cond = threading.Condition()
        self.eof = False
        self.next_id = 0
        self.seq = 0              # arrival order of events and replies
        self.send_lock = threading.Lock()
        self.t0 = None
        self.qmp_path = os.path.join(workdir, name + ".qmp.sock")
        self.serial_path = os.path.join(workdir, name + ".serial.sock")
        self.log_path = os.path.join(workdir, name + ".log")
        self.transcript_path = os.path.join(workdir, name + ".qmp.jsonl")
        self.transcript = None

    # -- process ----------------------------------------------------------

    def command_line(self):
        cl = [self.binary,
              "-chardev", "socket,id=rsqmp,path=%s,server=on,wait=off"
              % self.qmp_path,
              "-mon", "chardev=rsqmp,mode=control"]
        if self.want_serial:
            cl += ["-chardev", "socket,id=rsser0,path=%s,server=on,wait=off,"
                   "logfile=%s.raw" % (self.serial_path,
                                       os.path.join(self.workdir, self.name
                                                    + ".serial")),
                   "-serial", "chardev:rsser0"]
        return cl + self.args

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def launch(self):
        os.makedirs(self.workdir, exist_ok=True)
        for p in (self.qmp_path, self.serial_path):
            if os.path.exists(p):
                os.unlink(p)
        cl = self.command_line()
        self.transcript = open(self.transcript_path, "w", buffering=1,
                               encoding="utf-8")
        log = open(self.log_path, "w")
        log.write("# " + " ".join(cl) + "\n")
        log.flush()
        self.t0 = time.monotonic()
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen(cl, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()
        with _live_lock:
            _live.add(self)
        self._record("launch", {"argv": cl, "pid": self.proc.pid})
        deadline = time.monotonic() + self.timeout
        try:
            self.sock = _connect_unix(self.qmp_path, deadline, self.alive)
            self.reader = threading.Thread(target=self._reader, daemon=True)
            self.reader.start()
            with self.cond:
                while self.greeting is None:
                    self._wait_cond(deadline, "the QMP greeting")
            self.cmd("qmp_capabilities")
            if self.want_serial:
                self.serial = Serial(self.serial_path,
                                     os.path.join(self.workdir,
                                                  self.name + ".serial.log"),
                                     self.t0, deadline, self.alive)
        except Exception:
            self.kill()
            raise
        return self

    def log_tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def kill(self):
        """SIGKILL the process (no questions) and close everything."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close_files()

    def close(self, timeout=5.0):
        """quit through QMP, then SIGTERM, then SIGKILL."""
        if self.alive() and self.sock is not None and not self.eof:
            try:
                self.cmd_raw("quit", timeout=timeout)
            except Exception:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                    self.proc.wait(3)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        self.kill()
        return self.proc.returncode if self.proc else None

    def _close_files(self):
        if self.serial is not None:
            self.serial.close()
            self.serial = None
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        if self.transcript is not None:
            self._record("closed", {"returncode":
                                    self.proc.returncode if self.proc else None})
            self.transcript.close()
            self.transcript = None
        with _live_lock:
            _live.discard(self)

    def __enter__(self):
        return self.launch()

    def __exit__(self, *exc):
        self.close()

    # -- QMP ----------------------------------------------------------------

    def _record(self, direction, obj):
        if self.transcript is not None:
            t = time.monotonic() - self.t0 if self.t0 else 0.0
            try:
                self.transcript.write(json.dumps({"t": round(t, 6),
                                                  "dir": direction,
                                                  "msg": obj}) + "\n")
            except ValueError:
                pass

    def _reader(self):
        buf = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    self._record("in", msg)
                    with self.cond:
                        self.seq += 1
                        if "QMP" in msg:
                            self.greeting = msg
                        elif "event" in msg:
                            msg["_t"] = time.monotonic() - self.t0
                            msg["_seq"] = self.seq
                            self.events.append(msg)
                        elif "id" in msg:
                            msg["_seq"] = self.seq
                            self.replies[msg["id"]] = msg
                        self.cond.notify_all()
        except (OSError, ValueError) as e:
            self._record("reader-error", {"error": str(e)})
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def _wait_cond(self, deadline, what):
        """Called with self.cond held; one bounded wait."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise QMPTimeout("%s: timed out waiting for %s" % (self.name, what))
        if self.eof:
            raise MachineDied("%s: QMP connection closed while waiting for %s"
                              " (qemu: %s)" % (self.name, what,
                                               self.log_tail(5).strip()))
        self.cond.wait(min(left, 0.5))

    def cmd_raw(self, command, args=None, timeout=None):
        """Send COMMAND and return the whole reply ("return" or "error"),
        plus "_seq": its place in the order of arrival of replies and
        events (an event with a smaller _seq came before the reply)."""
        with self.send_lock:
            self.next_id += 1
            rid = "rs-%d" % self.next_id
        msg = {"execute": command, "id": rid}
        if args:
            msg["arguments"] = args
        self._record("out", msg)
        data = json.dumps(msg).encode() + b"\n"
        with self.send_lock:
            if self.sock is None:
                raise MachineDied("%s: not connected" % self.name)
            self.sock.sendall(data)
        deadline = time.monotonic() + (timeout or self.timeout)
        with self.cond:
            while rid not in self.replies:
                self._wait_cond(deadline, "the reply to %s" % command)
            return self.replies.pop(rid)

    def cmd_pipelined(self, commands, timeout=None):
        """Send every (COMMAND, ARGS) of COMMANDS in one write, without
        waiting for a reply in between, so that QEMU reads them together;
        return their whole replies, in the order of COMMANDS."""
        msgs = []
        with self.send_lock:
            for command, args in commands:
                self.next_id += 1
                msg = {"execute": command, "id": "rs-%d" % self.next_id}
                if args:
                    msg["arguments"] = args
                msgs.append(msg)
        for msg in msgs:
            self._record("out", msg)
        data = b"".join(json.dumps(msg).encode() + b"\n" for msg in msgs)
        with self.send_lock:
            if self.sock is None:
                raise MachineDied("%s: not connected" % self.name)
            self.sock.sendall(data)
        deadline = time.monotonic() + (timeout or self.timeout)
        out = []
        with self.cond:
            for msg in msgs:
                while msg["id"] not in self.replies:
                    self._wait_cond(deadline, "the reply to %s"
                                    % msg["execute"])
                out.append(self.replies.pop(msg["id"]))
        return out

    def cmd(self, command, timeout=None, **args):
        """Send COMMAND; return its "return" value or raise QMPError.
        Argument names use _ for - (migrate_cancel keeps its name)."""
        args = {k.replace("_", "-"): v for k, v in args.items()}
        reply = self.cmd_raw(command, args, timeout)
        if "error" in reply:
            raise QMPError(command, reply)
        return reply["return"]

    def cmd_args(self, command, args, timeout=None):
        """Like cmd() with the arguments as a dict, names as they are."""
        reply = self.cmd_raw(command, args, timeout)
        if "error" in reply:
            raise QMPError(command, reply)
        return reply["return"]

    def hmp(self, line, timeout=None):
        return self.cmd_args("human-monitor-command",
                             {"command-line": line}, timeout)

    def status(self):
        r = self.cmd("query-status")
        return r["status"], r["running"]

    def read_u32(self, addr):
        """The 32-bit word at guest-physical ADDR (HMP xp)."""
        out = self.hmp("xp /1wx 0x%x" % addr)
        m = re.search(r":\s*0x([0-9a-fA-F]+)", out)
        if not m:
            raise QMPError("xp", {"error": {"class": "Unparsed",
                                            "desc": out}})
        return int(m.group(1), 16)

    # -- events -----------------------------------------------------------------

    def mark(self):
        with self.cond:
            return len(self.events)

    def events_since(self, mark, names=None):
        with self.cond:
            evs = self.events[mark:]
        if names is not None:
            evs = [e for e in evs if e["event"] in names]
        return evs

    def event_names(self, mark, names=None):
        return [e["event"] for e in self.events_since(mark, names)]

    def wait_event(self, name, since=0, timeout=None, match=None):
        """The first event NAME at index >= SINCE (for which MATCH(event)
        is true, if given).  Raises QMPTimeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        i = since
        with self.cond:
            while True:
                while i < len(self.events):
                    e = self.events[i]
                    i += 1
                    if e["event"] == name and (match is None or match(e)):
                        return e
                self._wait_cond(deadline, "event %s" % name)

    def settle(self, seconds):
        """Let events arrive for SECONDS (a bounded sleep)."""
        time.sleep(seconds)
