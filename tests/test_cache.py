"""The on-disk kernel cache under deployment conditions: several processes compiling into
one empty cache at once, damaged cache files, unwritable locations, and what a process
that only runs a model imports. Each case runs in fresh subprocesses."""
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from builders import stacked

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUN_MODEL = textwrap.dedent("""
    import json, os, sys, time, resource
    t0 = time.perf_counter()
    import numpy as np, lstm_infer
    t1 = time.perf_counter()
    m = lstm_infer.load(sys.argv[1])
    t2 = time.perf_counter()
    y = m.stream().step(np.linspace(-1, 1, m.input_size))
    print(json.dumps({"y": y.tolist(), "import_s": t1 - t0, "load_s": t2 - t1,
                      "torch": "torch" in sys.modules, "onnx": "onnx" in sys.modules,
                      "onnxruntime": "onnxruntime" in sys.modules,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
                      "enabled": lstm_infer._cache.ENABLED}))
""")


def _spawn(model, cache_dir, **env):
    e = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONWARNINGS="always", **env)
    return subprocess.Popen([sys.executable, "-c", RUN_MODEL, str(model)], env=e, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p, timeout=600):
    import json
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


def _cache_files(d):
    return {os.path.join(r, f): os.path.getmtime(os.path.join(r, f))
            for r, _, fs in os.walk(d) for f in fs if f.endswith((".nbi", ".nbc"))}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    p = tmp_path_factory.mktemp("cache") / "m.lstm"
    stacked(p, "LSTM", 3, 8, layers=2)
    return p


@pytest.fixture(scope="module")
def concurrent_cold_start(model, tmp_path_factory):
    """Three processes start at once on an empty cache directory."""
    cache = tmp_path_factory.mktemp("numba_cache")
    procs = [_spawn(model, cache) for _ in range(3)]
    results = [_finish(p) for p in procs]
    return cache, results


def test_concurrent_cold_start_all_succeed_and_agree(concurrent_cold_start):
    cache, results = concurrent_cold_start
    ys = [r["y"] for r, _ in results]
    assert all(y == ys[0] for y in ys)
    assert _cache_files(cache), "nothing was cached"
    assert not [f for f in os.listdir(cache) if ".tmp." in f]


def test_warm_cache_is_used_and_not_rewritten(concurrent_cold_start, model):
    cache, results = concurrent_cold_start
    before = _cache_files(cache)
    time.sleep(0.05)
    r, err = _finish(_spawn(model, cache))
    assert _cache_files(cache) == before, "a warm cache must not be recompiled or rewritten"
    assert r["y"] == results[0][0]["y"]
    assert "Warning" not in err


def test_runtime_imports_neither_torch_nor_onnx(concurrent_cold_start, model):
    cache, _ = concurrent_cold_start
    r, _ = _finish(_spawn(model, cache))
    assert not r["torch"] and not r["onnx"] and not r["onnxruntime"]
    print(f"\nfootprint: import {r['import_s'] * 1e3:.0f} ms, load {r['load_s'] * 1e3:.0f} ms, "
          f"max RSS {r['maxrss_mb']:.0f} MB")


def test_damaged_cache_files_are_recompiled_with_one_warning(concurrent_cold_start, model, tmp_path):
    cache, results = concurrent_cold_start
    damaged = tmp_path / "damaged"
    shutil.copytree(cache, damaged)
    for path in _cache_files(damaged):
        with open(path, "r+b") as f:
            f.truncate(max(1, os.path.getsize(path) // 3))
    r, err = _finish(_spawn(model, damaged))
    assert r["y"] == results[0][0]["y"]
    assert err.count("damaged Numba cache file") == 1, err[-2000:]
    # and it healed: the next process loads cleanly
    r2, err2 = _finish(_spawn(model, damaged))
    assert "damaged" not in err2 and r2["y"] == r["y"]


def test_unwritable_numba_cache_dir_falls_back_with_a_warning(concurrent_cold_start, model, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    r, err = _finish(_spawn(model, blocker / "cache"))  # even root cannot create this
    assert r["y"] == concurrent_cold_start[1][0][0]["y"]
    assert "is not writable" in err


def _load_cache_module():
    spec = importlib.util.spec_from_file_location("_cache_probe", os.path.join(ROOT, "lstm_infer", "_cache.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_read_only_package_dir_uses_user_cache(monkeypatch, tmp_path):
    mod = _load_cache_module()
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    pkg = os.path.join(ROOT, "lstm_infer")
    monkeypatch.setattr(mod, "_writable", lambda p: not p.startswith(pkg) and mod.os.access(tmp_path, os.W_OK))
    mod.configure_cache()
    assert os.environ["NUMBA_CACHE_DIR"] == os.path.join(str(tmp_path), "lstm-infer", "numba")
    assert mod.ENABLED


def test_nothing_writable_disables_cache_with_one_warning(monkeypatch):
    mod = _load_cache_module()
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(mod, "_writable", lambda p: False)
    with pytest.warns(RuntimeWarning, match="no writable directory") as record:
        mod.configure_cache()
    assert len(record) == 1
    assert not mod.ENABLED and "NUMBA_CACHE_DIR" not in os.environ
