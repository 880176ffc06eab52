"""examples/volatility.py runs with no arguments within a time limit, saves its PNG, and its
bundled GRU forecasts next-step variance with a clearly lower QLIKE than RiskMetrics EWMA
(measured: 0.028 vs 0.068 on the example's series, and 0.44-0.58x EWMA's QLIKE over ten other
seeds); the no-matplotlib plot writes a PNG too; the synthetic GARCH generator is what it says."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
EXAMPLE = os.path.join(EXAMPLES, "volatility.py")


def test_example_runs_and_beats_ewma(tmp_path):
    env = dict(os.environ, LSTM_INFER_QUIET="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # 300 s: a cold Numba cache compiles the interpreter first
    r = subprocess.run([sys.executable, EXAMPLE], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"QLIKE vs true variance: model ([0-9.]+), EWMA ([0-9.]+)", r.stdout)
    assert m, r.stdout
    model, ewma = float(m.group(1)), float(m.group(2))
    assert model < 0.7 * ewma, r.stdout
    row = re.search(r"GRU \(lstm-infer\)\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+)", r.stdout)
    assert row and float(row.group(1)) > 0.95, r.stdout      # correlation with the true vol
    assert re.search(r"median [0-9.]+ us, p99 [0-9.]+ us", r.stdout)
    png = tmp_path / "volatility.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plain_png_fallback_and_generator(tmp_path):
    sys.path.insert(0, EXAMPLES)
    try:
        from synthetic_returns import REGIMES, garch_returns
        from volatility import _save_plain, ewma
    finally:
        sys.path.pop(0)
    r, sig, reg = garch_returns(3000, seed=1)
    assert r.dtype == sig.dtype == np.float32 and (sig > 0).all()
    # sigma_t follows the GARCH recursion of the regime in force at step t
    t = np.nonzero(reg[1:] == reg[:-1])[0] + 1
    om, al, be = (np.array([REGIMES[k][j] for k in reg[t]]) for j in range(3))
    r64, s64 = r.astype(float), sig.astype(float)
    np.testing.assert_allclose(s64[t] ** 2, om + al * r64[t - 1] ** 2 + be * s64[t - 1] ** 2,
                               rtol=1e-4)
    f = ewma(r)
    assert abs(f[1] - (0.94 * f[0] + 0.06 * float(r[1]) ** 2)) < 1e-9
    path = tmp_path / "plain.png"
    _save_plain(str(path), r, sig, sig.astype(float) ** 2, f)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
