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


def load_weights(model, path):
    tensors = read_safetensors(path)
    state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items() if k in model.state_dict()}
    model.load_state_dict(state, strict=True)
