"""examples/forecasting.py runs with no arguments within a time limit, saves its PNG, and the
bundled stacked-LSTM 24-hour forecaster beats the seasonal-naive forecast (same hour one day
earlier) by at least 10% in overall MAE on the example's fresh test series."""
from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "forecasting.py")


def test_example_runs_and_beats_seasonal_naive(tmp_path):
    env = dict(os.environ, LSTM_INFER_QUIET="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # 300 s: a cold Numba cache compiles the interpreter first
    r = subprocess.run([sys.executable, EXAMPLE], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"overall MAE: model ([0-9.]+), seasonal-naive ([0-9.]+)", r.stdout)
    assert m, r.stdout
    model, naive = float(m.group(1)), float(m.group(2))
    assert model <= 0.9 * naive, r.stdout
    for bucket in ("1-6", "7-12", "13-24"):
        assert re.search(rf"^\s*{bucket} \|", r.stdout, re.M), r.stdout
    assert re.search(r"median \d+ us, p99 \d+ us", r.stdout)
    png = tmp_path / "forecasting.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
