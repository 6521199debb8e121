#!/usr/bin/python3
"""Large models for the size runs of bench/size.md (issue 19, item 4): they
are too big to commit, so this script writes them under bench/models/
(ignored by git), with data to run them on.

  resnet50.onnx   torchvision ResNet-50 (1000 classes, 25.6M parameters),
                  3x32x32 inputs, weights as torchvision initialises them
                  (seeded), BatchNorm folded in eval mode
  resnet50_c10.onnx  the same with a 10-class head (23.5M parameters), for
                  the exact GGN (its cost grows with the classes)
  mlp100m.onnx    an MLP 3072-8192-8192-1024-10 with ReLU (100.7M parameters)
  x32.npy, y32.npy  N = 256 inputs [N, 3, 32, 32] (standard normal, seeded)
                  and labels in 0..9

The size runs measure memory and feasibility, not accuracy, so trained
weights are not needed.  Run from the repository root:
tools/make_size_models.py
"""
import os

import numpy as np
import torch
import torchvision

OUT = "bench/models"
N = 256


def export(model, name, shape):
    model.eval()
    path = os.path.join(OUT, name + ".onnx")
    torch.onnx.export(model, (torch.zeros(2, *shape),), path, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, opset_version=13,
                      do_constant_folding=True)
    n = sum(p.numel() for p in model.parameters())
    print("%s: %d parameters (%.1f M), %.1f MB" % (path, n, n / 1e6, os.path.getsize(path) / 1e6))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1901)
    export(torchvision.models.resnet50(), "resnet50", (3, 32, 32))
    export(torchvision.models.resnet50(num_classes=10), "resnet50_c10", (3, 32, 32))
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 8192), torch.nn.ReLU(),
                              torch.nn.Linear(8192, 8192), torch.nn.ReLU(), torch.nn.Linear(8192, 1024),
                              torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    export(mlp, "mlp100m", (3, 32, 32))
    rng = np.random.default_rng(1901)
    np.save(os.path.join(OUT, "x32.npy"), rng.standard_normal((N, 3, 32, 32)).astype(np.float32))
    np.save(os.path.join(OUT, "y32.npy"), (np.arange(N) % 10).astype(np.int64))


if __name__ == "__main__":
    main()
