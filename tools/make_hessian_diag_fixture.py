#!/usr/bin/python3
"""Reference Hessian diagonal of the bundled MLP (tests/models/mlp.onnx) for
tests/curv/test_curvature.c's large-layer check, by float64 PyTorch autograd.

Data: N = 300 inputs, uniform in [-1, 1) from the 64-bit LCG the C test uses
(x_i = (r >> 11) / 2^53 * 2 - 1, r = r * 6364136223846793005 + 1442695040888963407
mod 2^64, r_0 = 77), labels i % 10; loss: mean cross-entropy.  The diagonal
entries come from Hessian-vector products with unit vectors (double
backward), one per entry, which shares nothing with curvscope's method (the
Hessian at each layer's output): every entry of fc2 and fc3 and 600 entries
of fc1 drawn with a fixed seed.

Writes tests/fixtures/hessdiag_mlp.txt: a comment line, then lines
'ENTRY VALUE' with ENTRY the position in curvscope's parameter order
(doc/design.md: fc1.weight, fc1.bias, fc2.weight, ... each row-major as the
ONNX file stores it).  Run from the repository root: tools/make_hessian_diag_fixture.py
"""
import numpy as np
import onnx
import onnx.numpy_helper
import torch

torch.set_default_dtype(torch.float64)
N, D = 300, 784
MASK = (1 << 64) - 1


def lcg_inputs():
    out = np.empty(N * D)
    r = 77
    for i in range(N * D):
        r = (r * 6364136223846793005 + 1442695040888963407) & MASK
        out[i] = float(np.float32((r >> 11) / 9007199254740992.0 * 2 - 1))
    return torch.tensor(out.reshape(N, D))


def main():
    model = onnx.load("tests/models/mlp.onnx")
    names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
    init = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    params = [torch.tensor(init[n], requires_grad=True) for n in names]
    x = lcg_inputs()
    y = torch.arange(N) % 10

    def loss_of(ps):
        w1, b1, w2, b2, w3, b3 = ps
        h = torch.relu(x @ w1.T + b1)
        h = torch.relu(h @ w2.T + b2)
        return torch.nn.functional.cross_entropy(h @ w3.T + b3, y)

    loss = loss_of(params)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    sizes = [p.numel() for p in params]
    offsets = np.cumsum([0] + sizes)
    rng = np.random.default_rng(2026)
    fc1 = sorted(rng.choice(offsets[2], size=600, replace=False).tolist())
    entries = fc1 + list(range(offsets[2], offsets[-1]))
    lines = []
    for e in entries:
        row = torch.autograd.grad(flat[e], params, retain_graph=True)
        value = torch.cat([r.reshape(-1) for r in row])[e].item()
        lines.append("%d %.17g" % (e, value))
    with open("tests/fixtures/hessdiag_mlp.txt", "w") as f:
        f.write("# Hessian diagonal entries of the mean ce loss of tests/models/mlp.onnx on the LCG "
                "inputs of tools/make_hessian_diag_fixture.py (N = 300), float64 PyTorch double "
                "backward; lines 'ENTRY VALUE' in doc/design.md parameter order. Made by "
                "tools/make_hessian_diag_fixture.py.\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
