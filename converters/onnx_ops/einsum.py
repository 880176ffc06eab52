"""Einsum of a per-step tensor with a constant weight -> `Linear` (grouped where it can).

Exporters write grouped / batched linears as Einsum (DeepFilterNet's `btgi,gih->btgh`).
Any two-operand Einsum that is linear in the per-step tensor, keeps its time and batch
axes as they are and contracts only feature axes is one linear map of the per-step
vector: its matrix is the Einsum applied to the identity. When a label is shared by the
data's feature axes, the weight and the output (the group axis g above), that matrix is
block-diagonal and becomes a grouped Linear (G blocks instead of a dense G x G matrix:
G times fewer multiply-adds per step).
"""
from __future__ import annotations

import numpy as np

from ..onnx_graph import OnnxConversionError, OnnxValue
from ..onnx_sym import AxisError, Dyn, transpose
from .common import is_val, to_dyn
from .registry import op

MAX_WEIGHTS = 1 << 22  # floats in one Einsum's matrix: larger is not a real per-step linear


def _parse(equation: str, n_operands: int) -> tuple[list[str], str]:
    eq = equation.replace(" ", "")
    if "." in eq:
        raise OnnxConversionError(f"Einsum equation {equation!r}: ellipsis ('...') is not "
                                  "supported; write the axes out")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != n_operands:
        raise OnnxConversionError(f"Einsum equation {equation!r} has {len(terms)} operands, "
                                  f"the node {n_operands}")
    if not arrow:  # implicit output: the labels used once, in alphabetical order
        out = "".join(sorted(c for c in set(lhs) - {","} if lhs.count(c) == 1))
    for term in terms + [out]:
        if len(set(term)) != len(term):
            raise OnnxConversionError(f"Einsum equation {equation!r}: a repeated label within "
                                      "one operand (a diagonal) is not supported")
    return terms, out


@op("Einsum")
def _einsum(ctx, node, ins, a):
    equation = a.get("equation", "")
    if len(ins) != 2 or is_val(ins[0]) == is_val(ins[1]):
        raise OnnxConversionError(
            f"Einsum {equation!r} with {len(ins)} operands: supported is one per-step tensor "
            "and one constant weight (a linear map of each time step)")
    terms, out = _parse(equation, 2)
    data_first = is_val(ins[0])
    d = to_dyn(ins[0] if data_first else ins[1])
    W = np.asarray(ins[1] if data_first else ins[0], np.float64)
    dl, wl = (terms[0], terms[1]) if data_first else (terms[1], terms[0])
    if len(dl) != d.rank or len(wl) != W.ndim:
        raise OnnxConversionError(f"Einsum {equation!r}: operand ranks {d.rank} and {W.ndim} do "
                                  "not match the equation")
    size: dict[str, int] = {}
    steps = []  # labels of time/batch axes: they must pass through unchanged
    for k, label in enumerate(dl):
        if d.is_feature_axis(k):
            size[label] = d.fshape[k]
            continue
        if label not in out or label in wl or d.fshape[k] != 1:
            raise AxisError(f"Einsum {equation!r} mixes axis {k} of {d.describe()}, which holds "
                            "time/batch, with the weight (only feature axes may be contracted)")
        steps.append(label)
    for label, n in zip(wl, W.shape):
        if size.setdefault(label, n) != n:
            raise OnnxConversionError(f"Einsum {equation!r}: label {label!r} is {size[label]} "
                                      f"in the data and {n} in the weight")
    if any(c not in size and c not in steps for c in out):
        raise OnnxConversionError(f"Einsum {equation!r}: an output label appears in no operand")
    feat_in = [dl[k] for k in range(d.rank) if d.is_feature_axis(k)]
    feat_out = [c for c in out if c not in steps]
    shared = [c for c in feat_in if c in wl and c in feat_out and size[c] > 1]
    g = shared[0] if shared else None
    G = size[g] if g else 1
    rest_in = [c for c in feat_in if c != g]
    rest_out = [c for c in feat_out if c != g]
    n_in = int(np.prod([size[c] for c in rest_in], dtype=np.int64))
    n_out = int(np.prod([size[c] for c in rest_out], dtype=np.int64))
    if n_in * n_out * G > MAX_WEIGHTS:
        raise OnnxConversionError(f"Einsum {equation!r}: a {G * n_in}x{G * n_out} per-step "
                                  "linear map is too large")
    # The matrix of each group: the Einsum applied to the identity of its inputs.
    eye = np.eye(n_in).reshape([n_in] + [size[c] for c in rest_in])
    w_terms = "".join(wl)
    blocks = []
    for gi in range(G):
        Wg = W if g is None else np.take(W, [gi], axis=wl.index(g))
        blocks.append(np.einsum(f"z{''.join(rest_in)},{w_terms}->z{''.join(rest_out)}",
                                eye, Wg).reshape(n_in, n_out))
    matrix = np.concatenate(blocks, axis=1).astype(np.float32)  # (n_in, G * n_out)
    # Per-step input laid out group-major: [g, rest_in...] (time/batch axes first, size 1).
    order = [k for k in range(d.rank) if not d.is_feature_axis(k)]
    order += ([dl.index(g)] if g else []) + [dl.index(c) for c in rest_in]
    t = ctx.as_data(transpose(d, order))
    attrs = {"in_features": G * n_in, "out_features": G * n_out}
    if G > 1:
        attrs["groups"] = G
    v = ctx.emit("Linear", node.name or "einsum", [t.ref], attrs, {"W": matrix})
    readout = ctx.mixed_readout(t, G * n_out, "Einsum")
    # Output elements come out as [g, rest_out...]; arrange them in the equation's order.
    idx = np.arange(G * n_out, dtype=np.int64).reshape([G] + [size[c] for c in rest_out])
    held = [g] + rest_out if g else rest_out
    if not g:
        idx = idx[0]
    idx = idx.transpose([held.index(c) for c in feat_out])
    axes = []
    for p, c in enumerate(out):
        if c in steps:
            idx = np.expand_dims(idx, p)
            axes.append(d.axes[dl.index(c)])
        else:
            axes.append(("F",) if size[c] > 1 else ())
    return [OnnxValue(Dyn("data", v, idx, axes, readout))]
