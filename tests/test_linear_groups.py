"""Grouped Linear (the IR op Einsum grouped linears become): every path against a float64
reference, int8 included; groups must divide the sizes."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder
from lstm_infer.errors import ModelFormatError
from lstm_infer.quantize import quantize_file
from test_q16 import q16_values

TOL = 1e-5  # float32 sums of <= 24 unit-scale products against float64


def _reference(X, W2, b, G):
    I, O = X.shape[-1], W2.shape[1]
    Ig, Og = I // G, O // G
    Y = np.zeros(X.shape[:-1] + (O,))
    for g in range(G):
        Y[..., g * Og:(g + 1) * Og] = X[..., g * Ig:(g + 1) * Ig].astype(np.float64) @ W2[:, g * Og:(g + 1) * Og]
    return Y + (0 if b is None else b)


@pytest.mark.parametrize("I,O,G,bias", [(12, 8, 4, True), (6, 9, 3, False), (5, 7, 1, True)])
def test_grouped_linear_all_paths(tmp_path, I, O, G, bias):
    rng = np.random.default_rng(I * O + G)
    W2 = rng.uniform(-0.5, 0.5, (I // G, O)).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, O).astype(np.float32) if bias else None
    gb = GraphBuilder("x", I)
    gb.output(gb.add("Linear", "fc", ["x"], {"in_features": I, "out_features": O, "groups": G},
                     {"W": W2, "bias": b}))
    p = tmp_path / "g.lstm"
    gb.save(p)
    m = lstm_infer.load(p)
    X = rng.standard_normal((3, 11, I)).astype(np.float32)
    ref = _reference(X, W2, b, G)
    np.testing.assert_allclose(m.run(X), ref, atol=TOL)
    np.testing.assert_allclose(m.run(X[0]), ref[0], atol=TOL)
    s = m.stream()
    np.testing.assert_allclose(np.array([s.step(x) for x in X[0]]), ref[0], atol=TOL)
    np.testing.assert_allclose(s.step_many(X[1]), ref[1], atol=TOL)
    np.testing.assert_allclose(m.streams(3).step(X[:, 0]), ref[:, 0], atol=TOL)
    # int8: the same math in float64, each group's input quantised to int16 on its own (one
    # integer mat-vec per group, tests/test_q16.py)
    quantize_file(p, tmp_path / "q.lstm", "int8")
    q = lstm_infer.load(tmp_path / "q.lstm")
    Wq = q.graph.nodes[0].weights["W"].astype(np.float64) * q.graph.nodes[0].weights["W.scale"]
    Ig = I // G
    Xq = np.concatenate([np.apply_along_axis(q16_values, -1, X[..., g * Ig:(g + 1) * Ig]) for g in range(G)], -1)
    refq = _reference(Xq, Wq, b, G)
    np.testing.assert_allclose(q.run(X), refq, atol=1e-6)
    np.testing.assert_allclose(q.stream().step_many(X[2]), refq[2], atol=1e-6)

def test_groups_must_divide_the_sizes(tmp_path):
    gb = GraphBuilder("x", 6)
    with pytest.raises(ModelFormatError, match="groups 4 must divide"):
        gb.add("Linear", "fc", ["x"], {"in_features": 6, "out_features": 8, "groups": 4},
               {"W": np.zeros((1, 8), np.float32)})
