"""Models with several per-step inputs: a dict name -> array (or the inputs concatenated in
the graph's order) on every path, checked against a float64 reference; clear errors."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder
from lstm_infer.errors import ModelFormatError

TOL = 1e-5


def _model(tmp_path):
    rng = np.random.default_rng(3)
    Wa = rng.uniform(-0.5, 0.5, (3, 4)).astype(np.float32)
    Wb = rng.uniform(-0.5, 0.5, (2, 4)).astype(np.float32)
    b = GraphBuilder("a", 3)
    b.add_input("b", 2)
    ya = b.add("Linear", "fa", ["a"], {"in_features": 3, "out_features": 4}, {"W": Wa})
    yb = b.add("Linear", "fb", ["b"], {"in_features": 2, "out_features": 4}, {"W": Wb})
    s = b.add("Add", "sum", [ya, yb], {"size": 4})
    h = b.add("GRU", "gru", [s], {"input_size": 4, "hidden_size": 5},
              {"W_ih": rng.uniform(-0.5, 0.5, (4, 15)).astype(np.float32),
               "W_hh": rng.uniform(-0.5, 0.5, (5, 15)).astype(np.float32)})
    b.output(h)
    p = tmp_path / "two_inputs.lstm"
    b.save(p)
    return lstm_infer.load(p), rng


def test_dict_and_concatenated_inputs_agree_on_every_path(tmp_path):
    m, rng = _model(tmp_path)
    assert m.input_names == ["a", "b"] and m.input_size == 5
    A = rng.standard_normal((2, 30, 3)).astype(np.float32)
    B = rng.standard_normal((2, 30, 2)).astype(np.float32)
    flat = np.concatenate([A, B], axis=-1)
    ref = m.run(flat)
    np.testing.assert_array_equal(m.run({"a": A, "b": B}), ref)
    np.testing.assert_array_equal(m.run({"a": A[0], "b": B[0]}), ref[0])
    s = m.stream()
    steps = np.array([s.step({"a": A[0, t], "b": B[0, t]}) for t in range(30)])
    np.testing.assert_allclose(steps, ref[0], atol=TOL)
    s.reset()
    np.testing.assert_allclose(s.step_many({"a": A[0], "b": B[0]}), ref[0], atol=TOL)
    np.testing.assert_allclose(m.streams(2).step({"a": A[:, 0], "b": B[:, 0]}), ref[:, 0], atol=TOL)


def test_inputs_are_checked_with_clear_errors(tmp_path):
    m, _ = _model(tmp_path)
    with pytest.raises(ValueError, match=r"keys \['a', 'b'\]"):
        m.run({"a": np.zeros((4, 3))})
    with pytest.raises(ValueError, match=r"X\['b'\] has shape \(4, 3\), expected \(\.\.\., 2\)"):
        m.run({"a": np.zeros((4, 3)), "b": np.zeros((4, 3))})
    with pytest.raises(ValueError, match="leading"):
        m.run({"a": np.zeros((4, 3)), "b": np.zeros((5, 2))})
    with pytest.raises(TypeError):
        m.stream().step({"a": np.zeros(3), "b": ["x", "y"]})


def test_duplicate_input_names_are_rejected():
    from lstm_infer.graph import parse_graph
    doc = {"inputs": [{"name": "x", "size": 2}, {"name": "x", "size": 3}],
           "outputs": [{"name": "x"}], "nodes": []}
    with pytest.raises(ModelFormatError, match="listed twice"):
        parse_graph(doc, {})
