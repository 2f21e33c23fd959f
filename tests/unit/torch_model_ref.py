#!/usr/bin/env python3
"""torch_model_ref.py: PyTorch (float64) forward and backward of the backbones
of bench/torch_train.py, for test_model.c.

  torch_model_ref.py ARCH C H W D B DIR

Reads, all little-endian float32 written by the test:
  DIR/names.txt    one "name d0 d1 ..." line per parameter tensor, in the C table order
  DIR/params.f32   the parameters, concatenated in that order
  DIR/inp.f32      B x C x H x W
  DIR/dout.f32     B x D   (the gradient of the output)
Writes float64: DIR/out.f64 (B x D) and DIR/grads.f64 (same layout as params).
Exits 77 when torch cannot be imported (the test then skips), 1 when the
C parameter table does not match the PyTorch modules' names and shapes.
"""
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
except ImportError:
    sys.exit(77)


class MLP(nn.Module):   # as bench/torch_train.py, with the input size as a parameter
    def __init__(self, inp, dim):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(inp, 512), nn.ReLU(),
                                  nn.Linear(512, 512), nn.ReLU())
        self.embedding = nn.Linear(512, dim)

    def forward(self, x):
        return self.embedding(self.body(x))


class CNN(nn.Module):
    def __init__(self, c, h, w, dim):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), 256), nn.ReLU())
        self.embedding = nn.Linear(256, dim)

    def forward(self, x):
        return self.embedding(self.body(x))


class Lin(nn.Module):
    def __init__(self, inp, dim):
        super().__init__()
        self.embedding = nn.Linear(inp, dim)

    def forward(self, x):
        return self.embedding(x.flatten(1))


def main():
    arch, (c, h, w, d, b), folder = sys.argv[1], map(int, sys.argv[2:7]), sys.argv[7]
    torch.set_num_threads(1)
    model = {"mlp": lambda: MLP(c * h * w, d), "cnn": lambda: CNN(c, h, w, d),
             "linear": lambda: Lin(c * h * w, d)}[arch]().double()
    rows = [line.split() for line in open(os.path.join(folder, "names.txt")) if line.strip()]
    named = list(model.named_parameters())
    got = [(r[0], tuple(int(v) for v in r[1:])) for r in rows]
    want = [(n, tuple(p.shape)) for n, p in named]
    if got != want:
        print("parameter table differs from PyTorch:\n  C:     %s\n  torch: %s" % (got, want), file=sys.stderr)
        sys.exit(1)
    flat = np.fromfile(os.path.join(folder, "params.f32"), dtype="<f4").astype(np.float64)
    off = 0
    with torch.no_grad():
        for _, p in named:
            p.copy_(torch.from_numpy(flat[off:off + p.numel()].reshape(p.shape)))
            off += p.numel()
    x = torch.from_numpy(np.fromfile(os.path.join(folder, "inp.f32"), dtype="<f4").astype(np.float64))
    g = torch.from_numpy(np.fromfile(os.path.join(folder, "dout.f32"), dtype="<f4").astype(np.float64))
    out = model(x.reshape(b, c, h, w))
    out.backward(g.reshape(b, d))
    out.detach().numpy().astype("<f8").tofile(os.path.join(folder, "out.f64"))
    np.concatenate([p.grad.reshape(-1).numpy() for _, p in named]).astype("<f8").tofile(
        os.path.join(folder, "grads.f64"))


if __name__ == "__main__":
    main()
