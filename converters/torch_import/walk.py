"""The walk over an exported program (`torch.export`): the program's inputs and outputs,
then every FX node the outputs need, in graph order. Constants are computed with torch;
ops on per-step values go to their converter in the registry (`ops/`), which emits IR
nodes through the `Context` this class extends."""
from __future__ import annotations

import operator
from typing import Any, NoReturn

from ..errors import UnsupportedOpError
from .context import Context, reject
from .fx import bind_args, fx_shape, is_tensor, module_of, op_name, packet_name, size_hint, torch_module
from .mha_program import convert_call, mha_calls
from .ops import HANDLERS, SUPPORTED
from .values import CellC, OutputSpec, StateStack, TorchValue, has_abstract

# Ops whose result depends only on the *shape* of their tensor argument.
_SHAPE_ONLY = {"zeros_like", "ones_like", "full_like", "new_zeros", "new_ones", "new_full",
               "empty_like", "new_empty"}
_DROPOUT = {"dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout"}
_RECURRENT_MODULES = ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")


class Walker(Context):
    """Drives one conversion: `Walker(ep, options).run()` fills the Context's IR nodes and
    returns the output specs."""

    def run(self) -> list[OutputSpec]:
        """Interpret every FX node the selected outputs depend on; returns their specs."""
        torch = torch_module()
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
                    reject(f"the exported program has no value for {spec.target!r}")
                params[name] = t.detach()
            else:
                reject(f"exported programs with {spec.kind.name} inputs are not supported")
        graph = ep.graph
        placeholders = {n.name: n for n in graph.nodes if n.op == "placeholder"}
        tensor_inputs = [n for n in user_inputs if hasattr(placeholders[n].meta.get("val"), "shape")]
        if len(tensor_inputs) != 1:
            reject(f"the model takes {len(tensor_inputs)} tensor inputs ({', '.join(tensor_inputs)}); "
                   "lstm-infer models take exactly one input sequence. An initial state passed as "
                   "a model input is not supported for PyTorch import yet: create it inside "
                   "forward() as zeros or a constant")
        self.check_not_decomposed(graph)
        out_node = next(n for n in graph.nodes if n.op == "output")
        flat_outs = (list(out_node.args[0]) if isinstance(out_node.args[0], (list, tuple))
                     else [out_node.args[0]])
        user_outs = [(i, a) for i, (a, s) in enumerate(zip(flat_outs, sig.output_specs))
                     if s.kind == OutputKind.USER_OUTPUT]
        wanted = self.options.get("outputs")
        if wanted is not None:
            try:
                sel = [user_outs[int(k)] for k in wanted]
            except (IndexError, TypeError, ValueError):
                reject(f"option outputs={wanted!r}: the model has {len(user_outs)} outputs "
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
        # nn.MultiheadAttention traced into its ops (a saved program): one call, one emission
        mha = mha_calls(graph, needed)
        for node in graph.nodes:
            if node not in needed:
                continue
            self.cur = node
            if node in mha:
                if node is mha[node].out:
                    env[node] = convert_call(self, mha[node])
            elif node.op == "placeholder":
                if node.name in params:
                    env[node] = params[node.name]
                elif node.name in tensor_inputs:
                    env[node] = self.model_input(node)
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
            reject("no selected output depends on the model input")
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
            reject("the model has no output that lstm-infer can emit per time step")
        self.finish_roles()
        specs = []
        for k, label, a, v in outs:
            self.cur = a if isinstance(a, torch.fx.Node) else None
            specs.append(self.output_spec(k, label, v))
        self.cur = None
        self.finish_cells()
        return specs

    def model_input(self, node) -> TorchValue:
        """The model input: float features (B, T, I), (T, B, I) or (T, I), or integer token
        ids (B, T), (T, B) or (T,), one per step (a feature size of 1, see ops/embedding.py)."""
        shp = fx_shape(node)
        dtype = node.meta["val"].dtype
        self.int_input = not dtype.is_floating_point
        self.input_dtype = str(dtype).replace("torch.", "")
        self.input_name = node.name
        if self.int_input:
            if len(shp) not in (1, 2):
                reject(f"model input {node.name!r} holds integers of shape {shp}; token ids are "
                       "(B, T), (T, B) or (T,)")
            dims, size = tuple(f"?s{i}" for i in range(len(shp))), 1
        else:
            if len(shp) not in (2, 3):
                reject(f"model input {node.name!r} has shape {shp}; expected (B, T, I), "
                       "(T, B, I) or (T, I)")
            dims, size = (("?s0", "?s1", "F") if len(shp) == 3 else ("?s0", "F")), shp[-1]
        self.input_val = TorchValue("%in", size, dims, shp, None)
        self.sizes["%in"] = size
        return self.input_val

    def check_not_decomposed(self, graph) -> None:
        """A recurrent module whose op was decomposed into mm/view/... (run_decompositions)
        cannot be recognised; say so instead of failing on the first primitive op."""
        rnn_ops = {"lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell",
                   "rnn_relu_cell"}
        seen, found = {}, set()
        for n in graph.nodes:
            if n.op != "call_function":
                continue
            path, cls = module_of(n)
            if cls.rsplit(".", 1)[-1] in _RECURRENT_MODULES:
                seen.setdefault(path, cls)
                if packet_name(n.target) in rnn_ops:
                    found.add(path)
        for path, cls in seen.items():
            if path not in found:
                reject(f"module {path or '<root>'!r} ({cls}) was decomposed into primitive ops "
                       "(was the program passed through run_decompositions()?); convert the "
                       "program straight from torch.export.export, which keeps recurrent layers "
                       "as one op")

    def finish_roles(self) -> None:
        """Input axes that no op pinned down: (B, T, I) for 3-D, (T, I) for 2-D inputs
        ((B, T) and (T,) for token ids)."""
        roles = self.roles(self.input_val)
        free = [d for d, r in zip(self.input_val.dims, roles) if r.startswith("?")]
        batched = len(roles) == (2 if self.int_input else 3)
        left = [r for r in (("B", "T") if batched else ("T",)) if r not in roles]
        for d, r in zip(free, left):
            self.alias[self.res(d)] = r
        ti = [i for i, r in enumerate(self.roles(self.input_val)) if r == "T"]
        if ti:
            self.set_T(self.input_val.shape[ti[0]])

    def finish_cells(self) -> None:
        """Every cell loop must start at the first step of its direction."""
        for key, c in self.cells.items():
            start = (self.T - 1) if c.direction < 0 else 0
            if c.t_first != start:
                reject(f"the loop over {c.where} starts at time step {c.t_first}, not at step "
                       f"{start}; lstm-infer folds a cell loop only when it runs over every step")
            # A loop that stops early is fine as long as nothing needs the steps it skipped:
            # outputs and torch.stack check which time steps they get.
            if c.direction < 0:
                c.node["attrs"]["reverse"] = True

    def output_spec(self, k: int, label: str, v) -> OutputSpec:
        """Output k as a per-step sequence ('seq') or the model's last step ('last')."""
        if is_tensor(v) or not isinstance(v, TorchValue):
            reject(f"output {k} ({label}) is {type(v).__name__}, not a value computed per time "
                   "step from the input")
        if v.vid.startswith("~"):
            reject(f"output {k} ({label}) is softmax weights over time, which lstm-infer keeps "
                   "only inside attention pooling ((softmax(score, dim=time) * h).sum(time))")
        roles = []
        for d, s in zip(v.dims, v.shape):
            r = self.res(d)
            if r.startswith("?"):
                if s != 1:
                    reject(f"output {k} ({label}): cannot tell which axis of shape {v.shape} is "
                           "time/batch/features")
                r = "1"
            roles.append(r)
        if v.t is None:
            if "T" not in roles:
                reject(f"output {k} ({label}) has no time axis")
            kind = "seq"
        else:
            T = self.T or 1
            if v.t != T - 1:
                reject(f"output {k} ({label}) is the value at time step {v.t} of {T}; "
                       "lstm-infer can only emit per-step values or the last step (for a "
                       "reverse/bidirectional layer, h_n is its state at step 0)")
            kind = "last"
        return OutputSpec(k, label, v.vid, kind, tuple(roles))

    def call(self, node):
        """The value of one call_function node: indexing, shape arithmetic and ops on
        constants are evaluated (with torch), ops on per-step values go to their converter."""
        torch = torch_module()
        env = self.env
        tgt = node.target
        args = torch.fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
        if tgt is operator.getitem:
            seq, i = args
            if isinstance(seq, (list, tuple)):
                return seq[i]
            if is_tensor(seq):
                return seq[i]
            self.fail("indexing of this value is not supported")
        val = node.meta.get("val")
        if isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool) and not is_tensor(val):
            return size_hint(val)  # shape arithmetic (sym_size, operator.mul on sizes, ...)
        if not isinstance(tgt, torch._ops.OpOverload):
            if not has_abstract(args) and not has_abstract(kwargs):
                return tgt(*args, **kwargs)
            self.unsupported(node)
        name = packet_name(tgt)
        # In-place variants (relu_) share the converter of their op.
        pk = name if name in ("_softmax", "_log_softmax", "_to_copy", "_unsafe_view") \
            else name.rstrip("_")
        if pk in _SHAPE_ONLY and has_abstract(args):
            shp = fx_shape(node)
            args = tuple(torch.zeros(a.shape) if isinstance(a, TorchValue) else a for a in args)
            out = tgt(*args, **kwargs)
            return out.expand(shp) if tuple(out.shape) != shp else out
        if not has_abstract(args) and not has_abstract(kwargs):
            if torch.Tag.nondeterministic_seeded in getattr(tgt, "tags", ()):
                if pk in _DROPOUT and not bind_args(tgt, args, kwargs).get("train"):
                    return args[0]
                self.fail("random ops are not supported")
            with torch.no_grad():
                return tgt(*args, **kwargs)
        handler = HANDLERS.get(pk)
        if handler is None:
            self.unsupported(node)
        return handler(self, tgt, bind_args(tgt, args, kwargs))

    def unsupported(self, node) -> NoReturn:
        """Raise UnsupportedOpError naming the op and its module, and what is supported."""
        path, cls = module_of(node)
        mod = f" in module {path or '<root>'!r} ({cls})" if cls else ""
        hint = ""
        if cls.rsplit(".", 1)[-1] in _RECURRENT_MODULES:
            hint = (" The recurrent layer was decomposed into primitive ops (was the program "
                    "passed through run_decompositions()?); convert the program straight from "
                    "torch.export.export.")
        raise UnsupportedOpError(f"unsupported op {op_name(node.target)} (graph node "
                                 f"{node.name!r}){mod}.{hint} Supported {SUPPORTED}")
