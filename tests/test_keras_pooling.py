"""Keras GlobalAveragePooling1D / GlobalMaxPooling1D over time against Keras predict():
run() (last row, and every earlier row against predict() on the prefix), step() and
chunked step_many with the state carried (keras_models.check). Tolerance 1e-5."""
from __future__ import annotations

import pytest

from keras_models import check, keras, randomize, save_and_convert


@pytest.mark.parametrize("pool", ["GlobalAveragePooling1D", "GlobalMaxPooling1D"])
@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_global_pooling_over_time(tmp_path, pool, fmt):
    L = keras.layers
    model = keras.Sequential([keras.Input((None, 3)), L.LSTM(6, return_sequences=True),
                              getattr(L, pool)(), L.Dense(2)])
    randomize(model, seed=1)
    _, m, _ = save_and_convert(model, tmp_path, fmt)
    assert m.streamable
    assert check(model, m, (3,)) < 1e-5


def test_channels_first_pooling_is_refused(tmp_path):
    from converters import ConversionError
    L = keras.layers
    model = keras.Sequential([keras.Input((None, 3)), L.GRU(4, return_sequences=True),
                              L.GlobalAveragePooling1D(data_format="channels_first")])
    with pytest.raises(ConversionError, match="channels_last"):
        save_and_convert(model, tmp_path)
