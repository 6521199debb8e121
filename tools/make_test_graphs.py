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
