"""PyTorch importer: cell loops folded into recurrent nodes, and last-step models."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from converters import ConversionError, convert_torch
from torch_models import TOL, CellLoop, LastStep, check_last, check_seq, convert

torch.manual_seed(0)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("I,H,layers", [(1, 1, 1), (3, 5, 1), (6, 9, 2), (4, 3, 3)])
def test_cell_loop_sequence(tmp_path, kind, I, H, layers):
    torch.manual_seed(I + 10 * H)
    model = CellLoop(kind, I, H, layers=layers)
    m, _ = convert(model.eval(), tmp_path, torch.randn(2, 5, I))
    recurrent = [n for n in m.graph.nodes if n.is_recurrent]
    assert len(recurrent) == layers  # the unrolled loop folds back into one node per cell
    assert len([n for n in m.graph.nodes if n.op == "Linear"]) == 1
    assert check_seq(model, tmp_path, I, lengths=(1, 8, 200)) <= TOL


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cell_loop_explicit_zero_state_and_relu(tmp_path, kind):
    model = CellLoop(kind, 3, 4, zeros_state=True, nonlinearity="relu")
    assert check_seq(model, tmp_path, 3) <= TOL


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2])
def test_cell_loop_last_step(tmp_path, kind, layers):
    torch.manual_seed(layers)
    model = CellLoop(kind, 3, 6, layers=layers, last=True)
    assert check_last(model, tmp_path, 3) <= TOL


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cell_loop_unbind_and_cat(tmp_path, kind):
    """x.unbind(1) for the steps and torch.cat of unsqueezed outputs over time."""
    model = CellLoop(kind, 3, 5, layers=2, spelling="unbind")
    assert check_seq(model, tmp_path, 3) <= TOL


@pytest.mark.parametrize("example_T", [1, 2])
def test_cell_loop_short_example(tmp_path, example_T):
    """An example input with 1 or 2 steps still gives a model that runs any length."""
    model = CellLoop("lstm", 3, 4, layers=2)
    assert check_seq(model, tmp_path, 3, example_T=example_T) <= TOL
    last = CellLoop("gru", 3, 4, last=True)
    assert check_last(last, tmp_path, 3, example_T=example_T) <= TOL


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_reverse_cell_loop(tmp_path, kind):
    """A loop over reversed(range(T)) becomes a reverse-direction node (run() only)."""
    model = CellLoop(kind, 3, 4, reverse=True)
    m, _ = convert(model.eval(), tmp_path, torch.randn(2, 5, 3))
    assert [n.attrs.get("reverse") for n in m.graph.nodes if n.is_recurrent] == [True]
    assert check_seq(model, tmp_path, 3, stream=False) <= TOL


@pytest.mark.parametrize("mode", ["out", "out_keep", "hn", "hn_squeeze"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_last_step_models(tmp_path, mode, kind):
    torch.manual_seed(5)
    model = LastStep(mode, kind, I=3, H=5)
    assert check_last(model, tmp_path, 3) <= TOL


@pytest.mark.parametrize("kw", [dict(num_layers=3), dict(proj_size=2), dict(num_layers=2, proj_size=3)])
def test_last_step_stacked(tmp_path, kw):
    """h_n[-1] is the last layer's final state (size proj_size when projected)."""
    model = LastStep("hn", "lstm", I=4, H=6, **kw)
    assert check_last(model, tmp_path, 4) <= TOL


def test_last_step_bidirectional_out(tmp_path):
    """fc(out[:, -1]) of a bidirectional LSTM: the last row equals torch; earlier rows are
    not prefix results and the report says so."""
    model = LastStep("out", "lstm", I=3, H=4, bidirectional=True)
    m, report = convert(model.eval(), tmp_path, torch.randn(2, 6, 3))
    assert any("NOT results for shorter sequences" in w for w in report.warnings)
    assert check_last(model, tmp_path, 3, stream=False, prefix=False) <= TOL


def test_last_step_verify_report(tmp_path):
    model = LastStep("out", "gru", I=3, H=5)
    report = convert_torch(model, tmp_path / "v.lstm", example_input=torch.randn(2, 6, 3))
    assert report.verify.ok and 0 <= report.verify.max_abs_error <= TOL
    assert report.verify.stream_max_abs


class FreshState(nn.Module):
    """Calls the cell without its state at every step: not a recurrent loop."""

    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(3, 4)

    def forward(self, x):
        return torch.stack([self.cell(x[:, t]) for t in range(x.shape[1])], dim=1)


class Feedback(nn.Module):
    """Feeds the previous output back as the next input (autoregressive): unsupported."""

    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(3, 3)

    def forward(self, x):
        h = c = torch.zeros(x.shape[0], 3)
        inp = x[:, 0]
        outs = []
        for _ in range(x.shape[1]):
            h, c = self.cell(inp, (h, c))
            inp = h
            outs.append(h)
        return torch.stack(outs, 1)


class StateThroughOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.RNNCell(3, 4)

    def forward(self, x):
        h = torch.zeros(x.shape[0], 4)
        outs = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h) * 0.5
            outs.append(h)
        return torch.stack(outs, 1)


class SkipsFirstStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(3, 4)

    def forward(self, x):
        h = None
        outs = []
        for t in range(1, x.shape[1]):
            h = self.cell(x[:, t], h)
            outs.append(h)
        return outs[-1]


@pytest.mark.parametrize("model,match", [
    (FreshState(), "fresh initial state"),
    (Feedback(), "autoregressive"),
    (StateThroughOps(), "not the state that cell returned"),
    (SkipsFirstStep(), "starts at time step 1"),
])
def test_unsupported_cell_loops(tmp_path, model, match):
    with pytest.raises(ConversionError, match=match):
        convert_torch(model, tmp_path / "x.lstm", torch.randn(2, 5, 3))
