"""The Embedding op (lstm_infer/ops/embedding.py): token ids in, against the float64
reference, through run(), step(), step_many() and streams; and what happens to bad ids."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder
from lstm_infer.errors import ModelFormatError, NotStreamableError
from lstm_infer.ops.embedding import example_inputs, token_vocab
from lstm_infer.quantize import quantize_file
from builders import _u, add_recurrent
from reference import run_reference

TOL = 1e-5


def _model(path, V=11, D=6, H=8, K=1, op="LSTM", bidirectional=False, seed=0):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("ids", K)
    e = b.add("Embedding", "emb", ["ids"], {"num_embeddings": V, "embedding_dim": D, "count": K},
              {"table": _u(rng, (V, D), 1.0)})
    v = add_recurrent(b, rng, op, "rec", e, K * D, H)
    width = H
    if bidirectional:
        r = add_recurrent(b, rng, op, "rec_reverse", e, K * D, H, reverse=True)
        v = b.add("Concat", "cat", [v, r], {"sizes": [H, H]})
        width = 2 * H
    v = b.add("Linear", "fc", [v], {"in_features": width, "out_features": 3},
              {"W": _u(rng, (width, 3), 0.5), "bias": _u(rng, (3,), 0.1)})
    b.output(v)
    b.save(path)
    return b


def _ids(rng, T, V, K=1, B=None):
    shape = (T, K) if B is None else (B, T, K)
    return rng.integers(0, V, size=shape)


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_matches_reference_in_every_entry_point(tmp_path, K, op):
    b = _model(tmp_path / "m.lstm", K=K, op=op)
    m = lstm_infer.load(tmp_path / "m.lstm")
    assert m.input_size == K and token_vocab(m.graph) == 11
    rng = np.random.default_rng(1)
    X = _ids(rng, 60, 11, K)                       # int64 ids: converted to float32
    ref = run_reference(b.document(), b.tensors, X)
    assert np.abs(m.run(X) - ref).max() <= TOL
    assert np.array_equal(m.run(X), m.run(X.astype(np.float32)))
    s = m.stream()
    Ys = np.stack([s.step(x) for x in X])
    assert np.abs(Ys - ref).max() <= TOL
    s.reset()
    chunks = [s.step_many(X[t:t + 7]) for t in range(0, 60, 7)]
    assert np.array_equal(np.concatenate(chunks), Ys)
    pool = m.streams(2)
    Xb = np.stack([X, X[::-1]], axis=1)            # (T, 2, K)
    Yp = np.stack([pool.step(Xb[t]) for t in range(60)], axis=1)
    assert np.array_equal(Yp[0], Ys)
    ref_rev = run_reference(b.document(), b.tensors, X[::-1])
    assert np.abs(Yp[1] - ref_rev).max() <= TOL


def test_batched_run_with_lengths(tmp_path):
    b = _model(tmp_path / "m.lstm", op="GRU")
    m = lstm_infer.load(tmp_path / "m.lstm")
    rng = np.random.default_rng(2)
    X = _ids(rng, 20, 11, B=3)
    lens = np.array([20, 5, 13])
    Y = m.run(X, lengths=lens)
    for k in range(3):
        ref = run_reference(b.document(), b.tensors, X[k], length=int(lens[k]))
        assert np.abs(Y[k] - ref).max() <= TOL


def test_bidirectional_runs_but_stream_says_why(tmp_path):
    b = _model(tmp_path / "m.lstm", bidirectional=True)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _ids(np.random.default_rng(3), 30, 11)
    assert np.abs(m.run(X) - run_reference(b.document(), b.tensors, X)).max() <= TOL
    with pytest.raises(NotStreamableError, match="backwards in time"):
        m.stream()


@pytest.mark.parametrize("bad", [11, 12.0, -1, 2.5, np.nan, np.inf, 1e9])
def test_bad_id_raises_and_leaves_state_untouched(tmp_path, bad):
    _model(tmp_path / "m.lstm", V=11)
    m = lstm_infer.load(tmp_path / "m.lstm")
    for policy in ("raise", "propagate"):
        s = m.stream(on_nonfinite=policy)
        s.step(np.array([3.0]))
        before = s.get_state()
        if policy == "raise" and not np.isfinite(bad):
            with pytest.raises(ValueError, match="NaN or Inf"):
                s.step(np.array([bad]))
        else:
            with pytest.raises(ValueError, match=r"token id .* is not an integer in \[0, 11\)"):
                s.step(np.array([bad]))
        with pytest.raises(ValueError):
            s.step_many(np.array([[1.0], [2.0], [bad], [4.0]]))  # nothing of the chunk is run
        after = s.get_state()
        assert all(np.array_equal(before[k], after[k]) for k in before)
    pool = m.streams(3, on_nonfinite="propagate")
    pool.step(np.array([[1.0], [2.0], [3.0]]))
    before = pool.get_state()
    with pytest.raises(ValueError, match=r"at index \(2, 0\)"):
        pool.step(np.array([[1.0], [2.0], [bad]]))
    after = pool.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    X = np.zeros((2, 5, 1))
    X[1, 3, 0] = bad
    with pytest.raises(ValueError, match=r"token id|NaN"):
        m.run(X)
    with pytest.raises(ValueError, match=r"token id .* at index \(1, 3, 0\)"):
        m.run(X, on_nonfinite="propagate")


def test_ids_from_a_computed_value_never_read_outside_the_table(tmp_path):
    """Converters only feed an Embedding from the graph input; a hand-made file may feed it
    a computed value: out-of-range ids then give a zero row in a stream (never an
    out-of-bounds read) and a ValueError in run()."""
    rng = np.random.default_rng(4)
    b = GraphBuilder("x", 1)
    shifted = b.add("Scale", "shift", ["x"], {"size": 1}, {"shift": np.array([1000.0], np.float32)})
    e = b.add("Embedding", "emb", [shifted], {"num_embeddings": 5, "embedding_dim": 3},
              {"table": _u(rng, (5, 3), 1.0)})
    b.output(e)
    b.save(tmp_path / "m.lstm")
    m = lstm_infer.load(tmp_path / "m.lstm", warmup=False)
    assert token_vocab(m.graph) is None
    assert np.array_equal(m.stream().step(np.array([0.0])), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="not an integer in"):
        m.run(np.zeros((2, 1)))


def test_file_validation(tmp_path):
    rng = np.random.default_rng(5)
    for attrs, table in [({"num_embeddings": 5, "embedding_dim": 3}, (4, 3)),
                         ({"num_embeddings": 0, "embedding_dim": 3}, (0, 3)),
                         ({"num_embeddings": 5, "embedding_dim": 3, "count": 0}, (5, 3))]:
        b = GraphBuilder("ids", attrs.get("count", 1) or 1)
        with pytest.raises(ModelFormatError):
            b.add("Embedding", "emb", ["ids"], attrs, {"table": _u(rng, table, 1.0)})


def test_int8_keeps_the_table_float_and_summary(tmp_path):
    _model(tmp_path / "m.lstm", V=11)
    quantize_file(tmp_path / "m.lstm", tmp_path / "q.lstm", "int8")
    m, q = lstm_infer.load(tmp_path / "m.lstm"), lstm_infer.load(tmp_path / "q.lstm")
    assert q.weight_dtypes()["emb.table"] == "fp32" and q.weight_dtypes()["rec.W_ih"] == "int8"
    X = _ids(np.random.default_rng(6), 40, 11)
    assert np.abs(q.run(X) - m.run(X)).max() < 0.05
    assert "Embedding 11x6" in str(m)
    ex = example_inputs(m.graph, (4, 1), np.random.default_rng(0))
    assert ex.dtype == np.float32 and set(np.unique(ex)) <= set(range(11))
