#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turn runstate-bench --cost's JSON into a Markdown table and a gnuplot
script for a plot of work per operation against the vCPU count.

    cost_report.py COST.json OUTDIR

Writes OUTDIR/cost.md, OUTDIR/cost-*.dat and OUTDIR/cost.gp (gnuplot draws
OUTDIR/cost.png from them).  Python standard library only.
"""
import json
import math
import os
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    rows = data["rows"]

    def med(r, who, f):
        return r[who][f]["median"]

    def mx(r, who, f):
        return r[who][f]["max"]

    lines = [
        "Medians over %d cycles (maxima in brackets where they differ); "
        "caller: the thread that stops or starts; total: every thread." % data["cycles"],
        "",
        "| N | k | operation | caller: slots | caller: pins | caller: futex wait/wake "
        "| caller: CAS on word | caller: scans (hint words) | total: slots | total: futex wake "
        "| wave depth (bound) | caller's latency, median |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def cell(r, who, f):
        m, x = med(r, who, f), mx(r, who, f)
        return "%d" % m if m == x else "%d (%d)" % (m, x)

    for r in rows:
        op = r["op"] + (", " + r["start"] if r["start"] else "")
        bound = math.ceil(math.log2(r["vcpus"])) + 1
        lines.append("| %d | %d | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s (%d) | %.1f us |" % (
            r["vcpus"], r["busy"], op,
            cell(r, "caller", "slots"), cell(r, "caller", "pins"),
            cell(r, "caller", "futex_waits"), cell(r, "caller", "futex_wakes"),
            cell(r, "caller", "word_rmws"),
            "%s (%s)" % (cell(r, "caller", "scans"), cell(r, "caller", "hint_words"))
            if "scans" in r["caller"] else "-",
            cell(r, "total", "slots"),
            cell(r, "total", "futex_wakes"),
            cell(r, "total", "tree_depth") if r["op"] == "start" else "-",
            bound, r["caller_ns"]["median"] / 1000.0))
    with open(os.path.join(out, "cost.md"), "w") as f:
        f.write("\n".join(lines) + "\n")

    # One data file per series: N value.
    series = {
        "stop-slots-k1": ("stop", "rest quiet", 1, "caller", "slots"),
        "stop-slots-k4": ("stop", "rest quiet", 4, "caller", "slots"),
        "stop-rmw-k1": ("stop", "rest quiet", 1, "caller", "word_rmws"),
        "start-wakes-busyout-k4": ("start", "busy-out", 4, "caller", "futex_wakes"),
        "start-slots-busyout-k4": ("start", "busy-out", 4, "caller", "slots"),
        "start-total-wakes-all-k1": ("start", "all-parked", 1, "total", "futex_wakes"),
        "start-depth-all-k1": ("start", "all-parked", 1, "total", "tree_depth"),
    }
    for name, (op, start, k, who, f) in series.items():
        with open(os.path.join(out, "cost-%s.dat" % name), "w") as fd:
            for r in rows:
                if r["op"] == op and r["start"] == start and r["busy"] == k:
                    fd.write("%d %d\n" % (r["vcpus"], max(med(r, who, f), 0)))
    gp = """set terminal pngcairo size 1200,480 font ",10"
set output '{o}/cost.png'
set multiplot layout 1,2
set logscale x 2
set logscale y 10
set xlabel 'registered vCPUs (N)'
set key top left
set grid
set yrange [0.5:200000]
set title 'stop, rest quiet: the stopping thread (median)'
plot '{o}/cost-stop-slots-k1.dat' with linespoints title 'slots visited and pinned, 1 busy', \\
     '{o}/cost-stop-slots-k4.dat' with linespoints title 'slots visited and pinned, 4 busy', \\
     '{o}/cost-stop-rmw-k1.dat' with linespoints title 'CASes on the word, 1 busy', \\
     2*x with lines dt 2 title '2N (2 scans of every slot, before the hint)'
set title 'start: the starting thread and the wave (median)'
set yrange [0.5:5000]
plot '{o}/cost-start-wakes-busyout-k4.dat' with linespoints title 'caller: futex wakes (4 busy out, rest parked)', \\
     '{o}/cost-start-slots-busyout-k4.dat' with linespoints title 'caller: slots visited (same)', \\
     '{o}/cost-start-total-wakes-all-k1.dat' with linespoints title 'all threads: futex wakes (all parked)', \\
     '{o}/cost-start-depth-all-k1.dat' with linespoints title 'wave depth (all parked)', \\
     log(x)/log(2)+1 with lines dt 2 title 'log2(N) + 1'
unset multiplot
""".format(o=out)
    with open(os.path.join(out, "cost.gp"), "w") as f:
        f.write(gp)


if __name__ == "__main__":
    main()
