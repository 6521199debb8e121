#!/usr/bin/python3
"""A small trained model and a float64 exact-Hessian influence reference for
tests/influence/test_influence_hessian.c (issue 21: EK-FAC influence against
the exact Hessian on a small trained model).

Data: Fashion-MNIST (Debian's dataset-fashion-mnist) images averaged over
4x4 pixels to 7x7 and standardised; N = 256 training images (the first 256
of the training set) and Q = 16 queries (the first 16 of the test set).
Models: inf_lin, Flatten -> Linear(49, 10) (softmax regression: the logits
are linear in the parameters, so the Hessian equals the GGN and curvscope's
exact layer block must reproduce the reference), and inf_mlp, Flatten ->
Linear(49, 16) -> Tanh -> Linear(16, 10); each trained in
float64 by full-batch L-BFGS on the mean cross-entropy with a small weight
decay (so that the minimum is well defined), then exported as float32 ONNX.

The reference uses the float32 weights as the file stores them, widened:
H is the exact Hessian of the mean training cross-entropy (double backward,
torch.autograd.functional.hessian, no Gauss-Newton step), g_m and g_q the
per-example loss gradients, and the scores S[q, m] = g_q^T (H + lambda I)^-1
g_m with lambda = 0.1 * tr(H) / P (the damping rule of kronfluence: a tenth
of the mean eigenvalue).  The weight decay is not part of the loss the
scores use (curvscope's loss has none).

Writes tests/models/M.onnx, tests/fixtures/curv_inf_{x,y}.npy (training
set), tests/fixtures/curv_inf_q_{x,y}.npy (queries) and
tests/fixtures/influence_hessian_M.txt for M in inf_lin, inf_mlp (records 'vector lambda 1',
'vector mean_eig 1', 'vector min_eig 1', 'matrix scores Q N', and
'vector train_loss 1', 'vector self N': g_m^T (H + lambda I)^-1 g_m),
in the format of tests/curv/fixture.h.
Run from the repository root: tools/make_influence_fixture.py
"""
import gzip
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
D = "/usr/share/datasets/fashion-mnist"
N, Q = 256, 16


def images(name, n):
    with gzip.open(os.path.join(D, name)) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)[: n * 784]
    x = raw.reshape(n, 28, 28).astype(np.float64) / 255.0
    x = x.reshape(n, 7, 4, 7, 4).mean(axis=(2, 4))
    return ((x - 0.2860) / 0.3530).reshape(n, 1, 7, 7).astype(np.float32)


def labels(name, n):
    with gzip.open(os.path.join(D, name)) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:n].astype(np.int64)


def make(name, hidden):
    torch.manual_seed(2101)
    x = images("train-images-idx3-ubyte.gz", N)
    y = labels("train-labels-idx1-ubyte.gz", N)
    xq = images("t10k-images-idx3-ubyte.gz", Q)
    yq = labels("t10k-labels-idx1-ubyte.gz", Q)
    if hidden:
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(49, hidden), torch.nn.Tanh(),
                                    torch.nn.Linear(hidden, 10))
    else:
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(49, 10))
    X, Y = torch.tensor(x, dtype=torch.float64), torch.tensor(y)
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=2000, tolerance_grad=1e-10,
                            tolerance_change=1e-14, history_size=50, line_search_fn="strong_wolfe")
    wd = 1e-3

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), Y)
        loss = loss + 0.5 * wd * sum((p * p).sum() for p in model.parameters())
        loss.backward()
        return loss

    opt.step(closure)

    # The exported (float32) weights, widened, are the reference's.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.float().double())
    os.makedirs("tests/models", exist_ok=True)
    m32 = model.float().eval()
    torch.onnx.export(m32, (torch.zeros(2, 1, 7, 7, dtype=torch.float32),), "tests/models/%s.onnx" % name, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                      opset_version=13, do_constant_folding=True)
    model = model.double()
    np.save("tests/fixtures/curv_inf_x.npy", x)
    np.save("tests/fixtures/curv_inf_y.npy", y)
    np.save("tests/fixtures/curv_inf_q_x.npy", xq)
    np.save("tests/fixtures/curv_inf_q_y.npy", yq)

    # curvscope's parameter order: each layer's weight then bias, row-major
    # as ONNX stores them (Gemm transB: [out, in], PyTorch's own layout).
    params = [p.detach().clone() for p in model.parameters()]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    P = sum(sizes)

    def unflat(theta):
        out, o = [], 0
        for s, n in zip(shapes, sizes):
            out.append(theta[o:o + n].reshape(s))
            o += n
        return out

    def logits(theta, inp):
        if not hidden:
            w, b = unflat(theta)
            return inp.reshape(inp.shape[0], -1) @ w.T + b
        w1, b1, w2, b2 = unflat(theta)
        h = torch.tanh(inp.reshape(inp.shape[0], -1) @ w1.T + b1)
        return h @ w2.T + b2

    theta0 = torch.cat([p.reshape(-1) for p in params])
    Xq, Yq = torch.tensor(xq, dtype=torch.float64), torch.tensor(yq)

    def mean_loss(theta):
        return torch.nn.functional.cross_entropy(logits(theta, X), Y)

    H = torch.autograd.functional.hessian(mean_loss, theta0)
    H = 0.5 * (H + H.T)

    def grads(inp, lab):
        g = []
        for i in range(inp.shape[0]):
            t = theta0.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(logits(t, inp[i:i + 1]), lab[i:i + 1])
            g.append(torch.autograd.grad(loss, t)[0])
        return torch.stack(g)

    gm, gq = grads(X, Y), grads(Xq, Yq)
    eig = torch.linalg.eigvalsh(H)
    lam = 0.1 * torch.trace(H).item() / P
    Hinv_gm = torch.linalg.solve(H + lam * torch.eye(P), gm.T)
    S = gq @ Hinv_gm
    self_inf = (gm * Hinv_gm.T).sum(dim=1)
    train_loss = mean_loss(theta0).item()
    with open("tests/fixtures/influence_hessian_%s.txt" % name, "w") as f:
        f.write("# tools/make_influence_fixture.py: P = %d, N = %d, Q = %d; S[q, m] = g_q^T (H + lambda I)^-1 g_m, "
                "H the exact float64 Hessian of the mean training cross-entropy\n" % (P, N, Q))
        f.write("vector lambda 1\n%.17g\n" % lam)
        f.write("vector mean_eig 1\n%.17g\n" % (torch.trace(H).item() / P))
        f.write("vector min_eig 1\n%.17g\n" % eig[0].item())
        f.write("vector train_loss 1\n%.17g\n" % train_loss)
        f.write("vector self %d\n" % N)
        f.write(" ".join("%.17g" % v for v in self_inf.tolist()) + "\n")
        f.write("matrix scores %d %d\n" % (Q, N))
        for q in range(Q):
            f.write(" ".join("%.17g" % v for v in S[q].tolist()) + "\n")
    print("%s: P %d, train loss %.4f, lambda %.4g, eigenvalues [%.4g, %.4g]" % (name, P, train_loss, lam, eig[0], eig[-1]))


def main():
    make("inf_lin", 0)
    make("inf_mlp", 16)


if __name__ == "__main__":
    main()
