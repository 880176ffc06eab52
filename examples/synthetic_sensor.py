"""A synthetic sensor: a noisy sum of sines with slowly drifting amplitude.

Shared by train_sensor_model.py (training data) and demo.py (the live signal), so the
demo streams the same kind of signal the model was trained on.
"""
from __future__ import annotations

import numpy as np

# (period in samples, amplitude) of the components
COMPONENTS = ((50.0, 1.0), (23.0, 0.5), (9.0, 0.25))
NOISE = 0.05


def sensor_signal(n: int, seed: int = 0, noise: float = NOISE) -> np.ndarray:
    """n samples of one sensor channel, float32, shape (n,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    drift = 1.0 + 0.2 * np.sin(2 * np.pi * t / 2000.0 + rng.uniform(0, 2 * np.pi))
    x = np.zeros(n)
    for period, amp in COMPONENTS:
        x += amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return (drift * x + noise * rng.standard_normal(n)).astype(np.float32)
