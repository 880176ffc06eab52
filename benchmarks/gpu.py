"""The CUDA path on a GPU against PyTorch on the same GPU: `streams(n, device="cuda")` per
step for n = 1,024 ... 65,536 streams, and `run(X, device="cuda")` on batches of whole
sequences, as ratios (PyTorch time / lstm-infer time: > 1 means lstm-infer is faster).

    python -m benchmarks.gpu [--op LSTM] [--input 64] [--hidden 128] [--steps 30]
                             [--streams 1024,4096,16384,65536] [--batches 64,512] [--seq 100]
                             [--bidirectional]   (run() only: a bidirectional model has no streams)

Both sides take numpy in and give numpy out (host -> device -> host every call, as a pool
of sensor streams does). PyTorch steps its nn.LSTM/GRU (cuDNN) one step at a time with the
(h, c) state kept on the GPU, then the Linear head; run() is one forward over (B, T, I).
The model is converted from the torch module (convert_torch verifies it on the CPU) and the
device outputs are checked against torch's before timing. Wall time per call with
perf_counter after warm-up (every call ends with a copy to the host, so it is synchronous).
Writes benchmarks/results/gpu.json and .md. Without a usable GPU (or on numba's simulator)
it refuses with the reason and exit code 2. Results are not committed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _refuse_without_gpu() -> str:
    """The GPU's name, or exit 2 with the reason no GPU can be measured."""
    from numba.core import config
    if config.ENABLE_CUDASIM:
        sys.exit("benchmarks.gpu: NUMBA_ENABLE_CUDASIM=1 is set: the simulator runs on the CPU "
                 "and its times mean nothing; unset it on a machine with a GPU")
    from lstm_infer.errors import DeviceUnavailableError
    from lstm_infer.cuda.device import get_cuda
    try:
        cuda = get_cuda()
    except DeviceUnavailableError as e:
        print(f"benchmarks.gpu: no GPU to measure: {e}", file=sys.stderr)
        sys.exit(2)
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def _torch_net(op: str, I: int, H: int, bidirectional: bool = False):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, op)(I, H, batch_first=True, bidirectional=bidirectional)
            self.fc = torch.nn.Linear(2 * H if bidirectional else H, 8)

        def forward(self, x, state=None):
            y, state = self.rnn(x, state)
            return self.fc(y), state

    torch.manual_seed(0)
    return Net().eval()


def _timed(fn, steps: int) -> float:
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", default="LSTM", choices=["LSTM", "GRU", "RNN"])
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--streams", default="1024,4096,16384,65536")
    ap.add_argument("--batches", default="64,512")
    ap.add_argument("--seq", type=int, default=100)
    ap.add_argument("--bidirectional", action="store_true",
                    help="a bidirectional layer: run() only (seq_kernel), no streams")
    a = ap.parse_args(argv)
    gpu = _refuse_without_gpu()
    import torch
    import lstm_infer
    from converters import convert_torch

    I, H = a.input, a.hidden
    net = _torch_net(a.op, I, H, a.bidirectional)

    class OutputsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)[0]

    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "m.lstm")
    convert_torch(OutputsOnly(net), path, example_input=torch.randn(2, 5, I))
    m = lstm_infer.load(path)
    has_torch_gpu = torch.cuda.is_available()
    tnet = net.cuda() if has_torch_gpu else None
    rng = np.random.default_rng(0)
    res = {"gpu": gpu, "op": ("bidirectional " if a.bidirectional else "") + a.op, "input": I,
           "hidden": H, "torch": torch.__version__,
           "torch_cuda": has_torch_gpu, "streams": [], "run": []}
    for n in [] if a.bidirectional else [int(v) for v in a.streams.split(",")]:
        X = rng.standard_normal((n, I)).astype(np.float32)
        pool = m.streams(n, device="cuda")
        ours = _timed(lambda: pool.step(X), a.steps)
        row = {"n": n, "lstm_infer_ms": ours * 1e3}
        if has_torch_gpu:
            state = [None]

            def tstep():
                with torch.no_grad():
                    y, state[0] = tnet(torch.from_numpy(X).cuda()[:, None, :], state[0])
                    return y[:, 0].cpu().numpy()
            ref = m.streams(n, device="cuda").step(X)
            state[0] = None
            row["max_err"] = float(np.abs(tstep() - ref).max())
            state[0] = None
            row["torch_ms"] = _timed(tstep, a.steps) * 1e3
            row["ratio"] = row["torch_ms"] / row["lstm_infer_ms"]
        res["streams"].append(row)
        print(row, flush=True)
    for B in [int(v) for v in a.batches.split(",")]:
        Xb = rng.standard_normal((B, a.seq, I)).astype(np.float32)
        ours = _timed(lambda: m.run(Xb, device="cuda"), max(3, a.steps // 10))
        row = {"batch": B, "T": a.seq, "lstm_infer_ms": ours * 1e3}
        if has_torch_gpu:
            def trun():
                with torch.no_grad():
                    return tnet(torch.from_numpy(Xb).cuda())[0].cpu().numpy()
            row["max_err"] = float(np.abs(trun() - m.run(Xb, device="cuda")).max())
            row["torch_ms"] = _timed(trun, max(3, a.steps // 10)) * 1e3
            row["ratio"] = row["torch_ms"] / row["lstm_infer_ms"]
        res["run"].append(row)
        print(row, flush=True)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "gpu.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(RESULTS, "gpu.md"), "w") as f:
        f.write(_markdown(res))
    return res


def _markdown(res: dict) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.3g}"
    lines = [f"# {res['op']}({res['input']}, {res['hidden']}) + Linear on {res['gpu']} "
             f"(torch {res['torch']}, CUDA {'yes' if res['torch_cuda'] else 'no'})", "",
             "| streams | lstm-infer ms/step | torch ms/step | ratio | max err |",
             "| --- | --- | --- | --- | --- |"]
    for r in res["streams"]:
        lines.append(f"| {r['n']} | {fmt(r['lstm_infer_ms'])} | {fmt(r.get('torch_ms'))} | "
                     f"{fmt(r.get('ratio'))} | {fmt(r.get('max_err'))} |")
    lines += ["", "| batch x T | lstm-infer ms | torch ms | ratio | max err |",
              "| --- | --- | --- | --- | --- |"]
    for r in res["run"]:
        lines.append(f"| {r['batch']} x {r['T']} | {fmt(r['lstm_infer_ms'])} | "
                     f"{fmt(r.get('torch_ms'))} | {fmt(r.get('ratio'))} | {fmt(r.get('max_err'))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
