"""bench.py — `make bench`: cnnc beside PyTorch on this machine, in one run.

For each network: compile time of cnnc, then training throughput (train
step + SGD update, images/s) and forward throughput at the compiled batch,
for cnnc and for PyTorch (Debian's python3-torch) with the same network,
batch and optimizer, each the median of several repetitions, run one after
the other in this process's run.  Writes BENCHMARKS.md.

PyTorch runs with the environment it is fastest in on these machines:
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, OPENBLAS_NUM_THREADS=1,
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (DESIGN.md section 7).  cnnc runs in
the environment as found.

usage: /usr/bin/python3 tests/bench/bench.py BUILD_DIR [--quick]
"""
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NETWORKS = [
    # name, source, iterations per repetition (train, forward)
    ("LeNet-5", "examples/lenet5.cnn", 30, 60),
]


def run(cmd, env=None):
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit("bench: command failed: " + " ".join(cmd))
    return p.stdout


def parse(out):
    m = re.search(r"median_img_s ([\d.]+) peak_rss_kib (\d+)", out)
    return float(m.group(1)), int(m.group(2))


def torch_env():
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    return env


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    reps = 3 if "--quick" in sys.argv else 7
    cnnc = os.path.join(build, "cnnc")
    bench = os.path.join(build, "bench")
    outdir = os.path.join(build, "bench-out")
    os.makedirs(os.path.join(ROOT, outdir), exist_ok=True)
    # Ask a child for the version: importing torch here would inflate the
    # peak RSS the benchmark children report (Linux keeps ru_maxrss across
    # fork and exec).
    p = subprocess.run(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"],
                       capture_output=True, text=True)
    torch_version = p.stdout.strip() if p.returncode == 0 else None
    rows = []
    for name, src, it_train, it_fwd in NETWORKS:
        stem = os.path.join(outdir, os.path.basename(src)[:-4])
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            run([cnnc, src, "-o", stem + ".so"])
            times.append(time.perf_counter() - t0)
        compile_s = statistics.median(times)
        run([cnnc, src, "--emit", "json", "-o", stem + ".json"])
        print("%s: compiled in %.3f s" % (name, compile_s), flush=True)
        row = {"name": name, "compile_s": compile_s}
        for mode, iters in (("train", it_train), ("forward", it_fwd)):
            rate, rss = parse(run([bench, stem + ".so", mode, str(iters), str(reps)]))
            row["cnnc_" + mode] = rate
            row["cnnc_rss_" + mode] = rss
            print("  cnnc    %-7s %10.1f img/s  (peak RSS %d KiB)" % (mode, rate, rss), flush=True)
            if torch_version:
                for threads in (1, 2):
                    out = run(["/usr/bin/python3", "tests/bench/torch_bench.py", stem + ".json",
                               mode, str(iters), str(reps), str(threads)], env=torch_env())
                    rate, rss = parse(out)
                    row["torch%d_%s" % (threads, mode)] = rate
                    row["torch_rss_" + mode] = rss
                    print("  PyTorch %-7s %10.1f img/s  (%d thread%s, peak RSS %d KiB)" %
                          (mode, rate, threads, "s" if threads > 1 else "", rss), flush=True)
        rows.append(row)
    write_markdown(rows, reps, torch_version)


def ratio(a, b):
    return "%.2f×" % (a / b) if b else "–"


def write_markdown(rows, reps, torch_version):
    lines = []
    lines.append("# Benchmarks\n")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    lines.append("Written by `make bench` (tests/bench/bench.py) on %s at commit %s, %s, "
                 "%d cores, Linux %s.  Each figure is the median of %d repetitions; cnnc and "
                 "PyTorch ran one after the other in the same run.  Ratios are cnnc / PyTorch "
                 "(above 1: cnnc is faster).  These machines are shared and noisy: compare "
                 "ratios from one run, not absolute figures across runs.\n" %
                 (datetime.date.today().isoformat(), commit, cpu_name(), os.cpu_count(),
                  platform.release(), reps))
    if torch_version:
        lines.append("PyTorch %s (Debian python3-torch), run with OPENBLAS_CORETYPE and "
                     "OPENBLAS_L2_SIZE unset, OPENBLAS_NUM_THREADS=1, "
                     "GLIBC_TUNABLES=glibc.malloc.hugetlb=1.  cnnc's generated code runs on "
                     "one thread (threads are not implemented yet), so PyTorch is shown at 1 "
                     "and at 2 threads.\n" % torch_version)
    else:
        lines.append("PyTorch is not installed: no comparison.\n")
    lines.append("## Training (train step + SGD update), images/s\n")
    lines.append("| network | batch | cnnc | PyTorch 1 thread | PyTorch 2 threads | "
                 "cnnc / PyTorch (1) | cnnc / PyTorch (2) |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append("| %s | 64 | %.0f | %.0f | %.0f | %s | %s |" % (
            r["name"], r["cnnc_train"], r.get("torch1_train", 0), r.get("torch2_train", 0),
            ratio(r["cnnc_train"], r.get("torch1_train", 0)),
            ratio(r["cnnc_train"], r.get("torch2_train", 0))))
    lines.append("\n## Forward pass (evaluation mode), images/s\n")
    lines.append("| network | batch | cnnc | PyTorch 1 thread | PyTorch 2 threads | "
                 "cnnc / PyTorch (1) | cnnc / PyTorch (2) |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append("| %s | 64 | %.0f | %.0f | %.0f | %s | %s |" % (
            r["name"], r["cnnc_forward"], r.get("torch1_forward", 0),
            r.get("torch2_forward", 0), ratio(r["cnnc_forward"], r.get("torch1_forward", 0)),
            ratio(r["cnnc_forward"], r.get("torch2_forward", 0))))
    lines.append("\n## Compile time and memory\n")
    lines.append("| network | cnnc compile (s) | cnnc peak RSS, training (KiB) | "
                 "PyTorch peak RSS, training (KiB) |")
    lines.append("|---|---|---|---|")
    for r in rows:
        lines.append("| %s | %.3f | %d | %s |" % (r["name"], r["compile_s"], r["cnnc_rss_train"],
                                                r.get("torch_rss_train", "–")))
    lines.append("")
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
