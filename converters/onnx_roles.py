"""What each graph input of an ONNX model is, told from how the graph uses it, so that the
importer picks the data input itself (no --fix needed for token ids or lengths):

* `data`: float features per step (the usual data input);
* `tokens`: integer ids indexing an embedding table (Gather on axis 0 of a constant): the
  data input of a token model, converted to an `Embedding` op (its values reach the
  engine as floats holding integers);
* `lengths`: integers feeding sequence_lens of LSTM/GRU/RNN (or com.microsoft
  DynamicQuantizeLSTM): per-sequence lengths, given to `run(X, lengths=...)`;
* `state`: initial_h / initial_c of a recurrent op (paired with an output, or fixed);
* `unused`: read by no node (ignored; verification feeds it zeros);
* `other`: anything else (an integer input used as numbers, an input with mixed uses).

Each input is followed from the graph input through ops that only move or re-type its
elements (Cast, Reshape, Squeeze, ...) to the ops that use it. Uses of its shape only
(Shape, Size) say nothing about its role.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["InputRole", "input_roles", "describe_inputs", "SUPPORTED_INPUTS"]

RECURRENT_OPS = {"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"}
PASS_THROUGH = {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Cast",
                "CastLike"}
SHAPE_ONLY = {"Shape", "Size"}
_ROLE_TEXT = {"data": "float data", "tokens": "token ids", "lengths": "sequence lengths",
              "state": "initial recurrent state", "unused": "not used by any node",
              "other": "not a supported kind of input"}
SUPPORTED_INPUTS = (
    "the engine takes one input sequence: float features, or integer token ids that index an "
    "embedding table (Gather on axis 0 of a constant); an integer input feeding sequence_lens "
    "of LSTM/GRU/RNN becomes run(X, lengths=...); initial-state inputs are paired with the "
    "outputs returning the final state (--state IN=OUT); unused inputs are ignored; bind any "
    "other input to a constant with fix={NAME: value} (--fix NAME=VALUE)")


@dataclass
class InputRole:
    name: str
    dtype: str
    dims: list
    kind: str
    uses: list[str] = field(default_factory=list)   # what each use of the input is, in words
    vocab: int | None = None                         # tokens: rows of the smallest table

    def describe(self) -> str:
        dims = "[" + ", ".join(str(d) for d in self.dims) + "]"
        text = _ROLE_TEXT[self.kind]
        if self.uses:
            text += " (" + "; ".join(self.uses[:3]) + ("; ..." if len(self.uses) > 3 else "") + ")"
        return f"{self.name!r} {self.dtype} {dims}: {text}"


def _np_dtype(vi):
    import numpy as np
    from onnx import helper
    return np.dtype(helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))


def _dims(vi) -> list:
    t = vi.type.tensor_type
    out = []
    for d in (t.shape.dim if t.HasField("shape") else []):
        out.append(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?"))
    return out


def _constants(model) -> dict[str, tuple | None]:
    """Values that do not depend on a graph input: name -> shape when known."""
    g = model.graph
    consts: dict[str, tuple | None] = {t.name: tuple(t.dims) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            shape = None
            for a in n.attribute:
                if a.name == "value":
                    shape = tuple(a.t.dims)
            consts[n.output[0]] = shape
        elif n.input and all((not x) or x in consts for x in n.input) and n.op_type not in SHAPE_ONLY:
            for o in n.output:
                consts[o] = None
    return consts


def _use(node, i: int, consts: dict, is_float: bool) -> tuple[str, str, int | None] | None:
    """(role, words, vocab) of input i of `node`, or None to follow its outputs."""
    where = f"{node.op_type} {node.name!r}" if node.name else node.op_type
    op = node.op_type
    if op in SHAPE_ONLY:
        return "shape", f"its shape read by {where}", None
    if op in RECURRENT_OPS:
        if i == 4:
            return "lengths", f"sequence_lens of {where}", None
        if i in (5, 6):
            return "state", f"initial_{'h' if i == 5 else 'c'} of {where}", None
        return ("data" if is_float and i == 0 else "other"), f"input {i} of {where}", None
    if op == "Gather" and i == 1 and node.input[0] in consts:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        shape = consts[node.input[0]]
        if axis == 0 and not is_float:
            table = "x".join(str(d) for d in shape) + " table" if shape else "constant table"
            return "tokens", f"indices of {where} into a {table}", (shape[0] if shape else None)
    if op in ("Cast", "CastLike") and i == 0 and not is_float:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        from onnx import TensorProto
        if to in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            return "other", f"cast to float by {where} and used as numbers", None
        return None
    if op in PASS_THROUGH and i == 0:
        return None
    return ("data" if is_float else "other"), f"input {i} of {where}", None


def input_roles(model) -> dict[str, InputRole]:
    """Every graph input (initializers excepted) -> its InputRole, in graph order."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i, x in enumerate(n.input):
            if x:
                consumers.setdefault(x, []).append((n, i))
    outputs = {o.name for o in g.output}
    consts = _constants(model)
    roles = {}
    for vi in g.input:
        if vi.name in inits:
            continue
        dt = _np_dtype(vi)
        is_float = dt.kind == "f"
        found: list[tuple[str, str, int | None]] = []
        stack, seen = [vi.name], set()
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in outputs:
                found.append(("other", "returned as a graph output", None))
            for n, i in consumers.get(v, []):
                use = _use(n, i, consts, is_float)
                if use is None:
                    stack.extend(o for o in n.output if o)
                else:
                    found.append(use)
        kinds = {k for k, _, _ in found if k != "shape"}
        if not found:
            kind = "unused"
        elif len(kinds) == 1:
            kind = kinds.pop()
        else:  # mixed uses, or only its shape is read
            kind = "other"
        uses = [w for k, w, _ in found if w]
        vocabs = [v for k, _, v in found if k == "tokens" and v]
        roles[vi.name] = InputRole(vi.name, str(dt), _dims(vi), kind, uses,
                                   min(vocabs) if vocabs else None)
    return roles


def describe_inputs(roles: dict[str, InputRole], fixed=(), paired=()) -> str:
    """One line per graph input: name, dtype, dims, what it looks like."""
    lines = []
    for r in roles.values():
        note = " [bound with fix]" if r.name in fixed else " [paired as state]" if r.name in paired else ""
        lines.append(f"  {r.describe()}{note}")
    return "\n".join(lines)
