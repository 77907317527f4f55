#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Build-time source of a planted-bug library: copy the library's sources
and apply one patch to the copy, so that lib/ itself holds no planted bug.

    plant.py PATCH OUTDIR PREFIX SRC...

Each SRC is copied to OUTDIR/PREFIX-<its name>; PATCH, a unified diff of
one file of lib/ (its +++ line names it), is applied to that file's copy
with patch(1).  Fails, naming the patch, if it does not apply: then the
plant must be redone against the current source (tests/planted/README.md).
"""
import os
import re
import shutil
import subprocess
import sys


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    patch, outdir, prefix, srcs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    with open(patch) as f:
        m = re.search(r'^\+\+\+ b/lib/(\S+)', f.read(), re.M)
    if not m:
        sys.exit('%s: no "+++ b/lib/FILE" line' % patch)
    target = m.group(1)
    found = False
    for src in srcs:
        name = os.path.basename(src)
        out = os.path.join(outdir, prefix + '-' + name)
        if name != target:
            shutil.copyfile(src, out)
            continue
        found = True
        r = subprocess.run(['patch', '--no-backup-if-mismatch', '--silent', '--force',
                            '--reject-file=-', '-o', out, src, patch],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            sys.exit('%s does not apply to lib/%s any more:\n%s' % (patch, target, r.stdout))
    if not found:
        sys.exit('%s patches lib/%s, which is not a library source' % (patch, target))


if __name__ == '__main__':
    main()
