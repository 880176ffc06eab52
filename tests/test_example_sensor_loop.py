"""examples/sensor_loop.py runs with no arguments on the bundled model (issue 14: an example
that runs as it is), and the bundled file still agrees with the PyTorch file it came from."""
import os
import subprocess
import sys

import numpy as np

import lstm_infer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def test_sensor_loop_runs_on_the_bundled_model():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               LSTM_INFER_QUIET="1")
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "sensor_loop.py")], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "bad reading skipped" in r.stdout and "checkpoint:" in r.stdout
    assert "step latency: median" in r.stdout


def test_bundled_file_matches_its_pytorch_source(tmp_path):
    """The committed .lstm is what converting the committed sensor_lstm.pt gives today."""
    __import__("pytest").importorskip("torch")
    from converters import convert_file
    convert_file(os.path.join(EXAMPLES, "models", "sensor_lstm.pt"), tmp_path / "fresh.lstm")
    bundled = lstm_infer.load(os.path.join(EXAMPLES, "models", "sensor_lstm.lstm"))
    fresh = lstm_infer.load(tmp_path / "fresh.lstm")
    X = np.sin(np.linspace(0, 20, 200, dtype=np.float32))[:, None]
    assert np.array_equal(bundled.run(X), fresh.run(X))
