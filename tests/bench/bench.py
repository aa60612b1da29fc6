"""bench.py — `make bench`: cnnc beside PyTorch on this machine, in one run,
measured against the targets of issue 5.  Writes BENCHMARKS.md.

What it measures, in --rounds rounds (3) of --reps repetitions each (3;
each repetition about --seconds long), cnnc and PyTorch taking turns round
by round, on the same number of threads (default: the cores this process
may run on).  A figure is the median of its rounds' medians, a ratio the
median of the rounds' ratios: a burst of load from another tenant of
these shared machines falls on one round of both sides rather than on all
of one side's repetitions.  It measures:

  - the machine's FMA peak, on 1 thread and on all of them (bench peak);
  - LeNet-5 (batch 64, 1x28x28) and ResNet-8 (batch 128, 3x32x32) training
    images/s: train step + the train block's optimizer update;
  - inference images/s at batch 256 and batch-1 latency (the networks
    compiled with --batch 256 and --batch 1);
  - the convolution N=64, C=K=64, 32x32, 3x3, padding 1: forward,
    backward-data and backward-weights GFLOP/s and % of the measured peak
    (cnnc: differences between the four tests/bench/conv_*.cnn networks,
    see bench.c; PyTorch: F.conv2d and aten.convolution_backward);
  - cnnc's compile time (`cnnc X.cnn -o X.so`, median of 5 runs);
  - peak resident memory of LeNet-5 training, each side in its own process;
  - the arena size of every compiled network.

PyTorch runs in the environment it is fastest in on these machines:
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, OPENBLAS_NUM_THREADS=1,
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (DESIGN.md section 7) — for its own
processes only.  cnnc runs in the environment as found.  Without an
importable torch the cnnc figures are still measured and the report says so.

usage: /usr/bin/python3 tests/bench/bench.py BUILD_DIR [--quick] [--threads N]
           [--rounds K] [--reps R] [--seconds S] [--out FILE]
--quick is a smoke run (short repetitions, one compile per network) that
writes BUILD_DIR/bench-out/BENCHMARKS.md unless --out says otherwise.  Every
run also writes its raw figures to BUILD_DIR/bench-out/results.json;
--report RESULTS.json rewrites the report from such a file without measuring.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYTHON = "/usr/bin/python3"
TORCH_BENCH = os.path.join("tests", "bench", "torch_bench.py")

# key, name, source, input shape for the report
NETWORKS = [
    ("lenet5", "LeNet-5", "examples/lenet5.cnn", "1×28×28"),
    ("resnet8", "ResNet-8", "examples/resnet8.cnn", "3×32×32"),
]
INFER_BATCH = 256

# The convolution: its shape and the four networks bench.c's conv mode takes.
CONV = {"n": 64, "c": 64, "k": 64, "hw": 32, "r": 3}
CONV_NETS = ["conv_first", "conv_first_base", "conv_second", "conv_second_base"]

# Issue 5's targets: (what, threshold, higher is better).
TARGETS = {
    "lenet5_train": ("≥ 3× PyTorch", 3.0, True),
    "lenet5_infer": ("≥ 3× PyTorch", 3.0, True),
    "lenet5_latency": ("≤ 15 µs", 15.0, False),
    "resnet8_train": ("≥ 2× PyTorch", 2.0, True),
    "resnet8_infer": ("≥ 1.5× PyTorch", 1.5, True),
    "conv_fwd": ("≥ 85% of peak", 85.0, True),
    "conv_bwd_data": ("≥ 75% of peak", 75.0, True),
    "conv_bwd_weights": ("≥ 75% of peak", 75.0, True),
    "lenet5_compile": ("≤ 0.5 s", 0.5, False),
    "resnet8_compile": ("≤ 2 s", 2.0, False),
    "lenet5_rss": ("≤ 1/10 of PyTorch's", 0.1, False),
}


# ---- running things ----------------------------------------------------------

def log(msg):
    print(msg, flush=True)


FAILED = []  # commands that failed; the run goes on and exits 1 at the end


def run(cmd, env=None):
    """Run cmd in the repository; its stdout, or None (reported) on failure."""
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-2000:] + p.stderr[-2000:])
        log("bench: FAILED (exit %d): %s" % (p.returncode, " ".join(cmd)))
        FAILED.append(" ".join(cmd))
        return None
    return p.stdout


def parse_result(out):
    """The "result key value ..." line of bench.c / torch_bench.py as a dict."""
    if out is None:
        return None
    for line in out.splitlines():
        if line.startswith("result "):
            words = line.split()[1:]
            d = {}
            for k, v in zip(words[0::2], words[1::2]):
                try:
                    d[k] = float(v)
                except ValueError:
                    d[k] = v
            return d
    return None


def torch_env():
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    return env


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = args.build
        self.cnnc = os.path.join(args.build, "cnnc")
        self.bench = os.path.join(args.build, "bench")
        self.outdir = os.path.join(args.build, "bench-out")
        self.timing = ["--threads", str(args.threads), "--reps", str(args.reps),
                       "--seconds", str(args.seconds)]
        self.torch_version = None

    def compile(self, src, out, *extra):
        return run([self.cnnc, src, "-o", out] + list(extra)) is not None

    def cnnc_bench(self, *argv):
        return parse_result(run([self.bench] + list(argv) + self.timing))

    def torch_bench(self, *argv):
        if not self.torch_version:
            return None
        return parse_result(run([PYTHON, TORCH_BENCH] + list(argv) + self.timing,
                                env=torch_env()))


# ---- the measurements --------------------------------------------------------

def measure_peak(b):
    res = {}
    for threads in sorted({1, b.args.threads}):
        out = run([b.bench, "peak", "--threads", str(threads), "--reps", str(b.args.reps),
                   "--seconds", str(min(b.args.seconds, 0.5))])
        r = res[str(threads)] = parse_result(out)
        if r:
            log("FMA peak, %d thread%s: %.1f GFLOP/s (%s)" % (
                threads, "s" if threads > 1 else "", r["gflops"], r["isa"]))
    return res


def merge(results):
    """One result from rounds' results: each numeric field's median (None
    when a round failed)."""
    if not results or any(r is None for r in results):
        return None
    out = dict(results[0])
    for k, v in out.items():
        if isinstance(v, float):
            out[k] = statistics.median(r[k] for r in results)
    return out


def paired(cnnc, torch, field, invert=False):
    """The median over rounds of cnnc's field over PyTorch's (PyTorch's over
    cnnc's with invert), or None."""
    if not cnnc or not torch or any(r is None for r in cnnc + torch):
        return None
    ratios = [(t[field] / c[field]) if invert else (c[field] / t[field])
              for c, t in zip(cnnc, torch) if c[field] > 0 and t[field] > 0]
    return statistics.median(ratios) if len(ratios) == len(cnnc) else None


def alternate_once(b, k, first, second):
    """Round k of alternate(): (first(), second()), called in the round's order."""
    if k % 2 == 0:
        x = first()
        return x, second()
    y = second()
    return first(), y


def alternate(b, first, second):
    """first() and second() called in turns for b.args.rounds rounds, the
    one that goes first swapped every round; their results as two lists."""
    a, c = [], []
    for k in range(b.args.rounds):
        x, y = alternate_once(b, k, first, second)
        a.append(x)
        c.append(y)
    return a, c


def compile_sample(b, nets):
    """One timed `cnnc X.cnn -o X.so` of each network into nets[key]
    ("compile_runs"; "compile_failed" where it does not compile).  main()
    takes the samples at points spread over the whole run, so that their
    median is not that of a few seconds of another tenant's load."""
    for key, name, src, _ in NETWORKS:
        r = nets.setdefault(key, {"compile_runs": []})
        if r.get("compile_failed") or len(r["compile_runs"]) >= b.args.compile_reps:
            continue
        t0 = time.perf_counter()
        if not b.compile(src, os.path.join(b.outdir, key + ".so")):
            r["compile_failed"] = True
            log("%s: does not compile" % name)
            continue
        r["compile_runs"].append(time.perf_counter() - t0)
        r["compile_s"] = statistics.median(r["compile_runs"])


def measure_network(b, key, name, src, r):
    """Throughput, latency and memory of network key (compiled already by
    compile_sample) into r."""
    stem = os.path.join(b.outdir, key)
    if r.get("compile_failed"):
        log("%s: does not compile; skipped" % name)
        return r
    ok_json = run([b.cnnc, src, "--emit", "json", "-o", stem + ".json"]) is not None
    ok_infer = b.compile(src, "%s_b%d.so" % (stem, INFER_BATCH), "--batch", str(INFER_BATCH))
    ok_b1 = b.compile(src, stem + "_b1.so", "--batch", "1")
    # (what, cnnc arguments, PyTorch arguments)
    cases = [("train", ["train", stem + ".so"], ["train", stem + ".json"])]
    if ok_infer:
        cases.append(("infer", ["forward", "%s_b%d.so" % (stem, INFER_BATCH)],
                      ["forward", stem + ".json", "--batch", str(INFER_BATCH)]))
    if ok_b1:
        cases.append(("latency", ["forward", stem + "_b1.so"],
                      ["forward", stem + ".json", "--batch", "1"]))
    for what, cnnc_args, torch_args in cases:
        cs, ts = alternate(b, lambda: b.cnnc_bench(*cnnc_args),
                           lambda: b.torch_bench(*torch_args) if ok_json else None)
        r["cnnc_" + what] = c = merge(cs)
        r["torch_" + what] = t = merge(ts)
        field = "us_per_call" if what == "latency" else "img_s"
        r["ratio_" + what] = paired(cs, ts, field, invert=what == "latency")
        if c:
            log("  %-8s cnnc    %10.1f img/s %10.1f us/call  peak RSS %6d KiB  arena %d B" %
                (what, c["img_s"], c["us_per_call"], c["peak_rss_kib"], c["arena_bytes"]))
        if t:
            log("  %-8s PyTorch %10.1f img/s %10.1f us/call  peak RSS %6d KiB" %
                (what, t["img_s"], t["us_per_call"], t["peak_rss_kib"]))
    return r


def measure_conv(b):
    sos = []
    for net in CONV_NETS:
        so = os.path.join(b.outdir, net + ".so")
        # the forward entry layer by layer over the whole batch, as the
        # train step computes it: forward is subtracted from a train step.
        # --keep-pads: conv_second's batch norm would write the padded
        # input of the convolution itself, and the pad that conv_first keeps
        # (its input is the network's) would be subtracted from
        # backward-data.
        if not b.compile(os.path.join("tests", "bench", net + ".cnn"), so,
                         "--forward-chunk", str(CONV["n"]), "--keep-pads"):
            log("conv: %s does not compile; skipped" % net)
            return {}
        sos.append(so)
    # each round: the all-threads peak, then both sides' convolution, so
    # that a round's percentages are of the peak the machine gave then
    peaks, cs, ts = [], [], []
    for k in range(b.args.rounds):
        peaks.append(parse_result(run([b.bench, "peak", "--threads", str(b.args.threads),
                                       "--reps", str(b.args.reps), "--seconds",
                                       str(min(b.args.seconds, 0.5))])))
        c, t = alternate_once(b, k, lambda: b.cnnc_bench("conv", *sos), lambda: b.torch_bench(
            "conv", "--n", str(CONV["n"]), "--c", str(CONV["c"]), "--k", str(CONV["k"]),
            "--hw", str(CONV["hw"])))
        cs.append(c)
        ts.append(t)
    r = {"cnnc": merge(cs), "torch": merge(ts), "peaks": [get(x, "gflops") for x in peaks]}
    for k in ("fwd", "bwd_data", "bwd_weights"):
        for side, runs in (("cnnc", cs), ("torch", ts)):
            pct = [100 * conv_flops() / x[k + "_us"] * 1e-3 / pk["gflops"]
                   for x, pk in zip(runs, peaks) if x and pk and x[k + "_us"] > 0]
            r["%s_%s_pct" % (side, k)] = statistics.median(pct) if len(pct) == len(runs) \
                else None
        r["ratio_" + k] = paired(cs, ts, k + "_us", invert=True)
    for side in ("cnnc", "torch"):
        if r[side]:
            log("conv %-7s forward %.1f us, backward-data %.1f us, backward-weights %.1f us" % (
                side, r[side]["fwd_us"], r[side]["bwd_data_us"], r[side]["bwd_weights_us"]))
    return r


# ---- the report ----------------------------------------------------------------

def status(key, value):
    """'met' / 'not met' for TARGETS[key] and a measured value (None: unknown)."""
    if value is None:
        return "–"
    _, threshold, higher = TARGETS[key]
    ok = value >= threshold if higher else value <= threshold
    return "met" if ok else "**not met**"


def get(d, *keys):
    for k in keys:
        if not d:
            return None
        d = d.get(k)
    return d


def fmt(v, spec="%.0f", none="–"):
    return none if v is None else spec % v


def conv_flops():
    c = CONV
    return 2.0 * c["n"] * c["k"] * c["c"] * c["r"] * c["r"] * c["hw"] * c["hw"]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def mem_total_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def commit():
    def git(*a):
        return subprocess.run(["git"] + list(a), cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    h = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md"):
        h += " (with uncommitted changes)"
    return h


def write_report(a, res):
    """BENCHMARKS.md (a.out) from the results of one run."""
    peak, nets, conv, meta = res["peak"], res["nets"], res["conv"], res["meta"]
    T = meta["threads"]
    tv = meta["torch_version"]
    L = []
    add = L.append
    tally = []  # (key, status)

    def row_status(key, value):
        s = status(key, value)
        tally.append((key, s))
        return s

    add("# Benchmarks\n")
    if meta["quick"]:
        add("**A `--quick` smoke run: short repetitions, one compile per network. "
            "Not figures to quote.**\n")
    add("Written by `make bench` (tests/bench/bench.py) on %s at commit %s.\n" %
        (meta["date"], meta["commit"]))
    add("- Machine: %s, %d cores, %s GiB, Linux %s; FMA peak measured with %s FMA." %
        (cpu_name(), os.cpu_count() or 0, "%.0f" % mem_total_gib(), platform.release(),
         get(peak, "1", "isa") or "?"))
    add("- Threads: %d for both cnnc (`cnn_ctx_create(m, %d)`) and PyTorch "
        "(`torch.set_num_threads(%d)`)." % (T, T, T))
    rounds = meta.get("rounds", 1)
    add("- Each figure is the median of %d round%s of %d repetitions of about %.2g s each "
        "(each round's median; a warm-up repetition sets the number of calls per "
        "repetition); cnnc and PyTorch took turns round by round, and a ratio is the median "
        "of the rounds' ratios.  Load average %s at the start, %s at the end: these "
        "machines are shared, so compare ratios from one run, not absolute figures across "
        "runs." % (rounds, "s" if rounds > 1 else "", meta["reps"], meta["seconds"],
                   meta["load_start"], meta["load_end"]))
    if tv:
        add("- PyTorch %s (Debian python3-torch, /usr/bin/python3), run with OPENBLAS_CORETYPE "
            "and OPENBLAS_L2_SIZE unset, OPENBLAS_NUM_THREADS=1, "
            "GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (its fastest environment here); cnnc in the "
            "environment as found." % tv)
    else:
        add("- **PyTorch (python3-torch) is not importable: cnnc figures only, no ratios.**")
    add("- Ratios: cnnc / PyTorch for throughput (above 1: cnnc is faster), PyTorch / cnnc "
        "for latency (above 1: cnnc is faster), cnnc / PyTorch for memory (below 1: cnnc "
        "needs less).  Total run time %.0f s." % meta["elapsed"])
    for cmd in meta.get("failed", []):
        add("- **Failed, figures missing:** `%s`" % cmd)
    add("")
    add("TALLY")  # replaced below

    # FMA peak
    add("## Machine peak (FMA microbenchmark)\n")
    add("| threads | GFLOP/s | GFLOP/s per core |")
    add("|---|---|---|")
    for t in sorted(int(k) for k in peak):
        g = get(peak, str(t), "gflops")
        add("| %d | %s | %s |" % (t, fmt(g, "%.1f"), fmt(g / t if g else None, "%.1f")))
    add("")

    def ratio(x, y):
        return x / y if x and y else None

    def xfmt(v):
        return fmt(v, "%.2f×")

    # training and inference
    for section, what, title in (
            ("Training", "train", "train step + optimizer update, images/s"),
            ("Inference", "infer", "forward pass, evaluation mode, batch %d, images/s" %
             INFER_BATCH)):
        add("## %s (%s)\n" % (section, title))
        add("| network | input | batch | cnnc | PyTorch | cnnc / PyTorch | target | status |")
        add("|---|---|---|---|---|---|---|---|")
        for key, name, _, shape in NETWORKS:
            r = nets.get(key, {})
            c, t = get(r, "cnnc_" + what, "img_s"), get(r, "torch_" + what, "img_s")
            batch = get(r, "cnnc_" + what, "batch")
            k = "%s_%s" % (key, what)
            x = r.get("ratio_" + what, ratio(c, t))
            add("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, shape, fmt(batch, "%d"), fmt(c), fmt(t), xfmt(x),
                TARGETS[k][0] if k in TARGETS else "–",
                row_status(k, x) if k in TARGETS else "–"))
        add("")

    add("## Batch-1 latency (forward pass, one image, µs)\n")
    add("| network | cnnc | PyTorch | PyTorch / cnnc | target | status |")
    add("|---|---|---|---|---|---|")
    for key, name, _, _ in NETWORKS:
        r = nets.get(key, {})
        c, t = get(r, "cnnc_latency", "us_per_call"), get(r, "torch_latency", "us_per_call")
        k = key + "_latency"
        add("| %s | %s | %s | %s | %s | %s |" % (
            name, fmt(c, "%.1f"), fmt(t, "%.1f"), xfmt(r.get("ratio_latency", ratio(t, c))),
            TARGETS[k][0] if k in TARGETS else "–", row_status(k, c) if k in TARGETS else "–"))
    add("")

    # the convolution
    peak_t = get(peak, str(T), "gflops")
    add("## The convolution N=%d, C=K=%d, %d×%d, 3×3, padding 1 (%.2f GFLOP per pass)\n" %
        (CONV["n"], CONV["c"], CONV["hw"], CONV["hw"], conv_flops() * 1e-9))
    peaks = conv.get("peaks") if conv else None
    if peaks:
        add("Each round measured the %d-thread FMA peak right before both sides' convolution "
            "(%s GFLOP/s); a percentage is the median of the rounds' percentages of their "
            "peak, the cnnc / PyTorch ratio the median of the rounds' ratios.\n" %
            (T, ", ".join(fmt(x, "%.1f") for x in peaks)))
    else:
        add("Percentages are of the %d-thread FMA peak above (%s GFLOP/s, measured just "
            "before the convolution).\n" % (T, fmt(peak_t, "%.1f")))
    add("| pass | cnnc ms | cnnc GFLOP/s | cnnc % of peak | PyTorch ms | PyTorch GFLOP/s | "
        "PyTorch % of peak | cnnc / PyTorch | target | status |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for k, name in (("fwd", "forward"), ("bwd_data", "backward-data"),
                    ("bwd_weights", "backward-weights")):
        cu, tu = get(conv, "cnnc", k + "_us"), get(conv, "torch", k + "_us")
        cg = conv_flops() / cu * 1e-3 if cu and cu > 0 else None
        tg = conv_flops() / tu * 1e-3 if tu and tu > 0 else None
        cp = 100 * cg / peak_t if cg and peak_t else None
        tp = 100 * tg / peak_t if tg and peak_t else None
        if peaks:
            cp, tp = conv.get("cnnc_%s_pct" % k), conv.get("torch_%s_pct" % k)
        add("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt(cu and cu * 1e-3, "%.2f"), fmt(cg, "%.1f"), fmt(cp, "%.1f%%"),
            fmt(tu and tu * 1e-3, "%.2f"), fmt(tg, "%.1f"), fmt(tp, "%.1f%%"),
            xfmt(conv.get("ratio_" + k, ratio(cg, tg))), TARGETS["conv_" + k][0],
            row_status("conv_" + k, cp)))
    c = conv.get("cnnc") if conv else None
    if c:
        add("\ncnnc's six timings (median ms per call): " + ", ".join(
            "%s %.2f" % (n, c[n + "_us"] * 1e-3) for n in
            ("fwd_A", "fwd_A0", "step_A", "step_A0", "step_B", "step_B0")) +
            " (A = conv_first, A0 = conv_first_base, B = conv_second, B0 = conv_second_base; "
            "fwd = forward pass, step = train step).")
    add("")

    # compile time
    add("## Compile time (`cnnc X.cnn -o X.so`, wall time, median of %d spread over the run)\n"
        % meta["compile_reps"])
    add("| network | seconds | all runs | target | status |")
    add("|---|---|---|---|---|")
    for key, name, src, _ in NETWORKS:
        r = nets.get(key, {})
        s = r.get("compile_s")
        add("| %s (`%s`) | %s | %s | %s | %s |" % (
            name, src, fmt(s, "%.3f"), " ".join("%.2f" % x for x in r.get("compile_runs", [])),
            TARGETS[key + "_compile"][0], row_status(key + "_compile", s)))
    add("")

    # memory
    add("## Memory\n")
    add("Peak resident memory of the process that trains (VmHWM: the benchmark process, "
        "inputs included, for cnnc; the Python process with torch loaded for PyTorch).\n")
    add("| network | cnnc training, MiB | PyTorch training, MiB | cnnc / PyTorch | target | "
        "status |")
    add("|---|---|---|---|---|---|")
    for key, name, _, _ in NETWORKS:
        r = nets.get(key, {})
        c, t = get(r, "cnnc_train", "peak_rss_kib"), get(r, "torch_train", "peak_rss_kib")
        k = key + "_rss"
        x = ratio(c, t)
        add("| %s | %s | %s | %s | %s | %s |" % (
            name, fmt(c and c / 1024, "%.1f"), fmt(t and t / 1024, "%.1f"),
            fmt(x, "%.3f"), TARGETS[k][0] if k in TARGETS else "–",
            row_status(k, x) if k in TARGETS else "–"))
    add("\nArena bytes (`arena_bytes` of the model descriptor: all intermediate tensors of "
        "one call):\n")
    add("| network | train step, compiled batch | forward, batch %d | forward, batch 1 |" %
        INFER_BATCH)
    add("|---|---|---|---|")
    for key, name, _, _ in NETWORKS:
        r = nets.get(key, {})
        cells = []
        for what in ("train", "infer", "latency"):
            v = get(r, "cnnc_" + what, "arena_bytes")
            cells.append("–" if v is None else "%d (%.2f MiB)" % (v, v / 2**20))
        add("| %s | %s |" % (name, " | ".join(cells)))
    add("")

    add(METHOD % {"T": T, "reps": meta["reps"], "rounds": rounds, "s": "s" if rounds > 1 else "",
                  "infer": INFER_BATCH})

    met = sum(1 for _, s in tally if s == "met")
    known = sum(1 for _, s in tally if s != "–")
    text = "\n".join(L) + "\n"
    text = text.replace("TALLY", "**Targets of issue 5 met: %d of %d measured (%d targets).**\n"
                        % (met, known, len(TARGETS)))
    path = a.out
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    log("wrote %s (targets met: %d of %d measured)" % (os.path.relpath(path, ROOT), met, known))


METHOD = """## How it is measured

- **Harness**: `build/bench` (tests/bench/bench.c) opens each compiled network with
  `cnn_model_open`, makes a context with `cnn_ctx_create(m, %(T)d)` (parameters, gradients and
  arena allocated and touched once), initializes the parameters and fills random inputs
  and labels; `tests/bench/torch_bench.py` builds the same network in PyTorch from
  `cnnc --emit json` (tests/torch_net.py).  Both run a warm-up repetition that fixes how many
  calls make one repetition, then %(reps)d timed repetitions, whose median time per call is
  the round's figure.  Each figure takes %(rounds)d round%(s)s, cnnc and PyTorch in turns (the side
  that goes first swapped each round); the report gives the median of the rounds' figures,
  and each ratio is the median of the rounds' ratios (the two sides of a ratio measured
  minutes apart on a shared machine differ by the load that came in between).
- **Training**: one call is `train_step` on the full batch followed by `cnn_optimizer_step`
  with the train block's optimizer (SGD with its momentum, Nesterov and weight decay), against
  PyTorch's `zero_grad(set_to_none=True)`, forward, `cross_entropy`, `backward()` and
  `torch.optim.SGD.step()` with the same settings, in training mode (batch norm with batch
  statistics).
- **Inference**: the networks compiled with `cnnc --batch %(infer)d` and `--batch 1`, `forward`
  in evaluation mode (cnnc folds batch norm into the convolutions); PyTorch `model.eval()` under
  `torch.inference_mode()`.  Latency is the time of one forward call with one image.
- **FMA peak**: tests/bench/peak.c, built with `-O2 -march=native`: 24 independent vector
  accumulators (`acc = acc * m + c`, full-width FMA, no spills) per thread, all threads
  started together; two FLOPs per FMA lane.  Measured on 1 thread and on %(T)d.
- **The convolution, cnnc**: a compiled train step cannot be cut into kernels from outside,
  so each pass is the difference between networks that differ only around the convolution
  (tests/bench/conv_*.cnn; all end in global average pooling, a 64→10 dense layer and the
  loss):
  A = input→conv→tail, A0 = input→tail, B = input→batchnorm→conv→tail,
  B0 = input→batchnorm→tail, compiled with `--forward-chunk 64` (the forward entry
  over the whole batch, as the train step computes its forward pass, not in chunks) and
  `--keep-pads` (B's batch norm would otherwise write the convolution's padded input itself
  while A keeps the copy of its input, and backward-data would be credited with that copy).
  Then forward = fwd(A) − fwd(A0);
  backward-weights = step(A) − step(A0) − forward (the conv is A's first layer, and cnnc
  computes no input gradient for it — `cnnc --emit ir` shows no backward-data kernel);
  backward-data = (step(B) − step(B0)) − (step(A) − step(A0)) (after a batch norm, which has
  weights, the input gradient is needed).  Each repetition takes the six timings in turn and
  the differences are formed per repetition, then the median is taken.  Whatever cnnc does
  for the convolution beyond the multiply-adds — padding, weight packing, layout changes —
  counts in its time.  Differences of noisy timings are noisy: on a loaded machine a pass
  can come out too fast or too slow by the noise of the larger timings.
- **The convolution, PyTorch**: `F.conv2d(x, w, None, 1, 1)` for forward and
  `torch.ops.aten.convolution_backward` with output mask (input only) and (weight only) — the
  kernels autograd calls (oneDNN) — timed separately, without autograd bookkeeping.
- **GFLOP/s** = 2·N·K·C·R·S·P·Q / time for each pass; %% of peak is of the %(T)d-thread peak
  measured at the start of the same round.
- **Compile time**: wall time of `cnnc examples/X.cnn -o X.so` (parse to linked `.so`), each
  network compiled once before the measurements, once after each network's, once after the
  peak's and once after the convolution's: the median of samples minutes apart, not of a few
  seconds that another tenant's burst of load can fill.
- **Peak memory**: VmHWM of the measuring process (Linux's ru_maxrss would include the Python
  driver's memory, which survives fork and exec); each measurement runs in its own process.
"""


def main():
    ap = argparse.ArgumentParser(description="make bench: cnnc beside PyTorch")
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--quick", action="store_true", help="smoke run: short repetitions")
    ap.add_argument("--threads", type=int, default=0, help="default: available cores")
    ap.add_argument("--rounds", type=int, default=0, help="rounds per figure (3)")
    ap.add_argument("--reps", type=int, default=0, help="repetitions per round (3)")
    ap.add_argument("--seconds", type=float, default=0, help="length of a repetition (0.5)")
    ap.add_argument("--out", default=None, help="report file (BENCHMARKS.md)")
    ap.add_argument("--report", metavar="RESULTS.json", default=None,
                    help="only rewrite the report from a run's results.json")
    a = ap.parse_args()
    if a.threads <= 0:
        a.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.reps = a.reps or (5 if a.quick else 3)
    a.seconds = a.seconds or (0.05 if a.quick else 0.5)
    a.compile_reps = 1 if a.quick else 5
    if a.out is None:
        a.out = os.path.join(a.build, "bench-out", "BENCHMARKS.md") if a.quick else \
            os.path.join(ROOT, "BENCHMARKS.md")
    a.build, a.out = os.path.abspath(a.build), os.path.abspath(a.out)
    if a.report:
        with open(a.report) as f:
            write_report(a, json.load(f))
        return

    b = Bench(a)
    os.makedirs(os.path.join(ROOT, b.outdir), exist_ok=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit(), "load_start": loadavg(), "threads": a.threads,
            "rounds": a.rounds, "reps": a.reps,
            "seconds": a.seconds, "compile_reps": a.compile_reps, "quick": a.quick}
    t_start = time.perf_counter()
    # Ask a child for torch's version: importing torch here would grow this
    # process, and with it what the children's ru_maxrss starts from.
    try:
        p = subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True, env=torch_env())
        version = p.stdout.strip() if p.returncode == 0 else None
    except OSError:
        version = None
    b.torch_version = meta["torch_version"] = version
    log("PyTorch %s" % b.torch_version if b.torch_version else
        "PyTorch (python3-torch) is not importable: cnnc figures only")
    log("%d thread%s, %d rounds of %d repetitions of %.2g s" % (
        a.threads, "s" if a.threads > 1 else "", a.rounds, a.reps, a.seconds))
    res = {"meta": meta, "nets": {}}
    # compile-time samples before, between and after the measurements
    # (a.compile_reps of them: the first ones of these five points)
    compile_sample(b, res["nets"])
    for key, name, src, _ in NETWORKS:
        measure_network(b, key, name, src, res["nets"][key])
        compile_sample(b, res["nets"])
    # The peak on 1 and on all threads (the convolution measures its own each round).
    res["peak"] = measure_peak(b)
    compile_sample(b, res["nets"])
    res["conv"] = measure_conv(b)
    compile_sample(b, res["nets"])
    for key, name, _, _ in NETWORKS:
        r = res["nets"][key]
        if r.get("compile_s"):
            log("%s: compiled in %.3f s (median of %d: %s)" % (
                name, r["compile_s"], len(r["compile_runs"]),
                " ".join("%.2f" % x for x in r["compile_runs"])))
    meta["load_end"] = loadavg()
    meta["elapsed"] = time.perf_counter() - t_start
    meta["failed"] = FAILED
    raw = os.path.join(ROOT, b.outdir, "results.json")
    with open(raw, "w") as f:
        json.dump(res, f, indent=1)
    log("wrote %s" % os.path.relpath(raw, ROOT))
    write_report(a, res)
    if FAILED:
        log("bench: %d command%s failed; their figures are missing from the report" %
            (len(FAILED), "s" if len(FAILED) > 1 else ""))
        sys.exit(1)


if __name__ == "__main__":
    main()
