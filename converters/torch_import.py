"""PyTorch importer: an `nn.Module` (via `torch.export`), a `.pt2` file or a state_dict
file into the `.lstm` format.

How it works
------------
The module is exported with `torch.export.export(module.eval(), (example_input,))`. The
exported graph keeps recurrent layers as single ops (`aten.lstm.input`, `aten.gru.input`,
`aten.rnn_tanh.input`, `aten.rnn_relu.input`) and cell calls (`aten.lstm_cell`, ...) as
one op per call. `_Walker` interprets that graph abstractly: every FX value becomes

* a torch tensor (`Const`): parameters, buffers and everything computed from them only
  (folded with torch itself, e.g. `torch.zeros(...)` initial states);
* a `Val`: a per-step value of the emitted graph, with the role of each torch dimension
  ('T' time, 'B' batch, 'F' features, or a symbol still to be resolved) and either the
  whole sequence (`t is None`) or the value at one time step `t`;
* a `StateStack` (`h_n` / `c_n` of a recurrent op) or `CellC` (an LSTM cell's `c`).

Per-step ops are hash-consed (key: op, attributes, weight contents, input values), so a
Python loop over an `nn.LSTMCell` that export unrolled into T calls folds back into one
recurrent node: every call after the first must receive exactly the state the same cell
returned at the previous step, and `torch.stack` over all T steps of one value becomes a
per-step value again.

Last-step models
----------------
lstm-infer emits one output row per time step: the row for step t is what the model
returns when the sequence ends at step t. A model whose forward returns only the last
step (`fc(out[:, -1])`, `fc(h_n[-1])`, the last `h` of a cell loop) therefore converts to
a per-step output: `run(X)` returns (T, O) whose last row equals the torch output, and a
stream yields the model's answer after every step. (For a bidirectional layer only the
last row has that meaning; the conversion report says so.)

Limits (each raises `converters.ConversionError` naming the op and module)
-----------------------------------------------------------------------------
One input sequence; initial states must be zeros or constants (not model inputs);
reductions over time other than taking the last step, batch indexing, convolutions,
attention and anything outside `SUPPORTED` are rejected.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import operator
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConversionError, UnsupportedOpError
from .report import ConversionReport, VerifyReport

__all__ = ["convert_torch", "convert_torch_file", "verify_torch_file", "SUPPORTED"]

SUPPORTED = (
    "modules: nn.LSTM (batch_first, num_layers, bidirectional, proj_size, bias, dropout), "
    "nn.GRU, nn.RNN (tanh/relu), nn.LSTMCell/nn.GRUCell/nn.RNNCell in a Python loop over time, "
    "nn.Linear, nn.LayerNorm (last dim), nn.Dropout, nn.Identity, nn.ReLU, nn.Tanh, nn.Sigmoid, "
    "nn.GELU (incl. approximate='tanh'), nn.LeakyReLU, nn.ELU, nn.Softplus, nn.SiLU, "
    "nn.Softmax/nn.LogSoftmax (last dim); tensor ops: + - * / with a constant or between two "
    "per-step values, torch.cat on the feature dim, torch.stack/cat over time of a cell loop, "
    "out[:, -1] / h_n[-1] (last step), slicing features, transpose/permute/squeeze/unsqueeze/"
    "view bookkeeping")

_KNOWN_OPTIONS = {"outputs", "lengths", "seed", "tolerance", "rnn_nonlinearity",
                  "layernorm_eps", "batch_size"}


# --------------------------------------------------------------------------------------
# abstract values
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Val:
    """A per-step value of the emitted graph as the torch graph sees it."""
    vid: str                  # IR value id
    size: int                 # feature size (1 when the feature dim was squeezed away)
    dims: tuple               # role symbol per torch dim
    shape: tuple              # torch shape in the exported graph
    t: int | None             # None: the whole sequence; k: only time step k


@dataclass
class StateStack:
    """`h_n` or `c_n` of a recurrent op: one entry per (layer, direction)."""
    kind: str                             # 'h' or 'c'
    entries: list                         # [(vid or None, reverse, size)]
    dims: tuple                           # ('L', batch..., feature)
    shape: tuple
    module: str


@dataclass(frozen=True)
class CellC:
    """The `c` state returned by an LSTM cell call at step t."""
    key: tuple
    t: int


@dataclass
class _Cell:
    node: dict
    out: str
    t_first: int
    t_last: int
    direction: int = 0        # 0 unknown (one call so far), +1 forward, -1 reverse
    where: str = ""


@dataclass
class OutputSpec:
    index: int                # position in the flattened torch outputs
    label: str
    vid: str
    kind: str                 # 'seq' or 'last'
    dims: tuple               # resolved roles of the torch output's dims ('T','B','F','1')
    name: str = ""            # graph value name, filled at emission
    prefix_ok: bool = True    # rows before the last are prefix results (no reverse layer)


@dataclass
class TorchSpec:
    """What verification needs to feed torch and compare: layouts and output kinds."""
    input_dims: tuple         # e.g. ('B', 'T', 'F'), ('T', 'B', 'F') or ('T', 'F')
    example_shape: tuple
    input_size: int
    outputs: list = field(default_factory=list)
    streamable: bool = True


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _fail(msg: str):
    raise ConversionError(msg)


def _np(t) -> np.ndarray:
    return t.detach().cpu().to(dtype=_torch().float32).contiguous().numpy()


def _torch():
    import torch
    return torch


def _opname(target) -> str:
    if isinstance(target, str):
        return target
    name = getattr(target, "name", None)
    if callable(name):
        try:
            return name().replace("::", ".")
        except Exception:
            pass
    return getattr(target, "__name__", str(target))


def _packet(target) -> str:
    p = getattr(target, "overloadpacket", None)
    return p.__name__ if p is not None else getattr(target, "__name__", str(target))


def _bind(target, args, kwargs) -> dict:
    """Arguments by schema name with defaults filled in."""
    out = {}
    pos = 0
    for a in target._schema.arguments:
        if not a.kwarg_only and pos < len(args):
            out[a.name] = args[pos]
            pos += 1
        elif a.name in kwargs:
            out[a.name] = kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def _hint(v) -> int:
    torch = _torch()
    if isinstance(v, int):
        return v
    if isinstance(v, torch.SymInt):
        try:
            from torch.fx.experimental.symbolic_shapes import hint_int
            return int(hint_int(v))
        except Exception:
            return int(v.node.hint)
    return int(v)


def _shape(node) -> tuple:
    v = node.meta.get("val")
    return tuple(_hint(s) for s in v.shape) if hasattr(v, "shape") else ()


def _module_of(node) -> tuple[str, str]:
    """(path, class name) of the innermost module that produced an FX node."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    if not isinstance(cls, str):
        cls = f"{cls.__module__}.{cls.__qualname__}"
    return path, cls


def _is_tensor(v) -> bool:
    return isinstance(v, _torch().Tensor)


def _has_abstract(v) -> bool:
    if isinstance(v, (Val, StateStack, CellC)):
        return True
    if isinstance(v, (list, tuple)):
        return any(_has_abstract(x) for x in v)
    return False


# Ops whose result depends only on the *shape* of their tensor argument.
_SHAPE_ONLY = {"zeros_like", "ones_like", "full_like", "new_zeros", "new_ones", "new_full",
               "empty_like", "new_empty"}
_IDENTITY = {"clone", "contiguous", "alias", "detach", "lift_fresh_copy", "lift_fresh",
             "alias_copy", "detach_copy", "clone_copy"}
_DROPOUT = {"dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout"}
_ELEMENTWISE = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}


# --------------------------------------------------------------------------------------
# the walker
# --------------------------------------------------------------------------------------
class _Walker:
    def __init__(self, ep, options: dict):
        self.ep = ep
        self.options = options
        self.nodes: list[dict] = []          # IR nodes in topological order
        self.sizes: dict[str, int] = {}      # vid -> feature size
        self.memo: dict[tuple, str] = {}     # hash-consing of per-step ops
        self.alias: dict[str, str] = {}      # role symbol -> role/symbol
        self.T: int | None = None
        self.cells: dict[tuple, _Cell] = {}
        self.warnings: list[str] = []
        self._digests: dict[int, tuple] = {}
        self._n = 0
        self.cur = None
        self.input_val: Val | None = None
        self.input_name = "x"

    # ---- diagnostics ---------------------------------------------------------------
    def where(self, node=None) -> str:
        node = node if node is not None else self.cur
        if node is None:
            return ""
        path, cls = _module_of(node)
        s = f"{_opname(node.target)} (graph node {node.name!r}"
        if path or cls:
            s += f" in module {path or '<root>'!r} ({cls})"
        return s + ")"

    def fail(self, msg: str):
        _fail(f"{msg}; at {self.where()}")

    # ---- roles ---------------------------------------------------------------------
    def fresh(self, base: str = "u") -> str:
        self._n += 1
        return f"?{base}{self._n}"

    def res(self, r: str) -> str:
        while r in self.alias:
            r = self.alias[r]
        return r

    def bind(self, r: str, role: str) -> None:
        a, b = self.res(r), self.res(role)
        if a == b:
            return
        if not a.startswith("?") and not b.startswith("?"):
            self.fail(f"a tensor dimension is used both as {_ROLE_NAMES[a]} and as {_ROLE_NAMES[b]}")
        if a.startswith("?"):
            self.alias[a] = b
        else:
            self.alias[b] = a

    def roles(self, v: Val) -> list[str]:
        return [self.res(d) for d in v.dims]

    def check_dims(self, v: Val) -> None:
        rs = [r for r in self.roles(v) if not r.startswith("?")]
        if len(rs) != len(set(rs)):
            self.fail(f"inconsistent time/batch/feature axes {self.roles(v)}")

    def set_T(self, n: int) -> None:
        if self.T is None:
            self.T = n
        elif self.T != n:
            self.fail(f"time axis of length {n} does not match the input's {self.T} steps")

    def fdim(self, v: Val) -> int | None:
        for i, r in enumerate(self.roles(v)):
            if r == "F":
                return i
        return None

    def need_last_feature(self, v: Val, what: str) -> None:
        if not v.dims:
            self.fail(f"{what} on a value without a feature axis")
        r = self.res(v.dims[-1])
        if r in ("T", "B"):
            self.fail(f"{what} acts on the {_ROLE_NAMES[r]} axis, not on the features of one "
                      "time step")
        self.bind(v.dims[-1], "F")
        if v.shape[-1] != v.size:
            self.fail(f"{what}: feature size {v.shape[-1]} != tracked size {v.size}")

    # ---- IR ------------------------------------------------------------------------
    def digest(self, t) -> tuple:
        if t is None:
            return ("-",)
        if isinstance(t, np.ndarray):
            a = np.ascontiguousarray(t, dtype=np.float32)
            return (hashlib.sha1(a.tobytes()).hexdigest(), a.shape)
        if not _is_tensor(t):
            return ("s", repr(t))
        hit = self._digests.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
        a = _np(t)
        d = (hashlib.sha1(a.tobytes()).hexdigest(), a.shape)
        self._digests[id(t)] = (t, d)
        return d

    def emit(self, op: str, name: str, inputs: list[str], attrs: dict, weights: dict,
             size: int, key_extra: tuple = (), memo: bool = True) -> str:
        key = None
        if memo:
            key = (op, tuple(sorted((k, repr(v)) for k, v in attrs.items())),
                   tuple((r, self.digest(w)) for r, w in sorted(weights.items())),
                   tuple(inputs)) + key_extra
            hit = self.memo.get(key)
            if hit is not None:
                return hit
        vid = f"%{len(self.nodes)}"
        ws = {r: (None if w is None else (_np(w) if _is_tensor(w) else np.asarray(w, np.float32)))
              for r, w in weights.items()}
        self.nodes.append({"op": op, "name": name or "node", "inputs": list(inputs),
                           "attrs": dict(attrs), "weights": ws, "out": vid})
        self.sizes[vid] = int(size)
        if key is not None:
            self.memo[key] = vid
        return vid

    def node_name(self, suffix: str = "") -> str:
        path, _ = _module_of(self.cur)
        base = path if path else self.cur.name
        return base + suffix

    def derive(self, v: Val, vid: str, size: int | None = None, shape=None, dims=None) -> Val:
        return Val(vid, v.size if size is None else size, v.dims if dims is None else tuple(dims),
                   _shape(self.cur) if shape is None else tuple(shape), v.t)

    # ---- per-step building blocks --------------------------------------------------
    def linear(self, v: Val, W: np.ndarray, b: np.ndarray | None, name: str) -> Val:
        """y = x W + b, W (in, out) in our layout."""
        self.need_last_feature(v, "a linear map")
        W = np.asarray(W, np.float32)
        vid = self.emit("Linear", name, [v.vid], {"in_features": int(W.shape[0]),
                                                  "out_features": int(W.shape[1])},
                        {"W": W, "bias": b}, W.shape[1])
        return self.derive(v, vid, size=int(W.shape[1]))

    def affine(self, v: Val, scale, shift, name: str) -> Val:
        """x * scale + shift (scale/shift scalars or per-feature vectors) as an exact Linear:
        W = diag(scale), so y_j = x_j * s_j + sum of exact zeros."""
        F = v.size
        scale = np.broadcast_to(np.asarray(scale, np.float32), (F,))
        W = np.diag(scale).astype(np.float32)
        b = None if shift is None else np.broadcast_to(np.asarray(shift, np.float32), (F,)).copy()
        if self.fdim(v) is None and F == 1:
            vid = self.emit("Linear", name, [v.vid], {"in_features": 1, "out_features": 1},
                            {"W": W, "bias": b}, 1)
            return self.derive(v, vid)
        return self.linear(v, W, b, name)

    def activation(self, v: Val, kind: str, alpha: float | None = None, name: str = "") -> Val:
        attrs = {"kind": kind, "size": v.size}
        if alpha is not None:
            attrs["alpha"] = float(alpha)
        vid = self.emit("Activation", name or self.node_name(), [v.vid], attrs, {}, v.size)
        return self.derive(v, vid)

    def const_vector(self, c, v: Val, what: str) -> np.ndarray:
        """A constant that broadcasts against v along the feature dim only -> (F,) or scalar."""
        torch = _torch()
        c = torch.as_tensor(c, dtype=torch.float32)
        if c.dim() > len(v.shape):
            self.fail(f"{what}: constant of shape {tuple(c.shape)} has more dims than the value")
        fd = self.fdim(v)
        if fd is None and v.shape and v.shape[-1] == v.size and v.size > 1:
            self.bind(v.dims[-1], "F")
            fd = len(v.dims) - 1
        for k in range(1, c.dim() + 1):
            i = len(v.shape) - k
            if c.shape[-k] != 1 and i != fd:
                self.fail(f"{what}: a constant of shape {tuple(c.shape)} varies along the "
                          f"{_ROLE_NAMES.get(self.res(v.dims[i]), 'batch/time')} axis; only "
                          "per-feature constants are supported")
        a = _np(c).reshape(-1)
        if a.size not in (1, v.size):
            self.fail(f"{what}: constant of shape {tuple(c.shape)} does not match {v.size} features")
        return a

    def same_layout(self, a: Val, b: Val, what: str) -> None:
        if a.t != b.t:
            if a.t is None or b.t is None:
                self.fail(f"{what} combines a whole sequence with the value of a single time "
                          "step (broadcast over time is not a per-step op)")
            self.fail(f"{what} combines values from different time steps ({a.t} and {b.t}); "
                      "note that h_n of a reverse-direction (bidirectional) layer is its state at "
                      "step 0, not at the last step")
        if len(a.dims) != len(b.dims) or a.shape != b.shape:
            self.fail(f"{what}: operands of shapes {a.shape} and {b.shape} (broadcasting between "
                      "per-step values is not supported)")
        for x, y in zip(a.dims, b.dims):
            self.bind(x, y)

    # ---- driver --------------------------------------------------------------------
    def run(self):
        torch = _torch()
        ep = self.ep
        sig = ep.graph_signature
        from torch.export.graph_signature import InputKind, OutputKind
        params: dict[str, Any] = {}
        user_inputs = []
        for spec in sig.input_specs:
            name = getattr(spec.arg, "name", None)
            if spec.kind == InputKind.USER_INPUT:
                user_inputs.append(name)
            elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
                t = ep.state_dict.get(spec.target)
                if t is None:
                    t = ep.constants.get(spec.target)
                if t is None:
                    _fail(f"the exported program has no value for {spec.target!r}")
                params[name] = t.detach()
            else:
                _fail(f"exported programs with {spec.kind.name} inputs are not supported")
        graph = ep.graph
        placeholders = {n.name: n for n in graph.nodes if n.op == "placeholder"}
        tensor_inputs = [n for n in user_inputs if hasattr(placeholders[n].meta.get("val"), "shape")]
        if len(tensor_inputs) != 1:
            _fail(f"the model takes {len(tensor_inputs)} tensor inputs ({', '.join(tensor_inputs)}); "
                  "lstm-infer models take exactly one input sequence. An initial state passed as "
                  "a model input is not supported for PyTorch import yet: create it inside "
                  "forward() as zeros or a constant")
        self.check_not_decomposed(graph)
        out_node = next(n for n in graph.nodes if n.op == "output")
        flat_outs = list(out_node.args[0]) if isinstance(out_node.args[0], (list, tuple)) else [out_node.args[0]]
        user_outs = [(i, a) for i, (a, s) in enumerate(zip(flat_outs, sig.output_specs))
                     if s.kind == OutputKind.USER_OUTPUT]
        wanted = self.options.get("outputs")
        if wanted is not None:
            try:
                sel = [user_outs[int(k)] for k in wanted]
            except (IndexError, TypeError, ValueError):
                _fail(f"option outputs={wanted!r}: the model has {len(user_outs)} outputs "
                      f"(indices 0..{len(user_outs) - 1})")
            sel = [(int(k), a) for k, (_, a) in zip(wanted, sel)]
        else:
            sel = [(k, a) for k, (_, a) in enumerate(user_outs)]
        # Only nodes that selected outputs depend on are interpreted.
        needed: set = set()
        stack = [a for _, a in sel if isinstance(a, torch.fx.Node)]
        while stack:
            n = stack.pop()
            if n in needed:
                continue
            needed.add(n)
            stack.extend(n.all_input_nodes)
        env: dict = {}
        self.env = env
        for node in graph.nodes:
            if node not in needed:
                continue
            self.cur = node
            if node.op == "placeholder":
                if node.name in params:
                    env[node] = params[node.name]
                elif node.name in tensor_inputs:
                    shp = _shape(node)
                    if len(shp) not in (2, 3):
                        _fail(f"model input {node.name!r} has shape {shp}; expected (B, T, I), "
                              "(T, B, I) or (T, I)")
                    self.input_name = node.name
                    dims = (("?s0", "?s1", "F") if len(shp) == 3 else ("?s0", "F"))
                    self.input_val = Val("%in", shp[-1], dims, shp, None)
                    self.sizes["%in"] = shp[-1]
                    env[node] = self.input_val
                else:  # a non-tensor user input was specialised by export
                    env[node] = node.meta.get("val")
            elif node.op == "get_attr":
                env[node] = getattr(ep.graph_module, node.target)
            elif node.op == "call_function":
                env[node] = self.call(node)
            else:
                self.fail(f"unsupported FX node kind {node.op!r}")
        self.cur = None
        if self.input_val is None:
            _fail("no selected output depends on the model input")
        outs = []
        for k, a in sel:
            # User-facing output names: "output" for a one-output model, else "output<k>" with k
            # the position in the model's flattened return value (as option `outputs` counts).
            label = "output" if len(user_outs) == 1 else f"output{k}"
            v = env.get(a) if isinstance(a, torch.fx.Node) else a
            if isinstance(v, (StateStack, CellC)) and wanted is None:
                what = ("the final states h_n/c_n of " + v.module if isinstance(v, StateStack)
                        else "the cell state c of a cell loop")
                self.warnings.append(
                    f"output {k} ({label}) is {what}: dropped, because the engine keeps "
                    "recurrent state itself (Stream.get_state())")
                continue
            outs.append((k, label, a, v))
        if not outs:
            _fail("the model has no output that lstm-infer can emit per time step")
        self.finish_roles()
        specs = []
        for k, label, a, v in outs:
            self.cur = a if isinstance(a, torch.fx.Node) else None
            specs.append(self.output_spec(k, label, v))
        self.cur = None
        self.finish_cells()
        return specs

    def check_not_decomposed(self, graph) -> None:
        """A recurrent module whose op was decomposed into mm/view/... (run_decompositions)
        cannot be recognised; say so instead of failing on the first primitive op."""
        rnn_ops = {"lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell",
                   "rnn_relu_cell"}
        seen, found = {}, set()
        for n in graph.nodes:
            if n.op != "call_function":
                continue
            path, cls = _module_of(n)
            if cls.rsplit(".", 1)[-1] in ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"):
                seen.setdefault(path, cls)
                if _packet(n.target) in rnn_ops:
                    found.add(path)
        for path, cls in seen.items():
            if path not in found:
                _fail(f"module {path or '<root>'!r} ({cls}) was decomposed into primitive ops (was "
                      "the program passed through run_decompositions()?); convert the program "
                      "straight from torch.export.export, which keeps recurrent layers as one op")

    def finish_roles(self) -> None:
        """Input axes that no op pinned down: (B, T, I) for 3-D, (T, I) for 2-D inputs."""
        roles = self.roles(self.input_val)
        free = [d for d, r in zip(self.input_val.dims, roles) if r.startswith("?")]
        left = [r for r in (("B", "T") if len(roles) == 3 else ("T",)) if r not in roles]
        for d, r in zip(free, left):
            self.alias[self.res(d)] = r
        ti = [i for i, r in enumerate(self.roles(self.input_val)) if r == "T"]
        if ti:
            self.set_T(self.input_val.shape[ti[0]])

    def finish_cells(self) -> None:
        for key, c in self.cells.items():
            start = (self.T - 1) if c.direction < 0 else 0
            if c.t_first != start:
                _fail(f"the loop over {c.where} starts at time step {c.t_first}, not at step "
                      f"{start}; lstm-infer folds a cell loop only when it runs over every step")
            # A loop that stops early is fine as long as nothing needs the steps it skipped:
            # outputs and torch.stack check which time steps they get.
            if c.direction < 0:
                c.node["attrs"]["reverse"] = True

    def output_spec(self, k: int, label: str, v) -> OutputSpec:
        if _is_tensor(v) or not isinstance(v, Val):
            _fail(f"output {k} ({label}) is {type(v).__name__}, not a value computed per time "
                  "step from the input")
        roles = []
        for d, s in zip(v.dims, v.shape):
            r = self.res(d)
            if r.startswith("?"):
                if s != 1:
                    _fail(f"output {k} ({label}): cannot tell which axis of shape {v.shape} is "
                          "time/batch/features")
                r = "1"
            roles.append(r)
        if v.t is None:
            if "T" not in roles:
                _fail(f"output {k} ({label}) has no time axis")
            kind = "seq"
        else:
            T = self.T or 1
            if v.t != T - 1:
                _fail(f"output {k} ({label}) is the value at time step {v.t} of {T}; lstm-infer "
                      "can only emit per-step values or the last step (for a reverse/bidirectional "
                      "layer, h_n is its state at step 0)")
            kind = "last"
        return OutputSpec(k, label, v.vid, kind, tuple(roles))

    # ---- dispatch ------------------------------------------------------------------
    def call(self, node):
        torch = _torch()
        env = self.env
        tgt = node.target
        args = torch.fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
        if tgt is operator.getitem:
            seq, i = args
            if isinstance(seq, (list, tuple)):
                return seq[i]
            if _is_tensor(seq):
                return seq[i]
            self.fail("indexing of this value is not supported")
        val = node.meta.get("val")
        if isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool) and not _is_tensor(val):
            return _hint(val)  # shape arithmetic (sym_size, operator.mul on sizes, ...)
        if not isinstance(tgt, torch._ops.OpOverload):
            if not _has_abstract(args) and not _has_abstract(kwargs):
                return tgt(*args, **kwargs)
            self.unsupported(node)
        pk = _packet(tgt).rstrip("_") if _packet(tgt) not in ("_softmax", "_log_softmax", "_to_copy",
                                                               "_unsafe_view") else _packet(tgt)
        if pk in _SHAPE_ONLY and _has_abstract(args):
            shp = _shape(node)
            args = tuple(torch.zeros(a.shape) if isinstance(a, Val) else a for a in args)
            out = tgt(*args, **kwargs)
            return out.expand(shp) if tuple(out.shape) != shp else out
        if not _has_abstract(args) and not _has_abstract(kwargs):
            if torch.Tag.nondeterministic_seeded in getattr(tgt, "tags", ()):
                if pk in _DROPOUT and not _bind(tgt, args, kwargs).get("train"):
                    return args[0]
                self.fail("random ops are not supported")
            with torch.no_grad():
                return tgt(*args, **kwargs)
        handler = getattr(self, f"op_{pk}", None)
        if handler is None:
            self.unsupported(node)
        return handler(tgt, _bind(tgt, args, kwargs))

    def unsupported(self, node):
        path, cls = _module_of(node)
        mod = f" in module {path or '<root>'!r} ({cls})" if cls else ""
        hint = ""
        if cls.rsplit(".", 1)[-1] in ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"):
            hint = (" The recurrent layer was decomposed into primitive ops (was the program "
                    "passed through run_decompositions()?); convert the program straight from "
                    "torch.export.export.")
        raise UnsupportedOpError(f"unsupported op {_opname(node.target)} (graph node "
                                 f"{node.name!r}){mod}.{hint} Supported {SUPPORTED}")

    def val(self, a, what: str) -> Val:
        if isinstance(a, Val):
            return a
        if isinstance(a, StateStack):
            self.fail(f"{what}: h_n/c_n of {a.module} can only be indexed by layer (h_n[-1])")
        if isinstance(a, CellC):
            self.fail(f"{what}: the cell state c of an LSTMCell can only be passed back to the same "
                      "cell")
        self.fail(f"{what}: expected a per-step value, got {type(a).__name__}")

    # ---- per-step ops -------------------------------------------------------------
    def op_linear(self, tgt, a):
        x = self.val(a["input"], "linear")
        w, b = a["weight"], a["bias"]
        if not _is_tensor(w) or (b is not None and not _is_tensor(b)):
            self.fail("linear with weights computed from the input")
        # PyTorch weight is (out, in); our W is (in, out): transpose.
        return self.linear(x, _np(w).T, None if b is None else _np(b), self.node_name())

    def op_matmul(self, tgt, a):
        x, w = a["self"], a["other"]
        if not isinstance(x, Val) or not _is_tensor(w) or w.dim() != 2:
            self.fail("matmul is supported only as per-step value @ constant matrix")
        return self.linear(x, _np(w), None, self.node_name())  # x @ W: W is already (in, out)

    op_mm = op_matmul

    def op_addmm(self, tgt, a):
        b, x, w = a["self"], a["mat1"], a["mat2"]
        if a.get("beta", 1) != 1 or a.get("alpha", 1) != 1 or not isinstance(x, Val) \
                or not _is_tensor(w) or not _is_tensor(b):
            self.fail("addmm is supported only as bias + value @ constant matrix")
        bias = _np(b).reshape(-1)
        if bias.size not in (1, w.shape[1]):
            self.fail(f"addmm bias of shape {tuple(b.shape)}")
        return self.linear(x, _np(w), np.broadcast_to(bias, (w.shape[1],)).copy(), self.node_name())

    def _act(self, a, kind, alpha=None):
        return self.activation(self.val(a["self"], kind), kind, alpha)

    def op_relu(self, tgt, a):
        return self._act(a, "relu")

    def op_tanh(self, tgt, a):
        return self._act(a, "tanh")

    def op_sigmoid(self, tgt, a):
        return self._act(a, "sigmoid")

    def op_gelu(self, tgt, a):
        approx = a.get("approximate", "none")
        if approx not in ("none", "tanh"):
            self.fail(f"gelu approximate={approx!r}")
        return self._act(a, "gelu" if approx == "none" else "gelu_tanh")

    def op_leaky_relu(self, tgt, a):
        return self._act(a, "leaky_relu", float(a.get("negative_slope", 0.01)))

    def op_elu(self, tgt, a):
        if float(a.get("scale", 1)) != 1.0 or float(a.get("input_scale", 1)) != 1.0:
            self.fail("elu with scale/input_scale (SELU/CELU) is not supported")
        return self._act(a, "elu", float(a.get("alpha", 1.0)))

    def op_softplus(self, tgt, a):
        if float(a.get("beta", 1)) != 1.0 or float(a.get("threshold", 20)) != 20.0:
            self.fail("softplus is supported with beta=1, threshold=20 only")
        return self._act(a, "softplus")

    def op_silu(self, tgt, a):
        x = self.val(a["self"], "silu")
        s = self.activation(x, "sigmoid", name=self.node_name(".sigmoid"))
        vid = self.emit("Mul", self.node_name(), [x.vid, s.vid], {"size": x.size}, {}, x.size)
        return self.derive(x, vid)

    def _softmax(self, a, kind):
        x = self.val(a["self"], kind)
        dim = a["dim"] % len(x.shape)
        if dim != len(x.shape) - 1:
            self.fail(f"{kind} over dim {a['dim']}: only the last (feature) dim is supported")
        if a.get("dtype") not in (None, _torch().float32):
            self.fail(f"{kind} with dtype {a.get('dtype')}")
        self.need_last_feature(x, kind)
        return self.activation(x, kind)

    def op_softmax(self, tgt, a):
        return self._softmax(a, "softmax")

    def op__softmax(self, tgt, a):
        return self._softmax(a, "softmax")

    def op_log_softmax(self, tgt, a):
        return self._softmax(a, "log_softmax")

    def op__log_softmax(self, tgt, a):
        return self._softmax(a, "log_softmax")

    def op_layer_norm(self, tgt, a):
        x = self.val(a["input"], "layer_norm")
        shape = list(a["normalized_shape"])
        if len(shape) != 1:
            self.fail(f"layer_norm over {shape}: only the last dim is supported")
        self.need_last_feature(x, "layer_norm")
        if shape[0] != x.size:
            self.fail(f"layer_norm over {shape[0]} features of a {x.size}-feature value")
        w, b = a["weight"], a["bias"]
        for t in (w, b):
            if t is not None and not _is_tensor(t):
                self.fail("layer_norm with weights computed from the input")
        vid = self.emit("LayerNorm", self.node_name(), [x.vid], {"size": x.size, "eps": float(a["eps"])},
                        {"weight": None if w is None else _np(w), "bias": None if b is None else _np(b)},
                        x.size)
        return self.derive(x, vid)

    def op_native_layer_norm(self, tgt, a):
        y = self.op_layer_norm(tgt, a)
        return (y, None, None)

    def op_dropout(self, tgt, a):
        if a.get("train"):
            self.warnings.append(f"dropout at {self.where()} was exported in training mode; "
                                 "ignored (inference)")
        return self.val(a["input"], "dropout")

    op_feature_dropout = op_alpha_dropout = op_feature_alpha_dropout = op_dropout

    def op_native_dropout(self, tgt, a):
        return (self.val(a["input"], "dropout"), None)

    def _identity(self, tgt, a):
        first = next(iter(a.values()))
        return self.val(first, _packet(tgt))

    op_clone = op_contiguous = op_alias = op_detach = op_lift_fresh_copy = _identity

    def op__to_copy(self, tgt, a):
        torch = _torch()
        if a.get("dtype") not in (None, torch.float32):
            self.fail(f"conversion of a per-step value to {a.get('dtype')} (only float32 runs)")
        return self.val(a["self"], "to")

    def op_to(self, tgt, a):
        dtype = a.get("dtype")
        if dtype is not None and dtype != _torch().float32:
            self.fail(f"conversion of a per-step value to {dtype}")
        return self.val(a["self"], "to")

    # ---- arithmetic ----------------------------------------------------------------
    def _binary(self, tgt, a, op: str):
        x = a.get("self", a.get("input"))
        y = a.get("other")
        alpha = a.get("alpha", 1)
        alpha = 1 if alpha is None else alpha
        name = self.node_name()
        if isinstance(x, Val) and isinstance(y, Val):
            self.same_layout(x, y, op)
            if op == "div":
                self.fail("division of two per-step values is not supported")
            if op in ("add", "sub"):
                s = alpha if op == "add" else -alpha
                if s != 1:
                    y = self.affine(y, s, None, name + ".scale")
                vid = self.emit("Add", name, [x.vid, y.vid], {"size": x.size}, {}, x.size)
            else:
                vid = self.emit("Mul", name, [x.vid, y.vid], {"size": x.size}, {}, x.size)
            return Val(vid, x.size, x.dims, _shape(self.cur), x.t)
        if isinstance(y, Val) and not isinstance(x, Val):
            c = self.const_vector(x, y, op)
            if op == "add":
                return self.affine(y, alpha, c, name)
            if op == "sub":  # c - alpha*y
                return self.affine(y, -float(alpha), c, name)
            if op == "mul":
                return self.affine(y, c, None, name)
            self.fail("dividing a constant by a per-step value is not supported")
        x = self.val(x, op)
        c = self.const_vector(y, x, op)
        if op == "add":
            return self.affine(x, 1.0, c * alpha, name)
        if op == "sub":
            return self.affine(x, 1.0, -c * alpha, name)
        if op == "mul":
            return self.affine(x, c, None, name)
        if op == "div":
            mode = a.get("rounding_mode")
            if mode is not None:
                self.fail(f"division with rounding_mode={mode!r}")
            return self.affine(x, 1.0 / c.astype(np.float64), None, name)
        self.fail(op)

    def op_add(self, tgt, a):
        return self._binary(tgt, a, "add")

    def op_sub(self, tgt, a):
        return self._binary(tgt, a, "sub")

    def op_mul(self, tgt, a):
        return self._binary(tgt, a, "mul")

    def op_div(self, tgt, a):
        return self._binary(tgt, a, "div")

    def op_rsub(self, tgt, a):  # other - alpha*self
        x = self.val(a["self"], "rsub")
        c = self.const_vector(a["other"], x, "rsub")
        return self.affine(x, -float(a.get("alpha", 1) or 1), c, self.node_name())

    def op_neg(self, tgt, a):
        return self.affine(self.val(a["self"], "neg"), -1.0, None, self.node_name())

    # ---- shape bookkeeping -----------------------------------------------------------
    def _squeeze_dim(self, v: Val, d: int) -> Val:
        r = self.res(v.dims[d])
        dims = v.dims[:d] + v.dims[d + 1:]
        shape = v.shape[:d] + v.shape[d + 1:]
        t = v.t
        if r == "T":
            t = (self.T or 1) - 1  # a single-step sequence: its only step is the last one
        return Val(v.vid, v.size, dims, shape, t)

    def _squeeze(self, v, dims_to_drop):
        if isinstance(v, StateStack):
            for d in sorted(dims_to_drop, reverse=True):
                if d == 0:  # the layer axis comes last in this descending loop
                    if len(v.entries) != 1:
                        self.fail("squeeze of the layer axis of h_n with several layers")
                    return self._select_state(v, 0)
                else:
                    v = StateStack(v.kind, v.entries, v.dims[:d] + v.dims[d + 1:],
                                   v.shape[:d] + v.shape[d + 1:], v.module)
            return v
        v = self.val(v, "squeeze")
        for d in sorted(dims_to_drop, reverse=True):
            if v.shape[d] != 1:
                continue
            v = self._squeeze_dim(v, d)
        return v

    def op_squeeze(self, tgt, a):
        v = a["self"]
        shp = v.shape
        if "dim" in a and a["dim"] is not None:
            ds = a["dim"] if isinstance(a["dim"], (list, tuple)) else [a["dim"]]
        elif "dims" in a and a["dims"] is not None:
            ds = a["dims"]
        else:
            ds = [i for i, s in enumerate(shp) if s == 1]
        ds = [d % len(shp) for d in ds if shp[d % len(shp)] == 1]
        return self._squeeze(v, ds)

    def op_unsqueeze(self, tgt, a):
        v = self.val(a["self"], "unsqueeze")
        d = a["dim"] % (len(v.shape) + 1)
        return Val(v.vid, v.size, v.dims[:d] + (self.fresh(),) + v.dims[d:],
                   v.shape[:d] + (1,) + v.shape[d:], v.t)

    def _permute(self, v, perm):
        if isinstance(v, StateStack):
            self.fail("reordering the axes of h_n/c_n is not supported (index it: h_n[-1])")
        v = self.val(v, "permute")
        return Val(v.vid, v.size, tuple(v.dims[p] for p in perm), tuple(v.shape[p] for p in perm), v.t)

    def op_transpose(self, tgt, a):
        v = a["self"]
        n = len(v.shape)
        d0, d1 = a["dim0"] % n, a["dim1"] % n
        perm = list(range(n))
        perm[d0], perm[d1] = perm[d1], perm[d0]
        return self._permute(v, perm)

    def op_permute(self, tgt, a):
        v = a["self"]
        return self._permute(v, [d % len(v.shape) for d in a["dims"]])

    def op_t(self, tgt, a):
        v = a["self"]
        return self._permute(v, [1, 0] if len(v.shape) == 2 else [0])

    def op_expand(self, tgt, a):
        v = self.val(a["self"], "expand")
        if _shape(self.cur) != v.shape:
            self.fail(f"expand from {v.shape} to {_shape(self.cur)} (broadcasting a per-step value)")
        return v

    def _reshape(self, v, new_shape):
        if isinstance(v, StateStack) and len(v.entries) == 1:
            v = self._select_state(v, 0)
            if isinstance(v, StateStack):
                self.fail("reshape of h_n")
        v = self.val(v, "reshape")
        new_shape = tuple(new_shape)
        old = [(d, s) for d, s in zip(v.dims, v.shape) if s != 1]
        new_big = [s for s in new_shape if s != 1]
        if [s for _, s in old] != new_big:
            self.fail(f"reshape from {v.shape} to {new_shape} merges or splits axes (only adding "
                      "or removing size-1 axes is supported)")
        # Dropping size-1 axes that carry a role: time (a one-step sequence) or features.
        t = v.t
        for d, s in zip(v.dims, v.shape):
            if s == 1 and self.res(d) == "T":
                t = (self.T or 1) - 1
        it = iter(d for d, _ in old)
        ones = [d for d, s in zip(v.dims, v.shape) if s == 1 and self.res(d) != "T"]
        n_new_ones = sum(1 for s in new_shape if s == 1)
        reuse = iter(ones) if len(ones) == n_new_ones else None
        dims = []
        for s in new_shape:
            if s != 1:
                dims.append(next(it))
            else:
                dims.append(next(reuse) if reuse is not None else self.fresh())
        return Val(v.vid, v.size, tuple(dims), new_shape, t)

    def op_view(self, tgt, a):
        return self._reshape(a["self"], _shape(self.cur))

    op_reshape = op__unsafe_view = op_view

    def op_flatten(self, tgt, a):
        return self._reshape(a["self"], _shape(self.cur))

    def op_slice(self, tgt, a):
        v = self.val(a["self"], "slice")
        n = len(v.shape)
        d = a["dim"] % n
        L = v.shape[d]
        start = 0 if a.get("start") is None else a["start"]
        end = L if a.get("end") is None else a["end"]
        step = a.get("step", 1) or 1
        rng = range(L)[slice(start, end, step)]
        if len(rng) == L:
            return v
        r = self.res(v.dims[d])
        if r == "T" or (r.startswith("?") and v.t is None and self.roles(v).count("T") == 0
                        and L > 1 and r in {self.res(x) for x in self.input_val.dims}):
            if len(rng) == 1 and rng[0] == L - 1 and v.t is None:
                self.bind(v.dims[d], "T")
                self.set_T(L)
                return Val(v.vid, v.size, v.dims[:d] + (self.fresh(),) + v.dims[d + 1:],
                           v.shape[:d] + (1,) + v.shape[d + 1:], L - 1)
            self.fail(f"slicing time steps {rng.start}:{rng.stop}:{rng.step} (only the last step "
                      "[-1:] is supported)")
        if r == "B":
            self.fail("slicing the batch axis is not supported")
        if d != n - 1:
            self.fail(f"slicing axis {d} of shape {v.shape}")
        self.need_last_feature(v, "feature slice")
        # A feature slice is an exact selection matrix: W[i, j] = 1 where i = rng[j].
        W = np.zeros((L, len(rng)), np.float32)
        W[list(rng), np.arange(len(rng))] = 1.0
        return self.linear(v, W, None, self.node_name())

    def _time_axis(self, v: Val, d: int, what: str) -> bool:
        """Is axis d of v the time axis? Binds it to time when it can only be time."""
        r = self.res(v.dims[d])
        if r == "T":
            return True
        if r in ("B", "F"):
            return False
        if v.t is not None or "T" in self.roles(v):
            return False
        if v.shape[d] == 1 and not r.startswith("?s"):
            return False  # a size-1 axis made by unsqueeze; an input axis of size 1 is time (T=1)
        self.bind(v.dims[d], "T")  # selecting along a batch axis is unsupported anyway
        self.set_T(v.shape[d])
        self.check_dims(v)
        return True

    def _select_state(self, v: StateStack, i: int):
        n = len(v.entries)
        vid, rev, size = v.entries[i % n]
        if vid is None:
            self.fail(f"the cell state c_n of {v.module} cannot be emitted; lstm-infer keeps it "
                      "inside the engine (outputs are h)")
        T = self.T or 1
        return Val(vid, size, v.dims[1:], v.shape[1:], 0 if rev else T - 1)

    def op_select(self, tgt, a):
        v, d, i = a["self"], a["dim"], a["index"]
        if isinstance(v, StateStack):
            if d % len(v.shape) != 0:
                self.fail("h_n/c_n can only be indexed by layer (h_n[k])")
            return self._select_state(v, i)
        v = self.val(v, "select")
        d %= len(v.shape)
        L = v.shape[d]
        if self._time_axis(v, d, "select"):
            return Val(v.vid, v.size, v.dims[:d] + v.dims[d + 1:], v.shape[:d] + v.shape[d + 1:],
                       i % L)
        r = self.res(v.dims[d])
        if L == 1:
            return self._squeeze_dim(v, d)
        what = {"B": "one batch element", "F": "one feature"}.get(r, f"index {i} of axis {d}")
        self.fail(f"selecting {what} is not supported")

    def op_unbind(self, tgt, a):
        v, d = a["self"], a["dim"]
        if isinstance(v, StateStack):
            return [self._select_state(v, i) for i in range(len(v.entries))]
        v = self.val(v, "unbind")
        d %= len(v.shape)
        if not self._time_axis(v, d, "unbind"):
            self.fail("unbind along a non-time axis is not supported")
        return [Val(v.vid, v.size, v.dims[:d] + v.dims[d + 1:], v.shape[:d] + v.shape[d + 1:], i)
                for i in range(v.shape[d])]

    def _gather_time(self, vals: list[Val], what: str) -> Val:
        """A list of single-step values of one per-step value, in time order: the sequence."""
        v0 = vals[0]
        if any(v.t is None for v in vals):
            self.fail(f"{what} over time of whole sequences")
        if any(v.vid != v0.vid for v in vals):
            self.fail(f"{what} over time of values computed differently at different steps")
        ts = [v.t for v in vals]
        T = self.T or len(vals)
        if ts != list(range(T)):
            self.fail(f"{what} over time steps {ts}; lstm-infer needs all {T} steps in order")
        return v0

    def op_stack(self, tgt, a):
        vals = [self.val(v, "stack") for v in a["tensors"]]
        v0 = self._gather_time(vals, "stack")
        for v in vals[1:]:
            for x, y in zip(v.dims, v0.dims):
                self.bind(x, y)
        d = a["dim"] % (len(v0.shape) + 1)
        tsym = self.fresh("t")
        self.bind(tsym, "T")
        return Val(v0.vid, v0.size, v0.dims[:d] + (tsym,) + v0.dims[d:], _shape(self.cur), None)

    def op_cat(self, tgt, a):
        vals = [self.val(v, "cat") for v in a["tensors"]]
        if len(vals) == 1:
            return vals[0]
        v0 = vals[0]
        d = a["dim"] % len(v0.shape)
        r = self.res(v0.dims[d])
        if r in ("T",) or (r.startswith("?") and all(v.shape[d] == 1 and v.t is not None for v in vals)):
            v = self._gather_time(vals, "cat")
            self.bind(v0.dims[d], "T")
            return Val(v.vid, v.size, v.dims, _shape(self.cur), None)
        if r == "B":
            self.fail("concatenation along the batch axis is not supported")
        if d != len(v0.shape) - 1:
            self.fail(f"concatenation along axis {d} of shape {v0.shape} (only the feature axis)")
        for v in vals:
            self.need_last_feature(v, "cat")
            if v.t != v0.t or v.shape[:-1] != v0.shape[:-1]:
                self.same_layout(v, Val(v.vid, v.size, v0.dims[:-1] + v.dims[-1:],
                                        v0.shape[:-1] + v.shape[-1:], v0.t), "cat")
            for x, y in zip(v.dims[:-1], v0.dims[:-1]):
                self.bind(x, y)
        sizes = [v.size for v in vals]
        vid = self.emit("Concat", self.node_name(), [v.vid for v in vals], {"sizes": sizes}, {},
                        sum(sizes))
        return Val(vid, sum(sizes), v0.dims, _shape(self.cur), v0.t)

    op_concat = op_concatenate = op_cat

    # ---- recurrent layers ------------------------------------------------------------
    def _init_state(self, c, n: int, size: int, what: str) -> list:
        """Constant initial state (L*D, [B,] size) -> list of per-layer vectors (None: zeros)."""
        if c is None:
            return [None] * n
        if not _is_tensor(c):
            self.fail(f"the initial state {what} is computed from the model input or passed in "
                      "as an input; PyTorch import supports zeros or constant initial states only")
        a = _np(c)
        if a.ndim == 2:
            a = a[:, None, :]
        if a.ndim != 3 or a.shape[0] != n or a.shape[2] != size:
            self.fail(f"initial state {what} of shape {tuple(c.shape)}")
        if not (a == a[:, :1, :]).all():
            self.fail(f"initial state {what} differs between batch elements; lstm-infer has one "
                      "initial state per model")
        return [None if not a[k, 0].any() else a[k, 0].copy() for k in range(n)]

    def _rnn(self, kind: str, a, nonlinearity: str = "tanh"):
        x = a["input"]
        if isinstance(x, Val) and x.t is not None:
            self.fail(f"{kind} applied to a single time step")
        x = self.val(x, kind)
        if len(x.shape) != 3:
            self.fail(f"{kind} input of shape {x.shape}")
        batch_first = bool(a["batch_first"])
        for d, r in zip(x.dims, ("B", "T", "F") if batch_first else ("T", "B", "F")):
            self.bind(d, r)
        self.check_dims(x)
        self.set_T(x.shape[1] if batch_first else x.shape[0])
        L, D = int(a["num_layers"]), 2 if a["bidirectional"] else 1
        if a.get("train") and a.get("dropout"):
            self.warnings.append(f"{kind} at {self.where()} was exported in training mode; "
                                 "dropout between layers ignored (inference)")
        has_b = bool(a["has_biases"])
        params = list(a["params"])
        if any(not _is_tensor(p) for p in params):
            self.fail(f"{kind} weights computed from the input")
        per = len(params) // (L * D)
        if per * L * D != len(params):
            self.fail(f"{kind}: {len(params)} weights for {L} layers x {D} directions")
        proj = kind == "lstm" and per == (5 if has_b else 3)
        gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
        H = int(params[1].shape[1]) if not proj else int(params[per - 1].shape[1])
        R = int(params[per - 1].shape[0]) if proj else H
        hx = a["hx"]
        if kind == "lstm":
            h0s = self._init_state(hx[0] if hx else None, L * D, R, "h0")
            c0s = self._init_state(hx[1] if hx else None, L * D, H, "c0")
        else:
            h0s = self._init_state(hx, L * D, H, "h0")
            c0s = [None] * (L * D)
        module = self.node_name()
        src, size = x.vid, x.size
        hs, cs = [], []
        for layer in range(L):
            outs = []
            for d in range(D):
                k = layer * D + d
                w = params[k * per:(k + 1) * per]
                w_ih, w_hh = w[0], w[1]
                b_ih, b_hh = (w[2], w[3]) if has_b else (None, None)
                if int(w_ih.shape[1]) != size or int(w_ih.shape[0]) != gates * H:
                    self.fail(f"{kind} layer {layer}: weight_ih of shape {tuple(w_ih.shape)} for "
                              f"{size} inputs and hidden size {H}")
                attrs = {"input_size": size, "hidden_size": H, "reverse": bool(d)}
                # PyTorch weight_ih is (gates*H, I), weight_hh (gates*H, R); ours are transposed.
                weights = {"W_ih": _np(w_ih).T, "W_hh": _np(w_hh).T, "h0": h0s[k]}
                if kind == "lstm":
                    attrs["proj_size"] = R if proj else 0
                    if has_b:  # the two LSTM biases are only ever added: fold them
                        weights["bias"] = _np(b_ih) + _np(b_hh)
                    if proj:  # weight_hr is (P, H); ours (H, P)
                        weights["W_hr"] = _np(w[-1]).T
                    weights["c0"] = c0s[k]
                    op = "LSTM"
                elif kind == "gru":  # GRU keeps both biases: b_hn sits inside r * (.)
                    attrs["linear_before_reset"] = True
                    if has_b:
                        weights["b_ih"], weights["b_hh"] = _np(b_ih), _np(b_hh)
                    op = "GRU"
                else:
                    attrs["nonlinearity"] = nonlinearity
                    if has_b:
                        weights["bias"] = _np(b_ih) + _np(b_hh)
                    op = "RNN"
                name = f"{module}.l{layer}" + ("_reverse" if d else "")
                vid = self.emit(op, name, [src], attrs, weights, R, memo=False)
                outs.append(vid)
                hs.append((vid, bool(d), R))
                cs.append((None, bool(d), H))
            if D == 2:
                src = self.emit("Concat", f"{module}.l{layer}.concat", outs, {"sizes": [R, R]}, {}, 2 * R)
            else:
                src = outs[0]
            size = D * R
        out = Val(src, size, x.dims, (x.shape[0], x.shape[1], size), None)
        # h_n is (L*D, B, R) whatever batch_first says.
        bdim = x.dims[0] if batch_first else x.dims[1]
        B = x.shape[0] if batch_first else x.shape[1]
        h = StateStack("h", hs, ("L", bdim, "F"), (L * D, B, R), f"{kind} {module!r}")
        if kind == "lstm":
            c = StateStack("c", cs, ("L", bdim, "F"), (L * D, B, H), f"{kind} {module!r}")
            return (out, h, c)
        return (out, h)

    def op_lstm(self, tgt, a):
        if tgt._overloadname != "input":
            self.fail("packed sequences are not supported")
        return self._rnn("lstm", a)

    def op_gru(self, tgt, a):
        if tgt._overloadname != "input":
            self.fail("packed sequences are not supported")
        return self._rnn("gru", a)

    def op_rnn_tanh(self, tgt, a):
        if tgt._overloadname != "input":
            self.fail("packed sequences are not supported")
        return self._rnn("rnn", a, "tanh")

    def op_rnn_relu(self, tgt, a):
        if tgt._overloadname != "input":
            self.fail("packed sequences are not supported")
        return self._rnn("rnn", a, "relu")

    # ---- cells in a Python loop ------------------------------------------------------
    def _cell(self, kind: str, a, nonlinearity: str = "tanh"):
        x = a["input"]
        if isinstance(x, Val) and x.t is None:
            self.fail(f"{kind} cell applied to a whole sequence")
        x = self.val(x, f"{kind} cell")
        self.need_last_feature(x, f"{kind} cell")
        if len(x.shape) == 2:
            self.bind(x.dims[0], "B")
        w_ih, w_hh, b_ih, b_hh = a["w_ih"], a["w_hh"], a.get("b_ih"), a.get("b_hh")
        if any(w is not None and not _is_tensor(w) for w in (w_ih, w_hh, b_ih, b_hh)):
            self.fail(f"{kind} cell weights computed from the input")
        H = int(w_hh.shape[1])
        key = (kind, nonlinearity, self.digest(w_ih), self.digest(w_hh), self.digest(b_ih),
               self.digest(b_hh), x.vid)
        hx = a["hx"]
        h, c = (hx[0], hx[1]) if kind == "lstm" else (hx, None)
        rec = self.cells.get(key)
        if rec is None:
            if not _is_tensor(h) or (kind == "lstm" and not _is_tensor(c)):
                if isinstance(h, Val) and any(r.out == h.vid and k[:6] == key[:6]
                                              for k, r in self.cells.items()):
                    self.fail(f"the {kind} cell gets a different input at step {x.t} than at its "
                              "earlier calls (its output fed back as input, i.e. an autoregressive "
                              "loop); lstm-infer folds a cell loop only when the cell reads the "
                              "same per-step input at every step")
                self.fail(f"the first call of the {kind} cell gets a state computed from the "
                          "input; initial states must be zeros or constants")
            h0 = self._init_state(h[None] if h.dim() < 3 else h, 1, H, "h0")[0]
            attrs = {"input_size": x.size, "hidden_size": H, "reverse": False}
            # PyTorch cell weights are (gates*H, I) / (gates*H, H); ours are transposed.
            weights = {"W_ih": _np(w_ih).T, "W_hh": _np(w_hh).T, "h0": h0}
            if kind == "lstm":
                attrs["proj_size"] = 0
                if b_ih is not None:
                    weights["bias"] = _np(b_ih) + _np(b_hh)
                weights["c0"] = self._init_state(c[None] if c.dim() < 3 else c, 1, H, "c0")[0]
                op = "LSTM"
            elif kind == "gru":
                attrs["linear_before_reset"] = True
                if b_ih is not None:
                    weights["b_ih"], weights["b_hh"] = _np(b_ih), _np(b_hh)
                op = "GRU"
            else:
                attrs["nonlinearity"] = nonlinearity
                if b_ih is not None:
                    weights["bias"] = _np(b_ih) + _np(b_hh)
                op = "RNN"
            vid = self.emit(op, self.node_name(), [x.vid], attrs, weights, H, memo=False)
            rec = _Cell(self.nodes[-1], vid, x.t, x.t, 0, self.where())
            self.cells[key] = rec
        else:
            ok = isinstance(h, Val) and h.vid == rec.out and h.t == rec.t_last
            if kind == "lstm":
                ok = ok and isinstance(c, CellC) and c.key == key and c.t == rec.t_last
            if not ok:
                if _is_tensor(h):
                    self.fail(f"the {kind} cell is called again with a fresh initial state at step "
                              f"{x.t}; lstm-infer folds a cell loop only when every call continues "
                              "the state of the previous call")
                self.fail(f"the state passed to the {kind} cell at step {x.t} is not the state "
                          "that cell returned at its previous call (state fed back through "
                          "other ops is not supported)")
            dt = x.t - rec.t_last
            if rec.direction == 0:
                if dt not in (1, -1):
                    self.fail(f"the {kind} cell is called at time step {rec.t_last} and then at "
                              f"{x.t}; a cell loop must visit consecutive steps (feeding an "
                              "output back as the next input is not supported)")
                rec.direction = dt
            elif dt != rec.direction:
                self.fail(f"the {kind} cell goes from time step {rec.t_last} to {x.t}; a cell loop "
                          "must visit consecutive steps in one direction")
            rec.t_last = x.t
        hv = Val(rec.out, H, x.dims, tuple(x.shape[:-1]) + (H,), x.t)
        if kind == "lstm":
            return (hv, CellC(key, x.t))
        return hv

    def op_lstm_cell(self, tgt, a):
        return self._cell("lstm", a)

    def op_gru_cell(self, tgt, a):
        return self._cell("gru", a)

    def op_rnn_tanh_cell(self, tgt, a):
        return self._cell("rnn", a, "tanh")

    def op_rnn_relu_cell(self, tgt, a):
        return self._cell("rnn", a, "relu")


_ROLE_NAMES = {"T": "time", "B": "batch", "F": "feature"}


# --------------------------------------------------------------------------------------
# emission
# --------------------------------------------------------------------------------------
@dataclass
class _Analysis:
    walker: _Walker
    spec: TorchSpec
    warnings: list


def _analyse(ep, options: dict) -> _Analysis:
    w = _Walker(ep, options)
    outs = w.run()
    # Which IR values depend on a reverse-direction node (not prefix results, not streamable).
    rev: dict[str, bool] = {"%in": False}
    for n in w.nodes:
        rev[n["out"]] = bool(n["attrs"].get("reverse")) or any(rev.get(i, False) for i in n["inputs"])
    # Keep only nodes the outputs need.
    need = {o.vid for o in outs}
    for n in reversed(w.nodes):
        if n["out"] in need:
            need.update(n["inputs"])
    w.nodes = [n for n in w.nodes if n["out"] in need]
    roles = tuple(w.res(d) for d in w.input_val.dims)
    spec = TorchSpec(roles, tuple(w.input_val.shape), w.input_val.size, outs,
                     streamable=not any(n["attrs"].get("reverse") for n in w.nodes))
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
                msg += ("; the output goes through a reverse-direction layer, so earlier rows "
                        "are NOT results for shorter sequences")
            warns.append(msg)
    return _Analysis(w, spec, warns)


def _emit(an: _Analysis, path, source: str | None, extra: dict) -> None:
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
            "torch_outputs": [{"index": o.index, "label": o.label, "kind": o.kind} for o in spec.outputs]}
    prov.update(extra)
    b.save(path, source=source, converter="lstm-infer torch importer", **prov)


# --------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------
def _check_dtype(dtype: str) -> None:
    if dtype != "fp32":  # converters.convert_torch/convert_file compress after this (fp16, int8)
        raise ValueError(f"this importer writes fp32; use converters.convert_torch or "
                         f"convert_file for dtype {dtype!r}")


def _split_options(options: dict) -> tuple[dict, list[str]]:
    unknown = sorted(set(options) - _KNOWN_OPTIONS)
    return ({k: v for k, v in options.items() if k in _KNOWN_OPTIONS},
            [f"ignored unknown option(s) for PyTorch import: {', '.join(unknown)}"] if unknown else [])


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _default_example(module):
    """(B=2, T=5, I) or (T=5, B=2, I) from the first submodule that reveals its input size."""
    torch = _torch()
    nn = torch.nn
    first_rnn = next((m for m in module.modules() if isinstance(m, nn.RNNBase)), None)
    for m in module.modules():
        size = None
        if isinstance(m, (nn.RNNBase, nn.RNNCellBase)):
            size = m.input_size
        elif isinstance(m, nn.Linear):
            size = m.in_features
        elif isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
            size = m.normalized_shape[0]
        if size is not None:
            batch_first = True if first_rnn is None else first_rnn.batch_first
            return torch.randn((2, 5, size) if batch_first else (5, 2, size))
    raise ValueError("example_input is required: pass a tensor shaped like the model's input, "
                     "e.g. torch.randn(2, 5, input_size) for (B, T, I) or (T, B, I) as the model expects")


def _as_example(example):
    torch = _torch()
    if isinstance(example, (tuple, list)):
        if len(example) != 1:
            raise ValueError(f"example_input must be one tensor, got {len(example)}")
        example = example[0]
    if isinstance(example, np.ndarray):
        example = torch.from_numpy(np.asarray(example, np.float32))
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(example).__name__}")
    if example.dim() not in (2, 3):
        raise ValueError(f"example_input has shape {tuple(example.shape)}; expected (B, T, I), "
                         "(T, B, I) or (T, I)")
    return example.detach().to(torch.float32)


def _export(module, example):
    torch = _torch()
    # A model that fails to trace makes torch log a traceback per failed fake-tensor op;
    # the ConversionError below carries the message, so keep stderr quiet meanwhile.
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with _quiet(), torch.no_grad():
            return torch.export.export(module, (example,))
    except ConversionError:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ConversionError(f"torch.export could not trace the model: {type(e).__name__}: "
                              f"{msg[0] if msg else ''}".rstrip()) from e
    finally:
        log.setLevel(level)


def _ep_example(ep):
    """Example input of an ExportedProgram: its stored example, else random of the traced shape."""
    torch = _torch()
    ex = getattr(ep, "example_inputs", None)
    if ex:
        args = ex[0] if isinstance(ex, tuple) and len(ex) == 2 and isinstance(ex[1], dict) else ex
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0].detach().to(torch.float32)
    from torch.export.graph_signature import InputKind
    users = [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    for n in ep.graph.nodes:
        if n.op == "placeholder" and n.name in users and hasattr(n.meta.get("val"), "shape"):
            return torch.randn(_shape(n))
    raise ConversionError("the exported program has no tensor input")


def _convert_ep(ep, path, reference, example, verify: bool, options: dict, source: str | None,
                extra_warnings: list[str], provenance: dict) -> ConversionReport:
    import lstm_infer
    an = _analyse(ep, options)
    _emit(an, path, source, provenance)
    report = ConversionReport(str(path), str(lstm_infer.load(path)),
                              warnings=extra_warnings + an.warnings)
    if verify:
        from .torch_verify import verify_against
        report.verify = verify_against(str(path), reference, an.spec, example,
                                       source=source or "torch", options=options)
        if not report.verify.ok:
            report.warnings.append(f"verification error {report.verify.max_abs_error:.3g} is above "
                                   f"the tolerance {report.verify.tolerance:g}")
    return report


def convert_torch(module, path, example_input=None, dtype: str = "fp32", verify: bool = True,
                  **options) -> ConversionReport:
    """Convert an `nn.Module` (or a `torch.export.ExportedProgram`) into a `.lstm` file.

    `example_input` is one tensor shaped like the model's input: (B, T, I) or (T, B, I) as
    the model's recurrent layers expect (batch_first or not), or (T, I) for an unbatched
    model. Use at least 2 time steps. When None, it is built from the first submodule
    that reveals its input size (nn.LSTM/GRU/RNN/cells, nn.Linear, nn.LayerNorm).

    Models that return only the last step (`fc(out[:, -1])`, `fc(h_n[-1])`, the last `h` of
    a cell loop) become per-step models: row t of `run()` is the result for the sequence
    ending at step t, so the last row equals the torch output (see the report's warnings).
    Returned `h_n`/`c_n` tensors are dropped (the engine keeps state itself).

    Options: `outputs` (indices into the model's flattened outputs to keep), and for
    verification `lengths` (sequence lengths), `seed`, `tolerance` (default 1e-4).
    `dtype` must be "fp32" here (converters.convert_torch compresses to fp16/int8). With `verify=True` (default) the written file is run
    against torch on random inputs, whole sequences and streamed in chunks, and the report
    carries the errors. Unsupported ops raise `converters.ConversionError` naming the op
    and module.
    """
    torch = _torch()
    _check_dtype(dtype)
    source = options.pop("_source", None)
    options, warns = _split_options(options)
    if isinstance(module, torch.export.ExportedProgram):
        ep = module
        example = _as_example(example_input) if example_input is not None else _ep_example(ep)
        return _convert_ep(ep, path, ep.module(), example, verify, options, None, warns,
                           {"torch_module": "ExportedProgram"})
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"convert_torch needs an nn.Module or ExportedProgram, got {type(module).__name__}")
    was_training = module.training
    module.eval()
    try:
        example = _as_example(example_input) if example_input is not None else _default_example(module)
        ep = _export(module, example)
        return _convert_ep(ep, path, module, example, verify, options,
                           source or type(module).__name__, warns,
                           {"torch_module": type(module).__name__})
    finally:
        module.train(was_training)


def _is_pt2(src) -> bool:
    return str(src).lower().endswith(".pt2")


def _load_pt2(src):
    torch = _torch()
    try:
        with _quiet():
            return torch.export.load(str(src))
    except Exception as e:
        raise ConversionError(f"could not load {src} as a torch.export program (.pt2): "
                              f"{type(e).__name__}: {e}") from e


def convert_torch_file(src, path, dtype: str = "fp32", verify: bool = True, **options) -> ConversionReport:
    """Convert a PyTorch file: `.pt2` from `torch.export.save`, or a state_dict file.

    A `.pt2` program is converted as exported (its example inputs, or random inputs of the
    traced shape, drive verification; a program exported with static shapes is verified
    at that shape only). Anything else is loaded with `torch.load(src, weights_only=True)`
    (a dict with a "state_dict" key is accepted too) and the architecture is inferred from
    key names and shapes, in state_dict order: see `converters.torch_state_dict`. A
    state_dict carries no activation functions between layers, so only stacks of
    recurrent layers + Linear/LayerNorm are inferred; option `rnn_nonlinearity="relu"`
    for RNN layers, `layernorm_eps` for LayerNorm.
    """
    _check_dtype(dtype)
    if _is_pt2(src):
        options, warns = _split_options(options)
        ep = _load_pt2(src)
        return _convert_ep(ep, path, ep.module(), _ep_example(ep), verify, options, str(src),
                           warns, {"torch_module": "ExportedProgram"})
    from .torch_state_dict import module_from_state_dict_file
    module, example, notes = module_from_state_dict_file(src, **options)
    options = {k: v for k, v in options.items() if k not in ("rnn_nonlinearity", "layernorm_eps")}
    report = convert_torch(module, path, example_input=example, dtype=dtype, verify=verify,
                           _source=str(src), **options)
    report.warnings[:0] = notes
    return report


def verify_torch_file(lstm_path, src, inputs=None, **options) -> VerifyReport:
    """Compare a `.lstm` file with its PyTorch source (`.pt2` or state_dict file).

    `inputs`: an optional numpy array (T, I) or (B, T, I) compared in addition to random
    inputs. Options as for `convert_torch_file`.
    """
    from .torch_verify import verify_against
    options, _ = _split_options(options)
    if _is_pt2(src):
        ep = _load_pt2(src)
        an = _analyse(ep, options)
        reference, example = ep.module(), _ep_example(ep)
    else:
        from .torch_state_dict import module_from_state_dict_file
        module, example, _ = module_from_state_dict_file(src, **options)
        an = _analyse(_export(module.eval(), example), options)
        reference = module
    # Outputs are matched by position: the file's outputs are in the torch outputs' order.
    return verify_against(str(lstm_path), reference, an.spec, example, source=str(src),
                          options=options, inputs=inputs)
