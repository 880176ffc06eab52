"""Long step_many chunks run node by node from the stream's state (lstm_infer/sequence.py),
and run() cuts long sequences into blocks of time: both must give exactly the floats of
repeated step() calls / of one whole-sequence pass, carry state across calls, and leave the
state untouched when a chunk is refused."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer import sequence
from lstm_infer.builder import GraphBuilder
from lstm_infer.kernels.linalg import WIDE_VECTORS
from lstm_infer.stream import CHUNK_MIN, CHUNK_MIN_BY_SIZE
from builders import _u, add_recurrent, stacked


def _x(T, I, seed=3):
    return np.random.default_rng(seed).standard_normal((T, I)).astype(np.float32)


CASES = [dict(op="LSTM", I=4, H=7, layers=2), dict(op="LSTM", I=4, H=7, proj=3, init_state=True),
         dict(op="GRU", I=5, H=6, layers=2, init_state=True), dict(op="GRU", I=5, H=6, lbr=False),
         dict(op="RNN", I=3, H=9, layers=2), dict(op="RNN", I=3, H=9, nonlinearity="relu")]


@pytest.mark.parametrize("kw", CASES, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_long_chunks_equal_steps_exactly(tmp_path, kw):
    stacked(tmp_path / "m.lstm", **kw)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(400, kw["I"])
    s1 = m.stream()
    Ys = np.stack([s1.step(x) for x in X])
    s2 = m.stream()
    cuts = [0, CHUNK_MIN + 36, CHUNK_MIN + 41, 400]  # long, short, long
    Yc = np.concatenate([s2.step_many(X[a:b]) for a, b in zip(cuts, cuts[1:])])
    assert np.array_equal(Yc, Ys)
    st1, st2 = s1.get_state(), s2.get_state()
    assert all(np.array_equal(st1[k], st2[k]) for k in st1)
    assert np.array_equal(m.run(X), Ys)


# Models with enough matrix bytes that their chunks from 16 steps go node by node
# (stream.CHUNK_MIN_BY_SIZE), with the packed input projections (ops/linear.seq_panels: rows 66 and 100 >= 64,
# a 2-row and a 40-column remainder in the LSTM) and W_hh's panels in alternating order.
BIG = [dict(op="LSTM", I=66, H=250, out=70), dict(op="GRU", I=100, H=256, out=8)]


@pytest.mark.parametrize("kw", BIG, ids=lambda k: k["op"])
def test_short_chunks_of_large_models_equal_steps_exactly(tmp_path, kw):
    doc = stacked(tmp_path / "m.lstm", **kw)
    big, short = CHUNK_MIN_BY_SIZE[0]
    assert sum(t.nbytes for t in doc["tensors"].values() if t.ndim == 2) >= big
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(60, kw["I"])
    s1 = m.stream()
    Ys = np.stack([s1.step(x) for x in X])
    s2 = m.stream()
    cuts = [0, short, short + 3, 2 * short + 4, 60]  # odd lengths too
    assert s2._chunk_min == short
    Yc = np.concatenate([s2.step_many(X[a:b]) for a, b in zip(cuts, cuts[1:])])
    assert np.array_equal(Yc, Ys)
    assert bool(m.plan.panels) == WIDE_VECTORS  # packed projections where AVX-512 has them
    st1, st2 = s1.get_state(), s2.get_state()
    assert all(np.array_equal(st1[k], st2[k]) for k in st1)
    assert np.array_equal(m.run(X), Ys)


def test_history_and_per_step_ops_in_long_chunks(tmp_path):
    """A causal conv over time (History -> Linear), LayerNorm and an activation, long chunks."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("x", 3)
    h = b.add("History", "hist", ["x"], {"size": 3, "frames": 3, "dilation": 2})
    v = b.add("Linear", "conv", [h], {"in_features": 9, "out_features": 6},
              {"W": _u(rng, (9, 6), 0.5), "bias": _u(rng, (6,), 0.1)})
    v = add_recurrent(b, rng, "GRU", "gru", v, 6, 8)
    v = b.add("LayerNorm", "ln", [v], {"size": 8}, {"weight": _u(rng, (8,), 1.0), "bias": _u(rng, (8,), 0.1)})
    b.output(b.add("Activation", "act", [v], {"kind": "tanh", "size": 8}))
    b.save(tmp_path / "h.lstm")
    m = lstm_infer.load(tmp_path / "h.lstm")
    assert sequence.chunkable(m.graph)
    X = _x(300, 3)
    s1 = m.stream()
    Ys = np.stack([s1.step(x) for x in X])
    s2 = m.stream()
    Yc = np.concatenate([s2.step_many(X[:130]), s2.step_many(X[130:131]), s2.step_many(X[131:])])
    assert np.array_equal(Yc, Ys)
    assert np.array_equal(s2.get_state()["hist.past"], s1.get_state()["hist.past"])


def test_refused_long_chunk_leaves_state(tmp_path):
    stacked(tmp_path / "m.lstm", "LSTM", 3, 5)
    s = lstm_infer.load(tmp_path / "m.lstm").stream()
    s.step_many(_x(100, 3))
    before = s.get_state()
    X = _x(100, 3, seed=4)
    X[77, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        s.step_many(X)
    after = s.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("B", [1, 5])
def test_run_in_time_blocks_equals_one_pass(tmp_path, monkeypatch, B):
    stacked(tmp_path / "m.lstm", "LSTM", 4, 6, layers=2, init_state=True)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = np.random.default_rng(5).standard_normal((B, 333, 4)).astype(np.float32)
    whole = m.run(X)  # 333 steps fit one block at this width
    monkeypatch.setattr(sequence, "BLOCK_FLOATS", 1)  # blocks of MIN_BLOCK steps
    monkeypatch.setattr(sequence, "MIN_BLOCK", 50)
    assert sequence.block_length(m.graph, B) == 50
    assert np.array_equal(m.run(X), whole)
