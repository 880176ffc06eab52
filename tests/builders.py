"""Random-weight models built with GraphBuilder, for runtime tests (no torch needed)."""
from __future__ import annotations

import numpy as np

from converters.layout import recurrent_shapes
from lstm_infer.builder import GraphBuilder


def _u(rng, shape, scale):
    """PyTorch-like init U(-scale, scale): unit-scale data gives unit-scale activations."""
    return rng.uniform(-scale, scale, size=shape).astype(np.float32)


def add_recurrent(b: GraphBuilder, rng, op: str, name: str, x: str, I: int, H: int, *,
                  proj: int = 0, bias: bool = True, reverse: bool = False, lbr: bool = True,
                  nonlinearity: str = "tanh", init_state: bool = False) -> str:
    """One recurrent node with random weights drawn directly in the IR layout
    (`converters.layout.recurrent_shapes`: W_ih (I, G*H), W_hh (R, G*H), ...)."""
    s = 1 / np.sqrt(H)
    shapes = recurrent_shapes(op, I, H, proj if op == "LSTM" else 0)
    w = {"W_ih": _u(rng, shapes["W_ih"], s), "W_hh": _u(rng, shapes["W_hh"], s)}
    if op == "GRU":  # GRU keeps b_ih and b_hh apart
        w["b_ih"] = _u(rng, shapes["b_ih"], s) if bias else None
        w["b_hh"] = _u(rng, shapes["b_hh"], s) if bias else None
    else:  # one folded bias b_ih + b_hh: twice the range of each
        w["bias"] = _u(rng, shapes["bias"], 2 * s) if bias else None
    if op == "LSTM":
        w["W_hr"] = _u(rng, shapes["W_hr"], s) if proj else None
    w["h0"] = _u(rng, shapes["h0"], 0.5) if init_state else None
    if op == "LSTM":
        w["c0"] = _u(rng, shapes["c0"], 0.5) if init_state else None
        attrs = {"input_size": I, "hidden_size": H, "proj_size": proj, "reverse": reverse}
    elif op == "GRU":
        attrs = {"input_size": I, "hidden_size": H, "linear_before_reset": lbr, "reverse": reverse}
    else:
        attrs = {"input_size": I, "hidden_size": H, "nonlinearity": nonlinearity, "reverse": reverse}
    return b.add(op, name, [x], attrs, w)


def stacked(path, op: str = "LSTM", I: int = 3, H: int = 5, layers: int = 1, out: int = 2,
            seed: int = 0, head: bool = True, bidirectional: bool = False, **kw) -> dict:
    """A stack of recurrent layers (+ Linear head); returns the graph document and tensors."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("x", I)
    v, size = "x", I
    for layer in range(layers):
        fwd = add_recurrent(b, rng, op, f"{op.lower()}{layer}", v, size, H, **kw)
        width = kw.get("proj") or H
        if bidirectional:
            bwd = add_recurrent(b, rng, op, f"{op.lower()}{layer}_reverse", v, size, H,
                                reverse=True, **kw)
            v = b.add("Concat", f"cat{layer}", [fwd, bwd], {"sizes": [width, width]})
            width *= 2
        else:
            v = fwd
        size = width
    if head:
        v = b.add("Linear", "fc", [v], {"in_features": size, "out_features": out},
                  {"W": _u(rng, (size, out), 1 / np.sqrt(size)), "bias": _u(rng, (out,), 0.1)})
    b.output(v)
    b.save(path)
    return {"doc": b.document(), "tensors": b.tensors}
