"""Fold a recurrence an exporter unrolled over a fixed length back into one ONNX LSTM/GRU/RNN
node (issue 9, cause 12), before the graph is converted.

torch.onnx.export(dynamo=True) writes nn.RNN that way, TorchScript unrolls a hand-written
LSTMCell/GRUCell/RNNCell loop: the data sequence S is cut into T single steps
(Gather/Slice/Split along its time axis), T copies of the step subgraph follow, each reading
the previous copy's state, and the per-step results are gathered again by a Concat (or
only the last step's state is used). Such a graph runs in onnxruntime at its exported
length only; folded, it is a streaming model that runs any length.

How (`fold_unrolled`):
1. *Groups*: the slicing nodes of one tensor along one axis whose indices are 0..T-1 (T >= 3,
   the whole axis).
2. *Copies*: every node gets the largest step it depends on (a node reading two steps that
   are not consecutive, e.g. the gathering Concat, is past the recurrence); linear and shape
   nodes of one value that only feed the next step (the recurrent Gemm on h_{t-1}) move into it,
   so that the state between copies is what the cell returns (h, c), not h @ R.
3. *Exact repetition*: copies 1..T-1 must be node for node the same op, attributes, constant
   inputs (equal values) and wiring as copy 1, their state read from the same places of the
   previous copy; else a ConversionError names the first node that differs. Copy 0 may be
   written differently (exporters constant-fold the zero initial state into it); it must
   compute, in float64, what the template computes from a zero initial state.
4. *The cell*: `onnx_cells.recognise` reads the template as an LSTM/GRU/RNN cell.
5. *Rewrite*: S -> Transpose/Reshape -> (T, 1, I) -> the cell node -> its Y lifted to the
   per-step shape; the template's per-step nodes after the cell (e.g. a Linear on h_t) run
   once on the whole sequence (the sequence sits where the batch of 1 was); each gathering
   Concat becomes a Transpose (a Slice with step -1 when it gathered in reverse), the last
   step's values become Y_h/Y_c. The new graph goes through the ordinary importer.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .errors import ConversionError
from .onnx_unroll_emit import POST, attr, rewrite

# ops that may move into the next copy when they only feed it (the recurrent projection)
_LINEAR = {"MatMul", "Gemm", "Add", "Sub", "Split", "Slice", "Gather", "Squeeze", "Unsqueeze",
           "Reshape", "Transpose", "Identity", "Cast", "Flatten"}
_LAYERS = {"LSTM", "GRU", "RNN", "Scan", "Loop"}

__all__ = ["fold_unrolled"]


@dataclass
class Group:
    source: str            # the sliced tensor S
    axis: int
    steps: list            # x_t value names, t = 0..T-1
    slicers: list          # indices of the slicing nodes


def fold_unrolled(model) -> tuple[object, list[str]]:
    """(model with every unrolled recurrence folded, notes); the model itself when none."""
    notes = []
    for _ in range(64):
        res = _fold_one(model)
        if res is None:
            return model, notes
        model, note = res
        notes.append(note)
    return model, notes


# ---- 1. groups ------------------------------------------------------------------------
class _Info:
    """Constants, shapes and producers of a model's values."""

    def __init__(self, model):
        import onnx
        from onnx import numpy_helper
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:   # noqa: BLE001 -- shapes are only a help
            inferred = model
        g = inferred.graph
        self.shapes = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                                        for d in t.shape.dim]
        self.consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = numpy_helper.to_array(a.t)
                    elif a.name in ("value_int", "value_float"):
                        self.consts[n.output[0]] = np.asarray(a.i if a.name == "value_int" else a.f)
                    elif a.name in ("value_ints", "value_floats"):
                        self.consts[n.output[0]] = np.asarray(
                            list(a.ints) if a.name == "value_ints" else list(a.floats))
        for vi in model.graph.initializer:
            self.shapes.setdefault(vi.name, list(vi.dims))

    def const(self, name):
        return self.consts.get(name) if name else None


def _slices(node, info: _Info) -> list[tuple[str, int, int, str]]:
    """(source, axis, index, output) for each single step `node` cuts out, if any."""
    op, ins = node.op_type, list(node.input)
    shape = info.shapes.get(ins[0]) if ins else None
    if not shape:
        return []
    rank = len(shape)

    def norm(ax, idx):
        ax = int(ax) % rank
        n = shape[ax]
        if idx < 0 and n:
            idx += n
        return ax, int(idx)
    if op == "Gather" and len(ins) == 2:
        ind = info.const(ins[1])
        if ind is None or ind.size != 1 or ind.dtype.kind not in "iu":
            return []
        ax, idx = norm(attr(node, "axis", 0), int(ind.reshape(-1)[0]))
        return [(ins[0], ax, idx, node.output[0])]
    if op == "Slice" and len(ins) >= 3:
        st, en = info.const(ins[1]), info.const(ins[2])
        axes = info.const(ins[3]) if len(ins) > 3 and ins[3] else np.arange(st.size if st is not None else 0)
        steps = info.const(ins[4]) if len(ins) > 4 and ins[4] else None
        if st is None or en is None or axes is None or st.size != 1 or (
                steps is not None and int(steps.reshape(-1)[0]) != 1):
            return []
        ax, s = norm(axes.reshape(-1)[0], int(st.reshape(-1)[0]))
        e = int(en.reshape(-1)[0])
        n = shape[ax]
        if e < 0 and n:
            e += n
        if n:
            e = min(e, n)
        return [(ins[0], ax, s, node.output[0])] if e == s + 1 else []
    if op == "Split":
        ax = int(attr(node, "axis", 0)) % rank
        sizes = info.const(ins[1]) if len(ins) > 1 and ins[1] else attr(node, "split")
        n = len(node.output)
        if (sizes is not None and any(int(s) != 1 for s in np.asarray(sizes).reshape(-1))) or (
                sizes is None and shape[ax] != n):
            return []
        return [(ins[0], ax, k, o) for k, o in enumerate(node.output)]
    return []


def _groups(model, info: _Info) -> list[Group]:
    found: dict = {}
    for i, n in enumerate(model.graph.node):
        for src, ax, idx, out in _slices(n, info):
            found.setdefault((src, ax), []).append((idx, out, i))
    groups = []
    for (src, ax), items in found.items():
        idx = sorted(k for k, _, _ in items)
        T = len(items)
        dim = info.shapes[src][ax]
        if T >= 3 and idx == list(range(T)) and dim in (T, None):
            items.sort()
            groups.append(Group(src, ax, [o for _, o, _ in items], sorted({i for *_, i in items})))
    groups.sort(key=lambda g: g.slicers[0])
    return groups


# ---- 2. copies ------------------------------------------------------------------------
def _copies(model, g: Group) -> tuple[list, dict]:
    """Per node index its step (-1: before, POST: past the recurrence), value -> step."""
    nodes = model.graph.node
    vt = {x: t for t, x in enumerate(g.steps)}
    tag = [-1] * len(nodes)
    for i, n in enumerate(nodes):
        if i in g.slicers:
            continue
        ts = [vt.get(v, -1) for v in n.input if v]
        if POST in ts:
            t = POST
        else:
            u = {t for t in ts if t >= 0}
            m = max(u, default=-1)
            t = m if u <= {m - 1, m} else POST
        tag[i] = t
        for o in n.output:
            vt[o] = t
    consumers: dict = {}
    for i, n in enumerate(nodes):
        for v in n.input:
            consumers.setdefault(v, []).append(i)
    outs = {o.name for o in model.graph.output}
    for i in reversed(range(len(nodes))):   # consumers first
        n, t = nodes[i], tag[i]
        if t < 0 or t == POST or n.op_type not in _LINEAR or any(o in outs for o in n.output):
            continue
        # a projection of one value only: the node combining two (c' = f*c + i*g, GRU's
        # h' = (1-z)*n + z*h) makes the state and stays in its step
        data = [v for v in n.input if v and vt.get(v, -1) >= 0]
        cs = [c for o in n.output for c in consumers.get(o, [])]
        if len(data) == 1 and cs and all(tag[c] == t + 1 for c in cs):
            tag[i] = t + 1
            for o in n.output:
                vt[o] = t + 1
    return tag, vt


# ---- 3. exact repetition ----------------------------------------------------------------
class _Repeat:
    """The copies of one group, their comparison, state slots and exits."""

    def __init__(self, model, g: Group, info: _Info):
        self.model, self.g, self.info = model, g, info
        self.T = len(g.steps)
        self.tag, self.vt = _copies(model, g)
        nodes = model.graph.node
        self.copy = [[i for i, t in enumerate(self.tag) if t == s] for s in range(self.T)]
        self.pos = {}
        for s, idx in enumerate(self.copy):
            for k, i in enumerate(idx):
                for j, o in enumerate(nodes[i].output):
                    self.pos[o] = (s, k, j)
        self.producer = {o: i for i, n in enumerate(nodes) for o in n.output}
        self._keys: dict = {}

    def name(self, i):
        n = self.model.graph.node[i]
        return f"{n.op_type} node {n.name or n.output[0]!r}"

    def const_key(self, v, depth=0):
        """A key equal for equal constants (or equal computations of them)."""
        if v in self._keys:
            return self._keys[v]
        arr = self.info.const(v)
        if arr is not None:
            k = ("arr", str(arr.dtype), arr.shape, hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest())
        elif v in self.producer and depth < 50:
            n = self.model.graph.node[self.producer[v]]
            k = ("node", n.op_type, _attrs_key(n), list(n.output).index(v),
                 tuple(self.const_key(u, depth + 1) if u else None for u in n.input))
        else:
            k = ("name", v)
        self._keys[v] = k
        return k

    def describe(self, s: int) -> list:
        """Per node of copy s: (op, attrs, outputs, inputs described relative to the copy)."""
        nodes = self.model.graph.node
        out = []
        for i in self.copy[s]:
            n = nodes[i]
            ins = []
            for v in n.input:
                if not v:
                    ins.append(("none",))
                elif v in self.g.steps:
                    ins.append(("x", s - self.g.steps.index(v)))
                elif v in self.pos and self.pos[v][0] == s:
                    ins.append(("int",) + self.pos[v][1:])
                elif v in self.pos and self.pos[v][0] == s - 1:
                    ins.append(("state",) + self.pos[v][1:])
                else:
                    ins.append(("const", self.const_key(v)))
            out.append((n.domain, n.op_type, _attrs_key(n), len(n.output), tuple(ins)))
        return out

    def _trim_last(self) -> None:
        """Nodes of the last copy that no other copy has (they use the final step, e.g. a
        Linear on h_T) are past the recurrence: matched in order by op and attributes."""
        nodes = self.model.graph.node
        last, ref = self.copy[-1], self.copy[1]
        if len(last) <= len(ref):
            return
        key = [(nodes[i].op_type, _attrs_key(nodes[i])) for i in ref]
        k, extra = 0, []
        for i in last:
            if k < len(key) and (nodes[i].op_type, _attrs_key(nodes[i])) == key[k]:
                k += 1
            else:
                extra.append(i)
        for i in extra:
            self.tag[i] = POST
            for o in nodes[i].output:
                self.vt[o] = POST
                self.pos.pop(o, None)
        self.copy[-1] = [i for i in last if i not in extra]
        for k, i in enumerate(self.copy[-1]):
            for j, o in enumerate(nodes[i].output):
                self.pos[o] = (self.T - 1, k, j)

    def check(self) -> None:
        """Copies 1..T-1 are exactly copy 1 (state wiring as in copy 2), else an error."""
        self._trim_last()
        ref, ref2 = self.describe(1), self.describe(2)
        nodes, last = self.model.graph.node, self.copy[-1]
        if len(last) < len(ref):
            ops = sorted(nodes[i].op_type for i in self.copy[1])
            for i in last:
                if nodes[i].op_type in ops:
                    ops.remove(nodes[i].op_type)
            raise ConversionError(
                f"the unrolled recurrence over {self.g.source!r} ({self.T} steps) carries its state "
                f"through {ops} before the next step reads it (the last step does not compute "
                "that): not the form of an LSTM, GRU or RNN cell, whose state is what the step "
                "returns; only those cell forms fold back into a streaming model")
        for s in range(2, self.T):
            d = ref2 if s == 2 else self.describe(s)
            if len(d) != len(ref):
                raise ConversionError(
                    f"the unrolled recurrence over {self.g.source!r} (axis {self.g.axis}, {self.T} steps) "
                    f"does not repeat exactly: step {s} has {len(d)} nodes, step 1 has {len(ref)}")
            for k, (a, b) in enumerate(zip(ref, d)):
                why = _differs(a, b, ref2[k] if s > 2 else None)
                if why:
                    raise ConversionError(
                        f"the unrolled recurrence over {self.g.source!r} ({self.T} steps) does not "
                        f"repeat exactly: {self.name(self.copy[s][k])} of step {s} differs from "
                        f"{self.name(self.copy[1][k])} of step 1: {why}; only an exact repetition "
                        "folds back into a recurrent layer")

    def slots(self) -> list[tuple[str, str]]:
        """State (input of copy 1, matching output of copy 1)."""
        nodes = self.model.graph.node
        ref2 = self.describe(2)
        slots = {}
        for k, i in enumerate(self.copy[1]):
            for q, v in enumerate(nodes[i].input):
                d = ref2[k][4][q]
                if d[0] == "state":
                    out = nodes[self.copy[1][d[1]]].output[d[2]]
                    if slots.setdefault(v, out) != out:
                        raise ConversionError(f"the state value {v!r} of the unrolled recurrence "
                                              "is not carried the same way at every step")
        if not slots:
            raise ConversionError("no state is carried from step to step")
        return list(slots.items())


def _attrs_key(n) -> tuple:
    from onnx import helper
    out = []
    for a in sorted(n.attribute, key=lambda a: a.name):
        v = helper.get_attribute_value(a)
        if hasattr(v, "SerializeToString"):
            v = hashlib.sha1(v.SerializeToString()).hexdigest()
        elif isinstance(v, list):
            v = tuple(x if not hasattr(x, "SerializeToString") else x.SerializeToString() for x in v)
        out.append((a.name, v))
    return tuple(out)


def _differs(a, b, ref2) -> str:
    if a[:2] != b[:2]:
        return f"op {b[1]} instead of {a[1]}"
    if a[2] != b[2]:
        da, db = dict(a[2]), dict(b[2])
        k = next(k for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k))
        return f"attribute {k} is {db.get(k)!r} instead of {da.get(k)!r}"
    if a[3] != b[3] or len(a[4]) != len(b[4]):
        return "a different number of inputs or outputs"
    for q, (x, y) in enumerate(zip(a[4], b[4])):
        want = x
        if x[0] == "state":   # copy 1 reads copy 0, which is written its own way: compare to copy 2
            want = ref2[4][q] if ref2 is not None else (y if y[0] == "state" else x)
        if x[0] == "const" and y[0] == "const" and x != y:
            return f"input {q} is a different constant (weights or attributes not shared)"
        if y != want:
            return f"input {q} is wired differently ({y[0]} instead of {want[0]})"
    return ""


# ---- 4./5. fold one group --------------------------------------------------------------
def _fold_one(model):
    info = _Info(model)
    for g in _groups(model, info):
        rep = _Repeat(model, g, info)
        if not any(d[0] == "state" for n in rep.describe(1) for d in n[4]):
            continue   # the steps do not feed each other: not a recurrence
        if any(model.graph.node[i].op_type in _LAYERS for c in rep.copy for i in c):
            continue   # layers of a stack fed their slice of h0, not steps of time
        rep.check()
        try:
            return rewrite(rep)
        except ConversionError:
            raise
        except Exception as e:   # noqa: BLE001 -- the reference evaluator on an odd step
            raise ConversionError(
                f"the unrolled recurrence over {g.source!r} ({rep.T} steps) repeats exactly, but "
                f"its step could not be evaluated to read off the cell ({type(e).__name__}: {e})"
            ) from None
    return None
