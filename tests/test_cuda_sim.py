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
from lstm_infer.cuda.staging import segments, shared_stage

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOL = 1e-5
CASES = ("lstm", "lstm_proj", "gru", "gru_reset_before", "rnn", "rnn_relu", "lstm_int8",
         "pointwise", "tokens", "conv")
PADDED = ("lstm", "gru_reset_before", "tokens")  # also run with lengths= (seq_kernel)
BIDIRECTIONAL = ("lstm", "gru", "rnn", "lstm_int8")


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
    reset(), and run() of a batch, of one sequence and of a padded batch (lengths=) == the
    CPU path within 1e-5. "tokens": Embedding (2 ids a step) -> LSTM -> History -> Gather ->
    Linear -> TimeReduce mean, max, min, sum; "conv": Conv1d (both CPU kernels) and Reduce."""
    r = sim[case]
    keys = ("step", "state", "reset", "run", "run_1seq") + (("run_lengths",) if case in PADDED else ())
    for key in keys:
        assert r[key] < TOL, (case, key, r[key])
    assert r["state_moved"] > 0.1  # the state compared is not still the initial one


@pytest.mark.parametrize("case", BIDIRECTIONAL)
def test_bidirectional_run_equals_cpu(sim, case):
    """A bidirectional stack (2 layers for LSTM) on the device: run() whole, of one sequence,
    and padded (each reverse direction starts at its own last valid step, zeros after the
    length) == the CPU within 1e-5; a device pool is refused as the CPU pool is."""
    r = sim[f"bidirectional_{case}"]
    for key in ("run", "run_1seq", "run_lengths"):
        assert r[key] < TOL, (case, key, r[key])
    assert "cannot stream one step at a time" in r["streams"] and "_reverse" in r["streams"]


def test_bad_token_id_is_the_cpu_error(sim):
    """An out-of-vocabulary id: the device pool and run() raise the CPU path's ValueError,
    word for word, and the device state is untouched."""
    r = sim["bad_ids"]
    assert "token id 7" in r["step_dev"] and "[0, 7)" in r["step_dev"]
    assert r["step_dev"] == r["step_cpu"] and r["run_dev"] == r["run_cpu"]
    assert r["state_kept"] is True


@pytest.mark.parametrize("case", ("lstm", "bidirectional_lstm_int8"))
def test_shared_memory_staging_is_bit_identical(sim, case):
    """run_kernel (lstm) and seq_kernel (a padded bidirectional int8 batch) with every W_hh
    in shared memory, with the first only, and with none (global reads): the same bits."""
    r = sim["shared"][case]
    assert r["bytes"][0] > r["bytes"][1] > 0 and r["bytes"][2] == 0, r["bytes"]
    assert r["equal"] is True


def test_int8_weights_read_on_device(sim):
    assert sim["lstm_int8"]["dtype"] == "int8"


def test_unsupported_op_is_named(sim):
    for what in ("streams", "run"):
        msg = sim["errors"][f"unsupported_{what}"]
        assert "no kernel yet for FirstStep" in msg and "device='cpu'" in msg, msg


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


def test_staging_plan(tmp_path):
    """staging.py on the CPU: W_hh matrices staged first layers first while they fit the
    limit (4 bytes a value, int8 too), and a bidirectional stack cut into segments with each
    reverse layer alone and the output copy rows in the last forward segment."""
    stacked(tmp_path / "b.lstm", op="LSTM", I=3, H=4, layers=2, bidirectional=True)
    m = lstm_infer.load(tmp_path / "b.lstm")
    prog = m.plan.prog
    stage, shoff, used = shared_stage(prog)
    assert used == 4 * 4 * 16 * 4 and list(stage[:, 1]) == [64] * 4
    stage, shoff, used = shared_stage(prog, limit=3 * 256)
    assert used == 3 * 256 and (shoff >= 0).sum() == 3
    assert shared_stage(prog, limit=0)[2] == 0 and (shared_stage(prog, limit=0)[1] == -1).all()
    segs, rec = segments(m.graph, m.plan.node_rows, int(prog[0, 0]))
    rows = m.plan.node_rows
    assert [s[2] for s in segs] == [0, 1, 0, 1, 0]
    assert segs[1][0] == rows["lstm0_reverse"] and segs[-1][1] == prog[0, 0] + 1
    assert rec[rows["lstm1"]] == 1 and rec[rows["fc"]] == 0
