"""Train the two character taggers that examples/text_tagging.py runs, and write them as
examples/models/text_tagger_bilstm.lstm and examples/models/text_tagger_stream.lstm.

    pip install -e '.[torch]'
    python examples/train_text_tagging.py [--seconds 45]

Both read character ids (synthetic_text.encode) and output 5 tag logits per character
(synthetic_text.TAGS) for messages made by synthetic_text.py (batches of 32 from a pool of
30000 drawn from seed 0):
- bidirectional: nn.Embedding(96, 16) -> bidirectional nn.LSTM(16, 32) -> nn.Linear(64, 5);
  it sees the whole message (run() only);
- streaming: nn.Embedding(96, 16) -> nn.LSTM(16, 64) -> nn.Linear(64, 10); it can be
  stepped as text is typed. Logits 0-4: the tag of the character just typed, from the
  characters up to it; logits 5-9: the tag of the character LOOKAHEAD (8) steps back, which
  has seen the 8 characters after it (the decision revised with a short delay). After the
  message, LOOKAHEAD FLUSH ids (0) bring out the delayed tags of its last characters.
Each trains for a time budget on one CPU thread (Adam, learning rate 1e-2 decayed to 1e-3
over the budget; cross-entropy over the characters). A batch holds messages of one length,
so nothing is padded: the backward direction starts at each message's end without packing,
which cost 4x the time per batch (47 vs 12 ms of CPU for the bidirectional model).

Conversion: convert_torch with (B, T) int64 ids as the example input; nn.Embedding becomes
the runtime's Embedding op and the conversion report checks the file against torch fed the
same ids. (The bundled files were converted through ONNX, torch.onnx.export then
convert_onnx, before convert_torch took token ids; Taggers rebuilt from their weights and
converted by export() give identical run() outputs and scores.) At the end both files are
scored on five message sets of other seeds (the spread the test's bounds come from).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from synthetic_text import TAGS, VOCAB, batch, dataset  # noqa: E402
from text_tagging import FLUSH, LOOKAHEAD, score_all  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

MODELS = os.path.join(HERE, "models")
BI_OUT = os.path.join(MODELS, "text_tagger_bilstm.lstm")
STREAM_OUT = os.path.join(MODELS, "text_tagger_stream.lstm")
SCORE_SEEDS = (101, 102, 103, 104, 105)


class Tagger(nn.Module):
    """(B, T) int64 character ids -> (B, T, len(TAGS)) logits."""

    def __init__(self, hidden: int, bidirectional: bool, emb: int = 16):
        super().__init__()
        self.bidirectional = bidirectional
        self.emb = nn.Embedding(VOCAB, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True, bidirectional=bidirectional)
        # streaming: a second set of logits, for the character LOOKAHEAD steps back
        self.head = nn.Linear(hidden * (2 if bidirectional else 1),
                              len(TAGS) * (1 if bidirectional else 2))

    def forward(self, ids):
        return self.head(self.lstm(self.emb(ids))[0])


def train(model: Tagger, seconds: float, pool: list, rng: np.random.Generator,
          label: str) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)
    C = len(TAGS)
    lengths = np.array([len(t) for t, _ in pool])
    by_len = [np.nonzero(lengths == n)[0] for n in np.unique(lengths)]
    weight = np.array([len(g) for g in by_len], np.float64)
    t0, it = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        frac = (time.perf_counter() - t0) / seconds
        for g in opt.param_groups:      # 1e-2, decayed to 1e-3 over the budget
            g["lr"] = 1e-2 * 0.1 ** frac
        group = by_len[rng.choice(len(by_len), p=weight / weight.sum())]
        ids, tags, _ = batch([pool[i] for i in rng.choice(group, size=32)])
        if model.bidirectional:
            logits = model(torch.from_numpy(ids))
            loss = loss_fn(logits.reshape(-1, C), torch.from_numpy(tags).reshape(-1))
        else:   # LOOKAHEAD flush ids after the message; head 2 is LOOKAHEAD steps behind
            pad = np.full((len(ids), LOOKAHEAD), -1)
            logits = model(torch.from_numpy(np.concatenate([ids, np.full_like(pad, FLUSH)], 1)))
            now = torch.from_numpy(np.concatenate([tags, pad], 1))
            late = torch.from_numpy(np.concatenate([pad, tags], 1))
            loss = (loss_fn(logits[..., :C].reshape(-1, C), now.reshape(-1))
                    + loss_fn(logits[..., C:].reshape(-1, C), late.reshape(-1)))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        it += 1
        if it % 250 == 0:
            print(f"{label}: iter {it:5d}  {time.perf_counter() - t0:4.0f} s  "
                  f"loss {loss.item():.4f}", flush=True)
    model.eval()


def export(model: Tagger, path: str) -> None:
    from converters import convert_torch
    ids = torch.randint(0, VOCAB, (2, 20))  # (B, T) int64 character ids, as the model takes
    print(convert_torch(model, path, example_input=ids))
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=45.0, help="training budget per model")
    ap.add_argument("--seed", type=int, default=0, help="weights and training messages")
    ap.add_argument("--out-dir", default=MODELS, help="where the two .lstm files go")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    pool = dataset(30000, rng=rng)
    os.makedirs(args.out_dir, exist_ok=True)
    bi_out, stream_out = (os.path.join(args.out_dir, os.path.basename(p))
                          for p in (BI_OUT, STREAM_OUT))
    for hidden, bi, path, label in ((32, True, bi_out, "bidirectional"),
                                    (64, False, stream_out, "streaming")):
        model = Tagger(hidden, bi)
        train(model, args.seconds, pool, rng, label)
        export(model, path)

    import lstm_infer
    bi, st = lstm_infer.load(bi_out), lstm_infer.load(stream_out)
    print("\nentity F1 (exact spans) and NAME character F1 on 1000 messages of each seed:")
    for seed in SCORE_SEEDS:
        s = score_all(bi, st, dataset(1000, seed=seed))
        print(f"seed {seed}: " + ", ".join(f"{k} {v['entity_f1']:.3f} / {v['per_class'][1, 2]:.3f}"
                                           for k, v in s.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
