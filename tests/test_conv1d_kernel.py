"""The Conv1d kernels (lstm_infer/ops/conv1d.py) against a float64 reference: the
implicit GEMM (>= GEMM_MIN_CHANNELS output channels per group) and the direct kernel
(fewer), over strides, dilations, padding (windows partly or wholly in the padding),
groups, several tiles, with and without bias, in step(), step_many(), run() and streams."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder
from lstm_infer.ops import conv1d as conv_op

TOL = 1e-5


def conv_reference(x, W, b, stride, dil, pl, pr, groups):
    """float64 Conv1d of one (C, L) input: W (M, C/groups, K)."""
    C, L = x.shape
    M, cg, K = W.shape
    xp = np.concatenate([np.zeros((C, pl)), x, np.zeros((C, pr))], axis=1)
    L_out = (L + pl + pr - dil * (K - 1) - 1) // stride + 1
    mg = M // groups
    y = np.zeros((M, L_out))
    for m in range(M):
        g = m // mg
        for t in range(L_out):
            win = xp[g * cg:(g + 1) * cg, t * stride:t * stride + dil * (K - 1) + 1:dil]
            y[m, t] = np.sum(win * W[m]) + (b[m] if b is not None else 0.0)
    return y


CASES = [
    # (C, L, M, K, stride, dilation, pad_left, pad_right, groups)
    (2, 6, 3, 3, 1, 1, 1, 1, 1),          # direct
    (4, 5, 4, 2, 2, 1, 0, 1, 2),          # direct, groups
    (3, 8, 6, 3, 1, 2, 2, 0, 3),          # direct, depthwise-like, dilation
    (1, 40, 2, 5, 3, 1, 0, 0, 1),         # direct, stride
    (1, 64, 16, 16, 8, 1, 0, 0, 1),       # gemm: STFT-like (one input channel, long kernel)
    (9, 7, 8, 3, 1, 1, 1, 1, 1),          # gemm, pad both sides
    (8, 12, 16, 3, 2, 1, 1, 1, 1),        # gemm, stride 2
    (6, 20, 24, 3, 1, 3, 3, 2, 3),        # gemm, groups and dilation
    (5, 50, 12, 4, 1, 2, 5, 4, 1),        # gemm, several tiles, wide padding
    (4, 3, 8, 5, 1, 1, 4, 4, 1),          # gemm, windows hang over both ends
    (16, 33, 32, 1, 1, 1, 0, 0, 2),       # gemm, kernel 1, groups
    (2, 9, 9, 2, 3, 4, 0, 0, 1),          # gemm, stride and dilation, no padding
    (8, 2, 8, 3, 1, 1, 5, 5, 1),          # gemm, windows wholly in the padding
    (8, 5, 16, 3, 1, 3, 4, 4, 1),         # gemm, dilated taps skipped at both ends
    (64, 1, 128, 3, 1, 1, 1, 1, 1),       # gemm, one position: only the middle tap
    (7, 6, 18, 3, 2, 1, 1, 1, 1),         # gemm, rows not a multiple of 4, 3 positions
]


def _model(tmp_path, case, bias, seed=0):
    C, L, M, K, stride, dil, pl, pr, groups = case
    rng = np.random.default_rng(seed)
    W = rng.uniform(-0.5, 0.5, (M, C // groups, K)).astype(np.float32)
    b = rng.uniform(-0.3, 0.3, M).astype(np.float32) if bias else None
    gb = GraphBuilder("x", C * L)
    y = gb.add("Conv1d", "conv", ["x"], {
        "in_channels": C, "in_length": L, "out_channels": M, "kernel_size": K, "stride": stride,
        "dilation": dil, "pad_left": pl, "pad_right": pr, "groups": groups}, {"W": W, "bias": b})
    gb.output(y)
    gb.save(tmp_path / "c.lstm")
    return lstm_infer.load(tmp_path / "c.lstm"), W.astype(np.float64), None if b is None else b.astype(np.float64)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("case", CASES, ids=[
    "C{}L{}M{}K{}s{}d{}p{}-{}g{}".format(*c) for c in CASES])
def test_conv1d_against_float64(tmp_path, case, bias):
    C, L, M, K, stride, dil, pl, pr, groups = case
    m, W, b = _model(tmp_path, case, bias)
    gemm = M // groups >= conv_op.GEMM_MIN_CHANNELS
    assert (m.plan.prog[1, conv_op.PACKED] >= 0) == gemm
    X = np.random.default_rng(1).standard_normal((23, C * L)).astype(np.float32)
    ref = np.stack([conv_reference(x.reshape(C, L).astype(np.float64), W, b, stride, dil, pl, pr,
                                   groups).reshape(-1) for x in X])
    s = m.stream()
    Ys = np.stack([s.step(x) for x in X])
    assert np.abs(Ys - ref).max() <= TOL
    s.reset()
    assert np.array_equal(np.concatenate([s.step_many(X[:7]), s.step_many(X[7:])]), Ys)
    assert np.abs(m.run(X) - ref).max() <= TOL
    assert np.abs(m.run(np.stack([X, X[::-1]]))[1] - ref[::-1]).max() <= TOL
    p = m.streams(3)
    Yp = p.step(X[:3])
    assert np.abs(Yp - ref[:3]).max() <= TOL


def test_reference_loop_agrees(tmp_path):
    """The old scalar loop (kept as `conv1d`) and the new kernels give the same numbers."""
    case = (9, 7, 8, 3, 2, 1, 1, 2, 1)
    C, L, M, K, stride, dil, pl, pr, groups = case
    m, W, b = _model(tmp_path, case, True)
    x = np.random.default_rng(3).standard_normal(C * L).astype(np.float32)
    L_out = m.output_size // M
    out = np.zeros(M * L_out, np.float32)
    w = np.concatenate([W.astype(np.float32).ravel(), b.astype(np.float32)])
    conv_op.conv1d(x, out, w, C, L, M, K, stride, dil, pl, groups, L_out, 0, W.size)
    assert np.abs(m.stream().step(x) - out).max() <= TOL


def test_packed_weights_are_shared_between_programs(tmp_path):
    """One packed copy per model: the step program and run()'s one-node program share it."""
    m, W, _ = _model(tmp_path, (8, 12, 16, 3, 2, 1, 1, 1, 1), True)
    plan = m.plan
    (node_prog,) = plan.node_programs.values()
    assert node_prog.prog[1, conv_op.PACKED] == plan.prog[1, conv_op.PACKED]
    off = plan.prog[1, conv_op.PACKED]
    packed = plan.arena[off:off + W.size].reshape(1, 8 * 3, 16)
    assert np.array_equal(packed, conv_op.pack_weights(W.astype(np.float32), 1))
