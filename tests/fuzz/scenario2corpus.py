#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turn rsctl scenario scripts into fuzz inputs (the format of
tests/fuzz/fuzz_semantics.c, documented in tests/fuzz/README.md).

    scenario2corpus.py SCENARIO_DIR OUT_DIR

Each tests/scenarios/NAME.txt becomes OUT_DIR/NAME.bin.  Commands that need
vCPUs (vcpus, hotplug, unplug), lines rsctl rejects as invalid, comments and
blank lines are left out; `quit` ends the conversion.  Without `#! -S` the
script starts with a start, as rsctl does.  Three hand-made seeds are written
too: extra-badcalls.bin, extra-transitions.bin and
extra-events-lost.bin.
"""
import os
import sys

OP = {name: i for i, name in enumerate([
    'stop', 'start', 'retry', 'cont', 'reset', 'io-error', 'pause', 'lock',
    'trylock', 'unlock', 'unlock-pause', 'wait', 'transition', 'events',
    'badcall', 'recreate'])}
LOCKS = {'debug': 0, 'savevm': 1, 'pre-migrate': 2, 'restore': 3}
PAUSES = {'prelaunch': 1, 'paused': 2, 'watchdog': 3, 'panicked': 4,
          'postmigrate': 5, 'shutdown': 6, 'internal-error': 7}
FOREVER, ASYNC = 1, 0        # timeout operand bytes
CAP_DEFAULT, CAP_64 = 0, 6   # byte 0: ring capacity selector


def convert_line(toks):
    """Bytes for one rsctl command, or None when it has no equivalent."""
    if not toks:
        return None
    cmd, args = toks[0], toks[1:]
    if cmd == 'stop' and not args:
        return [OP['stop'], FOREVER]
    if cmd == 'start' and not args:
        return [OP['start'], 0]
    if cmd == 'start' and args == ['-f']:
        return [OP['start'], 1]
    if cmd in ('retry', 'cont', 'reset') and not args:
        return [OP[cmd]]
    if cmd == 'io-error' and not args:
        return [OP['io-error'], FOREVER]
    if cmd == 'pause' and len(args) == 1 and args[0] in PAUSES:
        return [OP['pause'], PAUSES[args[0]], FOREVER]
    if cmd == 'lock' and len(args) == 1 and args[0] in LOCKS:
        return [OP['trylock'], LOCKS[args[0]], FOREVER]   # rsctl's try form
    if cmd == 'unlock' and len(args) == 1 and args[0] in LOCKS:
        return [OP['unlock'], LOCKS[args[0]]]
    if cmd == 'unlock' and len(args) == 2 and args[0] in LOCKS and args[1] in PAUSES:
        return [OP['unlock-pause'], LOCKS[args[0]], PAUSES[args[1]], FOREVER]
    if cmd == 'status' and not args:
        return [OP['wait'], ASYNC]
    if cmd == 'events' and not args:
        return [OP['events'], 5]   # read up to 6 with the lagging reader
    return None


def convert(path):
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    opts = lines[0][2:].split() if lines and lines[0].startswith('#!') else []
    cap = CAP_64 if 'events' in os.path.basename(path) else CAP_DEFAULT
    out = [cap]
    if '-S' not in opts:
        out += [OP['start'], 0]
    for line in lines:
        if line.startswith('#') or '=>' not in line:
            continue
        cmd = line.split('=>')[0].strip().rstrip('\r')
        toks = cmd.split()
        if toks[:1] == ['quit'] and len(toks) == 1:
            break
        b = convert_line(toks)
        if b is not None:
            out += b
    return bytes(out)


def extras():
    bad = [CAP_DEFAULT]
    for k in range(21):
        bad += [OP['badcall'], k]
    # Invalid arguments through the API: unknown locks and reasons, none
    # where a reason is required, unknown start flags.
    bad += [OP['pause'], 0, ASYNC, OP['pause'], 0xf3, ASYNC, OP['lock'], 4, ASYNC,
            OP['trylock'], 0xf0, ASYNC, OP['unlock'], 5, OP['unlock-pause'], 0, 0, ASYNC,
            OP['start'], 2, OP['start'], 0xf0, OP['recreate'], 1]
    tr = [CAP_DEFAULT]
    # Every command, with valid arguments, on 64-bit words: running, stopped,
    # running just before the edge counter wraps, stopped with io-error, a
    # held lock, PK and LW; running with a full backlog of 1 and PK; stopped
    # with OV and an empty backlog; running with a full backlog of 127; a
    # runnable word with PK; running with edge 2^31-1 (the next edge carries
    # into bit 63); stopped by a reserved lock bit too (its low byte also
    # makes the errno -35, RS_EDEADLK, for rs_strerror()); running with OV,
    # generation 1 and the coalesced count at 511 (the next edge wraps it);
    # paused with OV and an odd coalesced count.  Then an unknown
    # command.  The last byte selects max_backlog (special_backlog[] in
    # fuzz_semantics.c).
    args = [(0, 0), (1, 0), (0, 0), (0, 0), (0, 0), (0, 0), (3, 0), (1, 0), (1, 2), (0, 0)]
    max_1, max_64, max_127 = 0xfa, 0xfd, 0xff
    for word, maxb in ((0x0000000100000000, max_64), (0x0000000000000100, max_64),
                       (0xffffffff00000000, max_64), (0x0000000400300242, max_64),
                       (0x0000000100102000, max_1), (0x0000000200001200, max_64),
                       (0x00000003000fe000, max_127), (0x0000000500100000, max_64),
                       (0x7fffffff00000000, max_64), (0x0000000200000223, max_64),
                       (0x00000005ffc07000, max_64), (0x0000000601801100, max_1)):
        for cmd, (a, b) in enumerate(args):
            tr += ([OP['transition']] + list(word.to_bytes(8, 'little')) +
                   [cmd, a, b, 0, maxb])
    # An invalid max_backlog: 0 and 128.
    for maxb in (0xf0, 0xf1):
        tr += [OP['transition']] + list((0x100).to_bytes(8, 'little')) + [1, 0, 0, 0, maxb]
    ev = [2]   # a ring of 2 events
    # Losses, reported through *lost and as an RS_EVENT_LOST record, and
    # rs_events_wait() with and without a timeout.
    for reader in (0x05, 0x45, 0xc0, 0x85):
        ev += [OP['start'], 0, OP['stop'], ASYNC] * 3 + [OP['events'], reader]
    ev += [OP['events'], 0x80, OP['recreate'], 1, OP['start'], 0, OP['stop'], FOREVER,
           OP['events'], 0x40, OP['events'], 0x40]
    return {'extra-badcalls.bin': bytes(bad), 'extra-transitions.bin': bytes(tr),
            'extra-events-lost.bin': bytes(ev)}


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: scenario2corpus.py SCENARIO_DIR OUT_DIR')
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    n = 0
    for name in sorted(os.listdir(src)):
        if name.endswith('.txt'):
            with open(os.path.join(dst, name[:-4] + '.bin'), 'wb') as f:
                f.write(convert(os.path.join(src, name)))
            n += 1
    for name, data in extras().items():
        with open(os.path.join(dst, name), 'wb') as f:
            f.write(data)
        n += 1
    print('wrote %d corpus files to %s' % (n, dst))


if __name__ == '__main__':
    main()
