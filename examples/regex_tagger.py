"""The baseline for examples/text_tagging.py: what one writes without a model, regular
expressions for each entity's formats plus a first-name lexicon, and the scores both are
judged by (per-class precision / recall / F1 over characters, exact-span entity F1).

The rules know every date, amount and code format the generator writes (synthetic_text.py),
so they are a strong baseline on those; they miss what needs context: a lower-case name
without a lexicon first name, a city that is also a first name, a name given as "J. Smith"
in lower case.
"""
from __future__ import annotations

import re

import numpy as np

from synthetic_text import AMOUNT, CITY, CODE, DATE, FIRST, LAST, NAME, TAGS

_MON = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
_NUM = r"\d+(?:,\d{3})*(?:\.\d\d)?"
RULES = (  # (tag, pattern), applied in this order, then the names (_name_spans)
    (DATE, rf"\b\d{{4}}-\d\d-\d\d\b|\b\d\d/\d\d/\d{{4}}\b|\b\d\d\.\d\d\.\d\d\b"
           rf"|\b\d{{1,2}} {_MON}(?: \d{{4}})?\b|\b{_MON} \d{{1,2}}(?:, \d{{4}})?\b"),
    (AMOUNT, rf"\${_NUM}|\b(?:usd|eur|gbp|chf) {_NUM}|\b{_NUM} (?:usd|eur|gbp|chf|euros)\b"),
    (CODE, r"\b[a-z]{2}-\d{4}\b|\b\d{4}-[a-z]{2}\b|\b[a-z]\d-\d{3}-[a-z]\b|\b[a-z]{3}\d{3}\b"
           r"|\bsku-\d{5}\b"),
)
_FIRST = "|".join(f.lower() for f in FIRST)
_LAST = {w.lower() for w in LAST}
_CITY = {w.lower() for w in CITY}


def _name_spans(text: str, low: str) -> list:
    """Names: the word after a title ("Ms. Lopez"); a lexicon first name with an initial or a
    surname after it (a lexicon surname, or any capitalised word when the message is not all
    lower case), alone unless it is also a city and follows "to"/"in"; an initial and a
    surname ("J. Smith")."""
    out = [m.span(1) for m in re.finditer(r"\b(?:mr|ms|mrs|dr)\. ([a-z]+)", low)]
    for m in re.finditer(rf"\b(?:{_FIRST})\b", low):
        start, end = m.span()
        nxt = re.match(r" ([a-z]\.|[a-z]+\b)", low[end:])
        if nxt:
            w, orig = nxt.group(1), text[end + 1:end + 1 + len(nxt.group(1))]
            if w.endswith(".") or w in _LAST or (orig[0].isupper() and text != low):
                out.append((start, end + 1 + len(w)))
                continue
        if not (low[start:end] in _CITY and re.search(r"\b(?:to|in) $", low[:start])):
            out.append((start, end))
    out += [m.span() for m in re.finditer(r"\b[a-z]\. ([a-z]+)\b", low)
            if m.group(1) in _LAST or text[m.start(1)].isupper()]
    # two capitalised words that do not start the message ("Kalo Tami")
    out += [m.span() for m in re.finditer(r"(?<=[a-z,:;(] )[A-Z][a-z]+ [A-Z][a-z]+\b", text)]
    return out


def rule_tags(text: str) -> np.ndarray:
    """Per-character tags (int64) from the rules, case-insensitive."""
    tags = np.zeros(len(text), np.int64)
    low = text.lower()
    for tag, pat in RULES:
        for m in re.finditer(pat, low):
            tags[m.start():m.end()] = tag
    for start, end in _name_spans(text, low):
        tags[start:end] = NAME
    return tags


def class_scores(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(len(TAGS), 3) precision, recall, F1 per tag over characters."""
    out = np.zeros((len(TAGS), 3))
    for k in range(len(TAGS)):
        tp = np.sum((pred == k) & (truth == k))
        p = tp / max(np.sum(pred == k), 1)
        r = tp / max(np.sum(truth == k), 1)
        out[k] = p, r, 2 * p * r / max(p + r, 1e-12)
    return out


def spans(tags: np.ndarray) -> set:
    """(start, end, tag) of each maximal run of one non-O tag."""
    out, start = set(), 0
    for i in range(1, len(tags) + 1):
        if i == len(tags) or tags[i] != tags[start]:
            if tags[start] != 0:
                out.add((start, i, int(tags[start])))
            start = i
    return out


def entity_f1(truths: list, preds: list) -> float:
    """Micro F1 of exactly matched entity spans (start, end and type all right)."""
    tp = n_pred = n_true = 0
    for t, p in zip(truths, preds):
        st, sp = spans(t), spans(p)
        tp += len(st & sp)
        n_pred += len(sp)
        n_true += len(st)
    prec, rec = tp / max(n_pred, 1), tp / max(n_true, 1)
    return 2 * prec * rec / max(prec + rec, 1e-12)


def miss_kinds(truths: list, preds: list) -> dict:
    """How the true entities a tagger did not match exactly went wrong, per tag: 'late start'
    (its first character got another tag: a streaming tagger did not know yet), 'broken
    inside' (a character after the first got another tag), 'past its edges' (all its
    characters right, but the predicted span runs on before or after it)."""
    out: dict = {}
    for t, p in zip(truths, preds):
        for a, b, k in spans(t) - spans(p):
            kind = ("late start" if p[a] != k else "broken inside" if np.any(p[a:b] != k)
                    else "past its edges")
            d = out.setdefault(TAGS[k], {})
            d[kind] = d.get(kind, 0) + 1
    return out
