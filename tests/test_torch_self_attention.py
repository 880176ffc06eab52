"""PyTorch importer: causal self-attention over recurrent outputs (nn.MultiheadAttention
through its leaf op, F.scaled_dot_product_attention on heads split with view + transpose)
against torch at every length/prefix, in run() and streamed in chunks of varying sizes
(torch_models.check_seq / check_last); attention that looks ahead runs with run() only.
Tolerance TOL = 1e-5 max abs on unit-scale data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import lstm_infer
from converters import ConversionError
from torch_models import TOL, check_last, check_seq, convert, rand, to_torch

LENGTHS = (1, 9, 40)


def offsets(T: int) -> torch.Tensor:
    i = torch.arange(T)
    return i[:, None] - i[None, :]          # query step - key step


class MHA(nn.Module):
    """LSTM -> nn.MultiheadAttention with a causal/banded attn_mask (True = masked)."""

    def __init__(self, heads, batch_first=True, mask="causal", residual=True, I=3, E=8):
        super().__init__()
        self.lstm = nn.LSTM(I, E, batch_first=batch_first)
        self.mha = nn.MultiheadAttention(E, heads, batch_first=batch_first)
        self.bf, self.mask, self.residual = batch_first, mask, residual

    def forward(self, x):
        h, _ = self.lstm(x)
        d = offsets(h.shape[1 if self.bf else 0])
        if self.mask == "none":
            a, _ = self.mha(h, h, h, need_weights=False)
        elif self.mask == "is_causal":   # need_weights left True, weights ignored
            a, _ = self.mha(h, h, h, attn_mask=d < 0, is_causal=True)
        else:
            m = (d < 0) | (d >= 3) if self.mask == "band" else d < 0
            a, _ = self.mha(h, h, h, attn_mask=m, need_weights=False)
        return a + h if self.residual else a


@pytest.mark.parametrize("heads,batch_first,mask,residual", [
    (1, True, "causal", True), (2, False, "band", True), (4, True, "band", False),
    (2, True, "is_causal", False)])
def test_multihead_attention_streams(tmp_path, heads, batch_first, mask, residual):
    torch.manual_seed(heads)
    model = MHA(heads, batch_first, mask, residual)
    layout = "BTF" if batch_first else "TBF"
    assert check_seq(model, tmp_path, 3, layout=layout, lengths=LENGTHS) <= TOL
    m = lstm_infer.load(tmp_path / "m.lstm")
    att = next(n for n in m.graph.nodes if n.op == "CausalAttention")
    assert att.attrs == {"heads": heads, "head_dim": 8 // heads, "limit": mask != "band",
                         "window": 3 if mask == "band" else 4096}


class SDPA(nn.Module):
    """GRU -> q/k/v projections (separate or one fused Linear + split) -> heads ->
    F.scaled_dot_product_attention -> merge heads -> [out_proj] [+ residual]."""

    def __init__(self, heads, mask="causal", fused=False, out=True, residual=True, I=3, E=8):
        super().__init__()
        self.gru = nn.GRU(I, E, batch_first=True)
        self.qkv = nn.Linear(E, 3 * E) if fused else None
        self.q, self.k, self.v = nn.Linear(E, E), nn.Linear(E, E, bias=False), nn.Linear(E, E)
        self.out = nn.Linear(E, E) if out else None
        self.heads, self.mask, self.residual = heads, mask, residual

    def forward(self, x):
        h, _ = self.gru(x)
        B, T, E = h.shape
        q, k, v = self.qkv(h).split(E, dim=-1) if self.qkv is not None else (self.q(h), self.k(h), self.v(h))
        if self.heads > 1:
            q, k, v = (t.view(B, T, self.heads, E // self.heads).transpose(1, 2) for t in (q, k, v))
        d = offsets(T)
        if self.mask == "causal":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif self.mask == "band":     # bool, True = attend
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=(d >= 0) & (d < 3), scale=0.3)
        elif self.mask == "float_band":
            m = torch.zeros(T, T).masked_fill((d < 0) | (d >= 2), float("-inf"))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        elif self.mask == "ahead":    # a band reaching one step into the future
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=d.abs() <= 1)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        if self.heads > 1:
            y = y.transpose(1, 2).reshape(B, T, E)
        if self.out is not None:
            y = self.out(y)
        return y + h if self.residual else y


@pytest.mark.parametrize("heads,mask,fused,out,residual", [
    (1, "causal", False, True, True), (2, "band", True, False, True),
    (4, "float_band", False, True, False), (2, "causal", True, False, False)])
def test_scaled_dot_product_attention_streams(tmp_path, heads, mask, fused, out, residual):
    torch.manual_seed(10 + heads)
    model = SDPA(heads, mask, fused, out, residual)
    assert check_seq(model, tmp_path, 3, lengths=LENGTHS) <= TOL
    m = lstm_infer.load(tmp_path / "m.lstm")
    att = next(n for n in m.graph.nodes if n.op == "CausalAttention")
    assert att.attrs["heads"] == heads and att.attrs["window"] == {"causal": 4096, "band": 3,
                                                                   "float_band": 2}[mask]


class LastQuery(nn.Module):
    """The last hidden state attends over every step: fc(mha(h[:, -1:], h, h))."""

    def __init__(self, I=3, E=8):
        super().__init__()
        self.lstm = nn.LSTM(I, E, batch_first=True)
        self.mha = nn.MultiheadAttention(E, 2, batch_first=True)
        self.fc = nn.Linear(E, 2)

    def forward(self, x):
        h, _ = self.lstm(x)
        a, _ = self.mha(h[:, -1:], h, h)
        return self.fc(a[:, 0])


def test_last_step_query_streams_as_causal_attention(tmp_path):
    """At step t the query is the prefix's last state over the prefix's steps: row t of
    run() and the t-th streamed output equal torch on x[:, :t+1]."""
    torch.manual_seed(5)
    assert check_last(LastQuery(), tmp_path, 3, lengths=(1, 7, 30)) <= TOL
    m = lstm_infer.load(tmp_path / "m.lstm")
    assert m.streamable and any(n.op == "CausalAttention" and n.attrs["limit"]
                                for n in m.graph.nodes)


@pytest.mark.parametrize("model,layout", [(MHA(2, batch_first=False, mask="none"), "TBF"),
                                          (SDPA(4, mask="ahead"), "BTF")])
def test_attention_that_looks_ahead_runs_only(tmp_path, model, layout):
    torch.manual_seed(7)
    assert check_seq(model, tmp_path, 3, layout=layout, lengths=LENGTHS, stream=False) <= TOL
    m = lstm_infer.load(tmp_path / "m.lstm")
    node = next(n for n in m.graph.nodes if n.op == "SequenceAttention")
    assert not m.streamable
    with pytest.raises(lstm_infer.NotStreamableError, match=node.name):
        m.stream()


def test_full_attention_max_len_option(tmp_path):
    torch.manual_seed(3)
    model = SDPA(2).eval()
    m, report = convert(model, tmp_path, to_torch(rand(1, 6, 3), "BTF"), verify=True,
                        attention_max_len=8)
    assert report.verify.ok and any("attention_max_len=8" in w for w in report.warnings)
    X = rand(1, 9, 3, seed=4)
    s = m.stream()
    s.step_many(X[0, :8])
    with pytest.raises(ValueError, match="at most 8 steps.*attention_max_len"):
        s.step(X[0, 8])
    with pytest.raises(ValueError, match="attention_max_len"):
        m.run(X)
    with torch.no_grad():
        want = model(torch.from_numpy(X[:, :8])).numpy()
    assert np.abs(m.run(X[:, :8]) - want).max() <= TOL


@pytest.mark.parametrize("mask,match", [
    (torch.rand(6, 6) > 0.5, "not a band|attend to nothing"),
    (torch.triu(torch.full((6, 6), -1.0), 1), "values other than 0 and -inf"),
])
def test_inexpressible_masks_are_refused(tmp_path, mask, match):
    model = SDPA(2, mask=mask)
    with pytest.raises(ConversionError, match=match):
        convert(model, tmp_path, to_torch(rand(2, 6, 3), "BTF"))


def test_padding_mask_and_bad_max_len_are_refused(tmp_path):
    class Padded(MHA):
        def forward(self, x):
            h, _ = self.lstm(x)
            a, _ = self.mha(h, h, h, key_padding_mask=torch.zeros(h.shape[:2], dtype=torch.bool))
            return a
    with pytest.raises(ConversionError, match="key_padding_mask"):
        convert(Padded(2), tmp_path, to_torch(rand(2, 6, 3), "BTF"))
    with pytest.raises(ConversionError, match="attention_max_len"):
        convert(SDPA(2), tmp_path, to_torch(rand(2, 6, 3), "BTF"), attention_max_len=0)
