#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The seed's story in real QEMU, through QMP (qemu/demo.sh runs this).

    demo.py BINARY GUEST_DIR WORKDIR

Each QMP command is printed before QEMU's answer, then the run state as
query-status reports it (status, and the tuple: locks, io-error, pause
reason) and the run-state events the command caused.
"""

import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import Machine  # noqa: E402

FIRMWARE = ["-L", "/usr/share/seabios", "-L", "/usr/share/qemu",
            "-L", "/usr/lib/ipxe/qemu"]
EVENTS = ("STOP", "RESUME", "BLOCK_IO_ERROR", "GUEST_PANICKED", "MIGRATION")


def state(m):
    st = m.cmd("query-status")
    rs = st.get("runstate", {})
    return "%-15s locks=%s io-error=%s pause=%s" % (
        st["status"], ",".join(rs.get("locks", [])) or "-",
        "yes" if rs.get("io-error") else "no", rs.get("pause-reason", "?"))


def guest_stops(vm, command):
    """Have the guest's init run COMMAND, which stops the VM; show the state
    and the events it caused."""
    mk = vm.mark()
    vm.serial.send(command)
    vm.wait_event("STOP", since=mk, timeout=30)
    time.sleep(0.3)      # let the events that follow STOP arrive
    print("   %s   events: %s" % (state(vm), " ".join(
        vm.event_names(mk, EVENTS))))


def show(m, command, args=None, settle=0.3):
    mk = m.mark()
    print("-> %s%s" % (command, " " + json.dumps(args) if args else ""))
    r = m.cmd_raw(command, args)
    if "error" in r:
        print("<- error: %s" % r["error"]["desc"])
    else:
        print("<- %s" % json.dumps(r["return"]))
    time.sleep(settle)
    evs = [e["event"] + ("(%s)" % e["data"]["status"] if e["event"] ==
                         "MIGRATION" else "")
           for e in m.events_since(mk, EVENTS)]
    print("   %s   events: %s" % (state(m), " ".join(evs) or "none"))
    return r


def say(text):
    print("\n# " + text.replace("\n", "\n# "))


def main():
    binary, gdir, work = sys.argv[1:4]
    with open(os.path.join(gdir, "guest.json")) as f:
        guest = json.load(f)
    base = ["-nodefaults", "-no-user-config", "-display", "none", "-S",
            "-machine", "pc"] + FIRMWARE

    print("== 1. A user's stop while a migration holds the VM")
    loop = guest["loop"]
    src = Machine(binary, base + ["-accel", "tcg", "-m", str(loop["mem_mb"]),
                                  "-bios", loop["bios"]], work, "src",
                  serial=False)
    src.launch()
    try:
        show(src, "cont")
        show(src, "migrate-set-capabilities", {"capabilities": [
            {"capability": "pause-before-switchover", "state": True},
            {"capability": "events", "state": True}]}, settle=0)
        say("The migration stops the VM under its pre-migrate lock and "
            "waits\nbefore the switch-over.")
        mk = src.mark()
        show(src, "migrate", {"uri": "exec:cat > /dev/null"}, settle=0)
        src.wait_event("MIGRATION", since=mk, timeout=60,
                       match=lambda e: e["data"]["status"] == "pre-switchover")
        print("   %s" % state(src))
        say("The user stops the VM meanwhile.  Stock QEMU forgets this "
            "stop.")
        show(src, "stop")
        mk = src.mark()
        show(src, "migrate-continue", {"state": "pre-switchover"}, settle=0)
        src.wait_event("MIGRATION", since=mk, timeout=60,
                       match=lambda e: e["data"]["status"] == "completed")
        time.sleep(0.3)
        say("Migrated away: pre-migrate is released with postmigrate in "
            "one step.\nA plain start must not run a VM that now runs "
            "elsewhere.")
        print("   %s" % state(src))
        show(src, "start")
        show(src, "start", {"force": True})
    finally:
        src.close()

    print("\n== 2. An I/O error, a user's stop, and retry")
    lin = guest["linux"]
    img = os.path.join(work, "disk.img")
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    vm = Machine(binary, base + [
        "-accel", "tcg", "-m", str(lin["mem_mb"]), "-smp", "2",
        "-kernel", lin["kernel"], "-initrd", lin["initrd"],
        "-append", lin["append"], "-no-reboot",
        "-blockdev", "driver=file,filename=%s,node-name=file0" % img,
        "-blockdev", "driver=blkdebug,node-name=dbg0,image=file0,"
        "inject-error.0.event=write_aio,inject-error.0.errno=5,"
        "inject-error.0.once=on",
        "-blockdev", "driver=raw,node-name=disk0,file=dbg0",
        "-device", "virtio-blk-pci,drive=disk0,id=vd0,werror=stop,"
        "rerror=stop", "-device", "pvpanic", "-action", "panic=pause"],
        work, "vm", serial=True)
    vm.launch()
    try:
        show(vm, "start")
        vm.serial.wait(lin["ready_marker"], timeout=180)
        say("The guest writes to its disk; the first write fails (EIO) and "
            "werror=stop\nstops the VM.")
        guest_stops(vm, "write")
        say("The user stops it too, then management retries the I/O.  The "
            "VM stays\npaused: retry clears only the error.")
        show(vm, "stop")
        show(vm, "retry")
        show(vm, "start")
        print("   guest: %s" % vm.serial.wait("RS-WRITE-DONE",
                                              timeout=30).string)

        print("\n== 3. A panicked guest needs a forced start")
        guest_stops(vm, "panic")
        say("A plain start (what a user means by 'resume') is refused; "
            "start -f runs it.")
        show(vm, "start")
        show(vm, "start", {"force": True})
        print("\n-> human-monitor-command info status")
        print(vm.cmd("human-monitor-command",
                     **{"command-line": "info status"}).rstrip())
    finally:
        vm.close()


if __name__ == "__main__":
    main()
