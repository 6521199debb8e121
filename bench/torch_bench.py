#!/usr/bin/python3
"""PyTorch side of curvscope's CPU benchmark: one case, one model, one JSON line.

    /usr/bin/python3 bench/torch_bench.py CASE MODEL [--n N] [--batch B]
                     [--threads T] [--seed S] [--impl vmap|hooks] [--self-check]

MODEL (mlp or cnn) is rebuilt as a torch.nn.Sequential from the initializers and
node attributes of tests/models/MODEL.onnx; BatchNorm is in eval mode throughout
(running statistics frozen).  The data are the first N Fashion-MNIST training
images, x = (pixel/255 - 0.2860)/0.3530 in float32, taken in order in batches of
B (the last one shorter when B does not divide N); l_n is the cross-entropy of
sample n and L = (1/N) sum_n l_n.

Cases and the number each reports as "check":

  fwdbwd      forward + backward of the batch mean loss per batch; check = L.
  kfac_emp    K-FAC factors collected as ASDL does, by hooks on every Linear and
  kfac_mc     Conv2d: A = 1/(N T) sum_{n,t} abar abar^T over the layer input
              (Conv2d: unfolded patches, T positions) with a 1 appended for the
              bias, G = 1/N sum_{n,t} delta delta^T over the gradients of the
              summed loss w.r.t. the layer output.  Labels are the true ones
              (emp) or one draw per sample from softmax(z) (mc);
              check = sum over layers of tr A + tr G.
  diag_ggn    diagonal of the GGN 1/N sum_n J_n^T (diag(p) - p p^T) J_n, through
              the factor S = diag(sqrt p) - p sqrt(p)^T: sum_c (J_n^T s_c)^2 by
              functorch (vmap over samples of vmap over the columns of a vjp),
              or with --impl hooks as BackPACK's DiagGGN: forward hooks keep the
              layer inputs, C backwards of the columns of S give the gradients
              at the layer outputs, and the per-sample squares are summed
              (Linear: one GEMM of squares); check = its sum (the GGN trace).
  diag_emp    diagonal of the empirical Fisher 1/N sum_n g_n g_n^T from per-sample
              gradients (functorch vmap of grad, or --impl hooks: one backward of
              p - e_y); check = its sum.
  power       20 power iterations for the top Hessian eigenvalue of L, as in
              PyHessian: Hv = sum_batches (b/N) HVP by double backprop,
              lambda = v.Hv, v = Hv/|Hv|; check = the last lambda.
  sgd_epoch   one epoch of SGD (lr 1e-3, momentum 0.9) on the batch mean loss,
              then L with the trained weights; check = that L.
  kfac_epoch  the same epoch with each Linear/Conv2d gradient [W | b]
              preconditioned as G^-1 [W | b] A^-1 (K-FAC: MC factors refreshed
              every 10 steps with a 0.95 moving average, damping sqrt(1e-3)
              split by pi, KL clipping 1e-3); check = L after the epoch.

Curvature statistics are accumulated in float64; model arithmetic is float32.
"seconds" is time.perf_counter() around the case's computation only, after one
untimed forward + backward of the first batch.  --self-check (untimed, before
the case) compares the rebuilt model with tests/fixtures/{logits,eval,grad}_MODEL.txt
made by tools/make_models.py from the original PyTorch model.
"""

import argparse
import collections
import copy
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import onnx
from onnx import helper, numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F
from functorch import grad, make_functional_with_buffers, vjp, vmap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.environ.get("FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530

CASES = ("fwdbwd", "kfac_emp", "kfac_mc", "diag_ggn", "diag_emp", "power",
         "sgd_epoch", "kfac_epoch")
# The operator chain each model must have, so a changed export is noticed.
MODEL_OPS = {
    "mlp": ["Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm"],
    "cnn": ["Conv", "BatchNormalization", "Relu", "MaxPool",
            "Conv", "BatchNormalization", "Relu", "MaxPool", "Flatten", "Gemm"],
}

POWER_ITERS = 20
LR, MOMENTUM = 1e-3, 0.9
KFAC_REFRESH, KFAC_EMA, KFAC_DAMPING, KFAC_KL_CLIP = 10, 0.95, 1e-3, 1e-3


def fail(msg):
    sys.exit("torch_bench: " + msg)


# ---- data -----------------------------------------------------------------------

def read_idx(path):
    """A gzip IDX file of unsigned bytes as a NumPy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code != 0x08:
        fail("%s: not an unsigned-byte IDX file" % path)
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(prefix, n):
    """First n images of a split as float64 [n, 1, 28, 28] and int64 labels."""
    images = read_idx(os.path.join(DATA_DIR, prefix + "-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA_DIR, prefix + "-labels-idx1-ubyte.gz"))
    if n > images.shape[0]:
        fail("%s has only %d images" % (prefix, images.shape[0]))
    x = (images[:n].astype(np.float64) / 255.0 - MEAN) / STD
    return torch.from_numpy(x[:, None]), torch.from_numpy(labels[:n].astype(np.int64))


# ---- model ----------------------------------------------------------------------

def load_model(name):
    """tests/models/NAME.onnx as an eval-mode nn.Sequential.

    Modules holding initializers are named after them (conv1, bn1, fc1, ...), so
    named_parameters() gives the ONNX initializer names."""
    graph = onnx.load(os.path.join(ROOT, "tests", "models", name + ".onnx")).graph
    ops = [node.op_type for node in graph.node]
    if ops != MODEL_OPS[name]:
        fail("%s.onnx: unexpected operators %s" % (name, ops))
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
            for t in graph.initializer}
    mods, prev = collections.OrderedDict(), graph.input[0].name
    for i, node in enumerate(graph.node):
        if node.input[0] != prev:
            fail("%s.onnx: the graph is not a chain" % name)
        attr = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = [init[n] for n in node.input[1:]]
        key = node.input[1].rsplit(".", 1)[0] if len(w) else "%s%d" % (node.op_type.lower(), i)
        if node.op_type == "Gemm":
            gemm = (attr.get("alpha", 1.0), attr.get("beta", 1.0), attr.get("transA", 0))
            if gemm != (1.0, 1.0, 0):
                fail("%s: unsupported Gemm attributes %s" % (key, attr))
            weight = w[0] if attr.get("transB", 0) else w[0].t()    # torch wants [out, in]
            m = nn.Linear(weight.shape[1], weight.shape[0])
            m.weight.data.copy_(weight)
            m.bias.data.copy_(w[1])
        elif node.op_type == "Conv":
            pads = attr.get("pads", [0, 0, 0, 0])
            if pads[:2] != pads[2:]:
                fail("%s: asymmetric padding %s" % (key, pads))
            m = nn.Conv2d(w[0].shape[1] * attr.get("group", 1), w[0].shape[0],
                          tuple(w[0].shape[2:]), stride=tuple(attr.get("strides", [1, 1])),
                          padding=tuple(pads[:2]), dilation=tuple(attr.get("dilations", [1, 1])),
                          groups=attr.get("group", 1))
            m.weight.data.copy_(w[0])
            m.bias.data.copy_(w[1])
        elif node.op_type == "BatchNormalization":
            m = nn.BatchNorm2d(w[0].shape[0], eps=attr.get("epsilon", 1e-5))
            for t, v in zip((m.weight.data, m.bias.data, m.running_mean, m.running_var), w):
                t.copy_(v)
        elif node.op_type == "MaxPool":
            pads = attr.get("pads", [0, 0, 0, 0])
            m = nn.MaxPool2d(tuple(attr["kernel_shape"]), stride=tuple(attr.get("strides", [1, 1])),
                             padding=tuple(pads[:2]), ceil_mode=bool(attr.get("ceil_mode", 0)))
        elif node.op_type == "Relu":
            m = nn.ReLU()
        else:                                                      # Flatten
            if attr.get("axis", 1) != 1:
                fail("%s: Flatten axis %s" % (key, attr["axis"]))
            m = nn.Flatten()
        mods[key] = m
        prev = node.output[0]
    return nn.Sequential(mods).eval()


def read_fixture(name):
    with open(os.path.join(ROOT, "tests", "fixtures", name)) as f:
        return [line.split() for line in f if line.strip() and not line.startswith("#")]


def self_check(model, name):
    """Compare the rebuilt model with the fixtures of the original PyTorch model:
    float32 logits of 8 t10k images, float64 ce loss over 1000 t10k images and
    float64 gradient of the mean ce loss over the first 256 training images."""
    x, y = load_split("t10k", 1000)
    with torch.no_grad():
        z = model(x[:8].float())
    ref = torch.tensor([[float(v) for v in row] for row in read_fixture("logits_%s.txt" % name)])
    err = (z - ref).abs().max().item()
    if err > 1e-4:
        fail("self-check: logits differ by %.3g" % err)
    m64 = copy.deepcopy(model).double()
    with torch.no_grad():
        loss = F.cross_entropy(m64(x), y).item()
    ref_loss = float(dict(read_fixture("eval_%s.txt" % name))["loss_ce"])
    if abs(loss - ref_loss) > 1e-9 * ref_loss:
        fail("self-check: eval loss %.17g, fixture %.17g" % (loss, ref_loss))
    x, y = load_split("train", 256)
    m64.zero_grad()
    F.cross_entropy(m64(x), y).backward()
    rows = read_fixture("grad_%s.txt" % name)
    ref_grad = {rows[i][1]: torch.tensor([float(v) for v in rows[i + 1]], dtype=torch.float64)
                for i in range(1, len(rows), 2)}
    params = dict(m64.named_parameters())
    if set(ref_grad) != set(params):
        fail("self-check: parameters %s, fixture %s" % (sorted(params), sorted(ref_grad)))
    gerr = max((params[k].grad.flatten() - g).abs().max().item() for k, g in ref_grad.items())
    if gerr > 1e-10:
        fail("self-check: gradient differs by %.3g" % gerr)
    print("torch_bench: self-check ok: logits %.2g, eval loss %.2g, gradient %.2g"
          % (err, abs(loss - ref_loss), gerr), file=sys.stderr)


# ---- K-FAC statistics ------------------------------------------------------------

class KFACStats:
    """Per-layer sums of abar abar^T and delta delta^T (float64), collected by a
    forward hook on each Linear/Conv2d while `active`; the hook puts a tensor
    hook on the layer output that receives delta in the backward pass."""

    def __init__(self, layers):
        self.layers = layers
        self.active = False
        self.reset()
        for i, layer in enumerate(layers):
            layer.register_forward_hook(
                lambda mod, inp, out, i=i: self._forward(i, mod, inp[0], out))

    def reset(self):
        self.a_sum = [0.0] * len(self.layers)
        self.g_sum = [0.0] * len(self.layers)
        self.rows = [0] * len(self.layers)      # N*T of A's normalisation
        self.samples = [0] * len(self.layers)   # N of G's normalisation

    def _forward(self, i, layer, a, out):
        if not self.active:
            return
        if isinstance(layer, nn.Conv2d):        # [B, C_in*kh*kw, T] -> [B*T, C_in*kh*kw]
            a = F.unfold(a, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
            a = a.transpose(1, 2).reshape(-1, a.shape[1])
        abar = torch.cat([a, a.new_ones(a.shape[0], 1)], 1).double()
        self.a_sum[i] = self.a_sum[i] + abar.t() @ abar
        self.rows[i] += abar.shape[0]
        self.samples[i] += out.shape[0]
        out.register_hook(lambda delta: self._backward(i, delta))

    def _backward(self, i, delta):
        if not self.active:
            return
        d = delta.reshape(delta.shape[0], delta.shape[1], -1).transpose(1, 2)
        d = d.reshape(-1, delta.shape[1]).double()   # rows = (n, t)
        self.g_sum[i] = self.g_sum[i] + d.t() @ d

    def factors(self):
        """[(A, G)] per layer: A = sum abar abar^T / (N T), G = sum delta delta^T / N."""
        return [(a / r, g / n)
                for a, g, r, n in zip(self.a_sum, self.g_sum, self.rows, self.samples)]


def kfac_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def sampled_labels(logits):
    """One label per sample drawn from softmax(logits)."""
    return torch.multinomial(torch.softmax(logits.detach(), 1), 1).squeeze(1)


def damped_inverses(a, g):
    """(A + pi sqrt(lam) I)^-1 and (G + sqrt(lam)/pi I)^-1, pi = sqrt((tr A/dA) / (tr G/dG))."""
    pi = math.sqrt((a.trace().item() / a.shape[0]) / (g.trace().item() / g.shape[0]))
    root = math.sqrt(KFAC_DAMPING)

    def inv(m, damping):
        return torch.cholesky_inverse(torch.linalg.cholesky(
            m + damping * torch.eye(m.shape[0], dtype=m.dtype)))
    return inv(a, pi * root), inv(g, root / pi)


# ---- cases ----------------------------------------------------------------------

def dataset_loss(model, batches, n):
    """L = (1/N) sum_n l_n, accumulated in float64."""
    total = 0.0
    with torch.no_grad():
        for x, y in batches:
            total += F.cross_entropy(model(x), y, reduction="sum").item()
    return total / n


def case_fwdbwd(model, batches, n):
    total = 0.0
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        total += loss.item() * len(y)
    return total / n


def case_kfac(model, batches, n, mc):
    stats = KFACStats(kfac_layers(model))
    stats.active = True
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        logits = model(x)
        # summed loss: each delta is the unscaled gradient of one sample's loss
        F.cross_entropy(logits, sampled_labels(logits) if mc else y, reduction="sum").backward()
    return sum(a.trace().item() + g.trace().item() for a, g in stats.factors())


def functional(model):
    """functorch's stateless model, with parameters detached: functorch
    differentiates by itself, and outer autograd would only keep every
    per-sample intermediate alive through the accumulated results."""
    fmodel, params, buffers = make_functional_with_buffers(model)
    return fmodel, tuple(p.detach() for p in params), buffers


def case_diag_ggn(model, batches, n):
    fmodel, params, buffers = functional(model)

    def sample_sq(x):
        """sum_c (J^T s_c)^2 per parameter for one sample, s_c = column c of S."""
        z, pull = vjp(lambda w: fmodel(w, buffers, x[None])[0], params)
        prob = torch.softmax(z, 0)
        # row c of S^T: sqrt(p_c) (e_c - p), so S S^T = diag(p) - p p^T
        st = prob.sqrt()[:, None] * (torch.eye(prob.shape[0]) - prob[None, :])
        return tuple((g.double() ** 2).sum(0) for g in vmap(pull)(st)[0])

    diag = [torch.zeros(p.shape, dtype=torch.float64) for p in params]
    for x, _ in batches:
        for d, s in zip(diag, vmap(sample_sq)(x)):
            d += s.sum(0)
    return sum(d.sum().item() for d in diag) / n


# ---- diagonals by hooks (BackPACK / ASDL style) --------------------------------

PARAM_LAYERS = (nn.Linear, nn.Conv2d, nn.BatchNorm2d)


def add_squared_grads(mod, a, g, diag):
    """diag[p] += sum_b (per-sample gradient of p)^2 for one backpropagated
    vector per sample: a = the layer input, g = the gradient at its output.
    Linear: the gradient of W for sample b is g_b a_b^T, so the sum of its
    squares is (g^2)^T (a^2), one GEMM; Conv2d: sum_t g_bt u_bt^T over the
    unfolded patches u (per group); BatchNorm2d (eval): y = w xhat + b."""
    if isinstance(mod, nn.Linear):
        g2, a2 = g.double() ** 2, a.double() ** 2
        diag[mod.weight] += g2.t() @ a2
        if mod.bias is not None:
            diag[mod.bias] += g2.sum(0)
    elif isinstance(mod, nn.Conv2d):
        B, G = a.shape[0], mod.groups
        u = F.unfold(a, mod.kernel_size, mod.dilation, mod.padding, mod.stride)   # [B, I kh kw, T]
        u = u.reshape(B, G, u.shape[1] // G, -1)
        gt = g.reshape(B, G, g.shape[1] // G, -1)
        gw = torch.einsum("bgot,bgit->bgoi", gt, u)                                 # per-sample dW
        diag[mod.weight] += (gw.double() ** 2).sum(0).reshape(mod.weight.shape)
        if mod.bias is not None:
            diag[mod.bias] += (g.sum((2, 3)).double() ** 2).sum(0)
    else:
        xhat = (a - mod.running_mean[None, :, None, None]) / torch.sqrt(
            mod.running_var[None, :, None, None] + mod.eps)
        diag[mod.weight] += ((g * xhat).sum((2, 3)).double() ** 2).sum(0)
        diag[mod.bias] += (g.sum((2, 3)).double() ** 2).sum(0)


def hooks_diag(model, batches, n, seeds):
    """(1/N) sum_n sum_k (per-sample gradient along seed k)^2, summed over the
    parameters: one forward per batch with forward hooks keeping each
    parametrised layer's input and output, then one backward per seed
    vector of the logits (seeds(z, y) yields [B, C] tensors), asking autograd
    for the gradients at the layer outputs only (no weight gradients, no
    per-sample loop), as BackPACK's DiagGGN / SumGradSquared do."""
    layers = [m for m in model.modules() if isinstance(m, PARAM_LAYERS)]
    if sum(p.numel() for m in layers for p in m.parameters(recurse=False)) != \
            sum(p.numel() for p in model.parameters()):
        fail("hooks: a parameter outside Linear, Conv2d and BatchNorm2d")
    saved = []
    for m in layers:
        m.register_forward_hook(lambda mod, inp, out: saved.append((mod, inp[0].detach(), out)))
    diag = {p: torch.zeros(p.shape, dtype=torch.float64) for p in model.parameters()}
    for x, y in batches:
        saved.clear()
        z = model(x)
        outs = [o for _, _, o in saved]
        for v in seeds(z.detach(), y):
            grads = torch.autograd.grad(z, outs, grad_outputs=v, retain_graph=True)
            with torch.no_grad():
                for (mod, a, _), g in zip(saved, grads):
                    add_squared_grads(mod, a, g, diag)
    return sum(d.sum().item() for d in diag.values()) / n


def ggn_seeds(z, y):
    """The C columns of the factor S of Lambda = diag(p) - p p^T per sample:
    column c is sqrt(p_c) (e_c - p)."""
    p = torch.softmax(z, 1)
    eye = torch.eye(p.shape[1])
    for c in range(p.shape[1]):
        yield p[:, c:c + 1].sqrt() * (eye[c][None, :] - p)


def emp_seeds(z, y):
    """The gradient of each sample's loss at the logits: p - e_y."""
    yield torch.softmax(z, 1) - F.one_hot(y, z.shape[1]).to(z.dtype)


def case_diag_ggn_hooks(model, batches, n):
    return hooks_diag(model, batches, n, ggn_seeds)


def case_diag_emp_hooks(model, batches, n):
    return hooks_diag(model, batches, n, emp_seeds)


def case_diag_emp(model, batches, n):
    fmodel, params, buffers = functional(model)

    def sample_loss(w, x, y):
        return F.cross_entropy(fmodel(w, buffers, x[None]), y[None])

    per_sample_grad = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    diag = [torch.zeros(p.shape, dtype=torch.float64) for p in params]
    for x, y in batches:
        for d, g in zip(diag, per_sample_grad(params, x, y)):
            d += (g.double() ** 2).sum(0)
    return sum(d.sum().item() for d in diag) / n


def case_power(model, batches, n):
    params = list(model.parameters())

    def hvp(v):
        """H v of L = sum over batches of (b/N) H_batch v, by double backprop."""
        v32 = [vi.float() for vi in v]
        hv = [torch.zeros_like(vi) for vi in v]
        for x, y in batches:
            g = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
            h = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v32)), params)
            for acc, hi in zip(hv, h):
                acc.add_(hi.double(), alpha=len(y) / n)
        return hv

    def normalised(v):
        norm = math.sqrt(sum((vi * vi).sum().item() for vi in v))
        return [vi / norm for vi in v]

    v = normalised([torch.randn(p.shape).double() for p in params])
    lam = None
    for _ in range(POWER_ITERS):
        hv = hvp(v)
        lam = sum((vi * hi).sum().item() for vi, hi in zip(v, hv))
        v = normalised(hv)
    return lam


def case_sgd_epoch(model, batches, n):
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return dataset_loss(model, batches, n)


def case_kfac_epoch(model, batches, n):
    params = list(model.parameters())
    layers = kfac_layers(model)
    stats = KFACStats(layers)
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)
    factors = inverses = None
    for step, (x, y) in enumerate(batches):
        refresh = step % KFAC_REFRESH == 0
        opt.zero_grad(set_to_none=True)
        stats.reset()
        stats.active = refresh
        logits = model(x)
        if refresh:
            # MC factors of this batch, then S <- 0.95 S + 0.05 S_batch
            mc_loss = F.cross_entropy(logits, sampled_labels(logits), reduction="sum")
            mc_loss.backward(retain_graph=True)
            stats.active = False
            opt.zero_grad(set_to_none=True)
            batch = stats.factors()
            factors = batch if factors is None else [
                (KFAC_EMA * a + (1 - KFAC_EMA) * ab, KFAC_EMA * g + (1 - KFAC_EMA) * gb)
                for (a, g), (ab, gb) in zip(factors, batch)]
            inverses = [damped_inverses(a, g) for a, g in factors]
        F.cross_entropy(logits, y).backward()

        # d = G^-1 [W | b] A^-1 per layer; other parameters (BatchNorm) keep g
        grads = {p: p.grad.double() for p in params}
        dirs = dict(grads)
        for layer, (a_inv, g_inv) in zip(layers, inverses):
            w = layer.weight
            v = torch.cat([grads[w].reshape(w.shape[0], -1), grads[layer.bias][:, None]], 1)
            d = g_inv @ v @ a_inv
            dirs[w], dirs[layer.bias] = d[:, :-1].reshape(w.shape), d[:, -1]
        # KL clipping: nu = min(1, sqrt(kl / (lr^2 |d.g|)))
        dg = abs(sum((dirs[p] * grads[p]).sum().item() for p in params))
        nu = min(1.0, math.sqrt(KFAC_KL_CLIP / (LR ** 2 * dg))) if dg > 0 else 1.0
        for p in params:
            p.grad.copy_(nu * dirs[p])
        opt.step()
    return dataset_loss(model, batches, n)


def case_function(name, impl):
    if impl == "hooks":
        if name not in ("diag_ggn", "diag_emp"):
            fail("--impl hooks is for diag_ggn and diag_emp")
        return globals()["case_%s_hooks" % name]
    if name in ("kfac_emp", "kfac_mc"):
        return lambda model, batches, n: case_kfac(model, batches, n, mc=name == "kfac_mc")
    return globals()["case_" + name]


# ---- main -----------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="PyTorch side of curvscope's CPU benchmark.")
    ap.add_argument("case", choices=CASES)
    ap.add_argument("model", choices=sorted(MODEL_OPS))
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--impl", choices=("vmap", "hooks"), default="vmap",
                    help="diag_ggn / diag_emp: functorch vmap or forward/backward hooks")
    ap.add_argument("--self-check", action="store_true",
                    help="check the rebuilt model against the fixtures first (untimed)")
    args = ap.parse_args()
    if args.n < 1 or args.batch < 1 or args.threads < 1:
        fail("--n, --batch and --threads must be positive")

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if args.self_check:
        self_check(model, args.model)
    x, y = load_split("train", args.n)
    x = x.float()
    batches = [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, args.n, args.batch)]

    # untimed warm-up: forward + backward of the first batch
    F.cross_entropy(model(batches[0][0]), batches[0][1]).backward()
    model.zero_grad(set_to_none=True)

    run = case_function(args.case, args.impl)
    # seeded after building the model (whose layer init draws numbers), so
    # power's v0 and the sampled labels depend on S only
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    check = run(model, batches, args.n)
    seconds = time.perf_counter() - t0
    print(json.dumps({"case": args.case, "model": args.model, "n": args.n, "batch": args.batch,
                      "threads": args.threads, "impl": args.impl, "seconds": seconds, "check": check, "flops": None}))


if __name__ == "__main__":
    main()
