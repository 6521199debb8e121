#!/usr/bin/python3
"""Reference GGN curvature of tests/models/tiny_eparams64.onnx
(tools/make_eparams_model.py) for the elementwise layer kinds expand,
scale, shift and shift_sub (src/interp/layers/elementwise.c), by PyTorch in
float64, in the record format of tools/make_layer_curvature_fixtures.py
(read by tests/curv/test_curvature_layers.c):

  tests/fixtures/curv_tiny_eparams64_x.npy   float64 [12, 4, 6], standard normal
  tests/fixtures/curv_tiny_eparams64_y.npy   int64 [12], uniform in [0, 3)
  tests/fixtures/curv_tiny_eparams64_{ce,mse}.txt
      matrix block/ggn/L W W   (1/N) sum_n J_n^T Lambda_n J_n of layer L (curvscope's
                               layer order: pos, cls, ln_w, ln_b, shift, head)
      vector diag/ggn/L W      its diagonal
  (no K-FAC records: the elementwise kinds have no Kronecker form.)

How: the module of make_eparams_model.py with the ONNX file's initializers
loaded, J_n by torch.autograd.functional.jacobian of sample n's logits
with respect to the one parameter (torch.nn.utils.stateless.functional_call).

Run from the repository root: /usr/bin/python3 tools/make_eparams_curvature_fixtures.py
"""
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper
import torch
from torch.nn.utils.stateless import functional_call

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_eparams_model import Tiny  # noqa: E402
from make_layer_curvature_fixtures import loss_hessians, write  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_SAMPLES = 12
LAYERS = ["pos", "cls", "ln_w", "ln_b", "shift"]  # layers 0..4; 5 is the Gemm head


def main():
    torch.set_num_threads(1)
    name = "tiny_eparams64"
    proto = onnx.load(os.path.join(ROOT, "tests", "models", name + ".onnx"))
    inits = {t.name: torch.tensor(numpy_helper.to_array(t)) for t in proto.graph.initializer}
    m = Tiny().eval()
    state = m.state_dict()
    for k in state:
        if k in inits:
            state[k] = inits[k]
    m.load_state_dict(state)
    rng = np.random.default_rng(4108)
    x_np = rng.standard_normal([N_SAMPLES, 4, 6]).astype(np.float64)
    y_np = rng.integers(0, 3, size=N_SAMPLES).astype(np.int64)
    np.save(os.path.join(ROOT, "tests", "fixtures", "curv_%s_x.npy" % name), x_np)
    np.save(os.path.join(ROOT, "tests", "fixtures", "curv_%s_y.npy" % name), y_np)
    x = torch.tensor(x_np)
    params = dict(m.named_parameters())
    with torch.no_grad():
        z = m(x)
    for loss in ("ce", "mse"):
        lam = loss_hessians(loss, z)
        records = []
        for li, p in enumerate(LAYERS):
            theta = params[p].detach().reshape(-1)
            W = theta.numel()
            block = torch.zeros(W, W, dtype=torch.float64)
            for n in range(N_SAMPLES):
                def z_of(th):
                    return functional_call(m, {p: th.reshape(params[p].shape)}, (x[n:n + 1],))[0]
                J = torch.autograd.functional.jacobian(z_of, theta)  # [C, W]
                block += J.T @ lam[n] @ J
            block /= N_SAMPLES
            b = block.numpy()
            assert np.abs(b - b.T).max() <= 1e-14 * max(np.abs(b).max(), 1e-300)
            assert np.linalg.eigvalsh((b + b.T) / 2).min() >= -1e-12 * np.abs(b).max()
            records.append(("matrix", "block/ggn/%d" % li, b))
            records.append(("vector", "diag/ggn/%d" % li, np.diag(b)))
        write(os.path.join(ROOT, "tests", "fixtures", "curv_%s_%s.txt" % (name, loss)), records,
              ["GGN references of %s, %s loss, N = %d (tools/make_eparams_curvature_fixtures.py)"
               % (name, loss, N_SAMPLES),
               "block/ggn/L: (1/N) sum_n J_n^T Lambda_n J_n in parameter order; diag/ggn/L its diagonal"])


if __name__ == "__main__":
    main()
