"""Character-level entity tagging of order-desk messages: a bidirectional LSTM on whole
messages with run(), and a streaming LSTM stepped one character at a time as text is typed.

    python examples/text_tagging.py      # no arguments, numpy + lstm-infer only

Loads examples/models/text_tagger_bilstm.lstm (Embedding 96x16 -> bidirectional LSTM 32 ->
Linear 64->5) and examples/models/text_tagger_stream.lstm (Embedding 96x16 -> LSTM 64 ->
Linear 64->10), both trained in PyTorch by examples/train_text_tagging.py and converted
through ONNX. Their input is character ids (synthetic_text.encode): run() takes (T, 1) or
(B, T, 1) ids, step() one id. The streaming model gives two answers per step: the tag of
the character just typed (logits 0-4) and the tag of the character LOOKAHEAD = 8 steps
back (logits 5-9), which has seen what followed it; LOOKAHEAD FLUSH ids after a message
bring out the delayed tags of its last characters. They tag names, dates, amounts and
product codes in 1000 fresh messages of synthetic_text.py; the baseline is regex_tagger.py
(a regular expression for every format the generator writes plus a first-name lexicon).
Prints per-class precision / recall / F1 over characters, exact-span entity F1 and how the
missed entities went wrong, for each tagger; one message with its tags; run() throughput
(one batch, CPU time of the thread since the machine may be shared) and per-message
latency; the per-character latency of stream.step (median / p99); checks that stepping the
streaming model equals its run(); and saves text_tagging.png (in the current directory):
per-character tag probabilities of both models over one message.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from regex_tagger import class_scores, entity_f1, miss_kinds, rule_tags  # noqa: E402
from synthetic_text import TAGS, batch, dataset, encode  # noqa: E402

import lstm_infer  # noqa: E402

BI_MODEL = os.path.join(HERE, "models", "text_tagger_bilstm.lstm")
STREAM_MODEL = os.path.join(HERE, "models", "text_tagger_stream.lstm")
N_MESSAGES = 1000
SEED = 7            # the evaluation messages (training drew from seed 0's stream)
SHOWN = "Refund of 1343 euros to Garfe on 2019-09-02, ticket 99."
LOOKAHEAD = 8       # the streaming model's second head: tags this many characters back
FLUSH = 0           # id fed LOOKAHEAD times after a message to bring out its last tags
LETTER = ".NDAC"    # one letter per tag in the printed tag lines: O NAME DATE AMOUNT CODE
WARMUP = 20


def softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def predict(model, pairs: list) -> list:
    """Per-message tag probabilities of the bidirectional model, from one batched run() with
    each message's length."""
    ids, _, lens = batch(pairs)
    logits = model.run(ids[:, :, None], lengths=lens)          # (B, T, 5)
    return [softmax(logits[k, :n]) for k, n in enumerate(lens)]


def predict_stream(model, pairs: list) -> tuple[list, list]:
    """Per-message tag probabilities of the streaming model as each character is typed
    (logits 0-4) and LOOKAHEAD characters later (logits 5-9, read LOOKAHEAD steps after the
    character; FLUSH ids follow each message), from one batched run()."""
    ids, _, lens = batch(pairs)
    ids = np.concatenate([ids, np.zeros((len(ids), LOOKAHEAD), np.int64)], 1)
    for k, n in enumerate(lens):
        ids[k, n:n + LOOKAHEAD] = FLUSH
    logits = model.run(ids[:, :, None], lengths=lens + LOOKAHEAD)   # (B, T + LOOKAHEAD, 10)
    C = len(TAGS)
    return ([softmax(logits[k, :n, :C]) for k, n in enumerate(lens)],
            [softmax(logits[k, LOOKAHEAD:n + LOOKAHEAD, C:]) for k, n in enumerate(lens)])


def score(truths: list, preds: list) -> dict:
    t, p = np.concatenate(truths), np.concatenate(preds)
    return {"per_class": class_scores(t, p), "entity_f1": entity_f1(truths, preds),
            "accuracy": float(np.mean(t == p)), "misses": miss_kinds(truths, preds)}


def score_all(bi, stream, pairs: list) -> dict:
    """Scores of the bidirectional model, the streaming one as typed and LOOKAHEAD characters
    later, and the regex baseline."""
    truths = [g for _, g in pairs]
    now, late = predict_stream(stream, pairs)
    return {"bidirectional": score(truths, [p.argmax(-1) for p in predict(bi, pairs)]),
            "stream, typed": score(truths, [p.argmax(-1) for p in now]),
            f"stream, +{LOOKAHEAD}": score(truths, [p.argmax(-1) for p in late]),
            "regex+lexicon": score(truths, [rule_tags(t) for t, _ in pairs])}


def print_scores(res: dict) -> None:
    print(f"{'tagger':14s} {'tag':7s} {'precision':>9s} {'recall':>7s} {'F1':>6s}")
    for name, d in res.items():
        for k, tag in enumerate(TAGS):
            p, r, f = d["per_class"][k]
            print(f"{name if k == 0 else '':14s} {tag:7s} {p:9.3f} {r:7.3f} {f:6.3f}")
    for name, d in res.items():
        print(f"{name}: entity F1 {d['entity_f1']:.3f}, character accuracy {d['accuracy']:.4f}")
        for tag, kinds in d["misses"].items():
            print(f"    missed {tag:6s} {sum(kinds.values()):4d}: "
                  + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda x: -x[1])))


def stream_text(model, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Step the streaming model one character at a time, as if typed, then LOOKAHEAD FLUSH
    ids: the logits after each step and each step's latency in ns."""
    s = model.stream()
    ids = np.concatenate([encode(text), np.full(LOOKAHEAD, FLUSH)])
    out = np.empty((len(ids), 2 * len(TAGS)), np.float32)
    ns = np.empty(len(ids), np.int64)
    for t, c in enumerate(ids):
        t0 = time.perf_counter_ns()
        out[t] = s.step(np.array([c], np.float32))
        ns[t] = time.perf_counter_ns() - t0
    return out, ns


def save_plot(path: str, text: str, maps: list) -> str:
    """maps: (title, (T, 5) probabilities) per panel."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _save_plain(path, [p for _, p in maps])
    fig, axes = plt.subplots(len(maps), 1, figsize=(12, 1.9 * len(maps)), sharex=True)
    for ax, (title, p) in zip(axes, maps):
        ax.imshow(p.T, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(range(len(TAGS)))
        ax.set_yticklabels(TAGS, fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[-1].set_xticks(range(len(text)))
    axes[-1].set_xticklabels(list(text), fontsize=8, family="monospace")
    fig.suptitle("per-character tag probabilities (dark = likely)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return "matplotlib"


def _save_plain(path: str, maps: list) -> str:
    """Without matplotlib: the probability maps (tags down, characters across, dark =
    likely) one under the other, 8x8 pixels per cell."""
    from convlstm_moving_shapes import write_png
    gap = np.ones((1, maps[0].shape[0]), np.float32)
    rows = [r for p in maps for r in (p.T, gap)][:-1]
    img = 1 - np.concatenate(rows).astype(np.float32)
    write_png(path, np.kron(img, np.ones((8, 8), np.float32)))
    return "numpy PNG writer"


def main() -> int:
    bi, st = lstm_infer.load(BI_MODEL), lstm_infer.load(STREAM_MODEL)
    print(bi)
    print(st)
    pairs = dataset(N_MESSAGES, seed=SEED)
    n_chars = sum(len(t) for t, _ in pairs)
    res = score_all(bi, st, pairs)
    print(f"\n{N_MESSAGES} messages ({n_chars} characters, seed {SEED}), scored per character;"
          f" 'stream, typed': the streaming model's tag as the character is typed, 'stream, "
          f"+{LOOKAHEAD}': its second head, {LOOKAHEAD} characters later")
    print_scores(res)

    logits, _ = stream_text(st, SHOWN)
    ref = st.run(np.concatenate([encode(SHOWN), np.full(LOOKAHEAD, FLUSH)])[:, None])
    step_err = float(np.abs(logits - ref).max())
    print(f"\nstreaming model stepped one character at a time vs its run(): max abs "
          f"difference {step_err:.2e}")
    C, n = len(TAGS), len(SHOWN)
    p_bi = predict(bi, [(SHOWN, np.zeros(n, np.int64))])[0]
    p_now, p_late = softmax(logits[:n, :C]), softmax(logits[LOOKAHEAD:, C:])
    print(f"\none message (N name, D date, A amount, C code; 'typed': the streaming tag of "
          f"each character as it was typed, '+{LOOKAHEAD}': {LOOKAHEAD} characters later):")
    for name, tags in (("text", None), ("bi", p_bi.argmax(-1)), ("typed", p_now.argmax(-1)),
                       (f"+{LOOKAHEAD}", p_late.argmax(-1)), ("regex", rule_tags(SHOWN))):
        print(f"  {name:6s}|" + (SHOWN if tags is None else "".join(LETTER[k] for k in tags)))

    ids, _, lens = batch(pairs)
    X = ids[:, :, None]
    bi.run(X[:8], lengths=lens[:8])                            # warm
    t0, c0 = time.perf_counter(), time.thread_time()
    bi.run(X, lengths=lens)
    sec, cpu = time.perf_counter() - t0, time.thread_time() - c0
    print(f"\nrun() of the bidirectional model on all {N_MESSAGES} messages (one batch): "
          f"{sec * 1e3:.0f} ms wall, {cpu * 1e3:.0f} ms CPU of this thread = "
          f"{N_MESSAGES / cpu:,.0f} messages/s, {n_chars / cpu / 1e6:.2f} M characters/s")
    one = []
    for text, _ in pairs[:200]:
        x = encode(text)[:, None]
        t0 = time.perf_counter_ns()
        bi.run(x)
        one.append((time.perf_counter_ns() - t0) / 1e3)
    print(f"run() on one message at a time ({np.mean([len(t) for t, _ in pairs[:200]]):.0f} "
          f"characters on average): median {np.median(one):.0f} us, "
          f"p99 {np.percentile(one, 99):.0f} us per message")
    lat = np.concatenate([stream_text(st, t)[1] for t, _ in pairs[:40]])  # flush included
    us = lat[WARMUP:] / 1e3
    print(f"stream.step latency per character over {len(us)} characters: median "
          f"{np.median(us):.1f} us, p99 {np.percentile(us, 99):.1f} us")
    b, s, la, r = (d["entity_f1"] for d in res.values())
    print(f"entity F1: bidirectional {b:.3f}, streaming as typed {s:.3f}, streaming "
          f"{LOOKAHEAD} characters later {la:.3f}, regex+lexicon {r:.3f}")
    how = save_plot("text_tagging.png", SHOWN, [
        ("bidirectional LSTM, run() on the whole message", p_bi),
        ("streaming LSTM, stream.step(): the tag as each character is typed", p_now),
        (f"streaming LSTM, second head: the tag {LOOKAHEAD} characters later", p_late)])
    print(f"saved text_tagging.png ({how}): per-character tag probabilities of both models")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
