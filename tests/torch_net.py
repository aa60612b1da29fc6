"""torch_net.py — a PyTorch model built from `cnnc --emit json`.

The same network as the .cnn file, layer for layer, with the same
parameter names ("conv1.weight", ...) and layouts, so that a cnnc
checkpoint loads into it unchanged and results can be compared step by
step.  Used by the benchmark (tests/bench/bench.py) and the PyTorch parity
tests.  Needs Debian's python3-torch (run with /usr/bin/python3).
"""
import json
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.input_name = spec["input"]["name"]
        self.order = []
        for layer in spec["layers"]:
            op, name = layer["op"], layer["name"]
            if op == "conv2d":
                cin = self._channels(layer["inputs"][0])
                mod = nn.Conv2d(cin, layer["filters"], tuple(layer["kernel"]),
                                stride=tuple(layer["stride"]), padding=0,
                                dilation=tuple(layer["dilation"]), groups=layer["groups"],
                                bias=layer["bias"])
                setattr(self, name, mod)
            elif op == "dense":
                fin = self._features(layer["inputs"][0])
                setattr(self, name, nn.Linear(fin, layer["units"], bias=layer["bias"]))
            elif op in ("batchnorm", "batchnorm_eval"):
                shape = self._shape_of(layer["inputs"][0])
                cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
                setattr(self, name, cls(shape[0], eps=layer["eps"], momentum=layer["momentum"]))
            self.order.append(layer)

    def _shape_of(self, value):
        if value == self.input_name:
            return self.spec["input"]["shape"]
        for layer in self.spec["layers"]:
            if layer["name"] == value:
                return layer["shape"]
        raise KeyError(value)

    def _channels(self, value):
        return self._shape_of(value)[0]

    def _features(self, value):
        return int(np.prod(self._shape_of(value)))

    @staticmethod
    def _pad(x, padding, value=0.0):
        top, left, bottom, right = padding
        if top == left == bottom == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom), value=value)

    def forward(self, x):
        values = {self.input_name: x}
        for layer in self.order:
            op, name = layer["op"], layer["name"]
            inputs = [values[v] for v in layer["inputs"]]
            if op == "conv2d":
                y = getattr(self, name)(self._pad(inputs[0], layer["padding"]))
            elif op == "dense":
                y = getattr(self, name)(inputs[0])
            elif op == "relu":
                y = F.relu(inputs[0])
            elif op == "maxpool":
                y = F.max_pool2d(self._pad(inputs[0], layer["padding"], float("-inf")),
                                 tuple(layer["kernel"]), tuple(layer["stride"]))
            elif op == "avgpool":
                # count_include_pad: padded zeros count in the divisor
                y = F.avg_pool2d(self._pad(inputs[0], layer["padding"]),
                                 tuple(layer["kernel"]), tuple(layer["stride"]))
            elif op == "flatten":
                y = torch.flatten(inputs[0], 1)
            elif op == "add":
                y = inputs[0] + inputs[1]
            elif op in ("batchnorm", "batchnorm_eval"):
                y = getattr(self, name)(inputs[0])
            elif op == "dropout":
                y = F.dropout(inputs[0], layer["p"], self.training)
            elif op == "concat":
                y = torch.cat(inputs, 1)
            elif op == "global_avgpool":
                y = inputs[0].mean((2, 3))
            elif op == "softmax":
                y = F.softmax(inputs[0], 1)
            elif op == "act":
                kind = layer["act"]
                if kind == "leaky_relu":
                    y = F.leaky_relu(inputs[0], layer["slope"])
                elif kind == "sigmoid":
                    y = torch.sigmoid(inputs[0])
                elif kind == "tanh":
                    y = torch.tanh(inputs[0])
                else:
                    y = F.gelu(inputs[0])
            else:
                raise ValueError("torch_net: no PyTorch equivalent for op " + op)
            values[name] = y
        return y


def load_spec(path):
    with open(path) as f:
        return json.load(f)


def read_safetensors(path):
    """name -> numpy array, for the F32 tensors of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if info["dtype"] != "F32":
            continue
        out[name] = np.frombuffer(data[base + begin:base + end], dtype="<f4").reshape(info["shape"])
    return out


def loss_fn(spec, logits, labels):
    """The network's loss as PyTorch computes it."""
    loss = spec.get("loss", {"op": "softmax_xent", "label_smoothing": 0.0})
    if loss["op"] == "mse_loss":
        target = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return F.mse_loss(logits, target)
    return F.cross_entropy(logits, labels, label_smoothing=loss["label_smoothing"])


def load_weights(model, path):
    """Every tensor of the model from a safetensors file (batch norm's
    num_batches_tracked, which cnnc does not keep, stays as it is)."""
    tensors = read_safetensors(path)
    state = model.state_dict()
    for name in state:
        if name in tensors:
            state[name] = torch.from_numpy(tensors[name].copy())
        elif not name.endswith("num_batches_tracked"):
            raise KeyError("%s: no tensor %s" % (path, name))
    model.load_state_dict(state, strict=True)
