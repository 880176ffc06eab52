"""Random-weight models built with GraphBuilder, for runtime tests (no torch needed)."""
from __future__ import annotations

import numpy as np

from lstm_infer.builder import GraphBuilder


def _u(rng, shape, scale):
    """PyTorch-like init U(-scale, scale): unit-scale data gives unit-scale activations."""
    return rng.uniform(-scale, scale, size=shape).astype(np.float32)


def add_recurrent(b: GraphBuilder, rng, op: str, name: str, x: str, I: int, H: int, *,
                  proj: int = 0, bias: bool = True, reverse: bool = False, lbr: bool = True,
                  nonlinearity: str = "tanh", init_state: bool = False) -> str:
    s = 1 / np.sqrt(H)
    if op == "LSTM":
        R = proj or H
        w = {"W_ih": _u(rng, (I, 4 * H), s), "W_hh": _u(rng, (R, 4 * H), s),
             "bias": _u(rng, (4 * H,), 2 * s) if bias else None,
             "W_hr": _u(rng, (H, proj), s) if proj else None,
             "h0": _u(rng, (R,), 0.5) if init_state else None,
             "c0": _u(rng, (H,), 0.5) if init_state else None}
        attrs = {"input_size": I, "hidden_size": H, "proj_size": proj, "reverse": reverse}
    elif op == "GRU":
        w = {"W_ih": _u(rng, (I, 3 * H), s), "W_hh": _u(rng, (H, 3 * H), s),
             "b_ih": _u(rng, (3 * H,), s) if bias else None,
             "b_hh": _u(rng, (3 * H,), s) if bias else None,
             "h0": _u(rng, (H,), 0.5) if init_state else None}
        attrs = {"input_size": I, "hidden_size": H, "linear_before_reset": lbr, "reverse": reverse}
    else:
        w = {"W_ih": _u(rng, (I, H), s), "W_hh": _u(rng, (H, H), s),
             "bias": _u(rng, (H,), 2 * s) if bias else None,
             "h0": _u(rng, (H,), 0.5) if init_state else None}
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
