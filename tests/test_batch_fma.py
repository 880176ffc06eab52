"""run() on an LSTM batch, and on a GRU batch of the reset-after form, forms each step's gates
with kernels/matmat_fma.matmat_fma2 (AVX-512): one FMA chain per gate instead of step()'s
four-term partial sums, so its sequences agree
with lone sequences (and step()) to float32 rounding, within BATCH_FMA_TOL, not bit for bit.
A lone sequence, step() and step_many keep their own exact equalities (tests/test_kernels.py,
tests/test_chunks.py)."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.kernels.linalg import WIDE_VECTORS, pack_panels
from lstm_infer.kernels.matmat_fma import matmat_fma2
from builders import stacked
from reference import run_reference

TOL = 1e-5             # against the float64 reference
BATCH_FMA_TOL = 1e-5   # a batch's sequence against the same sequence run alone


@pytest.mark.parametrize("rows,hrows,cols,nb", [(16, 64, 256, 32), (5, 20, 80, 7), (3, 9, 40, 6)])
def test_fma_product_is_the_product(rows, hrows, cols, nb):
    """out = bias + x W + h U for packed W, U against float64: whole panels of four vectors, the
    vectors past the last four (7, 6 = 4 + a remainder) and the columns past the last panel
    (80 = 64 + 16; 40: no full panel); W, U start past offset 0 of the arena."""
    rng = np.random.default_rng(5)
    W = rng.uniform(-0.3, 0.3, (rows, cols)).astype(np.float32)
    U = rng.uniform(-0.3, 0.3, (hrows, cols)).astype(np.float32)
    x = rng.standard_normal((nb, rows)).astype(np.float32)
    h = rng.standard_normal((nb, hrows)).astype(np.float32)
    arena = np.concatenate([np.zeros(3, np.float32), pack_panels(W), pack_panels(U)])
    bias = rng.standard_normal(cols).astype(np.float32)
    out = np.full((nb, cols), np.nan, np.float32)  # written, not read
    matmat_fma2(out, bias, x, arena, np.int64(3), np.int64(rows), h, np.int64(3 + W.size),
                np.int64(hrows), np.int64(cols))
    ref = bias + x.astype(np.float64) @ W + h.astype(np.float64) @ U
    np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("I,H,B,kw", [(16, 64, 6, {}), (5, 20, 9, {}), (16, 16, 4, {"bias": False})])
def test_lstm_batch_run_agrees_with_lone_sequences(tmp_path, I, H, B, kw):
    """A batch (4H = 256, 80 = a panel + 16 columns, 64; B = 6, 9: fours + a remainder)
    through run() against each sequence alone and against the float64 reference; a lone
    sequence's run() stays exactly its step() calls."""
    g = stacked(tmp_path / "m.lstm", "LSTM", I, H, out=3, **kw)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = np.random.default_rng(2).standard_normal((B, 40, I)).astype(np.float32)
    R = m.run(X)
    assert R.shape == (B, 40, 3)
    for i in range(B):
        lone = m.run(X[i])
        assert np.abs(R[i] - lone).max() <= BATCH_FMA_TOL
        assert np.abs(R[i] - run_reference(g["doc"], g["tensors"], X[i])).max() <= TOL
    s = m.stream()
    assert np.array_equal(np.stack([s.step(x) for x in X[1]]), m.run(X[1]))  # lone: exact


@pytest.mark.parametrize("I,H,B,kw", [(16, 64, 6, {}), (5, 32, 9, {"bias": False}),
                                      (3, 24, 5, {"bidirectional": True, "layers": 2})])
def test_gru_batch_run_agrees_with_lone_sequences(tmp_path, monkeypatch, I, H, B, kw):
    """A reset-after GRU batch through run() (ops/gru.gru_batch: 3H = 192, 96 = a panel + 32,
    72; B = 6, 9, 5: fours + a remainder; no biases; reverse layers) against each sequence
    alone and the float64 reference; the batch kernel is the one that ran (AVX-512; without it,
    linalg.WIDE_VECTORS False, the projection + matmat_acc path, bit-identical)."""
    from lstm_infer.ops import gru
    calls = []
    kernel = gru.gru_batch
    monkeypatch.setattr(gru, "gru_batch", lambda *a: calls.append(1) or kernel(*a))
    g = stacked(tmp_path / "m.lstm", "GRU", I, H, out=3, **kw)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = np.random.default_rng(4).standard_normal((B, 30, I)).astype(np.float32)
    R = m.run(X)
    assert bool(calls) == WIDE_VECTORS and R.shape == (B, 30, 3)
    for i in range(B):
        assert np.abs(R[i] - m.run(X[i])).max() <= BATCH_FMA_TOL
        assert np.abs(R[i] - run_reference(g["doc"], g["tensors"], X[i])).max() <= TOL


def test_gru_batch_of_the_reset_before_form_stays_bit_identical(tmp_path):
    """The reset-before form (ONNX's default) keeps the projection + matmat_acc path: a batch's
    sequences are exactly lone ones."""
    stacked(tmp_path / "m.lstm", "GRU", 5, 32, out=3, lbr=False)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = np.random.default_rng(6).standard_normal((5, 20, 5)).astype(np.float32)
    R = m.run(X)
    for i in range(5):
        assert np.array_equal(R[i], m.run(X[i]))
