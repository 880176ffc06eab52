"""Numerical verification of a converted file against onnxruntime on the source graph.

The converter stores in the file's provenance (`onnx`) how the ONNX inputs and outputs map
onto our per-step vectors: for each ONNX axis its tokens (T time, B batch, F features) and
feature size, and for outputs without a time axis (final states, `x[:, -1]`) the time step
at which each element is read (0 any, 1 last, 2 lengths-1, 3 first). Verification feeds
random inputs to both, whole sequence (`run`, with random sequence lengths when the graph
takes them) and streamed chunk by chunk with state carried, and reports max abs/rel error
per output; states paired with inputs are compared after streaming via `get_state()`.

Inputs: one random batch at a short length (T=7) and one at a long length (`long_t`, 64),
plus any given. The batch size is what the graph allows: a batch the file declares, else
the batch of constant initial states / sequence_lens (onnxruntime refuses any other),
else 3. A graph with a fixed sequence length (declared by its input, or baked into a
Reshape at export) is verified at that length, and also at the long one if onnxruntime
accepts it; if not, the report says that the source runs only at that length while the
converted model runs any length.

onnxruntime rejects `layout=1` on LSTM/GRU/RNN; such graphs are rewritten to the
equivalent `layout=0` graph (Transposes around the node) before onnxruntime runs them.
"""
from __future__ import annotations

import numpy as np

from lstm_infer.ops.embedding import example_inputs

from .errors import ConversionError
from .onnx_inputs import parse_fix_value
from .report import VerifyReport

READ_ROWS = {0: "last", 1: "last", 2: "len", 3: "first"}
QUANT_REL_TOL = 0.05  # vs a source with uint8 activations (_QuantizedSource); dksplit: 1.9% measured
LONG_T = 64


def graph_batch(model, fix=None) -> int | None:
    """The batch size a graph is fixed to by the initial states or sequence_lens of its
    LSTM/GRU/RNN nodes (initializers, Constant nodes, values bound with `fix`, graph inputs
    declared with fixed sizes), or None when nothing fixes it."""
    from onnx import numpy_helper
    consts = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = tuple(numpy_helper.to_array(a.t).shape)
    for vi in model.graph.input:   # inputs declared with fixed sizes (e.g. sequence_lens [2])
        dims = vi.type.tensor_type.shape.dim
        if vi.name not in consts and dims and all(d.HasField("dim_value") for d in dims):
            consts[vi.name] = tuple(int(d.dim_value) for d in dims)
    for k, v in (fix or {}).items():
        consts[k] = np.shape(parse_fix_value(v))
    for n in model.graph.node:
        if n.op_type not in ("LSTM", "GRU", "RNN"):
            continue
        layout = next((int(a.i) for a in n.attribute if a.name == "layout"), 0)
        for k in (4, 5, 6):
            shape = consts.get(n.input[k]) if len(n.input) > k and n.input[k] else None
            if shape is None:
                continue
            if k == 4 and len(shape) == 1:
                return int(shape[0])
            if k > 4 and len(shape) == 3:
                return int(shape[0] if layout else shape[1])
    return None


def to_layout0(model):
    """A copy of `model` with every layout=1 LSTM/GRU/RNN rewritten as layout=0 + Transposes."""
    import onnx
    from onnx import helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = []
    changed = False
    for n in m.graph.node:
        lay = [a for a in n.attribute if a.name == "layout"]
        if n.op_type not in ("LSTM", "GRU", "RNN") or not lay or lay[0].i == 0:
            nodes.append(n)
            continue
        changed = True
        base = (n.name or n.op_type) + "__l0"
        ins = list(n.input)
        pre = []
        ins[0] = _tr(pre, ins[0], [1, 0, 2], base + "_x")
        for k in (5, 6):
            if len(ins) > k and ins[k]:
                ins[k] = _tr(pre, ins[k], [1, 0, 2], base + f"_s{k}")
        outs = list(n.output)
        post = []
        new_outs = []
        for k, o in enumerate(outs):
            if not o:
                new_outs.append("")
                continue
            tmp = f"{base}_o{k}"
            new_outs.append(tmp)
            post.append(helper.make_node("Transpose", [tmp], [o], perm=[2, 0, 1, 3] if k == 0 else [1, 0, 2],
                                         name=f"{base}_post{k}"))
        attrs = [a for a in n.attribute if a.name != "layout"]
        nn = helper.make_node(n.op_type, ins, new_outs, name=n.name)
        nn.attribute.extend(attrs)
        nodes += pre + [nn] + post
    if not changed:
        return model
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def _tr(nodes: list, x: str, perm, name: str) -> str:
    from onnx import helper
    nodes.append(helper.make_node("Transpose", [x], [name], perm=perm, name=name + "_t"))
    return name


def _session(model):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(to_layout0(model).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def _shape(dims: list, T: int, B: int) -> list[int]:
    return [T if d == "T" else B if d == "B" else int(d) for d in dims]


def _to_ours(X: np.ndarray, dims: list) -> np.ndarray:
    """ONNX data input -> (B, T, I)."""
    t = dims.index("T")
    b = dims.index("B") if "B" in dims else None
    others = [k for k in range(X.ndim) if k not in (t, b)]
    if b is None:
        X = X[None]
        t, others = t + 1, [k + 1 for k in others]
        b = 0
    Y = X.transpose([b, t] + others)
    return np.ascontiguousarray(Y.reshape(Y.shape[0], Y.shape[1], -1), dtype=np.float32)


def _from_ours(Xo: np.ndarray, dims: list) -> np.ndarray:
    """(T, I) or (B, T, I) in the engine's layout -> the ONNX data input's layout."""
    Xo = np.asarray(Xo, np.float32)
    if Xo.ndim == 2:
        Xo = Xo[None]
    B, T = Xo.shape[:2]
    fdims = [int(d) for d in dims if d not in ("T", "B")]
    if "B" not in dims and B != 1:
        raise ValueError(f"the ONNX input {dims} has no batch axis; give (T, I) inputs")
    arr = Xo.reshape([B, T] + fdims)
    src, k = [], 2
    for d in dims:
        if d == "B":
            src.append(0)
        elif d == "T":
            src.append(1)
        else:
            src.append(k)
            k += 1
    if "B" not in dims:
        arr = arr[0]
        src = [i - 1 for i in src]
    return np.ascontiguousarray(arr.transpose(src))


def _place(arr: np.ndarray, axes: list, fshape: list, has_t: bool) -> np.ndarray:
    """arr (B, [T,] *fshape) -> the ONNX tensor laid out by `axes` tokens."""
    lead = 2 if has_t else 1
    sizes = list(arr.shape[:lead])
    arr = arr.reshape(sizes + list(fshape))
    order, out_shape = [], []
    for k, toks in enumerate(axes):
        n = 1
        for tok in toks:
            src = 0 if tok == "B" else (1 if tok == "T" else lead + k)
            order.append(src)
            n *= arr.shape[src]
        out_shape.append(n)
    rest = [i for i in range(arr.ndim) if i not in order]
    return arr.transpose(order + rest).reshape(out_shape)


def reconstruct(Y: np.ndarray, entry: dict, lens: np.ndarray) -> np.ndarray:
    """Our output Y (B, T, n) for one ONNX output -> the ONNX tensor."""
    if entry["readout"] is None:
        return _place(Y, entry["axes"], entry["fshape"], True)
    codes = np.asarray(entry["readout"])
    B, T, n = Y.shape
    rows = np.empty((B, n), np.int64)
    for code in np.unique(codes):
        sel = codes == code
        if code == 3:
            rows[:, sel] = 0
        elif code == 2:
            rows[:, sel] = (np.maximum(lens, 1) - 1)[:, None]
        else:
            rows[:, sel] = T - 1
    final = np.take_along_axis(Y, rows[:, None, :], axis=1)[:, 0, :]
    return _place(final, entry["axes"], entry["fshape"], False)


def _err(a: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    if a.shape != ref.shape:
        raise AssertionError(f"shape {a.shape} vs onnxruntime {ref.shape}")
    if a.size == 0:
        return 0.0, 0.0
    d = float(np.max(np.abs(a - ref)))
    return d, d / max(float(np.max(np.abs(ref))), 1e-12)


def _extra_data(meta, T: int, B: int, rng) -> dict[str, np.ndarray]:
    """Random values for the graph's other per-step data inputs (several inputs per step)."""
    dims = {i["name"]: i["dims"] for i in meta["inputs"]}
    return {k: rng.standard_normal(_shape(dims[k], T, B)).astype(np.float32)
            for k in meta.get("extra_data_inputs", [])}


def _ours_all(meta, X, dims, extra: dict) -> np.ndarray:
    """The engine's input: the data inputs in (B, T, I) layout, side by side in order."""
    all_dims = {i["name"]: i["dims"] for i in meta["inputs"]}
    parts = [_to_ours(X, dims)] + [_to_ours(extra[k], all_dims[k]) for k in extra]
    return parts[0] if len(parts) == 1 else np.ascontiguousarray(np.concatenate(parts, axis=-1))


def _feeds(meta, model, X, T, B, lens, fix, extra: dict | None = None):
    feeds = dict(extra or {})
    fix = dict(fix or {})
    for inp in meta["inputs"]:
        name, dt = inp["name"], np.dtype(inp["dtype"])
        if name in feeds:
            feeds[name] = feeds[name].astype(dt)
        elif name == meta["data_input"]:
            feeds[name] = X.astype(dt)
        elif name == meta.get("lengths_input"):
            feeds[name] = lens.astype(dt)
        elif name in fix:
            feeds[name] = np.asarray(parse_fix_value(fix[name])).astype(dt)
        elif name in meta.get("fixed", {}):
            f = meta["fixed"][name]
            feeds[name] = np.asarray(f["value"], dtype=f["dtype"]).reshape(f["shape"]).astype(dt)
        else:
            feeds[name] = np.zeros(_shape(inp["dims"], T, B), dt)
    for name, v in list(feeds.items()):
        want = next(i for i in meta["inputs"] if i["name"] == name)["dims"]
        if v.ndim < len(want) and v.size == 1:
            feeds[name] = np.full(_shape(want, T, B), v.reshape(-1)[0], v.dtype)
    return feeds


def _runs_at(sess, meta, model, dims, T: int, B: int, fix) -> bool:
    """Does onnxruntime run the source graph at sequence length T, with outputs of the
    shapes the converted model's outputs map to? (A length baked into a Reshape may still
    divide evenly at another length, giving outputs of another shape and meaning.)"""
    import onnxruntime as ort
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4   # a refusal is the expected answer, not an error to log
    X = np.zeros(_shape(dims, T, B), np.float32)
    try:
        got = sess.run(None, _feeds(meta, model, X, T, B, np.full(B, T, np.int64), fix), quiet)
    except Exception:
        return False
    shapes = dict(zip([o.name for o in sess.get_outputs()], [np.shape(g) for g in got]))
    for e in meta["outputs"]:
        want = [int(np.prod([T if t == "T" else B if t == "B" else e["fshape"][k] for t in toks]))
                for k, toks in enumerate(e["axes"])]
        if list(shapes[e["name"]]) != want:
            return False
    return True


def _ort_run(sess, feeds: dict, shape) -> list:
    try:
        return sess.run(None, feeds)
    except Exception as e:  # onnxruntime's own exception types are not ValueErrors
        raise ConversionError(f"verification: onnxruntime cannot run the source graph on a random "
                              f"input of shape {list(shape)}: {' '.join(str(e).split())}") from None


def _state_value(states: list[dict], entry: dict) -> np.ndarray:
    """Paired state output rebuilt from get_state() of each batch entry's stream."""
    per_b = []
    for st in states:
        per_b.append(np.array([st[name][j] for name, j in entry["elements"]], np.float32))
    arr = np.stack(per_b).reshape([len(states)] + entry["fshape"])
    return _place(arr, entry["axes"], entry["fshape"], False)


def verify_model(m, model, inputs=None, fix=None, source: str = "onnx", T: int | None = None,
                 B: int | None = None, seed: int = 0, tolerance: float = 1e-4,
                 chunks=(1, 2, 5), long_t: int | None = LONG_T) -> VerifyReport:
    meta = m.provenance.get("onnx")
    if not meta:
        raise ValueError("this .lstm file carries no ONNX mapping (was it converted from ONNX by "
                         "lstm-infer?)")
    rep = VerifyReport(source=source, tolerance=tolerance)
    quant = _QuantizedSource(model)
    rng = np.random.default_rng(seed)
    dims = next(i for i in meta["inputs"] if i["name"] == meta["data_input"])["dims"]
    hints = meta.get("hints", {})
    fixed_t = hints.get("T")
    T = int(fixed_t or T or 7)
    bound = {k: np.zeros(f["shape"]) for k, f in meta.get("fixed", {}).items()}
    fixed_b = hints.get("B") or graph_batch(model, {**bound, **(fix or {})})
    B = int(fixed_b or B or 3) if "B" in dims else 1
    sess = _session(model)
    onames = [o.name for o in sess.get_outputs()]
    # a length fixed by the file: does onnxruntime refuse any other? (then say so below)
    only_t = bool(fixed_t) and not _runs_at(sess, meta, model, dims, max(LONG_T, T + 1), B, fix)
    lengths = [T, max(long_t, T + 1)] if long_t and not only_t else [T]
    # token ids for a token model
    xs = [example_inputs(m.graph, tuple(_shape(dims, t, B)), rng) for t in lengths]
    if inputs is not None:
        # inputs are in the engine's layout, (T, I) or (B, T, I), as `lstm-infer verify --input`
        given = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        for x in given:
            X = _from_ours(x, dims)
            tx, bx = X.shape[dims.index("T")], X.shape[dims.index("B")] if "B" in dims else 1
            if (only_t and tx != T) or (fixed_b and bx != int(fixed_b)):
                rep.notes.append(f"given input of {tx} steps x batch {bx} skipped: the source graph "
                                 f"runs only at {T} steps" + (f" x batch {fixed_b}" if fixed_b else ""))
                continue
            xs.append(X)
    rep.notes.append(f"compared on random sequences of {' and '.join(str(t) for t in lengths)} "
                     f"steps (batch {B})" + (f" and {len(xs) - len(lengths)} given input(s)"
                                             if len(xs) > len(lengths) else ""))
    if only_t:
        rep.notes.append(f"the source graph fixes the sequence length at {T} steps (baked in when "
                         f"it was exported), so onnxruntime runs it only at that length and it "
                         f"was verified at T={T}; the converted model runs sequences of any length")
    if fixed_b and "B" in dims and not hints.get("B"):
        rep.notes.append(f"verified at batch {fixed_b}: the source graph's constant initial states "
                         "fix its batch size (the converted model runs any batch)")
    has_len = meta.get("lengths_input") is not None
    for X in xs:
        Tx = X.shape[dims.index("T")]
        Bx = X.shape[dims.index("B")] if "B" in dims else 1
        full = np.full(Bx, Tx, np.int64)
        lens = full
        if has_len:
            lens = rng.integers(1, Tx + 1, size=Bx)
            lens[0] = Tx
        extra = _extra_data(meta, Tx, Bx, rng)
        ref = dict(zip(onames, _ort_run(sess, _feeds(meta, model, X, Tx, Bx, lens, fix, extra), X.shape)))
        Xo = _ours_all(meta, X, dims, extra)
        y = m.run(Xo, lengths=lens if has_len else None)
        ys = y if isinstance(y, dict) else {meta["outputs"][0]["name"]: y}
        for entry in meta["outputs"]:
            got = reconstruct(ys[entry["name"]], entry, lens)
            a, r = _err(got, ref[entry["name"]])
            rep.run_max_abs[entry["name"]] = max(a, rep.run_max_abs.get(entry["name"], 0.0))
            rep.run_max_rel[entry["name"]] = max(r, rep.run_max_rel.get(entry["name"], 0.0))
            quant.add(entry["name"], got, ref[entry["name"]])
        if not m.streamable:
            rep.streamed = False
            continue
        if has_len:
            ref = dict(zip(onames, _ort_run(sess, _feeds(meta, model, X, Tx, Bx, full, fix, extra), X.shape)))
        outs, states = [], []
        for b in range(Xo.shape[0]):
            s = m.stream()
            parts, t = [], 0
            k = 0
            while t < Tx:
                n = chunks[k % len(chunks)]
                parts.append(s.step_many(Xo[b, t:t + n]))
                t += n
                k += 1
            if isinstance(parts[0], dict):
                outs.append({kk: np.concatenate([p[kk] for p in parts]) for kk in parts[0]})
            else:
                outs.append(np.concatenate(parts))
            states.append(s.get_state())
        for entry in meta["outputs"]:
            key = entry["name"]
            Y = np.stack([o[key] if isinstance(o, dict) else o for o in outs])
            got = reconstruct(Y, entry, full)
            a, r = _err(got, ref[entry["name"]])
            rep.stream_max_abs[entry["name"]] = max(a, rep.stream_max_abs.get(entry["name"], 0.0))
            rep.stream_max_rel[entry["name"]] = max(r, rep.stream_max_rel.get(entry["name"], 0.0))
        for entry in meta.get("state", []):
            got = _state_value(states, entry)
            want = ref[entry["output"]]
            try:
                got = got.reshape(want.shape) if got.size == want.size else got
            except ValueError:
                pass
            a, r = _err(got, want)
            name = f"{entry['output']} (state)"
            rep.stream_max_abs[name] = max(a, rep.stream_max_abs.get(name, 0.0))
            rep.stream_max_rel[name] = max(r, rep.stream_max_rel.get(name, 0.0))
    for entry in meta.get("state", []):
        name = f"{entry['output']} (state)"
        if name in rep.stream_max_abs:
            rep.notes.append(f"final state {entry['output']!r} (paired with input {entry['input']!r}) "
                             f"after streaming: max abs {rep.stream_max_abs[name]:.3g} "
                             f"rel {rep.stream_max_rel[name]:.3g}")
    quant.finish(rep)
    return rep


class _QuantizedSource:
    """A source that rounds activations to uint8 at run time (onnxruntime's dynamic
    quantization: onnx_quant.QUANTIZED_ACTIVATION_OPS) cannot match the engine's float32
    activations to 1e-4. Its tolerance becomes QUANT_REL_TOL of the outputs' largest
    magnitude (measured on the corpus, tests/test_corpus_tokens.py), and the report says
    how often the largest output of each step agrees (argmax over the last axis), which
    is what a tagger's or classifier's user sees."""

    def __init__(self, model):
        from .onnx_quant import QUANTIZED_ACTIVATION_OPS
        self.ops = sorted({n.op_type for n in model.graph.node} & QUANTIZED_ACTIVATION_OPS)
        self.scale = 0.0
        self.agree: dict[str, list[int]] = {}

    def add(self, name: str, got: np.ndarray, ref: np.ndarray) -> None:
        if not self.ops:
            return
        self.scale = max(self.scale, float(np.max(np.abs(ref))) if ref.size else 0.0)
        if got.shape != ref.shape or ref.ndim < 2 or ref.shape[-1] < 2:
            return
        same = np.argmax(got, -1) == np.argmax(ref, -1)
        n = self.agree.setdefault(name, [0, 0])
        n[0] += int(same.sum())
        n[1] += same.size

    def finish(self, rep: VerifyReport) -> None:
        if not self.ops:
            return
        rep.tolerance = max(rep.tolerance, QUANT_REL_TOL * self.scale)
        rep.notes.append(f"the source quantizes activations to uint8 at run time ({', '.join(self.ops)}); "
                         f"the engine keeps them float32: tolerance {QUANT_REL_TOL:g} x the largest "
                         f"output magnitude = {rep.tolerance:.3g}")
        for name, (k, n) in self.agree.items():
            rep.notes.append(f"{name}: argmax over the last axis agrees with onnxruntime at "
                             f"{k}/{n} positions ({100.0 * k / max(n, 1):.1f}%)")
