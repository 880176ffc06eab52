"""Small PyTorch models and comparison helpers for the PyTorch importer tests."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

import lstm_infer
from converters import convert_torch

TOL = 1e-5
CHUNKS = (1, 4, 2, 7, 3, 16, 5)


def rand(B: int, T: int, I: int, seed: int = 0) -> np.ndarray:
    """Unit-scale inputs (B, T, I)."""
    return np.random.default_rng(seed).standard_normal((B, T, I)).astype(np.float32)


def to_torch(X: np.ndarray, layout: str) -> torch.Tensor:
    """(B, T, I) numpy -> the model's input layout: 'BTF', 'TBF' or 'TF' (X[0])."""
    x = torch.from_numpy(np.ascontiguousarray(X))
    if layout == "BTF":
        return x
    if layout == "TBF":
        return x.transpose(0, 1).contiguous()
    if layout == "TF":
        assert X.shape[0] == 1
        return x[0]
    raise ValueError(layout)


def seq_out(y: torch.Tensor, layout: str) -> np.ndarray:
    """A per-step torch output in the model's layout -> (B, T, O) numpy."""
    y = y.detach().double()
    if y.dim() == len(layout) - 1:  # feature axis squeezed (O == 1)
        y = y.unsqueeze(-1)
    if layout == "TBF":
        y = y.transpose(0, 1)
    if layout == "TF":
        y = y[None]
    return y.numpy()


def last_out(y: torch.Tensor, layout: str) -> np.ndarray:
    """A last-step torch output (B, O) / (O,) -> (B, O) numpy."""
    y = y.detach().double()
    if layout == "TF":
        y = y[None]
    if y.dim() == 1 and layout != "TF":
        y = y[:, None]
    return y.numpy()


def err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


def convert(module, tmp_path, example, name="m.lstm", **kw):
    path = tmp_path / name
    report = convert_torch(module, path, example_input=example, verify=kw.pop("verify", False), **kw)
    return lstm_infer.load(path), report


def stream_rows(m, x: np.ndarray, first_single: int = 5, offset: int = 0) -> np.ndarray:
    """Stream one sequence (T, I): step() for the first steps, then step_many over chunks
    of varying sizes, the state carried throughout."""
    s = m.stream()
    rows = [s.step(x[t])[None] for t in range(min(first_single, len(x)))]
    pos, k = len(rows), offset
    while pos < len(x):
        n = CHUNKS[k % len(CHUNKS)]
        rows.append(s.step_many(x[pos:pos + n]))
        pos += n
        k += 1
    return np.concatenate(rows, axis=0)


def check_seq(module, tmp_path, I, layout="BTF", lengths=(1, 9, 203), B=2, pick=lambda y: y,
              stream=True, example_T=6, **kw) -> float:
    """Convert, then compare run() (batched) and streaming with torch on several lengths.
    Returns the max abs error seen (asserted <= TOL by the caller)."""
    module = module.eval()
    bx = 1 if layout == "TF" else B
    m, _ = convert(module, tmp_path, to_torch(rand(bx, example_T, I, seed=99), layout), **kw)
    worst = 0.0
    for T in lengths:
        X = rand(bx, T, I, seed=T)
        with torch.no_grad():
            want = seq_out(pick(module(to_torch(X, layout))), layout)
        got = m.run(X)
        assert got.shape == want.shape
        worst = max(worst, err(got, want))
        if layout == "TF":
            worst = max(worst, err(m.run(X[0]), want[0]))
        if stream:
            for b in range(bx):
                worst = max(worst, err(stream_rows(m, X[b], offset=b), want[b]))
    return worst


def check_last(module, tmp_path, I, layout="BTF", lengths=(1, 7, 201), B=2, pick=lambda y: y,
               stream=True, prefix=True, example_T=6, **kw) -> float:
    """A model returning only the last step: the last row of run() equals torch; with
    `prefix`, row t equals torch on the prefix X[:, :t+1] (run and stream)."""
    module = module.eval()
    bx = 1 if layout == "TF" else B
    m, report = convert(module, tmp_path, to_torch(rand(bx, example_T, I, seed=99), layout), **kw)
    assert any("last-step" in w for w in report.warnings)
    worst = 0.0
    for T in lengths:
        X = rand(bx, T, I, seed=T)
        got = m.run(X)
        assert got.shape[:2] == (bx, T)
        rows = sorted({0, T // 2, T - 1}) if prefix else [T - 1]
        streamed = [stream_rows(m, X[b], offset=b) for b in range(bx)] if stream else None
        for t in rows:
            with torch.no_grad():
                want = last_out(pick(module(to_torch(X[:, :t + 1], layout))), layout)
            worst = max(worst, err(got[:, t], want))
            if stream:
                worst = max(worst, max(err(streamed[b][t], want[b]) for b in range(bx)))
    return worst


class RecurrentHead(nn.Module):
    """`out, _ = self.rnn(x); return self.fc(out)`: the usual user model."""

    def __init__(self, kind: str, I: int, H: int, O: int = 3, **kw):
        super().__init__()
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
        self.rnn = cls(I, H, **kw)
        width = (2 if kw.get("bidirectional") else 1) * (kw.get("proj_size") or H)
        self.fc = nn.Linear(width, O)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out)


class WithActivation(nn.Module):
    def __init__(self, act: nn.Module, I: int = 4, H: int = 6):
        super().__init__()
        self.lstm = nn.LSTM(I, H, batch_first=True)
        self.act = act
        self.fc = nn.Linear(H, 5)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(self.act(out))


class LastStep(nn.Module):
    """Returns only the last step, in one of several common spellings."""

    def __init__(self, mode: str, kind: str = "lstm", I: int = 3, H: int = 5, **kw):
        super().__init__()
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
        self.mode = mode
        self.rnn = cls(I, H, batch_first=True, **kw)
        width = (2 if kw.get("bidirectional") else 1) * (kw.get("proj_size") or H)
        self.fc = nn.Linear(width if mode in ("out", "out_keep") else (kw.get("proj_size") or H), 2)

    def forward(self, x):
        out, h = self.rnn(x)
        h = h[0] if isinstance(h, tuple) else h
        if self.mode == "out":
            return self.fc(out[:, -1])
        if self.mode == "out_keep":
            return self.fc(out[:, -1:, :]).squeeze(1)
        if self.mode == "hn":
            return torch.softmax(self.fc(h[-1]), dim=-1)
        if self.mode == "hn_squeeze":
            return self.fc(h.squeeze(0))
        raise ValueError(self.mode)


class CellLoop(nn.Module):
    """An nn.LSTMCell/GRUCell/RNNCell in a Python loop over time (export unrolls it)."""

    def __init__(self, kind: str, I: int, H: int, layers: int = 1, last: bool = False,
                 reverse: bool = False, nonlinearity: str = "tanh", zeros_state: bool = False,
                 spelling: str = "select"):
        super().__init__()
        self.kind, self.last, self.reverse, self.zeros_state = kind, last, reverse, zeros_state
        self.spelling = spelling  # "select": x[:, t] + stack; "unbind": x.unbind(1) + cat
        def make(i):
            if kind == "lstm":
                return nn.LSTMCell(i, H)
            if kind == "gru":
                return nn.GRUCell(i, H)
            return nn.RNNCell(i, H, nonlinearity=nonlinearity)
        self.cells = nn.ModuleList([make(I if k == 0 else H) for k in range(layers)])
        self.fc = nn.Linear(H, 2)
        self.H = H

    def forward(self, x):  # x (B, T, I)
        B, T = x.shape[0], x.shape[1]
        if self.zeros_state:
            states = [(torch.zeros(B, self.H), torch.zeros(B, self.H)) if self.kind == "lstm"
                      else torch.zeros(B, self.H) for _ in self.cells]
        else:
            states = [None] * len(self.cells)
        outs = []
        steps = range(T - 1, -1, -1) if self.reverse else range(T)
        xs = x.unbind(1) if self.spelling == "unbind" else None
        for t in steps:
            h = xs[t] if xs is not None else x[:, t]
            for k, cell in enumerate(self.cells):
                states[k] = cell(h, states[k])
                h = states[k][0] if self.kind == "lstm" else states[k]
            outs.append(torch.tanh(self.fc(h)))
        if self.last:
            return outs[-1]
        if self.reverse:
            outs = outs[::-1]
        if self.spelling == "unbind":
            return torch.cat([o.unsqueeze(1) for o in outs], dim=1)
        return torch.stack(outs, dim=1)
