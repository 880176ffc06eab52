"""Verification of a frame model (`frames.py`) against its torch module: random unit-scale
frame sequences (B=2) at the example length and a longer one; run() against torch on the
whole batch (a last-frame output also on two prefixes), then streamed: step() for the
first frames and step_many() over chunks of varying sizes, state carried."""
from __future__ import annotations

import numpy as np

from ..report import VerifyReport

_CHUNKS = (1, 3, 2, 5)


def _torch_outputs(fn, X: np.ndarray, t_axis: int, outs) -> list[np.ndarray]:
    """X (B, T, C, H, W) -> per output (B, T, n) for 'seq', (B, n) for 'last'."""
    import torch
    from torch.utils._pytree import tree_flatten
    xs = torch.from_numpy(np.ascontiguousarray(X if t_axis != 0 else X.transpose(1, 0, 2, 3, 4)))
    with torch.no_grad():
        flat, _ = tree_flatten(fn(xs))
    B, T = X.shape[:2]
    res = []
    for o in outs:
        y = flat[o.index].detach().double().numpy()
        res.append(y.reshape(B, T, -1) if o.kind == "seq" else y.reshape(B, -1))
    return res


def _err(a, b) -> float:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch comparing with torch: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)))


def verify_frames(path: str, fn, outs, t_axis: int, example_shape: tuple, seed: int = 0,
                  tolerance: float = 1e-4) -> VerifyReport:
    import lstm_infer
    m = lstm_infer.load(path)
    rep = VerifyReport("torch", tolerance=tolerance)
    rng = np.random.default_rng(seed)
    B, T0, C, H, W = (example_shape[1], example_shape[0]) + tuple(example_shape[2:]) \
        if t_axis == 0 else example_shape
    for T in (T0, T0 + 4):
        X = rng.uniform(-1, 1, size=(2, T, C, H, W)).astype(np.float32)
        try:
            ref = _torch_outputs(fn, X, t_axis, outs)
        except Exception as e:  # a reference specialised to the traced length
            rep.notes.append(f"torch rejected {T} frames ({type(e).__name__}); not compared there")
            continue
        y = m.run(X.reshape(2, T, -1))
        ys = [y[o.label] for o in outs] if isinstance(y, dict) else [y]
        for o, a, r in zip(outs, ys, ref):
            a = np.asarray(a).reshape(2, T, -1)
            e = _err(a, r) if o.kind == "seq" else _err(a[:, -1], r)
            if o.kind == "last":
                for t in sorted({0, T // 2}):
                    e = max(e, _err(a[:, t], _torch_outputs(fn, X[:, :t + 1], t_axis, [o])[0]))
            rep.run_max_abs[o.label] = max(rep.run_max_abs.get(o.label, 0.0), e)
        for b in range(2):
            s = m.stream()
            steps = [(1, s.step(X[b, 0].reshape(-1)))]
            t, k = 1, 0
            while t < T:
                n = min(_CHUNKS[k % len(_CHUNKS)], T - t)
                steps.append((n, s.step_many(X[b, t:t + n].reshape(n, -1))))
                t += n
                k += 1
            for o, r in zip(outs, ref):
                got = np.concatenate([_rows(q, o, n) for n, q in steps], axis=0)
                e = _err(got, r[b]) if o.kind == "seq" else _err(got[-1], r[b])
                rep.stream_max_abs[o.label] = max(rep.stream_max_abs.get(o.label, 0.0), e)
    return rep


def _rows(q, o, n: int) -> np.ndarray:
    """One step()'s (n = 1) or step_many()'s (n steps) result for output o as (n, size)."""
    return np.asarray(q[o.label] if isinstance(q, dict) else q).reshape(n, -1)
