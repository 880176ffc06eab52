"""CTC decoding of a model's per-step class scores (speech, handwriting, OCR heads).

A CTC head emits, at every time step, a distribution over V classes, one of which is the
blank. Decoding turns the (T, V) scores into a labelling: repeated classes collapse and
blanks drop. Two decoders:

- greedy (best path): the argmax class per step; a label is emitted when the argmax
  changes and is not blank. `GreedyCTC` does this one step at a time with its state kept,
  so it decodes `Stream.step()` outputs as they arrive; `greedy_decode` does a whole
  sequence. The argmax is the same for logits, probabilities and log-probabilities, so
  greedy takes any of them.
- prefix beam search (`beam_search`): keeps the `beam_width` most probable labellings,
  each with the summed probability of all its alignments (blank-ending and
  non-blank-ending parts apart), optionally restricted to a character set or to a
  lexicon of words. With a beam as wide as the number of labellings it is exact
  (tests/test_ctc.py checks it against brute-force enumeration of every alignment).

numpy only, pure Python loops over beams: meant for the decode after a model, not a
hot per-step kernel. Scores are read as `scores="log_probs"` (default: log-softmax
outputs, -inf allowed), `"probs"` (softmax outputs) or `"logits"` (log-softmax applied).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

__all__ = ["GreedyCTC", "greedy_decode", "beam_search", "beam_search_hypotheses"]

SCORES = ("log_probs", "probs", "logits")
Labels = "tuple[int, ...] | str"


def _check_blank(blank: int, V: int | None = None) -> int:
    if isinstance(blank, bool) or not isinstance(blank, (int, np.integer)):
        raise TypeError(f"blank must be a class index (int), got {type(blank).__name__}")
    if blank < 0 or (V is not None and blank >= V):
        raise ValueError(f"blank={blank} is not a class index in [0, {V})")
    return int(blank)


def _check_charset(charset: Sequence[str] | str | None, V: int, blank: int) -> Sequence[str] | None:
    if charset is None:
        return None
    if len(charset) not in (V, V - 1):
        raise ValueError(f"charset has {len(charset)} entries; expected {V} (one per class, the "
                         f"blank's entry ignored) or {V - 1} (one per non-blank class)")
    if len(charset) == V - 1:  # one entry per non-blank class: put a placeholder at blank
        charset = list(charset[:blank]) + [""] + list(charset[blank:])
    return charset


def _spell(labels: Iterable[int], charset: Sequence[str] | None):
    labels = tuple(int(k) for k in labels)
    return labels if charset is None else "".join(charset[k] for k in labels)


def _scores_2d(Y, name: str = "Y") -> np.ndarray:
    Y = np.asarray(Y)
    if Y.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers (class scores), got dtype {Y.dtype}")
    if Y.ndim != 2 or Y.shape[1] < 2:
        raise ValueError(f"{name} must have shape (T, V) with V >= 2 classes (blank included), "
                         f"got {Y.shape}")
    if np.isnan(Y).any():
        raise ValueError(f"{name} contains NaN")
    return Y


def _log_probs(Y, scores: str) -> np.ndarray:
    """(T, V) float64 log-probabilities from any of the accepted score kinds."""
    if scores not in SCORES:
        raise ValueError(f"scores must be one of {SCORES}, got {scores!r}")
    Y = _scores_2d(Y).astype(np.float64)
    if scores == "probs":
        if (Y < 0).any() or (Y > 1 + 1e-6).any():
            raise ValueError("scores='probs' but Y has values outside [0, 1]; pass "
                             "scores='logits' or 'log_probs' for other outputs")
        with np.errstate(divide="ignore"):
            return np.log(Y)
    if scores == "logits":
        m = Y.max(axis=1, keepdims=True)
        return Y - m - np.log(np.exp(Y - m).sum(axis=1, keepdims=True))
    if (Y > 1e-4).any():
        raise ValueError("scores='log_probs' but Y has positive values; pass scores='logits' "
                         "for unnormalised outputs or 'probs' for softmax outputs")
    return Y


class GreedyCTC:
    """Streaming best-path decoder: `push(row)` takes one step's V scores (logits,
    probabilities or log-probabilities: only the argmax matters) and returns the labels
    that step completes: [k] when the argmax k differs from the previous step's and is
    not blank, else []. With `charset` the labels are strings (charset[k])."""

    def __init__(self, blank: int = 0, charset: Sequence[str] | str | None = None):
        self.blank = _check_blank(blank)
        self._charset_arg = charset
        self._charset: Sequence[str] | None = None
        self._V: int | None = None
        self._prev = -1  # argmax of the previous step; -1: none yet

    def reset(self) -> None:
        """Forget the previous step (a new utterance starts)."""
        self._prev = -1

    def push(self, row) -> list:
        row = np.asarray(row)
        if row.ndim != 1:
            raise ValueError(f"push takes one step's scores, shape (V,), got {row.shape}; use "
                             "push_many for (T, V)")
        return self.push_many(row[None, :])

    def push_many(self, Y) -> list:
        """T steps at once; identical to T calls of push(), labels concatenated."""
        Y = _scores_2d(Y)
        V = Y.shape[1]
        if self._V is None:
            _check_blank(self.blank, V)
            self._charset = _check_charset(self._charset_arg, V, self.blank)
            self._V = V
        elif V != self._V:
            raise ValueError(f"expected {self._V} classes per step (as before), got {V}")
        best = Y.argmax(axis=1)
        prev = np.concatenate(([self._prev], best[:-1]))
        emit = best[(best != prev) & (best != self.blank)]
        self._prev = int(best[-1]) if len(best) else self._prev
        if self._charset is None:
            return [int(k) for k in emit]
        return [self._charset[k] for k in emit]


def greedy_decode(Y, blank: int = 0, charset: Sequence[str] | str | None = None):
    """Best-path decode of a whole (T, V) sequence of scores (any kind: only the argmax
    matters): a tuple of class indices, or a string with `charset`."""
    labels = GreedyCTC(blank).push_many(Y)
    return _spell(labels, _check_charset(charset, np.shape(Y)[1], blank))


class _Constraint:
    """Which labellings the search may keep: every class allowed (None), those of a
    character set, or the word sequences of a lexicon (words separated by `separator`;
    the last, unfinished word must be the start of a lexicon word)."""

    def __init__(self, lexicon, charset, separator: str, V: int, blank: int):
        self.allowed = np.array([k for k in range(V) if k != blank], np.int64)
        self.words = self.prefixes = None
        self.charset, self.separator = charset, separator
        if lexicon is None:
            return
        if isinstance(lexicon, str):
            raise TypeError("lexicon must be a collection of words or characters (a set, list), "
                            "not one string")
        lexicon = set(lexicon)
        if charset is None:
            raise ValueError("a lexicon needs a charset (the string of each class) to spell "
                             "labellings with")
        if lexicon and all(len(w) == 1 for w in lexicon):  # a character set
            self.allowed = np.array([k for k in self.allowed if charset[k] in lexicon], np.int64)
            return
        self.words = lexicon
        self.prefixes = {w[:i] for w in lexicon for i in range(len(w) + 1)}
        self.allowed = np.array([k for k in self.allowed if charset[k] == separator or
                                 any(charset[k] in w for w in lexicon)], np.int64)

    def ok(self, labels: tuple[int, ...], final: bool = False) -> bool:
        if self.words is None:
            return True
        text = "".join(self.charset[k] for k in labels)
        *done, last = text.split(self.separator)
        if any(w not in self.words for w in done if w):
            return False
        return (last in self.words or last == "") if final else last in self.prefixes


def beam_search_hypotheses(Y, beam_width: int = 16, blank: int = 0, scores: str = "log_probs",
                           lexicon: Iterable[str] | None = None,
                           charset: Sequence[str] | str | None = None, separator: str = " ",
                           top_k: int | None = None) -> list[tuple]:
    """CTC prefix beam search over (T, V) scores; returns up to `beam_width` pairs
    (labels, log-probability of the labelling: all its alignments summed), best first.

    `lexicon`: a set of allowed words (labellings are words joined by `separator`) or of
    allowed characters; needs `charset`, the string of each class. `top_k` considers only
    the k most probable classes per step (for large vocabularies; None: all of them).
    """
    if not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive integer, got {beam_width!r}")
    lp = _log_probs(Y, scores)
    T, V = lp.shape
    blank = _check_blank(blank, V)
    charset = _check_charset(charset, V, blank)
    rule = _Constraint(lexicon, charset, separator, V, blank)
    # prefix -> [log P(prefix, alignment ends in blank), log P(..., ends in a label)]
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, -np.inf]}
    for t in range(T):
        row = lp[t]
        cand = rule.allowed
        if top_k is not None and top_k < len(cand):
            cand = cand[np.argsort(row[cand])[-top_k:]]
        cand = cand[row[cand] > -np.inf]
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, i, value):
            slot = nxt.setdefault(prefix, [-np.inf, -np.inf])
            slot[i] = np.logaddexp(slot[i], value)

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, 0, total + row[blank])
            last = prefix[-1] if prefix else -1
            for k in cand:
                k = int(k)
                if k == last:
                    add(prefix, 1, pnb + row[k])       # repeat without blank: same labelling
                    extended = pb + row[k]              # a blank between: a new label
                else:
                    extended = total + row[k]
                new = prefix + (k,)
                if extended > -np.inf and rule.ok(new):
                    add(new, 1, extended)
        ranked = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))
        beams = dict(ranked[:beam_width])
    out = [(labels, float(np.logaddexp(*p))) for labels, p in beams.items()
           if rule.ok(labels, final=True) and np.logaddexp(*p) > -np.inf]
    out.sort(key=lambda lv: -lv[1])
    return [(_spell(labels, charset), logp) for labels, logp in out]


def beam_search(Y, beam_width: int = 16, blank: int = 0, scores: str = "log_probs",
                lexicon: Iterable[str] | None = None, charset: Sequence[str] | str | None = None,
                separator: str = " ", top_k: int | None = None):
    """The most probable labelling found by prefix beam search (see beam_search_hypotheses):
    a tuple of class indices, or a string with `charset`. Raises ValueError when no
    labelling satisfies the lexicon."""
    hyps = beam_search_hypotheses(Y, beam_width, blank, scores, lexicon, charset, separator, top_k)
    if not hyps:
        raise ValueError("no labelling within the beam satisfies the lexicon (widen beam_width, "
                         "or check that the lexicon's words can be spelled with the charset)")
    return hyps[0][0]
