"""The first-use compile notice (lstm_infer/_firstuse.py): the cold-cache decision on real
cache directories, the message and its progress words on a (simulated) cold start, and
silence when warm, on a second load and with LSTM_INFER_QUIET=1. A real cold compile
takes over a minute here, so the decision is checked in a subprocess that imports the
kernels on an empty cache without compiling anything."""
import os
import subprocess
import sys

import pytest

import lstm_infer
from builders import stacked
from lstm_infer import _cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("firstuse") / "m.lstm"
    stacked(p, "LSTM", 3, 5)
    lstm_infer.load(p)  # warm this process's cache
    return p


def _decide(cache_dir) -> str:
    code = "import lstm_infer.kernels, lstm_infer._cache as c; print(c.COLD)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True, env=dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir),
                                                         PYTHONPATH=ROOT)).stdout.strip()


def test_empty_cache_is_cold_and_one_with_the_interpreter_is_warm(tmp_path, model_path):
    assert _decide(tmp_path / "empty") == "True"
    # the kernels/ cache sub-directory as Numba names it, holding an interpreter index
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "warm"))
    code = ("import lstm_infer.kernels, lstm_infer._cache as c, sys; d = c.kernel_cache_dirs()[0]; "
            "v = sys.version_info; open(f'{d}/interpreter.step_sequence-1.py{v[0]}{v[1]}.nbi', 'w'); "
            "print(c.interpreter_cached())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(env, PYTHONPATH=ROOT), check=True).stdout.strip()
    assert out == "True"
    assert _decide(tmp_path / "warm") == "False"


def test_cold_start_says_so_once_with_progress(model_path, capsys, monkeypatch):
    monkeypatch.delenv("LSTM_INFER_QUIET", raising=False)
    monkeypatch.setattr(_cache, "COLD", True)
    m = lstm_infer.load(model_path)
    err = capsys.readouterr().err
    assert err.startswith("lstm-infer: compiling kernels (first use only, about ")
    assert "`lstm-infer compile` does it ahead" in err
    assert " run step step_many streams - done in " in err and err.endswith(" s\n")
    assert _cache.COLD is False
    m.warmup()
    lstm_infer.load(model_path)
    assert capsys.readouterr().err == ""  # later calls are silent


def test_quiet_env_and_warm_cache_are_silent(model_path, capsys, monkeypatch):
    monkeypatch.setattr(_cache, "COLD", True)
    monkeypatch.setenv("LSTM_INFER_QUIET", "1")
    lstm_infer.load(model_path)
    assert capsys.readouterr().err == ""


def test_warm_process_prints_nothing(model_path):
    """A fresh process on the warm cache of this checkout: nothing on stderr."""
    code = f"import lstm_infer; lstm_infer.load({str(model_path)!r}); print('ok')"
    env = {k: v for k, v in os.environ.items() if k not in ("LSTM_INFER_QUIET",)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(env, PYTHONPATH=ROOT), check=True)
    assert r.stdout.strip() == "ok" and "compiling" not in r.stderr
