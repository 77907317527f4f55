# SPDX-License-Identifier: GPL-2.0-only
"""A tiny GDB remote serial protocol client for qemu/run-tests (stdlib).

Only what the gdbstub scenario needs: packets with checksums and acks,
the interrupt byte 0x03, and a queue of every packet the stub sends (stop
replies such as "T02thread:01;" arrive unsolicited when the VM stops).
"""

import re
import socket
import threading
import time

__all__ = ["GdbRemote", "GdbTimeout"]


class GdbTimeout(Exception):
    pass


def _frame(payload):
    data = payload.encode("latin-1")
    return b"$" + data + b"#" + b"%02x" % (sum(data) & 0xff)


class GdbRemote:
    def __init__(self, path, timeout=10.0, log=None):
        self.timeout = timeout
        self.log = log               # callable(str) or None
        self.packets = []            # (t, payload), every packet received
        self.acks = 0
        self.cond = threading.Condition()
        self.closed = False
        self.t0 = time.monotonic()
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise GdbTimeout("no gdbstub at %s" % path)
                time.sleep(0.05)
        self.sock = s
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _note(self, what):
        if self.log:
            self.log("gdb %7.3f %s" % (time.monotonic() - self.t0, what))

    def _reader(self):
        buf = b""
        rx = re.compile(rb"\$([^#]*)#([0-9a-fA-F]{2})")
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    break
                buf += data
                while buf:
                    if buf[:1] in (b"+", b"-"):
                        with self.cond:
                            self.acks += buf[:1] == b"+"
                        buf = buf[1:]
                        continue
                    if buf[:1] != b"$":
                        buf = buf[1:]       # noise
                        continue
                    m = rx.match(buf)
                    if not m:
                        break               # incomplete
                    buf = buf[m.end():]
                    payload = m.group(1).decode("latin-1")
                    ok = (sum(m.group(1)) & 0xff) == int(m.group(2), 16)
                    self.sock.sendall(b"+" if ok else b"-")
                    if not ok:
                        continue
                    self._note("<- %s" % payload)
                    with self.cond:
                        self.packets.append((time.monotonic() - self.t0,
                                             payload))
                        self.cond.notify_all()
        except OSError:
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.packets)

    def wait_packet(self, since, timeout=None, pattern=None):
        """The first packet at index >= SINCE (matching the regex PATTERN);
        returns (index, payload).  Raises GdbTimeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        rx = re.compile(pattern) if pattern else None
        i = since
        with self.cond:
            while True:
                while i < len(self.packets):
                    p = self.packets[i][1]
                    i += 1
                    if rx is None or rx.search(p):
                        return i - 1, p
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise GdbTimeout("no gdb packet%s in %.1f s"
                                     % (" matching %r" % pattern if pattern
                                        else "", timeout or self.timeout))
                self.cond.wait(min(left, 0.5))

    def packets_since(self, since):
        with self.cond:
            return [p for _, p in self.packets[since:]]

    def send(self, payload):
        """Send one packet; do not wait for a reply."""
        self._note("-> %s" % payload)
        self.sock.sendall(_frame(payload))

    def request(self, payload, timeout=None, pattern=None):
        """Send one packet and return the next packet received after it."""
        m = self.mark()
        self.send(payload)
        return self.wait_packet(m, timeout, pattern)[1]

    def interrupt(self):
        self._note("-> ^C")
        self.sock.sendall(b"\x03")

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(2)
