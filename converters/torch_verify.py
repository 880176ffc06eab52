"""Numerical verification of a `.lstm` file against its PyTorch source.

The torch reference (the nn.Module, or `ExportedProgram.module()`) and the file are run
on the same unit-scale random inputs of several lengths (1 included), or the same random
token ids in [0, V) for a model whose input is ids (torch gets them as integers, the file
as floats holding them):

* `run()` on the batch (B, T, I) against torch on the whole sequences. For a last-step
  output the last row is compared with torch's output and, where the output does not go
  through a reverse-direction layer, earlier rows t with torch on the prefix X[:, :t+1];
* when the model streams: `stream().step()` for the first steps, then `step_many()` over
  chunks of varying sizes with the state carried, against the same torch results.

A reference that rejects a shape (an exported program specialised to its traced shape)
is skipped for that shape with a note; user-given inputs must be accepted.
"""
from __future__ import annotations

import numpy as np

from lstm_infer.ops.embedding import example_inputs

from .report import VerifyReport

_CHUNKS = (1, 2, 5, 3, 8, 13, 4)


def _norm(y, dims: tuple) -> np.ndarray:
    """A torch output -> (B, T, O) for a sequence output or (B, O) for a last-step output."""
    y = y.detach().cpu().double().numpy()
    keep = [i for i, r in enumerate(dims) if r != "1"]
    y = y.reshape([y.shape[i] for i in keep])
    dims = [dims[i] for i in keep]
    if "F" not in dims:
        y = y[..., None]
        dims.append("F")
    y = y.transpose([dims.index(r) for r in ("B", "T", "F") if r in dims])
    return y if "B" in dims else y[None]


class _Reference:
    def __init__(self, fn, spec):
        self.fn = fn
        self.spec = spec

    def __call__(self, X: np.ndarray) -> list[np.ndarray]:
        """X (B, T, I) numpy -> one array per kept output, normalised by _norm."""
        import torch
        from torch.utils._pytree import tree_flatten
        dims = self.spec.input_dims
        if is_ids(self.spec):  # (B, T, 1) float-held ids -> the (B, T) integer tensor torch takes
            xs = torch.from_numpy(np.ascontiguousarray(X[..., 0])).to(getattr(torch, self.spec.input_dtype))
        else:
            xs = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        if "B" in dims:
            order = [("B", "T", "F").index(r) for r in dims]
            calls = [xs.permute(order).contiguous()]
        else:  # an unbatched model: one call per batch element
            calls = [xs[b] for b in range(xs.shape[0])]
        results = []
        with torch.no_grad():
            for x in calls:
                flat, _ = tree_flatten(self.fn(x))
                results.append([_norm(flat[o.index], o.dims) for o in self.spec.outputs])
        if len(results) == 1:
            return results[0]
        return [np.concatenate([r[j] for r in results], axis=0) for j in range(len(self.spec.outputs))]


def is_ids(spec) -> bool:
    """The torch model takes integer token ids (fed to lstm-infer as floats, one per step)."""
    return spec.input_dtype.startswith("int")


def _err(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch comparing with torch: {a.shape} vs {b.shape}")
    d = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return d, d / max(scale, 1e-12)


def _as_list(y, names) -> list[np.ndarray]:
    return [y[n] for n in names] if isinstance(y, dict) else [y]


def _prefix_points(T: int) -> list[int]:
    if T <= 12:
        return list(range(T - 1))
    return sorted({0, 1, T // 4, T // 2, (3 * T) // 4, T - 2})


def verify_against(lstm_path, reference, spec, example, source: str = "torch",
                   options: dict | None = None, inputs=None) -> VerifyReport:
    import lstm_infer
    options = options or {}
    m = lstm_infer.load(lstm_path)
    if m.input_size != spec.input_size:
        raise ValueError(f"{lstm_path} takes {m.input_size} input features; the torch model takes "
                         f"{spec.input_size}")
    names = m.output_names
    if len(names) != len(spec.outputs):
        raise ValueError(f"{lstm_path} has {len(names)} outputs; the torch model gives "
                         f"{len(spec.outputs)} convertible outputs")
    rep = VerifyReport(source=str(source), tolerance=float(options.get("tolerance", 1e-4)),
                       streamed=m.streamable)
    for n in names:
        rep.run_max_abs[n] = rep.run_max_rel[n] = 0.0
        if m.streamable:
            rep.stream_max_abs[n] = rep.stream_max_rel[n] = 0.0
    ref = _Reference(reference, spec)
    dims = spec.input_dims
    if "T" not in dims:
        rep.notes.append("the model has no time axis; compared single steps")
    ex_shape = tuple(example.shape)
    B = int(options.get("batch_size") or (ex_shape[dims.index("B")] if "B" in dims else 1))
    T_ex = ex_shape[dims.index("T")] if "T" in dims else 1
    lengths = list(options.get("lengths") or sorted({1, 5, T_ex, 33}))
    # Full causal attention refuses sequences past its max_len: compare up to it.
    cap = min((n.attrs["window"] for n in m.graph.nodes
               if n.op == "CausalAttention" and n.attrs.get("limit")), default=None)
    if cap is not None and max(lengths) > cap:
        lengths = sorted({min(int(L), cap) for L in lengths})
        rep.notes.append(f"compared sequences of at most {cap} steps (attention_max_len)")
    rng = np.random.default_rng(int(options.get("seed", 0)))
    I = spec.input_size
    cases = []
    if inputs is not None:
        X = np.asarray(inputs, dtype=np.float32)
        if X.ndim == 2:
            X = X[None]
        if X.ndim != 3 or X.shape[-1] != I:
            raise ValueError(f"inputs have shape {np.shape(inputs)}, expected (T, {I}) or (B, T, {I})")
        cases.append(("given input", X, True))
    for T in lengths:  # unit-scale floats, or ids in [0, V) for a token model
        cases.append((f"T={T}", example_inputs(m.graph, (B, int(T), I), rng), False))

    def upd(table_abs, table_rel, name, e):
        table_abs[name] = max(table_abs[name], e[0])
        table_rel[name] = max(table_rel[name], e[1])

    compared = 0
    skipped = []
    for label, X, given in cases:
        try:
            want = ref(X)
        except Exception as e:  # the reference rejects this shape
            if given:
                raise ValueError(f"the torch model rejected the given input of shape {X.shape}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
            skipped.append(f"{label} (B={X.shape[0]})")
            continue
        compared += 1
        T = X.shape[1]
        ours = _as_list(m.run(X), names)
        prefix: dict[int, list] = {T - 1: want}
        if any(o.kind == "last" and o.prefix_ok for o in spec.outputs):
            for t in _prefix_points(T):
                try:
                    prefix[t] = ref(X[:, :t + 1])
                except Exception:
                    pass
        for j, (o, name) in enumerate(zip(spec.outputs, names)):
            if o.kind == "seq":
                upd(rep.run_max_abs, rep.run_max_rel, name, _err(ours[j], want[j]))
            else:
                rows = sorted(prefix) if o.prefix_ok else [T - 1]
                for t in rows:
                    upd(rep.run_max_abs, rep.run_max_rel, name, _err(ours[j][:, t], prefix[t][j]))
        if not m.streamable:
            continue
        for b in range(min(X.shape[0], 2)):
            s = m.stream()
            rows = []
            pos = 0
            while pos < min(3, T):  # a few single steps, then chunks of varying sizes
                rows.append([y[None] for y in _as_list(s.step(X[b, pos]), names)])
                pos += 1
            k = b
            while pos < T:
                n = min(_CHUNKS[k % len(_CHUNKS)], T - pos)
                rows.append(_as_list(s.step_many(X[b, pos:pos + n]), names))
                pos += n
                k += 1
            Y = [np.concatenate([r[j] for r in rows], axis=0) for j in range(len(names))]
            for j, (o, name) in enumerate(zip(spec.outputs, names)):
                if o.kind == "seq":
                    upd(rep.stream_max_abs, rep.stream_max_rel, name, _err(Y[j], want[j][b]))
                else:
                    pts = sorted(prefix) if o.prefix_ok else [T - 1]
                    for t in pts:
                        upd(rep.stream_max_abs, rep.stream_max_rel, name,
                            _err(Y[j][t], prefix[t][j][b]))
    if skipped:
        rep.notes.append("the torch reference rejected " + ", ".join(skipped) +
                         " (a program exported with static shapes runs only at its traced shape)")
    if not compared:
        raise ValueError("verification could not run: the torch reference rejected every input "
                         "shape tried")
    return rep
