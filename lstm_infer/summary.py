"""What a loaded model is, as data (`inspect --json`) and as text (`print(model)`).

Both views are built from one per-layer description, `describe_node`, so the text summary
and the JSON can never disagree about a layer; each op says what it computes in its own
module (ops/<op>.py `describe`). The model is taken duck-typed (graph, plan, path, sizes,
dtype, ...): model.py imports this module for Model.summary(), not the other way round.
"""
from __future__ import annotations

import os
from typing import Any

from .graph import node_params
from .ops import OPS
from .ops import describe as describe_layer

__all__ = ["describe_node", "describe", "format_summary", "format_details"]



def _initial_state_roles(node: Any) -> list[str]:
    """Weights of the node that hold the initial value of its state (h0, c0, ...)."""
    roles = {init for _, init in OPS[node.op].spec(node.attrs).state.values() if init}
    return sorted(r for r in node.weights if r in roles)


def describe_node(graph: Any, node: Any) -> dict:
    """One layer: the JSON fields of `inspect --json` plus `text`, its one-line summary."""
    return {"name": node.name, "op": node.op, "inputs": list(node.inputs),
            "output": node.outputs[0], "output_size": graph.sizes[node.outputs[0]],
            "attrs": node.attrs, "parameters": node_params(node),
            "initial_state": _initial_state_roles(node),
            "text": describe_layer(node, graph.sizes[node.outputs[0]])}


def describe(model: Any) -> dict:
    """Everything `inspect` shows, as plain JSON-able data."""
    g = model.graph
    return {
        "path": model.path,
        "file_size": model.file_size,
        "dtype": model.dtype,
        "input_size": model.input_size,
        "output_size": model.output_size,
        "inputs": [{"name": n, "size": s} for n, s in g.inputs],
        "outputs": [{"name": n, "size": s} for n, s in g.outputs],
        "parameters": g.param_count(),
        "layers": [{k: v for k, v in describe_node(g, n).items() if k != "text"}
                   for n in g.nodes],
        "state": [{"name": s.name, "size": s.size} for s in model.plan.state_slots],
        "weight_dtypes": model.weight_dtypes(),
        "compression_ratio": round(model.compression_ratio(), 3),
        "streamable": model.streamable,
        "reverse_layers": list(g.reverse_nodes),
        "provenance": model.provenance,
    }


def format_summary(model: Any) -> str:
    """The text of `print(model)` / `Model.summary()`: a header, one line per layer,
    whether it streams, and where it came from."""
    g = model.graph
    lines = [f"lstm-infer model{f' {os.path.basename(model.path)}' if model.path else ''}: "
             f"input {model.input_size} -> output {model.output_size}, "
             f"{g.param_count():,} parameters, dtype {model.dtype}"
             + (f", {model.file_size:,} bytes" if model.file_size else "")
             + (f" (weights {model.compression_ratio():.2f}x smaller than fp32)"
                if model.dtype != "fp32" else "")]
    if g.prelude is not None:
        pre = g.prelude
        lines.append(f"  prelude: images ({pre.channels}, {pre.height}, W >= {pre.min_width}) -> "
                     f"{len(pre.nodes)} whole-image ops -> sequence of {model.input_size} per step "
                     f"{pre.param_count():>10,} params")
    for n in g.nodes:
        d = describe_node(g, n)
        lines.append(f"  {d['name']:<24} {d['text']:<36} {d['parameters']:>10,} params")
    lines.append("  streamable: " + ("yes" if model.streamable else
                                     "no (a whole-image prelude: run() only)" if g.prelude is not None
                                     else f"no (needs whole sequences: {', '.join(g.reverse_nodes)})"))
    if model.provenance.get("source"):
        lines.append(f"  source: {model.provenance['source']} via "
                     f"{model.provenance.get('converter', '?')}")
    return "\n".join(lines)


def format_details(info: dict) -> str:
    """What `inspect` prints after the summary, from a describe() result: the outputs (when
    several), the recurrent state, compressed weights and the provenance."""
    lines = []
    if len(info["outputs"]) > 1:
        lines.append("  outputs: " + ", ".join(f"{o['name']} ({o['size']})"
                                               for o in info["outputs"]))
    state = info["state"]
    lines.append("  state: " + (", ".join(f"{s['name']} ({s['size']})" for s in state)
                                if state else "none"))
    if info["dtype"] != "fp32":
        dts = info["weight_dtypes"]
        lines.append("  weights: " + ", ".join(f"{k} {v}" for k, v in dts.items() if v != "fp32")
                     + "; others fp32; int8 matrices carry one float32 scale per output unit")
    prov = info["provenance"]
    if prov:
        lines.append("  provenance: " + ", ".join(f"{k}={v}" for k, v in prov.items()
                                                  if v not in (None, "")))
    return "\n".join(lines)
