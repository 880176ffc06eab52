"""PyTorch importer: nn.MultiheadAttention in a saved torch.export program (.pt2, through
converters.convert_file), where the module is traced into its ops and folded back into one
attention (torch_import/mha_program.py). Each .pt2 is converted with its built-in
verification, then run() is compared with the original nn.Module at the exported length
and, for causal/banded masks, at other lengths (the exported program is specialised to
its length; the converted file is not), and streamed step()/step_many == run() (prefix
semantics). Tolerance TOL = 1e-5 max abs on unit-scale data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import lstm_infer
from converters import ConversionError, convert_file
from torch_models import TOL, err, rand, seq_out, stream_rows, to_torch

T_EXPORT = 12


def offsets(T: int) -> torch.Tensor:
    i = torch.arange(T)
    return i[:, None] - i[None, :]          # query step - key step


class Block(nn.Module):
    """nn.MultiheadAttention as users call it, in a submodule (path 'block.mha')."""

    def __init__(self, E, heads, batch_first, mask):
        super().__init__()
        self.mha = nn.MultiheadAttention(E, heads, batch_first=batch_first)
        self.bf, self.mask = batch_first, mask
        # GPT-style registered mask, sliced to the length (True = masked)
        self.register_buffer("causal", torch.triu(torch.ones(64, 64, dtype=torch.bool), 1))
        self.register_buffer("noise", torch.rand(T_EXPORT, T_EXPORT) > 0.5)

    def forward(self, h):
        T = h.shape[1 if self.bf else 0]
        d = offsets(T)
        if self.mask == "causal":        # built from T: a constant of the exported length
            return self.mha(h, h, h, attn_mask=torch.triu(torch.ones(T, T, dtype=torch.bool), 1),
                            need_weights=False)[0]
        if self.mask == "band":          # float mask, step t sees t-2..t; weights computed
            m = torch.zeros(T, T).masked_fill((d < 0) | (d >= 3), float("-inf"))
            return self.mha(h, h, h, attn_mask=m)[0]
        if self.mask == "buffer":
            return self.mha(h, h, h, attn_mask=self.causal[:T, :T], need_weights=False)[0]
        if self.mask == "is_causal":
            return self.mha(h, h, h, attn_mask=d < 0, is_causal=True, need_weights=False)[0]
        if self.mask == "noise":         # not a band: refused
            return self.mha(h, h, h, attn_mask=self.noise, need_weights=False)[0]
        if self.mask == "last":          # the last step attends over every step
            q = h[:, -1:] if self.bf else h[-1:]
            return self.mha(q, h, h, need_weights=False)[0]
        return self.mha(h, h, h, need_weights=False)[0]   # no mask: looks ahead


class Model(nn.Module):
    """LSTM -> MultiheadAttention [+ residual] -> Linear."""

    def __init__(self, heads=2, batch_first=True, mask="causal", residual=True, I=3, E=8):
        super().__init__()
        self.lstm = nn.LSTM(I, E, batch_first=batch_first)
        self.block = Block(E, heads, batch_first, mask)
        self.fc = nn.Linear(E, 4)
        self.residual = residual

    def forward(self, x):
        h, _ = self.lstm(x)
        a = self.block(h)
        return self.fc(a + h if self.residual else a)


def save_pt2(model: nn.Module, path, layout: str) -> str:
    x = to_torch(rand(2, T_EXPORT, 3, seed=99), layout)
    torch.export.save(torch.export.export(model.eval(), (x,)), str(path))
    return str(path)


def torch_rows(model, X, layout):
    with torch.no_grad():
        return seq_out(model(to_torch(X, layout)), layout)


CASES = {   # name: (heads, batch_first, mask, residual, window of the CausalAttention)
    "causal": (2, True, "causal", True, 4096),
    "causal_time_major": (4, False, "causal", False, 4096),
    "band_need_weights": (2, True, "band", True, 3),
    "band_time_major": (1, False, "band", False, 3),
    "buffer": (2, True, "buffer", False, 4096),
    "is_causal": (4, True, "is_causal", True, 4096),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pt2_multihead_attention_streams(tmp_path, case):
    heads, bf, mask, residual, window = CASES[case]
    torch.manual_seed(len(case))
    layout = "BTF" if bf else "TBF"
    model = Model(heads, bf, mask, residual).eval()
    report = convert_file(save_pt2(model, tmp_path / "m.pt2", layout), tmp_path / "m.lstm")
    assert report.verify is not None and report.verify.ok, report.verify
    m = lstm_infer.load(tmp_path / "m.lstm")
    att = [n for n in m.graph.nodes if n.op == "CausalAttention"]
    assert len(att) == 1 and att[0].name == "block.mha.attention"
    assert att[0].attrs == {"heads": heads, "head_dim": 8 // heads, "window": window,
                            "limit": window == 4096}
    assert m.streamable
    for T in (T_EXPORT, 1, 5, 30):
        X = rand(2, T, 3, seed=T)
        want = torch_rows(model, X, layout)
        got = m.run(X)
        assert err(got, want) <= TOL
        for b in range(2):
            assert err(stream_rows(m, X[b], offset=b), got[b]) <= TOL


def test_pt2_last_step_query_streams(tmp_path):
    """mha(h[:, -1:], h, h): two per-step inputs (query of one step, keys/values of all)."""
    torch.manual_seed(3)
    model = Model(2, True, "last", residual=False).eval()
    report = convert_file(save_pt2(model, tmp_path / "m.pt2", "BTF"), tmp_path / "m.lstm")
    assert report.verify.ok
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = rand(2, T_EXPORT, 3, seed=1)
    got = m.run(X)
    s = stream_rows(m, X[0])
    for t in (0, 5, T_EXPORT - 1):   # row t: the model on the prefix ending at t
        want = torch_rows(model, X[:, :t + 1], "BTF")[:, 0]
        assert err(got[:, t], want) <= TOL and err(s[t], want[0]) <= TOL


@pytest.mark.parametrize("bf", [True, False])
def test_pt2_non_causal_attention_runs_only(tmp_path, bf):
    torch.manual_seed(4)
    layout = "BTF" if bf else "TBF"
    model = Model(2, bf, "none").eval()
    report = convert_file(save_pt2(model, tmp_path / "m.pt2", layout), tmp_path / "m.lstm")
    assert report.verify.ok
    m = lstm_infer.load(tmp_path / "m.lstm")
    assert not m.streamable
    X = rand(2, T_EXPORT, 3, seed=2)
    assert err(m.run(X), torch_rows(model, X, layout)) <= TOL
    with pytest.raises(lstm_infer.NotStreamableError, match="block.mha.attention"):
        m.stream()


def test_pt2_mask_that_is_not_a_band_is_refused(tmp_path):
    torch.manual_seed(5)
    src = save_pt2(Model(2, True, "noise"), tmp_path / "m.pt2", "BTF")
    with pytest.raises(ConversionError, match=r"not a band.*module 'block.mha'"):
        convert_file(src, tmp_path / "m.lstm")


def test_pt2_attention_weights_used_outside_are_refused(tmp_path):
    class Weights(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 8, batch_first=True)
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            h, _ = self.lstm(x)
            a, w = self.mha(h, h, h)
            return a + w.sum(-1, keepdim=True)
    src = save_pt2(Weights(), tmp_path / "m.pt2", "BTF")
    with pytest.raises(ConversionError, match="'mha'.*attention weights"):
        convert_file(src, tmp_path / "m.lstm")


def test_pt2_conversion_leaves_the_global_rng_alone(tmp_path):
    src = save_pt2(Model(2, True, "causal"), tmp_path / "m.pt2", "BTF")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    convert_file(src, tmp_path / "m.lstm", verify=False)
    assert torch.equal(torch.rand(3), expected)
    assert np.isfinite(lstm_infer.load(tmp_path / "m.lstm").run(rand(1, 4, 3))).all()
