"""PyTorch importer: attention pooling and reductions over time (streamed with running
accumulators, prefix semantics: row t of run() and the t-th streamed output equal torch on
x[:, :t+1]) against torch, in run() and streamed with the state carried across chunks
(torch_models.check_last). Tolerance TOL = 1e-5 max abs on unit-scale data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from converters import ConversionError
from torch_models import TOL, check_last, check_seq, convert, rand, to_torch


class AttnPool(nn.Module):
    """LSTM, additive attention score per step, softmax over time, weighted sum, head."""

    def __init__(self, I, H, form="mul", O=3):
        super().__init__()
        self.lstm = nn.LSTM(I, H, batch_first=True)
        self.W = nn.Linear(H, H)
        self.v = nn.Linear(H, 1, bias=False)
        self.fc = nn.Linear(H, O)
        self.form = form

    def forward(self, x):
        h, _ = self.lstm(x)
        score = self.v(torch.tanh(self.W(h)))           # (B, T, 1)
        if self.form == "mul":
            a = torch.softmax(score, dim=1)
            ctx = (a * h).sum(1)
        elif self.form == "squeezed":
            a = F.softmax(score.squeeze(-1), dim=-1)    # (B, T)
            ctx = torch.sum(a.unsqueeze(-1) * h, dim=1)
        elif self.form == "bmm":
            a = torch.softmax(score, dim=1)
            ctx = torch.bmm(a.transpose(1, 2), h).squeeze(1)
        else:
            a = torch.softmax(score, dim=1)
            ctx = (a.transpose(1, 2) @ h)[:, 0]
        return self.fc(ctx)


@pytest.mark.parametrize("form", ["mul", "squeezed", "bmm", "matmul"])
@pytest.mark.parametrize("I,H", [(3, 5), (16, 8)])
def test_attention_pooling(tmp_path, form, I, H):
    torch.manual_seed(I + H)
    assert check_last(AttnPool(I, H, form), tmp_path, I) <= TOL


def test_attention_pooling_verified_on_conversion(tmp_path):
    torch.manual_seed(1)
    model = AttnPool(4, 6).eval()
    m, report = convert(model, tmp_path, to_torch(rand(2, 6, 4), "BTF"), verify=True)
    assert m.streamable and any(n.op == "AttentionPool" for n in m.graph.nodes)


class Reduce(nn.Module):
    def __init__(self, I, H, how, layout="BTF"):
        super().__init__()
        self.gru = nn.GRU(I, H, batch_first=layout == "BTF")
        self.fc = nn.Linear(H, 2)
        self.how, self.t = how, (1 if layout == "BTF" else 0)

    def forward(self, x):
        h, _ = self.gru(x)
        t = self.t
        r = {"mean": lambda: h.mean(t), "sum": lambda: h.sum(dim=t), "amax": lambda: h.amax(t),
             "amin": lambda: torch.amin(h, dim=t), "max": lambda: h.max(t).values,
             "min": lambda: torch.min(h, t)[0],
             "mean_keepdim": lambda: h.mean(t, keepdim=True).squeeze(t)}[self.how]()
        return self.fc(r)


@pytest.mark.parametrize("how", ["mean", "sum", "amax", "amin", "max", "min", "mean_keepdim"])
def test_reduction_over_time(tmp_path, how):
    torch.manual_seed(3)
    assert check_last(Reduce(3, 7, how), tmp_path, 3) <= TOL


def test_mean_over_time_time_major(tmp_path):
    torch.manual_seed(4)
    assert check_last(Reduce(2, 5, "mean", layout="TBF"), tmp_path, 2, layout="TBF") <= TOL


class FeatureMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 6, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0].mean(-1, keepdim=True)


def test_mean_over_features_is_per_step(tmp_path):
    torch.manual_seed(5)
    assert check_seq(FeatureMean(), tmp_path, 3) <= TOL


class WeightsOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.v = nn.Linear(4, 1)

    def forward(self, x):
        h, _ = self.lstm(x)
        return torch.softmax(self.v(h), dim=1) + 1.0


def test_softmax_over_time_outside_pooling_is_refused(tmp_path):
    with pytest.raises(ConversionError, match="attention pooling"):
        convert(WeightsOut().eval(), tmp_path, to_torch(rand(2, 6, 3), "BTF"))


@pytest.mark.parametrize("window,limit", [(5, False), (40, True)])
def test_causal_attention_matches_multihead_attention(tmp_path, window, limit):
    """CausalAttention between Linear q/k/v and out_proj (built by hand: the importer does
    not recognise nn.MultiheadAttention yet) equals torch's MultiheadAttention with a banded
    (sliding window) or full causal mask, at every prefix, in run() and streamed."""
    import lstm_infer
    from benchmarks.attention import CausalMHA, mha_graph
    torch.manual_seed(window)
    model = CausalMHA(window).eval()
    path = str(tmp_path / "mha.lstm")
    mha_graph(model, path, limit=limit)
    m = lstm_infer.load(path)
    X = rand(1, 40, 16, seed=window)
    got = m.run(X)[0]
    s = m.stream()
    streamed = np.concatenate([s.step_many(X[0, :3]), s.step(X[0, 3])[None], s.step_many(X[0, 4:])])
    for t in (0, 4, 5, 17, 39):
        with torch.no_grad():
            want = model(torch.from_numpy(X[:, :t + 1]))[0].numpy()
        assert np.abs(got[t] - want).max() <= TOL
        assert np.abs(streamed[t] - want).max() <= TOL
