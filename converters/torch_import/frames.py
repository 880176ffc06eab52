"""PyTorch models over frame sequences (input (B, T, C, H, W), or (T, B, C, H, W) permuted
to it in forward): a ConvLSTM written as a cell loop (`frames_cell.py`), folded into
`ConvLSTM` nodes, with per-frame heads after it.

The walk interprets the exported program's FX nodes with its own small value set (the
token-sequence walker's roles do not describe frames): `InputSeq` (the model input, axes
permuted), `Frame` (a per-step (B, C, H, W) frame, IR channels-last (H, W, C)), `Vec`
(a per-step (B, n) vector; `order` maps torch's flat index to the IR position when it was
flattened from a channels-last frame), the pending cell values of `frames_cell`, and torch
tensors (constants, computed with torch). Supported per-step ops besides the cell:
select/unbind over time, stack over time (dim 1), a 1x1 Conv2d on a frame (a grouped
Linear, one group per pixel), sigmoid/tanh/relu, flatten/view to (B, n), Linear.

File layout: the graph input is the source's frame (C, H, W) flattened in torch order
(recorded as its shape) and transposed to channels-last by a Gather when C > 1; frame
outputs are transposed back to torch's (F, H, W) the same way, so run()/step() take and
give what the torch model does, one frame per step.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from ..errors import ConversionError, UnsupportedOpError
from . import frames_cell as fc
from .fx import bind_args, fx_shape, module_of, op_name, packet_name, size_hint, to_numpy, torch_module
from .frames_cell import Frame


@dataclass(frozen=True)
class InputSeq:
    perm: tuple               # current axis k is input axis perm[k]


@dataclass(frozen=True)
class Vec:
    vid: str
    n: int
    t: int | None
    order: tuple | None = None   # IR position of torch's flat index j (None: the same)


@dataclass
class FrameOutput:
    index: int
    label: str
    vid: str
    kind: str                 # 'seq' or 'last'
    shape: tuple | None       # torch's per-step shape of a frame output
    name: str = ""


_ACTS = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu"}


def _abstract(v) -> bool:
    if isinstance(v, (InputSeq, Frame, Vec) + fc.PENDING):
        return True
    return isinstance(v, (list, tuple)) and any(_abstract(x) for x in v)


def channels_last_index(C: int, H: int, W: int) -> np.ndarray:
    """index[j] = the torch (C, H, W) flat position of IR (H, W, C) position j."""
    return np.arange(C * H * W).reshape(C, H, W).transpose(1, 2, 0).reshape(-1)


class FrameWalk:
    """`FrameWalk(ep, options).run()` -> IR nodes (self.nodes) and outputs."""

    def __init__(self, ep, options: dict):
        self.ep, self.options = ep, options
        self.nodes: list[dict] = []
        self.memo: dict = {}
        self.cells: dict[tuple, fc.CellLoop] = {}
        self.warnings: list[str] = []
        self.t_axis: int | None = None
        self.in_shape: tuple = ()
        self.input_name = "x"
        self.cur = None
        self._x = None            # vid of the channels-last input frame

    # ---- diagnostics and emission ------------------------------------------
    def where(self) -> str:
        n = self.cur
        if n is None:
            return "the model outputs"
        path, cls = module_of(n)
        s = f"{op_name(n.target)} (graph node {n.name!r}"
        return s + (f" in module {path or '<root>'!r} ({cls}))" if cls else ")")

    def fail(self, msg: str):
        raise ConversionError(f"{msg}; at {self.where()}")

    def name(self) -> str:
        path, _ = module_of(self.cur) if self.cur is not None else ("", "")
        return path or (self.cur.name if self.cur is not None else "node")

    def emit(self, op: str, inputs: list, attrs: dict, weights: dict, key=None,
             name: str = "") -> str:
        """Append an IR node (hash-consed by `key`: the T unrolled copies of a per-frame op
        are one node)."""
        if key is not None and key in self.memo:
            return self.memo[key]
        vid = f"%{len(self.nodes)}"
        self.nodes.append({"op": op, "name": name or self.name(), "inputs": list(inputs), "attrs": attrs,
                           "weights": {k: (None if w is None else np.asarray(w, np.float32))
                                       for k, w in weights.items()}, "out": vid})
        if key is not None:
            self.memo[key] = vid
        return vid

    # ---- the walk -------------------------------------------------------------
    def run(self) -> list[FrameOutput]:
        torch = torch_module()
        from torch.export.graph_signature import InputKind, OutputKind
        ep = self.ep
        params, users = {}, []
        for s in ep.graph_signature.input_specs:
            if s.kind == InputKind.USER_INPUT:
                users.append(s.arg.name)
            else:
                t = ep.state_dict.get(s.target)
                params[s.arg.name] = (t if t is not None else ep.constants.get(s.target)).detach()
        env = {}
        out_node = next(n for n in ep.graph.nodes if n.op == "output")
        flat = list(out_node.args[0])
        kinds = [s.kind for s in ep.graph_signature.output_specs]
        for node in ep.graph.nodes:
            self.cur = node
            if node.op == "placeholder":
                if node.name in params:
                    env[node] = params[node.name]
                elif node.name in users and len(fx_shape(node)) == 5:
                    self.in_shape = fx_shape(node)
                    self.input_name = node.name
                    env[node] = InputSeq((0, 1, 2, 3, 4))
                else:
                    env[node] = node.meta.get("val")
            elif node.op == "get_attr":
                env[node] = getattr(ep.graph_module, node.target)
            elif node.op == "call_function":
                args = torch.fx.node.map_arg(node.args, lambda n: env[n])
                kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
                env[node] = self.call(node, args, kwargs)
        self.cur = None
        users_out = [a for a, k in zip(flat, kinds) if k == OutputKind.USER_OUTPUT]
        outs = []
        for k, a in enumerate(users_out):
            label = "output" if len(users_out) == 1 else f"output{k}"
            v = env.get(a) if isinstance(a, torch.fx.Node) else a
            o = self.output(k, label, v)
            if o is not None:
                outs.append(o)
        if not outs:
            raise ConversionError("the model has no output that lstm-infer can emit per frame")
        T = self.T
        for c in self.cells.values():
            if c.t_first != 0:
                raise ConversionError(f"the ConvLSTM cell loop of {c.node['name']} starts at frame "
                                      f"{c.t_first}, not 0; a cell loop must run over every frame")
        del T
        return outs

    @property
    def T(self) -> int:
        return self.in_shape[self.t_axis] if self.t_axis is not None else 1

    def output(self, k: int, label: str, v) -> FrameOutput | None:
        if isinstance(v, fc.NewC):
            self.warnings.append(f"output {k} ({label}) is the cell state c of a ConvLSTM cell: "
                                 "dropped, because the engine keeps recurrent state itself "
                                 "(Stream.get_state())")
            return None
        if isinstance(v, (list, tuple)) or not isinstance(v, (Frame, Vec)):
            raise ConversionError(f"output {k} ({label}) is {fc.describe(v)}, not a per-frame value "
                                  "computed from the input")
        kind = "seq" if v.t is None else "last"
        if v.t is not None and v.t != self.T - 1:
            raise ConversionError(f"output {k} ({label}) is the value at frame {v.t} of {self.T}; "
                                  "only per-frame values or the last frame's can be emitted")
        if isinstance(v, Frame):
            shape = (v.C, v.H, v.W)
            vid = v.vid
            if v.C > 1:  # IR (H, W, C) -> torch's (C, H, W)
                idx = np.argsort(channels_last_index(v.C, v.H, v.W))
                vid = self.emit("Gather", [v.vid], {"in_size": v.C * v.H * v.W,
                                                   "out_size": v.C * v.H * v.W}, {"index": idx},
                            key=("channels_first", v.vid), name=f"{label}_channels_first")
            return FrameOutput(k, label, vid, kind, shape)
        vid = v.vid
        if v.order is not None:
            vid = self.emit("Gather", [v.vid], {"in_size": v.n, "out_size": v.n},
                            {"index": np.asarray(v.order)}, name=f"{label}_torch_order")
        return FrameOutput(k, label, vid, kind, None)

    def call(self, node, args, kwargs):
        torch = torch_module()
        tgt = node.target
        if tgt is operator.getitem:
            seq, i = args
            if isinstance(seq, (list, tuple)) or torch.is_tensor(seq):
                return seq[i]
            self.fail(f"indexing {fc.describe(seq)}")
        val = node.meta.get("val")
        if isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool) and not torch.is_tensor(val):
            return size_hint(val)
        if not _abstract(args) and not _abstract(kwargs):
            if isinstance(tgt, torch._ops.OpOverload) and torch.Tag.nondeterministic_seeded in tgt.tags:
                if "dropout" in packet_name(tgt) and not bind_args(tgt, args, kwargs).get("train"):
                    return args[0]
                self.fail("random ops are not supported")
            with torch.no_grad():
                return tgt(*args, **kwargs)
        if not isinstance(tgt, torch._ops.OpOverload):
            self.unsupported(node)
        name = packet_name(tgt).rstrip("_")
        a = bind_args(tgt, args, kwargs)
        handler = getattr(self, "op_" + name, None)
        if handler is None:
            pend = next((x for x in args if isinstance(x, fc.PENDING)), None)
            if pend is not None:
                raise fc.refuse(self.where(), name, pend)
            self.unsupported(node)
        return handler(a)

    def unsupported(self, node):
        path, cls = module_of(node)
        mod = f" in module {path or '<root>'!r} ({cls})" if cls else ""
        raise UnsupportedOpError(
            f"unsupported op {op_name(node.target)} (graph node {node.name!r}){mod} in a frame "
            "model; supported: a ConvLSTM cell loop (" + fc.PATTERN + "), select/unbind/stack "
            "over time, 1x1 conv2d, sigmoid/tanh/relu, flatten/view, linear")

    # ---- time -------------------------------------------------------------------
    def _select_input(self, v: InputSeq, d: int, t: int) -> Frame:
        ax = v.perm[d]
        if ax not in (0, 1):
            self.fail(f"selecting along input axis {ax}; the input is (B, T, C, H, W) or (T, B, C, H, W)")
        if self.t_axis is None:
            self.t_axis = ax
        elif self.t_axis != ax:
            self.fail("the input's time axis is selected along two different axes")
        rest = [p for k, p in enumerate(v.perm) if k != d]
        if rest != [1 - ax, 2, 3, 4]:
            self.fail(f"a frame with axes {rest} of the input; expected (B, C, H, W)")
        _, _, C, H, W = self.in_shape
        if self._x is None:
            self._x = "%in"
            if C > 1:  # torch's (C, H, W) frame -> the op's channels-last (H, W, C)
                self._x = self.emit("Gather", ["%in"], {"in_size": C * H * W, "out_size": C * H * W},
                                    {"index": channels_last_index(C, H, W)}, name="input_channels_last")
        return Frame(self._x, C, H, W, t % self.T)

    def op_select(self, a):
        v, d, i = a["self"], a["dim"], a["index"]
        if isinstance(v, InputSeq):
            return self._select_input(v, d % 5, i)
        if isinstance(v, (Frame, Vec)) and v.t is None and d % (5 if isinstance(v, Frame) else 3) == 1:
            return Frame(v.vid, v.C, v.H, v.W, i % self.T) if isinstance(v, Frame) else Vec(v.vid, v.n, i % self.T, v.order)
        self.fail(f"select on {fc.describe(v) if isinstance(v, fc.PENDING) else type(v).__name__} "
                  f"along axis {d}; only frames of a sequence (x[:, t]) are supported")

    def op_unbind(self, a):
        v, d = a["self"], a["dim"]
        return [self.op_select({"self": v, "dim": d, "index": t}) for t in range(self.T if
                not isinstance(v, InputSeq) else self.in_shape[v.perm[d % 5]])]

    def op_permute(self, a):
        v, dims = a["self"], [d % 5 for d in a["dims"]]
        if not isinstance(v, InputSeq):
            self.fail("permute of a per-frame value (only the model input's batch/time axes may be swapped)")
        p = tuple(v.perm[d] for d in dims)
        if p[2:] != (2, 3, 4):
            self.fail(f"permute {dims} of the input moves its channel/height/width axes")
        return InputSeq(p)

    def op_transpose(self, a):
        d0, d1 = a["dim0"] % 5, a["dim1"] % 5
        dims = list(range(5))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return self.op_permute({"self": a["self"], "dims": dims})

    def op_stack(self, a):
        vals = a["tensors"]
        if not all(isinstance(v, (Frame, Vec)) and v.t is not None for v in vals):
            self.fail("stack of values that are not per-frame values of single steps")
        if any(v.vid != vals[0].vid for v in vals) or [v.t for v in vals] != list(range(self.T)):
            self.fail(f"stack over steps {[v.t for v in vals]} of differently computed values; "
                      f"lstm-infer needs all {self.T} steps of one per-frame value, in order")
        if a["dim"] != 1:
            self.fail(f"stack along dim {a['dim']}; frames are gathered along dim 1 (B, T, ...)")
        v = vals[0]
        return Frame(v.vid, v.C, v.H, v.W, None) if isinstance(v, Frame) else Vec(v.vid, v.n, None, v.order)

    # ---- the cell -----------------------------------------------------------
    def op_cat(self, a):
        vals = a["tensors"]
        if a["dim"] % 4 != 1 or len(vals) != 2 or not isinstance(vals[0], Frame) or vals[0].t is None:
            self.fail("concatenation other than a ConvLSTM cell's cat([x_t, h], dim=1)")
        h = vals[1]
        if not (torch_module().is_tensor(h) or (isinstance(h, Frame) and h.t is not None)):
            self.fail(f"cat([x, h]) with h {fc.describe(h)}")
        return fc.XH(vals[0], h)

    def op_conv2d(self, a):
        x, w, b = a["input"], a["weight"], a.get("bias")
        stride, pad = tuple(a["stride"]), a["padding"]
        dil, groups = tuple(a["dilation"]), a["groups"]
        if not torch_module().is_tensor(w) or (b is not None and not torch_module().is_tensor(b)):
            self.fail("a convolution whose weights are computed from the input")
        kh, kw = int(w.shape[2]), int(w.shape[3])
        if isinstance(pad, str):
            pad = (kh // 2, kw // 2) if pad == "same" else (0, 0)
        pad = tuple(pad)
        if isinstance(x, fc.XH):
            return self._cell_conv(x, w, b, stride, pad, dil, groups)
        if isinstance(x, Frame) and x.t is not None:
            if (kh, kw) != (1, 1) or stride != (1, 1) or pad != (0, 0) or groups != 1:
                self.fail(f"a Conv2d with kernel ({kh}, {kw}), stride {stride}, padding {pad}, "
                          f"groups {groups} on a frame; lstm-infer folds a ConvLSTM cell whose gates "
                          "are one convolution over cat([x, h]) (stride 1, padding kernel//2), and "
                          "takes other convolutions on frames only as 1x1 heads")
            O, P = int(w.shape[0]), x.H * x.W
            Wt = to_numpy(w)[:, :, 0, 0].T           # (C, O) = weight[:, :, 0, 0].T
            bias = None if b is None else np.tile(to_numpy(b), P)
            vid = self.emit("Linear", [x.vid], {"in_features": P * x.C, "out_features": P * O,
                                                "groups": P},
                            {"W": np.tile(Wt, (1, P)), "bias": bias}, key=("conv1x1", id(w), id(b), x.vid))
            return Frame(vid, O, x.H, x.W, x.t)
        self.fail(f"conv2d on {fc.describe(x) if isinstance(x, fc.PENDING) else type(x).__name__}")

    def op_convolution(self, a):
        if a.get("transposed"):
            self.fail("transposed convolution")
        return self.op_conv2d(a)

    def _cell_conv(self, xh: fc.XH, w, b, stride, pad, dil, groups):
        x, h = xh.x, xh.h
        kh, kw = int(w.shape[2]), int(w.shape[3])
        M, Cin = int(w.shape[0]), int(w.shape[1])
        F = Cin - x.C
        if M != 4 * F or F < 1:
            self.fail(f"a conv over cat([x, h]) with {Cin} input channels ({x.C} from x) and {M} "
                      f"outputs; a ConvLSTM cell has 4 * F outputs for F = {Cin} - {x.C} hidden channels")
        if stride != (1, 1):
            self.fail(f"a conv with stride {stride} in the ConvLSTM cell; the cell's convolution "
                      "must keep the frame size (stride 1)")
        if dil != (1, 1) or groups != 1:
            self.fail(f"a conv with dilation {dil} and groups {groups} in the ConvLSTM cell; "
                      "supported: dilation 1, groups 1")
        if kh % 2 == 0 or kw % 2 == 0 or pad != (kh // 2, kw // 2):
            self.fail(f"a conv with kernel ({kh}, {kw}) and padding {pad} in the ConvLSTM cell; "
                      "supported: odd kernels with padding kernel//2 (the frame keeps its size)")
        hshape = (F, x.H, x.W)
        if (isinstance(h, Frame) and (h.C, h.H, h.W) != hshape) or (
                not isinstance(h, Frame) and tuple(h.shape[1:]) != hshape):
            self.fail(f"h of the ConvLSTM cell does not have shape (B, {F}, {x.H}, {x.W})")
        key = (id(w), id(b), x.vid)
        step = fc.CellStep(key, x.t, x, h, w, b, (kh, kw), F)
        return fc.Gates(step)

    def op_split(self, a):
        g = a["self"]
        if not isinstance(g, fc.Gates) or a["dim"] % 4 != 1:
            return self._not_cell("split", g)
        F = g.step.F
        size = a.get("split_size") or a.get("split_sizes")
        sizes = [size] * (4 * F // size) if isinstance(size, int) else list(size)
        if sizes != [F] * 4:
            self.fail(f"the gates of a ConvLSTM cell (4 x {F} channels) split into {sizes}")
        return [fc.Part(g.step, k) for k in range(4)]

    op_split_with_sizes = op_split

    def op_chunk(self, a):
        g = a["self"]
        if not isinstance(g, fc.Gates) or a["chunks"] != 4 or a["dim"] % 4 != 1:
            return self._not_cell("chunk", g)
        return [fc.Part(g.step, k) for k in range(4)]

    def _not_cell(self, op: str, v):
        if isinstance(v, fc.PENDING):
            raise fc.refuse(self.where(), op, v)
        self.fail(f"{op} of {type(v).__name__}")

    def _activation(self, kind: str, a):
        v = a["self"]
        if isinstance(v, fc.Part):
            if kind not in ("sigmoid", "tanh"):
                raise fc.refuse(self.where(), kind, v)
            return fc.Act(v.step, v.k, kind)
        if isinstance(v, fc.NewC) and kind == "tanh":
            return fc.TanhC(v.step)
        if isinstance(v, (Frame, Vec)) and v.t is not None:
            n = v.C * v.H * v.W if isinstance(v, Frame) else v.n
            vid = self.emit("Activation", [v.vid], {"kind": kind, "size": n}, {}, key=(kind, v.vid))
            return type(v)(vid, *([v.C, v.H, v.W] if isinstance(v, Frame) else [v.n]), v.t,
                           *([] if isinstance(v, Frame) else [v.order]))
        return self._not_cell(kind, v)

    def op_sigmoid(self, a):
        return self._activation("sigmoid", a)

    def op_tanh(self, a):
        return self._activation("tanh", a)

    def op_relu(self, a):
        return self._activation("relu", a)

    def op_mul(self, a):
        x, y = a["self"], a["other"]
        for p, q in ((x, y), (y, x)):
            if isinstance(p, fc.Act) and p.kind == "sigmoid":
                s = p.step
                if isinstance(q, fc.TanhC) and q.step is s:
                    return self._finish(s, p.k)
                if isinstance(q, fc.Act) and q.step is s and q.kind == "tanh":
                    self._role(s, p.k, "i")
                    self._role(s, q.k, "g")
                    return fc.Prod(s, "ig")
                if isinstance(q, fc.NewC) or torch_module().is_tensor(q):
                    self._role(s, p.k, "f")
                    s.c_in = q
                    return fc.Prod(s, "fc")
        pend = x if isinstance(x, fc.PENDING) else y
        return self._not_cell("mul", pend)

    def op_add(self, a):
        x, y = a["self"], a["other"]
        alpha = a.get("alpha", 1)
        if isinstance(x, fc.Part) and not _abstract(y):
            return self._shift(x, y, alpha)
        if isinstance(y, fc.Part) and not _abstract(x) and alpha == 1:
            return self._shift(y, x, 1)
        if (isinstance(x, fc.Prod) and isinstance(y, fc.Prod) and x.step is y.step
                and {x.kind, y.kind} == {"fc", "ig"} and a.get("alpha", 1) == 1):
            return fc.NewC(x.step)
        pend = x if isinstance(x, fc.PENDING) else y
        return self._not_cell("add", pend)

    def op_sub(self, a):
        if isinstance(a["self"], fc.Part) and not _abstract(a["other"]):
            return self._shift(a["self"], a["other"], -a.get("alpha", 1))
        pend = next(v for v in (a["self"], a["other"]) if isinstance(v, fc.PENDING))
        return self._not_cell("sub", pend)

    def _shift(self, part: fc.Part, const, scale) -> fc.Part:
        """A constant scalar or per-channel term added to a gate block: folded into the bias."""
        v = to_numpy(torch_module().as_tensor(const, dtype=torch_module().float32)) * np.float32(scale)
        F = part.step.F
        if v.size == 1 or (v.ndim >= 3 and v.shape[-3] == F and v.size == F):
            part.step.shift[part.k] = part.step.shift.get(part.k, 0) + np.broadcast_to(v.reshape(-1), (F,))
            return part
        raise fc.refuse(self.where(), "add", part)

    def _role(self, s: fc.CellStep, k: int, role: str) -> None:
        if s.roles.get(k, role) != role or (role in s.roles.values() and s.roles.get(k) != role):
            self.fail(f"gate block {k} of the ConvLSTM cell is used as {role!r} and as "
                      f"{s.roles.get(k)!r}; expected {fc.PATTERN}")
        s.roles[k] = role

    def _init_state(self, v, F: int, H: int, W: int, what: str) -> np.ndarray:
        a = to_numpy(v)
        if a.ndim != 4 or a.shape[1:] != (F, H, W) or not np.all(a == a[:1]):
            self.fail(f"the first call of the ConvLSTM cell gets a {what} that is not one constant "
                      f"(B, {F}, {H}, {W}) frame for every batch element")
        return a[0].transpose(1, 2, 0).reshape(-1)  # (F, H, W) -> channels-last

    def _finish(self, s: fc.CellStep, k_o: int) -> Frame:
        """h = o * tanh(c): emit the cell's node at its first call, continue it after."""
        self._role(s, k_o, "o")
        order = "".join(s.roles.get(k, "?") for k in range(4))
        if sorted(order) != sorted("ifgo"):
            self.fail(f"the ConvLSTM cell's gate blocks play the roles {order!r}; expected {fc.PATTERN}")
        x, F = s.x, s.F
        rec = self.cells.get(s.key)
        if rec is None:
            h0 = s.h_in
            if isinstance(h0, Frame) or isinstance(s.c_in, fc.NewC):
                self.fail("the first call of the ConvLSTM cell gets a state computed from the "
                          "input; initial states must be zeros or constants")
            kh, kw = s.kernel
            bias = fc.folded_bias(None if s.bias is None else to_numpy(s.bias), s.shift, F)
            weights = fc.weights_from_torch(to_numpy(s.weight), bias, x.C, order)
            for role, v, what in (("h0", h0, "h"), ("c0", s.c_in, "c")):
                init = self._init_state(v, F, x.H, x.W, what)
                if init.any():  # zeros are the op's default: not stored
                    weights[role] = init
            attrs = {"in_height": x.H, "in_width": x.W, "in_channels": x.C, "filters": F,
                     "kernel_size": [kh, kw], "pads": [kh // 2, kw // 2, kh // 2, kw // 2]}
            vid = self.emit("ConvLSTM", [x.vid], attrs, weights)
            self.cells[s.key] = fc.CellLoop(self.nodes[-1], vid, F, x.H, x.W, x.t, x.t, order,
                                            _shift_key(s.shift))
            return Frame(vid, F, x.H, x.W, x.t)
        if order != rec.order:
            self.fail(f"the ConvLSTM cell uses gate order {order!r} at frame {x.t} and "
                      f"{rec.order!r} before")
        if _shift_key(s.shift) != rec.shift:
            self.fail(f"the constants added to the ConvLSTM cell's gates differ at frame {x.t}")
        h, c = s.h_in, s.c_in
        ok_h = isinstance(h, Frame) and h.vid == rec.out and h.t == rec.t_last
        ok_c = isinstance(c, fc.NewC) and c.step.key == s.key and c.step.t == rec.t_last
        if not (ok_h and ok_c):
            self.fail(f"the state passed to the ConvLSTM cell at frame {x.t} is not the (h, c) "
                      "that cell returned at its previous call")
        if x.t != rec.t_last + 1:
            self.fail(f"the ConvLSTM cell is called at frame {rec.t_last} and then at {x.t}; a "
                      "cell loop must visit consecutive frames forwards")
        rec.t_last = x.t
        return Frame(rec.out, F, x.H, x.W, x.t)

    # ---- heads -------------------------------------------------------------
    def _flatten(self, v) -> Vec:
        if not isinstance(v, Frame) or v.t is None:
            self._not_cell("flatten", v)
        order = None
        if v.C > 1:  # torch flattens (C, H, W); the IR holds (H, W, C)
            order = tuple(int(i) for i in np.argsort(channels_last_index(v.C, v.H, v.W)))
        return Vec(v.vid, v.C * v.H * v.W, v.t, order)

    def op_flatten(self, a):
        v = a["self"]
        if a["start_dim"] != 1 or a["end_dim"] not in (-1, 3):
            self.fail("flatten other than flatten(h, 1) of a frame")
        return self._flatten(v)

    def op_view(self, a):
        v = a["self"]
        shp = [size_hint(s) for s in a.get("size") or a.get("shape")]
        if isinstance(v, Frame) and len(shp) == 2 and (shp[1] == -1 or shp[1] == v.C * v.H * v.W):
            return self._flatten(v)
        return self._not_cell("view/reshape", v)

    op_reshape = op_view
    op__unsafe_view = op_view

    def op_linear(self, a):
        v, w, b = a["input"], a["weight"], a.get("bias")
        if not isinstance(v, Vec) or v.t is None:
            return self._not_cell("linear", v)
        Wt = to_numpy(w).T                          # (in, out) = weight.T
        if v.order is not None:                     # rows in the IR's channels-last order
            Wir = np.empty_like(Wt)
            Wir[np.asarray(v.order)] = Wt
            Wt = Wir
        vid = self.emit("Linear", [v.vid], {"in_features": v.n, "out_features": int(Wt.shape[1])},
                        {"W": Wt, "bias": None if b is None else to_numpy(b)},
                        key=("linear", id(w), id(b), v.vid))
        return Vec(vid, int(Wt.shape[1]), v.t)


def _shift_key(shift: dict) -> tuple:
    return tuple(sorted((k, tuple(float(e) for e in v)) for k, v in shift.items()))


def analyse_frames(ep, options: dict) -> tuple[FrameWalk, list[FrameOutput]]:
    w = FrameWalk(ep, options)
    outs = w.run()
    need = {o.vid for o in outs}
    for n in reversed(w.nodes):
        if n["out"] in need:
            need.update(n["inputs"])
    w.nodes = [n for n in w.nodes if n["out"] in need]
    return w, outs


def write_frames(w: FrameWalk, outs: list[FrameOutput], path, source: str | None) -> None:
    from lstm_infer.builder import GraphBuilder
    _, _, C, H, W = w.in_shape
    b = GraphBuilder(w.input_name, C * H * W, shape=(C, H, W))
    names = {"%in": w.input_name}
    for n in w.nodes:
        names[n["out"]] = b.add(n["op"], n["name"] or "node", [names[i] for i in n["inputs"]],
                                n["attrs"], n["weights"])
    used = set()
    for o in outs:
        value = names[o.vid]
        if o.vid == "%in" or value in used:
            value = b.add("Activation", f"output{o.index}", [value],
                          {"kind": "identity", "size": b.sizes[value]})
        used.add(value)
        o.name = value
        b.output(value, o.label, shape=o.shape if o.shape and len(o.shape) > 1 else None)
    import torch
    b.save(path, source=source, converter="lstm-infer torch importer (frames)",
           torch_version=torch.__version__,
           torch_input_layout="BTCHW" if w.t_axis != 0 else "TBCHW",
           torch_outputs=[{"index": o.index, "label": o.label, "kind": o.kind} for o in outs])
