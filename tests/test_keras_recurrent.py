"""Keras importer: LSTM, GRU (reset_after True and False), SimpleRNN, RNN(cell) and
Bidirectional (every merge_mode) agree with Keras predict() (max abs error 1e-5, see
keras_models.TOL), whole sequences, prefixes of last-step models, and streamed step by
step and in chunks."""
from __future__ import annotations

import numpy as np
import pytest

from converters import convert_keras
from keras_models import check, keras, randomize, save_and_convert

L = keras.layers

# (I, H): hidden 1, sizes that are not multiples of 4 or 8, a larger one.
SIZES = [(1, 1), (3, 5), (7, 13), (16, 9)]
RNN_CLASSES = {"lstm": L.LSTM, "gru": L.GRU, "gru_reset_before": L.GRU, "simple_rnn": L.SimpleRNN}


def _layer(kind: str, H: int, **kw):
    if kind == "gru_reset_before":
        kw["reset_after"] = False
    return RNN_CLASSES[kind](H, **kw)


def _seq(I, *layers, T=None):
    return keras.Sequential([keras.Input((T, I)), *layers])


@pytest.mark.parametrize("I,H", SIZES)
@pytest.mark.parametrize("kind", list(RNN_CLASSES))
def test_return_sequences(tmp_path, kind, I, H):
    model = randomize(_seq(I, _layer(kind, H, return_sequences=True)), seed=I + H)
    _, m, _ = save_and_convert(model, tmp_path)
    assert m.streamable
    check(model, m, (I,))


@pytest.mark.parametrize("kind", list(RNN_CLASSES))
def test_last_step_prefix_semantics(tmp_path, kind):
    """return_sequences=False: row t of run() is Keras's result on X[:, :t+1]."""
    model = randomize(_seq(4, _layer(kind, 6), L.Dense(3)), seed=1)
    _, m, report = save_and_convert(model, tmp_path)
    assert m.streamable
    assert any("row t is the result for the sequence ending at step t" in w
               for w in report.warnings)
    check(model, m, (4,), lengths=(1, 5, 9))


@pytest.mark.parametrize("kind", list(RNN_CLASSES))
def test_stacked_no_bias(tmp_path, kind):
    model = randomize(_seq(3, _layer(kind, 5, return_sequences=True, use_bias=False),
                           _layer(kind, 4, return_sequences=True)), seed=2)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (3,))


@pytest.mark.parametrize("kind,act,rec", [
    ("lstm", "tanh", "hard_sigmoid"),   # Keras 3: relu6(x + 3) / 6
    ("lstm", "relu", "sigmoid"),
    ("lstm", "softsign", "linear"),
    ("gru", "elu", "hard_sigmoid"),
    ("gru_reset_before", "relu", "softsign"),
    ("simple_rnn", "relu", None),
    ("simple_rnn", "linear", None),
    ("simple_rnn", "softplus", None),
])
def test_activations(tmp_path, kind, act, rec):
    kw = {"activation": act, "return_sequences": True}
    if rec:
        kw["recurrent_activation"] = rec
    # scale 0.4: relu/linear recurrences stay unit-scale over 17 steps
    model = randomize(_seq(5, _layer(kind, 6, **kw)), seed=3, scale=0.4)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (5,))


@pytest.mark.parametrize("kind", list(RNN_CLASSES))
def test_go_backwards_last_step(tmp_path, kind):
    """go_backwards with return_sequences=False: the reverse node's value at step 0;
    whole sequences only (the file does not stream)."""
    model = randomize(_seq(3, _layer(kind, 4, go_backwards=True), L.Dense(2)), seed=4)
    _, m, report = save_and_convert(model, tmp_path)
    assert not m.streamable
    assert any("NOT results for shorter sequences" in w for w in report.warnings)
    check(model, m, (3,), prefix=False)


def test_stateful_and_unroll(tmp_path):
    """stateful and unroll change nothing at inference (unroll needs a fixed length)."""
    model = randomize(keras.Sequential([keras.Input((7, 3), batch_size=3),
                                        L.LSTM(5, return_sequences=True, stateful=True),
                                        L.GRU(4, unroll=True)]), seed=5)
    _, m, report = save_and_convert(model, tmp_path)
    assert any("stateful=True" in w for w in report.warnings)
    model.layers[0].reset_state()
    check(model, m, (3,), lengths=(7,), prefix=False)
    # the verifier resets the stateful layer before each call and uses the fixed batch
    r = convert_keras(tmp_path / "model.keras", tmp_path / "v.lstm")
    assert r.verify.ok and r.verify.max_abs_error < 1e-5
    assert any("fixed length 7" in n for n in r.verify.notes)


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell", "SimpleRNNCell"])
def test_rnn_wrapping_a_cell(tmp_path, cell):
    model = randomize(_seq(3, L.RNN(getattr(L, cell)(5), return_sequences=True)), seed=6)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (3,))


def test_return_state_h(tmp_path):
    """return_state=True: the returned h is the last step's output."""
    inp = keras.Input((None, 3))
    seq, h = L.GRU(5, return_sequences=True, return_state=True)(inp)
    model = randomize(keras.Model(inp, L.Add()([L.Dense(5)(h), L.Dense(5)(h)])), seed=7)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (3,), lengths=(1, 6))


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before", "simple_rnn"])
def test_bidirectional(tmp_path, kind, mode):
    model = randomize(_seq(4, L.Bidirectional(_layer(kind, 5, return_sequences=True),
                                              merge_mode=mode), L.Dense(2)), seed=8)
    _, m, _ = save_and_convert(model, tmp_path)
    assert not m.streamable  # a reverse direction reads the whole sequence
    check(model, m, (4,))


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_bidirectional_last_step(tmp_path, kind):
    model = randomize(_seq(3, L.Bidirectional(_layer(kind, 4)), L.Dense(2)), seed=9)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (3,), prefix=False)


def test_bidirectional_merge_none(tmp_path):
    """merge_mode=None: two outputs, forward and backward."""
    inp = keras.Input((None, 3))
    f, b = L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode=None)(inp)
    model = randomize(keras.Model(inp, [f, b]), seed=10)
    _, m, _ = save_and_convert(model, tmp_path)
    X = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    want = model.predict(X, verbose=0)
    ours = m.run(X)
    assert isinstance(ours, dict) and len(ours) == 2
    for (name, y), w in zip(ours.items(), want):
        assert np.abs(y - w).max() < 1e-5, name


def test_stacked_bidirectional_lstm_classifier(tmp_path):
    model = randomize(_seq(6, L.Bidirectional(L.LSTM(8, return_sequences=True)),
                           L.Bidirectional(L.GRU(5)), L.Dense(3, activation="softmax")), seed=11)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (6,), prefix=False)
