"""Worker for tests/test_cuda_sim.py, run in a subprocess with NUMBA_ENABLE_CUDASIM=1 (the
variable must be set before numba is imported, and the CPU tests of the same pytest process
must not run on the simulator). Prints one JSON object: check name -> measured value.

Each check compares the device path (lstm_infer/cuda/, here on numba's CUDA simulator) with
the CPU path on the same model file: max abs error of outputs and state, or the error text.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lstm_infer  # noqa: E402
from builders import _u, add_recurrent, stacked  # noqa: E402
from lstm_infer.builder import GraphBuilder  # noqa: E402
from lstm_infer.quantize import quantize_file  # noqa: E402

N, T, B, I = 5, 3, 3, 3  # 5 streams: a full block of 4 and a partial one


def _maxdiff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def pool_vs_cpu(path: str) -> dict:
    """Device pool vs CPU pool over T steps, a reset of one stream and of all, get_state;
    run() of a batch and of one sequence. Max abs errors."""
    m = lstm_infer.load(path)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((T + 2, N, m.input_size)).astype(np.float32)
    dev, cpu = m.streams(N, device="cuda"), m.streams(N)
    out = {"step": 0.0, "state": 0.0, "reset": 0.0, "run": 0.0, "run_1seq": 0.0}
    for t in range(T):
        out["step"] = max(out["step"], _maxdiff(dev.step(X[t]), cpu.step(X[t])))
    sd, sc = dev.get_state(), cpu.get_state()
    out["state"] = max(_maxdiff(sd[k], sc[k]) for k in sc)
    out["state_moved"] = max(float(np.abs(sc[k] - m.plan.init_state[0]).max()) for k in sc)
    dev.reset(1)
    cpu.reset(1)
    out["reset"] = _maxdiff(dev.step(X[T]), cpu.step(X[T]))
    dev.reset()
    cpu.reset()
    out["reset"] = max(out["reset"], _maxdiff(dev.step(X[T + 1]), cpu.step(X[T + 1])))
    Xb = rng.standard_normal((B, 4, m.input_size)).astype(np.float32)
    out["run"] = _maxdiff(m.run(Xb, device="cuda"), m.run(Xb))
    out["run_1seq"] = _maxdiff(m.run(Xb[0], device="cuda"), m.run(Xb[0]))
    return out


def pointwise_model(path: str) -> str:
    """GRU -> [LayerNorm, Scale, Activation(gelu)] -> Concat -> Add/Mul/Binary(div) ->
    Linear (2 groups) -> softmax over groups of 2: every element-wise device op."""
    rng = np.random.default_rng(2)
    H = 4
    b = GraphBuilder("x", I)
    h = add_recurrent(b, rng, "GRU", "gru", "x", I, H, lbr=False)
    ln = b.add("LayerNorm", "ln", [h], {"size": H}, {"weight": _u(rng, (H,), 1.0),
                                                      "bias": _u(rng, (H,), 0.1)})
    sc = b.add("Scale", "sc", [h], {"size": H}, {"scale": _u(rng, (H,), 1.0),
                                                  "shift": _u(rng, (H,), 0.1)})
    act = b.add("Activation", "gelu", [sc], {"size": H, "kind": "gelu"})
    cat = b.add("Concat", "cat", [ln, act], {"sizes": [H, H]})
    cat2 = b.add("Concat", "cat2", [act, ln], {"sizes": [H, H]})
    add = b.add("Add", "add", [cat, cat2], {"size": 2 * H})
    mul = b.add("Mul", "mul", [add, cat], {"size": 2 * H})
    div = b.add("Binary", "div", [mul, cat2], {"size": 2 * H, "kind": "max"})
    lin = b.add("Linear", "fc", [div], {"in_features": 2 * H, "out_features": 4, "groups": 2},
                {"W": _u(rng, (H, 4), 0.5), "bias": _u(rng, (4,), 0.1)})
    sm = b.add("Activation", "sm", [lin], {"size": 4, "kind": "softmax", "axis_size": 2})
    b.output(sm)
    b.save(path)
    return path


def unsupported_model(path: str) -> str:
    """LSTM -> TimeReduce (a running max over time): TimeReduce has no device kernel."""
    rng = np.random.default_rng(3)
    b = GraphBuilder("x", I)
    h = add_recurrent(b, rng, "LSTM", "lstm", "x", I, 4)
    b.output(b.add("TimeReduce", "tmax", [h], {"kind": "max", "size": 4}))
    b.save(path)
    return path


def errors(tmp: str) -> dict:
    out = {}
    m = lstm_infer.load(unsupported_model(os.path.join(tmp, "unsupported.lstm")))
    for what, call in (("streams", lambda: m.streams(2, device="cuda")),
                       ("run", lambda: m.run(np.zeros((2, I), np.float32), device="cuda"))):
        try:
            call()
            out[f"unsupported_{what}"] = "no error"
        except lstm_infer.UnsupportedOnDeviceError as e:
            out[f"unsupported_{what}"] = str(e)
    stacked(os.path.join(tmp, "nan.lstm"), op="LSTM", I=I, H=4)
    m = lstm_infer.load(os.path.join(tmp, "nan.lstm"))
    p = m.streams(2, device="cuda")
    p.step(np.ones((2, I), np.float32))
    before = p.get_state()
    X = np.ones((2, I), np.float32)
    X[1, 0] = np.nan
    try:
        p.step(X)
        out["nan"] = "no error"
    except ValueError as e:
        out["nan"] = str(e)
    after = p.get_state()
    out["nan_state_kept"] = all(np.array_equal(before[k], after[k]) for k in before)
    return out


def main() -> None:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "lstm": dict(op="LSTM", H=4, layers=2),
            "lstm_proj": dict(op="LSTM", H=4, proj=3, init_state=True),
            "gru": dict(op="GRU", H=4, layers=2),
            "gru_reset_before": dict(op="GRU", H=4, lbr=False),
            "rnn": dict(op="RNN", H=4, layers=2),
            "rnn_relu": dict(op="RNN", H=4, nonlinearity="relu"),
        }
        for name, kw in cases.items():
            path = os.path.join(tmp, f"{name}.lstm")
            stacked(path, I=I, out=2, seed=len(name), **kw)
            res[name] = pool_vs_cpu(path)
        q = os.path.join(tmp, "lstm_int8.lstm")
        quantize_file(os.path.join(tmp, "lstm.lstm"), q, "int8")
        res["lstm_int8"] = pool_vs_cpu(q)
        res["lstm_int8"]["dtype"] = lstm_infer.load(q).dtype
        res["pointwise"] = pool_vs_cpu(pointwise_model(os.path.join(tmp, "pw.lstm")))
        res["errors"] = errors(tmp)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
