"""Synthetic daily returns from a GARCH(1,1) process whose parameters switch between regimes.

    r_t = sigma_t * z_t,   z_t ~ Student-t(NU) scaled to unit variance
    sigma_t^2 = omega_k + alpha_k * r_{t-1}^2 + beta_k * sigma_{t-1}^2

k is the regime (calm / normal / crisis), a Markov chain that leaves its state with
probability SWITCH per step, so the volatility level shifts now and then as well as
clustering within a regime. Returns are in percent. `garch_returns` also returns the true
conditional volatility sigma_t, known before r_t is drawn: the target a one-step-ahead
forecast made after seeing r_{t-1} is judged against.
"""
from __future__ import annotations

import numpy as np

# (omega, alpha, beta): unconditional variance omega / (1 - alpha - beta) of 0.4, 1.9, 8.0
REGIMES = (
    (0.02, 0.05, 0.90),    # calm:   daily vol ~0.6 %
    (0.05, 0.09, 0.885),   # normal: ~1.4 %
    (0.40, 0.12, 0.83),    # crisis: ~2.8 %
)
SWITCH = 1 / 400           # probability of leaving the current regime at each step
NU = 6.0                   # Student-t degrees of freedom of the innovations


def garch_returns(n: int, seed: int | None = None, rng: np.random.Generator | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n returns (float32, percent), their true conditional volatility sigma_t (float32) and
    the regime index at each step (int8)."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    z = rng.standard_t(NU, n) * np.sqrt((NU - 2) / NU)
    u = rng.random(n)
    jump = rng.integers(1, len(REGIMES), n)            # which other regime to move to
    k = int(rng.integers(len(REGIMES)))
    om, al, be = REGIMES[k]
    var = om / (1 - al - be)
    r = np.empty(n)
    sig = np.empty(n)
    reg = np.empty(n, np.int8)
    prev_r2 = var
    for t in range(n):
        if u[t] < SWITCH:
            k = (k + int(jump[t])) % len(REGIMES)
            om, al, be = REGIMES[k]
        var = om + al * prev_r2 + be * var
        sig[t] = np.sqrt(var)
        r[t] = sig[t] * z[t]
        prev_r2 = r[t] ** 2
        reg[t] = k
    return r.astype(np.float32), sig.astype(np.float32), reg


def features(r: np.ndarray) -> np.ndarray:
    """The model's input at each step, (T, 2) float32: the return and log(r^2 + 0.01), both
    known once the step's return is observed."""
    r = np.asarray(r, np.float32)
    return np.stack([r, np.log(r * r + np.float32(0.01))], axis=-1).astype(np.float32)
