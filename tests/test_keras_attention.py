"""Keras MultiHeadAttention and Attention over recurrent outputs against Keras predict()
(keras_models.check: run() on whole sequences, every earlier row of a last-step output
against predict() on the prefix, and, when the file streams, step() and chunked
step_many with the state carried equal to run()). Tolerance 1e-5 (keras_models.TOL).

use_causal_mask=True streams (CausalAttention); without it the attention looks ahead
(SequenceAttention, run() only); a single last-step query over every step streams."""
from __future__ import annotations

import numpy as np
import pytest

from keras_models import check, data, keras, predict, randomize, save_and_convert

import lstm_infer
from converters import ConversionError, convert_keras

L = keras.layers


def _mha_model(causal: bool, residual: bool = True, **kw):
    x = keras.Input((None, 3))
    h = L.LSTM(8, return_sequences=True)(x)
    a = L.MultiHeadAttention(**kw)(h, h, use_causal_mask=causal)
    y = L.LayerNormalization()(L.Add()([h, a])) if residual else a
    return keras.Model(x, y)


MHA_OPTIONS = [dict(num_heads=2, key_dim=4),
               # value_dim != key_dim (zero-padded heads), the sigmoid gate, no biases
               dict(num_heads=2, key_dim=3, value_dim=5, use_gate=True, use_bias=False),
               dict(num_heads=3, key_dim=2, sliding_window=3, dropout=0.1)]


@pytest.mark.parametrize("kw", MHA_OPTIONS, ids=["plain", "gate-vdim", "window"])
@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_causal_multi_head_attention_streams(tmp_path, kw, fmt):
    model = randomize(_mha_model(True, **kw), seed=1)
    _, m, report = save_and_convert(model, tmp_path, fmt)
    ops = {n.op for n in m.graph.nodes}
    assert "CausalAttention" in ops and m.streamable
    assert check(model, m, (3,)) < 1e-5
    if "sliding_window" not in kw:
        assert any("attention_max_len=4096" in w for w in report.warnings)


@pytest.mark.parametrize("kw", MHA_OPTIONS[:2] + [dict(num_heads=1, key_dim=5, sliding_window=2,
                                                      output_shape=6)],
                         ids=["plain", "gate-vdim", "window-outshape"])
def test_non_causal_multi_head_attention_runs_only(tmp_path, kw):
    model = randomize(_mha_model(False, residual="output_shape" not in kw, **kw), seed=2)
    src, out = str(tmp_path / "m.keras"), str(tmp_path / "m.lstm")
    model.save(src)
    assert convert_keras(src, out).verify.ok      # the converter's own check runs run() only
    m = lstm_infer.load(out)
    node = next(n for n in m.graph.nodes if n.op == "SequenceAttention")
    assert not m.streamable
    assert check(model, m, (3,)) < 1e-5
    with pytest.raises(lstm_infer.NotStreamableError, match=node.name):
        m.stream()


def test_keyword_call_with_its_own_key(tmp_path):
    """query=, value=, key= by keyword; the key another per-step tensor than the value."""
    x = keras.Input((None, 3))
    h = L.GRU(6, return_sequences=True)(x)
    k = L.Dense(5, activation="tanh")(h)
    a = L.MultiHeadAttention(num_heads=2, key_dim=3)(query=h, value=h, key=k,
                                                     use_causal_mask=True)
    model = randomize(keras.Model(x, L.Dense(2)(a)), seed=3)
    _, m, _ = save_and_convert(model, tmp_path)
    assert m.streamable and check(model, m, (3,)) < 1e-5


def _last_query_model(layer):
    """The last LSTM state (1, F) as the query over every step: an attention readout."""
    x = keras.Input((None, 3))
    seq, last, _ = L.LSTM(8, return_sequences=True, return_state=True)(x)
    q = L.Reshape((1, 8))(last)
    a = layer([q, seq]) if isinstance(layer, L.Attention) else layer(q, seq)
    return keras.Model(x, L.Dense(2)(L.Flatten()(a)))


@pytest.mark.parametrize("make", [lambda: L.MultiHeadAttention(num_heads=2, key_dim=4),
                                  lambda: L.Attention(use_scale=True)], ids=["mha", "attention"])
def test_last_step_query_streams_with_prefix_semantics(tmp_path, make):
    model = randomize(_last_query_model(make()), seed=4)
    _, m, _ = save_and_convert(model, tmp_path, "h5")
    assert m.streamable
    assert check(model, m, (3,), lengths=(1, 7)) < 1e-5   # row t == predict(X[:, :t+1])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("use_scale", [True, False])
def test_dot_attention_self_attention(tmp_path, causal, use_scale):
    x = keras.Input((None, 3))
    h = L.LSTM(6, return_sequences=True)(x)
    v = L.Dense(6)(h)
    a = L.Attention(use_scale=use_scale)([h, v, h], use_causal_mask=causal)
    model = randomize(keras.Model(x, L.GlobalAveragePooling1D()(L.Add()([h, a]))), seed=5)
    _, m, _ = save_and_convert(model, tmp_path)
    assert m.streamable == causal
    assert check(model, m, (3,), lengths=(1, 6), prefix=causal) < 1e-5


def test_verified_conversion_and_max_len(tmp_path):
    model = randomize(_mha_model(True, num_heads=2, key_dim=4), seed=6)
    src = str(tmp_path / "m.keras")
    model.save(src)
    out = str(tmp_path / "m.lstm")
    report = convert_keras(src, out, attention_max_len=8)
    assert report.verify.ok and any("attention_max_len=8" in w for w in report.warnings)
    m = lstm_infer.load(out)
    X = data((1, 9, 3), seed=7)
    s = m.stream()
    s.step_many(X[0, :8])
    with pytest.raises(ValueError, match="at most 8 steps.*attention_max_len"):
        s.step(X[0, 8])
    assert np.abs(m.run(X[:, :8]) - predict(model, X[:, :8])).max() < 1e-5
    with pytest.raises(ConversionError, match="attention_max_len"):
        convert_keras(src, out, verify=False, attention_max_len=0)


def _refused(path, y, x, match):
    path.mkdir()
    with pytest.raises(ConversionError, match=match):
        save_and_convert(keras.Model(x, y), path)


def test_unsupported_attention_is_refused(tmp_path):
    x = keras.Input((None, 3))
    h = L.LSTM(4, return_sequences=True)(x)
    _, last = L.GRU(4, return_state=True)(x)
    q = L.Reshape((1, 4))(last)
    _refused(tmp_path / "a", L.AdditiveAttention()([h, h]), x, "AdditiveAttention.*dot-product")
    _refused(tmp_path / "b", L.Attention(score_mode="concat")([h, h]), x, "score_mode='concat'")
    _refused(tmp_path / "c", L.MultiHeadAttention(2, 2)(h, h, return_attention_scores=True)[0],
             x, "return_attention_scores")
    _refused(tmp_path / "d", L.MultiHeadAttention(2, 2)(q, h, use_causal_mask=True), x,
             "single .last-step. query")
    _refused(tmp_path / "e", L.MultiHeadAttention(2, 2, attention_axes=(2,))(h, h), x,
             "attention_axes")


def test_attention_given_as_keyword_inputs(tmp_path):
    x = keras.Input((None, 3))
    h = L.LSTM(8, return_sequences=True)(x)
    model = randomize(keras.Model(x, L.Attention()(inputs=[h, h], use_causal_mask=True)), seed=8)
    _, m, _ = save_and_convert(model, tmp_path)
    assert m.streamable and check(model, m, (3,), lengths=(5,)) < 1e-5


def test_attention_mask_argument_is_refused(tmp_path):
    """A file whose MultiHeadAttention call passes attention_mask= (written into the config:
    a single-input model cannot build a mask tensor from supported layers)."""
    import json
    import zipfile
    x = keras.Input((None, 3))
    h = L.LSTM(4, return_sequences=True)(x)
    model = keras.Model(x, L.MultiHeadAttention(2, 2, name="mha")(h, h))
    src, dst = tmp_path / "m.keras", tmp_path / "masked.keras"
    model.save(src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            raw = zin.read(item.filename)
            if item.filename == "config.json":
                cfg = json.loads(raw)
                layer_cfg = next(l for l in cfg["config"]["layers"] if l["name"] == "mha")
                node = layer_cfg["inbound_nodes"][0]
                node["kwargs"]["attention_mask"] = node["args"][0]
                raw = json.dumps(cfg).encode()
            zout.writestr(item, raw)
    with pytest.raises(ConversionError, match="'mha'.*attention_mask"):
        convert_keras(str(dst), str(tmp_path / "m.lstm"), verify=False)


def test_keras2_call_keywords_are_parsed():
    """Keras 2 configs list a call as [[name, node, tensor, kwargs]] with tensor keyword
    arguments as [name, node, tensor] (MultiHeadAttention's value) next to the others."""
    from converters.keras_import.topology import parse_model
    cfg = {"class_name": "Functional", "config": {
        "layers": [{"class_name": "InputLayer", "name": "x",
                    "config": {"name": "x", "batch_input_shape": [None, None, 3]}},
                   {"class_name": "LSTM", "name": "lstm", "config": {},
                    "inbound_nodes": [[["x", 0, 0, {}]]]},
                   {"class_name": "MultiHeadAttention", "name": "mha", "config": {},
                    "inbound_nodes": [[["lstm", 0, 0, {"value": ["lstm", 0, 0],
                                                       "use_causal_mask": True}]]]}],
        "input_layers": [["x", 0, 0]], "output_layers": [["mha", 0, 0]]}}
    call = parse_model(cfg).calls[-1]
    assert call.inputs == [("lstm", 0, 0)] and call.kw_inputs == {"value": [("lstm", 0, 0)]}
    assert call.options["use_causal_mask"] is True
