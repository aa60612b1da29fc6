"""torch_bench.py — the PyTorch side of `make bench`: the same network
(from `cnnc --emit json`), the same batch, SGD with the same settings,
random inputs.  Prints the same "median_img_s ... peak_rss_kib ..." line as
bench.c.

usage: torch_bench.py NET.json train|forward ITERS REPS THREADS
"""
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from torch_net import Net, load_spec  # noqa: E402


def main():
    path, mode, iters, reps, threads = sys.argv[1:6]
    iters, reps, threads = int(iters), int(reps), int(threads)
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    spec = load_spec(path)
    model = Net(spec)
    batch = spec["batch"]
    x = torch.rand([batch] + spec["input"]["shape"])
    y = torch.randint(0, spec["classes"], (batch,))
    o = spec["train"]["optimizer"]
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"],
                          dampening=o["dampening"], nesterov=o["nesterov"],
                          weight_decay=o["weight_decay"])

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    def forward():
        with torch.no_grad():
            model(x)

    step = train_step if mode == "train" else forward
    if mode != "train":
        model.eval()
    rates = []
    for rep in range(-1, reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        rate = iters * batch / (time.perf_counter() - t0)
        if rep >= 0:
            rates.append(rate)
            print("rep %d: %.1f img/s" % (rep, rate))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("median_img_s %.1f peak_rss_kib %d" % (statistics.median(rates), rss))


if __name__ == "__main__":
    main()
