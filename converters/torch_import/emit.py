"""From a walked program to the `.lstm` file: `analyse` runs the walk and prunes, `write_ir`
emits the IR through lstm_infer.builder.GraphBuilder."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConversionError
from .values import TorchSpec
from .walk import Walker


@dataclass
class Analysis:
    """A walked program: its IR nodes (in the walker), what verification needs, warnings."""
    walker: Walker
    spec: TorchSpec
    warnings: list


def _looks_ahead(node: dict) -> bool:
    return bool(node["attrs"].get("reverse")) or node["op"] == "SequenceAttention"


def _check_ids_use(w: Walker, outs: list) -> None:
    """Integer token ids may only be looked up in nn.Embedding: the engine checks them
    against the vocabulary of the Embeddings that read the input, and nowhere else."""
    users = sorted({n["op"] for n in w.nodes if "%in" in n["inputs"]} - {"Embedding"})
    if users or any(o.vid == "%in" for o in outs) or not w.nodes:
        what = f"feeds {', '.join(users)}" if users else "is an output"
        raise ConversionError(f"the model's integer input {w.input_name!r} {what}; lstm-infer "
                              "takes integer token ids only as indices into nn.Embedding")


def analyse(ep, options: dict) -> Analysis:
    """Walk an ExportedProgram; keep only the IR nodes the outputs need and note which
    outputs go through a reverse-direction layer (their earlier rows are not prefix results)."""
    w = Walker(ep, options)
    outs = w.run()
    # Which IR values depend on a reverse-direction node or on attention that looks ahead
    # (not prefix results, not streamable).
    rev: dict[str, bool] = {"%in": False}
    for n in w.nodes:
        rev[n["out"]] = _looks_ahead(n) or any(rev.get(i, False) for i in n["inputs"])
    # Keep only nodes the outputs need.
    need = {o.vid for o in outs}
    for n in reversed(w.nodes):
        if n["out"] in need:
            need.update(n["inputs"])
    w.nodes = [n for n in w.nodes if n["out"] in need]
    if w.int_input:
        _check_ids_use(w, outs)
    roles = tuple(w.res(d) for d in w.input_val.dims)
    spec = TorchSpec(roles, tuple(w.input_val.shape), w.input_val.size, outs,
                     streamable=not any(_looks_ahead(n) for n in w.nodes),
                     input_dtype=w.input_dtype)
    warns = list(w.warnings)
    for o in outs:
        o.prefix_ok = not rev.get(o.vid, False)
        if o.kind == "last":
            msg = (f"output {o.index} ({o.label}) is the model's last-step result: lstm-infer "
                   "emits it at every step, so run() returns (T, O) whose last row equals the "
                   "torch output")
            if o.prefix_ok:
                msg += " and row t is the result for the sequence ending at step t"
            else:
                msg += ("; the output goes through a reverse-direction layer or attention that "
                        "looks ahead, so earlier rows are NOT results for shorter sequences")
            warns.append(msg)
    return Analysis(w, spec, warns)


def write_ir(an: Analysis, path, source: str | None, extra: dict) -> None:
    """Build the IR graph with GraphBuilder (which validates each node) and save the file,
    with the torch layouts verification needs in its provenance."""
    from lstm_infer.builder import GraphBuilder
    w, spec = an.walker, an.spec
    b = GraphBuilder(w.input_name, spec.input_size)
    names = {"%in": w.input_name}
    for n in w.nodes:
        names[n["out"]] = b.add(n["op"], n["name"], [names[i] for i in n["inputs"]], n["attrs"],
                                n["weights"])
    used = set()
    for o in spec.outputs:
        value = names[o.vid]
        if o.vid == "%in" or value in used:  # outputs must be distinct node outputs
            value = b.add("Activation", f"output{o.index}", [value],
                          {"kind": "identity", "size": b.sizes[value]})
        used.add(value)
        o.name = value
        b.output(value, o.label)
    import torch
    prov = {"torch_version": torch.__version__, "torch_input_layout": "".join(spec.input_dims),
            "torch_outputs": [{"index": o.index, "label": o.label, "kind": o.kind}
                              for o in spec.outputs]}
    prov.update(extra)
    b.save(path, source=source, converter="lstm-infer torch importer", **prov)

