"""The short table the README quotes, from benchmarks/results/latest.json.

    python -m benchmarks.summary
"""
from __future__ import annotations

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def _row(rows, label, **match):
    for r in rows:
        if r["model"]["label"] == label and all(r.get(k) == v for k, v in match.items()):
            return r["stats"]
    return None


def _cell(stats, engine, ref="lstm-infer"):
    if stats is None or engine not in stats:
        return "n/a"
    m = stats[engine]["median"]
    if engine == ref:
        return f"{m:.3g}"
    return f"{m:.3g} ({m / stats[ref]['median']:.2f}x)"


def summary(path: str = os.path.join(HERE, "results", "latest.json")) -> str:
    r = json.load(open(path))
    s = r["sections"]
    shapes = ["(1,8)", "(16,64)", "(64,128)", "(128,256)", "(256,512)"]
    out = ["Medians on this 2-core machine, "
           "PyTorch and onnxruntime on 1 thread; in brackets: time / lstm-infer's time "
           "(above 1x lstm-infer is faster). Full tables: benchmarks/results/latest.md.", "",
           "| LSTM 1 layer + Linear | step() from Python, µs: lstm-infer | onnxruntime per-step run | "
           "PyTorch LSTMCell+Linear | chunk of 4096, µs/step: lstm-infer `step_many` | onnxruntime sequence |",
           "|---|---|---|---|---|---|"]
    for shp in shapes:
        label = f"LSTM 1L {shp}"
        p = _row(s["per_step"]["rows"], label)
        c = _row(s["chunk"]["rows"], label, chunk=4096)
        out.append(f"| {shp} | {_cell(p, 'lstm-infer')} | {_cell(p, 'onnxruntime')} | {_cell(p, 'torch-cell')} "
                   f"| {_cell(c, 'lstm-infer')} | {_cell(c, 'onnxruntime')} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(summary())
