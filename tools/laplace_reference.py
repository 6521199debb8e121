#!/usr/bin/python3
"""Float64 reference of curvscope's Laplace log marginal likelihood.

Writes tests/fixtures/laplace_tiny_mlp64.txt (records 'vector NAME LEN' then one
line of values, as tools/make_curvature_fixtures.py's files), for the model
tests/models/tiny_mlp64.onnx on the curvature fixtures' data
(tests/fixtures/curv_tiny_mlp64_{x,y}.npy, 12 samples, ce loss).

How, independently of the C code: the model, its exact GGN (per-sample
Jacobians by autograd, J^T Lambda J) and its K-FAC factors come from
tools/make_curvature_fixtures.py (the PyTorch re-implementation of the ONNX
graph).  Here the sum curvature is N times those means; the precision
P = N C + diag(delta) is formed as a DENSE matrix for every representation
(diag: its diagonal; kfac: kron(G, A) per layer, in parameter order; full: the
whole block) and log det P comes from torch.linalg.slogdet (LU), not from
eigenvalues or Cholesky as in C.  The optimised priors maximise the log
marginal likelihood by L-BFGS on log delta with autograd gradients (C uses
bisection on the derivative's sign).

Records, per repr R in diag, kfac, full and subset S in all, last:
  R_S_fixed      [log marginal likelihood at delta = 0.5 for every layer]
  R_S_scalar     [log ml, delta]   one delta maximising it
  R_S_layer      [log ml, delta_1, ..., delta_L]   one per layer
  loglik         [sum of log softmax at the labels]

Rerun from the repository root: tools/laplace_reference.py (seconds).
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_curvature_fixtures as mcf  # noqa: E402

DT = torch.float64
MODEL = "tiny_mlp64"
FIXED = 0.5


def dense_precision_parts(net, res, repr_, layers):
    """Sum curvature over the chosen layers' parameters (dense) and each
    parameter's layer (index into layers)."""
    n = res["logits"].shape[0]
    sl = [slice(net.layers[i]["offset"], net.layers[i]["offset"] + net.layers[i]["size"]) for i in layers]
    D = sum(s.stop - s.start for s in sl)
    H = np.zeros((D, D))
    owner = np.zeros(D, dtype=np.int64)
    pos = 0
    if repr_ == "full":
        idx = np.concatenate([np.arange(s.start, s.stop) for s in sl])
        H = n * res["net"]["ggn"][np.ix_(idx, idx)]
    for k, (i, s) in enumerate(zip(layers, sl)):
        w = s.stop - s.start
        if repr_ == "diag":
            H[pos:pos + w, pos:pos + w] = n * np.diag(np.diag(res["net"]["ggn"][s, s]))
        elif repr_ == "kfac":
            H[pos:pos + w, pos:pos + w] = n * res["layers"][i]["kfac"]["ggn"]
        owner[pos:pos + w] = k
        pos += w
    theta = np.concatenate([net.theta0.numpy()[s] for s in sl])
    return torch.tensor(H, dtype=DT), torch.tensor(owner), torch.tensor(theta, dtype=DT)


def log_ml(loglik, H, owner, theta, log_delta):
    d = torch.exp(log_delta)[owner]
    P = H + torch.diag(d)
    sign, logdet = torch.linalg.slogdet(P)
    assert sign > 0
    return loglik - 0.5 * (d * theta * theta).sum() - 0.5 * logdet + 0.5 * torch.log(d).sum()


def optimise(loglik, H, owner, theta, n_vars, tied):
    t = torch.zeros(1 if tied else n_vars, dtype=DT, requires_grad=True)
    opt = torch.optim.LBFGS([t], lr=1, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                            history_size=50, line_search_fn="strong_wolfe")

    def full_t():
        return t.expand(n_vars) if tied else t

    def closure():
        opt.zero_grad()
        f = -log_ml(loglik, H, owner, theta, full_t())
        f.backward()
        return f

    for _ in range(5):
        opt.step(closure)
    lt = full_t().detach().clone()
    g = torch.autograd.functional.jacobian(lambda u: log_ml(loglik, H, owner, theta, u), lt)
    g = g.sum() if tied else g   # tied: the derivative along the common log delta
    assert float(g.abs().max()) < 1e-6, "optimum not reached: gradient %g" % float(g.abs().max())
    return float(log_ml(loglik, H, owner, theta, lt)), torch.exp(lt).numpy()


def main():
    torch.set_num_threads(1)
    root = mcf.ROOT
    net = mcf.Net(MODEL)
    x = np.load(os.path.join(mcf.FIXTURE_DIR, "curv_%s_x.npy" % MODEL))
    y = np.load(os.path.join(mcf.FIXTURE_DIR, "curv_%s_y.npy" % MODEL))
    res = mcf.compute(net, x, y, "ce")
    n = x.shape[0]
    loglik = -n * res["loss"]
    lines = ["# curvscope Laplace reference: %s.onnx, ce, the 12 samples of tests/fixtures/curv_%s_{x,y}.npy, "
             "float64, PyTorch %s (made by tools/laplace_reference.py)." % (MODEL, MODEL, torch.__version__),
             "# P = N * GGN (+ its diag / K-FAC) + diag(delta); log ml = loglik - 1/2 delta |theta|^2 "
             "- 1/2 log det P + 1/2 log det P0; fixed delta = %g." % FIXED,
             "vector loglik 1", "%.17g" % loglik]
    L = len(net.layers)
    for repr_ in ("diag", "kfac", "full"):
        for subset, layers in (("all", list(range(L))), ("last", [L - 1])):
            H, owner, theta = dense_precision_parts(net, res, repr_, layers)
            nv = len(layers)
            fixed = float(log_ml(loglik, H, owner, theta, torch.full((nv,), np.log(FIXED), dtype=DT)))
            lines += ["vector %s_%s_fixed 1" % (repr_, subset), "%.17g" % fixed]
            for mode, tied in (("scalar", True), ("layer", False)):
                v, d = optimise(loglik, H, owner, theta, nv, tied)
                vals = [v] + ([float(d[0])] if tied else [float(e) for e in d])
                lines += ["vector %s_%s_%s %d" % (repr_, subset, mode, len(vals)),
                          " ".join("%.17g" % e for e in vals)]
    out = os.path.join(root, "tests", "fixtures", "laplace_%s.txt" % MODEL)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
