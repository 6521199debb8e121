#!/usr/bin/python3
"""Make curvscope's test models and the reference fixtures computed from them.

What it makes (paths relative to the repository root):

  tests/models/mlp.onnx    Flatten -> Gemm 784x64 -> Relu -> Gemm 64x32 -> Relu
                           -> Gemm 32x10 (opset 13)
  tests/models/cnn.onnx    Conv 1->8 3x3 -> BatchNormalization -> Relu -> MaxPool 2
                           -> Conv 8->16 3x3 -> BatchNormalization -> Relu -> MaxPool 2
                           -> Flatten -> Gemm 784x10 (opset 13)
  tests/models/attn.onnx   a one-block pre-LN transformer over the 28 image rows
                           (opset 17: MatMul, LayerNormalization, Softmax, Erf, ...)

Each model is trained briefly on Fashion-MNIST and exported with a dynamic batch
dimension; its output is the logits.  Inputs are normalised as
x = (pixel * SCALE - MEAN) / STD with the constants below (curvscope:
--scale 1/255 --mean 0.2860 --std 0.3530).

  tests/fixtures/eval_<model>.txt    loss (ce, mse), accuracy over the first 1000
                                     t10k images, float64 by PyTorch, and the ce
                                     loss in float32
  tests/fixtures/logits_<model>.txt  float32 logits of the first 8 t10k images
  tests/fixtures/grad_<model>.txt    float64 gradient of the mean ce loss over the
                                     first 256 training images, in doc/design.md's
                                     parameter order and ONNX storage layout

Every fixture file starts with '#' lines that describe its format.

Rerun from the repository root with

    tools/make_models.py

It needs /usr/bin/python3 with torch (CPU), onnx and numpy, and reads the gzip IDX
files from $FASHION_MNIST_DIR (default /usr/share/datasets/fashion-mnist).  Seeds
are fixed and torch runs on 2 threads, so a rerun on the same machine and
library versions regenerates the same files.  The script also checks what it
exported: only operators curvscope supports, the operators each model is meant
to exercise, a dynamic batch dimension, and (with a small NumPy evaluator of the
ONNX graph written here) that the file computes the same logits as PyTorch.
"""

import collections
import copy
import gzip
import math
import os
import struct
import sys
import time
import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- constants the tests rely on ------------------------------------------------

SCALE = 1.0 / 255.0   # raw pixel -> [0, 1]
MEAN = 0.2860         # Fashion-MNIST training-set mean of pixel/255
STD = 0.3530          # Fashion-MNIST training-set standard deviation of pixel/255

SEED = 1234
THREADS = 2
EVAL_SAMPLES = 1000   # first t10k images in eval_<model>.txt
LOGIT_SAMPLES = 8     # first t10k images in logits_<model>.txt
GRAD_SAMPLES = 256    # first training images in grad_<model>.txt
TRAIN_SUBSET = 20000  # training draws batches from the first TRAIN_SUBSET images

DATA_DIR = os.environ.get("FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "tests", "models")
FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures")

# Operators curvscope's interpreter implements; anything else in an export is a bug
# in this script (or a torch change) and stops it.
ALLOWED_OPS = {
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log",
    "Neg", "Erf", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization",
    "LayerNormalization", "Flatten", "Reshape", "Transpose", "Concat", "Gather",
    "Unsqueeze", "Squeeze", "Shape", "Constant", "Identity", "Dropout",
    "ReduceMean", "ReduceSum", "Clip", "Cast",
}


# ---- data ---------------------------------------------------------------------

def read_idx(path):
    """Read a gzip MNIST IDX file (unsigned bytes) into a NumPy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        sys.exit("make_models: %s: not an unsigned-byte IDX file" % path)
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        sys.exit("make_models: %s: size does not match its header" % path)
    return data.reshape(dims)


def normalise(images):
    """uint8 [N, 28, 28] -> float64 [N, 1, 28, 28], (pixel*SCALE - MEAN) / STD."""
    x = images.astype(np.float64) * SCALE
    return ((x - MEAN) / STD)[:, None, :, :]


def load_split(prefix):
    images = read_idx(os.path.join(DATA_DIR, prefix + "-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA_DIR, prefix + "-labels-idx1-ubyte.gz"))
    return normalise(images), labels.astype(np.int64)


# ---- models -------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 64)
        self.fc2 = nn.Linear(64, 32)
        self.fc3 = nn.Linear(32, 10)

    def forward(self, x):                  # [N, 1, 28, 28]
        h = torch.flatten(x, 1)            # [N, 784]
        h = F.relu(self.fc1(h))            # [N, 64]
        h = F.relu(self.fc2(h))            # [N, 32]
        return self.fc3(h)                 # [N, 10]


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):                                   # [N, 1, 28, 28]
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # [N, 8, 14, 14]
        h = F.max_pool2d(F.relu(self.bn2(self.conv2(h))), 2)  # [N, 16, 7, 7]
        return self.fc(torch.flatten(h, 1))                 # [N, 10]


class Attn(nn.Module):
    """One pre-LN transformer block over the T = 28 rows of the image."""

    T, F_IN, D, HIDDEN = 28, 28, 32, 64

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(self.F_IN, self.D)
        self.pos = nn.Parameter(0.02 * torch.randn(self.T, self.D))
        self.ln1 = nn.LayerNorm(self.D)
        self.q = nn.Linear(self.D, self.D)
        self.k = nn.Linear(self.D, self.D)
        self.v = nn.Linear(self.D, self.D)
        self.proj = nn.Linear(self.D, self.D)
        self.ln2 = nn.LayerNorm(self.D)
        self.mlp_in = nn.Linear(self.D, self.HIDDEN)
        self.gelu = nn.GELU()                  # exact, erf-based
        self.mlp_out = nn.Linear(self.HIDDEN, self.D)
        self.ln_f = nn.LayerNorm(self.D)
        self.head = nn.Linear(self.D, 10)

    def forward(self, x):                                   # [N, 1, 28, 28]
        h = x.reshape(-1, self.T, self.F_IN)                # [N, T, 28]
        h = self.embed(h) + self.pos                        # [N, T, D]
        a = self.ln1(h)
        q, k, v = self.q(a), self.k(a), self.v(a)           # [N, T, D] each
        s = q @ k.transpose(-2, -1) / math.sqrt(self.D)     # [N, T, T]
        p = torch.softmax(s, dim=-1)
        h = h + self.proj(p @ v)                            # [N, T, D]
        h = h + self.mlp_out(self.gelu(self.mlp_in(self.ln2(h))))
        z = self.ln_f(h.mean(dim=1))                        # [N, D]
        return self.head(z)                                 # [N, 10]


# name, class, opset, training steps, learning rate, batch, ops the graph must hold
SPECS = [
    ("mlp", MLP, 13, 500, 2e-3, 128, {"Flatten", "Gemm", "Relu"}),
    ("cnn", CNN, 13, 400, 2e-3, 128,
     {"Conv", "BatchNormalization", "Relu", "MaxPool", "Gemm"}),
    ("attn", Attn, 17, 900, 3e-3, 128,
     {"LayerNormalization", "MatMul", "Softmax", "Erf", "Transpose", "ReduceMean",
      "Gemm"}),
]


# ---- training -----------------------------------------------------------------

def train(model, x, y, steps, lr, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    perm, pos = torch.randperm(x.shape[0], generator=gen), 0
    for _ in range(steps):
        if pos + batch > x.shape[0]:
            perm, pos = torch.randperm(x.shape[0], generator=gen), 0
        idx = perm[pos:pos + batch]
        pos += batch
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).double().mean().item()


# ---- export and checks ----------------------------------------------------------

def export(model, name, opset):
    """Export in inference mode with a dynamic batch dimension.

    torch 1.13 runs its eval peephole pass (which folds BatchNorm into the
    preceding Conv) whenever training is EVAL, whatever do_constant_folding says.
    TrainingMode.PRESERVE skips that pass and keeps the mode the module is in;
    the module is in eval mode here, so BatchNormalization is exported as the
    inference form (running statistics, one output).  check_graph() and the
    NumPy evaluation below confirm both.  (EVAL with do_constant_folding=False
    still fuses; PRESERVE without constant folding keeps BN but leaves Identity
    nodes and unfolded Transposes of MatMul weights.)  torch warns about constant
    folding under PRESERVE whatever the module's mode; with the module in eval
    mode the warning does not apply, so it is silenced.
    """
    path = os.path.join(MODEL_DIR, name + ".onnx")
    model.eval()
    dummy = torch.zeros(2, 1, 28, 28)
    warnings.filterwarnings(
        "ignore", message="It is recommended that constant folding be turned off")
    torch.onnx.export(
        model, (dummy,), path,
        input_names=["input"], output_names=["output"],
        dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
        opset_version=opset, do_constant_folding=True,
        training=torch.onnx.TrainingMode.PRESERVE)
    return path


def check_graph(proto, name, required):
    onnx.checker.check_model(proto)
    graph = proto.graph
    hist = collections.Counter(n.op_type for n in graph.node)
    print("  %s ops: %s" % (name, ", ".join(
        "%s x%d" % (op, c) for op, c in sorted(hist.items()))))
    bad = sorted(set(hist) - ALLOWED_OPS)
    if bad:
        sys.exit("make_models: %s.onnx uses operators curvscope lacks: %s"
                 % (name, " ".join(bad)))
    missing = sorted(required - set(hist))
    if missing:
        sys.exit("make_models: %s.onnx lacks operators it should exercise: %s"
                 % (name, " ".join(missing)))
    for n in graph.node:
        if n.op_type == "BatchNormalization":
            mode = [a.i for a in n.attribute if a.name == "training_mode"]
            if len(n.output) != 1 or any(mode):
                sys.exit("make_models: %s.onnx: BatchNormalization %s is in "
                         "training mode" % (name, n.name))
    for vi in list(graph.input[:1]) + list(graph.output[:1]):
        dim0 = vi.type.tensor_type.shape.dim[0]
        if dim0.HasField("dim_value"):
            sys.exit("make_models: %s.onnx: %s has a fixed batch dimension"
                     % (name, vi.name))
    if graph.input[0].name != "input" or len(graph.input) != 1:
        sys.exit("make_models: %s.onnx: expected one graph input 'input'" % name)
    return hist


def onnx_parameters(graph):
    """Trainable initializers in doc/design.md's order: [(name, float32 array)].

    A layer is a Gemm, Conv, BatchNormalization or LayerNormalization node, or a
    MatMul with an initializer operand together with a following Add of an
    initializer bias.  Layers come in the order of their first node; inside a
    layer the initializers come in input order.
    """
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)
    names = []
    for n in graph.node:
        if n.op_type in ("Gemm", "Conv"):
            names += [i for i in n.input[1:] if i in inits]
        elif n.op_type in ("BatchNormalization", "LayerNormalization"):
            names += [i for i in n.input[1:3] if i in inits]
        elif n.op_type == "MatMul":
            weights = [i for i in n.input if i in inits]
            if not weights:
                continue
            names += weights
            nxt = consumers[n.output[0]]
            if len(nxt) == 1 and nxt[0].op_type == "Add":
                names += [i for i in nxt[0].input
                          if i in inits and i != n.output[0]]
    if len(set(names)) != len(names):
        sys.exit("make_models: an initializer belongs to two layers")
    return [(nm, inits[nm]) for nm in names]


def map_parameters(model, params, name):
    """For each ONNX parameter (torch parameter name, transposed?); and the
    PyTorch parameters left over.

    Matched by value (and shape, or transposed shape for 2-D tensors), because
    the exporter renames initializers it derives (a MatMul weight is stored
    transposed under a generated name).
    """
    torch_params = {k: v.detach().numpy() for k, v in model.named_parameters()}
    result, used = [], set()
    for onnx_name, arr in params:
        hits = []
        for tname, t in torch_params.items():
            if t.shape == arr.shape and np.array_equal(t, arr):
                hits.append((tname, False))
            elif t.ndim == 2 and t.T.shape == arr.shape and np.array_equal(t.T, arr):
                hits.append((tname, True))
        same_name = [h for h in hits if h[0] == onnx_name]
        if same_name:
            hits = same_name
        if len(hits) != 1 or hits[0][0] in used:
            sys.exit("make_models: %s.onnx: cannot map initializer %s to one "
                     "PyTorch parameter (candidates %s)" % (name, onnx_name, hits))
        used.add(hits[0][0])
        result.append(hits[0])
    left = sorted(set(torch_params) - used)
    if left:
        print("  %s: PyTorch parameters that are no layer parameter in the ONNX "
              "graph (not in grad fixture): %s" % (name, " ".join(left)))
    return result, left


# ---- an independent float64 evaluation of the exported graph -------------------

def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _conv2d(x, w, b, strides, pads, dilations, group):
    if group != 1 or any(d != 1 for d in dilations):
        raise NotImplementedError("Conv group/dilation")
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho = (h + pads[0] + pads[2] - kh) // strides[0] + 1
    wo = (wd + pads[1] + pads[3] - kw) // strides[1] + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + strides[0] * ho:strides[0],
                       j:j + strides[1] * wo:strides[1]]          # [N, C, Ho, Wo]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    if b is not None:
        out += b[None, :, None, None]
    return out


def _maxpool2d(x, kernel, strides, pads):
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
                constant_values=-np.inf)
    ho = (xp.shape[2] - kernel[0]) // strides[0] + 1
    wo = (xp.shape[3] - kernel[1]) // strides[1] + 1
    out = np.full(x.shape[:2] + (ho, wo), -np.inf)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            out = np.maximum(out, xp[:, :, i:i + strides[0] * ho:strides[0],
                                     j:j + strides[1] * wo:strides[1]])
    return out


def numpy_forward(proto, x):
    """Run the ONNX graph on x in float64 with NumPy (ops these models use)."""
    graph = proto.graph
    vals = {}
    for t in graph.initializer:
        a = numpy_helper.to_array(t)
        vals[t.name] = a.astype(np.float64) if a.dtype.kind == "f" else a
    vals[graph.input[0].name] = x
    for n in graph.node:
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        ins = [vals[i] if i else None for i in n.input]
        op = n.op_type
        if op == "Constant":
            a = numpy_helper.to_array(at["value"])
            out = a.astype(np.float64) if a.dtype.kind == "f" else a
        elif op == "Identity":
            out = ins[0]
        elif op == "Flatten":
            ax = at.get("axis", 1)
            out = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
        elif op == "Gemm":
            a = ins[0].T if at.get("transA", 0) else ins[0]
            b = ins[1].T if at.get("transB", 0) else ins[1]
            out = at.get("alpha", 1.0) * (a @ b)
            if len(ins) > 2 and ins[2] is not None:
                out = out + at.get("beta", 1.0) * ins[2]
        elif op == "MatMul":
            out = np.matmul(ins[0], ins[1])
        elif op in ("Add", "Sub", "Mul", "Div", "Pow"):
            f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
                 "Div": np.divide, "Pow": np.power}[op]
            out = f(ins[0], ins[1])
        elif op == "Sqrt":
            out = np.sqrt(ins[0])
        elif op == "Relu":
            out = np.maximum(ins[0], 0.0)
        elif op == "Erf":
            out = _erf(ins[0])
        elif op == "Softmax":
            ax = at.get("axis", -1)
            e = np.exp(ins[0] - ins[0].max(axis=ax, keepdims=True))
            out = e / e.sum(axis=ax, keepdims=True)
        elif op == "Conv":
            k = len(ins[1].shape) - 2
            out = _conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                          at.get("strides", [1] * k), at.get("pads", [0] * 2 * k),
                          at.get("dilations", [1] * k), at.get("group", 1))
        elif op == "MaxPool":
            if at.get("ceil_mode", 0) or any(d != 1 for d in at.get("dilations", [1, 1])):
                raise NotImplementedError("MaxPool ceil_mode/dilations")
            ks = at["kernel_shape"]
            out = _maxpool2d(ins[0], ks, at.get("strides", [1] * len(ks)),
                             at.get("pads", [0] * 2 * len(ks)))
        elif op == "BatchNormalization":
            xx, scale, bias, mean, var = ins[:5]
            shp = (1, -1) + (1,) * (xx.ndim - 2)
            out = ((xx - mean.reshape(shp)) / np.sqrt(var.reshape(shp) + at.get("epsilon", 1e-5))
                   * scale.reshape(shp) + bias.reshape(shp))
        elif op == "LayerNormalization":
            xx = ins[0]
            ax = at.get("axis", -1) % xx.ndim
            axes = tuple(range(ax, xx.ndim))
            mu = xx.mean(axis=axes, keepdims=True)
            var = ((xx - mu) ** 2).mean(axis=axes, keepdims=True)
            out = (xx - mu) / np.sqrt(var + at.get("epsilon", 1e-5)) * ins[1]
            if len(ins) > 2 and ins[2] is not None:
                out = out + ins[2]
        elif op == "Transpose":
            out = np.transpose(ins[0], at.get("perm"))
        elif op == "ReduceMean":
            axes = at.get("axes")
            out = ins[0].mean(axis=tuple(axes) if axes is not None else None,
                              keepdims=bool(at.get("keepdims", 1)))
        elif op == "Reshape":
            shape = [ins[0].shape[i] if s == 0 else int(s)
                     for i, s in enumerate(ins[1])]
            out = ins[0].reshape(shape)
        elif op == "Shape":
            out = np.array(ins[0].shape, dtype=np.int64)
        elif op == "Gather":
            out = np.take(ins[0], ins[1], axis=at.get("axis", 0))
        elif op == "Unsqueeze":
            out = ins[0]
            for ax in sorted(int(a) for a in ins[1]):
                out = np.expand_dims(out, ax)
        elif op == "Concat":
            out = np.concatenate(ins, axis=at["axis"])
        else:
            raise NotImplementedError("numpy_forward: " + op)
        vals[n.output[0]] = out
    return vals[graph.output[0].name]


# ---- fixtures -------------------------------------------------------------------

NORM_TEXT = "x = (pixel/255 - %.4f) / %.4f" % (MEAN, STD)


def fmt17(v):
    return "%.17g" % v


def write_eval_fixture(name, model32, model64, x, y):
    n = EVAL_SAMPLES
    with torch.no_grad():
        z64 = model64(torch.from_numpy(x[:n]))
        yt = torch.from_numpy(y[:n])
        ce = F.cross_entropy(z64, yt).item()
        onehot = F.one_hot(yt, 10).double()
        mse = (0.5 * ((z64 - onehot) ** 2).sum(dim=1)).mean().item()
        acc = (z64.argmax(dim=1) == yt).double().mean().item()
        z32 = model32(torch.from_numpy(x[:n]).float())
        ce32 = F.cross_entropy(z32, yt).item()
    path = os.path.join(FIXTURE_DIR, "eval_%s.txt" % name)
    with open(path, "w") as f:
        f.write("# %s.onnx on the first %d Fashion-MNIST t10k images, %s. "
                "loss_ce = mean of -log softmax(z)_y and loss_mse = mean of "
                "0.5*||z - onehot(y)||^2, both float64 by PyTorch; accuracy = "
                "fraction with argmax z = y; loss_ce_f32 = the ce loss with the "
                "model in float32. Made by tools/make_models.py.\n"
                % (name, n, NORM_TEXT))
        f.write("samples %d\n" % n)
        f.write("loss_ce %s\n" % fmt17(ce))
        f.write("loss_mse %s\n" % fmt17(mse))
        f.write("accuracy %s\n" % repr(acc))
        f.write("loss_ce_f32 %s\n" % fmt17(ce32))
    return ce, mse, acc, ce32


def write_logits_fixture(name, model32, x, y):
    n = LOGIT_SAMPLES
    with torch.no_grad():
        z = model32(torch.from_numpy(x[:n]).float()).numpy()
    path = os.path.join(FIXTURE_DIR, "logits_%s.txt" % name)
    with open(path, "w") as f:
        f.write("# float32 logits of %s.onnx for the first %d Fashion-MNIST t10k "
                "images, %s; one image per line, 10 values (classes 0..9). Made by "
                "tools/make_models.py.\n" % (name, n, NORM_TEXT))
        f.write("# labels: %s\n" % " ".join(str(int(v)) for v in y[:n]))
        for row in z:
            f.write(" ".join("%.9g" % v for v in row) + "\n")
    return z


def write_grad_fixture(name, model64, params, mapping, x, y, unmapped):
    n = GRAD_SAMPLES
    model64.zero_grad()
    loss = F.cross_entropy(model64(torch.from_numpy(x[:n])), torch.from_numpy(y[:n]))
    loss.backward()
    grads = dict((k, p.grad.numpy()) for k, p in model64.named_parameters())
    path = os.path.join(FIXTURE_DIR, "grad_%s.txt" % name)
    total = 0
    with open(path, "w") as f:
        f.write("# gradient of the mean ce loss of %s.onnx over the first %d "
                "Fashion-MNIST training images, %s, float64 by PyTorch. Line "
                "'loss L', then per parameter tensor in doc/design.md order a line "
                "'param NAME NUMEL' (NAME = ONNX initializer) and a line of NUMEL "
                "values, row-major in the layout the ONNX file stores the tensor. "
                "Made by tools/make_models.py.\n" % (name, n, NORM_TEXT))
        if unmapped:
            f.write("# trained in PyTorch but not a layer parameter by doc/design.md's "
                    "definition, so not listed: %s\n" % " ".join(unmapped))
        f.write("loss %s\n" % fmt17(loss.item()))
        for (onnx_name, arr), (tname, transposed) in zip(params, mapping):
            g = grads[tname].T if transposed else grads[tname]
            assert g.shape == arr.shape
            f.write("param %s %d\n" % (onnx_name, g.size))
            f.write(" ".join(fmt17(v) for v in np.ascontiguousarray(g).ravel()) + "\n")
            total += g.size
    return loss.item(), total


# ---- main -----------------------------------------------------------------------

def main():
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    os.makedirs(MODEL_DIR, exist_ok=True)
    os.makedirs(FIXTURE_DIR, exist_ok=True)

    x_train, y_train = load_split("train")
    x_test, y_test = load_split("t10k")
    xt = torch.from_numpy(x_train[:TRAIN_SUBSET]).float()
    yt = torch.from_numpy(y_train[:TRAIN_SUBSET])
    xe, ye = torch.from_numpy(x_test).float(), torch.from_numpy(y_test)

    for idx, (name, cls, opset, steps, lr, batch, required) in enumerate(SPECS):
        t0 = time.time()
        torch.manual_seed(SEED + idx)
        model = cls()
        train(model, xt, yt, steps, lr, batch, SEED + 100 + idx)
        acc = accuracy(model, xe, ye)
        print("%s: %d steps in %.1f s, t10k accuracy %.4f"
              % (name, steps, time.time() - t0, acc))

        path = export(model, name, opset)
        proto = onnx.load(path)
        check_graph(proto, name, required)
        params = onnx_parameters(proto.graph)
        mapping, unmapped = map_parameters(model, params, name)

        model64 = copy.deepcopy(model).double().eval()
        with torch.no_grad():
            ref = model64(torch.from_numpy(x_test[:LOGIT_SAMPLES])).numpy()
        got = numpy_forward(proto, x_test[:LOGIT_SAMPLES])
        # float32 constants in the graph (GELU's sqrt(2), the attention scale)
        # differ from PyTorch's float64 ones by ~1e-8 relative
        err = np.abs(got - ref).max()
        if not err < 1e-6:
            sys.exit("make_models: %s.onnx computes other logits than PyTorch "
                     "(max abs difference %g)" % (name, err))

        ce, mse, acc1k, ce32 = write_eval_fixture(name, model, model64, x_test, y_test)
        write_logits_fixture(name, model, x_test, y_test)
        gloss, numel = write_grad_fixture(name, model64, params, mapping,
                                          x_train, y_train, unmapped)
        print("  %s.onnx %d bytes; ONNX vs PyTorch logits max diff %.2g; first %d "
              "t10k: ce %.6f mse %.6f acc %.3f ce_f32 %.6f; grad over %d train "
              "images: loss %.6f, %d parameters in %d tensors"
              % (name, os.path.getsize(path), err, EVAL_SAMPLES, ce, mse, acc1k,
                 ce32, GRAD_SAMPLES, gloss, numel, len(params)))


if __name__ == "__main__":
    main()
