#!/usr/bin/python3
"""Make tests/zoo/: small trained instances of real architectures, exported as a
user would export them, with PyTorch's float64 loss and gradient for each.

Every model is built from the library classes themselves (torchvision.models
constructors with reduced widths and depths, torch.nn.TransformerEncoder,
nn.LSTM, nn.GRU, nn.Embedding), trained briefly (Adam, a few hundred steps) and
exported twice with torch.onnx.export's defaults for inference (training=EVAL,
do_constant_folding=True; one family with it off), a dynamic batch axis, at
opsets 13 and 17.

  family      built from                                     data
  resnet      torchvision ResNet + BasicBlock, widths 8-32   Fashion-MNIST
  mobilenetv3 torchvision MobileNetV3, 4 blocks (SE, HS/RE)  Fashion-MNIST
  shufflenet  torchvision ShuffleNetV2, stages 8-96, a       Fashion-MNIST
              stride-1 unit that splits channels
  densenet    torchvision DenseNet, growth 6, blocks (2, 2)  Fashion-MNIST
  vit         torchvision VisionTransformer 28x28, patch 7   Fashion-MNIST
  lm          nn.Embedding + causal nn.TransformerEncoder    tokens (next token)
  lstm        nn.Embedding + bidirectional nn.LSTM, h0/c0    tokens (majority)
  gru         nn.Embedding + nn.GRU, no initial state        tokens (majority)
  xattn       nn.Embedding + cross nn.MultiheadAttention,    tokens (majority)
              exported with do_constant_folding=False
  encdec      Conv/ConvTranspose2d/Upsample encoder-decoder  Fashion-MNIST
              with InstanceNorm2d(affine), PReLU, ELU, SELU,
              Softplus and amax pooling

Written under tests/zoo/ (paths relative to the repository root):

  <family>_op<13|17>.onnx   the exports
  <family>_x.npy            SAMPLES inputs: uint8 Fashion-MNIST pixels [N, 1, 28, 28]
                            (curvscope: --scale 1/255 --mean 0.2860 --std 0.3530) or
                            int64 token ids [N, T]
  <family>_y.npy            int64 class labels [N]
  <family>_op<13|17>.txt    the reference (format in its '#' lines): the mean
                            cross-entropy of the logits over the samples and the
                            gradient norms, float64 by PyTorch (the float32-trained
                            model cast to double), with per-tensor norms named by
                            ONNX initializer, and what the export did to PyTorch's
                            parameters (kept, transposed, reshaped, permuted, or
                            folded: where torch.onnx.export's eval mode folded each
                            BatchNorm that follows a Conv into it, the references
                            are those of the same model fused by
                            torch.fx.experimental.optimization.fuse, whose
                            parameters equal the initializers to float32 rounding:
                            'basis fused')

The token tasks are synthetic and deterministic: 'lm' reads T tokens of an
arithmetic progression modulo V and predicts the next one (trained on every
position, exported with the last position's logits, the loss the fixture
states); 'lstm' and 'gru' name the group of tokens (token // 4) that occurs
most often in the sequence.

Rerun from the repository root with

    tools/make_zoo.py [FAMILY ...]

(all families, or the ones named; ZOO_STEPS=N overrides the training steps for
a quick look at the exports, not for the committed files.)  It takes about two
minutes on an idle 2-core machine.

It needs /usr/bin/python3 with torch and torchvision (CPU), onnx and numpy, and
reads the Fashion-MNIST IDX files as tools/make_models.py does.  Seeds are fixed
and torch runs on 2 threads with deterministic algorithms, so a rerun on the
same machine and library versions regenerates the same files.
"""

import collections
import copy
import functools
import itertools
import math
import os
import re
import sys
import time
import warnings

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models import mobilenetv3, resnet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_models import DATA_DIR, MEAN, STD, load_split, read_idx  # noqa: E402  (same data and normalisation)

SEED = 1600
THREADS = 2
OPSETS = (13, 17)
SAMPLES = 32           # fixture samples per family
TRAIN_SUBSET = 20000   # image batches are drawn from the first TRAIN_SUBSET training images
MAX_MODEL_BYTES = 300 * 1024

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO_DIR = os.path.join(ROOT, "tests", "zoo")
NORM_FLAGS = "--scale 1/255 --mean %.4f --std %.4f" % (MEAN, STD)


# ---- image models: torchvision constructors, small --------------------------------

def gray_stem(conv):
    """The same convolution with one input channel (Fashion-MNIST is grey)."""
    return nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, conv.bias is not None)


def make_resnet():
    """torchvision's ResNet with BasicBlocks (as resnet18) at widths 8, 16, 24, 32,
    one block per stage.  ResNet hard-codes widths 64..512 in __init__, so the
    stages are rebuilt with its own _make_layer at small widths."""
    m = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=10)
    widths = (8, 16, 24, 32)
    m.inplanes = widths[0]
    m.conv1 = nn.Conv2d(1, widths[0], 7, 2, 3, bias=False)
    m.bn1 = nn.BatchNorm2d(widths[0])
    m.layer1 = m._make_layer(resnet.BasicBlock, widths[0], 1)
    m.layer2 = m._make_layer(resnet.BasicBlock, widths[1], 1, stride=2)
    m.layer3 = m._make_layer(resnet.BasicBlock, widths[2], 1, stride=2)
    m.layer4 = m._make_layer(resnet.BasicBlock, widths[3], 1, stride=2)
    m.fc = nn.Linear(widths[3], 10)
    return m


def make_mobilenetv3():
    """torchvision's MobileNetV3 with four inverted-residual blocks: squeeze-excite
    (Hardsigmoid gate), ReLU and Hardswish blocks, a Hardswish head."""
    conf = functools.partial(mobilenetv3.InvertedResidualConfig, width_mult=1.0)
    setting = [
        # input, kernel, expanded, out, SE, activation, stride, dilation
        conf(8, 3, 8, 8, True, "RE", 2, 1),
        conf(8, 3, 24, 12, False, "RE", 2, 1),
        conf(12, 5, 36, 16, True, "HS", 1, 1),
        conf(16, 5, 48, 24, True, "HS", 2, 1),
    ]
    m = mobilenetv3.MobileNetV3(setting, last_channel=64, num_classes=10)
    m.features[0][0] = gray_stem(m.features[0][0])
    return m


def make_shufflenet():
    # two units in stage 2: the second (stride 1) splits the channels (x.chunk)
    m = torchvision.models.ShuffleNetV2([2, 1, 1], [8, 16, 32, 64, 96], num_classes=10)
    m.conv1[0] = gray_stem(m.conv1[0])
    return m


def make_densenet():
    m = torchvision.models.DenseNet(growth_rate=6, block_config=(2, 2), num_init_features=12,
                                    bn_size=2, num_classes=10)
    m.features.conv0 = gray_stem(m.features.conv0)
    return m


def make_vit():
    m = torchvision.models.VisionTransformer(image_size=28, patch_size=7, num_layers=2,
                                             num_heads=2, hidden_dim=32, mlp_dim=64,
                                             num_classes=10)
    m.conv_proj = gray_stem(m.conv_proj)
    return m


class EncDec(nn.Module):
    """A small encoder-decoder CNN whose class scores are the spatial maximum
    (amax) of its per-class output maps."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(1, 8, 3, 2, 1)                  # 28 -> 14
        self.norm1 = nn.InstanceNorm2d(8, affine=True)
        self.act1 = nn.PReLU(8)
        self.enc2 = nn.Conv2d(8, 16, 3, 2, 1)                 # 14 -> 7
        self.act2 = nn.ELU()
        self.dec1 = nn.ConvTranspose2d(16, 8, 4, 2, 1)        # 7 -> 14
        self.act3 = nn.SELU()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")  # 14 -> 28
        self.dec2 = nn.Conv2d(8, 8, 3, 1, 1)
        self.act4 = nn.Softplus()
        self.head = nn.Conv2d(8, 10, 1)

    def forward(self, x):
        h = self.act1(self.norm1(self.enc1(x)))
        h = self.act2(self.enc2(h))
        h = self.act3(self.dec1(h))
        h = self.act4(self.dec2(self.up(h)))
        return torch.amax(self.head(h), dim=(2, 3))           # [N, 10]


# ---- sequence models: synthetic token tasks --------------------------------------

class CausalLM(nn.Module):
    """Token and position embeddings, a causal nn.TransformerEncoder, and the
    next-token logits of the last position.  The mask and the positions are made
    from the input's length inside forward, as in the PyTorch tutorials, so the
    export computes them (Range, Expand, Greater, ConstantOfShape, Where)."""

    VOCAB, T, D = 16, 12, 32

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(self.VOCAB, self.D)
        self.pos = nn.Embedding(self.T, self.D)
        layer = nn.TransformerEncoderLayer(self.D, 2, dim_feedforward=64, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(self.D, self.VOCAB)
        self.last_only = True

    def forward(self, tokens):                                 # [N, T] int64
        n, t = tokens.shape
        i = torch.arange(t)
        positions = i.unsqueeze(0).expand(n, t)
        # -inf above the diagonal (torch.triu / tril would need opset 14)
        mask = torch.zeros(t, t).masked_fill(i.unsqueeze(0) > i.unsqueeze(1), float("-inf"))
        h = self.encoder(self.tok(tokens) + self.pos(positions), mask=mask)
        z = self.out(h)                                        # [N, T, V]
        return z[:, -1, :] if self.last_only else z


class RNNClassifier(nn.Module):
    """nn.Embedding, a one-layer nn.LSTM or nn.GRU, and a linear head on the final
    hidden state(s).  With learned_init the initial states are parameters
    broadcast over the batch and passed to the RNN; without, the RNN starts
    from zeros it makes itself."""

    VOCAB, T, CLASSES = 16, 10, 4

    def __init__(self, cell, hidden, bidirectional, learned_init):
        super().__init__()
        self.embed = nn.Embedding(self.VOCAB, 12)
        self.cell = cell
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(
            12, hidden, batch_first=True, bidirectional=bidirectional)
        dirs = 2 if bidirectional else 1
        self.learned_init = learned_init
        if learned_init:
            self.h0 = nn.Parameter(0.1 * torch.randn(dirs, 1, hidden))
            if cell == "lstm":
                self.c0 = nn.Parameter(0.1 * torch.randn(dirs, 1, hidden))
        self.head = nn.Linear(dirs * hidden, self.CLASSES)

    def forward(self, tokens):                                 # [N, T] int64
        e = self.embed(tokens)
        if self.learned_init:
            n = tokens.shape[0]
            h0 = self.h0.expand(-1, n, -1).contiguous()
            state = (h0, self.c0.expand(-1, n, -1).contiguous()) if self.cell == "lstm" else h0
            _, hn = self.rnn(e, state)
        else:
            _, hn = self.rnn(e)
        if self.cell == "lstm":
            hn = hn[0]
        return self.head(torch.cat(list(hn), dim=1))           # [N, classes]


class CrossAttention(nn.Module):
    """nn.Embedding, nn.MultiheadAttention whose queries are the first half of
    the sequence and whose keys and values are the second half, and a linear
    head on the mean of the attended queries.  Exported without constant
    folding (as torch.onnx.export(..., do_constant_folding=False) writes it),
    in_proj_weight and in_proj_bias reach their MatMuls and Adds through a
    Split into the query and key-value parts and a Transpose of each."""

    VOCAB, T, D = RNNClassifier.VOCAB, RNNClassifier.T, 16
    FOLD = False

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(self.VOCAB, self.D)
        self.attn = nn.MultiheadAttention(self.D, 2, batch_first=True)
        self.head = nn.Linear(self.D, RNNClassifier.CLASSES)

    def forward(self, tokens):                                 # [N, T] int64
        e = self.embed(tokens)
        h = self.T // 2
        kv = e[:, h:]
        a, _ = self.attn(e[:, :h], kv, kv, need_weights=False)
        return self.head(a.mean(dim=1))


def lm_tokens(n, rng):
    """Arithmetic progressions modulo V: T + 1 tokens, the last is the target."""
    v, t = CausalLM.VOCAB, CausalLM.T
    a = rng.integers(0, v, size=(n, 1))
    b = rng.integers(1, v, size=(n, 1))
    seq = (a + b * np.arange(t + 1)[None, :]) % v
    return seq[:, :t].astype(np.int64), seq[:, 1:].astype(np.int64)


def majority_tokens(n, rng):
    """Sequences whose most frequent token group (token // 4) is the label: the
    label's group fills T/2 positions, the others are drawn from the rest."""
    v, t, k = RNNClassifier.VOCAB, RNNClassifier.T, RNNClassifier.CLASSES
    per = v // k
    y = rng.integers(0, k, size=n)
    x = np.empty((n, t), dtype=np.int64)
    for i in range(n):
        others = [c for c in range(k) if c != y[i]]
        groups = [y[i]] * (t // 2) + list(rng.choice(others, size=t - t // 2))
        rng.shuffle(groups)
        x[i] = [g * per + rng.integers(0, per) for g in groups]
    return x, y.astype(np.int64)


# name, builder, data kind, steps, learning rate, batch
FAMILIES = [
    ("resnet", make_resnet, "image", 300, 3e-3, 64),
    ("mobilenetv3", make_mobilenetv3, "image", 300, 3e-3, 64),
    ("shufflenet", make_shufflenet, "image", 300, 3e-3, 64),
    ("densenet", make_densenet, "image", 300, 3e-3, 64),
    ("vit", make_vit, "image", 300, 2e-3, 64),
    ("encdec", EncDec, "image", 300, 3e-3, 64),
    ("lm", CausalLM, "lm", 300, 3e-3, 64),
    ("lstm", lambda: RNNClassifier("lstm", 20, True, True), "majority", 300, 1e-2, 64),
    ("gru", lambda: RNNClassifier("gru", 24, False, False), "majority", 300, 1e-2, 64),
    ("xattn", CrossAttention, "majority", 300, 1e-2, 64),
]


# ---- training -----------------------------------------------------------------

def train(model, kind, data, steps, lr, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(steps):
        if kind == "image":
            xt, yt = data
            idx = torch.randint(0, xt.shape[0], (batch,), generator=gen)
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
        elif kind == "lm":
            x, y = lm_tokens(batch, rng)
            model.last_only = False
            z = model(torch.from_numpy(x))
            model.last_only = True
            loss = F.cross_entropy(z.reshape(-1, z.shape[-1]), torch.from_numpy(y).reshape(-1))
        else:
            x, y = majority_tokens(batch, rng)
            loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def recalibrate_batchnorm(model, x, n=4000, batch=250):
    """BatchNorm running statistics as the plain average over n training images
    under the trained weights (torchvision's MobileNetV3 uses momentum 0.01, whose
    running averages still remember the first steps after a few hundred)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                   # cumulative average
    model.train()
    with torch.no_grad():
        for i in range(0, n, batch):
            model(x[i:i + batch])
    model.eval()


# ---- export and parameter mapping ----------------------------------------------

def export(model, example, path, opset):
    """torch.onnx.export as a user exports for inference: the model in eval mode,
    the default training=EVAL (which folds a BatchNormalization that follows a
    Conv into the Conv's weight and bias), constant folding on, except for a
    model whose class sets FOLD = False (the export of a user who turned it
    off: weights reach their layers through Transpose / Split nodes)."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), path, input_names=["input"],
                          output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                          opset_version=opset,
                          do_constant_folding=getattr(model, "FOLD", True))


def map_initializers(model, graph, exact=True):
    """Match each float initializer of the export to the PyTorch parameters it
    holds, by value: [(onnx name, [torch names], how)] and the PyTorch parameters
    no initializer holds.  how is 'same' (equal), 'transposed' (a 2-D weight
    stored transposed), 'reshaped' (same values in the same order, another
    shape: PRelu's slope as [C, 1, 1]), or 'permuted' (the initializer's values are those of
    the listed parameters in another order, as the RNN exports concatenate and
    reorder gate blocks); an initializer with no match (a Conv weight with a
    BatchNorm folded in, a constant) is left out."""
    params = {k: v.detach().numpy().astype(np.float32) for k, v in model.named_parameters()}
    used, result = set(), []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.size < 1:
            continue
        hit = None
        def equal(a, b):
            return np.array_equal(a, b) if exact else np.allclose(a, b, rtol=1e-5, atol=1e-6)
        for name, p in params.items():
            if name in used:
                continue
            if p.shape == arr.shape and equal(p, arr):
                hit = ([name], "same")
            elif p.ndim == 2 and p.T.shape == arr.shape and equal(p.T, arr):
                hit = ([name], "transposed")
            elif p.size == arr.size and equal(p.ravel(), arr.ravel()):
                hit = ([name], "reshaped")
            if hit:
                break
        if not hit:
            want = np.sort(arr.ravel())
            # only recurrent weights are exported concatenated and reordered
            free = [k for k in params if k not in used and params[k].size <= arr.size
                    and re.search(r"(weight|bias)_(ih|hh)_l", k)]
            for r in range(1, 5):
                for combo in itertools.combinations(free, r):
                    if sum(params[k].size for k in combo) != arr.size:
                        continue
                    got = np.sort(np.concatenate([params[k].ravel() for k in combo]))
                    if np.array_equal(got, want):
                        hit = (list(combo), "permuted")
                        break
                if hit:
                    break
        if hit:
            used.update(hit[0])
            result.append((init.name, hit[0], hit[1]))
    return result, [k for k in params if k not in used]


# ---- references -----------------------------------------------------------------

def fmt17(v):
    return "%.17g" % v


def grads64(model, xt, y):
    """Mean cross-entropy and {name: gradient} of the model cast to float64."""
    model64 = copy.deepcopy(model).double().eval()
    model64.zero_grad()
    loss = F.cross_entropy(model64(xt), torch.from_numpy(y))
    loss.backward()
    return loss.item(), {k: p.grad.detach().numpy() for k, p in model64.named_parameters()}


def norm_of(grads, names):
    return math.sqrt(sum(float((grads[k] ** 2).sum()) for k in names))


def fuse_sequential(model):
    """Fold every BatchNorm2d that directly follows a Conv2d inside an
    nn.Sequential into that Conv2d (the BatchNorm becomes an Identity)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    for m in model.modules():
        if not isinstance(m, nn.Sequential):
            continue
        for i in range(len(m) - 1):
            if isinstance(m[i], nn.Conv2d) and isinstance(m[i + 1], nn.BatchNorm2d):
                m[i] = fuse_conv_bn_eval(m[i], m[i + 1])
                m[i + 1] = nn.Identity()
    return model


def fused_model(model):
    """The model with each BatchNorm that follows a Conv folded into it
    (torch.fx.experimental.optimization.fuse), as the eval export folds it; None
    where nothing folds.  Where fx cannot trace the model, the pairs that sit
    next to each other in an nn.Sequential are folded instead."""
    from torch.fx.experimental import optimization
    try:
        fused = optimization.fuse(copy.deepcopy(model).eval())
    except Exception:                       # noqa: BLE001 (fx cannot trace ShuffleNetV2's
        fused = fuse_sequential(copy.deepcopy(model).eval())   # channel shuffle)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    if sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) == n_bn:
        return None
    return fused


def write_reference(path, fam, opset, model, x_in, y, graph, kind):
    xt = torch.from_numpy(x_in)
    if kind == "image":
        xt = xt.double()
    loss, grads = grads64(model, xt, y)
    total = norm_of(grads, grads)
    mapping, unmapped = map_initializers(model, graph)
    # Where the export folded BatchNorms, the initializers are the parameters of
    # the fused model: its gradient is the reference for the ONNX parameters.
    basis, basis_grads, basis_unmapped = "pytorch", grads, unmapped
    if unmapped:
        fused = fused_model(model)
        if fused is not None:
            f_mapping, f_unmapped = map_initializers(fused, graph, exact=False)
            if not f_unmapped:
                f_loss, f_grads = grads64(fused, xt, y)
                if abs(f_loss - loss) > 1e-6 * abs(loss):
                    sys.exit("make_zoo: %s: the fused model's loss %g differs from %g"
                             % (fam, f_loss, loss))
                basis, basis_grads, mapping, basis_unmapped = "fused", f_grads, f_mapping, []
    ops = collections.Counter(n.op_type for n in graph.node)
    with open(path, "w") as f:
        f.write("# %s_op%d.onnx: reference by PyTorch %s in float64 (the float32-trained "
                "model cast to double) on %s_x.npy / %s_y.npy; made by tools/make_zoo.py.\n"
                % (fam, opset, torch.__version__, fam, fam))
        f.write("# loss: mean cross-entropy of the logits (the graph output), "
                "L = (1/N) sum_n -log softmax(z_n)_(y_n).\n")
        f.write("# grad_norm: L2 norm of dL/dtheta over ALL PyTorch parameters of the model "
                "as written in PyTorch.\n")
        f.write("# basis pytorch: the initializers hold PyTorch's parameters; basis fused: "
                "the eval export folded each BatchNorm that follows a Conv into that Conv "
                "(PyTorch's conv and bn parameters are in no initializer), and the "
                "references are those of the fused model (torch.fx.experimental."
                "optimization.fuse), whose parameters equal the initializers to float32 "
                "rounding.\n")
        f.write("# param ONNX_NAME NORM HOW SOURCES: the L2 norm of dL/d(initializer), "
                "from the parameters of the basis model it holds (HOW: same; transposed; "
                "reshaped; permuted: its values are theirs reordered and concatenated, as "
                "the RNN exports store gates, so the norm is the same).\n")
        f.write("# grad_norm_onnx: the L2 norm over every param line (the whole gradient "
                "with respect to the ONNX initializers); absent where some basis parameter "
                "is in no initializer ('unmapped').\n")
        f.write("# ops: %s\n" % " ".join("%s:%d" % kv for kv in sorted(ops.items())))
        f.write("flags %s\n" % (NORM_FLAGS if kind == "image" else ""))
        f.write("samples %d\n" % len(y))
        f.write("loss %s\n" % fmt17(loss))
        f.write("grad_norm %s\n" % fmt17(total))
        f.write("basis %s\n" % basis)
        if basis_unmapped:
            f.write("unmapped %s\n" % " ".join(basis_unmapped))
        else:
            f.write("grad_norm_onnx %s\n"
                    % fmt17(math.sqrt(sum(norm_of(basis_grads, t) ** 2 for _, t, _ in mapping))))
        for onnx_name, sources, how in mapping:
            f.write("param %s %s %s %s\n" % (onnx_name, fmt17(norm_of(basis_grads, sources)),
                                             how, ",".join(sources)))
    return loss, total, basis, basis_unmapped, ops


def main():
    only = set(sys.argv[1:])
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    os.makedirs(ZOO_DIR, exist_ok=True)
    t_all = time.time()
    x_train = y_train = None
    for idx, (fam, build, kind, steps, lr, batch) in enumerate(FAMILIES):
        if only and fam not in only:
            continue
        t0 = time.time()
        if kind == "image" and x_train is None:
            x_train, y_train = load_split("train")
            x_test, y_test = load_split("t10k")
            raw_test, _ = load_split_raw("t10k")
            data = (torch.from_numpy(x_train[:TRAIN_SUBSET]).float(),
                    torch.from_numpy(y_train[:TRAIN_SUBSET]))
        torch.manual_seed(SEED + idx)
        model = build()
        steps = int(os.environ.get("ZOO_STEPS", steps))   # a quick look at the exports
        train(model, kind, data if kind == "image" else None, steps, lr, batch, SEED + 100 + idx)
        if kind == "image":
            recalibrate_batchnorm(model, data[0])

        # fixture samples: the first t10k images, or a fresh draw of the token task
        rng = np.random.default_rng(SEED + 200 + idx)
        if kind == "image":
            x_file = raw_test[:SAMPLES, None, :, :]          # uint8 pixels
            x_in = x_test[:SAMPLES]                           # normalised float64
            y = y_test[:SAMPLES]
            example = torch.zeros(2, 1, 28, 28)
        else:
            x_file, y = (lm_tokens if kind == "lm" else majority_tokens)(SAMPLES, rng)
            if kind == "lm":
                y = y[:, -1].copy()
            x_in = x_file
            example = torch.from_numpy(x_file[:2])
        np.save(os.path.join(ZOO_DIR, "%s_x.npy" % fam), x_file)
        np.save(os.path.join(ZOO_DIR, "%s_y.npy" % fam), y.astype(np.int64))
        with torch.no_grad():
            z = model(torch.from_numpy(x_in).float() if kind == "image" else torch.from_numpy(x_in))
            acc = (z.argmax(dim=1).numpy() == y).mean()
        n_params = sum(p.numel() for p in model.parameters())
        print("%s: %d parameters, %d steps in %.1f s, accuracy on the %d fixture samples %.3f"
              % (fam, n_params, steps, time.time() - t0, SAMPLES, acc))
        for opset in OPSETS:
            path = os.path.join(ZOO_DIR, "%s_op%d.onnx" % (fam, opset))
            export(model, example, path, opset)
            size = os.path.getsize(path)
            if size > MAX_MODEL_BYTES:
                sys.exit("make_zoo: %s is %d bytes, above %d" % (path, size, MAX_MODEL_BYTES))
            proto = onnx.load(path)
            onnx.checker.check_model(proto)
            loss, gnorm, basis, unmapped, ops = write_reference(
                os.path.join(ZOO_DIR, "%s_op%d.txt" % (fam, opset)), fam, opset, model,
                x_in, y, proto.graph, kind)
            print("  opset %d: %d bytes, loss %.6f, grad norm %.6f, basis %s%s; ops %s"
                  % (opset, size, loss, gnorm, basis,
                     ", unmapped " + " ".join(unmapped) if unmapped else "",
                     " ".join(sorted(ops))))
    print("all in %.1f s" % (time.time() - t_all))


def load_split_raw(prefix):
    """The uint8 images of a split (the fixture stores pixels, curvscope normalises)."""
    images = read_idx(os.path.join(DATA_DIR, prefix + "-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA_DIR, prefix + "-labels-idx1-ubyte.gz"))
    return images, labels


if __name__ == "__main__":
    main()
