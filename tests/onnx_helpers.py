"""Shared helpers for the ONNX importer tests: tiny models built with onnx.helper, and a
check that converts one and compares it with onnxruntime (whole sequence and streamed)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import lstm_infer
from converters.onnx_import import convert_onnx
from converters.onnx_verify import verify_model

TOL = 1e-5


def vi(name: str, dims: list, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, dims)


def init(name: str, arr) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def make_model(nodes, inputs, outputs, inits=(), opset: int = 17, producer: str = "test"):
    g = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer)
    m.ir_version = 8 if opset <= 17 else 10
    return m


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def check(model, tmp_path, fix=None, state=None, tol: float = TOL, stream: bool = True, T: int = 6,
          B: int = 2, name: str = "m.lstm", rel_tol: float | None = None, long_t: int | None = 64):
    """Convert, verify against onnxruntime (at T and at long_t steps); returns (model, report)."""
    path = tmp_path / name
    rep = convert_onnx(model, path, verify=False, fix=fix, state=state)
    m = lstm_infer.load(path)
    v = verify_model(m, model, fix=fix, T=T, B=B, long_t=long_t)
    if rel_tol is None:
        assert v.max_abs_error <= tol, f"{v}\n{m}"
    else:  # outputs far from unit scale (unbounded gate functions): relative error
        rels = list(v.run_max_rel.values()) + list(v.stream_max_rel.values())
        assert v.max_abs_error <= tol or max(rels) <= rel_tol, f"{v}\n{m}"
    assert set(v.run_max_abs) >= {e["name"] for e in m.provenance["onnx"]["outputs"]}
    if stream:
        assert m.streamable and v.stream_max_abs, f"expected a streamable model:\n{m}"
    return m, v, rep


def single_op(op_type: str, x_dims: list, attrs: dict | None = None, extra_inputs=(), inits=(),
              out_name: str = "y", opset: int = 17, n_out: int = 1):
    """x -> op -> y, with x a graph input of dims x_dims and constants as initializers."""
    names = ["x"] + [n for n in extra_inputs]
    outs = [out_name] + [f"{out_name}{k}" for k in range(1, n_out)]
    node = helper.make_node(op_type, names, outs, name=f"the_{op_type.lower()}", **(attrs or {}))
    return make_model([node], [vi("x", x_dims)], [vi(o, None) for o in outs], inits, opset=opset)
