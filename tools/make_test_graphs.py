#!/usr/bin/python3
"""Write the small hand-built ONNX graphs used by the plan tests.

Run from the repository root: tools/make_test_graphs.py
Needs Debian's python3-onnx (onnx.helper), not PyTorch.  The output is
deterministic and committed under tests/models/.

shape_chain.onnx: the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain
that PyTorch writes for x.reshape(x.shape[0], -1) with a dynamic batch,
followed by a Gemm layer, so the plan tests can check that the chain is
folded at prepare time and costs nothing per batch.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def shape_chain():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    rng = np.random.default_rng(7)
    inits = [
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
        numpy_helper.from_array(rng.standard_normal((5, 12)).astype(np.float32), "fc.weight"),
        numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fc.bias"),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"], name="shape"),
        helper.make_node("Gather", ["x_shape", "zero"], ["batch"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"], name="unsqueeze"),
        helper.make_node("Concat", ["batch1", "minus_one"], ["new_shape"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "new_shape"], ["flat"], name="reshape"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["pre"], name="fc", transB=1),
        helper.make_node("Relu", ["pre"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(nodes, "shape_chain", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="curvscope-tools")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, "tests/models/shape_chain.onnx")


if __name__ == "__main__":
    shape_chain()


# ---- tiny float64 models for the derivative tests ----
# Float64 throughout so that finite differences of the loss and of its
# gradient are accurate to ~1e-9: the tests compare exact products (H v,
# J^T Lambda J v) against them.

def f64(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float64)


def tiny_mlp64():
    rng = np.random.default_rng(11)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])
    inits = [numpy_helper.from_array(f64(rng, 5, 4), "fc1.weight"),
             numpy_helper.from_array(f64(rng, 5), "fc1.bias"),
             numpy_helper.from_array(f64(rng, 5, 3), "fc2.weight"),  # [in, out]: transB = 0
             numpy_helper.from_array(f64(rng, 3), "fc2.bias")]
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1", transB=1),
             helper.make_node("Tanh", ["h"], ["a"], name="tanh"),
             helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["y"], name="fc2")]
    save(nodes, "tiny_mlp64", [x], [y], inits, 13)


def tiny_cnn64():
    rng = np.random.default_rng(12)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])
    inits = [numpy_helper.from_array(f64(rng, 4, 1, 3, 3), "conv.weight"),
             numpy_helper.from_array(f64(rng, 4), "conv.bias"),
             numpy_helper.from_array(1.0 + f64(rng, 4, scale=0.1), "bn.weight"),
             numpy_helper.from_array(f64(rng, 4, scale=0.1), "bn.bias"),
             numpy_helper.from_array(f64(rng, 4, scale=0.1), "bn.running_mean"),
             numpy_helper.from_array(1.0 + np.abs(f64(rng, 4, scale=0.2)), "bn.running_var"),
             numpy_helper.from_array(f64(rng, 3, 16), "fc.weight"),
             numpy_helper.from_array(f64(rng, 3), "fc.bias")]
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv",
                              group=2, pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "bn.weight", "bn.bias", "bn.running_mean",
                                                     "bn.running_var"], ["b"], name="bn"),
             helper.make_node("Sigmoid", ["b"], ["s"], name="act"),
             helper.make_node("MaxPool", ["s"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)]
    save(nodes, "tiny_cnn64", [x], [y], inits, 13)


def tiny_attn64():
    """Sequence model: MatMul+Add on 3-D input, LayerNorm, self-attention with
    Softmax, Erf GELU, ReduceMean over the sequence, Gemm head."""
    rng = np.random.default_rng(13)
    T, D = 3, 4
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", T, D])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2])
    inits = [numpy_helper.from_array(f64(rng, D, D), "emb.w"),
             numpy_helper.from_array(f64(rng, D), "emb.b"),
             numpy_helper.from_array(1.0 + f64(rng, D, scale=0.1), "ln.weight"),
             numpy_helper.from_array(f64(rng, D, scale=0.1), "ln.bias"),
             numpy_helper.from_array(f64(rng, D, D), "q.w"),
             numpy_helper.from_array(f64(rng, D, D), "k.w"),
             numpy_helper.from_array(np.array(0.5, dtype=np.float64), "half"),
             numpy_helper.from_array(np.array(1.0, dtype=np.float64), "one"),
             numpy_helper.from_array(np.array(np.sqrt(2.0), dtype=np.float64), "sqrt2"),
             numpy_helper.from_array(f64(rng, 2, D), "head.weight"),
             numpy_helper.from_array(f64(rng, 2), "head.bias")]
    nodes = [helper.make_node("MatMul", ["x", "emb.w"], ["e0"], name="emb"),
             helper.make_node("Add", ["e0", "emb.b"], ["e"], name="emb_bias"),
             helper.make_node("LayerNormalization", ["e", "ln.weight", "ln.bias"], ["n"], name="ln",
                              axis=-1),
             helper.make_node("MatMul", ["n", "q.w"], ["q"], name="q"),
             helper.make_node("MatMul", ["n", "k.w"], ["k"], name="k"),
             helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
             helper.make_node("Softmax", ["s"], ["att"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["att", "n"], ["ctx"], name="mix"),
             helper.make_node("Div", ["ctx", "sqrt2"], ["u"], name="gelu_div"),
             helper.make_node("Erf", ["u"], ["eu"], name="gelu_erf"),
             helper.make_node("Add", ["eu", "one"], ["eu1"], name="gelu_add"),
             helper.make_node("Mul", ["ctx", "eu1"], ["g0"], name="gelu_mul"),
             helper.make_node("Mul", ["g0", "half"], ["g"], name="gelu_half"),
             helper.make_node("ReduceMean", ["g"], ["m"], name="pool", axes=[1], keepdims=0),
             helper.make_node("Gemm", ["m", "head.weight", "head.bias"], ["y"], name="head",
                              transB=1)]
    save(nodes, "tiny_attn64", [x], [y], inits, 17)


def save(nodes, name, inputs, outputs, inits, opset, checked=True):
    """checked=False for opsets past the installed onnx's checker (1.12 knows 17)."""
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="curvscope-tools")
    model.ir_version = 8
    if checked:
        onnx.checker.check_model(model)
    onnx.save(model, "tests/models/%s.onnx" % name)


if __name__ == "__main__":
    tiny_mlp64()
    tiny_cnn64()
    tiny_attn64()


def tiny_linear64():
    """One Gemm layer in float64: with the mse loss the dataset loss is an
    exact quadratic in the parameters, so a Newton step lands on its minimum
    (the step-diagnostics tests rely on that)."""
    rng = np.random.default_rng(14)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])
    inits = [numpy_helper.from_array(f64(rng, 3, 4), "fc.weight"),
             numpy_helper.from_array(f64(rng, 3), "fc.bias")]
    nodes = [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)]
    save(nodes, "tiny_linear64", [x], [y], inits, 13)


if __name__ == "__main__":
    tiny_linear64()


# ---- tiny float64 models for the layer kinds embedding, prelu, instancenorm
# and groupnorm (interp/layers/); their curvature references come from
# tools/make_layer_curvature_fixtures.py ----

def tiny_embed64():
    """Embedding: the ids come from the (float) input as floor(sigmoid(x) V),
    so the data sets of the tests stay float; a Gather from the table E [V, D],
    Tanh, the mean over the T positions and a Gemm head."""
    rng = np.random.default_rng(15)
    T, V, D = 4, 6, 3
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", T])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2])
    inits = [numpy_helper.from_array(np.array(float(V), dtype=np.float64), "vocab"),
             numpy_helper.from_array(f64(rng, V, D, scale=1.0), "emb.weight"),
             numpy_helper.from_array(f64(rng, 2, D, scale=1.0), "head.weight"),
             numpy_helper.from_array(f64(rng, 2), "head.bias")]
    nodes = [helper.make_node("Sigmoid", ["x"], ["u"], name="squash"),
             helper.make_node("Mul", ["u", "vocab"], ["uv"], name="scale"),
             helper.make_node("Floor", ["uv"], ["fl"], name="floor"),
             helper.make_node("Cast", ["fl"], ["ids"], name="ids", to=TensorProto.INT64),
             helper.make_node("Gather", ["emb.weight", "ids"], ["e"], name="emb", axis=0),
             helper.make_node("Tanh", ["e"], ["a"], name="tanh"),
             helper.make_node("ReduceMean", ["a"], ["m"], name="pool", axes=[1], keepdims=0),
             helper.make_node("Gemm", ["m", "head.weight", "head.bias"], ["y"], name="head", transB=1)]
    save(nodes, "tiny_embed64", [x], [y], inits, 13)


def tiny_norm64():
    """Conv -> InstanceNormalization -> PRelu (slope [C, 1, 1]) ->
    GroupNormalization (opset 18: scale and bias per group) -> PRelu (slope
    [1]) -> Flatten -> Gemm."""
    rng = np.random.default_rng(16)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])
    inits = [numpy_helper.from_array(f64(rng, 4, 2, 1, 1), "conv.weight"),
             numpy_helper.from_array(f64(rng, 4), "conv.bias"),
             numpy_helper.from_array(1.0 + f64(rng, 4, scale=0.2), "in.weight"),
             numpy_helper.from_array(f64(rng, 4, scale=0.2), "in.bias"),
             numpy_helper.from_array(0.25 + f64(rng, 4, 1, 1, scale=0.1), "prelu1.weight"),
             numpy_helper.from_array(1.0 + f64(rng, 2, scale=0.2), "gn.weight"),
             numpy_helper.from_array(f64(rng, 2, scale=0.2), "gn.bias"),
             numpy_helper.from_array(0.25 + f64(rng, 1, scale=0.1), "prelu2.weight"),
             numpy_helper.from_array(f64(rng, 3, 36), "fc.weight"),
             numpy_helper.from_array(f64(rng, 3), "fc.bias")]
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv"),
             helper.make_node("InstanceNormalization", ["c", "in.weight", "in.bias"], ["i"], name="in"),
             helper.make_node("PRelu", ["i", "prelu1.weight"], ["p1"], name="prelu1"),
             helper.make_node("GroupNormalization", ["p1", "gn.weight", "gn.bias"], ["gn"], name="gn",
                              num_groups=2),
             helper.make_node("PRelu", ["gn", "prelu2.weight"], ["p2"], name="prelu2"),
             helper.make_node("Flatten", ["p2"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)]
    save(nodes, "tiny_norm64", [x], [y], inits, 18, checked=False)


def tiny_gn21_64():
    """GroupNormalization at opset 21: scale and bias per channel."""
    rng = np.random.default_rng(17)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2])
    inits = [numpy_helper.from_array(1.0 + f64(rng, 4, scale=0.2), "gn.weight"),
             numpy_helper.from_array(f64(rng, 4, scale=0.2), "gn.bias"),
             numpy_helper.from_array(f64(rng, 2, 16), "fc.weight"),
             numpy_helper.from_array(f64(rng, 2), "fc.bias")]
    nodes = [helper.make_node("GroupNormalization", ["x", "gn.weight", "gn.bias"], ["gn"], name="gn",
                              num_groups=2),
             helper.make_node("Tanh", ["gn"], ["a"], name="tanh"),
             helper.make_node("Flatten", ["a"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)]
    save(nodes, "tiny_gn21_64", [x], [y], inits, 21, checked=False)


def tiny_convt64():
    """A ConvTranspose layer (group 2, strides 2x1, asymmetric pads,
    output_padding, dilations 1x2, bias) feeding Tanh, global average
    pooling and a Gemm head, in float64: the layer kind's per-sample
    gradients, GGN block, diagonal and K-FAC factors are checked on it."""
    rng = np.random.default_rng(15)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4, 2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])
    inits = [numpy_helper.from_array(f64(rng, 4, 2, 3, 2), "up.weight"),  # [C, M/group, kh, kw]
             numpy_helper.from_array(f64(rng, 4), "up.bias"),
             numpy_helper.from_array(f64(rng, 3, 4, scale=1.0), "fc.weight"),
             numpy_helper.from_array(f64(rng, 3), "fc.bias")]
    nodes = [helper.make_node("ConvTranspose", ["x", "up.weight", "up.bias"], ["u"], name="up",
                              group=2, strides=[2, 1], pads=[1, 0, 0, 1], output_padding=[1, 0],
                              dilations=[1, 2]),                            # [N, 4, 5, 4]
             helper.make_node("Tanh", ["u"], ["a"], name="act"),
             helper.make_node("GlobalAveragePool", ["a"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)]
    save(nodes, "tiny_convt64", [x], [y], inits, 17)


if __name__ == "__main__":
    tiny_embed64()
    tiny_norm64()
    tiny_gn21_64()
    tiny_convt64()


def tiny_seqfirst64():
    """A MatMul layer over sequence-first activations [T, N, K] (the layout of
    nn.MultiheadAttention and nn.Transformer with batch_first=False): its
    samples are on axis 1 of its input, which the per-sample gradients must
    read there (cs_ad.batch_axis)."""
    rng = np.random.default_rng(19)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])
    inits = [numpy_helper.from_array(f64(rng, 4, 5, scale=1.0), "proj.weight"),  # [in, out]
             numpy_helper.from_array(f64(rng, 5), "proj.bias"),
             numpy_helper.from_array(f64(rng, 3, 5, scale=1.0), "head.weight"),
             numpy_helper.from_array(f64(rng, 3), "head.bias")]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], name="to_seq_first", perm=[1, 0, 2]),  # [T, N, K]
             helper.make_node("MatMul", ["xt", "proj.weight"], ["p"], name="proj"),
             helper.make_node("Add", ["p", "proj.bias"], ["pb"], name="proj_bias"),
             helper.make_node("Tanh", ["pb"], ["a"], name="tanh"),
             helper.make_node("ReduceMean", ["a"], ["m"], name="pool", axes=[0], keepdims=0),  # [N, 5]
             helper.make_node("Gemm", ["m", "head.weight", "head.bias"], ["y"], name="head", transB=1)]
    save(nodes, "tiny_seqfirst64", [x], [y], inits, 13)




# ---- tiny float64 models for the recurrent layer kinds rnn, gru and lstm
# (interp/layers/recurrent.c): test_autodiff checks their per-sample
# gradients (and the whole-model derivatives) by finite differences ----

def tiny_lstm64():
    """Bidirectional LSTM, layout 1 (batch first), with peepholes and initial
    states computed from the input (h0, c0 = reshaped projections of the mean
    over time: a per-sample state, as an initializer could not be); the head
    reads the mean of Y over time plus Y_c (Y_h unused)."""
    rng = np.random.default_rng(18)
    T, I, H, D = 3, 2, 2, 2
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", T, I])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])
    inits = [numpy_helper.from_array(f64(rng, I, D * H), "h0.w"),
             numpy_helper.from_array(f64(rng, I, D * H), "c0.w"),
             numpy_helper.from_array(np.array([-1, D, H], dtype=np.int64), "state_shape"),
             numpy_helper.from_array(f64(rng, D, 4 * H, I), "lstm.W"),
             numpy_helper.from_array(f64(rng, D, 4 * H, H), "lstm.R"),
             numpy_helper.from_array(f64(rng, D, 8 * H), "lstm.B"),
             numpy_helper.from_array(f64(rng, D, 3 * H), "lstm.P"),
             numpy_helper.from_array(f64(rng, 3, D * H, scale=1.0), "head.weight"),
             numpy_helper.from_array(f64(rng, 3), "head.bias")]
    nodes = [helper.make_node("ReduceMean", ["x"], ["xm"], name="xmean", axes=[1], keepdims=0),
             helper.make_node("MatMul", ["xm", "h0.w"], ["h0f"], name="h0"),
             helper.make_node("Tanh", ["h0f"], ["h0t"], name="h0_tanh"),
             helper.make_node("Reshape", ["h0t", "state_shape"], ["h0s"], name="h0_shape"),
             helper.make_node("MatMul", ["xm", "c0.w"], ["c0f"], name="c0"),
             helper.make_node("Reshape", ["c0f", "state_shape"], ["c0s"], name="c0_shape"),
             helper.make_node("LSTM", ["x", "lstm.W", "lstm.R", "lstm.B", "", "h0s", "c0s", "lstm.P"],
                              ["ys", "yh", "yc"], name="lstm", hidden_size=H, direction="bidirectional",
                              layout=1),
             helper.make_node("ReduceMean", ["ys"], ["ym"], name="ymean", axes=[1], keepdims=0),
             helper.make_node("Add", ["ym", "yc"], ["s"], name="mix"),
             helper.make_node("Flatten", ["s"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "head.weight", "head.bias"], ["y"], name="head", transB=1)]
    save(nodes, "tiny_lstm64", [x], [y], inits, 14)


def tiny_gru64():
    """Two GRUs, layout 0 (time first, after a Transpose): the first forward
    with linear_before_reset 0, its Y feeding the second, reverse with
    linear_before_reset 1, whose Y is omitted; the head reads the sum of
    both Y_h."""
    rng = np.random.default_rng(19)
    T, I, H = 3, 2, 2
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", T, I])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])
    inits = [numpy_helper.from_array(f64(rng, 1, 3 * H, I), "gru1.W"),
             numpy_helper.from_array(f64(rng, 1, 3 * H, H), "gru1.R"),
             numpy_helper.from_array(f64(rng, 1, 6 * H), "gru1.B"),
             numpy_helper.from_array(f64(rng, 1, 3 * H, H), "gru2.W"),
             numpy_helper.from_array(f64(rng, 1, 3 * H, H), "gru2.R"),
             numpy_helper.from_array(f64(rng, 1, 6 * H), "gru2.B"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
             numpy_helper.from_array(np.array([-1, H], dtype=np.int64), "flat_shape"),
             numpy_helper.from_array(f64(rng, 3, H, scale=1.0), "head.weight"),
             numpy_helper.from_array(f64(rng, 3), "head.bias")]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], name="time_first", perm=[1, 0, 2]),
             helper.make_node("GRU", ["xt", "gru1.W", "gru1.R", "gru1.B"], ["y1", "h1"], name="gru1",
                              hidden_size=H, linear_before_reset=0),
             helper.make_node("Squeeze", ["y1", "axis1"], ["y1s"], name="squeeze"),
             helper.make_node("GRU", ["y1s", "gru2.W", "gru2.R", "gru2.B"], ["", "h2"], name="gru2",
                              hidden_size=H, linear_before_reset=1, direction="reverse"),
             helper.make_node("Add", ["h1", "h2"], ["hs"], name="mix"),
             helper.make_node("Reshape", ["hs", "flat_shape"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "head.weight", "head.bias"], ["y"], name="head", transB=1)]
    save(nodes, "tiny_gru64", [x], [y], inits, 14)


def tiny_rnn64():
    """A plain RNN without biases, layout 1, direction reverse; the head reads
    all of Y."""
    rng = np.random.default_rng(20)
    T, I, H = 3, 2, 3
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", T, I])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2])
    inits = [numpy_helper.from_array(f64(rng, 1, H, I, scale=1.0), "rnn.W"),
             numpy_helper.from_array(f64(rng, 1, H, H), "rnn.R"),
             numpy_helper.from_array(f64(rng, 2, T * H), "head.weight"),
             numpy_helper.from_array(f64(rng, 2), "head.bias")]
    nodes = [helper.make_node("RNN", ["x", "rnn.W", "rnn.R"], ["ys"], name="rnn", hidden_size=H,
                              direction="reverse", layout=1),
             helper.make_node("Flatten", ["ys"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "head.weight", "head.bias"], ["y"], name="head", transB=1)]
    save(nodes, "tiny_rnn64", [x], [y], inits, 14)


def tiny_seq64():
    """The recurrent kinds' K-FAC model: a bidirectional LSTM without peepholes
    (layout 1), its Y reshaped to [N, T, 2 H] into a GRU with
    linear_before_reset 0 (layout 1), its Y squeezed into a reverse RNN with
    biases, whose Y_h feeds a Gemm head.  Reference curvature from
    tools/make_layer_curvature_fixtures.py."""
    rng = np.random.default_rng(21)
    T, I, H = 3, 2, 2
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", T, I])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])
    inits = [numpy_helper.from_array(f64(rng, 2, 4 * H, I), "lstm.W"),
             numpy_helper.from_array(f64(rng, 2, 4 * H, H), "lstm.R"),
             numpy_helper.from_array(f64(rng, 2, 8 * H), "lstm.B"),
             numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "seq_shape"),
             numpy_helper.from_array(f64(rng, 1, 3 * H, 2 * H), "gru.W"),
             numpy_helper.from_array(f64(rng, 1, 3 * H, H), "gru.R"),
             numpy_helper.from_array(f64(rng, 1, 6 * H), "gru.B"),
             numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
             numpy_helper.from_array(f64(rng, 1, H, H, scale=1.0), "rnn.W"),
             numpy_helper.from_array(f64(rng, 1, H, H), "rnn.R"),
             numpy_helper.from_array(f64(rng, 1, 2 * H), "rnn.B"),
             numpy_helper.from_array(f64(rng, 3, H, scale=1.0), "head.weight"),
             numpy_helper.from_array(f64(rng, 3), "head.bias")]
    nodes = [helper.make_node("LSTM", ["x", "lstm.W", "lstm.R", "lstm.B"], ["y1"], name="lstm", hidden_size=H,
                              direction="bidirectional", layout=1),
             helper.make_node("Reshape", ["y1", "seq_shape"], ["s1"], name="merge_dirs"),
             helper.make_node("GRU", ["s1", "gru.W", "gru.R", "gru.B"], ["y2"], name="gru", hidden_size=H,
                              layout=1),
             helper.make_node("Squeeze", ["y2", "axis2"], ["s2"], name="squeeze"),
             helper.make_node("RNN", ["s2", "rnn.W", "rnn.R", "rnn.B"], ["", "h3"], name="rnn", hidden_size=H,
                              direction="reverse", layout=1),
             helper.make_node("Flatten", ["h3"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "head.weight", "head.bias"], ["y"], name="head", transB=1)]
    save(nodes, "tiny_seq64", [x], [y], inits, 14)


if __name__ == "__main__":
    tiny_seqfirst64()
    tiny_lstm64()
    tiny_gru64()
    tiny_rnn64()
    tiny_seq64()


# ---- initializers that reach their layers through view nodes (an export
# without constant folding); interp/param_views.h folds them at bind ----

def tiny_views64():
    """in_proj.weight [6, 4] Split (rows 2 + 4) and each part Transposed into
    a MatMul over [N, T, 4], in_proj.bias [6] Sliced into the two Adds (as
    nn.MultiheadAttention's cross-attention exports), and a flat proj.w [8]
    Reshaped to [4, 2] into a third MatMul; Tanh, the mean over T and a
    Gemm head.  The parts are the layers' parameters."""
    rng = np.random.default_rng(22)
    T, D = 3, 4
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", T, D])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])
    inits = [numpy_helper.from_array(f64(rng, 6, D, scale=1.0), "in_proj.weight"),
             numpy_helper.from_array(f64(rng, 6), "in_proj.bias"),
             numpy_helper.from_array(f64(rng, 8, scale=1.0), "proj.w"),
             numpy_helper.from_array(np.array([2, 4], dtype=np.int64), "split_rows"),
             numpy_helper.from_array(np.array([D, 2], dtype=np.int64), "proj_shape"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "s0"),
             numpy_helper.from_array(np.array([2], dtype=np.int64), "s2"),
             numpy_helper.from_array(np.array([6], dtype=np.int64), "s6"),
             numpy_helper.from_array(f64(rng, 3, 8, scale=1.0), "head.weight"),
             numpy_helper.from_array(f64(rng, 3), "head.bias")]
    nodes = [helper.make_node("Split", ["in_proj.weight", "split_rows"], ["w_q", "w_kv"], name="split", axis=0),
             helper.make_node("Transpose", ["w_q"], ["w_qt"], name="t_q", perm=[1, 0]),
             helper.make_node("Transpose", ["w_kv"], ["w_kvt"], name="t_kv", perm=[1, 0]),
             helper.make_node("Slice", ["in_proj.bias", "s0", "s2"], ["b_q"], name="slice_bq"),
             helper.make_node("Slice", ["in_proj.bias", "s2", "s6"], ["b_kv"], name="slice_bkv"),
             helper.make_node("Reshape", ["proj.w", "proj_shape"], ["w_p"], name="reshape_p"),
             helper.make_node("MatMul", ["x", "w_qt"], ["q0"], name="q"),
             helper.make_node("Add", ["q0", "b_q"], ["q"], name="q_bias"),
             helper.make_node("MatMul", ["x", "w_kvt"], ["kv0"], name="kv"),
             helper.make_node("Add", ["kv0", "b_kv"], ["kv"], name="kv_bias"),
             helper.make_node("MatMul", ["x", "w_p"], ["p"], name="p"),
             helper.make_node("Concat", ["q", "kv", "p"], ["c"], name="concat", axis=-1),   # [N, T, 8]
             helper.make_node("Tanh", ["c"], ["a"], name="tanh"),
             helper.make_node("ReduceMean", ["a"], ["m"], name="pool", axes=[1], keepdims=0),
             helper.make_node("Gemm", ["m", "head.weight", "head.bias"], ["y"], name="head", transB=1)]
    save(nodes, "tiny_views64", [x], [y], inits, 13)


def views_not_folded():
    """Views that must stay as they are: w [6, 4] Sliced into rows 0:4 and
    2:6 (overlapping parts: one element in two layers), and v [4, 2] read
    both directly and Transposed."""
    rng = np.random.default_rng(23)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2])
    inits = [numpy_helper.from_array(f64(rng, 6, 4, scale=1.0), "w"),
             numpy_helper.from_array(f64(rng, 4, 4, scale=1.0), "v"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "s0"),
             numpy_helper.from_array(np.array([2], dtype=np.int64), "s2"),
             numpy_helper.from_array(np.array([4], dtype=np.int64), "s4"),
             numpy_helper.from_array(np.array([6], dtype=np.int64), "s6"),
             numpy_helper.from_array(f64(rng, 2, 16, scale=1.0), "head.weight")]
    nodes = [helper.make_node("Slice", ["w", "s0", "s4"], ["w_a"], name="slice_a"),
             helper.make_node("Slice", ["w", "s2", "s6"], ["w_b"], name="slice_b"),
             helper.make_node("MatMul", ["x", "w_a"], ["a"], name="a"),                # [N, 4]
             helper.make_node("MatMul", ["x", "w_b"], ["b"], name="b"),
             helper.make_node("Transpose", ["v"], ["vt"], name="t_v", perm=[1, 0]),
             helper.make_node("MatMul", ["x", "v"], ["c"], name="c"),
             helper.make_node("MatMul", ["x", "vt"], ["d"], name="d"),
             helper.make_node("Concat", ["a", "b", "c", "d"], ["e"], name="concat", axis=1),
             helper.make_node("Tanh", ["e"], ["t"], name="tanh"),
             helper.make_node("Gemm", ["t", "head.weight"], ["y"], name="head", transB=1)]
    save(nodes, "views_not_folded", [x], [y], inits, 13)


if __name__ == "__main__":
    tiny_views64()
    views_not_folded()
