#!/usr/bin/python3
"""Reference GGN curvature of the tiny float64 models of the layer kinds
embedding, prelu, instancenorm and groupnorm (src/interp/layers/), by PyTorch.

What it makes (paths relative to the repository root), for each model M in
tiny_embed64, tiny_norm64, tiny_gn21_64 (tests/models/M.onnx, written by
tools/make_test_graphs.py):

  tests/fixtures/curv_M_x.npy     float64 [12, input dims]: inputs, standard normal
  tests/fixtures/curv_M_y.npy     int64 [12]: labels, uniform in [0, C)
  tests/fixtures/curv_M_ce.txt    GGN references for the ce loss
  tests/fixtures/curv_M_mse.txt   GGN references for the mse loss (0.5 |z - onehot|^2)

The records (the format of tools/make_curvature_fixtures.py, read by
tests/curv/fixture.h):

  for each layer L (its index) of the kinds above:
  matrix block/ggn/L W W     the exact GGN block (1/N) sum_n J_n^T Lambda_n J_n of
                             layer L, parameters in doc/design.md's order (the
                             layer's initializers in input order, each row-major)
  vector diag/ggn/L W        its diagonal
  matrix kfacA/ggn/L V V     embedding layers: A = (1/(N T)) sum_{n,t} e_id e_id^T
  matrix kfacG/ggn/L D D     embedding layers: G = (1/N) sum_n sum_t J_nt^T Lambda_n J_nt,
                             J_nt = d z_n / d y_nt at the Gather's output y

How: each model is written again by hand in PyTorch (float64) with torch's own
F.embedding, F.instance_norm, F.group_norm and F.prelu; J_n by
torch.autograd.functional.jacobian of sample n's logits, J_nt through a zero
probe added to the Gather's output.  Self-checks: every block symmetric and
positive semi-definite, and the embedding block's entries between two ids
vanish on samples holding one of them only.

Rerun from the repository root with tools/make_layer_curvature_fixtures.py
(/usr/bin/python3 with torch, onnx and numpy; fixed seeds, deterministic).
"""

import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn.functional as F

N_SAMPLES = 12
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DT = torch.float64
SEEDS = {"tiny_embed64": 4104, "tiny_norm64": 4105, "tiny_gn21_64": 4106}

# layers in doc/design.md's order, each with its parameters in order
LAYERS = {
    "tiny_embed64": [("emb", ["emb.weight"]), ("head", ["head.weight", "head.bias"])],
    "tiny_norm64": [("conv", ["conv.weight", "conv.bias"]), ("in", ["in.weight", "in.bias"]),
                    ("prelu1", ["prelu1.weight"]), ("gn", ["gn.weight", "gn.bias"]),
                    ("prelu2", ["prelu2.weight"]), ("fc", ["fc.weight", "fc.bias"])],
    "tiny_gn21_64": [("gn", ["gn.weight", "gn.bias"]), ("fc", ["fc.weight", "fc.bias"])],
}
EMBED_LAYER = {"tiny_embed64": 0}
# the layers of the new kinds get records (Gemm and Conv have theirs in
# tools/make_curvature_fixtures.py)
CHECKED = {"emb", "in", "prelu1", "gn", "prelu2"}


def fail(msg):
    sys.exit("make_layer_curvature_fixtures: " + msg)


def ids_of(x):
    # the graph's floor(sigmoid(x) V), V = 6
    return torch.floor(torch.sigmoid(x) * 6.0).to(torch.int64)


def fwd_embed(p, x, probe=None):
    e = F.embedding(ids_of(x), p["emb.weight"])           # [N, T, D]
    if probe is not None:
        e = e + probe
    m = torch.tanh(e).mean(dim=1)
    return m @ p["head.weight"].T + p["head.bias"]


def fwd_norm(p, x, probe=None):
    c = F.conv2d(x, p["conv.weight"], p["conv.bias"])
    i = F.instance_norm(c, weight=p["in.weight"], bias=p["in.bias"], eps=1e-5)
    a = F.prelu(i, p["prelu1.weight"].reshape(-1))         # slope [C, 1, 1]: one per channel
    # opset 18: scale and bias per group, repeated over the group's channels
    gs = F.group_norm(a, 2, eps=1e-5)
    w = p["gn.weight"].repeat_interleave(2)[None, :, None, None]
    b = p["gn.bias"].repeat_interleave(2)[None, :, None, None]
    q = F.prelu(gs * w + b, p["prelu2.weight"])
    return q.flatten(1) @ p["fc.weight"].T + p["fc.bias"]


def fwd_gn21(p, x, probe=None):
    gn = F.group_norm(x, 2, weight=p["gn.weight"], bias=p["gn.bias"], eps=1e-5)
    return torch.tanh(gn).flatten(1) @ p["fc.weight"].T + p["fc.bias"]


FORWARDS = {"tiny_embed64": fwd_embed, "tiny_norm64": fwd_norm, "tiny_gn21_64": fwd_gn21}


def loss_hessians(loss, z):
    n, c = z.shape
    if loss == "ce":
        pr = torch.softmax(z, dim=1)
        return torch.diag_embed(pr) - pr[:, :, None] * pr[:, None, :]
    return torch.eye(c, dtype=DT).expand(n, c, c)


def fmt(v):
    return "%.17g" % v


def write(path, records, header):
    with open(path, "w") as f:
        for h in header:
            f.write("# " + h + "\n")
        for kind, name, m in records:
            m = np.asarray(m, dtype=np.float64)
            if kind == "vector":
                f.write("vector %s %d\n%s\n" % (name, m.size, " ".join(fmt(v) for v in m.ravel())))
            else:
                f.write("matrix %s %d %d\n" % (name, m.shape[0], m.shape[1]))
                for row in m:
                    f.write(" ".join(fmt(v) for v in row) + "\n")


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name, layers in LAYERS.items():
        proto = onnx.load(os.path.join(ROOT, "tests", "models", name + ".onnx"))
        inits = {t.name: torch.tensor(numpy_helper.to_array(t)) for t in proto.graph.initializer}
        dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]]
        C = proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value
        rng = np.random.default_rng(SEEDS[name])
        x_np = rng.standard_normal([N_SAMPLES] + dims).astype(np.float64)
        y_np = rng.integers(0, C, size=N_SAMPLES).astype(np.int64)
        np.save(os.path.join(ROOT, "tests", "fixtures", "curv_%s_x.npy" % name), x_np)
        np.save(os.path.join(ROOT, "tests", "fixtures", "curv_%s_y.npy" % name), y_np)
        x = torch.tensor(x_np)
        fwd = FORWARDS[name]
        for loss in ("ce", "mse"):
            lam = loss_hessians(loss, fwd(inits, x).detach())
            records, header = [], [
                "GGN references of %s, %s loss, N = %d (tools/make_layer_curvature_fixtures.py)"
                % (name, loss, N_SAMPLES),
                "block/ggn/L: (1/N) sum_n J_n^T Lambda_n J_n in parameter order; diag/ggn/L its diagonal"]
            for li, (lname, pnames) in enumerate(layers):
                if lname not in CHECKED:
                    continue
                shapes = [inits[p].shape for p in pnames]
                sizes = [inits[p].numel() for p in pnames]
                theta = torch.cat([inits[p].reshape(-1) for p in pnames])

                def z_of(th, n):
                    q = dict(inits)
                    off = 0
                    for p, s, k in zip(pnames, shapes, sizes):
                        q[p] = th[off:off + k].reshape(s)
                        off += k
                    return fwd(q, x[n:n + 1])[0]

                W = theta.numel()
                block = torch.zeros(W, W, dtype=DT)
                for n in range(N_SAMPLES):
                    J = torch.autograd.functional.jacobian(lambda th: z_of(th, n), theta)   # [C, W]
                    block += J.T @ lam[n] @ J
                block /= N_SAMPLES
                b = block.numpy()
                if np.abs(b - b.T).max() > 1e-14 * max(np.abs(b).max(), 1e-300):
                    fail("%s %s layer %d: block not symmetric" % (name, loss, li))
                if np.linalg.eigvalsh((b + b.T) / 2).min() < -1e-12 * np.abs(b).max():
                    fail("%s %s layer %d: block not PSD" % (name, loss, li))
                records.append(("matrix", "block/ggn/%d" % li, b))
                records.append(("vector", "diag/ggn/%d" % li, np.diag(b)))
                if EMBED_LAYER.get(name) == li:
                    V, D = inits["emb.weight"].shape
                    ids = ids_of(x).numpy()
                    T = ids.shape[1]
                    A = np.zeros((V, V))
                    for v in ids.ravel():
                        A[v, v] += 1.0
                    A /= N_SAMPLES * T
                    G = torch.zeros(D, D, dtype=DT)
                    for n in range(N_SAMPLES):
                        Jy = torch.autograd.functional.jacobian(
                            lambda pr: fwd(inits, x[n:n + 1], pr)[0],
                            torch.zeros(1, T, D, dtype=DT))[:, 0]                           # [C, T, D]
                        for t in range(T):
                            G += Jy[:, t].T @ lam[n] @ Jy[:, t]
                    G /= N_SAMPLES
                    # rows of ids that no sample holds together have no block between them
                    together = np.zeros((V, V), dtype=bool)
                    for row in ids:
                        for u in row:
                            for v in row:
                                together[u, v] = True
                    cross = np.abs(b.reshape(V, D, V, D)).max(axis=(1, 3))
                    if cross[~together].max(initial=0.0) != 0.0:
                        fail("%s: block between ids that share no sample" % name)
                    repeats = sum(len(set(row)) < T for row in ids)
                    header.append("embedding layer %d: V = %d, D = %d, T = %d; %d of %d samples repeat an "
                                  "id; kfacA/ggn/%d = (1/(N T)) diag(id counts), kfacG/ggn/%d = (1/N) sum_n "
                                  "sum_t J_nt^T Lambda_n J_nt" % (li, V, D, T, repeats, N_SAMPLES, li, li))
                    records.append(("matrix", "kfacA/ggn/%d" % li, A))
                    records.append(("matrix", "kfacG/ggn/%d" % li, G.numpy()))
            path = os.path.join(ROOT, "tests", "fixtures", "curv_%s_%s.txt" % (name, loss))
            write(path, records, header)
            print("%s %s: %d bytes" % (name, loss, os.path.getsize(path)))


if __name__ == "__main__":
    main()
