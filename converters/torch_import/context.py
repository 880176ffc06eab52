"""The state of one PyTorch conversion that every op converter shares (the `ctx` of a
converter): which torch dimension is time, batch or features, the IR nodes emitted so far
(hash-consed), cell loops being folded, warnings, and the per-step building blocks op
converters emit through (linear, affine, activation). The ONNX importer's counterpart is
`onnx_graph.Ctx`; the walk that drives this is `walk.Walker`.
"""
from __future__ import annotations

import hashlib
from typing import NoReturn

import numpy as np

from ..errors import ConversionError
from .fx import fx_shape, is_tensor, module_of, op_name, to_numpy, torch_module
from .values import ROLE_NAMES, CellC, CellLoop, StateStack, TorchValue


def reject(msg: str) -> NoReturn:
    """Raise ConversionError (for problems that are not at one FX node; see Context.fail)."""
    raise ConversionError(msg)


class Context:
    """Conversion state for one exported program (see the module docstring)."""

    def __init__(self, ep, options: dict):
        self.ep = ep
        self.options = options
        self.nodes: list[dict] = []          # IR nodes in topological order
        self.sizes: dict[str, int] = {}      # vid -> feature size
        self.memo: dict[tuple, str] = {}     # hash-consing of per-step ops
        self.alias: dict[str, str] = {}      # role symbol -> role/symbol
        self.T: int | None = None
        self.cells: dict[tuple, CellLoop] = {}
        self.warnings: list[str] = []
        self._digests: dict[int, tuple] = {}
        self._n = 0
        self.cur = None
        self.input_val: TorchValue | None = None
        self.input_name = "x"
        self.int_input = False               # the input holds integer token ids (ops/embedding.py)
        self.input_dtype = "float32"         # the input's torch dtype, "int64" for ids
        self.env: dict = {}                  # FX node -> its value (see values.py)

    # ---- diagnostics ---------------------------------------------------------
    def where(self, node=None) -> str:
        node = node if node is not None else self.cur
        if node is None:
            return ""
        path, cls = module_of(node)
        s = f"{op_name(node.target)} (graph node {node.name!r}"
        if path or cls:
            s += f" in module {path or '<root>'!r} ({cls})"
        return s + ")"

    def fail(self, msg: str) -> NoReturn:
        """Raise ConversionError naming the op and module being converted."""
        reject(f"{msg}; at {self.where()}")

    # ---- roles of torch dimensions -------------------------------------------
    def fresh(self, base: str = "u") -> str:
        """A new unresolved role symbol."""
        self._n += 1
        return f"?{base}{self._n}"

    def res(self, r: str) -> str:
        """The role a symbol resolves to so far (itself while unresolved)."""
        while r in self.alias:
            r = self.alias[r]
        return r

    def bind(self, r: str, role: str) -> None:
        """Unify two role symbols: a dimension is time, batch or features everywhere."""
        a, b = self.res(r), self.res(role)
        if a == b:
            return
        if not a.startswith("?") and not b.startswith("?"):
            self.fail(f"a tensor dimension is used both as {ROLE_NAMES[a]} and as {ROLE_NAMES[b]}")
        if a.startswith("?"):
            self.alias[a] = b
        else:
            self.alias[b] = a

    def roles(self, v: TorchValue) -> list[str]:
        return [self.res(d) for d in v.dims]

    def check_dims(self, v: TorchValue) -> None:
        rs = [r for r in self.roles(v) if not r.startswith("?")]
        if len(rs) != len(set(rs)):
            self.fail(f"inconsistent time/batch/feature axes {self.roles(v)}")

    def set_T(self, n: int) -> None:
        """Record the number of time steps the example input has (one per conversion)."""
        if self.T is None:
            self.T = n
        elif self.T != n:
            self.fail(f"time axis of length {n} does not match the input's {self.T} steps")

    def fdim(self, v: TorchValue) -> int | None:
        """Index of v's feature dimension, None when no dimension is known to be features."""
        for i, r in enumerate(self.roles(v)):
            if r == "F":
                return i
        return None

    def need_last_feature(self, v: TorchValue, what: str) -> None:
        """Require v's last dimension to be its features (per-step ops act on them)."""
        if not v.dims:
            self.fail(f"{what} on a value without a feature axis")
        r = self.res(v.dims[-1])
        if r in ("T", "B"):
            self.fail(f"{what} acts on the {ROLE_NAMES[r]} axis, not on the features of one "
                      "time step")
        self.bind(v.dims[-1], "F")
        if v.shape[-1] != v.size:
            self.fail(f"{what}: feature size {v.shape[-1]} != tracked size {v.size}")

    # ---- IR nodes ------------------------------------------------------------
    def digest(self, t) -> tuple:
        """A hashable summary of a weight (its bytes' sha1), cached per tensor object."""
        if t is None:
            return ("-",)
        if isinstance(t, np.ndarray):
            a = np.ascontiguousarray(t, dtype=np.float32)
            return (hashlib.sha1(a.tobytes()).hexdigest(), a.shape)
        if not is_tensor(t):
            return ("s", repr(t))
        hit = self._digests.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
        a = to_numpy(t)
        d = (hashlib.sha1(a.tobytes()).hexdigest(), a.shape)
        self._digests[id(t)] = (t, d)
        return d

    def emit(self, op: str, name: str, inputs: list[str], attrs: dict, weights: dict,
             size: int, key_extra: tuple = (), memo: bool = True) -> str:
        """Append an IR node; returns its value id. Per-step ops are hash-consed (same op,
        attributes, weight contents and inputs: the same node), which is what folds the T
        unrolled copies of a loop body back into one node."""
        held = [i for i in inputs if i.startswith("~")]
        if held:
            self.fail("softmax over time is supported as attention pooling only: "
                      "(softmax(score, dim=time) * h).sum(time) or softmax(...).transpose(1, 2) @ h")
        key = None
        if memo:
            key = (op, tuple(sorted((k, repr(v)) for k, v in attrs.items())),
                   tuple((r, self.digest(w)) for r, w in sorted(weights.items())),
                   tuple(inputs)) + key_extra
            hit = self.memo.get(key)
            if hit is not None:
                return hit
        vid = f"%{len(self.nodes)}"
        ws = {r: (None if w is None else (to_numpy(w) if is_tensor(w) else np.asarray(w, np.float32)))
              for r, w in weights.items()}
        self.nodes.append({"op": op, "name": name or "node", "inputs": list(inputs),
                           "attrs": dict(attrs), "weights": ws, "out": vid})
        self.sizes[vid] = int(size)
        if key is not None:
            self.memo[key] = vid
        return vid

    def node_name(self, suffix: str = "") -> str:
        """IR node name: the module path of the FX node being converted."""
        path, _ = module_of(self.cur)
        base = path if path else self.cur.name
        return base + suffix

    def derive(self, v: TorchValue, vid: str, size: int | None = None, shape=None,
               dims=None) -> TorchValue:
        """The value `vid` computed per step from v: v's layout unless told otherwise."""
        return TorchValue(vid, v.size if size is None else size,
                          v.dims if dims is None else tuple(dims),
                          fx_shape(self.cur) if shape is None else tuple(shape), v.t)

    # ---- per-step building blocks --------------------------------------------
    def linear(self, v: TorchValue, W: np.ndarray, b: np.ndarray | None, name: str) -> TorchValue:
        """y = x W + b, W (in, out) in our layout."""
        self.need_last_feature(v, "a linear map")
        W = np.asarray(W, np.float32)
        vid = self.emit("Linear", name, [v.vid], {"in_features": int(W.shape[0]),
                                                  "out_features": int(W.shape[1])},
                        {"W": W, "bias": b}, W.shape[1])
        return self.derive(v, vid, size=int(W.shape[1]))

    def affine(self, v: TorchValue, scale, shift, name: str) -> TorchValue:
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

    def activation(self, v: TorchValue, kind: str, alpha: float | None = None,
                   name: str = "") -> TorchValue:
        """An element-wise `Activation` node (kinds as in docs/FORMAT.md)."""
        attrs = {"kind": kind, "size": v.size}
        if alpha is not None:
            attrs["alpha"] = float(alpha)
        vid = self.emit("Activation", name or self.node_name(), [v.vid], attrs, {}, v.size)
        return self.derive(v, vid)

    def const_vector(self, c, v: TorchValue, what: str) -> np.ndarray:
        """A constant that broadcasts against v along the feature dim only -> (F,) or scalar."""
        torch = torch_module()
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
                          f"{ROLE_NAMES.get(self.res(v.dims[i]), 'batch/time')} axis; only "
                          "per-feature constants are supported")
        a = to_numpy(c).reshape(-1)
        if a.size not in (1, v.size):
            self.fail(f"{what}: constant of shape {tuple(c.shape)} does not match {v.size} features")
        return a

    def same_layout(self, a: TorchValue, b: TorchValue, what: str) -> None:
        """Require two per-step operands of an element-wise op to line up step by step."""
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

    # ---- values and state ----------------------------------------------------
    def val(self, a, what: str) -> TorchValue:
        """a as a per-step value, or a ConversionError saying what it is instead."""
        if isinstance(a, TorchValue):
            return a
        if isinstance(a, StateStack):
            self.fail(f"{what}: h_n/c_n of {a.module} can only be indexed by layer (h_n[-1])")
        if isinstance(a, CellC):
            self.fail(f"{what}: the cell state c of an LSTMCell can only be passed back to the same "
                      "cell")
        self.fail(f"{what}: expected a per-step value, got {type(a).__name__}")

    def select_state(self, v: StateStack, i: int) -> TorchValue:
        """Entry i of h_n (one layer and direction): its h at the last step, or at step 0
        for a reverse direction."""
        n = len(v.entries)
        vid, rev, size = v.entries[i % n]
        if vid is None:
            self.fail(f"the cell state c_n of {v.module} cannot be emitted; lstm-infer keeps it "
                      "inside the engine (outputs are h)")
        T = self.T or 1
        return TorchValue(vid, size, v.dims[1:], v.shape[1:], 0 if rev else T - 1)
