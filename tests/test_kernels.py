"""Numba kernels against the float64 reference (tests/reference.py), every op and option.

Tolerance: fp32 kernels vs float64 reference, max abs error <= 1e-5 on unit-scale data.
Between lstm-infer's own paths: step_many == repeated step() bit for bit; run() vs
stream within the same 1e-5 (they differ only in the summation order of the input
projection, which a following LayerNorm can amplify to a few 1e-6).
"""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder
from lstm_infer.kernels.linalg import WIDE_VECTORS
from builders import _u, add_recurrent, stacked
from reference import run_reference

TOL = 1e-5
BATCH_FMA_TOL = 1e-5  # an LSTM or GRU batch in run() against lone sequences (kernels/matmat_fma.py)


def _x(T, I, seed=1, B=None):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, I) if B is None else (B, T, I)).astype(np.float32)


def _check_all_paths(m, ref, X):
    Y = m.run(X)
    assert np.abs(Y - ref).max() <= TOL
    s = m.stream()
    Ys = np.stack([s.step(x) for x in X])
    assert np.abs(Ys - ref).max() <= TOL
    s.reset()
    rng = np.random.default_rng(7)
    chunks, t = [], 0
    while t < len(X):  # short chunks step the interpreter, long ones (>= 64) run node by node
        n = int(rng.integers(1, 40) if len(chunks) % 2 else rng.integers(60, 140))
        chunks.append(s.step_many(X[t:t + n]))
        t += n
    assert np.array_equal(np.concatenate(chunks), Ys), "step_many must equal step() exactly"
    assert np.abs(Ys - Y).max() <= TOL


SHAPES = [(1, 1), (3, 5), (7, 13), (16, 64)]


@pytest.mark.parametrize("I,H", SHAPES)
@pytest.mark.parametrize("T", [1, 230])
@pytest.mark.parametrize("opts", [dict(), dict(proj=3), dict(bias=False), dict(init_state=True)],
                         ids=["plain", "proj", "nobias", "h0c0"])
def test_lstm(tmp_path, I, H, T, opts):
    if opts.get("proj", 0) >= H:
        opts = {**opts, "proj": max(1, H - 1)} if H > 1 else {}
    g = stacked(tmp_path / "m.lstm", "LSTM", I, H, layers=2, **opts)
    X = _x(T, I)
    _check_all_paths(lstm_infer.load(tmp_path / "m.lstm"), run_reference(g["doc"], g["tensors"], X), X)


@pytest.mark.parametrize("I,H", SHAPES)
@pytest.mark.parametrize("lbr", [True, False], ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("opts", [dict(), dict(bias=False), dict(init_state=True)],
                         ids=["plain", "nobias", "h0"])
def test_gru(tmp_path, I, H, lbr, opts):
    g = stacked(tmp_path / "m.lstm", "GRU", I, H, layers=2, lbr=lbr, **opts)
    X = _x(210, I)
    _check_all_paths(lstm_infer.load(tmp_path / "m.lstm"), run_reference(g["doc"], g["tensors"], X), X)


@pytest.mark.parametrize("I,H", SHAPES)
@pytest.mark.parametrize("nl", ["tanh", "relu"])
@pytest.mark.parametrize("layers", [1, 3])
def test_rnn(tmp_path, I, H, nl, layers):
    g = stacked(tmp_path / "m.lstm", "RNN", I, H, layers=layers, nonlinearity=nl)
    X = _x(205, I)
    _check_all_paths(lstm_infer.load(tmp_path / "m.lstm"), run_reference(g["doc"], g["tensors"], X), X)


@pytest.mark.parametrize("kind", ["identity", "relu", "tanh", "sigmoid", "gelu", "gelu_tanh",
                                  "leaky_relu", "elu", "softplus", "softmax", "log_softmax"])
def test_activations_layernorm_and_binary_ops(tmp_path, kind):
    rng = np.random.default_rng(3)
    b = GraphBuilder("x", 6)
    h = add_recurrent(b, rng, "LSTM", "lstm", "x", 6, 9)
    a = b.add("Linear", "fc", [h], {"in_features": 9, "out_features": 9},
              {"W": _u(rng, (9, 9), 3.0), "bias": _u(rng, (9,), 1.0)})  # spread values widely
    alpha = {"leaky_relu": 0.2, "elu": 0.7}.get(kind)
    act = b.add("Activation", "act", [a], {"kind": kind, "size": 9, **({"alpha": alpha} if alpha else {})})
    ln = b.add("LayerNorm", "ln", [act], {"size": 9, "eps": 1e-5},
               {"weight": _u(rng, (9,), 2.0), "bias": _u(rng, (9,), 1.0)})
    ln2 = b.add("LayerNorm", "ln_plain", [h], {"size": 9, "eps": 1e-3})
    s = b.add("Add", "res", [ln, h], {"size": 9})
    p = b.add("Mul", "gate", [s, ln2], {"size": 9})
    c = b.add("Concat", "cat", [p, act, h], {"sizes": [9, 9, 9]})
    b.output(c)
    b.save(tmp_path / "m.lstm")
    X = _x(120, 6)
    _check_all_paths(lstm_infer.load(tmp_path / "m.lstm"), run_reference(b.document(), b.tensors, X), X)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_bidirectional_runs_but_does_not_stream(tmp_path, op):
    g = stacked(tmp_path / "m.lstm", op, 4, 6, layers=2, bidirectional=True)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(90, 4)
    assert np.abs(m.run(X) - run_reference(g["doc"], g["tensors"], X)).max() <= TOL
    assert not m.streamable
    with pytest.raises(lstm_infer.NotStreamableError, match="run\\(\\)"):
        m.stream()
    with pytest.raises(lstm_infer.NotStreamableError):
        m.streams(2)
    assert "streamable: no" in str(m)


def test_batched_run_equals_each_sequence(tmp_path):
    stacked(tmp_path / "m.lstm", "LSTM", 3, 8, layers=2)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(50, 3, B=4)
    Y = m.run(X)
    assert Y.shape == (4, 50, 2)
    for b in range(4):
        assert np.abs(Y[b] - m.run(X[b])).max() <= 1e-6


def test_streams_equal_independent_streams_and_reset(tmp_path):
    stacked(tmp_path / "m.lstm", "GRU", 3, 7, layers=2)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(60, 3, B=5)
    pool = m.streams(5)
    singles = [m.stream() for _ in range(5)]
    for t in range(60):
        Yp = pool.step(X[:, t])
        for i, s in enumerate(singles):
            assert np.array_equal(Yp[i], s.step(X[i, t]))
    # reset(i) restores stream i only
    before = pool.get_state()
    pool.reset(2)
    after = pool.get_state()
    for name in before:
        assert np.array_equal(after[name][[0, 1, 3, 4]], before[name][[0, 1, 3, 4]])
        assert not after[name][2].any()
    y2 = pool.step(X[:, 0])[2]
    assert np.array_equal(y2, m.stream().step(X[2, 0]))
    pool.reset()
    assert not any(v.any() for v in pool.get_state().values())
    with pytest.raises(IndexError):
        pool.reset(5)
    with pytest.raises(ValueError, match="positive"):
        m.streams(0)


def test_reset_restores_initial_state_and_state_roundtrip(tmp_path):
    stacked(tmp_path / "m.lstm", "LSTM", 3, 6, layers=2, proj=4, init_state=True)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(80, 3)
    s = m.stream()
    init = s.get_state()
    assert set(init) == {"lstm0.h", "lstm0.c", "lstm1.h", "lstm1.c"}
    assert init["lstm0.h"].shape == (4,) and init["lstm0.c"].shape == (6,)
    first = s.step_many(X)
    s.reset()
    assert all(np.array_equal(s.get_state()[k], init[k]) for k in init)
    assert np.array_equal(s.step_many(X), first)
    # get_state returns copies; set_state resumes bit-identically
    s.reset()
    s.step_many(X[:30])
    mid = s.get_state()
    mid["lstm0.h"][0] += 0  # a copy: mutating it must not touch the stream
    rest = s.step_many(X[30:])
    s2 = m.stream()
    s2.set_state(mid)
    assert np.array_equal(s2.step_many(X[30:]), rest)
    with pytest.raises(ValueError, match="keys"):
        s2.set_state({"lstm0.h": mid["lstm0.h"]})
    bad = dict(mid, **{"lstm0.c": np.zeros(5)})
    with pytest.raises(ValueError, match=r"\(6,\)"):
        s2.set_state(bad)


def test_step_out_parameter_and_multiple_outputs(tmp_path):
    rng = np.random.default_rng(0)
    b = GraphBuilder("x", 2)
    h = add_recurrent(b, rng, "LSTM", "lstm", "x", 2, 4)
    y1 = b.add("Linear", "a", [h], {"in_features": 4, "out_features": 3}, {"W": _u(rng, (4, 3), 1)})
    y2 = b.add("Activation", "p", [y1], {"kind": "softmax", "size": 3})
    b.output(y1)
    b.output(y2)
    b.save(tmp_path / "m.lstm")
    m = lstm_infer.load(tmp_path / "m.lstm")
    assert m.output_names == [y1, y2] and m.output_size == 6
    X = _x(10, 2)
    R = m.run(X)
    assert isinstance(R, dict) and list(R) == [y1, y2]
    assert np.allclose(R[y2].sum(-1), 1, atol=1e-6)
    s = m.stream()
    r0 = s.step(X[0])
    assert isinstance(r0, dict) and r0[y1].shape == (3,)
    s.reset()
    out = np.empty(6, np.float32)
    assert s.step(X[0], out=out) is out
    assert np.array_equal(out[:3], r0[y1])


@pytest.mark.parametrize("op,kw", [("LSTM", {}), ("LSTM", {"proj": 3}), ("LSTM", {"bias": False}),
                                   ("GRU", {}), ("GRU", {"lbr": False}), ("RNN", {}),
                                   ("RNN", {"nonlinearity": "relu"})])
@pytest.mark.parametrize("n", [1, 3, 9, 37])
def test_pool_and_batched_run_are_bit_identical_per_stream(tmp_path, op, kw, n):
    """streams(n) and run() on a batch share weight loads across streams (matmat_acc); each
    stream's arithmetic must stay exactly that of a lone stream / a lone sequence. 37 streams:
    two blocks of interpreter.STREAM_BLOCK, the second computing its gates in the first's rows."""
    stacked(tmp_path / "m.lstm", op, 5, 7, layers=2, **kw)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(25, 5, B=n)
    pool = m.streams(n)
    lone = [m.stream() for _ in range(n)]
    for t in range(25):
        Y = pool.step(X[:, t])
        for i in range(n):
            assert np.array_equal(Y[i], lone[i].step(X[i, t]))
    R = m.run(X)
    for i in range(n):
        assert np.array_equal(R[i], m.run(X[i]))


def test_step_calls_the_compiled_entry_point_and_checks_what_it_passes(tmp_path):
    """Stream.step calls step_sequence's compiled entry point directly (no dispatcher
    typing per call, lstm_infer/stream.py _StepEntry): the same floats as the dispatcher,
    and anything that is not a float32 C-contiguous vector still goes through conversion,
    a read-only or wrongly typed `out` is refused (the entry point trusts its types)."""
    from lstm_infer import stream as stream_mod
    from lstm_infer.kernels.interpreter import step_sequence
    stacked(tmp_path / "m.lstm", "LSTM", 5, 7, layers=2)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(6, 5)
    s = m.stream()
    ys = [s.step(x) for x in X]
    assert stream_mod._StepEntry.fn is not None and stream_mod._StepEntry.fn is not step_sequence
    mem = m.stream()._mem
    for t, x in enumerate(X):  # the dispatcher on the same memory row gives the same floats
        y = np.empty(m.output_size, np.float32)
        assert step_sequence(m.plan.prog, m.plan.arena, mem, x, y, True) == 0
        assert np.array_equal(y, ys[t])
    s.reset()
    ro = X[0].copy()
    ro.flags.writeable = False
    assert np.array_equal(s.step(ro), ys[0])                         # read-only input: fine
    assert np.array_equal(s.step(X[1].astype(np.float64)), ys[1])    # converted
    strided = np.stack([X[2], X[2]], 1)[:, 0]
    assert not strided.flags.c_contiguous and np.array_equal(s.step(strided), ys[2])
    out = np.empty(m.output_size, np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="writeable C-contiguous float32"):
        s.step(X[3], out=out)
    with pytest.raises(ValueError, match="writeable C-contiguous float32"):
        s.step(X[3], out=np.empty(m.output_size, np.float64))


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_packed_input_products_keep_batches_bit_identical(tmp_path, op):
    """With 64+ inputs the batched input projections (W_ih in run() on a batch and in
    streams(n), a Linear head in run()) go through matmat_packed on AVX-512 machines
    (linalg.WIDE_VECTORS; matmat_acc elsewhere): same sums in the same order, so a batch's
    sequences / a pool's streams stay bit-identical to lone ones, 5 rows = 4 + a remainder.
    Except an LSTM or (reset-after) GRU batch in run() with AVX-512: its gates are one FMA
    chain each (kernels/matmat_fma.py), within BATCH_FMA_TOL of a lone sequence."""
    g = stacked(tmp_path / "m.lstm", op, 64, 64, out=64)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(12, 64, B=5) * 0.3
    R = m.run(X)
    fma = WIDE_VECTORS
    for i in range(5):
        assert np.abs(R[i] - run_reference(g["doc"], g["tensors"], X[i])).max() <= TOL
        if fma:
            assert np.abs(R[i] - m.run(X[i])).max() <= BATCH_FMA_TOL
        else:
            assert np.array_equal(R[i], m.run(X[i]))
    pool, lone = m.streams(5), [m.stream() for _ in range(5)]
    for t in range(12):
        Y = pool.step(X[:, t])
        for i in range(5):
            assert np.array_equal(Y[i], lone[i].step(X[i, t]))


@pytest.mark.parametrize("rows,cols", [(7, 16), (9, 40), (16, 5)])
def test_narrow_matmat_is_bit_identical_to_lone_mat_vecs(rows, cols):
    """linalg.matmat_narrow (the streams' Linear head under 64 outputs): whole 16-column
    chunks of four vectors with sums in registers, the rest by matvec_cols; per vector the
    floats of matvec_cols, 9 vectors = two fours + one, 40 columns = two chunks + 8."""
    from lstm_infer.kernels.linalg import matmat_narrow, matvec_cols
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, rows + 3)).astype(np.float32)
    w = rng.standard_normal(2 + rows * cols).astype(np.float32)
    out = rng.standard_normal((9, cols + 4)).astype(np.float32)
    ref = out.copy()
    matmat_narrow(out, np.int64(4), x, np.int64(3), w, np.int64(2), np.int64(rows), np.int64(cols))
    for b in range(9):
        matvec_cols(ref[b, 4:], x[b, 3:], w, np.int64(2), np.int64(rows), np.int64(cols), np.int64(0),
                    np.int64(cols))
    assert np.array_equal(out, ref)
    start = rng.standard_normal((9, cols + 4)).astype(np.float32)  # the products themselves
    got = start.copy()
    matmat_narrow(got, np.int64(4), x, np.int64(3), w, np.int64(2), np.int64(rows), np.int64(cols))
    W = w[2:].reshape(rows, cols).astype(np.float64)
    np.testing.assert_allclose(got[:, 4:], start[:, 4:] + x[:, 3:] @ W, atol=1e-5)
    assert np.array_equal(got[:, :4], start[:, :4])
