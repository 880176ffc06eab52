"""Synthetic order / support messages with per-character entity tags.

    Refund of 12.99 USD to Austin Lee on Mar 3, ticket 48213.
    ..........AAAAAAAAA....NNNNNNNNNN....DDDDD...............   (A amount, N name, D date)

Each message is drawn from templates of an order desk (orders, refunds, shipments, calls)
and holds names, dates, amounts and product codes in several surface forms each, plus the
things that make tagging need context: numbers that are none of them (quantities, ticket
numbers, "in 12 days"), city names that are also first names ("shipped to Austin" vs
"Austin Reed paid"), rare names no lexicon holds (made of syllables), amounts whose
currency comes after the number ("1249.50 EUR"), codes that start with digits like a date
does ("4821-KX"), and about a fifth of the messages typed in lower case. Every character gets the tag of the entity it belongs to
(spaces inside an entity included), O elsewhere.

Characters map to ids 1..95 (printable ASCII 32..126); 0 stands for anything else.
"""
from __future__ import annotations

import numpy as np

TAGS = ("O", "NAME", "DATE", "AMOUNT", "CODE")
O, NAME, DATE, AMOUNT, CODE = range(len(TAGS))
VOCAB = 96          # id 0: any character outside printable ASCII
LOWER_SHARE = 0.2   # messages typed all in lower case

FIRST = ("Maria", "James", "Wei", "Priya", "Olga", "Ahmed", "Lucas", "Sofia", "Kenji",
         "Fatima", "Noah", "Elena", "Omar", "Grace", "Ivan", "Chloe", "Diego", "Hannah",
         "Austin", "Florence", "Georgia", "Jordan", "Victoria", "Sydney", "Chelsea",
         "Madison", "Charlotte", "Lincoln", "Savannah", "Dallas")
LAST = ("Lopez", "Smith", "Chen", "Patel", "Novak", "Haddad", "Silva", "Rossi", "Tanaka",
        "Khan", "Weber", "Moreau", "Ivanova", "Reed", "Okafor", "Berg", "Costa", "Nguyen",
        "Kowalski", "Brown")
# places; the first ten are first names too (FIRST above)
CITY = ("Austin", "Florence", "Georgia", "Jordan", "Victoria", "Sydney", "Chelsea",
        "Madison", "Charlotte", "Lincoln", "Berlin", "Lyon", "Oslo", "Denver", "Porto",
        "Leeds", "Osaka", "Quito", "Gdansk", "Tampa")
TITLE = ("Mr.", "Ms.", "Dr.", "Mrs.")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
CURRENCY = ("USD", "EUR", "GBP", "CHF")
SYMBOL = ("$", "EUR ", "GBP ", "USD ")
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
# rarer names, made of syllables: no lexicon holds them all (NEW_NAME_SHARE of first names
# and of surnames)
SYLLABLES = ("ka", "lo", "mi", "ren", "ta", "vi", "sho", "dru", "el", "an", "ne", "ko", "ra",
             "zu", "bel", "tor", "sa", "yu", "om", "ni", "gar", "fe", "lin", "ha")
NEW_NAME_SHARE = 0.4

# {N} name, {D} date, {A} amount, {C} code, {Q} / {S} a number that is none of them, {T} a city
TEMPLATES = (
    "Order {C} from {N} on {D}: total {A}.",
    "{N} paid {A} for {C} on {D}.",
    "Refund of {A} to {N} on {D}, ticket {Q}.",
    "Shipped {Q} units of {C} to {T} on {D}; invoice {A}.",
    "Call {N} before {D} about {C} (ticket {Q}).",
    "{N} ordered {Q} x {C} for {A}, delivery to {T} in {S} days.",
    "Invoice {Q} for {N}: {A} due {D}.",
    "Please send {C} to {N} in {T} by {D}.",
    "{Q} items returned by {N} on {D}, credit {A}.",
    "Ticket {Q}: {N} says {C} arrived broken in {T}.",
    "Charge {A} to account {Q} for {C}.",
    "On {D} {N} moved order {C} to {T}.",
)


def _num(rng, lo: int, hi: int) -> str:
    return str(int(rng.integers(lo, hi)))


def _new_name(rng) -> str:
    k = int(rng.integers(2, 4))
    return "".join(SYLLABLES[i] for i in rng.integers(len(SYLLABLES), size=k)).capitalize()


def _pick(rng, lexicon: tuple) -> str:
    return _new_name(rng) if rng.random() < NEW_NAME_SHARE else lexicon[rng.integers(len(lexicon))]


def _name(rng) -> str:
    first, last = _pick(rng, FIRST), _pick(rng, LAST)
    form = rng.integers(4)
    if form == 0:
        return f"{first} {last}"
    if form == 1:
        return f"{first[0]}. {last}"
    if form == 2:
        return first
    return f"{first} {_pick(rng, LAST)[0]}."


def _date(rng) -> str:
    d, m, y = int(rng.integers(1, 29)), int(rng.integers(1, 13)), int(rng.integers(2019, 2027))
    mon = MONTHS[m - 1]
    return (f"{d} {mon[:3]} {y}", f"{mon} {d}, {y}", f"{y}-{m:02d}-{d:02d}",
            f"{d:02d}/{m:02d}/{y}", f"{mon[:3]} {d}", f"{d} {mon}",
            f"{d:02d}.{m:02d}.{y % 100:02d}")[rng.integers(7)]


def _amount(rng) -> str:
    v = float(np.exp(rng.uniform(np.log(2), np.log(20000))))
    whole = int(v)
    cents = rng.random() < 0.6
    num = f"{v:.2f}" if cents else str(whole)
    if whole >= 1000 and rng.random() < 0.5:
        num = f"{whole:,}" + (f"{v - whole:.2f}"[1:] if cents else "")
    form = rng.integers(4)
    if form == 0:
        return "$" + num
    if form == 1:
        return f"{num} {CURRENCY[rng.integers(len(CURRENCY))]}"
    if form == 2:
        return SYMBOL[rng.integers(len(SYMBOL))] + num
    return f"{num} euros"


def _code(rng) -> str:
    def L(k: int) -> str:
        return "".join(LETTERS[i] for i in rng.integers(len(LETTERS), size=k))

    def D(k: int) -> str:
        return "".join(str(i) for i in rng.integers(10, size=k))
    return (f"{L(2)}-{D(4)}", f"{D(4)}-{L(2)}", f"{L(1)}{D(1)}-{D(3)}-{L(1)}",
            f"{L(3)}{D(3)}", f"SKU-{D(5)}")[rng.integers(5)]


def _quantity(rng) -> str:
    return _num(rng, 1, 100) if rng.random() < 0.6 else _num(rng, 1000, 99999)


FILL = {"N": (_name, NAME), "D": (_date, DATE), "A": (_amount, AMOUNT), "C": (_code, CODE),
        "Q": (_quantity, O), "S": (lambda rng: _num(rng, 1, 31), O),
        "T": (lambda rng: CITY[rng.integers(len(CITY))], O)}


def message(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """One message and its per-character tags (int64, indices into TAGS)."""
    tpl = TEMPLATES[rng.integers(len(TEMPLATES))]
    if rng.random() < 0.15 and "{N}" in tpl:   # "Ms. Lopez": the title is not part of the name
        tpl = tpl.replace("{N}", TITLE[rng.integers(len(TITLE))] + " {L}", 1)
    parts, tags = [], []
    i = 0
    while i < len(tpl):
        if tpl[i] == "{":
            key = tpl[i + 1]
            text, tag = ((_pick(rng, LAST), NAME) if key == "L"
                         else (FILL[key][0](rng), FILL[key][1]))
            i += 3
        else:
            text, tag = tpl[i], O
            i += 1
        parts.append(text)
        tags.extend([tag] * len(text))
    text = "".join(parts)
    if rng.random() < LOWER_SHARE:
        text = text.lower()
    return text, np.array(tags, np.int64)


def encode(text: str) -> np.ndarray:
    """Character ids (int64): printable ASCII 32..126 -> 1..95, anything else -> 0."""
    c = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
    return np.where((c >= 32) & (c <= 126), c - 31, 0)


def dataset(n: int, seed: int | None = None, rng: np.random.Generator | None = None
            ) -> list[tuple[str, np.ndarray]]:
    """n messages with their tags."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    return [message(rng) for _ in range(n)]


def batch(pairs: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded (B, T) ids (0 after the end), (B, T) tags (-1 after the end, ignored by
    the loss) and the lengths (B,)."""
    lens = np.array([len(t) for t, _ in pairs])
    T = int(lens.max())
    ids = np.zeros((len(pairs), T), np.int64)
    tags = np.full((len(pairs), T), -1, np.int64)
    for k, (text, tg) in enumerate(pairs):
        ids[k, :len(text)] = encode(text)
        tags[k, :len(text)] = tg
    return ids, tags, lens
