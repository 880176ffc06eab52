"""The CUDA path (lstm_infer/cuda/) on numba's CUDA simulator, so CI checks it without a GPU.

NUMBA_ENABLE_CUDASIM must be set before numba is imported, and it would turn every other
test's numba.cuda into the simulator, so the device checks run in a subprocess
(tests/cuda_sim_checks.py, small shapes, ~10 s of CPU); this module asserts on what it
measured. Tolerance: 1e-5 max abs error against the CPU path on unit-scale data (the device
runs the CPU kernels' own formulas; summation order differs, errors seen ~1e-7).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lstm_infer
from builders import stacked

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOL = 1e-5
CASES = ("lstm", "lstm_proj", "gru", "gru_reset_before", "rnn", "rnn_relu", "lstm_int8",
         "pointwise")


def _run(code_or_script: list[str], sim: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if sim:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([ROOT, HERE] + [env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *code_or_script], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def sim() -> dict:
    proc = _run([os.path.join(HERE, "cuda_sim_checks.py")], sim=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", CASES)
def test_device_equals_cpu(sim, case):
    """streams(n, device="cuda") step by step (state carried), get_state, reset(i) and
    reset(), and run() of a batch and of one sequence == the CPU path within 1e-5."""
    r = sim[case]
    for key in ("step", "state", "reset", "run", "run_1seq"):
        assert r[key] < TOL, (case, key, r[key])
    assert r["state_moved"] > 0.1  # the state compared is not still the initial one


def test_int8_weights_read_on_device(sim):
    assert sim["lstm_int8"]["dtype"] == "int8"


def test_unsupported_op_is_named(sim):
    for what in ("streams", "run"):
        msg = sim["errors"][f"unsupported_{what}"]
        assert "no kernel yet for TimeReduce" in msg and "device='cpu'" in msg, msg


def test_nonfinite_input_leaves_device_state(sim):
    assert "NaN" in sim["errors"]["nan"]
    assert sim["errors"]["nan_state_kept"] is True


NO_GPU = """
import sys, numpy as np, lstm_infer
from builders import stacked
stacked(sys.argv[1], op="GRU", I=3, H=4)
m = lstm_infer.load(sys.argv[1])
m.run(np.zeros((2, 3), np.float32)); m.streams(2).step(np.zeros((2, 3), np.float32))
print("cuda imported by the CPU path:", "numba.cuda" in sys.modules)
try:
    m.streams(2, device="cuda")
except lstm_infer.DeviceUnavailableError as e:
    print("ERROR:", e)
"""


def test_no_gpu_is_one_clear_error(tmp_path):
    """Without the simulator on this GPU-less machine: the CPU path never imports numba.cuda,
    and device="cuda" raises DeviceUnavailableError saying what is missing."""
    proc = _run(["-c", NO_GPU, str(tmp_path / "g.lstm")], sim=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cuda imported by the CPU path: False" in proc.stdout
    if "ERROR:" not in proc.stdout:
        pytest.skip("this machine has a usable GPU: the no-GPU error cannot be provoked")
    msg = proc.stdout.split("ERROR:", 1)[1]
    assert "NVIDIA GPU" in msg and "lstm-infer[cuda]" in msg and "NUMBA_ENABLE_CUDASIM" in msg


def test_bad_device_name(tmp_path):
    stacked(tmp_path / "m.lstm", op="RNN", I=3, H=4)
    m = lstm_infer.load(tmp_path / "m.lstm")
    with pytest.raises(ValueError, match="device must be one of 'cpu', 'cuda'"):
        m.streams(2, device="gpu")
    with pytest.raises(ValueError, match="device must be one of"):
        m.run(np.zeros((2, 3), np.float32), device="tpu")
