"""Keras importer: the per-step layers around the recurrent ones (Dense on sequences,
TimeDistributed, Conv1D over time, normalisation, Embedding, activations, reshapes,
merges in functional models) agree with Keras predict() (max abs error 1e-5, see
keras_models.TOL), whole sequences and streamed."""
from __future__ import annotations

import pytest

from keras_models import check, keras, randomize, save_and_convert

L = keras.layers


def _seq(step_shape, *layers):
    return keras.Sequential([keras.Input((None, *step_shape)), *layers])


def test_dense_on_sequences_with_activations(tmp_path):
    model = randomize(_seq((5,), L.Dense(7, activation="relu"), L.Dense(6, activation="tanh"),
                           L.Dense(4, use_bias=False, activation="sigmoid"),
                           L.Dense(3, activation="softmax")), seed=1)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (5,))


@pytest.mark.parametrize("act", ["elu", "selu", "softplus", "softsign", "swish", "gelu",
                                 "hard_sigmoid", "hard_silu", "relu6", "leaky_relu", "exponential",
                                 "log_softmax", "linear"])
def test_activation_names(tmp_path, act):
    model = randomize(_seq((4,), L.Dense(6, activation=act), L.LSTM(3, return_sequences=True)),
                      seed=2)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (4,), lengths=(1, 6))


def test_activation_layers(tmp_path):
    model = randomize(_seq((4,), L.Dense(6), L.ReLU(), L.Dense(6), L.LeakyReLU(negative_slope=0.1),
                           L.Dense(6), L.ELU(alpha=0.5), L.Dense(6), L.ReLU(max_value=0.3),
                           L.Dense(5), L.Activation("tanh"), L.Softmax()), seed=3)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (4,))


def test_time_distributed_dense_flatten_reshape(tmp_path):
    """Per-frame (2, 3) inputs: TimeDistributed(Flatten), Reshape per step, Dense on the
    last axis of a 2-D frame (the same kernel for each row)."""
    model = randomize(_seq((2, 3), L.TimeDistributed(L.Dense(4)), L.TimeDistributed(L.Flatten()),
                           L.TimeDistributed(L.Dense(6)), L.Reshape((-1, 3, 2)), L.Dense(5),
                           L.Reshape((-1, 15)), L.GRU(4, return_sequences=True)), seed=4)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (2, 3))


@pytest.mark.parametrize("kw", [dict(kernel_size=1), dict(kernel_size=1, groups=2),
                                dict(kernel_size=3, padding="causal"),
                                dict(kernel_size=2, padding="causal", dilation_rate=3,
                                     activation="relu")],
                         ids=["k1", "k1-groups", "causal-k3", "causal-dilated"])
def test_conv1d_over_time(tmp_path, kw):
    model = randomize(_seq((4,), L.Conv1D(6, **kw), L.LSTM(3, return_sequences=True)), seed=5)
    _, m, _ = save_and_convert(model, tmp_path)
    assert m.streamable  # a causal convolution keeps its last frames as state
    check(model, m, (4,))


@pytest.mark.parametrize("kw", [dict(), dict(center=False), dict(scale=False, epsilon=1e-5)])
def test_layer_normalization(tmp_path, kw):
    model = randomize(_seq((5,), L.LSTM(6, return_sequences=True), L.LayerNormalization(**kw),
                           L.Dense(2)), seed=6)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (5,))


def test_layer_normalization_per_frame_rows(tmp_path):
    model = randomize(_seq((3, 4), L.LayerNormalization(), L.TimeDistributed(L.Flatten()),
                           L.LSTM(2, return_sequences=True)), seed=7)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (3, 4))


@pytest.mark.parametrize("kw", [dict(), dict(center=False, scale=False), dict(epsilon=0.1)])
def test_batch_normalization_folded(tmp_path, kw):
    model = randomize(_seq((4,), L.BatchNormalization(**kw), L.GRU(5, return_sequences=True),
                           L.BatchNormalization(), L.Dense(2)), seed=8)
    _, m, _ = save_and_convert(model, tmp_path)
    assert "Scale" in str(m)
    check(model, m, (4,))


def test_dropout_and_noise_are_identity(tmp_path):
    model = randomize(_seq((4,), L.Dropout(0.5), L.GaussianNoise(1.0),
                           L.LSTM(5, return_sequences=True, dropout=0.3, recurrent_dropout=0.2),
                           L.SpatialDropout1D(0.4), L.Dense(2)), seed=9)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (4,))


def test_masking_noop_on_unmasked_data(tmp_path):
    model = randomize(_seq((4,), L.Masking(mask_value=0.0), L.LSTM(5), L.Dense(2)), seed=10)
    _, m, report = save_and_convert(model, tmp_path)
    assert any("Masking" in w and "NOT skipped" in w for w in report.warnings)
    check(model, m, (4,))


@pytest.mark.parametrize("mask_zero", [False, True])
def test_embedding(tmp_path, mask_zero):
    model = randomize(keras.Sequential([keras.Input((None,)),
                                        L.Embedding(50, 8, mask_zero=mask_zero),
                                        L.LSTM(6), L.Dense(3)]), seed=11)
    _, m, _ = save_and_convert(model, tmp_path)
    # with mask_zero, id 0 would be skipped by Keras: compare on ids >= 1 (documented)
    check(model, m, (), vocab=50, low=1 if mask_zero else 0)


def test_functional_merges(tmp_path):
    inp = keras.Input((None, 4))
    a = L.LSTM(5, return_sequences=True)(inp)
    b = L.GRU(5, return_sequences=True)(inp)
    c = L.Dense(5)(inp)
    x = L.Concatenate()([L.Add()([a, b]), L.Multiply()([a, c]), L.Subtract()([b, c]),
                         L.Average()([a, b, c]), L.Maximum()([a, c]), L.Minimum()([b, c])])
    out = L.Dense(3)(L.LayerNormalization()(x))
    model = randomize(keras.Model(inp, out), seed=12)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (4,))


def test_functional_two_outputs_seq_and_last(tmp_path):
    """A per-step output and a last-step output of one model."""
    inp = keras.Input((None, 3))
    seq = L.LSTM(5, return_sequences=True)(inp)
    last = L.GRU(4)(seq)
    model = randomize(keras.Model(inp, [L.Dense(2)(seq), L.Dense(3)(last)]), seed=13)
    _, m, _ = save_and_convert(model, tmp_path)
    import numpy as np
    X = np.random.default_rng(0).standard_normal((2, 7, 3)).astype(np.float32)
    want = model.predict(X, verbose=0)
    ours = list(m.run(X).values())
    assert np.abs(ours[0] - want[0]).max() < 1e-5
    assert np.abs(ours[1][:, -1] - want[1]).max() < 1e-5
    for t in range(6):
        wt = model.predict(X[:, :t + 1], verbose=0)[1]
        assert np.abs(ours[1][:, t] - wt).max() < 1e-5
