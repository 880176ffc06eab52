"""The int8 mat-vec as integer dot products (lstm_infer/kernels/q16.py) against a float64
numpy reference of the same math: the input vector quantised to int16 with one scale
(max|v| / 32767, float32 arithmetic as in the kernel), exact integer sums, the per-column
weight scales. The kernel's only roundings after that are float32 ones (the int32 sums to
float32, the scale products, and one float add per 512-row block), so it must agree to
~1e-6 relative. Then an int8 LSTM+Linear step by step against the same math in numpy, and
the accuracy against fp32 kept at the dequantising kernel's level."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.kernels.linalg import matvec_q8, mv
from lstm_infer.kernels.q16 import Q16_MAX, pack_pairs, q16_block
from lstm_infer.quantize import quantize_file, quantize_int8
from builders import stacked

REL = 1e-6


def q16_values(v: np.ndarray) -> np.ndarray:
    """float64 values of v quantised to int16 as the kernel does, times its scale s_v."""
    v = np.asarray(v, np.float32)
    m = np.float32(np.abs(v).max())
    if m == 0:
        return np.zeros(v.shape)
    q = np.clip(np.rint(v * (np.float32(Q16_MAX) / m)), -Q16_MAX, Q16_MAX)
    return q.astype(np.float64) * np.float64(m / np.float32(Q16_MAX))


def q16_matvec(v, Q, s) -> np.ndarray:
    """sum_k q16(v)[k] * Q[k, j] * s[j] in float64."""
    return (q16_values(v) @ Q.astype(np.float64)) * s.astype(np.float64)


def _arena(Q, s):
    """An arena as plan.py lays it out: the plain int8 matrix (for matvec_q8), then the
    scales followed by the packed copy; returns (w, byte offset of Q, scale offset)."""
    plain = np.concatenate([Q.ravel(), np.zeros((-Q.size) % 64, np.int8)]).view(np.float32)
    w = np.concatenate([np.zeros(16, np.float32), plain, q16_block(Q, s)])
    return w, 64, 16 + plain.size


@pytest.mark.parametrize("rows,cols,c0,n", [
    (256, 512, 0, 512),      # whole panels
    (7, 24, 0, 24),          # odd rows, a 16+8 column tail
    (24, 72, 48, 24),        # GRU's last gate block: a range starting inside a panel
    (24, 72, 0, 48),
    (33, 200, 13, 150),      # unaligned column range over full and tail panels
    (1100, 80, 0, 80),       # three 512-row blocks (int32 flushes)
    (512, 8, 0, 8),          # a narrow Linear head
    (5, 3, 1, 2),
])
def test_matvec_matches_float64_reference(rows, cols, c0, n):
    rng = np.random.default_rng(rows * cols + c0)
    Q, s = quantize_int8(rng.standard_normal((rows, cols)).astype(np.float32))
    w, q_off, s_off = _arena(Q, s)
    x = rng.standard_normal(rows).astype(np.float32)
    out = rng.standard_normal(n).astype(np.float32)
    ref = out.astype(np.float64) + q16_matvec(x, Q, s)[c0:c0 + n]
    acc = np.zeros(max(n, rows // 2 + 2), np.float32)
    mv(out, x, w, q_off, s_off, rows, cols, c0, n, acc)
    assert np.abs(out - ref).max() <= REL * np.abs(ref).max()
    # ... and it is the int8 matrix-vector product to the int16 rounding of x
    exact = x.astype(np.float64) @ (Q[:, c0:c0 + n].astype(np.float64) * s[c0:c0 + n])
    assert np.abs(out - ref).max() < 1e-4 * np.abs(exact).max()


def test_extreme_inputs():
    """The largest int16 and int8 values everywhere (the overflow bound: 512 rows of
    32767 * 127 per int32 block), an all-zero input, and non-finite or denormal inputs,
    which have no int16 scale and go to the float kernel (nan and inf propagate as with fp32)."""
    rows, cols = 1024, 32
    Q = np.full((rows, cols), -127, np.int8)
    Q[::3] = 127
    s = np.full(cols, 1e-3, np.float32)
    w, q_off, s_off = _arena(Q, s)
    acc = np.zeros(rows, np.float32)
    x = np.full(rows, 3.0, np.float32)
    out = np.zeros(cols, np.float32)
    mv(out, x, w, q_off, s_off, rows, cols, 0, cols, acc)
    ref = q16_matvec(x, Q, s)
    assert np.abs(out - ref).max() <= REL * np.abs(ref).max()
    out[:] = 1.0
    mv(out, np.zeros(rows, np.float32), w, q_off, s_off, rows, cols, 0, cols, acc)
    assert (out == 1.0).all()
    for bad in (np.nan, np.inf, "tiny"):
        if bad == "tiny":  # denormal: 32767 / max|x| is not a float32; the float kernel
            x[:] = 1e-39
        else:
            x[5] = bad
        out[:] = 0.0
        mv(out, x, w, q_off, s_off, rows, cols, 0, cols, acc)
        ref = np.zeros(cols, np.float32)
        matvec_q8(ref, x, w, q_off, s_off, rows, cols, 0, cols, acc)
        np.testing.assert_array_equal(out, ref)
        assert (out != 0).all() if bad == "tiny" else not np.isfinite(out).any()


def test_pack_layout():
    """byte [p, j, t] of a panel is Q[2p + t, c + j]; 64-column panels, then the rest."""
    Q = np.arange(5 * 80, dtype=np.int64).reshape(5, 80) % 251 - 125
    Q = Q.astype(np.int8)
    P = pack_pairs(Q)
    pairs, c16 = 3, 80
    assert P.size == 2 * pairs * c16
    full = P[:pairs * 128].reshape(pairs, 64, 2)
    rest = P[pairs * 128:].reshape(pairs, 16, 2)
    np.testing.assert_array_equal(full[1, :, 0], Q[2, :64])
    np.testing.assert_array_equal(full[1, :, 1], Q[3, :64])
    np.testing.assert_array_equal(rest[2, :, 0], Q[4, 64:])
    assert (rest[2, :, 1] == 0).all()  # the padding row


def _reference_lstm_steps(q, X, I, H):
    """The int8 LSTM(I, H) + Linear of `q` stepped in float64 with every mat-vec's input
    quantised per call, as the engine does (state: h, c from zero)."""
    nodes = {n.op: n for n in q.graph.nodes}
    lw, fw = nodes["LSTM"].weights, nodes["Linear"].weights
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h, c, ys = np.zeros(H, np.float32), np.zeros(H), []
    for x in X:
        g = lw["bias"] + q16_matvec(x, lw["W_ih"], lw["W_ih.scale"]) + q16_matvec(h, lw["W_hh"], lw["W_hh.scale"])
        c = sig(g[H:2 * H]) * c + sig(g[:H]) * np.tanh(g[2 * H:3 * H])
        h = (sig(g[3 * H:]) * np.tanh(c)).astype(np.float32)
        ys.append(fw["bias"] + q16_matvec(h, fw["W"], fw["W.scale"]))
    return np.array(ys)


def test_int8_model_steps_match_reference_and_track_fp32(tmp_path):
    """An int8 LSTM(16, 64)+Linear: step(), step_many() and run() equal (the same kernel),
    close to the numpy model of the same math (a few steps: the float32 state and the
    float64 reference can round an int16 differently after that), and within the int8
    error of the fp32 model over a stream (the dequantising kernel measured 1.2e-3 here)."""
    I, H = 16, 64
    stacked(tmp_path / "f.lstm", "LSTM", I, H, layers=1, out=8)
    quantize_file(tmp_path / "f.lstm", tmp_path / "q.lstm", "int8")
    q, f = lstm_infer.load(tmp_path / "q.lstm"), lstm_infer.load(tmp_path / "f.lstm")
    X = np.random.default_rng(2).standard_normal((300, I)).astype(np.float32)
    s = q.stream()
    steps = np.stack([s.step(x) for x in X])
    s.reset()
    np.testing.assert_array_equal(np.concatenate([s.step_many(X[:100]), s.step_many(X[100:])]), steps)
    np.testing.assert_array_equal(q.run(X), steps)
    ref = _reference_lstm_steps(q, X[:4], I, H)
    assert np.abs(steps[:4] - ref).max() <= 2e-6
    assert np.abs(steps - f.run(X)).max() <= 2e-3
