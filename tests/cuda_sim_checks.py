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
from lstm_infer.cuda import staging  # noqa: E402
from lstm_infer.ops.embedding import example_inputs  # noqa: E402
from lstm_infer.quantize import quantize_file  # noqa: E402

N, T, B, I = 5, 3, 3, 3  # 5 streams: a full block of 4 and a partial one
LENGTHS = [3, 1, 0]  # a padded batch of B sequences of 4 steps: partial, one step, empty


def _maxdiff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def pool_vs_cpu(path: str, padded: bool = False) -> dict:
    """Device pool vs CPU pool over T steps, a reset of one stream and of all, get_state;
    run() of a batch, of one sequence and (`padded`) of a padded batch. Max abs errors."""
    m = lstm_infer.load(path)
    rng = np.random.default_rng(1)
    X = example_inputs(m.graph, (T + 2, N, m.input_size), rng)
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
    out.update(run_vs_cpu(m, rng, padded))
    return out


def run_vs_cpu(m, rng, padded: bool = True) -> dict:
    """run() on the device vs the CPU: a batch, one sequence, a padded batch (lengths=, the
    simulator's slowest path: only where asked). Max abs errors."""
    Xb = example_inputs(m.graph, (B, 4, m.input_size), rng)
    out = {"run": _maxdiff(m.run(Xb, device="cuda"), m.run(Xb)),
           "run_1seq": _maxdiff(m.run(Xb[0], device="cuda"), m.run(Xb[0]))}
    if padded:
        out["run_lengths"] = _maxdiff(m.run(Xb, lengths=LENGTHS, device="cuda"),
                                      m.run(Xb, lengths=LENGTHS))
    return out


def bidirectional(path: str) -> dict:
    """A bidirectional model: run() (whole and padded: each reverse direction starts at its
    sequence's last valid step) == the CPU; a device pool is refused as the CPU pool is."""
    m = lstm_infer.load(path)
    out = run_vs_cpu(m, np.random.default_rng(4))
    try:
        m.streams(2, device="cuda")
        out["streams"] = "no error"
    except lstm_infer.NotStreamableError as e:
        out["streams"] = str(e)
    return out


def token_model(path: str) -> str:
    """Embedding (2 ids per step) -> LSTM -> History -> Gather -> Linear -> TimeReduce mean,
    and TimeReduce max/min/sum of the Gather: every cheap per-step op with a device kernel."""
    rng = np.random.default_rng(5)
    V, D, H = 7, 2, 4
    b = GraphBuilder("ids", 2)
    e = b.add("Embedding", "emb", ["ids"], {"num_embeddings": V, "embedding_dim": D, "count": 2},
              {"table": _u(rng, (V, D), 1.0)})
    h = add_recurrent(b, rng, "LSTM", "lstm", e, 2 * D, H)
    hist = b.add("History", "hist", [h], {"size": H, "frames": 3, "dilation": 2})
    idx = np.array([11, 0, -1, 5, 4, 8], np.float32)
    g = b.add("Gather", "pick", [hist], {"in_size": 3 * H, "out_size": 6}, {"index": idx})
    lin = b.add("Linear", "fc", [g], {"in_features": 6, "out_features": 3},
                {"W": _u(rng, (6, 3), 0.5), "bias": _u(rng, (3,), 0.1)})
    outs = [b.add("TimeReduce", "mean", [lin], {"kind": "mean", "size": 3})]
    outs += [b.add("TimeReduce", k, [g], {"kind": k, "size": 6}) for k in ("max", "min", "sum")]
    b.output(b.add("Concat", "cat", outs, {"sizes": [3, 6, 6, 6]}))
    b.save(path)
    return path


def conv_model(path: str) -> str:
    """Linear -> Conv1d (groups 2, stride 2, padding; the CPU's direct kernel) -> Reduce mean
    -> GRU -> Conv1d (8 output channels, dilation 2: the CPU's implicit GEMM) -> Reduce max
    and sum: the per-step convolution and reduction on the device."""
    rng = np.random.default_rng(8)
    b = GraphBuilder("x", 4)
    fc = b.add("Linear", "fc", ["x"], {"in_features": 4, "out_features": 12},
               {"W": _u(rng, (4, 12), 0.5), "bias": _u(rng, (12,), 0.1)})
    ca = b.add("Conv1d", "conv_a", [fc], {"in_channels": 2, "in_length": 6, "out_channels": 4,
                                          "kernel_size": 3, "stride": 2, "pad_left": 1,
                                          "pad_right": 1, "groups": 2},
               {"W": _u(rng, (4, 1, 3), 0.5), "bias": _u(rng, (4,), 0.1)})
    mean = b.add("Reduce", "mean", [ca], {"kind": "mean", "outer": 4, "axis": 3, "inner": 1})
    h = add_recurrent(b, rng, "GRU", "gru", mean, 4, 4)
    cb = b.add("Conv1d", "conv_b", [h], {"in_channels": 1, "in_length": 4, "out_channels": 8,
                                         "kernel_size": 2, "dilation": 2},
               {"W": _u(rng, (8, 1, 2), 0.5)})
    mx = b.add("Reduce", "max", [cb], {"kind": "max", "outer": 2, "axis": 4, "inner": 2})
    sm = b.add("Reduce", "sum", [cb], {"kind": "sum", "outer": 1, "axis": 2, "inner": 8})
    b.output(b.add("Concat", "cat", [mx, sm], {"sizes": [4, 8]}))
    b.save(path)
    return path


def bad_ids(path: str) -> dict:
    """An out-of-vocabulary id: the device raises the CPU's ValueError, state untouched."""
    m = lstm_infer.load(path)
    X = np.array([[1, 2], [3, 7]], np.float32)  # 7 == V: out of the vocabulary
    out = {}
    dev, cpu = m.streams(2, device="cuda"), m.streams(2)
    dev.step(np.ones((2, 2), np.float32))
    before = dev.get_state()
    for name, call in (("step_dev", lambda: dev.step(X)), ("step_cpu", lambda: cpu.step(X)),
                       ("run_dev", lambda: m.run(X[None], device="cuda")),
                       ("run_cpu", lambda: m.run(X[None]))):
        try:
            call()
            out[name] = "no error"
        except ValueError as e:
            out[name] = str(e)
    after = dev.get_state()
    out["state_kept"] = all(np.array_equal(before[k], after[k]) for k in before)
    return out


def shared_branches(paths: dict) -> dict:
    """run() with W_hh staged in shared memory (the default 48 KB), with only the first
    layer's staged, and with none (limit 0, every read from global memory): the outputs
    must be bit-identical. paths: name -> (model file, lengths or None: run_kernel, or
    seq_kernel for a padded batch). Per model: the shared bytes of each branch, and whether
    the outputs are equal."""
    out = {}
    default = staging.SHARED_LIMIT
    for name, (path, lengths) in paths.items():
        m = lstm_infer.load(path)
        Xb = example_inputs(m.graph, (B, 4, m.input_size), np.random.default_rng(6))
        first = staging.shared_stage(m.plan.prog)[0][0, 1] * 4  # bytes of the first W_hh
        res, used = [], []
        for limit in (default, first, 0):
            staging.SHARED_LIMIT = limit
            m._device_model = None
            res.append(m.run(Xb, lengths=lengths, device="cuda"))
            used.append(int(m._device_model.shared_bytes))
        staging.SHARED_LIMIT = default
        out[name] = {"bytes": used, "equal": all(np.array_equal(r, res[0]) for r in res[1:])}
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
    """LSTM -> FirstStep (every step sees step 0, a sequence-only op): no device kernel."""
    rng = np.random.default_rng(3)
    b = GraphBuilder("x", I)
    h = add_recurrent(b, rng, "LSTM", "lstm", "x", I, 4)
    b.output(b.add("FirstStep", "first", [h], {"size": 4}))
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
            res[name] = pool_vs_cpu(path, padded=name in ("lstm", "gru_reset_before"))
        q = os.path.join(tmp, "lstm_int8.lstm")
        quantize_file(os.path.join(tmp, "lstm.lstm"), q, "int8")
        res["lstm_int8"] = pool_vs_cpu(q)
        res["lstm_int8"]["dtype"] = lstm_infer.load(q).dtype
        res["pointwise"] = pool_vs_cpu(pointwise_model(os.path.join(tmp, "pw.lstm")))
        res["errors"] = errors(tmp)
        for op in ("LSTM", "GRU", "RNN"):
            path = os.path.join(tmp, f"bi_{op}.lstm")
            stacked(path, op=op, I=I, H=4, layers=2 if op == "LSTM" else 1, bidirectional=True,
                    seed=7)
            res[f"bidirectional_{op.lower()}"] = bidirectional(path)
        q = os.path.join(tmp, "bi_lstm_int8.lstm")
        quantize_file(os.path.join(tmp, "bi_LSTM.lstm"), q, "int8")
        res["bidirectional_lstm_int8"] = bidirectional(q)
        tokens = token_model(os.path.join(tmp, "tokens.lstm"))
        res["tokens"] = pool_vs_cpu(tokens, padded=True)
        res["bad_ids"] = bad_ids(tokens)
        res["conv"] = pool_vs_cpu(conv_model(os.path.join(tmp, "conv.lstm")))
        res["shared"] = shared_branches({"lstm": (os.path.join(tmp, "lstm.lstm"), None),
                                         "bidirectional_lstm_int8": (q, LENGTHS)})
    print(json.dumps(res))


if __name__ == "__main__":
    main()
