"""End-to-end tests of the `lstm-infer` CLI: click's CliRunner in-process, and real
subprocesses (`python -m lstm_infer.cli`, the installed script) for pipes, exit codes and
tracebacks. Models are built with GraphBuilder (random weights) into tmp_path."""
from __future__ import annotations

import importlib.util
import json
import os
import queue
import subprocess
import sys
import threading
import warnings

import click
import numpy as np
import pytest
from click.testing import CliRunner

import lstm_infer
from lstm_infer.builder import GraphBuilder
from lstm_infer.cli import cli

HAVE_TORCH_IMPORTER = importlib.util.find_spec("converters.torch_import") is not None
needs_torch_importer = pytest.mark.skipif(
    not HAVE_TORCH_IMPORTER,
    reason="converters.torch_import (the PyTorch importer) is not in this tree yet")

TIMEOUT = 180  # generous: a cold Numba cache compiles kernels in the child process


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _u(rng, *shape, scale=0.4):
    return rng.uniform(-scale, scale, size=shape).astype(np.float32)


def build_lstm(path, I=3, H=8, O=2, seed=0):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("x", I)
    v = b.add("LSTM", "lstm0", ["x"], {"input_size": I, "hidden_size": H, "proj_size": 0,
                                       "reverse": False},
              {"W_ih": _u(rng, I, 4 * H), "W_hh": _u(rng, H, 4 * H), "bias": _u(rng, 4 * H)})
    v = b.add("Linear", "fc", [v], {"in_features": H, "out_features": O},
              {"W": _u(rng, H, O, scale=1.0), "bias": _u(rng, O)})
    b.output(v)
    b.save(str(path))
    return str(path)


def build_two_outputs(path, I=2, seed=1):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("x", I)
    h = b.add("GRU", "gru", ["x"], {"input_size": I, "hidden_size": 6, "linear_before_reset": True,
                                    "reverse": False},
              {"W_ih": _u(rng, I, 18), "W_hh": _u(rng, 6, 18), "b_ih": _u(rng, 18)})
    a = b.add("Linear", "head_a", [h], {"in_features": 6, "out_features": 1},
              {"W": _u(rng, 6, 1), "bias": _u(rng, 1)})
    c = b.add("Linear", "head_b", [h], {"in_features": 6, "out_features": 3}, {"W": _u(rng, 6, 3)})
    b.output(a)
    b.output(c)
    b.save(str(path))
    return str(path)


def build_bidirectional(path, I=3, seed=2):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("x", I)
    f = b.add("LSTM", "fwd", ["x"], {"input_size": I, "hidden_size": 4, "proj_size": 0,
                                     "reverse": False},
              {"W_ih": _u(rng, I, 16), "W_hh": _u(rng, 4, 16)})
    r = b.add("LSTM", "bwd", ["x"], {"input_size": I, "hidden_size": 4, "proj_size": 0,
                                     "reverse": True},
              {"W_ih": _u(rng, I, 16), "W_hh": _u(rng, 4, 16)})
    b.output(b.add("Concat", "cat", [f, r], {"sizes": [4, 4]}))
    b.save(str(path))
    return str(path)


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click 8.1
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart by default


def invoke(*args, input=None):
    return runner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=True)


def proc(*args, input=None, env=None, cwd=None):
    """The CLI in a real subprocess."""
    return subprocess.run([sys.executable, "-m", "lstm_infer.cli", *map(str, args)],
                          input=input, capture_output=True, text=True, timeout=TIMEOUT,
                          env=env, cwd=cwd)


def assert_one_line_error(stderr: str, *fragments: str):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error, got:\n{stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in stderr
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


@pytest.fixture
def model_path(tmp_path):
    return build_lstm(tmp_path / "m.lstm")


@pytest.fixture
def X():
    return np.random.default_rng(5).standard_normal((40, 3)).astype(np.float32)


# ------------------------------------------------------------------------------------------
# help, version
# ------------------------------------------------------------------------------------------
def test_version_and_help():
    r = invoke("--version")
    assert r.exit_code == 0 and lstm_infer.__version__ in r.output
    r = invoke("--help")
    assert r.exit_code == 0
    for name in ("convert", "inspect", "run", "stream", "verify", "bench", "compile"):
        assert name in r.output
        sub = invoke(name, "--help")
        assert sub.exit_code == 0, sub.output
    assert "not implemented yet" in " ".join(invoke("bench", "--help").output.split())


def test_every_option_is_documented():
    def walk(cmd):
        yield cmd
        if isinstance(cmd, click.Group):
            for sub in cmd.commands.values():
                yield from walk(sub)

    for cmd in walk(cli):
        assert cmd.help, f"command {cmd.name} has no help"
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert p.help, f"option {p.opts} of {cmd.name} has no help text"


def test_installed_script_and_module_entry(model_path):
    script = os.path.join(os.path.dirname(sys.executable), "lstm-infer")
    if not os.path.exists(script):
        pytest.skip("the lstm-infer console script is not installed next to this Python")
    r = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and lstm_infer.__version__ in r.stdout
    r = proc("inspect", model_path)
    assert r.returncode == 0 and "LSTM 3->8" in r.stdout


# ------------------------------------------------------------------------------------------
# inspect
# ------------------------------------------------------------------------------------------
def test_inspect_text(model_path):
    r = invoke("inspect", model_path)
    assert r.exit_code == 0, r.stderr
    out = r.output
    m = lstm_infer.load(model_path)
    for frag in ("LSTM 3->8", "Linear 8->2", f"{m.graph.param_count():,} parameters", "fp32",
                 f"{os.path.getsize(model_path):,} bytes", "lstm0.h (8)", "lstm0.c (8)",
                 "streamable: yes", "provenance:", "converter_version="):
        assert frag in out, (frag, out)


def test_inspect_json(model_path, tmp_path):
    r = invoke("inspect", "--json", model_path)
    assert r.exit_code == 0, r.stderr
    info = json.loads(r.output)
    m = lstm_infer.load(model_path)
    assert info["input_size"] == 3 and info["output_size"] == 2
    assert info["parameters"] == m.graph.param_count() == 3 * 32 + 8 * 32 + 32 + 8 * 2 + 2
    assert info["file_size"] == os.path.getsize(model_path)
    assert info["dtype"] == "fp32"
    assert [(l["name"], l["op"]) for l in info["layers"]] == [("lstm0", "LSTM"), ("fc", "Linear")]
    assert info["state"] == [{"name": "lstm0.h", "size": 8}, {"name": "lstm0.c", "size": 8}]
    assert info["streamable"] is True
    assert info["provenance"]["converter_version"] == lstm_infer.__version__

    bi = build_bidirectional(tmp_path / "bi.lstm")
    info = json.loads(proc("inspect", "--json", bi).stdout)
    assert info["streamable"] is False and info["reverse_layers"] == ["bwd"]
    assert "streamable: no" in invoke("inspect", bi).output


# ------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------
def test_run_npy_2d_and_batch(model_path, tmp_path, X):
    m = lstm_infer.load(model_path)
    np.save(tmp_path / "x.npy", X)
    r = invoke("run", model_path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert r.exit_code == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), m.run(X), rtol=0, atol=1e-6)

    XB = np.random.default_rng(6).standard_normal((4, 25, 3))  # float64: converted
    np.save(tmp_path / "xb.npy", XB)
    r = proc("run", model_path, "-i", tmp_path / "xb.npy", "-o", tmp_path / "yb.npy")
    assert r.returncode == 0, r.stderr
    YB = np.load(tmp_path / "yb.npy")
    assert YB.shape == (4, 25, 2)
    np.testing.assert_allclose(YB, m.run(XB), rtol=0, atol=1e-6)


def test_run_csv(model_path, tmp_path, X):
    m = lstm_infer.load(model_path)
    lines = ["a,b,c"] + [",".join(repr(float(v)) for v in row) for row in X]
    lines.insert(5, "")  # blank lines are ignored
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    r = proc("run", model_path, "--input", tmp_path / "x.csv", "--output", tmp_path / "y.csv")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "y.csv").read_text().splitlines()
    assert text[0] == "fc.out[0],fc.out[1]"
    Y = np.array([[float(v) for v in line.split(",")] for line in text[1:]])
    np.testing.assert_allclose(Y, m.run(X), rtol=0, atol=1e-6)

    # headerless CSV in, headerless CSV out; .npy of a CSV-fed run matches too
    (tmp_path / "x2.csv").write_text("\n".join(lines[1:]))
    r = invoke("run", model_path, "-i", tmp_path / "x2.csv", "-o", tmp_path / "y2.csv", "--no-header")
    assert r.exit_code == 0, r.stderr
    Y2 = np.loadtxt(tmp_path / "y2.csv", delimiter=",")
    np.testing.assert_allclose(Y2, m.run(X), rtol=0, atol=1e-6)


def test_run_several_outputs(tmp_path):
    path = build_two_outputs(tmp_path / "two.lstm")
    m = lstm_infer.load(path)
    X = np.random.default_rng(7).standard_normal((30, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    ref = m.run(X)
    assert isinstance(ref, dict) and list(ref) == ["head_a.out", "head_b.out"]

    r = invoke("run", path, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npz")
    assert r.exit_code == 0, r.stderr
    with np.load(tmp_path / "y.npz") as z:
        assert sorted(z.files) == sorted(ref)
        for k in ref:
            np.testing.assert_allclose(z[k], ref[k], rtol=0, atol=1e-6)

    r = invoke("run", path, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.csv")
    assert r.exit_code == 0, r.stderr
    assert "head_a.out: column 0" in r.stderr and "head_b.out: columns 1-3" in r.stderr
    text = (tmp_path / "y.csv").read_text().splitlines()
    assert text[0].split(",") == ["head_a.out[0]", "head_b.out[0]", "head_b.out[1]", "head_b.out[2]"]
    Y = np.array([[float(v) for v in line.split(",")] for line in text[1:]])
    np.testing.assert_allclose(Y, np.concatenate([ref["head_a.out"], ref["head_b.out"]], 1),
                               rtol=0, atol=1e-6)

    r = invoke("run", path, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert r.exit_code == 1
    assert_one_line_error(r.stderr, "2 outputs", ".npz")


# ------------------------------------------------------------------------------------------
# stream
# ------------------------------------------------------------------------------------------
def _fmt(row) -> str:
    return ",".join(repr(float(v)) for v in row)


def _parse(lines) -> np.ndarray:
    return np.array([[float(v) for v in line.split(",")] for line in lines])


def test_stream_through_pipe_is_flushed_per_line(model_path, X):
    """Write one line, read its output back before writing the next: proves the flush."""
    m = lstm_infer.load(model_path)
    ref = m.run(X)
    p = subprocess.Popen([sys.executable, "-m", "lstm_infer.cli", "stream", model_path],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, bufsize=1)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(l) for l in p.stdout], daemon=True)
    reader.start()
    try:
        got = []
        for k, row in enumerate(X):
            p.stdin.write(_fmt(row) + "\n")
            p.stdin.flush()
            try:
                got.append(lines.get(timeout=TIMEOUT if k == 0 else 30).strip())
            except queue.Empty:
                pytest.fail(f"no output line for input line {k + 1}: output is not flushed per step")
        p.stdin.close()
        assert p.wait(timeout=TIMEOUT) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    np.testing.assert_allclose(_parse(got), ref, rtol=1e-5, atol=1e-5)


def test_stream_skips_bad_lines_with_state_untouched(model_path, X):
    m = lstm_infer.load(model_path)
    good = X[:10]
    feed = [_fmt(good[0]), _fmt(good[1]), "", "1.0,oops,3", _fmt(good[2]), "1,2",
            _fmt(good[3]), "nan,0,0", "   ", _fmt(good[4]), "0,inf,0"] + [_fmt(r) for r in good[5:]]
    r = proc("stream", model_path, input="\n".join(feed) + "\n")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(_parse(r.stdout.splitlines()), m.run(good), rtol=1e-5, atol=1e-5)
    err = r.stderr
    assert "Traceback" not in err
    for lineno in (4, 6, 8, 11):  # physical line numbers, blank lines counted
        assert f"line {lineno}:" in err, err
    assert "line 3:" not in err and "line 9:" not in err  # blank lines are not errors
    assert "expected 3 values, got 2" in err and "NaN or Inf" in err


def test_stream_stop_on_error(model_path, X):
    m = lstm_infer.load(model_path)
    feed = [_fmt(X[0]), _fmt(X[1]), "garbage", _fmt(X[2])]
    r = proc("stream", model_path, "--on-error", "stop", input="\n".join(feed) + "\n")
    assert r.returncode == 1
    np.testing.assert_allclose(_parse(r.stdout.splitlines()), m.run(X[:2]), rtol=1e-5, atol=1e-5)
    assert_one_line_error(r.stderr, "line 3")


def test_stream_cli_runner_precision_and_header(model_path, X):
    m = lstm_infer.load(model_path)
    text = "t0,t1,t2\n" + "\n".join(_fmt(r) for r in X[:5]) + "\n"
    r = invoke("stream", model_path, "--header", "--precision", "3", input=text)
    assert r.exit_code == 0, r.stderr
    out = r.output.splitlines()
    assert len(out) == 5 and r.stderr == ""
    for line in out:
        assert all(len(v.lstrip("-").replace(".", "").split("e")[0].lstrip("0")) <= 3
                   for v in line.split(","))
    np.testing.assert_allclose(_parse(out), m.run(X[:5]), rtol=1e-2, atol=1e-2)


def test_stream_not_streamable(tmp_path):
    bi = build_bidirectional(tmp_path / "bi.lstm")
    r = proc("stream", bi, input="1,2,3\n")
    assert r.returncode == 1
    assert_one_line_error(r.stderr, "cannot stream")


# ------------------------------------------------------------------------------------------
# bench, compile
# ------------------------------------------------------------------------------------------
def test_bench_json(model_path):
    r = invoke("bench", model_path, "--steps", "200", "--warmup", "10", "--chunk", "32", "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.output)
    assert res["steps"] == 200 and res["input_size"] == 3 and res["output_size"] == 2
    for key in ("median_us", "p99_us", "max_us", "mean_us", "steps_per_s"):
        assert res["step"][key] > 0, key
    assert res["step"]["median_us"] <= res["step"]["p99_us"] <= res["step"]["max_us"]
    assert res["step_many"]["chunk"] == 32
    assert res["step_many"]["per_step_us"] > 0 and res["step_many"]["steps_per_s"] > 0
    assert res["run"]["per_step_us"] > 0
    assert res["load_ms"] > 0 and res["first_step_ms"] > 0

    r = proc("bench", model_path, "--steps", "50", "--warmup", "5")
    assert r.returncode == 0, r.stderr
    assert "median" in r.stdout and "p99" in r.stdout and "steps/s" in r.stdout


def test_compile_fills_the_cache_so_nothing_compiles_later(tmp_path, model_path):
    """`compile` into an empty cache; afterwards, using a different model in new processes
    (run, stream, bench, inspect) adds no cache file, i.e. compiles nothing."""
    cache = tmp_path / "numba-cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    r = proc("compile", "--json", env=env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert os.path.realpath(info["cache_dir"]) == os.path.realpath(cache)
    assert info["seconds"] > 0 and info["new_cache_files"] > 0

    def files():
        return sorted(str(p) for p in cache.rglob("*") if p.is_file())

    before = files()
    assert before
    two = build_two_outputs(tmp_path / "two.lstm")
    np.save(tmp_path / "x.npy", np.zeros((7, 3), np.float32))
    assert proc("run", model_path, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
                env=env).returncode == 0
    assert proc("stream", two, input="1,2\n3,4\n", env=env).returncode == 0
    assert proc("bench", model_path, "--steps", "20", "--warmup", "1", env=env).returncode == 0
    assert files() == before

    r = proc("compile", env=env)  # again, text output: nothing left to compile
    assert r.returncode == 0, r.stderr
    assert f"Numba cache: {cache}" in r.stdout and "0 new" in r.stdout
    assert files() == before


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    r = proc("inspect", tmp_path / "nope.lstm")
    assert r.returncode == 1
    assert_one_line_error(r.stderr, "nope.lstm")
    np.save(tmp_path / "x.npy", np.zeros((4, 3), np.float32))
    r = invoke("run", tmp_path / "nope.lstm", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert r.exit_code == 1
    assert_one_line_error(r.stderr, "nope.lstm")


def test_corrupt_file(model_path, tmp_path):
    data = open(model_path, "rb").read()
    truncated = tmp_path / "truncated.lstm"
    truncated.write_bytes(data[: len(data) // 2])
    flipped = tmp_path / "flipped.lstm"
    flipped.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    garbage = tmp_path / "garbage.lstm"
    garbage.write_bytes(os.urandom(300))
    for bad in (truncated, flipped, garbage):
        for cmd in (["inspect"], ["bench", "--steps", "5"], ["stream"]):
            r = proc(*cmd, bad, input="")
            assert r.returncode == 1, (cmd, bad, r.stderr)
            assert_one_line_error(r.stderr, bad.name)
        r = invoke("inspect", bad)
        assert r.exit_code == 1
        assert_one_line_error(r.stderr)


def test_wrong_input_width(model_path, tmp_path):
    np.save(tmp_path / "x4.npy", np.zeros((10, 4), np.float32))
    r = proc("run", model_path, "-i", tmp_path / "x4.npy", "-o", tmp_path / "y.npy")
    assert r.returncode == 1
    assert_one_line_error(r.stderr, "4 values", "takes 3")
    assert not (tmp_path / "y.npy").exists()
    (tmp_path / "x.csv").write_text("1,2\n3,4\n")
    r = invoke("run", model_path, "-i", tmp_path / "x.csv", "-o", tmp_path / "y.npy")
    assert r.exit_code == 1
    assert_one_line_error(r.stderr, "2 values")
    (tmp_path / "ragged.csv").write_text("1,2,3\n3,4\n")
    r = invoke("run", model_path, "-i", tmp_path / "ragged.csv", "-o", tmp_path / "y.npy")
    assert r.exit_code == 1
    assert_one_line_error(r.stderr, "line 2")
    np.save(tmp_path / "x1.npy", np.zeros((2, 3, 4, 3), np.float32))
    r = invoke("run", model_path, "-i", tmp_path / "x1.npy", "-o", tmp_path / "y.npy")
    assert r.exit_code == 1
    assert_one_line_error(r.stderr, "shape")


def test_usage_errors_are_one_line_exit_1(model_path):
    for args in (["bogus"], ["run", model_path], ["stream", model_path, "--on-error", "maybe"],
                 ["bench", model_path, "--steps", "0"]):
        r = proc(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert_one_line_error(r.stderr)


def test_debug_shows_traceback(tmp_path):
    bad = tmp_path / "bad.lstm"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    r = proc("inspect", bad)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = proc("--debug", "inspect", bad)
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert "ModelFormatError" in r.stderr


# ------------------------------------------------------------------------------------------
# convert / verify
# ------------------------------------------------------------------------------------------
def test_convert_names_the_missing_extra(monkeypatch, tmp_path):
    import converters

    def no_torch(*a, **k):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(converters, "convert_file", no_torch)
    src = tmp_path / "model.pt"
    src.write_bytes(b"x")
    r = invoke("convert", src, "-o", tmp_path / "m.lstm")
    assert r.exit_code == 1
    assert_one_line_error(r.stderr, "pip install 'lstm-infer[torch]'")


def _torch_model():
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 8, batch_first=True)
            self.fc = torch.nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(self.lstm(x)[0])

    torch.manual_seed(0)
    return torch, Net().eval()


@needs_torch_importer
def test_convert_and_verify_state_dict(tmp_path, X):
    torch, net = _torch_model()
    src = tmp_path / "net.pt"
    torch.save(net.state_dict(), src)
    out = tmp_path / "net.lstm"
    r = proc("convert", src, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "max abs error" in r.stdout
    m = lstm_infer.load(out)
    with torch.no_grad():
        ref = net(torch.from_numpy(X[None]))[0].numpy()
    np.testing.assert_allclose(m.run(X), ref, rtol=1e-4, atol=1e-5)

    np.save(tmp_path / "x.npy", X)
    r = invoke("verify", out, src, "--input", tmp_path / "x.npy")
    assert r.exit_code == 0, r.stderr
    assert "max abs error" in r.output

    r = invoke("convert", src, "-o", tmp_path / "nv.lstm", "--no-verify")
    assert r.exit_code == 0, r.stderr
    assert "verification skipped" in r.output


@needs_torch_importer
def test_convert_and_verify_pt2(tmp_path, X):
    torch, net = _torch_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "_flat_weights assigned during export"
        ep = torch.export.export(net, (torch.from_numpy(X[None]),))
    src = tmp_path / "net.pt2"
    torch.export.save(ep, src)
    out = tmp_path / "net.lstm"
    r = invoke("convert", src, "-o", out)
    assert r.exit_code == 0, r.stderr
    assert "max abs error" in r.output
    m = lstm_infer.load(out)
    with torch.no_grad():
        ref = net(torch.from_numpy(X[None]))[0].numpy()
    np.testing.assert_allclose(m.run(X), ref, rtol=1e-4, atol=1e-5)
    r = proc("verify", out, src)
    assert r.returncode == 0, r.stderr


@needs_torch_importer
def test_verify_detects_a_mismatch(tmp_path):
    torch, net = _torch_model()
    src = tmp_path / "net.pt"
    torch.save(net.state_dict(), src)
    other = build_lstm(tmp_path / "other.lstm", I=3, H=8, O=2, seed=9)  # same shapes, other weights
    r = invoke("verify", other, src)
    assert r.exit_code == 1
    assert "above the tolerance" in r.stderr


def test_stream_garbled_bytes_are_a_skipped_line(model_path, X):
    m = lstm_infer.load(model_path)
    data = (_fmt(X[0]) + "\n\xff\xfe,1\n".encode("latin-1").decode("latin-1")).encode("latin-1") \
        + (_fmt(X[1]) + "\n").encode()
    r = subprocess.run([sys.executable, "-m", "lstm_infer.cli", "stream", model_path], input=data,
                       capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    got = _parse(r.stdout.decode().splitlines())
    np.testing.assert_allclose(got, m.run(X[:2]), rtol=1e-5, atol=1e-5)
    assert b"line 2:" in r.stderr
