#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turn runstate-bench's JSON into a Markdown summary and a gnuplot script.

    report.py RESULTS.json OUTDIR

writes OUTDIR/summary.md (machine, tables, ratios against the floors, the
goals of issue 5 with met / not met), OUTDIR/data/*.dat and OUTDIR/plot.gp
(gnuplot draws OUTDIR/latency.png from them).  Python standard library only.
"""
import json
import os
import re
import sys

KINDS = ["stop", "start", "pause_short", "lock_unlock", "exclusive"]
IMPLS = ["runstate", "runstate_sig", "qemu_condvar", "qemu_condvar_sig",
         "qemu_exclusive", "ck_brlock", "urcu_qsbr", "spin_floor", "futex_wake_all"]
FAST_IMPLS = ["runstate", "qemu_condvar", "qemu_exclusive", "ck_brlock", "urcu_qsbr",
              "spin_floor", "plain_load"]
# The exclusive goal is set at 2 vCPUs: a section's owner and one other.
EXCL_GOAL_N = 2
# The kick floor's goals (real KVM vCPUs) are judged at 1 vCPU.
KICK_GOAL_N = 1
COLORS = {
    "runstate": "#d62728", "runstate_sig": "#ff9896",
    "qemu_condvar": "#1f77b4", "qemu_condvar_sig": "#aec7e8", "qemu_exclusive": "#17becf",
    "ck_brlock": "#9467bd", "urcu_qsbr": "#2ca02c",
    "spin_floor": "#000000", "futex_wake_all": "#7f7f7f",
}
NAME = re.compile(r"^(\w+)/(\w+)/vcpus:(\d+)$")


def load(path):
    """Per benchmark name: the values to report and the p50 of every
    repetition.  With --benchmark_repetitions, the values are Google
    Benchmark's median aggregates (median over the repetitions of the mean
    time and of each counter); without, the one run."""
    with open(path) as f:
        doc = json.load(f)
    runs, medians, errors = {}, {}, []
    for b in doc["benchmarks"]:
        if b.get("run_type", "iteration") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[b["run_name"]] = b
            continue
        if b.get("error_occurred"):
            errors.append((b["name"], b.get("error_message", "")))
            continue
        runs.setdefault(b["name"], []).append(b)
    lat, fast = {}, {}
    for name, rs in runs.items():
        b = medians.get(name, rs[0])
        m = NAME.match(name)
        if m:
            lat[(m.group(1), m.group(2), int(m.group(3)))] = b
        elif name.startswith("fastpath/"):
            fast[name.split("/", 1)[1]] = (b["real_time"], b.get("vs_plain_load"),
                                           b.get("plain_load_ns"))
    return doc["context"], lat, fast, errors, runs


def fmt_scaled(x, units):
    """x in the first of units, (factor, format) largest first, it reaches;
    the last one below that."""
    if x is None:
        return "-"
    for factor, fmt in units:
        if x >= factor:
            break
    return fmt % (x / factor)


def fmt_ns(ns):
    return fmt_scaled(ns, ((1e6, "%.2f ms"), (1e3, "%.1f us"), (1, "%.0f ns")))


def fmt_fast(ns):
    return "-" if ns is None else "%.3f ns" % ns


def fmt_rate(r):
    return fmt_scaled(r, ((1e6, "%.2f M/s"), (1e3, "%.1f k/s"), (1, "%.0f /s")))


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    # Three decimals near 1: a goal of "at or below" is decided there.
    if r is None:
        return "-"
    return ("%.3fx" if 0.95 <= r < 1.05 else "%.2fx") % r


def plot_or_empty(plots):
    """A gnuplot plot command, or a labelled empty panel."""
    if plots:
        return "plot " + ", \\\n     ".join(plots)
    return ('set label 9 "not in this run" at graph 0.4, graph 0.5\n'
            "unset logscale y\nset yrange [0:1]\nplot -1 notitle\n"
            "unset label 9\nset autoscale y")


def main():
    src, out = sys.argv[1], sys.argv[2]
    ctx, lat, fast, errors, runs = load(src)
    reps = max((len(v) for v in runs.values()), default=1)
    ns = sorted({k[2] for k in lat})
    ncpu = int(ctx.get("num_cpus", 0)) or 1
    # The goals are stated at N = CPUs - 1 (every vCPU on its own CPU, the
    # stopper on the last one); fall back to the nearest N measured.
    goal_n = min(ns, key=lambda n: (abs(n - max(ncpu - 1, 1)), n)) if ns else 1
    excl_n = min(ns, key=lambda n: (abs(n - EXCL_GOAL_N), n)) if ns else EXCL_GOAL_N

    def get(kind, impl, n, key="p50_ns"):
        b = lat.get((kind, impl, n))
        return None if b is None else b.get(key)

    def p50_p99(kind, impl, n):
        p50, p99 = get(kind, impl, n), get(kind, impl, n, "p99_ns")
        return "-" if p50 is None else "%s / %s" % (fmt_ns(p50), fmt_ns(p99))

    os.makedirs(os.path.join(out, "data"), exist_ok=True)
    lines = []
    w = lines.append

    def vcpu_table(cols, cell, heads=None):
        """A row per vCPU count n, a column per c in cols: cell(n, c)."""
        w("| vCPUs | " + " | ".join(heads or cols) + " |")
        w("| ---: | " + " | ".join("---:" for _ in cols) + " |")
        for n in ns:
            w("| %d | %s |" % (n, " | ".join(cell(n, c) for c in cols)))
        w("")

    w("## Machine and run\n")
    w("| | |")
    w("| --- | --- |")
    w("| date | %s |" % ctx.get("date", "?"))
    w("| host | %s |" % ctx.get("host_name", "?"))
    w("| CPUs | %s at %s MHz |" % (ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?")))
    w("| load average at start | %s |" % ", ".join("%.2f" % x for x in ctx.get("load_avg", [])))
    w("| vCPU counts | %s |" % ", ".join(map(str, ns)))
    w("| repetitions | %d (values are medians over them) |" % reps)
    for k in ("cpu_model", "kernel", "source", "load_avg_end", "sweep_seconds"):
        if k in ctx:
            w("| %s | %s |" % (k.replace("_", " "), ctx[k]))
    w("| Google Benchmark library build | %s |" % ctx.get("library_build_type", "?"))
    w("")

    if errors:
        w("**Benchmarks that failed their own checks:**\n")
        for name, msg in errors:
            w("* `%s`: %s" % (name, msg))
        w("")

    w("## Goals (N = %d vCPUs, p50; exclusive sections at N = %d)\n" % (goal_n, excl_n))
    w("A *paired* ratio comes from one run that alternates samples of runstate "
      "and of the reference (the idle one's vCPUs asleep), so both see the same "
      "machine; it is the figure the goal is judged on.  The other ratios divide "
      "medians of separate runs.  Values are medians over the repetitions; the "
      "range is the lowest and highest repetition.\n")
    w("| goal | runstate | reference | ratio | target | met | ratio range |")
    w("| --- | ---: | ---: | ---: | --- | --- | --- |")

    def rng(name, key):
        vals = [r[key] for r in runs.get(name, []) if r.get(key) is not None]
        if not vals:
            return "-"
        return "%s .. %s" % (fmt_ratio(min(vals)), fmt_ratio(max(vals)))

    def goal(text, a, b, r, target, limit, rg, fmt=fmt_ns):
        ok = None if r is None else r <= limit
        w("| %s | %s | %s | %s | %s | %s | %s |" % (
            text, fmt(a), fmt(b), fmt_ratio(r), target,
            "?" if ok is None else ("yes" if ok else "**no**"), rg))

    def paired(kind, ref, n=goal_n):
        name = "%s/runstate/vcpus:%d" % (kind, n)
        b = lat.get((kind, "runstate", n), {})
        return (b.get("p50_ns"), b.get("%s_p50_ns" % ref), b.get("vs_%s" % ref),
                rng(name, "vs_%s" % ref))

    fr = fast.get("runstate", (None, None, None))
    goal("fastpath/runstate vs plain_load (paired)", fr[0], fr[2], fr[1], "<= 1.2x", 1.2,
         rng("fastpath/runstate", "vs_plain_load"), fmt_fast)
    a, b, r, rg = paired("stop", "spin_floor")
    goal("stop/runstate vs spin_floor (paired)", a, b, r, "<= 2x", 2.0, rg)
    # The same goal in each of the machine's two modes: the samples that saw
    # each (classified by their own cross-CPU probe, bench.c mode_counters()).
    for mode in ("fast", "slow"):
        key = "vs_spin_floor_%s" % mode
        b = lat.get(("stop", "runstate", goal_n), {})
        if b.get(key) is not None:
            goal("stop/runstate vs spin_floor, samples in the %s mode (paired)" % mode,
                 None, None, b.get(key), "<= 2x", 2.0, rng("stop/runstate/vcpus:%d" % goal_n, key))
    a, b, r, rg = paired("stop", "qemu_condvar")
    goal("stop/runstate vs qemu_condvar (paired)", a, b, r, "<= 0.25x", 0.25, rg)
    a, b = get("stop", "runstate_sig", goal_n), get("stop", "qemu_condvar_sig", goal_n)
    goal("stop/runstate_sig vs qemu_condvar_sig (signal kicks; not a stated goal)",
         a, b, ratio(a, b), "(<= 0.25x)", 0.25, "-")
    a, b, r, rg = paired("start", "futex_wake_all")
    goal("start/runstate vs futex_wake_all, parked (paired)", a, b, r, "<= 1x", 1.0, rg)
    a, b, r, rg = paired("pause_short", "spin_floor")
    goal("pause_short/runstate vs spin_floor (paired)", a, b, r, "close: <= 2x", 2.0, rg)
    a, b, r, rg = paired("lock_unlock", "spin_floor")
    goal("lock_unlock/runstate vs spin_floor (paired; not a stated goal)", a, b, r,
         "(<= 2x)", 2.0, rg)
    a, b, r, rg = paired("exclusive", "qemu_exclusive", excl_n)
    goal("exclusive/runstate vs qemu_exclusive, %d vCPUs (paired)" % excl_n, a, b, r,
         "<= 0.5x", 0.5, rg)
    # Real vCPUs: runstate_kvm against the kick itself, judged at 1 vCPU.
    for kind, target, limit in (("stop", "<= 1.3x", 1.3), ("start", "<= 1.2x", 1.2)):
        b = lat.get((kind, "runstate_kvm", KICK_GOAL_N))
        if b is None:
            continue
        goal("%s/runstate_kvm vs kick_floor_kvm, %d vCPU (paired)" % (kind, KICK_GOAL_N),
             b.get("p50_ns"), b.get("kick_floor_kvm_p50_ns"), b.get("vs_kick_floor_kvm"),
             target, limit, rng("%s/runstate_kvm/vcpus:%d" % (kind, KICK_GOAL_N),
                                "vs_kick_floor_kvm"))
    w("")

    w("## fastpath: one \"may I run?\" check\n")
    w("Each run interleaves batches of the implementation's check with batches "
      "of plain_load's; the ratio is taken within the run.\n")
    w("| implementation | ns per check | plain_load in the same run | ratio |")
    w("| --- | ---: | ---: | ---: |")
    for impl in FAST_IMPLS:
        if impl in fast:
            w("| %s | %s | %s | %s |" % (impl, fmt_fast(fast[impl][0]), fmt_fast(fast[impl][2]),
                                         fmt_ratio(fast[impl][1])))
    w("")

    for kind in KINDS:
        impls = [i for i in IMPLS if any((kind, i, n) in lat for n in ns)]
        w("## %s: p50 / p99\n" % kind)
        vcpu_table(impls, lambda n, i: p50_p99(kind, i, n))
        if kind == "start":
            w("The start call alone (p50; it returns before the vCPUs run):\n")
            vcpu_table(impls, lambda n, i: fmt_ns(get(kind, i, n, "call_p50_ns")))
        if kind == "exclusive":
            w("The first of each sample's two sections (p50; not the sample: "
              "the first after a paired world woke up):\n")
            vcpu_table(impls, lambda n, i: fmt_ns(get(kind, i, n, "first_p50_ns")))
        rs_impls = [i for i in ("runstate", "runstate_sig") if i in impls]
        if any(get(kind, i, n, "parks_per_op") is not None for i in rs_impls for n in ns):
            w("runstate's own counters per sample (vCPU futex sleeps / wakes; the "
              "sample's untimed set-up included, the pairing not):\n")

            def per_op(n, i):
                p, k = get(kind, i, n, "parks_per_op"), get(kind, i, n, "wakes_per_op")
                return "-" if p is None else "%.2f / %.2f" % (p, k)
            vcpu_table(rs_impls, per_op)
        refs = sorted({k[len("vs_"):] for n in ns for k in lat.get((kind, "runstate", n), {})
                       if k.startswith("vs_") and not k.endswith(("_fast", "_slow"))})
        for ref in refs:
            w("Paired with %s in the same run (p50 runstate / p50 %s / ratio):\n" % (ref, ref))
            w("| vCPUs | runstate | %s | ratio |" % ref)
            w("| ---: | ---: | ---: | ---: |")
            for n in ns:
                b = lat.get((kind, "runstate", n), {})
                if b.get("vs_%s" % ref) is None:
                    continue    # not paired at this N (oversubscribed)
                w("| %d | %s | %s | %s |" % (n, fmt_ns(b.get("p50_ns")),
                                             fmt_ns(b.get("%s_p50_ns" % ref)),
                                             fmt_ratio(b.get("vs_%s" % ref))))
            w("")
        name_at = lambda n: "%s/runstate/vcpus:%d" % (kind, n)
        if any(r.get("probe_p50_ns") is not None for n in ns for r in runs.get(name_at(n), [])):
            w("The machine's mode in each repetition (cross-CPU round trip probed before "
              "each sample, p50; the share of runstate's samples in the slow mode; the "
              "paired ratios within each mode, when the repetition saw both):\n")
            w("| vCPUs | repetition | probe p50 | slow share | " +
              " | ".join("vs %s (all / fast / slow)" % ref for ref in refs) + " |")
            w("| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in refs) + " |")
            for n in ns:
                for i, r in enumerate(runs.get(name_at(n), [])):
                    if r.get("probe_p50_ns") is None:
                        continue
                    w("| %d | %d | %s | %.0f%% | %s |" % (
                        n, i + 1, fmt_ns(r["probe_p50_ns"]), 100 * r.get("slow_share", 0),
                        " | ".join("%s / %s / %s" % tuple(fmt_ratio(r.get("vs_%s%s" % (ref, m)))
                                                         for m in ("", "_fast", "_slow"))
                                   for ref in refs)))
            w("")
        floors = [f for f in ("spin_floor", "futex_wake_all", "qemu_condvar", "qemu_exclusive")
                  if f in impls]
        w("Ratios of the p50 medians of separate runs, runstate against: " +
          ", ".join(floors) + "\n")
        vcpu_table(floors,
                   lambda n, f: fmt_ratio(ratio(get(kind, "runstate", n), get(kind, f, n))),
                   ["runstate / " + f for f in floors])

    impls = [i for i in IMPLS if any(("storm", i, n) in lat for n in ns)]
    w("## storm: guest slices per second while stop/start runs continuously\n")
    vcpu_table(impls, lambda n, i: fmt_rate(get("storm", i, n, "slices_per_s")))
    w("Share of the undisturbed rate kept (slices_per_s / free_slices_per_s, the "
      "same vCPUs measured alone for 10 ms first):\n")

    def kept(n, i):
        r = ratio(get("storm", i, n, "slices_per_s"), get("storm", i, n, "free_slices_per_s"))
        return "-" if r is None else "%.0f%%" % (100 * r)
    vcpu_table(impls, kept)
    w("stop/start cycles per second in the same runs:\n")
    vcpu_table(impls, lambda n, i: fmt_rate(get("storm", i, n, "cycles_per_s")))

    kvm = ["runstate_kvm", "qemu_condvar_kvm", "kick_floor_kvm"]
    kns = sorted({k[2] for k in lat if k[1] in kvm})
    if kns:
        w("## Real vCPUs (KVM): p50 / p99\n")
        w("stress/kvm's VM and guest.  kick_floor_kvm is the kick and the wait "
          "alone (stop: signal every vCPU out of KVM_RUN, spin until each "
          "acknowledged; start: one FUTEX_WAKE each, until each entered KVM_RUN). "
          "runstate_kvm's rows measure qemu_condvar_kvm and kick_floor_kvm "
          "alternately in the same run (ratio of the p50s).\n")
        w("| benchmark | vCPUs | runstate_kvm | qemu_condvar_kvm | kick_floor_kvm "
          "| paired: runstate_kvm / qemu_condvar_kvm | ratio "
          "| paired: runstate_kvm / kick_floor_kvm | ratio |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for kind in ("stop", "start"):
            for n in kns:
                cells = [p50_p99(kind, i, n) for i in kvm]
                b = lat.get((kind, "runstate_kvm", n), {})
                w("| %s | %d | %s | %s / %s | %s | %s / %s | %s |" % (
                    kind, n, " | ".join(cells), fmt_ns(b.get("p50_ns")),
                    fmt_ns(b.get("qemu_condvar_kvm_p50_ns")),
                    fmt_ratio(b.get("vs_qemu_condvar_kvm")),
                    fmt_ns(b.get("p50_ns")), fmt_ns(b.get("kick_floor_kvm_p50_ns")),
                    fmt_ratio(b.get("vs_kick_floor_kvm"))))
        w("")
        if any(get("stop", i, n, "stopper_sleeps_per_op") is not None
               for i in kvm for n in kns):
            w("How often the stopping thread slept inside the stop call "
              "(voluntary context switches per sample):\n")
            vcpu_table_kvm = [i for i in kvm if any(("stop", i, n) in lat for n in kns)]
            w("| vCPUs | " + " | ".join(vcpu_table_kvm) + " |")
            w("| ---: | " + " | ".join("---:" for _ in vcpu_table_kvm) + " |")
            for n in kns:
                w("| %d | %s |" % (n, " | ".join(
                    "-" if get("stop", i, n, "stopper_sleeps_per_op") is None else
                    "%.2f" % get("stop", i, n, "stopper_sleeps_per_op")
                    for i in vcpu_table_kvm)))
            w("")

    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines))

    # Data for gnuplot: one file per (kind, impl): N p50_us p99_us, or N
    # slices_per_s for the storm.
    series = {}
    for kind in KINDS + ["storm"]:
        for impl in IMPLS:
            rows = []
            for n in ns:
                b = lat.get((kind, impl, n))
                if b is None:
                    continue
                if kind == "storm":
                    if b.get("slices_per_s"):
                        rows.append("%d %g" % (n, b["slices_per_s"]))
                elif b.get("p50_ns") is not None:
                    rows.append("%d %g %g" % (n, max(b["p50_ns"], 1) / 1e3,
                                              max(b["p99_ns"], 1) / 1e3))
            if rows:
                path = os.path.join(out, "data", "%s-%s.dat" % (kind, impl))
                with open(path, "w") as f:
                    f.write("\n".join(rows) + "\n")
                series.setdefault(kind, []).append(impl)
    with open(os.path.join(out, "data", "fastpath.dat"), "w") as f:
        for impl in FAST_IMPLS:
            if impl in fast:
                f.write('"%s" %g %g\n' % (impl, fast[impl][0], fast[impl][1] or 0))

    gp = []
    g = gp.append
    g('set terminal pngcairo size 1400,1680 font "sans,9" noenhanced')
    g('set output "%s"' % os.path.join(out, "latency.png"))
    g('set multiplot layout 4,2 title "runstate-bench: %s CPUs, %s (noisy shared machine: '
      'read ratios within this run)"' % (ctx.get("num_cpus", "?"), ctx.get("date", "")[:10]))
    g("set logscale x 2")
    g("set grid")
    g("set key top left font \",9\" opaque box")
    g("set xtics (%s)" % ", ".join("\"%d\" %d" % (n, n) for n in ns))
    g("set xrange [%g:%g]" % (min(ns) / 1.3 if ns else 0.7, max(ns) * 1.3 if ns else 10))
    titles = {
        "stop": "stop: call until every vCPU is out",
        "start": "start: call until the last parked vCPU runs guest code",
        "pause_short": "pause_short: stop, start at once, until all run again",
        "lock_unlock": "lock_unlock: internal lock + unlock round trip",
        "exclusive": "exclusive: a section's begin + end from vCPU 0, the others busy",
    }
    for kind in KINDS:
        g("set logscale y 10")
        g('set title "%s (solid p50, dashed p99)"' % titles[kind])
        g('set xlabel "vCPUs"')
        g('set ylabel "microseconds"')
        plots = []
        for impl in series.get(kind, []):
            d = os.path.join(out, "data", "%s-%s.dat" % (kind, impl))
            c = COLORS.get(impl, "#333333")
            plots.append('"%s" using 1:2 with linespoints lw 2 pt 7 ps 0.8 lc rgb "%s" title "%s"'
                         % (d, c, impl))
            plots.append('"%s" using 1:3 with lines lw 1 dt 2 lc rgb "%s" notitle' % (d, c))
        g(plot_or_empty(plots))
    g("set key bottom right")
    g("set title \"storm: guest slices per second during continuous stop/start\"")
    g('set ylabel "slices / s"')
    plots = []
    for impl in series.get("storm", []):
        d = os.path.join(out, "data", "storm-%s.dat" % impl)
        plots.append('"%s" using 1:2 with linespoints lw 2 pt 7 ps 0.8 lc rgb "%s" title "%s"'
                     % (d, COLORS.get(impl, "#333333"), impl))
    g(plot_or_empty(plots))
    g("unset logscale")
    g("unset key")
    g("unset xrange")
    g("set xtics auto")
    g("set logscale y 10")
    g('set title "fastpath: one check, ns (and ratio to plain_load in the same run)"')
    g('set xlabel ""')
    g('set ylabel "ns per check"')
    g("set style fill solid 0.7")
    g("set boxwidth 0.6")
    g("set yrange [0.1:*]")
    if any(impl in fast for impl in FAST_IMPLS):
        g('plot "%s" using 0:2:xtic(1) with boxes lc rgb "#d62728" notitle, '
          '"" using 0:2:(sprintf("%%.2f ns, %%.2fx", $2, $3)) with labels offset 0,1 notitle'
          % os.path.join(out, "data", "fastpath.dat"))
    else:
        # A --filter that leaves no fastpath row: an empty panel, not a
        # gnuplot error ("x range is invalid") that fails bench/run.
        g(plot_or_empty([]))
    g("unset multiplot")
    with open(os.path.join(out, "plot.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
