"""Rewrites of onnxruntime's dynamically quantized MatMul before an ONNX graph is walked.

onnxruntime.quantization.quantize_dynamic turns `MatMul(x, W)` into

    x_q, x_scale, x_zp = DynamicQuantizeLinear(x)          # uint8, range of the whole tensor
    acc = MatMulInteger(x_q, W_q, x_zp, W_zp)               # int32
    y = Mul(Cast(acc, float), Mul(x_scale, W_scale))

which is x_scale * (x_q - x_zp) @ (W_q - W_zp) * W_scale ~ x @ ((W_q - W_zp) * W_scale).
The engine keeps activations in float32, so the pattern becomes `MatMul(x, W)` with the
dequantized W (a float initializer; W_scale and W_zp per tensor or per output column),
which the importer then converts like any MatMul (a Linear, its bias Add folded in).
The difference from onnxruntime is the rounding of x to 256 levels, measured in
tests/test_corpus_tokens.py; it is the source's approximation of its float model.
"""
from __future__ import annotations

import numpy as np

__all__ = ["fold_dynamic_matmuls", "QUANTIZED_ACTIVATION_OPS"]

# Ops with which onnxruntime quantizes activations at run time: a graph holding one of
# them differs from the engine's float activations by that rounding (onnx_verify).
QUANTIZED_ACTIVATION_OPS = {"DynamicQuantizeLinear", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul",
                            "MatMulIntegerToFloat"}


def _constants(g) -> dict[str, np.ndarray]:
    from onnx import numpy_helper
    out = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = numpy_helper.to_array(a.t)
    return out


def _per_column(v: np.ndarray, N: int) -> bool:
    return v.size == 1 or (v.ndim == 1 and v.size == N)


def fold_dynamic_matmuls(model):
    """-> (model, notes): a copy of `model` with every DynamicQuantizeLinear -> MatMulInteger
    -> Cast -> Mul chain replaced by a float MatMul (the model itself when there is none)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    g = model.graph
    all_nodes = list(g.node)  # one wrapper object per node, so that id() is stable below
    if not any(n.op_type == "MatMulInteger" for n in all_nodes):
        return model, []
    consts = _constants(g)
    producer = {o: n for n in all_nodes for o in n.output if o}
    consumers: dict[str, list] = {}
    for n in all_nodes:
        for x in n.input:
            if x:
                consumers.setdefault(x, []).append(n)
    graph_outputs = {o.name for o in g.output}

    def only_consumer(v: str, op_type: str):
        cs = consumers.get(v, [])
        if len(cs) == 1 and cs[0].op_type == op_type and v not in graph_outputs:
            return cs[0]
        return None

    remove, add, inits, notes = set(), {}, [], []
    for mm in all_nodes:
        if mm.op_type != "MatMulInteger" or mm.domain not in ("", "ai.onnx"):
            continue
        ins = list(mm.input) + [""] * (4 - len(mm.input))
        dq = producer.get(ins[0])
        if dq is None or dq.op_type != "DynamicQuantizeLinear" or ins[0] != dq.output[0]:
            continue
        if ins[2] not in ("", dq.output[2]) or ins[1] not in consts or (ins[3] and ins[3] not in consts):
            continue
        cast = only_consumer(mm.output[0], "Cast")
        to = next((a.i for a in cast.attribute if a.name == "to"), None) if cast else None
        mul = only_consumer(cast.output[0], "Mul") if to == TensorProto.FLOAT else None
        if mul is None:
            continue
        other = mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0]
        w_scale = np.ones(1)
        if other != dq.output[1]:
            sm = producer.get(other)
            if sm is None or sm.op_type != "Mul" or dq.output[1] not in sm.input:
                continue
            c = sm.input[1] if sm.input[0] == dq.output[1] else sm.input[0]
            if c not in consts:
                continue
            w_scale = consts[c].astype(np.float64)
        Wq = consts[ins[1]]
        if Wq.ndim != 2:
            continue
        N = Wq.shape[1]
        w_zp = consts[ins[3]].astype(np.int64) if ins[3] else np.zeros(1, np.int64)
        if not (_per_column(w_scale, N) and _per_column(w_zp, N)):
            continue
        W = (Wq.astype(np.float64) - w_zp.reshape(-1)) * w_scale.reshape(-1)
        name = f"{mul.output[0]}__dequantized_weight"
        inits.append(numpy_helper.from_array(W.astype(np.float32), name))
        add[id(mul)] = helper.make_node("MatMul", [dq.input[0], name], [mul.output[0]],
                                        name=(mm.name or "matmul_integer") + "_float")
        remove.update({id(mm), id(cast), id(mul)})
        notes.append(f"MatMulInteger {mm.name!r} on DynamicQuantizeLinear activations became a "
                     f"float MatMul with dequantized weights {Wq.shape} (the engine does not round "
                     "activations to uint8 as onnxruntime does)")
    if not add:
        return model, []
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = []
    for n in all_nodes:
        if id(n) in add:
            nodes.append(add[id(n)])
        elif id(n) not in remove:
            nodes.append(n)
    nodes = _drop_dead(nodes, graph_outputs)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(inits)
    return m, notes


def _drop_dead(nodes: list, graph_outputs: set) -> list:
    """Remove the DynamicQuantizeLinear nodes (and the scale Muls) left without readers."""
    while True:
        used = {x for n in nodes for x in n.input if x} | graph_outputs
        dead = [n for n in nodes if n.op_type in ("DynamicQuantizeLinear", "Mul")
                and not any(o in used for o in n.output if o)]
        if not dead:
            return nodes
        ids = {id(n) for n in dead}
        nodes = [n for n in nodes if id(n) not in ids]
