#!/usr/bin/python3
"""Reference GGN curvature of the tiny float64 models of the layer kinds
embedding, prelu, instancenorm, groupnorm, lstm, gru and rnn
(src/interp/layers/), by PyTorch.

What it makes (paths relative to the repository root), for each model M in
tiny_embed64, tiny_norm64, tiny_gn21_64, tiny_seq64 (tests/models/M.onnx, written by
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
  matrix kfacA/ggn/L gA dA   recurrent layers: the groups' A stacked (gA = groups dA),
                             A_g = (1/(N T)) sum_{n,t} abar abar^T, abar = [x_t; h_{t-1}; 1]
                             (GRU's h block: [x_t; r_t h_{t-1}; 1])
  matrix kfacG/ggn/L gG dG   recurrent layers: G_g = (1/N) sum_n sum_t J_nt^T Lambda_n J_nt
                             stacked, J_nt = d z_n / d s_nt at the group's gate
                             pre-activations s_t (W x + R h + Wb + Rb); groups: LSTM and
                             RNN one per direction (dG = gates H), GRU one per
                             (direction, gate block) (dG = H)

How: each model is written again by hand in PyTorch (float64) with torch's own
F.embedding, F.instance_norm, F.group_norm and F.prelu, the recurrent cells
by their ONNX equations (interp/ops/recurrent.c); J_n by
torch.autograd.functional.jacobian of sample n's logits, J_nt through a zero
probe added to the Gather's output or to the gate pre-activations.  Self-checks: every block symmetric and
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
SEEDS = {"tiny_embed64": 4104, "tiny_norm64": 4105, "tiny_gn21_64": 4106, "tiny_seq64": 4107}

# layers in doc/design.md's order, each with its parameters in order
LAYERS = {
    "tiny_embed64": [("emb", ["emb.weight"]), ("head", ["head.weight", "head.bias"])],
    "tiny_norm64": [("conv", ["conv.weight", "conv.bias"]), ("in", ["in.weight", "in.bias"]),
                    ("prelu1", ["prelu1.weight"]), ("gn", ["gn.weight", "gn.bias"]),
                    ("prelu2", ["prelu2.weight"]), ("fc", ["fc.weight", "fc.bias"])],
    "tiny_gn21_64": [("gn", ["gn.weight", "gn.bias"]), ("fc", ["fc.weight", "fc.bias"])],
    "tiny_seq64": [("lstm", ["lstm.W", "lstm.R", "lstm.B"]), ("gru", ["gru.W", "gru.R", "gru.B"]),
                   ("rnn", ["rnn.W", "rnn.R", "rnn.B"]), ("head", ["head.weight", "head.bias"])],
}
EMBED_LAYER = {"tiny_embed64": 0}
# the layers of the new kinds get records (Gemm and Conv have theirs in
# tools/make_curvature_fixtures.py)
CHECKED = {"emb", "in", "prelu1", "gn", "prelu2", "lstm", "gru", "rnn"}
# tiny_seq64's recurrent layers: (layer index, cell, directions, gates)
SEQ_LAYERS = {"tiny_seq64": [(0, "lstm", 2, 4), (1, "gru", 1, 3), (2, "rnn", 1, 1)]}


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


def run_cell(cell, W, R, B, xs, reverse, probe, rows):
    """One direction of an ONNX RNN / GRU (linear_before_reset 0) / LSTM over
    xs [N, T, I] from zero states: the hidden states [N, T, H] by time index;
    probe [N, T, G H] is added to the gate pre-activations; rows gets, per
    step, (x_t, h_{t-1}, the vector the h block's R multiplies)."""
    N, T, _ = xs.shape
    GH = W.shape[0]
    H = R.shape[1]
    Wb, Rb = B[:GH], B[GH:]
    h = torch.zeros(N, H, dtype=DT)
    c = torch.zeros(N, H, dtype=DT)
    out = [None] * T
    for t in (reversed(range(T)) if reverse else range(T)):
        x = xs[:, t]
        if cell == "gru":
            zr = x @ W[:2 * H].T + h @ R[:2 * H].T + Wb[:2 * H] + Rb[:2 * H] + probe[:, t, :2 * H]
            z, r = torch.sigmoid(zr[:, :H]), torch.sigmoid(zr[:, H:])
            rh = r * h
            n = torch.tanh(x @ W[2 * H:].T + rh @ R[2 * H:].T + Wb[2 * H:] + Rb[2 * H:] + probe[:, t, 2 * H:])
            rows.append((x, h, rh))
            h = (1 - z) * n + z * h
        else:
            pre = x @ W.T + h @ R.T + Wb + Rb + probe[:, t]
            rows.append((x, h, h))
            if cell == "lstm":   # gate blocks i, o, f, c
                i, o = torch.sigmoid(pre[:, :H]), torch.sigmoid(pre[:, H:2 * H])
                f, g = torch.sigmoid(pre[:, 2 * H:3 * H]), torch.tanh(pre[:, 3 * H:])
                c = f * c + i * g
                h = o * torch.tanh(c)
            else:
                h = torch.tanh(pre)
        out[t] = h
    return torch.stack(out, dim=1)


def fwd_seq(p, x, probe=None, rows=None):
    """probe: {layer: [dirs, N, T, G H]} added to its gate pre-activations;
    rows: {layer: [per direction, the steps' (x, h, R's vector)]}."""
    N, T = x.shape[0], x.shape[1]
    rows = rows if rows is not None else {}

    def layer(name, xs, reverse_only=False):
        W, R, B = p[name + ".W"], p[name + ".R"], p[name + ".B"]
        dirs, GH = W.shape[0], W.shape[1]
        pr = probe[name] if probe and name in probe else torch.zeros(dirs, N, T, GH, dtype=DT)
        rows[name] = [[] for _ in range(dirs)]
        return [run_cell(name, W[d], R[d], B[d], xs, reverse_only or d == 1, pr[d], rows[name][d])
                for d in range(dirs)]

    y1 = torch.cat(layer("lstm", x), dim=2)          # Y [N, T, 2, H] reshaped to [N, T, 2 H]
    y2 = layer("gru", y1)[0]
    y3 = layer("rnn", y2, reverse_only=True)[0]
    h3 = y3[:, 0]                                     # a reverse direction ends at t = 0
    return h3 @ p["head.weight"].T + p["head.bias"]


def seq_factors(p, x, lam, cell, dirs, gates):
    """The K-FAC factors of a recurrent layer of tiny_seq64 from their
    definition (module docstring), stacked over the groups."""
    W = p[cell + ".W"]
    GH, I = W.shape[1], W.shape[2]
    H = GH // gates
    rows = {}
    fwd_seq(p, x, rows=rows)
    blocks = 3 if cell == "gru" else 1
    A = []
    for d in range(dirs):
        for blk in range(blocks):
            a = torch.cat([torch.cat([xt, (rh if blk == 2 else h), torch.ones(xt.shape[0], 1, dtype=DT)], dim=1)
                           for xt, h, rh in rows[cell][d]], dim=0)          # [N T, I + H + 1]
            A.append(a.T @ a / a.shape[0])
    T = x.shape[1]
    Gs = [torch.zeros(GH, GH, dtype=DT) for _ in range(dirs)]
    for n in range(x.shape[0]):
        J = torch.autograd.functional.jacobian(
            lambda pr: fwd_seq(p, x[n:n + 1], probe={cell: pr})[0],
            torch.zeros(dirs, 1, T, GH, dtype=DT))                        # [C, dirs, 1, T, GH]
        for d in range(dirs):
            for t in range(T):
                Gs[d] += J[:, d, 0, t].T @ lam[n] @ J[:, d, 0, t]
    G = []
    for d in range(dirs):
        g = Gs[d] / x.shape[0]
        if blocks == 3:
            G += [g[b * H:(b + 1) * H, b * H:(b + 1) * H] for b in range(3)]
        else:
            G.append(g)
    return torch.cat(A, dim=0).numpy(), torch.cat(G, dim=0).numpy()


FORWARDS = {"tiny_embed64": fwd_embed, "tiny_norm64": fwd_norm, "tiny_gn21_64": fwd_gn21, "tiny_seq64": fwd_seq}


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
                for sli, cell, dirs, gates in SEQ_LAYERS.get(name, []):
                    if sli != li:
                        continue
                    A, G = seq_factors(inits, x, lam, cell, dirs, gates)
                    for k, m in (("A", A), ("G", G)):
                        d = m.shape[1]
                        for grp in range(m.shape[0] // d):
                            f = m[grp * d:(grp + 1) * d]
                            if np.abs(f - f.T).max() > 1e-14 or np.linalg.eigvalsh(f).min() < -1e-12:
                                fail("%s %s: K-FAC %s of %s group %d not symmetric PSD" % (name, loss, k, cell, grp))
                    header.append("recurrent layer %d (%s): kfacA/ggn/%d %d groups of [x; h (GRU h block: r h); 1], "
                                  "kfacG/ggn/%d over the gate pre-activations" % (li, cell, li, A.shape[0] // A.shape[1], li))
                    records.append(("matrix", "kfacA/ggn/%d" % li, A))
                    records.append(("matrix", "kfacG/ggn/%d" % li, G))
            path = os.path.join(ROOT, "tests", "fixtures", "curv_%s_%s.txt" % (name, loss))
            write(path, records, header)
            print("%s %s: %d bytes" % (name, loss, os.path.getsize(path)))


if __name__ == "__main__":
    main()
