#!/usr/bin/env python3
"""kernels.py — where a compiled network's time goes, kernel by kernel.

  tests/bench/kernels.py [--rounds R] [--mode train|step|forward]
                         [--bench build/bench] A.so [B.so ...]

Runs `bench MODE X.so --threads 2 --reps 2 --kernels FILE` for each .so in
turn, R rounds (5), and prints for every parallel loop of the model (a
kernel's outlined loop, named by `nm` as the code generator names it:
train_k70_c1b_grad_input.par0) the median microseconds per call in each
.so, side by side, then the sums.  A loop's time is wall clock from the
calling thread's view: the slower thread's share and the hand-over
included.  Kernels too small to be handed to the threads run inline and
are not listed.  Compare .so files of the same network (before / after a
change): rounds alternate between them, so the machine's load falls on
both alike.  Timings for developers, not for `make bench`.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile


def symbols(path):
    """Offset -> name of the functions in a shared object (nm)."""
    out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    names = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "tT":
            names[int(f[0], 16)] = f[2]
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mode", default="train", choices=["train", "step", "forward"])
    ap.add_argument("--bench", default=os.path.join("build", "bench"))
    a = ap.parse_args()
    times = {m: {} for m in a.models}  # model -> kernel -> [us per call]
    order = []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "loops.txt")
        for _ in range(a.rounds):
            for m in a.models:
                r = subprocess.run([a.bench, a.mode, m, "--threads", "2", "--reps", "2",
                                    "--kernels", out], capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit("kernels.py: %s: %s" % (m, r.stderr.strip()))
                names = symbols(m)
                with open(out) as f:
                    for line in f:
                        offset, calls, ns = line.split()
                        name = names.get(int(offset, 16), "+" + offset)
                        if name not in order:
                            order.append(name)
                        times[m].setdefault(name, []).append(float(ns) / 1e3 / int(calls))
    width = max(len(n) for n in order)
    print("%-*s" % (width, "us per call (median)") +
          "".join("%14s" % os.path.basename(m)[:13] for m in a.models))
    total = [0.0] * len(a.models)
    for name in order:
        row = []
        for j, m in enumerate(a.models):
            t = statistics.median(times[m][name]) if name in times[m] else 0.0
            total[j] += t
            row.append(t)
        print("%-*s" % (width, name) + "".join("%14.1f" % t for t in row))
    print("%-*s" % (width, "sum") + "".join("%14.1f" % t for t in total))


if __name__ == "__main__":
    main()
