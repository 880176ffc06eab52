"""Keras importer: ConvLSTM1D and ConvLSTM2D (padding valid/same, strides, dilation,
no bias, other activations, return_sequences True/False, go_backwards, stacked, with
per-frame layers after them) saved as .keras, converted with convert_keras, against
Keras predict(): run() on shaped and flattened frames, streamed step by step and in
chunks (keras_models.check). Tolerance 1e-5 max abs (keras_models.TOL)."""
from __future__ import annotations

import numpy as np
import pytest

from converters import ConversionError, convert_keras
from keras_models import TOL, check, data, err, keras, predict, randomize, save_and_convert

L = keras.layers


def _seq(frame, *layers, T=None):
    return keras.Sequential([keras.Input((T, *frame)), *layers])


CASES_2D = [
    dict(frame=(6, 7, 2), filters=3, kernel_size=3, padding="same"),
    dict(frame=(6, 7, 2), filters=4, kernel_size=(3, 2), padding="valid"),
    dict(frame=(7, 8, 1), filters=3, kernel_size=3, strides=2, padding="same"),
    dict(frame=(7, 8, 3), filters=2, kernel_size=(2, 3), strides=(2, 1), padding="valid"),
    dict(frame=(6, 6, 2), filters=3, kernel_size=2, dilation_rate=2, padding="same"),
    dict(frame=(5, 6, 2), filters=17, kernel_size=3, padding="same", use_bias=False),
    dict(frame=(5, 5, 2), filters=3, kernel_size=3, padding="same",
         recurrent_activation="hard_sigmoid", activation="relu"),
]


@pytest.mark.parametrize("case", CASES_2D, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()
                                                                    if k != "frame"))
def test_convlstm2d_return_sequences(tmp_path, case):
    case = dict(case)
    frame = case.pop("frame")
    model = randomize(_seq(frame, L.ConvLSTM2D(return_sequences=True, **case)), seed=len(case))
    _, m, _ = save_and_convert(model, tmp_path)
    assert m.input_shape == frame and m.streamable
    assert m.output_shape == tuple(model.output_shape[2:])
    check(model, m, frame, lengths=(1, 5))
    X = data((2, 4, *frame), seed=9)
    assert err(m.run(X), predict(model, X).reshape(2, 4, -1)) < TOL   # shaped frames in
    s = m.stream()
    assert err(np.stack([s.step(x) for x in X[0]]), m.run(X[0])) == 0.0


def test_convlstm2d_last_step_then_flatten_dense(tmp_path):
    model = randomize(_seq((6, 6, 1), L.ConvLSTM2D(4, 3, padding="same"), L.Flatten(),
                           L.Dense(5, activation="tanh")), seed=3)
    _, m, _ = save_and_convert(model, tmp_path)
    assert m.streamable and m.output_shape == (5,)
    check(model, m, (6, 6, 1), lengths=(1, 4))


def test_stacked_with_per_frame_layers(tmp_path):
    """ConvLSTM2D -> BatchNormalization -> ConvLSTM2D -> TimeDistributed(Flatten) ->
    TimeDistributed(Dense) and a per-pixel Dense (a 1x1 convolution), every frame."""
    inp = keras.Input((None, 6, 5, 2))
    h = L.ConvLSTM2D(3, 3, padding="same", return_sequences=True)(inp)
    h = L.BatchNormalization()(h)
    h = L.ConvLSTM2D(4, (2, 2), padding="valid", return_sequences=True)(h)
    h = L.Dense(2)(h)
    h = L.TimeDistributed(L.Flatten())(h)
    out = L.TimeDistributed(L.Dense(3))(h)
    model = randomize(keras.Model(inp, out), seed=4)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (6, 5, 2), lengths=(1, 5))


@pytest.mark.parametrize("kw", [dict(kernel_size=3, padding="same"),
                                dict(kernel_size=2, strides=2, padding="valid"),
                                dict(kernel_size=3, dilation_rate=2, padding="same")])
def test_convlstm1d(tmp_path, kw):
    model = randomize(_seq((9, 3), L.ConvLSTM1D(4, return_sequences=True, **kw)), seed=5)
    _, m, _ = save_and_convert(model, tmp_path)
    assert m.input_shape == (9, 3) and m.output_shape == tuple(model.output_shape[2:])
    check(model, m, (9, 3), lengths=(1, 6))


def test_convlstm1d_last_step(tmp_path):
    model = randomize(_seq((8, 2), L.ConvLSTM1D(3, 3, padding="same"), L.Flatten(), L.Dense(2)),
                      seed=6)
    _, m, _ = save_and_convert(model, tmp_path)
    check(model, m, (8, 2), lengths=(1, 5))


def test_go_backwards_last_step_runs_whole_sequences(tmp_path):
    model = randomize(_seq((5, 5, 1), L.ConvLSTM2D(2, 3, padding="same", go_backwards=True)),
                      seed=7)
    _, m, _ = save_and_convert(model, tmp_path)
    assert not m.streamable
    X = data((2, 6, 5, 5, 1), seed=1)
    assert err(m.run(X)[:, -1], predict(model, X).reshape(2, -1)) < TOL


def test_verified_conversion_and_h5(tmp_path):
    """convert_keras's own verification passes (and .h5 files convert the same)."""
    model = randomize(_seq((5, 6, 2), L.ConvLSTM2D(3, 3, padding="same", return_sequences=True)),
                      seed=8)
    for fmt in ("keras", "h5"):
        src = str(tmp_path / f"m.{fmt}")
        model.save(src)
        report = convert_keras(src, str(tmp_path / f"m_{fmt}.lstm"))
        assert report.verify is not None and report.verify.max_abs_error < TOL


def test_channels_first_is_refused(tmp_path):
    model = _seq((2, 5, 6), L.ConvLSTM2D(3, 3, data_format="channels_first"))
    src = str(tmp_path / "m.keras")
    model.save(src)
    with pytest.raises(ConversionError, match="channels_first"):
        convert_keras(src, str(tmp_path / "m.lstm"), verify=False)
