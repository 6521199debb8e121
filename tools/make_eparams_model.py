#!/usr/bin/env python3
"""tests/models/tiny_eparams64.onnx: elementwise parameters and the
constants that must stay constants (interp/param_rule.h), in float64.

  x [N, 4, 6] -> + pos [1, 4, 6] (Add, pos_embedding)
              -> concat(expand(cls [1, 1, 6]), .) [N, 5, 6] (Expand, class token)
              -> LayerNorm decomposed: (h - mean) / sqrt(var + eps) * ln_w + ln_b
                 (Mul, Add; eps a one-element buffer: a scalar constant)
              -> - shift [6] (Sub)
              -> * keep [5, 6] (a 0/1 buffer: a mask, stays constant)
              -> tanh, mean over positions -> Gemm head [N, 3]
  and scores h h^T + causal [5, 5] (-1e9 above the diagonal: an additive
  mask, stays constant) folded into the pooled features by a softmax, and
  a folded all-equal constant (onnx::Mul_..., 0.5 * twos = ones) that
  must stay constant, and a no-op Reshape whose int64 shape is an
  initializer (constant folding) that must stay constant.

Run: python3 tools/make_eparams_model.py  (writes tests/models/tiny_eparams64.onnx)."""
import os
import torch
import torch.nn as nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(21)
        r = lambda *s: 0.5 * torch.randn(*s, generator=g, dtype=torch.float64)
        self.pos = nn.Parameter(r(1, 4, 6))
        self.cls = nn.Parameter(r(1, 1, 6))
        self.ln_w = nn.Parameter(1.0 + 0.2 * r(6))
        self.ln_b = nn.Parameter(0.2 * r(6))
        self.shift = nn.Parameter(r(6))
        self.head = nn.Linear(6, 3).double()
        self.register_buffer("eps", torch.full((1,), 1e-5, dtype=torch.float64))
        keep = (torch.rand(5, 6, generator=g) > 0.3).double()
        keep[0, 0], keep[0, 1] = 0.0, 1.0
        self.register_buffer("keep", keep)
        self.register_buffer("causal", torch.triu(torch.full((5, 5), -1e9, dtype=torch.float64), 1))
        self.register_buffer("twos", torch.full((6,), 2.0, dtype=torch.float64))

    def forward(self, x):
        h = x + self.pos
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), h], dim=1)
        mu = h.mean(-1, keepdim=True)
        d = h - mu
        var = (d * d).mean(-1, keepdim=True)
        h = d / torch.sqrt(var + self.eps) * self.ln_w + self.ln_b
        h = ((h - self.shift) * self.keep).reshape(-1, 5, 6)  # a shape constant
        att = torch.softmax(h @ h.transpose(1, 2) + self.causal, dim=-1)  # [N, 5, 5]
        h = torch.tanh(att @ h) * (0.5 * self.twos)
        return self.head(h.mean(1))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "tests", "models", "tiny_eparams64.onnx")
    m = Tiny().eval()
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    torch.onnx.export(m, (x,), out, input_names=["x"], output_names=["y"], opset_version=13,
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, do_constant_folding=True)
    print("wrote", out)


if __name__ == "__main__":
    main()
