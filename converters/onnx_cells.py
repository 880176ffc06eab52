"""Recognise the step of an unrolled recurrence as an LSTM, GRU or RNN cell, numerically.

`onnx_unroll` finds the repeated per-step subgraph (the *template*: one copy, with x_t and
the state values as inputs); this module tells which standard cell it computes and reads
off its weights, in ONNX's own LSTM/GRU/RNN layout. It does not pattern-match the nodes:
exporters write the same cell in many ways (Gemm or MatMul+Add, one fused matrix cut by
Split or four, the input projection hoisted out of the loop...). Instead it evaluates the
template in float64 (onnx's reference evaluator) with chosen inputs:

* a gate's pre-activation (the input of a Sigmoid/Tanh/Relu node) must be exactly affine in
  (x_t, h): probing with zero and unit vectors gives its matrices and bias, and two random
  points check that the affine form reproduces it (relative error <= 1e-9);
* the activations' outputs are then cut (fed as free inputs) and the state update must be
  the cell's formula (c' = f*c + i*g and h' = o*tanh(c'); h' = (1-z)*n + z*h; h' = act(p))
  at random points, for one assignment of the gates' roles.

Probing in float64 keeps the weights exact to ~1e-16 relative instead of the ~1e-7 of
fp32 differences, so the folded model agrees with the source as tightly as a converted
ONNX LSTM does.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .errors import ConversionError, OnnxConversionError

ACTIVATIONS = ("Sigmoid", "Tanh", "Relu")
_FLOAT, _DOUBLE = 1, 11
_RTOL = 1e-9


@dataclass
class Cell:
    """A recognised cell in ONNX layout (one direction): W (G*H, I), R (G*H, H), B (2*G*H)."""
    kind: str                 # "LSTM" | "GRU" | "RNN"
    W: np.ndarray
    R: np.ndarray
    B: np.ndarray
    h_slot: int               # which state slot is h (index into the template's slots)
    c_slot: int | None = None
    attrs: dict = field(default_factory=dict)


class Evaluator:
    """Evaluates a set of nodes of a model in float64, from chosen input values to chosen
    outputs (anything upstream of the inputs is cut away)."""

    def __init__(self, model, nodes: list, inputs: list[str], outputs: list[str]):
        import onnx
        from onnx import helper, numpy_helper
        from onnx.reference import ReferenceEvaluator
        producer = {o: n for n in nodes for o in n.output}
        inits = {t.name: t for t in model.graph.initializer}
        need, todo, seen = [], list(outputs), set(inputs)
        while todo:
            v = todo.pop()
            if v in seen or not v:
                continue
            seen.add(v)
            if v in producer:
                n = producer[v]
                if n not in need:
                    need.append(n)
                todo.extend(n.input)
            elif v not in inits:
                raise ConversionError(
                    f"the unrolled recurrence's step reads the graph input {v!r} directly (an "
                    "initial state, or data besides the step's own slice): only recurrences that "
                    "start from a zero state and read one slice of the sequence per step fold")
        order = {id(n): k for k, n in enumerate(nodes)}
        need.sort(key=lambda n: order[id(n)])
        used = {v for n in need for v in n.input} | set(outputs)
        new_inits = []
        for name in used - set(inputs):
            if name in inits:
                arr = numpy_helper.to_array(inits[name])
                if arr.dtype == np.float32:
                    arr = arr.astype(np.float64)
                new_inits.append(numpy_helper.from_array(arr, name))
        new_nodes = [_to_double(n) for n in need]
        vi = [helper.make_tensor_value_info(v, _DOUBLE, None) for v in inputs]
        vo = [helper.make_tensor_value_info(v, 0, None) for v in outputs]
        g = helper.make_graph(new_nodes, "step", vi, vo, new_inits)
        m = helper.make_model(g, opset_imports=model.opset_import)
        m.ir_version = model.ir_version
        self.inputs, self.outputs = list(inputs), list(outputs)
        self._ev = ReferenceEvaluator(m)
        del onnx

    def __call__(self, feeds: dict) -> list[np.ndarray]:
        return [np.asarray(r, np.float64) for r in self._ev.run(None, {
            k: np.asarray(v, np.float64) for k, v in feeds.items()})]


def _to_double(node):
    """A copy of `node` computing in float64 where it would compute in float32."""
    from onnx import helper, numpy_helper
    n = type(node)()
    n.CopyFrom(node)
    for a in n.attribute:
        if n.op_type == "Cast" and a.name == "to" and a.i == _FLOAT:
            a.i = _DOUBLE
        if a.type == a.TENSOR and a.t.data_type == _FLOAT:
            a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float64),
                                                 a.t.name))
    del helper
    return n


class Probe:
    """A function of flat float64 vectors evaluated through an Evaluator."""

    def __init__(self, ev: Evaluator, shapes: dict, fixed: dict | None = None):
        self.ev, self.shapes, self.fixed = ev, shapes, dict(fixed or {})

    def __call__(self, **vals) -> list[np.ndarray]:
        feeds = dict(self.fixed)
        for name in self.ev.inputs:
            if name not in feeds:
                v = vals.get(name)
                feeds[name] = (np.zeros(self.shapes[name]) if v is None
                               else np.asarray(v, np.float64).reshape(self.shapes[name]))
        return [r.reshape(-1) for r in self.ev(feeds)]


def affine(fn, names: list[str], sizes: list[int], out: int, rng) -> tuple[list, np.ndarray] | None:
    """Matrices M_k (size_k, n) and bias b with fn(v) = b + sum v_k @ M_k, or None when
    fn is not affine (checked at two random points)."""
    b = fn()[out]
    mats = []
    for name, d in zip(names, sizes):
        M = np.empty((d, b.size))
        for j in range(d):
            e = np.zeros(d)
            e[j] = 1.0
            M[j] = fn(**{name: e})[out] - b
        mats.append(M)
    for _ in range(2):
        v = {name: rng.standard_normal(d) for name, d in zip(names, sizes)}
        got = fn(**v)[out]
        pred = b + sum(v[name] @ M for name, M in zip(names, mats))
        if not _close(got, pred):
            return None
    return mats, b


def _close(a, b) -> bool:
    scale = max(1.0, float(np.max(np.abs(b))) if np.size(b) else 1.0)
    return bool(np.size(a) == np.size(b) and np.max(np.abs(a - b), initial=0.0) <= _RTOL * scale)


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def recognise(model, nodes: list, x: str, slots: list[tuple[str, str]], acts: list,
              shapes: dict, describe: str) -> Cell:
    """The cell computed by the template `nodes`: input x, state slots [(in, out)], `acts`
    the activation nodes on the path to the state outputs; `shapes` per value name."""
    rng = np.random.default_rng(0)
    kinds = sorted(a.op_type for a in acts)
    k = len(slots)
    form = (f"{describe}: a recurrence with {k} state tensor(s) of sizes "
            f"{[int(np.prod(shapes[s[0]])) for s in slots]} and activations {kinds}")
    try:
        if k == 1 and kinds in (["Tanh"], ["Relu"]):
            return _rnn(model, nodes, x, slots, acts[0], shapes, rng)
        if k == 1 and kinds == ["Sigmoid", "Sigmoid", "Tanh"]:
            return _gru(model, nodes, x, slots, acts, shapes, rng)
        if k == 2 and kinds == ["Sigmoid", "Sigmoid", "Sigmoid", "Tanh", "Tanh"]:
            return _lstm(model, nodes, x, slots, acts, shapes, rng)
    except OnnxConversionError as e:
        form += f" ({e})"
    raise ConversionError(f"{form}, which is not an LSTM (without peepholes), GRU or RNN "
                          "(tanh/relu) cell: only those cell forms fold back into a streaming "
                          "model")


def _gate_maps(model, nodes, x, hs: list[str], acts, shapes, rng) -> list:
    """For each activation: (Mx, [Mh...], b) of its pre-activation in (x, *hs), or None."""
    ev = Evaluator(model, nodes, [x] + hs, [a.input[0] for a in acts])
    fn = Probe(ev, shapes)
    sizes = [int(np.prod(shapes[v])) for v in [x] + hs]
    return [affine(fn, [x] + hs, sizes, k, rng) for k in range(len(acts))]


def _rnn(model, nodes, x, slots, act, shapes, rng) -> Cell:
    h_in, h_out = slots[0]
    g = _gate_maps(model, nodes, x, [h_in], [act], shapes, rng)[0]
    if g is None:
        raise OnnxConversionError(f"the input of {act.op_type} is not affine in (x_t, h)")
    (Mx, Mh), b = g
    ev = Evaluator(model, nodes, [x, h_in], [h_out])
    fn = Probe(ev, shapes)
    I, H = Mx.shape[0], Mh.shape[0]
    xv, hv = rng.standard_normal(I), rng.standard_normal(H)
    pre = xv @ Mx + hv @ Mh + b
    want = np.tanh(pre) if act.op_type == "Tanh" else np.maximum(pre, 0.0)
    if not _close(fn(**{x: xv, h_in: hv})[0], want):
        raise OnnxConversionError(f"the new state is not {act.op_type} of that pre-activation")
    return Cell("RNN", Mx.T.copy(), Mh.T.copy(), np.concatenate([b, np.zeros_like(b)]), 0,
                attrs={"activations": [act.op_type]})


def _gru(model, nodes, x, slots, acts, shapes, rng) -> Cell:
    h_in, h_out = slots[0]
    sig = [a for a in acts if a.op_type == "Sigmoid"]
    tanh = next(a for a in acts if a.op_type == "Tanh")
    maps = _gate_maps(model, nodes, x, [h_in], sig, shapes, rng)
    if any(m is None for m in maps):
        raise OnnxConversionError("a Sigmoid's input is not affine in (x_t, h)")
    H = int(np.prod(shapes[h_in]))
    # roles: h' = (1-z)*n + z*h with the activations cut
    ev = Evaluator(model, nodes, [x, h_in] + [s.output[0] for s in sig] + [tanh.output[0]], [h_out])
    fn = Probe(ev, {**shapes, **{a.output[0]: shapes[a.input[0]] for a in acts}})
    v = [rng.uniform(0.05, 0.95, H) for _ in sig]
    nv, hv = rng.uniform(-1, 1, H), rng.standard_normal(H)
    got = fn(**{h_in: hv, tanh.output[0]: nv, sig[0].output[0]: v[0], sig[1].output[0]: v[1]})[0]
    zi = next((k for k in (0, 1) if _close(got, (1 - v[k]) * nv + v[k] * hv)), None)
    if zi is None:
        raise OnnxConversionError("the new state is not (1-z)*n + z*h")
    r = sig[1 - zi]
    (Mxz, Mhz), bz = maps[zi]
    (Mxr, Mhr), br = maps[1 - zi]
    # candidate n: its pre-activation with r cut, at r = 0 and r = 1
    ev = Evaluator(model, nodes, [x, h_in, r.output[0]], [tanh.input[0]])
    pshapes = {**shapes, r.output[0]: shapes[r.input[0]]}
    at0 = affine(Probe(ev, pshapes, {r.output[0]: np.zeros(shapes[r.input[0]])}),
                 [x, h_in], [Mxz.shape[0], H], 0, rng)
    at1 = affine(Probe(ev, pshapes, {r.output[0]: np.ones(shapes[r.input[0]])}),
                 [x, h_in], [Mxz.shape[0], H], 0, rng)
    if at0 is None or at1 is None:
        raise OnnxConversionError("the candidate state's pre-activation is not affine in (x_t, h) for fixed r")
    (Mxn, Mh0), bw = at0
    (Mxn1, Rn), b1 = at1
    if not (_close(Mh0, 0 * Mh0) and _close(Mxn1, Mxn)):
        raise OnnxConversionError("the reset gate does not act on the hidden state alone")
    fn = Probe(ev, pshapes)
    xv, hv, rv = rng.standard_normal(Mxn.shape[0]), rng.standard_normal(H), rng.uniform(0, 1, H)
    got = fn(**{x: xv, h_in: hv, r.output[0]: rv})[0]
    if _close(got, xv @ Mxn + bw + rv * (hv @ Rn + (b1 - bw))):
        lbr, brn = 1, b1 - bw
    elif _close(b1, bw) and _close(got, xv @ Mxn + (rv * hv) @ Rn + bw):
        lbr, brn = 0, np.zeros(H)
    else:
        raise OnnxConversionError("the reset gate is applied neither before nor after the recurrent matrix")
    W = np.concatenate([Mxz.T, Mxr.T, Mxn.T])
    R = np.concatenate([Mhz.T, Mhr.T, Rn.T])
    B = np.concatenate([bz, br, bw, np.zeros(2 * H), brn])
    return Cell("GRU", W, R, B, 0, attrs={"linear_before_reset": lbr})


def _lstm(model, nodes, x, slots, acts, shapes, rng) -> Cell:
    ins = [s[0] for s in slots]
    maps = _gate_maps(model, nodes, x, ins, acts, shapes, rng)
    gates = [(a, m) for a, m in zip(acts, maps) if m is not None]
    if sorted(a.op_type for a, _ in gates) != ["Sigmoid", "Sigmoid", "Sigmoid", "Tanh"]:
        raise OnnxConversionError("no three Sigmoid gates and one Tanh candidate affine in (x_t, h)")
    # c is the slot no gate reads (no peepholes)
    free = [k for k in (0, 1) if all(_close(m[0][1 + k], 0 * m[0][1 + k]) for _, m in gates)]
    if not free:
        raise OnnxConversionError("every state slot feeds the gates (peepholes?), none is the cell state")
    ci = free[-1]
    hi = 1 - ci
    H = int(np.prod(shapes[ins[hi]]))
    sig = [a for a, _ in gates if a.op_type == "Sigmoid"]
    g = next(a for a, _ in gates if a.op_type == "Tanh")
    cut = [a.output[0] for a in sig] + [g.output[0]]
    ev = Evaluator(model, nodes, [x] + ins + cut, [slots[ci][1], slots[hi][1]])
    fn = Probe(ev, {**shapes, **{a.output[0]: shapes[a.input[0]] for a in sig + [g]}})
    sv = [rng.uniform(0.05, 0.95, H) for _ in sig]
    gv, cv = rng.uniform(-1, 1, H), rng.standard_normal(H)
    c_new, h_new = fn(**{ins[ci]: cv, g.output[0]: gv, **{a.output[0]: v for a, v in zip(sig, sv)}})
    role = None
    for i, f, o in itertools.permutations(range(3)):
        want_c = sv[f] * cv + sv[i] * gv
        if _close(c_new, want_c) and _close(h_new, sv[o] * np.tanh(want_c)):
            role = (i, f, o)
            break
    if role is None:
        raise OnnxConversionError("the state update is not c' = f*c + i*g, h' = o*tanh(c')")
    by = {id(a): m for a, m in gates}
    order = [sig[role[0]], sig[role[2]], sig[role[1]], g]        # ONNX gate order i, o, f, c
    W = np.concatenate([by[id(a)][0][0].T for a in order])
    R = np.concatenate([by[id(a)][0][1 + hi].T for a in order])
    B = np.concatenate([np.concatenate([by[id(a)][1] for a in order]), np.zeros(4 * H)])
    return Cell("LSTM", W, R, B, hi, ci)
