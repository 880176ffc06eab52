"""PyTorch importer: nn.LSTM/GRU/RNN models and per-step layers agree with torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import lstm_infer
from converters import ConversionError, convert_torch
from torch_models import (TOL, RecurrentHead, WithActivation, check_seq, convert, err, rand,
                          stream_rows, to_torch)

torch.manual_seed(0)

# (I, H): hidden 1, sizes that are not multiples of 4 or 8, and a larger one.
SIZES = [(1, 1), (3, 5), (7, 13), (16, 9)]

LSTM_CASES = [
    dict(),
    dict(batch_first=True),
    dict(num_layers=2),
    dict(num_layers=3, batch_first=True),
    dict(bidirectional=True),
    dict(bidirectional=True, num_layers=2, batch_first=True),
    dict(proj_size=2),
    dict(proj_size=3, num_layers=2, bidirectional=True),
    dict(bias=False),
    dict(bias=False, proj_size=1, batch_first=True),
    dict(num_layers=3, dropout=0.5),
]


def _layout(kw):
    return "BTF" if kw.get("batch_first") else "TBF"


@pytest.mark.parametrize("I,H", SIZES)
@pytest.mark.parametrize("kw", LSTM_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "plain")
def test_lstm(tmp_path, I, H, kw):
    if kw.get("proj_size", 0) >= H:
        pytest.skip("proj_size must be smaller than hidden_size")
    torch.manual_seed(I * 31 + H)
    model = RecurrentHead("lstm", I, H, **kw)
    stream = not kw.get("bidirectional")
    e = check_seq(model, tmp_path, I, layout=_layout(kw), stream=stream)
    assert e <= TOL


GRU_RNN_CASES = [
    ("gru", dict()),
    ("gru", dict(batch_first=True, num_layers=2)),
    ("gru", dict(bidirectional=True, num_layers=3)),
    ("gru", dict(bias=False, batch_first=True)),
    ("rnn", dict()),
    ("rnn", dict(nonlinearity="relu", batch_first=True)),
    ("rnn", dict(nonlinearity="relu", num_layers=3, bidirectional=True)),
    ("rnn", dict(bias=False, num_layers=2)),
]


@pytest.mark.parametrize("I,H", SIZES)
@pytest.mark.parametrize("kind,kw", GRU_RNN_CASES,
                         ids=lambda c: c if isinstance(c, str) else "-".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_gru_rnn(tmp_path, kind, kw, I, H):
    torch.manual_seed(I * 7 + H)
    model = RecurrentHead(kind, I, H, **kw)
    e = check_seq(model, tmp_path, I, layout=_layout(kw), stream=not kw.get("bidirectional"))
    assert e <= TOL


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_bare_module_drops_final_states(tmp_path, kind):
    """A bare nn.LSTM returns (out, (h_n, c_n)): out is converted, the states dropped."""
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
    model = cls(4, 6, num_layers=2).eval()
    m, report = convert(model, tmp_path, torch.randn(5, 2, 4))
    assert len(m.output_names) == 1 and m.output_size == 6
    assert sum("dropped" in w for w in report.warnings) == (2 if kind == "lstm" else 1)
    e = check_seq(model, tmp_path, 4, layout="TBF", pick=lambda y: y[0])
    assert e <= TOL


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_unbatched_input(tmp_path, kind, batch_first):
    """A model fed (T, I) without a batch axis; run() takes (T, I) too."""
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
    model = cls(3, 5, batch_first=batch_first, bidirectional=not batch_first)
    e = check_seq(model, tmp_path, 3, layout="TF", pick=lambda y: y[0], stream=batch_first)
    assert e <= TOL


ACTIVATIONS = [
    nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.GELU(), nn.GELU(approximate="tanh"),
    nn.LeakyReLU(), nn.LeakyReLU(0.2), nn.ELU(), nn.ELU(alpha=0.5), nn.Softplus(),
    nn.Softmax(dim=-1), nn.LogSoftmax(dim=2), nn.Identity(), nn.Dropout(0.3), nn.SiLU(),
    nn.LayerNorm(6), nn.LayerNorm(6, elementwise_affine=False), nn.LayerNorm(6, eps=1e-3, bias=False),
    nn.ReLU(inplace=True),
]


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: repr(a))
def test_activation_between_layers(tmp_path, act):
    torch.manual_seed(1)
    model = WithActivation(act)
    if isinstance(act, nn.LayerNorm) and act.weight is not None:
        with torch.no_grad():  # non-trivial affine parameters
            act.weight.uniform_(0.5, 1.5)
            if act.bias is not None:
                act.bias.uniform_(-0.5, 0.5)
    e = check_seq(model, tmp_path, 4, lengths=(1, 203))
    assert e <= TOL


def test_sequential_per_step_model(tmp_path):
    """An nn.Sequential without recurrence is a per-step model too."""
    model = nn.Sequential(nn.Linear(3, 8), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 2), nn.Softmax(-1))
    assert check_seq(model, tmp_path, 3) <= TOL


class Residual(nn.Module):
    """Residual add, element-wise products, constants, feature concat and slices."""

    def __init__(self, F=5):
        super().__init__()
        self.lstm = nn.LSTM(F, F, batch_first=True)
        self.gru = nn.GRU(F, F, batch_first=True)
        self.ln = nn.LayerNorm(F)
        self.scale = nn.Parameter(torch.rand(F) + 0.5)
        self.fc = nn.Linear(2 * F + 2, 3)

    def forward(self, x):
        o, _ = self.lstm(x)
        o = o + x                                 # residual
        p, _ = self.gru(o)
        q = p * o - 0.5 * o + 1.0                 # products and constants
        q = self.ln(q) / 2 * self.scale - p
        feats = torch.cat([q, torch.sigmoid(p), o[..., 1:3]], dim=-1)  # concat + feature slice
        return self.fc(-feats)


def test_residual_mul_cat(tmp_path):
    torch.manual_seed(2)
    assert check_seq(Residual(), tmp_path, 5) <= TOL


class TimeMajorInside(nn.Module):
    """Takes (B, T, I), transposes for a time-major LSTM, returns (B, T, O) and a squeezed
    single output (T, B) -> feature axis squeezed."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, num_layers=2)
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        out, _ = self.lstm(x.transpose(0, 1))
        return torch.sigmoid(self.fc(out)).squeeze(-1).transpose(0, 1)


def test_transposes_and_squeezed_feature(tmp_path):
    assert check_seq(TimeMajorInside(), tmp_path, 3) <= TOL


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)
        self.a = nn.Linear(5, 2)
        self.b = nn.Linear(5, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.a(out), torch.tanh(self.b(out))


def test_two_outputs_dict(tmp_path):
    model = TwoOutputs().eval()
    m, _ = convert(model, tmp_path, torch.randn(2, 6, 3))
    assert len(m.output_names) == 2
    X = rand(2, 40, 3)
    with torch.no_grad():
        ya, yb = model(torch.from_numpy(X))
    got = m.run(X)
    assert isinstance(got, dict) and list(got) == m.output_names
    a, b = (got[n] for n in m.output_names)
    assert err(a, ya.numpy()) <= TOL and err(b, yb.numpy()) <= TOL
    s = m.stream()
    ys = s.step_many(X[0])
    assert err(ys[m.output_names[1]], yb[0].numpy()) <= TOL
    # `outputs=` keeps a subset
    m2, _ = convert(model, tmp_path, torch.randn(2, 6, 3), name="one.lstm", outputs=[1])
    assert m2.output_size == 4 and err(m2.run(X), yb.numpy()) <= TOL


class ConstInit(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True)
        self.h0 = nn.Parameter(torch.randn(2, 1, 4) * 0.5)
        self.c0 = nn.Parameter(torch.randn(2, 1, 4) * 0.5)

    def forward(self, x):
        B = x.shape[0]
        h0 = self.h0.expand(-1, B, -1).contiguous()
        c0 = self.c0.expand(-1, B, -1).contiguous()
        return self.lstm(x, (h0, c0))[0]


def test_constant_initial_state(tmp_path):
    model = ConstInit()
    assert check_seq(model, tmp_path, 3) <= TOL
    m = lstm_infer.load(tmp_path / "m.lstm")
    st = m.stream().get_state()
    np.testing.assert_allclose(st["lstm.l0.h"], model.h0[0, 0].detach().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(st["lstm.l1.c"], model.c0[1, 0].detach().numpy(), rtol=0, atol=0)


def test_zero_initial_state_and_weight_layout(tmp_path):
    """An explicit zeros state; stored weights are PyTorch's transposed, LSTM biases summed."""
    class Z(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4, batch_first=True)

        def forward(self, x):
            z = torch.zeros(1, x.size(0), 4)
            return self.lstm(x, (z, z))[0]

    model = Z()
    assert check_seq(model, tmp_path, 3) <= TOL
    node = lstm_infer.load(tmp_path / "m.lstm").graph.nodes[0]
    assert "h0" not in node.weights and "c0" not in node.weights
    np.testing.assert_array_equal(node.weights["W_ih"], model.lstm.weight_ih_l0.detach().numpy().T)
    np.testing.assert_array_equal(node.weights["W_hh"], model.lstm.weight_hh_l0.detach().numpy().T)
    np.testing.assert_allclose(node.weights["bias"], (model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0)
                               .detach().numpy(), atol=0)


def test_gru_keeps_both_biases(tmp_path):
    model = nn.GRU(3, 4)
    m, _ = convert(model, tmp_path, torch.randn(5, 2, 3))
    node = m.graph.nodes[0]
    assert node.attrs["linear_before_reset"] is True
    np.testing.assert_array_equal(node.weights["b_ih"], model.bias_ih_l0.detach().numpy())
    np.testing.assert_array_equal(node.weights["b_hh"], model.bias_hh_l0.detach().numpy())


def test_bidirectional_is_concat_and_not_streamable(tmp_path):
    m, report = convert(nn.LSTM(3, 4, bidirectional=True, num_layers=2), tmp_path, torch.randn(5, 2, 3))
    ops = [(n.op, n.attrs.get("reverse")) for n in m.graph.nodes]
    assert ops == [("LSTM", False), ("LSTM", True), ("Concat", None),
                   ("LSTM", False), ("LSTM", True), ("Concat", None)]
    assert not m.streamable
    with pytest.raises(lstm_infer.NotStreamableError):
        m.stream()


def test_verify_report_and_summary(tmp_path):
    torch.manual_seed(3)
    model = RecurrentHead("lstm", 4, 7, batch_first=True, num_layers=2)
    path = tmp_path / "v.lstm"
    report = convert_torch(model, path, example_input=torch.randn(3, 8, 4))
    assert report.summary == str(lstm_infer.load(path))
    v = report.verify
    assert v is not None and v.streamed and v.ok
    names = lstm_infer.load(path).output_names
    assert len(names) == 1 and set(v.run_max_abs) == set(names) == set(v.stream_max_abs)
    assert 0 <= v.max_abs_error <= TOL
    assert "max abs error" in str(report)


def test_verify_catches_a_wrong_file(tmp_path):
    """verify_against compares with torch for real: another model's file fails."""
    from converters.torch_import.api import export_program as _export
    from converters.torch_import.emit import analyse as _analyse
    from converters.torch_verify import verify_against
    a, b = RecurrentHead("gru", 3, 4, batch_first=True), RecurrentHead("gru", 3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    convert_torch(b, tmp_path / "b.lstm", example_input=x, verify=False)
    spec = _analyse(_export(a.eval(), x), {}).spec
    rep = verify_against(str(tmp_path / "b.lstm"), a, spec, x)
    assert not rep.ok and rep.max_abs_error > 1e-3


def test_default_example_input(tmp_path):
    model = RecurrentHead("gru", 5, 3, batch_first=False)
    report = convert_torch(model, tmp_path / "d.lstm")
    assert report.verify.ok and lstm_infer.load(tmp_path / "d.lstm").input_size == 5


def test_exported_program_input(tmp_path):
    model = RecurrentHead("lstm", 3, 4, batch_first=True).eval()
    ep = torch.export.export(model, (torch.randn(2, 6, 3),))
    report = convert_torch(ep, tmp_path / "e.lstm")
    assert report.verify.ok and report.verify.max_abs_error <= TOL
    X = rand(2, 6, 3)
    with torch.no_grad():
        want = model(torch.from_numpy(X)).numpy()
    assert err(lstm_infer.load(tmp_path / "e.lstm").run(X), want) <= TOL


def test_long_sequence_streams_equal_run(tmp_path):
    model = RecurrentHead("lstm", 2, 3, batch_first=True, num_layers=2).eval()
    m, _ = convert(model, tmp_path, torch.randn(1, 4, 2))
    X = rand(1, 517, 2, seed=5)
    y = m.run(X)[0]
    assert err(stream_rows(m, X[0]), y) <= 1e-6
    with torch.no_grad():
        assert err(y, model(to_torch(X, "BTF"))[0].numpy()) <= TOL


def test_unknown_dtype_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of"):
        convert_torch(nn.LSTM(2, 2), tmp_path / "x.lstm", torch.randn(3, 1, 2), dtype="bf16")
    assert not (tmp_path / "x.lstm").exists()


def test_model_mode_restored(tmp_path):
    model = RecurrentHead("lstm", 2, 3, dropout=0.0).train()
    convert_torch(model, tmp_path / "x.lstm", torch.randn(3, 2, 2), verify=False)
    assert model.training


# ---- unsupported ---------------------------------------------------------------------
class WithConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 3, 3, padding=1)
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x):
        return self.lstm(self.conv(x.transpose(1, 2)).transpose(1, 2))[0]


class CumsumOverTime(nn.Module):
    """(mean over time converts since issue 12: tests/test_torch_attention.py)"""
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0].cumsum(dim=1)


class StateInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x, h):
        return self.lstm(x, (h, h))[0]


class BidirectionalHn(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True, bidirectional=True)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return torch.cat([h[-2], h[-1]], dim=1)


class CellStateOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[1][1][-1]


class Embed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.BatchNorm1d(3)
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x):
        return self.lstm(self.emb(x.transpose(1, 2)).transpose(1, 2))[0]


@pytest.mark.parametrize("model,match", [
    (WithConv(), r"aten\.conv1d.*module 'conv' \(torch\.nn\.modules\.conv\.Conv1d\).*Supported modules: nn\.LSTM"),
    (Embed(), r"module 'emb' \(torch\.nn\.modules\.batchnorm\.BatchNorm1d\)"),
    (CumsumOverTime(), r"aten\.cumsum"),
    (BidirectionalHn(), r"different time steps.*reverse-direction"),
    (CellStateOut(), r"cell state c_n"),
])
def test_unsupported_names_the_op(tmp_path, model, match):
    with pytest.raises(ConversionError, match=match):
        convert_torch(model, tmp_path / "x.lstm", torch.randn(2, 5, 3))


def test_state_as_input_is_rejected(tmp_path):
    ep = torch.export.export(StateInput().eval(), (torch.randn(2, 5, 3), torch.zeros(1, 2, 4)))
    with pytest.raises(ConversionError, match="initial state passed as a model input is not supported"):
        convert_torch(ep, tmp_path / "x.lstm", example_input=torch.randn(2, 5, 3))


class ConstantMath(nn.Module):
    """x @ W + b with a parameter matrix, 1 - (.), division by a constant, negation."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)
        self.W = nn.Parameter(torch.randn(4, 2))
        self.b = nn.Parameter(torch.randn(2))

    def forward(self, x):
        o = self.gru(x)[0]
        return 1 - (o @ self.W + self.b) / 3.0, -o.sigmoid()


@pytest.mark.parametrize("which", [0, 1])
def test_constant_math(tmp_path, which):
    e = check_seq(ConstantMath(), tmp_path, 3, pick=lambda y: y[which], outputs=[which])
    assert e <= TOL
