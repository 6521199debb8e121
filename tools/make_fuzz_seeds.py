#!/usr/bin/python3
"""Write the hand-made seed inputs of the libFuzzer harnesses.

Run from the repository root: tools/make_fuzz_seeds.py
Needs nothing beyond the Python standard library: the ONNX messages are
encoded by hand (field numbers from schemas/onnx.proto), so each seed is a
minimal model of one operator family, small enough for the fuzzer to mutate
usefully.  Output is deterministic and committed under tests/fuzz/corpus/;
the real models and data files there are copies of tests/models and
tests/fixtures files.

The IDX and CSV harnesses read a mode byte first (see tests/fuzz/fuzz_idx.c
and fuzz_csv.c), so their seeds start with one.
"""
import gzip
import os
import shutil
import struct

ROOT = os.path.join("tests", "fuzz", "corpus")


# ---- protobuf wire format ----
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def f_varint(field, n):
    return varint(field << 3) + varint(n)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def f_float(field, x):
    return varint(field << 3 | 5) + struct.pack("<f", x)


# ---- ONNX messages ----
FLOAT, INT64 = 1, 7


def tensor(name, dims, dtype=FLOAT, values=None, raw=None, external=None):
    m = b"".join(f_varint(1, d) for d in dims) + f_varint(2, dtype) + f_bytes(8, name)
    if raw is not None:
        m += f_bytes(9, raw)
    elif external is not None:
        for k, v in external:
            m += f_bytes(13, f_bytes(1, k) + f_bytes(2, v))
        m += f_varint(14, 1)
    elif dtype == FLOAT:
        m += b"".join(f_float(4, v) for v in values)
    else:
        m += b"".join(f_varint(7, v) for v in values)
    return m


def value_info(name, dims, dtype=FLOAT):
    dim = b"".join(
        f_bytes(1, f_bytes(2, d) if isinstance(d, str) else f_varint(1, d)) for d in dims
    )
    return f_bytes(1, name) + f_bytes(2, f_bytes(1, f_varint(1, dtype) + f_bytes(2, dim)))


def attr(name, value):
    m = f_bytes(1, name)
    if isinstance(value, int):
        return m + f_varint(3, value) + f_varint(20, 2)
    if isinstance(value, float):
        return m + f_float(2, value) + f_varint(20, 1)
    if isinstance(value, str):
        return m + f_bytes(4, value) + f_varint(20, 3)
    if isinstance(value, bytes):  # an encoded TensorProto
        return m + f_bytes(5, value) + f_varint(20, 4)
    return m + b"".join(f_varint(8, v) for v in value) + f_varint(20, 7)


def node(op, inputs, outputs, **attrs):
    m = b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
    m += f_bytes(4, op)
    for k, v in attrs.items():
        m += f_bytes(5, attr(k, v))
    return m


def model(nodes, inputs, outputs, inits=(), opset=13):
    g = b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, "g")
    g += b"".join(f_bytes(5, t) for t in inits)
    g += b"".join(f_bytes(11, value_info(*i)) for i in inputs)
    g += b"".join(f_bytes(12, value_info(*o)) for o in outputs)
    return f_varint(1, 8) + f_bytes(8, f_bytes(1, "") + f_varint(2, opset)) + f_bytes(7, g)


def onnx_seeds():
    x = ("x", ["N", 2, 3])
    fl = [0.5, -1.0, 2.0, 0.25, -0.5, 1.5]
    yield "relu", model([node("Relu", ["x"], ["y"])], [x], [("y", ["N", 2, 3])])
    yield "gemm", model(
        [node("Gemm", ["x", "W", "b"], ["y"], transB=1)],
        [("x", ["N", 3])], [("y", ["N", 2])],
        [tensor("W", [2, 3], values=fl), tensor("b", [2], values=[0.1, 0.2])])
    yield "reshape", model(
        [node("Reshape", ["x", "s"], ["y"])], [x], [("y", ["N", 6])],
        [tensor("s", [2], INT64, [0, -1])])
    yield "gather", model(
        [node("Gather", ["W", "x"], ["y"], axis=0)],
        [("x", ["N", 2], INT64)], [("y", ["N", 2, 3])], [tensor("W", [2, 3], values=fl)])
    yield "slice", model(
        [node("Slice", ["x", "st", "en", "ax"], ["y"])], [x], [("y", ["N", 2, 2])],
        [tensor("st", [1], INT64, [1]), tensor("en", [1], INT64, [3]),
         tensor("ax", [1], INT64, [2])])
    yield "expand", model(
        [node("Expand", ["x", "s"], ["y"])], [("x", ["N", 1, 3])], [("y", ["N", 2, 3])],
        [tensor("s", [3], INT64, [1, 2, 3])])
    yield "constant_of_shape", model(
        [node("ConstantOfShape", ["s"], ["c"], value=tensor("v", [1], values=[1.0])),
         node("Add", ["x", "c"], ["y"])],
        [x], [("y", ["N", 2, 3])], [tensor("s", [2], INT64, [2, 3])])
    yield "conv", model(
        [node("Conv", ["x", "W"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], strides=[1, 1])],
        [("x", ["N", 1, 3, 3])], [("y", ["N", 1, 4, 4])],
        [tensor("W", [1, 1, 2, 2], values=fl[:4])])
    yield "maxpool", model(
        [node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[1, 1])],
        [("x", ["N", 1, 3, 3])], [("y", ["N", 1, 2, 2])])
    yield "transpose_concat", model(
        [node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
         node("Concat", ["t", "t"], ["y"], axis=1)],
        [x], [("y", ["N", 6, 2])])
    yield "reduce_softmax", model(
        [node("Softmax", ["x"], ["s"], axis=-1),
         node("ReduceSum", ["s", "ax"], ["y"], keepdims=0)],
        [x], [("y", ["N", 2])], [tensor("ax", [1], INT64, [2])])
    yield "pad_tile", model(
        [node("Pad", ["x", "p"], ["q"]), node("Tile", ["q", "r"], ["y"])],
        [x], [("y", ["N", 4, 10])],
        [tensor("p", [6], INT64, [0, 0, 1, 0, 1, 1]), tensor("r", [3], INT64, [1, 2, 2])])
    yield "matmul_raw", model(
        [node("MatMul", ["x", "W"], ["y"])], [x], [("y", ["N", 2, 2])],
        [tensor("W", [3, 2], raw=struct.pack("<6f", *fl))])
    yield "external", model(
        [node("Add", ["x", "W"], ["y"])], [x], [("y", ["N", 2, 3])],
        [tensor("W", [2, 3], external=[("location", "data.bin"), ("offset", "16"),
                                        ("length", "24")])])
    yield "split_lstm_free", model(
        [node("Split", ["x"], ["a", "b"], axis=1), node("Mul", ["a", "b"], ["y"])],
        [x], [("y", ["N", 1, 3])])


def write(harness, name, data):
    d = os.path.join(ROOT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy(harness, src):
    d = os.path.join(ROOT, harness)
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(src, os.path.join(d, os.path.basename(src)))


def npy(descr, shape, body, major=1):
    shape_s = "(" + "".join("%d, " % s for s in shape) + ")" if len(shape) != 1 else "(%d,)" % shape[0]
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_s)
    pre = 10 if major == 1 else 12
    h += " " * ((64 - (pre + len(h) + 1) % 64) % 64) + "\n"
    ln = struct.pack("<H", len(h)) if major == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([major, 0]) + ln + h.encode() + body


def idx(code, dims, body):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + body


def main():
    for name, data in onnx_seeds():
        write("onnx", name + ".onnx", data)
        write("forward", name + ".onnx", data)
    for m in ["tiny_mlp64", "tiny_cnn64", "tiny_attn64", "tiny_embed64", "tiny_norm64",
              "tiny_gn21_64", "tiny_convt64", "tiny_linear64", "shape_chain", "tiny_views64",
              "views_not_folded"]:
        copy("onnx", os.path.join("tests", "models", m + ".onnx"))
    # a real export whose weights reach their layers through view nodes
    # computed from static shapes (interp/param_views.h folds them at load)
    copy("onnx", os.path.join("tests", "zoo", "xattn_op13.onnx"))
    for m in ["tiny_mlp64", "tiny_cnn64", "tiny_convt64", "shape_chain", "tiny_views64"]:
        copy("forward", os.path.join("tests", "models", m + ".onnx"))

    write("npy", "f4_2x3.npy", npy("<f4", [2, 3], struct.pack("<6f", *range(6))))
    write("npy", "i8_4.npy", npy("<i8", [4], struct.pack("<4q", 1, 2, 3, 4)))
    write("npy", "u1_scalar.npy", npy("|u1", [], b"\x07"))
    write("npy", "f8_v2.npy", npy("<f8", [1, 2], struct.pack("<2d", 0.5, 1.5), major=2))
    write("npy", "f2_2.npy", npy("<f2", [2], b"\x00\x3c\x00\xc0"))
    write("npy", "b1_3.npy", npy("|b1", [3], b"\x01\x00\x01"))
    copy("npy", os.path.join("tests", "fixtures", "curv_tiny_mlp64_y.npy"))

    u8 = idx(0x08, [2, 2, 2], bytes(range(8)))
    f4 = idx(0x0D, [3], struct.pack(">3f", 1.0, -2.0, 0.5))
    write("idx", "u8_plain", b"\x00" + u8)
    write("idx", "u8_gzip_by_harness", b"\x01" + u8)
    write("idx", "u8_rows", b"\x02" + u8)
    write("idx", "f4_plain", b"\x00" + f4)
    write("idx", "f8_gz_file", b"\x00" + gzip.compress(idx(0x0E, [2], struct.pack(">2d", 1, 2)), mtime=0))
    write("idx", "i32_labels", b"\x00" + idx(0x0C, [3], struct.pack(">3i", 0, 1, 9)))

    write("csv", "header_label", b"\x06a,b,label\n1,2,0\n3.5,-4e2,1\n")
    write("csv", "plain", b"\x001,2,3\n4,5,6\n")
    write("csv", "labels_by_index", b"\x03x,y\n1,0\n2,1\n")
    write("csv", "quoted_crlf", b"\x04\"a\",\"b\"\r\n1,2\r\n")

    write("pb", "float_raw.pb", tensor("x", [2, 2], raw=struct.pack("<4f", 1, 2, 3, 4)))
    write("pb", "float_data.pb", tensor("x", [3], values=[0.5, 1.5, -2.0]))
    write("pb", "int64.pb", tensor("i", [2], INT64, [3, 7]))
    write("pb", "half_raw.pb", tensor("h", [2], 10, raw=b"\x00\x3c\x00\xc0"))
    write("pb", "scalar.pb", tensor("s", [], values=[2.0]))


if __name__ == "__main__":
    main()
