"""Keyword spotting with a streaming CTC model: characters as they are spoken, 10 ms at a time.

    python examples/speech_ctc.py        # no arguments, numpy + lstm-infer only

Loads examples/models/speech_ctc.lstm (one LSTM layer of 64 units and a linear head over
blank + 16 letters + word gap, trained with CTC loss by examples/train_speech_ctc.py and
converted with convert_torch), makes held-out utterances of synthetic tone-burst "speech"
(synthetic_speech.py: one to three words of a 10-word vocabulary, random pitch, timing,
loudness, 5-20 dB noise) and streams each one hop (80 samples, 10 ms) at a time:
FrameFeatures -> `stream.step()` -> `lstm_infer.ctc.GreedyCTC`, printing letters as they are
emitted and spotting a keyword the moment its last letter is (no vocabulary word is a prefix
of another). Each utterance is then decoded whole with `model.run` + `greedy_decode` (must
equal the stream) and + `beam_search` restricted to the vocabulary. Baseline: a per-frame
nearest-centroid classifier on the same features (centroids from labelled frames, which the
CTC model never saw) with runs collapsed and long silences read as word gaps. Prints
transcripts vs truth, character and word error rates, spotting delay, per-step latency
(median / p99 after warm-up) and the real-time factor, and saves speech_ctc.png: features,
per-frame letter posteriors and the emitted letters of one utterance.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from synthetic_speech import (BLANK, CHARSET, HOP, SR, VOCAB, FrameFeatures, dataset,  # noqa: E402
                              edit_distance)

import lstm_infer  # noqa: E402
from lstm_infer.ctc import GreedyCTC, beam_search, greedy_decode  # noqa: E402

MODEL = os.path.join(HERE, "models", "speech_ctc.lstm")
N_TEST = 200          # held-out utterances (seed below; training used seeds 100+)
SEED = 1001
CENTROID_SEED = 77    # labelled frames for the baseline's centroids
WARMUP = 20           # first steps left out of the latency statistics
GAP_FRAMES = 10       # baseline: a silence this long (100 ms) between letters is a word gap
MIN_RUN = 3           # baseline: letter runs shorter than this (30 ms) are dropped as noise
SHOW = 5              # utterances printed in full


def error_rates(hyps: list[str], refs: list[str]) -> tuple[float, float]:
    """(character error rate, word error rate): edits / reference length over the set."""
    cer = sum(edit_distance(h, r) for h, r in zip(hyps, refs)) / sum(len(r) for r in refs)
    wer = (sum(edit_distance(h.split(), r.split()) for h, r in zip(hyps, refs))
           / sum(len(r.split()) for r in refs))
    return cer, wer


def centroid_baseline(train_feats, train_labels):
    """Per-frame nearest centroid over the classes (0: silence, letters), then decoding by
    runs: drop runs shorter than MIN_RUN frames, collapse repeats, and a silence of at least
    GAP_FRAMES between letters becomes a word gap."""
    F, L = np.concatenate(train_feats), np.concatenate(train_labels)
    classes = np.unique(L)
    C = np.stack([F[L == k].mean(0) for k in classes])

    def decode(feats: np.ndarray) -> str:
        d = ((feats[:, None, :] - C[None]) ** 2).sum(-1)
        pred = classes[d.argmin(1)]
        edges = np.flatnonzero(np.diff(pred)) + 1
        starts, ends = np.r_[0, edges], np.r_[edges, len(pred)]
        text, silence = "", 0
        for a, b in zip(starts, ends):
            k = int(pred[a])
            if k == 0 or b - a < MIN_RUN:
                silence += b - a
                continue
            if text and silence >= GAP_FRAMES:
                text += " "
            if not text or silence > 0 or text[-1] != CHARSET[k]:
                text += CHARSET[k]
            silence = 0
        return text
    return decode


def word_end_frames(labels: np.ndarray, text: str) -> list[int]:
    """The frame where each word's last letter ends (letter runs of the frame labels, in
    the order of the text's letters)."""
    on = labels > 0
    ends = np.flatnonzero(on & ~np.r_[on[1:], False])
    last, out = -1, []
    for w in text.split():
        last += len(w)
        out.append(int(ends[last]))
    return out


def save_plot(path: str, feats, post, emitted, text, labels) -> str:
    """feats (T, 24), post (T, V) softmax, emitted [(frame, char)], labels (T,) the true
    letter of each frame (written over the features)."""
    T = len(feats)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _save_plain(path, feats, post)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True,
                                 gridspec_kw={"height_ratios": [1, 1.2]})
    ms = np.arange(T) * 1000 * HOP / SR
    a1.imshow(feats.T, origin="lower", aspect="auto", cmap="magma",
              extent=(ms[0], ms[-1] + 10, 0, feats.shape[1]))
    a1.set_ylabel("log mel band")
    on = labels > 0
    for a in np.flatnonzero(on & ~np.r_[False, on[:-1]]):
        b = a + int(np.argmin(on[a:])) if not on[a:].all() else len(on)
        a1.text((ms[a] + ms[b - 1]) / 2 + 5, feats.shape[1] - 2.5, CHARSET[labels[a]],
                color="cyan", ha="center", fontsize=10, fontweight="bold",
                bbox=dict(fc="black", alpha=0.6, lw=0, pad=1))
    a1.set_title(f"streamed utterance \"{text}\": features, per-frame CTC posteriors, "
                 "emitted letters", fontsize=10)
    a2.plot(ms, post[:, BLANK], color="0.75", lw=1, label="blank")
    cmap = plt.get_cmap("tab20")
    for k in range(1, post.shape[1]):
        if post[:, k].max() > 0.2:
            a2.plot(ms, post[:, k], lw=1.4, color=cmap(k % 20),
                    label="gap" if CHARSET[k] == " " else CHARSET[k])
    for t, c in emitted:
        a2.annotate("_" if c == " " else c, (ms[t], 1.03), ha="center", fontsize=11,
                    fontweight="bold", annotation_clip=False)
        a1.axvline(ms[t], color="white", lw=0.6, alpha=0.7)
    a2.set_ylim(0, 1.12)
    a2.set_ylabel("posterior")
    a2.set_xlabel("time, ms (one model step per 10 ms)")
    a2.legend(fontsize=7, ncol=9, loc="center left", bbox_to_anchor=(0, 0.55))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return "matplotlib"


def _save_plain(path: str, feats, post) -> str:
    """Without matplotlib: the features over the letter posteriors (blank left out), dark =
    high, 3 px per frame and row."""
    from convlstm_moving_shapes import write_png
    f = (feats - feats.min()) / (np.ptp(feats) + 1e-9)
    img = np.concatenate([f.T[::-1], np.full((2, len(feats)), 0.5), 1 - post[:, 1:].T])
    write_png(path, np.repeat(np.repeat(img, 3, 0), 3, 1))
    return "numpy PNG writer"


def main() -> int:
    model = lstm_infer.load(MODEL)
    print(model)
    feats, texts, labels, audio = dataset(N_TEST, seed=SEED)
    stream = model.stream()
    y = np.empty(model.output_size, np.float32)
    step_ns, total_ns, n_frames = [], 0, 0
    streamed, spotted_ok, delays, same, max_diff = [], 0, [], 0, 0.0
    shown = None
    for i, (a, text) in enumerate(zip(audio, texts)):
        stream.reset()
        ff, dec = FrameFeatures(), GreedyCTC(BLANK, CHARSET)
        out, word, spots, rows, emitted = "", "", [], [], []
        if i < SHOW:
            print(f"utterance {i}, truth \"{text}\", streamed letters:", end=" ")
        for t in range(len(a) // HOP):
            t0 = time.thread_time_ns()
            x = ff.push(a[t * HOP:(t + 1) * HOP])
            t1 = time.thread_time_ns()
            stream.step(x, out=y)
            t2 = time.thread_time_ns()
            new = dec.push(y)
            total_ns += time.thread_time_ns() - t0
            step_ns.append(t2 - t1)
            rows.append(y.copy())
            for c in new:
                emitted.append((t, c))
                out += c
                word = "" if c == " " else word + c
                if i < SHOW:
                    print("_" if c == " " else c, end=" ")
                if word in VOCAB:                           # no keyword is a prefix of another
                    spots.append((word, t))
                    if i < SHOW:
                        print(f"[spotted {word} @ {(t + 1) * HOP / SR:.2f} s]", end=" ")
        n_frames += len(a) // HOP
        streamed.append(out)
        Y = model.run(feats[i])                             # the whole utterance at once
        same += greedy_decode(Y, BLANK, CHARSET) == out
        max_diff = max(max_diff, float(np.abs(np.array(rows) - Y).max()))
        if [w for w, _ in spots] == text.split():
            spotted_ok += 1
            delays += [(t - e) * 10 for (_, t), e in zip(spots, word_end_frames(labels[i], text))]
        if shown is None and len(text.split()) == 3 and out == text:
            shown = (i, np.array(rows), emitted)
        if i < SHOW:
            print(f"-> \"{out}\"")

    us = np.array(step_ns[WARMUP:]) / 1e3
    audio_s = n_frames * HOP / SR
    print(f"\nper-step latency of stream.step over {len(us)} steps (10 ms of audio each): "
          f"median {np.median(us):.1f} us, p99 {np.percentile(us, 99):.1f} us")
    print(f"real-time factor (thread CPU time / audio time): features + step + greedy decode "
          f"{total_ns / 1e9 / audio_s:.4f}, stream.step alone {np.sum(step_ns) / 1e9 / audio_s:.4f}"
          f" ({audio_s:.0f} s of audio)")
    print(f"streamed greedy == run()+greedy_decode on {same}/{N_TEST} utterances "
          f"(max |step - run| logit difference {max_diff:.1e})")

    t0 = time.thread_time_ns()
    beam = [beam_search(model.run(f), beam_width=8, scores="logits", charset=CHARSET,
                        lexicon=set(VOCAB), top_k=3) for f in feats]
    beam_ms = (time.thread_time_ns() - t0) / 1e6 / N_TEST
    cf, _, cl, _ = dataset(300, seed=CENTROID_SEED)
    base = centroid_baseline(cf, cl)
    baseline = [base(f) for f in feats]

    print(f"\n{'truth':22s} {'streamed greedy':22s} {'beam + lexicon':22s} {'frame baseline':22s}")
    for i in range(SHOW):
        print(f"{texts[i]:22s} {streamed[i]:22s} {beam[i]:22s} {baseline[i]:22s}")
    n_words = sum(len(t.split()) for t in texts)
    print(f"\n{N_TEST} held-out utterances ({n_words} words, seed {SEED}):")
    print(f"{'decoder':34s} {'CER':>7s} {'WER':>7s}")
    res = {}
    for name, hyps in (("streamed greedy CTC (lstm-infer)", streamed),
                       ("run() + beam search, lexicon", beam),
                       ("per-frame nearest centroid", baseline)):
        res[name] = error_rates(hyps, texts)
        print(f"{name:34s} {res[name][0]:7.3f} {res[name][1]:7.3f}")
    acc = [1 - res[k][1] for k in res]
    print(f"word accuracy: greedy {acc[0]:.3f}, beam+lexicon {acc[1]:.3f}, "
          f"frame baseline {acc[2]:.3f}")
    print(f"beam search (width 8, top 3 classes per step, lexicon of {len(VOCAB)} words): "
          f"{beam_ms:.0f} ms per utterance")
    diff = [i for i in range(N_TEST) if beam[i] != streamed[i]]
    fixed = sum(beam[i] == texts[i] for i in diff)
    print(f"beam + lexicon differs from streamed greedy on {len(diff)} utterances: "
          f"corrects {fixed}, breaks {sum(streamed[i] == texts[i] for i in diff)}")
    if delays:
        print(f"keywords spotted in full in {spotted_ok}/{N_TEST} utterances; spotted at, relative "
              f"to the end of the word's last letter: median {np.median(delays):+.0f} ms, "
              f"p90 {np.percentile(delays, 90):+.0f} ms (negative: before it ends; the model "
              "learned the vocabulary and completes a word once its start is unambiguous)")

    if shown is None:
        shown = (0, None, None)
    i, rows, emitted = shown
    if rows is None:
        rows, emitted = model.run(feats[0]), []
    post = np.exp(rows - rows.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    how = save_plot("speech_ctc.png", feats[i], post, emitted, texts[i], labels[i])
    print(f"saved speech_ctc.png ({how}): features, per-frame posteriors and emitted letters of "
          f"utterance {i}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
