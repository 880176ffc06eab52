"""PyTorch importer: .pt2 files (torch.export.save) and state_dict files round-trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import lstm_infer
from converters import ConversionError, convert_file, verify_file
from converters.torch_import import convert_torch_file, verify_torch_file
from torch_models import TOL, CellLoop, LastStep, RecurrentHead, err, rand, stream_rows, to_torch

torch.manual_seed(0)


# ---- .pt2 ------------------------------------------------------------------------------
@pytest.mark.parametrize("model,shape,layout", [
    (RecurrentHead("lstm", 3, 5, batch_first=True, num_layers=2), (2, 6, 3), "BTF"),
    (RecurrentHead("gru", 4, 3, bidirectional=True), (6, 2, 4), "TBF"),
    (CellLoop("lstm", 3, 4, layers=2), (2, 5, 3), "BTF"),
])
def test_pt2_roundtrip(tmp_path, model, shape, layout):
    model = model.eval()
    ep = torch.export.export(model, (torch.randn(*shape),))
    src = tmp_path / "model.pt2"
    torch.export.save(ep, src)
    report = convert_torch_file(src, tmp_path / "m.lstm")
    assert report.verify.ok and report.verify.max_abs_error <= TOL
    m = lstm_infer.load(tmp_path / "m.lstm")
    assert m.provenance["source"] == "model.pt2" and m.provenance["source_sha256"]
    B = shape[0] if layout == "BTF" else shape[1]
    T = shape[1] if layout == "BTF" else shape[0]
    X = rand(B, T, shape[2], seed=3)
    with torch.no_grad():
        want = model(to_torch(X, layout))
    want = want.numpy() if layout == "BTF" else want.transpose(0, 1).numpy()
    assert err(m.run(X), want) <= TOL
    # the CLI's entry points dispatch on the suffix
    rep2 = convert_file(src, tmp_path / "m2.lstm", verify=False)
    assert rep2.verify is None
    v = verify_file(tmp_path / "m2.lstm", src, inputs=X)
    assert v.ok and v.max_abs_error <= TOL


def test_pt2_dynamic_batch(tmp_path):
    """A program exported with a dynamic batch axis (sym sizes in zeros(...))."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4, batch_first=True)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            h0 = torch.zeros(1, x.size(0), 4)
            return self.fc(self.lstm(x, (h0, h0))[0])

    model = M().eval()
    ep = torch.export.export(model, (torch.randn(2, 7, 3),),
                             dynamic_shapes=({0: torch.export.Dim("B", min=1, max=64)},))
    torch.export.save(ep, tmp_path / "d.pt2")
    report = convert_torch_file(tmp_path / "d.pt2", tmp_path / "d.lstm", batch_size=3)
    assert report.verify.ok
    X = rand(5, 7, 3)
    with torch.no_grad():
        assert err(lstm_infer.load(tmp_path / "d.lstm").run(X), model(torch.from_numpy(X)).numpy()) <= TOL


def test_pt2_last_step_and_verify_given_input(tmp_path):
    model = LastStep("hn", "gru", I=3, H=4).eval()
    ep = torch.export.export(model, (torch.randn(2, 6, 3),))
    torch.export.save(ep, tmp_path / "l.pt2")
    convert_torch_file(tmp_path / "l.pt2", tmp_path / "l.lstm", verify=False)
    X = rand(2, 6, 3, seed=4)
    v = verify_torch_file(tmp_path / "l.lstm", tmp_path / "l.pt2", inputs=X)
    assert v.ok and v.max_abs_error <= TOL
    with torch.no_grad():
        want = model(torch.from_numpy(X)).numpy()
    assert err(lstm_infer.load(tmp_path / "l.lstm").run(X)[:, -1], want) <= TOL
    with pytest.raises(ValueError, match="rejected the given input"):
        verify_torch_file(tmp_path / "l.lstm", tmp_path / "l.pt2", inputs=rand(2, 9, 3))


def test_pt2_decomposed_program_is_rejected(tmp_path):
    ep = torch.export.export(nn.LSTM(3, 4).eval(), (torch.randn(5, 2, 3),)).run_decompositions()
    torch.export.save(ep, tmp_path / "dec.pt2")
    with pytest.raises(ConversionError, match="decomposed"):
        convert_torch_file(tmp_path / "dec.pt2", tmp_path / "x.lstm")


# ---- state_dict ------------------------------------------------------------------------
class Stack(nn.Module):
    """Recurrent layers + Linear/LayerNorm with no activations: what a state_dict describes."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):  # (B, T, I)
        for layer in self.layers:
            if isinstance(layer, nn.RNNBase):
                x = layer(x)[0]
            elif isinstance(layer, nn.RNNCellBase):
                outs, h = [], None
                for t in range(x.shape[1]):
                    h = layer(x[:, t], h)
                    outs.append(h[0] if isinstance(h, tuple) else h)
                x = torch.stack(outs, 1)
            else:
                x = layer(x)
        return x


STACKS = {
    "lstm_fc": lambda: [nn.LSTM(3, 5, batch_first=True), nn.Linear(5, 2)],
    "lstm3_bi_proj": lambda: [nn.LSTM(3, 7, num_layers=3, bidirectional=True, proj_size=2,
                                      batch_first=True), nn.LayerNorm(4), nn.Linear(4, 1)],
    "gru_nobias": lambda: [nn.GRU(2, 1, bias=False, batch_first=True, num_layers=2), nn.Linear(1, 3, bias=False)],
    "rnn_relu": lambda: [nn.RNN(4, 6, nonlinearity="relu", batch_first=True), nn.Linear(6, 6),
                         nn.LayerNorm(6, bias=False)],
    "cells": lambda: [nn.LSTMCell(3, 4), nn.GRUCell(4, 5), nn.RNNCell(5, 2)],
    "linear_first": lambda: [nn.Linear(3, 6), nn.GRU(6, 3, batch_first=True)],
}


@pytest.mark.parametrize("name", list(STACKS))
@pytest.mark.parametrize("wrap", [False, True])
def test_state_dict_roundtrip(tmp_path, name, wrap):
    torch.manual_seed(len(name))
    model = Stack(STACKS[name]()).eval()
    I = next(iter(model.parameters())).shape[-1]
    src = tmp_path / "weights.pt"
    sd = model.state_dict()
    torch.save({"state_dict": sd, "epoch": 3} if wrap else sd, src)
    opts = {"rnn_nonlinearity": "relu"} if name == "rnn_relu" else {}
    report = convert_torch_file(src, tmp_path / "s.lstm", **opts)
    assert any("no activation functions" in w for w in report.warnings)
    assert report.verify.ok and report.verify.max_abs_error <= TOL
    m = lstm_infer.load(tmp_path / "s.lstm")
    assert m.provenance["source"] == "weights.pt"
    X = rand(2, 203, I, seed=1)
    with torch.no_grad():
        want = model(torch.from_numpy(X)).numpy()
    got = m.run(X)
    assert err(got, want) <= TOL
    if m.streamable:
        assert err(stream_rows(m, X[1]), want[1]) <= TOL
    v = verify_torch_file(tmp_path / "s.lstm", src, inputs=X[0], **opts)
    assert v.ok and v.max_abs_error <= TOL


def test_state_dict_rnn_nonlinearity_matters(tmp_path):
    model = Stack([nn.RNN(3, 4, nonlinearity="relu", batch_first=True)]).eval()
    torch.save(model.state_dict(), tmp_path / "r.pt")
    bad = convert_torch_file(tmp_path / "r.pt", tmp_path / "t.lstm", verify=False)  # tanh assumed
    assert [n.attrs["nonlinearity"] for n in lstm_infer.load(tmp_path / "t.lstm").graph.nodes] == ["tanh"]
    assert bad.verify is None
    convert_torch_file(tmp_path / "r.pt", tmp_path / "r.lstm", rnn_nonlinearity="relu", verify=False)
    X = rand(1, 20, 3)
    with torch.no_grad():
        want = model(torch.from_numpy(X)).numpy()
    assert err(lstm_infer.load(tmp_path / "r.lstm").run(X), want) <= TOL
    assert err(lstm_infer.load(tmp_path / "t.lstm").run(X), want) > 1e-3


@pytest.mark.parametrize("sd,match", [
    ({"bn.weight": torch.ones(3), "bn.bias": torch.zeros(3), "bn.running_mean": torch.zeros(3)},
     "bn.running_mean"),
    ({"emb.weight": torch.ones(3, 4, 5)}, "emb.weight"),
    ({"lstm.weight_ih_l0": torch.ones(8, 3), "lstm.weight_hh_l0": torch.ones(8, 2),
      "lstm.foo_l0": torch.ones(8)}, "lstm.foo_l0"),
    ({"rnn.weight_ih_l0": torch.ones(10, 3), "rnn.weight_hh_l0": torch.ones(10, 5)}, "2 gate blocks"),
    ({"a.weight": torch.ones(4, 3), "b.weight": torch.ones(2, 5)}, "takes 5 features"),
])
def test_state_dict_errors_name_the_key(tmp_path, sd, match):
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ConversionError, match=match):
        convert_torch_file(tmp_path / "bad.pt", tmp_path / "x.lstm")


def test_pickled_module_is_not_loaded(tmp_path):
    torch.save(nn.LSTM(2, 2), tmp_path / "module.pt")
    with pytest.raises(ConversionError, match="weights_only"):
        convert_torch_file(tmp_path / "module.pt", tmp_path / "x.lstm")


def test_state_dict_weight_layout(tmp_path):
    lstm = nn.LSTM(3, 4, proj_size=2)
    torch.save(lstm.state_dict(), tmp_path / "p.pt")
    convert_torch_file(tmp_path / "p.pt", tmp_path / "p.lstm", verify=False)
    node = lstm_infer.load(tmp_path / "p.lstm").graph.nodes[0]
    assert node.attrs == {"input_size": 3, "hidden_size": 4, "reverse": False, "proj_size": 2}
    np.testing.assert_array_equal(node.weights["W_hr"], lstm.weight_hr_l0.detach().numpy().T)
    np.testing.assert_array_equal(node.weights["W_hh"], lstm.weight_hh_l0.detach().numpy().T)
