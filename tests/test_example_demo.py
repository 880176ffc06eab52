"""examples/demo.py (`make demo`) runs within a time limit: it converts the bundled PyTorch
model (verified), flags exactly the injected faults (the spike and the stuck sensor; the NaN
reading is refused by the stream and filled in), streams the same floats as run(), and
saves its PNG; the no-matplotlib drawing writes a PNG too."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def test_demo_flags_the_injected_faults(tmp_path):
    env = dict(os.environ, LSTM_INFER_QUIET="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # 300 s: a cold Numba cache compiles the interpreter first
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "demo.py"), "--out-dir",
                        str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    err = float(re.search(r"max abs error vs PyTorch: ([0-9.e+-]+) \(ok\)", out).group(1))
    assert err < 1e-4
    causes = re.findall(r"max error [0-9.]+\s+\((.+)\)", out)
    assert sorted(causes) == ["the injected spike", "the stuck sensor, then recovery"], out
    assert "NaN reading rejected by the stream (state untouched)" in out
    assert re.search(r"stream vs run\(\) on the same 3000 inputs: max abs difference 0\.00e\+00", out)
    assert re.search(r"median [0-9.]+ µs\s+p99 [0-9.]+ µs", out)
    png = tmp_path / "sensor_anomalies.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plain_png_fallback(tmp_path):
    sys.path.insert(0, EXAMPLES)
    try:
        from demo import _save_plain
    finally:
        sys.path.pop(0)
    n = 3000
    fed = np.sin(np.arange(n) / 10).astype(np.float32)
    pred = fed + 0.01
    resid = np.abs(fed[1:] - pred[:-1])
    path = tmp_path / "p.png"
    assert _save_plain(str(path), fed, pred, resid, 0.5, [2000]) == "numpy PNG writer"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
