#!/usr/bin/python3
"""Reference curvature of the tiny float64 test models, computed by PyTorch.

What it makes (paths relative to the repository root), for each model
M in tiny_mlp64, tiny_cnn64, tiny_attn64 (tests/models/M.onnx, written by
tools/make_test_graphs.py):

  tests/fixtures/curv_M_x.npy         float64 [12, input dims]: inputs, standard normal
  tests/fixtures/curv_M_y.npy         int64 [12]: labels, uniform in [0, C)
  tests/fixtures/curv_M_ce.txt        curvature for the ce loss
  tests/fixtures/curv_M_mse.txt       curvature for the mse loss

Each .txt file documents itself in its '#' header (conventions, parameter order,
unit blocks, K-FAC convention and how the grouped Conv is handled, self-check
results).  The records are

  matrix NAME ROWS COLS      followed by ROWS lines of COLS values
  vector NAME LEN            followed by one line of LEN values

with values printed with 17 significant digits ("%.17g").

How: the model is re-implemented by hand in PyTorch (float64) from the ONNX
graph and its initializers, and its logits are checked against a small NumPy
evaluator of the ONNX graph written here (to 1e-12; onnx 1.12 has no
onnx.reference).  All trainable parameters (doc/design.md's definition and order)
are one flat vector theta; the Hessian comes from
torch.autograd.functional.hessian (also checked by finite differences of the
gradient), the GGN from the per-sample Jacobians of the logits and the loss
Hessian w.r.t. the logits, the empirical Fisher from per-sample gradients.
K-FAC factors come from the layer inputs (im2col patches for Conv, built in
NumPy and checked to reproduce the Conv output) and from per-sample
backpropagated vectors at the layer outputs (zero "probe" tensors added to each
layer's output).

Rerun from the repository root with

    tools/make_curvature_fixtures.py

It needs /usr/bin/python3 with torch, onnx and numpy.  Seeds are fixed and
torch runs on one thread, so a rerun regenerates the same files.  It takes a
few seconds.
"""

import math
import os
import sys
import time

import numpy as np
import onnx
from onnx import helper, numpy_helper
import torch
import torch.nn.functional as F

N_SAMPLES = 12
MODELS = ["tiny_mlp64", "tiny_cnn64", "tiny_attn64"]
SEEDS = {"tiny_mlp64": 4101, "tiny_cnn64": 4102, "tiny_attn64": 4103}
LOSSES = ["ce", "mse"]
CURVATURES = ["hessian", "ggn", "fisher_emp"]
KFAC_CURVATURES = ["ggn", "fisher_emp"]

# doc/design.md's parameter lists, written out by hand; find_layers() must agree.
EXPECTED_PARAMS = {
    "tiny_mlp64": ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"],
    "tiny_cnn64": ["conv.weight", "conv.bias", "bn.weight", "bn.bias",
                   "fc.weight", "fc.bias"],
    "tiny_attn64": ["emb.w", "emb.b", "ln.weight", "ln.bias", "q.w", "k.w",
                    "head.weight", "head.bias"],
}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "tests", "models")
FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures")

DT = torch.float64


def fail(msg):
    sys.exit("make_curvature_fixtures: " + msg)


def check(cond, msg):
    if not cond:
        fail("self-check failed: " + msg)


def maxabs(a):
    a = np.asarray(a)
    return float(np.abs(a).max()) if a.size else 0.0


def rel_err(a, b):
    """max |a - b| relative to max |b| (or absolute when b is zero)."""
    scale = max(maxabs(b), 1e-300)
    return maxabs(np.asarray(a) - np.asarray(b)) / scale


# ---- layers and parameters (doc/design.md) -------------------------------------------

def attrs_of(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def find_layers(graph):
    """Layers in the order of their first node, each with its parameter tensors
    (initializer inputs in input order) and the index maps the fixtures need.

    Per layer:
      params     [(initializer name, shape)]
      offset     first index of the layer in the flat network vector theta
      size       W, the layer's parameter count
      kind       gemm | matmul | conv | norm
      units      list of index arrays (layer-local, parameter order): one per
                 output unit / channel: its weight row in [W | b] orientation
                 (input-feature order), then its bias; for norm layers
                 (scale_c, bias_c)
      aug_index  (gemm, matmul, conv) for each parameter p in parameter order,
                 its position in the row-major vector of the augmented matrix
                 [W | b] (rows = output units)
    """
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers = []
    offset = 0
    for node in graph.node:
        op, at = node.op_type, attrs_of(node)
        lay = {"node": node.name, "op": op}
        if op == "Gemm":
            if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0:
                fail("Gemm %s: only transA=0, alpha=beta=1 handled" % node.name)
            names = [i for i in node.input[1:] if i in inits]
            check(names[0] == node.input[1], "Gemm weight is an initializer")
            lay["kind"] = "matmul" if not at.get("transB", 0) else "gemm"
            lay["op_text"] = "Gemm transB=%d" % at.get("transB", 0)
        elif op == "Conv":
            names = [i for i in node.input[1:] if i in inits]
            lay["kind"] = "conv"
            lay["op_text"] = "Conv"
            lay["conv"] = {"group": at.get("group", 1), "pads": at.get("pads", [0, 0, 0, 0]),
                           "strides": at.get("strides", [1, 1]),
                           "dilations": at.get("dilations", [1, 1])}
        elif op in ("BatchNormalization", "LayerNormalization"):
            names = [i for i in node.input[1:3] if i in inits]
            lay["kind"] = "norm"
            lay["op_text"] = op
        elif op == "MatMul":
            names = [i for i in node.input if i in inits]
            if not names:
                continue
            check(names == [node.input[1]], "MatMul %s: initializer is the "
                  "right operand" % node.name)
            lay["kind"] = "matmul"
            lay["op_text"] = "MatMul"
            nxt = consumers.get(node.output[0], [])
            if len(nxt) == 1 and nxt[0].op_type == "Add":
                bias = [i for i in nxt[0].input if i in inits and i != node.output[0]]
                if bias:
                    names += bias
                    lay["op_text"] = "MatMul+Add (%s)" % nxt[0].name
        else:
            continue
        lay["params"] = [(nm, tuple(inits[nm].shape)) for nm in names]
        lay["size"] = sum(int(np.prod(s)) for _, s in lay["params"])
        lay["offset"] = offset
        offset += lay["size"]
        index_maps(lay)
        layers.append(lay)
    return layers, offset, inits


def index_maps(lay):
    """Fill units, aug_index, n_out, n_in (row length of W), has_bias."""
    shapes = [s for _, s in lay["params"]]
    kind = lay["kind"]
    if kind == "norm":
        c = shapes[0][0]
        lay["units"] = [np.array([i, c + i]) for i in range(c)]
        return
    w = shapes[0]
    has_bias = len(shapes) > 1
    if kind == "gemm":                       # stored [out, in]
        n_out, n_in = w
        wpos = lambda o, j: o * n_in + j
    elif kind == "matmul":                   # stored [in, out]: W = stored^T
        n_in, n_out = w
        wpos = lambda o, j: j * n_out + o
    else:                                    # conv: stored [out, cin/group, kh, kw]
        n_out = w[0]
        n_in = int(np.prod(w[1:]))
        wpos = lambda o, j: o * n_in + j
    nw = n_out * n_in
    if has_bias:
        check(shapes[1] == (n_out,), "bias shape of %s" % lay["node"])
    row = n_in + (1 if has_bias else 0)
    aug = np.zeros(lay["size"], dtype=np.int64)
    units = []
    for o in range(n_out):
        idx = [wpos(o, j) for j in range(n_in)]
        for j in range(n_in):
            aug[wpos(o, j)] = o * row + j
        if has_bias:
            idx.append(nw + o)
            aug[nw + o] = o * row + n_in
        units.append(np.array(idx))
    check(sorted(aug.tolist()) == list(range(lay["size"])), "aug_index is a permutation")
    lay.update(units=units, aug_index=aug, n_out=n_out, n_in=n_in, has_bias=has_bias)


# ---- an independent NumPy evaluation of the ONNX graph ---------------------------

def np_conv(x, w, b, pads, strides, dilations, group):
    n, cin, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    check(cin == cg * group, "conv channels")
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (wd + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, cout, ho, wo))
    og = cout // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dilations[0], j * dilations[1]
                patch = xs[:, :, r0:r0 + strides[0] * ho:strides[0],
                           c0:c0 + strides[1] * wo:strides[1]]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    if b is not None:
        out += b[None, :, None, None]
    return out


def np_maxpool(x, kernel, strides):
    n, c, h, w = x.shape
    ho = (h - kernel[0]) // strides[0] + 1
    wo = (w - kernel[1]) // strides[1] + 1
    out = np.full((n, c, ho, wo), -np.inf)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            out = np.maximum(out, x[:, :, i:i + strides[0] * ho:strides[0],
                                    j:j + strides[1] * wo:strides[1]])
    return out


def numpy_forward(graph, x):
    vals = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    vals[graph.input[0].name] = x
    erf = np.vectorize(math.erf, otypes=[np.float64])
    for node in graph.node:
        at = attrs_of(node)
        ins = [vals[i] for i in node.input if i]
        op = node.op_type
        if op == "Gemm":
            b = ins[1].T if at.get("transB", 0) else ins[1]
            out = ins[0] @ b + (ins[2] if len(ins) > 2 else 0.0)
        elif op == "MatMul":
            out = np.matmul(ins[0], ins[1])
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Mul":
            out = ins[0] * ins[1]
        elif op == "Div":
            out = ins[0] / ins[1]
        elif op == "Tanh":
            out = np.tanh(ins[0])
        elif op == "Sigmoid":
            out = 1.0 / (1.0 + np.exp(-ins[0]))
        elif op == "Erf":
            out = erf(ins[0])
        elif op == "Softmax":
            ax = at.get("axis", -1)
            e = np.exp(ins[0] - ins[0].max(axis=ax, keepdims=True))
            out = e / e.sum(axis=ax, keepdims=True)
        elif op == "Conv":
            out = np_conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                          at.get("pads", [0, 0, 0, 0]), at.get("strides", [1, 1]),
                          at.get("dilations", [1, 1]), at.get("group", 1))
        elif op == "MaxPool":
            check(not at.get("pads") or not any(at["pads"]), "MaxPool without pads")
            out = np_maxpool(ins[0], at["kernel_shape"], at.get("strides", [1, 1]))
        elif op == "BatchNormalization":
            xx, sc, bi, mu, var = ins
            sh = (1, -1, 1, 1)
            out = ((xx - mu.reshape(sh)) / np.sqrt(var.reshape(sh) + at.get("epsilon", 1e-5))
                   * sc.reshape(sh) + bi.reshape(sh))
        elif op == "LayerNormalization":
            check(at.get("axis", -1) in (-1, ins[0].ndim - 1), "LayerNorm over last axis")
            xx = ins[0]
            mu = xx.mean(axis=-1, keepdims=True)
            var = ((xx - mu) ** 2).mean(axis=-1, keepdims=True)
            out = (xx - mu) / np.sqrt(var + at.get("epsilon", 1e-5)) * ins[1] + ins[2]
        elif op == "Flatten":
            ax = at.get("axis", 1)
            out = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
        elif op == "Transpose":
            out = np.transpose(ins[0], at["perm"])
        elif op == "ReduceMean":
            out = ins[0].mean(axis=tuple(at["axes"]), keepdims=bool(at.get("keepdims", 1)))
        else:
            fail("numpy_forward: operator %s" % op)
        vals[node.output[0]] = out
    return vals[graph.output[0].name]


# ---- the models by hand in PyTorch -----------------------------------------------
#
# Each forward takes p (name -> tensor in ONNX storage layout, trainable ones
# from theta), x, and tap(layer_index, a, s) which sees the layer input a and
# its output s (pre-activation, bias included) and returns s (plus a zero probe
# when per-sample output gradients are wanted).

def fwd_mlp(p, x, tap, at):
    h = tap(0, x, x @ p["fc1.weight"].T + p["fc1.bias"])          # Gemm transB=1
    a = torch.tanh(h)
    return tap(1, a, a @ p["fc2.weight"] + p["fc2.bias"])          # Gemm transB=0


def fwd_cnn(p, x, tap, at):
    ca, bna = at["conv"], at["bn"]
    pads = ca["pads"]
    check(pads[0] == pads[2] and pads[1] == pads[3], "symmetric conv pads")
    c = tap(0, x, F.conv2d(x, p["conv.weight"], p["conv.bias"], stride=ca["strides"],
                           padding=pads[:2], groups=ca["group"]))
    sh = (1, -1, 1, 1)
    eps = bna.get("epsilon", 1e-5)
    b = ((c - p["bn.running_mean"].reshape(sh)) / torch.sqrt(p["bn.running_var"].reshape(sh) + eps)
         * p["bn.weight"].reshape(sh) + p["bn.bias"].reshape(sh))
    s = torch.sigmoid(b)
    pool = F.max_pool2d(s, kernel_size=at["pool"]["kernel_shape"], stride=at["pool"]["strides"])
    f = pool.reshape(pool.shape[0], -1)
    return tap(2, f, f @ p["fc.weight"].T + p["fc.bias"])


def fwd_attn(p, x, tap, at):
    e = tap(0, x, x @ p["emb.w"] + p["emb.b"])                     # MatMul + Add
    eps = at["ln"].get("epsilon", 1e-5)
    mu = e.mean(dim=-1, keepdim=True)
    var = ((e - mu) ** 2).mean(dim=-1, keepdim=True)
    n = (e - mu) / torch.sqrt(var + eps) * p["ln.weight"] + p["ln.bias"]
    q = tap(2, n, n @ p["q.w"])
    k = tap(3, n, n @ p["k.w"])
    s = q @ k.transpose(1, 2)
    att = torch.softmax(s, dim=-1)
    ctx = att @ n
    g = ctx * (torch.erf(ctx / p["sqrt2"]) + p["one"]) * p["half"]
    m = g.mean(dim=1)
    return tap(4, m, m @ p["head.weight"].T + p["head.bias"])


FORWARDS = {"tiny_mlp64": fwd_mlp, "tiny_cnn64": fwd_cnn, "tiny_attn64": fwd_attn}


class Net:
    def __init__(self, name):
        self.name = name
        self.proto = onnx.load(os.path.join(MODEL_DIR, name + ".onnx"))
        graph = self.proto.graph
        self.layers, self.P, inits = find_layers(graph)
        names = [nm for lay in self.layers for nm, _ in lay["params"]]
        if names != EXPECTED_PARAMS[name]:
            fail("%s: parameters %s, expected %s" % (name, names, EXPECTED_PARAMS[name]))
        for nm in names:
            check(inits[nm].dtype == np.float64, "%s is float64" % nm)
        self.trainable = set(names)
        self.consts = {k: torch.tensor(v, dtype=DT) for k, v in inits.items()
                       if k not in self.trainable}
        self.theta0 = torch.tensor(np.concatenate([inits[nm].ravel() for nm in names]), dtype=DT)
        self.attrs = {node.name: attrs_of(node) for node in graph.node}
        self.fwd = FORWARDS[name]
        dims = graph.input[0].type.tensor_type.shape.dim
        self.in_shape = tuple(d.dim_value for d in dims[1:])
        self.C = graph.output[0].type.tensor_type.shape.dim[1].dim_value

    def unflatten(self, theta):
        p = dict(self.consts)
        for lay in self.layers:
            off = lay["offset"]
            for nm, shape in lay["params"]:
                k = int(np.prod(shape))
                p[nm] = theta[off:off + k].reshape(shape)
                off += k
        return p

    def forward(self, theta, x, tap=None):
        return self.fwd(self.unflatten(theta), x, tap or (lambda i, a, s: s), self.attrs)


# ---- losses -----------------------------------------------------------------------

def per_sample_loss(loss, z, y):
    if loss == "ce":
        return -torch.log_softmax(z, dim=1).gather(1, y[:, None])[:, 0]
    onehot = F.one_hot(y, z.shape[1]).to(DT)
    return 0.5 * ((z - onehot) ** 2).sum(dim=1)


def loss_factors(loss, z, y):
    """Per sample: Lambda_n = d^2 l / dz^2, S_n with S S^T = Lambda, dl/dz."""
    n, c = z.shape
    onehot = F.one_hot(y, c).to(DT)
    eye = torch.eye(c, dtype=DT)
    if loss == "ce":
        p = torch.softmax(z, dim=1)
        lam = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        s = (eye[None] - p[:, :, None]) * torch.sqrt(p)[:, None, :]   # S[:, c] = sqrt(p_c)(e_c - p)
        dz = p - onehot
    else:
        lam = eye.expand(n, c, c).clone()
        s = eye.expand(n, c, c).clone()
        dz = z - onehot
    return lam, s, dz


# ---- K-FAC pieces -------------------------------------------------------------------

def im2col(x, lay):
    """x [N, Cin, H, W] -> patches [N, T, Cin*kh*kw] (feature order (c, kh, kw),
    zero padding included, T = Ho*Wo in row-major position order)."""
    ca = lay["conv"]
    cout, cg, kh, kw = lay["params"][0][1]
    pads, st, dl = ca["pads"], ca["strides"], ca["dilations"]
    n, cin, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho = (h + pads[0] + pads[2] - dl[0] * (kh - 1) - 1) // st[0] + 1
    wo = (w + pads[1] + pads[3] - dl[1] * (kw - 1) - 1) // st[1] + 1
    cols = np.zeros((n, ho, wo, cin, kh, kw))
    for r in range(ho):
        for c in range(wo):
            for i in range(kh):
                for j in range(kw):
                    cols[:, r, c, :, i, j] = xp[:, :, r * st[0] + i * dl[0], c * st[1] + j * dl[1]]
    return cols.reshape(n, ho * wo, cin * kh * kw)


def layer_groups(lay):
    """[(group, output-channel slice, input-feature slice of the full patch)]."""
    if lay["kind"] != "conv":
        return [(None, slice(0, lay["n_out"]), slice(0, lay["n_in"]))]
    g = lay["conv"]["group"]
    og, fi = lay["n_out"] // g, lay["n_in"]
    return [(k, slice(k * og, (k + 1) * og), slice(k * fi, (k + 1) * fi)) for k in range(g)]


def w_aug(lay, theta):
    """The augmented matrix [W | b] (rows = output units) from theta."""
    t = theta[lay["offset"]:lay["offset"] + lay["size"]]
    v = np.zeros(lay["size"])
    v[lay["aug_index"]] = t
    return v.reshape(lay["n_out"], -1)


def kfac_data(net, theta, x, y, loss):
    """Per K-FAC layer: expanded inputs abar [N, T, in(+1)] (full Conv patch, the
    bias column appended per group later) and per-sample output gradients
    delta [N, T, out] for each column of S (ggn) and for the true label
    (fisher_emp)."""
    inputs, outputs = {}, {}

    def record(i, a, s):
        inputs[i] = a.detach().numpy().copy()
        outputs[i] = s.detach().numpy().copy()
        return s

    z = net.forward(theta, x, record)
    kf = [i for i, lay in enumerate(net.layers) if lay["kind"] != "norm"]
    probes = {i: torch.zeros(outputs[i].shape, dtype=DT, requires_grad=True) for i in kf}

    def probed(i, a, s):
        return s + probes[i] if i in probes else s

    zp = net.forward(theta, x, probed)
    lam, smat, dz = loss_factors(loss, zp.detach(), y)
    order = [probes[i] for i in kf]

    def backprop(v):
        gs = torch.autograd.grad(zp, order, grad_outputs=v, retain_graph=True)
        res = {}
        for i, g in zip(kf, gs):
            g = g.numpy()
            lay = net.layers[i]
            if lay["kind"] == "conv":
                g = g.reshape(g.shape[0], g.shape[1], -1).transpose(0, 2, 1)   # [N, T, Cout]
            elif g.ndim == 2:
                g = g[:, None, :]
            res[i] = g
        return res

    cols = [backprop(smat[:, :, c].contiguous()) for c in range(net.C)]
    emp = backprop(dz)
    out = {}
    for i in kf:
        lay = net.layers[i]
        a = inputs[i]
        if lay["kind"] == "conv":
            a = im2col(a, lay)
        elif a.ndim == 2:
            a = a[:, None, :]
        # the expanded inputs must reproduce the layer output: s = [W|b] abar
        wa = w_aug(lay, theta.numpy())
        s_ref = outputs[i]
        if lay["kind"] == "conv":
            s_ref = s_ref.reshape(s_ref.shape[0], s_ref.shape[1], -1).transpose(0, 2, 1)
        elif s_ref.ndim == 2:
            s_ref = s_ref[:, None, :]
        for g, osl, isl in layer_groups(lay):
            ag = a[:, :, isl]
            if lay["has_bias"]:
                ag = np.concatenate([ag, np.ones(ag.shape[:2] + (1,))], axis=2)
            check(rel_err(ag @ wa[osl].T, s_ref[:, :, osl]) < 1e-13,
                  "%s layer %d: expanded input reproduces the output" % (net.name, i))
        out[i] = {"a": a, "ggn": [c[i] for c in cols], "fisher_emp": [emp[i]]}
    return out


def kfac_factors(lay, kd, curv):
    """[(group, A, G)] with doc/design.md's scaling."""
    n, t = kd["a"].shape[:2]
    res = []
    for g, osl, isl in layer_groups(lay):
        ag = kd["a"][:, :, isl]
        if lay["has_bias"]:
            ag = np.concatenate([ag, np.ones(ag.shape[:2] + (1,))], axis=2)
        a2 = ag.reshape(n * t, -1)
        A = a2.T @ a2 / (n * t)
        G = np.zeros((osl.stop - osl.start,) * 2)
        for d in kd[curv]:
            d2 = d[:, :, osl].reshape(n * t, -1)
            G += d2.T @ d2
        G /= n
        res.append((g, A, G))
    return res


def exact_from_expanded(lay, kd, curv):
    """(1/N) sum_n sum_vectors g g^T with g = sum_t kron(delta_t, abar_t) (per group,
    groups concatenated in row-major [W | b] order), permuted into parameter order.
    This is the exact block built from the same deltas and inputs K-FAC uses, so
    comparing it with the block checks those ingredients (position pairing too)."""
    n = kd["a"].shape[0]
    m = np.zeros((lay["size"], lay["size"]))
    for d in kd[curv]:
        parts = []
        for g, osl, isl in layer_groups(lay):
            ag = kd["a"][:, :, isl]
            if lay["has_bias"]:
                ag = np.concatenate([ag, np.ones(ag.shape[:2] + (1,))], axis=2)
            parts.append(np.einsum("nto,nti->noi", d[:, :, osl], ag).reshape(n, -1))
        gv = np.concatenate(parts, axis=1)
        m += gv.T @ gv
    m /= n
    ai = lay["aug_index"]
    return m[np.ix_(ai, ai)]


def kfac_matrix(lay, factors):
    """Block diagonal over groups of kron(G_g, A_g) over row-major vec([W|b]),
    permuted into parameter order."""
    k_aug = np.zeros((lay["size"], lay["size"]))
    pos = 0
    for g, A, G in factors:
        k = np.kron(G, A)
        k_aug[pos:pos + k.shape[0], pos:pos + k.shape[0]] = k
        pos += k.shape[0]
    check(pos == lay["size"], "kfac covers the layer")
    ai = lay["aug_index"]
    return k_aug[np.ix_(ai, ai)]


# ---- curvature ----------------------------------------------------------------------

def sym(m):
    return 0.5 * (m + m.T)


def eig_desc(m):
    return torch.linalg.eigvalsh(torch.tensor(m, dtype=DT)).numpy()[::-1].copy()


def compute(net, x_np, y_np, loss):
    """Everything for one (model, data, loss); returns a dict of NumPy arrays."""
    x = torch.tensor(x_np, dtype=DT)
    y = torch.tensor(y_np, dtype=torch.long)
    n = x.shape[0]
    theta = net.theta0.clone()
    P = net.P

    def mean_loss(th):
        return per_sample_loss(loss, net.forward(th, x), y).mean()

    res = {"asym": {}}
    z = net.forward(theta, x).detach()
    res["logits"] = z.numpy()
    res["loss"] = float(mean_loss(theta))
    th = theta.clone().requires_grad_(True)
    res["grad"] = torch.autograd.grad(mean_loss(th), th)[0].numpy()

    # whole-network matrices
    H = torch.autograd.functional.hessian(mean_loss, theta).numpy()
    J = torch.autograd.functional.jacobian(lambda t: net.forward(t, x), theta).numpy()  # [N, C, P]
    lam, _, dz = loss_factors(loss, z, y)
    lam = lam.numpy()
    GGN = np.einsum("ncp,ncd,ndq->pq", J, lam, J) / n
    g_ps = torch.autograd.functional.jacobian(
        lambda t: per_sample_loss(loss, net.forward(t, x), y), theta).numpy()          # [N, P]
    FE = g_ps.T @ g_ps / n
    check(rel_err(g_ps.mean(axis=0), res["grad"]) < 1e-13, "mean of per-sample grads")
    check(rel_err(np.einsum("nc,ncp->np", dz.numpy(), J), g_ps) < 1e-12,
          "per-sample grads = J^T dl/dz")
    # loss Hessian w.r.t. the logits, by autograd, for sample 0
    lam0 = torch.autograd.functional.hessian(
        lambda zz: per_sample_loss(loss, zz[None], y[:1])[0], z[0]).numpy()
    check(rel_err(lam[0], lam0) < 1e-13, "Lambda by formula = by autograd")
    nets = {"hessian": H, "ggn": GGN, "fisher_emp": FE}
    for c, m in nets.items():
        res["asym"][c] = rel_err(m, m.T)
        check(res["asym"][c] < 1e-12, "%s %s %s net matrix symmetric" % (net.name, loss, c))
        nets[c] = sym(m)
    res["net"] = nets
    res["net_eig"] = {c: eig_desc(m) for c, m in nets.items()}
    for c in ("ggn", "fisher_emp"):
        ev = res["net_eig"][c]
        check(ev[-1] >= -1e-12 * max(ev[0], 1e-300), "%s %s %s PSD" % (net.name, loss, c))

    # layer blocks; the Hessian block also directly w.r.t. the layer alone
    res["layers"] = []
    kd = kfac_data(net, theta, x, y, loss)
    for li, lay in enumerate(net.layers):
        o, w = lay["offset"], lay["size"]
        sl = slice(o, o + w)
        L = {"block": {c: nets[c][sl, sl].copy() for c in CURVATURES}}

        def layer_loss(t, o=o, w=w):
            full = torch.cat([theta[:o], t, theta[o + w:]])
            return mean_loss(full)

        Hl = torch.autograd.functional.hessian(layer_loss, theta[sl].clone()).numpy()
        check(rel_err(Hl, L["block"]["hessian"]) < 1e-12,
              "%s %s layer %d: layer Hessian = net sub-block" % (net.name, loss, li))
        for c in CURVATURES:
            b = L["block"][c]
            L.setdefault("eig", {})[c] = {
                "full": eig_desc(b),
                "diag": np.sort(np.diag(b))[::-1].copy(),
                "unit": np.sort(np.concatenate(
                    [eig_desc(b[np.ix_(u, u)]) for u in lay["units"]]))[::-1].copy(),
            }
        if li in kd:
            L["kfac"], L["factors"] = {}, {}
            t_pos = kd[li]["a"].shape[1]
            for c in KFAC_CURVATURES:
                fac = kfac_factors(lay, kd[li], c)
                K = kfac_matrix(lay, fac)
                L["factors"][c], L["kfac"][c] = fac, K
                ev = eig_desc(K)
                prods = np.sort(np.concatenate(
                    [np.outer(eig_desc(G), eig_desc(A)).ravel() for _, A, G in fac]))[::-1]
                check(rel_err(ev, prods) < 1e-12, "kfac eigenvalues = products")
                L["eig"][c]["kfac"] = ev
                check(rel_err(exact_from_expanded(lay, kd[li], c), L["block"][c]) < 1e-12,
                      "%s %s layer %d %s: block from K-FAC's deltas and inputs"
                      % (net.name, loss, li, c))
                # with T = 1, a bias's block of the exact matrix equals G
                if t_pos == 1 and lay["has_bias"]:
                    bi = lay["aug_index"].argsort()[[(u + 1) * (lay["n_in"] + 1) - 1
                                                     for u in range(lay["n_out"])]]
                    check(rel_err(L["block"][c][np.ix_(bi, bi)], fac[0][2]) < 1e-12,
                          "%s %s layer %d %s: bias block = G" % (net.name, loss, li, c))
            L["T"] = t_pos
        res["layers"].append(L)
    return res


def fd_hessian_check(net, x_np, y_np, loss):
    """Central differences of the autograd gradient vs the autograd Hessian."""
    x = torch.tensor(x_np, dtype=DT)
    y = torch.tensor(y_np, dtype=torch.long)

    def grad(th):
        th = th.clone().requires_grad_(True)
        l = per_sample_loss(loss, net.forward(th, x), y).mean()
        return torch.autograd.grad(l, th)[0].numpy()

    h = 1e-5
    P = net.P
    Hfd = np.zeros((P, P))
    for i in range(P):
        e = torch.zeros(P, dtype=DT)
        e[i] = h
        Hfd[:, i] = (grad(net.theta0 + e) - grad(net.theta0 - e)) / (2 * h)
    return Hfd


# ---- output ---------------------------------------------------------------------------

def fmt(v):
    return "%.17g" % v


class Records:
    def __init__(self):
        self.lines, self.names = [], []

    def _name(self, name):
        check(name not in self.names and " " not in name, "record name %s" % name)
        self.names.append(name)

    def matrix(self, name, m):
        m = np.asarray(m, dtype=np.float64)
        self._name(name)
        self.lines.append("matrix %s %d %d" % (name, m.shape[0], m.shape[1]))
        self.lines.extend(" ".join(fmt(v) for v in row) for row in m)

    def vector(self, name, v):
        v = np.asarray(v, dtype=np.float64).ravel()
        self._name(name)
        self.lines.append("vector %s %d" % (name, v.size))
        self.lines.append(" ".join(fmt(t) for t in v))


def describe_layers(net):
    out = []
    for li, lay in enumerate(net.layers):
        ps = ", ".join("%s %s" % (nm, list(s)) for nm, s in lay["params"])
        out.append("  layer %d: node %s, %s, %d parameters = net indices [%d, %d): %s"
                   % (li, lay["node"], lay["op_text"], lay["size"], lay["offset"],
                      lay["offset"] + lay["size"], ps))
        if lay["kind"] == "norm":
            c = len(lay["units"])
            out.append("    unit c (c = 0..%d): local indices (c, %d + c) = (scale_c, bias_c)"
                       % (c - 1, c))
            continue
        orient = {"gemm": "W = stored weight [out, in]",
                  "matmul": "W = TRANSPOSE of the stored [in, out] weight",
                  "conv": "W[o] = stored weight[o] flattened (c_in_local, kh, kw)"}[lay["kind"]]
        out.append("    [W%s]: %d rows (output units) x %d; %s"
                   % (" | b" if lay["has_bias"] else "", lay["n_out"],
                      lay["n_in"] + lay["has_bias"], orient))
        u0 = lay["units"][0]
        u1 = lay["units"][1]
        out.append("    unit o = local indices of weight row o in input-feature order%s; "
                   "unit 0 = %s, unit 1 = %s"
                   % (", then bias o" if lay["has_bias"] else " (no bias)",
                      u0.tolist(), u1.tolist()))
    return out


HEADER_CONVENTIONS = """\
Conventions (doc/design.md):
  data: inputs tests/fixtures/curv_{model}_x.npy (float64), labels curv_{model}_y.npy (int64),
    N = {n} samples, C = {c} outputs; the model runs in float64 (the file is float64).
  loss: {loss_text}; L = (1/N) sum_n l_n.
  hessian = d^2 L / d theta^2 (exact, autograd; checked by central differences of the gradient).
  ggn = (1/N) sum_n J_n^T Lambda_n J_n, J_n = d z_n / d theta, Lambda_n = d^2 l_n / d z_n^2
    ({lam_text}); equals the exact fisher for ce and mse.
  fisher_emp = (1/N) sum_n g_n g_n^T, g_n = d l_n / d theta (true label, l_n not divided by N).
  Parameter order: layers in the order of their first ONNX node; inside a layer the
    initializer inputs in input order (weight, then bias), each flattened row-major in
    its ONNX storage layout.  BatchNormalization running mean/var are not parameters.
  Layers (local index = index inside the layer's block; net index = local + offset):
{layers}
  Representations of a W x W layer block (same order as the block):
    full: the block itself (block/<curv>/<layer>), its eigenvalues (eig/<curv>/full/<layer>).
    diag: eig/<curv>/diag/<layer> = the block's diagonal sorted descending (no eigen-solve).
    unit: the sub-blocks over each unit's local indices listed above (units are disjoint
      and cover the layer); eig/<curv>/unit/<layer> = the eigenvalues of all unit blocks
      pooled and sorted descending (= eigenvalues of the unit block-diagonal matrix).
      Given for hessian, ggn and fisher_emp.
    kfac (ggn and fisher_emp only, Gemm / MatMul(+Add) / Conv layers): for s = W a + b at T
      positions per sample, abar = [a; 1] when the layer has a bias, else a;
      A = (1/(N*T)) sum_(n,t) abar abar^T; G = (1/N) sum_n sum_t E[delta delta^T],
      delta_(n,t) = d l_n / d s_(n,t) (per-sample loss, not divided by N).
      ggn: E[delta delta^T] = sum_c delta^(c) delta^(c)^T with delta^(c) the backpropagation of
        column c of S_n, Lambda_n = S_n S_n^T ({s_text}).
      fisher_emp: delta from the true label (delta = backprop of d l_n / d z_n).
      Gemm: T = 1, a = the input row.  MatMul: a = the input vector at each sequence position
        (T = the sequence length, 3 here).  Conv: a = the im2col patch at each output position,
        zero padding included, feature order (c_in, kh, kw) as in the weight, T = H_out*W_out,
        positions row-major.
      GROUPED CONV (group = G > 1): handled PER GROUP.  Group g's output channels are
        o in [g*Cout/G, (g+1)*Cout/G), its inputs are the patches of its own input channels
        [g*Cin/G, (g+1)*Cin/G) (feature order (c_in_local, kh, kw), = the stored weight row),
        plus the 1 for the bias.  A_g and G_g (records kfac_A/<curv>/<layer>/g<g>,
        kfac_G/<curv>/<layer>/g<g>) are formed from those alone; the layer's K-FAC matrix is
        block diagonal over groups, blockdiag_g(kron(G_g, A_g)), with zero entries between
        groups; its eigenvalues are all products lambda_i(G_g) lambda_j(A_g) over all groups.
      kfac/<curv>/<layer>: kron(G, A) is formed over vec([W | b]) ROW-MAJOR (rows = output
        units, the bias as the last column of each row; element ((i,j),(k,l)) = G[i,k] A[j,l]),
        then PERMUTED into the parameter order above (stored weight layout row-major, then
        bias), so that it is directly comparable with block/<curv>/<layer>.  For a Gemm with
        transB = 0 and for MatMul, W is the transpose of the stored [in, out] weight, so
        parameter (j, o) of the stored weight (input j, output o) is element (o, j) of W.
        kfac_A / kfac_G are the unpermuted factors (A over [a; 1], G over output units).
        A does not depend on the curvature; it is written under both names.
  whole network: block/<curv>/net (P x P, P = {P}), eig/<curv>/full/net.
  Every matrix is written as (M + M^T)/2; the raw asymmetry max|M - M^T|/max|M| of the
    whole-network matrices was: {asym}.
  Eigenvalues: torch.linalg.eigvalsh in float64, sorted descending (k = 0 largest).
  logits/0: the logits of sample 0.  grad/net: d L / d theta (P values, parameter order).
  Mean loss L = {loss_value}."""


def write_fixture(path, net, loss, res, checks):
    loss_text = {"ce": "ce: l_n = -log softmax(z_n)_(y_n)",
                 "mse": "mse: l_n = 0.5 ||z_n - onehot(y_n)||^2 (summed over the C outputs)"}[loss]
    lam_text = {"ce": "diag(p) - p p^T, p = softmax(z)", "mse": "the identity"}[loss]
    s_text = {"ce": "S[:, c] = sqrt(p_c) (e_c - p)", "mse": "S = I"}[loss]
    head = ["curvscope curvature fixture: %s.onnx, loss %s, float64, computed by PyTorch %s "
            "(made by tools/make_curvature_fixtures.py; rerun from the repository root)."
            % (net.name, loss, torch.__version__),
            "Format: records 'matrix NAME ROWS COLS' followed by ROWS lines of COLS values, and "
            "'vector NAME LEN' followed by one line of LEN values; values '%.17g'; '#' lines are "
            "comments."]
    conv = HEADER_CONVENTIONS.format(
        model=net.name, n=res["logits"].shape[0], c=net.C, loss_text=loss_text,
        lam_text=lam_text, s_text=s_text, P=net.P, layers="\n".join(describe_layers(net)),
        asym=", ".join("%s %.2g" % kv for kv in res["asym"].items()),
        loss_value=fmt(res["loss"]))
    head += conv.split("\n")
    head.append("Self-checks (all passed when this file was written):")
    head += ["  " + c for c in checks]
    head.append("Informative (not a check): relative Frobenius distance ||kfac - block||/||block||:")
    for li, L in enumerate(res["layers"]):
        if "kfac" in L:
            head.append("  layer %d (T = %d): %s" % (li, L["T"], ", ".join(
                "%s %.4g" % (c, np.linalg.norm(L["kfac"][c] - L["block"][c])
                             / np.linalg.norm(L["block"][c])) for c in KFAC_CURVATURES)))

    rec = Records()
    rec.vector("logits/0", res["logits"][0])
    rec.vector("grad/net", res["grad"])
    for li, (lay, L) in enumerate(zip(net.layers, res["layers"])):
        for c in CURVATURES:
            rec.matrix("block/%s/%d" % (c, li), L["block"][c])
        if "kfac" in L:
            for c in KFAC_CURVATURES:
                rec.matrix("kfac/%s/%d" % (c, li), L["kfac"][c])
                for g, A, G in L["factors"][c]:
                    suffix = "" if g is None else "/g%d" % g
                    rec.matrix("kfac_A/%s/%d%s" % (c, li, suffix), A)
                    rec.matrix("kfac_G/%s/%d%s" % (c, li, suffix), G)
        for c in CURVATURES:
            for r in ("full", "kfac", "unit", "diag"):
                if r in L["eig"][c]:
                    rec.vector("eig/%s/%s/%d" % (c, r, li), L["eig"][c][r])
    for c in CURVATURES:
        rec.matrix("block/%s/net" % c, res["net"][c])
        rec.vector("eig/%s/full/net" % c, res["net_eig"][c])

    head.append("Records, in file order: " + " ".join(rec.names))
    with open(path, "w") as f:
        for line in head:
            f.write("# " + line + "\n" if line else "#\n")
        f.write("\n".join(rec.lines) + "\n")


# ---- main -------------------------------------------------------------------------------

def make_data(net):
    rng = np.random.default_rng(SEEDS[net.name])
    x = rng.standard_normal((N_SAMPLES,) + net.in_shape).astype(np.float64)
    y = rng.integers(0, net.C, size=N_SAMPLES).astype(np.int64)
    return x, y


def main():
    t0 = time.time()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(FIXTURE_DIR, exist_ok=True)
    for name in MODELS:
        net = Net(name)
        x, y = make_data(net)
        np.save(os.path.join(FIXTURE_DIR, "curv_%s_x.npy" % name), x)
        np.save(os.path.join(FIXTURE_DIR, "curv_%s_y.npy" % name), y)

        z_np = numpy_forward(net.proto.graph, x)
        z_t = net.forward(net.theta0, torch.tensor(x, dtype=DT)).numpy()
        fwd_err = maxabs(z_t - z_np)
        check(fwd_err <= 1e-12, "%s: PyTorch logits = NumPy ONNX evaluation (%g)"
              % (name, fwd_err))

        for loss in LOSSES:
            checks = ["logits of the hand-written PyTorch model = NumPy evaluation of the ONNX "
                      "graph: max abs diff %.2g (<= 1e-12)" % fwd_err]
            res = compute(net, x, y, loss)

            Hfd = fd_hessian_check(net, x, y, loss)
            fd = rel_err(Hfd, res["net"]["hessian"])
            check(fd < 1e-7, "%s %s: Hessian vs finite differences (%g)" % (name, loss, fd))
            checks.append("whole-net Hessian vs central differences of the gradient (h = 1e-5): "
                          "max rel diff %.2g (< 1e-7)" % fd)
            checks.append("per-layer Hessian computed w.r.t. the layer alone = sub-block of the "
                          "whole-net Hessian (< 1e-12); every matrix symmetric (< 1e-12)")
            checks.append("ggn and fisher_emp PSD: smallest eigenvalue of the whole-net matrix "
                          "ggn %.3g, fisher_emp %.3g (>= -1e-12 lambda_max)"
                          % (res["net_eig"]["ggn"][-1], res["net_eig"]["fisher_emp"][-1]))
            checks.append("Lambda formula = autograd Hessian of l w.r.t. z; per-sample grads "
                          "= J^T dl/dz; Conv im2col / MatMul / Gemm expanded inputs reproduce "
                          "the layer outputs through [W | b]; kfac eigenvalues = products "
                          "lambda(G) lambda(A); for T = 1 layers with bias the bias-bias "
                          "sub-block of the exact ggn / fisher_emp block equals G; for every K-FAC "
                          "layer the exact block rebuilt as (1/N) sum g g^T from the same "
                          "deltas and expanded inputs, g = sum_t kron(delta_t, abar_t), equals "
                          "block/<curv>/<layer> (< 1e-12)")

            # linear output layer: hessian = ggn on the last layer (d^2 z / d theta^2 = 0)
            last = len(net.layers) - 1
            d = rel_err(res["layers"][last]["block"]["hessian"],
                        res["layers"][last]["block"]["ggn"])
            check(d < 1e-12, "%s %s: last-layer hessian = ggn (%g)" % (name, loss, d))
            checks.append("last layer %d (linear in its parameters): hessian block = ggn block, "
                          "max rel diff %.2g (< 1e-12)" % (last, d))

            # K-FAC is exact for one sample and T = 1 (Martens & Grosse)
            one = compute(net, x[:1], y[:1], loss)
            for li, L in enumerate(one["layers"]):
                if L.get("T") != 1:
                    continue
                ds = []
                for c in KFAC_CURVATURES:
                    dd = rel_err(L["kfac"][c], L["block"][c])
                    check(dd < 1e-12, "%s %s layer %d %s: K-FAC exact for N = 1, T = 1 (%g)"
                          % (name, loss, li, c, dd))
                    ds.append("%s %.2g" % (c, dd))
                checks.append("K-FAC exact for N = 1, T = 1: on sample 0 alone, layer %d "
                              "(%s): permuted kron(G, A) = exact block, max rel diff %s "
                              "(< 1e-12)" % (li, net.layers[li]["op_text"], ", ".join(ds)))
            for li, L in enumerate(one["layers"]):
                if "T" in L and L["T"] != 1:
                    checks.append("(informative) N = 1 but T = %d, layer %d: ||kfac - block|| / "
                                  "||block|| ggn %.3g: not exact, as expected with weight "
                                  "sharing" % (L["T"], li, np.linalg.norm(
                                      L["kfac"]["ggn"] - L["block"]["ggn"])
                                      / np.linalg.norm(L["block"]["ggn"])))

            path = os.path.join(FIXTURE_DIR, "curv_%s_%s.txt" % (name, loss))
            write_fixture(path, net, loss, res, checks)
            print("%s %s: P = %d, L = %.6f, %d bytes" % (name, loss, net.P, res["loss"],
                                                         os.path.getsize(path)))
    print("done in %.1f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
