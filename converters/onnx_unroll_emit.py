"""The rewrite half of `onnx_unroll`: one unrolled recurrence (its copies already checked to
repeat exactly) -> one ONNX LSTM/GRU/RNN node plus the per-step nodes that follow the cell,
run once over the whole sequence. See `onnx_unroll` for the picture."""
from __future__ import annotations

import numpy as np

from .errors import ConversionError
from .onnx_cells import ACTIVATIONS, Evaluator, recognise

POST = 1 << 30
_INT_MAX = np.iinfo(np.int64).max
_TOL = 1e-9

__all__ = ["POST", "attr", "rewrite"]


def attr(node, name, default=None):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _exits(rep) -> tuple[list, list]:
    """Where the copies' values leave the recurrence: gathers [(node index, template value,
    axis, reversed)] and last-step uses [(value of the last copy, template value)]."""
    nodes, T = rep.model.graph.node, rep.T
    tmpl = rep.copy[1]

    def template_value(v):
        _, k, j = rep.pos[v]
        return nodes[tmpl[k]].output[j]
    gathers, last = [], []
    for i, n in enumerate(nodes):
        if rep.tag[i] != POST:
            continue
        src = [(v, rep.vt[v]) for v in n.input if v and 0 <= rep.vt.get(v, -1) < POST]
        if not src:
            continue
        steps = [t for _, t in src]
        if n.op_type == "Concat" and len(src) == len(n.input) == T and steps in (
                list(range(T)), list(range(T))[::-1]):
            vals = [v for v, _ in src]
            if any(v not in rep.pos for v in vals):
                raise ConversionError(f"Concat node {n.name!r} gathers the unrolled steps' inputs, "
                                      "not their results")
            ks = {rep.pos[v][1:] for v, t in src if t >= 1}
            if len(ks) != 1:
                raise ConversionError(f"Concat node {n.name!r} gathers different values of the "
                                      "unrolled steps")
            gathers.append((i, template_value(vals[steps.index(1)]), int(attr(n, "axis")),
                            steps[0] != 0))
            continue
        for v, t in src:
            if t != T - 1 or v not in rep.pos:
                raise ConversionError(
                    f"{n.op_type} node {n.name!r} reads {v!r}, the value of step {t} of an "
                    f"unrolled recurrence of {T} steps, on its own: only a Concat of every step "
                    "or the last step's values can leave the recurrence")
            last.append((v, template_value(v)))
    for o in rep.model.graph.output:
        t = rep.vt.get(o.name, -1)
        if 0 <= t < POST:
            if t != T - 1:
                raise ConversionError(f"graph output {o.name!r} is step {t} of an unrolled "
                                      f"recurrence of {T} steps: only the last step can be output")
            last.append((o.name, template_value(o.name)))
    return gathers, last


def _graph_nodes(rep) -> list:
    """The nodes a template evaluation may need: its own and those before the recurrence."""
    nodes = rep.model.graph.node
    return [n for i, n in enumerate(nodes) if rep.tag[i] == -1 and i not in rep.g.slicers] + [
        nodes[i] for i in rep.copy[1]]


def _check_step0(rep, slots, gathers, shapes, s_shape) -> None:
    """Copy 0 computes, from x_0, what the template computes from x_0 and a zero state."""
    nodes, g = rep.model.graph.node, rep.g
    zero_outs = []
    for i, tv, _, rev in gathers:
        n = nodes[i]
        zero_outs.append((n.input[-1] if rev else n.input[0], tv))
    names = [g.steps[0]] + [s for s, _ in slots] + [v for v, _ in zero_outs]
    rng = np.random.default_rng(1)
    S = rng.standard_normal(s_shape)
    got = Evaluator(rep.model, list(nodes), [g.source], names)({g.source: S})
    x0 = got[0]
    ev = Evaluator(rep.model, _graph_nodes(rep), [g.steps[1]] + [s for s, _ in slots],
                   [o for _, o in slots] + [tv for _, tv in zero_outs])
    want = ev({g.steps[1]: x0, **{s: np.zeros(shapes[s]) for s, _ in slots}})
    for name, a, b in zip([s for s, _ in slots] + [v for v, _ in zero_outs], got[1:], want):
        scale = max(1.0, float(np.max(np.abs(b))))
        if a.size != b.size or np.max(np.abs(a.reshape(-1) - b.reshape(-1))) > _TOL * scale:
            raise ConversionError(
                f"step 0 of the unrolled recurrence over {g.source!r} ({rep.T} steps) is not the "
                f"repeated step started from a zero state ({name!r} differs): an initial state "
                "other than zeros is not folded")


def rewrite(rep) -> tuple[object, str]:
    """(the model with this recurrence folded into one recurrent node, a note)."""
    import onnx
    from onnx import helper, numpy_helper
    model, g, T, info = rep.model, rep.g, rep.T, rep.info
    nodes = model.graph.node
    tmpl = [nodes[i] for i in rep.copy[1]]
    slots = rep.slots()
    gathers, last = _exits(rep)
    prod = {o: n for n in tmpl for o in n.output}
    core, todo = set(), [o for _, o in slots]
    while todo:
        n = prod.get(todo.pop())
        if n is not None and id(n) not in core:
            core.add(id(n))
            todo.extend(n.input)
    acts = [n for n in tmpl if id(n) in core and n.op_type in ACTIVATIONS]
    extras = [n for n in tmpl if id(n) not in core]
    s_shape = [d or 1 for d in info.shapes[g.source]]
    # shapes of the template's values, from one evaluation of the unrolled graph
    want = [g.steps[1]] + [s for s, _ in slots] + [o for _, o in slots] + \
        [a.input[0] for a in acts] + [o for n in extras for o in n.output]
    vals = Evaluator(model, list(nodes), [g.source], want)(
        {g.source: np.random.default_rng(2).standard_normal(s_shape)})
    shapes = {k: v.shape for k, v in zip(want, vals)}
    _check_step0(rep, slots, gathers, shapes, s_shape)
    what = f"the unrolled recurrence over {g.source!r} ({T} steps, {len(tmpl)} nodes per step)"
    cell = recognise(model, _graph_nodes(rep), g.steps[1], slots, acts, shapes, what)
    H = cell.R.shape[1]
    h_out = slots[cell.h_slot][1]
    c_out = slots[cell.c_slot][1] if cell.c_slot is not None else None
    for v in (g.steps[1], h_out):
        if shapes[v][0] != 1 and int(np.prod(shapes[v])) != shapes[v][-1]:
            raise ConversionError(f"{what}: per-step value {v!r} {list(shapes[v])} is not one "
                                  "sample (export the unrolled graph with batch 1)")
    base = "".join(c if c.isalnum() else "_" for c in g.source)
    taken = {o for n in nodes for o in n.output} | {t.name for t in model.graph.initializer}
    k = 0
    while f"{base}_fold{k}_x" in taken:
        k += 1
    pfx = f"{base}_fold{k}_"
    new, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), pfx + name))
        return pfx + name
    x = g.source
    rank = len(s_shape)
    if g.axis != 0:
        perm = [g.axis] + [a for a in range(rank) if a != g.axis]
        new.append(helper.make_node("Transpose", [x], [pfx + "xs"], perm=perm))
        x = pfx + "xs"
    new.append(helper.make_node("Reshape", [x, const("xshape", np.array([0, 1, -1], np.int64))],
                                [pfx + "x"]))
    outs = [pfx + "Y", pfx + "Y_h"] + ([pfx + "Y_c"] if cell.kind == "LSTM" else [])
    new.append(helper.make_node(
        cell.kind, [pfx + "x", const("W", cell.W[None].astype(np.float32)),
                    const("R", cell.R[None].astype(np.float32)),
                    const("B", cell.B[None].astype(np.float32))], outs,
        name=pfx + cell.kind, hidden_size=H, **cell.attrs))
    lifted = {h_out: pfx + "h"}
    new.append(helper.make_node("Reshape", [pfx + "Y", const(
        "hshape", np.array([0] + list(shapes[h_out][1:]), np.int64))], [pfx + "h"]))
    for n in extras:
        ins = []
        for v in n.input:
            if v in lifted or not v:
                ins.append(lifted.get(v, v))
            elif v in rep.pos or v in g.steps:
                raise ConversionError(
                    f"{what}: {n.op_type} node {n.name!r} uses {v!r} per step; only the hidden "
                    "state h can be used per step outside the cell")
            else:
                ins.append(v)
        m = onnx.NodeProto()
        m.CopyFrom(n)
        del m.input[:], m.output[:]
        m.input.extend(ins)
        m.output.extend(pfx + o for o in n.output)
        m.name = pfx + (n.name or n.output[0])
        lifted.update({o: pfx + o for o in n.output})
        new.append(m)
    for i, tv, ax, rev in gathers:
        n = nodes[i]
        if tv not in lifted:
            raise ConversionError(f"{what}: Concat node {n.name!r} gathers {tv!r} of every step, "
                                  "which is not the hidden state or computed from it")
        shp = shapes[tv]
        ax %= len(shp)
        if shp[0] != 1 or shp[ax] != 1:
            raise ConversionError(f"{what}: Concat node {n.name!r} joins the steps' {list(shp)} "
                                  f"values along axis {ax}, which is not a size-1 axis")
        out = pfx + "rev" + str(i) if rev else n.output[0]
        if ax == 0:
            new.append(helper.make_node("Identity", [lifted[tv]], [out]))
        else:
            perm = list(range(len(shp)))
            perm[0], perm[ax] = ax, 0
            new.append(helper.make_node("Transpose", [lifted[tv]], [out], perm=perm))
        if rev:
            new.append(helper.make_node("Slice", [out, const(f"m1_{i}", np.array([-1])),
                                                  const(f"mx_{i}", np.array([-_INT_MAX])),
                                                  const(f"ax_{i}", np.array([ax])),
                                                  const(f"st_{i}", np.array([-1]))], [n.output[0]]))
    for v, tv in last:
        if tv in (h_out, c_out):
            src = pfx + ("Y_h" if tv == h_out else "Y_c")
            new.append(helper.make_node("Reshape", [src, const(
                f"s_{len(new)}", np.array(shapes[tv], np.int64))], [v]))
        elif tv in lifted:
            new.append(helper.make_node("Slice", [lifted[tv], const(f"l_{len(new)}", np.array([-1])),
                                                  const(f"e_{len(new)}", np.array([_INT_MAX])),
                                                  const(f"a_{len(new)}", np.array([0]))], [v]))
        else:
            raise ConversionError(f"{what}: the last step's {tv!r} is used after the recurrence, "
                                  "but it is not the state or computed from it")
    drop = set(g.slicers) | {i for i, t in enumerate(rep.tag) if 0 <= t < POST} | \
        {i for i, *_ in gathers}
    kept = [n for i, n in enumerate(nodes) if i not in drop]
    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph_nodes = _toposort(kept + new, model)
    del m.graph.node[:]
    m.graph.node.extend(graph_nodes)
    m.graph.initializer.extend(inits)
    produced = {o for n in graph_nodes for o in n.output}
    keep_vi = [vi for vi in m.graph.value_info if vi.name in produced]
    del m.graph.value_info[:]
    m.graph.value_info.extend(keep_vi)
    kind = cell.kind + (" (linear_before_reset=%d)" % cell.attrs["linear_before_reset"]
                        if cell.kind == "GRU" else "")
    note = (f"folded {what} into one {kind} layer of hidden size {H}: the source graph runs only "
            f"at its exported length of {T} steps, the converted model runs any length")
    return m, note


def _toposort(nodes: list, model) -> list:
    """`nodes` in an order where every value is produced before it is read, unused ones
    dropped (the rest of the unrolled steps' constants)."""
    outs = {o.name for o in model.graph.output}
    prod = {o: n for n in nodes for o in n.output}
    needed, todo = set(), list(outs)
    while todo:
        n = prod.get(todo.pop())
        if n is not None and id(n) not in needed:
            needed.add(id(n))
            todo.extend(n.input)
            for a in n.attribute:
                if a.type == a.GRAPH:
                    todo.extend(v for sub in a.g.node for v in sub.input)
    order, done, seen = [], set(), set()
    for n in nodes:
        stack = [(n, False)]
        while stack:
            cur, ready = stack.pop()
            if id(cur) not in needed or id(cur) in done:
                continue
            if ready:
                done.add(id(cur))
                order.append(cur)
                continue
            if id(cur) in seen:
                continue
            seen.add(id(cur))
            stack.append((cur, True))
            stack.extend((prod[v], False) for v in cur.input if v in prod)
    return order
