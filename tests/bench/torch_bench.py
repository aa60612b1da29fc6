"""torch_bench.py — the PyTorch side of `make bench`, timed the way bench.c
times cnnc: a warm-up repetition that also fixes the number of calls per
repetition (about --seconds long), then --reps repetitions; medians.

  torch_bench.py train|forward NET.json [--batch N] [options]
      train: zero_grad, forward, cross-entropy, backward, optimizer step
      (the train block's SGD settings), as a training loop runs them;
      forward: the model in eval mode under torch.inference_mode().
      The network comes from `cnnc --emit json` (tests/torch_net.py), the
      batch from the file unless --batch is given.
  torch_bench.py conv [--n N --c C --k K --hw HW] [options]
      the convolution of the benchmark (3x3, padding 1, stride 1, no bias):
      forward (F.conv2d), backward-data and backward-weights
      (aten.convolution_backward with one output each, which is what
      autograd calls), each timed on its own in every repetition.
  options: --threads T (torch.set_num_threads), --reps R, --seconds S

Prints a line per repetition and one "result key value ..." line, like
bench.c.  Peak memory is VmHWM from /proc/self/status.  Run with
/usr/bin/python3 (Debian's python3-torch) in the environment bench.py's
torch_env() makes.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from torch_net import Net, load_spec, loss_fn  # noqa: E402


def peak_rss_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def calibrate(call, seconds):
    """Warm up and return the number of calls that take about `seconds`."""
    call()
    calls, t0 = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and calls >= 2:
            return max(1, round(calls * seconds / elapsed))


def time_calls(call, iters):
    """Seconds per call over iters calls."""
    t0 = time.perf_counter()
    for _ in range(iters):
        call()
    return (time.perf_counter() - t0) / iters


def bench_net(args):
    spec = load_spec(args.net)
    torch.manual_seed(1)
    model = Net(spec)
    batch = args.batch or spec["batch"]
    x = torch.rand([batch] + spec["input"]["shape"])
    y = torch.randint(0, spec["classes"], (batch,))
    o = spec["train"]["optimizer"]
    if o.get("type", "sgd") != "sgd":
        raise SystemExit("torch_bench: only SGD train blocks are benchmarked")
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"],
                          dampening=o["dampening"], nesterov=o["nesterov"],
                          weight_decay=o["weight_decay"])

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(spec, model(x), y)
        loss.backward()
        opt.step()

    def forward():
        with torch.inference_mode():
            model(x)

    if args.mode == "train":
        model.train()
        call = train_step
    else:
        model.eval()
        call = forward
    iters = calibrate(call, args.seconds)
    sec = []
    for rep in range(args.reps):
        sec.append(time_calls(call, iters))
        print("rep %d: %s %.1f us/call, %.1f img/s" % (rep, args.mode, 1e6 * sec[-1],
                                                       batch / sec[-1]))
    s = statistics.median(sec)
    print("result mode %s img_s %.2f us_per_call %.3f batch %d calls_per_rep %d threads %d "
          "peak_rss_kib %d" % (args.mode, batch / s, 1e6 * s, batch, iters,
                               torch.get_num_threads(), peak_rss_kib()))


def bench_conv(args):
    n, c, k, hw = args.n, args.c, args.k, args.hw
    torch.manual_seed(1)
    x = torch.rand(n, c, hw, hw)
    w = torch.rand(k, c, 3, 3) * 0.1
    dy = torch.rand(n, k, hw, hw)
    one = [1, 1]

    def backward(mask):
        return torch.ops.aten.convolution_backward(dy, x, w, None, one, one, one, False, [0, 0],
                                                   1, mask)

    passes = [
        ("fwd", lambda: F.conv2d(x, w, None, 1, 1)),
        ("bwd_data", lambda: backward([True, False, False])),
        ("bwd_weights", lambda: backward([False, True, False])),
    ]
    with torch.no_grad():
        iters = [calibrate(call, args.seconds) for _, call in passes]
        sec = [[] for _ in passes]
        for rep in range(args.reps):
            for i, (_, call) in enumerate(passes):
                sec[i].append(time_calls(call, iters[i]))
            print("rep %d: forward %.1f us, backward-data %.1f us, backward-weights %.1f us" %
                  (rep, 1e6 * sec[0][-1], 1e6 * sec[1][-1], 1e6 * sec[2][-1]))
    print("result " + " ".join("%s_us %.3f" % (name, 1e6 * statistics.median(s))
                               for (name, _), s in zip(passes, sec)) +
          " batch %d threads %d" % (n, torch.get_num_threads()))


def main():
    ap = argparse.ArgumentParser(description="the PyTorch side of make bench")
    ap.add_argument("mode", choices=["train", "forward", "conv"])
    ap.add_argument("net", nargs="?", help="NET.json from cnnc --emit json")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--c", type=int, default=64)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--hw", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode == "conv":
        bench_conv(args)
    elif not args.net:
        ap.error("%s needs NET.json" % args.mode)
    else:
        bench_net(args)


if __name__ == "__main__":
    main()
