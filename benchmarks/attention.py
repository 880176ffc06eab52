"""Attention row of the benchmark suite: per-step latency of lstm-infer's step() against
what a user without a streaming engine does, PyTorch re-running the model on the growing
prefix x[:, :t+1] to get the output at step t.

Models (random weights, batch 1):
- `pool`: LSTM(16, 64) + additive attention pooling (softmax over time, weighted sum) +
  Linear(64, 8), converted with convert_torch;
- `mha`: LSTM(16, 64) + causal nn.MultiheadAttention(64, 4 heads) over a sliding window
  of 64 steps (banded attn_mask), residual, Linear(64, 8), converted with convert_torch
  (nn.MultiheadAttention is read as one op; the example input is longer than the band, so
  the traced mask shows its width). Should the import fail, `mha_graph` builds the same
  model by hand (Linear q/k/v, CausalAttention, Linear out_proj, Add) and the script says
  so in its output; either way it is checked against torch.

Timing: perf_counter_ns around each call, median and p99 over the calls at each t
(lstm-infer: `calls` consecutive steps starting at step t; torch: `calls` runs of the
prefix of length t+1), torch with one thread. Run from the repository root:

    PYTHONPATH=. python benchmarks/attention.py [--calls 200]

It prints a table and writes benchmarks/results/attention.json and .md (not committed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn

import lstm_infer
from converters import ConversionError, convert_torch
from converters.layout import linear_weight, recurrent_weights
from lstm_infer.builder import GraphBuilder

I, H, HEADS, WINDOW, OUT = 16, 64, 4, 64, 8
POSITIONS = (64, 256, 1024)


class AttnPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(I, H, batch_first=True)
        self.W, self.v, self.fc = nn.Linear(H, H), nn.Linear(H, 1, bias=False), nn.Linear(H, OUT)

    def forward(self, x):
        h, _ = self.lstm(x)
        a = torch.softmax(self.v(torch.tanh(self.W(h))), dim=1)
        return self.fc((a * h).sum(1))


def banded_mask(T: int, window: int) -> torch.Tensor:
    """True where attention is NOT allowed: the future and steps `window` or more back."""
    i = torch.arange(T)
    d = i[:, None] - i[None, :]
    return (d < 0) | (d >= window)


class CausalMHA(nn.Module):
    """The last step's output of LSTM -> causal windowed self-attention (+ residual) -> fc."""

    def __init__(self, window: int = WINDOW):
        super().__init__()
        self.lstm = nn.LSTM(I, H, batch_first=True)
        self.mha = nn.MultiheadAttention(H, HEADS, batch_first=True)
        self.fc = nn.Linear(H, OUT)
        self.window = window

    def forward(self, x):
        h, _ = self.lstm(x)
        a, _ = self.mha(h, h, h, attn_mask=banded_mask(h.shape[1], self.window), need_weights=False)
        return self.fc(a + h)[:, -1]


def mha_graph(model: CausalMHA, path: str, limit: bool = False) -> None:
    """The CausalMHA model as an lstm-infer graph: in_proj rows (q; k; v) split into three
    Linear nodes (torch (out, in) -> IR (in, out), linear_weight), CausalAttention with scale
    1/sqrt(head_dim), out_proj, the residual Add and fc."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    b = GraphBuilder("x", I)
    h = b.add("LSTM", "lstm", ["x"], {"input_size": I, "hidden_size": H, "proj_size": 0,
                                      "reverse": False},
              recurrent_weights("LSTM", sd["lstm.weight_ih_l0"], sd["lstm.weight_hh_l0"],
                                sd["lstm.bias_ih_l0"], sd["lstm.bias_hh_l0"]))
    W, bias = sd["mha.in_proj_weight"], sd["mha.in_proj_bias"]
    qkv = [b.add("Linear", f"mha.{n}", [h], {"in_features": H, "out_features": H},
                 {"W": linear_weight(W[k * H:(k + 1) * H]), "bias": bias[k * H:(k + 1) * H]})
           for k, n in enumerate("qkv")]
    D = H // HEADS
    att = b.add("CausalAttention", "mha.attention", qkv,
                {"heads": HEADS, "head_dim": D, "window": model.window, "limit": limit},
                {"scale": np.array([1 / np.sqrt(D)], np.float32)})
    o = b.add("Linear", "mha.out_proj", [att], {"in_features": H, "out_features": H},
              {"W": linear_weight(sd["mha.out_proj.weight"]), "bias": sd["mha.out_proj.bias"]})
    r = b.add("Add", "residual", [o, h], {"size": H})
    b.output(b.add("Linear", "fc", [r], {"in_features": H, "out_features": OUT},
                   {"W": linear_weight(sd["fc.weight"]), "bias": sd["fc.bias"]}))
    b.save(path)


def build_mha(model: CausalMHA, path: str, X: np.ndarray) -> str:
    """Convert the model with convert_torch; on a ConversionError fall back to mha_graph.
    Returns how the file was made (printed and recorded in the results)."""
    example = torch.from_numpy(X[None, :model.window + 8])   # longer than the band
    try:
        convert_torch(model, path, example_input=example)
    except ConversionError as e:
        mha_graph(model, path)
        return f"hand-built graph (mha_graph): the import failed: {e}"
    return "converted from the torch module by convert_torch"


def _stats(ns: list[int]) -> dict:
    a = np.asarray(ns, np.float64) / 1e3
    return {"median_us": float(np.median(a)), "p99_us": float(np.percentile(a, 99))}


def _time_engine(m, X: np.ndarray, t: int, calls: int) -> tuple[dict, float]:
    """step() latency of `calls` steps from step t; also the max error at step t."""
    s = m.stream()
    if t:
        s.step_many(X[:t])
    out = np.empty(m.output_size, np.float32)
    ns = []
    first = None
    for k in range(calls):
        x = X[t + k]
        t0 = time.perf_counter_ns()
        s.step(x, out=out)
        ns.append(time.perf_counter_ns() - t0)
        if k == 0:
            first = out.copy()
    return _stats(ns), first


def _time_torch(model, X: np.ndarray, t: int, calls: int) -> tuple[dict, np.ndarray]:
    x = torch.from_numpy(X[None, :t + 1])
    ns = []
    with torch.inference_mode():
        y = model(x)
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            model(x)
            ns.append(time.perf_counter_ns() - t0)
    return _stats(ns), y[0].numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((max(POSITIONS) + args.calls + 1, I)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        pool = AttnPool().eval()
        convert_torch(pool, os.path.join(d, "pool.lstm"), example_input=torch.from_numpy(X[None, :6]))
        mha = CausalMHA().eval()
        mha_source = build_mha(mha, os.path.join(d, "mha.lstm"), X)
        print(f"mha model: {mha_source}")
        models = {"pool": (pool, lstm_infer.load(os.path.join(d, "pool.lstm"))),
                  "mha": (mha, lstm_infer.load(os.path.join(d, "mha.lstm")))}
        for name, (tm, m) in models.items():
            m.warmup()
            for t in POSITIONS:
                ours, y = _time_engine(m, X, t, args.calls)
                ref, want = _time_torch(tm, X, t, max(5, args.calls // 10))
                err = float(np.abs(y - want).max())
                rows.append({"model": name, "t": t, "lstm_infer": ours, "torch_prefix": ref,
                             "speedup_median": ref["median_us"] / ours["median_us"],
                             "max_abs_error": err})
                print(f"{name:5s} t={t:5d}  lstm-infer step {ours['median_us']:8.2f} us "
                      f"(p99 {ours['p99_us']:8.2f})  torch prefix {ref['median_us']:10.1f} us "
                      f"(p99 {ref['p99_us']:10.1f})  x{rows[-1]['speedup_median']:.0f}  "
                      f"err {err:.1e}")
    env = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "torch": torch.__version__, "torch_threads": 1, "calls": args.calls,
           "mha_model": mha_source}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "attention.json"), "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=1)
    lines = ["# Attention: per-step latency, step() vs PyTorch on the growing prefix", "",
             f"CPU: {env['cpu']}, {env['cores']} cores; torch {env['torch']} (1 thread); "
             f"{args.calls} calls per cell; mha model {mha_source}", "",
             "| model | t | lstm-infer median / p99 (us) | torch prefix median / p99 (us) | "
             "ratio (median) | max abs err |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        a, b = r["lstm_infer"], r["torch_prefix"]
        lines.append(f"| {r['model']} | {r['t']} | {a['median_us']:.2f} / {a['p99_us']:.2f} | "
                     f"{b['median_us']:.1f} / {b['p99_us']:.1f} | {r['speedup_median']:.0f}x | "
                     f"{r['max_abs_error']:.1e} |")
    with open(os.path.join(args.out, "attention.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
