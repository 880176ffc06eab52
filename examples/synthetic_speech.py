"""Synthetic "speech" for the CTC example: words are sequences of formant-like tone bursts.

Each letter of a 16-letter alphabet is a voiced burst with its own two formants (F1 from
{300, 500, 700, 900} Hz times F2 from {1200, 1700, 2300, 2900} Hz): a harmonic source at a
speaker pitch f0 (110-210 Hz, a few % jitter per letter) shaped by Gaussian resonances at the
letter's formants (each jittered by +-4 %), with a raised-cosine envelope, random duration
(50-110 ms) and amplitude (0.5-1.0). Letters are 15-35 ms apart, words 150-300 ms apart, and
white noise at 5-20 dB SNR is added. An utterance says one to three words of VOCAB.

`log_mel` turns audio into 10 ms frames of 24 log mel band energies (25 ms Hann window,
8 kHz), scaled to roughly unit range; `FrameFeatures` computes the same features one 10 ms
hop at a time for streaming (identical to log_mel on the same samples). The example, its
train script and its test all take the features from here, so they cannot drift apart.
"""
from __future__ import annotations

import numpy as np

SR = 8000                 # samples per second
HOP = 80                  # 10 ms: one feature frame per model step
WIN = 200                 # 25 ms analysis window
NFFT = 256
N_MELS = 24
VOCAB = ("yes", "no", "up", "down", "left", "right", "on", "off", "go", "stop")
LETTERS = "defghilnoprstuwy"          # every letter of VOCAB, each its own formant pair
CHARSET = "_" + LETTERS + " "         # CTC classes: 0 blank, 1..16 letters, 17 word gap
BLANK = 0
FORMANTS = {c: (300.0 + 200.0 * (i // 4), (1200.0, 1700.0, 2300.0, 2900.0)[i % 4])
            for i, c in enumerate(LETTERS)}


def _mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_filters() -> np.ndarray:
    """(NFFT//2+1, N_MELS) triangular filters, 100-3800 Hz, equally spaced in mel."""
    edges = 700.0 * (10 ** (np.linspace(_mel(100.0), _mel(3800.0), N_MELS + 2) / 2595.0) - 1)
    f = np.arange(NFFT // 2 + 1) * SR / NFFT
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    w = np.maximum(0.0, np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
    return w.T.astype(np.float32)


MEL = _mel_filters()
WINDOW = np.hanning(WIN).astype(np.float32)


def _frames_to_features(frames: np.ndarray) -> np.ndarray:
    """(T, WIN) windows of audio -> (T, N_MELS) float32 scaled log mel energies."""
    spec = np.abs(np.fft.rfft(frames * WINDOW, NFFT, axis=-1)) ** 2
    # scale: log10 energies of the synthetic audio span about -4..+4; map to mean ~0, std ~0.5
    return ((np.log10(spec.astype(np.float32) @ MEL + 1e-4) + 0.4) / 2.0).astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(N,) audio -> (N // HOP, N_MELS) features: frame t is the window that ends with hop t,
    samples [(t+1)*HOP - WIN, (t+1)*HOP), zeros before the start (so a stream has frame t as
    soon as hop t arrives)."""
    audio = np.asarray(audio, np.float32)
    T = len(audio) // HOP
    padded = np.concatenate([np.zeros(WIN - HOP, np.float32), audio])
    idx = np.arange(T)[:, None] * HOP + np.arange(WIN)[None]
    return _frames_to_features(padded[idx])


class FrameFeatures:
    """Streaming log_mel: push(hop) takes the next HOP samples and returns that frame's
    features, equal to log_mel's row for the same hop."""

    def __init__(self):
        self.buf = np.zeros(WIN, np.float32)

    def push(self, hop: np.ndarray) -> np.ndarray:
        self.buf[:-HOP] = self.buf[HOP:]
        self.buf[-HOP:] = hop
        return _frames_to_features(self.buf[None])[0]


def _burst(letter: str, f0: float, n: int, amp: float, rng) -> np.ndarray:
    """One letter: harmonics of f0 (with slight pitch drift) weighted by two formants."""
    f1, f2 = (f * rng.uniform(0.96, 1.04) for f in FORMANTS[letter])
    t = np.arange(n) / SR
    pitch = f0 * (1 + rng.uniform(-0.04, 0.04) + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 7) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    x = np.zeros(n)
    for h in range(1, int(3900 / f0)):
        fh = h * f0
        gain = (np.exp(-0.5 * ((fh - f1) / 90.0) ** 2)
                + 0.7 * np.exp(-0.5 * ((fh - f2) / 130.0) ** 2))
        if gain > 1e-3:
            x += gain * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    env = np.sin(np.pi * np.arange(n) / n) ** 0.5          # soft attack and release
    return amp * env * x / np.sqrt(np.mean(x ** 2) + 1e-12)


def utterance(rng: np.random.Generator, n_words: int | None = None):
    """Random utterance of 1-3 vocabulary words. Returns (audio float32, text, frame_labels):
    text is the words joined by one space; frame_labels[t] is the CTC class of the letter
    sounding at the centre of frame t (0 where none: silence between letters and words)."""
    words = list(rng.choice(VOCAB, int(n_words or rng.integers(1, 4))))
    f0 = rng.uniform(110, 210)
    pieces, labels = [np.zeros(int(rng.uniform(0.10, 0.25) * SR))], []
    spans = []                                              # (start, end, class) in samples
    pos = len(pieces[0])
    for w, word in enumerate(words):
        if w:
            gap = np.zeros(int(rng.uniform(0.15, 0.30) * SR))
            pieces.append(gap)
            pos += len(gap)
        for i, c in enumerate(word):
            if i:
                gap = np.zeros(int(rng.uniform(0.015, 0.035) * SR))
                pieces.append(gap)
                pos += len(gap)
            n = int(rng.uniform(0.05, 0.11) * SR)
            pieces.append(_burst(c, f0 * rng.uniform(0.97, 1.03), n, rng.uniform(0.5, 1.0), rng))
            spans.append((pos, pos + n, CHARSET.index(c)))
            pos += n
    pieces.append(np.zeros(int(rng.uniform(0.20, 0.30) * SR)))
    clean = np.concatenate(pieces)
    speech_power = np.mean(np.concatenate([clean[a:b] for a, b, _ in spans]) ** 2)
    snr_db = rng.uniform(5, 20)
    audio = clean + rng.normal(0, np.sqrt(speech_power / 10 ** (snr_db / 10)), len(clean))
    T = len(audio) // HOP
    centre = (np.arange(T) + 1) * HOP - WIN // 2            # centre of frame t's window
    labels = np.zeros(T, np.int64)
    for a, b, k in spans:
        labels[(centre >= a) & (centre < b)] = k
    return (0.3 * audio).astype(np.float32), " ".join(words), labels


def dataset(n: int, seed: int):
    """n utterances from one seed: (features list, texts, frame label list, audio list)."""
    rng = np.random.default_rng(seed)
    out = [utterance(rng) for _ in range(n)]
    return ([log_mel(a) for a, _, _ in out], [t for _, t, _ in out],
            [lab for _, _, lab in out], [a for a, _, _ in out])


def encode(text: str) -> list[int]:
    """Text -> CTC class indices (no blanks)."""
    return [CHARSET.index(c) for c in text]


def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences (characters or words)."""
    d = np.arange(len(b) + 1)
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return int(d[-1])
