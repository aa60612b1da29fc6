"""parity.py — train the same network in PyTorch, step for step, and compare
with what cnnc's training program computed.

usage: /usr/bin/python3 tests/parity.py NET.json INIT.safetensors DATA_DIR STEPS
                                        CNNC_RESULT.safetensors [PREDICTIONS.npy]

NET.json is `cnnc --emit json` of the network (with its train block); the
model starts from INIT (written by the training program with --steps 0
--save), trains STEPS steps on the first STEPS batches of DATA_DIR's
training split in file order (the program ran with --no-shuffle
--no-augment), with the optimizer, L1/L2 penalties and clipping of the train
block, and every parameter is compared with CNNC_RESULT.

PyTorch trains twice: in float32, as cnnc does, and in float64.  The test
passes when every tensor's max |cnnc - torch64| / max |torch64| is at most
1e-4: the float64 run is the exact answer to within far less than that, so
the criterion measures cnnc's own error.  Comparing two float32
implementations directly mixes in PyTorch's rounding too, which adaptive
optimizers (Adam, RMSprop) amplify for parameters whose gradients are
nearly zero; both errors are printed, and PyTorch float32's distance from
float64 is printed beside them for scale.

With PREDICTIONS (cnnc's --predict after training), the evaluation-mode
logits on the test split are compared too: batch norm with the running
statistics, folded into the convolutions by cnnc.

Parameter groups follow cnnc: weights (conv, dense) get weight decay and
the penalties, biases do not (regularize_biases = false).
"""
import gzip
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from torch_net import Net, load_spec, load_weights, loss_fn, read_safetensors  # noqa: E402

TOLERANCE = 1e-4


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def load_split(directory, split):
    def find(kind):
        for name in ("%s-%s-idx%d-ubyte.gz", "%s-%s-idx%d-ubyte"):
            path = os.path.join(directory, name % (split, kind, 3 if kind == "images" else 1))
            if os.path.exists(path):
                return path
        raise SystemExit("parity: no %s file for %s in %s" % (kind, split, directory))
    images = read_idx(find("images")).astype(np.float32) / np.float32(255)
    labels = read_idx(find("labels")).astype(np.int64)
    return images, labels


def decay_names(model):
    """Parameters that weight decay and penalties apply to, as in cnnc: the
    weights of convolutions and dense layers (not biases, not batch norm)."""
    return {name + ".weight" for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}


def make_optimizer(model, spec):
    train = spec["train"]
    o = train["optimizer"]
    decayed = decay_names(model)
    weights = [p for n, p in model.named_parameters() if n in decayed]
    others = [p for n, p in model.named_parameters() if n not in decayed]
    if train.get("regularize_biases"):
        weights, others = weights + others, []
    wd = o.get("weight_decay", 0.0)
    groups = [{"params": weights, "weight_decay": wd}, {"params": others, "weight_decay": 0.0}]
    kind = o["type"]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"],
                               dampening=o["dampening"], nesterov=o["nesterov"])
    if kind in ("adam", "adamw"):
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        return cls(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"],
                   amsgrad=o["amsgrad"])
    if kind == "rmsprop":
        return torch.optim.RMSprop(groups, lr=o["lr"], alpha=o["alpha"], eps=o["eps"],
                                   momentum=o["momentum"], centered=o["centered"])
    raise SystemExit("parity: unknown optimizer " + kind)


def train_torch(spec, init, images, labels, steps, dtype, test_images=None):
    """The parameters (and running statistics) after `steps` steps, trained
    in PyTorch in dtype; with test_images, also the evaluation-mode logits on
    them."""
    train = spec["train"]
    model = Net(spec)
    load_weights(model, init)
    model = model.to(dtype)
    opt = make_optimizer(model, spec)
    batch = spec["batch"]
    c, h, w = spec["input"]["shape"]
    l1, l2, clip = train.get("l1", 0.0), train.get("l2", 0.0), train.get("clip_norm", 0.0)
    decayed = decay_names(model)
    penalized = [p for n, p in model.named_parameters()
                 if n in decayed or train.get("regularize_biases")]
    for step in range(steps):
        x = torch.from_numpy(images[step * batch:(step + 1) * batch].reshape(-1, c, h, w).copy())
        y = torch.from_numpy(labels[step * batch:(step + 1) * batch].copy())
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(spec, model(x.to(dtype)), y)
        if l1:
            loss = loss + l1 * sum(p.abs().sum() for p in penalized)
        if l2:
            loss = loss + l2 / 2 * sum((p * p).sum() for p in penalized)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    state = {k: v.detach().double().numpy() for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    if test_images is not None:
        model.eval()
        with torch.no_grad():
            x = torch.from_numpy(test_images.reshape(-1, c, h, w).copy()).to(dtype)
            state["<evaluation-mode logits>"] = model(x).double().numpy()
    return state


def rel_err(a, ref):
    return np.max(np.abs(a - ref)) / max(np.max(np.abs(ref)), 1e-12)


def main():
    net_json, init, data_dir, steps, result = sys.argv[1:6]
    predictions = sys.argv[6] if len(sys.argv) > 6 else None
    steps = int(steps)
    torch.set_num_threads(1)
    spec = load_spec(net_json)
    images, labels = load_split(data_dir, "train")
    test = load_split(data_dir, "t10k")[0] if predictions else None
    ref32 = train_torch(spec, init, images, labels, steps, torch.float32, test)
    ref64 = train_torch(spec, init, images, labels, steps, torch.float64, test)
    ours = read_safetensors(result)
    if predictions:
        ours["<evaluation-mode logits>"] = np.load(predictions)
    worst = worst32 = worst_torch = 0.0
    for name, ref in ref64.items():
        got = ours[name].astype(np.float64)
        e64, e32, et = rel_err(got, ref), rel_err(got, ref32[name]), rel_err(ref32[name], ref)
        worst, worst32, worst_torch = max(worst, e64), max(worst32, e32), max(worst_torch, et)
        print("  %-20s cnnc vs torch float64 %.3g | cnnc vs torch float32 %.3g | "
              "torch float32 vs float64 %.3g" % (name, e64, e32, et))
    print("parity %s %s: %d steps, largest relative error vs PyTorch float64 %.3g "
          "(tolerance %g); vs PyTorch float32 %.3g; PyTorch float32 itself %.3g" %
          (spec["name"], spec["train"]["optimizer"]["type"], steps, worst, TOLERANCE, worst32,
           worst_torch))
    sys.exit(0 if worst <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
