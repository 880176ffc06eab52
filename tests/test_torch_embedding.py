"""nn.Embedding on integer token ids through the PyTorch importer (convert_torch, .pt2):
the file takes the ids as numbers (one per step) and must match torch fed the same ids as
integers, within 1e-5 max abs (fp32, random weights), in run() and streamed (step() then
step_many() chunks, the state carried); bad ids and unsupported uses give clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import lstm_infer
from converters import ConversionError, convert_file, convert_torch, verify_file
from lstm_infer.errors import NotStreamableError
from torch_models import TOL, err, stream_rows

torch.set_num_threads(1)
V, D, H = 13, 5, 4


class Tagger(nn.Module):
    """ids -> Embedding -> LSTM/GRU -> Linear; `last`: fc(out[:, -1]); `cast`: ids.long()."""

    def __init__(self, op="LSTM", batch_first=True, bidirectional=False, last=False,
                 cast=False, seed=0, **emb):
        super().__init__()
        torch.manual_seed(seed)
        self.batch_first, self.last, self.cast = batch_first, last, cast
        self.emb = nn.Embedding(V, D, **emb)
        self.rnn = getattr(nn, op)(D, H, batch_first=batch_first, bidirectional=bidirectional)
        self.fc = nn.Linear(H * (2 if bidirectional else 1), 3)

    def forward(self, ids):
        if self.cast:
            ids = ids.long()
        y = self.rnn(self.emb(ids))[0]
        if self.last:
            y = y[:, -1] if self.batch_first else y[-1]
        return self.fc(y)


def ids(B: int, T: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=(B, T))


def torch_seq(model, X: np.ndarray, dtype=torch.int64) -> np.ndarray:
    """X (B, T) ids -> the torch output as (B, T, O) (or (B, O) for a last-step model)."""
    x = torch.from_numpy(X).to(dtype)
    with torch.no_grad():
        y = model(x if model.batch_first else x.T.contiguous())
    y = y.double().numpy()
    return y if (model.batch_first or model.last) else y.transpose(1, 0, 2)


CASES = {  # name: (model kwargs, example dtype)
    "lstm_bf": (dict(op="LSTM"), torch.int64),
    "lstm_tb": (dict(op="LSTM", batch_first=False), torch.int64),
    "gru_bf_int32_long": (dict(op="GRU", cast=True, padding_idx=0), torch.int32),
    "gru_tb": (dict(op="GRU", batch_first=False), torch.int64),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def converted(request, tmp_path_factory):
    kw, dtype = CASES[request.param]
    model = Tagger(**kw).eval()
    B, T = 2, 6
    ex = torch.from_numpy(ids(B, T, seed=9)).to(dtype)
    if not model.batch_first:
        ex = ex.T.contiguous()
    path = tmp_path_factory.mktemp("emb") / f"{request.param}.lstm"
    report = convert_torch(model, path, example_input=ex, lengths=[1, 7])
    return model, lstm_infer.load(path), report, dtype


def test_run_and_stream_match_torch(converted):
    model, m, report, dtype = converted
    assert report.verify.ok and report.verify.max_abs_error < TOL, report.verify
    assert m.input_size == 1
    X = ids(3, 11)
    want = torch_seq(model, X, dtype)
    assert err(m.run(X[..., None].astype(np.float32)), want) < TOL
    assert err(m.run(X[..., None]), want) < TOL            # ids as int64 numbers too
    for b in range(2):                                       # step() then chunks, state carried
        assert err(stream_rows(m, X[b, :, None].astype(np.float32), 3, b), want[b]) < TOL


def test_bad_id_raises_and_keeps_state(converted):
    model, m, _, _ = converted
    X = ids(1, 6)[0, :, None].astype(np.float32)
    with pytest.raises(ValueError, match=rf"token id 13 at index \(0, 2, 0\) is not an integer in \[0, {V}\)"):
        m.run(np.where(np.arange(6)[:, None] == 2, V, X)[None])
    s = m.stream()
    s.step_many(X[:3])
    for bad in (V, -1, 2.5):
        with pytest.raises(ValueError, match=rf"not an integer in \[0, {V}\).*state was left untouched"):
            s.step(np.array([bad], np.float32))
    with pytest.raises(ValueError, match="token id"):
        s.step_many(np.array([[1], [V + 4]], np.float32))
    rest = s.step_many(X[3:])
    assert err(rest, m.run(X[None])[0, 3:]) < TOL


def test_last_step_output_prefix_rows(tmp_path):
    """fc(out[:, -1]): row t of run() is torch on the ids up to step t."""
    model = Tagger(op="LSTM", last=True).eval()
    X = ids(2, 5)
    report = convert_torch(model, tmp_path / "last.lstm", example_input=torch.from_numpy(X),
                           lengths=[4])
    assert report.verify.ok, report.verify
    Y = lstm_infer.load(tmp_path / "last.lstm").run(X[..., None].astype(np.float32))
    for t in range(5):
        assert err(Y[:, t], torch_seq(model, X[:, :t + 1])) < TOL


def test_bidirectional_runs_only(tmp_path):
    model = Tagger(op="LSTM", bidirectional=True).eval()
    X = ids(2, 7)
    report = convert_torch(model, tmp_path / "bi.lstm", example_input=torch.from_numpy(X),
                           lengths=[3])
    m = lstm_infer.load(tmp_path / "bi.lstm")
    assert report.verify.ok and not report.verify.streamed
    assert err(m.run(X[..., None].astype(np.float32)), torch_seq(model, X)) < TOL
    with pytest.raises(NotStreamableError):
        m.stream()


def test_unbatched_ids_and_default_example(tmp_path):
    """(T,) ids for an unbatched call, and no example_input (random ids from the table)."""
    model = Tagger(op="GRU").eval()
    X = ids(1, 6)
    report = convert_torch(model, tmp_path / "u.lstm", example_input=torch.from_numpy(X[0]),
                           lengths=[3])
    assert report.verify.ok, report.verify
    assert err(lstm_infer.load(tmp_path / "u.lstm").run(X[0, :, None].astype(np.float32)),
               torch_seq(model, X)[0]) < TOL
    report = convert_torch(model, tmp_path / "d.lstm", lengths=[3])
    assert report.verify.ok and report.verify.max_abs_error < TOL


def test_pt2_file(tmp_path):
    model = Tagger(op="LSTM", cast=True).eval()
    ex = torch.from_numpy(ids(2, 5)).to(torch.int32)
    torch.export.save(torch.export.export(model, (ex,)), tmp_path / "m.pt2")
    report = convert_file(tmp_path / "m.pt2", tmp_path / "m.lstm")
    assert report.verify.ok and report.verify.max_abs_error < TOL, report.verify
    X = ids(2, 5, seed=4)
    got = lstm_infer.load(tmp_path / "m.lstm").run(X[..., None].astype(np.float32))
    assert err(got, torch_seq(model, X, torch.int32)) < TOL


def test_float_example_is_a_clear_error(tmp_path):
    with pytest.raises(ConversionError, match=r"nn.Embedding, which takes token ids: pass "
                                              r"example_input as integer ids \(torch.long\)"):
        convert_torch(Tagger(), tmp_path / "f.lstm", example_input=torch.randn(2, 5))
    with pytest.raises(ConversionError, match="conversion of the float model input to torch.int64"):
        convert_torch(Tagger(cast=True), tmp_path / "g.lstm", example_input=torch.randn(2, 5))


def test_unsupported_uses_are_refused(tmp_path):
    ex = torch.from_numpy(ids(2, 5))
    with pytest.raises(ConversionError, match="max_norm"):
        convert_torch(Tagger(max_norm=1.0), tmp_path / "n.lstm", example_input=ex)

    class Computed(Tagger):
        def forward(self, ids):
            return self.fc(self.rnn(self.emb(ids + 1))[0])

    with pytest.raises(ConversionError, match="indices computed from the model input"):
        convert_torch(Computed(), tmp_path / "c.lstm", example_input=ex)

    class AlsoFeature(Tagger):
        def forward(self, ids):
            return self.fc(self.rnn(self.emb(ids))[0]), ids.float() * 2

    with pytest.raises(ConversionError, match="feeds Linear; lstm-infer takes integer token ids "
                                              "only as indices into nn.Embedding"):
        convert_torch(AlsoFeature(), tmp_path / "a.lstm", example_input=ex)
    with pytest.raises(ValueError, match="token ids must be torch.int64 or torch.int32"):
        convert_torch(Tagger(), tmp_path / "u8.lstm", example_input=ex.to(torch.uint8))


@pytest.mark.parametrize("dtype", ["fp16", "int8"])
def test_compressed(tmp_path, dtype):
    """fp16/int8 files of a token model: the compression error is measured on valid ids."""
    model = Tagger().eval()
    report = convert_torch(model, tmp_path / "c.lstm", example_input=torch.from_numpy(ids(2, 5)),
                           dtype=dtype, lengths=[3])
    assert any(f"{dtype} weights: max abs difference" in w for w in report.warnings)
    X = ids(2, 9)
    got = lstm_infer.load(tmp_path / "c.lstm").run(X[..., None].astype(np.float32))
    assert err(got, torch_seq(model, X)) < 0.1


def test_state_dict_file(tmp_path):
    """emb.weight (V, D) followed by a layer taking D features: read as nn.Embedding."""
    model = Tagger(op="GRU").eval()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    report = convert_file(tmp_path / "m.pt", tmp_path / "m.lstm", lengths=[4])
    assert report.verify.ok and report.verify.max_abs_error < TOL, report.verify
    assert any(f"Embedding({V}, {D}) -> GRU" in w for w in report.warnings)
    X = ids(2, 6)
    got = lstm_infer.load(tmp_path / "m.lstm").run(X[..., None].astype(np.float32))
    assert err(got, torch_seq(model, X)) < TOL
    assert verify_file(tmp_path / "m.lstm", tmp_path / "m.pt").max_abs_error < TOL
