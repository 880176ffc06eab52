"""Synthetic single-lead ECG with annotated normal, premature atrial and premature ventricular
beats, written by hand after ECGSYN (no dependency beyond numpy).

Morphology: McSharry, Clifford, Tarassenko & Smith, "A dynamical model for generating
synthetic electrocardiogram signals", IEEE Trans. Biomed. Eng. 50(3):289-294, 2003, Table 1:
each beat is a sum of Gaussian P, Q, R, S, T waves placed on the cardiac phase theta (R at 0),

    wave       P       Q       R      S      T
    theta_i  -pi/3  -pi/12     0    pi/12   pi/2
    a_i       1.2    -5.0     30.0  -7.5    0.75
    b_i       0.25    0.1     0.1    0.1    0.4

Integrating their dz/dt = -sum_i a_i dtheta_i exp(-dtheta_i^2 / 2 b_i^2) at a constant angular
speed omega = 2 pi / RR gives the closed form used here, z(theta) = sum_i a_i b_i^2
exp(-(theta - theta_i)^2 / 2 b_i^2), so each wave has amplitude a_i b_i^2 (scaled by MV_SCALE
to about 1.2 mV of R, the range ECGSYN scales to) and a time width b_i RR / (2 pi). As in
ecgsyn.m, widths scale by sqrt(HR/60) and the P/T angles by (HR/60)^(1/4), Q/S by sqrt(HR/60).
Premature beats keep the sinus beat's omega (their waves are not compressed by the short RR).

RR intervals: ECGSYN's two-peak spectrum, here as its two oscillations, Mayer waves at 0.1 Hz
and respiratory sinus arrhythmia at 0.25 Hz, plus white jitter; the respiration also modulates
the R amplitude and drives a baseline wander. Mains hum (50 Hz) and white noise are added.

Ectopic beats (AAMI EC57 classes S and V; textbook criteria, e.g. Goldberger, Clinical
Electrocardiography, ch. 14 and 16):
  PVC (V): early (coupling 0.55-0.85 of the sinus RR), no P wave, wide QRS (widths x2.2-3.2,
    unifocal: one bizarre template per recording, possibly inverted), a large T wave of the
    opposite polarity (discordant), and mostly a full compensatory pause (pre + post RR = two
    sinus RR; else the sinus rhythm is reset).
  PAC (S): early (coupling 0.65-0.92), an abnormal P wave (per recording: inverted or flat
    and wide, closer to the QRS), a normal narrow QRS, a non-compensatory pause (the sinus
    node is reset: the next beat follows one sinus RR later).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FS = 250                      # Hz: one sample every 4 ms
CLASSES = ("N", "S", "V")     # AAMI EC57: normal, supraventricular ectopic, ventricular ectopic
THETA = np.array([-np.pi / 3, -np.pi / 12, 0.0, np.pi / 12, np.pi / 2])
A = np.array([1.2, -5.0, 30.0, -7.5, 0.75])
B = np.array([0.25, 0.1, 0.1, 0.1, 0.4])
MV_SCALE = 4.0                # a_R b_R^2 = 0.3 -> R wave 1.2 mV
MAINS_HZ = 50.0


@dataclass
class Recording:
    """ecg: (n,) float32 in mV. r_idx: sample of each beat's R peak (its fiducial point).
    label: class index per beat (CLASSES). rr_sinus: the sinus RR (s) in force at each beat.
    waves: (beats, 5, 3) the P, Q, R, S, T waves' (time from the R peak s, amplitude mV,
    width s); a missing wave has amplitude 0."""
    ecg: np.ndarray
    r_idx: np.ndarray
    label: np.ndarray
    rr_sinus: np.ndarray
    waves: np.ndarray
    hr: float


def sinus_waves(rr: float, hr: float) -> np.ndarray:
    """(5, 3) normal-beat waves for a sinus RR (s) at mean heart rate hr (bpm)."""
    f = np.sqrt(hr / 60.0)
    theta = THETA * np.array([f ** 0.5, f, 1.0, f, f ** 0.5])
    b = B * f
    w = 2 * np.pi / rr
    return np.stack([theta / w, A * B ** 2 * MV_SCALE, b / w], axis=1)


def _ectopic_templates(rng: np.random.Generator) -> dict:
    """One PVC and one PAC template per recording (unifocal ectopy)."""
    return {"qrs_w": rng.uniform(2.2, 3.2), "r_gain": rng.uniform(0.6, 1.5),
            "invert": rng.random() < 0.4, "t_gain": rng.uniform(1.5, 3.0),
            "p_gain": rng.choice([-1.0, -0.6, 0.35]), "p_w": rng.uniform(0.8, 1.4),
            "p_shift": rng.uniform(0.55, 0.8)}


def ectopic_waves(kind: int, normal: np.ndarray, tpl: dict) -> np.ndarray:
    """The waves of a PAC (kind 1) or PVC (kind 2) derived from the sinus beat's."""
    w = normal.copy()
    if kind == 1:                               # abnormal P, closer to the QRS; QRS unchanged
        w[0, 0] *= tpl["p_shift"]
        w[0, 1] *= tpl["p_gain"]
        w[0, 2] *= tpl["p_w"]
    elif kind == 2:                             # no P; wide bizarre QRS; discordant T
        w[0, 1] = 0.0
        w[1:4, 2] *= tpl["qrs_w"]
        w[1:4, 0] *= tpl["qrs_w"]
        w[1:4, 1] *= tpl["r_gain"] * (-1.0 if tpl["invert"] else 1.0)
        w[4, 1] *= -tpl["t_gain"] * (-1.0 if tpl["invert"] else 1.0)
        w[4, 2] *= 1.3
    return w


def _beat_sequence(n_beats: int, p_s: float, p_v: float, rng: np.random.Generator
                   ) -> np.ndarray:
    """Beat classes; an ectopic beat is always followed by a normal one."""
    lab = np.zeros(n_beats, np.int8)
    u = rng.random(n_beats)
    for k in range(2, n_beats):
        if lab[k - 1] == 0:
            lab[k] = 2 if u[k] < p_v else (1 if u[k] < p_v + p_s else 0)
    return lab


def synthetic_ecg(seconds: float, seed: int | None = None, rng: np.random.Generator | None = None,
                  hr: float | None = None, p_s: float | None = None, p_v: float | None = None,
                  noise: bool = True) -> Recording:
    """A recording of `seconds` at FS Hz. hr (bpm), p_s and p_v (fraction of beats) are drawn
    per recording when not given; noise=False leaves out wander, hum and noise."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    hr = float(rng.uniform(55, 95)) if hr is None else hr
    p_s = float(rng.uniform(0.05, 0.12)) if p_s is None else p_s
    p_v = float(rng.uniform(0.05, 0.12)) if p_v is None else p_v
    tpl = _ectopic_templates(rng)
    rr0 = 60.0 / hr
    n_beats = int(seconds / rr0 * 1.2) + 4
    lab = _beat_sequence(n_beats, p_s, p_v, rng)
    ph_lf, ph_hf = rng.uniform(0, 2 * np.pi, 2)

    def sinus_rr(t: float) -> float:
        mayer = 0.03 * np.sin(2 * np.pi * 0.1 * t + ph_lf)
        rsa = 0.035 * np.sin(2 * np.pi * 0.25 * t + ph_hf)
        return rr0 * (1 + mayer + rsa + 0.015 * rng.standard_normal())

    r_t, rr_s, waves = [], [], []
    t_sinus = 0.6                  # when the next sinus beat is due
    prev_r = 0.6 - rr0
    for k in range(n_beats):
        rr = sinus_rr(t_sinus)
        if lab[k] == 0:
            t = t_sinus
        else:
            c = rng.uniform(0.55, 0.85) if lab[k] == 2 else rng.uniform(0.65, 0.92)
            t = prev_r + c * rr
        if t > seconds - 0.5:
            break
        normal = sinus_waves(rr, hr)
        normal[:, 1] *= 1 + 0.05 * rng.standard_normal()
        normal[2, 1] *= 1 + 0.1 * np.sin(2 * np.pi * 0.25 * t + ph_hf)
        waves.append(normal if lab[k] == 0 else ectopic_waves(int(lab[k]), normal, tpl))
        r_t.append(t)
        rr_s.append(rr)
        if lab[k] == 2 and rng.random() < 0.75:
            t_sinus = prev_r + 2 * rr             # compensatory: the sinus node was not reset
        else:
            t_sinus = t + rr * (rng.uniform(1.0, 1.12) if lab[k] else 1.0)
        prev_r = t
    n = int(seconds * FS)
    lab = lab[:len(r_t)]
    r_t, waves = np.array(r_t), np.array(waves)
    tt = np.arange(n) / FS
    ecg = np.zeros(n)
    span = int(0.7 * FS)
    for t, w in zip(r_t, waves):
        c = int(round(t * FS))
        lo, hi = max(c - span, 0), min(c + span, n)
        d = tt[lo:hi, None] - t - w[None, :, 0]
        ecg[lo:hi] += np.sum(w[:, 1] * np.exp(-d ** 2 / (2 * w[:, 2] ** 2)), axis=1)
    if noise:
        walk = np.cumsum(rng.standard_normal(n)) * 0.002
        walk -= np.convolve(walk, np.ones(FS * 4) / (FS * 4), mode="same")
        ecg += (rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * 0.25 * tt + ph_hf) + walk
                + rng.uniform(0.01, 0.04) * np.sin(2 * np.pi * MAINS_HZ * tt + rng.uniform(0, 6))
                + rng.uniform(0.01, 0.03) * rng.standard_normal(n))
    return Recording(ecg.astype(np.float32), np.round(r_t * FS).astype(np.int64), lab,
                     np.array(rr_s), waves, hr)


def features(ecg: np.ndarray) -> np.ndarray:
    """The model's input at each sample, (T, 2) float32: the ECG (mV) and its first difference
    times 10 (a causal slope, what a QRS is made of), both known once the sample arrives."""
    x = np.asarray(ecg, np.float32)
    d = np.diff(x, prepend=x[:1]) * np.float32(10)
    return np.stack([x, d], axis=-1).astype(np.float32)


def sample_targets(n: int, r_idx: np.ndarray, label: np.ndarray, delay: int) -> np.ndarray:
    """Per-sample training target: the class of the latest beat whose R peak is at least
    `delay` samples old; -1 before the first such beat."""
    y = np.full(n, -1, np.int64)
    for k, r in enumerate(r_idx):
        if r + delay < n:
            y[r + delay:] = label[k]
    return y
