"""Recurrent state carried as explicit graph inputs and outputs, shaped as exporters that
drop the batch and direction axes write it (madmom: h/c of each layer as 1-D [H] inputs,
Unsqueezed into initial_h/initial_c, Y_h/Y_c Squeezed into 1-D outputs): paired
automatically, so the engine keeps that state, the model streams, and the stream's state
after T steps equals onnxruntime's state outputs (max abs error 1e-5 on unit-scale data,
fp32)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

import lstm_infer
from converters import convert_onnx

from onnx_helpers import TOL, check, init, make_model, rnd, vi

N = helper.make_node
RNG = np.random.default_rng(9)
I, H = 6, 5
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def i64(name, vals):
    return init(name, np.asarray(vals, np.int64))


def stack(op: str, layers: int = 2, state_shape=(H,)):
    """x [d0, d1] (time, features; no batch axis) -> `layers` x op, each with its state as
    graph inputs/outputs of shape `state_shape` -> MatMul head."""
    G = GATES[op]
    roles = ["h", "c"] if op == "LSTM" else ["h"]
    nodes, inputs, outputs, inits = [], [vi("x", ["d0", "d1"])], [], [i64("ax1", [1]), i64("ax12", [1, 2])]
    x, n_in = "x", I
    inits += [i64("ax01", [0, 1]), i64("ax0", [0]), i64("shape3", [1, 1, H])]
    for k in range(layers):
        nodes.append(N("Unsqueeze", [x, "ax1"], [f"xb{k}"]))
        st_in = []
        for r in roles:
            name = f"state_{k}_{r}_in"
            inputs.append(vi(name, list(state_shape)))
            if len(state_shape) == 1:
                nodes.append(N("Unsqueeze", [name, "ax01"], [f"{name}3"]))
            else:   # (1, H): a Reshape to (1, 1, H)
                nodes.append(N("Reshape", [name, "shape3"], [f"{name}3"]))
            st_in.append(f"{name}3")
        W = init(f"W{k}", rnd(RNG, 1, G * H, n_in, scale=0.5))
        R = init(f"R{k}", rnd(RNG, 1, G * H, H, scale=0.5))
        B = init(f"B{k}", rnd(RNG, 1, 2 * G * H, scale=0.5))
        inits += [W, R, B]
        ins = [f"xb{k}", f"W{k}", f"R{k}", f"B{k}", ""] + st_in
        outs = [f"y{k}"] + [f"{r}n{k}" for r in roles]
        attrs = {"linear_before_reset": 1} if op == "GRU" else {}
        nodes.append(N(op, ins, outs, hidden_size=H, name=f"{op.lower()}{k}", **attrs))
        nodes.append(N("Squeeze", [f"y{k}", "ax12"], [f"s{k}"]))
        for r in roles:
            out = f"state_{k}_{r}_out"
            if len(state_shape) == 1:
                nodes.append(N("Squeeze", [f"{r}n{k}", "ax01"], [out]))
            else:
                nodes.append(N("Squeeze", [f"{r}n{k}", "ax0"], [out]))
            outputs.append(vi(out, list(state_shape)))
        x, n_in = f"s{k}", H
    nodes += [N("MatMul", [x, "Wd"], ["out"])]
    inits.append(init("Wd", rnd(RNG, H, 2)))
    return make_model(nodes, inputs, [vi("out", ["d0", 2])] + outputs, inits, opset=18)


def _ort(model, X, states=None):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {"x": X}
    for i in sess.get_inputs()[1:]:
        feeds[i.name] = np.zeros([int(d) for d in i.shape], np.float32) if states is None \
            else states[i.name]
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("state_shape", [(H,), (1, H)], ids=["1d", "2d"])
def test_state_inputs_without_batch_axis_are_paired_and_stream(tmp_path, op, state_shape):
    model = stack(op, 2, state_shape)
    m, v, _ = check(model, tmp_path, stream=True)
    meta = m.provenance["onnx"]
    roles = ["h", "c"] if op == "LSTM" else ["h"]
    want = {(f"state_{k}_{r}_in", f"state_{k}_{r}_out") for k in range(2) for r in roles}
    assert {(s["input"], s["output"]) for s in meta["state"]} == want
    assert m.output_names == ["out"] and m.streamable
    assert all(f"{o} (state)" in v.stream_max_abs for _, o in want)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_stream_state_after_T_steps_equals_onnxruntime_state_outputs(tmp_path, op):
    model = stack(op, 3)
    convert_onnx(model, tmp_path / "m.lstm")          # verified against onnxruntime
    m = lstm_infer.load(tmp_path / "m.lstm")
    meta = m.provenance["onnx"]
    X = rnd(RNG, 53, I)
    ref = _ort(model, X)
    s = m.stream()
    ys = np.stack([s.step(x) for x in X])
    assert np.abs(ys - ref["out"]).max() <= TOL
    st = s.get_state()
    for entry in meta["state"]:
        got = np.array([st[name][j] for name, j in entry["elements"]], np.float32)
        assert np.abs(got - ref[entry["output"]].reshape(-1)).max() <= TOL, entry["output"]
    # continuing the stream = onnxruntime fed the state outputs back as inputs
    X2 = rnd(RNG, 17, I)
    ref2 = _ort(model, X2, {e["input"]: ref[e["output"]] for e in meta["state"]})
    assert np.abs(s.step_many(X2) - ref2["out"]).max() <= TOL
