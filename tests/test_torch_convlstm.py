"""PyTorch ConvLSTM cell loops (Conv2d over cat([x, h]) split into gates, looped over the
frames in forward) -> ConvLSTM nodes, checked against torch with random weights: run()
on whole batches, step() on shaped (C, H, W) frames, chunked step_many == whole, 1 and 2
layers, gate orders i,f,o,g / i,f,g,o / f,i,o,g with split or chunk, batch_first or not,
heads after the cell (per-frame 1x1 conv, flatten + Linear on the last frame). Max abs
error bound 1e-5 on unit-scale inputs (float32 convolutions summed in another order)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from convlstm_torch_models import ConvLSTM, ConvLSTMCell, FrameHead, LastStepClassifier, SequenceOnly  # noqa: E402

import lstm_infer  # noqa: E402
from converters import ConversionError  # noqa: E402
from converters.torch_import import convert_torch  # noqa: E402

TOL = 1e-5


def _convert(module, shape, tmp_path, name="m.lstm"):
    torch.manual_seed(1)
    path = tmp_path / name
    report = convert_torch(module, path, torch.randn(*shape))
    assert report.verify.ok and report.verify.max_abs_error < TOL, str(report.verify)
    return lstm_infer.load(path), report


def _torch(module, X):
    with torch.no_grad():
        return module(torch.from_numpy(X))


def _check_stream(m, X, want):
    """X (T, C, H, W); want (T, n): step() on shaped frames, then step_many in chunks."""
    T = X.shape[0]
    s = m.stream()
    got = [np.asarray(s.step(X[0])).reshape(1, -1)]
    t = 1
    for n in (2, 1, 3, 4):
        if t >= T:
            break
        got.append(np.asarray(s.step_many(X[t:t + n])).reshape(min(n, T - t), -1))
        t += n
    got = np.concatenate(got)
    assert np.abs(got - want[:len(got)]).max() < TOL
    whole = np.asarray(m.stream().step_many(X)).reshape(T, -1)
    np.testing.assert_array_equal(whole[:len(got)], got)


@pytest.mark.parametrize("order,chunk", [("ifog", False), ("ifgo", True), ("fiog", False)])
def test_one_layer_sequence(tmp_path, order, chunk):
    torch.manual_seed(0)
    mod = SequenceOnly(2, [3], kernel_size=(3, 3), order=order, use_chunk=chunk).eval()
    m, _ = _convert(mod, (2, 3, 2, 5, 6), tmp_path)
    assert m.input_shape == (2, 5, 6)
    assert [n.op for n in m.graph.nodes].count("ConvLSTM") == 1
    X = np.random.default_rng(0).uniform(-1, 1, (2, 7, 2, 5, 6)).astype(np.float32)
    want = _torch(mod, X).numpy().reshape(2, 7, -1)
    got = np.asarray(m.run(X.reshape(2, 7, -1))).reshape(2, 7, -1)
    assert np.abs(got - want).max() < TOL
    _check_stream(m, X[1], want[1])


def test_two_layers_head_per_frame(tmp_path):
    torch.manual_seed(0)
    mod = FrameHead(1, [4, 3], out_channels=2, kernel_size=(5, 3)).eval()
    m, _ = _convert(mod, (2, 3, 1, 6, 5), tmp_path)
    assert [n.op for n in m.graph.nodes].count("ConvLSTM") == 2
    X = np.random.default_rng(1).uniform(-1, 1, (2, 9, 1, 6, 5)).astype(np.float32)
    want = _torch(mod, X).numpy().reshape(2, 9, -1)
    assert np.abs(np.asarray(m.run(X.reshape(2, 9, -1))).reshape(2, 9, -1) - want).max() < TOL
    _check_stream(m, X[0], want[0])


def test_last_step_classifier_and_time_major(tmp_path):
    torch.manual_seed(0)
    mod = LastStepClassifier(2, [3, 2], (4, 5), classes=3).eval()
    m, _ = _convert(mod, (2, 4, 2, 4, 5), tmp_path)
    X = np.random.default_rng(2).uniform(-1, 1, (1, 6, 2, 4, 5)).astype(np.float32)
    y = np.asarray(m.run(X.reshape(1, 6, -1))).reshape(6, -1)
    for t in (0, 3, 5):  # row t = the classifier on the first t+1 frames
        assert np.abs(y[t] - _torch(mod, X[:, :t + 1]).numpy()[0]).max() < TOL
    tm = ConvLSTM(1, [3], batch_first=False).eval()
    m2, report = _convert(tm, (4, 2, 1, 5, 5), tmp_path, "tm.lstm")
    assert any("cell state c of a ConvLSTM cell: dropped" in w for w in report.warnings)
    Xt = np.random.default_rng(3).uniform(-1, 1, (5, 1, 1, 5, 5)).astype(np.float32)
    seq, h_last = _torch(tm, Xt)[0][0], _torch(tm, Xt)[1][0][0]
    out = m2.run(Xt[:, 0].reshape(5, -1))
    assert np.abs(np.asarray(out["output0"]).reshape(5, -1) - seq.numpy()[0].reshape(5, -1)).max() < TOL
    assert np.abs(np.asarray(out["output1"]).reshape(5, -1)[-1] - h_last.numpy().reshape(-1)).max() < TOL


class _Peephole(ConvLSTMCell):
    def __init__(self):
        super().__init__(1, 2)
        self.w_ci = torch.nn.Parameter(torch.randn(1, 2, 4, 4))

    def forward(self, x, state):
        h, c = state
        zi, zf, zo, zg = torch.split(self.conv(torch.cat([x, h], 1)), 2, dim=1)
        c = torch.sigmoid(zf) * c + torch.sigmoid(zi + self.w_ci * c) * torch.tanh(zg)
        return torch.sigmoid(zo) * torch.tanh(c), c


class _Norm(ConvLSTMCell):
    def __init__(self):
        super().__init__(1, 2)
        self.norm = torch.nn.GroupNorm(4, 8)

    def forward(self, x, state):
        h, c = state
        zi, zf, zo, zg = torch.split(self.norm(self.conv(torch.cat([x, h], 1))), 2, dim=1)
        c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zg)
        return torch.sigmoid(zo) * torch.tanh(c), c


class _Strided(ConvLSTMCell):
    """Separate convolutions, the input's with stride 2 (8x8 frames, 4x4 state)."""

    def __init__(self):
        super().__init__(1, 2)
        self.conv_x = torch.nn.Conv2d(1, 8, 3, stride=2, padding=1)

    def forward(self, x, state):
        h, c = state
        z = self.conv_x(x) + self.conv(torch.cat([torch.zeros_like(h[:, :1]), h], 1))
        zi, zf, zo, zg = torch.split(z, 2, dim=1)
        c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zg)
        return torch.sigmoid(zo) * torch.tanh(c), c


class _Loop(torch.nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x):
        h = c = torch.zeros(x.shape[0], 2, 4, 4)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return h


@pytest.mark.parametrize("cell,found", [(_Peephole, "found add on a gate pre-activation"),
                                        (_Norm, "found group_norm on the gate convolution"),
                                        (_Strided, "stride (2, 2)")])
def test_unsupported_cells_name_what_was_found(tmp_path, cell, found):
    torch.manual_seed(0)
    size = 8 if cell is _Strided else 4
    with pytest.raises(ConversionError, match="ConvLSTM cell") as e:
        convert_torch(_Loop(cell()).eval(), tmp_path / "x.lstm", torch.randn(2, 3, 1, size, size))
    assert found in str(e.value)


class _ConstInit(torch.nn.Module):
    """One cell started from constant (non-zero) h and c frames, last h returned."""

    def __init__(self):
        super().__init__()
        self.cell = ConvLSTMCell(1, 2, (3, 3), order="ifgo")

    def forward(self, x):
        h = torch.full((x.shape[0], 2, 4, 4), 0.25)
        c = torch.full((x.shape[0], 2, 4, 4), -0.5)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return h


def test_constant_initial_state_is_stored_channels_last(tmp_path):
    torch.manual_seed(0)
    mod = _ConstInit().eval()
    m, _ = _convert(mod, (2, 3, 1, 4, 4), tmp_path)
    X = np.random.default_rng(4).uniform(-1, 1, (1, 5, 1, 4, 4)).astype(np.float32)
    y = np.asarray(m.run(X.reshape(1, 5, -1))).reshape(5, -1)
    assert np.abs(y[-1] - _torch(mod, X).numpy().reshape(-1)).max() < TOL
    s = m.stream()
    assert np.allclose(s.get_state()[f"{m.graph.nodes[0].name}.c"], -0.5)


def test_state_fed_from_elsewhere_is_refused(tmp_path):
    class Skip(_ConstInit):
        def forward(self, x):
            h = c = torch.zeros(x.shape[0], 2, 4, 4)
            for t in range(x.shape[1]):
                h, c = self.cell(x[:, t], (torch.tanh(h), c))
            return h
    with pytest.raises(ConversionError, match="state passed to the ConvLSTM cell|found tanh"):
        convert_torch(Skip().eval(), tmp_path / "x.lstm", torch.randn(2, 3, 1, 4, 4))


def test_exported_program_file(tmp_path):
    """A .pt2 of a ConvLSTM loop converts through convert_file (verified at its traced length)."""
    import converters
    torch.manual_seed(0)
    mod = FrameHead(1, [3]).eval()
    torch.export.save(torch.export.export(mod, (torch.randn(2, 4, 1, 5, 6),)), tmp_path / "m.pt2")
    report = converters.convert_file(str(tmp_path / "m.pt2"), str(tmp_path / "m.lstm"))
    assert report.verify.ok and report.verify.max_abs_error < TOL
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = np.random.default_rng(5).uniform(-1, 1, (2, 4, 1, 5, 6)).astype(np.float32)
    want = _torch(mod, X).numpy().reshape(2, 4, -1)
    assert np.abs(np.asarray(m.run(X.reshape(2, 4, -1))).reshape(2, 4, -1) - want).max() < TOL


class _ForgetBias(ConvLSTMCell):
    """No conv bias; a forget bias of 1 and a per-channel constant on o, folded into the bias."""

    def __init__(self):
        super().__init__(1, 2, bias=False)
        self.register_buffer("o_shift", torch.tensor([0.3, -0.2]).view(2, 1, 1))

    def forward(self, x, state):
        h, c = state
        zi, zf, zo, zg = torch.chunk(self.conv(torch.cat([x, h], 1)), 4, dim=1)
        c = torch.sigmoid(zf + 1.0) * c + torch.sigmoid(zi) * torch.tanh(zg - 0.5)
        return torch.sigmoid(self.o_shift + zo) * torch.tanh(c), c


def test_constant_gate_terms_fold_into_the_bias(tmp_path):
    torch.manual_seed(0)
    mod = _Loop(_ForgetBias()).eval()
    m, _ = _convert(mod, (2, 3, 1, 4, 4), tmp_path)
    assert [n.op for n in m.graph.nodes] == ["ConvLSTM", "Gather"]  # h back to (F, H, W)
    X = np.random.default_rng(6).uniform(-1, 1, (2, 6, 1, 4, 4)).astype(np.float32)
    y = np.asarray(m.run(X.reshape(2, 6, -1))).reshape(2, 6, -1)
    assert np.abs(y[:, -1] - _torch(mod, X).numpy().reshape(2, -1)).max() < TOL
