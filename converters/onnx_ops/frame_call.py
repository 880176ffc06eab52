"""Recurrent layers in a graph that takes one frame per call (`Ctx.frame_call`, see
converters/onnx_frames.py): the graph has no time axis; each call is one time step, with
the state passed in (initial_h/initial_c) and out (Y_h/Y_c). A recurrent node is then fed
a length-1 sequence whose sequence axis is a plain size-1 axis (made by Unsqueeze or
Reshape): that axis is the step, and what the node returns is per call, i.e. per step."""
from __future__ import annotations

from ..onnx_graph import OnnxValue
from ..onnx_sym import AxisError, Dyn


def seq_as_time(d: Dyn, seq_ax: int, what: str) -> Dyn:
    """X of a recurrent node with its size-1 sequence axis marked as the time axis."""
    toks = d.axes[seq_ax]
    if toks == ("T",):
        return d
    if toks != ():
        raise AxisError(f"{what}: in a graph without a time axis (one frame per call) a "
                        f"recurrent layer must get a length-1 sequence; its sequence axis "
                        f"{seq_ax} of X {d.describe()} has {d.dims()[seq_ax]} steps")
    axes = list(d.axes)
    axes[seq_ax] = ("T",)
    return d.with_(d.idx, axes)


def per_call(results: list) -> list:
    """The node's outputs as per-call values: the sequence axis of Y is a size-1 axis
    again, and Y_h/Y_c are the values of this call's step (no read-out step)."""
    out = []
    for v in results:
        data = v.data
        if data is not None:
            axes = [tuple(t for t in a if t != "T") for a in data.axes]
            data = Dyn(data.kind, data.ref, data.idx, axes, None)
        out.append(OnnxValue(data, v.ids, v.why, v.input_name, v.err))
    return out
