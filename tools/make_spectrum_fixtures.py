#!/usr/bin/python3
"""Reference top-5 eigenvalues of the whole-network Hessian and GGN of the
bundled models, computed by PyTorch in float64.

What it makes (paths relative to the repository root), for M in mlp, cnn
(tests/models/M.onnx, written by tools/make_models.py):

  tests/fixtures/spectrum_M.txt

Each file starts with '#' lines that document it (model, data, loss, parameter
set, method, Lanczos steps, residuals, versions, seed, self-checks), then the
records

  hessian_top5 v1 v2 v3 v4 v5      5 largest (algebraic) Hessian eigenvalues,
                                   descending, "%.17g"
  ggn_top5 v1 v2 v3 v4 v5          same for the GGN
  hessian_residuals r1 .. r5       ||H y - theta y|| / |theta| of each Ritz pair,
                                   recomputed with fresh products
  ggn_residuals r1 .. r5           same for the GGN
  samples 512
  params P                         number of trainable parameters (doc/design.md)
  loss_ce L                        mean ce loss over the samples (a check that
                                   the same sample set and normalisation are used)

Conventions (doc/design.md): L(theta) = (1/N) sum_n -log softmax(z_n)_{y_n};
hessian = d^2 L / d theta^2; ggn = (1/N) sum_n J_n^T Lambda_n J_n with
Lambda_n = diag(p_n) - p_n p_n^T, p_n = softmax(z_n).  The eigenvalue problem is
over all trainable parameters jointly: Gemm and Conv weights and biases,
BatchNormalization scale and bias (not the running statistics).

Data: the FIRST 512 Fashion-MNIST training images and labels, normalised as
x = (pixel/255 - 0.2860) / 0.3530 (curvscope: --samples 512 --scale 1/255
--mean 0.2860 --std 0.3530).

How: the weights are read from the ONNX file by initializer name into a float64
PyTorch evaluation of the exported graph, written here node by node (Flatten,
Gemm, Relu, Conv, BatchNormalization with running statistics and the node's
epsilon, MaxPool as exported).  Its logits are checked against the same graph
run in float32, against tests/fixtures/logits_M.txt and its gradient against
tests/fixtures/grad_M.txt.  Hessian-vector products come from double
backpropagation of the mean loss (as PyHessian does); GGN-vector products from
J^T (Lambda/N) (J v), where J v is obtained with the double-vjp trick (the
vjp g(u) = J^T u is linear in u, so d<g(u), v>/du = J v).  Both products are
checked: symmetry, against finite differences of the gradient (Hessian), and
u^T H v = u^T G v for u, v in the last Gemm layer (the logits are linear in
its parameters there).  Eigenvalues come from a Lanczos iteration written here
with full reorthogonalisation (two Gram-Schmidt passes per step) from a seeded
Gaussian start vector; it runs at least 60 steps (the top-5 converge in about
25 on these models) and until the Lanczos residual estimates of the top-5 Ritz
pairs are below 1e-10 relative (at most 400 steps), then the residuals are
recomputed with fresh products and must be below 1e-6.  A second Lanczos run
from another start vector must give the same top-5, and plain power iteration
(which finds the eigenvalue of largest magnitude) must agree with the largest.

Rerun from the repository root with

    tools/make_spectrum_fixtures.py

It needs /usr/bin/python3 with torch (CPU), onnx and numpy, and reads the gzip
IDX files from $FASHION_MNIST_DIR (default /usr/share/datasets/fashion-mnist).
Seeds are fixed and torch runs on 2 threads with deterministic algorithms, so a
rerun on the same machine and library versions regenerates the same files.  It
takes a few minutes.
"""

import gzip
import os
import platform
import struct
import sys
import time

import numpy as np
import onnx
from onnx import helper, numpy_helper
import torch
import torch.nn.functional as F

SCALE = 1.0 / 255.0
MEAN = 0.2860
STD = 0.3530
N_SAMPLES = 512
TOPK = 5
SEED = 5150
THREADS = 2
MIN_STEPS = 60          # Lanczos steps before the first convergence test
CHECK_EVERY = 20        # steps between convergence tests
MAX_STEPS = 400
LANCZOS_TOL = 1e-10     # stop when beta_m |s_m,i| / |theta_i| < this for top-5
RESIDUAL_LIMIT = 1e-6   # required of the recomputed residuals
POWER_MAX_ITERS = 300
POWER_TOL = 1e-12       # relative change of the Rayleigh quotient
FD_STEP = 1e-7          # finite-difference step, relative to ||theta|| / ||v||
SECOND_SEED = 77        # offset of the seed of the cross-check Lanczos run

MODELS = ["mlp", "cnn"]
EXPECTED_PARAMS = {"mlp": 52650, "cnn": 9146}

DATA_DIR = os.environ.get("FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "tests", "models")
FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures")

DT = torch.float64
NORM_TEXT = "x = (pixel/255 - %.4f) / %.4f" % (MEAN, STD)


def fail(msg):
    sys.exit("make_spectrum_fixtures: " + msg)


def check(cond, msg):
    if not cond:
        fail("self-check failed: " + msg)


def log(msg):
    print(msg, flush=True)


# ---- data -----------------------------------------------------------------------

def read_idx(path):
    """Read a gzip MNIST IDX file of unsigned bytes into a NumPy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        fail("%s: not an unsigned-byte IDX file" % path)
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        fail("%s: size does not match its header" % path)
    return data.reshape(dims)


def load_split(prefix, n):
    images = read_idx(os.path.join(DATA_DIR, prefix + "-images-idx3-ubyte.gz"))[:n]
    labels = read_idx(os.path.join(DATA_DIR, prefix + "-labels-idx1-ubyte.gz"))[:n]
    x = (images.astype(np.float64) * SCALE - MEAN) / STD
    return x[:, None, :, :], labels.astype(np.int64)


# ---- the ONNX graph in PyTorch ----------------------------------------------------

def attrs_of(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class OnnxNet:
    """The exported graph evaluated with torch.nn.functional, node by node.

    Trainable parameters (doc/design.md): the initializer inputs 1, 2 of Gemm and
    Conv (weight, bias) and of BatchNormalization (scale, bias), in node order.
    Everything else (running statistics) is a constant.
    """

    OPS = {"Flatten", "Gemm", "Relu", "Conv", "BatchNormalization", "MaxPool"}

    def __init__(self, path):
        self.proto = onnx.load(path)
        graph = self.proto.graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.nodes = list(graph.node)
        self.input_name = graph.input[0].name
        self.output_name = graph.output[0].name
        self.param_names = []
        for node in self.nodes:
            if node.op_type not in self.OPS:
                fail("%s: operator %s is not handled here" % (path, node.op_type))
            if node.op_type in ("Gemm", "Conv", "BatchNormalization"):
                for name in node.input[1:3]:
                    if name in self.inits and name not in self.param_names:
                        self.param_names.append(name)
        self.shapes = [self.inits[n].shape for n in self.param_names]
        self.numels = [int(np.prod(s)) for s in self.shapes]
        self.n_params = sum(self.numels)
        self.eps = {}
        for node in self.nodes:
            if node.op_type == "BatchNormalization":
                self.eps[node.name] = float(attrs_of(node).get("epsilon", 1e-5))

    def theta0(self, dtype=DT):
        """Flat parameter vector (doc/design.md order, ONNX storage layout)."""
        return torch.cat([torch.from_numpy(self.inits[n].astype(np.float64)).reshape(-1)
                          for n in self.param_names]).to(dtype)

    def unflatten(self, theta):
        out, pos = {}, 0
        for name, shape, k in zip(self.param_names, self.shapes, self.numels):
            out[name] = theta[pos:pos + k].view(shape)
            pos += k
        return out

    def param_slice(self, name):
        pos = 0
        for n, k in zip(self.param_names, self.numels):
            if n == name:
                return slice(pos, pos + k)
            pos += k
        raise KeyError(name)

    def forward(self, theta, x):
        """Logits for input x ([N, 1, 28, 28]) with parameters theta (flat)."""
        dtype = theta.dtype
        params = self.unflatten(theta)
        vals = {self.input_name: x.to(dtype)}

        def get(name):
            if name in params:
                return params[name]
            if name in vals:
                return vals[name]
            return torch.from_numpy(self.inits[name].astype(np.float64)).to(dtype)

        for node in self.nodes:
            at = attrs_of(node)
            ins = [get(i) if i else None for i in node.input]
            op = node.op_type
            if op == "Flatten":
                ax = at.get("axis", 1)
                out = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
            elif op == "Gemm":
                if at.get("transA", 0):
                    fail("Gemm transA not handled")
                w = ins[1].t() if at.get("transB", 0) else ins[1]
                out = at.get("alpha", 1.0) * (ins[0] @ w)
                if len(ins) > 2 and ins[2] is not None:
                    out = out + at.get("beta", 1.0) * ins[2]
            elif op == "Relu":
                out = torch.relu(ins[0])
            elif op == "Conv":
                pads = at.get("pads", [0, 0, 0, 0])
                if pads[0] != pads[2] or pads[1] != pads[3]:
                    fail("asymmetric Conv pads not handled")
                out = F.conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                               stride=tuple(at.get("strides", [1, 1])),
                               padding=(pads[0], pads[1]),
                               dilation=tuple(at.get("dilations", [1, 1])),
                               groups=at.get("group", 1))
            elif op == "BatchNormalization":
                if len(node.output) != 1 or at.get("training_mode", 0):
                    fail("BatchNormalization in training mode")
                xx, scale, bias, mean, var = ins[:5]
                shp = (1, -1) + (1,) * (xx.dim() - 2)
                # (x - mean) / sqrt(var + eps) * scale + bias, as x * a + b with
                # per-channel a, b (one pass over the activations each)
                a = scale / torch.sqrt(var + self.eps[node.name])
                b = bias - mean * a
                out = xx * a.reshape(shp) + b.reshape(shp)
            elif op == "MaxPool":
                pads = at.get("pads", [0, 0, 0, 0])
                if (at.get("ceil_mode", 0) or pads[0] != pads[2] or pads[1] != pads[3]
                        or any(d != 1 for d in at.get("dilations", [1, 1]))):
                    fail("MaxPool variant not handled")
                ks = at["kernel_shape"]
                out = F.max_pool2d(ins[0], tuple(ks),
                                   stride=tuple(at.get("strides", [1] * len(ks))),
                                   padding=(pads[0], pads[1]))
            vals[node.output[0]] = out
        return vals[self.output_name]


# ---- curvature-vector products ---------------------------------------------------

class Products:
    """Hessian- and GGN-vector products of the mean ce loss at theta0, with the
    forward graph (and the gradient's graph) built once and kept."""

    def __init__(self, net, x, y):
        self.net = net
        self.n = x.shape[0]
        self.x, self.y = x, y
        self.theta = net.theta0().requires_grad_(True)
        self.z = net.forward(self.theta, x)
        self.loss = F.cross_entropy(self.z, y)          # mean over samples
        self.grad, = torch.autograd.grad(self.loss, self.theta, create_graph=True)
        self.p = torch.softmax(self.z, dim=1).detach()
        # g(u) = J^T u, linear in u; d<g(u), v>/du = J v
        self.u = torch.zeros_like(self.z, requires_grad=True)
        self.jtu, = torch.autograd.grad(self.z, self.theta, self.u, create_graph=True)
        self.count = {"hessian": 0, "ggn": 0}

    def hvp(self, v):
        self.count["hessian"] += 1
        out, = torch.autograd.grad(self.grad, self.theta, v, retain_graph=True)
        return out.detach()

    def jvp(self, v):
        out, = torch.autograd.grad(self.jtu, self.u, v, retain_graph=True)
        return out.detach()

    def ggnvp(self, v):
        self.count["ggn"] += 1
        jv = self.jvp(v)                                             # [N, C]
        lam = self.p * jv - self.p * (self.p * jv).sum(dim=1, keepdim=True)
        out, = torch.autograd.grad(self.z, self.theta, lam / self.n, retain_graph=True)
        return out.detach()

    def gradient_at(self, theta):
        t = theta.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(self.net.forward(t, self.x), self.y)
        g, = torch.autograd.grad(loss, t)
        return g


def rel(a, b):
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-300))


def check_products(prod, net, last_names, notes):
    """Symmetry, finite differences and the last-layer identity."""
    gen = torch.Generator().manual_seed(SEED + 7)
    P = net.n_params
    u = torch.randn(P, generator=gen, dtype=DT)
    v = torch.randn(P, generator=gen, dtype=DT)
    for name, op in (("hessian", prod.hvp), ("ggn", prod.ggnvp)):
        a, b = float(u @ op(v)), float(v @ op(u))
        err = abs(a - b) / max(abs(a), abs(b))
        check(err < 1e-10, "%s product symmetric (u^T A v vs v^T A u: %.3g)" % (name, err))
        notes.append("%s product: |u^T A v - v^T A u| / |u^T A v| = %.2g"
                     % (name, err))
    vg = float(v @ prod.ggnvp(v))
    check(vg > 0, "GGN positive semidefinite along a random vector")
    # Hessian against central differences of the gradient
    # a small step: larger ones move some Relu / MaxPool inputs across a kink
    h = FD_STEP * float(prod.theta.detach().norm() / v.norm())
    th = prod.theta.detach()
    fd = (prod.gradient_at(th + h * v) - prod.gradient_at(th - h * v)) / (2 * h)
    err = rel(prod.hvp(v), fd)
    check(err < 1e-6, "Hessian product vs central differences of the gradient "
          "(%.3g)" % err)
    notes.append("Hessian product vs central differences of the gradient (step "
                 "%.2g along a random direction): max rel. difference %.2g" % (h, err))
    # u^T H v = u^T G v when u, v live on the last layer's parameters
    mask = torch.zeros(P, dtype=DT)
    for name in last_names:
        mask[net.param_slice(name)] = 1.0
    um, vm = u * mask, v * mask
    a, b = float(um @ prod.hvp(vm)), float(um @ prod.ggnvp(vm))
    err = abs(a - b) / abs(b)
    check(err < 1e-10, "u^T H v = u^T G v on the last layer (%.3g)" % err)
    notes.append("u^T H v vs u^T G v for u, v on %s: rel. difference %.2g"
                 % (" ".join(last_names), err))


# ---- Lanczos and power iteration ---------------------------------------------------

def lanczos(op, n, seed, label):
    """Lanczos with full reorthogonalisation (two classical Gram-Schmidt passes
    against all previous vectors).  Returns (theta desc top-k, Ritz vectors
    [k, n], Lanczos residual estimates, steps, all Ritz values)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, generator=gen, dtype=DT)
    q /= q.norm()
    Q = torch.zeros(MAX_STEPS, n, dtype=DT)
    alpha, beta = [], []
    t0 = time.time()
    m = 0
    while True:
        Q[m] = q
        w = op(q)
        a = float(w @ q)
        basis = Q[:m + 1]
        for _ in range(2):
            w -= basis.t() @ (basis @ w)
        b = float(w.norm())
        alpha.append(a)
        m += 1
        done = b < 1e-12 * max(abs(x) for x in alpha) or m == MAX_STEPS
        if not done and m >= MIN_STEPS and (m - MIN_STEPS) % CHECK_EVERY == 0:
            T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
            evals, evecs = np.linalg.eigh(T)
            est = b * np.abs(evecs[-1, -TOPK:]) / np.abs(evals[-TOPK:])
            log("    %s Lanczos step %d: top %s, est. residuals max %.2g (%.1f s)"
                % (label, m, " ".join("%.8g" % e for e in evals[::-1][:TOPK]),
                   est.max(), time.time() - t0))
            done = est.max() < LANCZOS_TOL
        if done:
            break
        beta.append(b)
        q = w / b
    T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    evals, evecs = np.linalg.eigh(T)
    idx = np.argsort(evals)[::-1][:TOPK]
    S = torch.from_numpy(evecs[:, idx].copy())
    Y = (Q[:m].t() @ S).t().contiguous()                 # [k, n]
    est = b * np.abs(evecs[-1, idx]) / np.abs(evals[idx])
    return evals[idx], Y, est, m, evals


def residuals(op, thetas, Y):
    out = []
    for th, y in zip(thetas, Y):
        y = y / y.norm()
        out.append(float((op(y) - th * y).norm()) / abs(th))
    return np.array(out)


def power_iteration(op, n, seed):
    """Plain power iteration; returns (Rayleigh quotient, iterations, last rel change)."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=gen, dtype=DT)
    v /= v.norm()
    lam, change = None, float("inf")
    for it in range(1, POWER_MAX_ITERS + 1):
        w = op(v)
        new = float(v @ w)
        if lam is not None:
            change = abs(new - lam) / abs(new)
        lam = new
        v = w / w.norm()
        if change < POWER_TOL:
            break
    return lam, it, change


# ---- per model ----------------------------------------------------------------------

def fmt17(v):
    return "%.17g" % v


def read_logits_fixture(name):
    rows = []
    with open(os.path.join(FIXTURE_DIR, "logits_%s.txt" % name)) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            rows.append([float(t) for t in line.split()])
    return np.array(rows)


def read_grad_fixture(name):
    out, loss = {}, None
    with open(os.path.join(FIXTURE_DIR, "grad_%s.txt" % name)) as f:
        lines = [ln for ln in f if not ln.startswith("#")]
    i = 0
    while i < len(lines):
        tok = lines[i].split()
        if tok[0] == "loss":
            loss = float(tok[1])
            i += 1
        elif tok[0] == "param":
            out[tok[1]] = np.array([float(t) for t in lines[i + 1].split()])
            i += 2
        else:
            i += 1
    return loss, out


def check_model(name, net, notes):
    """float64 vs float32 forward, logits and gradient fixtures."""
    x_test, _ = load_split("t10k", 8)
    th64 = net.theta0()
    with torch.no_grad():
        z64 = net.forward(th64, torch.from_numpy(x_test)).numpy()
        z32 = net.forward(th64.float(), torch.from_numpy(x_test).float()).double().numpy()
    ref = read_logits_fixture(name)
    e32 = np.abs(z64 - z32).max()
    efx = np.abs(z64 - ref).max()
    check(e32 < 1e-4 and efx < 1e-4, "%s logits: float64 vs float32 %.3g, vs "
          "logits_%s.txt %.3g" % (name, e32, name, efx))
    notes.append("float64 logits vs float32 forward of the same weights (first 8 "
                 "t10k images): max abs difference %.2g; vs logits_%s.txt: %.2g"
                 % (e32, name, efx))
    gloss, gref = read_grad_fixture(name)
    check(list(gref) == net.param_names, "parameter names and order as in "
          "grad_%s.txt" % name)
    xg, yg = load_split("train", 256)
    t = th64.clone().requires_grad_(True)
    loss = F.cross_entropy(net.forward(t, torch.from_numpy(xg)), torch.from_numpy(yg))
    g, = torch.autograd.grad(loss, t)
    gfix = torch.from_numpy(np.concatenate([gref[n] for n in net.param_names]))
    err = rel(g, gfix)
    check(err < 1e-9 and abs(loss.item() - gloss) < 1e-12,
          "gradient vs grad_%s.txt (%.3g)" % (name, err))
    notes.append("gradient over the first 256 training images vs grad_%s.txt: "
                 "max rel. difference %.2g, loss difference %.2g"
                 % (name, err, abs(loss.item() - gloss)))
    return e32


def do_model(idx, name, x, y):
    t_model = time.time()
    path = os.path.join(MODEL_DIR, name + ".onnx")
    net = OnnxNet(path)
    check(net.n_params == EXPECTED_PARAMS[name], "%s has %d parameters, expected %d"
          % (name, net.n_params, EXPECTED_PARAMS[name]))
    notes = []
    check_model(name, net, notes)
    last = [n for n in net.nodes if n.op_type == "Gemm"][-1]
    last_names = [i for i in last.input[1:3] if i in net.param_names]
    prod = Products(net, torch.from_numpy(x), torch.from_numpy(y))
    check_products(prod, net, last_names, notes)
    log("  %s: %d parameters, loss %.10f, checks done (%.1f s)"
        % (name, net.n_params, prod.loss.item(), time.time() - t_model))

    results = {}
    for ci, (curv, op) in enumerate((("hessian", prod.hvp), ("ggn", prod.ggnvp))):
        t0 = time.time()
        seed = SEED + 10 * idx + ci
        c0 = prod.count[curv]
        top, Y, est, steps, allv = lanczos(op, net.n_params, seed, curv)
        res = residuals(op, top, Y)
        check(np.all(res < RESIDUAL_LIMIT), "%s %s residuals %s" % (name, curv, res))
        n_lanczos = prod.count[curv] - c0
        t_lanczos = time.time() - t0
        # an independent start vector must find the same top-5 (nothing missed)
        top2, _, _, steps2, _ = lanczos(op, net.n_params, seed + SECOND_SEED,
                                        curv + " (2nd seed)")
        spread = float(np.max(np.abs(top2 - top) / np.abs(top)))
        check(spread < 1e-10, "%s %s: Lanczos from another start vector gives "
              "%s" % (name, curv, top2))
        t1 = time.time()
        pw, pw_it, pw_change = power_iteration(op, net.n_params, seed + 1000)
        t_power = time.time() - t1
        lo = float(allv.min())
        if pw_change < POWER_TOL and pw > 0:
            check(abs(pw - top[0]) / top[0] < 1e-9, "%s %s: power iteration %r vs "
                  "Lanczos %r" % (name, curv, pw, top[0]))
        results[curv] = dict(top=top, res=res, est=est, steps=steps, lo=lo,
                             spread=spread, steps2=steps2,
                             n_products=n_lanczos, seconds=t_lanczos,
                             power=pw, power_iters=pw_it, power_change=pw_change,
                             power_seconds=t_power)
        log("  %s %s: top5 %s; residuals max %.2g; %d steps, %.1f s; lowest Ritz "
            "value %.6g; power iteration %.12g after %d iterations (%.1f s)"
            % (name, curv, " ".join("%.10g" % v for v in top), res.max(), steps,
               t_lanczos, lo, pw, pw_it, t_power))
    write_fixture(name, net, prod, results, notes)
    log("  %s done in %.1f s" % (name, time.time() - t_model))


def power_text(curv, r):
    top, lo, pw = r["top"][0], r["lo"], r["power"]
    d_top = abs(pw - top) / abs(top)
    d_lo = abs(pw - lo) / abs(lo)
    s = ("# power iteration (%s, seed as Lanczos + 1000, stop at relative change of "
         "the Rayleigh quotient < %g, max %d): %s after %d iterations (last change "
         "%.2g); " % (curv, POWER_TOL, POWER_MAX_ITERS, fmt17(pw), r["power_iters"],
                      r["power_change"]))
    if d_top <= d_lo:
        s += ("relative difference to the Lanczos top eigenvalue %.2g; power "
              "iteration converges to the eigenvalue of largest magnitude, so the "
              "top eigenvalue is the largest in magnitude (lowest Lanczos Ritz "
              "value %.6g)" % (d_top, lo))
    else:
        s += ("it converged to the most negative eigenvalue (lowest Ritz value %s, "
              "relative difference %.2g), which is LARGER IN MAGNITUDE than the top "
              "one" % (fmt17(lo), d_lo))
    return s + "\n"


def write_fixture(name, net, prod, results, notes):
    path = os.path.join(FIXTURE_DIR, "spectrum_%s.txt" % name)
    h, g = results["hessian"], results["ggn"]
    with open(path, "w") as f:
        w = f.write
        w("# Top-%d eigenvalues of the whole-network Hessian and GGN of %s.onnx, "
          "float64 by PyTorch. Made by tools/make_spectrum_fixtures.py.\n" % (TOPK, name))
        w("# data: the first %d Fashion-MNIST training images and labels "
          "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz), %s "
          "(curvscope: --samples %d --scale 1/255 --mean %.4f --std %.4f)\n"
          % (N_SAMPLES, NORM_TEXT, N_SAMPLES, MEAN, STD))
        w("# loss: ce, L = (1/N) sum_n -log softmax(z_n)_{y_n}, N = %d; "
          "hessian = d^2 L/d theta^2; ggn = (1/N) sum_n J_n^T (diag(p_n) - p_n p_n^T) "
          "J_n, p_n = softmax(z_n)\n" % N_SAMPLES)
        w("# model: weights read from the ONNX initializers into a float64 PyTorch "
          "evaluation of the graph (BatchNormalization with running statistics and "
          "the node's epsilon, MaxPool as exported, kinks as PyTorch: Relu'(0) = 0, "
          "MaxPool gradient to the first maximum)\n")
        w("# parameters (jointly, doc/design.md order, %d in all): %s; not parameters: "
          "running statistics\n" % (net.n_params, ", ".join(
              "%s %s" % (n, "x".join(str(d) for d in s))
              for n, s in zip(net.param_names, net.shapes))))
        w("# method: Lanczos with full reorthogonalisation (two Gram-Schmidt passes "
          "per step), float64, start vector standard normal from "
          "torch.Generator().manual_seed(seed), normalised; first convergence test "
          "after %d steps, then every %d, stopping when beta_m |s_m,i| / |theta_i| < "
          "%g for the top %d Ritz pairs (max %d steps); Hessian-vector products by "
          "double backpropagation of the mean loss; GGN-vector products J^T "
          "(Lambda/N) J v with J v by the double-vjp trick\n"
          % (MIN_STEPS, CHECK_EVERY, LANCZOS_TOL, TOPK, MAX_STEPS))
        for curv, r in (("hessian", h), ("ggn", g)):
            w("# %s: %d Lanczos steps (seed %d), %d products with the residual checks; "
              "Lanczos residual estimates %s; lowest Ritz value (not a converged eigenvalue) %s\n"
              % (curv, r["steps"], SEED + 10 * MODELS.index(name) +
                 (0 if curv == "hessian" else 1), r["n_products"],
                 " ".join("%.2g" % e for e in r["est"]), fmt17(r["lo"])))
            w("# %s: a second Lanczos run from another start vector (seed + %d, %d "
              "steps) gives the same top-%d to a max relative difference of %.2g\n"
              % (curv, SECOND_SEED, r["steps2"], TOPK, r["spread"]))
        w("# residuals: ||A y - theta y|| / |theta| for the normalised Ritz vectors, "
          "recomputed with fresh products (required < %g)\n" % RESIDUAL_LIMIT)
        for curv, r in (("hessian", h), ("ggn", g)):
            w(power_text(curv, r))
        for n in notes:
            w("# check: %s\n" % n)
        w("# versions: torch %s, numpy %s, onnx %s, python %s; torch threads %d, "
          "deterministic algorithms\n"
          % (torch.__version__, np.__version__, onnx.__version__,
             platform.python_version(), THREADS))
        w("hessian_top5 %s\n" % " ".join(fmt17(v) for v in h["top"]))
        w("ggn_top5 %s\n" % " ".join(fmt17(v) for v in g["top"]))
        w("hessian_residuals %s\n" % " ".join("%.3g" % v for v in h["res"]))
        w("ggn_residuals %s\n" % " ".join("%.3g" % v for v in g["res"]))
        w("samples %d\n" % N_SAMPLES)
        w("params %d\n" % net.n_params)
        w("loss_ce %s\n" % fmt17(prod.loss.item()))
    log("  wrote %s (%d bytes)" % (os.path.relpath(path, ROOT), os.path.getsize(path)))


def main():
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    t0 = time.time()
    x, y = load_split("train", N_SAMPLES)
    check(x.shape == (N_SAMPLES, 1, 28, 28) and y.shape == (N_SAMPLES,), "data shape")
    for idx, name in enumerate(MODELS):
        log("%s:" % name)
        do_model(idx, name, x, y)
    log("total %.1f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
