"""Keras importer, files and the contract around them: `.keras` and `.h5` (Keras 3's
legacy save, and a Keras 2 style file), `convert_file` / `verify_file` / the CLI
dispatching on the suffix, clear errors for what is not supported, and a verifier that
catches a wrong conversion (and says when it cannot run because keras is missing)."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from keras_models import check, keras, randomize, save_and_convert

import lstm_infer  # noqa: E402
from converters import (ConversionError, UnsupportedOpError, VerificationError, convert_file,  # noqa: E402
                        convert_keras, verify_file)
from converters.keras_import.layers import recurrent as keras_recurrent  # noqa: E402
from lstm_infer.cli import cli  # noqa: E402

L = keras.layers


def _model(seed=0, rec="sigmoid"):
    return randomize(keras.Sequential([keras.Input((None, 4)),
                                       L.LSTM(6, return_sequences=True, recurrent_activation=rec),
                                       L.Bidirectional(L.GRU(3, return_sequences=True)),
                                       L.Dense(2)]), seed=seed)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_both_file_formats_verify(tmp_path, fmt):
    model = _model()
    src = str(tmp_path / f"m.{fmt}")
    model.save(src)
    out = tmp_path / "m.lstm"
    report = convert_keras(src, out)
    assert out.exists() and report.verify is not None and report.verify.ok
    assert report.verify.max_abs_error < 1e-5
    check(model, lstm_infer.load(out), (4,))


def _keras2_style(src: str, dst: str) -> None:
    """Rewrite a Keras 3 legacy .h5 as Keras 2 writes it: nested-list inbound_nodes,
    batch_input_shape, string dtypes, `:0` weight names, keras_version 2.x."""
    import h5py
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        for layer in cfg["config"]["layers"]:
            c = layer["config"]
            if layer["class_name"] == "InputLayer":
                c["batch_input_shape"] = c.pop("batch_shape")
            else:
                c.update(dtype="float32", time_major=False) if "units" in c else None
            nodes = []
            for node in layer.get("inbound_nodes", []):
                args = node["args"][0] if isinstance(node["args"][0], list) else node["args"]
                hist = [a["config"]["keras_history"] for a in args]
                nodes.append([[h[0], h[1], h[2], {}] for h in hist])
            layer["inbound_nodes"] = nodes
        f.attrs["model_config"] = json.dumps(cfg)
        f.attrs["keras_version"] = "2.15.0"
        for name in f["model_weights"]:
            g = f["model_weights"][name]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs["weight_names"]]
            for n in names:
                g.move(n, n + ":0")
            g.attrs["weight_names"] = [(n + ":0").encode() for n in names]


def test_keras2_style_h5(tmp_path):
    inp = keras.Input((None, 4))
    x = L.LSTM(5, return_sequences=True)(inp)
    out = L.Dense(2)(L.Concatenate()([x, L.Dense(3)(inp)]))
    model = randomize(keras.Model(inp, out), seed=1)
    model.save(tmp_path / "k3.h5")
    _keras2_style(str(tmp_path / "k3.h5"), str(tmp_path / "k2.h5"))
    convert_keras(tmp_path / "k2.h5", tmp_path / "k2.lstm", verify=False)
    check(model, lstm_infer.load(tmp_path / "k2.lstm"), (4,))


def test_hard_sigmoid_follows_the_files_keras_version(tmp_path):
    """Keras 3: clip(x/6 + 0.5); Keras 2: clip(0.2x + 0.5) (see layers/activations.py)."""
    model = _model(rec="hard_sigmoid")
    model.save(tmp_path / "k3.h5")
    _keras2_style(str(tmp_path / "k3.h5"), str(tmp_path / "k2.h5"))
    for name, alpha in (("k3", 1 / 6), ("k2", 0.2)):
        convert_keras(tmp_path / f"{name}.h5", tmp_path / f"{name}.lstm", verify=False)
        node = next(n for n in lstm_infer.load(tmp_path / f"{name}.lstm").graph.nodes
                    if n.op == "LSTM")
        gate = node.attrs["activations"][0]
        assert gate["kind"] == "hard_sigmoid"
        assert gate["alpha"] == pytest.approx(alpha) and gate["beta"] == 0.5
    check(model, lstm_infer.load(tmp_path / "k3.lstm"), (4,))


def test_convert_file_verify_file_and_cli(tmp_path):
    model = _model(seed=2)
    src = tmp_path / "m.keras"
    model.save(src)
    r = convert_file(src, tmp_path / "a.lstm", dtype="fp16")
    assert r.verify.ok and any("fp16" in w for w in r.warnings)
    rep = verify_file(tmp_path / "a.lstm", src)
    assert 0 < rep.max_abs_error < 1e-2            # fp16 weights: close, not exact
    res = CliRunner().invoke(cli, ["convert", str(src), "-o", str(tmp_path / "b.lstm")])
    assert res.exit_code == 0, res.output
    assert "max abs error" in res.output and "ok at" in res.output
    assert (tmp_path / "b.lstm").exists()


@pytest.fixture
def wrong_weight(monkeypatch):
    """A converter bug: the recurrent matrix of every Keras recurrent layer perturbed."""
    real = keras_recurrent.keras_recurrent_weights

    def bad(*a, **kw):
        w = real(*a, **kw)
        w["W_hh"] = w["W_hh"] + 0.05
        return w
    monkeypatch.setattr(keras_recurrent, "keras_recurrent_weights", bad)


def test_verifier_catches_a_wrong_conversion(tmp_path, wrong_weight):
    model = _model(seed=3)
    src = tmp_path / "m.keras"
    model.save(src)
    out = tmp_path / "m.lstm"
    with pytest.raises(VerificationError, match="above the tolerance.*was not written") as e:
        convert_keras(src, out)
    assert not out.exists() and e.value.report.verify.max_abs_error > 1e-3
    res = CliRunner().invoke(cli, ["convert", str(src), "-o", str(out)])
    assert res.exit_code == 1 and not out.exists()
    convert_keras(src, out, verify=False)             # verify=False writes it anyway
    assert not verify_file(out, src).ok


def test_verification_without_keras_is_a_clear_error(tmp_path, monkeypatch):
    model = _model(seed=4)
    src = tmp_path / "m.keras"
    model.save(src)
    monkeypatch.setitem(sys.modules, "keras", None)   # `import keras` raises ImportError
    with pytest.raises(ConversionError, match=r"needs keras installed.*pip install keras.*"
                                              r"verify=False"):
        convert_keras(src, tmp_path / "m.lstm")
    assert not (tmp_path / "m.lstm").exists()
    convert_keras(src, tmp_path / "m.lstm", verify=False)   # h5py + json only
    assert lstm_infer.load(tmp_path / "m.lstm").output_size == 2


def _convert_error(tmp_path, model, exc=ConversionError):
    model.save(tmp_path / "bad.keras")
    with pytest.raises(exc) as e:
        convert_keras(tmp_path / "bad.keras", tmp_path / "bad.lstm", verify=False)
    return str(e.value)


def test_unsupported_layer_names_layer_class_and_supported(tmp_path):
    # (GlobalAveragePooling1D, the layer this test used first, converts since the pooling work)
    model = keras.Sequential([keras.Input((None, 4)), L.LSTM(3, return_sequences=True),
                              L.UnitNormalization(name="unorm")])
    msg = _convert_error(tmp_path, model, UnsupportedOpError)
    assert "'unorm'" in msg and "UnitNormalization" in msg
    assert "Supported layers:" in msg and "Bidirectional" in msg


@pytest.mark.parametrize("layer,fragment", [
    (lambda: L.LSTM(3, go_backwards=True, return_sequences=True, name="rev"),
     "reversed time order"),
    (lambda: L.Conv1D(3, 3, padding="same", name="conv"), "looks ahead in time"),
    (lambda: L.Conv1D(3, 1, strides=2, name="conv"), "stride"),
    (lambda: L.LSTM(3, activation="mish", name="cell"), "activation='mish'"),
    (lambda: L.LayerNormalization(rms_scaling=True, name="ln"), "rms_scaling"),
    (lambda: L.Flatten(name="flat"), "merges time into the features"),
])
def test_unsupported_options_are_named(tmp_path, layer, fragment):
    lay = layer()
    model = keras.Sequential([keras.Input((None, 4)), lay])
    msg = _convert_error(tmp_path, model)
    assert f"'{lay.name}'" in msg and type(lay).__name__ in msg and fragment in msg, msg


def test_not_a_keras_file(tmp_path):
    p = tmp_path / "x.keras"
    p.write_bytes(b"not a model")
    with pytest.raises(ConversionError, match="neither a Keras 3 .keras zip nor an HDF5"):
        convert_keras(p, tmp_path / "x.lstm", verify=False)
    model = _model(seed=5)
    model.save_weights(tmp_path / "w.weights.h5")
    shutil.copy(tmp_path / "w.weights.h5", tmp_path / "w.h5")
    with pytest.raises(ConversionError, match="weights-only"):
        convert_keras(tmp_path / "w.h5", tmp_path / "w.lstm", verify=False)


def test_provenance_and_summary(tmp_path):
    model = _model(seed=6)
    _, m, report = save_and_convert(model, tmp_path)
    prov = m.provenance
    assert prov["converter"] == "lstm-infer keras importer"
    assert prov["keras_version"] == keras.__version__
    label = model.layers[-1].name
    assert prov["keras_outputs"] == [{"index": 0, "label": label, "kind": "seq"}]
    assert "LSTM" in report.summary and "GRU" in report.summary
    X = np.zeros((1, 3, 4), np.float32)
    assert m.run(X).shape == (1, 3, 2)


@pytest.mark.parametrize("build", [
    lambda: keras.Sequential([keras.Input((None,)), L.Embedding(30, 6, mask_zero=True),
                              L.GRU(5), L.Dense(2)]),
    lambda: keras.Sequential([keras.Input((None, 3)), L.Conv1D(4, 3, padding="causal"),
                              L.SimpleRNN(5), L.Dense(2, activation="softmax")]),
    lambda: keras.Sequential([keras.Input((None, 3)), L.Bidirectional(L.LSTM(4)), L.Dense(2)]),
    lambda: keras.Sequential([keras.Input((None, 2, 3)), L.TimeDistributed(L.Flatten()),
                              L.LSTM(4, return_sequences=True)]),
], ids=["embedding-mask_zero", "causal-conv-last-step", "bidirectional-last-step", "frames"])
def test_verifier_agrees_on_varied_models(tmp_path, build):
    """The built-in verification (Keras on the same inputs: token ids, prefixes of
    last-step outputs, whole-sequence-only files, multi-dimensional frames) passes."""
    model = randomize(build(), seed=7)
    model.save(tmp_path / "m.keras")
    r = convert_keras(tmp_path / "m.keras", tmp_path / "m.lstm")
    assert r.verify.ok and r.verify.max_abs_error < 1e-5, str(r.verify)
    assert r.verify.run_max_abs
