"""Synthetic hourly series with a trend and two seasonalities (daily, period 24, and weekly,
period 168) plus noise, and the per-step inputs the forecasting LSTM reads.

    y[t] = level + slope * t + daily(hour of day) + weekly(hour of week) + AR(1) noise + white noise

The daily shape has a morning and an evening peak; the weekly shape lowers the weekend and
changes the daily amplitude on it, so "the same hour yesterday" (the seasonal-naive forecast)
is wrong wherever a weekday meets a weekend. Amplitudes, level and slope vary per series.
"""
from __future__ import annotations

import numpy as np

DAY, WEEK = 24, 168
CENTER, SCALE = 10.0, 3.0      # y is fed to the model (and read back) as (y - CENTER) / SCALE
FEATURES = 5                   # scaled value, sin/cos hour of day, sin/cos hour of week


def seasonal_series(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, t): n hourly values (float32) and their absolute hour indices (int64, t=0 is Monday
    00:00 of some week; each series starts at a random hour)."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 52 * WEEK) + np.arange(n)
    hod = (t % DAY).astype(np.float64)
    how = (t % WEEK).astype(np.float64)
    weekend = (how >= 5 * DAY).astype(np.float64)
    level = rng.uniform(8.5, 11.5)
    slope = rng.uniform(-1.5, 1.5) / 1000.0                      # units per hour
    a_day = rng.uniform(1.5, 2.5)
    daily = (np.exp(-0.5 * ((hod - 8.0) / 2.0) ** 2)              # morning peak
             + 1.3 * np.exp(-0.5 * ((hod - 19.0) / 2.5) ** 2)     # evening peak
             - 0.45)
    a_week = rng.uniform(0.8, 1.6)
    weekly = a_week * (0.3 * np.sin(2 * np.pi * how / WEEK) - weekend)
    daily = a_day * daily * (1.0 - 0.6 * weekend)                 # flatter days at weekends
    ar = np.empty(n)
    e = rng.normal(0.0, 0.25, n)
    ar[0] = e[0] / np.sqrt(1 - 0.8 ** 2)
    for k in range(1, n):
        ar[k] = 0.8 * ar[k - 1] + e[k]
    y = level + slope * np.arange(n) + daily + weekly + ar + rng.normal(0.0, 0.15, n)
    return y.astype(np.float32), t.astype(np.int64)


def features(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(n, FEATURES) float32 model inputs: the scaled value and the calendar position of each
    step (known in advance, as in any deployed forecaster)."""
    a, b = 2 * np.pi * (t % DAY) / DAY, 2 * np.pi * (t % WEEK) / WEEK
    return np.stack([(y - CENTER) / SCALE, np.sin(a), np.cos(a), np.sin(b), np.cos(b)],
                    axis=-1).astype(np.float32)
