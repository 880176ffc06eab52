"""xLSTM streaming benchmark: per-step latency of lstm-infer's step() against the xlstm
package's own step() on a 4-block, d=64 mixed mLSTM/sLSTM stack, one thread each.

    PYTHONPATH=. python benchmarks/xlstm_bench.py [--steps 2000] [--rounds 5]

Times are CPU time of the calling thread (time.thread_time_ns) around each step() call, so a
busy shared machine inflates them less than wall time would; both engines run in this
thread (torch.set_num_threads(1)). The two engines alternate round by round. Writes
benchmarks/results/xlstm.json and .md (not committed). Needs `pip install xlstm==2.0.6`.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def build_stack(d: int = 64, blocks: int = 4):
    import torch
    import xlstm
    torch.manual_seed(0)
    cfg = xlstm.xLSTMBlockStackConfig(
        mlstm_block=xlstm.mLSTMBlockConfig(mlstm=xlstm.mLSTMLayerConfig(
            conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=4)),
        slstm_block=xlstm.sLSTMBlockConfig(
            slstm=xlstm.sLSTMLayerConfig(backend="vanilla", num_heads=4, conv1d_kernel_size=4),
            feedforward=xlstm.FeedForwardConfig(proj_factor=1.3, act_fn="gelu")),
        context_length=256, num_blocks=blocks, embedding_dim=d, slstm_at=[1, 3])
    return xlstm.xLSTMBlockStack(cfg).eval()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _time(fn, xs, n: int) -> list[int]:
    out = []
    gc.disable()
    try:
        for i in range(n):
            x = xs[i % len(xs)]
            t0 = time.thread_time_ns()
            fn(x)
            out.append(time.thread_time_ns() - t0)
    finally:
        gc.enable()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="timed lstm-infer steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    import lstm_infer
    from converters.torch_import import convert_torch

    stack = build_stack()
    d = stack.config.embedding_dim
    path = Path(tempfile.mkdtemp()) / "xlstm.lstm"
    report = convert_torch(stack, path, example_input=torch.randn(2, 8, d))
    model = lstm_infer.load(path)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((64, d)).astype(np.float32)
    txs = [torch.from_numpy(x).view(1, 1, d) for x in xs]

    stream = model.stream()
    state = {"s": None}

    @torch.inference_mode()
    def pkg_step(x):
        y, state["s"] = stack.step(x, state["s"])
        return y

    for x in xs[:50]:
        stream.step(x)
    for x in txs[:20]:
        pkg_step(x)
    ours, theirs = [], []
    pkg_steps = max(50, args.steps // 20)  # the package is ~50x slower per step
    for r in range(args.rounds):
        jobs = [(ours, stream.step, xs, args.steps), (theirs, pkg_step, txs, pkg_steps)]
        for acc, fn, inputs, n in (jobs if r % 2 == 0 else jobs[::-1]):
            acc.extend(_time(fn, inputs, n))

    def stats(ns):
        a = np.array(ns) / 1e3
        return {"median_us": float(np.median(a)), "p99_us": float(np.percentile(a, 99)),
                "calls": len(a)}

    res = {"model": "xLSTMBlockStack 4 blocks (mLSTM, sLSTM, mLSTM, sLSTM), d=64, 4 heads, "
                    "conv 4, sLSTM feed-forward 1.3x gelu",
           "cpu": _cpu_name(), "threads": 1, "timer": "time.thread_time_ns per step() call",
           "torch": torch.__version__, "lstm_infer_step": stats(ours),
           "xlstm_package_step": stats(theirs), "verify_max_abs_error": report.verify.max_abs_error}
    res["speedup_median"] = res["xlstm_package_step"]["median_us"] / res["lstm_infer_step"]["median_us"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "xlstm.json").write_text(json.dumps(res, indent=2))
    md = ["| engine | median us/step | p99 us/step | calls |", "| --- | --- | --- | --- |"]
    for name, key in (("lstm-infer step()", "lstm_infer_step"),
                      ("xlstm package step()", "xlstm_package_step")):
        s = res[key]
        md.append(f"| {name} | {s['median_us']:.1f} | {s['p99_us']:.1f} | {s['calls']} |")
    text = (f"# xLSTM streaming, {res['model']}\n\nCPU: {res['cpu']}, 1 thread, "
            f"{res['timer']}.\n\n" + "\n".join(md) +
            f"\n\nlstm-infer is {res['speedup_median']:.1f}x faster per step (median).\n")
    (RESULTS / "xlstm.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
